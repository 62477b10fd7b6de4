//! Test helpers for the CPU kernels: stated tolerances, a closeness check that reports the worst element, seeded
//! random data and central finite differences in f64.

use crate::rng::Rng;

/// |got - want| <= atol + rtol |want|, element-wise.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

/// Finite-difference step: with O(1) values in f64 the central-difference truncation error (~h^2) and the
/// rounding error (~1e-16 / h) are both near 1e-10.
pub const FD_STEP: f64 = 1e-5;

/// Tolerance of analytic f64 gradients against f64 central differences: well above the ~1e-10 FD error, far
/// below any real mistake (a wrong term is O(1e-2) or larger on these shapes).
pub const FD_TOL: Tol = Tol { atol: 1e-7, rtol: 1e-6 };

/// Panics with the worst element, both values, the tolerance and the first pairs when `got` and `want` differ.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length mismatch");
    let mut worst: Option<(usize, f64)> = None;
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / w.abs().max(1e-300));
        let excess = err - (tol.atol + tol.rtol * w.abs());
        if (excess > 0.0 || excess.is_nan()) && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        let pairs: Vec<String> = got.iter().zip(want).take(6).map(|(g, w)| format!("({g:.9e}, {w:.9e})")).collect();
        panic!(
            "{what}: mismatch at {i}: got {:.9e}, want {:.9e}; max abs err {max_abs:.3e}, max rel err {max_rel:.3e}, \
             tol {tol:?}; first (got, want) pairs: {}",
            got[i],
            want[i],
            pairs.join(" ")
        );
    }
}

/// `n` values uniform in [-scale, scale).
pub fn rand_vec(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}

/// Central finite differences of the scalar `f` at `x`.
pub fn fd_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + FD_STEP;
            let up = f(&xp);
            xp[i] = x[i] - FD_STEP;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * FD_STEP)
        })
        .collect()
}

/// <y, p>: the random projection that turns an op's output into a scalar loss.
pub fn project(y: &[f64], p: &[f64]) -> f64 {
    y.iter().zip(p).map(|(a, b)| a * b).sum()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
