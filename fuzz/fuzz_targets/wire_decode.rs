//! Every wire decoder on arbitrary bytes: no panic, and whatever decodes
//! re-encodes to exactly the input (canonical form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::wire::{PreKeyBundleMessage, PreKeyMessage, SessionMessage, WireMessage};
use tacit::EncryptedMessage;

fn check<M: WireMessage>(data: &[u8]) {
    if let Ok(message) = M::from_wire(data) {
        assert_eq!(message.to_wire(), data, "accepted a non-canonical encoding");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<PreKeyBundleMessage>(data);
    check::<PreKeyMessage>(data);
    check::<EncryptedMessage>(data);
    check::<SessionMessage>(data);
    if let Ok(message) = EncryptedMessage::from_bytes(data) {
        assert_eq!(message.to_bytes(), data);
    }
});
