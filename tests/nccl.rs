//! The NCCL communicator (`mfd::dist::nccl`). Without a GPU (no driver, no device or no libnccl.so) the all-reduce
//! test prints `SKIP` with the reason and passes (MFD_REQUIRE_GPU=1 turns the skip into a failure), and choosing
//! NCCL is checked to be a clear error, not a panic. On a GPU machine (docs/SCALING.md section 4 gives the
//! commands): on 1 rank an all-reduce returns its input; under `mpirun -np 2` (two GPUs, `--features mpi`) it
//! returns the sum over ranks; device buckets (communication stream + events, `sum_device_buckets`) and staged
//! host buckets (`Comm::sum_buckets`) alike.

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
    // Through the binary: MFD_COMM=nccl ends `mfd train` with that error and no panic.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mfd"))
        .args(["train", "--out", &dir.path().join("run").to_string_lossy()])
        .env("MFD_COMM", "nccl")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("'nccl' cannot run here") && !err.contains("panicked"), "{err}");
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

    // Host buckets staged through the device (the trainer's generic path), an empty one included.
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
}
