//! Dense products on cuBLAS (issue 19 item 1): one handle per backend on the backend's stream, and a row-major,
//! strided-batched GEMM that every dense product goes through (linear layers of the adversary MLPs and
//! hypernetworks via `matmul`, the head's backward products, the Pearson-penalty products, the per-tap
//! convolutions in `ops.rs`).
//!
//! Key decisions:
//! - cuBLAS is column-major; a row-major (r, c) matrix with row stride ld is the column-major (c, r) matrix with
//!   leading dimension ld, so row-major C = op(A) op(B) is computed as column-major C^T = op(B)^T op(A)^T: the
//!   operands swap places and m and n swap, with no copies.
//! - Every call is `cublasGemmStridedBatchedEx` with f32 operands, f32 output and f32 accumulation; the precision
//!   mode (`train.precision`) only picks the compute type: f32 -> CUBLAS_COMPUTE_32F (no tensor-core rounding),
//!   tf32 -> CUBLAS_COMPUTE_32F_FAST_TF32, bf16 -> CUBLAS_COMPUTE_32F_FAST_16BF (cuBLAS rounds the f32 operands to
//!   bf16 inside the GEMM, so no conversion kernel or bf16 copies are needed). Master weights, gradients, the loss
//!   and every other kernel stay f32 in every mode.
//! - Extents are checked against the buffers before the call (offset + (batch - 1) stride + the last element of an
//!   operand inside its buffer), and sizes must fit cuBLAS's 32-bit ints: errors, never an out-of-bounds access.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};

use super::{CudaBackend, DevBuf};
use crate::config::Precision;
use crate::{MfdError, Result};

/// The cuBLAS handle of a backend and its precision mode.
pub(crate) struct Blas {
    handle: CudaBlas,
    precision: AtomicU8,
}

impl Blas {
    /// A handle bound to `stream`; an error when libcublas is missing or the handle cannot be created.
    pub(crate) fn new(stream: Arc<CudaStream>) -> Result<Blas> {
        // SAFETY: only dlopens the library by its candidate names; no symbol is called.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(MfdError::other(
                "cuBLAS (libcublas.so.13) not found on LD_LIBRARY_PATH (the nvidia-cublas wheel's nvidia/cu13/lib)",
            ));
        }
        let handle = CudaBlas::new(stream).map_err(|e| MfdError::other(format!("cuBLAS handle: {e:?}")))?;
        Ok(Blas { handle, precision: AtomicU8::new(Precision::F32 as u8) })
    }

    pub(crate) fn precision(&self) -> Precision {
        match self.precision.load(Ordering::Relaxed) {
            x if x == Precision::Tf32 as u8 => Precision::Tf32,
            x if x == Precision::Bf16 as u8 => Precision::Bf16,
            _ => Precision::F32,
        }
    }

    pub(crate) fn set_precision(&self, p: Precision) {
        self.precision.store(p as u8, Ordering::Relaxed);
    }
}

/// A row-major operand of a (batched) GEMM: matrix `i` of the batch starts at `offset + i * stride` of `buf`, has
/// row stride `ld` and is used transposed when `trans`.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub buf: &'a DevBuf<f32>,
    pub offset: usize,
    pub ld: usize,
    pub trans: bool,
    pub stride: usize,
}

/// Elements spanned by `batch` row-major (rows, cols) matrices with row stride `ld`, `stride` apart, from `off`.
fn extent(rows: usize, cols: usize, ld: usize, off: usize, stride: usize, batch: usize) -> Option<usize> {
    if rows == 0 || cols == 0 || batch == 0 {
        return Some(off);
    }
    let last = (batch - 1).checked_mul(stride)?.checked_add((rows - 1).checked_mul(ld)?)?;
    off.checked_add(last)?.checked_add(cols)
}

fn int(name: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| MfdError::Shape { op: "gemm", msg: format!("{name} = {v} exceeds cuBLAS's 32-bit sizes") })
}

impl CudaBackend {
    /// Row-major, strided-batched C_i (m, n) = alpha op(A_i) op(B_i) + beta C_i for i < batch, with C_i at
    /// `c_off + i * c_stride` of `c` and row stride `ldc`. A is (m, k) or (k, m) when transposed; B is (k, n) or
    /// (n, k). beta = 0 overwrites C (old contents, even NaN, ignored). Computed in the backend's precision mode.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_batched(
        &self,
        (m, n, k, batch): (usize, usize, usize, usize),
        alpha: f32,
        a: Operand<'_>,
        b: Operand<'_>,
        beta: f32,
        c: &mut DevBuf<f32>,
        (c_off, ldc, c_stride): (usize, usize, usize),
    ) -> Result<()> {
        let (ar, ac) = if a.trans { (k, m) } else { (m, k) };
        let (br, bc) = if b.trans { (n, k) } else { (k, n) };
        for (name, rows, cols, ld, off, stride, have) in [
            ("a", ar, ac, a.ld, a.offset, a.stride, a.buf.len),
            ("b", br, bc, b.ld, b.offset, b.stride, b.buf.len),
            ("c", m, n, ldc, c_off, c_stride, c.len),
        ] {
            let need = extent(rows, cols, ld, off, stride, batch);
            if need.is_none_or(|need| need > have) || ld < cols.max(1) {
                return Err(MfdError::Shape {
                    op: "matmul",
                    msg: format!(
                        "operand {name}: {batch} x ({rows}, {cols}) with row stride {ld} >= {cols}, batch stride \
                         {stride}, from {off} needs {} elements, has {have}",
                        need.map_or("too many".to_string(), |v| v.to_string())
                    ),
                });
            }
        }
        if m == 0 || n == 0 || batch == 0 {
            return Ok(());
        }
        let (mi, ni, ki, bi) = (int("m", m)?, int("n", n)?, int("k", k)?, int("batch", batch)?);
        let (lda, ldb, ldc_i) = (int("lda", a.ld)?, int("ldb", b.ld)?, int("ldc", ldc)?);
        let (sa, sb, sc) = (a.stride as i64, b.stride as i64, c_stride as i64);
        let compute = match self.blas.precision() {
            Precision::F32 => cublasComputeType_t::CUBLAS_COMPUTE_32F,
            Precision::Tf32 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            Precision::Bf16 => cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
        };
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let f32t = cudaDataType::CUDA_R_32F;
        let stream = &self.stream;
        let (pa, _ga) = a.buf.data.device_ptr(stream);
        let (pb, _gb) = b.buf.data.device_ptr(stream);
        let (pc, _gc) = c.data.device_ptr_mut(stream);
        let (pa, pb, pc) = (pa + 4 * a.offset as u64, pb + 4 * b.offset as u64, pc + 4 * c_off as u64);
        // Column-major C^T (n, m) = op(B)^T (n, k) op(A)^T (k, m): B first, A second.
        // SAFETY: every operand's extent over the whole batch was checked against its buffer above; the scalars
        // are host f32 (the handle's default pointer mode) and live across the call; the guards keep the buffers'
        // stream ordering.
        unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                *self.blas.handle.handle(),
                op(b.trans),
                op(a.trans),
                ni,
                mi,
                ki,
                (&alpha) as *const f32 as *const _,
                pb as *const _,
                f32t,
                ldb,
                sb,
                pa as *const _,
                f32t,
                lda,
                sa,
                (&beta) as *const f32 as *const _,
                pc as *mut _,
                f32t,
                ldc_i,
                sc,
                bi,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| MfdError::other(format!("cuBLAS GEMM ({m} x {n} x {k}, batch {batch}): {e:?}")))
    }
}
