//! `mfd prepare` / `mfd inspect` on hand-written tiny inputs: exact genome codes, tiles, labels, splits, class
//! counts, manifest and checksums (fixture described in tests/common/mod.rs).

mod common;

use common::*;
use mfd::data::manifest::{Manifest, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use mfd::data::prepare::prepare;

#[test]
fn exact_dataset_from_tiny_inputs() {
    let fx = fixture();
    let s = prepare(&fx.args()).unwrap();
    let ds = &fx.out;

    // Genome: contigs concatenated in FASTA order; IUPAC letters counted and stored as N.
    let m = Manifest::load(ds).unwrap();
    let table: Vec<(&str, u64, u64, u64, u64)> =
        m.contigs.iter().map(|c| (c.name.as_str(), c.length, c.offset, c.n_bases, c.iupac_bases)).collect();
    assert_eq!(table, vec![("chr1", 4136, 0, 10, 2), ("chr2", 640, 4136, 128, 0), ("chr9", 512, 4776, 0, 0)]);
    let (shape, genome) = read_u8(&ds.join("genome.bin"), "genome");
    assert_eq!(shape, vec![5288]);
    let expect: Vec<u8> = contigs()
        .iter()
        .flat_map(|(_, s)| {
            s.bytes().map(|b| match b.to_ascii_uppercase() {
                b'A' => 0,
                b'C' => 1,
                b'G' => 2,
                b'T' => 3,
                _ => 4,
            })
        })
        .collect();
    assert_eq!(genome, expect);
    assert_eq!(&genome[..9], &[0, 1, 2, 3, 3, 4, 4, 0, 0]);

    // Tiles: (contig, start, split, positives); labels: bit o of byte o/8.
    let (shape, tiles) = read_u32(&ds.join("tiles-00000.bin"), "tiles");
    assert_eq!(shape, vec![6, 4]);
    let t = SPLIT_TRAIN;
    assert_eq!(tiles, vec![0, 0, t, 1, 0, 128, t, 1, 0, 256, t, 2, 1, 256, t, 1, 1, 384, t, 1, 2, 0, SPLIT_TEST, 1]);
    let (shape, labels) = read_u8(&ds.join("labels-00000.bin"), "labels");
    assert_eq!(shape, vec![6, 8]);
    let first_bytes: Vec<u8> = labels.chunks(8).map(|r| r[0]).collect();
    assert_eq!(first_bytes, vec![0b01, 0b01, 0b11, 0b10, 0b10, 0b01]);
    assert!(labels.chunks(8).all(|r| r[1..].iter().all(|&b| b == 0)));

    // Counts, classes and metadata in class order.
    let c = &m.counts;
    assert_eq!((c.tiles, c.train, c.val, c.test, c.positives, c.peaks), (6, 5, 0, 1, 7, 8));
    assert_eq!(m.classes, vec!["E0", "E1", "E2", "E3"]);
    assert_eq!((m.num_classes, m.label_row_bytes, m.tile_size), (4, 8, 128));
    assert_eq!(s.peaks_unused, 2);
    assert_eq!(
        std::fs::read_to_string(ds.join("classes.tsv")).unwrap(),
        "class\texperiment\tpeaks\tpositives_train\tpositives_val\tpositives_test\tpeaks_unused\n\
         0\tE0\t4\t3\t0\t1\t0\n1\tE1\t2\t3\t0\t0\t0\n2\tE2\t2\t0\t0\t0\t2\n3\tE3\t0\t0\t0\t0\t0\n"
    );
    assert_eq!(
        std::fs::read_to_string(ds.join("metadata.tsv")).unwrap(),
        "id\tassay\tlab\nE0\tChIP-seq\tlab a\nE1\tChIP-seq\tlab c\nE2\tATAC-seq\tlab a\nE3\tDNase-seq\tlab b\n"
    );

    // Warnings: the empty peak file, the metadata row of an unknown experiment, classes without positives.
    let w = s.warnings.join("\n");
    assert!(w.contains("e3.bed: no peaks (experiment 'E3'"), "{w}");
    assert!(w.contains("1 row(s) for experiments not in"), "{w}");
    assert!(w.contains("2 experiment(s) have no positive kept tile"), "{w}");

    // Sources and files carry checksums; the .fai was written beside the FASTA.
    let roles: Vec<&str> = m.sources.iter().map(|s| s.role.as_str()).collect();
    assert_eq!(roles, vec!["fasta", "peaks_table", "metadata", "peaks:E0", "peaks:E1", "peaks:E2", "peaks:E3"]);
    let (bytes, sha) = mfd::data::manifest::sha256_file(&fx.fasta).unwrap();
    assert_eq!((m.sources[0].bytes, m.sources[0].sha256.as_str()), (bytes, sha.as_str()));
    let (_, sha_e1) = mfd::data::manifest::sha256_file(&fx.path("peaks/e1.narrowPeak.gz")).unwrap();
    assert_eq!(m.sources[4].sha256, sha_e1);
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["genome.bin", "metadata.tsv", "classes.tsv"]);
    assert_eq!(m.shards.len(), 1);
    let fai = std::fs::read_to_string(fx.path("genome.fa.fai")).unwrap();
    assert!(fai.starts_with("chr1\t4136\t18\t60\t61\nchr2\t640\t4241\t60\t61\n"), "{fai}");

    // inspect summarises and verifies.
    let text = mfd::data::inspect::summary(ds).unwrap();
    assert!(text.contains("tiles: 6 (train 5"), "{text}");
    assert!(text.contains("chr2") && text.contains("labels: 7 positives"), "{text}");
    let report = mfd::data::inspect::verify(ds, &m).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.checked, 3 + 2 + 7);

    // A corrupted label shard fails verification, naming the file.
    let lp = ds.join("labels-00000.bin");
    let mut bytes = std::fs::read(&lp).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&lp, bytes).unwrap();
    let report = mfd::data::inspect::verify(ds, &m).unwrap();
    assert_eq!(report.failures.len(), 1);
    assert!(report.failures[0].contains("labels-00000.bin") && report.failures[0].contains("sha256"));
}

#[test]
fn existing_fai_is_checked_and_bgzip_matches_plain() {
    let fx = fixture();
    prepare(&fx.args()).unwrap(); // writes genome.fa.fai
    let plain = std::fs::read(fx.out.join("genome.bin")).unwrap();

    // Second run with the (now existing, matching) .fai.
    let mut a = fx.args();
    a.out = fx.path("ds2");
    prepare(&a).unwrap();
    assert_eq!(std::fs::read(fx.path("ds2/genome.bin")).unwrap(), plain);

    // bgzip FASTA with .fai (uncompressed offsets, same as plain) and .gzi.
    let gz = fx.path("genome.fa.gz");
    std::fs::write(&gz, bgzip(&fasta_text(60))).unwrap();
    let mut a = fx.args();
    a.fasta = gz.clone();
    a.out = fx.path("ds3");
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("needs .fai"), "{e}");
    std::fs::copy(fx.path("genome.fa.fai"), fx.path("genome.fa.gz.fai")).unwrap();
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("needs .gzi"), "{e}");
    std::fs::write(fx.path("genome.fa.gz.gzi"), 0u64.to_le_bytes()).unwrap();
    prepare(&a).unwrap();
    assert_eq!(std::fs::read(fx.path("ds3/genome.bin")).unwrap(), plain);
    let m3 = Manifest::load(&fx.path("ds3")).unwrap();
    let m1 = Manifest::load(&fx.out).unwrap();
    assert_eq!((m3.counts, m3.contigs), (m1.counts, m1.contigs));
}

#[test]
fn config_min_positive_zero_and_val_blocks() {
    let fx = fixture();
    let mut a = fx.args();
    a.config = Some(fx.write("prepare.toml", "min_positive = 0\nval_fraction = 0.25\nshard_tiles = 16\n"));
    let s = prepare(&a).unwrap();
    // 32 chr1 tiles + 4 chr2 tiles (tile 4 is all N) + 4 chr9 tiles; L = 36 / 10 = 3, v = floor(0.25 * 40 / 10) = 1.
    assert_eq!((s.counts.tiles, s.counts.train, s.counts.val, s.counts.test), (40, 24, 12, 4));
    let m = Manifest::load(&fx.out).unwrap();
    let shards: Vec<(u64, u64)> = m.shards.iter().map(|s| (s.first_tile, s.num_tiles)).collect();
    assert_eq!(shards, vec![(0, 16), (16, 16), (32, 8)]);
    let mut tiles = Vec::new();
    for sh in &m.shards {
        tiles.extend(read_u32(&fx.out.join(&sh.tiles.name), "tiles").1);
    }
    let val: Vec<(u32, u32)> = tiles.chunks(4).filter(|t| t[2] == SPLIT_VAL).map(|t| (t[0], t[1] / 128)).collect();
    let mut want: Vec<(u32, u32)> = (0..32).step_by(3).map(|k| (0, k)).collect();
    want.push((1, 1)); // train rank 33 = chr2 tile 1
    assert_eq!(val, want);
    assert!(!tiles.chunks(4).any(|t| t[0] == 1 && t[1] == 512), "the all-N tile is dropped");
    let classes = std::fs::read_to_string(fx.out.join("classes.tsv")).unwrap();
    assert!(classes.contains("\n0\tE0\t4\t2\t1\t1\t0\n"), "{classes}");
    assert_eq!(m.settings.val_fraction, 0.25);

    // min_overlap 60 makes E2's 60-bp peak at chr1:900-960 positive.
    let mut a = fx.args();
    a.out = fx.path("ds60");
    a.config = Some(fx.write("p60.toml", "min_overlap = 60\ntest_contigs = [\"9\"]\n"));
    let s = prepare(&a).unwrap();
    assert_eq!((s.counts.tiles, s.counts.test, s.peaks_unused), (7, 1, 1));
}

#[test]
fn cli_prints_warnings_and_summary() {
    let fx = fixture();
    let bin = env!("CARGO_BIN_EXE_mfd");
    let o = fx.run_prepare_cli();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: ") && err.contains("e3.bed: no peaks"), "{err}");
    assert!(err.contains("6 kept of 41"), "{err}");
    let o = std::process::Command::new(bin).args(["inspect", "--verify"]).arg(&fx.out).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out} {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("verify: all 12 files match"), "{out}");
}

#[test]
fn skip_unknown_contigs_counts_and_reports_per_contig() {
    let fx = fixture();
    fx.write("peaks/e0.bed", "chr1\t0\t100\nchrEBV\t5\t10\nchrEBV\t50\t60\nchrUn_KI270742v1\t1\t2\n");
    let o = fx.run_prepare_cli();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("e0.bed:2 [field chrom]"), "{err}");
    assert!(err.contains("--skip-unknown-contigs"), "the error names the flag: {err}");
    fx.assert_no_dataset();
    let o = fx.run_prepare_cli_with(&["--skip-unknown-contigs"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped 3 peak(s) on 2 contig(s)"), "{err}");
    assert!(err.contains("chrEBV\t2") && err.contains("chrUn_KI270742v1\t1"), "{err}");
    let mut a = fx.args();
    a.out = fx.path("ds2");
    a.config = Some(fx.write("skip.toml", "skip_unknown_contigs = true\n"));
    let s = prepare(&a).unwrap();
    assert_eq!(s.unknown_contigs.get("chrEBV"), Some(&2));
    assert_eq!(Manifest::load(&a.out).unwrap().counts.peaks, Manifest::load(&fx.out).unwrap().counts.peaks);
}

#[test]
fn spilling_peaks_gives_the_identical_dataset() {
    let fx = fixture();
    let s = prepare(&fx.args()).unwrap();
    let m = Manifest::load(&fx.out).unwrap();
    assert_eq!((m.counts.peaks, m.counts.peaks_unused), (8, s.peaks_unused));
    // spill_peaks = 1 and 3: every peak, or every third, goes through the spill files.
    for n in [1, 3] {
        let mut a = fx.args();
        a.out = fx.path(&format!("ds-spill{n}"));
        a.config = Some(fx.write(&format!("spill{n}.toml"), &format!("spill_peaks = {n}\n")));
        prepare(&a).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(&a.out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            ["classes.tsv", "genome.bin", "labels-00000.bin", "manifest.toml", "metadata.tsv", "tiles-00000.bin"]
        );
        for name in &names {
            let (want, got) = (std::fs::read(fx.out.join(name)).unwrap(), std::fs::read(a.out.join(name)).unwrap());
            assert!(want == got, "{name} differs with spill_peaks = {n}");
        }
        assert_eq!(Manifest::load(&a.out).unwrap(), m);
    }
    let mut a = fx.args();
    a.out = fx.path("ds-spill0");
    a.config = Some(fx.write("spill0.toml", "spill_peaks = 0\n"));
    let e = prepare(&a).unwrap_err().to_string();
    assert!(e.contains("spill_peaks"), "{e}");
}

/// Throughput on a generated ~100 Mb genome with 300 experiments (run by hand:
/// `cargo test --test prepare -- --ignored --nocapture throughput`). Prints MB of genome per second and peak RSS.
#[test]
#[ignore = "benchmark: prints prepare throughput, run by hand with --ignored --nocapture"]
fn throughput() {
    use mfd::rng::Rng;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = Rng::new(7);
    // 5 contigs of 20 Mb (a multiple of the 60-base line), 100 Mb in all.
    let contigs: Vec<(String, u64)> = (1..=5).map(|i| (format!("chr{i}"), 19_999_980)).collect();
    let mut fa = std::io::BufWriter::new(std::fs::File::create(d.join("g.fa")).unwrap());
    let mut line = [0u8; 61];
    line[60] = b'\n';
    for (name, len) in &contigs {
        writeln!(fa, ">{name}").unwrap();
        for _ in 0..len / 60 {
            for b in &mut line[..60] {
                *b = b"ACGT"[(rng.next_u64() & 3) as usize];
            }
            fa.write_all(&line).unwrap();
        }
    }
    drop(fa);
    // 300 experiments x 5,000 peaks (half gzip narrowPeak, half BED3), 200-1000 bp each.
    let o = 300;
    let mut table = String::from("experiment\tpath\n");
    let mut meta = String::from("id\tassay\tbiosample\n");
    for e in 0..o {
        let mut text = String::new();
        for _ in 0..5_000 {
            let (name, len) = &contigs[rng.below(contigs.len() as u64) as usize];
            let w = 200 + rng.below(800);
            let s = rng.below(len - w);
            if e % 2 == 0 {
                text.push_str(&format!("{name}\t{s}\t{}\tp\t500\t.\t5.0\t3.0\t2.0\t{}\n", s + w, w / 2));
            } else {
                text.push_str(&format!("{name}\t{s}\t{}\n", s + w));
            }
        }
        let file = if e % 2 == 0 { format!("e{e}.narrowPeak.gz") } else { format!("e{e}.bed") };
        let bytes = if e % 2 == 0 { gzip(&text) } else { text.into_bytes() };
        std::fs::write(d.join(&file), bytes).unwrap();
        table.push_str(&format!("E{e}\t{file}\n"));
        meta.push_str(&format!("E{e}\tChIP-seq\tcell{}\n", e % 17));
    }
    std::fs::write(d.join("peaks.tsv"), table).unwrap();
    std::fs::write(d.join("meta.tsv"), meta).unwrap();
    let args = mfd::data::prepare::PrepareArgs {
        fasta: d.join("g.fa"),
        peaks: d.join("peaks.tsv"),
        metadata: d.join("meta.tsv"),
        out: d.join("ds"),
        config: None,
    };
    let t = std::time::Instant::now();
    mfd::data::manifest::sha256_file(&d.join("g.fa")).unwrap();
    println!("sha256 of the FASTA alone: {:.2} s", t.elapsed().as_secs_f64());
    // utime + stime of this process in clock ticks (100 per second), from /proc/self/stat.
    let cpu = || -> f64 {
        let st = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = st.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
            / 100.0
    };
    let (t, c0) = (std::time::Instant::now(), cpu());
    let s = prepare(&args).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("prepare CPU time (all threads, user + system): {:.2} s", cpu() - c0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| st.lines().find(|l| l.starts_with("VmHWM")).map(str::to_string))
        .unwrap_or_default();
    println!(
        "prepare: {} bp, {} classes, {} peaks, {} tiles kept in {secs:.2} s = {:.1} MB/s of genome; {rss}; {:?}",
        s.genome_bp,
        s.classes,
        s.counts.peaks,
        s.counts.tiles,
        s.genome_bp as f64 / 1e6 / secs,
        s.phases
    );
}
