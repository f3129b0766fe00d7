// attn_common.cuh - helpers shared by the attention kernels (sm_90a).
//
// Tiles live in shared memory as rows of D 16-bit elements, cut into 16-byte
// chunks; chunk c of row r sits at chunk (c ^ (r & 7)) so that ldmatrix on 8
// consecutive rows of one logical chunk hits 8 different bank groups.
// Matrix products use mma.sync.m16n8k16 (fp32 accumulation).
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

// D = A(16x16) * B(16x8) + D, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    if constexpr (MmaType<T>::fp16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16-byte async copy global -> shared; src_bytes 0 fills the chunk with zeros.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Element offset of (row, col) in a swizzled tile of COLS columns (col % 8 == 0
// for 16-byte accesses; any col for element accesses).
template <int COLS> __device__ __forceinline__ int swz(int row, int col) {
    return row * COLS + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

// Load ROWS x D rows [r0, r0+ROWS) of a THD tensor (row stride `stride`
// elements, already offset to the head) into a swizzled tile; rows at or past
// `nvalid` are zero-filled (never read).
template <typename T, int ROWS, int D, int NT>
__device__ __forceinline__ void load_tile(T *smem, const T *gbase, int64_t stride, int r0,
                                          int nvalid, int tid) {
    constexpr int CPR = D / 8; // chunks per row
    constexpr int TOTAL = ROWS * CPR;
    static_assert(TOTAL % NT == 0, "tile chunks must divide evenly among threads");
#pragma unroll
    for (int it = 0; it < TOTAL / NT; ++it) {
        int idx = it * NT + tid;
        int row = idx / CPR;
        int c = idx % CPR;
        int grow = r0 + row;
        bool ok = grow < nvalid;
        const T *src = gbase + (ok ? (int64_t)grow * stride + c * 8 : 0);
        cp_async16(smem_u32(smem + swz<D>(row, c * 8)), src, ok ? 16 : 0);
    }
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
