//! The whole MFD model: trunk -> features (B, 2C) -> hypernetwork head -> logits, plus the two adversarial
//! predictors and the independence terms (mfd-spec.md 2-4). This file owns the per-batch buffers and the forward
//! and backward passes of the model loss and of the adversary loss; the step schedule and optimisers live in
//! `train::step`.

use crate::backend::{Activation, Backend, ChannelCopy, CorrShape, HeadShape, R2Shape, Reduce};
use crate::config::{AdversaryConfig, ModelConfig};
use crate::error::Result;
use crate::model::grad_ready::{GradReady, NoHook};
use crate::model::hypernet::HyperNet;
use crate::model::metadata::{MappingConfig, MetadataTable};
use crate::model::mlp::Mlp;
use crate::model::params::{Group, Init, ParamTable, Params};
use crate::model::spec::TrunkSpec;
use crate::model::trunk::Trunk;

/// Scalar terms of one forward.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    pub bce: f32,
    /// ||R||_F of the standardised technical vs biological features.
    pub corr: f32,
    /// total_R2 of predicting the biological features from the technical ones, and the reverse.
    pub r2_bio: f32,
    pub r2_tech: f32,
    /// The independence penalty as the model defines it: R2_bio + R2_tech, plus ||R||_F with `cov_and_adv` or
    /// without adversaries (mfd-spec.md 4.3). The loss is BCE + lambda * indep (`loss_at`).
    pub indep: f32,
    /// BCE + lambda * indep at the lambda the backward ran with.
    pub loss: f32,
}

impl LossTerms {
    /// The model loss at `lambda`: a data-parallel backward runs with lambda x W, the reported loss uses lambda.
    pub fn loss_at(&self, lambda: f64) -> f32 {
        self.bce + lambda as f32 * self.indep
    }
}

pub struct Mfd<B: Backend> {
    pub params: Params<B>,
    pub trunk: Trunk<B>,
    pub hyper: HyperNet<B>,
    pub head_bias: usize,
    /// Predicts biological features from technical ones (`adversary.bio_from_tech`), and the reverse. With
    /// `shared_predictor` the second is a handle on the first's parameters (the reference's behaviour).
    pub adv_bio: Option<Mlp<B>>,
    pub adv_tech: Option<Mlp<B>>,
    pub c: usize,
    pub o: usize,
    pub row_bytes: usize,
    /// `adversary.reuse_model_backward`: the model backward also leaves the adversary's gradient (see
    /// `adversary_loss_backward`); false runs the reference's literal schedule.
    pub reuse_adversary_backward: bool,
    /// The adversary loss -(R2_bio + R2_tech) of the last model forward when its gradient is already in the
    /// adversaries' gradient tensors (reuse), until `adversary_loss_backward` takes it.
    adversary_ready: Option<f32>,
    bufs: Option<Buffers<B>>,
}

struct Buffers<B: Backend> {
    b: usize,
    w_tech: B::Buf,
    w_bio: B::Buf,
    probs: B::Buf,
    dz: B::Buf,
    f_tech: B::Buf,
    f_bio: B::Buf,
    r: B::Buf,
    corr_stats: B::Buf,
    r2_stats_bio: B::Buf,
    r2_stats_tech: B::Buf,
    d_features: B::Buf,
    d_f_tech: B::Buf,
    d_f_bio: B::Buf,
    scratch_a: B::Buf,
    scratch_b: B::Buf,
    dw_tech: B::Buf,
    dw_bio: B::Buf,
    logit_tech: B::Buf,
    logit_bio: B::Buf,
}

impl<B: Backend> Mfd<B> {
    /// Build the model for `o` classes; returns it with the parameter table's host initial values applied.
    pub fn new(
        be: &B,
        mcfg: &ModelConfig,
        acfg: &AdversaryConfig,
        mapping: &MappingConfig,
        table: &MetadataTable,
        row_bytes: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::build(be, mcfg, acfg, mapping, table, row_bytes, seed, None)
    }

    /// As `new`, for the model a checkpoint's stored config describes: every tensor's shape is checked against
    /// the checkpoint's header before anything of the model's size is allocated.
    #[allow(clippy::too_many_arguments)]
    pub fn for_checkpoint(
        be: &B,
        mcfg: &ModelConfig,
        acfg: &AdversaryConfig,
        mapping: &MappingConfig,
        table: &MetadataTable,
        row_bytes: usize,
        seed: u64,
        checkpoint: &std::path::Path,
    ) -> Result<Self> {
        Self::build(be, mcfg, acfg, mapping, table, row_bytes, seed, Some(checkpoint))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        be: &B,
        mcfg: &ModelConfig,
        acfg: &AdversaryConfig,
        mapping: &MappingConfig,
        table: &MetadataTable,
        row_bytes: usize,
        seed: u64,
        checkpoint: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut t = ParamTable::default();
        let spec = TrunkSpec::new(mcfg);
        let c = spec.c;
        let trunk = Trunk::new(spec, &mut t);
        let hyper = if mcfg.metadata {
            HyperNet::new(be, &mut t, mapping, table, c)?
        } else {
            HyperNet::free(be, &mut t, table.num_classes(), c)?
        };
        let o = table.num_classes();
        let head_bias = t.add("head.bias", &[o], Init::Const(0.0), Group::Model);
        let (adv_bio, adv_tech) = if acfg.enabled {
            let dims: Vec<usize> = std::iter::once(c)
                .chain(std::iter::repeat_n(acfg.hidden, acfg.layers))
                .chain(std::iter::once(c))
                .collect();
            let bio = Mlp::new(&mut t, "adversary.bio_from_tech", &dims, true, Activation::LeakyRelu, Group::Adversary);
            let tech = if acfg.shared_predictor {
                // The reference builds the second predictor too (it is in the optimiser) but never calls it.
                let _unused = Mlp::<B>::new(
                    &mut t,
                    "adversary.tech_from_bio",
                    &dims,
                    true,
                    Activation::LeakyRelu,
                    Group::Adversary,
                );
                bio.share()
            } else {
                Mlp::new(&mut t, "adversary.tech_from_bio", &dims, true, Activation::LeakyRelu, Group::Adversary)
            };
            (Some(bio), Some(tech))
        } else {
            (None, None)
        };
        if let Some(ck) = checkpoint {
            crate::train::checkpoint::check_shapes(ck, &t)?;
        }
        let host = t.init_host(seed);
        let params = Params::new(be, t, &host)?;
        Ok(Mfd {
            params,
            trunk,
            hyper,
            head_bias,
            adv_bio,
            adv_tech,
            c,
            o,
            row_bytes,
            reuse_adversary_backward: acfg.reuse_model_backward,
            adversary_ready: None,
            bufs: None,
        })
    }

    fn ensure_buffers(&mut self, be: &B, b: usize) -> Result<()> {
        if self.bufs.as_ref().is_some_and(|x| x.b == b) {
            return Ok(());
        }
        let (c, o) = (self.c, self.o);
        self.bufs = Some(Buffers {
            b,
            w_tech: be.alloc(o * c)?,
            w_bio: be.alloc(o * c)?,
            probs: be.alloc(b * o)?,
            dz: be.alloc(b * o)?,
            f_tech: be.alloc(b * c)?,
            f_bio: be.alloc(b * c)?,
            r: be.alloc(c * c)?,
            corr_stats: be.alloc(CorrShape { n: b, c_a: c, c_b: c }.stats_len())?,
            r2_stats_bio: be.alloc(R2Shape { n: b, c }.stats_len())?,
            r2_stats_tech: be.alloc(R2Shape { n: b, c }.stats_len())?,
            d_features: be.alloc(b * 2 * c)?,
            d_f_tech: be.alloc(b * c)?,
            d_f_bio: be.alloc(b * c)?,
            scratch_a: be.alloc(b * c)?,
            scratch_b: be.alloc(b * c)?,
            dw_tech: be.alloc(o * c)?,
            dw_bio: be.alloc(o * c)?,
            logit_tech: be.alloc(b * o)?,
            logit_bio: be.alloc(b * o)?,
        });
        Ok(())
    }

    fn head_shape(&self, b: usize) -> HeadShape {
        HeadShape { b, c: self.c, o: self.o, row_bytes: self.row_bytes }
    }

    /// Hypernetworks, then the trunk, then the head; splits the features into halves.
    fn forward_features(
        &mut self,
        be: &B,
        tokens: &B::Bytes,
        b: usize,
        train: bool,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.ensure_buffers(be, b)?;
        let bufs = self.bufs.as_mut().expect("ensured");
        let w = self.hyper.tech.forward(be, &mut self.params)?;
        be.copy(w, &mut bufs.w_tech)?;
        let w = self.hyper.bio.forward(be, &mut self.params)?;
        be.copy(w, &mut bufs.w_bio)?;
        let f = self.trunk.forward(be, &mut self.params, tokens, b, train, red)?;
        let c = self.c;
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: 2 * c, src_off: 0, c_dst: c, dst_off: 0, n: c },
            f,
            &mut bufs.f_tech,
            false,
        )?;
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: 2 * c, src_off: c, c_dst: c, dst_off: 0, n: c },
            f,
            &mut bufs.f_bio,
            false,
        )?;
        Ok(())
    }

    /// Forward and backward of the model loss BCE + lambda * (R2_bio + R2_tech [+ ||R||_F]) in training mode.
    /// Accumulates gradients of every model parameter (and, as a side effect, of the adversaries, which the
    /// caller zeroes before the adversary step). `use_corr`: whether ||R||_F is part of the penalty.
    pub fn model_loss_backward(
        &mut self,
        be: &B,
        tokens: &B::Bytes,
        labels: &B::Bytes,
        b: usize,
        lambda: f32,
        use_corr: bool,
        red: &mut dyn Reduce,
    ) -> Result<LossTerms> {
        self.model_loss_backward_hooked(be, tokens, labels, b, lambda, use_corr, red, &mut NoHook)
    }

    /// `model_loss_backward` telling `hook` about every model-group tensor once, as soon as its gradient is final
    /// (`grad_ready` gives the order: the reverse of registration). The adversaries' gradients, a side effect
    /// here, are not announced. Values are those of `model_loss_backward` whatever the hook does, as long as it
    /// only reads gradients.
    pub fn model_loss_backward_hooked(
        &mut self,
        be: &B,
        tokens: &B::Bytes,
        labels: &B::Bytes,
        b: usize,
        lambda: f32,
        use_corr: bool,
        red: &mut dyn Reduce,
        hook: &mut dyn GradReady<B>,
    ) -> Result<LossTerms> {
        self.forward_features(be, tokens, b, true, red)?;
        let reuse = self.reuse_adversary_backward && self.adv_bio.is_some();
        self.adversary_ready = None;
        if reuse {
            self.params.zero_grads(be, Group::Adversary)?;
        }
        let hs = self.head_shape(b);
        let (c, n) = (self.c, b);
        let bufs = self.bufs.as_mut().expect("ensured");
        let p = &mut self.params;
        let features = self.trunk.features();
        let bce = be.head_bce_fwd(
            hs,
            features,
            &bufs.w_tech,
            &bufs.w_bio,
            &p.values[self.head_bias],
            labels,
            &mut bufs.probs,
        )?;
        let cs = CorrShape { n, c_a: c, c_b: c };
        let corr = be.corr_norm_fwd(cs, &bufs.f_tech, &bufs.f_bio, &mut bufs.r, &mut bufs.corr_stats, red)?;
        let rs = R2Shape { n, c };
        let (mut r2_bio, mut r2_tech) = (0.0, 0.0);
        if let (Some(ab), Some(at)) = (self.adv_bio.as_mut(), self.adv_tech.as_mut()) {
            let pred = ab.forward(be, p, &bufs.f_tech, n, true, red)?;
            r2_bio = be.r2_score_fwd(rs, pred, &bufs.f_bio, &mut bufs.r2_stats_bio, red)?;
            let pred = at.forward(be, p, &bufs.f_bio, n, true, red)?;
            r2_tech = be.r2_score_fwd(rs, pred, &bufs.f_tech, &mut bufs.r2_stats_tech, red)?;
        }
        let adv = self.adv_bio.is_some();
        let indep = r2_bio + r2_tech + if use_corr || !adv { corr } else { 0.0 };
        let loss = bce + lambda * indep;

        // ---- backward ----
        be.zero(&mut bufs.dw_tech)?;
        be.zero(&mut bufs.dw_bio)?;
        let dbias = &mut p.grads[self.head_bias];
        be.head_bce_bwd(
            hs,
            features,
            &bufs.w_tech,
            &bufs.w_bio,
            &bufs.probs,
            labels,
            &mut bufs.dz,
            &mut bufs.d_features,
            &mut bufs.dw_tech,
            &mut bufs.dw_bio,
            dbias,
        )?;
        hook.ready(be, p, self.head_bias)?;
        // dW of both groups is final now: back-propagate the hypernetworks before the trunk, so their gradient
        // buckets can be reduced while the trunk's backward runs (tech first: reverse registration order).
        self.hyper.tech.backward(be, p, &bufs.dw_tech, hook)?;
        self.hyper.bio.backward(be, p, &bufs.dw_bio, hook)?;
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: 2 * c, src_off: 0, c_dst: c, dst_off: 0, n: c },
            &bufs.d_features,
            &mut bufs.d_f_tech,
            false,
        )?;
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: 2 * c, src_off: c, c_dst: c, dst_off: 0, n: c },
            &bufs.d_features,
            &mut bufs.d_f_bio,
            false,
        )?;
        if lambda != 0.0 && (use_corr || !adv) {
            be.corr_norm_bwd(
                cs,
                &bufs.f_tech,
                &bufs.f_bio,
                &bufs.r,
                &bufs.corr_stats,
                lambda,
                &mut bufs.scratch_a,
                &mut bufs.scratch_b,
                red,
            )?;
            be.axpy(1.0, &bufs.scratch_a, &mut bufs.d_f_tech)?;
            be.axpy(1.0, &bufs.scratch_b, &mut bufs.d_f_bio)?;
        }
        if let (Some(ab), Some(at)) = (self.adv_bio.as_mut(), self.adv_tech.as_mut()) {
            // Literal: back-propagate lambda * R2 (the predictors' gradients are a by-product, discarded by the
            // adversary step). Reuse: back-propagate -R2, the adversary loss, so the predictors' gradients are the
            // adversary step's own, and add -lambda times the feature gradients to the model's.
            let (scale, to_features) = if reuse { (-1.0, -lambda) } else { (lambda, 1.0) };
            if lambda != 0.0 || reuse {
                let need_dx = lambda != 0.0;
                // R2_tech: prediction at(f_bio) against the target f_tech; gradients reach both feature halves.
                be.r2_score_bwd(
                    rs,
                    at.output(),
                    &bufs.f_tech,
                    &bufs.r2_stats_tech,
                    scale,
                    &mut bufs.scratch_a,
                    &mut bufs.scratch_b,
                    red,
                )?;
                let dx = at.backward(be, p, &bufs.scratch_a, need_dx, red)?;
                if need_dx {
                    be.axpy(to_features, &bufs.scratch_b, &mut bufs.d_f_tech)?;
                    be.axpy(to_features, dx, &mut bufs.d_f_bio)?;
                }
                be.r2_score_bwd(
                    rs,
                    ab.output(),
                    &bufs.f_bio,
                    &bufs.r2_stats_bio,
                    scale,
                    &mut bufs.scratch_a,
                    &mut bufs.scratch_b,
                    red,
                )?;
                let dx = ab.backward(be, p, &bufs.scratch_a, need_dx, red)?;
                if need_dx {
                    be.axpy(to_features, &bufs.scratch_b, &mut bufs.d_f_bio)?;
                    be.axpy(to_features, dx, &mut bufs.d_f_tech)?;
                }
            }
        }
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: c, src_off: 0, c_dst: 2 * c, dst_off: 0, n: c },
            &bufs.d_f_tech,
            &mut bufs.d_features,
            false,
        )?;
        be.channel_copy(
            ChannelCopy { b, l: 1, c_src: c, src_off: 0, c_dst: 2 * c, dst_off: c, n: c },
            &bufs.d_f_bio,
            &mut bufs.d_features,
            false,
        )?;
        self.trunk.backward(be, p, tokens, &bufs.d_features, red, hook)?;
        if reuse {
            self.adversary_ready = Some(-(r2_bio + r2_tech));
        }
        Ok(LossTerms { bce, corr, r2_bio, r2_tech, indep, loss })
    }
}

/// Host copies of one evaluation forward.
#[derive(Debug, Clone, Default)]
pub struct EvalOut {
    /// (B, O) probabilities sigmoid(logit_tech + logit_bio + b).
    pub probs: Vec<f32>,
    /// (B, 2C) features after features_bn: technical [0, C), biological [C, 2C).
    pub features: Vec<f32>,
    /// (B, O) logits of each half, without the bias.
    pub logit_tech: Vec<f32>,
    pub logit_bio: Vec<f32>,
    pub bce: f32,
    pub corr: f32,
}

impl<B: Backend> Mfd<B> {
    /// Adversary step: the predictors' gradients (replacing what is in them) of loss_adv = -(R2_bio + R2_tech) on
    /// the features of the last model forward (detached: no gradient reaches the trunk); returns loss_adv.
    ///
    /// Literal schedule (the reference): forward both predictors again in training mode and back-propagate. With
    /// reuse, the model backward already back-propagated -R2 through the same predictor weights on the same
    /// features, so the gradients are in place: only the second BatchNorm running-statistics update of the
    /// literal forward is repeated (from the cached layer inputs), so that the running statistics match too.
    pub fn adversary_loss_backward(&mut self, be: &B, b: usize, red: &mut dyn Reduce) -> Result<f32> {
        let (Some(ab), Some(at)) = (self.adv_bio.as_mut(), self.adv_tech.as_mut()) else { return Ok(0.0) };
        let p = &mut self.params;
        if let Some(loss) = self.adversary_ready.take() {
            ab.repeat_running_stats(be, p, red)?;
            at.repeat_running_stats(be, p, red)?;
            return Ok(loss);
        }
        p.zero_grads(be, Group::Adversary)?;
        let bufs = self.bufs.as_mut().expect("model forward before the adversary step");
        let rs = R2Shape { n: b, c: self.c };
        let pred = ab.forward(be, p, &bufs.f_tech, b, true, red)?;
        let s_bio = be.r2_score_fwd(rs, pred, &bufs.f_bio, &mut bufs.r2_stats_bio, red)?;
        let pred = at.forward(be, p, &bufs.f_bio, b, true, red)?;
        let s_tech = be.r2_score_fwd(rs, pred, &bufs.f_tech, &mut bufs.r2_stats_tech, red)?;
        be.r2_score_bwd(
            rs,
            at.output(),
            &bufs.f_tech,
            &bufs.r2_stats_tech,
            -1.0,
            &mut bufs.scratch_a,
            &mut bufs.scratch_b,
            red,
        )?;
        at.backward(be, p, &bufs.scratch_a, false, red)?;
        be.r2_score_bwd(
            rs,
            ab.output(),
            &bufs.f_bio,
            &bufs.r2_stats_bio,
            -1.0,
            &mut bufs.scratch_a,
            &mut bufs.scratch_b,
            red,
        )?;
        ab.backward(be, p, &bufs.scratch_a, false, red)?;
        Ok(-(s_bio + s_tech))
    }

    /// Evaluation forward (running BatchNorm statistics, no gradients).
    pub fn eval_forward(&mut self, be: &B, tokens: &B::Bytes, labels: &B::Bytes, b: usize) -> Result<EvalOut> {
        self.adversary_ready = None;
        let mut red = crate::backend::NoReduce;
        self.forward_features(be, tokens, b, false, &mut red)?;
        let hs = self.head_shape(b);
        let c = self.c;
        let bufs = self.bufs.as_mut().expect("ensured");
        let features = self.trunk.features();
        let bias = &self.params.values[self.head_bias];
        let bce = be.head_bce_fwd(hs, features, &bufs.w_tech, &bufs.w_bio, bias, labels, &mut bufs.probs)?;
        be.head_logits(
            hs,
            features,
            &bufs.w_tech,
            &bufs.w_bio,
            bias,
            &mut bufs.logit_tech,
            &mut bufs.logit_bio,
            &mut bufs.probs,
        )?;
        let corr = be.corr_norm_fwd(
            CorrShape { n: b, c_a: c, c_b: c },
            &bufs.f_tech,
            &bufs.f_bio,
            &mut bufs.r,
            &mut bufs.corr_stats,
            &mut red,
        )?;
        Ok(EvalOut {
            probs: be.to_host(&bufs.probs)?,
            features: be.to_host(features)?,
            logit_tech: be.to_host(&bufs.logit_tech)?,
            logit_bio: be.to_host(&bufs.logit_bio)?,
            bce,
            corr,
        })
    }

    /// Host copies of the last forward's (train or eval) logits of each half without the bias (B, O) and the
    /// probabilities (B, O), recomputed from its features and output weights (for `mfd step-dump`).
    pub fn last_logits(&mut self, be: &B) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let bufs = self.bufs.as_mut().expect("forward before last_logits");
        let hs = HeadShape { b: bufs.b, c: self.c, o: self.o, row_bytes: self.row_bytes };
        be.head_logits(
            hs,
            self.trunk.features(),
            &bufs.w_tech,
            &bufs.w_bio,
            &self.params.values[self.head_bias],
            &mut bufs.logit_tech,
            &mut bufs.logit_bio,
            &mut bufs.probs,
        )?;
        Ok((be.to_host(&bufs.logit_tech)?, be.to_host(&bufs.logit_bio)?, be.to_host(&bufs.probs)?))
    }

    /// Output weights of the last forward (O, C) each, technical and biological.
    pub fn output_weights(&self, be: &B) -> Result<(Vec<f32>, Vec<f32>)> {
        let bufs = self.bufs.as_ref().expect("forward before output_weights");
        Ok((be.to_host(&bufs.w_tech)?, be.to_host(&bufs.w_bio)?))
    }
}
