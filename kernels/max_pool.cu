/* max_pool.cu: MaxPool1d(2, 2), floor mode, over (rows = B * C, L). The forward stores which element of each pair
 * won (u8 0/1, the first on ties, NaN wins as in PyTorch); the backward routes dy to it.
 * Twin: src/backend/cpu/pool.rs. Launch: 1-D grid-stride, BLOCK threads. */

extern "C" __global__ void max_pool_fwd_f32(const float* x, float* y, u8* argmax, i64 rows, i64 l) {
    i64 lo = l / 2, total = rows * lo;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 r = i / lo, j = i % lo;
        float a = x[r * l + 2 * j], b = x[r * l + 2 * j + 1];
        bool second = b > a || isnan(b);
        y[i] = second ? b : a;
        argmax[i] = second ? 1 : 0;
    }
}

/* One thread per dx element: dy where the argmax points, zero at the loser and at an odd trailing element. */
extern "C" __global__ void max_pool_bwd_f32(const float* dy, const u8* argmax, float* dx, i64 rows, i64 l) {
    i64 lo = l / 2, total = rows * l;
    for (i64 i = global_index(); i < total; i += grid_stride()) {
        i64 r = i / l, p = i % l, j = p / 2;
        dx[i] = (j < lo && argmax[r * lo + j] == (p & 1)) ? dy[r * lo + j] : 0.0f;
    }
}
