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
use tacit::envelope::attachment::encrypted_len;
use tacit::envelope::{
    AttachmentDecryptor, AttachmentEncryptor, AttachmentPointer, EncryptedAttachment,
};
use tacit::error::AttachmentError;
use tacit_relay_proto::{ATTACHMENTS_PATH, ATTACHMENT_TOKEN_HEADER};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// The relay answered an HTTP status other than success (`docs/relay.md`,
    /// "Attachments": 403 token, 404 unknown or expired, 409 taken, 413
    /// too long, 400 short).
    #[error("relay answered HTTP {0}")]
    Http(u16),
    /// The relay's answer is not an HTTP response this client reads.
    #[error("bad HTTP answer: {0}")]
    Protocol(&'static str),
}

/// A name safe to create in a directory: the last path component of
/// `name` (both `/` and `\\` separate), without control characters or
/// invisible format characters (such as the bidirectional overrides that
/// make `x\u{202e}fdp.exe` show as `xexe.pdf`), with the characters
/// Windows refuses (`<>:"|?*`) as `_`, not starting with a dot nor ending
/// with a dot or space, at most [`MAX_FILE_NAME_LEN`] bytes, and with `_`
/// before a Windows device name (`CON`, `nul.txt`, ...); `attachment`
/// when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in last.chars().filter(|&c| !c.is_control() && !is_format(c)) {
        let c = if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_FILE_NAME_LEN {
            break;
        }
        out.push(c);
    }
    let out = out
        .trim()
        .trim_start_matches('.')
        .trim()
        .trim_end_matches(['.', ' '])
        .to_owned();
    if out.is_empty() {
        "attachment".into()
    } else if is_windows_device(&out) {
        format!("_{out}")
    } else {
        out
    }
}

/// Invisible format characters (Unicode category Cf): bidirectional
/// controls, zero-width characters, the byte order mark, tags.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// Whether Windows reads `name` as a device: `CON`, `PRN`, `AUX`, `NUL`,
/// `COM0`-`COM9` or `LPT0`-`LPT9` (also with a superscript digit), in any
/// case, alone or before an extension.
fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim_end();
    let upper = stem.to_ascii_uppercase();
    if matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL") {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let digit = chars.next();
    (prefix == "COM" || prefix == "LPT")
        && matches!(digit, Some('0'..='9' | '\u{b9}' | '\u{b2}' | '\u{b3}'))
        && chars.next().is_none()
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
    let mut encryptor = AttachmentEncryptor::new(&mut OsRng);
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

/// The longest HTTP response head read.
const MAX_HEAD_LEN: usize = 8 * 1024;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an HTTP/1.1 response head from `stream` byte by byte (so that
/// the body stays in the stream); answers its status and its
/// `content-length`, if it has one.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(u16, Option<u64>), AttachmentFileError> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_LEN {
            return Err(AttachmentFileError::Protocol("response head too long"));
        }
        let byte = stream.read_u8().await?;
        head.push(byte);
    }
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .filter(|_| head.starts_with(b"HTTP/1."))
        .ok_or(AttachmentFileError::Protocol("no status line"))?;
    let text =
        std::str::from_utf8(&head).map_err(|_| AttachmentFileError::Protocol("head not UTF-8"))?;
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let value = value
                .trim()
                .parse()
                .map_err(|_| AttachmentFileError::Protocol("bad content-length"))?;
            if length.is_some_and(|l| l != value) {
                return Err(AttachmentFileError::Protocol("two content-lengths"));
            }
            length = Some(value);
        }
    }
    Ok((status, length))
}

/// Encrypts `plaintext` (exactly `len` bytes) and uploads the blob to the
/// relay at `relay` (`HOST:PORT`, plain HTTP) under the slot `id` and its
/// upload token, streaming; answers the key, digest and size for the
/// pointer once the relay has stored the blob durably.
pub async fn upload<R: AsyncRead + Unpin>(
    relay: &str,
    id: &[u8],
    upload_token: &[u8],
    plaintext: R,
    len: u64,
) -> Result<EncryptedAttachment, AttachmentFileError> {
    let tcp = TcpStream::connect(relay).await?;
    upload_on(
        tcp,
        relay,
        ATTACHMENTS_PATH,
        id,
        upload_token,
        plaintext,
        len,
    )
    .await
}

/// [`upload`] over an open connection `stream` (plain or TLS) to the
/// relay named `host` (the `Host` header) whose attachment routes are
/// under `path` (`/v1/attachments` unless the relay sits behind a prefix).
pub(crate) async fn upload_on<S, R>(
    mut stream: S,
    host: &str,
    path: &str,
    id: &[u8],
    upload_token: &[u8],
    plaintext: R,
    len: u64,
) -> Result<EncryptedAttachment, AttachmentFileError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let blob_len = encrypted_len(len).ok_or(AttachmentError::TooLarge)?;
    let head = format!(
        "PUT {path}/{} HTTP/1.1\r\nhost: {host}\r\n{ATTACHMENT_TOKEN_HEADER}: {}\r\ncontent-length: {blob_len}\r\nconnection: close\r\n\r\n",
        hex(id),
        hex(upload_token),
    );
    stream.write_all(head.as_bytes()).await?;
    let done = encrypt_stream(plaintext.take(len), &mut stream).await?;
    if done.size() != len {
        // The reader ended early: dropping the connection cuts the upload,
        // and the relay deletes what it received.
        return Err(AttachmentError::SizeMismatch.into());
    }
    match read_head(&mut stream).await?.0 {
        200..=299 => Ok(done),
        status => Err(AttachmentFileError::Http(status)),
    }
}

/// Downloads the blob `pointer` names from the relay at `relay`
/// (`HOST:PORT`, plain HTTP) and saves it with [`save_decrypted`].
pub async fn download(
    relay: &str,
    pointer: &AttachmentPointer,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, AttachmentFileError> {
    let tcp = TcpStream::connect(relay).await?;
    download_on(tcp, relay, ATTACHMENTS_PATH, pointer, dir, name).await
}

/// [`download`] over an open connection `stream` (plain or TLS); `host`
/// and `path` as for [`upload_on`]. The body is read up to its
/// `content-length` (not to the end of the stream, which a TLS peer may
/// close without notice), and an answer announcing more bytes than the
/// pointer's blob is refused before anything is written.
pub(crate) async fn download_on<S>(
    mut stream: S,
    host: &str,
    path: &str,
    pointer: &AttachmentPointer,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, AttachmentFileError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let blob_len = encrypted_len(pointer.size()).ok_or(AttachmentError::TooLarge)?;
    let head = format!(
        "GET {path}/{} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n",
        hex(pointer.id()),
    );
    stream.write_all(head.as_bytes()).await?;
    match read_head(&mut stream).await? {
        (200, Some(len)) if len > blob_len => Err(AttachmentError::SizeMismatch.into()),
        (200, Some(len)) => save_decrypted(stream.take(len), pointer, dir, name).await,
        (200, None) => save_decrypted(stream, pointer, dir, name).await,
        (status, _) => Err(AttachmentFileError::Http(status)),
    }
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

    #[test]
    fn names_cannot_disguise_themselves_or_name_devices() {
        // Bidirectional overrides and other invisible format characters
        // would show "invoice\u{202e}fdp.exe" as "invoiceexe.pdf".
        assert_eq!(safe_file_name("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(safe_file_name("a\u{200b}b\u{2066}c\u{feff}.txt"), "abc.txt");
        // Windows device names, with or without an extension, and
        // characters Windows refuses or reads as a stream name.
        assert_eq!(safe_file_name("CON"), "_CON");
        assert_eq!(safe_file_name("nul.txt"), "_nul.txt");
        assert_eq!(safe_file_name("com1.tar.gz"), "_com1.tar.gz");
        assert_eq!(safe_file_name("Lpt9"), "_Lpt9");
        assert_eq!(safe_file_name("console.txt"), "console.txt");
        assert_eq!(safe_file_name("a:b.txt"), "a_b.txt");
        assert_eq!(safe_file_name("x<y>|\"?*.txt"), "x_y_____.txt");
        // Trailing dots and spaces, which Windows drops.
        assert_eq!(safe_file_name("report.exe. . "), "report.exe");
        assert_eq!(safe_file_name("nul. "), "_nul");
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

    /// A one-connection HTTP server: reads a request (head and
    /// `content-length` body), answers `answer`; hands back the request.
    async fn serve_once(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&request).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0u8; len];
            tcp.read_exact(&mut body).await.unwrap();
            request.extend_from_slice(&body);
            tcp.write_all(&answer).await.unwrap();
            request
        });
        (at, task)
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn an_upload_streams_the_blob_with_its_token() {
        let plain = plaintext(65536 + 10);
        let (at, request) = serve_once(response("201 Created", b"")).await;
        let done = upload(
            &at,
            &[0xab; 16],
            &[0xcd; 32],
            plain.as_slice(),
            plain.len() as u64,
        )
        .await
        .unwrap();
        let request = request.await.unwrap();
        let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&request[..split]).into_owned();
        assert!(head.starts_with(&format!("PUT /v1/attachments/{} HTTP/1.1", "ab".repeat(16))));
        assert!(head.contains(&format!("x-tacit-upload-token: {}", "cd".repeat(32))));
        let pointer = done.pointer(&[1; 16], "").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = save_decrypted(&request[split..], &pointer, dir.path(), "f")
            .await
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), plain);
        // A refusal is a typed error.
        let (at, _) = serve_once(response("403 Forbidden", b"")).await;
        let e = upload(
            &at,
            &[1; 16],
            &[2; 32],
            plain.as_slice(),
            plain.len() as u64,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AttachmentFileError::Http(403)), "{e:?}");
    }

    #[tokio::test]
    async fn downloads_save_only_verified_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, pointer, blob) = encrypted(100_000).await;
        let (at, _) = serve_once(response("200 OK", &blob)).await;
        let path = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), plain);
        std::fs::remove_file(path).unwrap();
        let mut tampered = blob.clone();
        tampered[100] ^= 0x80;
        let (at, _) = serve_once(response("200 OK", &tampered)).await;
        let e = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap_err();
        assert!(matches!(e, AttachmentFileError::Refused(_)), "{e:?}");
        let (at, _) = serve_once(response("200 OK", &blob[..50_000])).await;
        let e = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap_err();
        assert!(
            matches!(e, AttachmentFileError::Refused(AttachmentError::Truncated)),
            "{e:?}"
        );
        // An answer announcing more than the pointer's blob is refused
        // before anything is read into a file.
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0; 10]);
        let (at, _) = serve_once(response("200 OK", &longer)).await;
        let e = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttachmentFileError::Refused(AttachmentError::SizeMismatch)
            ),
            "{e:?}"
        );
        let (at, _) = serve_once(response("404 Not Found", b"")).await;
        let e = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap_err();
        assert!(matches!(e, AttachmentFileError::Http(404)), "{e:?}");
        // A redirect is not followed, even with the blob in its body.
        let mut moved = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{at}/elsewhere\r\ncontent-length: {}\r\n\r\n",
            blob.len()
        )
        .into_bytes();
        moved.extend_from_slice(&blob);
        let (at, _) = serve_once(moved).await;
        let e = download(&at, &pointer, dir.path(), "doc.pdf")
            .await
            .unwrap_err();
        assert!(matches!(e, AttachmentFileError::Http(302)), "{e:?}");
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }
}
