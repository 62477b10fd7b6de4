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
//!   summed across ranks through `Reduce::sum_device` (nothing on one rank; in device memory by NCCL with
//!   `dist.comm = "nccl"`, through the host over MPI), and turned into per-channel scalars on the device by small kernels with the
//!   CPU twin's f64 formulas (issue 19 item 2).
//! - Caching allocator: a dropped `DevBuf` returns its allocation to the backend's pool (by type and length) and
//!   `zeros` reuses it, so a training step allocates nothing after the first.
//! - Float atomics (stem backward, head loss) make a few sums order-nondeterministic on the GPU; tests compare
//!   against the CPU twin at stated tolerances rather than bit for bit.

mod backend_impl;
pub mod counters;
mod cublas;
pub mod device;
pub mod genome;
mod head;
mod launch;
mod ops;
pub mod registry;
mod stats;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, CudaViewMut, DeviceRepr, LaunchArgs, PushKernelArg, ValidAsZeroBits,
};

pub use device::{choose_backend, gpu_available, probe, BackendChoice};
pub use genome::GpuGenome;

use crate::{MfdError, Result};
use device::cuda_err;
use registry::Kernels;

/// A device buffer of `len` elements. The allocation holds at least one element, because the driver rejects empty
/// allocations; `len` is the logical length every check uses. Dropped, its allocation goes back to the backend's
/// pool (`Pooled`), not to the driver.
pub struct DevBuf<T: 'static> {
    data: Pooled<T>,
    len: usize,
}

/// Free device allocations by (element type, allocated length), reused by `CudaBackend::zeros`: the caching
/// allocator (issue 19 item 2). After the first training step every buffer a step needs has the size of one that
/// step freed, so no step allocates from the driver. Allocations are kept until the backend and its last buffer
/// are dropped; the pool grows to the largest set of same-sized buffers alive at once.
type Pool = Mutex<HashMap<(TypeId, usize), Vec<Box<dyn Any + Send>>>>;

/// A `CudaSlice` that returns to its pool when dropped. Kernel arguments take it as `&buf.data` / `&mut buf.data`
/// (the `PushKernelArg` impls below forward to the slice's own); methods reach the slice through `Deref`.
pub(crate) struct Pooled<T: 'static> {
    slice: ManuallyDrop<CudaSlice<T>>,
    pool: Arc<Pool>,
}

impl<T: 'static> Deref for Pooled<T> {
    type Target = CudaSlice<T>;
    fn deref(&self) -> &CudaSlice<T> {
        &self.slice
    }
}

impl<T: 'static> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }
}

impl<T: 'static> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: `slice` is never used again: this is the drop of its owner.
        let slice = unsafe { ManuallyDrop::take(&mut self.slice) };
        // A poisoned pool (a panic elsewhere while it was locked) frees the allocation instead.
        if let Ok(mut pool) = self.pool.lock() {
            pool.entry((TypeId::of::<T>(), slice.len())).or_default().push(Box::new(slice));
        }
    }
}

// SAFETY: both forward to cudarc's own impls for the slice (same pointer, same stream-ordering events).
unsafe impl<'a, 'b: 'a, T: 'static> PushKernelArg<&'b Pooled<T>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b Pooled<T>) -> &mut Self {
        self.arg(&*arg.slice)
    }
}

// SAFETY: as above.
unsafe impl<'a, 'b: 'a, T: 'static> PushKernelArg<&'b mut Pooled<T>> for LaunchArgs<'a> {
    fn arg(&mut self, arg: &'b mut Pooled<T>) -> &mut Self {
        self.arg(&mut *arg.slice)
    }
}

impl<T: 'static> DevBuf<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The `len` elements as a view, for the NCCL communicator (`dist::nccl`: in-place all-reduces of gradient
    /// buckets and statistics).
    pub(crate) fn view_mut(&mut self) -> CudaViewMut<'_, T> {
        self.data.slice_mut(0..self.len)
    }
}

/// The CUDA backend on one device: context, its stream and the loaded kernels.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    blas: cublas::Blas,
    pool: Arc<Pool>,
    /// Scalar results left on the device (`Backend::defer_scalars`).
    defer_scalars: AtomicBool,
}

impl CudaBackend {
    /// Open device `ordinal`, compile (once per process) and load every kernel. Errors, never panics, when there is
    /// no driver, no device or no NVRTC.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        probe().map_err(MfdError::other)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("context", e))?;
        let stream = ctx.default_stream();
        let kernels = Kernels::load(&ctx)?;
        let blas = cublas::Blas::new(stream.clone())?;
        Ok(CudaBackend { ctx, stream, kernels, blas, pool: Arc::default(), defer_scalars: AtomicBool::new(false) })
    }

    /// Device name and compute capability, for logs.
    pub fn describe(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|_| "?".into());
        let cc = self.ctx.compute_capability().map(|(a, b)| format!("{a}.{b}")).unwrap_or_else(|_| "?".into());
        format!("{name} (sm {cc}, device {})", self.ctx.ordinal())
    }

    /// The stream every op of this backend is queued on (the compute stream the NCCL communicator orders its
    /// stream against with events).
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Wait for every queued kernel and copy (for timings).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| cuda_err("synchronize", e))
    }

    /// A zero-filled buffer of `len` elements of any device type (f64 statistics, u64 indices, ...).
    /// From the pool when it holds a free allocation of this type and length (zeroed on the stream), else from
    /// the driver.
    pub(crate) fn zeros<T: DeviceRepr + 'static + ValidAsZeroBits>(&self, len: usize) -> Result<DevBuf<T>> {
        let n = len.max(1);
        let reused = match self.pool.lock() {
            Ok(mut pool) => pool.get_mut(&(TypeId::of::<T>(), n)).and_then(Vec::pop),
            Err(_) => None,
        };
        let slice = match reused.map(|b| b.downcast::<CudaSlice<T>>()) {
            Some(Ok(mut slice)) => {
                self.stream.memset_zeros(&mut *slice).map_err(|e| cuda_err("memset", e))?;
                *slice
            }
            // The key holds the type id, so a pooled allocation always downcasts; otherwise allocate afresh.
            Some(Err(_)) | None => self.stream.alloc_zeros::<T>(n).map_err(|e| cuda_err("alloc", e))?,
        };
        Ok(DevBuf { data: Pooled { slice: ManuallyDrop::new(slice), pool: self.pool.clone() }, len })
    }

    /// A zero-filled buffer from the driver, never from the pool: for buffers kept for the rest of the run but
    /// made in the middle of a step (the device gradient buckets, `dist::buckets`). Taken from the pool, such a
    /// buffer would hold an allocation the step freed and needs again, and the next step would allocate it anew.
    pub(crate) fn zeros_kept<T: DeviceRepr + 'static + ValidAsZeroBits>(&self, len: usize) -> Result<DevBuf<T>> {
        let slice = self.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| cuda_err("alloc", e))?;
        Ok(DevBuf { data: Pooled { slice: ManuallyDrop::new(slice), pool: self.pool.clone() }, len })
    }

    /// A buffer holding a copy of `host`.
    pub(crate) fn dev_copy<T: DeviceRepr + 'static + ValidAsZeroBits>(&self, host: &[T]) -> Result<DevBuf<T>> {
        let mut b = self.zeros::<T>(host.len())?;
        self.put(&mut b, host)?;
        Ok(b)
    }

    /// Overwrite `dst` with `host` (same length).
    pub(crate) fn put<T: DeviceRepr + 'static>(&self, dst: &mut DevBuf<T>, host: &[T]) -> Result<()> {
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
    pub(crate) fn get<T: DeviceRepr + 'static>(&self, src: &DevBuf<T>, host: &mut [T]) -> Result<()> {
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

    /// Set or end the deferral of scalar results (`Backend::defer_scalars`); returns whether they are deferred.
    pub(crate) fn set_defer_scalars(&self, defer: bool) -> bool {
        self.defer_scalars.store(defer, Ordering::Relaxed);
        defer
    }

    /// A scalar result held in `src[0]` (a loss or penalty value): downloaded (a synchronisation), or `None` while
    /// scalars are deferred, when nothing waits for the device.
    pub(crate) fn read_scalar<T: DeviceRepr + 'static + Default + Clone>(&self, src: &DevBuf<T>) -> Result<Option<T>> {
        if self.defer_scalars.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut v = [T::default()];
        let view = src.data.slice(0..1);
        self.stream.memcpy_dtoh(&view, &mut v).map_err(|e| cuda_err("memcpy_dtoh", e))?;
        self.synchronize()?;
        let [x] = v;
        Ok(Some(x))
    }

    /// `src` as a new host vector.
    pub(crate) fn host_vec<T: DeviceRepr + 'static + Default + Clone>(&self, src: &DevBuf<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); src.len];
        self.get(src, &mut v)?;
        Ok(v)
    }
}
