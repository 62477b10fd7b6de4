//! GPU detection, error mapping and backend selection (`train.backend` = cpu | cuda | auto).
//!
//! Key decision: with cudarc's dynamic loading the first driver call panics when libcuda is absent, so every path
//! first checks `is_culib_present()`, then `cuInit` and the device count (both return errors, not panics). Asking
//! for `cuda` without a usable GPU is a `MfdError::Config` naming the reason; `auto` falls back to the CPU.

use std::fmt::Debug;

use super::CudaBackend;
use crate::config::BackendKind;
use crate::{MfdError, Result};

/// Map a cudarc error to `MfdError` with the failing operation's name.
pub fn cuda_err(op: &str, e: impl Debug) -> MfdError {
    MfdError::other(format!("CUDA {op}: {e:?}"))
}

/// Number of usable CUDA devices, or why there are none (no driver library, init failure, no device, no NVRTC).
pub fn probe() -> std::result::Result<usize, String> {
    // SAFETY: only dlopens the driver library by its candidate names; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda.so.1 not found)".into());
    }
    cudarc::driver::result::init().map_err(|e| format!("cuInit failed: {e:?}"))?;
    let n = cudarc::driver::result::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))?;
    if n <= 0 {
        return Err("the CUDA driver reports no device".into());
    }
    if !super::registry::nvrtc_available() {
        return Err("NVRTC (libnvrtc.so.13) not found on LD_LIBRARY_PATH; kernels cannot be compiled".into());
    }
    Ok(n as usize)
}

/// Whether a CUDA backend can be created on this machine.
pub fn gpu_available() -> bool {
    probe().is_ok()
}

/// The backend a run uses.
pub enum BackendChoice {
    Cpu,
    Cuda(Box<CudaBackend>),
}

/// Resolve `train.backend` on device `ordinal` (taken modulo the device count, so ranks can pass their local
/// rank). `cuda` without a working GPU is an error; `auto` prints why it uses the CPU.
pub fn choose_backend(kind: BackendKind, ordinal: usize) -> Result<BackendChoice> {
    match kind {
        BackendKind::Cpu => Ok(BackendChoice::Cpu),
        BackendKind::Cuda => {
            let n = probe().map_err(|why| MfdError::config("train.backend", format!("'cuda' needs a GPU: {why}")))?;
            let be = CudaBackend::new(ordinal % n)
                .map_err(|e| MfdError::config("train.backend", format!("'cuda': GPU initialisation failed: {e}")))?;
            Ok(BackendChoice::Cuda(Box::new(be)))
        }
        BackendKind::Auto => match probe().map_err(MfdError::other).and_then(|n| CudaBackend::new(ordinal % n)) {
            Ok(be) => Ok(BackendChoice::Cuda(Box::new(be))),
            Err(why) => {
                eprintln!("mfd: backend auto: using the CPU ({why})");
                Ok(BackendChoice::Cpu)
            }
        },
    }
}
