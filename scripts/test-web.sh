#!/usr/bin/env bash
# The browser test: builds web/pkg (scripts/build-web.sh; SKIP_BUILD=1 reuses it), shards the
# tiny fixture model, serves web/ on 127.0.0.1 and drives headless Chromium with WebGPU
# (SwiftShader) through Playwright (web/test/browser.test.mjs). Needs /usr/bin/chromium
# (apt-get install chromium) or CHROMIUM=path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# crates/da3-web's unit tests (the shard merge), natively and without Burn (--no-default-features
# leaves out the browser bindings): seconds warm, ~1.5 min cold (serde, safetensors).
HOST=$(rustc -vV | sed -n 's/^host: //p')
(cd crates/da3-web && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/da3-wasm-target}" \
  cargo test --no-default-features --target "$HOST" --quiet)
[ "${SKIP_BUILD:-0}" = 1 ] || scripts/build-web.sh
[ -f web/pkg/da3_web_bg.wasm ] || { echo "web/pkg is missing: run scripts/build-web.sh" >&2; exit 1; }
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "no Chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install -y chromium (or set CHROMIUM)" >&2; exit 1
fi
[ -d web/node_modules/playwright-core ] || (cd web && npm install --no-audit --no-fund)

# Fixtures served under web/test/out: the tiny model as several f32 shards (the numbers must
# match fp32 references) and the PyTorch golden of a 2-view scene.
F=crates/da3/tests/fixtures
rm -rf web/test/out && mkdir -p web/test/out
python3 weights/shard.py --weights $F/tiny.weights.safetensors --config $F/tiny.config.json \
  --out web/test/out/tiny --dtype f32 --max-shard-mb 0.4
cp $F/tiny_s2.golden.safetensors web/test/out/
# fp16 shards (what the page downloads in practice), and the same fp16-rounded weights widened
# back to f32 in one file: the fp16 path must give exactly what fp32 gives on those weights.
python3 weights/shard.py --weights $F/tiny.weights.safetensors --config $F/tiny.config.json \
  --out web/test/out/tiny-f16 --dtype f16 --max-shard-mb 0.2
python3 - web/test/out/tiny-f16 web/test/out/tiny-f16-as-f32.safetensors <<'PY'
import sys; sys.path.insert(0, "weights")
import json, os, shard
d = sys.argv[1]
tensors = {}
for f in json.load(open(os.path.join(d, "manifest.json")))["files"]:
    tensors.update(shard.read_safetensors(os.path.join(d, f["name"])))
shard.write_safetensors(sys.argv[2], {k: shard.convert(v, "f32") for k, v in tensors.items()})
PY
python3 weights/shard.py --weights web/test/out/tiny-f16-as-f32.safetensors --config $F/tiny.config.json \
  --out web/test/out/tiny-f16-as-f32 --dtype f32
# A corrupted copy of the f32 shards: one byte of the second shard's data flipped, manifest kept.
cp -r web/test/out/tiny web/test/out/tiny-corrupt
python3 - web/test/out/tiny-corrupt/model-00001.safetensors <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) - 100] ^= 0x40
open(sys.argv[1], "wb").write(b)
PY

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$PORT" --directory web >/tmp/da3-web-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/index.html" >/dev/null && break; sleep 0.1; done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
node web/test/browser.test.mjs "http://127.0.0.1:$PORT/"
