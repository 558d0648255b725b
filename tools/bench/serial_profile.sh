#!/usr/bin/env bash
# The serial part of a da3 CPU pass: work the calling (main) thread does while the rayon pool
# waits. `perf record` (DWARF call graphs) over one `da3-bench` run, then the main thread's
# samples inside `predict_with`, grouped by da3 caller and burn-flex op (serial_profile.py).
# The numbers behind README "What made the CPU path faster" (serial seconds per pass, shares).
#
# Usage: tools/bench/serial_profile.sh DA3_BENCH WEIGHTS_DIR [MODEL [VIEWS [HxW [THREADS]]]]
#   (defaults: da3-small 1 378x504 2). Needs `perf` and perf_event_paranoid <= 2.
set -euo pipefail
bin=$1 dir=$2 model=${3:-da3-small} views=${4:-1} size=${5:-378x504} threads=${6:-2}
iters=2 rate=199
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RAYON_NUM_THREADS=$threads perf record -q -F $rate --call-graph dwarf,32768 -o "$tmp/perf.data" -- \
  "$bin" --model "$model" --weights "$dir/$model.weights.safetensors" --views "$views" --size "$size" \
  --iters $iters --threads "$threads" >"$tmp/out.json" 2>"$tmp/record.log" || { cat "$tmp/record.log"; exit 1; }
cat "$tmp/out.json"
pid=$(perf report -i "$tmp/perf.data" --no-children --sort pid --stdio 2>/dev/null \
  | sed -n 's/.* \([0-9][0-9]*\):da3-bench.*/\1/p' | sort -n | head -1) # the main thread's tid = pid
perf script -i "$tmp/perf.data" --tid "$pid" 2>/dev/null \
  | python3 "$(dirname "$0")/serial_profile.py" --rate $rate --passes $((iters + 1))
