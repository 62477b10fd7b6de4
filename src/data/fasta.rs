//! Streaming FASTA reader and `.fai` index handling for `mfd prepare`.
//!
//! Key decision: an own line parser (not noodles' record reader), because every error must name the line, and
//! because the genome is streamed contig by contig straight into `genome.bin` (one byte per base: A,C,G,T any
//! case -> 0..3, N -> 4, IUPAC ambiguity letters RYKMSWBDHV -> 4 and counted) without ever holding a contig.
//! While reading, the reader measures what a `.fai` line would hold (offset of the first base, bases and bytes
//! per line), so an existing index can be checked and a missing one written. bgzip input is decompressed by the
//! caller (noodles-bgzf); `.fai` offsets are then offsets in the uncompressed text, as samtools writes them.

use crate::error::{IoContext, MfdError, Result};
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// Base code for N (also used for IUPAC ambiguity letters).
pub const CODE_N: u8 = 4;
/// Lookup value marking an IUPAC ambiguity letter (stored as `CODE_N`, counted separately).
const IUPAC: u8 = 5;
/// Lookup value marking a byte that may not appear in a sequence line.
const INVALID: u8 = 255;

/// Byte -> base code lookup (0..=3 bases, 4 N, 5 IUPAC, 255 invalid).
const LUT: [u8; 256] = {
    let mut t = [INVALID; 256];
    let pairs: [(u8, u8); 5] = [(b'A', 0), (b'C', 1), (b'G', 2), (b'T', 3), (b'N', CODE_N)];
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0 as usize] = pairs[i].1;
        t[pairs[i].0.to_ascii_lowercase() as usize] = pairs[i].1;
        i += 1;
    }
    let iupac = b"RYKMSWBDHV";
    let mut j = 0;
    while j < iupac.len() {
        t[iupac[j] as usize] = IUPAC;
        t[iupac[j].to_ascii_lowercase() as usize] = IUPAC;
        j += 1;
    }
    t
};

/// How the FASTA file is stored, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastaKind {
    Plain,
    /// BGZF (blocked gzip, `bgzip`): needs `.fai` and `.gzi` beside it.
    Bgzip,
}

/// Detect plain vs bgzip by magic. Plain gzip (not BGZF) is an error with a hint.
pub fn detect_kind(path: &Path) -> Result<FastaKind> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).at(path)?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).at(path)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        // BGZF: gzip with FEXTRA (FLG bit 2) and the 'BC' extra subfield at bytes 12..14.
        let bgzf = n >= 14 && head[3] & 4 != 0 && head[12] == b'B' && head[13] == b'C';
        if !bgzf {
            return Err(MfdError::input(
                path,
                None,
                Some("compression"),
                "gzip but not bgzip (BGZF); HINT: decompress it, or recompress with `bgzip` and index with `samtools faidx`",
            ));
        }
        return Ok(FastaKind::Bgzip);
    }
    Ok(FastaKind::Plain)
}

/// `FASTA.fai` (and `FASTA.gzi`) beside the FASTA: the path with the suffix appended.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// One `.fai` line: name, length, offset of the first base, bases per line, bytes per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaiEntry {
    pub name: String,
    pub length: u64,
    pub offset: u64,
    pub line_bases: u64,
    pub line_width: u64,
}

/// Read a `.fai` (5 tab-separated columns; a 6th, as in FASTQ indexes, is rejected). Returns (line, entry).
pub fn read_fai(path: &Path) -> Result<Vec<(u64, FaiEntry)>> {
    let text = crate::data::read_text_input(path)?;
    let mut out = Vec::new();
    const FIELDS: [&str; 5] = ["name", "length", "offset", "line_bases", "line_width"];
    for (i, line) in text.lines().enumerate() {
        let ln = i as u64 + 1;
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 5 {
            return Err(MfdError::input(path, Some(ln), None, format!("{} columns, a .fai line has 5", cols.len())));
        }
        let mut nums = [0u64; 4];
        for (k, v) in nums.iter_mut().enumerate() {
            *v = cols[k + 1].parse().map_err(|_| {
                MfdError::input(
                    path,
                    Some(ln),
                    Some(FIELDS[k + 1]),
                    format!("not an integer: '{}'", short(cols[k + 1])),
                )
            })?;
        }
        let e = FaiEntry {
            name: cols[0].to_string(),
            length: nums[0],
            offset: nums[1],
            line_bases: nums[2],
            line_width: nums[3],
        };
        if e.name.is_empty() {
            return Err(MfdError::input(path, Some(ln), Some("name"), "empty contig name"));
        }
        if e.length > 0 && e.line_bases == 0 {
            return Err(MfdError::input(path, Some(ln), Some("line_bases"), "0 for a non-empty contig"));
        }
        if e.line_width < e.line_bases {
            return Err(MfdError::input(
                path,
                Some(ln),
                Some("line_width"),
                format!(
                    "{} is less than line_bases {} (bytes per line include the newline)",
                    e.line_width, e.line_bases
                ),
            ));
        }
        if fai_end(&e).is_none() {
            return Err(MfdError::input(path, Some(ln), Some("length"), "the contig's byte range overflows"));
        }
        if let Some((first, _)) = out.iter().find(|(_, o): &&(u64, FaiEntry)| o.name == e.name) {
            return Err(MfdError::input(
                path,
                Some(ln),
                Some("name"),
                format!("contig '{}' is indexed twice (first on line {first})", short(&e.name)),
            ));
        }
        out.push((ln, e));
    }
    Ok(out)
}

/// One past the byte of the contig's last base (None on overflow).
pub fn fai_end(e: &FaiEntry) -> Option<u64> {
    if e.length == 0 {
        return Some(e.offset);
    }
    let last = e.length - 1;
    let lb = e.line_bases.max(1);
    (last / lb).checked_mul(e.line_width)?.checked_add(last % lb)?.checked_add(e.offset)?.checked_add(1)
}

/// At most 60 characters of `s` (for messages that echo input).
pub use crate::error::short;

/// The text of a `.fai` for `entries`.
pub fn fai_text(entries: &[FaiEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        s.push_str(&format!("{}\t{}\t{}\t{}\t{}\n", e.name, e.length, e.offset, e.line_bases, e.line_width));
    }
    s
}

/// Check one `.fai` line against what the FASTA holds; a mismatch names the `.fai`, its line and the field.
pub fn check_fai_entry(fai: &Path, line: u64, indexed: &FaiEntry, actual: &FaiEntry) -> Result<()> {
    let hint =
        "HINT: the index is stale or belongs to another file; delete it (plain FASTA) or re-run `samtools faidx`";
    let fields: [(&str, String, String); 5] = [
        ("name", indexed.name.clone(), actual.name.clone()),
        ("length", indexed.length.to_string(), actual.length.to_string()),
        ("offset", indexed.offset.to_string(), actual.offset.to_string()),
        ("line_bases", indexed.line_bases.to_string(), actual.line_bases.to_string()),
        ("line_width", indexed.line_width.to_string(), actual.line_width.to_string()),
    ];
    for (field, want, got) in fields {
        if want != got {
            return Err(MfdError::input(
                fai,
                Some(line),
                Some(field),
                format!("index says {want}, the FASTA has {got} (contig '{}'); {hint}", actual.name),
            ));
        }
    }
    Ok(())
}

/// What one contig held, known once it has been streamed.
#[derive(Debug, Clone)]
pub struct ContigRecord {
    pub name: String,
    /// 1-based line of the `>` header.
    pub header_line: u64,
    pub length: u64,
    /// Bases that were N or n.
    pub n_bases: u64,
    /// Bases that were IUPAC ambiguity letters (stored as N).
    pub iupac_bases: u64,
    /// The `.fai` line for this contig (line sizes measured on its first sequence line).
    pub fai: FaiEntry,
    /// False when line lengths vary inside the contig, so no valid `.fai` can be written for it.
    pub regular: bool,
}

/// Receives base codes (one byte per base, 0..=4) in order.
pub type CodeSink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Streams a FASTA contig by contig; base codes go to a caller-supplied sink in chunks of up to 1 MiB.
pub struct FastaStream<R> {
    reader: R,
    path: PathBuf,
    /// Lines read so far (1-based number of the last line read).
    line_no: u64,
    /// Bytes of uncompressed text consumed so far.
    offset: u64,
    /// Header read but whose contig is not yet streamed: (name, line, offset of the next line).
    pending: Option<(String, u64, u64)>,
    /// Contig names seen, with their header line (duplicates are errors).
    seen: HashMap<String, u64>,
    line: Vec<u8>,
    codes: Vec<u8>,
}

const SINK_CHUNK: usize = 1 << 20;

impl<R: BufRead> FastaStream<R> {
    pub fn new(reader: R, path: &Path) -> Self {
        FastaStream {
            reader,
            path: path.to_path_buf(),
            line_no: 0,
            offset: 0,
            pending: None,
            seen: HashMap::new(),
            line: Vec::with_capacity(256),
            codes: Vec::with_capacity(SINK_CHUNK + 4096),
        }
    }

    /// Bytes of (uncompressed) text consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Read the next line into `self.line` (terminator kept); false at end of file.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).map_err(|e| {
            let msg = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    "the file ends mid-block (a truncated bgzip/gzip file?)".to_string()
                }
                std::io::ErrorKind::InvalidData => format!("corrupted compressed data: {e}"),
                _ => format!("read error: {e}"),
            };
            MfdError::input(&self.path, Some(self.line_no + 1), None, msg)
        })?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        self.offset += n as u64;
        Ok(true)
    }

    /// Parse a `>` header line: the name is the text up to the first whitespace.
    fn take_header(&mut self) -> Result<()> {
        let text = trim_eol(&self.line);
        let name_bytes = text[1..].split(|b| b.is_ascii_whitespace()).next().unwrap_or(&[]);
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| MfdError::input(&self.path, Some(self.line_no), Some("header"), "contig name is not UTF-8"))?;
        if name.is_empty() {
            return Err(MfdError::input(&self.path, Some(self.line_no), Some("header"), "empty contig name after '>'"));
        }
        if let Some(first) = self.seen.get(name) {
            return Err(MfdError::input(
                &self.path,
                Some(self.line_no),
                Some("header"),
                format!("duplicate contig name '{name}' (first at line {first})"),
            ));
        }
        self.seen.insert(name.to_string(), self.line_no);
        self.pending = Some((name.to_string(), self.line_no, self.offset));
        Ok(())
    }

    /// Stream the next contig's codes into `sink`; `Ok(None)` at the end of the file.
    pub fn next_contig(&mut self, sink: &mut CodeSink) -> Result<Option<ContigRecord>> {
        if self.pending.is_none() {
            // Only at the start of the file: skip blank lines, then a header must come.
            loop {
                if !self.read_line()? {
                    if self.seen.is_empty() {
                        return Err(MfdError::input(&self.path, None, None, "no sequences (empty FASTA)"));
                    }
                    return Ok(None);
                }
                let text = trim_eol(&self.line);
                if text.is_empty() {
                    continue;
                }
                if text[0] != b'>' {
                    return Err(MfdError::input(
                        &self.path,
                        Some(self.line_no),
                        Some("header"),
                        "sequence before the first '>' header; HINT: not a FASTA file?",
                    ));
                }
                self.take_header()?;
                break;
            }
        }
        let (name, header_line, seq_offset) = self.pending.take().expect("pending header set above");
        let mut rec = ContigRecord {
            name: name.clone(),
            header_line,
            length: 0,
            n_bases: 0,
            iupac_bases: 0,
            fai: FaiEntry { name, length: 0, offset: seq_offset, line_bases: 0, line_width: 0 },
            regular: true,
        };
        // Layout check for the .fai: every line but the last has line_bases bases and line_width bytes.
        let mut short_seen = false;
        let mut blank_seen = false;
        self.codes.clear();
        while self.read_line()? {
            if self.line.first() == Some(&b'>') {
                self.take_header()?;
                break;
            }
            let raw_len = self.line.len() as u64;
            let seq_len = trim_eol(&self.line).len();
            if seq_len == 0 {
                blank_seen = true;
                continue;
            }
            if rec.fai.line_bases == 0 {
                rec.fai.line_bases = seq_len as u64;
                rec.fai.line_width = raw_len;
            } else if blank_seen
                || short_seen
                || seq_len as u64 > rec.fai.line_bases
                || (seq_len as u64 == rec.fai.line_bases && raw_len != rec.fai.line_width && self.line.ends_with(b"\n"))
            {
                rec.regular = false;
            }
            if (seq_len as u64) < rec.fai.line_bases {
                short_seen = true;
            }
            self.encode_line(seq_len, &mut rec)?;
            if self.codes.len() >= SINK_CHUNK {
                sink(&self.codes)?;
                self.codes.clear();
            }
        }
        if !self.codes.is_empty() {
            sink(&self.codes)?;
            self.codes.clear();
        }
        if rec.length == 0 {
            return Err(MfdError::input(
                &self.path,
                Some(rec.header_line),
                Some("sequence"),
                format!("contig '{}' is empty (no sequence after its header)", rec.name),
            ));
        }
        rec.fai.length = rec.length;
        Ok(Some(rec))
    }

    /// Append the codes of `self.line[..seq_len]` to `self.codes`, counting N and IUPAC bases.
    fn encode_line(&mut self, seq_len: usize, rec: &mut ContigRecord) -> Result<()> {
        let start = self.codes.len();
        self.codes.resize(start + seq_len, 0);
        // Fast path without branches: OR of all lookups has bit 2 set only if some byte was not A/C/G/T.
        let mut any = 0u8;
        for (&b, out) in self.line[..seq_len].iter().zip(&mut self.codes[start..]) {
            let c = LUT[b as usize];
            *out = c.min(CODE_N);
            any |= c;
        }
        let mut bad = None;
        let (mut n, mut iupac) = (0u64, 0u64);
        if any & CODE_N != 0 {
            for (i, &b) in self.line[..seq_len].iter().enumerate() {
                match LUT[b as usize] {
                    CODE_N => n += 1,
                    IUPAC => iupac += 1,
                    INVALID => {
                        bad = Some((i, b));
                        break;
                    }
                    _ => {}
                }
            }
        }
        if let Some((i, b)) = bad {
            let shown =
                if b.is_ascii_graphic() || b == b' ' { format!("'{}'", b as char) } else { format!("byte 0x{b:02x}") };
            return Err(MfdError::input(
                &self.path,
                Some(self.line_no),
                Some("sequence"),
                format!(
                    "invalid character {shown} at column {} in contig '{}' (allowed: ACGTN and IUPAC RYKMSWBDHV, any case)",
                    i + 1,
                    rec.name
                ),
            ));
        }
        rec.length += seq_len as u64;
        rec.n_bases += n;
        rec.iupac_bases += iupac;
        Ok(())
    }
}

/// The line without its `\n` or `\r\n` terminator.
fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_all(text: &str) -> Result<(Vec<ContigRecord>, Vec<u8>)> {
        let mut s = FastaStream::new(text.as_bytes(), Path::new("t.fa"));
        let mut codes = Vec::new();
        let mut recs = Vec::new();
        while let Some(r) = s.next_contig(&mut |c| {
            codes.extend_from_slice(c);
            Ok(())
        })? {
            recs.push(r);
        }
        Ok((recs, codes))
    }

    #[test]
    fn encodes_and_measures_fai() {
        let (recs, codes) = stream_all(">a desc\nACGT\nacgn\nRY\n>b\r\nNNNN\r\nT\r\n").unwrap();
        assert_eq!(codes, vec![0, 1, 2, 3, 0, 1, 2, 4, 4, 4, 4, 4, 4, 4, 3]);
        assert_eq!(recs.len(), 2);
        let a = &recs[0];
        assert_eq!((a.name.as_str(), a.length, a.n_bases, a.iupac_bases, a.regular), ("a", 10, 1, 2, true));
        assert_eq!(a.fai, FaiEntry { name: "a".into(), length: 10, offset: 8, line_bases: 4, line_width: 5 });
        let b = &recs[1];
        assert_eq!(b.fai, FaiEntry { name: "b".into(), length: 5, offset: 25, line_bases: 4, line_width: 6 });
        assert_eq!(b.n_bases, 4);
    }

    #[test]
    fn irregular_lines_are_flagged() {
        let (recs, _) = stream_all(">a\nAC\nACGT\n").unwrap();
        assert!(!recs[0].regular);
        let (recs, _) = stream_all(">a\nACGT\nAC\n\n").unwrap();
        assert!(recs[0].regular);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = stream_all("ACGT\n>a\nAC\n").unwrap_err().to_string();
        assert!(e.contains("t.fa:1 [field header]"), "{e}");
        let e = stream_all(">a\nAC\n>b\n>c\nA\n").unwrap_err().to_string();
        assert!(e.contains("t.fa:3 [field sequence]") && e.contains("'b' is empty"), "{e}");
        let e = stream_all(">a\nAC\n>a\nA\n").unwrap_err().to_string();
        assert!(e.contains("t.fa:3") && e.contains("first at line 1"), "{e}");
        let e = stream_all(">a\nACGT\nAC-T\n").unwrap_err().to_string();
        assert!(e.contains("t.fa:3 [field sequence]") && e.contains("'-' at column 3"), "{e}");
    }

    #[test]
    fn fai_round_trip_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.fa.fai");
        let e = FaiEntry { name: "a".into(), length: 10, offset: 3, line_bases: 4, line_width: 5 };
        std::fs::write(&p, fai_text(std::slice::from_ref(&e))).unwrap();
        let read = read_fai(&p).unwrap();
        assert_eq!(read, vec![(1, e.clone())]);
        let mut other = e.clone();
        other.offset = 4;
        let msg = check_fai_entry(&p, 1, &e, &other).unwrap_err().to_string();
        assert!(msg.contains("x.fa.fai:1 [field offset]"), "{msg}");
    }
}
