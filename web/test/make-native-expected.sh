#!/usr/bin/env bash
# Regenerates web/test/fixtures/native_expected.safetensors: the native library's (flex, CPU)
# prediction for the browser test's fixture images with the tiny fixture model. Run it after a
# change to the model that legitimately changes numbers (then check the golden tests first).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/da3-target}"
export CARGO_TARGET_DIR
F=crates/da3/tests/fixtures
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo run -q -p da3-cli --bin da3 -- infer --model $F/tiny.config.json --weights $F/tiny.weights.safetensors \
  --process-res 56 web/test/fixtures/view_a.png web/test/fixtures/view_b.png -o "$OUT" --quiet
python3 - "$OUT/results.npz" web/test/fixtures/native_expected.safetensors <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
d = np.load(sys.argv[1])
save_file({k: np.ascontiguousarray(d[k], dtype=np.float32) for k in ("depth", "conf", "extrinsics", "intrinsics")}, sys.argv[2])
print("wrote", sys.argv[2], {k: d[k].shape for k in d})
PY
