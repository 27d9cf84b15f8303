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
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(error) = done {
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

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.finish();
    }
}
