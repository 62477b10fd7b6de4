/* activation.cu: GELU (tanh approximation), ReLU and leaky ReLU (slope 0.01), forward and backward (from the
 * forward input, as PyTorch). act: 0 = GELU, 1 = ReLU, 2 = leaky ReLU (the Rust `Activation` order).
 * Twin: src/backend/cpu/activation.rs. Launch: 1-D grid-stride, BLOCK threads. */

#define GELU_BETA 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_KAPPA 0.044715f
#define LEAKY_SLOPE 0.01f

__device__ __forceinline__ float act_fwd(int act, float x) {
    if (act == 0) return 0.5f * x * (1.0f + tanhf(GELU_BETA * (x + GELU_KAPPA * x * x * x)));
    if (act == 1) return x > 0.0f ? x : 0.0f;
    return x > 0.0f ? x : x * LEAKY_SLOPE;
}

/* Derivative as PyTorch defines it at the kink (0 for ReLU, the slope for leaky ReLU at x = 0). */
__device__ __forceinline__ float act_grad(int act, float x) {
    if (act == 0) {
        float x2 = x * x;
        float t = tanhf(GELU_BETA * (x + GELU_KAPPA * x2 * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x2);
    }
    if (act == 1) return x > 0.0f ? 1.0f : 0.0f;
    return x > 0.0f ? 1.0f : LEAKY_SLOPE;
}

extern "C" __global__ void activation_fwd_f32(int act, const float* x, float* y, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) y[i] = act_fwd(act, x[i]);
}

extern "C" __global__ void activation_bwd_f32(int act, const float* x, const float* dy, float* dx, i64 n) {
    for (i64 i = global_index(); i < n; i += grid_stride()) dx[i] = act_grad(act, x[i]) * dy[i];
}
