//! The embedded default (configs/default.toml), trained ONCE per CI run and shared by tests/e2e_default.rs (the
//! end-to-end assertions on its evaluation) and tests/downstream.rs (the synthetic-truth checks on its checkpoint).
//! Training it takes about 10 min on 2 cores in release and longer in the test profile, so training it once per
//! test binary doubled the CI time.
//!
//! `trained()` runs the real binary, `mfd train` with the embedded default and these overrides:
//! `data.dataset=<root>/data/dataset` (synthesized there on first use), `train.out=<root>/run`,
//! `train.max_seconds=0` (the run stops by its epoch count, so it does not depend on the machine's speed) and,
//! with `MFD_E2E_EPOCHS=N` in the environment, `train.epochs=N`. `<root>` is `mfd-default-run/` in cargo's
//! per-target temp dir (`CARGO_TARGET_TMPDIR`, i.e. `<target dir>/tmp/`). The binary's stderr goes to
//! `<root>/train.log`.
//!
//! Reuse: the run is reused only when its completion marker `<root>/done` (written after `mfd train` succeeded)
//! names the same key and the run's outputs are there; the key is the SHA-256 of the `mfd` binary's bytes and of
//! the overrides. The binary embeds configs/default.toml, the metadata mapping and the
//! synthetic data generator, so any change of the source that changes what is trained (or how) changes the key,
//! and a run trained by an older binary is never reused silently: it is deleted and retrained. A content hash
//! rather than the binary's mtime because cargo relinks the binary after any change of src/, and a relink that
//! gives the same bytes trains the same model (test-only changes never retrain). In CI (a fresh clone, an empty
//! target dir) the first test binary that asks trains and the other reuses the run. `MFD_E2E_EPOCHS` is part of
//! the key, so a reduced-budget run is never taken for the full one or the other way round.
//!
//! Concurrency: an exclusive lock on `<root>/lock` (std `File::lock`) is taken before the marker is checked and
//! held until the process exits, so test binaries run at the same time (e.g. under cargo-nextest, one process per
//! test) wait for the one that trains and then reuse its run, and no process deletes a run another one reads.
//! Within a process, a `OnceLock` makes the tests that run in parallel share one call.
//!
//! `MFD_CHECKPOINT` is not read here: tests/downstream.rs checks the synthetic truth on that checkpoint instead of
//! calling `trained()`; tests/e2e_default.rs always uses this run.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// The directory holding the shared run's data, run directory, log, lock and completion marker.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("mfd-default-run")
}

/// The `mfd train` overrides of the shared run (see the module docs).
pub fn overrides(root: &Path) -> Vec<String> {
    let s = |p: PathBuf| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
    let mut o = vec![
        format!("data.dataset={}", s(root.join("data/dataset"))),
        format!("train.out={}", s(root.join("run"))),
        "train.max_seconds=0".to_string(),
    ];
    if let Ok(e) = std::env::var("MFD_E2E_EPOCHS") {
        o.push(format!("train.epochs={e}"));
    }
    o
}

/// The run directory of the embedded default, trained by this call or reused (see the module docs). It holds
/// `eval_test.json`, `disentanglement.json`, `report.html` and `checkpoints/` as `mfd train` writes them.
pub fn trained() -> PathBuf {
    // (run dir, the lock file, held for the life of the process), or why training failed: kept, so that the other
    // tests of the process fail at once instead of training again.
    static RUN: OnceLock<Result<(PathBuf, File), String>> = OnceLock::new();
    match RUN.get_or_init(train_or_reuse) {
        Ok((run, _)) => run.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn train_or_reuse() -> Result<(PathBuf, File), String> {
    let root = root();
    std::fs::create_dir_all(&root).unwrap();
    let lock = File::create(root.join("lock")).unwrap();
    if lock.try_lock().is_err() {
        eprintln!("[default run] waiting for another process that holds {}", root.join("lock").display());
        lock.lock().unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_mfd");
    let overrides = overrides(&root);
    let key = run_key(Path::new(bin), &overrides);
    let (marker, run) = (root.join("done"), root.join("run"));
    let done = std::fs::read_to_string(&marker).ok();
    let complete = ["eval_test.json", "disentanglement.json", "report.html", "checkpoints/last.safetensors"]
        .iter()
        .all(|f| run.join(f).exists());
    if complete && done.as_deref().and_then(|d| d.lines().next()) == Some(key.as_str()) {
        eprintln!(
            "[default run] reusing {} (key {key}: {})",
            run.display(),
            done.as_deref().unwrap().lines().nth(1).unwrap_or("")
        );
        return Ok((run, lock));
    }
    match done.as_deref().and_then(|d| d.lines().next()) {
        Some(old) => eprintln!("[default run] the run in {} has key {old}, not {key}: retraining", root.display()),
        None => eprintln!("[default run] no finished run in {}: training (key {key})", root.display()),
    }
    // A stale or unfinished run: start from nothing (the dataset too, since the generator may have changed).
    let _ = std::fs::remove_file(&marker);
    for d in ["data", "run"] {
        let p = root.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    let log_path = root.join("train.log");
    let log = File::create(&log_path).unwrap();
    let t0 = Instant::now();
    let status = Command::new(bin)
        .arg("train")
        .args(overrides.iter().flat_map(|o| ["--set", o.as_str()]))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    if !status.success() {
        return Err(format!("mfd train {overrides:?} failed after {secs:.0} s ({}):\n{tail}", log_path.display()));
    }
    let info = format!("trained in {secs:.0} s by {bin} with {overrides:?}");
    eprintln!("[default run] {info}");
    std::fs::write(&marker, format!("{key}\n{info}\n")).unwrap();
    Ok((run, lock))
}

/// SHA-256 (hex) of the binary's bytes and the overrides.
fn run_key(bin: &Path, overrides: &[String]) -> String {
    let mut h = Sha256::new();
    let mut f = File::open(bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    for o in overrides {
        h.update(b"\n");
        h.update(o.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
