//! Heap allocations of the ratchet's hot path, counted by a global
//! allocator that only this test binary installs (`allocation-counter`,
//! which counts per thread, so parallel tests do not disturb the counts).
//!
//! Encrypting and decrypting on an existing chain allocate exactly once:
//! the output buffer (the ciphertext, or the plaintext; an empty plaintext
//! is an empty `Vec` and allocates nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use allocation_counter::measure;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::keys::KeyPair;
use tacit::ratchet::{Ratchet, RatchetConfig, SessionKeys};

fn session(rng: &mut ChaCha20Rng) -> (Ratchet, Ratchet) {
    let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], &[4; 64]).unwrap();
    let bob_key = KeyPair::generate(rng);
    let bob_public = bob_key.public_key();
    let mut alice =
        Ratchet::new_initiator(keys(), &bob_public, RatchetConfig::default(), rng).unwrap();
    let mut bob = Ratchet::new_responder(keys(), bob_key, RatchetConfig::default());
    // Both sides have sent and received; Alice's next message is an
    // ordinary step of her sending chain and Bob's receiving chain.
    let m = alice.encrypt(b"first", rng).unwrap();
    bob.decrypt(&m, rng).unwrap();
    let m = bob.encrypt(b"reply", rng).unwrap();
    alice.decrypt(&m, rng).unwrap();
    let m = alice.encrypt(b"again", rng).unwrap();
    bob.decrypt(&m, rng).unwrap();
    (alice, bob)
}

#[test]
fn encrypt_and_decrypt_on_a_chain_allocate_only_the_output() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (mut alice, mut bob) = session(&mut rng);
    let plaintext = [0x42u8; 4096];
    for len in [0, 1, 256, 4096] {
        let mut message = None;
        let sent = measure(|| {
            message = Some(alice.encrypt(&plaintext[..len], &mut rng).unwrap());
        });
        assert_eq!(sent.count_total, 1, "encrypt of {len} B: {sent:?}");
        let message = message.unwrap();
        let mut opened = None;
        let received = measure(|| {
            opened = Some(bob.decrypt(&message, &mut rng).unwrap());
        });
        // An empty plaintext is an empty `Vec`, which allocates nothing.
        let expected = u64::from(len > 0);
        assert_eq!(
            received.count_total, expected,
            "decrypt of {len} B: {received:?}"
        );
        assert_eq!(opened.unwrap(), &plaintext[..len]);
    }
}

#[test]
fn the_os_rng_allocates_nothing_more() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (mut alice, mut bob) = session(&mut rng);
    let mut message = None;
    let sent = measure(|| message = Some(alice.encrypt(&[7; 100], &mut rand_core::OsRng).unwrap()));
    assert_eq!(sent.count_total, 1, "{sent:?}");
    let message = message.unwrap();
    let received = measure(|| {
        bob.decrypt(&message, &mut rand_core::OsRng).unwrap();
    });
    assert_eq!(received.count_total, 1, "{received:?}");
}

/// Not the hot path, stated for the record: a decryption that performs a
/// DH ratchet step stores no skipped keys when none were skipped, so it too
/// allocates only the plaintext.
#[test]
fn a_dh_ratchet_step_allocates_only_the_output() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (mut alice, mut bob) = session(&mut rng);
    let reply = bob.encrypt(&[1; 64], &mut rng).unwrap();
    let received = measure(|| {
        alice.decrypt(&reply, &mut rng).unwrap();
    });
    assert_eq!(received.count_total, 1, "{received:?}");
}
