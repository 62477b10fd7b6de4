//! Backend-level tests of `CpuBackend`: the f32 trait methods agree with the f64 kernels (the ones checked
//! against finite differences), bad shapes and tokens are errors rather than panics, and the `Reduce` hook gives
//! two ranks at batch B/2 the statistics of one rank at batch B.

use std::sync::{Arc, Barrier, Mutex};

use super::testutil::*;
use super::*;
use crate::backend::NoReduce;
use crate::rng::Rng;

/// f32 backend vs the same kernel at f64: f32 rounding of inputs (~6e-8 relative) carried through short sums of
/// O(1) terms; 1e-4 absolute + 1e-4 relative leaves an order of magnitude of headroom.
const F32_TOL: Tol = Tol { atol: 1e-4, rtol: 1e-4 };

fn up(be: &CpuBackend, v: &[f64]) -> Vec<f32> {
    be.upload(&to_f32(v)).unwrap()
}

/// Inputs rounded to f32 and back, so the f64 reference sees exactly the values the f32 backend sees.
fn rounded(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    to_f64(&to_f32(&rand_vec(rng, n, scale)))
}

#[test]
fn conv_stem_pool_through_the_trait_match_f64() {
    let be = CpuBackend;
    let mut rng = Rng::new(21);
    // Stem.
    let s = StemShape { b: 2, t: 12, c_out: 3, k: 15 };
    let tokens: Vec<u8> = (0..s.tokens_len()).map(|_| rng.below(17) as u8).collect();
    let (w, bias) = (rounded(&mut rng, s.weight_len(), 1.0), rounded(&mut rng, s.c_out, 1.0));
    let mut y = be.alloc(s.out_len()).unwrap();
    be.stem_conv_fwd(s, &tokens, &up(&be, &w), &up(&be, &bias), &mut y).unwrap();
    let mut y64 = vec![0.0; s.out_len()];
    stem::stem_fwd(s, &tokens, &w, &bias, &mut y64);
    assert_close("stem f32", &to_f64(&y), &y64, F32_TOL);
    // Conv1d forward and backward.
    let cs = Conv1dShape { b: 2, c_in: 3, c_out: 4, l: 10, k: 3, dilation: 2 };
    let (x, w, dy) = (
        rounded(&mut rng, cs.x_len(), 1.0),
        rounded(&mut rng, cs.weight_len(), 1.0),
        rounded(&mut rng, cs.y_len(), 1.0),
    );
    let mut y = be.alloc(cs.y_len()).unwrap();
    be.conv1d_fwd(cs, &up(&be, &x), &up(&be, &w), &mut y).unwrap();
    let mut y64 = vec![0.0; cs.y_len()];
    conv::conv1d_fwd(cs, &x, &w, &mut y64);
    assert_close("conv f32", &to_f64(&y), &y64, F32_TOL);
    let (mut dx, mut dw) = (be.alloc(cs.x_len()).unwrap(), be.alloc(cs.weight_len()).unwrap());
    be.conv1d_bwd(cs, &up(&be, &x), &up(&be, &w), &up(&be, &dy), &mut dx, &mut dw).unwrap();
    let (mut dx64, mut dw64) = (vec![0.0; cs.x_len()], vec![0.0; cs.weight_len()]);
    conv::conv1d_bwd(cs, &x, &w, &dy, &mut dx64, &mut dw64);
    assert_close("conv dx f32", &to_f64(&dx), &dx64, F32_TOL);
    assert_close("conv dw f32", &to_f64(&dw), &dw64, F32_TOL);
    // Pool + GELU.
    let ps = PoolShape { b: 2, c: 4, l: 10 };
    let mut pooled = be.alloc(ps.y_len()).unwrap();
    let mut argmax = be.alloc_bytes(ps.y_len()).unwrap();
    be.max_pool_fwd(ps, &y, &mut pooled, &mut argmax).unwrap();
    let mut act = be.alloc(ps.y_len()).unwrap();
    be.activation_fwd(Activation::Gelu, &pooled, &mut act).unwrap();
    let mut pooled64 = vec![0.0; ps.y_len()];
    let mut am64 = vec![0u8; ps.y_len()];
    pool::max_pool_fwd(ps, &y64, &mut pooled64, &mut am64);
    let mut act64 = vec![0.0; ps.y_len()];
    activation::activation_fwd(Activation::Gelu, &pooled64, &mut act64);
    assert_close("pool+gelu f32", &to_f64(&act), &act64, F32_TOL);
}

#[test]
fn head_and_penalties_through_the_trait_match_f64() {
    let be = CpuBackend;
    let mut rng = Rng::new(22);
    let s = HeadShape { b: 4, c: 3, o: 9, row_bytes: 8 };
    let f = rounded(&mut rng, s.features_len(), 1.0);
    let (wt, wb) = (rounded(&mut rng, s.weight_len(), 1.0), rounded(&mut rng, s.weight_len(), 1.0));
    let bias = rounded(&mut rng, s.o, 1.0);
    let labels: Vec<u8> = (0..s.labels_len()).map(|_| rng.below(256) as u8).collect();
    let mut probs = be.alloc(s.out_len()).unwrap();
    let loss =
        be.head_bce_fwd(s, &up(&be, &f), &up(&be, &wt), &up(&be, &wb), &up(&be, &bias), &labels, &mut probs).unwrap();
    let mut p64 = vec![0.0; s.out_len()];
    let loss64 = head::head_bce_fwd(s, &f, &wt, &wb, &bias, &labels, &mut p64);
    assert!((loss as f64 - loss64).abs() < 1e-5, "loss {loss:?} vs {loss64}");
    assert_close("probs f32", &to_f64(&probs), &p64, F32_TOL);

    // Correlation penalty on the two halves of the features, split with channel_copy (L = 1).
    let cs = CorrShape { n: s.b, c_a: s.c, c_b: s.c };
    let (mut tech, mut bio) = (be.alloc(s.b * s.c).unwrap(), be.alloc(s.b * s.c).unwrap());
    let half = |off| ChannelCopy { b: s.b, l: 1, c_src: 2 * s.c, src_off: off, c_dst: s.c, dst_off: 0, n: s.c };
    be.channel_copy(half(0), &up(&be, &f), &mut tech, false).unwrap();
    be.channel_copy(half(s.c), &up(&be, &f), &mut bio, false).unwrap();
    let (mut r, mut st) = (be.alloc(cs.r_len()).unwrap(), be.alloc(cs.stats_len()).unwrap());
    let v = be.corr_norm_fwd(cs, &tech, &bio, &mut r, &mut st, &mut NoReduce).unwrap();
    let (mut r64, mut st64) = (vec![0.0; cs.r_len()], vec![0.0; cs.stats_len()]);
    let (t64, b64) = (to_f64(&tech), to_f64(&bio));
    let v64 = corr::corr_norm_fwd(cs, &t64, &b64, &mut r64, &mut st64, &mut NoReduce).unwrap();
    assert!((v as f64 - v64).abs() < 1e-5, "{v} vs {v64}");
    let (mut da, mut db) = (be.alloc(s.b * s.c).unwrap(), be.alloc(s.b * s.c).unwrap());
    be.corr_norm_bwd(cs, &tech, &bio, &r, &st, 1.0, &mut da, &mut db, &mut NoReduce).unwrap();
    let (mut da64, mut db64) = (vec![0.0; s.b * s.c], vec![0.0; s.b * s.c]);
    corr::corr_norm_bwd(cs, &t64, &b64, &r64, &st64, 1.0, &mut da64, &mut db64, &mut NoReduce).unwrap();
    // Standardisation divides by the std of 4 samples: allow a larger absolute error.
    let tol = Tol { atol: 1e-3, rtol: 1e-3 };
    assert_close("corr da f32", &to_f64(&da), &da64, tol);
    assert_close("corr db f32", &to_f64(&db), &db64, tol);
}

#[test]
fn bad_shapes_and_tokens_are_errors_not_panics() {
    let be = CpuBackend;
    let cs = Conv1dShape { b: 1, c_in: 2, c_out: 2, l: 5, k: 3, dilation: 1 };
    let mut y = vec![0.0; cs.y_len()];
    let err = be.conv1d_fwd(cs, &vec![0.0; 9], &vec![0.0; cs.weight_len()], &mut y).unwrap_err();
    assert!(err.to_string().contains("conv1d") && err.to_string().contains("x has 9"), "{err}");
    let even = Conv1dShape { k: 4, ..cs };
    assert!(be.conv1d_fwd(even, &vec![0.0; 10], &vec![0.0; 16], &mut y).is_err());
    let s = StemShape { b: 1, t: 3, c_out: 1, k: 3 };
    let mut y = vec![0.0; 3];
    let err = be.stem_conv_fwd(s, &vec![0, 17, 2], &vec![0.0; s.weight_len()], &vec![0.0], &mut y).unwrap_err();
    assert!(err.to_string().contains("token (0, 1) has value 17"), "{err}");
    let hs = HeadShape { b: 1, c: 1, o: 9, row_bytes: 1 };
    assert!(hs.validate().is_err());
    let crop = CropShape { b: 1, c: 1, l: 4, crop: 2 };
    assert!(be.crop_fwd(crop, &vec![0.0; 4], &mut vec![]).is_err());
    let cc = ChannelCopy { b: 1, l: 1, c_src: 2, src_off: 1, c_dst: 2, dst_off: 0, n: 2 };
    assert!(be.channel_copy(cc, &vec![0.0; 2], &mut vec![0.0; 2], false).is_err());
    let mut p = vec![0.0];
    assert!(be
        .amsgrad_step(&AdamConfig::default(), 0, &mut p, &vec![0.0], &mut vec![0.0], &mut vec![0.0], &mut vec![0.0])
        .is_err());
}

/// An in-process world of `n` ranks on threads: `sum` adds every rank's vector (a real all-reduce's contract).
struct ThreadReduce {
    acc: Arc<Mutex<Vec<f64>>>,
    barrier: Arc<Barrier>,
}

impl Reduce for ThreadReduce {
    fn sum(&mut self, v: &mut [f64]) -> crate::Result<()> {
        {
            let mut acc = self.acc.lock().map_err(|_| MfdError::other("poisoned"))?;
            if acc.is_empty() {
                acc.resize(v.len(), 0.0);
            }
            acc.iter_mut().zip(v.iter()).for_each(|(a, x)| *a += x);
        }
        self.barrier.wait();
        v.copy_from_slice(&self.acc.lock().map_err(|_| MfdError::other("poisoned"))?);
        if self.barrier.wait().is_leader() {
            self.acc.lock().map_err(|_| MfdError::other("poisoned"))?.clear();
        }
        self.barrier.wait();
        Ok(())
    }
}

/// Batch-norm forward/backward state of one rank.
struct BnOut {
    y: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    running_var: Vec<f32>,
}

fn bn_run(s: BnShape, x: &[f32], dy: &[f32], gamma: &[f32], red: &mut dyn Reduce) -> BnOut {
    let be = CpuBackend;
    let c = s.c;
    let (x, dy, gamma, beta) = (x.to_vec(), dy.to_vec(), gamma.to_vec(), vec![0.1; c]);
    let (mut rm, mut rv, mut sm, mut si) = (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
    let mut y = vec![0.0; s.x_len()];
    be.batch_norm_train_fwd(s, &x, &gamma, &beta, &mut rm, &mut rv, &mut sm, &mut si, &mut y, red).unwrap();
    let (mut dx, mut dg, mut db) = (vec![0.0; s.x_len()], vec![0.0; c], vec![0.0; c]);
    be.batch_norm_bwd(s, &x, &dy, &gamma, &sm, &si, &mut dx, &mut dg, &mut db, red).unwrap();
    BnOut { y, dx, dgamma: dg, running_var: rv }
}

#[test]
fn two_ranks_with_reduce_equal_one_rank_at_the_global_batch() {
    let mut rng = Rng::new(23);
    let full = BnShape { b: 6, c: 3, l: 5 };
    let half = BnShape { b: 3, ..full };
    let x = to_f32(&rand_vec(&mut rng, full.x_len(), 2.0));
    let dy = to_f32(&rand_vec(&mut rng, full.x_len(), 1.0));
    let gamma = to_f32(&rand_vec(&mut rng, full.c, 1.5));
    let one = bn_run(full, &x, &dy, &gamma, &mut NoReduce);

    let cs = CorrShape { n: 8, c_a: 2, c_b: 3 };
    let a = to_f32(&rand_vec(&mut rng, cs.n * cs.c_a, 1.0));
    let b = to_f32(&rand_vec(&mut rng, cs.n * cs.c_b, 1.0));
    let corr_one = corr_run(cs, &a, &b, &mut NoReduce);

    let acc = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(2));
    let ranks: Vec<(BnOut, CorrOut)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let mut red = ThreadReduce { acc: acc.clone(), barrier: barrier.clone() };
                let (x, dy, gamma) = (&x, &dy, &gamma);
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    let r = rank * half.x_len()..(rank + 1) * half.x_len();
                    let bn = bn_run(half, &x[r.clone()], &dy[r], gamma, &mut red);
                    let hc = CorrShape { n: 4, ..cs };
                    let (ra, rb) =
                        (rank * 4 * cs.c_a..(rank + 1) * 4 * cs.c_a, rank * 4 * cs.c_b..(rank + 1) * 4 * cs.c_b);
                    let corr = corr_run(hc, &a[ra], &b[rb], &mut red);
                    (bn, corr)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
    });
    // Same f64 sums in a different order, results rounded to f32: a few f32 ulps.
    let tol = Tol { atol: 1e-5, rtol: 1e-5 };
    let cat = |f: &dyn Fn(&BnOut) -> &Vec<f32>| to_f64(&[f(&ranks[0].0).clone(), f(&ranks[1].0).clone()].concat());
    assert_close("bn y, 2 ranks", &cat(&|o| &o.y), &to_f64(&one.y), tol);
    assert_close("bn dx, 2 ranks", &cat(&|o| &o.dx), &to_f64(&one.dx), tol);
    assert_close("bn running_var, 2 ranks", &to_f64(&ranks[0].0.running_var), &to_f64(&one.running_var), tol);
    // Parameter gradients are local contributions: their sum over ranks is the one-rank gradient.
    let dg: Vec<f64> = ranks[0].0.dgamma.iter().zip(&ranks[1].0.dgamma).map(|(a, b)| (a + b) as f64).collect();
    assert_close("bn dgamma, 2 ranks", &dg, &to_f64(&one.dgamma), tol);
    // Correlation penalty: the value and the per-row gradients of the global batch.
    assert!((ranks[0].1 .0 - corr_one.0).abs() < 1e-5 && (ranks[1].1 .0 - corr_one.0).abs() < 1e-5);
    let da = to_f64(&[ranks[0].1 .1.clone(), ranks[1].1 .1.clone()].concat());
    let db = to_f64(&[ranks[0].1 .2.clone(), ranks[1].1 .2.clone()].concat());
    assert_close("corr da, 2 ranks", &da, &to_f64(&corr_one.1), tol);
    assert_close("corr db, 2 ranks", &db, &to_f64(&corr_one.2), tol);
}

/// Correlation penalty of one rank: (value, da, db).
type CorrOut = (f32, Vec<f32>, Vec<f32>);

fn corr_run(s: CorrShape, a: &[f32], b: &[f32], red: &mut dyn Reduce) -> CorrOut {
    let be = CpuBackend;
    let (a, b) = (a.to_vec(), b.to_vec());
    let (mut r, mut st) = (vec![0.0; s.r_len()], vec![0.0; s.stats_len()]);
    let v = be.corr_norm_fwd(s, &a, &b, &mut r, &mut st, red).unwrap();
    let (mut da, mut db) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    be.corr_norm_bwd(s, &a, &b, &r, &st, 1.0, &mut da, &mut db, red).unwrap();
    (v, da, db)
}
