//! Checked launchers of the stateless kernels: element-wise and layout helpers, activations, pooling, the stem
//! and dense convolutions, the dense products and the AMSGrad update. Each checks every buffer length against the
//! op's shape (the same checks as the CPU backend) and then launches one kernel; zero-size work launches nothing.

use super::cublas::Operand;
use super::launch::{check, grid1d, launch, per_block};
use super::{CudaBackend, DevBuf};
use crate::backend::shapes::*;
use crate::backend::Activation;
use crate::{MfdError, Result};

type F = DevBuf<f32>;
type U8 = DevBuf<u8>;

/// Kernel code of an activation (the order of `activation.cu`).
fn act_code(act: Activation) -> i32 {
    match act {
        Activation::Gelu => 0,
        Activation::Relu => 1,
        Activation::LeakyRelu => 2,
    }
}

/// A (rows, cols) row-major operand with row stride `ld`, possibly transposed, for `gemm`.
pub struct Mat<'a> {
    pub buf: &'a F,
    pub offset: usize,
    pub ld: usize,
    pub trans: bool,
}

impl CudaBackend {
    pub(crate) fn k_fill(&self, x: &mut F, value: f32) -> Result<()> {
        if x.len == 0 {
            return Ok(());
        }
        let n = x.len as i64;
        launch!(self, "fill_f32", grid1d(x.len), &mut x.data, &value, &n)
    }

    pub(crate) fn k_scale(&self, alpha: f32, x: &mut F) -> Result<()> {
        if x.len == 0 {
            return Ok(());
        }
        let n = x.len as i64;
        launch!(self, "scale_f32", grid1d(x.len), &alpha, &mut x.data, &n)
    }

    pub(crate) fn k_axpy(&self, alpha: f32, x: &F, y: &mut F) -> Result<()> {
        check("axpy", "y", y.len, x.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let n = x.len as i64;
        launch!(self, "axpy_f32", grid1d(x.len), &alpha, &x.data, &mut y.data, &n)
    }

    pub(crate) fn k_add(&self, a: &F, b: &F, out: &mut F) -> Result<()> {
        check("add", "b", b.len, a.len)?;
        check("add", "out", out.len, a.len)?;
        if a.len == 0 {
            return Ok(());
        }
        let n = a.len as i64;
        launch!(self, "add_f32", grid1d(a.len), &a.data, &b.data, &mut out.data, &n)
    }

    pub(crate) fn k_copy(&self, src: &F, dst: &mut F) -> Result<()> {
        check("copy", "dst", dst.len, src.len)?;
        if src.len == 0 {
            return Ok(());
        }
        let view = src.data.slice(0..src.len);
        let mut dview = dst.data.slice_mut(0..src.len);
        self.stream.memcpy_dtod(&view, &mut dview).map_err(|e| super::device::cuda_err("memcpy_dtod", e))
    }

    /// dst[dst_off..dst_off + n] = src[src_off..src_off + n], device to device on the stream: gradient buckets
    /// packed and unpacked in device memory (`dist::buckets` with the NCCL communicator).
    pub(crate) fn copy_range(&self, src: &F, src_off: usize, dst: &mut F, dst_off: usize, n: usize) -> Result<()> {
        if src_off + n > src.len || dst_off + n > dst.len {
            return Err(MfdError::Shape {
                op: "copy_range",
                msg: format!("{n} elements from offset {src_off} of {} into offset {dst_off} of {}", src.len, dst.len),
            });
        }
        if n == 0 {
            return Ok(());
        }
        let view = src.data.slice(src_off..src_off + n);
        let mut dview = dst.data.slice_mut(dst_off..dst_off + n);
        self.stream.memcpy_dtod(&view, &mut dview).map_err(|e| super::device::cuda_err("memcpy_dtod", e))
    }

    pub(crate) fn k_channel_copy(&self, s: ChannelCopy, src: &F, dst: &mut F, accumulate: bool) -> Result<()> {
        s.validate()?;
        check("channel_copy", "src", src.len, s.src_len())?;
        check("channel_copy", "dst", dst.len, s.dst_len())?;
        let total = s.b * s.n * s.l;
        if total == 0 {
            return Ok(());
        }
        let [b, l, c_src, src_off, c_dst, dst_off, n] =
            [s.b, s.l, s.c_src, s.src_off, s.c_dst, s.dst_off, s.n].map(|v| v as i64);
        let acc = accumulate as i32;
        launch!(
            self,
            "channel_copy_f32",
            grid1d(total),
            &src.data,
            &mut dst.data,
            &b,
            &l,
            &c_src,
            &src_off,
            &c_dst,
            &dst_off,
            &n,
            &acc
        )
    }

    pub(crate) fn k_crop(&self, s: CropShape, x: &F, y: &mut F, backward: bool) -> Result<()> {
        s.validate()?;
        let (xin, out) = if backward { (s.y_len(), s.x_len()) } else { (s.x_len(), s.y_len()) };
        check("crop", "input", x.len, xin)?;
        check("crop", "output", y.len, out)?;
        if out == 0 {
            return Ok(());
        }
        let (rows, l, crop) = ((s.b * s.c) as i64, s.l as i64, s.crop as i64);
        if backward {
            launch!(self, "crop_bwd_f32", grid1d(out), &x.data, &mut y.data, &rows, &l, &crop)
        } else {
            launch!(self, "crop_fwd_f32", grid1d(out), &x.data, &mut y.data, &rows, &l, &crop)
        }
    }

    pub(crate) fn k_activation_fwd(&self, act: Activation, x: &F, y: &mut F) -> Result<()> {
        check("activation", "y", y.len, x.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let (code, n) = (act_code(act), x.len as i64);
        launch!(self, "activation_fwd_f32", grid1d(x.len), &code, &x.data, &mut y.data, &n)
    }

    pub(crate) fn k_activation_bwd(&self, act: Activation, x: &F, dy: &F, dx: &mut F) -> Result<()> {
        check("activation_bwd", "dy", dy.len, x.len)?;
        check("activation_bwd", "dx", dx.len, x.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let (code, n) = (act_code(act), x.len as i64);
        launch!(self, "activation_bwd_f32", grid1d(x.len), &code, &x.data, &dy.data, &mut dx.data, &n)
    }

    pub(crate) fn k_max_pool_fwd(&self, s: PoolShape, x: &F, y: &mut F, argmax: &mut U8) -> Result<()> {
        check("max_pool", "x", x.len, s.x_len())?;
        check("max_pool", "y", y.len, s.y_len())?;
        check("max_pool", "argmax", argmax.len, s.y_len())?;
        if s.y_len() == 0 {
            return Ok(());
        }
        let (rows, l) = ((s.b * s.c) as i64, s.l as i64);
        launch!(self, "max_pool_fwd_f32", grid1d(s.y_len()), &x.data, &mut y.data, &mut argmax.data, &rows, &l)
    }

    /// The argmax values are not re-checked on the device (they come from `k_max_pool_fwd`); a value other than
    /// 0 or 1 routes nothing, so a bad buffer yields zeros, never an out-of-bounds access.
    pub(crate) fn k_max_pool_bwd(&self, s: PoolShape, dy: &F, argmax: &U8, dx: &mut F) -> Result<()> {
        check("max_pool_bwd", "dy", dy.len, s.y_len())?;
        check("max_pool_bwd", "argmax", argmax.len, s.y_len())?;
        check("max_pool_bwd", "dx", dx.len, s.x_len())?;
        if s.x_len() == 0 {
            return Ok(());
        }
        let (rows, l) = ((s.b * s.c) as i64, s.l as i64);
        launch!(self, "max_pool_bwd_f32", grid1d(s.x_len()), &dy.data, &argmax.data, &mut dx.data, &rows, &l)
    }

    /// Token values above 16 are not checked on the device (that would cost a copy per step); the kernel treats
    /// them like N (token >= 16 adds nothing), so they cannot index outside W.
    pub(crate) fn k_stem_fwd(&self, s: StemShape, tokens: &U8, w: &F, bias: &F, y: &mut F) -> Result<()> {
        s.validate()?;
        check("stem_conv", "tokens", tokens.len, s.tokens_len())?;
        check("stem_conv", "w", w.len, s.weight_len())?;
        check("stem_conv", "bias", bias.len, s.c_out)?;
        check("stem_conv", "y", y.len, s.out_len())?;
        if s.out_len() == 0 {
            return Ok(());
        }
        let [b, t, c_out, k] = [s.b, s.t, s.c_out, s.k].map(|v| v as i64);
        launch!(
            self,
            "stem_conv_fwd_f32",
            grid1d(s.out_len()),
            &tokens.data,
            &w.data,
            &bias.data,
            &mut y.data,
            &b,
            &t,
            &c_out,
            &k
        )
    }

    pub(crate) fn k_stem_bwd(&self, s: StemShape, tokens: &U8, dy: &F, dw: &mut F, dbias: &mut F) -> Result<()> {
        s.validate()?;
        check("stem_conv_bwd", "tokens", tokens.len, s.tokens_len())?;
        check("stem_conv_bwd", "dy", dy.len, s.out_len())?;
        check("stem_conv_bwd", "dw", dw.len, s.weight_len())?;
        check("stem_conv_bwd", "dbias", dbias.len, s.c_out)?;
        if s.out_len() == 0 {
            return Ok(());
        }
        let cfg = per_block(s.c_out, s.b, STEM_CHANNELS * s.k * 4)?;
        let [t, c_out, k] = [s.t, s.c_out, s.k].map(|v| v as i64);
        launch!(self, "stem_conv_bwd_f32", cfg, &tokens.data, &dy.data, &mut dw.data, &mut dbias.data, &t, &c_out, &k)
    }

    /// The weight (C_out, C_in, K) in taps-major order (K, C_out, C_in): W_k is a contiguous row-major
    /// (C_out, C_in) matrix for the per-tap GEMMs.
    fn conv_taps(&self, s: Conv1dShape, w: &F) -> Result<F> {
        let mut wt = self.zeros::<f32>(s.weight_len())?;
        if s.weight_len() > 0 {
            let [co, ci, k] = [s.c_out, s.c_in, s.k].map(|v| v as i64);
            launch!(self, "conv1d_w_to_taps_f32", grid1d(s.weight_len()), &w.data, &mut wt.data, &co, &ci, &k)?;
        }
        Ok(wt)
    }

    /// Per tap k: the input offset `off = k d - pad` and the output positions [l0, l0 + nl) whose input position
    /// l + off lies inside [0, L) (taps entirely in the padding have nl = 0).
    fn conv_tap_range(s: Conv1dShape, kk: usize) -> (isize, usize, usize) {
        let pad = ((s.k - 1) * s.dilation / 2) as isize;
        let off = (kk * s.dilation) as isize - pad;
        let l = s.l as isize;
        let (l0, l1) = ((-off).max(0), (l - off).min(l));
        (off, l0.max(0) as usize, (l1 - l0).max(0) as usize)
    }

    /// Forward as K strided-batched GEMMs (batch over B): y_b[:, l0..l0 + nl] += W_k (C_out, C_in) x_b[:, l0 +
    /// off..] (C_in, nl), after y = 0. Tensor cores in tf32/bf16 (`train.precision`).
    pub(crate) fn k_conv_fwd(&self, s: Conv1dShape, x: &F, w: &F, y: &mut F) -> Result<()> {
        s.validate()?;
        check("conv1d", "x", x.len, s.x_len())?;
        check("conv1d", "w", w.len, s.weight_len())?;
        check("conv1d", "y", y.len, s.y_len())?;
        self.k_fill(y, 0.0)?;
        if s.y_len() == 0 || s.c_in == 0 {
            return Ok(());
        }
        let wt = self.conv_taps(s, w)?;
        let (ci, co, l) = (s.c_in, s.c_out, s.l);
        for kk in 0..s.k {
            let (off, l0, nl) = Self::conv_tap_range(s, kk);
            if nl == 0 {
                continue;
            }
            let a = Operand { buf: &wt, offset: kk * co * ci, ld: ci, trans: false, stride: 0 };
            let b = Operand { buf: x, offset: (l0 as isize + off) as usize, ld: l, trans: false, stride: ci * l };
            self.gemm_batched((co, nl, ci, s.b), 1.0, a, b, 1.0, y, (l0, l, co * l))?;
        }
        Ok(())
    }

    /// Backward as per-tap GEMMs. dx (written): dx_b[:, l0 + off..] += W_k^T (C_in, C_out) dy_b[:, l0..l0 + nl].
    /// dW (+=): per tap and batch entry dy_b[:, l0..] (C_out, nl) x_b[:, l0 + off..]^T (nl, C_in) into a
    /// (parts, K, C_out, C_in) workspace, the batch split into at most DW_PARTS parts (entries of a part accumulate
    /// in its GEMM's beta = 1 passes: a split-K over B), then summed into dw by `conv1d_taps_add_dw_f32`.
    pub(crate) fn k_conv_bwd(&self, s: Conv1dShape, x: &F, w: &F, dy: &F, dx: &mut F, dw: &mut F) -> Result<()> {
        /// Upper bound of the dW workspace's batch parts (its size is parts K C_out C_in floats).
        const DW_PARTS: usize = 16;
        s.validate()?;
        check("conv1d_bwd", "x", x.len, s.x_len())?;
        check("conv1d_bwd", "w", w.len, s.weight_len())?;
        check("conv1d_bwd", "dy", dy.len, s.y_len())?;
        check("conv1d_bwd", "dx", dx.len, s.x_len())?;
        check("conv1d_bwd", "dw", dw.len, s.weight_len())?;
        self.k_fill(dx, 0.0)?;
        if s.b == 0 || s.l == 0 || s.weight_len() == 0 {
            return Ok(());
        }
        let wt = self.conv_taps(s, w)?;
        let (ci, co, l, kt) = (s.c_in, s.c_out, s.l, s.k);
        let parts = s.b.min(DW_PARTS);
        let mut part = self.zeros::<f32>(parts * kt * co * ci)?;
        for kk in 0..kt {
            let (off, l0, nl) = Self::conv_tap_range(s, kk);
            if nl == 0 {
                continue;
            }
            let xs = (l0 as isize + off) as usize;
            let a = Operand { buf: &wt, offset: kk * co * ci, ld: ci, trans: true, stride: 0 };
            let b = Operand { buf: dy, offset: l0, ld: l, trans: false, stride: co * l };
            self.gemm_batched((ci, nl, co, s.b), 1.0, a, b, 1.0, dx, (xs, l, ci * l))?;
            for start in (0..s.b).step_by(parts) {
                let n = parts.min(s.b - start);
                let a = Operand { buf: dy, offset: start * co * l + l0, ld: l, trans: false, stride: co * l };
                let b = Operand { buf: x, offset: start * ci * l + xs, ld: l, trans: true, stride: ci * l };
                let beta = if start == 0 { 0.0 } else { 1.0 };
                self.gemm_batched((co, ci, nl, n), 1.0, a, b, beta, &mut part, (kk * co * ci, ci, kt * co * ci))?;
            }
        }
        let [np, co, ci, k] = [parts, s.c_out, s.c_in, s.k].map(|v| v as i64);
        launch!(self, "conv1d_taps_add_dw_f32", grid1d(s.weight_len()), &part.data, &mut dw.data, &np, &co, &ci, &k)
    }

    /// c[c_off..] (m, n), row stride ldc = alpha op(a) op(b) + beta c, on cuBLAS (`cublas.rs`; operand extents are
    /// checked against their buffers there).
    pub(crate) fn k_gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Mat<'_>,
        b: Mat<'_>,
        beta: f32,
        c: &mut F,
        c_off: usize,
        ldc: usize,
    ) -> Result<()> {
        let a = Operand { buf: a.buf, offset: a.offset, ld: a.ld, trans: a.trans, stride: 0 };
        let b = Operand { buf: b.buf, offset: b.offset, ld: b.ld, trans: b.trans, stride: 0 };
        self.gemm_batched((m, n, k, 1), alpha, a, b, beta, c, (c_off, ldc, 0))
    }

    /// y (rows, d) += bias (d) on every row.
    pub(crate) fn k_bias_add_rows(&self, y: &mut F, bias: &F, rows: usize, d: usize) -> Result<()> {
        check("bias_add", "y", y.len, rows * d)?;
        check("bias_add", "bias", bias.len, d)?;
        if rows * d == 0 {
            return Ok(());
        }
        let (r, dd) = (rows as i64, d as i64);
        launch!(self, "bias_add_rows_f32", grid1d(rows * d), &mut y.data, &bias.data, &r, &dd)
    }

    /// out (d) += column sums of x (rows, d).
    pub(crate) fn k_col_sums_accum(&self, x: &F, out: &mut F, rows: usize, d: usize) -> Result<()> {
        check("col_sums", "x", x.len, rows * d)?;
        check("col_sums", "out", out.len, d)?;
        if d == 0 {
            return Ok(());
        }
        let (r, dd) = (rows as i64, d as i64);
        launch!(self, "col_sums_accum_f32", grid1d(d), &x.data, &mut out.data, &r, &dd)
    }

    pub(crate) fn k_amsgrad(
        &self,
        cfg: &AdamConfig,
        step: u64,
        param: &mut F,
        grad: &F,
        m: &mut F,
        v: &mut F,
        vmax: &mut F,
    ) -> Result<()> {
        if step == 0 {
            return Err(MfdError::Shape { op: "amsgrad_step", msg: "step count is 1-based, got 0".into() });
        }
        for (name, len) in [("grad", grad.len), ("m", m.len), ("v", v.len), ("vmax", vmax.len)] {
            check("amsgrad_step", name, len, param.len)?;
        }
        if param.len == 0 {
            return Ok(());
        }
        // The CPU twin's scalars, in f64 then rounded to f32.
        let t = step as f64;
        let neg_step = (-(cfg.lr / (1.0 - cfg.beta1.powf(t)))) as f32;
        let bc2_sqrt = (1.0 - cfg.beta2.powf(t)).sqrt() as f32;
        let (w1, b2, w2) = ((1.0 - cfg.beta1) as f32, cfg.beta2 as f32, (1.0 - cfg.beta2) as f32);
        let (wd, use_wd, eps) = (cfg.weight_decay as f32, (cfg.weight_decay != 0.0) as i32, cfg.eps as f32);
        let n = param.len as i64;
        launch!(
            self,
            "amsgrad_f32",
            grid1d(param.len),
            &mut param.data,
            &grad.data,
            &mut m.data,
            &mut v.data,
            &mut vmax.data,
            &n,
            &neg_step,
            &bc2_sqrt,
            &w1,
            &b2,
            &w2,
            &wd,
            &use_wd,
            &eps
        )
    }
}
