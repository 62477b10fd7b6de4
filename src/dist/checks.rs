//! Run-time checks of a distributed run, switched on by environment variables (for tests and debugging):
//! - `MFD_INJECT_FAIL=RANK:STEP`: rank RANK fails with an error before global step STEP (0-based), to test that
//!   one failing rank ends the whole job.
//! - `MFD_CHECK_SYNC=1`: after every step every rank compares a hash of all its tensors (parameters and BatchNorm
//!   buffers) with rank 0's and fails on a difference.

use crate::backend::Backend;
use crate::dist::comm::Comm;
use crate::error::{MfdError, Result};
use crate::model::params::Params;

/// The (rank, step) of `MFD_INJECT_FAIL`, if set and well formed.
pub fn injected_failure() -> Result<Option<(usize, u64)>> {
    let Ok(v) = std::env::var("MFD_INJECT_FAIL") else { return Ok(None) };
    let parsed = v.split_once(':').and_then(|(r, s)| Some((r.trim().parse().ok()?, s.trim().parse().ok()?)));
    parsed.map(Some).ok_or_else(|| MfdError::config("MFD_INJECT_FAIL", format!("'{v}': expected RANK:STEP, e.g. 1:3")))
}

/// Fails when `inject` names this rank and step.
pub fn maybe_fail(inject: Option<(usize, u64)>, rank: usize, step: u64) -> Result<()> {
    match inject {
        Some((r, s)) if r == rank && s == step => {
            Err(MfdError::other(format!("injected failure (MFD_INJECT_FAIL={r}:{s}) before step {s}")))
        }
        _ => Ok(()),
    }
}

pub fn sync_check_enabled() -> bool {
    std::env::var("MFD_CHECK_SYNC").is_ok_and(|v| v == "1")
}

/// FNV-1a over the bytes of every tensor.
pub fn params_hash<B: Backend>(be: &B, params: &Params<B>) -> Result<u64> {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in &params.values {
        for x in be.to_host(v)? {
            for b in x.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    Ok(h)
}

/// Error unless this rank's tensors hash like rank 0's (the hash travels as four exact 16-bit pieces).
pub fn check_identical<B: Backend>(be: &B, comm: &dyn Comm, params: &Params<B>, step: u64) -> Result<()> {
    let h = params_hash(be, params)?;
    let mine: Vec<f64> = (0..4).map(|i| ((h >> (16 * i)) & 0xffff) as f64).collect();
    let mut root = mine.clone();
    comm.broadcast_f64(&mut root, 0)?;
    if root != mine {
        return Err(MfdError::other(format!(
            "rank {}: parameters differ from rank 0's after step {step} (hash {h:016x})",
            comm.rank()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_failure_fires_on_its_rank_and_step_only() {
        assert!(maybe_fail(Some((1, 3)), 1, 3).is_err());
        assert!(maybe_fail(Some((1, 3)), 0, 3).is_ok());
        assert!(maybe_fail(Some((1, 3)), 1, 2).is_ok());
        assert!(maybe_fail(None, 0, 0).is_ok());
    }
}
