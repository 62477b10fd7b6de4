//! `mfd train`: the training loop (mfd-spec.md 4.4-5). Per step: the model loss BCE + lambda * indep with a
//! model AMSGrad step every `steps_per_model_step` batches, then an adversary step on the detached features.
//! Validation each epoch, checkpoints (best k by validation loss, plus `last`; `last` also every
//! `checkpoint_every_steps` / `_minutes` and on SIGTERM / SIGUSR1), `--resume [auto]`, metrics, and at the end
//! the test evaluation of the best checkpoint and the report.
//!
//! The sample order is a pure function of (seed, epoch) and the parameters of the CPU backend are a deterministic
//! function of the data, so a resumed run reaches the same parameters as an uninterrupted one.
//!
//! Data-parallel (`run_dist`, issue 4): every rank holds the whole model, trains on its B/W share of each global
//! batch, and applies the same all-reduced gradients, so all ranks keep identical tensors; rank 0 alone writes.
//!
//! The rooms: `setup.rs` (run directory, dataset, model, resume), `step.rs` (one step), `epoch_end.rs`
//! (validation, checkpoints), this file (the loop, stop decisions, the final evaluation).

use crate::backend::Backend;
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::manifest::SPLIT_TEST;
use crate::data::sampler::{Augment, TrainSampler};
use crate::dist::Comm;
use crate::error::{IoContext, MfdError, Result};
use crate::model::metadata::{MappingConfig, MetadataTable};
use crate::train::checkpoint;
use crate::train::epoch_end::best_step_of;
use crate::train::evaluate::{evaluate_sharded, EvalResult};
use crate::train::runlog::Progress;
use crate::train::setup::Training;
use crate::train::step::StepReport;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `--resume`: no (a fresh run), yes (continue from `last`, which must exist), auto (continue when `last` exists,
/// else start afresh: one job line that both starts and continues a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Resume {
    #[default]
    No,
    Yes,
    Auto,
}

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `<out>/checkpoints/last.safetensors` (see `Resume`).
    pub resume: Resume,
    /// Skip the final test evaluation and report (tests of the loop itself).
    pub skip_final_eval: bool,
    /// A fresh run into a non-empty run directory first moves the old one aside (`<out>.old-<unix time>`);
    /// without it (and without `resume`) a non-empty run directory is an error.
    pub overwrite: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub out: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub best_checkpoint: Option<PathBuf>,
    pub best_val_loss: f64,
    pub test: Option<EvalResult>,
    /// Set when a stop signal ended the run after writing `last` (the signal number).
    pub preempted: Option<i32>,
}

/// Synthesize and prepare the dataset when the config asks for it and it is absent.
pub fn ensure_dataset(cfg: &Config) -> Result<()> {
    let ds = &cfg.data.dataset;
    let synth_dir = ds.parent().map(Path::to_path_buf).unwrap_or_default().join("synth");
    if let Some(preset) = &cfg.data.synth_preset {
        // A directory synthesized by an older build (or another seed) is refused, not trained on silently.
        crate::data::synth::check_origin(&synth_dir, preset, cfg.data.synth_seed)?;
    }
    if ds.join(crate::data::manifest::MANIFEST_FILE).exists() {
        return Ok(());
    }
    let Some(preset) = &cfg.data.synth_preset else {
        return Err(MfdError::config(
            "data.dataset",
            format!("{} is not a prepared dataset and data.synth_preset is not set", ds.display()),
        ));
    };
    if !synth_dir.join("peaks.tsv").exists() {
        eprintln!("mfd: synthesizing the '{preset}' dataset into {}", synth_dir.display());
        if synth_dir.exists() {
            std::fs::remove_dir_all(&synth_dir).at(&synth_dir)?;
        }
        crate::data::synth::run(&crate::data::synth::SynthArgs {
            out: synth_dir.clone(),
            seed: cfg.data.synth_seed,
            preset: preset.clone(),
            contigs: vec![],
            fasta: None,
        })?;
    }
    eprintln!("mfd: preparing {}", ds.display());
    if ds.exists() && std::fs::read_dir(ds).at(ds)?.next().is_none() {
        std::fs::remove_dir(ds).at(ds)?;
    }
    crate::data::prepare::run(&crate::data::prepare::PrepareArgs {
        fasta: synth_dir.join("genome.fa"),
        peaks: synth_dir.join("peaks.tsv"),
        metadata: synth_dir.join("metadata.tsv"),
        out: ds.clone(),
        config: None,
    })
}

/// Load the dataset's metadata table and the mapping config named by the run config.
pub fn load_metadata(cfg: &Config, ds: &Dataset) -> Result<(MappingConfig, MetadataTable)> {
    let mapping = match &cfg.data.metadata_mapping {
        Some(p) => MappingConfig::load(p)?,
        None => MappingConfig::default_mapping(),
    };
    let table = MetadataTable::load(&ds.dir().join("metadata.tsv"), &ds.manifest().classes)?;
    Ok((mapping, table))
}

/// Train with the backend and communicator the config names, on the world the launcher started (one rank without
/// a launcher). On a multi-rank run a failure on any rank aborts the whole job (`crate::runtime`).
pub fn run(cfg: &Config, opts: &TrainOptions) -> Result<RunSummary> {
    struct Train<'a>(&'a Config, &'a TrainOptions);
    impl crate::runtime::Job for Train<'_> {
        type Out = RunSummary;
        fn run<B: Backend>(self, be: &B, comm: &dyn Comm) -> Result<RunSummary> {
            run_dist(be, comm, self.0, self.1)
        }
    }
    crate::runtime::run_world(cfg.train.backend, cfg.dist.comm, Train(cfg, opts))
}

/// The training loop on rank `comm.rank()` of `comm.size()`: each rank trains on its B/W share of every global
/// batch; gradients are all-reduced in buckets (the model's while the adversary step runs); rank 0 alone logs,
/// shows progress and writes checkpoints and evaluation outputs; validation and the final test evaluation are
/// sharded over the ranks (`evaluate_sharded`).
///
/// Gradient scaling. With `dist.batch_stats = "global"` the independence terms are functions of the global batch
/// and their backward gives each rank's local contribution (summed over ranks), while the BCE is a mean over the
/// local batch (averaged over ranks). The model step therefore runs backward with lambda * W and averages: the
/// result is exactly the gradient of BCE_global + lambda * indep_global. The adversary loss has only global terms
/// and is summed. With "local" everything is per rank and averaged, and the BatchNorm running statistics are
/// averaged after every step so that every rank keeps identical tensors.
pub fn run_dist<B: Backend>(be: &B, comm: &dyn Comm, cfg: &Config, opts: &TrainOptions) -> Result<RunSummary> {
    crate::train::preempt::install();
    let precision = be.set_precision(cfg.train.precision);
    let mut tr = Training::setup(be, comm, cfg, opts)?;
    tr.announce(precision);
    let stop = tr.train_epochs()?;
    // Reached only when every step's check passed (a mismatch is an error).
    if tr.rank0 && tr.world > 1 && crate::dist::checks::sync_check_enabled() {
        eprintln!("mfd: parameters identical on all {} ranks after each of {} steps", tr.world, tr.pos.global_step);
    }
    let best_ck = tr.best.first().map(|(_, p)| p.clone());
    let mut summary = RunSummary {
        out: cfg.train.out.clone(),
        steps: tr.pos.global_step,
        seconds: tr.start.elapsed().as_secs_f64(),
        best_checkpoint: best_ck,
        best_val_loss: tr.best.first().map(|(l, _)| *l).unwrap_or(f64::NAN),
        test: None,
        preempted: None,
    };
    if let Stop::Signal(sig) = stop {
        summary.preempted = Some(sig);
        return Ok(summary);
    }
    if opts.skip_final_eval {
        return Ok(summary);
    }
    summary.test = tr.final_evaluation()?;
    Ok(summary)
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Every epoch trained.
    Done,
    /// `max_steps` or `max_seconds` reached (validated and checkpointed).
    Limit,
    /// A stop signal (checkpointed, not validated).
    Signal(i32),
}

/// The stop/checkpoint decision after a step, agreed by all ranks (rank 0's clock for time; any rank's signal).
struct Vote {
    limit: bool,
    signal: bool,
    checkpoint: bool,
}

impl<B: Backend> Training<'_, B> {
    fn announce(&self, precision: crate::config::Precision) {
        if !self.rank0 {
            return;
        }
        let (cfg, t) = (self.cfg, &self.model.params.table);
        eprintln!(
            "mfd: training C={} T={} B={} O={} on {} train / {} val tiles; {} model + {} adversary parameters; backend {} ({}), precision {precision}",
            cfg.model.c,
            cfg.model.seq_len,
            cfg.train.batch_size,
            self.model.o,
            self.train_idx.len(),
            self.val_idx.len(),
            t.count(crate::model::params::Group::Model),
            t.count(crate::model::params::Group::Adversary),
            self.be.name(),
            self.be.device()
        );
        if self.world > 1 {
            let mb = &self.model_buckets;
            eprintln!(
                "mfd: {} ranks ({}), {} sequences per rank and step, batch statistics {}; gradient buckets: model {} x {:.2} MiB, adversary {}",
                self.world,
                self.comm.name(),
                cfg.train.batch_size / self.world,
                cfg.dist.batch_stats,
                mb.tensors.len(),
                mb.elements() as f64 * 4.0 / (1024.0 * 1024.0) / mb.tensors.len().max(1) as f64,
                self.adv_buckets.tensors.len()
            );
        }
    }

    /// The learning-rate multiplier of `train.lr_schedule` for the next update.
    pub(crate) fn lr_factor(&self) -> f64 {
        self.cfg.train.lr_schedule.factor(self.pos.global_step, self.planned_steps())
    }

    /// The multiplier of lambda_indep for the next step (`loss.indep_warmup_epochs`; 1 = the paper).
    pub(crate) fn indep_factor(&self) -> f64 {
        self.cfg.loss.indep_factor(self.pos.global_step, self.steps_per_epoch())
    }

    fn steps_per_epoch(&self) -> u64 {
        (self.train_idx.len() / self.cfg.train.batch_size.max(1)) as u64
    }

    /// Steps the whole run will have done at its end (epochs x steps per epoch, or `max_steps` when smaller).
    fn planned_steps(&self) -> u64 {
        let all = self.steps_per_epoch() * self.cfg.train.epochs as u64;
        match self.cfg.train.max_steps as u64 {
            0 => all,
            m => m.min(all),
        }
    }

    fn train_epochs(&mut self) -> Result<Stop> {
        let cfg = self.cfg;
        let (rank, b) = (self.comm.rank(), cfg.train.batch_size);
        // A run resumed at its step limit has nothing left to train: it goes straight to the final evaluation.
        if cfg.train.max_steps > 0 && self.pos.global_step >= cfg.train.max_steps as u64 {
            return Ok(Stop::Limit);
        }
        let inject = crate::dist::checks::injected_failure()?;
        let check_sync = crate::dist::checks::sync_check_enabled() && self.world > 1;
        let k_model = cfg.adversary.steps_per_model_step.max(1) as u64;
        let mut progress = Progress::new(self.rank0, self.planned_steps(), self.pos.global_step);
        while (self.pos.epoch as usize) < cfg.train.epochs {
            let sampler = TrainSampler::new(
                &self.train_idx,
                cfg.train.seed,
                self.pos.epoch,
                b,
                rank,
                self.world,
                Augment::REFERENCE,
            )?;
            let steps = sampler.steps() as u64;
            let epoch_start = std::time::Instant::now();
            let mut seen = 0u64;
            while self.pos.step_in_epoch < steps {
                crate::dist::checks::maybe_fail(inject, rank, self.pos.global_step)?;
                let plan = sampler.batch(self.pos.step_in_epoch as usize).ok_or_else(|| {
                    MfdError::other(format!("no batch {} in an epoch of {steps} steps", self.pos.step_in_epoch))
                })?;
                let model_step = self.pos.step_in_epoch.is_multiple_of(k_model);
                let report = self.step(&plan, sampler.local_batch(), model_step)?;
                if check_sync {
                    crate::dist::checks::check_identical(self.be, self.comm, &self.model.params, self.pos.global_step)?;
                }
                self.pos.step_in_epoch += 1;
                self.pos.global_step += 1;
                seen += b as u64;
                let sps = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                let msg = self.log_step(&report, sps)?;
                progress.step(self.pos.global_step, self.pos.epoch, cfg.train.epochs, msg.as_deref());
                let vote = self.vote()?;
                if vote.signal {
                    progress.finish();
                    return self.stop_on_signal();
                }
                if vote.limit {
                    progress.finish();
                    let epoch = self.pos.epoch;
                    if self.pos.step_in_epoch >= steps {
                        self.pos.epoch += 1;
                        self.pos.step_in_epoch = 0;
                    }
                    self.validate_and_checkpoint(epoch)?;
                    return Ok(Stop::Limit);
                }
                if vote.checkpoint && self.pos.step_in_epoch < steps {
                    self.save_last()?;
                }
            }
            let epoch = self.pos.epoch;
            self.pos.epoch += 1;
            self.pos.step_in_epoch = 0;
            self.validate_and_checkpoint(epoch)?;
        }
        progress.finish();
        Ok(Stop::Done)
    }

    /// On logging steps: the losses averaged over ranks, one row in the logs; returns the progress message.
    pub(crate) fn log_step(&mut self, r: &StepReport, sps: f64) -> Result<Option<String>> {
        let (cfg, step) = (self.cfg, self.pos.global_step);
        if step % cfg.train.log_every.max(1) as u64 != 0 {
            return Ok(None);
        }
        // Mean BCE and loss over ranks (the penalty terms are already global with global statistics).
        let mut v = [r.terms.bce as f64, r.loss as f64, r.adv_loss as f64];
        self.comm.sum_f64(&mut v)?;
        let [bce, loss, adv] = v.map(|x| x / self.world as f64);
        self.log.write(json!({"kind": "train", "epoch": self.pos.epoch, "step": step, "loss": loss, "bce": bce,
            "corr": r.terms.corr, "r2_bio": r.terms.r2_bio, "r2_tech": r.terms.r2_tech, "adv_loss": adv,
            "lr": cfg.train.lr * self.opt_model.lr_factor,
            "lambda": r.lambda, "seq_per_s": sps, "world": self.world,
            "exposed_grad_comm_ms": 1e3 * r.exposed_comm, "elapsed_s": self.start.elapsed().as_secs_f64()}))?;
        Ok(Some(format!("loss {loss:.4} bce {bce:.4} {sps:.0} seq/s")))
    }

    /// After a step: stop (a limit, or a stop signal on any rank) or checkpoint now? One small all-reduce on a
    /// multi-rank run so every rank decides the same after the same step.
    fn vote(&self) -> Result<Vote> {
        let t = &self.cfg.train;
        let elapsed = self.start.elapsed().as_secs_f64();
        let out_of_steps = t.max_steps > 0 && self.pos.global_step >= t.max_steps as u64;
        let out_of_time = self.rank0 && t.max_seconds > 0.0 && elapsed >= t.max_seconds;
        let signal = crate::train::preempt::received().is_some();
        let checkpoint = self.rank0 && self.periodic_checkpoint_due();
        let mut v = [out_of_steps || out_of_time, signal, checkpoint].map(|b| f64::from(u8::from(b)));
        if self.world > 1 {
            self.comm.sum_f64(&mut v)?;
        }
        Ok(Vote { limit: v[0] > 0.0, signal: v[1] > 0.0, checkpoint: v[2] > 0.0 })
    }

    /// A stop signal: write `last` at this step and end (the caller exits with `preempt::EXIT_PREEMPTED`).
    fn stop_on_signal(&mut self) -> Result<Stop> {
        let sig = crate::train::preempt::received().unwrap_or(0);
        if self.rank0 {
            eprintln!(
                "mfd: {} received: writing the checkpoint at epoch {} step {} (global step {}) and stopping",
                if sig == 0 { "a stop signal (on another rank)" } else { crate::train::preempt::name(sig) },
                self.pos.epoch,
                self.pos.step_in_epoch,
                self.pos.global_step
            );
        }
        self.save_last()?;
        self.log.write(json!({"kind": "preempted", "epoch": self.pos.epoch, "step": self.pos.global_step,
            "elapsed_s": self.start.elapsed().as_secs_f64()}))?;
        Ok(Stop::Signal(sig))
    }

    /// The test split on the best checkpoint (every rank loads the one rank 0 names; the run directory is shared,
    /// as for --resume), sharded over the ranks; rank 0 writes the outputs and the report.
    fn final_evaluation(&mut self) -> Result<Option<EvalResult>> {
        let (cfg, be) = (self.cfg, self.be);
        let best = self.best.first().map(|(_, p)| p.clone());
        let mut best_step = [best.as_deref().and_then(best_step_of).map_or(-1.0, |s| s as f64)];
        self.comm.broadcast_f64(&mut best_step, 0)?;
        let mut evaluated = None;
        if best_step[0] >= 0.0 {
            let path = self.ck_dir.join(format!("best-{:08}.safetensors", best_step[0] as u64));
            let ck = checkpoint::load(&path, &self.model.params.table)?;
            for (v, h) in self.model.params.values.iter_mut().zip(&ck.values) {
                be.write(v, h)?;
            }
            evaluated = Some(path);
        }
        let (t, b) = (cfg.model.seq_len, cfg.train.batch_size);
        let idx = self.ds.split_indices(SPLIT_TEST);
        let test = evaluate_sharded(be, self.comm, &mut self.model, &self.ds, idx, t, b, cfg.loss.lambda_indep, true)?;
        let Some(test) = test else { return Ok(None) };
        let out = &cfg.train.out;
        crate::train::report::write_eval_outputs(out, "test", &self.ds, &test)?;
        eprintln!("mfd: test macro AUROC {:.4} AUPRC {:.4} ({} tiles)", test.macro_auroc, test.macro_auprc, test.n);
        self.log.write(
            json!({"kind": "test", "epoch": self.pos.epoch.saturating_sub(1), "step": self.pos.global_step,
            "bce": test.bce, "macro_auroc": test.macro_auroc, "macro_auprc": test.macro_auprc,
            "checkpoint": evaluated.as_ref().map(|p| p.display().to_string())}),
        )?;
        crate::train::report::write_report(out, cfg, &self.ds, &test, evaluated.as_deref())?;
        Ok(Some(test))
    }
}
