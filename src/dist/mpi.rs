//! `Mpi`: the host-buffer communicator over MPI (rsmpi), used by the CPU backend and as the GPU fallback.
//!
//! Key decisions:
//! - MPI is initialised with `Threading::Single`: only the main thread calls MPI (rayon workers never do).
//! - Gradient buckets use `MPI_Iallreduce` (rsmpi `immediate_all_reduce_into`) inside a request scope, so every
//!   request is completed before the buffers can be touched again; statistics use blocking `MPI_Allreduce`.
//!   `sum_buckets_overlapped` keeps the scope open across the model's backward: each bucket's request is issued
//!   when the backward has filled it, and every later ready tensor calls MPI_Test on the outstanding requests (Open
//!   MPI progresses non-blocking collectives only inside MPI calls).
//! - A panic on any rank prints the rank and calls `MPI_Abort` (installed panic hook), so no rank waits forever in
//!   a collective for a rank that died. The hook is removed when the communicator is dropped (MPI_Finalize).
//! - `split` (sweeps) gives an `Mpi` over a sub-communicator that does not own the MPI environment: it must be
//!   dropped before the world communicator (MPI_Comm_free before MPI_Finalize), and its `abort` ends the whole
//!   job (MPI_Abort on MPI_COMM_WORLD), not only its group.

use crate::dist::comm::{claim, unstarted_error, BucketStart, Comm, HostBucket, Stage};
use crate::error::{MfdError, Result};
use mpi::collective::SystemOperation;
use mpi::request::{LocalScope, Request};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

/// Largest number of bytes one rank sends per `MPI_Gatherv` round of `gather_bytes`.
const GATHER_CHUNK: usize = 256 << 20;

pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    local_rank: usize,
    // Dropped last: MPI_Finalize. None for a sub-communicator made by `split`.
    universe: Option<mpi::environment::Universe>,
}

impl Mpi {
    /// Initialise MPI (once per process).
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize()
            .ok_or_else(|| MfdError::other("MPI was already initialised (and finalised) in this process"))?;
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            prev(info);
            eprintln!("error: rank {rank} of {size} panicked; aborting the job (MPI_Abort)");
            SimpleCommunicator::world().abort(101);
        }));
        Ok(Mpi { world, rank, size, local_rank, universe: Some(universe) })
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        // Back to the default hook before MPI_Finalize: MPI_Abort is not allowed after it.
        if self.universe.is_some() {
            let _ = std::panic::take_hook();
        }
    }
}

impl Comm for Mpi {
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn sum_f64(&self, v: &mut [f64]) -> Result<()> {
        let send = v.to_vec();
        self.world.all_reduce_into(&send[..], v, SystemOperation::sum());
        Ok(())
    }
    fn broadcast_f64(&self, v: &mut [f64], root: usize) -> Result<()> {
        self.world.process_at_rank(root as i32).broadcast_into(v);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
    fn sum_buckets(&self, buckets: &mut [HostBucket], during: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let world = &self.world;
        let res = mpi::request::scope(|scope| {
            let mut reqs = Vec::with_capacity(buckets.len());
            for b in buckets.iter_mut() {
                let HostBucket { data, scratch } = b;
                scratch.resize(data.len(), 0.0);
                let send: &[f32] = data;
                reqs.push(world.immediate_all_reduce_into(scope, send, &mut scratch[..], SystemOperation::sum()));
            }
            let r = during();
            for q in reqs {
                q.wait_without_status();
            }
            r
        });
        for b in buckets.iter_mut() {
            std::mem::swap(&mut b.data, &mut b.scratch);
        }
        res
    }
    fn sum_buckets_overlapped(
        &self,
        buckets: &mut [HostBucket],
        work: &mut dyn FnMut(Stage<'_>) -> Result<()>,
    ) -> Result<()> {
        let n = buckets.len();
        let world = &self.world;
        // Blocking collectives issued by `work` (global BatchNorm statistics through `sum_f64`, the
        // adversary's bucket all-reduce) run on this communicator while these MPI_Iallreduce requests are
        // outstanding. MPI allows that when every rank issues all its collectives, blocking and non-blocking, in
        // the same order; they do, since every rank runs the same backward and calls `start` at the same points.
        let (res, started) = mpi::request::scope(|scope| {
            let mut st = MpiStart {
                world,
                scope,
                slots: buckets.iter_mut().map(Some).collect(),
                reqs: (0..n).map(|_| None).collect(),
                started: vec![false; n],
            };
            let mut res = work(Stage::Produce(&mut st));
            if res.is_ok() {
                res = work(Stage::During);
            }
            for q in st.reqs.iter_mut().filter_map(Option::take) {
                q.wait_without_status();
            }
            (res, st.started)
        });
        for (b, _) in buckets.iter_mut().zip(&started).filter(|(_, s)| **s) {
            std::mem::swap(&mut b.data, &mut b.scratch);
        }
        res?;
        unstarted_error(&started)
    }
    fn gather_bytes(&self, local: &[u8], root: usize) -> Result<Vec<Vec<u8>>> {
        let r = self.world.process_at_rank(root as i32);
        let mine = local.len() as u64;
        let mut lens = vec![0u64; self.size];
        if self.rank == root {
            r.gather_into_root(&mine, &mut lens[..]);
        } else {
            r.gather_into(&mine);
        }
        // MPI counts and displacements are i32: gather in rounds of at most `chunk` bytes per rank, so that one
        // round's receive buffer stays below 2^31 bytes.
        let chunk = ((i32::MAX as usize) / self.size).clamp(1, GATHER_CHUNK);
        let longest = if self.rank == root { lens.iter().copied().max().unwrap_or(0) } else { 0 };
        let mut rounds = [longest as f64];
        self.broadcast_f64(&mut rounds, root)?;
        let rounds = (rounds[0] as usize).div_ceil(chunk);
        let mut out: Vec<Vec<u8>> =
            if self.rank == root { lens.iter().map(|&n| Vec::with_capacity(n as usize)).collect() } else { Vec::new() };
        for k in 0..rounds {
            let piece = |n: usize| (k * chunk).min(n)..((k + 1) * chunk).min(n);
            let send = &local[piece(local.len())];
            if self.rank == root {
                let counts: Vec<i32> = lens.iter().map(|&n| piece(n as usize).len() as i32).collect();
                let displs: Vec<i32> =
                    counts.iter().scan(0i32, |acc, &c| Some(std::mem::replace(acc, *acc + c))).collect();
                let mut recv = vec![0u8; counts.iter().map(|&c| c as usize).sum()];
                {
                    let mut part = mpi::datatype::PartitionMut::new(&mut recv[..], &counts[..], &displs[..]);
                    r.gather_varcount_into_root(send, &mut part);
                }
                for ((o, &c), &d) in out.iter_mut().zip(&counts).zip(&displs) {
                    o.extend_from_slice(&recv[d as usize..(d + c) as usize]);
                }
            } else {
                r.gather_varcount_into(send);
            }
        }
        Ok(out)
    }
    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
    fn split(&self, color: usize) -> Result<Box<dyn Comm>> {
        let c = i32::try_from(color).map_err(|_| MfdError::other(format!("split: color {color} too large")))?;
        let sub = self
            .world
            .split_by_color(mpi::topology::Color::with_value(c))
            .ok_or_else(|| MfdError::other("MPI_Comm_split returned MPI_COMM_NULL"))?;
        let (rank, size) = (sub.rank() as usize, sub.size() as usize);
        let local_rank = self.local_rank;
        Ok(Box::new(Mpi { world: sub, rank, size, local_rank, universe: None }))
    }
}

/// `BucketStart` over MPI_Iallreduce: `slots[k]` is bucket k until it is started; then `reqs[k]` holds its request
/// (until completed) and the result lands in the bucket's `scratch`.
struct MpiStart<'a, 's> {
    world: &'s SimpleCommunicator,
    scope: &'s LocalScope<'a>,
    slots: Vec<Option<&'a mut HostBucket>>,
    reqs: Vec<Option<Request<'a, [f32], &'s LocalScope<'a>>>>,
    started: Vec<bool>,
}

impl BucketStart for MpiStart<'_, '_> {
    fn start(&mut self, k: usize, fill: &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<()> {
        claim(&mut self.started, k)?;
        let HostBucket { data, scratch } = self.slots[k].take().expect("claimed once");
        fill(data)?;
        scratch.resize(data.len(), 0.0);
        let send: &[f32] = data;
        self.reqs[k] =
            Some(self.world.immediate_all_reduce_into(self.scope, send, &mut scratch[..], SystemOperation::sum()));
        self.progress();
        Ok(())
    }
    fn progress(&mut self) {
        // MPI_Test on every outstanding request: Open MPI advances non-blocking collectives only inside MPI calls.
        for slot in self.reqs.iter_mut() {
            if let Some(q) = slot.take() {
                if let Err(q) = q.test() {
                    *slot = Some(q);
                }
            }
        }
    }
}
