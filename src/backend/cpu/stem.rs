//! The stem convolution over dinucleotide tokens: Conv1d(16 -> C_out, K, 'same' padding, bias) on the one-hot
//! encoding, computed as a gather of weight columns (no multiplies): y[b, o, l] = bias[o] + sum_k W[o, tok, k] with
//! tok = tokens[b, l + k - pad]; token 16 (an N-containing dinucleotide, all-zero column) and positions outside
//! [0, T) contribute nothing. Backward scatters dy into dW; tokens need no gradient.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::{StemShape, STEM_CHANNELS};

/// Range of output positions l for which l + kk - pad lies in [0, t).
fn valid_range(kk: usize, pad: usize, t: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(kk);
    let hi = (t + pad).saturating_sub(kk).min(t);
    (lo, hi.max(lo))
}

/// y (B, C_out, T) from tokens (B, T), w (C_out, 16, K), bias (C_out); one output row (b, o) per task.
pub fn stem_fwd<T: Real>(s: StemShape, tokens: &[u8], w: &[T], bias: &[T], y: &mut [T]) {
    let (t, k, pad) = (s.t, s.k, s.pad());
    y.par_chunks_mut(t).enumerate().for_each(|(row, yrow)| {
        let (b, o) = (row / s.c_out, row % s.c_out);
        let toks = &tokens[b * t..(b + 1) * t];
        let wo = &w[o * STEM_CHANNELS * k..(o + 1) * STEM_CHANNELS * k];
        yrow.fill(bias[o]);
        for kk in 0..k {
            let (lo, hi) = valid_range(kk, pad, t);
            for l in lo..hi {
                let tok = toks[l + kk - pad] as usize;
                if tok < STEM_CHANNELS {
                    yrow[l] += wo[tok * k + kk];
                }
            }
        }
    });
}

/// dw (C_out, 16, K) += scatter of dy; dbias (C_out) += sum of dy; one output channel o per task.
pub fn stem_bwd<T: Real>(s: StemShape, tokens: &[u8], dy: &[T], dw: &mut [T], dbias: &mut [T]) {
    let (t, k, pad) = (s.t, s.k, s.pad());
    dw.par_chunks_mut(STEM_CHANNELS * k).zip(dbias.par_iter_mut()).enumerate().for_each(|(o, (dwo, dbo))| {
        for b in 0..s.b {
            let toks = &tokens[b * t..(b + 1) * t];
            let g = &dy[(b * s.c_out + o) * t..(b * s.c_out + o + 1) * t];
            let mut sum = T::ZERO;
            for &gv in g {
                sum += gv;
            }
            *dbo += sum;
            for kk in 0..k {
                let (lo, hi) = valid_range(kk, pad, t);
                for l in lo..hi {
                    let tok = toks[l + kk - pad] as usize;
                    if tok < STEM_CHANNELS {
                        dwo[tok * k + kk] += g[l];
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::conv::conv1d_fwd;
    use crate::backend::cpu::testutil::*;
    use crate::backend::shapes::{Conv1dShape, TOKEN_N};
    use crate::rng::Rng;

    fn random_tokens(rng: &mut Rng, n: usize) -> Vec<u8> {
        // About 1 in 9 tokens is N (value 16).
        (0..n).map(|_| rng.below(18).min(TOKEN_N as u64) as u8).collect()
    }

    #[test]
    fn gather_equals_dense_conv_on_one_hot() {
        let mut rng = Rng::new(5);
        let s = StemShape { b: 2, t: 11, c_out: 3, k: 5 };
        let tokens = random_tokens(&mut rng, s.tokens_len());
        let w = rand_vec(&mut rng, s.weight_len(), 1.0);
        let bias = rand_vec(&mut rng, s.c_out, 1.0);
        let mut y = vec![0.0; s.out_len()];
        stem_fwd(s, &tokens, &w, &bias, &mut y);
        // Dense reference: one-hot (B, 16, T) through the generic conv, plus bias.
        let mut onehot = vec![0.0; s.b * STEM_CHANNELS * s.t];
        for b in 0..s.b {
            for l in 0..s.t {
                let tok = tokens[b * s.t + l] as usize;
                if tok < STEM_CHANNELS {
                    onehot[(b * STEM_CHANNELS + tok) * s.t + l] = 1.0;
                }
            }
        }
        let cs = Conv1dShape { b: s.b, c_in: STEM_CHANNELS, c_out: s.c_out, l: s.t, k: s.k, dilation: 1 };
        let mut dense = vec![0.0; s.out_len()];
        conv1d_fwd(cs, &onehot, &w, &mut dense);
        for (i, d) in dense.iter_mut().enumerate() {
            *d += bias[(i / s.t) % s.c_out];
        }
        // Same sums of the same f64 terms in a different order: rounding only.
        assert_close("stem vs dense", &y, &dense, Tol { atol: 1e-12, rtol: 1e-12 });
    }

    #[test]
    fn all_n_tokens_give_the_bias() {
        let s = StemShape { b: 1, t: 4, c_out: 2, k: 15 };
        let mut y = vec![0.0f32; s.out_len()];
        stem_fwd(s, &[TOKEN_N; 4], &vec![1.0; s.weight_len()], &[0.5, -2.0], &mut y);
        assert_eq!(y, [0.5, 0.5, 0.5, 0.5, -2.0, -2.0, -2.0, -2.0]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(6);
        let s = StemShape { b: 2, t: 9, c_out: 3, k: 5 };
        let tokens = random_tokens(&mut rng, s.tokens_len());
        let w = rand_vec(&mut rng, s.weight_len(), 1.0);
        let bias = rand_vec(&mut rng, s.c_out, 1.0);
        let p = rand_vec(&mut rng, s.out_len(), 1.0);
        let run = |w: &[f64], bias: &[f64]| {
            let mut y = vec![0.0; s.out_len()];
            stem_fwd(s, &tokens, w, bias, &mut y);
            project(&y, &p)
        };
        // Accumulation: start from 1 and subtract it, to check `+=`.
        let mut dw = vec![1.0; s.weight_len()];
        let mut db = vec![1.0; s.c_out];
        stem_bwd(s, &tokens, &p, &mut dw, &mut db);
        dw.iter_mut().chain(db.iter_mut()).for_each(|v| *v -= 1.0);
        assert_close("stem dw", &dw, &fd_grad(&w, |w| run(w, &bias)), FD_TOL);
        assert_close("stem dbias", &db, &fd_grad(&bias, |b| run(&w, b)), FD_TOL);
    }
}
