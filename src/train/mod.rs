//! Training: metrics, optimiser state, the step, the loop and checkpoints.

pub mod checkpoint;
pub mod cli;
pub mod evaluate;
pub mod load_model;
pub mod metrics;
pub mod optim;
pub mod probe;
pub mod report;
pub mod step_dump;
pub mod tensorboard;
pub mod trainer;
