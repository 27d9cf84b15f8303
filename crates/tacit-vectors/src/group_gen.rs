//! Generates `group.json` (`docs/PROTOCOL.md` 16.9): every input from a
//! fixed label, every expected value from `group`'s encodings and the
//! core, the whole file verified before it is written.

use tacit::IdentityKeyPair;

use crate::generate::derive;
use crate::group::{
    message_bytes, receive_error, ChainStep, ChainSteps, ContentFields, DistributionCase,
    GroupFile, InvalidBytes, InvalidMessage, MessageCase, MessageExpected, Receiver,
};
use crate::group_wire::{chain_step, encode_distribution, pb_bytes, pb_uint};
use crate::schema::{Hex, HexBytes};

pub(crate) fn d(label: &str) -> Hex<32> {
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
    crate::group_gen_states::states(&mut file)?;
    crate::group_gen_multi::multi_cases(&mut file)?;
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
    let body = |iteration: u32| {
        let mut out = Vec::new();
        pb_uint(&mut out, 1, 1);
        pb_bytes(&mut out, 2, &group_id.0, false);
        pb_bytes(&mut out, 3, &state.0, false);
        pb_bytes(&mut out, 4, &signing_key.0, false);
        pb_uint(&mut out, 5, u64::from(iteration));
        pb_bytes(&mut out, 6, &ciphertext_of(&m0b), false);
        out
    };
    // The iteration field changed, the sender's signature kept.
    let mut relabelled = body(1);
    relabelled.extend_from_slice(&m0b[body_len..]);
    push(
        "tampered_iteration_field",
        receiver(1000),
        vec![],
        relabelled,
    );
    let mut bad_aead = body(1);
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
    let mut max_iteration = body(u32::MAX);
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

    let dist = |name: &str, i: u32, owner: &str, device: u32| {
        let mut c = DistributionCase {
            name: name.into(),
            group_id,
            state_hash: state,
            signing_seed: seed,
            iteration: i,
            chain_key: Hex(ck_at(ck0, i)),
            owner_user_id: owner.into(),
            owner_device_id: device,
            expected: HexBytes(Vec::new()),
        };
        c.expected = HexBytes(encode_distribution(&c));
        c
    };
    let d0 = dist("distribution_iteration_0", 0, "alice", 1);
    let d9 = dist("distribution_iteration_9", 9, "bob@example.org", 70_000);
    let good = d0.expected.0.clone();
    let mut bad = Vec::new();
    let mut small = good.clone();
    small[72..104].copy_from_slice(&{
        let mut p = [0u8; 32];
        p[0] = 1; // the identity point, of small order
        p
    });
    bad.push(("distribution_small_order_signing_key", small));
    // The owner signature (66 bytes with its tag and length) is last,
    // after the chain key (34).
    let (fields, owner_signature) = good.split_at(good.len() - 66);
    let mut short = fields[..fields.len() - 34].to_vec();
    pb_bytes(&mut short, 6, &[7u8; 31], false);
    short.extend_from_slice(owner_signature);
    bad.push(("distribution_chain_key_of_31_bytes", short));
    bad.push(("distribution_without_owner_signature", fields.to_vec()));
    let mut short_signature = fields.to_vec();
    pb_bytes(&mut short_signature, 7, &owner_signature[2..65], false);
    bad.push(("distribution_owner_signature_of_63_bytes", short_signature));
    let mut noncanon = good.clone();
    pb_uint(&mut noncanon, 9, 1);
    bad.push(("distribution_unknown_field", noncanon));
    for (name, bytes) in bad {
        let error = match tacit::group::SenderChainDistribution::from_bytes(&bytes) {
            Ok(_) => return Err(format!("{name} decodes")),
            Err(e) => crate::group::error_name(&e),
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

pub(crate) fn empty() -> GroupFile {
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
