// Batch normalization over (N, C, S), S = the product of the spatial sizes (1 for (N, C) input): training
// forward (statistics, then apply), inference forward, backward (sums, then apply).
//
// Algorithm
//   Each channel's m = N*S elements are cut into P parts of ceil(m / P) elements; the launcher
//   picks P so that C*P blocks fill the GPU (one block per channel leaves most SMs idle when C is
//   small, the common case). A (P, C) grid covers the parts, grid-striding both ways.
//   train forward, three launches:
//     bn_part_stats: per (channel, part), the part's mean and centered M2 = sum((x - part_mean)^2):
//       two passes over the part (the second mostly from L2), block tree reductions in A
//       (the accumulation type: T itself for float and double, float for the 16-bit types).
//     bn_finalize_stats: one thread per channel merges its parts in order with Chan's formula
//       (mean = sum(n_p mean_p) / m, M2 = sum(M2_p + n_p (mean_p - mean)^2)), in double. It writes
//       save_mean, save_invstd = 1 / sqrt(M2 / m + eps) and, when update_running != 0,
//       running = (1 - momentum) * running + momentum * batch with the unbiased m / (m - 1) variance.
//     bn_apply: one thread per element, grid-stride: y = (x - mean) * (gamma * invstd) + beta.
//   infer forward: one thread per element, grid-stride: y = x * scale + shift with
//     scale = gamma / sqrt(rvar + eps), shift = beta - rmean * scale (the reference's form).
//   backward, three launches: bn_part_grad_sums (per part: sum(dy) and sum(dy * xhat), with
//     xhat = (x - mean) * invstd), bn_finalize_grad (per channel, parts summed in order in double:
//     dbeta = sum(dy), dgamma = sum(dy * xhat)), bn_bwd_apply (per element:
//     dx = gamma * invstd * (dy - (dbeta + xhat * dgamma) / m)).
//   Every reduction has a fixed order (thread-strided partials, a fixed tree, parts in order), so
//   results are deterministic run to run.
// Launch shape
//   part kernels: block BN_BLOCK = 256 threads exactly (the shared buffers are sized for it), grid
//   (min(P, 65535), min(C, 65535)). Per-channel and per-element kernels: block 256, 1-D grid
//   min(ceil(items / 256), 65535). N*S (elements per channel) fits an int (the launcher checks), so
//   within-channel indices use 32-bit division; flat per-element loops do too below 2^30 elements.
//   Scalars: N, C, S, P, update_running are `int` (np.int32);
//   momentum, eps are T (np.float32 for the _f32 kernels, np.float64 for _f64).
// 16-bit variants (_f16: __half, _bf16: __nv_bfloat16), for mixed-precision training
//   x, dy, gamma, beta, y, dx, dgamma and dbeta are of the 16-bit type; everything else is float32:
//   the part buffers, save_mean / save_invstd, running_mean / running_var, momentum and eps.
//   Each 16-bit value is loaded and converted to float (__half2float / __bfloat162float, exact);
//   sums, statistics and every per-element formula run in float exactly as the _f32 kernels do
//   (same expressions, same reduction order), and each 16-bit output is rounded once from its float
//   value (__float2half_rn / __float2bfloat16_rn, to nearest even). So a 16-bit kernel's result is
//   the _f32 kernel's on the float32 copies of the same inputs, rounded once: mean, invstd and the
//   running statistics bit-equal, y / dx / dgamma / dbeta within half an ulp of the 16-bit format.
//   bn_finalize_stats_{f16,bf16} is bn_finalize_stats_f32 under the 16-bit names (all its buffers are
//   float32), so a 16-bit batch norm runs from the 16-bit module alone. bn_finalize_grad_{f16,bf16}
//   writes dgamma / dbeta twice: float32 (dgamma_acc / dbeta_acc, which bn_bwd_apply reads, as the
//   reference's dx uses the unrounded sums) and rounded to the 16-bit type (the returned gradients).
//   Scalars: momentum, eps are np.float32.
// Bytes moved per element (float32; 16-bit variants in brackets)
//   train forward: 12 [6] from DRAM (x read for the statistics and again for y, y written), plus the
//   statistics' second read of each part, mostly from L2. infer: 8 [4].
//   backward: 20 [10] (x and dy read for the sums and again for dx, dx written).
// NumPy reference
//   gpunn/backend/ops/norm.py NormOps.batchnorm_forward_train / batchnorm_forward_infer /
//   batchnorm_backward (match within ~1e-5 relative in float32; sums are ordered differently).
//   batchnorm_relu_forward_train / batchnorm_relu_backward have no kernels of their own: the backend
//   composes them from these and relu. 16-bit inputs: the reference computes in float32
//   (`stat_dtype`) and rounds y / dx / dgamma / dbeta once, so they agree to the float32 difference
//   plus one rounding: within one ulp of the 16-bit format where the float32 values agree.

#define BN_BLOCK 256

template <typename T> __device__ __forceinline__ T bn_sqrt(T v);
template <> __device__ __forceinline__ float bn_sqrt<float>(float v) { return sqrtf(v); }
template <> __device__ __forceinline__ double bn_sqrt<double>(double v) { return sqrt(v); }

// Storage type T -> accumulation type A = bn_acc<T>::type: T itself for float and double, float for
// the 16-bit types. bn_load converts a stored value to A (exact); bn_store<T> rounds an A to T once
// (to nearest even for the 16-bit types; the identity for float and double).
template <typename T> struct bn_acc { typedef T type; };
__device__ __forceinline__ float bn_load(float v) { return v; }
__device__ __forceinline__ double bn_load(double v) { return v; }
template <typename T> __device__ __forceinline__ T bn_store(typename bn_acc<T>::type v) { return v; }

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
template <> struct bn_acc<__half> { typedef float type; };
template <> struct bn_acc<__nv_bfloat16> { typedef float type; };
__device__ __forceinline__ float bn_load(__half v) { return __half2float(v); }
__device__ __forceinline__ float bn_load(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ __half bn_store<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 bn_store<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}
// GPUNN_HALF_END

// Sum of one value per thread over the block; every thread gets the total. `buf` has BN_BLOCK slots.
template <typename T>
__device__ __forceinline__ T bn_block_sum(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = BN_BLOCK / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    const T total = buf[0];
    __syncthreads();  // buf is reused by the next reduction
    return total;
}

// Offset of element k (0 <= k < m) of channel c in (N, C, S) layout. m = N*S fits an int (the
// launcher checks), so this is a 32-bit division: a 64-bit one costs several times more.
__device__ __forceinline__ long long bn_offset(int k, int c, int C, int S) {
    const int n = k / S;
    return ((long long)n * C + c) * S + (k - n * S);
}

// Part p of P of a channel's m elements: [lo, hi), empty for trailing parts when P does not divide m evenly.
__device__ __forceinline__ void bn_part_range(int m, int P, int p, int* lo, int* hi) {
    const int chunk = (int)(((long long)m + P - 1) / P);
    *lo = (long long)p * chunk < m ? p * chunk : m;
    *hi = *lo + chunk < m ? *lo + chunk : m;
}

// Channel of flat element k. The per-element kernels index with I = int when the tensor has
// fewer than 2^31 elements (32-bit division), else with long long.
template <typename I>
__device__ __forceinline__ int bn_channel(I k, int C, int S) { return (int)((k / S) % C); }

template <typename T>
__device__ __forceinline__ void bn_part_stats_impl(const T* __restrict__ x,
                                                   typename bn_acc<T>::type* __restrict__ part_mean,
                                                   typename bn_acc<T>::type* __restrict__ part_m2, int N, int C, int S,
                                                   int P, typename bn_acc<T>::type* buf) {
    typedef typename bn_acc<T>::type A;
    const int m = N * S;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        for (int p = blockIdx.x; p < P; p += gridDim.x) {
            int lo, hi;
            bn_part_range(m, P, p, &lo, &hi);
            A part = A(0);
            for (int k = lo + (int)threadIdx.x; k < hi; k += BN_BLOCK) part += bn_load(x[bn_offset(k, c, C, S)]);
            // every thread reaches both block sums: lo and hi are the same across the block
            const A total = bn_block_sum<A>(part, buf);
            const A mean = hi > lo ? total / A(hi - lo) : A(0);
            part = A(0);
            for (int k = lo + (int)threadIdx.x; k < hi; k += BN_BLOCK) {
                const A d = bn_load(x[bn_offset(k, c, C, S)]) - mean;
                part += d * d;
            }
            const A m2 = bn_block_sum<A>(part, buf);
            if (threadIdx.x == 0) {
                part_mean[(long long)c * P + p] = mean;
                part_m2[(long long)c * P + p] = m2;
            }
        }
    }
}

// All buffers of the statistics' merge are of the accumulation type (float for the 16-bit variants).
template <typename T>
__device__ __forceinline__ void bn_finalize_stats_impl(const T* __restrict__ part_mean, const T* __restrict__ part_m2,
                                                       T* __restrict__ save_mean, T* __restrict__ save_invstd,
                                                       T* __restrict__ running_mean, T* __restrict__ running_var,
                                                       int N, int C, int S, int P, T momentum, T eps,
                                                       int update_running) {
    const int m = N * S;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        const T* pm = part_mean + (long long)c * P;
        const T* pq = part_m2 + (long long)c * P;
        double mean = 0.0;
        for (int p = 0; p < P; ++p) {
            int lo, hi;
            bn_part_range(m, P, p, &lo, &hi);
            mean += (double)(hi - lo) * (double)pm[p];
        }
        mean /= (double)m;
        double m2 = 0.0;
        for (int p = 0; p < P; ++p) {
            int lo, hi;
            bn_part_range(m, P, p, &lo, &hi);
            const double d = (double)pm[p] - mean;
            m2 += (double)pq[p] + (double)(hi - lo) * d * d;
        }
        const double var = m2 / (double)m;
        save_mean[c] = T(mean);
        save_invstd[c] = T(1) / bn_sqrt<T>(T(var) + eps);
        if (update_running) {
            const T unbiased = T(m > 1 ? var * ((double)m / (double)(m - 1)) : var);
            running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * T(mean);
            running_var[c] = (T(1) - momentum) * running_var[c] + momentum * unbiased;
        }
    }
}

// Flat per-element loops take the index type I: int below 2^30 elements (so k + step cannot
// overflow), long long above.
#define BN_INT_INDEX_LIMIT (1LL << 30)

template <typename I, typename T>
__device__ __forceinline__ void bn_apply_loop(const T* __restrict__ x, const T* __restrict__ gamma,
                                              const T* __restrict__ beta,
                                              const typename bn_acc<T>::type* __restrict__ mean,
                                              const typename bn_acc<T>::type* __restrict__ invstd,
                                              T* __restrict__ y, I total, int C, int S) {
    const I step = (I)blockDim.x * gridDim.x;
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int c = bn_channel<I>(k, C, S);
        y[k] = bn_store<T>((bn_load(x[k]) - mean[c]) * (bn_load(gamma[c]) * invstd[c]) + bn_load(beta[c]));
    }
}

template <typename T>
__device__ __forceinline__ void bn_apply_impl(const T* __restrict__ x, const T* __restrict__ gamma,
                                              const T* __restrict__ beta,
                                              const typename bn_acc<T>::type* __restrict__ mean,
                                              const typename bn_acc<T>::type* __restrict__ invstd,
                                              T* __restrict__ y, int N, int C, int S) {
    const long long total = (long long)N * C * S;
    if (total < BN_INT_INDEX_LIMIT) {
        bn_apply_loop<int, T>(x, gamma, beta, mean, invstd, y, (int)total, C, S);
    } else {
        bn_apply_loop<long long, T>(x, gamma, beta, mean, invstd, y, total, C, S);
    }
}

template <typename I, typename T>
__device__ __forceinline__ void bn_fwd_infer_loop(const T* __restrict__ x, const T* __restrict__ gamma,
                                                  const T* __restrict__ beta,
                                                  const typename bn_acc<T>::type* __restrict__ running_mean,
                                                  const typename bn_acc<T>::type* __restrict__ running_var,
                                                  T* __restrict__ y, I total, int C, int S,
                                                  typename bn_acc<T>::type eps) {
    typedef typename bn_acc<T>::type A;
    const I step = (I)blockDim.x * gridDim.x;
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int c = bn_channel<I>(k, C, S);
        const A scale = bn_load(gamma[c]) * (A(1) / bn_sqrt<A>(running_var[c] + eps));
        const A shift = bn_load(beta[c]) - running_mean[c] * scale;
        y[k] = bn_store<T>(bn_load(x[k]) * scale + shift);
    }
}

template <typename T>
__device__ __forceinline__ void bn_fwd_infer_impl(const T* __restrict__ x, const T* __restrict__ gamma,
                                                  const T* __restrict__ beta,
                                                  const typename bn_acc<T>::type* __restrict__ running_mean,
                                                  const typename bn_acc<T>::type* __restrict__ running_var,
                                                  T* __restrict__ y, int N, int C, int S,
                                                  typename bn_acc<T>::type eps) {
    const long long total = (long long)N * C * S;
    if (total < BN_INT_INDEX_LIMIT) {
        bn_fwd_infer_loop<int, T>(x, gamma, beta, running_mean, running_var, y, (int)total, C, S, eps);
    } else {
        bn_fwd_infer_loop<long long, T>(x, gamma, beta, running_mean, running_var, y, total, C, S, eps);
    }
}

template <typename T>
__device__ __forceinline__ void bn_part_grad_sums_impl(const T* __restrict__ dy, const T* __restrict__ x,
                                                       const typename bn_acc<T>::type* __restrict__ save_mean,
                                                       const typename bn_acc<T>::type* __restrict__ save_invstd,
                                                       typename bn_acc<T>::type* __restrict__ part_dy,
                                                       typename bn_acc<T>::type* __restrict__ part_dyx,
                                                       int N, int C, int S, int P,
                                                       typename bn_acc<T>::type* buf_a,
                                                       typename bn_acc<T>::type* buf_b) {
    typedef typename bn_acc<T>::type A;
    const int m = N * S;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const A mean = save_mean[c];
        const A invstd = save_invstd[c];
        for (int p = blockIdx.x; p < P; p += gridDim.x) {
            int lo, hi;
            bn_part_range(m, P, p, &lo, &hi);
            A a = A(0);
            A b = A(0);
            for (int k = lo + (int)threadIdx.x; k < hi; k += BN_BLOCK) {
                const long long o = bn_offset(k, c, C, S);
                const A g = bn_load(dy[o]);
                a += g;
                b += g * ((bn_load(x[o]) - mean) * invstd);
            }
            // Both sums reduce through one tree walk so they share the barriers.
            buf_a[threadIdx.x] = a;
            buf_b[threadIdx.x] = b;
            __syncthreads();
            for (int s = BN_BLOCK / 2; s > 0; s >>= 1) {
                if ((int)threadIdx.x < s) {
                    buf_a[threadIdx.x] += buf_a[threadIdx.x + s];
                    buf_b[threadIdx.x] += buf_b[threadIdx.x + s];
                }
                __syncthreads();
            }
            if (threadIdx.x == 0) {
                part_dy[(long long)c * P + p] = buf_a[0];
                part_dyx[(long long)c * P + p] = buf_b[0];
            }
            __syncthreads();  // the buffers are reused by the next part
        }
    }
}

// dgamma / dbeta in T (rounded once from A for the 16-bit types); when dgamma_acc is not null (the
// 16-bit variants) also unrounded, in A, for bn_bwd_apply.
template <typename T>
__device__ __forceinline__ void bn_finalize_grad_impl(const typename bn_acc<T>::type* __restrict__ part_dy,
                                                      const typename bn_acc<T>::type* __restrict__ part_dyx,
                                                      typename bn_acc<T>::type* __restrict__ dgamma_acc,
                                                      typename bn_acc<T>::type* __restrict__ dbeta_acc,
                                                      T* __restrict__ dgamma, T* __restrict__ dbeta, int C, int P) {
    typedef typename bn_acc<T>::type A;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
        double a = 0.0;
        double b = 0.0;
        for (int p = 0; p < P; ++p) {
            a += (double)part_dy[(long long)c * P + p];
            b += (double)part_dyx[(long long)c * P + p];
        }
        const A sum_dy = A(a);
        const A sum_dyx = A(b);
        dbeta[c] = bn_store<T>(sum_dy);
        dgamma[c] = bn_store<T>(sum_dyx);
        if (dgamma_acc != nullptr) {
            dbeta_acc[c] = sum_dy;
            dgamma_acc[c] = sum_dyx;
        }
    }
}

template <typename I, typename T>
__device__ __forceinline__ void bn_bwd_apply_loop(const T* __restrict__ dy, const T* __restrict__ x,
                                                  const T* __restrict__ gamma,
                                                  const typename bn_acc<T>::type* __restrict__ save_mean,
                                                  const typename bn_acc<T>::type* __restrict__ save_invstd,
                                                  const typename bn_acc<T>::type* __restrict__ dgamma,
                                                  const typename bn_acc<T>::type* __restrict__ dbeta,
                                                  T* __restrict__ dx, I total, int C, int S,
                                                  typename bn_acc<T>::type fm) {
    typedef typename bn_acc<T>::type A;
    const I step = (I)blockDim.x * gridDim.x;
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int c = bn_channel<I>(k, C, S);
        const A invstd = save_invstd[c];
        const A xhat = (bn_load(x[k]) - save_mean[c]) * invstd;
        dx[k] = bn_store<T>(bn_load(gamma[c]) * invstd * (bn_load(dy[k]) - (dbeta[c] + xhat * dgamma[c]) / fm));
    }
}

template <typename T>
__device__ __forceinline__ void bn_bwd_apply_impl(const T* __restrict__ dy, const T* __restrict__ x,
                                                  const T* __restrict__ gamma,
                                                  const typename bn_acc<T>::type* __restrict__ save_mean,
                                                  const typename bn_acc<T>::type* __restrict__ save_invstd,
                                                  const typename bn_acc<T>::type* __restrict__ dgamma,
                                                  const typename bn_acc<T>::type* __restrict__ dbeta,
                                                  T* __restrict__ dx, int N, int C, int S) {
    typedef typename bn_acc<T>::type A;
    const long long total = (long long)N * C * S;
    const A fm = A((long long)N * S);
    if (total < BN_INT_INDEX_LIMIT) {
        bn_bwd_apply_loop<int, T>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, (int)total, C, S, fm);
    } else {
        bn_bwd_apply_loop<long long, T>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, total, C, S, fm);
    }
}

// -- entry points, one per dtype ------------------------------------------------------------------------------

extern "C" __global__ void bn_part_stats_f32(const float* __restrict__ x, float* __restrict__ part_mean,
                                             float* __restrict__ part_m2, int N, int C, int S, int P) {
    __shared__ float buf[BN_BLOCK];
    bn_part_stats_impl<float>(x, part_mean, part_m2, N, C, S, P, buf);
}

extern "C" __global__ void bn_part_stats_f64(const double* __restrict__ x, double* __restrict__ part_mean,
                                             double* __restrict__ part_m2, int N, int C, int S, int P) {
    __shared__ double buf[BN_BLOCK];
    bn_part_stats_impl<double>(x, part_mean, part_m2, N, C, S, P, buf);
}

extern "C" __global__ void bn_finalize_stats_f32(const float* __restrict__ part_mean,
                                                 const float* __restrict__ part_m2,
                                                 float* __restrict__ save_mean,
                                                 float* __restrict__ save_invstd,
                                                 float* __restrict__ running_mean,
                                                 float* __restrict__ running_var, int N, int C, int S, int P,
                                                 float momentum, float eps, int update_running) {
    bn_finalize_stats_impl<float>(part_mean, part_m2, save_mean, save_invstd, running_mean, running_var, N, C,
                                  S, P, momentum, eps, update_running);
}

extern "C" __global__ void bn_finalize_stats_f64(const double* __restrict__ part_mean,
                                                 const double* __restrict__ part_m2,
                                                 double* __restrict__ save_mean,
                                                 double* __restrict__ save_invstd,
                                                 double* __restrict__ running_mean,
                                                 double* __restrict__ running_var, int N, int C, int S, int P,
                                                 double momentum, double eps, int update_running) {
    bn_finalize_stats_impl<double>(part_mean, part_m2, save_mean, save_invstd, running_mean, running_var, N, C,
                                   S, P, momentum, eps, update_running);
}

extern "C" __global__ void bn_apply_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                        const float* __restrict__ beta, const float* __restrict__ mean,
                                        const float* __restrict__ invstd, float* __restrict__ y, int N, int C,
                                        int S) {
    bn_apply_impl<float>(x, gamma, beta, mean, invstd, y, N, C, S);
}

extern "C" __global__ void bn_apply_f64(const double* __restrict__ x, const double* __restrict__ gamma,
                                        const double* __restrict__ beta, const double* __restrict__ mean,
                                        const double* __restrict__ invstd, double* __restrict__ y, int N,
                                        int C, int S) {
    bn_apply_impl<double>(x, gamma, beta, mean, invstd, y, N, C, S);
}

extern "C" __global__ void bn_fwd_infer_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta,
                                            const float* __restrict__ running_mean,
                                            const float* __restrict__ running_var, float* __restrict__ y,
                                            int N, int C, int S, float eps) {
    bn_fwd_infer_impl<float>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_fwd_infer_f64(const double* __restrict__ x, const double* __restrict__ gamma,
                                            const double* __restrict__ beta,
                                            const double* __restrict__ running_mean,
                                            const double* __restrict__ running_var, double* __restrict__ y,
                                            int N, int C, int S, double eps) {
    bn_fwd_infer_impl<double>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_part_grad_sums_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                                 const float* __restrict__ save_mean,
                                                 const float* __restrict__ save_invstd,
                                                 float* __restrict__ part_dy, float* __restrict__ part_dyx,
                                                 int N, int C, int S, int P) {
    __shared__ float buf_a[BN_BLOCK];
    __shared__ float buf_b[BN_BLOCK];
    bn_part_grad_sums_impl<float>(dy, x, save_mean, save_invstd, part_dy, part_dyx, N, C, S, P, buf_a, buf_b);
}

extern "C" __global__ void bn_part_grad_sums_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                                 const double* __restrict__ save_mean,
                                                 const double* __restrict__ save_invstd,
                                                 double* __restrict__ part_dy, double* __restrict__ part_dyx,
                                                 int N, int C, int S, int P) {
    __shared__ double buf_a[BN_BLOCK];
    __shared__ double buf_b[BN_BLOCK];
    bn_part_grad_sums_impl<double>(dy, x, save_mean, save_invstd, part_dy, part_dyx, N, C, S, P, buf_a, buf_b);
}

extern "C" __global__ void bn_finalize_grad_f32(const float* __restrict__ part_dy,
                                                const float* __restrict__ part_dyx, float* __restrict__ dgamma,
                                                float* __restrict__ dbeta, int C, int P) {
    bn_finalize_grad_impl<float>(part_dy, part_dyx, nullptr, nullptr, dgamma, dbeta, C, P);
}

extern "C" __global__ void bn_finalize_grad_f64(const double* __restrict__ part_dy,
                                                const double* __restrict__ part_dyx,
                                                double* __restrict__ dgamma, double* __restrict__ dbeta, int C,
                                                int P) {
    bn_finalize_grad_impl<double>(part_dy, part_dyx, nullptr, nullptr, dgamma, dbeta, C, P);
}

extern "C" __global__ void bn_bwd_apply_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ gamma,
                                            const float* __restrict__ save_mean,
                                            const float* __restrict__ save_invstd,
                                            const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                            float* __restrict__ dx, int N, int C, int S) {
    bn_bwd_apply_impl<float>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, N, C, S);
}

extern "C" __global__ void bn_bwd_apply_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                            const double* __restrict__ gamma,
                                            const double* __restrict__ save_mean,
                                            const double* __restrict__ save_invstd,
                                            const double* __restrict__ dgamma,
                                            const double* __restrict__ dbeta, double* __restrict__ dx, int N,
                                            int C, int S) {
    bn_bwd_apply_impl<double>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, N, C, S);
}

// GPUNN_HALF_BEGIN: the 16-bit variants (compiled only into the module that launches them; see source.py)
extern "C" __global__ void bn_part_stats_f16(const __half* __restrict__ x, float* __restrict__ part_mean,
                                             float* __restrict__ part_m2, int N, int C, int S, int P) {
    __shared__ float buf[BN_BLOCK];
    bn_part_stats_impl<__half>(x, part_mean, part_m2, N, C, S, P, buf);
}

// bn_finalize_stats_f32 under the 16-bit name: every buffer is float32
extern "C" __global__ void bn_finalize_stats_f16(const float* __restrict__ part_mean,
                                                 const float* __restrict__ part_m2,
                                                 float* __restrict__ save_mean,
                                                 float* __restrict__ save_invstd,
                                                 float* __restrict__ running_mean,
                                                 float* __restrict__ running_var, int N, int C, int S, int P,
                                                 float momentum, float eps, int update_running) {
    bn_finalize_stats_impl<float>(part_mean, part_m2, save_mean, save_invstd, running_mean, running_var, N, C,
                                  S, P, momentum, eps, update_running);
}

extern "C" __global__ void bn_apply_f16(const __half* __restrict__ x, const __half* __restrict__ gamma,
                                        const __half* __restrict__ beta, const float* __restrict__ mean,
                                        const float* __restrict__ invstd, __half* __restrict__ y, int N, int C,
                                        int S) {
    bn_apply_impl<__half>(x, gamma, beta, mean, invstd, y, N, C, S);
}

extern "C" __global__ void bn_fwd_infer_f16(const __half* __restrict__ x, const __half* __restrict__ gamma,
                                            const __half* __restrict__ beta,
                                            const float* __restrict__ running_mean,
                                            const float* __restrict__ running_var, __half* __restrict__ y,
                                            int N, int C, int S, float eps) {
    bn_fwd_infer_impl<__half>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_part_grad_sums_f16(const __half* __restrict__ dy, const __half* __restrict__ x,
                                                 const float* __restrict__ save_mean,
                                                 const float* __restrict__ save_invstd,
                                                 float* __restrict__ part_dy, float* __restrict__ part_dyx,
                                                 int N, int C, int S, int P) {
    __shared__ float buf_a[BN_BLOCK];
    __shared__ float buf_b[BN_BLOCK];
    bn_part_grad_sums_impl<__half>(dy, x, save_mean, save_invstd, part_dy, part_dyx, N, C, S, P, buf_a, buf_b);
}

extern "C" __global__ void bn_finalize_grad_f16(const float* __restrict__ part_dy,
                                                const float* __restrict__ part_dyx,
                                                float* __restrict__ dgamma_acc, float* __restrict__ dbeta_acc,
                                                __half* __restrict__ dgamma, __half* __restrict__ dbeta, int C, int P) {
    bn_finalize_grad_impl<__half>(part_dy, part_dyx, dgamma_acc, dbeta_acc, dgamma, dbeta, C, P);
}

// dgamma / dbeta here are bn_finalize_grad's float32 ones (dgamma_acc / dbeta_acc)
extern "C" __global__ void bn_bwd_apply_f16(const __half* __restrict__ dy, const __half* __restrict__ x,
                                            const __half* __restrict__ gamma,
                                            const float* __restrict__ save_mean,
                                            const float* __restrict__ save_invstd,
                                            const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                            __half* __restrict__ dx, int N, int C, int S) {
    bn_bwd_apply_impl<__half>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, N, C, S);
}

extern "C" __global__ void bn_part_stats_bf16(const __nv_bfloat16* __restrict__ x, float* __restrict__ part_mean,
                                             float* __restrict__ part_m2, int N, int C, int S, int P) {
    __shared__ float buf[BN_BLOCK];
    bn_part_stats_impl<__nv_bfloat16>(x, part_mean, part_m2, N, C, S, P, buf);
}

// bn_finalize_stats_f32 under the 16-bit name: every buffer is float32
extern "C" __global__ void bn_finalize_stats_bf16(const float* __restrict__ part_mean,
                                                 const float* __restrict__ part_m2,
                                                 float* __restrict__ save_mean,
                                                 float* __restrict__ save_invstd,
                                                 float* __restrict__ running_mean,
                                                 float* __restrict__ running_var, int N, int C, int S, int P,
                                                 float momentum, float eps, int update_running) {
    bn_finalize_stats_impl<float>(part_mean, part_m2, save_mean, save_invstd, running_mean, running_var, N, C,
                                  S, P, momentum, eps, update_running);
}

extern "C" __global__ void bn_apply_bf16(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ gamma,
                                        const __nv_bfloat16* __restrict__ beta, const float* __restrict__ mean,
                                        const float* __restrict__ invstd, __nv_bfloat16* __restrict__ y, int N, int C,
                                        int S) {
    bn_apply_impl<__nv_bfloat16>(x, gamma, beta, mean, invstd, y, N, C, S);
}

extern "C" __global__ void bn_fwd_infer_bf16(const __nv_bfloat16* __restrict__ x,
                                             const __nv_bfloat16* __restrict__ gamma,
                                            const __nv_bfloat16* __restrict__ beta,
                                            const float* __restrict__ running_mean,
                                            const float* __restrict__ running_var, __nv_bfloat16* __restrict__ y,
                                            int N, int C, int S, float eps) {
    bn_fwd_infer_impl<__nv_bfloat16>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_part_grad_sums_bf16(const __nv_bfloat16* __restrict__ dy,
                                                  const __nv_bfloat16* __restrict__ x,
                                                 const float* __restrict__ save_mean,
                                                 const float* __restrict__ save_invstd,
                                                 float* __restrict__ part_dy, float* __restrict__ part_dyx,
                                                 int N, int C, int S, int P) {
    __shared__ float buf_a[BN_BLOCK];
    __shared__ float buf_b[BN_BLOCK];
    bn_part_grad_sums_impl<__nv_bfloat16>(dy, x, save_mean, save_invstd, part_dy, part_dyx, N, C, S, P, buf_a, buf_b);
}

extern "C" __global__ void bn_finalize_grad_bf16(const float* __restrict__ part_dy,
                                                const float* __restrict__ part_dyx,
                                                float* __restrict__ dgamma_acc, float* __restrict__ dbeta_acc,
                                                __nv_bfloat16* __restrict__ dgamma,
                                                __nv_bfloat16* __restrict__ dbeta, int C, int P) {
    bn_finalize_grad_impl<__nv_bfloat16>(part_dy, part_dyx, dgamma_acc, dbeta_acc, dgamma, dbeta, C, P);
}

// dgamma / dbeta here are bn_finalize_grad's float32 ones (dgamma_acc / dbeta_acc)
extern "C" __global__ void bn_bwd_apply_bf16(const __nv_bfloat16* __restrict__ dy, const __nv_bfloat16* __restrict__ x,
                                            const __nv_bfloat16* __restrict__ gamma,
                                            const float* __restrict__ save_mean,
                                            const float* __restrict__ save_invstd,
                                            const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                            __nv_bfloat16* __restrict__ dx, int N, int C, int S) {
    bn_bwd_apply_impl<__nv_bfloat16>(dy, x, gamma, save_mean, save_invstd, dgamma, dbeta, dx, N, C, S);
}
// GPUNN_HALF_END
