//! Data-parallel training (architecture.md section 6, issue 4): the communicator trait (`comm`), its one-rank
//! (`single`), MPI (`mpi`, feature `mpi`) and NCCL (`nccl`, device buffers, a GPU and libnccl at run time)
//! implementations, the bucketed gradient all-reduce (`buckets`) and the run-time checks of a distributed run
//! (`checks`: injected failures, identical parameters across ranks).
//!
//! Key decision: the world comes from the launcher (`launch`: mpirun, srun, torchrun-style variables). A build with
//! the `mpi` feature joins the MPI world and checks it is the one the launcher announced; without a launcher it is
//! one rank. A multi-rank launch that cannot be joined is an error rather than W independent runs writing the same
//! run directory. `dist.comm` (config) puts an `Nccl` communicator over that world (`crate::runtime`).

pub mod buckets;
pub mod checks;
pub mod comm;
pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod nccl;
pub mod single;

pub use buckets::{Buckets, Field};
pub use comm::{BucketStart, Comm, HostBucket, Stage, StatsReduce};
pub use launch::{Launch, Launcher};
pub use single::Single;

use crate::error::Result;

/// This process's rank as announced by its launcher (0 without one or when the environment is unreadable): for
/// output before MPI is initialised.
pub fn launcher_rank() -> usize {
    Launch::detect().map_or(0, |l| l.rank)
}

/// The host communicator of this process's world: `Mpi` when a launcher started it (built with `--features
/// mpi`; the world MPI forms must be the one the launcher announced), otherwise `Single`. A multi-rank launch that
/// cannot be joined is an error, never N one-rank runs. The device communicator (NCCL) is put over this one by
/// `crate::runtime` when `dist.comm` asks for it.
pub fn init() -> Result<Box<dyn Comm>> {
    let launch = Launch::detect()?;
    if launch.launcher == Launcher::None {
        return Ok(Box::new(Single));
    }
    #[cfg(feature = "mpi")]
    {
        let m = mpi::Mpi::init()?;
        launch.check_joined(m.size(), m.rank())?;
        Ok(Box::new(m))
    }
    #[cfg(not(feature = "mpi"))]
    {
        if launch.multi_rank() {
            return Err(launch.unjoinable_without_mpi());
        }
        Ok(Box::new(Single))
    }
}
