//! The relay side: the relay processes, the devices, and the scenarios,
//! over the frame client of `tacit_testkit::relay`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures_util::FutureExt as _;
use tacit::identity::UserKeyPair;
use tacit::{Address, IdentityKeyPair};
use tacit_relay_proto::{Ack, ClientFrame, Reply, Request, ServerFrame, Submit};
use tacit_testkit::relay::{
    spawn_relay, ClientError, Device, FrameSink, TcpClient, WebSocketConfig,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::procfs::{rss_bytes, settled_cpu_us, ServerCpu};
use crate::report::Metrics;
use crate::{join_all, payload, percentile, Args, RecvStats, SendStats};

/// How long one connection may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Ack ids in one Ack request (the protocol allows up to 1024).
const ACK_BATCH: usize = 512;

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tacit-load-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay process on 127.0.0.1.
#[derive(Debug)]
pub(crate) struct RelayProc {
    child: tokio::process::Child,
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl RelayProc {
    pub(crate) async fn spawn(bin: &Path, db: &Path) -> anyhow::Result<Self> {
        let huge = "1000000000";
        let mut command = tokio::process::Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--server-name", "tacit-load"])
            .arg("--db")
            .arg(db)
            // The load is one client host: lift the abuse limits.
            .args(["--queue-cap", huge, "--mailbox-bytes-cap", "1000000000000"])
            .args(["--rate-authenticated", huge, "--burst-authenticated", huge])
            .args([
                "--rate-unauthenticated",
                huge,
                "--burst-unauthenticated",
                huge,
            ])
            .args(["--rate-per-ip", huge, "--burst-per-ip", huge])
            .args([
                "--byte-rate-per-ip",
                huge,
                "--byte-burst-per-ip",
                "4000000000",
            ])
            .args(["--registration-rate-per-ip", huge])
            .args(["--registration-burst-per-ip", huge])
            .args(["--registration-rate", huge, "--registration-burst", huge])
            .args(["--claim-rate-per-requester", huge])
            .args(["--claim-burst-per-requester", huge])
            .args(["--one-time-claim-rate-per-target", huge])
            .args(["--one-time-claim-burst-per-target", huge])
            .args(["--tokenless-rate-per-account", huge])
            .args(["--tokenless-burst-per-account", huge])
            .args([
                "--byte-rate-per-account",
                huge,
                "--byte-burst-per-account",
                "4000000000",
            ])
            .args(["--max-connections", huge, "--max-connections-per-ip", huge])
            .args(["--max-db-bytes", "0", "--writer-queue-bytes", huge])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let relay = spawn_relay(command, Duration::from_secs(30))
            .await
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr = relay.addr;
        let pid = relay.child.id().context("the relay has no pid")?;
        if !addr.ip().is_loopback() {
            bail!("the relay listens on {addr}, not on loopback");
        }
        Ok(Self {
            child: relay.child,
            addr,
            pid,
            _stdout: relay.stdout,
        })
    }

    /// SIGKILL, and wait for the process to go.
    async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL after 30 s.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The relay nodes of one scenario: `n` processes on the same `--db`
/// (with `n > 1` a database that nodes share, e.g. PostgreSQL behind a
/// `--relay-bin` wrapper that maps the path to one database).
#[derive(Debug)]
pub(crate) struct Nodes(Vec<RelayProc>);

impl Nodes {
    /// Starts `n` nodes one after the other (the first one migrates the
    /// schema before the others connect).
    pub(crate) async fn spawn(bin: &Path, db: &Path, n: u32) -> anyhow::Result<Self> {
        let mut procs = Vec::new();
        for _ in 0..n.max(1) {
            procs.push(RelayProc::spawn(bin, db).await?);
        }
        Ok(Self(procs))
    }

    /// Every node's address, in order.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.0.iter().map(|p| p.addr).collect()
    }

    /// Every node's pid, in order.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.0.iter().map(|p| p.pid).collect()
    }

    /// The sum of the nodes' resident memory, if every one can be read.
    fn rss_bytes(&self) -> Option<u64> {
        self.0.iter().map(|p| rss_bytes(p.pid)).sum()
    }

    /// SIGKILL of every node.
    async fn kill(self) -> anyhow::Result<()> {
        for p in self.0 {
            p.kill().await?;
        }
        Ok(())
    }

    /// A graceful shutdown of every node.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        for p in self.0 {
            p.stop().await?;
        }
        Ok(())
    }
}

/// The node of device `i` among `nodes`: receivers are shifted by one so
/// that with several nodes every receiver sits on a node other than its
/// sender's.
pub(crate) fn node_of(nodes: &[SocketAddr], i: usize, shift: usize) -> SocketAddr {
    nodes[(i + shift) % nodes.len()]
}

/// A device of the load. Each device is its own user, with a one-device
/// list (version 1) signed by a user key derived, like the identity, from
/// the device's number: the same device presents the same list on every
/// run.
pub(crate) fn device(role: &str, i: u32) -> anyhow::Result<Device> {
    let mut seed = [0x4c; 32];
    seed[0] = role.as_bytes().first().copied().unwrap_or(0);
    seed[1..5].copy_from_slice(&i.to_be_bytes());
    let address = Address::new(&format!("load-{role}{i}"), 1)?;
    let identity = IdentityKeyPair::from_seed(&seed);
    seed[5] ^= 0x55;
    Ok(Device::signed(
        address,
        identity,
        &UserKeyPair::from_seed(&seed),
    ))
}

/// Sends `request` and returns its answer, or the refusal as an error.
pub(crate) async fn request(ws: &mut TcpClient, request: Request) -> anyhow::Result<Reply> {
    ws.try_request(request)
        .await?
        .map_err(|e| anyhow!("relay refused: {e:?}"))
}

/// The client's WebSocket settings: a 16 KiB read chunk (the transport
/// zero-fills a whole chunk before each read; the 128 KiB default costs
/// the load generator CPU that the relay shares).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// Connects and registers (or, if registered, logs in) `device`.
async fn login(addr: SocketAddr, device: &Device) -> anyhow::Result<TcpClient> {
    let attempt = async {
        let mut ws = TcpClient::try_connect_with(addr, ws_config())
            .await?
            .named("tacit-load");
        match ws.try_register(device).await? {
            Ok(Reply::LoggedIn(_)) => Ok(ws),
            other => bail!("unexpected answer to register: {other:?}"),
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT, attempt)
        .await
        .context("login timed out")?
}

/// Logs in every device, a few at a time.
pub(crate) async fn login_all(
    addr: SocketAddr,
    devices: &[Device],
) -> anyhow::Result<Vec<TcpClient>> {
    login_spread(&[addr], devices, 0).await
}

/// Logs in device `i` on `node_of(nodes, i, shift)`, all at once.
async fn login_spread(
    nodes: &[SocketAddr],
    devices: &[Device],
    shift: usize,
) -> anyhow::Result<Vec<TcpClient>> {
    let handles: Vec<_> = devices
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, d)| {
            let addr = node_of(nodes, i, shift);
            tokio::spawn(async move { login(addr, &d).await })
        })
        .collect();
    join_all(handles).await.into_iter().collect()
}

/// Sends `count` messages to `to`, at most `window` unanswered, paced at
/// one per `pace` if given, until every one is answered or `deadline`.
#[allow(clippy::too_many_arguments)]
async fn send(
    ws: TcpClient,
    to: Address,
    pair: u32,
    count: u32,
    pace: Option<(Instant, Duration)>,
    window: u32,
    payload_len: usize,
    t0: Instant,
    deadline: Instant,
) -> anyhow::Result<SendStats> {
    const BASE: u64 = 100;
    let (mut sink, mut stream) = ws.split();
    let mut stats = SendStats {
        acked_set: vec![false; count as usize],
        ..SendStats::default()
    };
    let mut buf = payload::filler(payload_len);
    let (mut sent, mut in_flight) = (0u32, 0u32);
    let mut next_due = pace.map(|(start, _)| start);
    while stats.acked + stats.errors < count && Instant::now() < deadline {
        let mut fed = false;
        while sent < count && in_flight < window {
            let stamp = match (next_due, pace) {
                (Some(due), Some((_, every))) => {
                    if Instant::now() < due {
                        break;
                    }
                    next_due = Some(due + every);
                    // The intended send time, so that a late sender does
                    // not hide queueing delay.
                    u64::try_from(due.saturating_duration_since(t0).as_nanos()).unwrap_or(0)
                }
                _ => payload::ns_since(t0),
            };
            payload::fill(&mut buf, pair, sent, stamp);
            let frame = ClientFrame {
                request_id: BASE + u64::from(sent),
                request: Request::Submit(Submit::new(to.clone(), buf.clone(), None)?),
            };
            sink.feed(&frame).await?;
            sent += 1;
            in_flight += 1;
            fed = true;
        }
        if fed {
            sink.flush().await?;
        }
        let wake = match next_due {
            Some(due) if sent < count && in_flight < window => due.min(deadline),
            _ => deadline,
        };
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(ClientError::Closed) => bail!("the relay closed a sender's connection"),
                    Err(e) => return Err(e.into()),
                };
                if let ServerFrame::Response(r) = frame {
                    let Some(seq) = r.request_id.checked_sub(BASE) else { continue };
                    in_flight = in_flight.saturating_sub(1);
                    match r.result {
                        Ok(Reply::Submitted { .. }) => {
                            stats.acked += 1;
                            if let Some(slot) = stats.acked_set.get_mut(seq as usize) {
                                *slot = true;
                            }
                        }
                        other => {
                            stats.errors += 1;
                            if stats.first_error.is_none() {
                                stats.first_error = Some(format!("{other:?}"));
                            }
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    sink.close().await;
    Ok(stats)
}

/// When a receiver stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Every expected message arrived and every ack was answered.
    All,
    /// The stored backlog was pushed (`QueueEmpty`) and acked.
    QueueEmpty,
}

/// A receiver's acknowledgements: the message ids not yet acked, the id of
/// the next Ack request (from 10, above the login's), and the Acks not yet
/// answered.
struct Acks {
    pending: Vec<u64>,
    next_id: u64,
    out: u32,
}

impl Acks {
    /// Acks every pending id in one request.
    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        sink: &mut FrameSink<S>,
    ) -> anyhow::Result<()> {
        let frame = ClientFrame {
            request_id: self.next_id,
            request: Request::Ack(Ack::new(std::mem::take(&mut self.pending))?),
        };
        self.next_id += 1;
        self.out += 1;
        sink.send(&frame).await?;
        Ok(())
    }
}

/// Receives pushes and acks them in batches.
async fn receive(
    ws: TcpClient,
    expected: u32,
    until: Until,
    t0: Instant,
    deadline: Instant,
    latency: bool,
) -> anyhow::Result<RecvStats> {
    let (mut sink, mut stream) = ws.split();
    let mut stats = RecvStats {
        seen: vec![false; expected as usize],
        ..RecvStats::default()
    };
    let mut acks = Acks {
        pending: Vec::with_capacity(ACK_BATCH),
        next_id: 10,
        out: 0,
    };
    let mut queue_empty = false;
    loop {
        let done = match until {
            Until::All => stats.distinct >= expected,
            Until::QueueEmpty => queue_empty,
        };
        if done && acks.pending.is_empty() && acks.out == 0 {
            break;
        }
        let message = if acks.pending.is_empty() {
            match tokio::time::timeout_at(deadline.into(), stream.next()).await {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            match stream.next().now_or_never() {
                Some(m) => m,
                None => {
                    // Nothing more is ready: acknowledge what came.
                    acks.send(&mut sink).await?;
                    continue;
                }
            }
        };
        let frame = match message {
            Ok(frame) => frame,
            Err(ClientError::Closed) => bail!("the relay closed a receiver's connection"),
            Err(e) => return Err(e.into()),
        };
        match frame {
            ServerFrame::Push(p) => {
                stats.deliveries += 1;
                if let Some((_, seq, sent_ns)) = payload::parse(&p.envelope) {
                    if latency {
                        let us = payload::ns_since(t0).saturating_sub(sent_ns) / 1000;
                        stats
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    if let Some(slot) = stats.seen.get_mut(seq as usize) {
                        if !*slot {
                            *slot = true;
                            stats.distinct += 1;
                        }
                    }
                }
                acks.pending.push(p.message_id);
                if acks.pending.len() >= ACK_BATCH {
                    acks.send(&mut sink).await?;
                }
            }
            ServerFrame::QueueEmpty => queue_empty = true,
            ServerFrame::Response(r) if r.request_id >= 10 => {
                acks.out = acks.out.saturating_sub(1);
                if r.result.is_err() {
                    stats.errors += 1;
                }
            }
            _ => {}
        }
    }
    sink.close().await;
    Ok(stats)
}

fn devices(role: &str, n: u32) -> anyhow::Result<Vec<Device>> {
    (0..n).map(|i| device(role, i)).collect()
}

/// Runs `count` messages per pair from `senders` to `receivers` (both
/// logged in) and returns (send, receive, seconds until all received).
#[allow(clippy::too_many_arguments)]
async fn online(
    args: &Args,
    senders: Vec<TcpClient>,
    receivers: Vec<TcpClient>,
    to: &[Device],
    per_pair: u32,
    rate: Option<f64>,
    t0: Instant,
    deadline: Instant,
) -> anyhow::Result<(Vec<SendStats>, Vec<RecvStats>, f64)> {
    let start = Instant::now();
    let pairs = senders.len() as u32;
    let recv: Vec<_> = receivers
        .into_iter()
        .map(|ws| {
            tokio::spawn(receive(
                ws,
                per_pair,
                Until::All,
                t0,
                deadline,
                rate.is_some(),
            ))
        })
        .collect();
    let send: Vec<_> = senders
        .into_iter()
        .zip(to)
        .enumerate()
        .map(|(i, (ws, d))| {
            let pace = rate.map(|r| {
                let every = Duration::from_secs_f64(f64::from(pairs) / r);
                // Stagger the senders across one interval.
                (start + every.mul_f64(i as f64 / f64::from(pairs)), every)
            });
            tokio::spawn(send(
                ws,
                d.address.clone(),
                i as u32,
                per_pair,
                pace,
                args.window,
                args.payload,
                t0,
                deadline,
            ))
        })
        .collect();
    let recv: Vec<RecvStats> = join_all(recv).await.into_iter().collect::<Result<_, _>>()?;
    let elapsed = start.elapsed().as_secs_f64();
    let send: Vec<SendStats> = join_all(send).await.into_iter().collect::<Result<_, _>>()?;
    Ok((send, recv, elapsed))
}

fn warn_short(what: &str, got: u64, want: u64) {
    if got < want {
        eprintln!("warning: {what}: {got} of {want} (cap reached or errors)");
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The database server's pid, from `--db-pidfile` (its first line, as
/// in PostgreSQL's `postmaster.pid`).
fn db_pid(args: &Args) -> Option<u32> {
    let path = args.db_pidfile.as_ref()?;
    let first = std::fs::read_to_string(path).ok()?;
    first.lines().next()?.trim().parse().ok()
}

/// Every scenario against fresh relay nodes each (`--nodes`).
pub(crate) async fn run(args: &Args, round: u32) -> anyhow::Result<Metrics> {
    let bin = args.relay_bin.clone().context("no relay binary")?;
    let mut m = Metrics::new();
    let pairs = args.pairs;
    let senders_d = devices("s", pairs)?;
    let receivers_d = devices("r", pairs)?;
    let t0 = Instant::now();

    if args.runs("a") || args.runs("a'") {
        for (key, per_pair, rate) in [
            ("a", args.messages_per_pair, None),
            (
                "ap",
                args.paced_messages / pairs.max(1),
                Some(args.paced_rate),
            ),
        ] {
            let name = if key == "a" { "a" } else { "a'" };
            if !args.runs(name) {
                continue;
            }
            let dir = TempDir::new(&format!("relay-{key}-{round}"))?;
            let relay = Nodes::spawn(&bin, &dir.0.join("relay.db"), args.nodes).await?;
            let receivers = login_spread(&relay.addrs(), &receivers_d, 1).await?;
            let senders = login_spread(&relay.addrs(), &senders_d, 0).await?;
            let deadline = Instant::now() + args.cap();
            let cpu = ServerCpu::now(&relay.pids(), db_pid(args));
            let (send, recv, secs) = online(
                args,
                senders,
                receivers,
                &receivers_d,
                per_pair,
                rate,
                t0,
                deadline,
            )
            .await?;
            let cpu = cpu
                .zip(ServerCpu::now(&relay.pids(), db_pid(args)))
                .map(|(before, after)| after.minus(before));
            relay.stop().await?;
            let s = crate::sum_sends(&send);
            let r = crate::sum_recvs(recv);
            let want = u64::from(per_pair) * u64::from(pairs);
            warn_short("relay delivered", u64::from(r.distinct), want);
            if let Some(e) = s.first_error {
                eprintln!("warning: relay refused {} submits, first: {e}", s.errors);
            }
            let delivered = f64::from(r.distinct.max(1));
            m.insert(
                if key == "a" { "a.rate" } else { "ap.rate" },
                f64::from(r.distinct) / secs,
            );
            if let Some(cpu) = cpu {
                m.insert(
                    if key == "a" { "a.cpu" } else { "ap.cpu" },
                    cpu.total_us() as f64 / delivered,
                );
                if let Some(db) = cpu.db_us {
                    m.insert(
                        if key == "a" { "a.db_cpu" } else { "ap.db_cpu" },
                        db as f64 / delivered,
                    );
                }
            }
            if rate.is_some() {
                let mut l = r.latencies_us;
                l.sort_unstable();
                m.insert("ap.p50", percentile(&l, 50.0) / 1000.0);
                m.insert("ap.p99", percentile(&l, 99.0) / 1000.0);
                m.insert("ap.max", percentile(&l, 100.0) / 1000.0);
            }
        }
    }

    for (key, total) in [("b", args.offline_messages), ("c", args.kill_messages)] {
        if !args.runs(key) {
            continue;
        }
        let per_pair = total / pairs.max(1);
        let want = u64::from(per_pair) * u64::from(pairs);
        let dir = TempDir::new(&format!("relay-{key}-{round}"))?;
        let db = dir.0.join("relay.db");
        let relay = Nodes::spawn(&bin, &db, args.nodes).await?;
        // Create the mailboxes; their owners go offline.
        for ws in login_spread(&relay.addrs(), &receivers_d, 1).await? {
            ws.close().await;
        }
        let senders = login_spread(&relay.addrs(), &senders_d, 0).await?;
        let deadline = Instant::now() + args.cap();
        let rss0 = relay.rss_bytes();
        let start = Instant::now();
        let send: Vec<_> = senders
            .into_iter()
            .zip(&receivers_d)
            .enumerate()
            .map(|(i, (ws, d))| {
                tokio::spawn(send(
                    ws,
                    d.address.clone(),
                    i as u32,
                    per_pair,
                    None,
                    args.window,
                    args.payload,
                    t0,
                    deadline,
                ))
            })
            .collect();
        let send: Vec<SendStats> = join_all(send).await.into_iter().collect::<Result<_, _>>()?;
        let publish_secs = start.elapsed().as_secs_f64();
        let s = crate::sum_sends(&send);
        warn_short("relay acknowledged", u64::from(s.acked), want);
        if let Some(e) = &s.first_error {
            eprintln!("warning: relay refused {} submits, first: {e}", s.errors);
        }
        let relay = if key == "b" {
            m.insert("b.publish", f64::from(s.acked) / publish_secs);
            if let (Some(before), Some(after)) = (rss0, relay.rss_bytes()) {
                m.insert("b.rss_mb", after as f64 / 1e6);
                m.insert(
                    "b.rss_per_msg",
                    after.saturating_sub(before) as f64 / f64::from(s.acked.max(1)),
                );
            }
            let disk = file_len(&db) + file_len(&dir.0.join("relay.db-wal"));
            // No file on a database server (PostgreSQL): no figure.
            if disk > 0 {
                m.insert("b.disk_per_msg", disk as f64 / f64::from(s.acked.max(1)));
            }
            relay
        } else {
            // Every send is acknowledged: kill, restart on the same file.
            relay.kill().await?;
            m.insert("c.acked", f64::from(s.acked));
            Nodes::spawn(&bin, &db, args.nodes).await?
        };
        let start = Instant::now();
        let cpu = ServerCpu::now(&relay.pids(), db_pid(args));
        let before_total = cpu.map(ServerCpu::total_us);
        let receivers = login_spread(&relay.addrs(), &receivers_d, 1).await?;
        let until = if key == "b" {
            Until::All
        } else {
            Until::QueueEmpty
        };
        let deadline = Instant::now() + args.cap();
        let recv: Vec<_> = receivers
            .into_iter()
            .map(|ws| tokio::spawn(receive(ws, per_pair, until, t0, deadline, false)))
            .collect();
        let recv: Vec<RecvStats> = join_all(recv).await.into_iter().collect::<Result<_, _>>()?;
        let drain_secs = start.elapsed().as_secs_f64();
        let after = ServerCpu::now(&relay.pids(), db_pid(args));
        let cpu = cpu.zip(after).map(|(before, after)| after.minus(before));
        let settled = match (key, cpu) {
            ("b", Some(_)) => {
                let pids = relay.pids();
                let db = db_pid(args);
                settled_cpu_us(|| ServerCpu::now(&pids, db).map(ServerCpu::total_us)).await
            }
            _ => None,
        };
        relay.stop().await?;
        if key == "b" {
            let r = crate::sum_recvs(recv);
            warn_short("relay drained", u64::from(r.distinct), want);
            m.insert("b.drain", f64::from(r.distinct) / drain_secs);
            if let Some(cpu) = cpu {
                m.insert(
                    "b.drain_cpu",
                    cpu.total_us() as f64 / f64::from(r.distinct.max(1)),
                );
            }
            if let (Some(before), Some(settled)) = (before_total, settled) {
                m.insert(
                    "b.drain_cpu_settled",
                    settled.saturating_sub(before) as f64 / f64::from(r.distinct.max(1)),
                );
            }
        } else {
            m.insert("c.lost", crate::lost(&send, &recv) as f64);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_sit_on_another_node_than_their_senders() {
        let nodes: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 4000 + i)))
            .collect();
        for n in 2..=3 {
            let nodes = &nodes[..n];
            let mut used = std::collections::BTreeSet::new();
            for i in 0..50 {
                let sender = node_of(nodes, i, 0);
                assert_ne!(sender, node_of(nodes, i, 1), "pair {i} on {n} nodes");
                used.insert(sender);
            }
            assert_eq!(used.len(), n, "every node serves senders");
        }
        // One node: everything on it.
        assert_eq!(node_of(&nodes[..1], 7, 1), nodes[0]);
    }
}
