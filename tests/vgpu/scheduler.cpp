/* scheduler.cpp: fibers for the GPU threads of one launch (see scheduler.h). */
#include "scheduler.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <vector>

#if defined(__SANITIZE_THREAD__)
extern "C" {
void* __tsan_get_current_fiber();
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin();
void __tsan_ignore_thread_end();
}
#define VGPU_TSAN 1
#else
#define VGPU_TSAN 0
#endif

/* ThreadSanitizer model. Fiber switches are no_sync, so GPU threads race unless a barrier or warp collective orders
 * them (__tsan_release / __tsan_acquire there). Beyond that, only what the hardware orders: everything the host did
 * before a launch (copies, the argument block) happens before every GPU thread (launch_sync, released once per launch
 * before any fiber runs), and every GPU thread happens before what the host does after the launch (done_sync,
 * acquired once after the last block, so the scheduler never carries one fiber's clock to another). The scheduler's
 * own bookkeeping (fiber states, counts, warp results written into the fibers' stacks) is invisible to TSan: the
 * scheduler runs its block loop, and fibers their hooks, inside __tsan_ignore_thread_begin/end (Quiet). A kernel
 * that faults (SIGSEGV, longjmp out of the fiber) leaves TSan's fiber state undefined: after such a report under
 * VGPU_SANITIZE=thread, later reports of that process are not to be trusted. */
#if VGPU_TSAN
namespace {
char launch_sync, done_sync;
struct Quiet {
    Quiet() { __tsan_ignore_thread_begin(); }
    ~Quiet() { __tsan_ignore_thread_end(); }
    Quiet(const Quiet&) = delete;
    Quiet& operator=(const Quiet&) = delete;
};
} // namespace
#define VGPU_QUIET(name) Quiet name
#else
#define VGPU_QUIET(name) (void)0
#endif

/* Fiber switching. On x86-64 without sanitizers a 12-instruction switch (callee-saved registers and the stack
 * pointer): glibc's swapcontext makes a sigprocmask system call per switch, ~50x slower, and a launch switches
 * once or twice per GPU thread. Sanitizer builds and other architectures use ucontext, which ASan understands. */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define VGPU_ASM_SWITCH 1
extern "C" void vgpu_switch(void** save_sp, void* new_sp);
asm(R"(
.text
.globl vgpu_switch
.type vgpu_switch, @function
vgpu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size vgpu_switch, .-vgpu_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#else
#define VGPU_ASM_SWITCH 0
#endif

namespace vgpu {
namespace {

enum class State { Ready, AtBarrier, AtWarp, Done };

struct Fiber {
#if VGPU_ASM_SWITCH
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
    vgpu_thread_state st;
    State state = State::Ready;
    unsigned linear = 0; /* thread index within the block, x fastest */
    const char* file = nullptr;
    int line = 0;
    const char* kind = nullptr;
    unsigned mask = 0;
    unsigned long long value = 0;
    unsigned long long* out = nullptr;
#if VGPU_TSAN
    void* tsan = nullptr;
#endif
};

/* Stacks are mapped once (with a guard page below each) and reused by every launch. */
size_t stack_bytes() {
    static size_t n = [] {
        const char* e = getenv("VGPU_STACK_KB");
        size_t kb = e ? strtoul(e, nullptr, 10) : 0;
        if (kb == 0) kb = VGPU_TSAN ? 256 : 64;
        return kb * 1024;
    }();
    return n;
}

char* stack_for(unsigned i) {
    static std::vector<char*> stacks;
    while (stacks.size() <= i) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE), n = stack_bytes() + page;
        void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            perror("vgpu: mmap of a fiber stack");
            abort();
        }
        mprotect(p, page, PROT_NONE); /* stack overflow faults instead of corrupting the neighbour */
        stacks.push_back((char*)p + page);
    }
    return stacks[i];
}

/* The order in which fibers (and blocks) are visited: VGPU_ORDER = forward | reverse | random[:SEED]. */
struct Order {
    int mode = 0; /* 0 forward, 1 reverse, 2 random */
    unsigned long long seed = 1;
};
Order order() {
    Order o;
    const char* e = getenv("VGPU_ORDER");
    std::string s = e ? e : "forward";
    if (s == "reverse") o.mode = 1;
    else if (s.rfind("random", 0) == 0) {
        o.mode = 2;
        if (s.size() > 7) o.seed = strtoull(s.c_str() + 7, nullptr, 10);
    }
    return o;
}
std::vector<unsigned> permutation(unsigned n, const Order& o, std::mt19937_64& rng) {
    std::vector<unsigned> p(n);
    for (unsigned i = 0; i < n; i++) p[i] = o.mode == 1 ? n - 1 - i : i;
    if (o.mode == 2) std::shuffle(p.begin(), p.end(), rng);
    return p;
}

/* The launch in progress (kernel execution is serialised by the driver, so one at a time per process). */
struct Run {
    const char* kernel = nullptr;
    const ModuleHooks* module = nullptr;
    const vgpu_dev::Launch* launch = nullptr;
    std::vector<Fiber> fibers;
    Fiber* cur = nullptr;
#if VGPU_ASM_SWITCH
    void* sched_sp = nullptr;
#else
    ucontext_t sched;
#endif
    std::string error;
    std::vector<char> dynamic_shared;
    /* Wait bookkeeping, so the common case (everyone at the same barrier) resolves without scanning. */
    unsigned at_barrier = 0, done = 0;
    const char* bar_file = nullptr;
    int bar_line = 0;
    bool bar_mismatch = false;
    unsigned warp_waiting[32] = {};
    Fiber* warp_first[32] = {};
    bool warp_mismatch[32] = {};
    sigjmp_buf fault_jmp;
    volatile sig_atomic_t in_kernel = 0;
    void* fault_addr = nullptr;
#if VGPU_TSAN
    void* sched_tsan = nullptr;
#endif
} run;

std::string where(const Fiber& f) {
    std::ostringstream s;
    s << "block (" << f.st.block_idx.x << "," << f.st.block_idx.y << "," << f.st.block_idx.z << ") thread ("
      << f.st.thread_idx.x << "," << f.st.thread_idx.y << "," << f.st.thread_idx.z << ")";
    return s.str();
}
std::string site(const Fiber& f) {
    std::ostringstream s;
    if (f.state == State::Done) return "returned";
    s << (f.state == State::AtBarrier ? "__syncthreads" : f.kind) << " at " << f.file << ":" << f.line;
    if (f.state == State::AtWarp) s << " (mask 0x" << std::hex << f.mask << ")";
    return s.str();
}

void switch_to_scheduler() {
#if VGPU_TSAN
    void* sched;
    {
        VGPU_QUIET(q); /* the next launch, from another host thread perhaps, rewrites it */
        sched = run.sched_tsan;
    }
    __tsan_switch_to_fiber(sched, 1 /* no_sync: fibers race unless a barrier orders them */);
#endif
#if VGPU_ASM_SWITCH
    vgpu_switch(&run.cur->sp, run.sched_sp);
#else
    swapcontext(&run.cur->ctx, &run.sched);
#endif
}

/* Abort the running fiber's block with `what` (called on the fiber's stack; never returns to the kernel). */
[[noreturn]] void fail_in_fiber(const std::string& what) {
    {
        VGPU_QUIET(q);
        if (run.error.empty()) run.error = what;
        run.cur->state = State::Done;
    }
#if VGPU_TSAN
    __tsan_release(&done_sync);
#endif
    switch_to_scheduler();
    abort(); /* an abandoned fiber is never resumed */
}

void hook_syncthreads(const char* file, int line) {
    {
        VGPU_QUIET(q);
        Fiber* f = run.cur;
        f->state = State::AtBarrier;
        f->file = file;
        f->line = line;
        if (run.at_barrier++ == 0) {
            run.bar_file = file;
            run.bar_line = line;
        } else if (file != run.bar_file || line != run.bar_line) {
            run.bar_mismatch = true;
        }
    }
#if VGPU_TSAN
    __tsan_release(&run);
#endif
    switch_to_scheduler();
#if VGPU_TSAN
    __tsan_acquire(&run);
#endif
}

void hook_warp(const char* kind, unsigned mask, unsigned long long value, unsigned long long* lanes, const char* file,
               int line) {
#if VGPU_TSAN
    __tsan_ignore_thread_begin(); /* Quiet, ended before the switch or before fail_in_fiber */
#endif
    Fiber* f = run.cur;
    unsigned lane = f->linear % 32;
    if (!((mask >> lane) & 1u)) {
        std::ostringstream s;
        s << file << ":" << line << ": " << kind << " called by lane " << lane << " which is not in its mask 0x"
          << std::hex << mask << " (" << where(*f) << ")";
#if VGPU_TSAN
        __tsan_ignore_thread_end();
#endif
        fail_in_fiber(s.str());
    }
    f->state = State::AtWarp;
    f->kind = kind;
    f->mask = mask;
    f->value = value;
    f->out = lanes;
    f->file = file;
    f->line = line;
    unsigned w = f->linear / 32;
    if (run.warp_waiting[w]++ == 0) {
        run.warp_first[w] = f;
    } else {
        const Fiber* g = run.warp_first[w];
        if (g->file != file || g->line != line || g->mask != mask) run.warp_mismatch[w] = true;
    }
#if VGPU_TSAN
    __tsan_ignore_thread_end();
    __tsan_release(&run.fibers[f->linear - lane]);
#endif
    switch_to_scheduler();
#if VGPU_TSAN
    __tsan_acquire(&run.fibers[f->linear - lane]);
#endif
}

void* hook_dynamic_shared() { return run.dynamic_shared.data(); }

void hook_trap(const char* what, const char* file, int line) {
    std::ostringstream s;
    {
        VGPU_QUIET(q);
        s << file << ":" << line << ": " << what << " (" << where(*run.cur) << ")";
    }
    fail_in_fiber(s.str());
}

void fiber_entry() {
#if VGPU_TSAN
    __tsan_acquire(&launch_sync);
#endif
    Fiber* f;
    const vgpu_dev::Launch* l;
    {
        VGPU_QUIET(q);
        f = run.cur;
        l = run.launch;
    }
    l->run(l->args);
    {
        VGPU_QUIET(q);
        f->state = State::Done;
        run.done++;
    }
#if VGPU_TSAN
    __tsan_release(&done_sync);
#endif
    switch_to_scheduler();
    abort(); /* a finished fiber is never resumed */
}

/* Make fiber `t` start at fiber_entry on its stack. */
void start_fiber(Fiber& f, unsigned t) {
#if VGPU_ASM_SWITCH
    /* The frame vgpu_switch pops: six callee-saved registers, then fiber_entry as the return address; the
     * slot above it keeps the ABI's stack alignment at fiber_entry's first instruction (rsp = 8 mod 16). */
    uintptr_t top = ((uintptr_t)stack_for(t) + stack_bytes()) & ~(uintptr_t)15;
    void** sp = (void**)top;
    *--sp = nullptr;
    *--sp = (void*)fiber_entry;
    for (int i = 0; i < 6; i++) *--sp = nullptr;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack_for(t);
    f.ctx.uc_stack.ss_size = stack_bytes();
    f.ctx.uc_link = &run.sched;
    makecontext(&f.ctx, fiber_entry, 0);
#endif
}

void fault_handler(int sig, siginfo_t* info, void* uctx);
struct sigaction previous_segv, previous_bus;

void install_fault_handler() {
    static bool done = false;
    if (done) return;
    done = true;
    struct sigaction sa {};
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
}

void fault_handler(int sig, siginfo_t* info, void*) {
    if (run.in_kernel) {
        run.fault_addr = info->si_addr;
        siglongjmp(run.fault_jmp, 1);
    }
    /* Not ours: hand the signal back to whoever handled it before (Rust's stack-overflow handler) and re-fault. */
    sigaction(sig, sig == SIGSEGV ? &previous_segv : &previous_bus, nullptr);
}

/* Resolve the waits once no fiber can run. Returns false (and sets run.error) on a synchronisation error. */
/* The common cases in O(warp) / O(block) without building reports: every lane of a warp at the same collective,
 * every thread at the same barrier. Anything else goes to resolve_slow, which finds and reports the problem. */
bool resolve(unsigned nthreads, bool& progressed);
bool resolve_fast(unsigned nthreads, bool& progressed) {
    progressed = false;
    bool any_warp = false;
    for (unsigned w = 0; w * 32 < nthreads; w++) {
        if (!run.warp_waiting[w]) continue;
        any_warp = true;
        Fiber* f = run.warp_first[w];
        unsigned lo = w * 32, lanes = std::min(32u, nthreads - lo);
        unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
        if (run.warp_mismatch[w] || (f->mask & ~exist) || run.warp_waiting[w] != (unsigned)__builtin_popcount(f->mask))
            return resolve(nthreads, progressed);
        unsigned long long vals[32];
        for (unsigned l = 0; l < 32; l++) vals[l] = ((f->mask >> l) & 1u) ? run.fibers[lo + l].value : ~0ull;
        for (unsigned l = 0; l < 32; l++) {
            if (!((f->mask >> l) & 1u)) continue;
            Fiber& g = run.fibers[lo + l];
            std::copy(vals, vals + 32, g.out);
            g.state = State::Ready;
        }
        run.warp_waiting[w] = 0;
        run.warp_mismatch[w] = false;
    }
    if (any_warp) {
        progressed = true;
        return true;
    }
    if (run.at_barrier == 0) return true; /* all done */
    if (run.bar_mismatch || run.done || run.at_barrier != nthreads) return resolve(nthreads, progressed);
    for (unsigned i = 0; i < nthreads; i++) run.fibers[i].state = State::Ready;
    run.at_barrier = 0;
    progressed = true;
    return true;
}

bool resolve(unsigned nthreads, bool& progressed) {
    progressed = false;
    /* Warp collectives: group the waiting lanes of each warp by (site, mask). */
    for (unsigned w = 0; w * 32 < nthreads; w++) {
        unsigned lo = w * 32, hi = std::min(nthreads, lo + 32);
        for (unsigned i = lo; i < hi; i++) {
            Fiber& f = run.fibers[i];
            if (f.state != State::AtWarp) continue;
            bool complete = true;
            for (unsigned l = 0; l < 32 && complete; l++) {
                if (!((f.mask >> l) & 1u)) continue;
                if (lo + l >= hi) {
                    std::ostringstream s;
                    s << f.file << ":" << f.line << ": " << f.kind << " with mask 0x" << std::hex << f.mask << std::dec
                      << " names lane " << l << " of warp " << w << ", which does not exist (block of " << nthreads
                      << " threads; " << where(f) << ")";
                    run.error = s.str();
                    return false;
                }
                Fiber& g = run.fibers[lo + l];
                if (g.state == State::AtWarp && g.file == f.file && g.line == f.line && g.mask == f.mask) continue;
                std::ostringstream s;
                s << f.file << ":" << f.line << ": lane " << l << " of warp " << w << " never reaches " << f.kind
                  << " (mask 0x" << std::hex << f.mask << std::dec << ") that lane " << (i - lo) << " waits at: lane "
                  << l << " " << site(g) << " (" << where(g) << ")";
                run.error = s.str();
                complete = false;
            }
            if (!complete) return false;
            unsigned long long vals[32];
            for (unsigned l = 0; l < 32; l++)
                vals[l] = ((f.mask >> l) & 1u) ? run.fibers[lo + l].value : ~0ull;
            unsigned mask = f.mask;
            for (unsigned l = 0; l < 32; l++) {
                if (!((mask >> l) & 1u)) continue;
                Fiber& g = run.fibers[lo + l];
                std::copy(vals, vals + 32, g.out);
                g.state = State::Ready;
            }
            progressed = true;
        }
    }
    if (progressed) {
        /* Rebuild the warp bookkeeping from the lanes still waiting. */
        for (unsigned w = 0; w * 32 < nthreads; w++) {
            run.warp_waiting[w] = 0;
            run.warp_mismatch[w] = false;
        }
        for (unsigned i = 0; i < nthreads; i++) {
            Fiber& f = run.fibers[i];
            if (f.state != State::AtWarp) continue;
            unsigned w = i / 32;
            if (run.warp_waiting[w]++ == 0) run.warp_first[w] = &f;
            else if (run.warp_first[w]->file != f.file || run.warp_first[w]->line != f.line ||
                     run.warp_first[w]->mask != f.mask)
                run.warp_mismatch[w] = true;
        }
        return true;
    }
    /* Block barrier: every live thread must wait at the same __syncthreads. */
    const Fiber* first = nullptr;
    for (unsigned i = 0; i < nthreads; i++)
        if (run.fibers[i].state == State::AtBarrier) {
            first = &run.fibers[i];
            break;
        }
    if (!first) return true; /* all done */
    for (unsigned i = 0; i < nthreads; i++) {
        const Fiber& g = run.fibers[i];
        if (g.state == State::AtBarrier && g.file == first->file && g.line == first->line) continue;
        std::ostringstream s;
        s << first->file << ":" << first->line << ": divergent __syncthreads in " << run.kernel << ": "
          << where(*first) << " waits there, but " << where(g) << " " << site(g);
        run.error = s.str();
        return false;
    }
    for (unsigned i = 0; i < nthreads; i++) run.fibers[i].state = State::Ready;
    run.at_barrier = 0;
    run.bar_mismatch = false;
    progressed = true;
    return true;
}

/* Poison shared memory before a block: 0xFF bytes are NaN as f32 and f64. */
void poison_shared(const ModuleHooks& m) {
    if (m.shared_begin && m.shared_end > m.shared_begin) memset(m.shared_begin, 0xFF, m.shared_end - m.shared_begin);
    std::fill(run.dynamic_shared.begin(), run.dynamic_shared.end(), (char)0xFF);
}

bool run_block(const LaunchGeometry& g, uint3 block_idx, const std::vector<unsigned>& thread_order) {
    unsigned nthreads = g.block.x * g.block.y * g.block.z;
    poison_shared(*run.module);
    run.at_barrier = run.done = 0;
    run.bar_mismatch = false;
    for (unsigned w = 0; w < 32; w++) {
        run.warp_waiting[w] = 0;
        run.warp_mismatch[w] = false;
    }
    for (unsigned t = 0; t < nthreads; t++) {
        Fiber& f = run.fibers[t];
        f.state = State::Ready;
        f.linear = t;
        f.st.thread_idx = {t % g.block.x, (t / g.block.x) % g.block.y, t / (g.block.x * g.block.y)};
        f.st.block_idx = block_idx;
        f.st.block_dim = g.block;
        f.st.grid_dim = g.grid;
        start_fiber(f, t);
#if VGPU_TSAN
        if (!f.tsan) f.tsan = __tsan_create_fiber(0);
#endif
    }
    for (;;) {
        for (unsigned k = 0; k < nthreads; k++) {
            Fiber& f = run.fibers[thread_order[k]];
            if (f.state != State::Ready) continue;
            run.cur = &f;
            *run.module->current = &f.st;
#if VGPU_TSAN
            __tsan_switch_to_fiber(f.tsan, 1);
#endif
#if VGPU_ASM_SWITCH
            vgpu_switch(&run.sched_sp, f.sp);
#else
            swapcontext(&run.sched, &f.ctx);
#endif
#if VGPU_TSAN
            __tsan_switch_to_fiber(run.sched_tsan, 1);
#endif
            if (!run.error.empty()) return false;
        }
        bool progressed = false;
        if (!resolve_fast(nthreads, progressed)) return false;
        if (!progressed) return true;
    }
}

} // namespace

std::string run_launch(const char* kernel, const ModuleHooks& module, const vgpu_dev::Launch& launch,
                       const LaunchGeometry& g) {
    install_fault_handler();
    unsigned nthreads = g.block.x * g.block.y * g.block.z;
    run.kernel = kernel;
    run.module = &module;
    run.launch = &launch;
    run.error.clear();
    if (run.fibers.size() < nthreads) run.fibers.resize(nthreads);
    run.dynamic_shared.assign(g.dynamic_shared, (char)0xFF);
    module.hooks->syncthreads = hook_syncthreads;
    module.hooks->warp_collective = hook_warp;
    module.hooks->dynamic_shared = hook_dynamic_shared;
    module.hooks->trap = hook_trap;
#if VGPU_TSAN
    run.sched_tsan = __tsan_get_current_fiber();
#endif
    Order o = order();
    std::mt19937_64 rng(o.seed);
    std::vector<unsigned> threads = permutation(nthreads, o, rng);
    unsigned long long nblocks = (unsigned long long)g.grid.x * g.grid.y * g.grid.z;
    std::vector<unsigned> blocks;
    if (o.mode != 0) blocks = permutation((unsigned)nblocks, o, rng);
    if (sigsetjmp(run.fault_jmp, 1)) {
        run.in_kernel = 0;
        std::ostringstream s;
        s << "invalid memory access in " << kernel << " by " << (run.cur ? where(*run.cur) : "?") << " at address "
          << run.fault_addr << ": " << describe_address(run.fault_addr);
        return s.str();
    }
    run.in_kernel = 1;
#if VGPU_TSAN
    __tsan_release(&launch_sync);
#endif
    bool ok = true;
    {
        VGPU_QUIET(q);
        for (unsigned long long b = 0; b < nblocks && ok; b++) {
            unsigned long long lin = o.mode == 0 ? b : blocks[b];
            uint3 idx = {(unsigned)(lin % g.grid.x), (unsigned)((lin / g.grid.x) % g.grid.y),
                         (unsigned)(lin / ((unsigned long long)g.grid.x * g.grid.y))};
            ok = run_block(g, idx, threads);
        }
    }
#if VGPU_TSAN
    __tsan_acquire(&done_sync);
#endif
    run.in_kernel = 0;
    if (!ok) return std::string(kernel) + ": " + run.error;
    return "";
}

} // namespace vgpu
