/* head_bce.cu: the hypernetwork output layer with fused sigmoid + BCE over bit-packed labels.
 * logit[b, j] = f_tech[b] . W_tech[j] + f_bio[b] . W_bio[j] + bias[j], features (B, 2C) = [tech | bio], W (O, C);
 * p = sigmoid(logit); loss = mean over B O of -max(ln p, -100) (label 1) or -max(ln(1 - p), -100) (label 0), as
 * torch BCELoss on probabilities. Label bit j of row b: byte b * row_bytes + j / 8, bit j % 8 (LSB first).
 * Backward: dz exactly as autograd through sigmoid + BCELoss ((p - y) / max(p (1 - p), 1e-12) / (B O) (1 - p) p,
 * so a saturated f32 sigmoid gives 0); d_features and dW are cuBLAS products (cublas.rs).
 * Twin: src/backend/cpu/head.rs. Launch of head_fwd_f32: grid (ceil(O / 16), ceil(B / 16)), block (16, 16), 4 KB
 * static shared memory; loss_sum (one f64) must be zeroed before the launch. */

#define HT 16
#define LOG_CLAMP -100.0f
#define BCE_GRAD_EPS 1e-12f

__device__ __forceinline__ bool label_bit(const u8* labels, i64 row_bytes, i64 b, i64 j) {
    return (labels[b * row_bytes + j / 8] >> (j % 8)) & 1;
}

/* mode 0 (training): probs and loss_sum (+= sum of -clamped log terms of this block, one f64 atomic per block).
 * mode 1 (eval): logit_tech, logit_bio (no bias) and probs; labels and loss_sum unused (may be NULL). */
extern "C" __global__ void head_fwd_f32(const float* features, const float* w_tech, const float* w_bio,
                                        const float* bias, const u8* labels, float* probs, float* logit_tech,
                                        float* logit_bio, double* loss_sum, i64 b, i64 c, i64 o, i64 row_bytes,
                                        int mode) {
    __shared__ float sf[HT][HT + 1];
    __shared__ float sw[HT][HT + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    i64 row = (i64)blockIdx.y * HT + ty;     /* batch row b of this thread's output */
    i64 col = (i64)blockIdx.x * HT + tx;     /* class j of this thread's output */
    i64 wrow = (i64)blockIdx.x * HT + ty;    /* class whose weights this thread loads */
    float acc[2] = {0.0f, 0.0f};
    for (int half = 0; half < 2; half++) {
        const float* w = half == 0 ? w_tech : w_bio;
        for (i64 k0 = 0; k0 < c; k0 += HT) {
            i64 kk = k0 + tx;
            sf[ty][tx] = (row < b && kk < c) ? features[row * 2 * c + half * c + kk] : 0.0f;
            sw[ty][tx] = (wrow < o && kk < c) ? w[wrow * c + kk] : 0.0f;
            __syncthreads();
            for (int q = 0; q < HT; q++) acc[half] += sf[ty][q] * sw[tx][q];
            __syncthreads();
        }
    }
    double term = 0.0;
    if (row < b && col < o) {
        i64 out = row * o + col;
        float z = acc[0] + acc[1] + bias[col];
        float p = 1.0f / (1.0f + expf(-z));
        probs[out] = p;
        if (mode == 1) {
            logit_tech[out] = acc[0];
            logit_bio[out] = acc[1];
        } else {
            float t = label_bit(labels, row_bytes, row, col) ? logf(p) : log1pf(-p);
            term = -(double)fmaxf(t, LOG_CLAMP);
        }
    }
    if (mode == 0) {
        /* Block reduction over the 256 threads (flattened index), then one atomic. */
        __shared__ double red[HT * HT];
        int t = ty * HT + tx;
        red[t] = term;
        __syncthreads();
        for (int s = HT * HT / 2; s > 0; s >>= 1) {
            if (t < s) red[t] += red[t + s];
            __syncthreads();
        }
        if (t == 0) atomicAdd(loss_sum, red[0]);
    }
}

/* dz (B, O) from probs and labels; count = B O as f32. 1-D grid-stride, BLOCK threads. */
extern "C" __global__ void head_bce_dz_f32(const float* probs, const u8* labels, float* dz, i64 b, i64 o,
                                           i64 row_bytes, float count) {
    for (i64 i = global_index(); i < b * o; i += grid_stride()) {
        i64 r = i / o, j = i % o;
        float p = probs[i];
        float y = label_bit(labels, row_bytes, r, j) ? 1.0f : 0.0f;
        float dp = (p - y) / fmaxf((1.0f - p) * p, BCE_GRAD_EPS) / count;
        dz[i] = dp * (1.0f - p) * p;
    }
}
