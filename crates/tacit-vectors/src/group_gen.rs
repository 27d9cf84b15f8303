//! Generates `group.json` (`docs/PROTOCOL.md` 16.9): every input from a
//! fixed label, every expected value from `group`'s encodings and the
//! core, the whole file verified before it is written.

use tacit::group::multi;
use tacit::identity::UserKeyPair;
use tacit::IdentityKeyPair;

use crate::generate::derive;
use crate::group::{
    chain_step, encode_control, encode_distribution, encode_signed, encode_state, error_name,
    message_bytes, pb_bytes, pb_uint, receive_error, run_transition, state_hash, ApplyStep,
    ChainStep, ChainSteps, ContentFields, ControlCase, ControlExpected, DistributionCase,
    GroupFile, InvalidBytes, InvalidEnvelope, InvalidMessage, InvalidSeal, MemberFields,
    MessageCase, MessageExpected, MultiCase, MultiExpected, Receiver, RecipientFields, SignerCase,
    SignerExpected, StateCase, StateExpected, TransitionCase,
};
use crate::schema::{Hex, HexBytes};

fn d(label: &str) -> Hex<32> {
    Hex(derive(&format!("group/{label}")))
}

fn hex16(label: &str) -> Hex<16> {
    let mut out = [0u8; 16];
    out.copy_from_slice(&derive(&format!("group/{label}"))[..16]);
    Hex(out)
}

fn ck_at(ck0: [u8; 32], i: u32) -> [u8; 32] {
    (0..i).fold(ck0, |ck, _| chain_step(&ck).0)
}

/// The group.json file.
pub fn group_file() -> Result<GroupFile, String> {
    let mut file = empty();
    chains(&mut file)?;
    states(&mut file)?;
    multi_cases(&mut file)?;
    Ok(file)
}

fn chains(file: &mut GroupFile) -> Result<(), String> {
    let ck0 = d("chain/ck0").0;
    let steps = [0u32, 1, 2, 7, 1000]
        .iter()
        .map(|&i| {
            let ck = ck_at(ck0, i);
            let (_, mk, key, nonce) = chain_step(&ck);
            ChainStep {
                iteration: i,
                chain_key: Hex(ck),
                message_key: Hex(mk),
                key: Hex(key),
                nonce: Hex(nonce),
            }
        })
        .collect();
    file.chain_steps.push(ChainSteps {
        name: "chain_steps_with_jumps".into(),
        chain_key: Hex(ck0),
        steps,
    });

    let group_id = d("group_id");
    let state = d("chain/state_hash");
    let seed = d("chain/signing_seed");
    let signing_key = Hex(IdentityKeyPair::from_seed(&seed.0).public_key().to_bytes());
    let message = |name: &str, i: u32, kind: u32, body: &[u8]| -> Result<MessageCase, String> {
        let mut c = MessageCase {
            name: name.into(),
            signing_seed: seed,
            chain_key: Hex(ck_at(ck0, i)),
            iteration: i,
            group_id,
            state_hash: state,
            content: ContentFields {
                kind,
                timestamp: 1_767_225_600_000 + u64::from(i),
                message_id: hex16(&format!("{name}/message_id")),
                body: HexBytes(body.to_vec()),
            },
            expected: MessageExpected {
                signing_key,
                message: HexBytes(Vec::new()),
            },
        };
        c.expected.message = HexBytes(message_bytes(&c)?);
        Ok(c)
    };
    let m0 = message("message_text_iteration_0", 0, 1, b"hello, group")?;
    let m1 = message("message_typing_iteration_1", 1, 5, &[1])?;
    let m7 = message("message_text_iteration_7", 7, 1, &[b'x'; 300])?;
    let receiver = |max_skip: u32| Receiver {
        group_id,
        state_hash: state,
        signing_key,
        chain_key: Hex(ck0),
        iteration: 0,
        max_skip,
    };
    let m0b = m0.expected.message.0.clone();
    let body_len = m0b.len() - 66;
    let mut invalid = Vec::new();
    let mut push = |name: &str, r: Receiver, first: Vec<Vec<u8>>, bytes: Vec<u8>| {
        invalid.push((name.to_string(), r, first, bytes));
    };
    // Signed by another key over the same body.
    let other = IdentityKeyPair::from_seed(&d("chain/other_seed").0);
    let mut forged = m0b[..body_len].to_vec();
    pb_bytes(&mut forged, 7, &sign_body(&other, &m0b[..body_len]), false);
    push("forged_signature", receiver(1000), vec![], forged);
    let mut tampered = m0b.clone();
    tampered[body_len - 1] ^= 0x01; // the last byte of the ciphertext's tag
    push("tampered_ciphertext", receiver(1000), vec![], tampered);
    let mut bad_aead = Vec::new();
    pb_uint(&mut bad_aead, 1, 1);
    pb_bytes(&mut bad_aead, 2, &group_id.0, false);
    pb_bytes(&mut bad_aead, 3, &state.0, false);
    pb_bytes(&mut bad_aead, 4, &signing_key.0, false);
    pb_uint(&mut bad_aead, 5, 1);
    pb_bytes(&mut bad_aead, 6, &ciphertext_of(&m0b), false);
    let chain_key = IdentityKeyPair::from_seed(&seed.0);
    let sig = sign_body(&chain_key, &bad_aead);
    pb_bytes(&mut bad_aead, 7, &sig, false);
    push("signed_but_does_not_open", receiver(1000), vec![], bad_aead);
    let mut wrong_state = receiver(1000);
    wrong_state.state_hash = d("chain/other_state");
    push("wrong_state", wrong_state, vec![], m0b.clone());
    let mut unknown = receiver(1000);
    unknown.signing_key = Hex(other.public_key().to_bytes());
    push("unknown_chain", unknown, vec![], m0b.clone());
    push("duplicate", receiver(1000), vec![m0b.clone()], m0b.clone());
    push(
        "duplicate_after_later",
        receiver(1000),
        vec![m0b.clone(), m1.expected.message.0.clone()],
        m0b.clone(),
    );
    push(
        "beyond_max_skip",
        receiver(6),
        vec![],
        m7.expected.message.0.clone(),
    );
    let mut extra = m0b.clone();
    pb_uint(&mut extra, 8, 1);
    push("non_canonical_unknown_field", receiver(1000), vec![], extra);
    let mut version0 = m0b[2..].to_vec(); // without field 1
    version0.insert(0, 0x08);
    version0.insert(1, 0x02);
    push("unknown_version", receiver(1000), vec![], version0);
    let mut short_sig = m0b[..m0b.len() - 66].to_vec();
    pb_bytes(&mut short_sig, 7, &[0u8; 63], false);
    push("signature_of_63_bytes", receiver(1000), vec![], short_sig);
    let mut max_iteration = Vec::new();
    pb_uint(&mut max_iteration, 1, 1);
    pb_bytes(&mut max_iteration, 2, &group_id.0, false);
    pb_bytes(&mut max_iteration, 3, &state.0, false);
    pb_bytes(&mut max_iteration, 4, &signing_key.0, false);
    pb_uint(&mut max_iteration, 5, u64::from(u32::MAX));
    pb_bytes(&mut max_iteration, 6, &ciphertext_of(&m0b), false);
    pb_bytes(&mut max_iteration, 7, &[0u8; 64], false);
    push(
        "iteration_2_32_minus_1",
        receiver(1000),
        vec![],
        max_iteration,
    );
    for (name, r, first, bytes) in invalid {
        let first: Vec<HexBytes> = first.into_iter().map(HexBytes).collect();
        let error = receive_error(&r, &first, &bytes)?;
        file.invalid_messages.push(InvalidMessage {
            name,
            receiver: r,
            deliver_first: first,
            bytes: HexBytes(bytes),
            error,
        });
    }
    file.messages.extend([m0, m1, m7]);

    let dist = |name: &str, i: u32| {
        let mut c = DistributionCase {
            name: name.into(),
            group_id,
            state_hash: state,
            signing_seed: seed,
            iteration: i,
            chain_key: Hex(ck_at(ck0, i)),
            expected: HexBytes(Vec::new()),
        };
        c.expected = HexBytes(encode_distribution(&c));
        c
    };
    let d0 = dist("distribution_iteration_0", 0);
    let d9 = dist("distribution_iteration_9", 9);
    let good = d0.expected.0.clone();
    let mut bad = Vec::new();
    let mut small = good.clone();
    small[72..104].copy_from_slice(&{
        let mut p = [0u8; 32];
        p[0] = 1; // the identity point, of small order
        p
    });
    bad.push(("distribution_small_order_signing_key", small));
    let mut short = good[..good.len() - 34].to_vec();
    pb_bytes(&mut short, 6, &[7u8; 31], false);
    bad.push(("distribution_chain_key_of_31_bytes", short));
    let mut noncanon = good.clone();
    pb_uint(&mut noncanon, 9, 1);
    bad.push(("distribution_unknown_field", noncanon));
    for (name, bytes) in bad {
        let error = match tacit::group::SenderChainDistribution::from_bytes(&bytes) {
            Ok(_) => return Err(format!("{name} decodes")),
            Err(e) => error_name(&e),
        };
        file.invalid_distributions.push(InvalidBytes {
            name: name.into(),
            bytes: HexBytes(bytes),
            error,
        });
    }
    file.distributions.extend([d0, d9]);
    Ok(())
}

fn ciphertext_of(message: &[u8]) -> Vec<u8> {
    tacit::group::GroupMessage::from_bytes(message)
        .map(|m| m.ciphertext().to_vec())
        .unwrap_or_default()
}

fn sign_body(key: &IdentityKeyPair, body: &[u8]) -> [u8; 64] {
    use sha2::{Digest, Sha256};
    let mut m = b"tacit/group/v1/message".to_vec();
    m.extend_from_slice(&Sha256::digest(body));
    key.sign(&m).to_bytes()
}

fn empty() -> GroupFile {
    GroupFile {
        profile: crate::schema::PROFILE.into(),
        chain_steps: Vec::new(),
        messages: Vec::new(),
        invalid_messages: Vec::new(),
        distributions: Vec::new(),
        invalid_distributions: Vec::new(),
        signers: Vec::new(),
        group_states: Vec::new(),
        transitions: Vec::new(),
        controls: Vec::new(),
        invalid_controls: Vec::new(),
        multi: Vec::new(),
        invalid_seals: Vec::new(),
        invalid_envelopes: Vec::new(),
    }
}

fn signer(name: &str, user: &str, device: u32, uk_label: &str) -> SignerCase {
    let user_key_seed = d(&format!("user_key/{uk_label}"));
    let identity_seed = d(&format!("identity/{name}"));
    let mut s = SignerCase {
        name: name.into(),
        user_id: user.into(),
        device_id: device,
        user_key_seed,
        identity_seed,
        expected: SignerExpected {
            user_key: Hex(UserKeyPair::from_seed(&user_key_seed.0)
                .public_key()
                .to_bytes()),
            identity_key: Hex(IdentityKeyPair::from_seed(&identity_seed.0)
                .public_key()
                .to_bytes()),
            certificate: Hex([0; 64]),
        },
    };
    let state = encode_signed(&[], &s);
    // Field 6 of an encoding with an empty state: after field 1 (2 bytes),
    // 3 (2 + len), 4 (2), 5 (34).
    let at = 2 + 2 + user.len() + 2 + 34 + 2;
    s.expected
        .certificate
        .0
        .copy_from_slice(&state[at..at + 64]);
    s
}

fn states(file: &mut GroupFile) -> Result<(), String> {
    let signers = vec![
        signer("alice_1", "alice", 1, "alice"),
        signer("bob_1", "bob", 1, "bob"),
        signer("mallory_1", "mallory", 1, "mallory"),
        signer("alice_2_other_user_key", "alice", 2, "alice_other"),
    ];
    let uk = |label: &str| {
        Hex(UserKeyPair::from_seed(&d(&format!("user_key/{label}")).0)
            .public_key()
            .to_bytes())
    };
    let member = |id: &str, role: u32| MemberFields {
        user_id: id.into(),
        user_key: uk(id),
        role,
    };
    let group_id = d("group_id");
    let mut list: Vec<StateCase> = Vec::new();
    let add = |list: &mut Vec<StateCase>,
               name: &str,
               epoch: u64,
               parent: Option<[u8; 32]>,
               title: &str,
               members: Vec<MemberFields>,
               by: &str|
     -> Result<[u8; 32], String> {
        let mut s = StateCase {
            name: name.into(),
            group_id,
            epoch,
            parent: parent.map(Hex),
            title: title.into(),
            members,
            signer: by.into(),
            expected: StateExpected {
                state: HexBytes(Vec::new()),
                signed: HexBytes(Vec::new()),
                hash: Hex([0; 32]),
                decode_error: None,
            },
        };
        let signer = signers.iter().find(|x| x.name == by).ok_or("no signer")?;
        let state = encode_state(&s);
        let signed = encode_signed(&state, signer);
        s.expected.hash = Hex(state_hash(&signed));
        s.expected.decode_error = tacit::group::SignedGroupState::from_wire(&signed)
            .err()
            .map(|e| error_name(&e));
        s.expected.state = HexBytes(state);
        s.expected.signed = HexBytes(signed);
        let hash = s.expected.hash.0;
        list.push(s);
        Ok(hash)
    };
    let ab = || vec![member("alice", 1), member("bob", 2)];
    let h0 = add(&mut list, "s0_created", 0, None, "Tacit", ab(), "alice_1")?;
    let abc = vec![member("alice", 1), member("bob", 2), member("carol", 2)];
    let h1 = add(
        &mut list,
        "s1_carol_added",
        1,
        Some(h0),
        "Tacit",
        abc.clone(),
        "alice_1",
    )?;
    add(
        &mut list,
        "s1_retitled",
        1,
        Some(h0),
        "Tacit (renamed)",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "s1_bob_leaves",
        1,
        Some(h0),
        "Tacit",
        vec![member("alice", 1)],
        "bob_1",
    )?;
    add(
        &mut list,
        "s2_retitled",
        2,
        Some(h1),
        "Tacit 2",
        abc,
        "alice_1",
    )?;
    let hr = list
        .iter()
        .find(|s| s.name == "s1_retitled")
        .map(|s| s.expected.hash.0);
    add(
        &mut list,
        "s2_on_retitled",
        2,
        hr,
        "Tacit (renamed twice)",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "first_state_by_plain_member",
        0,
        None,
        "Tacit",
        ab(),
        "bob_1",
    )?;
    add(
        &mut list,
        "bad_retitle_by_plain_member",
        1,
        Some(h0),
        "Bob's",
        ab(),
        "bob_1",
    )?;
    add(
        &mut list,
        "bad_signed_by_non_member",
        1,
        Some(h0),
        "Mallory's",
        ab(),
        "mallory_1",
    )?;
    add(
        &mut list,
        "bad_certificate_under_another_user_key",
        1,
        Some(h0),
        "Other key",
        ab(),
        "alice_2_other_user_key",
    )?;
    add(
        &mut list,
        "bad_epoch_2_on_epoch_0",
        2,
        Some(h0),
        "Skipped",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_unknown_parent",
        1,
        Some(d("unknown_parent").0),
        "Orphan",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_no_change",
        1,
        Some(h0),
        "Tacit",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_last_admin_leaves",
        1,
        Some(h0),
        "Tacit",
        vec![member("bob", 2)],
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_members_not_ascending",
        1,
        Some(h0),
        "Tacit",
        vec![member("bob", 2), member("alice", 1)],
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_title_control_character",
        1,
        Some(h0),
        "Tacit\n",
        ab(),
        "alice_1",
    )?;
    add(
        &mut list,
        "bad_parent_at_epoch_0",
        0,
        Some(h0),
        "Tacit",
        ab(),
        "alice_1",
    )?;
    file.signers = signers;
    file.group_states = list;

    let t = |name: &str, history: &[&str], apply: &[&str], current: Option<&str>| TransitionCase {
        name: name.into(),
        local_user: "alice".into(),
        history: history.iter().map(|s| s.to_string()).collect(),
        apply: apply
            .iter()
            .map(|s| ApplyStep {
                state: s.to_string(),
                outcome: String::new(),
            })
            .collect(),
        current: current.map(str::to_string),
    };
    let mut cases = vec![
        t(
            "first_state_accepted",
            &[],
            &["s0_created"],
            Some("s0_created"),
        ),
        t(
            "first_state_by_plain_member_refused",
            &[],
            &["first_state_by_plain_member"],
            None,
        ),
        t(
            "member_added",
            &["s0_created"],
            &["s1_carol_added", "s2_retitled"],
            Some("s2_retitled"),
        ),
        t(
            "plain_member_leaves",
            &["s0_created"],
            &["s1_bob_leaves"],
            Some("s1_bob_leaves"),
        ),
        t(
            "unauthorised_change",
            &["s0_created"],
            &["bad_retitle_by_plain_member"],
            Some("s0_created"),
        ),
        t(
            "signer_not_member",
            &["s0_created"],
            &["bad_signed_by_non_member"],
            Some("s0_created"),
        ),
        t(
            "certificate_under_another_user_key",
            &["s0_created"],
            &["bad_certificate_under_another_user_key"],
            Some("s0_created"),
        ),
        t(
            "wrong_epoch",
            &["s0_created"],
            &["bad_epoch_2_on_epoch_0"],
            Some("s0_created"),
        ),
        t(
            "unknown_parent",
            &["s0_created"],
            &["bad_unknown_parent"],
            Some("s0_created"),
        ),
        t(
            "no_change",
            &["s0_created"],
            &["bad_no_change"],
            Some("s0_created"),
        ),
        t(
            "last_admin_leaves",
            &["s0_created"],
            &["bad_last_admin_leaves"],
            Some("s0_created"),
        ),
        t(
            "replay",
            &["s0_created"],
            &["s1_carol_added", "s1_carol_added"],
            Some("s1_carol_added"),
        ),
        t(
            "stale_sibling",
            &["s1_carol_added", "s2_retitled"],
            &["s1_retitled"],
            Some("s2_retitled"),
        ),
        t(
            "siblings_added_first",
            &["s0_created"],
            &["s1_carol_added", "s1_retitled"],
            None,
        ),
        t(
            "siblings_retitled_first",
            &["s0_created"],
            &["s1_retitled", "s1_carol_added"],
            None,
        ),
        t(
            "sibling_against_a_longer_branch",
            &["s0_created"],
            &["s1_carol_added", "s2_retitled", "s1_retitled"],
            None,
        ),
        t(
            "longer_branch_against_a_sibling",
            &["s0_created"],
            &["s1_retitled", "s2_on_retitled", "s1_carol_added"],
            None,
        ),
    ];
    for c in &mut cases {
        let (outcomes, current) = run_transition(c, file)?;
        for (step, got) in c.apply.iter_mut().zip(outcomes) {
            step.outcome = got;
        }
        // Which sibling wins is the hashes' business: name the state the
        // member ends on.
        if c.current.is_none() && !c.history.is_empty() {
            c.current = file
                .group_states
                .iter()
                .find(|s| Some(s.expected.hash.0) == current)
                .map(|s| s.name.clone());
        }
    }
    file.transitions = cases;

    let control = |name: &str,
                   states: &[&str],
                   chain: Option<&str>,
                   file: &GroupFile|
     -> Result<ControlCase, String> {
        let wires: Vec<Vec<u8>> = states
            .iter()
            .map(|n| {
                file.group_states
                    .iter()
                    .find(|s| s.name == *n)
                    .map(|s| s.expected.signed.0.clone())
                    .ok_or("no state")
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&[u8]> = wires.iter().map(Vec::as_slice).collect();
        let dist = chain
            .map(|n| {
                file.distributions
                    .iter()
                    .find(|d| d.name == n)
                    .map(|d| d.expected.0.clone())
                    .ok_or("no distribution")
            })
            .transpose()?;
        let (c, b) = encode_control(&refs, dist.as_deref());
        Ok(ControlCase {
            name: name.into(),
            states: states.iter().map(|s| s.to_string()).collect(),
            chain: chain.map(str::to_string),
            expected: ControlExpected {
                group_control: HexBytes(c),
                session_control_body: HexBytes(b),
            },
        })
    };
    let c1 = control(
        "control_new_state_and_chain",
        &["s1_carol_added"],
        Some("distribution_iteration_9"),
        file,
    )?;
    let c2 = control(
        "control_join_parent_and_new",
        &["s0_created", "s1_carol_added"],
        None,
        file,
    )?;
    let c3 = control(
        "control_chain_only",
        &[],
        Some("distribution_iteration_0"),
        file,
    )?;
    let signed = |n: &str| {
        file.group_states
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.expected.signed.0.clone())
            .unwrap_or_default()
    };
    let mut bad = Vec::new();
    let three = [
        signed("s0_created"),
        signed("s1_carol_added"),
        signed("s2_retitled"),
    ];
    let refs: Vec<&[u8]> = three.iter().map(Vec::as_slice).collect();
    bad.push(("control_three_states", encode_control(&refs, None).1));
    let pair = [signed("s0_created"), signed("bad_unknown_parent")];
    let refs: Vec<&[u8]> = pair.iter().map(Vec::as_slice).collect();
    bad.push((
        "control_parent_and_unrelated_state",
        encode_control(&refs, None).1,
    ));
    bad.push(("control_body_without_group", vec![0x08, 0x01]));
    let mut v2 = encode_control(&[], None).1;
    v2[1] = 2;
    bad.push(("control_body_version_2", v2));
    let bad_state = signed("bad_last_admin_leaves");
    bad.push((
        "control_with_a_state_without_admin",
        encode_control(&[&bad_state], None).1,
    ));
    for (name, bytes) in bad {
        let error = match tacit::group::SessionControlBody::from_wire(&bytes) {
            Ok(_) => return Err(format!("{name} decodes")),
            Err(e) => error_name(&e),
        };
        file.invalid_controls.push(InvalidBytes {
            name: name.into(),
            bytes: HexBytes(bytes),
            error,
        });
    }
    file.controls = vec![c1, c2, c3];
    Ok(())
}

fn recipient(user: &str, device: u32) -> RecipientFields {
    RecipientFields {
        user_id: user.into(),
        device_id: device,
        identity_seed: d(&format!("identity/{user}_{device}")),
    }
}

fn multi_cases(file: &mut GroupFile) -> Result<(), String> {
    let plaintext = file
        .messages
        .first()
        .map(|m| m.expected.message.0.clone())
        .unwrap_or_default();
    let mut rng = [0u8; 64];
    rng[..32].copy_from_slice(&d("multi/m").0);
    rng[32..].copy_from_slice(&d("multi/e").0);
    let recipients = vec![
        recipient("alice", 2),
        recipient("bob", 1),
        recipient("bob", 2),
    ];
    let list: Vec<_> = recipients
        .iter()
        .map(|r| {
            (
                tacit::Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string()),
                IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
            )
        })
        .map(|(a, k)| a.map(|a| (a, k)))
        .collect::<Result<_, _>>()?;
    let mut fixed = Fixed(rng.to_vec());
    let sealed = multi::seal(&plaintext, &list, &mut fixed).map_err(|e| format!("{e:?}"))?;
    let envelopes: Vec<Vec<u8>> = sealed
        .parts
        .iter()
        .map(|p| sealed.shared.envelope_for(&p.wrapped_key).to_bytes())
        .collect();
    let e0 = envelopes[0].clone();
    file.multi.push(MultiCase {
        name: "multi_three_devices".into(),
        rng: Hex(rng),
        plaintext: HexBytes(plaintext.clone()),
        recipients: recipients.clone(),
        expected: MultiExpected {
            ephemeral_key: Hex(sealed.shared.ephemeral_key().to_bytes()),
            shared_payload: HexBytes(sealed.shared.to_bytes()),
            parts: sealed.parts.iter().map(|p| Hex(p.wrapped_key)).collect(),
            envelopes: envelopes.into_iter().map(HexBytes).collect(),
        },
    });
    file.invalid_seals.push(InvalidSeal {
        name: "seal_no_recipients".into(),
        plaintext: HexBytes(plaintext.clone()),
        recipients: vec![],
        error: String::new(),
    });
    file.invalid_seals.push(InvalidSeal {
        name: "seal_same_address_twice".into(),
        plaintext: HexBytes(plaintext.clone()),
        recipients: vec![
            recipient("bob", 1),
            recipient("alice", 2),
            recipient("bob", 1),
        ],
        error: String::new(),
    });
    for s in &mut file.invalid_seals {
        let list: Vec<_> = s
            .recipients
            .iter()
            .filter_map(|r| {
                tacit::Address::new(&r.user_id, r.device_id).ok().map(|a| {
                    (
                        a,
                        IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
                    )
                })
            })
            .collect();
        s.error = match multi::seal(&s.plaintext.0, &list, &mut Fixed(vec![0; 64])) {
            Ok(_) => return Err(format!("{} seals", s.name)),
            Err(e) => error_name(&e),
        };
    }
    let mut bad: Vec<(&str, RecipientFields, Vec<u8>)> = Vec::new();
    bad.push((
        "envelope_for_another_device",
        recipients[1].clone(),
        e0.clone(),
    ));
    let mut same_key_other_address = recipients[0].clone();
    same_key_other_address.device_id = 3;
    bad.push((
        "envelope_at_another_address",
        same_key_other_address,
        e0.clone(),
    ));
    let mut payload = e0.clone();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    bad.push(("envelope_payload_altered", recipients[0].clone(), payload));
    let mut part = e0.clone();
    part[2 + 34 + 2] ^= 0x01;
    bad.push(("envelope_part_altered", recipients[0].clone(), part));
    let mut eph = e0.clone();
    eph[4] ^= 0x01;
    bad.push(("envelope_ephemeral_key_altered", recipients[0].clone(), eph));
    let mut zero = e0.clone();
    zero[4..36].copy_from_slice(&[0; 32]);
    bad.push((
        "envelope_small_order_ephemeral_key",
        recipients[0].clone(),
        zero,
    ));
    let mut short = Vec::new();
    pb_uint(&mut short, 1, 1);
    pb_bytes(&mut short, 2, &e0[4..36], false);
    pb_bytes(&mut short, 3, &e0[38..69], false);
    pb_bytes(&mut short, 4, &e0[72..], false);
    bad.push(("envelope_part_of_31_bytes", recipients[0].clone(), short));
    let mut extra = e0.clone();
    pb_uint(&mut extra, 5, 1);
    bad.push(("envelope_unknown_field", recipients[0].clone(), extra));
    for (name, r, bytes) in bad {
        let address = tacit::Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
        let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
        let error = match multi::open(&ik, &address, &bytes) {
            Ok(_) => return Err(format!("{name} opens")),
            Err(e) => error_name(&e),
        };
        file.invalid_envelopes.push(InvalidEnvelope {
            name: name.into(),
            recipient: r,
            bytes: HexBytes(bytes),
            error,
        });
    }
    Ok(())
}

/// Hands out its bytes for the first request of their length.
struct Fixed(Vec<u8>);

impl rand_core::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if dest.len() == self.0.len() {
            dest.copy_from_slice(&self.0);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Fixed {}
