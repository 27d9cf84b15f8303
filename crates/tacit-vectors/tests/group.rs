//! `group.json` (PROTOCOL 16.9): the shipped file covers what 16.9 lists,
//! and one changed byte, error, outcome or input makes exactly the entry
//! it belongs to fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tacit_vectors::group::{verify_group, GroupFile};

fn load() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors/group.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The names of the entries that fail.
fn failures(value: &Value) -> Vec<String> {
    let file: GroupFile = serde_json::from_value(value.clone()).unwrap();
    verify_group(&file)
        .into_iter()
        .filter(|r| r.outcome.is_err())
        .map(|r| format!("{}: {}", r.name, r.outcome.unwrap_err()))
        .collect()
}

/// Exactly the entry `name` fails, for a reason containing `reason`.
fn only_fails(value: &Value, name: &str, reason: &str) {
    let failed = failures(value);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with(&format!("{name}: ")) && failed[0].contains(reason),
        "{failed:?}"
    );
}

fn flip(value: &mut Value, byte: usize) {
    let mut bytes = hex::decode(value.as_str().unwrap()).unwrap();
    bytes[byte] ^= 0x01;
    *value = Value::String(hex::encode(bytes));
}

fn entry<'a>(file: &'a mut Value, list: &str, name: &str) -> &'a mut Value {
    file[list]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn the_shipped_file_verifies_and_holds_every_case_of_16_9() {
    let file = load();
    assert!(failures(&file).is_empty());
    let names = |list: &str| -> BTreeSet<String> {
        file[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let errors = |list: &str| -> BTreeSet<String> {
        file[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["error"].as_str().unwrap().to_owned())
            .collect()
    };
    // Names are unique in each list.
    for list in file.as_object().unwrap().keys().filter(|k| *k != "profile") {
        assert_eq!(names(list).len(), file[list].as_array().unwrap().len());
        assert!(!names(list).is_empty(), "{list}");
    }
    let steps: Vec<u64> = file["chain_steps"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["iteration"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).any(|w| w[1] > w[0] + 1), "a jump");
    for e in [
        "InvalidSignature",
        "AuthenticationFailed",
        "WrongState",
        "UnknownChain",
        "DuplicateOrExpired",
        "TooManySkipped",
        "Wire(NonCanonical)",
    ] {
        assert!(errors("invalid_messages").contains(e), "{e}");
    }
    let outcomes: BTreeSet<String> = file["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["apply"].as_array().unwrap().clone())
        .map(|s| s["outcome"].as_str().unwrap().to_owned())
        .collect();
    for o in [
        "accepted",
        "advanced",
        "switched_to_winner",
        "lost",
        "Unauthorised",
        "SignerNotMember(\"mallory\")",
        "InvalidCertificate",
        "WrongEpoch { expected: 1, actual: 2 }",
        "NoAdmin",
        "AlreadyApplied",
        "Stale { epoch: 1, oldest: 1 }",
        "UnknownParent(1)",
    ] {
        assert!(outcomes.contains(o), "{o}");
    }
    for e in ["StateCount(3)", "WrongParent", "NoAdmin"] {
        assert!(errors("invalid_controls").contains(e), "{e}");
    }
    for e in [
        "DoesNotOpen",
        "InvalidEphemeralKey",
        "Malformed(NonCanonical)",
    ] {
        assert!(errors("invalid_envelopes").contains(e), "{e}");
    }
}

#[test]
fn one_changed_byte_in_an_output_fails_its_entry() {
    let original = load();
    let cases: [(&str, &str, &[&str], usize, &str); 12] = [
        (
            "chain_steps",
            "chain_steps_with_jumps",
            &["steps", "3", "nonce"],
            0,
            "nonce",
        ),
        (
            "chain_steps",
            "chain_steps_with_jumps",
            &["steps", "4", "chain_key"],
            5,
            "chain_key",
        ),
        (
            "messages",
            "message_text_iteration_7",
            &["expected", "message"],
            150,
            "message",
        ),
        (
            "distributions",
            "distribution_iteration_9",
            &["expected"],
            40,
            "expected",
        ),
        (
            "signers",
            "alice_2_other_user_key",
            &["expected", "certificate"],
            3,
            "certificate",
        ),
        (
            "group_states",
            "s1_carol_added",
            &["expected", "state"],
            10,
            "state",
        ),
        (
            "group_states",
            "s1_carol_added",
            &["expected", "signed"],
            200,
            "signed",
        ),
        (
            "group_states",
            "s2_retitled",
            &["expected", "hash"],
            0,
            "hash",
        ),
        (
            "controls",
            "control_join_parent_and_new",
            &["expected", "session_control_body"],
            300,
            "session_control_body",
        ),
        (
            "multi",
            "multi_three_devices",
            &["expected", "parts", "1"],
            2,
            "parts[1]",
        ),
        (
            "multi",
            "multi_three_devices",
            &["expected", "envelopes", "2"],
            2,
            "envelopes[2]",
        ),
        (
            "multi",
            "multi_three_devices",
            &["expected", "shared_payload"],
            60,
            "shared_payload",
        ),
    ];
    for (list, name, path, byte, reason) in cases {
        let mut value = original.clone();
        let mut at = entry(&mut value, list, name);
        for p in path {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        flip(at, byte);
        only_fails(&value, name, reason);
    }
}

#[test]
fn another_error_or_outcome_fails_its_entry() {
    let original = load();
    for (list, name, field, wrong) in [
        (
            "invalid_messages",
            "forged_signature",
            "error",
            "AuthenticationFailed",
        ),
        (
            "invalid_messages",
            "signed_but_does_not_open",
            "error",
            "InvalidSignature",
        ),
        (
            "invalid_messages",
            "beyond_max_skip",
            "error",
            "DuplicateOrExpired",
        ),
        (
            "invalid_messages",
            "signature_of_63_bytes",
            "error",
            "Wire(InvalidLength { field: \"signature\", expected: 64, actual: 62 })",
        ),
        (
            "invalid_distributions",
            "distribution_small_order_signing_key",
            "error",
            "InvalidKey { field: \"signing_key\", error: InvalidIdentityKey }",
        ),
        (
            "invalid_controls",
            "control_three_states",
            "error",
            "StateCount(2)",
        ),
        (
            "invalid_seals",
            "seal_same_address_twice",
            "error",
            "DuplicateRecipient { index: 1 }",
        ),
        (
            "invalid_envelopes",
            "envelope_small_order_ephemeral_key",
            "error",
            "DoesNotOpen",
        ),
    ] {
        let mut value = original.clone();
        entry(&mut value, list, name)[field] = Value::String(wrong.into());
        only_fails(&value, name, "expected");
    }
    // A transition's outcome, and the state it ends on.
    let mut value = original.clone();
    entry(&mut value, "transitions", "siblings_retitled_first")["apply"][1]["outcome"] =
        Value::String("lost".into());
    only_fails(&value, "siblings_retitled_first", "switched_to_winner");
    let mut value = original.clone();
    entry(&mut value, "transitions", "siblings_added_first")["current"] =
        Value::String("s1_retitled".into());
    only_fails(&value, "siblings_added_first", "current");
    // A state said to decode that does not, and the reverse.
    let mut value = original.clone();
    entry(&mut value, "group_states", "bad_last_admin_leaves")["expected"]["decode_error"] =
        Value::Null;
    only_fails(&value, "bad_last_admin_leaves", "NoAdmin");
    let mut value = original.clone();
    entry(&mut value, "group_states", "s0_created")["expected"]["decode_error"] =
        Value::String("NoAdmin".into());
    only_fails(&value, "s0_created", "decoded");
}

#[test]
fn an_invalid_entry_whose_bytes_are_valid_fails() {
    let original = load();
    // The duplicate, delivered once only, decrypts.
    let mut value = original.clone();
    entry(&mut value, "invalid_messages", "duplicate")["deliver_first"] = Value::Array(vec![]);
    only_fails(&value, "duplicate", "decrypted");
    // Within max_skip, the message decrypts.
    let mut value = original.clone();
    entry(&mut value, "invalid_messages", "beyond_max_skip")["receiver"]["max_skip"] =
        Value::from(7);
    only_fails(&value, "beyond_max_skip", "decrypted");
    // The envelope of another device, opened by its own device.
    let mut value = original.clone();
    let own = value["multi"][0]["recipients"][0].clone();
    entry(
        &mut value,
        "invalid_envelopes",
        "envelope_for_another_device",
    )["recipient"] = own;
    only_fails(&value, "envelope_for_another_device", "accepted");
    // A forged state signed by an admin instead of a plain member.
    let mut value = original.clone();
    entry(&mut value, "group_states", "bad_retitle_by_plain_member")["signer"] =
        Value::String("alice_1".into());
    let failed = failures(&value);
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("bad_retitle_by_plain_member: ")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("unauthorised_change: ")),
        "{failed:?}"
    );
}

#[test]
fn a_changed_input_fails_its_entry() {
    let original = load();
    let mut value = original.clone();
    flip(
        &mut entry(&mut value, "messages", "message_text_iteration_0")["content"]["body"],
        0,
    );
    only_fails(&value, "message_text_iteration_0", "message");
    let mut value = original.clone();
    entry(&mut value, "messages", "message_typing_iteration_1")["iteration"] = Value::from(2);
    only_fails(&value, "message_typing_iteration_1", "message");
    let mut value = original.clone();
    flip(
        &mut entry(&mut value, "multi", "multi_three_devices")["rng"],
        0,
    );
    only_fails(&value, "multi_three_devices", "shared_payload");
    let mut value = original.clone();
    flip(
        &mut entry(&mut value, "multi", "multi_three_devices")["rng"],
        40,
    );
    only_fails(&value, "multi_three_devices", "ephemeral_key");
    let mut value = original.clone();
    entry(&mut value, "signers", "bob_1")["device_id"] = Value::from(2);
    let failed = failures(&value);
    assert!(
        failed.iter().any(|f| f.starts_with("bob_1: certificate")),
        "{failed:?}"
    );
}

/// 16.3's fork choice as 16.9 ships it: the admin's change beats bob's
/// leave in both orders although the leave has the lower hash; between the
/// two plain members' leaves the lower hash wins in both orders.
#[test]
fn the_fork_choice_cases_are_shipped() {
    let mut file = load();
    let hash = |file: &Value, name: &str| -> String {
        file["group_states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["expected"]["hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let admin = hash(&file, "s2_admin_above_the_leave");
    let bob = hash(&file, "s2_bob_leaves");
    let carol = hash(&file, "s2_carol_leaves");
    // Lowercase hex of equal length orders as the big-endian numbers.
    assert!(bob < admin, "the leave has the lower hash");
    let lower = if bob < carol {
        "s2_bob_leaves"
    } else {
        "s2_carol_leaves"
    };
    for (name, outcomes, current) in [
        (
            "admin_beats_a_lower_leave_leave_first",
            ["advanced", "switched_to_winner"],
            "s2_admin_above_the_leave",
        ),
        (
            "admin_beats_a_lower_leave_admin_first",
            ["advanced", "lost"],
            "s2_admin_above_the_leave",
        ),
        (
            "leaves_race_on_hash_bob_first",
            if lower == "s2_bob_leaves" {
                ["advanced", "lost"]
            } else {
                ["advanced", "switched_to_winner"]
            },
            lower,
        ),
        (
            "leaves_race_on_hash_carol_first",
            if lower == "s2_carol_leaves" {
                ["advanced", "lost"]
            } else {
                ["advanced", "switched_to_winner"]
            },
            lower,
        ),
    ] {
        let t = entry(&mut file, "transitions", name).clone();
        let got: Vec<&str> = t["apply"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(got, outcomes, "{name}");
        assert_eq!(t["current"], current, "{name}");
    }
    // Were the leave to win on hash alone, the file would say otherwise:
    // the verifier refuses the hash-only outcome.
    let t = entry(
        &mut file,
        "transitions",
        "admin_beats_a_lower_leave_admin_first",
    );
    t["apply"][1]["outcome"] = "switched_to_winner".into();
    only_fails(
        &file,
        "admin_beats_a_lower_leave_admin_first",
        "switched_to_winner",
    );
}
