//! What a transaction of the writer holds in memory: for each device that
//! a `Submit` or an `Ack` of the transaction names, its mailbox row (the
//! device's token hash, mailbox number and counters), read from the
//! database once and then kept up to date; and the next message id
//! ([`MessageIds`]).
//!
//! A submission reads the row and adds its message to the counters; an
//! ack reads it, takes its messages off and may move the mailbox's
//! acknowledged prefix ([`super::sweep`]). The counters and the prefix go
//! back to the database, one update per mailbox that changed (and the
//! next id, once), before the transaction commits and before any other
//! command runs: every other command reads or changes devices and
//! mailboxes through SQL, so it finds the true counters, and the rows
//! held are dropped before it runs and read again after. Without this,
//! each message cost a read of two rows and an update of one (callgrind:
//! 67.9k instructions of the relay per delivered message before, 57.7k
//! after).

use std::collections::HashMap;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use tacit::Address;

use super::ids::MessageIds;
use super::sweep::Advance;

/// A device's mailbox row, as [`super::apply::may_submit`] checks it.
#[derive(Debug, Clone)]
pub(crate) struct MailboxRow {
    /// The hash of the delivery token the device set, if any.
    pub(crate) token_hash: Option<Vec<u8>>,
    /// The device's mailbox number.
    pub(crate) mailbox: i64,
    /// Messages queued.
    pub(crate) queued: u64,
    /// Envelope bytes queued.
    pub(crate) queued_bytes: u64,
    /// Every message of the mailbox with an id at or below this one is
    /// acknowledged ([`super::sweep`]).
    pub(crate) acked_through: i64,
}

/// Reads `address`'s mailbox row; `None` if there is no such device.
pub(crate) fn read_row(
    t: &Connection,
    address: &Address,
) -> Result<Option<MailboxRow>, rusqlite::Error> {
    t.prepare_cached(
        "SELECT d.token_hash, m.mailbox, m.queued, m.queued_bytes, m.acked_through
         FROM devices d JOIN mailboxes m ON m.mailbox = d.mailbox
         WHERE d.user_id = ?1 AND d.device_id = ?2",
    )?
    .query_row(params![address.user_id(), address.device_id()], |r| {
        Ok(MailboxRow {
            token_hash: r.get(0)?,
            mailbox: r.get(1)?,
            queued: r.get(2)?,
            queued_bytes: r.get(3)?,
            acked_through: r.get(4)?,
        })
    })
    .optional()
}

/// A held row, and whether its counters differ from the database's.
#[derive(Debug)]
struct Held {
    row: MailboxRow,
    changed: bool,
}

/// The mailbox rows and the next message id one transaction holds, and
/// the statements every message runs, taken from the connection's cache
/// once per transaction rather than once per message (a lookup of the
/// SQL text and a return to the cache each time: about 1,400
/// instructions). Its size is bounded by the transaction's commands (one
/// row for each device they name).
pub(crate) struct HeldMailboxes<'c> {
    conn: &'c Connection,
    rows: HashMap<Address, Held>,
    ids: MessageIds,
    prefixes: bool,
    advanced: Vec<Advance>,
    insert: Option<CachedStatement<'c>>,
    length: Option<CachedStatement<'c>>,
    delete: Option<CachedStatement<'c>>,
    prefix: Option<CachedStatement<'c>>,
}

impl<'c> HeldMailboxes<'c> {
    /// Nothing held yet, for a transaction on `conn`; with `prefixes`,
    /// acks move acknowledged prefixes, else they delete every id at once.
    pub(crate) fn new(conn: &'c Connection, prefixes: bool) -> Self {
        Self {
            conn,
            rows: HashMap::new(),
            ids: MessageIds::default(),
            prefixes,
            advanced: Vec::new(),
            insert: None,
            length: None,
            delete: None,
            prefix: None,
        }
    }

    /// The id of the next message, taken.
    pub(crate) fn take_id(&mut self) -> Result<i64, rusqlite::Error> {
        self.ids.take(self.conn)
    }

    /// The statement [`INSERT_MESSAGE`], held.
    pub(crate) fn insert_statement(&mut self) -> Result<&mut CachedStatement<'c>, rusqlite::Error> {
        cached(self.conn, &mut self.insert, INSERT_MESSAGE)
    }

    /// The length of message `id`'s envelope if it is in `mailbox`.
    pub(crate) fn envelope_length(
        &mut self,
        id: i64,
        mailbox: i64,
    ) -> Result<Option<u64>, rusqlite::Error> {
        cached(
            self.conn,
            &mut self.length,
            "SELECT length(envelope) FROM messages WHERE id = ?1 AND mailbox = ?2",
        )?
        .query_row(params![id, mailbox], |r| r.get(0))
        .optional()
    }

    /// Whether acks of this transaction move acknowledged prefixes.
    pub(crate) fn prefixes(&self) -> bool {
        self.prefixes
    }

    /// The envelopes' lengths of the longest run of `wanted` (ids in
    /// increasing order) that are `mailbox`'s first messages above
    /// `after`: read from the index `messages_by_mailbox` alone, without
    /// the table's pages, and only until the first message that is not
    /// wanted. Nothing is bound for a limit: a bound `LIMIT` makes SQLite
    /// prepare the statement again at every binding.
    pub(crate) fn prefix_lengths(
        &mut self,
        mailbox: i64,
        after: i64,
        wanted: &[i64],
    ) -> Result<Vec<u64>, rusqlite::Error> {
        let mut lengths = Vec::new();
        if wanted.is_empty() {
            return Ok(lengths);
        }
        let statement = cached(self.conn, &mut self.prefix, FIRST_AFTER)?;
        let mut rows = statement.query(params![mailbox, after])?;
        while let Some(row) = rows.next()? {
            if lengths.len() == wanted.len() || row.get::<_, i64>(0)? != wanted[lengths.len()] {
                break;
            }
            lengths.push(row.get(1)?);
        }
        Ok(lengths)
    }

    /// Deletes message `id`.
    pub(crate) fn delete(&mut self, id: i64) -> Result<(), rusqlite::Error> {
        cached(
            self.conn,
            &mut self.delete,
            "DELETE FROM messages WHERE id = ?1",
        )?
        .execute(params![id])
        .map(drop)
    }

    /// `address`'s mailbox row: the one held, or read now and held.
    /// Devices that do not exist are not held (nothing is to be counted
    /// for them).
    pub(crate) fn row(
        &mut self,
        address: &Address,
    ) -> Result<Option<&MailboxRow>, rusqlite::Error> {
        if !self.rows.contains_key(address) {
            let Some(row) = read_row(self.conn, address)? else {
                return Ok(None);
            };
            self.rows.insert(
                address.clone(),
                Held {
                    row,
                    changed: false,
                },
            );
        }
        Ok(self.rows.get(address).map(|held| &held.row))
    }

    /// Counts `messages` of `bytes` in all into `address`'s mailbox, whose
    /// row is held.
    pub(crate) fn add(&mut self, address: &Address, messages: u64, bytes: u64) {
        if let Some(held) = self.rows.get_mut(address) {
            held.row.queued = held.row.queued.saturating_add(messages);
            held.row.queued_bytes = held.row.queued_bytes.saturating_add(bytes);
            held.changed = true;
        }
    }

    /// Takes `messages` of `bytes` in all off `address`'s mailbox, whose
    /// row is held.
    pub(crate) fn remove(&mut self, address: &Address, messages: u64, bytes: u64) {
        if let Some(held) = self.rows.get_mut(address) {
            held.row.queued = held.row.queued.saturating_sub(messages);
            held.row.queued_bytes = held.row.queued_bytes.saturating_sub(bytes);
            held.changed = true;
        }
    }

    /// Moves `address`'s acknowledged prefix, whose row is held, up to
    /// `through`, over `rows` messages left for the sweep, the first of
    /// them `first`.
    pub(crate) fn advance(&mut self, address: &Address, first: i64, through: i64, rows: u64) {
        if let Some(held) = self.rows.get_mut(address) {
            if through > held.row.acked_through {
                self.advanced.push(Advance {
                    mailbox: held.row.mailbox,
                    from: first - 1,
                    through,
                    rows,
                });
                held.row.acked_through = through;
                held.changed = true;
            }
        }
    }

    /// The acknowledged prefixes moved in this transaction, for the sweep
    /// once it commits.
    pub(crate) fn take_advanced(&mut self) -> Vec<Advance> {
        std::mem::take(&mut self.advanced)
    }

    /// Writes the counters that changed and the next id to the database
    /// and drops everything held. On an error some may have been written:
    /// the caller rolls the transaction back.
    pub(crate) fn write_back(&mut self) -> Result<(), rusqlite::Error> {
        let t = self.conn;
        self.ids.write_back(t)?;
        let rows = std::mem::take(&mut self.rows);
        let mut changed: Vec<&MailboxRow> = rows
            .values()
            .filter(|held| held.changed)
            .map(|held| &held.row)
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        // In mailbox order: the updates walk the table's pages once.
        changed.sort_unstable_by_key(|row| row.mailbox);
        let mut update = t.prepare_cached(
            "UPDATE mailboxes SET queued = ?2, queued_bytes = ?3, acked_through = ?4 WHERE mailbox = ?1",
        )?;
        for row in changed {
            update.execute(params![
                row.mailbox,
                row.queued,
                row.queued_bytes,
                row.acked_through
            ])?;
        }
        Ok(())
    }
}

/// The statement that inserts a message, uncounted (see
/// [`super::apply::insert_message`]).
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO messages (id, mailbox, server_ms, expires_ms, envelope, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The first messages of a mailbox above an id, with their lengths
/// ([`HeldMailboxes::prefix_lengths`]).
pub(crate) const FIRST_AFTER: &str =
    "SELECT id, length(envelope) FROM messages WHERE mailbox = ?1 AND id > ?2 ORDER BY id";

/// `slot`'s statement, taken from `conn`'s cache at its first use.
fn cached<'s, 'c>(
    conn: &'c Connection,
    slot: &'s mut Option<CachedStatement<'c>>,
    sql: &str,
) -> Result<&'s mut CachedStatement<'c>, rusqlite::Error> {
    let statement = match slot.take() {
        Some(statement) => statement,
        None => conn.prepare_cached(sql)?,
    };
    Ok(slot.insert(statement))
}
