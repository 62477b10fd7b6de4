//! `mfd inspect` (in progress).

use crate::error::{MfdError, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Prepared dataset directory.
    pub dataset: PathBuf,
    /// Also verify every file's SHA-256 against the manifest.
    #[arg(long)]
    pub verify: bool,
}

pub fn run(_args: &InspectArgs) -> Result<()> {
    Err(MfdError::other("mfd inspect is being built"))
}
