//! Attachment files: a plaintext stream encrypted with the core's
//! streaming AEAD (`docs/PROTOCOL.md` section 10, "Attachments") into any
//! writer, and a blob read from any reader, decrypted, verified against its
//! pointer and saved into a download directory, in constant memory.
//!
//! A received file is written to a hidden temporary file in the download
//! directory and given its name only once the whole blob has authenticated
//! (the final chunk, the length and the digest): a truncated or tampered
//! blob leaves no file. The name is reduced to a safe one
//! ([`safe_file_name`]) and never replaces an existing file: a suffix
//! ` (1)`, ` (2)`, ... is added instead.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use tacit::envelope::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentPointer, EncryptedAttachment,
};
use tacit::error::AttachmentError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from a stream at a time.
const READ_LEN: usize = 64 * 1024;

/// The longest saved file name, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 200;

/// Why an attachment could not be encrypted or saved. Nothing is left in
/// the download directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentFileError {
    /// The blob does not decrypt or verify against its pointer
    /// (truncated, tampered, swapped or too long).
    #[error("attachment refused: {0}")]
    Refused(#[from] AttachmentError),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A name safe to create in a directory: the last path component of
/// `name` (both `/` and `\` separate), without control characters, not
/// starting with a dot, at most [`MAX_FILE_NAME_LEN`] bytes; `attachment`
/// when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in last.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_FILE_NAME_LEN {
            break;
        }
        out.push(c);
    }
    let out = out.trim().trim_start_matches('.').trim().to_owned();
    if out.is_empty() {
        "attachment".into()
    } else {
        out
    }
}

/// Encrypts everything `plaintext` yields into `blob`, holding one chunk
/// at a time; answers the key, digest and size for the pointer.
pub async fn encrypt_stream<R, W>(
    mut plaintext: R,
    mut blob: W,
) -> Result<EncryptedAttachment, AttachmentFileError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut encryptor = AttachmentEncryptor::new_with_rng(&mut OsRng);
    let mut input = vec![0u8; READ_LEN];
    let mut output = Vec::with_capacity(READ_LEN + 1024);
    loop {
        let n = plaintext.read(&mut input).await?;
        if n == 0 {
            break;
        }
        encryptor.update(&input[..n], &mut output)?;
        blob.write_all(&output).await?;
        output.clear();
    }
    let done = encryptor.finish(&mut output)?;
    blob.write_all(&output).await?;
    blob.flush().await?;
    Ok(done)
}

/// Decrypts the blob `blob` yields against `pointer` into `dir`, under
/// [`safe_file_name`]`(name)` made unique; answers the path. On any error
/// nothing is left in `dir`.
pub async fn save_decrypted<R: AsyncRead + Unpin>(
    mut blob: R,
    pointer: &AttachmentPointer,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, AttachmentFileError> {
    let mut tag = [0u8; 8];
    OsRng.fill_bytes(&mut tag);
    let temp = dir.join(format!(
        ".tacit-part-{}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let written = decrypt_into(&mut blob, pointer, &temp).await;
    let result = match written {
        Ok(()) => place(&temp, dir, &safe_file_name(name)),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&temp).await;
    result
}

async fn decrypt_into<R: AsyncRead + Unpin>(
    blob: &mut R,
    pointer: &AttachmentPointer,
    temp: &Path,
) -> Result<(), AttachmentFileError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .await?;
    let mut decryptor = AttachmentDecryptor::new(pointer);
    let mut input = vec![0u8; READ_LEN];
    let mut output = Vec::with_capacity(READ_LEN + 1024);
    loop {
        let n = blob.read(&mut input).await?;
        if n == 0 {
            break;
        }
        decryptor.update(&input[..n], &mut output)?;
        file.write_all(&output).await?;
        output.clear();
    }
    decryptor.finish(&mut output)?;
    file.write_all(&output).await?;
    file.sync_all().await?;
    Ok(())
}

/// Gives the verified temporary file its name without replacing any file:
/// a hard link fails if the name exists, and the next suffix is tried.
fn place(temp: &Path, dir: &Path, name: &str) -> Result<PathBuf, AttachmentFileError> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 0u32..10_000 {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match std::fs::hard_link(temp, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "no free file name").into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    async fn encrypted(len: usize) -> (Vec<u8>, AttachmentPointer, Vec<u8>) {
        let plain = plaintext(len);
        let mut blob = Vec::new();
        let done = encrypt_stream(plain.as_slice(), &mut blob).await.unwrap();
        let pointer = done.pointer(&[1; 16], "").unwrap();
        (plain, pointer, blob)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("a\\b\\c.txt"), "c.txt");
        assert_eq!(safe_file_name("x\u{0}y\n\u{7f}z"), "xyz");
        assert_eq!(safe_file_name(".."), "attachment");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name("dir/"), "attachment");
        assert_eq!(safe_file_name(""), "attachment");
        assert!(safe_file_name(&"é".repeat(500)).len() <= MAX_FILE_NAME_LEN);
    }

    #[tokio::test]
    async fn a_multi_chunk_file_round_trips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, pointer, blob) = encrypted(3 * 65536 + 99).await;
        let first = save_decrypted(blob.as_slice(), &pointer, dir.path(), "../photo.jpg")
            .await
            .unwrap();
        assert_eq!(first, dir.path().join("photo.jpg"));
        assert_eq!(std::fs::read(&first).unwrap(), plain);
        let second = save_decrypted(blob.as_slice(), &pointer, dir.path(), "photo.jpg")
            .await
            .unwrap();
        assert_eq!(second, dir.path().join("photo (1).jpg"));
        assert_eq!(files(dir.path()), ["photo (1).jpg", "photo.jpg"]);
    }

    #[tokio::test]
    async fn truncated_and_tampered_blobs_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pointer, blob) = encrypted(2 * 65536 + 5).await;
        let truncated = &blob[..blob.len() - 10];
        let e = save_decrypted(truncated, &pointer, dir.path(), "a.bin")
            .await
            .unwrap_err();
        assert!(
            matches!(e, AttachmentFileError::Refused(AttachmentError::Truncated)),
            "{e:?}"
        );
        // Cut at a chunk boundary: the last full chunk opens only as a
        // non-final one.
        let boundary = &blob[..19 + 65536 + 16];
        let e = save_decrypted(boundary, &pointer, dir.path(), "a.bin")
            .await
            .unwrap_err();
        assert!(matches!(e, AttachmentFileError::Refused(_)), "{e:?}");
        let mut tampered = blob.clone();
        tampered[70_000] ^= 1;
        let e = save_decrypted(tampered.as_slice(), &pointer, dir.path(), "a.bin")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Refused(AttachmentError::ChunkAuthentication(1))
            ),
            "{e:?}"
        );
        let mut longer = blob.clone();
        longer.push(0);
        let e = save_decrypted(longer.as_slice(), &pointer, dir.path(), "a.bin")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Refused(AttachmentError::SizeMismatch)
            ),
            "{e:?}"
        );
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }
}
