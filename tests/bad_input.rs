//! Bad inputs to `mfd prepare`: each is an error naming the file, line and field (asserted on the message), and
//! no dataset directory (nor a partial one) exists afterwards.

mod common;

use common::*;
use mfd::data::prepare::prepare;

/// Run prepare on the fixture, expect an error containing every needle, and no dataset left behind.
fn fails(fx: &Fixture, needles: &[&str]) -> String {
    let e = prepare(&fx.args()).expect_err("prepare should fail").to_string();
    for n in needles {
        assert!(e.contains(n), "error {e:?} lacks {n:?}");
    }
    fx.assert_no_dataset();
    e
}

#[test]
fn malformed_fasta() {
    let fx = fixture();
    fx.write("genome.fa", "ACGT\n>chr1\nACGT\n");
    fails(&fx, &["genome.fa:1 [field header]", "sequence before the first '>' header"]);
    fx.write("genome.fa", ">chr1\nACGT\n>chr2\n>chr9\nAC\n");
    fails(&fx, &["genome.fa:3 [field sequence]", "contig 'chr2' is empty"]);
    fx.write("genome.fa", ">chr1\nACGT\n>chr1\nAC\n");
    fails(&fx, &["genome.fa:3 [field header]", "duplicate contig name 'chr1' (first at line 1)"]);
}

#[test]
fn invalid_character_in_fasta() {
    let fx = fixture();
    let mut lines: Vec<String> = fasta_text(60).lines().map(String::from).collect();
    lines[2].replace_range(42..43, ".");
    fx.write("genome.fa", &(lines.join("\n") + "\n"));
    fails(&fx, &["genome.fa:3 [field sequence]", "invalid character '.' at column 43", "contig 'chr1'"]);
}

#[test]
fn fai_not_matching() {
    let fx = fixture();
    prepare(&fx.args()).unwrap();
    std::fs::remove_dir_all(&fx.out).unwrap();
    let fai = std::fs::read_to_string(fx.path("genome.fa.fai")).unwrap();
    fx.write("genome.fa.fai", &fai.replace("chr2\t640\t", "chr2\t641\t"));
    fails(&fx, &["genome.fa.fai:2 [field length]", "index says 641, the FASTA has 640"]);
    fx.write("genome.fa.fai", &fai.replace("chr9", "chrX"));
    fails(&fx, &["genome.fa.fai:3 [field name]"]);
    fx.write("genome.fa.fai", &format!("{fai}chrY\t10\t9999\t60\t61\n"));
    fails(&fx, &["genome.fa.fai:4 [field name]", "contig 'chrY' is not in the FASTA"]);
    fx.write("genome.fa.fai", &fai.replace("\t61\n", "\tx\n"));
    fails(&fx, &["genome.fa.fai:1 [field line_width]", "not an integer"]);
}

#[test]
fn peak_on_unknown_contig() {
    let fx = fixture();
    fx.write("peaks/e0.bed", "chr1\t0\t100\nchrZ\t5\t10\n");
    fails(&fx, &["e0.bed:2 [field chrom]", "unknown contig \"chrZ\""]);
}

#[test]
fn peak_past_contig_end() {
    let fx = fixture();
    fx.write("peaks/e2.bed", "chr9\t500\t513\n");
    fails(&fx, &["e2.bed:1 [field chromEnd]", "end 513 is past the end of contig 'chr9' (length 512)"]);
}

#[test]
fn start_after_end() {
    let fx = fixture();
    fx.write("peaks/e0.bed", "track x\nchr1\t300\t200\n");
    fails(&fx, &["e0.bed:2 [field chromStart]", "start 300 > end 200"]);
}

#[test]
fn non_numeric_columns() {
    let fx = fixture();
    fx.write("peaks/e0.bed", "chr1\tabc\t200\n");
    fails(&fx, &["e0.bed:1 [field chromStart]", "'abc'"]);
    fx.write("peaks/e0.bed", "chr1\t1\t-5\n");
    fails(&fx, &["e0.bed:1 [field chromEnd]", "'-5'"]);
    fx.write("peaks/e0.bed", "chr1\t1\n");
    fails(&fx, &["e0.bed:1 [field chromEnd]", "too few columns: 2"]);
    fx.write("peaks/e0.bed", E0_BED);
    // narrowPeak in gzip: the line number is the line of the decompressed text.
    let bad = E1_NARROWPEAK.replace("\t8.1\t", "\tNaN?\t");
    std::fs::write(fx.path("peaks/e1.narrowPeak.gz"), gzip(&bad)).unwrap();
    fails(&fx, &["e1.narrowPeak.gz:1 [field pValue]", "not a number"]);
    let bad = E1_NARROWPEAK.replace("\t+\t", "\t*\t");
    std::fs::write(fx.path("peaks/e1.narrowPeak.gz"), gzip(&bad)).unwrap();
    fails(&fx, &["e1.narrowPeak.gz:2 [field strand]"]);
    std::fs::write(fx.path("peaks/e1.narrowPeak.gz"), gzip("chr1\t1\t5\tx\t0\t.\n")).unwrap();
    fails(&fx, &["e1.narrowPeak.gz:1 [field signalValue]", "too few columns: 6 (narrowPeak needs 10"]);
}

#[test]
fn metadata_row_missing() {
    let fx = fixture();
    fx.write("metadata.tsv", &METADATA.replace("E2\tATAC-seq\tlab a\n", ""));
    fails(&fx, &["peaks.tsv:5 [field experiment]", "experiment 'E2' has no row in", "metadata.tsv"]);
}

#[test]
fn metadata_wrong_field_count() {
    let fx = fixture();
    fx.write("metadata.tsv", &METADATA.replace("E2\tATAC-seq\tlab a\n", "E2\tATAC-seq\n"));
    fails(&fx, &["metadata.tsv:5", "2 tab-separated fields, the header has 3"]);
}

#[test]
fn duplicate_experiment_ids() {
    let fx = fixture();
    fx.write("peaks.tsv", "experiment\tpath\nE0\tpeaks/e0.bed\nE1\tpeaks/e2.bed\nE0\tpeaks/e3.bed\n");
    fails(&fx, &["peaks.tsv:4 [field experiment]", "duplicate experiment id 'E0' (first at line 2)"]);
    let fx = fixture();
    fx.write("metadata.tsv", &format!("{METADATA}E1\tagain\tlab d\n"));
    fails(&fx, &["metadata.tsv:7 [field id]", "duplicate experiment id 'E1' (first at line 6)"]);
}

#[test]
fn missing_peak_file_and_bad_table() {
    let fx = fixture();
    fx.write("peaks.tsv", "E0\tpeaks/e0.bed\nE1\tpeaks/nope.bed\n");
    fails(&fx, &["peaks.tsv:2 [field path]", "nope.bed does not exist"]);
    fx.write("peaks.tsv", "E0\tpeaks/e0.bed\textra\n");
    fails(&fx, &["peaks.tsv:1", "3 tab-separated fields"]);
}

#[test]
fn empty_peak_file_is_a_warning_and_iupac_is_counted() {
    // The fixture's E3 file is empty and chr1 holds R and y: prepare succeeds, warns, and counts them.
    let fx = fixture();
    let s = prepare(&fx.args()).unwrap();
    assert!(s.warnings.iter().any(|w| w.contains("e3.bed: no peaks")), "{:?}", s.warnings);
    let m = mfd::data::manifest::Manifest::load(&fx.out).unwrap();
    assert_eq!((m.contigs[0].iupac_bases, m.contigs[0].n_bases), (2, 10));
}

#[test]
fn refuses_non_empty_out_and_bad_config() {
    let fx = fixture();
    std::fs::create_dir(&fx.out).unwrap();
    std::fs::write(fx.out.join("keep.txt"), "mine").unwrap();
    let e = prepare(&fx.args()).unwrap_err().to_string();
    assert!(e.contains("already exists and is not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(fx.out.join("keep.txt")).unwrap(), "mine");
    // An existing empty directory is fine: it is replaced by the dataset.
    std::fs::remove_file(fx.out.join("keep.txt")).unwrap();
    prepare(&fx.args()).unwrap();
    assert!(fx.out.join("manifest.toml").exists());

    let fx = fixture();
    let mut a = fx.args();
    a.config = Some(fx.write("prepare.toml", "min_overlap = 64\nmin_overlapp = 3\n"));
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("prepare.toml:2") && e.contains("min_overlapp"), "{e}");
    a.config = Some(fx.write("prepare.toml", "min_overlap = 200\n"));
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("config min_overlap") && e.contains("1..=128"), "{e}");
    fx.assert_no_dataset();
}

#[test]
fn nothing_kept_is_an_error() {
    let fx = fixture();
    fx.write("peaks.tsv", "E2\tpeaks/e2.bed\n");
    fails(&fx, &["no tile was kept"]);
}

#[test]
fn cli_error_is_one_line_and_exit_code() {
    let fx = fixture();
    fx.write("peaks/e0.bed", "chr1\t0\tten\n");
    let o = fx.run_prepare_cli();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: ") && err.contains("e0.bed:1 [field chromEnd]"), "{err}");
    fx.assert_no_dataset();
}

/// A UTF-8 byte-order mark (as some editors write) is dropped from peaks.tsv, a BED file and the metadata TSV:
/// the dataset is the same as without it (it used to stick to the first field: "unknown contig 'chr1'").
#[test]
fn byte_order_marks_are_dropped() {
    let fx = fixture();
    prepare(&fx.args()).unwrap();
    let want = std::fs::read(fx.out.join("labels-00000.bin")).unwrap();
    std::fs::remove_dir_all(&fx.out).unwrap();
    for name in ["peaks.tsv", "peaks/e0.bed", "metadata.tsv"] {
        let text = std::fs::read_to_string(fx.path(name)).unwrap();
        fx.write(name, &format!("\u{feff}{text}"));
    }
    prepare(&fx.args()).unwrap();
    assert!(std::fs::read(fx.out.join("labels-00000.bin")).unwrap() == want);
    // Elsewhere an invisible character is shown escaped.
    fx.write("peaks/e0.bed", "chr1\t0\t100\n\u{200b}chr1\t5\t10\n");
    std::fs::remove_dir_all(&fx.out).unwrap();
    fails(&fx, &["e0.bed:2 [field chrom]", "\\u{200b}chr1"]);
}

/// A peak path that is a directory or a FIFO, an --out below a regular file: errors that say so.
#[test]
fn peak_path_kinds_and_out_below_a_file() {
    let fx = fixture();
    std::fs::create_dir(fx.path("peaks/dir.bed")).unwrap();
    fx.write("peaks.tsv", "E0\tpeaks/e0.bed\nE1\tpeaks/dir.bed\n");
    fails(&fx, &["peaks.tsv:2 [field path]", "is a directory"]);
    let fifo = fx.path("peaks/fifo.bed");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if made {
        fx.write("peaks.tsv", "E0\tpeaks/e0.bed\nE1\tpeaks/fifo.bed\n");
        fails(&fx, &["peaks.tsv:2 [field path]", "not a regular file"]);
    }
    let fx = fixture();
    let file = fx.write("plain.txt", "x");
    let mut a = fx.args();
    a.out = file.join("sub/ds");
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("plain.txt is a file, not a directory"), "{e}");
}

/// A .fai with line_width 0 or below line_bases is refused where it is read (prepare too).
#[test]
fn fai_line_sizes_are_validated() {
    let fx = fixture();
    prepare(&fx.args()).unwrap();
    std::fs::remove_dir_all(&fx.out).unwrap();
    let fai = std::fs::read_to_string(fx.path("genome.fa.fai")).unwrap();
    fx.write("genome.fa.fai", &fai.replacen("\t61\n", "\t0\n", 1));
    fails(&fx, &["genome.fa.fai:1 [field line_width]", "less than line_bases"]);
    fx.write("genome.fa.fai", &fai.replacen("\t60\t61\n", "\t0\t61\n", 1));
    fails(&fx, &["genome.fa.fai:1 [field line_bases]"]);
}

/// A bgzip FASTA cut mid-block: an error naming the file and saying it is truncated (was "failed to fill whole
/// buffer"). The fixture's genome is compressed with small blocks so the cut lands inside the stream.
#[test]
fn truncated_bgzip_fasta() {
    let fx = fixture();
    prepare(&fx.args()).unwrap(); // writes genome.fa.fai
    let gz = fx.path("genome.fa.gz");
    let bytes = bgzip(&fasta_text(60));
    std::fs::copy(fx.path("genome.fa.fai"), fx.path("genome.fa.gz.fai")).unwrap();
    std::fs::write(fx.path("genome.fa.gz.gzi"), 0u64.to_le_bytes()).unwrap();
    let mut a = fx.args();
    a.fasta = gz.clone();
    a.out = fx.path("ds-cut");
    for cut in [bytes.len() / 2, bytes.len() - 30, 20] {
        std::fs::write(&gz, &bytes[..cut]).unwrap();
        let e = prepare(&a).unwrap_err().to_string();
        assert!(e.contains("genome.fa.gz") && e.len() < 400, "cut at {cut}: {e}");
        assert!(!e.contains("fill whole buffer"), "cut at {cut}: {e}");
        assert!(!a.out.exists());
    }
}
