//! The sweep config (TOML) and its expansion into points: a base run config (a path, `"default"` for the
//! embedded default, or an inline `[base]` table), overrides for every point, a list of points (each a list of
//! `key=value` overrides), optional seeds (every point runs once per seed), ranks per point and the output
//! directory, plus the settings of the post-hoc analyses (`[independence]`, `[downstream]`).
//!
//! Key decision: a point's run directory name is derived from its overrides (`loss.lambda_indep=0.01` gives
//! `lambda_indep-0.01`), so rerunning the same sweep finds the same directories (resume); an explicit `name`
//! replaces it. Names are checked to be unique and filesystem-safe.

use crate::config::Config;
use crate::error::{IoContext, MfdError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    /// Path of the base run config (relative to the working directory, else to the sweep file), `"default"`, or
    /// an inline table.
    base: toml::Value,
    out: PathBuf,
    #[serde(default = "one")]
    ranks_per_point: usize,
    /// Overrides applied to every point (before the point's own).
    #[serde(default)]
    set: Vec<String>,
    /// Seeds (train.seed); empty = the base config's seed only.
    #[serde(default)]
    seeds: Vec<u64>,
    #[serde(rename = "point")]
    points: Vec<PointFile>,
    #[serde(default)]
    independence: IndependenceConfig,
    #[serde(default)]
    downstream: DownstreamConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointFile {
    set: Vec<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Post-hoc independence metrics on test features (mfd-spec.md 8.7).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IndependenceConfig {
    /// Training epochs of the shuffle discriminator and of the predictors (1 in the reference).
    #[serde(default = "one")]
    pub epochs: usize,
    /// Hidden width of the shuffle discriminator (512) and of the predictors (256); 3 hidden layers each.
    #[serde(default = "d512")]
    pub discriminator_hidden: usize,
    #[serde(default = "d256")]
    pub predictor_hidden: usize,
    #[serde(default = "three")]
    pub layers: usize,
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "d512")]
    pub discriminator_batch: usize,
    #[serde(default = "d256")]
    pub predictor_batch: usize,
    /// Fraction of the test tiles the networks are trained on; the rest scores them.
    #[serde(default = "seventy")]
    pub train_fraction: f64,
    #[serde(default = "one_u64")]
    pub seed: u64,
}

impl Default for IndependenceConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

/// Table 1: tissue-program classification of the synthetic elements from each point's features.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamConfig {
    /// Run it (only where the dataset has a synthetic truth with elements.bed).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Shifted crops averaged per strand (both strands always).
    #[serde(default = "one")]
    pub shifts: usize,
    #[serde(default = "five")]
    pub folds: usize,
    #[serde(default = "twenty")]
    pub test_fraction: f64,
    #[serde(default = "seed42")]
    pub seed: u64,
    /// At most this many elements (a deterministic subset; 0 = all).
    #[serde(default)]
    pub max_elements: usize,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

fn one() -> usize {
    1
}
fn one_u64() -> u64 {
    1
}
fn three() -> usize {
    3
}
fn five() -> usize {
    5
}
fn d256() -> usize {
    256
}
fn d512() -> usize {
    512
}
fn lr() -> f64 {
    1e-3
}
fn seventy() -> f64 {
    0.7
}
fn twenty() -> f64 {
    0.2
}
fn seed42() -> u64 {
    42
}
fn yes() -> bool {
    true
}

/// One point of a sweep: its directory name, overrides and resolved run config (train.out = its run directory).
#[derive(Debug, Clone)]
pub struct Point {
    pub name: String,
    pub overrides: Vec<String>,
    pub cfg: Config,
}

/// A parsed, expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub out: PathBuf,
    pub ranks_per_point: usize,
    pub points: Vec<Point>,
    pub independence: IndependenceConfig,
    pub downstream: DownstreamConfig,
}

/// `loss.lambda_indep=0.01` -> `lambda_indep-0.01`: the last key segment and the value, filesystem-safe.
pub fn override_name(o: &str) -> String {
    let (k, v) = o.split_once('=').unwrap_or((o, ""));
    let key = k.trim().rsplit('.').next().unwrap_or("");
    let v = v.trim().trim_matches('"');
    sanitize(&format!("{key}-{v}"))
}

fn sanitize(s: &str) -> String {
    s.chars().map(|ch| if ch.is_ascii_alphanumeric() || "._-".contains(ch) { ch } else { '_' }).collect()
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl Sweep {
    /// Parse the sweep file at `path`; `extra` overrides (from `--set`) apply to every point after the file's
    /// `set` and before the point's own; `out` replaces the file's output directory.
    pub fn load(path: &Path, extra: &[String], out: Option<&Path>) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&text, path, extra, out)
    }

    pub fn parse(text: &str, path: &Path, extra: &[String], out: Option<&Path>) -> Result<Sweep> {
        let f: SweepFile = crate::toml_load::parse(text, path)?;
        let (base_text, base_path) = match &f.base {
            toml::Value::String(s) if s == "default" => {
                (crate::config::DEFAULT_CONFIG.to_string(), PathBuf::from("configs/default.toml"))
            }
            toml::Value::String(s) => {
                let p = PathBuf::from(s);
                let p = if p.exists() { p } else { path.parent().unwrap_or(Path::new(".")).join(s) };
                (std::fs::read_to_string(&p).at(&p)?, p)
            }
            toml::Value::Table(t) => {
                (toml::to_string(t).map_err(|e| MfdError::config("base", e.to_string()))?, { path.to_path_buf() })
            }
            _ => return Err(MfdError::input(path, None, Some("base"), "expected a path, \"default\" or a table")),
        };
        if f.points.is_empty() {
            return Err(MfdError::input(path, None, Some("point"), "a sweep needs at least one [[point]]"));
        }
        if f.ranks_per_point == 0 {
            return Err(MfdError::input(path, None, Some("ranks_per_point"), "must be >= 1"));
        }
        let out = out.map(Path::to_path_buf).unwrap_or(f.out);
        let seeds: Vec<Option<u64>> =
            if f.seeds.is_empty() { vec![None] } else { f.seeds.iter().map(|&s| Some(s)).collect() };
        let mut points: Vec<Point> = Vec::new();
        for (i, p) in f.points.iter().enumerate() {
            for seed in &seeds {
                let mut name = match &p.name {
                    Some(n) => sanitize(n),
                    None if p.set.is_empty() => "base".to_string(),
                    None => p.set.iter().map(|o| override_name(o)).collect::<Vec<_>>().join("_"),
                };
                let mut overrides: Vec<String> = f.set.iter().chain(extra).chain(&p.set).cloned().collect();
                if let Some(s) = seed {
                    name.push_str(&format!("_seed-{s}"));
                    overrides.push(format!("train.seed={s}"));
                }
                let dir = out.join("points").join(&name);
                overrides.push(format!("train.out={}", toml_string(&dir.to_string_lossy())));
                let cfg = Config::parse(&base_text, &base_path, &overrides).map_err(|e| {
                    MfdError::input(path, None, Some("point"), format!("point {} ({name}): {e}", i + 1))
                })?;
                if points.iter().any(|q| q.name == name) {
                    return Err(MfdError::input(
                        path,
                        None,
                        Some("point"),
                        format!("two points are named '{name}'; give one a `name`"),
                    ));
                }
                points.push(Point { name, overrides, cfg });
            }
        }
        Ok(Sweep {
            out,
            ranks_per_point: f.ranks_per_point,
            points,
            independence: f.independence,
            downstream: f.downstream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"
base = "default"
out = "runs/s"
set = ["train.epochs=1"]
seeds = [1, 2]
[[point]]
set = ["loss.lambda_indep=0", "adversary.enabled=false"]
[[point]]
set = ["loss.lambda_indep=0.01"]
[independence]
epochs = 2
"#;

    #[test]
    fn points_expand_with_derived_names_and_resolved_configs() {
        let s = Sweep::parse(SWEEP, Path::new("s.toml"), &["model.c=16".into()], None).unwrap();
        let names: Vec<&str> = s.points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lambda_indep-0_enabled-false_seed-1",
                "lambda_indep-0_enabled-false_seed-2",
                "lambda_indep-0.01_seed-1",
                "lambda_indep-0.01_seed-2"
            ]
        );
        let p = &s.points[3];
        assert_eq!(p.cfg.loss.lambda_indep, 0.01);
        assert_eq!(p.cfg.train.seed, 2);
        assert_eq!(p.cfg.train.epochs, 1);
        assert_eq!(p.cfg.model.c, 16);
        assert_eq!(p.cfg.train.out, PathBuf::from("runs/s/points/lambda_indep-0.01_seed-2"));
        assert!(!s.points[0].cfg.adversary.enabled);
        assert_eq!(s.independence.epochs, 2);
        assert_eq!(s.independence.discriminator_hidden, 512);
        assert!(s.downstream.enabled);
    }

    #[test]
    fn bad_sweeps_are_errors_naming_the_field() {
        let e = Sweep::parse("base = \"default\"\nout = \"x\"\npoint = []\n", Path::new("s.toml"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("point"), "{e}");
        let dup = "base = \"default\"\nout = \"x\"\n[[point]]\nset = [\"loss.lambda_indep=0\"]\n[[point]]\nset = [\"loss.lambda_indep=0\"]\n";
        let e = Sweep::parse(dup, Path::new("s.toml"), &[], None).unwrap_err().to_string();
        assert!(e.contains("two points"), "{e}");
        let bad = "base = \"default\"\nout = \"x\"\n[[point]]\nset = [\"model.nope=1\"]\n";
        let e = Sweep::parse(bad, Path::new("s.toml"), &[], None).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
        let e = Sweep::parse("base = 3\nout = \"x\"\n[[point]]\nset = []\n", Path::new("s.toml"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("base"), "{e}");
    }

    #[test]
    fn the_shipped_sweeps_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let s = Sweep::load(&root.join("configs/sweep_lambda.toml"), &[], None).unwrap();
        let names: Vec<&str> = s.points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["baseline", "lambda_indep-0_enabled-false", "lambda_indep-0.001", "lambda_indep-0.01", "lambda_indep-0.1"]
        );
        assert!(!s.points[0].cfg.model.metadata && !s.points[0].cfg.adversary.enabled);
        assert!(s.points[4].cfg.model.metadata && s.points[4].cfg.adversary.enabled);
        assert_eq!(s.points[4].cfg.loss.lambda_indep, 0.1);
        let t = Sweep::load(&root.join("configs/sweep_tiny.toml"), &[], None).unwrap();
        assert_eq!(t.points.len(), 2);
        assert_eq!(t.points[1].cfg.model.c, 16);
    }

    #[test]
    fn override_names_are_filesystem_safe() {
        assert_eq!(override_name("loss.lambda_indep=0.001"), "lambda_indep-0.001");
        assert_eq!(override_name("train.out=\"a/b c\""), "out-a_b_c");
    }
}
