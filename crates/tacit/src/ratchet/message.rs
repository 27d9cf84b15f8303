//! Ratchet messages: the encrypted header and the message body, and the
//! body's AEAD (`ENCRYPT` / `DECRYPT`).
//!
//! The body is `ChaCha20-Poly1305(K, NONCE, P, aad = AD || enc_header)`, the
//! encrypted bytes followed by the 16-byte tag.

use alloc::vec::Vec;

use super::header::{ENCRYPTED_HEADER_LEN, TAG_LEN};
use super::kdf::MessageKeys;
use super::MAX_ASSOCIATED_DATA_LEN;
use crate::aead::{chacha20poly1305_open, chacha20poly1305_seal};
use crate::error::{DecryptError, EncryptError};
use crate::keys::SecretKey32;

/// One ratchet message: an 80-byte encrypted header and the ciphertext.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EncryptedMessage {
    encrypted_header: [u8; ENCRYPTED_HEADER_LEN],
    ciphertext: Vec<u8>,
}

impl EncryptedMessage {
    /// Assembles a message from its two parts. The ciphertext must hold at
    /// least the 16-byte tag.
    pub fn new(
        encrypted_header: [u8; ENCRYPTED_HEADER_LEN],
        ciphertext: Vec<u8>,
    ) -> Result<Self, DecryptError> {
        if ciphertext.len() < TAG_LEN {
            return Err(DecryptError::MessageTooShort);
        }
        Ok(Self {
            encrypted_header,
            ciphertext,
        })
    }

    pub(crate) fn from_parts(
        encrypted_header: [u8; ENCRYPTED_HEADER_LEN],
        ciphertext: Vec<u8>,
    ) -> Self {
        Self {
            encrypted_header,
            ciphertext,
        }
    }

    /// Splits `enc_header || ciphertext` into a message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecryptError> {
        let (header, ciphertext) = bytes
            .split_first_chunk::<ENCRYPTED_HEADER_LEN>()
            .ok_or(DecryptError::MessageTooShort)?;
        Self::new(*header, ciphertext.to_vec())
    }

    /// `enc_header || ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCRYPTED_HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.encrypted_header);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// The encrypted header: nonce, encrypted header, tag.
    pub fn encrypted_header(&self) -> &[u8; ENCRYPTED_HEADER_LEN] {
        &self.encrypted_header
    }

    /// The encrypted body followed by its 16-byte tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// The body's associated data `AD || enc_header`, built on the stack.
struct BodyAad {
    buf: [u8; MAX_ASSOCIATED_DATA_LEN + ENCRYPTED_HEADER_LEN],
    len: usize,
}

impl BodyAad {
    fn new(associated_data: &[u8], encrypted_header: &[u8; ENCRYPTED_HEADER_LEN]) -> Self {
        let mut buf = [0u8; MAX_ASSOCIATED_DATA_LEN + ENCRYPTED_HEADER_LEN];
        // The ratchet refuses associated data over the maximum at
        // construction, so both copies fit.
        let ad_len = associated_data.len().min(MAX_ASSOCIATED_DATA_LEN);
        buf[..ad_len].copy_from_slice(&associated_data[..ad_len]);
        buf[ad_len..ad_len + ENCRYPTED_HEADER_LEN].copy_from_slice(encrypted_header);
        Self {
            buf,
            len: ad_len + ENCRYPTED_HEADER_LEN,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `ENCRYPT(MK, P)` with `aad = AD || enc_header`.
pub(crate) fn seal(
    message_key: &SecretKey32,
    associated_data: &[u8],
    encrypted_header: &[u8; ENCRYPTED_HEADER_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let keys = MessageKeys::derive(message_key);
    let aad = BodyAad::new(associated_data, encrypted_header);
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    out.extend_from_slice(plaintext);
    let tag = chacha20poly1305_seal(&keys.key, &keys.nonce, aad.as_slice(), &mut out)
        .map_err(|_| EncryptError::PlaintextTooLong)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// `DECRYPT(MK, ciphertext)` with `aad = AD || enc_header`.
pub(crate) fn open(
    message_key: &SecretKey32,
    associated_data: &[u8],
    message: &EncryptedMessage,
) -> Result<Vec<u8>, DecryptError> {
    let keys = MessageKeys::derive(message_key);
    let aad = BodyAad::new(associated_data, &message.encrypted_header);
    let (body, tag) = message
        .ciphertext
        .split_last_chunk::<TAG_LEN>()
        .ok_or(DecryptError::MessageTooShort)?;
    let mut out = body.to_vec();
    chacha20poly1305_open(&keys.key, &keys.nonce, aad.as_slice(), &mut out, tag)
        .map_err(|_| DecryptError::AuthenticationFailed)?;
    Ok(out)
}
