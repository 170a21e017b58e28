// Fused Adam / AdamW over a flat parameter buffer: one launch per optimizer step.
//
// Algorithm (PyTorch's formulas), one thread per parameter, grid-stride:
//   g = grad[i] + l2 * param[i]                      (coupled L2; l2 = weight_decay, or 0)
//   p = param[i] * decay                              (decoupled AdamW; decay = 1 - lr*wd, or 1)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   grad[i] = 0 when zero_grad != 0 (saves a separate memset pass)
// The host precomputes the bias corrections: step_size = lr / (1 - beta1^t),
// bc2_sqrt = sqrt(1 - beta2^t), so the kernel does no pow and all threads agree bit for bit.
// Each element is independent: deterministic.
// Launch shape
//   1-D: block 256, grid = min(ceil(n / 256), 65535), grid-stride with 64-bit indices; the
//   launcher splits buffers of 2^30 elements or more into several launches (n is an int).
//   Scalars: n, zero_grad are `int` (np.int32); the rest are T (np.float32 for adam_step_f32,
//   np.float64 for adam_step_f64).
// Bytes moved per parameter (float32)
//   28: read param, grad, m, v (16) and write param, m, v (12); +4 when zero_grad writes grad.
// NumPy reference
//   gpunn/backend/ops/optim.py OptimOps.adam_step (match within ~1e-6 relative in float32).

template <typename T> __device__ __forceinline__ T adam_sqrt(T v);
template <> __device__ __forceinline__ float adam_sqrt<float>(float v) { return sqrtf(v); }
template <> __device__ __forceinline__ double adam_sqrt<double>(double v) { return sqrt(v); }

template <typename T>
__device__ __forceinline__ void adam_impl(T* __restrict__ param, T* __restrict__ grad, T* __restrict__ m,
                                          T* __restrict__ v, int n, T beta1, T one_minus_beta1, T beta2,
                                          T one_minus_beta2, T eps, T step_size, T bc2_sqrt, T l2, T decay,
                                          int zero_grad) {
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const T p0 = param[i];
        const T g = grad[i] + l2 * p0;
        const T p = p0 * decay;
        const T mi = beta1 * m[i] + one_minus_beta1 * g;
        const T vi = beta2 * v[i] + one_minus_beta2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step_size * mi / (adam_sqrt<T>(vi) / bc2_sqrt + eps);
        if (zero_grad) grad[i] = T(0);
    }
}

extern "C" __global__ void adam_step_f32(float* __restrict__ param, float* __restrict__ grad,
                                         float* __restrict__ m, float* __restrict__ v, int n,
                                         float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                                         float eps, float step_size, float bc2_sqrt, float l2, float decay,
                                         int zero_grad) {
    adam_impl<float>(param, grad, m, v, n, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                     bc2_sqrt, l2, decay, zero_grad);
}

extern "C" __global__ void adam_step_f64(double* __restrict__ param, double* __restrict__ grad,
                                         double* __restrict__ m, double* __restrict__ v, int n,
                                         double beta1, double one_minus_beta1, double beta2, double one_minus_beta2,
                                         double eps, double step_size, double bc2_sqrt, double l2, double decay,
                                         int zero_grad) {
    adam_impl<double>(param, grad, m, v, n, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                      bc2_sqrt, l2, decay, zero_grad);
}
