//! `mfd bench --quick`: every suite runs at tiny sizes and writes JSON + Markdown with the documented fields,
//! every number finite and the rates positive. No timing assertions (the numbers mean nothing at these sizes).
//! With `--features mpi`: `mfd bench allreduce --quick` under `mpirun -np 2 --oversubscribe` reports 2 ranks and
//! a positive bus bandwidth (rank 0 writes the file).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn mfd(args: &[&str], work: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mfd"))
        .args(args)
        .arg("--work")
        .arg(work)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("mfd runs")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Every number anywhere in `v` is finite (serde_json writes NaN / inf as null: no nulls allowed either, except
/// the optional machine facts).
fn all_finite(v: &Value, path: &str) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path} = {n}"),
        Value::Null => assert!(path.contains("machine") || path.contains("load_avg"), "{path} is null"),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| all_finite(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().for_each(|(k, x)| all_finite(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

fn positive(v: &Value, field: &str) -> f64 {
    let x = v[field].as_f64().unwrap_or_else(|| panic!("{field} missing in {v}"));
    assert!(x.is_finite() && x > 0.0, "{field} = {x}");
    x
}

#[test]
fn quick_suite_writes_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = mfd(&["bench", "--quick"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = read_json(&dir.path().join("bench.json"));
    all_finite(&j, "");
    let md = std::fs::read_to_string(dir.path().join("bench.md")).unwrap();
    for h in ["## Peak", "## Data", "## Kernels", "## Training step", "## All-reduce"] {
        assert!(md.contains(h), "bench.md lacks {h}");
    }
    let r = &j["results"];
    positive(&r["peak"], "peak_gb_s");
    positive(&r["peak"], "peak_gflop_s");
    positive(&r["data"]["prepare"], "mb_per_s");
    positive(&r["data"]["encode"], "parallel_per_s");
    let cases = r["kernels"]["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let kinds: Vec<&str> = case["kinds"].as_array().unwrap().iter().map(|k| k["op"].as_str().unwrap()).collect();
        for op in ["conv1d_fwd k5", "conv1d_bwd k5", "stem_fwd", "bn_fwd", "gelu_bwd", "max_pool_fwd", "linear_fwd"] {
            assert!(kinds.contains(&op), "{op} not benchmarked: {kinds:?}");
        }
        for op in ["head_bce_bwd", "corr_fwd", "amsgrad"] {
            assert!(kinds.contains(&op), "{op} not benchmarked: {kinds:?}");
        }
        for row in case["shapes"].as_array().unwrap() {
            for f in ["ms", "bytes", "gb_s", "fraction_of_peak"] {
                positive(row, f);
            }
            assert!(matches!(row["bound"].as_str(), Some("memory" | "compute")));
        }
    }
    for row in r["train"]["results"].as_array().unwrap() {
        for f in ["seq_per_s", "ms_per_step", "model_gflop_per_seq", "mfu", "input_fraction"] {
            positive(row, f);
        }
        assert!(row["input_fraction"].as_f64().unwrap() < 1.0);
    }
    let ar = &r["allreduce"];
    assert_eq!(ar["ranks"], 1);
    let rows = ar["results"].as_array().unwrap();
    assert_eq!(rows.first().unwrap()["bytes"], 1024);
    for row in rows {
        positive(row, "time_us");
        positive(row, "algbw_gb_s");
        assert_eq!(row["busbw_gb_s"].as_f64(), Some(0.0), "one rank moves nothing");
    }
}

#[test]
fn one_suite_alone_and_bad_suite() {
    let dir = tempfile::tempdir().unwrap();
    let out = mfd(&["bench", "peak", "--quick"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = read_json(&dir.path().join("peak.json"));
    assert!(j["results"].as_object().unwrap().keys().eq(["peak"]));
    assert!(dir.path().join("peak.md").exists());
    let out = mfd(&["bench", "nonsense"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected all, peak"));
    // No GPU build or device: --backend cuda names why instead of falling back silently.
    if !mfd::backend::cuda::gpu_available() {
        let out = mfd(&["bench", "peak", "--quick", "--backend", "cuda"], dir.path());
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("needs a GPU"));
    }
}

#[cfg(feature = "mpi")]
#[test]
fn allreduce_under_mpirun_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_mfd"))
        .args(["bench", "allreduce", "--quick", "--work"])
        .arg(dir.path())
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("mpirun starts (is Open MPI installed?)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = read_json(&dir.path().join("allreduce.json"));
    all_finite(&j, "");
    let ar = &j["results"]["allreduce"];
    assert_eq!(ar["ranks"], 2);
    assert_eq!(ar["comm"], "mpi");
    for row in ar["results"].as_array().unwrap() {
        positive(row, "busbw_gb_s");
        let (alg, bus) = (row["algbw_gb_s"].as_f64().unwrap(), row["busbw_gb_s"].as_f64().unwrap());
        assert!((bus - alg).abs() <= 1e-9 * alg.max(1.0), "n = 2: busbw = algbw");
    }
}
