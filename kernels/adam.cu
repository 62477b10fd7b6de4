/* adam.cu: one PyTorch Adam(amsgrad=True) update, operation for operation in f32 as the single-tensor path:
 * g' = g + wd p; m = lerp(m, g', 1 - b1); v = v b2 + (1 - b2) g'^2; vmax = max(vmax, v);
 * p += neg_step * m / (sqrt(vmax) / bc2_sqrt + eps). The step scalars are computed on the host in f64 (as Python
 * does) and passed rounded to f32. Twin: src/backend/cpu/adam.rs. Launch: 1-D grid-stride, BLOCK threads. */

__device__ __forceinline__ float torch_lerp(float start, float end, float w) {
    return w < 0.5f ? start + w * (end - start) : end - (end - start) * (1.0f - w);
}

extern "C" __global__ void amsgrad_f32(float* p, const float* grad, float* m, float* v, float* vmax, i64 n,
                                       float neg_step, float bc2_sqrt, float w1, float b2, float w2, float wd,
                                       int use_wd, float eps) {
    for (i64 i = global_index(); i < n; i += grid_stride()) {
        float g = use_wd ? grad[i] + wd * p[i] : grad[i];
        float mi = torch_lerp(m[i], g, w1);
        float vi = v[i] * b2 + w2 * g * g;
        float vm = fmaxf(vmax[i], vi);
        m[i] = mi;
        v[i] = vi;
        vmax[i] = vm;
        float denom = sqrtf(vm) / bc2_sqrt + eps;
        p[i] += neg_step * (mi / denom);
    }
}
