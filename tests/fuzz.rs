//! Fuzz-style robustness (issue 22): truncated, bit-flipped and random variants of every input kind are fed to the
//! command that reads it, and each run must end in a clean error (exit 1) or a success (exit 0) within a time
//! bound: never a panic (exit 101), an abort or a signal; an error line is short and names the damaged file.
//! Seeded, so a failure reproduces; about 25-40 s on 2 cores.

mod common;

use std::ffi::OsString;
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

/// Run `mfd` with `args` in `cwd` (a damaged path may turn relative); exit 0 or 1 within `limit`, else the test
/// fails naming `what`. An error line must name `names` (the damaged file) when given.
fn run_bounded(args: &[&std::ffi::OsStr], cwd: &Path, what: &str, limit: Duration, names: Option<&str>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfd"))
        .args(args)
        .current_dir(cwd)
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
        if let Some(n) = names {
            assert!(line.contains(n), "{what}: the error does not name {n}:\n{line}");
        }
    }
}

/// Replace `path` by each variant of its content, run `args` (after removing the directory `clean`, the output of
/// the previous run), restore it.
fn fuzz_file(path: &Path, seed: u64, args: &[&std::ffi::OsStr], limit: Duration, clean: Option<&Path>) -> usize {
    let orig = std::fs::read(path).unwrap();
    let vs = variants(&orig, seed);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for (what, bytes) in &vs {
        std::fs::write(path, bytes).unwrap();
        if let Some(d) = clean {
            let _ = std::fs::remove_dir_all(d);
        }
        run_bounded(args, path.parent().unwrap(), &format!("{}: {what}", path.display()), limit, Some(&name));
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
        n += fuzz_file(&p, 1000 + i as u64, &args, limit, Some(&fx.out));
        let _ = std::fs::remove_dir_all(&fx.out);
    }
    n += fuzz_file(&cfg, 7, &args, limit, Some(&fx.out));
    // bgzip FASTA with its .fai and .gzi (prepare streams the whole file; the .gzi must exist but is not read).
    let gz = fx.path("genome.fa.gz");
    std::fs::write(&gz, common::bgzip(&common::fasta_text(60))).unwrap();
    std::fs::copy(fx.path("genome.fa.fai"), fx.path("genome.fa.gz.fai")).unwrap();
    std::fs::write(fx.path("genome.fa.gz.gzi"), 0u64.to_le_bytes()).unwrap();
    let mut bgz = args.clone();
    bgz[2] = gz.as_os_str();
    run_bounded(&bgz, fx.dir.path(), "bgzip FASTA", limit, None);
    let _ = std::fs::remove_dir_all(&fx.out);
    for (i, f) in ["genome.fa.gz", "genome.fa.gz.fai", "genome.fa.gz.gzi"].iter().enumerate() {
        n += fuzz_file(&fx.path(f), 1100 + i as u64, &bgz, limit, Some(&fx.out));
        let _ = std::fs::remove_dir_all(&fx.out);
    }
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

/// Checkpoint (safetensors bytes and the TOML config inside it), dataset (manifest and shards), VCF and BED inputs,
/// and an indexed FASTA with its .fai as vep, embed and attribute read them.
#[test]
fn model_inputs_safetensors_config_manifest_shard_vcf_bed_and_indexed_fasta() {
    let t = trained();
    let limit = Duration::from_secs(60);
    let ds = t.root.join("data/dataset");
    // safetensors bytes, read by eval (the split is small: val).
    let ck = t.root.join("ck.safetensors");
    std::fs::copy(&t.ckpt, &ck).unwrap();
    let eval: Vec<&std::ffi::OsStr> =
        vec![os("eval"), os("--checkpoint"), ck.as_os_str(), os("--split"), os("val"), os("--out"), t.root.as_os_str()];
    let mut n = fuzz_file(&ck, 11, &eval, limit, None);
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
        // Not required to name the checkpoint: a damaged dataset path in it is named itself.
        run_bounded(&eval, &t.root, &format!("stored config: {what}"), limit, None);
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
        n += fuzz_file(&copy.join(f), 20 + i as u64, &eval_ds, limit, None);
    }
    // VCF, read by vep against the synthetic genome.
    let fasta = t.root.join("data/synth/genome.fa");
    let vcf = vcf_head(&t, "v.vcf");
    let vep = model_tool("vep", &t.ckpt, ("--vcf", &vcf), ("--fasta", &fasta), &t.root.join("vep.tsv"));
    let vep = refs(&vep);
    mfd_ok(&vep);
    n += fuzz_file(&vcf, 30, &vep, limit, None);
    assert!(!t.root.join("vep.tsv.tmp").exists());
    // BED regions, read by embed against the same genome.
    let bed = t.root.join("r.bed");
    std::fs::write(&bed, "chr1\t1000\t1200\tr1\nchr1\t5000\t5100\tr2\nchr2\t300\t400\n").unwrap();
    let embed = model_tool("embed", &t.ckpt, ("--bed", &bed), ("--genome", &fasta), &t.root.join("emb"));
    let embed = refs(&embed);
    n += fuzz_file(&bed, 40, &embed, limit, None);
    // An indexed FASTA and its .fai as the downstream tools read them (random access, not prepare's stream).
    let small = t.root.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let fa = small.join("g.fa");
    let seq: String = (0..40).map(|i| format!("{}\n", &"ACGTTGCAAC".repeat(7)[i % 10..i % 10 + 60])).collect();
    std::fs::write(&fa, format!(">chr1 small\n{seq}")).unwrap();
    std::fs::write(small.join("g.fa.fai"), "chr1\t2400\t12\t60\t61\n").unwrap();
    std::fs::write(&bed, "chr1\t100\t300\ta\nchr1\t2000\t2400\tb\n").unwrap();
    let embed = model_tool("embed", &t.ckpt, ("--bed", &bed), ("--genome", &fa), &small.join("emb"));
    let embed = refs(&embed);
    mfd_ok(&embed);
    n += fuzz_file(&fa, 41, &embed, limit, None);
    n += fuzz_file(&small.join("g.fa.fai"), 42, &embed, limit, None);
    assert!(n > 100, "{n} cases");
}

/// The first 60 lines of the synthetic VCF, as `name` in the run's root.
fn vcf_head(t: &Trained, name: &str) -> PathBuf {
    let src = std::fs::read_to_string(t.root.join("data/synth/variants.vcf")).unwrap();
    let vcf = t.root.join(name);
    std::fs::write(&vcf, src.lines().take(60).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    vcf
}

/// `mfd CMD --checkpoint CK INPUT GENOME --out OUT` with one forward pass per window (vep, embed).
fn model_tool(cmd: &str, ck: &Path, input: (&str, &Path), genome: (&str, &Path), out: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![cmd.into(), "--checkpoint".into(), ck.into()];
    for (flag, p) in [input, genome, ("--out", out)] {
        v.extend([flag.into(), p.into()]);
    }
    v.extend(["--shifts", "1", "--forward-only"].map(OsString::from));
    v
}

fn refs(v: &[OsString]) -> Vec<&std::ffi::OsStr> {
    v.iter().map(OsString::as_os_str).collect()
}

fn mfd_ok(args: &[&std::ffi::OsStr]) {
    let o = Command::new(env!("CARGO_BIN_EXE_mfd")).args(args).output().unwrap();
    assert!(o.status.success(), "mfd {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The downstream tables (enrich: VEP TSV and labels; enhancer: embedding and labels), the step-dump batch, the
/// metadata-mapping TOML named by a checkpoint's config and the sweep TOML.
#[test]
fn downstream_inputs_step_batch_mapping_and_sweep_toml() {
    let t = trained();
    let limit = Duration::from_secs(60);
    let synth = t.root.join("data/synth");
    let fasta = synth.join("genome.fa");
    let mut n = 0;
    // Step-dump batch (safetensors), drawn from the validation split.
    let batch = t.root.join("batch.safetensors");
    let dump = t.root.join("dump.safetensors");
    let ck = t.ckpt.as_os_str();
    let make = [os("--make-batch"), os("--n"), os("4"), os("--split"), os("val"), os("--out"), batch.as_os_str()];
    mfd_ok(&[&[os("step-dump"), os("--checkpoint"), ck][..], &make].concat());
    let sd: Vec<&std::ffi::OsStr> =
        vec![os("step-dump"), os("--checkpoint"), ck, os("--batch"), batch.as_os_str(), os("--out"), dump.as_os_str()];
    n += fuzz_file(&batch, 50, &sd, limit, None);
    // enrich: a VEP table of the first variants and a labels table.
    let vcf = vcf_head(&t, "e.vcf");
    let vep_out = t.root.join("e-vep.tsv");
    let vep = model_tool("vep", &t.ckpt, ("--vcf", &vcf), ("--fasta", &fasta), &vep_out);
    mfd_ok(&refs(&vep));
    let vep_text = std::fs::read_to_string(&vep_out).unwrap();
    let mut labels = String::from("chrom\tpos\tref\talt\tlabel\n");
    let head: Vec<&str> = vep_text.lines().next().unwrap().split('\t').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (c0, c1, c2, c3) = (col("chrom"), col("pos"), col("ref"), col("alt"));
    for (i, l) in vep_text.lines().skip(1).enumerate() {
        let f: Vec<&str> = l.split('\t').collect();
        labels.push_str(&format!("{}\t{}\t{}\t{}\t{}\n", f[c0], f[c1], f[c2], f[c3], i % 2));
    }
    let lab = t.root.join("e-labels.tsv");
    std::fs::write(&lab, labels).unwrap();
    let enr = t.root.join("enrich");
    let enrich = [os("enrich"), os("--vep"), vep_out.as_os_str(), os("--labels"), lab.as_os_str(), os("--out")];
    let enrich = [&enrich[..], &[enr.as_os_str()]].concat();
    mfd_ok(&enrich);
    n += fuzz_file(&vep_out, 60, &enrich, limit, None);
    n += fuzz_file(&lab, 61, &enrich, limit, None);
    // enhancer: the embedding of 24 named regions and a 0/1 labels table.
    let bed = t.root.join("enh.bed");
    let mut bed_text = String::new();
    let mut enh_labels = String::from("name\tactive\tother\n");
    for i in 0..24 {
        bed_text.push_str(&format!("chr1\t{}\t{}\tel{i}\n", 1000 + 500 * i, 1200 + 500 * i));
        enh_labels.push_str(&format!("el{i}\t{}\t{}\n", i % 2, if i % 3 == 0 { "NA" } else { "1" }));
    }
    std::fs::write(&bed, bed_text).unwrap();
    let emb = t.root.join("enh-emb");
    let embed = model_tool("embed", &t.ckpt, ("--bed", &bed), ("--genome", &fasta), &emb);
    mfd_ok(&refs(&embed));
    let features = t.root.join("enh-emb.safetensors");
    let enh_lab = t.root.join("enh-labels.tsv");
    std::fs::write(&enh_lab, enh_labels).unwrap();
    let enh_out = t.root.join("enh.tsv");
    let mut enhancer =
        vec![os("enhancer"), os("--features"), features.as_os_str(), os("--labels"), enh_lab.as_os_str()];
    enhancer.extend([os("--out"), enh_out.as_os_str(), os("--penalties"), os("l2"), os("--folds"), os("2")]);
    mfd_ok(&enhancer);
    n += fuzz_file(&features, 70, &enhancer, limit, None);
    n += fuzz_file(&enh_lab, 71, &enhancer, limit, None);
    // The metadata-mapping TOML, named by the stored config of a checkpoint and read by eval.
    let mapping = t.root.join("mapping.toml");
    std::fs::write(&mapping, include_str!("../configs/metadata_mapping.toml")).unwrap();
    let mck = t.root.join("mapping-ck.safetensors");
    let bytes = std::fs::read(&t.ckpt).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    let line = format!("[data]\nmetadata_mapping = {}\n", toml::Value::String(mapping.to_string_lossy().into_owned()));
    assert!(meta["config"].contains("[data]\n"));
    let cfg = meta["config"].replacen("[data]\n", &line, 1);
    meta.insert("config".into(), cfg);
    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        names.iter().map(|name| (name.clone(), st.tensor(name).unwrap())).collect();
    std::fs::write(&mck, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    let eval: Vec<&std::ffi::OsStr> = vec![
        os("eval"),
        os("--checkpoint"),
        mck.as_os_str(),
        os("--split"),
        os("val"),
        os("--out"),
        t.root.as_os_str(),
    ];
    mfd_ok(&eval);
    n += fuzz_file(&mapping, 80, &eval, limit, None);
    // The sweep TOML (parsed and every point's config resolved; --table-only trains nothing).
    let sweep = t.root.join("sweep.toml");
    let sweep_text = format!(
        "base = \"default\"\nout = {}\nranks_per_point = 1\nset = [\"train.epochs=1\"]\nseeds = []\n\n\
         [[point]]\nname = \"a\"\nset = [\"loss.lambda_indep=0\"]\n\n[[point]]\nset = [\"loss.lambda_indep=0.1\"]\n",
        toml::Value::String(t.root.join("sweep-out").to_string_lossy().into_owned())
    );
    std::fs::write(&sweep, sweep_text).unwrap();
    let sw: Vec<&std::ffi::OsStr> = vec![os("sweep"), os("--config"), sweep.as_os_str(), os("--table-only")];
    mfd_ok(&sw);
    n += fuzz_file(&sweep, 90, &sw, limit, None);
    assert!(n > 120, "{n} cases");
}
