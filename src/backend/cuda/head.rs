//! Launchers of the fused output layer + BCE (kernels/head_bce.cu): the forward is one tiled kernel (logits,
//! sigmoid, clamped log terms, one f64 atomic per block for the loss); the backward is the dz kernel plus cuBLAS
//! products on column slices of the (B, 2C) features: d_features = [dz W_tech | dz W_bio], dW_half += dz^T f_half.

use super::launch::{check, grid1d, launch, tiles16};
use super::ops::Mat;
use super::{CudaBackend, DevBuf};
use crate::backend::shapes::HeadShape;
use crate::Result;

type F = DevBuf<f32>;
type U8 = DevBuf<u8>;

impl CudaBackend {
    fn check_head(&self, s: HeadShape, op: &'static str, f: &F, wt: &F, wb: &F, bias: &F) -> Result<()> {
        s.validate()?;
        check(op, "features", f.len, s.features_len())?;
        check(op, "w_tech", wt.len, s.weight_len())?;
        check(op, "w_bio", wb.len, s.weight_len())?;
        check(op, "bias", bias.len, s.o)
    }

    pub(crate) fn k_head_bce_fwd(
        &self,
        s: HeadShape,
        (features, w_tech, w_bio, bias): (&F, &F, &F, &F),
        labels: &U8,
        probs: &mut F,
    ) -> Result<f32> {
        self.check_head(s, "head_bce", features, w_tech, w_bio, bias)?;
        check("head_bce", "labels", labels.len, s.labels_len())?;
        check("head_bce", "probs", probs.len, s.out_len())?;
        if s.o == 0 || s.b == 0 {
            return Ok(0.0);
        }
        let mut loss = self.zeros::<f64>(1)?;
        let null: u64 = 0;
        let mode: i32 = 0;
        let [b, c, o, rb] = [s.b, s.c, s.o, s.row_bytes].map(|v| v as i64);
        launch!(
            self,
            "head_fwd_f32",
            tiles16(s.b, s.o)?,
            &features.data,
            &w_tech.data,
            &w_bio.data,
            &bias.data,
            &labels.data,
            &mut probs.data,
            &null,
            &null,
            &mut loss.data,
            &b,
            &c,
            &o,
            &rb,
            &mode
        )?;
        Ok(self.read_scalar(&loss)?.map_or(f32::NAN, |total| (total / (s.b * s.o) as f64) as f32))
    }

    pub(crate) fn k_head_bce_bwd(
        &self,
        s: HeadShape,
        (features, w_tech, w_bio, probs, labels): (&F, &F, &F, &F, &U8),
        dz: &mut F,
        d_features: &mut F,
        (dw_tech, dw_bio, dbias): (&mut F, &mut F, &mut F),
    ) -> Result<()> {
        const OP: &str = "head_bce_bwd";
        self.check_head(s, OP, features, w_tech, w_bio, dbias)?;
        check(OP, "labels", labels.len, s.labels_len())?;
        check(OP, "probs", probs.len, s.out_len())?;
        check(OP, "dz", dz.len, s.out_len())?;
        check(OP, "d_features", d_features.len, s.features_len())?;
        check(OP, "dw_tech", dw_tech.len, s.weight_len())?;
        check(OP, "dw_bio", dw_bio.len, s.weight_len())?;
        if s.o == 0 || s.b == 0 {
            return self.k_fill(d_features, 0.0);
        }
        let [b, o, rb] = [s.b, s.o, s.row_bytes].map(|v| v as i64);
        let count = (s.b * s.o) as f32;
        launch!(
            self,
            "head_bce_dz_f32",
            grid1d(s.out_len()),
            &probs.data,
            &labels.data,
            &mut dz.data,
            &b,
            &o,
            &rb,
            &count
        )?;
        let (c, dz) = (s.c, &*dz);
        for (half, w, dw) in [(0, w_tech, dw_tech), (1, w_bio, dw_bio)] {
            // d_features[:, half C .. (half + 1) C] (B, C) = dz (B, O) W (O, C).
            let dz_m = Mat { buf: dz, offset: 0, ld: s.o, trans: false };
            let w_m = Mat { buf: w, offset: 0, ld: c, trans: false };
            self.k_gemm(s.b, c, s.o, 1.0, dz_m, w_m, 0.0, d_features, half * c, 2 * c)?;
            // dW (O, C) += dz^T (O, B) f_half (B, C).
            let dzt = Mat { buf: dz, offset: 0, ld: s.o, trans: true };
            let f_m = Mat { buf: features, offset: half * c, ld: 2 * c, trans: false };
            self.k_gemm(s.o, c, s.b, 1.0, dzt, f_m, 1.0, dw, 0, c)?;
        }
        self.k_col_sums_accum(dz, dbias, s.b, s.o)
    }

    pub(crate) fn k_head_logits(
        &self,
        s: HeadShape,
        (features, w_tech, w_bio, bias): (&F, &F, &F, &F),
        logit_tech: &mut F,
        logit_bio: &mut F,
        probs: &mut F,
    ) -> Result<()> {
        self.check_head(s, "head_logits", features, w_tech, w_bio, bias)?;
        for (name, len) in [("logit_tech", logit_tech.len), ("logit_bio", logit_bio.len), ("probs", probs.len)] {
            check("head_logits", name, len, s.out_len())?;
        }
        if s.o == 0 || s.b == 0 {
            return Ok(());
        }
        let null: u64 = 0;
        let mode: i32 = 1;
        let [b, c, o, rb] = [s.b, s.c, s.o, s.row_bytes].map(|v| v as i64);
        launch!(
            self,
            "head_fwd_f32",
            tiles16(s.b, s.o)?,
            &features.data,
            &w_tech.data,
            &w_bio.data,
            &bias.data,
            &null,
            &mut probs.data,
            &mut logit_tech.data,
            &mut logit_bio.data,
            &null,
            &b,
            &c,
            &o,
            &rb,
            &mode
        )
    }
}
