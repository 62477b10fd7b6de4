//! The backend trait: the primitive ops (forward and backward of every layer kind, the fused head + BCE, the
//! independence penalties and the AMSGrad update) that the model and the training step are written against once.
//! `cpu` is the f32 numerical reference; a CUDA backend implements the same trait with device buffers.
//!
//! Key decisions:
//! - Buffers are opaque (`Buf` for f32 tensors, `Bytes` for u8 tokens, label bits and pooling argmaxes). Every op
//!   writes into caller-provided outputs: no hidden allocation of activations on the hot path (a backend may keep
//!   small per-channel scratch of its own).
//! - Input gradients (`dx`, `d_features`, ...) are overwritten; parameter gradients (`dw`, `dbias`, `dgamma`, ...)
//!   are accumulated (`+=`), so a parameter used twice simply gets two backward calls; zero them once per step.
//! - Ops whose statistics span the batch (batch norm, the Pearson penalty, the R2 score) take a `Reduce`: it sums
//!   small f64 partial vectors (per-channel sums, the sample count as the last element) across ranks, so N ranks
//!   at batch B/N compute the statistics of the global batch. `NoReduce` is the single-rank identity. Parameter
//!   gradients written by these ops are the local contributions (the data-parallel all-reduce adds them up).
//! - Scalar results (loss, penalty values) come back to the host as f32 (NaN while a device backend defers them:
//!   `Backend::defer_scalars`, on the training steps that are not logged).

// Op signatures mirror kernel launches: one argument per buffer reads better than argument structs.
#![allow(clippy::too_many_arguments)]

pub mod cpu;
pub mod cuda;
pub mod shapes;

pub use shapes::{
    AdamConfig, BnShape, ChannelCopy, Conv1dShape, CorrShape, CropShape, HeadShape, LinearShape, MatmulShape,
    PoolShape, R2Shape, StemShape, STEM_CHANNELS, TOKEN_N,
};

use crate::data::dataset::Dataset;
use crate::data::sampler::BatchPlan;
use crate::Result;

/// BatchNorm epsilon (PyTorch default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-statistics momentum (PyTorch default): running = (1 - m) running + m batch.
pub const BN_MOMENTUM: f64 = 0.1;
/// Negative slope of the leaky ReLU (PyTorch default), used by the adversary MLPs.
pub const LEAKY_SLOPE: f64 = 0.01;

/// Element-wise activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (PyTorch `approximate='tanh'`).
    Gelu,
    Relu,
    /// Leaky ReLU with slope `LEAKY_SLOPE`.
    LeakyRelu,
}

/// Sum of small statistic vectors across data-parallel ranks (an all-reduce); the identity on one rank.
pub trait Reduce {
    /// Replace `v` by its element-wise sum over all ranks (every rank calls with the same length).
    fn sum(&mut self, v: &mut [f64]) -> Result<()>;
    /// The same sum of a vector held in the CUDA backend's memory (the statistics ops finished on the device,
    /// issue 19 item 2). Default: download, `sum`, upload (a host round trip, e.g. over MPI); the identity
    /// (`NoReduce`, local statistics) overrides it with nothing, so one rank never leaves the device.
    fn sum_device(&mut self, be: &cuda::CudaBackend, v: &mut cuda::DevBuf<f64>) -> Result<()> {
        let mut host = be.host_vec(v)?;
        self.sum(&mut host)?;
        be.put(v, &host)
    }
}

/// The single-rank `Reduce`: statistics are those of the local batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReduce;

impl Reduce for NoReduce {
    fn sum(&mut self, _v: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn sum_device(&mut self, _be: &cuda::CudaBackend, _v: &mut cuda::DevBuf<f64>) -> Result<()> {
        Ok(())
    }
}

/// Primitive ops. Shapes: see `shapes`; (B, C, L) activations, (C_out, C_in, K) conv weights, (out, in) linear
/// weights. Every op checks buffer lengths against its shape and returns `MfdError::Shape` on a mismatch.
pub trait Backend: Send + Sync {
    /// An f32 tensor buffer.
    type Buf: Send + Sync;
    /// A u8 buffer (tokens, label bits, argmax of pooling).
    type Bytes: Send + Sync;
    /// A set of tiles held where the model runs, from which a step's batch is made there (`resident`,
    /// `encode_resident`): the CPU reads the memory-mapped dataset; CUDA keeps the genome codes, the tiles' records
    /// and their label bits on the device, so per step only the batch's tile indices cross the bus.
    type Resident: Send;

    fn name(&self) -> &'static str;
    /// Issue 19 item 2: `defer = true` tells the backend that the caller will not read the scalar results (losses,
    /// penalty values) of the ops that follow, so a device backend may leave them on the device rather than wait
    /// for them; those ops then return NaN. Returns whether scalars are deferred now (the CPU backend never defers:
    /// its scalars cost nothing). The trainer defers on the steps it does not log and ends deferral after each step.
    fn defer_scalars(&self, _defer: bool) -> bool {
        false
    }
    /// The device in words for logs (the GPU's name, so a virtual GPU run is never mistaken for a real one).
    fn device(&self) -> String {
        self.name().to_string()
    }
    /// Precision of the dense products (`train.precision`): the CUDA backend runs them on cuBLAS in that mode; the
    /// CPU backend computes in f32 whatever is asked and says so (a config stays portable across backends,
    /// `train.backend = "auto"` included). Returns the mode in effect.
    fn set_precision(&self, p: crate::config::Precision) -> crate::config::Precision {
        if p != crate::config::Precision::F32 {
            eprintln!(
                "mfd: train.precision = \"{p}\" applies to the CUDA backend; the {} backend computes in f32",
                self.name()
            );
        }
        crate::config::Precision::F32
    }

    /// The CUDA backend itself, for the NCCL communicator's device path (`dist::buckets`: gradient buckets summed
    /// in device memory); `None` on every other backend, which then takes the host-bucket path.
    fn as_cuda(&self) -> Option<&cuda::CudaBackend> {
        None
    }
    /// A buffer as the CUDA backend's device buffer (`Some` exactly when `as_cuda` is).
    fn cuda_buf<'a>(&self, _buf: &'a Self::Buf) -> Option<&'a cuda::DevBuf<f32>> {
        None
    }
    /// As `cuda_buf`, writable.
    fn cuda_buf_mut<'a>(&self, _buf: &'a mut Self::Buf) -> Option<&'a mut cuda::DevBuf<f32>> {
        None
    }

    // ---- memory ----------------------------------------------------------------------------------------------
    /// A zero-filled f32 buffer of `len` elements.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A zero-filled u8 buffer of `len` bytes.
    fn alloc_bytes(&self, len: usize) -> Result<Self::Bytes>;
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    fn upload_bytes(&self, host: &[u8]) -> Result<Self::Bytes>;
    /// Overwrite an existing buffer with host data of the same length.
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()>;
    fn write_bytes(&self, dst: &mut Self::Bytes, host: &[u8]) -> Result<()>;
    /// Copy a buffer into host memory of the same length.
    fn download(&self, src: &Self::Buf, host: &mut [f32]) -> Result<()>;
    fn download_bytes(&self, src: &Self::Bytes, host: &mut [u8]) -> Result<()>;
    /// Hold the tiles `tiles` (strictly ascending global indices, e.g. the training split) of `ds` for
    /// `encode_resident`.
    fn resident(&self, ds: &Dataset, tiles: &[u64]) -> Result<Self::Resident>;
    /// The tokens (B, T) and label rows (B, row_bytes) of `plan` (its tiles among the resident ones; shift and
    /// reverse complement applied) into `tokens` and `labels`, with the semantics of `data::window::encode_batch`
    /// and `gather_labels`.
    fn encode_resident(
        &self,
        r: &mut Self::Resident,
        ds: &Dataset,
        plan: &BatchPlan,
        t: usize,
        tokens: &mut Self::Bytes,
        labels: &mut Self::Bytes,
    ) -> Result<()>;
    fn buf_len(&self, buf: &Self::Buf) -> usize;
    fn bytes_len(&self, buf: &Self::Bytes) -> usize;
    /// The buffer's contents as a new host vector.
    fn to_host(&self, src: &Self::Buf) -> Result<Vec<f32>> {
        let mut host = vec![0.0; self.buf_len(src)];
        self.download(src, &mut host)?;
        Ok(host)
    }

    // ---- element-wise and layout helpers ---------------------------------------------------------------------
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;
    fn zero(&self, buf: &mut Self::Buf) -> Result<()> {
        self.fill(buf, 0.0)
    }
    /// dst = src (same length).
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    /// x *= alpha.
    fn scale(&self, alpha: f32, x: &mut Self::Buf) -> Result<()>;
    /// y += alpha x (gradient accumulation, residual backward).
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// out = a + b (residual forward).
    fn add(&self, a: &Self::Buf, b: &Self::Buf, out: &mut Self::Buf) -> Result<()>;
    /// Channel-slice copy between (B, C, L) tensors (split / concat and their backward); `accumulate` adds.
    fn channel_copy(&self, s: ChannelCopy, src: &Self::Buf, dst: &mut Self::Buf, accumulate: bool) -> Result<()>;
    /// y (B, C, L - 2 crop) = x[:, :, crop : L - crop].
    fn crop_fwd(&self, s: CropShape, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// dx (B, C, L) = dy zero-padded by `crop` on each side.
    fn crop_bwd(&self, s: CropShape, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;

    // ---- convolutions ----------------------------------------------------------------------------------------
    /// y (B, C_out, T) = bias + Conv1d over the one-hot dinucleotides of `tokens` (B, T) (values 0..=16; 16 is an
    /// all-zero column), computed as a gather of weight columns.
    fn stem_conv_fwd(
        &self,
        s: StemShape,
        tokens: &Self::Bytes,
        w: &Self::Buf,
        bias: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// dw (C_out, 16, K) += scatter of dy; dbias (C_out) += sum of dy over (B, T). Tokens have no gradient.
    fn stem_conv_bwd(
        &self,
        s: StemShape,
        tokens: &Self::Bytes,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        dbias: &mut Self::Buf,
    ) -> Result<()>;
    /// y (B, C_out, L) = conv(x (B, C_in, L), w (C_out, C_in, K)), dilation d, 'same' zero padding, no bias.
    fn conv1d_fwd(&self, s: Conv1dShape, x: &Self::Buf, w: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// dx = conv^T(dy); dw += correlation of dy with x.
    fn conv1d_bwd(
        &self,
        s: Conv1dShape,
        x: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
        dw: &mut Self::Buf,
    ) -> Result<()>;

    // ---- batch norm ------------------------------------------------------------------------------------------
    /// Training mode: normalise with the batch mean and biased variance over (B, L) (eps `BN_EPS`), save the mean
    /// and 1/sqrt(var + eps) (C each) for backward, update running mean/var with momentum `BN_MOMENTUM` and the
    /// unbiased variance (as PyTorch).
    fn batch_norm_train_fwd(
        &self,
        s: BnShape,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        save_mean: &mut Self::Buf,
        save_invstd: &mut Self::Buf,
        y: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()>;
    /// Eval mode: normalise with the running statistics.
    fn batch_norm_eval_fwd(
        &self,
        s: BnShape,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// Backward of the training-mode forward: dx written, dgamma and dbeta (C) accumulated.
    fn batch_norm_bwd(
        &self,
        s: BnShape,
        x: &Self::Buf,
        dy: &Self::Buf,
        gamma: &Self::Buf,
        save_mean: &Self::Buf,
        save_invstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()>;

    /// BatchNorm (training mode) then GELU, the pre-activation block's first two ops: act = gelu(bn(x)), the
    /// statistics as `batch_norm_train_fwd`. `normed` (B, C, L) is the backend's to keep for
    /// `batch_norm_gelu_bwd`: this default stores bn(x) there; the CPU backend leaves it alone and recomputes bn(x)
    /// from x in backward (one pass over memory fewer each way).
    fn batch_norm_gelu_train_fwd(
        &self,
        s: BnShape,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        save_mean: &mut Self::Buf,
        save_invstd: &mut Self::Buf,
        normed: &mut Self::Buf,
        act: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.batch_norm_train_fwd(s, x, gamma, beta, running_mean, running_var, save_mean, save_invstd, normed, red)?;
        self.activation_fwd(Activation::Gelu, normed, act)
    }
    /// Backward of `batch_norm_gelu_train_fwd` from d_act: dx written, plus `skip` when given (the gradient of a
    /// residual path around the block); dgamma and dbeta accumulated. `normed` is as the forward left it;
    /// `d_normed` (B, C, L) is scratch.
    fn batch_norm_gelu_bwd(
        &self,
        s: BnShape,
        x: &Self::Buf,
        normed: &Self::Buf,
        d_act: &Self::Buf,
        gamma: &Self::Buf,
        _beta: &Self::Buf,
        save_mean: &Self::Buf,
        save_invstd: &Self::Buf,
        skip: Option<&Self::Buf>,
        d_normed: &mut Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()> {
        self.activation_bwd(Activation::Gelu, normed, d_act, d_normed)?;
        self.batch_norm_bwd(s, x, d_normed, gamma, save_mean, save_invstd, dx, dgamma, dbeta, red)?;
        if let Some(skip) = skip {
            self.axpy(1.0, skip, dx)?;
        }
        Ok(())
    }

    // ---- activations and pooling -----------------------------------------------------------------------------
    /// y = act(x), any shape.
    fn activation_fwd(&self, act: Activation, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// dx = act'(x) dy.
    fn activation_bwd(&self, act: Activation, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// y (B, C, L/2) = max over pairs; argmax (B, C, L/2) = 0 or 1, the position inside the pair (first on ties).
    fn max_pool_fwd(&self, s: PoolShape, x: &Self::Buf, y: &mut Self::Buf, argmax: &mut Self::Bytes) -> Result<()>;
    /// dx (B, C, L): dy routed to the remembered argmax, zero elsewhere (and at an odd last position).
    fn max_pool_bwd(&self, s: PoolShape, dy: &Self::Buf, argmax: &Self::Bytes, dx: &mut Self::Buf) -> Result<()>;

    // ---- dense -----------------------------------------------------------------------------------------------
    /// c (m, n) = alpha op(a) op(b) + beta c (see `MatmulShape`); beta = 0 ignores c's old contents.
    fn matmul(
        &self,
        s: MatmulShape,
        a: &Self::Buf,
        trans_a: bool,
        b: &Self::Buf,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        c: &mut Self::Buf,
    ) -> Result<()>;
    /// y (N, out) = x (N, in) w^T + bias.
    fn linear_fwd(
        &self,
        s: LinearShape,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// dx = dy w (written, skipped when None); dw += dy^T x; dbias += column sums of dy.
    fn linear_bwd(
        &self,
        s: LinearShape,
        x: &Self::Buf,
        w: &Self::Buf,
        dy: &Self::Buf,
        dx: Option<&mut Self::Buf>,
        dw: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- output layer + loss ---------------------------------------------------------------------------------
    /// probs (B, O) = sigmoid(f_tech W_tech^T + f_bio W_bio^T + bias); returns the BCE loss, mean over B*O, each
    /// log term clamped at -100 (torch `BCELoss` on probabilities).
    fn head_bce_fwd(
        &self,
        s: HeadShape,
        features: &Self::Buf,
        w_tech: &Self::Buf,
        w_bio: &Self::Buf,
        bias: &Self::Buf,
        labels: &Self::Bytes,
        probs: &mut Self::Buf,
    ) -> Result<f32>;
    /// Backward from the saved probs: dz (B, O) work buffer receives d loss / d logit as torch autograd computes it
    /// through sigmoid + BCELoss; d_features (B, 2C) written; dw_tech, dw_bio (O, C) and dbias (O) accumulated.
    fn head_bce_bwd(
        &self,
        s: HeadShape,
        features: &Self::Buf,
        w_tech: &Self::Buf,
        w_bio: &Self::Buf,
        probs: &Self::Buf,
        labels: &Self::Bytes,
        dz: &mut Self::Buf,
        d_features: &mut Self::Buf,
        dw_tech: &mut Self::Buf,
        dw_bio: &mut Self::Buf,
        dbias: &mut Self::Buf,
    ) -> Result<()>;
    /// Eval: logit_tech, logit_bio (B, O) without bias, and probs = sigmoid(logit_tech + logit_bio + bias).
    fn head_logits(
        &self,
        s: HeadShape,
        features: &Self::Buf,
        w_tech: &Self::Buf,
        w_bio: &Self::Buf,
        bias: &Self::Buf,
        logit_tech: &mut Self::Buf,
        logit_bio: &mut Self::Buf,
        probs: &mut Self::Buf,
    ) -> Result<()>;

    // ---- independence penalty --------------------------------------------------------------------------------
    /// R (C_a, C_b) = z(a)^T z(b) / N with z the column standardisation (mean, unbiased std; constant columns give
    /// 0); returns ||R||_F. Saves R and the column statistics for backward.
    fn corr_norm_fwd(
        &self,
        s: CorrShape,
        a: &Self::Buf,
        b: &Self::Buf,
        r: &mut Self::Buf,
        stats: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<f32>;
    /// da (N, C_a), db (N, C_b) written: gradient of dvalue * ||R||_F.
    fn corr_norm_bwd(
        &self,
        s: CorrShape,
        a: &Self::Buf,
        b: &Self::Buf,
        r: &Self::Buf,
        stats: &Self::Buf,
        dvalue: f32,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()>;
    /// total_R2: S = sum_j clip((1/N) sum_n z(pred)_nj z(target)_nj, -1, 1)^2. Saves statistics (5C + 1).
    fn r2_score_fwd(
        &self,
        s: R2Shape,
        pred: &Self::Buf,
        target: &Self::Buf,
        stats: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<f32>;
    /// dpred, dtarget (N, C) written: gradient of dscore * S (zero where the clip is active).
    fn r2_score_bwd(
        &self,
        s: R2Shape,
        pred: &Self::Buf,
        target: &Self::Buf,
        stats: &Self::Buf,
        dscore: f32,
        dpred: &mut Self::Buf,
        dtarget: &mut Self::Buf,
        red: &mut dyn Reduce,
    ) -> Result<()>;

    // ---- optimiser -------------------------------------------------------------------------------------------
    /// One PyTorch Adam(amsgrad=True) update of `param` in place; `step` is the 1-based step count after this
    /// update. The gradient is not modified (weight decay is applied to a copy).
    fn amsgrad_step(
        &self,
        cfg: &AdamConfig,
        step: u64,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        vmax: &mut Self::Buf,
    ) -> Result<()>;
}
