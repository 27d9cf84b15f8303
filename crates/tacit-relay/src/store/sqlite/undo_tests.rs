//! Tests of the commands run without a savepoint (`Submit`, `Ack`): a
//! write that fails leaves nothing of the command, by rolling the whole
//! transaction back, and every answer is true.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tacit::Address;

use super::tests::{batch, counted_and_stored, stored, submit_command, with_bob};
use super::*;

/// Queues `n` envelopes of 10 bytes for `to` (`[1; 10]`, `[2; 10]`, ...);
/// answers their ids.
fn queued(conn: &mut Connection, to: &Address, n: u8) -> Vec<u64> {
    let commands = (1..=n).map(|i| submit_command(to, vec![i; 10])).collect();
    batch(conn, commands)
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// The ack moves the acknowledged prefix over the first message (in
/// memory, until the write-back) and deletes the third and fourth by id
/// (not the mailbox's first ones); the fourth's delete fails.
/// Makes every delete of message `id` fail.
pub(super) fn keep_from_deletes(conn: &Connection, id: u64) {
    conn.execute_batch(&format!(
        "CREATE TEMP TRIGGER keep_{id} BEFORE DELETE ON messages
         WHEN OLD.id = {id}
         BEGIN SELECT RAISE(ABORT, 'kept by the test'); END;"
    ))
    .unwrap();
}

#[test]
fn an_ack_whose_second_delete_fails_rolls_the_transaction_back() {
    let (_dir, mut conn, bob) = with_bob("ack-rollback");
    let ids = queued(&mut conn, &bob, 4);
    keep_from_deletes(&conn, ids[3]);
    let (x, y) = (vec![7u8; 20], vec![8u8; 30]);
    let (submit_x, mut x_rx) = submit_command(&bob, x.clone());
    let (ack_reply, mut ack_rx) = oneshot::channel();
    let ack = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0], ids[2], ids[3]],
        reply: ack_reply,
    };
    let (submit_y, mut y_rx) = submit_command(&bob, y.clone());
    let mut commands = vec![submit_x, ack, submit_y];
    run_batch(
        &mut conn,
        &mut commands,
        &WriterLimits::FOR_TESTS,
        &Online::default(),
        &Metrics::default(),
        false,
    );
    assert_eq!(
        x_rx.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(
        ack_rx.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert!(y_rx.try_recv().unwrap().is_ok());
    // The third's delete and the prefix went with the rollback: all four
    // are queued, with y and without x, and counted so.
    assert!(!stored(&conn, &x) && stored(&conn, &y));
    for i in 1..=4u8 {
        assert!(stored(&conn, &[i; 10]));
    }
    assert_eq!(counted_and_stored(&conn), ((5, 70), (5, 70)));
}

#[test]
fn an_ack_that_names_an_id_twice_deletes_nothing() {
    let (_dir, mut conn, bob) = with_bob("ack-twice");
    let ids = queued(&mut conn, &bob, 2);
    let answers = ack_tests::ack(&mut conn, &[(&bob, vec![ids[0], ids[1], ids[0]])]);
    assert_eq!(
        answers[0].as_ref().unwrap_err().code,
        ErrorCode::UnknownMessage
    );
    assert_eq!(counted_and_stored(&conn), ((2, 20), (2, 20)));
}
