// sm90_prim.cuh - Hopper (sm_90a) primitives in inline PTX: mbarriers, TMA
// (cp.async.bulk.tensor loads/stores, bulk copies and reductions), fences,
// named barriers, setmaxnreg, elect.sync, and the host-side tensor-map
// encoder (cuTensorMapEncodeTiled through the runtime's driver entry point,
// so no -lcuda is needed).
//
// Conventions
// - Shared-memory operands are 32-bit shared-window addresses (smem_u32()).
// - An mbarrier phase is waited on by parity: a consumer waiting for the
//   k-th fill of a ring slot waits for parity (k & 1); a producer waiting for
//   the slot to be empty again waits for parity ((k & 1) ^ 1), which a fresh
//   barrier reports as complete, so the first acquire of every slot passes.
// - Every wait spins on mbarrier.try_wait with a clock64 watchdog: a wait
//   longer than FA4CP_MBAR_WATCHDOG cycles (a protocol bug: a lost arrive or
//   a skipped phase) traps, so the launch fails with an error instead of
//   hanging the GPU.
#pragma once

#include <cuda.h> // CUtensorMap (types only: the driver entry point is looked up at run time)
#include <cuda_runtime.h>
#include <stdint.h>

#ifndef FA4CP_MBAR_WATCHDOG
#define FA4CP_MBAR_WATCHDOG (1ll << 33) // cycles (~4 s at 1.98 GHz)
#endif

namespace fa4cp {
namespace sm90 {

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---------------------------------------------------------------- mbarrier

// PDL: wait until the grid this one was launched behind (programmatic stream
// serialisation, launch_pdl in launch_cache.cuh) has completed and its
// writes are visible; a no-op in a grid launched without it.  Every kernel
// launched by launch_pdl calls it before its first global memory access.
__device__ __forceinline__ void grid_dep_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes mbarrier.init visible to the async proxy (TMA) and the other threads;
// follow it with a CTA barrier.
__device__ __forceinline__ void mbar_fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrive and add tx_bytes to the bytes the current phase waits for.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t tx_bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(tx_bytes)
                 : "memory");
}
// Add tx_bytes without arriving.
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t tx_bytes) {
    asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(tx_bytes)
                 : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok;
    asm volatile("{\n.reg .pred p;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(ok)
                 : "r"(bar), "r"(parity)
                 : "memory");
    return ok != 0;
}
// Wait until the phase of the given parity has completed (acquire, CTA
// scope).  The spin loop lives inside the asm: a C loop here would put
// divergent control flow between wgmma batches, and ptxas then serialises
// every wgmma of the kernel (C7520).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n.reg .pred P1;\n.reg .u64 t0, t1;\n"
                 "mov.u64 t0, %%clock64;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
                 "@P1 bra DONE;\n"
                 "mov.u64 t1, %%clock64;\n"
                 "sub.u64 t1, t1, t0;\n"
                 "setp.gt.u64 P1, t1, %2;\n"
                 "@P1 trap;\n"
                 "bra WAIT;\n"
                 "DONE:\n}\n" ::"r"(bar),
                 "r"(parity), "l"((unsigned long long)FA4CP_MBAR_WATCHDOG)
                 : "memory");
}

// The same for a wait that usually succeeds at once (the forward consumer's
// K/V waits: the producer runs a block or more ahead): one try_wait first,
// and the watchdog's clock read only once that one has not completed.
__device__ __forceinline__ void mbar_wait_hot(uint32_t bar, uint32_t parity) {
    asm volatile("{\n.reg .pred P1;\n.reg .u64 t0, t1;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
                 "@P1 bra DONE;\n"
                 "mov.u64 t0, %%clock64;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
                 "@P1 bra DONE;\n"
                 "mov.u64 t1, %%clock64;\n"
                 "sub.u64 t1, t1, t0;\n"
                 "setp.gt.u64 P1, t1, %2;\n"
                 "@P1 trap;\n"
                 "bra WAIT;\n"
                 "DONE:\n}\n" ::"r"(bar),
                 "r"(parity), "l"((unsigned long long)FA4CP_MBAR_WATCHDOG)
                 : "memory");
}

// ---------------------------------------------------------------- fences and barriers

// Order this thread's generic-proxy shared-memory accesses before later
// async-proxy accesses (TMA store of data written by st.shared, wgmma reading
// st.shared data), and the reverse.
__device__ __forceinline__ void fence_proxy_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Named barrier: nthreads (a multiple of 32) threads, id 1..15 (0 is __syncthreads).
__device__ __forceinline__ void named_sync(uint32_t id, uint32_t nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}
__device__ __forceinline__ void named_arrive(uint32_t id, uint32_t nthreads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}

// ---------------------------------------------------------------- registers, election

// Every warp of the warpgroup must execute the same setmaxnreg.
template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
// One lane of the (fully active) warp returns true.
__device__ __forceinline__ bool elect_one() {
    uint32_t pred = 0;
    asm volatile("{\n.reg .pred p;\n.reg .b32 r;\n"
                 "elect.sync r|p, 0xffffffff;\n"
                 "selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(pred));
    return pred != 0;
}
__device__ __forceinline__ int warp_uniform(int x) { return __shfl_sync(0xffffffffu, x, 0); }

// ---------------------------------------------------------------- TMA (tensor)

// L2 cache hints for the .L2::cache_hint forms (createpolicy encodings used
// by CUTLASS's TMA::CacheHintSm90).
constexpr uint64_t kEvictNormal = 0x1000000000000000ull;
constexpr uint64_t kEvictFirst = 0x12F0000000000000ull;
constexpr uint64_t kEvictLast = 0x14F0000000000000ull;

__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Global -> shared tile load; completes tx bytes on the mbarrier `bar`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0,
                                            int c1, uint64_t hint = kEvictNormal) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar), "l"(hint)
                 : "memory");
}
__device__ __forceinline__ void tma_load_1d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0,
                                            uint64_t hint = kEvictNormal) {
    asm volatile("cp.async.bulk.tensor.1d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2}], [%3], %4;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(bar), "l"(hint)
                 : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0,
                                            int c1, int c2, uint64_t hint = kEvictNormal) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "l"(hint)
                 : "memory");
}
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0,
                                            int c1, int c2, int c3, uint64_t hint = kEvictNormal) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6], %7;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar),
                 "l"(hint)
                 : "memory");
}
__device__ __forceinline__ void tma_load_5d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0,
                                            int c1, int c2, int c3, int c4, uint64_t hint = kEvictNormal) {
    asm volatile("cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3, %4, %5, %6}], [%7], %8;\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
                 "r"(bar), "l"(hint)
                 : "memory");
}

// Shared -> global tile store (out-of-bounds elements are not written); a
// bulk group: commit with tma_store_commit, wait with tma_store_wait_read
// (smem reusable) or tma_store_wait (writes done).  Precede it with
// fence_proxy_async_smem() after the st.shared that filled the tile.
__device__ __forceinline__ void tma_store_4d(const CUtensorMap *map, uint32_t src, int c0, int c1, int c2,
                                             int c3) {
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
__device__ __forceinline__ void tma_store_5d(const CUtensorMap *map, uint32_t src, int c0, int c1, int c2,
                                             int c3, int c4) {
    asm volatile("cp.async.bulk.tensor.5d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5, %6}], [%1];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4)
                 : "memory");
}
// Shared -> global element-wise add (fp32 tensors) of a tile.
__device__ __forceinline__ void tma_reduce_add_4d(const CUtensorMap *map, uint32_t src, int c0, int c1, int c2,
                                                  int c3) {
    asm volatile("cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void tma_store_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N> __device__ __forceinline__ void tma_store_wait() {
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---------------------------------------------------------------- bulk copies (no tensor map)

// Contiguous global -> shared copy of `bytes` (multiple of 16, both addresses
// 16-byte aligned); completes tx bytes on `bar`.
__device__ __forceinline__ void bulk_load(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}
// Contiguous shared -> global fp32 add of `bytes` (a bulk group, see tma_store_commit).
__device__ __forceinline__ void bulk_reduce_add_f32(float *dst, uint32_t src, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst),
                 "r"(src), "r"(bytes)
                 : "memory");
}

} // namespace sm90
} // namespace fa4cp

// ---------------------------------------------------------------- host: tensor maps
#include <cudaTypedefs.h> // PFN_cuTensorMapEncodeTiled_v12000

namespace fa4cp {
namespace sm90 {

// cuTensorMapEncodeTiled from the driver, looked up once per process.
__host__ inline PFN_cuTensorMapEncodeTiled_v12000 tmap_encoder() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    if (!fn) {
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }
    return fn;
}

// A "ragged" rank-4 map of a THD tensor [rows][heads][dim] of 16-bit elements
// whose sequences are addressed separately, with boxes of box_cols columns
// x 1 head x box_rows rows (one panel of a tile, laid out in shared memory
// as box_rows rows of box_cols * 2 bytes, swizzled at that width: box_cols
// 64 -> 128-byte swizzle, 32 -> 64-byte swizzle).  Columns at or past dim
// fall out of bounds too (zero-filled: a head dim padded to whole panels).
//
// Dimensions (innermost first): dim (elements), head (stride dim*2),
// r in [0, R) and x in [0, rows + 1), both with the row stride, over the
// base moved back by R rows.  Row i of the sequence that starts at row `off`
// and has `len` rows is coordinate (col, head, R - len + i, off + len):
// address base + (off + i) * stride, and rows i >= len fall out of bounds
// (zero-filled on load, dropped on store), so tiles never read or write a
// neighbouring sequence.  R must be >= every len (any power of two >= the
// longest sequence).  box_heads > 1: boxes of box_heads consecutive heads
// (head coordinate h .. h + box_heads - 1), laid out in shared memory row by
// row, the heads of a row consecutive: box_rows * box_heads rows of box_cols
// (the forward's packed GQA tiles, fwd_sched.cuh).
__host__ inline cudaError_t tmap_ragged_thd(CUtensorMap *map, const void *base, bool fp16, int64_t rows, int heads,
                                   int dim, int64_t R, int box_rows, int box_cols = 64, int box_heads = 1) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = tmap_encoder();
    if (!enc)
        return cudaErrorNotSupported;
    const uint64_t stride = (uint64_t)heads * (uint64_t)dim * 2;
    const char *b = static_cast<const char *>(base) - (uint64_t)R * stride;
    cuuint64_t gdim[4] = {(cuuint64_t)dim, (cuuint64_t)heads, (cuuint64_t)R, (cuuint64_t)rows + 1};
    cuuint64_t gstride[3] = {(cuuint64_t)dim * 2, stride, stride};
    if ((box_cols != 64 && box_cols != 32) || box_heads < 1 || box_heads > heads || box_heads > 256 ||
        box_rows < 1 || box_rows > 256)
        return cudaErrorInvalidValue;
    cuuint32_t box[4] = {(cuuint32_t)box_cols, (cuuint32_t)box_heads, (cuuint32_t)box_rows, 1};
    cuuint32_t estr[4] = {1, 1, 1, 1};
    CUresult r = enc(map, fp16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4,
                     const_cast<char *>(b), gdim, gstride, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                     box_cols == 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// A rank-1 map of n fp32 values (boxes of box elements, no swizzle; the
// shared-memory destination 128-byte aligned); elements at or past n are
// zero-filled.
__host__ inline cudaError_t tmap_f32_1d(CUtensorMap *map, const void *base, int64_t n, int box) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = tmap_encoder();
    if (!enc)
        return cudaErrorNotSupported;
    cuuint64_t gdim[1] = {(cuuint64_t)n};
    cuuint32_t bx[1] = {(cuuint32_t)box};
    cuuint32_t estr[1] = {1};
    cuuint64_t gstr[1] = {0}; // (rank 1: no strides are read)
    CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 1, const_cast<void *>(base), gdim, gstr, bx, estr,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

} // namespace sm90
} // namespace fa4cp
