//! The multi-recipient envelope (`docs/PROTOCOL.md` 16.7): one encryption
//! of a plaintext (a group message) for many recipient devices, with a
//! 32-byte part per device.
//!
//! ```text
//! M (32) || e (32)     = 64 bytes from the caller's RNG, one call;  E = X25519(e, 9)
//! K_p (32) || N_p (12) = HKDF(0^32, M, "tacit/multi/v1/payload" || Enc(E), 44)
//! payload              = ChaCha20-Poly1305(K_p, N_p, plaintext, aad = Enc(E))
//! W_i    = HKDF(0^32, DH(e, IK_i), "tacit/multi/v1/wrap" || Enc(E) || Enc(IK_i) || RA_i, 32)
//! part_i = M XOR W_i
//! ```
//!
//! The sender uploads a [`SharedPayload`] once with the parts; the relay
//! gives each recipient device a [`GroupEnvelope`] (the shared payload and
//! that device's part), which [`open`] decrypts. This layer keeps the
//! plaintext confidential to the listed devices; it does not authenticate
//! the sender (every recipient learns `M`): the group message inside is
//! signed by its sender chain.

use alloc::vec::Vec;

use prost::Message as _;
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::multi_proto as proto;
use crate::address::Address;
use crate::aead::{chacha20poly1305_open, chacha20poly1305_seal, TAG_LEN};
use crate::crypto::hkdf;
use crate::error::{KeyError, WireError};
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey, SecretKey32, KEY_LEN};
use crate::wire::{check_version, decode_canonical, fixed, public_key, MAX_MESSAGE_LEN};

/// The most recipient devices of one envelope.
pub const MAX_RECIPIENTS: usize = 1000;
/// The length of a recipient's part (`M XOR W_i`).
pub const WRAPPED_KEY_LEN: usize = 32;
/// The longest plaintext: the message limit of section 9.
pub const MAX_PLAINTEXT_LEN: usize = MAX_MESSAGE_LEN;
/// The longest encoded [`SharedPayload`].
pub const MAX_SHARED_PAYLOAD_LEN: usize = MAX_PLAINTEXT_LEN + 64;
/// The longest encoded [`GroupEnvelope`].
pub const MAX_GROUP_ENVELOPE_LEN: usize = MAX_PLAINTEXT_LEN + 128;
/// The version of both messages.
pub const MULTI_VERSION: u32 = 1;
/// HKDF info label of the payload key and nonce.
pub const LABEL_PAYLOAD: &[u8] = b"tacit/multi/v1/payload";
/// HKDF info label of a recipient's wrapping key.
pub const LABEL_WRAP: &[u8] = b"tacit/multi/v1/wrap";

/// Why a multi-recipient envelope could not be sealed or opened. Nothing
/// was changed, and no secret is carried.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MultiError {
    /// Sealing: the recipient list is empty.
    #[error("no recipients")]
    NoRecipients,
    /// Sealing: more recipients than [`MAX_RECIPIENTS`].
    #[error("{count} recipients, at most {max}")]
    TooManyRecipients {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Sealing: the same address is listed twice.
    #[error("recipient {index} repeats an earlier address")]
    DuplicateRecipient {
        /// The index of the repeat in the list.
        index: usize,
    },
    /// Sealing: the plaintext is longer than [`MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes is too long (at most {max})")]
    TooLarge {
        /// The plaintext's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Sealing: a recipient's identity key gives an all-zero
    /// Diffie-Hellman output.
    #[error("recipient {index}'s identity key is unusable: {error}")]
    InvalidRecipientIdentity {
        /// The recipient's index in the list.
        index: usize,
        /// Why.
        error: KeyError,
    },
    /// The bytes are not a strictly encoded [`GroupEnvelope`] or
    /// [`SharedPayload`]: anyone, a relay included, can check this.
    #[error("malformed multi-recipient envelope: {0}")]
    Malformed(WireError),
    /// Opening: the ephemeral key gives an all-zero Diffie-Hellman output.
    #[error("ephemeral key is of small order")]
    InvalidEphemeralKey,
    /// Opening: the payload does not authenticate: the envelope is for
    /// another device or address, or was altered.
    #[error("multi-recipient envelope does not open for this recipient")]
    DoesNotOpen,
}

/// The part of the envelope every recipient shares: the ephemeral key and
/// the encrypted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPayload {
    ephemeral_key: PublicKey,
    payload: Vec<u8>,
}

impl SharedPayload {
    /// The ephemeral X25519 key `E`.
    pub fn ephemeral_key(&self) -> &PublicKey {
        &self.ephemeral_key
    }

    /// The encrypted plaintext and its tag.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        proto::SharedPayload {
            version: MULTI_VERSION,
            ephemeral_key: self.ephemeral_key.as_bytes().to_vec(),
            payload: self.payload.clone(),
        }
        .encode_to_vec()
    }

    /// Strict decoding: at most [`MAX_SHARED_PAYLOAD_LEN`] bytes,
    /// canonical, version 1, a 32-byte ephemeral key, a payload of at least
    /// a tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MultiError> {
        let m: proto::SharedPayload =
            decode_canonical(bytes, MAX_SHARED_PAYLOAD_LEN).map_err(MultiError::Malformed)?;
        check_version(m.version).map_err(MultiError::Malformed)?;
        let ephemeral_key =
            public_key("ephemeral_key", &m.ephemeral_key).map_err(MultiError::Malformed)?;
        check_payload(&m.payload)?;
        Ok(Self {
            ephemeral_key,
            payload: m.payload,
        })
    }

    /// The envelope of the recipient whose part is `wrapped_key`.
    pub fn envelope_for(&self, wrapped_key: &[u8; WRAPPED_KEY_LEN]) -> GroupEnvelope {
        GroupEnvelope {
            ephemeral_key: self.ephemeral_key,
            wrapped_key: *wrapped_key,
            payload: self.payload.clone(),
        }
    }
}

/// What one recipient device receives: the shared payload and its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEnvelope {
    ephemeral_key: PublicKey,
    wrapped_key: [u8; WRAPPED_KEY_LEN],
    payload: Vec<u8>,
}

impl GroupEnvelope {
    /// The ephemeral X25519 key `E`.
    pub fn ephemeral_key(&self) -> &PublicKey {
        &self.ephemeral_key
    }

    /// This recipient's part, `M XOR W_i`.
    pub fn wrapped_key(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.wrapped_key
    }

    /// The encrypted plaintext and its tag.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        proto::GroupEnvelope {
            version: MULTI_VERSION,
            ephemeral_key: self.ephemeral_key.as_bytes().to_vec(),
            wrapped_key: self.wrapped_key.to_vec(),
            payload: self.payload.clone(),
        }
        .encode_to_vec()
    }

    /// Strict decoding: at most [`MAX_GROUP_ENVELOPE_LEN`] bytes,
    /// canonical, version 1, a 32-byte ephemeral key and part, a payload of
    /// at least a tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MultiError> {
        let m: proto::GroupEnvelope =
            decode_canonical(bytes, MAX_GROUP_ENVELOPE_LEN).map_err(MultiError::Malformed)?;
        check_version(m.version).map_err(MultiError::Malformed)?;
        let ephemeral_key =
            public_key("ephemeral_key", &m.ephemeral_key).map_err(MultiError::Malformed)?;
        let wrapped_key = fixed::<WRAPPED_KEY_LEN>("wrapped_key", &m.wrapped_key)
            .map_err(MultiError::Malformed)?;
        check_payload(&m.payload)?;
        Ok(Self {
            ephemeral_key,
            wrapped_key,
            payload: m.payload,
        })
    }
}

/// A payload is present and holds at least a tag.
fn check_payload(payload: &[u8]) -> Result<(), MultiError> {
    if payload.is_empty() {
        return Err(MultiError::Malformed(WireError::MissingField("payload")));
    }
    if payload.len() < TAG_LEN {
        return Err(MultiError::Malformed(WireError::InvalidLength {
            field: "payload",
            expected: TAG_LEN,
            actual: payload.len(),
        }));
    }
    Ok(())
}

/// One recipient device's part of a sealed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientPart {
    /// The recipient device.
    pub address: Address,
    /// Its part, `M XOR W_i`.
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

/// A sealed multi-recipient envelope: the shared payload and one part per
/// recipient, in the order the recipients were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiSealed {
    /// What every recipient shares.
    pub shared: SharedPayload,
    /// One part per recipient device.
    pub parts: Vec<RecipientPart>,
}

/// `W_i`, from the DH output and the recipient's key and address.
fn wrapping_key(
    dh: &SecretKey32,
    ephemeral: &PublicKey,
    identity: &IdentityKey,
    address: &Address,
) -> Zeroizing<[u8; 32]> {
    let user_id = address.user_id().as_bytes();
    let mut info = Vec::with_capacity(LABEL_WRAP.len() + 2 * KEY_LEN + 1 + user_id.len() + 4);
    info.extend_from_slice(LABEL_WRAP);
    info.extend_from_slice(ephemeral.as_bytes());
    info.extend_from_slice(&identity.to_bytes());
    // User ids are at most 64 bytes.
    info.push(u8::try_from(user_id.len()).unwrap_or(u8::MAX));
    info.extend_from_slice(user_id);
    info.extend_from_slice(&address.device_id().to_be_bytes());
    hkdf::<32>(&[0u8; 32], dh.as_bytes(), &info)
}

/// `K_p || N_p`.
fn payload_keys(m: &[u8; 32], ephemeral: &PublicKey) -> Zeroizing<[u8; 44]> {
    hkdf::<44>(
        &[0u8; 32],
        m,
        &[LABEL_PAYLOAD, ephemeral.as_bytes()].concat(),
    )
}

/// `a XOR b`, into a wiped buffer.
fn xor(a: &[u8; 32], b: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

/// Seals `plaintext` for every device of `recipients` (each an address and
/// its identity key). Checks the list (1 to [`MAX_RECIPIENTS`], no address
/// twice) and the plaintext's length before drawing exactly 64 bytes from
/// `rng`, in one call: `M` then the ephemeral private key.
pub fn seal(
    plaintext: &[u8],
    recipients: &[(Address, IdentityKey)],
    rng: &mut impl CryptoRngCore,
) -> Result<MultiSealed, MultiError> {
    if recipients.is_empty() {
        return Err(MultiError::NoRecipients);
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(MultiError::TooManyRecipients {
            count: recipients.len(),
            max: MAX_RECIPIENTS,
        });
    }
    let mut seen: Vec<&Address> = recipients.iter().map(|(a, _)| a).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        let index = recipients
            .iter()
            .enumerate()
            .position(|(i, (a, _))| recipients[..i].iter().any(|(b, _)| a == b))
            .unwrap_or(0);
        return Err(MultiError::DuplicateRecipient { index });
    }
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(MultiError::TooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }

    let mut draw = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(draw.as_mut());
    let mut m = Zeroizing::new([0u8; 32]);
    m.copy_from_slice(&draw[..32]);
    let mut e = [0u8; 32];
    e.copy_from_slice(&draw[32..]);
    draw.zeroize();
    let ephemeral = KeyPair::from_private_bytes(e);
    e.zeroize();
    let ephemeral_key = ephemeral.public_key();

    let mut parts = Vec::with_capacity(recipients.len());
    for (index, (address, identity)) in recipients.iter().enumerate() {
        let dh = ephemeral
            .diffie_hellman(&identity.to_x25519())
            .map_err(|error| MultiError::InvalidRecipientIdentity { index, error })?;
        let w = wrapping_key(&dh, &ephemeral_key, identity, address);
        parts.push(RecipientPart {
            address: address.clone(),
            wrapped_key: *xor(&m, &w),
        });
    }

    let okm = payload_keys(&m, &ephemeral_key);
    let (key, nonce) = split_key_nonce(&okm);
    let mut payload = Vec::with_capacity(plaintext.len() + TAG_LEN);
    payload.extend_from_slice(plaintext);
    let tag = chacha20poly1305_seal(&key, &nonce, ephemeral_key.as_bytes(), &mut payload).map_err(
        |_| MultiError::TooLarge {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        },
    )?;
    payload.extend_from_slice(&tag);
    Ok(MultiSealed {
        shared: SharedPayload {
            ephemeral_key,
            payload,
        },
        parts,
    })
}

/// `K_p || N_p` split into the key and the nonce, both wiped when dropped.
fn split_key_nonce(okm: &[u8; 44]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 12]>) {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = Zeroizing::new([0u8; 12]);
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// Opens the encoded [`GroupEnvelope`] `envelope` as the device with
/// identity `recipient` at `recipient_address`, returning the plaintext.
///
/// Checks, in order: the encoding ([`MultiError::Malformed`]), the
/// ephemeral key ([`MultiError::InvalidEphemeralKey`]), the payload
/// ([`MultiError::DoesNotOpen`]).
pub fn open(
    recipient: &IdentityKeyPair,
    recipient_address: &Address,
    envelope: &[u8],
) -> Result<Vec<u8>, MultiError> {
    let envelope = GroupEnvelope::from_bytes(envelope)?;
    let dh = recipient
        .diffie_hellman(&envelope.ephemeral_key)
        .map_err(|_| MultiError::InvalidEphemeralKey)?;
    let w = wrapping_key(
        &dh,
        &envelope.ephemeral_key,
        &recipient.public_key(),
        recipient_address,
    );
    let m = xor(&envelope.wrapped_key, &w);
    let okm = payload_keys(&m, &envelope.ephemeral_key);
    let (key, nonce) = split_key_nonce(&okm);
    let (body, tag) = envelope
        .payload
        .split_last_chunk::<TAG_LEN>()
        .ok_or(MultiError::DoesNotOpen)?;
    let mut plaintext = body.to_vec();
    if chacha20poly1305_open(
        &key,
        &nonce,
        envelope.ephemeral_key.as_bytes(),
        &mut plaintext,
        tag,
    )
    .is_err()
    {
        plaintext.zeroize();
        return Err(MultiError::DoesNotOpen);
    }
    Ok(plaintext)
}
