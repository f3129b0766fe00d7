// attn_bwd_kernel.cuh - the FlashAttention backward for THD varlen inputs
// (sm_90a), one launcher template for every (head_dim, head_dim_v); the
// attn_bwd_d*.cu files instantiate it per head dim, attn_bwd.cu picks the
// instantiation.
//
//   1. preprocess: Dsum[h, row] = rowsum(dO * O) - dLSE (0 for padding rows);
//      it also zeroes dq_accum and (deterministic) the semaphores
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
// Two main kernels, by the way the work is shared (BwdShape):
//   rows  (head dims <= 128): bwd_ws_kernel (bwd_ws_kernel.cuh), 128-row KV
//         blocks, a producer warpgroup (TMA, dQ writer) and two MMA
//         warpgroups, warpgroup w owning KV rows 64w..64w+63.
//   roles (head dims 192, 256): bwd_dkdv_wg_kernel (below), 2 warpgroups,
//         64-row KV blocks; warpgroup 0 computes S^T, P^T and owns dV,
//         warpgroup 1 computes dP^T, dS^T (P^T handed over in shared memory,
//         fp32) and owns dK; both share dQ.  So each thread holds one 64 x D
//         accumulator (D / 2 fp32), which d 256 needs.  Q, dO loaded by
//         cp.async (double-buffered where shared memory allows).
// Head dims that are not a multiple of the panel width (64; bwd_ws_kernel at
// d 32/80/96: 32) are padded to one in shared memory (bwd_dkdv_wg_kernel:
// the padding columns zero-filled once; bwd_ws_kernel: by the TMA's zero
// fill): the products over the head dim (S^T, dP^T) step over the real
// columns only, the products whose N is the head dim (dV, dK, dQ) run over
// the padded width.  In the roles layout v and dO are padded to
// D_QK's width (MLA's (192, 128)), so that both warpgroups issue the same
// wgmma shapes.
#pragma once

#include "bwd_ws_kernel.cuh"

namespace fa4cp {

// ---------------------------------------------------------------- roles kernel
// Per 64-row query block:
//   warpgroup 0: S^T = K Q^T; warpgroup 1: dP^T = V dO^T (SS wgmma, K-major)
//   P^T (warpgroup 0) -> shared memory -> dS^T (warpgroup 1), in registers
//   dV += P^T dO (warpgroup 0), dK += dS^T Q (warpgroup 1)  (RS wgmma)
//   dQ  = dS K   (SS wgmma, dS^T staged in smem, both MN-major; 64-column
//                 chunks shared by the warpgroups)
// dQ goes to dq_accum by bulk reductions, in a fixed order when deterministic.
// The next block's loads and the dQ flush are issued behind S^T/dP^T.
// DET = p.deterministic (a template parameter, so that the semaphore code
// leaves the other instantiation alone).
template <typename T, int DQK, int DV, bool DET>
__global__ void __launch_bounds__(256, 1) bwd_dkdv_wg_kernel(const fa4cp_kparams p, int max_nb, bool use_list) {
    using C = BwdShape<DQK, DV>;
    constexpr int WBM = C::WBM, WBN = C::WBN, PK = C::PK;
    static_assert(C::ROLES, "head dims <= 128 run bwd_ws_kernel (bwd_ws_kernel.cuh)");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // 1024-byte aligned for the swizzled panels; offsetting the shared pointer
    // keeps its address space (LDS/STS instead of generic accesses)
    unsigned char *base = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    T *sK = reinterpret_cast<T *>(base);
    T *sV = sK + C::TK;
    T *sQ = sV + C::TV;                 // [STAGES]
    T *sdO = sQ + C::STAGES * C::TQ;    // [STAGES]
    T *sdST = sdO + C::STAGES * C::TDO; // [WBN kv rows][WBM query cols], one panel
    float *sP = reinterpret_cast<float *>(sdST + WBN * WBM); // roles: P^T, [32 / 4][128] float4
    float *sdQ = sP + C::SP_FLOATS;                          // [DQ_BUFS][WBM][DQK], dqa_col order
    float *sLse2 = sdQ + C::DQ_BUFS * WBM * DQK;             // [2][WBM]
    float *sDsum = sLse2 + 2 * WBM;                          // [2][WBM]

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
    const int64_t q_stride = (int64_t)H * DQK, k_stride = (int64_t)HK * DQK;
    const int64_t o_stride = (int64_t)H * DV, v_stride = (int64_t)HK * DV;
    const T *gk = reinterpret_cast<const T *>(p.k) + si.k_off * k_stride + (int64_t)kvh * DQK;
    const T *gv = reinterpret_cast<const T *>(p.v) + si.k_off * v_stride + (int64_t)kvh * DV;

    const int n_last = min(n0 + WBN, si.sk) - 1;
    int64_t i_min, i_max;
    rows_seeing(mk.off, p.window_left, p.window_right, si.sq, n0, n_last, i_min, i_max);
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

    // warpgroup 0 holds dV in acc_a, warpgroup 1 dK
    float acc_a[PK / 8][4];
#pragma unroll
    for (int i = 0; i < PK / 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            acc_a[i][j] = 0.f;

    const float sl2 = p.scale * kLog2e;
    // dq_sem of (head hq, this sequence, query block mb): 1 + hq * sem_head +
    // q_off / 64 + bi + mb.  Distinct over the sequences, since q_off / 64 +
    // ceil(sq / 64) <= (q_off + sq) / 64 + 1, and independent of max_sq (a
    // max_seqlen_q below a real length must not make tiles share a count).
    const int64_t sem_head = p.total_q / WBM + p.batch + 1;
    const int64_t sem_seq = 1 + si.q_off / WBM + bi;
    // this thread's KV rows (block-relative): jr0, jr0 + 8
    const int jr0 = warp * 16 + g;

    if (iters > 0) {
        if constexpr (C::PADDED) {
            // the padding columns of K, V, Q, dO: zero once (never loaded)
            uint4 *z = reinterpret_cast<uint4 *>(sK);
            constexpr int n16 = (C::TK + C::TV + C::STAGES * (C::TQ + C::TDO)) * (int)sizeof(T) / 16;
            for (int i = tid; i < n16; i += 256)
                z[i] = make_uint4(0, 0, 0, 0);
            __syncthreads(); // before the loads of the real columns land
        }
        load_rows_pn<T, WBN, DQK, 256>(sK, gk, k_stride, n0, si.sk, tid);
        load_rows_pn<T, WBN, DV, 256>(sV, gv, v_stride, n0, si.sk, tid);
        // Row statistics of the next query block are loaded into registers when
        // its tiles are issued and stored to shared memory at the end of the
        // iteration, so no warp waits on global memory before its wgmma.
        float pf_l2 = INFINITY, pf_ds = 0.f;
        auto issue = [&](int it) {
            const int st = C::STAGES == 2 ? it & 1 : 0;
            const int hq = kvh * G + it / nmb;
            const int m0 = m_of(it);
            const T *gq = reinterpret_cast<const T *>(p.q) + si.q_off * q_stride + (int64_t)hq * DQK;
            const T *gdo = reinterpret_cast<const T *>(p.dout) + si.q_off * o_stride + (int64_t)hq * DV;
            load_rows_pn<T, WBM, DQK, 256>(sQ + st * C::TQ, gq, q_stride, m0, si.sq, tid);
            load_rows_pn<T, WBM, DV, 256>(sdO + st * C::TDO, gdo, o_stride, m0, si.sq, tid);
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
        // dQ tiles go through shared memory (sdQ[it % DQ_BUFS]) and are added
        // to dq_accum by one bulk reduction (cp.reduce.async.bulk), issued by
        // thread 0 after the next barrier; it must finish reading a buffer
        // before that buffer is written again DQ_BUFS iterations later.
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
                float *dst = p.dq_accum + ((int64_t)prev_hq * p.total_q + si.q_off + prev_m0) * DQK;
                if constexpr (DET) {
                    if (nxt_seen != nxt_rank)
                        sem_wait_eq(nxt_sem, nxt_rank);
                    fence_proxy_async_global();
                    pend_sem = nxt_sem;
                }
                bulk_reduce_add_f32(dst, sdQ + buf * WBM * DQK, (uint32_t)rows * DQK * 4);
            }
            prev_hq = -1;
        };
        // the dQ tile of this thread's fragment (rows m0 + rl, columns col0 + 8c + 2t)
        auto stage_dq = [&](float *tileq, const float(*dq)[4], int col0, int ncols) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int rl = warp * 16 + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
                for (int c = 0; c < ncols / 8; ++c)
                    if (DQK % 64 == 0 || col0 + c * 8 < DQK)
                        *reinterpret_cast<float2 *>(tileq + rl * DQK + dqa_col<DQK>(g, col0 + c * 8 + 2 * t)) =
                            make_float2(dq[c][2 * r], dq[c][2 * r + 1]);
            }
        };
        auto red_dq = [&](int hq, int m0, const float(*dq)[4], int col0, int ncols) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int i = m0 + warp * 16 + g + 8 * r;
                if (i >= si.sq)
                    continue;
                float *dst = p.dq_accum + ((int64_t)hq * p.total_q + si.q_off + i) * DQK;
#pragma unroll
                for (int c = 0; c < ncols / 8; ++c)
                    if (DQK % 64 == 0 || col0 + c * 8 < DQK)
                        red_add_f32x2(dst + dqa_col<DQK>(g, col0 + c * 8 + 2 * t), dq[c][2 * r], dq[c][2 * r + 1]);
            }
        };
        for (int it = 0; it < iters; ++it) {
            const int st = it & 1;                          // statistics slot
            const int sb = C::STAGES == 2 ? st : 0;         // Q/dO buffer
            const int qb = C::DQ_BUFS == 2 ? st : 0;        // dQ staging buffer
            cp_async_wait<0>();
            fence_proxy_async();
            __syncthreads();
            const int hq = kvh * G + it / nmb;
            const int m0 = m_of(it);
            const uint32_t sQa = smem_u32(sQ + sb * C::TQ), sdOa = smem_u32(sdO + sb * C::TDO);
            const float *lse2 = sLse2 + st * WBM, *dsm = sDsum + st * WBM;

            float sT[WBM / 8][4];
            wgmma_fence();
            // warpgroup 0: S^T = K Q^T; warpgroup 1: dP^T = V dO^T (padded
            // to the same width, the same instructions); into sT
            gemm_ss_kmajor<T, WBM, PK, WBN * 128, WBM * 128>(&sT[0][0], wg ? sVa : sKa, wg ? sdOa : sQa);
            wgmma_commit();
            // behind the tensor-core work just issued
            if constexpr (DET) {
                release_dq(); // the reduction of iteration it-1 (of the tile of it-2)
                if (C::STAGES == 2 && it + 1 < iters) {
                    issue(it + 1);
                    cp_async_commit();
                }
                flush_dq(qb ^ (C::DQ_BUFS - 1)); // tile of iteration it-1
            } else {
                if (bulk_dq)
                    flush_dq(qb ^ (C::DQ_BUFS - 1)); // tile of iteration it-1
                if (C::STAGES == 2 && it + 1 < iters) {
                    issue(it + 1);
                    cp_async_commit();
                }
            }
            const bool need_mask = block_needs_mask_wg<WBM, WBN>(mk, p, m0, n0);
            uint32_t pa[WBM / 16][4], da[WBM / 16][4];
            auto p_from_s = [&]() {
                // P^T (in place of S^T): branch-free exp, the element mask in a
                // separate uniform branch
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
            };
            // dS^T = P^T (dP^T - Dsum): fragments pa (P^T), da (dS^T), and dS^T
            // into shared memory for dQ
            auto ds_from = [&](const float(*pT)[4], const float(*dp)[4]) {
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
                            pv[c] = pT[i][2 * r + c];
                            dsv[c] = pv[c] * (dp[i][2 * r + c] - dsr[i][c]);
                        }
                        const uint32_t pp = pack2<T>(pv[0], pv[1]), dd = pack2<T>(dsv[0], dsv[1]);
                        // A fragments: tile i -> k-step i/2, registers (i&1)*2 + r
                        pa[i >> 1][(i & 1) * 2 + r] = pp;
                        da[i >> 1][(i & 1) * 2 + r] = dd;
                        *reinterpret_cast<uint32_t *>(sdST + pnl<WBN>(jl, i * 8 + 2 * t)) = dd;
                    }
                }
            };
            wgmma_wait<0>();
            if (wg == 0) {
                p_from_s();
#pragma unroll
                for (int i = 0; i < WBM / 8; ++i)
                    reinterpret_cast<float4 *>(sP)[i * 128 + (tid & 127)] =
                        make_float4(sT[i][0], sT[i][1], sT[i][2], sT[i][3]);
                // P^T fragments
#pragma unroll
                for (int r = 0; r < 2; ++r)
#pragma unroll
                    for (int i = 0; i < WBM / 8; ++i)
                        pa[i >> 1][(i & 1) * 2 + r] = pack2<T>(sT[i][2 * r], sT[i][2 * r + 1]);
            }
            __syncthreads(); // P^T of warpgroup 0 in shared memory
            if (wg == 1) {
                float pT[WBM / 8][4];
#pragma unroll
                for (int i = 0; i < WBM / 8; ++i) {
                    const float4 v = reinterpret_cast<const float4 *>(sP)[i * 128 + (tid & 127)];
                    pT[i][0] = v.x;
                    pT[i][1] = v.y;
                    pT[i][2] = v.z;
                    pT[i][3] = v.w;
                }
                ds_from(pT, sT);
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk)
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                        pa[kk][j] = da[kk][j]; // the A operand of dK
            }
            // warpgroup 0: dV += P^T dO; warpgroup 1: dK += dS^T Q
            {
                const uint32_t bb = wg ? sQa : sdOa;
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk) {
                    const uint64_t b = gmma_desc(bb + kk * 16 * 128, WBM * 128, 1024);
                    wg_rs<T, PK>(&acc_a[0][0], pa[kk], b, 1);
                }
                wgmma_commit();
            }
            fence_proxy_async(); // dS^T stores -> the dQ wgmma (after the barrier)
            if constexpr (DET)
                prefetch_sem(hq, m0); // this iteration's tile, added at the next
            if (bulk_dq && tid == 0)
                bulk_wait_read<0>(); // one staging tile: the reduction of iteration it-1 has read it
            __syncthreads(); // dS^T in shared memory
#pragma unroll
            for (int rd = 0; rd < C::DQ_ROUNDS; ++rd) {
                const int pc = 2 * rd + wg; // chunk of DQ_N columns
                if ((PK / C::DQ_N) % 2 == 0 || pc < PK / C::DQ_N) {
                    float dq[C::DQ_N / 8][4];
                    wgmma_fence();
#pragma unroll
                    for (int kk = 0; kk < WBN / 16; ++kk) {
                        const uint64_t a = gmma_desc(sdSa + kk * 16 * 128, WBM * 128, 1024);
                        const uint64_t b = gmma_desc(sKa + pc * (C::DQ_N / 64) * (WBN * 128) + kk * 16 * 128,
                                                     WBN * 128, 1024);
                        wg_ss_tt<T, C::DQ_N>(&dq[0][0], a, b, kk > 0);
                    }
                    wgmma_commit();
                    wgmma_wait<0>();
                    if (bulk_dq)
                        stage_dq(sdQ, dq, pc * C::DQ_N, C::DQ_N);
                    else
                        red_dq(hq, m0, dq, pc * C::DQ_N, C::DQ_N);
                }
            }
            if (bulk_dq) {
                fence_proxy_async();
                prev_hq = hq;
                prev_m0 = m0;
            }
            wgmma_wait<0>();
            if (C::STAGES == 1 && it + 1 < iters) {
                __syncthreads(); // every read of sQ, sdO is done
                issue(it + 1);
                cp_async_commit();
            }
            if (it + 1 < iters)
                store_stats(st ^ 1);
        }
        if (bulk_dq) {
            __syncthreads(); // the last tile is in sdQ
            release_dq();
            flush_dq((iters - 1) % C::DQ_BUFS);
            if (tid == 0)
                bulk_wait_all();
            release_dq();
        }
    }

    T *dkp = reinterpret_cast<T *>(p.dk) + si.k_off * k_stride + (int64_t)kvh * DQK;
    T *dvp = reinterpret_cast<T *>(p.dv) + si.k_off * v_stride + (int64_t)kvh * DV;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int j = n0 + jr0 + 8 * r;
        if (j >= si.sk)
            continue;
        if (wg == 0) {
#pragma unroll
            for (int c = 0; c < PK / 8; ++c)
                if (c * 8 < DV)
                    *reinterpret_cast<uint32_t *>(dvp + (int64_t)j * v_stride + c * 8 + 2 * t) =
                        pack2<T>(acc_a[c][2 * r], acc_a[c][2 * r + 1]);
        } else {
#pragma unroll
            for (int c = 0; c < PK / 8; ++c)
                if (c * 8 < DQK)
                    *reinterpret_cast<uint32_t *>(dkp + (int64_t)j * k_stride + c * 8 + 2 * t) =
                        pack2<T>(acc_a[c][2 * r] * p.scale, acc_a[c][2 * r + 1] * p.scale);
        }
    }
}

// Dsum[h, row] = sum_d dO * O - dLSE over real rows; 0 on padding rows.  L
// lanes read a (row, head) pair's DV columns, 8 each; LP (a power of 2) lanes
// per pair.  The same lanes zero the pair's DQK floats of dq_accum (every
// row, padding included, as a memset of the whole workspace would), and
// threads 0 .. nsem - 1 the semaphores of a deterministic call (nsem = 0
// otherwise), so that no memset runs before this kernel.
template <typename T, int DQK, int DV> __global__ void bwd_preprocess_kernel(const fa4cp_kparams p, int64_t nsem) {
    constexpr int L = DV / 8;
    constexpr int LP = L <= 4 ? 4 : L <= 8 ? 8 : L <= 16 ? 16 : 32;
    static_assert(L <= 32, "head_dim_v up to 256");
    static_assert(DQK % 4 == 0, "dq_accum rows are zeroed by float4");
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid < nsem)
        p.dq_sem[gid] = 0;
    const int64_t pair = gid / LP;
    const int c = (int)(gid % LP);
    const int64_t npairs = p.total_q * p.heads;
    const bool in = pair < npairs;
    const int64_t row = in ? pair / p.heads : 0;
    const int h = in ? (int)(pair % p.heads) : 0;
    float acc = 0.f;
    bool real = false;
    if (in) {
        float4 *za = reinterpret_cast<float4 *>(p.dq_accum + ((int64_t)h * p.total_q + row) * DQK);
#pragma unroll
        for (int i = c; i < DQK / 4; i += LP)
            za[i] = make_float4(0.f, 0.f, 0.f, 0.f);
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

// The backward's last kernel, two parts by block:
//   blocks [0, dq_blocks): the rows of dq, 8 elements a thread: real rows
//     get scale * dq_accum, padding rows exact zeros;
//   the rest: exact zeros in the padding rows of dk and dv, one warp per 32
//     rows of the key tensor: each lane tells whether its row is padding,
//     and a warp whose rows are all real (every row, when the sequences
//     leave no gaps) leaves at once; else the warp zeros its padding rows
//     one at a time, every row kv_heads * DQK (dk) and kv_heads * DV (dv)
//     contiguous elements.
template <typename T, int DQK, int DV> __global__ void bwd_finish_kernel(const fa4cp_kparams p, int64_t dq_blocks) {
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if ((int64_t)blockIdx.x >= dq_blocks) {
        const int64_t wid = (((int64_t)blockIdx.x - dq_blocks) * blockDim.x + threadIdx.x) >> 5;
        const int lane = threadIdx.x & 31;
        const int64_t row = wid * 32 + lane;
        const bool pad = row < p.total_k && !row_is_real(p.cu_k, p.used_k, p.batch, row, nullptr, nullptr);
        unsigned m = __ballot_sync(0xffffffffu, pad);
        const int64_t nk = (int64_t)p.kv_heads * (DQK / 8), nv = (int64_t)p.kv_heads * (DV / 8); // uint4 a row
        while (m) {
            const int64_t r = wid * 32 + __ffs(m) - 1;
            m &= m - 1;
            uint4 *dk = reinterpret_cast<uint4 *>(reinterpret_cast<T *>(p.dk) + r * nk * 8);
            uint4 *dv = reinterpret_cast<uint4 *>(reinterpret_cast<T *>(p.dv) + r * nv * 8);
            for (int64_t i = lane; i < nk; i += 32)
                dk[i] = zero;
            for (int64_t i = lane; i < nv; i += 32)
                dv[i] = zero;
        }
        return;
    }
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t per_row = (int64_t)p.heads * (DQK / 8);
    if (gid >= p.total_q * per_row)
        return;
    const int64_t row = gid / per_row;
    const int64_t off = gid * 8; // element offset (rows are contiguous)
    int64_t start = 0;
    const bool real = row_is_real(p.cu_q, p.used_q, p.batch, row, &start, nullptr);
    T *dq = reinterpret_cast<T *>(p.dq) + off;
    if (!real) {
        *reinterpret_cast<uint4 *>(dq) = zero;
    } else {
        const int h = (int)((gid / (DQK / 8)) % p.heads);
        const int col = (int)(gid % (DQK / 8)) * 8;
        const int r8 = (int)((row - start) & 7);
        const float *src = p.dq_accum + ((int64_t)h * p.total_q + row) * DQK;
        const float4 a = *reinterpret_cast<const float4 *>(src + dqa_col<DQK>(r8, col));
        const float4 b = *reinterpret_cast<const float4 *>(src + dqa_col<DQK>(r8, col + 4));
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
    constexpr int SMEM = W::template smem<T>();
    static_assert(SMEM <= 227 * 1024, "the backward's shared memory exceeds the 227 KB of an sm_90 CTA");
    cudaStream_t s = (cudaStream_t)p.stream;
    cudaError_t e;
    // the preprocess zeroes dq_accum and, deterministic, the semaphores
    // (also with no queries: the main kernel's CTAs take tickets from them)
    const int64_t nsem = p.deterministic ? fa4cp_kernel_bwd_sem_count(&p) : 0;
    if (p.total_q > 0 || nsem > 0) {
        constexpr int LP = DV / 8 <= 4 ? 4 : DV / 8 <= 8 ? 8 : DV / 8 <= 16 ? 16 : 32;
        const int64_t th = p.total_q * p.heads * LP;
        bwd_preprocess_kernel<T, DQK, DV><<<blocks_for(th > nsem ? th : nsem, 256), 256, 0, s>>>(p, nsem);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    const int nb = (p.max_sk + W::WBN - 1) / W::WBN;
    // Query rows per step of bwd_ws_kernel: 80 for dense d 128 calls (FA3's
    // non-causal tile; FA4CP_CUDA_TUNING 131072: 64), else 64.
    constexpr bool CAN80 = DQK == 128 && DV == 128;
    const bool t80 = CAN80 && p.window_left < 0 && p.window_right < 0 && !(p.tuning & 131072);
    // 128 for d 32, 64 (FA3's 128 x 128 tile; FA4CP_CUDA_TUNING 262144: 64)
    constexpr bool CAN128 = !W::ROLES && W::PK <= 64 && W::PV <= 64;
    const bool t128 = CAN128 && !(p.tuning & 262144);
    const int wbm = t80 ? 80 : t128 ? 128 : W::WBM;
    const long long ycount = (long long)p.batch * p.kv_heads;
    if (nb > 0 && ycount > 0) { // also with no queries: real dk, dv rows get 0
        const long long ctas = (long long)nb * ycount;
        if (ctas > 0x7fffffffLL)
            return cudaErrorInvalidConfiguration;
        // deterministic: only without a left window (see the kernel)
        const bool use_list = (!p.deterministic || p.window_left < 0) && p.sched &&
                              (int64_t)nb * p.batch + 1 <= p.sched_cap && !(p.tuning & 64);
        // one sequence, no left window: the list is known (bwd_list_closed)
        if (use_list && (W::ROLES || !bwd_list_closed(p))) { // also the deterministic order (see the kernel)
            sched_kernel<true><<<1, SCHED_THREADS, 0, s>>>(p, nb, W::WBN, wbm, p.sched);
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
        }
        if constexpr (!W::ROLES) {
            if constexpr (CAN80) {
                e = t80 ? launch_bwd_ws<T, DQK, DV, 80>(p, ctas, nb, use_list)
                        : launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list);
            } else if constexpr (CAN128) {
                e = t128 ? launch_bwd_ws<T, DQK, DV, 128>(p, ctas, nb, use_list)
                         : launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list);
            } else {
                e = launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list);
            }
            if (e != cudaSuccess)
                return e;
        } else {
            auto kern =
                p.deterministic ? bwd_dkdv_wg_kernel<T, DQK, DV, true> : bwd_dkdv_wg_kernel<T, DQK, DV, false>;
            if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM)) != cudaSuccess)
                return e;
            kern<<<(unsigned)ctas, 256, SMEM, s>>>(p, nb, use_list);
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
        }
    }
    // dq, and the padding rows of dk and dv, in one kernel
    const int64_t dq_blocks = blocks_for(p.total_q * p.heads * (DQK / 8), 256);
    const int64_t fin_blocks = dq_blocks + blocks_for(p.total_k, 256); // 8 warps of 32 key rows a block
    if (fin_blocks > 0x7fffffffLL)
        return cudaErrorInvalidConfiguration;
    if (fin_blocks > 0) {
        bwd_finish_kernel<T, DQK, DV><<<(unsigned)fin_blocks, 256, 0, s>>>(p, dq_blocks);
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
