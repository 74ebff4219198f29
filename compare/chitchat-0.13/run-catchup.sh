#!/usr/bin/env bash
# Runs the large-state catch-up after a restart (10 nodes, the last one
# restarted) for four workloads, REPEAT times each, one run at a time: chitchat
# 0.13 first, then our `catchup_bench` if it has been built, with the same flags
# (both time out after 300 s by default). Logs go to $OUT (default
# /tmp/chitchat-compare), the JSON lines to $OUT/catchup.jsonl.
# Usage: bash compare/chitchat-0.13/run-catchup.sh [REPEAT]   (from anywhere)
#
# No `--v1` runs: chitchat 0.13 has no default `ChitchatConfig` outside its
# tests, so every user picks `protocol_version`, and its doc says it "MUST stay
# `V0` until every node in the cluster runs a version able to decode the newer
# format"; V0 is what a cluster upgraded to 0.13 runs. V1 only changes the
# digest's encoding (zstd); the deltas that carry the state being caught up are
# zstd-compressed in both versions.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEAT=${1:-3}
OUT=${OUT:-/tmp/chitchat-compare}
mkdir -p "$OUT"
(cd compare/chitchat-0.13 && cargo build --release)
WORKLOADS=(
  "--keys 100 --value-bytes 100"
  "--keys 1000 --value-bytes 1000"
  "--keys 1000 --value-bytes 1000 --compressible"
  "--keys 10000 --value-bytes 100"
)
for workload in "${WORKLOADS[@]}"; do
  name=$(echo "$workload" | tr -d '-' | tr ' ' '_')
  for run in $(seq 1 "$REPEAT"); do
    echo "== chitchat 0.13 catchup $workload run=$run ($(uptime))"
    # shellcheck disable=SC2086 # $workload is a list of flags
    compare/chitchat-0.13/target/release/chitchat-013-compare catchup $workload \
      | tee "$OUT/013-catchup-$name-$run.log" | grep '^{' >> "$OUT/catchup.jsonl" \
      || echo "chitchat 0.13 catchup $workload run=$run failed"
    if [ -x ./target/release/examples/catchup_bench ]; then
      echo "== ours catchup $workload run=$run ($(uptime))"
      # The same flags, plus `--json`: ours prints its JSON line only then.
      # shellcheck disable=SC2086
      ./target/release/examples/catchup_bench $workload --json \
        | tee "$OUT/ours-catchup-$name-$run.log" | grep '^{' >> "$OUT/catchup.jsonl" \
        || echo "ours catchup $workload run=$run failed"
    fi
  done
done
