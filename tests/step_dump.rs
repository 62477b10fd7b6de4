//! `mfd step-dump` checks. A tiny model (C = 16, T = 128) is trained 3 steps on the synthetic `tiny` dataset
//! once per test process (kept under CARGO_TARGET_TMPDIR, so reruns reuse it), then:
//! - the dump equals a direct call of the model (bit for bit) and its tokens equal the training pipeline's;
//! - a few gradient entries agree with central finite differences of the model loss;
//! - eval mode uses running statistics (rows independent of the batch, no gradients), train mode batch statistics;
//! - bad batches are errors naming the tensor; the CLI writes a batch and a dump;
//! - cross-check: bench/torch_reference.py (an independent PyTorch implementation) agrees within its tolerances,
//!   when a Python with torch is found (MFD_TORCH_PYTHON, else /work/venv-torch/bin/python); otherwise it prints
//!   why it skips.

use mfd::backend::cpu::CpuBackend;
use mfd::backend::{Backend, NoReduce};
use mfd::config::Config;
use mfd::data::dataset::Dataset;
use mfd::data::sampler::BatchPlan;
use mfd::data::window::encode_batch;
use mfd::model::params::Group;
use mfd::train::checkpoint;
use mfd::train::step_dump::{
    bases_to_tokens, batch_from_dataset, load_model, pack_labels, pick_tiles, read_batch, step_dump, write_batch,
    write_dump, Batch, Mode,
};
use mfd::train::trainer::{run, Resume, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Setup {
    ckpt: PathBuf,
    dataset: PathBuf,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("step_dump");
        let dataset = root.join("data/dataset");
        let ckpt = root.join("run/checkpoints/last.safetensors");
        if !ckpt.exists() {
            let q = |p: &Path| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
            let cfg = Config::load(
                None,
                &[
                    format!("data.dataset={}", q(&dataset)),
                    "model.c=16".into(),
                    "model.seq_len=128".into(),
                    "model.crop=0".into(),
                    "adversary.hidden=16".into(),
                    "adversary.layers=2".into(),
                    "train.batch_size=16".into(),
                    "train.max_seconds=0".into(),
                    "train.max_steps=3".into(),
                    format!("train.out={}", q(&root.join("run"))),
                ],
            )
            .unwrap();
            run(&cfg, &TrainOptions { resume: Resume::No, skip_final_eval: true, overwrite: false }).unwrap();
        }
        Setup { ckpt, dataset }
    })
}

fn batch(s: &Setup, n: usize, seed: u64) -> (Batch, Vec<u64>) {
    let ds = Dataset::open(&s.dataset).unwrap();
    let idx = pick_tiles(&ds, "train", n, seed).unwrap();
    (batch_from_dataset(&ds, &idx, 128).unwrap(), idx)
}

#[test]
fn dump_equals_a_direct_model_call_and_the_training_tokens() {
    let s = setup();
    let (b, idx) = batch(s, 8, 1);
    let ds = Dataset::open(&s.dataset).unwrap();
    let plan = BatchPlan { indices: idx.clone(), shift: 0, rc: false };
    let tokens = bases_to_tokens(&b.bases, b.b, b.t, Path::new("batch")).unwrap();
    assert_eq!(tokens, encode_batch(&ds, &plan, 128).unwrap(), "batch tokens differ from the training pipeline's");

    let mut ld = load_model(&s.ckpt, None).unwrap();
    let d = step_dump(&mut ld, &b, Mode::Train, Path::new("batch")).unwrap();

    // The same step by hand on a freshly loaded model.
    let be = CpuBackend;
    let mut direct = load_model(&s.ckpt, None).unwrap();
    let m = &mut direct.model;
    m.reuse_adversary_backward = false; // the dump runs the reference's literal schedule
    m.params.zero_grads(&be, Group::Model).unwrap();
    m.params.zero_grads(&be, Group::Adversary).unwrap();
    let bits = pack_labels(&b.labels, b.b, b.o, Path::new("batch")).unwrap();
    let (t, l) = (be.upload_bytes(&tokens).unwrap(), be.upload_bytes(&bits).unwrap());
    let cfg = &direct.cfg;
    let terms = m
        .model_loss_backward(&be, &t, &l, b.b, cfg.loss.lambda_indep as f32, cfg.loss.cov_and_adv, &mut NoReduce)
        .unwrap();
    assert_eq!(d.get("loss.total").unwrap(), &[terms.loss]);
    assert_eq!(d.get("loss.bce").unwrap(), &[terms.bce]);
    assert_eq!(d.get("features").unwrap(), be.to_host(m.trunk.features()).unwrap().as_slice());
    let grads = m.params.grads_to_host(&be).unwrap();
    let mut n = 0;
    for (spec, g) in m.params.table.specs.iter().zip(&grads) {
        if spec.group == Group::Buffer {
            assert!(d.get(&format!("grad.{}", spec.name)).is_none(), "buffer {} has a gradient", spec.name);
            continue;
        }
        assert_eq!(d.get(&format!("grad.{}", spec.name)).unwrap(), g.as_slice(), "grad.{}", spec.name);
        assert!(d.get(&format!("step.{}", spec.name)).is_some());
        n += 1;
    }
    assert!(n > 60, "only {n} parameters");
    // Adversary gradients of the adversary loss exist, and logits = logit_tech + logit_bio + bias.
    assert!(d.names().iter().any(|x| x.starts_with("adv_grad.adversary.bio_from_tech.")));
    let (lt, lb, lg) = (d.get("logit_tech").unwrap(), d.get("logit_bio").unwrap(), d.get("logits").unwrap());
    let bias = &direct.ck.values[m.params.index("head.bias").unwrap()];
    let p = d.get("probs").unwrap();
    for i in 0..lg.len() {
        assert_eq!(lg[i], lt[i] + lb[i] + bias[i % b.o]);
        assert!((p[i] - 1.0 / (1.0 + (-lg[i]).exp())).abs() < 1e-6);
    }
}

#[test]
fn gradient_entries_match_finite_differences() {
    let s = setup();
    let (b, _) = batch(s, 8, 2);
    let mut ld = load_model(&s.ckpt, None).unwrap();
    let d = step_dump(&mut ld, &b, Mode::Train, Path::new("batch")).unwrap();
    let be = CpuBackend;
    let mut ld = load_model(&s.ckpt, None).unwrap();
    let tokens = be.upload_bytes(&bases_to_tokens(&b.bases, b.b, b.t, Path::new("b")).unwrap()).unwrap();
    let labels = be.upload_bytes(&pack_labels(&b.labels, b.b, b.o, Path::new("b")).unwrap()).unwrap();
    let (lambda, use_corr) = (ld.cfg.loss.lambda_indep as f32, ld.cfg.loss.cov_and_adv);
    let loss = |ld: &mut mfd::train::step_dump::Loaded| -> f64 {
        ld.model.model_loss_backward(&be, &tokens, &labels, b.b, lambda, use_corr, &mut NoReduce).unwrap().loss as f64
    };
    // (tensor, entry): the output bias, a hypernetwork weight, the feature BatchNorm scale, a trunk conv weight.
    let entries = [
        ("head.bias", 3),
        ("hyper.bio.interact.4.weight", 5),
        ("trunk.features_bn.weight", 2),
        ("trunk.pointwise.conv.weight", 7),
    ];
    for (name, k) in entries {
        let i = ld.model.params.index(name).unwrap();
        let base = be.to_host(&ld.model.params.values[i]).unwrap();
        let analytic = d.get(&format!("grad.{name}")).unwrap()[k] as f64;
        let mut fds = Vec::new();
        for eps in [1e-2f32, 1e-3] {
            let mut v = base.clone();
            v[k] = base[k] + eps;
            be.write(&mut ld.model.params.values[i], &v).unwrap();
            let lp = loss(&mut ld);
            v[k] = base[k] - eps;
            be.write(&mut ld.model.params.values[i], &v).unwrap();
            let lm = loss(&mut ld);
            fds.push((lp - lm) / (2.0 * eps as f64));
        }
        be.write(&mut ld.model.params.values[i], &base).unwrap();
        let ok = fds.iter().any(|fd| (fd - analytic).abs() <= 2e-4 + 3e-2 * fd.abs().max(analytic.abs()));
        assert!(ok, "{name}[{k}]: finite differences {fds:?}, dump {analytic}");
    }
}

#[test]
fn eval_mode_uses_running_statistics_and_train_mode_batch_statistics() {
    let s = setup();
    let (b8, _) = batch(s, 8, 3);
    let b4 = Batch { b: 4, bases: b8.bases[..4 * 129].to_vec(), labels: b8.labels[..4 * b8.o].to_vec(), ..b8.clone() };
    let dump = |b: &Batch, mode| step_dump(&mut load_model(&s.ckpt, None).unwrap(), b, mode, Path::new("b")).unwrap();
    let (e8, e4, t8, t4) =
        (dump(&b8, Mode::Eval), dump(&b4, Mode::Eval), dump(&b8, Mode::Train), dump(&b4, Mode::Train));
    let c2 = 32;
    // Eval: a row's features do not depend on the rest of the batch; train: they do (batch statistics).
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + x.abs()));
    assert!(close(&e8.get("features").unwrap()[..4 * c2], e4.get("features").unwrap()));
    assert!(!close(&t8.get("features").unwrap()[..4 * c2], t4.get("features").unwrap()));
    assert!(!close(e8.get("features").unwrap(), t8.get("features").unwrap()));
    // W depends on the metadata only.
    assert_eq!(e8.get("w_bio").unwrap(), t8.get("w_bio").unwrap());
    // Train: features_bn output columns have batch mean = its bias (beta).
    let f = t8.get("features").unwrap();
    let ld = load_model(&s.ckpt, None).unwrap();
    let beta = &ld.ck.values[ld.model.params.index("trunk.features_bn.bias").unwrap()];
    for j in 0..c2 {
        let mean = (0..8).map(|r| f[r * c2 + j] as f64).sum::<f64>() / 8.0;
        assert!((mean - beta[j] as f64).abs() < 1e-4, "column {j}: mean {mean} beta {}", beta[j]);
    }
    assert!(e8.names().iter().all(|n| !n.starts_with("grad.") && !n.starts_with("step.")));
    assert!(e8.get("loss.bce").is_some() && e8.get("loss.total").is_none());
}

#[test]
fn files_round_trip_and_bad_batches_name_the_tensor() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = batch(s, 4, 4);
    let p = dir.path().join("batch.safetensors");
    write_batch(&p, &b).unwrap();
    assert_eq!(read_batch(&p, 128, b.o).unwrap(), b);
    let e = read_batch(&p, 127, b.o).unwrap_err().to_string();
    assert!(e.contains("bases"), "{e}");
    let mut bad = b.clone();
    bad.bases[5] = b'R';
    let e = bases_to_tokens(&bad.bases, bad.b, bad.t, &p).unwrap_err().to_string();
    assert!(e.contains("bases") && e.contains("position 5"), "{e}");
    let mut bad = b.clone();
    bad.labels[1] = 2;
    let e = pack_labels(&bad.labels, bad.b, bad.o, &p).unwrap_err().to_string();
    assert!(e.contains("labels"), "{e}");
    let one = Batch { b: 1, bases: b.bases[..129].to_vec(), labels: b.labels[..b.o].to_vec(), ..b.clone() };
    let e = step_dump(&mut load_model(&s.ckpt, None).unwrap(), &one, Mode::Train, &p).err().unwrap().to_string();
    assert!(e.contains("B >= 2"), "{e}");
    // A dump round-trips through safetensors with its metadata.
    let d = step_dump(&mut load_model(&s.ckpt, None).unwrap(), &b, Mode::Eval, &p).unwrap();
    let out = dir.path().join("dump.safetensors");
    write_dump(&out, &d).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("tokens").unwrap().shape(), &[4, 128]);
    assert_eq!(st.tensor("loss.bce").unwrap().shape(), &[] as &[usize]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["mode"], "eval");
}

fn mfd(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mfd")).args(args).output().unwrap();
    assert!(out.status.success(), "mfd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A Python that imports torch and safetensors, or the reason there is none.
fn torch_python() -> Result<PathBuf, String> {
    let py = std::env::var_os("MFD_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv-torch/bin/python"));
    match Command::new(&py).args(["-c", "import torch, safetensors, numpy"]).output() {
        Ok(o) if o.status.success() => Ok(py),
        Ok(o) => Err(format!("{} cannot import torch: {}", py.display(), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{}: {e} (set MFD_TORCH_PYTHON to a Python with torch)", py.display())),
    }
}

#[test]
fn torch_reference_agrees() {
    let py = match torch_python() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIP torch cross-check: {why}");
            return;
        }
    };
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torch_reference.py");
    // Variants of the same parameters: the trained config, and the reference's shared predictor without the
    // ||R||_F term at a larger lambda (the config lives in the checkpoint header).
    let ck = checkpoint::load(&s.ckpt, &load_model(&s.ckpt, None).unwrap().model.params.table).unwrap();
    let table = load_model(&s.ckpt, None).unwrap().model.params.table;
    let shared = dir.path().join("shared.safetensors");
    let cfg = ck.config_toml.replace("shared_predictor = false", "shared_predictor = true");
    let cfg = cfg.replace("cov_and_adv = true", "cov_and_adv = false");
    // Whatever lambda the default config has, the variant uses 0.5.
    let cfg: String = cfg
        .lines()
        .map(|l| if l.starts_with("lambda_indep") { "lambda_indep = 0.5" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cfg.contains("shared_predictor = true") && cfg.contains("lambda_indep = 0.5"), "{cfg}");
    checkpoint::save(
        &shared,
        &table,
        &checkpoint::Checkpoint { config_toml: cfg, model_opt: None, adv_opt: None, ..ck },
    )
    .unwrap();
    let batch = dir.path().join("batch.safetensors");
    let (ck_s, b_s) = (s.ckpt.to_string_lossy().into_owned(), batch.to_string_lossy().into_owned());
    mfd(&["step-dump", "--make-batch", "--checkpoint", &ck_s, "--n", "12", "--seed", "5", "--out", &b_s]);
    for (ckpt, mode) in [(s.ckpt.clone(), "train"), (s.ckpt.clone(), "eval"), (shared.clone(), "train")] {
        let dump = dir.path().join(format!("dump-{mode}.safetensors"));
        let ckpt = ckpt.to_string_lossy().into_owned();
        let d = dump.to_string_lossy().into_owned();
        mfd(&["step-dump", "--checkpoint", &ckpt, "--batch", &b_s, "--out", &d, "--mode", mode]);
        let out = Command::new(&py)
            .arg(&script)
            .args(["check", "--checkpoint", &ckpt, "--batch", &b_s, "--dump", &d])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        println!("torch check {ckpt} ({mode}):\n{text}");
        assert!(out.status.success(), "torch reference disagrees ({mode}, {ckpt}):\n{text}");
        assert!(text.contains("0 above tolerance"), "{text}");
    }
}
