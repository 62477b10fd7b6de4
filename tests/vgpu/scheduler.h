/* scheduler.h: runs one kernel launch as fibers on the calling OS thread (used by cuda.cpp).
 *
 * Every GPU thread of a block is a ucontext fiber; the blocks of the grid run one after another. A fiber runs
 * until it reaches a synchronisation point (__syncthreads, a warp collective) or returns. When no fiber can run,
 * the scheduler resolves the waits: a warp collective completes when every lane of its mask waits at the same
 * call site with the same mask; the block barrier completes when every live thread waits at the same
 * __syncthreads. Anything else (a lane missing, a thread at another barrier, a thread that returned while others
 * wait) is reported with the call sites, and the launch fails. The order in which fibers and blocks are run is
 * forward, reverse or seeded-random (VGPU_ORDER), so a missing barrier changes the result. */
#pragma once
#include <string>

#include "vgpu_kernel.h"

namespace vgpu {

/* One compiled module's hook points (resolved with dlsym by the driver). */
struct ModuleHooks {
    vgpu_thread_state** current;
    vgpu_hook_table* hooks;
    char* shared_begin;
    char* shared_end;
};

struct LaunchGeometry {
    dim3 grid, block;
    unsigned dynamic_shared;
};

/* Runs the launch; returns "" on success, else the report (kernel name, block, thread, file:line). */
std::string run_launch(const char* kernel, const ModuleHooks& module, const vgpu_dev::Launch& launch,
                       const LaunchGeometry& g);

/* The allocation an address falls into, for fault reports ("" when none); implemented by the driver. */
std::string describe_address(const void* addr);

} // namespace vgpu
