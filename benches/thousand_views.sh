#!/usr/bin/env bash
# A 1000-view job under a 4 GiB budget (issue #5): writes 1000 overlapping 280x280 JPEG crops
# of one smooth random texture (a camera panning 6 px per view), runs `da3 images` on them with
# `--max-memory 4GiB` under GNU time, and prints the run's own summary (chunks, budget, times)
# and the peak resident memory against the budget.
#
# Usage: benches/thousand_views.sh DA3_BINARY WEIGHTS_DIR [MODEL [VIEWS [BUDGET [FORMATS]]]]
#   (defaults: da3-small 1000 4GiB, the default outputs; FORMATS is an --export-format value
#   such as mini_npz-npz-ply-glb-colmap-depth_vis; WEIGHTS_DIR holds MODEL.config.json and
#   MODEL.weights.safetensors, e.g. from tools/golden/generate.py). Needs python3 with numpy
#   and Pillow, and /usr/bin/time. Set RAYON_NUM_THREADS to fix the thread count, and WIDTH and
#   HEIGHT (default 280 each) for other view sizes (--process-res is the longer side).
set -euo pipefail
bin=$1 dir=$2 model=${3:-da3-small} views=${4:-1000} budget=${5:-4GiB} formats=${6:-}
extra=()
[ -n "$formats" ] && extra=(--export-format "$formats")
width=${WIDTH:-280} height=${HEIGHT:-280}
res=$(( width > height ? width : height ))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/in" "$views" "$width" "$height" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
out, views, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out)
step = 6
rng = np.random.default_rng(7)
width = w + (views - 1) * step
coarse = (rng.random((h // 8 + 2, width // 8 + 2, 3)) * 255).astype(np.uint8)
strip = np.asarray(Image.fromarray(coarse).resize((width, h), Image.BICUBIC))
for i in range(views):
    Image.fromarray(strip[:, i * step:i * step + w]).save(f"{out}/view_{i:04d}.jpg", quality=90)
EOF
/usr/bin/time -v "$bin" images "$tmp/in" -m "$dir/$model.config.json" -w "$dir/$model.weights.safetensors" \
  --process-res "$res" --max-memory "$budget" --out "$tmp/out" "${extra[@]}" >"$tmp/run.log" 2>"$tmp/time.log" \
  || { cat "$tmp/run.log" "$tmp/time.log"; exit 1; }
grep -v "^ *$tmp/out/" "$tmp/run.log"
written=$(find "$tmp/out" -maxdepth 1 -name 'depth_*.png' | wc -l)
peak_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time.log")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time.log")
echo "depth maps written: $written of $views; wall $wall; peak RSS $((peak_kb / 1024)) MiB (budget $budget); outputs $(du -sh "$tmp/out" | cut -f1)"
