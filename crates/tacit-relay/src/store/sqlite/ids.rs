//! Message ids given out by the writer (schema version 10).
//!
//! Up to version 9 `messages.id` was an `AUTOINCREMENT` key: SQLite kept
//! the largest id ever given out in `sqlite_sequence` and rewrote that row
//! with every insert, a b-tree update per message (about a tenth of the
//! SQLite work of a message submitted and acknowledged, measured apart).
//! Now the writer gives the ids out itself: a transaction reads the next
//! id once, inserts each message with the id it takes, and writes the next
//! id back once, before it commits ([`MessageIds`]). The ids are what they
//! were: unique, increasing in commit order, never reused, also past
//! acknowledged ones and across restarts.

use rusqlite::{params, Connection};

/// Version 10: `message_ids` holds the next id (one row), starting past
/// every id the sequence or the table ever held, and `messages` is rebuilt
/// with the same rows and ids without `AUTOINCREMENT`.
pub(crate) const SCHEMA_IDS_IN_CODE: &str = "
CREATE TABLE message_ids (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    next INTEGER NOT NULL
);
INSERT INTO message_ids (only, next) SELECT 0, MAX(
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
    COALESCE((SELECT MAX(id) FROM messages), 0)
) + 1;
CREATE TABLE messages_by_id (
    id INTEGER PRIMARY KEY,
    mailbox INTEGER NOT NULL,
    server_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_by_id (id, mailbox, server_ms, expires_ms, envelope, kind)
    SELECT id, mailbox, server_ms, expires_ms, envelope, kind FROM messages ORDER BY id;
DROP TABLE messages;
ALTER TABLE messages_by_id RENAME TO messages;
CREATE INDEX messages_by_mailbox ON messages (mailbox, id);
CREATE INDEX messages_by_expiry ON messages (expires_ms);
";

/// The next message id of one transaction (or of one savepoint): read
/// from the database at the first id taken, written back by
/// [`MessageIds::write_back`].
#[derive(Debug, Default)]
pub(crate) struct MessageIds {
    /// The next id, once read, and whether ids were taken since.
    next: Option<(i64, bool)>,
}

impl MessageIds {
    /// The id of the next message, taken.
    pub(crate) fn take(&mut self, t: &Connection) -> Result<i64, rusqlite::Error> {
        let next = match self.next {
            Some((next, _)) => next,
            None => read_next(t)?,
        };
        self.next = Some((next.saturating_add(1), true));
        Ok(next)
    }

    /// Writes the next id back if any was taken, and forgets it (the
    /// next id taken reads it again). On an error the caller rolls back
    /// what took the ids.
    pub(crate) fn write_back(&mut self, t: &Connection) -> Result<(), rusqlite::Error> {
        if let Some((next, true)) = self.next.take() {
            t.prepare_cached("UPDATE message_ids SET next = ?1")?
                .execute(params![next])?;
        }
        Ok(())
    }
}

/// The next id: the one stored, or past the largest id in the table if
/// that is larger (never behind the table, even for a database written
/// by hand).
fn read_next(t: &Connection) -> Result<i64, rusqlite::Error> {
    t.prepare_cached(
        "SELECT MAX(next, COALESCE((SELECT MAX(id) FROM messages), 0) + 1) FROM message_ids",
    )?
    .query_row([], |r| r.get(0))
}
