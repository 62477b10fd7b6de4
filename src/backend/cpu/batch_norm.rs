//! BatchNorm1d over (B, C, L) activations (L = 1 for (B, F) matrices), as PyTorch: training mode normalises with
//! the batch mean and biased variance over (B, L) and updates the running statistics with momentum 0.1 and the
//! unbiased variance; eval mode uses the running statistics. Statistics are accumulated in f64 in two passes
//! (mean, then centred squares; each row summed in interleaved lanes so the loops vectorise), each pass's
//! per-channel partials summed across ranks through `Reduce`.
//!
//! Also the trunk block's BatchNorm + GELU as one op (`bn_gelu_train_fwd`, `bn_gelu_bwd`): the same arithmetic as
//! the separate ops, in fewer passes over memory, so the same bits.

use rayon::prelude::*;

use super::activation;
use super::real::Real;
use crate::backend::shapes::BnShape;
use crate::backend::{Reduce, BN_EPS, BN_MOMENTUM};
use crate::{MfdError, Result};

/// Accumulator lanes of the f64 sums: independent partial sums so the loops vectorise (a single running f64 sum
/// is a serial dependency chain); the lanes are added at the end.
const LANES: usize = 8;

/// (sum f(v), sum g(v)) over a row in f64, in LANES interleaved partial sums.
#[inline(always)]
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

/// Channels per task of the L = 1 sums (a (B, C) matrix is summed down its columns, C contiguous).
const COLUMN_BLOCK: usize = 256;

/// Per-channel f64 sums (sum f(c, x, y), sum g(c, x, y)) over (B, L) of two tensors of one shape; channels in
/// parallel, each summed over its rows in batch order. For L = 1 (the (B, F) matrices of the MLPs) the rows are
/// single values: the same sums in the same order are taken down the columns, in blocks of channels, instead of one
/// channel at a time through strided rows.
fn channel_sums2<T: Real>(
    s: BnShape,
    x: &[T],
    y: &[T],
    f: impl Fn(usize, T, T) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    if s.l == 1 {
        let mut out = vec![(0.0f64, 0.0f64); s.c];
        out.par_chunks_mut(COLUMN_BLOCK).enumerate().for_each(|(blk, acc)| {
            let c0 = blk * COLUMN_BLOCK;
            for b in 0..s.b {
                let r = b * s.c + c0..b * s.c + c0 + acc.len();
                for (j, ((a, &xv), &yv)) in acc.iter_mut().zip(&x[r.clone()]).zip(&y[r]).enumerate() {
                    let (u, v) = f(c0 + j, xv, yv);
                    a.0 += u;
                    a.1 += v;
                }
            }
        });
        return out;
    }
    (0..s.c)
        .into_par_iter()
        .map(|c| {
            let (mut su, mut sv) = (0.0f64, 0.0f64);
            for b in 0..s.b {
                let r = (b * s.c + c) * s.l..(b * s.c + c + 1) * s.l;
                let (u, v) = row_sums2(&x[r.clone()], &y[r], |xv, yv| f(c, xv, yv));
                su += u;
                sv += v;
            }
            (su, sv)
        })
        .collect()
}

/// Per-channel f64 sums of f(c, value) over (B, L).
fn channel_sums<T: Real>(s: BnShape, x: &[T], f: impl Fn(usize, T) -> f64 + Sync) -> Vec<f64> {
    channel_sums2(s, x, x, |c, v, _| (f(c, v), 0.0)).into_iter().map(|p| p.0).collect()
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
    batch_statistics(s, x, running_mean, running_var, save_mean, save_invstd, red)?;
    normalise(s, x, gamma, beta, save_mean, save_invstd, y);
    Ok(())
}

/// Training forward of BatchNorm then GELU, the pre-activation block's first two ops in one pass over the rows:
/// act (B, C, L) = gelu(bn(x)), the normalised values never stored (`bn_gelu_bwd` recomputes them from x). The
/// same bits as `bn_train_fwd` followed by `activation_fwd(Gelu)`.
pub fn bn_gelu_train_fwd<T: Real>(
    s: BnShape,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
    act: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    batch_statistics(s, x, running_mean, running_var, save_mean, save_invstd, red)?;
    if s.l == 0 {
        return Ok(());
    }
    act.par_chunks_mut(s.l).zip(x.par_chunks(s.l)).enumerate().for_each(|(row, (arow, xrow))| {
        let c = row % s.c;
        normalise_row(xrow, arow, save_mean[c], save_invstd[c] * gamma[c], beta[c]);
        activation::gelu_in_place(arow);
    });
    Ok(())
}

/// The batch mean and 1 / sqrt(biased var + eps) per channel into save_mean / save_invstd, and the running
/// statistics' momentum update (unbiased variance). Two passes over x: sums, then centred squares.
fn batch_statistics<T: Real>(
    s: BnShape,
    x: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
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
    Ok(())
}

/// y = (x - mean) invstd gamma + beta, batch items in parallel.
fn normalise<T: Real>(s: BnShape, x: &[T], gamma: &[T], beta: &[T], mean: &[T], invstd: &[T], y: &mut [T]) {
    if s.l == 0 || s.c == 0 {
        return;
    }
    let scale: Vec<T> = (0..s.c).map(|c| invstd[c] * gamma[c]).collect();
    y.par_chunks_mut(s.c * s.l).zip(x.par_chunks(s.c * s.l)).for_each(|(yi, xi)| {
        if s.l == 1 {
            // (B, F): one value per channel, so the loop runs across the channels.
            for ((((yv, &xv), &mu), &sc), &sh) in yi.iter_mut().zip(xi).zip(mean).zip(&scale).zip(beta) {
                *yv = (xv - mu) * sc + sh;
            }
        } else {
            for (c, (yrow, xrow)) in yi.chunks_mut(s.l).zip(xi.chunks(s.l)).enumerate() {
                normalise_row(xrow, yrow, mean[c], scale[c], beta[c]);
            }
        }
    });
}

/// One row of `normalise`: y = (x - mu) scale + shift, scale = invstd gamma.
#[inline(always)]
fn normalise_row<T: Real>(x: &[T], y: &mut [T], mu: T, scale: T, shift: T) {
    // Centre first: x - mean is exact-ish when the mean is large against the spread, whereas folding the
    // mean into the shift (x scale + (beta - mean scale)) cancels in f32 and adds round-off to the loss.
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = (xv - mu) * scale + shift;
    }
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
    let (mean, inv): (Vec<f64>, Vec<f64>) = (0..s.c).map(|c| (save_mean[c].to_f64(), save_invstd[c].to_f64())).unzip();
    let sums = channel_sums2(s, dy, x, |c, g, xv| (g.to_f64(), g.to_f64() * (xv.to_f64() - mean[c]) * inv[c]));
    let (global, n) = channel_grad_sums(s, &sums, dgamma, dbeta, red)?;
    input_grad(s, x, dy, gamma, save_mean, save_invstd, &global, n, None, dx);
    Ok(())
}

/// Backward of `bn_gelu_train_fwd` from d_act (B, C, L): per row, the normalised values are recomputed from x and
/// d_normed = gelu'(normed) d_act written (scratch, kept for the second pass) while its sums are taken; then dx as
/// `bn_bwd`, plus `skip` (a residual path's gradient) when given. dgamma and dbeta accumulated. The same bits as
/// `activation_bwd(Gelu)`, `bn_bwd` and `axpy(1, skip, dx)` in turn.
pub fn bn_gelu_bwd<T: Real>(
    s: BnShape,
    x: &[T],
    d_act: &[T],
    gamma: &[T],
    beta: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    skip: Option<&[T]>,
    d_normed: &mut [T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    red: &mut dyn Reduce,
) -> Result<()> {
    let rows: Vec<(f64, f64)> = if s.l == 0 {
        Vec::new()
    } else {
        d_normed
            .par_chunks_mut(s.l)
            .enumerate()
            .map(|(row, drow)| {
                let (c, r) = (row % s.c, row * s.l..(row + 1) * s.l);
                normalise_row(&x[r.clone()], drow, save_mean[c], save_invstd[c] * gamma[c], beta[c]);
                activation::gelu_grad_in_place(drow, &d_act[r]);
                row_grad_sums(s, row, x, drow, save_mean, save_invstd)
            })
            .collect()
    };
    // Per channel, the rows' partials summed in batch order (as `bn_bwd` does).
    let sums: Vec<(f64, f64)> = (0..s.c)
        .map(|c| {
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for &(u, v) in rows.iter().skip(c).step_by(s.c.max(1)) {
                sdy += u;
                sdyx += v;
            }
            (sdy, sdyx)
        })
        .collect();
    let (global, n) = channel_grad_sums(s, &sums, dgamma, dbeta, red)?;
    input_grad(s, x, d_normed, gamma, save_mean, save_invstd, &global, n, skip, dx);
    Ok(())
}

/// (sum dy, sum dy xhat) over one row (b, c) in f64.
#[inline(always)]
fn row_grad_sums<T: Real>(s: BnShape, row: usize, x: &[T], dyrow: &[T], mean: &[T], invstd: &[T]) -> (f64, f64) {
    let c = row % s.c;
    let (mu, inv) = (mean[c].to_f64(), invstd[c].to_f64());
    let xrow = &x[row * s.l..(row + 1) * s.l];
    row_sums2(dyrow, xrow, |g, xv| (g.to_f64(), g.to_f64() * (xv.to_f64() - mu) * inv))
}

/// dbeta / dgamma accumulated with the local per-channel (sum dy, sum dy xhat), then those sums over ranks:
/// ([sum dy (C), sum dy xhat (C), count], count).
fn channel_grad_sums<T: Real>(
    s: BnShape,
    sums: &[(f64, f64)],
    dgamma: &mut [T],
    dbeta: &mut [T],
    red: &mut dyn Reduce,
) -> Result<(Vec<f64>, f64)> {
    let mut global: Vec<f64> = sums.iter().map(|p| p.0).chain(sums.iter().map(|p| p.1)).collect();
    global.push((s.b * s.l) as f64);
    for c in 0..s.c {
        dbeta[c] += T::from_f64(sums[c].0);
        dgamma[c] += T::from_f64(sums[c].1);
    }
    red.sum(&mut global)?;
    let n = global[2 * s.c];
    Ok((global, n))
}

/// dx = gamma invstd (dy - mean dy - xhat mean(dy xhat)) (+ skip), batch items in parallel.
fn input_grad<T: Real>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    global: &[f64],
    n: f64,
    skip: Option<&[T]>,
    dx: &mut [T],
) {
    if s.l == 0 || s.c == 0 {
        return;
    }
    let k: Vec<T> = (0..s.c).map(|c| gamma[c] * save_invstd[c]).collect();
    let mean_dy: Vec<T> = (0..s.c).map(|c| T::from_f64(global[c] / n)).collect();
    let mean_dyx: Vec<T> = (0..s.c).map(|c| T::from_f64(global[s.c + c] / n)).collect();
    let item = s.c * s.l;
    dx.par_chunks_mut(item).enumerate().for_each(|(b, dxi)| {
        let r = b * item..(b + 1) * item;
        let (xi, dyi) = (&x[r.clone()], &dy[r.clone()]);
        if s.l == 1 {
            // (B, F): one value per channel, so the loop runs across the channels.
            for (c, ((d, &g), &xv)) in dxi.iter_mut().zip(dyi).zip(xi).enumerate() {
                let xhat = (xv - save_mean[c]) * save_invstd[c];
                *d = k[c] * (g - mean_dy[c] - xhat * mean_dyx[c]);
            }
        } else {
            for (c, ((dxrow, dyrow), xrow)) in dxi.chunks_mut(s.l).zip(dyi.chunks(s.l)).zip(xi.chunks(s.l)).enumerate()
            {
                let (mu, inv, kc, mdy, mdyx) = (save_mean[c], save_invstd[c], k[c], mean_dy[c], mean_dyx[c]);
                for ((d, &g), &xv) in dxrow.iter_mut().zip(dyrow).zip(xrow) {
                    let xhat = (xv - mu) * inv;
                    *d = kc * (g - mdy - xhat * mdyx);
                }
            }
        }
        if let Some(skip) = skip {
            for (d, &v) in dxi.iter_mut().zip(&skip[r]) {
                *d += v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::backend::{Activation, NoReduce};
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

    /// Forward state of `bn_train_fwd` on one input: (save_mean, save_invstd, running_mean, running_var, y).
    fn train_fwd<T: Real>(s: BnShape, x: &[T], gamma: &[T], beta: &[T]) -> [Vec<T>; 5] {
        let (mut sm, mut si) = (vec![T::ZERO; s.c], vec![T::ZERO; s.c]);
        let (mut rm, mut rv) = (vec![T::ZERO; s.c], vec![T::ONE; s.c]);
        let mut y = vec![T::ZERO; s.x_len()];
        bn_train_fwd(s, x, gamma, beta, &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut NoReduce).unwrap();
        [sm, si, rm, rv, y]
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// The fused BatchNorm + GELU forward and backward give the bits of the ops they replace: `bn_train_fwd` then
    /// GELU; GELU backward, `bn_bwd` and the residual `axpy`.
    #[test]
    fn fused_gelu_gives_the_unfused_bits() {
        let mut rng = Rng::new(21);
        for s in [BnShape { b: 4, c: 3, l: 37 }, BnShape { b: 2, c: 5, l: 8 }, BnShape { b: 3, c: 2, l: 1 }] {
            let x: Vec<f32> = to_f32(&rand_vec(&mut rng, s.x_len(), 2.0)).iter().map(|v| v + 0.5).collect();
            let gamma = to_f32(&rand_vec(&mut rng, s.c, 1.5));
            let beta = to_f32(&rand_vec(&mut rng, s.c, 1.0));
            let d_act = to_f32(&rand_vec(&mut rng, s.x_len(), 1.0));
            let skip = to_f32(&rand_vec(&mut rng, s.x_len(), 1.0));
            let [sm, si, rm, rv, normed] = train_fwd(s, &x, &gamma, &beta);
            let mut act = vec![0.0f32; s.x_len()];
            activation::activation_fwd(Activation::Gelu, &normed, &mut act);
            let (mut fsm, mut fsi) = (vec![0.0f32; s.c], vec![0.0f32; s.c]);
            let (mut frm, mut frv) = (vec![0.0f32; s.c], vec![1.0f32; s.c]);
            let mut fact = vec![0.0f32; s.x_len()];
            let mut red = NoReduce;
            bn_gelu_train_fwd(s, &x, &gamma, &beta, &mut frm, &mut frv, &mut fsm, &mut fsi, &mut fact, &mut red)
                .unwrap();
            assert_eq!(bits(&fact), bits(&act), "{s:?} act");
            for (name, a, b) in
                [("save_mean", &fsm, &sm), ("save_invstd", &fsi, &si), ("rm", &frm, &rm), ("rv", &frv, &rv)]
            {
                assert_eq!(bits(a), bits(b), "{s:?} {name}");
            }
            for with_skip in [false, true] {
                let mut d_normed = vec![0.0f32; s.x_len()];
                activation::activation_bwd(Activation::Gelu, &normed, &d_act, &mut d_normed);
                let mut dx = vec![0.0f32; s.x_len()];
                let (mut dg, mut db) = (vec![0.25f32; s.c], vec![-0.5f32; s.c]);
                bn_bwd(s, &x, &d_normed, &gamma, &sm, &si, &mut dx, &mut dg, &mut db, &mut red).unwrap();
                if with_skip {
                    super::super::elementwise::axpy(1.0, &skip, &mut dx);
                }
                let (mut fdn, mut fdx) = (vec![0.0f32; s.x_len()], vec![0.0f32; s.x_len()]);
                let (mut fdg, mut fdb) = (vec![0.25f32; s.c], vec![-0.5f32; s.c]);
                let sk = with_skip.then_some(skip.as_slice());
                bn_gelu_bwd(
                    s, &x, &d_act, &gamma, &beta, &sm, &si, sk, &mut fdn, &mut fdx, &mut fdg, &mut fdb, &mut red,
                )
                .unwrap();
                assert_eq!(bits(&fdx), bits(&dx), "{s:?} dx, skip {with_skip}");
                assert_eq!(bits(&fdg), bits(&dg), "{s:?} dgamma");
                assert_eq!(bits(&fdb), bits(&db), "{s:?} dbeta");
            }
        }
    }

    #[test]
    fn fused_gelu_backward_matches_finite_differences() {
        let mut rng = Rng::new(34);
        let s = BnShape { b: 3, c: 2, l: 5 };
        let x = rand_vec(&mut rng, s.x_len(), 2.0);
        let gamma = rand_vec(&mut rng, s.c, 1.5);
        let beta = rand_vec(&mut rng, s.c, 1.0);
        let p = rand_vec(&mut rng, s.x_len(), 1.0);
        let skip = rand_vec(&mut rng, s.x_len(), 1.0);
        // loss = <p, gelu(bn(x))> + <skip, x>: the skip path's gradient is `skip`.
        let run = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let (mut rm, mut rv, mut sm, mut si) = (vec![0.0; s.c], vec![1.0; s.c], vec![0.0; s.c], vec![0.0; s.c]);
            let mut act = vec![0.0; s.x_len()];
            bn_gelu_train_fwd(s, x, gamma, beta, &mut rm, &mut rv, &mut sm, &mut si, &mut act, &mut NoReduce).unwrap();
            project(&act, &p) + project(x, &skip)
        };
        let [sm, si, ..] = train_fwd(s, &x, &gamma, &beta);
        let (mut dn, mut dx) = (vec![0.0; s.x_len()], vec![0.0; s.x_len()]);
        let (mut dg, mut db) = (vec![0.0; s.c], vec![0.0; s.c]);
        bn_gelu_bwd(s, &x, &p, &gamma, &beta, &sm, &si, Some(&skip), &mut dn, &mut dx, &mut dg, &mut db, &mut NoReduce)
            .unwrap();
        assert_close("bn_gelu dx", &dx, &fd_grad(&x, |x| run(x, &gamma, &beta)), FD_TOL);
        assert_close("bn_gelu dgamma", &dg, &fd_grad(&gamma, |g| run(&x, g, &beta)), FD_TOL);
        assert_close("bn_gelu dbeta", &db, &fd_grad(&beta, |b| run(&x, &gamma, b)), FD_TOL);
    }

    /// L = 1 sums run down the columns; they are the sequential per-channel sums in batch order.
    #[test]
    fn column_sums_are_the_sequential_channel_sums() {
        let mut rng = Rng::new(55);
        let s = BnShape { b: 7, c: COLUMN_BLOCK + 9, l: 1 };
        let x: Vec<f32> = rand_vec(&mut rng, s.x_len(), 3.0).into_iter().map(|v| v as f32).collect();
        let got = channel_sums2(s, &x, &x, |c, u, v| (u.to_f64() * c as f64, (u * v).to_f64()));
        for c in 0..s.c {
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for r in 0..s.b {
                let u = x[r * s.c + c];
                a += u.to_f64() * c as f64;
                b += (u * u).to_f64();
            }
            assert_eq!((got[c].0.to_bits(), got[c].1.to_bits()), (a.to_bits(), b.to_bits()), "channel {c}");
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
