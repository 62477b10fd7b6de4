#!/usr/bin/env bash
# tests/vgpu/run.sh COMMAND...: run COMMAND with the virtual GPU in place of the real CUDA libraries.
# Builds the fake libcuda.so.1, libnvrtc.so, libnccl.so and libcublas.so.13 (tests/vgpu/*.cpp, with c++) into $VGPU_DIR
# (default target/vgpu) when missing or older than their sources, puts them first on LD_LIBRARY_PATH and runs
# COMMAND (a test binary, `cargo test ...`, the mfd binary, `mpirun ...`). Settings (environment):
#   VGPU_ORDER=forward|reverse|random[:SEED]  the order fibers and blocks run in (default forward)
#   VGPU_SANITIZE=address|thread              build the libraries and kernels with that sanitizer (own VGPU_DIR)
#   VGPU_CXX (default c++), VGPU_STACK_KB (fiber stack), VGPU_ALIGN (allocation alignment, default 16)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
san="${VGPU_SANITIZE:-}"
dir="${VGPU_DIR:-$root/target/vgpu${san:+-$san}}"
cxx="${VGPU_CXX:-c++}"
mkdir -p "$dir"
flags=(-std=c++20 -O2 -g -fPIC -shared -Wall -I"$here")
[ -n "$san" ] && flags+=(-fsanitize="$san" -fno-omit-frame-pointer)

build() { # build OUT SOURCES...: rebuild when OUT is missing or older than a source or header
    local out="$dir/$1"; shift
    local stale=0
    [ -f "$out" ] || stale=1
    for s in "$@" "$here"/*.h "$here/run.sh"; do [ "$s" -nt "$out" ] && stale=1; done
    if [ "$stale" = 1 ]; then
        echo "vgpu: building $out" >&2
        "$cxx" "${flags[@]}" "$@" -o "$out.tmp" -ldl -lpthread -lrt
        mv "$out.tmp" "$out"
    fi
}
# The libraries in $dir were built with the flags in $dir/flags; other flags (VGPU_SANITIZE or VGPU_CXX changed with
# the same VGPU_DIR) rebuild them all. (Compiled kernels are keyed by their flags in the cache, so they need nothing.)
want="$cxx ${flags[*]}"
if [ "$(cat "$dir/flags" 2>/dev/null)" != "$want" ]; then
    rm -f "$dir/libcuda.so.1" "$dir/libnvrtc.so" "$dir/libnccl.so" "$dir/libcublas.so.13"
    printf '%s\n' "$want" > "$dir/flags"
fi
build libcuda.so.1 "$here/cuda.cpp" "$here/scheduler.cpp"
build libnvrtc.so "$here/nvrtc.cpp"
build libnccl.so "$here/nccl.cpp"
build libcublas.so.13 "$here/cublas.cpp"
ln -sf libcuda.so.1 "$dir/libcuda.so"
ln -sf libnccl.so "$dir/libnccl.so.2"
ln -sf libcublas.so.13 "$dir/libcublas.so"
cp -p "$here/vgpu_kernel.h" "$dir/vgpu_kernel.h" 2>/dev/null || true
[ "$here/vgpu_kernel.h" -nt "$dir/vgpu_kernel.h" ] && cp "$here/vgpu_kernel.h" "$dir/vgpu_kernel.h"
mkdir -p "$dir/cache"

export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MFD_VGPU=1   # tests print "vgpu" as the backend that ran
if [ -n "$san" ]; then
    rt="$("$cxx" -print-file-name="lib${san/address/asan}.so")"
    [ "$san" = thread ] && rt="$("$cxx" -print-file-name=libtsan.so)"
    export LD_PRELOAD="$rt${LD_PRELOAD:+:$LD_PRELOAD}"
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:verify_asan_link_order=0}"
    # The Rust program is not instrumented: its own synchronisation (atomics, rayon's latches) is invisible to TSan,
    # so races whose stacks reach its frames are the host's, not the kernels' (tsan.supp).
    export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$here/tsan.supp:halt_on_error=0}"
fi
[ $# -eq 0 ] && { echo "vgpu: libraries ready in $dir"; exit 0; }
# Say so in every log: a green run here validates the CUDA code paths on the virtual GPU, not on a real device.
echo "vgpu: running '$*' on the virtual GPU (tests/vgpu; VGPU_ORDER=${VGPU_ORDER:-forward}), not on a real GPU" >&2
exec "$@"
