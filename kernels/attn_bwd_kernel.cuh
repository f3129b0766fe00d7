// attn_bwd_kernel.cuh - the FlashAttention backward for THD varlen inputs
// (sm_90a), one launcher template for every (head_dim, head_dim_v); the
// attn_bwd_d*.cu files instantiate it per head dim, attn_bwd.cu picks the
// instantiation.
//
//   1. preprocess: Dsum[h, row] = rowsum(dO * O) - dLSE (0 for padding rows)
//   2. main kernel, one CTA per (KV block, kv head, sequence): K, V stay in
//      shared memory; the CTA walks every query head of its GQA group and
//      every visible 64-row query block, recomputes S^T and dP^T with wgmma,
//      forms P^T and dS^T in registers, accumulates dV += P^T dO and
//      dK += dS^T Q in registers (so GQA sums are fixed-order) and adds
//      dQ = dS K into an fp32 dq_accum by bulk reductions; deterministic:
//      per-query-tile semaphores fix the order of those additions.
//   3. finish: dq = scale * dq_accum and exact zeros in every padding row of
//      dq, dk, dv.
//
// One main kernel, bwd_ws_kernel (bwd_ws_kernel.cuh): a producer warpgroup
// (TMA, dQ writer) and MMA warpgroups, in two layouts (BwdShape):
//   rows (head dims <= 128): 128-row KV blocks, two MMA warpgroups,
//        warpgroup w owning KV rows 64w..64w+63;
//   wide (d_qk 192 with d_v 192 or 128, d 256): 96- or 64-row KV blocks,
//        three or two MMA warpgroups owning head-dim panels of dK^T, dV^T.
// Head dims that are not a multiple of 64 are padded to one in shared memory
// by the TMA's zero fill: the products over the head dim (S^T, dP^T) step
// over the real columns only, the products whose N is the head dim (dV, dK,
// dQ) run over the padded width.
#pragma once

#include "bwd_ws_kernel.cuh"

namespace fa4cp {

// Dsum[h, row] = sum_d dO * O - dLSE over real rows; 0 on padding rows.  L
// lanes read a (row, head) pair's DV columns, 8 each; LP (a power of 2) lanes
// per pair.
template <typename T, int DV> __global__ void bwd_preprocess_kernel(const fa4cp_kparams p) {
    constexpr int L = DV / 8;
    constexpr int LP = L <= 4 ? 4 : L <= 8 ? 8 : L <= 16 ? 16 : 32;
    static_assert(L <= 32, "head_dim_v up to 256");
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t pair = gid / LP;
    const int c = (int)(gid % LP);
    const int64_t npairs = p.total_q * p.heads;
    const bool in = pair < npairs;
    const int64_t row = in ? pair / p.heads : 0;
    const int h = in ? (int)(pair % p.heads) : 0;
    float acc = 0.f;
    bool real = false;
    if (in) {
        real = row_is_real(p.cu_q, p.used_q, p.batch, row, nullptr, nullptr);
        if (real && (L == LP || c < L)) {
            const int64_t off = (row * p.heads + h) * DV + c * 8;
            const uint4 o = *reinterpret_cast<const uint4 *>(reinterpret_cast<const T *>(p.out) + off);
            const uint4 d = *reinterpret_cast<const uint4 *>(reinterpret_cast<const T *>(p.dout) + off);
            const uint32_t ow[4] = {o.x, o.y, o.z, o.w}, dw[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                float2 a = unpack2<T>(ow[i]), b = unpack2<T>(dw[i]);
                acc += a.x * b.x + a.y * b.y;
            }
        }
    }
#pragma unroll
    for (int s = LP / 2; s > 0; s >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (in && c == 0) {
        const int64_t idx = (int64_t)h * p.total_q + row;
        p.dsum[idx] = real ? acc - (p.dlse ? p.dlse[idx] : 0.f) : 0.f;
    }
}

// Rows of dq (which = 0: real rows get scale * dq_accum, padding rows 0), or
// exact zeros in the padding rows of dk and dv (1, both D wide), dk only (2)
// or dv only (3).  D: the width of the rows.
template <typename T, int D> __global__ void bwd_finish_kernel(const fa4cp_kparams p, int which) {
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int hh = which == 0 ? p.heads : p.kv_heads;
    const int64_t total = which == 0 ? p.total_q : p.total_k;
    const int64_t per_row = (int64_t)hh * (D / 8);
    if (gid >= total * per_row)
        return;
    const int64_t row = gid / per_row;
    const int64_t off = gid * 8; // element offset (rows are contiguous)
    int64_t start = 0;
    const bool real = which == 0 ? row_is_real(p.cu_q, p.used_q, p.batch, row, &start, nullptr)
                                 : row_is_real(p.cu_k, p.used_k, p.batch, row, &start, nullptr);
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if (which != 0) {
        if (!real) {
            if (which != 3)
                *reinterpret_cast<uint4 *>(reinterpret_cast<T *>(p.dk) + off) = zero;
            if (which != 2)
                *reinterpret_cast<uint4 *>(reinterpret_cast<T *>(p.dv) + off) = zero;
        }
        return;
    }
    T *dq = reinterpret_cast<T *>(p.dq) + off;
    if (!real) {
        *reinterpret_cast<uint4 *>(dq) = zero;
    } else {
        const int h = (int)((gid / (D / 8)) % p.heads);
        const int col = (int)(gid % (D / 8)) * 8;
        const int r8 = (int)((row - start) & 7);
        const float *src = p.dq_accum + ((int64_t)h * p.total_q + row) * D;
        const float4 a = *reinterpret_cast<const float4 *>(src + dqa_col<D>(r8, col));
        const float4 b = *reinterpret_cast<const float4 *>(src + dqa_col<D>(r8, col + 4));
        const float s = p.scale;
        uint4 v;
        v.x = pack2<T>(a.x * s, a.y * s);
        v.y = pack2<T>(a.z * s, a.w * s);
        v.z = pack2<T>(b.x * s, b.y * s);
        v.w = pack2<T>(b.z * s, b.w * s);
        *reinterpret_cast<uint4 *>(dq) = v;
    }
}

static inline unsigned blocks_for(int64_t threads, int per_block) {
    return (unsigned)((threads + per_block - 1) / per_block);
}

template <typename T, int DQK, int DV> cudaError_t launch_bwd(const fa4cp_kparams &p) {
    using W = BwdShape<DQK, DV>;
    cudaStream_t s = (cudaStream_t)p.stream;
    cudaError_t e;
    const int64_t q_elems = p.total_q * p.heads * DQK;
    if (q_elems > 0) {
        e = cudaMemsetAsync(p.dq_accum, 0, (size_t)q_elems * sizeof(float), s);
        if (e != cudaSuccess)
            return e;
    }
    if (p.deterministic) {
        e = cudaMemsetAsync(p.dq_sem, 0, (size_t)fa4cp_kernel_bwd_sem_count(&p) * sizeof(int), s);
        if (e != cudaSuccess)
            return e;
    }
    if (p.total_q > 0) {
        constexpr int LP = DV / 8 <= 4 ? 4 : DV / 8 <= 8 ? 8 : DV / 8 <= 16 ? 16 : 32;
        const int64_t th = p.total_q * p.heads * LP;
        bwd_preprocess_kernel<T, DV><<<blocks_for(th, 256), 256, 0, s>>>(p);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    const int nb = (p.max_sk + W::WBN - 1) / W::WBN;
    // Query rows per step of bwd_ws_kernel: 80 for dense d 128 calls (FA3's
    // non-causal tile; FA4CP_CUDA_TUNING 131072: 64), else 64.
    constexpr bool CAN80 = DQK == 128 && DV == 128;
    const bool t80 = CAN80 && p.window_left < 0 && p.window_right < 0 && !(p.tuning & 131072);
    const int wbm = t80 ? 80 : W::WBM;
    const long long ycount = (long long)p.batch * p.kv_heads;
    if (nb > 0 && ycount > 0) { // also with no queries: real dk, dv rows get 0
        const long long ctas = (long long)nb * ycount;
        if (ctas > 0x7fffffffLL)
            return cudaErrorInvalidConfiguration;
        // deterministic: only without a left window (see the kernel)
        const bool use_list = (!p.deterministic || p.window_left < 0) && p.sched &&
                              (int64_t)nb * p.batch + 1 <= p.sched_cap && !(p.tuning & 64);
        if (use_list) { // also the deterministic order (see the kernel)
            sched_kernel<true><<<1, SCHED_THREADS, 0, s>>>(p, nb, W::WBN, wbm, p.sched);
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
        }
        if constexpr (CAN80) {
            e = t80 ? launch_bwd_ws<T, DQK, DV, 80>(p, ctas, nb, use_list)
                    : launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list);
        } else {
            e = launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list);
        }
        if (e != cudaSuccess)
            return e;
    }
    if (p.total_q > 0) {
        bwd_finish_kernel<T, DQK><<<blocks_for(p.total_q * p.heads * (DQK / 8), 256), 256, 0, s>>>(p, 0);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    if (p.total_k > 0) {
        if (DQK == DV) {
            bwd_finish_kernel<T, DQK><<<blocks_for(p.total_k * p.kv_heads * (DQK / 8), 256), 256, 0, s>>>(p, 1);
        } else {
            bwd_finish_kernel<T, DQK><<<blocks_for(p.total_k * p.kv_heads * (DQK / 8), 256), 256, 0, s>>>(p, 2);
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
            bwd_finish_kernel<T, DV><<<blocks_for(p.total_k * p.kv_heads * (DV / 8), 256), 256, 0, s>>>(p, 3);
        }
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

// The launchers of the instantiations (attn_bwd_d*.cu).
#define FA4CP_BWD_INSTANTIATE(DQK, DV)                                                                        \
    cudaError_t launch_bwd_##DQK##_##DV(const fa4cp_kparams &p) {                                             \
        return p.is_fp16 ? launch_bwd<__half, DQK, DV>(p) : launch_bwd<__nv_bfloat16, DQK, DV>(p);             \
    }

} // namespace fa4cp
