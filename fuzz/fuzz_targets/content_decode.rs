//! Content, the ratchet's plaintext, decoded bare and padded: no panic, and
//! whatever decodes re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tacit::envelope::Content;

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = Content::from_bytes(data) {
        assert_eq!(content.to_bytes(), data, "accepted a non-canonical content");
    }
    if let Ok(content) = Content::from_padded(data) {
        let padded = content.to_padded();
        assert_eq!(
            padded.as_deref(),
            Ok(data),
            "accepted a non-canonical padded content"
        );
    }
});
