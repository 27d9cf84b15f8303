//! `tacit-load`: drives a real `tacit-relay` process over WebSocket on
//! 127.0.0.1 (and, with `--mqtt`, an MQTT broker with the same scenarios)
//! and prints one table.
//!
//! Scenarios, each bounded by a message count and a wall-clock cap:
//!
//! - (a) N pairs, each sender sends M messages to its receiver, both
//!   online: delivered msg/s and the broker's CPU per delivered message.
//! - (a') the same, paced at a fixed total rate: latency p50/p99/max
//!   (the send time is inside the payload).
//! - (b) K messages into N offline mailboxes, then the receivers log in
//!   and drain: publish and drain msg/s, the broker's RSS per queued
//!   message.
//! - (c) K messages into N offline mailboxes; once every send is
//!   acknowledged the broker is killed with SIGKILL, restarted on the same
//!   storage, and the receivers drain: acknowledged messages lost.
//!
//! The relay is spawned from its binary with a temporary database, so its
//! CPU time and RSS can be read from `/proc/PID/stat` and
//! `/proc/PID/status`; with `--nodes N`, N relay processes on the same
//! `--db` (a shared PostgreSQL database behind a `--relay-bin` wrapper),
//! senders and receivers spread so that every message crosses nodes, and
//! the CPU of all of them (plus the database server's with
//! `--db-pidfile`) counted. The MQTT broker is started by the caller; give
//! its pid file (`--mqtt-pidfile`) for CPU, RSS and SIGKILL, and a command
//! that starts it again (`--mqtt-restart`) for scenario (c).

mod group;
mod mqtt;
mod procfs;
mod relay;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;

use crate::report::{Metrics, Table};

/// Load generator for the tacit relay, with an MQTT mode side by side.
#[derive(Debug, Parser, Clone)]
#[command(name = "tacit-load", version, about)]
struct Args {
    /// The tacit-relay binary (default: next to this binary).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// A second relay binary (or wrapper) run each round after the first,
    /// as a column of its own: scripts/bench-relay.sh passes a wrapper
    /// adding `--unsafe-no-fsync`, for a lower bound on what the syncs
    /// cost. Its lost messages are not checked.
    #[arg(long)]
    unsafe_relay_bin: Option<PathBuf>,
    /// The second relay's column heading.
    #[arg(long, default_value = "tacit-relay, no fsync (unsafe)")]
    unsafe_relay_name: String,
    /// Relay nodes per scenario, all started on the same `--db` (so more
    /// than one needs a shared database: a `--relay-bin` wrapper that maps
    /// the path to one PostgreSQL database). Sender i logs in on node
    /// i mod N and its receiver on node (i + 1) mod N, so that with
    /// several nodes every message crosses from one node to another.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// The database server's pid file (PostgreSQL's `postmaster.pid`):
    /// its CPU time (the postmaster, its children and its reaped children)
    /// is added to the relay nodes' in "CPU / delivered msg".
    #[arg(long)]
    db_pidfile: Option<PathBuf>,
    /// Also run every scenario against the MQTT broker at HOST:PORT
    /// (loopback only), QoS 1 with persistent sessions.
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// The MQTT broker's pid file: CPU time, RSS and SIGKILL need it.
    #[arg(long)]
    mqtt_pidfile: Option<PathBuf>,
    /// A shell command that starts the MQTT broker again on the same
    /// storage after the SIGKILL of scenario (c).
    #[arg(long)]
    mqtt_restart: Option<String>,
    /// The broker's name in the table.
    #[arg(long, default_value = "mosquitto")]
    mqtt_name: String,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 50)]
    pairs: u32,
    /// (a) messages per pair.
    #[arg(long, default_value_t = 2000)]
    messages_per_pair: u32,
    /// (a') total messages.
    #[arg(long, default_value_t = 30_000)]
    paced_messages: u32,
    /// (a') total rate, messages per second.
    #[arg(long, default_value_t = 5000.0)]
    paced_rate: f64,
    /// (b) messages into offline mailboxes.
    #[arg(long, default_value_t = 100_000)]
    offline_messages: u32,
    /// (c) messages acknowledged before the SIGKILL.
    #[arg(long, default_value_t = 100_000)]
    kill_messages: u32,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 512)]
    payload: usize,
    /// Unacknowledged sends per sender.
    #[arg(long, default_value_t = 100)]
    window: u32,
    /// Scenarios to run, comma-separated: a, a', b, c.
    #[arg(long, default_value = "a,a',b,c", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Rounds; relay and broker alternate, the table shows the median.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// The wall-clock cap of each scenario, in seconds.
    #[arg(long, default_value_t = 120)]
    cap_secs: u64,
    /// A tiny run for CI: 5 pairs, a few hundred messages, seconds.
    #[arg(long)]
    tiny: bool,
    /// Instead of the scenarios: the relay's ingest of one `SubmitGroup`
    /// against as many single `Submit`s (`--group-recipients`,
    /// `--payload`, `--rounds`).
    #[arg(long)]
    group_ingest: bool,
    /// Recipient devices of `--group-ingest`, 1 to 1000.
    #[arg(long, default_value_t = 1000)]
    group_recipients: usize,
    /// Submissions of each mode in one sample of `--group-ingest`.
    #[arg(long, default_value_t = 20)]
    group_repeats: usize,
}

impl Args {
    fn apply_tiny(&mut self) {
        if self.tiny {
            self.pairs = 5;
            self.messages_per_pair = 40;
            self.paced_messages = 200;
            self.paced_rate = 1000.0;
            self.offline_messages = 200;
            self.kill_messages = 200;
            self.cap_secs = self.cap_secs.min(30);
        }
    }

    fn runs(&self, name: &str) -> bool {
        self.scenarios.iter().any(|s| s.trim() == name)
    }

    fn cap(&self) -> Duration {
        Duration::from_secs(self.cap_secs)
    }
}

/// One message's payload: pair, sequence number and send time (ns since
/// the run's start), then filler.
mod payload {
    use std::time::Instant;

    pub(crate) fn fill(buf: &mut [u8], pair: u32, seq: u32, sent_ns: u64) {
        buf[..4].copy_from_slice(&pair.to_be_bytes());
        buf[4..8].copy_from_slice(&seq.to_be_bytes());
        buf[8..16].copy_from_slice(&sent_ns.to_be_bytes());
    }

    /// (pair, seq, sent_ns), or None for a payload that is not ours.
    pub(crate) fn parse(buf: &[u8]) -> Option<(u32, u32, u64)> {
        let pair = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
        let seq = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
        let ns = u64::from_be_bytes(buf.get(8..16)?.try_into().ok()?);
        Some((pair, seq, ns))
    }

    pub(crate) fn ns_since(t0: Instant) -> u64 {
        u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn filler(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }
}

/// What one sender reports.
#[derive(Debug, Default)]
struct SendStats {
    acked: u32,
    errors: u32,
    first_error: Option<String>,
    /// Which sequence numbers were acknowledged.
    acked_set: Vec<bool>,
}

/// What one receiver reports.
#[derive(Debug, Default)]
struct RecvStats {
    /// Distinct messages received.
    distinct: u32,
    /// All deliveries, duplicates included.
    deliveries: u64,
    /// Latencies in microseconds.
    latencies_us: Vec<u32>,
    errors: u32,
    /// Which sequence numbers arrived.
    seen: Vec<bool>,
}

/// Adds up senders' results.
fn sum_sends(results: &[SendStats]) -> SendStats {
    let mut total = SendStats::default();
    for s in results {
        total.acked += s.acked;
        total.errors += s.errors;
        if total.first_error.is_none() {
            total.first_error.clone_from(&s.first_error);
        }
    }
    total
}

/// Adds up receivers' results.
fn sum_recvs(results: Vec<RecvStats>) -> RecvStats {
    let mut total = RecvStats::default();
    for s in results {
        total.distinct += s.distinct;
        total.deliveries += s.deliveries;
        total.errors += s.errors;
        total.latencies_us.extend(s.latencies_us);
    }
    total
}

/// Messages acknowledged to pair i's sender that pair i's receiver never
/// got.
fn lost(sends: &[SendStats], recvs: &[RecvStats]) -> u64 {
    let mut lost = 0;
    for (i, s) in sends.iter().enumerate() {
        let seen = recvs.get(i).map(|r| r.seen.as_slice()).unwrap_or(&[]);
        for (seq, &acked) in s.acked_set.iter().enumerate() {
            if acked && !seen.get(seq).copied().unwrap_or(false) {
                lost += 1;
            }
        }
    }
    lost
}

/// Waits for every task; a panic or cancellation becomes an error.
async fn join_all<T: Send + 'static>(
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<T>>>,
) -> Vec<anyhow::Result<T>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(match h.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
        });
    }
    out
}

/// The percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)])
}

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Relay,
    Mqtt,
}

async fn run_target(args: &Args, target: Target, round: u32) -> anyhow::Result<Metrics> {
    match target {
        Target::Relay => relay::run(args, round).await,
        Target::Mqtt => mqtt::run(args, round).await,
    }
}

fn find_relay_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.relay_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating this binary")?;
    let dir = me.parent().context("this binary has no directory")?;
    for candidate in [dir.join("tacit-relay"), dir.join("../tacit-relay")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "no tacit-relay binary next to {}; build it (cargo build --release -p tacit-relay) or pass --relay-bin",
        me.display()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_tiny();
    if args.payload < 16 {
        bail!("--payload must be at least 16 bytes");
    }
    if args.window == 0 || args.window > 128 {
        bail!("--window must be 1 to 128 (the relay's in-flight limit)");
    }
    if args.nodes == 0 || args.nodes > 16 {
        bail!("--nodes must be 1 to 16");
    }
    if let Some(addr) = args.mqtt {
        if !addr.ip().is_loopback() {
            bail!("--mqtt must be a loopback address");
        }
    }
    let relay_bin = find_relay_bin(&args)?;
    args.relay_bin = Some(relay_bin);
    if args.group_ingest {
        return group::run(&args).await;
    }
    let started = Instant::now();
    let mut table = Table::new(args.mqtt.is_some(), &args.mqtt_name);
    if args.unsafe_relay_bin.is_some() {
        table.with_second_relay(&args.unsafe_relay_name);
    }
    for round in 0..args.rounds.max(1) {
        // The relay run first in a round was measured slower than the
        // one run second, the same binary in both places (CPU per
        // delivered message in (a), 11.6 against 10.2 us over 5 rounds):
        // the two take turns, so that neither column gets the place.
        let mut relays = vec![(args.clone(), false)];
        if let Some(bin) = &args.unsafe_relay_bin {
            let mut second = args.clone();
            second.relay_bin = Some(bin.clone());
            relays.push((second, true));
        }
        if round % 2 == 1 {
            relays.reverse();
        }
        for (relay_args, second) in &relays {
            let m = run_target(relay_args, Target::Relay, round).await?;
            if *second {
                eprintln!("round {}: {} done", round + 1, args.unsafe_relay_name);
                table.add_second_relay(m);
            } else {
                eprintln!("round {}: relay done", round + 1);
                table.add_relay(m);
            }
        }
        if args.mqtt.is_some() {
            let mqtt = run_target(&args, Target::Mqtt, round).await?;
            eprintln!("round {}: {} done", round + 1, args.mqtt_name);
            table.add_mqtt(mqtt);
        }
    }
    println!(
        "tacit-load: {} relay node(s), {} pairs, {}-byte payloads, window {}, {} round(s), {:.0} s",
        args.nodes,
        args.pairs,
        args.payload,
        args.window,
        args.rounds.max(1),
        started.elapsed().as_secs_f64()
    );
    println!("{}", table.render());
    table.check()
}
