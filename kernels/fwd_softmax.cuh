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
    __device__ __forceinline__ void step(float *s, float sl2, float *alpha) {
        constexpr int NC = BN / 8; // 8-column groups
        constexpr int K = 4;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mk[K];
#pragma unroll
            for (int k = 0; k < K; ++k)
                mk[k] = m[r];
#pragma unroll
            for (int c = 0; c < NC; ++c)
                mk[c % K] = fmaxf(mk[c % K], fmaxf(s[4 * c + 2 * r], s[4 * c + 2 * r + 1]));
            float mx = mk[0];
#pragma unroll
            for (int k = 1; k < K; ++k)
                mx = fmaxf(mx, mk[k]);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float base = mx == -INFINITY ? 0.f : mx * sl2;
            alpha[r] = ex2(m[r] * sl2 - base);
            m[r] = mx;
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
