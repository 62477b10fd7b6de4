//! The trunk in evaluation mode on a soft one-hot input (B, 16, T), forward and backward to the input, for
//! Integrated Gradients. The model's own trunk reads u8 tokens (the stem is a gather of weight columns) and its
//! backward is the training-mode one (batch statistics); IG needs d(feature)/d(one-hot input) at interpolated,
//! non-one-hot inputs with running statistics, so this file runs the same layer list (mfd-spec.md 2.2, the names
//! of architecture.md 7) with the stem as a dense Conv1d(16 -> c0, K = 15) + bias.
//!
//! Key decision: a host-side re-run of the layer list over the CPU backend's ops (conv, GELU, pool, crop, eval
//! BatchNorm) plus the one op the backend lacks, the eval-mode BatchNorm backward (a per-channel scale
//! gamma / sqrt(running_var + eps)). No new Backend method. On a one-hot input its features equal
//! `Mfd::eval_forward`'s (tested), and B interpolation steps run as one batch (eval BatchNorm is per sample).

use crate::backend::cpu::CpuBackend;
use crate::backend::{Activation, Backend, BnShape, Conv1dShape, CropShape, PoolShape, BN_EPS};
use crate::error::{MfdError, Result};
use crate::model::params::{BnIdx, ParamTable};
use crate::model::spec::{TrunkSpec, DILATED_K, STEM_K, TOWER_K};

#[derive(Debug, Clone, Copy)]
struct Blk {
    bn: BnIdx,
    w: usize,
    c_in: usize,
    c_out: usize,
    k: usize,
    d: usize,
    residual: bool,
}

#[derive(Debug, Clone, Copy)]
enum Layer {
    Stem { w: usize, bias: usize },
    Block(Blk),
    Dilated(Blk, Blk),
    Pool,
    Crop(usize),
    FeaturesBn(BnIdx),
}

/// Activations saved by the forward, per layer.
pub enum Saved {
    Stem,
    /// normed and activated inputs of the conv.
    Block {
        normed: Vec<f32>,
        act: Vec<f32>,
    },
    Dilated {
        n3: Vec<f32>,
        a3: Vec<f32>,
        mid: Vec<f32>,
        n1: Vec<f32>,
        a1: Vec<f32>,
    },
    Pool {
        argmax: Vec<u8>,
    },
    Crop,
    FeaturesBn,
}

pub struct SoftTrunk<'a> {
    values: &'a [Vec<f32>],
    spec: TrunkSpec,
    layers: Vec<Layer>,
    /// (channels, length) of the input of layer i; dims[layers.len()] is the output (2C, 1).
    dims: Vec<(usize, usize)>,
}

fn idx(table: &ParamTable, name: &str) -> Result<usize> {
    table
        .specs
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| MfdError::other(format!("IG trunk: the model has no tensor '{name}'")))
}

fn bn(table: &ParamTable, prefix: &str) -> Result<BnIdx> {
    Ok(BnIdx {
        gamma: idx(table, &format!("{prefix}.weight"))?,
        beta: idx(table, &format!("{prefix}.bias"))?,
        mean: idx(table, &format!("{prefix}.running_mean"))?,
        var: idx(table, &format!("{prefix}.running_var"))?,
    })
}

#[allow(clippy::too_many_arguments)]
fn blk(t: &ParamTable, p: &str, c_in: usize, c_out: usize, k: usize, d: usize, residual: bool) -> Result<Blk> {
    Ok(Blk { bn: bn(t, &format!("{p}.bn"))?, w: idx(t, &format!("{p}.conv.weight"))?, c_in, c_out, k, d, residual })
}

impl<'a> SoftTrunk<'a> {
    /// The layer list of `Trunk::new` over the host parameter `values` of `table`.
    pub fn new(spec: TrunkSpec, table: &ParamTable, values: &'a [Vec<f32>]) -> Result<Self> {
        let ch = spec.channels.clone();
        let c = spec.c;
        let mut layers =
            vec![Layer::Stem { w: idx(table, "trunk.stem.conv.weight")?, bias: idx(table, "trunk.stem.conv.bias")? }];
        let mut dims = vec![(16, spec.t), (ch[0], spec.t)];
        layers.push(Layer::Block(blk(table, "trunk.stem.res", ch[0], ch[0], 1, 1, true)?));
        dims.push((ch[0], spec.t));
        layers.push(Layer::Pool);
        dims.push((ch[0], spec.t / 2));
        for l in 0..spec.tower_layers() {
            let len = spec.tower_len(l);
            let p = format!("trunk.tower.{l}");
            layers.push(Layer::Block(blk(table, &format!("{p}.conv"), ch[l], ch[l + 1], TOWER_K, 1, false)?));
            dims.push((ch[l + 1], len));
            layers.push(Layer::Block(blk(table, &format!("{p}.res"), ch[l + 1], ch[l + 1], 1, 1, true)?));
            dims.push((ch[l + 1], len));
            layers.push(Layer::Pool);
            dims.push((ch[l + 1], len / 2));
        }
        for (l, &d) in spec.dilations.iter().enumerate() {
            let k3 = blk(table, &format!("trunk.dilated.{l}.conv3"), c, c, DILATED_K, d, false)?;
            let k1 = blk(table, &format!("trunk.dilated.{l}.conv1"), c, c, 1, 1, false)?;
            layers.push(Layer::Dilated(k3, k1));
            dims.push((c, spec.l_tower));
        }
        layers.push(Layer::Crop(spec.crop));
        dims.push((c, spec.l_tower - 2 * spec.crop));
        layers.push(Layer::Block(blk(table, "trunk.pointwise", c, 2 * c, 1, 1, false)?));
        dims.push((2 * c, 1));
        layers.push(Layer::FeaturesBn(bn(table, "trunk.features_bn")?));
        dims.push((2 * c, 1));
        Ok(SoftTrunk { values, spec, layers, dims })
    }

    fn bn_fwd(&self, b: usize, c: usize, l: usize, bn: BnIdx, x: &[f32]) -> Result<Vec<f32>> {
        let v = self.values;
        let mut y = vec![0f32; x.len()];
        CpuBackend.batch_norm_eval_fwd(
            BnShape { b, c, l },
            &x.to_vec(),
            &v[bn.gamma],
            &v[bn.beta],
            &v[bn.mean],
            &v[bn.var],
            &mut y,
        )?;
        Ok(y)
    }

    /// dx = dy * gamma / sqrt(running_var + eps), per channel.
    fn bn_bwd(&self, c: usize, l: usize, bn: BnIdx, dy: &[f32]) -> Vec<f32> {
        let v = self.values;
        let scale: Vec<f32> =
            (0..c).map(|k| (v[bn.gamma][k] as f64 / (v[bn.var][k] as f64 + BN_EPS).sqrt()) as f32).collect();
        let mut dx = dy.to_vec();
        for (row, r) in dx.chunks_mut(l).enumerate() {
            r.iter_mut().for_each(|g| *g *= scale[row % c]);
        }
        dx
    }

    fn block_fwd(&self, b: usize, l: usize, k: &Blk, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let normed = self.bn_fwd(b, k.c_in, l, k.bn, x)?;
        let mut act = vec![0f32; normed.len()];
        CpuBackend.activation_fwd(Activation::Gelu, &normed, &mut act)?;
        let mut y = vec![0f32; b * k.c_out * l];
        let s = Conv1dShape { b, c_in: k.c_in, c_out: k.c_out, l, k: k.k, dilation: k.d };
        CpuBackend.conv1d_fwd(s, &act, &self.values[k.w], &mut y)?;
        if k.residual {
            y.iter_mut().zip(x).for_each(|(a, b)| *a += b);
        }
        Ok((y, normed, act))
    }

    fn block_bwd(&self, b: usize, l: usize, k: &Blk, normed: &[f32], act: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
        let s = Conv1dShape { b, c_in: k.c_in, c_out: k.c_out, l, k: k.k, dilation: k.d };
        let mut d_act = vec![0f32; act.len()];
        let mut dw = vec![0f32; self.values[k.w].len()];
        CpuBackend.conv1d_bwd(s, &act.to_vec(), &self.values[k.w], &dy.to_vec(), &mut d_act, &mut dw)?;
        let mut d_normed = vec![0f32; act.len()];
        CpuBackend.activation_bwd(Activation::Gelu, &normed.to_vec(), &d_act, &mut d_normed)?;
        let mut dx = self.bn_bwd(k.c_in, l, k.bn, &d_normed);
        if k.residual {
            dx.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
        }
        Ok(dx)
    }

    /// Features (B, 2C) of soft inputs x (B, 16, T), and what the backward needs.
    pub fn forward(&self, x: &[f32], b: usize) -> Result<(Vec<f32>, Vec<Saved>)> {
        let t = self.spec.t;
        if x.len() != b * 16 * t {
            return Err(MfdError::Shape {
                op: "soft_trunk",
                msg: format!("{} inputs for B = {b}, 16 x T = {t}", x.len()),
            });
        }
        let mut cur = x.to_vec();
        let mut saved = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let (c_in, l) = self.dims[i];
            let (c_out, _) = self.dims[i + 1];
            let (next, s) = match layer {
                Layer::Stem { w, bias } => {
                    let s = Conv1dShape { b, c_in: 16, c_out, l, k: STEM_K, dilation: 1 };
                    let mut y = vec![0f32; b * c_out * l];
                    CpuBackend.conv1d_fwd(s, &cur, &self.values[*w], &mut y)?;
                    for (row, r) in y.chunks_mut(l).enumerate() {
                        let bv = self.values[*bias][row % c_out];
                        r.iter_mut().for_each(|v| *v += bv);
                    }
                    (y, Saved::Stem)
                }
                Layer::Block(k) => {
                    let (y, normed, act) = self.block_fwd(b, l, k, &cur)?;
                    (y, Saved::Block { normed, act })
                }
                Layer::Dilated(k3, k1) => {
                    let (mid, n3, a3) = self.block_fwd(b, l, k3, &cur)?;
                    let (mut y, n1, a1) = self.block_fwd(b, l, k1, &mid)?;
                    y.iter_mut().zip(&cur).for_each(|(a, b)| *a += b);
                    (y, Saved::Dilated { n3, a3, mid, n1, a1 })
                }
                Layer::Pool => {
                    let s = PoolShape { b, c: c_in, l };
                    let mut y = vec![0f32; b * c_in * s.l_out()];
                    let mut argmax = vec![0u8; y.len()];
                    CpuBackend.max_pool_fwd(s, &cur, &mut y, &mut argmax)?;
                    (y, Saved::Pool { argmax })
                }
                Layer::Crop(crop) => {
                    let s = CropShape { b, c: c_in, l, crop: *crop };
                    let mut y = vec![0f32; b * c_in * s.l_out()];
                    CpuBackend.crop_fwd(s, &cur, &mut y)?;
                    (y, Saved::Crop)
                }
                Layer::FeaturesBn(bn) => (self.bn_fwd(b, c_in, 1, *bn, &cur)?, Saved::FeaturesBn),
            };
            saved.push(s);
            cur = next;
        }
        Ok((cur, saved))
    }

    /// d(sum of d_features * features)/dx: the input gradient (B, 16, T) of the last forward.
    pub fn backward(&self, saved: &[Saved], d_features: &[f32], b: usize) -> Result<Vec<f32>> {
        let mut g = d_features.to_vec();
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let (c_in, l) = self.dims[i];
            let (c_out, _) = self.dims[i + 1];
            g = match (layer, &saved[i]) {
                (Layer::Stem { w, .. }, Saved::Stem) => {
                    let s = Conv1dShape { b, c_in: 16, c_out, l, k: STEM_K, dilation: 1 };
                    let mut dx = vec![0f32; b * 16 * l];
                    let mut dw = vec![0f32; self.values[*w].len()];
                    // x is only needed for dw, which is discarded: pass zeros of the right length.
                    CpuBackend.conv1d_bwd(s, &vec![0f32; b * 16 * l], &self.values[*w], &g, &mut dx, &mut dw)?;
                    dx
                }
                (Layer::Block(k), Saved::Block { normed, act }) => self.block_bwd(b, l, k, normed, act, &g)?,
                (Layer::Dilated(k3, k1), Saved::Dilated { n3, a3, mid: _, n1, a1 }) => {
                    let d_mid = self.block_bwd(b, l, k1, n1, a1, &g)?;
                    let mut dx = self.block_bwd(b, l, k3, n3, a3, &d_mid)?;
                    dx.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
                    dx
                }
                (Layer::Pool, Saved::Pool { argmax }) => {
                    let mut dx = vec![0f32; b * c_in * l];
                    CpuBackend.max_pool_bwd(PoolShape { b, c: c_in, l }, &g, &argmax.clone(), &mut dx)?;
                    dx
                }
                (Layer::Crop(crop), Saved::Crop) => {
                    let mut dx = vec![0f32; b * c_in * l];
                    CpuBackend.crop_bwd(CropShape { b, c: c_in, l, crop: *crop }, &g, &mut dx)?;
                    dx
                }
                (Layer::FeaturesBn(bn), Saved::FeaturesBn) => self.bn_bwd(c_in, 1, *bn, &g),
                _ => return Err(MfdError::other("soft trunk: saved activations do not match the layers")),
            };
        }
        Ok(g)
    }
}

/// One-hot (16, T) of tokens (T,); N tokens are all-zero columns.
pub fn one_hot(tokens: &[u8]) -> Vec<f32> {
    let t = tokens.len();
    let mut x = vec![0f32; 16 * t];
    for (i, &k) in tokens.iter().enumerate() {
        if k < 16 {
            x[k as usize * t + i] = 1.0;
        }
    }
    x
}

/// Integrated Gradients of feature `j` at input x (16, T) from `baseline` (16, T) with `steps` midpoint-rule
/// steps (one batch): attributions (16, T) = (x - x0) * mean_k grad f_j(x0 + a_k (x - x0)), a_k = (k + 1/2)/steps.
/// Also returns f_j(x) and f_j(x0), whose difference the attributions sum to as steps grow (completeness).
pub fn integrated_gradients(
    trunk: &SoftTrunk,
    x: &[f32],
    baseline: &[f32],
    j: usize,
    steps: usize,
) -> Result<(Vec<f32>, f32, f32)> {
    let n = x.len();
    let d = 2 * trunk.spec.c;
    let steps = steps.max(1);
    let mut path = Vec::with_capacity((steps + 2) * n);
    for k in 0..steps {
        let a = (k as f32 + 0.5) / steps as f32;
        path.extend(x.iter().zip(baseline).map(|(&xi, &bi)| bi + a * (xi - bi)));
    }
    path.extend_from_slice(x);
    path.extend_from_slice(baseline);
    let b = steps + 2;
    let (f, saved) = trunk.forward(&path, b)?;
    let mut df = vec![0f32; b * d];
    for k in 0..steps {
        df[k * d + j] = 1.0;
    }
    let grad = trunk.backward(&saved, &df, b)?;
    let mut attr = vec![0f64; n];
    for k in 0..steps {
        for (a, &g) in attr.iter_mut().zip(&grad[k * n..(k + 1) * n]) {
            *a += g as f64;
        }
    }
    let attr = attr
        .iter()
        .zip(x.iter().zip(baseline))
        .map(|(&s, (&xi, &bi))| ((xi - bi) as f64 * s / steps as f64) as f32)
        .collect();
    Ok((attr, f[steps * d + j], f[(steps + 1) * d + j]))
}
