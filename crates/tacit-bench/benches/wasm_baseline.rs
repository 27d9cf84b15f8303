#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The native side of the WebAssembly comparison: the workloads of
//! `tacit_wasm::perf` (session setup, chain step, ping-pong) as the
//! browser runs them (`crates/tacit-wasm/browser/perf.mjs`), natively:
//!
//! ```text
//! cargo bench -p tacit-bench --bench wasm_baseline
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use tacit_wasm::perf::Workloads;

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm baseline (native)");
    let setup = Workloads::new().unwrap();
    group.bench_function("session-setup", |b| {
        b.iter(|| setup.session_setup().unwrap())
    });
    let mut chain = Workloads::new().unwrap();
    group.bench_function("chain-step", |b| b.iter(|| chain.chain_step().unwrap()));
    let mut turns = Workloads::new().unwrap();
    group.bench_function("ping-pong", |b| b.iter(|| turns.ping_pong().unwrap()));
    group.finish();
}

criterion_group!(baseline, benches);
criterion_main!(baseline);
