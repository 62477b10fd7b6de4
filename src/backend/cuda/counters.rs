//! Driver-call counters of the virtual GPU (tests/vgpu/counters.h): launches, synchronisations, copies and bytes
//! each way, allocations. The fake libcuda.so.1 exports `vgpu_counters()`; a real driver does not, so `read` is
//! `None` there (issue 19 item 5: the budget is enforced without a GPU, by tests/vgpu_counts.rs).

/// The counters, in the C layout of `vgpu::Counters`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounts {
    pub launches: u64,
    /// cuCtxSynchronize, cuStreamSynchronize, cuEventSynchronize.
    pub synchronizations: u64,
    pub htod_copies: u64,
    pub htod_bytes: u64,
    pub dtoh_copies: u64,
    pub dtoh_bytes: u64,
    pub allocations: u64,
}

impl DriverCounts {
    /// `self - earlier`, field by field (saturating: the counters only grow).
    pub fn since(&self, earlier: &DriverCounts) -> DriverCounts {
        DriverCounts {
            launches: self.launches.saturating_sub(earlier.launches),
            synchronizations: self.synchronizations.saturating_sub(earlier.synchronizations),
            htod_copies: self.htod_copies.saturating_sub(earlier.htod_copies),
            htod_bytes: self.htod_bytes.saturating_sub(earlier.htod_bytes),
            dtoh_copies: self.dtoh_copies.saturating_sub(earlier.dtoh_copies),
            dtoh_bytes: self.dtoh_bytes.saturating_sub(earlier.dtoh_bytes),
            allocations: self.allocations.saturating_sub(earlier.allocations),
        }
    }
}

/// The virtual GPU's counters now, when the loaded libcuda.so.1 is the virtual GPU; `None` on a real driver or
/// when no driver is loaded.
pub fn read() -> Option<DriverCounts> {
    type Getter = unsafe extern "C" fn() -> *const DriverCounts;
    for name in [c"libcuda.so.1", c"libcuda.so"] {
        // SAFETY: RTLD_NOLOAD only looks up an already loaded library (no constructor runs); the symbol, when
        // present, is the virtual GPU's `vgpu::Counters* vgpu_counters()`, whose struct layout `DriverCounts`
        // mirrors; the handle is closed after the read (the library stays loaded: cudarc holds it).
        unsafe {
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            if h.is_null() {
                continue;
            }
            let sym = libc::dlsym(h, c"vgpu_counters".as_ptr());
            let out = if sym.is_null() {
                None
            } else {
                let get: Getter = std::mem::transmute::<*mut libc::c_void, Getter>(sym);
                let p = get();
                (!p.is_null()).then(|| std::ptr::read_volatile(p))
            };
            libc::dlclose(h);
            return out;
        }
    }
    None
}
