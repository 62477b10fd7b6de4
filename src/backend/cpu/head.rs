//! The fused output layer + loss: logit = f_tech W_tech^T + f_bio W_bio^T + b over features (B, 2C) (technical
//! [0, C), biological [C, 2C)), p = sigmoid(logit), loss = torch BCELoss on probabilities (each log clamped at
//! -100, mean over B*O) against bit-packed labels. The backward uses the logit gradient exactly as autograd
//! computes it through sigmoid + BCELoss, dz = (p - y) / max(p (1 - p), 1e-12) / (B O) * (1 - p) p, so a
//! saturated f32 sigmoid (p = 0 or 1) gives 0 rather than the textbook p - y.

use rayon::prelude::*;

use super::real::{dot, Real};
use crate::backend::shapes::HeadShape;

/// torch's clamp of each log term of BCELoss.
const LOG_CLAMP: f64 = -100.0;
/// torch's lower bound of p (1 - p) in the BCELoss backward.
const BCE_GRAD_EPS: f64 = 1e-12;

/// Label bit o of row b: byte o / 8, bit o % 8 (LSB first).
fn label(labels: &[u8], row_bytes: usize, b: usize, o: usize) -> bool {
    (labels[b * row_bytes + o / 8] >> (o % 8)) & 1 == 1
}

fn sigmoid<T: Real>(z: T) -> T {
    T::ONE / (T::ONE + (-z).exp())
}

/// probs (B, O); returns the mean BCE (accumulated in f64).
pub fn head_bce_fwd<T: Real>(
    s: HeadShape,
    features: &[T],
    w_tech: &[T],
    w_bio: &[T],
    bias: &[T],
    labels: &[u8],
    probs: &mut [T],
) -> f64 {
    if s.o == 0 || s.b == 0 {
        return 0.0;
    }
    let (c, o) = (s.c, s.o);
    let clamp = T::from_f64(LOG_CLAMP);
    let total: f64 = probs
        .par_chunks_mut(o)
        .enumerate()
        .map(|(b, prow)| {
            let (ft, fb) = features[b * 2 * c..(b + 1) * 2 * c].split_at(c);
            let mut row_loss = 0.0f64;
            for (j, p) in prow.iter_mut().enumerate() {
                let z = dot(ft, &w_tech[j * c..(j + 1) * c]) + dot(fb, &w_bio[j * c..(j + 1) * c]) + bias[j];
                *p = sigmoid(z);
                // torch: (y - 1) max(log1p(-p), -100) - y max(ln p, -100), y in {0, 1}.
                let term = if label(labels, s.row_bytes, b, j) { p.ln() } else { (-*p).ln_1p() };
                row_loss -= term.max(clamp).to_f64();
            }
            row_loss
        })
        .sum();
    total / (s.b * s.o) as f64
}

/// dz (B, O) written from probs and labels; d_features (B, 2C) written; dw_tech, dw_bio (O, C), dbias (O) += .
pub fn head_bce_bwd<T: Real>(
    s: HeadShape,
    features: &[T],
    w_tech: &[T],
    w_bio: &[T],
    probs: &[T],
    labels: &[u8],
    dz: &mut [T],
    d_features: &mut [T],
    dw_tech: &mut [T],
    dw_bio: &mut [T],
    dbias: &mut [T],
) {
    if s.o == 0 || s.b == 0 {
        d_features.fill(T::ZERO);
        return;
    }
    let (c, o) = (s.c, s.o);
    let count = T::from_f64((s.b * s.o) as f64);
    let eps = T::from_f64(BCE_GRAD_EPS);
    dz.par_chunks_mut(o).enumerate().for_each(|(b, zrow)| {
        for (j, d) in zrow.iter_mut().enumerate() {
            let p = probs[b * o + j];
            let y = if label(labels, s.row_bytes, b, j) { T::ONE } else { T::ZERO };
            // In torch's order: BCELoss backward ((p - y) / max((1 - p) p, eps), then / numel for the mean),
            // then sigmoid backward (dp (1 - p) p).
            let dp = (p - y) / ((T::ONE - p) * p).max(eps) / count;
            *d = dp * (T::ONE - p) * p;
        }
    });
    let dz = &*dz;
    // d_features[b] = [dz[b] W_tech | dz[b] W_bio].
    if c > 0 {
        d_features.par_chunks_mut(2 * c).enumerate().for_each(|(b, drow)| {
            drow.fill(T::ZERO);
            let (dt, db) = drow.split_at_mut(c);
            for j in 0..o {
                let g = dz[b * o + j];
                for (d, &w) in dt.iter_mut().zip(&w_tech[j * c..(j + 1) * c]) {
                    *d += g * w;
                }
                for (d, &w) in db.iter_mut().zip(&w_bio[j * c..(j + 1) * c]) {
                    *d += g * w;
                }
            }
        });
    }
    // dW_tech[j] += sum_b dz[b, j] f_tech[b]; same for bio; dbias[j] += sum_b dz[b, j]. One class per task.
    let chunk = c.max(1);
    dw_tech.par_chunks_mut(chunk).zip(dw_bio.par_chunks_mut(chunk)).zip(dbias.par_iter_mut()).enumerate().for_each(
        |(j, ((wt, wb), dbj))| {
            for b in 0..s.b {
                let g = dz[b * o + j];
                *dbj += g;
                let (ft, fb) = features[b * 2 * c..(b + 1) * 2 * c].split_at(c);
                for (d, &f) in wt.iter_mut().zip(ft) {
                    *d += g * f;
                }
                for (d, &f) in wb.iter_mut().zip(fb) {
                    *d += g * f;
                }
            }
        },
    );
}

/// Eval: logit_tech, logit_bio (B, O) (no bias) and probs = sigmoid(logit_tech + logit_bio + bias).
pub fn head_logits<T: Real>(
    s: HeadShape,
    features: &[T],
    w_tech: &[T],
    w_bio: &[T],
    bias: &[T],
    logit_tech: &mut [T],
    logit_bio: &mut [T],
    probs: &mut [T],
) {
    if s.o == 0 {
        return;
    }
    let (c, o) = (s.c, s.o);
    logit_tech.par_chunks_mut(o).zip(logit_bio.par_chunks_mut(o)).zip(probs.par_chunks_mut(o)).enumerate().for_each(
        |(b, ((lt, lb), pr))| {
            let (ft, fb) = features[b * 2 * c..(b + 1) * 2 * c].split_at(c);
            for j in 0..o {
                lt[j] = dot(ft, &w_tech[j * c..(j + 1) * c]);
                lb[j] = dot(fb, &w_bio[j * c..(j + 1) * c]);
                pr[j] = sigmoid(lt[j] + lb[j] + bias[j]);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    fn random_labels(rng: &mut Rng, s: HeadShape) -> Vec<u8> {
        (0..s.labels_len()).map(|_| rng.below(256) as u8).collect()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(12);
        // O = 11 spans two label bytes; row_bytes 8 as the dataset pads rows to whole u64 words.
        let s = HeadShape { b: 3, c: 4, o: 11, row_bytes: 8 };
        let f = rand_vec(&mut rng, s.features_len(), 1.0);
        let wt = rand_vec(&mut rng, s.weight_len(), 1.0);
        let wb = rand_vec(&mut rng, s.weight_len(), 1.0);
        let bias = rand_vec(&mut rng, s.o, 0.5);
        let labels = random_labels(&mut rng, s);
        let run = |f: &[f64], wt: &[f64], wb: &[f64], bias: &[f64]| {
            let mut p = vec![0.0; s.out_len()];
            head_bce_fwd(s, f, wt, wb, bias, &labels, &mut p)
        };
        let mut p = vec![0.0; s.out_len()];
        head_bce_fwd(s, &f, &wt, &wb, &bias, &labels, &mut p);
        let mut dz = vec![0.0; s.out_len()];
        let mut df = vec![0.0; s.features_len()];
        let (mut dwt, mut dwb, mut db) = (vec![0.0; s.weight_len()], vec![0.0; s.weight_len()], vec![0.0; s.o]);
        head_bce_bwd(s, &f, &wt, &wb, &p, &labels, &mut dz, &mut df, &mut dwt, &mut dwb, &mut db);
        assert_close("head d_features", &df, &fd_grad(&f, |f| run(f, &wt, &wb, &bias)), FD_TOL);
        assert_close("head dw_tech", &dwt, &fd_grad(&wt, |w| run(&f, w, &wb, &bias)), FD_TOL);
        assert_close("head dw_bio", &dwb, &fd_grad(&wb, |w| run(&f, &wt, w, &bias)), FD_TOL);
        assert_close("head dbias", &db, &fd_grad(&bias, |b| run(&f, &wt, &wb, b)), FD_TOL);
    }

    #[test]
    fn log_clamp_and_saturated_gradient() {
        // One class, C = 1, features zero: logit = bias. bias = -200 saturates the f32 sigmoid to p = 0 exactly.
        let s = HeadShape { b: 1, c: 1, o: 1, row_bytes: 1 };
        let f = [0.0f32, 0.0];
        let mut p = [0.0f32];
        // Label 1 with p = 0: ln(0) = -inf clamps to -100, so the loss is exactly 100.
        let loss = head_bce_fwd(s, &f, &[0.0], &[0.0], &[-200.0], &[1], &mut p);
        assert_eq!(p[0], 0.0);
        assert_eq!(loss, 100.0);
        // Gradient through sigmoid + BCELoss: (0 - 1) / max(0, 1e-12) * 0 = 0 (not p - y = -1).
        let (mut dz, mut df, mut dwt, mut dwb, mut db) = ([9.0f32], [9.0f32; 2], [0.0f32], [0.0f32], [0.0f32]);
        head_bce_bwd(s, &f, &[0.0], &[0.0], &p, &[1], &mut dz, &mut df, &mut dwt, &mut dwb, &mut db);
        assert_eq!(dz[0], 0.0);
        assert_eq!(db[0], 0.0);
        // Label 0 with p = 0: loss ln(1) = 0.
        assert_eq!(head_bce_fwd(s, &f, &[0.0], &[0.0], &[-200.0], &[0], &mut p), 0.0);
        // Unsaturated: logit 0, p = 0.5, loss ln 2, dz = p - y = -0.5 (the textbook value).
        let loss = head_bce_fwd(s, &f, &[0.0], &[0.0], &[0.0], &[1], &mut p);
        assert!((loss - std::f64::consts::LN_2).abs() < 1e-7);
        head_bce_bwd(s, &f, &[0.0], &[0.0], &p, &[1], &mut dz, &mut df, &mut dwt, &mut dwb, &mut db);
        assert!((dz[0] + 0.5).abs() < 1e-7, "{}", dz[0]);
    }

    #[test]
    fn eval_logits_split_into_halves() {
        let s = HeadShape { b: 1, c: 2, o: 2, row_bytes: 1 };
        let f = [1.0f64, 2.0, 3.0, 4.0]; // tech (1, 2), bio (3, 4)
        let wt = [1.0, 0.0, 0.0, 1.0];
        let wb = [1.0, 1.0, 0.0, -1.0];
        let (mut lt, mut lb, mut p) = ([0.0; 2], [0.0; 2], [0.0; 2]);
        head_logits(s, &f, &wt, &wb, &[0.5, 0.0], &mut lt, &mut lb, &mut p);
        assert_eq!(lt, [1.0, 2.0]);
        assert_eq!(lb, [7.0, -4.0]);
        assert!((p[0] - 1.0 / (1.0 + (-8.5f64).exp())).abs() < 1e-15);
        assert!((p[1] - 1.0 / (1.0 + 2.0f64.exp())).abs() < 1e-15);
    }
}
