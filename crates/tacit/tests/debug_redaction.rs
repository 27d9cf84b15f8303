#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `Debug` output never shows a secret: not as hex (either case, or any
//! 8-byte piece of it), nor as a list of byte values, in compact or pretty
//! form, for sessions (with skipped keys stored), session keys, X3DH
//! results, identity key pairs, key pairs and secret bytes.

mod common;

use common::{assert_decrypts, rng, session, Record};
use sha2::{Digest, Sha512};
use tacit::keys::{IdentityKeyPair, KeyPair, SecretKey32};
use tacit::ratchet::RatchetConfig;
use tacit::x3dh;
use tacit::PreKeyBundle;

/// Whether `text` shows any 8 consecutive bytes of `secret` as hex, or any
/// 6 consecutive bytes of it as decimal numbers in order.
fn leaks(text: &str, secret: &[u8; 32]) -> Option<String> {
    let lower = text.to_lowercase();
    let hex = hex::encode(secret);
    for start in 0..=24 {
        let piece = &hex[2 * start..2 * start + 16];
        if lower.contains(piece) {
            return Some(piece.to_owned());
        }
    }
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let bytes: Vec<u64> = secret.iter().map(|&b| u64::from(b)).collect();
    for window in bytes.windows(6) {
        if numbers.windows(6).any(|w| w == window) {
            return Some(format!("{window:?}"));
        }
    }
    None
}

#[track_caller]
fn assert_redacted(what: &str, text: &str, secrets: &[[u8; 32]]) {
    for secret in secrets {
        if let Some(piece) = leaks(text, secret) {
            panic!("{what} shows secret bytes {piece}: {text}");
        }
    }
}

/// X25519 private keys as stored and as clamped.
fn with_clamped(private: [u8; 32]) -> [[u8; 32]; 2] {
    let mut clamped = private;
    clamped[0] &= 248;
    clamped[31] &= 127;
    clamped[31] |= 64;
    [private, clamped]
}

#[test]
fn the_leak_detector_finds_what_it_looks_for() {
    let secret: [u8; 32] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    assert!(leaks(&hex::encode(secret), &secret).is_some());
    assert!(leaks(&hex::encode_upper(&secret[10..20]), &secret).is_some());
    assert!(leaks(&format!("{secret:?}"), &secret).is_some());
    assert!(leaks(&format!("{secret:#?}"), &secret).is_some());
    assert!(leaks("nothing to see here, 1, 2, 3", &secret).is_none());
    // Public keys are printed, as hex: the same detector sees them.
    let pair = KeyPair::generate(&mut rng(1));
    assert!(leaks(&format!("{pair:?}"), &pair.public_key().to_bytes()).is_some());
}

#[test]
fn debug_output_shows_no_secret() {
    let mut r = rng(2);
    let alice_id = IdentityKeyPair::generate(&mut r);
    let bob_id = IdentityKeyPair::generate(&mut r);
    let spk = KeyPair::generate(&mut r);
    let opk = KeyPair::generate(&mut r);
    let mut secrets = Vec::new();
    for id in [&alice_id, &bob_id] {
        let seed = *id.seed().as_bytes();
        secrets.push(seed);
        let scalar: [u8; 32] = Sha512::digest(seed)[..32].try_into().unwrap();
        secrets.extend(with_clamped(scalar));
    }
    for pair in [&spk, &opk] {
        secrets.extend(with_clamped(*pair.private_bytes().as_bytes()));
    }

    let bundle = PreKeyBundle {
        identity_key: bob_id.public_key(),
        signed_prekey: spk.public_key(),
        signed_prekey_signature: bob_id.sign_prekey(&spk.public_key()),
        one_time_prekey: Some(opk.public_key()),
        kem_prekey: None,
    };
    let mut ek = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut r.clone(), &mut ek);
    secrets.extend(with_clamped(ek));
    let init = x3dh::initiate(&alice_id, &bundle, &mut r).unwrap();
    let agreement = x3dh::respond(
        &bob_id,
        &spk,
        Some(&opk),
        &alice_id.public_key(),
        &init.ephemeral_key,
    )
    .unwrap();
    let keys = agreement.session_keys();
    secrets.push(*agreement.shared_secret().as_bytes());
    secrets.push(*keys.root_key().as_bytes());
    secrets.push(*keys.initiator_header_key().as_bytes());
    secrets.push(*keys.responder_next_header_key().as_bytes());

    // Sessions with state in every field, skipped keys included.
    let mut s = session(RatchetConfig::default(), 3);
    let a: Vec<_> = (0..4).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[3], "a3", true);
    let b: Vec<_> = (0..3).map(|i| s.b(&format!("b{i}"))).collect();
    assert_decrypts(&mut s.alice, &b[2], "b2", true);
    assert!(s.alice.skipped_key_count() > 0 && s.bob.skipped_key_count() > 0);
    for r in [&s.alice, &s.bob] {
        let record = Record::of(r);
        secrets.extend(record.secrets());
        secrets.extend(with_clamped(record.ratchet_private_key));
    }
    secrets.push(*s.keys.root_key().as_bytes());
    secrets.push(*s.keys.initiator_header_key().as_bytes());
    secrets.push(*s.keys.responder_next_header_key().as_bytes());

    let seed = alice_id.seed();
    let secret32 = SecretKey32::from_bytes([0x3c; 32]);
    secrets.push([0x3c; 32]);
    let fresh = session(RatchetConfig::default(), 4);
    for r in [&fresh.alice, &fresh.bob] {
        secrets.extend(Record::of(r).secrets());
    }

    let outputs: Vec<(&str, String, String)> = vec![
        (
            "IdentityKeyPair",
            format!("{alice_id:?}"),
            format!("{alice_id:#?}"),
        ),
        ("KeyPair", format!("{spk:?}"), format!("{spk:#?}")),
        ("SecretKey32", format!("{seed:?}"), format!("{secret32:#?}")),
        ("SessionKeys", format!("{keys:?}"), format!("{keys:#?}")),
        (
            "Agreement",
            format!("{agreement:?}"),
            format!("{agreement:#?}"),
        ),
        ("Initiation", format!("{init:?}"), format!("{init:#?}")),
        (
            "Ratchet (alice)",
            format!("{:?}", s.alice),
            format!("{:#?}", s.alice),
        ),
        (
            "Ratchet (bob)",
            format!("{:?}", s.bob),
            format!("{:#?}", s.bob),
        ),
        (
            "Ratchet (fresh)",
            format!("{:?}", fresh.bob),
            format!("{:#?}", fresh.alice),
        ),
        (
            "RatchetConfig",
            format!("{:?}", s.bob.config()),
            String::new(),
        ),
        (
            "Header",
            format!("{:?}", s.bob.next_header()),
            String::new(),
        ),
    ];
    for (what, compact, pretty) in &outputs {
        assert_redacted(what, compact, &secrets);
        assert_redacted(what, pretty, &secrets);
    }
    // What they do show: public keys (so the output is not simply empty).
    assert!(outputs[0]
        .1
        .contains(&hex::encode(alice_id.public_key().to_bytes())));
    assert!(outputs[1]
        .1
        .contains(&hex::encode(spk.public_key().to_bytes())));
}
