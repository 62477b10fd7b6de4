//! `mfd synth`: a synthetic dataset in real formats (FASTA, narrowPeak, metadata TSV, VCF) with the ground truth
//! that separates biological from technical signal (design: data-sources.md 2b). The output is a pure function
//! of (preset, seed); it is written into a temporary sibling directory and renamed into place at the end, so a
//! failed run leaves nothing that looks finished. An existing non-empty `--out` is refused.
//!
//! # Real sequence: the `chr20` and `chr20-small` presets
//! The contigs are N-free windows of GRCh37 chromosome 20 from Debian's `vt-examples`
//! (`/usr/share/doc/vt/examples/ref/20.fa.gz`; `$MFD_CHR20_FASTA` for another copy; realseq.rs), named chr1.. with
//! chr9, chr10 last (the test contigs). Nothing is planted: the motif columns of the tile factors are PWM scan
//! strengths of the best site of each JASPAR matrix in the tile's window (scan.rs), and z_bio, z_tech, p and y
//! follow from the same label model as below. `elements.bed` and `motif_instances.bed` are empty, variants are
//! chosen from the scan (realvar.rs), and `params.json` `source` records the FASTA and the windows. The output
//! is a pure function of (preset, seed, FASTA).
//!
//! # Output directory
//! - `genome.fa` (60 bases per line, uppercase; N runs and a few IUPAC codes) and `genome.fa.fai` (samtools
//!   faidx: name, length, offset, linebases, linewidth). Contigs "chr1", "chr2", ..., always "chr9", "chr10".
//! - `peaks/<id>.narrowPeak`: 10-column ENCODE narrowPeak, sorted by contig order then start; one peak per run
//!   of consecutive positive tiles, [128a, 128b). Every 5th file starts with a `track` line.
//! - `peaks.tsv`: header `experiment<TAB>path`, one row per experiment (path relative to peaks.tsv); row
//!   order = class order.
//! - `metadata.tsv`: header; `File_accession` (= experiment id) then Biosample_term_name, Biosample_organ_slims,
//!   Biosample_system_slims, Biosample_developmental_slims, Biosample_organism, proc_Biosample_life_stage,
//!   proc_age_bin, proc_age_bin_units, proc_target, proc_Assay_lvl1, Experiment_date_released (YYYY-MM-DD),
//!   Library_lab, spot2_score, five_percent_narrowpeaks_count, frip, reproducible_peaks.
//! - `variants.vcf`: VCFv4.2 with ##contig lines, sorted, REF = genome.fa; INFO `CLASS=motif_breaking |
//!   motif_creating | gc_only | neutral` (+ `MOTIF=<JASPAR id>;TF=<name>` for the motif classes).
//!
//! # Truth (`truth/`)
//! The tile grid: tile k of a contig is [128k, 128k+128) for k < floor(len / 128) (a partial last tile is not
//! on the grid); the global row of a tile is its contig's `tile_offset` (params.json) + k, contigs in FASTA
//! order. `n_grid_tiles` rows in all.
//! - `motif_instances.bed`: chrom, start, end, motif id, score (PWM log-odds, nats), strand, TF name, element
//!   id. Every planted site (pre-broken sites for motif-creating variants are not instances and not listed).
//! - `elements.bed`: chrom, start, end, element id (`<chrom>_e<i>`), kind (active | shared | decoy | empty),
//!   active tissues (comma-separated tissue names; `all` for shared, `none` for decoy and empty).
//! - `params.json`: preset, `preset_version` (checked by the trainer: origin.rs), seed, tile size, window flank, temperature T, test contigs, contigs (name, length,
//!   tile_offset, n_tiles), n_grid_tiles, motifs, tissues with programs, shared and decoy motifs, `w`
//!   (n_tissues, n_motifs), k-mers and the Tn5 k-mer, `factor_columns`, `factor_norm` (z-score constants), rho,
//!   labs (home tissues, alpha, pcr, base year), k-mer owner labs, held-out experiment ids, and per experiment:
//!   tissue, assay, ChIP target, lab, year, s_a, gamma, theta_gc, theta_gc2, phi (last entry = psi, Tn5),
//!   b (b_o), target and realised positive rate, peak count, frip, spot2.
//! - `tile_factors.bin`: binfile kind "tfactors", f32 (n_grid_tiles, F), F = 43 columns named in
//!   `factor_columns`: 36 planted-motif counts over the tile +-64 bp, gc, 5 k-mer counts, n_frac (see
//!   factors.rs).
//! - `z_bio.bin`, `z_tech.bin`, `p.bin` (kinds "zbio", "ztech", "prob"; f32 (n_grid_tiles, O)) and `y.bin`
//!   (kind "ylabel", u8 (n_grid_tiles, O)): tiny and bench only. For `genome` they would be ~200 GB each and
//!   are not written: params.json + tile_factors.bin determine z_bio, z_tech and p exactly (labels.rs).
//!   p = sigmoid((z_bio + z_tech - b_o) / T), 0 on masked tiles (n_frac > 0.5); "clean" targets are
//!   sigmoid((z_bio - b_o) / T). y is the generative label: the peak files of held-out experiments omit
//!   peaks off the test contigs (chr9, chr10), everything else equals y exactly.
//! - `variants.tsv`: id, chrom, pos (1-based), ref, alt, class, motif_id, tf, tile_row (global tile row of the
//!   tile containing the variant), mean/min/max delta z_bio and mean/max |delta z_tech| over experiments.
//! - `variant_deltas.bin`: kind "vdeltas", f32 (n_variants, 2, O): true delta z_bio [.., 0, ..] and
//!   delta z_tech [.., 1, ..] per experiment at the variant's tile, rows in VCF order.

mod elements;
mod experiments;
mod factors;
mod generate;
mod genome;
mod labels;
mod origin;
mod peaks_out;
mod presets;
mod programs;
mod realseq;
mod realvar;
mod scan;
mod variants;

pub use generate::{generate, Summary, TEST_CONTIGS};
pub use origin::{check_origin, read_origin, Origin};
pub use presets::{preset, Preset};

use crate::error::{IoContext, MfdError, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output directory (created; must not already hold a dataset).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed; the output is a pure function of (preset, seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Size preset: tiny (the embedded default, seconds), bench, genome (hg38-scale, streamed), chr20 and
    /// chr20-small (real GRCh37 chr20 sequence from the vt-examples package; another copy: --fasta).
    #[arg(long, default_value = "tiny")]
    pub preset: String,

    /// Only these contigs of the preset (comma-separated), for partial runs and timing; default: all.
    #[arg(long, value_delimiter = ',')]
    pub contigs: Vec<String>,
    /// The GRCh37 chr20 FASTA (plain or gzip) of a real-sequence preset; default: $MFD_CHR20_FASTA, else the
    /// vt-examples package's copy.
    #[arg(long)]
    pub fasta: Option<PathBuf>,
}

pub fn run(args: &SynthArgs) -> Result<()> {
    let mut p = preset(&args.preset)?;
    if !args.contigs.is_empty() {
        p = p.restrict(&args.contigs)?;
    }
    if let Some(fa) = &args.fasta {
        if p.real.is_none() {
            return Err(MfdError::Other(format!(
                "mfd synth --fasta {}: the {} preset generates its sequence; --fasta is for chr20 and chr20-small",
                fa.display(),
                p.name
            )));
        }
        p.fasta = Some(fa.clone());
    }
    let start = Instant::now();
    let s = synthesize(&p, args.seed, &args.out)?;
    let mean_rate = s.rates.iter().sum::<f64>() / s.rates.len().max(1) as f64;
    let peaks: u64 = s.peaks.iter().sum();
    println!(
        "mfd synth: {} preset, seed {}: {} bp, {} tiles, {} experiments (mean positive rate {:.3}), {} peaks, {} variants, {} held out -> {} ({:.1} s)",
        p.name,
        args.seed,
        s.bases,
        s.n_grid_tiles,
        s.rates.len(),
        mean_rate,
        peaks,
        s.n_variants,
        s.held_out.len(),
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Generate into a temporary sibling of `out`, then rename it to `out` (which must be absent or empty).
pub fn synthesize(p: &Preset, seed: u64, out: &Path) -> Result<Summary> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).at(out)?;
        if entries.next().is_some() {
            return Err(MfdError::input(
                out,
                None,
                None,
                "output directory exists and is not empty; HINT: choose a new --out or remove it",
            ));
        }
    }
    let name = out.file_name().ok_or_else(|| MfdError::input(out, None, None, "--out needs a directory name"))?;
    let parent = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).at(&parent)?;
    let tmp = parent.join(format!(".{}.synth-tmp-{}", name.to_string_lossy(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let res = generate(p, seed, &tmp).and_then(|s| {
        if out.exists() {
            std::fs::remove_dir(out).at(out)?;
        }
        std::fs::rename(&tmp, out).at(out)?;
        Ok(s)
    });
    if res.is_err() {
        // Nothing half-written survives, a failed final rename included.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}
