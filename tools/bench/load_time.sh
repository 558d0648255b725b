#!/usr/bin/env bash
# Cold vs warm model load time of the `da3` binary (the `load` line of its summary: mmap of
# model.safetensors + building the tensors on the device).
#
# Cold = the weights file evicted from the page cache first, with posix_fadvise(DONTNEED) on
# that file only (what `vmtouch -e` does; needs no privileges and leaves the rest of the cache
# alone; `fincore` confirms it); warm = the run right after. Inference runs on one tiny image at
# --process-res 56 so that the run is mostly the load.
#
# Usage: tools/bench/load_time.sh DA3_BINARY DIR NAME... (DIR/NAME.config.json and
#        DIR/NAME.weights.safetensors, e.g. the random-weight real-size goldens)
set -euo pipefail
bin=$1 dir=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -c "from PIL import Image; Image.new('RGB', (56, 42), (90, 140, 200)).save('$tmp/view.png')"
evict() { python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$1"; }
resident() { fincore --noheadings --bytes --output RES "$1" 2>/dev/null || echo "?"; }
load() {
  "$bin" infer "$tmp/view.png" --model "$dir/$1.config.json" --weights "$dir/$1.weights.safetensors" \
    --device "${DEVICE:-flex}" --process-res 56 --out "$tmp/out" | awk '/^  load/ {print $2}'
}
for name in "$@"; do
  w=$dir/$name.weights.safetensors
  size=$(stat -c %s "$w")
  evict "$w"
  before=$(resident "$w")
  cold=$(load "$name")
  warm=$(load "$name")
  warm2=$(load "$name")
  echo "$name: $((size / 1000000)) MB, resident before cold run: $before bytes; load cold ${cold} s, warm ${warm} s, ${warm2} s"
done
