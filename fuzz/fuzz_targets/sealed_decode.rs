//! The sealed envelope's outer decoding (all a relay can check): no panic,
//! and an accepted envelope re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::envelope::SealedEnvelope;
use tacit::wire::WireMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = SealedEnvelope::from_wire(data) {
        assert_eq!(
            envelope.to_wire(),
            data,
            "accepted a non-canonical envelope"
        );
    }
});
