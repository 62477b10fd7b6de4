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

/// Taps accumulated at once in the backward: TAPS accumulators of one block each stay in registers.
const TAPS: usize = 8;

/// -0.0, the exact identity of IEEE addition (x + -0.0 = x for every x, -0.0 included; +0.0 would turn a -0.0 sum
/// into +0.0). Padding with it lets the loops add a "nothing" without a branch and keep the plain gather's bits.
fn neg_zero<T: Real>() -> T {
    T::from_f64(-0.0)
}

/// Tokens of one sample with `pad` N's (16) on both sides: `tp[l + kk]` is the token tap kk of output l reads
/// (position l + kk - pad), N outside [0, T); values above 16 count as N, as everywhere.
fn padded_tokens(toks: &[u8], pad: usize, k: usize) -> Vec<usize> {
    let mut tp = vec![STEM_CHANNELS; toks.len() + k - 1];
    for (d, &v) in tp[pad..].iter_mut().zip(toks) {
        *d = (v as usize).min(STEM_CHANNELS);
    }
    tp
}

/// y (B, C_out, T) from tokens (B, T), w (C_out, 16, K), bias (C_out); one sample b per task.
///
/// Vectorised over output channels: a transposed weight copy holds the column W[:, tok, kk] contiguous over output
/// channels, with a 17th token (N) of -0.0 columns; for each block of 8 channels (its columns stay in L1) and each
/// position l, the K columns are summed in registers onto the bias, taps ascending as in the plain gather (N adds
/// -0.0), so the bits are the plain gather's.
pub fn stem_fwd<T: Real>(s: StemShape, tokens: &[u8], w: &[T], bias: &[T], y: &mut [T]) {
    let (t, k, pad, co) = (s.t, s.k, s.pad(), s.c_out);
    if t == 0 || co == 0 {
        return;
    }
    let cp = co.div_ceil(LANES) * LANES;
    // wt (17, K, C_pad).
    let mut wt = vec![neg_zero::<T>(); (STEM_CHANNELS + 1) * k * cp];
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
        let tp = padded_tokens(&tokens[b * t..(b + 1) * t], pad, k);
        for j0 in (0..cp).step_by(LANES) {
            let nj = LANES.min(co - j0);
            for l in 0..t {
                let mut acc = [T::ZERO; LANES];
                acc.copy_from_slice(&bias_p[j0..j0 + LANES]);
                for (kk, &tok) in tp[l..l + k].iter().enumerate() {
                    let col = &wt[(tok * k + kk) * cp + j0..][..LANES];
                    for i in 0..LANES {
                        acc[i] += col[i];
                    }
                }
                for (i, &a) in acc.iter().enumerate().take(nj) {
                    yb[(j0 + i) * t + l] = a;
                }
            }
        }
    });
}

/// Positions of one sample grouped by token, ascending within each token: `order[start[tok]..start[tok + 1]]`
/// (N positions left out).
struct ByToken {
    start: [usize; STEM_CHANNELS + 1],
    order: Vec<u32>,
}

fn by_token(toks: &[u8]) -> ByToken {
    let mut start = [0usize; STEM_CHANNELS + 1];
    for &v in toks.iter().filter(|&&v| (v as usize) < STEM_CHANNELS) {
        start[v as usize + 1] += 1;
    }
    for i in 0..STEM_CHANNELS {
        start[i + 1] += start[i];
    }
    let mut next = start;
    let mut order = vec![0u32; start[STEM_CHANNELS]];
    for (p, &v) in toks.iter().enumerate().filter(|&(_, &v)| (v as usize) < STEM_CHANNELS) {
        order[next[v as usize]] = p as u32;
        next[v as usize] += 1;
    }
    ByToken { start, order }
}

/// dw (C_out, 16, K) += scatter of dy; dbias (C_out) += sum of dy.
///
/// dW is vectorised over blocks of `LANES` output channels (one block per task): dy of the block is transposed to
/// rows of LANES per position (with `2 pad` rows of -0.0 around). dW[o, tok, kk] sums dy[o, l] over the positions
/// p = l + kk - pad that hold tok, so for each token the positions holding it (ascending) are walked once per group
/// of TAPS taps, the TAPS sums in registers. For a fixed weight the terms arrive in the plain scatter's order
/// (samples in order, positions ascending), so the bits are the same.
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
    let groups: Vec<ByToken> = (0..s.b).map(|b| by_token(&tokens[b * t..(b + 1) * t])).collect();
    dw.par_chunks_mut(LANES * per_o).enumerate().for_each(|(blk, dwb)| {
        let (o0, n) = (blk * LANES, dwb.len() / per_o);
        // dwt (16, K, LANES), starting from the current dW (accumulation).
        let mut dwt = vec![T::ZERO; per_o * LANES];
        for j in 0..n {
            for i in 0..per_o {
                dwt[i * LANES + j] = dwb[j * per_o + i];
            }
        }
        // g (T + 2 pad, LANES): row i holds dy at l = i - pad, -0.0 outside [0, T).
        let mut g = vec![neg_zero::<T>(); (t + 2 * pad) * LANES];
        for (b, grp) in groups.iter().enumerate() {
            for j in 0..n {
                let row = &dy[(b * co + o0 + j) * t..(b * co + o0 + j + 1) * t];
                for (l, &v) in row.iter().enumerate() {
                    g[(l + pad) * LANES + j] = v;
                }
            }
            for tok in 0..STEM_CHANNELS {
                let ps = &grp.order[grp.start[tok]..grp.start[tok + 1]];
                for k0 in (0..k).step_by(TAPS) {
                    let nt = TAPS.min(k - k0);
                    let mut acc = [[T::ZERO; LANES]; TAPS];
                    for (q, a) in acc.iter_mut().enumerate().take(nt) {
                        a.copy_from_slice(&dwt[(tok * k + k0 + q) * LANES..][..LANES]);
                    }
                    for &p in ps {
                        // Tap kk of position p feeds output l = p + pad - kk: g row p + 2 pad - kk (>= p, as K = 2 pad + 1).
                        let top = p as usize + 2 * pad - k0;
                        for (q, a) in acc.iter_mut().enumerate().take(nt) {
                            let gr = &g[(top - q) * LANES..][..LANES];
                            for i in 0..LANES {
                                a[i] += gr[i];
                            }
                        }
                    }
                    for (q, a) in acc.iter().enumerate().take(nt) {
                        dwt[(tok * k + k0 + q) * LANES..][..LANES].copy_from_slice(a);
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
