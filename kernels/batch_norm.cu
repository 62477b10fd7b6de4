/* batch_norm.cu: BatchNorm1d over (B, C, L), finished on the device (issue 19 item 2). The per-channel f64 sums
 * (bn_fwd_sums_f64, bn_fwd_m2_f64, bn_bwd_sums_f64) are this rank's partials with the sample count as the last
 * element, the vectors the CPU twin hands to `Reduce` (same lengths, same order); the cross-rank sum runs on them
 * in device memory (nothing on one rank), and the per-channel scalars (mean, invstd, running statistics, dgamma,
 * dbeta, the dx means) are computed here with the twin's f64 formulas and f32 roundings, so no value crosses to
 * the host. Twin: src/backend/cpu/batch_norm.rs. Launch: 1-D grid-stride, BLOCK threads (sums: grid C blocks, at
 * least one). */

/* Forward pass 1: sums[c] = sum x over (B, L) (the loop order of channel_moments_f64) and sums[C] = B L. */
extern "C" __global__ void bn_fwd_sums_f64(const float* x, i64 b, i64 c, i64 l, double* sums) {
    i64 ch = blockIdx.x;
    double acc = 0.0;
    if (ch < c)
        for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) acc += (double)x[((j / l) * c + ch) * l + j % l];
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) {
        if (ch < c) sums[ch] = s;
        if (ch == 0) sums[c] = (double)(b * l);
    }
}

/* Forward pass 2: m2[c] = sum (x - mean)^2 with mean = sums[c] / sums[C] (the cross-rank sums of pass 1). */
extern "C" __global__ void bn_fwd_m2_f64(const float* x, i64 b, i64 c, i64 l, const double* sums, double* m2) {
    i64 ch = blockIdx.x;
    if (ch >= c) return;
    double mu = sums[ch] / sums[c], acc = 0.0;
    for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) {
        double v = (double)x[((j / l) * c + ch) * l + j % l];
        acc += (v - mu) * (v - mu);
    }
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) m2[ch] = s;
}

/* Forward scalars per channel from the global sums: save_mean, save_invstd = 1 / sqrt(m2 / n + eps), and the
 * running statistics keep r + mom batch (f32 arithmetic, the unbiased variance m2 / (n - 1)). */
extern "C" __global__ void bn_fwd_finish_f32(const double* sums, const double* m2, i64 c, double eps, float keep,
                                             float mom, float* running_mean, float* running_var, float* save_mean,
                                             float* save_invstd) {
    for (i64 ch = global_index(); ch < c; ch += grid_stride()) {
        double n = sums[c], mean = sums[ch] / n;
        double var_biased = m2[ch] / n, var_unbiased = m2[ch] / (n - 1.0);
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)(1.0 / sqrt(var_biased + eps));
        running_mean[ch] = keep * running_mean[ch] + mom * (float)mean;
        running_var[ch] = keep * running_var[ch] + mom * (float)var_unbiased;
    }
}

/* Eval: invstd[c] = 1 / sqrt(running_var[c] + eps), in f64 as the twin. */
extern "C" __global__ void bn_eval_invstd_f32(const float* running_var, i64 c, double eps, float* invstd) {
    for (i64 ch = global_index(); ch < c; ch += grid_stride())
        invstd[ch] = (float)(1.0 / sqrt((double)running_var[ch] + eps));
}

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

/* Backward: the parameter gradients from this rank's sums (dbeta += sum dy, dgamma += sum dy xhat, rounded to f32
 * as the twin) and the sample count appended (sums[2C] = n_local) before the cross-rank sum. */
extern "C" __global__ void bn_bwd_params_f32(double* sums, i64 c, double n_local, float* dgamma, float* dbeta) {
    for (i64 ch = global_index(); ch < c; ch += grid_stride()) {
        dbeta[ch] += (float)sums[ch];
        dgamma[ch] += (float)sums[c + ch];
    }
    if (global_index() == 0) sums[2 * c] = n_local;
}

/* Backward: the dx means over the global batch, mean_dy = sums[c] / n, mean_dyx = sums[C + c] / n (n = sums[2C]). */
extern "C" __global__ void bn_bwd_means_f32(const double* sums, i64 c, float* mean_dy, float* mean_dyx) {
    for (i64 ch = global_index(); ch < c; ch += grid_stride()) {
        double n = sums[2 * c];
        mean_dy[ch] = (float)(sums[ch] / n);
        mean_dyx[ch] = (float)(sums[c + ch] / n);
    }
}

/* dx = gamma invstd (dy - mean_dy - xhat mean_dyx), the means over the global batch (bn_bwd_means_f32). */
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
