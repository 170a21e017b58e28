// im2col / col2im for NCHW with stride, padding and dilation.
//
// Algorithm
//   cols is (N, C*KH*KW, OH*OW), Caffe's per-image layout: a "row" r = (n*C + c)*KH*KW + i*KW + j
//   holds cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW],
//   or 0 where that falls in the padding.
//   im2col: a 2-D grid, y over rows and x over the OH*OW positions of a row, both grid-stride
//     (each block loops over many rows).
//     A row's (n, c, i, j) depend on blockIdx.y alone, so the only per-element index arithmetic is
//     one 32-bit division (position -> oh, ow): the earlier one-thread-per-element form spent five
//     64-bit divisions per element and ran at ~15% of copy bandwidth on an H200. Consecutive
//     threads write consecutive cols elements (coalesced) and read along an input row.
//   col2im: the same 2-D grid over (n, c) planes and their H*W pixels. Each thread GATHERS every
//     cols element that im2col copied from its pixel, walking the kernel offsets (i, j) in
//     row-major order, so there are no atomics and the sum order is fixed: deterministic, and the
//     same order as the NumPy reference, which accumulates offset slabs in the same (i, j) order.
//   Types: float (_f32), double (_f64), __half (_f16), __nv_bfloat16 (_bf16). im2col only copies
//     (and writes zeros), so every type is bit-exact. col2im accumulates __half / __nv_bfloat16 in
//     float (each term converted exactly) and rounds the sum once, to nearest even, when it stores
//     it: the _f16 / _bf16 result is the _f32 result on the same values rounded to the half type.
// Launch shape
//   block = min(256, OH*OW (im2col) or H*W (col2im) rounded up to a warp); grid y = min(rows,
//   2048), grid x = enough blocks over a row's positions to make about 2048 blocks in all
//   (launchers.plane_launch); rows = N*C*KH*KW (im2col) or N*C (col2im) and positions fit an int
//   (the launcher checks). Scalars are all `int` (np.int32).
// Bytes moved per element (float32; half and bfloat16 move 2 where float32 moves 4, double 8)
//   im2col: 4 written per cols element + <= 4 read (cached re-reads of x).
//   col2im: 4 written per input pixel + 4 read per contributing cols element
//     (ceil(KH/SH)*ceil(KW/SW) of them at most).
// NumPy reference
//   gpunn/backend/ops/conv.py ConvOps.im2col and ConvOps.col2im (must match to float rounding;
//   in practice bit-exact, since both sides do the same adds in the same order). Half types: the
//   reference on the values in float32, rounded once (col2im); bit-exact (im2col).

// Per-type helpers: col2im sums in acc_of<T>::type (the type itself for float and double, float for
// the 16-bit types; loading a 16-bit value into float is exact) and stores from_acc<T>(sum), which
// rounds to nearest even once.
template <typename T> struct acc_of { typedef T type; };
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
template <typename T> __device__ __forceinline__ T from_acc(typename acc_of<T>::type a) { return a; }
template <typename T> __device__ __forceinline__ T zero_of() { return T(0); }

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
template <> struct acc_of<__half> { typedef float type; };
template <> struct acc_of<__nv_bfloat16> { typedef float type; };
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float a) { return __float2half_rn(a); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float a) {
    return __float2bfloat16_rn(a);
}
template <> __device__ __forceinline__ __half zero_of<__half>() { return __ushort_as_half(0); }
template <> __device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() { return __ushort_as_bfloat16(0); }
// GPUNN_HALF_END

template <typename T>
__device__ __forceinline__ void im2col_impl(const T* __restrict__ x, T* __restrict__ cols,
                                            int N, int C, int H, int W, int KH, int KW,
                                            int SH, int SW, int PH, int PW, int DH, int DW,
                                            int OH, int OW) {
    const int spatial = OH * OW;
    const int rows = N * C * KH * KW;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int j = r % KW;
        const int i = (r / KW) % KH;
        const long long nc = r / (KW * KH);  // n * C + c
        const T* __restrict__ plane = x + nc * H * W;
        T* __restrict__ out = cols + (long long)r * spatial;
        for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < spatial; s += blockDim.x * gridDim.x) {
            const int oh = s / OW;
            const int h = oh * SH - PH + i * DH;
            const int w = (s - oh * OW) * SW - PW + j * DW;
            out[s] = (h >= 0 && h < H && w >= 0 && w < W) ? plane[h * W + w] : zero_of<T>();
        }
    }
}

template <typename T>
__device__ __forceinline__ void col2im_impl(const T* __restrict__ cols, T* __restrict__ x,
                                            int N, int C, int H, int W, int KH, int KW,
                                            int SH, int SW, int PH, int PW, int DH, int DW,
                                            int OH, int OW) {
    const long long spatial = (long long)OH * OW;
    const int planes = N * C;
    const int pixels = H * W;
    for (int nc = blockIdx.y; nc < planes; nc += gridDim.y) {
        const T* __restrict__ base = cols + (long long)nc * KH * KW * spatial;
        T* __restrict__ out = x + (long long)nc * pixels;
        for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < pixels; s += blockDim.x * gridDim.x) {
            const int h = s / W;
            const int w = s - h * W;
            typename acc_of<T>::type acc = 0;
            for (int i = 0; i < KH; ++i) {
                int oh = h + PH - i * DH;  // = oh * SH for the window that puts offset i here
                if (oh < 0) continue;
                if (SH != 1) {
                    if (oh % SH != 0) continue;
                    oh /= SH;
                }
                if (oh >= OH) continue;
                for (int j = 0; j < KW; ++j) {
                    int ow = w + PW - j * DW;
                    if (ow < 0) continue;
                    if (SW != 1) {
                        if (ow % SW != 0) continue;
                        ow /= SW;
                    }
                    if (ow >= OW) continue;
                    acc += to_acc(base[(long long)(i * KW + j) * spatial + (long long)oh * OW + ow]);
                }
            }
            out[s] = from_acc<T>(acc);
        }
    }
}

extern "C" __global__ void im2col_f32(const float* __restrict__ x, float* __restrict__ cols,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    im2col_impl<float>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void im2col_f64(const double* __restrict__ x, double* __restrict__ cols,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    im2col_impl<double>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void col2im_f32(const float* __restrict__ cols, float* __restrict__ x,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    col2im_impl<float>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void col2im_f64(const double* __restrict__ cols, double* __restrict__ x,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    col2im_impl<double>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
extern "C" __global__ void im2col_f16(const __half* __restrict__ x, __half* __restrict__ cols,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    im2col_impl<__half>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void im2col_bf16(const __nv_bfloat16* __restrict__ x, __nv_bfloat16* __restrict__ cols,
                                       int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                       int PH, int PW, int DH, int DW, int OH, int OW) {
    im2col_impl<__nv_bfloat16>(x, cols, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void col2im_f16(const __half* __restrict__ cols, __half* __restrict__ x,
                                      int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                      int PH, int PW, int DH, int DW, int OH, int OW) {
    col2im_impl<__half>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}

extern "C" __global__ void col2im_bf16(const __nv_bfloat16* __restrict__ cols, __nv_bfloat16* __restrict__ x,
                                       int N, int C, int H, int W, int KH, int KW, int SH, int SW,
                                       int PH, int PW, int DH, int DW, int OH, int OW) {
    col2im_impl<__nv_bfloat16>(cols, x, N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
}
// GPUNN_HALF_END
