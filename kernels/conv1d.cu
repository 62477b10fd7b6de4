/* conv1d.cu: layout helpers of the bias-free Conv1d (dilation d, 'same' zero padding pad = (K - 1) d / 2:
 * y[b, o, l] = sum_{i, k} w[o, i, k] x[b, i, l + k d - pad]), which runs as per-tap cuBLAS GEMMs
 * (src/backend/cuda/ops.rs, k_conv_fwd / k_conv_bwd): for tap k the weight slice W_k (C_out, C_in) multiplies the
 * input shifted by k d - pad, strided-batched over the batch. These two kernels bring the weight into taps-major
 * order for that and sum the dW GEMMs' per-batch-part partial products back into dw's layout.
 * Twin of the whole op: src/backend/cpu/conv.rs (tests/cuda_kernels.rs compares forward, dx and dw). */

/* wt[k, o, i] = w[o, i, k] for w (C_out, C_in, K); 1-D grid-stride over the C_out C_in K elements. */
extern "C" __global__ void conv1d_w_to_taps_f32(const float* w, float* wt, i64 c_out, i64 c_in, i64 k) {
    i64 total = c_out * c_in * k;
    for (i64 idx = global_index(); idx < total; idx += grid_stride()) {
        i64 kk = idx % k, i = (idx / k) % c_in, o = idx / (k * c_in);
        wt[(kk * c_out + o) * c_in + i] = w[idx];
    }
}

/* dw[o, i, k] += sum_{s < parts} part[s, k, o, i] for part (parts, K, C_out, C_in): the per-tap dW GEMMs' partial
 * sums (one per part of the batch), added in part order; 1-D grid-stride over dw. */
extern "C" __global__ void conv1d_taps_add_dw_f32(const float* part, float* dw, i64 parts, i64 c_out, i64 c_in,
                                                  i64 k) {
    i64 total = c_out * c_in * k;
    for (i64 idx = global_index(); idx < total; idx += grid_stride()) {
        i64 kk = idx % k, i = (idx / k) % c_in, o = idx / (k * c_in);
        float acc = 0.0f;
        for (i64 s = 0; s < parts; s++) acc += part[((s * k + kk) * c_out + o) * c_in + i];
        dw[idx] += acc;
    }
}
