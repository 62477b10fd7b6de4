//! `mfd attribute`: Integrated Gradients of one latent feature with respect to the input one-hot, per position of
//! each region's window (T + 1 bases centred on the region), written as TSV, and a plot (SVG) of the mean
//! attribution around given motif sites (strand-aware, centred on the site).
//!
//! Key decisions: the baseline is the all-zero one-hot (the model's encoding of an all-N sequence); the score of
//! a position is the attribution summed over the 16 channels of the dinucleotide token starting there (for a
//! one-hot input only the present token is non-zero), credited to the token's first base. `--subtract-mean`
//! removes each region's mean score (the baseline signal every position gets), so motif plots show the excess.

use crate::data::binfile::write_atomic;
use crate::data::window::encode_window_at;
use crate::downstream::genome::{read_bed, Genome, IndexedFasta, Region};
use crate::downstream::ig::{integrated_gradients, one_hot, SoftTrunk};
use crate::downstream::model::Inference;
use crate::error::{MfdError, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct AttributeArgs {
    /// Checkpoint (.safetensors) written by `mfd train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset whose metadata built the model (default: the one in the checkpoint's config).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Regions (BED); each gets the T + 1 base window centred on it.
    #[arg(long)]
    pub bed: PathBuf,
    /// Indexed genome FASTA (.fai beside it); default: the dataset's genome.
    #[arg(long)]
    pub genome: Option<PathBuf>,
    /// Feature: `bio_<k>`, `tech_<k>` or an index into the 2C features (technical first).
    #[arg(long)]
    pub feature: String,
    /// Output TSV of per-position scores (OUT.svg: the motif plot, with --motifs).
    #[arg(long)]
    pub out: PathBuf,
    /// Integration steps (midpoint rule).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Subtract each region's mean score.
    #[arg(long)]
    pub subtract_mean: bool,
    /// Motif sites (BED with strand in column 6) for the mean-attribution plot.
    #[arg(long)]
    pub motifs: Option<PathBuf>,
    /// Bases either side of the site centre in the plot.
    #[arg(long, default_value_t = 30)]
    pub flank: usize,
}

/// Feature index in [0, 2C) from `bio_<k>`, `tech_<k>` or a plain index.
pub fn parse_feature(s: &str, c: usize) -> Result<usize> {
    let bad = || {
        MfdError::config("--feature", format!("'{s}': expected bio_<k> or tech_<k> (k < {c}) or an index < {}", 2 * c))
    };
    let (off, k) = if let Some(k) = s.strip_prefix("bio_") {
        (c, k)
    } else if let Some(k) = s.strip_prefix("tech_") {
        (0, k)
    } else {
        let j: usize = s.parse().map_err(|_| bad())?;
        return if j < 2 * c { Ok(j) } else { Err(bad()) };
    };
    let k: usize = k.parse().map_err(|_| bad())?;
    if k < c {
        Ok(off + k)
    } else {
        Err(bad())
    }
}

/// Per-base IG scores of a window of T + 1 base codes for feature `j`: (T + 1) values (the last base starts no
/// token: 0), plus f(x) and f(baseline).
pub fn window_scores(trunk: &SoftTrunk, window: &[u8], j: usize, steps: usize) -> Result<(Vec<f32>, f32, f32)> {
    let t = window.len() - 1;
    let mut tokens = vec![0u8; t];
    encode_window_at(window, 0, false, &mut tokens);
    let x = one_hot(&tokens);
    let (attr, fx, f0) = integrated_gradients(trunk, &x, &vec![0f32; x.len()], j, steps)?;
    let mut scores = vec![0f32; t + 1];
    for row in attr.chunks(t) {
        for (s, &a) in scores.iter_mut().zip(row) {
            *s += a;
        }
    }
    Ok((scores, fx, f0))
}

/// A motif site: centre base and strand.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub chrom: String,
    pub centre: i64,
    pub minus: bool,
}

/// Read motif sites from a BED (strand in column 6, '+' when absent).
pub fn read_sites(path: &Path) -> Result<Vec<Site>> {
    let text = crate::downstream::genome::read_text(path)?;
    let regions = read_bed(path)?;
    let strands: Vec<bool> = text
        .lines()
        .filter(|l| {
            let l = l.trim_end_matches('\r');
            !(l.trim().is_empty() || l.starts_with('#') || l.starts_with("track") || l.starts_with("browser"))
        })
        .map(|l| l.split('\t').nth(5).is_some_and(|s| s.trim() == "-"))
        .collect();
    Ok(regions
        .iter()
        .zip(strands)
        .map(|(r, minus)| Site { chrom: r.chrom.clone(), centre: ((r.start + r.end) / 2) as i64, minus })
        .collect())
}

/// Mean score at offsets -flank..=flank around every site inside a scored window (read 5'->3' on the site's
/// strand). `windows`: (chrom, first base, scores). Returns (offset, mean, count) per offset.
pub fn motif_profile(windows: &[(String, i64, Vec<f32>)], sites: &[Site], flank: usize) -> Vec<(i64, f64, usize)> {
    let f = flank as i64;
    let mut sum = vec![0f64; 2 * flank + 1];
    let mut n = vec![0usize; 2 * flank + 1];
    for (chrom, start, scores) in windows {
        let end = start + scores.len() as i64;
        for s in sites.iter().filter(|s| &s.chrom == chrom && s.centre - f >= *start && s.centre + f < end) {
            for o in -f..=f {
                let pos = if s.minus { s.centre - o } else { s.centre + o };
                sum[(o + f) as usize] += scores[(pos - start) as usize] as f64;
                n[(o + f) as usize] += 1;
            }
        }
    }
    (-f..=f).map(|o| (o, sum[(o + f) as usize] / n[(o + f) as usize].max(1) as f64, n[(o + f) as usize])).collect()
}

pub fn run(args: &AttributeArgs) -> Result<()> {
    let inf = Inference::load(&args.checkpoint, args.dataset.as_deref())?;
    let j = parse_feature(&args.feature, inf.c)?;
    let genome = match &args.genome {
        Some(g) => Genome::Fasta(IndexedFasta::open(g)?),
        None => {
            let dir =
                crate::train::load_model::checkpoint_config(&args.checkpoint, args.dataset.as_deref())?.data.dataset;
            Genome::Dataset(Box::new(crate::data::dataset::Dataset::open(&dir)?))
        }
    };
    let trunk = SoftTrunk::new(inf.model.trunk.spec.clone(), &inf.model.params.table, &inf.model.params.values)?;
    let t = inf.t;
    let regions: Vec<Region> = genome.read_regions(&args.bed)?;
    let bar = indicatif::ProgressBar::new(regions.len() as u64);
    let mut tsv = String::from("region\tchrom\tpos\tbase\tscore\n");
    let mut windows = Vec::new();
    let mut worst_gap = 0f64;
    for r in &regions {
        let start = ((r.start + r.end) / 2) as i64 - (t as i64 + 1) / 2;
        let letters = genome.fetch_letters(&r.chrom, start, start + t as i64 + 1)?;
        let codes: Vec<u8> = letters.iter().map(|&b| crate::downstream::seq::code(b)).collect();
        let (mut scores, fx, f0) = window_scores(&trunk, &codes, j, args.steps)?;
        let total: f64 = scores.iter().map(|&v| v as f64).sum();
        worst_gap = worst_gap.max((total - (fx - f0) as f64).abs());
        if args.subtract_mean {
            let m = (total / t as f64) as f32;
            scores[..t].iter_mut().for_each(|v| *v -= m);
        }
        for (i, s) in scores.iter().enumerate() {
            tsv.push_str(&format!("{}\t{}\t{}\t{}\t{s:.6e}\n", r.name, r.chrom, start + i as i64, letters[i] as char));
        }
        windows.push((r.chrom.clone(), start, scores));
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_atomic(&args.out, tsv.as_bytes())?;
    eprintln!(
        "mfd: IG of feature {} ({} steps) over {} regions; largest |sum(attr) - (f(x) - f(baseline))| = {worst_gap:.3e}",
        args.feature,
        args.steps,
        regions.len()
    );
    if let Some(m) = &args.motifs {
        let sites = read_sites(m)?;
        let prof = motif_profile(&windows, &sites, args.flank);
        let used = prof.first().map(|p| p.2).unwrap_or(0);
        let pts: Vec<(f64, f64)> = prof.iter().map(|&(o, v, _)| (o as f64, v)).collect();
        let svg = crate::report::svg::line_chart(
            &format!("Mean IG attribution of {} around {used} motif sites", args.feature),
            "offset from site centre (bp)",
            "attribution",
            &[(args.feature.clone(), pts)],
        );
        let s = args.out.to_string_lossy();
        let svg_path = PathBuf::from(format!("{}.svg", s.trim_end_matches(".tsv")));
        write_atomic(&svg_path, svg.as_bytes())?;
        eprintln!("mfd: wrote {} ({used} sites inside the windows)", svg_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_and_profiles() {
        assert_eq!(parse_feature("bio_2", 8).unwrap(), 10);
        assert_eq!(parse_feature("tech_7", 8).unwrap(), 7);
        assert_eq!(parse_feature("15", 8).unwrap(), 15);
        assert!(parse_feature("bio_8", 8).is_err());
        assert!(parse_feature("16", 8).is_err());
        assert!(parse_feature("x", 8).is_err());
        // One window at 100 with scores = position; a + site at 110 and a - site at 105, flank 2.
        let w = vec![("c".to_string(), 100i64, (0..20).map(|i| i as f32).collect::<Vec<_>>())];
        let sites = vec![
            Site { chrom: "c".into(), centre: 110, minus: false },
            Site { chrom: "c".into(), centre: 105, minus: true },
            Site { chrom: "c".into(), centre: 119, minus: false }, // flank outside the window: skipped
        ];
        let p = motif_profile(&w, &sites, 2);
        // offset -2: + site at 108 (8), - site at 107 (7) -> 7.5
        assert_eq!(p[0], (-2, 7.5, 2));
        assert_eq!(p[4], (2, (12.0 + 3.0) / 2.0, 2));
    }
}
