//! Where a running client moves attachment blobs: the relay's HTTP
//! attachment routes (`docs/relay.md`, "Attachments") at the host and port
//! of its relay URL, over TLS with the client's TLS settings for a
//! `wss://` relay (`https`), plain only for a `ws://` relay on this
//! machine (the URL policy of [`Endpoint`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tacit::envelope::{AttachmentPointer, EncryptedAttachment};
use tacit_relay_proto::{ATTACHMENTS_PATH, WEBSOCKET_PATH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::attachment::{download_on, upload_on, AttachmentFileError};
use crate::endpoint::Endpoint;
use crate::ClientError;

/// A plain or TLS connection to the relay.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

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
    /// How long connecting (TCP and TLS) may take.
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
    /// verified against the same roots and server name as the WebSocket.
    async fn connect(&self) -> Result<Pin<Box<dyn Stream>>, AttachmentFileError> {
        let timed_out =
            || std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting to the relay");
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
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
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
