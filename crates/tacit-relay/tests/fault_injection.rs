#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fault injection against the built `tacit-relay` binary: many senders and
//! receivers, the relay killed with SIGKILL at seeded-random moments and
//! restarted on the same database, clients reconnecting and resending.
//!
//! At the end every submission acknowledged to a sender must have reached
//! its recipient's application exactly once after the application's dedup
//! by tag, nothing may arrive that was never sent, and acknowledged acks
//! must survive one more SIGKILL.
//!
//! The same run on three relay nodes over one PostgreSQL database
//! (clients spread over the nodes and moving to another one when theirs
//! dies): nodes killed with SIGKILL, and the database restarted
//! (`pg_ctl restart -m immediate`) in the middle of the load.
//!
//! `TACIT_FAULT_SEED` picks the seed (printed with the counts).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{Device, TcpClient, TempDir};
use tacit_relay_proto::{Ack, ErrorCode, Reply, Request, Response, ServerFrame, Submit};
use tacit_testkit::relay::{spawn_relay, ClientError, RelayProcess};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tacit-relay");
const SERVER_NAME: &str = "test-relay";

const SENDERS: u32 = 8;
const RECEIVERS: u32 = 8;
/// Submissions per sender.
const PER_SENDER: u32 = 150;
/// Submissions a sender keeps in flight on one connection.
const WINDOW: usize = 8;
/// Kills during the run (thresholds of acknowledged progress).
const KILLS: u32 = 4;
/// The whole run, kills included, must finish within this.
const DEADLINE: Duration = Duration::from_secs(45);
/// The same on three nodes and PostgreSQL, restarted once.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(90);
/// A read that waits longer than this treats the connection as lost.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A small deterministic generator (SplitMix64), so a seed replays a run's
/// kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------
// Payloads: opaque to the relay, tagged for the application.

/// (sender, sequence number): the application's dedup key.
type Tag = (u32, u32);

const MAGIC: &[u8; 4] = b"FLT1";

fn recipient_of((sender, seq): Tag) -> u32 {
    (sender + seq) % RECEIVERS
}

fn body_byte((sender, seq): Tag, i: usize) -> u8 {
    let x = (u64::from(sender) << 32 | u64::from(seq)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> ((i % 8) * 8)) as u8 ^ (i as u8)
}

/// A sealed-envelope-like payload carrying its tag and a body derived from
/// it, of a length that varies with the tag.
fn payload(tag: Tag) -> Vec<u8> {
    let len = 32 + (tag.1 as usize * 37 + tag.0 as usize * 11) % 300;
    let mut out = Vec::with_capacity(12 + len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag.0.to_be_bytes());
    out.extend_from_slice(&tag.1.to_be_bytes());
    out.extend((0..len).map(|i| body_byte(tag, i)));
    out
}

/// The tag of a payload that is exactly what `payload` makes for it.
fn parse(bytes: &[u8]) -> Option<Tag> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return None;
    }
    let sender = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    let seq = u32::from_be_bytes(bytes[8..12].try_into().ok()?);
    (sender < SENDERS && seq < PER_SENDER && payload((sender, seq)) == bytes)
        .then_some((sender, seq))
}

// ---------------------------------------------------------------------------
// The relay process.

fn rate_flags() -> Vec<&'static str> {
    let mut flags = Vec::new();
    for (rate, burst) in [
        ("--rate-unauthenticated", "--burst-unauthenticated"),
        ("--rate-per-ip", "--burst-per-ip"),
        ("--rate-authenticated", "--burst-authenticated"),
    ] {
        flags.extend([rate, "1000000", burst, "1000000"]);
    }
    flags
}

/// Starts the binary on `listen`; None if it did not come up (the port
/// was taken).
async fn try_spawn(db: &OsStr, listen: SocketAddr) -> Option<RelayProcess> {
    let mut command = Command::new(BIN);
    command
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--server-name", SERVER_NAME, "--db"])
        .arg(db)
        .args(rate_flags())
        .stderr(Stdio::null());
    match spawn_relay(command, Duration::from_secs(20)).await {
        Ok(relay) => Some(relay),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
        Err(e) => panic!("{e}"),
    }
}

/// Starts the binary on the same port as before if it is free, else on a
/// new one (clients learn it through `Shared::addr`).
async fn spawn(db: &OsStr, port: Option<u16>) -> RelayProcess {
    if let Some(port) = port {
        if let Some(relay) = try_spawn(db, SocketAddr::from(([127, 0, 0, 1], port))).await {
            return relay;
        }
    }
    try_spawn(db, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the relay did not start on a fresh port")
}

/// What every task shares.
struct Shared {
    /// The nodes' addresses.
    addrs: RwLock<Vec<SocketAddr>>,
    /// Submissions acknowledged so far, across senders.
    acknowledged: AtomicU64,
    /// Set when receivers should stop.
    stop: AtomicBool,
    started: Instant,
    deadline: Duration,
}

impl Shared {
    /// A node, chosen at random: clients spread over the nodes, and a
    /// client whose node died moves to another.
    fn addr(&self, rng: &mut Rng) -> SocketAddr {
        let addrs = self.addrs.read().unwrap();
        addrs[rng.below(addrs.len() as u64) as usize]
    }

    fn check_deadline(&self, who: &str) {
        assert!(
            self.started.elapsed() < self.deadline,
            "{who}: the run passed its deadline of {:?}",
            self.deadline
        );
    }
}

// ---------------------------------------------------------------------------
// A fallible client: every failure means "the connection is gone".

struct Wire(TcpClient);

#[derive(Debug)]
enum Read {
    Frame(ServerFrame),
    Idle,
    Lost,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Option<Self> {
        match tokio::time::timeout(READ_TIMEOUT, TcpClient::try_connect(addr)).await {
            Ok(Ok(client)) => Some(Self(client)),
            _ => None,
        }
    }

    async fn send(&mut self, request: Request) -> Option<u64> {
        self.0.try_send(request).await.ok()
    }

    async fn read(&mut self, wait: Duration) -> Read {
        match self.0.try_read_within(wait).await {
            Ok(Some(frame)) => Read::Frame(frame),
            Ok(None) => Read::Idle,
            // A frame the relay sends always decodes.
            Err(ClientError::Frame(e)) => panic!("a bad frame from the relay: {e}"),
            Err(_) => Read::Lost,
        }
    }

    /// Sends a request and reads until its response, which must come first
    /// (used before login, when nothing is pushed).
    async fn call(
        &mut self,
        request: Request,
    ) -> Option<Result<Reply, tacit_relay_proto::ErrorReply>> {
        let id = self.send(request).await?;
        match self.read(READ_TIMEOUT).await {
            Read::Frame(ServerFrame::Response(Response { request_id, result }))
                if request_id == id =>
            {
                Some(result)
            }
            Read::Frame(other) => panic!("unexpected frame before login: {other:?}"),
            Read::Idle | Read::Lost => None,
        }
    }

    async fn challenge(&mut self) -> Option<[u8; 32]> {
        match self.call(Request::GetChallenge).await? {
            Ok(Reply::Challenge(c)) => Some(c.challenge),
            other => panic!("challenge: {other:?}"),
        }
    }

    async fn register(&mut self, device: &Device) -> Option<()> {
        let challenge = self.challenge().await?;
        match self
            .call(device.register_request(SERVER_NAME, &challenge))
            .await?
        {
            Ok(Reply::LoggedIn(_)) => Some(()),
            other => panic!("register: {other:?}"),
        }
    }

    async fn login(&mut self, device: &Device) -> Option<()> {
        let challenge = self.challenge().await?;
        match self
            .call(device.login_request(SERVER_NAME, &challenge))
            .await?
        {
            Ok(Reply::LoggedIn(_)) => Some(()),
            other => panic!("login: {other:?}"),
        }
    }
}

/// Connects with exponential backoff and jitter until the relay answers.
async fn reconnect(shared: &Shared, who: &str, rng: &mut Rng) -> Wire {
    let mut backoff = Duration::from_millis(10);
    loop {
        shared.check_deadline(who);
        if let Some(wire) = Wire::connect(shared.addr(rng)).await {
            return wire;
        }
        let jitter = Duration::from_millis(rng.below(backoff.as_millis() as u64 + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_millis(400));
    }
}

// ---------------------------------------------------------------------------
// Senders.

#[derive(Debug, Default)]
struct SenderReport {
    /// Submit frames sent, resends included.
    attempts: u64,
    /// Sequence number -> the message id the relay acknowledged it with.
    acked: HashMap<u32, u64>,
    /// Refusals that mean "retry" (none are expected from a healthy relay).
    retried_refusals: u64,
    connections: u64,
}

async fn sender(index: u32, shared: Arc<Shared>, recipients: Arc<Vec<Device>>) -> SenderReport {
    let who = format!("sender {index}");
    let mut rng = Rng(0x5e4d_0000 + u64::from(index));
    let mut report = SenderReport::default();
    // Everything not yet acknowledged; resent on every new connection.
    let mut unacked: BTreeSet<u32> = (0..PER_SENDER).collect();
    while !unacked.is_empty() {
        let mut wire = reconnect(&shared, &who, &mut rng).await;
        report.connections += 1;
        let mut queue: VecDeque<u32> = unacked.iter().copied().collect();
        let mut in_flight: HashMap<u64, u32> = HashMap::new();
        'conn: loop {
            shared.check_deadline(&who);
            while in_flight.len() < WINDOW {
                let Some(seq) = queue.pop_front() else { break };
                let tag = (index, seq);
                let to = recipients[recipient_of(tag) as usize].address.clone();
                let submit = Submit::new(to, payload(tag), None).unwrap();
                report.attempts += 1;
                match wire.send(Request::Submit(submit)).await {
                    Some(id) => {
                        in_flight.insert(id, seq);
                    }
                    None => break 'conn,
                }
            }
            if in_flight.is_empty() {
                break;
            }
            match wire.read(READ_TIMEOUT).await {
                Read::Frame(ServerFrame::Response(Response { request_id, result })) => {
                    let seq = in_flight.remove(&request_id).unwrap_or_else(|| {
                        panic!("{who}: response to unknown request {request_id}")
                    });
                    match result {
                        Ok(Reply::Submitted { message_id }) => {
                            assert!(unacked.remove(&seq), "{who}: {seq} acknowledged twice");
                            report.acked.insert(seq, message_id);
                            shared.acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e)
                            if matches!(
                                e.code,
                                ErrorCode::ShuttingDown | ErrorCode::RateLimited
                            ) =>
                        {
                            report.retried_refusals += 1;
                            queue.push_back(seq);
                        }
                        other => panic!("{who}: submit {seq} answered {other:?}"),
                    }
                }
                Read::Frame(other) => panic!("{who}: unexpected {other:?}"),
                Read::Idle | Read::Lost => break,
            }
        }
        // Whatever was in flight may or may not be stored: it stays in
        // `unacked` and is sent again on the next connection.
    }
    report
}

// ---------------------------------------------------------------------------
// Receivers.

#[derive(Debug, Default)]
struct ReceiverState {
    /// Tags the application has recorded: its dedup set.
    seen: HashSet<Tag>,
    /// Message ids seen, to tell a redelivery from a second stored copy.
    ids: HashSet<u64>,
    /// Pushes received, duplicates included.
    raw: u64,
    /// Pushes of a message id already seen (its ack was lost).
    redeliveries: u64,
    /// Pushes of a tag already seen under another message id (a resend of
    /// a submission that was stored but not acknowledged).
    second_copies: u64,
    /// Payloads that are not what any sender sent, or not for this device.
    foreign: Vec<Vec<u8>>,
    acks_confirmed: u64,
    connections: u64,
}

impl ReceiverState {
    /// Records a push the way an application would before acking it.
    fn record(&mut self, me: u32, message_id: u64, envelope: &[u8]) {
        self.raw += 1;
        let new_id = self.ids.insert(message_id);
        match parse(envelope) {
            Some(tag) if recipient_of(tag) == me => {
                if !self.seen.insert(tag) {
                    if new_id {
                        self.second_copies += 1;
                    } else {
                        self.redeliveries += 1;
                    }
                }
            }
            _ => self.foreign.push(envelope.to_vec()),
        }
    }
}

/// One logged-in connection of a receiver: records and acks pushes until
/// the connection is lost, or until `until` says stop and no ack is
/// pending. Returns whether the connection ended cleanly and how many
/// pushes it got before `QueueEmpty`.
async fn receive_on(
    me: u32,
    wire: &mut Wire,
    state: &mut ReceiverState,
    until: impl Fn(bool) -> bool,
) -> Option<u64> {
    let mut pending_acks: HashMap<u64, u64> = HashMap::new();
    let mut last_id = 0u64;
    let mut backlog = 0u64;
    let mut queue_empty = false;
    loop {
        if until(queue_empty) && pending_acks.is_empty() {
            return Some(backlog);
        }
        match wire.read(Duration::from_millis(200)).await {
            Read::Idle => {}
            Read::Lost => return None,
            Read::Frame(ServerFrame::Push(p)) => {
                assert!(
                    p.message_id > last_id,
                    "receiver {me}: push {} after {last_id} on one connection",
                    p.message_id
                );
                last_id = p.message_id;
                if !queue_empty {
                    backlog += 1;
                }
                state.record(me, p.message_id, &p.envelope);
                let ack = Ack::new(vec![p.message_id]).unwrap();
                match wire.send(Request::Ack(ack)).await {
                    Some(id) => {
                        pending_acks.insert(id, p.message_id);
                    }
                    None => return None,
                }
            }
            Read::Frame(ServerFrame::Response(Response { request_id, result })) => {
                let message_id = pending_acks
                    .remove(&request_id)
                    .unwrap_or_else(|| panic!("receiver {me}: unknown response {request_id}"));
                match result {
                    Ok(Reply::Acked { removed: 1 }) => state.acks_confirmed += 1,
                    other => panic!("receiver {me}: ack of {message_id} answered {other:?}"),
                }
            }
            Read::Frame(ServerFrame::QueueEmpty) => queue_empty = true,
            Read::Frame(ServerFrame::PreKeysLow { .. }) => {}
            Read::Frame(other) => panic!("receiver {me}: unexpected {other:?}"),
        }
    }
}

async fn receiver(index: u32, device: Device, shared: Arc<Shared>) -> ReceiverState {
    let who = format!("receiver {index}");
    let mut rng = Rng(0x7ec0_0000 + u64::from(index));
    let mut state = ReceiverState::default();
    while !shared.stop.load(Ordering::SeqCst) {
        let mut wire = reconnect(&shared, &who, &mut rng).await;
        if wire.login(&device).await.is_none() {
            continue;
        }
        state.connections += 1;
        let stop = || shared.stop.load(Ordering::SeqCst);
        if receive_on(index, &mut wire, &mut state, |_| stop())
            .await
            .is_some()
        {
            break;
        }
    }
    state
}

/// Logs in and drains the mailbox: every push recorded and acked, every ack
/// confirmed. Returns how many messages the backlog held.
async fn drain(index: u32, device: &Device, shared: &Shared, state: &mut ReceiverState) -> u64 {
    let who = format!("drain {index}");
    let mut rng = Rng(0xd4a1_0000 + u64::from(index));
    loop {
        let mut wire = reconnect(shared, &who, &mut rng).await;
        if wire.login(device).await.is_none() {
            continue;
        }
        state.connections += 1;
        if let Some(backlog) = receive_on(index, &mut wire, state, |empty| empty).await {
            return backlog;
        }
    }
}

// ---------------------------------------------------------------------------

fn seed() -> u64 {
    std::env::var("TACIT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7ac1_7f17_u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_arrive_exactly_once_across_sigkills() {
    let dir = TempDir::new("faults");
    run(dir.db().as_os_str(), 1, None, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_postgres_lose_nothing_across_node_kills_and_a_database_restart() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let pg = Arc::new(pg);
    run(OsStr::new(&url), 3, Some(pg), CLUSTER_DEADLINE).await;
}

/// The run on `nodes` relay processes on `db`; with `pg`, the second fault
/// restarts the database instead of killing a node.
async fn run(db: &OsStr, nodes: usize, pg: Option<Arc<Postgres>>, deadline: Duration) {
    let seed = seed();
    let mut rng = Rng(seed);
    let started = Instant::now();

    let mut relays = Vec::new();
    for _ in 0..nodes {
        relays.push(spawn(db, None).await);
    }
    let shared = Arc::new(Shared {
        addrs: RwLock::new(relays.iter().map(|r| r.addr).collect()),
        acknowledged: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        started,
        deadline,
    });
    let receivers: Arc<Vec<Device>> = Arc::new(
        (0..RECEIVERS)
            .map(|r| Device::numbered(&format!("receiver{r}"), 1, r))
            .collect(),
    );
    for (r, device) in receivers.iter().enumerate() {
        let mut wire = Wire::connect(relays[r % nodes].addr).await.unwrap();
        wire.register(device).await.unwrap();
    }

    let receiving: Vec<_> = receivers
        .iter()
        .enumerate()
        .map(|(r, d)| tokio::spawn(receiver(r as u32, d.clone(), Arc::clone(&shared))))
        .collect();
    let sending: Vec<_> = (0..SENDERS)
        .map(|s| tokio::spawn(sender(s, Arc::clone(&shared), Arc::clone(&receivers))))
        .collect();

    // Kill at seeded-random points of the acknowledged progress, each a
    // seeded-random few milliseconds after the point is passed.
    let total = u64::from(SENDERS * PER_SENDER);
    let mut kills = 0u32;
    let mut restarts = 0u32;
    let mut downtime = Duration::ZERO;
    for k in 0..KILLS {
        let span = total / u64::from(KILLS + 1);
        let threshold = span * u64::from(k) + span / 2 + rng.below(span);
        while shared.acknowledged.load(Ordering::SeqCst) < threshold {
            shared.check_deadline("killer");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
        if shared.acknowledged.load(Ordering::SeqCst) >= total {
            break;
        }
        let down = Instant::now();
        match &pg {
            Some(pg) if k == 1 => {
                let pg = Arc::clone(pg);
                tokio::task::spawn_blocking(move || pg.restart("immediate"))
                    .await
                    .unwrap();
                restarts += 1;
            }
            _ => {
                let n = k as usize % nodes;
                relays[n].child.kill().await.unwrap();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
                relays[n] = spawn(db, Some(relays[n].addr.port())).await;
                shared.addrs.write().unwrap()[n] = relays[n].addr;
            }
        }
        downtime += down.elapsed();
    }

    let mut senders = Vec::new();
    for s in sending {
        senders.push(s.await.unwrap());
    }
    // Every submission is acknowledged by now (senders retry until it is):
    // the acknowledged set is the whole set, with one message id each.
    let mut acked: HashMap<Tag, u64> = HashMap::new();
    for (s, report) in senders.iter().enumerate() {
        assert_eq!(report.acked.len() as u32, PER_SENDER, "sender {s}");
        for (&seq, &id) in &report.acked {
            acked.insert((s as u32, seq), id);
        }
    }
    let ids: HashSet<u64> = acked.values().copied().collect();
    assert_eq!(ids.len(), acked.len(), "a message id was handed out twice");

    // Let receivers catch up on every acknowledged message, then stop them.
    let expected: Vec<usize> = (0..RECEIVERS)
        .map(|r| acked.keys().filter(|t| recipient_of(**t) == r).count())
        .collect();
    shared.stop.store(true, Ordering::SeqCst);
    let mut states = Vec::new();
    for r in receiving {
        states.push(r.await.unwrap());
    }
    // Drain what is left (late pushes, second copies) so that every
    // mailbox is empty and every deletion acknowledged.
    for (r, state) in states.iter_mut().enumerate() {
        drain(r as u32, &receivers[r], &shared, state).await;
        let last = drain(r as u32, &receivers[r], &shared, state).await;
        assert_eq!(last, 0, "receiver {r}: the mailbox did not empty");
    }

    // Acknowledged acks are durable: one more SIGKILL, and every mailbox
    // is still empty.
    relays[0].child.kill().await.unwrap();
    relays[0] = spawn(db, Some(relays[0].addr.port())).await;
    shared.addrs.write().unwrap()[0] = relays[0].addr;
    for (r, state) in states.iter_mut().enumerate() {
        let raw = state.raw;
        let backlog = drain(r as u32, &receivers[r], &shared, state).await;
        assert_eq!(
            (backlog, state.raw),
            (0, raw),
            "receiver {r}: acked messages came back after a SIGKILL"
        );
    }
    for relay in &mut relays {
        relay.child.kill().await.unwrap();
    }

    // The application saw each acknowledged submission exactly once, and
    // nothing else.
    let mut delivered: HashSet<Tag> = HashSet::new();
    for (r, state) in states.iter().enumerate() {
        assert!(
            state.foreign.is_empty(),
            "receiver {r} got {} payloads nobody sent it",
            state.foreign.len()
        );
        assert_eq!(state.seen.len(), expected[r], "receiver {r}");
        assert_eq!(
            state.raw,
            state.seen.len() as u64 + state.redeliveries + state.second_copies,
            "receiver {r}"
        );
        for tag in &state.seen {
            assert!(delivered.insert(*tag));
        }
    }
    let acked_tags: HashSet<Tag> = acked.keys().copied().collect();
    assert_eq!(delivered, acked_tags);

    let attempts: u64 = senders.iter().map(|s| s.attempts).sum();
    let raw: u64 = states.iter().map(|s| s.raw).sum();
    let redeliveries: u64 = states.iter().map(|s| s.redeliveries).sum();
    let second_copies: u64 = states.iter().map(|s| s.second_copies).sum();
    let refusals: u64 = senders.iter().map(|s| s.retried_refusals).sum();
    let acks: u64 = states.iter().map(|s| s.acks_confirmed).sum();
    let connections: u64 = senders.iter().map(|s| s.connections).sum::<u64>()
        + states.iter().map(|s| s.connections).sum::<u64>();
    // A second stored copy can only come from a submission that was sent
    // and not acknowledged.
    assert!(second_copies <= attempts - acked.len() as u64);
    assert!(
        kills + restarts >= 3,
        "only {kills} kills and {restarts} database restarts happened during the run"
    );
    assert_eq!(restarts > 0, pg.is_some(), "the database was not restarted");

    println!(
        "fault injection (seed {seed:#x}): {nodes} node(s), {SENDERS} senders, {RECEIVERS} receivers, \
         {kills} SIGKILLs of a node and {restarts} database restarts during the run (+1 kill after), \
         downtime {downtime:?}\n  \
         sent {attempts} (resends {}), acknowledged {}, delivered raw {raw}, \
         duplicates dropped {} (second copies {second_copies}, redeliveries {redeliveries}), \
         delivered once {}, acks confirmed {acks}, retryable refusals {refusals}, \
         connections {connections}, elapsed {:?}",
        attempts - acked.len() as u64,
        acked.len(),
        second_copies + redeliveries,
        delivered.len(),
        started.elapsed(),
    );
}
