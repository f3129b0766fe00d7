// fwd_mask.cuh - which KV blocks a query tile visits, which of them need an
// element mask, and the mask itself (bottom-right aligned causal / sliding
// window and the seqlen_k edge; see Mask in attn_common.cuh).
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

struct FwdBlocks {
    int n_lo, n_hi; // KV blocks [n_lo, n_hi], visited from n_hi down
    bool empty;     // no key visible to any row: out 0, lse -inf
};

// Query rows m0 .. m0 + rows - 1 (a packed GQA tile: its tokens, fwd_sched.cuh).
template <int BN>
__device__ __forceinline__ FwdBlocks fwd_blocks_rows(const Mask &mk, int m0, int rows, int sq, int sk) {
    FwdBlocks fb;
    const int m_last = min(m0 + rows, sq) - 1;
    const int64_t j_hi = mk.hi(m_last), j_lo = mk.lo(m0);
    fb.empty = sk == 0 || m0 >= sq || j_hi < j_lo;
    fb.n_lo = fb.empty ? 0 : (int)(j_lo / BN);
    fb.n_hi = fb.empty ? -1 : (int)(j_hi / BN);
    return fb;
}
template <int BM, int BN>
__device__ __forceinline__ FwdBlocks fwd_blocks(const Mask &mk, int m0, int sq, int sk) {
    return fwd_blocks_rows<BN>(mk, m0, BM, sq, sk);
}

// Which KV blocks need the element mask for some row of a tile (rows m0 ..
// m0 + BM - 1): block n (keys n0 = n BN .. n0 + BN - 1) does iff it reaches
// past sk (n0 + BN > sk), past what the tile's first row sees (window right
// or causal: n0 + BN - 1 > hi(m0)), or below what its last row sees (window
// left: n0 < lo(m0 + BM - 1)).  Each condition is monotone in n, so the test
// is reduced once per tile to two block numbers: masked iff n >= from or
// n < below.
struct FwdMaskBlocks {
    int from, below;
    __device__ __forceinline__ bool masked(int n) const { return n >= from || n < below; }
};
// (rows: the tile's query rows, or its tokens when packed)
template <int BN>
__device__ __forceinline__ FwdMaskBlocks fwd_mask_blocks_rows(const Mask &mk, int wl, int wr, int m0, int rows) {
    FwdMaskBlocks b;
    b.from = mk.sk / BN; // (n + 1) BN > sk
    if (wr >= 0) {       // (n + 1) BN - 1 > hi(m0)
        const int64_t h1 = mk.hi(m0) + 1;
        const int f = h1 <= 0 ? 0 : (int)(h1 / BN);
        b.from = min(b.from, f);
    }
    b.below = 0;
    if (wl >= 0) // n BN < lo(m0 + rows - 1)
        b.below = (int)((mk.lo(m0 + rows - 1) + BN - 1) / BN);
    return b;
}
template <int BM, int BN>
__device__ __forceinline__ FwdMaskBlocks fwd_mask_blocks(const Mask &mk, int wl, int wr, int m0) {
    return fwd_mask_blocks_rows<BN>(mk, wl, wr, m0, BM);
}

// Set the invisible scores of a thread's m64nBN accumulator fragment to
// -inf.  The thread holds rows i0 and i0 + 8, which see keys lo[r] ..
// hi[r]; register 4c + 2r + e is row i0 + 8r, column n0 + 8c + 2q + e
// (q = lane % 4).
template <int BN>
__device__ __forceinline__ void fwd_apply_mask(float *s, const int *row_lo, const int *row_hi, int n0, int q) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int lo = row_lo[r], hi = row_hi[r];
#pragma unroll
        for (int c = 0; c < BN / 8; ++c)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = n0 + 8 * c + 2 * q + e;
                if (j < lo || j > hi)
                    s[4 * c + 2 * r + e] = -INFINITY;
            }
    }
}

} // namespace fa4cp
