//! Attachment encryption: streaming, sans-I/O, in constant memory.
//!
//! An attachment is encrypted under a fresh random 32-byte key with the
//! STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015)
//! over XChaCha20-Poly1305:
//!
//! ```text
//! blob      = prefix (19 random bytes) || chunk_0 || ... || chunk_last
//! chunk_i   = XChaCha20-Poly1305(key, prefix || u32be(i) || flag, P_i, aad = "")
//! flag      = 0x01 for the last chunk, 0x00 for the others
//! ```
//!
//! Every plaintext chunk `P_i` but the last holds exactly [`CHUNK_LEN`]
//! bytes; the last holds 0 to [`CHUNK_LEN`] bytes (an empty attachment is
//! one empty last chunk; a plaintext of exactly `k` chunks ends with a full
//! last chunk). Each chunk is followed by its 16-byte tag. The counter in the
//! nonce detects reordering, the flag detects truncation and extension, and
//! the per-attachment key and prefix detect chunks taken from another
//! attachment. The SHA-256 digest of the whole blob (prefix included) is
//! computed while streaming and goes into the [`AttachmentPointer`].
//!
//! [`AttachmentEncryptor`] and [`AttachmentDecryptor`] take input in pieces
//! of any size and append their output to a caller's buffer; each holds at
//! most one chunk. The decryptor releases each chunk's plaintext once the
//! chunk has authenticated, but the attachment as a whole is authentic only
//! when [`AttachmentDecryptor::finish`] succeeds: on any error, discard
//! everything released.

use alloc::vec::Vec;
use core::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::content::{AttachmentPointer, DIGEST_LEN};
use crate::error::{AttachmentError, ContentError};
use crate::keys::{SecretKey32, KEY_LEN};

/// Plaintext bytes per chunk (64 KiB).
pub const CHUNK_LEN: usize = 64 * 1024;
/// Length of the random nonce prefix that starts every blob.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Length of each chunk's tag.
pub const CHUNK_TAG_LEN: usize = 16;
/// The longest attachment: 2^32 chunks of [`CHUNK_LEN`] bytes (256 TiB).
pub const MAX_ATTACHMENT_LEN: u64 = (u32::MAX as u64 + 1) * CHUNK_LEN as u64;

/// The encrypted blob's length for a plaintext of `size` bytes, or `None`
/// above [`MAX_ATTACHMENT_LEN`].
pub fn encrypted_len(size: u64) -> Option<u64> {
    if size > MAX_ATTACHMENT_LEN {
        return None;
    }
    let chunks = size.div_ceil(CHUNK_LEN as u64).max(1);
    Some(NONCE_PREFIX_LEN as u64 + size + chunks * CHUNK_TAG_LEN as u64)
}

/// The nonce of chunk `index`.
fn chunk_nonce(
    prefix: &[u8; NONCE_PREFIX_LEN],
    index: u64,
    last: bool,
) -> Result<XNonce, AttachmentError> {
    let counter = u32::try_from(index).map_err(|_| AttachmentError::TooLarge)?;
    let mut nonce = XNonce::default();
    nonce[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    nonce[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    nonce[NONCE_PREFIX_LEN + 4] = u8::from(last);
    Ok(nonce)
}

/// What encrypting an attachment yields besides the blob: the key, the
/// blob's digest and the plaintext's size, to put in an
/// [`AttachmentPointer`].
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedAttachment {
    key: SecretKey32,
    digest: [u8; DIGEST_LEN],
    size: u64,
}

impl EncryptedAttachment {
    /// The attachment key.
    pub fn key(&self) -> &SecretKey32 {
        &self.key
    }

    /// SHA-256 of the blob.
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// The plaintext's length.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The pointer to send, once the blob is stored under `id`.
    pub fn pointer(
        &self,
        id: &[u8],
        content_type: &str,
    ) -> Result<AttachmentPointer, ContentError> {
        AttachmentPointer::new(id, self.key.clone(), self.digest, self.size, content_type)
    }
}

impl fmt::Debug for EncryptedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedAttachment")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Encrypts an attachment piece by piece; see the module documentation.
pub struct AttachmentEncryptor {
    key: SecretKey32,
    prefix: [u8; NONCE_PREFIX_LEN],
    next_chunk: u64,
    buffer: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    size: u64,
    header_written: bool,
    failed: bool,
}

impl AttachmentEncryptor {
    /// A new encryptor with a fresh key (32 bytes drawn from `rng` in one
    /// call) and nonce prefix (19 bytes, in a second call).
    pub fn new(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut());
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill_bytes(&mut prefix);
        Self::with_key(SecretKey32::from_bytes(*key), prefix)
    }

    /// An encryptor with a given key and prefix. Both must be fresh: never
    /// encrypt two attachments under the same key and prefix.
    pub fn with_key(key: SecretKey32, prefix: [u8; NONCE_PREFIX_LEN]) -> Self {
        Self {
            key,
            prefix,
            next_chunk: 0,
            buffer: Zeroizing::new(Vec::with_capacity(CHUNK_LEN)),
            hasher: Sha256::new(),
            size: 0,
            header_written: false,
            failed: false,
        }
    }

    /// Encrypts the next piece of plaintext, appending whatever ciphertext
    /// is ready to `out` (at most the piece's length plus one chunk's
    /// overhead and the prefix).
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        let result = self.update_inner(plaintext, out);
        self.failed = result.is_err();
        result
    }

    fn update_inner(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let size = u64::try_from(plaintext.len())
            .ok()
            .and_then(|len| self.size.checked_add(len))
            .filter(|&size| size <= MAX_ATTACHMENT_LEN)
            .ok_or(AttachmentError::TooLarge)?;
        self.write_header(out);
        let mut rest = plaintext;
        while !rest.is_empty() {
            if self.buffer.len() == CHUNK_LEN {
                self.seal_chunk(false, out)?;
            }
            let take = rest.len().min(CHUNK_LEN - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        self.size = size;
        Ok(())
    }

    /// Encrypts the last chunk, appending it to `out`, and returns the key,
    /// digest and size for the pointer.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<EncryptedAttachment, AttachmentError> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        self.write_header(out);
        self.seal_chunk(true, out)?;
        Ok(EncryptedAttachment {
            key: self.key.clone(),
            digest: self.hasher.clone().finalize().into(),
            size: self.size,
        })
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.prefix);
            self.hasher.update(self.prefix);
            self.header_written = true;
        }
    }

    fn seal_chunk(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let nonce = chunk_nonce(&self.prefix, self.next_chunk, last)?;
        let tag = XChaCha20Poly1305::new(self.key.as_bytes().into())
            .encrypt_in_place_detached(&nonce, &[], &mut self.buffer)
            .map_err(|_| AttachmentError::TooLarge)?;
        let start = out.len();
        out.extend_from_slice(&self.buffer);
        out.extend_from_slice(&tag);
        self.hasher.update(&out[start..]);
        self.buffer.clear();
        self.next_chunk += 1;
        Ok(())
    }
}

impl fmt::Debug for AttachmentEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentEncryptor")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Decrypts an attachment piece by piece against its pointer; see the
/// module documentation.
pub struct AttachmentDecryptor {
    key: SecretKey32,
    digest: [u8; DIGEST_LEN],
    size: u64,
    blob_len: u64,
    received: u64,
    prefix: [u8; NONCE_PREFIX_LEN],
    prefix_len: usize,
    next_chunk: u64,
    buffer: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    released: u64,
    failed: bool,
}

impl AttachmentDecryptor {
    /// A decryptor for the attachment `pointer` describes.
    pub fn new(pointer: &AttachmentPointer) -> Self {
        Self {
            key: pointer.key().clone(),
            digest: *pointer.digest(),
            size: pointer.size(),
            // The pointer's size is at most MAX_ATTACHMENT_LEN.
            blob_len: encrypted_len(pointer.size()).unwrap_or(0),
            received: 0,
            prefix: [0; NONCE_PREFIX_LEN],
            prefix_len: 0,
            next_chunk: 0,
            buffer: Zeroizing::new(Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN)),
            hasher: Sha256::new(),
            released: 0,
            failed: false,
        }
    }

    /// Takes the next piece of the blob, appending the plaintext of every
    /// chunk that is complete and authenticated (except the last, which
    /// [`finish`](Self::finish) handles) to `out`.
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        let result = self.update_inner(ciphertext, out);
        self.failed = result.is_err();
        result
    }

    fn update_inner(
        &mut self,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentError> {
        self.received = u64::try_from(ciphertext.len())
            .ok()
            .and_then(|len| self.received.checked_add(len))
            .filter(|&received| received <= self.blob_len)
            .ok_or(AttachmentError::SizeMismatch)?;
        self.hasher.update(ciphertext);
        let mut rest = ciphertext;
        if self.prefix_len < NONCE_PREFIX_LEN {
            let take = rest.len().min(NONCE_PREFIX_LEN - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&rest[..take]);
            self.prefix_len += take;
            rest = &rest[take..];
        }
        while !rest.is_empty() {
            if self.buffer.len() == CHUNK_LEN + CHUNK_TAG_LEN {
                self.open_chunk(out)?;
            }
            let take = rest
                .len()
                .min(CHUNK_LEN + CHUNK_TAG_LEN - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(())
    }

    /// Opens the buffered chunk as a non-final one.
    fn open_chunk(&mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let index = self.next_chunk;
        if !self.try_open(false)? {
            return Err(AttachmentError::ChunkAuthentication(index));
        }
        self.release(out)
    }

    /// Decrypts the buffered chunk in place (leaving the plaintext in the
    /// buffer) if it authenticates with this flag; otherwise leaves the
    /// buffer as it was.
    fn try_open(&mut self, last: bool) -> Result<bool, AttachmentError> {
        let Some(body_len) = self.buffer.len().checked_sub(CHUNK_TAG_LEN) else {
            return Ok(false);
        };
        let nonce = chunk_nonce(&self.prefix, self.next_chunk, last)?;
        let tag = Tag::clone_from_slice(&self.buffer[body_len..]);
        let mut body = Zeroizing::new(self.buffer[..body_len].to_vec());
        let opened = XChaCha20Poly1305::new(self.key.as_bytes().into()).decrypt_in_place_detached(
            &nonce,
            &[],
            &mut body,
            &tag,
        );
        if opened.is_err() {
            return Ok(false);
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&body);
        Ok(true)
    }

    fn release(&mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        self.released += self.buffer.len() as u64;
        if self.released > self.size {
            return Err(AttachmentError::SizeMismatch);
        }
        out.extend_from_slice(&self.buffer);
        self.buffer.clear();
        self.next_chunk += 1;
        Ok(())
    }

    /// Opens the last chunk, appending its plaintext to `out`, and checks
    /// the blob's length and digest. Only when this succeeds is the whole
    /// attachment authentic.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.failed {
            return Err(AttachmentError::Failed);
        }
        if self.received != self.blob_len || self.buffer.len() < CHUNK_TAG_LEN {
            return Err(AttachmentError::Truncated);
        }
        if !self.try_open(true)? {
            let index = self.next_chunk;
            return Err(if self.try_open(false)? {
                AttachmentError::Truncated
            } else {
                AttachmentError::ChunkAuthentication(index)
            });
        }
        let digest: [u8; DIGEST_LEN] = self.hasher.clone().finalize().into();
        if !bool::from(digest.ct_eq(&self.digest)) {
            return Err(AttachmentError::DigestMismatch);
        }
        let mut tail = Vec::new();
        self.release(&mut tail)?;
        if self.released != self.size {
            return Err(AttachmentError::SizeMismatch);
        }
        out.extend_from_slice(&tail);
        Ok(())
    }
}

impl fmt::Debug for AttachmentDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentDecryptor")
            .field("size", &self.size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// Encrypts a whole attachment held in memory: the blob and what goes into
/// its pointer. Draws as [`AttachmentEncryptor::new`] does.
pub fn encrypt_attachment(
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, EncryptedAttachment), AttachmentError> {
    let mut encryptor = AttachmentEncryptor::new(rng);
    let mut blob = Vec::new();
    encryptor.update(plaintext, &mut blob)?;
    let encrypted = encryptor.finish(&mut blob)?;
    Ok((blob, encrypted))
}

/// Decrypts a whole attachment held in memory against its pointer.
pub fn decrypt_attachment(
    pointer: &AttachmentPointer,
    blob: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    let mut decryptor = AttachmentDecryptor::new(pointer);
    let mut plaintext = Vec::new();
    decryptor.update(blob, &mut plaintext)?;
    decryptor.finish(&mut plaintext)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const PREFIX: [u8; NONCE_PREFIX_LEN] = [9; NONCE_PREFIX_LEN];

    /// A blob whose chunks carry the given flags.
    fn blob_with_flags(chunks: &[(&[u8], bool)]) -> Vec<u8> {
        let mut blob = PREFIX.to_vec();
        for (index, (plaintext, last)) in chunks.iter().enumerate() {
            let nonce = chunk_nonce(&PREFIX, index as u64, *last).unwrap();
            let mut buffer = plaintext.to_vec();
            let tag = XChaCha20Poly1305::new((&KEY).into())
                .encrypt_in_place_detached(&nonce, &[], &mut buffer)
                .unwrap();
            blob.extend_from_slice(&buffer);
            blob.extend_from_slice(&tag);
        }
        blob
    }

    fn pointer_for(blob: &[u8], size: u64) -> AttachmentPointer {
        let digest: [u8; 32] = Sha256::digest(blob).into();
        AttachmentPointer::new(b"id", SecretKey32::from_bytes(KEY), digest, size, "").unwrap()
    }

    #[test]
    fn the_reference_construction_decrypts() {
        let full = vec![1u8; CHUNK_LEN];
        let blob = blob_with_flags(&[(&full, false), (b"tail", true)]);
        let size = CHUNK_LEN as u64 + 4;
        assert_eq!(encrypted_len(size), Some(blob.len() as u64));
        let mut encryptor = AttachmentEncryptor::with_key(SecretKey32::from_bytes(KEY), PREFIX);
        let mut out = Vec::new();
        encryptor.update(&full, &mut out).unwrap();
        encryptor.update(b"tail", &mut out).unwrap();
        let encrypted = encryptor.finish(&mut out).unwrap();
        assert_eq!(out, blob);
        assert_eq!(encrypted.digest(), pointer_for(&blob, size).digest());
        let mut plaintext = full.clone();
        plaintext.extend_from_slice(b"tail");
        assert_eq!(
            decrypt_attachment(&pointer_for(&blob, size), &blob),
            Ok(plaintext)
        );
    }

    #[test]
    fn a_last_chunk_without_the_final_flag_is_truncation() {
        let blob = blob_with_flags(&[(b"only chunk", false)]);
        assert_eq!(
            decrypt_attachment(&pointer_for(&blob, 10), &blob),
            Err(AttachmentError::Truncated)
        );
    }

    #[test]
    fn a_final_flag_before_the_end_is_refused() {
        let full = vec![1u8; CHUNK_LEN];
        let blob = blob_with_flags(&[(&full, true), (b"more", true)]);
        assert_eq!(
            decrypt_attachment(&pointer_for(&blob, CHUNK_LEN as u64 + 4), &blob),
            Err(AttachmentError::ChunkAuthentication(0))
        );
    }

    #[test]
    fn sizes_and_lengths() {
        assert_eq!(encrypted_len(0), Some(19 + 16));
        assert_eq!(
            encrypted_len(CHUNK_LEN as u64),
            Some(19 + CHUNK_LEN as u64 + 16)
        );
        assert_eq!(
            encrypted_len(CHUNK_LEN as u64 + 1),
            Some(19 + CHUNK_LEN as u64 + 1 + 32)
        );
        assert!(encrypted_len(MAX_ATTACHMENT_LEN).is_some());
        assert_eq!(encrypted_len(MAX_ATTACHMENT_LEN + 1), None);
        assert_eq!(
            chunk_nonce(&PREFIX, u64::from(u32::MAX) + 1, false),
            Err(AttachmentError::TooLarge)
        );
    }
}
