//! `mfd bench`: throughput measurements written as JSON (and a Markdown table on stdout). Benchmarks, not
//! tests: nothing here asserts a time.
//! - `data`: synthesize a preset, time `mfd prepare` on it (MB of genome per second), then window encoding
//!   (windows per second at T = 2176, one thread and all threads).
//! - `train`: training sequences per second of the full step (model loss forward + backward, AMSGrad, the
//!   adversary step) at C = 30 and C = 120 (B = 64, T = 2176) and at the embedded default's model (C = 30,
//!   T = 384), on the CPU backend, with the per-op wall time of each (`backend::cpu::profile`).

use crate::backend::cpu::{profile, CpuBackend};
use crate::backend::{AdamConfig, Backend, NoReduce};
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::sampler::{Augment, TrainSampler};
use crate::data::window::{bench_encode, encode_batch, gather_labels};
use crate::error::{IoContext, MfdError, Result};
use crate::model::mfd::Mfd;
use crate::model::params::Group;
use crate::train::optim::AmsGrad;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Suite: data or train.
    pub suite: String,
    /// Scratch directory for generated datasets (reused when present).
    #[arg(long, default_value = "runs/bench")]
    pub work: PathBuf,
    /// Synthetic preset for the data suite (tiny, bench).
    #[arg(long, default_value = "bench")]
    pub preset: String,
    /// Backend for the train suite.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Timed training steps per configuration.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Write the JSON result here (default: <work>/<suite>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.work).at(&args.work)?;
    let result = match args.suite.as_str() {
        "data" => bench_data(args)?,
        "train" => bench_train(args)?,
        other => return Err(MfdError::config("suite", format!("'{other}': expected data or train"))),
    };
    let out = args.out.clone().unwrap_or_else(|| args.work.join(format!("{}.json", args.suite)));
    let text = serde_json::to_string_pretty(&result).unwrap_or_default();
    crate::data::binfile::write_atomic(&out, text.as_bytes())?;
    println!("{text}");
    eprintln!("mfd bench: wrote {}", out.display());
    Ok(())
}

fn machine() -> serde_json::Value {
    json!({"threads": rayon::current_num_threads(), "os": std::env::consts::OS, "arch": std::env::consts::ARCH})
}

fn bench_data(args: &BenchArgs) -> Result<serde_json::Value> {
    let synth = args.work.join(format!("synth-{}", args.preset));
    if !synth.join("peaks.tsv").exists() {
        if synth.exists() {
            std::fs::remove_dir_all(&synth).at(&synth)?;
        }
        crate::data::synth::run(&crate::data::synth::SynthArgs {
            out: synth.clone(),
            seed: 1,
            preset: args.preset.clone(),
            contigs: vec![],
        })?;
    }
    let ds_dir = args.work.join(format!("dataset-{}", args.preset));
    if ds_dir.exists() {
        std::fs::remove_dir_all(&ds_dir).at(&ds_dir)?;
    }
    let summary = crate::data::prepare::prepare(&crate::data::prepare::PrepareArgs {
        fasta: synth.join("genome.fa"),
        peaks: synth.join("peaks.tsv"),
        metadata: synth.join("metadata.tsv"),
        out: ds_dir.clone(),
        config: None,
    })?;
    let mb = summary.genome_bp as f64 / 1e6;
    let ds = Dataset::open(&ds_dir)?;
    let enc = bench_encode(&ds, 20_000, 2176, 0)?;
    println!("| measure | value |\n|---|---|");
    println!(
        "| prepare ({} Mb, {} classes, {} tiles kept) | {:.1} s, {:.1} MB/s |",
        mb.round(),
        summary.classes,
        summary.counts.tiles,
        summary.seconds,
        mb / summary.seconds
    );
    println!("| window encoding T=2176, 1 thread | {:.0} windows/s |", enc.single_per_s);
    println!("| window encoding T=2176, {} threads | {:.0} windows/s |", enc.threads, enc.parallel_per_s);
    Ok(json!({"suite": "data", "preset": args.preset, "machine": machine(),
        "prepare": {"genome_mb": mb, "classes": summary.classes, "tiles": summary.counts.tiles, "seconds": summary.seconds,
                    "mb_per_s": mb / summary.seconds, "phases": summary.phases.iter().map(|(n, s)| json!({"phase": n, "seconds": s})).collect::<Vec<_>>()},
        "encode": {"t": enc.t, "windows": enc.windows, "threads": enc.threads, "single_thread_per_s": enc.single_per_s, "parallel_per_s": enc.parallel_per_s}}))
}

fn bench_train(args: &BenchArgs) -> Result<serde_json::Value> {
    if args.backend != "cpu" {
        return Err(MfdError::config("--backend", "this build benchmarks the CPU backend only"));
    }
    let be = CpuBackend;
    let ds_dir = args.work.join("dataset-tiny");
    let mut rows = Vec::new();
    let mut breakdowns = Vec::new();
    // The two paper shapes, then the embedded default's own model (configs/default.toml: C = 30, T = 384, crop 1,
    // adversary hidden 256) at B = 64.
    let paper = |c: usize| {
        vec![format!("model.c={c}"), "model.seq_len=2176".into(), "model.crop=8".into(), "adversary.hidden=1024".into()]
    };
    let cases: [(&str, Vec<String>); 3] = [("C=30", paper(30)), ("C=120", paper(120)), ("default", vec![])];
    println!("| case | C | T | B | seq/s | ms/step |\n|---|---|---|---|---|---|");
    for (name, mut overrides) in cases {
        overrides.push("train.batch_size=64".into());
        overrides.push(format!("data.dataset={}", toml::Value::String(ds_dir.to_string_lossy().into_owned())));
        let cfg = Config::load(None, &overrides)?;
        let (c, seq_len) = (cfg.model.c, cfg.model.seq_len);
        crate::train::trainer::ensure_dataset(&cfg)?;
        let ds = Dataset::open(&ds_dir)?;
        let (mapping, table) = crate::train::trainer::load_metadata(&cfg, &ds)?;
        let mut m = Mfd::new(&be, &cfg.model, &cfg.adversary, &mapping, &table, ds.label_row_bytes(), 1)?;
        let mut opt = AmsGrad::new(&be, &m.params, Group::Model, AdamConfig::default())?;
        let mut opt_adv = AmsGrad::new(&be, &m.params, Group::Adversary, AdamConfig::default())?;
        let b = 64;
        let sampler = TrainSampler::new(&ds.split_indices(0), 1, 0, b, 0, 1, Augment::REFERENCE)?;
        let host_secs = std::cell::Cell::new(0.0); // encode + label gather, outside the backend
        let mut step = |i: usize| -> Result<()> {
            let t_host = Instant::now();
            let plan = sampler.batch(i % sampler.steps()).expect("in range");
            let t = be.upload_bytes(&encode_batch(&ds, &plan, seq_len)?)?;
            let l = be.upload_bytes(&gather_labels(&ds, &plan.indices)?)?;
            host_secs.set(host_secs.get() + t_host.elapsed().as_secs_f64());
            m.params.zero_grads(&be, Group::Model)?;
            m.model_loss_backward(&be, &t, &l, b, 0.01, true, &mut NoReduce)?;
            opt.update(&be, &mut m.params)?;
            m.params.zero_grads(&be, Group::Adversary)?;
            m.adversary_loss_backward(&be, b, &mut NoReduce)?;
            opt_adv.update(&be, &mut m.params)
        };
        step(0)?;
        host_secs.set(0.0);
        profile::take();
        profile::set_enabled(true);
        let t0 = Instant::now();
        for i in 1..=args.steps {
            step(i)?;
        }
        let secs = t0.elapsed().as_secs_f64();
        profile::set_enabled(false);
        let ops = profile::take();
        let sps = (args.steps * b) as f64 / secs;
        let ms = |s: f64| 1e3 * s / args.steps as f64;
        println!("| {name} | {c} | {seq_len} | {b} | {sps:.1} | {:.0} |", ms(secs));
        let mut table = format!("\nper-op breakdown, {name} (ms per step, share of the step):\n| op | calls/step | ms/step | % |\n|---|---|---|---|\n");
        let mut op_rows = Vec::new();
        let host_secs = host_secs.get();
        let accounted: f64 = ops.iter().map(|o| o.1).sum::<f64>() + host_secs;
        let all = ops.iter().map(|&(op, s, n)| (op, s, n)).chain([
            ("host: encode + labels", host_secs, args.steps as u64),
            ("other (model code)", secs - accounted, 0),
        ]);
        for (op, s, n) in all {
            table += &format!("| {op} | {} | {:.1} | {:.1} |\n", n / args.steps as u64, ms(s), 100.0 * s / secs);
            op_rows.push(json!({"op": op, "calls_per_step": n as f64 / args.steps as f64, "ms_per_step": ms(s)}));
        }
        breakdowns.push(table);
        rows.push(json!({"case": name, "c": c, "t": seq_len, "b": b, "steps": args.steps, "seq_per_s": sps, "ms_per_step": ms(secs), "ops": op_rows}));
    }
    for t in breakdowns {
        println!("{t}");
    }
    Ok(json!({"suite": "train", "backend": be.name(), "machine": machine(), "results": rows}))
}
