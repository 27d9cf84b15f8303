//! The contents of `envelope.json` written byte by byte: contents of kinds
//! or with fields the core does not know, which must be delivered
//! (`unknown_contents`), and contents refused for each error that can be
//! written, alone and several at once (in `invalid_contents`).

use serde::{Deserialize, Serialize};
use tacit::envelope::padding;
use tacit::envelope::{Content, MAX_BODY_LEN};

use crate::envelope::{ContentErrorName, InvalidContent, Pointer};
use crate::generate::derive;
use crate::schema::{Hex, HexBytes};

/// A padded content that must be delivered, with what it decodes to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnknownContent {
    /// The case's name.
    pub name: String,
    /// The padded bytes.
    pub padded: HexBytes,
    /// What decoding gives.
    pub expected: UnknownExpected,
}

/// What an [`UnknownContent`] decodes to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnknownExpected {
    /// The kind's code (1 to 6 for a known kind).
    pub kind: u32,
    /// The body.
    pub body: HexBytes,
    /// The timestamp.
    pub timestamp: u64,
    /// The message id.
    pub message_id: Hex<16>,
    /// The pointer, if the content carries one.
    #[serde(deserialize_with = "crate::envelope::required_nullable")]
    pub attachment: Option<Pointer>,
    /// The encoded fields numbered 7 and above, as they came.
    pub unknown_fields: HexBytes,
}

/// Checks that `case.padded` decodes to `case.expected` and re-encodes to
/// the same bytes.
pub fn verify_unknown_content(case: &UnknownContent) -> Result<(), String> {
    let content = Content::from_padded(&case.padded.0)
        .map_err(|e| format!("the content was refused: {e}"))?;
    let pointer = content.attachment().map(|p| Pointer {
        id: HexBytes(p.id().to_vec()),
        key: Hex(*p.key().as_bytes()),
        digest: Hex(*p.digest()),
        size: p.size(),
        content_type: p.content_type().into(),
    });
    let decoded = UnknownExpected {
        kind: content.kind().code(),
        body: HexBytes(content.body().to_vec()),
        timestamp: content.timestamp(),
        message_id: Hex(*content.message_id()),
        attachment: pointer,
        unknown_fields: HexBytes(content.unknown_fields().to_vec()),
    };
    if decoded != case.expected {
        return Err(format!("decodes to {decoded:?}"));
    }
    if content.to_padded().map_err(|e| e.to_string())? != case.padded.0 {
        return Err("does not re-encode to the same bytes".into());
    }
    Ok(())
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint field (omitted when `value` is 0 and `omit_zero`).
fn uint(out: &mut Vec<u8>, number: u64, value: u64) {
    if value != 0 {
        varint(out, number << 3);
        varint(out, value);
    }
}

/// A length-delimited field (omitted when empty).
fn bytes(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    if !value.is_empty() {
        varint(out, (number << 3) | 2);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

/// The fields of a `Content`, written as given (nothing checked).
#[derive(Clone)]
pub(crate) struct Raw {
    pub(crate) version: u64,
    pub(crate) kind: u64,
    pub(crate) timestamp: u64,
    pub(crate) message_id: Vec<u8>,
    pub(crate) body: Vec<u8>,
    pub(crate) pointer: Option<Vec<u8>>,
    /// Records after the known fields (unknown fields, or misplaced ones).
    pub(crate) extra: Vec<u8>,
}

impl Raw {
    /// A text content whose message id is derived from `label`.
    pub(crate) fn text(label: &str) -> Self {
        Self {
            version: 1,
            kind: 1,
            timestamp: 1_767_225_600_000,
            message_id: derive(&format!("envelope/{label}/message_id"))[..16].to_vec(),
            body: b"hello".to_vec(),
            pointer: None,
            extra: Vec::new(),
        }
    }

    /// The fields in order, then `extra`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        uint(&mut out, 1, self.version);
        uint(&mut out, 2, self.kind);
        uint(&mut out, 3, self.timestamp);
        bytes(&mut out, 4, &self.message_id);
        bytes(&mut out, 5, &self.body);
        if let Some(pointer) = &self.pointer {
            varint(&mut out, (6 << 3) | 2);
            varint(&mut out, pointer.len() as u64);
            out.extend_from_slice(pointer);
        }
        out.extend_from_slice(&self.extra);
        out
    }

    /// [`Raw::encode`], padded.
    pub(crate) fn padded(&self) -> Result<Vec<u8>, String> {
        padding::pad(&self.encode()).map_err(|e| e.to_string())
    }
}

/// The fields of an `AttachmentPointer`, written as given.
struct RawPointer {
    id: Vec<u8>,
    key: Vec<u8>,
    digest: Vec<u8>,
    size: u64,
    content_type: Vec<u8>,
    extra: Vec<u8>,
}

impl RawPointer {
    fn valid() -> Self {
        Self {
            id: b"attachments/0002".to_vec(),
            key: derive("envelope/raw_pointer/key").to_vec(),
            digest: derive("envelope/raw_pointer/digest").to_vec(),
            size: 4096,
            content_type: b"image/png".to_vec(),
            extra: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(&mut out, 1, &self.id);
        bytes(&mut out, 2, &self.key);
        bytes(&mut out, 3, &self.digest);
        uint(&mut out, 4, self.size);
        bytes(&mut out, 5, &self.content_type);
        out.extend_from_slice(&self.extra);
        out
    }

    fn schema(&self) -> Result<Pointer, String> {
        Ok(Pointer {
            id: HexBytes(self.id.clone()),
            key: Hex(self.key.as_slice().try_into().map_err(|_| "key")?),
            digest: Hex(self.digest.as_slice().try_into().map_err(|_| "digest")?),
            size: self.size,
            content_type: String::from_utf8(self.content_type.clone())
                .map_err(|e| e.to_string())?,
        })
    }
}

/// Contents of kinds or with fields the core does not know: delivered.
/// `valid` is the encoding of the file's first content, which the first two
/// cases change (as the file did when they were refused).
pub(crate) fn unknown_contents(valid: &[u8]) -> Result<Vec<UnknownContent>, String> {
    let case = |name: &str, encoded: Vec<u8>, raw: &Raw, pointer: Option<Pointer>| {
        Ok::<_, String>(UnknownContent {
            name: name.into(),
            padded: HexBytes(padding::pad(&encoded).map_err(|e| e.to_string())?),
            expected: UnknownExpected {
                kind: u32::try_from(raw.kind).map_err(|e| e.to_string())?,
                body: HexBytes(raw.body.clone()),
                timestamp: raw.timestamp,
                message_id: Hex(raw.message_id.as_slice().try_into().map_err(|_| "id")?),
                attachment: pointer,
                unknown_fields: HexBytes(raw.extra.clone()),
            },
        })
    };
    let decoded = Content::from_bytes(valid).map_err(|e| e.to_string())?;
    let base = Raw {
        version: 1,
        kind: 1,
        timestamp: decoded.timestamp(),
        message_id: decoded.message_id().to_vec(),
        body: decoded.body().to_vec(),
        pointer: None,
        extra: Vec::new(),
    };
    if base.encode() != valid {
        return Err("the base content does not re-encode".into());
    }
    let kind_7 = Raw {
        kind: 7,
        ..base.clone()
    };
    let field_9 = Raw {
        extra: vec![0x48, 0x01],
        ..base.clone()
    };
    let max_kind = Raw {
        kind: u64::from(u32::MAX),
        body: b"a later kind".to_vec(),
        ..Raw::text("content_unknown_kind_max")
    };
    let pointer = RawPointer::valid();
    let with_pointer = Raw {
        kind: 8,
        body: Vec::new(),
        pointer: Some(pointer.encode()),
        ..Raw::text("content_unknown_kind_with_pointer")
    };
    // Field 7 twice (varint, then bytes), 8 fixed64, 9 bytes, 10 fixed32, and
    // the largest field number with a varint of 10 bytes.
    let mut extra = vec![0x38, 0x00, 0x3a, 0x02, b'o', b'k', 0x41];
    extra.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    extra.extend_from_slice(&[0x4a, 0x00, 0x55, 9, 10, 11, 12]);
    extra.extend_from_slice(&[0xf8, 0xff, 0xff, 0xff, 0x0f]);
    extra.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let every_wire_type = Raw {
        extra,
        ..Raw::text("content_unknown_fields_of_every_wire_type")
    };
    Ok(vec![
        case("content_unknown_kind_7", kind_7.encode(), &kind_7, None)?,
        case("content_unknown_field", field_9.encode(), &field_9, None)?,
        case(
            "content_unknown_kind_max",
            max_kind.encode(),
            &max_kind,
            None,
        )?,
        case(
            "content_unknown_kind_with_pointer",
            with_pointer.encode(),
            &with_pointer,
            Some(pointer.schema()?),
        )?,
        case(
            "content_unknown_fields_of_every_wire_type",
            every_wire_type.encode(),
            &every_wire_type,
            None,
        )?,
    ])
}

/// Contents refused for each error that can be written, and for several
/// faults at once (the first check in `docs/PROTOCOL.md`'s order decides).
pub(crate) fn invalid_contents() -> Result<Vec<InvalidContent>, String> {
    use ContentErrorName::{
        AttachmentMismatch, BodyTooLong, InvalidAttachmentPointer, UnknownKind, Wire,
    };
    let text = Raw::text("content_invalid");
    let with = |f: &dyn Fn(&mut Raw)| {
        let mut raw = text.clone();
        f(&mut raw);
        raw
    };
    let with_pointer = |f: &dyn Fn(&mut RawPointer)| {
        let mut pointer = RawPointer::valid();
        f(&mut pointer);
        Raw {
            kind: 2,
            pointer: Some(pointer.encode()),
            ..text.clone()
        }
    };
    let cases: Vec<(&str, Raw, ContentErrorName)> = vec![
        ("content_kind_0", with(&|r| r.kind = 0), UnknownKind),
        ("content_version_0", with(&|r| r.version = 0), Wire),
        (
            "content_message_id_missing",
            with(&|r| r.message_id.clear()),
            Wire,
        ),
        (
            "content_message_id_15_bytes",
            with(&|r| r.message_id.truncate(15)),
            Wire,
        ),
        (
            "content_message_id_17_bytes",
            with(&|r| r.message_id.push(0)),
            Wire,
        ),
        (
            "content_body_too_long",
            with(&|r| r.body = vec![b'x'; MAX_BODY_LEN + 1]),
            BodyTooLong,
        ),
        (
            "content_text_with_pointer",
            with(&|r| r.pointer = Some(RawPointer::valid().encode())),
            AttachmentMismatch,
        ),
        (
            "content_pointer_id_65_bytes",
            with_pointer(&|p| p.id = vec![b'i'; 65]),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_key_missing",
            with_pointer(&|p| p.key.clear()),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_key_31_bytes",
            with_pointer(&|p| p.key.truncate(31)),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_digest_33_bytes",
            with_pointer(&|p| p.digest.push(0)),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_size_over_2_48",
            with_pointer(&|p| p.size = (1 << 48) + 1),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_content_type_129_bytes",
            with_pointer(&|p| p.content_type = vec![b'a'; 129]),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_content_type_del",
            with_pointer(&|p| p.content_type = b"image/\x7fpng".to_vec()),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_content_type_c1_control",
            with_pointer(&|p| p.content_type = "image/\u{85}png".as_bytes().to_vec()),
            InvalidAttachmentPointer,
        ),
        (
            "content_pointer_content_type_not_utf8",
            with_pointer(&|p| p.content_type = b"image/\xffpng".to_vec()),
            Wire,
        ),
        (
            "content_pointer_unknown_field",
            with_pointer(&|p| p.extra = vec![0x30, 0x01]),
            Wire,
        ),
        (
            "content_unknown_field_before_known",
            with(&|r| {
                r.body.clear();
                r.pointer = None;
                r.extra = vec![0x38, 0x01, 0x2a, 0x01, b'x'];
            }),
            Wire,
        ),
        (
            "content_unknown_fields_out_of_order",
            with(&|r| r.extra = vec![0x48, 0x01, 0x38, 0x01]),
            Wire,
        ),
        (
            "content_unknown_field_group",
            with(&|r| r.extra = vec![0x3b, 0x3c]),
            Wire,
        ),
        (
            "content_unknown_field_non_minimal_varint",
            with(&|r| r.extra = vec![0x38, 0x81, 0x00]),
            Wire,
        ),
        (
            "content_unknown_field_truncated",
            with(&|r| r.extra = vec![0x3a, 0x05, b'x']),
            Wire,
        ),
        (
            "content_unknown_field_number_0",
            with(&|r| r.extra = vec![0x00, 0x01]),
            Wire,
        ),
        (
            "content_version_2_and_kind_0",
            with(&|r| {
                r.version = 2;
                r.kind = 0;
            }),
            Wire,
        ),
        (
            "content_kind_0_and_message_id_15_bytes",
            with(&|r| {
                r.kind = 0;
                r.message_id.truncate(15);
            }),
            UnknownKind,
        ),
        (
            "content_message_id_15_bytes_and_invalid_pointer",
            Raw {
                message_id: text.message_id[..15].to_vec(),
                ..with_pointer(&|p| p.key.truncate(31))
            },
            Wire,
        ),
        (
            "content_invalid_pointer_on_a_text",
            with(&|r| {
                let mut pointer = RawPointer::valid();
                pointer.id.clear();
                r.pointer = Some(pointer.encode());
            }),
            InvalidAttachmentPointer,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, raw, error)| {
            Ok(InvalidContent {
                name: name.into(),
                padded: HexBytes(raw.padded()?),
                error,
            })
        })
        .collect()
}
