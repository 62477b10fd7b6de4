//! Hand-written tiny inputs for the `mfd prepare` integration tests, created in a temp dir.
//!
//! Genome (60 bases per FASTA line): chr1 = 4136 bp (32 full tiles + a 40-bp tail) with IUPAC R at 5, y at 6
//! and N at 10..20; chr2 = 640 bp (5 tiles, tile 4 all N); chr9 = 512 bp (4 tiles, a test contig).
//! Experiments (class order): E0 BED3 with a track line, E1 gzip narrowPeak naming chr2 as "2", E2 BED5 whose
//! peaks touch no tile by >= 64 bp, E3 an empty file.
//! `default_run`: the embedded default trained once per CI run for tests/e2e_default.rs and tests/downstream.rs.
#![allow(dead_code)]

pub mod default_run;

use mfd::data::prepare::PrepareArgs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub fasta: PathBuf,
    pub peaks: PathBuf,
    pub metadata: PathBuf,
    pub out: PathBuf,
}

impl Fixture {
    /// Run the `mfd prepare` binary on the fixture's inputs.
    pub fn run_prepare_cli(&self) -> std::process::Output {
        self.run_prepare_cli_with(&[])
    }
    /// `run_prepare_cli` with `extra` arguments first.
    pub fn run_prepare_cli_with(&self, extra: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_mfd"))
            .arg("prepare")
            .args(extra)
            .arg("--genome")
            .arg(&self.fasta)
            .arg("--peaks")
            .arg(&self.peaks)
            .arg("--metadata")
            .arg(&self.metadata)
            .arg("--out")
            .arg(&self.out)
            .output()
            .unwrap()
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn args(&self) -> PrepareArgs {
        PrepareArgs {
            fasta: self.fasta.clone(),
            peaks: self.peaks.clone(),
            metadata: self.metadata.clone(),
            out: self.out.clone(),
            config: None,
        }
    }
    /// Neither DATASET nor any `DATASET.partial-*` sibling exists.
    pub fn assert_no_dataset(&self) {
        assert!(!self.out.exists(), "{} exists after a failed prepare", self.out.display());
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".partial-"), "partial directory {name} left behind");
        }
    }
}

/// The bases of chr1, chr2, chr9 as text.
pub fn contigs() -> Vec<(&'static str, String)> {
    let pattern = b"ACGTTGCAacgtGATC";
    let mut c1: Vec<u8> = (0..4136).map(|i| pattern[i % pattern.len()]).collect();
    c1[5] = b'R';
    c1[6] = b'y';
    for b in &mut c1[10..20] {
        *b = b'N';
    }
    let mut c2: Vec<u8> = (0..640).map(|i| pattern[(i * 7) % pattern.len()]).collect();
    for b in &mut c2[512..640] {
        *b = b'N';
    }
    let c9: Vec<u8> = (0..512).map(|i| pattern[(i * 3) % pattern.len()]).collect();
    vec![
        ("chr1", String::from_utf8(c1).unwrap()),
        ("chr2", String::from_utf8(c2).unwrap()),
        ("chr9", String::from_utf8(c9).unwrap()),
    ]
}

/// FASTA text with `width` bases per line.
pub fn fasta_text(width: usize) -> String {
    let mut s = String::new();
    for (name, seq) in contigs() {
        s.push_str(&format!(">{name} test contig\n"));
        for line in seq.as_bytes().chunks(width) {
            s.push_str(std::str::from_utf8(line).unwrap());
            s.push('\n');
        }
    }
    s
}

pub fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

pub fn bgzip(text: &str) -> Vec<u8> {
    let mut w = noodles_bgzf::io::Writer::new(Vec::new());
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap()
}

pub const E0_BED: &str =
    "track name=E0 description=\"bed3\"\nchr1\t0\t100\nchr1\t150\t250\nchr1\t256\t330\nchr9\t10\t74\n";
pub const E1_NARROWPEAK: &str =
    "chr1\t200\t400\tp1\t500\t.\t12.5\t8.1\t6.2\t100\n2\t300\t500\tp2\t400\t+\t3.0\t-1\t-1\t-1\n";
pub const E2_BED: &str = "browser position chr1:1-100\n# comment\nchr1\t4100\t4136\tx\t0\nchr1\t900\t960\ty\t0\n";
pub const METADATA: &str = "id\tassay\tlab\nE3\tDNase-seq\tlab b\nE0\tChIP-seq\tlab a\nX9\tunused\tlab z\nE2\tATAC-seq\tlab a\nE1\tChIP-seq\tlab c\n";

/// The standard good inputs.
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fasta = d.join("genome.fa");
    std::fs::write(&fasta, fasta_text(60)).unwrap();
    std::fs::create_dir(d.join("peaks")).unwrap();
    std::fs::write(d.join("peaks/e0.bed"), E0_BED).unwrap();
    std::fs::write(d.join("peaks/e1.narrowPeak.gz"), gzip(E1_NARROWPEAK)).unwrap();
    std::fs::write(d.join("peaks/e2.bed"), E2_BED).unwrap();
    std::fs::write(d.join("peaks/e3.bed"), "").unwrap();
    let peaks = d.join("peaks.tsv");
    std::fs::write(
        &peaks,
        "experiment\tpath\n# class order follows\nE0\tpeaks/e0.bed\nE1\tpeaks/e1.narrowPeak.gz\nE2\tpeaks/e2.bed\nE3\tpeaks/e3.bed\n",
    )
    .unwrap();
    let metadata = d.join("metadata.tsv");
    std::fs::write(&metadata, METADATA).unwrap();
    let out = d.join("ds");
    Fixture { dir, fasta, peaks, metadata, out }
}

pub fn read_u32(path: &Path, kind: &str) -> (Vec<u64>, Vec<u32>) {
    let f = mfd::data::binfile::BinFile::open(path, kind, mfd::data::binfile::DType::U32).unwrap();
    (f.shape().to_vec(), f.data::<u32>().unwrap().to_vec())
}

pub fn read_u8(path: &Path, kind: &str) -> (Vec<u64>, Vec<u8>) {
    let f = mfd::data::binfile::BinFile::open(path, kind, mfd::data::binfile::DType::U8).unwrap();
    (f.shape().to_vec(), f.bytes().to_vec())
}

/// Metadata mapping of the tiny whole-model tests (tests/model_grad.rs, tests/cuda_step.rs): every variable type
/// and transform, both groups.
pub const TINY_MAPPING: &str = include_str!("../data/tiny_mapping.toml");

/// The metadata table (O = 5) for `TINY_MAPPING`.
pub const TINY_METADATA: &str = include_str!("../data/tiny_metadata.tsv");

/// The tiny whole model (C = 4, T = 128, O = 5, adversary hidden 8, seed 3) on `TINY_MAPPING` / `TINY_METADATA`,
/// with label rows of 8 bits; `shared` sets `adversary.shared_predictor`.
pub fn tiny_mfd<B: mfd::backend::Backend>(be: &B, shared: bool) -> mfd::model::mfd::Mfd<B> {
    use mfd::config::{AdversaryConfig, ModelConfig};
    use mfd::model::metadata::{MappingConfig, MetadataTable};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("metadata.tsv");
    std::fs::write(&p, TINY_METADATA).unwrap();
    let classes: Vec<String> = (0..5).map(|i| format!("E{i}")).collect();
    let table = MetadataTable::load(&p, &classes).unwrap();
    let mapping = MappingConfig::parse(TINY_MAPPING, Path::new("mapping.toml")).unwrap();
    let mcfg = ModelConfig {
        c: 4,
        seq_len: 128,
        crop: 0,
        tower_layers: 6,
        dilated_layers: 2,
        dilation_growth: 1.5,
        metadata: true,
    };
    let acfg = AdversaryConfig {
        enabled: true,
        hidden: 8,
        layers: 2,
        shared_predictor: shared,
        lr: 1e-3,
        steps_per_model_step: 1,
        reuse_model_backward: true,
    };
    mfd::model::mfd::Mfd::new(be, &mcfg, &acfg, &mapping, &table, 8, 3).unwrap()
}

/// `--set` overrides of a tiny model (C = 16, T = 128, adversaries 2 x 16, batch 16, no time limit) on the dataset
/// `dataset` (synthesized from the default config's `tiny` preset when absent).
pub fn tiny_overrides(dataset: &Path) -> Vec<String> {
    vec![
        format!("data.dataset={}", toml::Value::String(dataset.to_string_lossy().into_owned())),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        "train.batch_size=16".into(),
        "train.max_seconds=0".into(),
    ]
}

/// A tiny model (C = 16, T = 128, 1 step) trained on the synthetic `tiny` dataset in a kept temp root: the model the
/// hostile-input tests (tests/hostile.rs, tests/fuzz.rs) feed bad files around. Returns (root, last checkpoint).
pub fn tiny_trained_run() -> (PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap().keep();
    let ds = root.join("data/dataset");
    let mut sets = tiny_overrides(&ds);
    sets.push("train.max_steps=1".into());
    sets.push(format!("train.out={}", toml::Value::String(root.join("run").to_string_lossy().into_owned())));
    let cfg = mfd::config::Config::load(None, &sets).unwrap();
    let opts = mfd::train::trainer::TrainOptions {
        resume: mfd::train::trainer::Resume::No,
        skip_final_eval: true,
        overwrite: false,
    };
    mfd::train::trainer::run(&cfg, &opts).unwrap();
    let ckpt = root.join("run/checkpoints/last.safetensors");
    assert!(ckpt.exists());
    (root, ckpt)
}

/// The CUDA backend on device 0, or `None` with a printed SKIP line naming `what` and why no GPU works; under
/// MFD_REQUIRE_GPU=1 (CI's virtual-GPU section, launch/gpu_check.sh) a missing GPU fails instead.
pub fn gpu_or_skip(what: &str) -> Option<mfd::backend::cuda::CudaBackend> {
    match mfd::backend::cuda::CudaBackend::new(0) {
        Ok(gpu) => Some(gpu),
        Err(why) => {
            assert!(std::env::var("MFD_REQUIRE_GPU").map_or(true, |v| v != "1"), "MFD_REQUIRE_GPU=1: {why}");
            eprintln!("SKIP {what}: no usable GPU ({why})");
            None
        }
    }
}
