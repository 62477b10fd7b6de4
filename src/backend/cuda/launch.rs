//! Launch plumbing shared by the launchers: the checked `launch!` macro, launch geometries and length checks.
//!
//! Key decision: every scalar kernel argument is bound to a local of the exact C type (i64, f32, i32, u64) before
//! the launch, because the launch builder keeps pointers to its arguments until the launch.

use cudarc::driver::LaunchConfig;

use crate::{MfdError, Result};

/// Threads per block of the 1-D kernels; also `BLOCK` in kernels/common.cuh (block reductions assume it).
pub const BLOCK: u32 = 256;
/// Upper bound of blocks in a 1-D grid-stride launch (the loops cover any remainder).
const MAX_BLOCKS: usize = 1 << 16;

/// 1-D grid-stride geometry for `n` work items (n > 0).
pub fn grid1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// `blocks` blocks of `BLOCK` threads (one block per channel / weight / row), with `smem` dynamic shared bytes.
pub fn per_block(blocks: usize, blocks_y: usize, smem: usize) -> Result<LaunchConfig> {
    if blocks > i32::MAX as usize || blocks_y > 65_535 || smem > 48 * 1024 {
        return Err(MfdError::other(format!(
            "launch geometry out of range: {blocks} x {blocks_y} blocks, {smem} bytes of shared memory"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks.max(1) as u32, blocks_y.max(1) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: smem as u32,
    })
}

/// 16 x 16 tiles over an (rows, cols) output (gemm_f32, head_fwd_f32).
pub fn tiles16(rows: usize, cols: usize) -> Result<LaunchConfig> {
    let (gx, gy) = (cols.div_ceil(16).max(1), rows.div_ceil(16).max(1));
    if gy > 65_535 || gx > i32::MAX as usize {
        return Err(MfdError::other(format!("tiled launch out of range: {rows} x {cols} outputs")));
    }
    Ok(LaunchConfig { grid_dim: (gx as u32, gy as u32, 1), block_dim: (16, 16, 1), shared_mem_bytes: 0 })
}

/// `MfdError::Shape` unless `got == want`.
pub fn check(op: &'static str, name: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(MfdError::Shape { op, msg: format!("{name} has {got} elements, expected {want}") })
    }
}

/// Launch kernel `$name` of backend `$be` with geometry `$cfg` and the given arguments (device buffers as
/// `&buf.data` / `&mut buf.data`, scalars as references to typed locals). Errors name the kernel.
macro_rules! launch {
    ($be:expr, $name:literal, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let f = $be.kernels.get($name)?;
        use cudarc::driver::PushKernelArg as _;
        let mut b = $be.stream.launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the caller (one launcher per kernel) checked every buffer length against the op's shape, and the
        // arguments match the kernel's C parameter list in order and type (see the .cu file).
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| $crate::backend::cuda::device::cuda_err($name, e))
    }};
}
pub(crate) use launch;
