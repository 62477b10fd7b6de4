//! Checkpoints as safetensors with PyTorch names and layouts (architecture.md section 7): every parameter and
//! BatchNorm buffer of the model, and the header metadata holds the resolved config, step, epoch and world size.
//! Optimiser state is written beside it (`<name>.optim.safetensors`: `model.<param>.{m,v,vmax}` and
//! `adversary.<param>.{m,v,vmax}`, step counts in the metadata). Writes are atomic (temp file + rename).

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

/// The previous optimiser-state file, kept while a new checkpoint replaces the old one.
fn prev_optim_path(ckpt: &Path) -> PathBuf {
    let mut s = optim_path(ckpt).into_os_string();
    s.push(".prev");
    PathBuf::from(s)
}

/// A fresh checkpoint id: global step, time and process, so that two writes never share one.
fn new_id(step: u64) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{step}-{nanos:x}-{}", std::process::id())
}

/// Fault injection for the crash tests (`MFD_CHECKPOINT_FAULT=N:kill`, `N:stop` or `N:enospc`): at the N-th
/// (1-based) file-system step of checkpoint writing in this process, abort the process (nothing is cleaned up),
/// stop there (print a line and sleep until the test sends SIGKILL: a literal kill -9) or fail as a full disk
/// would (a write stops half way).
fn fault(step: &str, path: &Path) -> Result<Option<()>> {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(v) = std::env::var("MFD_CHECKPOINT_FAULT") else { return Ok(None) };
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let (at, kind) = v.split_once(':').unwrap_or((v.as_str(), "kill"));
    if at.trim().parse::<u64>().ok() != Some(n) {
        return Ok(None);
    }
    if kind == "kill" {
        eprintln!("mfd: MFD_CHECKPOINT_FAULT: killed at step {n} ({step} {})", path.display());
        std::process::abort();
    }
    if kind == "stop" {
        eprintln!("mfd: MFD_CHECKPOINT_FAULT: stopped at step {n} ({step} {})", path.display());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    Ok(Some(()))
}

fn enospc(path: &Path) -> MfdError {
    MfdError::io(path, std::io::Error::other("No space left on device (injected by MFD_CHECKPOINT_FAULT)"))
}

/// Write `bytes` to the temporary twin of `path` and fsync it; on any error the temporary file is removed.
fn write_tmp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    let tmp = crate::data::binfile::tmp_path(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        if fault("write", &tmp)?.is_some() {
            f.write_all(&bytes[..bytes.len() / 2]).at(&tmp)?;
            return Err(enospc(&tmp));
        }
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)
    })();
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    if fault("rename", to)?.is_some() {
        return Err(enospc(to));
    }
    std::fs::rename(from, to).at(to)
}

fn sync_dir(path: &Path) {
    // Makes the renames durable; a file system that cannot fsync a directory is not an error.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// The JSON header of a safetensors file, reading only the header (bounded: at most 100 MB).
fn read_header(path: &Path) -> Result<serde_json::Value> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).at(path)?;
    let file_len = f.metadata().at(path)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        MfdError::input(path, None, Some("header"), format!("{file_len} bytes: too short for a safetensors file"))
    })?;
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 || n + 8 > file_len {
        return Err(MfdError::input(
            path,
            None,
            Some("header"),
            format!("header length {n} does not fit the file of {file_len} bytes (truncated or not safetensors)"),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).at(path)?;
    serde_json::from_slice(&buf).map_err(|e| st_err(path, format!("header: {e}")))
}

/// Header metadata of a safetensors file (`__metadata__`), reading only the header.
pub fn read_meta(path: &Path) -> Result<HashMap<String, String>> {
    let v = read_header(path)?;
    let mut out = HashMap::new();
    if let Some(m) = v.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

/// Write the checkpoint at `path` (and its optimiser state beside it when present) as one unit: both files carry
/// the same id, the optimiser file is replaced before the weights file and the one it replaces is kept as
/// `<name>.optim.safetensors.prev` until the weights file is in place, so a crash or a full disk at any step
/// leaves either the old or the new checkpoint loadable, never a mix (`load` checks the id).
pub fn save(path: &Path, table: &ParamTable, ck: &Checkpoint) -> Result<()> {
    let id = new_id(ck.position.global_step);
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "mfd-checkpoint-1".to_string());
    meta.insert("id".to_string(), id.clone());
    meta.insert("config".to_string(), ck.config_toml.clone());
    meta.insert("epoch".to_string(), ck.position.epoch.to_string());
    meta.insert("step_in_epoch".to_string(), ck.position.step_in_epoch.to_string());
    meta.insert("global_step".to_string(), ck.position.global_step.to_string());
    meta.insert("world_size".to_string(), ck.world.to_string());
    meta.insert("val_loss".to_string(), ck.val_loss.to_string());
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
    let has_optim = !oviews.is_empty();
    if has_optim {
        meta.insert("optim_id".to_string(), id.clone());
        ometa.insert("id".to_string(), id);
    }
    let mut views = Vec::new();
    for (spec, v) in table.specs.iter().zip(&ck.values) {
        let view = TensorView::new(Dtype::F32, spec.shape.clone(), f32_bytes(v)).map_err(|e| st_err(path, e))?;
        views.push((spec.name.clone(), view));
    }
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
    let obytes =
        if has_optim { Some(safetensors::serialize(oviews, Some(ometa)).map_err(|e| st_err(path, e))?) } else { None };

    let (opath, prev) = (optim_path(path), prev_optim_path(path));
    repair(path)?;
    let w_tmp = write_tmp(path, &bytes)?;
    let o_tmp = match &obytes {
        Some(ob) => match write_tmp(&opath, ob) {
            Ok(t) => Some(t),
            Err(e) => {
                let _ = std::fs::remove_file(&w_tmp);
                return Err(e);
            }
        },
        None => None,
    };
    let res = (|| {
        if opath.exists() {
            rename(&opath, &prev)?;
        }
        if let Some(t) = &o_tmp {
            rename(t, &opath)?;
        }
        rename(&w_tmp, path)?;
        sync_dir(path);
        if fault("remove", &prev)?.is_some() {
            return Err(enospc(&prev));
        }
        match std::fs::remove_file(&prev) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MfdError::io(&prev, e)),
            _ => Ok(()),
        }
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&w_tmp);
        if let Some(t) = &o_tmp {
            let _ = std::fs::remove_file(t);
        }
    }
    res
}

/// After an interrupted `save`: put back the optimiser file that belongs to the weights file in place (so that
/// the next save keeps the right one as `.prev`) and remove the other.
pub fn repair(path: &Path) -> Result<()> {
    let (opath, prev) = (optim_path(path), prev_optim_path(path));
    if !prev.exists() {
        return Ok(());
    }
    let want = if path.exists() { read_meta(path).ok().and_then(|m| m.get("optim_id").cloned()) } else { None };
    let id_of = |p: &Path| read_meta(p).ok().and_then(|m| m.get("id").cloned());
    if want.is_some() && want == id_of(&prev) && want != id_of(&opath) {
        std::fs::rename(&prev, &opath).at(&opath)?;
    } else {
        std::fs::remove_file(&prev).at(&prev)?;
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
    let v: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(MfdError::input(
            path,
            None,
            Some(name),
            format!("element {i} is {}: a checkpoint with non-finite values is refused", v[i]),
        ));
    }
    Ok(v)
}

/// The optimiser-state file that belongs to the checkpoint at `path` (None: it has none).
fn find_optim(path: &Path, meta: &HashMap<String, String>) -> Result<Option<PathBuf>> {
    let opath = optim_path(path);
    if !meta.contains_key("id") {
        // Written before checkpoints carried ids: the file beside it, as it is.
        return Ok(opath.exists().then_some(opath));
    }
    let Some(want) = meta.get("optim_id") else { return Ok(None) };
    let mut seen = Vec::new();
    for p in [opath.clone(), prev_optim_path(path)] {
        if p.exists() {
            let id = read_meta(&p)?.get("id").cloned().unwrap_or_default();
            if &id == want {
                return Ok(Some(p));
            }
            seen.push(format!("{} has id '{id}'", p.display()));
        }
    }
    Err(MfdError::input(
        &opath,
        None,
        Some("id"),
        format!(
            "the optimiser state of this checkpoint (id '{want}') is missing{}{}",
            if seen.is_empty() { "" } else { ": " },
            seen.join(", ")
        ),
    ))
}

/// Read a checkpoint for the parameters of `table` (every tensor must be present with the same shape and finite).
/// Optimiser state is read from the file beside it that carries the checkpoint's id.
pub fn load(path: &Path, table: &ParamTable) -> Result<Checkpoint> {
    load_with(path, table, true)
}

/// As `load`, without the optimiser state (evaluation and the downstream tools): a checkpoint copied without its
/// `.optim.safetensors` still loads.
pub fn load_weights(path: &Path, table: &ParamTable) -> Result<Checkpoint> {
    load_with(path, table, false)
}

fn load_with(path: &Path, table: &ParamTable, optim: bool) -> Result<Checkpoint> {
    check_shapes(path, table)?;
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
    let opath = if optim { find_optim(path, &meta)? } else { None };
    if let Some(opath) = opath {
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

/// Tensor names and shapes listed in a safetensors header (read without loading the data).
pub fn header_shapes(path: &Path) -> Result<HashMap<String, Vec<usize>>> {
    let v = read_header(path)?;
    let mut out = HashMap::new();
    for (k, t) in v.as_object().into_iter().flatten() {
        if k == "__metadata__" {
            continue;
        }
        let shape = t.get("shape").and_then(|s| s.as_array()).map(|a| {
            a.iter().map(|x| x.as_u64().map_or(usize::MAX, |x| usize::try_from(x).unwrap_or(usize::MAX))).collect()
        });
        out.insert(k.clone(), shape.unwrap_or_default());
    }
    Ok(out)
}

/// Every tensor of `table` is in the checkpoint's header with the table's shape: called before a model built from
/// a checkpoint's stored config is trusted (a config whose sizes disagree with the tensors is refused by name).
pub fn check_shapes(path: &Path, table: &ParamTable) -> Result<()> {
    let shapes = header_shapes(path)?;
    for spec in &table.specs {
        match shapes.get(&spec.name) {
            None => return Err(MfdError::input(path, None, Some(&spec.name), "tensor missing from the checkpoint")),
            Some(s) if s != &spec.shape => {
                return Err(MfdError::input(
                    path,
                    None,
                    Some(&spec.name),
                    format!("shape {s:?} in the checkpoint, the model of its config expects {:?}", spec.shape),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The resolved config stored in a checkpoint (for `mfd eval` and `step-dump`).
pub fn stored_config(path: &Path) -> Result<String> {
    let meta = read_meta(path)?;
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
