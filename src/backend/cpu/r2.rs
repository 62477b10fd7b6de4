//! The per-feature correlation score `total_R2` (mfd-spec 4.3) used by the adversary:
//! S = sum_j clip((1/N) sum_n z(pred)_nj z(target)_nj, -1, 1)^2 with z the column standardisation (mean, unbiased
//! std, constant columns -> 0). Backward to both the prediction and the target; zero where the clip is active
//! (torch's clamp passes the gradient at exactly +-1).

use rayon::prelude::*;

use super::real::Real;
use super::standardize::{col_stats2, split_stats, standardize_bwd2};
use crate::backend::shapes::R2Shape;
use crate::backend::Reduce;
use crate::Result;

/// stats (see `R2Shape::stats_len`) written; returns S.
pub fn r2_score_fwd<T: Real>(
    s: R2Shape,
    pred: &[T],
    target: &[T],
    stats: &mut [T],
    red: &mut dyn Reduce,
) -> Result<f64> {
    let c = s.c;
    let mut st = vec![T::ZERO; 4 * c + 1];
    let n = col_stats2(pred, c, target, c, &mut st, red)?;
    let (cp, ct, _) = split_stats(&st, pred, c, target, c);
    let (zp, zt) = (cp.z(), ct.z());
    let rows = zp.len().checked_div(c).unwrap_or(0);
    let mut r: Vec<f64> = (0..c)
        .into_par_iter()
        .map(|j| (0..rows).map(|k| zp[k * c + j].to_f64() * zt[k * c + j].to_f64()).sum())
        .collect();
    red.sum(&mut r)?;
    stats[..4 * c].copy_from_slice(&st[..4 * c]);
    let mut score = 0.0;
    for j in 0..c {
        let rj = if n > 0.0 { r[j] / n } else { 0.0 };
        stats[4 * c + j] = T::from_f64(rj);
        score += rj.clamp(-1.0, 1.0).powi(2);
    }
    stats[5 * c] = T::from_f64(n);
    Ok(score)
}

/// dpred, dtarget (N, C) written: gradient of dscore * S.
pub fn r2_score_bwd<T: Real>(
    s: R2Shape,
    pred: &[T],
    target: &[T],
    stats: &[T],
    dscore: f64,
    dpred: &mut [T],
    dtarget: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    let c = s.c;
    // Re-pack [mean_p, inv_p, mean_t, inv_t, N] for the shared standardisation helpers.
    let mut st: Vec<T> = stats[..4 * c].to_vec();
    st.push(stats[5 * c]);
    let (cp, ct, n) = split_stats(&st, pred, c, target, c);
    // d S / d r_j = 2 r_j inside [-1, 1], 0 outside; d r_j / d z = z_other / N.
    let g: Vec<T> = stats[4 * c..5 * c]
        .iter()
        .map(|&r| {
            let r = r.to_f64();
            let inside = (-1.0..=1.0).contains(&r);
            T::from_f64(if inside && n > 0.0 { dscore * 2.0 * r / n } else { 0.0 })
        })
        .collect();
    let (zp, zt) = (cp.z(), ct.z());
    if c > 0 {
        dpred.par_chunks_mut(c).zip(zt.par_chunks(c)).for_each(|(d, z)| {
            for j in 0..c {
                d[j] = g[j] * z[j];
            }
        });
        dtarget.par_chunks_mut(c).zip(zp.par_chunks(c)).for_each(|(d, z)| {
            for j in 0..c {
                d[j] = g[j] * z[j];
            }
        });
    }
    standardize_bwd2(n, &cp, dpred, &ct, dtarget, red)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::backend::NoReduce;
    use crate::rng::Rng;

    fn score(s: R2Shape, p: &[f64], t: &[f64]) -> f64 {
        let mut st = vec![0.0; s.stats_len()];
        r2_score_fwd(s, p, t, &mut st, &mut NoReduce).unwrap()
    }

    #[test]
    fn hand_cases() {
        // Column 0: perfect linear relation, r = (N - 1) / N = 0.75; column 1: constant prediction -> 0.
        let s = R2Shape { n: 4, c: 2 };
        let pred = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0];
        let target = [-2.0, 1.0, -4.0, 0.0, -6.0, 3.0, -8.0, 1.0];
        assert!((score(s, &pred, &target) - 0.5625).abs() < 1e-12);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(14);
        let s = R2Shape { n: 6, c: 3 };
        let pred = rand_vec(&mut rng, s.x_len(), 1.0);
        let target: Vec<f64> = rand_vec(&mut rng, s.x_len(), 1.0).iter().zip(&pred).map(|(a, b)| a + b).collect();
        let mut st = vec![0.0; s.stats_len()];
        r2_score_fwd(s, &pred, &target, &mut st, &mut NoReduce).unwrap();
        let (mut dp, mut dt) = (vec![0.0; s.x_len()], vec![0.0; s.x_len()]);
        let dscore = -1.3;
        r2_score_bwd(s, &pred, &target, &st, dscore, &mut dp, &mut dt, &mut NoReduce).unwrap();
        assert_close("r2 dpred", &dp, &fd_grad(&pred, |p| dscore * score(s, p, &target)), FD_TOL);
        assert_close("r2 dtarget", &dt, &fd_grad(&target, |t| dscore * score(s, &pred, t)), FD_TOL);
    }

    #[test]
    fn clipped_feature_gets_no_gradient() {
        // Stored r beyond 1 (possible only through rounding in f32; forced here) must give a zero gradient.
        let s = R2Shape { n: 3, c: 1 };
        let (p, t) = ([1.0, 2.0, 4.0], [0.0, 1.0, 5.0]);
        let mut st = vec![0.0; s.stats_len()];
        r2_score_fwd(s, &p, &t, &mut st, &mut NoReduce).unwrap();
        st[4] = 1.0 + 1e-9;
        let (mut dp, mut dt) = (vec![1.0; 3], vec![1.0; 3]);
        r2_score_bwd(s, &p, &t, &st, 1.0, &mut dp, &mut dt, &mut NoReduce).unwrap();
        assert!(dp.iter().chain(&dt).all(|&g| g == 0.0));
    }
}
