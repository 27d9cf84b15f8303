#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Decryption is transactional: every kind of failure returns the exact
//! error, leaves `Ratchet::to_bytes()` byte-for-byte as it was and draws no
//! randomness; and encryption refuses cleanly when there is no sending chain.

mod common;

use common::{
    assert_decrypts, assert_rejected, crafted, decrypt_counting, flip, open_header, session, state,
    CountingRng, Record, Session,
};
use tacit::keys::{KeyPair, PublicKey};
use tacit::ratchet::{EncryptedMessage, Header, Ratchet, RatchetConfig, SessionKeys};
use tacit::{DecryptError, EncryptError};

/// A conversation in a non-trivial state:
///
/// - Alice sent `a0..a4` in her first chain A0; Bob received `a0` and `a2`
///   (so the key of `a1` is stored as skipped).
/// - Bob replied `b0`; Alice received it and stepped (A1, PN = 5).
/// - Alice sent `c0..c2` in A1; none delivered yet.
struct Mid {
    s: Session,
    a: Vec<EncryptedMessage>,
    b0: EncryptedMessage,
    c: Vec<EncryptedMessage>,
}

fn mid(config: RatchetConfig, seed: u64) -> Mid {
    let mut s = session(config, seed);
    let a: Vec<_> = (0..5).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[0], "a0", true);
    assert_decrypts(&mut s.bob, &a[2], "a2", false);
    assert_eq!(s.bob.skipped_key_count(), 1);
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true);
    let c: Vec<_> = (0..3).map(|i| s.a(&format!("c{i}"))).collect();
    Mid { s, a, b0, c }
}

/// Delivers everything still outstanding to Bob and checks it all decrypts:
/// failures before it must not have consumed or damaged any key.
fn finish(m: &mut Mid) {
    let bob = &mut m.s.bob;
    assert_decrypts(bob, &m.a[1], "a1", false);
    assert_decrypts(bob, &m.a[3], "a3", false);
    assert_decrypts(bob, &m.c[1], "c1", true);
    assert_decrypts(bob, &m.a[4], "a4", false);
    assert_decrypts(bob, &m.c[0], "c0", false);
    assert_decrypts(bob, &m.c[2], "c2", false);
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn any_flipped_header_byte_is_unknown_header_key_and_changes_nothing() {
    let mut m = mid(RatchetConfig::default(), 1);
    // A future message of the current chain, a skipped one, and two of the
    // next chain (one needing skips in it).
    let targets = [
        m.a[3].clone(),
        m.a[1].clone(),
        m.c[0].clone(),
        m.c[2].clone(),
    ];
    for message in &targets {
        for index in 0..80 {
            for mask in [0x01, 0x80, 0xff] {
                let bad = flip(message, index, mask);
                assert_rejected(&mut m.s.bob, &bad, DecryptError::UnknownHeaderKey);
            }
        }
    }
    finish(&mut m);
}

#[test]
fn any_flipped_ciphertext_byte_is_authentication_failure_and_changes_nothing() {
    let mut m = mid(RatchetConfig::default(), 2);
    let targets = [
        m.a[3].clone(),
        m.a[1].clone(),
        m.c[0].clone(),
        m.c[2].clone(),
    ];
    for message in &targets {
        let len = message.to_bytes().len();
        assert_eq!(
            len,
            80 + 2 + 16,
            "ciphertext is plaintext plus a 16-byte tag"
        );
        for index in 80..len {
            let bad = flip(message, index, 0xff);
            assert_rejected(&mut m.s.bob, &bad, DecryptError::AuthenticationFailed);
        }
        // A single low bit in the tag's last byte, too.
        let bad = flip(message, len - 1, 0x01);
        assert_rejected(&mut m.s.bob, &bad, DecryptError::AuthenticationFailed);
    }
    finish(&mut m);
}

#[test]
fn truncated_or_extended_messages_are_refused_and_change_nothing() {
    let mut m = mid(RatchetConfig::default(), 3);
    for message in [m.a[3].clone(), m.c[1].clone()] {
        let bytes = message.to_bytes();
        for len in 0..bytes.len() {
            match EncryptedMessage::from_bytes(&bytes[..len]) {
                Err(e) => {
                    assert!(len < 80 + 16, "length {len} refused");
                    assert_eq!(e, DecryptError::MessageTooShort);
                }
                Ok(short) => {
                    assert!(len >= 80 + 16, "length {len} accepted");
                    assert_rejected(&mut m.s.bob, &short, DecryptError::AuthenticationFailed);
                }
            }
        }
        for extra in [&[0u8][..], &[0u8; 16][..]] {
            let mut longer = bytes.clone();
            longer.extend_from_slice(extra);
            let longer = EncryptedMessage::from_bytes(&longer).unwrap();
            assert_rejected(&mut m.s.bob, &longer, DecryptError::AuthenticationFailed);
        }
    }
    // The two-part constructor needs the 16-byte tag at least.
    let header = *m.a[3].encrypted_header();
    assert_eq!(
        EncryptedMessage::new(header, vec![0; 15]),
        Err(DecryptError::MessageTooShort)
    );
    let tag_only = EncryptedMessage::new(header, vec![0; 16]).unwrap();
    assert_rejected(&mut m.s.bob, &tag_only, DecryptError::AuthenticationFailed);
    finish(&mut m);
}

#[test]
fn messages_of_another_session_or_reflected_are_unknown_header_key() {
    let mut m = mid(RatchetConfig::default(), 4);

    // Another session altogether.
    let mut other = session(RatchetConfig::default(), 5);
    let foreign = other.a("x");
    assert_rejected(&mut m.s.bob, &foreign, DecryptError::UnknownHeaderKey);
    assert_rejected(&mut m.s.alice, &foreign, DecryptError::UnknownHeaderKey);

    // The same key material bound to other associated data: the header's AD
    // check refuses it.
    let keys = &m.s.keys;
    let other_ad = SessionKeys::new(
        *keys.root_key().as_bytes(),
        *keys.initiator_header_key().as_bytes(),
        *keys.responder_next_header_key().as_bytes(),
        b"another pair of identities",
    )
    .unwrap();
    let mut rng = common::rng(6);
    let mut impostor = Ratchet::new_initiator(
        other_ad,
        &m.s.bob_signed_prekey,
        RatchetConfig::default(),
        &mut rng,
    )
    .unwrap();
    let rebound = impostor.encrypt(b"a0", &mut rng).unwrap();
    let mut fresh_bob = session(RatchetConfig::default(), 4).bob;
    assert_rejected(&mut fresh_bob, &rebound, DecryptError::UnknownHeaderKey);
    // Control: the same construction with the right AD is accepted.
    let same_ad = SessionKeys::new(
        *keys.root_key().as_bytes(),
        *keys.initiator_header_key().as_bytes(),
        *keys.responder_next_header_key().as_bytes(),
        keys.associated_data(),
    )
    .unwrap();
    let mut honest = Ratchet::new_initiator(
        same_ad,
        &m.s.bob_signed_prekey,
        RatchetConfig::default(),
        &mut rng,
    )
    .unwrap();
    let accepted = honest.encrypt(b"a0", &mut rng).unwrap();
    assert_decrypts(&mut fresh_bob.clone(), &accepted, "a0", true);

    // A party's own messages sent back to it.
    let b0 = m.b0.clone();
    assert_rejected(&mut m.s.bob, &b0, DecryptError::UnknownHeaderKey);
    let c0 = m.c[0].clone();
    assert_rejected(&mut m.s.alice, &c0, DecryptError::UnknownHeaderKey);
    finish(&mut m);
}

#[test]
fn replays_are_refused_and_change_nothing() {
    let mut m = mid(RatchetConfig::default(), 7);
    // Delivered messages of the current chain.
    let (a0, a2) = (m.a[0].clone(), m.a[2].clone());
    assert_rejected(&mut m.s.bob, &a0, DecryptError::DuplicateMessage);
    assert_rejected(&mut m.s.bob, &a2, DecryptError::DuplicateMessage);
    // The message that opened Alice's current receiving chain.
    let b0 = m.b0.clone();
    assert_rejected(&mut m.s.alice, &b0, DecryptError::DuplicateMessage);

    // A skipped message, then delivered, then replayed.
    let a1 = m.a[1].clone();
    assert_decrypts(&mut m.s.bob, &a1, "a1", false);
    assert_eq!(m.s.bob.skipped_key_count(), 0);
    assert_rejected(&mut m.s.bob, &a1, DecryptError::DuplicateMessage);

    // The message that opened a chain, replayed once that chain is current.
    let c0 = m.c[0].clone();
    assert_decrypts(&mut m.s.bob, &c0, "c0", true);
    assert_rejected(&mut m.s.bob, &c0, DecryptError::DuplicateMessage);
}

/// Replays of a chain that is no longer the receiving chain: the header
/// opens only while that chain still has skipped keys, so the variant
/// changes from `DuplicateMessage` to `UnknownHeaderKey` once they are used.
#[test]
fn replay_from_a_retired_chain_depends_on_its_remaining_skipped_keys() {
    let mut m = mid(RatchetConfig::default(), 8);
    let bob = &mut m.s.bob;
    assert_decrypts(bob, &m.c[0], "c0", true); // stores a3 and a4 (PN = 5)
    assert_eq!(bob.skipped_key_count(), 3); // a1, a3, a4
                                            // A0 still has keys: its header key is tried, the key is gone.
    assert_rejected(bob, &m.a[0], DecryptError::DuplicateMessage);
    assert_rejected(bob, &m.a[2], DecryptError::DuplicateMessage);
    assert_decrypts(bob, &m.a[3], "a3", false);
    assert_rejected(bob, &m.a[3], DecryptError::DuplicateMessage);
    assert_decrypts(bob, &m.a[1], "a1", false);
    assert_decrypts(bob, &m.a[4], "a4", false);
    assert_eq!(bob.skipped_key_count(), 0);
    // A0 is forgotten entirely: its header no longer opens.
    for i in 0..5 {
        assert_rejected(bob, &m.a[i], DecryptError::UnknownHeaderKey);
    }
    assert_decrypts(bob, &m.c[2], "c2", false);
    assert_decrypts(bob, &m.c[1], "c1", false);
}

#[test]
fn skipping_more_than_max_skip_in_the_current_chain_is_refused() {
    let config = RatchetConfig::default().with_max_skip(3).unwrap();
    let mut s = session(config, 9);
    let a: Vec<_> = (0..6).map(|i| s.a(&format!("a{i}"))).collect();
    assert_decrypts(&mut s.bob, &a[0], "a0", true);
    // Nr = 1: a5 needs keys 1..5 (4 > 3).
    assert_rejected(&mut s.bob, &a[5], DecryptError::TooManySkipped);
    assert_eq!(s.bob.skipped_key_count(), 0);
    // a4 needs exactly 3: accepted.
    assert_decrypts(&mut s.bob, &a[4], "a4", false);
    assert_eq!(s.bob.skipped_key_count(), 3);
    assert_decrypts(&mut s.bob, &a[5], "a5", false);
    for (i, message) in a.iter().enumerate().take(4).skip(1) {
        assert_decrypts(&mut s.bob, message, &format!("a{i}"), false);
    }
    assert_eq!(s.bob.skipped_key_count(), 0);
}

#[test]
fn a_new_chain_whose_pn_needs_more_than_max_skip_is_refused() {
    let config = RatchetConfig::default().with_max_skip(3).unwrap();
    let mut s = session(config, 10);
    let a0 = s.a("a0");
    assert_decrypts(&mut s.bob, &a0, "a0", true);
    let a: Vec<_> = (1..6).map(|i| s.a(&format!("a{i}"))).collect(); // a1..a5
    let b0 = s.b("b0");
    assert_decrypts(&mut s.alice, &b0, "b0", true); // Alice steps with PN = 6
    let c0 = s.a("c0");
    // Bob: Nr = 1, PN = 6, and 1 + 3 < 6.
    assert_rejected(&mut s.bob, &c0, DecryptError::TooManySkipped);
    // After a2 (Nr = 3), PN = 6 = Nr + max_skip is accepted.
    assert_decrypts(&mut s.bob, &a[1], "a2", false);
    assert_decrypts(&mut s.bob, &c0, "c0", true);
    // a1 (skipped before), a3..a5 (skipped at the step) still decrypt.
    assert_eq!(s.bob.skipped_key_count(), 4);
    for (i, message) in a.iter().enumerate() {
        if i != 1 {
            assert_decrypts(&mut s.bob, message, &format!("a{}", i + 1), false);
        }
    }
    assert_eq!(s.bob.skipped_key_count(), 0);
}

#[test]
fn a_new_chain_message_needing_more_than_max_skip_in_the_new_chain_is_refused() {
    let config = RatchetConfig::default().with_max_skip(2).unwrap();
    let mut s = session(config, 11);
    let a: Vec<_> = (0..4).map(|i| s.a(&format!("a{i}"))).collect();
    // The very first message Bob sees opens a chain: N = 3 > 2.
    assert_rejected(&mut s.bob, &a[3], DecryptError::TooManySkipped);
    assert!(!s.bob.can_send());
    assert_decrypts(&mut s.bob, &a[2], "a2", true);
    assert_decrypts(&mut s.bob, &a[3], "a3", false);
    assert_decrypts(&mut s.bob, &a[0], "a0", false);
    assert_decrypts(&mut s.bob, &a[1], "a1", false);
}

#[test]
fn a_tampered_message_opening_a_new_chain_changes_nothing_and_draws_nothing() {
    let mut m = mid(RatchetConfig::default(), 12);
    let twin = m.s.bob.clone();
    let c0 = m.c[0].clone();
    assert_rejected(
        &mut m.s.bob,
        &flip(&c0, 85, 0xff),
        DecryptError::AuthenticationFailed,
    );
    assert_rejected(
        &mut m.s.bob,
        &flip(&c0, 30, 0xff),
        DecryptError::UnknownHeaderKey,
    );
    assert_eq!(state(&m.s.bob), state(&twin));

    // The untampered message decrypts, drawing the new pair (32 bytes, one
    // call) only now.
    let mut rng = CountingRng::new(77);
    assert_eq!(m.s.bob.decrypt(&c0, &mut rng).unwrap(), b"c0");
    assert_eq!((rng.bytes, rng.calls), (32, 1));
    // Exactly as if the tampered copies had never arrived.
    let mut twin = twin;
    let mut twin_rng = CountingRng::new(77);
    assert_eq!(twin.decrypt(&c0, &mut twin_rng).unwrap(), b"c0");
    assert_eq!(state(&m.s.bob), state(&twin));
    // The new sending pair is the first 32 bytes of that RNG.
    let expected_pair = KeyPair::generate(&mut common::rng(77));
    let header = m.s.bob.next_header().unwrap();
    assert_eq!(header.ratchet_key, expected_pair.public_key());
    assert_eq!(
        header.previous_chain_length, 1,
        "Bob sent b0 in his last chain"
    );
    assert_eq!(header.message_number, 0);

    // The conversation goes on: Bob's reply opens a new chain for Alice.
    let d0 = m.s.b("d0");
    assert_decrypts(&mut m.s.alice, &d0, "d0", true);
    // Old-chain messages skipped at the step still decrypt.
    assert_eq!(m.s.bob.skipped_key_count(), 3); // a1, a3, a4
    let bob = &mut m.s.bob;
    assert_decrypts(bob, &m.a[4], "a4", false);
    assert_decrypts(bob, &m.a[1], "a1", false);
    assert_decrypts(bob, &m.a[3], "a3", false);
    assert_decrypts(bob, &m.c[2], "c2", false);
    assert_decrypts(bob, &m.c[1], "c1", false);
    assert_eq!(bob.skipped_key_count(), 0);
}

/// Crafted headers (the test knows the header keys from the record): a
/// small-order ratchet key, and counters far past `max_skip`.
#[test]
fn crafted_headers_are_refused_before_any_change() {
    let mut m = mid(RatchetConfig::default(), 13);
    let record = Record::of(&m.s.bob);
    let ad = m.s.bob.associated_data().to_vec();
    let nhkr = record.next_receiving_header_key;
    let hkr = record.receiving.as_ref().unwrap().header_key;
    // The header keys are what the mirror says: a genuine next-chain
    // message opens under NHKr.
    let genuine = open_header(&nhkr, m.c[1].encrypted_header(), &ad).unwrap();
    assert_eq!(genuine.previous_chain_length, 5);
    assert_eq!(genuine.message_number, 1);
    assert_eq!(
        genuine.ratchet_key,
        m.s.alice.next_header().unwrap().ratchet_key
    );

    let alice_key = genuine.ratchet_key;
    let header = |key: PublicKey, pn: u32, n: u32| Header {
        ratchet_key: key,
        previous_chain_length: pn,
        message_number: n,
    };
    let mut small_order = [[0u8; 32], [0u8; 32]];
    small_order[1][0] = 1;
    for key in small_order {
        let message = crafted(&nhkr, &header(PublicKey::from_bytes(key), 5, 0), &ad, 20);
        assert_rejected(&mut m.s.bob, &message, DecryptError::SmallOrderKey);
    }
    // Nr = 3 in the current chain; max_skip = 1000.
    for (hk, pn, n, expected) in [
        (nhkr, 1004, 0, DecryptError::TooManySkipped),
        (nhkr, u32::MAX, 0, DecryptError::TooManySkipped),
        (nhkr, 5, 1001, DecryptError::TooManySkipped),
        (nhkr, 5, u32::MAX, DecryptError::TooManySkipped),
        (nhkr, 1003, 1000, DecryptError::AuthenticationFailed),
        (hkr, 0, 1004, DecryptError::TooManySkipped),
        (hkr, 0, u32::MAX, DecryptError::TooManySkipped),
        (hkr, 0, 1003, DecryptError::AuthenticationFailed),
        (hkr, 0, 2, DecryptError::DuplicateMessage),
        (hkr, 0, 1, DecryptError::AuthenticationFailed),
    ] {
        let message = crafted(&hk, &header(alice_key, pn, n), &ad, 20);
        assert_rejected(&mut m.s.bob, &message, expected);
    }
    finish(&mut m);
}

#[test]
fn responder_cannot_encrypt_before_receiving_and_state_is_unchanged() {
    let mut s = session(RatchetConfig::default(), 14);
    assert!(!s.bob.can_send());
    assert_eq!(s.bob.next_header(), None);
    let before = state(&s.bob);
    let mut rng = CountingRng::new(1);
    assert_eq!(
        s.bob.encrypt(b"too early", &mut rng),
        Err(EncryptError::NoSendingChain)
    );
    assert_eq!(state(&s.bob), before);
    assert_eq!(rng.bytes, 0);

    // A failed first message does not give Bob a sending chain either.
    let a0 = s.a("a0");
    assert_rejected(
        &mut s.bob,
        &flip(&a0, 90, 1),
        DecryptError::AuthenticationFailed,
    );
    assert_eq!(
        s.bob.encrypt(b"still too early", &mut rng),
        Err(EncryptError::NoSendingChain)
    );
    assert_eq!(state(&s.bob), before);

    assert_decrypts(&mut s.bob, &a0, "a0", true);
    assert!(s.bob.can_send());
    let mut rng = CountingRng::new(2);
    let b0 = s.bob.encrypt(b"b0", &mut rng).unwrap();
    assert_eq!((rng.bytes, rng.calls), (24, 1), "one 24-byte header nonce");
    assert_eq!(&b0.encrypted_header()[..24], &{
        let mut nonce = [0u8; 24];
        rand_core::RngCore::fill_bytes(&mut common::rng(2), &mut nonce);
        nonce
    });
    assert_decrypts(&mut s.alice, &b0, "b0", true);
}

/// The header a message carries is what `next_header` announced, and
/// encryption advances N only.
#[test]
fn next_header_matches_what_is_sent() {
    let mut s = session(RatchetConfig::default(), 15);
    let hka = *s.keys.initiator_header_key().as_bytes();
    let ad = s.alice.associated_data().to_vec();
    for n in 0..3 {
        let announced = s.alice.next_header().unwrap();
        assert_eq!(announced.message_number, n);
        assert_eq!(announced.previous_chain_length, 0);
        let message = s.a("x");
        assert_eq!(
            open_header(&hka, message.encrypted_header(), &ad),
            Some(announced)
        );
    }
    // Encryption of the empty message works and yields a bare tag.
    let empty = s.a("");
    assert_eq!(empty.ciphertext().len(), 16);
    let (result, _) = decrypt_counting(&mut s.bob, &empty, 1);
    assert_eq!(result, Ok(Vec::new()));
}
