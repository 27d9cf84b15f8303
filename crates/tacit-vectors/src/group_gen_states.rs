//! `group.json`'s signers, signed group states, transitions and controls
//! (`docs/PROTOCOL.md` 16.2 to 16.4, 16.9).

use tacit::identity::UserKeyPair;
use tacit::IdentityKeyPair;

use crate::group::{
    error_name, run_transition, ApplyStep, ControlCase, ControlExpected, GroupFile, InvalidBytes,
    MemberFields, SignerCase, SignerExpected, StateCase, StateExpected, TransitionCase,
};
use crate::group_gen::d;
use crate::group_wire::{certificate, encode_control, encode_signed, encode_state, state_hash};
use crate::schema::{Hex, HexBytes};

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
    s.expected.certificate = Hex(certificate(&s));
    s
}

pub(crate) fn states(file: &mut GroupFile) -> Result<(), String> {
    let signers = vec![
        signer("alice_1", "alice", 1, "alice"),
        signer("bob_1", "bob", 1, "bob"),
        signer("carol_1", "carol", 1, "carol"),
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
    // Concurrent changes of s1_carol_added (16.3): two plain members'
    // leaves, and an admin's change whose hash is above bob's leave (its
    // title varied until it is), so that the leave has the lower hash and
    // still loses.
    let bob_leaves = add(
        &mut list,
        "s2_bob_leaves",
        2,
        Some(h1),
        "Tacit",
        vec![member("alice", 1), member("carol", 2)],
        "bob_1",
    )?;
    let carol_leaves = add(
        &mut list,
        "s2_carol_leaves",
        2,
        Some(h1),
        "Tacit",
        ab(),
        "carol_1",
    )?;
    let mut round = 0u32;
    loop {
        let title = format!("Tacit, admin's change {round}");
        let admin = add(
            &mut list,
            "s2_admin_above_the_leave",
            2,
            Some(h1),
            &title,
            vec![member("alice", 1), member("bob", 2), member("carol", 2)],
            "alice_1",
        )?;
        if admin > bob_leaves {
            break;
        }
        list.pop();
        round += 1;
    }
    let lower_leave = if bob_leaves < carol_leaves {
        "s2_bob_leaves"
    } else {
        "s2_carol_leaves"
    };
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
        t(
            "admin_beats_a_lower_leave_leave_first",
            &["s0_created", "s1_carol_added"],
            &["s2_bob_leaves", "s2_admin_above_the_leave"],
            Some("s2_admin_above_the_leave"),
        ),
        t(
            "admin_beats_a_lower_leave_admin_first",
            &["s0_created", "s1_carol_added"],
            &["s2_admin_above_the_leave", "s2_bob_leaves"],
            Some("s2_admin_above_the_leave"),
        ),
        t(
            "leaves_race_on_hash_bob_first",
            &["s0_created", "s1_carol_added"],
            &["s2_bob_leaves", "s2_carol_leaves"],
            Some(lower_leave),
        ),
        t(
            "leaves_race_on_hash_carol_first",
            &["s0_created", "s1_carol_added"],
            &["s2_carol_leaves", "s2_bob_leaves"],
            Some(lower_leave),
        ),
    ];
    for c in &mut cases {
        let (outcomes, current) = run_transition(c, file)?;
        // Where the rule of 16.3 names the winner, the core must agree.
        if let Some(named) = &c.current {
            let hash = file
                .group_states
                .iter()
                .find(|s| &s.name == named)
                .map(|s| s.expected.hash.0);
            if !c.history.is_empty() && hash != current {
                return Err(format!("{}: the core ends elsewhere", c.name));
            }
        }
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
