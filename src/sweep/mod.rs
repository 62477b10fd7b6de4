//! `mfd sweep` (issue 6): train every point of a sweep (e.g. lambda_indep in {0, 0.001, 0.01, 0.1} and a baseline)
//! under one `mpirun`, analyse each point and write one results table.
//!
//! Key decisions:
//! - The world is split into G = W / ranks_per_point groups (`Comm::split`, one communicator per group, each
//!   group data-parallel); the points still to do are dealt round-robin to the groups, which run theirs in turn,
//!   so fewer ranks than points is fine (a single process runs them all). Ranks beyond G * ranks_per_point idle.
//! - Resume: a point with `point.json` is finished and skipped; one with `checkpoints/last.safetensors` resumes
//!   from it; the statuses are read by every rank before anything is written (a barrier follows), so all ranks
//!   agree on the plan.
//! - Only rank 0 of a group writes its point's files (the trainer's rule); world rank 0 prepares the dataset(s)
//!   before the split (no two groups synthesize the same directory) and writes the sweep table after a world
//!   barrier, from the points' `point.json`.
//! - A failure on any rank prints the rank and the point and aborts the whole job (MPI_Abort), like training.

pub mod config;
pub mod independence;
pub mod point;
pub mod table;
pub mod tissue;

use crate::dist::Comm;
use crate::error::{MfdError, Result};
use crate::sweep::config::{Point, Sweep};
use crate::sweep::point::{PointResult, Status};
use crate::train::trainer::{ensure_dataset, run_dist, Resume, RunSummary, TrainOptions};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Sweep config (TOML): base run config, points, ranks per point, output directory (configs/sweep_lambda.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a run-config value of every point, e.g. `--set train.epochs=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output directory (overrides the sweep's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ranks per point (overrides the sweep's `ranks_per_point`).
    #[arg(long)]
    pub ranks_per_point: Option<usize>,
    /// Only rewrite the results table from the finished points (no training).
    #[arg(long)]
    pub table_only: bool,
}

/// Which group runs which points: group g of G takes the pending points k with k mod G = g, in order.
pub fn assignment(pending: &[usize], groups: usize, group: usize) -> Vec<usize> {
    pending.iter().enumerate().filter(|(k, _)| groups > 0 && k % groups == group).map(|(_, &i)| i).collect()
}

/// Train one point on `comm` (its group) with the backend the point's config names; rank 0 then runs the
/// post-hoc analyses. Returns the result on the group's rank 0.
fn run_point(sweep: &Sweep, point: &Point, resume: bool, comm: &dyn Comm) -> Result<Option<PointResult>> {
    let cfg = &point.cfg;
    if resume && point::training_complete(cfg) {
        // Interrupted after its last step (e.g. during the analyses): evaluate only.
        let res = if comm.rank() == 0 { Some(point::finish(sweep, point, None)?) } else { None };
        comm.barrier()?;
        return Ok(res);
    }
    // A new point's directory holds no checkpoint: whatever an earlier attempt left there is moved aside.
    let resume = if resume { Resume::Yes } else { Resume::No };
    let opts = TrainOptions { resume, skip_final_eval: false, overwrite: resume == Resume::No };
    struct Train<'a>(&'a crate::config::Config, &'a TrainOptions);
    impl crate::runtime::Job for Train<'_> {
        type Out = RunSummary;
        fn run<B: crate::backend::Backend>(self, be: &B, comm: &dyn Comm) -> Result<RunSummary> {
            run_dist(be, comm, self.0, self.1)
        }
    }
    let summary =
        crate::runtime::with_backend(cfg.train.backend, crate::config::CommKind::Mpi, comm, Train(cfg, &opts))?;
    let res = if comm.rank() == 0 { Some(point::finish(sweep, point, Some(&summary))?) } else { None };
    comm.barrier()?;
    Ok(res)
}

/// Gather every finished point's result (world rank 0) and write the table; unfinished points are listed.
fn write_table(sweep: &Sweep) -> Result<Vec<PointResult>> {
    let mut rows = Vec::new();
    for p in &sweep.points {
        match point::status(&p.cfg.train.out) {
            Status::Finished => rows.push(PointResult::read(&p.cfg.train.out)?),
            s => eprintln!("mfd: sweep point {} is not finished ({s:?}); left out of the table", p.name),
        }
    }
    table::write_all(&sweep.out, &rows)?;
    eprintln!(
        "mfd: sweep table ({} of {} points): {}",
        rows.len(),
        sweep.points.len(),
        sweep.out.join("results.md").display()
    );
    Ok(rows)
}

pub fn run(args: &SweepArgs) -> Result<()> {
    let mut sweep = Sweep::load(&args.config, &args.set, args.out.as_deref())?;
    if let Some(r) = args.ranks_per_point {
        sweep.ranks_per_point = r.max(1);
    }
    if args.table_only {
        write_table(&sweep)?;
        return Ok(());
    }
    let world = crate::dist::init()?;
    crate::runtime::or_abort(world.as_ref(), run_world(&sweep, world.as_ref()))
}

fn run_world(sweep: &Sweep, world: &dyn Comm) -> Result<()> {
    let (rank, size) = (world.rank(), world.size());
    let rank0 = rank == 0;
    if rank0 {
        let mut done: Vec<PathBuf> = Vec::new();
        for p in &sweep.points {
            if !done.contains(&p.cfg.data.dataset) {
                ensure_dataset(&p.cfg)?;
                done.push(p.cfg.data.dataset.clone());
            }
        }
    }
    world.barrier()?;
    let statuses: Vec<Status> = sweep.points.iter().map(|p| point::status(&p.cfg.train.out)).collect();
    world.barrier()?;
    let per = sweep.ranks_per_point.min(size).max(1);
    let groups = size / per;
    let group = rank / per;
    let pending: Vec<usize> = (0..sweep.points.len()).filter(|&i| statuses[i] != Status::Finished).collect();
    if rank0 {
        eprintln!(
            "mfd: sweep of {} points ({} finished, {} to resume, {} new) on {size} rank(s): {groups} group(s) of {per}",
            sweep.points.len(),
            statuses.iter().filter(|s| **s == Status::Finished).count(),
            statuses.iter().filter(|s| **s == Status::Interrupted).count(),
            statuses.iter().filter(|s| **s == Status::New).count(),
        );
    }
    {
        // Idle ranks (group >= groups) form their own communicator and run nothing.
        let comm = world.split(group.min(groups))?;
        if group < groups {
            for i in assignment(&pending, groups, group) {
                let p = &sweep.points[i];
                let resume = statuses[i] == Status::Interrupted;
                if comm.rank() == 0 {
                    eprintln!(
                        "mfd: group {group} ({} rank(s)): {} point {} ({})",
                        comm.size(),
                        if resume { "resuming" } else { "training" },
                        p.name,
                        p.cfg.train.out.display()
                    );
                }
                let res = run_point(sweep, p, resume, comm.as_ref())
                    .map_err(|e| MfdError::other(format!("sweep point {}: {e}", p.name)))?;
                if let Some(r) = res {
                    eprintln!(
                        "mfd: point {}: test AUROC {:.4}, shuffle accuracy {:.3}, R2 bio<-tech {:.3}, tech<-bio {:.3}",
                        r.name,
                        r.test_auroc,
                        r.independence.shuffle_accuracy,
                        r.independence.r2_bio_from_tech,
                        r.independence.r2_tech_from_bio
                    );
                }
            }
        }
        // The group communicator is freed here, before the world's (MPI_Comm_free before MPI_Finalize).
    }
    world.barrier()?;
    if rank0 {
        write_table(sweep)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_points_are_dealt_round_robin() {
        let pending = [0, 2, 3, 5, 6];
        assert_eq!(assignment(&pending, 2, 0), [0, 3, 6]);
        assert_eq!(assignment(&pending, 2, 1), [2, 5]);
        assert_eq!(assignment(&pending, 1, 0), pending);
        assert!(assignment(&pending, 8, 7).is_empty());
    }
}
