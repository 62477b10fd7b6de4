//! `mfd train`: the training loop (mfd-spec.md 4.4-5). Per step: the model loss BCE + lambda * indep with a
//! model AMSGrad step every `steps_per_model_step` batches, then an adversary step on the detached features.
//! Validation each epoch, checkpoints (best k by validation loss, plus `last`), `--resume`, metrics.jsonl, and at
//! the end the test evaluation of the best checkpoint and the report.
//!
//! The sample order is a pure function of (seed, epoch) and the parameters of the CPU backend are a deterministic
//! function of the data, so a resumed run reaches the same parameters as an uninterrupted one.
//!
//! Data-parallel (`run_dist`, issue 4): every rank holds the whole model, trains on its B/W share of each global
//! batch, and applies the same all-reduced gradients, so all ranks keep identical tensors; rank 0 alone writes.

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::manifest::{SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use crate::data::sampler::{Augment, TrainSampler};
use crate::data::window::{encode_batch, gather_labels};
use crate::dist::buckets::Phase;
use crate::dist::{Buckets, Comm, Field, StatsReduce};
use crate::error::{IoContext, MfdError, Result};
use crate::model::grad_ready::NoHook;
use crate::model::metadata::{MappingConfig, MetadataTable};
use crate::model::mfd::{LossTerms, Mfd};
use crate::model::params::Group;
use crate::train::checkpoint::{self, Checkpoint, Position};
use crate::train::evaluate::{evaluate_sharded, EvalResult};
use crate::train::optim::optimisers;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from `<out>/checkpoints/last.safetensors`.
    pub resume: bool,
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
}

/// Synthesize and prepare the dataset when the config asks for it and it is absent.
pub fn ensure_dataset(cfg: &Config) -> Result<()> {
    let ds = &cfg.data.dataset;
    if ds.join(crate::data::manifest::MANIFEST_FILE).exists() {
        return Ok(());
    }
    let Some(preset) = &cfg.data.synth_preset else {
        return Err(MfdError::config(
            "data.dataset",
            format!("{} is not a prepared dataset and data.synth_preset is not set", ds.display()),
        ));
    };
    let parent = ds.parent().map(Path::to_path_buf).unwrap_or_default();
    let synth_dir = parent.join("synth");
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

/// Train with the backend the config names, on the world the launcher started (one rank without `mpirun`). On a
/// multi-rank run a failure on any rank prints the rank and the cause and aborts the whole job (MPI_Abort).
pub fn run(cfg: &Config, opts: &TrainOptions) -> Result<RunSummary> {
    let comm = crate::dist::init()?;
    let result = match crate::backend::cuda::choose_backend(&cfg.train.backend, comm.local_rank()) {
        Ok(crate::backend::cuda::BackendChoice::Cpu) => run_dist(&CpuBackend, comm.as_ref(), cfg, opts),
        Ok(crate::backend::cuda::BackendChoice::Cuda(be)) => run_dist(be.as_ref(), comm.as_ref(), cfg, opts),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if comm.size() > 1 => {
            eprintln!("error: rank {} of {}: {e}; aborting the job", comm.rank(), comm.size());
            comm.abort(1)
        }
        r => r,
    }
}

struct MetricsLog {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl MetricsLog {
    /// Rank 0 appends to `path`; other ranks log nothing.
    fn open(path: &Path, rank0: bool) -> Result<Self> {
        let file =
            if rank0 { Some(std::fs::OpenOptions::new().create(true).append(true).open(path).at(path)?) } else { None };
        Ok(MetricsLog { file, path: path.to_path_buf() })
    }
    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        match &mut self.file {
            Some(f) => writeln!(f, "{v}").at(&self.path),
            None => Ok(()),
        }
    }
}

/// Train on one rank with backend `be`.
pub fn run_with<B: Backend>(be: &B, cfg: &Config, opts: &TrainOptions) -> Result<RunSummary> {
    run_dist(be, &crate::dist::Single, cfg, opts)
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
    let (rank, world) = (comm.rank(), comm.size());
    let rank0 = rank == 0;
    let out = cfg.train.out.clone();
    if rank0 {
        crate::data::check_out_parent(&out)?;
    }
    if rank0 && !opts.resume && !opts.overwrite && dir_has_entries(&out)? {
        return Err(MfdError::input(
            &out,
            None,
            None,
            "the run directory is not empty: continue it with --resume, pick another --out, or pass --overwrite \
             (moves the old run aside first)",
        ));
    }
    if rank0 {
        ensure_dataset(cfg)?;
    }
    comm.barrier()?;
    let ds = Dataset::open(&cfg.data.dataset)?;
    if ds.split_indices(SPLIT_VAL).is_empty() {
        return Err(MfdError::input(
            ds.dir(),
            None,
            Some("split"),
            "the validation split has no tiles: validation loss and the best checkpoint would be meaningless",
        ));
    }
    if !opts.skip_final_eval && ds.split_indices(SPLIT_TEST).is_empty() {
        return Err(MfdError::input(ds.dir(), None, Some("split"), "the test split has no tiles (no test contig?)"));
    }
    let (mapping, table) = load_metadata(cfg, &ds)?;
    let ck_dir = out.join("checkpoints");
    let metrics_path = out.join("metrics.jsonl");

    // The run directory is left untouched until the config has validated, the model is built and a resumed
    // checkpoint has loaded.
    let mut model = Mfd::new(be, &cfg.model, &cfg.adversary, &mapping, &table, ds.label_row_bytes(), cfg.train.seed)?;
    let (mut opt_model, mut opt_adv) = optimisers(be, &model.params, cfg)?;
    let mut pos = Position::default();
    let last_path = ck_dir.join("last.safetensors");
    let mut best: Vec<(f64, PathBuf)> = Vec::new();
    if opts.resume {
        if !last_path.exists() {
            return Err(MfdError::input(&last_path, None, None, "--resume: no checkpoint to resume from"));
        }
        let ck = checkpoint::load(&last_path, &model.params.table)?;
        for (v, h) in model.params.values.iter_mut().zip(&ck.values) {
            be.write(v, h)?;
        }
        if let Some((s, m)) = &ck.model_opt {
            opt_model.load_host(be, *s, m)?;
        }
        if let Some((s, m)) = &ck.adv_opt {
            opt_adv.load_host(be, *s, m)?;
        }
        pos = ck.position;
        if rank0 {
            checkpoint::repair(&last_path)?;
            best = list_best(&ck_dir)?;
            eprintln!(
                "mfd: resuming at epoch {} step {} (global step {}); checkpoint written by {} rank(s), now {world}",
                pos.epoch, pos.step_in_epoch, pos.global_step, ck.world
            );
        }
    }

    if rank0 {
        if !opts.resume && dir_has_entries(&out)? {
            let aside = PathBuf::from(format!(
                "{}.old-{}",
                out.display(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            ));
            std::fs::rename(&out, &aside).at(&aside)?;
            eprintln!("mfd: --overwrite: the old run in {} moved to {}", out.display(), aside.display());
        }
        std::fs::create_dir_all(&ck_dir).at(&ck_dir)?;
        crate::data::binfile::write_atomic(out.join("config.toml"), cfg.to_toml().as_bytes())?;
        if opts.resume {
            truncate_metrics(&metrics_path, pos.global_step)?;
        }
    }
    comm.barrier()?;
    let mut log = MetricsLog::open(&metrics_path, rank0)?;

    let b = cfg.train.batch_size;
    let t = cfg.model.seq_len;
    let lambda = cfg.loss.lambda_indep;
    let global_stats = cfg.dist.batch_stats == "global";
    // See the doc comment: backward lambda, and the scales of the summed model / adversary gradients.
    let lambda_bwd = if global_stats { lambda * world as f64 } else { lambda };
    let model_scale = 1.0 / world as f32;
    let adv_scale = if global_stats { 1.0 } else { 1.0 / world as f32 };
    let mut model_buckets = Buckets::new(&model.params.table, Group::Model, Field::Grads, cfg.dist.bucket_mb);
    let mut adv_buckets = Buckets::new(&model.params.table, Group::Adversary, Field::Grads, cfg.dist.bucket_mb);
    let mut buffer_buckets = Buckets::new(&model.params.table, Group::Buffer, Field::Values, cfg.dist.bucket_mb);
    let inject = crate::dist::checks::injected_failure()?;
    let check_sync = crate::dist::checks::sync_check_enabled() && world > 1;
    let train_idx = ds.split_indices(SPLIT_TRAIN);
    let val_idx = ds.split_indices(SPLIT_VAL);
    let k_model = cfg.adversary.steps_per_model_step.max(1) as u64;
    let start = Instant::now();
    // A run resumed at its step limit has nothing left to train: it goes straight to the final evaluation.
    let mut stopped_early = cfg.train.max_steps > 0 && pos.global_step >= cfg.train.max_steps as u64;
    let params_model = model.params.table.count(Group::Model);
    let params_adv = model.params.table.count(Group::Adversary);
    if rank0 {
        eprintln!(
            "mfd: training C={} T={} B={b} O={} on {} train / {} val tiles; {params_model} model + {params_adv} adversary parameters; backend {}",
            cfg.model.c,
            t,
            model.o,
            train_idx.len(),
            val_idx.len(),
            be.name()
        );
        if world > 1 {
            eprintln!(
                "mfd: {world} ranks ({}), {} sequences per rank and step, batch statistics {}; gradient buckets: model {} x {:.2} MiB, adversary {}",
                comm.name(),
                b / world,
                cfg.dist.batch_stats,
                model_buckets.tensors.len(),
                model_buckets.elements() as f64 * 4.0 / (1024.0 * 1024.0) / model_buckets.tensors.len().max(1) as f64,
                adv_buckets.tensors.len()
            );
        }
    }

    while (pos.epoch as usize) < cfg.train.epochs && !stopped_early {
        let sampler = TrainSampler::new(&train_idx, cfg.train.seed, pos.epoch, b, rank, world, Augment::REFERENCE)?;
        let b_local = sampler.local_batch();
        let steps = sampler.steps() as u64;
        let bar = if rank0 { progress_bar(steps, pos.epoch) } else { indicatif::ProgressBar::hidden() };
        bar.set_position(pos.step_in_epoch);
        let epoch_start = Instant::now();
        let mut seen = 0u64;
        while pos.step_in_epoch < steps {
            crate::dist::checks::maybe_fail(inject, rank, pos.global_step)?;
            let plan = sampler.batch(pos.step_in_epoch as usize).expect("step within the epoch");
            let tokens = be.upload_bytes(&encode_batch(&ds, &plan, t)?)?;
            let labels = be.upload_bytes(&gather_labels(&ds, &plan.indices)?)?;
            model.params.zero_grads(be, Group::Model)?;
            let model_step = pos.step_in_epoch % k_model == 0;
            let mut terms = LossTerms::default();
            let mut adv_loss = 0.0;
            let (mut backward_compute, mut adversary_compute) = (0.0f64, 0.0f64);
            // The step's work in two phases. Backward: the model loss; on a multi-rank model step the hook starts
            // each gradient bucket's all-reduce as soon as its tensors are final, overlapped with the rest of the
            // backward. During: the adversary step, while the model's buckets are still in flight.
            let mut step_work = |phase: Phase<'_, B>| -> Result<()> {
                match phase {
                    Phase::Backward(hook) => {
                        let t0 = Instant::now();
                        let mut red = StatsReduce::new(comm, global_stats);
                        terms = model.model_loss_backward_hooked(
                            be,
                            &tokens,
                            &labels,
                            b_local,
                            lambda_bwd as f32,
                            cfg.loss.cov_and_adv,
                            &mut red,
                            hook,
                        )?;
                        backward_compute = t0.elapsed().as_secs_f64();
                        // The loss as reported: with lambda, not the backward's lambda * W.
                        let indep = terms.r2_bio
                            + terms.r2_tech
                            + if cfg.loss.cov_and_adv || model.adv_bio.is_none() { terms.corr } else { 0.0 };
                        terms.loss = terms.bce + lambda as f32 * indep;
                        if !terms.loss.is_finite() {
                            return Err(MfdError::other(format!(
                                "non-finite loss {} at epoch {} step {}",
                                terms.loss, pos.epoch, pos.step_in_epoch
                            )));
                        }
                    }
                    Phase::During if model.adv_bio.is_some() => {
                        let t0 = Instant::now();
                        model.params.zero_grads(be, Group::Adversary)?;
                        let mut red = StatsReduce::new(comm, global_stats);
                        adv_loss = model.adversary_loss_backward(be, b_local, &mut red)?;
                        let t1 = Instant::now();
                        adv_buckets.all_reduce(be, comm, &mut model.params, adv_scale)?;
                        let t2 = Instant::now();
                        opt_adv.update(be, &mut model.params)?;
                        adversary_compute = (t1 - t0 + t2.elapsed()).as_secs_f64();
                    }
                    Phase::During => {}
                }
                Ok(())
            };
            let t_sync = Instant::now();
            let mut hook_secs = 0.0;
            if model_step && world > 1 {
                model_buckets.sum_overlapped(comm, &mut step_work)?;
                model_buckets.unpack(be, &mut model.params, model_scale)?;
                hook_secs = model_buckets.hook_seconds();
            } else {
                step_work(Phase::Backward(&mut NoHook))?;
                step_work(Phase::During)?;
            }
            // Seconds of this step spent in gradient all-reduces and not hidden behind compute: everything but
            // the backward (less its hook: packing and starting buckets) and the adversary step's compute.
            let exposed_comm = if world > 1 {
                (t_sync.elapsed().as_secs_f64() - (backward_compute - hook_secs) - adversary_compute).max(0.0)
            } else {
                0.0
            };
            if model_step {
                opt_model.update(be, &mut model.params)?;
            }
            if !global_stats && world > 1 {
                buffer_buckets.all_reduce(be, comm, &mut model.params, 1.0 / world as f32)?;
            }
            if check_sync {
                crate::dist::checks::check_identical(be, comm, &model.params, pos.global_step)?;
            }
            pos.step_in_epoch += 1;
            pos.global_step += 1;
            seen += b as u64;
            bar.inc(1);
            if pos.global_step % cfg.train.log_every.max(1) as u64 == 0 {
                // Mean BCE and loss over ranks (the penalty terms are already global with global statistics).
                let mut v = [terms.bce as f64, terms.loss as f64, adv_loss as f64];
                comm.sum_f64(&mut v)?;
                let [bce, loss, adv] = v.map(|x| x / world as f64);
                let sps = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {loss:.4} bce {bce:.4} {sps:.0} seq/s"));
                log.write(
                    json!({"kind": "train", "epoch": pos.epoch, "step": pos.global_step, "loss": loss, "bce": bce,
                           "corr": terms.corr, "r2_bio": terms.r2_bio, "r2_tech": terms.r2_tech, "adv_loss": adv,
                           "seq_per_s": sps, "world": world, "exposed_grad_comm_ms": 1e3 * exposed_comm, "elapsed_s": start.elapsed().as_secs_f64()}),
                )?;
            }
            let out_of_time = cfg.train.max_seconds > 0.0 && start.elapsed().as_secs_f64() >= cfg.train.max_seconds;
            let out_of_steps = cfg.train.max_steps > 0 && pos.global_step >= cfg.train.max_steps as u64;
            // Rank 0's clock decides, so every rank stops after the same step.
            let mut stop = [f64::from(u8::from(out_of_time || out_of_steps))];
            if cfg.train.max_seconds > 0.0 {
                comm.broadcast_f64(&mut stop, 0)?;
            }
            if stop[0] != 0.0 {
                stopped_early = true;
                break;
            }
        }
        bar.finish_and_clear();
        if pos.step_in_epoch >= steps {
            pos.epoch += 1;
            pos.step_in_epoch = 0;
        }
        // Validation at the end of every epoch (and when a time or step limit stops the run), sharded over the
        // ranks; rank 0 logs it and writes the checkpoints while the others wait.
        let val = evaluate_sharded(be, comm, &mut model, &ds, val_idx.clone(), t, b, lambda, false)?;
        if let Some(val) = val {
            eprintln!(
                "mfd: epoch {} step {}: val loss {:.5} bce {:.5} macro AUROC {:.4} AUPRC {:.4}",
                pos.epoch, pos.global_step, val.val_loss, val.bce, val.macro_auroc, val.macro_auprc
            );
            log.write(
                json!({"kind": "val", "epoch": pos.epoch, "step": pos.global_step, "val_loss": val.val_loss, "bce": val.bce,
                       "corr": val.corr, "macro_auroc": val.macro_auroc, "macro_auprc": val.macro_auprc,
                       "elapsed_s": start.elapsed().as_secs_f64()}),
            )?;
            let ck = Checkpoint {
                values: model.params.to_host(be)?,
                position: pos,
                world,
                config_toml: cfg.to_toml(),
                model_opt: Some((opt_model.step, opt_model.state_to_host(be)?)),
                adv_opt: Some((opt_adv.step, opt_adv.state_to_host(be)?)),
                val_loss: val.val_loss,
            };
            // Best first: a crash between the two resumes from the previous `last` and rewrites the same best.
            keep_best(&ck_dir, &mut best, cfg.train.keep_best, &model.params.table, &ck)?;
            checkpoint::save(&last_path, &model.params.table, &ck)?;
        }
        comm.barrier()?;
    }

    let seconds = start.elapsed().as_secs_f64();
    if rank0 && check_sync {
        eprintln!("mfd: parameters identical on all {world} ranks after each of {} steps", pos.global_step);
    }
    let best_ck = best.first().map(|(_, p)| p.clone());
    let best_val_loss = best.first().map(|(l, _)| *l).unwrap_or(f64::NAN);
    let mut summary = RunSummary {
        out: out.clone(),
        steps: pos.global_step,
        seconds,
        best_checkpoint: best_ck.clone(),
        best_val_loss,
        test: None,
    };
    if opts.skip_final_eval {
        return Ok(summary);
    }
    // The test evaluation is sharded too: every rank loads the best checkpoint rank 0 names (written before the
    // last barrier; the run directory is shared, as for --resume).
    let mut best_step = [best_ck.as_deref().and_then(best_step_of).map_or(-1.0, |s| s as f64)];
    comm.broadcast_f64(&mut best_step, 0)?;
    if best_step[0] >= 0.0 {
        let path = ck_dir.join(format!("best-{:08}.safetensors", best_step[0] as u64));
        let ck = checkpoint::load(&path, &model.params.table)?;
        for (v, h) in model.params.values.iter_mut().zip(&ck.values) {
            be.write(v, h)?;
        }
    }
    let test = evaluate_sharded(be, comm, &mut model, &ds, ds.split_indices(SPLIT_TEST), t, b, lambda, true)?;
    let Some(test) = test else { return Ok(summary) };
    crate::train::report::write_eval_outputs(&out, "test", &ds, &test)?;
    eprintln!("mfd: test macro AUROC {:.4} AUPRC {:.4} ({} tiles)", test.macro_auroc, test.macro_auprc, test.n);
    log.write(
        json!({"kind": "test", "step": pos.global_step, "bce": test.bce, "macro_auroc": test.macro_auroc, "macro_auprc": test.macro_auprc}),
    )?;
    crate::train::report::write_report(&out, cfg, &ds, &test)?;
    summary.test = Some(test);
    Ok(summary)
}

fn progress_bar(steps: u64, epoch: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar
}

/// The global step in a `best-<global step>.safetensors` name.
fn best_step_of(path: &Path) -> Option<u64> {
    let name = path.file_name().and_then(|n| n.to_str())?;
    name.strip_prefix("best-")?.strip_suffix(".safetensors")?.parse().ok()
}

/// Checkpoints named `best-<global step>.safetensors`, sorted by their stored validation loss (a fresh run never
/// starts in a non-empty directory, so they are this run's); unreadable ones are ignored with a note.
fn list_best(dir: &Path) -> Result<Vec<(f64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let p = entry.at(dir)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("best-") && name.ends_with(".safetensors") && !name.ends_with(".optim.safetensors") {
            let meta = match checkpoint::read_meta(&p) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("mfd: ignoring unreadable {}: {e}", p.display());
                    continue;
                }
            };
            let loss = meta.get("val_loss").and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            out.push((loss, p));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// True when `dir` exists and holds anything (a regular file there is an error naming it).
fn dir_has_entries(dir: &Path) -> Result<bool> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(MfdError::io(dir, e)),
        Ok(m) if !m.is_dir() => Err(MfdError::input(dir, None, None, "the run directory is not a directory")),
        Ok(_) => Ok(std::fs::read_dir(dir).at(dir)?.next().is_some()),
    }
}

/// On resume: drop the log lines of steps after the checkpoint (written before an interruption and trained
/// again), so the log reads as one uninterrupted run.
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.at(path)?,
    };
    let keep: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_none_or(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if keep.len() != text.len() {
        crate::data::binfile::write_atomic(path, keep.as_bytes())?;
    }
    Ok(())
}

fn keep_best(
    dir: &Path,
    best: &mut Vec<(f64, PathBuf)>,
    k: usize,
    table: &crate::model::params::ParamTable,
    ck: &Checkpoint,
) -> Result<()> {
    let loss = if ck.val_loss.is_finite() { ck.val_loss } else { f64::INFINITY };
    let path = dir.join(format!("best-{:08}.safetensors", ck.position.global_step));
    best.retain(|(_, p)| p != &path);
    best.push((loss, path.clone()));
    best.sort_by(|a, b| a.0.total_cmp(&b.0));
    if best.iter().position(|(_, p)| p == &path).is_some_and(|i| i < k.max(1)) {
        let light = Checkpoint { model_opt: None, adv_opt: None, ..ck.clone() };
        checkpoint::save(&path, table, &light)?;
    }
    while best.len() > k.max(1) {
        let (_, p) = best.pop().expect("non-empty");
        if p.exists() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}
