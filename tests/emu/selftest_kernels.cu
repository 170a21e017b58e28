// Kernels for the emulator self-tests (tests/emu). Each is small and exercises one feature.
// They are valid CUDA: the same file should compile under NVRTC.

extern "C" __global__ void vec_add(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, const int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

// Block sum: dynamic shared staging, a warp-shuffle tree, static shared per-warp partials.
extern "C" __global__ void block_sum(const float* __restrict__ x, float* __restrict__ out, int n) {
    __shared__ float warp_sums[32];
    extern __shared__ float stage[];
    const int tid = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + tid;
    stage[tid] = i < n ? x[i] : 0.0f;
    __syncthreads();
    // read a neighbour's value, so the barrier above matters
    float v = stage[(tid + 1) % blockDim.x];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if ((tid & 31) == 0) warp_sums[tid >> 5] = v;
    __syncthreads();
    if (tid < 32) {
        v = tid < (int)(blockDim.x >> 5) ? warp_sums[tid] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (tid == 0) out[blockIdx.x] = v;
    }
}

// Double-precision block sum through a templated device helper with its own static shared array,
// instantiated twice: each instantiation must get its own storage.
template <typename T>
__device__ __forceinline__ T block_reduce(T v) {
    __shared__ T partial[1024];
    partial[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    T r = partial[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void two_sums(const double* __restrict__ x, const int* __restrict__ k,
                                    double* __restrict__ out_d, int* __restrict__ out_i) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    double a = block_reduce<double>(x[i]);
    int b = block_reduce<int>(k[i]);
    if (threadIdx.x == 0) { out_d[blockIdx.x] = a; out_i[blockIdx.x] = b; }
}

// Every shuffle flavour and the votes, one warp per block; out has 8 values per thread.
extern "C" __global__ void warp_ops(const float* __restrict__ x, float* __restrict__ out,
                                    unsigned int* __restrict__ votes) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    const float v = x[t];
    float* o = out + 6 * t;
    o[0] = __shfl_sync(0xffffffffu, v, 3);
    o[1] = __shfl_up_sync(0xffffffffu, v, 2);
    o[2] = __shfl_down_sync(0xffffffffu, v, 5);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 1);
    o[4] = __shfl_down_sync(0xffffffffu, v, 1, 8);   // segments of 8 lanes
    o[5] = __shfl_sync(0xffffffffu, v, lane + 1, 16);  // rotate inside 16-lane segments
    unsigned b = __ballot_sync(0xffffffffu, v > 0.0f);
    int any = __any_sync(0xffffffffu, v > 100.0f);
    int all = __all_sync(0xffffffffu, v > -100.0f);
    __syncwarp();
    if (lane == 0) { votes[3 * (t / 32)] = b; votes[3 * (t / 32) + 1] = any; votes[3 * (t / 32) + 2] = all; }
}

// Writes each thread's global coordinates, so 2D/3D grids and blocks can be checked.
extern "C" __global__ void coords(int* __restrict__ out, int nx, int ny, int nz) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x < nx && y < ny && z < nz) {
        int* o = out + 4 * ((z * ny + y) * nx + x);
        o[0] = x; o[1] = y; o[2] = z;
        o[3] = (int)(gridDim.x * gridDim.y * gridDim.z * blockDim.x * blockDim.y * blockDim.z);
    }
}

// Planted bug: a barrier only half the block reaches.
extern "C" __global__ void deadlock_half(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

// Planted bug: two different barriers, one per half of the block.
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2.0f;
    }
}

// Planted bug: reads the shared slot of thread tid+1, but the last thread's neighbour (and every
// odd slot of the static array) is never written.
extern "C" __global__ void uninit_shared(float* __restrict__ out_dyn, float* __restrict__ out_static) {
    extern __shared__ float dyn[];
    __shared__ float fixed[64];
    const int tid = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + tid;
    dyn[tid] = (float)i;
    if ((tid & 1) == 0) fixed[tid] = (float)i;
    __syncthreads();
    out_dyn[i] = dyn[tid + 1];
    out_static[i] = fixed[tid];
}

// Planted bug for ThreadSanitizer: neighbour read without the __syncthreads it needs.
extern "C" __global__ void missing_sync(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float tile[64];
    tile[threadIdx.x] = x[threadIdx.x];
    out[threadIdx.x] = tile[(threadIdx.x + 1) % blockDim.x];
}

// Shared-memory budget: 40 KiB static; with more than 8 KiB dynamic it is over the 48 KiB limit.
extern "C" __global__ void big_static(float* out) {
    __shared__ float big[10240];
    extern __shared__ float extra[];
    big[threadIdx.x] = 1.0f;
    extra[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = big[threadIdx.x] + extra[threadIdx.x];
}

// Warp intrinsic with a full mask in a 48-thread block: lanes 16..31 of warp 1 do not exist.
extern "C" __global__ void partial_warp(float* out) {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (float)threadIdx.x, 1);
}

extern "C" __global__ void atomics(const int* __restrict__ bins_of, const float* __restrict__ w,
                                   int* __restrict__ hist, float* __restrict__ wsum,
                                   int* __restrict__ imax, unsigned int* __restrict__ ucount, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&hist[bins_of[i]], 1);
    atomicAdd(&wsum[bins_of[i]], w[i]);
    atomicMax(imax, bins_of[i] * 7 - i);
    atomicAdd(ucount, 1u);
    int old = atomicCAS(&hist[16], 0, -1);  // only the first thread succeeds
    (void)old;
}

// Math intrinsics against NumPy; out has 16 results per element.
extern "C" __global__ void math_fns(const float* __restrict__ x, const double* __restrict__ xd,
                                    float* __restrict__ out, double* __restrict__ outd, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = x[i];
    float* o = out + 16 * i;
    o[0] = expf(v);
    o[1] = logf(v);
    o[2] = sqrtf(v);
    o[3] = rsqrtf(v);
    o[4] = fmaxf(v, 1.0f);
    o[5] = fminf(v, 1.0f);
    o[6] = fabsf(-v);
    o[7] = powf(v, 1.5f);
    o[8] = tanhf(v);
    o[9] = __expf(v) + __logf(v);
    o[10] = __fdividef(v, 3.0f);
    o[11] = __int_as_float(__float_as_int(v));
    o[12] = max(v, 2.0f) + (float)min(3, 4);
    o[13] = (isnan(v) ? 1.0f : 0.0f) + (isinf(__int_as_float(0x7f800000)) ? 10.0f : 0.0f);
    o[14] = __ldg(x + i);
    o[15] = __int_as_float(0xff800000) < v ? 1.0f : 0.0f;
    const double d = xd[i];
    double* od = outd + 7 * i;
    od[0] = exp(d); od[1] = log(d); od[2] = sqrt(d); od[3] = rsqrt(d);
    od[4] = fmax(d, 1.0); od[5] = fmin(d, 1.0); od[6] = fabs(-d);
}

// Every scalar type the argument checker knows, echoed back.
extern "C" __global__ void scalars(double* __restrict__ out, int a, unsigned int b, long long c, float d,
                                   double e, bool f, unsigned long long g) {
    out[0] = a; out[1] = b; out[2] = (double)c; out[3] = d; out[4] = e; out[5] = f ? 1.0 : 0.0; out[6] = (double)g;
}

extern "C" __global__ void read_only_ok(const float* __restrict__ x, float* __restrict__ y) {
    y[threadIdx.x] = 2.0f * x[threadIdx.x];
}

// Partial-mask shuffle: only the low half-warp takes part. Lanes 0-7 read lanes 8-15; lanes 8-15
// would read lanes 16-23, which are outside the mask (undefined on the GPU, poison here).
extern "C" __global__ void half_warp(const float* __restrict__ x, float* __restrict__ out) {
    const int lane = threadIdx.x & 31;
    float v = x[threadIdx.x];
    if (lane < 16) v = __shfl_down_sync(0x0000ffffu, v, 8);
    out[threadIdx.x] = v;
}
