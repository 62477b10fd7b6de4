//! The run report (issue 23 item 5) on a tiny trained run: report.html is one self-contained page whose SVG charts
//! parse as XML and have tick labels and legends, whose heatmap has a colour bar, and which shows the evaluated
//! checkpoint, the provenance, per-class AUROC/AUPRC, ROC/PR curves, lr and throughput curves and the per-motif
//! probe table. To look at it: bench/render_report.sh RUN_DIR OUT.png (headless Chromium).

mod common;

use mfd::data::dataset::Dataset;
use mfd::data::manifest::SPLIT_TEST;
use std::io::Write;

/// The `<svg>...</svg>` inside `<figure id="ID">`.
fn figure_svg<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<figure id=\"{id}\">")).unwrap_or_else(|| panic!("no figure {id}"));
    let rest = &html[start..];
    let a = rest.find("<svg").unwrap();
    let b = rest.find("</svg>").unwrap() + "</svg>".len();
    &rest[a..b]
}

/// The trimmed text of every `<text>` element of an SVG that parses as XML.
fn svg_texts(svg: &str, id: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{id}: SVG does not parse: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg", "{id}");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn numbers(texts: &[String]) -> Vec<f64> {
    texts.iter().filter_map(|t| t.parse::<f64>().ok()).collect()
}

/// The rows of `<table id="ID">` (header included).
fn table_rows(html: &str, id: &str) -> usize {
    let start = html.find(&format!("<table id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id}"));
    let end = start + html[start..].find("</table>").unwrap();
    html[start..end].matches("<tr>").count()
}

#[test]
fn the_report_has_axes_legends_colour_bar_curves_and_tables() {
    let t0 = std::time::Instant::now();
    let (root, ckpt) = common::tiny_trained_run();
    let run = root.join("run");
    let cfg = mfd::config::Config::load(Some(&run.join("config.toml")), &[]).unwrap();
    let ds = Dataset::open(&cfg.data.dataset).unwrap();
    let (mut model, _) = mfd::train::load_model::load_cpu_model(&cfg, &ds, &ckpt).unwrap();
    // 512 test tiles keep the evaluation cheap; every class still has positives.
    let tiles: Vec<u64> = ds.split_indices(SPLIT_TEST).into_iter().take(512).collect();
    let be = mfd::backend::cpu::CpuBackend;
    let (t, b, lambda) = (cfg.model.seq_len, cfg.train.batch_size, cfg.loss.lambda_indep);
    let test = mfd::train::evaluate::evaluate(&be, &mut model, &ds, tiles, t, b, lambda, true).unwrap();
    // What the trainer of issue 23 adds: provenance.json and train rows with "lr" (old rows stay as they are).
    std::fs::write(run.join("provenance.json"), r#"{"git_commit": "abc1234", "world_size": 2, "host": "n<1>"}"#)
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(run.join("metrics.jsonl")).unwrap();
    for step in [2, 3, 4] {
        let row = format!(
            r#"{{"kind":"train","epoch":0,"step":{step},"loss":0.5,"bce":0.5,"lr":{},"seq_per_s":100}}"#,
            1e-3 * step as f64
        );
        writeln!(f, "{row}").unwrap();
    }
    drop(f);
    mfd::train::report::write_report(&run, &cfg, &ds, &test, Some(&ckpt)).unwrap();
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();

    // Self-contained: nothing loaded from elsewhere.
    for needle in ["<script", " src=", "<link", "<img"] {
        assert!(!html.contains(needle), "report.html has {needle}");
    }
    assert!(html.contains(&ckpt.display().to_string()), "the evaluated checkpoint is not named");
    // Every chart parses, has more than two numeric tick labels and its legend entries.
    let legends: &[(&str, &[&str])] = &[
        ("fig-loss", &["train loss", "train BCE", "val loss", "val BCE"]),
        ("fig-val", &["val macro AUROC", "val macro AUPRC"]),
        ("fig-lr", &["lr (trunk)"]),
        ("fig-throughput", &["train seq/s"]),
        ("fig-independence", &["RMS corr(tech_i, bio_j)"]),
        ("fig-classes", &["AUROC", "AUPRC", "prevalence"]),
        ("fig-roc", &["chance"]),
        ("fig-pr", &[]),
        ("fig-heatmap", &["Pearson r"]),
        ("fig-motifs", &["biological half", "technical half"]),
    ];
    for (id, entries) in legends {
        let texts = svg_texts(figure_svg(&html, id), id);
        assert!(numbers(&texts).len() > 2, "{id}: tick labels {texts:?}");
        for e in *entries {
            assert!(texts.iter().any(|t| t == e), "{id}: no legend entry {e:?} in {texts:?}");
        }
    }
    // The independence panel is in [0, 1] (the logged sums are divided by C).
    let indep = numbers(&svg_texts(figure_svg(&html, "fig-independence"), "fig-independence"));
    assert!(indep.iter().all(|v| (-0.1..=1.1).contains(v)), "{indep:?}");
    // ROC and PR of best, median and worst class; every class named on the per-class chart.
    let roc = svg_texts(figure_svg(&html, "fig-roc"), "fig-roc");
    for pick in ["best: ", "median: ", "worst: "] {
        assert!(roc.iter().any(|t| t.starts_with(pick)), "{pick} {roc:?}");
    }
    let classes = svg_texts(figure_svg(&html, "fig-classes"), "fig-classes");
    assert!(ds.manifest().classes.iter().all(|c| classes.contains(c)), "class names missing");
    // The colour bar: its ticks -1 .. 1 beside the cells.
    let heat = svg_texts(figure_svg(&html, "fig-heatmap"), "fig-heatmap");
    for tick in ["-1", "0", "1"] {
        assert!(heat.iter().any(|t| t == tick), "colour bar tick {tick}: {heat:?}");
    }
    // The tables.
    let o = ds.manifest().classes.len();
    assert_eq!(table_rows(&html, "per-class"), o + 1);
    assert!(html.contains("<th>git_commit</th><td>abc1234</td>") && html.contains("<td>n&lt;1&gt;</td>"));
    assert!(table_rows(&html, "motif-probes") > 1 && table_rows(&html, "disentanglement") == 8);
    // The biological VEPs against the variant truth: every GC-only and motif-breaking variant scored.
    let dis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("disentanglement.json")).unwrap()).unwrap();
    let vep = &dis["vep"];
    let synth = mfd::train::report::truth_dir(&ds).unwrap().parent().unwrap().to_path_buf();
    let vcf = std::fs::read_to_string(synth.join("variants.vcf")).unwrap();
    let count = |class: &str| {
        let tag = format!("CLASS={class}");
        let has = |l: &str| l.split('\t').nth(7).is_some_and(|info| info.split(';').any(|kv| kv == tag));
        vcf.lines().filter(|l| !l.starts_with('#') && has(l)).count() as u64
    };
    assert_eq!(vep["gc_only_variants"].as_u64(), Some(count("gc_only")), "{vep}");
    assert_eq!(vep["motif_breaking_variants"].as_u64(), Some(count("motif_breaking")), "{vep}");
    assert_eq!(vep["motif_variants"].as_u64(), Some(count("motif_breaking") + count("motif_creating")), "{vep}");
    let (rho, ratio) = (vep["rho"].as_f64().unwrap(), vep["ratio"].as_f64().unwrap());
    assert!((-1.0..=1.0).contains(&rho) && ratio.is_finite() && ratio > 0.0, "{vep}");
    assert!(html.contains("<p id=\"vep-truth\">"), "the report does not show the VEP summary");
    eprintln!("report test: {:.1} s (VEP rho {rho:.3}, ratio {ratio:.3})", t0.elapsed().as_secs_f64());
}
