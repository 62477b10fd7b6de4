//! `mfd prepare`: FASTA + peaks + metadata -> a memory-mapped, checksummed dataset directory (format in
//! docs/FORMATS.md and src/data/manifest.rs).
//!
//! Key decisions: everything streams. (1) The small tables are checked first. (2) The FASTA is read once,
//! contig by contig, straight into `genome.bin`, hashing the source bytes on the way and noting which tiles hold a
//! real base. (3) All peaks are read (files in parallel) into the peak store, which spills them to per-(contig,
//! 8 Mb bucket) files in the temp directory past `spill_peaks`, so memory does not grow with the number of peaks.
//! (4) Each contig's 128-bp grid is labelled in chunks from its buckets, read back and sorted one at a time; kept
//! label rows stream into `labels-NNNNN.bin` shards while the 16-byte tile records stay in memory, because the
//! validation rule needs the final train count. (5) Splits are
//! assigned, tile shards written, checksums taken, `manifest.toml` written last. All of it happens in
//! `DATASET.partial-<pid>`, renamed to `DATASET` only at the end and removed on any error.

use crate::data::binfile::{write_atomic, BinWriter, DType};
use crate::data::fasta::{self, FaiEntry, FastaKind, FastaStream};
use crate::data::manifest::{self, Contig, Counts, DataFile, Manifest, PrepareSettings, Shard, SourceFile};
use crate::data::metadata;
use crate::data::peak_store::{self, PeakStore};
use crate::data::peaks::{self, ContigNames, LabelRule, Peak, PeakSource, UnknownContigs, TILE};
use crate::data::tiles::{self, TileSink};
use crate::error::{IoContext, MfdError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct PrepareArgs {
    /// Reference genome FASTA (plain, or bgzip with .fai and .gzi); `--fasta` is the old name.
    #[arg(long = "genome", visible_alias = "fasta", value_name = "GENOME")]
    pub fasta: PathBuf,
    /// Two-column TSV: experiment id, peak file path (relative paths are relative to this file).
    #[arg(long)]
    pub peaks: PathBuf,
    /// Metadata TSV with a header; the first column is the experiment id.
    #[arg(long)]
    pub metadata: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Optional prepare.toml overriding the defaults (min_overlap, min_positive, test_contigs, shard_tiles...).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `mfd prepare`'s command line: the inputs and the flags only the command line sets.
#[derive(Debug, Clone, clap::Args)]
pub struct PrepareCli {
    #[command(flatten)]
    pub args: PrepareArgs,
    /// Skip peaks on contigs absent from the FASTA (chrEBV, alt contigs...), counted and reported per contig,
    /// instead of failing (also `skip_unknown_contigs = true` in prepare.toml).
    #[arg(long)]
    pub skip_unknown_contigs: bool,
}

/// `prepare.toml`: every key optional, unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepareConfig {
    /// bp of overlap that make a tile positive for an experiment (1..=128).
    pub min_overlap: u32,
    /// Positive experiments needed to keep a tile; 0 keeps every tile that is not all N.
    pub min_positive: u32,
    /// Test contigs, matched with or without "chr".
    pub test_contigs: Vec<String>,
    /// Validation fraction of the reference-blocks rule (mfd-spec.md 6.3).
    pub val_fraction: f64,
    /// Tiles per shard file.
    pub shard_tiles: u64,
    /// Peaks buffered in memory before they spill to the temp directory (12 bytes each); output is the same
    /// for any value.
    pub spill_peaks: u64,
    /// Skip (and count per contig) peaks on contigs absent from the FASTA instead of failing.
    pub skip_unknown_contigs: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            min_overlap: 64,
            min_positive: 1,
            test_contigs: vec!["chr9".into(), "chr10".into()],
            val_fraction: 0.05,
            shard_tiles: 1 << 20,
            spill_peaks: peak_store::DEFAULT_SPILL_PEAKS,
            skip_unknown_contigs: false,
        }
    }
}

impl PrepareConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::data::read_text_input(path)?;
        let cfg: PrepareConfig = crate::toml_load::parse(&text, path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=TILE as u32).contains(&self.min_overlap) {
            return Err(MfdError::config("min_overlap", format!("{} outside 1..=128", self.min_overlap)));
        }
        if !(self.val_fraction.is_finite() && (0.0..1.0).contains(&self.val_fraction)) {
            return Err(MfdError::config("val_fraction", format!("{} outside [0, 1)", self.val_fraction)));
        }
        if self.shard_tiles == 0 {
            return Err(MfdError::config("shard_tiles", "must be at least 1"));
        }
        if self.spill_peaks == 0 {
            return Err(MfdError::config("spill_peaks", "must be at least 1"));
        }
        Ok(())
    }
}

/// What a finished prepare did (also printed by `run`).
#[derive(Debug, Clone)]
pub struct PrepareSummary {
    pub out: PathBuf,
    pub contigs: usize,
    pub genome_bp: u64,
    pub classes: usize,
    pub grid_tiles: u64,
    pub counts: Counts,
    /// Peaks that made no kept tile positive.
    pub peaks_unused: u64,
    pub shards: usize,
    /// Peaks skipped per contig absent from the FASTA (with `skip_unknown_contigs`).
    pub unknown_contigs: UnknownContigs,
    /// Warnings also printed to stderr.
    pub warnings: Vec<String>,
    pub seconds: f64,
    /// Wall seconds per phase: (name, seconds).
    pub phases: Vec<(&'static str, f64)>,
}

/// `mfd prepare` from its command line.
pub fn run_cli(cli: &PrepareCli) -> Result<()> {
    report(&prepare_with(&cli.args, cli.skip_unknown_contigs)?);
    Ok(())
}

pub fn run(args: &PrepareArgs) -> Result<()> {
    report(&prepare(args)?);
    Ok(())
}

fn report(s: &PrepareSummary) {
    let c = &s.counts;
    let density = c.positives as f64 / (c.tiles as f64 * s.classes as f64);
    eprintln!("mfd prepare: wrote {}", s.out.display());
    eprintln!("  genome   {} contigs, {} bp", s.contigs, s.genome_bp);
    eprintln!(
        "  classes  {} experiments, {} peaks read, {} made no kept tile positive",
        s.classes, c.peaks, s.peaks_unused
    );
    eprintln!(
        "  tiles    {} kept of {} (train {}, val {}, test {}) in {} shard(s)",
        c.tiles, s.grid_tiles, c.train, c.val, c.test, s.shards
    );
    eprintln!("  labels   {} positives, density {density:.5}", c.positives);
    if !s.unknown_contigs.is_empty() {
        let n: u64 = s.unknown_contigs.values().sum();
        eprintln!("  skipped  {n} peaks on {} contig(s) not in the FASTA:", s.unknown_contigs.len());
        for (name, k) in &s.unknown_contigs {
            eprintln!("           {name}\t{k}");
        }
    }
    let phases: Vec<String> = s.phases.iter().map(|(n, t)| format!("{n} {t:.1}")).collect();
    eprintln!(
        "  time     {:.1} s, {:.1} MB of genome per second ({} s)",
        s.seconds,
        s.genome_bp as f64 / 1e6 / s.seconds,
        phases.join(", ")
    );
    if !s.warnings.is_empty() {
        eprintln!("  {} warning(s), see above", s.warnings.len());
    }
}

/// Build the dataset directory `args.out`; on error nothing named `args.out` is created.
pub fn prepare(args: &PrepareArgs) -> Result<PrepareSummary> {
    prepare_with(args, false)
}

/// `prepare`, skipping peaks on contigs absent from the FASTA when `skip_unknown_contigs` (or prepare.toml) says so.
pub fn prepare_with(args: &PrepareArgs, skip_unknown_contigs: bool) -> Result<PrepareSummary> {
    let t0 = Instant::now();
    let mut phases = Vec::new();
    let mut lap = {
        let mut last = Instant::now();
        move |name: &'static str, phases: &mut Vec<(&'static str, f64)>| {
            phases.push((name, last.elapsed().as_secs_f64()));
            last = Instant::now();
        }
    };
    let mut cfg = match &args.config {
        Some(p) => PrepareConfig::load(p)?,
        None => PrepareConfig::default(),
    };
    cfg.skip_unknown_contigs |= skip_unknown_contigs;
    let mut warnings = Vec::new();
    let mut warn = |w: String| {
        eprintln!("warning: {w}");
        warnings.push(w);
    };
    check_out_dir(&args.out)?;

    // 1. Small tables.
    let table = peaks::read_peak_table(&args.peaks)?;
    let ids: Vec<(String, u64)> = table.iter().map(|s| (s.experiment.clone(), s.line)).collect();
    let meta = metadata::read_metadata(&args.metadata, &ids, &args.peaks)?;
    if meta.dropped > 0 {
        warn(format!(
            "{}: {} row(s) for experiments not in {} dropped",
            args.metadata.display(),
            meta.dropped,
            args.peaks.display()
        ));
    }
    let kind = fasta::detect_kind(&args.fasta)?;
    let fai_path = fasta::sibling(&args.fasta, ".fai");
    let fai = if fai_path.exists() { Some(fasta::read_fai(&fai_path)?) } else { None };
    if kind == FastaKind::Bgzip {
        for (p, what) in [(&fai_path, ".fai"), (&fasta::sibling(&args.fasta, ".gzi"), ".gzi")] {
            if !p.exists() {
                return Err(MfdError::input(
                    &args.fasta,
                    None,
                    None,
                    format!("bgzip FASTA needs {} beside it; HINT: `samtools faidx {}`", what, args.fasta.display()),
                ));
            }
        }
    }

    let tmp = partial_dir(&args.out)?;
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    let o = table.len();
    let row_bytes = manifest::label_row_bytes(o);

    lap("tables", &mut phases);

    // 2. Genome.
    let genome = stream_genome(args, kind, fai.as_deref(), &fai_path, &tmp, &mut warn)?;
    lap("genome", &mut phases);
    let names = ContigNames::new(&genome.contigs.iter().map(|c| (c.name.clone(), c.length)).collect::<Vec<_>>());

    // 3. Peaks, into the store (spilling under tmp/peak-spill past cfg.spill_peaks).
    let lengths: Vec<u64> = genome.contigs.iter().map(|c| c.length).collect();
    let mut store = PeakStore::new(tmp.join("peak-spill"), &lengths, peak_store::BUCKET_BP, cfg.spill_peaks);
    let (peak_counts, peak_sources, unknown_contigs) =
        read_all_peaks(&table, &names, &mut store, cfg.skip_unknown_contigs, &mut warn)?;
    lap("peaks", &mut phases);

    // 4. Tiles and labels.
    let rule = LabelRule { min_overlap: cfg.min_overlap, min_positive: cfg.min_positive };
    let mut sink = TileSink::new(&tmp, o, cfg.shard_tiles);
    let mut unused = vec![0u64; o];
    let grid_tiles: u64 = genome.contigs.iter().map(|c| c.length / TILE).sum();
    let pb = bar(grid_tiles, "labelling tiles");
    for (ci, c) in genome.contigs.iter().enumerate() {
        let split = if tiles::is_test_contig(&c.name, &cfg.test_contigs) {
            manifest::SPLIT_TEST
        } else {
            manifest::SPLIT_TRAIN
        };
        let grid = c.length / TILE;
        peaks::label_contig(
            &mut store.contig_batches(ci),
            grid,
            &genome.has_base[ci],
            rule,
            row_bytes,
            &mut unused,
            &mut |t, pos, row| sink.push([ci as u32, (t * TILE) as u32, split, pos], row),
        )?;
        pb.inc(grid);
    }
    pb.finish_and_clear();
    store.close()?;
    let shard_ranges = sink.finish_labels()?;
    lap("labels", &mut phases);
    let TileSink { tiles: mut records, pos_nontest, pos_test, .. } = sink;
    if records.is_empty() {
        return Err(MfdError::other(format!(
            "no tile was kept (min_positive = {}, min_overlap = {}): do the peaks overlap the FASTA's contigs?",
            cfg.min_positive, cfg.min_overlap
        )));
    }

    // 5. Splits, tile shards, per-class counts per split.
    tiles::assign_val(&mut records, cfg.val_fraction);
    let pos_val = tiles::val_positives(&tmp, &records, &shard_ranges, o)?;
    tiles::write_tile_shards(&tmp, &records, &shard_ranges)?;
    let mut classes_tsv =
        String::from("class\texperiment\tpeaks\tpositives_train\tpositives_val\tpositives_test\tpeaks_unused\n");
    for (i, src) in table.iter().enumerate() {
        let train = pos_nontest[i] - pos_val[i];
        classes_tsv.push_str(&format!(
            "{i}\t{}\t{}\t{train}\t{}\t{}\t{}\n",
            src.experiment, peak_counts[i], pos_val[i], pos_test[i], unused[i]
        ));
    }
    let no_pos = (0..o).filter(|&i| pos_nontest[i] + pos_test[i] == 0).count();
    if no_pos > 0 {
        warn(format!("{no_pos} experiment(s) have no positive kept tile (see classes.tsv)"));
    }
    write_atomic(tmp.join("classes.tsv"), classes_tsv.as_bytes())?;
    write_atomic(tmp.join("metadata.tsv"), meta.to_tsv().as_bytes())?;

    lap("splits", &mut phases);

    // 6. Checksums and the manifest, last.
    let positives = pos_nontest.iter().sum::<u64>() + pos_test.iter().sum::<u64>();
    let peaks_read = peak_counts.iter().sum();
    let peaks_unused = unused.iter().sum();
    let peak_totals = (peaks_read, peaks_unused);
    let manifest = build_manifest(
        args,
        &cfg,
        &tmp,
        &table,
        genome,
        peak_sources,
        &records,
        &shard_ranges,
        positives,
        peak_totals,
    )?;
    manifest.save(&tmp)?;
    let counts = manifest.counts.clone();
    lap("checksums", &mut phases);
    std::fs::rename(&tmp, &args.out).at(&args.out)?;
    guard.0 = None; // renamed into place: nothing left to remove
    Ok(PrepareSummary {
        out: args.out.clone(),
        contigs: manifest.contigs.len(),
        genome_bp: manifest.contigs.iter().map(|c| c.length).sum(),
        classes: o,
        grid_tiles,
        counts,
        peaks_unused,
        shards: shard_ranges.len(),
        unknown_contigs,
        warnings,
        seconds: t0.elapsed().as_secs_f64(),
        phases,
    })
}

/// Refuse an existing non-empty output directory (an empty one is replaced).
fn check_out_dir(out: &Path) -> Result<()> {
    crate::data::check_out_parent(out)?;
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out).at(out)?.next().is_none();
        if !empty {
            return Err(MfdError::input(
                out,
                None,
                None,
                "already exists and is not empty; HINT: choose another --out or remove it",
            ));
        }
    }
    Ok(())
}

/// `DATASET.partial-<pid>` beside `DATASET`, created fresh.
fn partial_dir(out: &Path) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| MfdError::input(out, None, None, "--out must name a directory"))?;
    let tmp = out.with_file_name(format!("{}.partial-{}", name.to_string_lossy(), std::process::id()));
    if let Some(parent) = tmp.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir(&tmp).at(&tmp)?;
    Ok(tmp)
}

/// Removes the partial directory on any early return (its path is cleared after the final rename).
struct RemoveOnDrop(Option<PathBuf>);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn bar(len: u64, msg: &'static str) -> ProgressBar {
    let pb = ProgressBar::new(len).with_message(msg);
    if let Ok(style) = ProgressStyle::with_template("{msg:>16} [{bar:40}] {percent:>3}% {elapsed} eta {eta}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// A reader that hashes (SHA-256) and counts the bytes passing through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }
    /// Drain what is left (so the hash covers the whole file) and return (bytes, hex SHA-256).
    fn finish(mut self, path: &Path) -> Result<(u64, String)> {
        std::io::copy(&mut self, &mut std::io::sink()).at(path)?;
        Ok((self.bytes, format!("{:x}", self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn source(role: &str, path: &Path, (bytes, sha256): (u64, String)) -> SourceFile {
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    SourceFile { role: role.to_string(), path: shown.to_string_lossy().into_owned(), bytes, sha256 }
}

/// What the genome pass produced.
struct Genome {
    contigs: Vec<Contig>,
    /// Per contig, a bitset over its tiles: bit t set when tile t holds at least one A/C/G/T.
    has_base: Vec<Vec<u64>>,
    source: SourceFile,
}

/// One step of a `FastaStream` (plain or bgzip), as a closure.
type NextContig<'a> = dyn FnMut(&mut fasta::CodeSink) -> Result<Option<fasta::ContigRecord>> + 'a;

/// Stream the FASTA into `tmp/genome.bin`; check the `.fai` contig by contig, or write one if there is none.
fn stream_genome(
    args: &PrepareArgs,
    kind: FastaKind,
    fai: Option<&[(u64, FaiEntry)]>,
    fai_path: &Path,
    tmp: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<Genome> {
    let path = &args.fasta;
    let file = std::fs::File::open(path).at(path)?;
    let total = match fai {
        Some(f) => f.iter().map(|(_, e)| e.length).sum(),
        None => file.metadata().at(path)?.len(),
    };
    let pb = bar(total, "reading genome");
    let mut writer = BinWriter::create(tmp.join("genome.bin"), "genome", DType::U8)?;
    let mut contigs: Vec<Contig> = Vec::new();
    let mut has_base = Vec::new();
    let mut built = Vec::new();
    let mut irregular = None;
    let mut on_contig = |rec: fasta::ContigRecord, bits: Vec<u64>, offset: u64| -> Result<()> {
        if rec.length > u32::MAX as u64 {
            return Err(MfdError::input(
                path,
                Some(rec.header_line),
                Some("sequence"),
                "contigs longer than 4,294,967,295 bp are not supported",
            ));
        }
        if let Some(fai) = fai {
            let i = contigs.len();
            let Some((line, want)) = fai.get(i) else {
                let line = fai.last().map_or(1, |l| l.0 + 1);
                return Err(MfdError::input(
                    fai_path,
                    Some(line),
                    Some("name"),
                    format!("index has {} entries but the FASTA has more (contig '{}')", fai.len(), rec.name),
                ));
            };
            fasta::check_fai_entry(fai_path, *line, want, &rec.fai)?;
        }
        if !rec.regular && irregular.is_none() {
            irregular = Some(rec.name.clone());
        }
        contigs.push(Contig {
            name: rec.name.clone(),
            length: rec.length,
            offset,
            iupac_bases: rec.iupac_bases,
            n_bases: rec.n_bases,
        });
        has_base.push(bits);
        built.push(rec.fai);
        Ok(())
    };
    let mut offset = 0u64;
    let mut pump = |stream: &mut NextContig| -> Result<()> {
        loop {
            let mut bits: Vec<u64> = Vec::new();
            let mut pos = 0u64;
            let rec = stream(&mut |codes: &[u8]| {
                mark_tiles_with_bases(&mut bits, pos, codes);
                pos += codes.len() as u64;
                pb.inc(codes.len() as u64);
                writer.write(codes)
            })?;
            let Some(rec) = rec else { return Ok(()) };
            on_contig(rec, bits, offset)?;
            offset += pos;
        }
    };
    let hashed = HashingReader::new(file);
    let digest = match kind {
        FastaKind::Plain => {
            let mut s = FastaStream::new(BufReader::with_capacity(1 << 20, hashed), path);
            pump(&mut |sink| s.next_contig(sink))?;
            s.into_inner().into_inner().finish(path)?
        }
        FastaKind::Bgzip => {
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
            let reader = noodles_bgzf::io::MultithreadedReader::with_worker_count(
                std::num::NonZero::new(workers).unwrap_or(std::num::NonZero::<usize>::MIN),
                hashed,
            );
            let mut s = FastaStream::new(reader, path);
            pump(&mut |sink| s.next_contig(sink))?;
            s.into_inner().finish().at(path)?.finish(path)?
        }
    };
    pb.finish_and_clear();
    writer.finish(&[offset])?;
    if let Some(fai) = fai {
        if let Some((line, e)) = fai.get(contigs.len()) {
            return Err(MfdError::input(
                fai_path,
                Some(*line),
                Some("name"),
                format!("contig '{}' is not in the FASTA", e.name),
            ));
        }
    } else if let Some(name) = irregular {
        warn(format!("not writing {}: contig '{name}' has lines of unequal length", fai_path.display()));
    } else if let Err(e) = write_atomic(fai_path, fasta::fai_text(&built).as_bytes()) {
        warn(format!("could not write the FASTA index ({e}); continuing without it"));
    }
    Ok(Genome { contigs, has_base, source: source("fasta", path, digest) })
}

/// Set bit t of `bits` for every 128-bp tile t that holds a code < 4 in `codes` (which start at contig `pos`).
fn mark_tiles_with_bases(bits: &mut Vec<u64>, pos: u64, codes: &[u8]) {
    let mut i = 0usize;
    while i < codes.len() {
        let p = pos + i as u64;
        let end = codes.len().min(i + (TILE - p % TILE) as usize);
        let tile = p / TILE;
        if bits.len() <= (tile / 64) as usize {
            bits.resize((tile / 64) as usize + 1, 0);
        }
        if codes[i..end].iter().any(|&c| c < fasta::CODE_N) {
            bits[(tile / 64) as usize] |= 1 << (tile % 64);
        }
        i = end;
    }
}

/// One parsed peak file: its (contig, peak) records, peaks skipped per unknown contig and (bytes, SHA-256).
type FileRead = Result<((Vec<(u32, Peak)>, UnknownContigs), (u64, String))>;

/// Read every peak file (in parallel batches of files, errors reported in class order) into `store`. Returns
/// peaks read per class, the source entries and the peaks skipped per unknown contig (with `skip_unknown`).
fn read_all_peaks(
    table: &[PeakSource],
    names: &ContigNames,
    store: &mut PeakStore,
    skip_unknown: bool,
    warn: &mut dyn FnMut(String),
) -> Result<(Vec<u64>, Vec<SourceFile>, UnknownContigs)> {
    let mut unknown = UnknownContigs::new();
    let mut counts = vec![0u64; table.len()];
    let mut sources = Vec::with_capacity(table.len());
    let pb = bar(table.len() as u64, "reading peaks");
    const BATCH: usize = 32;
    for (b, batch) in table.chunks(BATCH).enumerate() {
        let results: Vec<FileRead> = batch
            .par_iter()
            .enumerate()
            .map(|(j, src)| {
                let file = std::fs::File::open(&src.path).at(&src.path)?;
                let mut hashed = HashingReader::new(file);
                let class = (b * BATCH + j) as u32;
                let read = peaks::read_peak_file_skipping(&mut hashed, &src.path, class, names, skip_unknown)?;
                Ok((read, hashed.finish(&src.path)?))
            })
            .collect();
        for (j, (src, r)) in batch.iter().zip(results).enumerate() {
            let ((peaks, skipped), digest) = r?;
            for (name, k) in skipped {
                *unknown.entry(name).or_default() += k;
            }
            let class = b * BATCH + j;
            if peaks.is_empty() {
                warn(format!("{}: no peaks (experiment '{}', class {class})", src.path.display(), src.experiment));
            }
            counts[class] = peaks.len() as u64;
            for (c, p) in peaks {
                store.push(c, p)?;
            }
            sources.push(source(&format!("peaks:{}", src.experiment), &src.path, digest));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if !unknown.is_empty() {
        let mut list: Vec<String> = unknown.iter().take(10).map(|(c, k)| format!("{c} ({k})")).collect();
        if unknown.len() > 10 {
            list.push(format!("and {} more contigs", unknown.len() - 10));
        }
        warn(format!(
            "skipped {} peak(s) on {} contig(s) not in the FASTA (--skip-unknown-contigs): {}",
            unknown.values().sum::<u64>(),
            unknown.len(),
            list.join(", ")
        ));
    }
    Ok((counts, sources, unknown))
}

#[allow(clippy::too_many_arguments)]
fn build_manifest(
    args: &PrepareArgs,
    cfg: &PrepareConfig,
    dir: &Path,
    table: &[PeakSource],
    genome: Genome,
    peak_sources: Vec<SourceFile>,
    tiles: &[[u32; 4]],
    shards: &[(u64, u64)],
    positives: u64,
    (peaks_read, peaks_unused): (u64, u64),
) -> Result<Manifest> {
    let hash = |name: String| -> Result<DataFile> {
        let (bytes, sha256) = manifest::sha256_file(&dir.join(&name))?;
        Ok(DataFile { name, bytes, sha256 })
    };
    let mut names = vec!["genome.bin".to_string(), "metadata.tsv".to_string(), "classes.tsv".to_string()];
    for s in 0..shards.len() {
        names.push(tiles::tiles_name(s));
        names.push(tiles::labels_name(s));
    }
    let pb = bar(names.len() as u64, "checksums");
    let mut hashed: Vec<DataFile> =
        names.into_par_iter().map(|n| hash(n).inspect(|_| pb.inc(1))).collect::<Result<_>>()?;
    pb.finish_and_clear();
    let rest = hashed.split_off(3);
    let shards = shards
        .iter()
        .zip(rest.chunks_exact(2))
        .enumerate()
        .map(|(s, (&(first, n), pair))| Shard {
            index: s as u32,
            first_tile: first,
            num_tiles: n,
            tiles: pair[0].clone(),
            labels: pair[1].clone(),
        })
        .collect();
    let mut sources = vec![
        genome.source,
        source("peaks_table", &args.peaks, manifest::sha256_file(&args.peaks)?),
        source("metadata", &args.metadata, manifest::sha256_file(&args.metadata)?),
    ];
    sources.extend(peak_sources);
    let count = |s: u32| tiles.iter().filter(|t| t[2] == s).count() as u64;
    let o = table.len();
    Ok(Manifest {
        format: manifest::FORMAT.to_string(),
        version: manifest::FORMAT_VERSION,
        tile_size: TILE as u32,
        num_classes: o as u32,
        label_row_bytes: manifest::label_row_bytes(o) as u32,
        settings: PrepareSettings {
            min_overlap: cfg.min_overlap,
            min_positive: cfg.min_positive,
            test_contigs: cfg.test_contigs.clone(),
            val_rule: "reference-blocks".to_string(),
            val_fraction: cfg.val_fraction,
            shard_tiles: cfg.shard_tiles,
        },
        sources,
        contigs: genome.contigs,
        classes: table.iter().map(|s| s.experiment.clone()).collect(),
        counts: Counts {
            tiles: tiles.len() as u64,
            train: count(manifest::SPLIT_TRAIN),
            val: count(manifest::SPLIT_VAL),
            test: count(manifest::SPLIT_TEST),
            positives,
            peaks: peaks_read,
            peaks_unused,
        },
        files: hashed,
        shards,
    })
}
