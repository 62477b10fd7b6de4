//! Run outputs after evaluation: per-class metrics (TSV + JSON summary), disentanglement against the synthetic
//! truth (linear-probe R^2 of each feature half to the true logits z_bio and z_tech, the motif factors (planted
//! counts, or PWM scan strengths on the real-sequence presets), GC and technical k-mers; the oracle AUROC of the
//! generator's noise-free probabilities, the ceiling, and the model's ratio to it; the biological VEPs against
//! the variant truth when a checkpoint is given), and `report.html` (laid out by `report::html`). Probes are
//! fitted on one half of the evaluated tiles and scored on the other (probe.rs).

use crate::config::Config;
use crate::data::binfile::{write_atomic, BinFile, DType};
use crate::data::dataset::Dataset;
use crate::downstream::model::Inference;
use crate::downstream::vep_truth::{vep_truth, VepTruth};
use crate::error::{IoContext, MfdError, Result};
use crate::report::html::{page, ReportInput};
use crate::train::evaluate::EvalResult;
use crate::train::metrics::{nan_mean, per_class};
use crate::train::probe::{cross_correlation, probe_r2};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Truth-based disentanglement numbers on the evaluated tiles.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Disentanglement {
    /// Mean held-out R^2 over the counts of the label-relevant planted motifs (weight > 0 in some tissue
    /// program, params.json `w`), per feature half. Decoy motifs never move a label, so a model has no reason
    /// to encode them; they are reported apart (`motif_all_*`).
    pub motif_r2_bio: f64,
    pub motif_r2_tech: f64,
    /// Mean R^2 over every planted motif's count, decoys included.
    pub motif_all_r2_bio: f64,
    pub motif_all_r2_tech: f64,
    /// Mean R^2 over tissues of the program score sum_m w[t, m] * count_m (the biological signal before the
    /// assay scale): what the biological features should carry.
    pub program_r2_bio: f64,
    pub program_r2_tech: f64,
    /// R^2 to the GC fraction.
    pub gc_r2_bio: f64,
    pub gc_r2_tech: f64,
    /// Mean R^2 over the technical k-mer counts.
    pub kmer_r2_bio: f64,
    pub kmer_r2_tech: f64,
    /// R^2 to the per-tile mean over experiments of the true biological logit z_bio and technical logit z_tech
    /// (truth z_bio.bin / z_tech.bin; NaN where the preset writes no dense truth).
    pub zbio_r2_bio: f64,
    pub zbio_r2_tech: f64,
    pub ztech_r2_bio: f64,
    pub ztech_r2_tech: f64,
    /// Macro AUROC of the generator's noise-free probabilities on the same tiles and labels (the ceiling).
    pub oracle_auroc: f64,
    /// The model's macro AUROC on these tiles, and its ratio to the ceiling.
    pub model_auroc: f64,
    pub auroc_ratio: f64,
    pub tiles: usize,
    /// Per planted motif (params.json order): which half explains its count, and whether it moves labels.
    pub motifs: Vec<MotifProbe>,
    /// Biological VEPs against the variant truth (rho and the gc_only / motif_breaking ratio); `None` without a
    /// checkpoint to score or without variant truth.
    pub vep: Option<VepTruth>,
}

/// Probe R^2 of one planted motif's count from each feature half.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MotifProbe {
    pub id: String,
    /// Its weight per tissue program (params.json `w` column); empty for motifs that move no label (decoys).
    pub weights: Vec<f64>,
    pub r2_bio: f64,
    pub r2_tech: f64,
}

/// The synthetic truth directory of a dataset prepared from `mfd synth` output, if there is one.
pub fn truth_dir(ds: &Dataset) -> Option<PathBuf> {
    let fasta = ds.manifest().sources.iter().find(|s| s.role == "fasta")?;
    let dir = Path::new(&fasta.path).parent()?.join("truth");
    dir.join("params.json").exists().then_some(dir)
}

/// The biological VEPs of `checkpoint` against the variant truth of the synthesized directory that holds `truth`
/// (downstream/vep_truth.rs); `Ok(None)` when it has none.
pub fn vep_against_truth(truth: &Path, checkpoint: &Path, ds: &Dataset) -> Result<Option<VepTruth>> {
    let Some(synth) = truth.parent() else { return Ok(None) };
    let mut inf = Inference::load(checkpoint, Some(ds.dir()))?;
    vep_truth(&mut inf, synth)
}

/// Truth rows (global grid tile index) of the evaluated dataset tiles.
fn truth_rows(ds: &Dataset, params: &Value, indices: &[u64]) -> Result<Vec<usize>> {
    let contigs = params["contigs"].as_array().ok_or_else(|| MfdError::other("truth params.json: no contigs"))?;
    let tile = params["tile_size"].as_u64().unwrap_or(128);
    let mut offsets = Vec::new();
    for c in &ds.manifest().contigs {
        let entry = contigs.iter().find(|e| e["name"].as_str() == Some(c.name.as_str()));
        offsets.push(entry.and_then(|e| e["tile_offset"].as_u64()));
    }
    indices
        .iter()
        .map(|&g| {
            let rec = ds.tile(g);
            let off = offsets[rec.contig as usize]
                .ok_or_else(|| MfdError::other("truth params.json lacks a dataset contig"))?;
            Ok((off + rec.start as u64 / tile) as usize)
        })
        .collect()
}

/// Disentanglement of `res` (features of the evaluated tiles) against the synthetic truth in `truth`.
pub fn disentanglement(ds: &Dataset, truth: &Path, res: &EvalResult, c: usize) -> Result<Disentanglement> {
    let ppath = truth.join("params.json");
    let params: Value = serde_json::from_str(&std::fs::read_to_string(&ppath).at(&ppath)?)
        .map_err(|e| MfdError::input(&ppath, None, None, e.to_string()))?;
    let rows = truth_rows(ds, &params, &res.indices)?;
    let columns: Vec<String> = params["factor_columns"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let factors = BinFile::open(truth.join("tile_factors.bin"), "tfactors", DType::F32)?;
    let f = factors.data::<f32>()?;
    let nf = columns.len();
    if factors.shape().len() != 2 || factors.shape()[1] as usize != nf {
        return Err(MfdError::input(
            factors.path(),
            None,
            Some("header.shape"),
            "does not match params.json factor_columns",
        ));
    }
    let n = rows.len();
    let (mut bio, mut tech) = (vec![0f32; n * c], vec![0f32; n * c]);
    for i in 0..n {
        tech[i * c..(i + 1) * c].copy_from_slice(&res.features[i * 2 * c..i * 2 * c + c]);
        bio[i * c..(i + 1) * c].copy_from_slice(&res.features[i * 2 * c + c..(i + 1) * 2 * c]);
    }
    let column = |j: usize| -> Vec<f64> { rows.iter().map(|&r| f[r * nf + j] as f64).collect() };
    let alpha = 1e-3;
    let mut d = Disentanglement { tiles: n, ..Default::default() };
    let relevant = relevant_motifs(&params);
    let (mut m_bio, mut m_tech, mut a_bio, mut a_tech, mut k_bio, mut k_tech) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut motif_cols: Vec<(String, usize)> = Vec::new();
    for (j, name) in columns.iter().enumerate() {
        let y = column(j);
        let (rb, rt) = (probe_r2(&bio, c, &y, alpha), probe_r2(&tech, c, &y, alpha));
        if name == "gc" {
            d.gc_r2_bio = rb;
            d.gc_r2_tech = rt;
        } else if name.starts_with("kmer") {
            k_bio.push(rb);
            k_tech.push(rt);
        } else if let Some(id) = name.strip_prefix("motif:").and_then(|r| r.split(':').next()) {
            a_bio.push(rb);
            a_tech.push(rt);
            let weights = relevant.iter().find(|(m, _)| m == id).map(|(_, w)| w.clone());
            if weights.is_some() {
                m_bio.push(rb);
                m_tech.push(rt);
            }
            d.motifs.push(MotifProbe {
                id: id.to_string(),
                weights: weights.unwrap_or_default(),
                r2_bio: rb,
                r2_tech: rt,
            });
            motif_cols.push((id.to_string(), j));
        }
    }
    d.motif_r2_bio = nan_mean(&m_bio);
    d.motif_r2_tech = nan_mean(&m_tech);
    d.motif_all_r2_bio = nan_mean(&a_bio);
    d.motif_all_r2_tech = nan_mean(&a_tech);
    d.kmer_r2_bio = nan_mean(&k_bio);
    d.kmer_r2_tech = nan_mean(&k_tech);
    // Program scores: one per tissue, from the motif columns and params.json `w` (tissues x motifs).
    let (mut p_bio, mut p_tech) = (vec![], vec![]);
    let tissues = params["w"].as_array().map(|a| a.len()).unwrap_or(0);
    for t in 0..tissues {
        let mut y = vec![0f64; n];
        for (id, j) in &motif_cols {
            let w = relevant.iter().find(|(m, _)| m == id).map(|(_, w)| w[t]).unwrap_or(0.0);
            if w != 0.0 {
                for (yi, &r) in y.iter_mut().zip(&rows) {
                    *yi += w * f[r * nf + j] as f64;
                }
            }
        }
        p_bio.push(probe_r2(&bio, c, &y, alpha));
        p_tech.push(probe_r2(&tech, c, &y, alpha));
    }
    d.program_r2_bio = nan_mean(&p_bio);
    d.program_r2_tech = nan_mean(&p_tech);
    for (file, kind, r2) in [
        ("z_bio.bin", "zbio", (&mut d.zbio_r2_bio, &mut d.zbio_r2_tech)),
        ("z_tech.bin", "ztech", (&mut d.ztech_r2_bio, &mut d.ztech_r2_tech)),
    ] {
        let (rb, rt) = match mean_logit(truth, file, kind, &rows)? {
            Some(y) => (probe_r2(&bio, c, &y, alpha), probe_r2(&tech, c, &y, alpha)),
            None => (f64::NAN, f64::NAN),
        };
        (*r2.0, *r2.1) = (rb, rt);
    }
    d.oracle_auroc = oracle_auroc(truth, &rows, res)?;
    d.model_auroc = res.macro_auroc;
    d.auroc_ratio = res.macro_auroc / d.oracle_auroc;
    Ok(d)
}

/// Per-row mean over experiments of a dense (tiles, O) truth logit matrix; None when the file is absent.
fn mean_logit(truth: &Path, file: &str, kind: &str, rows: &[usize]) -> Result<Option<Vec<f64>>> {
    let path = truth.join(file);
    if !path.exists() {
        return Ok(None);
    }
    let z = BinFile::open(&path, kind, DType::F32)?;
    let o = z.shape().get(1).copied().unwrap_or(0) as usize;
    let data = z.data::<f32>()?;
    if o == 0 || rows.iter().any(|&r| (r + 1) * o > data.len()) {
        return Err(MfdError::input(&path, None, Some("header.shape"), "fewer rows than the truth tile grid"));
    }
    Ok(Some(rows.iter().map(|&r| data[r * o..(r + 1) * o].iter().map(|&v| v as f64).sum::<f64>() / o as f64).collect()))
}

/// Label-relevant motifs of the truth: (motif id, its weight in each tissue program) for every motif whose
/// weight is > 0 in some tissue (params.json `motifs` gives the column order of `w`).
fn relevant_motifs(params: &Value) -> Vec<(String, Vec<f64>)> {
    let ids: Vec<&str> =
        params["motifs"].as_array().map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect()).unwrap_or_default();
    let w: Vec<Vec<f64>> = params["w"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().map(|v| v.iter().filter_map(Value::as_f64).collect()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    ids.iter()
        .enumerate()
        .filter_map(|(j, id)| {
            let col: Vec<f64> = w.iter().map(|r| r.get(j).copied().unwrap_or(0.0)).collect();
            col.iter().any(|&v| v > 0.0).then(|| (id.to_string(), col))
        })
        .collect()
}

/// Macro AUROC of the truth's noise-free probabilities against the evaluated labels (NaN without p.bin).
pub fn oracle_auroc(truth: &Path, rows: &[usize], res: &EvalResult) -> Result<f64> {
    let path = truth.join("p.bin");
    if !path.exists() {
        return Ok(f64::NAN);
    }
    let p = BinFile::open(&path, "prob", DType::F32)?;
    let o = p.shape().get(1).copied().unwrap_or(0) as usize;
    if o == 0 || res.labels.len() != rows.len() * o {
        return Ok(f64::NAN);
    }
    let data = p.data::<f32>()?;
    let scores: Vec<f32> = rows.iter().flat_map(|&r| data[r * o..(r + 1) * o].iter().copied()).collect();
    let (auroc, _) = per_class(&scores, &res.labels, o);
    Ok(nan_mean(&auroc))
}

/// Per-class metrics TSV and a JSON summary for `split`.
pub fn write_eval_outputs(out: &Path, split: &str, ds: &Dataset, res: &EvalResult) -> Result<()> {
    let o = res.auroc.len();
    let mut tsv = String::from("class\texperiment\tpositives\tauroc\tauprc\n");
    for k in 0..o {
        let pos = (0..res.n).filter(|&i| res.labels[i * o + k]).count();
        let _ = writeln!(tsv, "{k}\t{}\t{pos}\t{:.6}\t{:.6}", ds.manifest().classes[k], res.auroc[k], res.auprc[k]);
    }
    write_atomic(out.join(format!("eval_{split}.tsv")), tsv.as_bytes())?;
    let summary = json!({"split": split, "tiles": res.n, "bce": res.bce, "corr": res.corr,
        "macro_auroc": res.macro_auroc, "macro_auprc": res.macro_auprc});
    write_atomic(
        out.join(format!("eval_{split}.json")),
        serde_json::to_string_pretty(&summary).unwrap_or_default().as_bytes(),
    )
}

/// `report.html` in the run directory `out` for the test evaluation `test` of the checkpoint `checkpoint`: loss,
/// validation, lr and throughput curves from `out/metrics.jsonl`, `out/provenance.json`, per-class AUROC/AUPRC
/// with ROC and PR curves, the technical x biological feature correlation heatmap and, on synthetic data, the
/// disentanglement numbers (written to `disentanglement.json` too).
pub fn write_report(
    out: &Path,
    cfg: &Config,
    ds: &Dataset,
    test: &EvalResult,
    checkpoint: Option<&Path>,
) -> Result<()> {
    let c = cfg.model.c;
    let n = test.n;
    if test.features.len() < n * 2 * c {
        return Err(MfdError::other(format!(
            "report: {} feature values for {n} tiles x 2C = {}",
            test.features.len(),
            n * 2 * c
        )));
    }
    let (mut bio, mut tech) = (vec![0f32; n * c], vec![0f32; n * c]);
    for i in 0..n {
        tech[i * c..(i + 1) * c].copy_from_slice(&test.features[i * 2 * c..i * 2 * c + c]);
        bio[i * c..(i + 1) * c].copy_from_slice(&test.features[i * 2 * c + c..(i + 1) * 2 * c]);
    }
    let corr = cross_correlation(&tech, c, &bio, c);
    let dis = match truth_dir(ds) {
        Some(t) => {
            let mut d = disentanglement(ds, &t, test, c)?;
            if let Some(ck) = checkpoint {
                d.vep = vep_against_truth(&t, ck, ds)?;
            }
            Some(d)
        }
        None => None,
    };
    if let Some(d) = &dis {
        write_atomic(out.join("disentanglement.json"), serde_json::to_string_pretty(d).unwrap_or_default().as_bytes())?;
    }
    let input = ReportInput {
        run_dir: out,
        cfg,
        classes: &ds.manifest().classes,
        test,
        corr: &corr,
        dis: dis.as_ref(),
        checkpoint,
    };
    write_atomic(out.join("report.html"), page(&input).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevant_motifs_are_those_with_a_positive_program_weight() {
        let params = json!({
            "motifs": [{"id": "M1"}, {"id": "DECOY"}, {"id": "M2"}],
            "w": [[2.5, 0.0, 0.0], [0.0, 0.0, 1.5]],
        });
        let r = relevant_motifs(&params);
        assert_eq!(r, vec![("M1".to_string(), vec![2.5, 0.0]), ("M2".to_string(), vec![0.0, 1.5])]);
        assert!(relevant_motifs(&json!({})).is_empty());
    }
}
