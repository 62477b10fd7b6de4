//! The sweep's outputs, written by world rank 0 from the points' `point.json`: `results.tsv` (one row per point,
//! every number), `results.md` (the results table and the paper's Table 1: tissue-program classification from
//! combined, biological and technical features), and `sweep.svg` (held-out AUROCs and independence metrics
//! against lambda_indep).
//!
//! Key decision: the plot's x axis is log10(lambda); lambda = 0 is drawn one decade below the smallest positive
//! lambda (the title says where), and points sharing a lambda (seeds, baselines) are averaged per series.

use crate::data::binfile::write_atomic;
use crate::error::Result;
use crate::report::svg;
use crate::sweep::point::PointResult;
use std::fmt::Write as _;
use std::path::Path;

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "NA".into()
    }
}

/// Tab-separated values, one row per point.
pub fn results_tsv(rows: &[PointResult]) -> String {
    let mut s = String::from(
        "point\tlambda_indep\tadversary\tmetadata\tseed\tsteps\tval_auroc\tval_auprc\ttest_auroc\ttest_auprc\t\
         shuffle_accuracy\tr2_bio_from_tech\tr2_tech_from_bio\tcorr_frobenius\tmotif_r2_bio\tmotif_r2_tech\t\
         gc_r2_bio\tgc_r2_tech\toracle_auroc\tzbio_r2_bio\tzbio_r2_tech\tkmer_r2_bio\tkmer_r2_tech\t\
         combined_auroc\tcombined_auprc\tbio_auroc\tbio_auprc\ttech_auroc\t\
         tech_auprc\toverrides\n",
    );
    for r in rows {
        let t = r.truth.clone().unwrap_or_default();
        let tr = |v: f64| if r.truth.is_some() { num(v) } else { "NA".into() };
        let set = |n: &str| r.set(n).map(|s| (num(s.auroc), num(s.auprc))).unwrap_or(("NA".into(), "NA".into()));
        let (ca, cp) = set("combined");
        let (ba, bp) = set("bio");
        let (ta, tp) = set("tech");
        let i = &r.independence;
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{ca}\t{cp}\t{ba}\t{bp}\t{ta}\t{tp}\t{}",
            r.name,
            r.lambda_indep,
            r.adversary,
            r.metadata,
            r.seed,
            r.steps,
            num(r.val_auroc),
            num(r.val_auprc),
            num(r.test_auroc),
            num(r.test_auprc),
            num(i.shuffle_accuracy),
            num(i.r2_bio_from_tech),
            num(i.r2_tech_from_bio),
            num(i.corr_frobenius),
            tr(t.motif_r2_bio),
            tr(t.motif_r2_tech),
            tr(t.gc_r2_bio),
            tr(t.gc_r2_tech),
            tr(t.oracle_auroc),
            tr(t.zbio_r2_bio),
            tr(t.zbio_r2_tech),
            tr(t.kmer_r2_bio),
            tr(t.kmer_r2_tech),
            r.overrides.join(" ")
        );
    }
    s
}

/// A row label: "lambda = x" (+ "no metadata" / "no adversary" / seed).
fn label(r: &PointResult) -> String {
    let mut s = if r.metadata { format!("MFD, lambda = {}", r.lambda_indep) } else { "baseline (no metadata)".into() };
    if r.metadata && !r.adversary {
        s.push_str(", no adversary");
    }
    let _ = write!(s, ", seed {}", r.seed);
    s
}

/// The Markdown report: the results table and Table 1.
pub fn results_md(rows: &[PointResult]) -> String {
    let mut s = String::from("# lambda_indep sweep\n\n## Results per point\n\n");
    s.push_str(
        "Validation and test: macro AUROC / AUPRC of the best checkpoint (both strands). Independence (test \
         features, mfd-spec.md 8.7): shuffle-discriminator accuracy (0.5 = independent), held-out predictor R2 \
         (S / C) in both directions, ||corr(tech, bio)||_F. Truth: probe R2 of the biological / technical \
         features to planted-motif counts (motif scan scores on real sequence), GC and, where the preset writes \
         them, the true biological logit z_bio (NA otherwise).\n\n",
    );
    s.push_str(
        "| point | setting | val AUROC | val AUPRC | test AUROC | test AUPRC | shuffle acc | R2 bio<-tech | \
         R2 tech<-bio | corr F | motif R2 bio / tech | GC R2 bio / tech | z_bio R2 bio / tech |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let i = &r.independence;
        let (m, g, z) = match &r.truth {
            Some(t) => (
                format!("{} / {}", num(t.motif_r2_bio), num(t.motif_r2_tech)),
                format!("{} / {}", num(t.gc_r2_bio), num(t.gc_r2_tech)),
                format!("{} / {}", num(t.zbio_r2_bio), num(t.zbio_r2_tech)),
            ),
            None => ("NA".into(), "NA".into(), "NA".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {m} | {g} | {z} |",
            r.name,
            label(r),
            num(r.val_auroc),
            num(r.val_auprc),
            num(r.test_auroc),
            num(r.test_auprc),
            num(i.shuffle_accuracy),
            num(i.r2_bio_from_tech),
            num(i.r2_tech_from_bio),
            num(i.corr_frobenius)
        );
    }
    s.push_str(
        "\n## Table 1: tissue-program classification of the synthetic elements\n\nEach tissue's task: is a \
         `truth/elements.bed` element active in that tissue? Cross-validated L2 logistic regression (80/20 split, \
         balanced classes) on the element features; macro mean over tissues of the held-out AUROC / AUPRC.\n\n\
         | point | setting | tasks | combined AUROC | combined AUPRC | bio AUROC | bio AUPRC | tech AUROC | tech AUPRC |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let set = |n: &str| r.set(n).map(|x| (num(x.auroc), num(x.auprc))).unwrap_or(("NA".into(), "NA".into()));
        let (ca, cp) = set("combined");
        let (ba, bp) = set("bio");
        let (ta, tp) = set("tech");
        let tasks = r.downstream.first().map(|x| x.tasks.to_string()).unwrap_or_else(|| "0".into());
        let _ = writeln!(s, "| {} | {} | {tasks} | {ca} | {cp} | {ba} | {bp} | {ta} | {tp} |", r.name, label(r));
    }
    s
}

/// x position of lambda on the plot's log axis.
fn lambda_x(lambda: f64, zero_at: f64) -> f64 {
    if lambda > 0.0 {
        lambda.log10()
    } else {
        zero_at
    }
}

/// Mean y per x of (x, y) pairs (NaN ignored), sorted by x.
fn mean_by_x(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64, usize)> = Vec::new();
    for (x, y) in pts.into_iter().filter(|p| p.1.is_finite()) {
        match out.iter_mut().find(|q| q.0 == x) {
            Some(q) => {
                q.1 += y;
                q.2 += 1;
            }
            None => out.push((x, y, 1)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.into_iter().map(|(x, s, n)| (x, s / n as f64)).collect()
}

/// Two line charts stacked in one SVG.
pub fn sweep_svg(rows: &[PointResult]) -> String {
    let min_pos = rows.iter().map(|r| r.lambda_indep).filter(|&l| l > 0.0).fold(f64::INFINITY, f64::min);
    let zero_at = if min_pos.is_finite() { min_pos.log10() - 1.0 } else { -4.0 };
    // Baselines without metadata have no lambda of their own: they are left out of the plot (see results.md).
    let mfd: Vec<&PointResult> = rows.iter().filter(|r| r.metadata).collect();
    let series = |f: &dyn Fn(&PointResult) -> f64| -> Vec<(f64, f64)> {
        mean_by_x(mfd.iter().map(|r| (lambda_x(r.lambda_indep, zero_at), f(r))).collect())
    };
    let ds = |r: &PointResult, n: &str| r.set(n).map(|s| s.auroc).unwrap_or(f64::NAN);
    let x_label = format!("log10(lambda_indep); lambda = 0 drawn at {zero_at}");
    let top = svg::line_chart(
        "held-out AUROC",
        &x_label,
        "AUROC",
        &[
            ("test (peaks)".into(), series(&|r| r.test_auroc)),
            ("Table 1 combined".into(), series(&|r| ds(r, "combined"))),
            ("Table 1 bio".into(), series(&|r| ds(r, "bio"))),
            ("Table 1 tech".into(), series(&|r| ds(r, "tech"))),
        ],
    );
    let bottom = svg::line_chart(
        "independence of the feature halves (test tiles)",
        &x_label,
        "value",
        &[
            ("shuffle discriminator accuracy".into(), series(&|r| r.independence.shuffle_accuracy)),
            ("R2 bio<-tech".into(), series(&|r| r.independence.r2_bio_from_tech)),
            ("R2 tech<-bio".into(), series(&|r| r.independence.r2_tech_from_bio)),
        ],
    );
    let (w, h) = (svg::W, svg::H);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\">{}{}</svg>\n",
        2 * h,
        top.replacen("<svg ", "<svg x=\"0\" y=\"0\" ", 1),
        bottom.replacen("<svg ", &format!("<svg x=\"0\" y=\"{h}\" "), 1)
    )
}

/// Write results.tsv, results.md and sweep.svg into `out`.
pub fn write_all(out: &Path, rows: &[PointResult]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| crate::MfdError::io(out, e))?;
    write_atomic(out.join("results.tsv"), results_tsv(rows).as_bytes())?;
    write_atomic(out.join("results.md"), results_md(rows).as_bytes())?;
    write_atomic(out.join("sweep.svg"), sweep_svg(rows).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::point::{IndependenceOut, SetOut};

    fn row(name: &str, lambda: f64) -> PointResult {
        PointResult {
            name: name.into(),
            overrides: vec![format!("loss.lambda_indep={lambda}")],
            lambda_indep: lambda,
            adversary: true,
            metadata: true,
            seed: 1,
            steps: 10,
            checkpoint: "x".into(),
            val_auroc: 0.6,
            val_auprc: 0.2,
            test_auroc: 0.7,
            test_auprc: f64::NAN,
            independence: IndependenceOut { shuffle_accuracy: 0.55, ..Default::default() },
            truth: None,
            downstream: vec![SetOut { set: "combined".into(), auroc: 0.8, auprc: 0.5, tasks: 4 }],
        }
    }

    #[test]
    fn tables_have_one_row_per_point_and_nan_is_na() {
        let rows = [row("a", 0.0), row("b", 0.01)];
        let tsv = results_tsv(&rows);
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols = lines[0].split('\t').count();
        assert!(lines.iter().all(|l| l.split('\t').count() == cols), "{tsv}");
        assert!(lines[1].contains("\tNA\t"), "{tsv}");
        let md = results_md(&rows);
        assert!(md.contains("| b | MFD, lambda = 0.01, seed 1 | 4 | 0.8000 | 0.5000 | NA"), "{md}");
        let svg = sweep_svg(&rows);
        assert!(svg.starts_with("<svg") && svg.matches("<svg").count() == 3, "{svg}");
        assert!(svg.contains("lambda = 0 drawn at -3"), "{svg}");
    }

    #[test]
    fn json_round_trip_keeps_nan() {
        let r = row("a", 0.1);
        let back: PointResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(back.test_auprc.is_nan());
        assert_eq!(back.name, "a");
        assert_eq!(back.downstream, r.downstream);
    }

    #[test]
    fn a_point_json_without_the_zbio_columns_reads_them_as_nan() {
        let old = r#"{"motif_r2_bio":0.4,"motif_r2_tech":0.3,"gc_r2_bio":0.5,"gc_r2_tech":0.9,"oracle_auroc":0.93}"#;
        let t: crate::sweep::point::Truth = serde_json::from_str(old).unwrap();
        assert_eq!(t.gc_r2_tech, 0.9);
        assert!(t.zbio_r2_bio.is_nan() && t.zbio_r2_tech.is_nan() && t.kmer_r2_bio.is_nan() && t.kmer_r2_tech.is_nan());
        let mut r = row("a", 0.1);
        r.truth = Some(t);
        let tsv = results_tsv(&[r]);
        let lines: Vec<&str> = tsv.lines().collect();
        let col = lines[0].split('\t').position(|h| h == "zbio_r2_bio").unwrap();
        assert_eq!(lines[1].split('\t').nth(col), Some("NA"), "{tsv}");
    }
}
