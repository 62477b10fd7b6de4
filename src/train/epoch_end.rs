//! Training, room 3: validation and checkpoints. At the end of every epoch (and when a limit stops the run) the
//! validation split is evaluated, sharded over the ranks, and rank 0 writes the best-k checkpoints and `last`;
//! between epochs `last` alone is written every `checkpoint_every_steps` / `_minutes` and on a stop signal.

use crate::backend::Backend;
use crate::error::{IoContext, Result};
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::evaluate::evaluate_sharded;
use crate::train::setup::Training;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

impl<B: Backend> Training<'_, B> {
    /// Validate, log, and (rank 0) write the best-k checkpoints and `last`. `epoch`: the epoch validated.
    pub fn validate_and_checkpoint(&mut self, epoch: u64) -> Result<()> {
        let (cfg, t, b) = (self.cfg, self.cfg.model.seq_len, self.cfg.train.batch_size);
        let val = evaluate_sharded(
            self.be,
            self.comm,
            &mut self.model,
            &self.ds,
            self.val_idx.clone(),
            t,
            b,
            cfg.loss.lambda_indep,
            false,
        )?;
        if let Some(val) = val {
            let step = self.pos.global_step;
            eprintln!(
                "mfd: epoch {}/{} step {step}: val loss {:.5} bce {:.5} macro AUROC {:.4} AUPRC {:.4}",
                epoch + 1,
                cfg.train.epochs,
                val.val_loss,
                val.bce,
                val.macro_auroc,
                val.macro_auprc
            );
            self.log.write(
                json!({"kind": "val", "epoch": epoch, "step": step, "loss": val.val_loss, "bce": val.bce,
                "corr": val.corr, "macro_auroc": val.macro_auroc, "macro_auprc": val.macro_auprc,
                "elapsed_s": self.start.elapsed().as_secs_f64()}),
            )?;
            let ck = self.checkpoint(val.val_loss)?;
            // Best first: a crash between the two resumes from the previous `last` and rewrites the same best.
            keep_best(&self.ck_dir, &mut self.best, cfg.train.keep_best, &self.model.params.table, &ck)?;
            checkpoint::save(&self.last_path, &self.model.params.table, &ck)?;
            self.last_checkpoint = Instant::now();
        }
        self.comm.barrier()
    }

    /// Write `last` only (mid-epoch: a periodic checkpoint or a stop signal); rank 0 writes, all wait.
    pub fn save_last(&mut self) -> Result<()> {
        if self.rank0 {
            let ck = self.checkpoint(f64::NAN)?;
            checkpoint::save(&self.last_path, &self.model.params.table, &ck)?;
        }
        self.last_checkpoint = Instant::now();
        self.comm.barrier()
    }

    /// A mid-epoch `last` is due (`checkpoint_every_steps` after this step, or `checkpoint_every_minutes` since
    /// the last one on this rank's clock; the trainer lets rank 0's clock decide).
    pub fn periodic_checkpoint_due(&self) -> bool {
        let t = &self.cfg.train;
        let by_steps =
            t.checkpoint_every_steps > 0 && self.pos.global_step.is_multiple_of(t.checkpoint_every_steps as u64);
        let by_time = t.checkpoint_every_minutes > 0.0
            && self.last_checkpoint.elapsed().as_secs_f64() >= 60.0 * t.checkpoint_every_minutes;
        by_steps || by_time
    }

    fn checkpoint(&self, val_loss: f64) -> Result<Checkpoint> {
        Ok(Checkpoint {
            values: self.model.params.to_host(self.be)?,
            position: self.pos,
            world: self.world,
            config_toml: self.cfg.to_toml(),
            model_opt: Some((self.opt_model.step, self.opt_model.state_to_host(self.be)?)),
            adv_opt: Some((self.opt_adv.step, self.opt_adv.state_to_host(self.be)?)),
            val_loss,
        })
    }
}

/// Save `ck` as `best-<global step>` when it ranks among the best `k` by validation loss; delete the one it
/// pushes out.
fn keep_best(
    dir: &Path,
    best: &mut Vec<(f64, PathBuf)>,
    k: usize,
    table: &crate::model::params::ParamTable,
    ck: &Checkpoint,
) -> Result<()> {
    let loss = if ck.val_loss.is_finite() { ck.val_loss } else { f64::INFINITY };
    let path = dir.join(format!("best-{:08}.safetensors", ck.position.global_step));
    best.retain(|(_, p)| p != &path);
    best.push((loss, path.clone()));
    best.sort_by(|a, b| a.0.total_cmp(&b.0));
    if best.iter().position(|(_, p)| p == &path).is_some_and(|i| i < k.max(1)) {
        let light = Checkpoint { model_opt: None, adv_opt: None, ..ck.clone() };
        checkpoint::save(&path, table, &light)?;
    }
    while best.len() > k.max(1) {
        let Some((_, p)) = best.pop() else { break };
        if p.exists() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}

/// The global step in a `best-<global step>.safetensors` name.
pub(crate) fn best_step_of(path: &Path) -> Option<u64> {
    let name = path.file_name().and_then(|n| n.to_str())?;
    name.strip_prefix("best-")?.strip_suffix(".safetensors")?.parse().ok()
}
