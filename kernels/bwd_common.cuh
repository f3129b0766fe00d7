// bwd_common.cuh - helpers of the backward kernels (attn_bwd_kernel.cuh,
// bwd_ws_kernel.cuh): semaphores of the deterministic dQ order, the
// dq_accum column map, the tile shapes (BwdShape).
#pragma once

#include "attn_common.cuh"
#include "attn_sched.cuh"
#include "wgmma_ops.cuh"
#include "wgmma.cuh"

namespace fa4cp {

// A shared-memory matrix descriptor (gmma_desc_rb's) kept as two 32-bit
// words, as the forward's fwd_desc_lo / fwd_desc: the low word (start address
// >> 4, leading-byte offset >> 4) made once per operand, and a high word
// (stride-byte offset >> 4, layout type) that is a constant of the layout.
// at(off) is the descriptor of the start address + off by one 32-bit add of
// off >> 4 (shared addresses stay under 2^18, so the 14-bit address field
// never carries into the LBO field): the k steps of a product add an
// immediate instead of rebuilding the descriptor from the address in front
// of each HGMMA.  Used by the wide layout (d_qk 192, 256: +4 % on one H200,
// 2026-11-29 12:31) and the d80/d96 loop (bwd_ws_mma_rows96: 1-6 % with V in
// registers, 12:40); the rows layout measured 3-10 % slower with it at d128
// (ptxas schedules its loop differently) and keeps gmma_desc_rb.
template <int RB> struct GDesc {
    static_assert(RB == 128 || RB == 64, "128- or 64-byte swizzle");
    uint32_t lo, hi;
    __device__ __forceinline__ GDesc(uint32_t saddr, uint32_t lbo, uint32_t sbo)
        : lo(((saddr & 0x3FFFF) >> 4) | (((lbo >> 4) & 0x3FFF) << 16)),
          hi(((sbo >> 4) & 0x3FFF) | ((RB == 128 ? 1u : 2u) << 30)) {}
    __device__ __forceinline__ uint64_t at(uint32_t off) const {
        return ((uint64_t)hi << 32) | (uint64_t)(lo + (off >> 4));
    }
};

// acc[64 x N] = A B over K: A and B K-major in panels of RB-byte rows (64
// columns, 128-byte swizzle; or 32 columns, 64-byte swizzle) whose panels lie
// A_PANEL and B_PANEL bytes apart (k step kk starts (kk % (RB / 32)) * 32
// bytes into the rows of panel kk / (RB / 32)).  GD: the descriptors through
// GDesc (the wide layout and the rows loops), else rebuilt per k step
// (rows128pp).
template <typename T, int N, int K, int A_PANEL, int B_PANEL, int RB = 128, bool GD = false>
__device__ __forceinline__ void gemm_ss_kmajor(float *acc, uint32_t a, uint32_t b) {
    constexpr int KP = RB / 32; // k steps per panel
    if constexpr (GD) {
        const GDesc<RB> da(a, 16, 8 * RB), db(b, 16, 8 * RB);
#pragma unroll
        for (int kk = 0; kk < K / 16; ++kk) {
            const uint32_t koff = (kk % KP) * 32;
            wg_ss<T, N>(acc, da.at((kk / KP) * A_PANEL + koff), db.at((kk / KP) * B_PANEL + koff), kk > 0);
        }
    } else {
#pragma unroll
        for (int kk = 0; kk < K / 16; ++kk) {
            const uint32_t koff = (kk % KP) * 32;
            wg_ss<T, N>(acc, gmma_desc_rb<RB>(a + (kk / KP) * A_PANEL + koff, 16, 8 * RB),
                        gmma_desc_rb<RB>(b + (kk / KP) * B_PANEL + koff, 16, 8 * RB), kk > 0);
        }
    }
}

// 2^x, flushing denormal results to 0 (exp2f adds a range fix-up around MUFU.EX2).
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// 2^x without the MUFU: x rounded to j by the 1.5 * 2^23 shifter (FADDs),
// 2^(x - j) on [-1/2, 1/2] by Horner's degree-5 Taylor polynomial (relative
// error < 3e-6, far under bf16's 2^-9), j added to the exponent field.  x
// is clamped at -125 (the result stays a normal float, ~2^-125 where
// ex2_ftz gives 0); x = +inf or NaN gives NaN (the callers mask those
// elements to 0, as they do ex2_ftz's inf).  About 10 FMA/ALU instructions
// against one MUFU.EX2 at an eighth of their rate: a share of a tile's
// exponentials moved off the MUFU (PX, bwd_ws_kernel).
__device__ __forceinline__ float ex2_poly(float x) {
    const float xc = fmaxf(x, -125.f);
    const float sh = xc + 12582912.f; // j in the low mantissa bits
    const float f = xc - (sh - 12582912.f);
    float p = fmaf(f, 1.3333558e-3f, 9.6181291e-3f);
    p = fmaf(p, f, 5.5504109e-2f);
    p = fmaf(p, f, 2.4022651e-1f);
    p = fmaf(p, f, 6.9314718e-1f);
    p = fmaf(p, f, 1.f);
    return __int_as_float(__float_as_int(p) + (__float_as_int(sh) << 23));
}

// Column of element `col` of a dq_accum row of D floats whose index in its
// sequence is congruent to r8 modulo 8: its 16-byte chunk XOR a function of
// r8 that stays inside the row (groups of 16 chunks when D % 64 == 0, of 8
// when D % 32 == 0, else of 4), so that the dQ tile staged in shared memory
// for the bulk reduction is written without bank conflicts.
// D % 64 == 0: f = 8a + 4b + 2(c ^ a) for r8 = 4a + 2b + c, whose bits 1-2
// (the bank group of a chunk) differ over rows {0..3}, {4..7} (the float2
// stores of a warp's 8 rows, 2 columns each: two half-warps) and over rows
// {0, 2, 4, 6}, {1, 3, 5, 7} (the 80-row tile's dQ^T fragments, one float
// per lane: lanes 4 apart are rows 2 apart); f = 2 r8 conflicted 2-way there
// (ncu, d128 S16k dense: 269 M conflicts on 269 M shared stores).
// D 96 (rows of 24 chunks, groups of 8): f = 2 (r8 & 3) + (r8 >> 2), whose
// bits 1-2 differ over rows {0..3} and {4..7} (the float2 stores of a
// half-warp: 16 banks for 32 words with f = r8, 2-way conflicted).
template <int D> __device__ __forceinline__ int dqa_col(int r8, int col) {
    const int f = D % 64 == 0 ? (((r8 & 6) << 1) | (((r8 ^ (r8 >> 2)) & 1) << 1))
                  : D == 96     ? (((r8 & 3) << 1) | (r8 >> 2))
                  : D % 32 == 0 ? r8
                                : (r8 & 3);
    return (((col >> 2) ^ f) << 2) | (col & 3);
}

// The 80-row tile's dq_accum rows under DP (bwd_ws_kernel, d 128): element
// d = 16b + 8h + g (g < 8) at position 16b + 2g + h of the row, so that a
// lane's dQ^T fragments (d, d + 8) of one query row are one float2, then
// dqa_col's chunk swizzle.  The chunks keep bit 0 under that swizzle, so the
// float2 stores of a half-warp (rows 2t + e, t < 4, four lanes of 8 bytes
// a row in two chunks) fill 32 banks once, as dqa_col's one-float stores
// did.  bwd_finish_kernel reads the rows back in this order (pairs).
template <int D> __device__ __forceinline__ int dqa_pair_col(int r8, int d) {
    static_assert(D % 16 == 0, "pairs (d, d + 8) inside 16-column groups");
    return dqa_col<D>(r8, (d & ~15) | ((d & 7) << 1) | ((d >> 3) & 1));
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
__device__ __forceinline__ void fence_proxy_async_global() {
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
// *sem += 1 (release), after the bulk reductions waited for have completed.
__device__ __forceinline__ void sem_release_add(int *sem) {
    asm volatile("fence.proxy.async.global;\n"
                 "red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(sem)
                 : "memory");
}

// Tile shape of a (head_dim, head_dim_v) pair, in one of the two layouts of
// bwd_ws_kernel: rows (head dims <= 128: 128-row KV blocks, 2 MMA
// warpgroups, warpgroup w owns KV rows 64w..), wide (d_qk 192 with d_v 192
// or 128, d 256: 96-row KV blocks and 3 MMA warpgroups at 192, 64 and 2 at
// 256; the warpgroups own head-dim panels of dK^T and dV^T).
template <int DQK_, int DV_> struct BwdShape {
    static constexpr int DQK = DQK_, DV = DV_;
    static constexpr bool WIDE = (DQK == 192 && (DV == 192 || DV == 128)) || (DQK == 256 && DV == 256);
    static_assert(WIDE || (DQK <= 128 && DV <= 128), "no backward tiles for this (head_dim, head_dim_v)");
    static constexpr int WBM = 64;                                // query rows per block
    static constexpr int WBN = WIDE ? (DQK == 192 ? 96 : 64) : 128; // KV rows per CTA
    // panel width (columns) of K, V, Q, dO in shared memory: 64 (128-byte
    // rows and swizzle), or, in the rows layout for head dims that are not a
    // multiple of 64 (32, 80, 96), 32 (64-byte rows and swizzle, as the
    // forward's), so that d 96 runs N = 96 and K = 96 instead of 128
    static constexpr int PW = DQK % 64 == 0 && DV % 64 == 0 ? 64 : 32;
    // widths in shared memory (K, Q, dK, dQ: PK; V, dO, dV: PV), multiples of PW
    static constexpr int PK = (DQK + PW - 1) / PW * PW, PV = (DV + PW - 1) / PW * PW;
};

template <int WBM, int WBN>
__device__ __forceinline__ bool block_needs_mask_wg(const Mask &mk, const fa4cp_kparams &p, int64_t m0,
                                                    int64_t n0) {
    return (n0 + WBN > mk.sk) || (p.window_right >= 0 && n0 + WBN - 1 > mk.hi(m0)) ||
           (p.window_left >= 0 && n0 < mk.lo(m0 + WBM - 1));
}

} // namespace fa4cp
