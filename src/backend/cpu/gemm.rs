//! Strided GEMM, c = alpha a b + beta c, the work-horse of the dense conv and linear kernels. The arithmetic is
//! the `matrixmultiply` crate's (pure Rust, packed panels and SIMD micro-kernels chosen at run time: AVX-512,
//! AVX2 + FMA, AVX, SSE2), reached through `Real::gemm_raw`, so the f64 gradient checks run the same blocking.
//!
//! Key decisions:
//! - Operands are `View`s (offset, rows, cols, row stride, column stride) into plain slices; every view is
//!   bounds-checked here, so the kernels above stay safe code (a transpose is a view with swapped strides, a
//!   conv tap is a view shifted along L).
//! - `gemm` is single-threaded (the conv kernels parallelise over the batch); `par_gemm` splits the output into
//!   disjoint row or column blocks for rayon. Each output element is computed by one call with the same k-blocking
//!   whatever the split, so results do not depend on the thread count.

use rayon::prelude::*;

use super::real::Real;

/// A strided matrix inside a slice: element (i, j) is at `off + i rs + j cs`.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    /// Row-major (rows, cols) block with leading dimension `ld` starting at `off`.
    pub fn rm(off: usize, rows: usize, cols: usize, ld: usize) -> View {
        View { off, rows, cols, rs: ld, cs: 1 }
    }

    /// The transpose (the same memory).
    pub fn t(self) -> View {
        View { off: self.off, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }

    /// Panics unless every element lies inside a slice of length `len`.
    fn check(&self, len: usize, what: &str) {
        if !self.is_empty() {
            let last = self.off + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < len, "gemm: view {what} {self:?} reaches {last}, slice has {len}");
        }
    }

    /// Panics if two (i, j) could share an address (a written view must not alias itself).
    fn check_distinct(&self) {
        let ok = self.rows <= 1
            || self.cols <= 1
            || (self.cs > 0 && self.rs >= self.cols * self.cs)
            || (self.rs > 0 && self.cs >= self.rows * self.rs);
        assert!(ok, "gemm: output view {self:?} aliases itself");
    }
}

fn check_shapes(a: View, b: View, c: View) {
    assert!(
        a.cols == b.rows && c.rows == a.rows && c.cols == b.cols,
        "gemm: ({}x{}) ({}x{}) into ({}x{})",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
}

/// c (m, n) = alpha a (m, k) b (k, n) + beta c. beta = 0 overwrites c (NaN in the old c is ignored).
pub fn gemm<T: Real>(alpha: T, a: &[T], av: View, b: &[T], bv: View, beta: T, c: &mut [T], cv: View) {
    check_shapes(av, bv, cv);
    av.check(a.len(), "a");
    bv.check(b.len(), "b");
    cv.check(c.len(), "c");
    cv.check_distinct();
    if cv.is_empty() {
        return;
    }
    // SAFETY: all three views were checked to lie inside their slices, c does not alias itself, and `c` is an
    // exclusive borrow, so it cannot overlap `a` or `b`.
    unsafe { gemm_views(alpha, a.as_ptr(), av, b.as_ptr(), bv, beta, c.as_mut_ptr(), cv) }
}

/// # Safety
/// The views must lie inside the allocations behind the pointers; `c`'s elements must be distinct and not be
/// read or written by anyone else during the call.
unsafe fn gemm_views<T: Real>(alpha: T, a: *const T, av: View, b: *const T, bv: View, beta: T, c: *mut T, cv: View) {
    T::gemm_raw(
        av.rows,
        av.cols,
        bv.cols,
        alpha,
        a.add(av.off),
        av.rs as isize,
        av.cs as isize,
        b.add(bv.off),
        bv.rs as isize,
        bv.cs as isize,
        beta,
        c.add(cv.off),
        cv.rs as isize,
        cv.cs as isize,
    );
}

/// Output elements below which `par_gemm` does not split (a task should be worth rayon's overhead).
const PAR_MIN_BLOCK: usize = 64;

/// The output pointer shared by the blocks of `par_gemm` (each block writes a disjoint part).
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
// SAFETY: only used by `par_gemm`, whose blocks write disjoint elements.
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// A method (not `.0`), so closures capture the whole `Sync` wrapper rather than the raw field.
    fn get(self) -> *mut T {
        self.0
    }
}

/// As `gemm`, with the output split into row blocks (m >= n) or column blocks across rayon's threads.
pub fn par_gemm<T: Real>(alpha: T, a: &[T], av: View, b: &[T], bv: View, beta: T, c: &mut [T], cv: View) {
    let (m, n) = (cv.rows, cv.cols);
    let threads = rayon::current_num_threads();
    let split_rows = m >= n;
    let long = if split_rows { m } else { n };
    let blocks = (long / PAR_MIN_BLOCK).clamp(1, 4 * threads);
    if blocks <= 1 || m.saturating_mul(n) < PAR_MIN_BLOCK * PAR_MIN_BLOCK {
        return gemm(alpha, a, av, b, bv, beta, c, cv);
    }
    check_shapes(av, bv, cv);
    av.check(a.len(), "a");
    bv.check(b.len(), "b");
    cv.check(c.len(), "c");
    cv.check_distinct();
    let step = long.div_ceil(blocks);
    let cp = OutPtr(c.as_mut_ptr());
    (0..long.div_ceil(step)).into_par_iter().for_each(|blk| {
        let (lo, hi) = (blk * step, ((blk + 1) * step).min(long));
        let (a2, b2, c2) = if split_rows {
            (
                View { off: av.off + lo * av.rs, rows: hi - lo, ..av },
                bv,
                View { off: cv.off + lo * cv.rs, rows: hi - lo, ..cv },
            )
        } else {
            (
                av,
                View { off: bv.off + lo * bv.cs, cols: hi - lo, ..bv },
                View { off: cv.off + lo * cv.cs, cols: hi - lo, ..cv },
            )
        };
        // SAFETY: the sub-views lie inside the checked full views; blocks cover disjoint rows (or columns) of c,
        // which is exclusively borrowed for the duration of this call.
        unsafe { gemm_views(alpha, a.as_ptr(), a2, b.as_ptr(), b2, beta, cp.get(), c2) }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    fn naive(a: &[f64], av: View, b: &[f64], bv: View) -> Vec<f64> {
        let mut c = vec![0.0; av.rows * bv.cols];
        for i in 0..av.rows {
            for j in 0..bv.cols {
                for p in 0..av.cols {
                    c[i * bv.cols + j] += a[av.off + i * av.rs + p * av.cs] * b[bv.off + p * bv.rs + j * bv.cs];
                }
            }
        }
        c
    }

    #[test]
    fn strided_views_and_par_split_match_naive() {
        let mut rng = Rng::new(12);
        for (m, k, n) in [(3, 4, 5), (130, 7, 70), (9, 200, 300), (1, 0, 4)] {
            // a stored transposed with padding; b offset inside a larger buffer.
            let a = rand_vec(&mut rng, (k + 1) * m + 3, 1.0);
            let av = View { off: 3, rows: m, cols: k, rs: 1, cs: m };
            let b = rand_vec(&mut rng, 5 + k * (n + 2), 1.0);
            let bv = View::rm(5, k, n, n + 2);
            let c0 = rand_vec(&mut rng, m * n, 1.0);
            let want: Vec<f64> = naive(&a, av, &b, bv).iter().zip(&c0).map(|(p, c)| 2.0 * p + 0.5 * c).collect();
            for par in [false, true] {
                let mut c = c0.clone();
                let f = if par { par_gemm::<f64> } else { gemm::<f64> };
                f(2.0, &a, av, &b, bv, 0.5, &mut c, View::rm(0, m, n, n));
                assert_close(&format!("gemm {m}x{k}x{n} par={par}"), &c, &want, Tol { atol: 1e-12, rtol: 1e-12 });
            }
        }
    }

    #[test]
    #[should_panic(expected = "reaches")]
    fn out_of_bounds_view_panics() {
        let a = [1.0f32; 4];
        let mut c = [0.0f32; 4];
        gemm(1.0, &a, View::rm(0, 2, 2, 2), &a, View::rm(1, 2, 2, 2), 0.0, &mut c, View::rm(0, 2, 2, 2));
    }
}
