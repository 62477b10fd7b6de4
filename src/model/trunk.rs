//! The sequence trunk (mfd-spec.md 2.2): dinucleotide stem conv (k 15, bias) -> residual k1 block -> pool, six
//! tower stages (k5 block, residual k1 block, pool), dilated residual blocks, crop to one bin, pointwise k1 block
//! to 2C, and `features_bn`. Output: features (B, 2C), technical [0, C), biological [C, 2C).
//!
//! Written once against `Backend`. The trunk is a list of layers; `acts[i]` is the input of layer i and
//! `acts[i + 1]` its output, so every layer reads and writes buffers the trunk owns (acts[0] is unused: the stem
//! reads tokens). Backward walks the list in reverse with `grads[i]` shaped like `acts[i]`.

use crate::backend::{Backend, BnShape, CropShape, PoolShape, Reduce, StemShape};
use crate::error::Result;
use crate::model::block::{two_mut, ConvBlock};
use crate::model::grad_ready::GradReady;
use crate::model::params::{bn_tensors, BnIdx, Group, Init, ParamTable, Params};
use crate::model::spec::{TrunkSpec, DILATED_K, STEM_K, TOWER_K};

enum Layer<B: Backend> {
    Stem {
        w: usize,
        bias: usize,
    },
    Block(ConvBlock<B>),
    /// y = x + k1(k3_dilated(x)); `mid` is the k3 block's output (B, C, L), `d_mid` its gradient.
    Dilated {
        k3: ConvBlock<B>,
        k1: ConvBlock<B>,
        mid: Option<B::Buf>,
        d_mid: Option<B::Buf>,
    },
    Pool {
        argmax: Option<B::Bytes>,
    },
    Crop {
        crop: usize,
    },
    /// BatchNorm over (B, 2C) with L = 1.
    FeaturesBn {
        bn: BnIdx,
        save_mean: Option<B::Buf>,
        save_invstd: Option<B::Buf>,
    },
}

pub struct Trunk<B: Backend> {
    pub spec: TrunkSpec,
    layers: Vec<Layer<B>>,
    /// (channels, length) of acts[i] for i = 0..=layers.len(); acts[0] is (16, T): the one-hot input, never stored.
    dims: Vec<(usize, usize)>,
    batch: usize,
    acts: Vec<B::Buf>,
    grads: Vec<B::Buf>,
}

fn block<B: Backend>(
    t: &mut ParamTable,
    prefix: &str,
    c_in: usize,
    c_out: usize,
    k: usize,
    d: usize,
    residual: bool,
) -> ConvBlock<B> {
    let bn = t.add_bn(&format!("{prefix}.bn"), c_in, Group::Model);
    let w = t.add(format!("{prefix}.conv.weight"), &[c_out, c_in, k], Init::Uniform { fan_in: c_in * k }, Group::Model);
    ConvBlock::new(bn, w, c_in, c_out, k, d, residual)
}

impl<B: Backend> Trunk<B> {
    /// Register the trunk's tensors in `t` (canonical names of architecture.md section 7) and build the layers.
    pub fn new(spec: TrunkSpec, t: &mut ParamTable) -> Self {
        let ch = &spec.channels;
        let c = spec.c;
        let mut layers = Vec::new();
        let mut dims = vec![(16, spec.t)];
        let w =
            t.add("trunk.stem.conv.weight", &[ch[0], 16, STEM_K], Init::Uniform { fan_in: 16 * STEM_K }, Group::Model);
        let bias = t.add("trunk.stem.conv.bias", &[ch[0]], Init::Uniform { fan_in: 16 * STEM_K }, Group::Model);
        layers.push(Layer::Stem { w, bias });
        dims.push((ch[0], spec.t));
        layers.push(Layer::Block(block(t, "trunk.stem.res", ch[0], ch[0], 1, 1, true)));
        dims.push((ch[0], spec.t));
        layers.push(Layer::Pool { argmax: None });
        dims.push((ch[0], spec.t / 2));
        for l in 0..spec.tower_layers() {
            let len = spec.tower_len(l);
            layers.push(Layer::Block(block(t, &format!("trunk.tower.{l}.conv"), ch[l], ch[l + 1], TOWER_K, 1, false)));
            dims.push((ch[l + 1], len));
            layers.push(Layer::Block(block(t, &format!("trunk.tower.{l}.res"), ch[l + 1], ch[l + 1], 1, 1, true)));
            dims.push((ch[l + 1], len));
            layers.push(Layer::Pool { argmax: None });
            dims.push((ch[l + 1], len / 2));
        }
        for (l, &d) in spec.dilations.iter().enumerate() {
            let k3 = block(t, &format!("trunk.dilated.{l}.conv3"), c, c, DILATED_K, d, false);
            let k1 = block(t, &format!("trunk.dilated.{l}.conv1"), c, c, 1, 1, false);
            layers.push(Layer::Dilated { k3, k1, mid: None, d_mid: None });
            dims.push((c, spec.l_tower));
        }
        layers.push(Layer::Crop { crop: spec.crop });
        dims.push((c, spec.l_tower - 2 * spec.crop));
        layers.push(Layer::Block(block(t, "trunk.pointwise", c, 2 * c, 1, 1, false)));
        dims.push((2 * c, 1));
        let bn = t.add_bn("trunk.features_bn", 2 * c, Group::Model);
        layers.push(Layer::FeaturesBn { bn, save_mean: None, save_invstd: None });
        dims.push((2 * c, 1));
        Trunk { spec, layers, dims, batch: 0, acts: Vec::new(), grads: Vec::new() }
    }

    fn ensure_batch(&mut self, be: &B, b: usize) -> Result<()> {
        if self.batch == b {
            return Ok(());
        }
        self.acts.clear();
        self.grads.clear();
        for (i, &(c, l)) in self.dims.iter().enumerate() {
            // acts[0] (the one-hot input) is never materialised.
            let n = if i == 0 { 1 } else { b * c * l };
            self.acts.push(be.alloc(n)?);
            self.grads.push(be.alloc(n)?);
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let (c, l) = self.dims[i];
            match layer {
                Layer::Pool { argmax } => *argmax = Some(be.alloc_bytes(b * c * (l / 2))?),
                Layer::Dilated { mid, d_mid, .. } => {
                    *mid = Some(be.alloc(b * c * l)?);
                    *d_mid = Some(be.alloc(b * c * l)?);
                }
                Layer::FeaturesBn { save_mean, save_invstd, .. } => {
                    *save_mean = Some(be.alloc(c)?);
                    *save_invstd = Some(be.alloc(c)?);
                }
                _ => {}
            }
        }
        self.batch = b;
        Ok(())
    }

    /// features (B, 2C) of tokens (B, T); in train mode BatchNorms use (and update) batch statistics.
    pub fn forward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        tokens: &B::Bytes,
        b: usize,
        train: bool,
        red: &mut dyn Reduce,
    ) -> Result<&B::Buf> {
        self.ensure_batch(be, b)?;
        for i in 0..self.layers.len() {
            let (c_in, l_in) = self.dims[i];
            let (c_out, _) = self.dims[i + 1];
            let (before, after) = self.acts.split_at_mut(i + 1);
            let x = &before[i];
            let y = &mut after[0];
            match &mut self.layers[i] {
                Layer::Stem { w, bias } => {
                    let s = StemShape { b, t: self.spec.t, c_out, k: STEM_K };
                    be.stem_conv_fwd(s, tokens, &p.values[*w], &p.values[*bias], y)?;
                }
                Layer::Block(blk) => blk.forward(be, p, x, y, b, l_in, train, red)?,
                Layer::Dilated { k3, k1, mid, .. } => {
                    let mid = mid.as_mut().expect("allocated by ensure_batch");
                    k3.forward(be, p, x, mid, b, l_in, train, red)?;
                    k1.forward(be, p, mid, y, b, l_in, train, red)?;
                    be.axpy(1.0, x, y)?;
                }
                Layer::Pool { argmax } => {
                    be.max_pool_fwd(PoolShape { b, c: c_in, l: l_in }, x, y, argmax.as_mut().expect("allocated"))?;
                }
                Layer::Crop { crop } => be.crop_fwd(CropShape { b, c: c_in, l: l_in, crop: *crop }, x, y)?,
                Layer::FeaturesBn { bn, save_mean, save_invstd } => {
                    let s = BnShape { b, c: c_in, l: 1 };
                    let (gamma, beta, rmean, rvar) = bn_tensors(&mut p.values, *bn);
                    if train {
                        let (sm, si) =
                            (save_mean.as_mut().expect("allocated"), save_invstd.as_mut().expect("allocated"));
                        be.batch_norm_train_fwd(s, x, gamma, beta, rmean, rvar, sm, si, y, red)?;
                    } else {
                        be.batch_norm_eval_fwd(s, x, gamma, beta, rmean, rvar, y)?;
                    }
                }
            }
        }
        Ok(self.acts.last().expect("trunk has layers"))
    }

    /// The features of the last forward (B, 2C).
    pub fn features(&self) -> &B::Buf {
        self.acts.last().expect("forward before features")
    }

    /// Backward from d_features (B, 2C) through the last training-mode forward; accumulates parameter gradients.
    /// `hook` hears every trunk tensor once, as soon as its gradient is final: layers last to first, inside a
    /// layer in reverse registration order (so the whole walk is the reverse of registration).
    pub fn backward(
        &mut self,
        be: &B,
        p: &mut Params<B>,
        tokens: &B::Bytes,
        d_features: &B::Buf,
        red: &mut dyn Reduce,
        hook: &mut dyn GradReady<B>,
    ) -> Result<()> {
        let b = self.batch;
        let last = self.layers.len();
        be.copy(d_features, &mut self.grads[last])?;
        for i in (0..self.layers.len()).rev() {
            let (c_in, l_in) = self.dims[i];
            let (c_out, _) = self.dims[i + 1];
            let x = &self.acts[i];
            let (g_before, g_after) = self.grads.split_at_mut(i + 1);
            let dx = &mut g_before[i];
            let dy = &g_after[0];
            match &mut self.layers[i] {
                Layer::Stem { w, bias } => {
                    let s = StemShape { b, t: self.spec.t, c_out, k: STEM_K };
                    let (dw, dbias) = two_mut(&mut p.grads, *w, *bias);
                    be.stem_conv_bwd(s, tokens, dy, dw, dbias)?;
                    hook.ready(be, p, *bias)?;
                    hook.ready(be, p, *w)?;
                }
                Layer::Block(blk) => blk.backward(be, p, x, dy, dx, None, red, hook)?,
                Layer::Dilated { k3, k1, mid, d_mid } => {
                    let (mid, d_mid) = (mid.as_ref().expect("allocated"), d_mid.as_mut().expect("allocated"));
                    k1.backward(be, p, mid, dy, d_mid, None, red, hook)?;
                    // The layer's residual path (x + k1(k3(x))) enters dx inside k3's backward.
                    k3.backward(be, p, x, d_mid, dx, Some(dy), red, hook)?;
                }
                Layer::Pool { argmax } => {
                    be.max_pool_bwd(PoolShape { b, c: c_in, l: l_in }, dy, argmax.as_ref().expect("allocated"), dx)?;
                }
                Layer::Crop { crop } => be.crop_bwd(CropShape { b, c: c_in, l: l_in, crop: *crop }, dy, dx)?,
                Layer::FeaturesBn { bn, save_mean, save_invstd } => {
                    let s = BnShape { b, c: c_in, l: 1 };
                    let (dgamma, dbeta) = two_mut(&mut p.grads, bn.gamma, bn.beta);
                    let (sm, si) = (save_mean.as_ref().expect("allocated"), save_invstd.as_ref().expect("allocated"));
                    be.batch_norm_bwd(s, x, dy, &p.values[bn.gamma], sm, si, dx, dgamma, dbeta, red)?;
                    hook.ready(be, p, bn.beta)?;
                    hook.ready(be, p, bn.gamma)?;
                }
            }
        }
        Ok(())
    }
}
