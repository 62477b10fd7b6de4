//! `Backend` for `CudaBackend`: memory ops and a one-line forward of each op to its checked launcher (`ops.rs`,
//! `stats.rs`, `head.rs`). Buffers are `DevBuf<f32>` / `DevBuf<u8>`.

use super::{CudaBackend, DevBuf};
use crate::backend::shapes::*;
use crate::backend::{Activation, Backend, Reduce};
use crate::data::dataset::Dataset;
use crate::data::sampler::BatchPlan;
use crate::Result;

type F = DevBuf<f32>;
type U8 = DevBuf<u8>;

impl Backend for CudaBackend {
    type Buf = F;
    type Bytes = U8;
    type Resident = super::GpuGenome;

    fn name(&self) -> &'static str {
        "cuda"
    }
    fn defer_scalars(&self, defer: bool) -> bool {
        self.set_defer_scalars(defer)
    }
    fn device(&self) -> String {
        self.describe()
    }
    fn set_precision(&self, p: crate::config::Precision) -> crate::config::Precision {
        self.blas.set_precision(p);
        p
    }

    fn as_cuda(&self) -> Option<&CudaBackend> {
        Some(self)
    }
    fn cuda_buf<'a>(&self, buf: &'a F) -> Option<&'a F> {
        Some(buf)
    }
    fn cuda_buf_mut<'a>(&self, buf: &'a mut F) -> Option<&'a mut F> {
        Some(buf)
    }

    fn alloc(&self, len: usize) -> Result<F> {
        self.zeros(len)
    }
    fn alloc_bytes(&self, len: usize) -> Result<U8> {
        self.zeros(len)
    }
    fn upload(&self, host: &[f32]) -> Result<F> {
        self.dev_copy(host)
    }
    fn upload_bytes(&self, host: &[u8]) -> Result<U8> {
        self.dev_copy(host)
    }
    fn resident(&self, ds: &Dataset, tiles: &[u64]) -> Result<super::GpuGenome> {
        super::GpuGenome::new(self, ds, tiles)
    }
    fn encode_resident(
        &self,
        r: &mut super::GpuGenome,
        _ds: &Dataset,
        plan: &BatchPlan,
        t: usize,
        tokens: &mut U8,
        labels: &mut U8,
    ) -> Result<()> {
        r.encode(self, plan, t, tokens, labels)
    }
    fn write(&self, dst: &mut F, host: &[f32]) -> Result<()> {
        self.put(dst, host)
    }
    fn write_bytes(&self, dst: &mut U8, host: &[u8]) -> Result<()> {
        self.put(dst, host)
    }
    fn download(&self, src: &F, host: &mut [f32]) -> Result<()> {
        self.get(src, host)
    }
    fn download_bytes(&self, src: &U8, host: &mut [u8]) -> Result<()> {
        self.get(src, host)
    }
    fn buf_len(&self, buf: &F) -> usize {
        buf.len()
    }
    fn bytes_len(&self, buf: &U8) -> usize {
        buf.len()
    }

    fn fill(&self, buf: &mut F, value: f32) -> Result<()> {
        self.k_fill(buf, value)
    }
    fn copy(&self, src: &F, dst: &mut F) -> Result<()> {
        self.k_copy(src, dst)
    }
    fn scale(&self, alpha: f32, x: &mut F) -> Result<()> {
        self.k_scale(alpha, x)
    }
    fn axpy(&self, alpha: f32, x: &F, y: &mut F) -> Result<()> {
        self.k_axpy(alpha, x, y)
    }
    fn add(&self, a: &F, b: &F, out: &mut F) -> Result<()> {
        self.k_add(a, b, out)
    }
    fn channel_copy(&self, s: ChannelCopy, src: &F, dst: &mut F, accumulate: bool) -> Result<()> {
        self.k_channel_copy(s, src, dst, accumulate)
    }
    fn crop_fwd(&self, s: CropShape, x: &F, y: &mut F) -> Result<()> {
        self.k_crop(s, x, y, false)
    }
    fn crop_bwd(&self, s: CropShape, dy: &F, dx: &mut F) -> Result<()> {
        self.k_crop(s, dy, dx, true)
    }

    fn stem_conv_fwd(&self, s: StemShape, tokens: &U8, w: &F, bias: &F, y: &mut F) -> Result<()> {
        self.k_stem_fwd(s, tokens, w, bias, y)
    }
    fn stem_conv_bwd(&self, s: StemShape, tokens: &U8, dy: &F, dw: &mut F, dbias: &mut F) -> Result<()> {
        self.k_stem_bwd(s, tokens, dy, dw, dbias)
    }
    fn conv1d_fwd(&self, s: Conv1dShape, x: &F, w: &F, y: &mut F) -> Result<()> {
        self.k_conv_fwd(s, x, w, y)
    }
    fn conv1d_bwd(&self, s: Conv1dShape, x: &F, w: &F, dy: &F, dx: &mut F, dw: &mut F) -> Result<()> {
        self.k_conv_bwd(s, x, w, dy, dx, dw)
    }

    fn batch_norm_train_fwd(
        &self,
        s: BnShape,
        x: &F,
        gamma: &F,
        beta: &F,
        running_mean: &mut F,
        running_var: &mut F,
        save_mean: &mut F,
        save_invstd: &mut F,
        y: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.k_bn_train_fwd(s, x, gamma, beta, (running_mean, running_var), (save_mean, save_invstd), y, red)
    }
    fn batch_norm_eval_fwd(
        &self,
        s: BnShape,
        x: &F,
        gamma: &F,
        beta: &F,
        running_mean: &F,
        running_var: &F,
        y: &mut F,
    ) -> Result<()> {
        self.k_bn_eval_fwd(s, x, gamma, beta, running_mean, running_var, y)
    }
    fn batch_norm_bwd(
        &self,
        s: BnShape,
        x: &F,
        dy: &F,
        gamma: &F,
        save_mean: &F,
        save_invstd: &F,
        dx: &mut F,
        dgamma: &mut F,
        dbeta: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.k_bn_bwd(s, (x, dy, gamma), (save_mean, save_invstd), dx, (dgamma, dbeta), red)
    }

    fn activation_fwd(&self, act: Activation, x: &F, y: &mut F) -> Result<()> {
        self.k_activation_fwd(act, x, y)
    }
    fn activation_bwd(&self, act: Activation, x: &F, dy: &F, dx: &mut F) -> Result<()> {
        self.k_activation_bwd(act, x, dy, dx)
    }
    fn max_pool_fwd(&self, s: PoolShape, x: &F, y: &mut F, argmax: &mut U8) -> Result<()> {
        self.k_max_pool_fwd(s, x, y, argmax)
    }
    fn max_pool_bwd(&self, s: PoolShape, dy: &F, argmax: &U8, dx: &mut F) -> Result<()> {
        self.k_max_pool_bwd(s, dy, argmax, dx)
    }

    fn matmul(
        &self,
        s: MatmulShape,
        a: &F,
        trans_a: bool,
        b: &F,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        c: &mut F,
    ) -> Result<()> {
        use super::launch::check;
        check("matmul", "a", a.len(), s.m * s.k)?;
        check("matmul", "b", b.len(), s.k * s.n)?;
        check("matmul", "c", c.len(), s.m * s.n)?;
        let am = super::ops::Mat { buf: a, offset: 0, ld: if trans_a { s.m } else { s.k }, trans: trans_a };
        let bm = super::ops::Mat { buf: b, offset: 0, ld: if trans_b { s.k } else { s.n }, trans: trans_b };
        self.k_gemm(s.m, s.n, s.k, alpha, am, bm, beta, c, 0, s.n)
    }
    fn linear_fwd(&self, s: LinearShape, x: &F, w: &F, bias: Option<&F>, y: &mut F) -> Result<()> {
        self.matmul(MatmulShape { m: s.n, n: s.d_out, k: s.d_in }, x, false, w, true, 1.0, 0.0, y)?;
        match bias {
            Some(b) => self.k_bias_add_rows(y, b, s.n, s.d_out),
            None => Ok(()),
        }
    }
    fn linear_bwd(
        &self,
        s: LinearShape,
        x: &F,
        w: &F,
        dy: &F,
        dx: Option<&mut F>,
        dw: &mut F,
        dbias: Option<&mut F>,
    ) -> Result<()> {
        use super::launch::check;
        check("linear_bwd", "x", x.len(), s.n * s.d_in)?;
        check("linear_bwd", "w", w.len(), s.d_out * s.d_in)?;
        check("linear_bwd", "dy", dy.len(), s.n * s.d_out)?;
        if let Some(dx) = dx {
            self.matmul(MatmulShape { m: s.n, n: s.d_in, k: s.d_out }, dy, false, w, false, 1.0, 0.0, dx)?;
        }
        self.matmul(MatmulShape { m: s.d_out, n: s.d_in, k: s.n }, dy, true, x, false, 1.0, 1.0, dw)?;
        match dbias {
            Some(db) => self.k_col_sums_accum(dy, db, s.n, s.d_out),
            None => Ok(()),
        }
    }

    fn head_bce_fwd(
        &self,
        s: HeadShape,
        features: &F,
        w_tech: &F,
        w_bio: &F,
        bias: &F,
        labels: &U8,
        probs: &mut F,
    ) -> Result<f32> {
        self.k_head_bce_fwd(s, (features, w_tech, w_bio, bias), labels, probs)
    }
    fn head_bce_bwd(
        &self,
        s: HeadShape,
        features: &F,
        w_tech: &F,
        w_bio: &F,
        probs: &F,
        labels: &U8,
        dz: &mut F,
        d_features: &mut F,
        dw_tech: &mut F,
        dw_bio: &mut F,
        dbias: &mut F,
    ) -> Result<()> {
        self.k_head_bce_bwd(s, (features, w_tech, w_bio, probs, labels), dz, d_features, (dw_tech, dw_bio, dbias))
    }
    fn head_logits(
        &self,
        s: HeadShape,
        features: &F,
        w_tech: &F,
        w_bio: &F,
        bias: &F,
        logit_tech: &mut F,
        logit_bio: &mut F,
        probs: &mut F,
    ) -> Result<()> {
        self.k_head_logits(s, (features, w_tech, w_bio, bias), logit_tech, logit_bio, probs)
    }

    fn corr_norm_fwd(&self, s: CorrShape, a: &F, b: &F, r: &mut F, stats: &mut F, red: &mut dyn Reduce) -> Result<f32> {
        self.k_corr_fwd(s, a, b, r, stats, red)
    }
    fn corr_norm_bwd(
        &self,
        s: CorrShape,
        a: &F,
        b: &F,
        r: &F,
        stats: &F,
        dvalue: f32,
        da: &mut F,
        db: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.k_corr_bwd(s, (a, b, r, stats), dvalue, da, db, red)
    }
    fn r2_score_fwd(&self, s: R2Shape, pred: &F, target: &F, stats: &mut F, red: &mut dyn Reduce) -> Result<f32> {
        self.k_r2_fwd(s, pred, target, stats, red)
    }
    fn r2_score_bwd(
        &self,
        s: R2Shape,
        pred: &F,
        target: &F,
        stats: &F,
        dscore: f32,
        dpred: &mut F,
        dtarget: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.k_r2_bwd(s, (pred, target, stats), dscore, dpred, dtarget, red)
    }

    fn amsgrad_step(
        &self,
        cfg: &AdamConfig,
        step: u64,
        param: &mut F,
        grad: &F,
        m: &mut F,
        v: &mut F,
        vmax: &mut F,
    ) -> Result<()> {
        self.k_amsgrad(cfg, step, param, grad, m, v, vmax)
    }
}
