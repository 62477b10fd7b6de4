//! Logistic regression as scikit-learn's `LogisticRegression(class_weight="balanced")` solves it, and the
//! `LogisticRegressionCV` recipe around it (mfd-spec.md 8.5-8.6): objective
//! `penalty(w) + C * sum_i s_i * logloss(y_i, w.x_i + b)` with s_i = n / (2 n_{class(y_i)}), the intercept
//! unpenalised, penalty ||w||^2 / 2 (L2) or ||w||_1 (L1); C chosen from 10 log-spaced values 1e-4..1e4 by mean
//! AUROC over stratified folds of the training set, then refitted on the whole training set.
//!
//! Key decision: L2 by damped Newton (D is at most a few hundred features, so the (D+1)^2 Hessian is cheap and the
//! optimum is reached to ~1e-10), L1 by FISTA with backtracking and the soft-threshold prox; both warm-started
//! along increasing C. Standardisation and the variance filter live here too, fitted on the training rows only.

use crate::rng::Rng;
use crate::train::metrics::auroc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    L1,
    L2,
}

/// A fitted linear model: decision = w.x + b.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReg {
    pub w: Vec<f64>,
    pub b: f64,
}

impl LogReg {
    /// Decision values of rows x (N, D).
    pub fn decision(&self, x: &[f64]) -> Vec<f64> {
        let d = self.w.len();
        x.chunks(d.max(1)).map(|r| self.b + r.iter().zip(&self.w).map(|(a, b)| a * b).sum::<f64>()).collect()
    }
}

/// Balanced class weights n / (2 n_class).
pub fn balanced_weights(y: &[bool]) -> Vec<f64> {
    let n = y.len() as f64;
    let pos = y.iter().filter(|&&v| v).count() as f64;
    let (wp, wn) = (n / (2.0 * pos.max(1.0)), n / (2.0 * (n - pos).max(1.0)));
    y.iter().map(|&v| if v { wp } else { wn }).collect()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// log(1 + exp(-m)) without overflow.
fn softplus_neg(m: f64) -> f64 {
    if m > 0.0 {
        (-m).exp().ln_1p()
    } else {
        -m + m.exp().ln_1p()
    }
}

/// Data term C * sum s_i logloss and its gradient over (w, b) (D + 1).
fn data_term(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, th: &[f64]) -> (f64, Vec<f64>) {
    let mut g = vec![0.0; d + 1];
    let mut f = 0.0;
    for ((r, &yi), &si) in x.chunks(d.max(1)).zip(y).zip(s) {
        let z = th[d] + r.iter().zip(th).map(|(a, b)| a * b).sum::<f64>();
        let sign = if yi { 1.0 } else { -1.0 };
        f += si * softplus_neg(sign * z);
        let e = si * (sigmoid(z) - if yi { 1.0 } else { 0.0 });
        for (gj, &xj) in g.iter_mut().zip(r) {
            *gj += e * xj;
        }
        g[d] += e;
    }
    (c * f, g.into_iter().map(|v| c * v).collect())
}

/// The full objective at theta = (w, b).
pub fn objective(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, pen: Penalty, th: &[f64]) -> f64 {
    let p = match pen {
        Penalty::L2 => 0.5 * th[..d].iter().map(|v| v * v).sum::<f64>(),
        Penalty::L1 => th[..d].iter().map(|v| v.abs()).sum::<f64>(),
    };
    p + data_term(x, d, y, s, c, th).0
}

/// Solve (A) z = g for symmetric positive definite A (n x n) by Cholesky; None if not PD.
fn cholesky_solve(a: &[f64], g: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    let mut z = g.to_vec();
    for i in 0..n {
        for k in 0..i {
            z[i] -= l[i * n + k] * z[k];
        }
        z[i] /= l[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            z[i] -= l[k * n + i] * z[k];
        }
        z[i] /= l[i * n + i];
    }
    Some(z)
}

/// Fit on rows x (N, D), labels y, sample weights s, from the start `init` (D + 1) when given.
pub fn fit(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, pen: Penalty, init: Option<&[f64]>) -> LogReg {
    let mut th = init.map(<[f64]>::to_vec).unwrap_or_else(|| vec![0.0; d + 1]);
    match pen {
        Penalty::L2 => newton_l2(x, d, y, s, c, &mut th),
        Penalty::L1 => fista_l1(x, d, y, s, c, &mut th),
    }
    LogReg { w: th[..d].to_vec(), b: th[d] }
}

fn newton_l2(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, th: &mut [f64]) {
    let n1 = d + 1;
    for _ in 0..100 {
        let (_, mut g) = data_term(x, d, y, s, c, th);
        for j in 0..d {
            g[j] += th[j];
        }
        let mut h = vec![0.0; n1 * n1];
        for j in 0..d {
            h[j * n1 + j] = 1.0;
        }
        h[d * n1 + d] = 1e-10; // the unpenalised intercept: keep H PD when the data term saturates
        for ((r, _), &si) in x.chunks(d.max(1)).zip(y).zip(s) {
            let z = th[d] + r.iter().zip(&*th).map(|(a, b)| a * b).sum::<f64>();
            let p = sigmoid(z);
            let v = c * si * p * (1.0 - p);
            for a in 0..n1 {
                let xa = if a < d { r[a] } else { 1.0 };
                for b in 0..=a {
                    let xb = if b < d { r[b] } else { 1.0 };
                    h[a * n1 + b] += v * xa * xb;
                }
            }
        }
        for a in 0..n1 {
            for b in 0..a {
                h[b * n1 + a] = h[a * n1 + b];
            }
        }
        let Some(step) = cholesky_solve(&h, &g, n1) else { break };
        // Backtracking on the objective.
        let f0 = objective(x, d, y, s, c, Penalty::L2, th);
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let cand: Vec<f64> = th.iter().zip(&step).map(|(a, b)| a - t * b).collect();
            if objective(x, d, y, s, c, Penalty::L2, &cand) <= f0 {
                th.copy_from_slice(&cand);
                moved = true;
                break;
            }
            t *= 0.5;
        }
        let size = step.iter().fold(0.0f64, |m, v| m.max(v.abs())) * t;
        if !moved || size < 1e-10 {
            break;
        }
    }
}

fn soft(v: f64, t: f64) -> f64 {
    v.signum() * (v.abs() - t).max(0.0)
}

fn fista_l1(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, th: &mut [f64]) {
    let prox = |v: &[f64], step: f64| -> Vec<f64> {
        v.iter().enumerate().map(|(j, &a)| if j < d { soft(a, step) } else { a }).collect()
    };
    let mut lip = 1e-3 * c; // local Lipschitz estimate, grown by backtracking
    let mut yk = th.to_vec();
    let mut tk = 1.0f64;
    let mut prev_obj = f64::INFINITY;
    for it in 0..5000 {
        let (fy, gy) = data_term(x, d, y, s, c, &yk);
        let next = loop {
            let cand = prox(&yk.iter().zip(&gy).map(|(a, g)| a - g / lip).collect::<Vec<_>>(), 1.0 / lip);
            let (fc, _) = data_term(x, d, y, s, c, &cand);
            let diff: Vec<f64> = cand.iter().zip(&yk).map(|(a, b)| a - b).collect();
            let lin = fy
                + gy.iter().zip(&diff).map(|(g, v)| g * v).sum::<f64>()
                + 0.5 * lip * diff.iter().map(|v| v * v).sum::<f64>();
            if fc <= lin + 1e-12 * fy.abs().max(1.0) || lip > 1e15 {
                break cand;
            }
            lip *= 2.0;
        };
        let t_next = (1.0 + (1.0 + 4.0 * tk * tk).sqrt()) / 2.0;
        let obj = objective(x, d, y, s, c, Penalty::L1, &next);
        // Restart momentum when the objective goes up (O'Donoghue & Candes).
        let mom = if obj > prev_obj { 0.0 } else { (tk - 1.0) / t_next };
        let delta = next.iter().zip(&*th).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        yk = next.iter().zip(&*th).map(|(a, b)| a + mom * (a - b)).collect();
        th.copy_from_slice(&next);
        tk = if obj > prev_obj { 1.0 } else { t_next };
        if it > 10 && delta < 1e-9 {
            break;
        }
        prev_obj = obj;
    }
}

/// 10 values log-spaced over [1e-4, 1e4] (sklearn's default `Cs = 10`).
pub fn default_cs() -> Vec<f64> {
    (0..10).map(|i| 10f64.powf(-4.0 + 8.0 * i as f64 / 9.0)).collect()
}

/// Stratified assignment of rows to `k` folds (per class shuffled, then dealt round-robin).
pub fn stratified_folds(y: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut fold = vec![0usize; y.len()];
    let mut rng = Rng::derive(seed, &[0x464f4c44]); // "FOLD"
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut idx);
        for (j, &i) in idx.iter().enumerate() {
            fold[i] = j % k.max(1);
        }
    }
    fold
}

/// Stratified train/test split: `test_fraction` of each class (rounded) goes to test. Returns (train, test).
pub fn stratified_split(y: &[bool], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::derive(seed, &[0x53504c4954]); // "SPLIT"
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut idx);
        let n_test = (idx.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Rows `idx` of x (N, D).
pub fn take_rows(x: &[f64], d: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

/// Train-fitted preprocessing: keep columns with variance >= `min_var`, then standardise (population std).
#[derive(Debug, Clone)]
pub struct Scaler {
    pub keep: Vec<usize>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Scaler {
    pub fn fit(x: &[f64], d: usize, min_var: f64) -> Scaler {
        let n = (x.len() / d.max(1)).max(1) as f64;
        let (mut keep, mut mean, mut std) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..d {
            let m = x.iter().skip(j).step_by(d).sum::<f64>() / n;
            let v = x.iter().skip(j).step_by(d).map(|a| (a - m) * (a - m)).sum::<f64>() / n;
            if v >= min_var && v > 0.0 {
                keep.push(j);
                mean.push(m);
                std.push(v.sqrt());
            }
        }
        Scaler { keep, mean, std }
    }
    /// Filtered, standardised rows (N, kept).
    pub fn apply(&self, x: &[f64], d: usize) -> Vec<f64> {
        x.chunks(d.max(1))
            .flat_map(|r| self.keep.iter().enumerate().map(move |(k, &j)| (r[j] - self.mean[k]) / self.std[k]))
            .collect()
    }
}

/// A cross-validated fit: the chosen C, its mean CV AUROC, and the model refitted on all of `x`.
#[derive(Debug, Clone)]
pub struct CvFit {
    pub c: f64,
    pub cv_auroc: f64,
    pub model: LogReg,
}

/// LogisticRegressionCV: choose C by mean AUROC over `k` stratified folds, refit on everything.
pub fn fit_cv(x: &[f64], d: usize, y: &[bool], pen: Penalty, k: usize, seed: u64) -> CvFit {
    let cs = default_cs();
    let folds = stratified_folds(y, k, seed);
    let mut score = vec![0.0f64; cs.len()];
    for f in 0..k {
        let tr: Vec<usize> = (0..y.len()).filter(|&i| folds[i] != f).collect();
        let va: Vec<usize> = (0..y.len()).filter(|&i| folds[i] == f).collect();
        let (xt, yt) = (take_rows(x, d, &tr), tr.iter().map(|&i| y[i]).collect::<Vec<_>>());
        let (xv, yv) = (take_rows(x, d, &va), va.iter().map(|&i| y[i]).collect::<Vec<_>>());
        let s = balanced_weights(&yt);
        let mut warm: Option<Vec<f64>> = None;
        for (ci, &c) in cs.iter().enumerate() {
            let m = fit(&xt, d, &yt, &s, c, pen, warm.as_deref());
            let dv: Vec<f32> = m.decision(&xv).iter().map(|&v| v as f32).collect();
            let a = auroc(&dv, &yv);
            score[ci] += if a.is_finite() { a } else { 0.5 } / k as f64;
            warm = Some(m.w.iter().copied().chain(std::iter::once(m.b)).collect());
        }
    }
    // First best, as sklearn's argmax.
    let best = (0..cs.len()).fold(0, |b, i| if score[i] > score[b] { i } else { b });
    let s = balanced_weights(y);
    CvFit { c: cs[best], cv_auroc: score[best], model: fit(x, d, y, &s, cs[best], pen, None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grad_l2(x: &[f64], d: usize, y: &[bool], s: &[f64], c: f64, m: &LogReg) -> Vec<f64> {
        let th: Vec<f64> = m.w.iter().copied().chain(std::iter::once(m.b)).collect();
        let (_, mut g) = data_term(x, d, y, s, c, &th);
        for j in 0..d {
            g[j] += th[j];
        }
        g
    }

    #[test]
    fn l2_solution_is_stationary_and_symmetric() {
        // Separable, symmetric 1-D data: the optimum has b = 0 and w solving w = C sum |x_i| sigmoid(-|x_i| w).
        let x = [-2.0, -1.0, 1.0, 2.0];
        let y = [false, false, true, true];
        let s = balanced_weights(&y);
        assert_eq!(s, vec![1.0; 4]);
        let m = fit(&x, 1, &y, &s, 10.0, Penalty::L2, None);
        assert!(m.b.abs() < 1e-9, "{m:?}");
        let w = m.w[0];
        let rhs = 10.0 * 2.0 * (1.0 * sigmoid(-w) + 2.0 * sigmoid(-2.0 * w));
        assert!((w - rhs).abs() < 1e-8, "w {w} vs {rhs}");
        assert!(grad_l2(&x, 1, &y, &s, 10.0, &m).iter().all(|g| g.abs() < 1e-8));
        let dv: Vec<f32> = m.decision(&x).iter().map(|&v| v as f32).collect();
        assert_eq!(auroc(&dv, &y), 1.0);
    }

    #[test]
    fn l1_meets_the_subgradient_conditions_and_drops_noise() {
        // Feature 0 carries the label, feature 1 is noise.
        let mut rng = Rng::new(3);
        let n = 200;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let yi = rng.bernoulli(0.3);
            x.push(if yi { 1.0 } else { -1.0 } + rng.normal());
            x.push(rng.normal());
            y.push(yi);
        }
        let s = balanced_weights(&y);
        let c = 0.01;
        let m = fit(&x, 2, &y, &s, c, Penalty::L1, None);
        let th = [m.w[0], m.w[1], m.b];
        let (_, g) = data_term(&x, 2, &y, &s, c, &th);
        assert!(g[2].abs() < 1e-6, "intercept gradient {}", g[2]);
        for j in 0..2 {
            if th[j] != 0.0 {
                assert!((g[j] + th[j].signum()).abs() < 1e-5, "active {j}: {} {}", g[j], th[j]);
            } else {
                assert!(g[j].abs() <= 1.0 + 1e-6, "inactive {j}: {}", g[j]);
            }
        }
        assert!(m.w[0] > 0.0 && m.w[1] == 0.0, "{m:?}");
        // The L2 Newton optimum equals a long L1-free gradient check: objective lower than at nearby points.
        let m2 = fit(&x, 2, &y, &s, 1.0, Penalty::L2, None);
        let th2 = [m2.w[0], m2.w[1], m2.b];
        let f = objective(&x, 2, &y, &s, 1.0, Penalty::L2, &th2);
        for k in 0..3 {
            let mut t = th2;
            t[k] += 1e-4;
            assert!(objective(&x, 2, &y, &s, 1.0, Penalty::L2, &t) >= f);
        }
    }

    #[test]
    fn splits_are_stratified_and_cv_picks_a_c() {
        let y: Vec<bool> = (0..100).map(|i| i % 4 == 0).collect();
        let (tr, te) = stratified_split(&y, 0.2, 42);
        assert_eq!((tr.len(), te.len()), (80, 20));
        assert_eq!(te.iter().filter(|&&i| y[i]).count(), 5);
        let folds = stratified_folds(&y, 5, 1);
        for f in 0..5 {
            assert_eq!((0..100).filter(|&i| folds[i] == f && y[i]).count(), 5);
        }
        let x: Vec<f64> = y.iter().map(|&v| if v { 1.0 } else { -1.0 }).collect();
        let fit = fit_cv(&x, 1, &y, Penalty::L2, 5, 0);
        assert_eq!(fit.cv_auroc, 1.0);
        assert!(fit.model.w[0] > 0.0);
        let sc = Scaler::fit(&[1.0, 5.0, 3.0, 5.0], 2, 0.01);
        assert_eq!(sc.keep, vec![0]);
        assert_eq!(sc.apply(&[1.0, 5.0, 3.0, 5.0], 2), vec![-1.0, 1.0]);
    }
}
