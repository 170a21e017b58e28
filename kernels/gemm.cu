// Tiled GEMM: row-major C (M x N) = op(A) @ op(B), optionally accumulated into C, fp32 and fp64.
//
// Forms (op = identity or transpose; every matrix is a dense row-major buffer)
//   nn: A is M x K, B is K x N             C = A @ B
//   nt: A is M x K, B is given as N x K    C = A @ B^T   (Dense's dx = dy @ W^T)
//   tn: A is given as K x M, B is K x N    C = A^T @ B   (Dense's dW = x^T @ dy)
//   With accumulate != 0, C = C + op(A) @ op(B) (the product is added to what C holds, as
//   `C += a @ b` would), so a gradient accumulates in place without a temporary.
// Algorithm
//   A block computes a BM x BN tile of C; each of its 256 threads a TM x TN micro-tile held in
//   registers, at rows ty + i*(BM/TM) and columns tx + j*(BN/TN) (strided: a warp's shared reads
//   of the B tile and its global stores of C are consecutive, and the A reads are broadcasts).
//   The reduction runs in BK-deep steps through two shared buffers (double buffering): while the
//   block multiplies the tiles in one buffer, each thread loads its share of the next K-step from
//   global memory into registers and stores it into the other buffer after the multiply; one
//   __syncthreads per step. Both operand tiles are kept k-major in shared memory (S[k][r], rows
//   padded by 4 elements against bank conflicts on the transposing stores), whatever their global
//   layout, so the inner loop is the same for the three forms: per k, TM + TN shared reads feed
//   TM * TN multiply-adds.
//   Tails: loads outside the matrix (row >= M, column >= N or k >= K) give 0, stores outside C are
//   skipped, so any M, N, K >= 0 is correct (K = 0 gives C = 0, or C unchanged when accumulating).
//   Global loads: the `vec` entry points load float4 (float) / double2 (double) vectors along each
//   operand's contiguous dimension; the launcher picks them only when both operand pointers are
//   16-byte aligned and that dimension is a multiple of the vector width (K for a row-major A or a
//   transposed B, M for a transposed A, N for B). A vector then lies wholly inside or outside the
//   matrix, as tile origins are multiples of the width. The `scl` entry points load one element at
//   a time and take any size and alignment.
// Tiles (BM x BN x BK, TM x TN; 256 threads each), picked by gemm_launch.pick_tile:
//   128: 128 x 128 x 8, 8 x 8: 64 FMAs per 16 shared reads per thread per k; shared memory
//        2 x 8 x (132 + 132) elements = 16.5 KB (float) / 33 KB (double).
//   64:  64 x 64 x 8, 4 x 4: for problems whose 128-tiles would not fill the 132 SMs of an H200
//        once (small M, N: the Dense layers at batch 128); 8.5 KB / 17 KB of shared memory.
// Launch shape
//   block 256 (__launch_bounds__(256)); grid (ceil(N / BN), ceil(M / BM)), both under 65535 (the
//   launcher checks). M, N, K are `int` (np.int32, each checked); element offsets are long long.
// FLOPs and bytes per output element
//   2K FLOPs per C element. Global traffic: the A tile is read by every column tile and the B tile
//   by every row tile, so each C element costs K * (1/BN + 1/BM) * sizeof(T) * 1 bytes of operand
//   reads (128: K/64 elements, 64: K/32), plus one write of C (and one read when accumulating).
//   Shared traffic per FMA: (TM + TN) / (TM * TN) elements (128: 0.25, 64: 0.5).
// NumPy reference
//   np.matmul(op(A), op(B)) (plus C when accumulating): equal within the rounding of a
//   differently ordered float sum (tests/backend/cuda/test_launchers_gemm.py states the bounds).

#define GEMM_THREADS 256

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct GemmTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
    static constexpr int ROW_THREADS = BM / TM;  // threads along the rows of C
    static constexpr int COL_THREADS = BN / TN;  // threads along its columns
    static_assert(ROW_THREADS * COL_THREADS == GEMM_THREADS, "a tile takes exactly 256 threads");
    static constexpr int LDA = BM + 4, LDB = BN + 4;  // padded k-rows of the shared tiles
    static constexpr int A_BUF = BK * LDA, B_BUF = BK * LDB;
    static constexpr int SMEM = 2 * (A_BUF + B_BUF);  // both A buffers, then both B buffers
};

typedef GemmTile<128, 128, 8, 8, 8> GemmTile128;
typedef GemmTile<64, 64, 8, 4, 4> GemmTile64;
static_assert(GemmTile128::SMEM == 4224 && GemmTile64::SMEM == 2176, "the header's shared sizes");

// One static shared array per (T, tile), shared by the entry points of that pair (one runs per
// block): keeps the emulator's per-module arena small, changes nothing on the GPU.
template <typename T, class Tile>
__device__ __forceinline__ T* gemm_smem() {
    __shared__ T smem[Tile::SMEM];
    return smem;
}

// The vector type of the `vec` entry points: 16 bytes either way.
template <typename T> struct GemmVec;
template <> struct GemmVec<float> {
    typedef float4 type;
    static constexpr int W = 4;
    static __device__ __forceinline__ void unpack(const float4& v, float* r) {
        r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    }
};
template <> struct GemmVec<double> {
    typedef double2 type;
    static constexpr int W = 2;
    static __device__ __forceinline__ void unpack(const double2& v, double* r) {
        r[0] = v.x; r[1] = v.y;
    }
};

// One operand's BR x BK tile (BR: rows of C for A, columns of C for B), loaded VW elements at a
// time into registers, then stored k-major into shared memory as S[k * LD + r].
// RK: operand element (r, k) is X[r * ld + k] (k contiguous); otherwise X[k * ld + r].
template <typename T, int BR, int BK, int LD, bool RK, int VW>
struct GemmLoader {
    static constexpr int SPAN = RK ? BK / VW : BR / VW;  // vectors along the contiguous dimension
    static constexpr int VECS = BR * BK / VW;
    static constexpr int PER = (VECS + GEMM_THREADS - 1) / GEMM_THREADS;  // vectors per thread
    static_assert(SPAN * VW == (RK ? BK : BR), "the vector width must divide the contiguous tile side");
    T reg[PER * VW];

    // Tile coordinates (r, k) of this thread's i-th vector; false when the tile has no such vector.
    static __device__ __forceinline__ bool slot(int i, int& r, int& k) {
        const int v = threadIdx.x + i * GEMM_THREADS;
        if (RK) { r = v / SPAN; k = (v % SPAN) * VW; }
        else    { k = v / SPAN; r = (v % SPAN) * VW; }
        return VECS % GEMM_THREADS == 0 || v < VECS;
    }

    __device__ __forceinline__ void load(const T* __restrict__ X, int ld, int R, int K, int r0, int k0) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int r, k;
            if (!slot(i, r, k)) continue;
            const int gr = r0 + r, gk = k0 + k;
            const long long off = RK ? (long long)gr * ld + gk : (long long)gk * ld + gr;
            if (VW == 1) {
                reg[i * VW] = (gr < R && gk < K) ? X[off] : T(0);
            } else if (gr < R && gk < K) {  // the launcher proved a vector is wholly in or out
                GemmVec<T>::unpack(*reinterpret_cast<const typename GemmVec<T>::type*>(X + off), reg + i * VW);
            } else {
#pragma unroll
                for (int e = 0; e < VW; ++e) reg[i * VW + e] = T(0);
            }
        }
    }

    __device__ __forceinline__ void store(T* S) const {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            int r, k;
            if (!slot(i, r, k)) continue;
#pragma unroll
            for (int e = 0; e < VW; ++e) {
                if (RK) S[(k + e) * LD + r] = reg[i * VW + e];
                else    S[k * LD + r + e] = reg[i * VW + e];
            }
        }
    }
};

template <typename T, class Tile, bool A_RK, bool B_RK, int VW>
__device__ __forceinline__ void gemm_impl(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                          int M, int N, int K, int accumulate) {
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
    constexpr int LDA = Tile::LDA, LDB = Tile::LDB, RT = Tile::ROW_THREADS, CT = Tile::COL_THREADS;
    T* smem = gemm_smem<T, Tile>();
    T* As = smem;
    T* Bs = smem + 2 * Tile::A_BUF;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int tx = threadIdx.x % CT, ty = threadIdx.x / CT;
    const int lda = A_RK ? K : M, ldb = B_RK ? K : N;
    GemmLoader<T, BM, BK, LDA, A_RK, VW> la;
    GemmLoader<T, BN, BK, LDB, B_RK, VW> lb;

    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    const int steps = (K + BK - 1) / BK;
    if (steps > 0) {
        la.load(A, lda, M, K, m0, 0);
        lb.load(B, ldb, N, K, n0, 0);
        la.store(As);
        lb.store(Bs);
    }
    __syncthreads();
    for (int s = 0; s < steps; ++s) {
        const int cur = s & 1;
        const bool more = s + 1 < steps;
        if (more) {  // the next step's global loads overlap this step's multiply
            la.load(A, lda, M, K, m0, (s + 1) * BK);
            lb.load(B, ldb, N, K, n0, (s + 1) * BK);
        }
        const T* a = As + cur * Tile::A_BUF;
        const T* b = Bs + cur * Tile::B_BUF;
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            T af[TM], bf[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) af[i] = a[k * LDA + ty + i * RT];
#pragma unroll
            for (int j = 0; j < TN; ++j) bf[j] = b[k * LDB + tx + j * CT];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += af[i] * bf[j];
        }
        // The other buffer was last read in step s - 1, before that step's barrier: safe to fill.
        if (more) {
            la.store(As + (cur ^ 1) * Tile::A_BUF);
            lb.store(Bs + (cur ^ 1) * Tile::B_BUF);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = m0 + ty + i * RT;
        if (row >= M) continue;
        T* __restrict__ crow = C + (long long)row * N;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int col = n0 + tx + j * CT;
            if (col < N) crow[col] = accumulate ? crow[col] + acc[i][j] : acc[i][j];
        }
    }
}

// Entry points: gemm_<form>_<tile>_<load>_<dtype>, form nn / nt / tn, tile 128 / 64, load vec
// (float4 / double2, see the header for when) or scl (scalar), dtype f32 / f64. Each takes
// (A, B, C, M, N, K, accumulate) with the sizes of C = op(A) @ op(B) (C is M x N).
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_128_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, true, false, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_128_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, true, false, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_128_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, true, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_128_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, true, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_64_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, true, false, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_64_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, true, false, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_64_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, true, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nn_64_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, true, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_128_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, true, true, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_128_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, true, true, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_128_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, true, true, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_128_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, true, true, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_64_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, true, true, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_64_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, true, true, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_64_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, true, true, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_nt_64_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, true, true, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_128_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, false, false, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_128_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, false, false, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_128_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile128, false, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_128_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile128, false, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_64_vec_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, false, false, GemmVec<float>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_64_vec_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, false, false, GemmVec<double>::W>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_64_scl_f32(
        const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<float, GemmTile64, false, false, 1>(A, B, C, M, N, K, accumulate);
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tn_64_scl_f64(
        const double* __restrict__ A, const double* __restrict__ B, double* __restrict__ C, int M, int N, int K,
        int accumulate) {
    gemm_impl<double, GemmTile64, false, false, 1>(A, B, C, M, N, K, accumulate);
}
