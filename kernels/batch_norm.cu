/* batch_norm.cu: the element-wise passes of BatchNorm1d over (B, C, L). The per-channel statistics come from
 * moments.cu (f64 partial sums, added across ranks by the host) and the per-channel scalars (mean, invstd,
 * running statistics) are computed on the host in f64 exactly as the CPU twin does, so only these O(B C L) passes
 * run here. Twin: src/backend/cpu/batch_norm.rs. Launch: 1-D grid-stride, BLOCK threads (sums: grid C blocks). */

/* y = (x - mean) scale + beta with scale = invstd gamma: centred first, the twin's order of operations (folding the
 * mean into the shift, x scale + (beta - mean scale), cancels in f32 when the mean is large against the spread). */
extern "C" __global__ void bn_normalise_f32(const float* x, const float* gamma, const float* beta,
                                            const float* mean, const float* invstd, float* y, i64 b, i64 c,
                                            i64 l) {
    for (i64 i = global_index(); i < b * c * l; i += grid_stride()) {
        i64 ch = (i / l) % c;
        float scale = invstd[ch] * gamma[ch];
        y[i] = (x[i] - mean[ch]) * scale + beta[ch];
    }
}

/* Local backward sums per channel: out[c] = sum dy, out[C + c] = sum dy xhat, xhat = (x - mean) invstd, in f64. */
extern "C" __global__ void bn_bwd_sums_f64(const float* x, const float* dy, const float* mean, const float* invstd,
                                           i64 b, i64 c, i64 l, double* out) {
    i64 ch = blockIdx.x;
    double mu = mean[ch], inv = invstd[ch], sdy = 0.0, sdyx = 0.0;
    for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) {
        i64 idx = ((j / l) * c + ch) * l + j % l;
        double g = dy[idx];
        sdy += g;
        sdyx += g * ((double)x[idx] - mu) * inv;
    }
    double s1 = block_sum_f64(sdy);
    double s2 = block_sum_f64(sdyx);
    if (threadIdx.x == 0) {
        out[ch] = s1;
        out[c + ch] = s2;
    }
}

/* dx = gamma invstd (dy - mean_dy - xhat mean_dyx), the means over the global batch (host-computed, C each). */
extern "C" __global__ void bn_bwd_dx_f32(const float* x, const float* dy, const float* gamma, const float* mean,
                                        const float* invstd, const float* mean_dy, const float* mean_dyx, float* dx,
                                        i64 b, i64 c, i64 l) {
    for (i64 i = global_index(); i < b * c * l; i += grid_stride()) {
        i64 ch = (i / l) % c;
        float inv = invstd[ch];
        float xhat = (x[i] - mean[ch]) * inv;
        dx[i] = gamma[ch] * inv * (dy[i] - mean_dy[ch] - xhat * mean_dyx[ch]);
    }
}
