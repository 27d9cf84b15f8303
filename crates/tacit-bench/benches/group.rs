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
//! ChaCha20-Poly1305 of the padded content. Nothing here is a timed
//! assertion.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
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
    /// What the signature covers: the context and the message body.
    signed: Vec<u8>,
    padded_len: usize,
}

impl Floor {
    fn new(message_len: usize, padded_len: usize) -> Self {
        Self {
            signing: IdentityKeyPair::from_seed(&[3; 32]),
            chain_key: SecretKey32::from_bytes([4; 32]),
            signed: vec![0x5a; SIGNATURE_CONTEXT.len() + message_len - 66],
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
        black_box(self.signing.sign(&self.signed));
    }

    fn decrypt(&self, signature: &tacit::keys::Signature, sealed: &[u8], tag: &[u8; 16]) {
        self.signing
            .public_key()
            .verify(&self.signed, signature)
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

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let content = Content::new_with_rng(
        ContentKind::Text,
        vec![0x61; PLAINTEXT_LEN],
        1_700_000_000_000,
        &mut rng,
    )
    .unwrap();
    let plaintext = vec![0x61u8; PLAINTEXT_LEN];

    let mut tacit_out = OutboundChain::new([1; 32], [2; 32], &mut rng);
    let tacit_in =
        InboundChain::from_distribution(&tacit_out.distribution(), ChainConfig::default());
    let first = tacit_out.encrypt(&content).unwrap().to_bytes();
    let padded_len = content.to_padded().unwrap().len();

    let mut megolm_out = GroupSession::new(SessionConfig::version_1());
    let mut megolm_in =
        InboundGroupSession::new(&megolm_out.session_key(), SessionConfig::version_1());
    let megolm_first = megolm_out.encrypt(&plaintext).to_bytes();

    let floor = Floor::new(first.len(), padded_len);
    let floor_signature = floor.signing.sign(&floor.signed);
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

    let mut group = c.benchmark_group("group encrypt 256 B");
    group.bench_function("tacit", |b| {
        b.iter(|| black_box(tacit_out.encrypt(&content).unwrap().to_bytes()))
    });
    group.bench_function("vodozemac megolm", |b| {
        b.iter(|| black_box(megolm_out.encrypt(&plaintext).to_bytes()))
    });
    group.bench_function("floor", |b| b.iter(|| floor.encrypt()));
    group.finish();

    let mut group = c.benchmark_group("group decrypt 256 B");
    group.bench_function("tacit", |b| {
        b.iter_batched_ref(
            || tacit_in.clone(),
            |chain| black_box(chain.decrypt(&first).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("vodozemac megolm", |b| {
        b.iter(|| {
            let message = MegolmMessage::from_bytes(&megolm_first).unwrap();
            black_box(megolm_in.decrypt(&message).unwrap())
        })
    });
    group.bench_function("floor", |b| {
        b.iter(|| floor.decrypt(&floor_signature, &floor_sealed, &floor_tag))
    });
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
