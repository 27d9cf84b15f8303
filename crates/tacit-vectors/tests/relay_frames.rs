//! `test-vectors/relay-frames.json`: every case verifies, every frame kind
//! of `proto/relay.proto` is covered, and a changed byte or field fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tacit_vectors::relay_frames::{
    relay_frames_file, relay_schema, verify_relay_frames, RelayFramesFile,
};

fn committed() -> RelayFramesFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors/relay-frames.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn failures(file: &RelayFramesFile) -> Vec<String> {
    verify_relay_frames(file)
        .into_iter()
        .filter_map(|r| r.outcome.err().map(|e| format!("{}: {e}", r.name)))
        .collect()
}

#[test]
fn committed_frames_verify_and_match_a_fresh_generation() {
    let file = committed();
    assert_eq!(failures(&file), Vec::<String>::new());
    assert_eq!(file, relay_frames_file().unwrap());
}

/// Every member of the frames' oneofs (each request, each reply, each
/// push) appears in at least one case.
#[test]
fn every_frame_kind_is_covered() {
    let file = committed();
    let pool = relay_schema().unwrap();
    let seen = |cases: &[tacit_vectors::relay_frames::FrameCase], path: &[&str]| {
        cases
            .iter()
            .filter_map(|c| {
                let mut v = &c.fields;
                for p in path {
                    v = v.get(p)?;
                }
                Some(v.as_object()?.keys().cloned().collect::<Vec<_>>())
            })
            .flatten()
            .collect::<BTreeSet<_>>()
    };
    for (message, oneof, cases, path) in [
        ("ClientFrame", "request", &file.client_frames, &[][..]),
        ("ServerFrame", "kind", &file.server_frames, &[][..]),
        (
            "Response",
            "outcome",
            &file.server_frames,
            &["response"][..],
        ),
    ] {
        let descriptor = pool
            .get_message_by_name(&format!("tacit.relay.v1.{message}"))
            .unwrap();
        let oneof = descriptor.oneofs().find(|o| o.name() == oneof).unwrap();
        let present = seen(cases, path);
        for field in oneof.fields() {
            assert!(
                present.contains(field.name()),
                "{message}.{} has no case",
                field.name()
            );
        }
    }
}

/// Flips each byte of one frame's encoding in turn, and changes a field:
/// each change fails.
#[test]
fn a_changed_byte_or_field_fails() {
    let file = committed();
    let case = file
        .client_frames
        .iter()
        .position(|c| c.name == "submit_with_token")
        .unwrap();
    let bytes = hex::decode(&file.client_frames[case].encoded).unwrap();
    for i in 0..bytes.len() {
        let mut changed = file.clone();
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        changed.client_frames[case].encoded = hex::encode(b);
        assert!(!failures(&changed).is_empty(), "byte {i}");
    }
    let mut changed = file.clone();
    changed.client_frames[case].fields["request_id"] = Value::from(99);
    assert!(!failures(&changed).is_empty());
    let mut changed = file;
    changed.server_frames[0].fields["response"]["challenge"]["server_name"] =
        Value::String("relay.example.org".into());
    assert!(!failures(&changed).is_empty());
}
