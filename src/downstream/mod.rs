//! Downstream tools on a trained checkpoint (mfd-spec.md 8, issue 7): region embeddings (`embed`), variant effect
//! prediction with feature-half swapping (`vep`), enrichment of VEP quantiles in labelled variant sets (`enrich`),
//! enhancer classification from embeddings (`enhancer`) and Integrated Gradients attributions (`attribute`).
//!
//! Everything runs on the CPU backend in evaluation mode (BatchNorm running statistics). Shared pieces: `model`
//! (checkpoint -> features and head), `seq` (windows -> shift x strand token passes), `genome` (indexed FASTA,
//! BED, small FASTA files), `table` (TSV columns), `vcf`/`vcf_out` (VCF in, VEPs as VCF INFO out).

pub mod attribute;
pub mod embed;
pub mod enhancer;
pub mod enrich;
pub mod fisher;
pub mod genome;
pub mod ig;
pub mod logistic;
pub mod model;
pub mod seq;
pub mod table;
pub mod vcf;
pub mod vcf_out;
pub mod vep;
pub mod vep_truth;

/// A command-line count checked against its range, naming the option (sizes the tools allocate by).
pub fn check_arg(name: &str, v: usize, lo: usize, hi: usize) -> crate::error::Result<usize> {
    if v < lo || v > hi {
        return Err(crate::error::MfdError::config(name, format!("{v} is out of range: expected {lo} ..= {hi}")));
    }
    Ok(v)
}
