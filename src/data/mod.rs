//! The data layer: synthetic data in real formats, input parsers, `mfd prepare`, and the memory-mapped
//! dataset readers that feed training.

pub mod binfile;
pub mod dataset;
pub mod fasta;
pub mod inspect;
pub mod manifest;
pub mod metadata;
pub mod motifs;
pub mod peak_store;
pub mod peaks;
pub mod prepare;
pub mod sampler;
pub mod synth;
pub mod tiles;
pub mod window;
