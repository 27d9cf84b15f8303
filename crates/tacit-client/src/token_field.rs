//! The sender's delivery token in a content: extension field 16
//! (`docs/PROTOCOL.md` section 10, "Extension field 16"), which the core
//! keeps among a content's unknown fields and this layer reads and writes.

use tacit::envelope::Content;
use tacit_relay_proto::DeliveryToken;
use zeroize::Zeroizing;

/// The record's tag: field 16, wire type 2 (length-delimited).
const TAG: [u8; 2] = [0x82, 0x01];

/// `content` with `token` appended as field 16. The content must carry no
/// unknown field yet (contents built by this client carry none), so that
/// the record is the last and the encoding stays canonical.
pub(crate) fn attach(content: &Content, token: &DeliveryToken) -> Result<Content, String> {
    if !content.unknown_fields().is_empty() {
        return Err("the content already carries unknown fields".into());
    }
    let token = token.as_bytes();
    let len = u8::try_from(token.len()).map_err(|_| "token too long".to_owned())?;
    let mut bytes = Zeroizing::new(content.to_bytes());
    bytes.extend_from_slice(&TAG);
    bytes.push(len);
    bytes.extend_from_slice(token);
    Content::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// The token a content carries: exactly one record of field 16, of wire
/// type 2 and 16 to 64 bytes ([`Content::delivery_token`]). Anything else
/// (no such record, another wire type or length, a repeat) is no token;
/// the content stays valid.
pub(crate) fn read(content: &Content) -> Option<DeliveryToken> {
    content
        .delivery_token()
        .and_then(|token| DeliveryToken::new(token).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tacit::envelope::ContentKind;

    fn text() -> Content {
        Content::from_parts(ContentKind::Text, b"hi".to_vec(), 7, [3; 16], None).unwrap()
    }

    #[test]
    fn a_token_travels_in_field_16() {
        let token = DeliveryToken::new(&[9; 32]).unwrap();
        let with = attach(&text(), &token).unwrap();
        let bytes = with.to_bytes();
        // The known fields unchanged, then 0x82 0x01, the length, the token.
        let mut expected = text().to_bytes();
        expected.extend_from_slice(&[0x82, 0x01, 32]);
        expected.extend_from_slice(&[9; 32]);
        assert_eq!(bytes, expected);
        // The core decodes it strictly and keeps it; this layer reads it.
        let back = Content::from_bytes(&bytes).unwrap();
        assert_eq!(back.body(), b"hi");
        assert_eq!(read(&back), Some(token));
        assert_eq!(read(&text()), None);
    }

    #[test]
    fn the_core_reads_the_lengths_the_relay_takes() {
        use tacit::envelope::content;
        use tacit_relay_proto::{MAX_DELIVERY_TOKEN_LEN, MIN_DELIVERY_TOKEN_LEN};
        assert_eq!(content::MIN_DELIVERY_TOKEN_LEN, MIN_DELIVERY_TOKEN_LEN);
        assert_eq!(content::MAX_DELIVERY_TOKEN_LEN, MAX_DELIVERY_TOKEN_LEN);
    }

    #[test]
    fn a_malformed_field_16_is_no_token() {
        let with = |extra: &[u8]| {
            let mut bytes = text().to_bytes();
            bytes.extend_from_slice(extra);
            read(&Content::from_bytes(&bytes).unwrap())
        };
        // Too short, a varint, repeated: ignored.
        assert_eq!(
            with(&[0x82, 0x01, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(with(&[0x80, 0x01, 5]), None);
        let mut twice = vec![0x82, 0x01, 16];
        twice.extend_from_slice(&[1; 16]);
        twice.extend_from_slice(&[0x82, 0x01, 16]);
        twice.extend_from_slice(&[2; 16]);
        assert_eq!(with(&twice), None);
        // Other unknown fields around it do not hide it.
        let mut around = vec![0x38, 0x00];
        around.extend_from_slice(&[0x82, 0x01, 16]);
        around.extend_from_slice(&[5; 16]);
        around.extend_from_slice(&[0x88, 0x01, 0x01]);
        assert_eq!(with(&around), Some(DeliveryToken::new(&[5; 16]).unwrap()));
    }
}
