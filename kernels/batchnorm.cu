// Batch normalization over (N, C, S), S = the product of the spatial sizes (1 for (N, C) input): fused training
// forward, inference forward, fused backward.
//
// Algorithm
//   train forward: one block per channel (grid-stride over channels). Two passes with a
//     shared-memory tree reduction: sum(x) -> mean, then sum((x - mean)^2) -> biased var, with
//     accumulation in T (float for float32: the two-pass form keeps it accurate). Thread 0 writes
//     save_mean, save_invstd = 1 / sqrt(var + eps), and, when update_running != 0, updates the
//     running statistics in place: running = (1 - momentum) * running + momentum * batch, with the
//     unbiased m / (m - 1) variance (m = N*S). A third pass writes y = (x - mean) * (gamma * invstd) + beta.
//   infer forward: one thread per element, grid-stride: y = x * scale + shift with
//     scale = gamma / sqrt(rvar + eps), shift = beta - rmean * scale (the reference's form).
//   backward: one block per channel. One pass reduces sum(dy) and sum(dy * xhat) together
//     (xhat = (x - mean) * invstd); dbeta = sum(dy), dgamma = sum(dy * xhat); a second pass
//     writes dx = gamma * invstd * (dy - (sum(dy) + xhat * sum(dy * xhat)) / m).
//   The reduction order is fixed (thread-strided partial sums, then a fixed tree), so the result is
//   deterministic run to run.
// Launch shape
//   train forward and backward: block BN_BLOCK = 256 threads exactly (the shared buffers are
//     sized for it), grid = min(C, 65535). Infer: block 256, grid = min(ceil(total/256), 65535).
//   Scalars: N, C, S, update_running are `int` (np.int32); momentum, eps are T (np.float32 for
//   the _f32 kernels, np.float64 for _f64).
// Bytes moved per element (float32)
//   train forward: 12 (x read twice for the statistics, once more for y, 4 written).
//   infer: 8. backward: 20 (x and dy read twice, dx written).
// NumPy reference
//   gpunn/backend/ops/norm.py NormOps.batchnorm_forward_train / batchnorm_forward_infer /
//   batchnorm_backward (match within ~1e-5 relative in float32; sums are ordered differently).

#define BN_BLOCK 256

template <typename T> __device__ __forceinline__ T bn_sqrt(T v);
template <> __device__ __forceinline__ float bn_sqrt<float>(float v) { return sqrtf(v); }
template <> __device__ __forceinline__ double bn_sqrt<double>(double v) { return sqrt(v); }

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

template <typename T>
__device__ __forceinline__ void bn_fwd_train_impl(const T* __restrict__ x, const T* __restrict__ gamma,
                                                  const T* __restrict__ beta, T* __restrict__ y,
                                                  T* __restrict__ save_mean, T* __restrict__ save_invstd,
                                                  T* __restrict__ running_mean, T* __restrict__ running_var,
                                                  int N, int C, int S, T momentum, T eps, int update_running,
                                                  T* buf) {
    const long long m = (long long)N * S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        T part = T(0);
        for (long long k = threadIdx.x; k < m; k += BN_BLOCK) {
            const long long n = k / S;
            part += x[(n * C + c) * S + (k - n * S)];
        }
        const T mean = bn_block_sum<T>(part, buf) / T(m);
        part = T(0);
        for (long long k = threadIdx.x; k < m; k += BN_BLOCK) {
            const long long n = k / S;
            const T d = x[(n * C + c) * S + (k - n * S)] - mean;
            part += d * d;
        }
        const T var = bn_block_sum<T>(part, buf) / T(m);
        const T invstd = T(1) / bn_sqrt<T>(var + eps);
        if (threadIdx.x == 0) {
            save_mean[c] = mean;
            save_invstd[c] = invstd;
            if (update_running) {
                const T unbiased = m > 1 ? var * (T(m) / T(m - 1)) : var;
                running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mean;
                running_var[c] = (T(1) - momentum) * running_var[c] + momentum * unbiased;
            }
        }
        const T scale = gamma[c] * invstd;
        const T b = beta[c];
        for (long long k = threadIdx.x; k < m; k += BN_BLOCK) {
            const long long n = k / S;
            const long long o = (n * C + c) * S + (k - n * S);
            y[o] = (x[o] - mean) * scale + b;
        }
    }
}

template <typename T>
__device__ __forceinline__ void bn_fwd_infer_impl(const T* __restrict__ x, const T* __restrict__ gamma,
                                                  const T* __restrict__ beta, const T* __restrict__ running_mean,
                                                  const T* __restrict__ running_var, T* __restrict__ y,
                                                  int N, int C, int S, T eps) {
    const long long total = (long long)N * C * S;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
        const int c = (int)((k / S) % C);
        const T scale = gamma[c] * (T(1) / bn_sqrt<T>(running_var[c] + eps));
        const T shift = beta[c] - running_mean[c] * scale;
        y[k] = x[k] * scale + shift;
    }
}

template <typename T>
__device__ __forceinline__ void bn_bwd_impl(const T* __restrict__ dy, const T* __restrict__ x,
                                            const T* __restrict__ gamma, const T* __restrict__ save_mean,
                                            const T* __restrict__ save_invstd, T* __restrict__ dx,
                                            T* __restrict__ dgamma, T* __restrict__ dbeta,
                                            int N, int C, int S, T* buf_a, T* buf_b) {
    const long long m = (long long)N * S;
    for (int c = blockIdx.x; c < C; c += gridDim.x) {
        const T mean = save_mean[c];
        const T invstd = save_invstd[c];
        T part_dy = T(0);
        T part_dyx = T(0);
        for (long long k = threadIdx.x; k < m; k += BN_BLOCK) {
            const long long n = k / S;
            const long long o = (n * C + c) * S + (k - n * S);
            const T g = dy[o];
            part_dy += g;
            part_dyx += g * ((x[o] - mean) * invstd);
        }
        // Both sums reduce through one tree walk so they share the barriers.
        buf_a[threadIdx.x] = part_dy;
        buf_b[threadIdx.x] = part_dyx;
        __syncthreads();
        for (int s = BN_BLOCK / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) {
                buf_a[threadIdx.x] += buf_a[threadIdx.x + s];
                buf_b[threadIdx.x] += buf_b[threadIdx.x + s];
            }
            __syncthreads();
        }
        const T sum_dy = buf_a[0];
        const T sum_dyx = buf_b[0];
        __syncthreads();
        if (threadIdx.x == 0) {
            dbeta[c] = sum_dy;
            dgamma[c] = sum_dyx;
        }
        const T scale = gamma[c] * invstd;
        const T fm = T(m);
        for (long long k = threadIdx.x; k < m; k += BN_BLOCK) {
            const long long n = k / S;
            const long long o = (n * C + c) * S + (k - n * S);
            const T xhat = (x[o] - mean) * invstd;
            dx[o] = scale * (dy[o] - (sum_dy + xhat * sum_dyx) / fm);
        }
    }
}

extern "C" __global__ void bn_fwd_train_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta, float* __restrict__ y,
                                            float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                            float* __restrict__ running_mean, float* __restrict__ running_var,
                                            int N, int C, int S, float momentum, float eps, int update_running) {
    __shared__ float buf[BN_BLOCK];
    bn_fwd_train_impl<float>(x, gamma, beta, y, save_mean, save_invstd, running_mean, running_var,
                             N, C, S, momentum, eps, update_running, buf);
}

extern "C" __global__ void bn_fwd_train_f64(const double* __restrict__ x, const double* __restrict__ gamma,
                                            const double* __restrict__ beta, double* __restrict__ y,
                                            double* __restrict__ save_mean, double* __restrict__ save_invstd,
                                            double* __restrict__ running_mean, double* __restrict__ running_var,
                                            int N, int C, int S, double momentum, double eps, int update_running) {
    __shared__ double buf[BN_BLOCK];
    bn_fwd_train_impl<double>(x, gamma, beta, y, save_mean, save_invstd, running_mean, running_var,
                              N, C, S, momentum, eps, update_running, buf);
}

extern "C" __global__ void bn_fwd_infer_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta, const float* __restrict__ running_mean,
                                            const float* __restrict__ running_var, float* __restrict__ y,
                                            int N, int C, int S, float eps) {
    bn_fwd_infer_impl<float>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_fwd_infer_f64(const double* __restrict__ x, const double* __restrict__ gamma,
                                            const double* __restrict__ beta, const double* __restrict__ running_mean,
                                            const double* __restrict__ running_var, double* __restrict__ y,
                                            int N, int C, int S, double eps) {
    bn_fwd_infer_impl<double>(x, gamma, beta, running_mean, running_var, y, N, C, S, eps);
}

extern "C" __global__ void bn_bwd_f32(const float* __restrict__ dy, const float* __restrict__ x,
                                      const float* __restrict__ gamma, const float* __restrict__ save_mean,
                                      const float* __restrict__ save_invstd, float* __restrict__ dx,
                                      float* __restrict__ dgamma, float* __restrict__ dbeta,
                                      int N, int C, int S) {
    __shared__ float buf_a[BN_BLOCK];
    __shared__ float buf_b[BN_BLOCK];
    bn_bwd_impl<float>(dy, x, gamma, save_mean, save_invstd, dx, dgamma, dbeta, N, C, S, buf_a, buf_b);
}

extern "C" __global__ void bn_bwd_f64(const double* __restrict__ dy, const double* __restrict__ x,
                                      const double* __restrict__ gamma, const double* __restrict__ save_mean,
                                      const double* __restrict__ save_invstd, double* __restrict__ dx,
                                      double* __restrict__ dgamma, double* __restrict__ dbeta,
                                      int N, int C, int S) {
    __shared__ double buf_a[BN_BLOCK];
    __shared__ double buf_b[BN_BLOCK];
    bn_bwd_impl<double>(dy, x, gamma, save_mean, save_invstd, dx, dgamma, dbeta, N, C, S, buf_a, buf_b);
}
