//! mfd: Metadata-guided Feature Disentanglement (Rakowski, Monti et al., Bioinformatics 2024) as a fast,
//! distributed training system. See README.md and ../shared/docs/architecture.md.
//!
//! Dimension glossary used in shape comments throughout the crate:
//! - `B` batch (sequences), `T` input tokens (dinucleotides; a window has T + 1 bp), `L` sequence length of a
//!   layer's activations, `C` trunk width (the latent vector has 2C features: technical [0, C), biological
//!   [C, 2C)), `K` convolution width, `O` output classes (experiments), `D` metadata encoding width,
//!   `H` hidden width of an MLP.

pub mod backend;
pub mod bench;
pub mod config;
pub mod data;
pub mod dist;
pub mod downstream;
pub mod error;
pub mod model;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod sweep;
pub mod toml_load;
pub mod train;

pub use error::{MfdError, Result};
