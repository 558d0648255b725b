#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs exactly this).
# Installs what the tests need, then runs every test on the flex (CPU) and wgpu backends.
# wgpu runs on the GPU when there is one, else on Mesa's lavapipe (Vulkan on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/da3-target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"   # silences a harmless wgpu/Mesa warning

# Vulkan on the CPU for the wgpu tests (no-op where already installed).
have_lavapipe() { ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p | grep -q 'libvulkan.so.1'; }
if ! have_lavapipe; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
  else
    echo "warning: install mesa-vulkan-drivers and libvulkan1 for the wgpu tests" >&2
  fi
fi

# ffmpeg for the video-input tests (they skip with a notice where it cannot be installed).
if ! command -v ffmpeg >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg || true
fi

# The Python side of the tests: the independent readers and checks (numpy, Pillow, plyfile,
# pycolmap, trimesh, matplotlib) and the reference package the exports are compared with
# (depth-anything-3 on CPU torch; ~2 min and ~5 GB, which CI's real-size parity step needs
# anyway). Installed when they do not import. Once they do, DA3_REQUIRE_PYTHON_CHECKS makes a
# check that cannot run fail instead of being skipped, so that CI never passes without them.
py_check="import numpy, PIL, plyfile, pycolmap, trimesh, scipy, matplotlib, torch, depth_anything_3"
if ! python3 -c "$py_check" 2>/dev/null; then
  { python3 -m pip install -q -r tools/test-requirements.txt &&
    python3 -m pip install -q --no-deps depth-anything-3==0.1.1; } ||
    echo "warning: could not install tools/test-requirements.txt" >&2
fi
if python3 -c "$py_check" 2>/dev/null; then
  export DA3_REQUIRE_PYTHON_CHECKS=1
elif [ "${CI:-}" = true ]; then
  echo "error: the tests' Python packages (tools/test-requirements.txt) are missing" >&2
  exit 1
else
  echo "warning: the tests' Python packages are missing; their independent checks will be skipped" >&2
fi

# One build for everything: the workspace with the flex and wgpu backends (the CLI's defaults;
# da3-cli also turns on da3's `image` API, so its tests run here too), and da3's
# `fusion-kernels` (our attention kernel as a custom op on Burn's fusion-wrapped wgpu, tested
# through `backends::WgpuFusion`; Burn's own `Wgpu` alias stays unfused).
cargo test --workspace --features da3/wgpu,da3/fusion-kernels "$@"
