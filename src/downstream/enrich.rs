//! `mfd enrich`: are variants with extreme VEPs enriched in a labelled set (rare vs common, fine-mapped vs not)?
//! For every VEP column: at each quantile cutoff of the signed VEP (and of |VEP|) the variants beyond the cutoff
//! are "selected" (>= cut for q >= 0.5, <= cut below), the 2x2 table [[neg_unsel, neg_sel], [pos_unsel, pos_sel]]
//! gives the odds ratio (odds of selection, positives vs negatives) and a two-sided Fisher exact p-value; plus the
//! zero-shot AUROC of the VEP (and |VEP|) for the label (mfd-spec.md 8.3-8.4).
//!
//! Key decision: the label file is joined to the VEP table on (chrom, pos, ref, alt); variants without a label, or
//! with a NaN VEP, are left out and counted. Outputs: a long TSV (one row per column, mode and quantile), a
//! Markdown table in the paper's Table 2 layout (rows = VEP column and mode, cells = OR and p per quantile, then
//! AUROC), and an AUROC TSV.

use crate::data::binfile::write_atomic;
use crate::downstream::fisher::fisher_exact;
use crate::downstream::table::{quantile_sorted, Table};
use crate::error::{MfdError, Result};
use crate::train::metrics::auroc;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Signed quantiles of the reference (`evaluate_VEP.py`).
pub const SIGNED_Q: [f64; 9] = [1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999];
/// Quantiles of |VEP|.
pub const ABS_Q: [f64; 5] = [0.1, 0.9, 0.99, 0.999, 0.9999];

#[derive(Debug, Clone, clap::Args)]
pub struct EnrichArgs {
    /// VEP table written by `mfd vep`.
    #[arg(long)]
    pub vep: PathBuf,
    /// Labels TSV with columns chrom, pos, ref, alt and the label column.
    #[arg(long)]
    pub labels: PathBuf,
    /// Name of the label column.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Label value of the positive class (e.g. Rare); every other non-empty value is negative.
    #[arg(long, default_value = "1")]
    pub positive: String,
    /// VEP columns to test (comma-separated); default: every column after `allele`.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Output: OUT.tsv (long), OUT.md (Table 2 layout), OUT.auroc.tsv.
    #[arg(long)]
    pub out: PathBuf,
}

/// One test.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichRow {
    pub column: String,
    /// "signed" or "absolute".
    pub mode: &'static str,
    pub quantile: f64,
    pub cutoff: f64,
    pub pos_selected: u64,
    pub pos_total: u64,
    pub neg_selected: u64,
    pub neg_total: u64,
    pub odds_ratio: f64,
    pub p_value: f64,
}

/// Fisher tests of `scores` (finite) against `labels` at the quantiles `qs` of the scores.
pub fn enrichment(column: &str, mode: &'static str, scores: &[f64], labels: &[bool], qs: &[f64]) -> Vec<EnrichRow> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos_total = labels.iter().filter(|&&y| y).count() as u64;
    let neg_total = labels.len() as u64 - pos_total;
    qs.iter()
        .map(|&q| {
            let cutoff = quantile_sorted(&sorted, q);
            let sel = |s: f64| if q >= 0.5 { s >= cutoff } else { s <= cutoff };
            let (mut ps, mut ns) = (0u64, 0u64);
            for (&s, &y) in scores.iter().zip(labels) {
                if sel(s) {
                    if y {
                        ps += 1;
                    } else {
                        ns += 1;
                    }
                }
            }
            let f = fisher_exact(neg_total - ns, ns, pos_total - ps, ps);
            EnrichRow {
                column: column.to_string(),
                mode,
                quantile: q,
                cutoff,
                pos_selected: ps,
                pos_total,
                neg_selected: ns,
                neg_total,
                odds_ratio: f.odds_ratio,
                p_value: f.p_value,
            }
        })
        .collect()
}

/// Zero-shot AUROC of signed and absolute scores.
pub fn zero_shot(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let s: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
    let a: Vec<f32> = scores.iter().map(|&x| x.abs() as f32).collect();
    (auroc(&s, labels), auroc(&a, labels))
}

fn key(t: &Table, r: &[String], cols: &[usize; 4]) -> String {
    let _ = t;
    format!("{}\t{}\t{}\t{}", r[cols[0]], r[cols[1]], r[cols[2]].to_ascii_uppercase(), r[cols[3]].to_ascii_uppercase())
}

pub fn run(args: &EnrichArgs) -> Result<()> {
    let vep = Table::read(&args.vep)?;
    let lab = Table::read(&args.labels)?;
    let kc = |t: &Table| -> Result<[usize; 4]> { Ok([t.col("chrom")?, t.col("pos")?, t.col("ref")?, t.col("alt")?]) };
    let (vk, lk) = (kc(&vep)?, kc(&lab)?);
    let lc = lab.col(&args.label_column)?;
    let mut labels: HashMap<String, bool> = HashMap::new();
    for (_, r) in &lab.rows {
        let v = r[lc].trim();
        if !v.is_empty() && !v.eq_ignore_ascii_case("na") {
            labels.insert(key(&lab, r, &lk), v == args.positive);
        }
    }
    let columns: Vec<String> = if args.columns.is_empty() {
        let start = vep.col("allele")? + 1;
        vep.header[start..].to_vec()
    } else {
        args.columns.clone()
    };
    let row_labels: Vec<Option<bool>> = vep.rows.iter().map(|(_, r)| labels.get(&key(&vep, r, &vk)).copied()).collect();
    let unlabelled = row_labels.iter().filter(|l| l.is_none()).count();
    let mut all = Vec::new();
    let mut aurocs = Vec::new();
    for name in &columns {
        let vals = vep.f64_col(vep.col(name)?)?;
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for (v, l) in vals.iter().zip(&row_labels) {
            if let (true, Some(l)) = (v.is_finite(), l) {
                s.push(*v);
                y.push(*l);
            }
        }
        if !y.iter().any(|&b| b) || y.iter().all(|&b| b) {
            return Err(MfdError::input(
                &args.labels,
                None,
                Some(&args.label_column),
                format!("column {name}: the labelled variants are all one class (positive = '{}')", args.positive),
            ));
        }
        all.extend(enrichment(name, "signed", &s, &y, &SIGNED_Q));
        let abs: Vec<f64> = s.iter().map(|x| x.abs()).collect();
        all.extend(enrichment(name, "absolute", &abs, &y, &ABS_Q));
        let (a, b) = zero_shot(&s, &y);
        aurocs.push((name.clone(), a, b, y.iter().filter(|&&v| v).count(), y.iter().filter(|&&v| !v).count()));
    }
    let stem = args.out.to_string_lossy().trim_end_matches(".tsv").to_string();
    write_outputs(Path::new(&stem), &all, &aurocs)?;
    eprintln!(
        "mfd: {} VEP rows, {} without a label; {} tests; wrote {stem}.tsv, {stem}.md, {stem}.auroc.tsv",
        vep.rows.len(),
        unlabelled,
        all.len()
    );
    Ok(())
}

type AurocRow = (String, f64, f64, usize, usize);

fn write_outputs(stem: &Path, rows: &[EnrichRow], aurocs: &[AurocRow]) -> Result<()> {
    let s = stem.to_string_lossy();
    let mut long = String::from(
        "column\tmode\tquantile\tcutoff\tpos_selected\tpos_total\tneg_selected\tneg_total\todds_ratio\tp_value\n",
    );
    for r in rows {
        long.push_str(&format!(
            "{}\t{}\t{}\t{:.6e}\t{}\t{}\t{}\t{}\t{:.4}\t{:.4e}\n",
            r.column,
            r.mode,
            r.quantile,
            r.cutoff,
            r.pos_selected,
            r.pos_total,
            r.neg_selected,
            r.neg_total,
            r.odds_ratio,
            r.p_value
        ));
    }
    write_atomic(format!("{s}.tsv"), long.as_bytes())?;
    let mut au = String::from("column\tauroc_signed\tauroc_abs\tn_pos\tn_neg\n");
    for (c, a, b, p, n) in aurocs {
        au.push_str(&format!("{c}\t{a:.4}\t{b:.4}\t{p}\t{n}\n"));
    }
    write_atomic(format!("{s}.auroc.tsv"), au.as_bytes())?;
    // Table 2 layout: one row per (column, mode); cells "OR (p)" per quantile; the zero-shot AUROC last.
    let mut md = String::new();
    for (mode, qs) in [("signed", &SIGNED_Q[..]), ("absolute", &ABS_Q[..])] {
        md.push_str(&format!("\n**{mode} VEP** — odds ratio (two-sided Fisher p) at quantile\n\n| VEP |"));
        for q in qs {
            md.push_str(&format!(" q = {q} |"));
        }
        md.push_str(" AUROC |\n|---|");
        md.push_str(&"---|".repeat(qs.len() + 1));
        md.push('\n');
        for (c, a, b, _, _) in aurocs {
            md.push_str(&format!("| {c} |"));
            for q in qs {
                if let Some(r) = rows.iter().find(|r| &r.column == c && r.mode == mode && r.quantile == *q) {
                    md.push_str(&format!(" {:.2} ({:.1e}) |", r.odds_ratio, r.p_value));
                }
            }
            md.push_str(&format!(" {:.3} |\n", if mode == "signed" { *a } else { *b }));
        }
    }
    write_atomic(format!("{s}.md"), md.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_at_quantiles() {
        // 10 variants, scores 0..9; positives are the top 3.
        let s: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let y: Vec<bool> = (0..10).map(|i| i >= 7).collect();
        let rows = enrichment("x", "signed", &s, &y, &[0.1, 0.9]);
        // q = 0.9: cutoff 8.1 -> selected {9}: pos 1/3, neg 0/7; table [[7, 0], [2, 1]].
        assert!((rows[1].cutoff - 8.1).abs() < 1e-12);
        assert_eq!((rows[1].pos_selected, rows[1].neg_selected), (1, 0));
        assert_eq!(rows[1].odds_ratio, f64::INFINITY);
        assert!((rows[1].p_value - fisher_exact(7, 0, 2, 1).p_value).abs() < 1e-15);
        // q = 0.1: cutoff 0.9 -> selected {0} (<=), a negative.
        assert_eq!((rows[0].pos_selected, rows[0].neg_selected), (0, 1));
        let (a, b) = zero_shot(&s, &y);
        assert_eq!((a, b), (1.0, 1.0));
    }
}
