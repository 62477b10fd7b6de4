//! The gradient-ready hook of the model's backward (issue 4 item 3): the model calls `GradReady::ready(i)` once per
//! model-group parameter tensor, right after `p.grads[i]` has received its last contribution of the backward, so a
//! data-parallel caller can start the all-reduce of a gradient bucket as soon as all of its tensors are final,
//! overlapped with the rest of backward (`dist::buckets::Buckets::sum_overlapped`).
//!
//! Key decision: the readiness order is reverse registration order (the order `Buckets::new` plans in): head bias,
//! then the technical then biological hypernetworks (their gradient dW is final once the head's backward has run,
//! so they are back-propagated right after it, before the trunk), then the trunk from `features_bn` down to the
//! stem; inside a layer the later-registered tensor first (conv weight, then BatchNorm beta, gamma). The default
//! `NoHook` costs a virtual call per tensor (about a hundred per step).

use crate::backend::Backend;
use crate::error::Result;
use crate::model::params::Params;

/// Told when a parameter tensor's gradient is final for the current backward.
pub trait GradReady<B: Backend> {
    /// `p.grads[i]` will not change again in this backward.
    fn ready(&mut self, be: &B, p: &Params<B>, i: usize) -> Result<()>;
}

/// The default hook: does nothing (one rank, or steps that do not reduce gradients).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl<B: Backend> GradReady<B> for NoHook {
    fn ready(&mut self, _be: &B, _p: &Params<B>, _i: usize) -> Result<()> {
        Ok(())
    }
}

/// Records the tensor indices in the order they became ready (tests, diagnostics).
#[derive(Debug, Clone, Default)]
pub struct RecordOrder(pub Vec<usize>);

impl<B: Backend> GradReady<B> for RecordOrder {
    fn ready(&mut self, _be: &B, _p: &Params<B>, i: usize) -> Result<()> {
        self.0.push(i);
        Ok(())
    }
}
