//! `mfd bench peak`: this device's measured ceilings, the denominators of every "fraction of peak" in the report.
//! - Memory bandwidth: STREAM-like copy (a = b) and triad (a = b + s c) over three f32 arrays of 512 MiB each
//!   (1.5 GiB, several times the last-level cache) on all rayon threads (host memory: CPU backend only), and the
//!   backend's own `add` (out = a + b, the same traffic as triad) over arrays of the same size. Bytes counted as
//!   STREAM does: each array read or written once, no write-allocate traffic.
//! - f32 FLOP/s: one large square GEMM through `Backend::matmul` (on the CPU: `gemm.rs`'s `par_gemm` over the
//!   matrixmultiply kernels, the path every conv and linear layer uses), 2 n^3 FLOPs.
//!
//! Key decision: the peak is the best over repetitions (and, for bandwidth, over the probes): it is a ceiling,
//! and the machine is shared, so the best run is the least disturbed one.

use super::{sync, Section};
use crate::backend::{Backend, MatmulShape};
use crate::error::Result;
use rayon::prelude::*;
use serde_json::json;
use std::time::Instant;

/// Measured ceilings of one device.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    /// Memory bandwidth, GB/s (1e9 bytes).
    pub gb_s: f64,
    /// f32 GEMM rate, GFLOP/s.
    pub gflop_s: f64,
}

impl Peak {
    /// FLOP per byte where the roofline turns from memory- to compute-bound.
    pub fn ridge(&self) -> f64 {
        self.gflop_s / self.gb_s
    }
}

const CHUNK: usize = 1 << 16;

fn best_of(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Host STREAM copy and triad GB/s over arrays of `n` f32, best of `reps`.
fn host_stream(n: usize, reps: usize) -> Result<(f64, f64)> {
    let mut a = vec![0.0f32; n];
    let b = vec![1.0f32; n];
    let c = vec![2.0f32; n];
    let s = 3.0f32;
    let copy = best_of(reps, || {
        a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(x, y)| x.copy_from_slice(y));
        Ok(())
    })?;
    let triad = best_of(reps, || {
        a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK))).for_each(|(x, (y, z))| {
            for ((xv, &yv), &zv) in x.iter_mut().zip(y).zip(z) {
                *xv = yv + s * zv;
            }
        });
        Ok(())
    })?;
    std::hint::black_box(&a);
    let bytes = 4.0 * n as f64;
    Ok((2.0 * bytes / copy / 1e9, 3.0 * bytes / triad / 1e9))
}

/// Measure the peaks of `be` (`host_stream`: also the host STREAM probes, for the CPU backend).
pub fn measure<B: Backend>(be: &B, host_stream_probe: bool, quick: bool) -> Result<(Peak, Section)> {
    let (n, reps, g) = if quick { (1 << 18, 2, 64) } else { (1 << 27, 5, 2048) };
    let mut probes = Vec::new();
    if host_stream_probe {
        let (copy, triad) = host_stream(n, reps)?;
        probes.push(("host STREAM copy (a = b)", copy));
        probes.push(("host STREAM triad (a = b + s c)", triad));
    }
    let probe = be.alloc(1)?;
    {
        let x = be.upload(&vec![1.0; n])?;
        let y = be.upload(&vec![2.0; n])?;
        let mut out = be.alloc(n)?;
        let add = best_of(reps, || {
            be.add(&x, &y, &mut out)?;
            sync(be, &probe)
        })?;
        probes.push(("backend add (out = a + b)", 12.0 * n as f64 / add / 1e9));
    }
    let a = be.upload(&(0..g * g).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect::<Vec<_>>())?;
    let b = be.upload(&(0..g * g).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect::<Vec<_>>())?;
    let mut c = be.alloc(g * g)?;
    let shape = MatmulShape { m: g, n: g, k: g };
    let gemm = best_of(reps.min(3) + 1, || {
        be.matmul(shape, &a, false, &b, false, 1.0, 0.0, &mut c)?;
        sync(be, &probe)
    })?;
    let gflop_s = 2.0 * (g as f64).powi(3) / gemm / 1e9;
    let gb_s = probes.iter().map(|p| p.1).fold(0.0, f64::max);
    let peak = Peak { gb_s, gflop_s };
    let mut md = format!(
        "## Peak ({}: measured here; every fraction of peak below divides by these)\n\n| probe | value |\n|---|---|\n",
        be.name()
    );
    for (name, v) in &probes {
        md += &format!("| {name}, 3 x {} MiB arrays | {v:.1} GB/s |\n", (4 * n) >> 20);
    }
    md += &format!("| f32 GEMM {g}^3 via Backend::matmul | {gflop_s:.1} GFLOP/s |\n");
    md += &format!("| **peak used** | **{gb_s:.1} GB/s, {gflop_s:.1} GFLOP/s** (ridge {:.1} FLOP/B) |\n", peak.ridge());
    let json = json!({"backend": be.name(), "array_mib": (4 * n) >> 20, "gemm_n": g, "reps": reps,
        "bandwidth": probes.iter().map(|(p, v)| json!({"probe": p, "gb_s": v})).collect::<Vec<_>>(),
        "gemm_gflop_s": gflop_s, "peak_gb_s": gb_s, "peak_gflop_s": gflop_s, "ridge_flop_per_byte": peak.ridge()});
    Ok((peak, Section { json, md }))
}
