//! MaxPool1d(kernel 2, stride 2), floor mode. The forward remembers which element of each pair won (a u8 0/1,
//! the first one on ties, NaN propagates as in PyTorch) so the backward is a pure routing of dy.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::PoolShape;

/// Rows per parallel task: about `CHUNK` input elements each, as the other element-wise kernels split their work.
const CHUNK: usize = 1 << 14;

fn rows_per_task(l: usize) -> usize {
    (CHUNK / l.max(1)).max(1)
}

/// y (B, C, L/2), argmax (B, C, L/2) from x (B, C, L); blocks of rows (b, c) in parallel.
pub fn max_pool_fwd<T: Real>(s: PoolShape, x: &[T], y: &mut [T], argmax: &mut [u8]) {
    let lo = s.l_out();
    if lo == 0 {
        return;
    }
    let rows = rows_per_task(s.l);
    y.par_chunks_mut(lo * rows).zip(argmax.par_chunks_mut(lo * rows)).enumerate().for_each(|(task, (yb, ab))| {
        for (r, (yrow, arow)) in yb.chunks_exact_mut(lo).zip(ab.chunks_exact_mut(lo)).enumerate() {
            let row = task * rows + r;
            // Pairs by `chunks_exact` (no index bounds checks), so the loop vectorises.
            let pairs = x[row * s.l..row * s.l + 2 * lo].chunks_exact(2);
            for ((pair, yv), av) in pairs.zip(yrow.iter_mut()).zip(arow.iter_mut()) {
                let (a, b) = (pair[0], pair[1]);
                // torch keeps the running max unless the new value is larger or NaN.
                let second = b > a || b.is_nan();
                *yv = if second { b } else { a };
                *av = second as u8;
            }
        }
    });
}

/// dx (B, C, L): dy at the remembered position, zero at the loser and at an odd trailing element.
pub fn max_pool_bwd<T: Real>(s: PoolShape, dy: &[T], argmax: &[u8], dx: &mut [T]) {
    let lo = s.l_out();
    let rows = rows_per_task(s.l);
    dx.par_chunks_mut(s.l * rows).enumerate().for_each(|(task, dxb)| {
        for (r, dxrow) in dxb.chunks_exact_mut(s.l).enumerate() {
            let row = task * rows + r;
            let (dyrow, arow) = (&dy[row * lo..(row + 1) * lo], &argmax[row * lo..(row + 1) * lo]);
            let (pairs, tail) = dxrow.split_at_mut(2 * lo);
            for ((pair, &g), &a) in pairs.chunks_exact_mut(2).zip(dyrow).zip(arow) {
                pair[0] = if a == 0 { g } else { T::ZERO };
                pair[1] = if a == 0 { T::ZERO } else { g };
            }
            tail.fill(T::ZERO);
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

    /// Blocks of rows (several per task, more rows than one task holds, odd and even L, NaN and ties) give the
    /// bits of the plain row-by-row definition.
    #[test]
    fn blocked_rows_match_the_plain_definition() {
        let mut rng = Rng::new(17);
        for l in [333usize, 334, 1] {
            let s = PoolShape { b: 3, c: 50, l };
            let mut x: Vec<f32> = rand_vec(&mut rng, s.x_len(), 1.0).into_iter().map(|v| v as f32).collect();
            for i in (0..x.len()).step_by(7) {
                x[i] = x[i ^ 1].min(x[i]); // ties and near-ties
            }
            x[11] = f32::NAN;
            let (mut y, mut am) = (vec![0.0f32; s.y_len()], vec![9u8; s.y_len()]);
            max_pool_fwd(s, &x, &mut y, &mut am);
            let lo = s.l_out();
            for row in 0..s.b * s.c {
                for j in 0..lo {
                    let (a, b) = (x[row * l + 2 * j], x[row * l + 2 * j + 1]);
                    let second = b > a || b.is_nan();
                    let k = row * lo + j;
                    assert_eq!(am[k], second as u8, "argmax row {row} j {j}");
                    assert_eq!(y[k].to_bits(), if second { b } else { a }.to_bits(), "y row {row} j {j}");
                }
            }
            let dy: Vec<f32> = rand_vec(&mut rng, s.y_len(), 1.0).into_iter().map(|v| v as f32).collect();
            let mut dx = vec![5.0f32; s.x_len()];
            max_pool_bwd(s, &dy, &am, &mut dx);
            let mut want = vec![0.0f32; s.x_len()];
            for row in 0..s.b * s.c {
                for j in 0..lo {
                    want[row * l + 2 * j + am[row * lo + j] as usize] = dy[row * lo + j];
                }
            }
            assert_eq!(dx, want, "dx at L = {l}");
        }
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
