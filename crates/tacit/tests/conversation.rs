#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Whole conversations: ping-pong with a DH step on every reply, a long
//! one-way chain, the default limits at their boundaries, plaintext sizes,
//! and healing after a state compromise.

mod common;

use std::collections::HashSet;

use common::{assert_decrypts, assert_rejected, session, CountingRng};
use tacit::ratchet::RatchetConfig;
use tacit::DecryptError;

#[test]
fn ping_pong_steps_on_every_reply_with_fresh_keys() {
    let mut s = session(RatchetConfig::default(), 1);
    let mut alice_keys = HashSet::new();
    let mut bob_keys = HashSet::new();
    for round in 0..20u32 {
        // Alice sends `round % 3 + 1` messages, Bob replies with `round % 2 + 1`.
        let burst = round % 3 + 1;
        let header = s.alice.next_header().unwrap();
        assert!(
            alice_keys.insert(header.ratchet_key),
            "Alice reused a ratchet key"
        );
        assert_eq!(header.message_number, 0);
        if round > 0 {
            assert_eq!(header.previous_chain_length, (round - 1) % 3 + 1);
        }
        let xs: Vec<_> = (0..burst).map(|i| s.a(&format!("x{round}.{i}"))).collect();
        for (i, x) in xs.iter().enumerate() {
            assert_decrypts(&mut s.bob, x, &format!("x{round}.{i}"), i == 0);
        }
        let reply = round % 2 + 1;
        let header = s.bob.next_header().unwrap();
        assert!(
            bob_keys.insert(header.ratchet_key),
            "Bob reused a ratchet key"
        );
        assert_eq!(header.message_number, 0);
        let ys: Vec<_> = (0..reply).map(|i| s.b(&format!("y{round}.{i}"))).collect();
        // Alice reads the replies newest first.
        for (i, y) in ys.iter().enumerate().rev() {
            assert_decrypts(&mut s.alice, y, &format!("y{round}.{i}"), i + 1 == ys.len());
        }
        assert_eq!(s.alice.skipped_key_count(), 0);
        assert_eq!(s.bob.skipped_key_count(), 0);
    }
    assert_eq!((alice_keys.len(), bob_keys.len()), (20, 20));
}

#[test]
fn a_long_one_way_chain_decrypts_in_order() {
    let mut s = session(RatchetConfig::default(), 2);
    for i in 0..2500 {
        let text = format!("{i}");
        let message = s.a(&text);
        assert_eq!(s.alice.next_header().unwrap().message_number, i + 1);
        let mut rng = CountingRng::new(u64::from(i));
        assert_eq!(s.bob.decrypt(&message, &mut rng).unwrap(), text.as_bytes());
        assert_eq!(rng.bytes, if i == 0 { 32 } else { 0 });
    }
    assert_eq!(s.bob.skipped_key_count(), 0);
}

#[test]
fn the_default_max_skip_is_1000() {
    let mut s = session(RatchetConfig::default(), 3);
    let a: Vec<_> = (0..1002).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut s.bob, &a[1001], DecryptError::TooManySkipped);
    assert_decrypts(&mut s.bob, &a[1000], "a1000", true);
    assert_eq!(s.bob.skipped_key_count(), 1000);
    // In the current chain: Nr = 1001, so N = 2001 is accepted, 2002 not.
    let more: Vec<_> = (1002..2003).map(|i| s.a(&format!("a{i}"))).collect();
    assert_rejected(&mut s.bob, &more[1000], DecryptError::TooManySkipped);
    assert_decrypts(&mut s.bob, &more[999], "a2001", false);
    assert_eq!(s.bob.skipped_key_count(), 2000);
    // Everything skipped is still there (2000 keys, exactly the cap).
    for (i, message) in a.iter().enumerate().take(1000).rev() {
        assert_decrypts(&mut s.bob, message, &format!("a{i}"), false);
    }
    assert_decrypts(&mut s.bob, &a[1001], "a1001", false);
    assert_eq!(s.bob.skipped_key_count(), 999);
}

#[test]
fn the_default_cap_of_2000_evicts_the_oldest_key() {
    let mut s = session(RatchetConfig::default(), 4);
    let a: Vec<_> = (0..1001).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[1000], "a1000", true);
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let c: Vec<_> = (0..1001).map(|i| s.a(&format!("c{i}"))).collect();
    assert_decrypts(&mut s.bob, &c[1000], "c1000", true);
    assert_eq!(s.bob.skipped_key_count(), 2000);
    let b1 = s.b("b1");
    assert_decrypts(&mut s.alice, &b1, "b1", true);
    let d: Vec<_> = (0..2).map(|i| s.a(&format!("d{i}"))).collect();
    assert_decrypts(&mut s.bob, &d[1], "d1", true);
    assert_eq!(s.bob.skipped_key_count(), 2000);
    assert_rejected(&mut s.bob, &a[0], DecryptError::DuplicateMessage);
    assert_decrypts(&mut s.bob, &a[1], "a1", false);
    assert_decrypts(&mut s.bob, &c[0], "c0", false);
    assert_decrypts(&mut s.bob, &d[0], "d0", false);
    assert_eq!(s.bob.skipped_key_count(), 1997);
}

#[test]
fn plaintexts_of_any_size_round_trip() {
    let mut s = session(RatchetConfig::default(), 5);
    let mut rng = common::rng(6);
    for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 65_536] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let message = s.alice.encrypt(&plaintext, &mut rng).unwrap();
        assert_eq!(message.ciphertext().len(), len + 16);
        assert_eq!(message.to_bytes().len(), 80 + len + 16);
        if len > 0 {
            assert_ne!(
                &message.ciphertext()[..len],
                &plaintext[..],
                "not encrypted"
            );
        }
        let parsed = tacit::EncryptedMessage::from_bytes(&message.to_bytes()).unwrap();
        assert_eq!(parsed, message);
        assert_eq!(s.bob.decrypt(&parsed, &mut rng).unwrap(), plaintext);
    }
}

#[test]
fn the_os_rng_works() {
    let mut s = session(RatchetConfig::default(), 7);
    let m = s.alice.encrypt(b"hello", &mut rand_core::OsRng).unwrap();
    assert_eq!(s.bob.decrypt(&m, &mut rand_core::OsRng).unwrap(), b"hello");
    let r = s.bob.encrypt(b"hi", &mut rand_core::OsRng).unwrap();
    assert_eq!(s.alice.decrypt(&r, &mut rand_core::OsRng).unwrap(), b"hi");
    // Two encryptions of the same plaintext differ (fresh header nonce,
    // next message key).
    let (x, y) = (
        s.alice.encrypt(b"same", &mut rand_core::OsRng).unwrap(),
        s.alice.encrypt(b"same", &mut rand_core::OsRng).unwrap(),
    );
    assert_ne!(x.encrypted_header()[..24], y.encrypted_header()[..24]);
    assert_ne!(x.ciphertext(), y.ciphertext());
}

/// A copy of Bob's state taken by an attacker reads Alice's next chain
/// (which is keyed to Bob's current ratchet key), but once Bob has replied
/// with a fresh ratchet key and Alice has stepped, it reads no message body
/// any more, and one round trip later no header either.
#[test]
fn a_stolen_state_stops_working_after_a_round_trip() {
    let mut s = session(RatchetConfig::default(), 8);
    let a0 = s.a("a0");
    assert_decrypts(&mut s.bob, &a0, "a0", true);
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let mut thief = s.bob.clone();

    let x = s.a("x");
    // The thief reads it (with its own randomness).
    let mut thief_rng = CountingRng::new(666);
    assert_eq!(thief.decrypt(&x, &mut thief_rng).unwrap(), b"x");
    assert_decrypts(&mut s.bob, &x, "x", true);
    let y = s.b("y");
    assert_decrypts(&mut s.alice, &y, "y", true);
    let z = s.a("z");
    // The header key of Alice's chain after next comes from the root step
    // the thief could follow, so z's header opens (as header encryption in
    // the Double Ratchet specification allows); its body does not.
    assert_rejected(&mut thief, &z, DecryptError::AuthenticationFailed);
    assert_rejected(&mut thief, &y, DecryptError::UnknownHeaderKey);
    assert_decrypts(&mut s.bob, &z, "z", true);
    // One more round trip and not even the headers open.
    let w = s.b("w");
    assert_decrypts(&mut s.alice, &w, "w", true);
    let v = s.a("v");
    assert_rejected(&mut thief, &v, DecryptError::UnknownHeaderKey);
    assert_decrypts(&mut s.bob, &v, "v", true);
}
