//! The label model (data-sources.md 2b), per tile i and experiment o:
//! ```text
//! z_bio  = s_a * sum_m w[t_o, m] * B_im + 1[TF ChIP] * gamma * B_{i, target_o}
//! z_tech = theta_gc(o) * zg_i + theta_gc2(o) * zg_i^2 + sum_q phi_q(o) * zk_iq      (psi on the Tn5 k-mer)
//! p      = sigmoid((z_bio + z_tech - b_o) / T),   y ~ Bernoulli(p)
//! ```
//! zg, zk are z-scores with the calibration tiles' constants (`FactorNorm`). Masked tiles (more than half N/IUPAC) get
//! p = 0, y = 0. Key decisions: b_o is calibrated by bisection so that the mean p over calibration tiles equals
//! the experiment's target rate (the tiles of the dataset itself for small presets, an unwritten pilot contig
//! for `genome`, so that it stays one streaming pass); y uses one RNG
//! stream per tile `(seed, contig, tile)`, so labels do not depend on chunking or thread count.

use super::experiments::Experiment;
use super::factors::{masked, FactorNorm, Layout, N_KMERS};
use crate::rng::Rng;
use rayon::prelude::*;

pub const TAG_LABELS: u64 = 8;

pub struct LabelModel<'a> {
    pub lay: Layout,
    pub norm: FactorNorm,
    /// (n_tissues, n_motifs)
    pub w: &'a [Vec<f32>],
    pub exps: &'a [Experiment],
    /// Label temperature T (the preset's): p = sigmoid((z - b_o) / T).
    pub temperature: f32,
}

/// Per-tile quantities shared by all experiments.
struct TileTerms {
    /// sum_m w[t, m] * B_m per tissue.
    program: Vec<f32>,
    zg: f32,
    zk: [f32; N_KMERS],
    masked: bool,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl LabelModel<'_> {
    fn terms(&self, row: &[f32]) -> TileTerms {
        let m = self.lay.n_motifs;
        let program = self.w.iter().map(|wt| wt.iter().zip(&row[..m]).map(|(a, b)| a * b).sum()).collect();
        let zg = (row[self.lay.gc()] - self.norm.gc_mean) / self.norm.gc_sd;
        let mut zk = [0.0; N_KMERS];
        for (q, z) in zk.iter_mut().enumerate() {
            *z = (row[self.lay.kmer(q)] - self.norm.kmer_mean[q]) / self.norm.kmer_sd[q];
        }
        TileTerms { program, zg, zk, masked: masked(self.lay, row) }
    }

    fn z_bio(e: &Experiment, t: &TileTerms, row: &[f32]) -> f32 {
        e.s_a * t.program[e.tissue] + e.target.map_or(0.0, |m| e.gamma * row[m])
    }

    fn z_tech(e: &Experiment, t: &TileTerms) -> f32 {
        e.theta_gc * t.zg + e.theta_gc2 * t.zg * t.zg + e.phi.iter().zip(&t.zk).map(|(a, b)| a * b).sum::<f32>()
    }

    fn prob(&self, e: &Experiment, zb: f32, zt: f32, masked: bool) -> f32 {
        if masked {
            0.0
        } else {
            sigmoid((zb + zt - e.b) / self.temperature)
        }
    }

    /// (z_bio, z_tech) of every experiment for one factor row; used for variant deltas.
    pub fn z_row(&self, row: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let t = self.terms(row);
        self.exps.iter().map(|e| (Self::z_bio(e, &t, row), Self::z_tech(e, &t))).unzip()
    }

    /// Labels for consecutive tiles `first_tile..` of contig `contig` from factor `rows` (n, F).
    /// Returns (n, O) matrices; z matrices are empty unless `want_z`.
    pub fn chunk(&self, rows: &[f32], seed: u64, contig: u64, first_tile: u64, want_z: bool) -> ChunkLabels {
        let f = self.lay.width();
        let o = self.exps.len();
        let per_tile: Vec<TileOut> = rows
            .par_chunks(f)
            .enumerate()
            .map(|(i, row)| {
                let t = self.terms(row);
                let mut rng = Rng::derive(seed, &[TAG_LABELS, contig, first_tile + i as u64]);
                let mut out = TileOut::with_capacity(o, want_z);
                for e in self.exps {
                    let zb = Self::z_bio(e, &t, row);
                    let zt = Self::z_tech(e, &t);
                    let p = self.prob(e, zb, zt, t.masked);
                    out.p.push(p);
                    out.y.push((rng.f32() < p) as u8);
                    if want_z {
                        out.z_bio.push(zb);
                        out.z_tech.push(zt);
                    }
                }
                out
            })
            .collect();
        let mut all = TileOut::with_capacity(o * per_tile.len(), want_z);
        for mut t in per_tile {
            all.p.append(&mut t.p);
            all.y.append(&mut t.y);
            all.z_bio.append(&mut t.z_bio);
            all.z_tech.append(&mut t.z_tech);
        }
        ChunkLabels { z_bio: all.z_bio, z_tech: all.z_tech, p: all.p, y: all.y }
    }

    /// b_o per experiment such that the mean p over the calibration rows equals its target rate (bisection).
    pub fn calibrate(&self, rows: &[f32]) -> Vec<f32> {
        let f = self.lay.width();
        let terms: Vec<TileTerms> = rows.chunks(f).map(|r| self.terms(r)).collect();
        self.exps
            .par_iter()
            .map(|e| {
                let z: Vec<f32> = terms
                    .iter()
                    .zip(rows.chunks(f))
                    .filter(|(t, _)| !t.masked)
                    .map(|(t, r)| Self::z_bio(e, t, r) + Self::z_tech(e, t))
                    .collect();
                let n = terms.len().max(1) as f64;
                let rate = |b: f32| z.iter().map(|&v| sigmoid((v - b) / self.temperature) as f64).sum::<f64>() / n;
                let (mut lo, mut hi) = (-20.0f32, 40.0f32);
                for _ in 0..28 {
                    let mid = 0.5 * (lo + hi);
                    if rate(mid) > e.target_rate {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            })
            .collect()
    }
}

struct TileOut {
    p: Vec<f32>,
    y: Vec<u8>,
    z_bio: Vec<f32>,
    z_tech: Vec<f32>,
}

impl TileOut {
    fn with_capacity(n: usize, want_z: bool) -> Self {
        let nz = if want_z { n } else { 0 };
        TileOut {
            p: Vec::with_capacity(n),
            y: Vec::with_capacity(n),
            z_bio: Vec::with_capacity(nz),
            z_tech: Vec::with_capacity(nz),
        }
    }
}

/// Labels of a run of tiles, (n, O) row-major.
pub struct ChunkLabels {
    pub z_bio: Vec<f32>,
    pub z_tech: Vec<f32>,
    pub p: Vec<f32>,
    pub y: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::elements::plan_contig;
    use crate::data::synth::experiments::make_experiments;
    use crate::data::synth::factors::{tile_factors, SeqView};
    use crate::data::synth::genome::chunk_sequence;
    use crate::data::synth::presets::preset;
    use crate::data::synth::programs::Biology;

    #[test]
    fn calibration_hits_target_rates() {
        let bio = Biology::new().unwrap();
        let p = preset("tiny").unwrap();
        let plan = plan_contig(&bio, &p, 2, 0, "chr1", 800_037);
        let seq = chunk_sequence(&plan, 2, 0, plan.len);
        let lay = Layout { n_motifs: bio.n_motifs() };
        let rows = tile_factors(lay, &plan, SeqView { seq: &seq, lo: 0 }, 0..plan.n_tiles);
        let (_, mut exps) = make_experiments(&bio, &p, 2);
        let norm = FactorNorm::fit(lay, &rows);
        let b = LabelModel { lay, norm: norm.clone(), w: &bio.w, exps: &exps, temperature: 1.0 }.calibrate(&rows);
        for (e, b) in exps.iter_mut().zip(b) {
            e.b = b;
        }
        let model = LabelModel { lay, norm, w: &bio.w, exps: &exps, temperature: 1.0 };
        let lab = model.chunk(&rows, 2, 0, 0, true);
        let n = plan.n_tiles as usize;
        for (j, e) in exps.iter().enumerate() {
            let mean_p: f64 = (0..n).map(|i| lab.p[i * exps.len() + j] as f64).sum::<f64>() / n as f64;
            assert!((mean_p - e.target_rate).abs() < 1e-3, "{mean_p} vs {}", e.target_rate);
            let zb = lab.z_bio[j];
            let (zbr, _) = model.z_row(&rows[..lay.width()]);
            assert_eq!(zb, zbr[j]);
        }
        // Deterministic and independent of how tiles are split into calls.
        let half = model.chunk(&rows[(n / 2) * lay.width()..], 2, 0, (n / 2) as u64, false);
        assert_eq!(&half.y[..], &lab.y[(n / 2) * exps.len()..]);
    }
}
