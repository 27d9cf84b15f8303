//! Storage-level abuse limits: the default database cap, bytes per
//! mailbox and per account, registration throttles, prekey claims. Each
//! test shows the abuse failing; those about the store run on SQLite and,
//! when its binaries are there, on PostgreSQL (`common::pg`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::pg::Postgres;
use common::*;
use tacit_relay::{Config, Rate, Relay, DEFAULT_MAX_DB_BYTES};
use tacit_relay_proto::{ErrorCode, ErrorReply, Reply};

#[test]
fn storage_is_capped_by_default() {
    assert_eq!(
        Config::new("relay.db").max_db_bytes,
        Some(DEFAULT_MAX_DB_BYTES)
    );
    // PostgreSQL has no cap of the relay's own (docs/relay.md).
    assert_eq!(Config::postgres("postgres://x@h/db").max_db_bytes, None);
}

/// `config` with the generous rates of the tests, on PostgreSQL.
fn on_pg(pg: &Postgres) -> Config {
    let mut c = config(std::path::Path::new("unused.db"));
    c.database = tacit_relay::Database::Postgres(pg.url());
    c.max_db_bytes = None;
    c
}

fn submitted(r: Result<Reply, ErrorReply>) -> u64 {
    match r {
        Ok(Reply::Submitted { message_id }) => message_id,
        other => panic!("{other:?}"),
    }
}

/// A mailbox holds at most `mailbox_bytes_cap` envelope bytes, whoever
/// sends them, and takes more once its device acks.
async fn mailbox_bytes_are_capped(mut config: Config) {
    config.max_frame_len = 64 * 1024;
    config.mailbox_bytes_cap = 100_000;
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let envelope = vec![0x42; 40_000];
    let mut a = connect(relay.local_addr()).await;
    let first = submitted(a.submit(&bob.address, &envelope).await);
    submitted(a.submit(&bob.address, &envelope).await);
    // 120,000 bytes would pass the cap, though the queue holds 2 messages.
    let refused = a.submit(&bob.address, &envelope).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::QueueFull, "{refused:?}");
    // A small one still fits.
    submitted(a.submit(&bob.address, &[7; 100]).await);
    // Bob acks the first: its bytes are free again.
    let mut b = connect(relay.local_addr()).await;
    assert!(matches!(b.login(&bob).await, Ok(Reply::LoggedIn(_))));
    assert_eq!(b.drain_ids().await.len(), 3);
    assert!(matches!(b.ack(vec![first]).await, Ok(Reply::Acked { .. })));
    submitted(a.submit(&bob.address, &envelope).await);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn mailbox_bytes_are_capped_on_sqlite() {
    let dir = TempDir::new("mailbox-bytes");
    mailbox_bytes_are_capped(config(&dir.db())).await;
}

#[tokio::test]
async fn mailbox_bytes_are_capped_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    mailbox_bytes_are_capped(on_pg(&pg)).await;
}

#[tokio::test]
async fn bytes_after_login_are_limited_per_account() {
    let dir = TempDir::new("account-bytes");
    let mut config = config(&dir.db());
    config.per_account_byte_rate = Rate::new(1.0, 250_000);
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    // Two devices of one account share its budget.
    let (_, devices) = same_user(
        1,
        vec![Device::new("mallory", 1, 3), Device::new("mallory", 2, 4)],
    );
    let mut m1 = registered(relay.local_addr(), &devices[0]).await;
    let mut m2 = registered(relay.local_addr(), &devices[1]).await;
    let envelope = vec![0x5a; 100 * 1024];
    submitted(m1.submit(&bob.address, &envelope).await);
    submitted(m2.submit(&bob.address, &envelope).await);
    for c in [&mut m1, &mut m2] {
        let refused = c.submit(&bob.address, &envelope).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.is_some());
    }
    // Another account is not held back by it.
    let carol = Device::new("carol", 1, 5);
    let mut c = registered(relay.local_addr(), &carol).await;
    submitted(c.submit(&bob.address, &envelope).await);
    tokio::time::sleep(Duration::from_millis(10)).await;
    relay.shutdown().await.unwrap();
}

/// A client of `relay` connecting from the loopback address `from`
/// (127.0.0.X: a peer network of its own).
async fn connect_from(relay: &Relay, from: [u8; 4]) -> TcpClient {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(relay.local_addr()).await.unwrap();
    TcpClient::try_connect_over(stream, relay.local_addr())
        .await
        .unwrap()
}

async fn register_from(relay: &Relay, from: [u8; 4], device: &Device) -> Result<Reply, ErrorReply> {
    connect_from(relay, from).await.register(device).await
}

#[tokio::test]
async fn registrations_are_throttled_per_ip() {
    let dir = TempDir::new("registrations-ip");
    let mut config = config(&dir.db());
    config.registration_rate_per_ip = Rate::new(0.0, 2);
    let relay = Relay::bind(config).await.unwrap();
    let here = [127, 0, 0, 1];
    for (user, seed) in [("a", 1), ("b", 2)] {
        let ok = register_from(&relay, here, &Device::new(user, 1, seed)).await;
        assert!(matches!(ok, Ok(Reply::LoggedIn(_))), "{ok:?}");
    }
    let carol = Device::new("c", 1, 3);
    let refused = register_from(&relay, here, &carol).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited, "{refused:?}");
    assert!(refused.retry_after_ms.is_some());
    // Nothing was registered: the device cannot log in.
    let mut l = connect_from(&relay, here).await;
    assert_eq!(code(l.login(&carol).await), ErrorCode::UnknownDevice);
    // Another peer network registers.
    let ok = register_from(&relay, [127, 0, 0, 2], &carol).await;
    assert!(matches!(ok, Ok(Reply::LoggedIn(_))), "{ok:?}");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn registrations_are_throttled_across_peers() {
    let dir = TempDir::new("registrations-all");
    let mut config = config(&dir.db());
    config.registration_rate = Rate::new(0.0, 3);
    let relay = Relay::bind(config).await.unwrap();
    for host in 1u8..=3 {
        let device = Device::new(&format!("u{host}"), 1, host);
        let ok = register_from(&relay, [127, 0, 0, host], &device).await;
        assert!(matches!(ok, Ok(Reply::LoggedIn(_))), "{ok:?}");
    }
    let device = Device::new("u4", 1, 4);
    let refused = register_from(&relay, [127, 0, 0, 4], &device)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited, "{refused:?}");
    relay.shutdown().await.unwrap();
}

/// The id of the one-time (or fallback) prekey in a bundle fetched for
/// `target`, or the refusal.
async fn claimed(c: &mut TcpClient, target: &tacit::Address) -> Result<u32, ErrorReply> {
    match c.fetch(target).await? {
        Reply::Bundles(b) => Ok(b.bundles[0].bundle.one_time_prekey.unwrap().0),
        other => panic!("{other:?}"),
    }
}

/// Past the target's budget, bundles carry the fallback prekey and use up
/// no one-time prekey, whoever asks.
async fn one_time_prekeys_cannot_be_drained(mut config: Config) {
    config.one_time_claim_rate_per_target = Rate::new(0.0, 2);
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    b.upload(&bob, 1, 5).await.unwrap();
    drop(b);
    let mut ids = Vec::new();
    for host in 1u8..=4 {
        let mut c = connect_from(&relay, [127, 0, 0, host]).await;
        ids.push(claimed(&mut c, &bob.address).await.unwrap());
    }
    assert_eq!(ids, [1, 2, 0xffff, 0xffff]);
    let mut b = connect(relay.local_addr()).await;
    match b.login(&bob).await {
        Ok(Reply::LoggedIn(l)) => assert_eq!(l.one_time_prekeys, 3),
        other => panic!("{other:?}"),
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_time_prekeys_cannot_be_drained_on_sqlite() {
    let dir = TempDir::new("one-time-target");
    one_time_prekeys_cannot_be_drained(config(&dir.db())).await;
}

#[tokio::test]
async fn one_time_prekeys_cannot_be_drained_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    one_time_prekeys_cannot_be_drained(on_pg(&pg)).await;
}

#[tokio::test]
async fn bundle_claims_are_limited_per_requester() {
    let dir = TempDir::new("claims-requester");
    let mut config = config(&dir.db());
    config.claim_rate_per_requester = Rate::new(0.0, 3);
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    let mut b = registered(relay.local_addr(), &bob).await;
    b.upload(&bob, 1, 50).await.unwrap();
    // One network, over several connections.
    for _ in 0..3 {
        let mut c = connect_from(&relay, [127, 0, 0, 7]).await;
        claimed(&mut c, &bob.address).await.unwrap();
    }
    let mut c = connect_from(&relay, [127, 0, 0, 7]).await;
    let refused = claimed(&mut c, &bob.address).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited, "{refused:?}");
    // A logged-in account is counted as itself, across its devices.
    let (_, devices) = same_user(
        1,
        vec![Device::new("carol", 1, 3), Device::new("carol", 2, 4)],
    );
    let mut c1 = registered(relay.local_addr(), &devices[0]).await;
    let mut c2 = registered(relay.local_addr(), &devices[1]).await;
    claimed(&mut c1, &bob.address).await.unwrap();
    claimed(&mut c2, &bob.address).await.unwrap();
    claimed(&mut c1, &bob.address).await.unwrap();
    let refused = claimed(&mut c2, &bob.address).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited, "{refused:?}");
    relay.shutdown().await.unwrap();
}
