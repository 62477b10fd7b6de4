//! The NCCL communicator (`mfd::dist::nccl`). Without a GPU (no driver, no device or no libnccl.so) the all-reduce
//! test prints `SKIP` with the reason and passes (MFD_REQUIRE_GPU=1 turns the skip into a failure), and choosing
//! NCCL is checked to be a clear error, not a panic. On a GPU machine (docs/SCALING.md section 4 gives the
//! commands): on 1 rank an all-reduce returns its input; under `mpirun -np 2` (two GPUs, `--features mpi`) it
//! returns the sum over ranks; device buckets (communication stream + events: `sum_device_buckets`, and the
//! trainer's `Lane::start_sum_after` / `Lane::join_compute` on f32 and f64, on the gradients' and the blocking
//! sums' lanes) and staged host buckets (`Comm::sum_buckets`) alike.

use mfd::dist::nccl::{probe, Nccl};
use mfd::dist::{Comm, HostBucket, Single};
use std::process::Command;

/// Rank r's value at element i: (r + 1) * (i % 7 + 1); the sum over W ranks is W (W + 1) / 2 * (i % 7 + 1).
fn value(rank: usize, i: usize) -> f32 {
    ((rank + 1) * (i % 7 + 1)) as f32
}

fn expected(world: usize, i: usize) -> f32 {
    (world * (world + 1) / 2 * (i % 7 + 1)) as f32
}

#[test]
fn choosing_nccl_without_a_gpu_is_a_clear_error() {
    let Err(why) = probe() else {
        eprintln!("SKIP nccl no-GPU error test: NCCL can run here");
        return;
    };
    let err = Nccl::new(Box::new(Single)).err().expect("Nccl::new must fail without a GPU");
    let msg = err.to_string();
    assert!(msg.contains("'nccl' cannot run here") && msg.contains(&why), "{msg}");
    // Through the binary: dist.comm = "nccl" with the CPU backend, and the retired MFD_COMM variable, end
    // `mfd train` with an error naming the key, before anything is written, and no panic.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = |set: &[&str], env: Option<(&str, &str)>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mfd"));
        c.args(["train", "--out", &run.to_string_lossy()]);
        for s in set {
            c.args(["--set", s]);
        }
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = train(&["dist.comm=\"nccl\""], None);
    assert!(err.contains("config dist.comm: 'nccl' needs the CUDA backend") && !err.contains("panicked"), "{err}");
    let err = train(&[], Some(("MFD_COMM", "nccl")));
    assert!(err.contains("MFD_COMM") && err.contains("dist.comm") && !err.contains("panicked"), "{err}");
    assert!(!run.exists(), "nothing may be written before the communicator is known");
}

#[test]
fn all_reduce_returns_the_input_on_one_rank_and_the_sum_on_several() {
    if let Err(why) = probe() {
        let required = std::env::var("MFD_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(!required, "MFD_REQUIRE_GPU=1 but NCCL cannot run: {why}");
        eprintln!("SKIP nccl all-reduce test: {why}");
        return;
    }
    // Mpi under mpirun (with --features mpi), Single otherwise.
    let host = mfd::dist::init().unwrap();
    let nccl = Nccl::new(host).unwrap();
    let (rank, world) = (nccl.rank(), nccl.size());
    assert_eq!(nccl.name(), "nccl");
    let stream = nccl.stream().clone();

    // One device buffer, in place.
    let n = 1000;
    let host: Vec<f32> = (0..n).map(|i| value(rank, i)).collect();
    let mut buf = stream.clone_htod(&host).unwrap();
    nccl.all_reduce_sum(&mut buf).unwrap();
    let got = stream.clone_dtoh(&buf).unwrap();
    for (i, g) in got.iter().enumerate() {
        let want = if world == 1 { host[i] } else { expected(world, i) };
        assert_eq!(*g, want, "rank {rank}: element {i}");
    }

    // Device buckets written on a compute stream, with work queued there while they are reduced.
    let compute = stream.context().new_stream().unwrap();
    let sizes = [5usize, 4096, 1];
    let mut buckets: Vec<_> = sizes
        .iter()
        .map(|&n| compute.clone_htod(&(0..n).map(|i| value(rank, i)).collect::<Vec<_>>()).unwrap())
        .collect();
    let mut ran = false;
    nccl.sum_device_buckets(&mut buckets, &compute, &mut || {
        ran = true;
        Ok(())
    })
    .unwrap();
    assert!(ran);
    for (b, &n) in buckets.iter().zip(&sizes) {
        let got = compute.clone_dtoh(b).unwrap();
        assert_eq!(got, (0..n).map(|i| expected(world, i)).collect::<Vec<_>>(), "rank {rank}: device bucket of {n}");
    }

    // The trainer's device path: f64 (statistics) and f32 (a gradient bucket) written on the compute stream, summed
    // in place on the communication stream behind an event, then joined back into the compute stream; a statistics
    // sum on the statistics' own communicator (`sum_stats`) while the bucket is in flight.
    let mut stats = compute.clone_htod(&(0..37).map(|i| f64::from(value(rank, i))).collect::<Vec<_>>()).unwrap();
    let mut bn = compute.clone_htod(&(0..11).map(|i| f64::from(value(rank, i))).collect::<Vec<_>>()).unwrap();
    let mut grads = compute.clone_htod(&(0..300).map(|i| value(rank, i)).collect::<Vec<_>>()).unwrap();
    let lane = nccl.grads();
    lane.start_sum_after(&compute, &mut stats.slice_mut(0..37)).unwrap();
    lane.start_sum_after(&compute, &mut grads.slice_mut(0..300)).unwrap();
    nccl.sum_stats(&compute, &mut bn.slice_mut(0..11)).unwrap();
    lane.join_compute(&compute).unwrap();
    let want64: Vec<f64> = (0..37).map(|i| f64::from(expected(world, i))).collect();
    assert_eq!(compute.clone_dtoh(&stats).unwrap(), want64, "rank {rank}: f64 statistics");
    assert_eq!(compute.clone_dtoh(&bn).unwrap(), want64[..11], "rank {rank}: f64 statistics (sum_stats)");
    let want32: Vec<f32> = (0..300).map(|i| expected(world, i)).collect();
    assert_eq!(compute.clone_dtoh(&grads).unwrap(), want32, "rank {rank}: f32 bucket");

    // The blocking bucket sums' lane (`Buckets::all_reduce`: the adversary's gradients, summed while the model's
    // buckets are in flight): a model bucket started on the gradients' lane, then a bucket summed and joined on the
    // blocking lane and read on the compute stream before the gradients' lane is joined. The blocking lane has a
    // stream (and communicator) of its own, so on a GPU that join does not wait for the model bucket. The virtual GPU
    // cannot show that part: its streams run every operation at once and its events are always complete, so this
    // checks the third communicator's sums (2 ranks) and that its stream is not the gradients' one.
    let mut model = compute.clone_htod(&(0..500).map(|i| value(rank, i)).collect::<Vec<_>>()).unwrap();
    let mut adv = compute.clone_htod(&(0..60).map(|i| value(rank, i)).collect::<Vec<_>>()).unwrap();
    let (grads_lane, blocking) = (nccl.grads(), nccl.blocking());
    assert!(!std::sync::Arc::ptr_eq(blocking.stream(), grads_lane.stream()), "the blocking lane needs its own stream");
    grads_lane.start_sum_after(&compute, &mut model.slice_mut(0..500)).unwrap();
    blocking.start_sum_after(&compute, &mut adv.slice_mut(0..60)).unwrap();
    blocking.join_compute(&compute).unwrap();
    assert_eq!(compute.clone_dtoh(&adv).unwrap(), want32[..60], "rank {rank}: f32 bucket (blocking lane)");
    grads_lane.join_compute(&compute).unwrap();
    let want_model: Vec<f32> = (0..500).map(|i| expected(world, i)).collect();
    assert_eq!(compute.clone_dtoh(&model).unwrap(), want_model, "rank {rank}: f32 bucket (gradients' lane)");

    // Host buckets staged through the device (the host-bucket API), an empty one included.
    let mut hb: Vec<HostBucket> = [3usize, 0, 777]
        .iter()
        .map(|&n| HostBucket { data: (0..n).map(|i| value(rank, i)).collect(), scratch: vec![] })
        .collect();
    nccl.sum_buckets(&mut hb, &mut || Ok(())).unwrap();
    for b in &hb {
        assert_eq!(
            b.data,
            (0..b.data.len()).map(|i| expected(world, i)).collect::<Vec<_>>(),
            "rank {rank}: host bucket"
        );
    }
    eprintln!("nccl all-reduce ok on rank {rank} of {world} (GPU {})", nccl.device());
    // For the 2-rank run below: a file per rank that passed (the ranks' stderr interleaves mid-line).
    if let Ok(dir) = std::env::var("MFD_NCCL_MARK_DIR") {
        std::fs::write(std::path::Path::new(&dir).join(format!("rank-{rank}-of-{world}")), b"ok").unwrap();
    }
}

/// Under the virtual GPU (tests/vgpu/run.sh, whose fake libnccl sums through shared memory between the ranks'
/// processes): the all-reduce test above on 2 ranks, and a 2-rank `dist.comm = "nccl"` training on the CUDA backend
/// that equals the 1-rank one. Skipped elsewhere (NCCL wants one GPU per rank; docs/SCALING.md has the real-GPU
/// commands).
#[cfg(feature = "mpi")]
#[test]
fn on_the_virtual_gpu_two_nccl_ranks_sum_and_train_like_one() {
    if std::env::var("MFD_VGPU").map_or(true, |v| v != "1") || std::env::var("OMPI_COMM_WORLD_SIZE").is_ok() {
        eprintln!("SKIP 2-rank NCCL on the virtual GPU: not under tests/vgpu/run.sh (or already under mpirun)");
        return;
    }
    let mpirun = |np: &str| {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np", np]);
        c.env("RAYON_NUM_THREADS", "1");
        c
    };
    let test_exe = std::env::current_exe().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let out = mpirun("2")
        .args(["-x", &format!("MFD_NCCL_MARK_DIR={}", marks.path().display())])
        .arg(&test_exe)
        .args(["all_reduce_returns_the_input_on_one_rank_and_the_sum_on_several", "--exact"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for r in 0..2 {
        assert!(marks.path().join(format!("rank-{r}-of-2")).exists(), "rank {r} of 2 did not pass: {err}");
    }

    // The same 6 steps on 1 rank and on 2 ranks at the same global batch, CUDA backend, NCCL gradients.
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &str| {
        let mut a = vec!["train".to_string(), "--no-final-eval".into(), "--out".into()];
        a.push(dir.path().join(out).to_string_lossy().into_owned());
        for s in [
            format!("data.dataset={}", toml::Value::String(dir.path().join("data/dataset").to_string_lossy().into())),
            "train.backend=\"cuda\"".into(),
            // NCCL on one rank too (auto would pick MPI there), so both runs sum gradients the same way.
            "dist.comm=\"nccl\"".into(),
            "model.c=16".into(),
            "model.seq_len=128".into(),
            "model.crop=0".into(),
            "adversary.hidden=16".into(),
            "adversary.layers=2".into(),
            "train.batch_size=16".into(),
            "train.lr=1e-3".into(),
            "train.max_seconds=0".into(),
            "train.log_every=1".into(),
            "train.max_steps=6".into(),
            "dist.bucket_mb=0.01".into(),
        ] {
            a.extend(["--set".to_string(), s]);
        }
        a
    };
    let mfd = env!("CARGO_BIN_EXE_mfd");
    let one = mpirun("1").arg(mfd).args(args("one")).output().unwrap();
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let two = mpirun("2").arg(mfd).args(args("two")).output().unwrap();
    let err = String::from_utf8_lossy(&two.stderr);
    assert!(two.status.success(), "{err}");
    assert!(err.contains("backend cuda") && err.contains("2 ranks (nccl)"), "{err}");
    let load = |d: &str| {
        let bytes = std::fs::read(dir.path().join(d).join("checkpoints/last.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<(String, Vec<f32>)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (load("one"), load("two"));
    assert_eq!(a.len(), b.len());
    // Not compared: biases (the stem's and the adversaries' have zero exact gradient, so Adam steps them by the
    // sign of rounding noise, see tests/dist.rs) and running statistics (which average those biases in).
    let mut worst = 0.0f32;
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        if n.ends_with(".bias") || n.contains("running_") {
            continue;
        }
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
        }
    }
    eprintln!("2 NCCL ranks vs 1 on the virtual GPU after 6 steps: max |diff| of weights {worst:e}");
    assert!(worst <= 1e-4, "2-rank and 1-rank weights differ by {worst}");
}
