//! `mfd train` on the CUDA backend learns: a small configuration of the embedded default (tiny data, C = 16,
//! T = 128, B = 32) trained for STEPS steps on the virtual GPU (tests/vgpu/run.sh) reaches a validation macro AUROC
//! clearly above chance, and its loss falls. Every kernel, the registry, the launchers and the trainer's CUDA path
//! run; the virtual GPU executes each GPU thread as a host fiber, so this is ~100x slower than the CPU backend
//! and kept small. Skipped unless MFD_VGPU=1 (set by run.sh); on a real GPU, launch/README.md's commands train the
//! full default instead.

use std::process::Command;

const STEPS: usize = 150;

#[test]
fn cuda_training_on_the_virtual_gpu_learns() {
    if std::env::var("MFD_VGPU").map_or(true, |v| v != "1") {
        eprintln!("SKIP vgpu training: not under tests/vgpu/run.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The final test evaluation is skipped (--no-final-eval): the virtual GPU recomputes the hypernetworks for every
    // evaluation batch, so 5k test tiles would take minutes; the validation split (1118 tiles) is evaluated.
    let mut args: Vec<String> =
        vec!["train".into(), "--no-final-eval".into(), "--out".into(), run.to_string_lossy().into_owned()];
    for s in [
        format!("data.dataset={}", toml::Value::String(dir.path().join("data/dataset").to_string_lossy().into())),
        "train.backend=\"cuda\"".into(),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        "train.batch_size=32".into(),
        "train.max_seconds=0".into(),
        "train.log_every=25".into(),
        format!("train.max_steps={STEPS}"),
    ] {
        args.extend(["--set".to_string(), s]);
    }
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mfd")).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mfd train --backend cuda failed:\n{err}");
    assert!(err.contains("backend cuda"), "{err}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bce: Vec<f64> = rows.iter().filter(|r| r["kind"] == "train").map(|r| r["bce"].as_f64().unwrap()).collect();
    let val = rows.iter().rfind(|r| r["kind"] == "val").expect("a validation row");
    let auroc = val["macro_auroc"].as_f64().unwrap();
    eprintln!(
        "vgpu training: {STEPS} steps in {:.0} s; train BCE {:.4} -> {:.4}; validation macro AUROC {auroc:.4}",
        t0.elapsed().as_secs_f64(),
        bce[0],
        bce[bce.len() - 1]
    );
    assert!(bce[bce.len() - 1] < 0.8 * bce[0], "train BCE did not fall: {bce:?}");
    assert!(auroc > 0.6, "validation macro AUROC {auroc:.4} after {STEPS} steps on the virtual GPU");
}
