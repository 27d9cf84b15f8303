//! The delivery token in a content's extension field 16: attached by
//! `Content::with_delivery_token`, read by `Content::delivery_token`,
//! byte for byte as `docs/PROTOCOL.md` section 10 gives it; malformed
//! records are no token, and bad tokens are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use tacit::envelope::{Content, ContentKind};
use tacit::ContentError;

fn text() -> Content {
    Content::from_parts(ContentKind::Text, b"hi".to_vec(), 7, [3; 16], None).unwrap()
}

#[test]
fn a_token_travels_as_the_one_record_of_field_16() {
    let with = text().with_delivery_token(&[9; 32]).unwrap();
    let bytes = with.to_bytes();
    // The known fields unchanged, then 0x82 0x01, the length, the token.
    let mut expected = text().to_bytes();
    expected.extend_from_slice(&[0x82, 0x01, 32]);
    expected.extend_from_slice(&[9; 32]);
    assert_eq!(bytes, expected);
    // It decodes strictly, keeps the token and reads it back.
    let back = Content::from_bytes(&bytes).unwrap();
    assert_eq!(back.body(), b"hi");
    assert_eq!(back.delivery_token(), Some(&[9u8; 32][..]));
    assert_eq!(text().delivery_token(), None);
    // The shortest and the longest.
    for len in [16, 64] {
        let token = vec![1u8; len];
        let with = text().with_delivery_token(&token).unwrap();
        let back = Content::from_bytes(&with.to_bytes()).unwrap();
        assert_eq!(back.delivery_token(), Some(&token[..]));
    }
}

#[test]
fn a_token_of_a_wrong_length_or_a_second_record_is_refused() {
    for len in [0, 15, 65, 300] {
        assert_eq!(
            text().with_delivery_token(&vec![1; len]).unwrap_err(),
            ContentError::DeliveryToken("its length"),
            "{len}"
        );
    }
    // A content that carries unknown fields (here a token already) takes
    // no other: the record would not be the only one.
    let with = text().with_delivery_token(&[9; 32]).unwrap();
    assert!(matches!(
        with.with_delivery_token(&[8; 32]),
        Err(ContentError::DeliveryToken(_))
    ));
}

#[test]
fn a_malformed_field_16_is_no_token_and_the_content_stays_valid() {
    let with = |extra: &[u8]| {
        let mut bytes = text().to_bytes();
        bytes.extend_from_slice(extra);
        Content::from_bytes(&bytes)
            .unwrap()
            .delivery_token()
            .map(<[u8]>::to_vec)
    };
    // Too short, a varint, repeated: ignored.
    let mut short = vec![0x82, 0x01, 15];
    short.extend_from_slice(&[0; 15]);
    assert_eq!(with(&short), None);
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
    assert_eq!(with(&around), Some(vec![5; 16]));
}
