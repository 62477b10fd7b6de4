//! The communicator trait of data-parallel training (architecture.md section 6) and its host-buffer bucket type.
//!
//! Key decisions:
//! - Every method takes `&self`, so the statistics reducer (`StatsReduce`) can use the communicator while a
//!   bucketed gradient all-reduce is in flight on it (MPI matches collectives by issue order, which is the same on
//!   every rank because every rank runs the same program).
//! - Gradients travel in host buckets (`HostBucket`); `sum_buckets` starts the all-reduce of every bucket, runs
//!   `during` (work that does not touch those gradients, e.g. the adversary step), then waits. A device-buffer
//!   communicator (`nccl::Nccl`) implements this trait over a host communicator for control and statistics
//!   (rank, abort, `sum_f64`, `gather_bytes`), stages host buckets through the device in `sum_buckets`, and offers
//!   `sum_device_buckets` to reduce the same bucket plan (`buckets::Buckets::tensors`) in device memory.
//! - A failure on one rank ends the whole job: `abort` prints nothing itself (the caller prints the rank and the
//!   cause first) and never returns.

use crate::error::Result;

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
    /// Gather every rank's `local` bytes (any length, possibly empty) on rank `root`: there the result holds one
    /// vector per rank, in rank order; on every other rank it is empty. Collective: every rank calls it. Sharded
    /// evaluation gathers its predictions with it.
    fn gather_bytes(&self, local: &[u8], root: usize) -> Result<Vec<Vec<u8>>>;
    /// End the whole job with exit code `code` (MPI_Abort); never returns.
    fn abort(&self, code: i32) -> !;
    /// The sub-communicator of the ranks that pass the same `color` (MPI_Comm_split, ranks ordered as in this
    /// communicator): a sweep runs one data-parallel group per point. Collective: every rank calls it.
    fn split(&self, color: usize) -> Result<Box<dyn Comm>>;
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
}
