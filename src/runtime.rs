//! The one place where a process picks its backend (`train.backend`) and its communicator (`dist.comm`) and runs a
//! job written once for every backend: training, sweep points and benchmarks all start here.
//!
//! Order: the launcher's host world first (its local rank picks the GPU), then the backend, then, when the
//! communicator resolves to NCCL, an NCCL communicator over the host world on the backend's device.

use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::{choose_backend, BackendChoice};
use crate::backend::Backend;
use crate::config::{BackendKind, CommKind};
use crate::dist::Comm;
use crate::error::{MfdError, Result};

/// Work generic over the backend (Rust closures cannot be generic, so a trait).
pub trait Job {
    type Out;
    fn run<B: Backend>(self, be: &B, comm: &dyn Comm) -> Result<Self::Out>;
}

/// Whether `dist.comm` means NCCL for this backend and world size.
fn wants_nccl(comm: CommKind, cuda: bool, world: usize) -> Result<bool> {
    match comm {
        CommKind::Mpi => Ok(false),
        CommKind::Auto => Ok(cuda && world > 1),
        CommKind::Nccl if cuda => Ok(true),
        CommKind::Nccl => {
            Err(MfdError::config("dist.comm", "'nccl' needs the CUDA backend (train.backend = \"cuda\")"))
        }
    }
}

/// `MFD_COMM` selected the communicator before `dist.comm` existed; a leftover setting is an error rather than
/// silently ignored.
fn refuse_old_env() -> Result<()> {
    match std::env::var("MFD_COMM") {
        Ok(v) => Err(MfdError::config(
            "MFD_COMM",
            format!("'{v}': the environment variable is no longer read; set the config key instead: --set dist.comm=\"nccl\" (or \"mpi\", \"auto\")"),
        )),
        Err(_) => Ok(()),
    }
}

/// Run `job` on this process's world with the configured backend and communicator. On a multi-rank run a failure
/// on any rank prints the rank and the cause and aborts the whole job (MPI_Abort), so no rank waits forever.
pub fn run_world<J: Job>(backend: BackendKind, comm: CommKind, job: J) -> Result<J::Out> {
    refuse_old_env()?;
    let host = crate::dist::init()?;
    let (rank, size) = (host.rank(), host.size());
    let result = match choose_backend(backend, host.local_rank()) {
        Err(e) => Err(e),
        Ok(BackendChoice::Cpu) => match wants_nccl(comm, false, size) {
            Err(e) => Err(e),
            Ok(_) => job.run(&CpuBackend, host.as_ref()),
        },
        Ok(BackendChoice::Cuda(be)) => match wants_nccl(comm, true, size) {
            Err(e) => Err(e),
            Ok(false) => job.run(be.as_ref(), host.as_ref()),
            Ok(true) => {
                // Nccl takes the host world as its control channel; an error after that point still aborts.
                match crate::dist::nccl::Nccl::new(host) {
                    Err(e) => return abort_on_error(rank, size, None, Err(e)),
                    Ok(nccl) => {
                        let r = job.run(be.as_ref(), &nccl);
                        return abort_on_error(rank, size, Some(&nccl), r);
                    }
                }
            }
        },
    };
    abort_on_error(rank, size, Some(host.as_ref()), result)
}

/// `r`, or on a multi-rank run an error ends the whole job (printed with the rank first): no rank waits forever
/// in a collective for one that failed.
pub fn or_abort<T>(comm: &dyn Comm, r: Result<T>) -> Result<T> {
    abort_on_error(comm.rank(), comm.size(), Some(comm), r)
}

fn abort_on_error<T>(rank: usize, size: usize, comm: Option<&dyn Comm>, r: Result<T>) -> Result<T> {
    match r {
        Err(e) if size > 1 => {
            eprintln!("error: rank {rank} of {size}: {e}; aborting the job");
            match comm {
                Some(c) => c.abort(1),
                None => std::process::exit(1),
            }
        }
        r => r,
    }
}

/// Run `job` with the configured backend on an existing communicator (a sweep point's group, a benchmark): host
/// buffers only, so `dist.comm = "nccl"` is refused here.
pub fn with_backend<J: Job>(backend: BackendKind, comm: CommKind, on: &dyn Comm, job: J) -> Result<J::Out> {
    if comm == CommKind::Nccl {
        return Err(MfdError::config("dist.comm", "'nccl' is for `mfd train`; sweeps and benchmarks use host buffers"));
    }
    match choose_backend(backend, on.local_rank())? {
        BackendChoice::Cpu => job.run(&CpuBackend, on),
        BackendChoice::Cuda(be) => job.run(be.as_ref(), on),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_nccl_only_for_cuda_on_several_ranks() {
        assert!(!wants_nccl(CommKind::Auto, false, 4).unwrap());
        assert!(!wants_nccl(CommKind::Auto, true, 1).unwrap());
        assert!(wants_nccl(CommKind::Auto, true, 2).unwrap());
        assert!(wants_nccl(CommKind::Nccl, true, 1).unwrap());
        assert!(!wants_nccl(CommKind::Mpi, true, 8).unwrap());
        let e = wants_nccl(CommKind::Nccl, false, 2).unwrap_err().to_string();
        assert!(e.contains("dist.comm") && e.contains("cuda"), "{e}");
    }
}
