//! Peak inputs of `mfd prepare`: the `peaks.tsv` table (experiment -> peak file), BED3+/narrowPeak peak files
//! (plain or gzip), and the sweep that turns sorted peaks into 128-bp tile label bitsets.
//!
//! Key decisions: peaks are compact 12-byte records (start, end, class), kept by `peak_store` (spilled to disk
//! past a threshold); labels are built per contig in chunks of `CHUNK_TILES` tiles by a sweep over the peaks in
//! start order, read batch by batch, so neither all peaks nor a full label matrix is ever in memory. Contig names resolve exactly first, then with a leading
//! "chr" removed or added ("chr1" <-> "1").

use crate::error::{IoContext, MfdError, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Label tile (bin) size in bp.
pub const TILE: u64 = 128;
/// Tiles labelled per sweep step: 8192 rows of label bytes (2.2 MB at O = 2106).
const CHUNK_TILES: u64 = 8192;

/// One row of `peaks.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakSource {
    pub experiment: String,
    /// Resolved path (relative paths are relative to the directory of `peaks.tsv`).
    pub path: PathBuf,
    /// 1-based line in `peaks.tsv`.
    pub line: u64,
}

/// Read `peaks.tsv`: `experiment<TAB>path` rows in class order; `#` and blank lines skipped; a first row exactly
/// `experiment\tpath` is a header. Duplicate ids and missing files are errors naming the line.
pub fn read_peak_table(path: &Path) -> Result<Vec<PeakSource>> {
    let text = crate::data::read_text_input(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows: Vec<PeakSource> = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut seen_data = false;
    for (i, raw) in text.lines().enumerate() {
        let ln = i as u64 + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_data && line == "experiment\tpath" {
            seen_data = true;
            continue;
        }
        seen_data = true;
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 2 {
            return Err(MfdError::input(
                path,
                Some(ln),
                Some(if cols.len() < 2 { "path" } else { "experiment" }),
                format!("{} tab-separated fields, expected 2 (experiment, path)", cols.len()),
            ));
        }
        let (id, file) = (cols[0].trim(), cols[1].trim());
        if id.is_empty() {
            return Err(MfdError::input(path, Some(ln), Some("experiment"), "empty experiment id"));
        }
        if file.is_empty() {
            return Err(MfdError::input(path, Some(ln), Some("path"), "empty path"));
        }
        if let Some(first) = first_line.get(id) {
            return Err(MfdError::input(
                path,
                Some(ln),
                Some("experiment"),
                format!("duplicate experiment id '{}' (first at line {first})", crate::error::short(id)),
            ));
        }
        let resolved = base.join(file);
        if let Err(e) = crate::data::check_input_file(&resolved) {
            let what = match e {
                MfdError::Input { msg, .. } => msg,
                e => e.to_string(),
            };
            return Err(MfdError::input(
                path,
                Some(ln),
                Some("path"),
                format!("peak file {} {what} (relative paths are relative to this table)", resolved.display()),
            ));
        }
        first_line.insert(id.to_string(), ln);
        rows.push(PeakSource { experiment: id.to_string(), path: resolved, line: ln });
    }
    if rows.is_empty() {
        return Err(MfdError::input(path, None, None, "no experiments listed"));
    }
    Ok(rows)
}

/// Contig name -> index, with the "chr" fallback.
#[derive(Debug, Clone)]
pub struct ContigNames {
    index: HashMap<String, u32>,
    lengths: Vec<u64>,
    names: Vec<String>,
}

impl ContigNames {
    pub fn new(contigs: &[(String, u64)]) -> Self {
        let index = contigs.iter().enumerate().map(|(i, (n, _))| (n.clone(), i as u32)).collect();
        ContigNames {
            index,
            lengths: contigs.iter().map(|c| c.1).collect(),
            names: contigs.iter().map(|c| c.0.clone()).collect(),
        }
    }

    /// Exact name first, then the name with "chr" removed (if it has it) or added (if it has not).
    pub fn resolve(&self, name: &str) -> Option<u32> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        match name.strip_prefix("chr") {
            Some(rest) => self.index.get(rest).copied(),
            None => self.index.get(&format!("chr{name}")).copied(),
        }
    }

    /// Number of contigs.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn length(&self, i: u32) -> u64 {
        self.lengths[i as usize]
    }

    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// A peak on a known contig: [start, end) in bp, and its class (experiment index). 12 bytes (`Pod`, so the peak
/// store can spill it as raw bytes). Ordered by (start, end, class): the label sweep's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Peak {
    pub start: u32,
    pub end: u32,
    pub class: u32,
}

const NARROWPEAK: [&str; 10] =
    ["chrom", "chromStart", "chromEnd", "name", "score", "strand", "signalValue", "pValue", "qValue", "peak"];

/// Parse one peak file (BED3+ or narrowPeak, plain or gzip by magic `1f 8b`). Returns (contig, peak) pairs.
/// narrowPeak is assumed when the name ends in `.narrowPeak(.gz)` or the first data row has 10 columns; then
/// every row must have 10 columns with numeric score, signalValue, pValue, qValue, peak and a strand of `+-.`.
pub fn read_peak_file<R: Read>(reader: R, path: &Path, class: u32, contigs: &ContigNames) -> Result<Vec<(u32, Peak)>> {
    Ok(read_peak_file_skipping(reader, path, class, contigs, false)?.0)
}

/// Peaks per contig name that is not in the FASTA (sorted by name).
pub type UnknownContigs = BTreeMap<String, u64>;

/// `read_peak_file`; with `skip_unknown`, rows on a contig absent from the FASTA are skipped and counted (the
/// second value) instead of being an error.
pub fn read_peak_file_skipping<R: Read>(
    reader: R,
    path: &Path,
    class: u32,
    contigs: &ContigNames,
    skip_unknown: bool,
) -> Result<(Vec<(u32, Peak)>, UnknownContigs)> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf().at(path)?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let named_np = lower.ends_with(".narrowpeak") || lower.ends_with(".narrowpeak.gz");
    if gz {
        let dec = BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(buf));
        parse_peak_lines(dec, path, class, contigs, named_np, skip_unknown)
    } else {
        parse_peak_lines(buf, path, class, contigs, named_np, skip_unknown)
    }
}

fn parse_peak_lines<B: BufRead>(
    mut r: B,
    path: &Path,
    class: u32,
    contigs: &ContigNames,
    named_np: bool,
    skip_unknown: bool,
) -> Result<(Vec<(u32, Peak)>, UnknownContigs)> {
    let mut out = Vec::new();
    let mut unknown = UnknownContigs::new();
    let mut line = Vec::with_capacity(256);
    let mut ln = 0u64;
    let mut narrow: Option<bool> = if named_np { Some(true) } else { None };
    // Resolved contig names (None: not in the FASTA, skipped): narrowPeak files are often sorted by signal, so
    // names change line to line.
    let mut cache: HashMap<Vec<u8>, Option<u32>> = HashMap::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).at(path)? == 0 {
            break;
        }
        ln += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if ln == 1 && line.starts_with(b"\xef\xbb\xbf") {
            line.drain(..3); // UTF-8 byte-order mark
        }
        if line.iter().all(|b| b.is_ascii_whitespace())
            || line[0] == b'#'
            || line.starts_with(b"track")
            || line.starts_with(b"browser")
        {
            continue;
        }
        let err = |field: &str, msg: String| MfdError::input(path, Some(ln), Some(field), msg);
        // Up to 11 fields kept (enough to see that a narrowPeak row has too many), all counted.
        let mut fields: [&[u8]; 11] = [&[]; 11];
        let mut count = 0usize;
        for f in line.split(|&b| b == b'\t') {
            if count < fields.len() {
                fields[count] = f;
            }
            count += 1;
        }
        let cols = &fields[..count.min(fields.len())];
        let ncols = count;
        let np = *narrow.get_or_insert(ncols == 10);
        let need = if np { 10 } else { 3 };
        if ncols < need {
            let kind = if np { "narrowPeak needs 10" } else { "BED needs at least 3" };
            return Err(err(NARROWPEAK[ncols], format!("too few columns: {ncols} ({kind}, tab-separated)")));
        }
        if np && ncols > 10 {
            return Err(err("peak", format!("{ncols} columns, narrowPeak has exactly 10")));
        }
        let resolved = match cache.get(cols[0]) {
            Some(&i) => i,
            None => {
                let name = String::from_utf8_lossy(cols[0]);
                let i = contigs.resolve(&name);
                if i.is_none() && !skip_unknown {
                    return Err(err(
                        "chrom",
                        format!(
                            "unknown contig {name:?} (not in the FASTA, also tried with/without \"chr\"); HINT: \
                             `mfd prepare --skip-unknown-contigs` skips such peaks and counts them per contig"
                        ),
                    ));
                }
                cache.insert(cols[0].to_vec(), i);
                i
            }
        };
        let Some(contig) = resolved else {
            *unknown.entry(String::from_utf8_lossy(cols[0]).into_owned()).or_default() += 1;
            continue;
        };
        let start = parse_u64(cols[1])
            .ok_or_else(|| err("chromStart", format!("not a non-negative integer: '{}'", lossy(cols[1]))))?;
        let end = parse_u64(cols[2])
            .ok_or_else(|| err("chromEnd", format!("not a non-negative integer: '{}'", lossy(cols[2]))))?;
        if start > end {
            return Err(err("chromStart", format!("start {start} > end {end}")));
        }
        let len = contigs.length(contig);
        if end > len {
            return Err(err(
                "chromEnd",
                format!("end {end} is past the end of contig '{}' (length {len})", contigs.name(contig)),
            ));
        }
        if np {
            check_narrowpeak(cols, &err)?;
        }
        // Contig lengths are < 2^32 (checked when the FASTA is read), so start/end fit in u32.
        out.push((contig, Peak { start: start as u32, end: end as u32, class }));
    }
    Ok((out, unknown))
}

fn check_narrowpeak(cols: &[&[u8]], err: &dyn Fn(&str, String) -> MfdError) -> Result<()> {
    for k in [4usize, 6, 7, 8] {
        let ok =
            std::str::from_utf8(cols[k]).ok().and_then(|s| s.trim().parse::<f64>().ok()).is_some_and(|v| v.is_finite());
        if !ok {
            return Err(err(NARROWPEAK[k], format!("not a number: '{}'", lossy(cols[k]))));
        }
    }
    if !matches!(cols[5], b"+" | b"-" | b".") {
        return Err(err("strand", format!("'{}', expected one of + - .", lossy(cols[5]))));
    }
    if std::str::from_utf8(cols[9]).ok().and_then(|s| s.trim().parse::<i64>().ok()).is_none() {
        return Err(err("peak", format!("not an integer: '{}'", lossy(cols[9]))));
    }
    Ok(())
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |a, &d| a * 10 + (d - b'0') as u64))
}

/// An echoed column, clipped.
fn lossy(b: &[u8]) -> String {
    crate::error::short(&String::from_utf8_lossy(b))
}

/// When a tile counts as labelled.
#[derive(Debug, Clone, Copy)]
pub struct LabelRule {
    /// Positive for an experiment when one of its peaks overlaps the tile by >= this many bp (1..=128).
    pub min_overlap: u32,
    /// Kept when >= this many experiments are positive; 0 keeps every tile that is not all N.
    pub min_positive: u32,
}

/// A peak being swept, with whether it made a kept tile positive.
struct Active {
    p: Peak,
    used: bool,
}

/// Tiles of `p` (clipped to [t0, t1)) where it overlaps by at least `min_overlap` bp.
fn positive_tiles(p: &Peak, t0: u64, t1: u64, min_overlap: u64) -> impl Iterator<Item = u64> {
    let (s, e) = (p.start as u64, p.end as u64);
    let first = (s / TILE).max(t0);
    let last = if e > s { ((e - 1) / TILE + 1).min(t1) } else { first };
    (first..last.max(first)).filter(move |&k| e.min(k * TILE + TILE) - s.max(k * TILE) >= min_overlap)
}

/// Receives each kept tile: (tile index in its contig, positive classes, label row of `row_bytes`).
pub type TileEmit<'a> = dyn FnMut(u64, u32, &[u8]) -> Result<()> + 'a;

/// Batches of one contig's peaks: each batch sorted by (start, end, class), batches in that order too (the peak
/// store yields its buckets); `None` once all are read.
pub type NextBatch<'a> = dyn FnMut() -> Result<Option<Vec<Peak>>> + 'a;

/// Label the `grid_tiles` full tiles of one contig from its peaks (in start order, from `next_batch`). For each
/// kept tile calls `emit(tile index in contig, positives, label row)`; the row is `row_bytes` long, bit o = byte
/// o/8, bit o%8. `has_base` is a bitset over the grid (tile holds at least one A/C/G/T). Peaks that made no kept
/// tile positive are added to `unused[class]`.
#[allow(clippy::too_many_arguments)]
pub fn label_contig(
    next_batch: &mut NextBatch,
    grid_tiles: u64,
    has_base: &[u64],
    rule: LabelRule,
    row_bytes: usize,
    unused: &mut [u64],
    emit: &mut TileEmit,
) -> Result<()> {
    let mo = rule.min_overlap as u64;
    let mut rows = vec![0u8; CHUNK_TILES as usize * row_bytes]; // (CHUNK_TILES, row_bytes)
    let mut keep = vec![false; CHUNK_TILES as usize];
    let mut pos = vec![0u32; CHUNK_TILES as usize];
    let mut active: Vec<Active> = Vec::new();
    // The current batch and the next peak in it not yet active.
    let mut batch: Vec<Peak> = Vec::new();
    let mut next = 0usize;
    let mut exhausted = false;
    let mut t0 = 0u64;
    while t0 < grid_tiles {
        let t1 = (t0 + CHUNK_TILES).min(grid_tiles);
        let n = (t1 - t0) as usize;
        let hi_bp = t1 * TILE;
        while !exhausted {
            if next == batch.len() {
                match next_batch()? {
                    Some(b) => (batch, next) = (b, 0),
                    None => exhausted = true,
                }
                continue;
            }
            if batch[next].start as u64 >= hi_bp {
                break;
            }
            active.push(Active { p: batch[next], used: false });
            next += 1;
        }
        rows[..n * row_bytes].fill(0);
        for a in &active {
            let (byte, bit) = ((a.p.class / 8) as usize, 1u8 << (a.p.class % 8));
            for k in positive_tiles(&a.p, t0, t1, mo) {
                rows[(k - t0) as usize * row_bytes + byte] |= bit;
            }
        }
        for i in 0..n {
            let row = &rows[i * row_bytes..(i + 1) * row_bytes];
            pos[i] = row.iter().map(|b| b.count_ones()).sum();
            let t = t0 + i as u64;
            keep[i] = if rule.min_positive == 0 {
                has_base[(t / 64) as usize] >> (t % 64) & 1 == 1
            } else {
                pos[i] >= rule.min_positive
            };
        }
        for a in active.iter_mut().filter(|a| !a.used) {
            a.used = positive_tiles(&a.p, t0, t1, mo).any(|k| keep[(k - t0) as usize]);
        }
        for i in (0..n).filter(|&i| keep[i]) {
            emit(t0 + i as u64, pos[i], &rows[i * row_bytes..(i + 1) * row_bytes])?;
        }
        active.retain(|a| {
            let alive = a.p.end as u64 > hi_bp;
            if !alive && !a.used {
                unused[a.p.class as usize] += 1;
            }
            alive
        });
        t0 = t1;
    }
    // Peaks still active or never reached lie (partly) in the dropped partial tile at the contig end.
    for a in active.iter().filter(|a| !a.used) {
        unused[a.p.class as usize] += 1;
    }
    for p in &batch[next..] {
        unused[p.class as usize] += 1;
    }
    if !exhausted {
        while let Some(b) = next_batch()? {
            for p in &b {
                unused[p.class as usize] += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ContigNames {
        ContigNames::new(&[("chr1".into(), 1000), ("2".into(), 500)])
    }

    #[test]
    fn chr_fallback() {
        let c = names();
        assert_eq!(c.resolve("chr1"), Some(0));
        assert_eq!(c.resolve("1"), Some(0));
        assert_eq!(c.resolve("chr2"), Some(1));
        assert_eq!(c.resolve("2"), Some(1));
        assert_eq!(c.resolve("chr3"), None);
    }

    #[test]
    fn parses_bed_and_narrowpeak() {
        let c = names();
        let bed = "track name=x\nbrowser position chr1\n# c\n\nchr1\t10\t20\textra\n2\t0\t500\n";
        let got = read_peak_file(bed.as_bytes(), Path::new("a.bed"), 3, &c).unwrap();
        assert_eq!(got, vec![(0, Peak { start: 10, end: 20, class: 3 }), (1, Peak { start: 0, end: 500, class: 3 })]);
        let np = "chr1\t1\t2\t.\t0\t.\t1.5\t-1\t-1\t5\n";
        assert_eq!(read_peak_file(np.as_bytes(), Path::new("a.bed"), 0, &c).unwrap().len(), 1);
        let bad = "chr1\t1\t2\t.\t0\t.\tx\t-1\t-1\t5\n";
        let e = read_peak_file(bad.as_bytes(), Path::new("a.bed"), 0, &c).unwrap_err().to_string();
        assert!(e.contains("a.bed:1 [field signalValue]"), "{e}");
        let e = read_peak_file("chr1\t5\n".as_bytes(), Path::new("b.narrowPeak"), 0, &c).unwrap_err().to_string();
        assert!(e.contains("b.narrowPeak:1 [field chromEnd]") && e.contains("too few"), "{e}");
    }

    #[test]
    fn unknown_contigs_fail_or_are_skipped_and_counted() {
        let c = names();
        let bed = "chr1\t10\t20\nchrEBV\t1\t5\nchr1_KI270706v1_random\t0\t9\nchrEBV\t7\t9\n2\t0\t5\n";
        let e = read_peak_file(bed.as_bytes(), Path::new("a.bed"), 0, &c).unwrap_err().to_string();
        assert!(e.contains("a.bed:2 [field chrom]") && e.contains("--skip-unknown-contigs"), "{e}");
        let (got, unknown) = read_peak_file_skipping(bed.as_bytes(), Path::new("a.bed"), 0, &c, true).unwrap();
        assert_eq!(got.len(), 2);
        let want: UnknownContigs = [("chr1_KI270706v1_random".to_string(), 1), ("chrEBV".to_string(), 2)].into();
        assert_eq!(unknown, want);
    }

    /// `peaks` (sorted) as a batch source of batches of `size` peaks, some of them empty.
    fn batches(peaks: &[Peak], size: usize) -> impl FnMut() -> Result<Option<Vec<Peak>>> {
        let mut list: Vec<Vec<Peak>> = peaks.chunks(size).flat_map(|c| [c.to_vec(), Vec::new()]).collect();
        list.reverse();
        move || Ok(list.pop())
    }

    #[test]
    fn label_sweep() {
        // One contig of 4 full tiles (512 bp + a partial tail), 2 classes, min_overlap 64.
        let mut peaks = vec![
            Peak { start: 100, end: 200, class: 0 }, // 28 bp in tile 0, 72 bp in tile 1 -> tile 1
            Peak { start: 0, end: 64, class: 1 },    // exactly 64 bp in tile 0 -> tile 0
            Peak { start: 300, end: 330, class: 1 }, // 30 bp: nothing
            Peak { start: 500, end: 530, class: 0 }, // in the tail: nothing
        ];
        peaks.sort();
        // The same answer whether the peaks come in one batch or one per batch (with empty batches between).
        for size in [4, 1] {
            let mut unused = vec![0u64; 2];
            let mut got = Vec::new();
            let rule = LabelRule { min_overlap: 64, min_positive: 1 };
            label_contig(&mut batches(&peaks, size), 4, &[0b1111], rule, 8, &mut unused, &mut |t, p, row| {
                got.push((t, p, row[0]));
                Ok(())
            })
            .unwrap();
            assert_eq!(got, vec![(0, 1, 0b10), (1, 1, 0b01)]);
            assert_eq!(unused, vec![1, 1]);
            // min_positive 0 keeps every tile with a base, here tiles 0, 1 and 3.
            let mut got = Vec::new();
            let rule = LabelRule { min_overlap: 64, min_positive: 0 };
            label_contig(&mut batches(&peaks, size), 4, &[0b1011], rule, 8, &mut [0; 2], &mut |t, _, _| {
                got.push(t);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, vec![0, 1, 3]);
            // A contig with no full tile: every peak is unused.
            let mut unused = vec![0u64; 2];
            label_contig(&mut batches(&peaks, size), 0, &[], rule, 8, &mut unused, &mut |_, _, _| Ok(())).unwrap();
            assert_eq!(unused, vec![2, 2]);
        }
    }
}
