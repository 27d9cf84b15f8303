#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The relay on PostgreSQL: the behaviours of the SQLite relay, and those
//! of several nodes on one database (wake-ups and logins across nodes,
//! prekey claims exactly once across nodes, a database restart).
//!
//! Each test starts a private server (`common::pg`); without PostgreSQL's
//! binaries they print why and pass, unless `TACIT_REQUIRE_POSTGRES=1`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::pg::Postgres;
use common::*;
use tacit::group::multi;
use tacit::rand_core::OsRng;
use tacit::{Address, IdentityKey};
use tacit_relay::{Config, Database, Rate, Relay};
use tacit_relay_proto::{Bundles, ErrorCode, Reply, Request, ServerFrame, SubmitGroup};

/// A test config on `pg`, with a mailbox re-check so rare that a push
/// across nodes can only come from a notification.
fn pg_config(pg: &Postgres) -> Config {
    let mut c = Config::postgres(pg.url());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = "test-relay".into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_rate = Rate::new(100_000.0, 100_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.mailbox_recheck = Duration::from_secs(3600);
    c
}

async fn node(pg: &Postgres) -> Relay {
    Relay::bind(pg_config(pg)).await.unwrap()
}

fn submitted(r: Result<Reply, tacit_relay_proto::ErrorReply>) -> u64 {
    match r {
        Ok(Reply::Submitted { message_id }) => message_id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn db_arguments_choose_the_backend() {
    for url in [
        "postgres://relay@db:5432/tacit",
        "postgresql://relay@db/tacit",
        "PostgreSQL://relay@db/tacit?host=/run/postgresql",
    ] {
        assert_eq!(Database::from_arg(url), Database::Postgres(url.into()));
    }
    assert_eq!(
        Database::from_arg("./relay.db"),
        Database::Sqlite("./relay.db".into())
    );
    assert_eq!(
        Config::new("relay.db").database,
        Database::Sqlite("relay.db".into())
    );
}

#[tokio::test]
async fn a_bad_url_or_an_unreachable_database_fails_to_start() {
    let mut c = Config::postgres("postgres://relay@127.0.0.1:1/none");
    c.listen = "127.0.0.1:0".parse().unwrap();
    assert!(Relay::bind(c).await.is_err());
    let mut c = Config::postgres("postgres://relay@[bad");
    c.listen = "127.0.0.1:0".parse().unwrap();
    assert!(Relay::bind(c).await.is_err());
}

#[tokio::test]
async fn submit_ack_and_node_restart_lose_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let bob = Device::new("bob", 1, 2);
    let mut ids = Vec::new();
    {
        let relay = node(&pg).await;
        let mut b = registered(relay.local_addr(), &bob).await;
        assert!(b.drain().await.is_empty());
        b.upload(&bob, 1, 5).await.unwrap();
        drop(b);
        let mut a = connect(relay.local_addr()).await;
        for i in 0..10u8 {
            ids.push(submitted(a.submit(&bob.address, &[i; 3]).await));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        relay.shutdown().await.unwrap();
    }
    // Another node, started later, serves the same mailbox.
    let relay = node(&pg).await;
    let mut b = connect(relay.local_addr()).await;
    match b.login(&bob).await {
        Ok(Reply::LoggedIn(l)) => {
            assert_eq!(l.one_time_prekeys, 5);
            assert!(l.has_signed_prekey && !l.registered);
        }
        other => panic!("{other:?}"),
    }
    let pushes = b.drain().await;
    assert_eq!(pushes.iter().map(|p| p.message_id).collect::<Vec<_>>(), ids);
    assert_eq!(pushes[3].envelope, vec![3u8; 3]);
    assert_eq!(
        b.ack(vec![ids[0], ids[2]]).await,
        Ok(Reply::Acked { removed: 2 })
    );
    assert_eq!(code(b.ack(vec![ids[0]]).await), ErrorCode::UnknownMessage);
    // An ack naming one stranger id deletes nothing.
    assert_eq!(
        code(b.ack(vec![ids[1], ids[0]]).await),
        ErrorCode::UnknownMessage
    );
    drop(b);
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    let left: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| *id != ids[0] && *id != ids[2])
        .collect();
    assert_eq!(b.drain_ids().await, left);
    // Unknown devices and tokens behave as on SQLite.
    let mut a = connect(relay.local_addr()).await;
    assert_eq!(
        code(a.submit(&addr("nobody", 1), b"x").await),
        ErrorCode::UnknownDevice
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekey_claims_from_two_nodes_are_exactly_once() {
    let Some(pg) = Postgres::start() else { return };
    let (one, two) = (node(&pg).await, node(&pg).await);
    let at = [one.local_addr(), two.local_addr()];
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(at[0], &bob).await;
    b.upload(&bob, 1, 60).await.unwrap();
    let tasks: Vec<_> = (0..80usize)
        .map(|i| {
            let (bob, at) = (bob.address.clone(), at[i % 2]);
            tokio::spawn(async move {
                let mut c = connect(at).await;
                match c.fetch(&bob).await {
                    Ok(Reply::Bundles(Bundles { bundles: mut v, .. })) => {
                        v.pop().unwrap().bundle.one_time_prekey.unwrap().0
                    }
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let (mut one_time, mut fallback) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            0xffff => fallback += 1,
            id => one_time.push(id),
        }
    }
    let distinct: HashSet<u32> = one_time.iter().copied().collect();
    eprintln!(
        "claims: {} one-time, {} distinct, {fallback} fallback",
        one_time.len(),
        distinct.len()
    );
    assert_eq!(one_time.len(), 60, "every one-time prekey handed out once");
    assert_eq!(distinct.len(), 60, "no one-time prekey handed out twice");
    assert_eq!(fallback, 20);
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_messages_are_purged_a_chunk_at_a_time_until_none_is_left() {
    let Some(pg) = Postgres::start() else { return };
    a_purge_goes_on_until_no_expired_message_is_left(pg_config(&pg)).await;
}

#[tokio::test]
async fn a_message_committed_on_one_node_wakes_its_recipient_on_another() {
    let Some(pg) = Postgres::start() else { return };
    let (one, two) = (node(&pg).await, node(&pg).await);
    let bob = Device::new("bob", 1, 2);
    let alice = Device::new("alice", 1, 1);
    let mut b = registered(two.local_addr(), &bob).await;
    assert!(b.drain().await.is_empty());
    let mut a = registered(one.local_addr(), &alice).await;
    for i in 0..3u8 {
        let id = submitted(a.submit(&bob.address, &[i; 5]).await);
        // The re-check is an hour away: only the notification from node
        // one brings this push within the wait.
        let push = b.next_push().await;
        assert_eq!((push.message_id, push.envelope), (id, vec![i; 5]));
    }
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_login_on_one_node_supersedes_the_connection_on_another() {
    let Some(pg) = Postgres::start() else { return };
    let (one, two) = (node(&pg).await, node(&pg).await);
    let bob = Device::new("bob", 1, 2);
    let mut first = registered(one.local_addr(), &bob).await;
    assert!(first.drain().await.is_empty());
    let mut second = connect(two.local_addr()).await;
    second.login(&bob).await.unwrap();
    let frames = first.expect_closed().await;
    assert!(
        frames.iter().any(|f| matches!(f, ServerFrame::Response(r)
            if r.result.as_ref().is_err_and(|e| e.code == ErrorCode::Superseded))),
        "{frames:?}"
    );
    assert!(second.drain().await.is_empty());
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_group_submission_is_queued_for_all_or_none() {
    let Some(pg) = Postgres::start() else { return };
    let relay = node(&pg).await;
    let at = relay.local_addr();
    let devices = [Device::new("bob", 1, 2), Device::new("carol", 1, 3)];
    for d in &devices {
        drop(registered(at, d).await);
    }
    let stranger = Device::new("dave", 1, 4);
    let mut with_stranger: Vec<_> = devices.to_vec();
    with_stranger.push(stranger);
    let seal = |devices: &[Device]| {
        let list: Vec<(Address, IdentityKey)> = devices
            .iter()
            .map(|d| (d.address.clone(), d.identity.public_key()))
            .collect();
        let sealed = multi::seal(b"to the group", &list, &mut OsRng).unwrap();
        Request::SubmitGroup(SubmitGroup::from_sealed(&sealed, |_| None).unwrap())
    };
    let mut a = connect(at).await;
    // One unregistered recipient refuses all: nothing is queued.
    let refused = a.request(seal(&with_stranger)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnknownDevice);
    assert!(refused.message.starts_with("recipient 2 "), "{refused:?}");
    assert_eq!(
        a.request(seal(&devices)).await,
        Ok(Reply::SubmittedGroup { queued: 2 })
    );
    for d in &devices {
        let mut c = connect(at).await;
        c.login(d).await.unwrap();
        let pushes = c.drain().await;
        assert_eq!(pushes.len(), 1, "{}", d.address);
        let opened = multi::open(&d.identity, &d.address, &pushes[0].envelope).unwrap();
        assert_eq!(opened, b"to the group");
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenless_submissions_are_held_to_a_quota_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let mut config = pg_config(&pg);
    config.tokenless_rate_per_account = tokens::QUOTA;
    let relay = Relay::bind(config).await.unwrap();
    tokens::tokenless_quota(relay.local_addr()).await;
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_no_acknowledged_message() {
    let Some(pg) = Postgres::start() else { return };
    let (one, two) = (node(&pg).await, node(&pg).await);
    let bob = Device::new("bob", 1, 2);
    drop(registered(two.local_addr(), &bob).await);
    let at = one.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut refused = 0u32;
        let mut a = connect(at).await;
        let mut i = 0u32;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            match a.submit(&bob_address(), &i.to_be_bytes()).await {
                Ok(Reply::Submitted { .. }) => acked.push(i),
                Ok(other) => panic!("{other:?}"),
                Err(_) => refused += 1,
            }
            i += 1;
        }
        (acked, refused)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = tokio::task::spawn_blocking(move || {
        pg.restart("immediate");
        pg
    });
    let pg = restart.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = sender.await.unwrap();
    eprintln!(
        "around a restart: {} acknowledged, {refused} refused",
        acked.len()
    );
    assert!(!acked.is_empty());
    // The recipient, on the other node, gets every acknowledged message.
    let mut b = connect(two.local_addr()).await;
    b.login(&bob).await.unwrap();
    let got: HashSet<u32> = b
        .drain()
        .await
        .iter()
        .map(|p| u32::from_be_bytes(p.envelope.as_slice().try_into().unwrap()))
        .collect();
    let missing: Vec<_> = acked.iter().filter(|i| !got.contains(i)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
    drop(pg);
}

fn bob_address() -> Address {
    addr("bob", 1)
}

#[tokio::test]
async fn a_link_slot_put_on_one_node_is_taken_on_another() {
    use tacit_relay_proto::{LinkPut, LinkTake};
    let Some(pg) = Postgres::start() else { return };
    let mut config = pg_config(&pg);
    config.max_link_slots = 2;
    let one = Relay::bind(config.clone()).await.unwrap();
    let two = Relay::bind(config).await.unwrap();
    let put =
        |slot: u8, blob: &[u8]| Request::LinkPut(LinkPut::new([slot; 32], blob.to_vec()).unwrap());
    let take = |slot: u8| Request::LinkTake(LinkTake { slot: [slot; 32] });
    let mut new_device = connect(one.local_addr()).await;
    let mut primary = connect(two.local_addr()).await;
    assert_eq!(
        new_device.request(put(1, b"request")).await,
        Ok(Reply::LinkStored)
    );
    assert_eq!(
        code(primary.request(put(1, b"other")).await),
        ErrorCode::LinkSlotUnavailable
    );
    assert_eq!(
        primary.request(take(1)).await,
        Ok(Reply::LinkBlob(b"request".to_vec()))
    );
    assert_eq!(
        code(new_device.request(take(1)).await),
        ErrorCode::LinkSlotUnavailable
    );
    // The bound on live slots counts every node's.
    assert_eq!(primary.request(put(2, b"a")).await, Ok(Reply::LinkStored));
    assert_eq!(
        new_device.request(put(3, b"b")).await,
        Ok(Reply::LinkStored)
    );
    assert_eq!(
        code(primary.request(put(4, b"c")).await),
        ErrorCode::RateLimited
    );
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}
