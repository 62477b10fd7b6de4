//! Preemption: SIGTERM and SIGUSR1 (Slurm's `--signal=USR1@90`, a scheduler's kill warning) ask the run to stop.
//! The handler only records the signal; the trainer finishes the step in progress, every rank agrees to stop
//! after the same step (a vote), rank 0 writes `last`, and the process exits with `EXIT_PREEMPTED`, so a job
//! script can requeue and continue with `mfd train --resume auto`.

use std::sync::atomic::{AtomicI32, Ordering};

/// Exit status of a run stopped by a signal after writing its checkpoint (EX_TEMPFAIL: "try again later").
pub const EXIT_PREEMPTED: u8 = 75;

/// The last stop signal received (0 = none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Install the handler for SIGTERM and SIGUSR1 (idempotent). A second SIGTERM does not kill the process either;
/// SIGKILL still does, and the checkpoint format survives it (writes are atomic).
pub fn install() {
    for sig in [libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: sigaction with a handler that only stores to an atomic; the struct is zeroed then filled.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// The stop signal received so far, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A signal's name for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a stop signal",
    }
}
