#!/usr/bin/env bash
# Where the CPU pool waits: `perf record` (frame-pointer call stacks, 997 Hz per running
# thread) over one `da3-bench` run, then the time split into bins of BIN_SAMPLES sample
# periods (default 2, i.e. ~2 ms); a bin in which only one thread ran is idle time of the
# other core, attributed to what that thread was running (idle_profile.py). The answer to
# "da3 keeps 1.87 of 2 cores busy, the reference 1.99: where is the rest?".
#
# Usage: tools/bench/idle_profile.sh DA3_BENCH WEIGHTS_DIR [MODEL [VIEWS [HxW [THREADS]]]]
#   (defaults: da3-small 1 378x504 2). Needs `perf` and perf_event_paranoid <= 2. Bins of one
#   sample period read sampling jitter as idleness; 2 is the shortest that does not. The
#   window runs from the first to the last GEMM sample, so it includes the warm-up pass (its
#   one-time tables show up as serial work).
set -euo pipefail
bin=$1 dir=$2 model=${3:-da3-small} views=${4:-1} size=${5:-378x504} threads=${6:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RAYON_NUM_THREADS=$threads perf record -q -F 997 -g -o "$tmp/perf.data" -- \
  "$bin" --model "$model" --weights "$dir/$model.weights.safetensors" --views "$views" --size "$size" \
  --iters 4 --threads "$threads" >"$tmp/out.json" 2>"$tmp/record.log" || { cat "$tmp/record.log"; exit 1; }
cat "$tmp/out.json"
perf script -i "$tmp/perf.data" -F tid,time,ip,sym 2>/dev/null \
  | python3 "$(dirname "$0")/idle_profile.py" --rate 997 --bin-samples "${BIN_SAMPLES:-2}"
