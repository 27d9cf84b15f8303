//! The relay's store: every change goes through [`Writer`], every read
//! through [`Readers`], over one of two backends.
//!
//! A command is queued on a channel; the backend's writer takes every
//! command waiting (up to a batch limit), applies each inside its own
//! savepoint of one transaction (a refused or failed command changes
//! nothing), commits the batch durably, and only then answers each
//! command. An answer of success therefore means durable. The backends:
//! [`sqlite`] (one file, one node; the default) and [`postgres`] (any
//! number of interchangeable nodes on one PostgreSQL database).

pub(crate) mod postgres;
pub(crate) mod sqlite;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tacit::identity::DeviceList;
use tacit::wire::PreKeyBundleMessage;
use tacit::{Address, DeviceId, IdentityKey};
use tacit_relay_proto::{ErrorCode, ErrorReply, SharedPayloadBytes, UploadPreKeys};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::group::GroupCopy;
use crate::kem::PreKeyCounts;
use crate::metrics::Metrics;
use crate::online::Online;
use crate::tokenless::Sender;

pub(crate) use sqlite::{insert_envelope, may_submit, MessageIds};

/// A store failure that is not a refusal: the database could not be opened
/// or used.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl StoreError {
    /// A failure described by `message`.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self(Box::new(error))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self(Box::new(error))
    }
}

/// The result of a command: a value, or a typed refusal.
pub(crate) type Outcome<T> = Result<T, ErrorReply>;

pub(crate) fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Outcome<T> {
    Err(ErrorReply::new(code, message))
}

/// Where the relay keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// A SQLite file, opened in WAL mode with `synchronous=FULL`: one relay
    /// process owns it.
    Sqlite(PathBuf),
    /// A PostgreSQL database named by its URL
    /// (`postgres://USER@HOST:PORT/DB`, or a `postgresql://` URL; a Unix
    /// socket directory goes in a `host=` query parameter): any number of
    /// relay nodes share it.
    Postgres(String),
    /// A SQLite database held in memory for the life of the process's
    /// connections to it, named by a `file:/NAME?vfs=memdb` URI: for
    /// fuzzing the request handling without a disk. Not durable.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    Memory(String),
}

impl Database {
    /// Reads a `--db` argument: a `postgres://` or `postgresql://` URL is
    /// PostgreSQL, anything else the path of a SQLite file.
    pub fn from_arg(arg: &str) -> Self {
        let lower = arg.get(..13).unwrap_or(arg).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Self::Postgres(arg.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(arg))
        }
    }

    /// Whether several relay nodes may share this database.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// What the writer does.
pub(crate) enum Command {
    /// Registers a device presenting its user's list, which the caller has
    /// verified, checked to name the device's user id and to list the
    /// device with its identity key.
    Register {
        address: Address,
        identity_key: IdentityKey,
        device_list: Box<DeviceList>,
        list_bytes: Vec<u8>,
        now_ms: u64,
        reply: oneshot::Sender<Outcome<bool>>,
    },
    /// Stores a newer list of the user of `publisher` (a logged-in device),
    /// which the caller has verified and checked to name that user id;
    /// answers the stored version.
    PublishList {
        publisher: Address,
        device_list: Box<DeviceList>,
        list_bytes: Vec<u8>,
        now_ms: u64,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    UploadPreKeys {
        address: Address,
        upload: UploadPreKeys,
        max_one_time: u32,
        max_one_time_kem: u32,
        reply: oneshot::Sender<Outcome<PreKeyCounts>>,
    },
    /// Claims a bundle of each of the user's devices (or of one); with
    /// `spend_one_time` false, no one-time prekey is handed out (the
    /// fallback and the last-resort KEM prekey are), so none is used up.
    ClaimBundles {
        user_id: String,
        device_id: Option<DeviceId>,
        spend_one_time: bool,
        reply: oneshot::Sender<Outcome<Claimed>>,
    },
    Submit {
        recipient: Address,
        envelope: Vec<u8>,
        token_hash: Option<[u8; 32]>,
        sender: Sender,
        now_ms: u64,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    /// Queues one group envelope per recipient, all or none; answers how
    /// many.
    SubmitGroup {
        shared: SharedPayloadBytes,
        copies: Vec<GroupCopy>,
        sender: Sender,
        now_ms: u64,
        reply: oneshot::Sender<Outcome<u32>>,
    },
    Ack {
        address: Address,
        ids: Vec<u64>,
        reply: oneshot::Sender<Outcome<u32>>,
    },
    SetToken {
        address: Address,
        token_hash: Option<[u8; 32]>,
        reply: oneshot::Sender<Outcome<()>>,
    },
    /// Sets or clears the device's push endpoint (`crate::push`).
    SetPush {
        address: Address,
        endpoint: Option<String>,
        reply: oneshot::Sender<Outcome<()>>,
    },
    TakeExpired {
        address: Address,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    /// Deletes at most `limit` expired messages, those expiring first;
    /// answers how many. [`Writer::purge`] repeats it until none is left.
    Purge {
        now_ms: u64,
        limit: u32,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    /// Stop after this batch.
    Stop,
}

impl Command {
    /// A number that is the same for every command about one user (the
    /// recipient's, the device's or the list's user id): commands with the
    /// same number run in order on one writer.
    pub(crate) fn partition(&self) -> usize {
        let user = match self {
            Self::Register { address, .. }
            | Self::UploadPreKeys { address, .. }
            | Self::Ack { address, .. }
            | Self::SetToken { address, .. }
            | Self::SetPush { address, .. }
            | Self::TakeExpired { address, .. } => address.user_id(),
            Self::PublishList { publisher, .. } => publisher.user_id(),
            Self::ClaimBundles { user_id, .. } => user_id,
            Self::Submit { recipient, .. } => recipient.user_id(),
            Self::SubmitGroup { copies, .. } => {
                copies.first().map_or("", |c| c.recipient.user_id())
            }
            Self::Purge { .. } | Self::Stop => "",
        };
        // FNV-1a: stable, and spreads short ids well enough.
        let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        usize::try_from(hash % 1_000_003).unwrap_or(0)
    }

    /// What the command holds in memory while it waits in the writer's
    /// queue, in bytes, about: its payload and a fixed overhead, so that
    /// the queue's byte budget also bounds the number of small commands.
    pub(crate) fn queued_bytes(&self) -> usize {
        const OVERHEAD: usize = 256;
        let payload = match self {
            Self::Register { list_bytes, .. } | Self::PublishList { list_bytes, .. } => {
                list_bytes.len()
            }
            Self::UploadPreKeys { upload, .. } => {
                // A one-time prekey is 36 bytes with its id; a KEM prekey
                // with its signature about 1,700.
                upload.one_time_prekeys.len() * 36
                    + (upload.one_time_kem_prekeys.len()
                        + usize::from(upload.kem_last_resort_prekey.is_some()))
                        * 1_700
            }
            Self::Submit { envelope, .. } => envelope.len(),
            Self::SubmitGroup { shared, copies, .. } => {
                shared.as_bytes().len() + copies.len() * size_of::<GroupCopy>()
            }
            Self::Ack { ids, .. } => ids.len() * 8,
            Self::ClaimBundles { user_id, .. } => user_id.len(),
            Self::SetPush { endpoint, .. } => endpoint.as_ref().map_or(0, String::len),
            Self::SetToken { .. } | Self::TakeExpired { .. } | Self::Purge { .. } | Self::Stop => 0,
        };
        OVERHEAD + payload
    }
}

/// A command in the writer's queue, with the share of the queue's byte
/// budget it holds until the writer takes it.
pub(crate) struct Queued {
    command: Command,
    _budget: Option<OwnedSemaphorePermit>,
}

/// The writer's end of a queue. The commands it hands out keep their
/// share of the byte budget until [`Receiver::release`], which the writer
/// calls once their batch is done: the budget bounds what waits in the
/// queue and what the batch being applied holds, together.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Queued>,
    held: Vec<OwnedSemaphorePermit>,
}

impl Receiver {
    fn take(&mut self, queued: Queued) -> Command {
        self.held.extend(queued._budget);
        queued.command
    }

    /// The next command, waiting for one.
    pub(crate) async fn recv(&mut self) -> Option<Command> {
        let queued = self.rx.recv().await?;
        Some(self.take(queued))
    }

    /// The next command, blocking the thread until there is one.
    pub(crate) fn blocking_recv(&mut self) -> Option<Command> {
        let queued = self.rx.blocking_recv()?;
        Some(self.take(queued))
    }

    /// The next command if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Command> {
        let queued = self.rx.try_recv().ok()?;
        Some(self.take(queued))
    }

    /// Gives the bytes of the commands taken so far back to the budget.
    pub(crate) fn release(&mut self) {
        self.held.clear();
    }
}

/// Commands a queue holds at most, whatever their size.
const QUEUE_COMMANDS: usize = 4096;

/// A new writer queue.
pub(crate) fn queue() -> (mpsc::Sender<Queued>, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE_COMMANDS);
    (
        tx,
        Receiver {
            rx,
            held: Vec::new(),
        },
    )
}

/// Claimed bundles: the user's signed device list and one bundle per
/// device with a signed prekey.
pub(crate) type Claimed = (Vec<u8>, Vec<(DeviceId, PreKeyBundleMessage)>);

/// The checks of a submission against its recipient's stored state (both
/// backends): its delivery token is presented unless `logged_in`, its
/// queue is below the cap in messages and would stay within it in bytes
/// with an envelope of `len` bytes. Answers whether the submission goes
/// without a token the device set (a logged-in sender's, which costs a
/// unit of its tokenless quota).
pub(crate) fn recipient_check(
    (stored_token, queued, queued_bytes): (Option<&[u8]>, u64, u64),
    (token_hash, len): (Option<[u8; 32]>, usize),
    logged_in: bool,
    limits: &WriterLimits,
) -> Outcome<bool> {
    let mut tokenless = false;
    if let Some(stored) = stored_token {
        let matches = token_hash.is_some_and(|h| bool::from(h.as_slice().ct_eq(stored)));
        if !matches && !logged_in {
            return refuse(
                ErrorCode::DeliveryTokenRefused,
                "the recipient requires its delivery token",
            );
        }
        tokenless = !matches;
    }
    if queued >= u64::from(limits.queue_cap) {
        return refuse(
            ErrorCode::QueueFull,
            format!("the recipient's queue holds {queued} messages, the most allowed"),
        );
    }
    if queued_bytes.saturating_add(len as u64) > limits.mailbox_bytes {
        return refuse(
            ErrorCode::QueueFull,
            format!(
                "the recipient's queue holds {queued_bytes} bytes; {len} more would pass the most allowed"
            ),
        );
    }
    Ok(tokenless)
}

/// Limits the writer applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub(crate) queue_cap: u32,
    pub(crate) ttl_ms: u64,
    pub(crate) prekeys_low: u32,
    pub(crate) max_batch: usize,
    /// A cap on the database's size, in bytes (SQLite only).
    pub(crate) max_db_bytes: Option<u64>,
    /// The most envelope bytes one device's mailbox holds.
    pub(crate) mailbox_bytes: u64,
    /// The most bytes of commands the writer's queues hold together.
    pub(crate) queue_bytes: usize,
    /// How often a node of a shared database reads its online devices'
    /// mailboxes again.
    pub(crate) mailbox_recheck: std::time::Duration,
    /// `Config::unsafe_no_fsync_benchmarks_only`: SQLite commits are not
    /// synced.
    pub(crate) unsafe_no_fsync: bool,
    /// `Config::secure_delete`: SQLite zeroes what it deletes.
    pub(crate) secure_delete: bool,
}

#[cfg(test)]
impl WriterLimits {
    /// Limits for the writer's unit tests: wide enough that only what a
    /// test sets itself binds, with fsync on.
    pub(crate) const FOR_TESTS: WriterLimits = WriterLimits {
        queue_cap: 100_000,
        ttl_ms: 3_600_000,
        prekeys_low: 0,
        max_batch: 64,
        max_db_bytes: None,
        queue_bytes: 1 << 26,
        mailbox_bytes: 1 << 30,
        mailbox_recheck: std::time::Duration::from_secs(5),
        unsafe_no_fsync: false,
        secure_delete: false,
    };
}

/// The writer's queue.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    /// One queue per writer: one on SQLite, several on PostgreSQL, where
    /// a command goes to the writer of its user ([`Command::partition`]),
    /// so one user's commands run in the order they are queued.
    tx: Vec<mpsc::Sender<Queued>>,
    /// The bytes every queue may hold together ([`Command::queued_bytes`]):
    /// a command waits for its share before it is queued, and gives it
    /// back when the writer takes it.
    budget: Arc<Semaphore>,
    /// The budget's size, in permits (bytes).
    budget_bytes: u32,
}

impl Writer {
    /// A writer over `tx`, whose queues hold at most `budget_bytes` of
    /// commands together.
    pub(crate) fn new(tx: Vec<mpsc::Sender<Queued>>, budget_bytes: usize) -> Self {
        let budget_bytes = u32::try_from(budget_bytes.max(1)).unwrap_or(u32::MAX);
        Self {
            tx,
            budget: Arc::new(Semaphore::new(budget_bytes as usize)),
            budget_bytes,
        }
    }

    /// Queues a command built around a reply channel (commands run in the
    /// order they are queued) and returns the future of its answer, which
    /// comes after the command's batch committed.
    pub(crate) async fn queue<T: Send + 'static>(
        &self,
        build: impl FnOnce(oneshot::Sender<Outcome<T>>) -> Command,
    ) -> impl std::future::Future<Output = Outcome<T>> + Send + Sync + 'static {
        let (reply, rx) = oneshot::channel();
        let command = build(reply);
        let writer = match self.tx.len() {
            0 | 1 => 0,
            n => command.partition() % n,
        };
        // A command larger than the whole budget waits for all of it.
        let bytes = u32::try_from(command.queued_bytes())
            .unwrap_or(u32::MAX)
            .min(self.budget_bytes);
        let budget = Arc::clone(&self.budget)
            .acquire_many_owned(bytes)
            .await
            .ok();
        let queued = Queued {
            command,
            _budget: budget,
        };
        let sent = match self.tx.get(writer) {
            Some(tx) => tx.send(queued).await.is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return refuse(ErrorCode::ShuttingDown, "the relay is shutting down");
            }
            rx.await
                .unwrap_or_else(|_| refuse(ErrorCode::ShuttingDown, "the relay is shutting down"))
        }
    }

    /// Queues a command and waits for its answer.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(oneshot::Sender<Outcome<T>>) -> Command,
    ) -> Outcome<T> {
        self.queue(build).await.await
    }

    /// Deletes every message expired at `now_ms`, `chunk` at a time, each
    /// chunk a command of its own: one purge neither holds the writer for
    /// long nor, on SQLite, keeps more than a chunk's pages in its undo
    /// journal (which the writer holds in memory). Answers how many rows
    /// went (on SQLite, acknowledged ones the sweep had not reached yet
    /// included).
    pub(crate) async fn purge(&self, now_ms: u64, chunk: u32) -> Outcome<u64> {
        let chunk = chunk.max(1);
        let mut total = 0;
        loop {
            let n = self
                .call(|reply| Command::Purge {
                    now_ms,
                    limit: chunk,
                    reply,
                })
                .await?;
            total += n;
            if n < u64::from(chunk) {
                return Ok(total);
            }
        }
    }

    /// Asks the writer thread to stop after the commands queued before.
    pub(crate) async fn stop(&self) {
        for tx in &self.tx {
            let stop = Queued {
                command: Command::Stop,
                _budget: None,
            };
            let _ = tx.send(stop).await;
        }
    }
}

/// After-commit effects: wake recipients, warn owners of low prekeys, close
/// the connections of removed devices.
#[derive(Default)]
pub(crate) struct Effects {
    /// Recipients of mail not handed over: their connections read the
    /// store.
    pub(crate) mail: Vec<Address>,
    /// Messages to hand to their recipients' connections, in commit order.
    pub(crate) handed: Vec<(Address, StoredMessage)>,
    pub(crate) removed: Vec<Address>,
    pub(crate) low: Vec<(Address, PreKeyCounts)>,
    pub(crate) submitted: u64,
    pub(crate) acked: u64,
    pub(crate) expired: u64,
}

impl Effects {
    /// Adds another command's effects.
    pub(crate) fn merge(&mut self, other: Self) {
        self.mail.extend(other.mail);
        self.handed.extend(other.handed);
        self.removed.extend(other.removed);
        self.low.extend(other.low);
        self.submitted += other.submitted;
        self.acked += other.acked;
        self.expired += other.expired;
    }

    /// Closes removed devices' connections. Runs after the commit and
    /// before any answer goes out: a registration in the batch that takes a
    /// removed device's address (a recovered device) logs in only after its
    /// answer, so it is never taken for the removed one.
    pub(crate) fn close_removed(&self, online: &Online) {
        for address in &self.removed {
            online.device_removed(address);
        }
    }

    /// Hands committed messages to their recipients' connections, wakes
    /// the other recipients (once each, however many messages they got),
    /// offers push wake-ups to those offline, and warns the owners of low
    /// prekeys. Runs after the commit and the answers, so nothing is
    /// pushed before it is durable.
    pub(crate) fn wake(mut self, online: &Online) {
        let mut offline = Vec::new();
        for (address, message) in self.handed {
            if !online.hand_over(&address, message) {
                offline.push(address);
            }
        }
        offline.sort_unstable();
        offline.dedup();
        for address in &offline {
            online.offer_push(address);
        }
        self.mail.sort_unstable();
        self.mail.dedup();
        for address in &self.mail {
            if offline.binary_search(address).is_err() {
                online.wake_or_push(address);
            }
        }
        for (address, remaining) in self.low {
            online.prekeys_low(&address, remaining);
        }
    }
}

/// Starts the backend's writer. It ends when every [`Writer`] is dropped
/// or [`Writer::stop`] is called, after answering the commands queued.
pub(crate) async fn start_writer(
    database: &Database,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
) -> Result<(Writer, Stopped), StoreError> {
    match database {
        Database::Postgres(url) => {
            let (writer, task) = postgres::start_writer(url, limits, online, metrics).await?;
            Ok((writer, Stopped::Task(task)))
        }
        _ => {
            let (writer, thread) = sqlite::start_writer(database, limits, online, metrics)?;
            Ok((writer, Stopped::Thread(thread)))
        }
    }
}

/// The writer's thread or task, to wait for after [`Writer::stop`].
#[derive(Debug)]
pub(crate) enum Stopped {
    /// The SQLite writer thread.
    Thread(std::thread::JoinHandle<()>),
    /// The PostgreSQL writer task.
    Task(tokio::task::JoinHandle<()>),
}

impl Stopped {
    /// Waits for the writer to finish; false if it failed.
    pub(crate) async fn join(self) -> bool {
        match self {
            Self::Thread(thread) => matches!(
                tokio::task::spawn_blocking(move || thread.join()).await,
                Ok(Ok(()))
            ),
            Self::Task(task) => task.await.is_ok(),
        }
    }
}

/// The read side of the store.
#[derive(Debug, Clone)]
pub(crate) enum Readers {
    /// Read-only SQLite connections.
    Sqlite(sqlite::Readers),
    /// The PostgreSQL pool.
    Postgres(postgres::Readers),
}

impl Readers {
    /// Opens `count` readers of `database`.
    pub(crate) async fn open(database: &Database, count: usize) -> Result<Self, StoreError> {
        match database {
            Database::Postgres(url) => {
                Ok(Self::Postgres(postgres::Readers::open(url, count).await?))
            }
            _ => Ok(Self::Sqlite(sqlite::Readers::open(database, count)?)),
        }
    }

    /// The device, if it is registered and may log in.
    pub(crate) async fn device(&self, address: &Address) -> Outcome<Option<DeviceInfo>> {
        match self {
            Self::Sqlite(r) => r.device(address).await,
            Self::Postgres(r) => r.device(address).await,
        }
    }

    /// The user's current signed device list, as stored.
    pub(crate) async fn device_list(&self, user_id: &str) -> Outcome<Option<Vec<u8>>> {
        match self {
            Self::Sqlite(r) => r.device_list(user_id).await,
            Self::Postgres(r) => r.device_list(user_id).await,
        }
    }

    /// Up to `limit` unexpired messages of the device's mailbox after id
    /// `after`, in id order.
    pub(crate) async fn messages_after(
        &self,
        address: &Address,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Outcome<Vec<StoredMessage>> {
        match self {
            Self::Sqlite(r) => r.messages_after(address, after, now_ms, limit).await,
            Self::Postgres(r) => r.messages_after(address, after, now_ms, limit).await,
        }
    }

    /// The device's push endpoint, if it has one.
    pub(crate) async fn push_endpoint(&self, address: &Address) -> Outcome<Option<String>> {
        match self {
            Self::Sqlite(r) => r.push_endpoint(address).await,
            Self::Postgres(r) => r.push_endpoint(address).await,
        }
    }

    /// Queue statistics for the metrics endpoint.
    pub(crate) async fn stats(&self) -> Outcome<QueueStats> {
        match self {
            Self::Sqlite(r) => r.stats().await,
            Self::Postgres(r) => r.stats().await,
        }
    }
}

/// A registered device, as login needs it.
#[derive(Debug, Clone)]
pub(crate) struct DeviceInfo {
    pub(crate) identity_key: IdentityKey,
    pub(crate) one_time_prekeys: u32,
    pub(crate) has_signed_prekey: bool,
    pub(crate) one_time_kem_prekeys: u32,
    pub(crate) has_kem_prekey: bool,
}

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) id: u64,
    pub(crate) server_ms: u64,
    pub(crate) envelope: Vec<u8>,
    /// The envelope's kind as stored (0 sealed, 1 group).
    pub(crate) kind: u32,
}

/// Queue statistics for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueueStats {
    pub(crate) devices: u64,
    pub(crate) queued_messages: u64,
    pub(crate) max_queue_depth: u64,
    pub(crate) nonempty_queues: u64,
    pub(crate) one_time_prekeys: u64,
    pub(crate) one_time_kem_prekeys: u64,
}
