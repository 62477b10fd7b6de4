//! The virtual GPU (tests/vgpu) catches what it must: deliberately broken kernels are reported, not run quietly.
//! Each case compiles a small CUDA source through the (fake) NVRTC, launches it through cudarc, and asserts the
//! launch fails with a report naming the file and line, or (the missing barrier) that the result is wrong in
//! every thread order while the correct kernel is right in every order.
//!
//! Runs only under `tests/vgpu/run.sh` (MFD_VGPU=1): on a real GPU these kernels would hang or race.

use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use std::sync::Arc;

fn vgpu() -> Option<Arc<CudaContext>> {
    if std::env::var("MFD_VGPU").map_or(true, |v| v != "1") {
        eprintln!("SKIP vgpu_catches: not under tests/vgpu/run.sh");
        return None;
    }
    Some(CudaContext::new(0).expect("the virtual GPU's driver"))
}

/// Compile `src` as file `broken.cu` and launch `entry(out, n)` with `cfg`; the launch's error text, if any.
fn launch(
    ctx: &Arc<CudaContext>,
    src: &str,
    entry: &str,
    cfg: LaunchConfig,
    smem_optin: Option<i32>,
) -> (Vec<f32>, Option<String>) {
    let opts = CompileOptions { name: Some("broken.cu".into()), ..Default::default() };
    let ptx = compile_ptx_with_opts(format!("#line 1 \"broken.cu\"\n{src}"), opts).expect("compiles");
    let module = ctx.load_module(ptx).expect("loads");
    let f = module.load_function(entry).expect("entry point");
    if let Some(bytes) = smem_optin {
        f.set_attribute(
            cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes,
        )
        .expect("opt-in");
    }
    let stream = ctx.default_stream();
    let n = 256i64;
    let mut out = stream.alloc_zeros::<f32>(n as usize).unwrap();
    let mut b = stream.launch_builder(&f);
    b.arg(&mut out);
    b.arg(&n);
    // SAFETY: every kernel below takes (float* out, long long n) and writes out[0..n) (or deliberately not).
    let err = unsafe { b.launch(cfg) }.err().map(|e| format!("{e:?}"));
    let host = if err.is_none() { stream.clone_dtoh(&out).unwrap() } else { Vec::new() };
    (host, err)
}

fn block(threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (2, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

fn assert_reported(err: Option<String>, needles: &[&str]) {
    let e = err.expect("the broken kernel launched without a report");
    for n in needles {
        assert!(e.contains(n), "report lacks '{n}': {e}");
    }
    eprintln!("reported: {e}");
}

/// Shared-memory neighbour exchange; `BARRIER` is the line that makes it correct.
const EXCHANGE: &str = r#"
extern "C" __global__ void exchange(float* out, long long n) {
    __shared__ float s[256];
    s[threadIdx.x] = (float)threadIdx.x;
    BARRIER
    out[threadIdx.x] = s[(threadIdx.x + 1) % 256];
}
"#;

/// The driver reads VGPU_ORDER at each launch, so each order runs in a child process of this test binary (setting
/// the variable here would race with the other tests' launches).
#[test]
fn a_missing_barrier_changes_the_result_in_every_order() {
    let Some(ctx) = vgpu() else { return };
    let want: Vec<f32> = (0..256).map(|t| ((t + 1) % 256) as f32).collect();
    if let Ok(order) = std::env::var("VGPU_CATCHES_CHILD") {
        let (good, err) = launch(&ctx, &EXCHANGE.replace("BARRIER", "__syncthreads();"), "exchange", block(256), None);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(good, want, "the correct kernel under order {order}");
        let (bad, err) = launch(&ctx, &EXCHANGE.replace("BARRIER", ""), "exchange", block(256), None);
        assert!(err.is_none(), "{err:?}");
        assert!(bad != want, "without the barrier the result is right under order {order}");
        assert!(bad.iter().any(|v| v.is_nan()), "order {order}: no poisoned shared read seen");
        return;
    }
    for order in ["forward", "reverse", "random:7"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["a_missing_barrier_changes_the_result_in_every_order", "--exact", "--nocapture"])
            .env("VGPU_ORDER", order)
            .env("VGPU_CATCHES_CHILD", order)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "order {order}:\n{text}{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_barrier_inside_a_branch_is_reported() {
    let Some(ctx) = vgpu() else { return };
    let src = r#"
extern "C" __global__ void branch(float* out, long long n) {
    if (threadIdx.x < 8) {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}
"#;
    let (_, err) = launch(&ctx, src, "branch", block(256), None);
    assert_reported(err, &["broken.cu:4", "__syncthreads", "branch"]);
}

#[test]
fn a_full_mask_shuffle_that_one_lane_skips_is_reported() {
    let Some(ctx) = vgpu() else { return };
    let src = r#"
extern "C" __global__ void skip(float* out, long long n) {
    float v = (float)threadIdx.x;
    if (threadIdx.x != 5) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
"#;
    let (_, err) = launch(&ctx, src, "skip", block(256), None);
    assert_reported(err, &["broken.cu:4", "lane 5", "__shfl_down_sync"]);
}

#[test]
fn out_of_bounds_stores_are_reported() {
    let Some(ctx) = vgpu() else { return };
    // The 1024-byte allocation ends at a guard page: one element or 1000 past the end fault there; one element
    // before the start lands in the canary bytes, checked after the launch. (Further away a store may hit another
    // live allocation, which no host-memory scheme can tell from a valid store.)
    for (index, needle) in [
        ("n", "past the end of an allocation of 1024 bytes"),
        ("n + 1000", "past the end of an allocation of 1024 bytes"),
        ("n - 257", "4 bytes before an allocation of 1024 bytes"),
    ] {
        let src = format!(
            "extern \"C\" __global__ void oob(float* out, long long n) {{\n    if (threadIdx.x == 0 && blockIdx.x == 0) out[{index}] = 1.0f;\n}}\n"
        );
        let (_, err) = launch(&ctx, &src, "oob", block(32), None);
        assert_reported(err, &["oob", needle]);
    }
}

#[test]
fn launches_over_the_device_limits_are_refused() {
    let Some(ctx) = vgpu() else { return };
    let src = r#"
extern "C" __global__ void big(float* out, long long n) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x % 64] = 0.0f;
    if (blockIdx.x == 0 && threadIdx.x < n) out[threadIdx.x] = 1.0f;
}
"#;
    let (_, err) = launch(&ctx, src, "big", block(2048), None);
    assert_reported(err, &["big", "more than 1024 threads"]);
    let smem = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (64, 1, 1), shared_mem_bytes: 64 * 1024 };
    let (_, err) = launch(&ctx, src, "big", smem, None);
    assert_reported(err, &["big", "65536 bytes of dynamic", "cuFuncSetAttribute"]);
    // With the opt-in attribute the same launch runs.
    let (out, err) = launch(&ctx, src, "big", smem, Some(64 * 1024));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(out[..64], [1.0f32; 64]);
    let tall = LaunchConfig { grid_dim: (1, 65_536, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
    let (_, err) = launch(&ctx, src, "big", tall, None);
    assert_reported(err, &["big", "65535"]);
}

/// The fake cuBLAS (tests/vgpu/cublas.cpp) refuses an operand that reaches outside its allocation, and rounds the
/// operands in the tensor-core compute types: 1 + 2^-12 is 1 in TF32 and in BF16, exact in f32.
#[test]
fn cublas_operands_outside_their_allocation_are_refused_and_tf32_rounds() {
    use cudarc::cublas::sys::{
        cublasComputeType_t as Ct, cublasGemmAlgo_t, cublasOperation_t::CUBLAS_OP_N, cudaDataType,
    };
    use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
    use cudarc::driver::{DevicePtr, DevicePtrMut};
    let Some(ctx) = vgpu() else { return };
    let stream = ctx.default_stream();
    let blas = CudaBlas::new(stream.clone()).expect("the virtual GPU's cuBLAS");
    let a = stream.clone_htod(&[1.0f32; 16]).unwrap();
    let b = stream.clone_htod(&[1.0f32; 64]).unwrap();
    let mut c = stream.alloc_zeros::<f32>(64).unwrap();
    let cfg = |m: i32| GemmConfig {
        transa: CUBLAS_OP_N,
        transb: CUBLAS_OP_N,
        m,
        n: 8,
        k: 8,
        alpha: 1.0f32,
        lda: m,
        ldb: 8,
        beta: 0.0,
        ldc: m,
    };
    // SAFETY: on the virtual GPU an out-of-range operand is refused before any access (the point of the test).
    let err = unsafe { blas.gemm(cfg(8), &a, &b, &mut c) }.expect_err("A (8 x 8) is larger than its 16 elements");
    assert!(format!("{err:?}").contains("EXECUTION_FAILED"), "{err:?}");
    unsafe { blas.gemm(cfg(2), &a, &b, &mut c) }.expect("A (2 x 8) fits");
    assert_eq!(stream.clone_dtoh(&c).unwrap()[..16], [8.0f32; 16]);

    let x = stream.clone_htod(&[1.0f32 + f32::powi(2.0, -12)]).unwrap();
    let one = stream.clone_htod(&[1.0f32]).unwrap();
    for (compute, want) in [
        (Ct::CUBLAS_COMPUTE_32F, 1.0f32 + f32::powi(2.0, -12)),
        (Ct::CUBLAS_COMPUTE_32F_FAST_TF32, 1.0),
        (Ct::CUBLAS_COMPUTE_32F_FAST_16BF, 1.0),
    ] {
        let mut y = stream.alloc_zeros::<f32>(1).unwrap();
        {
            let (px, _gx) = x.device_ptr(&stream);
            let (po, _go) = one.device_ptr(&stream);
            let (py, _gy) = y.device_ptr_mut(&stream);
            let (alpha, beta) = (1.0f32, 0.0f32);
            let f = cudaDataType::CUDA_R_32F;
            // SAFETY: 1 x 1 x 1 operands in allocations of one element each; host scalars.
            unsafe {
                cudarc::cublas::result::gemm_ex(
                    *blas.handle(),
                    CUBLAS_OP_N,
                    CUBLAS_OP_N,
                    1,
                    1,
                    1,
                    (&alpha) as *const f32 as *const _,
                    px as *const _,
                    f,
                    1,
                    po as *const _,
                    f,
                    1,
                    (&beta) as *const f32 as *const _,
                    py as *mut _,
                    f,
                    1,
                    compute,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .unwrap();
        }
        assert_eq!(stream.clone_dtoh(&y).unwrap()[0], want, "{compute:?}");
    }
}
