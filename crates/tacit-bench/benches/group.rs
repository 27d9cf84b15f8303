#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Group messages (`docs/PROTOCOL.md` 16.5, 16.6): Tacit's sender chain
//! against vodozemac's Megolm (`GroupSession::encrypt`,
//! `InboundGroupSession::decrypt`, session config version 1) and against
//! the floor of the primitives a group message needs, on a 256-byte
//! message, in one run:
//!
//! ```text
//! cargo bench -p tacit-bench --bench group
//! ```
//!
//! Both libraries go from bytes to bytes: Tacit encrypts a `Content`
//! (encoded and padded inside) into an encoded `GroupMessage`, Megolm
//! encrypts the 256 bytes into an encoded `MegolmMessage`; decryption
//! decodes the bytes first. Each decryption runs on a chain that has not
//! yet read the message (Tacit's chain is cloned outside the timing; a
//! Megolm inbound session keeps no record of what it has read).
//!
//! The floor: Ed25519 sign (encrypt) or strict verify (decrypt) over the
//! signed bytes of a message of this size, the two HMACs of the chain step
//! and the HKDF of the message key (as `tacit::hazmat` runs them), and
//! ChaCha20-Poly1305 of the padded content.
//!
//! After criterion, the same measurements run again interleaved and the
//! medians are printed with Tacit's ratios to Megolm and to the floor (the
//! ratios criterion's separate runs give drift with the load of a shared
//! machine). Under `cargo test --benches` each runs once. Nothing here is a
//! timed assertion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tacit::envelope::{Content, ContentKind};
use tacit::group::{ChainConfig, InboundChain, OutboundChain};
use tacit::hazmat;
use tacit::keys::{IdentityKeyPair, SecretKey32};
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};

const PLAINTEXT_LEN: usize = 256;
const SIGNATURE_CONTEXT: &[u8] = b"tacit/group/v1/message";
const MESSAGE_INFO: &[u8] = b"tacit/group/message/v1";

/// The primitives of one encryption (`sign`) or decryption.
struct Floor {
    signing: IdentityKeyPair,
    chain_key: SecretKey32,
    /// The message body, whose SHA-256 hash the signature covers after
    /// the context.
    signed: Vec<u8>,
    padded_len: usize,
}

impl Floor {
    fn new(message_len: usize, padded_len: usize) -> Self {
        Self {
            signing: IdentityKeyPair::from_seed(&[3; 32]),
            chain_key: SecretKey32::from_bytes([4; 32]),
            signed: vec![0x5a; message_len - 66],
            padded_len,
        }
    }

    fn keys(&self) -> zeroize::Zeroizing<[u8; 44]> {
        let (message_key, next) = hazmat::ratchet_chain_step(&self.chain_key);
        black_box(next);
        hazmat::hkdf_sha256::<44>(&[0; 32], message_key.as_bytes(), MESSAGE_INFO)
    }

    fn encrypt(&self) {
        let okm = self.keys();
        let mut buffer = vec![0x61; self.padded_len];
        let key: [u8; 32] = okm[..32].try_into().unwrap();
        let nonce: [u8; 12] = okm[32..].try_into().unwrap();
        let tag = hazmat::chacha20poly1305_seal(&key, &nonce, &[7; 100], &mut buffer).unwrap();
        black_box((tag, &buffer));
        black_box(self.signing.sign(&self.to_sign()));
    }

    /// The context and the hash of the body.
    fn to_sign(&self) -> Vec<u8> {
        use sha2::Digest as _;
        [SIGNATURE_CONTEXT, &sha2::Sha256::digest(&self.signed)[..]].concat()
    }

    fn decrypt(&self, signature: &tacit::keys::Signature, sealed: &[u8], tag: &[u8; 16]) {
        self.signing
            .public_key()
            .verify(&self.to_sign(), signature)
            .unwrap();
        let okm = self.keys();
        let key: [u8; 32] = okm[..32].try_into().unwrap();
        let nonce: [u8; 12] = okm[32..].try_into().unwrap();
        let mut buffer = sealed.to_vec();
        assert!(hazmat::chacha20poly1305_open(
            &key,
            &nonce,
            &[7; 100],
            &mut buffer,
            tag
        ));
        black_box(buffer);
    }
}

/// One measurement: `f(iterations)` runs the operation that many times,
/// its preparation outside the timing, and returns the time they took.
type Measure = Box<dyn FnMut(u64) -> Duration>;

/// The six measurements, named `group/library`.
fn measurements() -> Vec<(&'static str, Measure)> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let content = Content::new(
        ContentKind::Text,
        vec![0x61; PLAINTEXT_LEN],
        1_700_000_000_000,
        &mut rng,
    )
    .unwrap();
    let plaintext = vec![0x61u8; PLAINTEXT_LEN];

    let owner = tacit::Address::new("alice", 1).unwrap();
    let mut tacit_out = OutboundChain::new([1; 32], [2; 32], &owner, &mut rng);
    let tacit_in =
        InboundChain::from_distribution(&tacit_out.distribution(), &owner, ChainConfig::default())
            .unwrap();
    let first = tacit_out.encrypt(&content).unwrap().to_bytes();
    let padded_len = content.to_padded().unwrap().len();

    let mut megolm_out = GroupSession::new(SessionConfig::version_1());
    let mut megolm_in =
        InboundGroupSession::new(&megolm_out.session_key(), SessionConfig::version_1());
    let megolm_first = megolm_out.encrypt(&plaintext).to_bytes();

    let floor = Floor::new(first.len(), padded_len);
    let floor_signature = floor.signing.sign(&floor.to_sign());
    let mut floor_sealed = vec![0x61; padded_len];
    let floor_tag = {
        let okm = floor.keys();
        hazmat::chacha20poly1305_seal(
            okm[..32].try_into().unwrap(),
            okm[32..].try_into().unwrap(),
            &[7; 100],
            &mut floor_sealed,
        )
        .unwrap()
    };
    println!(
        "tacit group message: {} bytes (padded content {padded_len}); megolm message: {} bytes",
        first.len(),
        megolm_first.len()
    );
    let floor = std::rc::Rc::new(floor);
    let floor_dec = floor.clone();
    vec![
        (
            "encrypt/tacit",
            Box::new(move |n| timed(n, || tacit_out.encrypt(&content).unwrap().to_bytes())),
        ),
        (
            "encrypt/vodozemac megolm",
            Box::new(move |n| timed(n, || megolm_out.encrypt(&plaintext).to_bytes())),
        ),
        (
            "encrypt/floor",
            Box::new(move |n| timed(n, || floor.encrypt())),
        ),
        (
            "decrypt/tacit",
            Box::new(move |n| {
                // A chain that has not read the message, for each iteration.
                let mut chains: Vec<InboundChain> = (0..n).map(|_| tacit_in.clone()).collect();
                let mut it = chains.iter_mut();
                timed(n, || it.next().unwrap().decrypt(&first).unwrap())
            }),
        ),
        (
            "decrypt/vodozemac megolm",
            Box::new(move |n| {
                timed(n, || {
                    let message = MegolmMessage::from_bytes(&megolm_first).unwrap();
                    megolm_in.decrypt(&message).unwrap()
                })
            }),
        ),
        (
            "decrypt/floor",
            Box::new(move |n| {
                timed(n, || {
                    floor_dec.decrypt(&floor_signature, &floor_sealed, &floor_tag)
                })
            }),
        ),
    ]
}

/// Runs `f` `iterations` times and returns the elapsed time.
fn timed<R>(iterations: u64, mut f: impl FnMut() -> R) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed()
}

/// The measurements again, interleaved (a batch of each in turn, for
/// `ROUNDS` rounds), so that a change of load on a shared machine touches
/// all of them alike; prints the median time of each and Tacit's ratios.
fn table(measurements: &mut [(&'static str, Measure)]) {
    const ROUNDS: usize = 200;
    const BATCH: u64 = 50;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); measurements.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in measurements.iter_mut().enumerate() {
            let t = f(BATCH);
            samples[i].push(t.as_secs_f64() * 1e6 / BATCH as f64);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect();
    println!("interleaved, {ROUNDS} rounds of {BATCH}, median per operation:");
    for ((name, _), m) in measurements.iter().zip(&medians) {
        println!("  {name:<30} {m:>8.2} µs");
    }
    for (op, at) in [("encrypt", 0), ("decrypt", 3)] {
        println!(
            "  {op}: tacit / megolm {:.3}x, tacit / floor {:.3}x",
            medians[at] / medians[at + 1],
            medians[at] / medians[at + 2]
        );
    }
}

fn main() {
    let mut measurements = measurements();
    let is_bench = std::env::args().any(|a| a == "--bench");
    if !is_bench {
        // `cargo test --benches`: each measurement once.
        for (_, f) in &mut measurements {
            f(1);
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for (name, f) in &mut measurements {
        c.bench_function(&format!("group {name} 256 B"), |b| b.iter_custom(&mut *f));
    }
    c.final_summary();
    table(&mut measurements);
}
