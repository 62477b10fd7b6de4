//! Training: metrics, optimiser state, the step, the loop and checkpoints.

pub mod metrics;
pub mod optim;
