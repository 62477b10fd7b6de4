//! The kernel registry: every `kernels/*.cu` source embedded with `include_str!`, compiled by NVRTC once per
//! process and architecture (cached), loaded once per context, and looked up by entry-point name.
//!
//! Key decision: kernels are compiled at run time from embedded sources (no nvcc, no build script), so the crate
//! builds without CUDA and the same sources are compile-checked in CI by `tests/cuda_nvrtc.rs` with only the NVRTC
//! wheel installed. `kernels/common.cuh` is prepended to each source (NVRTC has no path to our headers); a
//! `#line` directive keeps compile errors pointing at the right `.cu` line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use super::device::cuda_err;
use crate::{MfdError, Result};

/// One kernel source file and the `extern "C"` entry points it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelFile {
    pub file: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
}

/// Helpers prepended to every source.
pub const COMMON: &str = include_str!("../../../kernels/common.cuh");

macro_rules! kernel_file {
    ($file:literal, [$($entry:literal),* $(,)?]) => {
        KernelFile { file: $file, source: include_str!(concat!("../../../kernels/", $file)), entries: &[$($entry),*] }
    };
}

/// Every kernel file, one op (forward and backward) per file.
pub const KERNELS: &[KernelFile] = &[
    kernel_file!(
        "elementwise.cu",
        ["fill_f32", "scale_f32", "axpy_f32", "add_f32", "channel_copy_f32", "crop_fwd_f32", "crop_bwd_f32"]
    ),
    kernel_file!("activation.cu", ["activation_fwd_f32", "activation_bwd_f32"]),
    kernel_file!("max_pool.cu", ["max_pool_fwd_f32", "max_pool_bwd_f32"]),
    kernel_file!("stem_conv.cu", ["stem_conv_fwd_f32", "stem_conv_bwd_f32"]),
    kernel_file!("conv1d.cu", ["conv1d_w_to_taps_f32", "conv1d_taps_add_dw_f32"]),
    kernel_file!("matmul.cu", ["bias_add_rows_f32", "col_sums_accum_f32"]),
    kernel_file!("moments.cu", ["channel_moments_f64", "channel_grad_moments_f64"]),
    kernel_file!(
        "batch_norm.cu",
        [
            "bn_fwd_sums_f64",
            "bn_fwd_m2_f64",
            "bn_fwd_finish_f32",
            "bn_eval_invstd_f32",
            "bn_normalise_f32",
            "bn_bwd_sums_f64",
            "bn_bwd_params_f32",
            "bn_bwd_means_f32",
            "bn_bwd_dx_f32"
        ]
    ),
    kernel_file!(
        "standardize.cu",
        [
            "standardize_f32",
            "standardize_bwd_f32",
            "put_count_f64",
            "col_mean_f64",
            "col_stats_finish_f32",
            "std_bwd_scalars_f32"
        ]
    ),
    kernel_file!("corr.cu", ["corr_cross_f64", "corr_finish_f32", "corr_bwd_dr_f32"]),
    kernel_file!("r2.cu", ["r2_col_dot_f64", "r2_grad_f32", "r2_finish_f32", "r2_bwd_scale_f32"]),
    kernel_file!("head_bce.cu", ["head_fwd_f32", "head_bce_dz_f32"]),
    kernel_file!("adam.cu", ["amsgrad_f32"]),
    kernel_file!("window_encode.cu", ["window_encode_u8", "label_gather_u8"]),
];

/// Whether the NVRTC library can be loaded (cudarc dlopens `libnvrtc.so.13` etc. through the normal loader
/// search, i.e. LD_LIBRARY_PATH; see stack.md).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names; no symbol is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The full NVRTC input of one file: common helpers, then the file with its own line numbering.
pub fn full_source(k: &KernelFile) -> String {
    format!("{COMMON}\n#line 1 \"{}\"\n{}", k.file, k.source)
}

/// Compile one kernel file to PTX for `arch` (an NVRTC `--gpu-architecture`, e.g. "compute_90" or "sm_90").
/// Errors carry NVRTC's log (file:line messages).
pub fn compile(k: &KernelFile, arch: &'static str) -> Result<Ptx> {
    if !nvrtc_available() {
        return Err(MfdError::other("NVRTC library (libnvrtc.so.13) not found on the loader path (LD_LIBRARY_PATH)"));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(k.file.to_string()),
        // fmad=false: no contraction of a * b + c into one FMA, so every kernel rounds as its CPU twin does (Rust
        // never contracts) and the twins' tolerances measure summation order only. The direct kernels are memory-
        // bound, so the FMA's throughput is not missed; tensor-core paths (issue 19) state their own precision.
        fmad: Some(false),
        options: vec!["-std=c++17".into()],
        ..Default::default()
    };
    compile_ptx_with_opts(full_source(k), opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            MfdError::other(format!("NVRTC {arch}: {}: {}", k.file, log.to_string_lossy()))
        }
        other => MfdError::other(format!("NVRTC {arch}: {}: {other:?}", k.file)),
    })
}

/// PTX of every kernel file for `arch`, compiled once per process (the cache keeps the first result per arch).
fn compiled(arch: &'static str) -> Result<Vec<Ptx>> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Vec<Ptx>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache.lock().map_err(|_| MfdError::other("kernel cache lock poisoned"))?;
    if let Some(p) = guard.get(arch) {
        return Ok(p.clone());
    }
    let ptx = KERNELS.iter().map(|k| compile(k, arch)).collect::<Result<Vec<_>>>()?;
    guard.insert(arch, ptx.clone());
    Ok(ptx)
}

/// NVRTC virtual architecture for a compute capability: PTX the driver JIT-compiles for the exact device.
fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, _) => "compute_90",
        (10, _) => "compute_100",
        (12, _) => "compute_120",
        // Older or unknown: the lowest NVRTC 13 supports; the driver JITs it forward.
        _ => "compute_75",
    }
}

/// The loaded kernels of one context, by entry-point name.
pub struct Kernels {
    funcs: HashMap<&'static str, CudaFunction>,
}

impl Kernels {
    /// Compile (once per process) and load every kernel into `ctx`.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Kernels> {
        let (major, minor) = ctx.compute_capability().map_err(|e| cuda_err("compute_capability", e))?;
        let ptx = compiled(arch_for(major, minor))?;
        let mut funcs = HashMap::new();
        for (k, p) in KERNELS.iter().zip(ptx) {
            let module = ctx.load_module(p).map_err(|e| cuda_err("load_module", e))?;
            for &entry in k.entries {
                let f = module.load_function(entry).map_err(|e| cuda_err("load_function", e))?;
                funcs.insert(entry, f);
            }
        }
        Ok(Kernels { funcs })
    }

    /// The entry point `name` (an error, not a panic, when the registry lacks it).
    pub fn get(&self, name: &'static str) -> Result<&CudaFunction> {
        self.funcs.get(name).ok_or_else(|| MfdError::other(format!("CUDA kernel {name} is not in the registry")))
    }
}
