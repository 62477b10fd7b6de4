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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// lambda_indep (the reference's coeff_cov).
    pub lambda_indep: f64,
    /// Add ||R||_F to the adversarial term (cov_and_adv).
    #[serde(default = "yes")]
    pub cov_and_adv: bool,
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
    /// Backend: "cpu", "cuda" or "auto".
    #[serde(default = "cpu")]
    pub backend: String,
    /// Run directory.
    pub out: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    /// "global": BatchNorm and Pearson moments reduced across ranks; "local": per rank.
    #[serde(default = "global")]
    pub batch_stats: String,
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
fn cpu() -> String {
    "cpu".into()
}
fn global() -> String {
    "global".into()
}

impl Config {
    /// Parse TOML text, apply `key=value` overrides (dotted keys, TOML values; bare words become strings).
    pub fn parse(text: &str, source: &Path, overrides: &[String]) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, source, e))?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let cfg: Config = Config::deserialize(toml::Value::Table(doc))
            .map_err(|e| MfdError::input(source, None, None, e.message().to_string()))?;
        cfg.validate()?;
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

    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        if m.c < 2 {
            return Err(MfdError::config("model.c", "must be >= 2"));
        }
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
        let schedule = crate::model::spec::channel_schedule(m.c, m.tower_layers);
        if schedule.last() != Some(&m.c) {
            return Err(MfdError::config(
                "model.c",
                format!("the tower's channel schedule {schedule:?} does not end at C = {}", m.c),
            ));
        }
        if self.train.batch_size < 2 {
            return Err(MfdError::config("train.batch_size", "must be >= 2 (batch statistics)"));
        }
        if self.train.lr.is_nan() || self.train.lr <= 0.0 {
            return Err(MfdError::config("train.lr", "must be > 0"));
        }
        if !(self.train.hyper_lr_scale.is_finite() && self.train.hyper_lr_scale > 0.0) {
            return Err(MfdError::config("train.hyper_lr_scale", "must be a finite number > 0 (1 = the model's lr)"));
        }
        if self.loss.lambda_indep < 0.0 {
            return Err(MfdError::config("loss.lambda_indep", "must be >= 0"));
        }
        if !["global", "local"].contains(&self.dist.batch_stats.as_str()) {
            return Err(MfdError::config("dist.batch_stats", "must be \"global\" or \"local\""));
        }
        if self.dist.bucket_mb.is_nan() || self.dist.bucket_mb <= 0.0 {
            return Err(MfdError::config("dist.bucket_mb", "must be > 0 (MiB per gradient all-reduce bucket)"));
        }
        if !["cpu", "cuda", "auto"].contains(&self.train.backend.as_str()) {
            return Err(MfdError::config("train.backend", "must be \"cpu\", \"cuda\" or \"auto\""));
        }
        if self.adversary.enabled && (self.adversary.hidden == 0 || self.adversary.steps_per_model_step == 0) {
            return Err(MfdError::config("adversary", "hidden and steps_per_model_step must be > 0"));
        }
        Ok(())
    }
}

fn toml_error(text: &str, source: &Path, e: toml::de::Error) -> MfdError {
    let line = e.span().map(|s| text[..s.start].lines().count().max(1) as u64);
    MfdError::input(source, line, None, e.message().to_string())
}

fn apply_override(doc: &mut toml::Table, o: &str) -> Result<()> {
    let (key, raw) = o.split_once('=').ok_or_else(|| MfdError::config(o, "override must be key=value"))?;
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
            .ok_or_else(|| MfdError::config(key, format!("'{p}' is not a table")))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses_and_overrides_apply() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.model.seq_len / 128 - 2 * c.model.crop, 1);
        let c = Config::load(None, &["model.c=120".into(), "train.out=\"x/y\"".into(), "train.backend=auto".into()])
            .unwrap();
        assert_eq!(c.model.c, 120);
        assert_eq!(c.train.out, PathBuf::from("x/y"));
        assert_eq!(c.train.backend, "auto");
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
}
