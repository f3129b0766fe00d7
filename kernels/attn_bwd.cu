// attn_bwd.cu - FlashAttention backward for THD varlen inputs (sm_90a build).
//
//   1. preprocess: Dsum[h, row] = rowsum(dO * O) - dLSE (0 for padding rows)
//   2. main kernel (bwd_dkdv_wg_kernel), one CTA of 2 warpgroups per (128-row
//      KV block, kv head, sequence): K, V stay in shared memory; the CTA walks
//      every query head of its GQA group and every visible 64-row query block
//      (Q, dO double-buffered by cp.async), recomputes S^T and dP^T with
//      wgmma, forms P^T and dS^T in registers, accumulates dV += P^T dO and
//      dK += dS^T Q in registers (so GQA sums are fixed-order) and adds
//      dQ = dS K into an fp32 dq_accum by bulk reductions; deterministic:
//      per-query-tile semaphores fix the order of those additions.
//   3. finish: dq = scale * dq_accum and exact zeros in every padding row of
//      dq, dk, dv.
#include "attn_common.cuh"
#include "wgmma.cuh"
#include "attn_sched.cuh"

namespace fa4cp {

// dst[0 .. bytes/4) += src[...] (fp32), by the bulk copy engine; bytes % 16 == 0.
__device__ __forceinline__ void bulk_reduce_add_f32(float *dst, const float *src, uint32_t bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                 "cp.async.bulk.commit_group;\n" ::"l"(dst),
                 "r"(smem_u32(src)), "r"(bytes)
                 : "memory");
}
template <int N> __device__ __forceinline__ void bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
// 2^x, flushing denormal results to 0 (exp2f adds a range fix-up around MUFU.EX2).
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// Column of element `col` of a dq_accum row whose index in its sequence is
// congruent to r8 modulo 8: 16-byte chunks XOR (2 * r8).
__device__ __forceinline__ int dqa_col(int r8, int col) {
    return ((((col >> 2) ^ (r8 << 1))) << 2) | (col & 3);
}

// dst[0..1] += (a, b) in global memory, without returning the old values
// (atomicAdd(float2*) compiles to atom with a result the warp then waits on).
__device__ __forceinline__ void red_add_f32x2(float *dst, float a, float b) {
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(a), "f"(b) : "memory");
}

// Deterministic dQ order: wait until *sem == v (acquire).
__device__ __forceinline__ void sem_wait_eq(const int *sem, int v) {
    int cur;
    for (;;) {
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(cur) : "l"(sem) : "memory");
        if (cur == v)
            break;
        __nanosleep(64);
    }
}
// *sem, without ordering: a prefetch, issued half an iteration before the
// bulk reduction it lets go.  Enough for that: the adder before has waited for
// its reduction to complete before its release, so a reduction issued after
// the count is seen lands after it (sem_wait_eq runs when the count is short).
__device__ __forceinline__ int sem_load_relaxed(const int *sem) {
    int v;
    asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(sem) : "memory");
    return v;
}
__device__ __forceinline__ void fence_proxy_async_global() {
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
// *sem += 1 (release), after the bulk reductions waited for have completed.
__device__ __forceinline__ void sem_release_add(int *sem) {
    asm volatile("fence.proxy.async.global;\n"
                 "red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(sem)
                 : "memory");
}

__device__ __forceinline__ bool block_needs_mask_wg(const Mask &mk, const fa4cp_kparams &p,
                                                    int64_t m0, int64_t n0) {
    return (n0 + 128 > mk.sk) || (p.window_right >= 0 && n0 + 128 - 1 > mk.hi(m0)) ||
           (p.window_left >= 0 && n0 < mk.lo(m0 + 64 - 1));
}

// ---------------------------------------------------------------- main kernel
// One CTA of 2 warpgroups per (128-row KV block, kv head, sequence); warpgroup
// w owns KV rows 64w..64w+63.  Per 64-row query block (Q, dO double-buffered):
//   S^T = K Q^T, dP^T = V dO^T       (SS wgmma, K-major operands)
//   P^T, dS^T in registers            (-> A operands, as in the forward)
//   dV += P^T dO, dK += dS^T Q        (RS wgmma, dO/Q read MN-major)
//   dQ  = dS K                        (SS wgmma, dS^T staged in smem, both MN-major)
// dQ goes to dq_accum by bulk reductions, in a fixed order when deterministic.
constexpr int WBM = 64, WBN = 128;

template <typename T, int D> struct BwdWgCfg {
    static constexpr int TQ = WBM * D, TK = WBN * D;
    // sK, sV, sQ[2], sdO[2], sdST, sdQ[2] (fp32), lse2[2], dsum[2]
    static constexpr int SMEM = (2 * TK + 4 * TQ + WBN * WBM) * (int)sizeof(T) +
                                2 * WBM * D * (int)sizeof(float) + 4 * WBM * (int)sizeof(float) + 1024;
};

// The next block's loads and the dQ flush are issued behind S^T/dP^T, and (d
// = 128) dK after dQ, so that the dQ tile is staged while dK runs.  DET =
// p.deterministic (a template parameter, so that the semaphore code leaves
// the other instantiation alone).
template <typename T, int D, bool DET>
__global__ void __launch_bounds__(256, 1) bwd_dkdv_wg_kernel(const fa4cp_kparams p, int max_nb, bool use_list) {
    using C = BwdWgCfg<T, D>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // 1024-byte aligned for the swizzled panels; offsetting the shared pointer
    // keeps its address space (LDS/STS instead of generic accesses)
    unsigned char *base = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    T *sK = reinterpret_cast<T *>(base);
    T *sV = sK + C::TK;
    T *sQ = sV + C::TK;       // [2]
    T *sdO = sQ + 2 * C::TQ;  // [2]
    T *sdST = sdO + 2 * C::TQ; // [WBN kv rows][WBM query cols], one panel
    float *sdQ = reinterpret_cast<float *>(sdST + WBN * WBM); // [2][WBM][D], dqa_col order
    float *sLse2 = sdQ + 2 * WBM * D;                          // [2][WBM]
    float *sDsum = sLse2 + 2 * WBM;                              // [2][WBM]

    const int H = p.heads, HK = p.kv_heads, G = H / HK;
    constexpr bool det = DET;
    int kvh, bi, n_block;
    if constexpr (DET) {
        // Deterministic: the dQ additions to a query tile go in ascending
        // KV-block order (see flush_dq).  A CTA takes its work by a ticket
        // (dq_sem[0]), in the order the CTAs start, from an order in which the
        // KV blocks of each (sequence, kv head) ascend: the work list when
        // there is no left window (its costs then do not grow with the block
        // and its sort is stable), else sequence, KV block, kv head.  So a CTA
        // only ever waits for CTAs that are already running.
        __shared__ int s_ticket;
        if (threadIdx.x == 0)
            s_ticket = atomicAdd(p.dq_sem, 1);
        __syncthreads();
        const int tk = s_ticket;
        kvh = tk % HK;
        if (use_list) {
            const int idx = tk / HK;
            if (idx >= p.sched[0])
                return;
            const int e = p.sched[1 + idx];
            bi = e / max_nb;
            n_block = e % max_nb;
        } else {
            n_block = (tk / HK) % max_nb;
            bi = tk / (HK * max_nb);
            if (n_block >= (seq_info(p, bi).sk + WBN - 1) / WBN)
                return;
        }
    } else if (use_list) { // longest-first work list (attn_sched.cuh)
        kvh = blockIdx.x % HK;
        const int idx = blockIdx.x / HK;
        if (idx >= p.sched[0])
            return;
        const int e = p.sched[1 + idx];
        bi = e / max_nb;
        n_block = e % max_nb;
    } else {
        kvh = blockIdx.x % HK;
        bi = (blockIdx.x / HK) % p.batch;
        const int nb_rev = blockIdx.x / (HK * p.batch);
        const int nnb0 = (seq_info(p, bi).sk + WBN - 1) / WBN;
        if (nb_rev >= nnb0)
            return;
        n_block = nnb0 - 1 - nb_rev;
    }
    const SeqInfo si = seq_info(p, bi);
    const int n0 = n_block * WBN;
    const int tid = threadIdx.x;
    const int wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;

    Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
    const int64_t q_stride = (int64_t)H * D, k_stride = (int64_t)HK * D;
    const T *gk = reinterpret_cast<const T *>(p.k) + si.k_off * k_stride + (int64_t)kvh * D;
    const T *gv = reinterpret_cast<const T *>(p.v) + si.k_off * k_stride + (int64_t)kvh * D;

    const int n_last = min(n0 + WBN, si.sk) - 1;
    int64_t i_min = p.window_right >= 0 ? (int64_t)n0 - mk.off - p.window_right : 0;
    int64_t i_max = p.window_left >= 0 ? (int64_t)n_last - mk.off + p.window_left : (int64_t)si.sq - 1;
    if (i_min < 0)
        i_min = 0;
    if (i_max > (int64_t)si.sq - 1)
        i_max = (int64_t)si.sq - 1;
    int mb_lo = 0, nmb = 0;
    if (i_min <= i_max) {
        mb_lo = (int)(i_min / WBM);
        nmb = (int)(i_max / WBM) - mb_lo + 1;
    }
    const int iters = nmb * G;
    // The KV blocks of one head start their walk over the query blocks at
    // different places, so their dQ atomics do not all hit the same tile.
    // Deterministic: no stagger, query blocks descending (causal: the KV
    // blocks below, which add to a tile first, are there before).
    const int stagger = (p.tuning & 1) || det || nmb == 0 ? 0 : n_block % nmb;
    auto m_of = [&](int it) {
        return (det ? mb_lo + nmb - 1 - it % nmb : mb_lo + (it + stagger) % nmb) * WBM;
    };

    float dv[D / 8][4], dk[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            dv[i][j] = dk[i][j] = 0.f;

    const float sl2 = p.scale * kLog2e;
    // dq_sem of (head hq, this sequence, query block mb): 1 + hq * sem_head +
    // q_off / 64 + bi + mb.  Distinct over the sequences, since q_off / 64 +
    // ceil(sq / 64) <= (q_off + sq) / 64 + 1, and independent of max_sq (a
    // max_seqlen_q below a real length must not make tiles share a count).
    const int64_t sem_head = p.total_q / WBM + p.batch + 1;
    const int64_t sem_seq = 1 + si.q_off / WBM + bi;
    // this thread's KV rows (block-relative): jr0, jr0 + 8
    const int jr0 = wg * 64 + warp * 16 + g;

    if (iters > 0) {
        load_tile_pn<T, WBN, D, 256>(sK, gk, k_stride, n0, si.sk, tid);
        load_tile_pn<T, WBN, D, 256>(sV, gv, k_stride, n0, si.sk, tid);
        // Row statistics of the next query block are loaded into registers when
        // its tiles are issued and stored to shared memory at the end of the
        // iteration, so no warp waits on global memory before its wgmma.
        float pf_l2 = INFINITY, pf_ds = 0.f;
        auto issue = [&](int it) {
            const int st = it & 1;
            const int hq = kvh * G + it / nmb;
            const int m0 = m_of(it);
            const T *gq = reinterpret_cast<const T *>(p.q) + si.q_off * q_stride + (int64_t)hq * D;
            const T *gdo = reinterpret_cast<const T *>(p.dout) + si.q_off * q_stride + (int64_t)hq * D;
            load_tile_pn<T, WBM, D, 256>(sQ + st * C::TQ, gq, q_stride, m0, si.sq, tid);
            load_tile_pn<T, WBM, D, 256>(sdO + st * C::TQ, gdo, q_stride, m0, si.sq, tid);
            pf_l2 = INFINITY;
            pf_ds = 0.f;
            if (tid < WBM && m0 + tid < si.sq) {
                const int64_t idx = (int64_t)hq * p.total_q + si.q_off + m0 + tid;
                pf_l2 = p.lse[idx];
                pf_ds = p.dsum[idx];
            }
        };
        auto store_stats = [&](int st) {
            if (tid < WBM) {
                sLse2[st * WBM + tid] = pf_l2 == -INFINITY ? INFINITY : pf_l2 * kLog2e;
                sDsum[st * WBM + tid] = pf_ds;
            }
        };
        issue(0);
        cp_async_commit();
        store_stats(0);
        const uint32_t sKa = smem_u32(sK), sVa = smem_u32(sV), sdSa = smem_u32(sdST);
        // dQ tiles go through shared memory (sdQ[it & 1]) and are added to
        // dq_accum by one bulk reduction (cp.reduce.async.bulk), issued by
        // thread 0 after the next barrier; it must finish reading a buffer
        // before that buffer is written again two iterations later.
        //
        // Deterministic: the additions to the tile of (query block m, head hq)
        // happen in ascending KV-block order.  The semaphore of the tile counts
        // the additions done; the KV blocks that visit m are nlo(m), nlo(m)+1, ...
        // (both ends of a KV block's query range grow with the block), so this
        // block waits for the count n_block - nlo(m) before it adds.  Thread 0
        // adds the tile of iteration it at the start of iteration it+1 (after
        // the next loads are issued), spinning only when the count it
        // prefetched before the dS barrier of iteration it was short, and bumps
        // the count once that reduction has completed: at the start of
        // iteration it+2, before the loads (the release fence then waits for
        // nothing).  Bumping it earlier, before the dS barrier of iteration it+1,
        // waits there for the reduction: 0.69-0.87x on an H200, where this
        // order runs at the speed of the non-deterministic kernel.
        const bool bulk_dq = det || !(p.tuning & 16);
        int prev_hq = -1, prev_m0 = 0;
        int *pend_sem = nullptr; // thread 0: semaphore to bump once the last reduction completed
        int *nxt_sem = nullptr;  // thread 0: semaphore of the tile to add next,
        int nxt_rank = 0, nxt_seen = -1; // the count to wait for, the prefetched count
        auto release_dq = [&]() {
            if (tid == 0 && pend_sem) {
                bulk_wait_all();
                sem_release_add(pend_sem);
                pend_sem = nullptr;
            }
        };
        auto prefetch_sem = [&](int hq, int m0) {
            if (tid == 0) {
                const int mb = m0 / WBM;
                const int64_t x = (int64_t)mb * WBM + mk.off - p.window_left;
                const int nlo = p.window_left < 0 || x < 0 ? 0 : (int)(x / WBN);
                nxt_sem = p.dq_sem + sem_seq + hq * sem_head + mb;
                nxt_rank = n_block - nlo;
                nxt_seen = sem_load_relaxed(nxt_sem);
            }
        };
        auto flush_dq = [&](int buf) { // deterministic: after release_dq and prefetch_sem
            if (tid == 0 && prev_hq >= 0) {
                const int rows = min(WBM, si.sq - prev_m0);
                float *dst = p.dq_accum + ((int64_t)prev_hq * p.total_q + si.q_off + prev_m0) * D;
                if constexpr (DET) {
                    if (nxt_seen != nxt_rank)
                        sem_wait_eq(nxt_sem, nxt_rank);
                    fence_proxy_async_global();
                    pend_sem = nxt_sem;
                }
                bulk_reduce_add_f32(dst, sdQ + buf * WBM * D, (uint32_t)rows * D * 4);
            }
            prev_hq = -1;
        };
        for (int it = 0; it < iters; ++it) {
            const int st = it & 1;
            cp_async_wait<0>();
            fence_proxy_async();
            __syncthreads();
            const int hq = kvh * G + it / nmb;
            const int m0 = m_of(it);
            const uint32_t sQa = smem_u32(sQ + st * C::TQ), sdOa = smem_u32(sdO + st * C::TQ);
            const float *lse2 = sLse2 + st * WBM, *dsm = sDsum + st * WBM;

            float sT[WBM / 8][4], dpT[WBM / 8][4];
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const uint32_t koff = (kk & 3) * 32;
                const uint64_t ak = gmma_desc(sKa + (kk >> 2) * (WBN * 128) + wg * 64 * 128 + koff, 16, 1024);
                const uint64_t bq = gmma_desc(sQa + (kk >> 2) * (WBM * 128) + koff, 16, 1024);
                wgmma_ss<T, WBM>(&sT[0][0], ak, bq, kk > 0);
            }
            wgmma_commit();
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                const uint32_t koff = (kk & 3) * 32;
                const uint64_t av = gmma_desc(sVa + (kk >> 2) * (WBN * 128) + wg * 64 * 128 + koff, 16, 1024);
                const uint64_t bo = gmma_desc(sdOa + (kk >> 2) * (WBM * 128) + koff, 16, 1024);
                wgmma_ss<T, WBM>(&dpT[0][0], av, bo, kk > 0);
            }
            wgmma_commit();
            // behind the tensor-core work just issued
            if constexpr (DET) {
                release_dq(); // the reduction of iteration it-1 (of the tile of it-2)
                if (it + 1 < iters) {
                    issue(it + 1);
                    cp_async_commit();
                }
                flush_dq(st ^ 1); // tile of iteration it-1
            } else {
                if (bulk_dq)
                    flush_dq(st ^ 1); // tile of iteration it-1
                if (it + 1 < iters) {
                    issue(it + 1);
                    cp_async_commit();
                }
            }
            wgmma_wait<1>(); // S^T is ready; dP^T may still be running

            const bool need_mask = block_needs_mask_wg(mk, p, m0, n0);
            uint32_t pa[WBM / 16][4], da[WBM / 16][4];
            // P^T (in place of S^T) while dP^T runs on the tensor cores:
            // branch-free exp, the element mask in a separate uniform branch
#pragma unroll
            for (int i = 0; i < WBM / 8; ++i) {
                const float2 l = *reinterpret_cast<const float2 *>(lse2 + i * 8 + 2 * t);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    sT[i][2 * r] = ex2_ftz(fmaf(sT[i][2 * r], sl2, -l.x));
                    sT[i][2 * r + 1] = ex2_ftz(fmaf(sT[i][2 * r + 1], sl2, -l.y));
                }
            }
            if (need_mask) {
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int64_t j = n0 + jr0 + 8 * r;
#pragma unroll
                    for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
                        for (int c = 0; c < 2; ++c) {
                            const int64_t qi = m0 + i * 8 + 2 * t + c;
                            if (j >= si.sk || j < mk.lo(qi) || j > mk.hi(qi))
                                sT[i][2 * r + c] = 0.f;
                        }
                }
            }
            wgmma_wait<0>();
            float dsr[WBM / 8][2]; // Dsum of this thread's query columns
#pragma unroll
            for (int i = 0; i < WBM / 8; ++i) {
                const float2 d2 = *reinterpret_cast<const float2 *>(dsm + i * 8 + 2 * t);
                dsr[i][0] = d2.x;
                dsr[i][1] = d2.y;
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int jl = jr0 + 8 * r;
#pragma unroll
                for (int i = 0; i < WBM / 8; ++i) {
                    float pv[2], dsv[2];
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        pv[c] = sT[i][2 * r + c];
                        dsv[c] = pv[c] * (dpT[i][2 * r + c] - dsr[i][c]);
                    }
                    const uint32_t pp = pack2<T>(pv[0], pv[1]), dd = pack2<T>(dsv[0], dsv[1]);
                    // A fragments: tile i -> k-step i/2, registers (i&1)*2 + r
                    pa[i >> 1][(i & 1) * 2 + r] = pp;
                    da[i >> 1][(i & 1) * 2 + r] = dd;
                    *reinterpret_cast<uint32_t *>(sdST + pnl<WBN>(jl, i * 8 + 2 * t)) = dd;
                }
            }
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < WBM / 16; ++kk) {
                const uint64_t bo = gmma_desc(sdOa + kk * 16 * 128, WBM * 128, 1024);
                wgmma_rs_tb<T, D>(&dv[0][0], pa[kk], bo, 1);
            }
            auto issue_dk = [&]() {
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk) {
                    const uint64_t bq = gmma_desc(sQa + kk * 16 * 128, WBM * 128, 1024);
                    wgmma_rs_tb<T, D>(&dk[0][0], da[kk], bq, 1);
                }
                wgmma_commit();
            };
            // d = 64: only warpgroup 0 computes dQ; issuing dK on divergent paths
            // would make ptxas serialize every wgmma, so keep the old order there
            constexpr bool dk_after_dq = D == 128;
            if (dk_after_dq)
                wgmma_commit(); // dV; dK goes after dQ
            else
                issue_dk();
            bool dk_issued = !dk_after_dq;
            fence_proxy_async(); // dS^T stores -> the dQ wgmma (after the barrier), while dV runs
            // (a run-time test in the non-deterministic kernel, always true
            // there: without it ptxas schedules the loop differently from the
            // version measured, compared in SASS)
            if (DET || !p.deterministic) {
                if constexpr (DET) {
                    prefetch_sem(hq, m0); // this iteration's tile, added at the next
                } else if (bulk_dq && tid == 0) {
                    bulk_wait_read<1>(); // the reduction of iteration it-2 has read sdQ[st]
                }
                __syncthreads(); // dS^T of both warpgroups is in shared memory
                // warpgroup w: dQ[:, 64w .. 64w+63] (d = 128); d = 64: warpgroup 0 only
                if (D == 128 || wg == 0) {
                    float dq[8][4];
                    wgmma_fence();
#pragma unroll
                    for (int kk = 0; kk < WBN / 16; ++kk) {
                        const uint64_t a = gmma_desc(sdSa + kk * 16 * 128, WBM * 128, 1024);
                        const uint64_t b = gmma_desc(sKa + wg * (WBN * 128) + kk * 16 * 128, WBN * 128, 1024);
                        wgmma_ss_tt<T, 64>(&dq[0][0], a, b, kk > 0);
                    }
                    wgmma_commit();
                    if (dk_after_dq) {
                        wgmma_fence();
                        issue_dk(); // runs while the dQ tile is staged
                        dk_issued = true;
                        wgmma_wait<1>();
                    } else {
                        wgmma_wait<0>();
                    }
                    if (bulk_dq) {
                        float *tileq = sdQ + st * WBM * D;
#pragma unroll
                        for (int r = 0; r < 2; ++r) {
                            const int rl = warp * 16 + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
                            for (int c = 0; c < 8; ++c)
                                *reinterpret_cast<float2 *>(tileq + rl * D +
                                                            dqa_col(g, wg * 64 + c * 8 + 2 * t)) =
                                    make_float2(dq[c][2 * r], dq[c][2 * r + 1]);
                        }
                        fence_proxy_async();
                        prev_hq = hq;
                        prev_m0 = m0;
                    } else
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int i = m0 + warp * 16 + g + 8 * r;
                        if (i >= si.sq)
                            continue;
                        float *dst = p.dq_accum + ((int64_t)hq * p.total_q + si.q_off + i) * D;
#pragma unroll
                        for (int c = 0; c < 8; ++c)
                            red_add_f32x2(dst + dqa_col(g, wg * 64 + c * 8 + 2 * t), dq[c][2 * r],
                                          dq[c][2 * r + 1]);
                    }
                }
            }
            if (!dk_issued)
                issue_dk();
            wgmma_wait<0>();
            if (it + 1 < iters)
                store_stats(st ^ 1);
        }
        if (bulk_dq) {
            __syncthreads(); // the last tile is in sdQ
            release_dq();
            flush_dq((iters - 1) & 1);
            if (tid == 0)
                bulk_wait_all();
            release_dq();
        }
    }

    T *dkp = reinterpret_cast<T *>(p.dk) + si.k_off * k_stride + (int64_t)kvh * D;
    T *dvp = reinterpret_cast<T *>(p.dv) + si.k_off * k_stride + (int64_t)kvh * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int j = n0 + jr0 + 8 * r;
        if (j >= si.sk)
            continue;
#pragma unroll
        for (int c = 0; c < D / 8; ++c) {
            *reinterpret_cast<uint32_t *>(dkp + (int64_t)j * k_stride + c * 8 + 2 * t) =
                pack2<T>(dk[c][2 * r] * p.scale, dk[c][2 * r + 1] * p.scale);
            *reinterpret_cast<uint32_t *>(dvp + (int64_t)j * k_stride + c * 8 + 2 * t) =
                pack2<T>(dv[c][2 * r], dv[c][2 * r + 1]);
        }
    }
}

// Dsum[h, row] = sum_d dO * O - dLSE over real rows; 0 on padding rows.
template <typename T, int D> __global__ void bwd_preprocess_kernel(const fa4cp_kparams p) {
    constexpr int L = D / 8; // lanes per (row, head)
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t pair = gid / L;
    const int c = (int)(gid % L);
    const int64_t npairs = p.total_q * p.heads;
    const bool in = pair < npairs;
    const int64_t row = in ? pair / p.heads : 0;
    const int h = in ? (int)(pair % p.heads) : 0;
    float acc = 0.f;
    bool real = false;
    if (in) {
        real = row_is_real(p.cu_q, p.used_q, p.batch, row, nullptr, nullptr);
        if (real) {
            const int64_t off = (row * p.heads + h) * D + c * 8;
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
    for (int s = L / 2; s > 0; s >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, s);
    if (in && c == 0) {
        const int64_t idx = (int64_t)h * p.total_q + row;
        p.dsum[idx] = real ? acc - (p.dlse ? p.dlse[idx] : 0.f) : 0.f;
    }
}

// Rows of dq (which = 0) or dk/dv (which = 1): padding rows get exact zeros;
// real dq rows get scale * dq_accum when the atomic path ran.
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
    if (which == 1) {
        if (!real) {
            *reinterpret_cast<uint4 *>(reinterpret_cast<T *>(p.dk) + off) = zero;
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
        const float4 a = *reinterpret_cast<const float4 *>(src + dqa_col(r8, col));
        const float4 b = *reinterpret_cast<const float4 *>(src + dqa_col(r8, col + 4));
        const float s = p.scale;
        uint4 v;
        v.x = pack2<T>(a.x * s, a.y * s);
        v.y = pack2<T>(a.z * s, a.w * s);
        v.z = pack2<T>(b.x * s, b.y * s);
        v.w = pack2<T>(b.z * s, b.w * s);
        *reinterpret_cast<uint4 *>(dq) = v;
    }
}

static unsigned blocks_for(int64_t threads, int per_block) {
    return (unsigned)((threads + per_block - 1) / per_block);
}

template <typename T, int D> static cudaError_t launch_bwd(const fa4cp_kparams &p) {
    using W = BwdWgCfg<T, D>;
    cudaStream_t s = (cudaStream_t)p.stream;
    cudaError_t e;
    const int64_t q_elems = p.total_q * p.heads * D;
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
        const int64_t th = p.total_q * p.heads * (D / 8);
        bwd_preprocess_kernel<T, D><<<blocks_for(th, 256), 256, 0, s>>>(p);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    const int nb = (p.max_sk + WBN - 1) / WBN;
    const long long ycount = (long long)p.batch * p.kv_heads;
    if (nb > 0 && ycount > 0) { // also with no queries: real dk, dv rows get 0
        const long long ctas = (long long)nb * ycount;
        if (ctas > 0x7fffffffLL)
            return cudaErrorInvalidConfiguration;
        auto kern = p.deterministic ? bwd_dkdv_wg_kernel<T, D, true> : bwd_dkdv_wg_kernel<T, D, false>;
        if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, W::SMEM)) !=
            cudaSuccess)
            return e;
        // deterministic: only without a left window (see the kernel)
        const bool use_list = (!p.deterministic || p.window_left < 0) && p.sched &&
                              (int64_t)nb * p.batch + 1 <= p.sched_cap && !(p.tuning & 64);
        if (use_list) { // also the deterministic order (see the kernel)
            sched_kernel<true><<<1, SCHED_THREADS, 0, s>>>(p, nb, WBN, WBM, p.sched);
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
        }
        kern<<<(unsigned)ctas, 256, W::SMEM, s>>>(p, nb, use_list);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    if (p.total_q > 0) {
        bwd_finish_kernel<T, D><<<blocks_for(p.total_q * p.heads * (D / 8), 256), 256, 0, s>>>(p, 0);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    if (p.total_k > 0) {
        bwd_finish_kernel<T, D><<<blocks_for(p.total_k * p.kv_heads * (D / 8), 256), 256, 0, s>>>(p, 1);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

} // namespace fa4cp

extern "C" int fa4cp_kernel_attn_bwd(const fa4cp_kparams *p) {
    using namespace fa4cp;
    cudaError_t e;
    if (p->head_dim == 64)
        e = p->is_fp16 ? launch_bwd<__half, 64>(*p) : launch_bwd<__nv_bfloat16, 64>(*p);
    else if (p->head_dim == 128)
        e = p->is_fp16 ? launch_bwd<__half, 128>(*p) : launch_bwd<__nv_bfloat16, 128>(*p);
    else
        e = cudaErrorInvalidValue;
    return (int)e;
}
