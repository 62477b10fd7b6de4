//! `mfd enhancer`: how well do the features predict enhancer labels (VISTA / FANTOM5 style, mfd-spec.md 8.5-8.6)?
//! Per task (a 0/1 label column) and feature set: an 80/20 stratified split, a variance filter (0.01) and
//! standardisation fitted on train, `LogisticRegressionCV` with balanced classes (L2 and L1), and test AUROC and
//! AUPRC (average precision). Feature sets: bio, tech, combined = [bio, tech], the same three with GC regressed
//! out (least squares without intercept, as the reference), and a GC-only baseline (GC %).
//!
//! Key decision: labels join the embedding by name (the BED name / FASTA id); an empty or `NA` label leaves that
//! element out of that task only.

use crate::data::binfile::write_atomic;
use crate::downstream::embed::{read_embedding, Embedding};
use crate::downstream::logistic::{fit_cv, stratified_split, take_rows, Penalty, Scaler};
use crate::downstream::table::Table;
use crate::error::{MfdError, Result};
use crate::train::metrics::{auprc, auroc};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct EnhancerArgs {
    /// Embedding written by `mfd embed` (.safetensors).
    #[arg(long)]
    pub features: PathBuf,
    /// Labels TSV: a `name` column and one 0/1 column per task (empty or NA = not labelled).
    #[arg(long)]
    pub labels: PathBuf,
    /// Output TSV (one row per task, feature set and penalty).
    #[arg(long)]
    pub out: PathBuf,
    /// Penalties to fit (comma-separated: l2, l1).
    #[arg(long, value_delimiter = ',', default_value = "l2,l1")]
    pub penalties: Vec<String>,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Held-out test fraction.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Seed of the split and the folds.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct EnhancerResult {
    pub task: String,
    pub set: String,
    pub penalty: Penalty,
    pub c: f64,
    pub cv_auroc: f64,
    pub n_features: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub test_pos: usize,
    pub auroc: f64,
    pub auprc: f64,
}

/// Residuals of each column of x (N, D) after least squares on g without intercept.
pub fn regress_out(x: &[f64], d: usize, g: &[f64]) -> Vec<f64> {
    let gg: f64 = g.iter().map(|v| v * v).sum();
    let beta: Vec<f64> = (0..d)
        .map(|j| if gg > 0.0 { x.iter().skip(j).step_by(d).zip(g).map(|(a, b)| a * b).sum::<f64>() / gg } else { 0.0 })
        .collect();
    x.chunks(d).zip(g).flat_map(|(r, &gi)| r.iter().zip(&beta).map(move |(a, b)| a - b * gi)).collect()
}

/// The named feature sets (N, D_set) of an embedding.
pub fn feature_sets(e: &Embedding) -> Vec<(String, usize, Vec<f64>)> {
    let c = e.c;
    let f = |v: Vec<f32>| v.into_iter().map(|x| x as f64).collect::<Vec<f64>>();
    // GC in percent, as the reference: the 0.01 variance filter applies to it too (a fraction would fail it).
    let gc: Vec<f64> = e.gc.iter().map(|&g| if g.is_finite() { 100.0 * g as f64 } else { 0.0 }).collect();
    let mut sets = vec![
        ("bio".to_string(), c, f(e.bio())),
        ("tech".to_string(), c, f(e.tech())),
        ("combined".to_string(), 2 * c, f(e.combined())),
    ];
    let reg: Vec<_> = sets.iter().map(|(n, d, x)| (format!("{n}_gc_regressed"), *d, regress_out(x, *d, &gc))).collect();
    sets.extend(reg);
    sets.push(("gc".to_string(), 1, gc));
    sets
}

/// Fit and score one task on one feature set.
pub fn evaluate_task(
    x: &[f64],
    d: usize,
    y: &[bool],
    pen: Penalty,
    folds: usize,
    test_fraction: f64,
    seed: u64,
) -> Option<(f64, f64, usize, f64, f64, usize, usize)> {
    let (tr, te) = stratified_split(y, test_fraction, seed);
    let (ytr, yte): (Vec<bool>, Vec<bool>) = (tr.iter().map(|&i| y[i]).collect(), te.iter().map(|&i| y[i]).collect());
    let pos_tr = ytr.iter().filter(|&&v| v).count();
    if pos_tr < folds || ytr.len() - pos_tr < folds || !yte.iter().any(|&v| v) || yte.iter().all(|&v| v) {
        return None;
    }
    let (xtr, xte) = (take_rows(x, d, &tr), take_rows(x, d, &te));
    let sc = Scaler::fit(&xtr, d, 0.01);
    let k = sc.keep.len();
    if k == 0 {
        return None;
    }
    let (ztr, zte) = (sc.apply(&xtr, d), sc.apply(&xte, d));
    let cv = fit_cv(&ztr, k, &ytr, pen, folds, seed);
    let dv: Vec<f32> = cv.model.decision(&zte).iter().map(|&v| v as f32).collect();
    Some((cv.c, cv.cv_auroc, k, auroc(&dv, &yte), auprc(&dv, &yte), tr.len(), te.len()))
}

pub fn run(args: &EnhancerArgs) -> Result<()> {
    let emb = read_embedding(&args.features)?;
    let lab = Table::read(&args.labels)?;
    let name_col = lab.col("name")?;
    let row_of: HashMap<&str, usize> = emb.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut pens = Vec::new();
    for p in &args.penalties {
        pens.push(match p.as_str() {
            "l2" => Penalty::L2,
            "l1" => Penalty::L1,
            o => return Err(MfdError::config("--penalties", format!("'{o}': expected l2 or l1"))),
        });
    }
    let sets = feature_sets(&emb);
    let mut results = Vec::new();
    for (k, task) in lab.header.iter().enumerate().filter(|(k, _)| *k != name_col) {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for (ln, r) in &lab.rows {
            let v = r[k].trim();
            if v.is_empty() || v.eq_ignore_ascii_case("na") {
                continue;
            }
            let label = match v {
                "1" | "true" | "True" => true,
                "0" | "false" | "False" => false,
                _ => {
                    return Err(MfdError::input(
                        &args.labels,
                        Some(*ln),
                        Some(task),
                        format!("'{}' is not 0/1", crate::error::short(v)),
                    ))
                }
            };
            let i = *row_of.get(r[name_col].as_str()).ok_or_else(|| {
                MfdError::input(
                    &args.labels,
                    Some(*ln),
                    Some("name"),
                    format!("'{}' is not in the embedding", crate::error::short(&r[name_col])),
                )
            })?;
            rows.push(i);
            y.push(label);
        }
        for (set, d, x) in &sets {
            let xs = take_rows(x, *d, &rows);
            for &pen in &pens {
                match evaluate_task(&xs, *d, &y, pen, args.folds, args.test_fraction, args.seed) {
                    Some((c, cv_auroc, nf, a, p, ntr, nte)) => results.push(EnhancerResult {
                        task: task.clone(),
                        set: set.clone(),
                        penalty: pen,
                        c,
                        cv_auroc,
                        n_features: nf,
                        n_train: ntr,
                        n_test: nte,
                        test_pos: (0..y.len()).filter(|&i| y[i]).count(),
                        auroc: a,
                        auprc: p,
                    }),
                    None => eprintln!("mfd: task {task}, set {set}: too few labelled elements of a class, skipped"),
                }
            }
        }
        eprintln!("mfd: task {task}: {} labelled elements", y.len());
    }
    let mut s = String::from(
        "task\tfeature_set\tpenalty\tC\tcv_auroc\tn_features\tn_train\tn_test\tn_pos\ttest_auroc\ttest_auprc\n",
    );
    for r in &results {
        s.push_str(&format!(
            "{}\t{}\t{}\t{:.3e}\t{:.4}\t{}\t{}\t{}\t{}\t{:.4}\t{:.4}\n",
            r.task,
            r.set,
            if r.penalty == Penalty::L2 { "l2" } else { "l1" },
            r.c,
            r.cv_auroc,
            r.n_features,
            r.n_train,
            r.n_test,
            r.test_pos,
            r.auroc,
            r.auprc
        ));
    }
    write_atomic(&args.out, s.as_bytes())?;
    eprintln!("mfd: wrote {} ({} results)", args.out.display(), results.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_regression_has_no_intercept() {
        // x = 2 g + 1: the no-intercept fit leaves a residual correlated with nothing but keeps the offset.
        let g = [1.0, 2.0, 3.0];
        let x = [3.0, 5.0, 7.0];
        let r = regress_out(&x, 1, &g);
        let beta = (3.0 + 10.0 + 21.0) / 14.0;
        for i in 0..3 {
            assert!((r[i] - (x[i] - beta * g[i])).abs() < 1e-12);
        }
        // Residuals are orthogonal to g.
        assert!(r.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>().abs() < 1e-12);
    }
}
