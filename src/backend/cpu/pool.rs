//! MaxPool1d(kernel 2, stride 2), floor mode. The forward remembers which element of each pair won (a u8 0/1,
//! the first one on ties, NaN propagates as in PyTorch) so the backward is a pure routing of dy.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::PoolShape;

/// y (B, C, L/2), argmax (B, C, L/2) from x (B, C, L); rows (b, c) in parallel.
pub fn max_pool_fwd<T: Real>(s: PoolShape, x: &[T], y: &mut [T], argmax: &mut [u8]) {
    let lo = s.l_out();
    if lo == 0 {
        return;
    }
    y.par_chunks_mut(lo).zip(argmax.par_chunks_mut(lo)).enumerate().for_each(|(row, (yrow, arow))| {
        let xrow = &x[row * s.l..(row + 1) * s.l];
        for j in 0..lo {
            let (a, b) = (xrow[2 * j], xrow[2 * j + 1]);
            // torch keeps the running max unless the new value is larger or NaN.
            let second = b > a || b.is_nan();
            yrow[j] = if second { b } else { a };
            arow[j] = second as u8;
        }
    });
}

/// dx (B, C, L): dy at the remembered position, zero at the loser and at an odd trailing element.
pub fn max_pool_bwd<T: Real>(s: PoolShape, dy: &[T], argmax: &[u8], dx: &mut [T]) {
    let lo = s.l_out();
    dx.par_chunks_mut(s.l).enumerate().for_each(|(row, dxrow)| {
        dxrow.fill(T::ZERO);
        for j in 0..lo {
            dxrow[2 * j + argmax[row * lo + j] as usize] = dy[row * lo + j];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn forward_values_ties_and_odd_length() {
        let s = PoolShape { b: 1, c: 2, l: 5 };
        let x = [1.0f32, 3.0, 2.0, 2.0, 9.0, /* c1 */ -1.0, -4.0, f32::NAN, 0.0, 7.0];
        let mut y = [0.0f32; 4];
        let mut am = [9u8; 4];
        max_pool_fwd(s, &x, &mut y, &mut am);
        assert_eq!(y[..3], [3.0, 2.0, -1.0]);
        assert!(y[3].is_nan());
        assert_eq!(am, [1, 0, 0, 0]);
        let mut dx = [5.0f32; 10];
        max_pool_bwd(s, &[1.0, 2.0, 3.0, 4.0], &am, &mut dx);
        assert_eq!(dx, [0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let s = PoolShape { b: 2, c: 3, l: 7 };
        // Random values: ties (where the max is not differentiable) have probability zero.
        let x = rand_vec(&mut rng, s.x_len(), 1.0);
        let p = rand_vec(&mut rng, s.y_len(), 1.0);
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            let mut am = vec![0u8; s.y_len()];
            max_pool_fwd(s, x, &mut y, &mut am);
            project(&y, &p)
        };
        let mut y = vec![0.0; s.y_len()];
        let mut am = vec![0u8; s.y_len()];
        max_pool_fwd(s, &x, &mut y, &mut am);
        let mut dx = vec![0.0; s.x_len()];
        max_pool_bwd(s, &p, &am, &mut dx);
        assert_close("max_pool dx", &dx, &fd_grad(&x, loss), FD_TOL);
    }
}
