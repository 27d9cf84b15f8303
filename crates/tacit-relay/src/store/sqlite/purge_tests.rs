//! Tests of `Purge` on the SQLite backend: a chunk at a time, the
//! messages expiring first, each mailbox's counters exact after every
//! chunk; and the writer's undo journals kept in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::params;
use tacit::Address;

use super::ack_tests::{counters, register, submit};
use super::tests::stored_ids;
use super::*;

/// Runs one `Purge` of at most `limit` messages, as of `now_ms`.
pub(super) fn purge(conn: &mut Connection, now_ms: u64, limit: u32) -> Outcome<u64> {
    let (reply, mut rx) = oneshot::channel();
    let purge = Command::Purge {
        now_ms,
        limit,
        reply,
    };
    sweep_tests::run(conn, vec![purge], false);
    rx.try_recv().unwrap()
}

/// The expired messages counted on the mailbox, not yet reported.
fn unreported(conn: &Connection, address: &Address) -> u64 {
    conn.query_row(
        "SELECT m.expired_unreported FROM devices d JOIN mailboxes m ON m.mailbox = d.mailbox
         WHERE d.user_id = ?1 AND d.device_id = ?2",
        params![address.user_id(), address.device_id()],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_purge_deletes_one_chunk_of_the_first_to_expire_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let mut conn = open_writer(&database, &WriterLimits::FOR_TESTS).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    let carol = Address::new("carol", 1).unwrap();
    register(&mut conn, &bob, 1);
    register(&mut conn, &carol, 2);
    let bob_ids = submit(&mut conn, &bob, &[100, 200, 300]);
    let carol_ids = submit(&mut conn, &carol, &[40, 50]);
    // Carol's first message expires before all of bob's.
    conn.execute(
        "UPDATE messages SET expires_ms = 1 WHERE id = ?1",
        params![carol_ids[0]],
    )
    .unwrap();
    let later = crate::now_ms() + 2 * WriterLimits::FOR_TESTS.ttl_ms;

    // At 2 ms, only carol's first has expired.
    assert_eq!(purge(&mut conn, 2, 2), Ok(1));
    assert_eq!(counters(&conn, &carol), ((1, 50), (1, 50)));
    assert_eq!(unreported(&conn, &carol), 1);

    // Then two at a time, in id order: bob's first two.
    assert_eq!(purge(&mut conn, later, 2), Ok(2));
    assert_eq!(counters(&conn, &bob), ((1, 300), (1, 300)));
    assert_eq!(unreported(&conn, &bob), 2);
    assert_eq!(stored_ids(&conn), vec![bob_ids[2], carol_ids[1]]);

    // One chunk spans both mailboxes, and a chunk not filled is the last.
    assert_eq!(purge(&mut conn, later, 5), Ok(2));
    assert_eq!(counters(&conn, &bob), ((0, 0), (0, 0)));
    assert_eq!(counters(&conn, &carol), ((0, 0), (0, 0)));
    assert_eq!((unreported(&conn, &bob), unreported(&conn, &carol)), (3, 2));
    assert_eq!(purge(&mut conn, later, 5), Ok(0));
}

#[test]
fn the_writer_keeps_its_undo_journals_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let conn = open_writer(&database, &WriterLimits::FOR_TESTS).unwrap();
    // 2 is MEMORY: no statement journal spills to a temporary file.
    let temp_store: i64 = conn
        .pragma_query_value(None, "temp_store", |r| r.get(0))
        .unwrap();
    assert_eq!(temp_store, 2);
}
