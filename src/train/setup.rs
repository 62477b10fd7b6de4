//! Training, room 1: setup. Checks the run directory, opens the dataset, builds the model and optimisers, loads
//! the checkpoint of a resumed run, and only then touches the run directory (config, provenance, logs). The state
//! a run carries from step to step is `Training`; `step.rs`, `epoch_end.rs` and `trainer.rs` are its other rooms.

use crate::backend::Backend;
use crate::config::{BatchStats, Config};
use crate::data::dataset::Dataset;
use crate::data::manifest::{SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use crate::dist::{Buckets, Comm, Field};
use crate::error::{IoContext, MfdError, Result};
use crate::model::mfd::Mfd;
use crate::model::params::Group;
use crate::train::checkpoint::{self, Position};
use crate::train::optim::{optimisers, AmsGrad};
use crate::train::runlog::RunLog;
use crate::train::trainer::{ensure_dataset, load_metadata, Resume, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything a run carries from step to step.
pub(crate) struct Training<'a, B: Backend> {
    pub be: &'a B,
    pub comm: &'a dyn Comm,
    pub cfg: &'a Config,
    pub rank0: bool,
    pub world: usize,
    pub ds: Dataset,
    pub model: Mfd<B>,
    pub opt_model: AmsGrad<B>,
    pub opt_adv: AmsGrad<B>,
    pub pos: Position,
    /// Best checkpoints kept, by validation loss (rank 0).
    pub best: Vec<(f64, PathBuf)>,
    pub ck_dir: PathBuf,
    pub last_path: PathBuf,
    pub log: RunLog,
    pub model_buckets: Buckets,
    pub adv_buckets: Buckets,
    pub buffer_buckets: Buckets,
    pub train_idx: Vec<u64>,
    pub val_idx: Vec<u64>,
    /// The training split where the model runs (on CUDA: genome, tile records and label bits on the device).
    pub resident: B::Resident,
    /// This rank's batch: tokens (B/W, T) and label rows (B/W, row_bytes), made in place every step.
    pub tokens: B::Bytes,
    pub labels: B::Bytes,
    /// When this session started training, and when it last wrote `last`.
    pub start: Instant,
    pub last_checkpoint: Instant,
}

impl<'a, B: Backend> Training<'a, B> {
    /// See the module doc. A non-empty run directory needs `--resume` (or `--resume auto`, or `--overwrite`).
    pub fn setup(be: &'a B, comm: &'a dyn Comm, cfg: &'a Config, opts: &'a TrainOptions) -> Result<Self> {
        let (rank, world) = (comm.rank(), comm.size());
        let rank0 = rank == 0;
        let out = &cfg.train.out;
        let ck_dir = out.join("checkpoints");
        let last_path = ck_dir.join("last.safetensors");
        let resume = resolve_resume(comm, cfg, opts, &last_path)?;
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
            return Err(MfdError::input(
                ds.dir(),
                None,
                Some("split"),
                "the test split has no tiles (no test contig?)",
            ));
        }
        let (mapping, table) = load_metadata(cfg, &ds)?;
        let model = Mfd::new(be, &cfg.model, &cfg.adversary, &mapping, &table, ds.label_row_bytes(), cfg.train.seed)?;
        let (opt_model, opt_adv) = optimisers(be, &model.params, cfg)?;
        let model_buckets = Buckets::new(&model.params.table, Group::Model, Field::Grads, cfg.dist.bucket_mb);
        let adv_buckets = Buckets::new(&model.params.table, Group::Adversary, Field::Grads, cfg.dist.bucket_mb);
        let buffer_buckets = Buckets::new(&model.params.table, Group::Buffer, Field::Values, cfg.dist.bucket_mb);
        let train_idx = ds.split_indices(SPLIT_TRAIN);
        let resident = be.resident(&ds, &train_idx)?;
        let b_local = cfg.train.batch_size / world.max(1);
        let tokens = be.alloc_bytes(b_local * cfg.model.seq_len)?;
        let labels = be.alloc_bytes(b_local * ds.label_row_bytes())?;
        let mut t = Training {
            be,
            comm,
            cfg,
            rank0,
            world,
            train_idx,
            val_idx: ds.split_indices(SPLIT_VAL),
            resident,
            tokens,
            labels,
            ds,
            model,
            opt_model,
            opt_adv,
            pos: Position::default(),
            best: Vec::new(),
            ck_dir,
            last_path,
            log: RunLog::open(Path::new(""), false, None)?,
            model_buckets,
            adv_buckets,
            buffer_buckets,
            start: Instant::now(),
            last_checkpoint: Instant::now(),
        };
        if resume {
            t.load_last()?;
        }
        // Nothing in the run directory has changed until here.
        if rank0 {
            t.prepare_run_dir(resume)?;
        }
        comm.barrier()?;
        t.log = RunLog::open(out, rank0, resume.then_some(t.pos.global_step))?;
        t.start = Instant::now();
        t.last_checkpoint = t.start;
        Ok(t)
    }

    /// Load `last` (weights, optimiser states, position) into the model.
    fn load_last(&mut self) -> Result<()> {
        let ck = checkpoint::load(&self.last_path, &self.model.params.table)?;
        for (v, h) in self.model.params.values.iter_mut().zip(&ck.values) {
            self.be.write(v, h)?;
        }
        if let Some((s, m)) = &ck.model_opt {
            self.opt_model.load_host(self.be, *s, m)?;
        }
        if let Some((s, m)) = &ck.adv_opt {
            self.opt_adv.load_host(self.be, *s, m)?;
        }
        self.pos = ck.position;
        if self.rank0 {
            checkpoint::repair(&self.last_path)?;
            self.best = list_best(&self.ck_dir)?;
            eprintln!(
                "mfd: resuming at epoch {} step {} (global step {}); checkpoint written by {} rank(s), now {}",
                self.pos.epoch, self.pos.step_in_epoch, self.pos.global_step, ck.world, self.world
            );
        }
        Ok(())
    }

    /// Rank 0: move an old run aside (--overwrite), create the directories, write the config and provenance.
    fn prepare_run_dir(&self, resume: bool) -> Result<()> {
        let out = &self.cfg.train.out;
        if !resume && dir_has_entries(out)? {
            let aside = PathBuf::from(format!(
                "{}.old-{}",
                out.display(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            ));
            std::fs::rename(out, &aside).at(&aside)?;
            eprintln!("mfd: the earlier contents of {} moved to {}", out.display(), aside.display());
        }
        std::fs::create_dir_all(&self.ck_dir).at(&self.ck_dir)?;
        crate::data::binfile::write_atomic(out.join("config.toml"), self.cfg.to_toml().as_bytes())?;
        crate::train::provenance::write(
            out,
            &crate::train::provenance::Session {
                cfg: self.cfg,
                ds: &self.ds,
                backend: self.be.name(),
                comm: self.comm.name(),
                world: self.world,
                start_step: self.pos.global_step,
            },
        )
    }

    /// The gradient-scaling constants of a data-parallel step (see `trainer::run_dist`): the backward's penalty
    /// weight relative to lambda, and the scales of the summed model and adversary gradients.
    pub fn scales(&self) -> (f64, f32, f32) {
        let w = self.world as f32;
        match self.cfg.dist.batch_stats {
            BatchStats::Global => (self.world as f64, 1.0 / w, 1.0),
            BatchStats::Local => (1.0, 1.0 / w, 1.0 / w),
        }
    }
}

/// Whether this run resumes: `--resume` needs `last`; `--resume auto` resumes when `last` exists and otherwise
/// starts afresh (in an empty directory, or one holding only what a run of the same config writes before its first
/// checkpoint: a job preempted early and requeued); a fresh run needs an empty directory or `--overwrite`. Rank 0
/// decides and tells the others.
fn resolve_resume(comm: &dyn Comm, cfg: &Config, opts: &TrainOptions, last: &Path) -> Result<bool> {
    let out = &cfg.train.out;
    let mut decision = [0.0f64];
    if comm.rank() == 0 {
        crate::data::check_out_parent(out)?;
        let has_last = last.exists();
        let resume = match opts.resume {
            Resume::Yes if !has_last => {
                return Err(MfdError::input(
                    last,
                    None,
                    None,
                    "--resume: no checkpoint to resume from (--resume auto starts afresh when there is none)",
                ))
            }
            Resume::Yes => true,
            Resume::Auto if has_last => true,
            Resume::Auto => {
                if dir_has_entries(out)? && !same_run_before_first_checkpoint(out, cfg)? {
                    return Err(MfdError::input(
                        out,
                        None,
                        None,
                        "--resume auto: the run directory holds no checkpoint but other files (a different run?): \
                         pick another --out, or pass --overwrite (moves the old run aside first)",
                    ));
                }
                false
            }
            Resume::No => {
                if !opts.overwrite && dir_has_entries(out)? {
                    return Err(MfdError::input(
                        out,
                        None,
                        None,
                        "the run directory is not empty: continue it with --resume (or --resume auto), pick another \
                         --out, or pass --overwrite (moves the old run aside first)",
                    ));
                }
                false
            }
        };
        if resume || opts.resume == Resume::Auto {
            eprintln!(
                "mfd: {}",
                if resume {
                    "--resume: continuing from the last checkpoint"
                } else {
                    "--resume auto: no checkpoint yet, starting afresh"
                }
            );
        }
        decision[0] = f64::from(u8::from(resume));
    }
    comm.broadcast_f64(&mut decision, 0)?;
    Ok(decision[0] != 0.0)
}

/// True when `out` holds only files a run writes before its first checkpoint and its config.toml is `cfg`'s.
fn same_run_before_first_checkpoint(out: &Path, cfg: &Config) -> Result<bool> {
    const EARLY: [&str; 6] = ["config.toml", "provenance.json", "metrics.jsonl", "metrics.csv", "tb", "checkpoints"];
    for entry in std::fs::read_dir(out).at(out)? {
        let name = entry.at(out)?.file_name();
        if !EARLY.iter().any(|e| name == *e) {
            return Ok(false);
        }
    }
    let ck = out.join("checkpoints");
    if ck.exists() && std::fs::read_dir(&ck).at(&ck)?.next().is_some() {
        return Ok(false);
    }
    Ok(std::fs::read_to_string(out.join("config.toml")).is_ok_and(|t| t == cfg.to_toml()))
}

/// Checkpoints named `best-<global step>.safetensors`, sorted by their stored validation loss (a fresh run never
/// starts in a non-empty directory, so they are this run's); unreadable ones are ignored with a note.
pub(crate) fn list_best(dir: &Path) -> Result<Vec<(f64, PathBuf)>> {
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
