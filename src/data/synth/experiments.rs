//! Experiments (the O output classes): tissue, assay, ChIP target, lab, year, the label-model parameters of
//! each (GC bias theta, lab k-mer phi, Tn5 psi, assay scale s_a) and the ENCODE-like metadata.tsv.
//!
//! Key decisions: labs are confounded with tissue (each lab has two home tissues and does ~80% of its work
//! there); `n_held_out` (tissue, lab) cells are reserved before labs are drawn, so each holds exactly one
//! experiment, whose peaks are later written on the test contigs only. GC bias follows
//! theta_gc = alpha_lab + beta_assay + rho * (2020 - year) - mean (older experiments lean further towards GC).
//! Labs differ in the sign of alpha and theta_gc is centred over the experiments: a GC effect shared by every
//! experiment is, to a metadata model, indistinguishable from biology (nothing in the technical metadata explains
//! it), so only the part that varies with lab, assay and year is identifiably technical.

use super::factors::{N_KMERS, TN5};
use super::presets::Preset;
use super::programs::Biology;
use crate::error::Result;
use crate::rng::Rng;
use std::path::Path;

pub const TAG_EXPERIMENTS: u64 = 9;
pub const RHO: f32 = 0.06;
/// ChIP target boost gamma (per target instance).
pub const GAMMA: f32 = 3.0;
/// Lab-owned k-mer effect and ATAC Tn5 effect.
pub const PHI: f32 = 0.6;
pub const PSI: f32 = 0.8;
/// PCR-style inverted-U GC term of some labs.
pub const THETA_GC2: f32 = -0.3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Assay {
    #[serde(rename = "DNase-seq")]
    Dnase,
    #[serde(rename = "ATAC-seq")]
    Atac,
    #[serde(rename = "ChIP-seq")]
    Chip,
    #[serde(rename = "H3K27ac")]
    H3k27ac,
}

impl Assay {
    /// proc_Assay_lvl1 value.
    pub fn lvl1(self) -> &'static str {
        match self {
            Assay::Dnase => "DNase-seq",
            Assay::Atac => "ATAC-seq",
            Assay::Chip | Assay::H3k27ac => "ChIP-seq",
        }
    }
    /// s_a: scale of the tissue-program term.
    pub fn scale(self) -> f32 {
        match self {
            Assay::Dnase | Assay::Atac => 1.0,
            Assay::H3k27ac => 0.7,
            Assay::Chip => 0.4,
        }
    }
    /// beta_assay: the assay's share of the GC bias.
    pub fn beta(self) -> f32 {
        match self {
            Assay::Dnase => 0.2,
            Assay::Atac => -0.2,
            Assay::Chip => 0.3,
            Assay::H3k27ac => 0.4,
        }
    }
}

/// Assay mix, cycled per tissue (30% DNase, 30% TF ChIP, 20% H3K27ac, 20% ATAC).
const ASSAY_CYCLE: [Assay; 10] = [
    Assay::Dnase,
    Assay::Chip,
    Assay::H3k27ac,
    Assay::Atac,
    Assay::Chip,
    Assay::Dnase,
    Assay::Chip,
    Assay::H3k27ac,
    Assay::Atac,
    Assay::Dnase,
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Lab {
    pub name: String,
    pub home_tissues: [usize; 2],
    /// alpha_lab: the lab's share of the GC bias.
    pub alpha: f32,
    /// Whether the lab has the PCR-style inverted-U GC term.
    pub pcr: bool,
    pub base_year: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Experiment {
    pub id: String,
    pub tissue: usize,
    pub biosample: String,
    pub assay: Assay,
    /// Motif index of the ChIP target (TF ChIP only).
    pub target: Option<usize>,
    pub lab: usize,
    pub year: u32,
    pub date: String,
    pub life_stage: &'static str,
    pub age: u32,
    pub age_units: &'static str,
    pub held_out: bool,
    pub s_a: f32,
    pub gamma: f32,
    pub theta_gc: f32,
    pub theta_gc2: f32,
    /// Per technical k-mer effect; the Tn5 entry is psi (ATAC only).
    pub phi: [f32; N_KMERS],
    /// Offset b_o (set by calibration).
    pub b: f32,
    pub target_rate: f64,
    pub frip: f32,
    pub spot2: f32,
}

/// Labs and experiments for a preset (experiment order = class order).
pub fn make_experiments(bio: &Biology, p: &Preset, seed: u64) -> (Vec<Lab>, Vec<Experiment>) {
    let mut rng = Rng::derive(seed, &[TAG_EXPERIMENTS]);
    let nt = bio.tissues.len();
    let labs: Vec<Lab> = (0..p.n_labs)
        .map(|l| {
            let a = l % nt;
            let mut b = (l + p.n_labs) % nt;
            if b == a {
                b = (a + 1) % nt;
            }
            Lab {
                name: format!("SynLab{:02}", l + 1),
                home_tissues: [a, b],
                alpha: (gc_sign(l) * (0.8 + 0.35 * rng.normal())) as f32,
                pcr: l % 2 == 1,
                base_year: rng.range_i64(2010, 2019) as u32,
            }
        })
        .collect();
    let home = |t: usize, l: usize| labs[l].home_tissues.contains(&t);
    // Reserved off-diagonal (tissue, lab) cells, one per held-out experiment, on distinct tissues where possible.
    let mut reserved: Vec<(usize, usize)> = Vec::new();
    for i in 0..p.n_held_out {
        let t = i % nt;
        let cand: Vec<usize> = (0..p.n_labs).filter(|&l| !home(t, l) && !reserved.contains(&(t, l))).collect();
        if !cand.is_empty() {
            reserved.push((t, cand[rng.below(cand.len() as u64) as usize]));
        }
    }
    let mut order: Vec<usize> = (0..p.n_experiments).collect();
    rng.shuffle(&mut order);
    let mut exps = Vec::with_capacity(p.n_experiments);
    for (o, &slot) in order.iter().enumerate() {
        let tissue = slot % nt;
        let assay = ASSAY_CYCLE[(slot / nt) % ASSAY_CYCLE.len()];
        let homes: Vec<usize> = (0..p.n_labs).filter(|&l| home(tissue, l)).collect();
        let others: Vec<usize> =
            (0..p.n_labs).filter(|&l| !home(tissue, l) && !reserved.contains(&(tissue, l))).collect();
        let lab = if others.is_empty() || rng.bernoulli(0.8) {
            homes[rng.below(homes.len() as u64) as usize]
        } else {
            others[rng.below(others.len() as u64) as usize]
        };
        let t = &bio.tissues[tissue];
        let target = (assay == Assay::Chip).then(|| {
            if rng.bernoulli(0.3) {
                bio.shared[0] // CTCF
            } else {
                let prog = &bio.programs[tissue];
                prog[rng.below(prog.len() as u64) as usize]
            }
        });
        let (life_stage, age, age_units) = match rng.below(20) {
            0..=13 => ("adult", rng.range_i64(20, 80) as u32, "year"),
            14..=16 => ("child", rng.range_i64(1, 15) as u32, "year"),
            _ => ("embryonic", rng.range_i64(8, 20) as u32, "week"),
        };
        exps.push(Experiment {
            id: format!("SYN{:05}", o + 1),
            tissue,
            biosample: t.biosamples[rng.below(t.biosamples.len() as u64) as usize].to_string(),
            assay,
            target,
            lab,
            year: 0,
            date: String::new(),
            life_stage,
            age,
            age_units,
            held_out: false,
            s_a: assay.scale(),
            gamma: if assay == Assay::Chip { GAMMA } else { 0.0 },
            theta_gc: 0.0,
            theta_gc2: 0.0,
            phi: [0.0; N_KMERS],
            b: 0.0,
            target_rate: rng.uniform(p.rate_range.0, p.rate_range.1),
            frip: 0.0,
            spot2: 0.0,
        });
    }
    // Fill the reserved cells: a random not-yet-held-out experiment of the cell's tissue moves there.
    for &(t, l) in &reserved {
        let cand: Vec<usize> = (0..exps.len()).filter(|&i| exps[i].tissue == t && !exps[i].held_out).collect();
        if !cand.is_empty() {
            let e = &mut exps[cand[rng.below(cand.len() as u64) as usize]];
            e.lab = l;
            e.held_out = true;
        }
    }
    // Year and GC bias (after the lab is final), then theta_gc centred over the experiments.
    for e in &mut exps {
        let lab = &labs[e.lab];
        e.year = (lab.base_year as i64 + (1.5 * rng.normal()).round() as i64).clamp(2009, 2022) as u32;
        e.date = format!("{}-{:02}-{:02}", e.year, rng.range_i64(1, 12), rng.range_i64(1, 28));
        e.theta_gc = lab.alpha + e.assay.beta() + RHO * (2020.0 - e.year as f32);
    }
    let mean_gc = exps.iter().map(|e| e.theta_gc).sum::<f32>() / exps.len().max(1) as f32;
    // Lab k-mers, Tn5 and quality numbers.
    for e in &mut exps {
        let lab = &labs[e.lab];
        e.theta_gc -= mean_gc;
        e.theta_gc2 = if lab.pcr { THETA_GC2 } else { 0.0 };
        for q in 0..N_KMERS {
            if q != TN5 && e.lab == kmer_owner(q, p.n_labs) {
                e.phi[q] = PHI;
            }
        }
        if e.assay == Assay::Atac {
            e.phi[TN5] = PSI;
        }
        // Quality falls as technical bias rises.
        let bias = e.theta_gc.abs() + e.theta_gc2.abs() + e.phi.iter().sum::<f32>() * 0.3;
        let base = if e.assay == Assay::Chip { 0.18 } else { 0.32 };
        e.frip = (base - 0.1 * bias + 0.03 * rng.normal() as f32).clamp(0.01, 0.9);
        e.spot2 = (1.2 * e.frip + 0.02 * rng.normal() as f32).clamp(0.01, 0.95);
    }
    (labs, exps)
}

/// Sign of lab l's GC bias alpha, alternating. Lab l's home tissues are l and l + n_labs (mod the tissue count,
/// or the next tissue when they coincide), so when n_labs is a multiple of the tissue count (tiny: 6 labs, 6
/// tissues; genome: 24) every tissue's home labs include both signs and the tissue does not give the sign away.
fn gc_sign(l: usize) -> f64 {
    if l.is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

/// The lab that owns technical k-mer q (its experiments carry phi_q).
pub fn kmer_owner(q: usize, n_labs: usize) -> usize {
    q % n_labs
}

/// proc_target value.
pub fn target_name(bio: &Biology, e: &Experiment) -> String {
    match (e.assay, e.target) {
        (Assay::Dnase | Assay::Atac, _) => "Accessible DNA".into(),
        (Assay::H3k27ac, _) => "H3K27ac".into(),
        (Assay::Chip, Some(m)) => bio.motifs[m].name.clone(),
        (Assay::Chip, None) => "unknown".into(),
    }
}

/// Write metadata.tsv (header + one row per experiment in class order); `n_peaks` per experiment.
pub fn write_metadata(path: &Path, bio: &Biology, labs: &[Lab], exps: &[Experiment], n_peaks: &[u64]) -> Result<()> {
    let mut s = String::from(
        "File_accession\tBiosample_term_name\tBiosample_organ_slims\tBiosample_system_slims\t\
         Biosample_developmental_slims\tBiosample_organism\tproc_Biosample_life_stage\tproc_age_bin\t\
         proc_age_bin_units\tproc_target\tproc_Assay_lvl1\tExperiment_date_released\tLibrary_lab\tspot2_score\t\
         five_percent_narrowpeaks_count\tfrip\treproducible_peaks\n",
    );
    for (e, &np) in exps.iter().zip(n_peaks) {
        let t = &bio.tissues[e.tissue];
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\tHomo sapiens\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.4}\t{}\t{:.4}\t{}\n",
            e.id,
            e.biosample,
            t.organ_slims,
            t.system_slims,
            t.developmental_slims,
            e.life_stage,
            e.age,
            e.age_units,
            target_name(bio, e),
            e.assay.lvl1(),
            e.date,
            labs[e.lab].name,
            e.spot2,
            np.div_ceil(20),
            e.frip,
            (np as f64 * (0.55 + 0.4 * e.frip as f64)).round() as u64,
        ));
    }
    crate::data::binfile::write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::presets::preset;
    use std::collections::HashMap;

    #[test]
    fn held_out_cells_are_unique_and_labs_confounded() {
        let bio = Biology::new().unwrap();
        for name in ["tiny", "bench", "genome"] {
            let p = preset(name).unwrap();
            let (labs, exps) = make_experiments(&bio, &p, 11);
            assert_eq!(exps.len(), p.n_experiments);
            let mut cells: HashMap<(usize, usize), usize> = HashMap::new();
            for e in &exps {
                *cells.entry((e.tissue, e.lab)).or_default() += 1;
            }
            let held: Vec<&Experiment> = exps.iter().filter(|e| e.held_out).collect();
            assert_eq!(held.len(), p.n_held_out, "{name}");
            for e in held {
                assert_eq!(cells[&(e.tissue, e.lab)], 1, "{name}: held-out cell not unique");
            }
            let on_home = exps.iter().filter(|e| labs[e.lab].home_tissues.contains(&e.tissue)).count();
            let frac = on_home as f64 / exps.len() as f64;
            assert!((0.6..0.95).contains(&frac), "{name}: {frac}");
        }
    }

    #[test]
    fn gc_bias_is_centred_and_changes_sign_between_labs() {
        let bio = Biology::new().unwrap();
        for name in ["tiny", "bench", "genome"] {
            let p = preset(name).unwrap();
            let (labs, exps) = make_experiments(&bio, &p, 1);
            let mean = exps.iter().map(|e| e.theta_gc as f64).sum::<f64>() / exps.len() as f64;
            assert!(mean.abs() < 1e-5, "{name}: mean theta_gc {mean}");
            let pos = exps.iter().filter(|e| e.theta_gc > 0.3).count();
            let neg = exps.iter().filter(|e| e.theta_gc < -0.3).count();
            assert!(pos >= exps.len() / 5 && neg >= exps.len() / 5, "{name}: {pos} > 0.3, {neg} < -0.3");
            if p.n_labs.is_multiple_of(bio.tissues.len()) {
                // Every tissue has home labs of both signs.
                for t in 0..bio.tissues.len() {
                    let signs: Vec<bool> = (0..p.n_labs)
                        .filter(|&l| labs[l].home_tissues.contains(&t))
                        .map(|l| labs[l].alpha > 0.0)
                        .collect();
                    assert!(signs.contains(&true) && signs.contains(&false), "{name}: tissue {t} home labs {signs:?}");
                }
            }
        }
    }
}
