//! Mailboxes by number (schema version 8): each device has a mailbox
//! number, its messages are keyed by it, and the mailbox's counters live
//! in a small row of their own.
//!
//! Before, `messages` and its index were keyed by the user id's text and
//! the device id, and every submission and ack rewrote the device's wide
//! row (its keys and token hash) to count. Now a submission reads the
//! device row once (its token hash and mailbox number) and writes only
//! integer-keyed rows: the message, its index entries, the counters.

/// Version 8: the `mailboxes` table takes the counters off `devices`
/// (`queued`, `queued_bytes`, `expired_unreported`), every device gets the
/// number of its mailbox (`devices.mailbox`, unique), and `messages` is
/// rebuilt keyed by that number, with the same ids. `AUTOINCREMENT` stays,
/// and the sequence is carried over, so ids keep increasing past every id
/// ever given out, also past deleted ones. Messages of no registered
/// device (which no one could read) are not carried over.
///
/// The trigger `messages_counted` counted a message into its mailbox's row
/// in the statement that inserted it (version 9 drops it: see
/// [`SCHEMA_COUNT_IN_CODE`]). Deletions are counted by the statements
/// that delete (one update per ack or purge, not per row).
pub(crate) const SCHEMA_MAILBOXES: &str = "
CREATE TABLE mailboxes (
    mailbox INTEGER PRIMARY KEY,
    queued INTEGER NOT NULL DEFAULT 0,
    queued_bytes INTEGER NOT NULL DEFAULT 0,
    expired_unreported INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE devices ADD COLUMN mailbox INTEGER;
UPDATE devices SET mailbox = n.number FROM (
    SELECT user_id, device_id, row_number() OVER (ORDER BY user_id, device_id) AS number
    FROM devices
) AS n
WHERE n.user_id = devices.user_id AND n.device_id = devices.device_id;
INSERT INTO mailboxes (mailbox, queued, queued_bytes, expired_unreported)
    SELECT mailbox, queued, queued_bytes, expired_unreported FROM devices;
CREATE UNIQUE INDEX devices_by_mailbox ON devices (mailbox);
ALTER TABLE devices DROP COLUMN queued;
ALTER TABLE devices DROP COLUMN queued_bytes;
ALTER TABLE devices DROP COLUMN expired_unreported;
CREATE TABLE messages_by_number (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox INTEGER NOT NULL,
    server_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_by_number (id, mailbox, server_ms, expires_ms, envelope, kind)
    SELECT m.id, d.mailbox, m.server_ms, m.expires_ms, m.envelope, m.kind
    FROM messages m JOIN devices d ON d.user_id = m.user_id AND d.device_id = m.device_id
    ORDER BY m.id;
DELETE FROM sqlite_sequence WHERE name = 'messages_by_number';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'messages_by_number', MAX(seq) FROM sqlite_sequence WHERE name = 'messages'
    HAVING COUNT(*) > 0;
DROP TABLE messages;
ALTER TABLE messages_by_number RENAME TO messages;
CREATE INDEX messages_by_mailbox ON messages (mailbox, id);
CREATE INDEX messages_by_expiry ON messages (expires_ms);
CREATE TRIGGER messages_counted AFTER INSERT ON messages BEGIN
    UPDATE mailboxes SET queued = queued + 1, queued_bytes = queued_bytes + length(NEW.envelope)
    WHERE mailbox = NEW.mailbox;
END;
";

/// Version 9: the trigger `messages_counted` goes; [`insert_envelope`]
/// counts each message with an update of its own.
///
/// SQLite keeps a statement journal (the pages a statement changes, as
/// they were) for every statement that writes more than one row and may
/// fail halfway, so that it can undo the statement alone. The insert with
/// its trigger was such a statement: each `Submit` copied about five pages
/// into that journal. A plain insert of one row and an update of one row
/// need none; [`insert_envelope`] undoes the insert itself when the count
/// fails.
///
/// [`insert_envelope`]: super::apply::insert_envelope
pub(crate) const SCHEMA_COUNT_IN_CODE: &str = "
DROP TRIGGER messages_counted;
";
