//! What the client reports: events and the records they carry, history
//! entries, the results of sends, sessions, devices and registrations.

use std::time::Duration;

use tacit::identity::UserKey;
use tacit::session::Profile as SessionProfile;
use tacit::Address;
use tacit_relay_proto::ErrorReply;

use crate::files::{FileRefusal, IncomingFile, SavedFile};
use crate::groups::{GroupRefusal, IncomingGroupMessage};
#[cfg(doc)]
use crate::Client;
use crate::MessageId;

/// Which way a history entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from `peer`.
    Incoming,
    /// Sent to `peer`'s user.
    Outgoing,
}

/// Where a message stands, as far as this device knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Status {
    /// An outgoing group message encrypted (its chain step committed) and
    /// not yet stored by the relay.
    Pending,
    /// An incoming message, recorded.
    Received,
    /// Stored by the relay for every recipient device.
    Sent,
    /// A recipient device reported it delivered.
    Delivered,
    /// A recipient device reported it read.
    Read,
}

/// One message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Incoming or outgoing.
    pub direction: Direction,
    /// The sender (incoming), or the recipient user's first device
    /// (outgoing).
    pub peer: Address,
    /// The content's message id.
    pub message_id: MessageId,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The text.
    pub text: String,
    /// Its status.
    pub status: Status,
}

/// A text message received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingMessage {
    /// The sending device, authenticated by the sealed envelope.
    pub sender: Address,
    /// The content's message id (receipts refer to it).
    pub message_id: MessageId,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// The relay's id of the message.
    pub relay_id: u64,
    /// Whether this was the first message from this identity.
    pub first_contact: bool,
}

/// The kind of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptKind {
    /// The recipient's device received the messages.
    Delivered,
    /// The recipient displayed the messages.
    Read,
}

/// What the client reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Logged in to the relay; the stored queue follows.
    Connected,
    /// Every message queued at login has been handled.
    QueueDrained {
        /// New messages since login (texts, receipts, others).
        delivered: u32,
        /// Redelivered or repeated messages recognised and dropped.
        duplicates: u32,
    },
    /// A text message.
    Message(IncomingMessage),
    /// A file (an attachment pointer). With a download directory
    /// configured and the size within the maximum, the client downloads
    /// it in the background; [`Event::FileSaved`] or
    /// [`Event::FileRefused`] follows, while other messages keep arriving.
    FileReceived(IncomingFile),
    /// A received file was downloaded, verified and saved.
    FileSaved(SavedFile),
    /// A received file was not saved: too large, or it did not download
    /// or verify. No file was written.
    FileRefused {
        /// The sending device.
        sender: Address,
        /// The content's message id.
        message_id: MessageId,
        /// The name the sender gave, as sent (not made safe).
        name: String,
        /// Why.
        reason: FileRefusal,
    },
    /// A receipt for messages this device sent.
    Receipt {
        /// The device that sent the receipt.
        from: Address,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The messages it covers.
        message_ids: Vec<MessageId>,
    },
    /// One-time prekeys (and maybe a new signed prekey) were published.
    PreKeysPublished {
        /// One-time prekeys uploaded now.
        uploaded: u32,
        /// One-time prekeys the relay now holds.
        stored: u32,
        /// One-time KEM prekeys (`tacit-v2`) uploaded now.
        kem_uploaded: u32,
        /// One-time KEM prekeys the relay now holds.
        kem_stored: u32,
        /// Whether the signed prekey (and with it the last-resort KEM
        /// prekey) was rotated.
        signed_prekey_rotated: bool,
    },
    /// Messages expired at the relay before this device fetched them.
    MessagesExpired {
        /// How many.
        count: u64,
    },
    /// A message that cannot be processed (it does not open or decrypt):
    /// recorded as handled and acknowledged.
    Dropped {
        /// The relay's id of the message.
        relay_id: u64,
        /// Why.
        reason: String,
    },
    /// A message held: it claims a user whose trusted user key is another
    /// one (an impersonation, or a real change of user key). It is kept
    /// sealed in the store and acknowledged to the relay (so a flood cannot
    /// jam the mailbox), at most 16 per claimed user and 256 in all (the
    /// oldest goes first), until the application accepts the key
    /// ([`Client::accept_user_key`]) or rejects it
    /// ([`Client::reject_user_key`]).
    Held {
        /// The relay's id of the message.
        relay_id: u64,
        /// The user the message claims to be from.
        user_id: String,
        /// The user key it presents.
        user_key: UserKey,
        /// The safety number with that user key, to compare with the
        /// peer's before accepting it.
        safety_number: String,
        /// Why.
        reason: String,
    },
    /// A group text message.
    GroupMessage(IncomingGroupMessage),
    /// A group's membership or title changed (or this user joined it).
    GroupChanged {
        /// The group id.
        group: [u8; 32],
        /// The current title.
        title: String,
        /// The current epoch.
        epoch: u64,
        /// The device that signed the change.
        by: Address,
        /// What changed, for display (`created`, `added bob`, ...).
        description: String,
        /// Whether this user is still a member.
        active: bool,
    },
    /// A group control or a group envelope was refused or dropped; nothing
    /// of it was stored (a group envelope is acknowledged).
    GroupRefused {
        /// The relay's id of the envelope that carried it.
        relay_id: u64,
        /// The pairwise sender of a control (`None` for a group envelope,
        /// whose sender is only known from its chain).
        from: Option<Address>,
        /// The group, when known.
        group: Option<[u8; 32]>,
        /// Why.
        reason: GroupRefusal,
    },
    /// The connection was lost; the client reconnects after `retry_in`.
    Disconnected {
        /// What happened.
        reason: String,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped for good (the last event).
    Stopped {
        /// Why, unless it was asked to stop.
        error: Option<String>,
    },
}

/// A message handed to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentMessage {
    /// The content's message id.
    pub message_id: MessageId,
    /// The devices whose mailbox durably holds a copy.
    pub stored_for: Vec<Address>,
    /// The devices the relay refused, and why.
    pub refused: Vec<(Address, ErrorReply)>,
}

/// The current session with one of a peer's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerSession {
    /// The peer's device.
    pub address: Address,
    /// The key agreement that started the session.
    pub profile: SessionProfile,
    /// Whether the peer has answered on it (until then this side's
    /// messages repeat the first message's prekey fields).
    pub acknowledged: bool,
}

/// A device registered with the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// The device's address.
    pub address: Address,
    /// Whether the relay did not know the device before.
    pub newly_registered: bool,
    /// One-time prekeys the relay holds for it.
    pub one_time_prekeys: u32,
    /// One-time KEM prekeys (`tacit-v2`) the relay holds for it.
    pub one_time_kem_prekeys: u32,
}

/// A device on this user's verified list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Its address.
    pub address: Address,
    /// Its identity key.
    pub identity: tacit::keys::IdentityKey,
    /// When it was added (the approving device's clock).
    pub added_at_ms: u64,
    /// Whether it is this device.
    pub this_device: bool,
}
