/* r2.cu: the adversary's per-feature correlation score total_R2: the per-column pass r_j = sum_n zp[n, j] zt[n, j]
 * (f64 partial, summed across ranks; r2_finish_f32 clips and squares), and the backward
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

/* Finished on the device (issue 19 item 2): stats[4C + j] = r_j = dot_j / n (0 when n == 0; n = sums[2C], the
 * global count) and score[0] = sum_j clamp(r_j, -1, 1)^2 in f64, summed in column order by one thread (the twin's
 * order). One block of BLOCK threads. */
extern "C" __global__ void r2_finish_f32(const double* dot, i64 c, const double* sums, float* stats, float* score) {
    double n = sums[2 * c];
    for (i64 j = threadIdx.x; j < c; j += blockDim.x) stats[4 * c + j] = (float)(n > 0.0 ? dot[j] / n : 0.0);
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (i64 j = 0; j < c; j++) {
            double rj = n > 0.0 ? dot[j] / n : 0.0;
            double q = rj < -1.0 ? -1.0 : (rj > 1.0 ? 1.0 : rj);
            s += q * q;
        }
        score[0] = (float)s;
    }
}

/* Backward: g[j] = dscore 2 r_j / n where r_j (stats[4C + j]) is inside [-1, 1] (the clip's gradient), else 0;
 * n = stats[5C]. */
extern "C" __global__ void r2_bwd_scale_f32(const float* stats, i64 c, float dscore, float* g) {
    double n = (double)stats[5 * c];
    for (i64 j = global_index(); j < c; j += grid_stride()) {
        double r = (double)stats[4 * c + j];
        bool inside = r >= -1.0 && r <= 1.0;
        g[j] = (float)(inside && n > 0.0 ? (double)dscore * 2.0 * r / n : 0.0);
    }
}
