// attn_common.cuh - helpers shared by the attention kernels (sm_90a): types,
// packing, shared-memory addresses, the per-sequence geometry and the mask.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "fa4cp_kernels.h"

namespace fa4cp {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <typename T> struct MmaType;
template <> struct MmaType<__nv_bfloat16> {
    static constexpr bool fp16 = false;
};
template <> struct MmaType<__half> {
    static constexpr bool fp16 = true;
};

// Two floats -> packed pair of T (low half = first).
template <typename T> __device__ __forceinline__ uint32_t pack2(float a, float b);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
    __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <typename T> __device__ __forceinline__ float2 unpack2(uint32_t v);
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t v) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&v));
}
template <> __device__ __forceinline__ float2 unpack2<__half>(uint32_t v) {
    return __half22float2(*reinterpret_cast<__half2 *>(&v));
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// Per-sequence geometry.
struct SeqInfo {
    int64_t q_off, k_off; // physical start rows
    int sq, sk;           // real lengths (after seqused)
};

__device__ __forceinline__ SeqInfo seq_info(const fa4cp_kparams &p, int b) {
    SeqInfo s;
    s.q_off = p.cu_q[b];
    s.k_off = p.cu_k[b];
    s.sq = p.used_q ? p.used_q[b] : (int)(p.cu_q[b + 1] - p.cu_q[b]);
    s.sk = p.used_k ? p.used_k[b] : (int)(p.cu_k[b + 1] - p.cu_k[b]);
    return s;
}

// Visibility bounds, bottom-right aligned: key j visible to query i iff
// lo(i) <= j <= hi(i), with hi(i) = i + off + wr (wr < 0: sk - 1) and
// lo(i) = i + off - wl (wl < 0: 0), off = sk - sq, and 0 <= j < sk.
struct Mask {
    int64_t off;
    int wl, wr;
    int sk;
    __device__ __forceinline__ int64_t hi(int64_t i) const {
        int64_t h = wr < 0 ? (int64_t)sk - 1 : i + off + wr;
        return h < (int64_t)sk - 1 ? h : (int64_t)sk - 1;
    }
    __device__ __forceinline__ int64_t lo(int64_t i) const {
        int64_t l = wl < 0 ? 0 : i + off - wl;
        return l > 0 ? l : 0;
    }
    __device__ __forceinline__ bool visible(int64_t i, int64_t j) const {
        return j >= lo(i) && j <= hi(i);
    }
};

// The query rows [i_min, i_max] (none when i_min > i_max) of a sequence of
// sq rows that see a key of [n0, n_last], for the mask of off = sk - sq and
// the window (wl, wr) (< 0: unbounded on that side).
__device__ __forceinline__ void rows_seeing(int64_t off, int wl, int wr, int sq, int n0, int n_last,
                                            int64_t &i_min, int64_t &i_max) {
    i_min = wr >= 0 ? (int64_t)n0 - off - wr : 0;
    i_max = wl >= 0 ? (int64_t)n_last - off + wl : (int64_t)sq - 1;
    if (i_min < 0)
        i_min = 0;
    if (i_max > (int64_t)sq - 1)
        i_max = (int64_t)sq - 1;
}

// Row of the THD tensor -> is it a real token?  (binary search on cu)
__device__ __forceinline__ bool row_is_real(const int32_t *cu, const int32_t *used, int batch,
                                            int64_t row, int64_t *start, int *seq) {
    if (batch <= 0 || row < cu[0] || row >= cu[batch])
        return false;
    int lo = 0, hi = batch - 1; // find last b with cu[b] <= row
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (cu[mid] <= row)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t len = used ? used[lo] : (cu[lo + 1] - cu[lo]);
    if (start)
        *start = cu[lo];
    if (seq)
        *seq = lo;
    return row - cu[lo] < len;
}

} // namespace fa4cp
