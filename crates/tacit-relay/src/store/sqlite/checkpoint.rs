//! WAL checkpoints off the commit path.
//!
//! The writer's connection runs with `wal_autocheckpoint` off, so a commit
//! never copies the log into the database file and syncs it before it
//! answers. This thread does that instead, from its own connection: a
//! `PASSIVE` checkpoint, which never waits for the writer or the readers
//! and never holds up a commit, once the writer has logged about as much
//! as SQLite's own automatic checkpoint would wait for (1,000 pages), and
//! at least every few seconds while anything was written. Commits are as durable as
//! before (each is synced to the log with `synchronous=FULL` before it is
//! answered); what moves is only when the log is copied into the database.
//! The log is reused from its start once a checkpoint has copied all of it.
//!
//! Under a steady load a `PASSIVE` checkpoint rarely copies all of the log:
//! the writer commits more frames while it runs, so the log would never be
//! reused and would grow without bound. Once the log holds more than
//! [`RESTART_FRAMES`], the thread follows its passive checkpoint with a
//! `RESTART` one, which waits for the writer's current transaction, copies
//! the few frames committed since, and makes the writer start the log
//! again from its beginning. That holds commits up only for that remainder
//! and one sync of the database file.
//!
//! The restarted log is written over the file's old frames, which keeps
//! each commit's sync a sync of data alone. The writer's
//! `journal_size_limit` ([`JOURNAL_SIZE_LIMIT`]) cuts the file back at a
//! restart only when it has grown past that (a burst beyond the usual
//! bound): cutting it back at every restart took the 99th percentile of a
//! paced load's delivery latency from 2.7 to 12 ms (measured,
//! `docs/PERFORMANCE.md`), likely because the commits that grow the file
//! again must also sync its new size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::{Database, StoreError};

/// How often the thread looks at what was written.
const TICK: Duration = Duration::from_millis(100);
/// About how many bytes of commands make the next checkpoint due.
const DUE_BYTES: u64 = 4 * 1024 * 1024;
/// The longest a written log waits for a checkpoint.
const DUE_AFTER: Duration = Duration::from_secs(5);
/// Past this many frames in the log, a checkpoint restarts it.
pub(super) const RESTART_FRAMES: i64 = 2_000;
/// The size, in bytes, the writer cuts the log file back to when the log
/// restarts (SQLite's `journal_size_limit`): above what [`RESTART_FRAMES`]
/// lets the log reach under a steady load (about 8 MiB, plus what is
/// written while a checkpoint runs), so that the file is cut back only
/// after a burst, not at every restart.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The checkpointing thread; it ends when this is dropped or joined.
pub(super) struct Checkpointer {
    /// Bytes of commands committed since the last checkpoint, about.
    written: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `database` (a SQLite file).
    /// With `no_fsync` (benchmarks only) it does not sync either.
    pub(super) fn start(database: &Database, no_fsync: bool) -> Result<Self, StoreError> {
        let Database::Sqlite(path) = database else {
            return Err(StoreError::msg("not a SQLite file"));
        };
        // Its own connection: the writer has set the database up.
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let sync = if no_fsync { "OFF" } else { "FULL" };
        conn.pragma_update(None, "synchronous", sync)?;
        let written = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&written);
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tacit-relay-checkpoint".into())
            .spawn(move || {
                let mut last = Instant::now();
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(TICK) {
                    let pending = seen.load(Ordering::Relaxed);
                    if pending < DUE_BYTES && (pending == 0 || last.elapsed() < DUE_AFTER) {
                        continue;
                    }
                    seen.fetch_sub(pending, Ordering::Relaxed);
                    last = Instant::now();
                    if let Err(error) = checkpoint(&conn) {
                        tracing::warn!(%error, "checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::msg(e.to_string()))?;
        Ok(Self {
            written,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The writer committed about `bytes` more.
    pub(super) fn wrote(&self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sets the writer's connection up for this thread: no checkpoints of its
/// own (`wal_autocheckpoint=0`), and its log file cut back to
/// [`JOURNAL_SIZE_LIMIT`] whenever the log restarts.
pub(super) fn set_up_writer(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let _limit: i64 =
        conn.pragma_update_and_check(None, "journal_size_limit", JOURNAL_SIZE_LIMIT, |r| r.get(0))?;
    Ok(())
}

/// A `PASSIVE` checkpoint, then, if the log has grown past
/// [`RESTART_FRAMES`], a `RESTART` one; answers the log's frames after it
/// as `(frames in the log, frames copied)`.
pub(super) fn checkpoint(conn: &rusqlite::Connection) -> Result<(i64, i64), rusqlite::Error> {
    let passive = run(conn, "PRAGMA wal_checkpoint(PASSIVE)")?;
    if passive.0 <= RESTART_FRAMES {
        return Ok(passive);
    }
    run(conn, "PRAGMA wal_checkpoint(RESTART)")
}

/// Runs one `wal_checkpoint` pragma: `(frames in the log, frames copied)`.
fn run(conn: &rusqlite::Connection, sql: &str) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row(sql, [], |r| Ok((r.get(1)?, r.get(2)?)))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.finish();
    }
}
