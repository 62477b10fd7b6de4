//! Evaluation over a whole split: mean BCE, the reference's validation loss (BCE + lambda ||R||_F, mfd-spec.md 5),
//! exact per-class AUROC/AUPRC and the features of every tile (for disentanglement probes and reports).
//! Test-time predictions average the forward and reverse-complement strands, as the reference's evaluation script
//! (mfd-spec.md 8.1); validation during training uses the forward strand only, as its validation step.

use crate::backend::Backend;
use crate::data::dataset::Dataset;
use crate::data::sampler::{BatchPlan, EvalSampler};
use crate::data::window::{encode_batch, gather_labels};
use crate::error::Result;
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

/// Evaluate `indices` (a split's tiles) in batches of `batch`.
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
    let o = model.o;
    let sampler = EvalSampler::new(indices.clone(), batch, 0, 1)?;
    let mut out = EvalResult { n: indices.len(), indices, ..Default::default() };
    let (mut bce_sum, mut corr_sum, mut batches) = (0.0f64, 0.0f64, 0usize);
    for plan in sampler.iter() {
        let b = plan.indices.len();
        if b == 0 {
            continue;
        }
        let bits = gather_labels(ds, &plan.indices)?;
        let labels = be.upload_bytes(&bits)?;
        let tokens = be.upload_bytes(&encode_batch(ds, &plan, t)?)?;
        let fwd = model.eval_forward(be, &tokens, &labels, b)?;
        bce_sum += fwd.bce as f64 * b as f64;
        corr_sum += fwd.corr as f64;
        batches += 1;
        let mut probs = fwd.probs;
        if both_strands {
            let rc_plan = BatchPlan { rc: true, ..plan.clone() };
            let rc_tokens = be.upload_bytes(&encode_batch(ds, &rc_plan, t)?)?;
            let rc = model.eval_forward(be, &rc_tokens, &labels, b)?;
            for (p, q) in probs.iter_mut().zip(&rc.probs) {
                *p = 0.5 * (*p + q);
            }
        }
        out.features.extend_from_slice(&fwd.features);
        out.probs.extend_from_slice(&probs);
        for row in bits.chunks(model.row_bytes) {
            out.labels.extend((0..o).map(|k| crate::data::dataset::get_bit(row, k)));
        }
    }
    out.bce = bce_sum / out.n.max(1) as f64;
    out.corr = corr_sum / batches.max(1) as f64;
    out.val_loss = out.bce + lambda * out.corr;
    let (auroc, auprc) = per_class(&out.probs, &out.labels, o);
    out.macro_auroc = nan_mean(&auroc);
    out.macro_auprc = nan_mean(&auprc);
    out.auroc = auroc;
    out.auprc = auprc;
    Ok(out)
}
