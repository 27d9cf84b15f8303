//! A `tacit-v2` responder on arbitrary prekey messages: Bob holds fixed
//! keys (signed prekey 7, one-time prekey 42, KEM prekey 9) and runs the
//! checks of docs/PROTOCOL.md 15.5 on whatever decodes. No panic, and no
//! message the fuzzer makes decrypts (it cannot know SK).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::kem::KemKeyPair;
use tacit::keys::{IdentityKeyPair, KeyPair};
use tacit::pqxdh;
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::wire::{PreKeyMessage, WireMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = PreKeyMessage::from_wire(data) else {
        return;
    };
    let Some((kem_id, ciphertext)) = &message.kem else {
        return;
    };
    let bob = IdentityKeyPair::from_seed(&[1; 32]);
    let signed_prekey = KeyPair::from_private_bytes([2; 32]);
    let one_time_prekey = KeyPair::from_private_bytes([3; 32]);
    let kem = KemKeyPair::from_seed(&[4; 64]);
    if message.signed_prekey_id != 7 || *kem_id != 9 {
        return;
    }
    let opk = match message.one_time_prekey_id {
        None => None,
        Some(42) => Some(&one_time_prekey),
        Some(_) => return,
    };
    let Ok(agreement) = pqxdh::respond(
        &bob,
        &signed_prekey,
        opk,
        &kem,
        &message.identity_key,
        &message.ephemeral_key,
        ciphertext,
    ) else {
        return;
    };
    let mut ratchet = Ratchet::new_responder(
        agreement.session_keys(),
        signed_prekey.clone(),
        RatchetConfig::default(),
    );
    assert!(
        ratchet
            .decrypt(&message.message, &mut ChaCha20Rng::seed_from_u64(3))
            .is_err(),
        "a fuzzed first message decrypted"
    );
});
