//! Data-parallel training under `mpirun -np 2 --oversubscribe` on the CPU backend (issue 4). Runs the built
//! binary on the synthetic `tiny` dataset with a small model (C = 16, T = 128, global batch 16):
//! - two ranks at 8 sequences each reach the parameters of one rank at 16 after 6 steps (every tensor, BatchNorm
//!   running statistics included, within `TOL`: the ranks sum partial statistics and gradients in another order,
//!   so the match is to f32 rounding, not bit for bit), and all ranks hold bit-identical tensors after every step
//!   (`MFD_CHECK_SYNC=1` makes each rank compare a hash with rank 0's after each step);
//! - an injected failure on rank 1 (`MFD_INJECT_FAIL=1:2`) ends the whole job non-zero within `FAIL_LIMIT`, with a
//!   message naming the rank;
//! - a checkpoint written by 2 ranks (3 steps) resumes on 1 rank (3 more) and matches the 6-step one-rank run;
//! - with `dist.batch_stats = "local"` the ranks also stay identical (BatchNorm running statistics averaged);
//! - the gradient buckets, started during the backward as each fills, give bit-identical parameters whatever
//!   their size (`dist.bucket_mb` 0.01 vs 64);
//! - evaluation sharded over 2 ranks gives the metrics of 1 rank (to `EVAL_TOL`): `mfd eval` of the validation
//!   split, and the final test evaluation of a 2-rank `--resume` at the step limit (which trains nothing more).
#![cfg(feature = "mpi")]

use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Largest |difference| allowed between a 2-rank and a 1-rank tensor after 6 steps (measured: 4.2e-6).
const TOL: f32 = 1e-4;
/// Largest |difference| of BatchNorm running means (see `compare`; measured: 2.1e-3). A running mean after a
/// zero-gradient bias averages that bias in: sum over steps t of 0.1 * 0.9^(6-t) * 2 lr t = 3.6e-3 bounds it.
const TOL_RUNNING_MEAN: f32 = 4e-3;
/// Seconds within which a job with a failing rank must have ended.
const FAIL_LIMIT: Duration = Duration::from_secs(60);
const STEPS: usize = 6;
/// Largest |difference| of an evaluation metric between 2 ranks and 1 rank (each batch holds the same tiles and
/// the sums run in the same order, so the CPU backend gives equal numbers; 1e-6 is the bound).
const EVAL_TOL: f64 = 1e-6;

/// One mpirun at a time: the CI machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

struct Shared {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// A temp root holding the prepared tiny dataset and the one-rank 6-step reference run (`one/`).
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let out = run_ok(Command::new(env!("CARGO_BIN_EXE_mfd")).args(train_args(&root, "one", STEPS)));
        assert!(out.status.success());
        Shared { _dir: dir, root }
    })
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

fn train_args(root: &Path, out: &str, max_steps: usize) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into(), "--out".into(), root.join(out).to_string_lossy().into_owned()];
    for s in [
        format!("data.dataset={}", toml_str(&root.join("data/dataset"))),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        "train.batch_size=16".into(),
        // Pinned: the default config's lr may change; Adam turns rounding-level gradient differences into steps ~lr.
        "train.lr=1e-3".into(),
        "train.epochs=3".into(),
        "train.max_seconds=0".into(),
        "train.log_every=1".into(),
        format!("train.max_steps={max_steps}"),
        // Small buckets, so the test exercises several of them.
        "dist.bucket_mb=0.01".into(),
    ] {
        a.push("--set".into());
        a.push(s);
    }
    a
}

fn mpirun(np: usize, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &np.to_string()]);
    for (k, v) in env {
        c.args(["-x", &format!("{k}={v}")]);
    }
    c.arg(env!("CARGO_BIN_EXE_mfd"));
    c.env("RAYON_NUM_THREADS", "1");
    c
}

fn run_ok(c: &mut Command) -> Output {
    let out = c.env("RAYON_NUM_THREADS", "1").output().expect("command starts (is mpirun installed?)");
    assert!(out.status.success(), "{c:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let d = st.tensor(&n).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            (n, d.collect())
        })
        .collect()
}

fn meta(path: &Path, key: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
    m.metadata().clone().unwrap()[key].clone()
}

/// Parameters whose gradient is zero in exact arithmetic, because what follows removes any constant shift:
/// `trunk.stem.conv.bias` (a training-mode BatchNorm follows) and the adversaries' Linear biases (a BatchNorm, or
/// for the last layer the column standardisation of the R2 score, follows). Their computed gradients are
/// rounding noise (|g| ~ 1e-8), which Adam turns into steps of up to lr, so two correct runs that round
/// differently disagree on them by up to 2 lr per step: they are not compared.
fn zero_gradient_params(ts: &[(String, Vec<f32>)]) -> Vec<String> {
    let len = |n: &str| ts.iter().find(|(m, _)| m == n).map(|(_, v)| v.len());
    let mut out = vec!["trunk.stem.conv.bias".to_string()];
    for (name, v) in ts {
        if let Some(prefix) = name.strip_prefix("adversary.").and_then(|_| name.strip_suffix(".bias")) {
            // A Linear's weight is (out, in); a BatchNorm's has the bias's length.
            if len(&format!("{prefix}.weight")).is_some_and(|w| w != v.len()) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// Compare two checkpoints (same names and shapes required): every tensor within `TOL`, except the zero-gradient
/// biases (skipped, see `zero_gradient_params`) and the BatchNorm running means (`TOL_RUNNING_MEAN`: the running
/// mean of a BatchNorm that follows such a bias averages that bias in). Returns the largest difference checked
/// against `TOL`.
fn compare(reference: &Path, other: &Path) -> f32 {
    let (ta, tb) = (tensors(reference), tensors(other));
    let skip = zero_gradient_params(&ta);
    assert_eq!(skip.len(), 7, "{skip:?}");
    assert_eq!(ta.len(), tb.len());
    assert!(ta.len() > 50, "{} tensors", ta.len());
    let mut worst = 0.0f32;
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        let mut w = 0.0f32;
        for (x, y) in va.iter().zip(vb) {
            assert!(x.is_finite() && y.is_finite(), "{na}: non-finite");
            w = w.max((x - y).abs());
        }
        if skip.contains(na) {
            continue;
        }
        let tol = if na.ends_with(".running_mean") { TOL_RUNNING_MEAN } else { TOL };
        assert!(w <= tol, "{na}: {} differs from {} by {w} > {tol}", other.display(), reference.display());
        if tol == TOL {
            worst = worst.max(w);
        }
    }
    worst
}

#[test]
fn two_ranks_equal_one_rank_at_the_same_global_batch() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_ok(mpirun(2, &[("MFD_CHECK_SYNC", "1")]).args(train_args(&s.root, "two", STEPS)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("parameters identical on all 2 ranks after each of {STEPS} steps")), "{err}");
    let last = |d: &str| s.root.join(d).join("checkpoints/last.safetensors");
    let d = compare(&last("one"), &last("two"));
    eprintln!("2 ranks vs 1 rank after {STEPS} steps: max |diff| = {d:e}");
    assert!(d <= TOL, "2-rank and 1-rank parameters differ by {d} > {TOL}");
    assert_eq!(meta(&last("two"), "world_size"), "2");
    assert_eq!(meta(&last("two"), "global_step"), STEPS.to_string());
    // Only rank 0 writes: one metrics line per step and one validation line (plus the test line).
    let metrics = std::fs::read_to_string(s.root.join("two/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"kind\":\"train\"")).count(), STEPS, "{metrics}");
}

/// The model's gradient buckets are started during its backward as each fills (`Buckets::sum_overlapped`): however
/// the buckets are cut, every rank sums the same values, so one big bucket and many small ones (`train_args`'
/// 0.01 MiB) give bit-identical parameters.
#[test]
fn bucket_size_does_not_change_the_parameters() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let run = |out: &str, mb: &str| {
        let mut args = train_args(&s.root, out, 3);
        args.extend(["--set".into(), format!("dist.bucket_mb={mb}")]);
        run_ok(mpirun(2, &[]).args(args));
        tensors(&s.root.join(out).join("checkpoints/last.safetensors"))
    };
    let (small, big) = (run("small_buckets", "0.01"), run("one_bucket", "64"));
    assert_eq!(small.len(), big.len());
    for ((na, va), (nb, vb)) in small.iter().zip(&big) {
        assert_eq!(na, nb);
        assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{na} differs");
    }
}

#[test]
fn a_failure_on_rank_1_ends_the_job_promptly() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let mut child = mpirun(2, &[("MFD_INJECT_FAIL", "1:2")])
        .args(train_args(&s.root, "fail", 1000))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > FAIL_LIMIT {
            let _ = child.kill();
            panic!("the job with a failing rank still runs after {FAIL_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    eprintln!("failing job ended in {:.1} s with {status}", t0.elapsed().as_secs_f64());
    assert!(!status.success(), "{err}");
    assert!(err.contains("rank 1 of 2") && err.contains("injected failure"), "{err}");
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_rank() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run_ok(mpirun(2, &[]).args(train_args(&s.root, "resumed", STEPS / 2)));
    let last = |d: &str| s.root.join(d).join("checkpoints/last.safetensors");
    assert_eq!(meta(&last("resumed"), "world_size"), "2");
    let mut args = train_args(&s.root, "resumed", STEPS);
    args.push("--resume".into());
    run_ok(Command::new(env!("CARGO_BIN_EXE_mfd")).args(args));
    assert_eq!(meta(&last("resumed"), "world_size"), "1");
    assert_eq!(meta(&last("resumed"), "global_step"), STEPS.to_string());
    let d = compare(&last("one"), &last("resumed"));
    eprintln!("2 ranks x {} + 1 rank x {} steps vs 1 rank x {STEPS}: max |diff| = {d:e}", STEPS / 2, STEPS / 2);
    assert!(d <= TOL, "resumed parameters differ by {d} > {TOL}");
}

#[test]
fn local_batch_statistics_keep_the_ranks_identical() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = train_args(&s.root, "local", 3);
    args.extend(["--set".into(), "dist.batch_stats=local".into()]);
    let out = run_ok(mpirun(2, &[("MFD_CHECK_SYNC", "1")]).args(args));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parameters identical on all 2 ranks after each of 3 steps"), "{err}");
}

/// The numbers of `eval_<split>.json` and the per-class AUROC / AUPRC columns of `eval_<split>.tsv`.
fn eval_numbers(dir: &Path, split: &str) -> Vec<(String, f64)> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("eval_{split}.json"))).unwrap()).unwrap();
    let mut out: Vec<(String, f64)> = ["tiles", "bce", "corr", "macro_auroc", "macro_auprc"]
        .iter()
        .map(|k| (k.to_string(), json[k].as_f64().unwrap()))
        .collect();
    let tsv = std::fs::read_to_string(dir.join(format!("eval_{split}.tsv"))).unwrap();
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        for (col, name) in [(3, "auroc"), (4, "auprc")] {
            out.push((format!("{name}[{}]", f[0]), f[col].parse().unwrap_or(f64::NAN)));
        }
    }
    out
}

fn assert_same_metrics(what: &str, one: &[(String, f64)], two: &[(String, f64)]) -> f64 {
    assert_eq!(one.len(), two.len(), "{what}");
    let mut worst = 0.0f64;
    for ((ka, a), (kb, b)) in one.iter().zip(two) {
        assert_eq!(ka, kb);
        if a.is_nan() && b.is_nan() {
            continue;
        }
        let d = (a - b).abs();
        assert!(d <= EVAL_TOL, "{what}: {ka} is {a} on 1 rank, {b} on 2 ranks");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn sharded_validation_equals_one_rank() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ck = s.root.join("one/checkpoints/last.safetensors").to_string_lossy().into_owned();
    let eval_args = |out: &str| -> Vec<String> {
        let out = s.root.join(out).to_string_lossy().into_owned();
        ["eval", "--checkpoint", &ck, "--split", "val", "--out", &out].map(String::from).to_vec()
    };
    run_ok(Command::new(env!("CARGO_BIN_EXE_mfd")).args(eval_args("eval1")));
    run_ok(mpirun(2, &[]).args(eval_args("eval2")));
    let (one, two) = (eval_numbers(&s.root.join("eval1"), "val"), eval_numbers(&s.root.join("eval2"), "val"));
    assert!(one[0].1 > 16.0, "the validation split must span several batches: {} tiles", one[0].1);
    let d = assert_same_metrics("val", &one, &two);
    eprintln!("sharded validation, 2 ranks vs 1 rank: max |diff| over {} metrics = {d:e}", one.len());
    // On synthetic data eval also writes the probe R2 per planted motif; their mean over the label-relevant
    // motifs (non-empty program weights) is the summary's motif_r2_*.
    for dir in ["eval1", "eval2"] {
        let path = s.root.join(dir).join("disentanglement_val.json");
        let dj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let motifs = dj["motifs"].as_array().unwrap();
        assert!(motifs.len() >= 10, "{dir}: {} motifs", motifs.len());
        for half in ["bio", "tech"] {
            let r2: Vec<f64> = motifs
                .iter()
                .filter(|m| !m["weights"].as_array().unwrap().is_empty())
                .filter_map(|m| m[format!("r2_{half}")].as_f64())
                .collect();
            assert!(!r2.is_empty(), "{dir}: no label-relevant motif");
            let mean = r2.iter().sum::<f64>() / r2.len() as f64;
            let summary = dj[format!("motif_r2_{half}")].as_f64().unwrap();
            assert!((mean - summary).abs() < 1e-12, "{dir} {half}: per-motif mean {mean} vs summary {summary}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn two_rank_resume_at_the_limit_evaluates_like_one_rank() {
    let s = shared();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    copy_dir(&s.root.join("one"), &s.root.join("again"));
    std::fs::remove_file(s.root.join("again/eval_test.json")).unwrap();
    let mut args = train_args(&s.root, "again", STEPS);
    args.push("--resume".into());
    run_ok(mpirun(2, &[]).args(args));
    let last = s.root.join("again/checkpoints/last.safetensors");
    assert_eq!(meta(&last, "global_step"), STEPS.to_string());
    assert_eq!(meta(&last, "world_size"), "1", "the resumed run wrote a checkpoint although it trained nothing");
    let metrics = std::fs::read_to_string(s.root.join("again/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"kind\":\"train\"")).count(), STEPS, "{metrics}");
    let (one, two) = (eval_numbers(&s.root.join("one"), "test"), eval_numbers(&s.root.join("again"), "test"));
    let d = assert_same_metrics("test", &one, &two);
    eprintln!("sharded test evaluation (both strands), 2 ranks vs 1 rank: max |diff| = {d:e}");
}
