#!/usr/bin/env bash
# Where da3's CPU time goes, by kernel family: `perf record` (DWARF call graphs) over one
# `da3-bench` run, then the self time of the kernel families (perf_families.py; self time,
# because unwinding from Rayon workers does not reach the da3 caller).
#
# Usage: tools/bench/profile.sh DA3_BENCH WEIGHTS_DIR [MODEL [VIEWS [HxW [THREADS]]]]
#   (defaults: da3-small 1 378x504 2). Needs `perf` (linux-perf) and
#   /proc/sys/kernel/perf_event_paranoid <= 2 (profiling your own processes).
# Prints the da3-bench JSON line, then one line per family: share of all samples.
set -euo pipefail
bin=$1 dir=$2 model=${3:-da3-small} views=${4:-1} size=${5:-378x504} threads=${6:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RAYON_NUM_THREADS=$threads perf record -q -F 99 --call-graph dwarf,16384 -o "$tmp/perf.data" -- \
  "$bin" --model "$model" --weights "$dir/$model.weights.safetensors" --views "$views" --size "$size" \
  --iters 2 --threads "$threads" >"$tmp/out.json" 2>"$tmp/record.log" || { cat "$tmp/record.log"; exit 1; }
cat "$tmp/out.json"
perf report -q -i "$tmp/perf.data" --children --sort symbol --stdio --percent-limit 0.3 -g none 2>/dev/null \
  | python3 "$(dirname "$0")/perf_families.py"
