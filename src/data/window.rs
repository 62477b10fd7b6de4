//! Window encoding: tile -> T+1 bases around it -> T dinucleotide tokens, plus label gathering.
//!
//! Geometry (mfd-spec.md 1.2): the window of a tile [s, s + tile) has T + 1 bases starting at
//! `centre - floor((T + 1) / 2) + shift` with `centre = s + tile / 2`; for T = 2176 and 128-bp tiles that is
//! s - 1024 + shift, and the tile sits at tokens 1024..=1151. Bases outside the contig are N. Reverse
//! complement reverses the bases and complements them (c < 4 -> 3 - c, N stays N), applied after the shift.
//! Token t covers bases (t, t + 1): `4*a + b` when both are ACGT, else `N_TOKEN` (16), which the model reads as
//! an all-zero one-hot column. Key decision: tokens are u8 (B, T), one byte per position, not a (B, 16, T) f32
//! one-hot: 64x less memory traffic, and the stem convolution over one-hot input is a gather of weight columns.

use crate::data::dataset::Dataset;
use crate::data::manifest::label_row_bytes;
use crate::data::sampler::BatchPlan;
use crate::error::{MfdError, Result};
use crate::rng::Rng;
use rayon::prelude::*;
use std::time::Instant;

/// Base code of N (and of anything that is not A, C, G, T).
pub const N_CODE: u8 = 4;
/// Token of a dinucleotide containing N: an all-zero one-hot column.
pub const N_TOKEN: u8 = 16;
/// One-hot channels (AA..TT).
pub const NUM_CHANNELS: usize = 16;
/// Tile size the 7-argument `encode_window` assumes (the manifest's `tile_size` for prepared data).
pub const TILE_SIZE: u64 = 128;

/// Complement of a base code: A<->T, C<->G, N (or any code >= 4) -> N.
#[inline]
pub fn complement(c: u8) -> u8 {
    if c < 4 {
        3 - c
    } else {
        N_CODE
    }
}

/// Token of the dinucleotide (a, b): 4*a + b for ACGT, else `N_TOKEN`.
#[inline]
pub fn token(a: u8, b: u8) -> u8 {
    if a < 4 && b < 4 {
        4 * a + b
    } else {
        N_TOKEN
    }
}

/// First base (contig coordinate, may be negative) of the T + 1 base window of the tile starting at `tile_start`.
pub fn window_start(tile_start: u64, tile_size: u64, shift: i32, t: usize) -> i64 {
    let centre = tile_start as i64 + (tile_size / 2) as i64;
    centre - (t as i64 + 1) / 2 + shift as i64
}

/// Tokens of the window of the 128-bp tile at `tile_start` on a contig whose codes are `codes[..contig_len]`,
/// shifted by `shift` bp and optionally reverse-complemented, written to `out` (T,).
pub fn encode_window(
    codes: &[u8],
    contig_len: usize,
    tile_start: u64,
    shift: i32,
    rc: bool,
    t: usize,
    out: &mut [u8],
) -> Result<()> {
    if out.len() != t || t == 0 || contig_len > codes.len() {
        return Err(MfdError::Shape {
            op: "encode_window",
            msg: format!("out {} for T = {t} (> 0); contig_len {contig_len} of {} codes", out.len(), codes.len()),
        });
    }
    encode_window_at(&codes[..contig_len], window_start(tile_start, TILE_SIZE, shift, t), rc, out);
    Ok(())
}

/// Tokens of the window of `out.len() + 1` bases starting at contig coordinate `start` of `contig`. (T,)
pub fn encode_window_at(contig: &[u8], start: i64, rc: bool, out: &mut [u8]) {
    let bases = out.len() + 1;
    let end = start + bases as i64;
    if start >= 0 && end <= contig.len() as i64 {
        tokenise(&contig[start as usize..end as usize], rc, out);
    } else {
        // At a contig edge: copy the overlap into an all-N window (rare, so the allocation does not matter).
        let mut w = vec![N_CODE; bases];
        let lo = start.clamp(0, contig.len() as i64);
        let hi = end.clamp(0, contig.len() as i64);
        if lo < hi {
            let off = (lo - start) as usize;
            w[off..off + (hi - lo) as usize].copy_from_slice(&contig[lo as usize..hi as usize]);
        }
        tokenise(&w, rc, out);
    }
}

/// Tokens of a window `w` of T + 1 bases (out: (T,)). The RC token i is the pair (comp w[T-i], comp w[T-i-1]),
/// i.e. the tokenisation of the reverse-complement string.
fn tokenise(w: &[u8], rc: bool, out: &mut [u8]) {
    debug_assert_eq!(w.len(), out.len() + 1);
    if rc {
        let t = out.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = token(complement(w[t - i]), complement(w[t - i - 1]));
        }
    } else {
        for (o, p) in out.iter_mut().zip(w.windows(2)) {
            *o = token(p[0], p[1]);
        }
    }
}

fn check_indices(ds: &Dataset, indices: &[u64], op: &'static str) -> Result<()> {
    if let Some(&g) = indices.iter().find(|&&g| g >= ds.num_tiles()) {
        return Err(MfdError::Shape { op, msg: format!("tile index {g} out of range ({} tiles)", ds.num_tiles()) });
    }
    Ok(())
}

/// Tokens of every window of `plan` (its shift and RC applied to all), parallel over sequences. (B, T)
pub fn encode_batch(ds: &Dataset, plan: &BatchPlan, t: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; plan.indices.len() * t];
    encode_batch_into(ds, plan, t, &mut out)?;
    Ok(out)
}

/// `encode_batch` into a caller-owned buffer (e.g. a reused or pinned one). out: (B, T)
pub fn encode_batch_into(ds: &Dataset, plan: &BatchPlan, t: usize, out: &mut [u8]) -> Result<()> {
    check_indices(ds, &plan.indices, "encode_batch")?;
    if t == 0 || out.len() != plan.indices.len() * t {
        return Err(MfdError::Shape {
            op: "encode_batch",
            msg: format!("out has {} bytes for B = {} x T = {t} (T > 0)", out.len(), plan.indices.len()),
        });
    }
    let tile_size = ds.tile_size();
    out.par_chunks_mut(t).zip(plan.indices.par_iter()).for_each(|(row, &g)| {
        let rec = ds.tile(g);
        let start = window_start(rec.start as u64, tile_size, plan.shift, t);
        encode_window_at(ds.contig_codes(rec.contig as usize), start, plan.rc, row);
    });
    Ok(())
}

/// The label bitsets of `indices`, concatenated. (B, label_row_bytes)
pub fn gather_labels(ds: &Dataset, indices: &[u64]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; indices.len() * ds.label_row_bytes()];
    gather_labels_into(ds, indices, &mut out)?;
    Ok(out)
}

/// `gather_labels` into a caller-owned buffer. out: (B, row_bytes)
pub fn gather_labels_into(ds: &Dataset, indices: &[u64], out: &mut [u8]) -> Result<()> {
    check_indices(ds, indices, "gather_labels")?;
    let row = ds.label_row_bytes();
    if out.len() != indices.len() * row {
        return Err(MfdError::Shape {
            op: "gather_labels",
            msg: format!("out has {} bytes for B = {} x {row} bytes per label row", out.len(), indices.len()),
        });
    }
    if row > 0 {
        for (dst, &g) in out.chunks_exact_mut(row).zip(indices) {
            dst.copy_from_slice(ds.label_row(g));
        }
    }
    Ok(())
}

/// Bitset rows (B, label_row_bytes(o)) -> dense {0, 1} targets. (B, O)
pub fn unpack_labels(bits: &[u8], o: usize) -> Result<Vec<f32>> {
    let row = label_row_bytes(o);
    if o == 0 || !bits.len().is_multiple_of(row) {
        return Err(MfdError::Shape {
            op: "unpack_labels",
            msg: format!("{} bytes is not a whole number of {row}-byte rows for O = {o}", bits.len()),
        });
    }
    let mut out = Vec::with_capacity(bits.len() / row * o);
    for r in bits.chunks_exact(row) {
        out.extend((0..o).map(|c| (r[c / 8] >> (c % 8) & 1) as f32));
    }
    Ok(out)
}

/// Throughput of `encode_batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeBench {
    pub windows: usize,
    pub t: usize,
    /// Threads of the parallel measurement.
    pub threads: usize,
    /// Windows per second on one thread.
    pub single_per_s: f64,
    /// Windows per second on `threads` rayon threads.
    pub parallel_per_s: f64,
}

/// Benchmark helper: encode (`encode_batch_into`) `n` windows of random tiles (half forward, half RC, shift +1) on one thread and on
/// `threads` rayon threads (0 = rayon's default), best of 3 after a warm-up that faults the mapped pages in.
pub fn bench_encode(ds: &Dataset, n: usize, t: usize, threads: usize) -> Result<EncodeBench> {
    if ds.num_tiles() == 0 || n == 0 {
        return Err(MfdError::other("bench_encode needs a dataset with tiles and n > 0"));
    }
    let mut rng = Rng::derive(0, &[0x0042_454E_4348]); // "BENCH"
    let indices: Vec<u64> = (0..n).map(|_| rng.below(ds.num_tiles())).collect();
    let half = n / 2;
    let plans = [
        BatchPlan { indices: indices[..half].to_vec(), shift: 1, rc: false },
        BatchPlan { indices: indices[half..].to_vec(), shift: 1, rc: true },
    ];
    let time = |threads: usize| -> Result<f64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| MfdError::other(format!("bench_encode: thread pool: {e}")))?;
        pool.install(|| {
            // One reused output buffer, so the timing is encoding, not page-faulting fresh allocations.
            let mut out = vec![0u8; (n - half) * t];
            for p in &plans {
                encode_batch_into(ds, p, t, &mut out[..p.indices.len() * t])?;
            }
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t0 = Instant::now();
                for p in &plans {
                    encode_batch_into(ds, p, t, &mut out[..p.indices.len() * t])?;
                    std::hint::black_box(&out);
                }
                best = best.min(t0.elapsed().as_secs_f64());
            }
            Ok(n as f64 / best)
        })
    };
    let single_per_s = time(1)?;
    let parallel_per_s = time(threads)?;
    let threads = if threads == 0 { rayon::current_num_threads() } else { threads };
    Ok(EncodeBench { windows: n, t, threads, single_per_s, parallel_per_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(s: &str) -> Vec<u8> {
        s.bytes()
            .map(|c| match c {
                b'A' => 0,
                b'C' => 1,
                b'G' => 2,
                b'T' => 3,
                _ => 4,
            })
            .collect()
    }

    /// Tokens -> one-hot (16, T), the model's input layout.
    fn onehot(tokens: &[u8]) -> Vec<f32> {
        let t = tokens.len();
        let mut x = vec![0f32; NUM_CHANNELS * t];
        for (i, &k) in tokens.iter().enumerate() {
            if k < N_TOKEN {
                x[k as usize * t + i] = 1.0;
            }
        }
        x
    }

    #[test]
    fn hand_written_tokens() {
        let c = codes("ACGTNAC");
        let mut out = [0u8; 6];
        encode_window_at(&c, 0, false, &mut out);
        assert_eq!(out, [1, 6, 11, 16, 16, 1]); // AC CG GT TN NA AC
        encode_window_at(&c, 0, true, &mut out);
        // revcomp(ACGTNAC) = GTNACGT: GT TN NA AC CG GT
        assert_eq!(out, [11, 16, 16, 1, 6, 11]);
        let mut out = [0u8; 3];
        encode_window_at(&codes("TTGCA"), 1, false, &mut out);
        assert_eq!(out, [14, 9, 4]); // TG GC CA
        encode_window_at(&codes("AAAA"), -2, false, &mut out);
        assert_eq!(out, [16, 16, 0]); // NN NA AA
        encode_window_at(&codes("AAAA"), 2, false, &mut out);
        assert_eq!(out, [0, 16, 16]); // AA AN NN
    }

    #[test]
    fn rc_matches_the_one_hot_closed_form() {
        let mut rng = Rng::new(42);
        for (t, n_rate) in [(2176usize, 0.05), (1152, 0.3), (17, 0.5)] {
            let contig: Vec<u8> =
                (0..3 * t).map(|_| if rng.bernoulli(n_rate) { 4 } else { rng.below(4) as u8 }).collect();
            for _ in 0..5 {
                let start = rng.range_i64(-(t as i64), 2 * t as i64);
                let (mut fwd, mut rev) = (vec![0u8; t], vec![0u8; t]);
                encode_window_at(&contig, start, false, &mut fwd);
                encode_window_at(&contig, start, true, &mut rev);
                let (x, r) = (onehot(&fwd), onehot(&rev));
                for c in 0..NUM_CHANNELS {
                    let src = 15 - 4 * (c % 4) - c / 4;
                    for i in 0..t {
                        assert_eq!(r[c * t + i], x[src * t + (t - 1 - i)], "T {t} start {start} c {c} t {i}");
                    }
                }
                assert!(rev.iter().filter(|&&k| k == N_TOKEN).count() == fwd.iter().filter(|&&k| k == N_TOKEN).count());
            }
        }
    }

    #[test]
    fn geometry_of_the_labelled_tile() {
        assert_eq!(window_start(5000, 128, 0, 2176), 5000 - 1024);
        assert_eq!(window_start(5000, 128, -3, 2176), 5000 - 1027);
        assert_eq!(window_start(5000, 128, 0, 1152), 5000 - 512);
        // A's everywhere, C's on the tile [s, s + 128).
        let s = 3000usize;
        let mut contig = vec![0u8; 6000];
        contig[s..s + 128].fill(1);
        let mut out = vec![0u8; 2176];
        encode_window(&contig, contig.len(), s as u64, 0, false, 2176, &mut out).unwrap();
        assert!(out[..1023].iter().all(|&k| k == 0)); // AA
        assert_eq!(out[1023], 1); // AC: last base before the tile, first tile base
        assert!(out[1024..1151].iter().all(|&k| k == 5)); // CC
        assert_eq!(out[1151], 4); // CA: last tile base, first base after it
        assert!(out[1152..].iter().all(|&k| k == 0));
        // A shift of +2 moves the window right: the tile now starts at token 1022.
        encode_window(&contig, contig.len(), s as u64, 2, false, 2176, &mut out).unwrap();
        assert_eq!((out[1021], out[1022], out[1149]), (1, 5, 4));
        assert!(encode_window(&contig, contig.len(), 0, 0, false, 2176, &mut out[..10]).is_err());
        assert!(encode_window(&contig, 7000, 0, 0, false, 2176, &mut out).is_err());
    }

    #[test]
    fn contig_edges_are_padded_with_n() {
        let contig = vec![2u8; 1500]; // all G
        let mut out = vec![0u8; 2176];
        // First tile: window starts 1024 bp before the contig.
        encode_window(&contig, contig.len(), 0, 0, false, 2176, &mut out).unwrap();
        assert!(out[..1024].iter().all(|&k| k == N_TOKEN));
        assert!(out[1024..2176 - 1].iter().all(|&k| k == 10)); // GG up to base 1151 of the contig
                                                               // The contig is 1500 bp, window covers [-1024, 1153): all inside on the right.
        assert_eq!(out[2175], 10);
        // Last tile: window runs past the end.
        encode_window(&contig, contig.len(), 1372, 0, false, 2176, &mut out).unwrap();
        let last_base_token = 1500 - (1372 - 1024) - 1; // token whose second base is past the end
        assert_eq!(out[last_base_token - 1], 10);
        assert!(out[last_base_token..].iter().all(|&k| k == N_TOKEN));
        // contig_len shorter than the slice: the rest is N too.
        encode_window(&contig, 1400, 1372, 0, false, 2176, &mut out).unwrap();
        assert!(out[1400 - 348 - 1..].iter().all(|&k| k == N_TOKEN));
        // A contig far shorter than the window.
        let mut small = vec![0u8; 9];
        encode_window_at(&[1, 1], 0, true, &mut small[..1]);
        assert_eq!(small[0], 10); // revcomp(CC) = GG
        encode_window_at(&[1, 1], -4, false, &mut small);
        assert_eq!(small, [16, 16, 16, 16, 5, 16, 16, 16, 16]);
    }

    #[test]
    fn unpack_labels_layout() {
        let mut bits = vec![0u8; 16]; // 2 rows of O = 3 (8 bytes each)
        bits[0] = 0b101;
        bits[8] = 0b010;
        assert_eq!(unpack_labels(&bits, 3).unwrap(), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        assert!(unpack_labels(&bits[..12], 3).is_err());
        assert!(unpack_labels(&[], 3).unwrap().is_empty());
    }
}
