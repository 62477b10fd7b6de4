//! Bias-free Conv1d with dilation and symmetric 'same' zero padding ((K - 1) d / 2 per side, K odd), forward and
//! backward to dx and dW, as GEMMs without im2col: tap kk of the kernel is the (C_out, C_in) matrix W[:, :, kk]
//! (a strided view), and its input is x shifted along L (a view too), so y_b = sum_kk W_kk x_b[:, shifted] is K
//! GEMMs per batch row, dx_b the same with W_kk^T, and dW_kk += dy_b x_b[:, shifted]^T (inner dimension L).
//! Forward and dx are parallel over the batch; dW over a fixed number of batch groups whose partial sums are
//! added in group order, so the result does not depend on the thread count.

use rayon::prelude::*;

use super::gemm::{gemm, View};
use super::real::Real;
use crate::backend::shapes::Conv1dShape;

/// Batch groups of the dW reduction (fixed: the summation order must not depend on the machine).
const DW_GROUPS: usize = 8;

/// For tap kk: the input offset `off` (input position = output position + off) and the output range [lo, hi)
/// whose input position lies inside [0, l).
fn tap(s: &Conv1dShape, kk: usize) -> (isize, usize, usize) {
    let off = (kk * s.dilation) as isize - s.pad() as isize;
    let lo = (-off).max(0) as usize;
    let hi = (s.l as isize - off).clamp(0, s.l as isize) as usize;
    (off, lo.min(hi), hi)
}

/// Taps in computing order: the centre tap (offset 0, the full range, so it can overwrite) first.
fn taps(s: &Conv1dShape) -> impl Iterator<Item = usize> {
    let centre = (s.k - 1) / 2;
    std::iter::once(centre).chain((0..s.k).filter(move |&kk| kk != centre))
}

/// W[:, :, kk] as a (C_out, C_in) view of w (C_out, C_in, K).
fn w_tap(s: &Conv1dShape, kk: usize) -> View {
    View { off: kk, rows: s.c_out, cols: s.c_in, rs: s.c_in * s.k, cs: s.k }
}

/// y (B, C_out, L) = conv(x (B, C_in, L), w (C_out, C_in, K)).
pub fn conv1d_fwd<T: Real>(s: Conv1dShape, x: &[T], w: &[T], y: &mut [T]) {
    let l = s.l;
    if s.y_len() == 0 {
        return;
    }
    y.par_chunks_mut(s.c_out * l).enumerate().for_each(|(b, yb)| {
        for (n, kk) in taps(&s).enumerate() {
            let (off, lo, hi) = tap(&s, kk);
            if lo >= hi {
                continue; // the tap lies wholly in the padding (dilation >= L)
            }
            // y_b[:, lo..hi] (+)= W_kk (C_out, C_in) x_b[:, lo+off .. hi+off] (C_in, hi - lo)
            let xv = View::rm(b * s.c_in * l + (lo as isize + off) as usize, s.c_in, hi - lo, l);
            let beta = if n == 0 { T::ZERO } else { T::ONE };
            gemm(T::ONE, w, w_tap(&s, kk), x, xv, beta, yb, View::rm(lo, s.c_out, hi - lo, l));
        }
    });
}

/// dx (B, C_in, L) = conv^T(dy) (written); dw (C_out, C_in, K) += sum_{b, l} dy[b, o, l] x[b, i, l + off(kk)].
pub fn conv1d_bwd<T: Real>(s: Conv1dShape, x: &[T], w: &[T], dy: &[T], dx: &mut [T], dw: &mut [T]) {
    let l = s.l;
    if s.x_len() == 0 || s.y_len() == 0 {
        dx.fill(T::ZERO);
        return;
    }
    dx.par_chunks_mut(s.c_in * l).enumerate().for_each(|(b, dxb)| {
        for (n, kk) in taps(&s).enumerate() {
            let (off, lo, hi) = tap(&s, kk);
            if lo >= hi {
                continue; // the tap lies wholly in the padding (dilation >= L)
            }
            // dx_b[:, lo+off .. hi+off] (+)= W_kk^T (C_in, C_out) dy_b[:, lo..hi] (C_out, hi - lo)
            let gv = View::rm(b * s.c_out * l + lo, s.c_out, hi - lo, l);
            let beta = if n == 0 { T::ZERO } else { T::ONE };
            let dst = View::rm((lo as isize + off) as usize, s.c_in, hi - lo, l);
            gemm(T::ONE, w, w_tap(&s, kk).t(), dy, gv, beta, dxb, dst);
        }
    });
    let per = s.b.div_ceil(DW_GROUPS);
    let parts: Vec<Vec<T>> = (0..s.b.div_ceil(per))
        .into_par_iter()
        .map(|g| {
            let mut part = vec![T::ZERO; s.weight_len()];
            for b in g * per..((g + 1) * per).min(s.b) {
                for kk in 0..s.k {
                    let (off, lo, hi) = tap(&s, kk);
                    if lo >= hi {
                        continue;
                    }
                    // dW_kk (C_out, C_in) += dy_b[:, lo..hi] (C_out, L') x_b[:, lo+off .. hi+off]^T (L', C_in)
                    let gv = View::rm(b * s.c_out * l + lo, s.c_out, hi - lo, l);
                    let xv = View::rm(b * s.c_in * l + (lo as isize + off) as usize, s.c_in, hi - lo, l);
                    gemm(T::ONE, dy, gv, x, xv.t(), T::ONE, &mut part, w_tap(&s, kk));
                }
            }
            part
        })
        .collect();
    for part in &parts {
        for (d, &p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn forward_hand_case() {
        // One channel, k = 3, dilation 2 (padding 2): y[l] = w0 x[l-2] + w1 x[l] + w2 x[l+2].
        let s = Conv1dShape { b: 1, c_in: 1, c_out: 1, l: 5, k: 3, dilation: 2 };
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0];
        let mut y = [0.0; 5];
        conv1d_fwd(s, &x, &[1.0, 10.0, 100.0], &mut y);
        assert_eq!(y, [310.0, 420.0, 531.0, 42.0, 53.0]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(7);
        // The last cases have taps wholly inside the padding (dilation >= L), as the dilated blocks at L = 1.
        for (k, dilation, l) in [(1, 1, 8), (3, 2, 8), (5, 1, 8), (3, 3, 8), (3, 2, 1), (3, 3, 2), (5, 1, 2)] {
            let s = Conv1dShape { b: 2, c_in: 3, c_out: 2, l, k, dilation };
            let x = rand_vec(&mut rng, s.x_len(), 1.0);
            let w = rand_vec(&mut rng, s.weight_len(), 1.0);
            let p = rand_vec(&mut rng, s.y_len(), 1.0);
            let run = |x: &[f64], w: &[f64]| {
                let mut y = vec![0.0; s.y_len()];
                conv1d_fwd(s, x, w, &mut y);
                project(&y, &p)
            };
            let mut dx = vec![7.0; s.x_len()];
            let mut dw = vec![1.0; s.weight_len()];
            conv1d_bwd(s, &x, &w, &p, &mut dx, &mut dw);
            dw.iter_mut().for_each(|v| *v -= 1.0); // dw accumulates onto the initial 1.0
            assert_close(&format!("conv k{k} d{dilation} dx"), &dx, &fd_grad(&x, |x| run(x, &w)), FD_TOL);
            assert_close(&format!("conv k{k} d{dilation} dw"), &dw, &fd_grad(&w, |w| run(&x, w)), FD_TOL);
        }
    }
}
