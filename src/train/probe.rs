//! Linear probes for disentanglement: ridge regression from a feature block to a truth factor, fitted on one half
//! of the tiles and scored (R^2) on the other, so a probe cannot memorise. Small dense problems (features <= a few
//! hundred columns), solved in f64 by Cholesky.

/// Solve (A + alpha I) w = b for symmetric positive (semi)definite A (d, d) by Cholesky; None if it fails.
fn solve_spd(a: &[f64], b: &[f64], d: usize, alpha: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j] + if i == j { alpha } else { 0.0 };
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    Some(x)
}

/// Held-out R^2 of a ridge probe from `x` (N, d) row-major to `y` (N): fit on even rows, score on odd rows.
/// Features are standardised on the fit half; alpha is relative to N. Returns NaN when the target is constant.
pub fn probe_r2(x: &[f32], d: usize, y: &[f64], alpha: f64) -> f64 {
    let n = y.len();
    assert_eq!(x.len(), n * d, "probe_r2: x is not (N, d)");
    let fit: Vec<usize> = (0..n).step_by(2).collect();
    let test: Vec<usize> = (1..n).step_by(2).collect();
    if fit.len() < 2 || test.len() < 2 {
        return f64::NAN;
    }
    let nf = fit.len() as f64;
    let mut mean = vec![0.0; d];
    let mut sd = vec![0.0; d];
    for &i in &fit {
        for j in 0..d {
            mean[j] += x[i * d + j] as f64 / nf;
        }
    }
    for &i in &fit {
        for j in 0..d {
            sd[j] += (x[i * d + j] as f64 - mean[j]).powi(2) / nf;
        }
    }
    let sd: Vec<f64> = sd.iter().map(|v| if *v > 1e-12 { v.sqrt() } else { 1.0 }).collect();
    let z = |i: usize, j: usize| (x[i * d + j] as f64 - mean[j]) / sd[j];
    let y_mean = fit.iter().map(|&i| y[i]).sum::<f64>() / nf;
    let mut a = vec![0.0; d * d];
    let mut b = vec![0.0; d];
    for &i in &fit {
        let zi: Vec<f64> = (0..d).map(|j| z(i, j)).collect();
        for r in 0..d {
            b[r] += zi[r] * (y[i] - y_mean);
            for c in 0..=r {
                a[r * d + c] += zi[r] * zi[c];
            }
        }
    }
    for r in 0..d {
        for c in 0..r {
            a[c * d + r] = a[r * d + c];
        }
    }
    let Some(w) = solve_spd(&a, &b, d, alpha * nf) else { return f64::NAN };
    let t_mean = test.iter().map(|&i| y[i]).sum::<f64>() / test.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for &i in &test {
        let pred = y_mean + (0..d).map(|j| w[j] * z(i, j)).sum::<f64>();
        ss_res += (y[i] - pred).powi(2);
        ss_tot += (y[i] - t_mean).powi(2);
    }
    if ss_tot <= 1e-12 {
        return f64::NAN;
    }
    1.0 - ss_res / ss_tot
}

/// Pearson correlation matrix between the columns of a (N, da) and b (N, db): (da, db) row-major.
pub fn cross_correlation(a: &[f32], da: usize, b: &[f32], db: usize) -> Vec<f64> {
    let n = a.len().checked_div(da).unwrap_or(0);
    let stats = |m: &[f32], d: usize| -> (Vec<f64>, Vec<f64>) {
        let mut mean = vec![0.0; d];
        for i in 0..n {
            for j in 0..d {
                mean[j] += m[i * d + j] as f64 / n as f64;
            }
        }
        let mut sd = vec![0.0; d];
        for i in 0..n {
            for j in 0..d {
                sd[j] += (m[i * d + j] as f64 - mean[j]).powi(2);
            }
        }
        (mean, sd.iter().map(|v| v.sqrt()).collect())
    };
    let (ma, sa) = stats(a, da);
    let (mb, sb) = stats(b, db);
    let mut r = vec![0.0; da * db];
    for i in 0..n {
        for p in 0..da {
            let za = a[i * da + p] as f64 - ma[p];
            for q in 0..db {
                r[p * db + q] += za * (b[i * db + q] as f64 - mb[q]);
            }
        }
    }
    for p in 0..da {
        for q in 0..db {
            let den = sa[p] * sb[q];
            r[p * db + q] = if den > 0.0 { r[p * db + q] / den } else { 0.0 };
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn probe_recovers_a_linear_signal_and_ignores_noise() {
        let mut rng = Rng::new(5);
        let n = 2000;
        let d = 4;
        let x: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let y: Vec<f64> = (0..n).map(|i| 2.0 * x[i * d] as f64 - x[i * d + 2] as f64 + 0.1 * rng.normal()).collect();
        let r2 = probe_r2(&x, d, &y, 1e-3);
        assert!(r2 > 0.99, "{r2}");
        let noise: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let r0 = probe_r2(&x, d, &noise, 1e-3);
        assert!(r0 < 0.02, "{r0}");
        assert!(probe_r2(&x, d, &vec![1.0; n], 1e-3).is_nan());
    }

    #[test]
    fn cross_correlation_of_identical_columns_is_one() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [2.0f32, 4.0, 6.0, 8.0];
        let r = cross_correlation(&a, 1, &b, 1);
        assert!((r[0] - 1.0).abs() < 1e-12);
    }
}
