//! A checkpoint's stored dataset path (relative to where training ran) resolves when a model is loaded from another
//! directory or after the whole tree moved; a missing dataset is an error naming `--dataset`, which overrides it.

use std::path::Path;
use std::process::{Command, Output};

fn mfd(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mfd")).current_dir(cwd).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn eval_and_embed_from_elsewhere_and_after_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let proj = root.join("proj");
    std::fs::create_dir(&proj).unwrap();
    // Trained in proj/ with a relative dataset (synthesized there) and an absolute run directory.
    let out = proj.join("runs/a");
    let mut args = vec!["train", "--no-final-eval", "--out", out.to_str().unwrap()];
    let sets = [
        "data.dataset=\"data/ds\"",
        "model.c=16",
        "model.seq_len=128",
        "model.crop=0",
        "adversary.hidden=16",
        "adversary.layers=2",
        "train.batch_size=16",
        "train.max_steps=1",
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    ok(&mfd(&proj, &args));
    let seqs = root.join("seqs.fa");
    std::fs::write(&seqs, format!(">s1\n{}\n", "ACGT".repeat(40))).unwrap();
    let eval = |ckpt: &Path, extra: &[&str]| {
        let mut a = vec!["eval", "--checkpoint", ckpt.to_str().unwrap(), "--split", "val"];
        a.extend(extra);
        mfd(root, &a)
    };
    // From another directory (root/, where data/ds does not exist).
    let ev = root.join("ev");
    ok(&eval(&proj.join("runs/a/checkpoints/last.safetensors"), &["--out", ev.to_str().unwrap()]));
    assert!(ev.join("eval_val.tsv").exists());
    // The whole tree moved: eval and a downstream tool still find the dataset.
    let moved = root.join("moved");
    std::fs::rename(&proj, &moved).unwrap();
    let ck = moved.join("runs/a/checkpoints/last.safetensors");
    ok(&eval(&ck, &["--out", ev.to_str().unwrap()]));
    let emb = root.join("emb");
    ok(&mfd(
        root,
        &[
            "embed",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--fasta",
            seqs.to_str().unwrap(),
            "--out",
            emb.to_str().unwrap(),
        ],
    ));
    // The dataset itself moved away: a clear error, then --dataset.
    std::fs::rename(moved.join("data/ds"), root.join("ds-elsewhere")).unwrap();
    let o = eval(&ck, &["--out", ev.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("data.dataset") && err.contains("--dataset"), "{err}");
    ok(&eval(&ck, &["--out", ev.to_str().unwrap(), "--dataset", "ds-elsewhere"]));
}
