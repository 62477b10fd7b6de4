//! The one recipe for a model from a checkpoint: the CPU model for `cfg` over the dataset's metadata, every tensor
//! shape checked against the checkpoint header before anything is allocated (`Mfd::for_checkpoint`), then the
//! stored values written in. Used by `mfd eval`, step-dump, the downstream tools and sweep points.

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::model::mfd::Mfd;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::trainer::load_metadata;
use crate::Result;
use std::path::Path;

/// The CPU model of `ckpt` built for `cfg` over `ds`, its parameters set, and the loaded checkpoint (weights only:
/// no optimiser state is read, so a checkpoint copied alone loads).
pub fn load_cpu_model(cfg: &Config, ds: &Dataset, ckpt: &Path) -> Result<(Mfd<CpuBackend>, Checkpoint)> {
    load_cpu(cfg, ds, ckpt, false)
}

/// As `load_cpu_model`, with the optimiser state of the checkpoint (step-dump's update).
pub fn load_cpu_model_with_optim(cfg: &Config, ds: &Dataset, ckpt: &Path) -> Result<(Mfd<CpuBackend>, Checkpoint)> {
    load_cpu(cfg, ds, ckpt, true)
}

fn load_cpu(cfg: &Config, ds: &Dataset, ckpt: &Path, optim: bool) -> Result<(Mfd<CpuBackend>, Checkpoint)> {
    let (mapping, table) = load_metadata(cfg, ds)?;
    let be = CpuBackend;
    let mut model = Mfd::for_checkpoint(
        &be,
        &cfg.model,
        &cfg.adversary,
        &mapping,
        &table,
        ds.label_row_bytes(),
        cfg.train.seed,
        ckpt,
    )?;
    let table = &model.params.table;
    let ck = if optim { checkpoint::load(ckpt, table)? } else { checkpoint::load_weights(ckpt, table)? };
    for (v, h) in model.params.values.iter_mut().zip(&ck.values) {
        be.write(v, h)?;
    }
    Ok((model, ck))
}
