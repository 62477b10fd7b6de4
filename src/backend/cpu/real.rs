//! `Real`: the float type the CPU kernels are generic over. The backend runs them at f32; the gradient checks run
//! the very same code at f64, so finite differences test the shipped kernels rather than a hand-written twin.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    /// Machine epsilon of the type.
    const EPS: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// ln(1 + self), accurate near 0.
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    /// tanh for the hot element-wise loops: branch-free so that the loops vectorise. f32: exp-based, absolute error
    /// below 1e-7 (`tanh_f32`); f64: the library tanh (the gradient checks need full precision).
    fn tanh_vec(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn is_nan(self) -> bool;
    /// c = alpha a b + beta c on raw strided (m, k) x (k, n) matrices: `matrixmultiply`'s sgemm / dgemm.
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: every addressed element inside its allocation, c's elements distinct and not
    /// accessed by anyone else during the call. Only `gemm.rs` calls this, after checking its views.
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $tanh_vec:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPS: Self = <$t>::EPSILON;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn tanh_vec(self) -> Self {
                $tanh_vec(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            unsafe fn gemm_raw(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm, tanh_f32);
impl_real!(f64, matrixmultiply::dgemm, f64::tanh);

/// tanh(u) in f32 without libm calls, so loops over it vectorise: with z = 2 |u| (clamped at 18, where
/// tanh = 1 in f32), e^z - 1 = (2^n - 1) + 2^n (e^r - 1) (n = round(z / ln 2), |r| <= ln 2 / 2 + rounding,
/// e^r - 1 by its degree-8 Taylor polynomial, no cancellation), tanh |u| = (e^z - 1) / (e^z - 1 + 2), then the
/// sign of u. Relative error a few ulp, absolute error below 1e-7 (test below); NaN propagates.
#[inline(always)]
pub fn tanh_f32(u: f32) -> f32 {
    let a = u.abs();
    let z = (2.0 * a).min(18.0);
    // Round to nearest by adding and subtracting 1.5 * 2^23 (f32::round is a scalar call without SSE4.1).
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = z * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    // r = z - n ln 2 with ln 2 split in two parts (Cody-Waite) so that n ln2_hi is exact.
    let r = (z - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let q = r
        * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r / 40320.0)))))));
    // 2^n from the bits: `shifted`'s low mantissa bits hold n (0 <= n <= 26), so its bits minus SHIFTER's are n.
    // (`n as i32` would be Rust's saturating cast, which LLVM does not vectorise: the loop ran scalar, 2.2x slower.)
    let two_n = f32::from_bits((shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) + 127) << 23);
    let em1 = (two_n - 1.0) + two_n * q;
    let t = em1 / (em1 + 2.0);
    let signed = if u < 0.0 { -t } else { t };
    if u.is_nan() {
        u
    } else {
        signed
    }
}

/// Dot product of two equal-length slices, accumulated in `T`.
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

#[cfg(test)]
mod tests {
    #[test]
    fn tanh_f32_is_within_1e7_of_tanh() {
        let mut worst = (0.0f64, 0.0f32);
        for i in -200_000..=200_000 {
            let u = i as f32 * 1e-4; // [-20, 20], through both branches and the clamp
            let err = (super::tanh_f32(u) as f64 - (u as f64).tanh()).abs();
            if err > worst.0 {
                worst = (err, u);
            }
        }
        assert!(worst.0 < 1e-7, "max |tanh_f32 - tanh| = {:.3e} at u = {}", worst.0, worst.1);
        assert_eq!(super::tanh_f32(0.0), 0.0);
        assert!(super::tanh_f32(f32::NAN).is_nan());
    }
}
