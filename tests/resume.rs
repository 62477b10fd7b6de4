//! `--resume` reaches the same parameters as an uninterrupted run: a tiny model on the synthetic `tiny` dataset is
//! trained 6 steps in one go, and 3 + 3 steps with a resume in between; every tensor (parameters, BatchNorm
//! statistics) and the optimiser step counts must match exactly (the CPU kernels are deterministic and the sample
//! order is a pure function of (seed, epoch)).

use mfd::config::Config;
use mfd::train::trainer::{run, Resume, TrainOptions};
use safetensors::SafeTensors;
use std::path::Path;

fn cfg(root: &Path, out: &str, max_steps: usize) -> Config {
    let ds = root.join("data/dataset");
    Config::load(
        None,
        &[
            format!("data.dataset={}", toml::Value::String(ds.to_string_lossy().into_owned())),
            "model.c=16".into(),
            "model.seq_len=128".into(),
            "model.crop=0".into(),
            "adversary.hidden=16".into(),
            "adversary.layers=2".into(),
            "train.batch_size=16".into(),
            "train.epochs=3".into(),
            "train.max_seconds=0".into(),
            "train.hyper_lr_scale=0.1".into(),
            format!("train.max_steps={max_steps}"),
            format!("train.out={}", toml::Value::String(root.join(out).to_string_lossy().into_owned())),
        ],
    )
    .unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = TrainOptions { resume: Resume::No, skip_final_eval: true, overwrite: false };
    run(&cfg(root, "full", 6), &opts).unwrap();
    run(&cfg(root, "split", 3), &opts).unwrap();
    run(&cfg(root, "split", 6), &TrainOptions { resume: Resume::Yes, skip_final_eval: true, overwrite: false })
        .unwrap();

    // Compare every tensor of the two last checkpoints byte for byte, and of their optimiser state.
    for file in ["last.safetensors", "last.optim.safetensors"] {
        let a = std::fs::read(root.join("full/checkpoints").join(file)).unwrap();
        let b = std::fs::read(root.join("split/checkpoints").join(file)).unwrap();
        let (sa, sb) = (SafeTensors::deserialize(&a).unwrap(), SafeTensors::deserialize(&b).unwrap());
        let mut names = sa.names();
        names.sort();
        assert!(names.len() > 50, "{file}: {} tensors", names.len());
        for n in names {
            assert_eq!(
                sa.tensor(n).unwrap().data(),
                sb.tensor(n).unwrap().data(),
                "{file}: tensor {n} differs after resume"
            );
        }
    }
    let meta = |out: &str| {
        let bytes = std::fs::read(root.join(out).join("checkpoints/last.safetensors")).unwrap();
        let (_, m) = SafeTensors::read_metadata(&bytes).unwrap();
        m.metadata().clone().unwrap()["global_step"].clone()
    };
    assert_eq!(meta("full"), "6");
    assert_eq!(meta("split"), "6");
}

/// `--resume` of a run that stopped at `train.max_steps` trains nothing more: the step count, the last checkpoint
/// (byte for byte) and the logged training steps stay as they were (the loop used to train one step before
/// checking the limit).
#[test]
fn resume_at_the_step_limit_trains_no_extra_step() {
    const STEPS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut cfg = cfg(root, "run", STEPS);
    cfg.train.log_every = 1;
    let first = run(&cfg, &TrainOptions { resume: Resume::No, skip_final_eval: true, overwrite: false }).unwrap();
    assert_eq!(first.steps, STEPS as u64);
    let last = root.join("run/checkpoints/last.safetensors");
    let before = std::fs::read(&last).unwrap();
    let resumed = run(&cfg, &TrainOptions { resume: Resume::Yes, skip_final_eval: true, overwrite: false }).unwrap();
    assert_eq!(resumed.steps, STEPS as u64, "the resumed run trained past train.max_steps");
    assert!(std::fs::read(&last).unwrap() == before, "the resumed run rewrote last.safetensors");
    let metrics = std::fs::read_to_string(root.join("run/metrics.jsonl")).unwrap();
    let train_lines = metrics.lines().filter(|l| l.contains("\"kind\":\"train\"")).count();
    assert_eq!(train_lines, STEPS, "{metrics}");
}

fn train_cmd(root: &Path, out: &str, max_steps: usize) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mfd"));
    c.args(["train", "--out"]).arg(root.join(out));
    for s in [
        format!("data.dataset={}", toml::Value::String(root.join("data/dataset").to_string_lossy().into_owned())),
        "model.c=16".into(),
        "model.seq_len=128".into(),
        "model.crop=0".into(),
        "adversary.hidden=16".into(),
        "adversary.layers=2".into(),
        "train.batch_size=16".into(),
        "train.epochs=3".into(),
        "train.max_seconds=0".into(),
        "train.hyper_lr_scale=0.1".into(),
        "train.log_every=1".into(),
        format!("train.max_steps={max_steps}"),
    ] {
        c.args(["--set", &s]);
    }
    c.env_remove("MFD_CHECKPOINT_FAULT");
    c
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), st.tensor(&n).unwrap().data().to_vec())).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A checkpoint write interrupted at each of its file-system steps, by an abort or by a full disk (a write stopping
/// half way, a failing rename), or by SIGKILL from the test at two of them, leaves a loadable checkpoint, and
/// resuming from it reaches exactly the tensors and optimiser state of an uninterrupted run; no temporary file
/// survives an error.
#[test]
fn kill_or_disk_full_at_any_step_of_a_checkpoint_write_resumes_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run_ok = |c: &mut std::process::Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run_ok(&mut train_cmd(root, "full", 4));
    run_ok(&mut train_cmd(root, "base", 2));
    // Per checkpoint: best-* (write, rename, remove .prev) and last (2 writes, 3 renames, remove .prev) = 9 steps.
    let mut faults = 0;
    for kind in ["kill", "enospc"] {
        for n in 1..=10 {
            let case = format!("case-{kind}-{n}");
            copy_dir(&root.join("base"), &root.join(&case));
            let o = train_cmd(root, &case, 4)
                .arg("--resume")
                .env("MFD_CHECKPOINT_FAULT", format!("{n}:{kind}"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            if n == 10 {
                assert!(o.status.success(), "{case}: no 10th step expected: {err}");
            } else {
                assert!(!o.status.success(), "{case}: the fault did not happen");
                faults += 1;
                if kind == "enospc" {
                    assert!(err.contains("No space left on device"), "{case}: {err}");
                    let ck = root.join(&case).join("checkpoints");
                    for e in std::fs::read_dir(&ck).unwrap() {
                        let name = e.unwrap().file_name().to_string_lossy().into_owned();
                        assert!(!name.ends_with(".tmp"), "{case}: {name} left behind");
                    }
                }
            }
            resume_equals_full(root, &case);
        }
    }
    assert_eq!(faults, 18);
    // A literal kill -9 at step 2 (best-* renamed into place) and 5 (between the optimiser swap and the weights
    // rename): two more runs each.
    for n in [2, 5] {
        sigkill_at(root, n);
    }
}

/// Resume the interrupted run `case` to 4 steps: its last checkpoint and optimiser state equal those of the
/// uninterrupted run `full`, its log holds every step once; then remove it.
fn resume_equals_full(root: &Path, case: &str) {
    let o = train_cmd(root, case, 4).arg("--resume").output().unwrap();
    assert!(o.status.success(), "{case}: {}", String::from_utf8_lossy(&o.stderr));
    let (full, ck) = (root.join("full/checkpoints"), root.join(case).join("checkpoints"));
    for file in ["last.safetensors", "last.optim.safetensors"] {
        assert!(tensors(&full.join(file)) == tensors(&ck.join(file)), "{case}: {file} differs");
    }
    assert!(!ck.join("last.optim.safetensors.prev").exists(), "{case}");
    // The log reads as one run: every training step once.
    let metrics = std::fs::read_to_string(root.join(case).join("metrics.jsonl")).unwrap();
    let steps: Vec<&str> = metrics.lines().filter(|l| l.contains("\"kind\":\"train\"")).collect();
    assert_eq!(steps.len(), 4, "{case}: {metrics}");
    std::fs::remove_dir_all(root.join(case)).unwrap();
}

/// A literal kill -9 of the run stopped at step `n` of the checkpoint write (`N:stop` prints a line and sleeps
/// there), then a resume: it equals the uninterrupted run.
fn sigkill_at(root: &Path, n: usize) {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let case = format!("case-sigkill-{n}");
    copy_dir(&root.join("base"), &root.join(&case));
    let mut child = train_cmd(root, &case, 4)
        .arg("--resume")
        .env("MFD_CHECKPOINT_FAULT", format!("{n}:stop"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in err.lines() {
        let line = line.unwrap();
        let stopped = line.contains("MFD_CHECKPOINT_FAULT: stopped");
        seen.push(line);
        if stopped {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("stopped")), "{case}: never stopped: {seen:?}");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{case}: {status:?}");
    resume_equals_full(root, &case);
}

/// A mismatched optimiser file (the weights of one checkpoint, the AMSGrad state of another) is refused by id.
#[test]
fn weights_and_optimiser_state_of_different_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = TrainOptions { resume: Resume::No, skip_final_eval: true, overwrite: false };
    run(&cfg(root, "a", 2), &opts).unwrap();
    run(&cfg(root, "b", 2), &opts).unwrap();
    std::fs::copy(root.join("b/checkpoints/last.optim.safetensors"), root.join("a/checkpoints/last.optim.safetensors"))
        .unwrap();
    let e = run(&cfg(root, "a", 4), &TrainOptions { resume: Resume::Yes, ..opts.clone() }).unwrap_err().to_string();
    assert!(e.contains("last.optim.safetensors") && e.contains("[field id]"), "{e}");
}

/// `mfd train` into a non-empty run directory without `--resume` is an error that changes nothing; a config that
/// fails validation changes nothing either (even with --resume); `--overwrite` moves the old run aside first.
#[test]
fn a_run_directory_is_never_modified_by_a_refused_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let o = train_cmd(root, "run", 2).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snapshot = |p: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        for sub in ["", "checkpoints"] {
            for e in std::fs::read_dir(p.join(sub)).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    v.push((format!("{sub}/{}", e.file_name().to_string_lossy()), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    let before = snapshot(&root.join("run"));
    let o = train_cmd(root, "run", 4).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not empty") && err.contains("--resume"), "{err}");
    for bad in ["adversary.lr=-1", "train.weight_decay=-5", "model.dilation_growth=0", "model.c=4000000000"] {
        let o = train_cmd(root, "run", 4).args(["--resume", "--set", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let key = bad.split('=').next().unwrap();
        assert!(!o.status.success() && err.contains(key) && err.contains("--set"), "{bad}: {err}");
        assert!(err.lines().all(|l| l.len() < 400), "{err}");
    }
    assert!(snapshot(&root.join("run")) == before, "a refused run changed the run directory");
    let o = train_cmd(root, "run", 2).arg("--overwrite").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let aside: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("run.old-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(snapshot(&aside[0]) == before, "the moved-aside run differs from the old one");
}
