//! Launchers of the ops whose statistics span the batch: batch norm, the Pearson (correlation-norm) penalty and
//! the R2 score. The O(N C) passes run on the GPU (moments.cu, batch_norm.cu, standardize.cu, corr.cu, r2.cu);
//! per-channel f64 partial sums come to the host, go through `Reduce` (the cross-rank hook, called exactly as the
//! CPU twin calls it, same lengths and order), and the per-channel scalars are computed with the twin's f64
//! formulas, then uploaded (C values each).

use super::launch::{check, grid1d, launch, per_block};
use super::ops::Mat;
use super::{CudaBackend, DevBuf};
use crate::backend::shapes::*;
use crate::backend::{Reduce, BN_EPS, BN_MOMENTUM};
use crate::{MfdError, Result};

type F = DevBuf<f32>;
type D = DevBuf<f64>;

/// Column statistics of two (N, C_a), (N, C_b) matrices over the global batch: the CPU twin's `col_stats2`.
struct Stats2 {
    /// [mean_a, invstd_a, mean_b, invstd_b, N] as stored in the `stats` buffers.
    packed: Vec<f32>,
    n: f64,
}

impl Stats2 {
    fn mean_a(&self, ca: usize) -> &[f32] {
        &self.packed[..ca]
    }
    fn inv_a(&self, ca: usize) -> &[f32] {
        &self.packed[ca..2 * ca]
    }
    fn mean_b(&self, ca: usize, cb: usize) -> &[f32] {
        &self.packed[2 * ca..2 * ca + cb]
    }
    fn inv_b(&self, ca: usize, cb: usize) -> &[f32] {
        &self.packed[2 * ca + cb..2 * (ca + cb)]
    }
}

impl CudaBackend {
    /// `red.sum` of a device-resident f64 vector (the `Reduce` hook's device form: nothing on one rank).
    fn reduce_dev(&self, v: &mut D, red: &mut dyn Reduce) -> Result<()> {
        red.sum_device(self, v)
    }

    /// Per-channel f64 sums over (B, L) of x (B, C, L): plain sums, or centred squares around `mean` (C).
    fn moments(&self, x: &F, b: usize, c: usize, l: usize, mean: Option<&D>) -> Result<Vec<f64>> {
        let mut out = self.zeros::<f64>(c)?;
        if c > 0 {
            let cfg = per_block(c, 1, 0)?;
            let [bb, cc, ll] = [b, c, l].map(|v| v as i64);
            match mean {
                Some(m) => launch!(self, "channel_moments_f64", cfg, &x.data, &bb, &cc, &ll, &m.data, &mut out.data)?,
                None => {
                    let null: u64 = 0;
                    launch!(self, "channel_moments_f64", cfg, &x.data, &bb, &cc, &ll, &null, &mut out.data)?
                }
            }
        }
        self.host_vec(&out)
    }

    /// [sum g (C), sum g z (C)] over the rows of (N, C) matrices g and z, f64.
    fn grad_moments(&self, g: &F, z: &F, n: usize, c: usize) -> Result<Vec<f64>> {
        let mut out = self.zeros::<f64>(2 * c)?;
        if c > 0 {
            let cfg = per_block(c, 1, 0)?;
            let [nn, cc, one] = [n as i64, c as i64, 1];
            launch!(self, "channel_grad_moments_f64", cfg, &g.data, &z.data, &nn, &cc, &one, &mut out.data)?;
        }
        self.host_vec(&out)
    }

    fn col_stats2(&self, a: &F, ca: usize, b: &F, cb: usize, rows: usize, red: &mut dyn Reduce) -> Result<Stats2> {
        let mut sums = self.moments(a, rows, ca, 1, None)?;
        sums.extend(self.moments(b, rows, cb, 1, None)?);
        sums.push(rows as f64);
        red.sum(&mut sums)?;
        let n = sums[ca + cb];
        let mean: Vec<f64> = sums[..ca + cb].iter().map(|s| if n > 0.0 { s / n } else { 0.0 }).collect();
        let mut m2 = self.moments(a, rows, ca, 1, Some(&self.dev_copy(&mean[..ca])?))?;
        m2.extend(self.moments(b, rows, cb, 1, Some(&self.dev_copy(&mean[ca..])?))?);
        red.sum(&mut m2)?;
        // Constant columns (population std within 4 f32 epsilons of |mean|) get invstd 0, as the twin.
        let invstd: Vec<f64> = (0..ca + cb)
            .map(|j| {
                let constant = n < 2.0 || (m2[j] / n).sqrt() <= 4.0 * f32::EPSILON as f64 * mean[j].abs();
                if constant {
                    0.0
                } else {
                    1.0 / (m2[j] / (n - 1.0)).sqrt()
                }
            })
            .collect();
        let mut packed = Vec::with_capacity(2 * (ca + cb) + 1);
        packed.extend(mean[..ca].iter().map(|&v| v as f32));
        packed.extend(invstd[..ca].iter().map(|&v| v as f32));
        packed.extend(mean[ca..].iter().map(|&v| v as f32));
        packed.extend(invstd[ca..].iter().map(|&v| v as f32));
        packed.push(n as f32);
        Ok(Stats2 { packed, n })
    }

    /// z (N, C) = (x - mean) invstd, into a new buffer.
    fn standardize(&self, x: &F, mean: &[f32], invstd: &[f32], rows: usize, c: usize) -> Result<F> {
        let mut z = self.zeros::<f32>(rows * c)?;
        if rows * c > 0 {
            let (m, s) = (self.dev_copy(mean)?, self.dev_copy(invstd)?);
            let (nn, cc) = (rows as i64, c as i64);
            launch!(self, "standardize_f32", grid1d(rows * c), &x.data, &m.data, &s.data, &mut z.data, &nn, &cc)?;
        }
        Ok(z)
    }

    /// The twin's `standardize_bwd2`: ga, gb hold dL/dz on entry and dL/dx on exit.
    fn standardize_bwd2(
        &self,
        n: f64,
        rows: usize,
        (za, inv_a, ga): (&F, &[f32], &mut F),
        (zb, inv_b, gb): (&F, &[f32], &mut F),
        red: &mut dyn Reduce,
    ) -> Result<()> {
        let (ca, cb) = (inv_a.len(), inv_b.len());
        let mut sums = self.grad_moments(ga, za, rows, ca)?;
        sums.extend(self.grad_moments(gb, zb, rows, cb)?);
        red.sum(&mut sums)?;
        let (sa, sb) = sums.split_at(2 * ca);
        for (z, inv, g, s, c) in [(za, inv_a, ga, sa, ca), (zb, inv_b, gb, sb, cb)] {
            if c == 0 || rows == 0 {
                continue;
            }
            let mean_g: Vec<f32> = s[..c].iter().map(|v| (v / n) as f32).collect();
            let cov_g: Vec<f32> = s[c..].iter().map(|v| (if n > 1.0 { v / (n - 1.0) } else { 0.0 }) as f32).collect();
            let (inv_d, mg, cg) = (self.dev_copy(inv)?, self.dev_copy(&mean_g)?, self.dev_copy(&cov_g)?);
            let (nn, cc) = (rows as i64, c as i64);
            launch!(
                self,
                "standardize_bwd_f32",
                grid1d(rows * c),
                &mut g.data,
                &z.data,
                &inv_d.data,
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
        let st = self.col_stats2(a, ca, b, cb, s.n, red)?;
        self.put(stats, &st.packed)?;
        let za = self.standardize(a, st.mean_a(ca), st.inv_a(ca), s.n, ca)?;
        let zb = self.standardize(b, st.mean_b(ca, cb), st.inv_b(ca, cb), s.n, cb)?;
        let mut acc_d = self.zeros::<f64>(ca * cb)?;
        if ca * cb > 0 {
            let [nn, a_, b_] = [s.n, ca, cb].map(|v| v as i64);
            launch!(self, "corr_cross_f64", grid1d(ca * cb), &za.data, &zb.data, &nn, &a_, &b_, &mut acc_d.data)?;
        }
        let mut acc = self.host_vec(&acc_d)?;
        red.sum(&mut acc)?;
        let mut norm2 = 0.0;
        let rh: Vec<f32> = acc
            .iter()
            .map(|&v| {
                let rij = if st.n > 0.0 { v / st.n } else { 0.0 };
                norm2 += rij * rij;
                rij as f32
            })
            .collect();
        self.put(r, &rh)?;
        Ok(norm2.sqrt() as f32)
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
        let st = self.host_vec(stats)?;
        let n = st[2 * (ca + cb)] as f64;
        let rh = self.host_vec(r)?;
        let norm = rh.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let g = if norm > 0.0 && n > 0.0 { dvalue as f64 / norm / n } else { 0.0 };
        let dr: Vec<f32> = rh.iter().map(|&v| (g * v as f64) as f32).collect();
        let dr = self.dev_copy(&dr)?;
        let (mean_a, inv_a) = (&st[..ca], &st[ca..2 * ca]);
        let (mean_b, inv_b) = (&st[2 * ca..2 * ca + cb], &st[2 * ca + cb..2 * (ca + cb)]);
        let za = self.standardize(a, mean_a, inv_a, s.n, ca)?;
        let zb = self.standardize(b, mean_b, inv_b, s.n, cb)?;
        // dza (N, C_a) = zb dR^T; dzb (N, C_b) = za dR.
        let zb_m = Mat { buf: &zb, offset: 0, ld: cb, trans: false };
        self.k_gemm(s.n, ca, cb, 1.0, zb_m, Mat { buf: &dr, offset: 0, ld: cb, trans: true }, 0.0, da, 0, ca)?;
        let za_m = Mat { buf: &za, offset: 0, ld: ca, trans: false };
        self.k_gemm(s.n, cb, ca, 1.0, za_m, Mat { buf: &dr, offset: 0, ld: cb, trans: false }, 0.0, db, 0, cb)?;
        self.standardize_bwd2(n, s.n, (&za, inv_a, da), (&zb, inv_b, db), red)
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
        let st = self.col_stats2(pred, c, target, c, s.n, red)?;
        let zp = self.standardize(pred, st.mean_a(c), st.inv_a(c), s.n, c)?;
        let zt = self.standardize(target, st.mean_b(c, c), st.inv_b(c, c), s.n, c)?;
        let mut r_d = self.zeros::<f64>(c)?;
        if c > 0 {
            let (nn, cc) = (s.n as i64, c as i64);
            launch!(self, "r2_col_dot_f64", grid1d(c), &zp.data, &zt.data, &nn, &cc, &mut r_d.data)?;
        }
        let mut r = self.host_vec(&r_d)?;
        red.sum(&mut r)?;
        let mut packed = st.packed[..4 * c].to_vec();
        let mut score = 0.0;
        for rv in &r {
            let rj = if st.n > 0.0 { rv / st.n } else { 0.0 };
            packed.push(rj as f32);
            score += rj.clamp(-1.0, 1.0).powi(2);
        }
        packed.push(st.n as f32);
        self.put(stats, &packed)?;
        Ok(score as f32)
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
        let st = self.host_vec(stats)?;
        let n = st[5 * c] as f64;
        let g: Vec<f32> = st[4 * c..5 * c]
            .iter()
            .map(|&r| {
                let r = r as f64;
                let inside = (-1.0..=1.0).contains(&r);
                (if inside && n > 0.0 { dscore as f64 * 2.0 * r / n } else { 0.0 }) as f32
            })
            .collect();
        let (mean_p, inv_p, mean_t, inv_t) = (&st[..c], &st[c..2 * c], &st[2 * c..3 * c], &st[3 * c..4 * c]);
        let zp = self.standardize(pred, mean_p, inv_p, s.n, c)?;
        let zt = self.standardize(target, mean_t, inv_t, s.n, c)?;
        if s.x_len() > 0 {
            let g = self.dev_copy(&g)?;
            let (nn, cc) = (s.n as i64, c as i64);
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
        self.standardize_bwd2(n, s.n, (&zp, inv_p, dpred), (&zt, inv_t, dtarget), red)
    }
}
