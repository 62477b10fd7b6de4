//! The CUDA backend: the `Backend` trait on one GPU, with device buffers and hand-written NVRTC-compiled kernels
//! (`kernels/*.cu`, one op per file). Every op has a CPU twin in `backend/cpu` and is tested against it
//! (`tests/cuda_kernels.rs`, skipped with a printed reason where no GPU works).
//!
//! Key decisions:
//! - cudarc with dynamic loading: the crate builds with no CUDA installed; `device::probe` finds a GPU at run time
//!   and no GPU is an error, never a panic.
//! - One stream per backend; every launcher checks buffer lengths against the op's shape before launching, so a
//!   kernel never reads past a buffer. Host-visible results (losses, statistics) synchronise through the copy.
//! - Batch statistics (batch norm, Pearson penalty, R2) are computed as f64 per-channel partial sums on the GPU,
//!   copied to the host (C values), summed across ranks through `Reduce` there, turned into per-channel scalars
//!   with exactly the CPU twin's f64 formulas, and uploaded for the element-wise apply kernels.
//! - Float atomics (stem backward, head loss) make a few sums order-nondeterministic on the GPU; tests compare
//!   against the CPU twin at stated tolerances rather than bit for bit.

mod backend_impl;
pub mod counters;
pub mod device;
pub mod genome;
mod head;
mod launch;
mod ops;
pub mod registry;
mod stats;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};

pub use device::{choose_backend, gpu_available, probe, BackendChoice};
pub use genome::GpuGenome;

use crate::{MfdError, Result};
use device::cuda_err;
use registry::Kernels;

/// A device buffer of `len` elements. The allocation holds at least one element, because the driver rejects empty
/// allocations; `len` is the logical length every check uses.
pub struct DevBuf<T> {
    data: CudaSlice<T>,
    len: usize,
}

impl<T> DevBuf<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The CUDA backend on one device: context, its stream and the loaded kernels.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
}

impl CudaBackend {
    /// Open device `ordinal`, compile (once per process) and load every kernel. Errors, never panics, when there is
    /// no driver, no device or no NVRTC.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        probe().map_err(MfdError::other)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("context", e))?;
        let stream = ctx.default_stream();
        let kernels = Kernels::load(&ctx)?;
        Ok(CudaBackend { ctx, stream, kernels })
    }

    /// Device name and compute capability, for logs.
    pub fn describe(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|_| "?".into());
        let cc = self.ctx.compute_capability().map(|(a, b)| format!("{a}.{b}")).unwrap_or_else(|_| "?".into());
        format!("{name} (sm {cc}, device {})", self.ctx.ordinal())
    }

    /// Wait for every queued kernel and copy (for timings).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| cuda_err("synchronize", e))
    }

    /// A zero-filled buffer of `len` elements of any device type (f64 statistics, u64 indices, ...).
    pub(crate) fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<DevBuf<T>> {
        let data = self.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| cuda_err("alloc", e))?;
        Ok(DevBuf { data, len })
    }

    /// A buffer holding a copy of `host`.
    pub(crate) fn dev_copy<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<DevBuf<T>> {
        let mut b = self.zeros::<T>(host.len())?;
        self.put(&mut b, host)?;
        Ok(b)
    }

    /// Overwrite `dst` with `host` (same length).
    pub(crate) fn put<T: DeviceRepr>(&self, dst: &mut DevBuf<T>, host: &[T]) -> Result<()> {
        if host.len() != dst.len {
            return Err(MfdError::Shape {
                op: "write",
                msg: format!("host has {} elements, device buffer {}", host.len(), dst.len),
            });
        }
        if host.is_empty() {
            return Ok(());
        }
        let mut view = dst.data.slice_mut(0..host.len());
        self.stream.memcpy_htod(host, &mut view).map_err(|e| cuda_err("memcpy_htod", e))
    }

    /// Copy `src` into `host` (same length); returns once the data is on the host.
    pub(crate) fn get<T: DeviceRepr>(&self, src: &DevBuf<T>, host: &mut [T]) -> Result<()> {
        if host.len() != src.len {
            return Err(MfdError::Shape {
                op: "download",
                msg: format!("host has {} elements, device buffer {}", host.len(), src.len),
            });
        }
        if host.is_empty() {
            return Ok(());
        }
        let view = src.data.slice(0..host.len());
        self.stream.memcpy_dtoh(&view, host).map_err(|e| cuda_err("memcpy_dtoh", e))?;
        self.synchronize()
    }

    /// `src` as a new host vector.
    pub(crate) fn host_vec<T: DeviceRepr + Default + Clone>(&self, src: &DevBuf<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); src.len];
        self.get(src, &mut v)?;
        Ok(v)
    }
}
