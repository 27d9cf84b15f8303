//! The MQTT side: the same scenarios against a broker, QoS 1 with
//! persistent sessions (clean_session = false).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

use crate::procfs::{read_pidfile, rss_bytes, CpuMark};
use crate::report::Metrics;
use crate::{join_all, payload, percentile, Args, RecvStats, SendStats};

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// In (c), a receiver that hears nothing for this long after reconnecting
/// has everything the broker kept.
const IDLE: Duration = Duration::from_secs(3);

/// One MQTT connection.
struct Conn {
    client: AsyncClient,
    events: EventLoop,
}

/// Connects with a persistent session; returns the connection and whether
/// the broker still had the session.
async fn open(addr: SocketAddr, id: String, window: u32) -> anyhow::Result<(Conn, bool)> {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(u16::try_from(window).unwrap_or(100))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(o, window as usize * 2 + 16);
    let attempt = async {
        loop {
            if let Event::Incoming(Packet::ConnAck(c)) = events.poll().await? {
                return Ok::<_, anyhow::Error>(c.session_present);
            }
        }
    };
    let present = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .context("MQTT connect timed out")??;
    Ok((Conn { client, events }, present))
}

async fn subscribe(conn: &mut Conn, topic: &str) -> anyhow::Result<()> {
    conn.client.subscribe(topic, QoS::AtLeastOnce).await?;
    let wait = async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = conn.events.poll().await? {
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, wait)
        .await
        .context("MQTT subscribe timed out")?
}

/// Sends DISCONNECT and waits (briefly) for the broker to close.
async fn close(mut conn: Conn) {
    let _ = conn.client.try_disconnect();
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(end.into(), conn.events.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}

fn topic(tag: &str, key: &str, i: u32) -> String {
    format!("tacit-load/{tag}/{key}/{i}")
}

/// Opens the receivers (subscribed), and the senders.
async fn open_subscribers(
    addr: SocketAddr,
    tag: &str,
    key: &str,
    pairs: u32,
    window: u32,
) -> anyhow::Result<Vec<Conn>> {
    let handles: Vec<_> = (0..pairs)
        .map(|i| {
            let (tag, key) = (tag.to_owned(), key.to_owned());
            tokio::spawn(async move {
                let (mut c, _) = open(addr, format!("sub-{tag}-{key}-{i}"), window).await?;
                subscribe(&mut c, &topic(&tag, &key, i)).await?;
                Ok(c)
            })
        })
        .collect();
    join_all(handles).await.into_iter().collect()
}

async fn open_publishers(
    addr: SocketAddr,
    tag: &str,
    key: &str,
    pairs: u32,
    window: u32,
) -> anyhow::Result<Vec<Conn>> {
    let handles: Vec<_> = (0..pairs)
        .map(|i| {
            let (tag, key) = (tag.to_owned(), key.to_owned());
            tokio::spawn(
                async move { Ok(open(addr, format!("pub-{tag}-{key}-{i}"), window).await?.0) },
            )
        })
        .collect();
    join_all(handles).await.into_iter().collect()
}

/// Publishes `count` QoS 1 messages (the client keeps at most `window`
/// unacknowledged) and waits for every PUBACK.
#[allow(clippy::too_many_arguments)]
async fn send(
    conn: Conn,
    topic: String,
    pair: u32,
    count: u32,
    pace: Option<(Instant, Duration)>,
    payload_len: usize,
    t0: Instant,
    deadline: Instant,
) -> anyhow::Result<SendStats> {
    let Conn { client, mut events } = conn;
    let acked = AtomicU32::new(0);
    let publish = async {
        let mut buf = payload::filler(payload_len);
        for seq in 0..count {
            let stamp = match pace {
                Some((start, every)) => {
                    let due = start + every * seq;
                    tokio::time::sleep_until(due.into()).await;
                    u64::try_from(due.saturating_duration_since(t0).as_nanos()).unwrap_or(0)
                }
                None => payload::ns_since(t0),
            };
            payload::fill(&mut buf, pair, seq, stamp);
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, buf.clone())
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let pubacks = async {
        while acked.load(Ordering::Relaxed) < count {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let result = tokio::time::timeout_at(deadline.into(), async {
        tokio::try_join!(publish, pubacks)
    })
    .await;
    let acked = acked.load(Ordering::Relaxed);
    let mut stats = SendStats {
        acked,
        // PUBACKs come back in order on one connection.
        acked_set: (0..count).map(|seq| seq < acked).collect(),
        ..SendStats::default()
    };
    if let Ok(Err(e)) = result {
        stats.errors = count - acked;
        stats.first_error = Some(e.to_string());
    }
    close(Conn { client, events }).await;
    Ok(stats)
}

/// Receives until `expected` distinct messages arrived, or (with `idle`)
/// until the connection stays quiet that long.
async fn receive(
    mut conn: Conn,
    expected: u32,
    idle: Option<Duration>,
    t0: Instant,
    deadline: Instant,
    latency: bool,
) -> anyhow::Result<RecvStats> {
    let mut stats = RecvStats {
        seen: vec![false; expected as usize],
        ..RecvStats::default()
    };
    while stats.distinct < expected {
        let wait = idle.map_or(deadline, |d| (Instant::now() + d).min(deadline));
        let event = match tokio::time::timeout_at(wait.into(), conn.events.poll()).await {
            Err(_) => break,
            Ok(e) => e?,
        };
        if let Event::Incoming(Packet::Publish(p)) = event {
            stats.deliveries += 1;
            if let Some((_, seq, sent_ns)) = payload::parse(&p.payload) {
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
        }
    }
    // The PUBACK of the last message goes out before the DISCONNECT.
    close(conn).await;
    Ok(stats)
}

/// The broker's pid, from its pid file.
fn broker_pid(args: &Args) -> Option<u32> {
    args.mqtt_pidfile.as_deref().and_then(read_pidfile)
}

fn zombie_or_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// SIGKILL to the broker, then the restart command; waits until it serves.
async fn kill_and_restart(args: &Args, addr: SocketAddr) -> anyhow::Result<()> {
    let old = broker_pid(args).context("scenario (c) needs --mqtt-pidfile")?;
    let restart = args
        .mqtt_restart
        .as_deref()
        .context("scenario (c) needs --mqtt-restart")?;
    tokio::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .await?;
    let end = Instant::now() + Duration::from_secs(20);
    while !zombie_or_gone(old) {
        if Instant::now() > end {
            bail!("the broker (pid {old}) survived SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::process::Command::new("sh")
        .args(["-c", restart])
        .status()
        .await?;
    if !status.success() {
        bail!("the broker's restart command failed: {status}");
    }
    loop {
        let restarted = broker_pid(args).is_some_and(|p| p != old);
        if restarted && tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("the broker did not come back");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every scenario against the broker.
pub(crate) async fn run(args: &Args, round: u32) -> anyhow::Result<Metrics> {
    let addr = args.mqtt.context("no MQTT broker")?;
    let mut m = Metrics::new();
    let pairs = args.pairs;
    let t0 = Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tag = format!("{}-{round}-{nanos}", std::process::id());

    for (key, per_pair, rate) in [
        ("a", args.messages_per_pair, None),
        (
            "ap",
            args.paced_messages / pairs.max(1),
            Some(args.paced_rate),
        ),
    ] {
        if !args.runs(if key == "a" { "a" } else { "a'" }) {
            continue;
        }
        let subs = open_subscribers(addr, &tag, key, pairs, args.window).await?;
        let pubs = open_publishers(addr, &tag, key, pairs, args.window).await?;
        let deadline = Instant::now() + args.cap();
        let pid = broker_pid(args);
        let cpu = CpuMark::now(pid);
        let start = Instant::now();
        let recv: Vec<_> = subs
            .into_iter()
            .map(|c| tokio::spawn(receive(c, per_pair, None, t0, deadline, rate.is_some())))
            .collect();
        let send: Vec<_> = pubs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let i = i as u32;
                let pace = rate.map(|r| {
                    let every = Duration::from_secs_f64(f64::from(pairs) / r);
                    (
                        start + every.mul_f64(f64::from(i) / f64::from(pairs)),
                        every,
                    )
                });
                tokio::spawn(send(
                    c,
                    topic(&tag, key, i),
                    i,
                    per_pair,
                    pace,
                    args.payload,
                    t0,
                    deadline,
                ))
            })
            .collect();
        let recv: Vec<RecvStats> = join_all(recv).await.into_iter().collect::<Result<_, _>>()?;
        let secs = start.elapsed().as_secs_f64();
        let cpu_us = cpu.since(pid);
        let send: Vec<SendStats> = join_all(send).await.into_iter().collect::<Result<_, _>>()?;
        let s = crate::sum_sends(&send);
        if let Some(e) = s.first_error {
            eprintln!("warning: MQTT publish errors: {e}");
        }
        let r = crate::sum_recvs(recv);
        let want = u64::from(per_pair) * u64::from(pairs);
        if u64::from(r.distinct) < want {
            eprintln!("warning: MQTT delivered {} of {want}", r.distinct);
        }
        let delivered = f64::from(r.distinct.max(1));
        m.insert(
            if key == "a" { "a.rate" } else { "ap.rate" },
            f64::from(r.distinct) / secs,
        );
        if let Some(us) = cpu_us {
            m.insert(
                if key == "a" { "a.cpu" } else { "ap.cpu" },
                us as f64 / delivered,
            );
        }
        if rate.is_some() {
            let mut l = r.latencies_us;
            l.sort_unstable();
            m.insert("ap.p50", percentile(&l, 50.0) / 1000.0);
            m.insert("ap.p99", percentile(&l, 99.0) / 1000.0);
            m.insert("ap.max", percentile(&l, 100.0) / 1000.0);
        }
    }

    for (key, total) in [("b", args.offline_messages), ("c", args.kill_messages)] {
        if !args.runs(key) {
            continue;
        }
        let per_pair = total / pairs.max(1);
        let want = u64::from(per_pair) * u64::from(pairs);
        // The relay starts afresh for every scenario; so does the broker
        // for (b), where it can, or its RSS growth would be memory an
        // earlier round freed and kept (about 0 B per message after the
        // first round of (b) alone).
        if key == "b" && args.mqtt_restart.is_some() {
            kill_and_restart(args, addr).await?;
        }
        // Persistent sessions with their subscriptions; then offline.
        for c in open_subscribers(addr, &tag, key, pairs, args.window).await? {
            close(c).await;
        }
        let pubs = open_publishers(addr, &tag, key, pairs, args.window).await?;
        let deadline = Instant::now() + args.cap();
        let rss0 = broker_pid(args).and_then(rss_bytes);
        let start = Instant::now();
        let send: Vec<_> = pubs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let i = i as u32;
                tokio::spawn(send(
                    c,
                    topic(&tag, key, i),
                    i,
                    per_pair,
                    None,
                    args.payload,
                    t0,
                    deadline,
                ))
            })
            .collect();
        let send: Vec<SendStats> = join_all(send).await.into_iter().collect::<Result<_, _>>()?;
        let publish_secs = start.elapsed().as_secs_f64();
        let s = crate::sum_sends(&send);
        if u64::from(s.acked) < want {
            eprintln!("warning: MQTT acknowledged {} of {want}", s.acked);
        }
        if key == "b" {
            m.insert("b.publish", f64::from(s.acked) / publish_secs);
            if let (Some(before), Some(after)) = (rss0, broker_pid(args).and_then(rss_bytes)) {
                m.insert("b.rss_mb", after as f64 / 1e6);
                m.insert(
                    "b.rss_per_msg",
                    after.saturating_sub(before) as f64 / f64::from(s.acked.max(1)),
                );
            }
        } else {
            m.insert("c.acked", f64::from(s.acked));
            kill_and_restart(args, addr).await?;
        }
        let start = Instant::now();
        let pid = broker_pid(args);
        let cpu = CpuMark::now(pid);
        let deadline = Instant::now() + args.cap();
        let handles: Vec<_> = (0..pairs)
            .map(|i| {
                let (tag, key) = (tag.clone(), key.to_owned());
                let window = args.window;
                tokio::spawn(async move {
                    let (mut c, present) =
                        open(addr, format!("sub-{tag}-{key}-{i}"), window).await?;
                    let idle = if key == "c" {
                        if !present {
                            subscribe(&mut c, &topic(&tag, &key, i)).await?;
                        }
                        Some(IDLE)
                    } else {
                        None
                    };
                    receive(c, per_pair, idle, t0, deadline, false).await
                })
            })
            .collect();
        let recv: Vec<RecvStats> = join_all(handles)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let drain_secs = start.elapsed().as_secs_f64();
        let cpu_us = cpu.since(pid);
        if key == "b" {
            let r = crate::sum_recvs(recv);
            let settled =
                crate::procfs::settled_cpu_us(|| pid.and_then(crate::procfs::cpu_us)).await;
            if let (Some(before), Some(settled)) = (cpu.start_us(), settled) {
                m.insert(
                    "b.drain_cpu_settled",
                    settled.saturating_sub(before) as f64 / f64::from(r.distinct.max(1)),
                );
            }
            if u64::from(r.distinct) < want {
                eprintln!("warning: MQTT drained {} of {want}", r.distinct);
            }
            m.insert("b.drain", f64::from(r.distinct) / drain_secs);
            if let Some(us) = cpu_us {
                m.insert("b.drain_cpu", us as f64 / f64::from(r.distinct.max(1)));
            }
        } else {
            m.insert("c.lost", crate::lost(&send, &recv) as f64);
        }
    }
    Ok(m)
}
