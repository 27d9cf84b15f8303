//! The SQLite backend: one writer thread that applies every change and
//! commits in batches (group commit), and a few read-only connections.
//!
//! The writer thread takes every command waiting (up to a batch limit),
//! applies each inside its own savepoint (a refused or failed command
//! changes nothing; a `Submit`, which writes with one statement after all
//! its checks, needs none), commits the batch with `synchronous=FULL` in
//! WAL mode (so the commit is on disk when it returns), and only then
//! answers each command. An answer of success therefore means durable.

#[cfg(test)]
mod ack_tests;
mod apply;
mod checkpoint;
mod held;
#[cfg(test)]
mod held_tests;
mod ids;
#[cfg(test)]
mod ids_tests;
#[cfg(test)]
mod mailbox_tests;
mod mailboxes;
#[cfg(test)]
mod purge_tests;
#[cfg(test)]
mod read_tests;
mod readers;
mod sweep;
#[cfg(test)]
mod sweep_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod undo_tests;

use std::collections::VecDeque;
use std::sync::Arc;

use rusqlite::{Connection, Transaction};
use tacit_relay_proto::{ErrorCode, ErrorReply};
use tokio::sync::oneshot;

use super::{
    refuse, Claimed, Command, Database, Effects, Outcome, StoreError, Writer, WriterLimits,
};
use crate::group;
use crate::kem::{self, PreKeyCounts};
use crate::metrics::Metrics;
use crate::online::Online;

use apply::apply;
pub(crate) use apply::{insert_envelope, may_submit};
use held::HeldMailboxes;
pub(crate) use ids::MessageIds;
pub(crate) use readers::Readers;
use sweep::{Advance, Sweep};

/// Schema migrations: entry `i` brings a database from version `i` (its
/// `PRAGMA user_version`) to `i + 1`. Databases made before versioning have
/// version 0; the first migration creates the tables they already have
/// (`IF NOT EXISTS`), so it applies to them and to a new file alike.
pub(crate) const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    SCHEMA_V2,
    kem::SCHEMA_V3,
    group::SCHEMA_V4,
    crate::push::SCHEMA_SQLITE,
    SCHEMA_MAILBOX_BYTES,
    crate::attachments::sqlite::SCHEMA,
    mailboxes::SCHEMA_MAILBOXES,
    mailboxes::SCHEMA_COUNT_IN_CODE,
    ids::SCHEMA_IDS_IN_CODE,
    sweep::SCHEMA_ACKED_PREFIX,
];

/// A device counts the envelope bytes its mailbox holds, beside the
/// messages (`queued`), for the per-mailbox byte cap; the count starts
/// from the messages already stored.
const SCHEMA_MAILBOX_BYTES: &str = "
ALTER TABLE devices ADD COLUMN queued_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET queued_bytes = (
    SELECT COALESCE(SUM(length(envelope)), 0) FROM messages m
    WHERE m.user_id = devices.user_id AND m.device_id = devices.device_id
);
";

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
        return Err(StoreError::msg(format!(
            "the database's schema version {version} is newer than this relay's {}",
            MIGRATIONS.len()
        )));
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

pub(crate) fn internal(error: &rusqlite::Error) -> ErrorReply {
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

/// Opens the database (creating it and the schema): a file in WAL mode with
/// `synchronous=FULL`.
fn open(database: &Database, read_only: bool) -> Result<Connection, StoreError> {
    open_limited(database, read_only, None, false)
}

/// [`open`], and for a writer with `max_bytes`, a cap on the database's
/// size: past it, writes fail with `SQLITE_FULL` as on a full disk. A cap
/// below the current size holds the database at its current size. With
/// `secure_delete`, a writer zeroes what it deletes
/// ([`set_secure_delete`]) from before the migrations, which copy tables
/// and drop the old ones.
pub(crate) fn open_limited(
    database: &Database,
    read_only: bool,
    max_bytes: Option<u64>,
    secure_delete: bool,
) -> Result<Connection, StoreError> {
    let mut conn = match database {
        Database::Sqlite(path) => Connection::open(path)?,
        #[cfg(feature = "fuzzing")]
        Database::Memory(uri) => Connection::open(uri)?,
        Database::Postgres(_) => return Err(StoreError::msg("not a SQLite database")),
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    } else {
        if matches!(database, Database::Sqlite(_)) {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::msg(format!("journal_mode is {mode}, not wal")));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Every statement the writer runs stays prepared.
        conn.set_prepared_statement_cache_capacity(128);
        set_secure_delete(&conn, secure_delete)?;
        migrate(&mut conn)?;
        if let Some(max_bytes) = max_bytes {
            let page_size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (max_bytes / page_size.max(1)).max(1);
            conn.pragma_update(None, "max_page_count", pages)?;
        }
    }
    Ok(conn)
}

/// With `on`, `conn` overwrites with zeros what it deletes
/// (`secure_delete=ON`: the cells it removes and the pages it frees), as
/// `Config::secure_delete` asks of every connection that deletes.
fn set_secure_delete(conn: &Connection, on: bool) -> Result<(), rusqlite::Error> {
    if on {
        conn.pragma_update(None, "secure_delete", "ON")?;
    }
    Ok(())
}

/// The writer's connection: `synchronous=FULL` (from [`open_limited`]),
/// or `OFF` with the benchmark-only `unsafe_no_fsync`, its undo journals
/// in memory (`temp_store=MEMORY`), and `secure_delete=ON` if asked
/// (from [`open_limited`]).
///
/// SQLite keeps, for each savepoint and each statement that writes several
/// rows and may fail halfway, the pages it changes as they were before,
/// in a journal that spills to a temporary file past 64 KiB. One
/// ack of a few dozen ids spilled it, and then every later statement of
/// the transaction wrote its pages to that file: ten writes to it for
/// each one to the log, about a quarter of the relay's CPU at full load.
/// In memory, a journal holds the pages of one command at most, which
/// the commands bound: an ack by its ids, a purge by
/// [`crate::Config::purge_chunk`], a device's removal by its mailbox's
/// caps.
fn open_writer(database: &Database, limits: &WriterLimits) -> Result<Connection, StoreError> {
    let conn = open_limited(database, false, limits.max_db_bytes, limits.secure_delete)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if limits.unsafe_no_fsync {
        tracing::warn!(
            "--unsafe-no-fsync: commits are not synced; acknowledged messages are lost on power loss (benchmarks only)"
        );
        conn.pragma_update(None, "synchronous", "OFF")?;
    }
    Ok(conn)
}

/// Starts the writer thread. It ends when every [`Writer`] is dropped,
/// after answering the commands queued.
pub(crate) fn start_writer(
    database: &Database,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
    let conn = open_writer(database, &limits)?;
    let checkpointer = match database {
        Database::Sqlite(_) => {
            checkpoint::set_up_writer(&conn)?;
            Some(checkpoint::Checkpointer::start(
                database,
                limits.unsafe_no_fsync,
            )?)
        }
        _ => None,
    };
    let sweep = Sweep::load(&conn)?;
    let (tx, rx) = super::queue();
    let thread = WriterThread {
        conn,
        limits,
        online,
        metrics,
        checkpointer,
        sweep,
        storage_full: false,
        sweep_failed: false,
    };
    let handle = std::thread::Builder::new()
        .name("tacit-relay-writer".into())
        .spawn(move || thread.run(rx))
        .map_err(|e| StoreError::msg(e.to_string()))?;
    Ok((Writer::new(vec![tx], limits.queue_bytes), handle))
}

/// Estimated bytes of log a swept row costs (its share of a table page
/// and of index pages), counted towards the next checkpoint as commands'
/// bytes are.
const SWEPT_ROW_BYTES: u64 = 512;

/// Windows a writer sweeps at most between two batches once the rows to
/// sweep are due ([`Sweep::due`]).
const SWEEP_WINDOWS_PER_BATCH: usize = 16;

/// The writer thread: its connection and what it keeps between batches.
struct WriterThread {
    conn: Connection,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
    checkpointer: Option<checkpoint::Checkpointer>,
    sweep: Sweep,
    /// The last batch found the storage full.
    storage_full: bool,
    /// A sweep failed since the last batch: no sweep until the next one.
    sweep_failed: bool,
}

impl WriterThread {
    /// Runs batches until every sender is dropped or a `Stop` comes, then
    /// sweeps what is left and checkpoints the log.
    fn run(mut self, mut rx: super::Receiver) {
        // Only to wait for a command with a deadline (an idle writer with
        // a few rows to sweep); without it, an idle writer sweeps at once.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .inspect_err(|error| tracing::warn!(%error, "no timer for the writer"))
            .ok();
        let mut batch = Vec::with_capacity(self.limits.max_batch);
        let mut stop = false;
        while let Some(first) = self.next_command(&mut rx, waiter.as_ref()) {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Stop => stop = true,
                    command => batch.push(command),
                }
                if batch.len() < self.limits.max_batch {
                    next = rx.try_recv();
                }
            }
            if let Some(checkpointer) = &self.checkpointer {
                let bytes: usize = batch.iter().map(Command::queued_bytes).sum();
                checkpointer.wrote(bytes as u64);
            }
            self.run_commands(&mut batch);
            rx.release();
            if stop {
                break;
            }
            self.sweep_due();
        }
        self.sweep_failed = false;
        self.sweep_all();
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        if let Err(error) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!(%error, "checkpoint at shutdown failed");
        }
        tracing::debug!("writer stopped");
    }

    /// The next command, sweeping while none comes: at once if enough
    /// rows wait ([`Sweep::due_when_idle`]), else after
    /// [`sweep::SWEEP_IDLE_DELAY`] without a command, so that a writer
    /// under a light load sweeps many acks at a time, not each batch's.
    /// `None` once every sender is dropped.
    fn next_command(
        &mut self,
        rx: &mut super::Receiver,
        waiter: Option<&tokio::runtime::Runtime>,
    ) -> Option<Command> {
        let mut waited = false;
        loop {
            if let Some(command) = rx.try_recv() {
                return Some(command);
            }
            if !self.sweep.pending() || self.sweep_failed {
                return rx.blocking_recv();
            }
            if let Some(waiter) = waiter.filter(|_| !waited && !self.sweep.due_when_idle()) {
                // The timer is made inside the runtime, which drives it.
                let wait = async { tokio::time::timeout(sweep::SWEEP_IDLE_DELAY, rx.recv()).await };
                if let Ok(command) = waiter.block_on(wait) {
                    return command;
                }
                waited = true;
                continue;
            }
            self.sweep_once();
        }
    }

    /// Runs one batch ([`run_batch`]), after sweeping everything if the
    /// last batch found the storage full.
    fn run_commands(&mut self, batch: &mut Vec<Command>) {
        // After a batch that found the storage full, everything
        // acknowledged is swept before the next one, and its acks delete
        // at once: the room acks free goes to the next submissions, and
        // an ack writes nothing that could need a new page.
        if self.storage_full {
            self.sweep_all();
        }
        // A sweep that could not put `synchronous` back leaves commits
        // unsynced: nothing runs until it is back.
        if let Err(error) = self.sweep.restore_synchronous(&self.conn) {
            let e = internal(&error);
            for command in batch.drain(..) {
                reply_of(command).fail(e.clone());
            }
            return;
        }
        let after = run_batch(
            &mut self.conn,
            batch,
            &self.limits,
            &self.online,
            &self.metrics,
            self.storage_full,
        );
        for advance in after.advanced {
            self.sweep.note(advance);
        }
        self.storage_full = after.storage_full;
        self.sweep_failed = false;
    }

    /// Between batches, once many rows wait ([`Sweep::due`]), sweeps up
    /// to [`SWEEP_WINDOWS_PER_BATCH`] windows, commands waiting or not:
    /// a writer that is never idle sweeps too.
    fn sweep_due(&mut self) {
        let mut windows = 0;
        while self.sweep.due() && !self.sweep_failed && windows < SWEEP_WINDOWS_PER_BATCH {
            self.sweep_once();
            windows += 1;
        }
    }

    /// Sweeps until nothing is left or a sweep fails.
    fn sweep_all(&mut self) {
        while self.sweep.pending() && !self.sweep_failed {
            self.sweep_once();
        }
    }

    /// Sweeps one window ([`Sweep::run`]); a failure stops the sweeps
    /// until the next batch.
    fn sweep_once(&mut self) {
        match self.sweep.run(&mut self.conn) {
            Ok(deleted) => {
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.wrote(deleted.saturating_mul(SWEPT_ROW_BYTES));
                }
                tracing::trace!(deleted, waiting = self.sweep.waiting(), "swept");
            }
            Err(error) => {
                self.sweep_failed = true;
                tracing::warn!(%error, "sweep failed");
            }
        }
    }
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

/// What a batch leaves the writer to do after it.
#[derive(Debug, Default)]
struct AfterBatch {
    /// The acknowledged prefixes that moved in transactions that
    /// committed, for the sweep.
    advanced: Vec<Advance>,
    /// Whether a command was answered `StorageFull`: the writer then
    /// sweeps everything before the next batch, whose acks delete at once.
    storage_full: bool,
}

/// Runs `batch` in as many transactions as it takes; with
/// `storage_full` (the batch before found the storage full), its acks
/// delete at once rather than move acknowledged prefixes.
fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Command>,
    limits: &WriterLimits,
    online: &Online,
    metrics: &Metrics,
    storage_full: bool,
) -> AfterBatch {
    let mut commands: VecDeque<Command> = batch.drain(..).collect();
    let mut after = AfterBatch::default();
    // Each transaction takes at least one command.
    while !commands.is_empty() {
        run_transaction(
            conn,
            &mut commands,
            limits,
            online,
            metrics,
            storage_full,
            &mut after,
        );
    }
    after
}

/// Whether `error` says the storage is full.
fn is_full(error: &ErrorReply) -> bool {
    error.code == ErrorCode::StorageFull
}

/// Applies commands from the front of `commands` in one transaction,
/// commits, then answers them; notes in `after` the acknowledged
/// prefixes that moved, if it committed, and any `StorageFull` answer.
///
/// SQLite may roll a whole transaction back on its own when a statement
/// fails with `SQLITE_FULL` or an I/O error. Then every change applied so
/// far in the transaction is gone: those commands are answered with the
/// failing command's error (they changed nothing), and the commands after
/// it are left in `commands` for a fresh transaction. Without this, they
/// would run outside any transaction, each committed on its own, and then
/// be answered as failed.
///
/// The counters of the mailboxes that `Submit` and `Ack` held
/// ([`HeldMailboxes`]) are written back before any other command and
/// before the commit. If that fails, the transaction is rolled back the
/// same way, and a command it came before is left in `commands` (a new
/// transaction holds nothing, so it runs there).
fn run_transaction(
    conn: &mut Connection,
    commands: &mut VecDeque<Command>,
    limits: &WriterLimits,
    online: &Online,
    metrics: &Metrics,
    storage_full: bool,
    after: &mut AfterBatch,
) {
    let mut pending: Vec<Pending> = Vec::with_capacity(commands.len());
    let mut effects = Effects::default();
    // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for
    // it (busy timeout). A deferred transaction that has read would get
    // SQLITE_BUSY at once if another connection held the lock for a
    // moment: the attachment store writes through a connection of its own,
    // and the checkpointing connection takes it while it rereads a header
    // the writer is updating.
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let e = internal(&error);
            after.storage_full |= is_full(&e);
            for command in commands.drain(..) {
                reply_of(command).fail(e.clone());
            }
            return;
        }
    };
    let mut held = HeldMailboxes::new(&tx, !storage_full);
    while let Some(command) = commands.pop_front() {
        // Any other command reads or changes mailboxes through SQL: it
        // finds the true counters, and the rows are read again after it.
        if !matches!(command, Command::Submit { .. } | Command::Ack { .. }) {
            if let Err(error) = held.write_back() {
                roll_back(&tx);
                fail_rolled_back(pending, None, internal(&error), after);
                commands.push_front(command);
                return;
            }
        }
        let answer = apply(&tx, command, limits, &mut effects, &mut held);
        if tx.is_autocommit() {
            let e = answer.error().unwrap_or_else(|| {
                ErrorReply::new(ErrorCode::Internal, "storage failure; nothing was changed")
            });
            fail_rolled_back(pending, Some(answer), e, after);
            return;
        }
        pending.push(answer);
    }
    if let Err(error) = held.write_back() {
        roll_back(&tx);
        fail_rolled_back(pending, None, internal(&error), after);
        return;
    }
    let advanced = held.take_advanced();
    // The statements held go back to the connection's cache.
    drop(held);
    let size = pending.len();
    match tx.commit() {
        Ok(()) => {
            metrics.record_batch(size, effects.submitted, effects.acked, effects.expired);
            effects.close_removed(online);
            after.storage_full |= pending
                .iter()
                .any(|p| p.error().is_some_and(|e| is_full(&e)));
            for p in pending {
                p.send();
            }
            effects.wake(online);
            after.advanced.extend(advanced);
        }
        Err(error) => {
            let e = internal(&error);
            after.storage_full |= is_full(&e);
            for p in pending {
                p.fail(e.clone());
            }
        }
    }
}

/// Answers the commands of a transaction that was rolled back (`pending`,
/// and the one whose failure rolled it back, if any) with `error`: none of
/// them changed anything.
fn fail_rolled_back(
    pending: Vec<Pending>,
    failed: Option<Pending>,
    error: ErrorReply,
    after: &mut AfterBatch,
) {
    after.storage_full |= is_full(&error);
    tracing::warn!(%error, rolled_back = pending.len(), "the transaction was rolled back");
    for p in pending.into_iter().chain(failed) {
        p.fail(error.clone());
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
        Command::SetToken { reply, .. } | Command::SetPush { reply, .. } => {
            Pending::Unit(reply, e())
        }
        Command::Stop => Pending::None,
    }
}

/// Runs `f` in a savepoint, kept only if `f` succeeds. The `SAVEPOINT`,
/// `RELEASE` and `ROLLBACK TO` statements are prepared once and cached on
/// the connection: every command runs them, and parsing them each time
/// showed in the writer's profile.
fn savepoint<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<Outcome<T>, rusqlite::Error>,
) -> Outcome<T> {
    let conn: &Connection = tx;
    if let Err(error) = run_cached(conn, "SAVEPOINT command") {
        return Err(internal(&error));
    }
    match f(conn) {
        Ok(Ok(value)) => match run_cached(conn, "RELEASE command") {
            Ok(()) => Ok(value),
            Err(error) => {
                undo(conn);
                Err(internal(&error))
            }
        },
        Ok(Err(refusal)) => {
            undo(conn);
            Err(refusal)
        }
        Err(error) => {
            undo(conn);
            Err(internal(&error))
        }
    }
}

/// Runs `f` without a savepoint: only for a command whose checks all come
/// before its first write, and which leaves nothing of a write that fails:
/// it undoes what it wrote, or rolls the whole transaction back
/// ([`roll_back`]), which the caller sees through `is_autocommit`. A
/// refusal has then written nothing.
///
/// A savepoint makes SQLite copy every page the command changes, as it
/// was, into a journal: for the commands every message goes through,
/// that copy cost more than the rest of their writes.
fn without_savepoint<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<Outcome<T>, rusqlite::Error>,
) -> Outcome<T> {
    let conn: &Connection = tx;
    f(conn).unwrap_or_else(|error| Err(internal(&error)))
}

/// Rolls the whole transaction back, after a write that could not be
/// undone on its own. The writer sees it through `is_autocommit`: it
/// answers the commands applied before with the error (they changed
/// nothing) and runs the rest in a new transaction.
fn roll_back(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(error) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(%error, "rolling the transaction back failed");
        }
    }
}

/// Runs one cached statement that returns no rows.
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Rolls the command's savepoint back and releases it. After SQLite rolled
/// the whole transaction back on its own (`SQLITE_FULL`, I/O errors) the
/// savepoint is gone and this fails, which the caller sees through
/// `is_autocommit`.
fn undo(conn: &Connection) {
    let _ = run_cached(conn, "ROLLBACK TO command");
    let _ = run_cached(conn, "RELEASE command");
}
