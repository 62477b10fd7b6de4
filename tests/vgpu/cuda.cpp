/* cuda.cpp: the fake CUDA driver (libcuda.so.1) of the virtual GPU. cudarc resolves each driver symbol by name at
 * first use, so this library implements exactly the entry points mfd reaches, with the real signatures.
 *
 * One device with H100 SXM attributes and launch limits. "Device" memory is host memory: every allocation is its
 * own mapping whose end (rounded up to VGPU_ALIGN, default 16 bytes) touches a PROT_NONE guard page, poisoned with
 * 0xFF at allocation (NaN as f32/f64), with canary bytes in the slack before and after it that are checked after
 * every launch, so out-of-bounds stores are reported. Streams execute every operation at once, in call order
 * (in-order semantics; events are always complete). Kernel execution is serialised process-wide (one mutex) and
 * runs on the scheduler's fibers. A failed launch returns CUDA_ERROR_LAUNCH_FAILED and cuGetErrorString then gives
 * the report (also printed to stderr with the prefix "vgpu:"). */
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "counters.h"
#include "scheduler.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUmemoryPool;

enum : int {
    OK = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    INVALID_PTX = 218,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    ILLEGAL_ADDRESS = 700,
    LAUNCH_OUT_OF_RESOURCES = 701,
    LAUNCH_FAILED = 719,
    NOT_SUPPORTED = 801,
};

namespace {

std::mutex g_mutex;        /* guards the tables below and serialises kernel execution */
/* Detail of the calling thread's last failure, returned by cuGetErrorString: per thread, because parallel tests
 * fail launches concurrently and each reads its own error right after the failing call. */
thread_local std::string g_last_report;
int g_context_tag, g_pool_tag;

CUresult fail(CUresult code, const std::string& what) {
    g_last_report = what;
    fprintf(stderr, "vgpu: %s\n", what.c_str());
    return code;
}

/* ---- memory ---- */
const size_t CANARY_FRONT = 64;
const unsigned char CANARY = 0xA5;
struct Allocation {
    char* map;
    size_t map_len;
    size_t size;     /* bytes asked for */
    size_t span;     /* size rounded up to the alignment */
};
std::map<uintptr_t, Allocation> g_allocs; /* by start address */
size_t g_live_bytes = 0;

size_t alignment() {
    static size_t a = [] {
        const char* e = getenv("VGPU_ALIGN");
        size_t v = e ? strtoul(e, nullptr, 10) : 16;
        return v && (v & (v - 1)) == 0 ? v : 16;
    }();
    return a;
}

CUresult allocate(CUdeviceptr* out, size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), al = alignment();
    size_t span = (size + al - 1) / al * al;
    if (span == 0) span = al;
    size_t data_pages = (span + CANARY_FRONT + page - 1) / page;
    size_t len = (data_pages + 2) * page;
    char* m = (char*)mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return fail(OUT_OF_MEMORY, "cuMemAlloc: out of host memory for " + std::to_string(size));
    mprotect(m, page, PROT_NONE);
    mprotect(m + len - page, page, PROT_NONE);
    char* start = m + len - page - span;
    memset(start - CANARY_FRONT, CANARY, CANARY_FRONT);
    memset(start, 0xFF, size);
    memset(start + size, CANARY, span - size);
    g_allocs[(uintptr_t)start] = Allocation{m, len, size, span};
    g_live_bytes += size;
    *out = (CUdeviceptr)start;
    vgpu::counters().allocations++;
    return OK;
}

CUresult release(CUdeviceptr p) {
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return fail(INVALID_VALUE, "cuMemFree: not an allocation of this device");
    g_live_bytes -= it->second.size;
    munmap(it->second.map, it->second.map_len);
    g_allocs.erase(it);
    return OK;
}

/* The allocation holding [p, p + n), or null. */
const Allocation* find(uintptr_t p, size_t n, uintptr_t* start) {
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    if (p + n > it->first + it->second.size) return nullptr;
    *start = it->first;
    return &it->second;
}

bool check_range(const char* op, CUdeviceptr p, size_t n, CUresult* err) {
    uintptr_t s;
    if (n == 0 || find((uintptr_t)p, n, &s)) return true;
    std::ostringstream m;
    m << op << ": device range [0x" << std::hex << p << ", +" << std::dec << n << ") is not inside one allocation ("
      << vgpu::describe_address((void*)p) << ")";
    *err = fail(ILLEGAL_ADDRESS, m.str());
    return false;
}

/* Canary bytes around every allocation, checked after each launch: a store just out of bounds lands there. */
std::string check_canaries() {
    for (auto& [start, a] : g_allocs) {
        const unsigned char* s = (const unsigned char*)start;
        for (size_t i = CANARY_FRONT; i >= 1; i--) /* the farthest byte first: where the stray store began */
            if (s[-(ptrdiff_t)i] != CANARY)
                return "out-of-bounds store " + std::to_string(i) + " bytes before an allocation of " +
                       std::to_string(a.size) + " bytes";
        for (size_t i = a.size; i < a.span; i++)
            if (s[i] != CANARY)
                return "out-of-bounds store " + std::to_string(i - a.size) + " bytes past the end of an allocation of " +
                       std::to_string(a.size) + " bytes";
    }
    return "";
}

/* ---- modules ---- */
struct Module {
    void* handle;
    vgpu::ModuleHooks hooks;
};
struct Function {
    Module* module;
    std::string name;
    vgpu_dev::Launch (*prepare)(void** params);
    int max_dynamic_shared = 0; /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (opt-in) */
};

const int MAX_THREADS_PER_BLOCK = 1024, MAX_SHARED_DEFAULT = 48 * 1024, MAX_SHARED_OPTIN = 227 * 1024;

int attribute(int a) {
    switch (a) {
    case 1: return MAX_THREADS_PER_BLOCK;          /* MAX_THREADS_PER_BLOCK */
    case 2: return 1024;                            /* MAX_BLOCK_DIM_X */
    case 3: return 1024;                            /* MAX_BLOCK_DIM_Y */
    case 4: return 64;                              /* MAX_BLOCK_DIM_Z */
    case 5: return 2147483647;                      /* MAX_GRID_DIM_X */
    case 6: return 65535;                           /* MAX_GRID_DIM_Y */
    case 7: return 65535;                           /* MAX_GRID_DIM_Z */
    case 8: return MAX_SHARED_DEFAULT;              /* MAX_SHARED_MEMORY_PER_BLOCK */
    case 10: return 32;                             /* WARP_SIZE */
    case 12: return 65536;                          /* MAX_REGISTERS_PER_BLOCK */
    case 13: return 1980000;                        /* CLOCK_RATE (kHz) */
    case 16: return 132;                            /* MULTIPROCESSOR_COUNT */
    case 39: return 2048;                           /* MAX_THREADS_PER_MULTIPROCESSOR */
    case 75: return 9;                              /* COMPUTE_CAPABILITY_MAJOR */
    case 76: return 0;                              /* COMPUTE_CAPABILITY_MINOR */
    case 81: return 228 * 1024;                     /* MAX_SHARED_MEMORY_PER_MULTIPROCESSOR */
    case 97: return MAX_SHARED_OPTIN;               /* MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    case 115: return 1;                             /* MEMORY_POOLS_SUPPORTED */
    default: return 0;
    }
}

/* VGPU_PROFILE=1: per kernel, launches, GPU threads and host seconds, printed at exit (where the virtual GPU's
 * time goes; not a model of the real GPU's). */
struct Profile {
    unsigned long long launches = 0;
    double threads = 0, seconds = 0;
};
std::map<std::string, Profile> g_profile;
void print_profile() {
    fprintf(stderr, "vgpu profile: %-28s %10s %14s %10s\n", "kernel", "launches", "threads", "seconds");
    for (auto& [name, p] : g_profile)
        fprintf(stderr, "vgpu profile: %-28s %10llu %14.0f %10.3f\n", name.c_str(), p.launches, p.threads, p.seconds);
}
bool profiling() {
    static bool on = [] {
        const char* e = getenv("VGPU_PROFILE");
        bool v = e && *e == '1';
        if (v) atexit(print_profile);
        return v;
    }();
    return on;
}

std::string geometry(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    std::ostringstream s;
    s << "grid (" << gx << "," << gy << "," << gz << ") block (" << bx << "," << by << "," << bz << ")";
    return s.str();
}

} // namespace

std::string vgpu::describe_address(const void* addr) {
    uintptr_t p = (uintptr_t)addr;
    auto it = g_allocs.upper_bound(p);
    if (it != g_allocs.end() && it->first - p <= 4096 + CANARY_FRONT)
        return std::to_string(it->first - p) + " bytes before an allocation of " + std::to_string(it->second.size) +
               " bytes";
    if (it != g_allocs.begin()) {
        --it;
        if (p >= it->first && p < it->first + it->second.size)
            return "inside an allocation of " + std::to_string(it->second.size) + " bytes";
        if (p >= it->first && p < (uintptr_t)it->second.map + it->second.map_len)
            return std::to_string(p - it->first - it->second.size) + " bytes past the end of an allocation of " +
                   std::to_string(it->second.size) + " bytes";
    }
    return "not in any device allocation";
}

extern "C" {

/* The counters tests read (see counters.h). */
__attribute__((visibility("default"))) vgpu::Counters* vgpu_counters() { return &vgpu::counters(); }
__attribute__((visibility("default"))) const char* vgpu_last_report() { return g_last_report.c_str(); }
/* For the fake libraries (cublas.cpp): a library call on the device (counted as a launch) whose operands are the n
 * byte ranges [starts[i], starts[i] + bytes[i]); 0 when each lies inside one allocation, else the
 * CUDA_ERROR_ILLEGAL_ADDRESS code with the report stored for cuGetErrorString and printed. */
__attribute__((visibility("default"))) int vgpu_library_call(const char* op, const uintptr_t* starts,
                                                             const size_t* bytes, int n) {
    std::lock_guard<std::mutex> l(g_mutex);
    vgpu::counters().launches++;
    CUresult e = OK;
    for (int i = 0; i < n; i++)
        if (!check_range(op, (CUdeviceptr)starts[i], bytes[i], &e)) return e;
    return OK;
}

CUresult cuInit(unsigned) { return OK; }
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return OK;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return OK;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return fail(INVALID_VALUE, "cuDeviceGet: the virtual GPU has one device");
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, (size_t)len, "vgpu (virtual GPU on the host, H100 SXM limits)");
    return OK;
}
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice) {
    *v = attribute(attr);
    return OK;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = 80ull << 30;
    return OK;
}
CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice) {
    memcpy(uuid, "vgpu-virtual-gpu", 16);
    return OK;
}
CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice) {
    *c = &g_context_tag;
    return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }
CUresult cuCtxSetCurrent(CUcontext) { return OK; }
CUresult cuCtxGetCurrent(CUcontext* c) {
    *c = &g_context_tag;
    return OK;
}
CUresult cuCtxPushCurrent_v2(CUcontext) { return OK; }
CUresult cuCtxPopCurrent_v2(CUcontext* c) {
    if (c) *c = &g_context_tag;
    return OK;
}
CUresult cuCtxSynchronize() {
    std::lock_guard<std::mutex> l(g_mutex);
    vgpu::counters().synchronizations++;
    return OK;
}
CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return OK;
}
CUresult cuCtxGetLimit(size_t* v, int) {
    *v = 0;
    return OK;
}
CUresult cuCtxSetLimit(int, size_t) { return OK; }
CUresult cuCtxSetFlags(unsigned) { return OK; }
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return OK;
}
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    std::lock_guard<std::mutex> l(g_mutex);
    *total = 80ull << 30;
    *free_bytes = *total > g_live_bytes ? *total - g_live_bytes : 0;
    return OK;
}

/* ---- memory ---- */
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    return allocate(p, n);
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, CUstream) { return cuMemAlloc_v2(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) {
    std::lock_guard<std::mutex> l(g_mutex);
    return release(p);
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return cuMemFree_v2(p); }
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice) {
    *pool = &g_pool_tag;
    return OK;
}
CUresult cuDeviceGetMemPool(CUmemoryPool* pool, CUdevice d) { return cuDeviceGetDefaultMemPool(pool, d); }
CUresult cuMemPoolSetAttribute(CUmemoryPool, int, void*) { return OK; }
CUresult cuMemPoolGetAttribute(CUmemoryPool, int, void* v) {
    memset(v, 0, 8);
    return OK;
}
CUresult cuMemPoolTrimTo(CUmemoryPool, size_t) { return OK; }
CUresult cuMemHostAlloc(void** p, size_t n, unsigned) {
    *p = malloc(n ? n : 1);
    return *p ? OK : OUT_OF_MEMORY;
}
CUresult cuMemAllocHost_v2(void** p, size_t n) { return cuMemHostAlloc(p, n, 0); }
CUresult cuMemFreeHost(void* p) {
    free(p);
    return OK;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    CUresult e;
    if (!check_range("cuMemcpyHtoD", dst, n, &e)) return e;
    memcpy((void*)dst, src, n);
    vgpu::counters().htod_copies++;
    vgpu::counters().htod_bytes += n;
    return OK;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    return cuMemcpyHtoD_v2(dst, src, n);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    CUresult e;
    if (!check_range("cuMemcpyDtoH", src, n, &e)) return e;
    memcpy(dst, (const void*)src, n);
    vgpu::counters().dtoh_copies++;
    vgpu::counters().dtoh_bytes += n;
    return OK;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream) { return cuMemcpyDtoH_v2(dst, src, n); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    CUresult e;
    if (!check_range("cuMemcpyDtoD (destination)", dst, n, &e) || !check_range("cuMemcpyDtoD (source)", src, n, &e))
        return e;
    memmove((void*)dst, (const void*)src, n);
    return OK;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    return cuMemcpyDtoD_v2(dst, src, n);
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    CUresult e;
    if (!check_range("cuMemsetD8", dst, n, &e)) return e;
    memset((void*)dst, v, n);
    return OK;
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) { return cuMemsetD8_v2(dst, v, n); }
CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    std::lock_guard<std::mutex> l(g_mutex);
    CUresult e;
    if (!check_range("cuMemsetD32", dst, n * 4, &e)) return e;
    for (size_t i = 0; i < n; i++) memcpy((char*)dst + 4 * i, &v, 4);
    return OK;
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream) { return cuMemsetD32_v2(dst, v, n); }

/* ---- streams and events: every operation has completed when its call returns ---- */
CUresult cuStreamCreate(CUstream* s, unsigned) {
    *s = new int(0);
    return OK;
}
CUresult cuStreamCreateWithPriority(CUstream* s, unsigned f, int) { return cuStreamCreate(s, f); }
CUresult cuStreamDestroy_v2(CUstream s) {
    delete (int*)s;
    return OK;
}
CUresult cuStreamSynchronize(CUstream) {
    std::lock_guard<std::mutex> l(g_mutex); /* the counters are shared by the host threads (found by TSan) */
    vgpu::counters().synchronizations++;
    return OK;
}
CUresult cuStreamQuery(CUstream) { return OK; }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return OK; }
CUresult cuStreamIsCapturing(CUstream, int* status) {
    *status = 0;
    return OK;
}
CUresult cuEventCreate(CUevent* e, unsigned) {
    *e = new int(0);
    return OK;
}
CUresult cuEventDestroy_v2(CUevent e) {
    delete (int*)e;
    return OK;
}
CUresult cuEventRecord(CUevent, CUstream) { return OK; }
CUresult cuEventQuery(CUevent) { return OK; }
CUresult cuEventSynchronize(CUevent) {
    std::lock_guard<std::mutex> l(g_mutex);
    vgpu::counters().synchronizations++;
    return OK;
}
CUresult cuEventElapsedTime(float* ms, CUevent, CUevent) {
    *ms = 0.0f;
    return OK;
}
CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }
CUresult cuLaunchHostFunc(CUstream, void (*fn)(void*), void* data) {
    fn(data);
    return OK;
}

/* ---- modules: the "PTX" of the fake NVRTC names the shared object it compiled ---- */
CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    const char* text = (const char*)image;
    const char* key = strstr(text, "//vgpu-module ");
    if (!key) return fail(INVALID_PTX, "cuModuleLoadData: not a module of the virtual GPU's NVRTC (real PTX?)");
    std::string path(key + 14);
    path = path.substr(0, path.find('\n'));
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) return fail(INVALID_PTX, std::string("cuModuleLoadData: ") + dlerror());
    auto* m = new Module{h, {}};
    m->hooks.current = (vgpu_thread_state**)dlsym(h, "vgpu_current");
    m->hooks.hooks = (vgpu_hook_table*)dlsym(h, "vgpu_hooks");
    auto bounds = (void (*)(char**, char**))dlsym(h, "vgpu_shared_section");
    if (!m->hooks.current || !m->hooks.hooks || !bounds) return fail(INVALID_PTX, "cuModuleLoadData: hooks missing");
    bounds(&m->hooks.shared_begin, &m->hooks.shared_end);
    *out = m;
    return OK;
}
CUresult cuModuleLoad(CUmodule*, const char*) { return fail(NOT_SUPPORTED, "cuModuleLoad: not on the virtual GPU"); }
CUresult cuModuleUnload(CUmodule m) {
    /* The shared object stays loaded: functions of other modules may share its code pages. */
    delete (Module*)m;
    return OK;
}
CUresult cuModuleGetFunction(CUfunction* out, CUmodule mod, const char* name) {
    auto* m = (Module*)mod;
    auto prep = (vgpu_dev::Launch(*)(void**))dlsym(m->handle, ("vgpu_prepare_" + std::string(name)).c_str());
    if (!prep) return fail(NOT_FOUND, std::string("cuModuleGetFunction: no entry point ") + name);
    *out = new Function{m, name, prep};
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int attr, CUfunction f) {
    auto* fn = (Function*)f;
    switch (attr) {
    case 0: *v = MAX_THREADS_PER_BLOCK; break; /* MAX_THREADS_PER_BLOCK */
    case 1: *v = (int)(fn->module->hooks.shared_end - fn->module->hooks.shared_begin); break; /* SHARED_SIZE */
    case 8: *v = fn->max_dynamic_shared; break;
    default: *v = 0;
    }
    return OK;
}
CUresult cuFuncSetAttribute(CUfunction f, int attr, int v) {
    auto* fn = (Function*)f;
    if (attr == 8) {
        int stat = (int)(fn->module->hooks.shared_end - fn->module->hooks.shared_begin);
        if (v < 0 || v + stat > MAX_SHARED_OPTIN)
            return fail(INVALID_VALUE, "cuFuncSetAttribute(" + fn->name + "): dynamic shared memory " +
                                           std::to_string(v) + " + static " + std::to_string(stat) + " > 227 KiB");
        fn->max_dynamic_shared = v;
    }
    return OK;
}
CUresult cuFuncSetCacheConfig(CUfunction, int) { return OK; }

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, CUstream, void** params, void** extra) {
    auto* fn = (Function*)f;
    std::lock_guard<std::mutex> l(g_mutex);
    vgpu::counters().launches++;
    std::string geo = geometry(gx, gy, gz, bx, by, bz);
    if (extra) return fail(NOT_SUPPORTED, "cuLaunchKernel(" + fn->name + "): 'extra' arguments are not supported");
    if (!gx || !gy || !gz || !bx || !by || !bz)
        return fail(INVALID_VALUE, "cuLaunchKernel(" + fn->name + "): empty " + geo);
    if (bx > 1024 || by > 1024 || bz > 64 || (unsigned long long)bx * by * bz > MAX_THREADS_PER_BLOCK)
        return fail(INVALID_VALUE, "cuLaunchKernel(" + fn->name + "): " + geo +
                                       ": more than 1024 threads per block (or a block dimension over its limit)");
    if (gx > 2147483647u || gy > 65535 || gz > 65535)
        return fail(INVALID_VALUE, "cuLaunchKernel(" + fn->name + "): " + geo + ": grid y and z are limited to 65535");
    long stat = fn->module->hooks.shared_end - fn->module->hooks.shared_begin;
    long limit = fn->max_dynamic_shared > 0 ? MAX_SHARED_OPTIN : MAX_SHARED_DEFAULT;
    if ((long)smem > (fn->max_dynamic_shared > 0 ? fn->max_dynamic_shared : MAX_SHARED_DEFAULT) ||
        stat + (long)smem > limit)
        return fail(INVALID_VALUE, "cuLaunchKernel(" + fn->name + "): " + std::to_string(smem) +
                                       " bytes of dynamic + " + std::to_string(stat) +
                                       " of static shared memory exceed the limit of " + std::to_string(limit) +
                                       (fn->max_dynamic_shared > 0
                                            ? ""
                                            : " (above 48 KiB needs cuFuncSetAttribute("
                                              "MAX_DYNAMIC_SHARED_SIZE_BYTES))"));
    vgpu_dev::Launch launch = fn->prepare(params);
    vgpu::LaunchGeometry g{{gx, gy, gz}, {bx, by, bz}, smem};
    auto t0 = std::chrono::steady_clock::now();
    std::string report = vgpu::run_launch(fn->name.c_str(), fn->module->hooks, launch, g);
    if (profiling()) {
        auto& p = g_profile[fn->name];
        p.launches++;
        p.threads += (double)gx * gy * gz * bx * by * bz;
        p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    launch.destroy(launch.args);
    if (report.empty()) {
        std::string c = check_canaries();
        if (!c.empty()) report = fn->name + " (" + geo + "): " + c;
    }
    if (!report.empty()) return fail(LAUNCH_FAILED, report);
    return OK;
}

CUresult cuGetErrorName(CUresult e, const char** s) {
    switch (e) {
    case OK: *s = "CUDA_SUCCESS"; break;
    case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
    case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case INVALID_PTX: *s = "CUDA_ERROR_INVALID_PTX"; break;
    case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
    case ILLEGAL_ADDRESS: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
    case LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
    case NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; break;
    default: *s = "CUDA_ERROR_UNKNOWN";
    }
    return OK;
}
/* The last failure's report (the virtual GPU's detail), valid until the next failure. */
CUresult cuGetErrorString(CUresult e, const char** s) {
    if (e == OK) {
        *s = "no error";
        return OK;
    }
    *s = g_last_report.c_str();
    return OK;
}

} // extern "C"
