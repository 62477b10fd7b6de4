//! Whole-model gradient checks: the analytic gradient of the model loss (BCE + lambda * (R2_bio + R2_tech +
//! ||R||_F)) with respect to every parameter tensor, and of the adversary loss with respect to the predictors,
//! against central finite differences along random directions, on a tiny model (C = 4, T = 128, B = 6, O = 5).
//!
//! The model runs in f32 (the CPU backend's precision), so this is a directional check: for a random unit
//! direction v per tensor, (L(p + eps v) - L(p - eps v)) / (2 eps), accumulated in f64, against <grad, v>. Each
//! op's backward is also checked element-wise against f64 finite differences in the backend's own tests.

use mfd::backend::cpu::CpuBackend;
use mfd::backend::{Backend, NoReduce};
use mfd::model::mfd::Mfd;
use mfd::model::params::Group;
use mfd::rng::Rng;

mod common;

const B: usize = 6;

fn tiny_model(shared: bool) -> (CpuBackend, Mfd<CpuBackend>) {
    let be = CpuBackend;
    let model = common::tiny_mfd(&be, shared);
    (be, model)
}

fn batch(be: &CpuBackend, seed: u64) -> (Vec<u8>, <CpuBackend as Backend>::Bytes, <CpuBackend as Backend>::Bytes) {
    let mut rng = Rng::new(seed);
    let tokens: Vec<u8> = (0..B * 128).map(|_| rng.below(17) as u8).collect();
    let labels: Vec<u8> = (0..B * 8).map(|i| if i % 8 == 0 { rng.below(32) as u8 } else { 0 }).collect();
    let t = be.upload_bytes(&tokens).unwrap();
    let l = be.upload_bytes(&labels).unwrap();
    (tokens, t, l)
}

fn model_loss(
    be: &CpuBackend,
    m: &mut Mfd<CpuBackend>,
    t: &<CpuBackend as Backend>::Bytes,
    l: &<CpuBackend as Backend>::Bytes,
) -> f64 {
    m.params.zero_grads(be, Group::Model).unwrap();
    m.model_loss_backward(be, t, l, B, 0.5, true, &mut NoReduce).unwrap().loss as f64
}

fn unit_direction(n: usize, rng: &mut Rng) -> Vec<f32> {
    let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| (x / norm) as f32).collect()
}

fn perturb(be: &CpuBackend, m: &mut Mfd<CpuBackend>, i: usize, base: &[f32], v: &[f32], eps: f32) {
    let shifted: Vec<f32> = base.iter().zip(v).map(|(p, d)| p + eps * d).collect();
    be.write(&mut m.params.values[i], &shifted).unwrap();
}

/// |fd - analytic| <= atol + rtol * max(|fd|, |analytic|). In f32 the loss carries round-off noise of about 3e-6
/// (measured: the stem bias, whose true gradient is 0 because every path from it passes a BatchNorm, shows FD
/// values of that size / 2 eps), and max pooling makes the loss piecewise smooth, so a single step size cannot
/// serve every tensor: large steps cross pooling switch points, small ones drown in round-off. The check passes
/// when the FD derivative at one of three step sizes a decade apart agrees; a wrong gradient agrees at none.
const ATOL: f64 = 3e-4;
const RTOL: f64 = 3e-2;
const STEPS: [f32; 3] = [1e-2, 1e-3, 1e-4];

fn agrees(fd: f64, analytic: f64) -> bool {
    (fd - analytic).abs() <= ATOL + RTOL * fd.abs().max(analytic.abs())
}

#[test]
fn model_loss_gradient_matches_finite_differences() {
    let (be, mut m) = tiny_model(false);
    let (_tok, t, l) = batch(&be, 11);
    model_loss(&be, &mut m, &t, &l);
    let grads = m.params.grads_to_host(&be).unwrap();
    let values = m.params.to_host(&be).unwrap();
    let mut rng = Rng::new(99);
    let mut checked = 0;
    let mut failures = Vec::new();
    for (i, spec) in m.params.table.specs.clone().iter().enumerate() {
        if spec.group != Group::Model {
            continue;
        }
        let v = unit_direction(spec.numel(), &mut rng);
        let analytic: f64 = grads[i].iter().zip(&v).map(|(g, d)| *g as f64 * *d as f64).sum();
        let mut fds = Vec::new();
        for eps in STEPS {
            perturb(&be, &mut m, i, &values[i], &v, eps);
            let lp = model_loss(&be, &mut m, &t, &l);
            perturb(&be, &mut m, i, &values[i], &v, -eps);
            let lm = model_loss(&be, &mut m, &t, &l);
            fds.push((lp - lm) / (2.0 * eps as f64));
        }
        be.write(&mut m.params.values[i], &values[i]).unwrap();
        if !fds.iter().any(|&fd| agrees(fd, analytic)) {
            failures.push(format!("{}: fd {fds:.6?} analytic {analytic:.6e}", spec.name));
        }
        checked += 1;
    }
    assert!(checked > 60, "checked only {checked} tensors");
    assert!(failures.is_empty(), "{} of {checked} tensors disagree:\n{}", failures.len(), failures.join("\n"));
}

/// Both schedules: with reuse the analytic gradient is the one the model backward left; literal recomputes it.
#[test]
fn adversary_loss_gradient_matches_finite_differences() {
    for (shared, reuse) in [(false, true), (true, true), (false, false), (true, false)] {
        let (be, mut m) = tiny_model(shared);
        m.reuse_adversary_backward = reuse;
        let (_tok, t, l) = batch(&be, 12);
        model_loss(&be, &mut m, &t, &l);
        m.adversary_loss_backward(&be, B, &mut NoReduce).unwrap();
        let grads = m.params.grads_to_host(&be).unwrap();
        let values = m.params.to_host(&be).unwrap();
        let mut rng = Rng::new(7);
        let mut failures = Vec::new();
        let mut checked = 0;
        for (i, spec) in m.params.table.specs.clone().iter().enumerate() {
            if spec.group != Group::Adversary {
                continue;
            }
            let v = unit_direction(spec.numel(), &mut rng);
            let analytic: f64 = grads[i].iter().zip(&v).map(|(g, d)| *g as f64 * *d as f64).sum();
            let mut loss_at = |e: f32| {
                perturb(&be, &mut m, i, &values[i], &v, e);
                m.adversary_loss_backward(&be, B, &mut NoReduce).unwrap() as f64
            };
            let fds: Vec<f64> = STEPS.iter().map(|&e| (loss_at(e) - loss_at(-e)) / (2.0 * e as f64)).collect();
            be.write(&mut m.params.values[i], &values[i]).unwrap();
            // With a shared predictor the second predictor is built but never used: its gradient must be 0.
            if shared && spec.name.starts_with("adversary.tech_from_bio") {
                assert!(grads[i].iter().all(|g| *g == 0.0), "{} unused but has a gradient", spec.name);
            }
            if !fds.iter().any(|&fd| agrees(fd, analytic)) {
                failures.push(format!("{}: fd {fds:.6?} analytic {analytic:.6e}", spec.name));
            }
            checked += 1;
        }
        assert!(checked >= 10);
        assert!(failures.is_empty(), "shared={shared} reuse={reuse}: {}", failures.join("\n"));
    }
}
