//! [`Content`]: what the ratchet encrypts. Its kind, the sender's timestamp
//! and a random message id travel inside the encryption, with the body and,
//! for attachments, an [`AttachmentPointer`].
//!
//! [`Content::to_padded`] encodes and pads a content for the ratchet;
//! [`Content::from_padded`] strictly undoes both.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::mem;

use prost::Message as _;
use rand_core::CryptoRngCore;
use zeroize::Zeroize;

use super::attachment::MAX_ATTACHMENT_LEN;
use super::padding::{self, MAX_UNPADDED_LEN};
use super::proto;
use super::unknown_fields;
use crate::error::{ContentError, WireError};
use crate::keys::{SecretKey32, KEY_LEN};
use crate::wire::{check_version, decode_canonical, fixed, WIRE_VERSION};

/// Length of a message id.
pub const MESSAGE_ID_LEN: usize = 16;
/// The longest body a content may carry (127 KiB), so that every valid
/// content pads to at most [`padding::MAX_PADDED_LEN`].
pub const MAX_BODY_LEN: usize = 127 * 1024;
/// The longest attachment id.
pub const MAX_ATTACHMENT_ID_LEN: usize = 64;
/// The longest attachment content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;
/// Length of an attachment digest (SHA-256).
pub const DIGEST_LEN: usize = 32;
/// The extension field that carries the sender's delivery token
/// (`docs/PROTOCOL.md` section 10, "Extension field 16").
pub const DELIVERY_TOKEN_FIELD: u32 = 16;
/// The shortest delivery token field 16 carries.
pub const MIN_DELIVERY_TOKEN_LEN: usize = 16;
/// The longest delivery token field 16 carries.
pub const MAX_DELIVERY_TOKEN_LEN: usize = 64;

/// What a [`Content`] is. The body's meaning depends on the kind; see
/// `docs/PROTOCOL.md` (section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentKind {
    /// A text message: the body is UTF-8 text.
    Text,
    /// An attachment: the content carries an [`AttachmentPointer`]; the
    /// body is an optional caption.
    AttachmentPointer,
    /// A delivery receipt: the body lists the 16-byte ids of the messages
    /// delivered.
    DeliveryReceipt,
    /// A read receipt: the body lists the 16-byte ids of the messages read.
    ReadReceipt,
    /// A typing notification: the body is empty (stopped) or one byte 1
    /// (started).
    Typing,
    /// A session control message (for example, a session reset): the body
    /// is defined by the session layer.
    SessionControl,
    /// A kind this build does not know (a code of 7 or above, added by a
    /// later version or an application): delivered with its body, timestamp,
    /// message id and pointer as they came, for the application to handle
    /// or ignore.
    Unknown(u32),
}

impl ContentKind {
    /// Every kind this build knows, in code order.
    pub const ALL: [Self; 6] = [
        Self::Text,
        Self::AttachmentPointer,
        Self::DeliveryReceipt,
        Self::ReadReceipt,
        Self::Typing,
        Self::SessionControl,
    ];

    /// The kind's code on the wire (1 to 6 for the kinds this build knows).
    pub const fn code(self) -> u32 {
        match self {
            Self::Unknown(code) => code,
            Self::Text => 1,
            Self::AttachmentPointer => 2,
            Self::DeliveryReceipt => 3,
            Self::ReadReceipt => 4,
            Self::Typing => 5,
            Self::SessionControl => 6,
        }
    }

    /// The kind of a wire code: a known kind for 1 to 6,
    /// [`Unknown`](Self::Unknown) for 7 and above; 0 (no kind) is an error.
    pub fn from_code(code: u32) -> Result<Self, ContentError> {
        if code == 0 {
            return Err(ContentError::UnknownKind(0));
        }
        Ok(Self::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
            .unwrap_or(Self::Unknown(code)))
    }

    /// Whether this is the kind of `code` as [`from_code`](Self::from_code)
    /// reads it: `Unknown` holds only codes of 7 and above.
    fn is_canonical(self) -> bool {
        Self::from_code(self.code()) == Ok(self)
    }
}

/// A pointer to an encrypted attachment: its id at the storage service,
/// the key it is encrypted under, the SHA-256 digest of the encrypted blob,
/// the plaintext's size and its content type.
///
/// The key is secret: it is zeroized on drop, compared in constant time and
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentPointer {
    id: Vec<u8>,
    key: SecretKey32,
    digest: [u8; DIGEST_LEN],
    size: u64,
    content_type: String,
}

impl AttachmentPointer {
    /// Checks and builds a pointer: `id` of 1 to 64 bytes, `size` at most
    /// [`MAX_ATTACHMENT_LEN`], `content_type` of at most 128 bytes without
    /// control characters (Unicode general category Cc: U+0000 to U+001F
    /// and U+007F to U+009F); it may be empty: unknown.
    pub fn new(
        id: &[u8],
        key: SecretKey32,
        digest: [u8; DIGEST_LEN],
        size: u64,
        content_type: &str,
    ) -> Result<Self, ContentError> {
        if id.is_empty() || id.len() > MAX_ATTACHMENT_ID_LEN {
            return Err(ContentError::InvalidAttachmentPointer("id"));
        }
        if size > MAX_ATTACHMENT_LEN {
            return Err(ContentError::InvalidAttachmentPointer("size"));
        }
        if content_type.len() > MAX_CONTENT_TYPE_LEN || content_type.chars().any(char::is_control) {
            return Err(ContentError::InvalidAttachmentPointer("content_type"));
        }
        Ok(Self {
            id: id.to_vec(),
            key,
            digest,
            size,
            content_type: content_type.into(),
        })
    }

    /// The attachment's id at the storage service.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The key the attachment is encrypted under.
    pub fn key(&self) -> &SecretKey32 {
        &self.key
    }

    /// SHA-256 of the encrypted blob.
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// The plaintext's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The plaintext's content type (for example `image/png`).
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    fn to_proto(&self) -> proto::AttachmentPointer {
        proto::AttachmentPointer {
            id: self.id.clone(),
            key: self.key.as_bytes().to_vec(),
            digest: self.digest.to_vec(),
            size: self.size,
            content_type: self.content_type.clone(),
        }
    }

    /// Checks the fields in field order: `id`, `key`, `digest`, `size`,
    /// `content_type`.
    fn from_proto(m: &proto::AttachmentPointer) -> Result<Self, ContentError> {
        if m.id.is_empty() || m.id.len() > MAX_ATTACHMENT_ID_LEN {
            return Err(ContentError::InvalidAttachmentPointer("id"));
        }
        let key = fixed::<KEY_LEN>("key", &m.key)
            .map_err(|_| ContentError::InvalidAttachmentPointer("key"))?;
        let digest = fixed::<DIGEST_LEN>("digest", &m.digest)
            .map_err(|_| ContentError::InvalidAttachmentPointer("digest"))?;
        Self::new(
            &m.id,
            SecretKey32::from_bytes(key),
            digest,
            m.size,
            &m.content_type,
        )
    }
}

impl fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentPointer")
            .field("id_len", &self.id.len())
            .field("size", &self.size)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// The plaintext of a ratchet message: a kind, a body, the sender's
/// timestamp (milliseconds since the Unix epoch, supplied by the caller: the
/// core reads no clock), a random 16-byte message id, and for attachments a
/// pointer.
///
/// The body is zeroized when the content is dropped, and `Debug` prints only
/// its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Content {
    kind: ContentKind,
    body: Vec<u8>,
    timestamp: u64,
    message_id: [u8; MESSAGE_ID_LEN],
    attachment: Option<AttachmentPointer>,
    /// Encoded fields numbered 7 and above, as received (see
    /// [`unknown_fields`]).
    unknown_fields: Vec<u8>,
}

impl Content {
    /// A content of any kind but [`ContentKind::AttachmentPointer`] (use
    /// [`attachment_pointer`](Self::attachment_pointer)),
    /// with a message id of 16 bytes drawn from `rng` in one call.
    pub fn new(
        kind: ContentKind,
        body: Vec<u8>,
        timestamp: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, ContentError> {
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        rng.fill_bytes(&mut message_id);
        Self::from_parts(kind, body, timestamp, message_id, None)
    }

    /// An attachment content: the pointer and a caption (may be empty),
    /// with a message id of 16 bytes drawn from `rng` in one call.
    pub fn attachment_pointer(
        pointer: AttachmentPointer,
        caption: Vec<u8>,
        timestamp: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, ContentError> {
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        rng.fill_bytes(&mut message_id);
        Self::from_parts(
            ContentKind::AttachmentPointer,
            caption,
            timestamp,
            message_id,
            Some(pointer),
        )
    }

    /// A content from all its parts: the body at most [`MAX_BODY_LEN`]
    /// bytes, the attachment present exactly when the kind is
    /// [`ContentKind::AttachmentPointer`] (for [`ContentKind::Unknown`], with
    /// a code of 7 or above, it may be present or not).
    pub fn from_parts(
        kind: ContentKind,
        body: Vec<u8>,
        timestamp: u64,
        message_id: [u8; MESSAGE_ID_LEN],
        attachment: Option<AttachmentPointer>,
    ) -> Result<Self, ContentError> {
        // Built first so that a refused body is zeroized on drop.
        let content = Self {
            kind,
            body,
            timestamp,
            message_id,
            attachment,
            unknown_fields: Vec::new(),
        };
        if !kind.is_canonical() {
            return Err(ContentError::UnknownKind(kind.code()));
        }
        if content.body.len() > MAX_BODY_LEN {
            return Err(ContentError::BodyTooLong(content.body.len()));
        }
        let mismatch = match kind {
            ContentKind::Unknown(_) => false,
            ContentKind::AttachmentPointer => content.attachment.is_none(),
            _ => content.attachment.is_some(),
        };
        if mismatch {
            return Err(ContentError::AttachmentMismatch);
        }
        Ok(content)
    }

    /// The kind.
    pub fn kind(&self) -> ContentKind {
        self.kind
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out (the content keeps an empty one).
    pub fn into_body(mut self) -> Vec<u8> {
        mem::take(&mut self.body)
    }

    /// The sender's timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The random message id.
    pub fn message_id(&self) -> &[u8; MESSAGE_ID_LEN] {
        &self.message_id
    }

    /// The attachment pointer, for kind [`ContentKind::AttachmentPointer`]
    /// (and for an unknown kind that carries one).
    pub fn attachment(&self) -> Option<&AttachmentPointer> {
        self.attachment.as_ref()
    }

    /// The encoded fields numbered 7 and above that this build does not
    /// know, byte for byte as they came (empty for a content built here).
    /// See [`unknown_fields`].
    pub fn unknown_fields(&self) -> &[u8] {
        &self.unknown_fields
    }

    /// The sender's delivery token (extension field 16): the value of the
    /// only record of field [`DELIVERY_TOKEN_FIELD`] among the unknown
    /// fields, if it is of wire type 2 and [`MIN_DELIVERY_TOKEN_LEN`] to
    /// [`MAX_DELIVERY_TOKEN_LEN`] bytes. No such record, another wire type
    /// or length, or a repeat is `None`: the content stays valid whatever
    /// the field holds. The token is a secret of its sender's mailbox.
    pub fn delivery_token(&self) -> Option<&[u8]> {
        unknown_fields::only_bytes_field(&self.unknown_fields, DELIVERY_TOKEN_FIELD).filter(
            |token| (MIN_DELIVERY_TOKEN_LEN..=MAX_DELIVERY_TOKEN_LEN).contains(&token.len()),
        )
    }

    /// This content with `token` as its sender's delivery token: one record
    /// of field [`DELIVERY_TOKEN_FIELD`] (wire type 2) appended to the
    /// encoding, which [`Content::delivery_token`] then reads. The token
    /// must be [`MIN_DELIVERY_TOKEN_LEN`] to [`MAX_DELIVERY_TOKEN_LEN`]
    /// bytes, and the content must carry no unknown field yet, so that the
    /// record is the only one and the encoding stays canonical
    /// (`docs/PROTOCOL.md` section 10, "Extension field 16").
    pub fn with_delivery_token(&self, token: &[u8]) -> Result<Self, ContentError> {
        let len = u8::try_from(token.len())
            .ok()
            .filter(|_| (MIN_DELIVERY_TOKEN_LEN..=MAX_DELIVERY_TOKEN_LEN).contains(&token.len()))
            .ok_or(ContentError::DeliveryToken("its length"))?;
        if !self.unknown_fields.is_empty() {
            return Err(ContentError::DeliveryToken(
                "the content already carries unknown fields",
            ));
        }
        let mut with = self.clone();
        // Field 16, wire type 2: the tag 0x82 0x01, then a one-byte length.
        with.unknown_fields = Vec::with_capacity(3 + token.len());
        with.unknown_fields.extend_from_slice(&[0x82, 0x01]);
        with.unknown_fields.push(len);
        with.unknown_fields.extend_from_slice(token);
        Ok(with)
    }

    /// The canonical encoding (unpadded): the known fields, then the
    /// unknown fields as received.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = proto::Content {
            version: WIRE_VERSION,
            kind: self.kind.code(),
            timestamp: self.timestamp,
            message_id: self.message_id.to_vec(),
            body: self.body.clone(),
            attachment: self.attachment.as_ref().map(AttachmentPointer::to_proto),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&self.unknown_fields);
        bytes
    }

    /// Strict decoding of an unpadded encoding, in this order: at most
    /// [`MAX_UNPADDED_LEN`] bytes; unknown fields (numbered 7 and above)
    /// only after the known ones and canonical (see [`unknown_fields`]); the
    /// known fields canonical; version 1; a kind other than 0; a 16-byte
    /// message id; a valid attachment pointer if one is present; a body of
    /// at most [`MAX_BODY_LEN`] bytes; an attachment pointer exactly for
    /// kind `AttachmentPointer`. A kind of 7 or above decodes as
    /// [`ContentKind::Unknown`], and unknown fields are kept.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_UNPADDED_LEN {
            return Err(WireError::Oversize {
                len: bytes.len(),
                max: MAX_UNPADDED_LEN,
            }
            .into());
        }
        let (known, unknown) = bytes.split_at(unknown_fields::split(bytes)?);
        let mut m: proto::Content = decode_canonical(known, MAX_UNPADDED_LEN)?;
        let result = Self::from_proto(&mut m);
        m.body.zeroize();
        let mut content = result?;
        content.unknown_fields = unknown.to_vec();
        Ok(content)
    }

    fn from_proto(m: &mut proto::Content) -> Result<Self, ContentError> {
        check_version(m.version)?;
        let kind = ContentKind::from_code(m.kind)?;
        let message_id = fixed::<MESSAGE_ID_LEN>("message_id", &m.message_id)?;
        let attachment = m
            .attachment
            .as_ref()
            .map(AttachmentPointer::from_proto)
            .transpose()?;
        Self::from_parts(
            kind,
            mem::take(&mut m.body),
            m.timestamp,
            message_id,
            attachment,
        )
    }

    /// Encodes and pads (see [`padding`]): the bytes the ratchet encrypts.
    pub fn to_padded(&self) -> Result<Vec<u8>, ContentError> {
        let mut encoded = self.to_bytes();
        let padded = padding::pad(&encoded);
        encoded.zeroize();
        Ok(padded?)
    }

    /// Strictly unpads and decodes what the ratchet decrypted.
    pub fn from_padded(padded: &[u8]) -> Result<Self, ContentError> {
        Self::from_bytes(padding::unpad(padded)?)
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        self.body.zeroize();
        self.unknown_fields.zeroize();
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Content")
            .field("kind", &self.kind)
            .field("body_len", &self.body.len())
            .field("timestamp", &self.timestamp)
            .field("attachment", &self.attachment)
            .field("unknown_fields_len", &self.unknown_fields.len())
            .finish_non_exhaustive()
    }
}
