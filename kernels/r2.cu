/* r2.cu: the adversary's per-feature correlation score total_R2: the per-column pass r_j = sum_n zp[n, j] zt[n, j]
 * (f64 partial, summed across ranks by the host, which also clips and squares), and the backward
 * dpred[n, j] = g[j] zt[n, j], dtarget[n, j] = g[j] zp[n, j] before the standardisation backward.
 * Twin: src/backend/cpu/r2.rs. Launch: col_dot one thread per column; r2_grad 1-D grid-stride. */

extern "C" __global__ void r2_col_dot_f64(const float* zp, const float* zt, i64 n, i64 c, double* out) {
    for (i64 j = global_index(); j < c; j += grid_stride()) {
        double s = 0.0;
        for (i64 r = 0; r < n; r++) s += (double)zp[r * c + j] * (double)zt[r * c + j];
        out[j] = s;
    }
}

extern "C" __global__ void r2_grad_f32(const float* zp, const float* zt, const float* g, float* dpred,
                                       float* dtarget, i64 n, i64 c) {
    for (i64 i = global_index(); i < n * c; i += grid_stride()) {
        i64 j = i % c;
        dpred[i] = g[j] * zt[i];
        dtarget[i] = g[j] * zp[i];
    }
}
