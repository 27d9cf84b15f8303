#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code,
    unreachable_pub
)]
//! Helpers: scratch directories, in-process relays, clients, event waits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tacit::identity::UserKeyPair;
use tacit::Address;
use tacit_client::{register, Backoff, Client, ClientConfig, Event, StoreKey};
use tacit_relay::{Config, Rate, Relay};
use tacit_relay_proto::{FetchBundles, Reply, Request};
pub use tacit_testkit::relay::Sender;

/// How long a test waits for any one event.
pub const WAIT: Duration = Duration::from_secs(15);

/// The test relays' name, which the clients are configured to sign for.
pub const RELAY_NAME: &str = "test-relay";

/// A scratch directory (`tempfile`), removed on drop.
#[derive(Debug)]
pub struct TempDir(pub tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("tacit-client-test-{name}-"))
                .tempdir()
                .unwrap(),
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

pub fn relay_config(db: &Path, listen: SocketAddr) -> Config {
    let mut c = Config::new(db);
    c.listen = listen;
    c.server_name = RELAY_NAME.into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_rate = Rate::new(100_000.0, 100_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_byte_rate = Rate::new(1e12, u32::MAX);
    c.per_account_byte_rate = Rate::new(1e12, u32::MAX);
    c.registration_rate_per_ip = Rate::new(1e6, u32::MAX);
    c.registration_rate = Rate::new(1e6, u32::MAX);
    c.claim_rate_per_requester = Rate::new(1e6, u32::MAX);
    c.one_time_claim_rate_per_target = Rate::new(1e6, u32::MAX);
    c.max_connections_per_ip = 10_000;
    c.shutdown_grace = Duration::from_secs(2);
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

pub async fn start_relay(db: &Path) -> Relay {
    Relay::bind(relay_config(db, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

pub fn url(relay: SocketAddr) -> String {
    format!("ws://{relay}/v1")
}

/// A client config with a fresh key file and quick reconnects.
pub fn client_config(dir: &TempDir, name: &str, relay: SocketAddr) -> ClientConfig {
    let store = dir.path(&format!("{name}.db"));
    let key = StoreKey::load_or_create(dir.path(&format!("{name}.db.key"))).unwrap();
    let mut config = ClientConfig::new(store, key, url(relay));
    config.server_name = RELAY_NAME.into();
    config.backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(400), 40);
    config.request_timeout = Duration::from_secs(5);
    config
}

pub fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

/// Registers `name` (device 1) and returns its config.
pub async fn registered(dir: &TempDir, name: &str, relay: SocketAddr) -> ClientConfig {
    let config = client_config(dir, name, relay);
    register(&config, addr(name, 1)).await.unwrap();
    config
}

/// Waits for the first event `pick` accepts, collecting the ones before.
pub async fn wait_for<T>(
    client: &mut Client,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> (T, Vec<Event>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .unwrap_or_else(|_| panic!("no matching event in time; saw {seen:?}"))
            .unwrap_or_else(|| panic!("client stopped; saw {seen:?}"));
        if let Some(t) = pick(&event) {
            return (t, seen);
        }
        if let Event::Stopped { error } = &event {
            panic!("client stopped: {error:?}; saw {seen:?}");
        }
        seen.push(event);
    }
}

/// Waits for the next message and returns its text.
pub async fn next_text(client: &mut Client) -> String {
    wait_for(client, |e| match e {
        Event::Message(m) => Some(m.text.clone()),
        _ => None,
    })
    .await
    .0
}

/// Waits for `QueueDrained` and returns its counts and the events before.
pub async fn drained(client: &mut Client) -> ((u32, u32), Vec<Event>) {
    wait_for(client, |e| match e {
        Event::QueueDrained {
            delivered,
            duplicates,
        } => Some((*delivered, *duplicates)),
        _ => None,
    })
    .await
}

/// Texts of the `Message` events among `events`.
pub fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(format!("{}: {}", m.sender.user_id(), m.text)),
            _ => None,
        })
        .collect()
}

/// Messages waiting at the relay for `user`.
pub fn queued(relay_db: &Path, user: &str) -> u32 {
    let conn = rusqlite::Connection::open(relay_db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM queued_messages WHERE mailbox IN (SELECT mailbox FROM devices WHERE user_id = ?1)",
        [user],
        |r| r.get(0),
    )
    .unwrap()
}

/// Polls `f` until it holds (bounded).
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met in time");
}

/// Fetches one bundle of `address` over a raw connection (claiming one of
/// its one-time prekeys).
pub async fn fetch_bundle(relay: SocketAddr, address: &Address) {
    match raw_request(relay, Request::FetchBundles(FetchBundles::device(address))).await {
        Ok(Reply::Bundles(b)) => assert_eq!(b.bundles.len(), 1),
        other => panic!("{other:?}"),
    }
}

/// Sends one request over a raw connection that never logs in and returns
/// the relay's answer.
pub async fn raw_request(
    relay: SocketAddr,
    request: Request,
) -> Result<Reply, tacit_relay_proto::ErrorReply> {
    tacit_testkit::relay::request(&url(relay), request).await
}

/// A device outside any client, of `user_key`'s user, on the relay.
pub fn sender(relay: SocketAddr, address: Address, user_key: UserKeyPair) -> Sender {
    Sender::new(&url(relay), address, user_key)
}

/// The relay's `/metrics` page, from its metrics listener.
pub async fn metrics(relay: &Relay) -> String {
    let relay = relay.metrics_addr().expect("metrics_listen is set");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(relay).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    body
}

/// The value of the metric line that starts with `name` (the full name
/// with its labels), from a `/metrics` page.
pub fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {page}"))
}

/// Requests of `kind` the relay received on connections logged in
/// (`authenticated`) or not.
pub fn requests(page: &str, kind: &str, authenticated: bool) -> u64 {
    let connection = if authenticated {
        "authenticated"
    } else {
        "unauthenticated"
    };
    metric(
        page,
        &format!("tacit_relay_requests_total{{kind=\"{kind}\",connection=\"{connection}\"}}"),
    )
}

/// Polls the async `f` until it holds (bounded).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) {
    for _ in 0..150 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not met in time");
}

/// Starts a client on a store whose previous client was dropped without
/// `shutdown` (a crash): the dropped client's task lets go of the store at
/// its next step, and until then the store is in use.
pub async fn start_after_crash(config: ClientConfig) -> Client {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Client::start(config.clone()).await {
            Err(tacit_client::ClientError::Store(tacit::error::StoreError::InUse))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other.unwrap(),
        }
    }
}
