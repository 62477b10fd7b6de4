//! `mfd inspect DATASET [--verify]`: a human-readable summary of a prepared dataset (contigs, splits, classes,
//! label density, shards) and, with `--verify`, a SHA-256 check of every derived file and every source that is
//! still at its recorded path. Key decision: the summary is built as text by `summary` (so tests can read it) and
//! printed by `run`; a verification failure is an error (non-zero exit) naming each bad file.

use crate::data::manifest::{self, DataFile, Manifest};
use crate::error::{IoContext, MfdError, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Prepared dataset directory.
    pub dataset: PathBuf,
    /// Also verify every file's SHA-256 against the manifest.
    #[arg(long)]
    pub verify: bool,
}

/// Classes listed one per line before the rest is summarised.
const SHOW_CLASSES: usize = 20;

pub fn run(args: &InspectArgs) -> Result<()> {
    print!("{}", summary(&args.dataset)?);
    if args.verify {
        let m = Manifest::load(&args.dataset)?;
        let report = verify(&args.dataset, &m)?;
        for line in &report.notes {
            println!("  {line}");
        }
        if !report.failures.is_empty() {
            for f in &report.failures {
                eprintln!("error: {f}");
            }
            return Err(MfdError::other(format!(
                "{}: {} of {} files failed verification",
                args.dataset.display(),
                report.failures.len(),
                report.checked
            )));
        }
        println!("verify: all {} files match their SHA-256", report.checked);
    }
    Ok(())
}

/// One row of `classes.tsv`.
struct ClassRow {
    experiment: String,
    peaks: u64,
    /// Positive tiles in train, val, test.
    pos: [u64; 3],
    unused: u64,
}

fn read_classes(dir: &Path, m: &Manifest) -> Result<Vec<ClassRow>> {
    let path = dir.join("classes.tsv");
    let text = std::fs::read_to_string(&path).at(&path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let ln = Some(i as u64 + 1);
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 7 {
            return Err(MfdError::input(&path, ln, None, format!("{} fields, expected 7", f.len())));
        }
        let num = |k: usize, name: &str| {
            f[k].parse::<u64>().map_err(|_| {
                MfdError::input(&path, ln, Some(name), format!("not an integer: '{}'", crate::error::short(f[k])))
            })
        };
        rows.push(ClassRow {
            experiment: f[1].to_string(),
            peaks: num(2, "peaks")?,
            pos: [num(3, "positives_train")?, num(4, "positives_val")?, num(5, "positives_test")?],
            unused: num(6, "peaks_unused")?,
        });
    }
    if rows.len() != m.classes.len() {
        return Err(MfdError::input(
            &path,
            None,
            None,
            format!("{} classes, the manifest has {}; HINT: re-run `mfd prepare`", rows.len(), m.classes.len()),
        ));
    }
    Ok(rows)
}

/// The printed summary of the dataset in `dir`.
pub fn summary(dir: &Path) -> Result<String> {
    let m = Manifest::load(dir)?;
    let classes = read_classes(dir, &m)?;
    let mut s = String::new();
    let c = &m.counts;
    let st = &m.settings;
    let _ = writeln!(s, "dataset {} ({} v{}, tile {} bp)", dir.display(), m.format, m.version, m.tile_size);
    let _ = writeln!(
        s,
        "settings: min_overlap {}, min_positive {}, test contigs [{}], val rule {} ({}), shard_tiles {}",
        st.min_overlap,
        st.min_positive,
        st.test_contigs.join(", "),
        st.val_rule,
        st.val_fraction,
        st.shard_tiles
    );
    let genome: u64 = m.contigs.iter().map(|c| c.length).sum();
    let _ = writeln!(s, "contigs: {} ({} bp)", m.contigs.len(), genome);
    let _ = writeln!(s, "  {:<16} {:>12} {:>13} {:>12} {:>10}", "name", "length", "offset", "N", "IUPAC");
    for ct in &m.contigs {
        let _ = writeln!(
            s,
            "  {:<16} {:>12} {:>13} {:>12} {:>10}",
            ct.name, ct.length, ct.offset, ct.n_bases, ct.iupac_bases
        );
    }
    let pct = |x: u64| 100.0 * x as f64 / c.tiles.max(1) as f64;
    let _ = writeln!(
        s,
        "tiles: {} (train {} = {:.1}%, val {} = {:.1}%, test {} = {:.1}%)",
        c.tiles,
        c.train,
        pct(c.train),
        c.val,
        pct(c.val),
        c.test,
        pct(c.test)
    );
    let _ = writeln!(
        s,
        "peaks: {} read, {} made no kept tile positive",
        c.peaks,
        classes.iter().map(|r| r.unused).sum::<u64>()
    );
    let density = c.positives as f64 / (c.tiles as f64 * m.num_classes as f64).max(1.0);
    let _ =
        writeln!(s, "labels: {} positives, density {:.6} ({} bytes per row)", c.positives, density, m.label_row_bytes);
    let _ = writeln!(s, "classes: {}", m.num_classes);
    let _ = writeln!(
        s,
        "  {:>6} {:<24} {:>10} {:>10} {:>10} {:>10}",
        "class", "experiment", "peaks", "train", "val", "test"
    );
    for (i, r) in classes.iter().enumerate().take(SHOW_CLASSES) {
        let _ = writeln!(
            s,
            "  {:>6} {:<24} {:>10} {:>10} {:>10} {:>10}",
            i, r.experiment, r.peaks, r.pos[0], r.pos[1], r.pos[2]
        );
    }
    if classes.len() > SHOW_CLASSES {
        let _ = writeln!(s, "  ... {} more (see classes.tsv)", classes.len() - SHOW_CLASSES);
    }
    let mut per_class: Vec<u64> = classes.iter().map(|r| r.pos.iter().sum()).collect();
    per_class.sort_unstable();
    if let (Some(lo), Some(hi)) = (per_class.first(), per_class.last()) {
        let _ = writeln!(
            s,
            "  positive tiles per class: min {lo}, median {}, max {hi}; {} class(es) with none",
            per_class[per_class.len() / 2],
            per_class.iter().filter(|&&x| x == 0).count()
        );
    }
    let _ = writeln!(s, "shards: {}", m.shards.len());
    for sh in &m.shards {
        let _ = writeln!(
            s,
            "  {:>5} first {:>12} tiles {:>10}  {} ({} B)  {} ({} B)",
            sh.index, sh.first_tile, sh.num_tiles, sh.tiles.name, sh.tiles.bytes, sh.labels.name, sh.labels.bytes
        );
    }
    Ok(s)
}

/// Outcome of `verify`.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files whose checksum was computed.
    pub checked: usize,
    /// One message per mismatching or unreadable file.
    pub failures: Vec<String>,
    /// Sources no longer at their recorded path (not a failure: inputs may move).
    pub notes: Vec<String>,
}

/// Check every derived file (size and SHA-256) and every source that still exists.
pub fn verify(dir: &Path, m: &Manifest) -> Result<VerifyReport> {
    let mut r = VerifyReport::default();
    let derived: Vec<&DataFile> = m.files.iter().chain(m.shards.iter().flat_map(|s| [&s.tiles, &s.labels])).collect();
    for f in derived {
        r.checked += 1;
        if let Err(e) = manifest::verify_file(dir, f) {
            r.failures.push(e.to_string());
        }
    }
    for src in &m.sources {
        let path = Path::new(&src.path);
        if !path.exists() {
            r.notes.push(format!("source {} ({}) not found; not checked", src.path, src.role));
            continue;
        }
        r.checked += 1;
        match manifest::sha256_file(path) {
            Ok((bytes, sha)) if bytes == src.bytes && sha == src.sha256 => {}
            Ok(_) => r.failures.push(format!(
                "{} [field sha256]: source ({}) changed since prepare; HINT: re-run `mfd prepare`",
                src.path, src.role
            )),
            Err(e) => r.failures.push(e.to_string()),
        }
    }
    Ok(r)
}
