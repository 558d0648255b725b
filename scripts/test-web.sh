#!/usr/bin/env bash
# The browser test: builds web/pkg (scripts/build-web.sh; SKIP_BUILD=1 reuses it), shards the
# tiny fixture model, serves web/ on 127.0.0.1 and drives headless Chromium with WebGPU
# (SwiftShader) through Playwright (web/test/browser.test.mjs). Needs /usr/bin/chromium
# (apt-get install chromium) or CHROMIUM=path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
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

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$PORT" --directory web >/tmp/da3-web-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/index.html" >/dev/null && break; sleep 0.1; done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
node web/test/browser.test.mjs "http://127.0.0.1:$PORT/"
