//! Launchers of the ops whose statistics span the batch: batch norm, the Pearson (correlation-norm) penalty and
//! the R2 score, finished on the device (issue 19 item 2). The O(N C) passes (moments.cu, batch_norm.cu,
//! standardize.cu, corr.cu, r2.cu) write per-channel f64 partial sums with the sample count appended; these go
//! through `Reduce::sum_device` (the cross-rank hook, called exactly as the CPU twin calls `Reduce::sum`: same
//! vectors, lengths and order; nothing on one rank), and small kernels compute the per-channel scalars with the
//! twin's f64 formulas. Only the penalty values (`corr_norm_fwd`, `r2_score_fwd`) come back to the host.

use super::launch::{check, grid1d, launch, per_block};
use super::ops::Mat;
use super::{CudaBackend, DevBuf};
use crate::backend::shapes::*;
use crate::backend::{Reduce, BN_EPS, BN_MOMENTUM};
use crate::{MfdError, Result};

type F = DevBuf<f32>;
type D = DevBuf<f64>;

impl CudaBackend {
    /// `red.sum` of a device-resident f64 vector (the `Reduce` hook's device form: nothing on one rank).
    fn reduce_dev(&self, v: &mut D, red: &mut dyn Reduce) -> Result<()> {
        red.sum_device(self, v)
    }

    /// out[off .. off + c] = per-column f64 sums of x (rows, c): plain, or centred squares around
    /// mean[mean_off .. mean_off + c].
    fn col_moments_into(
        &self,
        x: &F,
        rows: usize,
        c: usize,
        mean: Option<(&D, usize)>,
        out: &mut D,
        off: usize,
    ) -> Result<()> {
        if c == 0 {
            return Ok(());
        }
        let cfg = per_block(c, 1, 0)?;
        let [bb, cc, ll] = [rows as i64, c as i64, 1];
        let mut view = out.data.slice_mut(off..off + c);
        match mean {
            Some((m, m_off)) => {
                let mv = m.data.slice(m_off..m_off + c);
                launch!(self, "channel_moments_f64", cfg, &x.data, &bb, &cc, &ll, &mv, &mut view)
            }
            None => {
                let null: u64 = 0;
                launch!(self, "channel_moments_f64", cfg, &x.data, &bb, &cc, &ll, &null, &mut view)
            }
        }
    }

    /// out[off .. off + 2c] = [sum g (c), sum g z (c)] over the rows of (rows, c) matrices g and z, f64.
    fn grad_moments_into(&self, g: &F, z: &F, rows: usize, c: usize, out: &mut D, off: usize) -> Result<()> {
        if c == 0 {
            return Ok(());
        }
        let cfg = per_block(c, 1, 0)?;
        let [nn, cc, one] = [rows as i64, c as i64, 1];
        let mut view = out.data.slice_mut(off..off + 2 * c);
        launch!(self, "channel_grad_moments_f64", cfg, &g.data, &z.data, &nn, &cc, &one, &mut view)
    }

    /// The twin's `col_stats2` on the device: the column statistics of a (rows, C_a) and b (rows, C_b) over the
    /// global batch, packed into `out` ([mean_a, invstd_a, mean_b, invstd_b], out[n_at] = n); returns the global
    /// sums [sum a, sum b, n] (its last element is the count later kernels read). The two vectors summed across
    /// ranks are the twin's (same lengths, same order).
    fn col_stats2(
        &self,
        (a, ca): (&F, usize),
        (b, cb): (&F, usize),
        rows: usize,
        out: &mut F,
        n_at: usize,
        red: &mut dyn Reduce,
    ) -> Result<D> {
        let k = ca + cb;
        let mut sums = self.zeros::<f64>(k + 1)?;
        self.col_moments_into(a, rows, ca, None, &mut sums, 0)?;
        self.col_moments_into(b, rows, cb, None, &mut sums, ca)?;
        let (kk, n) = (k as i64, rows as f64);
        launch!(self, "put_count_f64", grid1d(1), &mut sums.data, &kk, &n)?;
        self.reduce_dev(&mut sums, red)?;
        let mut mean = self.zeros::<f64>(k)?;
        let mut m2 = self.zeros::<f64>(k)?;
        if k > 0 {
            launch!(self, "col_mean_f64", grid1d(k), &sums.data, &kk, &mut mean.data)?;
        }
        self.col_moments_into(a, rows, ca, Some((&mean, 0)), &mut m2, 0)?;
        self.col_moments_into(b, rows, cb, Some((&mean, ca)), &mut m2, ca)?;
        self.reduce_dev(&mut m2, red)?;
        let [a_, b_, at] = [ca, cb, n_at].map(|v| v as i64);
        launch!(
            self,
            "col_stats_finish_f32",
            grid1d(k),
            &sums.data,
            &mean.data,
            &m2.data,
            &a_,
            &b_,
            &at,
            &mut out.data
        )?;
        Ok(sums)
    }

    /// z (rows, c) = (x - mean) invstd into a new buffer, mean and invstd at offsets of the packed statistics.
    fn standardize(&self, x: &F, st: &F, (mean_at, inv_at): (usize, usize), rows: usize, c: usize) -> Result<F> {
        let mut z = self.zeros::<f32>(rows * c)?;
        if rows * c > 0 {
            let (m, s) = (st.data.slice(mean_at..mean_at + c), st.data.slice(inv_at..inv_at + c));
            let (nn, cc) = (rows as i64, c as i64);
            launch!(self, "standardize_f32", grid1d(rows * c), &x.data, &m, &s, &mut z.data, &nn, &cc)?;
        }
        Ok(z)
    }

    /// The twin's `standardize_bwd2`: ga, gb hold dL/dz on entry and dL/dx on exit; invstd at offsets of the packed
    /// statistics `st`, whose element n_at is the count.
    fn standardize_bwd2(
        &self,
        rows: usize,
        (st, n_at): (&F, usize),
        (za, inv_a, ga, ca): (&F, usize, &mut F, usize),
        (zb, inv_b, gb, cb): (&F, usize, &mut F, usize),
        red: &mut dyn Reduce,
    ) -> Result<()> {
        let mut sums = self.zeros::<f64>(2 * (ca + cb))?;
        self.grad_moments_into(ga, za, rows, ca, &mut sums, 0)?;
        self.grad_moments_into(gb, zb, rows, cb, &mut sums, 2 * ca)?;
        self.reduce_dev(&mut sums, red)?;
        for (z, inv_at, g, c, off) in [(za, inv_a, ga, ca, 0), (zb, inv_b, gb, cb, 2 * ca)] {
            if c == 0 || rows == 0 {
                continue;
            }
            let (mut mg, mut cg) = (self.zeros::<f32>(c)?, self.zeros::<f32>(c)?);
            let (nn, cc, at) = (rows as i64, c as i64, n_at as i64);
            let sv = sums.data.slice(off..off + 2 * c);
            launch!(self, "std_bwd_scalars_f32", grid1d(c), &sv, &cc, &st.data, &at, &mut mg.data, &mut cg.data)?;
            let inv = st.data.slice(inv_at..inv_at + c);
            launch!(
                self,
                "standardize_bwd_f32",
                grid1d(rows * c),
                &mut g.data,
                &z.data,
                &inv,
                &mg.data,
                &cg.data,
                &nn,
                &cc
            )?;
        }
        Ok(())
    }

    pub(crate) fn k_bn_train_fwd(
        &self,
        s: BnShape,
        x: &F,
        gamma: &F,
        beta: &F,
        running: (&mut F, &mut F),
        save: (&mut F, &mut F),
        y: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "batch_norm";
        let ((rm, rv), (sm, si)) = (running, save);
        check(OP, "x", x.len, s.x_len())?;
        check(OP, "y", y.len, s.x_len())?;
        for (name, len) in [("gamma", gamma.len), ("beta", beta.len), ("running_mean", rm.len)] {
            check(OP, name, len, s.c)?;
        }
        for (name, len) in [("running_var", rv.len), ("save_mean", sm.len), ("save_invstd", si.len)] {
            check(OP, name, len, s.c)?;
        }
        // Pass 1: [sums (C), count], summed over ranks in device memory; the mean is sums / count.
        let mut sums = self.zeros::<f64>(s.c + 1)?;
        let [b, c, l] = [s.b, s.c, s.l].map(|v| v as i64);
        launch!(self, "bn_fwd_sums_f64", per_block(s.c, 1, 0)?, &x.data, &b, &c, &l, &mut sums.data)?;
        self.reduce_dev(&mut sums, red)?;
        // The twin's error for n < 2; the global count is known without a download unless this rank has < 2.
        if s.b * s.l < 2 {
            let n = self.host_vec(&sums)?[s.c];
            if n < 2.0 {
                return Err(MfdError::Shape { op: OP, msg: format!("training needs > 1 value per channel, got {n}") });
            }
        }
        // Pass 2: centred sums of squares, summed over ranks; then the scalars, all on the device.
        let mut m2 = self.zeros::<f64>(s.c)?;
        launch!(self, "bn_fwd_m2_f64", per_block(s.c, 1, 0)?, &x.data, &b, &c, &l, &sums.data, &mut m2.data)?;
        self.reduce_dev(&mut m2, red)?;
        if s.c > 0 {
            let (eps, keep, mom) = (BN_EPS, (1.0 - BN_MOMENTUM) as f32, BN_MOMENTUM as f32);
            launch!(
                self,
                "bn_fwd_finish_f32",
                grid1d(s.c),
                &sums.data,
                &m2.data,
                &c,
                &eps,
                &keep,
                &mom,
                &mut rm.data,
                &mut rv.data,
                &mut sm.data,
                &mut si.data
            )?;
        }
        self.bn_normalise(s, x, gamma, beta, sm, si, y)
    }

    fn bn_normalise(&self, s: BnShape, x: &F, gamma: &F, beta: &F, mean: &F, invstd: &F, y: &mut F) -> Result<()> {
        if s.x_len() == 0 {
            return Ok(());
        }
        let [b, c, l] = [s.b, s.c, s.l].map(|v| v as i64);
        launch!(
            self,
            "bn_normalise_f32",
            grid1d(s.x_len()),
            &x.data,
            &gamma.data,
            &beta.data,
            &mean.data,
            &invstd.data,
            &mut y.data,
            &b,
            &c,
            &l
        )
    }

    pub(crate) fn k_bn_eval_fwd(
        &self,
        s: BnShape,
        x: &F,
        gamma: &F,
        beta: &F,
        running_mean: &F,
        running_var: &F,
        y: &mut F,
    ) -> Result<()> {
        const OP: &str = "batch_norm_eval";
        check(OP, "x", x.len, s.x_len())?;
        check(OP, "y", y.len, s.x_len())?;
        for (name, len) in [
            ("gamma", gamma.len),
            ("beta", beta.len),
            ("running_mean", running_mean.len),
            ("running_var", running_var.len),
        ] {
            check(OP, name, len, s.c)?;
        }
        let mut inv = self.zeros::<f32>(s.c)?;
        if s.c > 0 {
            let (c, eps) = (s.c as i64, BN_EPS);
            launch!(self, "bn_eval_invstd_f32", grid1d(s.c), &running_var.data, &c, &eps, &mut inv.data)?;
        }
        self.bn_normalise(s, x, gamma, beta, running_mean, &inv, y)
    }

    pub(crate) fn k_bn_bwd(
        &self,
        s: BnShape,
        (x, dy, gamma): (&F, &F, &F),
        (save_mean, save_invstd): (&F, &F),
        dx: &mut F,
        (dgamma, dbeta): (&mut F, &mut F),
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "batch_norm_bwd";
        for (name, len) in [("x", x.len), ("dy", dy.len), ("dx", dx.len)] {
            check(OP, name, len, s.x_len())?;
        }
        for (name, len) in [
            ("gamma", gamma.len),
            ("save_mean", save_mean.len),
            ("save_invstd", save_invstd.len),
            ("dgamma", dgamma.len),
            ("dbeta", dbeta.len),
        ] {
            check(OP, name, len, s.c)?;
        }
        let mut local = self.zeros::<f64>(2 * s.c + 1)?;
        let [b, c, l] = [s.b, s.c, s.l].map(|v| v as i64);
        if s.c > 0 {
            let cfg = per_block(s.c, 1, 0)?;
            launch!(
                self,
                "bn_bwd_sums_f64",
                cfg,
                &x.data,
                &dy.data,
                &save_mean.data,
                &save_invstd.data,
                &b,
                &c,
                &l,
                &mut local.data
            )?;
        }
        // The parameter gradients from this rank's sums, the count appended; then the sums over ranks.
        let n_local = (s.b * s.l) as f64;
        launch!(
            self,
            "bn_bwd_params_f32",
            grid1d(s.c),
            &mut local.data,
            &c,
            &n_local,
            &mut dgamma.data,
            &mut dbeta.data
        )?;
        self.reduce_dev(&mut local, red)?;
        if s.x_len() == 0 {
            return Ok(());
        }
        let (mut mdy, mut mdyx) = (self.zeros::<f32>(s.c)?, self.zeros::<f32>(s.c)?);
        launch!(self, "bn_bwd_means_f32", grid1d(s.c), &local.data, &c, &mut mdy.data, &mut mdyx.data)?;
        launch!(
            self,
            "bn_bwd_dx_f32",
            grid1d(s.x_len()),
            &x.data,
            &dy.data,
            &gamma.data,
            &save_mean.data,
            &save_invstd.data,
            &mdy.data,
            &mdyx.data,
            &mut dx.data,
            &b,
            &c,
            &l
        )
    }

    pub(crate) fn k_corr_fwd(
        &self,
        s: CorrShape,
        a: &F,
        b: &F,
        r: &mut F,
        stats: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<f32> {
        check("corr_norm", "a", a.len, s.n * s.c_a)?;
        check("corr_norm", "b", b.len, s.n * s.c_b)?;
        check("corr_norm", "r", r.len, s.r_len())?;
        check("corr_norm", "stats", stats.len, s.stats_len())?;
        let (ca, cb) = (s.c_a, s.c_b);
        let n_at = 2 * (ca + cb);
        let sums = self.col_stats2((a, ca), (b, cb), s.n, stats, n_at, red)?;
        let za = self.standardize(a, stats, (0, ca), s.n, ca)?;
        let zb = self.standardize(b, stats, (2 * ca, 2 * ca + cb), s.n, cb)?;
        let mut acc = self.zeros::<f64>(ca * cb)?;
        if ca * cb > 0 {
            let [nn, a_, b_] = [s.n, ca, cb].map(|v| v as i64);
            launch!(self, "corr_cross_f64", grid1d(ca * cb), &za.data, &zb.data, &nn, &a_, &b_, &mut acc.data)?;
        }
        self.reduce_dev(&mut acc, red)?;
        let mut value = self.zeros::<f32>(1)?;
        let (k, at) = ((ca * cb) as i64, (ca + cb) as i64);
        launch!(
            self,
            "corr_finish_f32",
            per_block(1, 1, 0)?,
            &acc.data,
            &k,
            &sums.data,
            &at,
            &mut r.data,
            &mut value.data
        )?;
        Ok(self.read_scalar(&value)?.unwrap_or(f32::NAN))
    }

    pub(crate) fn k_corr_bwd(
        &self,
        s: CorrShape,
        (a, b, r, stats): (&F, &F, &F, &F),
        dvalue: f32,
        da: &mut F,
        db: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        const OP: &str = "corr_norm_bwd";
        check(OP, "a", a.len, s.n * s.c_a)?;
        check(OP, "b", b.len, s.n * s.c_b)?;
        check(OP, "da", da.len, s.n * s.c_a)?;
        check(OP, "db", db.len, s.n * s.c_b)?;
        check(OP, "r", r.len, s.r_len())?;
        check(OP, "stats", stats.len, s.stats_len())?;
        let (ca, cb) = (s.c_a, s.c_b);
        if ca == 0 || cb == 0 {
            self.k_fill(da, 0.0)?;
            return self.k_fill(db, 0.0);
        }
        let n_at = 2 * (ca + cb);
        let mut dr = self.zeros::<f32>(ca * cb)?;
        let (k, at) = ((ca * cb) as i64, n_at as i64);
        launch!(self, "corr_bwd_dr_f32", per_block(1, 1, 0)?, &r.data, &k, &stats.data, &at, &dvalue, &mut dr.data)?;
        let za = self.standardize(a, stats, (0, ca), s.n, ca)?;
        let zb = self.standardize(b, stats, (2 * ca, 2 * ca + cb), s.n, cb)?;
        // dza (N, C_a) = zb dR^T; dzb (N, C_b) = za dR.
        let zb_m = Mat { buf: &zb, offset: 0, ld: cb, trans: false };
        self.k_gemm(s.n, ca, cb, 1.0, zb_m, Mat { buf: &dr, offset: 0, ld: cb, trans: true }, 0.0, da, 0, ca)?;
        let za_m = Mat { buf: &za, offset: 0, ld: ca, trans: false };
        self.k_gemm(s.n, cb, ca, 1.0, za_m, Mat { buf: &dr, offset: 0, ld: cb, trans: false }, 0.0, db, 0, cb)?;
        self.standardize_bwd2(s.n, (stats, n_at), (&za, ca, da, ca), (&zb, 2 * ca + cb, db, cb), red)
    }

    pub(crate) fn k_r2_fwd(
        &self,
        s: R2Shape,
        pred: &F,
        target: &F,
        stats: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<f32> {
        check("r2_score", "pred", pred.len, s.x_len())?;
        check("r2_score", "target", target.len, s.x_len())?;
        check("r2_score", "stats", stats.len, s.stats_len())?;
        let c = s.c;
        let sums = self.col_stats2((pred, c), (target, c), s.n, stats, 5 * c, red)?;
        let zp = self.standardize(pred, stats, (0, c), s.n, c)?;
        let zt = self.standardize(target, stats, (2 * c, 3 * c), s.n, c)?;
        let mut dot = self.zeros::<f64>(c)?;
        let (nn, cc) = (s.n as i64, c as i64);
        if c > 0 {
            launch!(self, "r2_col_dot_f64", grid1d(c), &zp.data, &zt.data, &nn, &cc, &mut dot.data)?;
        }
        self.reduce_dev(&mut dot, red)?;
        let mut score = self.zeros::<f32>(1)?;
        launch!(
            self,
            "r2_finish_f32",
            per_block(1, 1, 0)?,
            &dot.data,
            &cc,
            &sums.data,
            &mut stats.data,
            &mut score.data
        )?;
        Ok(self.read_scalar(&score)?.unwrap_or(f32::NAN))
    }

    pub(crate) fn k_r2_bwd(
        &self,
        s: R2Shape,
        (pred, target, stats): (&F, &F, &F),
        dscore: f32,
        dpred: &mut F,
        dtarget: &mut F,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        for (name, len) in [("pred", pred.len), ("target", target.len), ("dpred", dpred.len), ("dtarget", dtarget.len)]
        {
            check("r2_score_bwd", name, len, s.x_len())?;
        }
        check("r2_score_bwd", "stats", stats.len, s.stats_len())?;
        let c = s.c;
        let (nn, cc) = (s.n as i64, c as i64);
        let mut g = self.zeros::<f32>(c)?;
        if c > 0 {
            launch!(self, "r2_bwd_scale_f32", grid1d(c), &stats.data, &cc, &dscore, &mut g.data)?;
        }
        let zp = self.standardize(pred, stats, (0, c), s.n, c)?;
        let zt = self.standardize(target, stats, (2 * c, 3 * c), s.n, c)?;
        if s.x_len() > 0 {
            launch!(
                self,
                "r2_grad_f32",
                grid1d(s.x_len()),
                &zp.data,
                &zt.data,
                &g.data,
                &mut dpred.data,
                &mut dtarget.data,
                &nn,
                &cc
            )?;
        }
        self.standardize_bwd2(s.n, (stats, 5 * c), (&zp, c, dpred, c), (&zt, 3 * c, dtarget, c), red)
    }
}
