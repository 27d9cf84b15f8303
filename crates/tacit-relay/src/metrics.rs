//! Counters for the `/metrics` endpoint (Prometheus text format), served
//! on a listener of its own ([`Config::metrics_listen`]).
//!
//! A scrape reads only counters kept in memory: no database query. The
//! two database gauges, `devices` and `queued_messages`, are read from the
//! database once when the endpoint starts and then kept up to date from
//! the committed batches.
//!
//! [`Config::metrics_listen`]: crate::Config::metrics_listen

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tacit_relay_proto::ErrorCode;

use crate::{RelayError, Shared};

/// The request kinds counted by `requests_total`, as
/// [`Request::name`](tacit_relay_proto::Request::name) spells them.
const REQUEST_KINDS: [&str; 14] = [
    "get_challenge",
    "register",
    "login",
    "upload_prekeys",
    "fetch_bundles",
    "submit",
    "ack",
    "set_delivery_token",
    "publish_device_list",
    "fetch_device_list",
    "link_put",
    "link_take",
    "submit_group",
    "set_push_endpoint",
];

/// The relay's counters. Rates follow from the totals over time.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) logins_total: AtomicU64,
    pub(crate) frames_in_total: AtomicU64,
    pub(crate) pushed_total: AtomicU64,
    pub(crate) bundles_total: AtomicU64,
    pub(crate) registrations_total: AtomicU64,
    pub(crate) connections_refused_total: AtomicU64,
    pub(crate) login_timeouts_total: AtomicU64,
    pub(crate) write_timeouts_total: AtomicU64,
    /// `devices` and `queued_messages` in the database when the endpoint
    /// started.
    seed_devices: AtomicU64,
    seed_queued: AtomicU64,
    submitted_total: AtomicU64,
    acked_total: AtomicU64,
    expired_total: AtomicU64,
    batches_total: AtomicU64,
    batched_commands_total: AtomicU64,
    errors: Vec<AtomicU64>,
    /// Per request kind: [before login, logged in].
    requests: Vec<[AtomicU64; 2]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connections_total: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            logins_total: AtomicU64::new(0),
            frames_in_total: AtomicU64::new(0),
            pushed_total: AtomicU64::new(0),
            bundles_total: AtomicU64::new(0),
            registrations_total: AtomicU64::new(0),
            connections_refused_total: AtomicU64::new(0),
            login_timeouts_total: AtomicU64::new(0),
            write_timeouts_total: AtomicU64::new(0),
            seed_devices: AtomicU64::new(0),
            seed_queued: AtomicU64::new(0),
            submitted_total: AtomicU64::new(0),
            acked_total: AtomicU64::new(0),
            expired_total: AtomicU64::new(0),
            batches_total: AtomicU64::new(0),
            batched_commands_total: AtomicU64::new(0),
            errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            requests: REQUEST_KINDS
                .iter()
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a committed batch.
    pub(crate) fn record_batch(&self, commands: usize, submitted: u64, acked: u64, expired: u64) {
        inc(&self.batches_total);
        self.batched_commands_total
            .fetch_add(commands as u64, Ordering::Relaxed);
        self.submitted_total.fetch_add(submitted, Ordering::Relaxed);
        self.acked_total.fetch_add(acked, Ordering::Relaxed);
        self.expired_total.fetch_add(expired, Ordering::Relaxed);
    }

    /// Counts an error sent.
    pub(crate) fn record_error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|c| *c == code);
        if let Some(c) = i.and_then(|i| self.errors.get(i)) {
            inc(c);
        }
    }

    /// Counts a request of `kind` (a [`Request::name`]) that arrived on a
    /// connection logged in or not. Only the connection's state is
    /// counted, never who is logged in on it.
    ///
    /// [`Request::name`]: tacit_relay_proto::Request::name
    pub(crate) fn record_request(&self, kind: &str, logged_in: bool) {
        let i = REQUEST_KINDS.iter().position(|k| *k == kind);
        if let Some(pair) = i.and_then(|i| self.requests.get(i)) {
            inc(&pair[usize::from(logged_in)]);
        }
    }

    /// The Prometheus text exposition. `online` is the number of devices
    /// logged in, `removed` the number removed from their users' lists
    /// since start.
    pub(crate) fn render(&self, online: usize, removed: u64) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP tacit_relay_{name} {help}");
            let _ = writeln!(out, "# TYPE tacit_relay_{name} {kind}");
            let _ = writeln!(out, "tacit_relay_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        line(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            self.started.elapsed().as_secs(),
        );
        line(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            get(&self.connections_total),
        );
        line(
            "connections_open",
            "gauge",
            "WebSocket connections open.",
            get(&self.connections_open),
        );
        line(
            "devices_online",
            "gauge",
            "Devices logged in.",
            online as u64,
        );
        line(
            "logins_total",
            "counter",
            "Successful logins and registrations.",
            get(&self.logins_total),
        );
        line(
            "frames_in_total",
            "counter",
            "Frames received.",
            get(&self.frames_in_total),
        );
        line(
            "submitted_total",
            "counter",
            "Envelopes durably queued.",
            get(&self.submitted_total),
        );
        line(
            "pushed_total",
            "counter",
            "Messages pushed to devices (with redeliveries).",
            get(&self.pushed_total),
        );
        line(
            "acked_total",
            "counter",
            "Messages acknowledged and deleted.",
            get(&self.acked_total),
        );
        line(
            "expired_total",
            "counter",
            "Messages deleted undelivered after their TTL.",
            get(&self.expired_total),
        );
        line(
            "bundles_total",
            "counter",
            "Prekey bundles handed out.",
            get(&self.bundles_total),
        );
        line(
            "commit_batches_total",
            "counter",
            "Write transactions committed.",
            get(&self.batches_total),
        );
        line(
            "commit_batched_commands_total",
            "counter",
            "Commands in committed batches.",
            get(&self.batched_commands_total),
        );
        line(
            "connections_refused_total",
            "counter",
            "Connections dropped when accepted: the relay or the peer's network was at its cap.",
            get(&self.connections_refused_total),
        );
        line(
            "login_timeouts_total",
            "counter",
            "Connections closed for not logging in (or not sending a request) in time.",
            get(&self.login_timeouts_total),
        );
        line(
            "write_timeouts_total",
            "counter",
            "Connections dropped because the peer stopped reading.",
            get(&self.write_timeouts_total),
        );
        let devices =
            (get(&self.seed_devices) + get(&self.registrations_total)).saturating_sub(removed);
        line("devices", "gauge", "Registered devices.", devices);
        let queued = (get(&self.seed_queued) + get(&self.submitted_total))
            .saturating_sub(get(&self.acked_total) + get(&self.expired_total));
        line(
            "queued_messages",
            "gauge",
            "Messages waiting in mailboxes.",
            queued,
        );
        let _ = writeln!(
            out,
            "# HELP tacit_relay_requests_total Requests received, by kind and by whether their connection was logged in."
        );
        let _ = writeln!(out, "# TYPE tacit_relay_requests_total counter");
        for (kind, pair) in REQUEST_KINDS.iter().zip(&self.requests) {
            for (connection, c) in ["unauthenticated", "authenticated"].iter().zip(pair) {
                let _ = writeln!(
                    out,
                    "tacit_relay_requests_total{{kind=\"{kind}\",connection=\"{connection}\"}} {}",
                    get(c)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tacit_relay_errors_total Error responses sent, by code."
        );
        let _ = writeln!(out, "# TYPE tacit_relay_errors_total counter");
        for (code, c) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "tacit_relay_errors_total{{code=\"{}\"}} {}",
                code.name(),
                get(c)
            );
        }
        out
    }
}

/// Starts the `/metrics` listener if [`Config::metrics_listen`] is set, and
/// returns its address. The database gauges are read once, here, before
/// the relay serves any connection.
///
/// [`Config::metrics_listen`]: crate::Config::metrics_listen
pub(crate) async fn serve(shared: &Arc<Shared>) -> Result<Option<SocketAddr>, RelayError> {
    let Some(addr) = shared.config.metrics_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    match shared.readers.stats().await {
        Ok(stats) => {
            // The figures a scrape no longer reads (they took a scan of
            // whole tables), once, for the operator.
            tracing::info!(
                devices = stats.devices,
                queued_messages = stats.queued_messages,
                queue_depth_max = stats.max_queue_depth,
                queues_nonempty = stats.nonempty_queues,
                one_time_prekeys = stats.one_time_prekeys,
                one_time_kem_prekeys = stats.one_time_kem_prekeys,
                "database at start"
            );
            let m = &shared.metrics;
            m.seed_devices.store(stats.devices, Ordering::Relaxed);
            m.seed_queued
                .store(stats.queued_messages, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "the database gauges could not be read"),
    }
    let app = Router::new()
        .route("/metrics", get(page))
        .with_state(Arc::clone(shared));
    let mut stop = shared.shutdown.clone();
    tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!(%error, "the metrics listener failed");
        }
    });
    tracing::info!(%local, "metrics listening");
    Ok(Some(local))
}

async fn page(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = shared
        .metrics
        .render(shared.online.len(), shared.online.removed());
    shared.push.counts().render(&mut body);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}
