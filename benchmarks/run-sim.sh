#!/usr/bin/env bash
# Runs the simulator's measurements behind BENCHMARKS.md, one JSON line each.
# Usage: bash benchmarks/run-sim.sh [quick|soak|large|small-datagrams|scale|latency|all] > benchmarks/sim-results.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p chitchat-core --features sim --example simulate
sim=./target/release/examples/simulate
what=${1:-quick}
if [[ $what == quick || $what == all ]]; then
  $sim --json --nodes 100
  $sim --json --nodes 1000
  $sim --json --nodes 1000 --loss 0.05
  $sim --json --nodes 1000 --keys-per-node 20 --no-crash
  $sim --json --nodes 1000 --no-crash --stall-rounds 3 --soak-rounds 30
  $sim --json --nodes 1000 --no-crash --blackout-rounds 3 --soak-rounds 30
fi
if [[ $what == large || $what == all ]]; then
  $sim --json --nodes 3000 --max-datagram 1400 --max-rounds 300
  $sim --json --nodes 5000 --max-datagram 1400 --max-rounds 300
fi
if [[ $what == soak || $what == all ]]; then
  $sim --json --nodes 1000 --loss 0.05 --no-crash --soak-rounds 1000
  $sim --json --nodes 1000 --loss 0.20 --no-crash --soak-rounds 1000
fi
if [[ $what == small-datagrams || $what == all ]]; then
  $sim --json --nodes 1000 --max-datagram 1400 --max-rounds 200
  $sim --json --nodes 1000 --max-datagram 1400 --max-rounds 200 --phi-threshold 8
fi
if [[ $what == scale || $what == all ]]; then
  # Issue 11's table (protocol version 4): 1,400-byte datagrams, long soaks.
  $sim --json --nodes 1000 --max-datagram 1400 --soak-rounds 1000
  $sim --json --nodes 1000 --max-datagram 1400 --soak-rounds 1000 --loss 0.05
  $sim --json --nodes 1000 --soak-rounds 1000
  $sim --json --nodes 1000 --soak-rounds 1000 --loss 0.2
  $sim --json --nodes 3000 --max-datagram 1400 --soak-rounds 300
fi
if [[ $what == latency || $what == all ]]; then
  # Round trips longer than the gossip interval (1 s rounds): answers come late.
  for latency in 300 600 900 1500; do
    $sim --json --nodes 100 --latency-ms "$latency" --soak-rounds 200
  done
fi
