#!/usr/bin/env bash
# Builds pkg/ (or $1): the wasm module, its JavaScript glue and TypeScript
# definitions (wasm-bindgen --target web), and the IndexedDB storage.
# wasm-bindgen-cli must be the exact version of the wasm-bindgen crate
# (pinned in Cargo.toml); it is installed from crates.io when missing
# (about 6 minutes of CPU). TACIT_WASM_FEATURES=perf adds the workloads
# of docs/PERFORMANCE.md (browser/perf.mjs). The profile wasm-release
# (the workspace's Cargo.toml) is release with link-time optimisation, the
# crates of the hot paths at opt-level 3 and the rest built for size. The
# glue is generated without the module's name section (function names,
# about 36 KB gzipped) and producers section: a stack trace names functions
# by index.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/pkg}"
version="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' "$here/Cargo.toml")"
test -n "$version"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  cargo install wasm-bindgen-cli --version "$version"
fi
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
cd "$here/../.."
cargo build -p tacit-wasm --target wasm32-unknown-unknown --profile wasm-release --locked \
  --features "${TACIT_WASM_FEATURES:-}"
target_dir="${CARGO_TARGET_DIR:-target}"
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$out" \
  "$target_dir/wasm32-unknown-unknown/wasm-release/tacit_wasm.wasm"
cp "$here/js/idb-storage.js" "$here/js/idb-storage.d.ts" "$out/"
