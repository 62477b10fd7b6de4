//! The fixed "biology" of the synthetic world: tissues, their TF programs, shared and decoy motifs, and the
//! motif weights w[t, m] of the label model (data-sources.md 2b).
//!
//! Key decision: the programs are fixed in code (not drawn per seed), so every dataset has the same known
//! structure and downstream checks (e.g. "GATA1 drives erythroid experiments") can be written once.

use crate::data::motifs::{builtin, Motif};
use crate::error::{MfdError, Result};

/// Weight of a motif in its own tissue's program.
pub const W_PROGRAM: f32 = 2.5;
/// Weight of a shared motif (CTCF, NRF1) in every tissue.
pub const W_SHARED: f32 = 1.5;

/// One tissue: its program TFs and the biosample vocabulary used in metadata.tsv.
#[derive(Debug, Clone)]
pub struct Tissue {
    pub name: &'static str,
    pub program: &'static [&'static str],
    pub biosamples: &'static [&'static str],
    pub organ_slims: &'static str,
    pub system_slims: &'static str,
    pub developmental_slims: &'static str,
}

const TISSUES: &[Tissue] = &[
    Tissue {
        name: "liver",
        program: &["HNF4A", "FOXA2", "CEBPB", "HNF1A"],
        biosamples: &["liver", "HepG2", "hepatocyte"],
        organ_slims: "liver",
        system_slims: "digestive system,endocrine system",
        developmental_slims: "endoderm",
    },
    Tissue {
        name: "erythroid",
        program: &["GATA1", "TAL1::TCF3", "KLF1"],
        biosamples: &["K562", "erythroblast"],
        organ_slims: "blood,bodily fluid",
        system_slims: "circulatory system",
        developmental_slims: "mesoderm",
    },
    Tissue {
        name: "B cell",
        program: &["EBF1", "PAX5", "Spi1"],
        biosamples: &["GM12878", "B cell", "naive B cell"],
        organ_slims: "blood,bodily fluid",
        system_slims: "immune system",
        developmental_slims: "mesoderm",
    },
    Tissue {
        name: "neural",
        program: &["NEUROD1", "RFX2", "SOX2"],
        biosamples: &["SK-N-SH", "neural cell", "brain"],
        organ_slims: "brain",
        system_slims: "central nervous system",
        developmental_slims: "ectoderm",
    },
    Tissue {
        name: "muscle",
        program: &["MEF2C", "MYOD1", "TEAD1"],
        biosamples: &["skeletal muscle myoblast", "heart left ventricle"],
        organ_slims: "musculature of body,heart",
        system_slims: "musculature,circulatory system",
        developmental_slims: "mesoderm",
    },
    Tissue {
        name: "epithelial",
        program: &["GRHL2", "TP63", "ELF3"],
        biosamples: &["keratinocyte", "A549", "mammary epithelial cell"],
        organ_slims: "skin of body,epithelium",
        system_slims: "integumental system",
        developmental_slims: "ectoderm",
    },
];

/// Motifs active in every tissue.
const SHARED: &[&str] = &["CTCF", "Nrf1"];

/// The resolved biology: motifs with sampling probabilities, program indices and the weight matrix.
#[derive(Debug, Clone)]
pub struct Biology {
    pub motifs: Vec<Motif>,
    /// Per motif (len, 4) sampling probabilities (pseudocount 0.25 per base).
    pub probs: Vec<Vec<[f64; 4]>>,
    pub tissues: Vec<Tissue>,
    /// Per tissue, motif indices of its program.
    pub programs: Vec<Vec<usize>>,
    pub shared: Vec<usize>,
    /// Motifs in no program and not shared (weight 0 everywhere): planted in decoy elements.
    pub decoys: Vec<usize>,
    /// (n_tissues, n_motifs) weights of the label model.
    pub w: Vec<Vec<f32>>,
}

fn index_of(motifs: &[Motif], name: &str) -> Result<usize> {
    motifs
        .iter()
        .position(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| MfdError::other(format!("built-in motif {name} missing from the JASPAR file")))
}

impl Biology {
    pub fn new() -> Result<Self> {
        let motifs = builtin();
        let probs = motifs.iter().map(|m| m.probabilities(0.25)).collect();
        let tissues: Vec<Tissue> = TISSUES.to_vec();
        let mut programs = Vec::new();
        for t in &tissues {
            programs.push(t.program.iter().map(|n| index_of(&motifs, n)).collect::<Result<Vec<_>>>()?);
        }
        let shared = SHARED.iter().map(|n| index_of(&motifs, n)).collect::<Result<Vec<_>>>()?;
        let used: Vec<usize> = programs.iter().flatten().chain(shared.iter()).copied().collect();
        let decoys = (0..motifs.len()).filter(|m| !used.contains(m)).collect();
        let mut w = vec![vec![0.0f32; motifs.len()]; tissues.len()];
        for (t, prog) in programs.iter().enumerate() {
            for &m in prog {
                w[t][m] = W_PROGRAM;
            }
            for &m in &shared {
                w[t][m] = W_SHARED;
            }
        }
        Ok(Biology { motifs, probs, tissues, programs, shared, decoys, w })
    }

    pub fn n_motifs(&self) -> usize {
        self.motifs.len()
    }

    /// Motif index by TF name (case-insensitive).
    #[cfg(test)]
    pub fn motif_index(&self, name: &str) -> Option<usize> {
        self.motifs.iter().position(|m| m.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_and_decoys_are_the_rest() {
        let b = Biology::new().unwrap();
        assert_eq!(b.n_motifs(), 36);
        assert_eq!(b.programs.len(), 6);
        let n_prog: usize = b.programs.iter().map(Vec::len).sum();
        assert_eq!(n_prog + b.shared.len() + b.decoys.len(), 36);
        let gata = b.motif_index("GATA1").unwrap();
        assert_eq!(b.w[1][gata], W_PROGRAM);
        assert_eq!(b.w[0][gata], 0.0);
        for &d in &b.decoys {
            assert!(b.w.iter().all(|row| row[d] == 0.0));
        }
    }
}
