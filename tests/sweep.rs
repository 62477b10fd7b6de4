//! `mfd sweep` under `mpirun -np 2 --oversubscribe` on the CPU backend (issue 6), with configs/sweep_tiny.toml
//! (2 points, lambda_indep 0 and 0.01, C = 16, T = 128, 30 steps each) on the synthetic `tiny` dataset:
//! - 2 ranks, 1 rank per point: two groups train the two points at once; each point's run directory holds its
//!   evaluation and `point.json`, and world rank 0 writes results.tsv, results.md (with Table 1) and sweep.svg;
//! - rerunning skips both finished points;
//! - a point whose `point.json` is removed (an interrupted point: its checkpoint is there) is resumed from its
//!   checkpoint (asked for 32 steps now: steps 31 and 32 are trained), here by one group of 2 data-parallel ranks
//!   (`--ranks-per-point 2`), and the table again lists both points.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

fn sweep(root: &Path, extra: &[&str]) -> Output {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/sweep_tiny.toml");
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]);
    c.arg(env!("CARGO_BIN_EXE_mfd"));
    c.args(["sweep", "--config"]).arg(&config).arg("--out").arg(root.join("sweep"));
    c.args(["--set", &format!("data.dataset={}", toml_str(&root.join("data/dataset")))]);
    c.args(extra);
    let out = c.env("RAYON_NUM_THREADS", "1").output().expect("mpirun starts (is Open MPI installed?)");
    assert!(out.status.success(), "{c:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

const POINTS: [&str; 2] = ["lambda_indep-0_enabled-false", "lambda_indep-0.01"];

fn check_table(dir: &Path) {
    let tsv = std::fs::read_to_string(dir.join("results.tsv")).unwrap();
    let lines: Vec<&str> = tsv.lines().collect();
    assert_eq!(lines.len(), 3, "{tsv}");
    let header: Vec<&str> = lines[0].split('\t').collect();
    for (i, p) in POINTS.iter().enumerate() {
        let row: Vec<&str> = lines[i + 1].split('\t').collect();
        assert_eq!(row.len(), header.len(), "{tsv}");
        assert_eq!(row[0], *p);
        let get = |k: &str| row[header.iter().position(|h| *h == k).unwrap()].parse::<f64>().unwrap();
        for k in ["val_auroc", "test_auroc", "test_auprc", "shuffle_accuracy", "combined_auroc", "bio_auroc"] {
            let v = get(k);
            assert!((0.0..=1.0).contains(&v), "{k} = {v}\n{tsv}");
        }
        for k in ["r2_bio_from_tech", "r2_tech_from_bio", "motif_r2_bio", "gc_r2_tech", "zbio_r2_bio", "corr_frobenius"]
        {
            assert!(get(k).is_finite(), "{k}\n{tsv}");
        }
    }
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("## Table 1") && md.contains("| lambda_indep-0.01 | MFD, lambda = 0.01"), "{md}");
    let svg = std::fs::read_to_string(dir.join("sweep.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}

#[test]
fn a_two_point_sweep_on_two_ranks_runs_resumes_and_writes_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = sweep(root, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 new) on 2 rank(s): 2 group(s) of 1"), "{err}");
    let s = root.join("sweep");
    for p in POINTS {
        let d = s.join("points").join(p);
        for f in ["point.json", "eval_test.json", "eval_val.json", "tissue_tasks.tsv", "config.toml"] {
            assert!(d.join(f).exists(), "{}/{f} missing\n{err}", d.display());
        }
        // Each group's rank 0 alone wrote its metrics: 30 train lines and one test line.
        let m = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        assert_eq!(m.lines().filter(|l| l.contains("\"kind\":\"train\"")).count(), 30, "{m}");
        assert_eq!(m.lines().filter(|l| l.contains("\"kind\":\"test\"")).count(), 1, "{m}");
    }
    check_table(&s);

    // Rerun: nothing to do.
    let stamp = |p: &str| std::fs::metadata(s.join("points").join(p).join("point.json")).unwrap().modified().unwrap();
    let before = stamp(POINTS[1]);
    let err = String::from_utf8_lossy(&sweep(root, &[]).stderr).into_owned();
    assert!(err.contains("(2 finished, 0 to resume, 0 new)"), "{err}");
    assert!(!err.contains("training point"), "{err}");
    assert_eq!(stamp(POINTS[1]), before);

    // An interrupted point resumes from its checkpoint (step 30, now asked for 32 steps), on one group of two ranks.
    let d1 = s.join("points").join(POINTS[1]);
    std::fs::remove_file(d1.join("point.json")).unwrap();
    std::fs::remove_file(s.join("results.tsv")).unwrap();
    let out = sweep(root, &["--ranks-per-point", "2", "--set", "train.max_steps=32"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("(1 finished, 1 to resume, 0 new) on 2 rank(s): 1 group(s) of 2"), "{err}");
    assert!(err.contains(&format!("group 0 (2 rank(s)): resuming point {}", POINTS[1])), "{err}");
    assert!(err.contains("resuming at epoch 0 step 30 (global step 30)"), "{err}");
    let m = std::fs::read_to_string(d1.join("metrics.jsonl")).unwrap();
    assert_eq!(m.lines().filter(|l| l.contains("\"kind\":\"train\"")).count(), 32, "{m}");
    check_table(&s);
    let tsv = std::fs::read_to_string(s.join("results.tsv")).unwrap();
    // `steps` is the evaluated checkpoint's step: the best by validation loss, the resumed run's (32) or step 30's.
    let steps = tsv.lines().nth(2).unwrap().split('\t').nth(5);
    assert!(matches!(steps, Some("30") | Some("32")), "{tsv}");
}
