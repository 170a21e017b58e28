// Fused Adam / AdamW over a flat parameter buffer: one launch per optimizer step.
//
// Algorithm (PyTorch's formulas), one thread per parameter, grid-stride:
//   g = grad[i] + l2 * param[i]                      (coupled L2; l2 = weight_decay, or 0)
//   p = param[i] * decay                              (decoupled AdamW; decay = 1 - lr*wd, or 1)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   grad[i] = 0 when zero_grad != 0 (saves a separate memset pass)
// with step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
// Three entry points compute the same update:
//   adam_step_f32 / _f64: the host precomputes step_size, bc2_sqrt and decay and passes them as
//     scalars (T), so the kernel does no pow.
//   adam_step_dev_f32 / _f64: lr and t are read from device memory, `scalars` = [lr, t, ...]
//     (double; t the 1-based step count after the increment), so a CUDA graph that captured the
//     launch replays it with the current lr and step. Every thread computes the bias corrections
//     itself, once, in double (1 - pow(beta1, t), sqrt(1 - pow(beta2, t)), lr / bc1, 1 - lr*wd),
//     then rounds them to T: the same inputs and operations in every thread, so all threads agree
//     bit for bit, and the same values the host path computes (its constants are double too).
//   adam_step_mixed_f16 / _bf16 (mixed precision; GPUNN_HALF sections, compiled only into the
//     16-bit module): float32 master param, m, v and a __half / __nv_bfloat16 gradient. Every
//     thread first reads *found_inf (int, set by an earlier inf/NaN check) and returns at once
//     when it is nonzero: a skipped step writes nothing and reads nothing else, decided on the
//     device (no host read; the launch can be captured). Otherwise the adam_step_dev_f32 update
//     (the same adam_device_consts and adam_one, scalar loop, no float4, grad never written) with
//       g = __fmul_rn(float(grad[i]), *inv_scale)   (exact widening, one float32 multiply, rounded
//     once: __fmul_rn keeps it from being contracted into an FMA with the weight-decay term)
//     inv_scale is a const float* (1 / loss scale; 1 for bfloat16), read once per thread.
// Each element is independent: deterministic.
// float32 reads and writes four parameters at a time (float4) when all four buffers are 16-byte
// aligned, which leaves more bytes in flight per thread; the last n % 4 go one at a time.
// Unaligned buffers (views into a packed buffer at odd offsets) take the one-at-a-time loop.
// Launch shape
//   1-D: block 256, grid = min(ceil(n / 256), 65535) (float32: ceil(n / 1024), one thread per float4),
//   grid-stride with 64-bit indices; the launcher splits buffers of 2^30 elements or more into
//   several launches (n is an int).
//   Scalars: n, zero_grad, decoupled are `int` (np.int32); adam_step_f32/_f64 take the rest as T
//   (np.float32 / np.float64); adam_step_dev_* take beta1, beta2, eps, weight_decay as double
//   (np.float64) and `scalars` as a const double* (a float64 device array of >= 2 elements).
//   adam_step_mixed_*: (param, grad, m, v, scalars, inv_scale, found_inf, beta1, beta2, eps,
//   weight_decay [double], decoupled [int], n [int, last]); block 256, grid = min(ceil(n / 256), 65535).
// Bytes moved per parameter (float32)
//   28: read param, grad, m, v (16) and write param, m, v (12); +4 when zero_grad writes grad.
//   The device-scalar entry adds 16 bytes per thread (lr and t, from cache), not per parameter.
// Bytes moved per parameter (mixed, float32 master + 16-bit gradient)
//   26: read param, m, v (12) and grad (2), write param, m, v (12); a skipped step moves 4 bytes
//   per thread (found_inf) and nothing per parameter. Per thread also lr, t (16) and inv_scale (4).
// NumPy reference
//   gpunn/backend/ops/optim.py OptimOps.adam_step and OptimOps.adam_step_device (match within
//   ~1e-6 relative in float32); mixed: OptimOps.adam_step_mixed (the generic op: the same
//   update from float32(grad) * inv_scale[0], copied back where found_inf == 0), and bit for bit
//   this file's adam_step_dev_f32 given that float32 gradient.

// GPUNN_HALF_BEGIN: the 16-bit headers (compiled only into the module that launches them; see source.py)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// GPUNN_HALF_END

template <typename T> __device__ __forceinline__ T adam_sqrt(T v);
template <> __device__ __forceinline__ float adam_sqrt<float>(float v) { return sqrtf(v); }
template <> __device__ __forceinline__ double adam_sqrt<double>(double v) { return sqrt(v); }

// One parameter's update, in registers.
template <typename T>
__device__ __forceinline__ void adam_one(T& p, T& g, T& m, T& v, T beta1, T one_minus_beta1, T beta2,
                                         T one_minus_beta2, T eps, T step_size, T bc2_sqrt, T l2, T decay,
                                         int zero_grad) {
    const T gi = g + l2 * p;
    m = beta1 * m + one_minus_beta1 * gi;
    v = beta2 * v + one_minus_beta2 * (gi * gi);
    p = p * decay - step_size * m / (adam_sqrt<T>(v) / bc2_sqrt + eps);
    if (zero_grad) g = T(0);
}

// Elements [start, n) one at a time, grid-stride.
template <typename T>
__device__ __forceinline__ void adam_scalar_loop(T* __restrict__ param, T* __restrict__ grad, T* __restrict__ m,
                                                 T* __restrict__ v, long long start, long long n, T beta1,
                                                 T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T step_size,
                                                 T bc2_sqrt, T l2, T decay, int zero_grad) {
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = start + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        T p = param[i], g = grad[i], mi = m[i], vi = v[i];
        adam_one<T>(p, g, mi, vi, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2_sqrt, l2,
                    decay, zero_grad);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (zero_grad) grad[i] = g;
    }
}

// float32: float4 over aligned buffers, then the tail one at a time (see the header).
__device__ __forceinline__ void adam_f32_run(float* __restrict__ param, float* __restrict__ grad,
                                             float* __restrict__ m, float* __restrict__ v, int n,
                                             float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                                             float eps, float step_size, float bc2_sqrt, float l2, float decay,
                                             int zero_grad) {
    const unsigned long long bits = reinterpret_cast<unsigned long long>(param) |
                                    reinterpret_cast<unsigned long long>(grad) |
                                    reinterpret_cast<unsigned long long>(m) | reinterpret_cast<unsigned long long>(v);
    long long done = 0;
    if ((bits & 15ull) == 0) {
        float4* p4 = reinterpret_cast<float4*>(param);
        float4* g4 = reinterpret_cast<float4*>(grad);
        float4* m4 = reinterpret_cast<float4*>(m);
        float4* v4 = reinterpret_cast<float4*>(v);
        const long long n4 = (long long)n / 4;
        const long long step = (long long)blockDim.x * gridDim.x;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += step) {
            float4 p = p4[i], g = g4[i], mi = m4[i], vi = v4[i];
            adam_one<float>(p.x, g.x, mi.x, vi.x, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                            bc2_sqrt, l2, decay, zero_grad);
            adam_one<float>(p.y, g.y, mi.y, vi.y, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                            bc2_sqrt, l2, decay, zero_grad);
            adam_one<float>(p.z, g.z, mi.z, vi.z, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                            bc2_sqrt, l2, decay, zero_grad);
            adam_one<float>(p.w, g.w, mi.w, vi.w, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                            bc2_sqrt, l2, decay, zero_grad);
            p4[i] = p;
            m4[i] = mi;
            v4[i] = vi;
            if (zero_grad) g4[i] = g;
        }
        done = n4 * 4;
    }
    adam_scalar_loop<float>(param, grad, m, v, done, n, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                            step_size, bc2_sqrt, l2, decay, zero_grad);
}

extern "C" __global__ void adam_step_f64(double* __restrict__ param, double* __restrict__ grad,
                                         double* __restrict__ m, double* __restrict__ v, int n,
                                         double beta1, double one_minus_beta1, double beta2, double one_minus_beta2,
                                         double eps, double step_size, double bc2_sqrt, double l2, double decay,
                                         int zero_grad) {
    adam_scalar_loop<double>(param, grad, m, v, 0, n, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                             step_size, bc2_sqrt, l2, decay, zero_grad);
}

extern "C" __global__ void adam_step_f32(float* __restrict__ param, float* __restrict__ grad,
                                         float* __restrict__ m, float* __restrict__ v, int n,
                                         float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                                         float eps, float step_size, float bc2_sqrt, float l2, float decay,
                                         int zero_grad) {
    adam_f32_run(param, grad, m, v, n, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2_sqrt,
                   l2, decay, zero_grad);
}

// The per-step constants from device memory, in double, rounded once to T (see the header).
template <typename T>
__device__ __forceinline__ void adam_device_consts(const double* __restrict__ scalars, double beta1, double beta2,
                                                   double weight_decay, int decoupled, T& step_size, T& bc2_sqrt,
                                                   T& l2, T& decay) {
    const double lr = scalars[0];
    const double t = scalars[1];
    const double bc1 = 1.0 - pow(beta1, t);
    const double sqrt_bc2 = sqrt(1.0 - pow(beta2, t));
    step_size = T(lr / bc1);
    bc2_sqrt = T(sqrt_bc2);
    l2 = decoupled ? T(0) : T(weight_decay);
    decay = decoupled ? T(1.0 - lr * weight_decay) : T(1);
}

extern "C" __global__ void adam_step_dev_f32(float* __restrict__ param, float* __restrict__ grad,
                                             float* __restrict__ m, float* __restrict__ v, int n,
                                             const double* __restrict__ scalars, double beta1, double beta2,
                                             double eps, double weight_decay, int decoupled, int zero_grad) {
    float step_size, bc2_sqrt, l2, decay;
    adam_device_consts<float>(scalars, beta1, beta2, weight_decay, decoupled, step_size, bc2_sqrt, l2, decay);
    adam_f32_run(param, grad, m, v, n, float(beta1), float(1.0 - beta1), float(beta2), float(1.0 - beta2),
                   float(eps), step_size, bc2_sqrt, l2, decay, zero_grad);
}

extern "C" __global__ void adam_step_dev_f64(double* __restrict__ param, double* __restrict__ grad,
                                             double* __restrict__ m, double* __restrict__ v, int n,
                                             const double* __restrict__ scalars, double beta1, double beta2,
                                             double eps, double weight_decay, int decoupled, int zero_grad) {
    double step_size, bc2_sqrt, l2, decay;
    adam_device_consts<double>(scalars, beta1, beta2, weight_decay, decoupled, step_size, bc2_sqrt, l2, decay);
    adam_scalar_loop<double>(param, grad, m, v, 0, n, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, step_size,
                             bc2_sqrt, l2, decay, zero_grad);
}

// GPUNN_HALF_BEGIN: the mixed-precision entry points (compiled only into the 16-bit module; see source.py)
__device__ __forceinline__ float adam_grad_to_float(__half h) { return __half2float(h); }
__device__ __forceinline__ float adam_grad_to_float(__nv_bfloat16 h) { return __bfloat162float(h); }

// float32 master buffers, 16-bit gradient: skipped on the device when *found_inf != 0 (see the header).
template <typename H>
__device__ __forceinline__ void adam_mixed_run(float* __restrict__ param, const H* __restrict__ grad,
                                               float* __restrict__ m, float* __restrict__ v,
                                               const double* __restrict__ scalars, const float* __restrict__ inv_scale,
                                               const int* __restrict__ found_inf, double beta1, double beta2,
                                               double eps, double weight_decay, int decoupled, int n) {
    if (*found_inf != 0) return;  // every thread, before any other read: nothing is written
    float step_size, bc2_sqrt, l2, decay;
    adam_device_consts<float>(scalars, beta1, beta2, weight_decay, decoupled, step_size, bc2_sqrt, l2, decay);
    const float inv = *inv_scale;
    const float b1 = float(beta1), omb1 = float(1.0 - beta1), b2 = float(beta2), omb2 = float(1.0 - beta2);
    const float e = float(eps);
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)n; i += stride) {
        float p = param[i], mi = m[i], vi = v[i];
        float g = __fmul_rn(adam_grad_to_float(grad[i]), inv);
        adam_one<float>(p, g, mi, vi, b1, omb1, b2, omb2, e, step_size, bc2_sqrt, l2, decay, 0);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void adam_step_mixed_f16(float* __restrict__ param, const __half* __restrict__ grad,
                                               float* __restrict__ m, float* __restrict__ v,
                                               const double* __restrict__ scalars,
                                               const float* __restrict__ inv_scale,
                                               const int* __restrict__ found_inf, double beta1, double beta2,
                                               double eps, double weight_decay, int decoupled, int n) {
    adam_mixed_run<__half>(param, grad, m, v, scalars, inv_scale, found_inf, beta1, beta2, eps, weight_decay,
                           decoupled, n);
}

extern "C" __global__ void adam_step_mixed_bf16(float* __restrict__ param, const __nv_bfloat16* __restrict__ grad,
                                                float* __restrict__ m, float* __restrict__ v,
                                                const double* __restrict__ scalars,
                                                const float* __restrict__ inv_scale,
                                                const int* __restrict__ found_inf, double beta1, double beta2,
                                                double eps, double weight_decay, int decoupled, int n) {
    adam_mixed_run<__nv_bfloat16>(param, grad, m, v, scalars, inv_scale, found_inf, beta1, beta2, eps,
                                  weight_decay, decoupled, n);
}
// GPUNN_HALF_END
