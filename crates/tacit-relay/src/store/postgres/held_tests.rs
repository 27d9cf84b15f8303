//! Tests of the rows a PostgreSQL batch holds (`held`): the counters a
//! batch leaves match the messages stored, a submission is checked against
//! the counts of the same batch, and a command that changes a device
//! through SQL between two submissions is seen by the second, and the rows
//! held are those the statement that locks them read. Each runs
//! batches on a private PostgreSQL server (skipped without its binaries,
//! failed with `TACIT_REQUIRE_POSTGRES=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tacit::Address;
use tacit_relay_proto::ErrorCode;
use tokio::sync::oneshot;

use super::{pool, run_batch, schema, try_batch, Value};
use crate::metrics::Metrics;
use crate::online::Online;
use crate::store::{Command, Outcome, WriterLimits};
use crate::tokenless::Sender;

#[allow(dead_code, unreachable_pub)]
#[path = "../../../tests/common/pg.rs"]
mod pg;

/// A private server with the relay's schema and the device `bob.1`.
async fn with_bob() -> Option<(pg::Postgres, deadpool_postgres::Pool, Address)> {
    let server = pg::Postgres::start()?;
    let pool = pool(&server.url(), 2).unwrap();
    let mut client = pool.get().await.unwrap();
    schema::migrate(&mut client).await.unwrap();
    client
        .execute(
            "INSERT INTO devices (user_id, device_id, identity_key, created_ms) VALUES ('bob', 1, '\\x00', 0)",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    Some((server, pool, Address::new("bob", 1).unwrap()))
}

/// A submission of `len` bytes to `to`, and where its answer goes.
fn submit_and_reply(to: &Address, len: usize) -> (Command, oneshot::Receiver<Outcome<u64>>) {
    let (reply, answer) = oneshot::channel();
    let command = Command::Submit {
        recipient: to.clone(),
        envelope: vec![7; len],
        token_hash: None,
        sender: Sender::Anonymous,
        now_ms: crate::now_ms(),
        reply,
    };
    (command, answer)
}

fn submit(to: &Address, len: usize) -> Command {
    submit_and_reply(to, len).0
}

/// An ack of `ids` by `address`, and where its answer goes.
fn ack_and_reply(address: &Address, ids: Vec<u64>) -> (Command, oneshot::Receiver<Outcome<u32>>) {
    let (reply, answer) = oneshot::channel();
    let command = Command::Ack {
        address: address.clone(),
        ids,
        reply,
    };
    (command, answer)
}

fn ack(address: &Address, ids: Vec<u64>) -> Command {
    ack_and_reply(address, ids).0
}

/// Runs `batch` in one transaction; answers each command's message id or
/// count, or its refusal's code.
async fn run(
    pool: &deadpool_postgres::Pool,
    batch: &[Command],
    limits: &WriterLimits,
) -> Vec<Result<u64, ErrorCode>> {
    let Ok((outcomes, _)) = try_batch(pool, batch, limits, false).await else {
        panic!("the batch did not commit");
    };
    outcomes
        .into_iter()
        .map(|o: Outcome<Value>| match o {
            Ok(Value::U64(n)) => Ok(n),
            Ok(Value::U32(n)) => Ok(u64::from(n)),
            Ok(Value::Unit) => Ok(0),
            Ok(_) => panic!("an unexpected answer"),
            Err(e) => Err(e.code),
        })
        .collect()
}

/// Bob's (`queued`, `queued_bytes`) as counted, and as stored.
async fn counted_and_stored(pool: &deadpool_postgres::Pool) -> ((i64, i64), (i64, i64)) {
    let client = pool.get().await.unwrap();
    let counted = client
        .query_one(
            "SELECT queued, queued_bytes FROM devices WHERE user_id = 'bob'",
            &[],
        )
        .await
        .unwrap();
    let stored = client
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(length(envelope)), 0)::bigint FROM messages WHERE user_id = 'bob'",
            &[],
        )
        .await
        .unwrap();
    (
        (counted.get(0), counted.get(1)),
        (stored.get(0), stored.get(1)),
    )
}

#[tokio::test]
async fn submissions_and_acks_of_one_batch_leave_exact_counters() {
    let Some((_server, pool, bob)) = with_bob().await else {
        return;
    };
    let limits = WriterLimits::FOR_TESTS;
    let first: Vec<u64> = run(
        &pool,
        &[submit(&bob, 10), submit(&bob, 20), submit(&bob, 30)],
        &limits,
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let answers = run(
        &pool,
        &[
            submit(&bob, 40),
            ack(&bob, vec![first[0], first[1]]),
            submit(&bob, 50),
            // Refused, all or nothing: the first id is gone already.
            ack(&bob, vec![first[2], first[0]]),
            ack(&bob, vec![first[2]]),
            submit(&bob, 60),
        ],
        &limits,
    )
    .await;
    assert_eq!(answers[1], Ok(2));
    assert_eq!(answers[3], Err(ErrorCode::UnknownMessage));
    assert_eq!(answers[4], Ok(1));
    assert!(answers.iter().all(|a| a != &Err(ErrorCode::Internal)));
    // 40, 50 and 60 are left.
    assert_eq!(counted_and_stored(&pool).await, ((3, 150), (3, 150)));
}

#[tokio::test]
async fn the_queue_cap_counts_the_messages_of_the_same_batch() {
    let Some((_server, pool, bob)) = with_bob().await else {
        return;
    };
    let limits = WriterLimits {
        queue_cap: 2,
        ..WriterLimits::FOR_TESTS
    };
    let answers = run(
        &pool,
        &[submit(&bob, 1), submit(&bob, 1), submit(&bob, 1)],
        &limits,
    )
    .await;
    assert!(answers[0].is_ok() && answers[1].is_ok());
    assert_eq!(answers[2], Err(ErrorCode::QueueFull));
    assert_eq!(counted_and_stored(&pool).await, ((2, 2), (2, 2)));
}

#[tokio::test]
async fn a_token_set_between_two_submissions_of_a_batch_refuses_the_second() {
    let Some((_server, pool, bob)) = with_bob().await else {
        return;
    };
    let set_token = Command::SetToken {
        address: bob.clone(),
        token_hash: Some([9; 32]),
        reply: oneshot::channel().0,
    };
    let answers = run(
        &pool,
        &[submit(&bob, 5), set_token, submit(&bob, 5)],
        &WriterLimits::FOR_TESTS,
    )
    .await;
    assert!(answers[0].is_ok() && answers[1].is_ok());
    assert_eq!(answers[2], Err(ErrorCode::DeliveryTokenRefused));
    assert_eq!(counted_and_stored(&pool).await, ((1, 5), (1, 5)));
}

#[tokio::test]
async fn a_submission_whose_insert_fails_fails_alone() {
    let Some((_server, pool, bob)) = with_bob().await else {
        return;
    };
    let limits = WriterLimits::FOR_TESTS;
    let first = run(&pool, &[submit(&bob, 10)], &limits).await[0].unwrap();
    // Inserts of 13 bytes fail (as a full disk fails inserts and not
    // deletes); the error is not one that running again cures.
    pool.get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF length(NEW.envelope) = 13 THEN RAISE EXCEPTION 'refused by the test'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_13 BEFORE INSERT ON messages
                 FOR EACH ROW EXECUTE FUNCTION refuse_13();",
        )
        .await
        .unwrap();
    let (before, mut before_answer) = submit_and_reply(&bob, 20);
    let (acked, mut ack_answer) = ack_and_reply(&bob, vec![first]);
    let (failing, mut failing_answer) = submit_and_reply(&bob, 13);
    let (after, mut after_answer) = submit_and_reply(&bob, 30);
    run_batch(
        &pool,
        vec![before, acked, failing, after],
        &limits,
        &Online::default(),
        &Metrics::default(),
    )
    .await;
    assert!(before_answer.try_recv().unwrap().is_ok());
    assert_eq!(ack_answer.try_recv().unwrap(), Ok(1));
    assert_eq!(
        failing_answer.try_recv().unwrap().unwrap_err().code,
        ErrorCode::Internal
    );
    assert!(after_answer.try_recv().unwrap().is_ok());
    // 20 and 30 are queued; 10 was acknowledged.
    assert_eq!(counted_and_stored(&pool).await, ((2, 50), (2, 50)));
}

/// The statement that locks a batch's rows reads the rows the batch holds:
/// a row changed after it, inside the same transaction, is not read again.
#[tokio::test]
async fn the_locking_statement_reads_the_rows_held() {
    let Some((_server, pool, bob)) = with_bob().await else {
        return;
    };
    let mut client = pool.get().await.unwrap();
    client
        .execute(
            "UPDATE devices SET queued = 3, queued_bytes = 30 WHERE user_id = 'bob'",
            &[],
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let mut held = super::apply::lock_rows(&tx, &[submit(&bob, 10)])
        .await
        .unwrap();
    tx.execute(
        "UPDATE devices SET queued = 99, queued_bytes = 990 WHERE user_id = 'bob'",
        &[],
    )
    .await
    .unwrap();
    let row = held.row(&tx, &bob).await.unwrap().expect("bob is held");
    assert_eq!((row.queued, row.queued_bytes), (3, 30));
    // A device that did not exist when the batch took its locks (one
    // another node registers) is read when a command asks for it.
    tx.execute(
        "INSERT INTO devices (user_id, device_id, identity_key, created_ms, queued, queued_bytes)
         VALUES ('carol', 1, '\\x00', 0, 7, 70)",
        &[],
    )
    .await
    .unwrap();
    let carol = Address::new("carol", 1).unwrap();
    let row = held.row(&tx, &carol).await.unwrap().expect("carol is read");
    assert_eq!((row.queued, row.queued_bytes), (7, 70));
}
