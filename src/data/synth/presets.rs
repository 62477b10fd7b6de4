//! Size presets of `mfd synth`: tiny (the embedded default training set), bench (~50 Mb, O = 256) and genome
//! (hg38 contig lengths, O = 2106, streamed).
//!
//! Key decision: a preset is plain data; everything else (genome, elements, experiments, labels) reads only
//! these numbers, so the three sizes run the exact same code paths.

use super::realseq::WindowRule;
use crate::error::{MfdError, Result};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    /// Raised whenever the preset's output for a given seed changes (params.json `preset_version`): a dataset
    /// prepared from an older version is refused by the trainer instead of being trained on silently (origin.rs).
    pub version: u32,
    /// Contig names and lengths in FASTA order.
    pub contigs: Vec<(String, u64)>,
    /// Number of experiments O.
    pub n_experiments: usize,
    pub n_labs: usize,
    /// Experiments in reserved, unique (tissue, lab) cells whose peaks are written on test contigs only.
    pub n_held_out: usize,
    /// Mean distance between regulatory element starts (bp).
    pub element_spacing: u64,
    /// Bases generated per chunk (a multiple of 128; bounds memory).
    pub chunk_bases: u64,
    /// Write the dense (tiles, O) truth matrices z_bio, z_tech, p, y.
    pub dense_truth: bool,
    /// Variants per class (4 classes).
    pub variants_per_class: usize,
    /// N run at each contig end (bp).
    pub end_n: u64,
    /// Interior N gap length range (bp), one gap per `gap_every` bp of contig (at least one).
    pub gap_len: (u64, u64),
    pub gap_every: u64,
    /// IUPAC ambiguity codes sprinkled per contig.
    pub iupac_per_contig: usize,
    /// Length of an unwritten pilot contig used to calibrate normalisation and b_o; `None` calibrates on the
    /// dataset's own contigs (an extra sequence pass, affordable for small presets, and exact rates there).
    pub pilot_bases: Option<u64>,
    /// Positive rate targets per experiment are drawn uniformly from this range.
    pub rate_range: (f64, f64),
    /// Label temperature T: p = sigmoid((z_bio + z_tech - b_o) / T). Lower is sharper (less label noise).
    pub temperature: f32,
    /// Planted sites are drawn from each PFM column raised to this power (1 = JASPAR frequencies).
    pub site_sharpness: f64,
    /// Buffered peaks (all experiments) before they are appended to their files.
    pub peak_flush: usize,
    /// Real sequence (`chr20`, `chr20-small`): the contigs are windows of GRCh37 chr20 cut by this rule, nothing
    /// is planted and the motif factors are PWM scan scores (realseq.rs, scan.rs). `None`: generated sequence.
    pub real: Option<WindowRule>,
    /// The FASTA of a real-sequence preset (`--fasta`); `None`: `$MFD_CHR20_FASTA`, else the Debian path.
    pub fasta: Option<PathBuf>,
}

/// hg38 primary chromosome lengths.
const HG38: &[(&str, u64)] = &[
    ("chr1", 248_956_422),
    ("chr2", 242_193_529),
    ("chr3", 198_295_559),
    ("chr4", 190_214_555),
    ("chr5", 181_538_259),
    ("chr6", 170_805_979),
    ("chr7", 159_345_973),
    ("chr8", 145_138_636),
    ("chr9", 138_394_717),
    ("chr10", 133_797_422),
    ("chr11", 135_086_622),
    ("chr12", 133_275_309),
    ("chr13", 114_364_328),
    ("chr14", 107_043_718),
    ("chr15", 101_991_189),
    ("chr16", 90_338_345),
    ("chr17", 83_257_441),
    ("chr18", 80_373_285),
    ("chr19", 58_617_616),
    ("chr20", 64_444_167),
    ("chr21", 46_709_983),
    ("chr22", 50_818_468),
    ("chrX", 156_040_895),
    ("chrY", 57_227_415),
];

fn contigs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(n, l)| (n.to_string(), *l)).collect()
}

impl Preset {
    /// The same preset on a subset of its contigs (kept in preset order).
    pub fn restrict(mut self, names: &[String]) -> Result<Self> {
        for n in names {
            if !self.contigs.iter().any(|(c, _)| c == n) {
                return Err(MfdError::config("contigs", format!("preset {} has no contig '{n}'", self.name)));
            }
        }
        self.contigs.retain(|(c, _)| names.contains(c));
        Ok(self)
    }

    /// A real-sequence preset: `n` windows of `len` bp named chr1..chr8 then the test contigs chr9, chr10
    /// (so `mfd prepare`'s default test split applies), every window a nominal `stride` bp after the previous.
    fn chr20(name: &'static str, n: usize, len: u64, first: u64, stride: u64, n_experiments: usize) -> Self {
        let mut names: Vec<String> = (1..=n - 2).map(|i| format!("chr{i}")).collect();
        names.extend(["chr9".to_string(), "chr10".to_string()]);
        let contigs: Vec<(String, u64)> = names.into_iter().map(|c| (c, len)).collect();
        Preset {
            name,
            version: CHR20_VERSION,
            contigs: contigs.clone(),
            n_experiments,
            n_labs: 6, // a multiple of the 6 tissues: each tissue has home labs of both GC-bias signs
            n_held_out: 2,
            element_spacing: 0,
            chunk_bases: 1 << 21, // > a window: each contig is one chunk, scanned whole
            dense_truth: true,
            variants_per_class: 20 * n,
            end_n: 0,
            gap_len: (0, 0),
            gap_every: u64::MAX,
            iupac_per_contig: 0,
            pilot_bases: None,
            rate_range: (0.02, 0.06),
            temperature: 0.5,
            site_sharpness: 1.0,
            peak_flush: usize::MAX,
            real: Some(WindowRule { all: contigs, first, stride, max_n: 0, step: 250_000 }),
            fasta: None,
        }
    }
}

/// Experiments of the real-sequence presets (v2; v1 had 48).
const CHR20_EXPERIMENTS: usize = 72;
/// Version of the real-sequence presets: 2 since they have 72 experiments.
const CHR20_VERSION: u32 = 2;

pub fn preset(name: &str) -> Result<Preset> {
    match name {
        "tiny" => Ok(Preset {
            name: "tiny",
            version: 4, // tiny-v4: 72 experiments (v3: GC bias centred over the experiments)
            // Lengths deliberately not multiples of 128 (the partial last tile is not on the grid).
            contigs: contigs(&[("chr1", 1_600_037), ("chr2", 1_400_013), ("chr9", 450_101), ("chr10", 400_077)]),
            // 12 per tissue. With 24 (4 per tissue; 14 of them with a (lab, assay, year) of their own) the planted
            // motifs ended up split between the two feature halves; with 72 they go to the biological half
            // (docs/LEARNING.md section 9).
            n_experiments: 72,
            n_labs: 6, // a multiple of the 6 tissues: each tissue has home labs of both GC-bias signs
            n_held_out: 2,
            element_spacing: 800,
            chunk_bases: 1 << 18,
            dense_truth: true,
            variants_per_class: 50,
            end_n: 0,
            gap_len: (1_000, 5_000),
            gap_every: 1_000_000,
            iupac_per_contig: 8,
            pilot_bases: None,
            rate_range: (0.03, 0.08),
            temperature: 0.5,
            site_sharpness: 4.0,
            peak_flush: usize::MAX,
            real: None,
            fasta: None,
        }),
        "bench" => Ok(Preset {
            name: "bench",
            version: 1,
            contigs: contigs(&[
                ("chr1", 12_500_011),
                ("chr2", 11_500_029),
                ("chr3", 9_000_047),
                ("chr9", 8_500_023),
                ("chr10", 8_500_061),
            ]),
            n_experiments: 256,
            n_labs: 8,
            n_held_out: 6,
            element_spacing: 3_000,
            chunk_bases: 1 << 20,
            dense_truth: true,
            variants_per_class: 250,
            end_n: 10_000,
            gap_len: (2_000, 20_000),
            gap_every: 5_000_000,
            iupac_per_contig: 20,
            pilot_bases: None,
            rate_range: (0.015, 0.06),
            temperature: 1.0,
            site_sharpness: 1.0,
            peak_flush: usize::MAX,
            real: None,
            fasta: None,
        }),
        "genome" => Ok(Preset {
            name: "genome",
            version: 1,
            contigs: contigs(HG38),
            n_experiments: 2106,
            n_labs: 24,
            n_held_out: 20,
            element_spacing: 5_000,
            chunk_bases: 1 << 20,
            dense_truth: false,
            variants_per_class: 2_500,
            end_n: 10_000,
            gap_len: (50_000, 3_000_000),
            gap_every: 60_000_000,
            iupac_per_contig: 50,
            pilot_bases: Some(8_000_000),
            rate_range: (0.01, 0.02),
            temperature: 1.0,
            site_sharpness: 1.0,
            peak_flush: 8_000_000,
            real: None,
            fasta: None,
        }),
        // 10 windows of 1.5 Mb of GRCh37 chr20 (2 Mb to ~62 Mb, the centromere and N runs skipped), 72 experiments
        // (12 per tissue, as tiny). With 48 the biological metadata named the lab of so many experiments that a
        // seed could keep GC and lose z_bio in the biological half (docs/LEARNING.md section 10).
        "chr20" => Ok(Preset::chr20("chr20", 10, 1_500_000, 2_000_000, 6_000_000, CHR20_EXPERIMENTS)),
        // A quick look: `chr20` on 4 of its windows (chr1, chr2 train/val; chr9, chr10 test), 6 Mb; the same sequence
        // and experiments as `mfd synth --preset chr20 --contigs chr1,chr2,chr9,chr10`. Too little training sequence
        // to learn z_bio (none in 24 epochs), so tests/chr20.rs trains the whole preset for 8 epochs instead
        // (docs/LEARNING.md section 10, "The CI size").
        "chr20-small" => {
            let full = Preset::chr20("chr20-small", 10, 1_500_000, 2_000_000, 6_000_000, CHR20_EXPERIMENTS);
            full.restrict(&["chr1".into(), "chr2".into(), "chr9".into(), "chr10".into()])
        }
        other => Err(MfdError::config(
            "preset",
            format!("unknown preset '{other}'; expected tiny, bench, genome, chr20 or chr20-small"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_hold_test_contigs() {
        for name in ["tiny", "bench", "genome", "chr20", "chr20-small"] {
            let p = preset(name).unwrap();
            assert!(p.contigs.iter().any(|(n, _)| n == "chr9"));
            assert!(p.contigs.iter().any(|(n, _)| n == "chr10"));
            assert_eq!(p.chunk_bases % 128, 0);
        }
        let g: u64 = preset("genome").unwrap().contigs.iter().map(|c| c.1).sum();
        assert!((3_000_000_000..3_200_000_000).contains(&g));
        assert!(preset("huge").is_err());
        let r = preset("genome").unwrap().restrict(&["chr21".into(), "chr1".into()]).unwrap();
        assert_eq!(r.contigs.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["chr1", "chr21"]);
        assert!(preset("tiny").unwrap().restrict(&["chr3".into()]).is_err());
    }
}
