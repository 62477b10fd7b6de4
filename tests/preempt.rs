//! Preemption survival through the binary (issue 23 item 2): a run stopped by SIGUSR1 (Slurm's `--signal`)
//! finishes its step, writes `last` and exits with status 75; one killed with SIGKILL loses only the steps since
//! its last periodic checkpoint (`train.checkpoint_every_steps`). Continued with `--resume auto`, both end with
//! every tensor and optimiser moment byte-identical to an uninterrupted run's, which itself started with
//! `--resume auto` on an empty directory.

mod common;

use safetensors::SafeTensors;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 40;

fn train(root: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mfd"));
    c.args(["train", "--no-final-eval", "--resume", "auto", "--out"]).arg(root.join(out));
    let mut sets = common::tiny_overrides(&root.join("data/dataset"));
    sets.extend(["train.epochs=100".into(), "train.log_every=1".into(), format!("train.max_steps={STEPS}")]);
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        c.args(["--set", s]);
    }
    c.env("RAYON_NUM_THREADS", "1").stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Highest training step logged so far in `<run>/metrics.jsonl`.
fn logged_step(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Wait until the child has logged step `step`, then send it `signal`; returns its exit status and stderr.
fn interrupt(mut child: Child, run: &Path, step: u64, signal: &str) -> (Option<i32>, String) {
    let t0 = Instant::now();
    while logged_step(run) < step {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before step {step} could be interrupted");
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no step {step} after 300 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st.tensors().into_iter().map(|(n, t)| (n, t.data().to_vec())).collect();
    v.sort();
    v
}

fn assert_same_run(root: &Path, a: &str, b: &str) {
    for file in ["last.safetensors", "last.optim.safetensors"] {
        let (x, y) = (
            tensors(&root.join(a).join("checkpoints").join(file)),
            tensors(&root.join(b).join("checkpoints").join(file)),
        );
        assert!(x.len() > 50 && x.len() == y.len(), "{file}: {} vs {} tensors", x.len(), y.len());
        for ((n, p), (_, q)) in x.iter().zip(&y) {
            assert!(p == q, "{file}: tensor {n} of {b} differs from the uninterrupted run");
        }
    }
    // The resumed log reads as one run: each training step logged once.
    let text = std::fs::read_to_string(root.join(b).join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>(), "{b}: training steps in metrics.jsonl");
}

#[test]
fn a_signalled_or_killed_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Uninterrupted (`--resume auto` on a directory that does not exist: a fresh start).
    let out = train(root, "whole", &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--resume auto: no checkpoint yet, starting afresh"), "{err}");

    // SIGUSR1 mid-run: the step finishes, `last` is written, exit status 75; then --resume auto continues.
    let child = train(root, "signalled", &[]).spawn().unwrap();
    let (code, err) = interrupt(child, &root.join("signalled"), 5, "-USR1");
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("SIGUSR1 received: writing the checkpoint"), "{err}");
    let out = train(root, "signalled", &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("resuming at epoch"), "{err}");
    assert_same_run(root, "whole", "signalled");

    // SIGKILL mid-run with a checkpoint every 3 steps: the resume starts from the latest one.
    let every = ["train.checkpoint_every_steps=3"];
    let child = train(root, "killed", &every).spawn().unwrap();
    let (code, _) = interrupt(child, &root.join("killed"), 7, "-KILL");
    assert_eq!(code, None, "killed by a signal: no exit code");
    let out = train(root, "killed", &every).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let resumed_at: u64 = err
        .split("(global step ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resume line: {err}"));
    assert!(resumed_at >= 6, "resumed at global step {resumed_at}: {err}");
    assert_same_run(root, "whole", "killed");
}
