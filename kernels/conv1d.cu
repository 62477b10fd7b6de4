/* conv1d.cu: bias-free Conv1d, dilation d, 'same' zero padding pad = (K - 1) d / 2: y[b, o, l] =
 * sum_{i, k} w[o, i, k] x[b, i, l + k d - pad]. Backward: dx (transposed conv, written) and dW (+=).
 * Direct kernels, one output element per thread (dW: one block per weight, a block reduction over (B, L)): simple
 * and correct; architecture.md allows replacing them by cuBLAS/tensor-core kernels once measured.
 * Twin: src/backend/cpu/conv.rs. */

/* One thread per y element (B, C_out, L); 1-D grid-stride, BLOCK threads. */
extern "C" __global__ void conv1d_fwd_f32(const float* x, const float* w, float* y, i64 b, i64 c_in, i64 c_out,
                                          i64 l, i64 k, i64 dil) {
    i64 pad = (k - 1) * dil / 2, total = b * c_out * l;
    for (i64 idx = global_index(); idx < total; idx += grid_stride()) {
        i64 pos = idx % l, o = (idx / l) % c_out, bb = idx / (l * c_out);
        float acc = 0.0f;
        for (i64 i = 0; i < c_in; i++) {
            const float* xr = x + (bb * c_in + i) * l;
            const float* wr = w + (o * c_in + i) * k;
            for (i64 kk = 0; kk < k; kk++) {
                i64 p = pos + kk * dil - pad;
                if (p >= 0 && p < l) acc += wr[kk] * xr[p];
            }
        }
        y[idx] = acc;
    }
}

/* One thread per dx element (B, C_in, L): dx[b, i, p] = sum_{o, k} dy[b, o, p - k d + pad] w[o, i, k]. */
extern "C" __global__ void conv1d_bwd_dx_f32(const float* dy, const float* w, float* dx, i64 b, i64 c_in,
                                             i64 c_out, i64 l, i64 k, i64 dil) {
    i64 pad = (k - 1) * dil / 2, total = b * c_in * l;
    for (i64 idx = global_index(); idx < total; idx += grid_stride()) {
        i64 p = idx % l, i = (idx / l) % c_in, bb = idx / (l * c_in);
        float acc = 0.0f;
        for (i64 o = 0; o < c_out; o++) {
            const float* gr = dy + (bb * c_out + o) * l;
            const float* wr = w + (o * c_in + i) * k;
            for (i64 kk = 0; kk < k; kk++) {
                i64 pos = p - kk * dil + pad;
                if (pos >= 0 && pos < l) acc += wr[kk] * gr[pos];
            }
        }
        dx[idx] = acc;
    }
}

/* dw[o, i, k] += sum_{b, l} dy[b, o, l] x[b, i, l + k d - pad]. Grid: one block per weight (C_out * C_in * K),
 * BLOCK threads striding over (B, L), partial sums in f64. */
extern "C" __global__ void conv1d_bwd_dw_f32(const float* x, const float* dy, float* dw, i64 b, i64 c_in,
                                             i64 c_out, i64 l, i64 k, i64 dil) {
    i64 widx = blockIdx.x;
    i64 kk = widx % k, i = (widx / k) % c_in, o = widx / (k * c_in);
    i64 pad = (k - 1) * dil / 2, off = kk * dil - pad;
    double acc = 0.0;
    for (i64 j = threadIdx.x; j < b * l; j += blockDim.x) {
        i64 bb = j / l, pos = j % l, p = pos + off;
        if (p >= 0 && p < l) acc += (double)dy[(bb * c_out + o) * l + pos] * (double)x[(bb * c_in + i) * l + p];
    }
    double s = block_sum_f64(acc);
    if (threadIdx.x == 0) dw[widx] += (float)s;
}
