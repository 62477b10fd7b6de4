#!/usr/bin/env bash
# launch/gpu_check.sh [--quick] [--bin DIR] [--work DIR]: the one script a person with a GPU runs once (issue 19
# item 7), so that the first GPU minutes measure instead of debug. Needs no network and no Rust on the GPU machine:
# build the bundle here first (`launch/gpu_check.sh --bundle DIR` builds the release binary and the CUDA test
# executables into DIR), copy DIR and this repository there, and run `launch/gpu_check.sh --bin DIR`.
# Steps, each timed and recorded (ok / FAILED / skipped, the last lines of its log) in WORK/gpu_check.md:
#   1. the CUDA tests (every kernel against its CPU twin, a full step GPU vs CPU, NCCL on 1 rank, a step from a
#      trained state and a short training: vgpu_train), MFD_REQUIRE_GPU=1
#   2. a 1-rank NCCL training (dist.comm = "nccl"), 50 steps
#   3. the embedded default on --backend cuda, f32 and bf16 (each capped at 150 s), their test AUROC
#   4. mfd bench train --backend cuda at B = 256 (C = 30, C = 120 and the default's shapes)
#   5. bench/torch_reference.py on the same GPU, eager and torch.compile, side by side (when torch is importable)
# --quick: tiny sizes, for CI on the virtual GPU (`tests/vgpu/run.sh launch/gpu_check.sh --quick`): the CUDA tests
#   are left to CI's own vgpu section, the runs take a few steps, the numbers mean nothing.
# Libraries: libcuda from the driver; NVRTC 13.0, cuBLAS 13 and NCCL from the Python wheels (stack.md) on
# LD_LIBRARY_PATH (cuBLAS's directory is added from python3's nvidia package when missing; the bundle carries none).
set -uo pipefail
cd "$(dirname "$0")/.."

QUICK=0 BIN="" WORK="" BUNDLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --bin) BIN="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --bundle) BUNDLE="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$BUNDLE" ]; then
  # Build here (Rust machine): the release binary and the CUDA test executables, copied into BUNDLE.
  set -e
  cargo build --release --features mpi
  cargo test --release --features mpi --no-run --test cuda_kernels --test cuda_step --test nccl --test vgpu_train 2>&1 | tee /tmp/gpu_check_build.log
  mkdir -p "$BUNDLE"
  cp target/release/mfd "$BUNDLE/"
  for t in cuda_kernels cuda_step nccl vgpu_train; do
    exe=$(grep -o "target/release/deps/$t-[0-9a-f]*" /tmp/gpu_check_build.log | tail -1)
    [ -n "$exe" ] || { echo "gpu_check: no test executable for $t" >&2; exit 1; }
    cp "$exe" "$BUNDLE/$t"
  done
  echo "gpu_check: bundle in $BUNDLE: $(ls "$BUNDLE" | tr '\n' ' ')"
  exit 0
fi

# cuBLAS (the dense products, issue 19 item 1) comes from the GPU machine's nvidia-cublas wheel
# (<site-packages>/nvidia/cu13/lib/libcublas.so.13, beside NVRTC's), not from the bundle: unless a libcublas is
# already on LD_LIBRARY_PATH (or the virtual GPU's), that directory goes first, found through python3 as .ci/run does.
have_lib() {
  local d ds
  IFS=: read -ra ds <<< "${LD_LIBRARY_PATH:-}"
  for d in "${ds[@]}"; do [ -n "$d" ] && [ -e "$d/$1" ] && return 0; done
  ldconfig -p 2>/dev/null | grep -q "$1 "
}
if ! have_lib libcublas.so.13 && ! have_lib libcublas.so; then
  NV_LIB=$(python3 -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)
  if [ -n "$NV_LIB" ] && [ -e "$NV_LIB/libcublas.so.13" ]; then
    export LD_LIBRARY_PATH="$NV_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu_check: cuBLAS from $NV_LIB"
  else
    echo "gpu_check: warning: no libcublas.so.13 on LD_LIBRARY_PATH nor in python3's nvidia package" \
      "(pip install nvidia-cublas); the CUDA steps will fail to create the backend" >&2
  fi
fi

if [ -z "$BIN" ]; then
  for d in target/release target/debug; do [ -x "$d/mfd" ] && { BIN=$d; break; }; done
fi
MFD="$BIN/mfd"
[ -x "$MFD" ] || { echo "gpu_check: no mfd binary (build it, or pass --bin DIR; --bundle DIR makes one)" >&2; exit 2; }
WORK=${WORK:-runs/gpu_check$([ $QUICK = 1 ] && echo -quick)}
rm -rf "$WORK"; mkdir -p "$WORK"
REPORT="$WORK/gpu_check.md"
FAILED=0

# run NAME COMMAND...: run, log to WORK/NAME.log, append a status line and the log's tail to the report.
run() {
  local name="$1"; shift
  local t0=$SECONDS status
  echo "gpu_check: $name ..." >&2
  "$@" >"$WORK/$name.log" 2>&1
  status=$?
  local secs=$((SECONDS - t0))
  if [ $status = 0 ]; then
    printf '| %s | ok | %d s |\n' "$name" "$secs" >>"$WORK/status.md"
  else
    FAILED=1
    printf '| %s | FAILED (exit %d) | %d s |\n' "$name" "$status" "$secs" >>"$WORK/status.md"
  fi
  { printf '\n### %s (exit %d, %d s)\n```\n' "$name" "$status" "$secs"; tail -n 25 "$WORK/$name.log"; printf '```\n'; } >>"$WORK/details.md"
  return 0
}
skip() {
  printf '| %s | skipped: %s | |\n' "$1" "$2" >>"$WORK/status.md"
}

export MFD_REQUIRE_GPU=1 RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$(nproc)}
TINY=(--set model.c=16 --set model.seq_len=128 --set model.crop=0 --set adversary.hidden=16 --set adversary.layers=2
      --set train.batch_size=16 --set train.max_seconds=0 --set train.log_every=1)
printf '| step | result | time |\n|---|---|---|\n' >"$WORK/status.md"
: >"$WORK/details.md"

# 1. CUDA tests
if [ $QUICK = 1 ]; then
  skip "cuda tests" "--quick (CI runs them on the virtual GPU in its own section)"
else
  # vgpu_train: a GPU step from a CPU-trained state vs the CPU's (f32, bf16) and a 300-step run (MFD_BIN: its mfd).
  for t in cuda_kernels cuda_step nccl vgpu_train; do
    if [ -x "$BIN/$t" ]; then run "test $t" env MFD_BIN="$MFD" "$BIN/$t" --nocapture
    else skip "test $t" "no $BIN/$t (use --bundle)"; fi
  done
fi

# 2. 1-rank NCCL training
if [ $QUICK = 1 ]; then
  run "nccl 1-rank training" "$MFD" train --backend cuda --no-final-eval --out "$WORK/nccl1" "${TINY[@]}" \
    --set 'dist.comm="nccl"' --set train.max_steps=3 --set "data.dataset=\"$WORK/data/dataset\""
else
  run "nccl 1-rank training" "$MFD" train --backend cuda --no-final-eval --out "$WORK/nccl1" \
    --set 'dist.comm="nccl"' --set train.max_steps=50 --set train.log_every=10
fi

# 3. the embedded default on the GPU
if [ $QUICK = 1 ]; then
  run "default on cuda" "$MFD" train --backend cuda --no-final-eval --out "$WORK/default" "${TINY[@]}" \
    --set train.max_steps=3 --set "data.dataset=\"$WORK/data/dataset\""
else
  run "default on cuda" "$MFD" train --backend cuda --out "$WORK/default" --set train.max_seconds=150
  # Issue 19 item 1: the same run in bf16 (tensor-core products, f32 master weights) should reach the f32 run's
  # test AUROC within 0.01 (compared in the report when both runs finish their 40 epochs inside the cap).
  run "default on cuda, bf16" "$MFD" train --backend cuda --out "$WORK/default-bf16" --set train.max_seconds=150 \
    --set 'train.precision="bf16"'
fi

# 4. mfd bench train on the GPU (its own PyTorch comparator off: step 5 times torch, eager and compiled)
if [ $QUICK = 1 ]; then
  run "mfd bench train" "$MFD" bench train --backend cuda --quick --work "$WORK/bench"
else
  run "mfd bench train" "$MFD" bench train --backend cuda --batch 256 --steps 10 --torch-python none \
    --work "$WORK/bench"
fi

# 5. the PyTorch comparator on the same GPU
if python3 -c 'import torch' 2>/dev/null; then
  if [ $QUICK = 1 ]; then
    run "torch_reference bench" python3 bench/torch_reference.py bench --dataset "$WORK/bench/dataset-tiny" \
      --c 16 --t 128 --crop 0 --b 8 --hidden 16 --steps 1 --out "$WORK/torch.json"
  else
    run "torch_reference bench" python3 bench/torch_reference.py bench --dataset "$WORK/bench/dataset-tiny" \
      --c 30 120 --b 256 --steps 10 --compile --out "$WORK/torch.json"
  fi
else
  skip "torch_reference bench" "python3 cannot import torch"
fi

{
  echo "# gpu_check $([ $QUICK = 1 ] && echo '--quick (tiny sizes; numbers mean nothing)')"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo '```'
  (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available")
  grep -h -o -m1 -E "backend cuda \(.*\)$" "$WORK"/*.log 2>/dev/null | head -1
  echo '```'
  echo
  cat "$WORK/status.md"
  echo
  echo "## the embedded default on the GPU: f32 vs bf16 (test split; \"stopped\" = cut by the time cap)"
  for d in default default-bf16; do
    row=$(grep -h '"kind":"test"' "$WORK/$d/metrics.jsonl" 2>/dev/null | tail -1)
    steps=$(grep -h '"kind":"train"' "$WORK/$d/metrics.jsonl" 2>/dev/null | tail -1 | grep -o '"step":[0-9]*')
    echo "- $d: ${row:-(no test row)} (last logged ${steps:-step ?})"
  done
  echo
  echo "## mfd bench train"
  [ -f "$WORK/bench/train.md" ] && cat "$WORK/bench/train.md" || echo "(no result)"
  echo
  echo "## torch_reference bench (JSON)"
  [ -f "$WORK/torch.json" ] && { echo '```'; cat "$WORK/torch.json"; echo '```'; } || echo "(no result)"
  echo
  echo "## logs (last lines)"
  cat "$WORK/details.md"
} >"$REPORT"
echo "gpu_check: report in $REPORT" >&2
exit $FAILED
