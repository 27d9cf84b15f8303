#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Tacit's HMAC-SHA256 chain step and HKDF-SHA256 (over a SHA-256 state
//! wiped on drop, `crates/tacit/src/crypto.rs`) against the same functions
//! from the RustCrypto `hmac` and `hkdf` crates, whose keyed states are not
//! wiped, and from orion, whose are; one run, so the ratios compare like
//! with like:
//!
//! ```text
//! cargo bench -p tacit-bench --bench kdf
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hmac::digest::{FixedOutput, KeyInit, Update};
use tacit::hazmat;
use tacit::keys::SecretKey32;

const ROOT_INFO: &[u8] = b"tacit/ratchet/root/v1";

/// `KDF_CK` with the RustCrypto HMAC: one keyed state, cloned per message.
fn rustcrypto_chain_step(chain_key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(chain_key);
    let keyed = <hmac::Hmac<sha2::Sha256> as KeyInit>::new((&block).into());
    let mut message = keyed.clone();
    message.update(&[0x01]);
    let mut next = keyed;
    next.update(&[0x02]);
    (
        message.finalize_fixed().into(),
        next.finalize_fixed().into(),
    )
}

/// `KDF_CK` with orion's HMAC.
fn orion_chain_step(chain_key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    use orion::hazardous::mac::hmac::sha256::{HmacSha256, SecretKey};
    let key = SecretKey::from_slice(chain_key).unwrap();
    let mut out = ([0u8; 32], [0u8; 32]);
    out.0.copy_from_slice(
        HmacSha256::hmac(&key, &[0x01])
            .unwrap()
            .unprotected_as_bytes(),
    );
    out.1.copy_from_slice(
        HmacSha256::hmac(&key, &[0x02])
            .unwrap()
            .unprotected_as_bytes(),
    );
    out
}

fn benches(c: &mut Criterion) {
    let chain_key = SecretKey32::from_bytes([0x17; 32]);
    let bytes = *chain_key.as_bytes();
    let salt = [0x42u8; 32];

    let mut group = c.benchmark_group("chain step");
    group.bench_function("rustcrypto hmac (before)", |b| {
        b.iter(|| rustcrypto_chain_step(black_box(&bytes)))
    });
    group.bench_function("tacit (wiped)", |b| {
        b.iter(|| hazmat::ratchet_chain_step(black_box(&chain_key)))
    });
    group.bench_function("orion (wiped)", |b| {
        b.iter(|| orion_chain_step(black_box(&bytes)))
    });
    group.finish();

    let mut group = c.benchmark_group("hkdf 96");
    group.bench_function("rustcrypto hkdf (before)", |b| {
        b.iter(|| {
            let mut okm = [0u8; 96];
            hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), black_box(&bytes))
                .expand(ROOT_INFO, &mut okm)
                .unwrap();
            okm
        })
    });
    group.bench_function("tacit (wiped)", |b| {
        b.iter(|| hazmat::hkdf_sha256::<96>(&salt, black_box(&bytes), ROOT_INFO))
    });
    group.bench_function("orion (wiped)", |b| {
        b.iter(|| {
            let mut okm = [0u8; 96];
            orion::hazardous::kdf::hkdf::sha256::derive_key(
                &salt,
                black_box(&bytes),
                Some(ROOT_INFO),
                &mut okm,
            )
            .unwrap();
            okm
        })
    });
    group.finish();
}

criterion_group!(kdf, benches);
criterion_main!(kdf);
