//! The PyTorch comparator of `mfd bench train` (issue 21): bench/torch_reference.py (our own PyTorch
//! implementation of the same model and step) run as a subprocess at the same shapes, thread count and dataset,
//! right after mfd times each case, so the two numbers of a row are measured minutes apart under the same load.
//! With `--reference-src DIR` (a checkout of the reference repository) the reference's own model and Lightning
//! training step are timed too (`torch_reference.py bench --reference-src`). No python with torch: the table
//! says "comparator: torch not found" and has the mfd numbers only.
//!
//! The script comes from the source tree (the build's or the current directory's), else from the copy built into
//! the binary, written to `<work>/comparator/`.
//!
//! The python is `--torch-python`, else `$MFD_TORCH_PYTHON`, else `python3` ("none" turns the comparator off); it
//! needs torch and numpy (and, for `--reference-src`, pytorch_lightning, torchmetrics, pandas and pyyaml).

use super::BenchArgs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A python that imports torch, and the script to run.
#[derive(Debug, Clone)]
pub struct Comparator {
    python: PathBuf,
    script: PathBuf,
    reference_src: Option<PathBuf>,
    /// torch.__version__
    pub torch: String,
}

/// One case: shapes and thread count, as mfd ran it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub c: usize,
    pub t: usize,
    pub crop: usize,
    pub b: usize,
    pub hidden: usize,
    pub steps: usize,
    pub threads: usize,
    pub cuda: bool,
}

/// One row of the comparison table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub case: String,
    /// 1-minute load average just before mfd's timing of this case.
    pub load: Option<f64>,
    pub mfd: f64,
    /// bench/torch_reference.py, sequences/s (or why not).
    pub torch: Result<f64, String>,
    /// The reference's own code (only with --reference-src).
    pub reference: Option<Result<f64, String>>,
}

/// The comparator to use, or why there is none (the reason goes into the table).
pub fn find(args: &BenchArgs) -> Result<Comparator, String> {
    if args.quick {
        return Err("skipped (--quick)".into());
    }
    let python = args
        .torch_python
        .clone()
        .or_else(|| std::env::var_os("MFD_TORCH_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    if python.as_os_str() == "none" {
        return Err("off (--torch-python none)".into());
    }
    let torch = probe(&python)?;
    let script = script(&args.work)?;
    Ok(Comparator { python, script, reference_src: args.reference_src.clone(), torch })
}

/// The script and the two configs it reads (`HERE/../configs/`), built into the binary so that an installed or
/// copied `mfd` has its comparator too.
const EMBEDDED: [(&str, &str); 3] = [
    ("bench/torch_reference.py", include_str!("../../bench/torch_reference.py")),
    ("configs/default.toml", include_str!("../../configs/default.toml")),
    ("configs/metadata_mapping.toml", include_str!("../../configs/metadata_mapping.toml")),
];

/// bench/torch_reference.py of the source tree this binary was built from, else of the current directory (so that
/// an edited script is the one timed), else the embedded copy written under `<work>/comparator/`.
fn script(work: &Path) -> Result<PathBuf, String> {
    let tree = [Path::new(env!("CARGO_MANIFEST_DIR")).join(EMBEDDED[0].0), EMBEDDED[0].0.into()];
    if let Some(p) = tree.into_iter().find(|p| p.is_file()) {
        return Ok(p);
    }
    write_embedded(&work.join("comparator"))
}

/// Writes the embedded files under `root`; returns the script's path.
fn write_embedded(root: &Path) -> Result<PathBuf, String> {
    for (rel, text) in EMBEDDED {
        let path = root.join(rel);
        let dir = path.parent().expect("a relative path with a folder");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        crate::data::binfile::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(root.join(EMBEDDED[0].0))
}

/// torch.__version__ of `python`, or "torch not found (...)".
pub fn probe(python: &Path) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import numpy, torch; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("torch not found ({}: {e})", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("torch not found ({}: {last})", python.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Comparator {
    pub fn has_reference(&self) -> bool {
        self.reference_src.is_some()
    }

    /// Sequences/s of torch_reference.py (reference = false) or of the reference's own code (true).
    pub fn run(&self, dataset: &Path, s: Shape, reference: bool) -> Result<f64, String> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).arg("bench").arg("--dataset").arg(dataset);
        for (flag, v) in [
            ("--c", s.c),
            ("--t", s.t),
            ("--crop", s.crop),
            ("--b", s.b),
            ("--hidden", s.hidden),
            ("--steps", s.steps),
            ("--threads", s.threads),
        ] {
            cmd.arg(flag).arg(v.to_string());
        }
        cmd.arg(if s.cuda { "--cuda-only" } else { "--cpu-only" });
        if reference {
            let src = self.reference_src.as_ref().ok_or("no --reference-src")?;
            cmd.arg("--reference-src").arg(src);
        }
        let out = cmd.output().map_err(|e| format!("{}: {e}", self.python.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("failed: {}", err.lines().last().unwrap_or("").trim()));
        }
        seq_per_s(&String::from_utf8_lossy(&out.stdout), if s.cuda { "cuda" } else { "cpu" })
    }
}

/// The eager result on `device` from torch_reference.py's JSON.
pub fn seq_per_s(json: &str, device: &str) -> Result<f64, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("unreadable output: {e}"))?;
    v["results"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["device"] == device && r["compiled"] != true)
        .and_then(|r| r["seq_per_s"].as_f64())
        .ok_or_else(|| format!("no {device} result in the output"))
}

/// The Markdown table: mfd, the comparator and their ratio per case; `status` is the comparator line
/// ("bench/torch_reference.py, torch 2.15.0" or "torch not found ...").
pub fn table(rows: &[Row], status: &str, with_reference: bool) -> String {
    // A failure of this row's run is spelled out; the comparator's absence is in the status line only.
    let num = |x: &Result<f64, String>| match x {
        Ok(v) => format!("{v:.1}"),
        Err(e) if e == status => "—".into(),
        Err(e) => format!("— ({e})"),
    };
    let ratio = |mfd: f64, x: &Result<f64, String>| match x {
        Ok(v) if *v > 0.0 => format!("{:.2}", mfd / v),
        _ => "—".into(),
    };
    let mut md = format!("comparator: {status}\n\n| case | load (1 min) | mfd seq/s | torch seq/s | mfd / torch |");
    let mut rule = "|---|---|---|---|---|".to_string();
    if with_reference {
        md += " reference (own code) seq/s | mfd / reference |";
        rule += "---|---|";
    }
    md += "\n";
    md += &rule;
    md += "\n";
    for r in rows {
        let load = r.load.map_or("?".into(), |l| format!("{l:.2}"));
        md += &format!("| {} | {load} | {:.1} | {} | {} |", r.case, r.mfd, num(&r.torch), ratio(r.mfd, &r.torch));
        if with_reference {
            let x = r.reference.clone().unwrap_or_else(|| Err("not run".into()));
            md += &format!(" {} | {} |", num(&x), ratio(r.mfd, &x));
        }
        md += "\n";
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded copy is the tree's, and the configs the script reads sit where it looks (`HERE/../configs`).
    #[test]
    fn embedded_comparator_is_the_trees_and_finds_its_configs() {
        let dir = tempfile::tempdir().unwrap();
        let script = write_embedded(dir.path()).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (rel, _) in EMBEDDED {
            assert_eq!(std::fs::read(dir.path().join(rel)).unwrap(), std::fs::read(repo.join(rel)).unwrap(), "{rel}");
        }
        let text = std::fs::read_to_string(&script).unwrap();
        let here = script.parent().unwrap();
        for name in ["metadata_mapping.toml", "default.toml"] {
            assert!(text.contains(&format!("\"configs\", \"{name}\"")), "the script no longer reads {name}");
            assert!(here.join("../configs").join(name).is_file(), "{name}");
        }
        // Written again over an existing copy (a reused work directory).
        assert_eq!(write_embedded(dir.path()).unwrap(), script);
    }

    fn row(torch: Result<f64, String>, reference: Option<Result<f64, String>>) -> Row {
        Row { case: "C=30".into(), load: Some(1.5), mfd: 300.0, torch, reference }
    }

    #[test]
    fn table_with_comparator_and_reference() {
        let md = table(&[row(Ok(250.0), Some(Ok(320.0)))], "bench/torch_reference.py, torch 2.15.0", true);
        assert!(md.starts_with("comparator: bench/torch_reference.py, torch 2.15.0\n"), "{md}");
        assert!(md.contains("| reference (own code) seq/s | mfd / reference |"), "{md}");
        assert!(md.contains("| C=30 | 1.50 | 300.0 | 250.0 | 1.20 | 320.0 | 0.94 |"), "{md}");
    }

    #[test]
    fn table_without_torch_has_the_mfd_numbers_only() {
        let why = "torch not found (python3: No module named 'torch')";
        let md = table(&[row(Err(why.into()), None)], why, false);
        assert!(md.starts_with("comparator: torch not found"), "{md}");
        assert!(md.contains("| C=30 | 1.50 | 300.0 | — | — |"), "{md}");
        assert!(!md.contains("reference (own code)"), "{md}");
        let md = table(&[row(Err("failed: MemoryError".into()), None)], "bench/torch_reference.py", false);
        assert!(md.contains("| C=30 | 1.50 | 300.0 | — (failed: MemoryError) | — |"), "{md}");
    }

    #[test]
    fn a_python_that_does_not_exist_means_torch_not_found() {
        let e = probe(Path::new("/nonexistent/python3")).unwrap_err();
        assert!(e.starts_with("torch not found (/nonexistent/python3:"), "{e}");
    }

    #[test]
    fn quick_skips_the_comparator() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            b: BenchArgs,
        }
        let args = Cli::parse_from(["mfd", "train", "--quick"]).b;
        assert_eq!(find(&args).unwrap_err(), "skipped (--quick)");
    }

    #[test]
    fn torch_python_none_turns_the_comparator_off() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            b: BenchArgs,
        }
        let args = Cli::parse_from(["mfd", "train", "--torch-python", "none"]).b;
        assert_eq!(find(&args).unwrap_err(), "off (--torch-python none)");
    }

    #[test]
    fn reads_the_eager_result_of_the_device() {
        let json = r#"{"results": [{"device": "cpu", "compiled": true, "seq_per_s": 1.0},
            {"device": "cpu", "compiled": false, "seq_per_s": 2.5}, {"device": "cuda", "compiled": false, "seq_per_s": 9.0}]}"#;
        assert_eq!(seq_per_s(json, "cpu"), Ok(2.5));
        assert_eq!(seq_per_s(json, "cuda"), Ok(9.0));
        assert!(seq_per_s("{}", "cpu").is_err());
        assert!(seq_per_s("not json", "cpu").unwrap_err().starts_with("unreadable"));
    }
}
