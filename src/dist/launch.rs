//! Who started this process: an MPI launcher (mpirun/mpiexec: Open MPI, MPICH/Hydra, PMIx), Slurm's `srun`, or a
//! torchrun-style launcher (RANK / WORLD_SIZE / LOCAL_RANK), read from the environment before MPI starts.
//!
//! mfd joins a multi-rank world through MPI only. A launch it cannot join (torchrun; `srun` whose tasks MPI does
//! not see as one world, i.e. without `--mpi=pmix`; any multi-rank launch of a build without the `mpi` feature) is
//! refused with an error instead of running N independent one-rank trainings into one run directory.

use crate::error::{MfdError, Result};

/// The launcher family, from its environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher: one rank.
    None,
    /// mpirun / mpiexec (OMPI_*, PMI_*, PMIX_*): MPI_Init sees the whole world.
    Mpi,
    /// `srun` task (SLURM_STEP_NUM_TASKS / SLURM_PROCID / SLURM_LOCALID): a world MPI sees only through PMI(x).
    Slurm,
    /// torchrun / torch.distributed.launch (RANK / WORLD_SIZE / LOCAL_RANK).
    Torchrun,
}

/// What the launcher announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub launcher: Launcher,
    /// World size (1 without a launcher).
    pub world: usize,
    pub rank: usize,
    pub local_rank: usize,
}

impl Launch {
    /// This process's launch, from the environment.
    pub fn detect() -> Result<Launch> {
        Launch::from_env(|k| std::env::var(k).ok())
    }

    /// The launch described by `var` (an environment lookup; a parameter so tests need not set variables).
    /// MPI's own variables win (mpirun inside an sbatch allocation also has SLURM_* set), then srun's, then
    /// torchrun's. A value that is not a number is an error naming the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Launch> {
        let num = |k: &str| -> Result<Option<usize>> {
            match var(k) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    let shown: String = v.chars().take(40).collect();
                    MfdError::config(k, format!("'{shown}' (environment variable): expected a non-negative integer"))
                }),
            }
        };
        let first = |keys: &[&str]| -> Result<Option<usize>> {
            for k in keys {
                if let Some(v) = num(k)? {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        // Open MPI, MPICH/Hydra (PMI_*), PMIx (also what `srun --mpi=pmix` sets).
        let mpi_world = first(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"])?;
        let mpi_rank = first(&["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"])?;
        if mpi_world.is_some() || mpi_rank.is_some() {
            let local = first(&["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"])?.unwrap_or(0);
            // PMIx announces its size only through the library: the MPI world tells (size 0 = ask MPI).
            return Ok(Launch {
                launcher: Launcher::Mpi,
                world: mpi_world.unwrap_or(0),
                rank: mpi_rank.unwrap_or(0),
                local_rank: local,
            });
        }
        // srun sets SLURM_STEP_NUM_TASKS for the tasks of a job step; an sbatch script itself (one process in an
        // allocation) has SLURM_NTASKS but no step task count, and is one rank.
        if let Some(world) = num("SLURM_STEP_NUM_TASKS")? {
            return Ok(Launch {
                launcher: Launcher::Slurm,
                world,
                rank: num("SLURM_PROCID")?.unwrap_or(0),
                local_rank: num("SLURM_LOCALID")?.unwrap_or(0),
            });
        }
        if let Some(world) = num("WORLD_SIZE")? {
            return Ok(Launch {
                launcher: Launcher::Torchrun,
                world,
                rank: num("RANK")?.unwrap_or(0),
                local_rank: num("LOCAL_RANK")?.unwrap_or(0),
            });
        }
        Ok(Launch { launcher: Launcher::None, world: 1, rank: 0, local_rank: 0 })
    }

    /// True when a world of more than one rank was announced (or an MPI launcher whose size MPI will tell).
    pub fn multi_rank(&self) -> bool {
        self.world > 1 || (self.launcher == Launcher::Mpi && self.world == 0)
    }

    /// Check that the world MPI formed (`mpi_size` ranks, this one `mpi_rank`) is the one the launcher started;
    /// otherwise the launch cannot be joined (N processes would each train alone).
    pub fn check_joined(&self, mpi_size: usize, mpi_rank: usize) -> Result<()> {
        if self.world == 0 || (self.world == mpi_size && self.rank == mpi_rank) {
            return Ok(());
        }
        Err(MfdError::other(format!(
            "{} started {} ranks (this is rank {}), but MPI sees a world of {mpi_size}: {}",
            self.describe(),
            self.world,
            self.rank,
            self.how_to_join()
        )))
    }

    /// The error for a multi-rank launch of a build without MPI.
    pub fn unjoinable_without_mpi(&self) -> MfdError {
        MfdError::other(format!(
            "{} started {} ranks, but this binary was built without the `mpi` feature (cargo build --release \
             --features mpi); refusing to run {} independent one-rank trainings",
            self.describe(),
            self.world,
            self.world
        ))
    }

    fn describe(&self) -> &'static str {
        match self.launcher {
            Launcher::None => "no launcher",
            Launcher::Mpi => "the MPI launcher",
            Launcher::Slurm => "srun",
            Launcher::Torchrun => "a torchrun-style launcher (RANK/WORLD_SIZE)",
        }
    }

    fn how_to_join(&self) -> &'static str {
        match self.launcher {
            Launcher::Slurm => {
                "start the tasks with `srun --mpi=pmix` (or mpirun inside the allocation; launch/train.slurm)"
            }
            Launcher::Torchrun => {
                "mfd joins MPI worlds only: start it with mpirun (launch/train.sh) or srun --mpi=pmix"
            }
            _ => "the MPI library and the launcher disagree (mpirun from another MPI installation?)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn launchers_are_told_apart() {
        let none = launch(&[]).unwrap();
        assert_eq!((none.launcher, none.world, none.multi_rank()), (Launcher::None, 1, false));
        let ompi = launch(&[
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"),
        ])
        .unwrap();
        assert_eq!(ompi, Launch { launcher: Launcher::Mpi, world: 4, rank: 2, local_rank: 0 });
        let pmix = launch(&[("PMIX_RANK", "3"), ("SLURM_LOCALID", "1")]).unwrap();
        assert_eq!((pmix.launcher, pmix.world, pmix.rank, pmix.local_rank), (Launcher::Mpi, 0, 3, 1));
        assert!(pmix.multi_rank());
        let srun = launch(&[
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS", "8"),
        ])
        .unwrap();
        assert_eq!(srun, Launch { launcher: Launcher::Slurm, world: 8, rank: 5, local_rank: 1 });
        // An sbatch script (no job step) is one rank even in a multi-task allocation.
        let batch = launch(&[("SLURM_NTASKS", "8"), ("SLURM_PROCID", "0")]).unwrap();
        assert_eq!(batch.launcher, Launcher::None);
        let torch = launch(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")]).unwrap();
        assert_eq!(torch, Launch { launcher: Launcher::Torchrun, world: 2, rank: 1, local_rank: 1 });
        let e = launch(&[("WORLD_SIZE", "two")]).unwrap_err().to_string();
        assert!(e.contains("WORLD_SIZE") && e.contains("two"), "{e}");
    }

    #[test]
    fn a_world_mpi_does_not_see_is_refused() {
        let srun = launch(&[("SLURM_STEP_NUM_TASKS", "4"), ("SLURM_PROCID", "2")]).unwrap();
        let e = srun.check_joined(1, 0).unwrap_err().to_string();
        assert!(e.contains("srun") && e.contains("--mpi=pmix") && e.contains("4 ranks"), "{e}");
        assert!(srun.check_joined(4, 2).is_ok());
        let torch = launch(&[("WORLD_SIZE", "2"), ("RANK", "0")]).unwrap();
        assert!(torch.check_joined(1, 0).unwrap_err().to_string().contains("mpirun"));
        assert!(torch.unjoinable_without_mpi().to_string().contains("--features mpi"));
    }
}
