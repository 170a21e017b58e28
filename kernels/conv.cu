// 2-D convolution (cross-correlation) over NCHW as implicit GEMM: forward, data gradient, weight
// gradient, with stride, padding and dilation. The im2col matrix is never materialized: each
// kernel gathers the operand it needs straight from x or dy into shared-memory tiles.
//
// Notation
//   x (N, C, H, W), weight (F, C, KH, KW), y / dy (N, F, OH, OW); P = OH*OW, KHW = KH*KW,
//   K = C*KHW with k = (c*KH + i)*KW + j, and X_col[n, k, p] = x[n, c, oh*SH - PH + i*DH,
//   ow*SW - PW + j*DW] (0 in the padding), p = oh*OW + ow: the cols of ConvOps.im2col.
//   dy' = dy * (relu_y > 0) when a relu_y pointer is given (flag mask != 0), else dy; the mask is
//   applied as dy is read, so no masked copy of dy is ever written.
//
// Algorithm: one tiled GEMM main loop (conv_mainloop) shared by three kernels, each with its own
// operand gathers ("loaders") and epilogue. A block computes a BM x BN tile of the output matrix;
// each of its 256 threads a TM x TN micro-tile held in registers, at rows ty + a*(BM/TM) and
// columns tx + b*(BN/TN) (strided, so a warp's shared reads of B and its global stores are
// consecutive). The reduction runs in BK steps, double buffered: while the block multiplies the
// tile in one shared buffer, each thread gathers its share of the next tile into registers, then
// stores it to the other buffer; one __syncthreads per step. Every thread gathers a fixed column
// of the B tile (its index decomposition is done once per block) and a fixed reduction offset of
// the A tile (its decomposition is done once per step), so the per-element index cost is at most
// two 32-bit divisions by runtime constants.
//   conv_fwd:  Y[n, f, p] = sum_k W[f, k] * X_col[n, k, p]. GEMM rows F, columns N*P (column
//     q = n*P + p), reduction K. Epilogue: + bias[f] when has_bias, max(., 0) when relu (NaN
//     propagates, as np.maximum), stored straight into NCHW.
//   conv_dx:   dx[n, c, h, w] = sum over (f, i, j) with a valid (oh, ow) of W[f, c, i, j] *
//     dy'[n, f, oh, ow], where oh*SH = h + PH - i*DH (and the same for w). GEMM rows C, columns
//     N*H*W, reduction F*KHW: a gather, each output written once by one thread (no atomics,
//     deterministic). Elements whose (h, w) no window reaches with offset (i, j) gather 0.
//   conv_dw:   dW[f, k] = sum over q = (n, p) of dy'[n, f, p] * X_col[n, k, p]. GEMM rows F,
//     columns K, reduction N*P. Split-K: grid z cuts the reduction into `splits` contiguous chunks
//     (a multiple of BK each); chunk z writes its partial dW to ws + z*F*K. The blocks of the first
//     column tile also sum their A tiles (dy') per row, so db[f] = sum dy' comes out of the same
//     pass, its partial at wsb + z*F. With splits == 1 the launcher passes dW and db themselves.
//     The launcher splits (conv_launch.pick_splits) when the F x K output has fewer tiles than ~2
//     blocks per SM (264): into ceil(264 / tiles) chunks, at most 64, none under 512 reduction
//     elements. A first layer's dW (32 x 27: one tile, N*P = 131072 at batch 128) gets 64 splits.
//   conv_splitk_reduce: dW[e] = sum_{z = 0..splits-1} ws[z*F*K + e] and db[f] likewise, in z
//     order, grid-stride. No float atomics anywhere, so every result is bit-for-bit reproducible
//     run to run (and under CUDA-graph replay).
// Tiles (BM x BN x BK, TM x TN; 256 threads each), picked per GEMM by conv_launch.pick_tile: the
// least padded work ceil(M/BM)*BM * ceil(Ncol/BN)*BN * ceil(R/BK)*BK over the three, ties to L, S, T
// in that order, or to S, T, L when the reduction R <= 32:
//   L 64 x 64 x 16, 4 x 4: the common case (16 FMAs per thread per pair of shared operand reads,
//     4 + 4 gathered elements per thread per step).
//   S 32 x 128 x 8, 4 x 4: 17..32 rows (a 32-filter layer would leave half of L's rows empty), and
//     first layers with C = 1 or 3 (R = 9, 25, 27): BK = 8 gives a 9..27-long reduction 2-4
//     double-buffered steps, where BK = 16 gives 1-2 and nothing to overlap.
//   T 16 x 256 x 8, 2 x 8: <= 16 rows (LeNet's 6 and 16 filters, the data gradient of a 1- or
//     3-channel input): rows padded to 16, not 64.
//   1x1 convolutions need no tile of their own: their gather has i = j = 0 and reads along input
//     rows (coalesced); they follow the same rule. The weight gradient's columns are C*KH*KW (9..576),
//     so the padded-work rule keeps it off BN = 256 unless its rows are few.
//   Shared memory: 2 buffers x (BK x (BM + 1) + BK x BN) elements (A rows padded by one against
//     bank conflicts on the transposed store): L 4128, S 2576, T 4368 elements (16.5 / 10.3 /
//     17.5 KB in float32, twice that in float64: always under the 48 KB static limit). One static
//     array per (T, tile) (conv_smem), shared by the three kernels of that pair.
// Launch shape
//   block 256 with __launch_bounds__(256, 2): at most 128 registers, so two blocks fit an SM (without
//   the minimum, ptxas spilled conv_dx_L_f32 on sm_90 and gave some f64 kernels 226 registers);
//   grid (ceil(columns / BN), ceil(rows / BM), splits) with
//   splits = 1 except for conv_dw; conv_splitk_reduce: block 256, 1-D grid-stride grid. The
//   launcher (gpunn/backend/cuda/conv_launch.py) checks that N*P, N*H*W, C*H*W, F*P, F*K and the
//   workspace's per-split size fit an int, so row/column/reduction indices are int32; flat offsets
//   into x, y, dy, dx (sample base n*C*H*W or n*F*P) are long long. Scalars are all `int` (np.int32).
// FLOPs and bytes per output element (float32)
//   conv_fwd: 2K FLOPs per y element; DRAM traffic ideally x + W + y once (4 bytes per element
//     each), shared traffic per FMA 2*4 / (TM*TN) bytes per thread operand pair (L: 0.5 B/FMA).
//     Each x element is re-gathered by ceil(F/BM) row tiles and KHW offsets (mostly from L1/L2).
//   conv_dx: 2*F*KHW FLOPs per dx element, of which a fraction ~1/(SH*SW) is on gathered non-zeros
//     (the rest are masked zeros); bytes: dy + W + dx once ideally.
//   conv_dw: 2*N*P FLOPs per dW element; bytes: x and dy once per column / row tile, the
//     workspace 4*splits*(F*K + F) written and read once more by the reduction.
// NumPy reference
//   gpunn/backend/ops/conv.py ConvOps.conv2d_forward (y, with bias and relu) and
//   ConvOps.conv2d_backward (dx, dweight, dbias, with relu_y): matches within float rounding of a
//   differently ordered sum (tests/backend/cuda/test_launchers_conv.py states the tolerances).

#define CONV_THREADS 256

// Tile configurations (see the header): BM x BN outputs per block, BK reduction steps, TM x TN per thread.
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct ConvTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
    static constexpr int LDA = BM + 1;              // padded A row (one k of the A tile)
    static constexpr int ROW_THREADS = BM / TM;     // threads along rows
    static constexpr int COL_THREADS = BN / TN;     // threads along columns
    static_assert(ROW_THREADS * COL_THREADS == CONV_THREADS, "a tile takes exactly 256 threads");
    static_assert(CONV_THREADS % BK == 0 && CONV_THREADS % BN == 0, "fixed gather offsets need these");
    static constexpr int A_ELEMS = BM * BK, B_ELEMS = BK * BN;
    static constexpr int A_LOADS = (A_ELEMS + CONV_THREADS - 1) / CONV_THREADS;  // per thread, per step
    static constexpr int B_LOADS = B_ELEMS / CONV_THREADS;
    static constexpr int A_SIZE = 2 * BK * LDA;     // both A buffers, then both B buffers
    static constexpr int SMEM = A_SIZE + 2 * BK * BN;
};

typedef ConvTile<64, 64, 16, 4, 4> TileL;
typedef ConvTile<32, 128, 8, 4, 4> TileS;
typedef ConvTile<16, 256, 8, 2, 8> TileT;
static_assert(TileL::SMEM == 4128 && TileS::SMEM == 2576 && TileT::SMEM == 4368, "the header's shared sizes");

// The shared tiles of one (T, Tile): a single static __shared__ declaration per pair, used by the
// three kernels of that pair (each block runs one of them), rather than one per kernel: that keeps
// the module's static shared memory at 6 arrays (the emulator's per-module arena holds 256 KB) and
// changes nothing on the GPU, where each kernel gets its own copy of the arrays it uses.
template <typename T, class Tile>
__device__ __forceinline__ T* conv_smem() {
    __shared__ T smem[Tile::SMEM];
    return smem;
}

// Convolution geometry, built once per kernel from its int scalars.
struct ConvGeom {
    int N, C, H, W, F, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW;
};

// dy' read: dy masked by relu_y > 0 (multiplied, as the reference's dy * (y > 0): NaN in dy stays NaN).
template <typename T>
__device__ __forceinline__ T conv_dy(const T* __restrict__ dy, const T* __restrict__ relu_y, int mask,
                                     long long idx) {
    const T v = dy[idx];
    if (!mask) return v;
    return v * (relu_y[idx] > T(0) ? T(1) : T(0));
}

// The shared main loop. A (rows x R) and B (R x columns) come from loaders:
//   a.set_k(k): this step's reduction index for the thread's fixed A offset; a.load(m): A[m, k]
//   b.set_col(n): the thread's fixed B column, once;                        b.load(k): B[k, n]
// both returning 0 outside the matrix. Reduction range [k_begin, k_end). When rowsum is set the
// first BM threads also sum their row of every A tile, in reduction order, into *row_acc.
template <typename T, class Tile, class ALoad, class BLoad>
__device__ __forceinline__ void conv_mainloop(ALoad& a, BLoad& b, int m0, int n0, int k_begin, int k_end,
                                              T (&acc)[Tile::TM][Tile::TN], T* smem, bool rowsum, T* row_acc) {
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, LDA = Tile::LDA;
    const int t = threadIdx.x;
    const int tx = t % Tile::COL_THREADS, ty = t / Tile::COL_THREADS;
    const int a_k = t % BK, a_m = t / BK;     // A gather: reduction offset fixed, rows strided
    const int b_n = t % BN, b_k = t / BN;     // B gather: column fixed, reductions strided
    T* As = smem;
    T* Bs = smem + Tile::A_SIZE;
    b.set_col(n0 + b_n);
#pragma unroll
    for (int a_ = 0; a_ < Tile::TM; ++a_)
#pragma unroll
        for (int b_ = 0; b_ < Tile::TN; ++b_) acc[a_][b_] = T(0);

    T ra[Tile::A_LOADS];
    T rb[Tile::B_LOADS];
    // Gather the tile at reduction offset k0 into registers.
    auto gather = [&](int k0) {
        a.set_k(k0 + a_k, k_end);
#pragma unroll
        for (int r = 0; r < Tile::A_LOADS; ++r) {
            const int m = a_m + r * (CONV_THREADS / BK);
            ra[r] = (m < BM) ? a.load(m0 + m) : T(0);
        }
#pragma unroll
        for (int r = 0; r < Tile::B_LOADS; ++r) b.set_and_load(k0 + b_k + r * (CONV_THREADS / BN), k_end, rb[r]);
    };
    auto stash = [&](int buf) {
#pragma unroll
        for (int r = 0; r < Tile::A_LOADS; ++r) {
            const int m = a_m + r * (CONV_THREADS / BK);
            if (m < BM) As[(buf * BK + a_k) * LDA + m] = ra[r];
        }
#pragma unroll
        for (int r = 0; r < Tile::B_LOADS; ++r) Bs[(buf * BK + b_k + r * (CONV_THREADS / BN)) * BN + b_n] = rb[r];
    };

    T rs = T(0);
    int buf = 0;
    if (k_begin < k_end) {
        gather(k_begin);
        stash(0);
    }
    __syncthreads();
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) gather(k0 + BK);  // global loads in flight while this tile is multiplied
        const T* Ab = As + buf * BK * LDA;
        const T* Bb = Bs + buf * BK * BN;
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T av[Tile::TM], bv[Tile::TN];
#pragma unroll
            for (int a_ = 0; a_ < Tile::TM; ++a_) av[a_] = Ab[kk * LDA + ty + a_ * Tile::ROW_THREADS];
#pragma unroll
            for (int b_ = 0; b_ < Tile::TN; ++b_) bv[b_] = Bb[kk * BN + tx + b_ * Tile::COL_THREADS];
#pragma unroll
            for (int a_ = 0; a_ < Tile::TM; ++a_)
#pragma unroll
                for (int b_ = 0; b_ < Tile::TN; ++b_) acc[a_][b_] += av[a_] * bv[b_];
        }
        if (rowsum && t < BM) {
            for (int kk = 0; kk < BK; ++kk) rs += Ab[kk * LDA + t];
        }
        if (more) stash(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }
    if (rowsum) *row_acc = rs;
}

// -- forward loaders ------------------------------------------------------------------------------
template <typename T>
struct FwdA {  // A = W as (F, K), row-major
    const T* __restrict__ w;
    int F, K, k;
    bool ok;
    __device__ __forceinline__ void set_k(int kk, int k_end) { k = kk; ok = kk < k_end; }
    __device__ __forceinline__ T load(int m) const { return (ok && m < F) ? w[m * K + k] : T(0); }
};

template <typename T>
struct FwdB {  // B = X_col as (K, N*P): column q = n*P + p
    const T* __restrict__ x;
    ConvGeom g;
    int KHW, cols;
    const T* __restrict__ xs;  // this column's sample
    int h0, w0;
    bool ok;
    __device__ __forceinline__ void set_col(int q) {
        ok = q < cols;
        const int P = g.OH * g.OW;
        const int n = ok ? q / P : 0;
        const int p = q - n * P;
        const int oh = p / g.OW;
        h0 = oh * g.SH - g.PH;
        w0 = (p - oh * g.OW) * g.SW - g.PW;
        xs = x + (long long)n * g.C * g.H * g.W;
    }
    __device__ __forceinline__ void set_and_load(int k, int k_end, T& out) const {
        out = T(0);
        if (!ok || k >= k_end) return;
        const int c = k / KHW;
        const int r = k - c * KHW;
        const int i = r / g.KW;
        const int h = h0 + i * g.DH;
        const int w = w0 + (r - i * g.KW) * g.DW;
        if (h >= 0 && h < g.H && w >= 0 && w < g.W) out = xs[(c * g.H + h) * g.W + w];
    }
};

template <typename T, class Tile>
__device__ __forceinline__ void conv_fwd_impl(const T* __restrict__ x, const T* __restrict__ w,
                                              const T* __restrict__ bias, T* __restrict__ y, ConvGeom g,
                                              int has_bias, int relu, T* smem) {
    const int KHW = g.KH * g.KW, K = g.C * KHW, P = g.OH * g.OW, cols = g.N * P;
    const int m0 = blockIdx.y * Tile::BM, n0 = blockIdx.x * Tile::BN;
    FwdA<T> a{w, g.F, K, 0, false};
    FwdB<T> b{x, g, KHW, cols, x, 0, 0, false};
    T acc[Tile::TM][Tile::TN];
    conv_mainloop<T, Tile>(a, b, m0, n0, 0, K, acc, smem, false, (T*)0);
    const int tx = threadIdx.x % Tile::COL_THREADS, ty = threadIdx.x / Tile::COL_THREADS;
#pragma unroll
    for (int b_ = 0; b_ < Tile::TN; ++b_) {
        const int q = n0 + tx + b_ * Tile::COL_THREADS;
        if (q >= cols) continue;
        const int n = q / P;
        T* __restrict__ yq = y + (long long)n * g.F * P + (q - n * P);
#pragma unroll
        for (int a_ = 0; a_ < Tile::TM; ++a_) {
            const int f = m0 + ty + a_ * Tile::ROW_THREADS;
            if (f >= g.F) continue;
            T v = acc[a_][b_];
            if (has_bias) v += bias[f];
            if (relu && v < T(0)) v = T(0);  // NaN stays NaN, as np.maximum(y, 0)
            yq[(long long)f * P] = v;
        }
    }
}

// -- data-gradient loaders ------------------------------------------------------------------------
template <typename T>
struct DxA {  // A[c, (f, i, j)] = W[f, c, i, j]
    const T* __restrict__ w;
    int C, KHW, off;
    bool ok;
    __device__ __forceinline__ void set_k(int kk, int k_end) {
        ok = kk < k_end;
        const int f = kk / KHW;
        off = f * C * KHW + (kk - f * KHW);
    }
    __device__ __forceinline__ T load(int c) const { return (ok && c < C) ? w[off + c * KHW] : T(0); }
};

template <typename T>
struct DxB {  // B[(f, i, j), (n, h, w)] = dy'[n, f, oh, ow] where the window with offset (i, j) covers (h, w)
    const T* __restrict__ dy;
    const T* __restrict__ relu_y;
    int mask;
    ConvGeom g;
    int KHW, cols;
    long long base;  // this column's sample in dy
    int hp, wp;      // h + PH, w + PW
    bool ok;
    __device__ __forceinline__ void set_col(int q) {
        ok = q < cols;
        const int HW = g.H * g.W;
        const int n = ok ? q / HW : 0;
        const int s = q - n * HW;
        const int h = s / g.W;
        hp = h + g.PH;
        wp = (s - h * g.W) + g.PW;
        base = (long long)n * g.F * g.OH * g.OW;
    }
    __device__ __forceinline__ void set_and_load(int k, int k_end, T& out) const {
        out = T(0);
        if (!ok || k >= k_end) return;
        const int f = k / KHW;
        const int r = k - f * KHW;
        const int i = r / g.KW;
        int oh = hp - i * g.DH;  // = oh * SH for the window that puts offset i on row h
        int ow = wp - (r - i * g.KW) * g.DW;
        if (oh < 0 || ow < 0) return;
        if (g.SH != 1) {
            if (oh % g.SH) return;
            oh /= g.SH;
        }
        if (g.SW != 1) {
            if (ow % g.SW) return;
            ow /= g.SW;
        }
        if (oh >= g.OH || ow >= g.OW) return;
        out = conv_dy(dy, relu_y, mask, base + (f * g.OH + oh) * g.OW + ow);
    }
};

template <typename T, class Tile>
__device__ __forceinline__ void conv_dx_impl(const T* __restrict__ dy, const T* __restrict__ relu_y,
                                             const T* __restrict__ w, T* __restrict__ dx, ConvGeom g, int mask,
                                             T* smem) {
    const int KHW = g.KH * g.KW, R = g.F * KHW, HW = g.H * g.W, cols = g.N * HW;
    const int m0 = blockIdx.y * Tile::BM, n0 = blockIdx.x * Tile::BN;
    DxA<T> a{w, g.C, KHW, 0, false};
    DxB<T> b{dy, relu_y, mask, g, KHW, cols, 0, 0, 0, false};
    T acc[Tile::TM][Tile::TN];
    conv_mainloop<T, Tile>(a, b, m0, n0, 0, R, acc, smem, false, (T*)0);
    const int tx = threadIdx.x % Tile::COL_THREADS, ty = threadIdx.x / Tile::COL_THREADS;
#pragma unroll
    for (int b_ = 0; b_ < Tile::TN; ++b_) {
        const int q = n0 + tx + b_ * Tile::COL_THREADS;
        if (q >= cols) continue;
        const int n = q / HW;
        T* __restrict__ dxq = dx + (long long)n * g.C * HW + (q - n * HW);
#pragma unroll
        for (int a_ = 0; a_ < Tile::TM; ++a_) {
            const int c = m0 + ty + a_ * Tile::ROW_THREADS;
            if (c < g.C) dxq[(long long)c * HW] = acc[a_][b_];
        }
    }
}

// -- weight-gradient loaders ----------------------------------------------------------------------
template <typename T>
struct DwA {  // A[f, q] = dy'[n, f, p], q = n*P + p
    const T* __restrict__ dy;
    const T* __restrict__ relu_y;
    int mask, F, P;
    long long off;
    bool ok;
    __device__ __forceinline__ void set_k(int q, int k_end) {
        ok = q < k_end;
        const int n = ok ? q / P : 0;
        off = (long long)n * F * P + (q - n * P);
    }
    __device__ __forceinline__ T load(int f) const {
        return (ok && f < F) ? conv_dy(dy, relu_y, mask, off + (long long)f * P) : T(0);
    }
};

template <typename T>
struct DwB {  // B[q, k] = X_col[n, k, p]
    const T* __restrict__ x;
    ConvGeom g;
    int KHW, K;
    int coff, ioff, joff;  // c*H*W, i*DH - PH, j*DW - PW of this column's k
    bool ok;
    __device__ __forceinline__ void set_col(int k) {
        ok = k < K;
        const int kk = ok ? k : 0;
        const int c = kk / KHW;
        const int r = kk - c * KHW;
        const int i = r / g.KW;
        coff = c * g.H * g.W;
        ioff = i * g.DH - g.PH;
        joff = (r - i * g.KW) * g.DW - g.PW;
    }
    __device__ __forceinline__ void set_and_load(int q, int k_end, T& out) const {
        out = T(0);
        if (!ok || q >= k_end) return;
        const int P = g.OH * g.OW;
        const int n = q / P;
        const int p = q - n * P;
        const int oh = p / g.OW;
        const int h = oh * g.SH + ioff;
        const int w = (p - oh * g.OW) * g.SW + joff;
        if (h >= 0 && h < g.H && w >= 0 && w < g.W)
            out = x[(long long)n * g.C * g.H * g.W + coff + h * g.W + w];
    }
};

template <typename T, class Tile>
__device__ __forceinline__ void conv_dw_impl(const T* __restrict__ x, const T* __restrict__ dy,
                                             const T* __restrict__ relu_y, T* __restrict__ dw_out,
                                             T* __restrict__ db_out, ConvGeom g, int mask, int chunk, T* smem) {
    const int KHW = g.KH * g.KW, K = g.C * KHW, P = g.OH * g.OW, Q = g.N * P;
    const int m0 = blockIdx.y * Tile::BM, n0 = blockIdx.x * Tile::BN;
    const int z = blockIdx.z;
    const int q_begin = z * chunk;  // chunk is a multiple of BK; the launcher makes every chunk non-empty
    const int q_end = q_begin + chunk < Q ? q_begin + chunk : Q;
    DwA<T> a{dy, relu_y, mask, g.F, P, 0, false};
    DwB<T> b{x, g, KHW, K, 0, 0, 0, false};
    T acc[Tile::TM][Tile::TN];
    const bool rowsum = blockIdx.x == 0;  // the first column tile also reduces db
    T row = T(0);
    conv_mainloop<T, Tile>(a, b, m0, n0, q_begin, q_end, acc, smem, rowsum, &row);
    T* __restrict__ dwz = dw_out + (long long)z * g.F * K;
    const int tx = threadIdx.x % Tile::COL_THREADS, ty = threadIdx.x / Tile::COL_THREADS;
#pragma unroll
    for (int a_ = 0; a_ < Tile::TM; ++a_) {
        const int f = m0 + ty + a_ * Tile::ROW_THREADS;
        if (f >= g.F) continue;
#pragma unroll
        for (int b_ = 0; b_ < Tile::TN; ++b_) {
            const int k = n0 + tx + b_ * Tile::COL_THREADS;
            if (k < K) dwz[f * K + k] = acc[a_][b_];
        }
    }
    if (rowsum && (int)threadIdx.x < Tile::BM && m0 + (int)threadIdx.x < g.F)
        db_out[(long long)z * g.F + m0 + threadIdx.x] = row;
}

// Split-K reduction: dw[e] = sum_z ws[z*FK + e] (e < FK), db[f] = sum_z wsb[z*F + f], z in order.
template <typename T>
__device__ __forceinline__ void conv_splitk_reduce_impl(const T* __restrict__ ws, const T* __restrict__ wsb,
                                                        T* __restrict__ dw, T* __restrict__ db, int FK, int F,
                                                        int splits) {
    const int total = FK + F;  // the launcher checks it fits an int
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += blockDim.x * gridDim.x) {
        T s = T(0);
        if (e < FK) {
            for (int z = 0; z < splits; ++z) s += ws[(long long)z * FK + e];
            dw[e] = s;
        } else {
            const int f = e - FK;
            for (int z = 0; z < splits; ++z) s += wsb[(long long)z * F + f];
            db[f] = s;
        }
    }
}

// -- entry points ---------------------------------------------------------------------------------
// One per (kernel, tile, dtype). The parameter lists are spelled out (the emulator and the NVRTC gate
// read them from the source text); the geometry is passed as ints N C H W F KH KW SH SW PH PW DH DW OH OW.
#define CONV_GEOM ConvGeom{N, C, H, W, F, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_L_f32(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
    int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH,
    int OW, int has_bias, int relu) {
    conv_fwd_impl<float, TileL>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<float, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_S_f32(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
    int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH,
    int OW, int has_bias, int relu) {
    conv_fwd_impl<float, TileS>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<float, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_T_f32(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
    int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int OH,
    int OW, int has_bias, int relu) {
    conv_fwd_impl<float, TileT>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<float, TileT>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_L_f64(
    const double* __restrict__ x, const double* __restrict__ w, const double* __restrict__ bias,
    double* __restrict__ y, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int has_bias, int relu) {
    conv_fwd_impl<double, TileL>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<double, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_S_f64(
    const double* __restrict__ x, const double* __restrict__ w, const double* __restrict__ bias,
    double* __restrict__ y, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int has_bias, int relu) {
    conv_fwd_impl<double, TileS>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<double, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_fwd_T_f64(
    const double* __restrict__ x, const double* __restrict__ w, const double* __restrict__ bias,
    double* __restrict__ y, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int has_bias, int relu) {
    conv_fwd_impl<double, TileT>(x, w, bias, y, CONV_GEOM, has_bias, relu, conv_smem<double, TileT>());
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_L_f32(
    const float* __restrict__ dy, const float* __restrict__ relu_y, const float* __restrict__ w,
    float* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<float, TileL>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<float, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_S_f32(
    const float* __restrict__ dy, const float* __restrict__ relu_y, const float* __restrict__ w,
    float* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<float, TileS>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<float, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_T_f32(
    const float* __restrict__ dy, const float* __restrict__ relu_y, const float* __restrict__ w,
    float* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<float, TileT>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<float, TileT>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_L_f64(
    const double* __restrict__ dy, const double* __restrict__ relu_y, const double* __restrict__ w,
    double* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<double, TileL>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<double, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_S_f64(
    const double* __restrict__ dy, const double* __restrict__ relu_y, const double* __restrict__ w,
    double* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<double, TileS>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<double, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dx_T_f64(
    const double* __restrict__ dy, const double* __restrict__ relu_y, const double* __restrict__ w,
    double* __restrict__ dx, int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
    int DH, int DW, int OH, int OW, int mask) {
    conv_dx_impl<double, TileT>(dy, relu_y, w, dx, CONV_GEOM, mask, conv_smem<double, TileT>());
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_L_f32(
    const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ relu_y,
    float* __restrict__ dw, float* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<float, TileL>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<float, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_S_f32(
    const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ relu_y,
    float* __restrict__ dw, float* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<float, TileS>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<float, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_T_f32(
    const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ relu_y,
    float* __restrict__ dw, float* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<float, TileT>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<float, TileT>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_L_f64(
    const double* __restrict__ x, const double* __restrict__ dy, const double* __restrict__ relu_y,
    double* __restrict__ dw, double* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<double, TileL>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<double, TileL>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_S_f64(
    const double* __restrict__ x, const double* __restrict__ dy, const double* __restrict__ relu_y,
    double* __restrict__ dw, double* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<double, TileS>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<double, TileS>());
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_dw_T_f64(
    const double* __restrict__ x, const double* __restrict__ dy, const double* __restrict__ relu_y,
    double* __restrict__ dw, double* __restrict__ db, int N, int C, int H, int W, int F, int KH, int KW, int SH,
    int SW, int PH, int PW, int DH, int DW, int OH, int OW, int mask, int chunk) {
    conv_dw_impl<double, TileT>(x, dy, relu_y, dw, db, CONV_GEOM, mask, chunk, conv_smem<double, TileT>());
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_splitk_reduce_f32(
    const float* __restrict__ ws, const float* __restrict__ wsb, float* __restrict__ dw, float* __restrict__ db,
    int FK, int F, int splits) {
    conv_splitk_reduce_impl<float>(ws, wsb, dw, db, FK, F, splits);
}
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 2) conv_splitk_reduce_f64(
    const double* __restrict__ ws, const double* __restrict__ wsb, double* __restrict__ dw,
    double* __restrict__ db, int FK, int F, int splits) {
    conv_splitk_reduce_impl<double>(ws, wsb, dw, db, FK, F, splits);
}
