//! `envelope.json`: its schema, its generation and its verification.
//!
//! The file pins the envelope layer: the padding rule, the encoding of
//! `Content`, and sealed-sender envelopes from all their inputs, plus
//! contents and envelopes that must be refused with a named error. The
//! schema is documented in `docs/PROTOCOL.md` (section 10).

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tacit::envelope::padding::{self, padded_len};
use tacit::envelope::{sealed, AttachmentPointer, Content, ContentKind};
use tacit::identity::{DeviceCertificate, UserKeyPair};
use tacit::keys::{IdentityKeyPair, KeyPair, SecretKey32};
use tacit::wire::{SessionMessage, WireMessage};
use tacit::{Address, ContentError, EnvelopeError};

use crate::envelope_attachments::{
    self, verify_attachment, verify_invalid_attachment, AttachmentCase, InvalidAttachment,
};
use crate::envelope_contents::{self, verify_unknown_content, UnknownContent};
use crate::envelope_session::{self, SessionInputs};
use crate::envelope_tokens::{self, verify_delivery_token, DeliveryTokenCase};
use crate::generate::derive;
use crate::schema::{Hex, HexBytes, PROFILE};
use crate::script_rng::ScriptRng;
use crate::verify::{check, CaseResult};

// ------------------------------------------------------------------ schema

/// `envelope.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeFile {
    /// Always `tacit-v1`.
    pub profile: String,
    /// Unpadded lengths and the padded lengths they must give.
    pub padding: Vec<PaddingCase>,
    /// Contents with their encoding and padded form.
    pub contents: Vec<ContentCase>,
    /// Padded contents of kinds or with fields the core does not know,
    /// which must be delivered.
    pub unknown_contents: Vec<UnknownContent>,
    /// Padded contents that must be refused.
    pub invalid_contents: Vec<InvalidContent>,
    /// Attachments encrypted from all their inputs.
    pub attachments: Vec<AttachmentCase>,
    /// Blobs the decryptor must refuse.
    pub invalid_attachments: Vec<InvalidAttachment>,
    /// Sealed envelopes from all their inputs.
    pub sealed: Vec<SealedCase>,
    /// Envelopes the recipient must refuse.
    pub invalid_sealed: Vec<InvalidSealed>,
    /// Padded contents carrying extension field 16, delivered, with the
    /// sender's delivery token read from them or ignored.
    pub delivery_tokens: Vec<DeliveryTokenCase>,
}

/// One length of the padding rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PaddingCase {
    /// The length before padding (the encoded content).
    pub unpadded_len: usize,
    /// The bucket it pads to, marker included.
    pub padded_len: usize,
}

/// A content kind, by name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `Text`.
    Text,
    /// `AttachmentPointer`.
    AttachmentPointer,
    /// `DeliveryReceipt`.
    DeliveryReceipt,
    /// `ReadReceipt`.
    ReadReceipt,
    /// `Typing`.
    Typing,
    /// `SessionControl`.
    SessionControl,
}

impl Kind {
    fn to_core(self) -> ContentKind {
        match self {
            Self::Text => ContentKind::Text,
            Self::AttachmentPointer => ContentKind::AttachmentPointer,
            Self::DeliveryReceipt => ContentKind::DeliveryReceipt,
            Self::ReadReceipt => ContentKind::ReadReceipt,
            Self::Typing => ContentKind::Typing,
            Self::SessionControl => ContentKind::SessionControl,
        }
    }
}

/// An attachment pointer's fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// The id at the storage service.
    pub id: HexBytes,
    /// The attachment key.
    pub key: Hex<32>,
    /// SHA-256 of the encrypted blob.
    pub digest: Hex<32>,
    /// The plaintext's size.
    pub size: u64,
    /// The content type.
    pub content_type: String,
}

/// A content and its encodings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContentCase {
    /// The case's name.
    pub name: String,
    /// The kind.
    pub kind: Kind,
    /// The body.
    pub body: HexBytes,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The message id.
    pub message_id: Hex<16>,
    /// The pointer, exactly for kind `attachment_pointer`; otherwise `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub attachment: Option<Pointer>,
    /// What encoding must produce.
    pub expected: ContentExpected,
}

/// A content's encodings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContentExpected {
    /// The canonical encoding.
    pub encoded: HexBytes,
    /// The encoding padded to its bucket: what the ratchet encrypts.
    pub padded: HexBytes,
}

/// Why a content is refused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ContentErrorName {
    /// `ContentError::Padding`.
    Padding,
    /// `ContentError::Wire` (not canonical, wrong version, bad field).
    Wire,
    /// `ContentError::UnknownKind`.
    UnknownKind,
    /// `ContentError::AttachmentMismatch`.
    AttachmentMismatch,
    /// `ContentError::InvalidAttachmentPointer`.
    InvalidAttachmentPointer,
    /// `ContentError::BodyTooLong`.
    BodyTooLong,
}

impl ContentErrorName {
    fn of(error: &ContentError) -> Option<Self> {
        Some(match error {
            ContentError::Padding(_) => Self::Padding,
            ContentError::Wire(_) => Self::Wire,
            ContentError::UnknownKind(_) => Self::UnknownKind,
            ContentError::AttachmentMismatch => Self::AttachmentMismatch,
            ContentError::InvalidAttachmentPointer(_) => Self::InvalidAttachmentPointer,
            ContentError::BodyTooLong(_) => Self::BodyTooLong,
            _ => return None,
        })
    }
}

/// A padded content that must be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidContent {
    /// The entry's name.
    pub name: String,
    /// The padded bytes.
    pub padded: HexBytes,
    /// The error.
    pub error: ContentErrorName,
}

/// A sealed envelope from all its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SealedCase {
    /// The case's name.
    pub name: String,
    /// The sender's Ed25519 seed.
    pub sender_identity_seed: Hex<32>,
    /// The sender's user id.
    pub sender_user_id: String,
    /// The sender's device id.
    pub sender_device_id: u32,
    /// The sender's user key's Ed25519 seed: the user key the envelope names
    /// and the signer of its sender certificate (`docs/PROTOCOL.md` 14.2).
    pub sender_user_key_seed: Hex<32>,
    /// The recipient's Ed25519 seed.
    pub recipient_identity_seed: Hex<32>,
    /// The recipient's user id.
    pub recipient_user_id: String,
    /// The recipient's device id.
    pub recipient_device_id: u32,
    /// The ephemeral X25519 private key (the 32 bytes sealing draws).
    pub ephemeral_private: Hex<32>,
    /// The sealed session message, `SessionMessage` encoding.
    pub session_message: HexBytes,
    /// The inputs it is recomputed from.
    pub session: SessionInputs,
    /// What sealing must produce.
    pub expected: SealedExpected,
}

/// A sealed case's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SealedExpected {
    /// `Enc(IK_S)`.
    pub sender_identity_public: Hex<32>,
    /// `Enc(UK)` of the sender's user.
    pub sender_user_key: Hex<32>,
    /// The user key's certificate of the sender's device.
    pub sender_certificate: Hex<64>,
    /// `Enc(IK_R)`.
    pub recipient_identity_public: Hex<32>,
    /// `Enc(E)`.
    pub ephemeral_public: Hex<32>,
    /// The `SealedEnvelope` encoding.
    pub envelope: HexBytes,
}

/// Why an envelope is refused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeErrorName {
    /// `EnvelopeError::Malformed` (a relay can detect it).
    Malformed,
    /// `EnvelopeError::InvalidEphemeralKey`.
    InvalidEphemeralKey,
    /// `EnvelopeError::SenderDoesNotOpen`.
    SenderDoesNotOpen,
    /// `EnvelopeError::InvalidSenderIdentity`.
    InvalidSenderIdentity,
    /// `EnvelopeError::ContentDoesNotOpen`.
    ContentDoesNotOpen,
    /// `EnvelopeError::InnerMalformed`.
    InnerMalformed,
    /// `EnvelopeError::InnerPadding`.
    InnerPadding,
    /// `EnvelopeError::SenderIdentityMismatch`.
    SenderIdentityMismatch,
    /// `EnvelopeError::InvalidSenderCertificate`.
    InvalidSenderCertificate,
}

impl EnvelopeErrorName {
    fn of(error: &EnvelopeError) -> Option<Self> {
        Some(match error {
            EnvelopeError::Malformed(_) => Self::Malformed,
            EnvelopeError::InvalidEphemeralKey => Self::InvalidEphemeralKey,
            EnvelopeError::SenderDoesNotOpen => Self::SenderDoesNotOpen,
            EnvelopeError::InvalidSenderIdentity(_) => Self::InvalidSenderIdentity,
            EnvelopeError::ContentDoesNotOpen => Self::ContentDoesNotOpen,
            EnvelopeError::InnerMalformed(_) => Self::InnerMalformed,
            EnvelopeError::InnerPadding => Self::InnerPadding,
            EnvelopeError::SenderIdentityMismatch => Self::SenderIdentityMismatch,
            EnvelopeError::InvalidSenderCertificate => Self::InvalidSenderCertificate,
            _ => return None,
        })
    }
}

/// An envelope the recipient must refuse.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidSealed {
    /// The entry's name.
    pub name: String,
    /// The recipient's Ed25519 seed.
    pub recipient_identity_seed: Hex<32>,
    /// The recipient's user id.
    pub recipient_user_id: String,
    /// The recipient's device id.
    pub recipient_device_id: u32,
    /// The envelope.
    pub envelope: HexBytes,
    /// The error opening must give.
    pub error: EnvelopeErrorName,
}

pub(crate) fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

// -------------------------------------------------------------- verification

/// Verifies every entry of an `envelope.json` file.
pub fn verify_envelope(file: &EnvelopeFile) -> Vec<CaseResult> {
    let result = |name: String, outcome| CaseResult { name, outcome };
    let padding = file.padding.iter().map(|case| {
        result(
            format!("padding_{}", case.unpadded_len),
            verify_padding(case),
        )
    });
    let contents = file
        .contents
        .iter()
        .map(|case| result(case.name.clone(), verify_content(case)));
    let unknown_contents = file
        .unknown_contents
        .iter()
        .map(|case| result(case.name.clone(), verify_unknown_content(case)));
    let invalid_contents = file
        .invalid_contents
        .iter()
        .map(|entry| result(entry.name.clone(), verify_invalid_content(entry)));
    let attachments = file
        .attachments
        .iter()
        .map(|case| result(case.name.clone(), verify_attachment(case)));
    let invalid_attachments = file
        .invalid_attachments
        .iter()
        .map(|entry| result(entry.name.clone(), verify_invalid_attachment(entry)));
    let sealed = file
        .sealed
        .iter()
        .map(|case| result(case.name.clone(), verify_sealed(case, &file.contents)));
    let invalid_sealed = file
        .invalid_sealed
        .iter()
        .map(|entry| result(entry.name.clone(), verify_invalid_sealed(entry)));
    let delivery_tokens = file
        .delivery_tokens
        .iter()
        .map(|case| result(case.name.clone(), verify_delivery_token(case)));
    padding
        .chain(contents)
        .chain(unknown_contents)
        .chain(invalid_contents)
        .chain(attachments)
        .chain(invalid_attachments)
        .chain(sealed)
        .chain(invalid_sealed)
        .chain(delivery_tokens)
        .collect()
}

fn verify_padding(case: &PaddingCase) -> Result<(), String> {
    let computed = padded_len(case.unpadded_len).map_err(|e| format!("padded_len: {e}"))?;
    if computed != case.padded_len {
        return Err(format!(
            "padded_len: expected {}, computed {computed}",
            case.padded_len
        ));
    }
    let data = vec![0x5a; case.unpadded_len];
    let padded = padding::pad(&data).map_err(|e| e.to_string())?;
    if padded.len() != case.padded_len || padding::unpad(&padded) != Ok(&data[..]) {
        return Err("pad and unpad do not round-trip".into());
    }
    Ok(())
}

fn content_of(case: &ContentCase) -> Result<Content, String> {
    let attachment = case
        .attachment
        .as_ref()
        .map(|p| {
            AttachmentPointer::new(
                &p.id.0,
                SecretKey32::from_bytes(p.key.0),
                p.digest.0,
                p.size,
                &p.content_type,
            )
        })
        .transpose()
        .map_err(|e| format!("attachment: {e}"))?;
    Content::from_parts(
        case.kind.to_core(),
        case.body.0.clone(),
        case.timestamp,
        case.message_id.0,
        attachment,
    )
    .map_err(|e| format!("content refused: {e}"))
}

fn verify_content(case: &ContentCase) -> Result<(), String> {
    let content = content_of(case)?;
    check("encoded", &content.to_bytes(), &case.expected.encoded.0)?;
    let padded = content.to_padded().map_err(|e| e.to_string())?;
    check("padded", &padded, &case.expected.padded.0)?;
    match Content::from_padded(&case.expected.padded.0) {
        Ok(decoded) if decoded == content => Ok(()),
        Ok(_) => Err("padded: decodes to another content".into()),
        Err(e) => Err(format!("padded: does not decode: {e}")),
    }
}

fn verify_invalid_content(entry: &InvalidContent) -> Result<(), String> {
    match Content::from_padded(&entry.padded.0) {
        Ok(_) => Err("the content was accepted".into()),
        Err(e) if ContentErrorName::of(&e) == Some(entry.error) => Ok(()),
        Err(e) => Err(format!("expected error {:?}, got {e}", entry.error)),
    }
}

fn address(user_id: &str, device_id: u32) -> Result<Address, String> {
    Address::new(user_id, device_id).map_err(|e| format!("address {user_id}.{device_id}: {e}"))
}

fn verify_sealed(case: &SealedCase, contents: &[ContentCase]) -> Result<(), String> {
    let messages = envelope_session::recompute(&case.session, contents)?;
    check(
        "session_message",
        &messages[case.session.message].to_wire(),
        &case.session_message.0,
    )?;
    let sender = IdentityKeyPair::from_seed(&case.sender_identity_seed.0);
    let user = UserKeyPair::from_seed(&case.sender_user_key_seed.0);
    let recipient = IdentityKeyPair::from_seed(&case.recipient_identity_seed.0);
    let expected = &case.expected;
    check(
        "sender_identity_public",
        &sender.public_key().to_bytes(),
        &expected.sender_identity_public.0,
    )?;
    check(
        "sender_user_key",
        &user.public_key().to_bytes(),
        &expected.sender_user_key.0,
    )?;
    check(
        "recipient_identity_public",
        &recipient.public_key().to_bytes(),
        &expected.recipient_identity_public.0,
    )?;
    check(
        "ephemeral_public",
        KeyPair::from_private_bytes(case.ephemeral_private.0)
            .public_key()
            .as_bytes(),
        &expected.ephemeral_public.0,
    )?;
    let sender_address = address(&case.sender_user_id, case.sender_device_id)?;
    let recipient_address = address(&case.recipient_user_id, case.recipient_device_id)?;
    let message = SessionMessage::from_wire(&case.session_message.0)
        .map_err(|e| format!("session_message does not decode: {e}"))?;
    let certificate = DeviceCertificate::issue(&user, &sender_address, &sender.public_key());

    let mut rng = ScriptRng::new([case.ephemeral_private.0]);
    let envelope = sealed::seal(
        &sealed::Sender {
            identity: &sender,
            address: &sender_address,
            user_key: &user.public_key(),
            certificate: &certificate,
        },
        &recipient.public_key(),
        &recipient_address,
        &message,
        &mut rng,
    )
    .map_err(|e| format!("sealing failed: {e}"))?;
    if let Some(violation) = rng.take_violation() {
        return Err(format!("sealing randomness: {violation}"));
    }
    if rng.keys_drawn() != 1 {
        return Err("sealing did not draw exactly the ephemeral key".into());
    }
    check("envelope", &envelope, &expected.envelope.0)?;
    check(
        "sender_certificate",
        &certificate.to_bytes(),
        &expected.sender_certificate.0,
    )?;

    let opened = sealed::open(&recipient, &recipient_address, &expected.envelope.0)
        .map_err(|e| format!("the envelope does not open: {e}"))?;
    check(
        "opened sender identity",
        &opened.sender_identity.to_bytes(),
        &sender.public_key().to_bytes(),
    )?;
    check(
        "opened sender user key",
        &opened.sender_user_key.to_bytes(),
        &user.public_key().to_bytes(),
    )?;
    if opened.sender_address != sender_address {
        return Err(format!(
            "opened sender address: expected {sender_address}, got {}",
            opened.sender_address
        ));
    }
    check(
        "opened session message",
        &opened.message.to_wire(),
        &case.session_message.0,
    )
}

fn verify_invalid_sealed(entry: &InvalidSealed) -> Result<(), String> {
    let recipient = IdentityKeyPair::from_seed(&entry.recipient_identity_seed.0);
    let recipient_address = address(&entry.recipient_user_id, entry.recipient_device_id)?;
    match sealed::open(&recipient, &recipient_address, &entry.envelope.0) {
        Ok(_) => Err("the envelope opened".into()),
        Err(e) if EnvelopeErrorName::of(&e) == Some(entry.error) => Ok(()),
        Err(e) => Err(format!("expected error {:?}, got {e}", entry.error)),
    }
}

// ---------------------------------------------------------------- generation

const TIMESTAMP: u64 = 1_767_225_600_000;

fn message_id(label: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&derive(&format!("envelope/{label}/message_id"))[..16]);
    id
}

fn content_case(name: &str, content: &Content) -> Result<ContentCase, String> {
    let attachment = content.attachment().map(|p| Pointer {
        id: HexBytes(p.id().to_vec()),
        key: Hex(*p.key().as_bytes()),
        digest: Hex(*p.digest()),
        size: p.size(),
        content_type: p.content_type().into(),
    });
    let kind = match content.kind() {
        ContentKind::Text => Kind::Text,
        ContentKind::AttachmentPointer => Kind::AttachmentPointer,
        ContentKind::DeliveryReceipt => Kind::DeliveryReceipt,
        ContentKind::ReadReceipt => Kind::ReadReceipt,
        ContentKind::Typing => Kind::Typing,
        ContentKind::SessionControl => Kind::SessionControl,
        other => return Err(format!("no name for kind {other:?}")),
    };
    Ok(ContentCase {
        name: name.into(),
        kind,
        body: HexBytes(content.body().to_vec()),
        timestamp: content.timestamp(),
        message_id: Hex(*content.message_id()),
        attachment,
        expected: ContentExpected {
            encoded: HexBytes(content.to_bytes()),
            padded: HexBytes(content.to_padded().map_err(|e| e.to_string())?),
        },
    })
}

fn contents() -> Result<Vec<(String, Content)>, String> {
    let text = |label: &str, kind, body: Vec<u8>, timestamp| {
        Content::from_parts(kind, body, timestamp, message_id(label), None)
            .map(|c| (label.to_string(), c))
            .map_err(|e| e.to_string())
    };
    let pointer = AttachmentPointer::new(
        b"attachments/0001",
        SecretKey32::from_bytes(derive("envelope/attachment/key")),
        derive("envelope/attachment/digest"),
        1_048_576,
        "image/jpeg",
    )
    .map_err(|e| e.to_string())?;
    let long_text: Vec<u8> = b"A longer message. ".repeat(300);
    Ok(vec![
        text(
            "content_text",
            ContentKind::Text,
            b"hello".to_vec(),
            TIMESTAMP,
        )?,
        text(
            "content_empty_typing_stopped",
            ContentKind::Typing,
            Vec::new(),
            TIMESTAMP,
        )?,
        text(
            "content_typing_started",
            ContentKind::Typing,
            vec![1],
            TIMESTAMP + 1,
        )?,
        text(
            "content_delivery_receipt",
            ContentKind::DeliveryReceipt,
            [message_id("content_text"), message_id("content_long_text")].concat(),
            TIMESTAMP + 2,
        )?,
        text(
            "content_read_receipt",
            ContentKind::ReadReceipt,
            message_id("content_text").to_vec(),
            TIMESTAMP + 3,
        )?,
        text(
            "content_session_control",
            ContentKind::SessionControl,
            b"reset".to_vec(),
            TIMESTAMP + 4,
        )?,
        text(
            "content_timestamp_zero",
            ContentKind::Text,
            b"epoch".to_vec(),
            0,
        )?,
        text(
            "content_text_fills_first_bucket",
            ContentKind::Text,
            vec![b'x'; 128],
            TIMESTAMP,
        )?,
        text(
            "content_text_spills_to_second_bucket",
            ContentKind::Text,
            vec![b'x'; 129],
            TIMESTAMP,
        )?,
        text(
            "content_long_text",
            ContentKind::Text,
            long_text,
            TIMESTAMP + 5,
        )?,
        (
            "content_attachment_pointer".into(),
            Content::from_parts(
                ContentKind::AttachmentPointer,
                b"a caption".to_vec(),
                TIMESTAMP + 6,
                message_id("content_attachment_pointer"),
                Some(pointer),
            )
            .map_err(|e| e.to_string())?,
        ),
    ])
}

fn invalid_contents(valid: &Content) -> Result<Vec<InvalidContent>, String> {
    let entry = |name: &str, padded: Vec<u8>, error| InvalidContent {
        name: name.into(),
        padded: HexBytes(padded),
        error,
    };
    let pad = |bytes: &[u8]| padding::pad(bytes).map_err(|e| e.to_string());
    let encoded = valid.to_bytes();
    let padded = valid.to_padded().map_err(|e| e.to_string())?;
    // The valid encoding with the kind byte (field 2's value) replaced.
    let with_kind = |kind: u8| {
        let mut bytes = encoded.clone();
        bytes[3] = kind;
        bytes
    };
    let mut dirty = padded.clone();
    if let Some(last) = dirty.last_mut() {
        *last = 1;
    }
    let mut no_marker = padded.clone();
    no_marker[encoded.len()] = 0;
    let mut extra_block = padded.clone();
    extra_block.extend_from_slice(&[0; padding::PADDING_BLOCK]);
    let mut version_2 = encoded.clone();
    version_2[1] = 2;
    // Kind 2 needs a pointer; field 6 holding an empty pointer is refused.
    let mut empty_pointer = with_kind(2);
    empty_pointer.extend_from_slice(&[0x32, 0x00]);
    Ok(vec![
        entry(
            "content_kind_without_pointer",
            pad(&with_kind(2))?,
            ContentErrorName::AttachmentMismatch,
        ),
        entry(
            "content_empty_attachment_pointer",
            pad(&empty_pointer)?,
            ContentErrorName::InvalidAttachmentPointer,
        ),
        entry(
            "content_version_2",
            pad(&version_2)?,
            ContentErrorName::Wire,
        ),
        entry("content_padding_not_zero", dirty, ContentErrorName::Padding),
        entry(
            "content_marker_zeroed_last_byte_not_marker",
            no_marker,
            ContentErrorName::Padding,
        ),
        entry(
            "content_padding_without_marker",
            vec![0; padding::PADDING_BLOCK],
            ContentErrorName::Padding,
        ),
        entry(
            "content_padding_bucket_too_large",
            extra_block,
            ContentErrorName::Padding,
        ),
        entry("content_unpadded", encoded, ContentErrorName::Padding),
    ])
}

/// A named party of the sealed cases.
struct Party {
    seed: [u8; 32],
    user_id: String,
    device_id: u32,
    /// The seed of the user key that certifies the device.
    user_key_seed: [u8; 32],
}

impl Party {
    fn new(label: &str, user_id: &str, device_id: u32) -> Self {
        Self::with_seed(
            derive(&format!("envelope/{label}/identity_seed")),
            user_id,
            device_id,
        )
    }

    /// A device of `user_id`, certified by that user's key.
    fn with_seed(seed: [u8; 32], user_id: &str, device_id: u32) -> Self {
        Self {
            seed,
            user_id: user_id.into(),
            device_id,
            user_key_seed: derive(&format!("envelope/{user_id}/user_key_seed")),
        }
    }

    fn address(&self) -> Result<Address, String> {
        address(&self.user_id, self.device_id)
    }

    /// The user key's certificate of this device.
    fn certificate(&self) -> Result<DeviceCertificate, String> {
        Ok(DeviceCertificate::issue(
            &UserKeyPair::from_seed(&self.user_key_seed),
            &self.address()?,
            &IdentityKeyPair::from_seed(&self.seed).public_key(),
        ))
    }
}

/// A session in which Alice sends the contents named, and its messages.
struct Conversation {
    inputs: SessionInputs,
    messages: Vec<SessionMessage>,
}

impl Conversation {
    fn new(name: &str, contents: &[(String, Content)], sent: &[&str]) -> Result<Self, String> {
        let named = sent
            .iter()
            .map(|n| {
                contents
                    .iter()
                    .find(|(c, _)| c == n)
                    .map(|(_, c)| (*n, c))
                    .ok_or(format!("no content {n}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = envelope_session::generate(name, &named)?;
        let cases = contents
            .iter()
            .map(|(n, c)| content_case(n, c))
            .collect::<Result<Vec<_>, _>>()?;
        let messages = envelope_session::recompute(&inputs, &cases)?;
        Ok(Self { inputs, messages })
    }

    /// Message `index` and the inputs that give it.
    fn message(&self, index: usize) -> (SessionInputs, &SessionMessage) {
        let mut inputs = self.inputs.clone();
        inputs.message = index;
        (inputs, &self.messages[index])
    }
}

fn sealed_case(
    name: &str,
    sender: &Party,
    recipient: &Party,
    (session, message): (SessionInputs, &SessionMessage),
) -> Result<SealedCase, String> {
    sealed_case_with(
        name,
        sender,
        &sender.certificate()?,
        recipient,
        (session, message),
    )
}

/// A sealed case whose envelope carries `certificate` as the sender's.
fn sealed_case_with(
    name: &str,
    sender: &Party,
    certificate: &DeviceCertificate,
    recipient: &Party,
    (session, message): (SessionInputs, &SessionMessage),
) -> Result<SealedCase, String> {
    let sender_pair = IdentityKeyPair::from_seed(&sender.seed);
    let user_key = UserKeyPair::from_seed(&sender.user_key_seed).public_key();
    let recipient_pair = IdentityKeyPair::from_seed(&recipient.seed);
    let ephemeral = derive(&format!("envelope/{name}/ephemeral_private"));
    let mut rng = ScriptRng::new([ephemeral]);
    let envelope = sealed::seal(
        &sealed::Sender {
            identity: &sender_pair,
            address: &sender.address()?,
            user_key: &user_key,
            certificate,
        },
        &recipient_pair.public_key(),
        &recipient.address()?,
        message,
        &mut rng,
    )
    .map_err(|e| e.to_string())?;
    Ok(SealedCase {
        name: name.into(),
        sender_identity_seed: Hex(sender.seed),
        sender_user_id: sender.user_id.clone(),
        sender_device_id: sender.device_id,
        sender_user_key_seed: Hex(sender.user_key_seed),
        recipient_identity_seed: Hex(recipient.seed),
        recipient_user_id: recipient.user_id.clone(),
        recipient_device_id: recipient.device_id,
        ephemeral_private: Hex(ephemeral),
        session_message: HexBytes(message.to_wire()),
        session,
        expected: SealedExpected {
            sender_identity_public: Hex(sender_pair.public_key().to_bytes()),
            sender_user_key: Hex(user_key.to_bytes()),
            sender_certificate: Hex(certificate.to_bytes()),
            recipient_identity_public: Hex(recipient_pair.public_key().to_bytes()),
            ephemeral_public: Hex(KeyPair::from_private_bytes(ephemeral)
                .public_key()
                .to_bytes()),
            envelope: HexBytes(envelope),
        },
    })
}

/// The outer envelope's three fields: ephemeral key, sender part, message.
type Fields = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Splits an envelope into its [`Fields`].
fn fields(envelope: &[u8]) -> Result<Fields, String> {
    let outer = sealed::SealedEnvelope::from_wire(envelope).map_err(|e| e.to_string())?;
    Ok((
        outer.ephemeral_key().to_bytes().to_vec(),
        outer.encrypted_sender().to_vec(),
        outer.encrypted_message().to_vec(),
    ))
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn outer(ephemeral: &[u8], sender: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08, 0x01];
    for (tag, field) in [(0x12u8, ephemeral), (0x1a, sender), (0x22, message)] {
        out.push(tag);
        varint(&mut out, field.len() as u64);
        out.extend_from_slice(field);
    }
    out
}

/// A version-1 `SealedContent` (fields 1 to 4, no user key or certificate)
/// padded as version 1 padded it: to the ratchet ciphertext's length plus
/// the version-1 reserve of 320 bytes.
fn sealed_content_v1(sender: &Party, message: &SessionMessage) -> Vec<u8> {
    let wire = message.to_wire();
    let mut inner = vec![0x08, 0x01, 0x12];
    varint(&mut inner, sender.user_id.len() as u64);
    inner.extend_from_slice(sender.user_id.as_bytes());
    inner.push(0x18);
    varint(&mut inner, u64::from(sender.device_id));
    inner.push(0x22);
    varint(&mut inner, wire.len() as u64);
    inner.extend_from_slice(&wire);
    let ciphertext_len = match message {
        SessionMessage::PreKey(m) => m.message.ciphertext().len(),
        SessionMessage::Ratchet(m) => m.ciphertext().len(),
    };
    let target = ciphertext_len + 320;
    inner.push(0x80);
    if inner.len() < target {
        inner.resize(target, 0);
    }
    inner
}

fn hkdf_sha256(salt: &[u8; 32], ikm: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), String> {
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .map_err(|e| e.to_string())
}

fn chacha20poly1305_seal(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, String> {
    use chacha20poly1305::aead::AeadInPlace;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
    let mut out = data.to_vec();
    let tag = ChaCha20Poly1305::new_from_slice(key)
        .map_err(|e| e.to_string())?
        .encrypt_in_place_detached(nonce.into(), aad, &mut out)
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Seals an arbitrary padded inner plaintext as `sealed::seal`
/// seals a `SealedContent` (`docs/PROTOCOL.md` section 10), for contents
/// the library no longer produces.
fn seal_inner(
    name: &str,
    sender: &Party,
    recipient: &Party,
    inner: &[u8],
) -> Result<Vec<u8>, String> {
    let sender_pair = IdentityKeyPair::from_seed(&sender.seed);
    let recipient_identity = IdentityKeyPair::from_seed(&recipient.seed).public_key();
    let recipient_x25519 = recipient_identity.to_x25519();
    let ephemeral =
        KeyPair::from_private_bytes(derive(&format!("envelope/{name}/ephemeral_private")));
    let user_id = recipient.user_id.as_bytes();
    let mut ctx = ephemeral.public_key().as_bytes().to_vec();
    ctx.extend_from_slice(&recipient_identity.to_bytes());
    ctx.push(u8::try_from(user_id.len()).map_err(|e| e.to_string())?);
    ctx.extend_from_slice(user_id);
    ctx.extend_from_slice(&recipient.device_id.to_be_bytes());

    let dh_e = ephemeral
        .diffie_hellman(&recipient_x25519)
        .map_err(|e| e.to_string())?;
    let mut first = [0u8; 76];
    hkdf_sha256(
        &[0; 32],
        dh_e.as_bytes(),
        &[sealed::LABEL_EPHEMERAL, &ctx].concat(),
        &mut first,
    )?;
    let sender_part = chacha20poly1305_seal(
        &first[32..64],
        &first[64..],
        &ctx,
        &sender_pair.public_key().to_bytes(),
    )?;
    let dh_s = sender_pair
        .diffie_hellman(&recipient_x25519)
        .map_err(|e| e.to_string())?;
    let mut chain_key = [0u8; 32];
    chain_key.copy_from_slice(&first[..32]);
    let mut second = [0u8; 44];
    hkdf_sha256(
        &chain_key,
        dh_s.as_bytes(),
        &[sealed::LABEL_STATIC, &ctx, &sender_part].concat(),
        &mut second,
    )?;
    let message = chacha20poly1305_seal(
        &second[..32],
        &second[32..],
        &[&ctx[..], &sender_part].concat(),
        inner,
    )?;
    Ok(outer(
        ephemeral.public_key().as_bytes(),
        &sender_part,
        &message,
    ))
}

fn invalid_sealed(
    base: &SealedCase,
    other_sender: &SealedCase,
    mismatch: &SealedCase,
) -> Result<Vec<InvalidSealed>, String> {
    let envelope = &base.expected.envelope.0;
    let entry = |name: &str, bytes: Vec<u8>, error| InvalidSealed {
        name: name.into(),
        recipient_identity_seed: base.recipient_identity_seed,
        recipient_user_id: base.recipient_user_id.clone(),
        recipient_device_id: base.recipient_device_id,
        envelope: HexBytes(bytes),
        error,
    };
    let (e, s, m) = fields(envelope)?;
    let (_, other_s, other_m) = fields(&other_sender.expected.envelope.0)?;
    let flip = |field: &[u8], at: usize| {
        let mut f = field.to_vec();
        f[at] ^= 0x01;
        f
    };
    let mut version_2 = envelope.clone();
    version_2[1] = 2;
    let mut trailing = envelope.clone();
    trailing.extend_from_slice(&[0x28, 0x01]);
    let mut wrong_device = entry(
        "sealed_wrong_recipient_device",
        envelope.clone(),
        EnvelopeErrorName::SenderDoesNotOpen,
    );
    wrong_device.recipient_device_id += 1;
    let mut wrong_user = entry(
        "sealed_wrong_recipient_user",
        envelope.clone(),
        EnvelopeErrorName::SenderDoesNotOpen,
    );
    wrong_user.recipient_user_id.push('x');
    let mut wrong_identity = entry(
        "sealed_wrong_recipient_identity",
        envelope.clone(),
        EnvelopeErrorName::SenderDoesNotOpen,
    );
    wrong_identity.recipient_identity_seed = Hex(derive("envelope/someone_else/identity_seed"));
    let mut mismatch_entry = entry(
        "sealed_prekey_identity_is_not_the_sender",
        mismatch.expected.envelope.0.clone(),
        EnvelopeErrorName::SenderIdentityMismatch,
    );
    mismatch_entry.recipient_identity_seed = mismatch.recipient_identity_seed;
    mismatch_entry.recipient_user_id = mismatch.recipient_user_id.clone();
    mismatch_entry.recipient_device_id = mismatch.recipient_device_id;
    Ok(vec![
        entry(
            "sealed_truncated",
            envelope[..envelope.len() - 1].to_vec(),
            EnvelopeErrorName::Malformed,
        ),
        entry("sealed_empty", Vec::new(), EnvelopeErrorName::Malformed),
        entry("sealed_version_2", version_2, EnvelopeErrorName::Malformed),
        entry(
            "sealed_unknown_field",
            trailing,
            EnvelopeErrorName::Malformed,
        ),
        entry(
            "sealed_short_ephemeral_key",
            outer(&e[..31], &s, &m),
            EnvelopeErrorName::Malformed,
        ),
        entry(
            "sealed_short_encrypted_message",
            outer(&e, &s, &m[..sealed::MIN_ENCRYPTED_MESSAGE_LEN - 1]),
            EnvelopeErrorName::Malformed,
        ),
        entry(
            "sealed_small_order_ephemeral_key",
            outer(&[0; 32], &s, &m),
            EnvelopeErrorName::InvalidEphemeralKey,
        ),
        entry(
            "sealed_flipped_ephemeral_key",
            outer(&flip(&e, 7), &s, &m),
            EnvelopeErrorName::SenderDoesNotOpen,
        ),
        entry(
            "sealed_flipped_encrypted_sender",
            outer(&e, &flip(&s, 3), &m),
            EnvelopeErrorName::SenderDoesNotOpen,
        ),
        entry(
            "sealed_flipped_sender_tag",
            outer(&e, &flip(&s, 40), &m),
            EnvelopeErrorName::SenderDoesNotOpen,
        ),
        entry(
            "sealed_flipped_encrypted_message",
            outer(&e, &s, &flip(&m, 10)),
            EnvelopeErrorName::ContentDoesNotOpen,
        ),
        entry(
            "sealed_flipped_message_tag",
            outer(&e, &s, &flip(&m, m.len() - 1)),
            EnvelopeErrorName::ContentDoesNotOpen,
        ),
        entry(
            "sealed_content_from_another_sender",
            outer(&e, &s, &other_m),
            EnvelopeErrorName::ContentDoesNotOpen,
        ),
        entry(
            "sealed_sender_part_from_another_envelope",
            outer(&e, &other_s, &m),
            EnvelopeErrorName::SenderDoesNotOpen,
        ),
        wrong_device,
        wrong_user,
        wrong_identity,
        mismatch_entry,
    ])
}

/// Envelopes from `sender` to `recipient` that open but whose sender
/// certificate does not verify, and one whose `SealedContent` is version 1.
fn invalid_sender_contents(
    sender: &Party,
    recipient: &Party,
    (session, message): (SessionInputs, &SessionMessage),
) -> Result<Vec<InvalidSealed>, String> {
    let identity = IdentityKeyPair::from_seed(&sender.seed).public_key();
    let user = UserKeyPair::from_seed(&sender.user_key_seed);
    let address = sender.address()?;
    let other_user = UserKeyPair::from_seed(&derive("envelope/mallory/user_key_seed"));
    let other_device = Address::new(&sender.user_id, sender.device_id.wrapping_add(1))
        .map_err(|e| e.to_string())?;
    let other_identity =
        IdentityKeyPair::from_seed(&derive("envelope/someone_else/identity_seed")).public_key();
    let mut flipped = sender.certificate()?.to_bytes();
    flipped[5] ^= 0x01;
    let certificates = [
        (
            "sealed_certificate_by_another_user_key",
            DeviceCertificate::issue(&other_user, &address, &identity),
        ),
        (
            "sealed_certificate_of_another_device",
            DeviceCertificate::issue(&user, &other_device, &identity),
        ),
        (
            "sealed_certificate_of_another_identity",
            DeviceCertificate::issue(&user, &address, &other_identity),
        ),
        (
            "sealed_certificate_flipped_signature",
            DeviceCertificate::from_bytes(flipped),
        ),
    ];
    let entry = |name: &str, envelope: Vec<u8>, error| InvalidSealed {
        name: name.into(),
        recipient_identity_seed: Hex(recipient.seed),
        recipient_user_id: recipient.user_id.clone(),
        recipient_device_id: recipient.device_id,
        envelope: HexBytes(envelope),
        error,
    };
    let mut entries = certificates
        .iter()
        .map(|(name, certificate)| {
            sealed_case_with(
                name,
                sender,
                certificate,
                recipient,
                (session.clone(), message),
            )
            .map(|case| {
                entry(
                    name,
                    case.expected.envelope.0,
                    EnvelopeErrorName::InvalidSenderCertificate,
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let name = "sealed_content_version_1";
    entries.push(entry(
        name,
        seal_inner(name, sender, recipient, &sealed_content_v1(sender, message))?,
        EnvelopeErrorName::InnerMalformed,
    ));
    Ok(entries)
}

/// The envelope.json file.
pub fn envelope_file() -> Result<EnvelopeFile, String> {
    let padding = [
        0, 1, 158, 159, 160, 319, 320, 5119, 5120, 8191, 8192, 100_000, 131_071,
    ]
    .into_iter()
    .map(|len| {
        padded_len(len)
            .map(|padded| PaddingCase {
                unpadded_len: len,
                padded_len: padded,
            })
            .map_err(|e| e.to_string())
    })
    .collect::<Result<Vec<_>, _>>()?;

    let contents = contents()?;
    let content_cases = contents
        .iter()
        .map(|(name, content)| content_case(name, content))
        .collect::<Result<Vec<_>, _>>()?;
    let mut invalid_contents = invalid_contents(&contents[0].1)?;
    invalid_contents.extend(envelope_contents::invalid_contents()?);
    invalid_contents.extend(envelope_tokens::invalid_delivery_tokens()?);
    let unknown_contents = envelope_contents::unknown_contents(&contents[0].1.to_bytes())?;

    let conversation = Conversation::new(
        "conversation",
        &contents,
        &["content_text", "content_attachment_pointer"],
    )?;
    let long = Conversation::new("long", &contents, &["content_text", "content_long_text"])?;
    let (alice_seed, bob_seed) = (
        conversation.inputs.x3dh.alice_identity_seed.0,
        conversation.inputs.x3dh.bob_identity_seed.0,
    );
    let prekey = || conversation.message(0);
    let ratchet = || conversation.message(1);
    let alice = Party::with_seed(alice_seed, "alice", 1);
    let bob = Party::with_seed(bob_seed, "bob", 2);
    let carol = Party::new("carol", &"c".repeat(64), u32::MAX);
    let bob_other_device = Party::with_seed(bob_seed, "bob", 3);

    let base = sealed_case("sealed_ratchet_message", &alice, &bob, ratchet())?;
    let sealed_cases = vec![
        sealed_case("sealed_prekey_message", &alice, &bob, prekey())?,
        base.clone(),
        sealed_case("sealed_long_message", &alice, &bob, long.message(1))?,
        sealed_case("sealed_longest_sender_address", &carol, &bob, ratchet())?,
        sealed_case(
            "sealed_to_own_other_device",
            &bob,
            &bob_other_device,
            ratchet(),
        )?,
    ];
    // Carol relays Alice's prekey message as her own.
    let mismatch = sealed_case("mismatch", &carol, &bob, prekey())?;
    let from_carol = &sealed_cases[3];
    let mut invalid = invalid_sealed(&base, from_carol, &mismatch)?;
    invalid.extend(invalid_sender_contents(&alice, &bob, ratchet())?);

    let (attachments, invalid_attachments) = envelope_attachments::attachments()?;
    Ok(EnvelopeFile {
        profile: PROFILE.into(),
        padding,
        contents: content_cases,
        unknown_contents,
        invalid_contents,
        attachments,
        invalid_attachments,
        sealed: sealed_cases,
        invalid_sealed: invalid,
        delivery_tokens: envelope_tokens::delivery_tokens()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tacit::keys::IdentityKey;

    #[test]
    fn the_generated_file_verifies() {
        let file = envelope_file().unwrap();
        for result in verify_envelope(&file) {
            assert_eq!(result.outcome, Ok(()), "{}", result.name);
        }
    }

    #[test]
    fn identity_keys_of_the_file_are_valid() {
        let file = envelope_file().unwrap();
        for case in &file.sealed {
            IdentityKey::from_bytes(&case.expected.sender_identity_public.0).unwrap();
        }
    }
}
