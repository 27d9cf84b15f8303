#!/usr/bin/env bash
# Keeps what fuzzing found: merges fuzz/corpus/TARGET into the committed,
# minimized corpus fuzz/corpus-min/TARGET. libFuzzer's -merge=1 adds only
# the inputs that reach coverage the seeds, the regressions and corpus-min
# do not already reach. run.sh replays corpus-min on every run, so a short
# run (CI) starts where the long runs ended.
#
#   fuzz/keep.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
if [ "$#" -gt 0 ]; then targets="$*"; else targets=$(cargo +nightly fuzz list); fi
mkdir -p target
for target in $targets; do
  [ -d "corpus/$target" ] || { echo "$target: no corpus/$target, nothing to keep"; continue; }
  mkdir -p "corpus-min/$target"
  # Start from everything already committed, so only new coverage is added.
  work=$(mktemp -d)
  for dir in seeds regressions corpus-min; do
    if [ -d "$dir/$target" ]; then cp "$dir/$target"/. "$work" -r; fi
  done
  ls "$work" | sort >"$work.before"
  before=$(find "corpus-min/$target" -type f | wc -l)
  cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
    -merge=1 -max_len=4096 -timeout=60 -rss_limit_mb=2048 >"target/keep-$target.log" 2>&1 \
    || { tail -n 20 "target/keep-$target.log"; rm -rf "$work" "$work.before"; exit 1; }
  comm -13 "$work.before" <(ls "$work" | sort) | while read -r name; do
    mv "$work/$name" "corpus-min/$target/$name"
  done
  rm -rf "$work" "$work.before"
  after=$(find "corpus-min/$target" -type f | wc -l)
  echo "$target: corpus-min $before -> $after inputs ($(du -sh "corpus-min/$target" | cut -f1))"
done
