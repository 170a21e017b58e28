// Half-precision, TF32 and WMMA kernels for the emulator tests (tests/emu/test_emu_half.py).
// Real CUDA: they compile with nvcc for sm_80 and sm_90 (see the test), and unchanged in the emulator.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

// float -> half / bf16 / tf32, through every conversion intrinsic
extern "C" __global__ void to_half(const float* __restrict__ x, __half* h, unsigned short* h_rn,
                                   __nv_bfloat16* b, unsigned short* b_plain, float* tf, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    h[i] = __float2half(x[i]);
    h_rn[i] = __half_as_ushort(__float2half_rn(x[i]));
    b[i] = __float2bfloat16_rn(x[i]);
    b_plain[i] = __bfloat16_as_ushort(__float2bfloat16(x[i]));
    tf[i] = wmma::__float_to_tf32(x[i]);
}

// half / bf16 -> float, from arrays of the types and from raw bit patterns
extern "C" __global__ void from_half(const __half* h, const __nv_bfloat16* b, const unsigned short* bits,
                                     float* hf, float* bf, float* hf_bits, float* bf_bits, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    hf[i] = __half2float(h[i]);
    bf[i] = __bfloat162float(b[i]);
    hf_bits[i] = __half2float(__ushort_as_half(bits[i]));
    bf_bits[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
}

extern "C" __global__ void half_ops(const __half* a, const __half* b, const __half* c, __half* add, __half* mul,
                                    __half* fma, __half* absv, int* isinf, int* isnan, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    add[i] = __hadd(a[i], b[i]);
    mul[i] = __hmul(a[i], b[i]);
    fma[i] = __hfma(a[i], b[i], c[i]);
    absv[i] = __habs(a[i]);
    isinf[i] = __hisinf(a[i]);
    isnan[i] = __hisnan(a[i]) ? 1 : 0;
}

extern "C" __global__ void bf16_ops(const __nv_bfloat16* a, const __nv_bfloat16* b, const __nv_bfloat16* c,
                                    __nv_bfloat16* add, __nv_bfloat16* mul, __nv_bfloat16* fma,
                                    __nv_bfloat16* absv, int* isinf, int* isnan, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    add[i] = __hadd(a[i], b[i]);
    mul[i] = __hmul(a[i], b[i]);
    fma[i] = __hfma(a[i], b[i], c[i]);
    absv[i] = __habs(a[i]);
    isinf[i] = __hisinf(a[i]);
    isnan[i] = __hisnan(a[i]) ? 1 : 0;
}

// scalar __half / __nv_bfloat16 parameters, and __half2
extern "C" __global__ void half_scalars(__half s, __nv_bfloat16 t, __half* hs, __nv_bfloat16* bs, float* pair, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    hs[i] = __hadd(s, __float2half((float)i));
    bs[i] = __hmul(t, __float2bfloat16((float)i));
    __half2 p = __float2half2_rn((float)i + 0.5f);
    pair[2 * i] = __low2float(p);
    pair[2 * i + 1] = __high2float(p);
}

// C[M x N] = A[M x K] (row-major) * B, with B given column-major (as B^T, N x K row-major).
// One warp per 16x16 output tile, 4 warps per block; K in steps of 16.
extern "C" __global__ void gemm_half(const __half* A, const __half* BT, float* C, int M, int N, int K) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int tiles_n = N / 16;
    if (warp >= (M / 16) * tiles_n) return;  // whole warps leave together
    const int tm = warp / tiles_n, tn = warp % tiles_n;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k = 0; k < K; k += 16) {
        wmma::load_matrix_sync(a, A + tm * 16 * K + k, K);
        wmma::load_matrix_sync(b, BT + tn * 16 * K + k, K);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(C + tm * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
}

// C[M x N] += A[M x K] * B[K x N], all row-major, bf16 inputs; the accumulator starts from C.
extern "C" __global__ void gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* B, float* C, int M, int N, int K) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int tiles_n = N / 16;
    if (warp >= (M / 16) * tiles_n) return;
    const int tm = warp / tiles_n, tn = warp % tiles_n;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(acc, C + tm * 16 * N + tn * 16, N, wmma::mem_row_major);
    for (int k = 0; k < K; k += 16) {
        wmma::load_matrix_sync(a, A + tm * 16 * K + k, K);
        wmma::load_matrix_sync(b, B + k * N + tn * 16, N);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(C + tm * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
}

// C += A * B in TF32 with everything column-major: A is M x K (ld M), B is K x N (ld K), C is M x N
// (ld M). The fragments are rounded with __float_to_tf32, as CUDA asks; K in steps of 8.
extern "C" __global__ void gemm_tf32(const float* A, const float* B, float* C, int M, int N, int K) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int tiles_n = N / 16;
    if (warp >= (M / 16) * tiles_n) return;
    const int tm = warp / tiles_n, tn = warp % tiles_n;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(acc, C + tn * 16 * M + tm * 16, M, wmma::mem_col_major);
    for (int k = 0; k < K; k += 8) {
        wmma::load_matrix_sync(a, A + k * M + tm * 16, M);
        wmma::load_matrix_sync(b, B + tn * 16 * K + k, K);
        for (int t = 0; t < a.num_elements; t++) a.x[t] = wmma::__float_to_tf32(a.x[t]);
        for (int t = 0; t < b.num_elements; t++) b.x[t] = wmma::__float_to_tf32(b.x[t]);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(C + tn * 16 * M + tm * 16, acc, M, wmma::mem_col_major);
}

// Fragment sizes and element-wise access (independent of the element-to-lane mapping).
extern "C" __global__ void frag_elementwise(const float* C, float* D, int* sizes) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> ah;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bb;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> at;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (threadIdx.x == 0) {
        sizes[0] = ah.num_elements;
        sizes[1] = bb.num_elements;
        sizes[2] = at.num_elements;
        sizes[3] = acc.num_elements;
    }
    wmma::load_matrix_sync(acc, C, 16, wmma::mem_row_major);
    for (int i = 0; i < acc.num_elements; i++) acc.x[i] = acc.x[i] * 2.0f + 1.0f;
    wmma::store_matrix_sync(D, acc, 16, wmma::mem_col_major);
}

// Misuse: only half of the warp loads a fragment.
extern "C" __global__ void wmma_partial_warp(const __half* A, float* out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    if (threadIdx.x < 16) {
        wmma::load_matrix_sync(a, A, 16);
        out[threadIdx.x] = __half2float(a.x[0]);
    }
}

// Misuse: the two halves of the warp call different WMMA operations.
extern "C" __global__ void wmma_divergent(const __half* A, float* out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(a, 1.0f);
    wmma::fill_fragment(b, 1.0f);
    wmma::fill_fragment(acc, 0.0f);
    if (threadIdx.x < 16) wmma::load_matrix_sync(a, A, 16);
    else wmma::mma_sync(acc, a, b, acc);
    wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

// Misuse: lanes pass different pointers to one load_matrix_sync.
extern "C" __global__ void wmma_nonuniform(const __half* A, float* out) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::load_matrix_sync(a, A + (threadIdx.x & 1) * 16, 16);
    out[threadIdx.x] = __half2float(a.x[0]);
}
