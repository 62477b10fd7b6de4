/* counters.h: driver calls the virtual GPU counts, readable through `vgpu_counters()` (C layout: a test reads them
 * with dlsym from the already-loaded libcuda.so.1). */
#pragma once

namespace vgpu {

struct Counters {
    unsigned long long launches;
    unsigned long long synchronizations; /* cuCtxSynchronize, cuStreamSynchronize, cuEventSynchronize */
    unsigned long long htod_copies, htod_bytes;
    unsigned long long dtoh_copies, dtoh_bytes;
    unsigned long long allocations;
};

inline Counters& counters() {
    static Counters c{};
    return c;
}

} // namespace vgpu
