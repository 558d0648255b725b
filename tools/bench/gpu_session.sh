#!/usr/bin/env bash
# One GPU-machine session (the `device` tool's H100/H200): correctness on CUDA, the attention
# kernels, and da3 against the reference PyTorch network on the same GPU.
#
# The GPU machine has no Rust toolchain and no network, so everything is built here and
# carried (see tools/bench/gpu_pack.sh, which fills .gpu/ and .whl/):
#   .gpu/*.xz   x86-64 release binaries: da3-bench, attention, calibrate_gpu_memory, and the golden/precision test
#               binaries, built with `cuda,wgpu,fusion` (no autotune; see gpu_pack.sh)
#   .whl/       depth-anything-3 0.1.1 and the pure-Python packages the image lacks
#   .gl/        Vulkan/EGL loaders (device README) for the wgpu steps
#   .gpu-cache/ optional: kernels.tar.xz, the compiled-kernel caches an earlier session returned
#               in $OUT (same build and GPU generation), so that nothing compiles again
# Usage (on the GPU machine, from the repository root): tools/bench/gpu_session.sh STEP...
#   steps: coldstart diag single smoke tests attention compare-bf16 compare-fp32 compare-unfused wgpu memory
# Random-weight checkpoints of the real sizes are made there (tools/golden/generate.py, the
# same compute as the real ones). Every step's output goes to $OUT/<step>.log.
set -u
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
W=/tmp/da3-weights
BIN=/tmp/da3-bin
PEAK_BF16=989   # H100 SXM dense bf16 tensor-core TFLOP/s (NVIDIA's datasheet); fp32 non-tensor: 67
# The device tool stops a command after 600 s and returns only what is under $OUT; every step
# is cut at this session's deadline so the rest still gets written.
DEADLINE=$(( $(date +%s) + ${GPU_SESSION_SECONDS:-570} ))
left() { # min(ARG, seconds to the deadline)
  local rest=$(( DEADLINE - $(date +%s) ))
  [ "$rest" -lt "$1" ] && echo "$(( rest > 1 ? rest : 1 ))" || echo "$1"
}
log() { echo "== $(date +%T) $*" | tee -a "$OUT/session.log"; }

setup() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  mkdir -p "$BIN"
  for f in .gpu/*.xz; do xz -dc "$f" > "$BIN/$(basename "$f" .xz)"; chmod +x "$BIN/$(basename "$f" .xz)"; done
  mkdir -p "$KERNELS"
  [ -f .gpu-cache/kernels.tar.xz ] && tar -C "$KERNELS" -xJf .gpu-cache/kernels.tar.xz && echo "kernel caches from .gpu-cache: $(du -sh "$KERNELS" | cut -f1)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$OUT/session.log"
  python3 -c "import torch, depth_anything_3; print('torch', torch.__version__)" 2>&1 | tail -1 | tee -a "$OUT/session.log"
}

# Checkpoints (and real-size goldens) made on the GPU machine's CPU; each preset once.
weights() {
  for spec in "$@"; do
    IFS=: read -r preset views size <<< "$spec"
    [ -f "$W/${preset}_s${views}_${size}.golden.safetensors" ] && continue
    log "generate $spec"
    python3 tools/golden/generate.py --preset "$preset" --views "$views" --size "$size" --out "$W" --threads 16 \
      > /tmp/generate.log 2>&1 || { tail -20 /tmp/generate.log; return 1; }
  done
}

# The kernel caches of every da3 process here: CubeCL's PTX (da3::kernel_cache, DA3_KERNEL_CACHE)
# and the driver's JIT output (CUDA_CACHE_PATH), so that only the first process of the session
# compiles a kernel. A session that carries .gpu-cache/kernels.tar.xz (this script's
# $OUT/kernels.tar.xz of an earlier session, same build and GPU generation) starts with them.
KERNELS=/tmp/da3-kernel-caches
export DA3_KERNEL_CACHE=$KERNELS/cubecl CUDA_CACHE_PATH=$KERNELS/nv CUDA_CACHE_MAXSIZE=4294967296
save_kernels() { # the device tool carries 64 MiB in all and .gpu/ takes 31: the size decides whether it can travel back
  [ -d "$KERNELS" ] && tar -C "$KERNELS" -cJf "$OUT/kernels.tar.xz" . 2>/dev/null &&
    echo "kernel caches: $(du -sh "$KERNELS" | cut -f1) on disk, $(du -h "$OUT/kernels.tar.xz" | cut -f1) packed" | tee -a "$OUT/session.log"
}

# Cold and warm start: the same one-pass da3-bench process twice, first with empty kernel
# caches, then with what the first one left; the wall time of each, and what the caches hold.
step_coldstart() {
  weights da3-small:2:280x378
  local run="$BIN/da3-bench --model da3-small --weights $W/da3-small.weights.safetensors --device cuda --views 1 --iters 1"
  local scratch=/tmp/da3-coldstart t0 t1 rc
  for attempt in cold warm; do
    [ "$attempt" = cold ] && rm -rf "$scratch"
    t0=$(date +%s.%N)
    DA3_KERNEL_CACHE=$scratch/cubecl CUDA_CACHE_PATH=$scratch/nv timeout $(left 240) $run
    rc=$?
    t1=$(date +%s.%N)
    echo "coldstart $attempt: rc $rc, process wall $(python3 -c "print(round($t1 - $t0, 1))") s"
    du -sh "$scratch"/* 2>/dev/null
  done
}

step_smoke() {
  weights da3-small:2:280x378
  for p in fp32 bf16; do
    timeout $(left 180) "$BIN/da3-bench" --model da3-small --weights "$W/da3-small.weights.safetensors" --device cuda \
      --precision $p --views 1 --iters 3
  done
}

# Where a CUDA pass's time goes when it does not finish: runs da3-bench in the background
# with CubeCL's compilation/autotune/profiling log, samples GPU utilization and the log's
# growth every 5 s, and takes every host thread's backtrace (cuda-gdb) halfway.
watch_run() { # NAME SECONDS COMMAND...
  local name=$1 secs=$2
  shift 2
  rm -f /tmp/cubecl.log
  CUBECL_DEBUG_LOG=1 "$@" > "$OUT/$name.err" 2>&1 &
  local pid=$! i
  for i in $(seq 1 $((secs / 5))); do
    sleep 5
    kill -0 $pid 2>/dev/null || break
    echo "$name t=$((i * 5))s gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader) cpu=$(ps -o %cpu= -p $pid) log_lines=$(wc -l < /tmp/cubecl.log 2>/dev/null)"
    if [ "$i" -eq $((secs / 10)) ]; then
      timeout 60 cuda-gdb -p $pid -batch -ex "thread apply all bt 30" > "$OUT/$name.bt" 2>&1
    fi
  done
  kill $pid 2>/dev/null
  wait $pid 2>/dev/null
  tail -c 4000000 /tmp/cubecl.log > "$OUT/$name.cubecl.log" 2>/dev/null
  cat "$OUT/$name.err" | tail -5
}

step_diag() {
  weights da3-small:2:280x378
  local run="$BIN/da3-bench --model da3-small --weights $W/da3-small.weights.safetensors --device cuda --views 1 --iters 3"
  CUBECL_AUTOTUNE_LEVEL=minimal watch_run unfused $(left 100) $run --unfused
  CUBECL_AUTOTUNE_LEVEL=minimal watch_run fused $(left 100) $run
}

# One process each, many passes after the warm-up: the reference in fp32 and bf16, then da3
# (unfused, fp32) with its warm-up (kernel compilation + autotune) and steady passes apart.
step_single() {
  weights da3-small:2:280x378
  local common="--model da3-small --weights $W/da3-small.weights.safetensors --views 1 --size 378x504 --iters 10 --threads 8"
  timeout $(left 60) python3 benches/reference.py $common --device cuda --dtype fp32 --flops
  timeout $(left 60) python3 benches/reference.py $common --device cuda --dtype bf16 --flops
  CUBECL_AUTOTUNE_LEVEL=minimal timeout $(left 400) "$BIN/da3-bench" $common --device cuda --unfused --precision fp32
}

step_tests() {
  weights da3-small:2:280x378 da3-base:2:280x378 da3-large:1:28x28
  export DA3_FIXTURES=crates/da3/tests/fixtures DA3_REAL_GOLDENS="$W"
  export CUBECL_AUTOTUNE_LEVEL=minimal
  timeout $(left 100) "$BIN/golden" cuda:: --test-threads 1
  timeout $(left 100) "$BIN/golden" real_size_parity_cuda --ignored --nocapture
  timeout $(left 100) "$BIN/precision" cuda:: --include-ignored --test-threads 1 --nocapture
}

step_attention() {
  # da3-small (6 heads) and da3-large (16 heads) at 504x378: local per view, global over S views.
  timeout $(left ${ATTENTION_SECONDS:-300}) "$BIN/attention" --device cuda --unfused --iters 20 --shapes \
    ${ATTENTION_SHAPES:-1,6,973,64 8,6,973,64 1,6,7784,64 1,16,973,64 8,16,973,64 1,16,7784,64 1,16,31136,64 3,6,101,64}
}

compare() { # extra compare.py arguments...
  weights da3-small:2:280x378 da3-base:2:280x378 da3-large:1:28x28
  timeout $(left 560) python3 benches/compare.py --bin "$BIN/da3-bench" --weights-dir "$W" --device cuda --threads 8 \
    --rounds 2 --iters 10 "$@"
}

step_compare-bf16() {
  compare --precision bf16 --ref-dtype bf16 --peak-tflops $PEAK_BF16 \
    --case da3-large:8:378x504 --case da3-small:1:378x504 --case da3-large:32:378x504:5 \
    --case da3-base:8:378x504 --case da3-small:8:378x504 --case da3-large:1:378x504 \
    --case da3-large:8x1:378x504 --case da3-small:32x1:378x504:5 --json "$OUT/compare-bf16.json"
  # (the last two: independent images batched, da3's predict_batch against net(x) on [B, 1, ...];
  # last, so that a .gpu pack older than da3-bench's --batch loses only them)
}

step_compare-fp32() {
  compare --precision fp32 --ref-dtype fp32 \
    --case da3-small:1:378x504 --case da3-base:8:378x504 --case da3-large:8:378x504 --json "$OUT/compare-fp32.json"
}

step_compare-unfused() {
  compare --precision bf16 --ref-dtype bf16 --unfused --peak-tflops $PEAK_BF16 \
    --case da3-small:1:378x504 --case da3-large:8:378x504 --json "$OUT/compare-unfused.json"
}

step_wgpu() {
  weights da3-small:2:280x378
  vulkaninfo --summary 2>/dev/null | head -20
  timeout $(left 200) "$BIN/da3-bench" --model da3-small --weights "$W/da3-small.weights.safetensors" --device wgpu --views 1 --iters 5
  timeout $(left 200) "$BIN/attention" --device wgpu --unfused --iters 10 --shapes 1,6,973,64 1,6,7784,64
}

# The GPU side of the memory planner (`schedule::memory`): the pool's peak reservation of one
# pass against weights + plan, on CUDA and on wgpu (Vulkan), da3-small at 1, 2, 8 views
# (calibrate_gpu_memory; a pack older than it skips this step).
step_memory() {
  weights da3-small:2:280x378
  [ -x "$BIN/calibrate_gpu_memory" ] || { echo "no calibrate_gpu_memory in .gpu/: rebuild the pack"; return 1; }
  local args="$W/da3-small.config.json $W/da3-small.weights.safetensors 378x504 --views 1,2,8"
  DA3_DEVICE=cuda CUBECL_AUTOTUNE_LEVEL=minimal timeout $(left 240) "$BIN/calibrate_gpu_memory" $args
  DA3_DEVICE=wgpu timeout $(left 240) "$BIN/calibrate_gpu_memory" $args
}

setup > /tmp/setup.log 2>&1 || { cat /tmp/setup.log; exit 1; }
export PYTHONPATH=/tmp/site VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
cat /tmp/setup.log
for step in "$@"; do
  log "step $step"
  start=$(date +%s)
  "step_$step" > "$OUT/$step.log" 2>&1
  rc=$?
  log "step $step: rc $rc, $(( $(date +%s) - start )) s"
  tail -c 6000 "$OUT/$step.log"
done
save_kernels
