//! The decoders of profile `tacit-v2` on arbitrary bytes: KEM public keys
//! (both forms), KEM ciphertexts, and version-2 bundles and prekey
//! messages. No panic; whatever decodes re-encodes to exactly the input,
//! and a decoded key passed the FIPS 203 check (it encapsulates).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::kem::{KemCiphertext, KemPublicKey};
use tacit::wire::{PreKeyBundleMessage, PreKeyMessage, WireMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = KemPublicKey::from_encoded(data) {
        assert_eq!(key.to_encoded(), data, "EncodeKEM does not round trip");
        let (ct, _) = key.encapsulate_deterministic(&[7; 32]);
        assert_eq!(ct.as_bytes().len(), 1568);
    }
    if let Ok(key) = KemPublicKey::from_bytes(data) {
        assert_eq!(&key.as_bytes()[..], data);
    }
    if let Ok(ct) = KemCiphertext::try_from_slice(data) {
        assert_eq!(&ct.as_bytes()[..], data);
    }
    if let Ok(bundle) = PreKeyBundleMessage::from_wire(data) {
        assert_eq!(bundle.to_wire(), data, "accepted a non-canonical bundle");
        assert_eq!(bundle.bundle().kem_prekey.is_some(), bundle.version() == 2);
    }
    if let Ok(message) = PreKeyMessage::from_wire(data) {
        assert_eq!(
            message.to_wire(),
            data,
            "accepted a non-canonical prekey message"
        );
    }
});
