/* matmul.cu: the bias helpers of the linear layer (row-wise bias add, accumulated column sums). The products
 * themselves run on cuBLAS (src/backend/cuda/cublas.rs). Twin: src/backend/cpu/matmul.rs. */

/* y[r, j] += bias[j] for y (rows, d); 1-D grid-stride. */
extern "C" __global__ void bias_add_rows_f32(float* y, const float* bias, i64 rows, i64 d) {
    for (i64 i = global_index(); i < rows * d; i += grid_stride()) y[i] += bias[i % d];
}

/* out[j] += sum_r x[r, j] for x (rows, d); one thread per column, rows summed in order (as the CPU twin). */
extern "C" __global__ void col_sums_accum_f32(const float* x, float* out, i64 rows, i64 d) {
    for (i64 j = global_index(); j < d; j += grid_stride()) {
        float acc = 0.0f;
        for (i64 r = 0; r < rows; r++) acc += x[r * d + j];
        out[j] += acc;
    }
}
