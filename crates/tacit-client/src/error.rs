//! The client's error.

#[cfg(doc)]
use crate::ClientConfig;
use tacit::error::{SessionError, StoreError};
use tacit_relay_proto::{ErrorCode, ErrorReply};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The store failed; a change in progress was not written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The session layer refused.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// A device list, link code or link blob was refused.
    #[error("identity: {0}")]
    Identity(#[from] tacit::error::IdentityError),
    /// The store holds no identity yet.
    #[error("the store holds no identity: register first")]
    NotRegistered,
    /// The store belongs to another address.
    #[error("the store belongs to {stored}, not {requested}")]
    ProfileMismatch {
        /// The address in the store.
        stored: String,
        /// The address asked for.
        requested: String,
    },
    /// The relay refused a request.
    #[error("relay refused: {0}")]
    Relay(ErrorReply),
    /// The relay refused a submission for want of the recipient's delivery
    /// token: this device holds none for the recipient, or a stale one,
    /// and the account's tokenless quota at the relay is used up. Nothing
    /// was stored for that recipient; send again after `retry_after_ms`,
    /// or once the peer has written (its contents carry its token).
    #[error("the recipient requires a delivery token this device lacks, and the tokenless quota is used up")]
    DeliveryTokenRefused {
        /// When the relay's quota has room again, if it said.
        retry_after_ms: Option<u64>,
    },
    /// The user has no device with published prekeys at the relay.
    #[error("unknown user: {0}")]
    UnknownPeer(String),
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Connection(String),
    /// The relay did not answer in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The relay sent something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The input is not valid (a user name, a key).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An I/O error (the key file).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The relay URL cannot be used: not a `ws://` or `wss://` URL with a
    /// host.
    #[error("relay url: {0}")]
    RelayUrl(String),
    /// A plain `ws://` URL to a host that is not this machine; use
    /// `wss://`.
    #[error(
        "refusing plain ws:// to {host}: use wss:// (ws:// is only for a relay on this machine)"
    )]
    PlaintextRelay {
        /// The URL's host.
        host: String,
    },
    /// TLS could not be set up (the CA file, the platform's roots) or the
    /// handshake failed (a certificate not trusted, not for this host).
    #[error("tls: {0}")]
    Tls(String),
    /// The relay announced another name than the configured one, so its
    /// login challenge may come from another relay; nothing was signed.
    #[error("the relay calls itself {announced:?}, not {configured:?} (the configured server name); refusing to log in")]
    ServerNameMismatch {
        /// [`ClientConfig::server_name`].
        configured: String,
        /// The name in the relay's challenge.
        announced: String,
    },
    /// A group operation was refused by the group rules (not an admin,
    /// not a member, already a member, ...); nothing changed.
    #[error("group: {0}")]
    Group(#[from] tacit::GroupStateError),
    /// A file could not be read, encrypted or uploaded to the relay.
    #[error("attachment: {0}")]
    Attachment(#[from] crate::attachment::AttachmentFileError),
    /// The client has stopped.
    #[error("the client has stopped")]
    Stopped,
}

impl From<tacit::AddressError> for ClientError {
    fn from(e: tacit::AddressError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<tacit_relay_proto::FrameError> for ClientError {
    fn from(e: tacit_relay_proto::FrameError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl ClientError {
    /// Whether retrying (after a reconnect) cannot help: the relay does not
    /// know this device, the identity does not match, the store failed, or
    /// the relay is not the one configured (its URL, its certificate, its
    /// name).
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Relay(e) => matches!(
                e.code,
                ErrorCode::UnknownDevice
                    | ErrorCode::BadSignature
                    | ErrorCode::AddressTaken
                    | ErrorCode::StaleTimestamp
                    | ErrorCode::Superseded
                    | ErrorCode::TooManyErrors
                    | ErrorCode::DeviceRemoved
            ),
            Self::Connection(_)
            | Self::Timeout(_)
            | Self::Protocol(_)
            | Self::Attachment(_)
            | Self::DeliveryTokenRefused { .. } => false,
            _ => true,
        }
    }
}
