//! PyTorch `Adam(amsgrad=True)` update (single-tensor path), operation for operation in f32:
//! g' = g + wd p (if wd != 0); m = lerp(m, g', 1 - b1); v = v b2 + (1 - b2) g'^2; vmax = max(vmax, v);
//! p += -(lr / (1 - b1^t)) * m / (sqrt(vmax) / sqrt(1 - b2^t) + eps). Scalars (bias corrections, step size) are
//! computed in f64 as Python does and rounded to f32 where torch hands them to an f32 kernel.

use rayon::prelude::*;

use crate::backend::shapes::AdamConfig;

const CHUNK: usize = 1 << 14;

/// torch's lerp: start + w (end - start) for w < 0.5, end - (end - start) (1 - w) otherwise.
#[inline(always)]
fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w < 0.5 {
        start + w * (end - start)
    } else {
        end - (end - start) * (1.0 - w)
    }
}

/// The per-element constants of one update.
#[derive(Clone, Copy)]
struct Coeffs {
    neg_step_size: f32,
    bc2_sqrt: f32,
    w1: f32,
    b2: f32,
    w2: f32,
    wd: f32,
    eps: f32,
}

/// One update of `param` in place; `step` is the 1-based count including this update.
pub fn amsgrad_step(
    cfg: &AdamConfig,
    step: u64,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    vmax: &mut [f32],
) {
    let t = step as f64;
    let bias_correction1 = 1.0 - cfg.beta1.powf(t);
    let bias_correction2_sqrt = (1.0 - cfg.beta2.powf(t)).sqrt();
    let k = Coeffs {
        neg_step_size: (-(cfg.lr / bias_correction1)) as f32,
        bc2_sqrt: bias_correction2_sqrt as f32,
        w1: (1.0 - cfg.beta1) as f32,
        b2: cfg.beta2 as f32,
        w2: (1.0 - cfg.beta2) as f32,
        wd: cfg.weight_decay as f32,
        eps: cfg.eps as f32,
    };
    let decay = cfg.weight_decay != 0.0;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK).zip(vmax.par_chunks_mut(CHUNK)))
        .for_each(|(((p, g), m), (v, vmax))| {
            #[cfg(target_arch = "x86_64")]
            if super::activation::avx512_available() {
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { update_wide(k, decay, p, g, m, v, vmax) };
            }
            update(k, decay, p, g, m, v, vmax)
        });
}

/// The update over one chunk. The slices are cut to one length first so that the loop has no bounds checks and
/// vectorises; the operations per element are those of the scalar rule above, in the same order.
#[inline(always)]
fn update(k: Coeffs, decay: bool, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], vmax: &mut [f32]) {
    let n = p.len();
    let (g, m, v, vmax) = (&g[..n], &mut m[..n], &mut v[..n], &mut vmax[..n]);
    for i in 0..n {
        let g = if decay { g[i] + k.wd * p[i] } else { g[i] };
        m[i] = lerp(m[i], g, k.w1);
        v[i] = v[i] * k.b2 + k.w2 * g * g;
        vmax[i] = vmax[i].max(v[i]);
        let denom = vmax[i].sqrt() / k.bc2_sqrt + k.eps;
        p[i] += k.neg_step_size * (m[i] / denom);
    }
}

/// `update` built for AVX-512 (16 lanes; the same operations, so the same bits).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_wide(
    k: Coeffs,
    decay: bool,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    vmax: &mut [f32],
) {
    update(k, decay, p, g, m, v, vmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update rule in f64, written out from the PyTorch documentation.
    fn reference(cfg: &AdamConfig, grads: &[f64], p0: f64) -> Vec<f64> {
        let (mut p, mut m, mut v, mut vmax) = (p0, 0.0, 0.0, 0.0f64);
        let mut out = vec![];
        for (i, &g) in grads.iter().enumerate() {
            let t = (i + 1) as f64;
            let g = g + cfg.weight_decay * p;
            m = cfg.beta1 * m + (1.0 - cfg.beta1) * g;
            v = cfg.beta2 * v + (1.0 - cfg.beta2) * g * g;
            vmax = vmax.max(v);
            p -= cfg.lr / (1.0 - cfg.beta1.powf(t)) * m / (vmax.sqrt() / (1.0 - cfg.beta2.powf(t)).sqrt() + cfg.eps);
            out.push(p);
        }
        out
    }

    #[test]
    fn first_steps_match_hand_values() {
        let cfg = AdamConfig::default();
        // Step 1 with g = 0.5: m = 0.05, v = 2.5e-4, m_hat = 0.5, v_hat = 0.25, update = lr 0.5 / (0.5 + 1e-8).
        let (mut p, mut m, mut v, mut vmax) = ([1.0f32], [0.0f32], [0.0f32], [0.0f32]);
        amsgrad_step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v, &mut vmax);
        let want1 = 1.0 - 1e-3 * 0.5 / (0.5 + 1e-8);
        // f32 state: ~1 ulp of 1.0 (6e-8) per step.
        assert!((p[0] as f64 - want1).abs() < 2e-7, "{} vs {want1}", p[0]);
        assert!((m[0] - 0.05).abs() < 1e-8 && (v[0] - 2.5e-4).abs() < 1e-10);
        // Step 2 with a smaller gradient: v decreases, AMSGrad keeps the larger vmax.
        amsgrad_step(&cfg, 2, &mut p, &[0.01], &mut m, &mut v, &mut vmax);
        assert!(v[0] < vmax[0], "v {} vmax {}", v[0], vmax[0]);
        assert_eq!(vmax[0], 2.5e-4f32);
        let grads = [0.5, 0.01, -0.3, 0.2, 0.0];
        let want = reference(&cfg, &grads, 1.0);
        assert!((p[0] as f64 - want[1]).abs() < 4e-7, "{} vs {}", p[0], want[1]);
        for (i, &g) in grads.iter().enumerate().skip(2) {
            amsgrad_step(&cfg, i as u64 + 1, &mut p, &[g as f32], &mut m, &mut v, &mut vmax);
            assert!((p[0] as f64 - want[i]).abs() < 1e-6, "step {}: {} vs {}", i + 1, p[0], want[i]);
        }
    }

    /// The AVX-512 build of the update gives the baseline build's bits, with and without weight decay.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_update_gives_the_baseline_bits() {
        if !crate::backend::cpu::activation::avx512_available() {
            eprintln!("SKIP: this CPU has no AVX-512F; the baseline loop is the only one that runs here");
            return;
        }
        let n = 1003;
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 - 500.0) * 1e-3).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 * 1e-3 - 0.05).collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        for wd in [0.0f32, 0.01] {
            let k = Coeffs { neg_step_size: -1e-3, bc2_sqrt: 0.03, w1: 0.1, b2: 0.999, w2: 1e-3, wd, eps: 1e-8 };
            let mut plain = (p0.clone(), vec![0.01f32; n], vec![1e-4f32; n], vec![2e-4f32; n]);
            let mut wide = plain.clone();
            for _ in 0..3 {
                update(k, wd != 0.0, &mut plain.0, &g, &mut plain.1, &mut plain.2, &mut plain.3);
                // SAFETY: `avx512_available()` said the CPU has AVX-512F.
                unsafe { update_wide(k, wd != 0.0, &mut wide.0, &g, &mut wide.1, &mut wide.2, &mut wide.3) };
            }
            assert_eq!(bits(&plain.0), bits(&wide.0), "param, wd {wd}");
            assert_eq!(bits(&plain.1), bits(&wide.1), "m, wd {wd}");
            assert_eq!(bits(&plain.3), bits(&wide.3), "vmax, wd {wd}");
        }
    }

    #[test]
    fn coupled_weight_decay_and_gradient_untouched() {
        let cfg = AdamConfig { lr: 0.1, weight_decay: 0.5, ..AdamConfig::default() };
        let grads = [0.2, -0.1, 0.4];
        let want = reference(&cfg, &grads, 2.0);
        let (mut p, mut m, mut v, mut vmax) = ([2.0f32], [0.0f32], [0.0f32], [0.0f32]);
        for (i, &g) in grads.iter().enumerate() {
            let grad = [g as f32];
            amsgrad_step(&cfg, i as u64 + 1, &mut p, &grad, &mut m, &mut v, &mut vmax);
            assert_eq!(grad[0], g as f32);
            // lr 0.1 moves p by ~0.1 per step; f32 rounding of p ~ 2.4e-7.
            assert!((p[0] as f64 - want[i]).abs() < 1e-6, "step {}: {} vs {}", i + 1, p[0], want[i]);
        }
    }
}
