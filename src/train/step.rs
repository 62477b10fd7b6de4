//! Training, room 2: one step. The model loss forward + backward (its gradient buckets all-reduced as they
//! complete on a multi-rank model step), the adversary step on the detached features while those are in flight,
//! then the model's AMSGrad update and, with local batch statistics, the running statistics averaged.

use crate::backend::Backend;
use crate::config::BatchStats;
use crate::data::sampler::BatchPlan;
use crate::dist::buckets::Phase;
use crate::dist::StatsReduce;
use crate::error::{MfdError, Result};
use crate::model::grad_ready::NoHook;
use crate::model::mfd::LossTerms;
use crate::model::params::Group;
use crate::train::setup::Training;
use std::time::Instant;

/// What one step reports (this rank's values; the trainer averages them over ranks on logging steps).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepReport {
    pub terms: LossTerms,
    /// The model loss at lambda (the backward ran with lambda x W).
    pub loss: f32,
    /// This step's lambda: lambda_indep x the warm-up factor (`loss.indep_warmup_epochs`).
    pub lambda: f64,
    pub adv_loss: f32,
    /// Seconds of gradient all-reduce not hidden behind compute.
    pub exposed_comm: f64,
}

impl<B: Backend> Training<'_, B> {
    /// Train on this rank's share `plan` of the global batch; `model_step`: whether the model is updated (the
    /// adversary is, every step).
    ///
    /// On the steps the trainer does not log (`train.log_every`), scalar results may stay on the device
    /// (`Backend::defer_scalars`): the report's losses are then NaN and the non-finite loss check waits for the next
    /// logging step (a non-finite loss poisons the parameters, so that step's loss shows it).
    pub fn step(&mut self, plan: &BatchPlan, b_local: usize, model_step: bool) -> Result<StepReport> {
        let logging = (self.pos.global_step + 1).is_multiple_of(self.cfg.train.log_every.max(1) as u64);
        let deferred = self.be.defer_scalars(!logging);
        let out = self.step_scalars(plan, b_local, model_step, deferred);
        self.be.defer_scalars(false);
        out
    }

    fn step_scalars(
        &mut self,
        plan: &BatchPlan,
        b_local: usize,
        model_step: bool,
        deferred: bool,
    ) -> Result<StepReport> {
        let (be, comm, cfg) = (self.be, self.comm, self.cfg);
        let lr_factor = self.lr_factor();
        self.opt_model.lr_factor = lr_factor;
        self.opt_adv.lr_factor = lr_factor;
        // The batch is made where the model runs: on CUDA only the B/W tile indices cross the bus.
        be.encode_resident(&mut self.resident, &self.ds, plan, cfg.model.seq_len, &mut self.tokens, &mut self.labels)?;
        let (tokens, labels) = (&self.tokens, &self.labels);
        let global_stats = cfg.dist.batch_stats == BatchStats::Global;
        let (lambda_factor, model_scale, adv_scale) = self.scales();
        // The penalty's weight this step (`loss.indep_warmup_epochs`); the reported loss is at this lambda too.
        let lambda = cfg.loss.lambda_indep * self.indep_factor();
        self.model.params.zero_grads(be, Group::Model)?;
        let mut report = StepReport { lambda, ..StepReport::default() };
        let (mut backward_compute, mut adversary_compute) = (0.0f64, 0.0f64);
        let pos = self.pos;
        let (model, adv_buckets, opt_adv) = (&mut self.model, &mut self.adv_buckets, &mut self.opt_adv);
        // Backward: the model loss; on a multi-rank model step the hook starts each gradient bucket's all-reduce
        // as soon as its tensors are final. During: the adversary step, while the model's buckets are in flight.
        let mut step_work = |phase: Phase<'_, B>| -> Result<()> {
            match phase {
                Phase::Backward(hook) => {
                    let t0 = Instant::now();
                    let mut red = StatsReduce::new(comm, global_stats);
                    report.terms = model.model_loss_backward_hooked(
                        be,
                        tokens,
                        labels,
                        b_local,
                        (lambda * lambda_factor) as f32,
                        cfg.loss.cov_and_adv,
                        &mut red,
                        hook,
                    )?;
                    backward_compute = t0.elapsed().as_secs_f64();
                    report.loss = report.terms.loss_at(lambda);
                    if !deferred && !report.loss.is_finite() {
                        return Err(MfdError::other(format!(
                            "non-finite loss {} at epoch {} step {}",
                            report.loss, pos.epoch, pos.step_in_epoch
                        )));
                    }
                }
                Phase::During if model.adv_bio.is_some() => {
                    let t0 = Instant::now();
                    let mut red = StatsReduce::new(comm, global_stats);
                    report.adv_loss = model.adversary_loss_backward(be, b_local, &mut red)?;
                    let t1 = Instant::now();
                    adv_buckets.all_reduce(be, comm, &mut model.params, adv_scale)?;
                    let t2 = Instant::now();
                    opt_adv.update(be, &mut model.params)?;
                    adversary_compute = (t1 - t0 + t2.elapsed()).as_secs_f64();
                }
                Phase::During => {}
            }
            Ok(())
        };
        let t_sync = Instant::now();
        let mut hook_secs = 0.0;
        if model_step && self.world > 1 {
            self.model_buckets.sum_overlapped(be, comm, &mut step_work)?;
            self.model_buckets.unpack(be, &mut self.model.params, model_scale)?;
            hook_secs = self.model_buckets.hook_seconds();
        } else {
            step_work(Phase::Backward(&mut NoHook))?;
            step_work(Phase::During)?;
        }
        // Everything but the backward (less its hook: packing and starting buckets) and the adversary's compute.
        if self.world > 1 {
            report.exposed_comm =
                (t_sync.elapsed().as_secs_f64() - (backward_compute - hook_secs) - adversary_compute).max(0.0);
        }
        if model_step {
            self.opt_model.update(be, &mut self.model.params)?;
        }
        if !global_stats && self.world > 1 {
            self.buffer_buckets.all_reduce(be, comm, &mut self.model.params, 1.0 / self.world as f32)?;
        }
        Ok(report)
    }
}
