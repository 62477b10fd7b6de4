//! `mfd bench kernels`: every Backend op, forward and backward, at the shapes the model really runs for C = 30
//! and C = 120 (B = 64, T = 2176, crop 8, O = 2106 classes as the ENCODE-scale head, adversary 3 x 1024), written
//! once over `B: Backend` so the CUDA backend gets the same table.
//!
//! Per (op, shape): best and mean ms over repetitions (after a warm-up; each call ends with a device sync), the
//! bytes moved as a stated lower bound (every input read once, every output written once, accumulated outputs read
//! and written), the FLOPs (2 per multiply-add of GEMM-like ops; 0 for element-wise ops, whose arithmetic is not
//! the limit), GB/s, GFLOP/s, arithmetic intensity, the roofline bound (memory when the intensity is below the
//! measured ridge) and the fraction of the measured peak for that bound. Per op kind the model's shapes are
//! summed, each weighted by how often the trunk uses it in one forward + backward.
//!
//! Key decision: shapes come from `TrunkSpec` (the layer geometry the trunk is built from), not a hand-written
//! list, so the bench follows the model.

use super::{time_op, Peak, Section};
use crate::backend::{
    Activation, AdamConfig, Backend, BnShape, Conv1dShape, CorrShape, HeadShape, LinearShape, NoReduce, PoolShape,
    R2Shape, StemShape,
};
use crate::config::Config;
use crate::error::Result;
use crate::model::spec::{TrunkSpec, DILATED_K, STEM_K, TOWER_K};
use crate::rng::Rng;
use serde_json::{json, Value};

/// One op at one shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    Stem(StemShape),
    Conv(Conv1dShape),
    Bn(BnShape),
    Gelu(usize),
    Pool(PoolShape),
    Linear(LinearShape),
    Head(HeadShape),
    Corr(CorrShape),
    R2(R2Shape),
    Adam(usize),
}

/// A timed (op, shape).
struct Row {
    kind: String,
    shape: String,
    /// Uses per forward + backward of the model.
    count: usize,
    best_s: f64,
    mean_s: f64,
    reps: usize,
    bytes: f64,
    flops: f64,
}

/// The benchmark shapes of one model: (case name, kernels with their use counts).
struct Case {
    name: String,
    kernels: Vec<(Kernel, usize)>,
}

fn push(v: &mut Vec<(Kernel, usize)>, k: Kernel) {
    match v.iter_mut().find(|(e, _)| *e == k) {
        Some(e) => e.1 += 1,
        None => v.push((k, 1)),
    }
}

/// Every kernel of one training step of the model `spec` at batch `b`, `o` classes, adversary width `hidden`.
fn model_kernels(spec: &TrunkSpec, b: usize, o: usize, hidden: usize) -> Vec<(Kernel, usize)> {
    let ch = &spec.channels;
    let (c, t) = (spec.c, spec.t);
    let mut v = Vec::new();
    push(&mut v, Kernel::Stem(StemShape { b, t, c_out: ch[0], k: STEM_K }));
    // Pre-activation block: BatchNorm and GELU over its input, then the conv.
    let block = |v: &mut Vec<(Kernel, usize)>, c_in: usize, c_out: usize, k: usize, dilation: usize, l: usize| {
        push(v, Kernel::Bn(BnShape { b, c: c_in, l }));
        push(v, Kernel::Gelu(b * c_in * l));
        push(v, Kernel::Conv(Conv1dShape { b, c_in, c_out, l, k, dilation }));
    };
    block(&mut v, ch[0], ch[0], 1, 1, t);
    push(&mut v, Kernel::Pool(PoolShape { b, c: ch[0], l: t }));
    for l in 0..spec.tower_layers() {
        let len = spec.tower_len(l);
        block(&mut v, ch[l], ch[l + 1], TOWER_K, 1, len);
        block(&mut v, ch[l + 1], ch[l + 1], 1, 1, len);
        push(&mut v, Kernel::Pool(PoolShape { b, c: ch[l + 1], l: len }));
    }
    for &d in &spec.dilations {
        block(&mut v, c, c, DILATED_K, d, spec.l_tower);
        block(&mut v, c, c, 1, 1, spec.l_tower);
    }
    block(&mut v, c, 2 * c, 1, 1, spec.l_tower - 2 * spec.crop);
    push(&mut v, Kernel::Bn(BnShape { b, c: 2 * c, l: 1 }));
    push(&mut v, Kernel::Head(HeadShape { b, c, o, row_bytes: o.div_ceil(8) }));
    push(&mut v, Kernel::Corr(CorrShape { n: b, c_a: c, c_b: c }));
    push(&mut v, Kernel::R2(R2Shape { n: b, c }));
    // The adversary MLP C -> H -> H -> H -> C (one predictor; the step runs it several times).
    for (d_in, d_out) in [(c, hidden), (hidden, hidden), (hidden, hidden), (hidden, c)] {
        push(&mut v, Kernel::Linear(LinearShape { n: b, d_in, d_out }));
    }
    // AMSGrad over the trunk's conv weights as one tensor.
    let conv_params: usize = v
        .iter()
        .map(|(k, _)| match k {
            Kernel::Conv(s) => s.weight_len(),
            Kernel::Stem(s) => s.weight_len(),
            _ => 0,
        })
        .sum();
    push(&mut v, Kernel::Adam(conv_params));
    v
}

fn cases(quick: bool) -> Result<Vec<Case>> {
    let list: Vec<(usize, usize, usize, usize, usize, usize)> = if quick {
        vec![(16, 128, 0, 2, 24, 16)] // (C, T, crop, B, O, hidden)
    } else {
        vec![(30, 2176, 8, 64, 2106, 1024), (120, 2176, 8, 64, 2106, 1024)]
    };
    list.into_iter()
        .map(|(c, t, crop, b, o, hidden)| {
            let cfg = Config::load(
                None,
                &[format!("model.c={c}"), format!("model.seq_len={t}"), format!("model.crop={crop}")],
            )?;
            let spec = TrunkSpec::new(&cfg.model);
            Ok(Case { name: format!("C={c}"), kernels: model_kernels(&spec, b, o, hidden) })
        })
        .collect()
}

fn rand_buf<B: Backend>(be: &B, rng: &mut Rng, n: usize) -> Result<B::Buf> {
    be.upload(&(0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>())
}

fn rand_bytes<B: Backend>(be: &B, rng: &mut Rng, n: usize, below: u64) -> Result<B::Bytes> {
    be.upload_bytes(&(0..n).map(|_| rng.below(below) as u8).collect::<Vec<_>>())
}

/// (kind, shape, bytes, flops, (best s, mean s, reps)) of one timed call.
type Timed = (String, String, f64, f64, (f64, f64, usize));

/// Time the forward and backward of kernel `k`: rows (kind, shape, bytes, flops, best, mean, reps).
fn time_kernel<B: Backend>(be: &B, k: Kernel, quick: bool) -> Result<Vec<Timed>> {
    let mut rng = Rng::new(7);
    let probe = be.alloc(1)?;
    let (min_s, min_reps, max_reps) = if quick { (0.0, 1, 1) } else { (0.2, 3, 50) };
    let time = |f: &mut dyn FnMut() -> Result<()>| time_op(be, &probe, min_s, min_reps, max_reps, f);
    let f4 = |n: usize| 4.0 * n as f64;
    let mut red = NoReduce;
    Ok(match k {
        Kernel::Stem(s) => {
            let tokens = rand_bytes(be, &mut rng, s.tokens_len(), 17)?;
            let w = rand_buf(be, &mut rng, s.weight_len())?;
            let bias = rand_buf(be, &mut rng, s.c_out)?;
            let mut y = be.alloc(s.out_len())?;
            let mut dw = be.alloc(s.weight_len())?;
            let mut db = be.alloc(s.c_out)?;
            let shape = format!("B={} T={} C_out={} K={}", s.b, s.t, s.c_out, s.k);
            // A gather: K adds per output (one one-hot channel per position), K + 1 per output in backward.
            let adds = (s.b * s.t * s.c_out) as f64;
            let fwd = time(&mut || be.stem_conv_fwd(s, &tokens, &w, &bias, &mut y))?;
            let bwd = time(&mut || be.stem_conv_bwd(s, &tokens, &y, &mut dw, &mut db))?;
            let wb = f4(s.weight_len() + s.c_out);
            vec![
                (
                    "stem_fwd".into(),
                    shape.clone(),
                    s.tokens_len() as f64 + wb + f4(s.out_len()),
                    adds * s.k as f64,
                    fwd,
                ),
                (
                    "stem_bwd".into(),
                    shape,
                    s.tokens_len() as f64 + f4(s.out_len()) + 2.0 * wb,
                    adds * (s.k + 1) as f64,
                    bwd,
                ),
            ]
        }
        Kernel::Conv(s) => {
            let x = rand_buf(be, &mut rng, s.x_len())?;
            let w = rand_buf(be, &mut rng, s.weight_len())?;
            let mut y = be.alloc(s.y_len())?;
            let mut dx = be.alloc(s.x_len())?;
            let mut dw = be.alloc(s.weight_len())?;
            let shape = format!("B={} {}->{} L={} d={}", s.b, s.c_in, s.c_out, s.l, s.dilation);
            let kind = if s.dilation > 1 { format!("k{} dilated", s.k) } else { format!("k{}", s.k) };
            let macs = (s.b * s.c_in * s.c_out * s.k * s.l) as f64;
            let fwd = time(&mut || be.conv1d_fwd(s, &x, &w, &mut y))?;
            let bwd = time(&mut || be.conv1d_bwd(s, &x, &w, &y, &mut dx, &mut dw))?;
            let (xb, wb, yb) = (f4(s.x_len()), f4(s.weight_len()), f4(s.y_len()));
            vec![
                (format!("conv1d_fwd {kind}"), shape.clone(), xb + wb + yb, 2.0 * macs, fwd),
                (format!("conv1d_bwd {kind}"), shape, xb + yb + xb + 3.0 * wb, 4.0 * macs, bwd),
            ]
        }
        Kernel::Bn(s) => {
            let x = rand_buf(be, &mut rng, s.x_len())?;
            let gamma = be.upload(&vec![1.0; s.c])?;
            let beta = be.alloc(s.c)?;
            let (mut rm, mut rv) = (be.alloc(s.c)?, be.upload(&vec![1.0; s.c])?);
            let (mut sm, mut si) = (be.alloc(s.c)?, be.alloc(s.c)?);
            let (mut y, mut dx) = (be.alloc(s.x_len())?, be.alloc(s.x_len())?);
            let (mut dg, mut db) = (be.alloc(s.c)?, be.alloc(s.c)?);
            let shape = format!("B={} C={} L={}", s.b, s.c, s.l);
            let fwd = time(&mut || {
                be.batch_norm_train_fwd(s, &x, &gamma, &beta, &mut rm, &mut rv, &mut sm, &mut si, &mut y, &mut red)
            })?;
            let mut red = NoReduce;
            let bwd =
                time(&mut || be.batch_norm_bwd(s, &x, &y, &gamma, &sm, &si, &mut dx, &mut dg, &mut db, &mut red))?;
            let n = f4(s.x_len());
            vec![("bn_fwd".into(), shape.clone(), 2.0 * n, 0.0, fwd), ("bn_bwd".into(), shape, 3.0 * n, 0.0, bwd)]
        }
        Kernel::Gelu(n) => {
            let x = rand_buf(be, &mut rng, n)?;
            let (mut y, mut dx) = (be.alloc(n)?, be.alloc(n)?);
            let fwd = time(&mut || be.activation_fwd(Activation::Gelu, &x, &mut y))?;
            let bwd = time(&mut || be.activation_bwd(Activation::Gelu, &x, &y, &mut dx))?;
            let shape = format!("n={n}");
            vec![
                ("gelu_fwd".into(), shape.clone(), 2.0 * f4(n), 0.0, fwd),
                ("gelu_bwd".into(), shape, 3.0 * f4(n), 0.0, bwd),
            ]
        }
        Kernel::Pool(s) => {
            let x = rand_buf(be, &mut rng, s.x_len())?;
            let mut y = be.alloc(s.y_len())?;
            let mut arg = be.alloc_bytes(s.y_len())?;
            let mut dx = be.alloc(s.x_len())?;
            let fwd = time(&mut || be.max_pool_fwd(s, &x, &mut y, &mut arg))?;
            let bwd = time(&mut || be.max_pool_bwd(s, &y, &arg, &mut dx))?;
            let shape = format!("B={} C={} L={}", s.b, s.c, s.l);
            let moved = f4(s.x_len()) + f4(s.y_len()) + s.y_len() as f64;
            vec![
                ("max_pool_fwd".into(), shape.clone(), moved, 0.0, fwd),
                ("max_pool_bwd".into(), shape, moved, 0.0, bwd),
            ]
        }
        Kernel::Linear(s) => {
            let x = rand_buf(be, &mut rng, s.n * s.d_in)?;
            let w = rand_buf(be, &mut rng, s.d_out * s.d_in)?;
            let bias = rand_buf(be, &mut rng, s.d_out)?;
            let mut y = be.alloc(s.n * s.d_out)?;
            let mut dx = be.alloc(s.n * s.d_in)?;
            let (mut dw, mut db) = (be.alloc(s.d_out * s.d_in)?, be.alloc(s.d_out)?);
            let fwd = time(&mut || be.linear_fwd(s, &x, &w, Some(&bias), &mut y))?;
            let bwd = time(&mut || be.linear_bwd(s, &x, &w, &y, Some(&mut dx), &mut dw, Some(&mut db)))?;
            let shape = format!("N={} {}->{}", s.n, s.d_in, s.d_out);
            let macs = (s.n * s.d_in * s.d_out) as f64;
            let (xb, wb, yb, bb) = (f4(s.n * s.d_in), f4(s.d_in * s.d_out), f4(s.n * s.d_out), f4(s.d_out));
            vec![
                ("linear_fwd".into(), shape.clone(), xb + wb + bb + yb, 2.0 * macs, fwd),
                ("linear_bwd".into(), shape, 2.0 * xb + 3.0 * wb + yb + 2.0 * bb, 4.0 * macs, bwd),
            ]
        }
        Kernel::Head(s) => {
            let f = rand_buf(be, &mut rng, s.features_len())?;
            let wt = rand_buf(be, &mut rng, s.weight_len())?;
            let wbio = rand_buf(be, &mut rng, s.weight_len())?;
            let bias = rand_buf(be, &mut rng, s.o)?;
            let labels = rand_bytes(be, &mut rng, s.labels_len(), 256)?;
            let (mut probs, mut dz, mut df) =
                (be.alloc(s.out_len())?, be.alloc(s.out_len())?, be.alloc(s.features_len())?);
            let (mut dwt, mut dwb, mut db) = (be.alloc(s.weight_len())?, be.alloc(s.weight_len())?, be.alloc(s.o)?);
            let fwd = time(&mut || be.head_bce_fwd(s, &f, &wt, &wbio, &bias, &labels, &mut probs).map(|_| ()))?;
            let bwd = time(&mut || {
                be.head_bce_bwd(s, &f, &wt, &wbio, &probs, &labels, &mut dz, &mut df, &mut dwt, &mut dwb, &mut db)
            })?;
            let shape = format!("B={} 2C={} O={}", s.b, 2 * s.c, s.o);
            let macs = (s.b * 2 * s.c * s.o) as f64;
            let (fb, wb, ob, lb) =
                (f4(s.features_len()), f4(2 * s.weight_len()), f4(s.out_len()), s.labels_len() as f64);
            vec![
                ("head_bce_fwd".into(), shape.clone(), fb + wb + f4(s.o) + lb + ob, 2.0 * macs, fwd),
                ("head_bce_bwd".into(), shape, 2.0 * fb + 3.0 * wb + lb + 2.0 * ob + 2.0 * f4(s.o), 4.0 * macs, bwd),
            ]
        }
        Kernel::Corr(s) => {
            let a = rand_buf(be, &mut rng, s.n * s.c_a)?;
            let b = rand_buf(be, &mut rng, s.n * s.c_b)?;
            let (mut r, mut st) = (be.alloc(s.r_len())?, be.alloc(s.stats_len())?);
            let (mut da, mut db) = (be.alloc(s.n * s.c_a)?, be.alloc(s.n * s.c_b)?);
            let fwd = time(&mut || be.corr_norm_fwd(s, &a, &b, &mut r, &mut st, &mut red).map(|_| ()))?;
            let mut red = NoReduce;
            let bwd = time(&mut || be.corr_norm_bwd(s, &a, &b, &r, &st, 1.0, &mut da, &mut db, &mut red))?;
            let shape = format!("N={} {}x{}", s.n, s.c_a, s.c_b);
            let macs = (s.n * s.c_a * s.c_b) as f64;
            let io = f4(s.n * (s.c_a + s.c_b));
            vec![
                ("corr_fwd".into(), shape.clone(), io + f4(s.r_len()), 2.0 * macs, fwd),
                ("corr_bwd".into(), shape, 2.0 * io + f4(s.r_len()), 4.0 * macs, bwd),
            ]
        }
        Kernel::R2(s) => {
            let p = rand_buf(be, &mut rng, s.x_len())?;
            let t = rand_buf(be, &mut rng, s.x_len())?;
            let mut st = be.alloc(s.stats_len())?;
            let (mut dp, mut dt) = (be.alloc(s.x_len())?, be.alloc(s.x_len())?);
            let fwd = time(&mut || be.r2_score_fwd(s, &p, &t, &mut st, &mut red).map(|_| ()))?;
            let mut red = NoReduce;
            let bwd = time(&mut || be.r2_score_bwd(s, &p, &t, &st, 1.0, &mut dp, &mut dt, &mut red))?;
            let shape = format!("N={} C={}", s.n, s.c);
            let io = 2.0 * f4(s.x_len());
            vec![("r2_fwd".into(), shape.clone(), io, 0.0, fwd), ("r2_bwd".into(), shape, 2.0 * io, 0.0, bwd)]
        }
        Kernel::Adam(n) => {
            let mut p = rand_buf(be, &mut rng, n)?;
            let g = rand_buf(be, &mut rng, n)?;
            let (mut m, mut v, mut vmax) = (be.alloc(n)?, be.alloc(n)?, be.alloc(n)?);
            let cfg = AdamConfig::default();
            let upd = time(&mut || be.amsgrad_step(&cfg, 1, &mut p, &g, &mut m, &mut v, &mut vmax))?;
            // param, m, v, vmax read and written, grad read.
            vec![("amsgrad".into(), format!("n={n}"), 9.0 * f4(n), 0.0, upd)]
        }
    })
}

/// (GB/s, GFLOP/s, FLOP/B, bound, fraction of the measured peak for that bound).
fn roofline(peak: &Peak, secs: f64, bytes: f64, flops: f64) -> (f64, f64, f64, &'static str, f64) {
    let (gb_s, gflop_s) = (bytes / secs / 1e9, flops / secs / 1e9);
    let ai = flops / bytes;
    if ai < peak.ridge() {
        (gb_s, gflop_s, ai, "memory", gb_s / peak.gb_s)
    } else {
        (gb_s, gflop_s, ai, "compute", gflop_s / peak.gflop_s)
    }
}

fn row_json(peak: &Peak, r: &Row) -> Value {
    let (gb_s, gflop_s, ai, bound, frac) = roofline(peak, r.best_s, r.bytes, r.flops);
    json!({"op": r.kind, "shape": r.shape, "uses_per_step": r.count, "ms": 1e3 * r.best_s, "ms_mean": 1e3 * r.mean_s,
        "reps": r.reps, "bytes": r.bytes, "flops": r.flops, "gb_s": gb_s, "gflop_s": gflop_s,
        "flop_per_byte": ai, "bound": bound, "fraction_of_peak": frac})
}

pub fn bench_kernels<B: Backend>(be: &B, peak: &Peak, quick: bool) -> Result<Section> {
    let mut md = format!(
        "## Kernels ({}; best of the repetitions; bytes = lower bound: inputs read + outputs written once; \
         fraction = GB/s / {:.1} GB/s measured when FLOP/B < ridge {:.1}, else GFLOP/s / {:.1} GFLOP/s measured)\n",
        be.name(),
        peak.gb_s,
        peak.ridge(),
        peak.gflop_s
    );
    let mut out = Vec::new();
    for case in cases(quick)? {
        eprintln!("mfd bench kernels: {} ({} shapes)", case.name, case.kernels.len());
        let mut rows = Vec::new();
        for &(k, count) in &case.kernels {
            for (kind, shape, bytes, flops, (best_s, mean_s, reps)) in time_kernel(be, k, quick)? {
                rows.push(Row { kind, shape, count, best_s, mean_s, reps, bytes, flops });
            }
        }
        // Per op kind: the model's shapes summed, each weighted by its uses per step.
        let mut kinds: Vec<(String, f64, f64, f64, usize)> = Vec::new();
        for r in &rows {
            let c = r.count as f64;
            match kinds.iter_mut().find(|e| e.0 == r.kind) {
                Some(e) => {
                    e.1 += c * r.best_s;
                    e.2 += c * r.bytes;
                    e.3 += c * r.flops;
                    e.4 += r.count;
                }
                None => kinds.push((r.kind.clone(), c * r.best_s, c * r.bytes, c * r.flops, r.count)),
            }
        }
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = kinds.iter().map(|k| k.1).sum();
        md += &format!(
            "\n### {}: per op kind, summed over the model's shapes (one forward + backward; {:.0} ms in all)\n\n\
             | op | calls | ms | % | GB/s | GFLOP/s | FLOP/B | bound | fraction of peak |\n|---|---|---|---|---|---|---|---|---|\n",
            case.name,
            1e3 * total
        );
        let mut kinds_json = Vec::new();
        for (kind, s, bytes, flops, calls) in &kinds {
            let (gb_s, gflop_s, ai, bound, frac) = roofline(peak, *s, *bytes, *flops);
            md += &format!(
                "| {kind} | {calls} | {:.2} | {:.1} | {gb_s:.1} | {gflop_s:.1} | {ai:.1} | {bound} | {frac:.2} |\n",
                1e3 * s,
                100.0 * s / total
            );
            kinds_json.push(json!({"op": kind, "calls": calls, "ms": 1e3 * s, "bytes": bytes, "flops": flops,
                "gb_s": gb_s, "gflop_s": gflop_s, "flop_per_byte": ai, "bound": bound, "fraction_of_peak": frac}));
        }
        md += &format!(
            "\n<details><summary>{}: every shape</summary>\n\n| op | shape | uses | ms | GB/s | GFLOP/s | FLOP/B | bound | fraction |\n|---|---|---|---|---|---|---|---|---|\n",
            case.name
        );
        for r in &rows {
            let (gb_s, gflop_s, ai, bound, frac) = roofline(peak, r.best_s, r.bytes, r.flops);
            md += &format!(
                "| {} | {} | {} | {:.3} | {gb_s:.1} | {gflop_s:.1} | {ai:.1} | {bound} | {frac:.2} |\n",
                r.kind,
                r.shape,
                r.count,
                1e3 * r.best_s
            );
        }
        md += "\n</details>\n";
        out.push(json!({"case": case.name, "total_ms": 1e3 * total, "kinds": kinds_json,
            "shapes": rows.iter().map(|r| row_json(peak, r)).collect::<Vec<_>>()}));
    }
    let json = json!({"backend": be.name(), "peak_gb_s": peak.gb_s, "peak_gflop_s": peak.gflop_s, "cases": out});
    Ok(Section { json, md })
}
