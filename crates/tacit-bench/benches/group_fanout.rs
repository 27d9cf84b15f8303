#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The sender's cost of one message to a group of N member devices
//! (`docs/PROTOCOL.md` 16.6, 16.7), against pairwise fan-out, for N = 10,
//! 100 and 1000: CPU time on the sender and bytes uploaded to the relay.
//!
//! - **group**: one sender-chain encryption of the content, one
//!   multi-recipient seal to the N devices, and the encoding of the one
//!   `SubmitGroup` frame that carries them.
//! - **pairwise**: for each device, one ratchet encryption of the padded
//!   content on its established session, one sealed envelope, and the
//!   encoding of its `Submit` frame.
//!
//! Both start from established state (sessions, a sender chain already
//! distributed): what is measured is the cost of each further message.
//! After criterion the bench prints a table of medians (interleaved
//! rounds) and the bytes of each mode.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::address::Address;
use tacit::envelope::{sealed, Content, ContentKind};
use tacit::group::{multi, OutboundChain};
use tacit::identity::{DeviceCertificate, UserKey, UserKeyPair};
use tacit::keys::{IdentityKey, IdentityKeyPair, KeyPair};
use tacit::ratchet::{Ratchet, RatchetConfig};
use tacit::wire::SessionMessage;
use tacit::x3dh;
use tacit::PreKeyBundle;
use tacit_relay_proto::{ClientFrame, Request, Submit, SubmitGroup};

const PLAINTEXT_LEN: usize = 256;
const SIZES: [usize; 3] = [10, 100, 1000];

/// The sender: Alice's device, with its certificate.
struct Sender {
    identity: IdentityKeyPair,
    address: Address,
    user_key: UserKey,
    certificate: DeviceCertificate,
}

impl Sender {
    fn new() -> Self {
        let identity = IdentityKeyPair::from_seed(&[0xa1; 32]);
        let address = Address::new("alice", 1).unwrap();
        let user = UserKeyPair::from_seed(&[0xa5; 32]);
        let certificate = DeviceCertificate::issue(&user, &address, &identity.public_key());
        Self {
            identity,
            address,
            user_key: user.public_key(),
            certificate,
        }
    }

    fn sealed(&self) -> sealed::Sender<'_> {
        sealed::Sender {
            identity: &self.identity,
            address: &self.address,
            user_key: &self.user_key,
            certificate: &self.certificate,
        }
    }
}

/// N recipient devices: addresses and identity keys, and Alice's
/// established session with each.
struct Recipients {
    devices: Vec<(Address, IdentityKey)>,
    sessions: Vec<Ratchet>,
}

impl Recipients {
    fn new(sender: &Sender, n: usize, rng: &mut ChaCha20Rng) -> Self {
        let mut devices = Vec::with_capacity(n);
        let mut sessions = Vec::with_capacity(n);
        for i in 0..n {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            seed[8] = 0x5e;
            let identity = IdentityKeyPair::from_seed(&seed);
            let signed_prekey = KeyPair::from_private_bytes({
                seed[8] = 0x5f;
                seed
            });
            let bundle = PreKeyBundle {
                identity_key: identity.public_key(),
                signed_prekey: signed_prekey.public_key(),
                signed_prekey_signature: identity.sign_prekey(&signed_prekey.public_key()),
                one_time_prekey: None,
                kem_prekey: None,
            };
            let init = x3dh::initiate(&sender.identity, &bundle, rng).unwrap();
            let ratchet = Ratchet::new_initiator(
                init.agreement.session_keys(),
                &bundle.signed_prekey,
                RatchetConfig::default(),
                rng,
            )
            .unwrap();
            // Ten members' devices per user, as a group of people with a
            // phone and a laptop or more would have.
            let address = Address::new(&format!("member{}", i / 10), (i % 10) as u32 + 1).unwrap();
            devices.push((address, identity.public_key()));
            sessions.push(ratchet);
        }
        Self { devices, sessions }
    }
}

fn content(rng: &mut ChaCha20Rng) -> Content {
    Content::new(
        ContentKind::Text,
        vec![0x61; PLAINTEXT_LEN],
        1_700_000_000_000,
        rng,
    )
    .unwrap()
}

/// One group message to every device: returns the bytes uploaded.
fn send_group(
    chain: &mut OutboundChain,
    recipients: &Recipients,
    content: &Content,
    rng: &mut ChaCha20Rng,
) -> usize {
    let message = chain.encrypt(content).unwrap();
    let sealed = multi::seal(message.as_bytes(), &recipients.devices, rng).unwrap();
    let request = SubmitGroup::from_sealed(&sealed, |_| None).unwrap();
    ClientFrame {
        request_id: 1,
        request: Request::SubmitGroup(request),
    }
    .encode()
    .len()
}

/// The same content to every device over its pairwise session: returns
/// the bytes uploaded.
fn send_pairwise(
    sender: &Sender,
    recipients: &mut Recipients,
    content: &Content,
    rng: &mut ChaCha20Rng,
) -> usize {
    let padded = content.to_padded().unwrap();
    let mut uploaded = 0;
    for ((address, identity), session) in recipients.devices.iter().zip(&mut recipients.sessions) {
        let message = SessionMessage::Ratchet(session.encrypt(&padded, rng).unwrap());
        let envelope = sealed::seal(&sender.sealed(), identity, address, &message, rng).unwrap();
        let submit = Submit::new(address.clone(), envelope, None).unwrap();
        uploaded += ClientFrame {
            request_id: 1,
            request: Request::Submit(submit),
        }
        .encode()
        .len();
    }
    uploaded
}

/// Runs `f` `iterations` times; the elapsed time.
fn timed(iterations: u64, mut f: impl FnMut() -> usize) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed()
}

fn main() {
    let is_bench = std::env::args().any(|a| a == "--bench");
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let sender = Sender::new();
    let content = content(&mut rng);
    let mut fixtures: Vec<(usize, Recipients, OutboundChain)> = SIZES
        .iter()
        .map(|&n| {
            let recipients = Recipients::new(&sender, n, &mut rng);
            let chain = OutboundChain::new([1; 32], [2; 32], &sender.address, &mut rng);
            (n, recipients, chain)
        })
        .collect();
    if !is_bench {
        // `cargo test --benches`: each mode once.
        for (_, recipients, chain) in &mut fixtures {
            send_group(chain, recipients, &content, &mut rng);
            send_pairwise(&sender, recipients, &content, &mut rng);
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for (n, recipients, chain) in &mut fixtures {
        c.bench_function(&format!("group fan-out/group {n} devices"), |b| {
            b.iter_custom(|iters| {
                timed(iters, || send_group(chain, recipients, &content, &mut rng))
            })
        });
        c.bench_function(&format!("group fan-out/pairwise {n} devices"), |b| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    send_pairwise(&sender, recipients, &content, &mut rng)
                })
            })
        });
    }
    c.final_summary();

    // Interleaved medians: a round runs each mode once per size, so that a
    // change of load touches all of them alike.
    const ROUNDS: usize = 21;
    println!("interleaved, {ROUNDS} rounds, median per message to all devices:");
    println!("| devices | group | pairwise | group / pairwise | group bytes | pairwise bytes | bytes ratio |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, recipients, chain) in &mut fixtures {
        let mut group = Vec::with_capacity(ROUNDS);
        let mut pairwise = Vec::with_capacity(ROUNDS);
        let (mut group_bytes, mut pairwise_bytes) = (0, 0);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            group_bytes = send_group(chain, recipients, &content, &mut rng);
            group.push(start.elapsed().as_secs_f64() * 1e6);
            let start = Instant::now();
            pairwise_bytes = send_pairwise(&sender, recipients, &content, &mut rng);
            pairwise.push(start.elapsed().as_secs_f64() * 1e6);
        }
        group.sort_by(f64::total_cmp);
        pairwise.sort_by(f64::total_cmp);
        let (g, p) = (group[ROUNDS / 2], pairwise[ROUNDS / 2]);
        println!(
            "| {n} | {g:.0} µs | {p:.0} µs | {:.3}x | {group_bytes} | {pairwise_bytes} | {:.3}x |",
            g / p,
            group_bytes as f64 / pairwise_bytes as f64
        );
    }
}
