//! Acknowledged prefixes and the sweep (schema version 11).
//!
//! Each mailbox row carries `acked_through`: every message of the mailbox
//! with an id at or below it is acknowledged. An ack whose ids are the
//! mailbox's first messages (the usual case: a device acks what was
//! pushed to it, in order) moves `acked_through` up and leaves the rows
//! where they are; reads skip them. The writer deletes them later, here,
//! in transactions of their own: when no command waits, or when more
//! than [`SWEEP_DUE_ROWS`] acknowledged rows wait. One sweep transaction
//! deletes the rows of one window of [`SWEEP_WINDOW`] ids, for every
//! mailbox with rows in it, so that each table page it touches is loaded
//! and emptied once, not once for each mailbox with a message on it (a
//! mailbox's messages lie among every other mailbox's, in id order).
//!
//! The sweep never deletes above the `acked_through` stored in the
//! database, whatever it holds in memory: a transaction that moved a
//! prefix and then rolled back leaves nothing to sweep.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{params, Connection, TransactionBehavior};

/// Version 11: `mailboxes.acked_through`; the mailbox index carries each
/// envelope's length, so that an ack reads the ids and lengths of a
/// mailbox's first messages from the index alone; and the view
/// `queued_messages`, the messages not acknowledged (for operators and
/// tests: the relay's own reads bound their ranges themselves).
pub(crate) const SCHEMA_ACKED_PREFIX: &str = "
ALTER TABLE mailboxes ADD COLUMN acked_through INTEGER NOT NULL DEFAULT 0;
DROP INDEX messages_by_mailbox;
CREATE INDEX messages_by_mailbox ON messages (mailbox, id, length(envelope));
CREATE VIEW queued_messages AS
    SELECT m.* FROM messages m JOIN mailboxes b ON b.mailbox = m.mailbox
    WHERE m.id > b.acked_through;
";

/// The ids one sweep transaction covers.
pub(crate) const SWEEP_WINDOW: i64 = 4096;

/// Acknowledged rows waiting past which the writer sweeps between
/// batches, even with commands waiting.
pub(crate) const SWEEP_DUE_ROWS: u64 = 4096;

/// Mailboxes one sweep transaction visits at most.
const SWEEP_MAILBOXES: usize = 1024;

/// A mailbox's acknowledged prefix moved, from `from` to `through`, over
/// `rows` messages left in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// The mailbox.
    pub(crate) mailbox: i64,
    /// Its `acked_through` before.
    pub(crate) from: i64,
    /// Its `acked_through` after.
    pub(crate) through: i64,
    /// Messages the move acknowledged.
    pub(crate) rows: u64,
}

/// The acknowledged rows left in the table, by mailbox: what the writer
/// has to sweep.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Mailboxes with rows left, by the id swept through (every row of
    /// the mailbox at or below it is gone).
    order: BTreeSet<(i64, i64)>,
    /// For each mailbox in `order`: swept through, acknowledged through.
    mailboxes: HashMap<i64, (i64, i64)>,
    /// Acknowledged rows left, as counted by the acks (the purge and a
    /// device's removal may have deleted some).
    waiting: u64,
}

impl Sweep {
    /// What a database holds to sweep: the mailboxes with a row at or
    /// below their `acked_through` (one index probe per mailbox that has
    /// acknowledged through a prefix).
    pub(crate) fn load(conn: &Connection) -> Result<Self, rusqlite::Error> {
        let mut sweep = Self::default();
        let mut stmt = conn.prepare(
            "SELECT b.mailbox, b.acked_through,
                 (SELECT MIN(m.id) FROM messages m WHERE m.mailbox = b.mailbox),
                 (SELECT COUNT(*) FROM messages m WHERE m.mailbox = b.mailbox AND m.id <= b.acked_through)
             FROM mailboxes b WHERE b.acked_through > 0",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, u64>(3)?,
            ))
        })?;
        for row in rows {
            let (mailbox, through, first, rows) = row?;
            if let Some(first) = first.filter(|&first| first <= through) {
                sweep.note(Advance {
                    mailbox,
                    from: first - 1,
                    through,
                    rows,
                });
            }
        }
        Ok(sweep)
    }

    /// Takes a committed move of a prefix.
    pub(crate) fn note(&mut self, advance: Advance) {
        self.waiting = self.waiting.saturating_add(advance.rows);
        match self.mailboxes.get_mut(&advance.mailbox) {
            Some((_, through)) => *through = (*through).max(advance.through),
            None => {
                self.mailboxes
                    .insert(advance.mailbox, (advance.from, advance.through));
                self.order.insert((advance.from, advance.mailbox));
            }
        }
    }

    /// Whether rows are left to sweep.
    pub(crate) fn pending(&self) -> bool {
        !self.order.is_empty()
    }

    /// Whether enough rows wait that the writer sweeps between batches.
    pub(crate) fn due(&self) -> bool {
        self.waiting >= SWEEP_DUE_ROWS
    }

    /// Acknowledged rows left, as the acks counted them.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting
    }

    /// Sweeps one window of ids in one transaction; answers the rows
    /// deleted. On an error nothing is deleted and what is left to sweep
    /// is as it was.
    pub(crate) fn run(&mut self, conn: &mut Connection) -> Result<u64, rusqlite::Error> {
        let Some(&(lowest, _)) = self.order.first() else {
            return Ok(0);
        };
        let window_end = lowest.saturating_add(SWEEP_WINDOW);
        let visits: Vec<(i64, i64, i64)> = self
            .order
            .iter()
            .take_while(|(swept, _)| *swept < window_end)
            .take(SWEEP_MAILBOXES)
            .map(|&(swept, mailbox)| {
                let through = self.mailboxes.get(&mailbox).map_or(swept, |m| m.1);
                (mailbox, swept, through.min(window_end))
            })
            .collect();
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
        // Not synced: a sweep lost in a crash leaves rows that the next
        // start finds and sweeps again. The next synced commit syncs the
        // log up to its own end, this transaction included.
        if synchronous > 1 {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let deleted = delete_visits(conn, &visits);
        if synchronous > 1 {
            conn.pragma_update(None, "synchronous", synchronous)?;
        }
        let deleted = deleted?;
        for (mailbox, swept, to) in visits {
            self.order.remove(&(swept, mailbox));
            let through = self.mailboxes.get(&mailbox).map_or(to, |m| m.1);
            if to >= through {
                self.mailboxes.remove(&mailbox);
            } else {
                self.mailboxes.insert(mailbox, (to, through));
                self.order.insert((to, mailbox));
            }
        }
        self.waiting = if self.order.is_empty() {
            0
        } else {
            self.waiting.saturating_sub(deleted)
        };
        Ok(deleted)
    }

    /// Sweeps until nothing is left; answers the rows deleted.
    pub(crate) fn run_all(&mut self, conn: &mut Connection) -> Result<u64, rusqlite::Error> {
        let mut deleted = 0;
        while self.pending() {
            deleted += self.run(conn)?;
        }
        Ok(deleted)
    }
}

/// Deletes, in one transaction, each visit's rows `(mailbox, after,
/// through)`, never above the mailbox's stored `acked_through`.
fn delete_visits(
    conn: &mut Connection,
    visits: &[(i64, i64, i64)],
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deleted = 0u64;
    {
        let mut delete = tx.prepare_cached(
            "DELETE FROM messages WHERE mailbox = ?1 AND id > ?2
             AND id <= MIN(?3, (SELECT acked_through FROM mailboxes WHERE mailbox = ?1))",
        )?;
        for &(mailbox, after, through) in visits {
            deleted += delete.execute(params![mailbox, after, through])? as u64;
        }
    }
    tx.commit()?;
    Ok(deleted)
}
