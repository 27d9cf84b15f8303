//! Session records read back from storage: no panic on any bytes, and an
//! accepted record is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::Ratchet;

fuzz_target!(|data: &[u8]| {
    if let Ok(ratchet) = Ratchet::from_bytes(data) {
        assert_eq!(ratchet.to_bytes().as_slice(), data);
    }
});
