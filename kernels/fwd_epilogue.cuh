// fwd_epilogue.cuh - the forward's output: O rows normalised by 1/l, LSE
// [h, total_q] (natural log) by the first lane of each quad; only rows below
// seqlen_q (seqused_q) are written, so padding rows and the next sequence
// keep the caller's values.
//
// Two ways for O:
// - through shared memory and TMA (the default where the family has a
//   staging area, FwdCfg::O_KIND): each consumer warp writes its 16 rows
//   (stmatrix, the out map's swizzled box layout) into its own staging area,
//   fence.proxy.async, and its lane 0 issues one TMA store per panel through
//   the ragged out map (sm90::tmap_ragged_thd: rows at or past seqused_q are
//   out of bounds there, so TMA drops them; columns past DV too) and commits
//   the bulk group.  Nothing waits for the store: the next tile's mainloop
//   runs under it, and the warp waits for the group's read (fwd_o_free)
//   only before it writes that area again.  Per warp, so that no barrier
//   beyond __syncwarp is needed.
// - direct 4-byte stores from registers (fwd_store_rows: the families with
//   no room, and FA4CP_CUDA_TUNING bit 1073741824 for A/B timing).
#pragma once

#include "attn_common.cuh"
#include "sm90_prim.cuh"

namespace fa4cp {

// O * (1/l) of the thread's two rows as packed pairs: packed[2c + r] holds
// columns 8c + 2q, + 1 of row r (the m64nN fragment's order), c < N/8.
// Converted on every thread, outside any row-dependent branch: the
// accumulator registers read on a divergent path make ptxas serialise every
// wgmma of the kernel (C7520).
template <typename T, int N>
__device__ __forceinline__ void fwd_pack_o(const float *o, const float *inv, uint32_t *packed) {
#pragma unroll
    for (int c = 0; c < N / 8; ++c)
#pragma unroll
        for (int r = 0; r < 2; ++r)
            packed[2 * c + r] = pack2<T>(o[4 * c + 2 * r] * inv[r], o[4 * c + 2 * r + 1] * inv[r]);
#pragma unroll
    for (int i = 0; i < N / 4; ++i) // keep the conversion here, not sunk into the branches
        asm volatile("" : "+r"(packed[i])::"memory");
}

// Wait until this thread's TMA stores have read their shared memory (lane 0
// issued them; on the other lanes a no-op), then let the warp's lanes on:
// the warp may write its O staging area again.  Every lane runs it (no
// divergent branch).
__device__ __forceinline__ void fwd_o_free() {
    sm90::tma_store_wait_read<0>();
    __syncwarp();
}

// The warp's 16 rows of O (packed by fwd_pack_o over DVP columns) into its
// staging area: panel pn at panel(pn), [16 rows][PW columns] with the
// swizzle of the out map's box (PW 64: 128-byte rows, 16-byte chunk ch of
// row x at ch ^ (x % 8); PW 32: 64-byte rows, ch ^ (x / 2 % 4)).  stmatrix
// x4 per 16 columns: matrices rows 0-7 / 8-15 x columns 16t / 16t + 8, whose
// registers are packed[4t .. 4t + 3]; lane l gives row l % 8 of matrix l / 8.
// Then the fence that makes the writes visible to TMA (the async proxy).
template <int DVP, int PW, class Panel>
__device__ __forceinline__ void fwd_stage_o(const uint32_t *packed, Panel panel, int lane) {
    constexpr int RB = PW * 2, TP = PW / 16; // bytes per row, 16-column steps per panel
    static_assert(PW == 64 || PW == 32, "64- or 32-column panels");
    const int j = lane >> 3, r = (j & 1) * 8 + (lane & 7), jc = j >> 1;
    const int sw = RB == 128 ? (r & 7) : ((r >> 1) & 3);
#pragma unroll
    for (int t = 0; t < DVP / 16; ++t) {
        const uint32_t addr = panel(t / TP) + r * RB + (uint32_t)(((2 * (t % TP) + jc) ^ sw) << 4);
        asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                     "r"(packed[4 * t]), "r"(packed[4 * t + 1]), "r"(packed[4 * t + 2]), "r"(packed[4 * t + 3])
                     : "memory");
    }
    sm90::fence_proxy_async_smem();
}

// After fwd_stage_o: lane 0 stores the warp's rows (sequence rows row0 ..
// row0 + 15 of the sequence at q_off with sq rows, head h) through the
// ragged out map tm (boxes of 16 rows x PW columns), one bulk group.
template <int DVP, int PW, class Panel>
__device__ __forceinline__ void fwd_store_o_tma(const CUtensorMap *tm, Panel panel, int lane, int h, int row0,
                                                int q_off, int sq, int R) {
    __syncwarp(); // every lane's stmatrix and fence before the store
    if (lane == 0 && row0 < sq) {
#pragma unroll
        for (int pn = 0; pn < DVP / PW; ++pn)
            sm90::tma_store_4d(tm, panel(pn), pn * PW, h, R - sq + row0, q_off + sq);
        sm90::tma_store_commit();
    }
}

// LSE of the thread's two rows (i0, i0 + 8) below sq, from the quad's first lane.
__device__ __forceinline__ void fwd_store_lse(const float *lse, float *lse_row0, int i0, int sq, int q) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
        if (q == 0 && i0 + 8 * r < sq)
            lse_row0[i0 + 8 * r] = lse[r];
}

// The thread's two rows (i0, i0 + 8) below sq: D/8 packed pairs each (row r
// in packed[2c + r]; packed NULL: zeros) and, from the quad's first lane, lse.
template <typename T, int D>
__device__ __forceinline__ void fwd_write_rows(const uint32_t *packed, const float *lse, T *out_row0, int64_t stride,
                                               float *lse_row0, int i0, int sq, int q) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int i = i0 + 8 * r;
        if (i >= sq)
            continue;
        T *dst = out_row0 + (int64_t)i * stride + 2 * q;
#pragma unroll
        for (int c = 0; c < D / 8; ++c)
            *reinterpret_cast<uint32_t *>(dst + 8 * c) = packed ? packed[2 * c + r] : 0u;
        if (q == 0)
            lse_row0[i] = lse[r];
    }
}

// o: m64nD fragment of this thread (rows i0 and i0 + 8 of the sequence);
// out_row0 points at (sequence start, head h) of out; row stride `stride`.
template <typename T, int D>
__device__ __forceinline__ void fwd_store_rows(const float *o, const float *inv, const float *lse, T *out_row0,
                                               int64_t stride, float *lse_row0, int i0, int sq, int q) {
    uint32_t packed[D / 4];
    fwd_pack_o<T, D>(o, inv, packed); // first, on every thread (C7520)
    fwd_write_rows<T, D>(packed, lse, out_row0, stride, lse_row0, i0, sq, q);
}

// A packed GQA tile's rows (fwd_sched.cuh: each row its own token and query
// head): the thread's rows r = 0, 1 where ok[r], O at out + orow[r] (D/8
// packed pairs, as fwd_write_rows; packed NULL: zeros) and, from the quad's
// first lane, lse at lse_base[lrow[r]].  Direct stores: a warp's 16 rows are
// one box of the out map only when G divides 16.
template <typename T, int D>
__device__ __forceinline__ void fwd_write_rows_at(const uint32_t *packed, const float *lse, T *out, float *lse_base,
                                                  const int64_t *orow, const int64_t *lrow, const bool *ok, int q) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (!ok[r])
            continue;
        T *dst = out + orow[r] + 2 * q;
#pragma unroll
        for (int c = 0; c < D / 8; ++c)
            *reinterpret_cast<uint32_t *>(dst + 8 * c) = packed ? packed[2 * c + r] : 0u;
        if (q == 0)
            lse_base[lrow[r]] = lse[r];
    }
}

// A tile no key is visible to: out 0, lse -inf for the thread's rows.
template <typename T, int D>
__device__ __forceinline__ void fwd_store_empty(T *out_row0, int64_t stride, float *lse_row0, int i0, int sq,
                                                int q) {
    const float none[2] = {-INFINITY, -INFINITY};
    fwd_write_rows<T, D>(nullptr, none, out_row0, stride, lse_row0, i0, sq, q);
}

} // namespace fa4cp
