//! `mfd synth`: synthetic datasets in real formats with ground truth (in progress).

use crate::error::{MfdError, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output directory (created; must not already hold a dataset).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed; the output is a pure function of (preset, seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Size preset: tiny (the embedded default, seconds), bench, genome (hg38-scale, streamed).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
}

pub fn run(_args: &SynthArgs) -> Result<()> {
    Err(MfdError::other("mfd synth is being built"))
}
