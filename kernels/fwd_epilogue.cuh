// fwd_epilogue.cuh - the forward's output: O rows normalised by 1/l and
// stored from the accumulator fragment, LSE [h, total_q] (natural log) by the
// first lane of each quad; only rows below seqlen_q (seqused_q) are written,
// so padding rows and the next sequence keep the caller's values.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

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
    // convert first, on every thread: the accumulator registers are then
    // read outside the row-dependent branches (a wgmma operand read on a
    // divergent path makes ptxas serialise every wgmma of the kernel, C7520)
    uint32_t packed[D / 4];
#pragma unroll
    for (int c = 0; c < D / 8; ++c)
#pragma unroll
        for (int r = 0; r < 2; ++r)
            packed[2 * c + r] = pack2<T>(o[4 * c + 2 * r] * inv[r], o[4 * c + 2 * r + 1] * inv[r]);
#pragma unroll
    for (int i = 0; i < D / 4; ++i) // keep the conversion here, not sunk into the branches
        asm volatile("" : "+r"(packed[i])::"memory");
    fwd_write_rows<T, D>(packed, lse, out_row0, stride, lse_row0, i0, sq, q);
}

// A tile no key is visible to: out 0, lse -inf for the thread's rows.
template <typename T, int D>
__device__ __forceinline__ void fwd_store_empty(T *out_row0, int64_t stride, float *lse_row0, int i0, int sq,
                                                int q) {
    const float none[2] = {-INFINITY, -INFINITY};
    fwd_write_rows<T, D>(nullptr, none, out_row0, stride, lse_row0, i0, sq, q);
}

} // namespace fa4cp
