//! Tests of `Ack` on the SQLite backend: the messages go and the
//! mailbox's counters (`queued`, `queued_bytes`) drop by exactly what
//! went, for several acks in one batch and for refused acks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::params;
use tacit::identity::DeviceList;
use tacit::{Address, IdentityKeyPair};

use super::*;

fn limits() -> WriterLimits {
    WriterLimits::FOR_TESTS
}

/// Runs `commands` as one batch, as the writer thread does.
fn run(conn: &mut Connection, commands: Vec<Command>) {
    let mut commands = commands;
    run_batch(
        conn,
        &mut commands,
        &limits(),
        &Online::default(),
        &Metrics::default(),
        false,
    );
}

pub(super) fn register(conn: &mut Connection, address: &Address, seed: u8) {
    let identity_key = IdentityKeyPair::from_seed(&[seed; 32]).public_key();
    let user = tacit::identity::UserKeyPair::from_seed(&[seed; 32]);
    let list = DeviceList::sign(
        &user,
        address.user_id(),
        1,
        &[(address.device_id(), identity_key, 0)],
    )
    .unwrap();
    let (reply, mut rx) = oneshot::channel();
    run(
        conn,
        vec![Command::Register {
            address: address.clone(),
            identity_key,
            list_bytes: list.to_wire(),
            device_list: Box::new(list),
            now_ms: crate::now_ms(),
            reply,
        }],
    );
    assert_eq!(rx.try_recv().unwrap(), Ok(true));
}

/// Queues one envelope of `len` bytes per entry, in one batch; answers
/// the ids.
pub(super) fn submit(conn: &mut Connection, to: &Address, lens: &[usize]) -> Vec<u64> {
    let (commands, receivers): (Vec<_>, Vec<_>) = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let (reply, rx) = oneshot::channel();
            let command = Command::Submit {
                recipient: to.clone(),
                envelope: vec![u8::try_from(i % 251).unwrap(); len],
                token_hash: None,
                sender: crate::tokenless::Sender::Anonymous,
                now_ms: crate::now_ms(),
                reply,
            };
            (command, rx)
        })
        .unzip();
    run(conn, commands);
    receivers
        .into_iter()
        .map(|mut rx| rx.try_recv().unwrap().unwrap())
        .collect()
}

/// Runs one `Ack` per entry of `acks`, all in one batch; answers each.
pub(super) fn ack(conn: &mut Connection, acks: &[(&Address, Vec<u64>)]) -> Vec<Outcome<u32>> {
    let (commands, receivers): (Vec<_>, Vec<_>) = acks
        .iter()
        .map(|(address, ids)| {
            let (reply, rx) = oneshot::channel();
            let command = Command::Ack {
                address: (*address).clone(),
                ids: ids.clone(),
                reply,
            };
            (command, rx)
        })
        .unzip();
    run(conn, commands);
    receivers
        .into_iter()
        .map(|mut rx| rx.try_recv().unwrap())
        .collect()
}

/// (`queued`, `queued_bytes`) as the mailbox row counts them, and
/// (messages, envelope bytes) as queued in the table.
pub(super) fn counters(conn: &Connection, address: &Address) -> ((u64, u64), (u64, u64)) {
    let (user, device) = (address.user_id(), address.device_id());
    let counted = conn
        .query_row(
            "SELECT m.queued, m.queued_bytes FROM devices d JOIN mailboxes m ON m.mailbox = d.mailbox
             WHERE d.user_id = ?1 AND d.device_id = ?2",
            params![user, device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let stored = conn
        .query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(length(envelope)), 0) FROM {}
                 WHERE mailbox = (SELECT mailbox FROM devices WHERE user_id = ?1 AND device_id = ?2)",
                tests::QUEUED
            ),
            params![user, device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (counted, stored)
}

#[test]
fn acks_in_one_batch_take_exactly_their_messages_and_bytes_off_the_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let database = Database::Sqlite(dir.path().join("relay.db"));
    let mut conn = open_writer(&database, &limits()).unwrap();
    let bob = Address::new("bob", 1).unwrap();
    let carol = Address::new("carol", 1).unwrap();
    register(&mut conn, &bob, 1);
    register(&mut conn, &carol, 2);
    // Envelopes of different sizes, so that a wrong length would show.
    let bob_lens: Vec<usize> = (0..40).map(|i| 100 + 37 * i).collect();
    let bob_ids = submit(&mut conn, &bob, &bob_lens);
    let carol_ids = submit(&mut conn, &carol, &[300, 5000, 70]);
    let total: u64 = bob_lens.iter().map(|&l| l as u64).sum();
    assert_eq!(counters(&conn, &bob), ((40, total), (40, total)));

    // Three acks of bob's in one batch, ids out of order, beside one of
    // carol's.
    let first: Vec<u64> = vec![bob_ids[5], bob_ids[0], bob_ids[17]];
    let second: Vec<u64> = bob_ids[20..30].iter().rev().copied().collect();
    let third = vec![bob_ids[39]];
    let answers = ack(
        &mut conn,
        &[
            (&bob, first.clone()),
            (&carol, vec![carol_ids[1]]),
            (&bob, second.clone()),
            (&bob, third.clone()),
        ],
    );
    assert_eq!(answers, vec![Ok(3), Ok(1), Ok(10), Ok(1)]);
    let gone: Vec<u64> = first.iter().chain(&second).chain(&third).copied().collect();
    let gone_bytes: u64 = bob_ids
        .iter()
        .zip(&bob_lens)
        .filter(|(id, _)| gone.contains(id))
        .map(|(_, &l)| l as u64)
        .sum();
    let left = (40 - 14, total - gone_bytes);
    assert_eq!(counters(&conn, &bob), (left, left));
    assert_eq!(counters(&conn, &carol), ((2, 370), (2, 370)));

    // Refused acks change nothing: an id of another mailbox, an id given
    // twice, an id already acknowledged, an id past SQLite's integers.
    let answers = ack(
        &mut conn,
        &[
            (&bob, vec![bob_ids[1], carol_ids[0]]),
            (&bob, vec![bob_ids[2], bob_ids[2]]),
            (&bob, vec![bob_ids[3], bob_ids[0]]),
            (&bob, vec![bob_ids[4], u64::MAX]),
        ],
    );
    for answer in &answers {
        assert_eq!(
            answer.as_ref().unwrap_err().code,
            ErrorCode::UnknownMessage,
            "{answers:?}"
        );
    }
    assert_eq!(counters(&conn, &bob), (left, left));
    assert_eq!(counters(&conn, &carol), ((2, 370), (2, 370)));

    // The rest, in one ack: both counters reach zero.
    let rest: Vec<u64> = bob_ids
        .iter()
        .filter(|id| !gone.contains(id))
        .copied()
        .collect();
    assert_eq!(ack(&mut conn, &[(&bob, rest)]), vec![Ok(26)]);
    assert_eq!(counters(&conn, &bob), ((0, 0), (0, 0)));
}
