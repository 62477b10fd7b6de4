//! The communicator trait of data-parallel training (architecture.md section 6) and its host-buffer bucket type.
//!
//! Key decisions:
//! - Every method takes `&self`, so the statistics reducer (`StatsReduce`) can use the communicator while a
//!   bucketed gradient all-reduce is in flight on it (MPI matches collectives by issue order, which is the same on
//!   every rank because every rank runs the same program).
//! - Gradients travel in host buckets (`HostBucket`); `sum_buckets` starts the all-reduce of every bucket, runs
//!   `during` (work that does not touch those gradients, e.g. the adversary step), then waits. A device-buffer
//!   communicator (`nccl::Nccl`) implements this trait over a host communicator for control and small host sums
//!   (rank, abort, `sum_f64`, `gather_bytes`) and says so through `Comm::nccl`: with the CUDA backend, the
//!   trainer's gradient buckets (`buckets::Buckets`) and the batch statistics (`StatsReduce::sum_device`) are then
//!   summed by NCCL in device memory, ordered by events, with no host copy or synchronisation (issue 19 item 4).
//!   MPI (and NCCL with host buckets, `sum_buckets`) keep the host path.
//! - `sum_buckets_overlapped` starts each bucket as soon as the caller has filled it (the model's backward
//!   announces final gradients through `model::grad_ready::GradReady`); its default reduces the filled buckets
//!   with `sum_buckets` afterwards, `Mpi` overrides it with one MPI_Iallreduce per bucket started on the spot.
//! - A failure on one rank ends the whole job: `abort` prints nothing itself (the caller prints the rank and the
//!   cause first) and never returns.

use crate::error::{MfdError, Result};

/// One bucket of a bucketed all-reduce: `data` holds the local values before and the sum over ranks after;
/// `scratch` is the receive buffer of a non-blocking all-reduce (same length; kept to avoid per-step allocation).
#[derive(Debug, Clone, Default)]
pub struct HostBucket {
    pub data: Vec<f32>,
    pub scratch: Vec<f32>,
}

/// A data-parallel communicator over host memory.
pub trait Comm {
    /// "single", "mpi" or "nccl".
    fn name(&self) -> &'static str;
    /// This process's rank in [0, size).
    fn rank(&self) -> usize;
    /// World size W.
    fn size(&self) -> usize;
    /// Rank among the processes of this node (GPU binding).
    fn local_rank(&self) -> usize;
    /// Element-wise sum over ranks of small f64 vectors (batch statistics, flags), blocking; every rank calls with
    /// the same length.
    fn sum_f64(&self, v: &mut [f64]) -> Result<()>;
    /// Replace `v` by rank `root`'s `v`.
    fn broadcast_f64(&self, v: &mut [f64], root: usize) -> Result<()>;
    /// Wait for every rank.
    fn barrier(&self) -> Result<()>;
    /// Sum every bucket's `data` over ranks. The all-reduces are started (non-blocking where the implementation
    /// can) in bucket order, `during` runs while they are in flight, then all are waited for. Every rank passes
    /// buckets of the same lengths. The error of `during`, if any, is returned after the wait.
    fn sum_buckets(&self, buckets: &mut [HostBucket], during: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    /// `sum_buckets` with the buckets filled and started one by one while work is produced (the model's backward,
    /// overlap of issue 4 item 3). `work` is called twice: with `Stage::Produce(start)`, where it calls
    /// `start.start(k, fill)` once per bucket as soon as bucket k's contents are final, then with `Stage::During`
    /// while the all-reduces are in flight (as `sum_buckets`'s `during`); then all are waited for. Every rank
    /// starts the buckets in the same order. A bucket left unstarted is an error (after the wait). The default
    /// fills the buckets during `Produce` and reduces them all with `sum_buckets` around `During` (no overlap with
    /// `Produce`); `Mpi` starts a non-blocking all-reduce per bucket as it comes.
    fn sum_buckets_overlapped(
        &self,
        buckets: &mut [HostBucket],
        work: &mut dyn FnMut(Stage<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut fill_only = FillOnly { started: vec![false; buckets.len()], buckets: &mut *buckets };
        work(Stage::Produce(&mut fill_only))?;
        let started = fill_only.started;
        unstarted_error(&started)?;
        self.sum_buckets(buckets, &mut || work(Stage::During))
    }
    /// Gather every rank's `local` bytes (any length, possibly empty) on rank `root`: there the result holds one
    /// vector per rank, in rank order; on every other rank it is empty. Collective: every rank calls it. Sharded
    /// evaluation gathers its predictions with it.
    fn gather_bytes(&self, local: &[u8], root: usize) -> Result<Vec<Vec<u8>>>;
    /// End the whole job with exit code `code` (MPI_Abort); never returns.
    fn abort(&self, code: i32) -> !;
    /// The sub-communicator of the ranks that pass the same `color` (MPI_Comm_split, ranks ordered as in this
    /// communicator): a sweep runs one data-parallel group per point. Collective: every rank calls it.
    fn split(&self, color: usize) -> Result<Box<dyn Comm>>;
    /// The NCCL communicator, when this is one: with the CUDA backend, gradient buckets and statistics are then
    /// summed in device memory (`buckets::Buckets`, `StatsReduce::sum_device`) rather than through the host.
    fn nccl(&self) -> Option<&crate::dist::nccl::Nccl> {
        None
    }
}

/// The two calls of `Comm::sum_buckets_overlapped`'s work: first produce and start the buckets, then the work
/// that overlaps their all-reduces without touching them.
pub enum Stage<'a> {
    Produce(&'a mut dyn BucketStart),
    During,
}

/// Starts the all-reduce of one bucket once its contents are final (`Comm::sum_buckets_overlapped`).
pub trait BucketStart {
    /// Fill bucket `k`'s data with `fill` (it gets the whole bucket) and start its all-reduce. Each bucket once.
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<()>;
    /// Let in-flight all-reduces progress (MPI progresses non-blocking collectives only inside MPI calls); cheap,
    /// called often by the producer.
    fn progress(&mut self) {}
}

/// The default `BucketStart`: fills the bucket, starts nothing.
struct FillOnly<'a> {
    buckets: &'a mut [HostBucket],
    started: Vec<bool>,
}

impl BucketStart for FillOnly<'_> {
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<()> {
        claim(&mut self.started, k)?;
        fill(&mut self.buckets[k].data)
    }
}

/// Mark bucket `k` as started; an error if it does not exist or was started before.
pub(crate) fn claim(started: &mut [bool], k: usize) -> Result<()> {
    match started.get_mut(k) {
        Some(s) if !*s => {
            *s = true;
            Ok(())
        }
        Some(_) => Err(MfdError::other(format!("gradient bucket {k} started twice"))),
        None => Err(MfdError::other(format!("gradient bucket {k} of {}", started.len()))),
    }
}

/// An error naming the first bucket never started.
pub(crate) fn unstarted_error(started: &[bool]) -> Result<()> {
    match started.iter().position(|s| !s) {
        Some(k) => Err(MfdError::other(format!("gradient bucket {k} of {} was never started", started.len()))),
        None => Ok(()),
    }
}

/// `Reduce` (the backend's batch-statistics hook) over a communicator: `dist.batch_stats = "global"` passes the
/// communicator, "local" passes none (statistics of the rank's own batch).
pub struct StatsReduce<'a> {
    comm: Option<&'a dyn Comm>,
}

impl<'a> StatsReduce<'a> {
    /// Global statistics when `global` and the world has more than one rank; otherwise the identity.
    pub fn new(comm: &'a dyn Comm, global: bool) -> Self {
        StatsReduce { comm: (global && comm.size() > 1).then_some(comm) }
    }
}

impl crate::backend::Reduce for StatsReduce<'_> {
    fn sum(&mut self, v: &mut [f64]) -> Result<()> {
        match self.comm {
            Some(c) => c.sum_f64(v),
            None => Ok(()),
        }
    }
    fn sum_device(
        &mut self,
        be: &crate::backend::cuda::CudaBackend,
        v: &mut crate::backend::cuda::DevBuf<f64>,
    ) -> Result<()> {
        // Several ranks: NCCL sums in device memory, ordered after the kernels that wrote `v` and before those that
        // read it by events (no host synchronisation); MPI goes through the host; one rank: nothing.
        let Some(c) = self.comm else { return Ok(()) };
        match c.nccl() {
            Some(_) if v.is_empty() => Ok(()),
            Some(nccl) => nccl.sum_stats(be.stream(), &mut v.view_mut()),
            None => {
                let mut host = be.host_vec(v)?;
                c.sum_f64(&mut host)?;
                be.put(v, &host)
            }
        }
    }
}
