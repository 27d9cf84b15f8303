//! Padding removal on arbitrary bytes: no panic, and whatever unpads pads
//! back to exactly the input. The first bytes, read as a length, also check
//! the padded length function: longer than its input, and a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::envelope::padding::{pad, padded_len, unpad, MAX_UNPADDED_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(inner) = unpad(data) {
        assert_eq!(
            pad(inner).as_deref(),
            Ok(data),
            "unpadded a non-canonical padding"
        );
    }
    if let Some(len) = data.get(..4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        match padded_len(len) {
            Ok(padded) => {
                assert!(len <= MAX_UNPADDED_LEN && padded > len);
                assert_eq!(padded_len(padded - 1), Ok(padded));
            }
            Err(_) => assert!(len > MAX_UNPADDED_LEN),
        }
    }
});
