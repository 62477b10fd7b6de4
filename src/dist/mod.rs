//! Data-parallel training (architecture.md section 6, issue 4): the communicator trait (`comm`), its one-rank
//! (`single`) and MPI (`mpi`, feature `mpi`) implementations, the bucketed gradient all-reduce (`buckets`) and the
//! run-time checks of a distributed run (`checks`: injected failures, identical parameters across ranks).
//!
//! Key decision: the world comes from the launcher. Under `mpirun` / `srun` (detected from the launcher's
//! environment variables) a build with the `mpi` feature joins the MPI world; anything else is one rank. A
//! multi-rank launch of a build without the feature is an error rather than W independent runs writing the same
//! run directory.

pub mod buckets;
pub mod checks;
pub mod comm;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod single;

pub use buckets::{Buckets, Field};
pub use comm::{Comm, HostBucket, StatsReduce};
pub use single::Single;

use crate::error::{MfdError, Result};

/// World size announced by an MPI launcher (Open MPI, MPICH/Hydra, PMIx, Slurm), if any.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
        .or_else(|| std::env::var("PMIX_RANK").ok().map(|_| 0))
}

/// This process's rank as announced by an MPI launcher (0 without one): for output before MPI is initialised.
pub fn launcher_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// The communicator of this process: MPI when launched by an MPI launcher and built with `--features mpi`,
/// otherwise `Single`.
pub fn init() -> Result<Box<dyn Comm>> {
    let launched = launcher_world_size();
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        return Ok(Box::new(mpi::Mpi::init()?));
    }
    match launched {
        Some(w) if w > 1 => Err(MfdError::other(format!(
            "launched as one of {w} MPI ranks, but this binary was built without the `mpi` feature \
             (cargo build --release --features mpi)"
        ))),
        _ => Ok(Box::new(Single)),
    }
}
