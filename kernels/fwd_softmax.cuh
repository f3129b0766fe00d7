// fwd_softmax.cuh - the forward's online softmax on a thread's m64nBN score
// fragment (2 rows per thread, a row spread over the 4 lanes of a quad).
//
// Scores stay raw; p = exp2(s * sl2 - m * sl2) with sl2 = scale * log2(e),
// one FFMA and one ex2 per element.  The row sum stays per thread until
// finalize.  A row with no visible key so far has m = -inf and uses 0 as its
// base, so its p are 0 and its rescale factor is 0.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

template <int BN> struct FwdSoftmax {
    float m[2], l[2];

    __device__ __forceinline__ void init() {
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.f;
    }

    // s (BN/2 registers) -> p in place; alpha[r]: factor for the O rows.
    // The row max and the row sum run as 4 independent chains each (a
    // single chain of BN/4 dependent FMNMX / FADD is latency-bound with only
    // two consumer warps per scheduler).
    //
    // Conditional rescale (FA4's): while no row of the warp has a new max
    // more than thr (log2 units, of the scaled scores) above its running
    // max, the running maxima stay, alpha is 1 and the function returns
    // false: the caller skips the O rescale.  p then reaches at most 2^thr
    // (256 for thr 8: exact enough in bf16/fp16, no overflow), l grows with
    // it, and out = O / l and lse = m + log2(l) stay exact.  The decision is
    // warp-uniform (__any_sync), so the skip is a uniform branch.  thr < 0:
    // always take the new max (the plain online softmax).
    __device__ __forceinline__ bool step(float *s, float sl2, float thr, float *alpha) {
        constexpr int NC = BN / 8; // 8-column groups
        constexpr int K = 4;
        float mx[2];
        bool grow = false;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mk[K];
#pragma unroll
            for (int k = 0; k < K; ++k)
                mk[k] = m[r];
#pragma unroll
            for (int c = 0; c < NC; ++c)
                mk[c % K] = fmaxf(mk[c % K], fmaxf(s[4 * c + 2 * r], s[4 * c + 2 * r + 1]));
            float x = mk[0];
#pragma unroll
            for (int k = 1; k < K; ++k)
                x = fmaxf(x, mk[k]);
            x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
            x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
            mx[r] = x;
            // m == -inf (nothing seen yet) always takes the new max
            grow |= !(m[r] != -INFINITY && (x - m[r]) * sl2 <= thr);
        }
        const bool upd = __any_sync(0xffffffffu, grow);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (upd) {
                const float base = mx[r] == -INFINITY ? 0.f : mx[r] * sl2;
                alpha[r] = ex2(m[r] * sl2 - base);
                m[r] = mx[r];
            } else {
                alpha[r] = 1.f;
            }
            const float base = m[r] == -INFINITY ? 0.f : m[r] * sl2;
            float sk[K];
#pragma unroll
            for (int k = 0; k < K; ++k)
                sk[k] = 0.f;
#pragma unroll
            for (int c = 0; c < NC; ++c)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float v = ex2(fmaf(s[4 * c + 2 * r + e], sl2, -base));
                    s[4 * c + 2 * r + e] = v;
                    sk[c % K] += v;
                }
            float sum = sk[0];
#pragma unroll
            for (int k = 1; k < K; ++k)
                sum += sk[k];
            l[r] = l[r] * alpha[r] + sum;
        }
        return upd;
    }

    // Row sums over the quad; inv[r] = 1/l (0 for a row that saw nothing),
    // lse[r] natural log (-inf for such a row).
    __device__ __forceinline__ void finalize(float sl2, float *inv, float *lse) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float sum = l[r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const bool any = sum > 0.f; // false for 0 and NaN
            inv[r] = any ? 1.f / sum : 0.f;
            lse[r] = any ? (m[r] * sl2 + __log2f(sum)) * kLn2 : -INFINITY;
        }
    }
};

// Scale the rows of an m64nN accumulator fragment (register 4c + 2r + e is row r).
template <int N> __device__ __forceinline__ void rescale_rows(float *o, const float *alpha) {
#pragma unroll
    for (int c = 0; c < N / 8; ++c) {
        o[4 * c + 0] *= alpha[0];
        o[4 * c + 1] *= alpha[0];
        o[4 * c + 2] *= alpha[1];
        o[4 * c + 3] *= alpha[1];
    }
}

// P (fp32 fragment of m64nBN) -> A fragments of the k16 steps of O += P V.
template <typename T, int BN> __device__ __forceinline__ void pack_p(const float *s, uint32_t *pa) {
#pragma unroll
    for (int k = 0; k < BN / 16; ++k) {
        pa[4 * k + 0] = pack2<T>(s[8 * k + 0], s[8 * k + 1]);
        pa[4 * k + 1] = pack2<T>(s[8 * k + 2], s[8 * k + 3]);
        pa[4 * k + 2] = pack2<T>(s[8 * k + 4], s[8 * k + 5]);
        pa[4 * k + 3] = pack2<T>(s[8 * k + 6], s[8 * k + 7]);
    }
}

} // namespace fa4cp
