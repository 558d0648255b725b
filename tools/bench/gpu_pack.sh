#!/usr/bin/env bash
# Builds what tools/bench/gpu_session.sh runs on the GPU machine (which has no Rust toolchain
# and no network) and packs it into the ignored folders that the `device` tool carries:
#   .gpu/  da3-bench, attention, calibrate_gpu_memory and the golden/precision test binaries (release, features
#          cuda + wgpu + $GPU_FEATURES), stripped and xz-compressed (the carried tree is limited
#          to 64 MiB)
#   .whl/  depth-anything-3 0.1.1 and the pure-Python packages the GPU image lacks
# .gitignore ignores `/.gpu/`, `/.whl/`, `/.gl/` and `/.gpu-cache/` (the `device` tool carries
# ignored paths only); .gl/ is the device README's loader recipe.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/da3-release-target}"
# Fusion without Burn's autotune by default: with autotune the first CUDA pass on an H100 did
# not finish in 4 minutes (every matmul shape JIT-compiles ~20 candidate kernels; README
# "GPU (H100)"). GPU_FEATURES=fast puts autotune back for a comparison.
extra="${GPU_FEATURES:-fusion}"
cargo build --release -p da3-bench --features "da3-bench/cuda,da3-bench/wgpu,da3-bench/$extra"
cargo build --release -p da3 --features "cuda,wgpu,$extra" --example calibrate_gpu_memory
tests=$(cargo test --release -p da3 --features "cuda,wgpu,$extra,image" --test golden --test precision --no-run \
  --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
mkdir -p .gpu
pack() { strip -o ".gpu/$1" "$2" && xz -f -T2 -6 ".gpu/$1"; }
pack da3-bench "$CARGO_TARGET_DIR/release/da3-bench"
pack attention "$CARGO_TARGET_DIR/release/attention"
pack calibrate_gpu_memory "$CARGO_TARGET_DIR/release/examples/calibrate_gpu_memory"
while read -r name exe; do pack "$name" "$exe"; done <<< "$tests"
if [ ! -f .whl/depth_anything_3-0.1.1-py3-none-any.whl ]; then
  python3 -m pip download -q --no-deps -d .whl depth-anything-3==0.1.1 omegaconf==2.3.0 addict==2.4.0
  python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
fi
ls -la .gpu .whl
