//! Shape structs of the backend ops. Every op takes one of these instead of loose integers, so a call site reads
//! like the layer it runs and a backend can check every buffer length against one place before launching.
//!
//! Layouts (PyTorch's, so checkpoints map 1:1): activations (B, C, L) row-major channels-first; conv weight
//! (C_out, C_in, K); linear weight (out, in); matrices (N, C) row-major.

use crate::{MfdError, Result};

/// Number of stem input channels: the 16 N-free dinucleotides (channel = 4a + b, A=0 C=1 G=2 T=3).
pub const STEM_CHANNELS: usize = 16;
/// Token value of an N-containing dinucleotide: an all-zero one-hot column.
pub const TOKEN_N: u8 = 16;

fn shape_err(op: &'static str, msg: impl Into<String>) -> MfdError {
    MfdError::Shape { op, msg: msg.into() }
}

/// Stem convolution over dinucleotide tokens: tokens (B, T) u8 -> (B, C_out, T); weight (C_out, 16, K), bias
/// (C_out); 'same' padding (K - 1) / 2 each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StemShape {
    pub b: usize,
    pub t: usize,
    pub c_out: usize,
    pub k: usize,
}

impl StemShape {
    pub fn pad(&self) -> usize {
        (self.k - 1) / 2
    }
    pub fn tokens_len(&self) -> usize {
        self.b * self.t
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * STEM_CHANNELS * self.k
    }
    pub fn out_len(&self) -> usize {
        self.b * self.c_out * self.t
    }
    pub fn validate(&self) -> Result<()> {
        if self.k.is_multiple_of(2) {
            return Err(shape_err("stem_conv", format!("kernel width {} must be odd for 'same' padding", self.k)));
        }
        Ok(())
    }
}

/// Bias-free Conv1d with 'same' zero padding: x (B, C_in, L) -> y (B, C_out, L); weight (C_out, C_in, K);
/// padding (K - 1) * dilation / 2 on each side (K odd, so it is symmetric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dShape {
    pub b: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub l: usize,
    pub k: usize,
    pub dilation: usize,
}

impl Conv1dShape {
    pub fn pad(&self) -> usize {
        (self.k - 1) * self.dilation / 2
    }
    pub fn x_len(&self) -> usize {
        self.b * self.c_in * self.l
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.k
    }
    pub fn y_len(&self) -> usize {
        self.b * self.c_out * self.l
    }
    pub fn validate(&self) -> Result<()> {
        if self.k.is_multiple_of(2) || self.dilation == 0 {
            return Err(shape_err(
                "conv1d",
                format!("kernel width {} must be odd and dilation {} positive", self.k, self.dilation),
            ));
        }
        Ok(())
    }
}

/// BatchNorm over (B, C, L) activations (statistics over B and L per channel); use L = 1 for (B, F) matrices.
/// B is this rank's batch; the statistics span all ranks through the op's `Reduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    pub b: usize,
    pub c: usize,
    pub l: usize,
}

impl BnShape {
    pub fn x_len(&self) -> usize {
        self.b * self.c * self.l
    }
}

/// MaxPool1d(2, 2), floor mode: (B, C, L) -> (B, C, L / 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    pub b: usize,
    pub c: usize,
    pub l: usize,
}

impl PoolShape {
    pub fn l_out(&self) -> usize {
        self.l / 2
    }
    pub fn x_len(&self) -> usize {
        self.b * self.c * self.l
    }
    pub fn y_len(&self) -> usize {
        self.b * self.c * self.l_out()
    }
}

/// Cropping along L: (B, C, L) -> (B, C, L - 2 crop), keeping [crop, L - crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropShape {
    pub b: usize,
    pub c: usize,
    pub l: usize,
    pub crop: usize,
}

impl CropShape {
    pub fn l_out(&self) -> usize {
        self.l.saturating_sub(2 * self.crop)
    }
    pub fn x_len(&self) -> usize {
        self.b * self.c * self.l
    }
    pub fn y_len(&self) -> usize {
        self.b * self.c * self.l_out()
    }
    pub fn validate(&self) -> Result<()> {
        if 2 * self.crop >= self.l {
            return Err(shape_err(
                "crop",
                format!("cropping {} per side leaves nothing of length {}", self.crop, self.l),
            ));
        }
        Ok(())
    }
}

/// Copy of `n` channels between two (B, C, L) tensors: dst[:, dst_off + j, :] (+)= src[:, src_off + j, :] for
/// j < n. Split, concat and their backward passes (technical = [0, C), biological = [C, 2C)) are all this op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCopy {
    pub b: usize,
    pub l: usize,
    pub c_src: usize,
    pub src_off: usize,
    pub c_dst: usize,
    pub dst_off: usize,
    pub n: usize,
}

impl ChannelCopy {
    pub fn src_len(&self) -> usize {
        self.b * self.c_src * self.l
    }
    pub fn dst_len(&self) -> usize {
        self.b * self.c_dst * self.l
    }
    pub fn validate(&self) -> Result<()> {
        if self.src_off + self.n > self.c_src || self.dst_off + self.n > self.c_dst {
            return Err(shape_err(
                "channel_copy",
                format!(
                    "channels [{}, {}) of {} -> [{}, {}) of {} out of range",
                    self.src_off,
                    self.src_off + self.n,
                    self.c_src,
                    self.dst_off,
                    self.dst_off + self.n,
                    self.c_dst
                ),
            ));
        }
        Ok(())
    }
}

/// General matrix product C (m, n) = alpha op(A) op(B) + beta C with op(A) (m, k), op(B) (k, n), all row-major.
/// A is stored (m, k), or (k, m) when transposed; B is stored (k, n), or (n, k) when transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Linear layer y (N, out) = x (N, in) W^T + b with W (out, in), b (out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    pub n: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// Fused output layer + BCE: features (B, 2C) (technical [0, C), biological [C, 2C)), W_tech and W_bio (O, C),
/// bias (O), label bits (B, row_bytes) with bit o of a row at byte o / 8, bit o % 8 (LSB first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadShape {
    pub b: usize,
    pub c: usize,
    pub o: usize,
    pub row_bytes: usize,
}

impl HeadShape {
    pub fn features_len(&self) -> usize {
        self.b * 2 * self.c
    }
    pub fn weight_len(&self) -> usize {
        self.o * self.c
    }
    pub fn labels_len(&self) -> usize {
        self.b * self.row_bytes
    }
    pub fn out_len(&self) -> usize {
        self.b * self.o
    }
    pub fn validate(&self) -> Result<()> {
        if self.row_bytes * 8 < self.o {
            return Err(shape_err(
                "head_bce",
                format!("{} label bytes per row cannot hold {} classes", self.row_bytes, self.o),
            ));
        }
        Ok(())
    }
}

/// Cross-correlation of two (N, C_a) and (N, C_b) matrices: R (C_a, C_b). N is this rank's row count; the
/// statistics and R span all ranks through the op's `Reduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrShape {
    pub n: usize,
    pub c_a: usize,
    pub c_b: usize,
}

impl CorrShape {
    pub fn r_len(&self) -> usize {
        self.c_a * self.c_b
    }
    /// Saved column statistics: [mean_a (C_a), invstd_a (C_a), mean_b (C_b), invstd_b (C_b), N (global rows)].
    pub fn stats_len(&self) -> usize {
        2 * (self.c_a + self.c_b) + 1
    }
}

/// Per-feature correlation score of a prediction and a target, both (N, C); N is this rank's row count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2Shape {
    pub n: usize,
    pub c: usize,
}

impl R2Shape {
    pub fn x_len(&self) -> usize {
        self.n * self.c
    }
    /// Saved state: [mean_pred, invstd_pred, mean_target, invstd_target, r] (C each), then N (global rows).
    pub fn stats_len(&self) -> usize {
        5 * self.c + 1
    }
}

/// PyTorch `Adam(amsgrad=True)` hyper-parameters (coupled L2 weight decay, as torch's Adam, not AdamW).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}
