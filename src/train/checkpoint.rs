//! Checkpoints as safetensors with PyTorch names and layouts (architecture.md section 7): every parameter and
//! BatchNorm buffer of the model, and the header metadata holds the resolved config, step, epoch and world size.
//! Optimiser state is written beside it (`<name>.optim.safetensors`: `model.<param>.{m,v,vmax}` and
//! `adversary.<param>.{m,v,vmax}`, step counts in the metadata). Writes are atomic (temp file + rename).

use crate::data::binfile::write_atomic;
use crate::error::{IoContext, MfdError, Result};
use crate::model::params::ParamTable;
use crate::train::optim::Moments;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a run is in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Epoch in progress (0-based) and the number of its steps already done.
    pub epoch: u64,
    pub step_in_epoch: u64,
    /// Optimiser steps done in total.
    pub global_step: u64,
}

/// Host copy of everything a resume needs.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub values: Vec<Vec<f32>>,
    pub position: Position,
    pub world: usize,
    pub config_toml: String,
    pub model_opt: Option<(u64, Vec<Moments<Vec<f32>>>)>,
    pub adv_opt: Option<(u64, Vec<Moments<Vec<f32>>>)>,
    /// Validation loss of the epoch that produced it (NaN when unknown).
    pub val_loss: f64,
}

fn f32_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn st_err(path: &Path, e: impl std::fmt::Display) -> MfdError {
    MfdError::input(path, None, None, format!("safetensors: {e}"))
}

/// The optimiser-state file beside a checkpoint.
pub fn optim_path(ckpt: &Path) -> PathBuf {
    let s = ckpt.to_string_lossy();
    PathBuf::from(format!("{}.optim.safetensors", s.trim_end_matches(".safetensors")))
}

/// Write the checkpoint at `path` (and its optimiser state beside it when present).
pub fn save(path: &Path, table: &ParamTable, ck: &Checkpoint) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "mfd-checkpoint-1".to_string());
    meta.insert("config".to_string(), ck.config_toml.clone());
    meta.insert("epoch".to_string(), ck.position.epoch.to_string());
    meta.insert("step_in_epoch".to_string(), ck.position.step_in_epoch.to_string());
    meta.insert("global_step".to_string(), ck.position.global_step.to_string());
    meta.insert("world_size".to_string(), ck.world.to_string());
    meta.insert("val_loss".to_string(), ck.val_loss.to_string());
    let mut views = Vec::new();
    for (spec, v) in table.specs.iter().zip(&ck.values) {
        let view = TensorView::new(Dtype::F32, spec.shape.clone(), f32_bytes(v)).map_err(|e| st_err(path, e))?;
        views.push((spec.name.clone(), view));
    }
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
    write_atomic(path, &bytes)?;

    let mut ometa = HashMap::new();
    let mut oviews = Vec::new();
    for (group, opt) in [("model", &ck.model_opt), ("adversary", &ck.adv_opt)] {
        let Some((step, moments)) = opt else { continue };
        ometa.insert(format!("{group}.step"), step.to_string());
        for mo in moments {
            let spec = &table.specs[mo.index];
            for (kind, data) in [("m", &mo.m), ("v", &mo.v), ("vmax", &mo.vmax)] {
                let view =
                    TensorView::new(Dtype::F32, spec.shape.clone(), f32_bytes(data)).map_err(|e| st_err(path, e))?;
                oviews.push((format!("{group}.{}.{kind}", spec.name), view));
            }
        }
    }
    if !oviews.is_empty() {
        let bytes = safetensors::serialize(oviews, Some(ometa)).map_err(|e| st_err(path, e))?;
        write_atomic(optim_path(path), &bytes)?;
    }
    Ok(())
}

fn meta_get<'a>(path: &Path, meta: &'a HashMap<String, String>, key: &str) -> Result<&'a str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| MfdError::input(path, None, Some(key), "missing from the checkpoint metadata"))
}

fn meta_u64(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<u64> {
    meta_get(path, meta, key)?.parse().map_err(|_| MfdError::input(path, None, Some(key), "not an integer"))
}

fn read_tensor(path: &Path, st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t =
        st.tensor(name).map_err(|_| MfdError::input(path, None, Some(name), "tensor missing from the checkpoint"))?;
    if t.dtype() != Dtype::F32 || t.shape() != shape {
        return Err(MfdError::input(
            path,
            None,
            Some(name),
            format!("{:?} {:?}, the model expects F32 {shape:?}", t.dtype(), t.shape()),
        ));
    }
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Read a checkpoint for the parameters of `table` (every tensor must be present with the same shape). Optimiser
/// state is read when the file beside it exists.
pub fn load(path: &Path, table: &ParamTable) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).at(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let (_, md) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
    let meta = md.metadata().clone().unwrap_or_default();
    let mut values = Vec::new();
    for spec in &table.specs {
        values.push(read_tensor(path, &st, &spec.name, &spec.shape)?);
    }
    let position = Position {
        epoch: meta_u64(path, &meta, "epoch")?,
        step_in_epoch: meta_u64(path, &meta, "step_in_epoch")?,
        global_step: meta_u64(path, &meta, "global_step")?,
    };
    let world = meta_u64(path, &meta, "world_size")? as usize;
    let config_toml = meta_get(path, &meta, "config")?.to_string();
    let val_loss = meta.get("val_loss").and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    let (mut model_opt, mut adv_opt) = (None, None);
    let opath = optim_path(path);
    if opath.exists() {
        let obytes = std::fs::read(&opath).at(&opath)?;
        let ost = SafeTensors::deserialize(&obytes).map_err(|e| st_err(&opath, e))?;
        let (_, omd) = SafeTensors::read_metadata(&obytes).map_err(|e| st_err(&opath, e))?;
        let ometa = omd.metadata().clone().unwrap_or_default();
        for (group, slot, pgroup) in [
            ("model", &mut model_opt, crate::model::params::Group::Model),
            ("adversary", &mut adv_opt, crate::model::params::Group::Adversary),
        ] {
            let key = format!("{group}.step");
            if !ometa.contains_key(&key) {
                continue;
            }
            let step = meta_u64(&opath, &ometa, &key)?;
            let mut moments = Vec::new();
            for (i, spec) in table.specs.iter().enumerate().filter(|(_, s)| s.group == pgroup) {
                let get = |kind: &str| read_tensor(&opath, &ost, &format!("{group}.{}.{kind}", spec.name), &spec.shape);
                moments.push(Moments { index: i, m: get("m")?, v: get("v")?, vmax: get("vmax")? });
            }
            *slot = Some((step, moments));
        }
    }
    Ok(Checkpoint { values, position, world, config_toml, model_opt, adv_opt, val_loss })
}

/// The resolved config stored in a checkpoint (for `mfd eval` and `step-dump`).
pub fn stored_config(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).at(path)?;
    let (_, md) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
    let meta = md.metadata().clone().unwrap_or_default();
    Ok(meta_get(path, &meta, "config")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::{Group, Init};

    #[test]
    fn round_trip_with_optimizer_state() {
        let mut t = ParamTable::default();
        t.add("a.weight", &[2, 3], Init::Const(0.5), Group::Model);
        t.add("b.bias", &[4], Init::Const(1.0), Group::Adversary);
        let values = t.init_host(1);
        let mo = |i: usize, n: usize| Moments { index: i, m: vec![0.1; n], v: vec![0.2; n], vmax: vec![0.3; n] };
        let ck = Checkpoint {
            values,
            position: Position { epoch: 2, step_in_epoch: 5, global_step: 17 },
            world: 2,
            config_toml: "x = 1".into(),
            model_opt: Some((17, vec![mo(0, 6)])),
            adv_opt: Some((17, vec![mo(1, 4)])),
            val_loss: 0.25,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        save(&p, &t, &ck).unwrap();
        let back = load(&p, &t).unwrap();
        assert_eq!(back.values, ck.values);
        assert_eq!(back.position, ck.position);
        assert_eq!(back.world, 2);
        assert_eq!(back.model_opt, ck.model_opt);
        assert_eq!(back.adv_opt, ck.adv_opt);
        assert_eq!(back.val_loss, 0.25);
        // A model with a different shape is refused, naming the tensor.
        let mut t2 = ParamTable::default();
        t2.add("a.weight", &[3, 2], Init::Const(0.5), Group::Model);
        let e = load(&p, &t2).unwrap_err().to_string();
        assert!(e.contains("a.weight"), "{e}");
    }
}
