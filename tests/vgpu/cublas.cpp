/* cublas.cpp: the fake cuBLAS (libcublas.so.13) of the virtual GPU. cudarc resolves each cuBLAS symbol by name at
 * first use, so this library implements only the entry points mfd reaches (handle, stream, math mode, the f32 GEMMs
 * and the Ex GEMMs), with the real signatures and status codes.
 *
 * "Device" memory is host memory (cuda.cpp) and streams complete every operation when it is issued, so each GEMM
 * runs on the host when it is called, in the caller's stream order. Every operand range (per batch entry) is checked
 * against the driver's allocations through `vgpu_library_call` (exported by libcuda.so.1), which also counts the
 * call as a launch; a range outside one allocation fails with CUBLAS_STATUS_EXECUTION_FAILED and a "vgpu cublas:"
 * report on stderr.
 *
 * Arithmetic: column-major C = alpha op(A) op(B) + beta C, f32 products accumulated in f32 in k order (beta = 0
 * ignores C, even NaN). The precision modes are emulated so that looser tolerances mean something:
 * CUBLAS_COMPUTE_32F_FAST_TF32 rounds every f32 input to TF32 (10 explicit mantissa bits, round to nearest, ties
 * away, as cvt.rna.tf32.f32), CUBLAS_COMPUTE_32F_FAST_16BF rounds every f32 input to bf16 (round to nearest even),
 * and CUDA_R_16BF inputs are widened exactly. Accumulation and output stay f32, as on tensor cores. */
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

typedef int cublasStatus_t;
typedef void* cublasHandle_t;
typedef void* cudaStream_t;

enum : int {
    ST_SUCCESS = 0,
    ST_NOT_INITIALIZED = 1,
    ST_INVALID_VALUE = 7,
    ST_EXECUTION_FAILED = 13,
    ST_NOT_SUPPORTED = 15,
};
enum : int { OP_N = 0, OP_T = 1, OP_C = 2 };
enum : int { R_32F = 0, R_16BF = 14 };
enum : int { COMPUTE_32F = 68, COMPUTE_32F_PEDANTIC = 69, COMPUTE_32F_FAST_16BF = 75, COMPUTE_32F_FAST_TF32 = 77 };

namespace {

struct Handle {
    cudaStream_t stream = nullptr;
    int math_mode = 0;
};

cublasStatus_t fail(cublasStatus_t s, const std::string& what) {
    fprintf(stderr, "vgpu cublas: %s\n", what.c_str());
    return s;
}

/* The driver's range check and launch counter (cuda.cpp); null when the fake driver is not loaded. */
typedef int (*LibraryCall)(const char* op, const uintptr_t* starts, const size_t* bytes, int n);
LibraryCall library_call() {
    static LibraryCall f = [] {
        void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD); /* loaded RTLD_LOCAL by cudarc: ask it by name */
        return h ? (LibraryCall)dlsym(h, "vgpu_library_call") : nullptr;
    }();
    return f;
}

float tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0x7F800000u) return x; /* inf, NaN */
    u = (u + 0x1000u) & 0xFFFFE000u;                 /* ties away from zero: add half an ulp of TF32 to |x| */
    memcpy(&x, &u, 4);
    return x;
}

float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0x7F800000u) {
        if (u & 0x007FFFFFu) u |= 0x00400000u; /* keep NaN a NaN */
        u &= 0xFFFF0000u;
    } else {
        u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u; /* round to nearest even */
    }
    memcpy(&x, &u, 4);
    return x;
}

float bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Element `idx` of an operand of type `type`, rounded as the compute type asks. */
inline float load(const void* p, int type, size_t idx, int compute) {
    if (type == R_16BF) return bf16_widen(((const uint16_t*)p)[idx]);
    float v = ((const float*)p)[idx];
    if (compute == COMPUTE_32F_FAST_TF32) return tf32(v);
    if (compute == COMPUTE_32F_FAST_16BF) return bf16_round(v);
    return v;
}

struct Gemm {
    const char* op;
    int ta, tb, m, n, k;
    float alpha, beta;
    const void* a;
    int a_type, lda;
    long long sa;
    const void* b;
    int b_type, ldb;
    long long sb;
    float* c;
    int ldc;
    long long sc;
    int batch, compute;
};

size_t type_bytes(int t) { return t == R_16BF ? 2 : 4; }

/* Elements spanned by a column-major (rows, cols) operand with leading dimension ld. */
size_t extent(int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : (size_t)(cols - 1) * ld + rows; }

cublasStatus_t run(cublasHandle_t h, const Gemm& g) {
    if (!h) return fail(ST_NOT_INITIALIZED, std::string(g.op) + ": null handle");
    if ((g.ta != OP_N && g.ta != OP_T) || (g.tb != OP_N && g.tb != OP_T))
        return fail(ST_INVALID_VALUE, std::string(g.op) + ": only CUBLAS_OP_N and CUBLAS_OP_T are emulated");
    if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
        return fail(ST_INVALID_VALUE, std::string(g.op) + ": negative size");
    int ar = g.ta == OP_N ? g.m : g.k, ac = g.ta == OP_N ? g.k : g.m;
    int br = g.tb == OP_N ? g.k : g.n, bc = g.tb == OP_N ? g.n : g.k;
    if (g.lda < std::max(1, ar) || g.ldb < std::max(1, br) || g.ldc < std::max(1, g.m))
        return fail(ST_INVALID_VALUE, std::string(g.op) + ": leading dimension below the operand's rows (lda " +
                                          std::to_string(g.lda) + ", ldb " + std::to_string(g.ldb) + ", ldc " +
                                          std::to_string(g.ldc) + ")");
    if (g.a_type != g.b_type || (g.a_type != R_32F && g.a_type != R_16BF))
        return fail(ST_NOT_SUPPORTED, std::string(g.op) + ": A and B must both be CUDA_R_32F or both CUDA_R_16BF");
    if (g.compute != COMPUTE_32F && g.compute != COMPUTE_32F_PEDANTIC && g.compute != COMPUTE_32F_FAST_TF32 &&
        g.compute != COMPUTE_32F_FAST_16BF)
        return fail(ST_NOT_SUPPORTED, std::string(g.op) + ": compute type " + std::to_string(g.compute));
    if (g.m == 0 || g.n == 0 || g.batch == 0) return ST_SUCCESS;
    /* Every operand range of every batch entry inside one allocation. */
    std::vector<uintptr_t> starts;
    std::vector<size_t> bytes;
    size_t ea = extent(ar, ac, g.lda), eb = extent(br, bc, g.ldb), ec = extent(g.m, g.n, g.ldc);
    for (int i = 0; i < g.batch; i++) {
        starts.push_back((uintptr_t)g.a + (uintptr_t)(g.sa * i * (long long)type_bytes(g.a_type)));
        bytes.push_back(ea * type_bytes(g.a_type));
        starts.push_back((uintptr_t)g.b + (uintptr_t)(g.sb * i * (long long)type_bytes(g.b_type)));
        bytes.push_back(eb * type_bytes(g.b_type));
        starts.push_back((uintptr_t)(g.c + g.sc * i));
        bytes.push_back(ec * 4);
    }
    if (LibraryCall f = library_call())
        if (f(g.op, starts.data(), bytes.data(), (int)starts.size()) != 0)
            return fail(ST_EXECUTION_FAILED, std::string(g.op) + ": operand outside its allocation (see vgpu report)");
    std::vector<float> arow((size_t)g.k);
    for (int bi = 0; bi < g.batch; bi++) {
        const char* a = (const char*)g.a + g.sa * bi * (long long)type_bytes(g.a_type);
        const char* b = (const char*)g.b + g.sb * bi * (long long)type_bytes(g.b_type);
        float* c = g.c + g.sc * bi;
        for (int i = 0; i < g.m; i++) {
            for (int p = 0; p < g.k; p++) {
                size_t idx = g.ta == OP_N ? (size_t)p * g.lda + i : (size_t)i * g.lda + p;
                arow[p] = load(a, g.a_type, idx, g.compute);
            }
            for (int j = 0; j < g.n; j++) {
                float acc = 0.0f;
                for (int p = 0; p < g.k; p++) {
                    size_t idx = g.tb == OP_N ? (size_t)j * g.ldb + p : (size_t)p * g.ldb + j;
                    acc += arow[p] * load(b, g.b_type, idx, g.compute);
                }
                float* cv = &c[(size_t)j * g.ldc + i];
                *cv = g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * *cv;
            }
        }
    }
    return ST_SUCCESS;
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
    if (!h) return ST_INVALID_VALUE;
    *h = new Handle();
    return ST_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    if (!h) return ST_NOT_INITIALIZED;
    delete (Handle*)h;
    return ST_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    if (!h) return ST_NOT_INITIALIZED;
    ((Handle*)h)->stream = s;
    return ST_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t* s) {
    if (!h) return ST_NOT_INITIALIZED;
    *s = ((Handle*)h)->stream;
    return ST_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, int mode) {
    if (!h) return ST_NOT_INITIALIZED;
    ((Handle*)h)->math_mode = mode;
    return ST_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, int* mode) {
    if (!h) return ST_NOT_INITIALIZED;
    *mode = ((Handle*)h)->math_mode;
    return ST_SUCCESS;
}

/* CUBLAS_TF32_TENSOR_OP_MATH (3) makes the plain f32 GEMMs TF32, as on the real library. */
static int f32_compute(cublasHandle_t h) {
    return h && (((Handle*)h)->math_mode & 0xF) == 3 ? COMPUTE_32F_FAST_TF32 : COMPUTE_32F;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, const float* b, int ldb, const float* beta, float* c,
                              int ldc) {
    return run(h, Gemm{"cublasSgemm_v2", ta, tb, m, n, k, *alpha, *beta, a, R_32F, lda, 0, b, R_32F, ldb, 0, c, ldc,
                       0, 1, f32_compute(h)});
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha,
                                         const float* a, int lda, long long sa, const float* b, int ldb,
                                         long long sb, const float* beta, float* c, int ldc, long long sc,
                                         int batch) {
    return run(h, Gemm{"cublasSgemmStridedBatched", ta, tb, m, n, k, *alpha, *beta, a, R_32F, lda, sa, b, R_32F, ldb,
                       sb, c, ldc, sc, batch, f32_compute(h)});
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a,
                            int a_type, int lda, const void* b, int b_type, int ldb, const void* beta, void* c,
                            int c_type, int ldc, int compute, int /*algo*/) {
    if (c_type != R_32F) return fail(ST_NOT_SUPPORTED, "cublasGemmEx: only CUDA_R_32F output is emulated");
    return run(h, Gemm{"cublasGemmEx", ta, tb, m, n, k, *(const float*)alpha, *(const float*)beta, a, a_type, lda, 0,
                       b, b_type, ldb, 0, (float*)c, ldc, 0, 1, compute});
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, int ta, int tb, int m, int n, int k, const void* alpha,
                                          const void* a, int a_type, int lda, long long sa, const void* b,
                                          int b_type, int ldb, long long sb, const void* beta, void* c, int c_type,
                                          int ldc, long long sc, int batch, int compute, int /*algo*/) {
    if (c_type != R_32F)
        return fail(ST_NOT_SUPPORTED, "cublasGemmStridedBatchedEx: only CUDA_R_32F output is emulated");
    return run(h, Gemm{"cublasGemmStridedBatchedEx", ta, tb, m, n, k, *(const float*)alpha, *(const float*)beta, a,
                       a_type, lda, sa, b, b_type, ldb, sb, (float*)c, ldc, sc, batch, compute});
}

} // extern "C"
