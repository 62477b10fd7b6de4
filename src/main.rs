//! The `mfd` command line. Thin: parse arguments, call the library, print errors as one line naming the
//! file, line and field at fault, exit non-zero.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mfd", version, about = "Metadata-guided Feature Disentanglement: data, training, evaluation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a synthetic dataset in real formats (FASTA, narrowPeak, metadata TSV, VCF) with ground truth.
    Synth(mfd::data::synth::SynthArgs),
    /// Build a memory-mapped dataset directory from FASTA, peaks and metadata.
    Prepare(mfd::data::prepare::PrepareCli),
    /// Print a summary of a prepared dataset.
    Inspect(mfd::data::inspect::InspectArgs),
    /// Train MFD (with no arguments: the embedded default, synthetic data on the CPU).
    Train(mfd::train::cli::TrainArgs),
    /// Sweep (e.g. lambda_indep) under one mpirun: one data-parallel group per point, one results table.
    Sweep(mfd::sweep::SweepArgs),
    /// Evaluate a checkpoint on a split: per-class AUROC/AUPRC (TSV) and the summary.
    Eval(mfd::train::cli::EvalArgs),
    /// Benchmark suite (all, or one of peak, data, kernels, train, allreduce): <work>/bench.json + bench.md.
    Bench(mfd::bench::BenchArgs),
    /// One forward + backward of the model loss on a given batch, dumped for an independent check.
    StepDump(mfd::train::step_dump::StepDumpArgs),
    /// Biological, technical and combined features of regions (BED) or sequences (FASTA): safetensors + TSV.
    Embed(mfd::downstream::embed::EmbedArgs),
    /// Variant effect prediction: combined, biological-only and technical-only VEPs per variant (and class).
    Vep(mfd::downstream::vep::VepArgs),
    /// Enrichment of VEP quantiles in labelled variants: odds ratios, Fisher p-values, zero-shot AUROC.
    Enrich(mfd::downstream::enrich::EnrichArgs),
    /// Enhancer classification from embeddings: cross-validated logistic regression, AUROC/AUPRC per task.
    Enhancer(mfd::downstream::enhancer::EnhancerArgs),
    /// Integrated Gradients of a latent feature with respect to the input, per position, and a motif plot.
    Attribute(mfd::downstream::attribute::AttributeArgs),
}

/// A build for x86-64-v3 (.cargo/config.toml) on a CPU without AVX2 would die of an illegal instruction at the
/// first vectorised loop: say what to do instead.
fn cpu_supports_this_build() -> Result<(), String> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        return Err("this build targets x86-64-v3 (AVX2 + FMA), which this CPU lacks; rebuild with \
                    RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release"
            .into());
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Err(why) = cpu_supports_this_build() {
        eprintln!("mfd: {why}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Synth(a) => mfd::data::synth::run(a),
        Cmd::Prepare(a) => mfd::data::prepare::run_cli(a),
        Cmd::Inspect(a) => mfd::data::inspect::run(a),
        Cmd::Train(a) => mfd::train::cli::train(a),
        Cmd::Sweep(a) => mfd::sweep::run(a),
        Cmd::Eval(a) => mfd::train::cli::eval(a),
        Cmd::Bench(a) => mfd::bench::run(a),
        Cmd::StepDump(a) => mfd::train::step_dump::run(a),
        Cmd::Embed(a) => mfd::downstream::embed::run(a),
        Cmd::Vep(a) => mfd::downstream::vep::run(a).map(|_| ()),
        Cmd::Enrich(a) => mfd::downstream::enrich::run(a),
        Cmd::Enhancer(a) => mfd::downstream::enhancer::run(a),
        Cmd::Attribute(a) => mfd::downstream::attribute::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line: an error that echoes a huge input is cut (the messages name file, line, field).
            let msg = e.to_string();
            if msg.chars().count() > 600 {
                let head: String = msg.chars().take(600).collect();
                eprintln!("error: {head}... ({} characters)", msg.chars().count());
            } else {
                eprintln!("error: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}
