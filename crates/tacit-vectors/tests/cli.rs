//! The `tacit-vectors` binary against the committed vectors, an independent
//! implementation's vectors, and files altered by one byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tacit-vectors"))
        .args(args)
        .output()
        .unwrap()
}

fn verify(files: &[&Path]) -> (bool, String) {
    let mut args: Vec<&Path> = vec![Path::new("verify")];
    args.extend_from_slice(files);
    let out = tool(&args);
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

/// A directory of its own for one test's files, removed when dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tacit-vectors-{name}-"))
        .tempdir()
        .unwrap()
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("test-vectors").join(name)).unwrap())
        .unwrap()
}

fn verify_value(value: &Value, name: &str) -> (bool, String) {
    let dir = scratch("mutated");
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    verify(&[&path])
}

/// Flips one bit of the second byte of a hex string (not the first: X25519
/// clamping ignores the low bits of a private key's first byte).
fn flip_hex(value: &mut Value) {
    let s = value.as_str().unwrap().to_owned();
    let mut bytes = hex::decode(&s).unwrap();
    bytes[1] ^= 0x01;
    *value = Value::String(hex::encode(bytes));
}

#[test]
fn committed_vectors_verify() {
    let x3dh = root().join("test-vectors/x3dh.json");
    let ratchet = root().join("test-vectors/ratchet.json");
    let envelope = root().join("test-vectors/envelope.json");
    let identity = root().join("test-vectors/identity.json");
    let pqxdh = root().join("test-vectors/pqxdh.json");
    let group = root().join("test-vectors/group.json");
    let frames = root().join("test-vectors/relay-frames.json");
    let (ok, out) = verify(&[
        &x3dh, &ratchet, &envelope, &identity, &pqxdh, &group, &frames,
    ]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(passed, out.lines().filter(|l| l.starts_with("ok ")).count());
    assert!(passed >= 173 + 79, "{out}");
}

#[test]
fn independent_implementation_vectors_verify() {
    let dir = root().join("tools/pyref/vectors");
    let (ok, out) = verify(&[
        &dir.join("x3dh.json"),
        &dir.join("ratchet.json"),
        &dir.join("pqxdh.json"),
        &dir.join("group.json"),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("ok pyref_siblings\n"), "{out}");
}

/// A replayed first message goes through the stored session (15.12), and a
/// version-1 bundle runs X3DH: relabelling either outcome must fail.
#[test]
fn pqxdh_replays_use_the_stored_session_and_v1_bundles_run_x3dh() {
    let file = load("pqxdh.json");
    let invalid = file["invalid"].as_array().unwrap();
    let replays: Vec<usize> = (0..invalid.len())
        .filter(|&i| {
            invalid[i]["name"]
                .as_str()
                .unwrap()
                .starts_with("first message replayed")
        })
        .collect();
    assert_eq!(replays.len(), 2);
    let v1 = invalid
        .iter()
        .position(|e| {
            e["name"] == "version-1 bundle with a signed prekey signed by another identity"
        })
        .unwrap();
    for (i, wrong) in [
        (replays[0], "unknown_one_time_prekey"),
        (replays[1], "unknown_one_time_prekey"),
        (v1, "version"),
    ] {
        let mut changed = file.clone();
        changed["invalid"][i]["error"] = Value::String(wrong.into());
        let (ok, out) = verify_value(&changed, "pqxdh.json");
        assert!(!ok, "{out}");
    }
    // The replayed bytes are the case's valid first message: delivered to a
    // responder without the session, they are accepted.
    let mut once = file.clone();
    once["invalid"][replays[1]]["after_first_message"] = Value::Bool(false);
    let (ok, out) = verify_value(&once, "pqxdh.json");
    assert!(!ok && out.contains("accepted"), "{out}");
}

#[test]
fn generation_is_deterministic_and_matches_the_committed_files() {
    let scratch = scratch("generated");
    let dir = scratch.path();
    let out = tool(&[Path::new("generate"), dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "x3dh.json",
        "ratchet.json",
        "envelope.json",
        "identity.json",
        "pqxdh.json",
        "group.json",
        "relay-frames.json",
    ] {
        let generated = std::fs::read(dir.join(name)).unwrap();
        let committed = std::fs::read(root().join("test-vectors").join(name)).unwrap();
        assert!(
            generated == committed,
            "{name} differs from a fresh generation"
        );
    }
}

#[test]
fn one_changed_byte_in_any_x3dh_expected_value_fails() {
    let original = load("x3dh.json");
    let fields = [
        "alice_identity_public",
        "bob_identity_public",
        "bob_signed_prekey_public",
        "bob_one_time_prekey_public",
        "alice_ephemeral_public",
        "sk",
        "ad",
        "root_key",
        "header_key_a",
        "next_header_key_b",
    ];
    for field in fields {
        let mut value = original.clone();
        flip_hex(&mut value["cases"][0]["expected"][field]);
        let name = value["cases"][0]["name"].as_str().unwrap().to_owned();
        let (ok, out) = verify_value(&value, "x3dh.json");
        assert!(!ok, "{field}: {out}");
        assert!(
            out.contains(&format!("FAIL {name}: {field}")),
            "{field}: {out}"
        );
        assert!(out.trim_end().ends_with("1 failed"), "{out}");
    }
}

#[test]
fn one_changed_byte_in_ratchet_outputs_fails() {
    let original = load("ratchet.json");
    for field in ["header", "enc_header", "ciphertext"] {
        let mut value = original.clone();
        flip_hex(&mut value["cases"][0]["messages"][1]["expected"][field]);
        let (ok, out) = verify_value(&value, "ratchet.json");
        assert!(!ok, "{field}: {out}");
        assert!(
            out.contains(&format!("{field}: expected")),
            "{field}: {out}"
        );
    }
    // A plaintext that does not come back.
    let mut value = original.clone();
    let plaintext = &mut value["cases"][0]["messages"][0]["plaintext"];
    *plaintext = Value::String(format!("{}00", plaintext.as_str().unwrap()));
    let (ok, out) = verify_value(&value, "ratchet.json");
    assert!(!ok, "{out}");
}

#[test]
fn changed_inputs_and_expectations_fail() {
    let original = load("ratchet.json");
    // A ratchet private key Alice uses.
    let mut value = original.clone();
    flip_hex(&mut value["cases"][0]["alice_ratchet_privates"][0]);
    assert!(!verify_value(&value, "ratchet.json").0);
    // A leftover private key.
    let mut value = original.clone();
    value["cases"][0]["bob_ratchet_privates"]
        .as_array_mut()
        .unwrap()
        .push(Value::String("11".repeat(32)));
    let (ok, out) = verify_value(&value, "ratchet.json");
    assert!(!ok && out.contains("left over"), "{out}");
    // A delivery that fails but is expected to work, and the reverse.
    let mut value = original.clone();
    let replay = value["cases"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "replay")
        .unwrap();
    let event = replay["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["expect"] == "error" && e["op"] == "deliver")
        .unwrap();
    event["expect"] = Value::String("ok".into());
    assert!(!verify_value(&value, "ratchet.json").0);
    let mut value = original.clone();
    let event = value["cases"][0]["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["op"] == "deliver")
        .unwrap();
    event["expect"] = Value::String("error".into());
    assert!(!verify_value(&value, "ratchet.json").0);
    // An invalid bundle relabelled with the other error.
    let mut value = load("x3dh.json");
    let entry = &mut value["invalid"][0];
    entry["error"] = Value::String(
        if entry["error"] == "signature" {
            "small_order"
        } else {
            "signature"
        }
        .into(),
    );
    assert!(!verify_value(&value, "x3dh.json").0);
}

#[test]
fn the_schema_is_closed_and_strict() {
    let original = load("x3dh.json");
    let mut extra = original.clone();
    extra["cases"][0]["expected"]["surprise"] = Value::Bool(true);
    assert!(!verify_value(&extra, "x3dh.json").0);
    let mut missing = original.clone();
    missing["cases"][0]
        .as_object_mut()
        .unwrap()
        .remove("bob_one_time_prekey_private");
    assert!(!verify_value(&missing, "x3dh.json").0);
    let mut upper = original.clone();
    let sk = upper["cases"][0]["expected"]["sk"]
        .as_str()
        .unwrap()
        .to_uppercase();
    upper["cases"][0]["expected"]["sk"] = Value::String(sk);
    assert!(!verify_value(&upper, "x3dh.json").0);
    let mut profile = original;
    profile["profile"] = Value::String("tacit-v2".into());
    assert!(!verify_value(&profile, "x3dh.json").0);

    let ratchet = load("ratchet.json");
    let mut unsent = ratchet.clone();
    let events = unsent["cases"][0]["events"].as_array_mut().unwrap();
    let last_send = events.iter().rposition(|e| e["op"] == "send").unwrap();
    events.remove(last_send);
    let (ok, out) = verify_value(&unsent, "ratchet.json");
    assert!(!ok, "{out}");
}

#[test]
fn duplicate_keys_are_refused() {
    let text = std::fs::read_to_string(root().join("test-vectors/x3dh.json")).unwrap();
    let duplicated = text.replacen(
        "\"profile\": \"tacit-v1\"",
        "\"profile\": \"tacit-v1\", \"profile\": \"tacit-v1\"",
        1,
    );
    assert_ne!(duplicated, text);
    let dir = scratch("duplicate");
    let path = dir.path().join("x3dh.json");
    std::fs::write(&path, duplicated).unwrap();
    let (ok, out) = verify(&[&path]);
    assert!(!ok && out.contains("duplicate field"), "{out}");
}

#[test]
fn unreadable_files_and_bad_usage_fail() {
    let (ok, out) = verify(&[Path::new("/nonexistent/tacit.json")]);
    assert!(!ok);
    assert!(out.contains("FAIL /nonexistent/tacit.json"), "{out}");
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");
    let out = tool(&[Path::new("frobnicate")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_envelope_file_holds_every_kind_of_entry() {
    let file = load("envelope.json");
    for (list, at_least) in [
        ("padding", 10),
        ("contents", 8),
        ("invalid_contents", 6),
        ("sealed", 4),
        ("invalid_sealed", 12),
    ] {
        assert!(file[list].as_array().unwrap().len() >= at_least, "{list}");
    }
    let errors: std::collections::BTreeSet<&str> = file["invalid_sealed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    for error in [
        "malformed",
        "invalid_ephemeral_key",
        "sender_does_not_open",
        "content_does_not_open",
        "sender_identity_mismatch",
    ] {
        assert!(errors.contains(error), "{error}");
    }
}

#[test]
fn one_changed_byte_in_any_envelope_expected_value_fails() {
    let original = load("envelope.json");
    for (list, field) in [
        ("sealed", "envelope"),
        ("sealed", "ephemeral_public"),
        ("sealed", "sender_identity_public"),
        ("sealed", "recipient_identity_public"),
        ("contents", "encoded"),
        ("contents", "padded"),
    ] {
        let mut value = original.clone();
        flip_hex(&mut value[list][1]["expected"][field]);
        let name = value[list][1]["name"].as_str().unwrap().to_owned();
        let (ok, out) = verify_value(&value, "envelope.json");
        assert!(!ok, "{field}: {out}");
        assert!(
            out.contains(&format!("FAIL {name}: {field}")),
            "{field}: {out}"
        );
        assert!(out.trim_end().ends_with("1 failed"), "{out}");
    }
    // A padded length off by one block.
    let mut value = original.clone();
    let padded = value["padding"][0]["padded_len"].as_u64().unwrap();
    value["padding"][0]["padded_len"] = Value::from(padded + 160);
    let (ok, out) = verify_value(&value, "envelope.json");
    assert!(!ok && out.contains("padded_len: expected"), "{out}");
}

#[test]
fn changed_envelope_inputs_and_errors_fail() {
    let original = load("envelope.json");
    // Each input of a sealed case changes the envelope.
    for field in [
        "sender_identity_seed",
        "sender_user_key_seed",
        "recipient_identity_seed",
        "ephemeral_private",
        "session_message",
    ] {
        let mut value = original.clone();
        flip_hex(&mut value["sealed"][1][field]);
        let (ok, out) = verify_value(&value, "envelope.json");
        assert!(!ok, "{field}: {out}");
    }
    for (field, new) in [
        ("sender_user_id", Value::from("mallory")),
        ("sender_device_id", Value::from(9)),
        ("recipient_device_id", Value::from(9)),
    ] {
        let mut value = original.clone();
        value["sealed"][1][field] = new;
        let (ok, out) = verify_value(&value, "envelope.json");
        assert!(!ok && out.contains("envelope: expected"), "{field}: {out}");
    }
    // An invalid envelope relabelled with another error, or repaired.
    let mut value = original.clone();
    let entry = value["invalid_sealed"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["error"] == "content_does_not_open")
        .unwrap();
    entry["error"] = Value::from("sender_does_not_open");
    let (ok, out) = verify_value(&value, "envelope.json");
    assert!(!ok && out.contains("expected error"), "{out}");
    let mut value = original.clone();
    value["invalid_sealed"][0]["envelope"] = original["sealed"][1]["expected"]["envelope"].clone();
    let (ok, out) = verify_value(&value, "envelope.json");
    assert!(!ok && out.contains("the envelope opened"), "{out}");
    // An invalid content that is in fact valid, and a relabelled one.
    let mut value = original.clone();
    value["invalid_contents"][0]["padded"] = original["contents"][0]["expected"]["padded"].clone();
    assert!(!verify_value(&value, "envelope.json").0);
    let mut value = original.clone();
    value["invalid_contents"][0]["error"] = Value::from("padding");
    assert!(!verify_value(&value, "envelope.json").0);
    // The schema is closed.
    let mut value = original.clone();
    value["sealed"][0]["surprise"] = Value::Bool(true);
    assert!(!verify_value(&value, "envelope.json").0);
    let mut value = original;
    value["contents"][0]["kind"] = Value::from("shout");
    assert!(!verify_value(&value, "envelope.json").0);
}

#[test]
fn the_identity_file_holds_every_kind_of_entry() {
    let file = load("identity.json");
    for (list, at_least) in [
        ("user_keys", 2),
        ("certificates", 3),
        ("device_lists", 6),
        ("sequences", 1),
        ("invalid_device_lists", 25),
        ("fingerprints", 1),
        ("safety_numbers", 2),
        ("link_codes", 4),
        ("link_code_texts", 10),
        ("link_requests", 2),
        ("link_responses", 1),
        ("invalid_link_blobs", 20),
        ("relay_transcripts", 3),
    ] {
        assert!(file[list].as_array().unwrap().len() >= at_least, "{list}");
    }
    let errors: std::collections::BTreeSet<&str> = file["invalid_device_lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    for error in [
        "oversize",
        "malformed",
        "non_canonical",
        "unknown_version",
        "missing_field",
        "invalid_length",
        "invalid_key",
        "invalid_value",
        "invalid_certificate",
        "invalid_list_signature",
    ] {
        assert!(errors.contains(error), "{error}");
    }
    // libsignal's published vector is among the fingerprints.
    assert_eq!(
        file["fingerprints"][0]["expected"],
        "300354477692869396892869876765458257569162576843440918079131"
    );
}

#[test]
fn one_changed_byte_in_any_identity_expected_value_fails() {
    let original = load("identity.json");
    let cases: [(&str, usize, &[&str], &str); 10] = [
        ("user_keys", 0, &["expected", "user_key"], "user_key"),
        ("certificates", 0, &["expected", "user_key"], "user_key"),
        (
            "certificates",
            0,
            &["expected", "identity_key"],
            "identity_key",
        ),
        ("certificates", 0, &["expected", "cert_tbs"], "cert_tbs"),
        (
            "certificates",
            0,
            &["expected", "certificate"],
            "certificate",
        ),
        ("device_lists", 1, &["expected", "user_key"], "user_key"),
        ("device_lists", 1, &["expected", "list_tbs"], "list_tbs"),
        ("device_lists", 1, &["expected", "signature"], "signature"),
        ("device_lists", 1, &["expected", "wire"], "wire"),
        (
            "safety_numbers",
            0,
            &["expected", "local_user_key"],
            "local_user_key",
        ),
    ];
    for (list, index, path, label) in cases {
        let mut value = original.clone();
        let mut target = &mut value[list][index];
        for key in path {
            target = &mut target[*key];
        }
        flip_hex(target);
        let name = value[list][index]["name"].as_str().unwrap().to_owned();
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok, "{list}.{path:?}: {out}");
        assert!(
            out.contains(&format!("FAIL {name}: {label}")),
            "{list}.{path:?}: {out}"
        );
        // The sequence and the link response that name the list use its
        // wire too.
        let failed = if label == "wire" {
            "3 failed"
        } else {
            "1 failed"
        };
        assert!(out.trim_end().ends_with(failed), "{out}");
    }
    for field in ["identity_key", "certificate"] {
        let mut value = original.clone();
        flip_hex(&mut value["device_lists"][1]["expected"]["devices"][2][field]);
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok && out.contains(&format!(": {field}")), "{field}: {out}");
    }
    // One digit of a safety number and of libsignal's fingerprint.
    for (list, field) in [("safety_numbers", "safety_number"), ("fingerprints", "")] {
        let mut value = original.clone();
        let target = if field.is_empty() {
            &mut value[list][0]["expected"]
        } else {
            &mut value[list][0]["expected"][field]
        };
        let digits = target.as_str().unwrap().to_owned();
        let changed = if digits.starts_with('9') { "0" } else { "9" };
        *target = Value::from(format!("{changed}{}", &digits[1..]));
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok && out.trim_end().ends_with("1 failed"), "{list}: {out}");
    }
}

#[test]
fn changed_identity_inputs_and_errors_fail() {
    let original = load("identity.json");
    // Each input of a list changes its outputs.
    for (field, new) in [
        ("user_key_seed", None),
        ("user_id", Some(Value::from("mallory"))),
        ("version", Some(Value::from(7))),
    ] {
        let mut value = original.clone();
        match new {
            Some(new) => value["device_lists"][1][field] = new,
            None => flip_hex(&mut value["device_lists"][1][field]),
        }
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok, "{field}: {out}");
    }
    for field in ["identity_seed", "added_at_ms"] {
        let mut value = original.clone();
        let device = &mut value["device_lists"][1]["devices"][0];
        if field == "added_at_ms" {
            device[field] = Value::from(device[field].as_u64().unwrap() + 1);
        } else {
            flip_hex(&mut device[field]);
        }
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok, "{field}: {out}");
    }
    // A refused list relabelled: another error, another field, another
    // device; and a valid list among the refused ones.
    let mut value = original.clone();
    let entry = value["invalid_device_lists"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["error"] == "invalid_list_signature")
        .unwrap();
    entry["error"] = Value::from("non_canonical");
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains("expected error"), "{out}");
    let mut value = original.clone();
    let entry = value["invalid_device_lists"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["field"] == "version")
        .unwrap();
    entry["field"] = Value::from("devices");
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    let entry = value["invalid_device_lists"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["error"] == "invalid_certificate")
        .unwrap();
    let device = entry["device_id"].as_u64().unwrap();
    entry["device_id"] = Value::from(device + 1);
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    value["invalid_device_lists"][0]["wire"] =
        original["device_lists"][0]["expected"]["wire"].clone();
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains("the list verified"), "{out}");
    // A sequence whose versions go down.
    let mut value = original.clone();
    value["sequences"][0]["lists"]
        .as_array_mut()
        .unwrap()
        .reverse();
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains("does not grow"), "{out}");
    // The schema is closed; `field` and `device_id` must be present.
    let mut value = original.clone();
    value["device_lists"][0]["expected"]["surprise"] = Value::Bool(true);
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original;
    value["invalid_device_lists"][0]
        .as_object_mut()
        .unwrap()
        .remove("device_id");
    assert!(!verify_value(&value, "identity.json").0);
}

#[test]
fn one_changed_byte_in_any_link_or_transcript_expected_value_fails() {
    let original = load("identity.json");
    let cases: [(&str, usize, &str); 14] = [
        ("link_codes", 2, "request_slot"),
        ("link_codes", 2, "response_slot"),
        ("link_codes", 2, "key"),
        ("link_requests", 0, "identity_key"),
        ("link_requests", 0, "payload"),
        ("link_requests", 0, "blob"),
        ("link_requests", 1, "blob"),
        ("link_responses", 0, "blob"),
        ("relay_transcripts", 0, "identity_key"),
        ("relay_transcripts", 0, "register_transcript"),
        ("relay_transcripts", 0, "register_signature"),
        ("relay_transcripts", 0, "login_transcript"),
        ("relay_transcripts", 0, "login_signature"),
        ("relay_transcripts", 1, "login_signature"),
    ];
    for (list, index, field) in cases {
        let mut value = original.clone();
        flip_hex(&mut value[list][index]["expected"][field]);
        let name = value[list][index]["name"].as_str().unwrap().to_owned();
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok, "{list}.{field}: {out}");
        assert!(
            out.contains(&format!("FAIL {name}: {field}")),
            "{list}.{field}: {out}"
        );
        assert!(out.trim_end().ends_with("1 failed"), "{out}");
    }
    // One character of a code's text.
    let mut value = original.clone();
    let text = value["link_codes"][2]["expected"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let changed = if text.starts_with('A') { "B" } else { "A" };
    value["link_codes"][2]["expected"]["text"] = Value::from(format!("{changed}{}", &text[1..]));
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains(": text"), "{out}");
}

#[test]
fn changed_link_and_transcript_inputs_and_errors_fail() {
    let original = load("identity.json");
    // Each random input and each other input changes the outputs.
    for (list, field) in [
        ("link_codes", "code"),
        ("link_requests", "code"),
        ("link_requests", "nonce"),
        ("link_requests", "identity_seed"),
        ("link_responses", "code"),
        ("link_responses", "nonce"),
        ("relay_transcripts", "identity_seed"),
        ("relay_transcripts", "challenge"),
    ] {
        let mut value = original.clone();
        flip_hex(&mut value[list][0][field]);
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(
            !ok && out.trim_end().ends_with("1 failed"),
            "{list}.{field}: {out}"
        );
    }
    for (list, field, new) in [
        ("link_requests", "user_id", Value::from("alicf")),
        ("link_requests", "device_id", Value::from(4)),
        ("link_responses", "device_list", Value::from("list_v1")),
        (
            "relay_transcripts",
            "server_name",
            Value::from("relay.example.net"),
        ),
        ("relay_transcripts", "timestamp_ms", Value::from(1)),
        ("relay_transcripts", "user_id", Value::from("alicf")),
        ("relay_transcripts", "device_id", Value::from(2)),
    ] {
        let mut value = original.clone();
        value[list][0][field] = new;
        let (ok, out) = verify_value(&value, "identity.json");
        assert!(!ok, "{list}.{field}: {out}");
    }
    // A typed code: an accepted text said to be refused, a refused one
    // said to give a code, and an accepted one giving another code.
    let texts = original["link_code_texts"].as_array().unwrap();
    let accepted = texts.iter().position(|e| !e["code"].is_null()).unwrap();
    let refused = texts.iter().position(|e| e["code"].is_null()).unwrap();
    let mut value = original.clone();
    value["link_code_texts"][accepted]["code"] = Value::Null;
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    value["link_code_texts"][refused]["code"] = texts[accepted]["code"].clone();
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    flip_hex(&mut value["link_code_texts"][accepted]["code"]);
    assert!(!verify_value(&value, "identity.json").0);
    // A refused blob relabelled, read from the other slot, or replaced by
    // a blob that opens.
    let blobs = original["invalid_link_blobs"].as_array().unwrap();
    let malformed = blobs
        .iter()
        .position(|e| e["error"] == "malformed_link_request")
        .unwrap();
    let mut value = original.clone();
    value["invalid_link_blobs"][malformed]["error"] = Value::from("link_blob_does_not_open");
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains("expected error"), "{out}");
    let mut value = original.clone();
    value["invalid_link_blobs"][malformed]["slot"] = Value::from("response");
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    let request = &original["link_requests"][0];
    value["invalid_link_blobs"][malformed]["code"] = request["code"].clone();
    value["invalid_link_blobs"][malformed]["blob"] = request["expected"]["blob"].clone();
    let (ok, out) = verify_value(&value, "identity.json");
    assert!(!ok && out.contains("the blob opened"), "{out}");
    // The schema is closed; a typed code's `code` must be present; the
    // slot and the error are named values.
    let mut value = original.clone();
    value["link_requests"][0]["expected"]["surprise"] = Value::Bool(true);
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    value["link_code_texts"][refused]
        .as_object_mut()
        .unwrap()
        .remove("code");
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original.clone();
    value["invalid_link_blobs"][0]["slot"] = Value::from("elsewhere");
    assert!(!verify_value(&value, "identity.json").0);
    let mut value = original;
    value["relay_transcripts"]
        .as_array_mut()
        .unwrap()
        .push(Value::from(0));
    assert!(!verify_value(&value, "identity.json").0);
}
