#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, with its seeds
# (fuzz/seeds/TARGET), the minimized corpus of earlier long runs
# (fuzz/corpus-min/TARGET), the inputs of past findings
# (fuzz/regressions/TARGET) and its dictionary (fuzz/dicts/TARGET.dict), and
# fails on any crash, leak, timeout or out-of-memory. Prints, per target,
# the executions and libFuzzer's final coverage (cov, ft) and corpus.
# New inputs accumulate in fuzz/corpus/TARGET (not committed); findings in
# fuzz/artifacts/TARGET. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then targets="$*"; else targets=$(cargo +nightly fuzz list); fi
logs="target/run-logs"
mkdir -p "$logs"
# Known false leak reports (see the file).
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

cargo +nightly fuzz build >"$logs/build.log" 2>&1 || { tail -n 60 "$logs/build.log"; exit 1; }

failed=()
printf '%-20s %10s %8s %8s %12s  %s\n' target runs cov ft corpus result
for target in $targets; do
  mkdir -p "corpus/$target"
  dirs=("corpus/$target")
  for kept in seeds corpus-min regressions; do
    if [ -d "$kept/$target" ]; then dirs+=("$kept/$target"); fi
  done
  opts=(-max_total_time="$seconds" -max_len=4096 -timeout=60 -rss_limit_mb=2048 -print_final_stats=1)
  if [ -f "dicts/$target.dict" ]; then opts+=(-dict="dicts/$target.dict"); fi
  log="$logs/$target.log"
  result=ok
  if ! cargo +nightly fuzz run "$target" "${dirs[@]}" -- "${opts[@]}" >"$log" 2>&1; then
    result=FAILED
    failed+=("$target")
  fi
  stats=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -n 1 || true)
  runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")
  corp=$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$stats")
  printf '%-20s %10s %8s %8s %12s  %s\n' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
  if [ "$result" = FAILED ]; then
    grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "$log" | head -n 20 || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (logs in fuzz/$logs, inputs in fuzz/artifacts)"
  exit 1
fi
echo "every target ran $seconds s without a finding"
