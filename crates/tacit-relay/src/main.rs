//! `tacit-relay`: serve the tacit relay protocol over WebSocket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tacit_relay::{Config, Database, Rate, Relay, TlsFiles};

/// The tacit relay: authenticated delivery of sealed envelopes, a prekey
/// directory and durable mailboxes in one SQLite file.
#[derive(Debug, Parser)]
#[command(name = "tacit-relay", version, about)]
struct Args {
    /// Address to listen on (WebSocket at /v1).
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The database: a SQLite file's path, or a PostgreSQL URL
    /// (postgres://USER@HOST:PORT/DB) shared by several relay nodes.
    #[arg(long, default_value = "./tacit-relay.db")]
    db: String,
    /// On PostgreSQL, how often the mailboxes of the devices online on this
    /// node are read again, in case a wake-up from another node was lost.
    #[arg(long, default_value_t = 5)]
    mailbox_recheck_secs: u64,
    /// The relay's name, bound into login signatures.
    #[arg(long, default_value = "tacit-relay")]
    server_name: String,
    /// The most messages queued per device.
    #[arg(long, default_value_t = 10_000)]
    queue_cap: u32,
    /// The most envelope bytes queued per device.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    mailbox_bytes_cap: u64,
    /// How long a message waits for its recipient, in seconds.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    message_ttl_secs: u64,
    /// The largest client frame accepted, in bytes.
    #[arg(long, default_value_t = tacit_relay_proto::MAX_CLIENT_FRAME_LEN)]
    max_frame_size: usize,
    /// The most one-time prekeys stored per device.
    #[arg(long, default_value_t = 1000)]
    max_one_time_prekeys: u32,
    /// The most one-time KEM prekeys stored per device.
    #[arg(long, default_value_t = 200)]
    max_one_time_kem_prekeys: u32,
    /// A cap on the SQLite database's size in bytes, 0 for none (default:
    /// 16 GiB); past it, new messages are refused with StorageFull. Ignored
    /// on PostgreSQL.
    #[arg(long)]
    max_db_bytes: Option<u64>,
    /// UNSAFE, benchmarks only: SQLite commits are not synced
    /// (synchronous=OFF). Loses acknowledged messages on power loss.
    #[arg(long, hide = true)]
    unsafe_no_fsync: bool,
    /// SQLite zeroes what it deletes (secure_delete=ON): acknowledged and
    /// expired messages leave no trace in the database file once the log
    /// is checkpointed. Costs CPU and writes. Ignored on PostgreSQL.
    #[arg(long)]
    secure_delete: bool,
    /// The most bytes of commands waiting for the writer; past it, requests
    /// wait.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    writer_queue_bytes: usize,
    /// Seconds between keepalive pings.
    #[arg(long, default_value_t = 20)]
    ping_interval_secs: u64,
    /// Requests per second per connection before login.
    #[arg(long, default_value_t = 20.0)]
    rate_unauthenticated: f64,
    /// Burst of requests per connection before login.
    #[arg(long, default_value_t = 50)]
    burst_unauthenticated: u32,
    /// Requests per second per peer IP before login, across connections.
    #[arg(long, default_value_t = 100.0)]
    rate_per_ip: f64,
    /// Burst of requests per peer IP before login.
    #[arg(long, default_value_t = 500)]
    burst_per_ip: u32,
    /// Requests per second per logged-in connection.
    #[arg(long, default_value_t = 200.0)]
    rate_authenticated: f64,
    /// Burst of requests per logged-in connection.
    #[arg(long, default_value_t = 1000)]
    burst_authenticated: u32,
    /// Frame bytes per second per peer network (IPv4 address or IPv6 /64)
    /// before login, across its connections.
    #[arg(long, default_value_t = 1024.0 * 1024.0)]
    byte_rate_per_ip: f64,
    /// Burst of frame bytes per peer network before login.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    byte_burst_per_ip: u32,
    /// Frame bytes per second per account (user id) after login, across
    /// its devices and connections.
    #[arg(long, default_value_t = 1024.0 * 1024.0)]
    byte_rate_per_account: f64,
    /// Burst of frame bytes per account after login.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    byte_burst_per_account: u32,
    /// Registrations per second per peer network (IPv4 address or IPv6
    /// /64); the default is one a minute.
    #[arg(long, default_value_t = 1.0 / 60.0)]
    registration_rate_per_ip: f64,
    /// Burst of registrations per peer network.
    #[arg(long, default_value_t = 20)]
    registration_burst_per_ip: u32,
    /// Registrations per second across every peer.
    #[arg(long, default_value_t = 20.0)]
    registration_rate: f64,
    /// Burst of registrations across every peer.
    #[arg(long, default_value_t = 200)]
    registration_burst: u32,
    /// Bundle claims per second per requester (account, or peer network
    /// before login).
    #[arg(long, default_value_t = 0.5)]
    claim_rate_per_requester: f64,
    /// Burst of bundle claims per requester.
    #[arg(long, default_value_t = 100)]
    claim_burst_per_requester: u32,
    /// Recipients per second a logged-in account may reach without
    /// presenting the delivery token they set.
    #[arg(long, default_value_t = 1.0 / 60.0)]
    tokenless_rate_per_account: f64,
    /// Burst of recipients reached without their delivery token, per
    /// account.
    #[arg(long, default_value_t = 100)]
    tokenless_burst_per_account: u32,
    /// Claims per second that use up one-time prekeys, per target user;
    /// past it, bundles carry fallback prekeys.
    #[arg(long, default_value_t = 0.1)]
    one_time_claim_rate_per_target: f64,
    /// Burst of one-time prekey claims per target user.
    #[arg(long, default_value_t = 100)]
    one_time_claim_burst_per_target: u32,
    /// Seconds an accepted connection has to send its HTTP request and
    /// become a WebSocket.
    #[arg(long, default_value_t = 10)]
    upgrade_timeout_secs: u64,
    /// Seconds a connection that is not logged in stays open without a
    /// request of its own (a challenge alone does not count).
    #[arg(long, default_value_t = 30)]
    login_timeout_secs: u64,
    /// The most connections open at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// The most connections open at once from one IPv4 address or IPv6 /64.
    #[arg(long, default_value_t = 64)]
    max_connections_per_ip: usize,
    /// Seconds a write may wait for a peer that does not read; past it, the
    /// connection is dropped.
    #[arg(long, default_value_t = 20)]
    write_timeout_secs: u64,
    /// Serve Prometheus metrics at /metrics on this address (default: off).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain; with --tls-key, serve over TLS (wss://).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the files under this directory at / (a web page and its
    /// module: examples/web); no directory listing.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Accept http:// push endpoints as well as https:// (local gateways).
    #[arg(long)]
    allow_http_push: bool,
    /// Accept push endpoints on loopback and private addresses (local
    /// gateways).
    #[arg(long)]
    allow_private_push: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config::with_database(Database::from_arg(&args.db));
    config.mailbox_recheck = Duration::from_secs(args.mailbox_recheck_secs.max(1));
    config.listen = args.listen;
    config.server_name = args.server_name;
    config.queue_cap = args.queue_cap;
    config.mailbox_bytes_cap = args.mailbox_bytes_cap;
    config.message_ttl = Duration::from_secs(args.message_ttl_secs);
    config.max_frame_len = args.max_frame_size;
    config.max_one_time_prekeys = args.max_one_time_prekeys;
    config.max_one_time_kem_prekeys = args.max_one_time_kem_prekeys;
    if let Some(cap) = args.max_db_bytes {
        config.max_db_bytes = (cap > 0).then_some(cap);
    }
    config.writer_queue_bytes = args.writer_queue_bytes;
    config.unsafe_no_fsync_benchmarks_only = args.unsafe_no_fsync;
    config.secure_delete = args.secure_delete;
    config.ping_interval = Duration::from_secs(args.ping_interval_secs);
    config.unauthenticated_rate = Rate::new(args.rate_unauthenticated, args.burst_unauthenticated);
    config.per_ip_rate = Rate::new(args.rate_per_ip, args.burst_per_ip);
    config.authenticated_rate = Rate::new(args.rate_authenticated, args.burst_authenticated);
    config.per_ip_byte_rate = Rate::new(args.byte_rate_per_ip, args.byte_burst_per_ip);
    config.registration_rate_per_ip = Rate::new(
        args.registration_rate_per_ip,
        args.registration_burst_per_ip,
    );
    config.registration_rate = Rate::new(args.registration_rate, args.registration_burst);
    config.claim_rate_per_requester = Rate::new(
        args.claim_rate_per_requester,
        args.claim_burst_per_requester,
    );
    config.one_time_claim_rate_per_target = Rate::new(
        args.one_time_claim_rate_per_target,
        args.one_time_claim_burst_per_target,
    );
    config.per_account_byte_rate =
        Rate::new(args.byte_rate_per_account, args.byte_burst_per_account);
    config.tokenless_rate_per_account = Rate::new(
        args.tokenless_rate_per_account,
        args.tokenless_burst_per_account,
    );
    config.upgrade_timeout = Duration::from_secs(args.upgrade_timeout_secs);
    config.login_timeout = Duration::from_secs(args.login_timeout_secs);
    config.max_connections = args.max_connections;
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.write_timeout = Duration::from_secs(args.write_timeout_secs);
    config.metrics_listen = args.metrics_listen;
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    config.static_dir = args.static_dir;
    config.allow_http_push = args.allow_http_push;
    config.allow_private_push = args.allow_private_push;
    let relay = Relay::bind(config).await?;
    // The address line is for scripts and tests that start the binary on
    // port 0.
    println!("listening on {}", relay.local_addr());
    if let Some(addr) = relay.metrics_addr() {
        println!("metrics on {addr}");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
