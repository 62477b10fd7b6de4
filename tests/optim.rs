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

#[test]
fn hypernetworks_step_at_the_scaled_learning_rate() {
    let be = CpuBackend;
    let cfg =
        Config::load(None, &["train.lr=0.01".into(), "train.hyper_lr_scale=0.1".into(), "adversary.lr=0.002".into()])
            .unwrap();
    let mut m = common::tiny_mfd(&be, false);
    let before = m.params.to_host(&be).unwrap();
    let ones: Vec<Vec<f32>> = m.params.table.specs.iter().map(|s| vec![1.0; s.numel()]).collect();
    for (g, h) in m.params.grads.iter_mut().zip(&ones) {
        be.write(g, h).unwrap();
    }
    let (mut opt_model, mut opt_adv) = optimisers(&be, &m.params, &cfg).unwrap();
    opt_model.update(&be, &mut m.params).unwrap();
    opt_adv.update(&be, &mut m.params).unwrap();
    let after = m.params.to_host(&be).unwrap();

    let mut seen = [0usize; 3];
    for ((spec, b), a) in m.params.table.specs.iter().zip(&before).zip(&after) {
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
