//! Adam with AMSGrad (PyTorch `Adam(amsgrad=True)`), one instance per parameter group: the model optimiser and
//! the adversary optimiser are separate, as in the reference (mfd-spec.md 4.4, 5). State lives on the backend.

use crate::backend::{AdamConfig, Backend};
use crate::config::Config;
use crate::error::Result;
use crate::model::params::{Group, Params};

/// Prefix of the metadata hypernetworks' parameter names, whose lr `train.hyper_lr_scale` scales.
pub const HYPER_PREFIX: &str = "hyper.";

/// The trainer's two optimisers from a config: the model's (lr `train.lr`, the hypernetworks at
/// `train.lr * train.hyper_lr_scale`) and the adversaries' (`adversary.lr`).
pub fn optimisers<B: Backend>(be: &B, params: &Params<B>, cfg: &Config) -> Result<(AmsGrad<B>, AmsGrad<B>)> {
    let adam = |lr: f64| AdamConfig { lr, weight_decay: cfg.train.weight_decay, ..AdamConfig::default() };
    let mut model = AmsGrad::new(be, params, Group::Model, adam(cfg.train.lr))?;
    model.scale_lr(params, HYPER_PREFIX, cfg.train.hyper_lr_scale);
    let adversary = AmsGrad::new(be, params, Group::Adversary, adam(cfg.adversary.lr))?;
    Ok((model, adversary))
}

pub struct AmsGrad<B: Backend> {
    pub cfg: AdamConfig,
    pub group: Group,
    /// Number of updates done so far.
    pub step: u64,
    /// Moments of every tensor of the group.
    pub state: Vec<Moments<B::Buf>>,
    /// Learning-rate multiplier of each entry of `state` (1 unless `scale_lr` changed it).
    pub lr_scale: Vec<f64>,
    /// Multiplier of every learning rate for the next update (`train.lr_schedule`; 1 = constant).
    pub lr_factor: f64,
}

/// First moment, second moment and running max of the second moment of parameter `index` (device or host).
#[derive(Debug, Clone, PartialEq)]
pub struct Moments<T> {
    pub index: usize,
    pub m: T,
    pub v: T,
    pub vmax: T,
}

impl<B: Backend> AmsGrad<B> {
    pub fn new(be: &B, params: &Params<B>, group: Group, cfg: AdamConfig) -> Result<Self> {
        let mut state = Vec::new();
        for (i, spec) in params.table.specs.iter().enumerate() {
            if spec.group == group {
                let n = spec.numel();
                state.push(Moments { index: i, m: be.alloc(n)?, v: be.alloc(n)?, vmax: be.alloc(n)? });
            }
        }
        let lr_scale = vec![1.0; state.len()];
        Ok(AmsGrad { cfg, group, step: 0, state, lr_scale, lr_factor: 1.0 })
    }

    /// Multiply the learning rate of every tensor whose name starts with `prefix` by `factor`.
    pub fn scale_lr(&mut self, params: &Params<B>, prefix: &str, factor: f64) {
        for (st, scale) in self.state.iter().zip(self.lr_scale.iter_mut()) {
            if params.table.specs[st.index].name.starts_with(prefix) {
                *scale *= factor;
            }
        }
    }

    /// One update of every tensor of the group from its gradient.
    pub fn update(&mut self, be: &B, params: &mut Params<B>) -> Result<()> {
        self.step += 1;
        for (st, &scale) in self.state.iter_mut().zip(&self.lr_scale) {
            let i = st.index;
            let cfg = AdamConfig { lr: self.cfg.lr * scale * self.lr_factor, ..self.cfg };
            be.amsgrad_step(
                &cfg,
                self.step,
                &mut params.values[i],
                &params.grads[i],
                &mut st.m,
                &mut st.v,
                &mut st.vmax,
            )?;
        }
        Ok(())
    }

    /// Host copies of the state (m, v, vmax per tensor), for checkpoints.
    pub fn state_to_host(&self, be: &B) -> Result<Vec<Moments<Vec<f32>>>> {
        self.state
            .iter()
            .map(|s| {
                Ok(Moments { index: s.index, m: be.to_host(&s.m)?, v: be.to_host(&s.v)?, vmax: be.to_host(&s.vmax)? })
            })
            .collect()
    }

    /// Restore state saved by `state_to_host`.
    pub fn load_host(&mut self, be: &B, step: u64, host: &[Moments<Vec<f32>>]) -> Result<()> {
        if host.len() != self.state.len() {
            return Err(crate::MfdError::other(format!(
                "optimiser state has {} tensors, model has {}",
                host.len(),
                self.state.len()
            )));
        }
        for (s, h) in self.state.iter_mut().zip(host) {
            if s.index != h.index {
                return Err(crate::MfdError::other("optimiser state does not match the model's parameters"));
            }
            be.write(&mut s.m, &h.m)?;
            be.write(&mut s.v, &h.v)?;
            be.write(&mut s.vmax, &h.vmax)?;
        }
        self.step = step;
        Ok(())
    }
}
