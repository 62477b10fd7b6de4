//! `mfd bench allreduce`: bus bandwidth of the gradient all-reduce through `dist::Comm::sum_buckets` (the call
//! the trainer's bucketed gradient all-reduce makes), one f32 bucket of 1 KiB to 64 MiB (`--quick`: to 64 KiB).
//!
//! NCCL-tests conventions: algbw = bytes / time, busbw = algbw * 2(n-1)/n (what each link carries in a ring), time
//! = the slowest rank's mean over the repetitions. On one rank (`Single`) no communication happens: the time is the
//! call overhead and busbw is 0. Under `mpirun -np N` (build with `--features mpi`) every rank runs this and rank 0
//! writes the result. The first all-reduce of each size is checked (every element must equal N).

use super::Section;
use crate::dist::{Comm, HostBucket};
use crate::error::{MfdError, Result};
use serde_json::json;
use std::time::Instant;

pub fn bench_allreduce(comm: &dyn Comm, quick: bool) -> Result<Section> {
    let n_ranks = comm.size();
    let factor = 2.0 * (n_ranks as f64 - 1.0) / n_ranks as f64;
    let max_bytes: usize = if quick { 64 << 10 } else { 64 << 20 };
    let mut sizes = vec![1usize << 10];
    while sizes.last().is_some_and(|&s| s * 4 <= max_bytes) {
        sizes.push(sizes.last().copied().unwrap_or(1) * 4);
    }
    let mut md = format!(
        "## All-reduce ({} rank(s), `{}` communicator, f32 sum; busbw = algbw x 2(n-1)/n){}\n\n\
         | bytes | reps | time (us) | algbw (GB/s) | busbw (GB/s) |\n|---|---|---|---|---|\n",
        n_ranks,
        comm.name(),
        if n_ranks == 1 { "; one rank: no communication happens, the time is the call overhead" } else { "" }
    );
    let mut rows = Vec::new();
    for &bytes in &sizes {
        let n = bytes / 4;
        // Same on every rank (a function of the size only): MPI matches collectives by order.
        let reps = if quick { 3 } else { ((256usize << 20) / bytes).clamp(4, 200) };
        let mut bucket = [HostBucket { data: vec![1.0; n], scratch: vec![0.0; n] }];
        comm.sum_buckets(&mut bucket, &mut || Ok(()))?;
        if let Some(bad) = bucket[0].data.iter().position(|&v| v != n_ranks as f32) {
            return Err(MfdError::other(format!(
                "all-reduce of {bytes} bytes: element {bad} is {}, expected {n_ranks}",
                bucket[0].data[bad]
            )));
        }
        bucket[0].data.fill(0.0); // sums of zeros stay finite over any number of repetitions
        comm.barrier()?;
        let t0 = Instant::now();
        for _ in 0..reps {
            comm.sum_buckets(&mut bucket, &mut || Ok(()))?;
        }
        let mine = (t0.elapsed().as_secs_f64() / reps as f64).max(1e-9);
        // The slowest rank's time: every rank fills its own slot, the sum gathers them.
        let mut times = vec![0.0f64; n_ranks];
        times[comm.rank()] = mine;
        comm.sum_f64(&mut times)?;
        let secs = times.iter().copied().fold(0.0, f64::max);
        let algbw = bytes as f64 / secs / 1e9;
        let busbw = algbw * factor;
        md += &format!("| {bytes} | {reps} | {:.3} | {algbw:.3} | {busbw:.3} |\n", 1e6 * secs);
        rows.push(
            json!({"bytes": bytes, "reps": reps, "time_us": 1e6 * secs, "algbw_gb_s": algbw, "busbw_gb_s": busbw}),
        );
    }
    let note = if n_ranks == 1 {
        "one rank: no communication happens; the time is the call overhead and busbw is 0"
    } else {
        "time = slowest rank's mean; busbw = algbw * 2(n-1)/n"
    };
    let json = json!({"ranks": n_ranks, "comm": comm.name(), "bus_factor": factor, "note": note, "results": rows});
    Ok(Section { json, md })
}
