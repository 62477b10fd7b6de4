//! `mfd train` on the CUDA backend, on the virtual GPU (tests/vgpu/run.sh), with a small configuration of the
//! embedded default (tiny data, C = 16, B = 32, free output layer):
//! - a step taken on the GPU from a trained state (a CPU run's checkpoint after 150 steps: moments, AMSGrad maxima,
//!   BatchNorm running statistics, step count 150) gives the parameters the CPU's step gives, to rounding in f32
//!   and to a stated tolerance in bf16; this is deterministic and catches what a step from the initial state does
//!   not (state loaded onto the device, trained activations, optimizer step count > 1);
//! - a run of STEPS steps from scratch on the GPU trains, validates and checkpoints, and its validation AUROC is
//!   above chance.
//!
//! Every kernel, cuBLAS, the registry, the launchers and the trainer's CUDA path run; the virtual GPU executes each
//! GPU thread as a host fiber (~100x slower than the CPU backend), so this is kept small. Runs under
//! tests/vgpu/run.sh (MFD_VGPU=1) or where a GPU is required (MFD_REQUIRE_GPU=1: launch/gpu_check.sh runs it from
//! its bundle, with MFD_BIN naming the bundle's mfd); skipped otherwise.
//!
//! Why the AUROC of a short run is not compared between backends (measured 2026-12-05, CPU, this configuration,
//! seed 1, 300 steps): the run sits on a plateau that it leaves at a step set by rounding. With `train.lr`
//! scaled by 1 + k 1e-6 (k = 0..7, a change at the last bits of every update) the validation AUROC is 0.728,
//! 0.565, 0.584, 0.569, 0.642, 0.689, 0.569, 0.565 (400 steps: 0.56-0.76, 500: 0.59-0.78; batch 64 or 128 as
//! spread). The CUDA run's 0.602 lies inside that spread, and its parameters after one step from the CPU's
//! state at step 150 agree with the CPU's to 6e-6 of the update: the gap once recorded here (CUDA 0.602 vs CPU
//! 0.728) was the CPU's lucky draw, not a CUDA fault.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Steps of the from-scratch run: long enough for the validation AUROC to leave chance on every draw measured
/// above (lowest 0.565 at 300 steps over 9 rounding draws of the CPU run; CUDA 0.602).
const STEPS: usize = 300;
/// The trained state the one-step comparison starts from (a CPU run of the same configuration).
const TRAINED_STEPS: usize = 150;
/// `train.lr` of this configuration (the embedded default's): bounds the move of the gauge tensors below.
const LR: f32 = 1e-2;

/// Whether to run: on the virtual GPU (tests/vgpu/run.sh) or where a GPU is required.
fn on_a_gpu() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
    let run = set("MFD_VGPU") || set("MFD_REQUIRE_GPU");
    if !run {
        eprintln!("SKIP GPU training: neither under tests/vgpu/run.sh nor MFD_REQUIRE_GPU=1");
    }
    run
}

/// The configuration shared by every run of this file, as `--set` arguments.
fn overrides(dir: &Path, backend: &str, precision: &str, max_steps: usize) -> Vec<String> {
    let mut args = Vec::new();
    for s in [
        format!("data.dataset={}", toml::Value::String(dir.join("data/dataset").to_string_lossy().into())),
        format!("train.backend=\"{backend}\""),
        format!("train.precision=\"{precision}\""),
        // A free output layer (no metadata hypernetworks): on the tiny data it starts to learn within a few hundred
        // steps, where the hypernetworks need thousands (docs/LEARNING.md). The hypernetworks' CUDA path is
        // covered step for step by tests/cuda_step.rs and tests/nccl.rs.
        "model.metadata=false".into(),
        "model.c=16".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        "train.batch_size=32".into(),
        "train.max_seconds=0".into(),
        "train.log_every=25".into(),
        format!("train.max_steps={max_steps}"),
    ] {
        args.extend(["--set".to_string(), s]);
    }
    args
}

/// `mfd train` into `run` (continuing it with `resume`); returns stderr.
fn mfd_train(dir: &Path, run: &Path, backend: &str, precision: &str, max_steps: usize, resume: bool) -> String {
    let mut args: Vec<String> =
        vec!["train".into(), "--no-final-eval".into(), "--out".into(), run.to_string_lossy().into_owned()];
    if resume {
        args.push("--resume".into());
    }
    args.extend(overrides(dir, backend, precision, max_steps));
    // MFD_BIN: the mfd binary beside a copied test executable (launch/gpu_check.sh's bundle).
    let bin = std::env::var("MFD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mfd").to_string());
    let out = Command::new(bin).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mfd train --backend {backend} failed:\n{err}");
    assert!(err.contains(&format!("backend {backend}")), "{err}");
    if backend == "cuda" {
        assert!(err.contains(&format!("precision {precision}")), "{err}");
    }
    err
}

/// The run's last validation macro AUROC and its train BCE per logged step.
fn val_auroc_and_bce(run: &Path) -> (f64, Vec<f64>) {
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let bce = rows.iter().filter(|r| r["kind"] == "train").map(|r| r["bce"].as_f64().unwrap()).collect();
    let val = rows.iter().rfind(|r| r["kind"] == "val").expect("a validation row");
    (val["macro_auroc"].as_f64().unwrap(), bce)
}

/// Every f32 tensor of a checkpoint (parameters and BatchNorm running statistics), by name.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
        .map(|(k, v)| (k, v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        .collect()
}

/// Tensors the loss does not depend on (their gradient is zero but for rounding, so AMSGrad moves them by up to
/// a few lr in a direction rounding picks, on any backend): the stem conv's bias (every path from the stem
/// reaches a BatchNorm through max-pools, which commute with a per-channel constant) and the adversaries' linear
/// biases (each feeds a BatchNorm; the last one a correlation, which removes means).
fn gauge(name: &str, all: &BTreeMap<String, Vec<f32>>) -> bool {
    let module = name.strip_suffix(".bias");
    name == "trunk.stem.conv.bias"
        || (name.starts_with("adversary.") && module.is_some_and(|m| !all.contains_key(&format!("{m}.running_mean"))))
}

/// Per tensor: ||(after_gpu - before) - (after_cpu - before)|| / ||after_cpu - before|| (the step's update error
/// relative to the update), worst first; gauge tensors are checked apart (their move is bounded, not compared).
fn update_errors(
    before: &BTreeMap<String, Vec<f32>>,
    cpu: &BTreeMap<String, Vec<f32>>,
    gpu: &BTreeMap<String, Vec<f32>>,
) -> Vec<(f64, String)> {
    let mut errors = Vec::new();
    for (name, p) in before {
        let (c, g) = (&cpu[name], &gpu[name]);
        assert!(g.iter().all(|x| x.is_finite()), "{name}: non-finite after the GPU step");
        if gauge(name, before) {
            let moved = g.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(moved <= 8.0 * LR, "{name} (no gradient) moved {moved} from the CPU's: more than AMSGrad can");
            continue;
        }
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for ((&p, &c), &g) in p.iter().zip(c).zip(g) {
            let (dc, dg) = ((c - p) as f64, (g - p) as f64);
            diff += (dg - dc) * (dg - dc);
            norm += dc * dc;
        }
        errors.push((diff.sqrt() / (norm.sqrt() + 1e-12), name.clone()));
    }
    errors.sort_by(|a, b| b.0.total_cmp(&a.0));
    errors
}

#[test]
fn a_step_from_a_trained_state_on_the_gpu_matches_the_cpu_in_each_precision() {
    if !on_a_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained");
    mfd_train(dir.path(), &trained, "cpu", "f32", TRAINED_STEPS, false);
    let before = tensors(&trained.join("checkpoints/last.safetensors"));
    // One more step from the same checkpoint (and optimizer state) on each backend and precision.
    let step = |backend: &str, precision: &str| {
        let run = dir.path().join(format!("step_{backend}_{precision}"));
        let copy = Command::new("cp").arg("-r").arg(&trained).arg(&run).status().unwrap();
        assert!(copy.success());
        mfd_train(dir.path(), &run, backend, precision, TRAINED_STEPS + 1, true);
        tensors(&run.join("checkpoints/last.safetensors"))
    };
    let cpu = step("cpu", "f32");
    assert_ne!(cpu, before, "the resumed CPU run took no step");
    // Tolerances on the update error (measured 2026-12-05: f32 worst 6.3e-6, a BatchNorm running variance; bf16
    // worst 4.3e-2 for a parameter, 0.24 for a running mean whose update is a small difference of batch means
    // computed from bf16-rounded products).
    for (precision, tol_param, tol_stat) in [("f32", 1e-4, 1e-4), ("bf16", 0.15, 0.6)] {
        let gpu = step("cuda", precision);
        let errors = update_errors(&before, &cpu, &gpu);
        eprintln!(
            "one step from step {TRAINED_STEPS}, cuda {precision} vs cpu, update error, worst: {:?}",
            &errors[..3]
        );
        for (err, name) in &errors {
            let tol = if name.contains(".running_") { tol_stat } else { tol_param };
            assert!(*err <= tol, "{precision}: {name} update differs from the CPU's by {err:.3e} of it (tol {tol})");
        }
    }
}

#[test]
fn cuda_training_from_scratch_on_the_virtual_gpu_learns() {
    if !on_a_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The CPU run only for the printed comparison (a few seconds; see the module doc for why it is not asserted).
    let cpu_run = dir.path().join("run_cpu");
    mfd_train(dir.path(), &cpu_run, "cpu", "f32", STEPS, false);
    let (cpu_auroc, cpu_bce) = val_auroc_and_bce(&cpu_run);
    let t0 = std::time::Instant::now();
    let run = dir.path().join("run_cuda");
    mfd_train(dir.path(), &run, "cuda", "f32", STEPS, false);
    let (auroc, bce) = val_auroc_and_bce(&run);
    eprintln!(
        "vgpu training: {STEPS} steps in {:.0} s; train BCE {:.4} -> {:.4} (cpu {:.4} -> {:.4}); validation macro \
         AUROC {auroc:.4} (cpu {cpu_auroc:.4}; rounding alone spreads it over 0.565-0.728 here)",
        t0.elapsed().as_secs_f64(),
        bce[0],
        bce[bce.len() - 1],
        cpu_bce[0],
        cpu_bce[cpu_bce.len() - 1]
    );
    assert!(run.join("checkpoints/last.safetensors").exists());
    // Chance is 0.5 (macro over 72 experiments, 1118 tiles); a run that learned nothing in the trunk stays at
    // 0.49-0.52 (measured with the adversaries and penalty off, which stalls it).
    assert!(auroc > 0.54, "validation macro AUROC {auroc:.4} after {STEPS} steps on the virtual GPU");
}
