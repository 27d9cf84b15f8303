//! Contents carrying extension field 16, the sender's delivery token
//! (`docs/PROTOCOL.md` section 10, "Extension field 16"), written byte by
//! byte: contents that are delivered, with the token read or, for a field
//! 16 of another wire type or length or repeated, ignored
//! (`delivery_tokens`); and field-16 records out of the rule for unknown
//! fields, which refuse the content (in `invalid_contents`).

use serde::{Deserialize, Serialize};
use tacit::envelope::Content;

use crate::envelope::{ContentErrorName, InvalidContent};
use crate::envelope_contents::Raw;
use crate::generate::derive;
use crate::schema::HexBytes;

/// The tag of field 16, wire type 2.
const TAG: [u8; 2] = [0x82, 0x01];

/// A padded content that must be delivered, with the delivery token read
/// from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTokenCase {
    /// The case's name.
    pub name: String,
    /// The padded bytes.
    pub padded: HexBytes,
    /// What decoding gives.
    pub expected: DeliveryTokenExpected,
}

/// What a [`DeliveryTokenCase`] decodes to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTokenExpected {
    /// The kind's code.
    pub kind: u32,
    /// The encoded fields numbered 7 and above, as they came.
    pub unknown_fields: HexBytes,
    /// The token the receiver records, or `null` when none.
    #[serde(deserialize_with = "crate::envelope::required_nullable")]
    pub delivery_token: Option<HexBytes>,
}

/// Checks that `case.padded` is delivered with `case.expected` and
/// re-encodes to the same bytes.
pub fn verify_delivery_token(case: &DeliveryTokenCase) -> Result<(), String> {
    let content = Content::from_padded(&case.padded.0)
        .map_err(|e| format!("the content was refused: {e}"))?;
    let decoded = DeliveryTokenExpected {
        kind: content.kind().code(),
        unknown_fields: HexBytes(content.unknown_fields().to_vec()),
        delivery_token: content.delivery_token().map(|t| HexBytes(t.to_vec())),
    };
    if decoded != case.expected {
        return Err(format!("decodes to {decoded:?}"));
    }
    if content.to_padded().map_err(|e| e.to_string())? != case.padded.0 {
        return Err("does not re-encode to the same bytes".into());
    }
    Ok(())
}

/// A token of `len` bytes derived from `label`.
fn token(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(&derive(&format!("envelope/delivery_token/{label}/{i}")));
        i += 1;
    }
    out.truncate(len);
    out
}

/// The record of field 16, wire type 2, with `value` (a one-byte length).
fn record(value: &[u8]) -> Vec<u8> {
    let mut out = TAG.to_vec();
    out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(value);
    out
}

/// A case: its name, the content, the unknown fields put after it, and
/// the token read (`None`: ignored).
type TokenCase = (&'static str, Raw, Vec<u8>, Option<Vec<u8>>);

/// Contents carrying field 16: read (16 to 64 bytes, once) or ignored.
pub(crate) fn delivery_tokens() -> Result<Vec<DeliveryTokenCase>, String> {
    let t32 = token("t32", 32);
    let mut around = vec![0x38, 0x00];
    around.extend(record(&t32));
    around.extend_from_slice(&[0x8a, 0x01, 0x02, b'o', b'k']);
    let mut twice = record(&token("twice_a", 32));
    twice.extend(record(&token("twice_b", 32)));
    let mut short_then_valid = record(&token("short", 15));
    short_then_valid.extend(record(&t32));
    let mut varint_then_valid = vec![0x80, 0x01, 0x05];
    varint_then_valid.extend(record(&t32));
    // A length of 128 takes a two-byte varint.
    let mut long = vec![0x82, 0x01, 0x80, 0x01];
    long.extend(token("t128", 128));
    let mut fixed64 = vec![0x81, 0x01];
    fixed64.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let receipt = Raw {
        kind: 4,
        body: derive("envelope/delivery_token/receipt")[..16].to_vec(),
        ..Raw::text("content_delivery_token_in_read_receipt")
    };
    let later_kind = Raw {
        kind: 8,
        body: b"a later kind".to_vec(),
        ..Raw::text("content_delivery_token_in_unknown_kind")
    };
    let cases: Vec<TokenCase> = vec![
        (
            "content_delivery_token_16_bytes",
            Raw::text("content_delivery_token_16_bytes"),
            record(&token("t16", 16)),
            Some(token("t16", 16)),
        ),
        (
            "content_delivery_token_64_bytes",
            Raw::text("content_delivery_token_64_bytes"),
            record(&token("t64", 64)),
            Some(token("t64", 64)),
        ),
        (
            "content_delivery_token_among_other_fields",
            Raw::text("content_delivery_token_among_other_fields"),
            around,
            Some(t32.clone()),
        ),
        (
            "content_delivery_token_in_read_receipt",
            receipt,
            record(&t32),
            Some(t32.clone()),
        ),
        (
            "content_delivery_token_in_unknown_kind",
            later_kind,
            record(&t32),
            Some(t32.clone()),
        ),
        (
            "content_delivery_token_15_bytes_ignored",
            Raw::text("content_delivery_token_15_bytes_ignored"),
            record(&token("t15", 15)),
            None,
        ),
        (
            "content_delivery_token_65_bytes_ignored",
            Raw::text("content_delivery_token_65_bytes_ignored"),
            record(&token("t65", 65)),
            None,
        ),
        (
            "content_delivery_token_empty_ignored",
            Raw::text("content_delivery_token_empty_ignored"),
            record(&[]),
            None,
        ),
        (
            "content_delivery_token_128_bytes_ignored",
            Raw::text("content_delivery_token_128_bytes_ignored"),
            long,
            None,
        ),
        (
            "content_delivery_token_twice_ignored",
            Raw::text("content_delivery_token_twice_ignored"),
            twice,
            None,
        ),
        (
            "content_delivery_token_short_then_valid_ignored",
            Raw::text("content_delivery_token_short_then_valid_ignored"),
            short_then_valid,
            None,
        ),
        (
            "content_delivery_token_varint_then_valid_ignored",
            Raw::text("content_delivery_token_varint_then_valid_ignored"),
            varint_then_valid,
            None,
        ),
        (
            "content_delivery_token_varint_ignored",
            Raw::text("content_delivery_token_varint_ignored"),
            vec![0x80, 0x01, 0x05],
            None,
        ),
        (
            "content_delivery_token_fixed32_ignored",
            Raw::text("content_delivery_token_fixed32_ignored"),
            vec![0x85, 0x01, 1, 2, 3, 4],
            None,
        ),
        (
            "content_delivery_token_fixed64_ignored",
            Raw::text("content_delivery_token_fixed64_ignored"),
            fixed64,
            None,
        ),
        (
            "content_delivery_token_in_field_17_ignored",
            Raw::text("content_delivery_token_in_field_17_ignored"),
            {
                let mut r = record(&t32);
                r[0] = 0x8a;
                r
            },
            None,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, raw, extra, token)| {
            let raw = Raw { extra, ..raw };
            Ok(DeliveryTokenCase {
                name: name.into(),
                padded: HexBytes(raw.padded()?),
                expected: DeliveryTokenExpected {
                    kind: u32::try_from(raw.kind).map_err(|e| e.to_string())?,
                    unknown_fields: HexBytes(raw.extra.clone()),
                    delivery_token: token.map(HexBytes),
                },
            })
        })
        .collect()
}

/// Field-16 records that break the rule for unknown fields: the content
/// is refused (`Wire`), as for any unknown field.
pub(crate) fn invalid_delivery_tokens() -> Result<Vec<InvalidContent>, String> {
    let t32 = token("invalid", 32);
    let with = |name: &str, extra: Vec<u8>| {
        let raw = Raw {
            extra,
            ..Raw::text(name)
        };
        Ok::<_, String>(InvalidContent {
            name: name.into(),
            padded: HexBytes(raw.padded()?),
            error: ContentErrorName::Wire,
        })
    };
    // Field 16 before field 9.
    let mut before_9 = record(&t32);
    before_9.extend_from_slice(&[0x48, 0x01]);
    // A non-minimal length (0x20 as 0xa0 0x00) and tag (0x82 0x81 0x00).
    let mut long_length = vec![0x82, 0x01, 0xa0, 0x00];
    long_length.extend_from_slice(&t32);
    let mut long_tag = vec![0x82, 0x81, 0x00, 0x20];
    long_tag.extend_from_slice(&t32);
    // A length of 32 with 20 bytes.
    let mut cut = record(&t32);
    cut.truncate(3 + 20);
    let mut out = vec![
        with("content_delivery_token_before_field_9", before_9)?,
        with("content_delivery_token_non_minimal_length", long_length)?,
        with("content_delivery_token_non_minimal_tag", long_tag)?,
        with("content_delivery_token_truncated", cut)?,
        with("content_delivery_token_group", vec![0x83, 0x01, 0x84, 0x01])?,
    ];
    // Field 16 before the body (field 5): an unknown field before a known one.
    let mut before_body = Raw {
        body: Vec::new(),
        ..Raw::text("content_delivery_token_before_body")
    }
    .encode();
    before_body.extend(record(&t32));
    before_body.extend_from_slice(&[0x2a, 0x01, b'x']);
    out.push(InvalidContent {
        name: "content_delivery_token_before_body".into(),
        padded: HexBytes(tacit::envelope::padding::pad(&before_body).map_err(|e| e.to_string())?),
        error: ContentErrorName::Wire,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_verifies_and_a_wrong_token_does_not() {
        let cases = delivery_tokens().unwrap();
        for case in &cases {
            assert_eq!(verify_delivery_token(case), Ok(()), "{}", case.name);
        }
        // The verifier compares the token: a case expecting another fails.
        let mut wrong = cases[0].clone();
        wrong.expected.delivery_token = None;
        assert!(verify_delivery_token(&wrong).is_err());
        let mut wrong = cases[5].clone();
        wrong.expected.delivery_token = Some(HexBytes(vec![0; 16]));
        assert!(verify_delivery_token(&wrong).is_err());
    }
}
