//! The PostgreSQL backend: any number of relay nodes share one database.
//!
//! Each node runs a few writer tasks (one user's commands always on the
//! same one, in order); each takes every command waiting for it (up to a
//! batch limit) and applies them in one transaction (group commit: one WAL
//! flush for the batch), holding for its submissions and acks the device
//! rows it locks ([`held`]), as the SQLite backend does; every command but
//! a submission runs in its own savepoint (a submission too when the batch
//! runs again after one failed). Every connection runs with
//! `synchronous_commit = on`, checked at start, so a `COMMIT` that
//! returned is on the server's disk; answers go out only after it.
//!
//! Nodes write concurrently. A batch first locks, in one sorted order, the
//! user and device rows its commands will change, so two nodes' batches do
//! not deadlock on each other; a deadlock or unique-key race that remains
//! (a new user registered on two nodes at once) rolls the batch back and
//! runs it again. A device row stays locked from a message's check to the
//! commit, so one mailbox's message ids are committed in increasing order
//! and a reader that has seen id `n` never misses a later commit below it.
//! A batch that failed before its `COMMIT` was sent (the database
//! restarting, say) changed nothing and is run again on a new connection
//! for a while. When the answer to `COMMIT` itself is lost, the writer asks
//! a new connection for the transaction's fate (`txid_status`): committed,
//! it answers as usual; rolled back, it runs the batch again. Only when the
//! database stays unreachable is a batch answered with a failure whose
//! outcome is unknown, which clients resend (recipients drop duplicates by
//! their own tag).

mod apply;
mod held;
#[cfg(test)]
mod held_tests;
pub(crate) mod links;
mod mailbox;
mod notify;
mod prekeys;
mod readers;
mod schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tacit_relay_proto::{ErrorCode, ErrorReply};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::{Claimed, Command, Effects, Outcome, StoreError, Writer, WriterLimits};
use crate::kem::PreKeyCounts;
use crate::metrics::Metrics;
use crate::online::Online;

use held::HeldDevices;
use notify::start_listener;
pub(crate) use readers::Readers;

/// How long a batch that cannot reach the database is tried again before
/// it is answered with a failure.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// Writers on each node. Each runs its own batches on its own connection,
/// so a node keeps several transactions in flight; a user's commands all go
/// to one writer (see `Command::partition`), in order.
const WRITERS: usize = 4;

/// The channel every node listens on.
pub(crate) const CHANNEL: &str = "tacit_relay";

/// A pool of connections to `url`, each with `synchronous_commit = on`.
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.options("-c synchronous_commit=on");
    config.application_name("tacit-relay");
    config.connect_timeout(Duration::from_secs(10));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| StoreError::msg(e.to_string()))
}

/// Gets a connection, mapping the pool's error.
pub(crate) async fn client(pool: &Pool) -> Result<deadpool_postgres::Client, StoreError> {
    pool.get()
        .await
        .map_err(|e| StoreError::msg(format!("PostgreSQL connection: {e}")))
}

/// Connects, checks `synchronous_commit`, runs the migrations and starts
/// the writer task.
pub(crate) async fn start_writer(
    url: &str,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
) -> Result<(Writer, tokio::task::JoinHandle<()>), StoreError> {
    if limits.max_db_bytes.is_some() {
        tracing::warn!("max_db_bytes applies to SQLite only; ignored on PostgreSQL");
    }
    let pool = pool(url, WRITERS + 1)?;
    {
        let mut client = client(&pool).await?;
        let setting: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .get(0);
        if setting != "on" {
            return Err(StoreError::msg(format!(
                "synchronous_commit is {setting}, not on"
            )));
        }
        schema::migrate(&mut client).await?;
    }
    let (ready, listening) = tokio::sync::oneshot::channel();
    let listener = notify::AbortOnDrop(start_listener(
        url,
        pool.clone(),
        Arc::clone(&online),
        limits.mailbox_recheck,
        ready,
    )?);
    // A node that serves before it listens would miss other nodes' wake-ups
    // until its first re-check.
    if tokio::time::timeout(Duration::from_secs(10), listening)
        .await
        .map_or(true, |r| r.is_err())
    {
        return Err(StoreError::msg(
            "could not LISTEN for the other nodes within 10 s",
        ));
    }
    let mut queues = Vec::with_capacity(WRITERS);
    let mut tasks = Vec::with_capacity(WRITERS);
    for _ in 0..WRITERS {
        let (tx, rx) = super::queue();
        queues.push(tx);
        tasks.push(tokio::spawn(write_loop(
            rx,
            pool.clone(),
            limits,
            Arc::clone(&online),
            Arc::clone(&metrics),
        )));
    }
    let task = tokio::spawn(async move {
        let _listener = listener;
        for task in tasks {
            let _ = task.await;
        }
        tracing::debug!("writers stopped");
    });
    Ok((Writer::new(queues, limits.queue_bytes), task))
}

/// One writer: takes the commands waiting, up to a batch, and runs them.
async fn write_loop(
    mut rx: super::Receiver,
    pool: Pool,
    limits: WriterLimits,
    online: Arc<Online>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(limits.max_batch);
    let mut stop = false;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Stop => stop = true,
                command => batch.push(command),
            }
            if batch.len() < limits.max_batch {
                next = rx.try_recv();
            }
        }
        run_batch(
            &pool,
            std::mem::take(&mut batch),
            &limits,
            &online,
            &metrics,
        )
        .await;
        rx.release();
        if stop {
            break;
        }
    }
}

/// A command's value, of any command.
pub(super) enum Value {
    Bool(bool),
    U32(u32),
    U64(u64),
    Unit,
    Bundles(Claimed),
    Counts(PreKeyCounts),
}

/// Why a batch did not commit.
enum Failure {
    /// Before `COMMIT` was sent: nothing changed, the batch may run again.
    Retry(String),
    /// A failure that running again would not cure: nothing changed.
    Fatal(ErrorReply),
    /// `COMMIT` failed: whether the batch is stored is unknown.
    Commit(String),
    /// A submission without a savepoint failed: nothing changed, the
    /// batch runs again with a savepoint around each submission.
    Careful,
}

/// Whether running the batch again may succeed: a deadlock, a
/// serialization failure, a unique-key race with another node, or a lost
/// connection.
fn retryable(error: &tokio_postgres::Error) -> bool {
    error.code().is_none_or(|code| retryable_code(code.code()))
}

/// [`retryable`] for a SQLSTATE code.
fn retryable_code(code: &str) -> bool {
    code == SqlState::T_R_DEADLOCK_DETECTED.code()
        || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || code == SqlState::UNIQUE_VIOLATION.code()
        || code.starts_with("08")
        || code.starts_with("57")
}

/// The refusal a database failure is answered with.
pub(crate) fn internal(error: &tokio_postgres::Error) -> ErrorReply {
    if error.code() == Some(&SqlState::DISK_FULL) {
        tracing::warn!(%error, "storage full");
        return ErrorReply::new(
            ErrorCode::StorageFull,
            "the relay's storage is full; nothing was changed",
        );
    }
    tracing::error!(%error, "storage failure");
    ErrorReply::new(ErrorCode::Internal, "storage failure; nothing was changed")
}

/// Runs the batch until it commits, or answers every command with the
/// failure.
async fn run_batch(
    pool: &Pool,
    batch: Vec<Command>,
    limits: &WriterLimits,
    online: &Online,
    metrics: &Metrics,
) {
    if batch.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    let mut careful = false;
    let failure = loop {
        match try_batch(pool, &batch, limits, careful).await {
            Ok((outcomes, effects)) => {
                metrics.record_batch(
                    batch.len(),
                    effects.submitted,
                    effects.acked,
                    effects.expired,
                );
                effects.close_removed(online);
                for (command, outcome) in batch.into_iter().zip(outcomes) {
                    answer(command, outcome);
                }
                effects.wake(online);
                return;
            }
            Err(Failure::Careful) => careful = true,
            Err(Failure::Retry(why)) if started.elapsed() < RETRY_FOR => {
                tracing::debug!(why, "batch runs again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(Failure::Retry(why)) => {
                tracing::error!(why, "the database stayed unreachable");
                break ErrorReply::new(
                    ErrorCode::Internal,
                    "storage unreachable; nothing was changed",
                );
            }
            Err(Failure::Fatal(reply)) => break reply,
            Err(Failure::Commit(why)) => {
                tracing::error!(why, "commit failed");
                break ErrorReply::new(
                    ErrorCode::Internal,
                    "storage failure at commit; the request may or may not have been applied",
                );
            }
        }
    };
    for command in batch {
        answer(command, Err(failure.clone()));
    }
}

/// One attempt at the batch: applies every command (a submission without
/// a savepoint unless `careful`, every other in its own), queues the
/// notifications, commits.
async fn try_batch(
    pool: &Pool,
    batch: &[Command],
    limits: &WriterLimits,
    careful: bool,
) -> Result<(Vec<Outcome<Value>>, Effects), Failure> {
    let retry = |e: tokio_postgres::Error| {
        if retryable(&e) {
            Failure::Retry(e.to_string())
        } else {
            Failure::Fatal(internal(&e))
        }
    };
    let mut client = pool
        .get()
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let mut tx = client.transaction().await.map_err(retry)?;
    // The transaction's id, to learn its fate if the answer to COMMIT is
    // lost.
    let xid: i64 = tx
        .query_one("SELECT txid_current()", &[])
        .await
        .map_err(retry)?
        .get(0);
    let mut held = apply::lock_rows(&tx, batch).await.map_err(retry)?;
    let mut effects = Effects::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for command in batch {
        match with_held(&mut tx, &mut held, command, limits, &mut effects, careful).await {
            Ok(Some(outcome)) => {
                outcomes.push(outcome);
                continue;
            }
            Ok(None) => {}
            // A submission without a savepoint failed, and with it the
            // transaction: the batch runs again with one around each, so
            // that the failure is that submission's alone (a full disk
            // refuses inserts while acks and purges still free space).
            Err(error) if !careful && !retryable(&error) && is_submit(command) => {
                tracing::warn!(%error, "a submission failed; the batch runs again with a savepoint around each");
                return Err(Failure::Careful);
            }
            Err(error) => return Err(retry(error)),
        }
        // Any other command reads or changes the counters through SQL.
        held.write_back(&tx).await.map_err(retry)?;
        let sp = tx.savepoint("command").await.map_err(retry)?;
        let mut own = Effects::default();
        let result = apply::apply(&sp, command, limits, &mut own).await;
        let outcome = settle(sp, result).await.map_err(retry)?;
        if outcome.is_ok() {
            effects.merge(own);
        }
        outcomes.push(outcome);
    }
    held.write_back(&tx).await.map_err(retry)?;
    let payloads = notify::payloads(&mut effects);
    if !payloads.is_empty() {
        apply::execute(
            &tx,
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
            &[&CHANNEL, &payloads],
        )
        .await
        .map_err(retry)?;
    }
    if let Err(error) = tx.commit().await {
        drop(client);
        return match committed(pool, xid).await {
            Some(true) => Ok((outcomes, effects)),
            Some(false) => Err(Failure::Retry(format!("rolled back at commit: {error}"))),
            None => Err(Failure::Commit(error.to_string())),
        };
    }
    Ok((outcomes, effects))
}

/// Ends a command's savepoint by the command's result: released if it
/// succeeded, rolled back if it was refused or failed (the failure is its
/// answer, `Internal`). A failure that running again may cure is the
/// batch's, as is one of the release or the rollback.
async fn settle<T>(
    sp: deadpool_postgres::Transaction<'_>,
    result: Result<Outcome<T>, tokio_postgres::Error>,
) -> Result<Outcome<T>, tokio_postgres::Error> {
    match result {
        Ok(Ok(value)) => {
            sp.commit().await?;
            Ok(Ok(value))
        }
        Ok(Err(refusal)) => {
            sp.rollback().await?;
            Ok(Err(refusal))
        }
        Err(error) if retryable(&error) => Err(error),
        Err(error) => {
            sp.rollback().await?;
            Ok(Err(internal(&error)))
        }
    }
}

/// Whether `command` is a `Submit`.
fn is_submit(command: &Command) -> bool {
    matches!(command, Command::Submit { .. })
}

/// Runs `Submit` and `Ack` with the rows `held` for the batch; `None`
/// for any other command. A submission runs without a savepoint unless
/// `careful` (its checks come before its one write), so its error is the
/// batch's: PostgreSQL abandons a transaction after a failed statement
/// that no savepoint rolls back. An ack runs in one, which its refusal or
/// its error rolls back, as other commands do.
async fn with_held(
    tx: &mut deadpool_postgres::Transaction<'_>,
    held: &mut HeldDevices,
    command: &Command,
    limits: &WriterLimits,
    effects: &mut Effects,
    careful: bool,
) -> Result<Option<Outcome<Value>>, tokio_postgres::Error> {
    Ok(Some(match command {
        Command::Submit {
            recipient,
            envelope,
            token_hash,
            sender,
            now_ms,
            ..
        } => {
            let submission = (envelope.as_slice(), *token_hash, sender, *now_ms);
            let result = if careful {
                // The row is read before the savepoint: a rollback to it
                // would release a lock first taken inside it (a device
                // registered after the batch took its locks).
                held.row(tx, recipient).await?;
                let sp = tx.savepoint("command").await?;
                let result = mailbox::submit(&sp, held, recipient, submission, limits).await;
                settle(sp, result).await?
            } else {
                mailbox::submit(tx, held, recipient, submission, limits).await?
            };
            if result.is_ok() {
                effects.submitted += 1;
                effects.mail.push(recipient.clone());
            }
            result.map(Value::U64)
        }
        Command::Ack { address, ids, .. } => {
            // The row is read before the savepoint: a rollback to it keeps
            // what is held true.
            held.row(tx, address).await?;
            let sp = tx.savepoint("command").await?;
            let result = mailbox::ack(&sp, address, ids).await;
            let (n, bytes) = match settle(sp, result).await? {
                Ok(deleted) => deleted,
                Err(refusal) => return Ok(Some(Err(refusal))),
            };
            if let Some(row) = held.row(tx, address).await? {
                row.count(-i64::from(n), -bytes);
            }
            effects.acked += u64::from(n);
            Ok(Value::U32(n))
        }
        _ => return Ok(None),
    }))
}

/// Whether the transaction `xid`, whose COMMIT got no answer, committed:
/// asked on a new connection (after a crash, PostgreSQL's recovery has
/// decided) until the database answers, for up to [`RETRY_FOR`]; `None`
/// if it never does.
async fn committed(pool: &Pool, xid: i64) -> Option<bool> {
    let started = Instant::now();
    while started.elapsed() < RETRY_FOR {
        if let Ok(client) = pool.get().await {
            if let Ok(row) = client.query_one("SELECT txid_status($1)", &[&xid]).await {
                match row.get::<_, Option<String>>(0).as_deref() {
                    Some("committed") => return Some(true),
                    Some("aborted") => return Some(false),
                    Some(_) => {}
                    None => return None,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Sends a command its outcome.
fn answer(command: Command, outcome: Outcome<Value>) {
    fn mismatch<T>() -> Outcome<T> {
        Err(ErrorReply::new(ErrorCode::Internal, "storage failure"))
    }
    // A receiver that has gone away no longer needs the answer.
    let _ = match command {
        Command::Register { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::Bool(b) => Ok(b),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::PublishList { reply, .. }
        | Command::Submit { reply, .. }
        | Command::TakeExpired { reply, .. }
        | Command::Purge { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::U64(n) => Ok(n),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::SubmitGroup { reply, .. } | Command::Ack { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::U32(n) => Ok(n),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::UploadPreKeys { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::Counts(c) => Ok(c),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::ClaimBundles { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::Bundles(b) => Ok(b),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::SetToken { reply, .. } | Command::SetPush { reply, .. } => reply
            .send(outcome.and_then(|v| match v {
                Value::Unit => Ok(()),
                _ => mismatch(),
            }))
            .map_err(drop),
        Command::Stop => Ok(()),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_the_forms_documented_make_a_pool_and_others_do_not() {
        for url in [
            "postgres://relay@db.internal:5432/tacit",
            "postgresql://relay@127.0.0.1/tacit",
            "postgresql:///tacit?user=relay&host=/run/postgresql",
        ] {
            assert!(pool(url, 1).is_ok(), "{url}");
        }
        for url in [
            "postgres://relay@[bad/tacit",
            "postgres://relay@db:notaport/x",
        ] {
            assert!(pool(url, 1).is_err(), "{url}");
        }
    }

    #[test]
    fn only_races_and_lost_connections_run_a_batch_again() {
        assert!(retryable_code("40P01"));
        assert!(retryable_code("40001"));
        assert!(retryable_code("23505"));
        assert!(retryable_code("57P01"));
        assert!(retryable_code("08006"));
        assert!(!retryable_code("53100"));
        assert!(!retryable_code("22P02"));
    }
}
