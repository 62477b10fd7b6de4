//! Hostile inputs to the commands that read a trained model (issue 22): every case is a clean error (exit 1, one
//! short line naming the file and field or the config key) or a success, never a panic or an abort; nothing
//! half-written is left behind. One tiny model (C = 16, 1 step) on the synthetic `tiny` dataset serves them all.

mod common;

use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Setup {
    root: PathBuf,
    ckpt: PathBuf,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let (root, ckpt) = common::tiny_trained_run();
        Setup { root, ckpt }
    })
}

/// Run `mfd ARGS`; returns (success, stderr). A panic (exit 101) or a signal fails the test.
fn mfd(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mfd")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let code = o.status.code();
    assert!(code == Some(0) || code == Some(1), "mfd {args:?} exited with {:?} (panic or abort):\n{err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    (o.status.success(), err)
}

fn fails(args: &[&str], needles: &[&str]) -> String {
    let (ok, err) = mfd(args);
    assert!(!ok, "mfd {args:?} succeeded");
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "error {line:?} lacks {n:?}");
    }
    assert!(line.len() <= 700, "{} chars: {line}", line.len());
    line.to_string()
}

/// Rewrite a checkpoint with `edit` applied to its tensors and metadata.
fn rewrite(
    from: &Path,
    to: &Path,
    edit: impl Fn(&mut HashMap<String, String>, &mut Vec<(String, Vec<u8>, Vec<usize>)>),
) {
    let bytes = std::fs::read(from).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    let mut ts: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .names()
        .into_iter()
        .map(|n| {
            let t = st.tensor(n).unwrap();
            (n.to_string(), t.data().to_vec(), t.shape().to_vec())
        })
        .collect();
    edit(&mut meta, &mut ts);
    let views: Vec<(String, TensorView)> = ts
        .iter()
        .map(|(n, d, s)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(to, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn checkpoint_sizes_and_values_are_checked_before_use() {
    let st = setup();
    let dir = st.root.join("ck");
    std::fs::create_dir_all(&dir).unwrap();
    // The weights file copied alone (no .optim.safetensors beside it) evaluates: only training reads the optimiser.
    let alone = dir.join("alone.safetensors");
    std::fs::copy(&st.ckpt, &alone).unwrap();
    let (ok, err) = mfd(&["eval", "--checkpoint", s(&alone), "--split", "val", "--out", s(&dir)]);
    assert!(ok, "{err}");
    // A stored config with C far beyond the bounds: refused by validate, naming the key and the checkpoint.
    let big = dir.join("big.safetensors");
    rewrite(&st.ckpt, &big, |m, _| {
        let c = m["config"].replace("\nc = 16\n", "\nc = 100000\n");
        m.insert("config".into(), c);
    });
    fails(&["eval", "--checkpoint", s(&big)], &["model.c", "100000", "big.safetensors"]);
    // In range but not the tensors' size: refused by tensor name before the model is allocated.
    let other = dir.join("other.safetensors");
    rewrite(&st.ckpt, &other, |m, _| {
        let c = m["config"].replace("\nc = 16\n", "\nc = 32\n");
        m.insert("config".into(), c);
    });
    fails(&["eval", "--checkpoint", s(&other)], &["other.safetensors", "shape", "expects"]);
    // NaN weights: refused at load, naming the tensor (they used to be evaluated: exit 0, AUROC 0.515).
    let nan = dir.join("nan.safetensors");
    rewrite(&st.ckpt, &nan, |_, ts| {
        let t = ts.iter_mut().find(|t| t.0 == "head.bias").unwrap();
        t.1[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    fails(&["eval", "--checkpoint", s(&nan)], &["nan.safetensors", "head.bias", "NaN"]);
    // Truncated and garbage files.
    let bytes = std::fs::read(&st.ckpt).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["eval", "--checkpoint", s(&cut)], &["cut.safetensors"]);
    std::fs::write(&cut, &bytes[..5]).unwrap();
    fails(&["eval", "--checkpoint", s(&cut)], &["cut.safetensors", "header"]);
    std::fs::write(&cut, [0xffu8; 64]).unwrap();
    fails(&["eval", "--checkpoint", s(&cut)], &["cut.safetensors", "header"]);
}

fn genome(dir: &Path) -> PathBuf {
    let fa = dir.join("g.fa");
    let line = "ACGTACGTAC".repeat(6);
    let mut text = String::from(">chr1 test\n");
    for _ in 0..40 {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&fa, text).unwrap();
    std::fs::write(dir.join("g.fa.fai"), "chr1\t2400\t11\t60\t61\n").unwrap();
    fa
}

#[test]
fn vep_and_embed_inputs() {
    let st = setup();
    let dir = st.root.join("vep");
    std::fs::create_dir_all(&dir).unwrap();
    let fa = genome(&dir);
    let fai = dir.join("g.fa.fai");
    let vcf = dir.join("v.vcf");
    let out = dir.join("out.tsv");
    let ck = s(&st.ckpt);
    let vep = |vcf: &Path| -> Vec<String> {
        ["vep", "--checkpoint", ck, "--vcf", s(vcf), "--fasta", s(&fa), "--out", s(&out), "--shifts", "1"]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let e = dir.join("e");
    let embed = |bed: &Path| -> Vec<String> {
        ["embed", "--checkpoint", ck, "--bed", s(bed), "--genome", s(&fa), "--out", s(&e)].map(String::from).to_vec()
    };
    std::fs::write(&vcf, "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\nchr1\t100\t.\tA\tG\n").unwrap();
    let (ok, err) = mfd(&args(&vep(&vcf)));
    assert!(ok, "{err}");
    // .fai line width 0, or below the line's bases: an error naming the .fai line and field (was a panic).
    for (bad, field) in [("chr1\t2400\t11\t60\t0\n", "line_width"), ("chr1\t2400\t11\t0\t61\n", "line_bases")] {
        std::fs::write(&fai, bad).unwrap();
        fails(&args(&vep(&vcf)), &["g.fa.fai:1", field]);
        let bed = dir.join("r.bed");
        std::fs::write(&bed, "chr1\t100\t200\n").unwrap();
        fails(&args(&embed(&bed)), &["g.fa.fai:1", field]);
    }
    std::fs::write(&fai, "chr1\t2400\t11\t60\t61\n").unwrap();
    // A region on a contig the index lacks names the BED line and the index.
    let bed = dir.join("r.bed");
    std::fs::write(&bed, "chr1\t100\t200\nchrX\t1\t50\n").unwrap();
    fails(&args(&embed(&bed)), &["r.bed:2 [field chrom]", "'chrX' is not in the genome", "g.fa.fai"]);
    // The FASTA changed after indexing (a header line grew): refused, not scored on shifted windows.
    let text = std::fs::read_to_string(&fa).unwrap();
    std::fs::write(&fa, text.replacen(">chr1 test\n", ">chr1 test longer\n", 1)).unwrap();
    fails(&args(&vep(&vcf)), &["g.fa.fai:1", "stale"]);
    std::fs::write(&fa, &text).unwrap();
    // VCF positions past 2^31 - 1 (and 2^63), a BCF, a REF of 100 kb echoed, a decode error mid-file.
    for pos in ["9223372036854775808", "2147483648"] {
        std::fs::write(&vcf, format!("#CHROM\tPOS\tID\tREF\tALT\nchr1\t{pos}\t.\tA\tG\n")).unwrap();
        fails(&args(&vep(&vcf)), &["v.vcf:2 [field POS]"]);
    }
    std::fs::write(&vcf, b"BCF\x02\x02\x00\x00\x00binary").unwrap();
    fails(&args(&vep(&vcf)), &["v.vcf:1", "BCF"]);
    let long = "X".repeat(100_000);
    std::fs::write(&vcf, format!("#CHROM\tPOS\tID\tREF\tALT\nchr1\t5\t.\t{long}\tG\n")).unwrap();
    let line = fails(&args(&vep(&vcf)), &["v.vcf:2 [field REF]"]);
    assert!(line.len() < 300, "{line}");
    let _ = std::fs::remove_file(&out);
    std::fs::write(&vcf, b"#CHROM\tPOS\tID\tREF\tALT\nchr1\t100\t.\tA\tG\nchr1\t1\xff\xfe\t.\tA\tG\n").unwrap();
    fails(&args(&vep(&vcf)), &["v.vcf:3", "UTF-8"]);
    assert!(!dir.join("out.tsv.tmp").exists(), "vep left its temporary output behind");
    assert!(!out.exists());
}

#[test]
fn train_refuses_bad_config_values_and_an_empty_validation_split() {
    let st = setup();
    let root = &st.root;
    let ds = root.join("data/dataset");
    let base = |out: &str| -> Vec<String> {
        vec![
            "train".into(),
            "--out".into(),
            root.join(out).to_string_lossy().into_owned(),
            "--set".into(),
            format!("data.dataset={}", toml::Value::String(ds.to_string_lossy().into_owned())),
            "--set".into(),
            "model.c=16".into(),
            "--set".into(),
            "model.seq_len=128".into(),
            "--set".into(),
            "model.crop=0".into(),
        ]
    };
    for (set, key) in [
        ("adversary.lr=-1", "adversary.lr"),
        ("train.weight_decay=-5", "train.weight_decay"),
        ("model.dilation_growth=0", "model.dilation_growth"),
        ("model.c=4000000000", "model.c"),
        ("model.tower_layers=70", "model.tower_layers"),
        ("train.lr=nan", "train.lr"),
        ("train.batch_size=\"x\"", "train.batch_size"),
    ] {
        let mut a = base("bad");
        a.extend(["--set".into(), set.into()]);
        let v: Vec<&str> = a.iter().map(String::as_str).collect();
        fails(&v, &[key, &format!("--set {set}")]);
        assert!(!root.join("bad").exists(), "{set}: the run directory was created");
    }
    // A dataset without validation tiles: an error, not a validation loss of 0.0.
    let synth = root.join("data/synth");
    let cfg = root.join("noval.toml");
    std::fs::write(&cfg, "val_fraction = 0\n").unwrap();
    let noval = root.join("noval");
    let (ok, err) = mfd(&[
        "prepare",
        "--fasta",
        s(&synth.join("genome.fa")),
        "--peaks",
        s(&synth.join("peaks.tsv")),
        "--metadata",
        s(&synth.join("metadata.tsv")),
        "--out",
        s(&noval),
        "--config",
        s(&cfg),
    ]);
    assert!(ok, "{err}");
    let mut a = base("noval-run");
    a.extend(["--set".into(), format!("data.dataset={}", toml::Value::String(s(&noval).into()))]);
    let v: Vec<&str> = a.iter().map(String::as_str).collect();
    fails(&v, &["noval", "validation split has no tiles"]);
    assert!(!root.join("noval-run").exists());
    // `mfd eval` of that empty split: an error, not a loss of 0.0.
    let ev = root.join("noval-eval");
    fails(
        &["eval", "--checkpoint", s(&st.ckpt), "--dataset", s(&noval), "--split", "val", "--out", s(&ev)],
        &["noval", "no tiles"],
    );
    // Out-of-range tool sizes are refused by option name.
    let bed = root.join("one.bed");
    std::fs::write(&bed, "chr1\t1000\t1100\n").unwrap();
    let e = root.join("emb");
    fails(
        &["embed", "--checkpoint", s(&st.ckpt), "--bed", s(&bed), "--out", s(&e), "--shifts", "1000000000"],
        &["--shifts"],
    );
}
