//! PWM scan scores: the motif columns of the `chr20` preset's tile factors, where no motif is planted and the
//! biology is whatever the real sequence holds.
//!
//! Per tile and motif, the factor is the site strength of the best match, on either strand, among the sites that
//! lie wholly in the contig and whose integer centre (start + len / 2, as for planted instances) lies in the tile's
//! factor window (the tile +-64 bp):
//! ```text
//! rel = (score - min_score) / (max_score - min_score)          score: log-odds in nats, background BACKGROUND
//! B   = SCALE * max(0, rel - REL_FLOOR) / (1 - REL_FLOOR)      0 for weak matches, SCALE for the consensus
//! ```
//! Key decisions: the background is the chromosome's base composition (GC ~0.42), not GC-corrected per window,
//! so GC-rich motifs score higher in GC-rich DNA, as a genome-wide scan does (that is the realistic confound). The
//! bulk path takes block maxima over 64-bp blocks of centres (a window is 4 blocks, so every site is scored
//! once); the direct path (variants) scores one window; both use `site`, so they agree bit for bit.

use super::factors::{window, Layout, SeqView, TILE};
use crate::data::motifs::Motif;
use rayon::prelude::*;
use std::ops::Range;

/// A, C, G, T frequencies of GRCh37 chr20 outside N (GC 0.44), rounded.
pub const BACKGROUND: [f64; 4] = [0.28, 0.22, 0.22, 0.28];
/// Relative scores at or below this give 0.
pub const REL_FLOOR: f32 = 0.85;
/// Site strength of a consensus match (comparable to 1-2 planted counts of the other presets).
pub const SCALE: f32 = 2.0;
const BLOCK: u64 = 64;

fn code(b: u8) -> usize {
    match b {
        b'A' => 0,
        b'C' => 1,
        b'G' => 2,
        b'T' => 3,
        _ => 4,
    }
}

pub struct Scanner {
    /// Per motif (len * 4) log-odds, + strand and reverse complement.
    fwd: Vec<Vec<f32>>,
    rev: Vec<Vec<f32>>,
    /// Per motif (min, max) achievable score.
    range: Vec<(f32, f32)>,
}

/// The best site of one motif in one window: start, strand and score (nats).
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub start: u64,
    pub minus: bool,
    pub score: f32,
}

impl Scanner {
    pub fn new(motifs: &[Motif]) -> Self {
        let mut fwd = Vec::new();
        let mut rev = Vec::new();
        let mut range = Vec::new();
        for m in motifs {
            let lo = m.log_odds(BACKGROUND);
            let l = lo.len();
            let mut f = vec![0f32; l * 4];
            let mut r = vec![0f32; l * 4];
            for (j, col) in lo.iter().enumerate() {
                for b in 0..4 {
                    f[j * 4 + b] = col[b] as f32;
                    // Reverse complement: position l-1-j, base 3-b.
                    r[(l - 1 - j) * 4 + (3 - b)] = col[b] as f32;
                }
            }
            let min: f32 = lo.iter().map(|c| c.iter().cloned().fold(f64::INFINITY, f64::min) as f32).sum();
            let max: f32 = lo.iter().map(|c| c.iter().cloned().fold(f64::NEG_INFINITY, f64::max) as f32).sum();
            fwd.push(f);
            rev.push(r);
            range.push((min, max));
        }
        Scanner { fwd, rev, range }
    }

    pub fn n_motifs(&self) -> usize {
        self.fwd.len()
    }

    pub fn len(&self, m: usize) -> u64 {
        (self.fwd[m].len() / 4) as u64
    }

    /// Best-strand score of the site of motif `m` starting at contig position `x` (None: off the view, off the
    /// contig, or not all ACGT).
    fn site(&self, m: usize, view: SeqView, x: u64, contig_len: u64) -> Option<(f32, bool)> {
        let l = self.len(m);
        if x < view.lo || x + l > view.lo + view.seq.len() as u64 || x + l > contig_len {
            return None;
        }
        let s = &view.seq[(x - view.lo) as usize..(x - view.lo + l) as usize];
        let (f, r) = (&self.fwd[m], &self.rev[m]);
        let (mut a, mut b) = (0f32, 0f32);
        for (j, &base) in s.iter().enumerate() {
            let c = code(base);
            if c == 4 {
                return None;
            }
            a += f[j * 4 + c];
            b += r[j * 4 + c];
        }
        Some(if b > a { (b, true) } else { (a, false) })
    }

    /// Log-odds of `base` (ASCII) at site-oriented column `j` of motif `m` (the + strand PWM).
    pub fn column_score(&self, m: usize, j: u64, base: u8) -> f32 {
        match code(base) {
            4 => f32::NEG_INFINITY,
            c => self.fwd[m][j as usize * 4 + c],
        }
    }

    /// Site strength B of a score.
    pub fn strength(&self, m: usize, score: f32) -> f32 {
        let (lo, hi) = self.range[m];
        let rel = (score - lo) / (hi - lo).max(1e-6);
        SCALE * ((rel - REL_FLOOR).max(0.0) / (1.0 - REL_FLOOR))
    }

    /// The best site of motif `m` with centre in [a, b).
    pub fn best_site(&self, m: usize, view: SeqView, a: u64, b: u64, contig_len: u64) -> Option<Site> {
        let half = self.len(m) / 2;
        let mut best: Option<Site> = None;
        for c in a..b {
            let Some(x) = c.checked_sub(half) else { continue };
            if let Some((score, minus)) = self.site(m, view, x, contig_len) {
                if best.is_none_or(|s| score > s.score) {
                    best = Some(Site { start: x, minus, score });
                }
            }
        }
        best
    }

    /// Motif columns of one tile's row by direct scanning of its window (variants).
    pub fn tile_row(&self, lay: Layout, view: SeqView, k: u64, contig_len: u64, row: &mut [f32]) {
        let (ws, we) = window(k, contig_len);
        for (m, v) in row[..self.n_motifs()].iter_mut().enumerate() {
            *v = self.best_site(m, view, ws, we, contig_len).map_or(0.0, |s| self.strength(m, s.score));
        }
        debug_assert_eq!(lay.n_motifs, self.n_motifs());
    }

    /// Fill the motif columns of `rows` (tiles.len(), F) for `tiles`; `view` covers every tile's window +-64 bp
    /// (or reaches the contig ends).
    pub fn fill(&self, lay: Layout, view: SeqView, tiles: Range<u64>, contig_len: u64, rows: &mut [f32]) {
        if tiles.is_empty() {
            return;
        }
        let f = lay.width();
        let c_lo = (tiles.start * TILE).saturating_sub(BLOCK);
        let c_hi = (tiles.end * TILE + BLOCK).min(contig_len);
        let b0 = c_lo / BLOCK;
        let n_blocks = c_hi.div_ceil(BLOCK) - b0;
        // Per motif: best score per 64-bp block of centres, then per tile the max over its (up to) 4 blocks.
        let cols: Vec<Vec<f32>> = (0..self.n_motifs())
            .into_par_iter()
            .map(|m| {
                let blocks: Vec<f32> = (0..n_blocks)
                    .map(|i| {
                        let a = (b0 + i) * BLOCK;
                        let b = (a + BLOCK).min(c_hi);
                        self.best_site(m, view, a.max(c_lo), b, contig_len).map_or(f32::NEG_INFINITY, |s| s.score)
                    })
                    .collect();
                tiles
                    .clone()
                    .map(|k| {
                        let (ws, we) = window(k, contig_len);
                        let (bs, be) = (ws / BLOCK - b0, we.div_ceil(BLOCK) - b0);
                        let best = blocks[bs as usize..be as usize].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        if best.is_finite() {
                            self.strength(m, best)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        for (m, col) in cols.iter().enumerate() {
            for (r, v) in col.iter().enumerate() {
                rows[r * f + m] = *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::motifs::builtin;
    use crate::rng::Rng;

    #[test]
    fn bulk_and_direct_agree_and_consensus_scores_full() {
        let motifs = builtin();
        let sc = Scanner::new(&motifs);
        let lay = Layout { n_motifs: motifs.len() };
        let mut rng = Rng::new(5);
        let len = 128 * 20 + 37;
        let mut seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.below(4) as usize]).collect();
        seq[300] = b'N';
        // Plant the consensus of motif 3 on the minus strand at 1000.
        let cons: Vec<u8> =
            motifs[3].counts.iter().map(|c| b"ACGT"[(0..4).max_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap()]).collect();
        let rc: Vec<u8> = cons.iter().rev().map(|&b| crate::data::synth::elements::complement(b)).collect();
        seq[1000..1000 + rc.len()].copy_from_slice(&rc);
        let view = SeqView { seq: &seq, lo: 0 };
        let n_tiles = len as u64 / TILE;
        let mut rows = vec![0f32; n_tiles as usize * lay.width()];
        sc.fill(lay, view, 0..n_tiles, len as u64, &mut rows);
        for k in 0..n_tiles {
            let mut direct = vec![0f32; lay.width()];
            sc.tile_row(lay, view, k, len as u64, &mut direct);
            let r = &rows[k as usize * lay.width()..][..lay.n_motifs];
            assert_eq!(&direct[..lay.n_motifs], r, "tile {k}");
        }
        let k = (1000 + cons.len() as u64 / 2) / TILE;
        assert!((rows[k as usize * lay.width() + 3] - SCALE).abs() < 1e-4);
        let s = sc.best_site(3, view, 900, 1100, len as u64).unwrap();
        assert!(s.minus && s.start == 1000);
    }
}
