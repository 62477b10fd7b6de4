//! Dense matrix product (sgemm-style, row-major, optional transposes) and the linear layer built on it:
//! y = x W^T + b, dx = dy W, dW += dy^T x, db += column sums of dy. The product is `gemm::par_gemm` (transposes
//! are strided views, no copies).

use rayon::prelude::*;

use super::gemm::{par_gemm, View};
use super::real::Real;
use crate::backend::shapes::{LinearShape, MatmulShape};

/// c (m, n) = alpha op(a) op(b) + beta c. a is (m, k) or, transposed, (k, m); b is (k, n) or, transposed, (n, k).
/// beta = 0 overwrites c (old contents, even NaN, are ignored, as BLAS does).
pub fn matmul<T: Real>(s: MatmulShape, a: &[T], trans_a: bool, b: &[T], trans_b: bool, alpha: T, beta: T, c: &mut [T]) {
    let (m, n, k) = (s.m, s.n, s.k);
    let av = if trans_a { View::rm(0, k, m, m).t() } else { View::rm(0, m, k, k) };
    let bv = if trans_b { View::rm(0, n, k, k).t() } else { View::rm(0, k, n, n) };
    par_gemm(alpha, a, av, b, bv, beta, c, View::rm(0, m, n, n));
}

/// y (N, out) = x (N, in) w^T + bias.
pub fn linear_fwd<T: Real>(s: LinearShape, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) {
    matmul(MatmulShape { m: s.n, n: s.d_out, k: s.d_in }, x, false, w, true, T::ONE, T::ZERO, y);
    if let Some(bias) = bias {
        if s.d_out > 0 {
            y.par_chunks_mut(s.d_out).for_each(|row| row.iter_mut().zip(bias).for_each(|(v, &bv)| *v += bv));
        }
    }
}

/// dx = dy w (written, when requested); dw (out, in) += dy^T x; dbias (out) += column sums of dy.
pub fn linear_bwd<T: Real>(
    s: LinearShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    dbias: Option<&mut [T]>,
) {
    if let Some(dx) = dx {
        matmul(MatmulShape { m: s.n, n: s.d_in, k: s.d_out }, dy, false, w, false, T::ONE, T::ZERO, dx);
    }
    matmul(MatmulShape { m: s.d_out, n: s.d_in, k: s.n }, dy, true, x, false, T::ONE, T::ONE, dw);
    if let Some(db) = dbias {
        db.par_iter_mut().enumerate().for_each(|(j, v)| {
            let mut acc = T::ZERO;
            for r in 0..s.n {
                acc += dy[r * s.d_out + j];
            }
            *v += acc;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    /// Naive triple loop on explicit indices.
    fn naive(s: MatmulShape, a: &[f64], ta: bool, b: &[f64], tb: bool) -> Vec<f64> {
        let mut c = vec![0.0; s.m * s.n];
        for i in 0..s.m {
            for j in 0..s.n {
                for p in 0..s.k {
                    let av = if ta { a[p * s.m + i] } else { a[i * s.k + p] };
                    let bv = if tb { b[j * s.k + p] } else { b[p * s.n + j] };
                    c[i * s.n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        let mut rng = Rng::new(9);
        let s = MatmulShape { m: 5, n: 4, k: 3 };
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = rand_vec(&mut rng, s.m * s.k, 1.0);
            let b = rand_vec(&mut rng, s.k * s.n, 1.0);
            let c0 = rand_vec(&mut rng, s.m * s.n, 1.0);
            let mut c = c0.clone();
            matmul(s, &a, ta, &b, tb, 2.0, 0.5, &mut c);
            let want: Vec<f64> = naive(s, &a, ta, &b, tb).iter().zip(&c0).map(|(p, c)| 2.0 * p + 0.5 * c).collect();
            // Same products, summed in the same order up to association: rounding only.
            assert_close(&format!("matmul ta={ta} tb={tb}"), &c, &want, Tol { atol: 1e-13, rtol: 1e-13 });
        }
        // beta = 0 ignores NaN in c.
        let mut c = vec![f64::NAN; s.m * s.n];
        matmul(s, &[1.0; 15], false, &[1.0; 12], false, 1.0, 0.0, &mut c);
        assert!(c.iter().all(|&v| v == 3.0));
    }

    #[test]
    fn linear_backward_matches_finite_differences() {
        let mut rng = Rng::new(10);
        let s = LinearShape { n: 4, d_in: 3, d_out: 5 };
        let x = rand_vec(&mut rng, s.n * s.d_in, 1.0);
        let w = rand_vec(&mut rng, s.d_out * s.d_in, 1.0);
        let bias = rand_vec(&mut rng, s.d_out, 1.0);
        let p = rand_vec(&mut rng, s.n * s.d_out, 1.0);
        let run = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; s.n * s.d_out];
            linear_fwd(s, x, w, Some(b), &mut y);
            project(&y, &p)
        };
        let mut dx = vec![3.0; x.len()];
        let mut dw = vec![1.0; w.len()];
        let mut db = vec![1.0; bias.len()];
        linear_bwd(s, &x, &w, &p, Some(&mut dx), &mut dw, Some(&mut db));
        dw.iter_mut().chain(db.iter_mut()).for_each(|v| *v -= 1.0); // parameter grads accumulate onto 1.0
        assert_close("linear dx", &dx, &fd_grad(&x, |x| run(x, &w, &bias)), FD_TOL);
        assert_close("linear dw", &dw, &fd_grad(&w, |w| run(&x, w, &bias)), FD_TOL);
        assert_close("linear db", &db, &fd_grad(&bias, |b| run(&x, &w, b)), FD_TOL);
    }
}
