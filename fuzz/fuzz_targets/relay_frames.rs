//! Relay frames in both directions: no panic, and an accepted frame
//! re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit_relay_proto::{ClientFrame, ServerFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ClientFrame::decode(data) {
        assert_eq!(
            frame.encode(),
            data,
            "accepted a non-canonical client frame"
        );
    }
    if let Ok(frame) = ServerFrame::decode(data) {
        assert_eq!(
            frame.encode(),
            data,
            "accepted a non-canonical server frame"
        );
    }
});
