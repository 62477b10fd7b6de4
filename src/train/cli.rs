//! Arguments and entry points of `mfd train` and `mfd eval`.

use crate::backend::cpu::CpuBackend;
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::data::manifest::{SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use crate::error::{MfdError, Result};
use crate::train::evaluate::evaluate_sharded;
use crate::train::trainer::{Resume, TrainOptions};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Run config (TOML); without it the embedded configs/default.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. `--set model.c=120 --set loss.lambda_indep=0.1` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Backend: cpu, cuda or auto (overrides train.backend; auto uses a GPU when one works).
    #[arg(long, value_enum)]
    pub backend: Option<crate::config::BackendKind>,
    /// Run directory (overrides train.out).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in the run directory from its last checkpoint; `--resume auto` continues when there is
    /// one and otherwise starts afresh (one job line that both starts and continues a run: launch/train.slurm).
    #[arg(long, num_args = 0..=1, default_missing_value = "yes", value_name = "auto")]
    pub resume: Option<String>,
    /// Start afresh in a non-empty run directory: the old run is first moved to `<out>.old-<unix time>`.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Skip the final test-split evaluation and report (checkpoints and validation rows are still written).
    #[arg(long)]
    pub no_final_eval: bool,
}

pub fn train(args: &TrainArgs) -> Result<()> {
    let mut overrides = args.set.clone();
    if let Some(b) = &args.backend {
        overrides.push(format!("train.backend={}", toml_string(&b.to_string())));
    }
    if let Some(out) = &args.out {
        overrides.push(format!("train.out={}", toml_string(&out.to_string_lossy())));
    }
    let cfg = Config::load(args.config.as_deref(), &overrides)?;
    let rank0 = crate::dist::launcher_rank() == 0;
    if rank0 {
        eprintln!("mfd: resolved config:\n{}", cfg.to_toml());
    }
    let resume = match args.resume.as_deref() {
        None => Resume::No,
        Some("yes") => Resume::Yes,
        Some("auto") => Resume::Auto,
        Some(other) => {
            return Err(MfdError::config("--resume", format!("'{other}': expected no value (resume) or `auto`")))
        }
    };
    let s = crate::train::trainer::run(
        &cfg,
        &TrainOptions { resume, skip_final_eval: args.no_final_eval, overwrite: args.overwrite },
    )?;
    if let Some(sig) = s.preempted {
        if rank0 {
            eprintln!(
                "mfd: stopped by {} after global step {}; continue with: mfd train ... --resume auto (exit status {})",
                crate::train::preempt::name(sig),
                s.steps,
                crate::train::preempt::EXIT_PREEMPTED
            );
        }
        std::process::exit(i32::from(crate::train::preempt::EXIT_PREEMPTED));
    }
    if !rank0 {
        return Ok(());
    }
    eprintln!(
        "mfd: done: {} steps in {:.1} s; best validation loss {:.5}; run directory {}",
        s.steps,
        s.seconds,
        s.best_val_loss,
        s.out.display()
    );
    Ok(())
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint (.safetensors) written by `mfd train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared dataset directory (default: the one in the checkpoint's config; a relative one is looked up from
    /// here, from where training ran and from the run directory).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Split: train, val or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Output directory for eval_<split>.tsv / .json (default: the checkpoint's run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `mfd eval`; under `mpirun` the split's batches are shared over the ranks and rank 0 writes the outputs.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let comm = crate::dist::init()?;
    crate::runtime::or_abort(comm.as_ref(), eval_on(args, comm.as_ref()))
}

fn eval_on(args: &EvalArgs, comm: &dyn crate::dist::Comm) -> Result<()> {
    let cfg = crate::train::load_model::checkpoint_config(&args.checkpoint, args.dataset.as_deref())?;
    let split = match args.split.as_str() {
        "train" => SPLIT_TRAIN,
        "val" => SPLIT_VAL,
        "test" => SPLIT_TEST,
        other => return Err(MfdError::config("--split", format!("'{other}': expected train, val or test"))),
    };
    let ds = Dataset::open(&cfg.data.dataset)?;
    let be = CpuBackend;
    let (mut model, _) = crate::train::load_model::load_cpu_model(&cfg, &ds, &args.checkpoint)?;
    let res = evaluate_sharded(
        &be,
        comm,
        &mut model,
        &ds,
        ds.split_indices(split),
        cfg.model.seq_len,
        cfg.train.batch_size,
        cfg.loss.lambda_indep,
        split == SPLIT_TEST,
    )?;
    let Some(res) = res else { return Ok(()) };
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            args.checkpoint.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
        }
    };
    std::fs::create_dir_all(&out).map_err(|e| MfdError::io(&out, e))?;
    crate::train::report::write_eval_outputs(&out, &args.split, &ds, &res)?;
    println!("split\ttiles\tbce\tmacro_auroc\tmacro_auprc");
    println!("{}\t{}\t{:.6}\t{:.4}\t{:.4}", args.split, res.n, res.bce, res.macro_auroc, res.macro_auprc);
    if let Some(truth) = crate::train::report::truth_dir(&ds) {
        let mut d = crate::train::report::disentanglement(&ds, &truth, &res, cfg.model.c)?;
        d.vep = crate::train::report::vep_against_truth(&truth, &args.checkpoint, &ds)?;
        println!(
            "probe R2 (bio / tech): z_bio {:.3} / {:.3}, z_tech {:.3} / {:.3}, programs {:.3} / {:.3}, motifs {:.3} / {:.3}, GC {:.3} / {:.3}, k-mers {:.3} / {:.3}; oracle AUROC {:.4}, model / oracle {:.3}",
            d.zbio_r2_bio, d.zbio_r2_tech, d.ztech_r2_bio, d.ztech_r2_tech, d.program_r2_bio, d.program_r2_tech, d.motif_r2_bio, d.motif_r2_tech, d.gc_r2_bio, d.gc_r2_tech, d.kmer_r2_bio, d.kmer_r2_tech, d.oracle_auroc, d.auroc_ratio
        );
        if let Some(v) = &d.vep {
            println!(
                "biological VEP vs truth: Spearman to true delta z_bio {:.3} over {} motif variants; median |bio VEP| gc_only / motif_breaking {:.4} / {:.4} = {:.3}",
                v.rho, v.motif_variants, v.median_abs_bio_gc_only, v.median_abs_bio_motif_breaking, v.ratio
            );
        }
        let path = out.join(format!("disentanglement_{}.json", args.split));
        crate::data::binfile::write_atomic(&path, serde_json::to_string_pretty(&d).unwrap_or_default().as_bytes())?;
        eprintln!("mfd: wrote {}", path.display());
    }
    eprintln!("mfd: wrote {}/eval_{}.tsv", out.display(), args.split);
    Ok(())
}
