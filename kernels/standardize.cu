/* standardize.cu: column standardisation of (N, C) matrices, z = (x - mean) invstd (invstd 0 marks a constant
 * column), and its backward dx = invstd (g - mean_g - z cov_g), shared by the Pearson penalty (corr.cu) and the R2
 * score (r2.cu). The column moments come from moments.cu with L = 1 and are summed across ranks in device memory.
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

/* Column statistics finished on the device (the twin's `col_stats2`; issue 19 item 2): the f64 column sums of a
 * (N, C_a) and b (N, C_b) with the count appended, and the centred squares, are summed across ranks in device
 * memory; these kernels turn them into the packed f32 statistics. */

/* sums[k] = n: this rank's sample count appended to a vector of sums. One thread. */
extern "C" __global__ void put_count_f64(double* sums, i64 k, double n) {
    if (global_index() == 0) sums[k] = n;
}

/* mean[j] = sums[j] / n (0 when n == 0), n = sums[k]. */
extern "C" __global__ void col_mean_f64(const double* sums, i64 k, double* mean) {
    for (i64 j = global_index(); j < k; j += grid_stride()) {
        double n = sums[k];
        mean[j] = n > 0.0 ? sums[j] / n : 0.0;
    }
}

/* packed = [mean_a (C_a), invstd_a (C_a), mean_b (C_b), invstd_b (C_b)] in f32 and packed[n_at] = n = sums[C_a + C_b].
 * invstd = 1 / sample std; 0 for a constant column (n < 2, or population std within 4 f32 epsilons of |mean|). */
extern "C" __global__ void col_stats_finish_f32(const double* sums, const double* mean, const double* m2, i64 ca,
                                                i64 cb, i64 n_at, float* packed) {
    i64 k = ca + cb;
    double n = sums[k];
    for (i64 j = global_index(); j < k; j += grid_stride()) {
        bool constant = n < 2.0 || sqrt(m2[j] / n) <= 4.0 * 1.1920928955078125e-7 * fabs(mean[j]);
        double inv = constant ? 0.0 : 1.0 / sqrt(m2[j] / (n - 1.0));
        i64 at_mean = j < ca ? j : 2 * ca + (j - ca);
        i64 at_inv = j < ca ? ca + j : 2 * ca + cb + (j - ca);
        packed[at_mean] = (float)mean[j];
        packed[at_inv] = (float)inv;
    }
    if (global_index() == 0) packed[n_at] = (float)n;
}

/* Backward scalars of one block of columns: mean_g = s[j] / n, cov_g = s[C + j] / (n - 1) (0 when n <= 1), from
 * the global [sum g (C), sum g z (C)], n = stats[n_at] (the f32 count as stored). */
extern "C" __global__ void std_bwd_scalars_f32(const double* s, i64 c, const float* stats, i64 n_at, float* mean_g,
                                               float* cov_g) {
    double n = (double)stats[n_at];
    for (i64 j = global_index(); j < c; j += grid_stride()) {
        mean_g[j] = (float)(s[j] / n);
        cov_g[j] = (float)(n > 1.0 ? s[c + j] / (n - 1.0) : 0.0);
    }
}
