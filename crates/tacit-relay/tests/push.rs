#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Push wake-ups against a local HTTP receiver: an offline device with an
//! endpoint gets content-free, coalesced wake-ups; an online one gets none;
//! a failing receiver is retried and a silent one holds nothing up;
//! endpoints are checked, also when a name resolves to loopback;
//! redirects are not followed, an endless answer is not read and a silent
//! gateway is hung up on; the wake-ups pending are capped; clearing and
//! removal stop wake-ups. The first
//! test runs on PostgreSQL too when its binaries are installed.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pg::Postgres;
use common::*;
use tacit_relay::{Config, Rate, Relay};
use tacit_relay_proto::{ErrorCode, PublishDeviceList, Reply, Request, SetPushEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the receiver answers.
const OK: u8 = 0;
const FAIL: u8 = 1;
const SILENT: u8 = 2;

/// A local push gateway: records every request it reads.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    arrived: Arc<Notify>,
    mode: Arc<AtomicU8>,
}

impl Receiver {
    async fn start(mode: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/up/device-token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let mode = Arc::new(AtomicU8::new(mode));
        let (r, a, m) = (requests.clone(), arrived.clone(), mode.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (r, a, m) = (r.clone(), a.clone(), m.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    r.lock().unwrap().push(buf);
                    a.notify_waiters();
                    match m.load(Ordering::SeqCst) {
                        OK => {
                            let _ = s
                                .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                        FAIL => {
                            let _ = s
                                .write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                        _ => {
                            // Never answer; hold the connection open.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                });
            }
        });
        Self {
            url,
            requests,
            arrived,
            mode,
        }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if self.count() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} wake-ups, not {n}", self.count()));
    }
}

/// A config that accepts local http endpoints and coalesces for `window`.
fn local(mut c: Config, window: Duration) -> Config {
    c.allow_http_push = true;
    c.allow_private_push = true;
    c.push_coalesce = window;
    c.push_backoff = Duration::from_millis(20);
    c.push_attempts = 3;
    c
}

fn set(url: &str) -> Request {
    Request::SetPushEndpoint(SetPushEndpoint {
        url: Some(url.into()),
    })
}

fn clear() -> Request {
    Request::SetPushEndpoint(SetPushEndpoint { url: None })
}

/// A gateway answering as `mode` says and a relay (scratch directory
/// `name`) that sends it wake-ups coalesced over 10 ms.
async fn with_gateway(name: &str, mode: u8) -> (TempDir, Receiver, Relay) {
    let dir = TempDir::new(name);
    let gateway = Receiver::start(mode).await;
    let relay = Relay::bind(local(config(&dir.db()), Duration::from_millis(10)))
        .await
        .unwrap();
    (dir, gateway, relay)
}

/// Registers `device` and sets `url` as its endpoint: its connection.
async fn with_endpoint(relay: &Relay, device: &Device, url: &str) -> TcpClient {
    let mut c = registered(relay.local_addr(), device).await;
    assert_eq!(c.request(set(url)).await, Ok(Reply::PushEndpointSet));
    c
}

/// Registers `device` with `url` as its endpoint and disconnects it.
async fn offline_with(relay: &Relay, device: &Device, url: &str) {
    let before = online(relay).await;
    drop(with_endpoint(relay, device, url).await);
    wait_online(relay, before).await;
}

async fn online(relay: &Relay) -> u64 {
    metric(&metrics(relay).await, "tacit_relay_devices_online")
}

/// Waits until `n` devices are online (a dropped connection is noticed).
async fn wait_online(relay: &Relay, n: u64) {
    tokio::time::timeout(WAIT, async {
        while online(relay).await != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// Submits `n` envelopes to `to`, each acknowledged.
async fn submit_n(relay: &Relay, to: &tacit::Address, n: usize) {
    let mut alice = connect(relay.local_addr()).await;
    for i in 0..n {
        let r = alice.submit(to, format!("secret-{i}").as_bytes()).await;
        assert!(matches!(r, Ok(Reply::Submitted { .. })), "{r:?}");
    }
}

async fn coalesced_content_free(config: Config) {
    let gateway = Receiver::start(OK).await;
    let relay = Relay::bind(local(config, Duration::from_secs(2)))
        .await
        .unwrap();
    let bob = Device::new("bob", 1, 2);
    offline_with(&relay, &bob, &gateway.url).await;
    submit_n(&relay, &bob.address, 40).await;
    gateway.wait_for(1).await;
    let wakeups = gateway.count();
    assert!(wakeups < 20, "{wakeups} wake-ups for 40 messages");
    for request in gateway.requests.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        assert!(
            text.starts_with("post /up/device-token http/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("alice") && !text.contains("bob"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "a body: {text}");
    }
    // The wake-up did not take the mail: bob finds all of it.
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    assert_eq!(b.drain().await.len(), 40);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_offline_device_gets_coalesced_content_free_wakeups() {
    let dir = TempDir::new("push-coalesced");
    coalesced_content_free(config(&dir.db())).await;
}

#[tokio::test]
async fn an_offline_device_gets_wakeups_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let mut c = Config::postgres(pg.url());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.server_name = "test-relay".into();
    c.unauthenticated_rate = Rate::new(10_000.0, 10_000);
    c.authenticated_rate = Rate::new(10_000.0, 10_000);
    c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    coalesced_content_free(c).await;
}

#[tokio::test]
async fn an_online_device_gets_no_wakeup() {
    let (_dir, gateway, relay) = with_gateway("push-online", OK).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = with_endpoint(&relay, &bob, &gateway.url).await;
    b.drain().await;
    submit_n(&relay, &bob.address, 5).await;
    for _ in 0..5 {
        b.next_push().await;
    }
    // A later device that is offline does get one, so the receiver works
    // and the online device's absence is not for want of time.
    let carol = Device::new("carol", 1, 3);
    offline_with(&relay, &carol, &gateway.url).await;
    submit_n(&relay, &carol.address, 1).await;
    gateway.wait_for(1).await;
    assert_eq!(gateway.count(), 1);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_gateway_is_retried_and_the_mail_stays() {
    let (_dir, gateway, relay) = with_gateway("push-failing", FAIL).await;
    let bob = Device::new("bob", 1, 2);
    offline_with(&relay, &bob, &gateway.url).await;
    submit_n(&relay, &bob.address, 1).await;
    // Three attempts (the config's), with backoff between them.
    gateway.wait_for(3).await;
    let page = metrics(&relay).await;
    assert!(
        metric(&page, "tacit_relay_push_failed_total") >= 3,
        "{page}"
    );
    assert_eq!(metric(&page, "tacit_relay_push_sent_total"), 0);
    let mut b = connect(relay.local_addr()).await;
    b.login(&bob).await.unwrap();
    assert_eq!(b.drain().await.len(), 1);
    // Once the gateway answers, the next mail's wake-up is accepted.
    drop(b);
    gateway.mode.store(OK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = gateway.count();
    submit_n(&relay, &bob.address, 1).await;
    gateway.wait_for(before + 1).await;
    let sent = tokio::time::timeout(WAIT, async {
        loop {
            let page = metrics(&relay).await;
            if metric(&page, "tacit_relay_push_sent_total") >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    sent.await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_gateway_holds_up_no_submission() {
    let dir = TempDir::new("push-silent");
    let gateway = Receiver::start(SILENT).await;
    let mut c = local(config(&dir.db()), Duration::from_millis(10));
    c.push_timeout = Duration::from_secs(3600);
    let relay = Relay::bind(c).await.unwrap();
    let mut devices = Vec::new();
    for i in 0..8u8 {
        let d = Device::new(&format!("user{i}"), 1, 10 + i);
        offline_with(&relay, &d, &gateway.url).await;
        devices.push(d);
    }
    for d in &devices {
        submit_n(&relay, &d.address, 10).await;
    }
    // Every wake-up reached the gateway, none was answered, and every
    // submission above was acknowledged.
    gateway.wait_for(devices.len()).await;
    let page = metrics(&relay).await;
    assert_eq!(metric(&page, "tacit_relay_push_sent_total"), 0);
    assert_eq!(gateway.mode.load(Ordering::SeqCst), SILENT);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn endpoints_are_checked() {
    let dir = TempDir::new("push-checked");
    let relay = start(&dir.db()).await;
    let mut anonymous = connect(relay.local_addr()).await;
    let refused = anonymous.request(set("https://push.example/up")).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::NotAuthenticated);
    let mut b = connect(relay.local_addr()).await;
    b.register(&Device::new("bob", 1, 2)).await.unwrap();
    for url in [
        "http://push.example/up".to_owned(),
        "https://user:secret@push.example/up".to_owned(),
        "https://127.0.0.1:9/up".to_owned(),
        "https://[::1]/up".to_owned(),
        "https://10.0.0.1/up".to_owned(),
        "https://localhost/up".to_owned(),
        "not a url".to_owned(),
        format!(
            "https://push.example/{}",
            "a".repeat(tacit_relay_proto::MAX_PUSH_ENDPOINT_LEN)
        ),
    ] {
        let refused = b.request(set(&url)).await;
        let code = refused.unwrap_err().code;
        assert!(matches!(code, ErrorCode::InvalidRequest), "{url}: {code:?}");
    }
    assert_eq!(
        b.request(set("https://push.example/up/x")).await,
        Ok(Reply::PushEndpointSet)
    );
    assert_eq!(b.request(clear()).await, Ok(Reply::PushEndpointSet));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cleared_endpoint_gets_no_wakeup() {
    let (_dir, gateway, relay) = with_gateway("push-cleared", OK).await;
    let bob = Device::new("bob", 1, 2);
    let mut b = with_endpoint(&relay, &bob, &gateway.url).await;
    assert_eq!(b.request(clear()).await, Ok(Reply::PushEndpointSet));
    drop(b);
    wait_online(&relay, 0).await;
    // Carol's wake-up is the marker: bob's, had it been sent, would come
    // first (both go to one receiver, in submission order per device).
    let carol = Device::new("carol", 1, 3);
    offline_with(&relay, &carol, &gateway.url).await;
    submit_n(&relay, &bob.address, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    submit_n(&relay, &carol.address, 1).await;
    gateway.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.count(), 1);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_removed_device_loses_its_endpoint() {
    let (_dir, gateway, relay) = with_gateway("push-removed", OK).await;
    let (_, bobs) = same_user(1, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let mut one = connect(relay.local_addr()).await;
    one.register(&bobs[0]).await.unwrap();
    offline_with(&relay, &bobs[1], &gateway.url).await;
    // Bob's first device drops the second, then adds it back: the device
    // registers again, without an endpoint.
    let without = same_user(2, vec![Device::new("bob", 1, 2)]).0;
    let r = one
        .request(Request::PublishDeviceList(PublishDeviceList {
            device_list: (&without).into(),
        }))
        .await;
    assert!(matches!(r, Ok(Reply::DeviceListStored { .. })), "{r:?}");
    let (with, again) = same_user(3, vec![Device::new("bob", 1, 2), Device::new("bob", 2, 3)]);
    let r = one
        .request(Request::PublishDeviceList(PublishDeviceList {
            device_list: (&with).into(),
        }))
        .await;
    assert!(matches!(r, Ok(Reply::DeviceListStored { .. })), "{r:?}");
    let mut two = connect(relay.local_addr()).await;
    two.register(&again[1]).await.unwrap();
    drop(two);
    wait_online(&relay, 1).await;
    let carol = Device::new("carol", 1, 4);
    offline_with(&relay, &carol, &gateway.url).await;
    submit_n(&relay, &again[1].address, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    submit_n(&relay, &carol.address, 1).await;
    gateway.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.count(), 1);
    relay.shutdown().await.unwrap();
}

/// Waits until the relay counts at least `n` failed push attempts.
async fn wait_failed(relay: &Relay, n: u64) {
    tokio::time::timeout(WAIT, async {
        while metric(&metrics(relay).await, "tacit_relay_push_failed_total") < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_never_contacted() {
    let gateway = Receiver::start(OK).await;
    let port = gateway
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    // Names, not address literals, so they pass the check when set; each
    // resolves to 127.0.0.1.
    let names = ["127.1", "2130706433", "0x7f.0.0.1"];
    let dir = TempDir::new("push-resolved");
    let mut c = local(config(&dir.db()), Duration::from_millis(10));
    c.allow_private_push = false;
    c.push_attempts = 1;
    let relay = Relay::bind(c).await.unwrap();
    for (i, name) in names.iter().enumerate() {
        let device = Device::new(&format!("user{i}"), 1, 10 + i as u8);
        offline_with(&relay, &device, &format!("http://{name}:{port}/up")).await;
        submit_n(&relay, &device.address, 1).await;
        wait_failed(&relay, i as u64 + 1).await;
    }
    assert_eq!(gateway.count(), 0);
    relay.shutdown().await.unwrap();
    // The same names reach the gateway when private addresses are allowed:
    // they did resolve to it.
    let dir = TempDir::new("push-resolved-allowed");
    let relay = Relay::bind(local(config(&dir.db()), Duration::from_millis(10)))
        .await
        .unwrap();
    for (i, name) in names.iter().enumerate() {
        let device = Device::new(&format!("user{i}"), 1, 10 + i as u8);
        offline_with(&relay, &device, &format!("http://{name}:{port}/up")).await;
        submit_n(&relay, &device.address, 1).await;
        gateway.wait_for(i + 1).await;
    }
    relay.shutdown().await.unwrap();
}

/// A gateway that reads one request head on each connection and hands
/// the socket to `answer`; answers the endpoint URL.
async fn scripted_gateway<F, Fut>(answer: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                answer(s).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = Receiver::start(OK).await;
    let location = target.url.clone();
    let url = scripted_gateway(move |mut s| {
        let location = location.clone();
        async move {
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    let dir = TempDir::new("push-redirect");
    let mut c = local(config(&dir.db()), Duration::from_millis(10));
    c.push_attempts = 2;
    let relay = Relay::bind(c).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    offline_with(&relay, &bob, &url).await;
    submit_n(&relay, &bob.address, 1).await;
    wait_failed(&relay, 2).await;
    assert_eq!(target.count(), 0, "the redirect was followed");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_endless_answer_is_not_read_and_a_silent_gateway_is_hung_up_on() {
    // An endless body after a 200: the relay takes the status and hangs up,
    // so the gateway's writes fail.
    let (hung_up, mut hung_up_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let tx = hung_up.clone();
    let endless = scripted_gateway(move |mut s| {
        let tx = tx.clone();
        async move {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n";
            if s.write_all(head).await.is_err() {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            while s.write_all(&block).await.is_ok() {}
            let _ = tx.send("endless");
        }
    })
    .await;
    // A gateway that never answers: once the request times out, the relay
    // closes the connection, which the gateway reads as its end.
    let tx = hung_up.clone();
    let silent = scripted_gateway(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut byte = [0u8; 1];
            while matches!(s.read(&mut byte).await, Ok(n) if n > 0) {}
            let _ = tx.send("silent");
        }
    })
    .await;
    let dir = TempDir::new("push-endless");
    let mut c = local(config(&dir.db()), Duration::from_millis(10));
    c.push_attempts = 1;
    c.push_timeout = Duration::from_millis(300);
    let relay = Relay::bind(c).await.unwrap();
    let bob = Device::new("bob", 1, 2);
    offline_with(&relay, &bob, &endless).await;
    let carol = Device::new("carol", 1, 3);
    offline_with(&relay, &carol, &silent).await;
    submit_n(&relay, &bob.address, 1).await;
    submit_n(&relay, &carol.address, 1).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let which = tokio::time::timeout(WAIT, hung_up_rx.recv())
            .await
            .expect("a gateway connection was kept open")
            .unwrap();
        seen.push(which);
    }
    seen.sort_unstable();
    assert_eq!(seen, ["endless", "silent"]);
    // The 200 counted as a wake-up sent.
    tokio::time::timeout(WAIT, async {
        while metric(&metrics(&relay).await, "tacit_relay_push_sent_total") < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn pending_wakeups_are_capped() {
    let dir = TempDir::new("push-capped");
    let gateway = Receiver::start(SILENT).await;
    let mut c = local(config(&dir.db()), Duration::from_millis(10));
    c.push_timeout = Duration::from_secs(3600);
    c.push_max_pending = 2;
    let relay = Relay::bind(c).await.unwrap();
    let mut devices = Vec::new();
    for i in 0..5u8 {
        let d = Device::new(&format!("user{i}"), 1, 10 + i);
        offline_with(&relay, &d, &gateway.url).await;
        devices.push(d);
    }
    for d in &devices {
        submit_n(&relay, &d.address, 1).await;
    }
    // Two wake-ups hang at the silent gateway; the other three devices
    // found the table full and were dropped, not queued.
    gateway.wait_for(2).await;
    tokio::time::timeout(WAIT, async {
        while metric(&metrics(&relay).await, "tacit_relay_push_dropped_total") < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(gateway.count(), 2);
    relay.shutdown().await.unwrap();
}
