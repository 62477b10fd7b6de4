/* common.cuh: helpers prepended by the registry to every kernel source before NVRTC compiles it (NVRTC has no
 * file system include path for our own headers). Only block reductions and index helpers live here.
 * Launch geometry assumption of block_sum_f64: blockDim.x == BLOCK (256), one-dimensional blocks. */
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define BLOCK 256

/* Global thread index of a 1-D launch, as 64-bit so (B, C, L) products past 2^31 stay exact. */
__device__ __forceinline__ i64 global_index() {
    return (i64)blockIdx.x * blockDim.x + threadIdx.x;
}

/* Grid-stride step of a 1-D launch. */
__device__ __forceinline__ i64 grid_stride() {
    return (i64)gridDim.x * blockDim.x;
}

/* Sum of v over the block (BLOCK threads); the result is valid in thread 0 only. */
__device__ double block_sum_f64(double v) {
    __shared__ double partial[BLOCK / 32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* partial may still be read by a previous call */
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    double s = 0.0;
    if (warp == 0) {
        s = lane < BLOCK / 32 ? partial[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    }
    return s;
}
