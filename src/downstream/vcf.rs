//! Streaming VCF reader for `mfd vep`: plain, gzip or bgzip text, one record at a time, multi-allelic records
//! split into one variant per ALT allele. Counts the compressed bytes read, for a progress bar over huge files.
//!
//! Key decision: an own line parser over the first five columns (CHROM POS ID REF ALT): every error names the
//! file, line and field, and nothing past ALT is needed (no genotypes are decoded, so 100 GB files stream fast).

use crate::error::{IoContext, MfdError, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One (REF, ALT) pair of a VCF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub chrom: String,
    /// 1-based position of the first REF base.
    pub pos: u64,
    pub id: String,
    pub reference: String,
    pub alt: String,
    /// 1-based index of this ALT in the record (1 for bi-allelic records).
    pub allele: usize,
    /// Number of ALT alleles in the record.
    pub n_alleles: usize,
    /// Line of the record in the file.
    pub line: u64,
}

/// Wraps the raw file and counts bytes read from it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub struct VcfReader {
    path: PathBuf,
    lines: Box<dyn BufRead>,
    line_no: u64,
    bytes_read: Arc<AtomicU64>,
    /// Total size of the file on disk.
    pub file_len: u64,
    pending: std::collections::VecDeque<Variant>,
    buf: Vec<u8>,
}

/// Largest POS accepted (the VCF specification's 2^31 - 1).
pub const MAX_POS: u64 = (1 << 31) - 1;

impl VcfReader {
    pub fn open(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).at(path)?;
        let file_len = f.metadata().at(path)?.len();
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).at(path)?;
        drop(f);
        let f = std::fs::File::open(path).at(path)?;
        let count = Arc::new(AtomicU64::new(0));
        let raw = Counting { inner: f, count: count.clone() };
        let lines: Box<dyn BufRead> = if n == 2 && magic == [0x1f, 0x8b] {
            // bgzip is a series of gzip members: MultiGzDecoder reads them all.
            Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::new(raw))))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, raw))
        };
        Ok(VcfReader {
            path: path.to_path_buf(),
            lines,
            line_no: 0,
            bytes_read: count,
            file_len,
            pending: Default::default(),
            buf: Vec::new(),
        })
    }

    /// Bytes of the file consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The next (REF, ALT) pair, or None at the end.
    pub fn next_variant(&mut self) -> Result<Option<Variant>> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            self.buf.clear();
            let ln = self.line_no + 1;
            let n = self.lines.read_until(b'\n', &mut self.buf).map_err(|e| {
                let msg = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "the compressed stream ends mid-block (truncated gzip/bgzip file?)".to_string()
                } else {
                    format!("read error: {e}")
                };
                MfdError::input(&self.path, Some(ln), None, msg)
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no = ln;
            if ln == 1 && self.buf.starts_with(b"BCF") {
                return Err(MfdError::input(
                    &self.path,
                    Some(1),
                    None,
                    "a BCF (binary VCF), not a VCF text file; HINT: convert it with `bcftools view -Ov`",
                ));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Err(MfdError::input(
                    &self.path,
                    Some(ln),
                    None,
                    "not UTF-8 text (a binary or corrupted file?); expected tab-separated VCF lines",
                ));
            };
            let line = text.trim_end_matches(['\n', '\r']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let recs = parse_record(line, &self.path, self.line_no)?;
            self.pending.extend(recs);
        }
    }
}

/// The variants of one data line (one per ALT; the missing ALT `.` gives none).
pub fn parse_record(line: &str, path: &Path, ln: u64) -> Result<Vec<Variant>> {
    let mut cols = line.splitn(6, '\t');
    let mut next = |f: &str| cols.next().ok_or_else(|| MfdError::input(path, Some(ln), Some(f), "missing column"));
    let chrom = next("CHROM")?.to_string();
    let pos_s = next("POS")?;
    let id = next("ID")?.to_string();
    let reference = next("REF")?.to_ascii_uppercase();
    let alts = next("ALT")?;
    let short = crate::data::fasta::short;
    let pos: u64 = pos_s.parse().ok().filter(|&p| (1..=MAX_POS).contains(&p)).ok_or_else(|| {
        MfdError::input(
            path,
            Some(ln),
            Some("POS"),
            format!("'{}': expected a 1-based position, 1 ..= {MAX_POS}", short(pos_s)),
        )
    })?;
    if reference.is_empty() || !reference.bytes().all(|b| b"ACGTN".contains(&b)) {
        return Err(MfdError::input(
            path,
            Some(ln),
            Some("REF"),
            format!("'{}': expected bases A, C, G, T or N", short(&reference)),
        ));
    }
    if alts == "." {
        return Ok(vec![]);
    }
    let list: Vec<&str> = alts.split(',').collect();
    Ok(list
        .iter()
        .enumerate()
        .map(|(i, a)| Variant {
            chrom: chrom.clone(),
            pos,
            id: id.clone(),
            reference: reference.clone(),
            alt: a.to_ascii_uppercase(),
            allele: i + 1,
            n_alleles: list.len(),
            line: ln,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiallelic_records_are_split_and_gzip_streams() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n1\t5\trs1\tTG\tTGG,T\tx\n2\t7\t.\ta\tc\n3\t9\t.\tA\t.\n";
        let p = dir.path().join("a.vcf.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let mut r = VcfReader::open(&p).unwrap();
        let mut got = vec![];
        while let Some(v) = r.next_variant().unwrap() {
            got.push((v.chrom, v.pos, v.reference, v.alt, v.allele, v.n_alleles, v.line));
        }
        assert_eq!(
            got,
            vec![
                ("1".into(), 5, "TG".into(), "TGG".into(), 1, 2, 3),
                ("1".into(), 5, "TG".into(), "T".into(), 2, 2, 3),
                ("2".into(), 7, "A".into(), "C".into(), 1, 1, 4),
            ]
        );
        assert_eq!(r.bytes_read(), r.file_len);
        let e = parse_record("1\tx\t.\tA\tC", Path::new("v.vcf"), 9).unwrap_err().to_string();
        assert!(e.contains("v.vcf:9") && e.contains("POS"), "{e}");
        assert!(parse_record("1\t3\t.\tA", Path::new("v.vcf"), 2).is_err());
    }
}
