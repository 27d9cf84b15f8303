//! Public types of groups (`docs/PROTOCOL.md` section 16, `docs/client.md`
//! "Groups"): what the application sees of a group, its messages, and why
//! a group control or a group envelope was refused.

use tacit::error::{GroupDecryptError, GroupStateError};
use tacit::group::multi::MultiError;
use tacit::Address;

use crate::{MessageId, Status};

/// A group as this client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group id.
    pub id: [u8; 32],
    /// The current title.
    pub title: String,
    /// The current epoch (the version of the membership).
    pub epoch: u64,
    /// The current state's hash: members who compare it (out of band)
    /// hold the same members, roles and title.
    pub state: [u8; 32],
    /// The current members, in ascending order of user id.
    pub members: Vec<GroupMemberInfo>,
    /// Whether this user is a member (`false` once it left or was
    /// removed: the group is kept for its history, nothing can be sent).
    pub active: bool,
    /// The devices whose sender chain of the current state this device
    /// holds: whose messages in the current state it can read (filled by
    /// [`Client::groups`](crate::Client::groups), empty elsewhere).
    pub readable_from: Vec<Address>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMemberInfo {
    /// The member's user id.
    pub user_id: String,
    /// Whether the member is an admin (may add and remove members).
    pub admin: bool,
}

/// A group text message received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingGroupMessage {
    /// The group id.
    pub group: [u8; 32],
    /// The group's current title.
    pub title: String,
    /// The sending device, authenticated by its sender chain's signature
    /// (the chain came over a pairwise session from that device).
    pub sender: Address,
    /// The content's message id (receipts refer to it).
    pub message_id: MessageId,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// The relay's id of the group envelope.
    pub relay_id: u64,
}

/// A group message handed to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentGroupMessage {
    /// The group id.
    pub group: [u8; 32],
    /// The content's message id.
    pub message_id: MessageId,
    /// The devices whose mailbox durably holds a copy (one submission).
    pub recipients: Vec<Address>,
    /// Bytes uploaded for the message itself: the shared payload and the
    /// per-device parts (the distributions of a new sender chain, sent
    /// pairwise, are not counted).
    pub uploaded_bytes: usize,
}

/// One group message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupHistoryEntry {
    /// The group id.
    pub group: [u8; 32],
    /// Incoming or outgoing.
    pub direction: crate::Direction,
    /// The sending device (this device for outgoing messages).
    pub sender: Address,
    /// The content's message id.
    pub message_id: MessageId,
    /// The sender's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The text.
    pub text: String,
    /// Its status: [`Status::Pending`] until the relay stored it,
    /// then sent, then delivered or read as receipts arrive.
    pub status: Status,
}

/// Why a group control (a state, a sender chain) or a group envelope was
/// refused or dropped. Nothing of a refused control is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupRefusal {
    /// The group envelope does not open for this device.
    #[error("the group envelope does not open: {0}")]
    Envelope(MultiError),
    /// The envelope's content is not a group message, or a control body
    /// does not decode.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A group state that the local record refuses (stale, unauthorised,
    /// a bad signature, not a member).
    #[error("group state refused: {0}")]
    State(GroupStateError),
    /// A group state that did not come from the device that signed it.
    #[error("a group state sent by {sender}, not by its signer")]
    NotFromSigner {
        /// The pairwise sender.
        sender: Address,
    },
    /// The signer's (or the chain sender's) user key in the group state is
    /// not the user key this client trusts for that user.
    #[error("the group lists another user key for {user_id} than the trusted one")]
    UserKeyMismatch {
        /// The user.
        user_id: String,
    },
    /// A sender chain from a user who is not a member of the state it
    /// names (or of the current state, for a chain of the parent).
    #[error("a sender chain from {user_id}, not a member of its group state")]
    NotMember {
        /// The sender's user.
        user_id: String,
    },
    /// A sender chain or a message for a group this client does not hold.
    #[error("unknown group")]
    UnknownGroup,
    /// A sender chain for a state this client does not hold (or no longer
    /// keeps chains of).
    #[error("a sender chain of a group state not held")]
    UnknownState,
    /// A group message whose sender chain never arrived (held, then
    /// dropped: a newer state made it unreadable, it waited too long, or
    /// the held messages were at their cap).
    #[error("the sender chain of this group message never arrived")]
    ChainMissing,
    /// The group message does not decrypt with its chain, or a sender
    /// chain distribution does not prove that the chain is its sender's
    /// (`ChainOwnerMismatch`).
    #[error("group message or chain refused: {0}")]
    Decrypt(GroupDecryptError),
}
