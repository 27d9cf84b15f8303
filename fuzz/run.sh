#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each; fails on any crash.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=$(cargo +nightly fuzz list)
for target in $targets; do
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true; fi
  echo "== $target ($seconds s)"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096 2>&1 | tail -n 3
done
echo "all fuzz targets ran $seconds s each without a finding"
