//! Per-tile truth factors on the 128-bp grid: planted motif counts, GC fraction, technical k-mer counts and the
//! non-ACGT fraction. Tile k of a contig is [128k, 128k+128); its factor window is the tile +-64 bp
//! ([128k-64, 128k+192), clipped to the contig), so every base lies in exactly two windows.
//!
//! Row layout (F = M + 7 columns, M = 36 motifs): `[count(motif 0..M) | gc | kmer TTAA, ACGT, GATC, CATG, CTAG |
//! n_frac]`. A motif instance is counted in a tile when its integer centre lies in the window. GC is over the
//! ACGT bases of the window; k-mers are counted at every start whose 4 bases lie in the window (all five are
//! palindromes, so one strand suffices); n_frac is the non-ACGT fraction of the tile itself (not the window).
//! Key decision: the k-mers are GC-balanced or AT-rich so they are not confounded with GC; CTAG is the Tn5-like
//! insertion k-mer that acts on ATAC experiments only.

use super::elements::ContigPlan;
use super::programs::Biology;
use std::ops::Range;

pub const TILE: u64 = 128;
pub const FLANK: u64 = 64;
pub const KMERS: [&[u8; 4]; 5] = [b"TTAA", b"ACGT", b"GATC", b"CATG", b"CTAG"];
/// Index (in KMERS) of the Tn5-like k-mer.
pub const TN5: usize = 4;
pub const N_KMERS: usize = KMERS.len();

/// Column indices for `n_motifs` motifs.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub n_motifs: usize,
}

impl Layout {
    pub fn gc(&self) -> usize {
        self.n_motifs
    }
    pub fn kmer(&self, q: usize) -> usize {
        self.n_motifs + 1 + q
    }
    pub fn n_frac(&self) -> usize {
        self.n_motifs + 1 + N_KMERS
    }
    pub fn width(&self) -> usize {
        self.n_motifs + 2 + N_KMERS
    }
    pub fn names(&self, bio: &Biology) -> Vec<String> {
        let mut v: Vec<String> = bio.motifs.iter().map(|m| format!("motif:{}:{}", m.id, m.name)).collect();
        v.push("gc".into());
        v.extend(KMERS.iter().map(|k| format!("kmer:{}", String::from_utf8_lossy(&k[..]))));
        v.push("n_frac".into());
        v
    }
}

/// Bases [lo, lo + seq.len()) of a contig.
#[derive(Debug, Clone, Copy)]
pub struct SeqView<'a> {
    pub seq: &'a [u8],
    pub lo: u64,
}

/// Factor window of tile k, clipped to the contig.
pub fn window(k: u64, contig_len: u64) -> (u64, u64) {
    ((k * TILE).saturating_sub(FLANK), (k * TILE + TILE + FLANK).min(contig_len))
}

fn is_gc(b: u8) -> bool {
    b == b'G' || b == b'C'
}
fn is_acgt(b: u8) -> bool {
    matches!(b, b'A' | b'C' | b'G' | b'T')
}

/// Rows (tiles.len(), F) for `tiles`; `view` must cover every tile's window.
pub fn tile_factors(lay: Layout, plan: &ContigPlan, view: SeqView, tiles: Range<u64>) -> Vec<f32> {
    let f = lay.width();
    let n = view.seq.len();
    // Prefix sums over the view: gc, acgt, and k-mer starts.
    let mut gc_ps = vec![0u32; n + 1];
    let mut acgt_ps = vec![0u32; n + 1];
    let mut k_ps = vec![[0u32; N_KMERS]; n + 1];
    for i in 0..n {
        let b = view.seq[i];
        gc_ps[i + 1] = gc_ps[i] + is_gc(b) as u32;
        acgt_ps[i + 1] = acgt_ps[i] + is_acgt(b) as u32;
        let mut row = k_ps[i];
        if i + 4 <= n {
            for (q, km) in KMERS.iter().enumerate() {
                row[q] += (view.seq[i..i + 4] == km[..]) as u32;
            }
        }
        k_ps[i + 1] = row;
    }
    let mut out = vec![0f32; tiles.clone().count() * f];
    for (r, k) in tiles.clone().enumerate() {
        let (ws, we) = window(k, plan.len);
        let (a, b) = ((ws - view.lo) as usize, (we - view.lo) as usize);
        let row = &mut out[r * f..(r + 1) * f];
        let acgt = acgt_ps[b] - acgt_ps[a];
        row[lay.gc()] = if acgt > 0 { (gc_ps[b] - gc_ps[a]) as f32 / acgt as f32 } else { 0.0 };
        if b >= a + 4 {
            for q in 0..N_KMERS {
                row[lay.kmer(q)] = (k_ps[b - 3][q] - k_ps[a][q]) as f32;
            }
        }
        let (ts, te) = ((k * TILE - view.lo) as usize, (k * TILE + TILE - view.lo) as usize);
        row[lay.n_frac()] = 1.0 - (acgt_ps[te] - acgt_ps[ts]) as f32 / TILE as f32;
    }
    add_motif_counts(lay, plan, tiles, &mut out);
    out
}

/// Add planted instance counts to rows of `tiles`.
fn add_motif_counts(lay: Layout, plan: &ContigPlan, tiles: Range<u64>, out: &mut [f32]) {
    let f = lay.width();
    let lo_c = (tiles.start * TILE).saturating_sub(TILE + FLANK);
    let first = plan.instances.partition_point(|s| s.center() < lo_c);
    for s in plan.instances[first..].iter().take_while(|s| s.center() < tiles.end * TILE + FLANK) {
        let k1 = (s.center() + FLANK) / TILE;
        for k in [k1.wrapping_sub(1), k1] {
            if tiles.contains(&k) {
                out[(k - tiles.start) as usize * f + s.motif] += 1.0;
            }
        }
    }
}

/// Sequence columns (gc, k-mers, n_frac) of one tile by direct counting; used for variant deltas.
pub fn sequence_columns(lay: Layout, view: SeqView, k: u64, contig_len: u64, row: &mut [f32]) {
    let (ws, we) = window(k, contig_len);
    let w = &view.seq[(ws - view.lo) as usize..(we - view.lo) as usize];
    let acgt = w.iter().filter(|&&b| is_acgt(b)).count();
    let gc = w.iter().filter(|&&b| is_gc(b)).count();
    row[lay.gc()] = if acgt > 0 { gc as f32 / acgt as f32 } else { 0.0 };
    for (q, km) in KMERS.iter().enumerate() {
        row[lay.kmer(q)] = w.windows(4).filter(|x| *x == &km[..]).count() as f32;
    }
    let t = &view.seq[(k * TILE - view.lo) as usize..(k * TILE + TILE - view.lo) as usize];
    row[lay.n_frac()] = 1.0 - t.iter().filter(|&&b| is_acgt(b)).count() as f32 / TILE as f32;
}

/// Mean and sd of the technical factors (gc, k-mers) over unmasked calibration tiles: the z-score constants.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FactorNorm {
    pub gc_mean: f32,
    pub gc_sd: f32,
    pub kmer_mean: [f32; N_KMERS],
    pub kmer_sd: [f32; N_KMERS],
}

/// A tile is masked (never positive) when more than half of it is not ACGT.
pub fn masked(lay: Layout, row: &[f32]) -> bool {
    row[lay.n_frac()] > 0.5
}

impl FactorNorm {
    pub fn fit(lay: Layout, rows: &[f32]) -> Self {
        let f = lay.width();
        let live: Vec<&[f32]> = rows.chunks(f).filter(|r| !masked(lay, r)).collect();
        let stat = |c: usize| {
            let n = live.len().max(1) as f64;
            let m = live.iter().map(|r| r[c] as f64).sum::<f64>() / n;
            let v = live.iter().map(|r| (r[c] as f64 - m).powi(2)).sum::<f64>() / n;
            (m as f32, (v.sqrt() as f32).max(1e-3))
        };
        let (gc_mean, gc_sd) = stat(lay.gc());
        let mut kmer_mean = [0.0; N_KMERS];
        let mut kmer_sd = [0.0; N_KMERS];
        for q in 0..N_KMERS {
            (kmer_mean[q], kmer_sd[q]) = stat(lay.kmer(q));
        }
        FactorNorm { gc_mean, gc_sd, kmer_mean, kmer_sd }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::elements::plan_contig;
    use crate::data::synth::genome::chunk_sequence;
    use crate::data::synth::presets::preset;

    #[test]
    fn prefix_and_direct_counts_agree() {
        let bio = Biology::new().unwrap();
        let p = preset("tiny").unwrap();
        let plan = plan_contig(&bio, &p, 3, 2, "chr9", 650_101);
        let seq = chunk_sequence(&plan, 3, 0, plan.len); // whole contig as one chunk
        let lay = Layout { n_motifs: bio.n_motifs() };
        let view = SeqView { seq: &seq, lo: 0 };
        let rows = tile_factors(lay, &plan, view, 0..plan.n_tiles);
        let f = lay.width();
        for k in (0..plan.n_tiles).step_by(97).chain([0, plan.n_tiles - 1]) {
            let mut direct = rows[k as usize * f..(k as usize + 1) * f].to_vec();
            sequence_columns(lay, view, k, plan.len, &mut direct);
            assert_eq!(&direct[..], &rows[k as usize * f..(k as usize + 1) * f], "tile {k}");
        }
        // Every instance is counted exactly twice over the grid (or once at the contig start).
        let total: f32 = rows.chunks(f).map(|r| r[..lay.n_motifs].iter().sum::<f32>()).sum();
        assert_eq!(total as usize, 2 * plan.instances.len());
        let norm = FactorNorm::fit(lay, &rows);
        assert!((0.35..0.47).contains(&norm.gc_mean), "{norm:?}");
        assert!(norm.gc_sd > 0.02);
    }
}
