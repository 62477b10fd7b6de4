//! One sweep point's state and results. A point is *finished* when its run directory holds `point.json` (written
//! last, atomically, after the test evaluation and every post-hoc analysis), *interrupted* when it holds
//! `checkpoints/last.safetensors` but no `point.json` (the sweep resumes it), and *new* otherwise.
//!
//! `finish` runs the post-hoc analyses of a trained point on its best checkpoint: validation metrics (both
//! strands, like the test evaluation), the independence metrics of mfd-spec.md 8.7 on the test features, the
//! truth-based disentanglement on synthetic data, and the Table-1 tissue classification; it writes
//! `eval_val.{tsv,json}`, `tissue_tasks.tsv` and `point.json`. Everything runs on the CPU backend on the group's
//! rank 0.

use crate::backend::cpu::CpuBackend;
use crate::data::binfile::write_atomic;
use crate::data::dataset::Dataset;
use crate::data::manifest::{SPLIT_TEST, SPLIT_VAL};
use crate::error::{IoContext, MfdError, Result};
use crate::sweep::config::{Point, Sweep};
use crate::sweep::independence::{independence, Independence};
use crate::sweep::tissue::{classify, SetResult};
use crate::train::evaluate::{evaluate, EvalResult};
use crate::train::report::{disentanglement, truth_dir, write_eval_outputs};
use crate::train::trainer::RunSummary;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const POINT_FILE: &str = "point.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Interrupted,
    Finished,
}

/// The state of the point whose run directory is `dir`.
pub fn status(dir: &Path) -> Status {
    if dir.join(POINT_FILE).exists() {
        Status::Finished
    } else if dir.join("checkpoints/last.safetensors").exists() {
        Status::Interrupted
    } else {
        Status::New
    }
}

/// Whether the run directory's last checkpoint already ends the training `cfg` asks for (all epochs, or
/// train.max_steps reached): resuming it would train one more step, so the sweep only evaluates it.
pub fn training_complete(cfg: &crate::config::Config) -> bool {
    let path = cfg.train.out.join("checkpoints/last.safetensors");
    let Ok(bytes) = std::fs::read(&path) else { return false };
    let Ok((_, m)) = safetensors::SafeTensors::read_metadata(&bytes) else { return false };
    let get = |k: &str| m.metadata().as_ref().and_then(|h| h.get(k)).and_then(|v| v.parse::<u64>().ok());
    match (get("epoch"), get("global_step")) {
        (Some(epoch), Some(step)) => {
            epoch >= cfg.train.epochs as u64 || (cfg.train.max_steps > 0 && step >= cfg.train.max_steps as u64)
        }
        _ => false,
    }
}

/// JSON writes NaN as null; read null back as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Truth-based disentanglement (a copy of `train::report::Disentanglement`'s numbers that reads back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    #[serde(deserialize_with = "f64_or_nan")]
    pub motif_r2_bio: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub motif_r2_tech: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub gc_r2_bio: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub gc_r2_tech: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub oracle_auroc: f64,
    /// Probe R2 to the true biological logit z_bio (real-sequence presets; NaN in a point.json written before).
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub zbio_r2_bio: f64,
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub zbio_r2_tech: f64,
    /// Probe R2 to the technical k-mer count.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub kmer_r2_bio: f64,
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub kmer_r2_tech: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Everything the sweep table reports about one point (`point.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub name: String,
    pub overrides: Vec<String>,
    pub lambda_indep: f64,
    pub adversary: bool,
    pub metadata: bool,
    pub seed: u64,
    pub steps: u64,
    pub checkpoint: PathBuf,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_auroc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_auprc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_auroc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_auprc: f64,
    pub independence: IndependenceOut,
    pub truth: Option<Truth>,
    /// Table 1: combined, bio, tech (empty when not run).
    pub downstream: Vec<SetOut>,
}

/// `Independence` with NaN-tolerant reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndependenceOut {
    #[serde(deserialize_with = "f64_or_nan")]
    pub shuffle_accuracy: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub r2_bio_from_tech: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub r2_tech_from_bio: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub corr_frobenius: f64,
    pub tiles: usize,
}

impl From<Independence> for IndependenceOut {
    fn from(i: Independence) -> Self {
        IndependenceOut {
            shuffle_accuracy: i.shuffle_accuracy,
            r2_bio_from_tech: i.r2_bio_from_tech,
            r2_tech_from_bio: i.r2_tech_from_bio,
            corr_frobenius: i.corr_frobenius,
            tiles: i.tiles,
        }
    }
}

/// `SetResult` with NaN-tolerant reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetOut {
    pub set: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub auroc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub auprc: f64,
    pub tasks: usize,
}

impl From<SetResult> for SetOut {
    fn from(s: SetResult) -> Self {
        SetOut { set: s.set, auroc: s.auroc, auprc: s.auprc, tasks: s.tasks }
    }
}

impl PointResult {
    /// Read `point.json` of the run directory `dir`.
    pub fn read(dir: &Path) -> Result<PointResult> {
        let path = dir.join(POINT_FILE);
        let text = std::fs::read_to_string(&path).at(&path)?;
        serde_json::from_str(&text).map_err(|e| MfdError::input(&path, Some(e.line() as u64), None, e.to_string()))
    }

    /// The downstream result of feature set `set`, if any.
    pub fn set(&self, set: &str) -> Option<&SetOut> {
        self.downstream.iter().find(|s| s.set == set)
    }
}

/// The best checkpoint of a run directory (lowest stored validation loss), else `last`.
fn best_checkpoint(dir: &Path, summary: Option<&RunSummary>) -> Result<PathBuf> {
    if let Some(p) = summary.and_then(|s| s.best_checkpoint.clone()) {
        return Ok(p);
    }
    let ck = dir.join("checkpoints");
    let mut best: Option<(f64, PathBuf)> = None;
    for entry in std::fs::read_dir(&ck).at(&ck)? {
        let p = entry.at(&ck)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("best-") && name.ends_with(".safetensors") && !name.ends_with(".optim.safetensors") {
            let bytes = std::fs::read(&p).at(&p)?;
            let loss = safetensors::SafeTensors::read_metadata(&bytes)
                .ok()
                .and_then(|(_, m)| m.metadata().as_ref().and_then(|h| h.get("val_loss").and_then(|s| s.parse().ok())))
                .unwrap_or(f64::INFINITY);
            if best.as_ref().is_none_or(|(l, _)| loss < *l) {
                best = Some((loss, p));
            }
        }
    }
    match best {
        Some((_, p)) => Ok(p),
        None => {
            let last = ck.join("last.safetensors");
            last.exists().then_some(last.clone()).ok_or_else(|| MfdError::input(&ck, None, None, "no checkpoint"))
        }
    }
}

/// Post-hoc analyses of a trained point (rank 0 of its group): see the module doc. `summary` is the training
/// run's summary (its test evaluation is reused when present).
pub fn finish(sweep: &Sweep, point: &Point, summary: Option<&RunSummary>) -> Result<PointResult> {
    let cfg = &point.cfg;
    let dir = &cfg.train.out;
    let ds = Dataset::open(&cfg.data.dataset)?;
    let ck_path = best_checkpoint(dir, summary)?;
    let be = CpuBackend;
    let (mut model, ck) = crate::train::load_model::load_cpu_model(cfg, &ds, &ck_path)?;
    let (t, b, lambda) = (cfg.model.seq_len, cfg.train.batch_size, cfg.loss.lambda_indep);
    let val = evaluate(&be, &mut model, &ds, ds.split_indices(SPLIT_VAL), t, b, lambda, true)?;
    write_eval_outputs(dir, "val", &ds, &val)?;
    let test: EvalResult = match summary.and_then(|s| s.test.clone()) {
        Some(r) => r,
        None => {
            let r = evaluate(&be, &mut model, &ds, ds.split_indices(SPLIT_TEST), t, b, lambda, true)?;
            write_eval_outputs(dir, "test", &ds, &r)?;
            r
        }
    };
    let c = cfg.model.c;
    let ind = independence(&test.features, c, &sweep.independence)?;
    let truth_path = truth_dir(&ds);
    let truth = match &truth_path {
        Some(tp) => {
            let d = disentanglement(&ds, tp, &test, c)?;
            Some(Truth {
                motif_r2_bio: d.motif_r2_bio,
                motif_r2_tech: d.motif_r2_tech,
                gc_r2_bio: d.gc_r2_bio,
                gc_r2_tech: d.gc_r2_tech,
                oracle_auroc: d.oracle_auroc,
                zbio_r2_bio: d.zbio_r2_bio,
                zbio_r2_tech: d.zbio_r2_tech,
                kmer_r2_bio: d.kmer_r2_bio,
                kmer_r2_tech: d.kmer_r2_tech,
            })
        }
        None => None,
    };
    let mut downstream = Vec::new();
    let elements = truth_path.map(|t| t.join("elements.bed")).filter(|p| p.exists());
    if let (true, Some(el)) = (sweep.downstream.enabled, elements) {
        let (sets, tasks) = classify(&ck_path, &cfg.data.dataset, &el, &sweep.downstream)?;
        let mut tsv = String::from("tissue\tfeature_set\tn_pos\ttest_auroc\ttest_auprc\n");
        for r in &tasks {
            let _ = writeln!(tsv, "{}\t{}\t{}\t{:.4}\t{:.4}", r.tissue, r.set, r.n_pos, r.auroc, r.auprc);
        }
        write_atomic(dir.join("tissue_tasks.tsv"), tsv.as_bytes())?;
        downstream = sets.into_iter().map(SetOut::from).collect();
    }
    let res = PointResult {
        name: point.name.clone(),
        overrides: point.overrides.iter().filter(|o| !o.starts_with("train.out=")).cloned().collect(),
        lambda_indep: lambda,
        adversary: cfg.adversary.enabled,
        metadata: cfg.model.metadata,
        seed: cfg.train.seed,
        steps: ck.position.global_step,
        checkpoint: ck_path,
        val_auroc: val.macro_auroc,
        val_auprc: val.macro_auprc,
        test_auroc: test.macro_auroc,
        test_auprc: test.macro_auprc,
        independence: ind.into(),
        truth,
        downstream,
    };
    let json = serde_json::to_string_pretty(&res).map_err(|e| MfdError::other(e.to_string()))?;
    write_atomic(dir.join(POINT_FILE), json.as_bytes())?;
    Ok(res)
}
