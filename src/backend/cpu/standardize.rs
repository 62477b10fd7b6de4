//! Column standardisation of (N, C) matrices, shared by the correlation penalty and the R2 score:
//! z = (x - mean) / std with the unbiased std (N - 1), and its backward. Statistics are f64 sums over the global
//! batch (two passes: mean, then centred squares; partials summed across ranks through `Reduce`).
//!
//! Constant columns: the reference turns the 0/0 of a constant column into 0 (`nan_to_num`). Here a column whose
//! population std is at most 4 machine epsilons of |mean| (below the resolution of the values, so rounding noise
//! of the mean rather than signal) is constant: its invstd is stored as 0, so z = 0 and its gradient is 0.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::Reduce;
use crate::Result;

/// One (N, C) matrix and its saved statistics (mean and invstd, C each, as stored by `col_stats2`).
pub struct Cols<'a, T> {
    pub x: &'a [T],
    pub c: usize,
    pub mean: &'a [T],
    pub invstd: &'a [T],
}

impl<T: Real> Cols<'_, T> {
    /// z (N, C) of this matrix from its saved statistics (CPU scratch).
    pub fn z(&self) -> Vec<T> {
        let mut z = self.x.to_vec();
        if self.c > 0 {
            z.par_chunks_mut(self.c).for_each(|row| {
                for ((v, &m), &s) in row.iter_mut().zip(self.mean).zip(self.invstd) {
                    *v = (*v - m) * s;
                }
            });
        }
        z
    }
}

/// Per-column f64 sums of f(col, value) of an (N, C) matrix; columns in parallel.
fn col_sums<T: Real>(x: &[T], c: usize, f: impl Fn(usize, T) -> f64 + Sync) -> Vec<f64> {
    let n = x.len().checked_div(c).unwrap_or(0);
    (0..c).into_par_iter().map(|j| (0..n).map(|r| f(j, x[r * c + j])).sum()).collect()
}

/// Statistics of two matrices a (N, C_a), b (N, C_b) over the global batch, written as T into
/// out = [mean_a, invstd_a, mean_b, invstd_b, N]; returns N.
pub fn col_stats2<T: Real>(
    a: &[T],
    c_a: usize,
    b: &[T],
    c_b: usize,
    out: &mut [T],
    red: &mut dyn Reduce,
) -> Result<f64> {
    let n_local = a.len().checked_div(c_a).or(b.len().checked_div(c_b)).unwrap_or(0);
    let mut sums = col_sums(a, c_a, |_, v| v.to_f64());
    sums.extend(col_sums(b, c_b, |_, v| v.to_f64()));
    sums.push(n_local as f64);
    red.sum(&mut sums)?;
    let n = sums[c_a + c_b];
    let mean: Vec<f64> = sums[..c_a + c_b].iter().map(|s| if n > 0.0 { s / n } else { 0.0 }).collect();
    let mut m2 = col_sums(a, c_a, |j, v| (v.to_f64() - mean[j]).powi(2));
    m2.extend(col_sums(b, c_b, |j, v| (v.to_f64() - mean[c_a + j]).powi(2)));
    red.sum(&mut m2)?;
    let invstd: Vec<f64> = (0..c_a + c_b)
        .map(|j| {
            let constant = n < 2.0 || (m2[j] / n).sqrt() <= 4.0 * T::EPS.to_f64() * mean[j].abs();
            if constant {
                0.0
            } else {
                1.0 / (m2[j] / (n - 1.0)).sqrt()
            }
        })
        .collect();
    let (ma, rest) = out.split_at_mut(c_a);
    let (sa, rest) = rest.split_at_mut(c_a);
    let (mb, rest) = rest.split_at_mut(c_b);
    let (sb, rest) = rest.split_at_mut(c_b);
    for j in 0..c_a {
        ma[j] = T::from_f64(mean[j]);
        sa[j] = T::from_f64(invstd[j]);
    }
    for j in 0..c_b {
        mb[j] = T::from_f64(mean[c_a + j]);
        sb[j] = T::from_f64(invstd[c_a + j]);
    }
    rest[0] = T::from_f64(n);
    Ok(n)
}

/// Split saved statistics [mean_a, invstd_a, mean_b, invstd_b, N] into `Cols` views of a and b, plus N.
pub fn split_stats<'a, T: Real>(
    stats: &'a [T],
    a: &'a [T],
    c_a: usize,
    b: &'a [T],
    c_b: usize,
) -> (Cols<'a, T>, Cols<'a, T>, f64) {
    let n = stats[2 * (c_a + c_b)].to_f64();
    let ca = Cols { x: a, c: c_a, mean: &stats[..c_a], invstd: &stats[c_a..2 * c_a] };
    let cb =
        Cols { x: b, c: c_b, mean: &stats[2 * c_a..2 * c_a + c_b], invstd: &stats[2 * c_a + c_b..2 * (c_a + c_b)] };
    (ca, cb, n)
}

/// In place: `g` holds dL/dz on entry and dL/dx on exit, for both matrices.
/// dx = invstd (dz - sum(dz) / N - z sum(dz z) / (N - 1)) per column, sums over the global batch.
pub fn standardize_bwd2<T: Real>(
    n: f64,
    a: &Cols<'_, T>,
    ga: &mut [T],
    b: &Cols<'_, T>,
    gb: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    let (za, zb) = (a.z(), b.z());
    let mut sums = col_sums(ga, a.c, |_, v| v.to_f64());
    sums.extend(col_sums(&mul(ga, &za), a.c, |_, v| v.to_f64()));
    sums.extend(col_sums(gb, b.c, |_, v| v.to_f64()));
    sums.extend(col_sums(&mul(gb, &zb), b.c, |_, v| v.to_f64()));
    red.sum(&mut sums)?;
    let (sa, sb) = sums.split_at(2 * a.c);
    apply(n, a, &za, sa, ga);
    apply(n, b, &zb, sb, gb);
    Ok(())
}

/// Element-wise product in f64 precision (so the sum of dz z is not rounded to T term by term).
fn mul<T: Real>(x: &[T], y: &[T]) -> Vec<f64> {
    x.iter().zip(y).map(|(a, b)| a.to_f64() * b.to_f64()).collect()
}

fn apply<T: Real>(n: f64, m: &Cols<'_, T>, z: &[T], sums: &[f64], g: &mut [T]) {
    if m.c == 0 {
        return;
    }
    let mean_g: Vec<T> = sums[..m.c].iter().map(|s| T::from_f64(s / n)).collect();
    let cov_g: Vec<T> = sums[m.c..].iter().map(|s| T::from_f64(if n > 1.0 { s / (n - 1.0) } else { 0.0 })).collect();
    g.par_chunks_mut(m.c).zip(z.par_chunks(m.c)).for_each(|(grow, zrow)| {
        for j in 0..m.c {
            grow[j] = m.invstd[j] * (grow[j] - mean_g[j] - zrow[j] * cov_g[j]);
        }
    });
}
