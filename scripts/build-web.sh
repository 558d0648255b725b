#!/usr/bin/env bash
# Builds the browser demo: crates/da3-web -> web/pkg (wasm + JS glue, names stripped), and
# installs what that needs when missing (Debian's rustc-web + std sources for build-std,
# wasm-ld, the wasm-bindgen CLI matching crates/da3-web/Cargo.lock, the page's npm packages).
#
# Env: CARGO_TARGET_DIR (default $HOME/.cache/da3-wasm-target; keep it between runs, a cold
#      build of burn for wasm takes 15+ minutes), CARGO_BUILD_JOBS, DA3_WEB_FEATURES (e.g. fast).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CRATE="$ROOT/crates/da3-web"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/da3-wasm-target}"

# 1. Toolchain. rustup cannot download a wasm32 std here; Debian's rustc-web ships one as source.
if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust/library ] || ! command -v wasm-ld >/dev/null; then
  echo "== installing rustc-web, rust-web-src, lld (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src lld
fi
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$CRATE/Cargo.lock")
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WBG_VERSION" ]; then
  echo "== installing wasm-bindgen-cli $WBG_VERSION (must match the wasm-bindgen crate)"
  # Its own target dir: not the wasm one (host build) and not the workspace's.
  CARGO_TARGET_DIR="$HOME/.cache/da3-wasm-bindgen-cli-target" cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi
if [ ! -d "$ROOT/web/node_modules/three" ] || [ ! -d "$ROOT/web/node_modules/playwright-core" ]; then
  echo "== npm install (three, playwright-core)"
  (cd "$ROOT/web" && npm install --no-audit --no-fund)
fi

# 2. The wasm library. crates/da3-web/.cargo/config.toml sets the target, wasm-ld, build-std and
#    getrandom's browser backend; RUSTC_BOOTSTRAP lets the stable rustc-web use build-std.
echo "== cargo build (wasm32-unknown-unknown, release) into $CARGO_TARGET_DIR"
FEATURES=()
[ -n "${DA3_WEB_FEATURES:-}" ] && FEATURES=(--features "$DA3_WEB_FEATURES")
(cd "$CRATE" && RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
  /usr/bin/cargo build --release --lib "${FEATURES[@]}")
WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/da3_web.wasm"

# 3. JS glue; names and producer info stripped (40 MB -> ~24 MB).
echo "== wasm-bindgen -> web/pkg"
rm -rf "$ROOT/web/pkg"
wasm-bindgen --target web --out-dir "$ROOT/web/pkg" --remove-name-section --remove-producers-section "$WASM"
if command -v wasm-opt >/dev/null && [ "${DA3_WEB_WASM_OPT:-0}" = 1 ]; then
  echo "== wasm-opt -O2"
  wasm-opt -O2 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    "$ROOT/web/pkg/da3_web_bg.wasm" -o "$ROOT/web/pkg/da3_web_bg.wasm"
fi

RAW=$(stat -c %s "$ROOT/web/pkg/da3_web_bg.wasm")
GZ=$(gzip -9 -c "$ROOT/web/pkg/da3_web_bg.wasm" | wc -c)
printf '== web/pkg/da3_web_bg.wasm: %.1f MB raw, %.1f MB gzipped\n' "$(echo "$RAW/1000000" | bc -l)" "$(echo "$GZ/1000000" | bc -l)"
echo "Serve web/ over http on localhost, e.g.: python3 -m http.server --bind 127.0.0.1 8000 --directory web"
