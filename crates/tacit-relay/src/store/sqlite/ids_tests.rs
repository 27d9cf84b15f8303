//! Tests of the message ids the writer gives out (schema version 10):
//! unique and increasing across transactions, restarts
//! and the migration from `AUTOINCREMENT`, never reusing an acknowledged
//! id, never behind the table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::params;

use super::ack_tests::{ack, register, submit};
use super::tests::{stored_ids, temp_db};
use super::*;

/// The schema version before ids given out by the writer.
const BEFORE: usize = 9;

/// The next id as stored.
fn stored_next(conn: &Connection) -> i64 {
    conn.query_row("SELECT next FROM message_ids", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn ids_increase_across_batches_acks_and_restarts() {
    let (_dir, path) = temp_db("ids-restart");
    let database = Database::Sqlite(path);
    let bob = tacit::Address::new("bob", 1).unwrap();
    let first = {
        let mut conn = open(&database, false).unwrap();
        register(&mut conn, &bob, 3);
        let ids = submit(&mut conn, &bob, &[10, 20, 30]);
        // The newest is acknowledged: its id must not come back.
        assert!(ack(&mut conn, &[(&bob, vec![ids[2]])])[0].is_ok());
        assert_eq!(stored_next(&conn), i64::try_from(ids[2]).unwrap() + 1);
        ids
    };
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    let mut conn = open(&database, false).unwrap();
    let later = submit(&mut conn, &bob, &[40, 50]);
    assert!(later[0] > first[2] && later[1] > later[0], "{later:?}");
}

#[test]
fn the_next_id_is_never_behind_the_table() {
    let (_dir, path) = temp_db("ids-behind");
    let mut conn = open(&Database::Sqlite(path), false).unwrap();
    let bob = tacit::Address::new("bob", 1).unwrap();
    register(&mut conn, &bob, 3);
    let ids = submit(&mut conn, &bob, &[10, 20]);
    // A next id set back by hand would collide with a stored message.
    conn.execute("UPDATE message_ids SET next = 1", []).unwrap();
    let more = submit(&mut conn, &bob, &[30]);
    assert!(more[0] > ids[1], "{ids:?} {more:?}");
}

#[test]
fn the_migration_keeps_every_id_and_starts_past_the_last_one_given_out() {
    let (_dir, path) = temp_db("ids-migrate");
    {
        let c = Connection::open(&path).unwrap();
        for migration in &MIGRATIONS[..BEFORE] {
            c.execute_batch(migration).unwrap();
        }
        c.pragma_update(None, "user_version", BEFORE).unwrap();
        c.execute(
            "INSERT INTO mailboxes (mailbox, queued, queued_bytes) VALUES (1, 2, 7)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO devices (user_id, device_id, identity_key, created_ms, mailbox) VALUES ('bob', 1, x'00', 0, 1)",
            [],
        )
        .unwrap();
        for (id, len) in [(3, 3), (5, 4), (8, 1)] {
            c.execute(
                "INSERT INTO messages (id, mailbox, server_ms, expires_ms, envelope) VALUES (?1, 1, 0, ?2, ?3)",
                params![id, crate::now_ms() + 3_600_000, vec![1u8; len]],
            )
            .unwrap();
        }
        // Message 8 was acknowledged: its id is never given out again.
        c.execute("DELETE FROM messages WHERE id = 8", []).unwrap();
    }
    let database = Database::Sqlite(path);
    let conn = open(&database, false).unwrap();
    assert_eq!(stored_ids(&conn), [3, 5]);
    assert_eq!(stored_next(&conn), 9);
    let table: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'messages'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!table.contains("AUTOINCREMENT"), "{table}");
    drop(conn);
    let mut conn = open(&database, false).unwrap();
    let bob = tacit::Address::new("bob", 1).unwrap();
    assert_eq!(submit(&mut conn, &bob, &[2]), [9]);
}
