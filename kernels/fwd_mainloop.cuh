// fwd_mainloop.cuh - the warp-specialised forward mainloop (sm_90a).
//
// CTA = 3 warpgroups.  Warpgroup 0 is the producer: after setmaxnreg.dec one
// thread issues every TMA load (Q once per tile, K and V blocks into rings
// of NS stages, in the order K(first), Q, then K(n) before V(n+1): V lags K
// by one block, as the consumers need it one step later) and fetches the
// next tile; warpgroups 1 and 2 are consumers
// (setmaxnreg.inc), each owning 64 of the tile's 128 query rows.
//
// Head dims: the tile has DQK columns of Q and K and DV of V and O (DV may
// differ from DQK: MLA's (192, 128)).  Shared memory holds each operand in
// panels of PW columns, swizzled by TMA: 64 columns (128-byte rows, 128-byte
// swizzle) for a head dim that is a multiple of 64, else 32 columns (64-byte
// rows, 64-byte swizzle: d 32, 80, 96).  A head dim that is not a multiple
// of its panel width (80) is padded to the next multiple by TMA's
// out-of-bounds zero fill (the tensor maps have the real width), so QK^T runs
// over the DQK real columns (k steps of 16) and O += P V over the padded
// width DVP (the padding columns of O stay 0 and are never stored).
//
// Shared memory: Q [DQP/PWQ panels][BM][PWQ], K [NS][DQP/PWQ][BN][PWQ], V
// [NS][DVP/PWV][BN][PWV] (the canonical wgmma layouts: K-major for Q and K,
// MN-major for V), then the mbarriers:
//   full_k[s], full_v[s]  count 1 (producer's arrive.expect_tx + TMA bytes)
//   empty_k[s], empty_v[s] count 8 (lane 0 of every consumer warp)
//   full_q / empty_q      the same for the Q tile
//   tile_full/tile_empty  the two-slot ring of tile indices (fwd_sched.cuh)
// The K/V ring position (stage, phase) and the Q and tile counters carry
// across tiles.  A tile no key is visible to skips every barrier on both
// sides (both decide it from the same tile index).
//
// Consumer step j (KV blocks from the last visible one down):
//   wait K(j), V(j-1); [turn] S = Q K(j)^T; O += P(j-1) V(j-1); [pass]
//   wait_group 1 -> release K(j); mask; softmax of S (new max, p, sum)
//   wait_group 0 -> release V(j-1); O *= alpha; P(j) = bf16(p) in registers
// so the softmax of block j runs under the PV product of block j-1
// (intra-warpgroup overlap), and [turn]/[pass] (named barriers 1 and 2)
// make the two consumer warpgroups issue their products in turns, so one's
// softmax runs under the other's GEMMs (ping-pong).
#pragma once

#include "attn_common.cuh"
#include "fwd_epilogue.cuh"
#include "fwd_mask.cuh"
#include "fwd_sched.cuh"
#include "fwd_softmax.cuh"
#include "sm90_prim.cuh"
#include "wgmma.cuh"
#include "wgmma_ops.cuh"

namespace fa4cp {

template <int NS> struct FwdBars {
    uint64_t full_k[NS], empty_k[NS], full_v[NS], empty_v[NS];
    uint64_t full_q, empty_q;
    uint64_t tile_full[2], tile_empty[2];
    int slot[2];
};

// One forward family: element type T, head dims DQK (q, k) and DV (v, out),
// BN-key blocks, NS K/V stages.  BM 128 query rows = 2 consumer warpgroups
// of 64; the register split (setmaxnreg, producer / consumer) gives the
// consumers what O (DVP/2 fp32 per thread), S (BN/2) and P (BN/4) hold:
// 56/224 up to 160 such registers (d 128 x BN 128), else 40/232 (128 x P +
// 256 x C = 64512, the 384 x 168 the CTA is launched with).  24/240 makes
// the producer spill; d 256 at BN 80 spills at 232 (so d 256 runs BN 64).
template <typename T, int DQK_, int DV_, int BN_, int NS_> struct FwdCfg {
    using Elem = T;
    static constexpr int DQK = DQK_, DV = DV_;
    static constexpr int PWQ = DQK % 64 == 0 ? 64 : 32; // panel widths (columns) of Q/K and of V
    static constexpr int PWV = DV % 64 == 0 ? 64 : 32;
    static constexpr int RBQ = PWQ * 2, RBV = PWV * 2; // bytes per panel row = swizzle width
    static constexpr int DQP = (DQK + PWQ - 1) / PWQ * PWQ; // widths in shared memory
    static constexpr int DVP = (DV + PWV - 1) / PWV * PWV;
    static constexpr int BM = 128;
    static constexpr int BN = BN_;
    static constexpr int NS = NS_; // K/V stages
    static constexpr int NT = 384; // producer + 2 consumer warpgroups
    static constexpr int TILE_Q = BM * DQP * 2;
    static constexpr int TILE_K = BN * DQP * 2;
    static constexpr int TILE_V = BN * DVP * 2;
    static constexpr int OFF_K = TILE_Q;
    static constexpr int OFF_V = OFF_K + NS * TILE_K;
    static constexpr int OFF_BAR = OFF_V + NS * TILE_V;
    static constexpr int SMEM = OFF_BAR + (int)sizeof(FwdBars<NS>) + 1024; // + alignment slack
    static constexpr int CONSUMER_WARPS = 8;
    static constexpr int ACC_REGS = DVP / 2 + BN / 2 + BN / 4; // O, S, P per thread
    static constexpr int REG_P = ACC_REGS <= 160 ? 56 : 40;
    static constexpr int REG_C = ACC_REGS <= 160 ? 224 : 232;
    static_assert(DQK % 16 == 0 && DQK <= 256, "DQK: a multiple of 16 up to 256 (k steps of QK^T)");
    static_assert(DV % 8 == 0 && DV <= 256, "DV: a multiple of 8 up to 256");
    static_assert(BN % 16 == 0 && BN <= 256, "BN: a multiple of 16 (k steps of PV) up to 256 (wgmma N)");
    static_assert(SMEM <= 232448, "the tiles must fit in 227 KB of shared memory");
    static_assert(128 * REG_P + 256 * REG_C <= 384 * 168, "register split within the CTA's launch allocation");
};

// --------------------------------------------------------------- producer

template <class C>
__device__ __forceinline__ void fwd_producer(const fa4cp_kparams &p, const FwdSched &sc, const CUtensorMap *tmQ,
                                             const CUtensorMap *tmK, const CUtensorMap *tmV, uint32_t sQ,
                                             uint32_t sK, uint32_t sV, FwdBars<C::NS> *bars, int R) {
    constexpr int BM = C::BM, BN = C::BN, NS = C::NS;
    sm90::tma_prefetch_desc(tmQ);
    sm90::tma_prefetch_desc(tmK);
    sm90::tma_prefetch_desc(tmV);
    const int n_entries = sc.list[0];
    const int ntiles = n_entries * sc.heads;
    const int grp = p.heads / p.kv_heads;
    int tile = blockIdx.x;
    uint32_t tcount = 0, kk = 0, vv = 0, qc = 0; // tiles, K blocks, V blocks, Q tiles so far
    for (;;) {
        const int s = tcount & 1;
        sm90::mbar_wait(sm90::smem_addr(&bars->tile_empty[s]), ((tcount >> 1) & 1) ^ 1);
        const bool valid = tile < ntiles;
        *reinterpret_cast<volatile int *>(&bars->slot[s]) = valid ? tile : -1;
        sm90::mbar_arrive(sm90::smem_addr(&bars->tile_full[s]));
        ++tcount;
        if (!valid)
            break;
        const int next = atomicAdd(sc.ctr, 1) + (int)gridDim.x;
        const FwdTile ft = fwd_decode(sc, n_entries, tile);
        const SeqInfo si = seq_info(p, ft.b);
        const Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
        const FwdBlocks fb = fwd_blocks<BM, BN>(mk, ft.mb * BM, si.sq, si.sk);
        if (!fb.empty) {
            const int kvh = ft.h / grp;
            const int qx = (int)si.q_off + si.sq, kx = (int)si.k_off + si.sk;
            // K of block n, into the K ring
            auto load_k = [&](int n) {
                const int st = kk % NS;
                const uint32_t ph = (kk / NS) & 1;
                const uint32_t fk = sm90::smem_addr(&bars->full_k[st]);
                sm90::mbar_wait(sm90::smem_addr(&bars->empty_k[st]), ph ^ 1);
                sm90::mbar_arrive_expect_tx(fk, C::TILE_K);
#pragma unroll
                for (int pn = 0; pn < C::DQP / C::PWQ; ++pn)
                    sm90::tma_load_4d(sK + st * C::TILE_K + pn * BN * C::RBQ, tmK, fk, pn * C::PWQ, kvh,
                                      R - si.sk + n * BN, kx, sm90::kEvictLast);
                ++kk;
            };
            auto load_v = [&](int n) {
                const int st = vv % NS;
                const uint32_t ph = (vv / NS) & 1;
                const uint32_t fv = sm90::smem_addr(&bars->full_v[st]);
                sm90::mbar_wait(sm90::smem_addr(&bars->empty_v[st]), ph ^ 1);
                sm90::mbar_arrive_expect_tx(fv, C::TILE_V);
#pragma unroll
                for (int pn = 0; pn < C::DVP / C::PWV; ++pn)
                    sm90::tma_load_4d(sV + st * C::TILE_V + pn * BN * C::RBV, tmV, fv, pn * C::PWV, kvh,
                                      R - si.sk + n * BN, kx, sm90::kEvictLast);
                ++vv;
            };
            load_k(fb.n_hi);
            {
                const uint32_t fq = sm90::smem_addr(&bars->full_q);
                sm90::mbar_wait(sm90::smem_addr(&bars->empty_q), (qc & 1) ^ 1);
                sm90::mbar_arrive_expect_tx(fq, C::TILE_Q);
#pragma unroll
                for (int pn = 0; pn < C::DQP / C::PWQ; ++pn)
                    sm90::tma_load_4d(sQ + pn * BM * C::RBQ, tmQ, fq, pn * C::PWQ, ft.h, R - si.sq + ft.mb * BM, qx,
                                      sm90::kEvictFirst);
                ++qc;
            }
            if (p.tuning & 2048) { // K and V of a block together
                load_v(fb.n_hi);
                for (int n = fb.n_hi - 1; n >= fb.n_lo; --n) {
                    load_k(n);
                    load_v(n);
                }
            } else { // V lags K by one block: K(n) reaches the consumers earlier
                for (int n = fb.n_hi - 1; n >= fb.n_lo; --n) {
                    load_k(n);
                    load_v(n + 1);
                }
                load_v(fb.n_lo);
            }
        }
        tile = next;
    }
}

// --------------------------------------------------------------- consumer GEMMs

// Shared-memory matrix descriptor of a swizzled canonical layout with RB-byte
// rows (RB 128: 128-byte swizzle, layout type 1; RB 64: 64-byte swizzle,
// type 2).  K-major: sbo = 8 rows; MN-major: lbo = panel stride, sbo = 8 rows.
template <int RB> __device__ __forceinline__ uint64_t fwd_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    static_assert(RB == 128 || RB == 64, "128- or 64-byte swizzle");
    uint64_t d = 0;
    d |= (uint64_t)((saddr & 0x3FFFF) >> 4);
    d |= (uint64_t)((lbo >> 4) & 0x3FFF) << 16;
    d |= (uint64_t)((sbo >> 4) & 0x3FFF) << 32;
    d |= (uint64_t)(RB == 128 ? 1 : 2) << 62;
    return d;
}

// S[64 x BN] = Q[wg rows] K^T over the DQK real columns (K-major operands;
// k step kk starts (kk % (PWQ / 16)) * 32 bytes into the rows of panel
// kk / (PWQ / 16)).
template <class C>
__device__ __forceinline__ void fwd_gemm_qk(float *s, uint32_t qa, uint32_t ka) {
    constexpr int KP = C::PWQ / 16; // k steps per panel
#pragma unroll
    for (int kk = 0; kk < C::DQK / 16; ++kk) {
        const uint32_t off = (kk % KP) * 32;
        const uint64_t da = fwd_desc<C::RBQ>(qa + (kk / KP) * (C::BM * C::RBQ) + off, 16, 8 * C::RBQ);
        const uint64_t db = fwd_desc<C::RBQ>(ka + (kk / KP) * (C::BN * C::RBQ) + off, 16, 8 * C::RBQ);
        wg_ss<typename C::Elem, C::BN>(s, da, db, kk > 0 ? 1 : 0);
    }
}

// O[64 x DVP] += P[64 x BN] (registers) V[BN x DVP] (MN-major: N = DVP spans
// the V panels, which sit BN * RBV bytes apart; k step kk is 16 rows on).
template <class C>
__device__ __forceinline__ void fwd_gemm_pv(float *o, const uint32_t *pa, uint32_t va) {
#pragma unroll
    for (int kk = 0; kk < C::BN / 16; ++kk) {
        const uint64_t db = fwd_desc<C::RBV>(va + kk * 16 * C::RBV, C::BN * C::RBV, 8 * C::RBV);
        wg_rs<typename C::Elem, C::DVP>(o, pa + 4 * kk, db, 1);
    }
}

// Lane 0 of each warp arrives (the barriers count the 8 consumer warps).
__device__ __forceinline__ void fwd_release(uint64_t *bar, int lane) {
    if (lane == 0)
        sm90::mbar_arrive(sm90::smem_addr(bar));
}

// --------------------------------------------------------------- consumer

template <class C>
__device__ __forceinline__ void fwd_consumer(const fa4cp_kparams &p, const FwdSched &sc, uint32_t sQ, uint32_t sK,
                                             uint32_t sV, FwdBars<C::NS> *bars, int wg, int ct) {
    using T = typename C::Elem;
    constexpr int BM = C::BM, BN = C::BN, NS = C::NS, DV = C::DV, DVP = C::DVP;
    const int warp = ct >> 5, lane = ct & 31, q = lane & 3;
    const int n_entries = sc.list[0];
    const int H = p.heads;
    const int64_t stride = (int64_t)H * DV; // out rows
    const float sl2 = p.scale * kLog2e;
    // conditional rescale threshold (fwd_softmax.cuh); tuning 8192: always rescale
    const float thr = (p.tuning & 8192) ? -1.f : 8.f;
    const uint32_t qa = sQ + wg * 64 * C::RBQ; // this warpgroup's 64 rows of every Q panel
    const uint32_t my_bar = 1 + wg, other_bar = 2 - wg;
    T *const out = reinterpret_cast<T *>(p.out);
    uint32_t tcount = 0, kv = 0, qc = 0;

    if (wg == 1)
        sm90::named_arrive(1, 256); // so that consumer warpgroup 0 takes the first turn

    float s[BN / 2];
    float o[DVP / 2];
    uint32_t pa[BN / 4]; // P as A fragments: 4 registers per k16 step
    for (;;) {
        const int ts = tcount & 1;
        sm90::mbar_wait(sm90::smem_addr(&bars->tile_full[ts]), (tcount >> 1) & 1);
        // warp-uniform values (shfl from lane 0) keep the wgmma code on a
        // path ptxas knows is not divergent
        const int tile = sm90::warp_uniform(*reinterpret_cast<volatile int *>(&bars->slot[ts]));
        fwd_release(&bars->tile_empty[ts], lane);
        ++tcount;
        if (tile < 0)
            break;
        const FwdTile ft = fwd_decode(sc, n_entries, tile);
        const SeqInfo si = seq_info(p, ft.b);
        const Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
        const int m0 = ft.mb * BM;
        FwdBlocks fb = fwd_blocks<BM, BN>(mk, m0, si.sq, si.sk);
        fb.n_lo = sm90::warp_uniform(fb.n_lo);
        fb.n_hi = sm90::warp_uniform(fb.n_hi);
        fb.empty = fb.n_hi < fb.n_lo;
        const int i0 = m0 + wg * 64 + warp * 16 + (lane >> 2); // rows i0, i0 + 8
        T *const out_row0 = out + si.q_off * stride + (int64_t)ft.h * DV;
        float *const lse_row0 = p.lse + (int64_t)ft.h * p.total_q + si.q_off;
        if (fb.empty) {
            fwd_store_empty<T, DV>(out_row0, stride, lse_row0, i0, si.sq, q);
            continue;
        }
        sm90::mbar_wait(sm90::smem_addr(&bars->full_q), qc & 1);
        ++qc;

        FwdSoftmax<BN> sm;
        sm.init();
        float alpha[2];

        // first block: S, softmax, P; O starts at 0
        int n = fb.n_hi;
        int st = kv % NS;
        uint32_t ph = (kv / NS) & 1;
        ++kv;
        sm90::mbar_wait(sm90::smem_addr(&bars->full_k[st]), ph);
        sm90::named_sync(my_bar, 256);
        wgmma_fence();
        fwd_gemm_qk<C>(s, qa, sK + st * C::TILE_K);
        wgmma_commit();
        sm90::named_arrive(other_bar, 256);
        wgmma_wait<0>();
        reg_fence<BN / 2>(s);
        fwd_release(&bars->empty_k[st], lane);
        if (n == fb.n_lo)
            fwd_release(&bars->empty_q, lane);
        if (fwd_block_masked<BM, BN>(mk, p.window_left, p.window_right, m0, n))
            fwd_apply_mask<BN>(s, mk, i0, n * BN, q);
        sm.step(s, sl2, thr, alpha);
        pack_p<T, BN>(s, pa);
#pragma unroll
        for (int i = 0; i < DVP / 2; ++i)
            o[i] = 0.f;
        int pst = st;
        uint32_t pph = ph;

        // The loop leaves right after the softmax of the last block: the branch
        // also ends the basic block between the softmax and wait_group 0, so
        // ptxas cannot hoist the wait above the softmax (it schedules the wait
        // as early as its block allows, which would serialise the softmax
        // behind the PV product it is meant to overlap).
        for (n = fb.n_hi - 1; n >= fb.n_lo; --n) {
            st = kv % NS;
            ph = (kv / NS) & 1;
            ++kv;
            sm90::mbar_wait(sm90::smem_addr(&bars->full_k[st]), ph);
            // V(j-1) was loaded before K(j): waiting for it here keeps control
            // flow out of the window between the two GEMM batches
            sm90::mbar_wait(sm90::smem_addr(&bars->full_v[pst]), pph);
            sm90::named_sync(my_bar, 256);
            reg_fence<BN / 4>(pa);
            reg_fence<DVP / 2>(o);
            wgmma_fence();
            fwd_gemm_qk<C>(s, qa, sK + st * C::TILE_K);
            wgmma_commit();
            fwd_gemm_pv<C>(o, pa, sV + pst * C::TILE_V);
            wgmma_commit();
            sm90::named_arrive(other_bar, 256);
            wgmma_wait<1>();
            reg_fence<BN / 2>(s);
            fwd_release(&bars->empty_k[st], lane);
            if (n == fb.n_lo)
                fwd_release(&bars->empty_q, lane);
            if (fwd_block_masked<BM, BN>(mk, p.window_left, p.window_right, m0, n))
                fwd_apply_mask<BN>(s, mk, i0, n * BN, q);
            const bool resc = sm.step(s, sl2, thr, alpha);
            reg_fence<BN / 2>(s);
            if (n == fb.n_lo)
                break;
            wgmma_wait<0>();
            reg_fence<DVP / 2>(o);
            reg_fence<BN / 4>(pa);
            fwd_release(&bars->empty_v[pst], lane);
            if (resc)
                rescale_rows<DV>(o, alpha); // the padding columns of O stay 0
            pack_p<T, BN>(s, pa);
            pst = st;
            pph = ph;
        }
        if (fb.n_hi > fb.n_lo) { // the loop ran: finish its last step
            wgmma_wait<0>();
            reg_fence<DVP / 2>(o);
            reg_fence<BN / 4>(pa);
            fwd_release(&bars->empty_v[pst], lane);
            rescale_rows<DV>(o, alpha); // the padding columns of O stay 0
            pack_p<T, BN>(s, pa);
            pst = st;
            pph = ph;
        }

        // last PV
        sm90::mbar_wait(sm90::smem_addr(&bars->full_v[pst]), pph);
        sm90::named_sync(my_bar, 256);
        reg_fence<BN / 4>(pa);
        reg_fence<DVP / 2>(o);
        wgmma_fence();
        fwd_gemm_pv<C>(o, pa, sV + pst * C::TILE_V);
        wgmma_commit();
        sm90::named_arrive(other_bar, 256);
        wgmma_wait<0>();
        reg_fence<DVP / 2>(o);
        fwd_release(&bars->empty_v[pst], lane);

        float inv[2], lse[2];
        sm.finalize(sl2, inv, lse);
        fwd_store_rows<T, DV>(o, inv, lse, out_row0, stride, lse_row0, i0, si.sq, q);
    }
}

} // namespace fa4cp
