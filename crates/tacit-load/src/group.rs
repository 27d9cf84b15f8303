//! `--group-ingest`: the relay's ingest of one `SubmitGroup` to N devices
//! against N single `Submit`s of envelopes of the same size, on one relay
//! process: wall time, copies a second and the relay's CPU per queued copy
//! (from `/proc`), the median of `--rounds` rounds (the two modes
//! alternate which goes first). The recipients are registered and offline,
//! so what is measured is ingest: decoding, composing and the durable
//! commit, not pushes.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tacit::group::multi::{self, MultiSealed};
use tacit::rand_core::OsRng;
use tacit::{Address, IdentityKey};
use tacit_relay_proto::{Reply, Request, ServerFrame, Submit, SubmitGroup};
use tacit_testkit::relay::{Device, TcpClient};

use crate::procfs::CpuMark;
use crate::relay::{device, login_all, request, RelayProc, TempDir};
use crate::Args;

/// Unanswered single submissions at once (the relay allows 128).
const WINDOW: usize = 100;

/// One mode's measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu_us: Option<u64>,
}

/// Runs the comparison and prints its table.
pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    let n = args.group_recipients;
    if n == 0 || n > tacit_relay_proto::MAX_GROUP_RECIPIENTS {
        bail!("--group-recipients must be 1 to 1000");
    }
    let bin = args.relay_bin.as_ref().context("no relay binary")?;
    let dir = TempDir::new("group")?;
    let relay = RelayProc::spawn(bin, &dir.0.join("relay.db")).await?;
    let devices: Vec<Device> = (0..u32::try_from(n)?)
        .map(|i| device("g", i))
        .collect::<anyhow::Result<_>>()?;
    drop(login_all(relay.addr, &devices).await?);
    let recipients: Vec<(Address, IdentityKey)> = devices
        .iter()
        .map(|d| (d.address.clone(), d.identity.public_key()))
        .collect();
    let plaintext = crate::payload::filler(args.payload);

    let mut sender = TcpClient::try_connect(relay.addr).await?;
    let mut singles = Vec::new();
    let mut groups = Vec::new();
    let rounds = args.rounds.max(1);
    // Each sample repeats its mode, so that the relay's CPU time (read in
    // clock ticks of 10 ms) covers many ticks.
    let repeats = args.group_repeats.max(1);
    for round in 0..rounds {
        // A fresh envelope each round, sealed outside the measurement.
        let sealed =
            multi::seal(&plaintext, &recipients, &mut OsRng).map_err(|e| anyhow!("seal: {e}"))?;
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for mode in order {
            let mark = CpuMark::now(Some(relay.pid));
            let start = Instant::now();
            for _ in 0..repeats {
                if mode == 0 {
                    submit_singles(&mut sender, &sealed).await?;
                } else {
                    submit_group(&mut sender, &sealed, n).await?;
                }
            }
            let sample = Sample {
                wall: start.elapsed(),
                cpu_us: mark.since(Some(relay.pid)),
            };
            if mode == 0 {
                singles.push(sample);
            } else {
                groups.push(sample);
            }
        }
        eprintln!("round {}: done", round + 1);
    }
    drop(sender);
    relay.stop().await?;

    let envelope_len = {
        let sealed = multi::seal(&plaintext, &recipients[..1], &mut OsRng)
            .map_err(|e| anyhow!("seal: {e}"))?;
        sealed
            .shared
            .envelope_for(&sealed.parts[0].wrapped_key)
            .to_bytes()
            .len()
    };
    print_table(
        n * repeats,
        (n, repeats),
        args.payload,
        envelope_len,
        rounds,
        &singles,
        &groups,
    );
    Ok(())
}

/// One `Submit` per recipient of the recipient's envelope, `WINDOW` at a
/// time, until every one is answered `Submitted`.
async fn submit_singles(ws: &mut TcpClient, sealed: &MultiSealed) -> anyhow::Result<()> {
    let mut frames = sealed.parts.iter().map(|p| {
        let envelope = sealed.shared.envelope_for(&p.wrapped_key).to_bytes();
        Submit::new(p.address.clone(), envelope, None).map(Request::Submit)
    });
    let mut in_flight = 0usize;
    let mut answered = 0usize;
    let total = sealed.parts.len();
    let mut sent_all = false;
    while answered < total {
        while !sent_all && in_flight < WINDOW {
            match frames.next() {
                Some(request) => {
                    ws.try_send(request?).await?;
                    in_flight += 1;
                }
                None => sent_all = true,
            }
        }
        if let ServerFrame::Response(r) = ws.try_read().await? {
            match r.result {
                Ok(Reply::Submitted { .. }) => {}
                other => bail!("a single submission was answered {other:?}"),
            }
            in_flight -= 1;
            answered += 1;
        }
    }
    Ok(())
}

/// One `SubmitGroup` to every recipient.
async fn submit_group(ws: &mut TcpClient, sealed: &MultiSealed, n: usize) -> anyhow::Result<()> {
    let submission = Request::SubmitGroup(SubmitGroup::from_sealed(sealed, |_| None)?);
    match request(ws, submission).await? {
        Reply::SubmittedGroup { queued } if usize::try_from(queued)? == n => Ok(()),
        other => bail!("the group submission was answered {other:?}"),
    }
}

/// The median of `f` over the samples, or `None` if any has no value.
fn median(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = samples.iter().map(f).collect::<Option<_>>()?;
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        len if len % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

fn print_table(
    copies: usize,
    (n, repeats): (usize, usize),
    payload: usize,
    envelope_len: usize,
    rounds: u32,
    singles: &[Sample],
    groups: &[Sample],
) {
    let copies = copies as f64;
    let wall_us = |s: &Sample| Some(s.wall.as_secs_f64() * 1e6);
    let cpu = |s: &Sample| s.cpu_us.map(|c| c as f64);
    println!(
        "tacit-load --group-ingest: {n} recipients, {payload}-byte plaintext ({envelope_len}-byte envelope per copy), {repeats} submissions of each mode a sample, {rounds} round(s), medians"
    );
    println!(
        "{:<34} {:>12} {:>14} {:>18}",
        "mode (one submission)", "wall ms", "copies/s", "relay CPU us/copy"
    );
    let mut rows = Vec::new();
    for (name, samples) in [
        (format!("{n} x Submit (window {WINDOW})"), singles),
        (format!("1 x SubmitGroup to {n}"), groups),
    ] {
        let wall = median(samples, wall_us);
        let cpu = median(samples, cpu);
        println!(
            "{:<34} {:>12} {:>14} {:>18}",
            name,
            wall.map_or("?".into(), |w| format!("{:.1}", w / 1e3 / repeats as f64)),
            wall.map_or("?".into(), |w| format!("{:.0}", copies / (w / 1e6))),
            cpu.map_or("?".into(), |c| format!("{:.1}", c / copies)),
        );
        rows.push((wall, cpu));
    }
    if let [(Some(sw), sc), (Some(gw), gc)] = rows[..] {
        println!(
            "group / singles: wall {:.3}x, throughput {:.1}x, relay CPU per copy {}",
            gw / sw,
            sw / gw,
            match (gc, sc) {
                (Some(g), Some(s)) if s > 0.0 => format!("{:.3}x", g / s),
                _ => "?".into(),
            }
        );
    }
}
