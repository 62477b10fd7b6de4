//! A checkpoint loaded for inference: features (N, 2C) of token windows in evaluation mode, and the output head
//! (O, C) weights of both halves, so callers can recombine feature halves (VEP by swapping halves, mfd-spec.md 8.2).
//!
//! Key decision: the hypernetwork weights do not depend on the input, so they are computed once at load time and
//! the head is applied on the host; only the trunk runs per batch. Batches are padded to a fixed size with
//! all-N windows (the model's buffers are sized per batch, and BatchNorm in eval mode is per sample anyway).

use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::data::dataset::Dataset;
use crate::data::window::N_TOKEN;
use crate::error::{MfdError, Result};
use crate::model::mfd::Mfd;
use std::path::Path;

pub struct Inference {
    be: CpuBackend,
    pub model: Mfd<CpuBackend>,
    /// Input tokens T and trunk width C (features 2C), output classes O.
    pub t: usize,
    pub c: usize,
    pub o: usize,
    /// Experiment ids in class order.
    pub classes: Vec<String>,
    /// (O, C) output weights of the technical and biological halves, and the bias (O).
    pub w_tech: Vec<f32>,
    pub w_bio: Vec<f32>,
    pub bias: Vec<f32>,
    /// Sequences per trunk forward.
    pub batch: usize,
}

/// Which feature halves the head sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Logits logit_tech + logit_bio + b.
    Logit,
    /// sigmoid(logit): the reference's "predictions".
    Prob,
}

impl Scale {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "logit" => Ok(Scale::Logit),
            "prob" => Ok(Scale::Prob),
            other => Err(MfdError::config("--scale", format!("'{other}': expected logit or prob"))),
        }
    }
}

impl Inference {
    /// Load `checkpoint` (its stored config names the model and the dataset whose metadata built the head;
    /// `dataset` overrides that directory).
    pub fn load(checkpoint: &Path, dataset: Option<&Path>) -> Result<Self> {
        let cfg = crate::train::load_model::checkpoint_config(checkpoint, dataset)?;
        let ds = Dataset::open(&cfg.data.dataset)?;
        let (model, _) = crate::train::load_model::load_cpu_model(&cfg, &ds, checkpoint)?;
        Self::from_model(model, cfg.model.seq_len, ds.manifest().classes.clone())
    }

    /// Wrap a built model (its parameters already set) for input length `t`.
    pub fn from_model(model: Mfd<CpuBackend>, t: usize, classes: Vec<String>) -> Result<Self> {
        let (c, o) = (model.c, model.o);
        if classes.len() != o {
            return Err(MfdError::other(format!("{} class ids for a model with O = {o}", classes.len())));
        }
        let bias = model.params.values[model.head_bias].clone();
        let mut inf =
            Inference { be: CpuBackend, model, t, c, o, classes, w_tech: vec![], w_bio: vec![], bias, batch: 32 };
        // One forward computes the hypernetwork weights.
        inf.features(&vec![N_TOKEN; t])?;
        let (wt, wb) = inf.model.output_weights(&inf.be)?;
        inf.w_tech = wt;
        inf.w_bio = wb;
        Ok(inf)
    }

    /// Features (N, 2C) (technical [0, C), biological [C, 2C)) of token windows (N, T), eval mode.
    pub fn features(&mut self, tokens: &[u8]) -> Result<Vec<f32>> {
        let t = self.t;
        if !tokens.len().is_multiple_of(t) {
            return Err(MfdError::Shape { op: "features", msg: format!("{} tokens for T = {t}", tokens.len()) });
        }
        let n = tokens.len() / t;
        let b = self.batch.max(2);
        let labels = vec![0u8; b * self.model.row_bytes];
        let labels = self.be.upload_bytes(&labels)?;
        let mut out = Vec::with_capacity(n * 2 * self.c);
        let mut buf = vec![N_TOKEN; b * t];
        for chunk in tokens.chunks(b * t) {
            let rows = chunk.len() / t;
            buf[..chunk.len()].copy_from_slice(chunk);
            buf[chunk.len()..].fill(N_TOKEN);
            let dev = self.be.upload_bytes(&buf)?;
            let f = self.model.eval_forward(&self.be, &dev, &labels, b)?;
            out.extend_from_slice(&f.features[..rows * 2 * self.c]);
        }
        Ok(out)
    }

    /// Head outputs (O) of one technical half (C) and one biological half (C).
    pub fn head(&self, f_tech: &[f32], f_bio: &[f32], scale: Scale) -> Vec<f32> {
        let c = self.c;
        (0..self.o)
            .map(|j| {
                let mut z = self.bias[j] as f64;
                for k in 0..c {
                    z += self.w_tech[j * c + k] as f64 * f_tech[k] as f64
                        + self.w_bio[j * c + k] as f64 * f_bio[k] as f64;
                }
                match scale {
                    Scale::Logit => z as f32,
                    Scale::Prob => (1.0 / (1.0 + (-z).exp())) as f32,
                }
            })
            .collect()
    }
}
