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
//!   with [`Client::send_text`] and [`Client::send_read_receipt`].
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

mod conn;
mod courier;
mod endpoint;
mod engine;
mod groups;
mod key;
mod link;
mod recovery;
mod store;
mod worker;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tacit::envelope::MESSAGE_ID_LEN;
use tacit::error::{SessionError, StoreError};
use tacit::identity::{LinkCode, UserKey};
use tacit::{Address, DeviceId};
use tacit_relay_proto::{ErrorCode, ErrorReply};
use tokio::sync::{mpsc, oneshot};

pub use engine::register;
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

/// How the client reconnects: exponential backoff with jitter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Consecutive failed attempts after which the client stops.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 250 ms, doubling up to 10 s, giving up after 30 failed attempts in a
    /// row (about four minutes).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            max_attempts: 30,
        }
    }
}

impl Backoff {
    /// A backoff with these bounds.
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            initial,
            max,
            max_attempts,
        }
    }

    /// The delay before attempt `failures + 1`: `initial * 2^(failures-1)`
    /// capped at `max`, then scaled by `jitter` in `[0.5, 1]` (from a
    /// random `u32`), so that clients cut off together do not come back
    /// together.
    pub fn delay(&self, failures: u32, jitter: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        let base = self
            .initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max);
        let fraction = 0.5 + f64::from(jitter) / f64::from(u32::MAX) / 2.0;
        base.mul_f64(fraction)
    }
}

/// The client's settings. [`ClientConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The store file (SQLite, every record sealed under `store_key`).
    pub store_path: PathBuf,
    /// The key the store is sealed under.
    pub store_key: StoreKey,
    /// The relay's WebSocket URL, `wss://HOST[:PORT]/v1`. Plain
    /// `ws://` is refused ([`ClientError::PlaintextRelay`]) unless the host
    /// is a loopback address: `localhost`, 127.0.0.0/8 or `::1`.
    pub relay_url: String,
    /// The relay's name, as its operator set it (`tacit-relay
    /// --server-name`). Every login is signed for this name, and a relay
    /// announcing another one is refused before anything is signed
    /// ([`ClientError::ServerNameMismatch`]), so that a relay cannot pass
    /// the client's login on to another relay. [`ClientConfig::new`] sets
    /// it to the host of `relay_url` in lowercase; set it again after
    /// changing `relay_url`.
    pub server_name: String,
    /// A PEM file of the certificates to trust for `wss://`, used instead
    /// of the platform's root certificates when set (a relay with a
    /// private CA or a self-signed certificate).
    pub ca_file: Option<PathBuf>,
    /// How many one-time prekeys the client keeps published.
    pub one_time_prekeys: u32,
    /// How many one-time KEM prekeys (`tacit-v2`, ML-KEM-1024, about 1.6 KB
    /// each on the wire) the client keeps published; the account holds at
    /// most `tacit::session::MAX_ONE_TIME_KEM_PREKEYS`, those handed out
    /// but never used included. Below `prekeys_low` it uploads more.
    pub one_time_kem_prekeys: u32,
    /// Below this many one-time prekeys at login, the client uploads more
    /// (the relay also sends `PreKeysLow` below its own threshold).
    pub prekeys_low: u32,
    /// Rotate the signed prekey at login when it is older than this.
    pub signed_prekey_max_age: Duration,
    /// Keep a replaced signed prekey this long, for prekey messages built
    /// from bundles fetched before the rotation.
    pub signed_prekey_grace: Duration,
    /// Reconnection.
    pub backoff: Backoff,
    /// How long to wait for the relay to answer a request or a connection.
    pub request_timeout: Duration,
    /// Send a delivery receipt for every text received.
    pub delivery_receipts: bool,
    /// Process the messages the relay pushes. With `false` they are left
    /// unacknowledged in the relay's queue for a later run (a client that
    /// only sends, such as a one-shot `send` command, so that it does not
    /// take messages away from the one that shows them).
    pub receive: bool,
    /// Acknowledge processed messages to the relay. Always `true` in use;
    /// `false` leaves every message in the relay's queue, which is what a
    /// client killed between processing and acknowledging leaves behind
    /// (for tests of redelivery).
    pub acknowledge: bool,
    /// How long a group message waits for its sender chain before it is
    /// dropped ([`GroupRefusal::ChainMissing`]); checked whenever the
    /// stored queue has drained.
    pub group_pending_ttl: Duration,
}

impl ClientConfig {
    /// The defaults for this store and relay: the relay's name is the
    /// URL's host, the platform's root certificates, 100 one-time prekeys
    /// and 50 one-time KEM prekeys (each replenished below 20), signed
    /// prekey rotated after 7 days with a
    /// 30-day grace, [`Backoff::default`], 10 s request timeout, delivery
    /// receipts on. The URL is checked when the client connects.
    pub fn new(
        store_path: impl Into<PathBuf>,
        store_key: StoreKey,
        relay_url: impl Into<String>,
    ) -> Self {
        let relay_url = relay_url.into();
        Self {
            store_path: store_path.into(),
            store_key,
            server_name: endpoint::default_server_name(&relay_url),
            relay_url,
            ca_file: None,
            one_time_prekeys: 100,
            one_time_kem_prekeys: 50,
            prekeys_low: 20,
            signed_prekey_max_age: Duration::from_secs(7 * 24 * 3600),
            signed_prekey_grace: Duration::from_secs(30 * 24 * 3600),
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(10),
            delivery_receipts: true,
            receive: true,
            acknowledge: true,
            group_pending_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

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
            Self::Connection(_) | Self::Timeout(_) | Self::Protocol(_) => false,
            _ => true,
        }
    }
}

/// Requests from the [`Client`] handle to its task.
pub(crate) enum Command {
    Send {
        peer: String,
        text: String,
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

/// How many events wait for the application at most; the client waits
/// (and reads nothing more from the relay) while the queue is full.
const EVENT_QUEUE: usize = 1024;

/// A running client. See the crate documentation.
#[derive(Debug)]
pub struct Client {
    address: Address,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
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
                    let _ = opened_tx.send(Ok(engine.address().clone()));
                    engine.run().await;
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            }
        })?;
        let address = opened.await.map_err(|_| ClientError::Stopped)??;
        Ok(Self {
            address,
            commands: commands_tx,
            events: events_rx,
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
