//! The wire format: versioned protobuf messages (prost, derived on
//! hand-written structs, so building needs no `protoc`), decoded strictly.
//!
//! Every message type here has a trusted Rust form and a protobuf form. The
//! protobuf form is private: bytes from outside are decoded into it, then
//! checked field by field into the trusted form, so that a value of a public
//! type here is always well formed. Decoding refuses, with a [`WireError`]:
//! input over the type's size limit, bytes that are not the message, a
//! message not in canonical encoding (it must re-encode to the same bytes:
//! no unknown fields, no repeated or reordered fields), an unknown version,
//! a missing field, a key or field of the wrong length, and a key that is
//! not usable (an identity key that is not a valid, non-small-order point).
//!
//! | message | fields |
//! | --- | --- |
//! | [`PreKeyBundleMessage`] | identity key, signed prekey id, key and signature, optional one-time prekey id and key, optional signed KEM prekey (version 2) |
//! | [`PreKeyMessage`] | initiator identity key, ephemeral key, prekey ids, the first ratchet message, optional KEM prekey id and ciphertext (version 2) |
//! | [`EncryptedMessage`] (ratchet message) | encrypted header, ciphertext |
//! | [`SessionMessage`] | either of the two above, tagged |
//!
//! Field numbers and meanings are listed in `docs/PROTOCOL.md`.

mod proto;

use alloc::boxed::Box;
use alloc::vec::Vec;

use prost::Message as _;

use crate::bundle::{BundleKemPreKey, PreKeyBundle};
use crate::error::WireError;
use crate::kem::{KemCiphertext, KemPublicKey, SignedKemPreKey};
use crate::keys::{IdentityKey, PublicKey, Signature, KEY_LEN, SIGNATURE_LEN};
use crate::ratchet::{EncryptedMessage, ENCRYPTED_HEADER_LEN, TAG_LEN};

/// The version every message of this format carries, except bundles and
/// prekey messages of profile `tacit-v2`.
pub const WIRE_VERSION: u32 = 1;
/// The version of a bundle that offers a KEM prekey, and of a prekey
/// message that carries a KEM ciphertext (profile `tacit-v2`).
pub const WIRE_VERSION_PQ: u32 = 2;
/// The largest encoded ratchet, prekey or session message accepted.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;
/// The largest encoded prekey bundle accepted (a version-2 bundle with both
/// optional prekeys is at most 1826 bytes).
pub const MAX_BUNDLE_LEN: usize = 2048;

/// A message with a wire encoding.
pub trait WireMessage: Sized {
    /// The canonical encoding.
    fn to_wire(&self) -> Vec<u8>;
    /// Strict decoding; see the module documentation.
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError>;
}

/// Decodes a protobuf message, refusing oversize input and non-canonical
/// encodings.
pub(crate) fn decode_canonical<M: prost::Message + Default>(
    bytes: &[u8],
    max: usize,
) -> Result<M, WireError> {
    let message: M = decode_within(bytes, max)?;
    if message.encoded_len() != bytes.len() || message.encode_to_vec() != bytes {
        return Err(WireError::NonCanonical);
    }
    Ok(message)
}

/// [`decode_canonical`] for a message that holds a secret: its
/// re-encoding, made to check that it is canonical, is wiped.
pub(crate) fn decode_canonical_secret<M: prost::Message + Default>(
    bytes: &[u8],
    max: usize,
) -> Result<M, WireError> {
    let message: M = decode_within(bytes, max)?;
    let mut again = zeroize::Zeroizing::new(Vec::with_capacity(message.encoded_len()));
    message.encode_raw(&mut *again);
    if again.as_slice() != bytes {
        return Err(WireError::NonCanonical);
    }
    Ok(message)
}

/// The size limit, then protobuf decoding.
fn decode_within<M: prost::Message + Default>(bytes: &[u8], max: usize) -> Result<M, WireError> {
    if bytes.len() > max {
        return Err(WireError::Oversize {
            len: bytes.len(),
            max,
        });
    }
    M::decode(bytes).map_err(|_| WireError::Malformed)
}

/// Checks a message's version field.
pub(crate) fn check_version(version: u32) -> Result<(), WireError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(WireError::UnknownVersion(version))
    }
}

/// A fixed-length byte field.
pub(crate) fn fixed<const N: usize>(
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], WireError> {
    if bytes.is_empty() {
        return Err(WireError::MissingField(field));
    }
    bytes.try_into().map_err(|_| WireError::InvalidLength {
        field,
        expected: N,
        actual: bytes.len(),
    })
}

/// Checks `version` against the KEM fields present: version 1 has none,
/// version 2 has all of them (`docs/PROTOCOL.md` 15.7).
fn check_profile_version(version: u32, present: &[bool]) -> Result<(), WireError> {
    match version {
        WIRE_VERSION if !present.contains(&true) => Ok(()),
        WIRE_VERSION_PQ if !present.contains(&false) => Ok(()),
        WIRE_VERSION | WIRE_VERSION_PQ => Err(WireError::VersionMismatch),
        other => Err(WireError::UnknownVersion(other)),
    }
}

/// A KEM public key field in `EncodeKEM` form: 1569 bytes, type byte, key
/// check.
fn kem_public_key(field: &'static str, bytes: &[u8]) -> Result<KemPublicKey, WireError> {
    KemPublicKey::from_encoded(bytes).map_err(|error| match error {
        crate::error::KemError::InvalidLength { expected, actual } => WireError::InvalidLength {
            field,
            expected,
            actual,
        },
        error => WireError::InvalidKemKey { field, error },
    })
}

/// A KEM ciphertext field: exactly 1568 bytes.
fn kem_ciphertext(field: &'static str, bytes: &[u8]) -> Result<KemCiphertext, WireError> {
    KemCiphertext::try_from_slice(bytes).map_err(|_| WireError::InvalidLength {
        field,
        expected: crate::kem::KEM_CIPHERTEXT_LEN,
        actual: bytes.len(),
    })
}

/// An identity key field: 32 bytes, a valid non-small-order point.
pub(crate) fn identity_key(field: &'static str, bytes: &[u8]) -> Result<IdentityKey, WireError> {
    IdentityKey::from_bytes(&fixed::<KEY_LEN>(field, bytes)?)
        .map_err(|error| WireError::InvalidKey { field, error })
}

/// An X25519 public key field: 32 bytes.
pub(crate) fn public_key(field: &'static str, bytes: &[u8]) -> Result<PublicKey, WireError> {
    fixed::<KEY_LEN>(field, bytes).map(PublicKey::from_bytes)
}

/// A responder's published keys: what an initiator fetches to start a
/// session, with the ids the responder finds its private keys by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyBundleMessage {
    /// The responder's identity key.
    pub identity_key: IdentityKey,
    /// The signed prekey's id.
    pub signed_prekey_id: u32,
    /// The signed prekey.
    pub signed_prekey: PublicKey,
    /// The identity's signature over the signed prekey's encoding.
    pub signed_prekey_signature: Signature,
    /// A one-time prekey (or the fallback prekey) with its id, if one was
    /// offered.
    pub one_time_prekey: Option<(u32, PublicKey)>,
    /// A signed KEM prekey (one-time or last-resort) with its id: present
    /// in a version-2 bundle, which starts a `tacit-v2` session.
    pub kem_prekey: Option<SignedKemPreKey>,
}

impl PreKeyBundleMessage {
    /// The bundle as the key agreement takes it, without ids: with its KEM
    /// part when this is a version-2 bundle, for
    /// [`pqxdh::initiate`](crate::pqxdh::initiate); without, for
    /// [`x3dh::initiate`](crate::x3dh::initiate).
    pub fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle {
            identity_key: self.identity_key,
            signed_prekey: self.signed_prekey,
            signed_prekey_signature: self.signed_prekey_signature,
            one_time_prekey: self.one_time_prekey.map(|(_, key)| key),
            kem_prekey: self.kem_prekey.as_ref().map(|kem| BundleKemPreKey {
                key: kem.key.clone(),
                signature: kem.signature,
            }),
        }
    }

    /// The wire version: 2 when a KEM prekey is offered, else 1.
    pub fn version(&self) -> u32 {
        if self.kem_prekey.is_some() {
            WIRE_VERSION_PQ
        } else {
            WIRE_VERSION
        }
    }
}

impl WireMessage for PreKeyBundleMessage {
    fn to_wire(&self) -> Vec<u8> {
        proto::PreKeyBundle {
            version: self.version(),
            identity_key: self.identity_key.to_bytes().to_vec(),
            signed_prekey_id: self.signed_prekey_id,
            signed_prekey: self.signed_prekey.to_bytes().to_vec(),
            signed_prekey_signature: self.signed_prekey_signature.to_bytes().to_vec(),
            one_time_prekey_id: self.one_time_prekey.map(|(id, _)| id),
            one_time_prekey: self.one_time_prekey.map(|(_, key)| key.to_bytes().to_vec()),
            kem_prekey_id: self.kem_prekey.as_ref().map(|k| k.id),
            kem_prekey: self.kem_prekey.as_ref().map(|k| k.key.to_encoded()),
            kem_prekey_signature: self
                .kem_prekey
                .as_ref()
                .map(|k| k.signature.to_bytes().to_vec()),
        }
        .encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        let m: proto::PreKeyBundle = decode_canonical(bytes, MAX_BUNDLE_LEN)?;
        check_profile_version(
            m.version,
            &[
                m.kem_prekey_id.is_some(),
                m.kem_prekey.is_some(),
                m.kem_prekey_signature.is_some(),
            ],
        )?;
        let one_time_prekey = match (m.one_time_prekey_id, &m.one_time_prekey) {
            (Some(id), Some(key)) => Some((id, public_key("one_time_prekey", key)?)),
            (None, None) => None,
            (Some(_), None) => return Err(WireError::MissingField("one_time_prekey")),
            (None, Some(_)) => return Err(WireError::MissingField("one_time_prekey_id")),
        };
        Ok(Self {
            identity_key: identity_key("identity_key", &m.identity_key)?,
            signed_prekey_id: m.signed_prekey_id,
            signed_prekey: public_key("signed_prekey", &m.signed_prekey)?,
            signed_prekey_signature: Signature::from_bytes(fixed::<SIGNATURE_LEN>(
                "signed_prekey_signature",
                &m.signed_prekey_signature,
            )?),
            one_time_prekey,
            kem_prekey: match (m.kem_prekey_id, &m.kem_prekey, &m.kem_prekey_signature) {
                (Some(id), Some(key), Some(signature)) => Some(SignedKemPreKey {
                    id,
                    key: kem_public_key("kem_prekey", key)?,
                    signature: Signature::from_bytes(fixed::<SIGNATURE_LEN>(
                        "kem_prekey_signature",
                        signature,
                    )?),
                }),
                _ => None,
            },
        })
    }
}

/// The first message of a session: what the responder needs to repeat
/// X3DH, and the first ratchet message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyMessage {
    /// The initiator's identity key.
    pub identity_key: IdentityKey,
    /// The initiator's ephemeral key `EK_A`.
    pub ephemeral_key: PublicKey,
    /// The id of the signed prekey the initiator used.
    pub signed_prekey_id: u32,
    /// The id of the one-time (or fallback) prekey used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// The first ratchet message.
    pub message: EncryptedMessage,
    /// The KEM prekey id and the KEM ciphertext `CT`: present in a
    /// version-2 (`tacit-v2`) prekey message.
    pub kem: Option<(u32, KemCiphertext)>,
}

impl PreKeyMessage {
    fn to_proto(&self) -> proto::PreKeyMessage {
        proto::PreKeyMessage {
            version: self.version(),
            identity_key: self.identity_key.to_bytes().to_vec(),
            ephemeral_key: self.ephemeral_key.to_bytes().to_vec(),
            signed_prekey_id: self.signed_prekey_id,
            one_time_prekey_id: self.one_time_prekey_id,
            message: Some(ratchet_to_proto(&self.message)),
            kem_prekey_id: self.kem.as_ref().map(|(id, _)| *id),
            kem_ciphertext: self.kem.as_ref().map(|(_, ct)| ct.as_bytes().to_vec()),
        }
    }

    /// The wire version: 2 when it carries a KEM ciphertext (`tacit-v2`),
    /// else 1.
    pub fn version(&self) -> u32 {
        if self.kem.is_some() {
            WIRE_VERSION_PQ
        } else {
            WIRE_VERSION
        }
    }

    fn from_proto(m: &proto::PreKeyMessage) -> Result<Self, WireError> {
        check_profile_version(
            m.version,
            &[m.kem_prekey_id.is_some(), m.kem_ciphertext.is_some()],
        )?;
        let message = m
            .message
            .as_ref()
            .ok_or(WireError::MissingField("message"))?;
        Ok(Self {
            identity_key: identity_key("identity_key", &m.identity_key)?,
            ephemeral_key: public_key("ephemeral_key", &m.ephemeral_key)?,
            signed_prekey_id: m.signed_prekey_id,
            one_time_prekey_id: m.one_time_prekey_id,
            message: ratchet_from_proto(message)?,
            kem: match (m.kem_prekey_id, &m.kem_ciphertext) {
                (Some(id), Some(ct)) => Some((id, kem_ciphertext("kem_ciphertext", ct)?)),
                _ => None,
            },
        })
    }
}

impl WireMessage for PreKeyMessage {
    fn to_wire(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        Self::from_proto(&decode_canonical(bytes, MAX_MESSAGE_LEN)?)
    }
}

fn ratchet_to_proto(message: &EncryptedMessage) -> proto::RatchetMessage {
    proto::RatchetMessage {
        version: WIRE_VERSION,
        encrypted_header: message.encrypted_header().to_vec(),
        ciphertext: message.ciphertext().to_vec(),
    }
}

fn ratchet_from_proto(m: &proto::RatchetMessage) -> Result<EncryptedMessage, WireError> {
    check_version(m.version)?;
    let header = fixed::<ENCRYPTED_HEADER_LEN>("encrypted_header", &m.encrypted_header)?;
    if m.ciphertext.len() < TAG_LEN {
        return Err(WireError::InvalidLength {
            field: "ciphertext",
            expected: TAG_LEN,
            actual: m.ciphertext.len(),
        });
    }
    EncryptedMessage::new(header, m.ciphertext.clone()).map_err(|_| WireError::Malformed)
}

/// The ratchet message: encrypted header and ciphertext.
impl WireMessage for EncryptedMessage {
    fn to_wire(&self) -> Vec<u8> {
        ratchet_to_proto(self).encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        ratchet_from_proto(&decode_canonical(bytes, MAX_MESSAGE_LEN)?)
    }
}

/// A message of a session: a prekey message (which starts one) or a ratchet
/// message (which continues one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionMessage {
    /// Starts a session.
    PreKey(Box<PreKeyMessage>),
    /// Continues a session.
    Ratchet(EncryptedMessage),
}

impl WireMessage for SessionMessage {
    fn to_wire(&self) -> Vec<u8> {
        let kind = match self {
            Self::PreKey(m) => proto::session_message::Kind::PreKey(m.to_proto()),
            Self::Ratchet(m) => proto::session_message::Kind::Ratchet(ratchet_to_proto(m)),
        };
        proto::SessionMessage { kind: Some(kind) }.encode_to_vec()
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        let m: proto::SessionMessage = decode_canonical(bytes, MAX_MESSAGE_LEN)?;
        match m.kind {
            Some(proto::session_message::Kind::PreKey(p)) => {
                PreKeyMessage::from_proto(&p).map(|m| Self::PreKey(Box::new(m)))
            }
            Some(proto::session_message::Kind::Ratchet(r)) => {
                ratchet_from_proto(&r).map(Self::Ratchet)
            }
            None => Err(WireError::MissingField("kind")),
        }
    }
}

#[cfg(test)]
mod tests;
