//! Real sequence for the `chr20` preset: GRCh37 chromosome 20 as Debian's `vt-examples` ships it
//! (`/usr/share/doc/vt/examples/ref/20.fa.gz`, bgzip), cut into the preset's windows.
//!
//! Key decisions: the whole chromosome is read once into memory (63 Mb; gzip, bgzip or plain FASTA, detected by
//! the gzip magic), and the windows are a pure function of the sequence: window i starts at
//! `first + i * stride` and moves right in steps of `step` until it holds at most `max_n` non-ACGT bases, so the
//! N-rich ends and the centromere are skipped. The input path is, in order: the `--fasta` flag, the environment
//! variable `MFD_CHR20_FASTA`, the Debian path.

use crate::error::{IoContext, MfdError, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Where `apt-get install vt-examples` puts GRCh37 chromosome 20.
pub const DEBIAN_CHR20: &str = "/usr/share/doc/vt/examples/ref/20.fa.gz";
pub const FASTA_ENV: &str = "MFD_CHR20_FASTA";

/// How the preset cuts windows out of the chromosome.
#[derive(Debug, Clone)]
pub struct WindowRule {
    /// Every contig of the preset (name, length) in order: windows are cut for all of them, so a run on a
    /// subset (`--contigs`) gets the same sequence for each contig.
    pub all: Vec<(String, u64)>,
    /// Nominal start of window 0 and the distance between nominal starts (bp).
    pub first: u64,
    pub stride: u64,
    /// A window with more non-ACGT bases than this moves right by `step` (bp).
    pub max_n: u64,
    pub step: u64,
}

/// One window: the preset contig name and its source coordinates [start, end) on the chromosome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub contig: String,
    pub source_start: u64,
    pub source_end: u64,
}

/// The loaded windows, in preset contig order; `seqs[i]` is uppercase ASCII.
pub struct RealGenome {
    pub path: PathBuf,
    pub chrom: String,
    pub windows: Vec<Window>,
    pub seqs: Vec<Vec<u8>>,
}

/// The FASTA to read: `flag`, else `$MFD_CHR20_FASTA`, else the Debian path.
pub fn fasta_path(flag: Option<&Path>) -> PathBuf {
    match (flag, std::env::var_os(FASTA_ENV)) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEBIAN_CHR20),
    }
}

/// Read the first record of a FASTA (gzip/bgzip or plain): (name, uppercase sequence).
pub fn read_first_record(path: &Path) -> Result<(String, Vec<u8>)> {
    if !path.exists() {
        return Err(MfdError::input(
            path,
            None,
            None,
            format!(
                "no such file: the chr20 preset reads GRCh37 chromosome 20; HINT: `apt-get install vt-examples` \
                 (Debian/Ubuntu) provides {DEBIAN_CHR20}, or pass --fasta / set {FASTA_ENV} to another copy"
            ),
        ));
    }
    let mut file = std::fs::File::open(path).at(path)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).at(path)?;
    let file = std::fs::File::open(path).at(path)?;
    let reader: Box<dyn BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
        // bgzip is a series of gzip members: MultiGzDecoder reads them all.
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let mut name: Option<String> = None;
    let mut seq = Vec::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| MfdError::input(path, Some(line_no), None, format!("read failed: {e}")))?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if let Some(h) = line.strip_prefix(b">") {
            if name.is_some() {
                break; // only the first record
            }
            let h = String::from_utf8_lossy(h);
            let first = h.split_whitespace().next().unwrap_or("").to_string();
            if first.is_empty() {
                return Err(MfdError::input(path, Some(line_no), Some("header"), "empty sequence name"));
            }
            name = Some(first);
            continue;
        }
        if name.is_none() {
            if line.is_empty() {
                continue;
            }
            return Err(MfdError::input(path, Some(line_no), Some("header"), "sequence before the first '>' header"));
        }
        if let Some(&b) = line.iter().find(|b| !b.is_ascii_alphabetic()) {
            return Err(MfdError::input(
                path,
                Some(line_no),
                Some("sequence"),
                format!("byte 0x{b:02x} is not a base letter"),
            ));
        }
        seq.extend(line.iter().map(u8::to_ascii_uppercase));
    }
    let name = name.ok_or_else(|| MfdError::input(path, None, Some("header"), "no FASTA record"))?;
    Ok((name, seq))
}

fn non_acgt(s: &[u8]) -> u64 {
    s.iter().filter(|b| !matches!(b, b'A' | b'C' | b'G' | b'T')).count() as u64
}

/// Cut the windows of `contigs` (name, length) out of `seq` by `rule`.
pub fn cut_windows(path: &Path, seq: &[u8], contigs: &[(String, u64)], rule: &WindowRule) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    let mut min_start = 0u64;
    for (i, (name, len)) in contigs.iter().enumerate() {
        let mut start = (rule.first + i as u64 * rule.stride).max(min_start);
        loop {
            let end = start + len;
            if end > seq.len() as u64 {
                return Err(MfdError::input(
                    path,
                    None,
                    Some("sequence"),
                    format!(
                        "{} bp: no window of {len} bp with at most {} N for contig {name} (is this GRCh37 chr20?)",
                        seq.len(),
                        rule.max_n
                    ),
                ));
            }
            if non_acgt(&seq[start as usize..end as usize]) <= rule.max_n {
                out.push(Window { contig: name.clone(), source_start: start, source_end: end });
                min_start = end;
                break;
            }
            start += rule.step;
        }
    }
    Ok(out)
}

/// Load the windows of the preset's `contigs` (a subset of `rule.all`) from `path`.
pub fn load(path: &Path, contigs: &[(String, u64)], rule: &WindowRule) -> Result<RealGenome> {
    let (chrom, seq) = read_first_record(path)?;
    let mut windows = cut_windows(path, &seq, &rule.all, rule)?;
    windows.retain(|w| contigs.iter().any(|(c, _)| *c == w.contig));
    let seqs = windows.iter().map(|w| seq[w.source_start as usize..w.source_end as usize].to_vec()).collect();
    Ok(RealGenome { path: path.to_path_buf(), chrom, windows, seqs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_gzip_and_plain_and_cuts_n_free_windows() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!(">20 GRCh37\n{}\n{}\n{}\n>21\nAC\n", "N".repeat(50), "acgt".repeat(25), "ACGT".repeat(25));
        let plain = dir.path().join("x.fa");
        std::fs::write(&plain, &body).unwrap();
        let gz = dir.path().join("x.fa.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for p in [&plain, &gz] {
            let (name, seq) = read_first_record(p).unwrap();
            assert_eq!(name, "20");
            assert_eq!(seq.len(), 250);
            assert!(seq[50..].iter().all(|b| b"ACGT".contains(b)));
        }
        let (_, seq) = read_first_record(&plain).unwrap();
        let contigs = vec![("chr1".to_string(), 60), ("chr9".to_string(), 60)];
        let rule = WindowRule { all: contigs.clone(), first: 0, stride: 60, max_n: 0, step: 10 };
        let w = cut_windows(&plain, &seq, &contigs, &rule).unwrap();
        assert_eq!((w[0].source_start, w[1].source_start), (50, 110));
        let big = vec![("chr1".to_string(), 300)];
        assert!(cut_windows(&plain, &seq, &big, &rule).is_err());
    }

    #[test]
    fn bad_input_names_the_file_line_and_package() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.fa.gz");
        let e = read_first_record(&missing).unwrap_err().to_string();
        assert!(e.contains("vt-examples") && e.contains("nope.fa.gz"), "{e}");
        let bad = dir.path().join("bad.fa");
        std::fs::write(&bad, ">20\nACGT\nAC-T\n").unwrap();
        let e = read_first_record(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.fa") && e.contains('3'), "{e}");
    }
}
