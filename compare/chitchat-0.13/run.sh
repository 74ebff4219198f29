#!/usr/bin/env bash
# Runs the side-by-side loopback measurements (ours, then chitchat 0.13) for the
# given cluster sizes, REPEAT times each, one run at a time. Logs go to $OUT
# (default /tmp/chitchat-compare), the JSON lines to $OUT/results.jsonl.
# Usage: bash compare/chitchat-0.13/run.sh [REPEAT] [SIZES...]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEAT=${1:-2}
shift || true
SIZES=${*:-50 100 200 300}
OUT=${OUT:-/tmp/chitchat-compare}
mkdir -p "$OUT"
cargo build --release -p chitchat-tokio --example loopback_bench
(cd compare/chitchat-0.13 && cargo build --release)
for n in $SIZES; do
  for run in $(seq 1 "$REPEAT"); do
    echo "== ours n=$n run=$run ($(uptime))"
    ./target/release/examples/loopback_bench --nodes "$n" --steady-secs 10 --timeout-secs 120 --crash --json \
      | tee "$OUT/ours-$n-$run.log" | grep '^{' >> "$OUT/results.jsonl" || echo "ours n=$n run=$run failed"
    echo "== chitchat 0.13 n=$n run=$run ($(uptime))"
    compare/chitchat-0.13/target/release/chitchat-013-compare cluster --nodes "$n" --steady-secs 10 --timeout-secs 120 --crash \
      | tee "$OUT/013-$n-$run.log" | grep '^{' >> "$OUT/results.jsonl" || echo "chitchat 0.13 n=$n run=$run failed"
  done
done
