//! The config files the docs name (issue 23, item 1): every `configs/*.toml` named in README.md, docs/, launch/ or
//! another config's comments exists, and every config file (those named and all of configs/) parses and trains a
//! few steps on the synthetic `tiny` data with the sizes overridden down:
//! - run configs (a `[model]` table): `mfd train --config FILE --set ...` as the docs launch them, 3 steps;
//! - sweep configs (`[[point]]`): every point's run config, 3 steps each (the sweep itself: tests/sweep.rs);
//! - metadata mapping configs (anything else): parsed, then `mfd train --set data.metadata_mapping=FILE`, 3 steps.
//!
//! Sizes overridden: T = 128 (crop 0), batch 16, adversary hidden 16, 3 steps, CPU, the `tiny` preset as data;
//! C, the adversary's depth, the penalty and the learning rates stay as the file has them.

use mfd::config::Config;
use mfd::model::metadata::MappingConfig;
use mfd::sweep::config::Sweep;
use mfd::train::trainer::{run, Resume, TrainOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const STEPS: usize = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files whose text may name configs: README.md, docs/*, launch/*, configs/* (repo-relative).
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    for dir in ["docs", "launch", "configs"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| p.strip_prefix(repo()).unwrap().to_path_buf())
            .collect();
        v.sort();
        files.extend(v);
    }
    files
}

/// Every `configs/NAME.toml` in `text` (NAME: letters, digits, `_`, `-`, `.`).
fn config_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in text.match_indices("configs/") {
        let rest = &text[i + "configs/".len()..];
        let len = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || "_-.".contains(ch))).unwrap_or(rest.len());
        let name = rest[..len].trim_end_matches('.');
        if let Some(stem) = name.strip_suffix(".toml") {
            if !stem.is_empty() {
                names.push(format!("configs/{name}"));
            }
        }
    }
    names
}

/// Config path (repo-relative) -> the files that name it.
fn named_configs() -> BTreeMap<String, Vec<String>> {
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in doc_files() {
        let text = std::fs::read_to_string(repo().join(&f)).unwrap_or_default();
        for n in config_names(&text) {
            let by = named.entry(n).or_default();
            let f = f.display().to_string();
            if !by.contains(&f) {
                by.push(f);
            }
        }
    }
    named
}

#[test]
fn config_names_are_found_in_text() {
    let t = "see configs/c120.toml, `configs/sweep_lambda.toml`; configs/*.toml (configs/default.toml).\n\
             ../configs/a-b_c.toml configs/ configs/x.tomlx configs/.toml";
    assert_eq!(
        config_names(t),
        ["configs/c120.toml", "configs/sweep_lambda.toml", "configs/default.toml", "configs/a-b_c.toml"]
    );
}

#[test]
fn every_config_the_docs_name_exists() {
    let named = named_configs();
    assert!(named.contains_key("configs/c120.toml"), "the scan found no configs/c120.toml in README.md: {named:?}");
    let missing: Vec<String> = named
        .iter()
        .filter(|(n, _)| !repo().join(n).is_file())
        .map(|(n, by)| format!("{n} (named in {})", by.join(", ")))
        .collect();
    assert!(missing.is_empty(), "the docs name config files that do not exist: {missing:?}");
}

/// The paper-scale configs have the reference's shapes and training settings (mfd-spec.md 2.4).
#[test]
fn paper_configs_have_the_reference_settings() {
    for (file, c) in [("configs/c30.toml", 30), ("configs/c120.toml", 120)] {
        let cfg = Config::load(Some(&repo().join(file)), &[]).unwrap();
        assert_eq!(cfg.model.c, c, "{file}");
        let m = &cfg.model;
        assert_eq!((m.seq_len, m.crop, m.tower_layers, m.dilated_layers, m.dilation_growth), (2176, 8, 6, 2, 1.5));
        assert!(m.metadata, "{file}");
        let a = &cfg.adversary;
        assert_eq!((a.enabled, a.hidden, a.layers, a.lr, a.steps_per_model_step), (true, 1024, 3, 1e-3, 1), "{file}");
        assert_eq!((cfg.loss.lambda_indep, cfg.loss.cov_and_adv), (0.01, true), "{file}");
        let t = &cfg.train;
        assert_eq!(
            (t.batch_size, t.lr, t.hyper_lr_scale, t.weight_decay, t.epochs, t.seed),
            (256, 1e-3, 1.0, 0.0, 100, 1)
        );
        assert_eq!(cfg.data.synth_preset.as_deref(), Some("genome"), "{file}");
    }
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// The overrides that shrink any run config to a few CPU steps on the tiny data in `root`.
fn small(root: &Path) -> Vec<String> {
    vec![
        format!("data.dataset={}", toml_str(&root.join("data/dataset"))),
        "data.synth_preset=\"tiny\"".into(),
        "data.synth_seed=1".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "train.batch_size=16".into(),
        "train.epochs=1".into(),
        format!("train.max_steps={STEPS}"),
        "train.max_seconds=0".into(),
        "train.log_every=1".into(),
        "train.backend=\"cpu\"".into(),
    ]
}

/// The global step of a run's last checkpoint.
fn last_step(run: &Path) -> String {
    let bytes = std::fs::read(run.join("checkpoints/last.safetensors"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.join("checkpoints/last.safetensors").display()));
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    m.metadata().clone().unwrap()["global_step"].clone()
}

/// `mfd train` with `args` then `--set` each of `overrides`; the run in `out` must have trained `STEPS` steps with
/// the config `expect` (the file's settings plus the overrides).
fn train_cli(args: &[&str], overrides: &[String], out: &Path, expect: &Config) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_mfd"))
        .arg("train")
        .args(args)
        .args(overrides.iter().flat_map(|o| ["--set", o.as_str()]))
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(format!("mfd train {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr)));
    }
    let step = last_step(out);
    if step != STEPS.to_string() {
        return Err(format!("mfd train {args:?}: last checkpoint at step {step}, not {STEPS}"));
    }
    let stored = mfd::train::checkpoint::stored_config(&out.join("checkpoints/last.safetensors")).unwrap();
    let stored = Config::parse(&stored, out, &[]).unwrap();
    if &stored != expect {
        return Err(format!("mfd train {args:?}: the run's config\n{stored:?}\nis not the file's\n{expect:?}"));
    }
    Ok(())
}

/// Parse `file` by its kind and train a few steps with it (see the module docs).
fn check(file: &Path, root: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("not TOML: {e}"))?;
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let out = root.join("runs").join(&stem);
    let mut overrides = small(root);
    overrides.push(format!("train.out={}", toml_str(&out)));
    if table.contains_key("model") {
        let expect = Config::load(Some(file), &overrides).map_err(|e| e.to_string())?;
        train_cli(&["--config", &file.to_string_lossy()], &overrides, &out, &expect)?;
        Ok(format!("run config: C = {}, {STEPS} steps", expect.model.c))
    } else if table.contains_key("point") {
        let sweep =
            Sweep::load(file, &small(root), Some(&root.join("sweeps").join(&stem))).map_err(|e| e.to_string())?;
        for p in &sweep.points {
            run(&p.cfg, &TrainOptions { resume: Resume::No, skip_final_eval: true, overwrite: false })
                .map_err(|e| format!("point {}: {e}", p.name))?;
            let step = last_step(&p.cfg.train.out);
            if step != STEPS.to_string() {
                return Err(format!("point {}: last checkpoint at step {step}", p.name));
            }
        }
        Ok(format!("sweep config: {} points, {STEPS} steps each", sweep.points.len()))
    } else {
        MappingConfig::load(file).map_err(|e| format!("neither a run, a sweep nor a mapping config: {e}"))?;
        overrides.push(format!("data.metadata_mapping={}", toml_str(file)));
        let expect = Config::load(None, &overrides).map_err(|e| e.to_string())?;
        train_cli(&[], &overrides, &out, &expect)?;
        Ok(format!("metadata mapping: the default with it, {STEPS} steps"))
    }
}

#[test]
fn every_config_parses_and_trains_a_few_steps() {
    let mut files: Vec<String> = named_configs().into_keys().filter(|n| repo().join(n).is_file()).collect();
    for e in std::fs::read_dir(repo().join("configs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(format!("configs/{}", p.file_name().unwrap().to_string_lossy()));
        }
    }
    files.sort();
    files.dedup();
    for must in ["configs/default.toml", "configs/c30.toml", "configs/c120.toml", "configs/sweep_lambda.toml"] {
        assert!(files.iter().any(|f| f == must), "{must} not among {files:?}");
    }
    // One tiny dataset for all of them: the first run synthesizes and prepares it, the others reuse it.
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for f in &files {
        let t0 = std::time::Instant::now();
        match check(&repo().join(f), dir.path()) {
            Ok(what) => eprintln!("{f}: {what} ({:.1} s)", t0.elapsed().as_secs_f64()),
            Err(e) => failed.push(format!("{f}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{} of {} config files failed:\n{}", failed.len(), files.len(), failed.join("\n\n"));
}
