#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Tacit and vodozemac (Olm, `SessionConfig::version_1`, the default and the only one without its experimental feature) on the same
//! operations, with the primitive floor, in one run:
//!
//! ```text
//! cargo bench -p tacit-bench --bench compare
//! ```
//!
//! Every measurement is one function `f(iterations) -> elapsed` that does
//! its per-iteration preparation outside the timed loop; criterion drives it
//! through `iter_custom`, then a plain calibrated loop runs all of them again
//! interleaved (criterion 0.5 does not hand its estimates back) and prints
//! each Tacit figure as a ratio to vodozemac's and to its floor, then the
//! serialized size of a session.
//!
//! Environment:
//! - `TACIT_BENCH_TABLE_ONLY=1`: skip criterion, print the table.
//! - `TACIT_BENCH_NO_TABLE=1`: criterion only.
//! - `TACIT_BENCH_PROFILE=<part of a row name>` (and `TACIT_BENCH_ITERS=n`,
//!   default 1000): no timing, run the matching rows once with n
//!   iterations, for `valgrind --tool=callgrind --toggle-collect='*timed*'`.
//!
//! Under `cargo test --benches` every measurement runs once as a smoke test.
//! Nothing here is a timed assertion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, OsRng, RngCore, SeedableRng};
use tacit::address::Address;
use tacit::envelope::sealed;
use tacit::identity::{DeviceCertificate, UserKey, UserKeyPair};
use tacit::kem::KemKeyPair;
use tacit::keys::{IdentityKey, IdentityKeyPair, KeyPair, PublicKey};
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig};
use tacit::wire::SessionMessage;
use tacit::x3dh;
use tacit::{BundleKemPreKey, PreKeyBundle};
use vodozemac::olm::{Account, Session, SessionConfig, SessionPickle};

#[path = "compare/pq.rs"]
mod pq;

const PLAINTEXT_LEN: usize = 256;
const SKIPPED: usize = 1000;

/// Runs `f` `iterations` times and returns the elapsed time. Every timed
/// loop goes through here, so a profiler can collect inside it only.
#[inline(never)]
fn timed<R>(iterations: u64, mut f: impl FnMut(u64) -> R) -> Duration {
    let start = Instant::now();
    for i in 0..iterations {
        black_box(f(i));
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Tacit fixtures
// ---------------------------------------------------------------------------

struct Fixture {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair,
    bundle: PreKeyBundle,
    /// Bob's KEM prekey and the `tacit-v2` bundle offering it (with the
    /// same X25519 keys as `bundle`).
    kem_prekey: KemKeyPair,
    pq_bundle: PreKeyBundle,
    alice_address: Address,
    bob_address: Address,
    alice_user_key: UserKey,
    alice_certificate: DeviceCertificate,
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
            kem_prekey: None,
        };
        let kem_prekey = KemKeyPair::from_seed(&[0x4b; 64]);
        let pq_bundle = PreKeyBundle {
            kem_prekey: Some(BundleKemPreKey {
                key: kem_prekey.public_key().clone(),
                signature: bob.sign_kem_prekey(kem_prekey.public_key()),
            }),
            ..bundle.clone()
        };
        let alice_address = Address::new("alice", 1).unwrap();
        let alice_user = UserKeyPair::from_seed(&[0xa5; 32]);
        let alice_certificate =
            DeviceCertificate::issue(&alice_user, &alice_address, &alice.public_key());
        Self {
            alice,
            bob,
            signed_prekey,
            one_time_prekey,
            bundle,
            kem_prekey,
            pq_bundle,
            alice_address,
            bob_address: Address::new("bob", 1).unwrap(),
            alice_user_key: alice_user.public_key(),
            alice_certificate,
        }
    }

    /// Alice's device as the sender of a sealed envelope.
    fn alice_sender(&self) -> sealed::Sender<'_> {
        sealed::Sender {
            identity: &self.alice,
            address: &self.alice_address,
            user_key: &self.alice_user_key,
            certificate: &self.alice_certificate,
        }
    }

    /// The initiator's half of session setup: bundle processing (X3DH)
    /// and Alice's first message; returns her ratchet, her ephemeral key
    /// and the message.
    fn initiator_half(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> (Ratchet, PublicKey, EncryptedMessage) {
        let init = x3dh::initiate(&self.alice, &self.bundle, rng).unwrap();
        let (alice, first) = self.first_message(init.agreement.session_keys(), rng);
        (alice, init.ephemeral_key, first)
    }

    /// Alice's ratchet from the agreed keys, and her first message.
    fn first_message(
        &self,
        keys: tacit::ratchet::SessionKeys,
        rng: &mut impl CryptoRngCore,
    ) -> (Ratchet, EncryptedMessage) {
        let mut alice = Ratchet::new_initiator(
            keys,
            &self.bundle.signed_prekey,
            RatchetConfig::default(),
            rng,
        )
        .unwrap();
        let first = alice.encrypt(&[0x55; PLAINTEXT_LEN], rng).unwrap();
        (alice, first)
    }

    /// The responder's half: X3DH as the responder and Bob's decryption of
    /// the first message.
    fn responder_half(
        &self,
        ephemeral: &PublicKey,
        first: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Ratchet {
        let agreement = x3dh::respond(
            &self.bob,
            &self.signed_prekey,
            Some(&self.one_time_prekey),
            &self.alice.public_key(),
            ephemeral,
        )
        .unwrap();
        self.first_decryption(agreement.session_keys(), first, rng)
    }

    /// Bob's ratchet from the agreed keys, after decrypting `first`.
    fn first_decryption(
        &self,
        keys: tacit::ratchet::SessionKeys,
        first: &EncryptedMessage,
        rng: &mut impl CryptoRngCore,
    ) -> Ratchet {
        let mut bob =
            Ratchet::new_responder(keys, self.signed_prekey.clone(), RatchetConfig::default());
        black_box(bob.decrypt(first, rng).unwrap());
        bob
    }

    /// Bundle processing, Alice's first message, Bob's first decryption.
    fn setup(&self, rng: &mut impl CryptoRngCore) -> (Ratchet, Ratchet) {
        let (alice, ephemeral, first) = self.initiator_half(rng);
        let bob = self.responder_half(&ephemeral, &first, rng);
        (alice, bob)
    }

    /// A session where both sides have sent and received; Alice sends next
    /// on an ordinary chain step.
    fn established(&self) -> (Ratchet, Ratchet) {
        let (mut alice, mut bob) = self.setup(&mut OsRng);
        let reply = bob.encrypt(&[1; PLAINTEXT_LEN], &mut OsRng).unwrap();
        alice.decrypt(&reply, &mut OsRng).unwrap();
        let m = alice.encrypt(&[2; PLAINTEXT_LEN], &mut OsRng).unwrap();
        bob.decrypt(&m, &mut OsRng).unwrap();
        (alice, bob)
    }
}

// ---------------------------------------------------------------------------
// vodozemac fixtures
// ---------------------------------------------------------------------------

fn olm_config() -> SessionConfig {
    SessionConfig::version_1()
}

struct Olm {
    alice: Account,
    bob_pickle: String,
    bob_identity: vodozemac::Curve25519PublicKey,
    bob_one_time_key: vodozemac::Curve25519PublicKey,
}

impl Olm {
    fn new() -> Self {
        let alice = Account::new();
        let mut bob = Account::new();
        bob.generate_one_time_keys(1);
        let bob_one_time_key = *bob.one_time_keys().values().next().unwrap();
        bob.mark_keys_as_published();
        Self {
            alice,
            bob_pickle: serde_json::to_string(&bob.pickle()).unwrap(),
            bob_identity: bob.curve25519_key(),
            bob_one_time_key,
        }
    }

    fn bob(&self) -> Account {
        Account::from_pickle(serde_json::from_str(&self.bob_pickle).unwrap())
    }

    /// Outbound session, Alice's first message, Bob's inbound session (which
    /// decrypts it).
    fn setup(&self, bob: &mut Account) -> (Session, Session) {
        let (alice, first) = self.initiator_half();
        let bob = self.responder_half(bob, &first);
        (alice, bob)
    }

    fn established(&self) -> (Session, Session) {
        let (mut alice, mut bob) = self.setup(&mut self.bob());
        let reply = bob.encrypt([1; PLAINTEXT_LEN]).unwrap();
        alice.decrypt(&reply).unwrap();
        let m = alice.encrypt([2; PLAINTEXT_LEN]).unwrap();
        bob.decrypt(&m).unwrap();
        (alice, bob)
    }
}

fn olm_pickle_json(session: &Session) -> String {
    serde_json::to_string(&session.pickle()).unwrap()
}

fn olm_from_json(json: &str) -> Session {
    let pickle: SessionPickle = serde_json::from_str(json).unwrap();
    Session::from_pickle(pickle)
}

// ---------------------------------------------------------------------------
// Primitives, at the sizes the protocol uses them
// ---------------------------------------------------------------------------

/// ChaCha20-Poly1305 as Tacit computes it: the `chacha20` keystream and
/// orion's Poly1305 (see `crates/tacit/src/aead.rs`).
mod split_aead {
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use orion::hazardous::mac::poly1305::{OneTimeKey, Poly1305};

    fn tag(mac: &mut Poly1305, aad: &[u8], ct: &[u8]) -> [u8; 16] {
        let zeros = [0u8; 16];
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
        lengths[8..].copy_from_slice(&(ct.len() as u64).to_le_bytes());
        mac.update(aad).unwrap();
        mac.update(&zeros[..(16 - aad.len() % 16) % 16]).unwrap();
        mac.update(ct).unwrap();
        mac.update(&zeros[..(16 - ct.len() % 16) % 16]).unwrap();
        mac.update(&lengths).unwrap();
        let mut out = [0u8; 16];
        out.copy_from_slice(mac.finalize().unwrap().unprotected_as_bytes());
        out
    }

    fn mac<C: StreamCipher + StreamCipherSeek>(c: &mut C) -> Poly1305 {
        let mut block = [0u8; 64];
        c.apply_keystream(&mut block);
        Poly1305::new(&OneTimeKey::from_slice(&block[..32]).unwrap())
    }

    pub(crate) fn seal<C: StreamCipher + StreamCipherSeek>(
        mut c: C,
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; 16] {
        let mut m = mac(&mut c);
        c.apply_keystream(buf);
        tag(&mut m, aad, buf)
    }

    pub(crate) fn open<C: StreamCipher + StreamCipherSeek>(
        mut c: C,
        aad: &[u8],
        buf: &mut [u8],
        expected: &[u8; 16],
    ) {
        let mut m = mac(&mut c);
        assert_eq!(&tag(&mut m, aad, buf), expected);
        c.apply_keystream(buf);
    }

    pub(crate) fn chacha(key: &[u8; 32], nonce: &[u8; 12]) -> chacha20::ChaCha20 {
        chacha20::ChaCha20::new(key.into(), nonce.into())
    }

    pub(crate) fn xchacha(key: &[u8; 32], nonce: &[u8; 24]) -> chacha20::XChaCha20 {
        chacha20::XChaCha20::new(key.into(), nonce.into())
    }
}

/// One AEAD input: key, nonce, AAD and a sealed copy of the plaintext.
struct AeadCase<const N: usize> {
    key: [u8; 32],
    nonce: [u8; 24],
    aad: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: [u8; 16],
}

impl<const N: usize> AeadCase<N> {
    fn new(aad_len: usize, plaintext_len: usize) -> Self {
        let key = [0x17; 32];
        let nonce = [9; 24];
        let aad = vec![0x33; aad_len];
        let plaintext = vec![0x42; plaintext_len];
        let mut ciphertext = plaintext.clone();
        let tag = if N == 12 {
            split_aead::seal(
                split_aead::chacha(&key, &short(&nonce)),
                &aad,
                &mut ciphertext,
            )
        } else {
            split_aead::seal(split_aead::xchacha(&key, &nonce), &aad, &mut ciphertext)
        };
        Self {
            key,
            nonce,
            aad,
            plaintext,
            ciphertext,
            tag,
        }
    }

    /// Tacit's composition.
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        buf.copy_from_slice(&self.plaintext);
        if N == 12 {
            split_aead::seal(
                split_aead::chacha(&self.key, &short(&self.nonce)),
                &self.aad,
                buf,
            )
        } else {
            split_aead::seal(split_aead::xchacha(&self.key, &self.nonce), &self.aad, buf)
        }
    }

    fn open(&self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.ciphertext);
        if N == 12 {
            let c = split_aead::chacha(&self.key, &short(&self.nonce));
            split_aead::open(c, &self.aad, buf, &self.tag)
        } else {
            let c = split_aead::xchacha(&self.key, &self.nonce);
            split_aead::open(c, &self.aad, buf, &self.tag)
        }
    }

    /// The `chacha20poly1305` 0.10 crate (poly1305 0.8, default build).
    fn crate_seal(&self, buf: &mut [u8]) -> [u8; 16] {
        use chacha20poly1305::aead::AeadInPlace;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
        buf.copy_from_slice(&self.plaintext);
        let tag = if N == 12 {
            ChaCha20Poly1305::new(&self.key.into()).encrypt_in_place_detached(
                &short(&self.nonce).into(),
                &self.aad,
                buf,
            )
        } else {
            XChaCha20Poly1305::new(&self.key.into()).encrypt_in_place_detached(
                &self.nonce.into(),
                &self.aad,
                buf,
            )
        };
        tag.unwrap().into()
    }

    fn crate_open(&self, buf: &mut [u8]) {
        use chacha20poly1305::aead::AeadInPlace;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
        buf.copy_from_slice(&self.ciphertext);
        let tag = self.tag.into();
        if N == 12 {
            ChaCha20Poly1305::new(&self.key.into()).decrypt_in_place_detached(
                &short(&self.nonce).into(),
                &self.aad,
                buf,
                &tag,
            )
        } else {
            XChaCha20Poly1305::new(&self.key.into()).decrypt_in_place_detached(
                &self.nonce.into(),
                &self.aad,
                buf,
                &tag,
            )
        }
        .unwrap();
    }
}

fn short(nonce: &[u8; 24]) -> [u8; 12] {
    core::array::from_fn(|i| nonce[i])
}

struct Primitives {
    key_pair: KeyPair,
    peer: PublicKey,
    fixture: Fixture,
    identity_bytes: [u8; 32],
    key: [u8; 32],
    x3dh_ikm: [u8; 160],
    sealed_info: Vec<u8>,
    body: AeadCase<12>,
    header: AeadCase<24>,
    sender: AeadCase<12>,
    content: AeadCase<12>,
}

/// `ctx` of a sealed envelope to `bob`/1: two keys, the address.
const SEALED_CTX_LEN: usize = 32 + 32 + 1 + 3 + 4;
/// The inner plaintext of an envelope around a 256-byte message:
/// ciphertext (256 + 16) plus `INNER_RESERVE` (420).
const SEALED_INNER_LEN: usize = PLAINTEXT_LEN + 16 + sealed::INNER_RESERVE;

impl Primitives {
    fn new() -> Self {
        let fixture = Fixture::new();
        let mut x3dh_ikm = [0x5a; 160];
        x3dh_ikm[..32].fill(0xff);
        Self {
            key_pair: KeyPair::from_private_bytes([0x21; 32]),
            peer: KeyPair::from_private_bytes([0x12; 32]).public_key(),
            identity_bytes: fixture.alice.public_key().to_bytes(),
            fixture,
            key: [0x17; 32],
            x3dh_ikm,
            sealed_info: vec![0x61; 22 + SEALED_CTX_LEN + 48],
            body: AeadCase::new(64 + 80, PLAINTEXT_LEN),
            header: AeadCase::new(64, 40),
            sender: AeadCase::new(SEALED_CTX_LEN, 32),
            content: AeadCase::new(SEALED_CTX_LEN + 48, SEALED_INNER_LEN),
        }
    }

    fn hkdf<const L: usize>(&self, ikm: &[u8], info: &[u8]) -> [u8; L] {
        let mut okm = [0u8; L];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), ikm)
            .expand(info, &mut okm)
            .unwrap();
        okm
    }

    fn hmac(&self) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).unwrap();
        mac.update(&[0x01]);
        mac.finalize().into_bytes().into()
    }
}

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

type Measure<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

struct Row<'a> {
    name: &'static str,
    measure: Measure<'a>,
    batch: u64,
    samples: Vec<f64>,
}

fn row<'a>(name: &'static str, measure: impl FnMut(u64) -> Duration + 'a) -> Row<'a> {
    Row {
        name,
        measure: Box::new(measure),
        batch: 1,
        samples: Vec::new(),
    }
}

/// A measurement of a closure with no per-iteration preparation.
fn simple<'a, R>(name: &'static str, mut f: impl FnMut() -> R + 'a) -> Row<'a> {
    row(name, move |n| timed(n, |_| f()))
}

// Row names.
const DH: &str = "X25519 DH";
const KEYGEN: &str = "X25519 key generation";
const VERIFY: &str = "Ed25519 strict verify";
const MONTGOMERY: &str = "Edwards to Montgomery";
const DECODE: &str = "Ed25519 identity decode";
const HMAC: &str = "HMAC-SHA256 1 B";
const HKDF32: &str = "HKDF to 32 B (160 B IKM)";
const HKDF44: &str = "HKDF to 44 B";
const HKDF76: &str = "HKDF to 76 B (sealed, long info)";
const HKDF96: &str = "HKDF to 96 B";
const BODY_SEAL: &str = "ChaCha20-Poly1305 seal 256 B";
const BODY_OPEN: &str = "ChaCha20-Poly1305 open 256 B";
const HDR_SEAL: &str = "XChaCha20-Poly1305 seal 40 B";
const HDR_OPEN: &str = "XChaCha20-Poly1305 open 40 B";
const SND_SEAL: &str = "ChaCha20-Poly1305 seal 32 B";
const SND_OPEN: &str = "ChaCha20-Poly1305 open 32 B";
const CNT_SEAL: &str = "ChaCha20-Poly1305 seal 692 B";
const CNT_OPEN: &str = "ChaCha20-Poly1305 open 692 B";
const C_BODY_SEAL: &str = "crate ChaCha20-Poly1305 seal 256 B";
const C_BODY_OPEN: &str = "crate ChaCha20-Poly1305 open 256 B";
const C_HDR_SEAL: &str = "crate XChaCha20-Poly1305 seal 40 B";
const C_HDR_OPEN: &str = "crate XChaCha20-Poly1305 open 40 B";
const C_SND_SEAL: &str = "crate ChaCha20-Poly1305 seal 32 B";
const C_SND_OPEN: &str = "crate ChaCha20-Poly1305 open 32 B";
const C_CNT_SEAL: &str = "crate ChaCha20-Poly1305 seal 692 B";
const C_CNT_OPEN: &str = "crate ChaCha20-Poly1305 open 692 B";
const OS_RNG: &str = "OsRng 24 B";

const T_X3DH_INIT: &str = "tacit X3DH initiator, with OPK";
const T_X3DH_RESP: &str = "tacit X3DH responder, with OPK";
const T_SETUP: &str = "tacit session setup";
const T_CHAIN: &str = "tacit chain step 256 B";
const T_CHAIN_C: &str = "tacit chain step 256 B (ChaCha20Rng)";
const T_PING: &str = "tacit ping-pong message 256 B";
const T_PING_C: &str = "tacit ping-pong message 256 B (ChaCha20Rng)";
const T_SKIP: &str = "tacit decrypt after skipping 1000";
const T_LOAD: &str = "tacit session load+store";
const T_LOAD_V1: &str = "tacit session load+store, version 1 record";
const T_SEAL: &str = "tacit sealed envelope seal";
const T_OPEN: &str = "tacit sealed envelope open";
const V_SETUP: &str = "vodozemac session setup";
const V_CHAIN: &str = "vodozemac chain step 256 B";
const V_PING: &str = "vodozemac ping-pong message 256 B";
const V_SKIP: &str = "vodozemac decrypt after skipping 1000";

fn primitive_rows(p: &Primitives) -> Vec<Row<'_>> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let bundle = &p.fixture.bundle;
    let mut b256 = [0u8; PLAINTEXT_LEN];
    let mut b40 = [0u8; 40];
    let mut b32 = [0u8; 32];
    let mut b692 = [0u8; SEALED_INNER_LEN];
    let mut c256 = [0u8; PLAINTEXT_LEN];
    let mut c40 = [0u8; 40];
    let mut c32 = [0u8; 32];
    let mut c692 = [0u8; SEALED_INNER_LEN];
    let (mut o256, mut o40, mut o32, mut o692) = (b256, b40, b32, b692);
    let (mut d256, mut d40, mut d32, mut d692) = (b256, b40, b32, b692);
    vec![
        simple(DH, || {
            *p.key_pair.diffie_hellman(&p.peer).unwrap().as_bytes()
        }),
        simple(KEYGEN, move || KeyPair::generate(&mut rng).public_key()),
        simple(VERIFY, || {
            bundle
                .identity_key
                .verify(
                    bundle.signed_prekey.as_bytes(),
                    &bundle.signed_prekey_signature,
                )
                .unwrap()
        }),
        simple(MONTGOMERY, || bundle.identity_key.to_x25519()),
        simple(DECODE, || {
            IdentityKey::try_from_slice(black_box(&p.identity_bytes)).unwrap()
        }),
        simple(HMAC, || p.hmac()),
        simple(HKDF32, || p.hkdf::<32>(&p.x3dh_ikm, b"tacit/x3dh/v1")),
        simple(HKDF44, || p.hkdf::<44>(&p.key, b"tacit/ratchet/message/v1")),
        simple(HKDF76, || p.hkdf::<76>(&p.key, &p.sealed_info)),
        simple(HKDF96, || p.hkdf::<96>(&p.key, b"tacit/ratchet/root/v1")),
        simple(BODY_SEAL, move || p.body.seal(&mut b256)),
        simple(BODY_OPEN, move || p.body.open(&mut o256)),
        simple(HDR_SEAL, move || p.header.seal(&mut b40)),
        simple(HDR_OPEN, move || p.header.open(&mut o40)),
        simple(SND_SEAL, move || p.sender.seal(&mut b32)),
        simple(SND_OPEN, move || p.sender.open(&mut o32)),
        simple(CNT_SEAL, move || p.content.seal(&mut b692)),
        simple(CNT_OPEN, move || p.content.open(&mut o692)),
        simple(C_BODY_SEAL, move || p.body.crate_seal(&mut c256)),
        simple(C_BODY_OPEN, move || p.body.crate_open(&mut d256)),
        simple(C_HDR_SEAL, move || p.header.crate_seal(&mut c40)),
        simple(C_HDR_OPEN, move || p.header.crate_open(&mut d40)),
        simple(C_SND_SEAL, move || p.sender.crate_seal(&mut c32)),
        simple(C_SND_OPEN, move || p.sender.crate_open(&mut d32)),
        simple(C_CNT_SEAL, move || p.content.crate_seal(&mut c692)),
        simple(C_CNT_OPEN, move || p.content.crate_open(&mut d692)),
        simple(OS_RNG, || {
            let mut out = [0u8; 24];
            OsRng.fill_bytes(&mut out);
            out
        }),
    ]
}

/// One-way: Alice encrypts, Bob decrypts, on one chain.
fn tacit_chain<'a>(name: &'static str, f: &Fixture, mut rng: impl CryptoRngCore + 'a) -> Row<'a> {
    let (mut alice, mut bob) = f.established();
    let plaintext = [0x42; PLAINTEXT_LEN];
    simple(name, move || {
        let m = alice.encrypt(&plaintext, &mut rng).unwrap();
        bob.decrypt(&m, &mut rng).unwrap()
    })
}

/// Turns: every decryption is a DH ratchet step.
fn tacit_ping_pong<'a>(
    name: &'static str,
    f: &Fixture,
    mut rng: impl CryptoRngCore + 'a,
) -> Row<'a> {
    let (alice, bob) = f.established();
    let mut sides = [bob, alice];
    let plaintext = [0x42; PLAINTEXT_LEN];
    simple(name, move || {
        let [sender, receiver] = &mut sides;
        let m = sender.encrypt(&plaintext, &mut rng).unwrap();
        let out = receiver.decrypt(&m, &mut rng).unwrap();
        sides.swap(0, 1);
        out
    })
}

fn tacit_rows(f: &Fixture) -> Vec<Row<'_>> {
    // Skipping: Bob's state before 1000 lost messages, and the one after.
    let (mut alice, bob_before_skip) = f.established();
    for _ in 0..SKIPPED {
        alice.encrypt(&[0; PLAINTEXT_LEN], &mut OsRng).unwrap();
    }
    let after_skip = alice.encrypt(&[0x42; PLAINTEXT_LEN], &mut OsRng).unwrap();

    // Envelopes: one ratchet message of 256 bytes, sealed to Bob.
    let (mut alice, _) = f.established();
    let message =
        SessionMessage::Ratchet(alice.encrypt(&[0x42; PLAINTEXT_LEN], &mut OsRng).unwrap());
    let envelope = sealed::seal(
        &f.alice_sender(),
        &f.bob.public_key(),
        &f.bob_address,
        &message,
        &mut OsRng,
    )
    .unwrap();

    let bob = f.established().1;
    let record = bob.to_bytes();
    // The same session as version 1 wrote it: no public key (the 32 bytes
    // after the private key; max_skip, cap and AD length take 2, 2 and 1).
    let public_at = 1 + 2 + 2 + 1 + bob.associated_data().len() + 64;
    let public = bob.next_header().unwrap().ratchet_key.to_bytes();
    assert_eq!(record[public_at..public_at + 32], public);
    let mut record_v1 = record[..public_at].to_vec();
    record_v1[0] = 1;
    record_v1.extend_from_slice(&record[public_at + 32..]);

    let ephemeral = x3dh::initiate(&f.alice, &f.bundle, &mut OsRng)
        .unwrap()
        .ephemeral_key;
    vec![
        simple(T_X3DH_INIT, || {
            x3dh::initiate(&f.alice, &f.bundle, &mut OsRng).unwrap()
        }),
        simple(T_X3DH_RESP, move || {
            x3dh::respond(
                &f.bob,
                &f.signed_prekey,
                Some(&f.one_time_prekey),
                &f.alice.public_key(),
                black_box(&ephemeral),
            )
            .unwrap()
        }),
        simple(T_SETUP, || f.setup(&mut OsRng)),
        tacit_chain(T_CHAIN, f, OsRng),
        tacit_chain(T_CHAIN_C, f, ChaCha20Rng::seed_from_u64(2)),
        tacit_ping_pong(T_PING, f, OsRng),
        tacit_ping_pong(T_PING_C, f, ChaCha20Rng::seed_from_u64(3)),
        row(T_SKIP, move |n| {
            let mut bobs: Vec<Ratchet> = (0..n).map(|_| bob_before_skip.clone()).collect();
            let elapsed = timed(n, |i| {
                bobs[i as usize].decrypt(&after_skip, &mut OsRng).unwrap()
            });
            drop(bobs);
            elapsed
        }),
        // An established session (both chains) read from its record and
        // written back, as an application that keeps sessions in storage
        // does around every message.
        simple(T_LOAD, move || {
            Ratchet::from_bytes(black_box(&record)).unwrap().to_bytes()
        }),
        simple(T_LOAD_V1, move || {
            Ratchet::from_bytes(black_box(&record_v1))
                .unwrap()
                .to_bytes()
        }),
        simple(T_SEAL, move || {
            sealed::seal(
                &f.alice_sender(),
                &f.bob.public_key(),
                &f.bob_address,
                &message,
                &mut OsRng,
            )
            .unwrap()
        }),
        simple(T_OPEN, move || {
            sealed::open(&f.bob, &f.bob_address, &envelope).unwrap()
        }),
    ]
}

fn olm_rows(o: &Olm) -> Vec<Row<'_>> {
    let (alice_pp, bob_pp) = o.established();
    let (mut chain_alice, mut chain_bob) = o.established();
    // Bob's state before 1000 lost messages, and the one after.
    let (mut skip_alice, skip_bob) = o.established();
    let bob_before_skip = olm_pickle_json(&skip_bob);
    for _ in 0..SKIPPED {
        skip_alice.encrypt([0; PLAINTEXT_LEN]).unwrap();
    }
    let after_skip = skip_alice.encrypt([0x42; PLAINTEXT_LEN]).unwrap();
    let plaintext = [0x42; PLAINTEXT_LEN];
    let mut sides = [bob_pp, alice_pp];
    vec![
        row(V_SETUP, move |n| {
            let mut bobs: Vec<Account> = (0..n).map(|_| o.bob()).collect();
            timed(n, |i| o.setup(&mut bobs[i as usize]))
        }),
        simple(V_CHAIN, move || {
            let m = chain_alice.encrypt(plaintext).unwrap();
            chain_bob.decrypt(&m).unwrap()
        }),
        simple(V_PING, move || {
            let [sender, receiver] = &mut sides;
            let m = sender.encrypt(plaintext).unwrap();
            let out = receiver.decrypt(&m).unwrap();
            sides.swap(0, 1);
            out
        }),
        row(V_SKIP, move |n| {
            let mut bobs: Vec<Session> = (0..n).map(|_| olm_from_json(&bob_before_skip)).collect();
            timed(n, |i| bobs[i as usize].decrypt(&after_skip).unwrap())
        }),
    ]
}

// ---------------------------------------------------------------------------
// Criterion
// ---------------------------------------------------------------------------

fn criterion_groups(c: &mut Criterion, rows: &mut [Row<'_>]) {
    let mut group = c.benchmark_group("compare");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for r in rows {
        let measure = &mut r.measure;
        group.bench_function(r.name, |b| b.iter_custom(&mut *measure));
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// The calibrated, interleaved table
// ---------------------------------------------------------------------------

const BATCH_TARGET: Duration = Duration::from_millis(20);
const ROUNDS: usize = 5;
const BATCHES_PER_ROUND: usize = 5;

impl Row<'_> {
    fn calibrate(&mut self) {
        let mut n = 1u64;
        loop {
            let t = (self.measure)(n);
            if t >= BATCH_TARGET / 4 || n >= 1 << 24 {
                let per = t.as_secs_f64() / n as f64;
                self.batch = ((BATCH_TARGET.as_secs_f64() / per.max(1e-9)) as u64).max(1);
                return;
            }
            n *= 4;
        }
    }

    fn run_batch(&mut self) {
        let t = (self.measure)(self.batch);
        self.samples.push(t.as_secs_f64() * 1e9 / self.batch as f64);
    }

    fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    }

    fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

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

/// Looks rows up by name, by median or by minimum.
struct Figures<'r, 'a> {
    rows: &'r [Row<'a>],
    by_min: bool,
}

impl Figures<'_, '_> {
    fn get(&self, name: &str) -> f64 {
        let r = self.rows.iter().find(|r| r.name == name).expect("row");
        if self.by_min {
            r.min()
        } else {
            r.median()
        }
    }

    /// The floors; `prefix` is "" for Tacit's AEAD, "crate " for the
    /// `chacha20poly1305` crate's.
    fn floors(&self, prefix: &str) -> Floors {
        let g = |n: &str| self.get(n);
        let a = |n: &str| self.get(&format!("{prefix}{n}"));
        let kdf_side = 2.0 * g(HMAC) + g(HKDF44);
        let sealing = kdf_side + a(BODY_SEAL) + a(HDR_SEAL);
        let opening = kdf_side + a(BODY_OPEN) + a(HDR_OPEN);
        let chain = sealing + opening;
        let dh_step = 2.0 * g(DH) + g(KEYGEN) + 2.0 * g(HKDF96);
        let x3dh_initiator = g(VERIFY) + 4.0 * g(DH) + g(KEYGEN) + g(HKDF32) + g(MONTGOMERY);
        let x3dh_responder = 4.0 * g(DH) + g(HKDF32) + g(MONTGOMERY);
        // Session setup by halves: the key agreement, then the ratchet's
        // start and the first message (Alice: root KDF, her ratchet key,
        // DH with SPK_B, root KDF, sealing; Bob: root KDF, a DH ratchet
        // step, opening).
        let initiator_ratchet = g(HKDF96) + g(KEYGEN) + g(DH) + g(HKDF96) + sealing;
        let responder_ratchet = g(HKDF96) + dh_step + opening;
        let setup_initiator = x3dh_initiator + initiator_ratchet;
        let setup_responder = x3dh_responder + responder_ratchet;
        // tacit-v2: X3DH's work with PQXDH's longer KDF input, plus the
        // KEM prekey's signature check and encapsulation (Alice) and the
        // decapsulation (Bob), whose key is stored as its 64-byte seed and
        // so is expanded by key generation first.
        let pq_initiator = g(VERIFY)
            + g(pq::VERIFY_KEM)
            + 4.0 * g(DH)
            + g(KEYGEN)
            + g(MONTGOMERY)
            + g(pq::HKDF_PQ)
            + g(pq::KEM_ENCAPS);
        let pq_responder_expanded =
            4.0 * g(DH) + g(MONTGOMERY) + g(pq::HKDF_PQ) + g(pq::KEM_DECAPS);
        let pq_responder = pq_responder_expanded + g(pq::KEM_KEYGEN);
        let setup = setup_initiator + setup_responder;
        let skip = SKIPPED as f64 * 2.0 * g(HMAC) + opening;
        let seal = g(KEYGEN)
            + g(MONTGOMERY)
            + 2.0 * g(DH)
            + g(HKDF76)
            + g(HKDF44)
            + a(SND_SEAL)
            + a(CNT_SEAL);
        // Opening also decodes the sender's user key and verifies its
        // device certificate (PROTOCOL.md 14.4).
        let open = 2.0 * g(DH)
            + g(MONTGOMERY)
            + 2.0 * g(DECODE)
            + g(VERIFY)
            + g(HKDF76)
            + g(HKDF44)
            + a(SND_OPEN)
            + a(CNT_OPEN);
        Floors {
            x3dh_initiator,
            x3dh_responder,
            pq_initiator,
            pq_responder,
            setup_initiator,
            setup_responder,
            setup,
            v2_setup_initiator: pq_initiator + initiator_ratchet,
            v2_setup_responder: pq_responder + responder_ratchet,
            v2_setup_responder_expanded: pq_responder_expanded + responder_ratchet,
            v2_setup: pq_initiator + initiator_ratchet + pq_responder + responder_ratchet,
            chain,
            ping_pong: chain + dh_step,
            skip,
            seal,
            open,
        }
    }
}

struct Floors {
    x3dh_initiator: f64,
    x3dh_responder: f64,
    pq_initiator: f64,
    pq_responder: f64,
    setup_initiator: f64,
    setup_responder: f64,
    setup: f64,
    v2_setup_initiator: f64,
    v2_setup_responder: f64,
    /// With the decapsulation key already expanded (no key generation).
    v2_setup_responder_expanded: f64,
    v2_setup: f64,
    chain: f64,
    ping_pong: f64,
    skip: f64,
    seal: f64,
    open: f64,
}

/// Loading and storing a session, against one chain step of the same run.
fn print_load_store(rows: &[Row<'_>]) {
    println!("\n== session record ==\n");
    println!("| operation | median | min | / chain step (median) |\n| --- | ---: | ---: | ---: |");
    let fig = Figures {
        rows,
        by_min: false,
    };
    for name in [T_LOAD, T_LOAD_V1] {
        let row = rows.iter().find(|r| r.name == name).expect("row");
        println!(
            "| {name} | {} | {} | {:.2} |",
            fmt_ns(row.median()),
            fmt_ns(row.min()),
            fig.get(name) / fig.get(T_CHAIN)
        );
    }
}

fn print_table(rows: &[Row<'_>]) {
    println!(
        "\n== calibrated loop: per row, {ROUNDS} interleaved rounds of {BATCHES_PER_ROUND} batches of ~{} ms ==\n",
        BATCH_TARGET.as_millis()
    );
    println!("| primitive | median | min |\n| --- | ---: | ---: |");
    for r in rows
        .iter()
        .filter(|r| !r.name.starts_with("tacit") && !r.name.starts_with("vodozemac"))
    {
        println!(
            "| {} | {} | {} |",
            r.name,
            fmt_ns(r.median()),
            fmt_ns(r.min())
        );
    }
    for by_min in [false, true] {
        let fig = Figures { rows, by_min };
        let ours = fig.floors("");
        let crate_floor = fig.floors("crate ");
        println!(
            "\n{} | Tacit | vodozemac | Tacit / vodozemac | floor | Tacit / floor | floor, chacha20poly1305 crate | Tacit / that floor |",
            if by_min { "\nby minimum batch:\n\n| operation" } else { "\nby median batch:\n\n| operation" }
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let ops: Vec<(&str, &str, Option<&str>, f64, f64)> = vec![
            (
                "X3DH initiator, with OPK",
                T_X3DH_INIT,
                None,
                ours.x3dh_initiator,
                crate_floor.x3dh_initiator,
            ),
            (
                "X3DH responder, with OPK",
                T_X3DH_RESP,
                None,
                ours.x3dh_responder,
                crate_floor.x3dh_responder,
            ),
            (
                "session setup",
                T_SETUP,
                Some(V_SETUP),
                ours.setup,
                crate_floor.setup,
            ),
            (
                "session setup, initiator half",
                pq::T_SETUP_I,
                Some(pq::V_SETUP_I),
                ours.setup_initiator,
                crate_floor.setup_initiator,
            ),
            (
                "session setup, responder half",
                pq::T_SETUP_R,
                Some(pq::V_SETUP_R),
                ours.setup_responder,
                crate_floor.setup_responder,
            ),
            (
                "tacit-v2: PQXDH initiator, with OPK",
                pq::T_PQ_INIT,
                None,
                ours.pq_initiator,
                crate_floor.pq_initiator,
            ),
            (
                "tacit-v2: PQXDH responder, with OPK",
                pq::T_PQ_RESP,
                None,
                ours.pq_responder,
                crate_floor.pq_responder,
            ),
            (
                "tacit-v2: session setup",
                pq::T2_SETUP,
                Some(V_SETUP),
                ours.v2_setup,
                crate_floor.v2_setup,
            ),
            (
                "tacit-v2: session setup, initiator half",
                pq::T2_SETUP_I,
                Some(pq::V_SETUP_I),
                ours.v2_setup_initiator,
                crate_floor.v2_setup_initiator,
            ),
            (
                "tacit-v2: session setup, responder half",
                pq::T2_SETUP_R,
                Some(pq::V_SETUP_R),
                ours.v2_setup_responder,
                crate_floor.v2_setup_responder,
            ),
            (
                "tacit-v2: responder half, floor with the KEM key expanded",
                pq::T2_SETUP_R,
                Some(pq::V_SETUP_R),
                ours.v2_setup_responder_expanded,
                crate_floor.v2_setup_responder_expanded,
            ),
            (
                "chain step 256 B, OsRng",
                T_CHAIN,
                Some(V_CHAIN),
                ours.chain,
                crate_floor.chain,
            ),
            (
                "chain step 256 B, ChaCha20Rng",
                T_CHAIN_C,
                Some(V_CHAIN),
                ours.chain,
                crate_floor.chain,
            ),
            (
                "ping-pong message 256 B, OsRng",
                T_PING,
                Some(V_PING),
                ours.ping_pong,
                crate_floor.ping_pong,
            ),
            (
                "ping-pong message 256 B, ChaCha20Rng",
                T_PING_C,
                Some(V_PING),
                ours.ping_pong,
                crate_floor.ping_pong,
            ),
            (
                "decrypt after skipping 1000",
                T_SKIP,
                Some(V_SKIP),
                ours.skip,
                crate_floor.skip,
            ),
            (
                "sealed envelope seal",
                T_SEAL,
                None,
                ours.seal,
                crate_floor.seal,
            ),
            (
                "sealed envelope open",
                T_OPEN,
                None,
                ours.open,
                crate_floor.open,
            ),
        ];
        for (label, t, v, floor, cfloor) in ops {
            let tv = fig.get(t);
            let (vs, ratio) = match v {
                Some(v) => {
                    let vv = fig.get(v);
                    (fmt_ns(vv), format!("{:.2}x", tv / vv))
                }
                None => ("n/a".into(), "n/a".into()),
            };
            println!(
                "| {label} | {} | {vs} | {ratio} | {} | {:.2}x | {} | {:.2}x |",
                fmt_ns(tv),
                fmt_ns(floor),
                tv / floor,
                fmt_ns(cfloor),
                tv / cfloor
            );
        }
    }
}

fn print_sizes(f: &Fixture, o: &Olm) {
    println!("\n== serialized session after 100 messages each way ==\n");
    println!("| traffic | Tacit `to_bytes` (Alice / Bob) | vodozemac pickle JSON (Alice / Bob) | vodozemac encrypted pickle (Alice / Bob) |");
    println!("| --- | ---: | ---: | ---: |");
    for ping_pong in [false, true] {
        let (mut ta, mut tb) = f.established();
        let (mut va, mut vb) = o.established();
        let pt = [0x42; PLAINTEXT_LEN];
        if ping_pong {
            for _ in 0..100 {
                tb.decrypt(&ta.encrypt(&pt, &mut OsRng).unwrap(), &mut OsRng)
                    .unwrap();
                ta.decrypt(&tb.encrypt(&pt, &mut OsRng).unwrap(), &mut OsRng)
                    .unwrap();
                vb.decrypt(&va.encrypt(pt).unwrap()).unwrap();
                va.decrypt(&vb.encrypt(pt).unwrap()).unwrap();
            }
        } else {
            for _ in 0..100 {
                tb.decrypt(&ta.encrypt(&pt, &mut OsRng).unwrap(), &mut OsRng)
                    .unwrap();
                vb.decrypt(&va.encrypt(pt).unwrap()).unwrap();
            }
            for _ in 0..100 {
                ta.decrypt(&tb.encrypt(&pt, &mut OsRng).unwrap(), &mut OsRng)
                    .unwrap();
                va.decrypt(&vb.encrypt(pt).unwrap()).unwrap();
            }
        }
        let key = [7u8; 32];
        println!(
            "| {} | {} B / {} B | {} B / {} B | {} B / {} B |",
            if ping_pong {
                "alternating"
            } else {
                "100 one way, then 100 back"
            },
            ta.to_bytes().len(),
            tb.to_bytes().len(),
            olm_pickle_json(&va).len(),
            olm_pickle_json(&vb).len(),
            va.pickle().encrypt(&key).len(),
            vb.pickle().encrypt(&key).len(),
        );
    }
}

/// Tacit's serialized session in states with skipped keys, up to the cap.
fn print_skipped_sizes(f: &Fixture) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let pt = [0x42; PLAINTEXT_LEN];
    // `deliver(n)`: which of the 100 messages of a batch arrive.
    let batch = |from: &mut Ratchet,
                 to: &mut Ratchet,
                 count: u32,
                 deliver: &dyn Fn(u32) -> bool,
                 rng: &mut ChaCha20Rng| {
        for i in 0..count {
            let m = from.encrypt(&pt, rng).unwrap();
            if deliver(i) {
                to.decrypt(&m, rng).unwrap();
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
    let (alice, bob) = f.setup(&mut rng);
    report("after X3DH and the first message", &alice, &bob);

    let (mut alice, mut bob) = f.setup(&mut rng);
    batch(&mut alice, &mut bob, 100, &|_| true, &mut rng);
    batch(&mut bob, &mut alice, 100, &|_| true, &mut rng);
    report("100 each way, all delivered", &alice, &bob);

    let (mut alice, mut bob) = f.setup(&mut rng);
    for _ in 0..100 {
        batch(&mut alice, &mut bob, 1, &|_| true, &mut rng);
        batch(&mut bob, &mut alice, 1, &|_| true, &mut rng);
    }
    report("100 each way, ping-pong, all delivered", &alice, &bob);

    let (mut alice, mut bob) = f.setup(&mut rng);
    batch(&mut alice, &mut bob, 100, &|i| i % 10 != 0, &mut rng);
    batch(&mut bob, &mut alice, 100, &|i| i % 10 != 0, &mut rng);
    report(
        "100 each way, every 10th lost (10 skipped keys)",
        &alice,
        &bob,
    );

    let (mut alice, mut bob) = f.setup(&mut rng);
    batch(&mut alice, &mut bob, 100, &|i| i == 99, &mut rng);
    batch(&mut bob, &mut alice, 100, &|i| i == 99, &mut rng);
    report(
        "100 each way, only the last delivered (99 skipped)",
        &alice,
        &bob,
    );

    // The cap: two chains of 1000 skipped keys each (MAX_SKIP = 1000).
    let (mut alice, mut bob) = f.setup(&mut rng);
    batch(&mut alice, &mut bob, 1001, &|i| i == 1000, &mut rng);
    batch(&mut bob, &mut alice, 1, &|_| true, &mut rng);
    batch(&mut alice, &mut bob, 1001, &|i| i == 1000, &mut rng);
    report("at the cap: 2000 skipped keys", &alice, &bob);
}

fn main() {
    let fixture = Box::leak(Box::new(Fixture::new()));
    let olm = Box::leak(Box::new(Olm::new()));
    let primitives = Box::leak(Box::new(Primitives::new()));
    let kem = Box::leak(Box::new(pq::KemPrimitives::new(&primitives.fixture)));
    let mut rows = primitive_rows(primitives);
    rows.extend(pq::primitive_rows(primitives, kem));
    rows.extend(tacit_rows(fixture));
    rows.extend(pq::tacit_rows(fixture));
    rows.extend(olm_rows(olm));
    rows.extend(pq::olm_rows(olm));

    let args: Vec<String> = std::env::args().collect();
    let is_bench = args.iter().any(|a| a == "--bench");
    if let Ok(filter) = std::env::var("TACIT_BENCH_PROFILE") {
        let iters = std::env::var("TACIT_BENCH_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        for r in rows.iter_mut().filter(|r| r.name.contains(filter.as_str())) {
            eprintln!("profiling {} x {iters}", r.name);
            (r.measure)(iters);
        }
        return;
    }
    if !is_bench {
        // `cargo test --benches`: each measurement once.
        for r in rows.iter_mut() {
            (r.measure)(1);
        }
        println!("{} measurements ran once", rows.len());
        return;
    }
    if std::env::var_os("TACIT_BENCH_TABLE_ONLY").is_none() {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c, &mut rows);
        c.final_summary();
    }
    if std::env::var_os("TACIT_BENCH_NO_TABLE").is_none() {
        measure_all(&mut rows);
        print_table(&rows);
        print_load_store(&rows);
        print_sizes(fixture, olm);
        print_skipped_sizes(fixture);
    }
}
