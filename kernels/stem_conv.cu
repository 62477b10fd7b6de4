/* stem_conv.cu: Conv1d(16 -> C_out, K, 'same', bias) over one-hot dinucleotides given as u8 tokens (B, T), as a
 * gather of weight columns: y[b, o, l] = bias[o] + sum_k W[o, tok(b, l + k - pad), k]; token 16 (N) and positions
 * outside [0, T) add nothing. No multiplies. Backward scatters dy into dW through a per-block shared-memory copy
 * of W[o] (16 * K floats), so global atomics are one per weight per block, not one per token.
 * Twin: src/backend/cpu/stem.rs. */

#define STEM_CHANNELS 16

/* One thread per output (b, o, l); 1-D grid-stride, BLOCK threads. */
extern "C" __global__ void stem_conv_fwd_f32(const u8* tokens, const float* w, const float* bias, float* y, i64 b,
                                             i64 t, i64 c_out, i64 k) {
    i64 pad = (k - 1) / 2, total = b * c_out * t;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 l = i % t, o = (i / t) % c_out, bb = i / (t * c_out);
        const u8* toks = tokens + bb * t;
        const float* wo = w + o * STEM_CHANNELS * k;
        float acc = bias[o];
        for (i64 kk = 0; kk < k; kk++) {
            i64 p = l + kk - pad;
            if (p < 0 || p >= t) continue;
            int tok = toks[p];
            if (tok < STEM_CHANNELS) acc += wo[tok * k + kk];
        }
        y[i] = acc;
    }
}

/* dW (C_out, 16, K) += scatter of dy, dbias (C_out) += sum of dy. Grid (C_out, B), BLOCK threads,
 * dynamic shared memory 16 * K floats. */
extern "C" __global__ void stem_conv_bwd_f32(const u8* tokens, const float* dy, float* dw, float* dbias, i64 t,
                                             i64 c_out, i64 k) {
    extern __shared__ float sdw[];
    i64 o = blockIdx.x, bb = blockIdx.y, pad = (k - 1) / 2;
    for (i64 i = threadIdx.x; i < STEM_CHANNELS * k; i += blockDim.x) sdw[i] = 0.0f;
    __syncthreads();
    const u8* toks = tokens + bb * t;
    const float* g = dy + (bb * c_out + o) * t;
    double bias_acc = 0.0;
    for (i64 l = threadIdx.x; l < t; l += blockDim.x) {
        float gv = g[l];
        bias_acc += gv;
        for (i64 kk = 0; kk < k; kk++) {
            i64 p = l + kk - pad;
            if (p < 0 || p >= t) continue;
            int tok = toks[p];
            if (tok < STEM_CHANNELS) atomicAdd(&sdw[tok * k + kk], gv);
        }
    }
    __syncthreads();
    for (i64 i = threadIdx.x; i < STEM_CHANNELS * k; i += blockDim.x) {
        if (sdw[i] != 0.0f) atomicAdd(&dw[o * STEM_CHANNELS * k + i], sdw[i]);
    }
    double s = block_sum_f64(bias_acc);
    if (threadIdx.x == 0) atomicAdd(&dbias[o], (float)s);
}
