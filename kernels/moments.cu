/* moments.cu: per-channel f64 moments of (B, C, L) tensors, the statistics pass shared by batch norm (L = spatial
 * length) and the column standardisation of (N, C) matrices (B = N, L = 1). Results are this rank's partial sums;
 * they are added across ranks (the `Reduce` hook, in device memory) before the apply kernels run, so N ranks at
 * batch B/N see the statistics of the global batch. Launch: grid C blocks (one channel each), BLOCK threads. */

/* out[c] = sum x[b, c, l] when mean == NULL, else sum (x[b, c, l] - mean[c])^2 (two-pass variance). */
extern "C" __global__ void channel_moments_f64(const float* x, i64 b, i64 c, i64 l, const double* mean,
                                               double* out) {
    i64 ch = blockIdx.x;
    double mu = mean ? mean[ch] : 0.0, acc = 0.0;
    for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) {
        double v = (double)x[((j / l) * c + ch) * l + j % l];
        acc += mean ? (v - mu) * (v - mu) : v;
    }
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) out[ch] = s;
}

/* Gradient moments for the standardisation backward: out[c] = sum g, out[C + c] = sum g z (products in f64). */
extern "C" __global__ void channel_grad_moments_f64(const float* g, const float* z, i64 b, i64 c, i64 l,
                                                    double* out) {
    i64 ch = blockIdx.x;
    double sg = 0.0, sgz = 0.0;
    for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) {
        i64 idx = ((j / l) * c + ch) * l + j % l;
        sg += (double)g[idx];
        sgz += (double)g[idx] * (double)z[idx];
    }
    double s1 = block_sum_f64(sg);
    double s2 = block_sum_f64(sgz);
    if (threadIdx.x == 0) {
        out[ch] = s1;
        out[c + ch] = s2;
    }
}
