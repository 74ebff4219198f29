#!/usr/bin/env bash
# Runs fuzz targets on the stable toolchain, one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 seconds, every target)
#
# Each target starts from the committed seeds (fuzz/seeds/<target>) and the
# local corpus (fuzz/corpus/<target>, not committed), where new inputs go.
# RUSTC_BOOTSTRAP=1 is set on the cargo-fuzz commands only: set for a whole
# shell, it would make every other cargo command rebuild everything. A crash
# leaves its input in fuzz/artifacts/<target>/ and fails the script.
#
# CPU per input is bounded by libFuzzer's -timeout (seconds): an input that
# runs longer is a crash (a "timeout-" artifact). The datagram targets handle
# one datagram, or a few dozen, on a prebuilt node: a few milliseconds each,
# so 2 s is far above any legitimate input even on a loaded machine;
# protocol_ops simulates minutes of a small cluster per input, so it gets 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(decode handle_datagram hostile_messages protocol_ops sealed_datagram stream_frames)
fi

RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none
for target in "${targets[@]}"; do
    case "$target" in
        protocol_ops) timeout=10 ;;
        *) timeout=2 ;;
    esac
    echo "== fuzz $target for ${seconds}s (timeout ${timeout}s per input)"
    mkdir -p "fuzz/corpus/$target"
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
