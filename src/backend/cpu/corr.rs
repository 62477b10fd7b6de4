//! The correlation-norm penalty (mfd-spec 4.1): R = z(a)^T z(b) / N (C_a x C_b) with z the column
//! standardisation (mean, unbiased std, constant columns -> 0), value ||R||_F; backward to both inputs.
//! Entries of R are Pearson r scaled by (N - 1) / N, as in the reference.

use rayon::prelude::*;

use super::real::Real;
use super::standardize::{col_stats2, split_stats, standardize_bwd2};
use crate::backend::shapes::CorrShape;
use crate::backend::Reduce;
use crate::Result;

/// R (C_a, C_b) and stats (see `CorrShape::stats_len`) written; returns ||R||_F.
pub fn corr_norm_fwd<T: Real>(
    s: CorrShape,
    a: &[T],
    b: &[T],
    r: &mut [T],
    stats: &mut [T],
    red: &mut dyn Reduce,
) -> Result<f64> {
    let n = col_stats2(a, s.c_a, b, s.c_b, stats, red)?;
    let (ca, cb, _) = split_stats(stats, a, s.c_a, b, s.c_b);
    let (za, zb) = (ca.z(), cb.z());
    let rows = za.len().checked_div(s.c_a).unwrap_or(0);
    // Local z_a^T z_b in f64, one row of R per task, then summed over ranks.
    let mut acc: Vec<f64> = (0..s.c_a)
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut row = vec![0.0f64; s.c_b];
            for k in 0..rows {
                let zai = za[k * s.c_a + i].to_f64();
                for (v, &zbj) in row.iter_mut().zip(&zb[k * s.c_b..(k + 1) * s.c_b]) {
                    *v += zai * zbj.to_f64();
                }
            }
            row
        })
        .collect();
    red.sum(&mut acc)?;
    let mut norm2 = 0.0;
    for (rv, &v) in r.iter_mut().zip(&acc) {
        let rij = if n > 0.0 { v / n } else { 0.0 };
        norm2 += rij * rij;
        *rv = T::from_f64(rij);
    }
    Ok(norm2.sqrt())
}

/// da (N, C_a), db (N, C_b) written: gradient of dvalue ||R||_F (zero when R = 0, as torch's norm backward).
pub fn corr_norm_bwd<T: Real>(
    s: CorrShape,
    a: &[T],
    b: &[T],
    r: &[T],
    stats: &[T],
    dvalue: f64,
    da: &mut [T],
    db: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    if s.c_a == 0 || s.c_b == 0 {
        da.fill(T::ZERO);
        db.fill(T::ZERO);
        return Ok(());
    }
    let (ca, cb, n) = split_stats(stats, a, s.c_a, b, s.c_b);
    let norm = r.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
    let g = if norm > 0.0 && n > 0.0 { dvalue / norm / n } else { 0.0 };
    // dR / N = g R; dz_a = z_b (g R)^T, dz_b = z_a (g R).
    let dr: Vec<T> = r.iter().map(|&v| T::from_f64(g * v.to_f64())).collect();
    let (za, zb) = (ca.z(), cb.z());
    {
        da.par_chunks_mut(s.c_a).zip(zb.par_chunks(s.c_b)).for_each(|(drow, zbrow)| {
            for (i, d) in drow.iter_mut().enumerate() {
                let mut acc = T::ZERO;
                for (j, &zbj) in zbrow.iter().enumerate().take(s.c_b) {
                    acc += zbj * dr[i * s.c_b + j];
                }
                *d = acc;
            }
        });
    }
    {
        db.par_chunks_mut(s.c_b).zip(za.par_chunks(s.c_a)).for_each(|(drow, zarow)| {
            drow.fill(T::ZERO);
            for (i, &zai) in zarow.iter().enumerate().take(s.c_a) {
                for (d, &dv) in drow.iter_mut().zip(&dr[i * s.c_b..(i + 1) * s.c_b]) {
                    *d += zai * dv;
                }
            }
        });
    }
    standardize_bwd2(n, &ca, da, &cb, db, red)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::backend::NoReduce;
    use crate::rng::Rng;

    fn value(s: CorrShape, a: &[f64], b: &[f64]) -> f64 {
        let (mut r, mut st) = (vec![0.0; s.r_len()], vec![0.0; s.stats_len()]);
        corr_norm_fwd(s, a, b, &mut r, &mut st, &mut NoReduce).unwrap()
    }

    #[test]
    fn perfectly_correlated_columns_give_n_minus_1_over_n() {
        // a = x, b = 3 x + 1 (one column each, N = 5): Pearson r = 1, R = (N - 1) / N = 0.8.
        let s = CorrShape { n: 5, c_a: 1, c_b: 1 };
        let a = [0.3f32, -1.2, 2.0, 0.7, 0.1];
        let b: Vec<f32> = a.iter().map(|v| 3.0 * v + 1.0).collect();
        let (mut r, mut st) = (vec![0.0f32; 1], vec![0.0f32; s.stats_len()]);
        let v = corr_norm_fwd(s, &a, &b, &mut r, &mut st, &mut NoReduce).unwrap();
        // f32 data, f64 statistics: agreement to a few f32 ulps.
        assert!((v - 0.8).abs() < 1e-6, "{v}");
        // Anti-correlated: R = -0.8, the norm is still 0.8.
        let neg: Vec<f64> = a.iter().map(|&v| -(v as f64)).collect();
        let pos: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        assert!((value(s, &pos, &neg) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn constant_column_contributes_nothing() {
        // b has a constant column (0.1, not exactly representable) next to a copy of a.
        let s = CorrShape { n: 4, c_a: 1, c_b: 2 };
        let a = [1.0f32, 2.0, 4.0, 8.0];
        let b = [0.1f32, 1.0, 0.1, 2.0, 0.1, 4.0, 0.1, 8.0];
        let (mut r, mut st) = (vec![0.0f32; 2], vec![0.0f32; s.stats_len()]);
        let v = corr_norm_fwd(s, &a, &b, &mut r, &mut st, &mut NoReduce).unwrap();
        assert_eq!(r[0], 0.0);
        assert!((r[1] - 0.75).abs() < 1e-6 && (v - 0.75).abs() < 1e-6, "{r:?} {v}");
        let (mut da, mut db) = (vec![9.0f32; 4], vec![9.0f32; 8]);
        corr_norm_bwd(s, &a, &b, &r, &st, 1.0, &mut da, &mut db, &mut NoReduce).unwrap();
        assert!((0..4).all(|k| db[2 * k] == 0.0), "{db:?}");
        // All columns constant: R = 0, value 0 and zero gradients (no NaN).
        let ones = [1.0f32; 4];
        let v = corr_norm_fwd(s, &ones, &[0.1f32; 8], &mut r, &mut st, &mut NoReduce).unwrap();
        assert_eq!(v, 0.0);
        corr_norm_bwd(s, &ones, &[0.1f32; 8], &r, &st, 1.0, &mut da, &mut db, &mut NoReduce).unwrap();
        assert!(da.iter().chain(&db).all(|&g| g == 0.0));
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(13);
        let s = CorrShape { n: 7, c_a: 3, c_b: 2 };
        let a = rand_vec(&mut rng, s.n * s.c_a, 1.0);
        let b: Vec<f64> = rand_vec(&mut rng, s.n * s.c_b, 1.0).iter().enumerate().map(|(i, v)| v + a[i % 3]).collect();
        let (mut r, mut st) = (vec![0.0; s.r_len()], vec![0.0; s.stats_len()]);
        corr_norm_fwd(s, &a, &b, &mut r, &mut st, &mut NoReduce).unwrap();
        let (mut da, mut db) = (vec![0.0; a.len()], vec![0.0; b.len()]);
        let dvalue = 0.7;
        corr_norm_bwd(s, &a, &b, &r, &st, dvalue, &mut da, &mut db, &mut NoReduce).unwrap();
        assert_close("corr da", &da, &fd_grad(&a, |a| dvalue * value(s, a, &b)), FD_TOL);
        assert_close("corr db", &db, &fd_grad(&b, |b| dvalue * value(s, &a, b)), FD_TOL);
    }
}
