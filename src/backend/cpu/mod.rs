//! The CPU backend: the f32 numerical reference of every op, parallelised with rayon. Buffers are plain
//! `Vec<f32>` / `Vec<u8>`. The kernels live one op family per file, generic over `Real` so that the gradient
//! checks run the same code in f64; this file only checks buffer lengths against the shapes and dispatches.

mod activation;
mod adam;
mod batch_norm;
mod conv;
mod corr;
mod elementwise;
mod gemm;
mod head;
mod matmul;
mod pool;
pub mod profile;
mod r2;
mod real;
mod standardize;
mod stem;
#[cfg(test)]
mod testutil;

pub use real::Real;

use super::shapes::*;
use super::{Activation, Backend, Reduce};
use crate::data::dataset::Dataset;
use crate::data::sampler::BatchPlan;
use crate::{MfdError, Result};

/// The CPU reference backend (stateless; rayon's global pool does the parallel work).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

/// `MfdError::Shape` unless `got == want`.
fn check(op: &'static str, name: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(MfdError::Shape { op, msg: format!("{name} has {got} elements, expected {want}") })
    }
}

/// The lengths of a training-mode BatchNorm forward: [x, y] (B, C, L) and [gamma, beta, running_mean,
/// running_var, save_mean, save_invstd] (C).
fn check_bn_train(op: &'static str, s: BnShape, xy: [&Vec<f32>; 2], per_channel: [&Vec<f32>; 6]) -> Result<()> {
    check(op, "x", xy[0].len(), s.x_len())?;
    check(op, "y", xy[1].len(), s.x_len())?;
    let names = ["gamma", "beta", "running_mean", "running_var", "save_mean", "save_invstd"];
    names.iter().zip(per_channel).try_for_each(|(name, v)| check(op, name, v.len(), s.c))
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type Bytes = Vec<u8>;
    /// The memory-mapped dataset is the resident copy: nothing to hold.
    type Resident = ();

    fn name(&self) -> &'static str {
        "cpu"
    }
    fn device(&self) -> String {
        format!("{} rayon threads", rayon::current_num_threads())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn alloc_bytes(&self, len: usize) -> Result<Vec<u8>> {
        Ok(vec![0; len])
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }
    fn upload_bytes(&self, host: &[u8]) -> Result<Vec<u8>> {
        Ok(host.to_vec())
    }
    fn resident(&self, _ds: &Dataset, _tiles: &[u64]) -> Result<()> {
        Ok(())
    }
    fn encode_resident(
        &self,
        _r: &mut (),
        ds: &Dataset,
        plan: &BatchPlan,
        t: usize,
        tokens: &mut Vec<u8>,
        labels: &mut Vec<u8>,
    ) -> Result<()> {
        crate::data::window::encode_batch_into(ds, plan, t, tokens)?;
        crate::data::window::gather_labels_into(ds, &plan.indices, labels)
    }
    fn write(&self, dst: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        check("write", "host", host.len(), dst.len())?;
        dst.copy_from_slice(host);
        Ok(())
    }
    fn write_bytes(&self, dst: &mut Vec<u8>, host: &[u8]) -> Result<()> {
        check("write_bytes", "host", host.len(), dst.len())?;
        dst.copy_from_slice(host);
        Ok(())
    }
    fn download(&self, src: &Vec<f32>, host: &mut [f32]) -> Result<()> {
        check("download", "host", host.len(), src.len())?;
        host.copy_from_slice(src);
        Ok(())
    }
    fn download_bytes(&self, src: &Vec<u8>, host: &mut [u8]) -> Result<()> {
        check("download_bytes", "host", host.len(), src.len())?;
        host.copy_from_slice(src);
        Ok(())
    }
    fn buf_len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn bytes_len(&self, buf: &Vec<u8>) -> usize {
        buf.len()
    }

    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        profile::timed("fill", || elementwise::fill(buf, value));
        Ok(())
    }
    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>) -> Result<()> {
        check("copy", "dst", dst.len(), src.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }
    fn scale(&self, alpha: f32, x: &mut Vec<f32>) -> Result<()> {
        profile::timed("scale", || elementwise::scale(alpha, x));
        Ok(())
    }
    fn axpy(&self, alpha: f32, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check("axpy", "y", y.len(), x.len())?;
        profile::timed("axpy", || elementwise::axpy(alpha, x, y));
        Ok(())
    }
    fn add(&self, a: &Vec<f32>, b: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        check("add", "b", b.len(), a.len())?;
        check("add", "out", out.len(), a.len())?;
        profile::timed("add", || elementwise::add(a, b, out));
        Ok(())
    }
    fn channel_copy(&self, s: ChannelCopy, src: &Vec<f32>, dst: &mut Vec<f32>, accumulate: bool) -> Result<()> {
        s.validate()?;
        check("channel_copy", "src", src.len(), s.src_len())?;
        check("channel_copy", "dst", dst.len(), s.dst_len())?;
        profile::timed("channel_copy", || elementwise::channel_copy(s, src, dst, accumulate));
        Ok(())
    }
    fn crop_fwd(&self, s: CropShape, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        s.validate()?;
        check("crop", "x", x.len(), s.x_len())?;
        check("crop", "y", y.len(), s.y_len())?;
        profile::timed("crop_fwd", || elementwise::crop_fwd(s, x, y));
        Ok(())
    }
    fn crop_bwd(&self, s: CropShape, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        s.validate()?;
        check("crop_bwd", "dy", dy.len(), s.y_len())?;
        check("crop_bwd", "dx", dx.len(), s.x_len())?;
        profile::timed("crop_bwd", || elementwise::crop_bwd(s, dy, dx));
        Ok(())
    }

    fn stem_conv_fwd(
        &self,
        s: StemShape,
        tokens: &Vec<u8>,
        w: &Vec<f32>,
        bias: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        s.validate()?;
        check_tokens(s, tokens)?;
        check("stem_conv", "w", w.len(), s.weight_len())?;
        check("stem_conv", "bias", bias.len(), s.c_out)?;
        check("stem_conv", "y", y.len(), s.out_len())?;
        profile::timed("stem_fwd", || stem::stem_fwd(s, tokens, w, bias, y));
        Ok(())
    }
    fn stem_conv_bwd(
        &self,
        s: StemShape,
        tokens: &Vec<u8>,
        dy: &Vec<f32>,
        dw: &mut Vec<f32>,
        dbias: &mut Vec<f32>,
    ) -> Result<()> {
        s.validate()?;
        check_tokens(s, tokens)?;
        check("stem_conv_bwd", "dy", dy.len(), s.out_len())?;
        check("stem_conv_bwd", "dw", dw.len(), s.weight_len())?;
        check("stem_conv_bwd", "dbias", dbias.len(), s.c_out)?;
        profile::timed("stem_bwd", || stem::stem_bwd(s, tokens, dy, dw, dbias));
        Ok(())
    }
    fn conv1d_fwd(&self, s: Conv1dShape, x: &Vec<f32>, w: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        s.validate()?;
        check("conv1d", "x", x.len(), s.x_len())?;
        check("conv1d", "w", w.len(), s.weight_len())?;
        check("conv1d", "y", y.len(), s.y_len())?;
        profile::timed(conv_name(s, true), || conv::conv1d_fwd(s, x, w, y));
        Ok(())
    }
    fn conv1d_bwd(
        &self,
        s: Conv1dShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
        dw: &mut Vec<f32>,
    ) -> Result<()> {
        s.validate()?;
        check("conv1d_bwd", "x", x.len(), s.x_len())?;
        check("conv1d_bwd", "w", w.len(), s.weight_len())?;
        check("conv1d_bwd", "dy", dy.len(), s.y_len())?;
        check("conv1d_bwd", "dx", dx.len(), s.x_len())?;
        check("conv1d_bwd", "dw", dw.len(), s.weight_len())?;
        profile::timed(conv_name(s, false), || conv::conv1d_bwd(s, x, w, dy, dx, dw));
        Ok(())
    }

    fn batch_norm_train_fwd(
        &self,
        s: BnShape,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
        save_mean: &mut Vec<f32>,
        save_invstd: &mut Vec<f32>,
        y: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        check_bn_train("batch_norm", s, [x, y], [gamma, beta, running_mean, running_var, save_mean, save_invstd])?;
        profile::timed("bn_train_fwd", || {
            batch_norm::bn_train_fwd(s, x, gamma, beta, running_mean, running_var, save_mean, save_invstd, y, red)
        })
    }
    fn batch_norm_eval_fwd(
        &self,
        s: BnShape,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &Vec<f32>,
        running_var: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_eval";
        check(OP, "x", x.len(), s.x_len())?;
        check(OP, "y", y.len(), s.x_len())?;
        for (name, len) in [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ] {
            check(OP, name, len, s.c)?;
        }
        profile::timed("bn_eval_fwd", || batch_norm::bn_eval_fwd(s, x, gamma, beta, running_mean, running_var, y));
        Ok(())
    }
    fn batch_norm_bwd(
        &self,
        s: BnShape,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        gamma: &Vec<f32>,
        save_mean: &Vec<f32>,
        save_invstd: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "batch_norm_bwd";
        for (name, len) in [("x", x.len()), ("dy", dy.len()), ("dx", dx.len())] {
            check(OP, name, len, s.x_len())?;
        }
        for (name, len) in [
            ("gamma", gamma.len()),
            ("save_mean", save_mean.len()),
            ("save_invstd", save_invstd.len()),
            ("dgamma", dgamma.len()),
            ("dbeta", dbeta.len()),
        ] {
            check(OP, name, len, s.c)?;
        }
        profile::timed("bn_bwd", || batch_norm::bn_bwd(s, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, red))
    }

    fn batch_norm_gelu_train_fwd(
        &self,
        s: BnShape,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        running_mean: &mut Vec<f32>,
        running_var: &mut Vec<f32>,
        save_mean: &mut Vec<f32>,
        save_invstd: &mut Vec<f32>,
        _normed: &mut Vec<f32>,
        act: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        let per_channel: [&Vec<f32>; 6] = [gamma, beta, running_mean, running_var, save_mean, save_invstd];
        check_bn_train("batch_norm_gelu", s, [x, act], per_channel)?;
        profile::timed("bn_gelu_fwd", || {
            batch_norm::bn_gelu_train_fwd(
                s,
                x,
                gamma,
                beta,
                running_mean,
                running_var,
                save_mean,
                save_invstd,
                act,
                red,
            )
        })
    }
    fn batch_norm_gelu_bwd(
        &self,
        s: BnShape,
        x: &Vec<f32>,
        _normed: &Vec<f32>,
        d_act: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        save_mean: &Vec<f32>,
        save_invstd: &Vec<f32>,
        skip: Option<&Vec<f32>>,
        d_normed: &mut Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "batch_norm_gelu_bwd";
        for (name, len) in [("x", x.len()), ("d_act", d_act.len()), ("d_normed", d_normed.len()), ("dx", dx.len())] {
            check(OP, name, len, s.x_len())?;
        }
        if let Some(skip) = skip {
            check(OP, "skip", skip.len(), s.x_len())?;
        }
        for (name, len) in [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("save_mean", save_mean.len()),
            ("save_invstd", save_invstd.len()),
            ("dgamma", dgamma.len()),
            ("dbeta", dbeta.len()),
        ] {
            check(OP, name, len, s.c)?;
        }
        let skip = skip.map(|v| v.as_slice());
        profile::timed("bn_gelu_bwd", || {
            batch_norm::bn_gelu_bwd(
                s,
                x,
                d_act,
                gamma,
                beta,
                save_mean,
                save_invstd,
                skip,
                d_normed,
                dx,
                dgamma,
                dbeta,
                red,
            )
        })
    }

    fn activation_fwd(&self, act: Activation, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        check("activation", "y", y.len(), x.len())?;
        profile::timed(act_name(act, true), || activation::activation_fwd(act, x, y));
        Ok(())
    }
    fn activation_bwd(&self, act: Activation, x: &Vec<f32>, dy: &Vec<f32>, dx: &mut Vec<f32>) -> Result<()> {
        check("activation_bwd", "dy", dy.len(), x.len())?;
        check("activation_bwd", "dx", dx.len(), x.len())?;
        profile::timed(act_name(act, false), || activation::activation_bwd(act, x, dy, dx));
        Ok(())
    }
    fn max_pool_fwd(&self, s: PoolShape, x: &Vec<f32>, y: &mut Vec<f32>, argmax: &mut Vec<u8>) -> Result<()> {
        check("max_pool", "x", x.len(), s.x_len())?;
        check("max_pool", "y", y.len(), s.y_len())?;
        check("max_pool", "argmax", argmax.len(), s.y_len())?;
        profile::timed("max_pool_fwd", || pool::max_pool_fwd(s, x, y, argmax));
        Ok(())
    }
    fn max_pool_bwd(&self, s: PoolShape, dy: &Vec<f32>, argmax: &Vec<u8>, dx: &mut Vec<f32>) -> Result<()> {
        check("max_pool_bwd", "dy", dy.len(), s.y_len())?;
        check("max_pool_bwd", "argmax", argmax.len(), s.y_len())?;
        check("max_pool_bwd", "dx", dx.len(), s.x_len())?;
        if let Some(i) = argmax.iter().position(|&a| a > 1) {
            return Err(MfdError::Shape {
                op: "max_pool_bwd",
                msg: format!("argmax[{i}] = {} is not 0 or 1", argmax[i]),
            });
        }
        profile::timed("max_pool_bwd", || pool::max_pool_bwd(s, dy, argmax, dx));
        Ok(())
    }

    fn matmul(
        &self,
        s: MatmulShape,
        a: &Vec<f32>,
        trans_a: bool,
        b: &Vec<f32>,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        c: &mut Vec<f32>,
    ) -> Result<()> {
        check("matmul", "a", a.len(), s.m * s.k)?;
        check("matmul", "b", b.len(), s.k * s.n)?;
        check("matmul", "c", c.len(), s.m * s.n)?;
        profile::timed("matmul", || matmul::matmul(s, a, trans_a, b, trans_b, alpha, beta, c));
        Ok(())
    }
    fn linear_fwd(
        &self,
        s: LinearShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        bias: Option<&Vec<f32>>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        check("linear", "x", x.len(), s.n * s.d_in)?;
        check("linear", "w", w.len(), s.d_out * s.d_in)?;
        check("linear", "y", y.len(), s.n * s.d_out)?;
        if let Some(b) = bias {
            check("linear", "bias", b.len(), s.d_out)?;
        }
        profile::timed("linear_fwd", || matmul::linear_fwd(s, x, w, bias.map(|b| b.as_slice()), y));
        Ok(())
    }
    fn linear_bwd(
        &self,
        s: LinearShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        dw: &mut Vec<f32>,
        dbias: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        check("linear_bwd", "x", x.len(), s.n * s.d_in)?;
        check("linear_bwd", "w", w.len(), s.d_out * s.d_in)?;
        check("linear_bwd", "dy", dy.len(), s.n * s.d_out)?;
        check("linear_bwd", "dw", dw.len(), s.d_out * s.d_in)?;
        if let Some(dx) = &dx {
            check("linear_bwd", "dx", dx.len(), s.n * s.d_in)?;
        }
        if let Some(db) = &dbias {
            check("linear_bwd", "dbias", db.len(), s.d_out)?;
        }
        profile::timed("linear_bwd", || {
            matmul::linear_bwd(s, x, w, dy, dx.map(|d| d.as_mut_slice()), dw, dbias.map(|d| d.as_mut_slice()))
        });
        Ok(())
    }

    fn head_bce_fwd(
        &self,
        s: HeadShape,
        features: &Vec<f32>,
        w_tech: &Vec<f32>,
        w_bio: &Vec<f32>,
        bias: &Vec<f32>,
        labels: &Vec<u8>,
        probs: &mut Vec<f32>,
    ) -> Result<f32> {
        check_head(s, "head_bce", features, w_tech, w_bio, bias)?;
        check("head_bce", "labels", labels.len(), s.labels_len())?;
        check("head_bce", "probs", probs.len(), s.out_len())?;
        Ok(profile::timed("head_bce_fwd", || head::head_bce_fwd(s, features, w_tech, w_bio, bias, labels, probs))
            as f32)
    }
    fn head_bce_bwd(
        &self,
        s: HeadShape,
        features: &Vec<f32>,
        w_tech: &Vec<f32>,
        w_bio: &Vec<f32>,
        probs: &Vec<f32>,
        labels: &Vec<u8>,
        dz: &mut Vec<f32>,
        d_features: &mut Vec<f32>,
        dw_tech: &mut Vec<f32>,
        dw_bio: &mut Vec<f32>,
        dbias: &mut Vec<f32>,
    ) -> Result<()> {
        const OP: &str = "head_bce_bwd";
        check_head(s, OP, features, w_tech, w_bio, dbias)?;
        check(OP, "labels", labels.len(), s.labels_len())?;
        check(OP, "probs", probs.len(), s.out_len())?;
        check(OP, "dz", dz.len(), s.out_len())?;
        check(OP, "d_features", d_features.len(), s.features_len())?;
        check(OP, "dw_tech", dw_tech.len(), s.weight_len())?;
        check(OP, "dw_bio", dw_bio.len(), s.weight_len())?;
        profile::timed("head_bce_bwd", || {
            head::head_bce_bwd(s, features, w_tech, w_bio, probs, labels, dz, d_features, dw_tech, dw_bio, dbias)
        });
        Ok(())
    }
    fn head_logits(
        &self,
        s: HeadShape,
        features: &Vec<f32>,
        w_tech: &Vec<f32>,
        w_bio: &Vec<f32>,
        bias: &Vec<f32>,
        logit_tech: &mut Vec<f32>,
        logit_bio: &mut Vec<f32>,
        probs: &mut Vec<f32>,
    ) -> Result<()> {
        check_head(s, "head_logits", features, w_tech, w_bio, bias)?;
        for (name, len) in [("logit_tech", logit_tech.len()), ("logit_bio", logit_bio.len()), ("probs", probs.len())] {
            check("head_logits", name, len, s.out_len())?;
        }
        profile::timed("head_logits", || {
            head::head_logits(s, features, w_tech, w_bio, bias, logit_tech, logit_bio, probs)
        });
        Ok(())
    }

    fn corr_norm_fwd(
        &self,
        s: CorrShape,
        a: &Vec<f32>,
        b: &Vec<f32>,
        r: &mut Vec<f32>,
        stats: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<f32> {
        check("corr_norm", "a", a.len(), s.n * s.c_a)?;
        check("corr_norm", "b", b.len(), s.n * s.c_b)?;
        check("corr_norm", "r", r.len(), s.r_len())?;
        check("corr_norm", "stats", stats.len(), s.stats_len())?;
        Ok(profile::timed("corr_norm_fwd", || corr::corr_norm_fwd(s, a, b, r, stats, red))? as f32)
    }
    fn corr_norm_bwd(
        &self,
        s: CorrShape,
        a: &Vec<f32>,
        b: &Vec<f32>,
        r: &Vec<f32>,
        stats: &Vec<f32>,
        dvalue: f32,
        da: &mut Vec<f32>,
        db: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "corr_norm_bwd";
        check(OP, "a", a.len(), s.n * s.c_a)?;
        check(OP, "b", b.len(), s.n * s.c_b)?;
        check(OP, "da", da.len(), s.n * s.c_a)?;
        check(OP, "db", db.len(), s.n * s.c_b)?;
        check(OP, "r", r.len(), s.r_len())?;
        check(OP, "stats", stats.len(), s.stats_len())?;
        profile::timed("corr_norm_bwd", || corr::corr_norm_bwd(s, a, b, r, stats, dvalue as f64, da, db, red))
    }
    fn r2_score_fwd(
        &self,
        s: R2Shape,
        pred: &Vec<f32>,
        target: &Vec<f32>,
        stats: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<f32> {
        check("r2_score", "pred", pred.len(), s.x_len())?;
        check("r2_score", "target", target.len(), s.x_len())?;
        check("r2_score", "stats", stats.len(), s.stats_len())?;
        Ok(profile::timed("r2_score_fwd", || r2::r2_score_fwd(s, pred, target, stats, red))? as f32)
    }
    fn r2_score_bwd(
        &self,
        s: R2Shape,
        pred: &Vec<f32>,
        target: &Vec<f32>,
        stats: &Vec<f32>,
        dscore: f32,
        dpred: &mut Vec<f32>,
        dtarget: &mut Vec<f32>,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        for (name, len) in
            [("pred", pred.len()), ("target", target.len()), ("dpred", dpred.len()), ("dtarget", dtarget.len())]
        {
            check("r2_score_bwd", name, len, s.x_len())?;
        }
        check("r2_score_bwd", "stats", stats.len(), s.stats_len())?;
        profile::timed("r2_score_bwd", || r2::r2_score_bwd(s, pred, target, stats, dscore as f64, dpred, dtarget, red))
    }

    fn amsgrad_step(
        &self,
        cfg: &AdamConfig,
        step: u64,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        vmax: &mut Vec<f32>,
    ) -> Result<()> {
        if step == 0 {
            return Err(MfdError::Shape { op: "amsgrad_step", msg: "step count is 1-based, got 0".into() });
        }
        for (name, len) in [("grad", grad.len()), ("m", m.len()), ("v", v.len()), ("vmax", vmax.len())] {
            check("amsgrad_step", name, len, param.len())?;
        }
        profile::timed("amsgrad_step", || adam::amsgrad_step(cfg, step, param, grad, m, v, vmax));
        Ok(())
    }
}

/// Profile name of a conv call: the kernel size tells the layer kind (15 stem-side, 5 tower, 3 dilated, 1 pointwise).
fn conv_name(s: Conv1dShape, fwd: bool) -> &'static str {
    match (s.k, fwd) {
        (1, true) => "conv1d_fwd k1",
        (1, false) => "conv1d_bwd k1",
        (3, true) => "conv1d_fwd k3",
        (3, false) => "conv1d_bwd k3",
        (5, true) => "conv1d_fwd k5",
        (5, false) => "conv1d_bwd k5",
        (_, true) => "conv1d_fwd k other",
        (_, false) => "conv1d_bwd k other",
    }
}

fn act_name(act: Activation, fwd: bool) -> &'static str {
    match (act, fwd) {
        (Activation::Gelu, true) => "gelu_fwd",
        (Activation::Gelu, false) => "gelu_bwd",
        (_, true) => "relu_fwd",
        (_, false) => "relu_bwd",
    }
}

/// Token buffer length and values (0..=16); a bad token is an error naming its position, never a panic.
fn check_tokens(s: StemShape, tokens: &[u8]) -> Result<()> {
    check("stem_conv", "tokens", tokens.len(), s.tokens_len())?;
    if let Some(i) = tokens.iter().position(|&t| t > TOKEN_N) {
        let (b, t) = (i / s.t.max(1), i % s.t.max(1));
        return Err(MfdError::Shape {
            op: "stem_conv",
            msg: format!("token ({b}, {t}) has value {}, expected 0..=16", tokens[i]),
        });
    }
    Ok(())
}

fn check_head(s: HeadShape, op: &'static str, f: &[f32], wt: &[f32], wb: &[f32], bias: &[f32]) -> Result<()> {
    s.validate()?;
    check(op, "features", f.len(), s.features_len())?;
    check(op, "w_tech", wt.len(), s.weight_len())?;
    check(op, "w_bio", wb.len(), s.weight_len())?;
    check(op, "bias", bias.len(), s.o)
}

#[cfg(test)]
mod tests;
