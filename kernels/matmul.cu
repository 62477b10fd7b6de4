/* matmul.cu: row-major sgemm C (m, n) = alpha op(A) op(B) + beta C with leading dimensions (so column slices of
 * wider matrices, e.g. the technical half of the (B, 2C) features, are operands without copies), plus the bias
 * helpers of the linear layer (row-wise bias add, accumulated column sums).
 * A is (m, k) with row stride lda, or (k, m) when ta; B is (k, n) with row stride ldb, or (n, k) when tb.
 * beta = 0 overwrites C (old contents, even NaN, ignored, as BLAS). Twin: src/backend/cpu/matmul.rs.
 * Launch of gemm_f32: grid (ceil(n / 16), ceil(m / 16)), block (16, 16); 2 KB static shared memory. */

#define TILE 16

extern "C" __global__ void gemm_f32(i64 m, i64 n, i64 k, float alpha, const float* a, i64 lda, int ta,
                                    const float* bm, i64 ldb, int tb, float beta, float* c, i64 ldc) {
    __shared__ float sa[TILE][TILE + 1];
    __shared__ float sb[TILE][TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    i64 row = (i64)blockIdx.y * TILE + ty, col = (i64)blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (i64 p0 = 0; p0 < k; p0 += TILE) {
        /* sa[ty][tx] = op(A)[row, p0 + tx]; sb[ty][tx] = op(B)[p0 + ty, col] */
        i64 pa = p0 + tx, pb = p0 + ty;
        float av = 0.0f, bv = 0.0f;
        if (row < m && pa < k) av = ta ? a[pa * lda + row] : a[row * lda + pa];
        if (col < n && pb < k) bv = tb ? bm[col * ldb + pb] : bm[pb * ldb + col];
        sa[ty][tx] = av;
        sb[ty][tx] = bv;
        __syncthreads();
        for (int q = 0; q < TILE; q++) acc += sa[ty][q] * sb[q][tx];
        __syncthreads();
    }
    if (row < m && col < n) {
        float* cv = &c[row * ldc + col];
        *cv = beta == 0.0f ? alpha * acc : alpha * acc + beta * *cv;
    }
}

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
