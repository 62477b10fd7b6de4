//! Bias-free Conv1d with dilation and symmetric 'same' zero padding ((K - 1) d / 2 per side, K odd), forward and
//! backward to dx and dW. Direct loops over shifted row segments (each tap is an axpy or a dot over contiguous
//! memory, which the compiler vectorises); parallel over output rows (b, o), input rows (b, i) and weight rows o.

use rayon::prelude::*;

use super::real::{dot, Real};
use crate::backend::shapes::Conv1dShape;

/// For tap kk: the input offset `off` (input position = output position + off) and the output range [lo, hi)
/// whose input position lies inside [0, l).
fn tap(s: &Conv1dShape, kk: usize) -> (isize, usize, usize) {
    let off = (kk * s.dilation) as isize - s.pad() as isize;
    let lo = (-off).max(0) as usize;
    let hi = (s.l as isize - off).clamp(0, s.l as isize) as usize;
    (off, lo.min(hi), hi)
}

/// y (B, C_out, L) = conv(x (B, C_in, L), w (C_out, C_in, K)).
pub fn conv1d_fwd<T: Real>(s: Conv1dShape, x: &[T], w: &[T], y: &mut [T]) {
    let (l, k) = (s.l, s.k);
    y.par_chunks_mut(l).enumerate().for_each(|(row, yrow)| {
        let (b, o) = (row / s.c_out, row % s.c_out);
        yrow.fill(T::ZERO);
        for i in 0..s.c_in {
            let xrow = &x[(b * s.c_in + i) * l..(b * s.c_in + i + 1) * l];
            let wrow = &w[(o * s.c_in + i) * k..(o * s.c_in + i + 1) * k];
            for (kk, &wv) in wrow.iter().enumerate() {
                let (off, lo, hi) = tap(&s, kk);
                if lo >= hi {
                    continue; // the tap lies wholly in the padding (dilation >= L)
                }
                let src = &xrow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                for (yv, &xv) in yrow[lo..hi].iter_mut().zip(src) {
                    *yv += wv * xv;
                }
            }
        }
    });
}

/// dx (B, C_in, L) = conv^T(dy) (written); dw (C_out, C_in, K) += sum_{b, l} dy[b, o, l] x[b, i, l + off(kk)].
pub fn conv1d_bwd<T: Real>(s: Conv1dShape, x: &[T], w: &[T], dy: &[T], dx: &mut [T], dw: &mut [T]) {
    let (l, k) = (s.l, s.k);
    dx.par_chunks_mut(l).enumerate().for_each(|(row, dxrow)| {
        let (b, i) = (row / s.c_in, row % s.c_in);
        dxrow.fill(T::ZERO);
        for o in 0..s.c_out {
            let grow = &dy[(b * s.c_out + o) * l..(b * s.c_out + o + 1) * l];
            let wrow = &w[(o * s.c_in + i) * k..(o * s.c_in + i + 1) * k];
            for (kk, &wv) in wrow.iter().enumerate() {
                let (off, lo, hi) = tap(&s, kk);
                if lo >= hi {
                    continue; // the tap lies wholly in the padding (dilation >= L)
                }
                let dst = &mut dxrow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                for (d, &g) in dst.iter_mut().zip(&grow[lo..hi]) {
                    *d += wv * g;
                }
            }
        }
    });
    dw.par_chunks_mut(s.c_in * k).enumerate().for_each(|(o, dwo)| {
        for b in 0..s.b {
            let grow = &dy[(b * s.c_out + o) * l..(b * s.c_out + o + 1) * l];
            for i in 0..s.c_in {
                let xrow = &x[(b * s.c_in + i) * l..(b * s.c_in + i + 1) * l];
                for kk in 0..k {
                    let (off, lo, hi) = tap(&s, kk);
                    if lo >= hi {
                        continue; // the tap lies wholly in the padding (dilation >= L)
                    }
                    let src = &xrow[(lo as isize + off) as usize..(hi as isize + off) as usize];
                    dwo[i * k + kk] += dot(&grow[lo..hi], src);
                }
            }
        }
    });
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
