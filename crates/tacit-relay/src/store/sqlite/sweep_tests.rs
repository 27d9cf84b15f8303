//! Tests of acknowledged prefixes and the sweep: acknowledged messages
//! are never read again, the counters stay exact, the sweep deletes only
//! what is acknowledged, and the expiry purge does not count them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::params;
use tacit::Address;

use super::ack_tests::{ack, counters, register, submit};
use super::readers::MESSAGES_AFTER;
use super::sweep::{Advance, Sweep};
use super::*;

fn bob_with(lens: &[usize]) -> (tempfile::TempDir, Connection, Address, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let mut conn = open_writer(&database, &WriterLimits::FOR_TESTS).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    register(&mut conn, &bob, 1);
    let ids = submit(&mut conn, &bob, lens);
    (dir, conn, bob, ids)
}

/// Runs `commands` as one batch, as the writer does after a batch that
/// found the storage full or not.
pub(super) fn run(
    conn: &mut Connection,
    mut commands: Vec<Command>,
    storage_full: bool,
) -> AfterBatch {
    run_batch(
        conn,
        &mut commands,
        &WriterLimits::FOR_TESTS,
        &Online::default(),
        &Metrics::default(),
        storage_full,
    )
}

/// The ids a connection logging in as `address` reads from the start.
fn backlog(conn: &Connection, address: &Address) -> Vec<u64> {
    conn.prepare(MESSAGES_AFTER)
        .unwrap()
        .query_map(params![address.user_id(), address.device_id(), 0, 0], |r| {
            r.get(0)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Rows in the table, acknowledged or not.
fn rows(conn: &Connection) -> u64 {
    conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

fn acked_through(conn: &Connection) -> u64 {
    conn.query_row("SELECT acked_through FROM mailboxes", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_acknowledged_prefix_stays_until_the_sweep_and_is_never_read_again() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30, 40, 50]);
    // The first three, out of order in the ack.
    assert_eq!(
        ack(&mut conn, &[(&bob, vec![ids[2], ids[0], ids[1]])]),
        vec![Ok(3)]
    );
    assert_eq!(acked_through(&conn), ids[2]);
    assert_eq!(rows(&conn), 5);
    assert_eq!(backlog(&conn, &bob), ids[3..].to_vec());
    assert_eq!(counters(&conn, &bob), ((2, 90), (2, 90)));
    // Acknowledged again: refused, nothing changes.
    let again = ack(&mut conn, &[(&bob, vec![ids[1]])]);
    assert_eq!(
        again[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownMessage
    );
    assert_eq!(counters(&conn, &bob), ((2, 90), (2, 90)));
    // A writer started on this file finds the three rows and sweeps them.
    let mut sweep = Sweep::load(&conn).unwrap();
    assert_eq!(sweep.waiting(), 3);
    assert_eq!(sweep.run_all(&mut conn).unwrap(), 3);
    assert!(!sweep.pending());
    assert_eq!(rows(&conn), 2);
    assert_eq!(backlog(&conn, &bob), ids[3..].to_vec());
    assert!(!Sweep::load(&conn).unwrap().pending());
}

#[test]
fn ids_past_a_gap_are_deleted_at_once_and_the_prefix_joins_them_later() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30, 40, 50]);
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[3], ids[1]])]), vec![Ok(2)]);
    assert_eq!(acked_through(&conn), 0);
    assert_eq!(rows(&conn), 3);
    assert_eq!(counters(&conn, &bob), ((3, 90), (3, 90)));
    // The first, then the third: each is the first left, over the gaps.
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[0]])]), vec![Ok(1)]);
    assert_eq!(acked_through(&conn), ids[0]);
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[2]])]), vec![Ok(1)]);
    assert_eq!(acked_through(&conn), ids[2]);
    assert_eq!(backlog(&conn, &bob), vec![ids[4]]);
    assert_eq!(counters(&conn, &bob), ((1, 50), (1, 50)));
    // An ack of the deleted fourth is refused though it lies below no
    // prefix.
    let again = ack(&mut conn, &[(&bob, vec![ids[3]])]);
    assert_eq!(
        again[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownMessage
    );
}

#[test]
fn the_sweep_deletes_nothing_above_the_stored_prefix() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30, 40]);
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[0], ids[1]])]), vec![Ok(2)]);
    let mailbox: i64 = conn
        .query_row("SELECT mailbox FROM mailboxes", [], |r| r.get(0))
        .unwrap();
    // A sweep told more than was committed (as after a transaction that
    // moved the prefix and rolled back).
    let mut sweep = Sweep::load(&conn).unwrap();
    sweep.note(Advance {
        mailbox,
        from: 0,
        through: i64::try_from(ids[3]).unwrap(),
        rows: 4,
    });
    assert_eq!(sweep.run_all(&mut conn).unwrap(), 2);
    assert_eq!(backlog(&conn, &bob), ids[2..].to_vec());
    assert_eq!(counters(&conn, &bob), ((2, 70), (2, 70)));
}

#[test]
fn the_purge_counts_no_acknowledged_message_as_expired() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30]);
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[0]])]), vec![Ok(1)]);
    conn.execute("UPDATE messages SET expires_ms = 1", [])
        .unwrap();
    // A chunk answers the rows it deleted, three (the writer's purge goes
    // on while chunks are full), and two messages expired.
    assert_eq!(purge_tests::purge(&mut conn, 2, 100), Ok(3));
    assert_eq!(rows(&conn), 0);
    assert_eq!(counters(&conn, &bob), ((0, 0), (0, 0)));
    let expired: u64 = conn
        .query_row("SELECT expired_unreported FROM mailboxes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(expired, 2);
}

/// Through the writer thread: with no command waiting, it sweeps what was
/// acknowledged.
#[tokio::test]
async fn an_idle_writer_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let (writer, thread, bob) = tests::writer_with_bob(&path, WriterLimits::FOR_TESTS).await;
    let mut ids = Vec::new();
    for i in 0..3u8 {
        ids.push(tests::submit(&writer, &bob, vec![i; 100]).await.unwrap());
    }
    assert_eq!(tests::ack(&writer, &bob, ids).await, Ok(3));
    let conn = open(&Database::Sqlite(path), true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rows(&conn) > 0 {
        assert!(std::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    writer.stop().await;
    thread.join().unwrap();
}

#[test]
fn after_a_batch_that_found_the_storage_full_acks_delete_at_once() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30]);
    let (reply, mut rx) = oneshot::channel();
    let ack = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0], ids[1]],
        reply,
    };
    run(&mut conn, vec![ack], true);
    assert_eq!(rx.try_recv().unwrap(), Ok(2));
    assert_eq!(acked_through(&conn), 0);
    assert_eq!(rows(&conn), 1);
    assert_eq!(counters(&conn, &bob), ((1, 30), (1, 30)));
}

#[test]
fn a_batch_answered_storage_full_tells_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let mut conn = open_limited(&database, false, Some(64 * 1024), false).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    register(&mut conn, &bob, 1);
    let mut full = false;
    for i in 0..100u8 {
        let (command, _rx) = tests::submit_command(&bob, vec![i; 3000]);
        if run(&mut conn, vec![command], false).storage_full {
            full = true;
            break;
        }
    }
    assert!(full, "the cap never bit");
}

/// Ids far from zero: the first window starts at the first row the ack
/// acknowledged, not at the mailbox's earlier prefix (zero), so one
/// sweep transaction takes it.
#[test]
fn one_window_sweeps_a_prefix_far_from_zero() {
    let (_dir, mut conn, bob, _) = bob_with(&[]);
    conn.execute("UPDATE message_ids SET next = 5000000", [])
        .unwrap();
    let ids = submit(&mut conn, &bob, &[10, 20]);
    assert_eq!(ids[0], 5_000_000);
    let (reply, mut rx) = oneshot::channel();
    let ack = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0]],
        reply,
    };
    let after = run(&mut conn, vec![ack], false);
    assert_eq!(rx.try_recv().unwrap(), Ok(1));
    let mut sweep = Sweep::new(2);
    for advance in after.advanced {
        sweep.note(advance);
    }
    assert_eq!(sweep.run(&mut conn).unwrap(), 1);
    assert!(!sweep.pending());
    assert_eq!(rows(&conn), 1);
}

/// A prefix moved, written back before another command, and rolled back
/// with the whole transaction: nothing is acknowledged, nothing is left
/// to sweep.
#[test]
fn a_prefix_rolled_back_with_its_transaction_is_not_swept() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30, 40]);
    undo_tests::keep_from_deletes(&conn, ids[3]);
    let (reply, mut first) = oneshot::channel();
    let prefix = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0]],
        reply,
    };
    let (reply, mut token) = oneshot::channel();
    let set_token = Command::SetToken {
        address: bob.clone(),
        token_hash: None,
        reply,
    };
    let (reply, mut failing) = oneshot::channel();
    let fails = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[2], ids[3]],
        reply,
    };
    let after = run(&mut conn, vec![prefix, set_token, fails], false);
    assert!(after.advanced.is_empty());
    assert_eq!(
        first.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(
        token.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(
        failing.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(acked_through(&conn), 0);
    assert_eq!(backlog(&conn, &bob), ids);
    assert_eq!(counters(&conn, &bob), ((4, 100), (4, 100)));
    assert!(!Sweep::load(&conn).unwrap().pending());
}

/// After a batch that found the storage full, the writer sweeps
/// everything acknowledged before the next batch runs.
#[test]
fn after_a_full_storage_the_writer_sweeps_before_the_next_batch() {
    let (_dir, mut conn, bob, ids) = bob_with(&[10, 20, 30]);
    assert_eq!(ack(&mut conn, &[(&bob, vec![ids[0], ids[1]])]), vec![Ok(2)]);
    let sweep = Sweep::load(&conn).unwrap();
    assert!(sweep.pending() && !sweep.due_when_idle());
    let mut writer = WriterThread {
        conn,
        limits: WriterLimits::FOR_TESTS,
        online: Arc::default(),
        metrics: Arc::default(),
        checkpointer: None,
        sweep,
        storage_full: true,
        sweep_failed: false,
    };
    writer.run_commands(&mut Vec::new());
    assert!(!writer.sweep.pending());
    assert_eq!(rows(&writer.conn), 1);
}
