//! Arbitrary bytes delivered to a real session that has skipped keys in two
//! chains: decryption must never panic, and a failed decryption must leave
//! the serialized state exactly as it was.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::keys::KeyPair;
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig, SessionKeys};

/// Bob after receiving some of Alice's messages out of order across a
/// ratchet step, so every decryption path is reachable.
fn established() -> (Ratchet, Vec<Vec<u8>>) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let keys = || SessionKeys::new([1; 32], [2; 32], [3; 32], &[4; 64]).expect("keys");
    let bob_key = KeyPair::generate(&mut rng);
    let mut alice = Ratchet::new_initiator(
        keys(),
        &bob_key.public_key(),
        RatchetConfig::default(),
        &mut rng,
    )
    .expect("initiator");
    let mut bob = Ratchet::new_responder(keys(), bob_key, RatchetConfig::default());
    let mut wires = Vec::new();
    let a: Vec<EncryptedMessage> = (0..3)
        .map(|i| alice.encrypt(&[i; 20], &mut rng).expect("encrypt"))
        .collect();
    bob.decrypt(&a[2], &mut rng).expect("decrypt");
    let b = bob.encrypt(b"reply", &mut rng).expect("encrypt");
    alice.decrypt(&b, &mut rng).expect("decrypt");
    let next: Vec<EncryptedMessage> = (0..3)
        .map(|i| alice.encrypt(&[i; 7], &mut rng).expect("encrypt"))
        .collect();
    bob.decrypt(&next[1], &mut rng).expect("decrypt");
    wires.extend(a.iter().map(EncryptedMessage::to_bytes));
    wires.extend(next.iter().map(EncryptedMessage::to_bytes));
    (bob, wires)
}

fn fixture() -> &'static (Ratchet, Vec<Vec<u8>>) {
    static FIXTURE: OnceLock<(Ratchet, Vec<Vec<u8>>)> = OnceLock::new();
    FIXTURE.get_or_init(established)
}

fuzz_target!(|data: &[u8]| {
    let (bob, wires) = fixture();
    let mut bob = bob.clone();
    // The first byte picks a real message to mutate, so the fuzzer starts
    // from headers that open; the rest overwrites its prefix.
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut input = wires[usize::from(*selector) % wires.len()].clone();
    if *selector >= 128 {
        input = rest.to_vec();
    } else {
        for (dst, src) in input.iter_mut().zip(rest) {
            *dst ^= src;
        }
    }
    let before = bob.to_bytes();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let Ok(message) = EncryptedMessage::from_bytes(&input) else {
        return;
    };
    if bob.decrypt(&message, &mut rng).is_err() {
        assert_eq!(
            bob.to_bytes(),
            before,
            "a failed decryption changed the session"
        );
    }
});
