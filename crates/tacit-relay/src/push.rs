//! Push wake-ups: when mail lands in the mailbox of a device that is not
//! online on this node and has a push endpoint, the relay POSTs an empty
//! request to the endpoint, so that the device connects and reads its
//! mailbox. The request carries nothing about the mail (no sender, size or
//! id); wake-ups for one device are coalesced; failures are retried with
//! exponential backoff; the number of devices with a wake-up pending is
//! capped. Nothing here runs on the commit path: the writer only marks the
//! device ([`Pusher::offer`]), and a task of the device does the rest.
//! `docs/relay.md` ("Push wake-ups") describes the policy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use tacit::Address;
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use crate::store::Readers;

/// SQLite schema version 5: a device's push endpoint (`NULL`: none).
pub(crate) const SCHEMA_SQLITE: &str = "ALTER TABLE devices ADD COLUMN push_endpoint TEXT;";

/// PostgreSQL schema version 3: a device's push endpoint (`NULL`: none).
pub(crate) const SCHEMA_POSTGRES: &str = "ALTER TABLE devices ADD COLUMN push_endpoint TEXT;";

/// How wake-ups are sent.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Accept `http://` endpoints (tests, local gateways).
    pub(crate) allow_http: bool,
    /// Accept endpoints on loopback, private, link-local and other
    /// non-public addresses.
    pub(crate) allow_private: bool,
    /// The most devices with a wake-up pending or in flight.
    pub(crate) max_pending: usize,
    /// Attempts per wake-up, the first included.
    pub(crate) attempts: u32,
    /// The wait before the first retry; doubled for each later one.
    pub(crate) backoff: Duration,
    /// After a wake-up, how long further mail for the device is folded
    /// into one more wake-up at the end of the wait.
    pub(crate) coalesce: Duration,
    /// The longest a TCP (and TLS) connection may take.
    pub(crate) connect_timeout: Duration,
    /// The longest a whole request may take.
    pub(crate) request_timeout: Duration,
}

/// Why an endpoint is refused.
pub(crate) fn check_endpoint(url: &str, settings: &Settings) -> Result<(), &'static str> {
    if url.len() > tacit_relay_proto::MAX_PUSH_ENDPOINT_LEN {
        return Err("the push endpoint is too long");
    }
    let uri: Uri = url.parse().map_err(|_| "the push endpoint is not a URL")?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if settings.allow_http => {}
        _ => return Err("the push endpoint must be an https URL"),
    }
    let Some(authority) = uri.authority() else {
        return Err("the push endpoint has no host");
    };
    if authority.as_str().contains('@') {
        return Err("the push endpoint must not carry credentials");
    }
    let host = host_of(&uri);
    if host.is_empty() {
        return Err("the push endpoint has no host");
    }
    if !settings.allow_private {
        let named_local = host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost");
        let private_ip = host.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip));
        if named_local || private_ip {
            return Err("the push endpoint is not a public address");
        }
    }
    Ok(())
}

/// The URI's host, without the brackets of an IPv6 literal.
fn host_of(uri: &Uri) -> &str {
    uri.host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Whether a wake-up may go to `ip` without `allow_private`. An IPv6
/// address that carries an IPv4 one (mapped, compatible, NAT64 or 6to4)
/// is judged by the IPv4 address it reaches.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0)
        }
    }
}

/// The IPv4 address an IPv6 one leads to: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`, but not `::` and `::1`), NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// Counts of what the pusher did since start.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Wake-ups the endpoint accepted (a 2xx answer).
    pub(crate) sent: AtomicU64,
    /// Attempts that failed (no answer, or not 2xx).
    pub(crate) failed: AtomicU64,
    /// Wake-ups dropped because too many devices had one pending.
    pub(crate) dropped: AtomicU64,
}

impl Counts {
    /// Appends the counts in the Prometheus text exposition.
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, value) in [
            (
                "push_sent_total",
                "Push wake-ups accepted by a gateway.",
                &self.sent,
            ),
            (
                "push_failed_total",
                "Push attempts that failed.",
                &self.failed,
            ),
            (
                "push_dropped_total",
                "Push wake-ups dropped: queue full.",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP tacit_relay_{name} {help}");
            let _ = writeln!(out, "# TYPE tacit_relay_{name} counter");
            let _ = writeln!(out, "tacit_relay_{name} {}", value.load(Ordering::Relaxed));
        }
    }
}

/// Sends wake-ups. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pusher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    readers: Readers,
    runtime: Handle,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Devices with a wake-up pending or in flight, and whether more mail
    /// came since it was taken on.
    pending: Mutex<HashMap<Address, bool>>,
    counts: Counts,
}

impl Pusher {
    /// A pusher reading endpoints with `readers`. Call it inside a tokio
    /// runtime: wake-ups run on it.
    pub(crate) fn new(settings: Settings, readers: Readers) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                readers,
                runtime: Handle::current(),
                tls: tls_connector(),
                pending: Mutex::new(HashMap::new()),
                counts: Counts::default(),
            }),
        }
    }

    /// How wake-ups are sent.
    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// What the pusher did since start.
    pub(crate) fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    /// Mail landed in the mailbox of `address`, which is not online here.
    /// Never blocks: a device with a wake-up already pending gets no second
    /// one now (one more follows the current one), and past the cap the
    /// wake-up is dropped.
    pub(crate) fn offer(&self, address: &Address) {
        let mut pending = self.inner.pending();
        if let Some(again) = pending.get_mut(address) {
            *again = true;
            return;
        }
        if pending.len() >= self.inner.settings.max_pending {
            self.inner.counts.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("push queue full; wake-up dropped");
            return;
        }
        pending.insert(address.clone(), false);
        drop(pending);
        let inner = Arc::clone(&self.inner);
        let address = address.clone();
        self.inner
            .runtime
            .spawn(async move { inner.run(address).await });
    }
}

impl Inner {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Address, bool>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends the device's wake-ups until no more mail came during the
    /// coalescing wait.
    async fn run(&self, address: Address) {
        loop {
            match self.readers.push_endpoint(&address).await {
                Ok(Some(url)) => self.deliver(&url).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(?error, "reading a push endpoint"),
            }
            tokio::time::sleep(self.settings.coalesce).await;
            let mut pending = self.pending();
            match pending.get_mut(&address) {
                Some(again) if *again => *again = false,
                _ => {
                    pending.remove(&address);
                    return;
                }
            }
        }
    }

    /// One wake-up, retried with exponential backoff.
    async fn deliver(&self, url: &str) {
        let mut wait = self.settings.backoff;
        for attempt in 1..=self.settings.attempts.max(1) {
            let sent = tokio::time::timeout(self.settings.request_timeout, self.post(url)).await;
            match sent {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    self.counts.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Ok(status)) => tracing::debug!(status, attempt, "push gateway refused"),
                Ok(Err(error)) => tracing::debug!(error, attempt, "push failed"),
                Err(_) => tracing::debug!(attempt, "push timed out"),
            }
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
            if attempt < self.settings.attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
    }

    /// POSTs an empty body to `url`; the answer's status.
    async fn post(&self, url: &str) -> Result<u16, &'static str> {
        check_endpoint(url, &self.settings)?;
        let uri: Uri = url.parse().map_err(|_| "not a URL")?;
        let https = uri.scheme_str() == Some("https");
        let host = host_of(&uri).to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target = self.resolve(&host, port).await?;
        let connect = tokio::time::timeout(self.settings.connect_timeout, async {
            TcpStream::connect(target)
                .await
                .map_err(|_| "connect failed")
        });
        let tcp = connect.await.map_err(|_| "connect timed out")??;
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let request = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_LENGTH, "0")
            .header("TTL", "86400")
            .header("Urgency", "high")
            .body(Empty::<Bytes>::new())
            .map_err(|_| "bad request")?;
        if https {
            let tls = self.tls.as_ref().ok_or("no root certificates")?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            let name =
                rustls::pki_types::ServerName::try_from(host).map_err(|_| "bad server name")?;
            let stream =
                tokio::time::timeout(self.settings.connect_timeout, tls.connect(name, tcp))
                    .await
                    .map_err(|_| "tls timed out")?
                    .map_err(|_| "tls failed")?;
            exchange(TokioIo::new(stream), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }

    /// The first address of `host` a wake-up may go to. The connection
    /// goes to the address checked here, so a name that resolves to a
    /// private address is refused however it resolves later.
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, &'static str> {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| "name resolution failed")?;
        let mut refused = false;
        for addr in addrs {
            if self.settings.allow_private || is_public(addr.ip()) {
                return Ok(addr);
            }
            refused = true;
        }
        Err(if refused {
            "the endpoint resolves to a non-public address"
        } else {
            "the endpoint's name has no address"
        })
    }
}

/// Sends `request` over `io` with HTTP/1.1; the answer's status.
async fn exchange<T>(io: TokioIo<T>, request: Request<Empty<Bytes>>) -> Result<u16, &'static str>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| "http handshake failed")?;
    let driver = tokio::spawn(connection);
    let answer = sender.send_request(request).await;
    driver.abort();
    answer
        .map(|response| response.status().as_u16())
        .map_err(|_| "no http answer")
}

/// TLS with the platform's roots; none if it has none (https wake-ups then
/// fail, with a warning at start).
fn tls_connector() -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no platform root certificate: https push wake-ups will fail");
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(allow_http: bool, allow_private: bool) -> Settings {
        Settings {
            allow_http,
            allow_private,
            max_pending: 1,
            attempts: 1,
            backoff: Duration::from_millis(1),
            coalesce: Duration::from_millis(1),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn endpoints_are_checked() {
        let strict = settings(false, false);
        assert!(check_endpoint("https://push.example/up/1", &strict).is_ok());
        for good in [
            "https://8.8.8.8/up",
            "https://[2606:4700::1111]/up",
            "https://[64:ff9b::8.8.8.8]/up",
            "https://[2002:808:808::1]/up",
        ] {
            assert!(check_endpoint(good, &strict).is_ok(), "{good}");
        }
        for bad in [
            "http://push.example/up",
            "ftp://push.example/up",
            "https://user:pw@push.example/up",
            "https://token@push.example/up",
            "https://127.0.0.1/up",
            "https://[::1]/up",
            "https://10.1.2.3/up",
            "https://192.168.0.1/up",
            "https://169.254.169.254/latest",
            "https://[fd00::1]/up",
            "https://[::ffff:127.0.0.1]/up",
            "https://[::127.0.0.1]/up",
            "https://[64:ff9b::10.0.0.1]/up",
            "https://[64:ff9b::169.254.169.254]/up",
            "https://[2002:7f00:1::1]/up",
            "https://[2002:a9fe:a9fe::]/up",
            "https://[fec0::1]/up",
            "https://240.0.0.1/up",
            "https://198.18.0.1/up",
            "https://192.0.0.8/up",
            "https://localhost/up",
            "https://a.localhost/up",
            "/relative",
            "not a url",
        ] {
            assert!(check_endpoint(bad, &strict).is_err(), "{bad}");
        }
        let long = format!(
            "https://push.example/{}",
            "a".repeat(tacit_relay_proto::MAX_PUSH_ENDPOINT_LEN)
        );
        assert!(check_endpoint(&long, &strict).is_err());
        let local = settings(true, true);
        assert!(check_endpoint("http://127.0.0.1:8080/up", &local).is_ok());
        assert!(check_endpoint("http://u:p@127.0.0.1/up", &local).is_err());
    }
}
