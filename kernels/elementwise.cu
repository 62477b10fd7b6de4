/* elementwise.cu: fill, scale, axpy, add, channel-slice copy and crop (forward and backward) of f32 tensors.
 * Twin: src/backend/cpu/elementwise.rs. Launch: 1-D grid-stride loops, BLOCK threads, any grid size. */

extern "C" __global__ void fill_f32(float* x, float value, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) x[i] = value;
}

extern "C" __global__ void scale_f32(float alpha, float* x, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) x[i] *= alpha;
}

/* y += alpha x */
extern "C" __global__ void axpy_f32(float alpha, const float* x, float* y, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) y[i] += alpha * x[i];
}

/* out = a + b */
extern "C" __global__ void add_f32(const float* a, const float* b, float* out, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

/* dst[:, dst_off + j, :] (+)= src[:, src_off + j, :] for j < nch; one thread per copied element (B, nch, L). */
extern "C" __global__ void channel_copy_f32(const float* src, float* dst, i64 b, i64 l, i64 c_src, i64 src_off,
                                            i64 c_dst, i64 dst_off, i64 nch, int accumulate) {
    i64 total = b * nch * l;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 pos = i % l, j = (i / l) % nch, bb = i / (l * nch);
        float v = src[(bb * c_src + src_off + j) * l + pos];
        float* d = &dst[(bb * c_dst + dst_off + j) * l + pos];
        *d = accumulate ? *d + v : v;
    }
}

/* y (rows, L - 2 crop) = x (rows, L)[:, crop : L - crop]; rows = B * C. */
extern "C" __global__ void crop_fwd_f32(const float* x, float* y, i64 rows, i64 l, i64 crop) {
    i64 lo = l - 2 * crop, total = rows * lo;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 r = i / lo, p = i % lo;
        y[i] = x[r * l + crop + p];
    }
}

/* dx (rows, L) = dy zero-padded by crop on each side. */
extern "C" __global__ void crop_bwd_f32(const float* dy, float* dx, i64 rows, i64 l, i64 crop) {
    i64 lo = l - 2 * crop, total = rows * l;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 r = i / l, p = i % l - crop;
        dx[i] = (p >= 0 && p < lo) ? dy[r * lo + p] : 0.0f;
    }
}
