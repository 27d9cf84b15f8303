//! The sender's delivery token in a content: extension field 16
//! (`docs/PROTOCOL.md` section 10, "Extension field 16"), which the core
//! writes and reads (`Content::with_delivery_token`,
//! `Content::delivery_token`); this layer reads it as the relay's type.

use tacit::envelope::Content;
use tacit_relay_proto::DeliveryToken;

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
    fn the_token_the_core_attaches_reads_as_the_relays_type() {
        let token = DeliveryToken::new(&[9; 32]).unwrap();
        let with = text().with_delivery_token(token.as_bytes()).unwrap();
        let back = Content::from_bytes(&with.to_bytes()).unwrap();
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
}
