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
#include <limits>
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

enum class WarpOp : std::uint8_t { Sync, Shfl, Vote, Coll };
inline const char* op_name(WarpOp op) {
    return op == WarpOp::Sync ? "__syncwarp" : op == WarpOp::Shfl ? "a __shfl*_sync"
         : op == WarpOp::Vote ? "a vote (__ballot/__any/__all_sync)" : "a warp-collective operation";
}

// A warp-collective operation (the WMMA *_sync functions): every lane of the warp passes a pointer
// to its own CollCall (as the warp-exchange value); when all 32 have arrived, the last one runs
// fn once with every lane's call - the other lanes are suspended, so their fragments may be read
// and written - and then they all continue. Lanes must agree on fn (the same operation).
struct CollCall {
    void (*fn)(CollCall* const* lanes);
    const char* name;  // e.g. "wmma::mma_sync", for messages
    const char* file = "";
    unsigned line = 0;
};
inline const char* op_name(WarpOp op, std::uint64_t value) {
    return op == WarpOp::Coll && value ? reinterpret_cast<const CollCall*>(value)->name : op_name(op);
}
inline void run_collective(const std::uint64_t* values, int stride) {
    CollCall* lanes[32];
    for (int l = 0; l < 32; ++l) lanes[l] = reinterpret_cast<CollCall*>(values[l * stride]);
    lanes[0]->fn(lanes);
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
        set_error("%s: mask 0x%08x does not name the calling lane %d", op_name(op, value), mask, lane);
        where(); abort_launch();
    }
    if (src == -2) { set_error("%s: width must be a power of two in 1..32", op_name(op, value)); where(); abort_launch(); }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (base + l >= n_threads) {
            set_error("%s: mask 0x%08x names lane %d of warp %d, which does not exist (block has %d threads)",
                      op_name(op, value), mask, l, base / 32, n_threads);
            where(); abort_launch();
        }
        if (lane_fiber(base, l).st == St::Done) {
            set_error("%s: mask 0x%08x names lane %d (thread %d), which has already exited", op_name(op, value), mask, l, base + l);
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
        if (g.op != op || g.mask != mask ||
            (op == WarpOp::Coll && reinterpret_cast<CollCall*>(g.value)->fn != reinterpret_cast<CollCall*>(value)->fn)) {
            set_error("warp divergence: lane %d is at %s with mask 0x%08x (%s:%u) while lane %d is at %s with mask 0x%08x",
                      l, op_name(g.op, g.value), g.mask, g.file, g.line, lane, op_name(op, value), mask);
            where(); abort_launch();
        }
        if (g.pred) ballot |= 1u << l;
    }
    if (op == WarpOp::Coll) {  // mask is the full warp: run the operation once for all lanes
        std::uint64_t values[32];
        for (int l = 0; l < 32; ++l) values[l] = lane_fiber(base, l).value;
        run_collective(values, 1);
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
        append_error(" wait in %s with mask 0x%08x (%s:%u) for lanes that never arrive", op_name(w->op, w->value), w->mask, w->file, w->line);
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
        if (op == WarpOp::Coll) run_collective(w.value, 1);
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

// =============================================================================================
// Half precision: __half (cuda_fp16.h), __nv_bfloat16 (cuda_bf16.h), TF32 and WMMA (mma.h).
// The loader drops `#include <cuda_fp16.h>`, `<cuda_bf16.h>` and `<mma.h>` from the kernel source
// (build.py): this section provides them.
// * Conversions are bit code, round-to-nearest-even, with subnormals, overflow to inf and signed
//   zeros as IEEE (and NumPy float16 / ml_dtypes.bfloat16) have them. NaN follows CUDA, not
//   NumPy: float->half/bf16 of any NaN gives the canonical 0x7fff, half->float of a NaN gives
//   0x7fffffff (cuda_fp16.hpp's host code; the payload is dropped); bf16->float is a plain shift.
// * __hadd/__hsub/__hmul/__hdiv compute in fp32 and round once to the 16-bit format; as fp32 has
//   more than 2p+2 bits (p = 11 or 8), that equals the correctly rounded result. __hfma is fused
//   (one rounding of the exact a*b+c): a*b is exact in double, the sum is rounded to odd in double,
//   then to the 16-bit format - correct because 53 >= p+2.
namespace gpunn_emu {
// RNE rounding of a double to a 16-bit float with MB mantissa and EB exponent bits.
template <int MB, int EB>
inline unsigned short round_to_small(double d) {
    constexpr int bias = (1 << (EB - 1)) - 1;
    constexpr unsigned inf_bits = ((1u << EB) - 1u) << MB;
    const std::uint64_t u = std::bit_cast<std::uint64_t>(d);
    const unsigned short sign = static_cast<unsigned short>((u >> 63) << 15);
    const std::uint64_t a = u & 0x7fffffffffffffffull;
    if (a > 0x7ff0000000000000ull) return 0x7fff;  // canonical NaN (both formats)
    if (a == 0x7ff0000000000000ull) return static_cast<unsigned short>(sign | inf_bits);
    if ((a >> 52) == 0) return sign;  // zero or a double subnormal: far below half an ulp
    const int e = int(a >> 52) - 1023;
    const std::uint64_t mant = (a & ((1ull << 52) - 1)) | (1ull << 52);  // value = mant * 2^(e-52)
    const int qe = (e > 1 - bias ? e : 1 - bias) - MB;                   // exponent of the result's ulp
    const int shift = qe - (e - 52);                                     // >= 52 - MB
    if (shift >= 54) return sign;                                        // below half the smallest subnormal
    std::uint64_t r = mant >> shift;
    const std::uint64_t rem = mant & ((1ull << shift) - 1), halfway = 1ull << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    const std::uint64_t bits = (std::uint64_t(qe + MB + bias - 1) << MB) + r;  // carries into the exponent
    if (bits >= inf_bits) return static_cast<unsigned short>(sign | inf_bits);
    return static_cast<unsigned short>(sign | bits);
}
inline unsigned short float_to_half_bits(float f) { return round_to_small<10, 5>(double(f)); }
inline unsigned short float_to_bf16_bits(float f) { return round_to_small<7, 8>(double(f)); }
inline float half_bits_to_float(unsigned short h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return std::bit_cast<float>(m ? 0x7fffffffu : (sign | 0x7f800000u));
    if (e == 0) {
        const float v = float(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
        return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
    }
    return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}
inline float bf16_bits_to_float(unsigned short b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }
// a*b + c rounded to odd in double (a, b, c of at most 24 significant bits, so a*b is exact).
inline double fma_round_to_odd(double a, double b, double c) {
    const double p = a * b, s = p + c;
    if (!std::isfinite(s)) return s;
    const double bb = s - p, err = (p - (s - bb)) + (c - bb);  // TwoSum: p + c == s + err exactly
    if (err != 0.0 && !(std::bit_cast<std::uint64_t>(s) & 1u))
        return std::nextafter(s, err > 0 ? std::numeric_limits<double>::infinity()
                                         : -std::numeric_limits<double>::infinity());
    return s;
}
}  // namespace gpunn_emu

struct __half_raw { unsigned short x; };
struct __nv_bfloat16_raw { unsigned short x; };

struct __half {
    unsigned short __x;
    __half() = default;
    constexpr __half(const __half_raw& r) : __x(r.x) {}
    __half(float f) : __x(gpunn_emu::float_to_half_bits(f)) {}
    __half(double d) : __x(gpunn_emu::round_to_small<10, 5>(d)) {}
    __half(int i) : __half(float(i)) {}
    __half& operator=(const __half_raw& r) { __x = r.x; return *this; }
    __half& operator=(float f) { __x = gpunn_emu::float_to_half_bits(f); return *this; }
    __half& operator=(double d) { __x = gpunn_emu::round_to_small<10, 5>(d); return *this; }
    constexpr operator __half_raw() const { return __half_raw{__x}; }
    operator float() const { return gpunn_emu::half_bits_to_float(__x); }
};
struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
    __nv_bfloat16(float f) : __x(gpunn_emu::float_to_bf16_bits(f)) {}
    __nv_bfloat16(double d) : __x(gpunn_emu::round_to_small<7, 8>(d)) {}
    __nv_bfloat16(int i) : __nv_bfloat16(float(i)) {}
    __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) { __x = r.x; return *this; }
    __nv_bfloat16& operator=(float f) { __x = gpunn_emu::float_to_bf16_bits(f); return *this; }
    __nv_bfloat16& operator=(double d) { __x = gpunn_emu::round_to_small<7, 8>(d); return *this; }
    constexpr operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
    operator float() const { return gpunn_emu::bf16_bits_to_float(__x); }
};
static_assert(sizeof(__half) == 2 && std::is_trivial_v<__half>);
static_assert(sizeof(__nv_bfloat16) == 2 && std::is_trivial_v<__nv_bfloat16>);
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;
struct alignas(4) __half2 { __half x, y; };
struct alignas(4) __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __half2 half2;
typedef __nv_bfloat162 nv_bfloat162;

namespace gpunn_emu {
inline __half mk_half(unsigned short b) { return __half(__half_raw{b}); }
inline __nv_bfloat16 mk_bf16(unsigned short b) { return __nv_bfloat16(__nv_bfloat16_raw{b}); }
}  // namespace gpunn_emu

// conversions
inline __half __float2half(float f) { return gpunn_emu::mk_half(gpunn_emu::float_to_half_bits(f)); }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline __half __double2half(double d) { return gpunn_emu::mk_half(gpunn_emu::round_to_small<10, 5>(d)); }
inline float __half2float(__half h) { return gpunn_emu::half_bits_to_float(h.__x); }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half2 __float2half2_rn(float f) { return __half2{__float2half(f), __float2half(f)}; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half(a), __float2half(b)}; }
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline __half2 __half2half2(__half a) { return __half2{a, a}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return gpunn_emu::mk_bf16(gpunn_emu::float_to_bf16_bits(f)); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __double2bfloat16(double d) { return gpunn_emu::mk_bf16(gpunn_emu::round_to_small<7, 8>(d)); }
inline float __bfloat162float(__nv_bfloat16 b) { return gpunn_emu::bf16_bits_to_float(b.__x); }
inline __nv_bfloat162 __float2bfloat162_rn(float f) { return __nv_bfloat162{__float2bfloat16(f), __float2bfloat16(f)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)}; }
inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return gpunn_emu::mk_half(u); }
inline short __half_as_short(__half h) { return short(h.__x); }
inline __half __short_as_half(short s) { return gpunn_emu::mk_half((unsigned short)s); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return gpunn_emu::mk_bf16(u); }
inline short __bfloat16_as_short(__nv_bfloat16 h) { return short(h.__x); }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return gpunn_emu::mk_bf16((unsigned short)s); }

// arithmetic and classification, the same for both types
#define GPUNN_EMU_HALF_OPS(T, TO_F, FROM_F, MB, EB, EXP_MASK)                                                    \
    inline T __hadd(T a, T b) { return FROM_F(TO_F(a) + TO_F(b)); }                                              \
    inline T __hsub(T a, T b) { return FROM_F(TO_F(a) - TO_F(b)); }                                              \
    inline T __hmul(T a, T b) { return FROM_F(TO_F(a) * TO_F(b)); }                                              \
    inline T __hdiv(T a, T b) { return FROM_F(TO_F(a) / TO_F(b)); }                                              \
    inline T __hfma(T a, T b, T c) {                                                                             \
        T r; r.__x = gpunn_emu::round_to_small<MB, EB>(gpunn_emu::fma_round_to_odd(TO_F(a), TO_F(b), TO_F(c)));  \
        return r;                                                                                                \
    }                                                                                                            \
    inline T __hneg(T a) { T r; r.__x = (unsigned short)(a.__x ^ 0x8000u); return r; }                          \
    inline T __habs(T a) { T r; r.__x = (unsigned short)(a.__x & 0x7fffu); return r; }                          \
    inline bool __hisnan(T a) { return (a.__x & 0x7fffu) > EXP_MASK; }                                          \
    inline int __hisinf(T a) { return a.__x == EXP_MASK ? 1 : a.__x == (0x8000u | EXP_MASK) ? -1 : 0; }          \
    inline bool __heq(T a, T b) { return TO_F(a) == TO_F(b); }                                                   \
    inline bool __hne(T a, T b) { return TO_F(a) != TO_F(b); }                                                   \
    inline bool __hlt(T a, T b) { return TO_F(a) < TO_F(b); }                                                    \
    inline bool __hle(T a, T b) { return TO_F(a) <= TO_F(b); }                                                   \
    inline bool __hgt(T a, T b) { return TO_F(a) > TO_F(b); }                                                    \
    inline bool __hge(T a, T b) { return TO_F(a) >= TO_F(b); }                                                   \
    inline T __hmax(T a, T b) { return FROM_F(std::fmax(TO_F(a), TO_F(b))); }                                    \
    inline T __hmin(T a, T b) { return FROM_F(std::fmin(TO_F(a), TO_F(b))); }                                    \
    inline T operator+(const T& a, const T& b) { return __hadd(a, b); }                                          \
    inline T operator-(const T& a, const T& b) { return __hsub(a, b); }                                          \
    inline T operator*(const T& a, const T& b) { return __hmul(a, b); }                                          \
    inline T operator/(const T& a, const T& b) { return __hdiv(a, b); }                                          \
    inline T& operator+=(T& a, const T& b) { return a = __hadd(a, b); }                                          \
    inline T& operator-=(T& a, const T& b) { return a = __hsub(a, b); }                                          \
    inline T& operator*=(T& a, const T& b) { return a = __hmul(a, b); }                                          \
    inline T& operator/=(T& a, const T& b) { return a = __hdiv(a, b); }                                          \
    inline T operator+(const T& a) { return a; }                                                                 \
    inline T operator-(const T& a) { return __hneg(a); }                                                         \
    inline bool operator==(const T& a, const T& b) { return __heq(a, b); }                                       \
    inline bool operator!=(const T& a, const T& b) { return __hne(a, b); }                                       \
    inline bool operator<(const T& a, const T& b) { return __hlt(a, b); }                                        \
    inline bool operator<=(const T& a, const T& b) { return __hle(a, b); }                                       \
    inline bool operator>(const T& a, const T& b) { return __hgt(a, b); }                                        \
    inline bool operator>=(const T& a, const T& b) { return __hge(a, b); }
GPUNN_EMU_HALF_OPS(__half, __half2float, __float2half, 10, 5, 0x7c00u)
GPUNN_EMU_HALF_OPS(__nv_bfloat16, __bfloat162float, __float2bfloat16, 7, 8, 0x7f80u)
#undef GPUNN_EMU_HALF_OPS
inline __half2 __hadd2(__half2 a, __half2 b) { return __half2{__hadd(a.x, b.x), __hadd(a.y, b.y)}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return __half2{__hmul(a.x, b.x), __hmul(a.y, b.y)}; }
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) { return __half2{__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)}; }

// =============================================================================================
// WMMA (nvcuda::wmma): m16n16k16 with __half or __nv_bfloat16 inputs, m16n16k8 with precision::tf32
// inputs, float accumulators.
// * Lane mapping (unspecified by CUDA, so kernels must not rely on it): a fragment holds its
//   matrix (A: M x K, B: K x N, accumulator: M x N) in row-major element order, and lane l holds
//   elements [l * num_elements, (l + 1) * num_elements), num_elements = rows * cols / 32.
// * load_matrix_sync, store_matrix_sync and mma_sync are warp-collective (see CollCall): all 32
//   lanes of a full warp must call the same one with the same pointer, ldm and layout; a missing
//   lane is reported as a deadlock or warp divergence. ldm must be a multiple of 16 bytes.
//   fill_fragment is per lane (it touches only the caller's elements).
// * mma_sync: d[i][j] = c[i][j], then for k = 0..K-1 in order, d[i][j] = fmaf(a[i][k], b[k][j], d[i][j])
//   in fp32. Products of half/bf16/tf32 values are exact in fp32, so this equals an fp32 add of the
//   exact product per step. tf32 inputs are used as the GPU uses them: the low 13 mantissa bits of
//   each float are ignored (round them with __float_to_tf32 first, as CUDA asks).
namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision { struct tf32 {}; }

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 explicit mantissa bits (the low
// 13 bits become zero). Inf stays inf; a finite value that rounds past the largest one becomes inf;
// NaN is returned as the canonical 0x7fffffff.
inline float __float_to_tf32(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::bit_cast<float>(0x7fffffffu);
    if ((u & 0x7fffffffu) == 0x7f800000u) return f;
    return std::bit_cast<float>((u + 0x1000u) & ~0x1fffu);
}

namespace detail {
template <class Use, int M, int N, int K> struct shape;
template <int M, int N, int K> struct shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };
template <class T> struct storage { using type = T; };
template <> struct storage<precision::tf32> { using type = float; };
template <class Use, int M, int N, int K, class T, class L>
constexpr bool supported() {
    if constexpr (std::is_same_v<Use, accumulator>)
        return std::is_same_v<T, float> && std::is_void_v<L> && M == 16 && N == 16 && (K == 16 || K == 8);
    else {
        constexpr bool layout = std::is_same_v<L, row_major> || std::is_same_v<L, col_major>;
        constexpr bool k16 = M == 16 && N == 16 && K == 16 && (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>);
        constexpr bool k8 = M == 16 && N == 16 && K == 8 && std::is_same_v<T, precision::tf32>;
        return layout && (k16 || k8);
    }
}
template <class T> inline float to_f(T v) { return float(v); }
inline float tf32_value(float v) { return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & ~0x1fffu); }
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
    static_assert(detail::supported<Use, M, N, K, T, Layout>(),
                  "gpunn emulator: supported WMMA fragments are m16n16k16 with __half or __nv_bfloat16 "
                  "matrix_a/matrix_b (row_major or col_major), m16n16k8 with precision::tf32, and float "
                  "accumulators (no layout)");
public:
    using element_type = T;
    using storage_element_type = typename detail::storage<T>::type;
    static constexpr int rows = detail::shape<Use, M, N, K>::rows, cols = detail::shape<Use, M, N, K>::cols;
    enum { num_elements = rows * cols / 32 };
    storage_element_type x[num_elements];
};

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
    using S = typename fragment<Use, M, N, K, T, L>::storage_element_type;
    const S s = S(v);
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = s;
}

namespace detail {
template <class Frag, class P>
struct MemCall : gpunn_emu::CollCall {
    Frag* frag;
    P* ptr;
    unsigned ldm;
    bool col;
};
inline void fail(const gpunn_emu::CollCall* c, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
inline void fail(const gpunn_emu::CollCall* c, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gpunn_emu::set_error("%s: %s (block (%u,%u,%u), %s:%u)", c->name, msg, blockIdx.x, blockIdx.y, blockIdx.z,
                         c->file, c->line);
    gpunn_emu::abort_launch();
}
template <class C>
inline void check_uniform(gpunn_emu::CollCall* const* lanes, int elem_bytes) {
    const C* c0 = static_cast<const C*>(lanes[0]);
    for (int l = 1; l < 32; ++l) {
        const C* c = static_cast<const C*>(lanes[l]);
        if (c->ptr != c0->ptr || c->ldm != c0->ldm || c->col != c0->col)
            fail(c0, "all lanes of a warp must pass the same pointer, ldm and layout: lane 0 passed (%p, %u, %s), "
                     "lane %d passed (%p, %u, %s)", (const void*)c0->ptr, c0->ldm, c0->col ? "col_major" : "row_major",
                 l, (const void*)c->ptr, c->ldm, c->col ? "col_major" : "row_major");
    }
    if ((std::size_t(c0->ldm) * elem_bytes) % 16)
        fail(c0, "ldm=%u is not a multiple of 16 bytes (%d elements)", c0->ldm, 16 / elem_bytes);
}
template <class Frag, class P>
inline void do_load(gpunn_emu::CollCall* const* lanes) {
    using C = MemCall<Frag, const P>;
    check_uniform<C>(lanes, sizeof(P));
    const C* c0 = static_cast<const C*>(lanes[0]);
    if (c0->ldm < unsigned(c0->col ? Frag::rows : Frag::cols))
        fail(c0, "ldm=%u is smaller than the %s fragment's %d %s", c0->ldm, c0->col ? "col_major" : "row_major",
             c0->col ? Frag::rows : Frag::cols, c0->col ? "rows" : "columns");
    for (int l = 0; l < 32; ++l) {
        Frag* f = static_cast<const C*>(lanes[l])->frag;
        for (int i = 0; i < Frag::num_elements; ++i) {
            const int e = l * Frag::num_elements + i, r = e / Frag::cols, k = e % Frag::cols;
            f->x[i] = c0->ptr[c0->col ? std::size_t(k) * c0->ldm + r : std::size_t(r) * c0->ldm + k];
        }
    }
}
template <class Frag, class P>
inline void do_store(gpunn_emu::CollCall* const* lanes) {
    using C = MemCall<const Frag, P>;
    check_uniform<C>(lanes, sizeof(P));
    const C* c0 = static_cast<const C*>(lanes[0]);
    if (c0->ldm < unsigned(c0->col ? Frag::rows : Frag::cols))
        fail(c0, "ldm=%u is smaller than the %s fragment's %d %s", c0->ldm, c0->col ? "col_major" : "row_major",
             c0->col ? Frag::rows : Frag::cols, c0->col ? "rows" : "columns");
    for (int l = 0; l < 32; ++l) {
        const Frag* f = static_cast<const C*>(lanes[l])->frag;
        for (int i = 0; i < Frag::num_elements; ++i) {
            const int e = l * Frag::num_elements + i, r = e / Frag::cols, k = e % Frag::cols;
            c0->ptr[c0->col ? std::size_t(k) * c0->ldm + r : std::size_t(r) * c0->ldm + k] = f->x[i];
        }
    }
}
template <class Frag, class P>
inline void run_mem(const char* name, void (*fn)(gpunn_emu::CollCall* const*), Frag& frag, P* ptr, unsigned ldm,
                    bool col, const std::source_location& loc) {
    MemCall<Frag, P> call;
    call.fn = fn; call.name = name; call.file = loc.file_name(); call.line = loc.line();
    call.frag = &frag; call.ptr = ptr; call.ldm = ldm; call.col = col;
    gpunn_emu::warp_arrive(gpunn_emu::WarpOp::Coll, 0xffffffffu, reinterpret_cast<std::uintptr_t>(
                               static_cast<gpunn_emu::CollCall*>(&call)), -1, 0, loc);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class L>
    requires(!std::is_same_v<Use, accumulator>)
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& a,
                             const typename fragment<Use, M, N, K, T, L>::storage_element_type* p, unsigned ldm,
                             std::source_location loc = std::source_location::current()) {
    using F = fragment<Use, M, N, K, T, L>;
    using S = typename F::storage_element_type;
    detail::run_mem<F, const S>("wmma::load_matrix_sync", &detail::do_load<F, S>, a, p, ldm,
                                std::is_same_v<L, col_major>, loc);
}
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& a, const float* p, unsigned ldm, layout_t layout,
                             std::source_location loc = std::source_location::current()) {
    using F = fragment<accumulator, M, N, K, float>;
    detail::run_mem<F, const float>("wmma::load_matrix_sync", &detail::do_load<F, float>, a, p, ldm,
                                    layout == mem_col_major, loc);
}
template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& a, unsigned ldm, layout_t layout,
                              std::source_location loc = std::source_location::current()) {
    using F = fragment<accumulator, M, N, K, float>;
    detail::run_mem<const F, float>("wmma::store_matrix_sync", &detail::do_store<F, float>, a, p, ldm,
                                    layout == mem_col_major, loc);
}

namespace detail {
template <class FD, class FA, class FB, class FC>
struct MmaCall : gpunn_emu::CollCall {
    FD* d;
    const FA* a;
    const FB* b;
    const FC* c;
};
template <class T>
inline float input_value(const typename storage<T>::type& v) {
    if constexpr (std::is_same_v<T, precision::tf32>) return tf32_value(v);
    else return float(v);
}
template <int M, int N, int K, class FD, class FA, class FB, class FC, class T>
inline void do_mma(gpunn_emu::CollCall* const* lanes) {
    float A[M * K], B[K * N], C[M * N];
    for (int l = 0; l < 32; ++l) {
        const auto* c = static_cast<const MmaCall<FD, FA, FB, FC>*>(lanes[l]);
        for (int i = 0; i < FA::num_elements; ++i) A[l * FA::num_elements + i] = input_value<T>(c->a->x[i]);
        for (int i = 0; i < FB::num_elements; ++i) B[l * FB::num_elements + i] = input_value<T>(c->b->x[i]);
        for (int i = 0; i < FC::num_elements; ++i) C[l * FC::num_elements + i] = c->c->x[i];
    }
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = C[i * N + j];
            for (int k = 0; k < K; ++k) acc = ::fmaf(A[i * K + k], B[k * N + j], acc);
            C[i * N + j] = acc;  // every input is gathered already, so d may alias c
        }
    for (int l = 0; l < 32; ++l) {
        auto* c = static_cast<const MmaCall<FD, FA, FB, FC>*>(lanes[l]);
        for (int i = 0; i < FD::num_elements; ++i) c->d->x[i] = C[l * FD::num_elements + i];
    }
}
}  // namespace detail

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
                     std::source_location loc = std::source_location::current()) {
    using FD = fragment<accumulator, M, N, K, float>;
    using FA = fragment<matrix_a, M, N, K, T, LA>;
    using FB = fragment<matrix_b, M, N, K, T, LB>;
    detail::MmaCall<FD, FA, FB, FD> call;
    call.fn = &detail::do_mma<M, N, K, FD, FA, FB, FD, T>;
    call.name = "wmma::mma_sync"; call.file = loc.file_name(); call.line = loc.line();
    call.d = &d; call.a = &a; call.b = &b; call.c = &c;
    gpunn_emu::warp_arrive(gpunn_emu::WarpOp::Coll, 0xffffffffu, reinterpret_cast<std::uintptr_t>(
                               static_cast<gpunn_emu::CollCall*>(&call)), -1, 0, loc);
}
}  // namespace wmma
}  // namespace nvcuda

#endif  // GPUNN_CUDA_EMU_H
