//! `mfd vep`: variant effect prediction (mfd-spec.md 8.2). For each (REF, ALT) pair the ref and alt windows
//! (T + S bases centred on the variant) are embedded, averaged over S shifts and both strands; then per output
//! class: combined VEP = head(alt) - head(ref), biological VEP = head(tech_ref, bio_alt) - head(ref), technical
//! VEP = head(tech_alt, bio_ref) - head(ref) (the reference's "ver2" swap of feature halves). On the logit scale
//! combined = biological + technical exactly; on the probability scale (the reference's default) only roughly.
//!
//! Key decisions: REF must equal the genome (case-insensitive); mismatches are skipped, listed in OUT.skipped.tsv
//! and counted, never used (the reference silently kept "flipped" records). SNVs, MNPs and indels whose alleles
//! have at most 1 + max_indel bases are scored; symbolic alleles are skipped. The alt window keeps the left flank
//! and the variant's first base position, then ALT, then the genome after REF, cut to the window length.

use crate::data::binfile::{tmp_path, write_atomic};
use crate::downstream::genome::{Genome, IndexedFasta};
use crate::downstream::model::{Inference, Scale};
use crate::downstream::seq::{code, mean_groups, push_passes, Passes};
use crate::downstream::vcf::{Variant, VcfReader};
use crate::downstream::vcf_out::{self, OutFormat, Sink};
use crate::error::{IoContext, MfdError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct VepArgs {
    /// Checkpoint (.safetensors) written by `mfd train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset whose metadata built the model (default: the one in the checkpoint's config).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Variants (VCF; plain, gzip or bgzip).
    #[arg(long)]
    pub vcf: PathBuf,
    /// Reference genome: indexed FASTA (.fai beside it) the VCF refers to (`--fasta` is the old name).
    #[arg(long, visible_alias = "fasta", value_name = "GENOME")]
    pub genome: PathBuf,
    /// Output: TSV, or VCF when the name ends in .vcf.gz (bgzip, tabix-ready for a sorted input) or .vcf
    /// (OUT.skipped.tsv and OUT.summary.json beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Output format, tsv or vcf (default: from the --out name; a VCF is bgzip-compressed unless named .vcf).
    #[arg(long)]
    pub format: Option<String>,
    /// Shifted crops averaged per strand (the reference's gnomAD setting: 7).
    #[arg(long, default_value_t = 7)]
    pub shifts: usize,
    /// Forward strand only (default: forward and reverse complement).
    #[arg(long)]
    pub forward_only: bool,
    /// Head output: prob (sigmoid, the reference's "predictions") or logit (exactly additive halves).
    #[arg(long, default_value = "prob")]
    pub scale: String,
    /// Per-class columns (`per-class`) or one summary over classes: `mean` or `max-abs` (signed value of the
    /// largest |VEP|).
    #[arg(long, default_value = "mean")]
    pub classes: String,
    /// Longest indel (bp) scored.
    #[arg(long, default_value_t = 32)]
    pub max_indel: usize,
    /// Sequences per trunk forward.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

/// How VEPs over classes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassReduce {
    PerClass,
    Mean,
    MaxAbs,
}

impl ClassReduce {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "per-class" => Ok(ClassReduce::PerClass),
            "mean" => Ok(ClassReduce::Mean),
            "max-abs" => Ok(ClassReduce::MaxAbs),
            o => Err(MfdError::config("--classes", format!("'{o}': expected per-class, mean or max-abs"))),
        }
    }
    /// The summary of `v` (not used for PerClass).
    pub fn apply(self, v: &[f32]) -> f32 {
        match self {
            ClassReduce::Mean => (v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64) as f32,
            _ => v.iter().copied().fold(0.0f32, |m, x| if x.abs() > m.abs() { x } else { m }),
        }
    }
}

/// Why a variant was not scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    RefMismatch { genome: String },
    UnknownContig,
    TooLong,
    UnsupportedAllele,
}

impl Skip {
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::RefMismatch { .. } => "ref_mismatch",
            Skip::UnknownContig => "unknown_contig",
            Skip::TooLong => "too_long",
            Skip::UnsupportedAllele => "unsupported_allele",
        }
    }
}

/// VEPs of one variant: (O) each, and the feature change alt - ref (2C: technical, biological).
#[derive(Debug, Clone, PartialEq)]
pub struct VepScores {
    pub combined: Vec<f32>,
    pub bio: Vec<f32>,
    pub tech: Vec<f32>,
    pub d_features: Vec<f32>,
}

/// Ref and alt windows (T + S base codes each) of a variant.
pub type WindowPair = (Vec<u8>, Vec<u8>);

/// Ref and alt windows (T + S base codes each) of `v`, or why it cannot be scored.
pub fn variant_windows(
    genome: &Genome,
    v: &Variant,
    t: usize,
    p: Passes,
    max_indel: usize,
) -> Result<std::result::Result<WindowPair, Skip>> {
    if !v.alt.bytes().all(|b| b"ACGTN".contains(&b)) || v.alt.is_empty() {
        return Ok(Err(Skip::UnsupportedAllele));
    }
    if v.reference.len().max(v.alt.len()) > max_indel + 1 {
        return Ok(Err(Skip::TooLong));
    }
    let Some(len) = genome.contig_len(&v.chrom) else { return Ok(Err(Skip::UnknownContig)) };
    let p0 = v.pos as i64 - 1;
    if p0 + v.reference.len() as i64 > len as i64 {
        return Ok(Err(Skip::RefMismatch { genome: "(past the contig end)".into() }));
    }
    let (w, lf) = (p.window_len(t), p.centre_offset(t) as i64);
    let letters = genome.fetch_letters(&v.chrom, p0 - lf, p0 + v.reference.len() as i64 + w as i64)?;
    let lf = lf as usize;
    let g_ref = &letters[lf..lf + v.reference.len()];
    if g_ref != v.reference.as_bytes() {
        return Ok(Err(Skip::RefMismatch { genome: String::from_utf8_lossy(g_ref).into_owned() }));
    }
    let codes: Vec<u8> = letters.iter().map(|&b| code(b)).collect();
    let reference = codes[..w].to_vec();
    let mut alt: Vec<u8> = codes[..lf].to_vec();
    alt.extend(v.alt.bytes().map(code));
    alt.extend_from_slice(&codes[lf + v.reference.len()..]);
    alt.truncate(w);
    Ok(Ok((reference, alt)))
}

/// Score (ref, alt) window pairs.
pub fn score_pairs(inf: &mut Inference, pairs: &[WindowPair], p: Passes, scale: Scale) -> Result<Vec<VepScores>> {
    let (t, c) = (inf.t, inf.c);
    let mut tokens = Vec::with_capacity(pairs.len() * 2 * p.count() * t);
    for (r, a) in pairs {
        push_passes(r, t, p, &mut tokens);
        push_passes(a, t, p, &mut tokens);
    }
    let f = mean_groups(&inf.features(&tokens)?, 2 * c, p.count());
    Ok(f.chunks(4 * c).map(|fa| vep_from_features(inf, &fa[..2 * c], &fa[2 * c..], scale)).collect())
}

/// VEPs from pass-averaged ref and alt features (2C each: technical, biological).
pub fn vep_from_features(inf: &Inference, f_ref: &[f32], f_alt: &[f32], scale: Scale) -> VepScores {
    let c = inf.c;
    let (rt, rb) = f_ref.split_at(c);
    let (at, ab) = f_alt.split_at(c);
    let h_ref = inf.head(rt, rb, scale);
    let diff = |h: Vec<f32>| h.iter().zip(&h_ref).map(|(a, b)| a - b).collect::<Vec<f32>>();
    VepScores {
        combined: diff(inf.head(at, ab, scale)),
        bio: diff(inf.head(rt, ab, scale)),
        tech: diff(inf.head(at, rb, scale)),
        d_features: f_alt.iter().zip(f_ref).map(|(a, b)| a - b).collect(),
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VepSummary {
    pub records_alleles: u64,
    pub scored: u64,
    pub multiallelic_alleles: u64,
    pub ref_mismatch: u64,
    pub unknown_contig: u64,
    pub too_long: u64,
    pub unsupported_allele: u64,
}

fn header(inf: &Inference, reduce: ClassReduce) -> String {
    let mut s = String::from("chrom\tpos\tid\tref\talt\tallele");
    for kind in ["combined", "bio", "tech"] {
        if reduce == ClassReduce::PerClass {
            for cls in &inf.classes {
                s.push_str(&format!("\t{kind}.{cls}"));
            }
        } else {
            s.push_str(&format!("\t{kind}"));
        }
    }
    s.push_str("\tdz_bio_l2\tdz_tech_l2\n");
    s
}

fn row(v: &Variant, sc: &VepScores, reduce: ClassReduce, c: usize) -> String {
    let mut s = format!("{}\t{}\t{}\t{}\t{}\t{}", v.chrom, v.pos, v.id, v.reference, v.alt, v.allele);
    for x in [&sc.combined, &sc.bio, &sc.tech] {
        if reduce == ClassReduce::PerClass {
            for y in x.iter() {
                s.push_str(&format!("\t{y:.6e}"));
            }
        } else {
            s.push_str(&format!("\t{:.6e}", reduce.apply(x)));
        }
    }
    let l2 = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    s.push_str(&format!("\t{:.6e}\t{:.6e}\n", l2(&sc.d_features[c..]), l2(&sc.d_features[..c])));
    s
}

/// Stream `args.vcf` through the model; returns the counts (also written to OUT.summary.json).
pub fn run(args: &VepArgs) -> Result<VepSummary> {
    let mut inf = Inference::load(&args.checkpoint, args.dataset.as_deref())?;
    inf.batch = crate::downstream::check_arg("--batch", args.batch, 1, 65_536)?.max(2);
    let genome = Genome::Fasta(IndexedFasta::open(&args.genome)?);
    let opts = VepOptions {
        passes: Passes {
            shifts: crate::downstream::check_arg("--shifts", args.shifts, 1, 4096)?,
            both_strands: !args.forward_only,
        },
        scale: Scale::parse(&args.scale)?,
        reduce: ClassReduce::parse(&args.classes)?,
        max_indel: crate::downstream::check_arg("--max-indel", args.max_indel, 0, 100_000)?,
    };
    let format = OutFormat::parse(args.format.as_deref(), &args.out)?;
    let s = run_with_format(&mut inf, &genome, &args.vcf, &args.out, opts, format)?;
    eprintln!(
        "mfd: scored {} of {} alleles ({} from multi-allelic records); skipped: {} REF mismatches, {} unknown contigs, {} too long, {} unsupported alleles",
        s.scored, s.records_alleles, s.multiallelic_alleles, s.ref_mismatch, s.unknown_contig, s.too_long, s.unsupported_allele
    );
    Ok(s)
}

/// Settings of a VEP run.
#[derive(Debug, Clone, Copy)]
pub struct VepOptions {
    pub passes: Passes,
    pub scale: Scale,
    pub reduce: ClassReduce,
    pub max_indel: usize,
}

/// OUT.skipped.tsv and OUT.summary.json for the output OUT(.tsv|.vcf|.vcf.gz).
pub fn side_paths(out: &Path) -> (PathBuf, PathBuf) {
    let s = out.to_string_lossy();
    let stem = [".tsv", ".vcf.gz", ".vcf.bgz", ".vcf"].iter().find_map(|x| s.strip_suffix(x)).unwrap_or(&s);
    (PathBuf::from(format!("{stem}.skipped.tsv")), PathBuf::from(format!("{stem}.summary.json")))
}

/// The streaming loop, for a loaded model and genome; the format follows the name of `out` (`OutFormat::parse`).
pub fn run_with(inf: &mut Inference, genome: &Genome, vcf: &Path, out: &Path, o: VepOptions) -> Result<VepSummary> {
    run_with_format(inf, genome, vcf, out, o, OutFormat::parse(None, out)?)
}

/// `run_with` writing `format`.
pub fn run_with_format(
    inf: &mut Inference,
    genome: &Genome,
    vcf: &Path,
    out: &Path,
    o: VepOptions,
    format: OutFormat,
) -> Result<VepSummary> {
    let tmp = tmp_path(out);
    let res = run_inner(inf, genome, vcf, out, &tmp, o, format);
    if res.is_err() {
        // No partial output is left behind on any error.
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn run_inner(
    inf: &mut Inference,
    genome: &Genome,
    vcf: &Path,
    out: &Path,
    tmp: &Path,
    o: VepOptions,
    format: OutFormat,
) -> Result<VepSummary> {
    let mut reader = VcfReader::open(vcf)?;
    let (skipped_path, summary_path) = side_paths(out);
    let tmp = tmp.to_path_buf();
    let mut w = Sink::create(&tmp, format == OutFormat::Vcf { bgzip: true })?;
    let head = match format {
        OutFormat::Tsv => header(inf, o.reduce),
        OutFormat::Vcf { .. } => vcf_out::header(inf, o.reduce, o.scale, genome),
    };
    w.write_all(head.as_bytes()).at(&tmp)?;
    let mut skipped = String::from("chrom\tpos\tid\tref\talt\tallele\tline\treason\tgenome_ref\n");
    let mut sum = VepSummary::default();
    let bar = indicatif::ProgressBar::new(reader.file_len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "vep [{bar:30}] {bytes}/{total_bytes} {elapsed_precise} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    // Variants per model call: both alleles x all passes fill a few trunk batches.
    let per_call = (inf.batch * 4 / (2 * o.passes.count())).max(1);
    let mut pending: Vec<(Variant, WindowPair)> = Vec::new();
    let flush = |pending: &mut Vec<(Variant, WindowPair)>, w: &mut dyn Write, inf: &mut Inference| -> Result<()> {
        let pairs: Vec<WindowPair> = pending.iter().map(|(_, p)| p.clone()).collect();
        for ((v, _), sc) in pending.iter().zip(score_pairs(inf, &pairs, o.passes, o.scale)?) {
            let line = match format {
                OutFormat::Tsv => row(v, &sc, o.reduce, inf.c),
                OutFormat::Vcf { .. } => vcf_out::record(v, &sc, o.reduce, inf.c),
            };
            w.write_all(line.as_bytes()).at(&tmp)?;
        }
        pending.clear();
        Ok(())
    };
    while let Some(v) = reader.next_variant()? {
        sum.records_alleles += 1;
        if v.n_alleles > 1 {
            sum.multiallelic_alleles += 1;
        }
        match variant_windows(genome, &v, inf.t, o.passes, o.max_indel)? {
            Ok(pair) => {
                sum.scored += 1;
                pending.push((v, pair));
                if pending.len() >= per_call {
                    flush(&mut pending, &mut w, inf)?;
                    bar.set_position(reader.bytes_read());
                    bar.set_message(format!("{} scored", sum.scored));
                }
            }
            Err(skip) => {
                match skip {
                    Skip::RefMismatch { .. } => sum.ref_mismatch += 1,
                    Skip::UnknownContig => sum.unknown_contig += 1,
                    Skip::TooLong => sum.too_long += 1,
                    Skip::UnsupportedAllele => sum.unsupported_allele += 1,
                }
                let g = if let Skip::RefMismatch { genome } = &skip { genome.as_str() } else { "." };
                skipped.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{g}\n",
                    v.chrom,
                    v.pos,
                    v.id,
                    v.reference,
                    v.alt,
                    v.allele,
                    v.line,
                    skip.reason()
                ));
            }
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut w, inf)?;
    }
    bar.finish_and_clear();
    w.finish(&tmp)?;
    std::fs::rename(&tmp, out).at(out)?;
    write_atomic(&skipped_path, skipped.as_bytes())?;
    let json = serde_json::to_string_pretty(&sum).map_err(|e| MfdError::other(e.to_string()))?;
    write_atomic(&summary_path, json.as_bytes())?;
    Ok(sum)
}
