#!/usr/bin/env bash
# Peak memory of `da3 serve` under a budget: CONCURRENT clients each send one request of
# VIEWS copies of IMAGE to a server started with `--max-memory BUDGET --max-queued QUEUED`,
# and the script prints each answer (status, chunked passes), the server's RSS after start
# and its peak RSS (VmHWM from /proc) at the end.
#
# What it shows: a request whose views do not fit one pass under the budget is chunked
# (x-da3-passes), and concurrent requests beyond --max-queued are refused with 503 instead
# of each holding its body and decoded views while waiting.
#
# Usage: benches/serve_memory.sh DA3_BINARY CONFIG WEIGHTS IMAGE VIEWS BUDGET
#          [PROCESS_RES [CONCURRENT [QUEUED]]]
#   (defaults: process_res 504, 1 client, --max-queued 8). Linux only (/proc); needs curl
#   and python3. Example (the README's row): ... photo.jpg 16 1GiB 504 1
set -euo pipefail
bin=$1 config=$2 weights=$3 image=$4 views=$5 budget=$6 res=${7:-504} clients=${8:-1} queued=${9:-8}
tmp=$(mktemp -d)
"$bin" serve --addr 127.0.0.1:0 -m "$config" -w "$weights" --quiet --max-memory "$budget" \
  --max-queued "$queued" --max-views "$views" >"$tmp/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do grep -q "listening on" "$tmp/serve.log" 2>/dev/null && break; sleep 0.2; done
url=$(sed -n 's/.*listening on //p' "$tmp/serve.log" | head -1)
[ -n "$url" ] || { cat "$tmp/serve.log"; exit 1; }
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$server/status"; }
start_rss=$(kib VmRSS)

parts=()
for _ in $(seq "$views"); do parts+=(-F "image=@$image"); done
pids=()
for c in $(seq "$clients"); do
  curl -s -o "$tmp/body.$c" -w '%{http_code} %{time_total}\n' \
    "${parts[@]}" -F "process_res=$res" -F format=json "$url/v1/predict" >"$tmp/status.$c" &
  pids+=($!)
done
wait "${pids[@]}" || true
peak=$(kib VmHWM)
for c in $(seq "$clients"); do
  read -r code secs <"$tmp/status.$c"
  if [ "$code" = 200 ]; then
    passes=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["passes"])' "$tmp/body.$c")
    echo "client $c: 200 in ${secs} s, ${passes} pass(es)"
  else
    echo "client $c: $code $(head -c 200 "$tmp/body.$c")"
  fi
done
echo "server RSS after start: $((start_rss / 1024)) MiB; peak RSS: $((peak / 1024)) MiB (budget $budget, $views views, $clients client(s), --max-queued $queued)"
