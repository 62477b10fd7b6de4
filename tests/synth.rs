//! Integration tests of `mfd synth` on the tiny preset: determinism, FASTA index, VCF REF, peaks versus the
//! generative labels, GC-neutral planting, oracle AUROC and label rates, and the output-directory rules.

use mfd::data::binfile::{BinFile, DType};
use mfd::data::synth::{preset, synthesize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("synth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One tiny dataset (seed 7) shared by the read-only tests.
fn tiny() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch("tiny7");
        synthesize(&preset("tiny").unwrap(), 7, &d).unwrap();
        d
    })
}

/// The tiny preset's experiment count O.
fn tiny_o() -> usize {
    preset("tiny").unwrap().n_experiments
}

fn params(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("truth/params.json")).unwrap()).unwrap()
}

/// Contig name -> sequence, parsed from genome.fa.
fn genome(dir: &Path) -> (Vec<String>, HashMap<String, Vec<u8>>) {
    let text = std::fs::read(dir.join("genome.fa")).unwrap();
    let mut order = Vec::new();
    let mut map: HashMap<String, Vec<u8>> = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if let Some(name) = line.strip_prefix(b">") {
            order.push(String::from_utf8(name.to_vec()).unwrap());
            map.insert(order.last().unwrap().clone(), Vec::new());
        } else if !line.is_empty() {
            assert!(line.len() <= 60);
            map.get_mut(order.last().unwrap()).unwrap().extend_from_slice(line);
        }
    }
    (order, map)
}

fn auroc(score: &[f32], label: &[u8]) -> f64 {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if label[k] == 1 {
                rank_sum_pos += r;
            }
        }
        i = j + 1;
    }
    let np = label.iter().filter(|&&y| y == 1).count() as f64;
    let nn = label.len() as f64 - np;
    (rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn)
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let a = tiny();
    let b = scratch("tiny7b");
    synthesize(&preset("tiny").unwrap(), 7, &b).unwrap();
    let mut files = vec![
        "genome.fa",
        "genome.fa.fai",
        "metadata.tsv",
        "peaks.tsv",
        "variants.vcf",
        "truth/params.json",
        "truth/tile_factors.bin",
        "truth/y.bin",
        "truth/p.bin",
        "truth/motif_instances.bed",
        "truth/variant_deltas.bin",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for e in std::fs::read_dir(a.join("peaks")).unwrap() {
        files.push(format!("peaks/{}", e.unwrap().file_name().to_string_lossy()));
    }
    assert_eq!(files.len(), 11 + tiny_o());
    for f in &files {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    let c = scratch("tiny8");
    synthesize(&preset("tiny").unwrap(), 8, &c).unwrap();
    for f in ["genome.fa", "metadata.tsv", "peaks/SYN00001.narrowPeak"] {
        assert!(std::fs::read(a.join(f)).unwrap() != std::fs::read(c.join(f)).unwrap(), "{f} equal across seeds");
    }
    let _ = std::fs::remove_dir_all(&b);
    let _ = std::fs::remove_dir_all(&c);
}

#[test]
fn fai_is_correct() {
    let dir = tiny();
    let fa = std::fs::read(dir.join("genome.fa")).unwrap();
    let (order, seqs) = genome(dir);
    assert_eq!(order, ["chr1", "chr2", "chr9", "chr10"]);
    let fai = std::fs::read_to_string(dir.join("genome.fa.fai")).unwrap();
    let lines: Vec<&str> = fai.lines().collect();
    assert_eq!(lines.len(), 4);
    for (line, name) in lines.iter().zip(&order) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], name);
        let (len, off): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!((f[3], f[4]), ("60", "61"));
        let seq = &seqs[name];
        assert_eq!(len, seq.len());
        // Random access the samtools way: byte = offset + pos / 60 * 61 + pos % 60.
        for pos in [0, 59, 60, 61, 12_345, len - 1] {
            assert_eq!(fa[off + pos / 60 * 61 + pos % 60], seq[pos], "{name}:{pos}");
        }
    }
    // N runs and IUPAC codes are present, lowercase is not.
    let all: Vec<u8> = order.iter().flat_map(|n| seqs[n].clone()).collect();
    assert!(all.iter().filter(|&&b| b == b'N').count() > 1_000);
    let iupac = all.iter().filter(|&&b| b"RYSWKMBDHV".contains(&b)).count();
    assert!((4..=64).contains(&iupac), "{iupac}");
    assert!(all.iter().all(|b| b"ACGTNRYSWKMBDHV".contains(b)));
}

#[test]
fn vcf_is_sorted_and_ref_matches_genome() {
    let dir = tiny();
    let (order, seqs) = genome(dir);
    let vcf = std::fs::read_to_string(dir.join("variants.vcf")).unwrap();
    assert!(vcf.starts_with("##fileformat=VCFv4.2\n"));
    assert_eq!(vcf.lines().filter(|l| l.starts_with("##contig=<ID=")).count(), 4);
    let mut last = (0usize, 0u64);
    let mut classes: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    for line in vcf.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 8);
        let ci = order.iter().position(|c| c == f[0]).unwrap();
        let pos: u64 = f[1].parse().unwrap();
        assert!((ci, pos) > last, "unsorted at {line}");
        last = (ci, pos);
        assert_eq!(f[3].as_bytes()[0], seqs[f[0]][pos as usize - 1], "REF mismatch at {line}");
        assert_ne!(f[3], f[4]);
        let class = f[7].split(';').next().unwrap().strip_prefix("CLASS=").unwrap();
        *classes.entry(class.to_string()).or_default() += 1;
        n += 1;
    }
    for c in ["motif_breaking", "motif_creating", "gc_only", "neutral"] {
        assert!(classes.get(c).copied().unwrap_or(0) >= 30, "{classes:?}");
    }
    // Deltas: shape and the sign of each class's biological effect.
    let o = tiny_o();
    let d = BinFile::open(dir.join("truth/variant_deltas.bin"), "vdeltas", DType::F32).unwrap();
    assert_eq!(d.shape(), &[n, 2, o as u64]);
    let d = d.data::<f32>().unwrap();
    let tsv = std::fs::read_to_string(dir.join("truth/variants.tsv")).unwrap();
    for (i, line) in tsv.lines().skip(1).enumerate() {
        let class = line.split('\t').nth(5).unwrap();
        let bio = &d[i * 2 * o..i * 2 * o + o];
        match class {
            "motif_breaking" => assert!(bio.iter().all(|&x| x <= 0.0) && bio.iter().any(|&x| x < 0.0)),
            "motif_creating" => assert!(bio.iter().all(|&x| x >= 0.0) && bio.iter().any(|&x| x > 0.0)),
            _ => assert!(bio.iter().all(|&x| x == 0.0)),
        }
        if class == "neutral" {
            let tech = &d[i * 2 * o + o..(i + 1) * 2 * o];
            assert!(tech.iter().all(|&x| x.abs() < 1e-6), "{line}");
        }
    }
}

#[test]
fn peaks_are_sorted_tile_aligned_and_reproduce_y() {
    let dir = tiny();
    let prm = params(dir);
    let contigs: Vec<(String, u64, u64, u64)> = prm["contigs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let u = |k: &str| c[k].as_u64().unwrap();
            (c["name"].as_str().unwrap().to_string(), u("length"), u("tile_offset"), u("n_tiles"))
        })
        .collect();
    let n_tiles = prm["n_grid_tiles"].as_u64().unwrap() as usize;
    let held: Vec<&str> = prm["held_out"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(held.len(), 2);
    let y = BinFile::open(dir.join("truth/y.bin"), "ylabel", DType::U8).unwrap();
    assert_eq!(y.shape(), &[n_tiles as u64, tiny_o() as u64]);
    let y = y.data::<u8>().unwrap();
    let table = std::fs::read_to_string(dir.join("peaks.tsv")).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows[0], "experiment\tpath");
    assert_eq!(rows.len(), 1 + tiny_o());
    let mut tracks = 0;
    for (o, row) in rows[1..].iter().enumerate() {
        let (id, path) = row.split_once('\t').unwrap();
        let text = std::fs::read_to_string(dir.join(path)).unwrap();
        let mut got = vec![0u8; n_tiles];
        let mut last = (0usize, 0u64);
        for line in text.lines() {
            if line.starts_with("track") {
                tracks += 1;
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 10);
            let ci = contigs.iter().position(|c| c.0 == f[0]).unwrap();
            let (s, e): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            assert!(s < e && e <= contigs[ci].1, "{line}");
            assert!(s % 128 == 0 && e % 128 == 0);
            assert!((ci, s) >= last, "unsorted: {line}");
            last = (ci, e);
            let score: u32 = f[4].parse().unwrap();
            assert!(score <= 1000);
            let summit: u64 = f[9].parse().unwrap();
            assert!(summit < e - s);
            for k in s / 128..e / 128 {
                got[(contigs[ci].2 + k) as usize] = 1;
            }
        }
        let held_out = held.contains(&id);
        for (ci, c) in contigs.iter().enumerate() {
            let test = c.0 == "chr9" || c.0 == "chr10";
            for k in c.2..c.2 + c.3 {
                let want = if held_out && !test { 0 } else { y[k as usize * tiny_o() + o] };
                assert_eq!(got[k as usize], want, "{id} contig {ci} tile {k}");
            }
        }
    }
    assert!(tracks >= 2);
}

#[test]
fn planting_is_gc_neutral() {
    let dir = tiny();
    let prm = params(dir);
    let cols: Vec<&str> = prm["factor_columns"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let f = cols.len();
    let gc = cols.iter().position(|&c| c == "gc").unwrap();
    let nf = cols.iter().position(|&c| c == "n_frac").unwrap();
    let tf = BinFile::open(dir.join("truth/tile_factors.bin"), "tfactors", DType::F32).unwrap();
    let rows = tf.data::<f32>().unwrap();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for r in rows.chunks(f).filter(|r| r[nf] < 0.5) {
        xs.push(r[..gc].iter().sum::<f32>() as f64);
        ys.push(r[gc] as f64);
    }
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / n;
    let sx = (xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>() / n).sqrt();
    let sy = (ys.iter().map(|y| (y - my).powi(2)).sum::<f64>() / n).sqrt();
    let r = cov / (sx * sy);
    println!("corr(planted motif count, GC) over {} tiles = {r:+.4}", xs.len());
    assert!(r.abs() < 0.05, "{r}");
    let with_motif = xs.iter().filter(|&&x| x > 0.0).count() as f64 / n;
    println!("tiles with a planted motif in their window: {with_motif:.3}");
    assert!(with_motif > 0.1, "{with_motif}");
}

#[test]
fn oracle_auroc_high_and_rates_in_range() {
    let dir = tiny();
    let prm = params(dir);
    let o = tiny_o();
    let p = BinFile::open(dir.join("truth/p.bin"), "prob", DType::F32).unwrap();
    let y = BinFile::open(dir.join("truth/y.bin"), "ylabel", DType::U8).unwrap();
    let zb = BinFile::open(dir.join("truth/z_bio.bin"), "zbio", DType::F32).unwrap();
    let zt = BinFile::open(dir.join("truth/z_tech.bin"), "ztech", DType::F32).unwrap();
    let (p, y, zb, zt) =
        (p.data::<f32>().unwrap(), y.data::<u8>().unwrap(), zb.data::<f32>().unwrap(), zt.data::<f32>().unwrap());
    let n = y.len() / o;
    let temperature = prm["temperature"].as_f64().unwrap() as f32;
    let mut aucs = Vec::new();
    for j in 0..o {
        let e = &prm["experiments"][j];
        let b = e["b"].as_f64().unwrap() as f32;
        let pj: Vec<f32> = (0..n).map(|i| p[i * o + j]).collect();
        let yj: Vec<u8> = (0..n).map(|i| y[i * o + j]).collect();
        // The documented formula: p = sigmoid((z_bio + z_tech - b) / T) on unmasked tiles.
        for i in (0..n).step_by(101) {
            let want = 1.0 / (1.0 + (-(zb[i * o + j] + zt[i * o + j] - b) / temperature).exp());
            assert!(pj[i] == 0.0 || (pj[i] - want).abs() < 1e-5, "{j} {i}");
        }
        let rate = yj.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((0.01..=0.10).contains(&rate), "experiment {j} rate {rate}");
        aucs.push(auroc(&pj, &yj));
    }
    let mean = aucs.iter().sum::<f64>() / o as f64;
    let min = aucs.iter().copied().fold(1.0, f64::min);
    println!("oracle AUROC (noise-free p vs y): mean {mean:.3}, min {min:.3}");
    assert!(mean > 0.75, "{aucs:?}");
    assert!(aucs.iter().filter(|&&a| a > 0.65).count() >= o * 9 / 10, "{aucs:?}");
}

#[test]
fn refuses_non_empty_out_and_accepts_empty() {
    let d = scratch("busy");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("keep.txt"), "x").unwrap();
    let err = synthesize(&preset("tiny").unwrap(), 1, &d).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    let parent = d.parent().unwrap();
    let stray = std::fs::read_dir(parent)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!(".{}.synth-tmp", d.file_name().unwrap().to_string_lossy()))
        })
        .count();
    assert_eq!(stray, 0);
    let e = scratch("empty");
    std::fs::create_dir_all(&e).unwrap();
    synthesize(&preset("tiny").unwrap(), 1, &e).unwrap();
    assert!(e.join("truth/params.json").exists());
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&e);
}

/// The trainer refuses a synthesized directory from an older build of its preset or from another seed (it would
/// otherwise prepare and train on it silently), and accepts the one it asked for.
#[test]
fn trainer_refuses_a_stale_synthesized_directory() {
    use mfd::config::Config;
    use mfd::train::trainer::ensure_dataset;
    let root = scratch("stale");
    let synth = root.join("synth");
    synthesize(&preset("tiny").unwrap(), 7, &synth).unwrap();
    let params = std::fs::read_to_string(synth.join("truth/params.json")).unwrap();
    let mut v: Value = serde_json::from_str(&params).unwrap();
    let cfg = |seed: u64| {
        let ds = format!("data.dataset={}", root.join("dataset").display());
        Config::parse(mfd::config::DEFAULT_CONFIG, Path::new("default.toml"), &[ds, format!("data.synth_seed={seed}")])
            .unwrap()
    };
    let write = |v: &Value| std::fs::write(synth.join("truth/params.json"), v.to_string()).unwrap();
    v["preset_version"] = Value::from(preset("tiny").unwrap().version - 1);
    write(&v);
    let e = ensure_dataset(&cfg(7)).unwrap_err().to_string();
    assert!(e.contains("version") && e.contains("delete"), "{e}");
    v["preset_version"] = Value::from(preset("tiny").unwrap().version);
    write(&v);
    let e = ensure_dataset(&cfg(1)).unwrap_err().to_string();
    assert!(e.contains("seed 7") && e.contains("data.synth_seed"), "{e}");
    assert!(!root.join("dataset").exists(), "nothing is prepared from a refused directory");
    ensure_dataset(&cfg(7)).unwrap();
    assert!(root.join("dataset/manifest.toml").exists());
    let _ = std::fs::remove_dir_all(&root);
}
