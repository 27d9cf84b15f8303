#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code,
    unreachable_pub,
    unused_imports
)]
//! Helpers to start relays; the frame client is `tacit_testkit::relay`.

pub mod pg;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tacit_relay::{Config, Rate, Relay};
pub use tacit_testkit::relay::{
    addr, code, connect, identity, kem_prekey, now_ms, registered, same_user, user_key, Client,
    Device, TcpClient, WAIT,
};

/// A scratch directory (`tempfile`), removed on drop.
#[derive(Debug)]
pub struct TempDir(pub tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self(
            tempfile::Builder::new()
                .prefix(&format!("tacit-relay-test-{name}-"))
                .tempdir()
                .unwrap(),
        )
    }

    pub fn db(&self) -> PathBuf {
        self.path("relay.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// A config for tests: an ephemeral port on 127.0.0.1, generous rates.
pub fn config(db: &Path) -> Config {
    let mut c = Config::new(db);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = "test-relay".into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_rate = Rate::new(100_000.0, 100_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.per_ip_byte_rate = Rate::new(1e12, u32::MAX);
    c.per_account_byte_rate = Rate::new(1e12, u32::MAX);
    c.mailbox_bytes_cap = 1 << 40;
    c.registration_rate_per_ip = Rate::new(1e6, u32::MAX);
    c.registration_rate = Rate::new(1e6, u32::MAX);
    c.claim_rate_per_requester = Rate::new(1e6, u32::MAX);
    c.one_time_claim_rate_per_target = Rate::new(1e6, u32::MAX);
    c.max_connections_per_ip = 10_000;
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

/// The relay's `/metrics` page, from its metrics listener.
pub async fn metrics(relay: &Relay) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let at = relay.metrics_addr().expect("metrics_listen is set");
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
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

/// The value of the metric line that starts with `name`.
pub fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {page}"))
}

pub async fn start(db: &Path) -> Relay {
    Relay::bind(config(db)).await.unwrap()
}

/// The built `tacit-relay` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_tacit-relay");

/// Starts the relay binary on `db` and an ephemeral port: the process
/// (killed when dropped) and its address.
pub async fn spawn(db: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--server-name",
            "test-relay",
            "--db",
        ])
        .arg(db)
        .stderr(std::process::Stdio::null());
    let relay = tacit_testkit::relay::spawn_relay(command, WAIT)
        .await
        .expect("the relay starts");
    (relay.child, relay.addr)
}

/// Starts a relay on `config` whose messages expire after 100 ms and whose
/// purge deletes one at a time, once a second; queues three messages for a
/// device and checks that the one purge after they expired deleted all
/// three, chunk after chunk: the device learns of three at login, before
/// the next purge could have run.
pub async fn a_purge_goes_on_until_no_expired_message_is_left(mut config: Config) {
    use tacit_relay_proto::{Reply, ServerFrame};
    config.message_ttl = std::time::Duration::from_millis(100);
    config.purge_interval = std::time::Duration::from_secs(1);
    config.purge_chunk = 1;
    let relay = Relay::bind(config).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    drop(registered(relay.local_addr(), &bob).await);
    let mut a = connect(relay.local_addr()).await;
    for _ in 0..3 {
        assert!(matches!(
            a.submit(&bob.address, b"old").await,
            Ok(Reply::Submitted { .. })
        ));
    }
    // The purge at 1 s deletes them; the next is at 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(1400)).await;
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    assert_eq!(
        b.next_frame().await,
        Some(ServerFrame::MessagesExpired { count: 3 })
    );
    assert!(b.drain().await.is_empty());
    relay.shutdown().await.unwrap();
}
