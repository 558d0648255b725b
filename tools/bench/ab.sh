#!/usr/bin/env bash
# A/B of two da3-bench command lines in one run: alternates them ROUNDS times (each a fresh
# process: load, warm-up, ITERS timed passes, in its own high-priority autogroup when run as
# root), then prints each side's min and median per-pass time and peak RSS over all passes.
# For changes that have no reference side (an allocator setting, a kernel against the previous
# binary); compare.py is the tool against the reference.
#
# Usage: tools/bench/ab.sh "CMD_A" "CMD_B"   (env: MODEL, VIEWS, ITERS, ROUNDS, THREADS, WEIGHTS_DIR)
# e.g.   tools/bench/ab.sh "$T/release/da3-bench --default-malloc" "$T/release/da3-bench"
set -euo pipefail
model=${MODEL:-da3-small} views=${VIEWS:-1} iters=${ITERS:-5} rounds=${ROUNDS:-4} threads=${THREADS:-2}
dir=${WEIGHTS_DIR:-$HOME/.cache/da3-real-goldens}
run() { # command line (word-split on purpose) -> one JSON line
  local cmd=($1 --model "$model" --weights "$dir/$model.weights.safetensors" --views "$views" --iters "$iters" --threads "$threads")
  if [ "$(id -u)" = 0 ]; then
    setsid bash -c 'echo -20 > /proc/self/autogroup; exec "$@"' _ "${cmd[@]}" 2>/dev/null
  else
    "${cmd[@]}" 2>/dev/null
  fi
}
for r in $(seq "$rounds"); do
  for side in A B; do
    if [ "$side" = A ]; then cmd=$1; else cmd=$2; fi
    echo "$side $(run "$cmd")"
  done
done | python3 -c '
import json, sys
times, rss = {"A": [], "B": []}, {"A": 0, "B": 0}
for line in sys.stdin:
    side, row = line.split(" ", 1)
    d = json.loads(row)
    times[side] += d["times_s"]
    rss[side] = max(rss[side], d["peak_rss_kb"] // 1024)
for side, label in (("A", sys.argv[1]), ("B", sys.argv[2])):
    t = sorted(times[side])
    print(f"{side}: min {t[0] * 1e3:.0f} ms, median {t[len(t) // 2] * 1e3:.0f} ms over {len(t)} passes, peak RSS {rss[side]} MB  ({label})")
a, b = sorted(times["A"]), sorted(times["B"])
print(f"B / A: median {b[len(b) // 2] / a[len(a) // 2]:.3f}, min {b[0] / a[0]:.3f}")
' "$1" "$2"
