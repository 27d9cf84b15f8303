//! An async tacit client: sessions and history in an encrypted SQLite
//! store, delivery through a tacit relay.
//!
//! - [`register`] creates the device's identity in the store (or reuses the
//!   one there), registers it with the relay and publishes prekeys.
//! - [`Client::start`] opens the store and runs a background task that
//!   connects, logs in, keeps prekeys stocked, receives, decrypts, records
//!   and acknowledges messages, sends delivery receipts, and reconnects
//!   with backoff when the connection drops.
//! - The store's work (SQLite, `synchronous=FULL`) never runs on the
//!   application's async threads: the background task runs on a thread of
//!   its own, with a single-threaded runtime that serves it alone, and so
//!   do [`register`], [`link`] and [`recover`]. Any runtime, including a
//!   single-threaded one, may drive the client.
//! - The application reads [`Event`]s ([`Client::next_event`]) and sends
//!   with [`Client::send_text`], [`Client::send_file`] and
//!   [`Client::send_read_receipt`]. Files travel as encrypted blobs through
//!   the relay's HTTP routes (`https` to a `wss://` relay) and as pointers
//!   in messages; with [`ClientConfig::download_dir`] set, received files
//!   are downloaded, verified and saved in the background
//!   ([`Event::FileReceived`], [`Event::FileSaved`], [`Event::FileRefused`]).
//! - Sealed envelopes are submitted, and prekey bundles fetched, over a
//!   second connection that never logs in, so that the relay cannot tell
//!   from the connection which device sent an envelope or asked for a
//!   bundle (it still sees the IP address).
//! - Both connections use TLS (`wss://`, checked against the platform's
//!   root certificates or [`ClientConfig::ca_file`]); plain `ws://` is
//!   refused unless the relay is on this machine. A login is signed for
//!   the relay name the client is configured with
//!   ([`ClientConfig::server_name`]), never for the one a relay announces.
//!
//! A message is shown once: it is recorded (history and the ids that
//! recognise a redelivery) in the same store transaction as the session
//! change that decrypting it caused, then reported, then acknowledged to
//! the relay. `docs/client.md` describes the state machine, the ordering
//! and its failure cases.
//!
//! ```no_run
//! use tacit_client::{register, Client, ClientConfig, Event, StoreKey};
//!
//! # async fn run() -> Result<(), tacit_client::ClientError> {
//! let key = StoreKey::load_or_create("alice.db.key")?;
//! let config = ClientConfig::new("alice.db", key, "wss://relay.example.org/v1");
//! register(&config, tacit::Address::new("alice", 1)?).await?;
//! let mut client = Client::start(config).await?;
//! client.send_text("bob", "hello").await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.sender.user_id(), m.text);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod attachment;
mod command;
mod config;
mod conn;
mod courier;
mod endpoint;
mod engine;
mod error;
mod events;
mod files;
mod groups;
mod key;
mod link;
mod recovery;
mod store;
mod transfer;
mod worker;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use attachment::{safe_file_name, AttachmentFileError};
use tacit::envelope::attachment::encrypted_len;

use tacit::envelope::MESSAGE_ID_LEN;
use tacit::identity::{LinkCode, UserKey};
use tacit::{Address, DeviceId};
use tokio::sync::{mpsc, oneshot};

pub(crate) use command::{Command, GroupCommand};
pub use config::{Backoff, ClientConfig, DEFAULT_MAX_ATTACHMENT_LEN};
pub use engine::register;
pub use error::ClientError;
pub use events::{
    DeviceInfo, Direction, Event, HistoryEntry, IncomingMessage, PeerSession, ReceiptKind,
    Registration, SentMessage, Status,
};
pub use files::{FileRefusal, IncomingFile, SavedFile};
pub use groups::{
    GroupHistoryEntry, GroupInfo, GroupMemberInfo, GroupRefusal, IncomingGroupMessage,
    SentGroupMessage,
};
pub use key::StoreKey;
pub use link::link;
pub use recovery::{recover, RecoveryCode};
pub use tacit::session::Profile as SessionProfile;

/// A content message id: 16 random bytes chosen by the sender.
pub type MessageId = [u8; MESSAGE_ID_LEN];
/// How many events wait for the application at most; the client waits
/// (and reads nothing more from the relay) while the queue is full.
const EVENT_QUEUE: usize = 1024;

/// A running client. See the crate documentation.
#[derive(Debug)]
pub struct Client {
    address: Address,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    /// The relay's attachment routes, for uploads and downloads the
    /// application's task runs.
    transfer: transfer::Transfer,
    /// The client's task, on a thread of its own (see `worker`).
    task: Option<worker::Worker<()>>,
}

impl Client {
    /// Opens the store (which must hold a registered identity: see
    /// [`register`]) and starts the client's task, which connects to the
    /// relay at once. Fails if the store cannot be opened.
    pub async fn start(config: ClientConfig) -> Result<Self, ClientError> {
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (opened_tx, opened) = oneshot::channel();
        // The store is opened on the task's thread, like all its work.
        let task = worker::spawn("tacit-client", move || async move {
            match engine::Engine::open(config, commands_rx, events_tx) {
                Ok(engine) => {
                    let _ = opened_tx.send(Ok((engine.address().clone(), engine.transfer())));
                    engine.run().await;
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            }
        })?;
        let (address, transfer) = opened.await.map_err(|_| ClientError::Stopped)??;
        Ok(Self {
            address,
            commands: commands_tx,
            events: events_rx,
            transfer,
            task: Some(task),
        })
    }

    /// This device's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The next event; `None` after [`Event::Stopped`] was taken.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Sends `text` to every known device of `peer` (fetching their bundles
    /// first if there is no session yet) and to this user's other devices.
    /// Returns once every copy is durably stored by the relay, or refused.
    /// The copies are submitted over a connection that never logs in,
    /// without a delivery token. While the client is disconnected the send
    /// waits for the connection.
    pub async fn send_text(&self, peer: &str, text: &str) -> Result<SentMessage, ClientError> {
        self.call(|reply| Command::Send {
            peer: peer.into(),
            text: text.into(),
            reply,
        })
        .await
    }

    /// Sends the file at `path` to every known device of `peer` (and this
    /// user's other devices), as [`send_text`](Self::send_text) sends a
    /// text. The file is encrypted as it is read, in constant memory,
    /// straight into an upload to the relay (`https` to a `wss://` relay,
    /// with the same TLS settings), into a slot reserved over the logged-in
    /// connection; once the relay has stored the blob durably, its pointer
    /// (id, key, digest, size) is sent with the file's name
    /// ([`safe_file_name`]) as caption. The upload runs in the caller's
    /// task, not the client's: messages keep flowing meanwhile. Fails
    /// with [`ClientError::Attachment`] if the file cannot be read or the
    /// relay refuses the upload, and with [`ClientError::Relay`]
    /// (`AttachmentTooLarge`, `AttachmentQuotaExceeded`) if it refuses the
    /// reservation.
    pub async fn send_file(
        &self,
        peer: &str,
        path: impl AsRef<Path>,
    ) -> Result<SentMessage, ClientError> {
        let path = path.as_ref();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(AttachmentFileError::Io)?;
        let meta = file.metadata().await.map_err(AttachmentFileError::Io)?;
        if !meta.is_file() {
            return Err(ClientError::Invalid(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let len = meta.len();
        let blob_len = encrypted_len(len)
            .ok_or_else(|| ClientError::Invalid(format!("{} is too large", path.display())))?;
        let name = safe_file_name(
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let (id, token) = self
            .call(|reply| Command::AllocateAttachment {
                size: blob_len,
                reply,
            })
            .await?;
        let done = self.transfer.upload(&id, &token, file, len).await?;
        let pointer = done
            .pointer(&id, "")
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.call(|reply| Command::SendFile {
            peer: peer.into(),
            pointer,
            name,
            reply,
        })
        .await
    }

    /// Downloads a received file into `dir` (when the client does not do
    /// it itself: no [`ClientConfig::download_dir`], or a file over
    /// [`ClientConfig::max_attachment_len`]): verified as it streams in,
    /// written under [`safe_file_name`] of its name only once the whole
    /// blob verifies, never replacing a file. Answers the path.
    pub async fn download_file(
        &self,
        file: &IncomingFile,
        dir: impl AsRef<Path>,
    ) -> Result<PathBuf, AttachmentFileError> {
        self.transfer
            .download(&file.pointer, dir.as_ref(), &file.name)
            .await
    }

    /// Tells `peer` that these messages were read.
    pub async fn send_read_receipt(
        &self,
        peer: &str,
        message_ids: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        self.call(|reply| Command::Read {
            peer: peer.into(),
            message_ids,
            reply,
        })
        .await
    }

    /// The safety number of this user and `peer`: 60 digits over the two
    /// users' keys (one number per pair of users, whatever their devices).
    pub async fn safety_number(&self, peer: &str) -> Result<String, ClientError> {
        self.call(|reply| Command::SafetyNumber {
            peer: peer.into(),
            reply,
        })
        .await
    }

    /// Trusts `user_key` for `user_id` from now on, after the user compared
    /// its safety number (reported with [`Event::Held`]) with the peer's.
    /// The client fetches the user's list signed by that key from the relay;
    /// the sessions with devices of the former key are deleted. The
    /// envelopes held from that user under that key are then processed
    /// (their events follow); the count of them is returned.
    pub async fn accept_user_key(
        &self,
        user_id: &str,
        user_key: &UserKey,
    ) -> Result<usize, ClientError> {
        self.call(|reply| Command::AcceptUserKey {
            user_id: user_id.into(),
            user_key: *user_key,
            reply,
        })
        .await
    }

    /// Deletes the envelopes held for `user_id` under another user key than
    /// the trusted one (judged an impersonation); returns how many.
    pub async fn reject_user_key(&self, user_id: &str) -> Result<usize, ClientError> {
        self.call(|reply| Command::RejectUserKey {
            user_id: user_id.into(),
            reply,
        })
        .await
    }

    /// Links the device that shows `code` (see [`link`]): this device must
    /// hold the user key (the user's first device). Signs the next device
    /// list with the new device on it, publishes it and answers the new
    /// device. Returns the new device's address.
    pub async fn approve_link(&self, code: &LinkCode) -> Result<Address, ClientError> {
        self.call(|reply| Command::ApproveLink {
            code: code.clone(),
            reply,
        })
        .await
    }

    /// Removes a device of this user (this device must hold the user key):
    /// publishes the list without it. The relay deletes its registration
    /// and mailbox at once; peers stop sending to it when they next fetch
    /// the list (before each send, with this client).
    pub async fn remove_device(&self, device_id: DeviceId) -> Result<(), ClientError> {
        self.call(|reply| Command::RemoveDevice { device_id, reply })
            .await
    }

    /// Registers `url` as this device's push endpoint (the HTTPS URL a push
    /// gateway, UnifiedPush or Web Push style, gave this device), or with
    /// `None` clears it. While the device is offline, the relay POSTs an
    /// empty request to the endpoint when mail arrives: it says only "there
    /// is mail", never from whom or how much. The relay refuses URLs that
    /// are not https, carry credentials, exceed 512 bytes or point into a
    /// private network (unless configured otherwise).
    pub async fn set_push_endpoint(&self, url: Option<&str>) -> Result<(), ClientError> {
        let url = url.map(str::to_owned);
        self.call(|reply| Command::SetPushEndpoint { url, reply })
            .await
    }

    /// Draws a new delivery token for this device, stores it and sets it
    /// at the relay (needs the connection). Correspondents learn it from
    /// this device's next text or read receipt to them; until then the
    /// relay refuses their anonymous submissions, and they submit logged
    /// in, within their account's tokenless quota (`docs/client.md`,
    /// "Delivery tokens").
    pub async fn rotate_delivery_token(&self) -> Result<(), ClientError> {
        self.call(|reply| Command::RotateDeliveryToken { reply })
            .await
    }

    /// The user key's recovery code, on the device that holds the user key:
    /// show it to the user once, to keep offline ([`recover`] restores it).
    pub async fn recovery_code(&self) -> Result<RecoveryCode, ClientError> {
        self.call(|reply| Command::RecoveryCode { reply }).await
    }

    /// The sessions with `peer`'s devices that have one, and the profile
    /// each was started with: [`SessionProfile::V2`] (`tacit-v2`, PQXDH
    /// over X25519 and ML-KEM-1024) whenever the peer's bundle offered a
    /// KEM prekey, which every device of this version publishes.
    pub async fn sessions(&self, peer: &str) -> Result<Vec<PeerSession>, ClientError> {
        self.call(|reply| Command::Sessions {
            peer: peer.into(),
            reply,
        })
        .await
    }

    /// The devices on this user's verified list.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        self.call(|reply| Command::Devices { reply }).await
    }

    /// The message history, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, ClientError> {
        self.call(|reply| Command::History { reply }).await
    }

    /// Creates a group titled `title` with this user (as its admin) and
    /// `members` (plain members), and sends its first state to every
    /// device of every member, pairwise. The title must be unique among
    /// this client's groups to be usable as a name.
    pub async fn create_group(
        &self,
        title: &str,
        members: &[&str],
    ) -> Result<GroupInfo, ClientError> {
        self.call(|reply| {
            Command::Group(GroupCommand::Create {
                title: title.into(),
                members: members.iter().map(|m| (*m).to_owned()).collect(),
                reply,
            })
        })
        .await
    }

    /// Adds `user` to `group` (its title, or its id in 64 hex digits);
    /// this user must be an admin. The new member receives the current
    /// state and its parent; it can read nothing sent before.
    pub async fn add_group_member(
        &self,
        group: &str,
        user: &str,
    ) -> Result<GroupInfo, ClientError> {
        self.call(|reply| {
            Command::Group(GroupCommand::Add {
                group: group.into(),
                user: user.into(),
                reply,
            })
        })
        .await
    }

    /// Removes `user` from `group`; this user must be an admin
    /// ([`ClientError::Group`] otherwise). Every member's next message
    /// uses a sender chain the removed member never receives.
    pub async fn remove_group_member(
        &self,
        group: &str,
        user: &str,
    ) -> Result<GroupInfo, ClientError> {
        self.call(|reply| {
            Command::Group(GroupCommand::Remove {
                group: group.into(),
                user: user.into(),
                reply,
            })
        })
        .await
    }

    /// Leaves `group` (the last admin cannot); the group stays in the list,
    /// inactive.
    pub async fn leave_group(&self, group: &str) -> Result<(), ClientError> {
        self.call(|reply| {
            Command::Group(GroupCommand::Leave {
                group: group.into(),
                reply,
            })
        })
        .await
        .map(|_| ())
    }

    /// Sends `text` to every device of every member of `group` (and this
    /// user's other devices) in one submission; a new sender chain is
    /// distributed pairwise first where needed. Returns once the relay
    /// stored every copy.
    pub async fn send_group_text(
        &self,
        group: &str,
        text: &str,
    ) -> Result<SentGroupMessage, ClientError> {
        self.call(|reply| {
            Command::Group(GroupCommand::Send {
                group: group.into(),
                text: text.into(),
                reply,
            })
        })
        .await
    }

    /// The groups this client holds, active or not.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.call(|reply| Command::Group(GroupCommand::List { reply }))
            .await
    }

    /// The group message history, in the order entries were first
    /// recorded.
    pub async fn group_history(&self) -> Result<Vec<GroupHistoryEntry>, ClientError> {
        self.call(|reply| Command::Group(GroupCommand::History { reply }))
            .await
    }

    /// Closes the connection and stops the task. Messages processed are
    /// already acknowledged or will be offered again at the next start.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.join().await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping without `shutdown` ends the task at its next step, like a
        // crash: whatever it acknowledged is done, the rest is redelivered.
        // Dropping the worker cancels the task.
        drop(self.task.take());
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
