//! Connection-level abuse limits: the upgrade (header-read) deadline, the
//! login deadline, the connection caps, the write timeout, byte limits
//! before login, and `/metrics` on its own listener. Each test shows the
//! abuse failing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tacit_relay::{Config, Rate, Relay};
use tacit_relay_proto::{ErrorCode, FetchDeviceList, Reply, Request, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads from `s` until the relay closes it (end of stream or a reset);
/// `None` if it is still open after `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn bind(config: Config) -> Relay {
    Relay::bind(config).await.unwrap()
}

/// Waits until `check` holds on the metrics page, or fails with the page.
async fn eventually(relay: &Relay, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = metrics(relay).await;
        if check(&page) {
            return;
        }
        assert!(Instant::now() < deadline, "never held: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_slow_request_head_is_dropped_at_the_upgrade_deadline() {
    let dir = TempDir::new("upgrade-deadline");
    let mut config = config(&dir.db());
    config.upgrade_timeout = Duration::from_secs(1);
    let relay = bind(config).await;
    // Half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    slow.write_all(b"GET /v1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "a slow request head kept its connection");
    // A plain HTTP connection that never upgrades lives no longer.
    let mut idle = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10))
        .await
        .is_some());
    // A WebSocket outlives the deadline.
    let mut ws = connect(relay.local_addr()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = ws
        .request(Request::FetchDeviceList(
            FetchDeviceList::new("nobody").unwrap(),
        ))
        .await;
    assert_eq!(reply.unwrap_err().code, ErrorCode::UnknownUser);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_that_neither_logs_in_nor_asks_is_closed() {
    let dir = TempDir::new("login-deadline");
    let mut config = config(&dir.db());
    config.login_timeout = Duration::from_secs(1);
    let relay = bind(config).await;

    // Only a challenge: closed with NotAuthenticated.
    let mut idle = connect(relay.local_addr()).await;
    idle.challenge().await;
    let started = Instant::now();
    match idle.read().await {
        Some(ServerFrame::Response(r)) => {
            assert_eq!(r.result.unwrap_err().code, ErrorCode::NotAuthenticated);
        }
        other => panic!("{other:?}"),
    }
    assert!(idle.read().await.is_none());
    assert!(started.elapsed() < Duration::from_secs(10));

    // Anonymous requests keep a connection open past the deadline.
    let mut busy = connect(relay.local_addr()).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = busy
            .request(Request::FetchDeviceList(FetchDeviceList::new("x").unwrap()))
            .await;
        assert_eq!(reply.unwrap_err().code, ErrorCode::UnknownUser);
    }
    drop(busy);

    // A logged-in connection has no such deadline.
    let bob = Device::new("bob", 1, 2);
    let mut logged_in = registered(relay.local_addr(), &bob).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let reply = logged_in
        .request(Request::FetchDeviceList(
            FetchDeviceList::new("bob").unwrap(),
        ))
        .await;
    assert!(matches!(reply, Ok(Reply::DeviceList(_))), "{reply:?}");
    let page = metrics(&relay).await;
    assert_eq!(
        metric(&page, "tacit_relay_login_timeouts_total"),
        1,
        "{page}"
    );
    relay.shutdown().await.unwrap();
}

async fn ws_handshake_fails(at: SocketAddr) -> bool {
    tokio::time::timeout(WAIT, TcpClient::try_connect(at))
        .await
        .expect("connect timed out")
        .is_err()
}

#[tokio::test]
async fn connections_are_capped_per_ip_and_in_total() {
    let dir = TempDir::new("conn-cap");
    let mut config = config(&dir.db());
    config.max_connections_per_ip = 2;
    let relay = bind(config).await;
    let at = relay.local_addr();
    let first = connect(at).await;
    let _second = connect(at).await;
    assert!(
        ws_handshake_fails(at).await,
        "a third connection was let in"
    );
    drop(first);
    // The slot comes back once the relay has dropped the first connection.
    let deadline = Instant::now() + WAIT;
    while ws_handshake_fails(at).await {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = metrics(&relay).await;
    assert!(metric(&page, "tacit_relay_connections_refused_total") >= 1);
    relay.shutdown().await.unwrap();

    let dir = TempDir::new("conn-cap-total");
    let mut config = common::config(&dir.db());
    config.max_connections = 1;
    let relay = bind(config).await;
    let _only = connect(relay.local_addr()).await;
    assert!(ws_handshake_fails(relay.local_addr()).await);
    relay.shutdown().await.unwrap();
}

/// Starts a relay whose writes wait `write_timeout` (and that never pings),
/// logs bob in on a connection that then never reads again, and submits
/// `n` envelopes of 200 KiB to him from another connection.
async fn flood_a_stalled_reader(
    dir: &TempDir,
    write_timeout: Duration,
    n: usize,
) -> (Relay, TcpClient) {
    let mut config = config(&dir.db());
    config.write_timeout = write_timeout;
    config.ping_interval = Duration::from_secs(3600);
    let relay = bind(config).await;
    let bob = Device::new("bob", 1, 2);
    let stalled = registered(relay.local_addr(), &bob).await;
    let mut sender = connect(relay.local_addr()).await;
    let envelope = vec![0x5a; 200 * 1024];
    for _ in 0..n {
        let reply = sender.submit(&bob.address, &envelope).await;
        assert!(matches!(reply, Ok(Reply::Submitted { .. })), "{reply:?}");
    }
    (relay, stalled)
}

#[tokio::test]
async fn a_device_that_stops_reading_is_dropped() {
    let dir = TempDir::new("write-timeout");
    // Far more than the socket buffers hold.
    let (relay, stalled) = flood_a_stalled_reader(&dir, Duration::from_millis(500), 150).await;
    eventually(&relay, |page| {
        metric(page, "tacit_relay_write_timeouts_total") >= 1
            && metric(page, "tacit_relay_devices_online") == 0
    })
    .await;
    drop(stalled);
    relay.shutdown().await.unwrap();
}

/// A device that stops reading holds at most the push budget (4 MiB of
/// envelopes) in the relay's memory, beside what the sockets buffer: the
/// mailbox is not read into the connection's queue further ahead.
#[tokio::test]
async fn pushes_queued_for_a_slow_reader_are_bounded_in_bytes() {
    let dir = TempDir::new("push-budget");
    let (relay, stalled) = flood_a_stalled_reader(&dir, Duration::from_secs(3600), 350).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let page = metrics(&relay).await;
    // 20 pushes fill the budget; the sockets hold some tens more. A queue
    // of 256 frames, unbounded in bytes, would take them all.
    let pushed = metric(&page, "tacit_relay_pushed_total");
    assert!((20..200).contains(&pushed), "{pushed} pushes queued");
    drop(stalled);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn bytes_before_login_are_limited_per_ip() {
    let dir = TempDir::new("byte-limit");
    let mut config = config(&dir.db());
    // Requests are plentiful; bytes are not.
    config.per_ip_byte_rate = Rate::new(1.0, 250_000);
    let relay = bind(config).await;
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let envelope = vec![0x5a; 100 * 1024];
    let mut a = connect(relay.local_addr()).await;
    let mut b = connect(relay.local_addr()).await;
    assert!(a.submit(&bob.address, &envelope).await.is_ok());
    assert!(b.submit(&bob.address, &envelope).await.is_ok());
    // A third 100 KiB frame from the same address, on either connection.
    for c in [&mut a, &mut b] {
        let refused = c.submit(&bob.address, &envelope).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.is_some());
    }
    // Small requests still pass while the byte budget refills.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let page = metrics(&relay).await;
    assert_eq!(metric(&page, "tacit_relay_submitted_total"), 2, "{page}");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener_and_count_without_scans() {
    let dir = TempDir::new("metrics-listener");
    let bob = Device::new("bob", 1, 2);
    // A first run leaves a device and two messages in the database.
    let mut first = config(&dir.db());
    first.metrics_listen = None;
    let relay = bind(first).await;
    assert!(relay.metrics_addr().is_none());
    // Not on the WebSocket listener.
    let mut s = tokio::net::TcpStream::connect(relay.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_string(&mut page)).await;
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
    drop(registered(relay.local_addr(), &bob).await);
    let mut a = connect(relay.local_addr()).await;
    for body in [b"1", b"2"] {
        assert!(a.submit(&bob.address, body).await.is_ok());
    }
    drop(a);
    relay.shutdown().await.unwrap();

    // The second run reads the gauges once at start, then counts.
    let relay = bind(config(&dir.db())).await;
    let page = metrics(&relay).await;
    assert_eq!(metric(&page, "tacit_relay_devices"), 1, "{page}");
    assert_eq!(metric(&page, "tacit_relay_queued_messages"), 2, "{page}");
    let carol = Device::new("carol", 1, 3);
    drop(registered(relay.local_addr(), &carol).await);
    let mut a = connect(relay.local_addr()).await;
    assert!(a.submit(&carol.address, b"3").await.is_ok());
    let page = metrics(&relay).await;
    assert_eq!(metric(&page, "tacit_relay_devices"), 2, "{page}");
    assert_eq!(metric(&page, "tacit_relay_queued_messages"), 3, "{page}");
    relay.shutdown().await.unwrap();
}
