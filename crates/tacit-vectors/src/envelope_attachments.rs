//! The attachments of `envelope.json`: blobs encrypted from all their
//! inputs (key, nonce prefix, plaintext) for several chunk counts, and blobs
//! the decryptor must refuse against a pointer (truncated, tampered, too
//! long, swapped).

use serde::{Deserialize, Serialize};
use tacit::envelope::attachment::{decrypt_attachment, AttachmentEncryptor, NONCE_PREFIX_LEN};
use tacit::envelope::AttachmentPointer;
use tacit::keys::SecretKey32;
use tacit::AttachmentError;

use crate::generate::derive;
use crate::schema::{Hex, HexBytes};
use crate::verify::check;

/// An attachment encrypted from all its inputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttachmentCase {
    /// The case's name.
    pub name: String,
    /// The attachment key (the first draw).
    pub key: Hex<32>,
    /// The nonce prefix (the second draw).
    pub prefix: Hex<NONCE_PREFIX_LEN>,
    /// The plaintext.
    pub plaintext: HexBytes,
    /// What encryption must produce.
    pub expected: AttachmentExpected,
}

/// An attachment's outputs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttachmentExpected {
    /// The number of chunks.
    pub chunks: u64,
    /// The encrypted blob.
    pub blob: HexBytes,
    /// SHA-256 of the blob.
    pub digest: Hex<32>,
}

/// Why an attachment is refused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentErrorName {
    /// `AttachmentError::ChunkAuthentication`.
    ChunkAuthentication,
    /// `AttachmentError::Truncated`.
    Truncated,
    /// `AttachmentError::SizeMismatch`.
    SizeMismatch,
    /// `AttachmentError::DigestMismatch`.
    DigestMismatch,
}

impl AttachmentErrorName {
    fn of(error: &AttachmentError) -> Option<Self> {
        Some(match error {
            AttachmentError::ChunkAuthentication(_) => Self::ChunkAuthentication,
            AttachmentError::Truncated => Self::Truncated,
            AttachmentError::SizeMismatch => Self::SizeMismatch,
            AttachmentError::DigestMismatch => Self::DigestMismatch,
            _ => return None,
        })
    }
}

/// A blob the decryptor must refuse, fed in one piece against the pointer
/// fields `key`, `digest` and `size`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InvalidAttachment {
    /// The entry's name.
    pub name: String,
    /// The pointer's key.
    pub key: Hex<32>,
    /// The pointer's digest.
    pub digest: Hex<32>,
    /// The pointer's size.
    pub size: u64,
    /// The blob.
    pub blob: HexBytes,
    /// The error decryption must give.
    pub error: AttachmentErrorName,
}

fn pointer(key: [u8; 32], digest: [u8; 32], size: u64) -> Result<AttachmentPointer, String> {
    AttachmentPointer::new(b"vector", SecretKey32::from_bytes(key), digest, size, "")
        .map_err(|e| format!("pointer: {e}"))
}

fn encrypt(
    key: [u8; 32],
    prefix: [u8; NONCE_PREFIX_LEN],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), String> {
    let mut encryptor = AttachmentEncryptor::with_key(SecretKey32::from_bytes(key), prefix);
    let mut blob = Vec::new();
    encryptor
        .update(plaintext, &mut blob)
        .map_err(|e| e.to_string())?;
    let done = encryptor.finish(&mut blob).map_err(|e| e.to_string())?;
    Ok((blob, *done.digest()))
}

/// Encrypts from the inputs, compares, and decrypts the blob back.
pub fn verify_attachment(case: &AttachmentCase) -> Result<(), String> {
    let (blob, digest) = encrypt(case.key.0, case.prefix.0, &case.plaintext.0)?;
    check("blob", &blob, &case.expected.blob.0)?;
    check("digest", &digest, &case.expected.digest.0)?;
    let size = case.plaintext.0.len() as u64;
    let chunks = size.div_ceil(64 * 1024).max(1);
    if chunks != case.expected.chunks {
        return Err(format!(
            "chunks: expected {}, computed {chunks}",
            case.expected.chunks
        ));
    }
    let opened = decrypt_attachment(&pointer(case.key.0, digest, size)?, &case.expected.blob.0)
        .map_err(|e| format!("the blob does not decrypt: {e}"))?;
    check("decrypted", &opened, &case.plaintext.0)
}

/// Decrypts the blob in one piece and requires the entry's error.
pub fn verify_invalid_attachment(entry: &InvalidAttachment) -> Result<(), String> {
    let pointer = pointer(entry.key.0, entry.digest.0, entry.size)?;
    match decrypt_attachment(&pointer, &entry.blob.0) {
        Ok(_) => Err("the blob was accepted".into()),
        Err(e) if AttachmentErrorName::of(&e) == Some(entry.error) => Ok(()),
        Err(e) => Err(format!("expected error {:?}, got {e}", entry.error)),
    }
}

/// The plaintext of `size` bytes for a case: bytes of SHA-256 blocks.
fn plaintext(label: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(&derive(&format!("envelope/{label}/plaintext/{i}")));
        i += 1;
    }
    out.truncate(size);
    out
}

/// The attachment cases and the refused blobs.
pub(crate) fn attachments() -> Result<(Vec<AttachmentCase>, Vec<InvalidAttachment>), String> {
    let sizes = [
        ("attachment_empty", 0),
        ("attachment_one_byte", 1),
        ("attachment_one_full_chunk", 65_536),
        ("attachment_two_chunks", 65_537),
        ("attachment_three_chunks", 2 * 65_536 + 1000),
    ];
    let mut cases = Vec::new();
    for (name, size) in sizes {
        let key = derive(&format!("envelope/{name}/key"));
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&derive(&format!("envelope/{name}/prefix"))[..NONCE_PREFIX_LEN]);
        let plain = plaintext(name, size);
        let (blob, digest) = encrypt(key, prefix, &plain)?;
        cases.push(AttachmentCase {
            name: name.into(),
            key: Hex(key),
            prefix: Hex(prefix),
            plaintext: HexBytes(plain),
            expected: AttachmentExpected {
                chunks: (size as u64).div_ceil(65_536).max(1),
                blob: HexBytes(blob),
                digest: Hex(digest),
            },
        });
    }
    let two = &cases[3];
    let one = &cases[1];
    let blob = &two.expected.blob.0;
    let entry = |name: &str, case: &AttachmentCase, bytes: Vec<u8>, error| InvalidAttachment {
        name: name.into(),
        key: case.key,
        digest: case.expected.digest,
        size: case.plaintext.0.len() as u64,
        blob: HexBytes(bytes),
        error,
    };
    let flip = |bytes: &[u8], at: usize| {
        let mut b = bytes.to_vec();
        b[at] ^= 0x01;
        b
    };
    let first_chunk_end = NONCE_PREFIX_LEN + 65_536 + 16;
    let small = &one.expected.blob.0;
    let mut other_prefix = one.prefix.0;
    other_prefix[0] ^= 0x01;
    let (swapped, _) = encrypt(one.key.0, other_prefix, &one.plaintext.0)?;
    let mut longer = small.clone();
    longer.push(0);
    use AttachmentErrorName::{ChunkAuthentication, DigestMismatch, SizeMismatch, Truncated};
    let invalid = vec![
        entry(
            "attachment_truncated_at_chunk_boundary",
            two,
            blob[..first_chunk_end].to_vec(),
            Truncated,
        ),
        // A pointer whose size is one chunk, and the two-chunk blob cut after
        // its first chunk: the length fits, the final flag does not.
        InvalidAttachment {
            size: 65_536,
            ..entry(
                "attachment_non_final_chunk_as_last",
                two,
                blob[..first_chunk_end].to_vec(),
                Truncated,
            )
        },
        entry(
            "attachment_tampered_first_chunk",
            two,
            flip(blob, NONCE_PREFIX_LEN + 5),
            ChunkAuthentication,
        ),
        entry(
            "attachment_truncated_mid_chunk",
            one,
            small[..small.len() - 1].to_vec(),
            Truncated,
        ),
        entry(
            "attachment_truncated_to_prefix",
            one,
            small[..NONCE_PREFIX_LEN].to_vec(),
            Truncated,
        ),
        entry(
            "attachment_tampered_prefix",
            one,
            flip(small, 0),
            ChunkAuthentication,
        ),
        entry(
            "attachment_tampered_last_chunk_tag",
            one,
            flip(small, small.len() - 1),
            ChunkAuthentication,
        ),
        entry("attachment_one_byte_too_long", one, longer, SizeMismatch),
        entry(
            "attachment_swapped_for_another_blob",
            one,
            swapped,
            DigestMismatch,
        ),
    ];
    Ok((cases, invalid))
}
