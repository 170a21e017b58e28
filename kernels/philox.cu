// Inverted dropout drawing from a counter-based Philox4x32-10 generator whose state lives in device memory.
//
// Algorithm
//   Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC 2011; Random123's philox4x32, 10 rounds): a 128-bit
//   counter (c0..c3) and a 64-bit key (k0, k1); one round is
//     (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2   (full 32x32->64 products)
//     (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
//   with the key bumped between rounds: k0 += W0, k1 += W1. M0 = 0xD2511F53, M1 = 0xCD9E8D57,
//   W0 = 0x9E3779B9, W1 = 0xBB67AE85.
//   The generator state is state[0] = seed, state[1] = offset (unsigned 64-bit, device memory); the
//   kernels read it there, never from a host scalar, so a captured CUDA graph that also contains the
//   philox_advance launch draws fresh masks on every replay, and eager mode draws the same stream.
//   Key = (lo32(seed), hi32(seed)); Philox block b of a draw uses counter (lo32(offset + b),
//   hi32(offset + b), 0, 0) and yields words r0..r3. Each thread computes one block per grid-stride
//   iteration:
//     float32: 4 elements per block, element 4b + j takes u = (r_j >> 8) * 2^-24 (24 bits, exact);
//     float64: 2 elements per block, element 2b + j takes u = (((r_{2j+1} << 32) | r_{2j}) >> 11) * 2^-53
//              (53 bits, exact).
//   keep = u >= rate (in T); y = x * (keep ? scale : 0), scale = T(1 / (1 - rate)) from the host;
//   mask = keep (uint8). dropout_bwd: dx = dy * (mask ? scale : 0), the same products as the reference.
//   After a draw of n elements the launcher runs philox_advance(state, blocks), blocks = ceil(n / 4)
//   (float32) or ceil(n / 2) (float64): one thread adds it to state[1], so draws never share a counter.
//   Every element is independent of the launch shape: deterministic, bit for bit the reference.
// Launch shape
//   dropout_fwd: 1-D, block 256, grid = min(ceil(blocks / 256), 65535), grid-stride over Philox blocks,
//   64-bit indices. dropout_bwd: 1-D, block 256, grid-stride over elements. philox_advance: <<<1, 1>>>.
//   Scalars: n is `long long` (np.int64); rate, scale are T (np.float32 / np.float64); the advance
//   count is `unsigned long long` (np.uint64).
// Bytes / FLOPs per element (float32)
//   forward: 9 bytes (read x 4, write y 4, write mask 1) and the 16 bytes of state once per thread;
//   Philox costs 10 rounds x (2 wide multiplies + 4 xors) + 18 adds per 4 elements, ~15 integer ops
//   per element, well under the memory time on any GPU. backward: 9 bytes (dy 4, mask 1, dx 4).
// NumPy reference
//   gpunn/backend/ops/dropout.py: philox_uniform(seed, offset, n, dtype) (the stream, and the contract),
//   philox_keep, DropoutOps.dropout_backward; the kernels match them bit for bit.

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

struct PhiloxWords {
    unsigned r0, r1, r2, r3;
};

__device__ __forceinline__ void philox_round(unsigned& c0, unsigned& c1, unsigned& c2, unsigned& c3, unsigned k0,
                                             unsigned k1) {
    const unsigned long long p0 = (unsigned long long)PHILOX_M0 * c0;
    const unsigned long long p1 = (unsigned long long)PHILOX_M1 * c2;
    const unsigned n0 = (unsigned)(p1 >> 32) ^ c1 ^ k0;
    const unsigned n2 = (unsigned)(p0 >> 32) ^ c3 ^ k1;
    c1 = (unsigned)p1;
    c3 = (unsigned)p0;
    c0 = n0;
    c2 = n2;
}

// Philox4x32-10 of counter (lo32(ctr), hi32(ctr), 0, 0) under key (lo32(seed), hi32(seed)).
__device__ __forceinline__ PhiloxWords philox4x32_10(unsigned long long ctr, unsigned long long seed) {
    unsigned c0 = (unsigned)ctr, c1 = (unsigned)(ctr >> 32), c2 = 0u, c3 = 0u;
    unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
    philox_round(c0, c1, c2, c3, k0, k1);
#pragma unroll
    for (int r = 1; r < 10; ++r) {
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
        philox_round(c0, c1, c2, c3, k0, k1);
    }
    PhiloxWords w;
    w.r0 = c0;
    w.r1 = c1;
    w.r2 = c2;
    w.r3 = c3;
    return w;
}

__device__ __forceinline__ float philox_u32_to_float(unsigned r) { return (float)(r >> 8) * 5.9604644775390625e-08f; }

__device__ __forceinline__ double philox_u64_to_double(unsigned lo, unsigned hi) {
    const unsigned long long bits = (((unsigned long long)hi << 32) | lo) >> 11;
    return (double)bits * 1.1102230246251565404236316680908203125e-16;  // 2^-53
}

template <typename T>
__device__ __forceinline__ void dropout_one(const T* __restrict__ x, T* __restrict__ y,
                                            unsigned char* __restrict__ mask, long long i, T u, T rate, T scale) {
    const bool keep = u >= rate;
    y[i] = x[i] * (keep ? scale : T(0));
    mask[i] = keep ? 1 : 0;
}

extern "C" __global__ void dropout_fwd_f32(const float* __restrict__ x, float* __restrict__ y,
                                           unsigned char* __restrict__ mask, const unsigned long long* state,
                                           long long n, float rate, float scale) {
    const unsigned long long seed = state[0], offset = state[1];
    const long long blocks = (n + 3) / 4;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += step) {
        const PhiloxWords w = philox4x32_10(offset + (unsigned long long)b, seed);
        const long long i = 4 * b;
        if (i + 3 < n) {
            dropout_one<float>(x, y, mask, i, philox_u32_to_float(w.r0), rate, scale);
            dropout_one<float>(x, y, mask, i + 1, philox_u32_to_float(w.r1), rate, scale);
            dropout_one<float>(x, y, mask, i + 2, philox_u32_to_float(w.r2), rate, scale);
            dropout_one<float>(x, y, mask, i + 3, philox_u32_to_float(w.r3), rate, scale);
        } else {  // the tail: n % 4 elements of the last block
            dropout_one<float>(x, y, mask, i, philox_u32_to_float(w.r0), rate, scale);
            if (i + 1 < n) dropout_one<float>(x, y, mask, i + 1, philox_u32_to_float(w.r1), rate, scale);
            if (i + 2 < n) dropout_one<float>(x, y, mask, i + 2, philox_u32_to_float(w.r2), rate, scale);
        }
    }
}

extern "C" __global__ void dropout_fwd_f64(const double* __restrict__ x, double* __restrict__ y,
                                           unsigned char* __restrict__ mask, const unsigned long long* state,
                                           long long n, double rate, double scale) {
    const unsigned long long seed = state[0], offset = state[1];
    const long long blocks = (n + 1) / 2;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += step) {
        const PhiloxWords w = philox4x32_10(offset + (unsigned long long)b, seed);
        const long long i = 2 * b;
        dropout_one<double>(x, y, mask, i, philox_u64_to_double(w.r0, w.r1), rate, scale);
        if (i + 1 < n) dropout_one<double>(x, y, mask, i + 1, philox_u64_to_double(w.r2, w.r3), rate, scale);
    }
}

template <typename T>
__device__ __forceinline__ void dropout_bwd(const T* __restrict__ dy, const unsigned char* __restrict__ mask,
                                            T* __restrict__ dx, long long n, T scale) {
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        dx[i] = dy[i] * (mask[i] ? scale : T(0));
    }
}

extern "C" __global__ void dropout_bwd_f32(const float* __restrict__ dy, const unsigned char* __restrict__ mask,
                                           float* __restrict__ dx, long long n, float scale) {
    dropout_bwd<float>(dy, mask, dx, n, scale);
}

extern "C" __global__ void dropout_bwd_f64(const double* __restrict__ dy, const unsigned char* __restrict__ mask,
                                           double* __restrict__ dx, long long n, double scale) {
    dropout_bwd<double>(dy, mask, dx, n, scale);
}

// One thread: offset += count. Launched right after a draw, on the same stream, so it belongs to the
// step (and to a captured graph) like the draw itself.
extern "C" __global__ void philox_advance(unsigned long long* state, unsigned long long count) {
    if (blockIdx.x == 0 && threadIdx.x == 0) state[1] += count;
}
