//! The tacit relay: authenticated delivery, prekey directory, durable
//! mailboxes.
//!
//! The relay speaks the frames of [`tacit_relay_proto`] over WebSocket
//! (path [`WEBSOCKET_PATH`](tacit_relay_proto::WEBSOCKET_PATH)) and keeps
//! its state in one SQLite file (WAL, `synchronous=FULL`), or in a
//! PostgreSQL database that several relay nodes share ([`Database`]). It
//! stores sealed envelopes without reading them and without recording who
//! submitted them. A submission is acknowledged only once its write transaction has
//! committed; writes from every connection are committed together in
//! batches (group commit).
//!
//! Start a relay in-process:
//!
//! ```no_run
//! # async fn run() -> Result<(), tacit_relay::RelayError> {
//! let mut config = tacit_relay::Config::new("relay.db");
//! config.listen = "127.0.0.1:0".parse().unwrap_or(config.listen);
//! let relay = tacit_relay::Relay::bind(config).await?;
//! println!("listening on ws://{}/v1", relay.local_addr());
//! relay.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! `docs/relay.md` describes the protocol, the guarantees and the flags.

mod attachments;
mod conn;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group;
mod inbox;
mod kem;
mod limits;
mod link;
mod listener;
mod metrics;
mod online;
mod push;
mod static_dir;
mod store;
#[cfg(feature = "tls")]
mod tls;
mod tokenless;
mod within;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::connect_info::Connected;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use limits::Rate;
pub use store::{Database, StoreError};

use crate::limits::{PerIp, PerKey};
use crate::link::LinkSlots;
use crate::listener::{ConnSlots, PlainListener, Upgraded};
use crate::metrics::Metrics;
use crate::online::Online;
use crate::store::{Readers, Writer, WriterLimits};

/// Files of a TLS certificate chain and its private key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The default cap on a SQLite database's size: 16 GiB. A relay holds
/// sealed envelopes until their recipients fetch them; a cap keeps a flood
/// from filling the disk the relay shares with its host.
pub const DEFAULT_MAX_DB_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// The relay's settings. [`Config::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the relay keeps its state: a SQLite file ([`Config::new`]) or
    /// a PostgreSQL database shared by several nodes ([`Config::postgres`]).
    pub database: Database,
    /// The relay's name, bound into every login signature.
    pub server_name: String,
    /// The most messages one device's mailbox holds.
    pub queue_cap: u32,
    /// The most envelope bytes one device's mailbox holds, at least
    /// `max_frame_len`; past it, submissions are refused with `QueueFull`
    /// until the device acks.
    pub mailbox_bytes_cap: u64,
    /// How long a message waits for its recipient before it is deleted.
    pub message_ttl: Duration,
    /// The largest client frame accepted, at most
    /// [`MAX_CLIENT_FRAME_LEN`](tacit_relay_proto::MAX_CLIENT_FRAME_LEN).
    pub max_frame_len: usize,
    /// The most one-time prekeys stored per device.
    pub max_one_time_prekeys: u32,
    /// The most one-time KEM prekeys stored per device (an account holds
    /// at most `tacit::session::MAX_ONE_TIME_KEM_PREKEYS`).
    pub max_one_time_kem_prekeys: u32,
    /// Below this many one-time prekeys, the owner is told to upload more.
    pub prekeys_low_threshold: u32,
    /// How far a login timestamp may be from the relay's clock, and how
    /// long a challenge lives.
    pub login_window: Duration,
    /// How often the relay pings; a connection silent for two intervals
    /// is closed.
    pub ping_interval: Duration,
    /// Requests per connection before login.
    pub unauthenticated_rate: Rate,
    /// Requests before login, per peer IP address across its connections.
    pub per_ip_rate: Rate,
    /// Requests per logged-in connection.
    pub authenticated_rate: Rate,
    /// Refused frames or logins a connection may send before it is closed.
    pub max_bad_frames: u32,
    /// How often expired messages are deleted.
    pub purge_interval: Duration,
    /// The most expired messages deleted in one writer command; a purge
    /// repeats it until none is left. It bounds how long one purge holds
    /// the writer and, on SQLite, the memory of its undo journal.
    pub purge_chunk: u32,
    /// The most commands committed in one transaction.
    pub max_batch: usize,
    /// Read-only database connections.
    pub readers: usize,
    /// A cap on the SQLite file's size, in bytes;
    /// [`DEFAULT_MAX_DB_BYTES`] by default, `None` for no cap (none on
    /// PostgreSQL, where it is ignored: cap its storage with the server's
    /// own means). Past it,
    /// as on a full disk, changes are refused with `StorageFull` while
    /// stored messages are still delivered and can be acknowledged.
    pub max_db_bytes: Option<u64>,
    /// UNSAFE, for benchmarks only: SQLite runs with `synchronous=OFF`, so
    /// a commit is not synced to disk before it is answered. Loses
    /// acknowledged messages on power loss (and breaks the relay's promise
    /// that an answer means durable); it exists to measure what the syncs
    /// cost. Off by default; ignored on PostgreSQL.
    pub unsafe_no_fsync_benchmarks_only: bool,
    /// SQLite overwrites what it deletes with zeros (`secure_delete=ON`):
    /// once a message is acknowledged, expired or purged and the log
    /// checkpointed, its envelope and its row (mailbox, times) are gone
    /// from the database file, free pages included, instead of lying in
    /// free space until reused. Old page images stay in the write-ahead
    /// log until its space is reused. Off by default (it costs CPU and
    /// writes: docs/PERFORMANCE.md); ignored on PostgreSQL, whose dead
    /// rows stay until `VACUUM` reuses their space.
    pub secure_delete: bool,
    /// The most bytes of commands waiting for the writer, and in the batch
    /// it applies, together (a submission counts its envelope); a request
    /// past it waits, and its connection reads no further frame, until the
    /// writer catches up.
    pub writer_queue_bytes: usize,
    /// On a shared database, how often the mailboxes of the devices online
    /// here are read again, so that a lost wake-up from another node only
    /// delays a message. Unused on SQLite.
    pub mailbox_recheck: Duration,
    /// Serve over TLS with these files (the `tls` feature).
    pub tls: Option<TlsFiles>,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// How long a link slot keeps its blob (10 minutes, as
    /// `docs/PROTOCOL.md` 14.7 says; shorter in tests).
    pub link_ttl: Duration,
    /// The most link slots live at once, across every connection; past it,
    /// puts are refused with `RateLimited`.
    pub max_link_slots: usize,
    /// Serve the files under this directory at `/`, beside the WebSocket
    /// (a demo page: `examples/web`); none by default.
    pub static_dir: Option<PathBuf>,
    /// How long an accepted connection has to send its HTTP request and
    /// become a WebSocket (the header-read deadline); past it, the
    /// connection is dropped. Plain HTTP connections live at most this
    /// long.
    pub upgrade_timeout: Duration,
    /// How long a connection that is not logged in stays open without a
    /// request of its own: a login or registration ends the deadline, an
    /// anonymous request (`Submit`, `SubmitGroup`, `FetchBundles`,
    /// `FetchDeviceList`, `LinkPut`, `LinkTake`) restarts it, a challenge
    /// alone does not. Past it, the connection is closed.
    pub login_timeout: Duration,
    /// The most connections open at once, across every peer; past it, new
    /// connections are dropped when accepted.
    pub max_connections: usize,
    /// The most connections open at once from one peer network (an IPv4
    /// address or an IPv6 /64).
    pub max_connections_per_ip: usize,
    /// How long a write to a peer may wait (a peer that stopped reading);
    /// past it, the connection is dropped with what was queued for it.
    pub write_timeout: Duration,
    /// Frame bytes before login, per peer network across its connections
    /// (bytes per second, and a burst in bytes); in addition to
    /// `per_ip_rate`, which counts requests.
    pub per_ip_byte_rate: Rate,
    /// Frame bytes after login, per account (a user id, across its
    /// devices and connections): bytes per second, and a burst in bytes.
    pub per_account_byte_rate: Rate,
    /// Registrations per peer network (an IPv4 address or an IPv6 /64),
    /// counted once the registration's signature verifies; past it,
    /// `RateLimited`.
    pub registration_rate_per_ip: Rate,
    /// Registrations across every peer, counted after the per-network
    /// limit.
    pub registration_rate: Rate,
    /// Bundle claims (`FetchBundles`) per requester: a logged-in account,
    /// or the peer network of a connection that is not logged in; past
    /// it, `RateLimited`.
    pub claim_rate_per_requester: Rate,
    /// Recipients a logged-in account may reach without presenting the
    /// delivery token they set (`docs/relay.md`, "Delivery tokens"); past
    /// it, `DeliveryTokenRefused` with `retry_after_ms`. Per node.
    pub tokenless_rate_per_account: Rate,
    /// Claims that use up one-time prekeys, per target user id; past it,
    /// bundles carry the devices' fallback prekeys instead, so no one can
    /// drain a device's one-time prekeys.
    pub one_time_claim_rate_per_target: Rate,
    /// Where to serve `/metrics`, on a listener of its own; none (off) by
    /// default. The WebSocket listener never serves it.
    pub metrics_listen: Option<SocketAddr>,
    /// Accept `http://` push endpoints as well as `https://` ones (tests
    /// and local gateways); off by default.
    pub allow_http_push: bool,
    /// Accept push endpoints on loopback, private, link-local and other
    /// non-public addresses (tests and local gateways); off by default, so
    /// that a device cannot make the relay post into its own network.
    pub allow_private_push: bool,
    /// The most devices with a push wake-up pending at once; past it,
    /// wake-ups for further devices are dropped.
    pub push_max_pending: usize,
    /// Attempts per push wake-up, the first included.
    pub push_attempts: u32,
    /// The wait before the first push retry, doubled for each later one.
    pub push_backoff: Duration,
    /// After a push wake-up, how long further mail for the device waits to
    /// be folded into one more wake-up.
    pub push_coalesce: Duration,
    /// The longest a push request may take, connection included.
    pub push_timeout: Duration,
    /// The largest attachment blob accepted, in bytes (100 MiB by
    /// default).
    pub attachment_max_len: u64,
    /// The most bytes of attachments one account (a user id, across its
    /// devices) holds at once, counting reserved slots at their full size
    /// until they expire (1 GiB by default).
    pub attachment_quota: u64,
    /// How long an attachment lives after its slot is reserved (30 days by
    /// default); then it is deleted with its chunks.
    pub attachment_ttl: Duration,
    /// The slowest transfer rate an attachment upload or download may
    /// have, in bytes per second: a transfer of `n` bytes gets
    /// `upgrade_timeout + n / attachment_min_rate` (16 KiB/s by default).
    pub attachment_min_rate: u64,
}

impl Config {
    /// The defaults, with the database at `db_path`.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Self::with_database(Database::Sqlite(db_path.into()))
    }

    /// The defaults, on the PostgreSQL database at `url`
    /// (`postgres://USER@HOST:PORT/DB`).
    pub fn postgres(url: impl Into<String>) -> Self {
        Self::with_database(Database::Postgres(url.into()))
    }

    /// The defaults, on `database`.
    pub fn with_database(database: Database) -> Self {
        let capped = (!database.is_shared()).then_some(DEFAULT_MAX_DB_BYTES);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            database,
            mailbox_recheck: Duration::from_secs(5),
            server_name: "tacit-relay".into(),
            queue_cap: 10_000,
            mailbox_bytes_cap: 64 * 1024 * 1024,
            message_ttl: Duration::from_secs(30 * 24 * 3600),
            max_frame_len: tacit_relay_proto::MAX_CLIENT_FRAME_LEN,
            max_one_time_prekeys: 1000,
            max_one_time_kem_prekeys: 200,
            prekeys_low_threshold: 10,
            login_window: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            unauthenticated_rate: Rate::new(20.0, 50),
            per_ip_rate: Rate::new(100.0, 500),
            authenticated_rate: Rate::new(200.0, 1000),
            max_bad_frames: 16,
            purge_interval: Duration::from_secs(60),
            purge_chunk: 1024,
            max_batch: 512,
            readers: 4,
            max_db_bytes: capped,
            unsafe_no_fsync_benchmarks_only: false,
            secure_delete: false,
            writer_queue_bytes: 64 * 1024 * 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(10),
            link_ttl: Duration::from_secs(10 * 60),
            max_link_slots: 4096,
            static_dir: None,
            upgrade_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 64,
            write_timeout: Duration::from_secs(20),
            per_ip_byte_rate: Rate::new(1024.0 * 1024.0, 8 * 1024 * 1024),
            per_account_byte_rate: Rate::new(1024.0 * 1024.0, 32 * 1024 * 1024),
            registration_rate_per_ip: Rate::new(1.0 / 60.0, 20),
            registration_rate: Rate::new(20.0, 200),
            claim_rate_per_requester: Rate::new(0.5, 100),
            tokenless_rate_per_account: Rate::new(1.0 / 60.0, 100),
            one_time_claim_rate_per_target: Rate::new(0.1, 100),
            metrics_listen: None,
            allow_http_push: false,
            allow_private_push: false,
            push_max_pending: 10_000,
            push_attempts: 5,
            push_backoff: Duration::from_secs(2),
            push_coalesce: Duration::from_secs(30),
            push_timeout: Duration::from_secs(10),
            attachment_max_len: 100 * 1024 * 1024,
            attachment_quota: 1024 * 1024 * 1024,
            attachment_ttl: Duration::from_secs(30 * 24 * 3600),
            attachment_min_rate: 16 * 1024,
        }
    }

    fn push_settings(&self) -> push::Settings {
        push::Settings {
            allow_http: self.allow_http_push,
            allow_private: self.allow_private_push,
            max_pending: self.push_max_pending,
            attempts: self.push_attempts,
            backoff: self.push_backoff,
            coalesce: self.push_coalesce,
            connect_timeout: self.push_timeout,
            request_timeout: self.push_timeout,
        }
    }

    fn check(&self) -> Result<(), RelayError> {
        let bad = |what: &str| Err(RelayError::Config(what.into()));
        if self.max_frame_len < 64 || self.max_frame_len > tacit_relay_proto::MAX_CLIENT_FRAME_LEN {
            return bad("max frame length out of range");
        }
        if self.server_name.is_empty()
            || self.server_name.len() > tacit_relay_proto::MAX_SERVER_NAME_LEN
        {
            return bad("server name must be 1 to 255 bytes");
        }
        if self.mailbox_bytes_cap < self.max_frame_len as u64 {
            return bad("the mailbox byte cap must hold one frame");
        }
        if self.queue_cap == 0
            || self.max_batch == 0
            || self.writer_queue_bytes == 0
            || self.purge_chunk == 0
        {
            return bad("queue cap, batch size and purge chunk must be positive");
        }
        if self.message_ttl.is_zero()
            || self.ping_interval.is_zero()
            || self.purge_interval.is_zero()
            || self.login_window.is_zero()
            || self.link_ttl.is_zero()
            || self.upgrade_timeout.is_zero()
            || self.login_timeout.is_zero()
            || self.write_timeout.is_zero()
            || self.mailbox_recheck.is_zero()
            || self.push_timeout.is_zero()
            || self.attachment_ttl.is_zero()
        {
            return bad("durations must be positive");
        }
        if self.push_max_pending == 0 || self.push_attempts == 0 {
            return bad("push queue and attempts must be positive");
        }
        if self.attachment_max_len == 0 || self.attachment_min_rate == 0 {
            return bad("attachment size cap and rate must be positive");
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return bad("connection caps must be positive");
        }
        Ok(())
    }
}

/// Why the relay could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A setting is out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listening or serving failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// A relay task failed.
    #[error("relay task failed: {0}")]
    Task(String),
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) writer: Writer,
    pub(crate) readers: Readers,
    pub(crate) online: Arc<Online>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) per_ip: PerIp,
    pub(crate) per_ip_bytes: PerIp,
    pub(crate) per_account_bytes: PerKey<String>,
    pub(crate) registrations_per_ip: PerIp,
    pub(crate) registrations: PerKey<()>,
    pub(crate) claims_per_requester: PerKey<limits::Requester>,
    pub(crate) tokenless: Arc<tokenless::TokenlessQuota>,
    pub(crate) one_time_claims_per_target: PerKey<String>,
    pub(crate) links: LinkSlots,
    pub(crate) blobs: attachments::Blobs,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) connections: watch::Sender<usize>,
    pub(crate) next_connection: AtomicU64,
    pub(crate) push: push::Pusher,
}

/// The relay, started with [`Relay::bind`].
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), RelayError>>,
}

impl Relay {
    /// Opens the database, binds the listener and starts serving in the
    /// background.
    pub async fn bind(config: Config) -> Result<Self, RelayError> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            return Err(RelayError::Tls("built without the tls feature".into()));
        }
        let database = config.database.clone();
        let Started {
            shared,
            shutdown: shutdown_tx,
            writer_thread,
        } = start(config, &database).await?;
        let shutdown_rx = shared.shutdown.clone();
        let slots = ConnSlots::new(
            shared.config.max_connections,
            shared.config.max_connections_per_ip,
            Arc::clone(&shared.metrics),
        );
        let upgrade_within = shared.config.upgrade_timeout;
        let metrics_addr = match metrics::serve(&shared).await {
            Ok(addr) => addr,
            Err(e) => {
                shared.writer.stop().await;
                return Err(e);
            }
        };
        let app = Router::new()
            .route(tacit_relay_proto::WEBSOCKET_PATH, get(websocket))
            .route(
                "/v1/attachments/{id}",
                axum::routing::put(attachments::http::upload)
                    .get(attachments::http::download)
                    .layer(axum::extract::DefaultBodyLimit::disable()),
            )
            .fallback(get(static_file))
            .with_state(Arc::clone(&shared))
            .into_make_service_with_connect_info::<Peer>();
        let purge = tokio::spawn(purge_loop(Arc::clone(&shared)));
        let task = tokio::spawn(async move {
            let mut stop = shutdown_rx.clone();
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            #[cfg(feature = "tls")]
            let served = match tls {
                Some(acceptor) => {
                    let listener = tls::TlsListener::new(listener, acceptor, slots, upgrade_within);
                    axum::serve(listener, app)
                        .with_graceful_shutdown(signal)
                        .await
                }
                None => {
                    axum::serve(PlainListener::new(listener, slots, upgrade_within), app)
                        .with_graceful_shutdown(signal)
                        .await
                }
            };
            #[cfg(not(feature = "tls"))]
            let served = axum::serve(PlainListener::new(listener, slots, upgrade_within), app)
                .with_graceful_shutdown(signal)
                .await;
            // Upgraded WebSocket connections outlive the HTTP server: wait
            // for them to finish their in-flight writes.
            let mut open = shared.connections.subscribe();
            let grace = shared.config.shutdown_grace;
            if tokio::time::timeout(grace, open.wait_for(|n| *n == 0))
                .await
                .is_err()
            {
                tracing::warn!("connections still open after the shutdown grace period");
            }
            purge.abort();
            shared.writer.stop().await;
            let joined = writer_thread.join().await;
            tracing::info!("relay stopped");
            served?;
            if joined {
                Ok(())
            } else {
                Err(RelayError::Task("the writer failed".into()))
            }
        });
        tracing::info!(%local_addr, "relay listening");
        Ok(Self {
            local_addr,
            metrics_addr,
            shutdown: shutdown_tx,
            task,
        })
    }

    /// The address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on, when
    /// [`Config::metrics_listen`] is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stops accepting connections, lets every connection finish its
    /// in-flight requests (their answers are sent), closes the connections,
    /// commits the last batch and closes the database.
    pub async fn shutdown(self) -> Result<(), RelayError> {
        self.trigger_shutdown();
        self.wait().await
    }

    /// Waits until the relay stops (after [`Relay::trigger_shutdown`] or
    /// a failure).
    pub async fn wait(self) -> Result<(), RelayError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(RelayError::Task(e.to_string())),
        }
    }
}

/// The store and the state shared by every connection, running.
pub(crate) struct Started {
    pub(crate) shared: Arc<Shared>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) writer_thread: store::Stopped,
}

/// Opens the database, starts its writer thread and builds the state every
/// connection shares.
pub(crate) async fn start(config: Config, database: &Database) -> Result<Started, RelayError> {
    let online = Arc::new(Online::default());
    let metrics = Arc::new(Metrics::default());
    let limits = WriterLimits {
        queue_cap: config.queue_cap,
        ttl_ms: u64::try_from(config.message_ttl.as_millis()).unwrap_or(u64::MAX),
        prekeys_low: config.prekeys_low_threshold,
        max_batch: config.max_batch,
        max_db_bytes: config.max_db_bytes,
        queue_bytes: config.writer_queue_bytes,
        mailbox_bytes: config.mailbox_bytes_cap,
        mailbox_recheck: config.mailbox_recheck,
        unsafe_no_fsync: config.unsafe_no_fsync_benchmarks_only,
        secure_delete: config.secure_delete,
    };
    let (writer, writer_thread) =
        store::start_writer(database, limits, Arc::clone(&online), Arc::clone(&metrics)).await?;
    let readers = match Readers::open(database, config.readers).await {
        Ok(r) => r,
        Err(e) => {
            writer.stop().await;
            return Err(e.into());
        }
    };
    let pusher = push::Pusher::new(config.push_settings(), readers.clone());
    online.push_with(pusher.clone());
    let blobs = match attachments::Blobs::open(
        database,
        config.max_db_bytes,
        config.secure_delete,
        &readers,
    ) {
        Ok(b) => b,
        Err(e) => {
            writer.stop().await;
            return Err(e.into());
        }
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (connections, _) = watch::channel(0usize);
    let shared = Arc::new(Shared {
        per_ip: PerIp::new(config.per_ip_rate),
        per_ip_bytes: PerIp::new(config.per_ip_byte_rate),
        per_account_bytes: PerKey::new(config.per_account_byte_rate),
        registrations_per_ip: PerIp::new(config.registration_rate_per_ip),
        registrations: PerKey::new(config.registration_rate),
        claims_per_requester: PerKey::new(config.claim_rate_per_requester),
        tokenless: Arc::new(tokenless::TokenlessQuota::new(
            config.tokenless_rate_per_account,
        )),
        one_time_claims_per_target: PerKey::new(config.one_time_claim_rate_per_target),
        links: LinkSlots::new(config.link_ttl, config.max_link_slots).on(&readers),
        blobs,
        config,
        writer,
        readers,
        online,
        metrics,
        shutdown: shutdown_rx,
        connections,
        next_connection: AtomicU64::new(1),
        push: pusher,
    });
    Ok(Started {
        shared,
        shutdown,
        writer_thread,
    })
}

/// The peer's address, for plain and TLS connections alike, and the
/// handle that lifts the connection's upgrade deadline.
#[derive(Debug, Clone)]
pub(crate) struct Peer(pub(crate) SocketAddr, pub(crate) Upgraded);

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        Self(*stream.remote_addr(), stream.io().upgraded())
    }
}

#[cfg(feature = "tls")]
impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr(), stream.io().upgraded())
    }
}

/// Bytes read from a connection's socket at a time.
const READ_CHUNK: usize = 16 * 1024;

async fn websocket(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Peer(peer, upgraded)): ConnectInfo<Peer>,
) -> impl IntoResponse {
    // The request head was read and asks for a WebSocket: the connection's
    // own deadlines (login, keepalive, writes) take over.
    upgraded.lift();
    // The transport reads messages somewhat over the limit so that the
    // relay can answer an oversize frame with a typed error.
    let transport_limit = shared.config.max_frame_len + 64 * 1024;
    ws.max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        // The transport zero-fills this much of its buffer before every
        // read; its 128 KiB default made that memset the relay's largest
        // cost for small frames. Larger messages still arrive whole, over
        // several reads.
        .read_buffer_size(READ_CHUNK)
        .on_upgrade(move |socket| conn::run(shared, socket, peer))
}

/// A file of `--static-dir` (`static_dir`), or 404 without one.
/// A file of the static directory. Its connection's deadline becomes the
/// one an attachment of the file's size would have, so that a slow
/// client still gets a large file, and one that stops reading is cut.
async fn static_file(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Peer(_, upgraded)): ConnectInfo<Peer>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    let response = match &shared.config.static_dir {
        Some(dir) => static_dir::serve(dir, &uri).await,
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    let len = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    let within = attachments::http::transfer_time(&shared, len);
    upgraded.retime(tokio::time::Instant::now() + within);
    response
}

async fn purge_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.purge_interval);
    loop {
        tick.tick().await;
        let now_ms = now_ms();
        match shared.writer.purge(now_ms, shared.config.purge_chunk).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired messages deleted"),
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
        match shared.blobs.purge(now_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired attachments deleted"),
            Err(e) => tracing::warn!(error = %e.message, "attachment purge failed"),
        }
        shared.per_ip.sweep();
        shared.per_ip_bytes.sweep();
        shared.per_account_bytes.sweep();
        shared.registrations_per_ip.sweep();
        shared.claims_per_requester.sweep();
        shared.tokenless.sweep();
        shared.one_time_claims_per_target.sweep();
        shared.links.sweep();
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
