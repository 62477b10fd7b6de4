/* vgpu_kernel.h: the CUDA C execution model on the host, force-included (`c++ -include`) by the fake NVRTC
 * (nvrtc.cpp) before the exact source the registry hands NVRTC (common.cuh + #line + the .cu file).
 *
 * Each GPU thread runs as a cooperative fiber of the fake driver (cuda.cpp); blocks run one after another on
 * one OS thread. This header only declares the device-side vocabulary and forwards every synchronisation point
 * (__syncthreads, warp shuffles and votes, __syncwarp) to the scheduler through `vgpu_hooks`, which the driver
 * fills after it loads the compiled module. The scheduler checks that every thread (or every lane of the mask)
 * arrives at the same call site and reports a divergent or missing one with the file and line.
 *
 * __shared__ variables become statics in the section "vgpu_shared"; the driver poisons that section (0xFF: NaN as
 * f32 and f64) before every block. `extern __shared__ T name[];` (dynamic shared memory) is rewritten by the fake
 * NVRTC into a pointer to the driver's dynamic shared buffer, also poisoned per block. */
#pragma once
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__ __attribute__((visibility("default")))
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __shared__ static __attribute__((section("vgpu_shared")))
#define __constant__ static

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

/* The state of the fiber now running, written by the scheduler before every switch into a fiber. */
struct vgpu_thread_state {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
};

/* Calls into the scheduler. `file`/`line` name the call site (the #line directives map them to the .cu file). */
struct vgpu_hook_table {
    void (*syncthreads)(const char* file, int line);
    /* A warp collective: deposit `value` (8 bytes, zero-extended), wait for every lane of `mask`, return the
     * values of all 32 lanes in `lanes` (entries of lanes outside the mask are poisoned). kind: a name for reports. */
    void (*warp_collective)(const char* kind, unsigned mask, unsigned long long value, unsigned long long* lanes,
                            const char* file, int line);
    void* (*dynamic_shared)();
    void (*trap)(const char* what, const char* file, int line);
};

extern "C" {
extern __attribute__((visibility("default"))) vgpu_thread_state* vgpu_current;
extern __attribute__((visibility("default"))) vgpu_hook_table vgpu_hooks;
}

#define threadIdx (vgpu_current->thread_idx)
#define blockIdx (vgpu_current->block_idx)
#define blockDim (vgpu_current->block_dim)
#define gridDim (vgpu_current->grid_dim)
#define warpSize 32

#define __syncthreads() vgpu_hooks.syncthreads(__FILE__, __LINE__)
#define __trap() vgpu_hooks.trap("__trap()", __FILE__, __LINE__)

namespace vgpu_dev {

inline unsigned lane_id() { return threadIdx.x % 32u; }

template <class T> inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp collectives move at most 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

/* Every lane's value of one collective call. */
struct Lanes {
    unsigned long long v[32];
};
template <class T> inline Lanes exchange(const char* kind, unsigned mask, T value, const char* file, int line) {
    Lanes l;
    vgpu_hooks.warp_collective(kind, mask, to_bits(value), l.v, file, line);
    return l;
}
inline void check_source(unsigned mask, int src, const char* kind, const char* file, int line) {
    if (!((mask >> src) & 1u)) vgpu_hooks.trap(kind, file, line); /* reading a lane outside the mask */
}

template <class T> inline T shfl(unsigned mask, T v, int src, int width, const char* file, int line) {
    Lanes l = exchange("__shfl_sync", mask, v, file, line);
    int base = (int)lane_id() & ~(width - 1);
    int s = base + (src & (width - 1));
    check_source(mask, s, "__shfl_sync reads a lane outside the mask", file, line);
    return from_bits<T>(l.v[s]);
}
template <class T> inline T shfl_down(unsigned mask, T v, unsigned d, int width, const char* file, int line) {
    Lanes l = exchange("__shfl_down_sync", mask, v, file, line);
    int lane = (int)lane_id(), base = lane & ~(width - 1), s = lane + (int)d;
    if (s >= base + width) return v; /* past the segment: the own value, as on the device */
    check_source(mask, s, "__shfl_down_sync reads a lane outside the mask", file, line);
    return from_bits<T>(l.v[s]);
}
template <class T> inline T shfl_up(unsigned mask, T v, unsigned d, int width, const char* file, int line) {
    Lanes l = exchange("__shfl_up_sync", mask, v, file, line);
    int lane = (int)lane_id(), base = lane & ~(width - 1), s = lane - (int)d;
    if (s < base) return v;
    check_source(mask, s, "__shfl_up_sync reads a lane outside the mask", file, line);
    return from_bits<T>(l.v[s]);
}
template <class T> inline T shfl_xor(unsigned mask, T v, int x, int width, const char* file, int line) {
    Lanes l = exchange("__shfl_xor_sync", mask, v, file, line);
    int lane = (int)lane_id(), base = lane & ~(width - 1), s = lane ^ x;
    if (s >= base + width) return v;
    check_source(mask, s, "__shfl_xor_sync reads a lane outside the mask", file, line);
    return from_bits<T>(l.v[s]);
}
inline unsigned ballot(const char* kind, unsigned mask, int pred, const char* file, int line) {
    Lanes l = exchange(kind, mask, (unsigned long long)(pred != 0), file, line);
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        if (((mask >> i) & 1u) && l.v[i]) r |= 1u << i;
    return r;
}

/* Real atomics (the fibers of one launch share an OS thread, but ThreadSanitizer and the semantics want them). */
template <class T> inline T atomic_add(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T> inline T atomic_max(T* p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
template <class T> inline T atomic_min(T* p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old > v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
template <class T> inline T atomic_cas(T* p, T cmp, T v) {
    std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v);
    return cmp;
}
template <class T> inline T atomic_exch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }

} // namespace vgpu_dev

#define __shfl_sync(mask, v, src, ...) vgpu_dev::shfl(mask, v, src, VGPU_WIDTH(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(mask, v, d, ...)                                                                     \
    vgpu_dev::shfl_down(mask, v, d, VGPU_WIDTH(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(mask, v, d, ...) vgpu_dev::shfl_up(mask, v, d, VGPU_WIDTH(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, x, ...)                                                                      \
    vgpu_dev::shfl_xor(mask, v, x, VGPU_WIDTH(__VA_ARGS__), __FILE__, __LINE__)
#define VGPU_WIDTH(...) (32 __VA_OPT__(*0 + (__VA_ARGS__)))
#define __ballot_sync(mask, pred) vgpu_dev::ballot("__ballot_sync", mask, pred, __FILE__, __LINE__)
#define __any_sync(mask, pred) (vgpu_dev::ballot("__any_sync", mask, pred, __FILE__, __LINE__) != 0u)
#define __all_sync(mask, pred) (vgpu_dev::ballot("__all_sync", mask, pred, __FILE__, __LINE__) == (mask))
#define __syncwarp(...) ((void)vgpu_dev::ballot("__syncwarp", (0xffffffffu __VA_OPT__(*0u + (__VA_ARGS__))), 1, \
                                                __FILE__, __LINE__))
#define __activemask() 0xffffffffu

#define atomicAdd(p, v) vgpu_dev::atomic_add(p, (std::remove_pointer_t<decltype(p)>)(v))
#define atomicMax(p, v) vgpu_dev::atomic_max(p, (std::remove_pointer_t<decltype(p)>)(v))
#define atomicMin(p, v) vgpu_dev::atomic_min(p, (std::remove_pointer_t<decltype(p)>)(v))
#define atomicCAS(p, c, v)                                                                                    \
    vgpu_dev::atomic_cas(p, (std::remove_pointer_t<decltype(p)>)(c), (std::remove_pointer_t<decltype(p)>)(v))
#define atomicExch(p, v) vgpu_dev::atomic_exch(p, (std::remove_pointer_t<decltype(p)>)(v))
#define __threadfence() std::atomic_thread_fence(std::memory_order_seq_cst)
#define __threadfence_block() std::atomic_thread_fence(std::memory_order_seq_cst)

/* Device intrinsics with host equivalents (libm; within a few ulps of CUDA's, as the CPU twins' tolerances say). */
template <class T> inline T __ldg(const T* p) { return *p; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
using std::isfinite;
using std::isinf;
using std::isnan;

/* Entry-point trampolines, appended by the fake NVRTC for every `extern "C" __global__` function: copy the
 * arguments once at launch (as the device does), then run the kernel body once per fiber. */
namespace vgpu_dev {
struct Launch {
    void* args;                     /* the argument tuple */
    void (*run)(void* args);        /* one thread's body */
    void (*destroy)(void* args);
};
template <class... A, std::size_t... I>
inline std::tuple<std::decay_t<A>...>* copy_args(void** params, std::index_sequence<I...>) {
    return new std::tuple<std::decay_t<A>...>(*static_cast<std::decay_t<A>*>(params[I])...);
}
template <class... A> inline Launch prepare(void (*)(A...), void** params) {
    using Tup = std::tuple<std::decay_t<A>...>;
    Launch l;
    l.args = copy_args<A...>(params, std::index_sequence_for<A...>{});
    l.run = nullptr; /* set by the per-kernel trampoline, which knows the function */
    l.destroy = [](void* a) { delete static_cast<Tup*>(a); };
    return l;
}
} // namespace vgpu_dev

#define VGPU_ENTRY(name)                                                                                      \
    extern "C" __attribute__((visibility("default"))) vgpu_dev::Launch vgpu_prepare_##name(void** params) {  \
        vgpu_dev::Launch l = vgpu_dev::prepare(&name, params);                                                \
        l.run = [](void* a) { std::apply(name, *static_cast<decltype(vgpu_dev::prepare_tuple(&name))*>(a)); }; \
        return l;                                                                                             \
    }

namespace vgpu_dev {
template <class... A> std::tuple<std::decay_t<A>...> prepare_tuple(void (*)(A...));
}
