//! Training: metrics, optimiser state, the step, the loop and checkpoints.

pub mod checkpoint;
pub mod cli;
pub mod epoch_end;
pub mod evaluate;
pub mod load_model;
pub mod metrics;
pub mod optim;
pub mod preempt;
pub mod probe;
pub mod provenance;
pub mod report;
pub mod runlog;
pub mod setup;
pub mod step;
pub mod step_dump;
pub mod tensorboard;
pub mod trainer;
