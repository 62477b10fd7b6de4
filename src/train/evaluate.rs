//! Evaluation over a whole split: mean BCE, the reference's validation loss (BCE + lambda ||R||_F, mfd-spec.md 5),
//! exact per-class AUROC/AUPRC and the features of every tile (for disentanglement probes and reports).
//! Test-time predictions average the forward and reverse-complement strands, as the reference's evaluation script
//! (mfd-spec.md 8.1); validation during training uses the forward strand only, as its validation step.
//!
//! Sharded over ranks (`evaluate_sharded`, issue 4): the split's batches of `batch` tiles are numbered as on one
//! rank and rank r scores the contiguous run `rank_range(batches, r, W)` of them; rank 0 gathers the predictions,
//! labels, features and per-batch sums and reduces them in batch order. Every batch holds the same tiles as on one
//! rank and the sums are added in the same order, so the result equals one rank's (bit for bit with a
//! deterministic backend), while each rank does 1/W of the forward passes. Exact AUROC needs every score, hence a
//! gather of the predictions rather than a reduction of sufficient statistics.

use crate::backend::Backend;
use crate::data::dataset::Dataset;
use crate::data::sampler::{rank_range, BatchPlan};
use crate::data::window::{encode_batch, gather_labels};
use crate::dist::{Comm, Single};
use crate::error::{MfdError, Result};
use crate::model::mfd::Mfd;
use crate::train::metrics::{nan_mean, per_class};

#[derive(Debug, Clone, Default)]
pub struct EvalResult {
    pub n: usize,
    /// Mean BCE over tiles and classes.
    pub bce: f64,
    /// Mean ||R||_F over batches.
    pub corr: f64,
    /// bce + lambda * corr.
    pub val_loss: f64,
    pub auroc: Vec<f64>,
    pub auprc: Vec<f64>,
    pub macro_auroc: f64,
    pub macro_auprc: f64,
    /// (N, 2C) forward-strand features: technical [0, C), biological [C, 2C).
    pub features: Vec<f32>,
    /// (N, O) probabilities (strand-averaged when requested).
    pub probs: Vec<f32>,
    /// (N, O) labels.
    pub labels: Vec<bool>,
    /// Global tile indices in evaluation order.
    pub indices: Vec<u64>,
}

/// Evaluate `indices` (a split's tiles) in batches of `batch` on this process alone.
#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: Backend>(
    be: &B,
    model: &mut Mfd<B>,
    ds: &Dataset,
    indices: Vec<u64>,
    t: usize,
    batch: usize,
    lambda: f64,
    both_strands: bool,
) -> Result<EvalResult> {
    evaluate_sharded(be, &Single, model, ds, indices, t, batch, lambda, both_strands)?
        .ok_or_else(|| MfdError::other("evaluate: one rank must be rank 0"))
}

/// What one rank computed for its batches: per batch (bce * b, ||R||_F), and its tiles' rows.
#[derive(Default)]
struct Shard {
    sums: Vec<f64>,     // (batches, 2)
    probs: Vec<f32>,    // (n_r, O)
    features: Vec<f32>, // (n_r, 2C)
    labels: Vec<u8>,    // (n_r, O), 0 or 1
}

/// Evaluate `indices` in batches of `batch`, the batches shared over the ranks of `comm` (see the module doc).
/// Collective: every rank calls it with the same arguments and identical parameters. Rank 0 gets the result of the
/// whole split, every other rank `None`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_sharded<B: Backend>(
    be: &B,
    comm: &dyn Comm,
    model: &mut Mfd<B>,
    ds: &Dataset,
    indices: Vec<u64>,
    t: usize,
    batch: usize,
    lambda: f64,
    both_strands: bool,
) -> Result<Option<EvalResult>> {
    if batch == 0 {
        return Err(MfdError::config("batch_size", "must be > 0"));
    }
    if indices.is_empty() {
        // No fake loss of 0.0 or AUROC of a split without tiles.
        return Err(MfdError::input(ds.dir(), None, Some("split"), "the split to evaluate has no tiles"));
    }
    let o = model.o;
    let batches = indices.len().div_ceil(batch);
    let mut shard = Shard::default();
    for step in rank_range(batches, comm.rank(), comm.size()) {
        let tiles = &indices[step * batch..((step + 1) * batch).min(indices.len())];
        let plan = BatchPlan { indices: tiles.to_vec(), shift: 0, rc: false };
        let b = tiles.len();
        let bits = gather_labels(ds, &plan.indices)?;
        let labels = be.upload_bytes(&bits)?;
        let tokens = be.upload_bytes(&encode_batch(ds, &plan, t)?)?;
        let fwd = model.eval_forward(be, &tokens, &labels, b)?;
        shard.sums.extend([fwd.bce as f64 * b as f64, fwd.corr as f64]);
        let mut probs = fwd.probs;
        if both_strands {
            let rc_plan = BatchPlan { rc: true, ..plan.clone() };
            let rc_tokens = be.upload_bytes(&encode_batch(ds, &rc_plan, t)?)?;
            let rc = model.eval_forward(be, &rc_tokens, &labels, b)?;
            for (p, q) in probs.iter_mut().zip(&rc.probs) {
                *p = 0.5 * (*p + q);
            }
        }
        shard.features.extend_from_slice(&fwd.features);
        shard.probs.extend_from_slice(&probs);
        for row in bits.chunks(model.row_bytes) {
            shard.labels.extend((0..o).map(|k| u8::from(crate::data::dataset::get_bit(row, k))));
        }
    }
    let Some(all) = gather(comm, shard)? else { return Ok(None) };
    let mut out = EvalResult {
        n: indices.len(),
        indices,
        probs: all.probs,
        features: all.features,
        labels: all.labels.iter().map(|&x| x != 0).collect(),
        ..Default::default()
    };
    // Summed in batch order, as one rank does.
    let (mut bce_sum, mut corr_sum) = (0.0f64, 0.0f64);
    for s in all.sums.chunks_exact(2) {
        bce_sum += s[0];
        corr_sum += s[1];
    }
    if out.probs.len() != out.n * o || all.sums.len() != 2 * batches {
        return Err(MfdError::other(format!(
            "evaluate: gathered {} predictions and {} batch sums for {} tiles x {o} classes in {batches} batches",
            out.probs.len(),
            all.sums.len() / 2,
            out.n
        )));
    }
    out.bce = bce_sum / out.n.max(1) as f64;
    out.corr = corr_sum / batches.max(1) as f64;
    out.val_loss = out.bce + lambda * out.corr;
    let (auroc, auprc) = per_class(&out.probs, &out.labels, o);
    out.macro_auroc = nan_mean(&auroc);
    out.macro_auprc = nan_mean(&auprc);
    out.auroc = auroc;
    out.auprc = auprc;
    Ok(Some(out))
}

/// Every rank's shard concatenated in rank order (= batch order) on rank 0; `None` elsewhere.
fn gather(comm: &dyn Comm, shard: Shard) -> Result<Option<Shard>> {
    if comm.size() == 1 {
        return Ok(Some(shard));
    }
    let sums = comm.gather_bytes(bytemuck::cast_slice(&shard.sums), 0)?;
    let probs = comm.gather_bytes(bytemuck::cast_slice(&shard.probs), 0)?;
    let features = comm.gather_bytes(bytemuck::cast_slice(&shard.features), 0)?;
    let labels = comm.gather_bytes(&shard.labels, 0)?;
    if comm.rank() != 0 {
        return Ok(None);
    }
    Ok(Some(Shard {
        sums: decode(&sums.concat()),
        probs: decode(&probs.concat()),
        features: decode(&features.concat()),
        labels: labels.concat(),
    }))
}

/// Native-endian bytes (as `bytemuck::cast_slice` wrote them) back to values; a trailing partial value is dropped.
fn decode<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
    let n = std::mem::size_of_val(v.as_slice());
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(&bytes[..n]);
    v
}
