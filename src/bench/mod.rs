//! `mfd bench`: the benchmark suite of issue 8. Benchmarks, not tests: nothing here asserts a time.
//! - `peak`: this device's measured memory bandwidth (STREAM-like copy / triad) and f32 GEMM FLOP/s; every
//!   "fraction of peak" below divides by these measured numbers, not by a datasheet.
//! - `data`: `mfd prepare` MB/s and window encoding windows/s (`data.rs`).
//! - `kernels`: every Backend op at the model's real shapes for C = 30 and C = 120 (B = 64, T = 2176): ms, bytes
//!   moved (lower bound), FLOPs, GB/s, GFLOP/s and the fraction of the roofline (`kernels.rs`).
//! - `train`: full training steps: sequences/s, the per-op breakdown, model FLOPs, MFU and the input-pipeline
//!   fraction (`train.rs`), and for C = 30 and C = 120 the PyTorch comparator's sequences/s and the ratio
//!   (`comparator.rs`).
//! - `allreduce`: gradient all-reduce bus bandwidth through `dist::Comm`, 1 KiB to 64 MiB (`allreduce.rs`).
//!
//! `mfd bench` (or `all`) runs every suite and writes `<work>/bench.json` and `<work>/bench.md`; one suite writes
//! `<work>/<suite>.json` and `.md`. Key decision: kernels and train are generic over `B: Backend`, so the CUDA
//! backend (`--backend cuda` or `auto`) gets the same measurements; timings end with a one-element download, which
//! waits for every queued op (the trait has no explicit synchronise).

mod allreduce;
mod comparator;
pub mod counts;
mod data;
mod kernels;
mod peak;
mod train;

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::{IoContext, MfdError, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

pub use peak::Peak;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Suite: all (default), peak, data, kernels, train or allreduce.
    #[arg(default_value = "all")]
    pub suite: String,
    /// Scratch directory for generated datasets and the results (reused when present).
    #[arg(long, default_value = "runs/bench")]
    pub work: PathBuf,
    /// Synthetic preset for the data suite (tiny, bench).
    #[arg(long, default_value = "bench")]
    pub preset: String,
    /// Backend for the kernels, train and peak suites: cpu, cuda or auto.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: crate::config::BackendKind,
    /// Timed training steps per configuration.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Batch size of the train suite (default 64; the GPU target is stated at 256).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Tiny sizes everywhere (seconds, for tests): the numbers mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Write the JSON result here (default: <work>/bench.json or <work>/<suite>.json); the Markdown goes beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Train suite: the python that runs the PyTorch comparator, bench/torch_reference.py (default:
    /// $MFD_TORCH_PYTHON, else python3; "none": no comparator; without torch the table has the mfd numbers only).
    #[arg(long)]
    pub torch_python: Option<PathBuf>,
    /// Train suite: a checkout of the reference repository (github.com/HealthML/MFD); its own model and Lightning
    /// training step are timed too (torch_reference.py bench --reference-src).
    #[arg(long)]
    pub reference_src: Option<PathBuf>,
}

const SUITES: [&str; 5] = ["peak", "data", "kernels", "train", "allreduce"];

/// One suite's result: JSON and a Markdown section.
pub struct Section {
    pub json: Value,
    pub md: String,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let suites: Vec<&str> = match args.suite.as_str() {
        "all" => SUITES.to_vec(),
        s if SUITES.contains(&s) => vec![s],
        other => {
            return Err(MfdError::config(
                "suite",
                format!("'{other}': expected all, peak, data, kernels, train or allreduce"),
            ))
        }
    };
    let comm = crate::dist::init()?;
    // Under mpirun only the all-reduce is meaningful: the other suites measure one process.
    let suites: Vec<&str> = if comm.size() > 1 {
        if comm.rank() == 0 && suites.len() > 1 {
            eprintln!("mfd bench: {} ranks: running the allreduce suite only", comm.size());
        }
        if !suites.contains(&"allreduce") {
            return Err(MfdError::config("suite", "under mpirun only the allreduce suite runs (mfd bench allreduce)"));
        }
        vec!["allreduce"]
    } else {
        suites
    };
    let rank0 = comm.rank() == 0;
    if rank0 {
        std::fs::create_dir_all(&args.work).at(&args.work)?;
    }
    let machine_start = machine();
    let t0 = Instant::now();
    let mut sections = Vec::new();
    let needs_backend = suites.iter().any(|s| matches!(*s, "peak" | "kernels" | "train"));
    if needs_backend {
        struct Suites<'a>(&'a BenchArgs, &'a [&'a str]);
        impl crate::runtime::Job for Suites<'_> {
            type Out = Vec<(&'static str, Section)>;
            fn run<B: Backend>(self, be: &B, _comm: &dyn crate::dist::Comm) -> Result<Self::Out> {
                eprintln!("mfd bench: backend {} on {}", be.name(), be.device());
                let mut sections = Vec::new();
                run_backend(be, be.name() == CpuBackend.name(), self.0, self.1, &mut sections)?;
                Ok(sections)
            }
        }
        let one = crate::dist::Single;
        sections.extend(crate::runtime::with_backend(
            args.backend,
            crate::config::CommKind::Mpi,
            &one,
            Suites(args, &suites),
        )?);
    }
    if suites.contains(&"data") {
        eprintln!("mfd bench: data");
        sections.push(("data", data::bench_data(args)?));
    }
    if suites.contains(&"allreduce") {
        eprintln!("mfd bench: allreduce");
        sections.push(("allreduce", allreduce::bench_allreduce(comm.as_ref(), args.quick)?));
    }
    if !rank0 {
        return Ok(());
    }
    // Report in suite order.
    sections.sort_by_key(|(name, _)| SUITES.iter().position(|s| s == name));
    let machine_end = machine();
    let mut results = serde_json::Map::new();
    let mut md = format!(
        "# mfd bench\n\n{}\n\nload average (1 min) at start {:.2}, at end {:.2}; {:.0} s in all.\n",
        describe(&machine_start),
        machine_start["load_avg_1m"].as_f64().unwrap_or(f64::NAN),
        machine_end["load_avg_1m"].as_f64().unwrap_or(f64::NAN),
        t0.elapsed().as_secs_f64()
    );
    for (name, s) in sections {
        results.insert(name.to_string(), s.json);
        md += "\n";
        md += &s.md;
    }
    let json = json!({"suite": args.suite, "quick": args.quick, "machine": machine_start,
        "load_avg_1m_end": machine_end["load_avg_1m"], "seconds": t0.elapsed().as_secs_f64(), "results": results});
    let stem = if args.suite == "all" { "bench".to_string() } else { args.suite.clone() };
    let out = args.out.clone().unwrap_or_else(|| args.work.join(format!("{stem}.json")));
    let text = serde_json::to_string_pretty(&json).map_err(|e| MfdError::other(e.to_string()))?;
    crate::data::binfile::write_atomic(&out, text.as_bytes())?;
    let md_path = out.with_extension("md");
    crate::data::binfile::write_atomic(&md_path, md.as_bytes())?;
    println!("{md}");
    eprintln!("mfd bench: wrote {} and {}", out.display(), md_path.display());
    Ok(())
}

/// The backend-dependent suites (peak first: kernels and train divide by it).
fn run_backend<B: Backend>(
    be: &B,
    host_stream: bool,
    args: &BenchArgs,
    suites: &[&str],
    sections: &mut Vec<(&'static str, Section)>,
) -> Result<()> {
    eprintln!("mfd bench: peak ({})", be.name());
    let (peak, peak_section) = peak::measure(be, host_stream, args.quick)?;
    if suites.contains(&"peak") {
        sections.push(("peak", peak_section));
    }
    if suites.contains(&"kernels") {
        eprintln!("mfd bench: kernels");
        sections.push(("kernels", kernels::bench_kernels(be, &peak, args.quick)?));
    }
    if suites.contains(&"train") {
        eprintln!("mfd bench: train");
        let mut section = train::bench_train(be, &peak, args)?;
        if !host_stream {
            // Issue 19 item 5: the per-step driver calls of the trainer's step (virtual GPU counters).
            eprintln!("mfd bench: train: driver calls per step");
            let (md, json) = counts::bench_counts(be, args)?;
            section.md += "\n";
            section.md += &md;
            section.json["driver_calls_per_step"] = json;
        }
        sections.push(("train", section));
    }
    Ok(())
}

/// Wait for every op queued on `be`: a one-element download is ordered after them (CUDA: one stream).
pub(crate) fn sync<B: Backend>(be: &B, probe: &B::Buf) -> Result<()> {
    let mut one = [0.0f32; 1];
    be.download(probe, &mut one)
}

/// The 1-minute load average (/proc/loadavg), where there is one.
pub(crate) fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok())
}

/// Machine facts for the report: threads, CPU model, load average, date, commit.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let load = load_avg_1m();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({"threads": rayon::current_num_threads(), "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu, "os": std::env::consts::OS, "arch": std::env::consts::ARCH, "load_avg_1m": load,
        "date_utc": utc_date(secs), "commit": commit})
}

fn describe(m: &Value) -> String {
    format!(
        "{} UTC, commit {}, {} ({} CPUs, {} rayon threads, {} {})",
        m["date_utc"].as_str().unwrap_or("?"),
        m["commit"].as_str().unwrap_or("unknown"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cpus"],
        m["threads"],
        m["os"].as_str().unwrap_or("?"),
        m["arch"].as_str().unwrap_or("?")
    )
}

/// "YYYY-MM-DD HH:MM" of a Unix time.
fn utc_date(secs: u64) -> String {
    let iso = crate::train::provenance::utc_string(secs);
    format!("{} {}", &iso[..10], &iso[11..16])
}

/// Time `f` after one untimed warm-up: repeat until `min_secs` have passed (at least `min_reps`, at most
/// `max_reps` calls), syncing the device after each call. Returns (best seconds, mean seconds, calls).
pub(crate) fn time_op<B: Backend>(
    be: &B,
    probe: &B::Buf,
    min_secs: f64,
    min_reps: usize,
    max_reps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<(f64, f64, usize)> {
    f()?;
    sync(be, probe)?;
    let (mut best, mut total, mut n) = (f64::INFINITY, 0.0, 0);
    while n < min_reps || (total < min_secs && n < max_reps) {
        let t = Instant::now();
        f()?;
        sync(be, probe)?;
        let dt = t.elapsed().as_secs_f64();
        best = best.min(dt);
        total += dt;
        n += 1;
    }
    Ok((best, total / n as f64, n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01 00:00");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29 00:00");
        assert_eq!(super::utc_date(1_700_000_000), "2023-11-14 22:13");
    }
}
