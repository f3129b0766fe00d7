// fwd_kernel.cuh - the forward kernel (producer + 2 consumer warpgroups,
// persistent) and its launcher; instantiated once per element type by
// attn_fwd_bf16.cu and attn_fwd_fp16.cu.
#pragma once

#include "attn_sched.cuh"
#include "fwd_launch.h"
#include "fwd_mainloop.cuh"

namespace fa4cp {

template <typename T, int D, int NS>
__global__ void __launch_bounds__(384, 1)
    fwd_ws_kernel(const fa4cp_kparams p, const __grid_constant__ CUtensorMap tmQ,
                  const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV,
                  const FwdSched sc, int R) {
    using C = FwdCfg<T, D, NS>;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned char *base =
        reinterpret_cast<unsigned char *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~(uintptr_t)1023);
    FwdBars<C::NS> *bars = reinterpret_cast<FwdBars<C::NS> *>(base + C::OFF_BAR);
    const uint32_t sQ = sm90::smem_addr(base), sK = sQ + C::OFF_K, sV = sQ + C::OFF_V;
    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int i = 0; i < C::NS; ++i) {
            sm90::mbar_init(sm90::smem_addr(&bars->full_k[i]), 1);
            sm90::mbar_init(sm90::smem_addr(&bars->full_v[i]), 1);
            sm90::mbar_init(sm90::smem_addr(&bars->empty_k[i]), C::CONSUMER_WARPS);
            sm90::mbar_init(sm90::smem_addr(&bars->empty_v[i]), C::CONSUMER_WARPS);
        }
        sm90::mbar_init(sm90::smem_addr(&bars->full_q), 1);
        sm90::mbar_init(sm90::smem_addr(&bars->empty_q), C::CONSUMER_WARPS);
        for (int i = 0; i < 2; ++i) {
            sm90::mbar_init(sm90::smem_addr(&bars->tile_full[i]), 1);
            sm90::mbar_init(sm90::smem_addr(&bars->tile_empty[i]), C::CONSUMER_WARPS);
        }
        sm90::mbar_fence_init();
    }
    __syncthreads();
    const int wg = sm90::warp_uniform(tid >> 7); // uniform, so ptxas sees no divergence

    if (wg == 0) {
        sm90::setmaxnreg_dec<56>();
        if (tid == 0)
            fwd_producer<T, D, NS>(p, sc, &tmQ, &tmK, &tmV, sQ, sK, sV, bars, R);
        return;
    }
    sm90::setmaxnreg_inc<224>();
    fwd_consumer<T, D, NS>(p, sc, sQ, sK, sV, bars, wg - 1, tid - 128 * wg);
}

template <typename T, int D, int NS> static cudaError_t launch_fwd_ws(const fa4cp_kparams &p) {
    using C = FwdCfg<T, D, NS>;
    const cudaStream_t stream = (cudaStream_t)p.stream;
    const int max_mb = (p.max_sq + C::BM - 1) / C::BM;
    const long long entries = (long long)max_mb * p.batch;
    if (entries == 0)
        return cudaSuccess;
    if (!p.sched || entries + 2 > p.sched_cap)
        return cudaErrorInvalidValue;
    int *ctr = p.sched + p.sched_cap - 1;
    int64_t longest = p.max_sq > p.max_sk ? p.max_sq : p.max_sk;
    int64_t R = 256;
    while (R < longest)
        R <<= 1;
    if (p.total_q + R >= ((int64_t)1 << 31) || p.total_k + R >= ((int64_t)1 << 31) ||
        entries * p.heads >= ((int64_t)1 << 31))
        return cudaErrorInvalidValue;
    const bool fp16 = MmaType<T>::fp16;
    CUtensorMap tq, tk, tv;
    // with no keys every tile is empty and K/V are never read: any valid base will do
    const void *kb = p.total_k > 0 ? p.k : p.q, *vb = p.total_k > 0 ? p.v : p.q;
    cudaError_t e;
    if ((e = sm90::tmap_ragged_thd(&tq, p.q, fp16, p.total_q, p.heads, D, R, C::BM)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tk, kb, fp16, p.total_k, p.kv_heads, D, R, C::BN)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tv, vb, fp16, p.total_k, p.kv_heads, D, R, C::BN)) != cudaSuccess)
        return e;
    // L2 sections: whole GQA groups whose K and V fit in about 24 MB
    const int grp = p.heads / p.kv_heads;
    const double kv_head_bytes = (double)(p.total_k > 0 ? p.total_k : 1) * D * 2 * 2;
    int nkv = (int)(24.0 * 1024 * 1024 / kv_head_bytes);
    if (nkv < 1)
        nkv = 1;
    if (nkv > p.kv_heads)
        nkv = p.kv_heads;
    FwdSched sc;
    sc.list = p.sched;
    sc.ctr = ctr;
    sc.max_mb = max_mb;
    sc.heads = p.heads;
    sc.hsec = nkv * grp;
    int dev = 0, sms = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess)
        return e;
    const long long tiles = entries * p.heads;
    const int grid = (int)(tiles < sms ? tiles : sms);
    if ((e = cudaFuncSetAttribute(fwd_ws_kernel<T, D, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM)) !=
        cudaSuccess)
        return e;
    sched_kernel<false><<<1, SCHED_THREADS, 0, stream>>>(p, max_mb, C::BM, C::BN, p.sched, ctr);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    fwd_ws_kernel<T, D, NS><<<grid, C::NT, C::SMEM, stream>>>(p, tq, tk, tv, sc, (int)R);
    return cudaGetLastError();
}

} // namespace fa4cp

namespace fa4cp {
// K/V ring depth: 4 stages at d64, 2 at d128 (3 measured no faster).
template <typename T> static cudaError_t fwd_launch(const fa4cp_kparams &p) {
    if (p.head_dim == 64)
        return launch_fwd_ws<T, 64, 4>(p);
    if (p.head_dim == 128)
        return launch_fwd_ws<T, 128, 2>(p);
    return cudaErrorInvalidValue;
}
} // namespace fa4cp
