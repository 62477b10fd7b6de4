//! `Nccl`: the device-buffer communicator (architecture.md section 6): NCCL all-reduces of device buffers (f32
//! gradient buckets, f64 batch statistics) on a communication stream of its own, beside a host communicator
//! (`Single` or `Mpi`) that keeps rank, world size, local rank, small host sums, barriers, gathers and abort.
//!
//! Key decisions:
//! - cudarc's `nccl` module with dynamic loading (Cargo.toml): the crate builds and runs without CUDA or NCCL;
//!   `probe` checks libcuda, a device and libnccl before any call that would otherwise panic, so choosing NCCL on
//!   a machine without them is an error naming the reason. cudarc looks for `libnccl.so` (the PyPI wheel ships only
//!   `libnccl.so.2`: link it as `libnccl.so` on LD_LIBRARY_PATH, stack.md section 1).
//! - The NCCL unique id (128 bytes) is made by rank 0 and broadcast over the host communicator as 128 exact f64s.
//! - One GPU per rank: device `local_rank % device count` (local rank from MPI's shared-memory split). NCCL rejects
//!   two ranks on one GPU, so a single-GPU machine runs NCCL with one rank only.
//! - Device sums go through `Lane`s: an NCCL communicator on a stream of its own, with the two events that order
//!   it with the compute stream (the CUDA backend's). `Lane::start_sum_after` records an event on the compute stream
//!   (after the work that wrote the buffer), makes the lane's stream wait on it and queues the in-place all-reduce
//!   there; `Lane::join_compute` makes the compute stream wait for everything queued on the lane so far (an event
//!   again). The events are made once and re-recorded (a wait takes the event's state when it is queued). No host
//!   synchronisation on this path. Three lanes, made in the same order on every rank (communicator creation is
//!   collective):
//!   - `grads` (issue 19 item 4): `dist::buckets` packs each gradient bucket into a device buffer of the backend
//!     and starts its f32 sum as soon as the backward has finished the bucket; joined after the `During` work.
//!   - `stats`: the batch statistics' f64 sums (`StatsReduce::sum_device`, `sum_stats`): the backward needs each
//!     BatchNorm's global sums before it can go on, and on the gradients' stream such a sum would wait for every
//!     bucket queued before it, which would undo the overlap.
//!   - `blocking`: `Buckets::all_reduce` (the adversary's gradients, summed inside the model buckets' `During`,
//!     and the running statistics): its join waits for its own sums only, not for the model buckets in flight.
//! - Several communicators in flight at once are safe here because every rank issues the same operations on each
//!   communicator, and across communicators, in the same order (the same program on every rank), and no lane
//!   waits on another: each waits only on events of the compute stream recorded before its sums were queued.
//! - `sum_device_buckets` (a list of device buckets around a `during` closure, in one NCCL group) and
//!   `Comm::sum_buckets` (host buckets staged through device buffers kept between calls: the host-bucket API of
//!   the trait, used where no CUDA backend buffers exist) remain for direct use and the tests.

use std::cell::RefCell;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, CudaViewMut, DevicePtrMut};
use cudarc::nccl::{Comm as NcclComm, Id, NcclType, ReduceOp};

use crate::dist::comm::{Comm, HostBucket};
use crate::error::{MfdError, Result};

/// Number of CUDA devices NCCL can use, or why it cannot run here (no driver, no device, no libnccl).
pub fn probe() -> std::result::Result<usize, String> {
    // SAFETY: only dlopens the libraries by their candidate names; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver (libcuda.so.1 not found)".into());
    }
    cudarc::driver::result::init().map_err(|e| format!("cuInit failed: {e:?}"))?;
    let n = cudarc::driver::result::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))?;
    if n <= 0 {
        return Err("the CUDA driver reports no device".into());
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Err(
            "libnccl.so not found on LD_LIBRARY_PATH (for the PyPI wheel, link libnccl.so.2 as libnccl.so)".into()
        );
    }
    Ok(n as usize)
}

fn nccl_err(op: &str, e: impl std::fmt::Debug) -> MfdError {
    MfdError::other(format!("NCCL {op}: {e:?}"))
}

fn cuda_err(op: &str, e: impl std::fmt::Debug) -> MfdError {
    MfdError::other(format!("CUDA {op} (NCCL communicator): {e:?}"))
}

pub struct Nccl {
    // Field order is drop order: the NCCL communicators (in the lanes) before their streams' context.
    /// The gradient buckets' sums (`dist::buckets`' overlapped path), the host-bucket staging and `all_reduce_sum`.
    grads: Lane,
    /// The batch statistics' sums (`sum_stats`), so that a statistic needed inside the backward does not queue
    /// behind the gradient buckets already in flight on `grads`.
    stats: Lane,
    /// The blocking bucket sums (`Buckets::all_reduce`), so that their join does not wait for the model's gradient
    /// buckets in flight on `grads`.
    blocking: Lane,
    /// Free sets of device staging buffers for `sum_buckets`, reused by bucket sizes. A set is taken out while in
    /// use: `sum_buckets` nests (its `during` finishes the backward, which sums the next buckets).
    staging: RefCell<Vec<Vec<CudaSlice<f32>>>>,
    ctx: Arc<CudaContext>,
    control: Box<dyn Comm>,
}

/// One NCCL communicator on a communication stream of its own, and the two events that order it with a compute
/// stream (another stream of the same GPU, e.g. the CUDA backend's): see the module doc.
pub struct Lane {
    comm: NcclComm,
    /// Recorded on the compute stream before an all-reduce (its data is written); the lane's stream waits on it.
    /// Reused: a wait takes the event's state at the time of the call, so re-recording it later is safe.
    written: CudaEvent,
    /// Recorded on the lane's stream after the all-reduces; the compute stream waits on it (`join_compute`).
    reduced: CudaEvent,
    stream: Arc<CudaStream>,
    /// Which lane, for error messages.
    name: &'static str,
}

impl Lane {
    /// This rank's communicator on `stream` (collective over `control`: every rank makes its lanes in the same
    /// order) and the lane's two events.
    fn new(control: &dyn Comm, ctx: &Arc<CudaContext>, stream: Arc<CudaStream>, name: &'static str) -> Result<Lane> {
        let comm = new_comm(control, &stream)?;
        let event = || ctx.new_event(None).map_err(|e| cuda_err("event", e));
        Ok(Lane { comm, written: event()?, reduced: event()?, stream, name })
    }

    /// The lane's communication stream (its NCCL calls are queued on it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Queue the in-place sum over ranks of `buf`, a buffer written by work queued on `compute`: an event recorded
    /// on `compute` now makes the lane's stream wait for those writes, then the all-reduce is queued there. Returns
    /// at once (no host synchronisation); `compute` must not read or write `buf` again before `join_compute`. f32
    /// gradient buckets, f64 statistics. Every rank queues the same sums in the same order.
    pub fn start_sum_after<T: NcclType>(&self, compute: &CudaStream, buf: &mut CudaViewMut<'_, T>) -> Result<()> {
        let lane = self.name;
        self.written.record(compute).map_err(|e| cuda_err(&format!("event record (data written, {lane})"), e))?;
        self.stream.wait(&self.written).map_err(|e| cuda_err(&format!("stream wait (data written, {lane})"), e))?;
        self.sum_in_place(buf)
    }

    /// Queue the in-place sum over ranks of `buf` on the lane's stream, with no event (cudarc's per-buffer events
    /// order it with the buffer's other uses).
    fn sum_in_place<T: NcclType, B: DevicePtrMut<T>>(&self, buf: &mut B) -> Result<()> {
        self.comm
            .all_reduce_in_place(buf, &ReduceOp::Sum)
            .map(|_| ())
            .map_err(|e| nccl_err(&format!("all_reduce ({})", self.name), e))
    }

    /// Make `compute` wait (on the device, not the host) for every sum queued so far on this lane, and for nothing
    /// queued on the other lanes.
    pub fn join_compute(&self, compute: &CudaStream) -> Result<()> {
        let lane = self.name;
        self.reduced.record(&self.stream).map_err(|e| cuda_err(&format!("event record (sums done, {lane})"), e))?;
        compute.wait(&self.reduced).map_err(|e| cuda_err(&format!("stream wait (sums done, {lane})"), e))
    }
}

/// A fresh NCCL id made by rank 0 and broadcast over `control` (as 128 exact f64s, plus a flag saying rank 0
/// made one), then this rank's communicator on `stream`. Collective over `control`.
fn new_comm(control: &dyn Comm, stream: &Arc<CudaStream>) -> Result<NcclComm> {
    // [0, 128): the id; [128]: 1 when rank 0 made one.
    let mut id = [0f64; 129];
    let mut made = Ok(());
    if control.rank() == 0 {
        match Id::new() {
            Ok(fresh) => {
                for (d, s) in id.iter_mut().zip(fresh.internal()) {
                    *d = f64::from(*s);
                }
                id[128] = 1.0;
            }
            Err(e) => made = Err(nccl_err("ncclGetUniqueId", e)),
        }
    }
    control.broadcast_f64(&mut id, 0)?;
    made?;
    if id[128] != 1.0 {
        return Err(MfdError::other("NCCL: rank 0 could not make a unique id"));
    }
    let mut raw = [0 as core::ffi::c_char; 128];
    for (d, s) in raw.iter_mut().zip(&id) {
        *d = *s as core::ffi::c_char;
    }
    NcclComm::from_rank(stream.clone(), control.rank(), control.size(), Id::uninit(raw))
        .map_err(|e| nccl_err("ncclCommInitRank", e))
}

impl Nccl {
    /// The NCCL communicator of the ranks of `control` (collective over `control`), on GPU
    /// `control.local_rank() % devices`. Errors (never panics) when NCCL cannot run here; then every rank fails
    /// the same way, except on a mixed cluster, where the caller's abort ends the job.
    pub fn new(control: Box<dyn Comm>) -> Result<Nccl> {
        // The context and the lanes' three streams (gradients, statistics, blocking sums).
        let local = (|| -> Result<(Arc<CudaContext>, [Arc<CudaStream>; 3])> {
            let devices =
                probe().map_err(|why| MfdError::config("dist.comm", format!("'nccl' cannot run here: {why}")))?;
            let ctx = CudaContext::new(control.local_rank() % devices).map_err(|e| cuda_err("context", e))?;
            let stream = || ctx.new_stream().map_err(|e| cuda_err("new_stream", e));
            let streams = [stream()?, stream()?, stream()?];
            Ok((ctx, streams))
        })();
        // Every rank learns whether all could start, so none waits in a collective for one that failed.
        let mut failed = [f64::from(u8::from(local.is_err()))];
        control.sum_f64(&mut failed)?;
        let (ctx, [grads, stats, blocking]) = local?;
        if failed[0] > 0.0 {
            return Err(MfdError::other(format!("NCCL could not start on {} of {} ranks", failed[0], control.size())));
        }
        // One communicator per lane, made in this order on every rank.
        let grads = Lane::new(control.as_ref(), &ctx, grads, "gradients")?;
        let stats = Lane::new(control.as_ref(), &ctx, stats, "statistics")?;
        let blocking = Lane::new(control.as_ref(), &ctx, blocking, "blocking sums")?;
        Ok(Nccl { grads, stats, blocking, staging: RefCell::new(Vec::new()), ctx, control })
    }

    /// The GPU this rank's communicator runs on.
    pub fn device(&self) -> usize {
        self.ctx.ordinal()
    }

    /// The gradients' communication stream (`all_reduce_sum`, `sum_device_buckets` and `sum_buckets` queue their
    /// NCCL calls on it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.grads.stream
    }

    /// The gradient buckets' lane (`Buckets::sum_overlapped`).
    pub fn grads(&self) -> &Lane {
        &self.grads
    }

    /// The blocking bucket sums' lane (`Buckets::all_reduce`).
    pub fn blocking(&self) -> &Lane {
        &self.blocking
    }

    /// Sum `buf` over ranks in place. Queued on the gradients' stream; cudarc's per-buffer events order it after
    /// earlier writes to `buf` and later uses after it.
    pub fn all_reduce_sum(&self, buf: &mut CudaSlice<f32>) -> Result<()> {
        self.grads.sum_in_place(buf)
    }

    /// Sum `buf` (f64 batch statistics written by work on `compute`) over ranks in place, on the statistics' lane:
    /// ordered after the writes and before `compute`'s next work by events, with no host synchronisation, and not
    /// behind the gradient buckets queued on the gradients' lane.
    pub fn sum_stats(&self, compute: &CudaStream, buf: &mut CudaViewMut<'_, f64>) -> Result<()> {
        self.stats.start_sum_after(compute, buf)?;
        self.stats.join_compute(compute)
    }

    /// Sum every bucket over ranks, overlapped with `during` (see the module doc): `compute` is the stream that wrote
    /// the buckets and will read them afterwards. Returns once the work is queued (not finished); `during`'s error,
    /// if any, is returned after the all-reduces are queued and the join recorded.
    pub fn sum_device_buckets(
        &self,
        buckets: &mut [CudaSlice<f32>],
        compute: &CudaStream,
        during: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let stream = &self.grads.stream;
        stream.join(compute).map_err(|e| cuda_err("stream wait (gradients ready)", e))?;
        cudarc::nccl::group_start().map_err(|e| nccl_err("group_start", e))?;
        let queued: Result<()> = buckets.iter_mut().try_for_each(|b| self.all_reduce_sum(b));
        cudarc::nccl::group_end().map_err(|e| nccl_err("group_end", e))?;
        queued?;
        let r = during();
        compute.join(stream).map_err(|e| cuda_err("stream wait (all-reduce done)", e))?;
        r
    }
}

impl Comm for Nccl {
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn rank(&self) -> usize {
        self.control.rank()
    }
    fn size(&self) -> usize {
        self.control.size()
    }
    fn local_rank(&self) -> usize {
        self.control.local_rank()
    }
    fn sum_f64(&self, v: &mut [f64]) -> Result<()> {
        self.control.sum_f64(v)
    }
    fn broadcast_f64(&self, v: &mut [f64], root: usize) -> Result<()> {
        self.control.broadcast_f64(v, root)
    }
    fn barrier(&self) -> Result<()> {
        self.control.barrier()
    }
    /// Host buckets through device staging buffers: upload, all-reduce on the communication stream while `during`
    /// runs, download.
    fn sum_buckets(&self, buckets: &mut [HostBucket], during: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        // The driver rejects empty allocations: an empty bucket stages through one element.
        let fits = |set: &Vec<CudaSlice<f32>>| {
            set.len() == buckets.len() && set.iter().zip(buckets.iter()).all(|(d, h)| d.len() == h.data.len().max(1))
        };
        let reused = {
            let mut free = self.staging.borrow_mut();
            free.iter().position(fits).map(|i| free.swap_remove(i))
        };
        let mut staging = match reused {
            Some(set) => set,
            None => buckets
                .iter()
                .map(|b| self.grads.stream.alloc_zeros::<f32>(b.data.len().max(1)).map_err(|e| cuda_err("alloc", e)))
                .collect::<Result<Vec<_>>>()?,
        };
        for (d, h) in staging.iter_mut().zip(buckets.iter()) {
            if !h.data.is_empty() {
                let mut view = d.slice_mut(0..h.data.len());
                self.grads.stream.memcpy_htod(&h.data, &mut view).map_err(|e| cuda_err("memcpy_htod", e))?;
            }
        }
        for (d, h) in staging.iter_mut().zip(buckets.iter()) {
            if !h.data.is_empty() {
                let mut view = d.slice_mut(0..h.data.len());
                self.grads.sum_in_place(&mut view)?;
            }
        }
        let r = during();
        for (d, h) in staging.iter().zip(buckets.iter_mut()) {
            if !h.data.is_empty() {
                let view = d.slice(0..h.data.len());
                self.grads.stream.memcpy_dtoh(&view, &mut h.data).map_err(|e| cuda_err("memcpy_dtoh", e))?;
            }
        }
        self.grads.stream.synchronize().map_err(|e| cuda_err("synchronize", e))?;
        self.staging.borrow_mut().push(staging);
        r
    }
    fn gather_bytes(&self, local: &[u8], root: usize) -> Result<Vec<Vec<u8>>> {
        self.control.gather_bytes(local, root)
    }
    fn abort(&self, code: i32) -> ! {
        self.control.abort(code)
    }
    /// A sweep group's NCCL communicator: the host communicator is split, then a new NCCL id is made per group.
    fn split(&self, color: usize) -> Result<Box<dyn Comm>> {
        Ok(Box::new(Nccl::new(self.control.split(color)?)?))
    }
    fn nccl(&self) -> Option<&Nccl> {
        Some(self)
    }
}
