#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Benchmarks of the core: the operations (X3DH halves, session setup, a
//! one-way chain step, a ping-pong message) and the primitives they are made
//! of, in one run:
//!
//! ```text
//! cargo bench -p tacit --bench core
//! ```
//!
//! After criterion's groups, the run measures every operation and primitive
//! again with a plain calibrated loop (25 batches of about 20 ms each, in
//! five interleaved rounds) and prints each operation's time as a ratio to
//! the sum of its primitives (its "floor"), then the serialized size of a
//! session. Criterion 0.5 does not hand its estimates back to the program,
//! hence the second loop.
//!
//! Environment:
//! - `TACIT_BENCH_TABLE_ONLY=1`: skip criterion's groups, print the table.
//! - `TACIT_BENCH_NO_TABLE=1`: criterion's groups only.
//! - `TACIT_BENCH_PROFILE=<part of a row name>` (and `TACIT_BENCH_ITERS=n`,
//!   default 1000): no timing at all, just run the matching rows of the
//!   table n times each, for `valgrind --tool=callgrind`.
//!
//! Under `cargo test --benches` (no `--bench` argument) criterion runs each
//! benchmark once as a test and the table is skipped. Nothing here is a
//! timed assertion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag, XChaCha20Poly1305, XNonce};
use criterion::{BatchSize, Criterion, Throughput};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, OsRng, RngCore, SeedableRng};
use sha2::Sha256;
use tacit::keys::{IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig};
use tacit::x3dh::{self, PreKeyBundle};

/// The plaintext size of the ratchet benchmarks.
const PLAINTEXT_LEN: usize = 256;
/// `AD` (64) plus the encrypted header (80): the body's AAD.
const BODY_AAD_LEN: usize = 144;
/// A plaintext header.
const HEADER_LEN: usize = 40;
/// `AD`, the header's AAD.
const HEADER_AAD_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Fixed identities and prekeys, and Bob's bundle with a one-time prekey.
struct Fixture {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair,
    bundle: PreKeyBundle,
}

impl Fixture {
    fn new() -> Self {
        let alice = IdentityKeyPair::from_seed(&[0xa1; 32]);
        let bob = IdentityKeyPair::from_seed(&[0xb0; 32]);
        let signed_prekey = KeyPair::from_private_bytes([0x5b; 32]);
        let one_time_prekey = KeyPair::from_private_bytes([0x0b; 32]);
        let bundle = PreKeyBundle {
            identity_key: bob.public_key(),
            signed_prekey: signed_prekey.public_key(),
            signed_prekey_signature: bob.sign_prekey(&signed_prekey.public_key()),
            one_time_prekey: Some(one_time_prekey.public_key()),
        };
        Self {
            alice,
            bob,
            signed_prekey,
            one_time_prekey,
            bundle,
        }
    }

    /// Alice's half of X3DH.
    fn initiate(&self, rng: &mut impl CryptoRngCore) -> x3dh::Initiation {
        x3dh::initiate(&self.alice, &self.bundle, rng).unwrap()
    }

    /// Bob's half of X3DH for Alice's ephemeral key.
    fn respond(&self, ephemeral: &PublicKey) -> x3dh::Agreement {
        x3dh::respond(
            &self.bob,
            &self.signed_prekey,
            Some(&self.one_time_prekey),
            &self.alice.public_key(),
            ephemeral,
        )
        .unwrap()
    }

    /// Alice's session setup: X3DH, her ratchet, her first message.
    fn setup_initiator(
        &self,
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> (Ratchet, PublicKey, EncryptedMessage) {
        let init = self.initiate(rng);
        let mut ratchet = Ratchet::new_initiator(
            init.agreement.session_keys(),
            &self.bundle.signed_prekey,
            RatchetConfig::default(),
            rng,
        )
        .unwrap();
        let first = ratchet.encrypt_with_rng(plaintext, rng).unwrap();
        (ratchet, init.ephemeral_key, first)
    }

    /// Bob's session setup: X3DH, his ratchet, Alice's first message.
    fn setup_responder(
        &self,
        ephemeral: &PublicKey,
        first: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> (Ratchet, Vec<u8>) {
        let agreement = self.respond(ephemeral);
        let mut ratchet = Ratchet::new_responder(
            agreement.session_keys(),
            self.signed_prekey.clone(),
            RatchetConfig::default(),
        );
        let plaintext = ratchet.decrypt_with_rng(first, rng).unwrap();
        (ratchet, plaintext)
    }

    /// An established session: Alice's first message has reached Bob.
    fn session(&self, rng: &mut impl CryptoRngCore) -> (Ratchet, Ratchet) {
        let (alice, ephemeral, first) = self.setup_initiator(&[0x55; PLAINTEXT_LEN], rng);
        let (bob, _) = self.setup_responder(&ephemeral, &first, rng);
        (alice, bob)
    }
}

/// A one-way chain: Alice sends, Bob receives, on and on. The chain can run
/// for 2^32 - 1 messages, far more than any run sends.
struct OneWay {
    alice: Ratchet,
    bob: Ratchet,
    plaintext: [u8; PLAINTEXT_LEN],
}

impl OneWay {
    fn new(fixture: &Fixture, rng: &mut impl CryptoRngCore) -> Self {
        let (mut alice, mut bob) = fixture.session(rng);
        // Put Bob on an ordinary chain step (his first receipt was a new chain).
        let m = alice.encrypt_with_rng(&[0; PLAINTEXT_LEN], rng).unwrap();
        bob.decrypt_with_rng(&m, rng).unwrap();
        Self {
            alice,
            bob,
            plaintext: [0x42; PLAINTEXT_LEN],
        }
    }

    /// One message: encrypt by Alice, decrypt by Bob.
    fn step(&mut self, rng: &mut impl CryptoRngCore) -> Vec<u8> {
        let m = self.alice.encrypt_with_rng(&self.plaintext, rng).unwrap();
        self.bob.decrypt_with_rng(&m, rng).unwrap()
    }
}

/// Ping-pong: the sides take turns, so every decryption opens a new
/// receiving chain (a DH ratchet step).
struct PingPong {
    alice: Ratchet,
    bob: Ratchet,
    alice_sends: bool,
    plaintext: [u8; PLAINTEXT_LEN],
}

impl PingPong {
    fn new(fixture: &Fixture, rng: &mut impl CryptoRngCore) -> Self {
        let (alice, bob) = fixture.session(rng);
        // Alice's first message has arrived: Bob replies next.
        Self {
            alice,
            bob,
            alice_sends: false,
            plaintext: [0x42; PLAINTEXT_LEN],
        }
    }

    /// One message: encrypt by one side, decrypt (with a DH step) by the
    /// other; the next call goes the other way.
    fn step(&mut self, rng: &mut impl CryptoRngCore) -> Vec<u8> {
        let (sender, receiver) = if self.alice_sends {
            (&mut self.alice, &mut self.bob)
        } else {
            (&mut self.bob, &mut self.alice)
        };
        self.alice_sends = !self.alice_sends;
        let m = sender.encrypt_with_rng(&self.plaintext, rng).unwrap();
        receiver.decrypt_with_rng(&m, rng).unwrap()
    }
}

/// Inputs of the primitives, sized as the protocol uses them.
struct PrimitiveInputs {
    key_pair: KeyPair,
    peer: PublicKey,
    fixture: Fixture,
    key: [u8; 32],
    salt: [u8; 32],
    x3dh_ikm: [u8; 160],
    chacha_aad: [u8; BODY_AAD_LEN],
    chacha_ciphertext: [u8; PLAINTEXT_LEN],
    chacha_tag: Tag,
    xchacha_aad: [u8; HEADER_AAD_LEN],
    xchacha_nonce: [u8; 24],
    xchacha_ciphertext: [u8; HEADER_LEN],
    xchacha_tag: Tag,
}

impl PrimitiveInputs {
    fn new() -> Self {
        let key = [0x17; 32];
        let chacha_aad = [0x33; BODY_AAD_LEN];
        let mut chacha_ciphertext = [0x42; PLAINTEXT_LEN];
        let chacha_tag = ChaCha20Poly1305::new(&key.into())
            .encrypt_in_place_detached(&Nonce::from([7; 12]), &chacha_aad, &mut chacha_ciphertext)
            .unwrap();
        let xchacha_aad = [0x44; HEADER_AAD_LEN];
        let xchacha_nonce = [9; 24];
        let mut xchacha_ciphertext = [0x24; HEADER_LEN];
        let xchacha_tag = XChaCha20Poly1305::new(&key.into())
            .encrypt_in_place_detached(
                &XNonce::from(xchacha_nonce),
                &xchacha_aad,
                &mut xchacha_ciphertext,
            )
            .unwrap();
        let mut x3dh_ikm = [0x5a; 160];
        x3dh_ikm[..32].fill(0xff);
        Self {
            key_pair: KeyPair::from_private_bytes([0x21; 32]),
            peer: KeyPair::from_private_bytes([0x12; 32]).public_key(),
            fixture: Fixture::new(),
            key,
            salt: [0; 32],
            x3dh_ikm,
            chacha_aad,
            chacha_ciphertext,
            chacha_tag,
            xchacha_aad,
            xchacha_nonce,
            xchacha_ciphertext,
            xchacha_tag,
        }
    }

    fn dh(&self) -> [u8; 32] {
        *self.key_pair.diffie_hellman(&self.peer).unwrap().as_bytes()
    }

    fn keygen(rng: &mut ChaCha20Rng) -> PublicKey {
        KeyPair::generate(rng).public_key()
    }

    fn verify(&self) {
        let b = &self.fixture.bundle;
        b.identity_key
            .verify(b.signed_prekey.as_bytes(), &b.signed_prekey_signature)
            .unwrap();
    }

    fn to_montgomery(&self) -> PublicKey {
        self.fixture.bundle.identity_key.to_x25519()
    }

    /// HMAC-SHA256 of one byte, keying included (as `KDF_CK` keys it).
    fn hmac(&self) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap();
        mac.update(&[0x01]);
        mac.finalize().into_bytes().into()
    }

    fn hkdf<const L: usize>(&self, ikm: &[u8], info: &[u8]) -> [u8; L] {
        let mut okm = [0u8; L];
        Hkdf::<Sha256>::new(Some(&self.salt), ikm)
            .expand(info, &mut okm)
            .unwrap();
        okm
    }

    /// `SK`: 160 bytes of IKM (`0xFF^32` and four DH outputs), 32 out.
    fn hkdf32(&self) -> [u8; 32] {
        self.hkdf::<32>(&self.x3dh_ikm, b"tacit/x3dh/v1")
    }

    /// A message key's AEAD key and nonce.
    fn hkdf44(&self) -> [u8; 44] {
        self.hkdf::<44>(&self.key, b"tacit/ratchet/message/v1")
    }

    /// `KDF_RK` (also the session keys after X3DH).
    fn hkdf96(&self) -> [u8; 96] {
        self.hkdf::<96>(&self.key, b"tacit/ratchet/root/v1")
    }

    fn chacha_seal(&self, buf: &mut [u8; PLAINTEXT_LEN]) -> Tag {
        ChaCha20Poly1305::new(&self.key.into())
            .encrypt_in_place_detached(&Nonce::from([7; 12]), &self.chacha_aad, buf)
            .unwrap()
    }

    fn chacha_open(&self) -> [u8; PLAINTEXT_LEN] {
        let mut buf = self.chacha_ciphertext;
        ChaCha20Poly1305::new(&self.key.into())
            .decrypt_in_place_detached(
                &Nonce::from([7; 12]),
                &self.chacha_aad,
                &mut buf,
                &self.chacha_tag,
            )
            .unwrap();
        buf
    }

    fn xchacha_seal(&self, buf: &mut [u8; HEADER_LEN]) -> Tag {
        XChaCha20Poly1305::new(&self.key.into())
            .encrypt_in_place_detached(&XNonce::from(self.xchacha_nonce), &self.xchacha_aad, buf)
            .unwrap()
    }

    fn xchacha_open(&self) -> [u8; HEADER_LEN] {
        let mut buf = self.xchacha_ciphertext;
        XChaCha20Poly1305::new(&self.key.into())
            .decrypt_in_place_detached(
                &XNonce::from(self.xchacha_nonce),
                &self.xchacha_aad,
                &mut buf,
                &self.xchacha_tag,
            )
            .unwrap();
        buf
    }
}

fn os_rng_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

fn seeded_rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x7ac1)
}

// ---------------------------------------------------------------------------
// Criterion groups
// ---------------------------------------------------------------------------

fn bench_primitives(c: &mut Criterion) {
    let p = PrimitiveInputs::new();
    let mut rng = seeded_rng();
    let mut g = c.benchmark_group("primitive");
    g.bench_function("x25519_dh", |b| b.iter(|| black_box(&p).dh()));
    g.bench_function("x25519_keygen", |b| {
        b.iter(|| PrimitiveInputs::keygen(&mut rng))
    });
    g.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| black_box(&p).verify())
    });
    g.bench_function("edwards_to_montgomery", |b| {
        b.iter(|| black_box(&p).to_montgomery())
    });
    g.bench_function("hmac_sha256_1B", |b| b.iter(|| black_box(&p).hmac()));
    g.bench_function("hkdf_sha256_32B", |b| b.iter(|| black_box(&p).hkdf32()));
    g.bench_function("hkdf_sha256_44B", |b| b.iter(|| black_box(&p).hkdf44()));
    g.bench_function("hkdf_sha256_96B", |b| b.iter(|| black_box(&p).hkdf96()));
    g.throughput(Throughput::Bytes(PLAINTEXT_LEN as u64));
    let mut buf = [0x42; PLAINTEXT_LEN];
    g.bench_function("chacha20poly1305_seal_256B", |b| {
        b.iter(|| black_box(&p).chacha_seal(&mut buf))
    });
    g.bench_function("chacha20poly1305_open_256B", |b| {
        b.iter(|| black_box(&p).chacha_open())
    });
    g.throughput(Throughput::Bytes(HEADER_LEN as u64));
    let mut hbuf = [0x24; HEADER_LEN];
    g.bench_function("xchacha20poly1305_seal_40B", |b| {
        b.iter(|| black_box(&p).xchacha_seal(&mut hbuf))
    });
    g.bench_function("xchacha20poly1305_open_40B", |b| {
        b.iter(|| black_box(&p).xchacha_open())
    });
    g.throughput(Throughput::Bytes(24));
    g.bench_function("os_rng_24B", |b| b.iter(os_rng_bytes::<24>));
    g.finish();
}

fn bench_x3dh(c: &mut Criterion) {
    let f = Fixture::new();
    let ephemeral = f.initiate(&mut OsRng).ephemeral_key;
    let mut g = c.benchmark_group("x3dh");
    g.bench_function("initiate_with_opk", |b| b.iter(|| f.initiate(&mut OsRng)));
    g.bench_function("respond_with_opk", |b| {
        b.iter(|| f.respond(black_box(&ephemeral)))
    });
    g.finish();
}

fn bench_session_setup(c: &mut Criterion) {
    let f = Fixture::new();
    let plaintext = [0x55; PLAINTEXT_LEN];
    let (_, ephemeral, first) = f.setup_initiator(&plaintext, &mut OsRng);
    let mut g = c.benchmark_group("session_setup");
    g.bench_function("initiator", |b| {
        b.iter(|| f.setup_initiator(black_box(&plaintext), &mut OsRng))
    });
    g.bench_function("responder", |b| {
        b.iter(|| f.setup_responder(black_box(&ephemeral), black_box(&first), &mut OsRng))
    });
    g.finish();
}

fn bench_ratchet(c: &mut Criterion) {
    let f = Fixture::new();
    let mut g = c.benchmark_group("ratchet");
    g.throughput(Throughput::Bytes(PLAINTEXT_LEN as u64));
    let mut one_way = OneWay::new(&f, &mut OsRng);
    g.bench_function("chain_step_256B", |b| b.iter(|| one_way.step(&mut OsRng)));
    let mut ping_pong = PingPong::new(&f, &mut OsRng);
    g.bench_function("ping_pong_256B", |b| b.iter(|| ping_pong.step(&mut OsRng)));
    // The same with a user-space CSPRNG: what the OS RNG costs.
    let mut rng = seeded_rng();
    let mut one_way = OneWay::new(&f, &mut rng);
    g.bench_function("chain_step_256B_chacha_rng", |b| {
        b.iter(|| one_way.step(&mut rng))
    });
    let mut ping_pong = PingPong::new(&f, &mut rng);
    g.bench_function("ping_pong_256B_chacha_rng", |b| {
        b.iter(|| ping_pong.step(&mut rng))
    });
    // Serialization of a session, for reference: load, one message, store.
    let OneWay { alice, .. } = OneWay::new(&f, &mut rng);
    let stored = alice.to_bytes();
    g.bench_function("session_from_bytes_to_bytes", |b| {
        b.iter_batched(
            || stored.clone(),
            |bytes| Ratchet::from_bytes(&bytes).unwrap().to_bytes(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// The ratio table: a calibrated loop in this process
// ---------------------------------------------------------------------------

/// Rounds over all rows; each round runs [`BATCHES_PER_ROUND`] batches of
/// every row, so that a noisy stretch of the run hits primitives and
/// operations alike instead of one row.
const ROUNDS: usize = 5;
const BATCHES_PER_ROUND: usize = 5;
const BATCH_TIME: Duration = Duration::from_millis(20);

/// One thing to time, its calibrated batch size and its batch means (ns).
struct Row<'a> {
    name: &'static str,
    f: Box<dyn FnMut() + 'a>,
    n: u64,
    means: Vec<f64>,
}

fn row<'a, R>(name: &'static str, mut f: impl FnMut() -> R + 'a) -> Row<'a> {
    Row {
        name,
        f: Box::new(move || {
            black_box(f());
        }),
        n: 1,
        means: Vec::new(),
    }
}

impl Row<'_> {
    /// Doubles the count until a batch takes a tenth of [`BATCH_TIME`], then
    /// scales it to [`BATCH_TIME`]. This also warms up.
    fn calibrate(&mut self) {
        let mut n: u64 = 1;
        loop {
            let start = Instant::now();
            for _ in 0..n {
                (self.f)();
            }
            let elapsed = start.elapsed();
            if elapsed >= BATCH_TIME / 10 {
                let per = elapsed.as_secs_f64() / n as f64;
                self.n = ((BATCH_TIME.as_secs_f64() / per) as u64).max(1);
                return;
            }
            n *= 2;
        }
    }

    fn run_batch(&mut self) {
        let start = Instant::now();
        for _ in 0..self.n {
            (self.f)();
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / self.n as f64;
        self.means.push(ns);
    }

    fn timing(&self) -> Timing {
        let mut m = self.means.clone();
        m.sort_by(f64::total_cmp);
        Timing {
            median_ns: m[m.len() / 2],
            min_ns: m[0],
            max_ns: m[m.len() - 1],
        }
    }
}

/// Median, min and max of a row's batch means, per iteration.
#[derive(Clone, Copy)]
struct Timing {
    median_ns: f64,
    min_ns: f64,
    max_ns: f64,
}

/// Calibrates every row, then runs the rounds.
fn measure_all(rows: &mut [Row<'_>]) {
    for r in rows.iter_mut() {
        r.calibrate();
    }
    for _ in 0..ROUNDS {
        for r in rows.iter_mut() {
            for _ in 0..BATCHES_PER_ROUND {
                r.run_batch();
            }
        }
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The primitives' medians, in ns.
struct Prims {
    dh: f64,
    keygen: f64,
    verify: f64,
    montgomery: f64,
    hmac: f64,
    hkdf32: f64,
    hkdf44: f64,
    hkdf96: f64,
    chacha_seal: f64,
    chacha_open: f64,
    xchacha_seal: f64,
    xchacha_open: f64,
}

impl Prims {
    /// Encrypt side of a chain step: `KDF_CK`, message keys, body, header.
    fn send(&self) -> f64 {
        2.0 * self.hmac + self.hkdf44 + self.chacha_seal + self.xchacha_seal
    }

    /// Decrypt side of a chain step.
    fn receive(&self) -> f64 {
        2.0 * self.hmac + self.hkdf44 + self.chacha_open + self.xchacha_open
    }

    fn chain_step(&self) -> f64 {
        self.send() + self.receive()
    }

    /// The receiving side's DH ratchet step: two DH, one new pair, two
    /// `KDF_RK`.
    fn dh_step(&self) -> f64 {
        2.0 * self.dh + self.keygen + 2.0 * self.hkdf96
    }

    fn ping_pong(&self) -> f64 {
        self.chain_step() + self.dh_step()
    }

    fn initiate(&self) -> f64 {
        self.verify + 4.0 * self.dh + self.keygen + self.hkdf32 + self.montgomery
    }

    fn respond(&self) -> f64 {
        4.0 * self.dh + self.hkdf32 + self.montgomery
    }

    /// X3DH, the session keys, `RatchetInitAliceHE` (a pair, a DH, a
    /// `KDF_RK`) and the first encryption.
    fn setup_initiator(&self) -> f64 {
        self.initiate() + self.hkdf96 + self.keygen + self.dh + self.hkdf96 + self.send()
    }

    /// X3DH, the session keys and the first decryption (a DH step).
    fn setup_responder(&self) -> f64 {
        self.respond() + self.hkdf96 + self.dh_step() + self.receive()
    }
}

// Row names, shared by the rows and the look-ups below.
const DH: &str = "X25519 DH (KeyPair::diffie_hellman)";
const KEYGEN: &str = "X25519 keygen (KeyPair::generate)";
const VERIFY: &str = "Ed25519 strict verify (IdentityKey::verify)";
const MONTGOMERY: &str = "Edwards->Montgomery (IdentityKey::to_x25519)";
const HMAC: &str = "HMAC-SHA256 of 1 B, keying included";
const HKDF32: &str = "HKDF-SHA256 -> 32 B (160 B IKM)";
const HKDF44: &str = "HKDF-SHA256 -> 44 B";
const HKDF96: &str = "HKDF-SHA256 -> 96 B";
const CHACHA_SEAL: &str = "ChaCha20-Poly1305 seal 256 B, AAD 144";
const CHACHA_OPEN: &str = "ChaCha20-Poly1305 open 256 B, AAD 144";
const XCHACHA_SEAL: &str = "XChaCha20-Poly1305 seal 40 B, AAD 64";
const XCHACHA_OPEN: &str = "XChaCha20-Poly1305 open 40 B, AAD 64";
const OS_RNG_24: &str = "OsRng 24 B (getrandom)";
const OS_RNG_32: &str = "OsRng 32 B (getrandom)";
const INITIATE: &str = "X3DH initiator (with OPK)";
const RESPOND: &str = "X3DH responder (with OPK)";
const SETUP_INIT: &str = "session setup, initiator";
const SETUP_RESP: &str = "session setup, responder";
const CHAIN: &str = "chain step 256 B (OsRng)";
const PING_PONG: &str = "ping-pong message 256 B (OsRng)";
const CHAIN_C: &str = "chain step 256 B (ChaCha20Rng)";
const PING_PONG_C: &str = "ping-pong message 256 B (ChaCha20Rng)";

/// Every row of the table: the primitives, then the operations. Each row
/// owns the state it advances (sessions, buffers, generators).
fn table_rows<'a>(p: &'a PrimitiveInputs, f: &'a Fixture) -> Vec<Row<'a>> {
    let plaintext = [0x55; PLAINTEXT_LEN];
    let ephemeral = f.initiate(&mut OsRng).ephemeral_key;
    let (_, setup_ephemeral, first) = f.setup_initiator(&plaintext, &mut OsRng);
    let mut keygen_rng = seeded_rng();
    let mut buf = [0x42; PLAINTEXT_LEN];
    let mut hbuf = [0x24; HEADER_LEN];
    let mut one_way = OneWay::new(f, &mut OsRng);
    let mut ping_pong = PingPong::new(f, &mut OsRng);
    let mut crng = seeded_rng();
    let mut one_way_c = OneWay::new(f, &mut crng);
    let mut ping_pong_c = PingPong::new(f, &mut crng);
    let mut crng2 = crng.clone();
    vec![
        row(DH, || p.dh()),
        row(KEYGEN, move || PrimitiveInputs::keygen(&mut keygen_rng)),
        row(VERIFY, || p.verify()),
        row(MONTGOMERY, || p.to_montgomery()),
        row(HMAC, || p.hmac()),
        row(HKDF32, || p.hkdf32()),
        row(HKDF44, || p.hkdf44()),
        row(HKDF96, || p.hkdf96()),
        row(CHACHA_SEAL, move || p.chacha_seal(&mut buf)),
        row(CHACHA_OPEN, || p.chacha_open()),
        row(XCHACHA_SEAL, move || p.xchacha_seal(&mut hbuf)),
        row(XCHACHA_OPEN, || p.xchacha_open()),
        row(OS_RNG_24, os_rng_bytes::<24>),
        row(OS_RNG_32, os_rng_bytes::<32>),
        row(INITIATE, || f.initiate(&mut OsRng)),
        row(RESPOND, move || f.respond(black_box(&ephemeral))),
        row(SETUP_INIT, move || {
            f.setup_initiator(&plaintext, &mut OsRng)
        }),
        row(SETUP_RESP, move || {
            f.setup_responder(&setup_ephemeral, &first, &mut OsRng)
        }),
        row(CHAIN, move || one_way.step(&mut OsRng)),
        row(PING_PONG, move || ping_pong.step(&mut OsRng)),
        row(CHAIN_C, move || one_way_c.step(&mut crng)),
        row(PING_PONG_C, move || ping_pong_c.step(&mut crng2)),
    ]
}

/// For a profiler (`valgrind --tool=callgrind`): runs every row whose name
/// contains `filter` (ASCII case-insensitive) `iterations` times, untimed.
fn profile_rows(filter: &str, iterations: u64) {
    let p = &PrimitiveInputs::new();
    let f = &Fixture::new();
    let filter = filter.to_ascii_lowercase();
    for mut r in table_rows(p, f) {
        if r.name.to_ascii_lowercase().contains(&filter) {
            println!("profiling {} x {iterations}", r.name);
            for _ in 0..iterations {
                (r.f)();
            }
        }
    }
}

fn print_table() {
    let p = &PrimitiveInputs::new();
    let f = &Fixture::new();
    let mut rows = table_rows(p, f);
    measure_all(&mut rows);
    let t = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(Row::timing)
            .expect("a row of that name")
    };

    println!();
    println!(
        "== calibrated loop: per row, median of {} batches of ~{} ms, in {ROUNDS} interleaved rounds ==",
        ROUNDS * BATCHES_PER_ROUND,
        BATCH_TIME.as_millis()
    );
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>10}",
        "primitive", "median", "min", "max"
    );
    for name in [
        DH,
        KEYGEN,
        VERIFY,
        MONTGOMERY,
        HMAC,
        HKDF32,
        HKDF44,
        HKDF96,
        CHACHA_SEAL,
        CHACHA_OPEN,
        XCHACHA_SEAL,
        XCHACHA_OPEN,
        OS_RNG_24,
        OS_RNG_32,
    ] {
        let x = t(name);
        println!(
            "{name:<46} {:>10} {:>10} {:>10}",
            fmt_ns(x.median_ns),
            fmt_ns(x.min_ns),
            fmt_ns(x.max_ns)
        );
    }
    let prims = |pick: fn(&Timing) -> f64| {
        let m = |name: &str| pick(&t(name));
        Prims {
            dh: m(DH),
            keygen: m(KEYGEN),
            verify: m(VERIFY),
            montgomery: m(MONTGOMERY),
            hmac: m(HMAC),
            hkdf32: m(HKDF32),
            hkdf44: m(HKDF44),
            hkdf96: m(HKDF96),
            chacha_seal: m(CHACHA_SEAL),
            chacha_open: m(CHACHA_OPEN),
            xchacha_seal: m(XCHACHA_SEAL),
            xchacha_open: m(XCHACHA_OPEN),
        }
    };
    // Two estimates of each ratio: from the medians, and from the fastest
    // batches (contention only ever adds time, so on a busy machine the
    // minimum is the steadier estimate of the uncontended cost).
    let by_median = prims(|x| x.median_ns);
    let by_min = prims(|x| x.min_ns);
    type Floor = fn(&Prims) -> f64;
    let ops: [(&str, Floor, Option<f64>); 8] = [
        (INITIATE, Prims::initiate, Some(1.2)),
        (RESPOND, Prims::respond, Some(1.2)),
        (SETUP_INIT, Prims::setup_initiator, None),
        (SETUP_RESP, Prims::setup_responder, None),
        (CHAIN, Prims::chain_step, Some(1.3)),
        (PING_PONG, Prims::ping_pong, Some(1.2)),
        (CHAIN_C, Prims::chain_step, Some(1.3)),
        (PING_PONG_C, Prims::ping_pong, Some(1.2)),
    ];
    println!();
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>9}",
        "operation", "median", "min", "max", "floor med", "floor min", "r(med)", "r(min)", "target"
    );
    for (name, floor, target) in ops {
        let x = t(name);
        let (floor_med, floor_min) = (floor(&by_median), floor(&by_min));
        let (r_med, r_min) = (x.median_ns / floor_med, x.min_ns / floor_min);
        let verdict = match target {
            Some(limit) if r_med <= limit && r_min <= limit => format!("{limit} ok"),
            Some(limit) if r_min <= limit => format!("{limit} ok*"),
            Some(limit) => format!("{limit} MISS"),
            None => "-".to_owned(),
        };
        println!(
            "{name:<38} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6.2}x {:>6.2}x {:>9}",
            fmt_ns(x.median_ns),
            fmt_ns(x.min_ns),
            fmt_ns(x.max_ns),
            fmt_ns(floor_med),
            fmt_ns(floor_min),
            r_med,
            r_min,
            verdict
        );
    }
    println!("(ok*: within the target by the fastest batches only, the medians were disturbed)");
    println!();
    println!("floors (sums of the primitives' medians, or of their minimums, above):");
    println!("  chain step = per side 2 HMAC + HKDF44 + ChaCha20-Poly1305 256 B + XChaCha20-Poly1305 40 B, sealing and opening side");
    println!(
        "  ping-pong  = chain step + 2 DH + 1 keygen + 2 HKDF96 (the receiving side's DH step)"
    );
    println!("  initiator  = strict verify + 4 DH + 1 keygen + HKDF32 + Edwards->Montgomery");
    println!("  responder  = 4 DH + HKDF32 + Edwards->Montgomery");
    println!(
        "  setup init = initiator + HKDF96 (session keys) + keygen + DH + HKDF96 + sealing side"
    );
    println!("  setup resp = responder + HKDF96 (session keys) + DH step + opening side");
    println!(
        "OsRng draws, not in the floors: chain step 24 B ({}), ping-pong 24 B + 32 B ({})",
        fmt_ns(t(OS_RNG_24).median_ns),
        fmt_ns(t(OS_RNG_24).median_ns + t(OS_RNG_32).median_ns)
    );
    drop(rows);

    print_sizes(f);
}

/// The serialized size of a session in a few states.
fn print_sizes(f: &Fixture) {
    let mut rng = seeded_rng();
    let pt = [0x42; PLAINTEXT_LEN];
    // `deliver(n)`: which of the 100 messages of a batch arrive.
    let batch = |from: &mut Ratchet,
                 to: &mut Ratchet,
                 count: u32,
                 deliver: &dyn Fn(u32) -> bool,
                 rng: &mut ChaCha20Rng| {
        for i in 0..count {
            let m = from.encrypt_with_rng(&pt, rng).unwrap();
            if deliver(i) {
                to.decrypt_with_rng(&m, rng).unwrap();
            }
        }
    };
    println!();
    println!(
        "{:<58} {:>12} {:>12}",
        "serialized session (Ratchet::to_bytes().len())", "Alice", "Bob"
    );
    let report = |name: &str, alice: &Ratchet, bob: &Ratchet| {
        println!(
            "{name:<58} {:>12} {:>12}",
            format!(
                "{} B ({} sk)",
                alice.to_bytes().len(),
                alice.skipped_key_count()
            ),
            format!(
                "{} B ({} sk)",
                bob.to_bytes().len(),
                bob.skipped_key_count()
            ),
        );
    };
    let (alice, bob) = f.session(&mut rng);
    report("after X3DH and the first message", &alice, &bob);

    let (mut alice, mut bob) = f.session(&mut rng);
    batch(&mut alice, &mut bob, 100, &|_| true, &mut rng);
    batch(&mut bob, &mut alice, 100, &|_| true, &mut rng);
    report("100 each way, all delivered", &alice, &bob);

    let (mut alice, mut bob) = f.session(&mut rng);
    for _ in 0..100 {
        batch(&mut alice, &mut bob, 1, &|_| true, &mut rng);
        batch(&mut bob, &mut alice, 1, &|_| true, &mut rng);
    }
    report("100 each way, ping-pong, all delivered", &alice, &bob);

    let (mut alice, mut bob) = f.session(&mut rng);
    batch(&mut alice, &mut bob, 100, &|i| i % 10 != 0, &mut rng);
    batch(&mut bob, &mut alice, 100, &|i| i % 10 != 0, &mut rng);
    report(
        "100 each way, every 10th lost (10 skipped keys)",
        &alice,
        &bob,
    );

    let (mut alice, mut bob) = f.session(&mut rng);
    batch(&mut alice, &mut bob, 100, &|i| i == 99, &mut rng);
    batch(&mut bob, &mut alice, 100, &|i| i == 99, &mut rng);
    report(
        "100 each way, only the last delivered (99 skipped)",
        &alice,
        &bob,
    );

    // The cap: two chains of 1000 skipped keys each (MAX_SKIP = 1000).
    let (mut alice, mut bob) = f.session(&mut rng);
    batch(&mut alice, &mut bob, 1001, &|i| i == 1000, &mut rng);
    batch(&mut bob, &mut alice, 1, &|_| true, &mut rng);
    batch(&mut alice, &mut bob, 1001, &|i| i == 1000, &mut rng);
    report("at the cap: 2000 skipped keys", &alice, &bob);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    let env = |name: &str| std::env::var_os(name).is_some_and(|v| v != "0");

    if let Ok(filter) = std::env::var("TACIT_BENCH_PROFILE") {
        let iterations = std::env::var("TACIT_BENCH_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        profile_rows(&filter, iterations);
        return;
    }
    if !env("TACIT_BENCH_TABLE_ONLY") {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        bench_primitives(&mut c);
        bench_x3dh(&mut c);
        bench_session_setup(&mut c);
        bench_ratchet(&mut c);
        c.final_summary();
    }
    if benchmarking && !env("TACIT_BENCH_NO_TABLE") {
        print_table();
    }
}
