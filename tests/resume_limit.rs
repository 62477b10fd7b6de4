//! `mfd train --resume` of a run that stopped at `train.max_steps` trains nothing more: the step count, the last
//! checkpoint (byte for byte) and the logged training steps stay as they were (the loop used to train one step
//! before checking the limit).

use mfd::config::Config;
use mfd::train::trainer::{run, TrainOptions};
use std::path::Path;

const STEPS: usize = 3;

fn cfg(root: &Path) -> Config {
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
            "train.log_every=1".into(),
            format!("train.max_steps={STEPS}"),
            format!("train.out={}", toml::Value::String(root.join("run").to_string_lossy().into_owned())),
        ],
    )
    .unwrap()
}

#[test]
fn resume_at_the_step_limit_trains_no_extra_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cfg = cfg(root);
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
