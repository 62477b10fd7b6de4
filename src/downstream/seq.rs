//! Sequence windows -> the token passes the downstream tools average over (mfd-spec.md 8.2, 8.5, 8.6): a window of
//! T + S bases (S shifts) has T + S - 1 dinucleotide tokens; shift i feeds tokens [i, i + T). With both strands
//! the reverse complement of the whole window is cut the same way, giving 2S passes per window.
//!
//! Key decision: exactly T tokens per pass (the reference feeds T + 1, harmless only because the extra token lies
//! outside the receptive field); and the same centring everywhere: the window starts `(T + S) / 2` bases before the
//! centre base, so S = 1 around a 128-bp tile reproduces the training window exactly.

use crate::data::window::{complement, encode_window_at, N_CODE};

/// How many shifted crops and which strands to average over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passes {
    /// Shifts S >= 1 (the window has T + S bases).
    pub shifts: usize,
    /// Also the reverse-complement strand.
    pub both_strands: bool,
}

impl Passes {
    pub fn count(&self) -> usize {
        self.shifts.max(1) * if self.both_strands { 2 } else { 1 }
    }
    /// Bases in the window for input length `t`.
    pub fn window_len(&self, t: usize) -> usize {
        t + self.shifts.max(1)
    }
    /// Offset of the centre base inside the window.
    pub fn centre_offset(&self, t: usize) -> usize {
        self.window_len(t) / 2
    }
}

/// Base code of an ASCII letter: A, C, G, T (any case) -> 0..3, anything else -> N.
pub fn code(b: u8) -> u8 {
    match b {
        b'A' | b'a' => 0,
        b'C' | b'c' => 1,
        b'G' | b'g' => 2,
        b'T' | b't' => 3,
        _ => N_CODE,
    }
}

/// Reverse complement of base codes.
pub fn revcomp(codes: &[u8]) -> Vec<u8> {
    codes.iter().rev().map(|&c| complement(c)).collect()
}

/// Append the tokens of every pass of `window` (T + S bases) to `out`: (P, T), forward shifts first, then the
/// reverse-complement shifts.
pub fn push_passes(window: &[u8], t: usize, p: Passes, out: &mut Vec<u8>) {
    let s = p.shifts.max(1);
    assert_eq!(window.len(), t + s, "push_passes: window of {} bases for T + S = {}", window.len(), t + s);
    let mut strands = vec![window.to_vec()];
    if p.both_strands {
        strands.push(revcomp(window));
    }
    for w in &strands {
        for i in 0..s {
            let start = out.len();
            out.resize(start + t, 0);
            encode_window_at(w, i as i64, false, &mut out[start..]);
        }
    }
}

/// Mean over consecutive groups of `passes` rows: rows (N * P, D) -> (N, D), accumulated in f64.
pub fn mean_groups(rows: &[f32], d: usize, passes: usize) -> Vec<f32> {
    let n = rows.len() / (d * passes).max(1);
    let mut out = vec![0f32; n * d];
    for (i, o) in out.chunks_mut(d).enumerate() {
        let mut acc = vec![0f64; d];
        for r in rows[i * passes * d..(i + 1) * passes * d].chunks(d) {
            for (a, &v) in acc.iter_mut().zip(r) {
                *a += v as f64;
            }
        }
        for (x, a) in o.iter_mut().zip(acc) {
            *x = (a / passes as f64) as f32;
        }
    }
    out
}

/// GC fraction of the A/C/G/T bases of `codes` (N excluded); NaN when there is none.
pub fn gc_fraction(codes: &[u8]) -> f64 {
    let (mut gc, mut acgt) = (0usize, 0usize);
    for &c in codes {
        if c < 4 {
            acgt += 1;
            gc += (c == 1 || c == 2) as usize;
        }
    }
    if acgt == 0 {
        f64::NAN
    } else {
        gc as f64 / acgt as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(s: &str) -> Vec<u8> {
        s.bytes().map(code).collect()
    }

    #[test]
    fn passes_cut_the_window_and_its_reverse_complement() {
        // T = 3, S = 2: window of 5 bases, 4 tokens; shifts take tokens [0,3) and [1,4).
        let w = codes("ACGTA");
        let mut out = Vec::new();
        push_passes(&w, 3, Passes { shifts: 2, both_strands: true }, &mut out);
        // fwd tokens: AC CG GT TA = 1 6 11 12; rc(ACGTA) = TACGT: TA AC CG GT = 12 1 6 11
        assert_eq!(out, vec![1, 6, 11, 6, 11, 12, 12, 1, 6, 1, 6, 11]);
        let p = Passes { shifts: 7, both_strands: true };
        assert_eq!((p.count(), p.window_len(2176), p.centre_offset(2176)), (14, 2183, 1091));
        // S = 1 around a 128-bp tile at s: centre s + 64, window start s + 64 - (T + 1) / 2 = the training window.
        let p1 = Passes { shifts: 1, both_strands: false };
        assert_eq!(p1.centre_offset(2176), 1088);
        assert_eq!(crate::data::window::window_start(5000, 128, 0, 2176), 5000 + 64 - 1088);
    }

    #[test]
    fn group_means_and_gc() {
        let rows = [1.0f32, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(mean_groups(&rows, 2, 2), vec![2.0, 3.0, 20.0, 30.0]);
        assert_eq!(gc_fraction(&codes("GGCANNAT")), 0.5);
        assert!(gc_fraction(&codes("NN")).is_nan());
        assert_eq!(revcomp(&codes("AACGN")), codes("NCGTT"));
    }
}
