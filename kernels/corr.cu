/* corr.cu: the minibatch Pearson (correlation-norm) penalty's cross-product pass: acc[i, j] = sum_n za[n, i] zb[n, j]
 * in f64, this rank's partial (summed across ranks; corr_finish_f32 divides by the global N and takes ||R||_F). The
 * backward's products (dza = zb dR^T, dzb = za dR) run through gemm_f32 (matmul.cu) and the standardisation
 * backward (standardize.cu). Twin: src/backend/cpu/corr.rs. Launch: one thread per (i, j), 1-D grid-stride. */

extern "C" __global__ void corr_cross_f64(const float* za, const float* zb, i64 n, i64 c_a, i64 c_b, double* acc) {
    for (i64 idx = global_index(); idx < c_a * c_b; idx += grid_stride()) {
        i64 i = idx / c_b, j = idx % c_b;
        double s = 0.0;
        for (i64 r = 0; r < n; r++) s += (double)za[r * c_a + i] * (double)zb[r * c_b + j];
        acc[idx] = s;
    }
}

/* Finished on the device (issue 19 item 2): r = acc / n (0 when n == 0; n = sums[n_at], the global count) and
 * value[0] = ||R||_F = sqrt(sum r^2), the squares of the f64 r summed in index order by one thread (the twin's
 * order, so the value and the training trajectory match the host computation this replaces bit for bit; C_a C_b
 * terms, a few microseconds). One block of BLOCK threads. */
extern "C" __global__ void corr_finish_f32(const double* acc, i64 k, const double* sums, i64 n_at, float* r,
                                           float* value) {
    double n = sums[n_at];
    for (i64 i = threadIdx.x; i < k; i += blockDim.x) r[i] = (float)(n > 0.0 ? acc[i] / n : 0.0);
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (i64 i = 0; i < k; i++) {
            double rij = n > 0.0 ? acc[i] / n : 0.0;
            s += rij * rij;
        }
        value[0] = (float)sqrt(s);
    }
}

/* Backward: dr = g r, g = dvalue / ||r|| / n (0 when ||r|| or n is 0), ||r|| of the stored f32 r in f64 summed in
 * index order by one thread (the twin's order), n = stats[n_at]. One block of BLOCK threads. */
extern "C" __global__ void corr_bwd_dr_f32(const float* r, i64 k, const float* stats, i64 n_at, float dvalue,
                                           float* dr) {
    __shared__ double g_shared;
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (i64 i = 0; i < k; i++) s += (double)r[i] * (double)r[i];
        double norm = sqrt(s), n = (double)stats[n_at];
        g_shared = norm > 0.0 && n > 0.0 ? (double)dvalue / norm / n : 0.0;
    }
    __syncthreads();
    double g = g_shared;
    for (i64 i = threadIdx.x; i < k; i += blockDim.x) dr[i] = (float)(g * (double)r[i]);
}
