// Precision casts over flat buffers, for mixed-precision training: the fp32 master weights -> their
// half copy, half -> fp32, the gradient unscale with its inf/NaN check, and that check alone.
//
// Algorithm
//   cast_f32_to_f16 / cast_f32_to_bf16: y[i] = __float2half_rn(x[i]) / __float2bfloat16_rn(x[i]),
//     round to nearest, ties to even; overflow gives +-inf, small values round to subnormals or to a
//     signed zero. A NaN becomes the canonical NaN (0x7fff, CUDA's conversion), sign and payload not kept.
//   cast_f16_to_f32 / cast_bf16_to_f32: y[i] = __half2float(x[i]) / __bfloat162float(x[i]) (exact).
//   unscale_check_f16_to_f32 / unscale_check_bf16_to_f32:
//     out[i] = float(g[i]) * inv_scale[0]   (one fp32 multiply, rounded once)
//     and *found_inf = 1 when any out[i] is inf or NaN. inv_scale is read from device memory (not a
//     scalar argument), so a captured CUDA graph replays the launch with the current loss scale.
//     found_inf is only ever set, never cleared: the caller zeroes it before the first launch of a
//     step, and several launches (one per buffer) may share it. Every thread that saw a non-finite
//     product stores the same value 1, so the plain store is race-free for this purpose; each thread
//     stores at most once, after its loop. No atomics.
//   check_finite_f16 / check_finite_bf16: the same check without writing the products:
//     *found_inf = 1 when any float(g[i]) * inv_scale[0] is inf or NaN (never cleared). Each thread
//     ORs its elements' test over its grid-stride loop, the block reduces with __syncthreads_or
//     (every thread reaches it, after its loop), and thread 0 of a block that saw one stores 1:
//     at most one plain store per block, all of the same value 1, so no atomics.
//   Every kernel is a 1-D grid-stride loop with 64-bit indices: any n with a capped grid.
// Launch shape
//   1-D, block 256, grid = min(ceil(n / 256), 65535) (launchers.grid_for). Scalar: n is `long long`
//   (np.int64).
// Bytes moved per element
//   f32 -> f16/bf16: 4 read + 2 written. f16/bf16 -> f32: 2 read + 4 written.
//   unscale_check: 2 read + 4 written (+ 4 read of inv_scale once per thread, one store of found_inf
//   by a thread that saw a non-finite product).
//   check_finite: 2 read, nothing written per element (+ 4 read of inv_scale once per thread, at
//   most one store of found_inf per block).
// NumPy reference
//   gpunn/backend/ops/cast.py (x.astype(np.float16) / x.astype(ml_dtypes.bfloat16) / .astype(np.float32),
//   unscale_check; check_finite: CastOps.nonfinite_check, found_inf |= any(!isfinite(float32(g) * inv_scale[0]))):
//   bit-exact, except that a NaN's sign and payload are not kept (NaN stays NaN).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ float half_to_float(__half h) { return __half2float(h); }
__device__ __forceinline__ float half_to_float(__nv_bfloat16 h) { return __bfloat162float(h); }

template <typename H> __device__ __forceinline__ H float_to_half(float x);
template <> __device__ __forceinline__ __half float_to_half<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 float_to_half<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

template <typename H>
__device__ __forceinline__ void cast_to_half_impl(const float* __restrict__ x, H* __restrict__ y, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = float_to_half<H>(x[i]);
}

template <typename H>
__device__ __forceinline__ void cast_to_float_impl(const H* __restrict__ x, float* __restrict__ y, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = half_to_float(x[i]);
}

template <typename H>
__device__ __forceinline__ void unscale_check_impl(const H* __restrict__ g, float* __restrict__ out,
                                                   const float* __restrict__ inv_scale, int* __restrict__ found_inf,
                                                   long long n) {
    const float s = inv_scale[0];
    const long long stride = (long long)blockDim.x * gridDim.x;
    unsigned bad = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = half_to_float(g[i]) * s;
        out[i] = v;
        bad |= (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;  // exponent all ones: inf or NaN
    }
    if (bad) *found_inf = 1;
}

template <typename H>
__device__ __forceinline__ void check_finite_impl(const H* __restrict__ g, const float* __restrict__ inv_scale,
                                                  int* __restrict__ found_inf, long long n) {
    const float s = inv_scale[0];
    const long long stride = (long long)blockDim.x * gridDim.x;
    unsigned bad = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = half_to_float(g[i]) * s;
        bad |= (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;  // exponent all ones: inf or NaN
    }
    const int any_bad = __syncthreads_or((int)bad);  // every thread of the block reaches this
    if (any_bad && threadIdx.x == 0) *found_inf = 1;
}

extern "C" __global__ void cast_f32_to_f16(const float* __restrict__ x, __half* __restrict__ y, long long n) {
    cast_to_half_impl<__half>(x, y, n);
}

extern "C" __global__ void cast_f32_to_bf16(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                                            long long n) {
    cast_to_half_impl<__nv_bfloat16>(x, y, n);
}

extern "C" __global__ void cast_f16_to_f32(const __half* __restrict__ x, float* __restrict__ y, long long n) {
    cast_to_float_impl<__half>(x, y, n);
}

extern "C" __global__ void cast_bf16_to_f32(const __nv_bfloat16* __restrict__ x, float* __restrict__ y,
                                            long long n) {
    cast_to_float_impl<__nv_bfloat16>(x, y, n);
}

extern "C" __global__ void unscale_check_f16_to_f32(const __half* __restrict__ g, float* __restrict__ out,
                                                    const float* __restrict__ inv_scale,
                                                    int* __restrict__ found_inf, long long n) {
    unscale_check_impl<__half>(g, out, inv_scale, found_inf, n);
}

extern "C" __global__ void unscale_check_bf16_to_f32(const __nv_bfloat16* __restrict__ g,
                                                     float* __restrict__ out, const float* __restrict__ inv_scale,
                                                     int* __restrict__ found_inf, long long n) {
    unscale_check_impl<__nv_bfloat16>(g, out, inv_scale, found_inf, n);
}

extern "C" __global__ void check_finite_f16(const __half* __restrict__ g, const float* __restrict__ inv_scale,
                                            int* __restrict__ found_inf, long long n) {
    check_finite_impl<__half>(g, inv_scale, found_inf, n);
}

extern "C" __global__ void check_finite_bf16(const __nv_bfloat16* __restrict__ g,
                                             const float* __restrict__ inv_scale, int* __restrict__ found_inf,
                                             long long n) {
    check_finite_impl<__nv_bfloat16>(g, inv_scale, found_inf, n);
}
