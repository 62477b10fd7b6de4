//! Bias-free Conv1d with dilation and symmetric 'same' zero padding ((K - 1) d / 2 per side, K odd).
//!
//! Forward: K GEMMs per batch row without im2col: tap kk of the kernel is the (C_out, C_in) matrix W[:, :, kk] (a
//! strided view), and its input is x shifted along L (a view too), so y_b = sum_kk W_kk x_b[:, shifted]. (An
//! im2col panel with one GEMM of inner dimension C_in K was tried and was not faster here: the forward already runs
//! near the GEMM's peak and the panel copy costs what the single output pass saves.)
//!
//! Backward: one GEMM per batch row for dx and one for dW, over im2col panels. P_b (C_in K, L) holds in row
//! i K + kk the input channel i shifted by tap kk (zeros where the tap reads padding); Q_b (C_out K, L) is the same
//! panel built from dy_b. Then
//! - dx_b (C_in, L) = W' (C_in, C_out K) Q_b, with W'[i, o K + j] = W[o, i, K-1-j]: the transposed conv is a conv
//!   with the taps mirrored (tap K-1-j shifts by minus tap j's shift), so dx is written once, not K times, and the
//!   inner dimension is C_out K instead of C_out;
//! - dW (C_out, C_in K) += dy_b (C_out, L) P_b^T (L, C_in K): w (C_out, C_in, K) is this row-major matrix, so the
//!   output is contiguous (the per-tap dW_kk views had column stride K).
//!
//! For K = 1 the panels are the rows themselves and nothing is copied.
//!
//! Forward and dx are parallel over the batch (dx over blocks of rows, one panel buffer per block); dW over a fixed
//! number of batch groups whose partial sums are added in group order, so no result depends on the thread count.

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

/// im2col of one batch row: src (C, L) into panel (C K, L), row c K + kk = src[c, l + off(kk)], zero outside [0, L).
fn im2col<T: Real>(s: &Conv1dShape, c: usize, src: &[T], panel: &mut [T]) {
    let l = s.l;
    for (ch, rows) in panel[..c * s.k * l].chunks_exact_mut(s.k * l).enumerate() {
        let srow = &src[ch * l..(ch + 1) * l];
        for (kk, row) in rows.chunks_exact_mut(l).enumerate() {
            let (off, lo, hi) = tap(s, kk);
            if lo >= hi {
                row.fill(T::ZERO); // the tap lies wholly in the padding (dilation >= L)
                continue;
            }
            row[..lo].fill(T::ZERO);
            let start = (lo as isize + off) as usize;
            row[lo..hi].copy_from_slice(&srow[start..start + (hi - lo)]);
            row[hi..].fill(T::ZERO);
        }
    }
}

/// The GEMM right-hand side for batch row `b` of src (B, C, L): the row itself when K = 1 (no shift, no copy),
/// else its panel built into `panel`. Returns the slice and the (C K, L) view into it.
fn panel_of<'a, T: Real>(s: &Conv1dShape, c: usize, src: &'a [T], b: usize, panel: &'a mut [T]) -> (&'a [T], View) {
    let l = s.l;
    if s.k == 1 {
        return (src, View::rm(b * c * l, c, l, l));
    }
    im2col(s, c, &src[b * c * l..(b + 1) * c * l], panel);
    (panel, View::rm(0, c * s.k, l, l))
}

/// dx (B, C_in, L) = conv^T(dy) (written); dw (C_out, C_in, K) += sum_{b, l} dy[b, o, l] x[b, i, l + off(kk)].
pub fn conv1d_bwd<T: Real>(s: Conv1dShape, x: &[T], w: &[T], dy: &[T], dx: &mut [T], dw: &mut [T]) {
    let l = s.l;
    if s.x_len() == 0 || s.y_len() == 0 {
        dx.fill(T::ZERO);
        return;
    }
    let (k, ck, ok) = (s.k, s.c_in * s.k, s.c_out * s.k);
    // W' (C_in, C_out K): W'[i, o K + j] = W[o, i, K-1-j], the mirrored taps (for K = 1 the transposed view of w).
    let mut wt = Vec::new();
    let wtv = if k == 1 {
        View::rm(0, s.c_out, s.c_in, s.c_in).t()
    } else {
        wt = vec![T::ZERO; s.weight_len()];
        for (i, wti) in wt.chunks_exact_mut(ok).enumerate() {
            for (o, wtio) in wti.chunks_exact_mut(k).enumerate() {
                let wo = &w[(o * s.c_in + i) * k..][..k];
                for (j, v) in wtio.iter_mut().enumerate() {
                    *v = wo[k - 1 - j];
                }
            }
        }
        View::rm(0, s.c_in, ok, ok)
    };
    let wts: &[T] = if k == 1 { w } else { &wt };
    // A few blocks of rows per thread, each with one panel buffer; the split decides only which thread computes a
    // row, never how.
    let per = s.b.div_ceil(4 * rayon::current_num_threads()).max(1);
    dx.par_chunks_mut(per * s.c_in * l).enumerate().for_each(|(t, dxt)| {
        let mut panel = vec![T::ZERO; if k == 1 { 0 } else { ok * l }];
        for (j, dxb) in dxt.chunks_exact_mut(s.c_in * l).enumerate() {
            // dx_b (C_in, L) = W' (C_in, C_out K) Q_b (C_out K, L)
            let (src, qv) = panel_of(&s, s.c_out, dy, t * per + j, &mut panel);
            gemm(T::ONE, wts, wtv, src, qv, T::ZERO, dxb, View::rm(0, s.c_in, l, l));
        }
    });
    let per = s.b.div_ceil(DW_GROUPS);
    let parts: Vec<Vec<T>> = (0..s.b.div_ceil(per))
        .into_par_iter()
        .map(|g| {
            let mut part = vec![T::ZERO; s.weight_len()];
            let mut panel = vec![T::ZERO; if k == 1 { 0 } else { ck * l }];
            for b in g * per..((g + 1) * per).min(s.b) {
                // dW (C_out, C_in K) += dy_b (C_out, L) P_b^T (L, C_in K)
                let (src, pv) = panel_of(&s, s.c_in, x, b, &mut panel);
                let gv = View::rm(b * s.c_out * l, s.c_out, l, l);
                gemm(T::ONE, dy, gv, src, pv.t(), T::ONE, &mut part, View::rm(0, s.c_out, ck, ck));
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
