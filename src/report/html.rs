//! The body of `report.html`: one self-contained page (inline SVG, no scripts, no external files) built from the
//! run directory's `metrics.jsonl` and `provenance.json`, the test evaluation and the disentanglement numbers.
//!
//! metrics.jsonl rows carry "kind" (train | val | test), "step" (global) and the values; validation rows of old
//! runs say "val_loss" where newer ones say "loss", and only newer train rows have "lr". A missing series is a
//! note in the page, never an error.

use crate::config::Config;
use crate::report::curves::{column, pr_curve, roc_curve};
use crate::report::svg::{category_chart, heatmap, LineChart, Series};
use crate::train::evaluate::EvalResult;
use crate::train::report::Disentanglement;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Everything the page shows.
pub struct ReportInput<'a> {
    pub run_dir: &'a Path,
    pub cfg: &'a Config,
    /// Experiment name of each class (manifest order).
    pub classes: &'a [String],
    pub test: &'a EvalResult,
    /// Pearson correlation of technical (rows) and biological (columns) test features, (C, C).
    pub corr: &'a [f64],
    pub dis: Option<&'a Disentanglement>,
    /// The checkpoint whose parameters were evaluated, when the caller knows it.
    pub checkpoint: Option<&'a Path>,
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The parsed rows of metrics.jsonl and the number of lines that were not JSON objects.
pub struct Metrics {
    pub rows: Vec<Value>,
    pub bad_lines: usize,
}

impl Metrics {
    pub fn read(path: &Path) -> Metrics {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut m = Metrics { rows: vec![], bad_lines: 0 };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => m.rows.push(v),
                _ => m.bad_lines += 1,
            }
        }
        m
    }

    /// (step, value) of rows of `kind`, the value under the first of `keys` that the row has; `scale` multiplies it.
    pub fn series(&self, kind: &str, keys: &[&str], scale: f64) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter(|r| r["kind"] == kind)
            .filter_map(|r| {
                let v = keys.iter().find_map(|k| r[*k].as_f64())?;
                Some((r["step"].as_f64()?, v * scale))
            })
            .collect()
    }
}

/// `provenance.json` as an HTML table, or a sentence saying why there is none.
pub fn provenance_html(run_dir: &Path) -> String {
    let path = run_dir.join("provenance.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => {
            return "<p id=\"provenance\">No provenance.json in the run directory (runs before provenance was \
                    recorded have none).</p>"
                .into()
        }
    };
    let obj = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return "<p id=\"provenance\">provenance.json is not a JSON object.</p>".into(),
        Err(e) => {
            return format!("<p id=\"provenance\">provenance.json could not be parsed: {}</p>", esc(&e.to_string()))
        }
    };
    let mut h = String::from("<table id=\"provenance\" class=\"kv\">");
    for (k, v) in &obj {
        let shown = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&shown));
    }
    h.push_str("</table>");
    h
}

/// What the evaluated checkpoint is, from its file name (`best-<step>` or `last`).
fn checkpoint_html(ck: Option<&Path>) -> String {
    let Some(p) = ck else {
        return "<tr><th>evaluated checkpoint</th><td>not recorded by the caller</td></tr>".into();
    };
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let what = match stem.strip_prefix("best-").and_then(|s| s.parse::<u64>().ok()) {
        Some(step) => format!(" (best validation loss, step {step})"),
        None if stem == "last" => " (the last one written)".into(),
        None => String::new(),
    };
    format!("<tr><th>evaluated checkpoint</th><td><code>{}</code>{what}</td></tr>", esc(&p.display().to_string()))
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "n/a".into()
    }
}

fn figure(id: &str, svg: &str, caption: &str) -> String {
    let cap = if caption.is_empty() { String::new() } else { format!("<figcaption>{caption}</figcaption>") };
    format!("<figure id=\"{id}\">{svg}{cap}</figure>")
}

/// Loss, validation metrics, learning rate, throughput and the independence terms over the steps.
fn training_section(m: &Metrics, cfg: &Config) -> String {
    let mut h = String::from("<h2>Training</h2>");
    if m.rows.is_empty() {
        h.push_str("<p>No metrics.jsonl rows in the run directory.</p>");
        return h;
    }
    if m.bad_lines > 0 {
        let _ = write!(h, "<p>{} line(s) of metrics.jsonl were not JSON objects and are left out.</p>", m.bad_lines);
    }
    let loss = LineChart::new("loss", "step", "loss")
        .series(Series::new("train loss", m.series("train", &["loss"], 1.0)))
        .series(Series::new("train BCE", m.series("train", &["bce"], 1.0)))
        .series(Series::new("val loss", m.series("val", &["loss", "val_loss"], 1.0)).dots())
        .series(Series::new("val BCE", m.series("val", &["bce"], 1.0)).dots());
    h.push_str("<div class=\"row\">");
    h.push_str(&figure(
        "fig-loss",
        &loss.render(),
        "loss = BCE + lambda_indep x independence term; validation after each epoch.",
    ));
    let val = LineChart::new("validation macro AUROC / AUPRC", "step", "value")
        .series(Series::new("val macro AUROC", m.series("val", &["macro_auroc"], 1.0)).dots())
        .series(Series::new("val macro AUPRC", m.series("val", &["macro_auprc"], 1.0)).dots());
    h.push_str(&figure("fig-val", &val.render(), ""));
    let lr = m.series("train", &["lr"], 1.0);
    let mut notes = String::new();
    if lr.is_empty() {
        notes.push_str("<p id=\"fig-lr\">No learning rate in metrics.jsonl (runs before it was logged).</p>");
    } else {
        let chart = LineChart::new("learning rate", "step", "lr").series(Series::new("lr (trunk)", lr));
        h.push_str(&figure("fig-lr", &chart.render(), ""));
    }
    let sps = LineChart::new("throughput", "step", "sequences / s")
        .series(Series::new("train seq/s", m.series("train", &["seq_per_s"], 1.0)));
    h.push_str(&figure("fig-throughput", &sps.render(), "Training sequences per second over all ranks, as logged."));
    // The logged terms are sums over the C features (||R||_F of a C x C matrix, total_R2 = sum of C squared
    // correlations): divided by C they are an RMS correlation and a mean r^2, both in [0, 1].
    let c = cfg.model.c.max(1) as f64;
    let mut indep = LineChart::new("independence of the feature halves (train batches)", "step", "value in [0, 1]")
        .series(Series::new("RMS corr(tech_i, bio_j)", m.series("train", &["corr"], 1.0 / c)));
    if cfg.adversary.enabled {
        indep = indep
            .series(Series::new("adversary r² bio←tech", m.series("train", &["r2_bio"], 1.0 / c)))
            .series(Series::new("adversary r² tech←bio", m.series("train", &["r2_tech"], 1.0 / c)));
    }
    h.push_str(&figure(
        "fig-independence",
        &indep.render(),
        &format!(
            "RMS corr = ||R||<sub>F</sub> / C over the C x C cross-correlations; adversary r² = total_R2 / C, the mean \
             squared correlation between each feature of one half and its prediction from the other half (C = {}).",
            cfg.model.c
        ),
    ));
    h.push_str("</div>");
    h.push_str(&notes);
    h
}

/// Per-class AUROC/AUPRC chart, ROC and PR curves of the best, median and worst class, and the per-class table.
fn test_section(inp: &ReportInput) -> String {
    let t = inp.test;
    let o = t.auroc.len();
    let name = |k: usize| inp.classes.get(k).cloned().unwrap_or_else(|| format!("class {k}"));
    let positives: Vec<usize> = (0..o).map(|k| column(&t.labels, o, k).iter().filter(|&&y| y).count()).collect();
    let prevalence: Vec<f64> = positives.iter().map(|&p| p as f64 / t.n.max(1) as f64).collect();
    let mut h = String::from("<h2>Test set, per class</h2>");
    // Classes sorted by AUROC, best first, NaN last.
    let mut order: Vec<usize> = (0..o).collect();
    order.sort_by(|&a, &b| {
        let key = |k: usize| if t.auroc[k].is_finite() { t.auroc[k] } else { f64::NEG_INFINITY };
        key(b).total_cmp(&key(a))
    });
    let pick = |v: &[f64]| order.iter().map(|&k| v.get(k).copied().unwrap_or(f64::NAN)).collect::<Vec<f64>>();
    let names: Vec<String> = order.iter().map(|&k| name(k)).collect();
    let chart = category_chart(
        "test AUROC and AUPRC per class (sorted by AUROC)",
        "class",
        "value",
        &names,
        &[("AUROC".into(), pick(&t.auroc)), ("AUPRC".into(), pick(&t.auprc)), ("prevalence".into(), pick(&prevalence))],
        Some((0.0, 1.0)),
    );
    h.push_str(&figure(
        "fig-classes",
        &chart,
        "The prevalence (share of positive tiles) is the AUPRC of a random ranking; AUROC's is 0.5.",
    ));
    // ROC and PR curves of three classes.
    let finite: Vec<usize> = order.iter().copied().filter(|&k| t.auroc[k].is_finite()).collect();
    let mut picks: Vec<(&str, usize)> = vec![];
    if let (Some(&best), Some(&worst)) = (finite.first(), finite.last()) {
        for (label, k) in [("best", best), ("median", finite[finite.len() / 2]), ("worst", worst)] {
            if !picks.iter().any(|&(_, j)| j == k) {
                picks.push((label, k));
            }
        }
    }
    if picks.is_empty() {
        h.push_str("<p>No class has both positive and negative test tiles: no ROC or PR curve.</p>");
    } else {
        let mut roc = LineChart::new("ROC", "false positive rate", "true positive rate")
            .ranges(Some((0.0, 1.0)), Some((0.0, 1.0)))
            .size(560, 400);
        let mut pr = LineChart::new("precision-recall", "recall", "precision")
            .ranges(Some((0.0, 1.0)), Some((0.0, 1.0)))
            .size(560, 400);
        let mut cap = String::from("Classes: ");
        for (i, &(label, k)) in picks.iter().enumerate() {
            let (s, y) = (column(&t.probs, o, k), column(&t.labels, o, k));
            let short = format!("{label}: {}", name(k));
            roc = roc.series(Series::new(format!("{short} ({:.3})", t.auroc[k]), roc_curve(&s, &y, 300)));
            pr = pr.series(Series::new(format!("{short} ({:.3})", t.auprc[k]), pr_curve(&s, &y, 300)));
            let _ = write!(
                cap,
                "{}{label} <b>{}</b> (AUROC {}, AUPRC {}, {} positives, prevalence {:.4})",
                if i > 0 { "; " } else { "" },
                esc(&name(k)),
                fmt(t.auroc[k]),
                fmt(t.auprc[k]),
                positives[k],
                prevalence[k]
            );
        }
        roc = roc.series(Series::new("chance", vec![(0.0, 0.0), (1.0, 1.0)]).dashed());
        h.push_str("<div class=\"row\">");
        h.push_str(&figure("fig-roc", &roc.render(), ""));
        h.push_str(&figure("fig-pr", &pr.render(), ""));
        let _ = write!(h, "</div><p>{cap}. Legends give AUROC (ROC) and AUPRC (PR).</p>");
    }
    h.push_str(
        "<details open><summary>Per-class table</summary><table id=\"per-class\"><tr><th>class</th><th class=\"l\">experiment</th>\
         <th>positives</th><th>prevalence</th><th>AUROC</th><th>AUPRC</th></tr>",
    );
    for k in 0..o {
        let _ = write!(
            h,
            "<tr><td>{k}</td><td class=\"l\">{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
            esc(&name(k)),
            positives[k],
            prevalence[k],
            fmt(t.auroc[k]),
            fmt(t.auprc[k])
        );
    }
    h.push_str("</table></details>");
    h
}

/// The summary probe table, the per-motif probe table and its chart.
fn disentanglement_section(dis: Option<&Disentanglement>, macro_auroc: f64) -> String {
    let mut h = String::from("<h2>Disentanglement (synthetic truth)</h2>");
    let Some(d) = dis else {
        h.push_str(
            "<p>No synthetic truth beside this dataset: the probe tables need data made by <code>mfd synth</code>.</p>",
        );
        return h;
    };
    let _ = write!(
        h,
        "<p>Held-out R&sup2; of a ridge probe from each feature half to quantities of the generator ({} test tiles); \
         also in <code>disentanglement.json</code> (<code>mfd eval</code> writes <code>disentanglement_&lt;split&gt;.json</code>).</p>\
         <table id=\"disentanglement\"><tr><th></th><th>biological features</th><th>technical features</th></tr>",
        d.tiles
    );
    for (what, b, t) in [
        ("true biological logit z_bio (mean over experiments)", d.zbio_r2_bio, d.zbio_r2_tech),
        ("true technical logit z_tech (mean over experiments)", d.ztech_r2_bio, d.ztech_r2_tech),
        ("tissue program scores (mean over tissues)", d.program_r2_bio, d.program_r2_tech),
        (
            "label-relevant motif factors (mean; planted counts, or PWM scan strengths on real sequence)",
            d.motif_r2_bio,
            d.motif_r2_tech,
        ),
        ("all motif factors, decoys included (mean)", d.motif_all_r2_bio, d.motif_all_r2_tech),
        ("GC fraction", d.gc_r2_bio, d.gc_r2_tech),
        ("technical k-mer counts (mean)", d.kmer_r2_bio, d.kmer_r2_tech),
    ] {
        let _ =
            write!(h, "<tr><td class=\"l\">probe R&sup2; to {what}</td><td>{}</td><td>{}</td></tr>", fmt(b), fmt(t));
    }
    let _ = write!(
        h,
        "</table><p>Oracle macro AUROC (noise-free generator probabilities, same tiles): {}; model / oracle = {}.</p>",
        fmt(d.oracle_auroc),
        fmt(macro_auroc / d.oracle_auroc)
    );
    if let Some(v) = &d.vep {
        let _ = write!(
            h,
            "<p id=\"vep-truth\">Biological VEPs against the variant truth (logit, mean over classes, {} shifts, both \
             strands): Spearman to the true delta z_bio {} over {} motif-breaking and -creating variants; median \
             |bio VEP| of {} GC-only variants / that of {} motif-breaking ones = {} / {} = {}.</p>",
            crate::downstream::vep_truth::SHIFTS,
            fmt(v.rho),
            v.motif_variants,
            v.gc_only_variants,
            v.motif_breaking_variants,
            fmt(v.median_abs_bio_gc_only),
            fmt(v.median_abs_bio_motif_breaking),
            fmt(v.ratio)
        );
    }
    h.push_str("<h3>Per planted motif</h3>");
    if d.motifs.is_empty() {
        h.push_str("<p>The truth lists no planted motifs.</p>");
        return h;
    }
    let names: Vec<String> = d.motifs.iter().map(|m| m.id.clone()).collect();
    let chart = category_chart(
        "probe R² of each motif's count",
        "planted motif",
        "held-out R²",
        &names,
        &[
            ("biological half".into(), d.motifs.iter().map(|m| m.r2_bio).collect()),
            ("technical half".into(), d.motifs.iter().map(|m| m.r2_tech).collect()),
        ],
        None,
    );
    h.push_str(&figure("fig-motifs", &chart, ""));
    h.push_str(
        "<table id=\"motif-probes\"><tr><th class=\"l\">motif</th><th class=\"l\">role</th>\
         <th class=\"l\">program weights (tissue: w)</th>\
         <th>R&sup2; bio</th><th>R&sup2; tech</th><th>bio &minus; tech</th></tr>",
    );
    for m in &d.motifs {
        let weights: Vec<String> =
            m.weights.iter().enumerate().filter(|(_, w)| **w != 0.0).map(|(t, w)| format!("{t}: {w:.2}")).collect();
        let role = if m.weights.is_empty() { "decoy" } else { "label-relevant" };
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{role}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.id),
            esc(&weights.join(", ")),
            fmt(m.r2_bio),
            fmt(m.r2_tech),
            fmt(m.r2_bio - m.r2_tech)
        );
    }
    h.push_str("</table>");
    h
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1500px;margin:auto;padding:0 12px}\
    td,th{padding:2px 10px;text-align:right}td.l,th.l,.kv th,.kv td{text-align:left}\
    table{border-collapse:collapse;margin:8px 0}tr:nth-child(even){background:#f4f4f4}\
    figure{margin:6px}figcaption{font-size:12px;color:#444;max-width:700px}.row{display:flex;flex-wrap:wrap}";

/// The whole page.
pub fn page(inp: &ReportInput) -> String {
    let cfg = inp.cfg;
    let t = inp.test;
    let metrics = Metrics::read(&inp.run_dir.join("metrics.jsonl"));
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mfd run report</title><style>{STYLE}</style></head>\
         <body><h1>mfd run report</h1>"
    );
    let _ = write!(
        h,
        "<table id=\"run\" class=\"kv\"><tr><th>run directory</th><td><code>{}</code></td></tr>{}\
         <tr><th>model</th><td>C = {}, T = {}, batch {}, lambda_indep = {}, adversary {}, {} classes</td></tr>\
         <tr><th>test</th><td>{} tiles, macro AUROC <b>{}</b>, macro AUPRC <b>{}</b>, BCE {:.5}</td></tr></table>",
        esc(&inp.run_dir.display().to_string()),
        checkpoint_html(inp.checkpoint),
        cfg.model.c,
        cfg.model.seq_len,
        cfg.train.batch_size,
        cfg.loss.lambda_indep,
        if cfg.adversary.enabled { "on" } else { "off" },
        t.auroc.len(),
        t.n,
        fmt(t.macro_auroc),
        fmt(t.macro_auprc),
        t.bce
    );
    h.push_str("<h2>Provenance</h2>");
    h.push_str(&provenance_html(inp.run_dir));
    h.push_str(&training_section(&metrics, cfg));
    h.push_str(&test_section(inp));
    h.push_str("<h2>Feature independence (test tiles)</h2>");
    let c = cfg.model.c;
    let frob = inp.corr.iter().map(|r| r * r).sum::<f64>().sqrt();
    let map =
        heatmap("corr(tech_i, bio_j)", "technical feature i", "biological feature j", "Pearson r", c, c, inp.corr);
    h.push_str(&figure(
        "fig-heatmap",
        &map,
        &format!("Pearson correlation of each technical with each biological feature; ||R||<sub>F</sub> = {frob:.3}."),
    ));
    h.push_str(&disentanglement_section(inp.dis, t.macro_auroc));
    let _ = write!(
        h,
        "<p style=\"color:#777\">Written by mfd {}; charts drawn with plotters.</p>",
        env!("CARGO_PKG_VERSION")
    );
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_accept_old_and_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            "{\"kind\":\"train\",\"step\":1,\"loss\":0.9}\n{\"kind\":\"val\",\"epoch\":1,\"step\":2,\"val_loss\":0.8}\n\
             not json\n{\"kind\":\"val\",\"epoch\":0,\"step\":4,\"loss\":0.7}\n{\"kind\":\"train\",\"step\":5,\"loss\":0.6,\"lr\":0.001}\n",
        )
        .unwrap();
        let m = Metrics::read(&p);
        assert_eq!(m.bad_lines, 1);
        assert_eq!(m.series("val", &["loss", "val_loss"], 1.0), vec![(2.0, 0.8), (4.0, 0.7)]);
        assert_eq!(m.series("train", &["lr"], 2.0), vec![(5.0, 0.002)]);
        assert!(Metrics::read(&dir.path().join("absent")).rows.is_empty());
    }

    #[test]
    fn provenance_is_a_table_or_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        assert!(provenance_html(dir.path()).contains("No provenance.json"));
        std::fs::write(dir.path().join("provenance.json"), "{\"host\":\"n<1>\",\"world_size\":4}").unwrap();
        let h = provenance_html(dir.path());
        assert!(h.contains("<th>host</th><td>n&lt;1&gt;</td>") && h.contains("<td>4</td>"), "{h}");
        std::fs::write(dir.path().join("provenance.json"), "[1]").unwrap();
        assert!(provenance_html(dir.path()).contains("not a JSON object"));
        assert!(checkpoint_html(Some(Path::new("ck/best-00000042.safetensors"))).contains("step 42"));
    }
}
