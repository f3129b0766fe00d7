// bwd_ws_kernel.cuh - the warp-specialised dK/dV/dQ backward kernel, after
// FA3/FA4's sm90 design (shared/reference/hopper-bwd.md sections 1-4), and
// its launcher: the "rows" layout (head dims <= 128, BwdShape) described
// here, the "wide" one (d_qk 192, d 256) at bwd_ws_mma_wide, which shares
// the producer warpgroup (TMA lane, dQ writer) and the work decoding.
//
// CTA = 3 warpgroups (384 threads; wide: 4 at d_qk 192), one per (128-row KV
// block, kv head, sequence), from the longest-first work list (attn_sched.cuh) or, when
// deterministic, by tickets (bwd_ws_work).
// Thread 0 decodes the CTA's work into shared memory (BwdWsInfo) before the
// roles split; every role follows the steps (query head, WBM-row query
// block) with its own counter (BwdWsStep).  WBM = 64, or 80 for dense and
// causal d 128 calls (FA3's non-causal tile, BwdWsCfg): S^T, dP^T at m64n80,
// dV, dK with 5 k16 steps, dQ^T = K^T dS^T per d-half (dS stored K-major for
// it), one dQ staging tile, a window only in the WIN kernel (causal: a right
// window without a left one; launch_bwd_ws refuses one otherwise); or 128 at d 32/64
// (FA3's d64 tile): S^T, dP^T at m64n128, dQ split along the query rows.
//   warpgroup 0 (setmaxnreg.dec to 24): warp 0 lane 0 loads, warp 1 writes
//     dQ, the rest leave.
//     - TMA lane: K and V once (ragged THD tensor maps, built once per call),
//       then per step Q with its LSE values (a 1-D map over [heads][total_q];
//       the box starts at a 16-byte boundary, up to 3 rows early) on
//       q_full[s], dO with its Dsum values on do_full[s], into 2-stage rings
//       (s = step & 1): full barriers count 1 (arrive.expect_tx), empty
//       barriers count 8 (lane 0 of each MMA warp, after __syncwarp).  Where
//       the 1-D maps cannot be made, warps 2 and 3 load the same values by
//       plain loads and store them (full barriers count 1 + 32).
//     - dQ writer: waits until both MMA warpgroups have staged the step's
//       fp32 dQ tile in sdQ[s] (named barrier DQ_FULL + s: 256 arrive + 32
//       sync), adds it to dq_accum with one cp.reduce.async.bulk, and once
//       the bulk copy has read it hands the buffer back (DQ_EMPTY + s: 32
//       arrive + 256 sync); under DP per warpgroup plane (below).
//       Deterministic: before the reduction it spins
//       until the tile's semaphore equals this KV block's rank; after, it
//       waits for the reduction to complete and bumps the semaphore.
//   warpgroups 1, 2 (setmaxnreg.inc to 240): the MMA warpgroups; warpgroup w
//     owns KV rows 64w..64w+63 and holds their dK and dV in registers.  Per
//     step:
//       wait Q; S^T = K Q^T; wait dO; dP^T = V dO^T; P^T = exp2(S^T * scale
//       * log2 e - LSE * log2 e) under dP^T, then the element mask (keys past
//       the sequence or out of the window, query rows past the sequence:
//       their LSE belongs to another row); dS^T = P^T (dP^T - Dsum) ->
//       sdS[s]; dV += P^T dO (RS); bar PdS (256: both halves of dS^T
//       stored); dQ = dS K (SS; at d 128 warpgroup w the columns 64w..,
//       at a padded width of 64 warpgroup 0 alone); dK += dS^T Q (RS);
//       dV, dQ done -> release dO; stage dQ after DQ_EMPTY, DQ_FULL;
//       dK done -> release Q.
//     No CTA-wide barrier in the loop: dS^T is double-buffered (a warpgroup
//     writes sdS[s] again two steps later, after the other one has passed
//     the PdS barrier of the step between, i.e. finished its dQ product of
//     step s), and so are the dQ staging tiles.
// Shared memory holds only what the TMA, wgmma and the bulk copy engine
// read or write, the thread-0 BwdWsInfo (written before a __syncthreads),
// and dS^T / dQ (between the MMA warpgroups and the writer, behind named
// barriers).
// Head dims that are not a multiple of 64 (32, 80, 96) are stored in 32-column
// panels with the 64-byte swizzle (BwdShape::PW), so S^T and dP^T step over
// the real columns and dV, dK run N = 32 or 96; d 80 is padded to 96 by the
// TMA's zero fill of columns past the tensor's width.  dQ: warpgroup 0
// alone at N = the width (32); at 96 (d 80, 96) the loop is
// bwd_ws_mma_rows96 (warpgroup 0 computes dQ at N = 96, the warpgroups not
// in step, V in registers).
#pragma once

#include "bwd_common.cuh"
#include "launch_cache.cuh"
#include "sm90_prim.cuh"

namespace fa4cp {

// What a CTA does, decoded once by thread 0 into shared memory: every role
// reads it from there by volatile loads when it needs a term, instead of
// keeping the terms in registers (the producer warpgroup has 24, the MMA
// warpgroups need all of their 240; a deterministic CTA's terms come from a
// ticket in memory, which ptxas cannot recompute as it does from blockIdx).
struct BwdWsInfo {
    long long q_off, k_off, off; // sequence starts; off = sk - sq
    int sq, sk, kvh, bi, n_block, n0;
    int q0, nmb, stagger, iters; // q0: the walk's first row (bwd_walk_start); iters < 0: no work (the CTA leaves)
    int hq_end, g, hin; // BwdWsStep: the group's query heads end at hq_end; hin: heads inner
};

struct BwdWsBars {
    uint64_t q_full[2], q_empty[2], do_full[2], do_empty[2], kv_full;
    BwdWsInfo gi;
    // SP (the rows loop): the step's LSE (stage s) and Dsum (stage s) are in
    // the thread order of the MMA warps' fragments (bwd_stat_pos), LSE times
    // -log2 e (the producer's warps 2 and 3, 32 arrivals)
    uint64_t lse_full[2], dsum_full[2];
};

// SP: where query row q (0..WBM-1) of a step's statistics goes: the rows 8i +
// 2t + c (i < WBM / 8, c 0..1) that the lanes t = lane & 3 of an MMA warp
// read (S^T / dP^T fragments: query rows along N) are the WBM / 4 floats
// from BWD_STAT_TS(WBM) t, i.e. WBM / 16 16-byte loads a thread instead of
// WBM / 4 4-byte ones.  The 4 distinct 16-byte words a warp reads lie in
// distinct bank groups (20 t: banks 0, 20, 8, 28; 36 t: 0, 4, 8, 12): one
// wavefront.
#define BWD_STAT_TS(WBM) ((WBM) == 80 ? 20 : (WBM) / 4 + 4)
// SI: the step's m0 and mask flag (two ints) at this float of the LSE stage
#define BWD_STAT_SI(WBM) (4 * BWD_STAT_TS(WBM))
template <int WBM> __device__ __forceinline__ int bwd_stat_pos(int q) {
    return ((q >> 1) & 3) * BWD_STAT_TS(WBM) + (q >> 3) * 2 + (q & 1);
}

// The step counter of a role: step it works on query head kvh * G + it / nmb
// and the WBM query rows from q0 + ((it + stagger) % nmb) * WBM (deterministic:
// descending), followed without divisions.  q0 (bwd_walk_start, attn_sched.cuh):
// the first row that sees the KV block rounded down to a multiple of 8, or
// (deterministic, FA4CP_CUDA_TUNING 2^36) to a multiple of WBM, so that the
// deterministic steps are the query blocks of the semaphores.  Deterministic
// with gi.hin (the default; FA4CP_CUDA_TUNING 33554432: off): the query heads
// inner, the rows from q0 + (nmb - 1 - it / G) * WBM and head kvh * G + it % G,
// so that the KV
// blocks of a GQA group that add to one query tile in turn (the semaphores)
// reach it at the same step count and stay one step apart, instead of a
// KV block with fewer query blocks per head catching up with the one before
// it at every head and waiting for it.
template <bool DET> struct BwdWsStep {
    int hq, k = 0; // (heads inner: k counts the query blocks)
    __device__ __forceinline__ explicit BwdWsStep(int hq0) : hq(hq0) {}
    __device__ __forceinline__ int m0(const volatile BwdWsInfo &gi, int WBM) const {
        const int nmb = gi.nmb;
        int mi = DET ? nmb - 1 - k : k + gi.stagger;
        if (!DET && mi >= nmb)
            mi -= nmb;
        return gi.q0 + mi * WBM;
    }
    __device__ __forceinline__ void next(const volatile BwdWsInfo &gi) {
        if (DET && gi.hin) {
            if (++hq == gi.hq_end) {
                hq -= gi.g;
                ++k;
            }
        } else if (++k == gi.nmb) {
            k = 0;
            ++hq;
        }
    }
};

// WBM_: query rows per step, 64, or 80 (dense and causal d 128: FA3's non-causal tile),
// or 128 (d 32, 64: FA3's 128 x 128 tile).
// At 80 rows the dQ product runs transposed, dQ^T = K^T dS^T (wgmma's M is
// 64: warpgroup w the d-half 64w.., N = 80), with dS (not dS^T) in shared
// memory, K-major ([query rows][keys], 64-key panels); one dQ staging tile
// (two would not fit in 227 KB).
// At 128 rows S^T, dP^T are m64n128 per warpgroup and dQ = dS K is split
// along M: warpgroup w the query rows 64w.. (A: dS^T's panel w), all
// columns; two dQ staging tiles where they fit (d 32), else one (d 64).
template <typename T, int DQK_, int DV_, int WBM_ = BwdShape<DQK_, DV_>::WBM> struct BwdWsCfg {
    using S = BwdShape<DQK_, DV_>;
    static constexpr int DQK = DQK_, DV = DV_;
    static constexpr int WBM = WBM_, WBN = S::WBN, PK = S::PK, PV = S::PV;
    static constexpr int PW = S::PW, RB = 2 * PW; // panel width (columns), bytes per panel row
    // dQ = dS K: both warpgroups, N = 64 each (columns 64w..), or warpgroup 0
    // alone, N = PK
    static constexpr bool DQ2 = PK > 64;
    static constexpr bool DQM = WBM == 128; // dQ split along M (query rows)
    static constexpr int DQN = DQ2 ? 64 : PK;
    static constexpr bool DQT = WBM % 64 != 0; // dQ^T = K^T dS^T
    static_assert(WBM == 64 || (WBM == 80 && PK == 128 && PV == 128 && PW == 64) ||
                      (WBM == 128 && PK <= 64 && PV <= 64),
                  "80-row query blocks: d 128 only; 128-row: d <= 64");
    // wide layout (d_qk 192, 256): 3 MMA warpgroups at d_qk 192 (PPW = 1
    // head-dim panel of dK^T, dV^T, dQ each), 2 at 256 (PPW = 2); one dQ
    // staging tile (DQ_BUFS below: two never fit); one dO stage at d_v > 128,
    // one Q stage at d 256; P^T and dS^T (one buffer each) where rows keep
    // the two dS^T buffers
    static constexpr bool WIDE = S::WIDE;
    static_assert(!WIDE || (WBM == 64 && PW == 64 && (PK == 192 || PK == 256)),
                  "wide layout: d_qk 192 or 256, 64-row query blocks");
    static constexpr int NWG = WIDE && PK == 192 ? 3 : 2; // MMA warpgroups
    static constexpr int PPW = PK / 64 / NWG;
    // rows layout at a padded width of 96 (d 80, 96), 64-row steps: dQ by
    // warpgroup 0 alone at N = 96, the warpgroups not kept in step
    // (bwd_ws_mma_rows96)
    static constexpr bool DQW = !WIDE && WBM == 64 && PW == 32 && PK == 96 && PV == 96;
    // threads; named barrier counts (dQ staging: the MMA threads that stage
    // dQ + the writer warp)
    static constexpr int NT = 128 * (1 + NWG), NC = 128 * NWG, NDQ = (DQW ? 128 : NC) + 32;
    static constexpr int Q_STAGES = WIDE && PK > 192 ? 1 : 2, DO_STAGES = WIDE && PV > 128 ? 1 : 2;
    // tile bytes (the TMA's count the zero-filled columns past the width too)
    static constexpr int TILE_K = WBN * PK * 2, TILE_V = WBN * PV * 2;
    static constexpr int TILE_Q = WBM * PK * 2, TILE_DO = WBM * PV * 2;
    static constexpr int TILE_DS = WBN * WBM * 2, TILE_DQ = WBM * DQK * 4;
    // wide, two Q and two dO stages ((192, 128)): a second dS^T tile after
    // the barriers (OFF_DS2; the other offsets stay), for bwd_ws_mma_wide's
    // variant 2
    static constexpr bool DS2 = WIDE && Q_STAGES == 2 && DO_STAGES == 2;
    static constexpr int OFF_K = 0, OFF_V = OFF_K + TILE_K, OFF_Q = OFF_V + TILE_V;
    static constexpr int OFF_DO = OFF_Q + Q_STAGES * TILE_Q, OFF_DS = OFF_DO + DO_STAGES * TILE_DO;
    // Row statistics (LSE, Dsum) of a step: the STAT_BOX floats from row
    // srow & ~3 of the [heads][total_q] arrays (the TMA wants a 16-byte
    // aligned start; the step's rows begin srow & 3 floats in), in stages of
    // STAT_STRIDE floats (128-byte aligned)
    static constexpr int STAT_BOX = WBM + 4, STAT_STRIDE = (STAT_BOX + 31) / 32 * 32;
    // two dQ staging tiles where they fit in 227 KB (128 rows: d 32 two, d 64 one)
    static constexpr int DQ_BUFS = DQT || OFF_DS + 2 * TILE_DS + 2 * TILE_DQ + 4 * STAT_STRIDE * 4 +
                                                  (int)sizeof(BwdWsBars) + 1024 >
                                              232448
                                       ? 1
                                       : 2;
    static constexpr int OFF_DQ = OFF_DS + 2 * TILE_DS, OFF_LSE = OFF_DQ + DQ_BUFS * TILE_DQ;
    static constexpr int OFF_DSUM = OFF_LSE + 2 * STAT_STRIDE * 4, OFF_BAR = OFF_DSUM + 2 * STAT_STRIDE * 4;
    static constexpr int OFF_DS2 = (OFF_BAR + (int)sizeof(BwdWsBars) + 1023) / 1024 * 1024;
    static constexpr int SMEM = (DS2 ? OFF_DS2 + TILE_DS : OFF_BAR + (int)sizeof(BwdWsBars)) + 1024; // + alignment slack
    static constexpr int REG_P = 24, REG_C = NWG == 3 ? 160 : 240;
    // named barriers (0 is __syncthreads); wide: BAR_PDS_FREE, every MMA
    // warpgroup is done with the last step's P^T, dS^T
    static constexpr int BAR_PDS = 1, BAR_DQ_FULL = 2, BAR_DQ_EMPTY = 4; // + buffer
    static constexpr int BAR_PDS_FREE = 6;
    // DQW: BAR_PDS (dS^T buffer 0) and BAR_PDS1 (buffer 1), both halves of
    // dS^T stored; BAR_DSFREE + buffer, warpgroup 0's dQ has read it
    static constexpr int BAR_PDS1 = 7, BAR_DSFREE = 8;
    // PP (bwd_ws_mma_rows128pp): BAR_PP_P + 2b + v, the other warpgroup's
    // half of dS^T is in sdS[b] (warpgroup v syncs); BAR_PP_F + 2b + v,
    // the other warpgroup's dQ has read sdS[b] (warpgroup v may write it);
    // BAR_PP_GO, warpgroup 0's first products are issued (the start offset);
    // BAR_DQ_EMPTY + w, the writer has read warpgroup w's half of the dQ tile
    static constexpr int BAR_PP_P = 6, BAR_PP_F = 10, BAR_PP_GO = 14;
    static_assert(SMEM <= 232448, "the tiles must fit in 227 KB of shared memory");
    static_assert(OFF_DS % 1024 == 0 && TILE_Q % 1024 == 0 && TILE_DO % 1024 == 0, "1024-byte aligned panels");
    static_assert(OFF_LSE % 128 == 0 && OFF_DSUM % 128 == 0 && STAT_STRIDE * 4 % 128 == 0 &&
                      STAT_BOX <= STAT_STRIDE && STAT_BOX * 4 % 16 == 0,
                  "the statistics' TMA boxes: 128-byte aligned destinations, whole 16-byte units");
    static_assert(128 * REG_P + NC * REG_C <= NT * (65536 / NT / 8 * 8),
                  "register split within the CTA's launch allocation");
};

// A compile-time bool as a value (a generic lambda's template argument).
template <bool B> struct BoolC {
    static constexpr bool value = B;
};

// A copy of x that the compiler cannot see through.
__device__ __forceinline__ int opaque_int(int x) {
    int y;
    asm volatile("mov.b32 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

// The work of a CTA: (kv head, sequence, KV block) of ticket tk or of
// blockIdx.x; false: none.  Deterministic: the dQ additions to a query tile
// go in ascending KV-block order (the dQ writer waits on the tile's
// semaphore for its rank).  A CTA takes its work by a ticket (dq_sem[0]),
// in the order the CTAs start, from an order in which the KV blocks of each
// (sequence, kv head) ascend: the work list when there is no left window
// (its costs then do not grow with the block and its sort is stable), else
// sequence, KV block, kv head.  So a CTA only ever waits for CTAs that are
// already running.
// With the work list, the kv heads go in sections of hs heads: inside a
// section entry (longest first) then kv head, the sections one after the
// other (bwd_head_section, attn_sched.cuh: where one kv head's work per SM
// is under half the longest entry, hs heads' covers it, so the longest-first
// order holds over the call; else hs = 1, the kv head slowest, so that the
// CTAs running at a time share few heads, whose Q, dO and dq_accum stay in
// L2: at B*S = 32k, d 128, 16 heads, one head's are 16 MB, all heads' 256
// MB).  hs comes from the list kernel (sched[sched_cap - 1]), or for the
// closed form from the first and last KV blocks' costs (exact for the
// linear costs of a causal or dense sequence).  FA4CP_CUDA_TUNING 65536:
// one section (the kv head fastest); 16777216: sections of one head (the
// kv head slowest).
// Deterministic, the sections are at least nsm / (the longest entry's steps)
// heads wide (bwd_head_section's det_g), so that the KV blocks of one query
// tile's chain do not start faster than its turns pass on.
// The deterministic order stays deadlock-free: the KV blocks of a (sequence,
// head) still take their tickets in ascending order.
template <int WBM, int WBN, bool DET>
__device__ __forceinline__ bool bwd_ws_work(const fa4cp_kparams &p, int max_nb, bool use_list, int nsm, int tk,
                                            int &kvh, int &bi, int &n_block) {
    const int HK = p.kv_heads;
    const int w = DET ? tk : (int)blockIdx.x;
    if (use_list) {
        const bool closed = bwd_list_closed(p); // (attn_sched.cuh)
        const int ne = closed ? min((seq_info(p, 0).sk + WBN - 1) / WBN, max_nb) : p.sched[0];
        if (ne <= 0)
            return false;
        int hs;
        if (p.tuning & 65536) {
            hs = HK;
        } else if (p.tuning & 16777216) {
            hs = 1;
        } else if (closed) {
            const long long c0 = max(entry_cost<true>(p, 0, 0, WBN, WBM), 0);
            const long long c1 = max(entry_cost<true>(p, 0, ne - 1, WBN, WBM), 0);
            hs = bwd_head_section(c0, (c0 + c1) * ne / 2, nsm, bwd_det_g(p));
        } else {
            hs = p.sched[p.sched_cap - 1];
        }
        hs = min(max(hs, 1), HK);
        const int per = ne * hs;
        const int sec = w / per;
        const int h0 = sec * hs;
        if (h0 >= HK)
            return false;
        const int hn = min(hs, HK - h0);
        const int rem = w - sec * per;
        const int idx = rem / hn;
        kvh = h0 + (rem - idx * hn);
        if (idx >= ne) // (past the last, narrower section's entries)
            return false;
        const int e = closed ? idx : p.sched[1 + idx];
        bi = e / max_nb;
        n_block = e % max_nb;
    } else if (DET) {
        kvh = tk % HK;
        n_block = (tk / HK) % max_nb;
        bi = tk / (HK * max_nb);
        if (n_block >= (seq_info(p, bi).sk + WBN - 1) / WBN)
            return false;
    } else {
        kvh = blockIdx.x % HK;
        bi = (blockIdx.x / HK) % p.batch;
        const int nb_rev = blockIdx.x / (HK * p.batch);
        const int nnb0 = (seq_info(p, bi).sk + WBN - 1) / WBN;
        if (nb_rev >= nnb0)
            return false;
        n_block = nnb0 - 1 - nb_rev;
    }
    return true;
}

// Fills gi for the CTA (thread 0).
template <int WBM, int WBN, bool DET>
__device__ __forceinline__ void bwd_ws_info(BwdWsInfo &gi, const fa4cp_kparams &p, int max_nb, bool use_list,
                                            int nsm) {
    int kvh = 0, bi = 0, n_block = 0;
    const int tk = DET ? atomicAdd(p.dq_sem, 1) : 0;
    if (!bwd_ws_work<WBM, WBN, DET>(p, max_nb, use_list, nsm, tk, kvh, bi, n_block)) {
        gi.iters = -1;
        return;
    }
    const SeqInfo si = seq_info(p, bi);
    const int n0 = n_block * WBN;
    const Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
    const int n_last = min(n0 + WBN, si.sk) - 1;
    int64_t i_min, i_max;
    rows_seeing(mk.off, p.window_left, p.window_right, si.sq, n0, n_last, i_min, i_max);
    // the walk: nmb steps of WBM rows from q0 (attn_sched.cuh; entry_cost
    // counts the same steps)
    int q0 = 0, nmb = 0;
    if (i_min <= i_max) {
        const bool aligned = bwd_walk_aligned(p, DET);
        q0 = (int)bwd_walk_start(i_min, WBM, aligned);
        nmb = bwd_walk_steps(i_min, i_max, WBM, aligned);
    }
    gi.q_off = si.q_off;
    gi.k_off = si.k_off;
    gi.off = mk.off;
    gi.sq = si.sq;
    gi.sk = si.sk;
    gi.kvh = kvh;
    gi.bi = bi;
    gi.n_block = n_block;
    gi.n0 = n0;
    gi.q0 = q0;
    gi.nmb = nmb;
    // the KV blocks of a head start their walk over the
    // query blocks at different places (non-deterministic); deterministic:
    // query blocks descending
    gi.stagger = (p.tuning & 1) || DET || nmb == 0 ? 0 : n_block % nmb;
    const int G = p.heads / p.kv_heads;
    gi.iters = nmb * G;
    gi.g = G;
    gi.hq_end = (kvh + 1) * G;
    gi.hin = !(p.tuning & 33554432);
}

// The MMA warpgroups of the wide layout (d_qk 192 and 256; BwdWsCfg::WIDE),
// after FA3's d192 / d256 designs (shared/reference/hopper-bwd.md section 1:
// dK/dV swapped, P and dS through shared memory): NWG warpgroups (3 at d_qk
// 192 over a 96-row KV block, 2 at 256 over a 64-row one), per 64-row query
// step:
//   S = Q K^T and dP = dO V^T, warpgroup w the keys 32w..32w+31 (SS, N 32);
//   P = exp2(S * scale * log2 e - LSE * log2 e), the element mask, dS = P (dP
//   - Dsum); after BAR_PDS_FREE (every warpgroup is done with the last step's
//   products; not at (192, 128), variant 2 below) P^T and dS^T into shared
//   memory ([WBN keys][64 query rows], one panel, stmatrix.trans), then
//   BAR_PDS;
//   for the head-dim panels PPW w .. PPW w + PPW - 1 (PPW = 1 at 192, 2 at
//   256): dV^T[panel] += dO^T P, dQ[:, panel] = dS K, dK^T[panel] += Q^T dS
//   (SS: dO, Q, K read MN-major, P^T, dS^T K-major);
//   dV done -> release dO, dQ done -> stage dQ (BAR_DQ_EMPTY, BAR_DQ_FULL as
//   the rows layout, one staging tile), dK done -> release Q.  At d 256
//   (one Q stage) dK^T is issued first; at d_qk 192 (two Q stages) a step's
//   dK^T goes out in the next step, after its S and dP (PIPE below); with
//   two dO stages ((192, 128)) dO is released once dV and dQ are done.
// So each thread holds dK^T and dV^T of PPW 64-row head-dim panels x WBN keys
// (2 x 48 registers at 192, 2 x 64 at 256).  At d_v 128 warpgroup 2 has no
// dV panel: it skips the dV product (a branch around those wgmmas, with
// warpgroup.arrive at both ends: without them ptxas put one inside the
// branch and serialised every wgmma, C7520).
// Variants V (bwd_wide_variant), chosen once for the whole CTA, so that
// every warpgroup syncs each named barrier at one instruction:
//   2 (the default at (192, 128): two Q and two dO stages, BwdWsCfg::DS2):
//     two dS^T buffers (a step writes buffer it & 1; the second tile,
//     OFF_DS2, after the barriers) and no BAR_PDS_FREE: the BAR_DQ_EMPTY
//     sync of the last step's dQ staging comes after every warpgroup's last
//     dV and dQ (P^T, dS^T read), and the pipelined dK^T of step it - 1, the
//     one reader left, reads the other buffer.  1.01-1.02 of the one-buffer
//     loop on the H200 (2026-11-29 R3, docs/performance.md "hd192");
//   0 (d192, d256; at (192, 128) FA4CP_CUDA_TUNING 268435456): one dS^T
//     buffer and BAR_PDS_FREE, as above;
//   1 (67108864, QF, (192, 128)): variant 0 with dQ before dV, dQ staged
//     while dV runs (measured no faster: 0.98-1.02 at (192, 128)).
// (dQ added to dq_accum from registers by red.global.add.v2.f32 instead, no
// staging tile, no writer, one named barrier a step, ran 0.70-0.77 of this
// loop at (192, 128): the L2's reductions of single sectors became the
// limit, L2 69 % busy and the tensor pipe 35 % against 50 %; dropped, R2.)
template <typename C> __device__ __forceinline__ int bwd_wide_variant(const fa4cp_kparams &p) {
    if constexpr (C::DS2) { // (DS2: wide, two Q and two dO stages)
        if (p.tuning & 67108864)
            return 1;
        return p.tuning & 268435456 ? 0 : 2;
    }
    return 0;
}

template <typename T, typename C, bool DET, int V = -1>
__device__ __forceinline__ void bwd_ws_mma_wide(const fa4cp_kparams &p, BwdWsBars *bars,
                                                const volatile BwdWsInfo &gi, uint32_t sb, unsigned char *base,
                                                int tid) {
    if constexpr (V < 0) {
        if constexpr (C::DS2) {
            const int v = bwd_wide_variant<C>(p);
            if (v == 1) {
                bwd_ws_mma_wide<T, C, DET, 1>(p, bars, gi, sb, base, tid);
                return;
            }
            if (v == 2) {
                bwd_ws_mma_wide<T, C, DET, 2>(p, bars, gi, sb, base, tid);
                return;
            }
        }
        bwd_ws_mma_wide<T, C, DET, 0>(p, bars, gi, sb, base, tid);
        return;
    }
    constexpr bool QF = V == 1;
    // dS^T buffers (V 2: two, the second at OFF_DS2)
    constexpr int NB_DS = V == 2 ? 2 : 1;
    constexpr int WBM = C::WBM, WBN = C::WBN, DQK = C::DQK, DV = C::DV, NC = C::NC, PPW = C::PPW;
    constexpr int NKW = WBN / C::NWG; // keys of S, dP per warpgroup
    static_assert(NKW % 16 == 0 && WBM == 64, "wide layout: 16-key steps of the transposed stores");
    // With two Q stages the dK^T product of a step is issued in the next one,
    // after its S and dP, so that it runs under that step's softmax (the Q
    // stage is released once it completes, half a step before the Q load
    // that reuses it is needed); at the first step it adds the zeroed dS^T
    // (times that step's Q).
    constexpr bool PIPE = C::Q_STAGES == 2;
    const int ctid = tid - 128;
    const int cwg = ctid >> 7, lane = tid & 31;
    const float *sLse = reinterpret_cast<const float *>(base + C::OFF_LSE);
    const float *sDsum = reinterpret_cast<const float *>(base + C::OFF_DSUM);
    float *sdQ = reinterpret_cast<float *>(base + C::OFF_DQ);
    T *sPT = reinterpret_cast<T *>(base + C::OFF_DS); // P^T, then dS^T: [WBN keys][WBM query rows]
    T *sdST = sPT + WBN * WBM;

    // dV^T, dK^T of head-dim panels PPW cwg + i: rows 64 (PPW cwg + i) + .., keys 8c + ..
    float acc_v[PPW][WBN / 8][4], acc_k[PPW][WBN / 8][4];
#pragma unroll
    for (int i = 0; i < PPW; ++i)
#pragma unroll
        for (int c = 0; c < WBN / 8; ++c)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                acc_v[i][c][j] = 0.f;
                acc_k[i][c][j] = 0.f;
            }
    wgmma_fence();

    if (gi.iters > 0) {
        const float sl2 = p.scale * kLog2e;
        const uint32_t sKa = sb + C::OFF_K, sVa = sb + C::OFF_V;
        const uint32_t sPa = sm90::smem_addr(sPT), sdSa = sm90::smem_addr(sdST);
        // buffer b's P^T, dS^T
        constexpr int DS1 = C::OFF_DS2 - (C::OFF_DS + C::TILE_DS); // (V 2) dS^T buffer 1, from buffer 0
        auto dst_at = [&](int b) { return NB_DS > 1 ? sdSa + b * DS1 : sdSa; };
        // dK^T[panel] += Q^T dS  (A: Q's panel, MN-major; B: dS^T, K-major)
        auto gemm_dk = [&](uint32_t qa, uint32_t dsa) {
            const int w = opaque_int(ctid) >> 7;
            const GDesc<128> ga(qa + PPW * w * (WBM * 128), WBM * 128, 1024), gb(dsa, 16, 1024);
#pragma unroll
            for (int i = 0; i < PPW; ++i)
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk)
                    wg_ss_tk<T, WBN>(&acc_k[i][0][0], ga.at(i * (WBM * 128) + kk * 16 * 128), gb.at(kk * 32), 1);
            wgmma_commit();
        };
        auto release = [&](uint64_t *bar) {
            __syncwarp();
            if (lane == 0)
                sm90::mbar_arrive(sm90::smem_addr(bar));
        };
        if constexpr (PIPE) {
            // the first step's pipelined dK^T reads dS^T (buffer 1 where
            // there are two): zero it
            uint4 *z = reinterpret_cast<uint4 *>(reinterpret_cast<unsigned char *>(sdST) + (NB_DS > 1 ? DS1 : 0));
            for (int i = ctid; i < WBN * WBM * 2 / 16; i += NC)
                z[i] = make_uint4(0, 0, 0, 0);
            fence_proxy_async();
            sm90::named_sync(C::BAR_PDS, NC);
        }
        sm90::mbar_wait(sm90::smem_addr(&bars->kv_full), 0);
        BwdWsStep<DET> st(gi.kvh * (p.heads / p.kv_heads));
        for (int it = 0; it < gi.iters; ++it) {
            const int s = C::Q_STAGES == 2 ? it & 1 : 0;
            const uint32_t ph = C::Q_STAGES == 2 ? ((uint32_t)it >> 1) & 1 : (uint32_t)it & 1;
            const int sd = C::DO_STAGES == 2 ? it & 1 : 0;
            const uint32_t phd = C::DO_STAGES == 2 ? ((uint32_t)it >> 1) & 1 : (uint32_t)it & 1;
            // (an opaque copy of the thread's index each step, as the rows layout)
            const int ct = opaque_int(ctid);
            const int g = (ct & 31) >> 2, t = ct & 3, ln = ct & 31;
            const int wr = ((ct >> 5) & 3) * 16; // this warp's query rows (S), head-dim rows (dK^T, dV^T)
            const int w = ct >> 7, kw = w * NKW; // this warpgroup's keys of S, dP
            const uint32_t sQa = sb + C::OFF_Q + s * C::TILE_Q, sdOa = sb + C::OFF_DO + sd * C::TILE_DO;
            const int m0 = st.m0(gi, WBM);
            const int sdel = (int)(((int64_t)st.hq * p.total_q + gi.q_off + m0) & 3);
            const float *lse2 = sLse + s * C::STAT_STRIDE + sdel, *dsm = sDsum + sd * C::STAT_STRIDE + sdel;
            st.next(gi);
            const uint32_t sPs = sPa, sdSs = dst_at(it & 1); // this step's P^T, dS^T
            const bool need_mask = m0 + WBM > gi.sq || block_needs_mask_wg<WBM, WBN>(
                                                           Mask{gi.off, p.window_left, p.window_right, gi.sk}, p, m0,
                                                           gi.n0);
            float sS[NKW / 8][4], dP[NKW / 8][4];
            sm90::mbar_wait(sm90::smem_addr(&bars->q_full[s]), ph);
            wgmma_fence();
            gemm_ss_kmajor<T, NKW, DQK, WBM * 128, WBN * 128, 128, true>(&sS[0][0], sQa, sKa + kw * 128);
            wgmma_commit();
            sm90::mbar_wait(sm90::smem_addr(&bars->do_full[sd]), phd);
            wgmma_fence();
            gemm_ss_kmajor<T, NKW, DV, WBM * 128, WBN * 128, 128, true>(&dP[0][0], sdOa, sVa + kw * 128);
            wgmma_commit();
            if constexpr (PIPE)
                gemm_dk(it > 0 ? sb + C::OFF_Q + (s ^ 1) * C::TILE_Q : sQa, dst_at((it & 1) ^ 1)); // the last step's dK^T
            wgmma_wait<PIPE ? 2 : 1>(); // S is ready
            {
                // rows wr + g, wr + g + 8; an LSE of -inf gives +inf, masked below
                const float nl0 = lse2[wr + g] * -kLog2e, nl1 = lse2[wr + g + 8] * -kLog2e;
#pragma unroll
                for (int c = 0; c < NKW / 8; ++c) {
                    sS[c][0] = ex2_ftz(fmaf(sS[c][0], sl2, nl0));
                    sS[c][1] = ex2_ftz(fmaf(sS[c][1], sl2, nl0));
                    sS[c][2] = ex2_ftz(fmaf(sS[c][2], sl2, nl1));
                    sS[c][3] = ex2_ftz(fmaf(sS[c][3], sl2, nl1));
                }
            }
            if (need_mask) {
                // Mask's bounds in 32 bits, relative to the block (64-bit
                // ones spilled): element (query m0 + qq, key n0 + jj) is
                // masked iff qq >= qlim, jj >= jlim, jj - qq > dhi (key past
                // hi) or jj - qq < dlo (before lo)
                const int n0 = gi.n0;
                const int qlim = gi.sq - m0, jlim = gi.sk - n0;
                const int64_t rel = (int64_t)m0 - n0 + gi.off;
                auto clamp32 = [](int64_t x) { return (int)(x < -(1 << 30) ? -(1 << 30) : x > (1 << 30) ? (1 << 30) : x); };
                const int dhi = p.window_right < 0 ? (1 << 30) : clamp32(rel + p.window_right);
                const int dlo = p.window_left < 0 ? -(1 << 30) : clamp32(rel - p.window_left);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int qq = wr + g + 8 * r;
#pragma unroll
                    for (int c = 0; c < NKW / 8; ++c)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int jj = kw + c * 8 + 2 * t + e;
                            if (qq >= qlim || jj >= jlim || jj - qq > dhi || jj - qq < dlo)
                                sS[c][2 * r + e] = 0.f;
                        }
                }
            }
            wgmma_wait<PIPE ? 1 : 0>(); // dP is ready
            uint32_t pp[NKW / 8][2], dd[NKW / 8][2];
            {
                const float ds0 = dsm[wr + g], ds1 = dsm[wr + g + 8];
#pragma unroll
                for (int c = 0; c < NKW / 8; ++c) {
                    pp[c][0] = pack2<T>(sS[c][0], sS[c][1]);
                    pp[c][1] = pack2<T>(sS[c][2], sS[c][3]);
                    dd[c][0] = pack2<T>(sS[c][0] * (dP[c][0] - ds0), sS[c][1] * (dP[c][1] - ds0));
                    dd[c][1] = pack2<T>(sS[c][2] * (dP[c][2] - ds1), sS[c][3] * (dP[c][3] - ds1));
                }
            }
            if constexpr (PIPE) {
                wgmma_wait<0>(); // the last step's dK^T is done
                if (it > 0)
                    release(&bars->q_empty[s ^ 1]);
            }
            if constexpr (V < 2)
                sm90::named_sync(C::BAR_PDS_FREE, NC); // every warpgroup is done with the last P^T, dS^T
            // P^T, dS^T by stmatrix.trans: matrix i of 16-key step q16 is keys
            // kw + 16 q16 + 8 (i >> 1), query rows wr + 8 (i & 1); lane l gives
            // the address of its (transposed) row l & 7, a key
#pragma unroll
            for (int q16 = 0; q16 < NKW / 16; ++q16) {
                const int mi = ln >> 3;
                const int off = pnl<WBN>(kw + 16 * q16 + 8 * (mi >> 1) + (ln & 7), wr + 8 * (mi & 1));
                asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                                 sPs + 2 * off),
                             "r"(pp[2 * q16][0]), "r"(pp[2 * q16][1]), "r"(pp[2 * q16 + 1][0]), "r"(pp[2 * q16 + 1][1])
                             : "memory");
                asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                                 sdSs + 2 * off),
                             "r"(dd[2 * q16][0]), "r"(dd[2 * q16][1]), "r"(dd[2 * q16 + 1][0]), "r"(dd[2 * q16 + 1][1])
                             : "memory");
            }
            fence_proxy_async(); // P^T, dS^T stores -> every warpgroup's wgmma
            sm90::named_sync(C::BAR_PDS, NC);
            wgmma_fence();
            // dV^T[panel] += dO^T P  (A: dO's panel, MN-major; B: P^T, K-major),
            // dK^T[panel] += Q^T dS  (A: Q's panel, MN-major; B: dS^T, K-major),
            // dQ[:, panel] = dS K  (A: dS^T, MN-major; B: K's panel, MN-major),
            // for the panels PPW w + i; dK first where Q has one stage (its
            // release lets the next Q load run under dV and dQ)
            auto gemm_dv = [&]() {
                static_assert(DV == DQK || PPW == 1, "a warpgroup without dV panels: one panel each");
                if (DV == DQK || PPW * w < DV / 64) { // ((192, 128): not warpgroup 2)
                    if constexpr (DV < DQK)
                        wgmma_fence();
                    const GDesc<128> ga(sdOa + PPW * w * (WBM * 128), WBM * 128, 1024), gb(sPs, 16, 1024);
#pragma unroll
                    for (int i = 0; i < PPW; ++i)
#pragma unroll
                        for (int kk = 0; kk < WBM / 16; ++kk)
                            wg_ss_tk<T, WBN>(&acc_v[i][0][0], ga.at(i * (WBM * 128) + kk * 16 * 128), gb.at(kk * 32),
                                             1);
                }
                if constexpr (DV < DQK)
                    wgmma_fence();
                wgmma_commit(); // (an empty group without dV panels)
            };
            float dq[PPW][8][4];
            auto gemm_dq = [&]() {
                const GDesc<128> ga(sdSs, WBM * 128, 1024), gb(sKa + PPW * w * (WBN * 128), WBN * 128, 1024);
#pragma unroll
                for (int i = 0; i < PPW; ++i)
#pragma unroll
                    for (int kk = 0; kk < WBN / 16; ++kk)
                        wg_ss_tt<T, 64>(&dq[i][0][0], ga.at(kk * 16 * 128), gb.at(i * (WBN * 128) + kk * 16 * 128),
                                        kk > 0);
                wgmma_commit();
            };
            auto stage_dq = [&]() {
                sm90::named_sync(C::BAR_DQ_EMPTY, C::NDQ); // the bulk copy has read sdQ (step it-1)
#pragma unroll
                for (int i = 0; i < PPW; ++i)
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int rl = wr + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
                        for (int c = 0; c < 8; ++c)
                            *reinterpret_cast<float2 *>(sdQ + rl * DQK +
                                                        dqa_col<DQK>(g, (PPW * w + i) * 64 + c * 8 + 2 * t)) =
                                make_float2(dq[i][c][2 * r], dq[i][c][2 * r + 1]);
                    }
                fence_proxy_async();
                sm90::named_arrive(C::BAR_DQ_FULL, C::NDQ);
            };
            if constexpr (!PIPE) {
                gemm_dk(sQa, sdSs);
                gemm_dv();
                gemm_dq();
                wgmma_wait<2>(); // dK done
                release(&bars->q_empty[s]);
                wgmma_wait<1>(); // dV done
                release(&bars->do_empty[sd]);
                wgmma_wait<0>();
                stage_dq();
            } else if constexpr (C::DO_STAGES == 1) {
                gemm_dv();
                gemm_dq();
                // (the next dO load waits for this release: as early as
                // possible)
                wgmma_wait<1>(); // dV done
                release(&bars->do_empty[sd]);
                wgmma_wait<0>(); // dQ done
                stage_dq();
            } else if constexpr (!QF) {
                gemm_dv();
                gemm_dq();
                // (one wait: with two dO stages, waiting for dV first to
                // release dO earlier cost 3-5 %)
                wgmma_wait<0>(); // dV, dQ done
                release(&bars->do_empty[sd]);
                stage_dq();
            } else {
                // dQ first, staged while dV runs
                gemm_dq();
                gemm_dv();
                wgmma_wait<1>(); // dQ done
                stage_dq();
                wgmma_wait<0>(); // dV done
                release(&bars->do_empty[sd]);
            }
        }
        if constexpr (PIPE) {
            // the last step's dK^T
            wgmma_fence();
            const int last = gi.iters - 1; // (one volatile load)
            gemm_dk(sb + C::OFF_Q + (last & 1) * C::TILE_Q, dst_at(last & 1));
            wgmma_wait<0>();
        }
    }

    // dK = scale * (dK^T)^T, dV: element (head-dim row d, key j) of the
    // fragments to row n0 + j, column d
    const int64_t k_stride = (int64_t)p.kv_heads * DQK, v_stride = (int64_t)p.kv_heads * DV;
    T *dkp = reinterpret_cast<T *>(p.dk) + gi.k_off * k_stride + (int64_t)gi.kvh * DQK;
    T *dvp = reinterpret_cast<T *>(p.dv) + gi.k_off * v_stride + (int64_t)gi.kvh * DV;
    const int n0 = gi.n0, sk = gi.sk;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < PPW; ++i) {
        const int d0 = (PPW * cwg + i) * 64 + ((ctid >> 5) & 3) * 16 + g;
        const bool has_v = (PPW * cwg + i) * 64 < DV;
#pragma unroll
        for (int c = 0; c < WBN / 8; ++c)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = n0 + c * 8 + 2 * t + e;
                if (j >= sk)
                    continue;
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int d = d0 + 8 * r;
                    dkp[(int64_t)j * k_stride + d] = static_cast<T>(acc_k[i][c][2 * r + e] * p.scale);
                    if (has_v)
                        dvp[(int64_t)j * v_stride + d] = static_cast<T>(acc_v[i][c][2 * r + e]);
                }
            }
    }
}

// The end of a rows-layout MMA warpgroup: the thread's rows jr0 and jr0 + 8
// of the CTA's KV block (jr0 = row0 + lane / 4, row0 its warp's first row;
// those below sk) of dK, scaled by the softmax scale, and dV, from its
// registers.
template <typename T, int DQK, int DV, int PK, int PV>
__device__ __forceinline__ void bwd_rows_store_dkdv(const fa4cp_kparams &p, const volatile BwdWsInfo &gi,
                                                    const float (&acc_k)[PK / 8][4],
                                                    const float (&acc_v)[PV / 8][4], int row0, int lane) {
    const int64_t k_stride = (int64_t)p.kv_heads * DQK, v_stride = (int64_t)p.kv_heads * DV;
    T *dkp = reinterpret_cast<T *>(p.dk) + gi.k_off * k_stride + (int64_t)gi.kvh * DQK;
    T *dvp = reinterpret_cast<T *>(p.dv) + gi.k_off * v_stride + (int64_t)gi.kvh * DV;
    const int n0 = gi.n0, sk = gi.sk;
    const int g = lane >> 2, t = lane & 3;
    const int jr0 = row0 + g; // this thread's KV rows: jr0, jr0 + 8
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int j = n0 + jr0 + 8 * r;
        if (j >= sk)
            continue;
#pragma unroll
        for (int c = 0; c < PK / 8; ++c)
            if (c * 8 < DQK)
                *reinterpret_cast<uint32_t *>(dkp + (int64_t)j * k_stride + c * 8 + 2 * t) =
                    pack2<T>(acc_k[c][2 * r] * p.scale, acc_k[c][2 * r + 1] * p.scale);
#pragma unroll
        for (int c = 0; c < PV / 8; ++c)
            if (c * 8 < DV)
                *reinterpret_cast<uint32_t *>(dvp + (int64_t)j * v_stride + c * 8 + 2 * t) =
                    pack2<T>(acc_v[c][2 * r], acc_v[c][2 * r + 1]);
    }
}

// The element mask of a rows-layout step on a thread's S^T accumulators
// (P^T after the exp2): 0 where the key (KV row jr0 + 8r of the block) or
// the query (row m0 + i * 8 + 2t + c of the sequence) is past its sequence,
// or the key lies outside the query's window.  (The rows loop's general
// case and bwd_ws_mma_rows128pp.)
template <int WBM>
__device__ __forceinline__ void bwd_mask_sT(float (&sT)[WBM / 8][4], const volatile BwdWsInfo &gi,
                                            const fa4cp_kparams &p, int m0, int jr0, int t) {
    const int sk = gi.sk, n0 = gi.n0, sq = gi.sq;
    const Mask mk{gi.off, p.window_left, p.window_right, sk};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int64_t j = n0 + jr0 + 8 * r;
#pragma unroll
        for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int64_t qi = m0 + i * 8 + 2 * t + c;
                if (qi >= sq || j >= sk || j < mk.lo(qi) || j > mk.hi(qi))
                    sT[i][2 * r + c] = 0.f;
            }
    }
}

// dS^T = P^T (dP^T - Dsum) of a thread's S^T / dP^T accumulators (query
// columns i * 8 + 2t and + 1 of row block i) as the A fragments of the next
// products: pa (P^T, for dV) and da (dS^T, for dK); dsm: the step's Dsum
// values in shared memory.  (bwd_ws_mma_rows96 and bwd_ws_mma_rows128pp.)
template <typename T, int WBM>
__device__ __forceinline__ void bwd_pds_frags(const float (&sT)[WBM / 8][4], const float (&dpT)[WBM / 8][4],
                                              const float *dsm, int t, uint32_t (&pa)[WBM / 16][4],
                                              uint32_t (&da)[WBM / 16][4]) {
#pragma unroll
    for (int i = 0; i < WBM / 8; ++i) {
        const float dsr[2] = {dsm[i * 8 + 2 * t], dsm[i * 8 + 2 * t + 1]};
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float p0 = sT[i][2 * r], p1 = sT[i][2 * r + 1];
            pa[i >> 1][(i & 1) * 2 + r] = pack2<T>(p0, p1);
            da[i >> 1][(i & 1) * 2 + r] =
                pack2<T>(p0 * (dpT[i][2 * r] - dsr[0]), p1 * (dpT[i][2 * r + 1] - dsr[1]));
        }
    }
}

// The MMA warpgroups of the rows layout at a padded width of 96 (d 80, 96:
// 32-column panels; BwdWsCfg::DQW), after FA4's d96 tile: warpgroup W (this
// copy's, 0 or 1) owns KV rows 64W..64W+63 as in the rows layout, but dQ =
// dS K is computed by warpgroup 0 alone at N = 96 (8 k16 steps over the 128
// keys; no padded columns), and the two warpgroups are not kept in step:
//   warpgroup 1: S^T, dP^T, P^T, dS^T as the rows layout; waits on
//     BAR_DSFREE + s (warpgroup 0's dQ of step it-2 has read sdS[s]) before
//     it stores its half of dS^T, then arrives on BAR_PDS_S(s) and issues dV
//     and dK, releasing dO and Q as they complete: it never waits for
//     warpgroup 0 otherwise, so it runs up to a step ahead and its softmax
//     overlaps warpgroup 0's products on the tensor pipe;
//   warpgroup 0: S^T, dP^T, P^T, dS^T; dV and dK issued; waits on
//     BAR_PDS_S(s) (both halves of dS^T in sdS[s]); dQ (SS: dS^T MN-major,
//     K MN-major, N = 96); releases dO and Q once dV and dK are done, hands
//     sdS[s] back (BAR_DSFREE + s) once dQ is, stages dQ (BAR_DQ_EMPTY,
//     BAR_DQ_FULL with the writer: 128 + 32 threads).
// Two PdS barriers (one per dS^T buffer), so that warpgroup 1 one step ahead
// never arrives twice on a barrier warpgroup 0 has not yet synced.
// dS^T goes to shared memory by stmatrix (4 per thread and step instead of
// 32 32-bit stores); the element mask in 32-bit block-relative bounds (as
// the wide layout's); the wgmma descriptors as a low word made once per
// operand plus an immediate per k step (GDesc).  VR (the default;
// FA4CP_CUDA_TUNING 134217728: off): V of the warpgroup's 64 KV rows held in
// registers (24 per thread, loaded once by ldmatrix), dP^T = V dO^T as an RS
// product, which halves its shared-memory reads (FA3's d96 choice).
// Each copy runs the loop without branches on the warpgroup, so that no
// wgmma sits on a divergent path (ptxas would serialise them all).
// Measured and not kept (H200, 2026-11-29 12:40, docs/performance.md):
// warpgroup 0 issuing dQ before dK, and the warpgroups taking turns at dQ
// step by step (both within noise of this order).
template <typename T, typename C, bool DET, int W, bool VR>
__device__ __forceinline__ void bwd_ws_mma_rows96(const fa4cp_kparams &p, BwdWsBars *bars,
                                                  const volatile BwdWsInfo &gi, uint32_t sb, unsigned char *base,
                                                  int tid) {
    constexpr int WBM = C::WBM, WBN = C::WBN, PK = C::PK, PV = C::PV, DQK = C::DQK, DV = C::DV;
    constexpr int PW = C::PW, RB = C::RB, NQB = C::DQ_BUFS;
    static_assert(WBM == 64 && WBN == 128 && PW == 32 && PK == 96 && PV == 96, "rows layout at a width of 96");
    const int ctid = tid - 128;
    const int warp = (ctid >> 5) & 3, lane = tid & 31;
    const float *sLse = reinterpret_cast<const float *>(base + C::OFF_LSE);
    const float *sDsum = reinterpret_cast<const float *>(base + C::OFF_DSUM);
    float *sdQ = reinterpret_cast<float *>(base + C::OFF_DQ);
    T *sdS = reinterpret_cast<T *>(base + C::OFF_DS); // [2][WBN kv rows][WBM query cols]

    float acc_v[PV / 8][4], acc_k[PK / 8][4]; // dV, dK of this warpgroup's 64 KV rows
#pragma unroll
    for (int i = 0; i < PV / 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            acc_v[i][j] = 0.f;
            acc_k[i][j] = 0.f;
        }
    wgmma_fence(); // the zeroed accumulators, before any wgmma

    if (gi.iters > 0) {
        const float sl2 = p.scale * kLog2e;
        const uint32_t sKa = sb + C::OFF_K, sVa = sb + C::OFF_V;
        sm90::mbar_wait(sm90::smem_addr(&bars->kv_full), 0);
        // VR: the A fragments of V (rows 64W + 16 warp .., k step kk = columns
        // 16kk..): ldmatrix.x4, lane l the row 16 warp + (l & 15), 16-byte
        // chunk 2 (kk & 1) + (l >> 4) of panel kk >> 1, 64-byte swizzle
        // (chunk c of row r at c ^ ((r >> 1) & 3))
        uint32_t vf[VR ? PV / 16 : 1][4];
        if constexpr (VR) {
            const int r = W * 64 + warp * 16 + (lane & 15);
#pragma unroll
            for (int kk = 0; kk < PV / 16; ++kk) {
                const int c = (2 * (kk & 1) + (lane >> 4)) ^ ((r >> 1) & 3);
                ldmatrix_x4(vf[kk], sVa + (kk >> 1) * (WBN * RB) + r * RB + c * 16);
            }
        }
        BwdWsStep<DET> st(gi.kvh * (p.heads / p.kv_heads));
        const int iters = gi.iters;
        // one step (a lambda: the form measured)
        auto step = [&](const int it) {
            const int s = it & 1;
            const uint32_t ph = ((uint32_t)it >> 1) & 1;
            // (an opaque copy of the thread's index each step, as the rows layout)
            const int ct = opaque_int(ctid);
            const int g = (ct & 31) >> 2, t = ct & 3, ln = ct & 31, wr = ((ct >> 5) & 3) * 16;
            const int jr0 = W * 64 + wr + g;
            const uint32_t sQa = sb + C::OFF_Q + s * C::TILE_Q, sdOa = sb + C::OFF_DO + s * C::TILE_DO;
            const uint32_t sdSa = sb + C::OFF_DS + s * C::TILE_DS;
            T *sdST = sdS + s * (WBN * WBM);

            float sT[WBM / 8][4], dpT[WBM / 8][4];
            const int m0 = st.m0(gi, WBM);
            const int sdel = (int)(((int64_t)st.hq * p.total_q + gi.q_off + m0) & 3);
            const float *lse2 = sLse + s * C::STAT_STRIDE + sdel, *dsm = sDsum + s * C::STAT_STRIDE + sdel;
            st.next(gi);
            const bool need_mask = m0 + WBM > gi.sq || block_needs_mask_wg<WBM, WBN>(
                                                           Mask{gi.off, p.window_left, p.window_right, gi.sk}, p, m0,
                                                           gi.n0);
            sm90::mbar_wait(sm90::smem_addr(&bars->q_full[s]), ph);
            wgmma_fence();
            gemm_ss_kmajor<T, WBM, DQK, WBN * RB, WBM * RB, RB, true>(&sT[0][0], sKa + W * 64 * RB, sQa);
            wgmma_commit();
            sm90::mbar_wait(sm90::smem_addr(&bars->do_full[s]), ph);
            wgmma_fence();
            if constexpr (VR) {
                // dP^T = V dO^T: A = V from registers, B = dO K-major (the
                // MN-major form of dO^T)
                const GDesc<RB> gdo(sdOa, 16, 8 * RB);
#pragma unroll
                for (int kk = 0; kk < DV / 16; ++kk)
                    wg_rs_kb<T, WBM>(&dpT[0][0], vf[kk],
                                     gdo.at((kk >> 1) * (WBM * RB) + (kk & 1) * 32), kk > 0);
            } else {
                gemm_ss_kmajor<T, WBM, DV, WBN * RB, WBM * RB, RB, true>(&dpT[0][0], sVa + W * 64 * RB, sdOa);
            }
            wgmma_commit();

            // -LSE * log2(e) of this thread's query columns, loaded while S^T runs
            float nl[WBM / 8][2];
#pragma unroll
            for (int i = 0; i < WBM / 8; ++i) {
                nl[i][0] = lse2[i * 8 + 2 * t] * -kLog2e;
                nl[i][1] = lse2[i * 8 + 2 * t + 1] * -kLog2e;
            }
            wgmma_wait<1>(); // S^T is ready; dP^T may still be running
#pragma unroll
            for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    sT[i][2 * r] = ex2_ftz(fmaf(sT[i][2 * r], sl2, nl[i][0]));
                    sT[i][2 * r + 1] = ex2_ftz(fmaf(sT[i][2 * r + 1], sl2, nl[i][1]));
                }
            if (need_mask) {
                // element (query m0 + qq, key n0 + jj) is masked iff qq >=
                // qlim, jj >= jlim, jj - qq > dhi (key past hi) or jj - qq <
                // dlo (before lo): Mask's bounds relative to the block
                const int n0 = gi.n0;
                const int qlim = gi.sq - m0, jlim = gi.sk - n0;
                const int64_t rel = (int64_t)m0 - n0 + gi.off;
                auto clamp32 = [](int64_t x) {
                    return (int)(x < -(1 << 30) ? -(1 << 30) : x > (1 << 30) ? (1 << 30) : x);
                };
                const int dhi = p.window_right < 0 ? (1 << 30) : clamp32(rel + p.window_right);
                const int dlo = p.window_left < 0 ? -(1 << 30) : clamp32(rel - p.window_left);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int jj = jr0 + 8 * r;
#pragma unroll
                    for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
                        for (int c = 0; c < 2; ++c) {
                            const int qq = i * 8 + 2 * t + c;
                            if (qq >= qlim || jj >= jlim || jj - qq > dhi || jj - qq < dlo)
                                sT[i][2 * r + c] = 0.f;
                        }
                }
            }
            wgmma_wait<0>();
            // dS^T = P^T (dP^T - Dsum): fragments pa (P^T), da (dS^T)
            uint32_t pa[WBM / 16][4], da[WBM / 16][4];
            bwd_pds_frags<T, WBM>(sT, dpT, dsm, t, pa, da);
            if constexpr (W == 1) {
                if (it >= 2) // warpgroup 0's dQ of step it-2 has read sdS[s]
                    sm90::named_sync(C::BAR_DSFREE + s, 256);
            }
            // dS^T into sdS[s] by stmatrix: da[kk] are the 8x8 blocks (key rows
            // 8 (m & 1), query tile 2kk + (m >> 1)) m = 0..3 of the warp's 16
            // rows; lane l the address of row l & 7 of block l >> 3
            {
                const int m = ln >> 3;
                const int row = W * 64 + wr + 8 * (m & 1) + (ln & 7);
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk) {
                    const uint32_t addr = smem_u32(sdST + pnl<WBN>(row, (2 * kk + (m >> 1)) * 8));
                    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                                 "r"(da[kk][0]), "r"(da[kk][1]), "r"(da[kk][2]), "r"(da[kk][3])
                                 : "memory");
                }
            }
            fence_proxy_async(); // dS^T stores -> the dQ wgmma
            if constexpr (W == 1)
                sm90::named_arrive(s ? C::BAR_PDS1 : C::BAR_PDS, 256);
            // dV += P^T dO, dK += dS^T Q (RS)
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < WBM / 16; ++kk)
                wg_rs<T, PV>(&acc_v[0][0], pa[kk], GDesc<RB>(sdOa, WBM * RB, 8 * RB).at(kk * 16 * RB), 1);
            wgmma_commit();
#pragma unroll
            for (int kk = 0; kk < WBM / 16; ++kk)
                wg_rs<T, PK>(&acc_k[0][0], da[kk], GDesc<RB>(sQa, WBM * RB, 8 * RB).at(kk * 16 * RB), 1);
            wgmma_commit();
            if constexpr (W == 1) {
                wgmma_wait<1>(); // dV done
                __syncwarp();    // (the warp's reads of Dsum before its release)
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
                wgmma_wait<0>(); // dK done
                __syncwarp();
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
            } else {
                sm90::named_sync(s ? C::BAR_PDS1 : C::BAR_PDS, 256); // both halves of dS^T are in sdS[s]
                // dQ = dS K (A: dS^T, MN-major, 128 keys; B: K, MN-major, 96 columns)
                float dq[PK / 8][4];
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < WBN / 16; ++kk)
                    wg_ss_tt<T, PK>(&dq[0][0], GDesc<128>(sdSa, WBM * 128, 1024).at(kk * 16 * 128),
                                    GDesc<RB>(sKa, WBN * RB, 8 * RB).at(kk * 16 * RB), kk > 0);
                wgmma_commit();
                wgmma_wait<1>(); // dV, dK done
                __syncwarp();
                if (lane == 0) {
                    sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
                    sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
                }
                wgmma_wait<0>(); // dQ done: sdS[s] is free for warpgroup 1's step it+2
                if (it + 2 < gi.iters)
                    sm90::named_arrive(C::BAR_DSFREE + s, 256);
                // dQ into the staging tile once the bulk copy has read it (step it-NQB)
                const int qb = NQB > 1 ? s : 0;
                float *tileq = sdQ + qb * (WBM * DQK);
                sm90::named_sync(C::BAR_DQ_EMPTY + qb, C::NDQ);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int rl = wr + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
                    for (int c = 0; c < PK / 8; ++c)
                        if (c * 8 < DQK)
                            *reinterpret_cast<float2 *>(tileq + rl * DQK + dqa_col<DQK>(g, c * 8 + 2 * t)) =
                                make_float2(dq[c][2 * r], dq[c][2 * r + 1]);
                }
                fence_proxy_async();
                sm90::named_arrive(C::BAR_DQ_FULL + qb, C::NDQ);
            }
        };
        for (int it = 0; it < iters; ++it)
            step(it);
    }

    bwd_rows_store_dkdv<T, DQK, DV, PK, PV>(p, gi, acc_k, acc_v, W * 64 + warp * 16, lane);
}

// PP (the 128-row loop at d 64, BwdWsCfg::DQM with one dQ staging tile;
// FA4CP_CUDA_TUNING 1024 or 8388608: off): the two MMA warpgroups out of
// step.  In the rows loop both warpgroups meet at the PdS barrier and at the
// dQ staging barrier of every step, so they run their exp2 and dS phases at
// the same time while the tensor pipe has only dP^T to do.  Here a step's dQ
// is computed in the next step, so that no warpgroup waits for the other one
// within a step:
//   S^T, dP^T, P^T, dS^T as the rows loop (dS^T by stmatrix, ST); before
//   the stores into sdS[s], wait on BAR_PP_F + 2s + w (the other
//   warpgroup's dQ of step it-2 has read sdS[s]; from step 2 on); after
//   them arrive on BAR_PP_P + 2s + (1 - w);
//   wait on BAR_PP_P + 2(s^1) + w (the other half of step it-1's dS^T is
//   in sdS[s^1]), issue dQ of step it-1 (rows 64w.. of it: sdS[s^1]'s panel
//   w), dV and dK of step it (RS);
//   dQ done: arrive on BAR_PP_F + 2(s^1) + (1 - w), stage the rows 64w.. of
//   the dQ tile after BAR_DQ_EMPTY + w (the writer has read this half of
//   the last tile), arrive on BAR_DQ_FULL (both warpgroups + the writer);
//   dV done: release dO; dK done: release Q;
// and the last step's dQ after the loop.  Warpgroup 1 starts once warpgroup
// 0 has issued its first products (BAR_PP_GO; 536870912: no offset), so
// that one warpgroup's exp2 runs under the other's products.  A barrier
// waits only when the other warpgroup is a whole step behind.
template <bool B> struct BwdBoolC {
    static constexpr bool value = B;
};
template <typename T, typename C, bool DET>
__device__ __forceinline__ void bwd_ws_mma_rows128pp(const fa4cp_kparams &p, BwdWsBars *bars,
                                                     const volatile BwdWsInfo &gi, uint32_t sb, unsigned char *base,
                                                     int tid, float (&acc_v)[C::PV / 8][4],
                                                     float (&acc_k)[C::PK / 8][4]) {
    constexpr int WBM = C::WBM, WBN = C::WBN, PK = C::PK, PV = C::PV, DQK = C::DQK, DV = C::DV;
    constexpr int RB = C::RB;
    static_assert(C::DQM && !C::DQT && C::DQ_BUFS == 1 && PK == 64 && PV == 64 && C::PW == 64,
                  "PP: 128-row steps at d 64, one dQ staging tile");
    const int ctid = tid - 128;
    const float *sLse = reinterpret_cast<const float *>(base + C::OFF_LSE);
    const float *sDsum = reinterpret_cast<const float *>(base + C::OFF_DSUM);
    float *sdQ = reinterpret_cast<float *>(base + C::OFF_DQ);
    T *sdS = reinterpret_cast<T *>(base + C::OFF_DS);
    const float sl2 = p.scale * kLog2e;
    const uint32_t sKa = sb + C::OFF_K, sVa = sb + C::OFF_V;
    // (the zeroed accumulators made opaque here: else, the first step being
    // peeled, the compiler copies the zero into them between that step's
    // fence and its dV / dK issue, and ptxas adds a warpgroup.arrive, C7519)
    reg_fence<PV / 2>(&acc_v[0][0]);
    reg_fence<PK / 2>(&acc_k[0][0]);
    sm90::mbar_wait(sm90::smem_addr(&bars->kv_full), 0);
    if ((ctid >> 7) == 1 && !(p.tuning & 536870912))
        sm90::named_sync(C::BAR_PP_GO, 256);
    BwdWsStep<DET> st(gi.kvh * (p.heads / p.kv_heads));
    // dQ of step j (sdS[j & 1], this warpgroup's rows): issue and commit
    // (dq: an array of the caller's, fresh at each use, so that no copy of
    // its last values sits between the fence and the wgmma)
    auto dq_gemm = [&](float(&dq)[DQK / 8][4], int j, int cwg) {
        const uint32_t a0 = sb + C::OFF_DS + (j & 1) * C::TILE_DS + cwg * (WBN * 128);
#pragma unroll
        for (int kk = 0; kk < WBN / 16; ++kk)
            wg_ss_tt<T, DQK>(&dq[0][0], gmma_desc(a0 + kk * 16 * 128, WBM * 128, 1024),
                             gmma_desc_rb<RB>(sKa + kk * 16 * RB, WBN * RB, 8 * RB), kk > 0);
        wgmma_commit();
    };
    // stage this warpgroup's rows of the dQ tile once the writer has read the last one
    auto stage_dq = [&](const float(&dq)[DQK / 8][4], int ct) {
        const int g = (ct & 31) >> 2, t = ct & 3, cwg = ct >> 7, warp = (ct >> 5) & 3;
        sm90::named_sync(C::BAR_DQ_EMPTY + cwg, 160);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int rl = cwg * 64 + warp * 16 + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
            for (int c = 0; c < DQK / 8; ++c)
                *reinterpret_cast<float2 *>(sdQ + rl * DQK + dqa_col<DQK>(g, c * 8 + 2 * t)) =
                    make_float2(dq[c][2 * r], dq[c][2 * r + 1]);
        }
        fence_proxy_async();
        sm90::named_arrive(C::BAR_DQ_FULL, C::NDQ);
    };
    // one step; the first one (FIRST) has no dQ of a step before it (peeled:
    // a wgmma under a branch would make ptxas serialise them all)
    auto step = [&](const int it, auto first_c) {
        constexpr bool FIRST = decltype(first_c)::value;
        const int s = it & 1;
        const uint32_t ph = ((uint32_t)it >> 1) & 1;
        // (an opaque copy of the thread's index each step, as the rows loop)
        const int ct = opaque_int(ctid);
        const int g = (ct & 31) >> 2, t = ct & 3, jr0 = (ct >> 7) * 64 + ((ct >> 5) & 3) * 16 + g;
        const int cwg = ct >> 7, lane = ct & 31;
        const uint32_t sQa = sb + C::OFF_Q + s * C::TILE_Q, sdOa = sb + C::OFF_DO + s * C::TILE_DO;
        T *sdST = sdS + s * (WBN * WBM);
        const int m0 = st.m0(gi, WBM);
        const int sdel = (int)(((int64_t)st.hq * p.total_q + gi.q_off + m0) & 3);
        const float *lse2 = sLse + s * C::STAT_STRIDE + sdel, *dsm = sDsum + s * C::STAT_STRIDE + sdel;
        st.next(gi);
        const bool need_mask = m0 + WBM > gi.sq || block_needs_mask_wg<WBM, WBN>(
                                                       Mask{gi.off, p.window_left, p.window_right, gi.sk}, p, m0,
                                                       gi.n0);
        float sT[WBM / 8][4], dpT[WBM / 8][4];
        sm90::mbar_wait(sm90::smem_addr(&bars->q_full[s]), ph);
        wgmma_fence();
        gemm_ss_kmajor<T, WBM, DQK, WBN * RB, WBM * RB, RB>(&sT[0][0], sKa + cwg * 64 * RB, sQa);
        wgmma_commit();
        sm90::mbar_wait(sm90::smem_addr(&bars->do_full[s]), ph);
        wgmma_fence();
        gemm_ss_kmajor<T, WBM, DV, WBN * RB, WBM * RB, RB>(&dpT[0][0], sVa + cwg * 64 * RB, sdOa);
        wgmma_commit();
        wgmma_wait<1>(); // S^T is ready; dP^T may still be running
#pragma unroll
        for (int i = 0; i < WBM / 8; ++i) {
            const float nl0 = lse2[i * 8 + 2 * t] * -kLog2e, nl1 = lse2[i * 8 + 2 * t + 1] * -kLog2e;
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                sT[i][2 * r] = ex2_ftz(fmaf(sT[i][2 * r], sl2, nl0));
                sT[i][2 * r + 1] = ex2_ftz(fmaf(sT[i][2 * r + 1], sl2, nl1));
            }
        }
        if (need_mask) {
            bwd_mask_sT<WBM>(sT, gi, p, m0, jr0, t);
        }
        wgmma_wait<0>();
        // dS^T = P^T (dP^T - Dsum): fragments pa (P^T), da (dS^T)
        uint32_t pa[WBM / 16][4], da[WBM / 16][4];
        bwd_pds_frags<T, WBM>(sT, dpT, dsm, t, pa, da);
        if (!FIRST && it >= 2) // the other warpgroup's dQ of step it-2 has read sdS[s]
            sm90::named_sync(C::BAR_PP_F + 2 * s + cwg, 256);
        {
            // dS^T into sdS[s] by stmatrix (as ST in the rows loop)
            const int ln = ct & 31, m = ln >> 3;
            const int row = jr0 - g + 8 * (m & 1) + (ln & 7);
#pragma unroll
            for (int kk = 0; kk < WBM / 16; ++kk) {
                const uint32_t addr = smem_u32(sdST + pnl<WBN>(row, (2 * kk + (m >> 1)) * 8));
                asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                             "r"(da[kk][0]), "r"(da[kk][1]), "r"(da[kk][2]), "r"(da[kk][3])
                             : "memory");
            }
        }
        fence_proxy_async(); // dS^T stores -> the other warpgroup's dQ wgmma
        sm90::named_arrive(C::BAR_PP_P + 2 * s + (cwg ^ 1), 256);
        if constexpr (!FIRST) // the other half of step it-1's dS^T is in sdS[s^1]
            sm90::named_sync(C::BAR_PP_P + 2 * (s ^ 1) + cwg, 256);
        wgmma_fence();
        float dq[DQK / 8][4];
        if constexpr (!FIRST)
            dq_gemm(dq, it - 1, cwg);
        // dV += P^T dO, dK += dS^T Q (RS)
#pragma unroll
        for (int kk = 0; kk < WBM / 16; ++kk)
            wg_rs<T, PV>(&acc_v[0][0], pa[kk], gmma_desc_rb<RB>(sdOa + kk * 16 * RB, WBM * RB, 8 * RB), 1);
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < WBM / 16; ++kk)
            wg_rs<T, PK>(&acc_k[0][0], da[kk], gmma_desc_rb<RB>(sQa + kk * 16 * RB, WBM * RB, 8 * RB), 1);
        wgmma_commit();
        if constexpr (FIRST) {
            if (cwg == 0 && !(p.tuning & 536870912))
                sm90::named_arrive(C::BAR_PP_GO, 256);
        } else {
            wgmma_wait<2>(); // dQ of step it-1 done
            if (it + 1 < gi.iters) // sdS[s^1] is free for the other warpgroup's step it+1
                sm90::named_arrive(C::BAR_PP_F + 2 * (s ^ 1) + (cwg ^ 1), 256);
            stage_dq(dq, ct);
        }
        wgmma_wait<1>(); // dV done
        __syncwarp();     // (the warp's reads of Dsum before its release)
        if (lane == 0)
            sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
        wgmma_wait<0>(); // dK done
        __syncwarp();
        if (lane == 0)
            sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
    };
    step(0, BwdBoolC<true>{});
    for (int it = 1; it < gi.iters; ++it)
        step(it, BwdBoolC<false>{});
    // the last step's dQ
    {
        const int last = gi.iters - 1, ct = opaque_int(ctid);
        sm90::named_sync(C::BAR_PP_P + 2 * (last & 1) + (ct >> 7), 256);
        float dq[DQK / 8][4];
        wgmma_fence();
        dq_gemm(dq, last, ct >> 7);
        wgmma_wait<0>();
        stage_dq(dq, ct);
    }
}

// WIN (80-row blocks only): the element mask also has the window (causal:
// window_right 0), for causal d 128 calls at 80 rows (launch_bwd).
// SP (the rows loop; bwd_ws_pick uses it at 80 rows only, with SI): the
// producer's warps 2 and 3 rewrite each step's LSE (times -log2 e) and Dsum
// in the order the MMA threads read them (bwd_stat_pos) and arrive on
// lse_full / dsum_full; the MMA threads then read them by 16-byte loads from
// an aligned start (at 80 rows 10 shared loads a step instead of 40, whose
// 4-byte loads sat at the step's row offset modulo 4 into the TMA's 16-byte
// aligned box).  Measured alone (R1, R2: 0.96-1.02 of the old loads) it
// only pays with SI; at 128 rows (d64) it was slower (0.96).
// SI (with SP): warp 2 also writes the step's first query row m0 and
// whether it needs the element mask next to its LSE (BWD_STAT_SI), so that
// the MMA threads' loop top keeps no step counter and computes no mask test
// (their volatile BwdWsInfo loads and 64-bit tests): it waits for Q and
// issues S^T at once (963 instead of 1028 SASS instructions a step at 80
// rows).  SP + SI: FA4CP_CUDA_TUNING 128 off.
// EP (the rows loop at 64-column panels, FA4CP_CUDA_TUNING 256: on): dK and
// dV through shared memory, stmatrix into the K and V tiles' place once
// both MMA warpgroups are done with them, then 16-byte row chunks to global
// memory (else 4-byte stores from the fragments, 8 rows a warp store).
// ST (the rows loop at 128 rows, d 32 and 64; FA4CP_CUDA_TUNING 1024: off):
// the step's dS^T goes to sdS[s] by 8 stmatrix a thread after the whole
// dS^T = P^T (dP^T - Dsum) loop, instead of 32 4-byte stores inside it,
// where each tile's Dsum loads waited for the last tile's stores (ptxas
// keeps shared loads after earlier shared stores it cannot tell apart).
// PP: bwd_ws_mma_rows128pp (d 64 at 128 rows; with ST, without EP).
// ET (the 80-row steps (d128) and PP's 128-row ones (d64); FA4CP_CUDA_TUNING
// 2: off): EP's stmatrix into the K and V tiles, then one thread's TMA
// stores of both tiles (tmdK, tmdV: ragged maps as K's and V's, the rows
// past the sequence dropped), the CTA leaving once they have read shared
// memory; instead of 64 4-byte stores a thread (8 rows of 16 bytes a warp
// store), which took 9.2 k cycles of the CTA's end at d128 (R1 stamps:
// S8k causal, 54 steps of 5.0 k cycles a CTA).
// DP (80 rows, with SP + SI + ET; FA4CP_CUDA_TUNING 4294967296: off; in a
// chain's calls only with the caller's FA4CP_KCHAIN_NLW: launch_bwd's
// bwd_dq_planes): the dQ^T fragments staged as float2 pairs (d, d + 8) of
// one query row, 20 8-byte stores a thread a step instead of 40 4-byte
// ones, each warpgroup into its own [80][64] plane of the tile (its 64
// columns), handed to the
// writer at its own barrier pair (DQ_EMPTY / DQ_FULL + w, 128 + 32
// threads), which reduces each plane by its own bulk operation, so that
// neither warpgroup waits for the other there (FA4's dQ is per warpgroup
// too); dq_accum is then [heads][2][total_q][64], its rows in
// dqa_pair_col<64> order (bwd_common.cuh), which the finish kernel reads
// back (bwd_finish_kernel, pairs).
// PX (80 rows, with DP; FA4CP_CUDA_TUNING 17179869184: off without a
// window, 137438953472 = 2^37: off in the windowed kernel): a quarter of
// P^T's exponentials (r = 1 of even tiles) by ex2_poly on the FMA/ALU pipes
// instead of MUFU.EX2; PH (34359738368: on; not in the windowed kernel) a
// half (r = 1 of every tile).  In the windowed (causal) kernel (PXW) only in
// the steps without the element mask (its masked steps keep MUFU.EX2: PX in
// every step spilled 4 bytes there).
// SN (80 rows, with PX, without PH; FA4CP_CUDA_TUNING 274877906944 = 2^38:
// off): the latencies at the step's turns taken off the tensor cores' path:
// - a step's last act is the next step's S^T, issued as soon as its dK is
//   done, so that the tensor cores go on from dK to S^T without the turn of
//   the loop (the q_empty arrive, the loop top's waits) between them; the
//   last step issues a spare one (this step's Q again, whose result nobody
//   reads: a branch or a loop exit before the wgmma made ptxas serialise
//   them);
// - the statistics' waits and the m0 / mask-flag load before dP^T's issue
//   (the load's latency under it, not before the first exponential), the
//   first two tiles' LSE values before S^T's wait;
// - the first four tiles' Dsum values loaded before dP^T's wait (the dS^T
//   loop, while the tensor cores idle, not starting with a load's latency).
// ncu, H200 2026-11-30 (S1-S4, main kernel cycles against the old loop):
// S^T alone -1.3 to -1.8 % at d128 S8k causal, -0.6 % S16k dense, -2.0 %
// FA4's varlen batch; with the waits -2.7 %, -2.1 %, -3.2 % (S4k dense
// -1.8 %); with two tiles' Dsum values -2.7 %, -3.3 %, -3.1 % (S4k dense
// -2.9 %); all of the above -3.7 %, -4.8 %, -4.4 % (S4k dense -4.5 %).
// Tried: dP^T issued at the turn too (both products' accumulators live
// over it: 52 bytes spilled, 2.6-4.4 % slower); the first LSE values
// before dP^T's issue (+0.1-0.4 %); dV issued before the stmatrix of dS
// (ptxas serialised the wgmmas, C7512); in the normal kernel the dQ
// writer's two plane reductions in flight at once (+0.6 to +1.4 %: the
// first plane's hand-back then waits for the second's staging; the
// deterministic kernel's writer does it, DT, where the turn is the limit).
// VAR: the variant bits BWD_SP | BWD_SI | BWD_EP | BWD_ST | BWD_PP | BWD_ET | BWD_DP | BWD_PX | BWD_PH
// | BWD_SN (bwd_ws_pick).
enum { BWD_SP = 1, BWD_SI = 2, BWD_EP = 4, BWD_ST = 8, BWD_PP = 16, BWD_ET = 32, BWD_DP = 64, BWD_PX = 128, BWD_PH = 256,
       BWD_SN = 512 };
template <typename T, int DQK, int DV, int WBM_, bool DET, bool WIN = false, int VAR = 0>
__global__ void __launch_bounds__(BwdWsCfg<T, DQK, DV, WBM_>::NT, 1)
    bwd_ws_kernel(const fa4cp_kparams p, const __grid_constant__ CUtensorMap tmQ,
                  const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV,
                  const __grid_constant__ CUtensorMap tmdO, const __grid_constant__ CUtensorMap tmLse,
                  const __grid_constant__ CUtensorMap tmDsum, const __grid_constant__ CUtensorMap tmdK,
                  const __grid_constant__ CUtensorMap tmdV, int R, int max_nb, bool use_list, bool tma_stats,
                  int nsm) {
    sm90::grid_dep_wait(); // (launch_pdl)
    using C = BwdWsCfg<T, DQK, DV, WBM_>;
    constexpr bool SP = VAR & BWD_SP, SI = VAR & BWD_SI, EP = VAR & BWD_EP, ST = VAR & BWD_ST, PP = VAR & BWD_PP;
    constexpr bool ET = VAR & BWD_ET, DP = VAR & BWD_DP, PX = VAR & BWD_PX, PH = VAR & BWD_PH, SN = VAR & BWD_SN;
    static_assert(!SN || (DP && SP && SI), "SN: with DP, SP, SI");
    static_assert(!DP || (C::DQT && ET && SP && DQK % 16 == 0), "DP: the 80-row loop with ET");
    static_assert(!PX || DP, "PX: with DP");
    static_assert(!PH || (PX && !WIN), "PH: with PX, without a window");
    static_assert(!ET || (!EP && !C::WIDE && !C::DQW && C::PW == 64 && C::PK == DQK && C::PV == DV),
                  "ET: the rows loop, 64-column panels, no padded columns");
    static_assert(!SP || (!C::WIDE && !C::DQW), "SP: the rows loop (bwd_ws_pick: 80 rows only)");
    static_assert(!EP || (!C::WIDE && !C::DQW && C::PW == 64), "EP: the rows loop, 64-column panels");
    static_assert(!SI || SP, "SI: with SP");
    static_assert(!ST || C::DQM, "ST: the 128-row loop");
    static_assert(!PP || (ST && C::DQM && C::DQ_BUFS == 1), "PP: the 128-row loop with one dQ staging tile");
    constexpr int WBM = C::WBM, WBN = C::WBN, PK = C::PK, PV = C::PV, NQB = C::DQ_BUFS;
    constexpr int PW = C::PW, RB = C::RB, DQN = C::DQN;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // 1024-byte aligned for the swizzled panels; offsetting the shared pointer
    // keeps its address space (LDS/STS instead of generic accesses)
    unsigned char *base = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    BwdWsBars *bars = reinterpret_cast<BwdWsBars *>(base + C::OFF_BAR);
    const volatile BwdWsInfo &gi = bars->gi;
    const int tid = threadIdx.x;
    // KS (the rows layout; FA4CP_CUDA_TUNING 4: off): thread 0 (the TMA lane)
    // prefetches the tensor maps and initialises the barriers before its
    // decode, and issues the first step's loads as soon as the decode has
    // them, from its registers and before the __syncthreads: K (kv_full),
    // Q with its LSE (q_full[0]), V with dO and its Dsum (do_full[0], which
    // the first dP^T waits for), so that the first S^T waits for K and Q
    // only; the TMA lane's loop starts at the second step (the MMA warps'
    // code is the same either way)
    constexpr bool KSOK = !C::WIDE && !C::DQW;
    const bool ks = KSOK && !(p.tuning & 4);
    if (tid == 0) {
        auto init_bars = [&]() {
            for (int i = 0; i < 2; ++i) {
                // TMA lane (+ a statistics warp's lanes)
                const uint32_t nfull = tma_stats ? 1 : 33;
                sm90::mbar_init(sm90::smem_addr(&bars->q_full[i]), nfull);
                sm90::mbar_init(sm90::smem_addr(&bars->do_full[i]), nfull);
                sm90::mbar_init(sm90::smem_addr(&bars->q_empty[i]), 4 * C::NWG);
                sm90::mbar_init(sm90::smem_addr(&bars->do_empty[i]), 4 * C::NWG);
                if constexpr (SP) {
                    sm90::mbar_init(sm90::smem_addr(&bars->lse_full[i]), 32);
                    sm90::mbar_init(sm90::smem_addr(&bars->dsum_full[i]), 32);
                }
            }
            sm90::mbar_init(sm90::smem_addr(&bars->kv_full), 1);
            sm90::mbar_fence_init();
        };
        if (!ks) {
            bwd_ws_info<WBM, WBN, DET>(bars->gi, p, max_nb, use_list, nsm);
            init_bars();
        } else {
            sm90::tma_prefetch_desc(&tmK);
            sm90::tma_prefetch_desc(&tmQ);
            sm90::tma_prefetch_desc(&tmV);
            sm90::tma_prefetch_desc(&tmdO);
            if (tma_stats) {
                sm90::tma_prefetch_desc(&tmLse);
                sm90::tma_prefetch_desc(&tmDsum);
            }
            init_bars();
            bwd_ws_info<WBM, WBN, DET>(bars->gi, p, max_nb, use_list, nsm);
            const BwdWsInfo &w = bars->gi; // (plain loads: the values just stored)
            if (w.iters > 0) {
                const bool hints = !(p.tuning & 16384);
                const uint64_t h_kv = hints ? sm90::kEvictFirst : sm90::kEvictNormal;
                const uint64_t h_q = hints ? sm90::kEvictLast : sm90::kEvictNormal;
                const uint32_t sb0 = sm90::smem_addr(base);
                const int kr = R - w.sk + w.n0, kx = (int)w.k_off + w.sk, kvh = w.kvh;
                // the first step (BwdWsStep's): query head kvh * G, rows from q0 +
                // stagger * WBM (deterministic: the last step's)
                const int hq0 = kvh * (p.heads / p.kv_heads);
                const int m0 = w.q0 + (DET ? w.nmb - 1 : w.stagger) * WBM;
                const int qr = R - w.sq + m0, qx = (int)w.q_off + w.sq;
                const int srow = (int)((int64_t)hq0 * p.total_q + w.q_off + m0) & ~3;
                const int stat_tx = tma_stats ? C::STAT_BOX * 4 : 0;
                uint32_t f = sm90::smem_addr(&bars->kv_full);
                sm90::mbar_arrive_expect_tx(f, C::TILE_K);
#pragma unroll
                for (int pn = 0; pn < PK / PW; ++pn)
                    sm90::tma_load_4d(sb0 + C::OFF_K + pn * WBN * RB, &tmK, f, pn * PW, kvh, kr, kx, h_kv);
                f = sm90::smem_addr(&bars->q_full[0]);
                sm90::mbar_arrive_expect_tx(f, C::TILE_Q + stat_tx);
#pragma unroll
                for (int pn = 0; pn < PK / PW; ++pn)
                    sm90::tma_load_4d(sb0 + C::OFF_Q + pn * WBM * RB, &tmQ, f, pn * PW, hq0, qr, qx, h_q);
                if (tma_stats)
                    sm90::tma_load_1d(sb0 + C::OFF_LSE, &tmLse, f, srow, h_q);
                f = sm90::smem_addr(&bars->do_full[0]);
                sm90::mbar_arrive_expect_tx(f, C::TILE_DO + stat_tx + C::TILE_V);
#pragma unroll
                for (int pn = 0; pn < PV / PW; ++pn)
                    sm90::tma_load_4d(sb0 + C::OFF_V + pn * WBN * RB, &tmV, f, pn * PW, kvh, kr, kx, h_kv);
#pragma unroll
                for (int pn = 0; pn < PV / PW; ++pn)
                    sm90::tma_load_4d(sb0 + C::OFF_DO + pn * WBM * RB, &tmdO, f, pn * PW, hq0, qr, qx, h_q);
                if (tma_stats)
                    sm90::tma_load_1d(sb0 + C::OFF_DSUM, &tmDsum, f, srow, h_q);
            }
        }
    }
    __syncthreads();
    if (gi.iters < 0)
        return;
    const uint32_t sb = sm90::smem_addr(base);
    float *sLse = reinterpret_cast<float *>(base + C::OFF_LSE);   // [2][STAT_STRIDE], LSE (as stored)
    float *sDsum = reinterpret_cast<float *>(base + C::OFF_DSUM); // [2][STAT_STRIDE]
    float *sdQ = reinterpret_cast<float *>(base + C::OFF_DQ);     // [NQB][WBM][DQK], dqa_col order
    // [2][WBN kv rows][WBM query cols] (DQT: [2][WBM query rows][WBN kv cols])
    T *sdS = reinterpret_cast<T *>(base + C::OFF_DS);
    const int wg = sm90::warp_uniform(tid >> 7);
    const int lane = tid & 31;

    if (wg == 0) {
        sm90::setmaxnreg_dec<C::REG_P>();
        const int warp = sm90::warp_uniform(tid >> 5);
        if (gi.iters == 0)
            return;
        const int G = p.heads / p.kv_heads;
        if (warp == 0) {
            // ------------------------------------------------ TMA (lane 0)
            if (lane != 0)
                return;
            sm90::tma_prefetch_desc(&tmQ);
            sm90::tma_prefetch_desc(&tmdO);
            sm90::tma_prefetch_desc(&tmLse);
            sm90::tma_prefetch_desc(&tmDsum);
            // K and V are read once, Q and dO (and their statistics) by every
            // KV block of the head
            const bool hints = !(p.tuning & 16384);
            const uint64_t h_kv = hints ? sm90::kEvictFirst : sm90::kEvictNormal;
            const uint64_t h_q = hints ? sm90::kEvictLast : sm90::kEvictNormal;
            if (!ks) {
                const uint32_t fkv = sm90::smem_addr(&bars->kv_full);
                const int kr = R - gi.sk + gi.n0, kx = (int)gi.k_off + gi.sk;
                sm90::mbar_arrive_expect_tx(fkv, C::TILE_K + C::TILE_V);
#pragma unroll
                for (int pn = 0; pn < PK / PW; ++pn)
                    sm90::tma_load_4d(sb + C::OFF_K + pn * WBN * RB, &tmK, fkv, pn * PW, gi.kvh, kr, kx, h_kv);
#pragma unroll
                for (int pn = 0; pn < PV / PW; ++pn)
                    sm90::tma_load_4d(sb + C::OFF_V + pn * WBN * RB, &tmV, fkv, pn * PW, gi.kvh, kr, kx, h_kv);
            }
            // Q with LSE, then dO with Dsum, of each step
            const int stat_tx = tma_stats ? C::STAT_BOX * 4 : 0;
            BwdWsStep<DET> st(gi.kvh * G);
            int it0 = 0;
            if (ks) { // (thread 0 has issued the first step's loads)
                st.next(gi);
                it0 = 1;
            }
            for (int it = it0; it < gi.iters; ++it) {
                // (a ring of one stage: stage 0, phase it & 1)
                const int s = C::Q_STAGES == 2 ? it & 1 : 0;
                const uint32_t ph = C::Q_STAGES == 2 ? ((uint32_t)it >> 1) & 1 : (uint32_t)it & 1;
                const int sq = gi.sq, m0 = st.m0(gi, WBM);
                const int qr = R - sq + m0, qx = (int)gi.q_off + sq;
                // statistics from row m0 of head hq ([heads][total_q] floats),
                // from a 16-byte boundary
                const int srow = (int)((int64_t)st.hq * p.total_q + gi.q_off + m0) & ~3;
                uint32_t f = sm90::smem_addr(&bars->q_full[s]);
                sm90::mbar_wait(sm90::smem_addr(&bars->q_empty[s]), ph ^ 1);
                sm90::mbar_arrive_expect_tx(f, C::TILE_Q + stat_tx);
#pragma unroll
                for (int pn = 0; pn < PK / PW; ++pn)
                    sm90::tma_load_4d(sb + C::OFF_Q + s * C::TILE_Q + pn * WBM * RB, &tmQ, f, pn * PW, st.hq, qr,
                                      qx, h_q);
                if (tma_stats)
                    sm90::tma_load_1d(sb + C::OFF_LSE + s * C::STAT_STRIDE * 4, &tmLse, f, srow, h_q);
                const int sd = C::DO_STAGES == 2 ? it & 1 : 0;
                const uint32_t phd = C::DO_STAGES == 2 ? ((uint32_t)it >> 1) & 1 : (uint32_t)it & 1;
                f = sm90::smem_addr(&bars->do_full[sd]);
                sm90::mbar_wait(sm90::smem_addr(&bars->do_empty[sd]), phd ^ 1);
                sm90::mbar_arrive_expect_tx(f, C::TILE_DO + stat_tx);
#pragma unroll
                for (int pn = 0; pn < PV / PW; ++pn)
                    sm90::tma_load_4d(sb + C::OFF_DO + sd * C::TILE_DO + pn * WBM * RB, &tmdO, f, pn * PW, st.hq,
                                      qr, qx, h_q);
                if (tma_stats)
                    sm90::tma_load_1d(sb + C::OFF_DSUM + sd * C::STAT_STRIDE * 4, &tmDsum, f, srow, h_q);
                st.next(gi);
            }
        } else if (warp >= 2) {
            // ------------------------------------------------ statistics by loads
            // (!tma_stats: warp 2 LSE, warp 3 Dsum, by plain loads and
            // shared-memory stores, the same floats as the TMA's; SP: in
            // the MMA threads' order, see bwd_stat_pos, also after the TMA's)
            if (tma_stats && !SP)
                return;
            const bool isq = warp == 2;
            float *dst = isq ? sLse : sDsum;
            const float *src = isq ? p.lse : p.dsum;
            const int64_t n = (int64_t)p.heads * p.total_q;
            BwdWsStep<DET> st(gi.kvh * G);
            for (int it = 0; it < gi.iters; ++it) {
                const bool one = (isq ? C::Q_STAGES : C::DO_STAGES) == 1; // (a ring of one stage)
                const int s = one ? 0 : it & 1;
                const uint32_t ph = one ? (uint32_t)it & 1 : ((uint32_t)it >> 1) & 1;
                const int64_t row = (int64_t)st.hq * p.total_q + gi.q_off + st.m0(gi, WBM);
                const int64_t srow = row & ~(int64_t)3;
                uint64_t *full = isq ? &bars->q_full[s] : &bars->do_full[s];
                if constexpr (SP) {
                    constexpr int NK = (C::STAT_BOX + 31) / 32; // floats a lane
                    static_assert(4 * BWD_STAT_TS(C::WBM) <= C::STAT_STRIDE, "SP: the rows fit the stage");
                    // the box's floats r = lane + 32k, from the TMA's copy or
                    // from memory; row q = r - sdel of the step
                    float v[NK];
                    if (tma_stats) {
                        // (the MMA threads' release of step it-2's stage:
                        // implied by q_full / do_full through the TMA lane,
                        // waited for here too so that the order of this
                        // warp's rewrite after their reads is direct; R2's
                        // racecheck flagged the rewritten floats past the
                        // TMA's box at 64 and 128 rows without it)
                        sm90::mbar_wait(sm90::smem_addr(isq ? &bars->q_empty[s] : &bars->do_empty[s]), ph ^ 1);
                        sm90::mbar_wait(sm90::smem_addr(full), ph);
#pragma unroll
                        for (int k = 0; k < NK; ++k) {
                            const int r = lane + 32 * k;
                            v[k] = r < C::STAT_BOX ? dst[s * C::STAT_STRIDE + r] : 0.f;
                        }
                    } else {
                        sm90::mbar_wait(sm90::smem_addr(isq ? &bars->q_empty[s] : &bars->do_empty[s]), ph ^ 1);
#pragma unroll
                        for (int k = 0; k < NK; ++k) {
                            const int r = lane + 32 * k;
                            v[k] = r < C::STAT_BOX && srow + r < n ? src[srow + r] : 0.f;
                        }
                    }
                    __syncwarp(); // (every lane has read the TMA's box before any rewrites it)
                    const int sdel = (int)(row & 3);
#pragma unroll
                    for (int k = 0; k < NK; ++k) {
                        const int q = lane + 32 * k - sdel;
                        if (q >= 0 && q < C::WBM)
                            dst[s * C::STAT_STRIDE + bwd_stat_pos<C::WBM>(q)] = isq ? v[k] * -kLog2e : v[k];
                    }
                    if constexpr (SI) {
                        static_assert(BWD_STAT_SI(C::WBM) + 2 <= C::STAT_STRIDE, "SI: room in the stage");
                        if (isq && lane == 0) {
                            const int m0 = st.m0(gi, WBM);
                            const bool nm = m0 + WBM > gi.sq ||
                                            block_needs_mask_wg<WBM, WBN>(
                                                Mask{gi.off, p.window_left, p.window_right, gi.sk}, p, m0, gi.n0);
                            int *si = reinterpret_cast<int *>(dst + s * C::STAT_STRIDE + BWD_STAT_SI(WBM));
                            si[0] = m0;
                            si[1] = nm;
                        }
                    }
                    if (!tma_stats)
                        sm90::mbar_arrive(sm90::smem_addr(full));
                    sm90::mbar_arrive(sm90::smem_addr(isq ? &bars->lse_full[s] : &bars->dsum_full[s]));
                } else {
                    sm90::mbar_wait(sm90::smem_addr(isq ? &bars->q_empty[s] : &bars->do_empty[s]), ph ^ 1);
                    for (int r = lane; r < C::STAT_BOX; r += 32)
                        dst[s * C::STAT_STRIDE + r] = srow + r < n ? src[srow + r] : 0.f;
                    sm90::mbar_arrive(sm90::smem_addr(full));
                }
                st.next(gi);
            }
        } else if (warp == 1) {
            // ------------------------------------------------ dQ writer
            const int iters = gi.iters;
            // (PP: each MMA warpgroup waits for its own half, BAR_DQ_EMPTY + w)
            auto empty = [&](int b) {
                if constexpr (PP) {
                    sm90::named_arrive(C::BAR_DQ_EMPTY + 0, 160);
                    sm90::named_arrive(C::BAR_DQ_EMPTY + 1, 160);
                } else {
                    sm90::named_arrive(C::BAR_DQ_EMPTY + b, C::NDQ);
                }
            };
            // Deterministic: wait for this CTA's turn at the step's query
            // tile (lane 0); the semaphore to release once the additions
            // have completed
            auto turn = [&](const BwdWsStep<DET> &st, int m0) -> int * {
                int *sem = nullptr;
                if constexpr (DET) {
                    // The KV blocks that add to query block mb do so in
                    // order: nlo(mb), nlo(mb) + 1, ... (both ends of a KV
                    // block's query range grow with the block), so this
                    // one waits for the count n_block - nlo(mb).  The
                    // semaphore of (head hq, sequence bi, query block mb)
                    // is 1 + hq * sem_head + q_off / 64 + bi + mb:
                    // distinct over the sequences, since q_off / 64 +
                    // ceil(sq / 64) <= (q_off + sq) / 64 + 1, and
                    // independent of max_sq.
                    const int mb = m0 / WBM;
                    const int64_t x = (int64_t)m0 + gi.off - p.window_left;
                    const int nlo = p.window_left < 0 || x < 0 ? 0 : (int)(x / WBN);
                    const int64_t sem_head = p.total_q / WBM + p.batch + 1;
                    sem = p.dq_sem + (1 + gi.q_off / WBM + gi.bi + st.hq * sem_head + mb);
                    sem_wait_eq(sem, gi.n_block - nlo);
                    fence_proxy_async_global();
                }
                return sem;
            };
            BwdWsStep<DET> st(gi.kvh * G);
            if constexpr (DP) {
                // the 80-row tile in two planes, one per MMA warpgroup: dq_accum
                // as [heads][2][total_q][64] (dqa_pair_col<64> order in a
                // row), each plane reduced once its warpgroup has staged it
                static_assert(C::DQT, "DP: the 80-row tile");
                sm90::named_arrive(C::BAR_DQ_EMPTY + 0, 160);
                sm90::named_arrive(C::BAR_DQ_EMPTY + 1, 160);
                // DT (deterministic; FA4CP_CUDA_TUNING 549755813888 = 2^39: off):
                // once the turn has come, both planes' reductions go out at
                // once and the semaphore is released when both have
                // completed, so that the turn is held for one reduction's
                // latency instead of two reads and a completion; the KV
                // blocks of a query tile pass it on in a chain
                const bool dt = DET && !(p.tuning & 549755813888LL);
                // plane w's reduction into dq_accum (lane 0)
                auto reduce_plane = [&](int w, int m0) {
                    float *dst = p.dq_accum + (((int64_t)st.hq * 2 + w) * p.total_q + gi.q_off + m0) * 64;
                    sm90::bulk_reduce_add_f32(dst, sm90::smem_addr(sdQ + w * (WBM * 64)),
                                              (uint32_t)(min(WBM, gi.sq - m0) * 64 * 4));
                    sm90::tma_store_commit();
                };
                for (int it = 0; it < iters; ++it) {
                    int *sem = nullptr;
                    const int m0 = st.m0(gi, WBM);
                    // each plane handed back once read (DT: both after
                    // both reductions have gone out)
#pragma unroll
                    for (int w = 0; w < 2; ++w) {
                        sm90::named_sync(C::BAR_DQ_FULL + w, 160);
                        if (lane == 0) {
                            if (w == 0)
                                sem = turn(st, m0);
                            reduce_plane(w, m0);
                            if (!dt || w == 1)
                                sm90::tma_store_wait_read<0>();
                        }
                        __syncwarp();
                        if (it + 1 < iters && (!dt || w == 1)) {
                            if (dt)
                                sm90::named_arrive(C::BAR_DQ_EMPTY + 0, 160);
                            sm90::named_arrive(C::BAR_DQ_EMPTY + w, 160);
                        }
                    }
                    if constexpr (DET) {
                        if (lane == 0) {
                            sm90::tma_store_wait<0>(); // both reductions have completed
                            sem_release_add(sem);
                        }
                    }
                    st.next(gi);
                }
            } else {
                empty(0);
                if (NQB > 1 && iters > 1)
                    empty(1);
                for (int it = 0; it < iters; ++it) {
                    const int b = NQB > 1 ? it & 1 : 0;
                    sm90::named_sync(C::BAR_DQ_FULL + b, C::NDQ);
                    int *sem = nullptr;
                    if (lane == 0) {
                        const int m0 = st.m0(gi, WBM);
                        sem = turn(st, m0);
                        float *dst = p.dq_accum + ((int64_t)st.hq * p.total_q + gi.q_off + m0) * DQK;
                        sm90::bulk_reduce_add_f32(dst, sm90::smem_addr(sdQ + b * WBM * DQK),
                                                  (uint32_t)(min(WBM, gi.sq - m0) * DQK * 4));
                        sm90::tma_store_commit();
                        sm90::tma_store_wait_read<0>();
                    }
                    __syncwarp();
                    if (it + NQB < iters)
                        empty(b);
                    if constexpr (DET) {
                        if (lane == 0) {
                            sm90::tma_store_wait<0>(); // the reduction has completed
                            sem_release_add(sem);
                        }
                    }
                    st.next(gi);
                }
            }
            if (lane == 0) {
                // KS: the CTA leaves once its last reduction has read sdQ, as
                // CUTLASS's TMA-store epilogues do (the kernel's end orders its
                // writes before the finish kernel; deterministic: completed above)
                if (ks)
                    sm90::tma_store_wait_read<0>();
                else
                    sm90::tma_store_wait<0>();
            }
        }
        return;
    }
    sm90::setmaxnreg_inc<C::REG_C>();
    if constexpr (C::WIDE) {
        bwd_ws_mma_wide<T, C, DET>(p, bars, gi, sb, base, tid);
        return;
    }
    if constexpr (C::DQW) {
        // one copy of the loop per warpgroup (and per VR)
        const bool vr = !(p.tuning & 134217728);
        if (wg == 1) {
            if (vr)
                bwd_ws_mma_rows96<T, C, DET, 0, true>(p, bars, gi, sb, base, tid);
            else
                bwd_ws_mma_rows96<T, C, DET, 0, false>(p, bars, gi, sb, base, tid);
        } else {
            if (vr)
                bwd_ws_mma_rows96<T, C, DET, 1, true>(p, bars, gi, sb, base, tid);
            else
                bwd_ws_mma_rows96<T, C, DET, 1, false>(p, bars, gi, sb, base, tid);
        }
        return;
    }

    // ---------------------------------------------------- MMA warpgroups
    const int ctid = tid - 128;
    const int cwg = ctid >> 7, warp = (ctid >> 5) & 3;
    // UD: the wgmma descriptors in uniform registers, the warpgroup's
    // operand offsets from a warp-uniform copy of its index (a shuffle) and
    // each k step's descriptor a low word plus an immediate (GDesc): 3 to 5
    // uniform instructions a wgmma instead of about 12, most of them vector
    // ones and an R2UR each (22 % fewer instructions, 1.3 % fewer cycles at
    // d128 S16k dense; in the windowed (causal) kernel, since the dQ planes,
    // 3.4 % fewer at S8k causal and 3.7 % on FA4's varlen batch: ncu, H200
    // R1 2026-11-30 03:13 UTC)
    const uint32_t cwd = (uint32_t)sm90::warp_uniform(cwg);

    float acc_v[PV / 8][4], acc_k[PK / 8][4]; // dV, dK of this warpgroup's 64 KV rows
#pragma unroll
    for (int i = 0; i < PV / 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            acc_v[i][j] = 0.f;
#pragma unroll
    for (int i = 0; i < PK / 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            acc_k[i][j] = 0.f;
    wgmma_fence(); // the zeroed accumulators, before any wgmma

    if constexpr (PP) {
        if (gi.iters > 0)
            bwd_ws_mma_rows128pp<T, C, DET>(p, bars, gi, sb, base, tid, acc_v, acc_k);
    } else if (gi.iters > 0) {
        const float sl2 = p.scale * kLog2e;
        const uint32_t sKa = sb + C::OFF_K, sVa = sb + C::OFF_V;
        sm90::mbar_wait(sm90::smem_addr(&bars->kv_full), 0);
        BwdWsStep<DET> st(gi.kvh * (p.heads / p.kv_heads));
        (void)st; // (SI: unused)
        // SN: the next step's S^T is issued at the end of a step, as soon as
        // its dK is done, so that the tensor cores go from dK to S^T without
        // the turn of the loop between them
        float sT[WBM / 8][4];
        // S^T = K Q^T for this warpgroup's 64 KV rows, Q from stage q
        auto issue_st = [&](int q) {
            wgmma_fence();
            gemm_ss_kmajor<T, WBM, DQK, WBN * RB, WBM * RB, RB, true>(&sT[0][0], sKa + cwd * 64 * RB,
                                                                      sb + C::OFF_Q + q * C::TILE_Q);
            wgmma_commit();
        };
        if constexpr (SN) {
            sm90::mbar_wait(sm90::smem_addr(&bars->q_full[0]), 0);
            issue_st(0);
        }
        for (int it = 0; it < gi.iters; ++it) {
            const int s = it & 1;
            const uint32_t ph = ((uint32_t)it >> 1) & 1;
            // this thread's place, from an opaque copy of its index each step:
            // else ptxas keeps the shared-memory addresses derived from it
            // live across the loop, and spills
            const int ct = opaque_int(ctid);
            const int g = (ct & 31) >> 2, t = ct & 3, jr0 = (ct >> 7) * 64 + ((ct >> 5) & 3) * 16 + g;
            const uint32_t sQa = sb + C::OFF_Q + s * C::TILE_Q, sdOa = sb + C::OFF_DO + s * C::TILE_DO;
            const uint32_t sdSa = sb + C::OFF_DS + s * C::TILE_DS;
            T *sdST = sdS + s * (WBN * WBM);

            float dpT[WBM / 8][4];
            // (SI: m0 and need_mask from warp 2, after lse_full below)
            int m0 = 0;
            bool need_mask = false;
            const float *lse2 = sLse, *dsm = sDsum;
            if constexpr (!SI) {
                m0 = st.m0(gi, WBM);
                // the step's statistics start this many floats into their stage
                const int sdel = (int)(((int64_t)st.hq * p.total_q + gi.q_off + m0) & 3);
                lse2 = sLse + s * C::STAT_STRIDE + sdel;
                dsm = sDsum + s * C::STAT_STRIDE + sdel;
                st.next(gi);
                // the element mask: keys past the sequence or out of the window,
                // query rows past the sequence (whose statistics belong to other
                // rows: LSE may be anything there)
                need_mask = m0 + WBM > gi.sq || block_needs_mask_wg<WBM, WBN>(
                                                    Mask{gi.off, p.window_left, p.window_right, gi.sk}, p, m0, gi.n0);
            }
            if constexpr (!SN) {
                sm90::mbar_wait(sm90::smem_addr(&bars->q_full[s]), ph);
                issue_st(s);
            }
            // SP: this thread's rows of the statistics (bwd_stat_pos), from stage s's start
            const float *lsp = sLse + s * C::STAT_STRIDE + BWD_STAT_TS(WBM) * t,
                        *dsp = sDsum + s * C::STAT_STRIDE + BWD_STAT_TS(WBM) * t;
            // SN: the statistics' waits and the step's m0 / mask flag before
            // dP^T's issue, so that the shared load's latency passes under it
            int2 siw = make_int2(0, 0);
            if constexpr (SN) {
                sm90::mbar_wait(sm90::smem_addr(&bars->lse_full[s]), ph);
                sm90::mbar_wait(sm90::smem_addr(&bars->dsum_full[s]), ph);
                siw = *reinterpret_cast<const int2 *>(sLse + s * C::STAT_STRIDE + BWD_STAT_SI(WBM));
            }
            sm90::mbar_wait(sm90::smem_addr(&bars->do_full[s]), ph);
            wgmma_fence(); // (else ptxas adds one, after the wait's loop)
            gemm_ss_kmajor<T, WBM, DV, WBN * RB, WBM * RB, RB, true>(&dpT[0][0], sVa + cwd * 64 * RB, sdOa);
            wgmma_commit();

            uint32_t pa[WBM / 16][4], da[WBM / 16][4];
            // (SP: Dsum's wait here too, not between P^T and dS^T: -1.3 % cycles
            // at d128 S8k causal, -0.4 % S16k dense, ncu H200 R2 2026-11-30)
            if constexpr (SP && !SN) {
                sm90::mbar_wait(sm90::smem_addr(&bars->lse_full[s]), ph);
                sm90::mbar_wait(sm90::smem_addr(&bars->dsum_full[s]), ph);
            }
            if constexpr (SI) {
                const int2 si =
                    SN ? siw : *reinterpret_cast<const int2 *>(sLse + s * C::STAT_STRIDE + BWD_STAT_SI(WBM));
                m0 = si.x;
                need_mask = si.y != 0;
            }
            // SN: the first two tiles' LSE values before S^T's wait (their
            // latency under it; before dP^T's issue they cost 0.1-0.4 %)
            float4 lpre = make_float4(0.f, 0.f, 0.f, 0.f);
            if constexpr (SN)
                lpre = *reinterpret_cast<const float4 *>(lsp);
            wgmma_wait<1>(); // S^T is ready; dP^T may still be running
            // P^T (in place of S^T), while dP^T runs on the tensor cores; pxs:
            // PX's share by ex2_poly in this step
            auto p_of_s = [&](auto pxs) {
                constexpr bool PXS = decltype(pxs)::value;
#pragma unroll
                for (int i = 0; i < WBM / 8; ++i) {
                    // -LSE * log2(e) of this thread's query columns; an LSE of -inf
                    // (a row that sees no key) gives +inf, where every element is
                    // masked below
                    float nl0, nl1;
                    if constexpr (SP) {
                        const float4 l4 =
                            SN && i < 2 ? lpre : *reinterpret_cast<const float4 *>(lsp + 4 * (i >> 1));
                        nl0 = i & 1 ? l4.z : l4.x;
                        nl1 = i & 1 ? l4.w : l4.y;
                    } else {
                        nl0 = lse2[i * 8 + 2 * t] * -kLog2e;
                        nl1 = lse2[i * 8 + 2 * t + 1] * -kLog2e;
                    }
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        if (PXS && r == 1 && (PH || (i & 1) == 0)) {
                            sT[i][2 * r] = ex2_poly(fmaf(sT[i][2 * r], sl2, nl0));
                            sT[i][2 * r + 1] = ex2_poly(fmaf(sT[i][2 * r + 1], sl2, nl1));
                        } else {
                            sT[i][2 * r] = ex2_ftz(fmaf(sT[i][2 * r], sl2, nl0));
                            sT[i][2 * r + 1] = ex2_ftz(fmaf(sT[i][2 * r + 1], sl2, nl1));
                        }
                    }
                }
            };
            // the element mask (the steps that need it)
            auto mask_p = [&]() {
                if constexpr (C::DQT) {
                    // keys past the sequence, query rows past it (80-row blocks
                    // run with a window only as WIN, launch_bwd_ws)
                    if constexpr (WIN) {
                        // and keys out of the window: element (query m0 + q, key
                        // n0 + jr0 + 8r), q = 8i + 2t + c, is masked iff 8r >=
                        // jlim, q >= qlim, jr0 + 8r - q > dhi (past hi) or < dlo
                        // (before lo), Mask's bounds relative to the block in 32
                        // bits; the tests below with the thread's terms on the
                        // right
                        const int qlim = gi.sq - m0 - 2 * t, jlim = gi.sk - gi.n0 - jr0;
                        const int64_t rel = (int64_t)m0 - gi.n0 + gi.off;
                        auto clamp32 = [](int64_t x) {
                            return (int)(x < -(1 << 29) ? -(1 << 29) : x > (1 << 29) ? (1 << 29) : x);
                        };
                        const int wrt = p.window_right, wlt = p.window_left;
                        const int dh = wrt < 0 ? 1 << 30 : clamp32(rel + wrt) - jr0 + 2 * t;
                        const int dl = wlt < 0 ? -(1 << 30) : clamp32(rel - wlt) - jr0 + 2 * t;
#pragma unroll
                        for (int r = 0; r < 2; ++r)
#pragma unroll
                            for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
                                for (int c = 0; c < 2; ++c)
                                    if (8 * r >= jlim || i * 8 + c >= qlim || 8 * r - i * 8 - c > dh ||
                                        8 * r - i * 8 - c < dl)
                                        sT[i][2 * r + c] = 0.f;
                    } else {
                        const int qlim = gi.sq - m0, jlim = gi.sk - gi.n0 - jr0;
#pragma unroll
                        for (int r = 0; r < 2; ++r)
#pragma unroll
                            for (int i = 0; i < WBM / 8; ++i)
#pragma unroll
                                for (int c = 0; c < 2; ++c)
                                    if (8 * r >= jlim || i * 8 + 2 * t + c >= qlim)
                                        sT[i][2 * r + c] = 0.f;
                    }
                } else {
                    bwd_mask_sT<WBM>(sT, gi, p, m0, jr0, t);
                }
            };
            if constexpr (PX && WIN) {
                // PXW: ex2_poly in the steps without the element mask only
                // (the two paths apart: with the mask after the exponentials
                // of both, ptxas spilled 12 bytes)
                if (need_mask) {
                    p_of_s(BoolC<false>{});
                    mask_p();
                } else {
                    p_of_s(BoolC<true>{});
                }
            } else {
                p_of_s(BoolC<PX>{});
                if (need_mask)
                    mask_p();
            }
            // SN: the first four tiles' Dsum values before dP^T's wait, so
            // that the dS^T loop (the tensor cores idle) does not start with
            // a load's latency
            float4 dpre = make_float4(0.f, 0.f, 0.f, 0.f), dpre2 = dpre;
            if constexpr (SN) {
                dpre = *reinterpret_cast<const float4 *>(dsp);
                dpre2 = *reinterpret_cast<const float4 *>(dsp + 4);
            }
            wgmma_wait<0>();
            // dS^T = P^T (dP^T - Dsum): fragments pa (P^T), da (dS^T), and dS^T
            // into sdS[s] for dQ
            {
#pragma unroll
                for (int i = 0; i < WBM / 8; ++i) {
                    // Dsum of this thread's query columns of tile i (loaded per
                    // tile: 16 registers at once would spill; SP: per two tiles)
                    float dsr[2];
                    if constexpr (SP) {
                        // (SN: the first four tiles' from before dP^T's wait)
                        const float4 d4 = SN && i < 2    ? dpre
                                          : SN && i < 4  ? dpre2
                                                         : *reinterpret_cast<const float4 *>(dsp + 4 * (i >> 1));
                        dsr[0] = i & 1 ? d4.z : d4.x;
                        dsr[1] = i & 1 ? d4.w : d4.y;
                    } else {
                        dsr[0] = dsm[i * 8 + 2 * t];
                        dsr[1] = dsm[i * 8 + 2 * t + 1];
                    }
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        float pv[2], dsv[2];
#pragma unroll
                        for (int c = 0; c < 2; ++c) {
                            pv[c] = sT[i][2 * r + c];
                            dsv[c] = pv[c] * (dpT[i][2 * r + c] - dsr[c]);
                        }
                        const uint32_t pp = pack2<T>(pv[0], pv[1]), dd = pack2<T>(dsv[0], dsv[1]);
                        pa[i >> 1][(i & 1) * 2 + r] = pp;
                        da[i >> 1][(i & 1) * 2 + r] = dd;
                        if constexpr (!C::DQT && !ST)
                            *reinterpret_cast<uint32_t *>(sdST + pnl<WBN>(jr0 + 8 * r, i * 8 + 2 * t)) = dd;
                    }
                }
            }
            if constexpr (ST) {
                // dS^T into sdS[s] by stmatrix: da[kk] are the 8x8 blocks (key
                // rows 8 (m & 1), query tile 2kk + (m >> 1)) m = 0..3 of the
                // warp's 16 rows; lane l the address of row l & 7 of block l >> 3
                const int ln = ct & 31, m = ln >> 3;
                const int row = jr0 - g + 8 * (m & 1) + (ln & 7);
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk) {
                    const uint32_t addr = smem_u32(sdST + pnl<WBN>(row, (2 * kk + (m >> 1)) * 8));
                    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                                 "r"(da[kk][0]), "r"(da[kk][1]), "r"(da[kk][2]), "r"(da[kk][3])
                                 : "memory");
                }
            }
            if constexpr (C::DQT) {
                // dS (query rows, keys: K-major for dQ^T) by stmatrix.trans: the
                // 8x8 blocks (query tile 2p + (m >> 1), key rows 8 (m & 1)) of
                // da[p][m]; lane l gives query row 8 (2p + (l >> 4)) + (l & 7)
                // of block m = l >> 3
                // (from an opaque copy here, else ptxas kept the address live and spilled)
                const int cs = opaque_int(ctid), ln = cs & 31;
                const int kv = (cs >> 7) * 64 + ((cs >> 5) & 3) * 16 + 8 * ((ln >> 3) & 1);
#pragma unroll
                for (int pp = 0; pp < WBM / 16; ++pp) {
                    const uint32_t addr = smem_u32(sdST + pnl<WBM>(pp * 16 + (ln >> 4) * 8 + (ln & 7), kv));
                    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
                                 "r"(da[pp][0]), "r"(da[pp][1]), "r"(da[pp][2]), "r"(da[pp][3])
                                 : "memory");
                }
            }
            // dV += P^T dO
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < WBM / 16; ++kk)
                wg_rs<T, PV>(&acc_v[0][0], pa[kk], GDesc<RB>(sdOa, WBM * RB, 8 * RB).at(kk * 16 * RB), 1);
            auto issue_dk = [&]() {
#pragma unroll
                for (int kk = 0; kk < WBM / 16; ++kk)
                    wg_rs<T, PK>(&acc_k[0][0], da[kk], GDesc<RB>(sQa, WBM * RB, 8 * RB).at(kk * 16 * RB), 1);
                wgmma_commit();
            };
            // the dQ tile of this thread's fragment (rows m0 + rl, columns col0 + 8c + 2t)
            const int qb = NQB > 1 ? s : 0;
            float *tileq = sdQ + qb * (WBM * DQK);
            auto stage_dq = [&](const float(*dq)[4], int row0, int col0) {
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int rl = row0 + warp * 16 + g + 8 * r; // (m0 + rl) & 7 == g
#pragma unroll
                    for (int c = 0; c < DQN / 8; ++c)
                        if (DQK % 64 == 0 || col0 + c * 8 < DQK)
                            *reinterpret_cast<float2 *>(tileq + rl * DQK + dqa_col<DQK>(g, col0 + c * 8 + 2 * t)) =
                                make_float2(dq[c][2 * r], dq[c][2 * r + 1]);
                }
            };
            auto dq_gemm = [&](float(*dq)[4]) {
                // dS^T, MN-major: 128 rows, warpgroup w's query rows 64w.. (panel w);
                // K, MN-major: warpgroup w's columns from 64w (panel 64w / PW)
                const uint32_t a0 = sdSa + (C::DQM ? cwd * (WBN * 128) : 0);
                const uint32_t b0 = sKa + (C::DQ2 ? cwd * (64 / PW) : 0) * (WBN * RB);
#pragma unroll
                for (int kk = 0; kk < WBN / 16; ++kk)
                    wg_ss_tt<T, DQN>(&dq[0][0], GDesc<128>(a0, WBM * 128, 1024).at(kk * 16 * 128),
                                     GDesc<RB>(b0, WBN * RB, 8 * RB).at(kk * 16 * RB), kk > 0);
                wgmma_commit();
            };
            if constexpr (C::DQT) {
                wgmma_commit(); // dV
                fence_proxy_async(); // dS stores -> the dQ^T wgmma of both warpgroups
                sm90::named_sync(C::BAR_PDS, 256); // both halves of dS are in sdS[s]
                // warpgroup w: dQ^T[64w .. 64w+63][80 query rows] = K^T dS^T (A:
                // K's panel w, M-major; B: dS, K-major); then dK
                float dq[WBM / 8][4];
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < WBN / 16; ++kk)
                    wg_ss_tk<T, WBM>(&dq[0][0],
                                     GDesc<128>(sKa + cwd * (WBN * 128), WBN * 128, 1024).at(kk * 16 * 128),
                                     GDesc<128>(sdSa, 16, 1024).at((kk >> 2) * (WBM * 128) + (kk & 3) * 32), kk > 0);
                wgmma_commit();
                issue_dk();
                wgmma_wait<1>(); // dV, dQ done
                __syncwarp();
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
                // DP: this warpgroup's half of the tile (its 64 columns of dQ)
                // is its own [80][64] plane, handed to the writer at its own
                // barriers (BAR_DQ_EMPTY / BAR_DQ_FULL + w, 160 threads); else
                // the whole tile at the 288-thread pair
                if constexpr (DP)
                    sm90::named_sync(C::BAR_DQ_EMPTY + (ct >> 7), 160); // the writer has read this half (step it-1)
                else
                    sm90::named_sync(C::BAR_DQ_EMPTY + qb, 288); // the bulk copy has read sdQ (step it-1)
                // element (d = 64w + warp*16 + g + 8r, query row 8c + 2t + e)
                if constexpr (DP) { // (d, d + 8) of a row side by side: one float2
                    static_assert(NQB == 1 && DQK == 128, "DP: one staging tile, two 64-column planes");
                    // (from this step's ct: cwg and warp kept live over the loop spilled)
                    float *plane = tileq + (ct >> 7) * (WBM * 64);
                    const int dl = (((ct >> 5) & 3) << 4) + g; // d - 64w
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        // row q = 8c + 2t + e: q & 7 = 2t + e, so one address a
                        // thread and e, and 8 rows (512 floats) further each c
                        float *pe = plane + (2 * t + e) * 64 + dqa_pair_col<64>(2 * t + e, dl);
#pragma unroll
                        for (int c = 0; c < WBM / 8; ++c)
                            *reinterpret_cast<float2 *>(pe + c * 512) = make_float2(dq[c][e], dq[c][e + 2]);
                    }
                } else {
#pragma unroll
                    for (int c = 0; c < WBM / 8; ++c)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int q = c * 8 + 2 * t + (e & 1),
                                      d = ((ct >> 5) << 4) + g + 8 * (e >> 1);
                            tileq[q * DQK + dqa_col<DQK>(q & 7, d)] = dq[c][e];
                        }
                }
                fence_proxy_async();
                if constexpr (DP)
                    sm90::named_arrive(C::BAR_DQ_FULL + (ct >> 7), 160);
                else
                    sm90::named_arrive(C::BAR_DQ_FULL + qb, 288);
                if constexpr (SN) {
                    // the next step's S^T, issued after dK's wait: with dK
                    // still in flight ptxas counts the accumulators of dV,
                    // dQ^T, dK and S^T at once, too many registers, and
                    // serialises every wgmma (C7512).  After the last step
                    // this step's Q again, a product nobody reads: a wgmma
                    // under a branch would serialise them all, and so did
                    // (C7515) a loop exit before it
                    const bool nx = it + 1 < gi.iters;
                    const int s1 = nx ? s ^ 1 : s;
                    if (nx)
                        sm90::mbar_wait(sm90::smem_addr(&bars->q_full[s1]), ((uint32_t)(it + 1) >> 1) & 1);
                    wgmma_wait<0>(); // dK done
                    issue_st(s1);
                } else {
                    wgmma_wait<0>(); // dK done
                }
                __syncwarp();
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
            } else if constexpr (C::DQ2 || C::DQM) {
                wgmma_commit(); // dV
                fence_proxy_async(); // dS^T stores -> the dQ wgmma of both warpgroups
                sm90::named_sync(C::BAR_PDS, 256); // both halves of dS^T are in sdS[s]
                // warpgroup w: dQ[:, 64w .. 64w+63] (DQM: dQ[64w .. 64w+63, :]); then
                // dK, which runs while dQ is staged
                float dq[DQN / 8][4];
                wgmma_fence();
                dq_gemm(dq);
                issue_dk();
                wgmma_wait<1>(); // dV, dQ done
                __syncwarp();     // (the warp's reads of Dsum before its release)
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
                sm90::named_sync(C::BAR_DQ_EMPTY + qb, 288); // the bulk copy has read sdQ[qb] (step it-NQB)
                stage_dq(dq, C::DQM ? cwg * 64 : 0, C::DQM ? 0 : cwg * 64);
                fence_proxy_async();
                sm90::named_arrive(C::BAR_DQ_FULL + qb, 288);
                wgmma_wait<0>(); // dK done
                __syncwarp();
                if (lane == 0)
                    sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
            } else {
                // a width of 32 or 64: warpgroup 0 computes dQ alone; dK is
                // issued before the branch (wgmma on divergent paths after it
                // would make ptxas serialise every wgmma)
                issue_dk(); // with dV
                fence_proxy_async();
                sm90::named_sync(C::BAR_PDS, 256);
                float dq[DQN / 8][4];
                if (cwg == 0) {
                    wgmma_fence();
                    dq_gemm(dq);
                    wgmma_wait<0>();
                }
                // both warpgroups at one bar.sync instruction (compute-sanitizer
                // synccheck reports a named barrier synced from two places as
                // divergence)
                sm90::named_sync(C::BAR_DQ_EMPTY + qb, 288);
                if (cwg == 0) {
                    stage_dq(dq, 0, 0);
                    fence_proxy_async();
                }
                sm90::named_arrive(C::BAR_DQ_FULL + qb, 288);
                wgmma_wait<0>();
                __syncwarp();
                if (lane == 0) {
                    sm90::mbar_arrive(sm90::smem_addr(&bars->do_empty[s]));
                    sm90::mbar_arrive(sm90::smem_addr(&bars->q_empty[s]));
                }
            }
        }
        if constexpr (SN)
            wgmma_wait<0>(); // (the last step's spare S^T)
    }

    if constexpr (EP || ET) {
        // Every MMA warpgroup is done with K and V (their last wgmma has
        // completed, the loads all consumed): dK (scaled) and dV into their
        // place ([WBN rows][d], 64-column panels, 128-byte swizzle) by
        // stmatrix (the fragments' 8x8 blocks: matrix mi = lane >> 3 of
        // columns 8 (c + (mi >> 1)), rows 8 (mi & 1) of the warp's 16), then
        // to global memory in 16-byte chunks of the rows below sk
        sm90::named_sync(C::BAR_PDS, 256);
        const uint32_t sKa = sb + C::OFF_K, sVa = sb + C::OFF_V;
        const int mi = lane >> 3, r = cwg * 64 + warp * 16 + 8 * (mi & 1) + (lane & 7);
        const float sc = p.scale;
#pragma unroll
        for (int c = 0; c < PK / 8; c += 2) {
            const uint32_t off = 2 * pnl<WBN>(r, 8 * (c + (mi >> 1)));
            asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(sKa + off),
                         "r"(pack2<T>(acc_k[c][0] * sc, acc_k[c][1] * sc)),
                         "r"(pack2<T>(acc_k[c][2] * sc, acc_k[c][3] * sc)),
                         "r"(pack2<T>(acc_k[c + 1][0] * sc, acc_k[c + 1][1] * sc)),
                         "r"(pack2<T>(acc_k[c + 1][2] * sc, acc_k[c + 1][3] * sc))
                         : "memory");
        }
#pragma unroll
        for (int c = 0; c < PV / 8; c += 2) {
            const uint32_t off = 2 * pnl<WBN>(r, 8 * (c + (mi >> 1)));
            asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(sVa + off),
                         "r"(pack2<T>(acc_v[c][0], acc_v[c][1])), "r"(pack2<T>(acc_v[c][2], acc_v[c][3])),
                         "r"(pack2<T>(acc_v[c + 1][0], acc_v[c + 1][1])),
                         "r"(pack2<T>(acc_v[c + 1][2], acc_v[c + 1][3]))
                         : "memory");
        }
        if constexpr (ET) {
            sm90::fence_proxy_async_smem(); // (the stmatrix writes -> the TMA's reads)
            sm90::named_sync(C::BAR_PDS, 256);
            if (ctid == 0) {
                const int kr = R - gi.sk + gi.n0, kx = (int)gi.k_off + gi.sk, kvh = gi.kvh;
#pragma unroll
                for (int pn = 0; pn < PK / PW; ++pn)
                    sm90::tma_store_4d(&tmdK, sb + C::OFF_K + pn * WBN * RB, pn * PW, kvh, kr, kx);
#pragma unroll
                for (int pn = 0; pn < PV / PW; ++pn)
                    sm90::tma_store_4d(&tmdV, sb + C::OFF_V + pn * WBN * RB, pn * PW, kvh, kr, kx);
                sm90::tma_store_commit();
                sm90::tma_store_wait_read<0>(); // (shared memory stays the CTA's until then)
            }
            return;
        }
        sm90::named_sync(C::BAR_PDS, 256);
        const int64_t k_stride = (int64_t)p.kv_heads * DQK, v_stride = (int64_t)p.kv_heads * DV;
        T *dkp = reinterpret_cast<T *>(p.dk) + gi.k_off * k_stride + (int64_t)gi.kvh * DQK;
        T *dvp = reinterpret_cast<T *>(p.dv) + gi.k_off * v_stride + (int64_t)gi.kvh * DV;
        const int n0 = gi.n0, nrows = min(WBN, gi.sk - n0);
        static_assert(PK == DQK && PV == DV, "EP: no padded columns");
#pragma unroll 2
        for (int x = ctid; x < WBN * (DQK / 8); x += 256) {
            const int j = x / (DQK / 8), c = x % (DQK / 8);
            if (j < nrows)
                *reinterpret_cast<uint4 *>(dkp + (int64_t)(n0 + j) * k_stride + c * 8) =
                    *reinterpret_cast<const uint4 *>(base + C::OFF_K + 2 * pnl<WBN>(j, c * 8));
        }
#pragma unroll 2
        for (int x = ctid; x < WBN * (DV / 8); x += 256) {
            const int j = x / (DV / 8), c = x % (DV / 8);
            if (j < nrows)
                *reinterpret_cast<uint4 *>(dvp + (int64_t)(n0 + j) * v_stride + c * 8) =
                    *reinterpret_cast<const uint4 *>(base + C::OFF_V + 2 * pnl<WBN>(j, c * 8));
        }
    } else {
        bwd_rows_store_dkdv<T, DQK, DV, PK, PV>(p, gi, acc_k, acc_v, cwg * 64 + warp * 16, lane);
    }
}

// The bwd_ws_kernel instantiation of a call: SP and SI (together) at 80
// rows, EP in the rows loop at 64-column panels (d64, d128).
// *pairs: whether the kernel stages dQ in dqa_pair_col order (DP), for the
// finish kernel.
template <typename T, int DQK, int DV, int WBM, bool DET, bool WIN>
static auto bwd_ws_pick(int var, bool *pairs) -> decltype(&bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN>) {
    using C = BwdWsCfg<T, DQK, DV, WBM>;
    constexpr bool EPOK = !C::WIDE && !C::DQW && C::PW == 64 && C::PK == DQK && C::PV == DV;
    constexpr int S = C::DQT ? BWD_SP | BWD_SI : 0, E = EPOK ? BWD_EP : 0;
    if constexpr (EPOK && C::DQT) { // ET at 80 rows (with SP + SI, not with EP), DP with it
        if ((var & BWD_ET) && (var & BWD_SP) && !(var & BWD_EP)) {
            if (!(var & BWD_DP))
                return bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET>;
            *pairs = true;
            if ((var & BWD_PX) && (var & BWD_SN) && !(var & BWD_PH))
                return bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET | BWD_DP | BWD_PX | BWD_SN>;
            if constexpr (!WIN) {
                if (var & BWD_PX)
                    return var & BWD_PH ? bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET | BWD_DP | BWD_PX | BWD_PH>
                                        : bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET | BWD_DP | BWD_PX>;
            } else { // (PXW: PX in the unmasked steps, no PH)
                if (var & BWD_PX)
                    return bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET | BWD_DP | BWD_PX>;
            }
            return bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | BWD_ET | BWD_DP>;
        }
    }
    if constexpr (C::DQM) {
        if constexpr (C::DQ_BUFS == 1 && C::PK == 64 && C::PV == 64) {
            // (not with EP: its epilogue after this loop spilled 12-16 bytes;
            // ET at 128 rows with PP only)
            if ((var & BWD_PP) && (var & BWD_ST) && !(var & BWD_EP))
                return var & BWD_ET ? bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, BWD_ST | BWD_PP | BWD_ET>
                                    : bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, BWD_ST | BWD_PP>;
        }
        if (var & BWD_ST)
            return var & BWD_EP ? bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, BWD_ST | E>
                                : bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, BWD_ST>;
    }
    if (!(var & BWD_SP))
        return var & BWD_EP ? bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, E> : bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN>;
    return var & BWD_EP ? bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S | E> : bwd_ws_kernel<T, DQK, DV, WBM, DET, WIN, S>;
}

// Launches bwd_ws_kernel over ctas CTAs (the work list, if use_list, is
// already built); the tensor maps are made here, once per call.  nsm: the
// device's SMs (the kv-head sections of the closed-form order, bwd_ws_work).
// dp: dq_accum in DP's planes (launch_bwd's rule, bwd_dq_planes), which
// this kernel must then write.  dev: the current device (the kernels'
// shared-memory attribute is set once per kernel and device,
// launch_cache.cuh).
template <typename T, int DQK, int DV, int WBM, bool WIN = false>
cudaError_t launch_bwd_ws(const fa4cp_kparams &p, long long ctas, int nb, bool use_list, int nsm, int dev, bool dp) {
    using C = BwdWsCfg<T, DQK, DV, WBM>;
    if (p.total_k == 0) // every sequence has no keys: no KV block, nothing to write
        return cudaSuccess;
    int64_t longest = p.max_sq > p.max_sk ? p.max_sq : p.max_sk;
    int64_t R = 256;
    while (R < longest)
        R <<= 1;
    // (int32 TMA coordinates: rows, and the statistics' [heads][total_q] index)
    if (p.total_q + R >= ((int64_t)1 << 31) || p.total_k + R >= ((int64_t)1 << 31) ||
        (int64_t)p.heads * p.total_q + C::WBM >= ((int64_t)1 << 31))
        return cudaErrorInvalidValue;
    static_assert(!WIN || C::DQT, "WIN: the 80-row element mask");
    if (C::DQT && !WIN && (p.window_left >= 0 || p.window_right >= 0)) // (its element mask has no window)
        return cudaErrorInvalidValue;
    const bool fp16 = MmaType<T>::fp16;
    // with no queries no tile is loaded: any valid base will do
    const bool hq = p.total_q > 0;
    const void *qb = hq ? p.q : p.k, *ob = hq ? p.dout : p.v;
    const int64_t qr = hq ? p.total_q : p.total_k;
    const int qh = hq ? p.heads : p.kv_heads;
    CUtensorMap tq, tk, tv, tdo, tlse, tdsum;
    const int64_t nstat = hq ? (int64_t)p.heads * p.total_q : C::WBM;
    cudaError_t e;
    if ((e = sm90::tmap_ragged_thd(&tq, qb, fp16, qr, qh, DQK, R, C::WBM, C::PW)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tdo, ob, fp16, qr, qh, DV, R, C::WBM, C::PW)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tk, p.k, fp16, p.total_k, p.kv_heads, DQK, R, C::WBN, C::PW)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tv, p.v, fp16, p.total_k, p.kv_heads, DV, R, C::WBN, C::PW)) != cudaSuccess ||
        (e = sm90::tmap_f32_1d(&tlse, p.k, C::STAT_BOX, C::STAT_BOX)) != cudaSuccess ||
        (e = sm90::tmap_f32_1d(&tdsum, p.k, C::STAT_BOX, C::STAT_BOX)) != cudaSuccess)
        return e;
    // The statistics by TMA (1-D maps over [heads][total_q]), or, where a map
    // cannot be made or FA4CP_CUDA_TUNING has 32768, by two warps' loads (the
    // maps above are then never used).
    bool tma_stats = hq && !(p.tuning & 32768);
    if (tma_stats) {
        CUtensorMap a, b;
        tma_stats = sm90::tmap_f32_1d(&a, p.lse, nstat, C::STAT_BOX) == cudaSuccess &&
                    sm90::tmap_f32_1d(&b, p.dsum, nstat, C::STAT_BOX) == cudaSuccess;
        if (tma_stats) {
            tlse = a;
            tdsum = b;
        }
    }
    // SP + SI at 80 rows (FA4CP_CUDA_TUNING 128: off), EP (256: on)
    // ST at 128 rows (1024: off), PP with it (8388608: off)
    // ET (2: off), DP (dp: launch_bwd's bwd_dq_planes), PX (17179869184: off;
    // the windowed kernel's, PXW: 137438953472 = 2^37), PH (34359738368: on),
    // SN with PX and without PH (274877906944 = 2^38: off)
    const long long px_off = WIN ? 137438953472LL : 17179869184LL;
    const int var = (p.tuning & 128 ? 0 : BWD_SP | BWD_SI) | (p.tuning & 256 ? BWD_EP : 0) |
                    (p.tuning & 1024 ? 0 : BWD_ST) | (p.tuning & 8388608 ? 0 : BWD_PP) | (p.tuning & 2 ? 0 : BWD_ET) |
                    (dp ? BWD_DP : 0) | (p.tuning & px_off ? 0 : BWD_PX) |
                    (p.tuning & 34359738368LL ? BWD_PH : 0) | (p.tuning & 274877906944LL ? 0 : BWD_SN);
    // ET's dK and dV maps (else K's and V's, never used)
    CUtensorMap tdk = tk, tdv = tv;
    if ((var & BWD_ET) &&
        ((e = sm90::tmap_ragged_thd(&tdk, p.dk, fp16, p.total_k, p.kv_heads, DQK, R, C::WBN, C::PW)) != cudaSuccess ||
         (e = sm90::tmap_ragged_thd(&tdv, p.dv, fp16, p.total_k, p.kv_heads, DV, R, C::WBN, C::PW)) != cudaSuccess))
        return e;
    bool pairs = false;
    auto kern = p.deterministic ? bwd_ws_pick<T, DQK, DV, WBM, true, WIN>(var, &pairs)
                                : bwd_ws_pick<T, DQK, DV, WBM, false, WIN>(var, &pairs);
    if (pairs != dp) // (bwd_dq_planes promised the planes' kernel, or the other layout)
        return cudaErrorInvalidValue;
    // the attribute once per (kernel, device), as the forward's
    // (launch_cache.cuh; 0.3 us of the host's a call, H200 host 2026-11-30)
    static FuncSmemTable smem_tab;
    FuncSmemCache *sc = func_smem_slot(smem_tab, (const void *)kern);
    bool cached = false;
    auto allow = [&]() {
        return sc ? func_smem_once(*sc, (const void *)kern, C::SMEM, dev, &cached)
                  : cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
    };
    if ((e = allow()) != cudaSuccess)
        return e;
    auto launch = [&]() {
        return launch_pdl(kern, (unsigned)ctas, C::NT, C::SMEM, (cudaStream_t)p.stream, pdl_on(p.tuning), p, tq, tk,
                          tv, tdo, tlse, tdsum, tdk, tdv, (int)R, nb, use_list, tma_stats, nsm);
    };
    e = launch();
    if (e != cudaSuccess && cached) {
        // the cached attribute may be stale (a cudaDeviceReset): set it and try once more
        (void)cudaGetLastError();
        func_smem_forget(*sc, dev);
        if ((e = allow()) != cudaSuccess)
            return e;
        e = launch();
    }
    return e;
}

} // namespace fa4cp
