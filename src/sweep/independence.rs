//! Post-hoc independence metrics of the biological and technical features (mfd-spec.md 8.7), on the test tiles:
//! (a) a shuffle discriminator MLP 2C -> H -> H -> H -> 1 (BatchNorm, ReLU) trained with BCE to tell true
//! [bio, tech] pairs from pairs with the technical half permuted across tiles; its held-out accuracy (0.5 =
//! independent); (b) predictor MLPs C -> H -> H -> H -> C (BatchNorm, LeakyReLU) trained on -S (S = total_R2,
//! mfd-spec.md 4.3) in both directions; the held-out S / C (mean squared per-feature correlation, in [0, 1]);
//! (c) the Frobenius norm of the test cross-correlation matrix corr(tech_i, bio_j).
//!
//! Key decisions: the networks reuse the model's `Mlp`, `r2_score` and AMSGrad on the CPU backend (Adam with
//! amsgrad, as everywhere in this crate; the reference uses plain Adam here). Unlike the reference, which logs
//! training-batch losses, the networks are trained on a `train_fraction` of the tiles and scored on the rest in
//! evaluation mode, so a network cannot score by memorising. Features are standardised per column first.

use crate::backend::cpu::CpuBackend;
use crate::backend::{Activation, AdamConfig, Backend, NoReduce, R2Shape};
use crate::error::{MfdError, Result};
use crate::model::mlp::Mlp;
use crate::model::params::{Group, ParamTable, Params};
use crate::rng::Rng;
use crate::sweep::config::IndependenceConfig;
use crate::train::optim::AmsGrad;
use crate::train::probe::cross_correlation;

/// The three metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Independence {
    /// Held-out accuracy of the shuffle discriminator (0.5 = independent).
    pub shuffle_accuracy: f64,
    /// Held-out S / C of the predictor of the biological features from the technical ones.
    pub r2_bio_from_tech: f64,
    /// ... and of the technical features from the biological ones.
    pub r2_tech_from_bio: f64,
    /// ||corr(tech, bio)||_F over all test tiles.
    pub corr_frobenius: f64,
    pub tiles: usize,
}

/// Column-standardised copy of x (N, d).
fn standardise(x: &[f32], d: usize) -> Vec<f32> {
    let n = x.len() / d.max(1);
    let mut out = x.to_vec();
    for j in 0..d {
        let mean = (0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / n.max(1) as f64;
        let var = (0..n).map(|i| (x[i * d + j] as f64 - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
        let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
        for i in 0..n {
            out[i * d + j] = ((x[i * d + j] as f64 - mean) / sd) as f32;
        }
    }
    out
}

/// Rows `idx` of x (N, d).
fn rows(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

/// An MLP with its own parameters and optimiser.
struct Net {
    mlp: Mlp<CpuBackend>,
    params: Params<CpuBackend>,
    opt: AmsGrad<CpuBackend>,
}

impl Net {
    fn new(dims: &[usize], act: Activation, lr: f64, seed: u64) -> Result<Net> {
        let be = CpuBackend;
        let mut t = ParamTable::default();
        let mlp = Mlp::new(&mut t, "net", dims, true, act, Group::Model);
        let host = t.init_host(seed);
        let params = Params::new(&be, t, &host)?;
        let opt = AmsGrad::new(&be, &params, Group::Model, AdamConfig { lr, ..AdamConfig::default() })?;
        Ok(Net { mlp, params, opt })
    }

    /// Output (n, d_out) of x (n, d_in) on the host.
    fn forward(&mut self, x: &[f32], n: usize, train: bool) -> Result<Vec<f32>> {
        let be = CpuBackend;
        let xb = be.upload(x)?;
        let y = self.mlp.forward(&be, &mut self.params, &xb, n, train, &mut NoReduce)?;
        be.to_host(y)
    }

    /// Backward of dy (n, d_out) through the last (training) forward, then one optimiser step.
    fn step(&mut self, dy: &[f32]) -> Result<()> {
        let be = CpuBackend;
        self.params.zero_grads(&be, Group::Model)?;
        let dyb = be.upload(dy)?;
        self.mlp.backward(&be, &mut self.params, &dyb, false, &mut NoReduce)?;
        self.opt.update(&be, &mut self.params)
    }
}

/// Batches of `order` of at most `batch` rows; a last batch of one row is dropped (BatchNorm needs two).
fn batches(order: &[usize], batch: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(batch.max(2)).filter(|b| b.len() >= 2)
}

/// The shuffle discriminator's held-out accuracy on standardised bio (N, C) and tech (N, C).
fn shuffle_accuracy(bio: &[f32], tech: &[f32], c: usize, cfg: &IndependenceConfig) -> Result<f64> {
    let n = bio.len() / c;
    let mut rng = Rng::derive(cfg.seed, &[0x5348]);
    let mut perm: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut perm);
    // 2N rows (2C): N true pairs (label 1), N pairs with the technical half of another tile (label 0).
    let mut x = Vec::with_capacity(2 * n * 2 * c);
    let mut y = Vec::with_capacity(2 * n);
    for i in 0..n {
        x.extend_from_slice(&bio[i * c..(i + 1) * c]);
        x.extend_from_slice(&tech[i * c..(i + 1) * c]);
        y.push(1.0f32);
    }
    for i in 0..n {
        x.extend_from_slice(&bio[i * c..(i + 1) * c]);
        x.extend_from_slice(&tech[perm[i] * c..(perm[i] + 1) * c]);
        y.push(0.0);
    }
    let mut all: Vec<usize> = (0..2 * n).collect();
    rng.shuffle(&mut all);
    let n_train = ((2 * n) as f64 * cfg.train_fraction).round() as usize;
    let (train, test) = all.split_at(n_train.min(2 * n));
    let h = cfg.discriminator_hidden;
    let mut dims = vec![2 * c];
    dims.extend(std::iter::repeat_n(h, cfg.layers));
    dims.push(1);
    let mut net = Net::new(&dims, Activation::Relu, cfg.lr, cfg.seed)?;
    let mut order = train.to_vec();
    for _ in 0..cfg.epochs.max(1) {
        rng.shuffle(&mut order);
        for b in batches(&order, cfg.discriminator_batch) {
            let z = net.forward(&rows(&x, 2 * c, b), b.len(), true)?;
            // d mean BCE-with-logits / dz = (sigmoid(z) - y) / n.
            let dz: Vec<f32> = z
                .iter()
                .zip(b)
                .map(|(&zi, &r)| ((1.0 / (1.0 + (-zi as f64).exp())) as f32 - y[r]) / b.len() as f32)
                .collect();
            net.step(&dz)?;
        }
    }
    let mut correct = 0usize;
    for b in test.chunks(4096) {
        let z = net.forward(&rows(&x, 2 * c, b), b.len(), false)?;
        correct += z.iter().zip(b).filter(|(&zi, &r)| (zi > 0.0) == (y[r] > 0.5)).count();
    }
    Ok(correct as f64 / test.len().max(1) as f64)
}

/// Held-out S / C of a predictor of `target` (N, C) from `source` (N, C).
fn predictor_r2(source: &[f32], target: &[f32], c: usize, cfg: &IndependenceConfig, tag: u64) -> Result<f64> {
    let n = source.len() / c;
    let mut rng = Rng::derive(cfg.seed, &[0x5032, tag]);
    let mut all: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut all);
    let n_train = (n as f64 * cfg.train_fraction).round() as usize;
    let (train, test) = all.split_at(n_train.min(n));
    if test.len() < 2 {
        return Ok(f64::NAN);
    }
    let h = cfg.predictor_hidden;
    let mut dims = vec![c];
    dims.extend(std::iter::repeat_n(h, cfg.layers));
    dims.push(c);
    let mut net = Net::new(&dims, Activation::LeakyRelu, cfg.lr, cfg.seed.wrapping_add(tag))?;
    let be = CpuBackend;
    let mut order = train.to_vec();
    for _ in 0..cfg.epochs.max(1) {
        rng.shuffle(&mut order);
        for b in batches(&order, cfg.predictor_batch) {
            let m = b.len();
            let pred = be.upload(&net.forward(&rows(source, c, b), m, true)?)?;
            let tgt = be.upload(&rows(target, c, b))?;
            let s = R2Shape { n: m, c };
            let mut stats = be.alloc(s.stats_len())?;
            be.r2_score_fwd(s, &pred, &tgt, &mut stats, &mut NoReduce)?;
            let (mut dpred, mut dtgt) = (be.alloc(m * c)?, be.alloc(m * c)?);
            // Loss -S: the predictor maximises the correlation.
            be.r2_score_bwd(s, &pred, &tgt, &stats, -1.0, &mut dpred, &mut dtgt, &mut NoReduce)?;
            net.step(&be.to_host(&dpred)?)?;
        }
    }
    let m = test.len();
    let pred = be.upload(&net.forward(&rows(source, c, test), m, false)?)?;
    let tgt = be.upload(&rows(target, c, test))?;
    let s = R2Shape { n: m, c };
    let mut stats = be.alloc(s.stats_len())?;
    let score = be.r2_score_fwd(s, &pred, &tgt, &mut stats, &mut NoReduce)?;
    Ok(score as f64 / c as f64)
}

/// The metrics of test features (N, 2C): technical [0, C), biological [C, 2C).
pub fn independence(features: &[f32], c: usize, cfg: &IndependenceConfig) -> Result<Independence> {
    if c == 0 || !features.len().is_multiple_of(2 * c) {
        return Err(MfdError::Shape {
            op: "independence",
            msg: format!("{} values for 2C = {}", features.len(), 2 * c),
        });
    }
    let n = features.len() / (2 * c);
    if n < 8 {
        return Err(MfdError::other(format!("independence metrics need at least 8 tiles, got {n}")));
    }
    let tech_raw: Vec<f32> = features.chunks(2 * c).flat_map(|r| r[..c].iter().copied()).collect();
    let bio_raw: Vec<f32> = features.chunks(2 * c).flat_map(|r| r[c..].iter().copied()).collect();
    let corr = cross_correlation(&tech_raw, c, &bio_raw, c);
    let (tech, bio) = (standardise(&tech_raw, c), standardise(&bio_raw, c));
    Ok(Independence {
        shuffle_accuracy: shuffle_accuracy(&bio, &tech, c, cfg)?,
        r2_bio_from_tech: predictor_r2(&tech, &bio, c, cfg, 1)?,
        r2_tech_from_bio: predictor_r2(&bio, &tech, c, cfg, 2)?,
        corr_frobenius: corr.iter().map(|r| r * r).sum::<f64>().sqrt(),
        tiles: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IndependenceConfig {
        IndependenceConfig {
            epochs: 40,
            discriminator_hidden: 32,
            predictor_hidden: 32,
            lr: 1e-2,
            discriminator_batch: 128,
            predictor_batch: 128,
            ..Default::default()
        }
    }

    /// (N, 2C) features with tech = noise and bio = tech (dependent) or fresh noise (independent).
    fn features(n: usize, c: usize, dependent: bool) -> Vec<f32> {
        let mut rng = Rng::new(3);
        let mut f = Vec::with_capacity(n * 2 * c);
        for _ in 0..n {
            let tech: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
            let bio: Vec<f32> = if dependent {
                tech.iter().map(|&t| t + 0.1 * rng.normal() as f32).collect()
            } else {
                (0..c).map(|_| rng.normal() as f32).collect()
            };
            f.extend(tech);
            f.extend(bio);
        }
        f
    }

    #[test]
    fn dependent_halves_are_detected_and_independent_ones_are_not() {
        let (n, c) = (1500, 4);
        let dep = independence(&features(n, c, true), c, &cfg()).unwrap();
        let ind = independence(&features(n, c, false), c, &cfg()).unwrap();
        assert!(dep.r2_bio_from_tech > 0.8 && dep.r2_tech_from_bio > 0.8, "{dep:?}");
        assert!(ind.r2_bio_from_tech < 0.1 && ind.r2_tech_from_bio < 0.1, "{ind:?}");
        assert!(dep.shuffle_accuracy > 0.75, "{dep:?}");
        assert!((ind.shuffle_accuracy - 0.5).abs() < 0.08, "{ind:?}");
        assert!(dep.corr_frobenius > 1.9 && ind.corr_frobenius < 0.3, "{dep:?} {ind:?}");
        assert_eq!(dep.tiles, n);
    }

    #[test]
    fn too_few_tiles_is_an_error() {
        assert!(independence(&[0.0; 8], 2, &cfg()).is_err());
    }
}
