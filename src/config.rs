//! Typed run configuration (TOML). Unknown keys are errors naming the key; `validate` checks values once.
//! `configs/default.toml` is the embedded default (`mfd train` with no arguments); `--set key=value` overrides a
//! dotted key before parsing, so overrides are type-checked like the file itself.

use crate::error::{IoContext, MfdError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub adversary: AdversaryConfig,
    pub loss: LossConfig,
    pub train: TrainConfig,
    pub dist: DistConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Prepared dataset directory.
    pub dataset: PathBuf,
    /// When the dataset is absent: synthesize this preset next to it (in `<dataset>/../synth`) and prepare it.
    #[serde(default)]
    pub synth_preset: Option<String>,
    /// Seed of the synthetic data (only with synth_preset).
    #[serde(default = "one")]
    pub synth_seed: u64,
    /// Metadata mapping TOML; empty = the embedded configs/metadata_mapping.toml.
    #[serde(default)]
    pub metadata_mapping: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Trunk width C; the latent vector has 2C features (technical first, biological second).
    pub c: usize,
    /// Input tokens T (a window has T + 1 bp). T / 128 - 2 * crop must be 1.
    pub seq_len: usize,
    /// Bins cropped on each side after the tower.
    pub crop: usize,
    /// Tower stages (each halves the length), 6 in the reference.
    #[serde(default = "six")]
    pub tower_layers: usize,
    /// Dilated residual blocks, 2 in the reference.
    #[serde(default = "two")]
    pub dilated_layers: usize,
    /// Dilation growth D: block l uses dilation floor(2 * D^l).
    #[serde(default = "dilation_growth")]
    pub dilation_growth: f64,
    /// false: the no-metadata baseline (a plain trunk with a free (O, 2C) output layer `head.{tech,bio}.weight`
    /// instead of the hypernetworks; the sweep's Table-1 baseline, with lambda_indep = 0 and no adversary).
    #[serde(default = "yes")]
    pub metadata: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversaryConfig {
    /// Train the adversarial predictors (the reference's use_predictor).
    pub enabled: bool,
    pub hidden: usize,
    /// Hidden layers (num_hidden_discriminator, 3 in the reference).
    pub layers: usize,
    /// true reproduces the reference bug: one predictor for both directions (mfd-spec.md 4.2).
    #[serde(default)]
    pub shared_predictor: bool,
    pub lr: f64,
    /// Adversary steps per model step (num_steps_discriminator).
    #[serde(default = "one_usize")]
    pub steps_per_model_step: usize,
    /// Take the adversary's gradient from the model step's backward through the predictors (same features, same
    /// predictor weights, so the same gradient up to the factor -1/lambda) instead of recomputing the predictors'
    /// forward and backward in the adversary step. false = the reference's literal schedule (the step oracle).
    #[serde(default = "yes")]
    pub reuse_model_backward: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// lambda_indep (the reference's coeff_cov).
    pub lambda_indep: f64,
    /// Add ||R||_F to the adversarial term (cov_and_adv).
    #[serde(default = "yes")]
    pub cov_and_adv: bool,
    /// Warm-up of the independence terms, in epochs (not in the paper): the model loss uses lambda_indep x
    /// min(1, s / S) at step s, S = this many epochs of steps, so the trunk first learns the labels and the
    /// penalty then separates what it has learnt (docs/LEARNING.md section 10). The adversaries train from the first
    /// step either way. 0 = the paper and the reference (the full penalty from the first step).
    #[serde(default)]
    pub indep_warmup_epochs: f64,
}

impl LossConfig {
    /// The multiplier of lambda_indep for the step after `step` steps, with `per_epoch` steps in an epoch.
    pub fn indep_factor(&self, step: u64, per_epoch: u64) -> f64 {
        let warmup = self.indep_warmup_epochs * per_epoch as f64;
        if warmup <= 0.0 {
            1.0
        } else {
            (step as f64 / warmup).min(1.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Global batch size B (split over ranks).
    pub batch_size: usize,
    pub lr: f64,
    /// Learning rate of the metadata hypernetworks (parameters named `hyper.*`) as a multiple of `lr`. The
    /// hypernetworks move every output weight at once, so at the trunk's lr they change W 10-50x more per step
    /// than a free output layer would (docs/LEARNING.md section 7). 1 = the reference (one lr for the model).
    #[serde(default = "one_f64")]
    pub hyper_lr_scale: f64,
    /// Learning-rate schedule over the run's planned steps, applied to every learning rate (trunk, hypernetworks,
    /// adversaries): "constant" (the reference) or "cosine" (lr x (1 + cos(pi s / S)) / 2 at step s of S, down to 0
    /// at the end; S = epochs x steps per epoch, or max_steps when smaller). Extending a run with `--resume --set
    /// train.epochs=N` stretches the remaining schedule to the new S.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub weight_decay: f64,
    pub epochs: usize,
    /// Stop after this many steps in total (0 = no limit): for time-boxed runs.
    #[serde(default)]
    pub max_steps: usize,
    /// Stop after this many seconds of training (0 = no limit).
    #[serde(default)]
    pub max_seconds: f64,
    pub seed: u64,
    /// Log training metrics every N steps.
    #[serde(default = "fifty")]
    pub log_every: usize,
    /// Checkpoints kept (best by validation loss).
    #[serde(default = "three")]
    pub keep_best: usize,
    /// Write `last` every N training steps besides the end of each epoch (0 = only at epoch ends): an epoch of
    /// the genome preset takes hours, and a preempted job loses everything since its last checkpoint.
    #[serde(default)]
    pub checkpoint_every_steps: usize,
    /// Write `last` every N minutes of training (0 = off; rank 0's clock decides for every rank).
    #[serde(default)]
    pub checkpoint_every_minutes: f64,
    /// Backend: "cpu", "cuda" or "auto" (the GPU when one works).
    #[serde(default)]
    pub backend: BackendKind,
    /// Precision of the dense products on the CUDA backend (convolutions, head, hypernetworks, adversary MLPs on
    /// cuBLAS): "f32" (default; matches the CPU twin), "tf32" or "bf16" (tensor cores; f32 accumulation). Master
    /// weights, gradients, the loss and every other op stay f32 in every mode. The CPU backend computes in f32
    /// whatever is asked and says so once at start.
    #[serde(default)]
    pub precision: Precision,
    /// Run directory.
    pub out: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    /// "global": BatchNorm and Pearson moments reduced across ranks; "local": per rank.
    #[serde(default)]
    pub batch_stats: BatchStats,
    /// Gradient communicator: "auto" (NCCL with the CUDA backend on more than one rank, else MPI), "mpi" (host
    /// buffers; one rank without a launcher) or "nccl" (device buffers; needs a GPU and libnccl).
    #[serde(default)]
    pub comm: CommKind,
    /// Gradient all-reduce bucket size in MiB.
    #[serde(default = "four")]
    pub bucket_mb: f64,
}

fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn two() -> usize {
    2
}
fn three() -> usize {
    3
}
fn six() -> usize {
    6
}
fn one_f64() -> f64 {
    1.0
}
fn fifty() -> usize {
    50
}
fn four() -> f64 {
    4.0
}
fn dilation_growth() -> f64 {
    1.5
}
fn yes() -> bool {
    true
}

/// `train.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Cpu,
    Cuda,
    /// The GPU when one works, else the CPU (with a note saying why).
    Auto,
}

/// `train.precision`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32 = 0,
    Tf32 = 1,
    Bf16 = 2,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// `train.lr_schedule`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    Cosine,
}

impl LrSchedule {
    /// The multiplier of every learning rate for the update after `step` steps of a run planned for `total`.
    pub fn factor(self, step: u64, total: u64) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine => {
                let x = step.min(total) as f64 / total.max(1) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
        }
    }
}

/// `dist.batch_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchStats {
    /// BatchNorm and Pearson moments summed over all ranks: N ranks train as one at the same global batch.
    #[default]
    Global,
    /// Per-rank moments; running statistics averaged after every step.
    Local,
}

/// `dist.comm`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommKind {
    /// NCCL when the backend is CUDA and there is more than one rank, else MPI.
    #[default]
    Auto,
    Mpi,
    Nccl,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Auto => "auto",
        })
    }
}

impl std::fmt::Display for BatchStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if *self == BatchStats::Global { "global" } else { "local" })
    }
}

impl Config {
    /// Parse TOML text, apply `key=value` overrides (dotted keys, TOML values; bare words become strings).
    pub fn parse(text: &str, source: &Path, overrides: &[String]) -> Result<Self> {
        let mut doc: toml::Table = crate::toml_load::parse(text, source)?;
        let file_doc = doc.clone();
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let cfg: Config = match Config::deserialize(toml::Value::Table(doc)) {
            Ok(c) => c,
            Err(e) => return Err(deserialize_error(text, &file_doc, source, overrides, e)),
        };
        cfg.validate().map_err(|e| with_source(e, source, overrides))?;
        Ok(cfg)
    }

    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).at(p)?;
                Self::parse(&text, p, overrides)
            }
            None => Self::parse(DEFAULT_CONFIG, Path::new("configs/default.toml"), overrides),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// Every value's valid range, checked once; the error names the key. The upper bounds keep every size the
    /// model allocates (and every shift) far from overflow and from a runaway allocation.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        int_range("model.c", m.c, 2, MAX_C)?;
        int_range("model.tower_layers", m.tower_layers, 1, 16)?;
        int_range("model.dilated_layers", m.dilated_layers, 0, 32)?;
        int_range("model.seq_len", m.seq_len, 4, MAX_SEQ_LEN)?;
        int_range("model.crop", m.crop, 0, MAX_SEQ_LEN)?;
        let pool = 1usize << (m.tower_layers + 1);
        if !m.seq_len.is_multiple_of(pool) || m.seq_len / pool != 2 * m.crop + 1 {
            return Err(MfdError::config(
                "model.seq_len",
                format!(
                    "seq_len / 2^(tower_layers+1) - 2*crop must be exactly 1 bin (seq_len {} / {pool}, crop {}); e.g. 2176 with crop 8, 1152 with crop 4",
                    m.seq_len, m.crop
                ),
            ));
        }
        float_range("model.dilation_growth", m.dilation_growth, 1.0, 16.0)?;
        let top = 2.0 * m.dilation_growth.powi(m.dilated_layers.saturating_sub(1) as i32);
        if m.dilated_layers > 0 && top > m.seq_len as f64 {
            return Err(MfdError::config(
                "model.dilation_growth",
                format!(
                    "the last dilated block's dilation floor(2 * {}^{}) = {top:.0} exceeds seq_len {}",
                    m.dilation_growth,
                    m.dilated_layers - 1,
                    m.seq_len
                ),
            ));
        }
        let schedule = crate::model::spec::channel_schedule(m.c, m.tower_layers);
        if schedule.last() != Some(&m.c) {
            return Err(MfdError::config(
                "model.c",
                format!("the tower's channel schedule {schedule:?} does not end at C = {}", m.c),
            ));
        }
        let a = &self.adversary;
        int_range("adversary.hidden", a.hidden, 1, 1 << 16)?;
        int_range("adversary.layers", a.layers, 0, 16)?;
        float_range("adversary.lr", a.lr, f64::MIN_POSITIVE, 10.0)?;
        int_range("adversary.steps_per_model_step", a.steps_per_model_step, 1, 1000)?;
        float_range("loss.lambda_indep", self.loss.lambda_indep, 0.0, 1e6)?;
        float_range("loss.indep_warmup_epochs", self.loss.indep_warmup_epochs, 0.0, 1e6)?;
        let t = &self.train;
        int_range("train.batch_size", t.batch_size, 2, 1 << 16)?;
        float_range("train.lr", t.lr, f64::MIN_POSITIVE, 10.0)?;
        float_range("train.hyper_lr_scale", t.hyper_lr_scale, f64::MIN_POSITIVE, 1e3)?;
        float_range("train.weight_decay", t.weight_decay, 0.0, 1e3)?;
        int_range("train.epochs", t.epochs, 1, 1_000_000)?;
        int_range("train.max_steps", t.max_steps, 0, 1 << 40)?;
        float_range("train.max_seconds", t.max_seconds, 0.0, 1e9)?;
        int_range("train.log_every", t.log_every, 1, 1 << 40)?;
        int_range("train.keep_best", t.keep_best, 1, 1000)?;
        int_range("train.checkpoint_every_steps", t.checkpoint_every_steps, 0, 1 << 40)?;
        float_range("train.checkpoint_every_minutes", t.checkpoint_every_minutes, 0.0, 1e7)?;
        // One activation of the trunk is B x T x C floats; past 2^33 (32 GiB) a run cannot fit any machine's memory
        // and would abort in the allocator instead of failing here.
        let act = (t.batch_size as u128) * (m.seq_len as u128) * (m.c as u128);
        if act > 1 << 33 {
            return Err(MfdError::config(
                "train.batch_size",
                format!(
                    "batch_size {} x seq_len {} x c {} = {act} floats per activation, more than 2^33",
                    t.batch_size, m.seq_len, m.c
                ),
            ));
        }
        float_range("dist.bucket_mb", self.dist.bucket_mb, 1e-6, 4096.0)?;
        if t.out.as_os_str().is_empty() {
            return Err(MfdError::config("train.out", "must name a run directory"));
        }
        if self.data.dataset.as_os_str().is_empty() {
            return Err(MfdError::config("data.dataset", "must name a dataset directory"));
        }
        Ok(())
    }
}

/// Largest trunk width C accepted (the paper uses 30 and 120).
pub const MAX_C: usize = 4096;
/// Largest input length T accepted (the reference uses 2176).
pub const MAX_SEQ_LEN: usize = 1 << 17;

fn int_range(key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if v < lo || v > hi {
        return Err(MfdError::config(key, format!("{v} is out of range: expected {lo} ..= {hi}")));
    }
    Ok(())
}

fn float_range(key: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v >= lo && v <= hi) {
        let lo = if lo == f64::MIN_POSITIVE { "> 0".to_string() } else { format!(">= {lo}") };
        return Err(MfdError::config(key, format!("{v} is out of range: expected a finite number {lo} and <= {hi}")));
    }
    Ok(())
}

/// Say where the offending value came from: a `--set` override or the config file.
fn with_source(e: MfdError, source: &Path, overrides: &[String]) -> MfdError {
    match e {
        MfdError::Config { key, msg } => {
            let set = overrides.iter().rev().find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key));
            let from = match set {
                Some(o) => format!("--set {o}"),
                None => source.display().to_string(),
            };
            MfdError::Config { key, msg: format!("{msg} (from {from})") }
        }
        e => e,
    }
}

/// A type error blames the first `--set` override that brings it in, else the file (its line and key).
fn deserialize_error(
    text: &str,
    file_doc: &toml::Table,
    source: &Path,
    overrides: &[String],
    e: toml::de::Error,
) -> MfdError {
    if Config::deserialize(toml::Value::Table(file_doc.clone())).is_ok() {
        let mut doc = file_doc.clone();
        for o in overrides {
            if apply_override(&mut doc, o).is_err() {
                continue;
            }
            if let Err(e2) = Config::deserialize(toml::Value::Table(doc.clone())) {
                let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k.trim());
                return MfdError::config(key, format!("{} (from --set {o})", e2.message()));
            }
        }
    }
    // The file alone is at fault: parse it typed to get the line and key.
    match crate::toml_load::parse::<Config>(text, source) {
        Err(located) => located,
        Ok(_) => MfdError::input(source, None, None, e.message().to_string()),
    }
}

fn apply_override(doc: &mut toml::Table, o: &str) -> Result<()> {
    let (key, raw) =
        o.split_once('=').ok_or_else(|| MfdError::config(o, format!("expected KEY=VALUE (from --set {o})")))?;
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed table has v"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = doc;
    for p in &parts[..parts.len() - 1] {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| MfdError::config(key, format!("'{p}' is not a table (from --set {o})")))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_factor() {
        let c = LrSchedule::Cosine;
        assert_eq!(LrSchedule::Constant.factor(7, 10), 1.0);
        assert_eq!(c.factor(0, 10), 1.0);
        assert!((c.factor(5, 10) - 0.5).abs() < 1e-15);
        assert!((c.factor(10, 10)).abs() < 1e-15 && c.factor(12, 10).abs() < 1e-15, "0 from the end on");
        assert_eq!(c.factor(3, 0), 1.0, "no planned steps: nothing to schedule");
        assert!((0..10).all(|s| c.factor(s + 1, 10) < c.factor(s, 10)), "decreasing");
    }

    #[test]
    fn penalty_warmup_factor() {
        let mut l = Config::load(None, &[]).unwrap().loss;
        assert_eq!(l.indep_warmup_epochs, 0.0, "the paper's: no warm-up");
        assert_eq!(l.indep_factor(0, 100), 1.0);
        l.indep_warmup_epochs = 2.5;
        assert_eq!(l.indep_factor(0, 100), 0.0);
        assert_eq!(l.indep_factor(125, 100), 0.5);
        assert_eq!(l.indep_factor(250, 100), 1.0);
        assert_eq!(l.indep_factor(9_999, 100), 1.0);
        assert_eq!(l.indep_factor(7, 0), 1.0, "an epoch of no steps: no warm-up");
    }

    #[test]
    fn default_parses_and_overrides_apply() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.model.seq_len / 128 - 2 * c.model.crop, 1);
        let c = Config::load(None, &["model.c=120".into(), "train.out=\"x/y\"".into(), "train.backend=auto".into()])
            .unwrap();
        assert_eq!(c.model.c, 120);
        assert_eq!(c.train.out, PathBuf::from("x/y"));
        assert_eq!(c.train.backend, BackendKind::Auto);
        assert_eq!(c.train.precision, Precision::F32, "f32 unless asked");
        let c = Config::load(None, &["train.precision=\"bf16\"".into()]).unwrap();
        assert_eq!(c.train.precision, Precision::Bf16);
        let e = Config::load(None, &["train.precision=\"fp8\"".into()]).unwrap_err().to_string();
        assert!(e.contains("train.precision") && e.contains("--set") && e.contains("tf32"), "{e}");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        let e = Config::load(None, &["model.crop=3".into()]).unwrap_err().to_string();
        assert!(e.contains("model.seq_len"), "{e}");
        let e = Config::load(None, &["model.width=3".into()]).unwrap_err().to_string();
        assert!(e.contains("width"), "{e}");
        let e = Config::parse("[data\n", Path::new("bad.toml"), &[]).unwrap_err().to_string();
        assert!(e.contains("bad.toml:1"), "{e}");
    }

    #[test]
    fn ranges_name_the_key_and_where_the_value_came_from() {
        for (set, key) in [
            ("adversary.lr=-1", "adversary.lr"),
            ("train.weight_decay=-5", "train.weight_decay"),
            ("model.dilation_growth=0", "model.dilation_growth"),
            ("model.c=4000000000", "model.c"),
            ("model.tower_layers=63", "model.tower_layers"),
            ("train.keep_best=0", "train.keep_best"),
            ("dist.bucket_mb=inf", "dist.bucket_mb"),
            ("train.batch_size=65537", "train.batch_size"),
        ] {
            let e = Config::load(None, &[set.into()]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(&format!("(from --set {set})")), "{set}: {e}");
        }
        // Each size in range, their product (one activation) not.
        let e = Config::load(None, &["model.c=4096".into(), "train.batch_size=65536".into()]).unwrap_err().to_string();
        assert!(e.contains("train.batch_size") && e.contains("more than 2^33"), "{e}");
        // An override that is not KEY=VALUE, or that descends into a value, names itself.
        let e = Config::load(None, &["model.c.x=1".into()]).unwrap_err().to_string();
        assert!(e.contains("model.c.x") && e.contains("(from --set model.c.x=1)"), "{e}");
        let e = Config::load(None, &["model.c".into()]).unwrap_err().to_string();
        assert!(e.contains("expected KEY=VALUE (from --set model.c)"), "{e}");
        // A type error blames the override, not the file.
        let e = Config::load(None, &["train.epochs=\"many\"".into()]).unwrap_err().to_string();
        assert!(e.contains("train.epochs") && e.contains("--set") && !e.contains("default.toml"), "{e}");
        // A value from the file names the file.
        let text = DEFAULT_CONFIG.replace("lambda_indep = ", "lambda_indep = -1.0 #");
        let e = Config::parse(&text, Path::new("my.toml"), &[]).unwrap_err().to_string();
        assert!(e.contains("loss.lambda_indep") && e.contains("(from my.toml)"), "{e}");
    }
}
