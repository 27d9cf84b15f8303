//! Acknowledged prefixes and the sweep (schema version 11).
//!
//! Each mailbox row carries `acked_through`: every message of the mailbox
//! with an id at or below it is acknowledged. An ack whose ids are the
//! mailbox's first messages (the usual case: a device acks what was
//! pushed to it, in order) moves `acked_through` up and leaves the rows
//! where they are; reads skip them. The writer deletes them later, here,
//! in transactions of their own (when, is the writer's choice:
//! [`Sweep::due`], [`Sweep::due_when_idle`]). One sweep transaction
//! deletes the rows of one window of [`SWEEP_WINDOW`] ids from the lowest
//! row left, for the mailboxes with rows in it, so that each table page
//! it touches is loaded and emptied once, not once for each mailbox with
//! a message on it (a mailbox's messages lie among every other mailbox's,
//! in id order).
//!
//! The sweep never deletes above the `acked_through` stored in the
//! database, whatever it holds in memory: it reads it in its own
//! transaction.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

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

/// Acknowledged rows waiting past which an idle writer sweeps at once;
/// below, it sweeps after [`SWEEP_IDLE_DELAY`] without a command.
pub(crate) const SWEEP_IDLE_ROWS: u64 = 256;

/// How long an idle writer with fewer than [`SWEEP_IDLE_ROWS`] rows to
/// sweep waits for a command before it sweeps them.
pub(crate) const SWEEP_IDLE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Mailboxes one sweep transaction visits at most.
const SWEEP_MAILBOXES: usize = 1024;

/// A mailbox's acknowledged prefix moved up to `through`, over `rows`
/// messages left in the table, the first of them just above `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advance {
    /// The mailbox.
    pub(crate) mailbox: i64,
    /// No acknowledged row of the mailbox is at or below this id (one
    /// below the first row the move acknowledged).
    pub(crate) from: i64,
    /// Its `acked_through` after.
    pub(crate) through: i64,
    /// Messages the move acknowledged.
    pub(crate) rows: u64,
}

/// One mailbox's rows left to sweep (the id it is swept through is its
/// key in [`Sweep::order`]).
#[derive(Debug, Clone, Copy)]
struct Left {
    /// The mailbox's `acked_through`, as far as the sweep knows.
    through: i64,
    /// Rows left, as the acks counted them (the purge and a device's
    /// removal may have deleted some).
    rows: u64,
}

/// The acknowledged rows left in the table, by mailbox: what the writer
/// has to sweep.
#[derive(Debug)]
pub(crate) struct Sweep {
    /// Mailboxes with rows left, by the id swept through (every
    /// acknowledged row of the mailbox at or below it is gone).
    order: BTreeSet<(i64, i64)>,
    /// For each mailbox in `order`, what is left.
    mailboxes: HashMap<i64, Left>,
    /// The sum of the mailboxes' `rows`.
    waiting: u64,
    /// The connection's `synchronous` level, which a sweep lowers to
    /// `NORMAL` for its own commit and puts back.
    synchronous: i64,
    /// A sweep could not put `synchronous` back: nothing may commit
    /// until [`Sweep::restore_synchronous`] has.
    unrestored: bool,
}

impl Sweep {
    /// Nothing to sweep, on a connection whose `synchronous` level is
    /// `synchronous`.
    pub(crate) fn new(synchronous: i64) -> Self {
        Self {
            order: BTreeSet::new(),
            mailboxes: HashMap::new(),
            waiting: 0,
            synchronous,
            unrestored: false,
        }
    }

    /// What a database holds to sweep: the mailboxes with a row at or
    /// below their `acked_through` (for each mailbox that has acknowledged
    /// a prefix, a probe of the mailbox index and a count of the rows left
    /// below it, from the index); the connection's `synchronous` level as
    /// it is now.
    pub(crate) fn load(conn: &Connection) -> Result<Self, rusqlite::Error> {
        let synchronous = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
        let mut sweep = Self::new(synchronous);
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
            Some(left) => {
                left.through = left.through.max(advance.through);
                left.rows = left.rows.saturating_add(advance.rows);
            }
            None => {
                self.mailboxes.insert(
                    advance.mailbox,
                    Left {
                        through: advance.through,
                        rows: advance.rows,
                    },
                );
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

    /// Whether enough rows wait that an idle writer sweeps at once.
    pub(crate) fn due_when_idle(&self) -> bool {
        self.waiting >= SWEEP_IDLE_ROWS
    }

    /// Acknowledged rows left, as the acks counted them.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting
    }

    /// Puts the connection's `synchronous` level back if a sweep could
    /// not. Until this succeeds the writer must not commit: its commits
    /// would not be synced.
    pub(crate) fn restore_synchronous(&mut self, conn: &Connection) -> Result<(), rusqlite::Error> {
        if self.unrestored {
            conn.pragma_update(None, "synchronous", self.synchronous)?;
            self.unrestored = false;
        }
        Ok(())
    }

    /// Sweeps one window of ids in one transaction; answers the rows
    /// deleted. The window starts at the lowest row left to sweep and
    /// covers [`SWEEP_WINDOW`] ids; after it each mailbox visited is swept
    /// through just below its next row left (one probe of its index), so
    /// the next window starts at a row. If the transaction fails nothing
    /// is deleted and what is left to sweep is as it was; if only putting
    /// `synchronous` back fails, the deletions are taken and the error
    /// answered (the writer then runs nothing until
    /// [`Sweep::restore_synchronous`] succeeds).
    pub(crate) fn run(&mut self, conn: &mut Connection) -> Result<u64, rusqlite::Error> {
        let Some(&(lowest, _)) = self.order.first() else {
            return Ok(0);
        };
        let window_end = lowest.saturating_add(SWEEP_WINDOW);
        let visits: Vec<Visit> = self
            .order
            .iter()
            .take_while(|(swept, _)| *swept < window_end)
            .take(SWEEP_MAILBOXES)
            .filter_map(|&(swept, mailbox)| {
                let left = self.mailboxes.get(&mailbox)?;
                Some(Visit {
                    mailbox,
                    after: swept,
                    through: left.through.min(window_end),
                    stored: None,
                    deleted: 0,
                    next: None,
                })
            })
            .collect();
        // Not synced: a sweep lost in a crash leaves rows that the next
        // start finds and sweeps again. The next synced commit syncs the
        // log up to its own end, this transaction included.
        let lower = self.synchronous > 1;
        if lower {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let result = delete_visits(conn, visits);
        let restored = if lower {
            conn.pragma_update(None, "synchronous", self.synchronous)
        } else {
            Ok(())
        };
        self.unrestored = restored.is_err();
        let deleted = self.apply(result?);
        restored.map(|()| deleted)
    }

    /// Takes what one sweep transaction did; answers the rows deleted.
    fn apply(&mut self, visits: Vec<Visit>) -> u64 {
        let mut deleted = 0;
        for visit in visits {
            deleted += visit.deleted;
            self.order.remove(&(visit.after, visit.mailbox));
            let Some(left) = self.mailboxes.get_mut(&visit.mailbox) else {
                continue;
            };
            left.rows = left.rows.saturating_sub(visit.deleted);
            // What the database says is acknowledged bounds what is left
            // (no row: the device was removed).
            left.through = left.through.min(visit.stored.unwrap_or(i64::MIN));
            match visit.next.filter(|&next| next <= left.through) {
                Some(next) => {
                    self.order.insert((next - 1, visit.mailbox));
                }
                None => {
                    // Whatever the acks counted and is not there any more
                    // went with a purge or the device's removal.
                    self.waiting = self.waiting.saturating_sub(left.rows);
                    self.mailboxes.remove(&visit.mailbox);
                }
            }
        }
        self.waiting = self.waiting.saturating_sub(deleted);
        deleted
    }

    /// Sweeps until nothing is left; answers the rows deleted.
    #[cfg(test)]
    pub(crate) fn run_all(&mut self, conn: &mut Connection) -> Result<u64, rusqlite::Error> {
        let mut deleted = 0;
        while self.pending() {
            deleted += self.run(conn)?;
        }
        Ok(deleted)
    }
}

/// One mailbox's part of a sweep transaction.
#[derive(Debug)]
struct Visit {
    mailbox: i64,
    /// Rows above this id...
    after: i64,
    /// ... and at or below this one and `stored`.
    through: i64,
    /// The mailbox's `acked_through` in the database, if it has a row.
    stored: Option<i64>,
    /// Rows the delete took.
    deleted: u64,
    /// The mailbox's first row above what the delete covered, if any.
    next: Option<i64>,
}

/// Deletes, in one transaction, each visit's rows, never above the
/// mailbox's stored `acked_through` (whatever the sweep holds in memory),
/// and finds each mailbox's next row.
fn delete_visits(
    conn: &mut Connection,
    mut visits: Vec<Visit>,
) -> Result<Vec<Visit>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stored =
            tx.prepare_cached("SELECT acked_through FROM mailboxes WHERE mailbox = ?1")?;
        let mut delete =
            tx.prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND id > ?2 AND id <= ?3")?;
        let mut next =
            tx.prepare_cached("SELECT MIN(id) FROM messages WHERE mailbox = ?1 AND id > ?2")?;
        for visit in &mut visits {
            visit.stored = stored
                .query_row(params![visit.mailbox], |r| r.get(0))
                .optional()?;
            let bound = visit.through.min(visit.stored.unwrap_or(i64::MIN));
            if bound > visit.after {
                visit.deleted = delete.execute(params![visit.mailbox, visit.after, bound])? as u64;
            }
            visit.next =
                next.query_row(params![visit.mailbox, bound.max(visit.after)], |r| r.get(0))?;
        }
    }
    tx.commit()?;
    Ok(visits)
}
