//! Where a running client moves attachment blobs: the relay's HTTP
//! attachment routes (`docs/relay.md`, "Attachments") at the host and port
//! of its relay URL, over TLS with the client's TLS settings for a
//! `wss://` relay (`https`), plain only for a `ws://` relay on this
//! machine (the URL policy of [`Endpoint`]).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tacit::envelope::{AttachmentPointer, EncryptedAttachment};
use tacit_relay_proto::{ATTACHMENTS_PATH, WEBSOCKET_PATH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::attachment::{download_on, upload_on, AttachmentFileError};
use crate::endpoint::Endpoint;
use crate::ClientError;

/// A plain or TLS connection to the relay.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection on which the relay may keep the client waiting at most
/// `idle` for any one read or write: a relay (or a network path) that
/// stops sending or reading fails the transfer with `TimedOut` instead of
/// holding it, and a download slot, for ever. Only time spent waiting for
/// the peer counts, not the time the client takes between reads.
struct Idle<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<S> Idle<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }

    /// Maps the peer's answer to one poll, timing how long it keeps the
    /// client waiting.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let idle = self.idle;
                    self.timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + idle);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    self.waiting = false;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the relay stalled the attachment transfer",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.timed(cx, polled)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, polled)
    }
}

/// The relay's attachment routes, and how to reach them.
#[derive(Clone)]
pub(crate) struct Transfer {
    /// The host to connect to (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: String,
    /// The attachment routes' path: `/v1/attachments`, under the prefix
    /// the relay URL has before `/v1` (a relay behind a proxy).
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// How long connecting (TCP and TLS) may take, and the longest the
    /// relay may keep a transfer waiting for its next byte.
    timeout: Duration,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Transfer {
    /// The routes of the relay `endpoint` names (already checked against
    /// the URL policy).
    pub(crate) fn new(endpoint: &Endpoint, timeout: Duration) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::RelayUrl(format!("{:?}: {why}", endpoint.url()));
        let uri: Uri = endpoint.url().parse().map_err(|_| bad("not a URL"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_owned();
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let tls = endpoint.tls();
        let port = uri
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let prefix = uri
            .path()
            .strip_suffix(WEBSOCKET_PATH)
            .unwrap_or("")
            .trim_end_matches('/');
        Ok(Self {
            host,
            port,
            authority,
            path: format!("{prefix}{ATTACHMENTS_PATH}"),
            tls,
            timeout,
        })
    }

    /// Opens a connection to the relay: TCP, then TLS for `wss://`,
    /// verified against the same roots and server name as the WebSocket;
    /// every read and write on it is bounded by [`Idle`].
    async fn connect(&self) -> Result<Idle<Pin<Box<dyn Stream>>>, AttachmentFileError> {
        let stream = self.open().await?;
        Ok(Idle::new(stream, self.timeout))
    }

    async fn open(&self) -> Result<Pin<Box<dyn Stream>>, AttachmentFileError> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connecting to the relay");
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| timed_out())??;
        let Some(tls) = &self.tls else {
            return Ok(Box::pin(tcp));
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
        let stream = tokio::time::timeout(self.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| timed_out())??;
        Ok(Box::pin(stream))
    }

    /// Encrypts `len` bytes of `plaintext` into the slot `id` (see
    /// [`crate::attachment::upload`]).
    pub(crate) async fn upload<R: AsyncRead + Unpin>(
        &self,
        id: &[u8],
        upload_token: &[u8],
        plaintext: R,
        len: u64,
    ) -> Result<EncryptedAttachment, AttachmentFileError> {
        let stream = self.connect().await?;
        upload_on(
            stream,
            &self.authority,
            &self.path,
            id,
            upload_token,
            plaintext,
            len,
        )
        .await
    }

    /// Downloads, verifies and saves the blob `pointer` names (see
    /// [`crate::attachment::download`]).
    pub(crate) async fn download(
        &self,
        pointer: &AttachmentPointer,
        dir: &Path,
        name: &str,
    ) -> Result<PathBuf, AttachmentFileError> {
        let stream = self.connect().await?;
        download_on(stream, &self.authority, &self.path, pointer, dir, name).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{ClientConfig, StoreKey};

    fn transfer(url: &str) -> Transfer {
        let config = ClientConfig::new("unused.db", StoreKey::from_bytes([0; 32]), url);
        Transfer::new(&Endpoint::new(&config).unwrap(), Duration::from_secs(1)).unwrap()
    }

    #[tokio::test]
    async fn a_relay_that_stalls_a_download_fails_it_and_leaves_no_file() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let plain = vec![7u8; 200_000];
        let mut blob = Vec::new();
        let done = crate::attachment::encrypt_stream(plain.as_slice(), &mut blob)
            .await
            .unwrap();
        let pointer = done.pointer(&[1; 16], "").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tcp.read(&mut request).await.unwrap();
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", blob.len());
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(&blob[..70_000]).await.unwrap();
            // Then nothing, with the connection held open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tcp);
        });
        let dir = tempfile::tempdir().unwrap();
        let config = ClientConfig::new(
            "unused.db",
            StoreKey::from_bytes([0; 32]),
            format!("ws://{at}/v1"),
        );
        let t =
            Transfer::new(&Endpoint::new(&config).unwrap(), Duration::from_millis(300)).unwrap();
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            t.download(&pointer, dir.path(), "f.bin"),
        )
        .await
        .expect("the stalled download still waits");
        let e = outcome.unwrap_err();
        assert!(
            matches!(&e, AttachmentFileError::Io(io) if io.kind() == io::ErrorKind::TimedOut),
            "{e:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        server.abort();
    }

    #[test]
    fn the_routes_follow_the_relay_url() {
        let t = transfer("ws://127.0.0.1:7878/v1");
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 7878));
        assert_eq!(t.authority, "127.0.0.1:7878");
        assert_eq!(t.path, "/v1/attachments");
        assert!(t.tls.is_none());
        let t = transfer("ws://[::1]:9000");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(t.path, "/v1/attachments");
    }
}
