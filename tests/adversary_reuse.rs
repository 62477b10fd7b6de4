//! `adversary.reuse_model_backward`: the adversary's gradient taken from the model step's backward through the
//! predictors, against the reference's literal schedule (the adversary step forwards and back-propagates the
//! predictors again), on the tiny model (C = 4, T = 128, B = 6, O = 5) over several full steps.
//!
//! What differs, and why: the model backward of the literal schedule back-propagates lambda * R2 through the
//! predictors, the reuse schedule -R2 and then scales the feature gradients by -lambda. Multiplying by -1 is
//! exact, so the adversary's gradients, its parameters and its BatchNorm running statistics are bit-identical
//! after the first step; the model's feature gradients round differently (lambda applied before vs after the
//! predictors' backward), so from the second step on everything agrees to rounding only. As in tests/dist.rs,
//! parameters whose exact gradient is zero (a bias followed by a BatchNorm or by the R2 standardisation) are
//! skipped: Adam turns their rounding-noise gradients into steps of up to lr in either schedule.

use mfd::backend::cpu::CpuBackend;
use mfd::backend::{AdamConfig, Backend, NoReduce};
use mfd::model::mfd::Mfd;
use mfd::model::params::Group;
use mfd::rng::Rng;
use mfd::train::optim::AmsGrad;

mod common;

const B: usize = 6;
/// Not a power of two, so that the two schedules round differently.
const LAMBDA: f32 = 0.3;

struct Run {
    m: Mfd<CpuBackend>,
    opt: AmsGrad<CpuBackend>,
    opt_adv: AmsGrad<CpuBackend>,
    lambda: f32,
}

impl Run {
    fn new(be: &CpuBackend, shared: bool, reuse: bool, lambda: f32) -> Self {
        let mut m = common::tiny_mfd(be, shared);
        m.reuse_adversary_backward = reuse;
        let opt = AmsGrad::new(be, &m.params, Group::Model, AdamConfig::default()).unwrap();
        let opt_adv = AmsGrad::new(be, &m.params, Group::Adversary, AdamConfig::default()).unwrap();
        Run { m, opt, opt_adv, lambda }
    }

    /// One training step in the trainer's order; returns (model loss, adversary loss, adversary gradients).
    fn step(&mut self, be: &CpuBackend, seed: u64) -> (f32, f32, Vec<Vec<f32>>) {
        let mut rng = Rng::new(seed);
        let tokens: Vec<u8> = (0..B * 128).map(|_| rng.below(17) as u8).collect();
        let labels: Vec<u8> = (0..B * 8).map(|i| if i % 8 == 0 { rng.below(32) as u8 } else { 0 }).collect();
        let (t, l) = (be.upload_bytes(&tokens).unwrap(), be.upload_bytes(&labels).unwrap());
        self.m.params.zero_grads(be, Group::Model).unwrap();
        let terms = self.m.model_loss_backward(be, &t, &l, B, self.lambda, true, &mut NoReduce).unwrap();
        let adv = self.m.adversary_loss_backward(be, B, &mut NoReduce).unwrap();
        let grads = self.m.params.grads_to_host(be).unwrap();
        let adv_grads = self
            .m
            .params
            .table
            .specs
            .iter()
            .zip(grads)
            .filter(|(s, _)| s.group == Group::Adversary)
            .map(|(_, g)| g)
            .collect();
        self.opt_adv.update(be, &mut self.m.params).unwrap();
        self.opt.update(be, &mut self.m.params).unwrap();
        (terms.loss, adv, adv_grads)
    }

    fn tensors(&self, be: &CpuBackend) -> Vec<(String, Group, Vec<f32>)> {
        let specs = &self.m.params.table.specs;
        specs.iter().zip(self.m.params.to_host(be).unwrap()).map(|(s, v)| (s.name.clone(), s.group, v)).collect()
    }
}

/// Largest |a - b| over every tensor (parameters and running statistics); (name, value) of the worst.
fn worst_difference(a: &[(String, Group, Vec<f32>)], b: &[(String, Group, Vec<f32>)]) -> (String, f32) {
    let mut worst = (String::new(), 0.0f32);
    for ((name, _, x), (_, _, y)) in a.iter().zip(b) {
        let d = x.iter().zip(y).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        if d > worst.1 {
            worst = (name.clone(), d);
        }
    }
    worst
}

#[test]
fn first_step_gives_the_literal_adversary_gradient_bit_for_bit() {
    let be = CpuBackend;
    for shared in [false, true] {
        let (mut reuse, mut literal) = (Run::new(&be, shared, true, LAMBDA), Run::new(&be, shared, false, LAMBDA));
        let (loss_r, adv_r, g_r) = reuse.step(&be, 1);
        let (loss_l, adv_l, g_l) = literal.step(&be, 1);
        assert_eq!((loss_r, adv_r), (loss_l, adv_l), "shared={shared}");
        assert!(g_r.iter().any(|g| g.iter().any(|v| *v != 0.0)), "no adversary gradient");
        assert_eq!(g_r, g_l, "shared={shared}: adversary gradients differ");
        // Adversary parameters and every BatchNorm running statistic of the predictors (updated twice per step
        // in both schedules) are identical.
        let (tr, tl) = (reuse.tensors(&be), literal.tensors(&be));
        for ((name, _, x), (_, _, y)) in tr.iter().zip(&tl) {
            if name.starts_with("adversary.") {
                assert_eq!(x, y, "shared={shared}: {name} differs after one step");
            }
        }
    }
}

/// "To rounding", measured: the reuse schedule may drift from the literal one by no more than the literal
/// schedule drifts from itself when lambda is nudged by one ulp (a perturbation of rounding size, which Adam and
/// the zero-gradient biases amplify in the same way), with a factor 10 of margin. Every tensor is compared,
/// running statistics included.
#[test]
fn steps_agree_with_the_literal_schedule_to_rounding() {
    let be = CpuBackend;
    let nudged = f32::from_bits(LAMBDA.to_bits() + 1);
    let mut runs =
        [Run::new(&be, false, true, LAMBDA), Run::new(&be, false, false, LAMBDA), Run::new(&be, false, false, nudged)];
    for s in 0..10u64 {
        for r in runs.iter_mut() {
            r.step(&be, 100 + s);
        }
        if s == 0 || s == 9 {
            let t: Vec<_> = runs.iter().map(|r| r.tensors(&be)).collect();
            let (name, d) = worst_difference(&t[0], &t[1]);
            let (name_0, d0) = worst_difference(&t[2], &t[1]);
            eprintln!(
                "after {} steps, largest difference: reuse vs literal {d:e} ({name}); literal with lambda one ulp up \
                 vs literal {d0:e} ({name_0})",
                s + 1
            );
            assert!(d0 > 0.0, "the nudge changed nothing");
            assert!(d <= 10.0 * d0, "step {s}: reuse drifts {d:e} ({name}) from the literal schedule, rounding {d0:e}");
        }
    }
}
