// wgmma.cuh - Hopper warpgroup MMA (wgmma) fences, waits and shared-memory
// descriptors (the MMA wrappers themselves are generated: wgmma_ops.cuh), for
// tiles stored in 64-column panels with the 128-byte swizzle:
// element (r, c) of a ROWS x D tile sits at panel c/64, row r, 16-byte chunk
// ((c%64)/8) ^ (r%8); every panel is 1024-byte aligned.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

// Element offset of (row, col) in a panelled tile of ROWS rows.
template <int ROWS> __device__ __forceinline__ int pnl(int row, int col) {
    return (col >> 6) * ROWS * 64 + row * 64 + ((((col & 63) >> 3) ^ (row & 7)) << 3) + (col & 7);
}

// Shared-memory matrix descriptor of a swizzled layout with RB-byte panel
// rows: RB 128 (64-column panels, 128-byte swizzle, layout type 1) or 64
// (32-column panels, 64-byte swizzle, type 2).  K-major: sbo = 8 rows;
// MN-major: lbo = panel stride, sbo = 8 rows.
template <int RB> __device__ __forceinline__ uint64_t gmma_desc_rb(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    static_assert(RB == 128 || RB == 64, "128- or 64-byte swizzle");
    uint64_t d = 0;
    d |= (uint64_t)((saddr & 0x3FFFF) >> 4);
    d |= (uint64_t)((lbo >> 4) & 0x3FFF) << 16;
    d |= (uint64_t)((sbo >> 4) & 0x3FFF) << 32;
    d |= (uint64_t)(RB == 128 ? 1 : 2) << 62;
    return d;
}
// The 128-byte swizzle's.
__device__ __forceinline__ uint64_t gmma_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return gmma_desc_rb<128>(saddr, lbo, sbo);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Register fences for wgmma operands (CuTe's warpgroup_fence_operand): an
// empty asm that "redefines" each register, placed after wgmma_wait (so no
// use of the results moves above the wait) and before wgmma_fence (so no
// write of an operand moves below the issue).
template <int N> __device__ __forceinline__ void reg_fence(float *r) {
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void reg_fence(uint32_t *r) {
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+r"(r[i])::"memory");
}

} // namespace fa4cp
