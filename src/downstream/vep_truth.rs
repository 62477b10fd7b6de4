//! Biological VEPs against the variant truth of `mfd synth` data: does the biological half move with the true
//! biological effect of a variant, and ignore variants that change only GC?
//!
//! `mfd synth` writes `variants.vcf` (INFO CLASS = motif_breaking, motif_creating, gc_only, ...) and
//! `truth/variants.tsv` (per variant the true mean over experiments of delta z_bio). Every variant is scored as
//! `mfd vep --scale logit --shifts 3 --classes mean` does (both strands; at most MAX_PER_CLASS per class); two
//! numbers summarise it:
//! - rho: Spearman(bio VEP, true mean delta z_bio) over the motif-breaking and motif-creating variants;
//! - the VEP ratio: median |bio VEP| of the gc_only variants / that of the motif_breaking ones.
//!
//! Used by the run report (`disentanglement.json`), `mfd eval` and tests/downstream.rs: one definition for all.

use crate::downstream::genome::{Genome, IndexedFasta};
use crate::downstream::model::{Inference, Scale};
use crate::downstream::seq::Passes;
use crate::downstream::table::Table;
use crate::downstream::vcf::VcfReader;
use crate::downstream::vep::{score_pairs, variant_windows};
use crate::error::{MfdError, Result};
use std::collections::HashMap;
use std::path::Path;

/// Shifts per strand, as in the measurements of docs/LEARNING.md.
pub const SHIFTS: usize = 3;
/// Longest indel scored (bp), `mfd vep`'s default.
const MAX_INDEL: usize = 32;
/// Variant pairs per batch of trunk forwards.
const CHUNK: usize = 64;
/// Variants scored per class at most (the first in file order): the `genome` preset has 2,500 per class, and the
/// medians and rho are settled long before that; `tiny` (52) and `chr20` (200) are scored whole.
pub const MAX_PER_CLASS: usize = 500;

/// The summary of the biological VEPs against the truth.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct VepTruth {
    /// Spearman(bio VEP, true mean delta z_bio) over the motif-breaking and motif-creating variants.
    pub rho: f64,
    pub motif_variants: usize,
    /// Median |bio VEP| (logit, mean over classes) of the gc_only and of the motif_breaking variants.
    pub median_abs_bio_gc_only: f64,
    pub median_abs_bio_motif_breaking: f64,
    /// median_abs_bio_gc_only / median_abs_bio_motif_breaking (the target is <= 0.1).
    pub ratio: f64,
    pub gc_only_variants: usize,
    pub motif_breaking_variants: usize,
}

/// Score the variants of the synthesized directory `synth_dir` with `inf`; `Ok(None)` when it has no
/// `variants.vcf` and `truth/variants.tsv`, or no variants of the classes compared.
pub fn vep_truth(inf: &mut Inference, synth_dir: &Path) -> Result<Option<VepTruth>> {
    let (vcf, tsv, fasta) =
        (synth_dir.join("variants.vcf"), synth_dir.join("truth/variants.tsv"), synth_dir.join("genome.fa"));
    if !vcf.exists() || !tsv.exists() || !fasta.exists() {
        return Ok(None);
    }
    let truth = Table::read(&tsv)?;
    let (ci, cc, cd) = (truth.col("id")?, truth.col("class")?, truth.col("mean_dz_bio")?);
    let class_of: HashMap<&str, &str> = truth.rows.iter().map(|(_, r)| (r[ci].as_str(), r[cc].as_str())).collect();
    let genome = Genome::Fasta(IndexedFasta::open(&fasta)?);
    let p = Passes { shifts: SHIFTS, both_strands: true };
    let mut reader = VcfReader::open(&vcf)?;
    let (mut pending, mut per_class) = (Vec::new(), HashMap::new());
    while let Some(v) = reader.next_variant()? {
        let Some(&class) = class_of.get(v.id.as_str()) else { continue };
        let n = per_class.entry(class).or_insert(0usize);
        if *n >= MAX_PER_CLASS {
            continue;
        }
        if let Ok(pair) = variant_windows(&genome, &v, inf.t, p, MAX_INDEL)? {
            *n += 1;
            pending.push((v.id.clone(), pair));
        }
    }
    eprintln!("mfd: scoring {} variants against the variant truth in {}", pending.len(), synth_dir.display());
    let mut bio_by_id = HashMap::new();
    for chunk in pending.chunks(CHUNK) {
        let pairs: Vec<_> = chunk.iter().map(|(_, pair)| pair.clone()).collect();
        for ((id, _), sc) in chunk.iter().zip(score_pairs(inf, &pairs, p, Scale::Logit)?) {
            let mean = sc.bio.iter().map(|&x| x as f64).sum::<f64>() / sc.bio.len().max(1) as f64;
            bio_by_id.insert(id.clone(), mean);
        }
    }
    let (mut bio, mut dz, mut gc_only, mut breaking) = (vec![], vec![], vec![], vec![]);
    for (line, r) in &truth.rows {
        let Some(&b) = bio_by_id.get(&r[ci]) else { continue };
        match r[cc].as_str() {
            "motif_breaking" | "motif_creating" => {
                let d = r[cd].parse::<f64>().map_err(|e| {
                    MfdError::input(&tsv, Some(*line), Some("mean_dz_bio"), format!("'{}': {e}", r[cd]))
                })?;
                bio.push(b);
                dz.push(d);
                if r[cc] == "motif_breaking" {
                    breaking.push(b.abs());
                }
            }
            "gc_only" => gc_only.push(b.abs()),
            _ => {}
        }
    }
    if bio.len() < 2 || gc_only.is_empty() || breaking.is_empty() {
        return Ok(None);
    }
    let (m_gc, m_mb) = (median(&mut gc_only), median(&mut breaking));
    Ok(Some(VepTruth {
        rho: spearman(&bio, &dz),
        motif_variants: bio.len(),
        median_abs_bio_gc_only: m_gc,
        median_abs_bio_motif_breaking: m_mb,
        ratio: m_gc / m_mb,
        gc_only_variants: gc_only.len(),
        motif_breaking_variants: breaking.len(),
    }))
}

/// The upper median (element n / 2 after sorting), as the measurements in docs/LEARNING.md took it.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spearman's rank correlation, ties given their mean rank.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for &k in &idx[i..=j] {
                r[k] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_known_ranks() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 4.0, 3.0]) - 0.8).abs() < 1e-12);
        // Ties share their mean rank: ranks (0.5, 0.5, 2) and (0, 1, 2) give 0.866.
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 0.75f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn median_is_the_upper_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
