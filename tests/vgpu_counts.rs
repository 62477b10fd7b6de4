//! Issue 19 item 5: the CUDA training step's driver calls, counted by the virtual GPU (tests/vgpu/counters.h)
//! over STEPS trainer steps (`Training::step` and its logging, `mfd::bench::counts`) of a tiny configuration on
//! one rank. The budget: no device allocation after the first step; host->device bytes per step at most the
//! batch's tile indices (8 bytes each) and flags; synchronisations and device->host copies only on logging steps.
//! All of it is asserted on one rank (the counts measured before and after are at the end of this file). On two
//! ranks (NCCL, under mpirun) no allocation after the first step is asserted, and the rest as ceilings at today's
//! counts: the cross-rank sums of statistics and gradients still go through the host there.
//!
//! Runs under tests/vgpu/run.sh; elsewhere it prints SKIP (MFD_REQUIRE_GPU=1 makes that a failure).

use mfd::backend::cuda::CudaBackend;
use mfd::bench::counts::{count_training_steps, table};

const STEPS: usize = 20;
const LOG_EVERY: usize = 10;
const B: usize = 8;

/// The tiny configuration under `dir` (dataset synthesized there), global batch `b`, on the CUDA backend.
fn overrides(dir: &std::path::Path, b: usize, (steps, log_every): (usize, usize)) -> Vec<String> {
    let path = |p: std::path::PathBuf| toml::Value::String(p.to_string_lossy().into_owned());
    vec![
        format!("data.dataset={}", path(dir.join("data/dataset"))),
        format!("train.out={}", path(dir.join("run"))),
        "train.backend=\"cuda\"".into(),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=8".into(),
        "adversary.layers=2".into(),
        format!("train.batch_size={b}"),
        "train.max_seconds=0".into(),
        format!("train.log_every={log_every}"),
        format!("train.max_steps={steps}"),
    ]
}

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
    let sets = overrides(root.path(), B, (STEPS, LOG_EVERY));
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

/// The 2-rank run (`two_nccl_ranks...`) starts this test under `mpirun -np 2` with MFD_VGPU_COUNTS_DIR set: each
/// rank counts its own driver calls over STEPS2 steps with the NCCL communicator (global batch 2 B). STEPS2 is
/// short because two ranks on the virtual GPU take ~5x one rank's time (CI's budget); the per-step counts are
/// the same every step (measured over 20: 210 per non-logging step, 214 on logging steps).
#[test]
fn rank_of_the_two_rank_count() {
    let Ok(dir) = std::env::var("MFD_VGPU_COUNTS_DIR") else { return };
    struct Count(mfd::config::Config);
    impl mfd::runtime::Job for Count {
        type Out = Option<Vec<mfd::bench::counts::StepCount>>;
        fn run<Be: mfd::backend::Backend>(self, be: &Be, comm: &dyn mfd::dist::Comm) -> mfd::Result<Self::Out> {
            count_training_steps(be, comm, &self.0, STEPS2)
        }
    }
    let dir = std::path::Path::new(&dir);
    let mut sets = overrides(dir, 2 * B, (STEPS2, LOG_EVERY2));
    sets.push("dist.comm=\"nccl\"".into());
    let cfg = mfd::config::Config::load(None, &sets).unwrap();
    let rows = mfd::runtime::run_world(cfg.train.backend, cfg.dist.comm, Count(cfg.clone())).unwrap();
    let rows = rows.expect("the virtual GPU's counters");
    let rank = std::env::var("OMPI_COMM_WORLD_RANK").unwrap_or_default();
    eprintln!(
        "driver calls per training step, rank {rank} of 2 (NCCL, C = 16, T = 128, B = {B} per rank):\n{}",
        table(&rows)
    );
    let steady = &rows[1..];
    let max = |f: fn(&mfd::backend::cuda::counters::DriverCounts) -> u64| {
        steady.iter().map(|r| f(&r.counts)).max().unwrap_or(0)
    };
    let (allocs, syncs, d2h, h2d) =
        (max(|c| c.allocations), max(|c| c.synchronizations), max(|c| c.dtoh_copies), max(|c| c.htod_copies));
    eprintln!(
        "rank {rank}: per step at most {allocs} allocations, {syncs} synchronisations, {d2h} D2H, {h2d} H2D copies"
    );
    assert_eq!(allocs, 0, "device allocations in a step after the first, rank {rank}");
    // Ceilings at today's counts: on several ranks the statistics' cross-rank sums (`Reduce::sum_device`'s
    // default) and the gradient buckets still go through the host communicator (issue 19 item 2, not done).
    assert!(syncs <= CEIL2_SYNCS, "{syncs} synchronisations per step on rank {rank} (ceiling {CEIL2_SYNCS})");
    assert!(d2h <= CEIL2_D2H, "{d2h} D2H copies per step on rank {rank} (ceiling {CEIL2_D2H})");
    assert!(h2d <= CEIL2_H2D, "{h2d} H2D copies per step on rank {rank} (ceiling {CEIL2_H2D})");
    std::fs::write(dir.join(format!("rank-{rank}-ok")), "").unwrap();
}

#[test]
fn two_nccl_ranks_stay_within_todays_counts() {
    if std::env::var("MFD_VGPU").map_or(true, |v| v != "1") || std::env::var("OMPI_COMM_WORLD_SIZE").is_ok() {
        eprintln!("SKIP 2-rank driver-call counts: not under tests/vgpu/run.sh (or already under mpirun)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .args(["-x", &format!("MFD_VGPU_COUNTS_DIR={}", dir.path().display())])
        .env("RAYON_NUM_THREADS", "1")
        .arg(std::env::current_exe().unwrap())
        .args(["rank_of_the_two_rank_count", "--exact", "--nocapture"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", err.lines().filter(|l| l.starts_with('|') || l.contains("rank")).collect::<Vec<_>>().join("\n"));
    assert!(out.status.success(), "{err}");
    for r in 0..2 {
        assert!(dir.path().join(format!("rank-{r}-ok")).exists(), "rank {r} of 2 did not pass: {err}");
    }
}

const STEPS2: usize = 6;
const LOG_EVERY2: usize = 3;
// Measured per rank and step (2 ranks, NCCL, C = 16, T = 128, B = 8 per rank, vgpu): 834 launches, 210
// synchronisations and D2H copies (214 on logging steps), 211 H2D copies (3.78 MB each way: the gradient buckets
// staged through the host, plus the statistics' cross-rank sums), no allocation after the first step.
const CEIL2_SYNCS: u64 = 214;
const CEIL2_D2H: u64 = 214;
const CEIL2_H2D: u64 = 211;
