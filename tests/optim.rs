//! `train.hyper_lr_scale`: the trainer's model optimiser steps the metadata hypernetworks (`hyper.*`) at
//! `train.lr * hyper_lr_scale` and every other model tensor at `train.lr`; the adversaries keep `adversary.lr`.
//!
//! With every gradient 1 and no weight decay, AMSGrad's first step moves each value by exactly -lr (m_hat = 1,
//! sqrt(v_hat) = 1, up to eps = 1e-8), so the step of each tensor shows the learning rate it was given.

use mfd::backend::cpu::CpuBackend;
use mfd::backend::Backend;
use mfd::config::Config;
use mfd::model::params::Group;
use mfd::train::optim::{optimisers, HYPER_PREFIX};

mod common;

/// Every value before and after one update of both optimisers of the config `sets` with every gradient 1 and the
/// schedule factor `lr_factor`, with the parameter specs.
fn one_update_from_unit_grads(
    sets: &[&str],
    lr_factor: f64,
) -> (Vec<mfd::model::params::ParamSpec>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let be = CpuBackend;
    let cfg = Config::load(None, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut m = common::tiny_mfd(&be, false);
    let before = m.params.to_host(&be).unwrap();
    let ones: Vec<Vec<f32>> = m.params.table.specs.iter().map(|s| vec![1.0; s.numel()]).collect();
    for (g, h) in m.params.grads.iter_mut().zip(&ones) {
        be.write(g, h).unwrap();
    }
    let (mut opt_model, mut opt_adv) = optimisers(&be, &m.params, &cfg).unwrap();
    opt_model.lr_factor = lr_factor;
    opt_adv.lr_factor = lr_factor;
    opt_model.update(&be, &mut m.params).unwrap();
    opt_adv.update(&be, &mut m.params).unwrap();
    let after = m.params.to_host(&be).unwrap();
    (m.params.table.specs.clone(), before, after)
}

const SETS: [&str; 3] = ["train.lr=0.01", "train.hyper_lr_scale=0.1", "adversary.lr=0.002"];

#[test]
fn hypernetworks_step_at_the_scaled_learning_rate() {
    let (specs, before, after) = one_update_from_unit_grads(&SETS, 1.0);
    let mut seen = [0usize; 3];
    for ((spec, b), a) in specs.iter().zip(&before).zip(&after) {
        let (want, kind) = match spec.group {
            Group::Buffer => (0.0, None),
            Group::Adversary => (0.002, Some(2)),
            Group::Model if spec.name.starts_with(HYPER_PREFIX) => (0.001, Some(1)),
            Group::Model => (0.01, Some(0)),
        };
        if let Some(k) = kind {
            seen[k] += 1;
        }
        for (x, y) in b.iter().zip(a) {
            let step = (x - y) as f64;
            assert!((step - want).abs() < 1e-6, "{}: step {step}, want {want}", spec.name);
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "tensors per kind (model, hyper, adversary): {seen:?}");
}

#[test]
fn hyper_lr_scale_must_be_positive() {
    for bad in ["0", "-1", "nan"] {
        let e = Config::load(None, &[format!("train.hyper_lr_scale={bad}")]).unwrap_err().to_string();
        assert!(e.contains("train.hyper_lr_scale"), "{bad}: {e}");
    }
}

/// `lr_factor` (what `train.lr_schedule` sets before each step) scales every group's learning rate.
#[test]
fn the_schedule_factor_scales_every_learning_rate() {
    let (specs, before, after) = one_update_from_unit_grads(&SETS, 0.25);
    for ((spec, b), a) in specs.iter().zip(&before).zip(&after) {
        let want = match spec.group {
            Group::Buffer => 0.0,
            Group::Adversary => 0.25 * 0.002,
            Group::Model if spec.name.starts_with(HYPER_PREFIX) => 0.25 * 0.001,
            Group::Model => 0.25 * 0.01,
        };
        for (x, y) in b.iter().zip(a) {
            let step = (x - y) as f64;
            assert!((step - want).abs() < 1e-6, "{}: step {step}, want {want}", spec.name);
        }
    }
}

/// The `train` rows of metrics.jsonl of a 40-step tiny run (a row every 10 steps) with these extra overrides.
fn train_rows(root: &std::path::Path, name: &str, extra: &[String]) -> Vec<serde_json::Value> {
    let mut sets = common::tiny_overrides(&root.join("data/dataset"));
    let out = root.join(name);
    sets.extend(["train.max_steps=40".into(), "train.log_every=10".into()]);
    sets.extend(extra.iter().cloned());
    sets.push(format!("train.out={}", toml::Value::String(out.to_string_lossy().into_owned())));
    let cfg = Config::load(None, &sets).unwrap();
    let opts = mfd::train::trainer::TrainOptions {
        resume: mfd::train::trainer::Resume::No,
        skip_final_eval: true,
        overwrite: false,
    };
    mfd::train::trainer::run(&cfg, &opts).unwrap();
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .collect()
}

/// A run with `train.lr_schedule = "cosine"` logs lr x (1 + cos(pi s / S)) / 2 for the update of step s (0-based)
/// of S planned steps, and one with "constant" the lr itself.
#[test]
fn cosine_schedule_in_a_training_run() {
    let root = tempfile::tempdir().unwrap();
    let lr_of = |schedule: &str| -> Vec<(u64, f64)> {
        let sets = ["train.lr=0.004".into(), format!("train.lr_schedule={schedule}")];
        let rows = train_rows(root.path(), schedule, &sets);
        rows.iter().map(|v| (v["step"].as_u64().unwrap(), v["lr"].as_f64().unwrap())).collect()
    };
    let cosine = lr_of("cosine");
    assert_eq!(cosine.iter().map(|r| r.0).collect::<Vec<_>>(), vec![10, 20, 30, 40]);
    for (step, lr) in cosine {
        let want = 0.004 * 0.5 * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / 40.0).cos());
        assert!((lr - want).abs() < 1e-12, "step {step}: lr {lr}, want {want}");
    }
    assert!(lr_of("constant").iter().all(|&(_, lr)| lr == 0.004));
    let e = Config::load(None, &["train.lr_schedule=linear".into()]).unwrap_err().to_string();
    assert!(e.contains("lr_schedule") || e.contains("linear"), "{e}");
}

/// `loss.indep_warmup_epochs`: the logged lambda of the update of step s (0-based) is lambda_indep x s / S while the
/// warm-up lasts (S = warm-up epochs x steps per epoch), and the reported loss is BCE + that lambda x indep; without
/// a warm-up, lambda_indep throughout.
#[test]
fn penalty_warmup_in_a_training_run() {
    let root = tempfile::tempdir().unwrap();
    // (step, lambda, loss - bce, the logged indep terms r2_bio + r2_tech + corr)
    let run = |warmup: f64| -> Vec<(u64, f64, f64, f64)> {
        let sets = ["loss.lambda_indep=0.01".into(), format!("loss.indep_warmup_epochs={warmup}")];
        let rows = train_rows(root.path(), &format!("w{warmup}"), &sets);
        let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
        let indep = |v: &serde_json::Value| num(v, "r2_bio") + num(v, "r2_tech") + num(v, "corr");
        rows.iter()
            .map(|v| (v["step"].as_u64().unwrap(), num(v, "lambda"), num(v, "loss") - num(v, "bce"), indep(v)))
            .collect()
    };
    // A warm-up of 1,000 epochs lasts far beyond 40 steps: lambda grows linearly from 0.
    let warm = run(1000.0);
    assert_eq!(warm.len(), 4);
    for w in warm.windows(2) {
        let ((s0, l0, ..), (s1, l1, ..)) = (w[0], w[1]);
        assert!(l0 > 0.0 && l1 < 0.01, "{warm:?}");
        assert!(((l1 / l0) - (s1 - 1) as f64 / (s0 - 1) as f64).abs() < 1e-9, "not linear from 0: {warm:?}");
    }
    // The reported loss is BCE + this step's lambda x the independence terms (f32 sums).
    let at_lambda = |r: &[(u64, f64, f64, f64)]| r.iter().all(|&(_, l, pen, ind)| (pen - l * ind).abs() < 1e-5);
    assert!(at_lambda(&warm), "{warm:?}");
    let full = run(0.0);
    assert!(full.iter().all(|&(_, l, ..)| l == 0.01) && at_lambda(&full), "{full:?}");
    let e = Config::load(None, &["loss.indep_warmup_epochs=-1".into()]).unwrap_err().to_string();
    assert!(e.contains("loss.indep_warmup_epochs"), "{e}");
}
