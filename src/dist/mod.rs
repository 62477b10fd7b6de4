//! Data-parallel training (architecture.md section 6, issue 4): the communicator trait (`comm`), its one-rank
//! (`single`), MPI (`mpi`, feature `mpi`) and NCCL (`nccl`, device buffers, a GPU and libnccl at run time)
//! implementations, the bucketed gradient all-reduce (`buckets`) and the run-time checks of a distributed run
//! (`checks`: injected failures, identical parameters across ranks).
//!
//! Key decision: the world comes from the launcher. Under `mpirun` / `srun` (detected from the launcher's
//! environment variables) a build with the `mpi` feature joins the MPI world; anything else is one rank. A
//! multi-rank launch of a build without the feature is an error rather than W independent runs writing the same
//! run directory. `MFD_COMM=nccl` puts an `Nccl` communicator over that world (an error where NCCL cannot run).

pub mod buckets;
pub mod checks;
pub mod comm;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod nccl;
pub mod single;

pub use buckets::{Buckets, Field};
pub use comm::{BucketStart, Comm, HostBucket, Stage, StatsReduce};
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
/// otherwise `Single`; with `MFD_COMM=nccl`, NCCL over that one (see `comm_choice`).
pub fn init() -> Result<Box<dyn Comm>> {
    let host = init_host()?;
    match comm_choice()? {
        CommChoice::Host => Ok(host),
        CommChoice::Nccl => Ok(Box::new(nccl::Nccl::new(host)?)),
    }
}

/// Which communicator `MFD_COMM` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommChoice {
    /// Unset, "mpi" or "host": host buffers (`Mpi` under a launcher, else `Single`).
    Host,
    /// "nccl": device buffers over NCCL.
    Nccl,
}

/// `MFD_COMM`: unset / "mpi" / "host" or "nccl"; anything else is a config error.
pub fn comm_choice() -> Result<CommChoice> {
    match std::env::var("MFD_COMM").ok().as_deref().map(str::trim) {
        None | Some("") | Some("mpi") | Some("host") => Ok(CommChoice::Host),
        Some("nccl") => Ok(CommChoice::Nccl),
        Some(other) => Err(MfdError::config("MFD_COMM", format!("'{other}': expected mpi or nccl"))),
    }
}

/// The host communicator: `Mpi` under a launcher (feature `mpi`), else `Single`.
fn init_host() -> Result<Box<dyn Comm>> {
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
