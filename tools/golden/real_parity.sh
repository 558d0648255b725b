#!/usr/bin/env bash
# Real-size parity: da3-small (also two scenes batched in one pass), da3-base, da3mono-large (= da3metric-large's network) at their
# true dimensions, and da3-giant at its true widths with 5 of its 40 blocks (plus the GS head),
# against the reference; and da3-small's fp16/bf16 precision modes against its fp32 golden.
# Generates random-weight checkpoints + goldens (not committed; ~140 MB + ~540 MB + ~1.3 GB +
# ~1.5 GB) into
# $DA3_REAL_GOLDENS (default ~/.cache/da3-real-goldens), then runs the golden comparison.
# Needs the reference on CPU: tools/golden/requirements.txt (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${DA3_REAL_GOLDENS:-$HOME/.cache/da3-real-goldens}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/da3-target}"

if ! python3 -c "import torch, depth_anything_3" 2>/dev/null; then
  python3 -m pip install -q -r tools/golden/requirements.txt
  python3 -m pip install -q --no-deps depth-anything-3==0.1.1
fi
gen() { # preset views HxW [batch]
  local batch=${4:-1} prefix=""
  [ "$batch" -gt 1 ] && prefix="b${batch}_"
  [ -f "$out/$1_${prefix}s$2_$3.golden.safetensors" ] ||
    python3 tools/golden/generate.py --preset "$1" --views "$2" --size "$3" --batch "$batch" --out "$out"
}
gen da3-small 2 280x378
gen da3-small 3 280x378   # three views: reference-view selection and reordering at real size
gen da3-small 3 280x378 2 # two scenes in one pass, whose reference views differ
gen da3-base 2 280x378
gen da3mono-large 1 280x378   # plain DINOv2 vitl + DPT + sky head
gen da3-giant-d5 2 280x378    # vitg widths, SwiGLU, alternation, DualDPT 256 + GSDPT
DA3_REAL_GOLDENS="$out" cargo test --workspace --features da3/wgpu,da3/fusion-kernels --test golden --test gaussians --test batch --test precision -- \
  --ignored real_size_parity real_size_gaussians real_size_batch real_size_da3_small_per_mode --nocapture
