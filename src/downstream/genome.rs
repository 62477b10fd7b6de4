//! Inputs of the downstream tools: random access to an indexed FASTA genome (`.fai` beside it), BED regions and
//! small FASTA files of sequences.
//!
//! Key decision: the genome is read through its `.fai` with positioned reads (no whole-genome load), so a VCF of
//! any size over hg38 needs memory for one window at a time. bgzip FASTA is refused with a hint (random access
//! into BGZF needs the `.gzi` block index; decompress it instead).

use crate::data::fasta::{detect_kind, read_fai, sibling, FaiEntry, FastaKind};
use crate::downstream::seq::code;
use crate::error::{IoContext, MfdError, Result};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub struct IndexedFasta {
    path: PathBuf,
    file: File,
    contigs: HashMap<String, FaiEntry>,
}

impl IndexedFasta {
    pub fn open(path: &Path) -> Result<Self> {
        if detect_kind(path)? == FastaKind::Bgzip {
            return Err(MfdError::input(
                path,
                None,
                Some("compression"),
                "bgzip FASTA is not supported for random access here; HINT: decompress it and run `samtools faidx`",
            ));
        }
        let fai = sibling(path, ".fai");
        if !fai.exists() {
            return Err(MfdError::input(path, None, None, "no .fai index beside it; HINT: run `samtools faidx` on it"));
        }
        let entries = read_fai(&fai)?;
        if entries.is_empty() {
            return Err(MfdError::input(&fai, None, None, "no contigs (an empty index); HINT: run `samtools faidx`"));
        }
        let file = File::open(path).at(path)?;
        let size = file.metadata().at(path)?.len();
        for (ln, e) in &entries {
            check_layout(&file, size, &fai, *ln, e)?;
        }
        let contigs = entries.into_iter().map(|(_, e)| (e.name.clone(), e)).collect();
        Ok(IndexedFasta { path: path.to_path_buf(), file, contigs })
    }

    /// Length of `contig`, if present.
    pub fn contig_len(&self, contig: &str) -> Option<u64> {
        self.contigs.get(contig).map(|e| e.length)
    }

    /// Upper-case letters of [start, end) of `contig` (0-based), 'N' outside the contig.
    pub fn fetch_letters(&self, contig: &str, start: i64, end: i64) -> Result<Vec<u8>> {
        let e = self.contigs.get(contig).ok_or_else(|| {
            MfdError::input(&self.path, None, Some("contig"), format!("no contig '{}'", crate::error::short(contig)))
        })?;
        let n = (end - start).max(0) as usize;
        let mut out = vec![b'N'; n];
        let lo = start.clamp(0, e.length as i64) as u64;
        let hi = end.clamp(0, e.length as i64) as u64;
        if lo >= hi {
            return Ok(out);
        }
        let lb = e.line_bases.max(1);
        let byte = |pos: u64| e.offset + pos / lb * e.line_width + pos % lb;
        let (b0, b1) = (byte(lo), byte(hi - 1) + 1);
        let mut raw = vec![0u8; (b1 - b0) as usize];
        read_at(&self.file, &mut raw, b0).at(&self.path)?;
        let bases: Vec<u8> = raw.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
        if bases.len() != (hi - lo) as usize {
            return Err(MfdError::input(
                &self.path,
                None,
                Some("fai"),
                format!("{contig}:{lo}-{hi}: read {} bases, expected {}; is the .fai stale?", bases.len(), hi - lo),
            ));
        }
        let off = (lo as i64 - start) as usize;
        for (o, b) in out[off..off + bases.len()].iter_mut().zip(bases) {
            *o = b.to_ascii_uppercase();
        }
        Ok(out)
    }

    /// Base codes (A, C, G, T = 0..3, anything else 4) of [start, end) of `contig`.
    pub fn fetch_codes(&self, contig: &str, start: i64, end: i64) -> Result<Vec<u8>> {
        Ok(self.fetch_letters(contig, start, end)?.into_iter().map(code).collect())
    }
}

/// The FASTA around one `.fai` entry looks as the index says: the contig lies inside the file, its header line
/// (`>name`) ends right before `offset`, and its first and last sequence lines end where the line sizes say. A
/// stale index (the FASTA edited after indexing) is refused here instead of shifting every window.
fn check_layout(file: &File, size: u64, fai: &Path, ln: u64, e: &FaiEntry) -> Result<()> {
    let stale = |field: &str, msg: String| {
        MfdError::input(
            fai,
            Some(ln),
            Some(field),
            format!("{msg}; HINT: the index is stale or belongs to another file, re-run `samtools faidx`"),
        )
    };
    let end = crate::data::fasta::fai_end(e).unwrap_or(u64::MAX);
    if end > size {
        return Err(stale("length", format!("contig '{}' ends at byte {end}, the FASTA has {size}", e.name)));
    }
    // The header line: scan back at most 64 KiB from the offset for the previous newline.
    let back = e.offset.min(65_536);
    let mut head = vec![0u8; back as usize];
    read_at(file, &mut head, e.offset - back).at(fai)?;
    let ok_header = head.last() == Some(&b'\n') && {
        let body = &head[..head.len() - 1];
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = &body[start..];
        let name = e.name.as_bytes();
        line.first() == Some(&b'>')
            && line[1..].starts_with(name)
            && line.get(1 + name.len()).is_none_or(|b| b.is_ascii_whitespace())
    };
    if !ok_header {
        return Err(stale("offset", format!("byte {} is not right after the header line '>{}'", e.offset, e.name)));
    }
    // Line ends: after the first full line and after the last base.
    let mut ends = vec![end];
    if e.length > e.line_bases {
        ends.push(e.offset + e.line_bases);
    }
    for at in ends {
        if at < size {
            let mut b = [0u8; 1];
            read_at(file, &mut b, at).at(fai)?;
            if !b[0].is_ascii_whitespace() {
                return Err(stale(
                    "line_bases",
                    format!(
                        "contig '{}': byte {at} should end a sequence line but is '{}'",
                        e.name,
                        b[0].escape_ascii()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(not(unix))]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f.try_clone()?;
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(buf)
}

/// Where sequence comes from: an indexed FASTA, or the genome of a prepared dataset (genome.bin).
pub enum Genome {
    Fasta(IndexedFasta),
    Dataset(Box<crate::data::dataset::Dataset>),
}

impl Genome {
    /// Upper-case letters of [start, end) of `contig` (N outside it; a dataset stores IUPAC codes as N).
    pub fn fetch_letters(&self, contig: &str, start: i64, end: i64) -> Result<Vec<u8>> {
        match self {
            Genome::Fasta(f) => f.fetch_letters(contig, start, end),
            Genome::Dataset(ds) => {
                let m = ds.manifest();
                let i = m.contigs.iter().position(|c| c.name == contig).ok_or_else(|| {
                    MfdError::input(ds.dir(), None, Some("contig"), format!("the dataset has no contig '{contig}'"))
                })?;
                let codes = ds.contig_codes(i);
                Ok((start..end)
                    .map(|p| {
                        if p >= 0 && (p as usize) < codes.len() {
                            b"ACGTN"[codes[p as usize].min(4) as usize]
                        } else {
                            b'N'
                        }
                    })
                    .collect())
            }
        }
    }

    /// Base codes (A, C, G, T = 0..3, anything else 4) of [start, end) of `contig`.
    pub fn fetch_codes(&self, contig: &str, start: i64, end: i64) -> Result<Vec<u8>> {
        Ok(self.fetch_letters(contig, start, end)?.into_iter().map(code).collect())
    }

    /// Where the contig names come from (the .fai, or the dataset's manifest), for messages.
    pub fn contig_list(&self) -> String {
        match self {
            Genome::Fasta(f) => sibling(&f.path, ".fai").display().to_string(),
            Genome::Dataset(ds) => ds.dir().join(crate::data::manifest::MANIFEST_FILE).display().to_string(),
        }
    }

    /// The regions of `bed`, each on a contig of this genome (else an error naming the BED line).
    pub fn read_regions(&self, bed: &Path) -> Result<Vec<Region>> {
        let regions = read_bed(bed)?;
        if let Some(r) = regions.iter().find(|r| self.contig_len(&r.chrom).is_none()) {
            let msg = format!("'{}' is not in the genome ({})", crate::error::short(&r.chrom), self.contig_list());
            return Err(MfdError::input(bed, Some(r.line), Some("chrom"), msg));
        }
        Ok(regions)
    }

    /// (name, length) of every contig, in file order.
    pub fn contigs(&self) -> Vec<(String, u64)> {
        match self {
            Genome::Fasta(f) => {
                let mut v: Vec<&FaiEntry> = f.contigs.values().collect();
                v.sort_by_key(|e| e.offset);
                v.into_iter().map(|e| (e.name.clone(), e.length)).collect()
            }
            Genome::Dataset(ds) => ds.manifest().contigs.iter().map(|c| (c.name.clone(), c.length)).collect(),
        }
    }

    /// Length of `contig`, if present.
    pub fn contig_len(&self, contig: &str) -> Option<u64> {
        match self {
            Genome::Fasta(f) => f.contig_len(contig),
            Genome::Dataset(ds) => ds.manifest().contigs.iter().find(|c| c.name == contig).map(|c| c.length),
        }
    }
}

/// One BED region (0-based, half-open) and its name (column 4, or `chrom:start-end`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub chrom: String,
    pub start: u64,
    pub end: u64,
    pub name: String,
    /// 1-based line in the BED.
    pub line: u64,
}

/// Read BED regions (>= 3 columns; `track`, `browser` and `#` lines skipped).
pub fn read_bed(path: &Path) -> Result<Vec<Region>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = Some(i as u64 + 1);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with("track") || line.starts_with("browser") {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            return Err(MfdError::input(path, ln, None, format!("{} columns, BED needs >= 3", cols.len())));
        }
        let num = |k: usize, f: &str| -> Result<u64> {
            cols[k].trim().parse().map_err(|_| {
                MfdError::input(path, ln, Some(f), format!("not an integer: '{}'", crate::error::short(cols[k])))
            })
        };
        let (start, end) = (num(1, "start")?, num(2, "end")?);
        if end <= start {
            return Err(MfdError::input(path, ln, Some("end"), format!("end {end} <= start {start}")));
        }
        let name = match cols.get(3) {
            Some(n) if !n.is_empty() && *n != "." => n.to_string(),
            _ => format!("{}:{start}-{end}", cols[0]),
        };
        out.push(Region { chrom: cols[0].to_string(), start, end, name, line: i as u64 + 1 });
    }
    Ok(out)
}

/// Read a small FASTA of sequences: (name = first word of the header, upper-case letters).
pub fn read_fasta_records(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let text = read_text(path)?;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if let Some(h) = line.strip_prefix('>') {
            let name = h.split_whitespace().next().unwrap_or("").to_string();
            if name.is_empty() {
                return Err(MfdError::input(path, Some(i as u64 + 1), Some("header"), "empty sequence name"));
            }
            out.push((name, Vec::new()));
        } else if !line.trim().is_empty() {
            let Some((_, seq)) = out.last_mut() else {
                return Err(MfdError::input(path, Some(i as u64 + 1), None, "sequence before the first '>' header"));
            };
            for b in line.trim().bytes() {
                if !b.is_ascii_alphabetic() {
                    return Err(MfdError::input(
                        path,
                        Some(i as u64 + 1),
                        Some("sequence"),
                        format!("invalid character '{}'", b as char),
                    ));
                }
                seq.push(b.to_ascii_uppercase());
            }
        }
    }
    Ok(out)
}

/// A text file, gunzipped when it starts with the gzip magic (bgzip included).
pub fn read_text(path: &Path) -> Result<String> {
    use std::io::Read;
    crate::data::check_input_file(path)?;
    let bytes = std::fs::read(path).at(path)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut s)
            .map_err(|e| MfdError::input(path, None, None, format!("gzip: {e} (truncated or corrupted?)")))?;
        crate::data::text_from_bytes(path, s)
    } else {
        crate::data::text_from_bytes(path, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_fetch_across_lines_and_edges() {
        let dir = tempfile::tempdir().unwrap();
        let fa = dir.path().join("g.fa");
        // chr1: 10 bases, 4 per line; chr2: 3 bases.
        std::fs::write(&fa, ">chr1 desc\nACGT\nacgt\nNA\n>chr2\nGGC\n").unwrap();
        std::fs::write(sibling(&fa, ".fai"), "chr1\t10\t11\t4\t5\nchr2\t3\t30\t4\t5\n").unwrap();
        let g = IndexedFasta::open(&fa).unwrap();
        assert_eq!(g.fetch_letters("chr1", 2, 7).unwrap(), b"GTACG");
        assert_eq!(g.fetch_letters("chr1", -2, 2).unwrap(), b"NNAC");
        assert_eq!(g.fetch_letters("chr1", 8, 12).unwrap(), b"NANN");
        assert_eq!(g.fetch_letters("chr2", 0, 3).unwrap(), b"GGC");
        assert_eq!(g.fetch_codes("chr1", 0, 4).unwrap(), vec![0, 1, 2, 3]);
        assert!(g.fetch_letters("chrX", 0, 3).unwrap_err().to_string().contains("chrX"));
        assert_eq!(g.contig_len("chr2"), Some(3));
    }

    #[test]
    fn bed_and_fasta_records() {
        let dir = tempfile::tempdir().unwrap();
        let bed = dir.path().join("r.bed");
        std::fs::write(&bed, "track x\nchr1\t10\t20\tel1\nchr2\t5\t9\n").unwrap();
        let r = read_bed(&bed).unwrap();
        assert_eq!(r[0], Region { chrom: "chr1".into(), start: 10, end: 20, name: "el1".into(), line: 2 });
        assert_eq!(r[1].name, "chr2:5-9");
        std::fs::write(&bed, "chr1\t10\tx\n").unwrap();
        let e = read_bed(&bed).unwrap_err().to_string();
        assert!(e.contains(":1") && e.contains("end"), "{e}");
        let fa = dir.path().join("s.fa");
        std::fs::write(&fa, ">a one\nacg\nT\n>b\nNN\n").unwrap();
        assert_eq!(
            read_fasta_records(&fa).unwrap(),
            vec![("a".into(), b"ACGT".to_vec()), ("b".into(), b"NN".to_vec())]
        );
        std::fs::write(&fa, "ACGT\n").unwrap();
        assert!(read_fasta_records(&fa).is_err());
    }
}
