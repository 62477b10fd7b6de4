//! `mfd bench train`: training sequences per second of the full step (model loss forward + backward, AMSGrad,
//! the adversary step) at C = 30 and C = 120 (B = 64, T = 2176) and at the embedded default's model (C = 30,
//! T = 384), with:
//! - the per-op wall time of each step (`backend::cpu::profile`; CPU backend only, empty on CUDA);
//! - model FLOPs per sequence, counted analytically from the trunk's conv shapes (2 C_in C_out K L per conv
//!   forward, `TrunkSpec::macs_per_sequence`, x3 for forward + backward; the stem counted as the dense conv it
//!   replaces; head and adversary MLPs not counted) and MFU = achieved model FLOP/s / the measured GEMM peak;
//! - the input-pipeline fraction: host encode + label gather + upload time / step time. This is the trainer's own
//!   data path (`train::trainer`: `encode_batch`, `gather_labels`, `upload_bytes`, synchronous, no prefetch), so
//!   the fraction is time the step waits for data;
//! - for each case (C = 30, C = 120, the default), the PyTorch comparator's sequences/s at the same shapes, run
//!   right after mfd's own timing of the case, and the ratio (`comparator.rs`; "comparator: torch not found"
//!   without torch).

use super::comparator::{self, Shape};
use super::{load_avg_1m, sync, BenchArgs, Peak, Section};
use crate::backend::cpu::profile;
use crate::backend::{AdamConfig, Backend, NoReduce};
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::sampler::{Augment, TrainSampler};
use crate::data::window::{encode_batch, gather_labels};
use crate::error::{MfdError, Result};
use crate::model::mfd::Mfd;
use crate::model::params::Group;
use crate::model::spec::TrunkSpec;
use crate::train::optim::AmsGrad;
use serde_json::json;
use std::time::Instant;

pub fn bench_train<B: Backend>(be: &B, peak: &Peak, args: &BenchArgs) -> Result<Section> {
    let ds_dir = args.work.join("dataset-tiny");
    let (b, steps) =
        if args.quick { (args.batch.unwrap_or(8), 1) } else { (args.batch.unwrap_or(64), args.steps.max(1)) };
    if !(2..=1 << 16).contains(&b) {
        return Err(MfdError::config("--batch", format!("{b} is out of range: expected 2 ..= 65536")));
    }
    let mut rows = Vec::new();
    let mut breakdowns = String::new();
    // The two paper shapes, then the embedded default's own model (configs/default.toml: C = 30, T = 384, crop 1,
    // adversary hidden 256).
    let paper = |c: usize| {
        vec![format!("model.c={c}"), "model.seq_len=2176".into(), "model.crop=8".into(), "adversary.hidden=1024".into()]
    };
    let quick = |c: usize| {
        vec![format!("model.c={c}"), "model.seq_len=128".into(), "model.crop=0".into(), "adversary.hidden=16".into()]
    };
    let cases: Vec<(&str, Vec<String>)> = if args.quick {
        vec![("C=16 quick", quick(16))]
    } else {
        vec![("C=30", paper(30)), ("C=120", paper(120)), ("default", vec![])]
    };
    let mut md = format!(
        "## Training step ({}, B = {b}, {steps} timed steps after one warm-up; MFU = trunk conv FLOPs (fwd + bwd = 3x fwd) \
         per second / the measured {:.1} GFLOP/s GEMM peak; input = host encode + labels + upload / step)\n\n\
         | case | C | T | B | seq/s | ms/step | GFLOP/seq | GFLOP/s | MFU | input % |\n|---|---|---|---|---|---|---|---|---|---|\n",
        be.name(),
        peak.gflop_s
    );
    let probe = be.alloc(1)?;
    let comparator = comparator::find(args);
    let mut comparisons = Vec::new();
    for (name, mut overrides) in cases {
        overrides.push(format!("train.batch_size={b}"));
        overrides.push(format!("data.dataset={}", toml::Value::String(ds_dir.to_string_lossy().into_owned())));
        let cfg = Config::load(None, &overrides)?;
        let (c, seq_len) = (cfg.model.c, cfg.model.seq_len);
        let gflop_per_seq = 6.0 * TrunkSpec::new(&cfg.model).macs_per_sequence() as f64 / 1e9;
        crate::train::trainer::ensure_dataset(&cfg)?;
        let ds = Dataset::open(&ds_dir)?;
        let (mapping, table) = crate::train::trainer::load_metadata(&cfg, &ds)?;
        let mut m = Mfd::new(be, &cfg.model, &cfg.adversary, &mapping, &table, ds.label_row_bytes(), 1)?;
        let mut opt = AmsGrad::new(be, &m.params, Group::Model, AdamConfig::default())?;
        let mut opt_adv = AmsGrad::new(be, &m.params, Group::Adversary, AdamConfig::default())?;
        let sampler = TrainSampler::new(&ds.split_indices(0), 1, 0, b, 0, 1, Augment::REFERENCE)?;
        let host_secs = std::cell::Cell::new(0.0); // encode + label gather + upload, outside the backend ops
        let mut step = |i: usize| -> Result<()> {
            let t_host = Instant::now();
            let plan = sampler
                .batch(i % sampler.steps())
                .ok_or_else(|| MfdError::other("bench train: the tiny dataset has no training batch"))?;
            let t = be.upload_bytes(&encode_batch(&ds, &plan, seq_len)?)?;
            let l = be.upload_bytes(&gather_labels(&ds, &plan.indices)?)?;
            host_secs.set(host_secs.get() + t_host.elapsed().as_secs_f64());
            m.params.zero_grads(be, Group::Model)?;
            m.model_loss_backward(be, &t, &l, b, 0.01, true, &mut NoReduce)?;
            opt.update(be, &mut m.params)?;
            m.adversary_loss_backward(be, b, &mut NoReduce)?;
            opt_adv.update(be, &mut m.params)
        };
        step(0)?;
        sync(be, &probe)?;
        host_secs.set(0.0);
        let load = load_avg_1m();
        profile::take();
        profile::set_enabled(true);
        let t0 = Instant::now();
        for i in 1..=steps {
            step(i)?;
        }
        sync(be, &probe)?;
        let secs = t0.elapsed().as_secs_f64();
        profile::set_enabled(false);
        let ops = profile::take();
        let sps = (steps * b) as f64 / secs;
        let shape = Shape {
            c,
            t: seq_len,
            crop: cfg.model.crop,
            b,
            hidden: cfg.adversary.hidden,
            steps,
            threads: rayon::current_num_threads(),
            cuda: be.name() != crate::backend::cpu::CpuBackend.name(),
        };
        let (torch, reference) = match &comparator {
            Ok(cmp) => {
                eprintln!("mfd bench: train {name}: comparator");
                let torch = cmp.run(&ds_dir, shape, false);
                (torch, cmp.has_reference().then(|| cmp.run(&ds_dir, shape, true)))
            }
            Err(e) => (Err(e.clone()), None),
        };
        comparisons.push(comparator::Row { case: name.into(), load, mfd: sps, torch, reference });
        let ms = |s: f64| 1e3 * s / steps as f64;
        let gflop_s = sps * gflop_per_seq;
        let mfu = gflop_s / peak.gflop_s;
        let host_secs = host_secs.get();
        let input_frac = host_secs / secs;
        md += &format!(
            "| {name} | {c} | {seq_len} | {b} | {sps:.1} | {:.0} | {gflop_per_seq:.3} | {gflop_s:.1} | {:.3} | {:.2} |\n",
            ms(secs),
            mfu,
            100.0 * input_frac
        );
        breakdowns += &format!(
            "\n<details><summary>per-op breakdown, {name} (ms per step, share of the step)</summary>\n\n| op | calls/step | ms/step | % |\n|---|---|---|---|\n"
        );
        let mut op_rows = Vec::new();
        let accounted: f64 = ops.iter().map(|o| o.1).sum::<f64>() + host_secs;
        let all = ops.iter().map(|&(op, s, n)| (op, s, n)).chain([
            ("host: encode + labels + upload", host_secs, steps as u64),
            ("other (model code, device work not in a timed op)", secs - accounted, 0),
        ]);
        for (op, s, n) in all {
            breakdowns += &format!("| {op} | {} | {:.1} | {:.1} |\n", n / steps as u64, ms(s), 100.0 * s / secs);
            op_rows.push(json!({"op": op, "calls_per_step": n as f64 / steps as f64, "ms_per_step": ms(s)}));
        }
        breakdowns += "\n</details>\n";
        rows.push(json!({"case": name, "c": c, "t": seq_len, "b": b, "steps": steps, "seq_per_s": sps,
            "ms_per_step": ms(secs), "model_gflop_per_seq": gflop_per_seq, "model_gflop_s": gflop_s, "mfu": mfu,
            "input_ms_per_step": ms(host_secs), "input_fraction": input_frac, "ops": op_rows}));
    }
    let status = match &comparator {
        Ok(cmp) => format!("bench/torch_reference.py, torch {}, threads: {}", cmp.torch, rayon::current_num_threads()),
        Err(e) => e.clone(),
    };
    let with_reference = comparator.as_ref().is_ok_and(|c| c.has_reference());
    md += &format!(
        "\n### mfd vs PyTorch (same shapes and threads; each comparator run right after mfd's)\n\n{}",
        comparator::table(&comparisons, &status, with_reference)
    );
    let comparison_json: Vec<_> = comparisons
        .iter()
        .map(|r| {
            let mut o = json!({"case": r.case, "mfd_seq_per_s": r.mfd});
            if let Some(l) = r.load {
                o["load_avg_1m"] = json!(l);
            }
            for (key, x) in [("torch", Some(&r.torch)), ("reference", r.reference.as_ref())] {
                match x {
                    Some(Ok(v)) => o[format!("{key}_seq_per_s")] = json!(v),
                    Some(Err(e)) => o[format!("{key}_error")] = json!(e),
                    None => {}
                }
            }
            o
        })
        .collect();
    md += &breakdowns;
    let json = json!({"backend": be.name(), "peak_gflop_s": peak.gflop_s,
        "comparator": status, "comparison": comparison_json,
        "flops_note": "trunk convolutions only (stem as a dense conv), 3x the forward; head and adversary MLPs not counted",
        "input_note": "host encode_batch + gather_labels + upload_bytes, synchronous as in the trainer: time the step waits for data",
        "results": rows});
    Ok(Section { json, md })
}
