//! `mfd prepare` on the real-format fixtures (tests/data, provenance in tests/data/PROVENANCE.md): a 1.04 Mb slice
//! of GRCh37 chr20, real GM12878 CTCF summits and blood-cell regions as BED/narrowPeak (one gzip'd), ENCODE-like
//! metadata; plus the real vt VCF records, whose REF alleles must match the slice.

use mfd::data::dataset::Dataset;
use mfd::data::manifest::SPLIT_TEST;
use mfd::data::prepare::{prepare, PrepareArgs};
use std::io::BufRead;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Copy the fixture inputs into a temp dir (prepare may write a .fai beside the FASTA; the repo stays clean).
fn copy_fixtures(dst: &Path) {
    let src = fixtures();
    std::fs::create_dir_all(dst.join("peaks")).unwrap();
    for f in ["chr20_slice.fa", "chr20_slice.fa.fai", "peaks.tsv", "metadata.tsv"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("peaks")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join("peaks").join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn prepare_runs_on_the_real_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in");
    copy_fixtures(&inp);
    let out = dir.path().join("dataset");
    let s = prepare(&PrepareArgs {
        fasta: inp.join("chr20_slice.fa"),
        peaks: inp.join("peaks.tsv"),
        metadata: inp.join("metadata.tsv"),
        out: out.clone(),
        config: None,
    })
    .unwrap();
    assert_eq!(s.genome_bp, 1_040_000);
    assert_eq!(s.classes, 8);
    let ds = Dataset::open_verified(&out).unwrap();
    let m = ds.manifest();
    assert_eq!(m.contigs.len(), 1);
    assert_eq!(m.contigs[0].name, "chr20_36680000");
    assert_eq!(m.contigs[0].n_bases, 0);
    assert_eq!(m.classes[0], "ENCFF279CYY");
    // 18 peak lines of 200 bp (CTCF summits +-100, blood regions): every one touches at least one tile by >= 64 bp.
    assert!(ds.num_tiles() >= 9, "{} tiles", ds.num_tiles());
    assert_eq!(s.peaks_unused, 0);
    assert!(ds.split_indices(SPLIT_TEST).is_empty(), "the slice is chr20: no test contig");
    // The two CTCF experiments share one peak file: identical label columns.
    for g in 0..ds.num_tiles() {
        assert_eq!(ds.label(g, 0), ds.label(g, 1));
        assert!(ds.tile(g).positives >= 1);
    }
}

#[test]
fn real_vcf_records_match_the_slice() {
    let fa = std::fs::read_to_string(fixtures().join("chr20_slice.fa")).unwrap();
    let seq: String = fa.lines().filter(|l| !l.starts_with('>')).collect();
    let vcf = std::fs::File::open(fixtures().join("variants.vcf")).unwrap();
    let mut n = 0;
    for line in std::io::BufReader::new(vcf).lines() {
        let line = line.unwrap();
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], "chr20_36680000");
        let pos: usize = f[1].parse().unwrap();
        assert_eq!(&seq[pos - 1..pos - 1 + f[3].len()], f[3], "REF at {pos}");
        n += 1;
    }
    assert_eq!(n, 9);
}
