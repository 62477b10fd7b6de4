//! Fuzz-style robustness (issue 22): truncated, bit-flipped and random variants of every input kind are fed to the
//! command that reads it, and each run must end in a clean error (exit 1) or a success (exit 0) within a time
//! bound: never a panic (exit 101), an abort or a signal. Seeded, so a failure reproduces; about a minute.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic variants without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Variants of `orig`: truncations, bit flips, byte and line damage, random bytes and random text.
fn variants(orig: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut r = Rng(seed | 1);
    let mut out = Vec::new();
    let n = orig.len();
    for frac in [0usize, 1, 2, 5, 9] {
        let k = n * frac / 10;
        out.push((format!("truncated to {k} bytes"), orig[..k].to_vec()));
    }
    out.push(("last byte dropped".into(), orig[..n.saturating_sub(1)].to_vec()));
    for _ in 0..6 {
        let mut v = orig.to_vec();
        if !v.is_empty() {
            let i = r.below(n);
            let bit = r.below(8);
            v[i] ^= 1 << bit;
            out.push((format!("bit {bit} of byte {i} flipped"), v));
        }
    }
    for _ in 0..3 {
        let mut v = orig.to_vec();
        if !v.is_empty() {
            let i = r.below(n);
            let b = [b'\t', b'\n', b'0', b'9', b'-', 0xff, b'>', b'#', b' '][r.below(9)];
            v[i] = b;
            out.push((format!("byte {i} set to {b:#x}"), v));
        }
    }
    // A line duplicated, a line removed.
    let lines: Vec<&[u8]> = orig.split_inclusive(|&b| b == b'\n').collect();
    if lines.len() > 1 {
        let i = r.below(lines.len());
        let mut dup: Vec<u8> = Vec::new();
        let mut del: Vec<u8> = Vec::new();
        for (j, l) in lines.iter().enumerate() {
            dup.extend_from_slice(l);
            if j == i {
                dup.extend_from_slice(l);
            } else {
                del.extend_from_slice(l);
            }
        }
        out.push((format!("line {} duplicated", i + 1), dup));
        out.push((format!("line {} removed", i + 1), del));
    }
    let random: Vec<u8> = (0..r.below(4096) + 1).map(|_| r.next() as u8).collect();
    out.push(("random bytes".into(), random));
    let alphabet = b"ACGT\t\n01-9.>#chr eE";
    let text: Vec<u8> = (0..2000).map(|_| alphabet[r.below(alphabet.len())]).collect();
    out.push(("random text".into(), text));
    out
}

/// Run `mfd` with `args`; exit 0 or 1 within `limit`, else the test fails naming `what`.
fn run_bounded(args: &[&std::ffi::OsStr], what: &str, limit: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfd"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let code = status.code();
    assert!(code == Some(0) || code == Some(1), "{what}: {status:?} (panic, abort or signal)\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    if code == Some(1) {
        let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or("");
        assert!(!line.is_empty() && line.len() <= 700, "{what}: error line of {} chars:\n{err}", line.len());
    }
}

/// Replace `path` by each variant of its content, run `args`, restore it.
fn fuzz_file(path: &Path, seed: u64, args: &[&std::ffi::OsStr], limit: Duration) -> usize {
    let orig = std::fs::read(path).unwrap();
    let vs = variants(&orig, seed);
    for (what, bytes) in &vs {
        std::fs::write(path, bytes).unwrap();
        run_bounded(args, &format!("{}: {what}", path.display()), limit);
    }
    std::fs::write(path, &orig).unwrap();
    vs.len()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn prepare_inputs_fasta_fai_peaks_metadata_and_config() {
    let fx = common::fixture();
    let out = fx.run_prepare_cli();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&fx.out).unwrap();
    let cfg = fx
        .write("prepare.toml", "min_overlap = 64\nmin_positive = 1\ntest_contigs = [\"chr9\"]\nval_fraction = 0.05\n");
    let args: Vec<&std::ffi::OsStr> = vec![
        os("prepare"),
        os("--fasta"),
        fx.fasta.as_os_str(),
        os("--peaks"),
        fx.peaks.as_os_str(),
        os("--metadata"),
        fx.metadata.as_os_str(),
        os("--out"),
        fx.out.as_os_str(),
        os("--config"),
        cfg.as_os_str(),
    ];
    let limit = Duration::from_secs(30);
    let mut n = 0;
    for (i, f) in ["genome.fa", "genome.fa.fai", "peaks.tsv", "peaks/e0.bed", "peaks/e1.narrowPeak.gz", "metadata.tsv"]
        .iter()
        .enumerate()
    {
        let p = fx.path(f);
        if !p.exists() {
            continue;
        }
        n += fuzz_file(&p, 1000 + i as u64, &args, limit);
        let _ = std::fs::remove_dir_all(&fx.out);
    }
    n += fuzz_file(&cfg, 7, &args, limit);
    assert!(n > 100, "{n} cases");
}

struct Trained {
    root: PathBuf,
    ckpt: PathBuf,
}

fn trained() -> Trained {
    let (root, ckpt) = common::tiny_trained_run();
    Trained { root, ckpt }
}

/// Checkpoint (safetensors bytes and the TOML config inside it), dataset (manifest and shards) and VCF inputs.
#[test]
fn model_inputs_safetensors_config_manifest_shard_and_vcf() {
    let t = trained();
    let limit = Duration::from_secs(60);
    let ds = t.root.join("data/dataset");
    // safetensors bytes, read by eval (the split is small: val).
    let ck = t.root.join("ck.safetensors");
    std::fs::copy(&t.ckpt, &ck).unwrap();
    let eval: Vec<&std::ffi::OsStr> =
        vec![os("eval"), os("--checkpoint"), ck.as_os_str(), os("--split"), os("val"), os("--out"), t.root.as_os_str()];
    let mut n = fuzz_file(&ck, 11, &eval, limit);
    // The TOML config stored in the checkpoint.
    let bytes = std::fs::read(&t.ckpt).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = md.metadata().clone().unwrap();
    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    for (what, cfg) in variants(meta["config"].as_bytes(), 12) {
        let mut m = meta.clone();
        m.insert("config".into(), String::from_utf8_lossy(&cfg).into_owned());
        let views: Vec<(String, safetensors::tensor::TensorView)> =
            names.iter().map(|name| (name.clone(), st.tensor(name).unwrap())).collect();
        std::fs::write(&ck, safetensors::serialize(views, Some(m)).unwrap()).unwrap();
        run_bounded(&eval, &format!("stored config: {what}"), limit);
        n += 1;
    }
    std::fs::copy(&t.ckpt, &ck).unwrap();
    // Dataset files: manifest and one shard of each kind (checksums are re-read after each change).
    let copy = t.root.join("ds-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&ds).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let eval_ds: Vec<&std::ffi::OsStr> = vec![
        os("eval"),
        os("--checkpoint"),
        t.ckpt.as_os_str(),
        os("--dataset"),
        copy.as_os_str(),
        os("--split"),
        os("val"),
        os("--out"),
        t.root.as_os_str(),
    ];
    for (i, f) in ["manifest.toml", "tiles-00000.bin", "labels-00000.bin", "metadata.tsv"].iter().enumerate() {
        n += fuzz_file(&copy.join(f), 20 + i as u64, &eval_ds, limit);
    }
    // VCF, read by vep against the synthetic genome.
    let synth = t.root.join("data/synth");
    let vcf_src = std::fs::read_to_string(synth.join("variants.vcf")).unwrap();
    let vcf = t.root.join("v.vcf");
    let head: String = vcf_src.lines().take(60).map(|l| format!("{l}\n")).collect();
    std::fs::write(&vcf, head).unwrap();
    let out = t.root.join("vep.tsv");
    let fasta = synth.join("genome.fa");
    let vep: Vec<&std::ffi::OsStr> = vec![
        os("vep"),
        os("--checkpoint"),
        t.ckpt.as_os_str(),
        os("--vcf"),
        vcf.as_os_str(),
        os("--fasta"),
        fasta.as_os_str(),
        os("--out"),
        out.as_os_str(),
        os("--shifts"),
        os("1"),
        os("--forward-only"),
    ];
    let (ok, _) = (std::process::Command::new(env!("CARGO_BIN_EXE_mfd")).args(&vep).status().unwrap().success(), ());
    assert!(ok, "vep on the unchanged VCF failed");
    n += fuzz_file(&vcf, 30, &vep, limit);
    assert!(!t.root.join("vep.tsv.tmp").exists());
    // BED regions, read by embed against the same genome.
    let bed = t.root.join("r.bed");
    std::fs::write(&bed, "chr1\t1000\t1200\tr1\nchr1\t5000\t5100\tr2\nchr2\t300\t400\n").unwrap();
    let emb = t.root.join("emb");
    let embed: Vec<&std::ffi::OsStr> = vec![
        os("embed"),
        os("--checkpoint"),
        t.ckpt.as_os_str(),
        os("--bed"),
        bed.as_os_str(),
        os("--genome"),
        fasta.as_os_str(),
        os("--out"),
        emb.as_os_str(),
        os("--shifts"),
        os("1"),
    ];
    n += fuzz_file(&bed, 40, &embed, limit);
    assert!(n > 100, "{n} cases");
}
