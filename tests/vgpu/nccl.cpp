/* nccl.cpp: the fake NCCL (libnccl.so) of the virtual GPU. The ranks of a communicator (processes, e.g. under
 * `mpirun -np 2`) meet in a POSIX shared-memory segment named after a hash of the unique id: every collective
 * copies this rank's chunk into its slot, waits at a barrier for all ranks, reduces the slots in rank order (so every
 * rank gets bit-identical sums), and waits again before the slots are reused. "Device" buffers are host memory
 * (see cuda.cpp), and every call completes before it returns, so group start/end have nothing to batch; as with
 * the real NCCL, all ranks must issue the same collectives in the same order. */
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

typedef int ncclResult_t;
enum : int { NCCL_OK = 0, NCCL_SYSTEM_ERROR = 2, NCCL_INVALID_ARGUMENT = 4, NCCL_INVALID_USAGE = 5 };
enum : int { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
             ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8 };
enum : int { ncclSum = 0 };

struct ncclUniqueId {
    char internal[128];
};

namespace {

const size_t SLOT = 4u << 20; /* bytes per rank per round */

struct Header {
    std::atomic<int> arrived;
    std::atomic<int> generation;
};

struct Comm {
    int rank, nranks;
    Header* h;
    char* slots;
    size_t map_len;
};

std::string last_error;

ncclResult_t fail(ncclResult_t r, const std::string& what) {
    last_error = what;
    fprintf(stderr, "vgpu nccl: %s\n", what.c_str());
    return r;
}

void barrier(Comm* c) {
    int gen = c->h->generation.load();
    if (c->h->arrived.fetch_add(1) + 1 == c->nranks) {
        c->h->arrived.store(0);
        c->h->generation.fetch_add(1);
        return;
    }
    for (unsigned spins = 0; c->h->generation.load() == gen; spins++) {
        if (spins < 1000) sched_yield();
        else {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, nullptr);
        }
    }
}

size_t type_size(int t) {
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

template <class T> void sum_slots(Comm* c, size_t elems, T* out) {
    const T* first = (const T*)c->slots;
    for (size_t i = 0; i < elems; i++) {
        T acc = first[i];
        for (int r = 1; r < c->nranks; r++) acc += ((const T*)(c->slots + r * SLOT))[i];
        out[i] = acc;
    }
}

} // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* v) {
    *v = 22800;
    return NCCL_OK;
}
const char* ncclGetErrorString(ncclResult_t r) { return r == NCCL_OK ? "no error" : "vgpu nccl error"; }
const char* ncclGetLastError(void*) { return last_error.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    memset(id->internal, 0, sizeof id->internal);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id->internal, sizeof id->internal, "vgpu-nccl %d %lld %ld %d", (int)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec, rand());
    return NCCL_OK;
}

ncclResult_t ncclCommInitRank(void** out, int nranks, ncclUniqueId id, int rank) {
    if (nranks < 1 || rank < 0 || rank >= nranks) return fail(NCCL_INVALID_ARGUMENT, "ncclCommInitRank: bad rank");
    unsigned long long h = 1469598103934665603ull;
    for (char ch : id.internal) h = (h ^ (unsigned char)ch) * 1099511628211ull;
    char name[64];
    snprintf(name, sizeof name, "/vgpu-nccl-%016llx", h);
    int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
    if (fd < 0) return fail(NCCL_SYSTEM_ERROR, std::string("shm_open ") + name + ": " + strerror(errno));
    size_t len = 4096 + (size_t)nranks * SLOT;
    if (ftruncate(fd, (off_t)len) != 0) return fail(NCCL_SYSTEM_ERROR, "ftruncate of the shared segment");
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return fail(NCCL_SYSTEM_ERROR, "mmap of the shared segment");
    auto* c = new Comm{rank, nranks, (Header*)m, (char*)m + 4096, len};
    barrier(c); /* every rank has the segment open */
    if (rank == 0) shm_unlink(name);
    *out = c;
    return NCCL_OK;
}
ncclResult_t ncclCommInitRankConfig(void** out, int nranks, ncclUniqueId id, int rank, void*) {
    return ncclCommInitRank(out, nranks, id, rank);
}
ncclResult_t ncclCommDestroy(void* comm) {
    auto* c = (Comm*)comm;
    if (c) {
        munmap(c->h, c->map_len);
        delete c;
    }
    return NCCL_OK;
}
ncclResult_t ncclCommAbort(void* comm) { return ncclCommDestroy(comm); }
ncclResult_t ncclCommFinalize(void*) { return NCCL_OK; }
ncclResult_t ncclCommCount(const void* comm, int* n) {
    *n = ((const Comm*)comm)->nranks;
    return NCCL_OK;
}
ncclResult_t ncclCommUserRank(const void* comm, int* r) {
    *r = ((const Comm*)comm)->rank;
    return NCCL_OK;
}
ncclResult_t ncclCommCuDevice(const void*, int* d) {
    *d = 0;
    return NCCL_OK;
}
ncclResult_t ncclGroupStart() { return NCCL_OK; }
ncclResult_t ncclGroupEnd() { return NCCL_OK; }

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, int dtype, int op, void* comm, void*) {
    auto* c = (Comm*)comm;
    size_t es = type_size(dtype);
    if (!es || op != ncclSum || (dtype != ncclFloat32 && dtype != ncclFloat64))
        return fail(NCCL_INVALID_ARGUMENT, "ncclAllReduce: the virtual GPU sums f32 and f64 only");
    size_t per = SLOT / es;
    for (size_t off = 0; off < count || (count == 0 && off == 0); off += per) {
        size_t n = count - off < per ? count - off : per;
        memcpy(c->slots + (size_t)c->rank * SLOT, (const char*)send + off * es, n * es);
        barrier(c);
        if (dtype == ncclFloat32) sum_slots(c, n, (float*)recv + off);
        else sum_slots(c, n, (double*)recv + off);
        barrier(c);
        if (count == 0) break;
    }
    return NCCL_OK;
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, int dtype, int root, void* comm, void*) {
    auto* c = (Comm*)comm;
    size_t es = type_size(dtype), total = count * es;
    if (!es || root < 0 || root >= c->nranks) return fail(NCCL_INVALID_ARGUMENT, "ncclBroadcast: bad type or root");
    for (size_t off = 0; off < total || (total == 0 && off == 0); off += SLOT) {
        size_t n = total - off < SLOT ? total - off : SLOT;
        if (c->rank == root) memcpy(c->slots, (const char*)send + off, n);
        barrier(c);
        if (c->rank != root || recv != send) memcpy((char*)recv + off, c->slots, n);
        barrier(c);
        if (total == 0) break;
    }
    return NCCL_OK;
}

} // extern "C"
