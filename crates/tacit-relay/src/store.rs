//! The relay's SQLite store: one writer thread that applies every change
//! and commits in batches (group commit), and a few read-only connections.
//!
//! Every change goes through [`Writer`]: a command is queued on a channel;
//! the writer thread takes every command waiting (up to a batch limit),
//! applies each inside its own savepoint (a refused or failed command
//! changes nothing), commits the batch with `synchronous=FULL` in WAL mode
//! (so the commit is on disk when it returns), and only then answers each
//! command. An answer of success therefore means durable.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use subtle::ConstantTimeEq;
use tacit::identity::DeviceList;
use tacit::wire::PreKeyBundleMessage;
use tacit::{Address, DeviceId, IdentityKey, PublicKey, Signature};
use tacit_relay_proto::{
    EnvelopeKind, ErrorCode, ErrorReply, OneTimePreKey, SharedPayloadBytes, UploadPreKeys,
    MAX_DEVICES_PER_USER,
};
use tokio::sync::{mpsc, oneshot};

use crate::group::{self, GroupCopy};
use crate::kem::{self, PreKeyCounts};
use crate::metrics::Metrics;
use crate::online::Online;

/// Schema migrations: entry `i` brings a database from version `i` (its
/// `PRAGMA user_version`) to `i + 1`. Databases made before versioning have
/// version 0; the first migration creates the tables they already have
/// (`IF NOT EXISTS`), so it applies to them and to a new file alike.
pub(crate) const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, kem::SCHEMA_V3, group::SCHEMA_V4];

/// Version 1: devices, prekeys and mailboxes.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS devices (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    identity_key BLOB NOT NULL,
    signed_prekey_id INTEGER,
    signed_prekey BLOB,
    signed_prekey_signature BLOB,
    fallback_prekey_id INTEGER,
    fallback_prekey BLOB,
    token_hash BLOB,
    queued INTEGER NOT NULL DEFAULT 0,
    expired_unreported INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (user_id, device_id, key_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    server_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_device ON messages (user_id, device_id, id);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_ms);
";

/// Version 2: users own their devices. A user id is bound to the user key
/// of the first device list registered for it; `device_list` is the current
/// signed list exactly as its signer encoded it, `list_version` its version
/// as 8 big-endian bytes (versions go up to 2^64 - 1, past SQLite's
/// integers). Device rows of a user id without a row here (made before
/// version 2) cannot log in: their devices register again with a list.
const SCHEMA_V2: &str = "
CREATE TABLE users (
    user_id TEXT NOT NULL PRIMARY KEY,
    user_key BLOB NOT NULL,
    list_version BLOB NOT NULL,
    device_list BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Brings the database to the latest schema, in one transaction; refuses a
/// database of a newer version.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let from = usize::try_from(version).unwrap_or(usize::MAX);
    let Some(pending) = MIGRATIONS.get(from..) else {
        return Err(StoreError(rusqlite::Error::InvalidParameterName(format!(
            "the database's schema version {version} is newer than this relay's {}",
            MIGRATIONS.len()
        ))));
    };
    for migration in pending {
        tx.execute_batch(migration)?;
    }
    if !pending.is_empty() {
        tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    }
    tx.commit()?;
    Ok(())
}

/// A store failure that is not a refusal: the database could not be opened
/// or used.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// The result of a command: a value, or a typed refusal.
pub(crate) type Outcome<T> = Result<T, ErrorReply>;

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Outcome<T> {
    Err(ErrorReply::new(code, message))
}

fn internal(error: &rusqlite::Error) -> ErrorReply {
    if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        tracing::warn!(%error, "storage full");
        return ErrorReply::new(
            ErrorCode::StorageFull,
            "the relay's storage is full; nothing was changed",
        );
    }
    tracing::error!(%error, "storage failure");
    ErrorReply::new(ErrorCode::Internal, "storage failure; nothing was changed")
}

/// Where the relay's database is.
#[derive(Debug, Clone)]
pub(crate) enum Database {
    /// A file, opened in WAL mode with `synchronous=FULL`.
    File(PathBuf),
    /// A database held in memory for the life of the process's connections
    /// to it, named by a `file:/NAME?vfs=memdb` URI: for fuzzing the
    /// request handling without a disk. Not durable.
    #[cfg(feature = "fuzzing")]
    Memory(String),
}

impl Database {
    /// Whether this is a file (durable, in WAL mode).
    fn is_file(&self) -> bool {
        match self {
            Self::File(_) => true,
            #[cfg(feature = "fuzzing")]
            Self::Memory(_) => false,
        }
    }
}

/// Opens the database (creating it and the schema): a file in WAL mode with
/// `synchronous=FULL`.
fn open(database: &Database, read_only: bool) -> Result<Connection, StoreError> {
    open_limited(database, read_only, None)
}

/// [`open`], and for a writer with `max_bytes`, a cap on the database's
/// size: past it, writes fail with `SQLITE_FULL` as on a full disk. A cap
/// below the current size holds the database at its current size.
fn open_limited(
    database: &Database,
    read_only: bool,
    max_bytes: Option<u64>,
) -> Result<Connection, StoreError> {
    let mut conn = match database {
        Database::File(path) => Connection::open(path)?,
        #[cfg(feature = "fuzzing")]
        Database::Memory(uri) => Connection::open(uri)?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        if database.is_file() {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError(rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode is {mode}, not wal"
                ))));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn)?;
        if let Some(max_bytes) = max_bytes {
            let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (max_bytes / page_size.max(1)).max(1);
            conn.pragma_update(None, "max_page_count", pages)?;
        }
    }
    Ok(conn)
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
    ClaimBundles {
        user_id: String,
        device_id: Option<DeviceId>,
        reply: oneshot::Sender<Outcome<Claimed>>,
    },
    Submit {
        recipient: Address,
        envelope: Vec<u8>,
        token_hash: Option<[u8; 32]>,
        authenticated: bool,
        now_ms: u64,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    /// Queues one group envelope per recipient, all or none; answers how
    /// many.
    SubmitGroup {
        shared: SharedPayloadBytes,
        copies: Vec<GroupCopy>,
        authenticated: bool,
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
    TakeExpired {
        address: Address,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    Purge {
        now_ms: u64,
        reply: oneshot::Sender<Outcome<u64>>,
    },
    /// Stop after this batch.
    Stop,
}

/// Claimed bundles: the user's signed device list and one bundle per
/// device with a signed prekey.
pub(crate) type Claimed = (Vec<u8>, Vec<(DeviceId, PreKeyBundleMessage)>);

/// Limits the writer applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub(crate) queue_cap: u32,
    pub(crate) ttl_ms: u64,
    pub(crate) prekeys_low: u32,
    pub(crate) max_batch: usize,
    /// A cap on the database's size, in bytes.
    pub(crate) max_db_bytes: Option<u64>,
}

/// The writer's queue.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Command>,
}

impl Writer {
    /// Queues a command built around a reply channel (commands run in the
    /// order they are queued) and returns the future of its answer, which
    /// comes after the command's batch committed.
    pub(crate) async fn queue<T: Send + 'static>(
        &self,
        build: impl FnOnce(oneshot::Sender<Outcome<T>>) -> Command,
    ) -> impl std::future::Future<Output = Outcome<T>> + Send + Sync + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(build(reply)).await.is_ok();
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

    /// Asks the writer thread to stop after the commands queued before.
    pub(crate) async fn stop(&self) {
        let _ = self.tx.send(Command::Stop).await;
    }
}

/// Starts the writer thread. It ends when every [`Writer`] is dropped,
/// after answering the commands queued.
pub(crate) fn start_writer(
    database: &Database,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
    let conn = open_limited(database, false, limits.max_db_bytes)?;
    let (tx, mut rx) = mpsc::channel::<Command>(4096);
    let handle = std::thread::Builder::new()
        .name("tacit-relay-writer".into())
        .spawn(move || {
            let mut conn = conn;
            let mut batch = Vec::with_capacity(limits.max_batch);
            let mut stop = false;
            while let Some(first) = rx.blocking_recv() {
                let mut next = Some(first);
                while let Some(command) = next.take() {
                    match command {
                        Command::Stop => stop = true,
                        command => batch.push(command),
                    }
                    if batch.len() < limits.max_batch {
                        next = rx.try_recv().ok();
                    }
                }
                run_batch(&mut conn, &mut batch, &limits, &online, &metrics);
                if stop {
                    break;
                }
            }
            if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(%error, "checkpoint at shutdown failed");
            }
            tracing::debug!("writer stopped");
        })
        .map_err(|e| StoreError(rusqlite::Error::InvalidParameterName(e.to_string())))?;
    Ok((Writer { tx }, handle))
}

/// An answer held until the batch commits.
enum Pending {
    Bool(oneshot::Sender<Outcome<bool>>, Outcome<bool>),
    U32(oneshot::Sender<Outcome<u32>>, Outcome<u32>),
    U64(oneshot::Sender<Outcome<u64>>, Outcome<u64>),
    Unit(oneshot::Sender<Outcome<()>>, Outcome<()>),
    Bundles(oneshot::Sender<Outcome<Claimed>>, Outcome<Claimed>),
    Counts(
        oneshot::Sender<Outcome<PreKeyCounts>>,
        Outcome<PreKeyCounts>,
    ),
    None,
}

impl Pending {
    fn fail(self, error: ErrorReply) {
        if let Self::None = self {
            return;
        }
        // A receiver that has gone away no longer needs the answer.
        let _ = match self {
            Self::Bool(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::U32(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::U64(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::Unit(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::Bundles(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::Counts(tx, _) => tx.send(Err(error)).map_err(drop),
            Self::None => Ok(()),
        };
    }

    /// The refusal this answer holds, if it is one.
    fn error(&self) -> Option<ErrorReply> {
        match self {
            Self::Bool(_, Err(e))
            | Self::U32(_, Err(e))
            | Self::U64(_, Err(e))
            | Self::Unit(_, Err(e))
            | Self::Bundles(_, Err(e))
            | Self::Counts(_, Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn send(self) {
        let _ = match self {
            Self::Bool(tx, v) => tx.send(v).map_err(drop),
            Self::U32(tx, v) => tx.send(v).map_err(drop),
            Self::U64(tx, v) => tx.send(v).map_err(drop),
            Self::Unit(tx, v) => tx.send(v).map_err(drop),
            Self::Bundles(tx, v) => tx.send(v).map_err(drop),
            Self::Counts(tx, v) => tx.send(v).map_err(drop),
            Self::None => Ok(()),
        };
    }
}

/// After-commit effects: wake recipients, warn owners of low prekeys, close
/// the connections of removed devices.
#[derive(Default)]
struct Effects {
    mail: Vec<Address>,
    removed: Vec<Address>,
    low: Vec<(Address, PreKeyCounts)>,
    submitted: u64,
    acked: u64,
    expired: u64,
}

fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Command>,
    limits: &WriterLimits,
    online: &Online,
    metrics: &Metrics,
) {
    let mut commands: VecDeque<Command> = batch.drain(..).collect();
    // Each transaction takes at least one command.
    while !commands.is_empty() {
        run_transaction(conn, &mut commands, limits, online, metrics);
    }
}

/// Applies commands from the front of `commands` in one transaction,
/// commits, then answers them.
///
/// SQLite may roll a whole transaction back on its own when a statement
/// fails with `SQLITE_FULL` or an I/O error. Then every change applied so
/// far in the transaction is gone: those commands are answered with the
/// failing command's error (they changed nothing), and the commands after
/// it are left in `commands` for a fresh transaction. Without this, they
/// would run outside any transaction, each committed on its own, and then
/// be answered as failed.
fn run_transaction(
    conn: &mut Connection,
    commands: &mut VecDeque<Command>,
    limits: &WriterLimits,
    online: &Online,
    metrics: &Metrics,
) {
    let mut pending: Vec<Pending> = Vec::with_capacity(commands.len());
    let mut effects = Effects::default();
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(error) => {
            let e = internal(&error);
            for command in commands.drain(..) {
                reply_of(command).fail(e.clone());
            }
            return;
        }
    };
    while let Some(command) = commands.pop_front() {
        let answer = apply(&mut tx, command, limits, &mut effects);
        if tx.is_autocommit() {
            let e = answer.error().unwrap_or_else(|| {
                ErrorReply::new(ErrorCode::Internal, "storage failure; nothing was changed")
            });
            tracing::warn!(error = %e, rolled_back = pending.len(), "the transaction was rolled back");
            for p in pending {
                p.fail(e.clone());
            }
            answer.fail(e);
            return;
        }
        pending.push(answer);
    }
    let size = pending.len();
    match tx.commit() {
        Ok(()) => {
            metrics.record_batch(size, effects.submitted, effects.acked, effects.expired);
            // Removed devices' connections are closed before any answer goes
            // out: a registration in this batch that takes a removed
            // device's address (a recovered device) logs in only after its
            // answer, so it is never taken for the removed one.
            for address in &effects.removed {
                online.device_removed(address);
            }
            for p in pending {
                p.send();
            }
            // One wake per recipient, however many messages it got.
            effects.mail.sort_unstable();
            effects.mail.dedup();
            for address in &effects.mail {
                online.wake(address);
            }
            for (address, remaining) in effects.low {
                online.prekeys_low(&address, remaining);
            }
        }
        Err(error) => {
            let e = internal(&error);
            for p in pending {
                p.fail(e.clone());
            }
        }
    }
}

/// The reply channel of a command that could not run.
fn reply_of(command: Command) -> Pending {
    fn e<T>() -> Outcome<T> {
        refuse(ErrorCode::Internal, "unreachable")
    }
    match command {
        Command::Register { reply, .. } => Pending::Bool(reply, e()),
        Command::UploadPreKeys { reply, .. } => Pending::Counts(reply, e()),
        Command::Ack { reply, .. } | Command::SubmitGroup { reply, .. } => Pending::U32(reply, e()),
        Command::PublishList { reply, .. } => Pending::U64(reply, e()),
        Command::ClaimBundles { reply, .. } => Pending::Bundles(reply, e()),
        Command::Submit { reply, .. }
        | Command::TakeExpired { reply, .. }
        | Command::Purge { reply, .. } => Pending::U64(reply, e()),
        Command::SetToken { reply, .. } => Pending::Unit(reply, e()),
        Command::Stop => Pending::None,
    }
}

/// Runs `f` in a savepoint, kept only if `f` succeeds.
fn savepoint<T>(
    tx: &mut Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<Outcome<T>, rusqlite::Error>,
) -> Outcome<T> {
    let sp = match tx.savepoint() {
        Ok(sp) => sp,
        Err(error) => return Err(internal(&error)),
    };
    match f(&sp) {
        Ok(Ok(value)) => match sp.commit() {
            Ok(()) => Ok(value),
            Err(error) => Err(internal(&error)),
        },
        // Dropping the savepoint rolls it back.
        Ok(Err(refusal)) => Err(refusal),
        Err(error) => Err(internal(&error)),
    }
}

fn apply(
    tx: &mut Transaction<'_>,
    command: Command,
    limits: &WriterLimits,
    effects: &mut Effects,
) -> Pending {
    match command {
        Command::Register {
            address,
            identity_key,
            device_list,
            list_bytes,
            now_ms,
            reply,
        } => {
            let mut removed = Vec::new();
            let result = savepoint(tx, |t| {
                if let Err(e) =
                    store_list(t, &device_list, &list_bytes, false, now_ms, &mut removed)?
                {
                    return Ok(Err(e));
                }
                register(t, &address, &identity_key, now_ms)
            });
            if result.is_ok() {
                effects.removed.extend(removed);
            }
            Pending::Bool(reply, result)
        }
        Command::PublishList {
            publisher,
            device_list,
            list_bytes,
            now_ms,
            reply,
        } => {
            let mut removed = Vec::new();
            let result = savepoint(tx, |t| {
                if !device_exists(t, &publisher)? {
                    return Ok(refuse(
                        ErrorCode::DeviceRemoved,
                        "the publishing device is no longer registered",
                    ));
                }
                Ok(
                    store_list(t, &device_list, &list_bytes, true, now_ms, &mut removed)?
                        .map(|()| device_list.version()),
                )
            });
            if result.is_ok() {
                effects.removed.extend(removed);
            }
            Pending::U64(reply, result)
        }
        Command::UploadPreKeys {
            address,
            upload,
            max_one_time,
            max_one_time_kem,
            reply,
        } => Pending::Counts(
            reply,
            savepoint(tx, |t| {
                upload_prekeys(t, &address, &upload, max_one_time, max_one_time_kem)
            }),
        ),
        Command::ClaimBundles {
            user_id,
            device_id,
            reply,
        } => {
            let mut low = Vec::new();
            let result = savepoint(tx, |t| {
                claim_bundles(t, &user_id, device_id, limits.prekeys_low, &mut low)
            });
            if result.is_ok() {
                effects.low.extend(low);
            }
            Pending::Bundles(reply, result)
        }
        Command::Submit {
            recipient,
            envelope,
            token_hash,
            authenticated,
            now_ms,
            reply,
        } => {
            let result = savepoint(tx, |t| {
                submit(
                    t,
                    &recipient,
                    (&envelope, EnvelopeKind::Sealed),
                    token_hash,
                    authenticated,
                    now_ms,
                    limits,
                )
            });
            if result.is_ok() {
                effects.submitted += 1;
                effects.mail.push(recipient);
            }
            Pending::U64(reply, result)
        }
        Command::SubmitGroup {
            shared,
            copies,
            authenticated,
            now_ms,
            reply,
        } => {
            let result = savepoint(tx, |t| {
                group::submit_group(t, &shared, &copies, authenticated, now_ms, limits)
            });
            if let Ok(n) = result {
                effects.submitted += u64::from(n);
                effects.mail.extend(copies.into_iter().map(|c| c.recipient));
            }
            Pending::U32(reply, result)
        }
        Command::Ack {
            address,
            ids,
            reply,
        } => {
            let result = savepoint(tx, |t| ack(t, &address, &ids));
            if let Ok(n) = result {
                effects.acked += u64::from(n);
            }
            Pending::U32(reply, result)
        }
        Command::SetToken {
            address,
            token_hash,
            reply,
        } => Pending::Unit(
            reply,
            savepoint(tx, |t| {
                let n = t.execute(
                    "UPDATE devices SET token_hash = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![
                        address.user_id(),
                        address.device_id(),
                        token_hash.map(|h| h.to_vec())
                    ],
                )?;
                Ok(if n == 1 {
                    Ok(())
                } else {
                    refuse(ErrorCode::UnknownDevice, "no such device")
                })
            }),
        ),
        Command::TakeExpired { address, reply } => Pending::U64(
            reply,
            savepoint(tx, |t| {
                let n: Option<u64> = t
                    .query_row(
                        "SELECT expired_unreported FROM devices WHERE user_id = ?1 AND device_id = ?2",
                        params![address.user_id(), address.device_id()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if n.unwrap_or(0) > 0 {
                    t.execute(
                        "UPDATE devices SET expired_unreported = 0 WHERE user_id = ?1 AND device_id = ?2",
                        params![address.user_id(), address.device_id()],
                    )?;
                }
                Ok(Ok(n.unwrap_or(0)))
            }),
        ),
        Command::Stop => Pending::None,
        Command::Purge { now_ms, reply } => {
            let result = savepoint(tx, |t| purge(t, now_ms));
            if let Ok(n) = result {
                effects.expired += n;
            }
            Pending::U64(reply, result)
        }
    }
}

fn device_exists(t: &Connection, address: &Address) -> Result<bool, rusqlite::Error> {
    Ok(
        t.prepare_cached("SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2")?
            .query_row(params![address.user_id(), address.device_id()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Checks a verified list against the user's row and stores it when it is
/// new to the relay: the first list of a user id binds it to the list's
/// user key; a later one must carry that key and a higher version (for a
/// registration, the stored version with the stored bytes is accepted and
/// changes nothing). Storing a list removes every registered device of the
/// user that is not on it with its identity key (`removed` gets them).
fn store_list(
    t: &Connection,
    list: &DeviceList,
    bytes: &[u8],
    publish: bool,
    now_ms: u64,
    removed: &mut Vec<Address>,
) -> Result<Outcome<()>, rusqlite::Error> {
    let user = list.user_id();
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = t
        .prepare_cached("SELECT user_key, list_version, device_list FROM users WHERE user_id = ?1")?
        .query_row(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let version = list.version().to_be_bytes().to_vec();
    match row {
        None if publish => {
            return Ok(refuse(
                ErrorCode::UnknownUser,
                "the user has no device list",
            ));
        }
        None => {
            t.prepare_cached(
                "INSERT INTO users (user_id, user_key, list_version, device_list, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![user, list.user_key().to_bytes().to_vec(), version, bytes, now_ms])?;
        }
        Some((key, stored_version, stored)) => {
            if key != list.user_key().to_bytes() {
                return Ok(refuse(
                    ErrorCode::UserKeyMismatch,
                    "the list is signed by another user key than the one this user id is bound to",
                ));
            }
            let Ok(stored_version) = <[u8; 8]>::try_from(stored_version.as_slice()) else {
                tracing::error!(user, "stored list version is corrupt");
                return Ok(refuse(ErrorCode::Internal, "stored list is corrupt"));
            };
            let stored_version = u64::from_be_bytes(stored_version);
            if list.version() <= stored_version {
                return Ok(if publish || list.version() < stored_version {
                    refuse(
                        ErrorCode::StaleDeviceList,
                        format!(
                            "list version {} is not newer than the stored version {stored_version}",
                            list.version()
                        ),
                    )
                } else if stored == bytes {
                    Ok(())
                } else {
                    refuse(
                        ErrorCode::InvalidDeviceList,
                        "another list with the stored version is stored",
                    )
                });
            }
            t.prepare_cached(
                "UPDATE users SET list_version = ?2, device_list = ?3, updated_ms = ?4 WHERE user_id = ?1",
            )?
            .execute(params![user, version, bytes, now_ms])?;
        }
    }
    let devices: Vec<(DeviceId, Vec<u8>)> = {
        let mut stmt =
            t.prepare_cached("SELECT device_id, identity_key FROM devices WHERE user_id = ?1")?;
        let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (device, key) in devices {
        let listed = IdentityKey::try_from_slice(&key).is_ok_and(|k| list.lists(device, &k));
        if listed {
            continue;
        }
        for sql in [
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
            "DELETE FROM messages WHERE user_id = ?1 AND device_id = ?2",
        ] {
            t.prepare_cached(sql)?.execute(params![user, device])?;
        }
        kem::delete_device(t, user, device)?;
        if let Ok(address) = Address::new(user, device) {
            tracing::info!(device = %address, "device removed by its user's list");
            removed.push(address);
        }
    }
    Ok(Ok(()))
}

fn register(
    t: &Connection,
    address: &Address,
    identity_key: &IdentityKey,
    now_ms: u64,
) -> Result<Outcome<bool>, rusqlite::Error> {
    let existing: Option<Vec<u8>> = t
        .prepare_cached("SELECT identity_key FROM devices WHERE user_id = ?1 AND device_id = ?2")?
        .query_row(params![address.user_id(), address.device_id()], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(key) = existing {
        return Ok(if key == identity_key.to_bytes() {
            Ok(false)
        } else {
            refuse(
                ErrorCode::AddressTaken,
                "the address is registered with another identity key",
            )
        });
    }
    let devices: usize = t
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE user_id = ?1")?
        .query_row(params![address.user_id()], |r| r.get(0))?;
    if devices >= MAX_DEVICES_PER_USER {
        return Ok(refuse(
            ErrorCode::TooManyDevices,
            "the user has the most devices allowed",
        ));
    }
    t.prepare_cached(
        "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        address.user_id(),
        address.device_id(),
        identity_key.to_bytes().to_vec(),
        now_ms
    ])?;
    Ok(Ok(true))
}

fn count_one_time(
    t: &Connection,
    user_id: &str,
    device_id: DeviceId,
) -> Result<u32, rusqlite::Error> {
    t.prepare_cached("SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2")?
        .query_row(params![user_id, device_id], |r| r.get(0))
}

fn upload_prekeys(
    t: &Connection,
    address: &Address,
    upload: &UploadPreKeys,
    max_one_time: u32,
    max_one_time_kem: u32,
) -> Result<Outcome<PreKeyCounts>, rusqlite::Error> {
    let (user, device) = (address.user_id(), address.device_id());
    if !device_exists(t, address)? {
        return Ok(refuse(
            ErrorCode::DeviceRemoved,
            "the device is no longer registered",
        ));
    }
    let stored = count_one_time(t, user, device)?;
    let adding = u32::try_from(upload.one_time_prekeys.len()).unwrap_or(u32::MAX);
    if stored.saturating_add(adding) > max_one_time {
        return Ok(refuse(
            ErrorCode::TooManyPreKeys,
            format!("{stored} one-time prekeys stored; at most {max_one_time} allowed"),
        ));
    }
    {
        let mut insert = t.prepare_cached(
            "INSERT OR IGNORE INTO one_time_prekeys (user_id, device_id, key_id, key) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for OneTimePreKey { id, key } in &upload.one_time_prekeys {
            if insert.execute(params![user, device, id, key.to_bytes().to_vec()])? == 0 {
                return Ok(refuse(
                    ErrorCode::InvalidPreKeys,
                    format!("one-time prekey id {id} is already stored"),
                ));
            }
        }
    }
    if let Some(k) = &upload.signed_prekey {
        t.prepare_cached(
            "UPDATE devices SET signed_prekey_id = ?3, signed_prekey = ?4, signed_prekey_signature = ?5 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![user, device, k.id, k.key.to_bytes().to_vec(), k.signature.to_bytes().to_vec()])?;
    }
    if let Some(k) = &upload.fallback_prekey {
        t.prepare_cached(
            "UPDATE devices SET fallback_prekey_id = ?3, fallback_prekey = ?4 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![user, device, k.id, k.key.to_bytes().to_vec()])?;
    }
    let one_time_kem = match kem::store_upload(t, user, device, upload, max_one_time_kem)? {
        Ok(n) => n,
        Err(refusal) => return Ok(Err(refusal)),
    };
    Ok(Ok(PreKeyCounts {
        one_time: stored + adding,
        one_time_kem,
    }))
}

/// A device row's prekey columns.
type DeviceKeys = (
    DeviceId,
    Vec<u8>,
    Option<u32>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<u32>,
    Option<Vec<u8>>,
);

fn claim_bundles(
    t: &Connection,
    user_id: &str,
    device_id: Option<DeviceId>,
    low_threshold: u32,
    low: &mut Vec<(Address, PreKeyCounts)>,
) -> Result<Outcome<Claimed>, rusqlite::Error> {
    // Every device row of a user with a list is on it (storing a list
    // removes the others), so the bundles below are of listed devices.
    let list: Option<Vec<u8>> = t
        .prepare_cached("SELECT device_list FROM users WHERE user_id = ?1")?
        .query_row(params![user_id], |r| r.get(0))
        .optional()?;
    let Some(list) = list else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    let rows: Vec<DeviceKeys> = {
        let mut stmt = t.prepare_cached(
            "SELECT device_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature, fallback_prekey_id, fallback_prekey
             FROM devices WHERE user_id = ?1 AND (?2 IS NULL OR device_id = ?2) ORDER BY device_id",
        )?;
        let rows = stmt.query_map(params![user_id, device_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    }
    let mut bundles = Vec::with_capacity(rows.len());
    for (device, ik, spk_id, spk, spk_sig, fb_id, fb) in rows {
        let (Some(spk_id), Some(spk), Some(spk_sig)) = (spk_id, spk, spk_sig) else {
            continue;
        };
        let (Ok(identity_key), Ok(signed_prekey), Ok(signature)) = (
            IdentityKey::try_from_slice(&ik),
            PublicKey::try_from_slice(&spk),
            Signature::try_from_slice(&spk_sig),
        ) else {
            tracing::error!(user_id, device, "stored keys are corrupt");
            continue;
        };
        let one_time: Option<(u32, Vec<u8>)> = t
            .prepare_cached(
                "SELECT key_id, key FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 ORDER BY key_id LIMIT 1",
            )?
            .query_row(params![user_id, device], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let ran_out = one_time.is_none();
        let (offered, remaining) = match one_time {
            Some((id, key)) => {
                t.prepare_cached(
                    "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                )?
                .execute(params![user_id, device, id])?;
                let remaining = count_one_time(t, user_id, device)?;
                (
                    PublicKey::try_from_slice(&key).ok().map(|k| (id, k)),
                    remaining,
                )
            }
            None => {
                let fallback = match (fb_id, fb) {
                    (Some(id), Some(key)) => PublicKey::try_from_slice(&key).ok().map(|k| (id, k)),
                    _ => None,
                };
                (fallback, 0)
            }
        };
        // The KEM prekey is claimed in the same savepoint as the one-time
        // prekey: both are handed out to this bundle alone, or neither.
        let kem_claim = kem::claim(t, user_id, device)?;
        let kem_low = kem_claim.prekey.is_some() && kem_claim.remaining < low_threshold;
        if ran_out || remaining < low_threshold || kem_low {
            if let Ok(address) = Address::new(user_id, device) {
                low.push((
                    address,
                    PreKeyCounts {
                        one_time: remaining,
                        one_time_kem: kem_claim.remaining,
                    },
                ));
            }
        }
        bundles.push((
            device,
            PreKeyBundleMessage {
                identity_key,
                signed_prekey_id: spk_id,
                signed_prekey,
                signed_prekey_signature: signature,
                one_time_prekey: offered,
                kem_prekey: kem_claim.prekey,
            },
        ));
    }
    if bundles.is_empty() {
        return Ok(refuse(
            ErrorCode::NoPreKeys,
            "no signed prekey has been uploaded",
        ));
    }
    Ok(Ok((list, bundles)))
}

/// Queues `envelope`, of its kind, for `recipient`, or refuses: no such
/// device, its delivery token is needed, its queue is full.
pub(crate) fn submit(
    t: &Connection,
    recipient: &Address,
    (envelope, kind): (&[u8], EnvelopeKind),
    token_hash: Option<[u8; 32]>,
    authenticated: bool,
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<Outcome<u64>, rusqlite::Error> {
    if let Err(refusal) = may_submit(t, recipient, token_hash, authenticated, limits)? {
        return Ok(Err(refusal));
    }
    insert_envelope(t, recipient, (envelope, kind), now_ms, limits).map(Ok)
}

/// The checks of `Submit`, in order, without writing anything: the device
/// exists, its delivery token is presented unless `authenticated`, its
/// queue is below the cap.
pub(crate) fn may_submit(
    t: &Connection,
    recipient: &Address,
    token_hash: Option<[u8; 32]>,
    authenticated: bool,
    limits: &WriterLimits,
) -> Result<Outcome<()>, rusqlite::Error> {
    let (user, device) = (recipient.user_id(), recipient.device_id());
    let row: Option<(Option<Vec<u8>>, u32)> = t
        .prepare_cached(
            "SELECT token_hash, queued FROM devices WHERE user_id = ?1 AND device_id = ?2",
        )?
        .query_row(params![user, device], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((stored_token, queued)) = row else {
        return Ok(refuse(ErrorCode::UnknownDevice, "no such device"));
    };
    if let (Some(stored), false) = (stored_token, authenticated) {
        let matches = token_hash.is_some_and(|h| bool::from(h.as_slice().ct_eq(stored.as_slice())));
        if !matches {
            return Ok(refuse(
                ErrorCode::DeliveryTokenRefused,
                "the recipient requires its delivery token",
            ));
        }
    }
    if queued >= limits.queue_cap {
        return Ok(refuse(
            ErrorCode::QueueFull,
            format!("the recipient's queue holds {queued} messages, the most allowed"),
        ));
    }
    Ok(Ok(()))
}

/// Queues `envelope` for `recipient`, which [`may_submit`] accepted;
/// answers the message id.
pub(crate) fn insert_envelope(
    t: &Connection,
    recipient: &Address,
    (envelope, kind): (&[u8], EnvelopeKind),
    now_ms: u64,
    limits: &WriterLimits,
) -> Result<u64, rusqlite::Error> {
    let (user, device) = (recipient.user_id(), recipient.device_id());
    t.prepare_cached(
        "INSERT INTO messages (user_id, device_id, server_ms, expires_ms, envelope, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![user, device, now_ms, now_ms.saturating_add(limits.ttl_ms), envelope, kind.as_u32()])?;
    let id = t.last_insert_rowid();
    t.prepare_cached(
        "UPDATE devices SET queued = queued + 1 WHERE user_id = ?1 AND device_id = ?2",
    )?
    .execute(params![user, device])?;
    Ok(u64::try_from(id).unwrap_or(0))
}

fn ack(t: &Connection, address: &Address, ids: &[u64]) -> Result<Outcome<u32>, rusqlite::Error> {
    let (user, device) = (address.user_id(), address.device_id());
    let mut removed = 0u32;
    {
        let mut delete = t.prepare_cached(
            "DELETE FROM messages WHERE id = ?1 AND user_id = ?2 AND device_id = ?3",
        )?;
        for &id in ids {
            let Ok(id) = i64::try_from(id) else {
                return Ok(refuse(
                    ErrorCode::UnknownMessage,
                    format!("message {id} is not in this mailbox"),
                ));
            };
            if delete.execute(params![id, user, device])? == 0 {
                return Ok(refuse(
                    ErrorCode::UnknownMessage,
                    format!("message {id} is not in this mailbox; nothing was deleted"),
                ));
            }
            removed += 1;
        }
    }
    t.prepare_cached(
        "UPDATE devices SET queued = queued - ?3 WHERE user_id = ?1 AND device_id = ?2",
    )?
    .execute(params![user, device, removed])?;
    Ok(Ok(removed))
}

fn purge(t: &Connection, now_ms: u64) -> Result<Outcome<u64>, rusqlite::Error> {
    let groups: Vec<(String, u32, u64)> = {
        let mut stmt = t.prepare_cached(
            "SELECT user_id, device_id, COUNT(*) FROM messages WHERE expires_ms <= ?1 GROUP BY user_id, device_id",
        )?;
        let rows = stmt.query_map(params![now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut total = 0;
    for (user, device, n) in groups {
        t.prepare_cached(
            "UPDATE devices SET queued = queued - ?3, expired_unreported = expired_unreported + ?3 WHERE user_id = ?1 AND device_id = ?2",
        )?
        .execute(params![user, device, n])?;
        total += n;
    }
    t.prepare_cached("DELETE FROM messages WHERE expires_ms <= ?1")?
        .execute(params![now_ms])?;
    Ok(Ok(total))
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

/// Read-only connections, used from blocking tasks.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: Arc<AtomicUsize>,
}

impl Readers {
    pub(crate) fn open(database: &Database, count: usize) -> Result<Self, StoreError> {
        let conns = (0..count.max(1))
            .map(|_| open(database, true).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Outcome<T> {
        let conns = Arc::clone(&self.conns);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
        let result = tokio::task::spawn_blocking(move || {
            let conn = conns[i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(error)) => Err(internal(&error)),
            Err(_) => refuse(ErrorCode::Internal, "reader task failed"),
        }
    }

    pub(crate) async fn device(&self, address: &Address) -> Outcome<Option<DeviceInfo>> {
        let (user, device) = (address.user_id().to_owned(), address.device_id());
        self.with(move |c| {
            let row: Option<(Vec<u8>, bool)> = c
                .prepare_cached(
                    // A device of a user without a list (registered before
                    // users owned their devices) cannot log in.
                    "SELECT identity_key, signed_prekey IS NOT NULL FROM devices
                     WHERE user_id = ?1 AND device_id = ?2
                     AND EXISTS (SELECT 1 FROM users WHERE users.user_id = devices.user_id)",
                )?
                .query_row(params![user, device], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((ik, has_signed_prekey)) = row else {
                return Ok(None);
            };
            let one_time_prekeys = count_one_time(c, &user, device)?;
            let one_time_kem_prekeys = kem::count_one_time(c, &user, device)?;
            let has_kem_prekey = kem::has_last_resort(c, &user, device)?;
            Ok(IdentityKey::try_from_slice(&ik)
                .ok()
                .map(|identity_key| DeviceInfo {
                    identity_key,
                    one_time_prekeys,
                    has_signed_prekey,
                    one_time_kem_prekeys,
                    has_kem_prekey,
                }))
        })
        .await
    }

    /// The user's current signed device list, as stored.
    pub(crate) async fn device_list(&self, user_id: &str) -> Outcome<Option<Vec<u8>>> {
        let user = user_id.to_owned();
        self.with(move |c| {
            c.prepare_cached("SELECT device_list FROM users WHERE user_id = ?1")?
                .query_row(params![user], |r| r.get(0))
                .optional()
        })
        .await
    }

    pub(crate) async fn messages_after(
        &self,
        address: &Address,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Outcome<Vec<StoredMessage>> {
        let (user, device) = (address.user_id().to_owned(), address.device_id());
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, server_ms, envelope, kind FROM messages
                 WHERE user_id = ?1 AND device_id = ?2 AND id > ?3 AND expires_ms > ?4
                 ORDER BY id LIMIT ?5",
            )?;
            let rows = stmt.query_map(params![user, device, after, now_ms, limit], |r| {
                Ok(StoredMessage {
                    id: r.get(0)?,
                    server_ms: r.get(1)?,
                    envelope: r.get(2)?,
                    kind: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn stats(&self) -> Outcome<QueueStats> {
        self.with(|c| {
            let (devices, queued, max, nonempty): (u64, Option<u64>, Option<u64>, u64) = c.query_row(
                "SELECT COUNT(*), SUM(queued), MAX(queued), COUNT(CASE WHEN queued > 0 THEN 1 END) FROM devices",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let one_time_prekeys: u64 =
                c.query_row("SELECT COUNT(*) FROM one_time_prekeys", [], |r| r.get(0))?;
            let one_time_kem_prekeys: u64 =
                c.query_row("SELECT COUNT(*) FROM one_time_kem_prekeys", [], |r| r.get(0))?;
            Ok(QueueStats {
                devices,
                queued_messages: queued.unwrap_or(0),
                max_queue_depth: max.unwrap_or(0),
                nonempty_queues: nonempty,
                one_time_prekeys,
                one_time_kem_prekeys,
            })
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tacit-relay-store-{name}-{}-{}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("relay.db")
    }

    fn limits(max_db_bytes: Option<u64>) -> WriterLimits {
        WriterLimits {
            queue_cap: 100_000,
            ttl_ms: 3_600_000,
            prekeys_low: 0,
            max_batch: 64,
            max_db_bytes,
        }
    }

    /// Registers `address` with a one-device list of its own.
    fn register_command(
        address: &Address,
        identity_key: IdentityKey,
        reply: oneshot::Sender<Outcome<bool>>,
    ) -> Command {
        let user = tacit::identity::UserKeyPair::from_seed(&[0x11; 32]);
        let list = DeviceList::sign(
            &user,
            address.user_id(),
            1,
            &[(address.device_id(), identity_key, 0)],
        )
        .unwrap();
        Command::Register {
            address: address.clone(),
            identity_key,
            list_bytes: list.to_wire(),
            device_list: Box::new(list),
            now_ms: crate::now_ms(),
            reply,
        }
    }

    #[test]
    fn an_old_database_is_migrated_and_its_devices_cannot_log_in() {
        let path = temp_db("migrate");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.execute(
                "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ('bob', 1, ?1, 0)",
                params![tacit::IdentityKeyPair::from_seed(&[3; 32]).public_key().to_bytes().to_vec()],
            )
            .unwrap();
        }
        let database = Database::File(path.clone());
        drop(open(&database, false).unwrap());
        // Opening again changes nothing.
        let c = open(&database, false).unwrap();
        let version: usize = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let users: u64 = c
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 0);
        drop(c);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let readers = Readers::open(&database, 1).unwrap();
        let bob = Address::new("bob", 1).unwrap();
        assert!(runtime.block_on(readers.device(&bob)).unwrap().is_none());
        // A newer schema is refused.
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        drop(c);
        assert!(open(&database, false).is_err());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    async fn submit(writer: &Writer, to: &Address, envelope: Vec<u8>) -> Outcome<u64> {
        let recipient = to.clone();
        writer
            .call(|reply| Command::Submit {
                recipient,
                envelope,
                token_hash: None,
                authenticated: true,
                now_ms: crate::now_ms(),
                reply,
            })
            .await
    }

    /// (messages stored, the device's `queued` counter).
    fn counts(path: &std::path::Path) -> (u64, u64) {
        let c = open(&Database::File(path.to_path_buf()), true).unwrap();
        let stored = c
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        let queued = c
            .query_row("SELECT SUM(queued) FROM devices", [], |r| r.get(0))
            .unwrap();
        (stored, queued)
    }

    #[tokio::test]
    async fn a_full_database_refuses_with_storage_full_and_changes_nothing() {
        let path = temp_db("full");
        let (writer, thread) = start_writer(
            &Database::File(path.clone()),
            limits(Some(96 * 1024)),
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
        let bob = Address::new("bob", 1).unwrap();
        let identity = tacit::IdentityKeyPair::from_seed(&[3; 32]).public_key();
        let address = bob.clone();
        writer
            .call(|reply| register_command(&address, identity, reply))
            .await
            .unwrap();
        let mut ids = Vec::new();
        let refusal = loop {
            assert!(ids.len() < 1000, "the cap never bit");
            match submit(&writer, &bob, vec![ids.len() as u8; 3000]).await {
                Ok(id) => ids.push(id),
                Err(e) => break e,
            }
        };
        assert_eq!(refusal.code, ErrorCode::StorageFull, "{refusal}");
        assert!(refusal.message.contains("full"), "{refusal}");
        assert!(ids.len() >= 5, "only {} messages fit", ids.len());
        // The refused submission left no row and no count behind.
        let stored = ids.len() as u64;
        assert_eq!(counts(&path), (stored, stored));
        // Acks still work while full, and free room for new messages.
        let (address, acked) = (bob.clone(), ids[..ids.len() / 2].to_vec());
        let removed = writer
            .call(|reply| Command::Ack {
                address,
                ids: acked,
                reply,
            })
            .await
            .unwrap();
        assert_eq!(u64::from(removed), stored / 2);
        assert!(submit(&writer, &bob, vec![0xee; 3000]).await.is_ok());
        assert_eq!(
            counts(&path),
            (stored - stored / 2 + 1, stored - stored / 2 + 1)
        );
        writer.stop().await;
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Runs one batch on `conn` and returns the answers, in order.
    fn batch(
        conn: &mut Connection,
        commands: Vec<(Command, oneshot::Receiver<Outcome<u64>>)>,
    ) -> Vec<Outcome<u64>> {
        let (mut commands, receivers): (Vec<_>, Vec<_>) = commands.into_iter().unzip();
        run_batch(
            conn,
            &mut commands,
            &limits(None),
            &Online::default(),
            &Metrics::default(),
        );
        receivers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect()
    }

    fn submit_command(
        to: &Address,
        envelope: Vec<u8>,
    ) -> (Command, oneshot::Receiver<Outcome<u64>>) {
        let (reply, rx) = oneshot::channel();
        let command = Command::Submit {
            recipient: to.clone(),
            envelope,
            token_hash: None,
            authenticated: true,
            now_ms: crate::now_ms(),
            reply,
        };
        (command, rx)
    }

    fn stored(conn: &Connection, envelope: &[u8]) -> bool {
        conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE envelope = ?1",
            params![envelope],
            |r| r.get::<_, u64>(0),
        )
        .unwrap()
            > 0
    }

    #[test]
    fn a_batch_that_sqlite_rolls_back_answers_each_command_truthfully() {
        let path = temp_db("rollback");
        let mut conn = open_limited(&Database::File(path.clone()), false, Some(64 * 1024)).unwrap();
        let bob = Address::new("bob", 1).unwrap();
        let identity = tacit::IdentityKeyPair::from_seed(&[3; 32]).public_key();
        let (reply, mut rx) = oneshot::channel();
        run_batch(
            &mut conn,
            &mut vec![register_command(&bob, identity, reply)],
            &limits(None),
            &Online::default(),
            &Metrics::default(),
        );
        assert_eq!(rx.try_recv().unwrap(), Ok(true));
        // One batch: a message that fits, one far too large for the cap,
        // then small ones. SQLite rolls the whole transaction back at the
        // large one.
        let first = vec![1u8; 2000];
        let huge = vec![2u8; 200_000];
        let small: Vec<Vec<u8>> = (0..3u8).map(|i| vec![3 + i; 100]).collect();
        let mut commands = vec![
            submit_command(&bob, first.clone()),
            submit_command(&bob, huge.clone()),
        ];
        commands.extend(small.iter().map(|e| submit_command(&bob, e.clone())));
        let answers = batch(&mut conn, commands);
        // Every answer tells the truth: success means stored, a refusal
        // means nothing was stored.
        let envelopes = [&first, &huge, &small[0], &small[1], &small[2]];
        for (answer, envelope) in answers.iter().zip(envelopes) {
            assert_eq!(answer.is_ok(), stored(&conn, envelope), "{answer:?}");
        }
        assert_eq!(
            answers[1].as_ref().unwrap_err().code,
            ErrorCode::StorageFull
        );
        assert!(!stored(&conn, &huge));
        // The commands after the rolled-back one ran in a new transaction.
        assert!(answers[2..].iter().all(Result::is_ok), "{answers:?}");
        let queued: u64 = conn
            .query_row("SELECT queued FROM devices", [], |r| r.get(0))
            .unwrap();
        let count: u64 = conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, count);
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn only_a_full_disk_maps_to_storage_full() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert_eq!(internal(&full).code, ErrorCode::StorageFull);
        let io = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            None,
        );
        assert_eq!(internal(&io).code, ErrorCode::Internal);
    }
}
