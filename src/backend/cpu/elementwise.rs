//! Element-wise and layout helpers: fill, scale, axpy, add, channel-slice copy (split / concat of the technical
//! and biological halves) and cropping along L. Trivial loops, parallel over rows with rayon.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::{ChannelCopy, CropShape};

/// Chunk length for flat element-wise loops (large enough to amortise rayon's task cost).
const CHUNK: usize = 1 << 14;

pub fn fill<T: Real>(x: &mut [T], value: T) {
    x.par_chunks_mut(CHUNK).for_each(|c| c.fill(value));
}

pub fn scale<T: Real>(alpha: T, x: &mut [T]) {
    x.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v *= alpha));
}

/// y += alpha x.
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        for (yv, &xv) in yc.iter_mut().zip(xc) {
            *yv += alpha * xv;
        }
    });
}

/// out = a + b.
pub fn add<T: Real>(a: &[T], b: &[T], out: &mut [T]) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(oc, (ac, bc))| {
        for ((o, &x), &y) in oc.iter_mut().zip(ac).zip(bc) {
            *o = x + y;
        }
    });
}

/// dst[b, dst_off + j, :] (+)= src[b, src_off + j, :] for j < n.
pub fn channel_copy<T: Real>(s: ChannelCopy, src: &[T], dst: &mut [T], accumulate: bool) {
    let row = s.c_dst * s.l;
    dst.par_chunks_mut(row).enumerate().for_each(|(b, drow)| {
        let from = &src[(b * s.c_src + s.src_off) * s.l..(b * s.c_src + s.src_off + s.n) * s.l];
        let to = &mut drow[s.dst_off * s.l..(s.dst_off + s.n) * s.l];
        if accumulate {
            to.iter_mut().zip(from).for_each(|(d, &v)| *d += v);
        } else {
            to.copy_from_slice(from);
        }
    });
}

/// y (B, C, L - 2 crop) = x[:, :, crop .. L - crop].
pub fn crop_fwd<T: Real>(s: CropShape, x: &[T], y: &mut [T]) {
    let lo = s.l_out();
    y.par_chunks_mut(lo).enumerate().for_each(|(row, yrow)| {
        yrow.copy_from_slice(&x[row * s.l + s.crop..row * s.l + s.crop + lo]);
    });
}

/// dx (B, C, L) = dy zero-padded by `crop` on both sides.
pub fn crop_bwd<T: Real>(s: CropShape, dy: &[T], dx: &mut [T]) {
    let lo = s.l_out();
    dx.par_chunks_mut(s.l).enumerate().for_each(|(row, dxrow)| {
        dxrow.fill(T::ZERO);
        dxrow[s.crop..s.crop + lo].copy_from_slice(&dy[row * lo..(row + 1) * lo]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_concat_round_trips() {
        // (B=2, 2C=4, L=3): technical = channels [0, 2), biological = [2, 4).
        let (b, c, l) = (2, 2, 3);
        let x: Vec<f64> = (0..b * 2 * c * l).map(|i| i as f64).collect();
        let mut tech = vec![0.0; b * c * l];
        let mut bio = vec![0.0; b * c * l];
        let take = |off| ChannelCopy { b, l, c_src: 2 * c, src_off: off, c_dst: c, dst_off: 0, n: c };
        channel_copy(take(0), &x, &mut tech, false);
        channel_copy(take(c), &x, &mut bio, false);
        assert_eq!(tech[..3], [0.0, 1.0, 2.0]);
        assert_eq!(bio[..3], [6.0, 7.0, 8.0]);
        assert_eq!(bio[6..9], [18.0, 19.0, 20.0]);
        let mut back = vec![0.0; x.len()];
        let put = |off| ChannelCopy { b, l, c_src: c, src_off: 0, c_dst: 2 * c, dst_off: off, n: c };
        channel_copy(put(0), &tech, &mut back, false);
        channel_copy(put(c), &bio, &mut back, false);
        assert_eq!(back, x);
        // Accumulating adds on top.
        channel_copy(put(c), &bio, &mut back, true);
        assert_eq!(back[6], 12.0);
        assert_eq!(back[0], 0.0);
    }

    #[test]
    fn crop_backward_is_the_adjoint_of_forward() {
        let s = CropShape { b: 2, c: 3, l: 7, crop: 2 };
        let x: Vec<f64> = (0..s.x_len()).map(|i| (i as f64 * 0.37).sin()).collect();
        let g: Vec<f64> = (0..s.y_len()).map(|i| (i as f64 * 0.91).cos()).collect();
        let mut y = vec![0.0; s.y_len()];
        crop_fwd(s, &x, &mut y);
        assert_eq!(y[..3], x[2..5]);
        let mut dx = vec![1.0; s.x_len()];
        crop_bwd(s, &g, &mut dx);
        // <crop(x), g> == <x, crop^T(g)> exactly (each term appears once on both sides).
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        assert_eq!(dx[0], 0.0);
        assert_eq!(dx[6], 0.0);
    }

    #[test]
    fn axpy_add_scale_fill() {
        let mut y = vec![1.0f32; 5];
        axpy(2.0, &[1.0, 2.0, 3.0, 4.0, 5.0], &mut y);
        assert_eq!(y, [3.0, 5.0, 7.0, 9.0, 11.0]);
        let mut out = vec![0.0f32; 5];
        add(&y, &[1.0; 5], &mut out);
        assert_eq!(out, [4.0, 6.0, 8.0, 10.0, 12.0]);
        scale(0.5, &mut out);
        assert_eq!(out, [2.0, 3.0, 4.0, 5.0, 6.0]);
        fill(&mut out, 0.0);
        assert_eq!(out, [0.0; 5]);
    }
}
