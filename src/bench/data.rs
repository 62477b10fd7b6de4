//! `mfd bench data`: synthesize a preset, time `mfd prepare` on it (MB of genome per second), then window
//! encoding (windows per second at T = 2176, one thread and all threads). `--quick` uses the `tiny` preset and
//! fewer windows.

use super::{BenchArgs, Section};
use crate::data::dataset::Dataset;
use crate::data::window::bench_encode;
use crate::error::{IoContext, Result};
use serde_json::json;

pub fn bench_data(args: &BenchArgs) -> Result<Section> {
    let preset = if args.quick { "tiny".to_string() } else { args.preset.clone() };
    let synth = args.work.join(format!("synth-{preset}"));
    if !synth.join("peaks.tsv").exists() {
        if synth.exists() {
            std::fs::remove_dir_all(&synth).at(&synth)?;
        }
        crate::data::synth::run(&crate::data::synth::SynthArgs {
            out: synth.clone(),
            seed: 1,
            preset: preset.clone(),
            contigs: vec![],
            fasta: None,
        })?;
    }
    // Not `dataset-tiny`: that one is the train suite's (kept between runs); this one is rebuilt every time.
    let ds_dir = args.work.join(format!("prepared-{preset}"));
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
    let windows = if args.quick { 512 } else { 20_000 };
    let enc = bench_encode(&ds, windows, 2176, 0)?;
    let mut md = String::from("## Data (input pipeline)\n\n| measure | value |\n|---|---|\n");
    md += &format!(
        "| prepare, preset {preset} ({} Mb, {} classes, {} tiles kept) | {:.1} s, {:.1} MB/s |\n",
        mb.round(),
        summary.classes,
        summary.counts.tiles,
        summary.seconds,
        mb / summary.seconds
    );
    md += &format!("| window encoding T=2176, 1 thread | {:.0} windows/s |\n", enc.single_per_s);
    md += &format!("| window encoding T=2176, {} threads | {:.0} windows/s |\n", enc.threads, enc.parallel_per_s);
    let json = json!({"preset": preset,
        "prepare": {"genome_mb": mb, "classes": summary.classes, "tiles": summary.counts.tiles, "seconds": summary.seconds,
                    "mb_per_s": mb / summary.seconds, "phases": summary.phases.iter().map(|(n, s)| json!({"phase": n, "seconds": s})).collect::<Vec<_>>()},
        "encode": {"t": enc.t, "windows": enc.windows, "threads": enc.threads, "single_thread_per_s": enc.single_per_s, "parallel_per_s": enc.parallel_per_s}});
    Ok(Section { json, md })
}
