#!/usr/bin/env bash
# What keeping the model resident saves: the same one-image prediction as a one-shot
# `da3 infer` process (start, load, warm-up, inference, write) and as a request to a running
# `da3 serve` (decode, inference, npz response), measured in one run, alternating, and the
# ratio of the medians printed.
#
# Usage: benches/serve_latency.sh DA3_BINARY CONFIG WEIGHTS IMAGE [ROUNDS [PROCESS_RES]]
#   (defaults: 5 rounds, process_res 504). Needs curl and python3. The server gets one
#   warm-up request first (its first pass builds the per-resolution caches, as the one-shot
#   process does inside its own time). Set RAYON_NUM_THREADS to fix the thread count.
set -euo pipefail
bin=$1 config=$2 weights=$3 image=$4 rounds=${5:-5} res=${6:-504}
tmp=$(mktemp -d)
"$bin" serve --addr 127.0.0.1:0 -m "$config" -w "$weights" --quiet >"$tmp/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$tmp/serve.log" 2>/dev/null && break; sleep 0.2; done
url=$(sed -n 's/.*listening on //p' "$tmp/serve.log" | head -1)
[ -n "$url" ] || { cat "$tmp/serve.log"; exit 1; }
request() { curl -sf -o "$tmp/r.npz" -w '%{time_total}\n' -F "image=@$image" -F "process_res=$res" "$url/v1/predict"; }
request >/dev/null # warm-up
: >"$tmp/cli" ; : >"$tmp/srv"
for _ in $(seq "$rounds"); do
  s=$(date +%s.%N)
  "$bin" infer "$image" -m "$config" -w "$weights" --process-res "$res" --out "$tmp/out" --quiet
  e=$(date +%s.%N)
  awk "BEGIN { print $e - $s }" >>"$tmp/cli"
  request >>"$tmp/srv"
done
python3 - "$tmp/cli" "$tmp/srv" <<'PY'
import statistics, sys
cli = [float(x) for x in open(sys.argv[1])]
srv = [float(x) for x in open(sys.argv[2])]
mc, ms = statistics.median(cli), statistics.median(srv)
print(f"one-shot da3 infer: median {mc*1000:.0f} ms (min {min(cli)*1000:.0f}) over {len(cli)} runs")
print(f"da3 serve request:  median {ms*1000:.0f} ms (min {min(srv)*1000:.0f}) over {len(srv)} requests")
print(f"request / one-shot: {ms/mc:.2f}")
PY
