/* standardize.cu: column standardisation of (N, C) matrices, z = (x - mean) invstd (invstd 0 marks a constant
 * column), and its backward dx = invstd (g - mean_g - z cov_g), shared by the Pearson penalty (corr.cu) and the R2
 * score (r2.cu). The column moments come from moments.cu with L = 1 and are summed across ranks on the host.
 * Twin: src/backend/cpu/standardize.rs. Launch: 1-D grid-stride, BLOCK threads. */

extern "C" __global__ void standardize_f32(const float* x, const float* mean, const float* invstd, float* z, i64 n,
                                           i64 c) {
    for (i64 i = global_index(); i < n * c; i += grid_stride()) {
        i64 j = i % c;
        z[i] = (x[i] - mean[j]) * invstd[j];
    }
}

/* In place: g holds dL/dz on entry, dL/dx on exit. mean_g = sum(g) / N, cov_g = sum(g z) / (N - 1) (global). */
extern "C" __global__ void standardize_bwd_f32(float* g, const float* z, const float* invstd, const float* mean_g,
                                               const float* cov_g, i64 n, i64 c) {
    for (i64 i = global_index(); i < n * c; i += grid_stride()) {
        i64 j = i % c;
        g[i] = invstd[j] * (g[i] - mean_g[j] - z[i] * cov_g[j]);
    }
}
