//! `--resume` reaches the same parameters as an uninterrupted run: a tiny model on the synthetic `tiny` dataset is
//! trained 6 steps in one go, and 3 + 3 steps with a resume in between; every tensor (parameters, BatchNorm
//! statistics) and the optimiser step counts must match exactly (the CPU kernels are deterministic and the sample
//! order is a pure function of (seed, epoch)).

use mfd::config::Config;
use mfd::train::trainer::{run, TrainOptions};
use safetensors::SafeTensors;
use std::path::Path;

fn cfg(root: &Path, out: &str, max_steps: usize) -> Config {
    let ds = root.join("data/dataset");
    Config::load(
        None,
        &[
            format!("data.dataset={}", toml::Value::String(ds.to_string_lossy().into_owned())),
            "model.c=16".into(),
            "model.seq_len=128".into(),
            "model.crop=0".into(),
            "adversary.hidden=16".into(),
            "adversary.layers=2".into(),
            "train.batch_size=16".into(),
            "train.epochs=3".into(),
            "train.max_seconds=0".into(),
            "train.hyper_lr_scale=0.1".into(),
            format!("train.max_steps={max_steps}"),
            format!("train.out={}", toml::Value::String(root.join(out).to_string_lossy().into_owned())),
        ],
    )
    .unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = TrainOptions { resume: false, skip_final_eval: true };
    run(&cfg(root, "full", 6), &opts).unwrap();
    run(&cfg(root, "split", 3), &opts).unwrap();
    run(&cfg(root, "split", 6), &TrainOptions { resume: true, skip_final_eval: true }).unwrap();

    // Compare every tensor of the two last checkpoints byte for byte, and of their optimiser state.
    for file in ["last.safetensors", "last.optim.safetensors"] {
        let a = std::fs::read(root.join("full/checkpoints").join(file)).unwrap();
        let b = std::fs::read(root.join("split/checkpoints").join(file)).unwrap();
        let (sa, sb) = (SafeTensors::deserialize(&a).unwrap(), SafeTensors::deserialize(&b).unwrap());
        let mut names = sa.names();
        names.sort();
        assert!(names.len() > 50, "{file}: {} tensors", names.len());
        for n in names {
            assert_eq!(
                sa.tensor(n).unwrap().data(),
                sb.tensor(n).unwrap().data(),
                "{file}: tensor {n} differs after resume"
            );
        }
    }
    let meta = |out: &str| {
        let bytes = std::fs::read(root.join(out).join("checkpoints/last.safetensors")).unwrap();
        let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
        m.metadata().clone().unwrap()["global_step"].clone()
    };
    assert_eq!(meta("full"), "6");
    assert_eq!(meta("split"), "6");
}

/// `--resume` of a run that stopped at `train.max_steps` trains nothing more: the step count, the last checkpoint
/// (byte for byte) and the logged training steps stay as they were (the loop used to train one step before
/// checking the limit).
#[test]
fn resume_at_the_step_limit_trains_no_extra_step() {
    const STEPS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut cfg = cfg(root, "run", STEPS);
    cfg.train.log_every = 1;
    let first = run(&cfg, &TrainOptions { resume: false, skip_final_eval: true }).unwrap();
    assert_eq!(first.steps, STEPS as u64);
    let last = root.join("run/checkpoints/last.safetensors");
    let before = std::fs::read(&last).unwrap();
    let resumed = run(&cfg, &TrainOptions { resume: true, skip_final_eval: true }).unwrap();
    assert_eq!(resumed.steps, STEPS as u64, "the resumed run trained past train.max_steps");
    assert!(std::fs::read(&last).unwrap() == before, "the resumed run rewrote last.safetensors");
    let metrics = std::fs::read_to_string(root.join("run/metrics.jsonl")).unwrap();
    let train_lines = metrics.lines().filter(|l| l.contains("\"kind\":\"train\"")).count();
    assert_eq!(train_lines, STEPS, "{metrics}");
}
