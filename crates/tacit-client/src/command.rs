//! Requests from the [`Client`] handle to its task.

use tacit::envelope::AttachmentPointer;
use tacit::identity::{LinkCode, UserKey};
use tacit::{Address, DeviceId};
use tokio::sync::oneshot;

use crate::groups::{GroupHistoryEntry, GroupInfo, SentGroupMessage};
#[cfg(doc)]
use crate::Client;
use crate::{
    ClientError, DeviceInfo, HistoryEntry, MessageId, PeerSession, RecoveryCode, SentMessage,
};

/// A reserved attachment slot: its id and upload token.
pub(crate) type Slot = (
    [u8; tacit_relay_proto::ATTACHMENT_ID_LEN],
    [u8; tacit_relay_proto::ATTACHMENT_TOKEN_LEN],
);

/// Requests from the [`Client`] handle to its task.
pub(crate) enum Command {
    Send {
        peer: String,
        text: String,
        reply: oneshot::Sender<Result<SentMessage, ClientError>>,
    },
    /// Reserves an attachment slot of `size` blob bytes at the relay.
    AllocateAttachment {
        size: u64,
        reply: oneshot::Sender<Result<Slot, ClientError>>,
    },
    /// Sends an uploaded file's pointer, `name` as its caption.
    SendFile {
        peer: String,
        pointer: AttachmentPointer,
        name: String,
        reply: oneshot::Sender<Result<SentMessage, ClientError>>,
    },
    Read {
        peer: String,
        message_ids: Vec<MessageId>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    SafetyNumber {
        peer: String,
        reply: oneshot::Sender<Result<String, ClientError>>,
    },
    History {
        reply: oneshot::Sender<Result<Vec<HistoryEntry>, ClientError>>,
    },
    ApproveLink {
        code: LinkCode,
        reply: oneshot::Sender<Result<Address, ClientError>>,
    },
    RemoveDevice {
        device_id: DeviceId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    SetPushEndpoint {
        url: Option<String>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    RotateDeliveryToken {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Devices {
        reply: oneshot::Sender<Result<Vec<DeviceInfo>, ClientError>>,
    },
    Sessions {
        peer: String,
        reply: oneshot::Sender<Result<Vec<PeerSession>, ClientError>>,
    },
    RecoveryCode {
        reply: oneshot::Sender<Result<RecoveryCode, ClientError>>,
    },
    RejectUserKey {
        user_id: String,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    AcceptUserKey {
        user_id: String,
        user_key: UserKey,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Group(GroupCommand),
}

/// Group requests from the [`Client`] handle to its task.
pub(crate) enum GroupCommand {
    Create {
        title: String,
        members: Vec<String>,
        reply: oneshot::Sender<Result<GroupInfo, ClientError>>,
    },
    Add {
        group: String,
        user: String,
        reply: oneshot::Sender<Result<GroupInfo, ClientError>>,
    },
    Remove {
        group: String,
        user: String,
        reply: oneshot::Sender<Result<GroupInfo, ClientError>>,
    },
    Leave {
        group: String,
        reply: oneshot::Sender<Result<GroupInfo, ClientError>>,
    },
    Send {
        group: String,
        text: String,
        reply: oneshot::Sender<Result<SentGroupMessage, ClientError>>,
    },
    List {
        reply: oneshot::Sender<Result<Vec<GroupInfo>, ClientError>>,
    },
    History {
        reply: oneshot::Sender<Result<Vec<GroupHistoryEntry>, ClientError>>,
    },
}
