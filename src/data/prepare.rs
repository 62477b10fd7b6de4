//! `mfd prepare` (in progress).

use crate::error::{MfdError, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct PrepareArgs {
    /// Reference FASTA (plain, or bgzip with .fai and .gzi).
    #[arg(long)]
    pub fasta: PathBuf,
    /// Two-column TSV: experiment id, peak file path (relative paths are relative to this file).
    #[arg(long)]
    pub peaks: PathBuf,
    /// Metadata TSV with a header; the first column is the experiment id.
    #[arg(long)]
    pub metadata: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Optional prepare.toml overriding the defaults (min_overlap, min_positive, test_contigs, shard_tiles...).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(_args: &PrepareArgs) -> Result<()> {
    Err(MfdError::other("mfd prepare is being built"))
}
