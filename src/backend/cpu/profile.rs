//! Per-op wall-clock accounting of the CPU backend, for `mfd bench train`'s breakdown. Off by default: one relaxed
//! atomic load per op call when off; when on, each backend call adds its elapsed time to a named total (a mutex
//! per call is nothing next to ops that take 0.1-100 ms).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// (op name, seconds, calls), in first-seen order.
static TOTALS: Mutex<Vec<(&'static str, f64, u64)>> = Mutex::new(Vec::new());

/// Turn the accounting on or off (totals are kept until `take`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The totals since the last call, (op, seconds, calls), largest first; resets them.
pub fn take() -> Vec<(&'static str, f64, u64)> {
    let mut v = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Run `f`, adding its wall time to `op`'s total when the accounting is on.
pub(super) fn timed<R>(op: &'static str, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    let dt = t0.elapsed().as_secs_f64();
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|e| e.0 == op) {
        Some(e) => {
            e.1 += dt;
            e.2 += 1;
        }
        None => totals.push((op, dt, 1)),
    }
    r
}
