//! Tests of the mailboxes a transaction holds (`held.rs`): the counters
//! `Submit` and `Ack` keep in memory are the ones checked and the ones
//! written back, every other command finds the true rows, and a write-back
//! that fails takes the whole transaction with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tacit::Address;

use super::tests::{counted_and_stored, stored, submit_command, with_bob};
use super::*;

/// Runs `commands` as one batch under `limits`.
fn run(conn: &mut Connection, commands: Vec<Command>, limits: &WriterLimits) {
    let mut commands = commands;
    run_batch(
        conn,
        &mut commands,
        limits,
        &Online::default(),
        &Metrics::default(),
        false,
    );
}

/// A `Submit` of `envelope` to `to` without a token, received at
/// `now_ms`; its answer.
fn submit_at(
    to: &Address,
    envelope: Vec<u8>,
    now_ms: u64,
) -> (Command, oneshot::Receiver<Outcome<u64>>) {
    let (mut command, rx) = submit_command(to, envelope);
    if let Command::Submit { now_ms: at, .. } = &mut command {
        *at = now_ms;
    }
    (command, rx)
}

/// The code of the refusal `rx` was answered with.
fn refusal<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<Outcome<T>>) -> ErrorCode {
    rx.try_recv().unwrap().unwrap_err().code
}

/// Makes the write of a mailbox's counters fail when it would record
/// `queued` messages.
fn refuse_count(conn: &Connection, queued: u64) {
    conn.execute_batch(&format!(
        "CREATE TEMP TRIGGER refuse_count BEFORE UPDATE ON mailboxes
         WHEN NEW.queued = {queued}
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
    ))
    .unwrap();
}

#[test]
fn a_queue_cap_counts_the_messages_of_the_same_transaction() {
    let (_dir, mut conn, bob) = with_bob("held-cap");
    let limits = WriterLimits {
        queue_cap: 2,
        ..WriterLimits::FOR_TESTS
    };
    let (commands, answers): (Vec<_>, Vec<_>) =
        (1..=3u8).map(|i| submit_command(&bob, vec![i; 10])).unzip();
    run(&mut conn, commands, &limits);
    let answers: Vec<_> = answers
        .into_iter()
        .map(|mut rx| rx.try_recv().unwrap())
        .collect();
    assert!(answers[0].is_ok() && answers[1].is_ok(), "{answers:?}");
    assert_eq!(answers[2].as_ref().unwrap_err().code, ErrorCode::QueueFull);
    assert_eq!(counted_and_stored(&conn), ((2, 20), (2, 20)));
}

#[test]
fn a_token_set_in_the_same_batch_is_required_by_the_next_submission() {
    let (_dir, mut conn, bob) = with_bob("held-token");
    let (before, mut before_rx) = submit_command(&bob, vec![1; 10]);
    let (reply, mut token_rx) = oneshot::channel();
    let set_token = Command::SetToken {
        address: bob.clone(),
        token_hash: Some([0x5a; 32]),
        reply,
    };
    let (after, mut after_rx) = submit_command(&bob, vec![2; 10]);
    run(
        &mut conn,
        vec![before, set_token, after],
        &WriterLimits::FOR_TESTS,
    );
    assert!(before_rx.try_recv().unwrap().is_ok());
    assert!(token_rx.try_recv().unwrap().is_ok());
    // The row held before the token was set had none: it was dropped.
    assert_eq!(refusal(&mut after_rx), ErrorCode::DeliveryTokenRefused);
    assert!(!stored(&conn, &[2; 10]));
    assert_eq!(counted_and_stored(&conn), ((1, 10), (1, 10)));
}

#[test]
fn a_purge_in_the_same_batch_finds_the_counts_held_before_it() {
    let (_dir, mut conn, bob) = with_bob("held-purge");
    let limits = WriterLimits::FOR_TESTS;
    // Two messages expired long ago, a purge, then a fresh one: the purge
    // takes the two off counters that must already hold them.
    let (old_a, _) = submit_at(&bob, vec![1; 10], 1);
    let (old_b, _) = submit_at(&bob, vec![2; 20], 2);
    let (reply, mut purged) = oneshot::channel();
    let purge = Command::Purge {
        now_ms: crate::now_ms(),
        limit: 100,
        reply,
    };
    let (fresh, mut fresh_rx) = submit_command(&bob, vec![3; 30]);
    run(&mut conn, vec![old_a, old_b, purge, fresh], &limits);
    assert_eq!(purged.try_recv().unwrap().unwrap(), 2);
    assert!(fresh_rx.try_recv().unwrap().is_ok());
    assert_eq!(counted_and_stored(&conn), ((1, 30), (1, 30)));
}

#[test]
fn a_write_back_that_fails_at_the_commit_rolls_the_whole_batch_back() {
    let (_dir, mut conn, bob) = with_bob("held-commit");
    refuse_count(&conn, 3);
    let (commands, answers): (Vec<_>, Vec<_>) =
        (1..=3u8).map(|i| submit_command(&bob, vec![i; 10])).unzip();
    run(&mut conn, commands, &WriterLimits::FOR_TESTS);
    for mut rx in answers {
        assert_eq!(refusal(&mut rx), ErrorCode::Internal);
    }
    assert_eq!(counted_and_stored(&conn), ((0, 0), (0, 0)));
    // Nothing is held over: the next batch counts from the true rows.
    let (next, mut next_rx) = submit_command(&bob, vec![9; 40]);
    run(&mut conn, vec![next], &WriterLimits::FOR_TESTS);
    assert!(next_rx.try_recv().unwrap().is_ok());
    assert_eq!(counted_and_stored(&conn), ((1, 40), (1, 40)));
}

#[test]
fn a_write_back_that_fails_before_another_command_leaves_it_for_a_new_transaction() {
    let (_dir, mut conn, bob) = with_bob("held-before");
    refuse_count(&conn, 2);
    let (a, mut a_rx) = submit_command(&bob, vec![1; 10]);
    let (b, mut b_rx) = submit_command(&bob, vec![2; 10]);
    let (reply, mut token_rx) = oneshot::channel();
    let set_token = Command::SetToken {
        address: bob.clone(),
        token_hash: None,
        reply,
    };
    let (c, mut c_rx) = submit_command(&bob, vec![3; 10]);
    run(
        &mut conn,
        vec![a, b, set_token, c],
        &WriterLimits::FOR_TESTS,
    );
    for rx in [&mut a_rx, &mut b_rx] {
        assert_eq!(refusal(rx), ErrorCode::Internal);
    }
    assert!(token_rx.try_recv().unwrap().is_ok());
    assert!(c_rx.try_recv().unwrap().is_ok());
    assert!(!stored(&conn, &[1; 10]) && !stored(&conn, &[2; 10]));
    assert!(stored(&conn, &[3; 10]));
    assert_eq!(counted_and_stored(&conn), ((1, 10), (1, 10)));
}

#[test]
fn acks_and_submissions_of_one_batch_leave_exact_counters() {
    let (_dir, mut conn, bob) = with_bob("held-acks");
    let (commands, answers): (Vec<_>, Vec<_>) = [10usize, 20, 30]
        .iter()
        .map(|&len| submit_command(&bob, vec![7; len]))
        .unzip();
    run(&mut conn, commands, &WriterLimits::FOR_TESTS);
    let ids: Vec<u64> = answers
        .into_iter()
        .map(|mut rx| rx.try_recv().unwrap().unwrap())
        .collect();
    let (reply, mut acked) = oneshot::channel();
    let ack = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0], ids[2]],
        reply,
    };
    let (more, mut more_rx) = submit_command(&bob, vec![8; 5]);
    let (reply, mut acked_again) = oneshot::channel();
    let ack_again = Command::Ack {
        address: bob.clone(),
        ids: vec![ids[0]],
        reply,
    };
    run(
        &mut conn,
        vec![ack, more, ack_again],
        &WriterLimits::FOR_TESTS,
    );
    assert_eq!(acked.try_recv().unwrap().unwrap(), 2);
    assert!(more_rx.try_recv().unwrap().is_ok());
    assert_eq!(refusal(&mut acked_again), ErrorCode::UnknownMessage);
    assert_eq!(counted_and_stored(&conn), ((2, 25), (2, 25)));
}
