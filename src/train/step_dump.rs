//! `mfd step-dump`: one forward and backward of the model loss on a given batch, written as safetensors so that an
//! independent implementation (bench/torch_reference.py) can check ours tensor by tensor.
//!
//! Input batch (safetensors): `bases` u8 (B, T+1) ASCII A/C/G/T/N (lower case accepted) and `labels` u8 (B, O)
//! 0/1. `--make-batch` writes such a file from a prepared dataset (forward strand, no shift). The dump holds the
//! tokens, features, output weights W, logits, probabilities, loss terms and, in train mode, `grad.<param>` for
//! every trainable parameter, `adv_grad.<param>` of the adversary loss and `step.<param>` after one AMSGrad
//! update of each optimiser (names in docs/FORMATS.md, "Step dump").
//!
//! Key decision: the batch carries bases, not tokens, so the checker also re-implements tokenisation; augmentation
//! (shift, reverse complement) is the caller's business: the dump is of exactly the bases given. Train mode uses
//! BatchNorm batch statistics (a training step; running statistics are updated in memory but not written); eval
//! mode uses the checkpoint's running statistics and, having no backward in eval mode, writes no gradients.

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, NoReduce};
use crate::config::Config;
use crate::data::binfile::write_atomic;
use crate::data::dataset::{get_bit, set_bit, Dataset};
use crate::data::manifest::{label_row_bytes, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL};
use crate::data::window::{token, window_start, N_CODE};
use crate::error::{IoContext, MfdError, Result};
use crate::model::mfd::Mfd;
use crate::model::params::Group;
use crate::rng::Rng;
use crate::train::checkpoint::Checkpoint;
use crate::train::optim::optimisers;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Format tag in the dump's header metadata.
pub const DUMP_FORMAT: &str = "mfd-step-dump-1";

#[derive(Debug, Clone, clap::Args)]
pub struct StepDumpArgs {
    /// Checkpoint (.safetensors) written by `mfd train`; its stored config defines the model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Batch (.safetensors with `bases` u8 (B, T+1) and `labels` u8 (B, O)).
    #[arg(long, required_unless_present = "make_batch")]
    pub batch: Option<PathBuf>,
    /// Output file: the dump, or with --make-batch the batch.
    #[arg(long)]
    pub out: PathBuf,
    /// train (BatchNorm batch statistics, gradients) or eval (running statistics, forward only).
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// Prepared dataset directory (defaults to the one in the checkpoint's config).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Write a batch of --n tiles of --split drawn with --seed from the dataset instead of a dump.
    #[arg(long)]
    pub make_batch: bool,
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    #[arg(long, default_value = "train")]
    pub split: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// train or eval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "train" => Ok(Mode::Train),
            "eval" => Ok(Mode::Eval),
            other => Err(MfdError::config("--mode", format!("'{other}': expected train or eval"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Eval => "eval",
        }
    }
}

/// A batch as the user gives it: bases (B, T+1) ASCII and labels (B, O) 0/1.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub b: usize,
    pub t: usize,
    pub o: usize,
    pub bases: Vec<u8>,
    pub labels: Vec<u8>,
}

/// One tensor of a dump.
#[derive(Debug, Clone, PartialEq)]
pub enum DumpData {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DumpTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: DumpData,
}

/// Everything `step_dump` produced, in write order, plus the header metadata.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub tensors: Vec<DumpTensor>,
    pub meta: BTreeMap<String, String>,
}

impl Dump {
    fn push(&mut self, name: impl Into<String>, shape: &[usize], data: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        self.tensors.push(DumpTensor { name: name.into(), shape: shape.to_vec(), data: DumpData::F32(data) });
    }

    /// The f32 values of tensor `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors.iter().find(|t| t.name == name).and_then(|t| match &t.data {
            DumpData::F32(v) => Some(v.as_slice()),
            DumpData::U8(_) => None,
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.tensors.iter().map(|t| t.name.as_str()).collect()
    }
}

/// A checkpoint loaded into a CPU model, with the config it was trained with.
pub struct Loaded {
    pub cfg: Config,
    pub model: Mfd<CpuBackend>,
    pub ck: Checkpoint,
    pub dataset: PathBuf,
}

/// Base code of an ASCII letter of a batch (A,C,G,T = 0..3, N = 4), None for anything else.
fn base_code(c: u8) -> Option<u8> {
    match c {
        b'A' | b'a' => Some(0),
        b'C' | b'c' => Some(1),
        b'G' | b'g' => Some(2),
        b'T' | b't' => Some(3),
        b'N' | b'n' => Some(N_CODE),
        _ => None,
    }
}

/// Tokens (B, T) of bases (B, T+1): token i covers bases (i, i+1), N-containing pairs are the N token.
pub fn bases_to_tokens(bases: &[u8], b: usize, t: usize, source: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b * t);
    for (row, w) in bases.chunks_exact(t + 1).enumerate().take(b) {
        let mut codes = Vec::with_capacity(t + 1);
        for (i, &c) in w.iter().enumerate() {
            codes.push(base_code(c).ok_or_else(|| {
                MfdError::input(
                    source,
                    None,
                    Some("bases"),
                    format!("byte {c:#04x} at row {row}, position {i}: expected A, C, G, T or N"),
                )
            })?);
        }
        out.extend(codes.windows(2).map(|p| token(p[0], p[1])));
    }
    Ok(out)
}

/// Bit-packed label rows (B, label_row_bytes(O)) of 0/1 labels (B, O).
pub fn pack_labels(labels: &[u8], b: usize, o: usize, source: &Path) -> Result<Vec<u8>> {
    let rb = label_row_bytes(o);
    let mut out = vec![0u8; b * rb];
    for (i, row) in labels.chunks_exact(o.max(1)).enumerate().take(b) {
        for (k, &v) in row.iter().enumerate() {
            match v {
                0 => {}
                1 => set_bit(&mut out[i * rb..(i + 1) * rb], k),
                _ => {
                    return Err(MfdError::input(
                        source,
                        None,
                        Some("labels"),
                        format!("value {v} at row {i}, class {k}: expected 0 or 1"),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Bases (T+1 ASCII, shift 0, forward strand) and 0/1 labels of the dataset tiles `indices`.
pub fn batch_from_dataset(ds: &Dataset, indices: &[u64], t: usize) -> Result<Batch> {
    let o = ds.num_classes();
    let mut bases = Vec::with_capacity(indices.len() * (t + 1));
    let mut labels = Vec::with_capacity(indices.len() * o);
    for &g in indices {
        if g >= ds.num_tiles() {
            return Err(MfdError::other(format!("tile index {g} out of range ({} tiles)", ds.num_tiles())));
        }
        let rec = ds.tile(g);
        let contig = ds.contig_codes(rec.contig as usize);
        let start = window_start(rec.start as u64, ds.tile_size(), 0, t);
        for p in start..start + t as i64 + 1 {
            let code = if p >= 0 && (p as usize) < contig.len() { contig[p as usize] } else { N_CODE };
            bases.push(b"ACGTN"[code.min(N_CODE) as usize]);
        }
        let row = ds.label_row(g);
        labels.extend((0..o).map(|k| get_bit(row, k) as u8));
    }
    Ok(Batch { b: indices.len(), t, o, bases, labels })
}

fn st_err(path: &Path, e: impl std::fmt::Display) -> MfdError {
    MfdError::input(path, None, None, format!("safetensors: {e}"))
}

pub fn write_batch(path: &Path, batch: &Batch) -> Result<()> {
    let views = vec![
        ("bases", TensorView::new(Dtype::U8, vec![batch.b, batch.t + 1], &batch.bases).map_err(|e| st_err(path, e))?),
        ("labels", TensorView::new(Dtype::U8, vec![batch.b, batch.o], &batch.labels).map_err(|e| st_err(path, e))?),
    ];
    let meta = HashMap::from([("format".to_string(), "mfd-step-batch-1".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Read a batch for a model with T tokens and O classes; shapes and values are checked.
pub fn read_batch(path: &Path, t: usize, o: usize) -> Result<Batch> {
    let bytes = std::fs::read(path).at(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let get = |name: &str, cols: usize| -> Result<(usize, Vec<u8>)> {
        let v = st.tensor(name).map_err(|_| MfdError::input(path, None, Some(name), "tensor missing"))?;
        let shape = v.shape();
        if v.dtype() != Dtype::U8 || shape.len() != 2 || shape[1] != cols {
            return Err(MfdError::input(
                path,
                None,
                Some(name),
                format!("{:?} {shape:?}, expected U8 (B, {cols})", v.dtype()),
            ));
        }
        Ok((shape[0], v.data().to_vec()))
    };
    let (b, bases) = get("bases", t + 1)?;
    let (bl, labels) = get("labels", o)?;
    if bl != b || b == 0 {
        return Err(MfdError::input(path, None, Some("labels"), format!("{bl} rows for {b} rows of bases (B > 0)")));
    }
    Ok(Batch { b, t, o, bases, labels })
}

/// Load a checkpoint's config and values into a CPU model (metadata from `dataset` or the config's dataset).
pub fn load_model(ckpt: &Path, dataset: Option<&Path>) -> Result<Loaded> {
    let cfg = crate::train::load_model::checkpoint_config(ckpt, dataset)?;
    let ds = Dataset::open(&cfg.data.dataset)?;
    let (model, ck) = crate::train::load_model::load_cpu_model_with_optim(&cfg, &ds, ckpt)?;
    Ok(Loaded { dataset: cfg.data.dataset.clone(), cfg, model, ck })
}

/// Run one step of `mode` on `batch` and collect the dump (see the module doc and docs/FORMATS.md).
pub fn step_dump(ld: &mut Loaded, batch: &Batch, mode: Mode, source: &Path) -> Result<Dump> {
    let be = CpuBackend;
    let (b, t, o, c) = (batch.b, ld.cfg.model.seq_len, ld.model.o, ld.model.c);
    if batch.t != t || batch.o != o {
        return Err(MfdError::input(
            source,
            None,
            None,
            format!("batch has T = {}, O = {}; the checkpoint's model has T = {t}, O = {o}", batch.t, batch.o),
        ));
    }
    if mode == Mode::Train && b < 2 {
        return Err(MfdError::input(source, None, Some("bases"), "train mode needs B >= 2 (batch statistics)"));
    }
    let tokens = bases_to_tokens(&batch.bases, b, t, source)?;
    let bits = pack_labels(&batch.labels, b, o, source)?;
    let (tok_dev, lab_dev) = (be.upload_bytes(&tokens)?, be.upload_bytes(&bits)?);
    let lambda = ld.cfg.loss.lambda_indep as f32;
    let use_corr = ld.cfg.loss.cov_and_adv;
    let m = &mut ld.model;
    // The reference's literal schedule: the model backward's predictor gradients are lambda * dR2 (dumped as
    // grad.adversary.*), and the adversary step recomputes the predictors.
    m.reuse_adversary_backward = false;
    let mut d = Dump::default();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), DUMP_FORMAT.to_string());
    meta.insert("mode".to_string(), mode.name().to_string());
    for (k, v) in [("b", b), ("t", t), ("c", c), ("o", o)] {
        meta.insert(k.to_string(), v.to_string());
    }
    meta.insert("lambda_indep".to_string(), ld.cfg.loss.lambda_indep.to_string());
    meta.insert("cov_and_adv".to_string(), use_corr.to_string());
    meta.insert("dataset".to_string(), ld.dataset.to_string_lossy().into_owned());
    meta.insert("config".to_string(), ld.cfg.to_toml());
    d.tensors.push(DumpTensor { name: "tokens".into(), shape: vec![b, t], data: DumpData::U8(tokens) });

    let mut scalars: Vec<(&str, f32)> = Vec::new();
    match mode {
        Mode::Train => {
            m.params.zero_grads(&be, Group::Model)?;
            m.params.zero_grads(&be, Group::Adversary)?;
            let terms = m.model_loss_backward(&be, &tok_dev, &lab_dev, b, lambda, use_corr, &mut NoReduce)?;
            scalars.extend([
                ("loss.bce", terms.bce),
                ("loss.corr", terms.corr),
                ("loss.r2_bio", terms.r2_bio),
                ("loss.r2_tech", terms.r2_tech),
                ("loss.total", terms.loss),
            ]);
        }
        Mode::Eval => {
            let out = m.eval_forward(&be, &tok_dev, &lab_dev, b)?;
            scalars.extend([("loss.bce", out.bce), ("loss.corr", out.corr)]);
        }
    }
    push_forward(&be, m, &mut d, b, c, o)?;

    if mode == Mode::Train {
        let specs = m.params.table.specs.clone();
        let grads = m.params.grads_to_host(&be)?;
        for (spec, g) in specs.iter().zip(grads) {
            if spec.group != Group::Buffer {
                d.push(format!("grad.{}", spec.name), &spec.shape, g);
            }
        }
        let cfg = &ld.cfg;
        let (mut opt_model, mut opt_adv) = optimisers(&be, &m.params, cfg)?;
        if let Some((s, mo)) = &ld.ck.model_opt {
            opt_model.load_host(&be, *s, mo)?;
        }
        if let Some((s, mo)) = &ld.ck.adv_opt {
            opt_adv.load_host(&be, *s, mo)?;
        }
        meta.insert("model_opt_step".to_string(), opt_model.step.to_string());
        meta.insert("adv_opt_step".to_string(), opt_adv.step.to_string());
        // The trainer's order: model update, then the adversary loss on the (detached) features of the same
        // forward, then the adversary update; the model update does not touch the adversary's tensors.
        opt_model.update(&be, &mut m.params)?;
        if m.adv_bio.is_some() {
            let adv = m.adversary_loss_backward(&be, b, &mut NoReduce)?;
            scalars.push(("loss.adv", adv));
            let grads = m.params.grads_to_host(&be)?;
            for (spec, g) in specs.iter().zip(grads) {
                if spec.group == Group::Adversary {
                    d.push(format!("adv_grad.{}", spec.name), &spec.shape, g);
                }
            }
            opt_adv.update(&be, &mut m.params)?;
        }
        let values = m.params.to_host(&be)?;
        for (spec, v) in specs.iter().zip(values) {
            if spec.group != Group::Buffer {
                d.push(format!("step.{}", spec.name), &spec.shape, v);
            }
        }
    }
    for (name, v) in scalars {
        d.push(name, &[], vec![v]);
    }
    d.meta = meta;
    Ok(d)
}

/// features, output weights, per-half logits, logits and probabilities of the last forward.
fn push_forward(be: &CpuBackend, m: &mut Mfd<CpuBackend>, d: &mut Dump, b: usize, c: usize, o: usize) -> Result<()> {
    d.push("features", &[b, 2 * c], be.to_host(m.trunk.features())?);
    let (w_tech, w_bio) = m.output_weights(be)?;
    d.push("w_tech", &[o, c], w_tech);
    d.push("w_bio", &[o, c], w_bio);
    let (lt, lb, probs) = m.last_logits(be)?;
    let bias = be.to_host(&m.params.values[m.head_bias])?;
    let logits: Vec<f32> = (0..b * o).map(|i| lt[i] + lb[i] + bias[i % o]).collect();
    d.push("logit_tech", &[b, o], lt);
    d.push("logit_bio", &[b, o], lb);
    d.push("logits", &[b, o], logits);
    d.push("probs", &[b, o], probs);
    Ok(())
}

/// Write a dump as safetensors (atomic).
pub fn write_dump(path: &Path, d: &Dump) -> Result<()> {
    let bytes: Vec<&[u8]> = d
        .tensors
        .iter()
        .map(|t| match &t.data {
            DumpData::F32(v) => bytemuck::cast_slice::<f32, u8>(v),
            DumpData::U8(v) => v.as_slice(),
        })
        .collect();
    let mut views = Vec::new();
    for (t, data) in d.tensors.iter().zip(bytes) {
        let dtype = if matches!(t.data, DumpData::F32(_)) { Dtype::F32 } else { Dtype::U8 };
        views.push((t.name.clone(), TensorView::new(dtype, t.shape.clone(), data).map_err(|e| st_err(path, e))?));
    }
    let meta: HashMap<String, String> = d.meta.clone().into_iter().collect();
    let out = safetensors::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
    write_atomic(path, &out)
}

/// Tile indices of a --make-batch: `n` distinct tiles of `split` in a seeded random order.
pub fn pick_tiles(ds: &Dataset, split: &str, n: usize, seed: u64) -> Result<Vec<u64>> {
    let code = match split {
        "train" => SPLIT_TRAIN,
        "val" => SPLIT_VAL,
        "test" => SPLIT_TEST,
        other => return Err(MfdError::config("--split", format!("'{other}': expected train, val or test"))),
    };
    let mut idx = ds.split_indices(code);
    if n == 0 || idx.len() < n {
        return Err(MfdError::config("--n", format!("{n} tiles requested, split '{split}' has {}", idx.len())));
    }
    Rng::derive(seed, &[0x5354_4550_4455_4d50]).shuffle(&mut idx);
    idx.truncate(n);
    Ok(idx)
}

pub fn run(args: &StepDumpArgs) -> Result<()> {
    if args.make_batch {
        let cfg = crate::train::load_model::checkpoint_config(&args.checkpoint, args.dataset.as_deref())?;
        let ds = Dataset::open(&cfg.data.dataset)?;
        let idx = pick_tiles(&ds, &args.split, args.n, args.seed)?;
        let batch = batch_from_dataset(&ds, &idx, cfg.model.seq_len)?;
        write_batch(&args.out, &batch)?;
        eprintln!(
            "mfd: wrote a batch of {} tiles (T = {}, O = {}) to {}",
            batch.b,
            batch.t,
            batch.o,
            args.out.display()
        );
        return Ok(());
    }
    let mode = Mode::parse(&args.mode)?;
    let batch_path = args.batch.as_ref().ok_or_else(|| MfdError::config("--batch", "required"))?;
    let mut ld = load_model(&args.checkpoint, args.dataset.as_deref())?;
    let batch = read_batch(batch_path, ld.cfg.model.seq_len, ld.model.o)?;
    let mut dump = step_dump(&mut ld, &batch, mode, batch_path)?;
    dump.meta.insert("checkpoint".to_string(), args.checkpoint.to_string_lossy().into_owned());
    write_dump(&args.out, &dump)?;
    eprintln!(
        "mfd: wrote {} tensors ({} mode, B = {}) to {}",
        dump.tensors.len(),
        mode.name(),
        batch.b,
        args.out.display()
    );
    Ok(())
}
