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
