//! Files received: the attachment pointers peers send, as the client
//! reports them, and why a file was not saved.

use std::path::PathBuf;

use tacit::envelope::AttachmentPointer;
use tacit::error::AttachmentError;
use tacit::Address;

use crate::attachment::AttachmentFileError;
use crate::MessageId;
#[cfg(doc)]
use crate::{Client, ClientConfig, Event};

/// A file received: an attachment pointer from a device of a peer (or of
/// this user).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingFile {
    /// The sending device, authenticated by the sealed envelope.
    pub sender: Address,
    /// The content's message id (receipts refer to it).
    pub message_id: MessageId,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The file name the sender gave (the content's caption), as sent
    /// (invalid UTF-8 replaced): not made safe. It is saved under
    /// [`safe_file_name`](crate::attachment::safe_file_name) of it;
    /// sanitize it before showing it.
    pub name: String,
    /// The plaintext's size the pointer claims, in bytes.
    pub size: u64,
    /// The media type the sender gave; empty when unknown.
    pub content_type: String,
    /// The relay's id of the message.
    pub relay_id: u64,
    /// Whether the client is downloading it into
    /// [`ClientConfig::download_dir`]: an [`Event::FileSaved`] or
    /// [`Event::FileRefused`] follows.
    pub downloading: bool,
    /// The pointer, with the blob's key (secret), for
    /// [`Client::download_file`].
    pub pointer: AttachmentPointer,
}

/// Why a received file was not saved. Nothing is left under its name in
/// the download directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileRefusal {
    /// The pointer claims more bytes than
    /// [`ClientConfig::max_attachment_len`]; nothing was downloaded.
    #[error("the file claims {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// The size the pointer claims.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The blob does not decrypt or verify against the pointer
    /// (truncated, tampered with, swapped or too long).
    #[error("the blob does not verify: {0}")]
    Refused(AttachmentError),
    /// The relay answered an HTTP status other than success (404: unknown,
    /// expired or not uploaded).
    #[error("relay answered HTTP {0}")]
    Http(u16),
    /// Reading from the relay or writing the file failed.
    #[error("i/o: {0}")]
    Io(String),
    /// The relay's answer is not an HTTP response this client reads.
    #[error("bad HTTP answer: {0}")]
    Protocol(&'static str),
}

impl From<AttachmentFileError> for FileRefusal {
    fn from(e: AttachmentFileError) -> Self {
        match e {
            AttachmentFileError::Refused(e) => Self::Refused(e),
            AttachmentFileError::Io(e) => Self::Io(e.to_string()),
            AttachmentFileError::Http(status) => Self::Http(status),
            AttachmentFileError::Protocol(why) => Self::Protocol(why),
        }
    }
}

/// A received file saved, for [`Event::FileSaved`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedFile {
    /// The sending device.
    pub sender: Address,
    /// The content's message id.
    pub message_id: MessageId,
    /// Where the verified file now is.
    pub path: PathBuf,
}
