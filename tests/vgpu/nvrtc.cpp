/* nvrtc.cpp: the fake NVRTC (libnvrtc.so) of the virtual GPU. It compiles the CUDA C program as host C++ with
 * `c++` (VGPU_CXX), force-including vgpu_kernel.h, into a shared object cached under VGPU_CACHE (default: the
 * cache/ folder beside this library) and keyed by a hash of the source, the options and the runtime header, and
 * returns as "PTX" a short text naming that object, which the fake driver loads. Compiler errors come back as the
 * program log (file:line through the source's #line directives).
 *
 * The source is changed in two ways only: `extern __shared__ T name[];` (dynamic shared memory) becomes a pointer
 * to the driver's per-block buffer, and a trampoline (VGPU_ENTRY) is appended for every `extern "C" __global__`
 * function. `--fmad=false` compiles with -ffp-contract=off (no fused multiply-add, as the CPU twins round),
 * `--fmad=true` (NVRTC's default) with -ffp-contract=fast. VGPU_SANITIZE=thread|address adds -fsanitize. */
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

typedef int nvrtcResult;
enum : int { NVRTC_OK = 0, NVRTC_OUT_OF_MEMORY = 1, NVRTC_INVALID_INPUT = 3, NVRTC_INVALID_PROGRAM = 4,
             NVRTC_COMPILATION = 6 };

namespace {

struct Program {
    std::string source, name, ptx, log;
};

std::string here() {
    Dl_info info;
    dladdr((void*)&here, &info);
    std::string p = info.dli_fname ? info.dli_fname : ".";
    return p.substr(0, p.rfind('/'));
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

/* 64-bit FNV-1a, printed in hex: the cache key. */
std::string fnv(const std::string& s) {
    unsigned long long h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", h);
    return buf;
}

std::string transform(const std::string& src, std::string& entries) {
    /* extern __shared__ [__align__(n)] T name[];  ->  T* const name = (T*)vgpu_hooks.dynamic_shared(); */
    static const std::regex dyn(R"(extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s\*]*?)\s+(\w+)\s*\[\s*\]\s*;)");
    std::string out = std::regex_replace(src, dyn, "$1* const $2 = ($1*)vgpu_hooks.dynamic_shared();");
    static const std::regex entry(R"(extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\()");
    std::ostringstream tail;
    tail << "\n/* appended by the virtual GPU's NVRTC */\n"
         << "extern \"C\" { vgpu_thread_state* vgpu_current; vgpu_hook_table vgpu_hooks; }\n"
         << "extern \"C\" char __start_vgpu_shared[] __attribute__((weak, visibility(\"hidden\")));\n"
         << "extern \"C\" char __stop_vgpu_shared[] __attribute__((weak, visibility(\"hidden\")));\n"
         << "extern \"C\" __attribute__((visibility(\"default\"))) void vgpu_shared_section(char** b, char** e) {"
         << " *b = __start_vgpu_shared; *e = __stop_vgpu_shared; }\n";
    for (std::sregex_iterator it(out.begin(), out.end(), entry), end; it != end; ++it) {
        tail << "VGPU_ENTRY(" << (*it)[1] << ")\n";
        entries += "// .visible .entry " + (*it)[1].str() + "(\n"; /* the module's entry table, PTX-like */
    }
    return out + tail.str();
}

/* Runs argv, its stderr and stdout into `log`; the exit status. */
int run_compiler(const std::vector<std::string>& argv, std::string& log) {
    std::string log_path = argv.back() + ".log";
    pid_t pid = fork();
    if (pid == 0) {
        FILE* f = freopen(log_path.c_str(), "w", stderr);
        if (f) dup2(fileno(stderr), 1);
        std::vector<char*> a;
        for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        execvp(a[0], a.data());
        fprintf(stderr, "vgpu nvrtc: cannot run %s: %s\n", a[0], strerror(errno));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    log = read_file(log_path);
    unlink(log_path.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

} // namespace

extern "C" {

nvrtcResult nvrtcVersion(int* major, int* minor) {
    *major = 13;
    *minor = 0;
    return NVRTC_OK;
}
const char* nvrtcGetErrorString(nvrtcResult r) {
    switch (r) {
    case NVRTC_OK: return "NVRTC_SUCCESS";
    case NVRTC_COMPILATION: return "NVRTC_ERROR_COMPILATION";
    case NVRTC_INVALID_INPUT: return "NVRTC_ERROR_INVALID_INPUT";
    default: return "NVRTC_ERROR (virtual GPU)";
    }
}
nvrtcResult nvrtcCreateProgram(void** prog, const char* src, const char* name, int num_headers, const char* const*,
                               const char* const*) {
    if (!src) return NVRTC_INVALID_INPUT;
    if (num_headers > 0) return NVRTC_INVALID_INPUT; /* mfd passes none; the registry prepends common.cuh */
    *prog = new Program{src, name ? name : "default_program", "", ""};
    return NVRTC_OK;
}
nvrtcResult nvrtcDestroyProgram(void** prog) {
    delete (Program*)*prog;
    *prog = nullptr;
    return NVRTC_OK;
}
nvrtcResult nvrtcCompileProgram(void* p, int num_options, const char* const* options) {
    auto* prog = (Program*)p;
    std::string dir = here();
    const char* cache_env = getenv("VGPU_CACHE");
    std::string cache = cache_env ? cache_env : dir + "/cache";
    mkdir(cache.c_str(), 0755);
    const char* cxx_env = getenv("VGPU_CXX");
    std::string cxx = cxx_env ? cxx_env : "c++";
    std::vector<std::string> flags = {"-std=c++20", "-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden",
                                      "-fno-strict-aliasing", "-Wno-unused-variable", "-Wno-unused-function"};
    bool fmad = true; /* NVRTC's default */
    for (int i = 0; i < num_options; i++) {
        std::string o = options[i];
        if (o == "--fmad=false" || o == "-fmad=false") fmad = false;
        if (o == "--fmad=true" || o == "-fmad=true") fmad = true;
        if (o.rfind("-D", 0) == 0) flags.push_back(o);
        if (o.rfind("--include-path=", 0) == 0) flags.push_back("-I" + o.substr(15));
    }
    flags.push_back(fmad ? "-ffp-contract=fast" : "-ffp-contract=off");
    if (const char* san = getenv("VGPU_SANITIZE")) {
        if (*san) {
            flags.push_back(std::string("-fsanitize=") + san);
            flags.push_back("-fno-omit-frame-pointer");
        }
    }
    std::string header = read_file(dir + "/vgpu_kernel.h");
    std::string entries;
    std::string source = transform(prog->source, entries);
    std::string key_text = source + "\n" + header + "\n" + cxx;
    for (auto& f : flags) key_text += " " + f;
    std::string key = fnv(key_text);
    std::string so = cache + "/" + key + ".so";
    struct stat st;
    if (stat(so.c_str(), &st) != 0) {
        /* Unique temporaries, renamed into place: parallel test processes may compile the same program. */
        std::string tmp = cache + "/" + key + "." + std::to_string(getpid()) + "." + std::to_string(rand());
        std::string cpp = tmp + ".cpp";
        std::ofstream(cpp) << source;
        std::vector<std::string> argv = {cxx};
        argv.insert(argv.end(), flags.begin(), flags.end());
        argv.insert(argv.end(), {"-include", dir + "/vgpu_kernel.h", "-x", "c++", cpp, "-o", tmp + ".so"});
        int rc = run_compiler(argv, prog->log);
        unlink(cpp.c_str());
        if (rc != 0) {
            unlink((tmp + ".so").c_str());
            return NVRTC_COMPILATION;
        }
        rename((tmp + ".so").c_str(), so.c_str());
    }
    prog->ptx = "//vgpu-module " + so + "\n// " + prog->name + ": compiled for the virtual GPU (tests/vgpu)\n" + entries;
    return NVRTC_OK;
}
nvrtcResult nvrtcGetPTXSize(void* p, size_t* n) {
    *n = ((Program*)p)->ptx.size() + 1;
    return NVRTC_OK;
}
nvrtcResult nvrtcGetPTX(void* p, char* out) {
    auto& s = ((Program*)p)->ptx;
    memcpy(out, s.c_str(), s.size() + 1);
    return NVRTC_OK;
}
nvrtcResult nvrtcGetProgramLogSize(void* p, size_t* n) {
    *n = ((Program*)p)->log.size() + 1;
    return NVRTC_OK;
}
nvrtcResult nvrtcGetProgramLog(void* p, char* out) {
    auto& s = ((Program*)p)->log;
    memcpy(out, s.c_str(), s.size() + 1);
    return NVRTC_OK;
}
nvrtcResult nvrtcGetNumSupportedArchs(int* n) {
    *n = 1;
    return NVRTC_OK;
}
nvrtcResult nvrtcGetSupportedArchs(int* a) {
    a[0] = 90;
    return NVRTC_OK;
}

} // extern "C"
