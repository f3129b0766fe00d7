// fwd_softmax.cuh - the forward's online softmax on a thread's m64nBN score
// fragment (2 rows per thread, a row spread over the 4 lanes of a quad).
//
// Scores stay raw; p = exp2(s * sl2 - m * sl2) with sl2 = scale * log2(e),
// one FFMA and one ex2 per element.  The row sum stays per thread until
// finalize.  A row with no visible key so far has m = -inf and uses 0 as its
// base, so its p are 0 and its rescale factor is 0.  SCALED (the families
// that run step_spec): m holds the running max in those log2 units (m *
// sl2), the base itself, which step_spec moves by whole powers of two.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

template <int BN, bool SCALED = false> struct FwdSoftmax {
    float m[2], l[2]; // running max (SCALED: times sl2), row sum (this thread's part)

    __device__ __forceinline__ void init() {
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.f;
    }

    static constexpr int NC = BN / 8; // 8-column groups
    static constexpr int K = 4;       // independent chains of a row's max and sum

    // The max of row r over the quad, from init: K chains over this thread's
    // columns (a single chain of BN/4 dependent FMNMX is latency-bound with
    // only two consumer warps per scheduler), then the quad's shuffles.
    __device__ __forceinline__ static float row_max(const float *s, int r, float init) {
        float mk[K];
#pragma unroll
        for (int k = 0; k < K; ++k)
            mk[k] = init;
#pragma unroll
        for (int c = 0; c < NC; ++c)
            mk[c % K] = fmaxf(mk[c % K], fmaxf(s[4 * c + 2 * r], s[4 * c + 2 * r + 1]));
        float x = mk[0];
#pragma unroll
        for (int k = 1; k < K; ++k)
            x = fmaxf(x, mk[k]);
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
        return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
    }

    // p = exp2(s * sl2 - base) in place for row r; returns this thread's
    // part of the row sum (K chains).
    __device__ __forceinline__ static float row_exp2(float *s, int r, float sl2, float base) {
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
        return sum;
    }

    // s (BN/2 registers) -> p in place; alpha[r]: factor for the O rows.
    // The row max and the row sum run as K independent chains each
    // (row_max, row_exp2).
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
        float mx[2];
        bool grow = false;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float x = row_max(s, r, SCALED ? -INFINITY : m[r]);
            if constexpr (SCALED) {
                mx[r] = fmaxf(x * sl2, m[r]); // -inf while the row has seen nothing
                grow |= !(m[r] != -INFINITY && mx[r] - m[r] <= thr);
            } else {
                mx[r] = x;
                // m == -inf (nothing seen yet) always takes the new max
                grow |= !(m[r] != -INFINITY && (x - m[r]) * sl2 <= thr);
            }
        }
        const bool upd = __any_sync(0xffffffffu, grow);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sc = SCALED ? 1.f : sl2; // m * sc: the base
            if (upd) {
                const float base = mx[r] == -INFINITY ? 0.f : mx[r] * sc;
                alpha[r] = ex2(m[r] * sc - base);
                m[r] = mx[r];
            } else {
                alpha[r] = 1.f;
            }
            const float sum = row_exp2(s, r, sl2, m[r] == -INFINITY ? 0.f : m[r] * sc);
            l[r] = l[r] * alpha[r] + sum;
        }
        return upd;
    }

    // The same step with the base taken before the row max is known (a
    // block every key of which is visible to every row, and rows that have
    // all seen a key: m finite).  The exp2 of the scores start at once,
    // against the current base, so the max's FMNMX / SHFL chain leaves the
    // path from S to P (on the d128 consumer it cost 527 of 2890 cycles a
    // block, 07:54 UTC profile).  The base is valid while every p stays
    // small: if no row sum of the warp exceeds big = 2^thr (so every p <=
    // 2^thr, the conditional rescale's bound), nothing changes and the step
    // returns 0.  Else (a warp-uniform branch, rare once the running max has
    // settled) each row's base moves up by e = the exponent of its largest
    // p (quad max; 0 <= e <= 126), every p and the row sum are scaled by
    // 2^-e (exact: a power of two), alpha = 2^-e for O, and it returns 1: out and lse
    // stay exact.  A p or a row sum that overflowed (a score jump of 128 or
    // more in log2 units: the scores are lost) returns 2 with nothing
    // changed: the caller recomputes S and runs step() on it.
    __device__ __forceinline__ int step_spec(float *s, float sl2, float big, float *alpha) {
        static_assert(SCALED, "step_spec moves a scaled base");
        float sum[2];
#pragma unroll
        for (int r = 0; r < 2; ++r)
            sum[r] = row_exp2(s, r, sl2, m[r]);
        // false for NaN too
        if (!__any_sync(0xffffffffu, !(sum[0] <= big && sum[1] <= big))) {
            l[0] += sum[0];
            l[1] += sum[1];
            alpha[0] = alpha[1] = 1.f;
            return 0;
        }
        if (__any_sync(0xffffffffu, !(sum[0] < INFINITY && sum[1] < INFINITY)))
            return 2;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mk[K];
#pragma unroll
            for (int k = 0; k < K; ++k)
                mk[k] = 0.f;
#pragma unroll
            for (int c = 0; c < NC; ++c)
                mk[c % K] = fmaxf(mk[c % K], fmaxf(s[4 * c + 2 * r], s[4 * c + 2 * r + 1]));
            float x = fmaxf(fmaxf(mk[0], mk[1]), fmaxf(mk[2], mk[3]));
            x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
            x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
            // x >= 0 finite: its biased exponent; 2^-e exact and normal
            const int e = min(max((__float_as_int(x) >> 23) - 127, 0), 126);
            const float a = __int_as_float((127 - e) << 23);
            m[r] += (float)e;
            alpha[r] = a;
            l[r] = l[r] * a + sum[r] * a;
#pragma unroll
            for (int c = 0; c < NC; ++c)
#pragma unroll
                for (int k = 0; k < 2; ++k)
                    s[4 * c + 2 * r + k] *= a;
        }
        return 1;
    }

    // Does some row of the warp have no visible key so far (m = -inf)?
    __device__ __forceinline__ bool any_unseen() const {
        return __any_sync(0xffffffffu, m[0] == -INFINITY || m[1] == -INFINITY);
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
            lse[r] = any ? (m[r] * (SCALED ? 1.f : sl2) + __log2f(sum)) * kLn2 : -INFINITY;
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
