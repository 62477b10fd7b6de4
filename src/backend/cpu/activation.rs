//! Element-wise activations: GELU (tanh approximation, PyTorch `approximate='tanh'`, the trunk's), ReLU and leaky
//! ReLU (slope 0.01, the adversary's). Backward takes the forward input, as PyTorch's GELU backward does.
//! In f32 the tanh is `real::tanh_f32` (branch-free, vectorised; within 2e-7 of tanh), not libm's scalar call.

use rayon::prelude::*;

use super::real::Real;
use crate::backend::{Activation, LEAKY_SLOPE};

const CHUNK: usize = 1 << 14;
/// sqrt(2 / pi).
const GELU_BETA: f64 = 0.797_884_560_802_865_4;
const GELU_KAPPA: f64 = 0.044_715;

#[inline(always)]
fn gelu<T: Real>(x: T) -> T {
    let (beta, kappa, half) = (T::from_f64(GELU_BETA), T::from_f64(GELU_KAPPA), T::from_f64(0.5));
    let inner = beta * (x + kappa * x * x * x);
    half * x * (T::ONE + inner.tanh_vec())
}

/// d gelu / dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) beta (1 + 3 kappa x^2), u = beta (x + kappa x^3).
#[inline(always)]
fn gelu_grad<T: Real>(x: T) -> T {
    let (beta, kappa, half) = (T::from_f64(GELU_BETA), T::from_f64(GELU_KAPPA), T::from_f64(0.5));
    let x2 = x * x;
    let t = (beta * (x + kappa * x2 * x)).tanh_vec();
    half * (T::ONE + t) + half * x * (T::ONE - t * t) * beta * (T::ONE + T::from_f64(3.0) * kappa * x2)
}

fn apply<T: Real>(act: Activation, x: T) -> T {
    match act {
        Activation::Gelu => gelu(x),
        Activation::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        Activation::LeakyRelu => {
            if x > T::ZERO {
                x
            } else {
                x * T::from_f64(LEAKY_SLOPE)
            }
        }
    }
}

/// Derivative as PyTorch defines it at the kink (0 for ReLU and the slope for leaky ReLU at x = 0).
fn derivative<T: Real>(act: Activation, x: T) -> T {
    match act {
        Activation::Gelu => gelu_grad(x),
        Activation::Relu => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
        Activation::LeakyRelu => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::from_f64(LEAKY_SLOPE)
            }
        }
    }
}

/// y[i] = f(x[i]) over one chunk (so that the loop over a given `f` vectorises).
#[inline(always)]
fn map_plain<T: Real>(x: &[T], y: &mut [T], f: &impl Fn(T) -> T) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = f(xv);
    }
}

/// dx[i] = f(x[i]) dy[i] over one chunk.
#[inline(always)]
fn map_grad_plain<T: Real>(x: &[T], dy: &[T], dx: &mut [T], f: &impl Fn(T) -> T) {
    for ((d, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
        *d = f(xv) * g;
    }
}

/// v[i] = f(v[i]) in place over one row or chunk.
#[inline(always)]
fn map_in_place_plain<T: Real>(v: &mut [T], f: &impl Fn(T) -> T) {
    for x in v.iter_mut() {
        *x = f(*x);
    }
}

/// v[i] = f(v[i]) dy[i] in place.
#[inline(always)]
fn map_grad_in_place_plain<T: Real>(v: &mut [T], dy: &[T], f: &impl Fn(T) -> T) {
    for (x, &g) in v.iter_mut().zip(dy) {
        *x = f(*x) * g;
    }
}

/// Whether the CPU has AVX-512F, for the loops built twice (here and in `adam`).
#[cfg(target_arch = "x86_64")]
pub fn avx512_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// The same loops compiled for AVX-512 (16 f32 lanes; the build's baseline is AVX2), chosen at run time when the CPU
/// has it. Only lane width changes (no FMA contraction, the same operations per element), so the bits are those of
/// the baseline loop. GELU is bound by its tanh arithmetic (~40 operations per element), which this widens.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{map_grad_in_place_plain, map_grad_plain, map_in_place_plain, map_plain, Real};

    pub use super::avx512_available as available;

    /// # Safety
    /// The CPU must have AVX-512F (`available()`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn map<T: Real>(x: &[T], y: &mut [T], f: &impl Fn(T) -> T) {
        map_plain(x, y, f)
    }

    /// # Safety
    /// As `map`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn map_grad<T: Real>(x: &[T], dy: &[T], dx: &mut [T], f: &impl Fn(T) -> T) {
        map_grad_plain(x, dy, dx, f)
    }

    /// # Safety
    /// As `map`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn map_in_place<T: Real>(v: &mut [T], f: &impl Fn(T) -> T) {
        map_in_place_plain(v, f)
    }

    /// # Safety
    /// As `map`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn map_grad_in_place<T: Real>(v: &mut [T], dy: &[T], f: &impl Fn(T) -> T) {
        map_grad_in_place_plain(v, dy, f)
    }
}

fn map_chunk<T: Real>(x: &[T], y: &mut [T], f: &impl Fn(T) -> T) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { wide::map(x, y, f) };
    }
    map_plain(x, y, f)
}

fn map_grad_chunk<T: Real>(x: &[T], dy: &[T], dx: &mut [T], f: &impl Fn(T) -> T) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { wide::map_grad(x, dy, dx, f) };
    }
    map_grad_plain(x, dy, dx, f)
}

/// v = gelu(v) in place, one thread (a row of the fused BatchNorm + GELU; the same bits as `activation_fwd`).
pub fn gelu_in_place<T: Real>(v: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { wide::map_in_place(v, &gelu) };
    }
    map_in_place_plain(v, &gelu)
}

/// v = gelu'(v) dy in place, one thread (the same bits as `activation_bwd`).
pub fn gelu_grad_in_place<T: Real>(v: &mut [T], dy: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if wide::available() {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { wide::map_grad_in_place(v, dy, &gelu_grad) };
    }
    map_grad_in_place_plain(v, dy, &gelu_grad)
}

/// The loops are written per activation (not `apply(act, x)` per element) so that each one vectorises.
pub fn activation_fwd<T: Real>(act: Activation, x: &[T], y: &mut [T]) {
    fn run<T: Real>(x: &[T], y: &mut [T], f: impl Fn(T) -> T + Sync) {
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| map_chunk(xc, yc, &f));
    }
    match act {
        Activation::Gelu => run(x, y, gelu),
        Activation::Relu => run(x, y, |v| apply(Activation::Relu, v)),
        Activation::LeakyRelu => run(x, y, |v| apply(Activation::LeakyRelu, v)),
    }
}

pub fn activation_bwd<T: Real>(act: Activation, x: &[T], dy: &[T], dx: &mut [T]) {
    fn run<T: Real>(x: &[T], dy: &[T], dx: &mut [T], f: impl Fn(T) -> T + Sync) {
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(dc, (xc, gc))| map_grad_chunk(xc, gc, dc, &f));
    }
    match act {
        Activation::Gelu => run(x, dy, dx, gelu_grad),
        Activation::Relu => run(x, dy, dx, |v| derivative(Activation::Relu, v)),
        Activation::LeakyRelu => run(x, dy, dx, |v| derivative(Activation::LeakyRelu, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::testutil::*;
    use crate::rng::Rng;

    #[test]
    fn gelu_tanh_matches_known_values() {
        // Reference values of 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) evaluated in f64 (Python math);
        // the erf GELU differs in the 4th digit (gelu_erf(1) = 0.8413447), so these pin the tanh form.
        let cases = [
            (1.0, 0.841_191_990_608_276_8),
            (-1.0, -0.158_808_009_391_723_24),
            (2.0, 1.954_597_694_087_775),
            (0.5, 0.345_714_009_825_143_94),
            (-3.0, -0.003_637_392_081_772_994_3),
            (0.0, 0.0),
        ];
        // f64: exact formula, so agreement to rounding; f32: ~1 ulp of tanh and a few multiplications.
        for (x, want) in cases {
            let mut y = [0.0f64];
            activation_fwd(Activation::Gelu, &[x], &mut y);
            assert!((y[0] - want).abs() < 1e-15, "gelu({x}) = {} != {want}", y[0]);
            let mut y32 = [0.0f32];
            activation_fwd(Activation::Gelu, &[x as f32], &mut y32);
            assert!((y32[0] as f64 - want).abs() < 1e-6, "f32 gelu({x}) = {} != {want}", y32[0]);
        }
    }

    /// The AVX-512 loops give the baseline loops' bits (GELU and its gradient over [-12, 12], zeros, NaN).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_loops_give_the_baseline_bits() {
        if !wide::available() {
            eprintln!("SKIP: this CPU has no AVX-512F; the baseline loops are the only ones that run here");
            return;
        }
        let mut x: Vec<f32> = (0..100_003).map(|i| (i as f32 - 50_001.0) * 2.4e-4).collect();
        x.extend([0.0, -0.0, f32::NAN, 1e-30, -1e-30, 88.0, -88.0]);
        let dy: Vec<f32> = x.iter().map(|v| 1.0 - 0.5 * v).collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        let (mut plain, mut wide_y) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        map_plain(&x, &mut plain, &gelu);
        // SAFETY: `wide::available()` said the CPU has AVX-512F.
        unsafe { wide::map(&x, &mut wide_y, &gelu) };
        assert_eq!(bits(&plain), bits(&wide_y), "gelu");
        map_grad_plain(&x, &dy, &mut plain, &gelu_grad);
        // SAFETY: as above.
        unsafe { wide::map_grad(&x, &dy, &mut wide_y, &gelu_grad) };
        assert_eq!(bits(&plain), bits(&wide_y), "gelu_grad");
        // The in-place loops of the fused BatchNorm + GELU (`gelu_in_place` and `gelu_grad_in_place` take the wide
        // path on this CPU) against the baseline out-of-place loops.
        map_plain(&x, &mut plain, &gelu);
        wide_y.copy_from_slice(&x);
        gelu_in_place(&mut wide_y);
        assert_eq!(bits(&plain), bits(&wide_y), "gelu in place");
        map_grad_plain(&x, &dy, &mut plain, &gelu_grad);
        wide_y.copy_from_slice(&x);
        gelu_grad_in_place(&mut wide_y, &dy);
        assert_eq!(bits(&plain), bits(&wide_y), "gelu_grad in place");
    }

    #[test]
    fn relu_and_leaky_values() {
        let x = [-2.0f32, -0.0, 0.0, 3.0];
        let mut y = [0.0f32; 4];
        activation_fwd(Activation::Relu, &x, &mut y);
        assert_eq!(y, [0.0, 0.0, 0.0, 3.0]);
        activation_fwd(Activation::LeakyRelu, &x, &mut y);
        assert_eq!(y, [-0.02, 0.0, 0.0, 3.0]);
        let mut dx = [0.0f32; 4];
        activation_bwd(Activation::LeakyRelu, &x, &[1.0; 4], &mut dx);
        assert_eq!(dx, [0.01, 0.01, 0.01, 1.0]);
        activation_bwd(Activation::Relu, &x, &[1.0; 4], &mut dx);
        assert_eq!(dx, [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(299_792_458);
        for act in [Activation::Gelu, Activation::Relu, Activation::LeakyRelu] {
            // Values away from the ReLU kink at 0 (|x| >= 0.1 > FD_STEP) so central differences are exact there.
            let x: Vec<f64> =
                rand_vec(&mut rng, 40, 3.0).into_iter().map(|v| if v.abs() < 0.1 { v + 0.2 } else { v }).collect();
            let p = rand_vec(&mut rng, 40, 1.0);
            let loss = |x: &[f64]| {
                let mut y = vec![0.0; x.len()];
                activation_fwd(act, x, &mut y);
                project(&y, &p)
            };
            let mut dx = vec![0.0; x.len()];
            activation_bwd(act, &x, &p, &mut dx);
            assert_close(&format!("{act:?} dx"), &dx, &fd_grad(&x, loss), FD_TOL);
        }
    }
}
