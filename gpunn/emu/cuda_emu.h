// cuda_emu.h - compile unchanged CUDA kernel source with g++ (-std=c++20) and run it on the CPU.
//
// Design
// ------
// * The loader (gpunn/emu/build.py) prepends `#include "cuda_emu.h"` to the kernel source, rewrites
//   each `__shared__` declaration (see below), appends one C-ABI launcher per `extern "C" __global__`
//   kernel and builds a shared library. Nothing else in the kernel source changes.
// * Fiber core (default): a block's threads run as fibers on ONE OS thread. Fibers are created with
//   ucontext once and switched with _setjmp/_longjmp (no signal-mask syscall per switch). A fiber
//   runs until it reaches __syncthreads or a warp intrinsic, then yields to the scheduler. Blocks
//   run one after another, threads in linear-index order, so a launch is fully deterministic.
//   Fibers are persistent workers: fiber k runs thread k of every block; stacks are reused.
// * Deadlocks are reported, not hung: when no fiber can run, the scheduler inspects the waiters.
//   Threads at __syncthreads while others have exited, threads waiting at different __syncthreads
//   call sites (barrier divergence), or warp intrinsics whose mask names lanes that are elsewhere,
//   all fail the launch with a message naming the block, the threads and the source lines.
// * Warp intrinsics (__shfl*_sync, __ballot_sync, __any/__all_sync, __syncwarp) are a barrier among
//   the lanes named in `mask`: every named lane must arrive at the same kind of intrinsic with the
//   same mask; the last one to arrive computes all lanes' results at once, then they all continue.
//   Reading a lane outside the mask yields the poison pattern (all bits set: NaN for float, -1 int).
// * Shared memory: `extern __shared__ T a[];` is rewritten to a pointer into one dynamic buffer;
//   `__shared__ T a[N];` is rewritten to a reference to a slot in a per-module static arena (one
//   slot per declaration and template instantiation, found through a unique lambda type). Both are
//   filled with 0xFF bytes before every block, so a read of shared memory no thread wrote is NaN.
//   Per-launch static + dynamic shared bytes are checked against the limit the launcher passes in.
// * Thread core (-DGPUNN_EMU_THREADS, option --emu-core=threads): one std::thread per CUDA thread,
//   std::barrier for __syncthreads and per-warp barriers for warp intrinsics. It exists to run under
//   ThreadSanitizer (--emu-sanitize=thread), which then reports a missing __syncthreads as a data
//   race. It detects no deadlocks (exiting threads drop out of the barriers) - use the fiber core.
// * Deliberately NOT provided: INFINITY, NAN, HUGE_VAL(F) - NVRTC lacks them, so a kernel using them
//   must fail here too. Use __int_as_float(0x7f800000) and friends.
#pragma once
#ifndef GPUNN_CUDA_EMU_H
#define GPUNN_CUDA_EMU_H

#include <math.h>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdarg>
#include <atomic>
#include <bit>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>
#include <setjmp.h>
#include <ucontext.h>
#include <sys/mman.h>
#ifdef GPUNN_EMU_THREADS
#include <algorithm>
#include <barrier>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#endif

// NVRTC has none of these; a kernel that uses them must not compile here either.
#undef INFINITY
#undef NAN
#undef HUGE_VAL
#undef HUGE_VALF

// ---------------------------------------------------------------------------------------------
// Qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// The loader rewrites every __shared__ declaration it understands; anything left is an error.
#define __shared__ gpunn_emu_unsupported_shared_declaration_use_one_variable_per_statement

#ifdef GPUNN_EMU_THREADS
#define GPUNN_EMU_TLS thread_local
#else
#define GPUNN_EMU_TLS
#endif

#ifndef GPUNN_EMU_STACK_KB
#define GPUNN_EMU_STACK_KB 64
#endif

// ---------------------------------------------------------------------------------------------
// Built-in vector types and variables
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
inline dim3 make_dim3(unsigned x, unsigned y, unsigned z) { return dim3(x, y, z); }

inline GPUNN_EMU_TLS uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

namespace gpunn_emu {

constexpr std::size_t kSmemCapacity = 256 * 1024;  // room for opted-in dynamic shared memory
alignas(256) inline unsigned char dyn_smem_buf[kSmemCapacity];
alignas(256) inline unsigned char static_smem_arena[kSmemCapacity];
inline std::size_t static_smem_used = 0;     // bytes handed out to __shared__ slots so far
inline std::size_t launch_static_bytes = 0;  // static shared bytes touched by the current launch
inline unsigned long long launch_id = 0;
inline std::size_t smem_limit = 48 * 1024;
inline std::size_t launch_dyn_bytes = 0;

inline char* err_buf = nullptr;
inline std::size_t err_len = 0;
inline bool failed = false;

inline void set_error(const char* fmt, ...) {
    if (failed) return;  // keep the first error
    failed = true;
    if (!err_buf || !err_len) return;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err_buf, err_len, fmt, ap);
    va_end(ap);
}

inline void append_error(const char* fmt, ...) {
    if (!err_buf || !err_len) return;
    std::size_t used = std::strlen(err_buf);
    if (used + 1 >= err_len) return;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err_buf + used, err_len - used, fmt, ap);
    va_end(ap);
}

[[noreturn]] inline void abort_launch();  // defined per core below

// A static __shared__ slot: allocated once per declaration (and template instantiation), poisoned
// on allocation and before every block, and counted towards the launch's shared-memory use.
struct SmemSlot {
    std::size_t offset = 0, size = 0;
    unsigned long long seen_in_launch = 0;
};

#ifdef GPUNN_EMU_THREADS
inline std::mutex slot_mutex;  // different declarations may be first reached concurrently
#endif

inline SmemSlot make_slot(std::size_t size, std::size_t align) {
#ifdef GPUNN_EMU_THREADS
    std::lock_guard<std::mutex> lock(slot_mutex);
#endif
    if (align < 16) align = 16;
    std::size_t off = (static_smem_used + align - 1) / align * align;
    if (off + size > kSmemCapacity) {
        set_error("static __shared__ memory of this module exceeds the emulator arena (%zu bytes)", kSmemCapacity);
        abort_launch();
    }
    static_smem_used = off + size;
    std::memset(static_smem_arena + off, 0xFF, size);
    return SmemSlot{off, size, 0};
}

inline void touch_slot(SmemSlot& s) {
    if (s.seen_in_launch == launch_id) return;
    s.seen_in_launch = launch_id;
    launch_static_bytes += s.size;
    if (launch_static_bytes + launch_dyn_bytes > smem_limit) {
        set_error("shared memory exceeds the limit: %zu bytes static + %zu bytes dynamic > %zu bytes",
                  launch_static_bytes, launch_dyn_bytes, smem_limit);
        abort_launch();
    }
}

template <class T, std::size_t Align, class Tag>
inline T& shared_slot(Tag) {
#ifdef GPUNN_EMU_THREADS
    // The fiber core does the per-launch limit accounting; this core only hands out the slot.
    static SmemSlot slot = make_slot(sizeof(T), Align > alignof(T) ? Align : alignof(T));
#else
    static SmemSlot slot = make_slot(sizeof(T), Align > alignof(T) ? Align : alignof(T));
    touch_slot(slot);
#endif
    return *reinterpret_cast<T*>(static_smem_arena + slot.offset);
}

inline void poison_shared(std::size_t dyn) {
    std::memset(static_smem_arena, 0xFF, static_smem_used);
    std::memset(dyn_smem_buf, 0xFF, dyn);
}

template <class T>
inline std::uint64_t to_bits(T v) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp intrinsics take values of at most 8 bytes");
    std::uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
inline T from_bits(std::uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
constexpr std::uint64_t kPoison = ~0ull;

enum class WarpOp : std::uint8_t { Sync, Shfl, Vote };
inline const char* op_name(WarpOp op) {
    return op == WarpOp::Sync ? "__syncwarp" : op == WarpOp::Shfl ? "a __shfl*_sync" : "a vote (__ballot/__any/__all_sync)";
}

// Source lane for each shuffle flavour, per the CUDA programming guide; -1 means "own value".
inline int shfl_src(int kind, int lane, int arg, int width) {
    if (width <= 0 || width > 32 || (width & (width - 1))) return -2;
    int base = lane & ~(width - 1);
    switch (kind) {
        case 0: return base + (arg & (width - 1));                              // __shfl_sync
        case 1: return (lane - base) < arg ? lane : lane - arg;                 // __shfl_up_sync
        case 2: return (lane - base) + arg >= width ? lane : lane + arg;        // __shfl_down_sync
        default: { int s = lane ^ arg; return s >= base + width ? lane : s; }   // __shfl_xor_sync
    }
}

inline void format_ranges(const int* ids, int n) {
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && ids[j + 1] == ids[j] + 1) ++j;
        if (j == i) append_error("%s%d", i ? "," : "", ids[i]);
        else append_error("%s%d-%d", i ? "," : "", ids[i], ids[j]);
        i = j + 1;
    }
}

inline void compiler_fence() { asm volatile("" ::: "memory"); }

}  // namespace gpunn_emu

#ifndef GPUNN_EMU_THREADS
// =============================================================================================
// Fiber core
namespace gpunn_emu {

enum class St : std::uint8_t { Ready, AtBarrier, AtWarp, Done };

struct Fiber {
    jmp_buf jb;
    ucontext_t uc;
    unsigned char* stack = nullptr;  // mapping base (guard page first)
    bool needs_init = true;
    St st = St::Done;
    uint3 tid{0, 0, 0};
    int lin = 0;
    // where the fiber waits, for the deadlock report and divergence checks
    const char* file = "";
    unsigned line = 0;
    int bar_kind = 0, pred = 0;
    // warp exchange
    WarpOp op = WarpOp::Sync;
    unsigned mask = 0;
    std::uint64_t value = 0, result = 0;
    int src = -1;
};

constexpr std::size_t kStackBytes = std::size_t(GPUNN_EMU_STACK_KB) * 1024;
constexpr std::size_t kGuardBytes = 4096;

inline Fiber fibers[1024];
inline int n_threads = 0;
inline Fiber* cur = nullptr;
inline jmp_buf sched_jb, abort_jb;
inline void (*body_fn)(void*) = nullptr;
inline void* body_ctx = nullptr;
inline int barrier_result = 0;

[[noreturn]] inline void abort_launch() {
    for (auto& f : fibers) f.needs_init = true;  // their stacks hold abandoned frames
    _longjmp(abort_jb, 1);
}

// Every yield goes through this pointer: an opaque indirect call, so the optimizer must assume
// shared memory (and anything else) changed across __syncthreads.
__attribute__((noinline)) inline void yield_impl() {
    if (!_setjmp(cur->jb)) _longjmp(sched_jb, 1);
}
inline void (*volatile yield_ptr)() = yield_impl;
inline void yield() {
    compiler_fence();
    yield_ptr();
    compiler_fence();
}

inline void trampoline() {
    for (;;) {
        body_fn(body_ctx);
        cur->st = St::Done;
        yield_impl();  // resumed later to run the same fiber's thread in the next block
    }
}

__attribute__((noinline)) inline void run_fiber(Fiber& f) {
    cur = &f;
    threadIdx = f.tid;
    if (_setjmp(sched_jb)) return;
    if (f.needs_init) {
        if (!f.stack) {
            void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) { set_error("cannot allocate a fiber stack"); abort_launch(); }
            mprotect(p, kGuardBytes, PROT_NONE);  // overflow faults instead of corrupting a neighbour
            f.stack = static_cast<unsigned char*>(p);
        }
        getcontext(&f.uc);
        f.uc.uc_stack.ss_sp = f.stack + kGuardBytes;
        f.uc.uc_stack.ss_size = kStackBytes;
        f.uc.uc_link = nullptr;
        makecontext(&f.uc, trampoline, 0);
        f.needs_init = false;
        setcontext(&f.uc);
    }
    _longjmp(f.jb, 1);
}

inline int block_barrier(int kind, int pred, const std::source_location& loc) {
    Fiber* f = cur;
    f->st = St::AtBarrier;
    f->bar_kind = kind;
    f->pred = pred;
    f->file = loc.file_name();
    f->line = loc.line();
    yield();
    return barrier_result;  // set by the scheduler just before releasing the barrier
}

inline Fiber& lane_fiber(int warp_base, int lane) { return fibers[warp_base + lane]; }

// Arrive at a warp intrinsic; returns when every lane named in mask has arrived.
inline void warp_arrive(WarpOp op, unsigned mask, std::uint64_t value, int src, int pred,
                        const std::source_location& loc) {
    Fiber* f = cur;
    const int lane = f->lin & 31, base = f->lin - lane;
    f->op = op; f->mask = mask; f->value = value; f->src = src; f->pred = pred;
    f->file = loc.file_name(); f->line = loc.line();
    auto where = [&] {
        append_error(" (block (%u,%u,%u), thread %d (threadIdx (%u,%u,%u)), %s:%u)", blockIdx.x, blockIdx.y,
                     blockIdx.z, f->lin, f->tid.x, f->tid.y, f->tid.z, f->file, f->line);
    };
    if (!(mask >> lane & 1u)) {
        set_error("%s: mask 0x%08x does not name the calling lane %d", op_name(op), mask, lane);
        where(); abort_launch();
    }
    if (src == -2) { set_error("%s: width must be a power of two in 1..32", op_name(op)); where(); abort_launch(); }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (base + l >= n_threads) {
            set_error("%s: mask 0x%08x names lane %d of warp %d, which does not exist (block has %d threads)",
                      op_name(op), mask, l, base / 32, n_threads);
            where(); abort_launch();
        }
        if (lane_fiber(base, l).st == St::Done) {
            set_error("%s: mask 0x%08x names lane %d (thread %d), which has already exited", op_name(op), mask, l, base + l);
            where(); abort_launch();
        }
    }
    f->st = St::AtWarp;
    for (int l = 0; l < 32; ++l) {
        if ((mask >> l & 1u) && lane_fiber(base, l).st != St::AtWarp) {
            yield();  // not everyone is here yet; the last lane to arrive releases us
            return;
        }
    }
    // Last to arrive: check agreement, compute every lane's result, release them.
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Fiber& g = lane_fiber(base, l);
        if (g.op != op || g.mask != mask) {
            set_error("warp divergence: lane %d is at %s with mask 0x%08x (%s:%u) while lane %d is at %s with mask 0x%08x",
                      l, op_name(g.op), g.mask, g.file, g.line, lane, op_name(op), mask);
            where(); abort_launch();
        }
        if (g.pred) ballot |= 1u << l;
    }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Fiber& g = lane_fiber(base, l);
        if (op == WarpOp::Shfl) {
            int s = g.src;
            g.result = (s >= 0 && s < 32 && (mask >> s & 1u)) ? lane_fiber(base, s).value : kPoison;
        } else {
            g.result = ballot;
        }
        g.st = St::Ready;
    }
    f->st = St::Ready;  // the caller simply continues
}

inline void report_block_stall() {
    int ids[1024], n = 0;
    int done = 0, at_bar = 0, at_warp = 0;
    for (int i = 0; i < n_threads; ++i) {
        St s = fibers[i].st;
        done += s == St::Done; at_bar += s == St::AtBarrier; at_warp += s == St::AtWarp;
    }
    set_error("deadlock in block (%u,%u,%u) of %d threads: ", blockIdx.x, blockIdx.y, blockIdx.z, n_threads);
    if (at_warp) {
        const Fiber* w = nullptr;
        for (int i = 0; i < n_threads; ++i) if (fibers[i].st == St::AtWarp) { ids[n++] = i; if (!w) w = &fibers[i]; }
        append_error("threads ");
        format_ranges(ids, n);
        append_error(" wait in %s with mask 0x%08x (%s:%u) for lanes that never arrive", op_name(w->op), w->mask, w->file, w->line);
    }
    if (at_bar) {
        // group the waiters by call site
        const char* files[8]; unsigned lines[8]; int sites = 0;
        for (int i = 0; i < n_threads; ++i) {
            const Fiber& g = fibers[i];
            if (g.st != St::AtBarrier) continue;
            bool known = false;
            for (int k = 0; k < sites; ++k) known |= (lines[k] == g.line && !std::strcmp(files[k], g.file));
            if (!known && sites < 8) { files[sites] = g.file; lines[sites] = g.line; ++sites; }
        }
        for (int k = 0; k < sites; ++k) {
            n = 0;
            for (int i = 0; i < n_threads; ++i)
                if (fibers[i].st == St::AtBarrier && fibers[i].line == lines[k] && !std::strcmp(fibers[i].file, files[k])) ids[n++] = i;
            append_error("%sthreads ", (at_warp || k) ? "; " : "");
            format_ranges(ids, n);
            append_error(" wait at __syncthreads (%s:%u)", files[k], lines[k]);
        }
        if (sites > 1) append_error(" - barrier divergence: all threads of a block must reach the same __syncthreads");
    }
    if (done) {
        n = 0;
        for (int i = 0; i < n_threads; ++i) if (fibers[i].st == St::Done) ids[n++] = i;
        append_error("; threads ");
        format_ranges(ids, n);
        append_error(" have exited, so the barrier can never complete (is __syncthreads inside a condition?)");
    }
}

// Run one block to completion; false on deadlock.
inline bool run_block() {
    for (;;) {
        bool ran;
        do {
            ran = false;
            for (int i = 0; i < n_threads; ++i) {
                if (fibers[i].st == St::Ready) { run_fiber(fibers[i]); ran = true; }
            }
        } while (ran);
        int done = 0, at_bar = 0;
        for (int i = 0; i < n_threads; ++i) { done += fibers[i].st == St::Done; at_bar += fibers[i].st == St::AtBarrier; }
        if (done == n_threads) return true;
        bool same_site = true;
        const Fiber* first = nullptr;
        for (int i = 0; i < n_threads; ++i) {
            const Fiber& g = fibers[i];
            if (g.st != St::AtBarrier) continue;
            if (!first) first = &g;
            else same_site &= g.line == first->line && g.bar_kind == first->bar_kind && !std::strcmp(g.file, first->file);
        }
        if (at_bar != n_threads || !same_site) { report_block_stall(); return false; }
        int count = 0;
        for (int i = 0; i < n_threads; ++i) count += fibers[i].pred != 0;
        barrier_result = first->bar_kind == 1 ? count : first->bar_kind == 2 ? (count == n_threads) : (count > 0);
        for (int i = 0; i < n_threads; ++i) fibers[i].st = St::Ready;
    }
}

inline int launch(const unsigned* grid, const unsigned* block, std::size_t dyn, std::size_t limit,
                  void (*body)(void*), void* ctx, char* err, std::size_t errlen) {
    err_buf = err; err_len = errlen; failed = false;
    if (errlen) err[0] = 0;
    if (dyn > kSmemCapacity) { set_error("dynamic shared memory %zu bytes exceeds the emulator's %zu", dyn, kSmemCapacity); return 1; }
    ++launch_id;
    launch_static_bytes = 0; launch_dyn_bytes = dyn; smem_limit = limit;
    if (dyn > limit) { set_error("dynamic shared memory %zu bytes exceeds the limit %zu", dyn, limit); return 1; }
    blockDim = dim3(block[0], block[1], block[2]);
    gridDim = dim3(grid[0], grid[1], grid[2]);
    n_threads = int(block[0] * block[1] * block[2]);
    body_fn = body; body_ctx = ctx;
    for (int i = 0; i < n_threads; ++i) {
        Fiber& f = fibers[i];
        f.lin = i;
        f.tid = uint3{unsigned(i) % block[0], unsigned(i) / block[0] % block[1], unsigned(i) / (block[0] * block[1])};
    }
    if (_setjmp(abort_jb)) return 1;
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx) {
                blockIdx = uint3{bx, by, bz};
                poison_shared(dyn);
                for (int i = 0; i < n_threads; ++i) fibers[i].st = St::Ready;
                if (!run_block()) {
                    for (auto& f : fibers) if (f.st != St::Done) f.needs_init = true;
                    return 1;
                }
            }
    return failed ? 1 : 0;
}

}  // namespace gpunn_emu

#else
// =============================================================================================
// Thread core (for ThreadSanitizer)
namespace gpunn_emu {

// Warp intrinsics: the lanes named in mask meet under a mutex; the last to arrive computes every
// lane's result, bumps the generation and wakes the others. Partial masks work, as on the GPU.
struct WarpState {
    std::mutex m;
    std::condition_variable cv;
    unsigned arrived = 0;
    unsigned long long gen = 0;
    std::uint64_t value[32];
    std::uint64_t result[32];
    int src[32];
    int pred[32];
};

struct ThreadBlock {
    int n = 0;
    std::unique_ptr<std::barrier<>> bar;
    std::unique_ptr<WarpState[]> warps;
    std::atomic<int> count{0};
};
inline ThreadBlock* tb = nullptr;
inline GPUNN_EMU_TLS int my_lin = 0;
inline GPUNN_EMU_TLS std::uint64_t warp_result = 0;

[[noreturn]] inline void abort_launch() {
    std::fprintf(stderr, "gpunn emu (thread core): %s\n", err_buf ? err_buf : "error");
    std::abort();  // the thread core cannot unwind other OS threads
}

inline int block_barrier(int kind, int pred, const std::source_location&) {
    compiler_fence();
    if (kind) tb->count.fetch_add(pred != 0);
    tb->bar->arrive_and_wait();
    int r = 0;
    if (kind) {
        int c = tb->count.load();
        r = kind == 1 ? c : kind == 2 ? (c == tb->n) : (c > 0);
        tb->bar->arrive_and_wait();  // everyone has read the count
        if (my_lin == 0) tb->count.store(0);
        tb->bar->arrive_and_wait();
    }
    compiler_fence();
    return r;
}

inline void warp_arrive(WarpOp op, unsigned mask, std::uint64_t value, int src, int pred, const std::source_location&) {
    const int lane = my_lin & 31;
    WarpState& w = tb->warps[my_lin / 32];
    std::unique_lock<std::mutex> lock(w.m);
    w.value[lane] = value; w.src[lane] = src; w.pred[lane] = pred;
    w.arrived |= 1u << lane;
    if ((w.arrived & mask) == mask) {
        unsigned ballot = 0;
        for (int l = 0; l < 32; ++l) if ((mask >> l & 1u) && w.pred[l]) ballot |= 1u << l;
        for (int l = 0; l < 32; ++l) {
            if (!(mask >> l & 1u)) continue;
            int s = w.src[l];
            w.result[l] = op != WarpOp::Shfl ? ballot : (s >= 0 && s < 32 && (mask >> s & 1u)) ? w.value[s] : kPoison;
        }
        w.arrived &= ~mask;
        ++w.gen;
        w.cv.notify_all();
    } else {
        const unsigned long long gen = w.gen;
        w.cv.wait(lock, [&] { return w.gen != gen; });
    }
    warp_result = w.result[lane];
}

inline int launch(const unsigned* grid, const unsigned* block, std::size_t dyn, std::size_t limit,
                  void (*body)(void*), void* ctx, char* err, std::size_t errlen) {
    err_buf = err; err_len = errlen; failed = false;
    if (errlen) err[0] = 0;
    if (dyn > kSmemCapacity || dyn > limit) { set_error("dynamic shared memory %zu bytes exceeds the limit %zu", dyn, limit); return 1; }
    ++launch_id;
    launch_static_bytes = 0; launch_dyn_bytes = dyn; smem_limit = limit;
    blockDim = dim3(block[0], block[1], block[2]);
    gridDim = dim3(grid[0], grid[1], grid[2]);
    const int n = int(block[0] * block[1] * block[2]);
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx) {
                blockIdx = uint3{bx, by, bz};
                poison_shared(dyn);
                ThreadBlock b;
                b.n = n;
                b.bar = std::make_unique<std::barrier<>>(n);
                b.warps = std::make_unique<WarpState[]>((n + 31) / 32);
                tb = &b;
                std::vector<std::thread> ts;
                ts.reserve(n);
                for (int i = 0; i < n; ++i) {
                    ts.emplace_back([&, i] {
                        my_lin = i;
                        threadIdx = uint3{unsigned(i) % block[0], unsigned(i) / block[0] % block[1], unsigned(i) / (block[0] * block[1])};
                        body(ctx);
                        b.bar->arrive_and_drop();  // exited threads stop counting at barriers
                    });
                }
                for (auto& t : ts) t.join();
                tb = nullptr;
            }
    return failed ? 1 : 0;
}

}  // namespace gpunn_emu
#endif

// =============================================================================================
// Launcher glue: the generated per-kernel entry point calls launch_kernel(&kernel, ...).
namespace gpunn_emu {

template <class... A, std::size_t... I>
inline std::tuple<std::remove_cvref_t<A>...> unpack_args(void** args, std::index_sequence<I...>) {
    return std::tuple<std::remove_cvref_t<A>...>(*static_cast<std::remove_cvref_t<A>*>(args[I])...);
}

template <class... A>
inline int launch_kernel(void (*fn)(A...), const unsigned* grid, const unsigned* block, unsigned long long dyn,
                         unsigned long long limit, void** args, char* err, unsigned long long errlen) {
    struct Ctx {
        void (*fn)(A...);
        std::tuple<std::remove_cvref_t<A>...> args;
    } ctx{fn, unpack_args<A...>(args, std::index_sequence_for<A...>{})};
    auto body = [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        std::apply(c->fn, c->args);
    };
    return launch(grid, block, std::size_t(dyn), std::size_t(limit), +body, &ctx, err, std::size_t(errlen));
}

}  // namespace gpunn_emu

#define GPUNN_EMU_EXPORT extern "C" __attribute__((visibility("default")))

// =============================================================================================
// Synchronisation
inline void __syncthreads(std::source_location loc = std::source_location::current()) {
    gpunn_emu::block_barrier(0, 0, loc);
}
inline int __syncthreads_count(int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::block_barrier(1, pred, loc);
}
inline int __syncthreads_and(int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::block_barrier(2, pred, loc);
}
inline int __syncthreads_or(int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::block_barrier(3, pred, loc);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

#ifndef GPUNN_EMU_THREADS
namespace gpunn_emu { inline std::uint64_t cur_result() { return cur->result; } }
#else
namespace gpunn_emu { inline std::uint64_t cur_result() { return warp_result; } }
#endif

inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
    gpunn_emu::warp_arrive(gpunn_emu::WarpOp::Sync, mask, 0, -1, 0, loc);
}

namespace gpunn_emu {
inline int my_lane() {
#ifndef GPUNN_EMU_THREADS
    return cur->lin & 31;
#else
    return my_lin & 31;
#endif
}
template <class T>
inline T shfl(int kind, unsigned mask, T var, int arg, int width, const std::source_location& loc) {
    int lane = my_lane();
    int src = shfl_src(kind, lane, arg, width);
    warp_arrive(WarpOp::Shfl, mask, to_bits(var), src, 0, loc);
    return from_bits<T>(cur_result());
}
inline unsigned vote(unsigned mask, int pred, const std::source_location& loc) {
    warp_arrive(WarpOp::Vote, mask, 0, -1, pred, loc);
    return unsigned(cur_result());
}
}  // namespace gpunn_emu

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,
                     std::source_location loc = std::source_location::current()) {
    return gpunn_emu::shfl(0, mask, var, srcLane, width, loc);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        std::source_location loc = std::source_location::current()) {
    return gpunn_emu::shfl(1, mask, var, int(delta), width, loc);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          std::source_location loc = std::source_location::current()) {
    return gpunn_emu::shfl(2, mask, var, int(delta), width, loc);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                         std::source_location loc = std::source_location::current()) {
    return gpunn_emu::shfl(3, mask, var, laneMask, width, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::vote(mask, pred, loc) ;
}
inline int __any_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::vote(mask, pred, loc) != 0;
}
inline int __all_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
    return gpunn_emu::vote(mask, pred, loc) == mask;
}
inline unsigned __activemask() { return 0xffffffffu; }

// =============================================================================================
// Atomics (std::atomic_ref, so they are real atomics under the thread core too)
template <class T>
inline T atomicAdd(T* addr, T val) { return std::atomic_ref<T>(*addr).fetch_add(val); }
template <class T>
inline T atomicSub(T* addr, T val) { return std::atomic_ref<T>(*addr).fetch_sub(val); }
template <class T>
inline T atomicExch(T* addr, T val) { return std::atomic_ref<T>(*addr).exchange(val); }
template <class T>
inline T atomicCAS(T* addr, T compare, T val) {
    std::atomic_ref<T>(*addr).compare_exchange_strong(compare, val);
    return compare;  // holds the old value either way
}
template <class T>
inline T atomicMax(T* addr, T val) {
    std::atomic_ref<T> a(*addr);
    T old = a.load();
    while (old < val && !a.compare_exchange_weak(old, val)) {}
    return old;
}
template <class T>
inline T atomicMin(T* addr, T val) {
    std::atomic_ref<T> a(*addr);
    T old = a.load();
    while (val < old && !a.compare_exchange_weak(old, val)) {}
    return old;
}
template <class T>
inline T atomicAnd(T* addr, T val) { return std::atomic_ref<T>(*addr).fetch_and(val); }
template <class T>
inline T atomicOr(T* addr, T val) { return std::atomic_ref<T>(*addr).fetch_or(val); }
template <class T>
inline T atomicXor(T* addr, T val) { return std::atomic_ref<T>(*addr).fetch_xor(val); }

// =============================================================================================
// Math and bit intrinsics (the host libm computes them; CUDA's ulp bounds are looser)
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : (x != x ? 0.0f : x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline int __float2int_rz(float x) { return int(x); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline int __float2int_rd(float x) { return int(floorf(x)); }
inline int __float2int_ru(float x) { return int(ceilf(x)); }
inline float __int2float_rn(int x) { return float(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __ffs(int x) { return x ? std::countr_zero(unsigned(x)) + 1 : 0; }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
template <class T>
inline T __ldg(const T* p) { return *p; }

// CUDA's max/min overloads (global namespace, any arithmetic mix, as CUDA promotes)
template <class A, class B>
    requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
    else return C(a) < C(b) ? C(b) : C(a);
}
template <class A, class B>
    requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
    else return C(b) < C(a) ? C(b) : C(a);
}
using std::isnan;
using std::isinf;
using std::isfinite;
using std::signbit;

#endif  // GPUNN_CUDA_EMU_H
