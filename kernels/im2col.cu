// im2col / col2im for NCHW with stride, padding and dilation.
//
// Algorithm
//   im2col: one thread per element of cols, grid-stride. cols is (N, C*KH*KW, OH*OW), Caffe's
//     per-image layout: cols[n, (c*KH + i)*KW + j, oh*OW + ow] = x[n, c, oh*SH - PH + i*DH,
//     ow*SW - PW + j*DW], or 0 where that falls in the padding. Consecutive threads write
//     consecutive cols elements (coalesced) and read along an input row.
//   col2im: one thread per input pixel (n, c, h, w), grid-stride. It GATHERS every cols element
//     that im2col copied from this pixel, walking the kernel offsets (i, j) in row-major order,
//     so there are no atomics and the sum order is fixed: deterministic, and the same order as the
//     NumPy reference, which accumulates offset slabs in the same (i, j) order.
// Launch shape
//   1-D: block 256, grid = min(ceil(total / 256), 65535); the loops are grid-stride with 64-bit
//   indices, so any total fits. Scalars are all `int` (pass np.int32).
// Bytes moved per element (float32)
//   im2col: 4 written per cols element + <= 4 read (cached re-reads of x).
//   col2im: 4 written per input pixel + 4 read per contributing cols element
//     (ceil(KH/SH)*ceil(KW/SW) of them at most).
// NumPy reference
//   gpunn/backend/ops/conv.py ConvOps.im2col and ConvOps.col2im (must match to float rounding;
//   in practice bit-exact, since both sides do the same adds in the same order).

template <typename T>
__device__ __forceinline__ void im2col_impl(const T* __restrict__ x, T* __restrict__ cols,
                                            int N, int C, int H, int W, int KH, int KW,
                                            int SH, int SW, int PH, int PW, int DH, int DW,
                                            int OH, int OW) {
    const long long spatial = (long long)OH * OW;
    const long long total = (long long)N * C * KH * KW * spatial;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int ow = (int)(k % OW);
        long long r = k / OW;
        const int oh = (int)(r % OH);
        r /= OH;
        const int j = (int)(r % KW);
        r /= KW;
        const int i = (int)(r % KH);
        const long long nc = r / KH;  // n * C + c
        const int h = oh * SH - PH + i * DH;
        const int w = ow * SW - PW + j * DW;
        T value = T(0);
        if (h >= 0 && h < H && w >= 0 && w < W) {
            value = x[(nc * H + h) * W + w];
        }
        cols[k] = value;
    }
}

template <typename T>
__device__ __forceinline__ void col2im_impl(const T* __restrict__ cols, T* __restrict__ x,
                                            int N, int C, int H, int W, int KH, int KW,
                                            int SH, int SW, int PH, int PW, int DH, int DW,
                                            int OH, int OW) {
    const long long spatial = (long long)OH * OW;
    const long long total = (long long)N * C * H * W;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int w = (int)(k % W);
        long long r = k / W;
        const int h = (int)(r % H);
        const long long nc = r / H;
        const T* base = cols + nc * KH * KW * spatial;
        T acc = T(0);
        for (int i = 0; i < KH; ++i) {
            const int hp = h + PH - i * DH;  // = oh * SH for the window that puts offset i here
            if (hp < 0 || hp % SH != 0) continue;
            const int oh = hp / SH;
            if (oh >= OH) continue;
            for (int j = 0; j < KW; ++j) {
                const int wp = w + PW - j * DW;
                if (wp < 0 || wp % SW != 0) continue;
                const int ow = wp / SW;
                if (ow >= OW) continue;
                acc += base[(long long)(i * KW + j) * spatial + (long long)oh * OW + ow];
            }
        }
        x[k] = acc;
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
