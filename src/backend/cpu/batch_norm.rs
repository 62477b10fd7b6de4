//! BatchNorm1d over (B, C, L) activations (L = 1 for (B, F) matrices), as PyTorch: training mode normalises with
//! the batch mean and biased variance over (B, L) and updates the running statistics with momentum 0.1 and the
//! unbiased variance; eval mode uses the running statistics. Statistics are accumulated in f64 in two passes
//! (mean, then centred squares; each row summed in interleaved lanes so the loops vectorise), each pass's per-channel partials summed across ranks through `Reduce`.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::BnShape;
use crate::backend::{Reduce, BN_EPS, BN_MOMENTUM};
use crate::{MfdError, Result};

/// Accumulator lanes of the f64 sums: independent partial sums so the loops vectorise (a single running f64 sum
/// is a serial dependency chain); the lanes are added at the end.
const LANES: usize = 8;

/// (sum f(v), sum g(v)) over a row in f64, in LANES interleaved partial sums.
fn row_sums2<T: Real>(x: &[T], y: &[T], f: impl Fn(T, T) -> (f64, f64)) -> (f64, f64) {
    let (mut a, mut b) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for i in 0..LANES {
            let (u, v) = f(xs[i], ys[i]);
            a[i] += u;
            b[i] += v;
        }
    }
    let (mut sa, mut sb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    for (&xv, &yv) in xr.iter().zip(yr) {
        let (u, v) = f(xv, yv);
        sa += u;
        sb += v;
    }
    (sa, sb)
}

/// Per-channel f64 sums of f(c, value) over (B, L); channels in parallel.
fn channel_sums<T: Real>(s: BnShape, x: &[T], f: impl Fn(usize, T) -> f64 + Sync) -> Vec<f64> {
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            let mut acc = 0.0f64;
            for b in 0..s.b {
                let row = &x[(b * s.c + c) * s.l..(b * s.c + c + 1) * s.l];
                acc += row_sums2(row, row, |v, _| (f(c, v), 0.0)).0;
            }
            acc
        })
        .collect()
}

/// Training forward. Writes y (B, C, L), save_mean and save_invstd (C); updates running_mean / running_var (C).
pub fn bn_train_fwd<T: Real>(
    s: BnShape,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
    y: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    // Pass 1: sums and the sample count (last element), summed over ranks.
    let mut sums = channel_sums(s, x, |_, v| v.to_f64());
    sums.push((s.b * s.l) as f64);
    red.sum(&mut sums)?;
    let n = sums[s.c];
    if n < 2.0 {
        return Err(MfdError::Shape {
            op: "batch_norm",
            msg: format!("training needs > 1 value per channel, got {n}"),
        });
    }
    let mean: Vec<f64> = sums[..s.c].iter().map(|v| v / n).collect();
    // Pass 2: centred sums of squares.
    let mut m2 = channel_sums(s, x, |c, v| (v.to_f64() - mean[c]).powi(2));
    red.sum(&mut m2)?;
    for c in 0..s.c {
        let var_biased = m2[c] / n;
        let var_unbiased = m2[c] / (n - 1.0);
        save_mean[c] = T::from_f64(mean[c]);
        save_invstd[c] = T::from_f64(1.0 / (var_biased + BN_EPS).sqrt());
        let keep = T::from_f64(1.0 - BN_MOMENTUM);
        let mom = T::from_f64(BN_MOMENTUM);
        running_mean[c] = keep * running_mean[c] + mom * T::from_f64(mean[c]);
        running_var[c] = keep * running_var[c] + mom * T::from_f64(var_unbiased);
    }
    normalise(s, x, gamma, beta, save_mean, save_invstd, y);
    Ok(())
}

/// y = (x - mean) invstd gamma + beta, rows (b, c) in parallel.
fn normalise<T: Real>(s: BnShape, x: &[T], gamma: &[T], beta: &[T], mean: &[T], invstd: &[T], y: &mut [T]) {
    if s.l == 0 {
        return;
    }
    y.par_chunks_mut(s.l).enumerate().for_each(|(row, yrow)| {
        let c = row % s.c;
        let (mu, scale, shift) = (mean[c], invstd[c] * gamma[c], beta[c]);
        // Centre first: x - mean is exact-ish when the mean is large against the spread, whereas folding the
        // mean into the shift (x scale + (beta - mean scale)) cancels in f32 and adds round-off to the loss.
        for (yv, &xv) in yrow.iter_mut().zip(&x[row * s.l..(row + 1) * s.l]) {
            *yv = (xv - mu) * scale + shift;
        }
    });
}

/// Eval forward with the running statistics.
pub fn bn_eval_fwd<T: Real>(
    s: BnShape,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &[T],
    running_var: &[T],
    y: &mut [T],
) {
    let invstd: Vec<T> = running_var.iter().map(|&v| T::from_f64(1.0 / (v.to_f64() + BN_EPS).sqrt())).collect();
    normalise(s, x, gamma, beta, running_mean, &invstd, y);
}

/// Training backward: dx = gamma invstd / N (N dy - sum dy - xhat sum(dy xhat)) with the sums over the global
/// batch; dgamma += local sum(dy xhat), dbeta += local sum(dy).
pub fn bn_bwd<T: Real>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    // Local partials [sum dy (C), sum dy xhat (C), count].
    let sums: Vec<(f64, f64)> = (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (mu, inv) = (save_mean[c].to_f64(), save_invstd[c].to_f64());
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for b in 0..s.b {
                let r = (b * s.c + c) * s.l..(b * s.c + c + 1) * s.l;
                let (u, v) =
                    row_sums2(&dy[r.clone()], &x[r], |g, xv| (g.to_f64(), g.to_f64() * (xv.to_f64() - mu) * inv));
                sdy += u;
                sdyx += v;
            }
            (sdy, sdyx)
        })
        .collect();
    let mut global: Vec<f64> = sums.iter().map(|p| p.0).chain(sums.iter().map(|p| p.1)).collect();
    global.push((s.b * s.l) as f64);
    for c in 0..s.c {
        dbeta[c] += T::from_f64(sums[c].0);
        dgamma[c] += T::from_f64(sums[c].1);
    }
    red.sum(&mut global)?;
    let n = global[2 * s.c];
    if s.l == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(s.l).enumerate().for_each(|(row, dxrow)| {
        let c = row % s.c;
        let (mu, inv) = (save_mean[c], save_invstd[c]);
        let mean_dy = T::from_f64(global[c] / n);
        let mean_dyx = T::from_f64(global[s.c + c] / n);
        let k = gamma[c] * inv;
        let r = row * s.l..(row + 1) * s.l;
        for ((d, &g), &xv) in dxrow.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
            let xhat = (xv - mu) * inv;
            *d = k * (g - mean_dy - xhat * mean_dyx);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::backend::NoReduce;
    use crate::rng::Rng;

    #[test]
    fn running_statistics_update_as_pytorch() {
        // One channel, values 1, 2, 3, 4 (B = 2, L = 2): mean 2.5, biased var 1.25, unbiased var 5/3.
        let s = BnShape { b: 2, c: 1, l: 2 };
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let (mut rm, mut rv) = ([0.0f32], [1.0f32]);
        let (mut sm, mut si) = ([0.0f32], [0.0f32]);
        let mut y = [0.0f32; 4];
        bn_train_fwd(s, &x, &[1.0], &[0.0], &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut NoReduce).unwrap();
        // running_mean = 0.9 * 0 + 0.1 * 2.5; running_var = 0.9 * 1 + 0.1 * 5/3 (unbiased).
        assert!((rm[0] - 0.25).abs() < 1e-7, "{}", rm[0]);
        assert!((rv[0] as f64 - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-7, "{}", rv[0]);
        // Normalised with the biased variance and eps 1e-5.
        let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
        assert!((sm[0] - 2.5).abs() < 1e-7 && (si[0] as f64 - inv).abs() < 1e-6);
        assert!((y[0] as f64 - (-1.5 * inv)).abs() < 1e-6, "{}", y[0]);
        // Eval mode uses the running statistics.
        let mut ye = [0.0f32; 4];
        bn_eval_fwd(s, &x, &[2.0], &[1.0], &rm, &rv, &mut ye);
        let want = 2.0 * (1.0 - 0.25) / (rv[0] as f64 + 1e-5).sqrt() + 1.0;
        assert!((ye[0] as f64 - want).abs() < 1e-6, "{} vs {want}", ye[0]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(8);
        for s in [BnShape { b: 3, c: 2, l: 4 }, BnShape { b: 5, c: 3, l: 1 }] {
            let x = rand_vec(&mut rng, s.x_len(), 2.0);
            let gamma = rand_vec(&mut rng, s.c, 1.5);
            let beta = rand_vec(&mut rng, s.c, 1.0);
            let p = rand_vec(&mut rng, s.x_len(), 1.0);
            let run = |x: &[f64], gamma: &[f64], beta: &[f64]| {
                let (mut rm, mut rv, mut sm, mut si) = (vec![0.0; s.c], vec![1.0; s.c], vec![0.0; s.c], vec![0.0; s.c]);
                let mut y = vec![0.0; s.x_len()];
                bn_train_fwd(s, x, gamma, beta, &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut NoReduce).unwrap();
                project(&y, &p)
            };
            let (mut rm, mut rv, mut sm, mut si) = (vec![0.0; s.c], vec![1.0; s.c], vec![0.0; s.c], vec![0.0; s.c]);
            let mut y = vec![0.0; s.x_len()];
            bn_train_fwd(s, &x, &gamma, &beta, &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut NoReduce).unwrap();
            let mut dx = vec![0.0; s.x_len()];
            let (mut dg, mut db) = (vec![0.0; s.c], vec![0.0; s.c]);
            bn_bwd(s, &x, &p, &gamma, &sm, &si, &mut dx, &mut dg, &mut db, &mut NoReduce).unwrap();
            assert_close("bn dx", &dx, &fd_grad(&x, |x| run(x, &gamma, &beta)), FD_TOL);
            assert_close("bn dgamma", &dg, &fd_grad(&gamma, |g| run(&x, g, &beta)), FD_TOL);
            assert_close("bn dbeta", &db, &fd_grad(&beta, |b| run(&x, &gamma, b)), FD_TOL);
        }
    }

    #[test]
    fn single_value_per_channel_is_an_error() {
        let s = BnShape { b: 1, c: 1, l: 1 };
        let (mut rm, mut rv, mut sm, mut si, mut y) = ([0.0f32], [1.0f32], [0.0f32], [0.0f32], [0.0f32]);
        let r = bn_train_fwd(s, &[1.0], &[1.0], &[0.0], &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut NoReduce);
        assert!(r.is_err());
    }
}
