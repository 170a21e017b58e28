// Tensor-core GEMM (WMMA): row-major float32 C (M x N) = op(A) @ op(B), optionally accumulated into C,
// with fp16 / bf16 operands or float32 operands rounded to TF32; fp32 accumulation throughout.
//
// Forms (op = identity or transpose; every matrix is a dense row-major buffer), as kernels/gemm.cu
//   nn: A is M x K, B is K x N             C = A @ B
//   nt: A is M x K, B is given as N x K    C = A @ B^T   (Dense's dx = dy @ W^T)
//   tn: A is given as K x M, B is K x N    C = A^T @ B   (Dense's dW = x^T @ dy)
//   With accumulate != 0, C = C + op(A) @ op(B): the accumulator fragments start from C.
// Precisions (entry-point suffix: operand type -> fragment)
//   f16:  __half A, B          -> m16n16k16 __half fragments,        float accumulator
//   bf16: __nv_bfloat16 A, B   -> m16n16k16 __nv_bfloat16 fragments, float accumulator
//   tf32: float A, B           -> m16n16k8 precision::tf32 fragments (each element rounded with
//         wmma::__float_to_tf32, i.e. cvt.rna: to nearest, ties away from zero), float accumulator
// Algorithm
//   A block of 4 warps (128 threads) computes a 64 x 64 tile of C; the warps form a 2 x 2 grid and
//   each holds a 32 x 32 sub-tile as 2 x 2 accumulator fragments of 16 x 16. The reduction runs in
//   K steps of BK = 16: the block copies the 64 x 16 slice of op(A) and the 16 x 64 slice of op(B)
//   from global into shared memory in the operand's own layout (a coalesced copy along its
//   contiguous dimension; no transposing store), then each warp loads its fragments from shared
//   memory and issues 2 x 2 mma_sync per 16-deep k step (two k steps of 8 for tf32). A transposed
//   operand is read through the fragment layout, not copied: the tn form's A slice is kept k-major
//   (S[k][m]) and loaded as a col_major matrix_a; the nt form's B slice is kept n-major (S[n][k])
//   and loaded as a col_major matrix_b; the others are row_major. Shared rows are padded by 8
//   elements (16 or 32 bytes: WMMA's ldm rule, and fewer bank conflicts); every fragment pointer is
//   32-byte aligned. Single-buffered: two __syncthreads per K step. Correctness first; no
//   software pipelining, no vector loads.
//   Tails: operand loads outside the matrix (row >= M, column >= N, k >= K) store 0 into shared
//   memory, so the padded products add +0; C goes through a 64 x 64 float staging buffer in shared
//   memory both ways (accumulate: bounds-checked copy of C into it, zero outside, then
//   load_matrix_sync; epilogue: store_matrix_sync into it, then a bounds-checked copy to C), so any
//   M, N, K >= 0 is correct (K = 0 gives C = 0, or C unchanged when accumulating).
//   Accumulation order: each fragment's accumulator starts from C (or 0) and takes the K steps in
//   ascending order; within mma_sync the order is the hardware's (the emulator's is k ascending,
//   one fmaf per k, which the tests check bit for bit).
// Tile: BM x BN x BK = 64 x 64 x 16, warp tile 32 x 32 (2 x 2 fragments), 128 threads.
//   Static shared memory: A slice 6144 B + B slice 6144 B (sized for float, the largest element) +
//   C staging 64 x 68 floats = 17408 B; 29696 B in all (one arena, gemm_tc_smem).
// Launch shape
//   block 128 (__launch_bounds__(128)); grid (ceil(N / 64), ceil(M / 64)), both under 65535 (the
//   launcher checks). M, N, K are `int` (np.int32); element offsets are long long.
// FLOPs and bytes per output element
//   2K FLOPs per C element. Operand reads: every column tile re-reads the A slice and every row tile
//   the B slice, K * (1/64 + 1/64) = K/32 elements per C element (K/16 bytes for f16/bf16, K/8 for
//   tf32), plus one 4-byte write of C (and one read when accumulating).
// NumPy reference
//   C0 + op(A).astype(float32) @ op(B).astype(float32) with float32 accumulation (for tf32, the
//   operands rounded to TF32 first): every product of two fp16 / bf16 / TF32 values is exact in
//   float32, so the result differs from the exact sum of those products only by the accumulation
//   roundings (tests/backend/cuda/test_launchers_gemm_tc.py states the bound).
// Includes: unlike the other families this one needs the CUDA headers for __half, __nv_bfloat16
//   and nvcuda::wmma; NVRTC needs an include path for them (-I<CUDA>/include; the NVRTC gate finds
//   one), the emulator provides its own.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

#define GEMM_TC_THREADS 128

constexpr int TC_BM = 64, TC_BN = 64, TC_BK = 16;  // block tile
constexpr int TC_WM = 32, TC_WN = 32;               // warp tile: 2 x 2 fragments of 16 x 16
constexpr int TC_PAD = 8;                           // elements of padding per shared row
constexpr int TC_LDC = TC_BN + 4;                   // C staging row: 68 floats (a multiple of 4)
// Each operand slice is 64 x 16 in one of two orientations: [64][16 + 8] or [16][64 + 8] elements.
constexpr int TC_OPERAND_ELEMS = (TC_BM * (TC_BK + TC_PAD) > TC_BK * (TC_BM + TC_PAD))
                                     ? TC_BM * (TC_BK + TC_PAD) : TC_BK * (TC_BM + TC_PAD);
constexpr int TC_OPERAND_BYTES = TC_OPERAND_ELEMS * 4;   // sized for float (tf32)
constexpr int TC_C_BYTES = TC_BM * TC_LDC * 4;
#define GEMM_TC_SMEM_BYTES 29696
static_assert(2 * TC_OPERAND_BYTES + TC_C_BYTES == GEMM_TC_SMEM_BYTES, "the header's shared size");
static_assert(TC_OPERAND_BYTES % 128 == 0, "the B slice and C staging start 128-byte aligned");
static_assert((TC_BM / TC_WM) * (TC_BN / TC_WN) * 32 == GEMM_TC_THREADS, "one warp per 32 x 32 sub-tile");

// One static shared arena for every entry point (one runs per block): keeps the emulator's
// per-module arena small, changes nothing on the GPU.
__device__ __forceinline__ unsigned char* gemm_tc_smem() {
    __shared__ __align__(128) unsigned char smem[GEMM_TC_SMEM_BYTES];
    return smem;
}

template <bool C, class X, class Y> struct TcIf { typedef X type; };
template <class X, class Y> struct TcIf<false, X, Y> { typedef Y type; };

// Per operand type: the fragment element type, the fragment's k depth, whether to round to TF32.
template <typename T> struct TcPrec;
template <> struct TcPrec<__half> {
    typedef __half frag;
    static constexpr int KF = 16;
    static constexpr bool TF32 = false;
    static __device__ __forceinline__ __half zero() { return __float2half(0.0f); }
};
template <> struct TcPrec<__nv_bfloat16> {
    typedef __nv_bfloat16 frag;
    static constexpr int KF = 16;
    static constexpr bool TF32 = false;
    static __device__ __forceinline__ __nv_bfloat16 zero() { return __float2bfloat16(0.0f); }
};
template <> struct TcPrec<float> {
    typedef wmma::precision::tf32 frag;
    static constexpr int KF = 8;
    static constexpr bool TF32 = true;
    static __device__ __forceinline__ float zero() { return 0.0f; }
};

// Copy the OUTER x INNER slice of a row-major buffer X (ld elements a row; element (o, i) at
// X[o * ld + i]) starting at (o0, i0) into shared S[o * (INNER + TC_PAD) + i], 0 outside
// [0, o_lim) x [0, i_lim). Consecutive threads take consecutive i: coalesced global reads.
template <typename T, int OUTER, int INNER>
__device__ __forceinline__ void tc_load_slice(const T* __restrict__ X, int ld, int o_lim, int i_lim, int o0, int i0,
                                              T* __restrict__ S) {
    constexpr int LD = INNER + TC_PAD;
#pragma unroll
    for (int idx = threadIdx.x; idx < OUTER * INNER; idx += GEMM_TC_THREADS) {
        const int o = idx / INNER, i = idx % INNER;
        const int go = o0 + o, gi = i0 + i;
        S[o * LD + i] = (go < o_lim && gi < i_lim) ? X[(long long)go * ld + gi] : TcPrec<T>::zero();
    }
}

// A_T: A is given as K x M (the tn form); B_T: B is given as N x K (the nt form).
template <typename T, bool A_T, bool B_T>
__device__ __forceinline__ void gemm_tc_impl(const T* __restrict__ A, const T* __restrict__ B, float* __restrict__ C,
                                             int M, int N, int K, int accumulate) {
    typedef typename TcPrec<T>::frag FT;
    constexpr int KF = TcPrec<T>::KF;
    typedef typename TcIf<A_T, wmma::col_major, wmma::row_major>::type LayoutA;
    typedef typename TcIf<B_T, wmma::col_major, wmma::row_major>::type LayoutB;
    // Shared row lengths: A as [m][k] (row-major) or [k][m] (transposed); B as [k][n] or [n][k].
    constexpr int LDA = A_T ? TC_BM + TC_PAD : TC_BK + TC_PAD;
    constexpr int LDB = B_T ? TC_BK + TC_PAD : TC_BN + TC_PAD;

    unsigned char* smem = gemm_tc_smem();
    T* As = reinterpret_cast<T*>(smem);
    T* Bs = reinterpret_cast<T*>(smem + TC_OPERAND_BYTES);
    float* Cs = reinterpret_cast<float*>(smem + 2 * TC_OPERAND_BYTES);

    const int m0 = blockIdx.y * TC_BM, n0 = blockIdx.x * TC_BN;
    const int warp = threadIdx.x / 32;
    const int wm = (warp / (TC_BN / TC_WN)) * TC_WM, wn = (warp % (TC_BN / TC_WN)) * TC_WN;

    wmma::fragment<wmma::accumulator, 16, 16, KF, float> acc[2][2];
    if (accumulate) {  // uniform over the block: the barrier below is reached by every thread
        for (int idx = threadIdx.x; idx < TC_BM * TC_BN; idx += GEMM_TC_THREADS) {
            const int r = idx / TC_BN, c = idx % TC_BN;
            const int gr = m0 + r, gc = n0 + c;
            Cs[r * TC_LDC + c] = (gr < M && gc < N) ? C[(long long)gr * N + gc] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j)
                wmma::load_matrix_sync(acc[i][j], Cs + (wm + i * 16) * TC_LDC + wn + j * 16, TC_LDC,
                                       wmma::mem_row_major);
    } else {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    }

    for (int k0 = 0; k0 < K; k0 += TC_BK) {
        if (A_T) tc_load_slice<T, TC_BK, TC_BM>(A, M, K, M, k0, m0, As);   // A[k][m]
        else     tc_load_slice<T, TC_BM, TC_BK>(A, K, M, K, m0, k0, As);   // A[m][k]
        if (B_T) tc_load_slice<T, TC_BN, TC_BK>(B, K, N, K, n0, k0, Bs);   // B[n][k]
        else     tc_load_slice<T, TC_BK, TC_BN>(B, N, K, N, k0, n0, Bs);   // B[k][n]
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TC_BK; kk += KF) {
            wmma::fragment<wmma::matrix_a, 16, 16, KF, FT, LayoutA> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, KF, FT, LayoutB> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int r = wm + i * 16;
                wmma::load_matrix_sync(a[i], A_T ? As + kk * LDA + r : As + r * LDA + kk, LDA);
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int c = wn + j * 16;
                wmma::load_matrix_sync(b[j], B_T ? Bs + c * LDB + kk : Bs + kk * LDB + c, LDB);
            }
            if constexpr (TcPrec<T>::TF32) {
#pragma unroll
                for (int i = 0; i < 2; ++i) {
#pragma unroll
                    for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
#pragma unroll
                    for (int t = 0; t < b[i].num_elements; ++t) b[i].x[t] = wmma::__float_to_tf32(b[i].x[t]);
                }
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();  // every warp is done with the slices before the next step overwrites them
    }

    // Each warp stores to (and, when accumulating, loaded from) its own 32 x 32 part of Cs only.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(Cs + (wm + i * 16) * TC_LDC + wn + j * 16, acc[i][j], TC_LDC, wmma::mem_row_major);
    __syncthreads();
    for (int idx = threadIdx.x; idx < TC_BM * TC_BN; idx += GEMM_TC_THREADS) {
        const int r = idx / TC_BN, c = idx % TC_BN;
        const int gr = m0 + r, gc = n0 + c;
        if (gr < M && gc < N) C[(long long)gr * N + gc] = Cs[r * TC_LDC + c];
    }
}

// Entry points: gemm_tc_<form>_<precision>, form nn / nt / tn, precision f16 / bf16 / tf32. Each
// takes (A, B, C, M, N, K, accumulate) with the sizes of C = op(A) @ op(B) (C is M x N float32).
extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nn_f16(
        const __half* __restrict__ A, const __half* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<__half, false, false>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nn_bf16(
        const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B, float* __restrict__ C, int M, int N,
        int K, int accumulate) {
    gemm_tc_impl<__nv_bfloat16, false, false>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nn_tf32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<float, false, false>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nt_f16(
        const __half* __restrict__ A, const __half* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<__half, false, true>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nt_bf16(
        const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B, float* __restrict__ C, int M, int N,
        int K, int accumulate) {
    gemm_tc_impl<__nv_bfloat16, false, true>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_nt_tf32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<float, false, true>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_tn_f16(
        const __half* __restrict__ A, const __half* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<__half, true, false>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_tn_bf16(
        const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B, float* __restrict__ C, int M, int N,
        int K, int accumulate) {
    gemm_tc_impl<__nv_bfloat16, true, false>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_TC_THREADS) gemm_tc_tn_tf32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_tc_impl<float, true, false>(A, B, C, M, N, K, accumulate);
}
