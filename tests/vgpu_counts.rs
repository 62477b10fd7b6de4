//! Issue 19 item 5: the CUDA training step's driver calls, counted by the virtual GPU (tests/vgpu/counters.h)
//! over STEPS trainer steps (`Training::step` and its logging, `mfd::bench::counts`) of a tiny configuration on
//! one rank. The budget: no device allocation after the first step; host->device bytes per step at most the
//! batch's tile indices (8 bytes each) and flags; synchronisations and device->host copies only on logging steps.
//! All of it is asserted on one rank (the counts measured before and after are at the end of this file).
//!
//! Runs under tests/vgpu/run.sh; elsewhere it prints SKIP (MFD_REQUIRE_GPU=1 makes that a failure).

use mfd::backend::cuda::CudaBackend;
use mfd::bench::counts::{count_training_steps, table};

const STEPS: usize = 20;
const LOG_EVERY: usize = 10;
const B: usize = 8;

#[test]
fn twenty_training_steps_stay_within_the_driver_call_budget() {
    let required = std::env::var("MFD_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let be = match CudaBackend::new(0) {
        Ok(be) => be,
        Err(why) => {
            assert!(!required, "MFD_REQUIRE_GPU=1: {why}");
            eprintln!("SKIP driver-call counts: no usable GPU ({why})");
            return;
        }
    };
    let root = tempfile::tempdir().unwrap();
    let mut sets = vec![
        format!("data.dataset={}", toml::Value::String(root.path().join("data/dataset").to_string_lossy().into())),
        format!("train.out={}", toml::Value::String(root.path().join("run").to_string_lossy().into())),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=8".into(),
        "adversary.layers=2".into(),
        format!("train.batch_size={B}"),
        "train.max_seconds=0".into(),
        format!("train.log_every={LOG_EVERY}"),
        format!("train.max_steps={STEPS}"),
    ];
    sets.push("train.backend=\"cuda\"".into());
    let cfg = mfd::config::Config::load(None, &sets).unwrap();
    let Some(rows) = count_training_steps(&be, &mfd::dist::Single, &cfg, STEPS).unwrap() else {
        assert!(!required, "MFD_REQUIRE_GPU=1 but the driver has no counters (not the virtual GPU)");
        eprintln!("SKIP driver-call counts: the loaded driver is not the virtual GPU ({})", be.describe());
        return;
    };
    eprintln!(
        "driver calls per training step on {} (C = 16, T = 128, B = {B}, 1 rank):\n{}",
        be.describe(),
        table(&rows)
    );
    assert_eq!(rows.len(), STEPS);
    for r in &rows {
        assert_eq!(r.logged, (r.step as usize).is_multiple_of(LOG_EVERY), "step {}", r.step);
    }
    let steady = &rows[1..];
    let max = |f: fn(&mfd::backend::cuda::counters::DriverCounts) -> u64, logged: bool| {
        steady.iter().filter(|r| r.logged == logged).map(|r| f(&r.counts)).max().unwrap_or(0)
    };
    // Host->device: the batch's tile indices (u64 each) and flags, per step.
    let h2d_budget = (B * 8 + 64) as u64;
    let (allocs, syncs, d2h, h2d_bytes) = (
        max(|c| c.allocations, false).max(max(|c| c.allocations, true)),
        max(|c| c.synchronizations, false),
        max(|c| c.dtoh_copies, false),
        max(|c| c.htod_bytes, false).max(max(|c| c.htod_bytes, true)),
    );
    eprintln!(
        "after the first step, per step at most: {allocs} allocations, {syncs} synchronisations and {d2h} D2H copies \
         (non-logging steps), {h2d_bytes} H2D bytes (budget {h2d_budget})"
    );
    assert_eq!(allocs, 0, "device allocations in a step after the first (the caching allocator)");
    assert_eq!(syncs, 0, "synchronisations on a step that is not logged");
    assert_eq!(d2h, 0, "device->host copies on a step that is not logged");
    assert!(h2d_bytes <= h2d_budget, "{h2d_bytes} H2D bytes per step (budget {h2d_budget})");
    // A logging step reads the loss scalars: BCE, the Pearson penalty and the two R2 scores.
    let logged_d2h = max(|c| c.dtoh_copies, true);
    assert!(logged_d2h <= 4, "{logged_d2h} device->host copies on a logging step");
}

// Measured per step (C = 16, T = 128, B = 8, 1 rank, vgpu), launches / synchronisations / H2D copies (bytes) /
// D2H copies (bytes) / allocations:
// - fd22e24 (before issue 19 item 2): 740 / 203 / 283 (18812) / 203 (21812) / 235 (638 in the first step);
// - now: 834 / 0 (4 on logging steps) / 1 (64: the tile indices) / 0 (4 copies, 20 bytes on logging steps) / 0
//   (443 in the first step).
