/* corr.cu: the minibatch Pearson (correlation-norm) penalty's cross-product pass: acc[i, j] = sum_n za[n, i] zb[n, j]
 * in f64, this rank's partial (the host adds it across ranks, divides by the global N and takes ||R||_F). The
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
