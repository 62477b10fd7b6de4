//! Driver calls per training step (issue 19 item 5): the trainer's own step (`Training::step`) and its logging
//! (`log_step`, every `train.log_every` steps) run `steps` times, and the virtual GPU's counters
//! (`backend::cuda::counters`) are read around each step. On a real GPU (or the CPU backend) the counters are
//! unavailable and this returns `None`. Used by tests/vgpu_counts.rs (which asserts the budget) and by
//! `mfd bench --backend cuda` (which prints the table).

use crate::backend::cuda::counters::{self, DriverCounts};
use crate::backend::Backend;
use crate::config::Config;
use crate::data::sampler::{Augment, TrainSampler};
use crate::dist::Comm;
use crate::error::{MfdError, Result};
use crate::train::setup::Training;
use crate::train::trainer::TrainOptions;

/// The driver calls of one training step (step and, on logging steps, the log line).
#[derive(Debug, Clone, Copy)]
pub struct StepCount {
    /// 1-based global step.
    pub step: u64,
    /// Whether this step wrote a log line (`train.log_every`).
    pub logged: bool,
    pub counts: DriverCounts,
}

/// Run `steps` training steps of `cfg` (a fresh run into `cfg.train.out`) and count each step's driver calls;
/// `None` when the counters are unavailable (not the virtual GPU).
pub fn count_training_steps<B: Backend>(
    be: &B,
    comm: &dyn Comm,
    cfg: &Config,
    steps: usize,
) -> Result<Option<Vec<StepCount>>> {
    if counters::read().is_none() {
        return Ok(None);
    }
    let opts = TrainOptions { skip_final_eval: true, overwrite: true, ..Default::default() };
    let mut tr = Training::setup(be, comm, cfg, &opts)?;
    let b = cfg.train.batch_size;
    let sampler = TrainSampler::new(&tr.train_idx, cfg.train.seed, 0, b, comm.rank(), comm.size(), Augment::REFERENCE)?;
    if sampler.steps() == 0 {
        return Err(MfdError::other("step counts: the dataset has no training batch"));
    }
    let k_model = cfg.adversary.steps_per_model_step.max(1) as u64;
    let mut out = Vec::with_capacity(steps);
    for i in 0..steps {
        let plan =
            sampler.batch(i % sampler.steps()).ok_or_else(|| MfdError::other(format!("step counts: no batch {i}")))?;
        let before = counters::read().unwrap_or_default();
        let report = tr.step(&plan, sampler.local_batch(), (i as u64).is_multiple_of(k_model))?;
        tr.pos.step_in_epoch += 1;
        tr.pos.global_step += 1;
        let logged = tr.log_step(&report, 0.0)?.is_some();
        let counts = counters::read().unwrap_or_default().since(&before);
        out.push(StepCount { step: tr.pos.global_step, logged, counts });
    }
    Ok(Some(out))
}

/// A Markdown table of per-step counts.
pub fn table(rows: &[StepCount]) -> String {
    let mut md = String::from(
        "| step | logged | launches | syncs | H2D copies | H2D bytes | D2H copies | D2H bytes | allocations |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = &r.counts;
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.step,
            if r.logged { "yes" } else { "" },
            c.launches,
            c.synchronizations,
            c.htod_copies,
            c.htod_bytes,
            c.dtoh_copies,
            c.dtoh_bytes,
            c.allocations
        );
    }
    md
}

/// `mfd bench train` on a device backend: 20 trainer steps (4 with --quick) of a tiny configuration (C = 16,
/// T = 128, B = 8 unless --batch, logged every 10 / 2 steps) counted through the virtual GPU's counters, as
/// Markdown and JSON; on a real GPU the counters are unavailable and the section says so.
pub fn bench_counts<B: Backend>(be: &B, args: &super::BenchArgs) -> Result<(String, serde_json::Value)> {
    let (steps, log_every) = if args.quick { (4, 2) } else { (20, 10) };
    let b = args.batch.unwrap_or(8);
    let path = |p: std::path::PathBuf| toml::Value::String(p.to_string_lossy().into_owned());
    let overrides = vec![
        format!("data.dataset={}", path(args.work.join("dataset-tiny"))),
        format!("train.out={}", path(args.work.join("driver-calls-run"))),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        format!("train.batch_size={b}"),
        "train.max_seconds=0".into(),
        format!("train.log_every={log_every}"),
        format!("train.max_steps={steps}"),
    ];
    let cfg = Config::load(None, &overrides)?;
    // A scratch run: the previous bench's is removed rather than moved aside.
    if cfg.train.out.exists() {
        std::fs::remove_dir_all(&cfg.train.out)
            .map_err(|e| MfdError::other(format!("{}: {e}", cfg.train.out.display())))?;
    }
    let title = format!(
        "## Driver calls per training step ({}, C = 16, T = 128, B = {b}, 1 rank, logged every {log_every} steps)\n\n",
        be.device()
    );
    match count_training_steps(be, &crate::dist::Single, &cfg, steps)? {
        Some(rows) => {
            let json = rows
                .iter()
                .map(|r| {
                    let c = &r.counts;
                    serde_json::json!({"step": r.step, "logged": r.logged, "launches": c.launches,
                        "synchronizations": c.synchronizations, "htod_copies": c.htod_copies,
                        "htod_bytes": c.htod_bytes, "dtoh_copies": c.dtoh_copies, "dtoh_bytes": c.dtoh_bytes,
                        "allocations": c.allocations})
                })
                .collect();
            Ok((title + &table(&rows), serde_json::Value::Array(json)))
        }
        None => Ok((
            title + "unavailable: the loaded driver does not count calls (only the virtual GPU, tests/vgpu, does)\n",
            serde_json::Value::Null,
        )),
    }
}
