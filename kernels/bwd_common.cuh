// bwd_common.cuh - helpers of the backward kernels (attn_bwd_kernel.cuh,
// bwd_ws_kernel.cuh): bulk reductions, semaphores of the deterministic dQ
// order, the dq_accum column map, the tile shapes (BwdShape).
#pragma once

#include "attn_common.cuh"
#include "attn_sched.cuh"
#include "wgmma_ops.cuh"
#include "wgmma.cuh"

namespace fa4cp {

// dst[0 .. bytes/4) += src[...] (fp32), by the bulk copy engine; bytes % 16 == 0.
__device__ __forceinline__ void bulk_reduce_add_f32(float *dst, const float *src, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                 "cp.async.bulk.commit_group;\n" ::"l"(dst),
                 "r"(smem_u32(src)), "r"(bytes)
                 : "memory");
}
template <int N> __device__ __forceinline__ void bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
// Shared-memory matrix descriptor of a swizzled layout with RB-byte panel
// rows: RB 128 (64-column panels, 128-byte swizzle, layout type 1; the same
// as gmma_desc) or 64 (32-column panels, 64-byte swizzle, type 2).  K-major:
// sbo = 8 rows; MN-major: lbo = panel stride, sbo = 8 rows.
template <int RB> __device__ __forceinline__ uint64_t gmma_desc_rb(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    static_assert(RB == 128 || RB == 64, "128- or 64-byte swizzle");
    uint64_t d = 0;
    d |= (uint64_t)((saddr & 0x3FFFF) >> 4);
    d |= (uint64_t)((lbo >> 4) & 0x3FFF) << 16;
    d |= (uint64_t)((sbo >> 4) & 0x3FFF) << 32;
    d |= (uint64_t)(RB == 128 ? 1 : 2) << 62;
    return d;
}

// acc[64 x N] = A B over K: A and B K-major in panels of RB-byte rows (64
// columns, 128-byte swizzle; or 32 columns, 64-byte swizzle) whose panels lie
// A_PANEL and B_PANEL bytes apart (k step kk starts (kk % (RB / 32)) * 32
// bytes into the rows of panel kk / (RB / 32)).
template <typename T, int N, int K, int A_PANEL, int B_PANEL, int RB = 128>
__device__ __forceinline__ void gemm_ss_kmajor(float *acc, uint32_t a, uint32_t b) {
    constexpr int KP = RB / 32; // k steps per panel
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
        const uint32_t koff = (kk % KP) * 32;
        wg_ss<T, N>(acc, gmma_desc_rb<RB>(a + (kk / KP) * A_PANEL + koff, 16, 8 * RB),
                    gmma_desc_rb<RB>(b + (kk / KP) * B_PANEL + koff, 16, 8 * RB), kk > 0);
    }
}

// 2^x, flushing denormal results to 0 (exp2f adds a range fix-up around MUFU.EX2).
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// Column of element `col` of a dq_accum row of D floats whose index in its
// sequence is congruent to r8 modulo 8: its 16-byte chunk XOR a function of
// r8 that stays inside the row (groups of 16 chunks when D % 64 == 0, of 8
// when D % 32 == 0, else of 4), so that the dQ tile staged in shared memory
// for the bulk reduction is written without bank conflicts.
template <int D> __device__ __forceinline__ int dqa_col(int r8, int col) {
    const int f = D % 64 == 0 ? (r8 << 1) : D % 32 == 0 ? r8 : (r8 & 3);
    return (((col >> 2) ^ f) << 2) | (col & 3);
}

// dst[0..1] += (a, b) in global memory, without returning the old values
// (atomicAdd(float2*) compiles to atom with a result the warp then waits on).
__device__ __forceinline__ void red_add_f32x2(float *dst, float a, float b) {
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(a), "f"(b) : "memory");
}

// Deterministic dQ order: wait until *sem == v (acquire).
__device__ __forceinline__ void sem_wait_eq(const int *sem, int v) {
    int cur;
    for (;;) {
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(cur) : "l"(sem) : "memory");
        if (cur == v)
            break;
        __nanosleep(64);
    }
}
// *sem, without ordering: a prefetch, issued half an iteration before the
// bulk reduction it lets go.  Enough for that: the adder before has waited for
// its reduction to complete before its release, so a reduction issued after
// the count is seen lands after it (sem_wait_eq runs when the count is short).
__device__ __forceinline__ int sem_load_relaxed(const int *sem) {
    int v;
    asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(sem) : "memory");
    return v;
}
__device__ __forceinline__ void fence_proxy_async_global() {
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
// *sem += 1 (release), after the bulk reductions waited for have completed.
__device__ __forceinline__ void sem_release_add(int *sem) {
    asm volatile("fence.proxy.async.global;\n"
                 "red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(sem)
                 : "memory");
}

// Load ROWS x COLS (COLS % 8 == 0) of a THD tensor, rows [r0, r0+ROWS), into
// a panelled tile (wgmma.cuh); rows at or past nvalid are zero-filled,
// columns past COLS are left alone (the padding, zeroed once).
template <typename T, int ROWS, int COLS, int NT>
__device__ __forceinline__ void load_rows_pn(T *smem, const T *gbase, int64_t stride, int r0, int nvalid,
                                             int tid) {
    constexpr int CPR = COLS / 8;
    constexpr int TOTAL = ROWS * CPR;
#pragma unroll
    for (int it = 0; it < (TOTAL + NT - 1) / NT; ++it) {
        const int idx = it * NT + tid;
        if (TOTAL % NT == 0 || idx < TOTAL) {
            const int row = idx / CPR;
            const int c = idx % CPR;
            const int grow = r0 + row;
            const bool ok = grow < nvalid;
            const T *src = gbase + (ok ? (int64_t)grow * stride + c * 8 : 0);
            cp_async16(smem_u32(smem + pnl<ROWS>(row, c * 8)), src, ok ? 16 : 0);
        }
    }
}

constexpr int round64(int x) { return (x + 63) / 64 * 64; }
constexpr int imax(int a, int b) { return a > b ? a : b; }

// Tile shape of a (head_dim, head_dim_v) pair (see the top of the file).
template <int DQK_, int DV_> struct BwdShape {
    static constexpr int DQK = DQK_, DV = DV_;
    static constexpr bool ROLES = DQK > 128 || DV > 128;
    static constexpr int WBM = 64;                // query rows per block
    static constexpr int WBN = ROLES ? 64 : 128;  // KV rows per CTA
    // panel width (columns) of K, V, Q, dO in shared memory: 64 (128-byte
    // rows and swizzle), or, in the rows layout for head dims that are not a
    // multiple of 64 (32, 80, 96), 32 (64-byte rows and swizzle, as the
    // forward's), so that d 96 runs N = 96 and K = 96 instead of 128
    static constexpr int PW = ROLES || (DQK % 64 == 0 && DV % 64 == 0) ? 64 : 32;
    // widths in shared memory (K, Q, dK, dQ: PK; V, dO, dV: PV), multiples of PW
    static constexpr int PK = ROLES ? round64(imax(DQK, DV)) : (DQK + PW - 1) / PW * PW;
    static constexpr int PV = ROLES ? PK : (DV + PW - 1) / PW * PW;
    static constexpr bool PADDED = PK != DQK || PV != DV;
    // Q/dO buffers; d 256 has room for one (K, V, Q, dO 32 KB each + dQ 64 KB)
    static constexpr int STAGES = PK >= 256 ? 1 : 2;
    static constexpr int DQ_BUFS = ROLES ? 1 : 2; // fp32 dQ staging tiles
    static constexpr int TQ = WBM * PK, TDO = WBM * PV, TK = WBN * PK, TV = WBN * PV;
    static constexpr int SP_FLOATS = ROLES ? WBN * WBM : 0; // P^T handed to warpgroup 1
    template <typename T> static constexpr int smem() {
        // sK, sV, sQ[S], sdO[S], sdST, (sP), sdQ[B] (fp32), lse2[2], dsum[2]
        return (TK + TV + STAGES * (TQ + TDO) + WBN * WBM) * (int)sizeof(T) +
               (SP_FLOATS + DQ_BUFS * WBM * DQK + 4 * WBM) * (int)sizeof(float) + 1024;
    }
    // dQ = dS K per warpgroup, 64 columns at a time: rows layout, panel wg
    // (if any); roles layout, panels wg, wg + 2, ... (wider chunks spill at d 256)
    static constexpr int DQ_N = 64;
    static constexpr int DQ_ROUNDS = ROLES ? (PK / DQ_N + 1) / 2 : 1;
};

template <int WBM, int WBN>
__device__ __forceinline__ bool block_needs_mask_wg(const Mask &mk, const fa4cp_kparams &p, int64_t m0,
                                                    int64_t n0) {
    return (n0 + WBN > mk.sk) || (p.window_right >= 0 && n0 + WBN - 1 > mk.hi(m0)) ||
           (p.window_left >= 0 && n0 < mk.lo(m0 + WBM - 1));
}

} // namespace fa4cp
