//! Tests of the mailboxes by number (schema version 8): a database of the
//! version before keeps its queued messages, ids and counters through the
//! migration, and they are delivered and acknowledged as before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::params;
use tacit::Address;

use super::ack_tests::{ack, counters, register, submit};
use super::*;

/// The schema version before mailboxes by number.
const BEFORE: usize = 7;

/// A database at version 7 with bob.1 (three queued messages, one of
/// them expired and reported as such twice before), bob.2 (one) and
/// carol.1 (none), whose last message id given out (9) was acknowledged.
fn old_database(path: &std::path::Path) {
    assert_eq!(MIGRATIONS[BEFORE], mailboxes::SCHEMA_MAILBOXES);
    let c = Connection::open(path).unwrap();
    for migration in &MIGRATIONS[..BEFORE] {
        c.execute_batch(migration).unwrap();
    }
    c.pragma_update(None, "user_version", BEFORE).unwrap();
    for (user, device, queued, bytes, expired) in [
        ("bob", 1, 3, 3 + 4 + 5, 2),
        ("bob", 2, 1, 6, 0),
        ("carol", 1, 0, 0, 0),
    ] {
        c.execute(
            "INSERT INTO devices (user_id, device_id, identity_key, created_ms, queued, queued_bytes, expired_unreported)
             VALUES (?1, ?2, x'00', 0, ?3, ?4, ?5)",
            params![user, device, queued, bytes, expired],
        )
        .unwrap();
    }
    let far = crate::now_ms() + 3_600_000;
    for (id, user, device, len, kind) in [
        (2, "bob", 1, 3, 0),
        (4, "bob", 2, 6, 0),
        (5, "bob", 1, 4, 1),
        (7, "bob", 1, 5, 0),
        (9, "carol", 1, 1, 0),
    ] {
        c.execute(
            "INSERT INTO messages (id, user_id, device_id, server_ms, expires_ms, envelope, kind) VALUES (?1, ?2, ?3, ?1, ?4, ?5, ?6)",
            params![id, user, device, far, vec![u8::try_from(id).unwrap(); len], kind],
        )
        .unwrap();
    }
    // Message 9 was acknowledged: its id must never be given out again.
    c.execute("DELETE FROM messages WHERE id = 9", []).unwrap();
    let seq: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 9);
}

fn backlog(database: &Database, address: &Address) -> Vec<(u64, Vec<u8>, u32)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let readers = Readers::open(database, 1).unwrap();
    runtime
        .block_on(readers.messages_after(address, 0, crate::now_ms(), 100))
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.envelope, m.kind))
        .collect()
}

#[test]
fn queued_messages_survive_the_migration_and_are_delivered_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    old_database(&path);
    let database = Database::Sqlite(path);
    let mut conn = open(&database, false).unwrap();
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len());
    let bob1 = Address::new("bob", 1).unwrap();
    let bob2 = Address::new("bob", 2).unwrap();
    let carol = Address::new("carol", 1).unwrap();
    // Each mailbox holds its own messages, with their ids, envelopes and
    // kinds, in id order; the counters came along.
    assert_eq!(
        backlog(&database, &bob1),
        vec![(2, vec![2; 3], 0), (5, vec![5; 4], 1), (7, vec![7; 5], 0)]
    );
    assert_eq!(backlog(&database, &bob2), vec![(4, vec![4; 6], 0)]);
    assert_eq!(backlog(&database, &carol), vec![]);
    assert_eq!(counters(&conn, &bob1), ((3, 12), (3, 12)));
    assert_eq!(counters(&conn, &bob2), ((1, 6), (1, 6)));
    assert_eq!(counters(&conn, &carol), ((0, 0), (0, 0)));
    let (reply, mut rx) = oneshot::channel();
    run_batch(
        &mut conn,
        &mut vec![Command::TakeExpired {
            address: bob1.clone(),
            reply,
        }],
        &WriterLimits::FOR_TESTS,
        &Online::default(),
        &Metrics::default(),
        false,
    );
    assert_eq!(rx.try_recv().unwrap(), Ok(2));
    // An old message is acknowledged only from its own mailbox.
    let refused = ack(&mut conn, &[(&bob2, vec![2]), (&carol, vec![4])]);
    assert!(refused
        .iter()
        .all(|r| r.as_ref().unwrap_err().code == ErrorCode::UnknownMessage));
    assert_eq!(
        ack(&mut conn, &[(&bob1, vec![2, 7]), (&bob2, vec![4])]),
        vec![Ok(2), Ok(1)]
    );
    assert_eq!(backlog(&database, &bob1), vec![(5, vec![5; 4], 1)]);
    assert_eq!(backlog(&database, &bob2), vec![]);
    assert_eq!(counters(&conn, &bob1), ((1, 4), (1, 4)));
    assert_eq!(counters(&conn, &bob2), ((0, 0), (0, 0)));
    // New ids go on past every id given out before, the acknowledged
    // last one (9) included.
    let ids = submit(&mut conn, &carol, &[8, 8]);
    assert_eq!(ids, vec![10, 11]);
    assert_eq!(backlog(&database, &carol).len(), 2);
    assert_eq!(counters(&conn, &carol), ((2, 16), (2, 16)));
    assert_eq!(ack(&mut conn, &[(&carol, ids)]), vec![Ok(2)]);
    assert_eq!(counters(&conn, &carol), ((0, 0), (0, 0)));
    // Opening again changes nothing.
    drop(conn);
    let conn = open(&database, false).unwrap();
    assert_eq!(counters(&conn, &bob1), ((1, 4), (1, 4)));
}

/// Ids stay strictly increasing when the newest message of the database
/// is acknowledged: an id is never given out twice.
#[test]
fn an_acknowledged_newest_id_is_not_given_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let mut conn = open(&database, false).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    register(&mut conn, &bob, 4);
    let first = submit(&mut conn, &bob, &[5]);
    assert_eq!(ack(&mut conn, &[(&bob, first.clone())]), vec![Ok(1)]);
    drop(conn);
    let mut conn = open(&database, false).unwrap();
    let second = submit(&mut conn, &bob, &[5]);
    assert!(second[0] > first[0], "{second:?} after {first:?}");
}

/// Removing a device from its user's list takes its mailbox and its
/// messages and nothing of another device's; a device registered again
/// gets a new, empty mailbox.
#[test]
fn a_removed_device_takes_its_mailbox_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    old_database(&path);
    let database = Database::Sqlite(path);
    let mut conn = open(&database, false).unwrap();
    let count = |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM mailboxes"), 3);
    assert_eq!(
        count(&conn, "SELECT COUNT(DISTINCT mailbox) FROM devices"),
        3
    );
    let carol = Address::new("carol", 1).unwrap();
    let kept = submit(&mut conn, &carol, &[3]);
    // bob's first list names bob.1 with another identity key than the
    // stored one: both of bob's old devices go, bob.1 is registered anew.
    let bob1 = Address::new("bob", 1).unwrap();
    register(&mut conn, &bob1, 4);
    assert_eq!(backlog(&database, &bob1), vec![]);
    assert_eq!(counters(&conn, &bob1), ((0, 0), (0, 0)));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM mailboxes"), 2);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM messages WHERE mailbox NOT IN (SELECT mailbox FROM devices)"
        ),
        0
    );
    assert_eq!(backlog(&database, &carol), vec![(kept[0], vec![0; 3], 0)]);
    assert_eq!(counters(&conn, &carol), ((1, 3), (1, 3)));
}
