// 2-D max pooling over NCHW: forward with int32 argmax, backward by a deterministic gather.
//
// Algorithm
//   forward: one thread per output (n, c, oh, ow). The window's top-left corner is
//     (h0, w0) = (oh*SH - PH, ow*SW - PW). The running maximum starts at the first window offset
//     (its value, or -inf when it lies in the padding) with argmax = h0*W + w0, and every later
//     offset in row-major order replaces it only when strictly greater. So ties go to the first
//     offset, padding acts as -inf, and a NaN in the first slot sticks, exactly as the reference.
//     argmax is the flat index h*W + w inside the (n, c) input plane.
//   backward: one thread per input pixel (n, c, h, w). It gathers dy from every
//     window that contains the pixel and whose argmax names it, walking the window offsets in
//     the reference's (i, j) order. No atomics, so overlapping windows (3x3 at stride 2) are
//     deterministic.
//   Both kernels run a 2-D grid: y over the N*C planes, x over a plane's outputs (forward) or
//   pixels (backward), grid-stride both ways, so the per-element index arithmetic is one 32-bit
//   division (the earlier flat form spent three 64-bit divisions per element).
//   Types: float (_f32), double (_f64), __half (_f16), __nv_bfloat16 (_bf16). The forward only
//   compares (16-bit values are compared as their exact float values) and copies, so every type is
//   bit-exact. The backward accumulates __half / __nv_bfloat16 dy in float and rounds the sum once,
//   to nearest even, when it stores it: the _f16 / _bf16 dx is the _f32 dx on the same values rounded.
// Launch shape
//   block = min(256, OH*OW (forward) or H*W (backward) rounded up to a warp); grid y = min(N*C,
//   2048), grid x = enough blocks over a plane's positions to make about 2048 blocks in all
//   (launchers.plane_launch); N*C and H*W fit an int (the launcher checks). Scalars are all `int`
//   (pass np.int32).
// Bytes moved per element (float32; the 16-bit types move 2 bytes per value where float32 moves 4)
//   forward: 8 written per output (value + argmax), KH*KW*4 read per output (mostly cached).
//   backward: 4 written per input pixel, 8 read per window covering it.
// NumPy reference
//   gpunn/backend/ops/pool.py PoolOps.maxpool2d_forward / maxpool2d_backward (bit-exact). Half types:
//   the reference on the values in float32 (forward bit-exact; backward rounded once).
template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000LL);
}

// Per-type helpers: values compare and sum as acc_of<T>::type (the type itself for float and double,
// float for the 16-bit types; loading a 16-bit value into float is exact); from_acc<T> rounds the
// backward's sum once, to nearest even.
template <typename T> struct acc_of { typedef T type; };
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
template <typename T> __device__ __forceinline__ T from_acc(typename acc_of<T>::type a) { return a; }

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
template <> __device__ __forceinline__ __half neg_inf<__half>() { return __ushort_as_half(0xfc00); }
template <> __device__ __forceinline__ __nv_bfloat16 neg_inf<__nv_bfloat16>() { return __ushort_as_bfloat16(0xff80); }
template <> struct acc_of<__half> { typedef float type; };
template <> struct acc_of<__nv_bfloat16> { typedef float type; };
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float a) { return __float2half_rn(a); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float a) {
    return __float2bfloat16_rn(a);
}
// GPUNN_HALF_END

template <typename T>
__device__ __forceinline__ void maxpool_fwd_impl(const T* __restrict__ x, T* __restrict__ y,
                                                 int* __restrict__ argmax, int N, int C, int H, int W,
                                                 int KH, int KW, int SH, int SW, int PH, int PW,
                                                 int OH, int OW) {
    const int planes = N * C;
    const int outputs = OH * OW;
    for (int nc = blockIdx.y; nc < planes; nc += gridDim.y)
    for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < outputs; s += blockDim.x * gridDim.x) {
        const int oh = s / OW;
        const int ow = s - oh * OW;
        const long long k = (long long)nc * outputs + s;
        const T* plane = x + (long long)nc * H * W;
        const int h0 = oh * SH - PH;
        const int w0 = ow * SW - PW;
        T best = (h0 >= 0 && h0 < H && w0 >= 0 && w0 < W) ? plane[h0 * W + w0] : neg_inf<T>();
        int best_index = h0 * W + w0;
        for (int i = 0; i < KH; ++i) {
            const int h = h0 + i;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < KW; ++j) {
                if (i == 0 && j == 0) continue;
                const int w = w0 + j;
                if (w < 0 || w >= W) continue;
                const T v = plane[h * W + w];
                if (to_acc(v) > to_acc(best)) {
                    best = v;
                    best_index = h * W + w;
                }
            }
        }
        y[k] = best;
        argmax[k] = best_index;
    }
}

template <typename T>
__device__ __forceinline__ void maxpool_bwd_impl(const T* __restrict__ dy, const int* __restrict__ argmax,
                                                 T* __restrict__ dx, int N, int C, int H, int W,
                                                 int KH, int KW, int SH, int SW, int PH, int PW,
                                                 int OH, int OW) {
    const int planes = N * C;
    const int pixels = H * W;
    for (int nc = blockIdx.y; nc < planes; nc += gridDim.y)
    for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < pixels; s += blockDim.x * gridDim.x) {
        const int h = s / W;
        const int w = s - h * W;
        const long long k = (long long)nc * pixels + s;
        const long long out_base = (long long)nc * OH * OW;
        const int me = h * W + w;
        typename acc_of<T>::type acc = 0;
        for (int i = 0; i < KH; ++i) {
            const int hp = h + PH - i;
            if (hp < 0 || hp % SH != 0) continue;
            const int oh = hp / SH;
            if (oh >= OH) continue;
            for (int j = 0; j < KW; ++j) {
                const int wp = w + PW - j;
                if (wp < 0 || wp % SW != 0) continue;
                const int ow = wp / SW;
                if (ow >= OW) continue;
                const long long o = out_base + (long long)oh * OW + ow;
                if (argmax[o] == me) acc += to_acc(dy[o]);
            }
        }
        dx[k] = from_acc<T>(acc);
    }
}

extern "C" __global__ void maxpool2d_fwd_f32(const float* __restrict__ x, float* __restrict__ y,
                                             int* __restrict__ argmax, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_fwd_impl<float>(x, y, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_fwd_f64(const double* __restrict__ x, double* __restrict__ y,
                                             int* __restrict__ argmax, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_fwd_impl<double>(x, y, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_bwd_f32(const float* __restrict__ dy, const int* __restrict__ argmax,
                                             float* __restrict__ dx, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_bwd_impl<float>(dy, argmax, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_bwd_f64(const double* __restrict__ dy, const int* __restrict__ argmax,
                                             double* __restrict__ dx, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_bwd_impl<double>(dy, argmax, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
extern "C" __global__ void maxpool2d_fwd_f16(const __half* __restrict__ x, __half* __restrict__ y,
                                             int* __restrict__ argmax, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_fwd_impl<__half>(x, y, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_fwd_bf16(const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ y,
                                              int* __restrict__ argmax, int N, int C, int H, int W,
                                              int KH, int KW, int SH, int SW, int PH, int PW,
                                              int OH, int OW) {
    maxpool_fwd_impl<__nv_bfloat16>(x, y, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_bwd_f16(const __half* __restrict__ dy, const int* __restrict__ argmax,
                                             __half* __restrict__ dx, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW,
                                             int OH, int OW) {
    maxpool_bwd_impl<__half>(dy, argmax, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}

extern "C" __global__ void maxpool2d_bwd_bf16(const __nv_bfloat16* __restrict__ dy, const int* __restrict__ argmax,
                                              __nv_bfloat16* __restrict__ dx, int N, int C, int H, int W,
                                              int KH, int KW, int SH, int SW, int PH, int PW,
                                              int OH, int OW) {
    maxpool_bwd_impl<__nv_bfloat16>(dy, argmax, dx, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW);
}
// GPUNN_HALF_END
