//! The stem convolution over dinucleotide tokens: Conv1d(16 -> C_out, K, 'same' padding, bias) on the one-hot
//! encoding, computed as a gather of weight columns (no multiplies): y[b, o, l] = bias[o] + sum_k W[o, tok, k] with
//! tok = tokens[b, l + k - pad]; token 16 (an N-containing dinucleotide, all-zero column) and positions outside
//! [0, T) contribute nothing. Backward scatters dy into dW; tokens need no gradient.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::shapes::{StemShape, STEM_CHANNELS};

/// Output channels per vector block: the loops run over blocks of 8 output channels (one AVX2 register of f32),
/// the last block padded.
const LANES: usize = 8;

/// `dst[i] += src[i]` over one block of `LANES` output channels.
#[inline(always)]
fn add_block<T: Real>(dst: &mut [T], src: &[T]) {
    for (d, &v) in dst[..LANES].iter_mut().zip(&src[..LANES]) {
        *d += v;
    }
}

/// y (B, C_out, T) from tokens (B, T), w (C_out, 16, K), bias (C_out); one sample b per task.
///
/// Vectorised over output channels: for each position l the K weight columns W[:, tok, kk] (contiguous in a
/// transposed copy, padded to whole blocks) are added to a (T, C_out) accumulator, which is then transposed into
/// y. Each output is bias + sum over kk in ascending order, as in the plain gather, so the bits are the same.
pub fn stem_fwd<T: Real>(s: StemShape, tokens: &[u8], w: &[T], bias: &[T], y: &mut [T]) {
    let (t, k, pad, co) = (s.t, s.k, s.pad(), s.c_out);
    if t == 0 || co == 0 {
        return;
    }
    let cp = co.div_ceil(LANES) * LANES;
    // wt (16, K, C_pad): the weight column of (token, tap) contiguous over output channels.
    let mut wt = vec![T::ZERO; STEM_CHANNELS * k * cp];
    for o in 0..co {
        for tok in 0..STEM_CHANNELS {
            for kk in 0..k {
                wt[(tok * k + kk) * cp + o] = w[(o * STEM_CHANNELS + tok) * k + kk];
            }
        }
    }
    let mut bias_p = vec![T::ZERO; cp];
    bias_p[..co].copy_from_slice(bias);
    y.par_chunks_mut(co * t).enumerate().for_each(|(b, yb)| {
        let toks = &tokens[b * t..(b + 1) * t];
        let mut acc = vec![T::ZERO; t * cp];
        {
            for (l, row) in acc.chunks_exact_mut(cp).enumerate() {
                row.copy_from_slice(&bias_p);
                for kk in 0..k {
                    let Some(p) = (l + kk).checked_sub(pad).filter(|&p| p < t) else { continue };
                    let tok = toks[p] as usize;
                    if tok < STEM_CHANNELS {
                        let col = &wt[(tok * k + kk) * cp..(tok * k + kk + 1) * cp];
                        for (r, c) in row.chunks_exact_mut(LANES).zip(col.chunks_exact(LANES)) {
                            add_block(r, c);
                        }
                    }
                }
            }
            for (o, yrow) in yb.chunks_exact_mut(t).enumerate() {
                for (l, v) in yrow.iter_mut().enumerate() {
                    *v = acc[l * cp + o];
                }
            }
        }
    });
}

/// dw (C_out, 16, K) += scatter of dy; dbias (C_out) += sum of dy.
///
/// dW is vectorised over blocks of `LANES` output channels (one block per task): dy of the block is transposed to
/// (T, LANES) per sample and each position's row is added to the (token, tap) rows it reaches. For a fixed weight
/// the contributions arrive in the plain scatter's order (samples in order, positions ascending), so the bits are
/// the same.
pub fn stem_bwd<T: Real>(s: StemShape, tokens: &[u8], dy: &[T], dw: &mut [T], dbias: &mut [T]) {
    let (t, k, pad, co) = (s.t, s.k, s.pad(), s.c_out);
    dbias.par_iter_mut().enumerate().for_each(|(o, dbo)| {
        for b in 0..s.b {
            let mut sum = T::ZERO;
            for &gv in &dy[(b * co + o) * t..(b * co + o + 1) * t] {
                sum += gv;
            }
            *dbo += sum;
        }
    });
    let per_o = STEM_CHANNELS * k;
    dw.par_chunks_mut(LANES * per_o).enumerate().for_each(|(blk, dwb)| {
        let (o0, n) = (blk * LANES, dwb.len() / per_o);
        // dwt (16, K, LANES), starting from the current dW (accumulation).
        let mut dwt = vec![T::ZERO; per_o * LANES];
        for j in 0..n {
            for i in 0..per_o {
                dwt[i * LANES + j] = dwb[j * per_o + i];
            }
        }
        let mut g = vec![T::ZERO; t * LANES];
        {
            for b in 0..s.b {
                let toks = &tokens[b * t..(b + 1) * t];
                for j in 0..n {
                    let row = &dy[(b * co + o0 + j) * t..(b * co + o0 + j + 1) * t];
                    for (l, &v) in row.iter().enumerate() {
                        g[l * LANES + j] = v;
                    }
                }
                for (l, gl) in g.chunks_exact(LANES).enumerate() {
                    for kk in 0..k {
                        let Some(p) = (l + kk).checked_sub(pad).filter(|&p| p < t) else { continue };
                        let tok = toks[p] as usize;
                        if tok < STEM_CHANNELS {
                            add_block(&mut dwt[(tok * k + kk) * LANES..], gl);
                        }
                    }
                }
            }
        }
        for j in 0..n {
            for i in 0..per_o {
                dwb[j * per_o + i] = dwt[i * LANES + j];
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

    /// The plain gather and scatter, one output channel at a time: the order of additions the vectorised
    /// kernels must keep (so their f32 results are bit-identical).
    fn plain(s: StemShape, tokens: &[u8], w: &[f32], bias: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (t, k, pad) = (s.t, s.k, s.pad());
        let mut y = vec![0.0f32; s.out_len()];
        let mut dw = vec![0.5f32; s.weight_len()];
        for b in 0..s.b {
            for o in 0..s.c_out {
                let row = &mut y[(b * s.c_out + o) * t..(b * s.c_out + o + 1) * t];
                row.fill(bias[o]);
                for kk in 0..k {
                    for l in 0..t {
                        let Some(p) = (l + kk).checked_sub(pad).filter(|&p| p < t) else { continue };
                        let tok = tokens[b * t + p] as usize;
                        if tok < STEM_CHANNELS {
                            row[l] += w[(o * STEM_CHANNELS + tok) * k + kk];
                            dw[(o * STEM_CHANNELS + tok) * k + kk] += dy[(b * s.c_out + o) * t + l];
                        }
                    }
                }
            }
        }
        (y, dw)
    }

    #[test]
    fn vectorised_kernels_give_the_plain_bits() {
        let mut rng = Rng::new(9);
        for c_out in [1, 8, 11, 20] {
            let s = StemShape { b: 3, t: 37, c_out, k: 15 };
            let tokens = random_tokens(&mut rng, s.tokens_len());
            let w: Vec<f32> = rand_vec(&mut rng, s.weight_len(), 1.0).iter().map(|&v| v as f32).collect();
            let bias: Vec<f32> = rand_vec(&mut rng, c_out, 1.0).iter().map(|&v| v as f32).collect();
            let dy: Vec<f32> = rand_vec(&mut rng, s.out_len(), 1.0).iter().map(|&v| v as f32).collect();
            let (want_y, want_dw) = plain(s, &tokens, &w, &bias, &dy);
            let mut y = vec![0.0f32; s.out_len()];
            stem_fwd(s, &tokens, &w, &bias, &mut y);
            let (mut dw, mut db) = (vec![0.5f32; s.weight_len()], vec![0.0f32; c_out]);
            stem_bwd(s, &tokens, &dy, &mut dw, &mut db);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want_y), "forward, c_out {c_out}");
            assert_eq!(bits(&dw), bits(&want_dw), "dW, c_out {c_out}");
        }
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
