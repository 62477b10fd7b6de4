//! The one recipe for a model from a checkpoint: the CPU model for `cfg` over the dataset's metadata, every tensor
//! shape checked against the checkpoint header before anything is allocated (`Mfd::for_checkpoint`), then the
//! stored values written in. Used by `mfd eval`, step-dump, the downstream tools and sweep points. Also the
//! resolution of the paths the stored config names (a relative dataset path is relative to where training ran).

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::config::Config;
use crate::data::dataset::Dataset;
use crate::model::mfd::Mfd;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::trainer::load_metadata;
use crate::{MfdError, Result};
use std::path::{Path, PathBuf};

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

/// The training config stored in `ckpt`, its relative paths resolved for loading from anywhere (see
/// `resolve_stored`): `data.dataset` (or `dataset`, the `--dataset` override, taken as given) and
/// `data.metadata_mapping`.
pub fn checkpoint_config(ckpt: &Path, dataset: Option<&Path>) -> Result<Config> {
    let text = checkpoint::stored_config(ckpt)?;
    let mut cfg = Config::parse(&text, ckpt, &[])?;
    cfg.data.dataset = match dataset {
        Some(d) => d.to_path_buf(),
        None => resolve_stored(&cfg.data.dataset, ckpt, &cfg.train.out)
            .map_err(|tried| not_found(ckpt, "data.dataset", &cfg.data.dataset, &tried, "pass --dataset DIR"))?,
    };
    if let Some(m) = &cfg.data.metadata_mapping {
        let found = resolve_stored(m, ckpt, &cfg.train.out)
            .map_err(|tried| not_found(ckpt, "data.metadata_mapping", m, &tried, "put the mapping file there"))?;
        cfg.data.metadata_mapping = Some(found);
    }
    Ok(cfg)
}

fn not_found(ckpt: &Path, key: &str, stored: &Path, tried: &[PathBuf], hint: &str) -> MfdError {
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    MfdError::input(
        ckpt,
        None,
        Some(key),
        format!("stored path '{}' not found (tried {}); HINT: {hint}", stored.display(), tried.join(", ")),
    )
}

/// A path stored in a checkpoint's config, first that exists of: an absolute one as stored (or, when the tree
/// moved and `train.out` is absolute too, at the same place relative to the run directory); a relative one
/// relative to the current directory, to the directory training ran in (the run directory less the stored
/// relative `train.out`), to the run directory (the checkpoint's directory's parent) and to each directory above
/// it. Err: the candidates.
pub fn resolve_stored(stored: &Path, ckpt: &Path, train_out: &Path) -> std::result::Result<PathBuf, Vec<PathBuf>> {
    let mut tried = vec![stored.to_path_buf()];
    let run = std::path::absolute(ckpt).ok().and_then(|c| c.parent()?.parent().map(Path::to_path_buf));
    if let Some(run) = run {
        if stored.is_absolute() {
            tried.extend(rebased(stored, train_out, &run));
        } else {
            tried.extend(training_dir(&run, train_out).map(|base| base.join(stored)));
            tried.extend(run.ancestors().map(|a| a.join(stored)));
        }
    }
    let mut seen = Vec::new();
    for p in tried {
        if p.exists() {
            return Ok(p);
        }
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    Err(seen)
}

/// Absolute `stored` moved along with the run directory: its place relative to the absolute `train_out` applied
/// to `run`, the run directory now.
fn rebased(stored: &Path, train_out: &Path, run: &Path) -> Option<PathBuf> {
    if !train_out.is_absolute() || train_out == run {
        return None;
    }
    let common = stored.ancestors().find(|a| train_out.starts_with(a))?;
    let up = train_out.strip_prefix(common).ok()?.components().count();
    let base = run.ancestors().nth(up)?;
    Some(base.join(stored.strip_prefix(common).ok()?))
}

/// Where training ran: `run` with the trailing components of a relative `train_out` removed (None when they
/// do not match, e.g. the run directory was renamed).
fn training_dir(run: &Path, train_out: &Path) -> Option<PathBuf> {
    if train_out.is_absolute() {
        return None;
    }
    let mut base = run.to_path_buf();
    let parts: Vec<_> = train_out.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
    for part in parts.iter().rev() {
        if base.file_name() != Some(part.as_os_str()) {
            return None;
        }
        base.pop();
    }
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_resolve_from_cwd_training_dir_or_run_dir() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let ckpt = r.join("proj/runs/a/checkpoints/last.safetensors");
        std::fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
        // Relative to where training ran (proj/, with train.out = runs/a).
        std::fs::create_dir_all(r.join("proj/data/ds")).unwrap();
        let got = resolve_stored(Path::new("data/ds"), &ckpt, Path::new("runs/a")).unwrap();
        assert_eq!(got, r.join("proj/data/ds"));
        // Relative to the run directory, the run moved elsewhere (train.out no longer matches).
        std::fs::create_dir_all(r.join("proj/runs/a/ds2")).unwrap();
        let got = resolve_stored(Path::new("ds2"), &ckpt, Path::new("elsewhere/b")).unwrap();
        assert_eq!(got, r.join("proj/runs/a/ds2"));
        // Absolute as stored; a missing one lists what was tried.
        assert_eq!(resolve_stored(&r.join("proj/data/ds"), &ckpt, Path::new("x")).unwrap(), r.join("proj/data/ds"));
        let tried = resolve_stored(Path::new("nope/ds"), &ckpt, Path::new("runs/a")).unwrap_err();
        assert!(tried.contains(&r.join("proj/nope/ds")) && tried.contains(&r.join("proj/runs/a/nope/ds")), "{tried:?}");
        // Absolute, moved with the run directory (train.out absolute too).
        let (old_ds, old_out) = (Path::new("/old/proj/data/ds"), Path::new("/old/proj/runs/a"));
        assert_eq!(resolve_stored(old_ds, &ckpt, old_out).unwrap(), r.join("proj/data/ds"));
        assert_eq!(training_dir(Path::new("/w/p/runs/a"), Path::new("./runs/a")), Some(PathBuf::from("/w/p")));
        assert_eq!(training_dir(Path::new("/w/p/runs/b"), Path::new("runs/a")), None);
    }
}
