// fwd_mainloop.cuh - the warp-specialised forward mainloop (sm_90a).
//
// CTA = 1 + NWG warpgroups (NWG = 2 or 3 consumer warpgroups, a parameter of
// the family's FwdCfg).  Warpgroup 0 is the producer: after setmaxnreg.dec
// one thread issues every TMA load (Q once per tile, K and V blocks into
// rings of NS stages, in the order K(first), Q, then K(n) before V(n+1): V
// lags K by one block, as the consumers need it one step later) and fetches
// the next tile; warpgroups 1 .. NWG are consumers (setmaxnreg.inc), each
// owning 64 of the tile's BM = 64 NWG query rows.  Three consumer
// warpgroups (192-row tiles, FA3/FA4's choice for small head dims) give the
// softmax of each more GEMM time of the others to hide under, where one
// block's GEMMs are short (d <= 96).
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
//   empty_k[s], empty_v[s] count CONSUMER_WARPS (lane 0 of every consumer warp)
//   full_q / empty_q      the same for the Q tile
//   tile_full/tile_empty  the two-slot ring of tile indices (fwd_sched.cuh)
// The epilogue stages each consumer warp's 16 rows of O in shared memory
// the tile is done with (FwdCfg::O_KIND) and stores them with TMA, through a
// ragged map that drops rows at or past seqused_q (fwd_epilogue.cuh); the
// store runs under the next tile's mainloop.
// The K/V ring position (stage, phase) and the Q and tile counters carry
// across tiles.  A tile no key is visible to skips every barrier on both
// sides (both decide it from the same tile index).
//
// Consumer step j (KV blocks from the last visible one down):
//   wait K(j), V(j-1); [turn] S = Q K(j)^T; O += P(j-1) V(j-1); [pass]
//   wait_group 1 -> release K(j); mask; softmax of S (new max, p, sum)
//   wait_group 0 -> release V(j-1); O *= alpha; P(j) = bf16(p) in registers
// so the softmax of block j runs under the PV product of block j-1
// (intra-warpgroup overlap).  d128 (FwdCfg::SPEC) runs the softmax of its
// unmasked blocks as FwdSoftmax::step_spec, the exp2 against the running
// base before the row max is known (the max only on its rare path), and
// releases K(j) (and Q) after it, as that path may recompute S from them.
// [turn]/[pass] make the consumer
// warpgroups issue their products in a round robin 0, 1, .., NWG-1, 0, ..
// (warpgroup w waits on named barrier 1 + w, 256 threads: its own 128 and
// the 128 of its predecessor, which arrive when they have issued theirs), so
// one's softmax runs under the others' GEMMs (ping-pong for NWG = 2).  Every
// warpgroup of a CTA takes the same number of turns per tile (the tile's
// block range is the CTA's), so the rotation never skews.
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
// BN-key blocks, NS K/V stages, NWG consumer warpgroups of 64 query rows
// (BM = 64 NWG).  The register split (setmaxnreg, producer / consumer)
// gives the consumers what O (DVP/2 fp32 per thread), S (BN/2) and P (BN/4,
// when in registers) hold.  Two consumer warpgroups: 56/224 up to 160 such
// registers (d 128 x BN 128), else 40/232 (128 x P + 256 x C = 64512, the
// 384 x 168 the CTA is launched with); 24/240 makes the producer spill; d 256
// at BN 80 spills at 232 (so d 256 runs BN 64).  Three (512 threads, 128
// registers each at launch, 65536 in all): see REG_P / REG_C below; the
// consumers need about 56 registers beside O, S and P, so P goes through
// shared memory there.
template <typename T, int DQK_, int DV_, int BN_, int NS_, int NWG_ = 2> struct FwdCfg {
    using Elem = T;
    static constexpr int DQK = DQK_, DV = DV_;
    static constexpr int PWQ = DQK % 64 == 0 ? 64 : 32; // panel widths (columns) of Q/K and of V
    static constexpr int PWV = DV % 64 == 0 ? 64 : 32;
    static constexpr int RBQ = PWQ * 2, RBV = PWV * 2; // bytes per panel row = swizzle width
    static constexpr int DQP = (DQK + PWQ - 1) / PWQ * PWQ; // widths in shared memory
    static constexpr int DVP = (DV + PWV - 1) / PWV * PWV;
    static constexpr int NWG = NWG_;   // consumer warpgroups
    static constexpr int BM = 64 * NWG; // query rows of a tile
    static constexpr int BN = BN_;
    static constexpr int NS = NS_; // K/V stages
    static constexpr int NT = 128 * (1 + NWG); // producer + consumer warpgroups
    static constexpr int TILE_Q = BM * DQP * 2;
    static constexpr int TILE_K = BN * DQP * 2;
    static constexpr int TILE_V = BN * DVP * 2;
    static constexpr int OFF_K = TILE_Q;
    static constexpr int OFF_V = OFF_K + NS * TILE_K;
    // P as the A operand of O += P V: in registers (RS), or, with three
    // consumer warpgroups, in shared memory (SS; FA4's choice there: the
    // registers of the RS form do not fit in 160, ptxas serialises the
    // wgmmas), [NWG][BN/64 panels][64 rows][64] with the 128-byte swizzle
    static constexpr bool PV_SS = NWG == 3;
    static constexpr int TILE_P = PV_SS ? 64 * BN * 2 : 0; // one warpgroup's
    // the exp2 of a block's scores against the running base, before the row
    // max (FwdSoftmax::step_spec): d128 at two K/V stages, where the
    // consumer's chain from S to P is longer than the tensor pipe's turn
    // and shared memory has room for S (step_spec's rare path recomputes it there)
    static constexpr bool SPEC = DQK == 128 && DV == 128 && NWG == 2 && NS == 2;
    static constexpr int OFF_P = OFF_V + NS * TILE_V;
    // SPEC: a warpgroup's S fragments, [4 warps][BN/8][32 lanes][4 floats] (fwd_recompute_s)
    static constexpr int TILE_S = SPEC ? 128 * BN / 2 * 4 : 0;
    static constexpr int OFF_S = OFF_P + NWG * TILE_P;
    // The O tile's staging area for the TMA store of the epilogue
    // (fwd_epilogue.cuh): each consumer warp its 16 rows, [DVP/PWV
    // panels][16 rows][PWV] (O_WARP bytes), in a region the tile no longer
    // needs once its last PV product has completed, by O_KIND:
    //   1  step_spec's S scratch (SPEC): warp w of warpgroup g at OFF_S +
    //      (4g + w) * TILE_S / 4, which its rare path reuses (after the store's read)
    //   2  the warpgroup's P tile (PV_SS): the warp's rows of each 64-column
    //      P panel (2 KB each), which its next P overwrites (after the read)
    //   3  a dedicated region at OFF_O where shared memory has room
    //   0  none (d128 at three stages, d192, d192/128 and d256 beside their
    //      tiles: 227 KB full): direct stores from registers, as before
    // Q's buffer is no choice: the producer refills it for the next tile as
    // soon as the last QK^T has read it, under this tile's last blocks.
    static constexpr int O_WARP = 16 * DVP * 2;
    static constexpr int OFF_O = OFF_S + NWG * TILE_S;
    static constexpr bool O_ROOM = OFF_O + BM * DVP * 2 + (int)sizeof(FwdBars<NS>) + 1024 <= 232448;
    static constexpr int O_KIND = SPEC ? 1 : PV_SS ? 2 : O_ROOM ? 3 : 0;
    static constexpr int OFF_BAR = OFF_O + (O_KIND == 3 ? BM * DVP * 2 : 0);
    static constexpr int SMEM = OFF_BAR + (int)sizeof(FwdBars<NS>) + 1024; // + alignment slack
    static constexpr int CONSUMER_WARPS = 4 * NWG;
    static constexpr int ACC_REGS = DVP / 2 + BN / 2 + (PV_SS ? 0 : BN / 4); // O, S, P per thread
    // three warpgroups: 48/152 (128 x 48 + 384 x 152 = 64512) while O and S
    // fit in 96 registers (d <= 64; the 4-stage producer spills below 48),
    // else 32/160 (d 80, 96: O + S = 112)
    static constexpr int REG_P = NWG == 3 ? (DVP / 2 + BN / 2 <= 96 ? 48 : 32) : ACC_REGS <= 160 ? 56 : 40;
    static constexpr int REG_C = NWG == 3 ? (DVP / 2 + BN / 2 <= 96 ? 152 : 160) : ACC_REGS <= 160 ? 224 : 232;
    static_assert(NWG == 2 || NWG == 3, "two or three consumer warpgroups (named barriers 1 .. NWG)");
    static_assert(DQK % 16 == 0 && DQK <= 256, "DQK: a multiple of 16 up to 256 (k steps of QK^T)");
    static_assert(DV % 8 == 0 && DV <= 256, "DV: a multiple of 8 up to 256");
    static_assert(BN % 16 == 0 && BN <= 256, "BN: a multiple of 16 (k steps of PV) up to 256 (wgmma N)");
    static_assert(SMEM <= 232448, "the tiles must fit in 227 KB of shared memory");
    static_assert(!PV_SS || BN % 64 == 0, "P in shared memory: 64-column panels");
    static_assert(OFF_O % 1024 == 0 && TILE_S % 4096 == 0, "O staging: 1024-byte aligned (swizzle atoms)");
    static_assert(O_KIND != 1 || O_WARP <= TILE_S / 4, "O staging in the S scratch: a warp's quarter");
    static_assert(O_KIND != 2 || O_WARP <= BN / 64 * 2048, "O staging in the P tile: the warp's P rows");
    static_assert(128 * REG_P + 128 * NWG * REG_C <= 65536 / NT / 8 * 8 * NT,
                  "register split within the CTA's launch allocation");
};

// --------------------------------------------------------------- producer

// PACK: packed GQA tiles (fwd_sched.cuh): tmQ's boxes are G heads x pt
// tokens, the tile's head is its KV head.
template <class C, bool PACK>
__device__ __forceinline__ void fwd_producer(const fa4cp_kparams &p, const FwdSched &sc, const CUtensorMap *tmQ,
                                             const CUtensorMap *tmK, const CUtensorMap *tmV, uint32_t sQ,
                                             uint32_t sK, uint32_t sV, FwdBars<C::NS> *bars, int R) {
    constexpr int BM = C::BM, BN = C::BN, NS = C::NS;
    using B = FwdBars<NS>;
    // the barriers as 32-bit shared addresses (no generic pointer held: the
    // producer runs in the few registers setmaxnreg leaves it)
    const uint32_t bb = sm90::smem_addr(bars);
    sm90::tma_prefetch_desc(tmQ);
    sm90::tma_prefetch_desc(tmK);
    sm90::tma_prefetch_desc(tmV);
    const int grp = p.heads / p.kv_heads;
    // packed: pt tokens x G heads of Q, the expect-tx bytes of the (full) boxes
    const int rows = PACK ? sc.pt : BM;
    const uint32_t q_bytes = PACK ? (uint32_t)(sc.pt * grp * C::DQP * 2) : (uint32_t)C::TILE_Q;
    int tile = blockIdx.x;
    uint32_t tcount = 0, kk = 0, vv = 0, qc = 0; // tiles, K blocks, V blocks, Q tiles so far
    for (;;) {
        const int s = tcount & 1;
        sm90::mbar_wait(bb + offsetof(B, tile_empty) + 8 * s, ((tcount >> 1) & 1) ^ 1);
        // read per tile (fewer registers held by the producer; an L1 hit)
        const int n_entries = fwd_num_entries(p, sc);
        const bool valid = tile < n_entries * sc.heads;
        asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(bb + (uint32_t)offsetof(B, slot) + 4 * s),
                     "r"(valid ? tile : -1)
                     : "memory");
        sm90::mbar_arrive(bb + offsetof(B, tile_full) + 8 * s);
        ++tcount;
        if (!valid)
            break;
        // the next tile: every valid tile is followed by one ticket, so the
        // tickets are 0 .. tiles - 1 and the CTA that takes the last one
        // leaves the counter 0 for the next call (FwdSched::ctr)
        auto next_tile = [&]() {
            const int t = atomicAdd(sc.ctr, 1);
            if (t == n_entries * sc.heads - 1)
                atomicExch(sc.ctr, 0);
            return t + (int)gridDim.x;
        };
        const FwdTile ft = fwd_decode(sc, n_entries, tile);
        const SeqInfo si = seq_info(p, ft.b);
        const Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
        const FwdBlocks fb = fwd_blocks_rows<BN>(mk, ft.mb * rows, rows, si.sq, si.sk);
        if (!fb.empty) {
            const int kvh = PACK ? ft.h : ft.h / grp;
            const int qx = (int)si.q_off + si.sq, kx = (int)si.k_off + si.sk;
            // K of block n, into the K ring
            auto load_k = [&](int n) {
                const int st = kk % NS;
                const uint32_t ph = (kk / NS) & 1;
                const uint32_t fk = bb + offsetof(B, full_k) + 8 * st;
                sm90::mbar_wait(bb + offsetof(B, empty_k) + 8 * st, ph ^ 1);
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
                const uint32_t fv = bb + offsetof(B, full_v) + 8 * st;
                sm90::mbar_wait(bb + offsetof(B, empty_v) + 8 * st, ph ^ 1);
                sm90::mbar_arrive_expect_tx(fv, C::TILE_V);
#pragma unroll
                for (int pn = 0; pn < C::DVP / C::PWV; ++pn)
                    sm90::tma_load_4d(sV + st * C::TILE_V + pn * BN * C::RBV, tmV, fv, pn * C::PWV, kvh,
                                      R - si.sk + n * BN, kx, sm90::kEvictLast);
                ++vv;
            };
            load_k(fb.n_hi);
            {
                const uint32_t fq = bb + offsetof(B, full_q);
                sm90::mbar_wait(bb + offsetof(B, empty_q), (qc & 1) ^ 1);
                sm90::mbar_arrive_expect_tx(fq, q_bytes);
#pragma unroll
                for (int pn = 0; pn < C::DQP / C::PWQ; ++pn)
                    sm90::tma_load_4d(sQ + pn * BM * C::RBQ, tmQ, fq, pn * C::PWQ, PACK ? kvh * grp : ft.h,
                                      R - si.sq + ft.mb * rows, qx, sm90::kEvictFirst);
                ++qc;
            }
            if (p.tuning & 2048) { // K and V of a block together
                load_v(fb.n_hi);
                for (int n = fb.n_hi - 1; n >= fb.n_lo; --n) {
                    load_k(n);
                    load_v(n);
                }
                tile = next_tile();
            } else { // V lags K by one block: K(n) reaches the consumers earlier
                for (int n = fb.n_hi - 1; n >= fb.n_lo; --n) {
                    load_k(n);
                    load_v(n + 1);
                }
                // the next tile, fetched after the last K load (FA3's place:
                // the consumers are still on this tile's last blocks; held
                // from the tile's start it would cost the producer a register)
                tile = next_tile();
                load_v(fb.n_lo);
            }
        } else {
            tile = next_tile();
        }
    }
}

// --------------------------------------------------------------- consumer GEMMs

// Shared-memory matrix descriptor of a swizzled canonical layout with RB-byte
// rows (RB 128: 128-byte swizzle, layout type 1; RB 64: 64-byte swizzle,
// type 2).  K-major: sbo = 8 rows; MN-major: lbo = panel stride, sbo = 8 rows.
// Built from two 32-bit words: the low word (start address >> 4, LBO >> 4)
// is made once per operand (fwd_desc_lo) and each k step only adds its byte
// offset >> 4 to it (shared addresses stay below 2^18, so the 14-bit address
// field never carries into the LBO field); the high word (SBO >> 4, layout
// type) is a constant of the layout: 94 instead of 130 instructions (d128)
// between the turn's named barrier and its arrive, and a shorter dependency
// chain (add, R2UR, HGMMA) in front of each wgmma.
__device__ __forceinline__ uint32_t fwd_desc_lo(uint32_t saddr, uint32_t lbo) {
    return ((saddr & 0x3FFFF) >> 4) | (((lbo >> 4) & 0x3FFF) << 16);
}
template <int RB> __device__ __forceinline__ uint64_t fwd_desc(uint32_t lo, uint32_t byte_off, uint32_t sbo) {
    static_assert(RB == 128 || RB == 64, "128- or 64-byte swizzle");
    const uint32_t hi = ((sbo >> 4) & 0x3FFF) | ((RB == 128 ? 1u : 2u) << 30);
    return ((uint64_t)hi << 32) | (uint64_t)(lo + (byte_off >> 4));
}

// S[64 x BN] = Q[wg rows] K^T over the DQK real columns (K-major operands;
// k step kk starts (kk % (PWQ / 16)) * 32 bytes into the rows of panel
// kk / (PWQ / 16)).  qd, kd: fwd_desc_lo of this warpgroup's Q rows and of
// the K stage (LBO 16).
template <class C>
__device__ __forceinline__ void fwd_gemm_qk(float *s, uint32_t qd, uint32_t kd) {
    constexpr int KP = C::PWQ / 16; // k steps per panel
#pragma unroll
    for (int kk = 0; kk < C::DQK / 16; ++kk) {
        const uint32_t off = (kk % KP) * 32;
        const uint64_t da = fwd_desc<C::RBQ>(qd, (kk / KP) * (C::BM * C::RBQ) + off, 8 * C::RBQ);
        const uint64_t db = fwd_desc<C::RBQ>(kd, (kk / KP) * (C::BN * C::RBQ) + off, 8 * C::RBQ);
        wg_ss<typename C::Elem, C::BN>(s, da, db, kk > 0 ? 1 : 0);
    }
}

// O[64 x DVP] += P[64 x BN] (registers) V[BN x DVP] (MN-major: N = DVP spans
// the V panels, which sit BN * RBV bytes apart; k step kk is 16 rows on).
// vd: fwd_desc_lo of the V stage with LBO = the panel stride.
template <class C>
__device__ __forceinline__ void fwd_gemm_pv(float *o, const uint32_t *pa, uint32_t vd) {
#pragma unroll
    for (int kk = 0; kk < C::BN / 16; ++kk) {
        const uint64_t db = fwd_desc<C::RBV>(vd, kk * 16 * C::RBV, 8 * C::RBV);
        wg_rs<typename C::Elem, C::DVP>(o, pa + 4 * kk, db, 1);
    }
}

// The same from P in shared memory (PV_SS): pd is fwd_desc_lo of this
// warpgroup's P tile, K-major [BN/64 panels][64 rows][64] (k step kk starts
// (kk % 4) * 32 bytes into the rows of panel kk / 4).
template <class C>
__device__ __forceinline__ void fwd_gemm_pv_ss(float *o, uint32_t pd, uint32_t vd) {
#pragma unroll
    for (int kk = 0; kk < C::BN / 16; ++kk) {
        const uint64_t da = fwd_desc<128>(pd, (kk / 4) * (64 * 128) + (kk % 4) * 32, 8 * 128);
        const uint64_t db = fwd_desc<C::RBV>(vd, kk * 16 * C::RBV, 8 * C::RBV);
        wg_ss_mn<typename C::Elem, C::DVP>(o, da, db, 1);
    }
}

// P (fp32 m64nBN fragment, rows of this warp) -> the warpgroup's P tile in
// shared memory, by stmatrix: k step t is four 8x8 matrices (rows 0-7 and
// 8-15 of the warp, columns 16t and 16t + 8), the registers pack_p builds;
// lane l gives the address of row l % 8 of matrix l / 8.  Then the fence
// that makes the stores visible to wgmma (the async proxy); the warpgroup's
// named-barrier wait orders them before the PV issue.
template <class C>
__device__ __forceinline__ void fwd_store_p(const float *s, uint32_t pw, int warp, int lane) {
    const int j = lane >> 3, r = warp * 16 + (j & 1) * 8 + (lane & 7);
    const uint32_t rb = pw + r * 128;
    const int jc = j >> 1, rx = r & 7;
#pragma unroll
    for (int t = 0; t < C::BN / 16; ++t) {
        uint32_t a[4];
        a[0] = pack2<typename C::Elem>(s[8 * t + 0], s[8 * t + 1]);
        a[1] = pack2<typename C::Elem>(s[8 * t + 2], s[8 * t + 3]);
        a[2] = pack2<typename C::Elem>(s[8 * t + 4], s[8 * t + 5]);
        a[3] = pack2<typename C::Elem>(s[8 * t + 6], s[8 * t + 7]);
        const uint32_t addr = rb + (t / 4) * (64 * 128) + (((2 * (t % 4) + jc) ^ rx) << 4);
        asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a[0]),
                     "r"(a[1]), "r"(a[2]), "r"(a[3])
                     : "memory");
    }
    sm90::fence_proxy_async_smem();
}

// S of this thread's rows recomputed from Q and K in shared memory, with
// fp32 FMAs (FwdSoftmax::step_spec's rare path, where a score jump of 128 or
// more in log2 units overflowed the exp2 taken before the max): register i =
// 4c + 2r + e of this warp's m64nBN fragment is row warp * 16 + lane / 4 +
// 8r of the warpgroup's Q rows (qa: their first row in panel 0) and key 8c +
// 2q + e of the K stage at kst; both are 64-column panels with the 128-byte
// swizzle (16-byte chunk ch of row x at (ch ^ (x % 8)) * 16).  The elements
// go one at a time (a loop: few registers beside O and P, which the PV
// product in flight still holds) to this thread's part of sb, this warp's
// quarter of the scratch tile, [BN/8][32][4] floats (per warp, so that the
// epilogue can stage the warp's O rows in it: O_KIND 1), and then into s
// (fwd_load_frag).
template <class C> __device__ __noinline__ void fwd_recompute_s(uint32_t sb, uint32_t qa, uint32_t kst, int ct) {
    static_assert(C::RBQ == 128, "64-column panels");
    using T = typename C::Elem;
    const int warp = ct >> 5, lane = ct & 31;
    const int r0 = warp * 16 + (lane >> 2), q = lane & 3; // rows r0, r0 + 8: the same swizzle
#pragma unroll 1
    for (int i = 0; i < C::BN / 2; ++i) {
        const int row = r0 + 8 * ((i >> 1) & 1), key = 8 * (i >> 2) + 2 * q + (i & 1);
        float d = 0.f;
#pragma unroll 1
        for (int ch = 0; ch < C::DQK / 8; ++ch) {
            uint32_t a[4], kv[4];
            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                         : "r"(qa + (ch / 8) * (C::BM * 128) + row * 128 + (uint32_t)(((ch % 8) ^ (row & 7)) << 4)));
            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(kv[0]), "=r"(kv[1]), "=r"(kv[2]), "=r"(kv[3])
                         : "r"(kst + (ch / 8) * (C::BN * 128) + key * 128 + (uint32_t)(((ch % 8) ^ (key & 7)) << 4)));
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                const float2 kf = unpack2<T>(kv[w]), x = unpack2<T>(a[w]);
                d = fmaf(x.x, kf.x, fmaf(x.y, kf.y, d));
            }
        }
        asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(sb + ((i >> 2) * 32 + lane) * 16 + (i & 3) * 4), "f"(d)
                     : "memory");
    }
}

// An m64nN fragment (N/2 registers of this thread) from shared memory,
// [N/8][32][4] floats from the warp's sb (fwd_recompute_s's layout: 16-byte
// accesses, a warp's consecutive; only the thread itself wrote its part).
template <int N> __device__ __forceinline__ void fwd_load_frag(float *f, uint32_t sb, int lane) {
#pragma unroll
    for (int i = 0; i < N / 8; ++i)
        asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                     : "=f"(f[4 * i]), "=f"(f[4 * i + 1]), "=f"(f[4 * i + 2]), "=f"(f[4 * i + 3])
                     : "r"(sb + (i * 32 + lane) * 16)
                     : "memory");
}

// Panel pn of the O staging area of warp `warp` of warpgroup wg (O_KIND
// 1-3, see FwdCfg): 16 rows x RBV bytes, 1024-byte aligned.
template <class C> __device__ __forceinline__ uint32_t fwd_o_panel(uint32_t sQ, int wg, int warp, int pn) {
    static_assert(C::O_KIND != 0, "no O staging area");
    const int off = pn * 16 * C::RBV;
    if constexpr (C::O_KIND == 1)
        return sQ + C::OFF_S + (4 * wg + warp) * (C::TILE_S / 4) + off;
    else if constexpr (C::O_KIND == 2)
        return sQ + C::OFF_P + wg * C::TILE_P + (off / 2048) * (64 * 128) + warp * 2048 + off % 2048;
    else
        return sQ + C::OFF_O + (4 * wg + warp) * C::O_WARP + off;
}

// Lane 0 of each warp arrives (the barriers count the CONSUMER_WARPS consumer warps).
__device__ __forceinline__ void fwd_release(uint64_t *bar, int lane) {
    if (lane == 0)
        sm90::mbar_arrive(sm90::smem_addr(bar));
}

// --------------------------------------------------------------- consumer

// OTMA: the epilogue stores O through shared memory and TMA (needs
// C::O_KIND != 0), else directly from registers.  PACK: packed GQA tiles
// (fwd_sched.cuh), each row at its own token and head: with OTMA (G a power
// of two) a warp's 16 rows are one box of the out map, min(G, 16) heads x
// max(16 / G, 1) tokens; else direct stores.  A template parameter, not
// a run-time switch: with both epilogues in one kernel ptxas spilled 40
// bytes around the d128 mainloop (main: 8; the TMA kernel alone: none).
template <class C, bool OTMA, bool PACK>
__device__ __forceinline__ void fwd_consumer(const fa4cp_kparams &p, const FwdSched &sc, const CUtensorMap *tmO,
                                             uint32_t sQ, uint32_t sK, uint32_t sV, FwdBars<C::NS> *bars, int wg,
                                             int ct, int R) {
    using T = typename C::Elem;
    constexpr int BM = C::BM, BN = C::BN, NS = C::NS, DV = C::DV, DVP = C::DVP;
    const int warp = ct >> 5, lane = ct & 31, q = lane & 3;
    const int n_entries = fwd_num_entries(p, sc);
    const int H = p.heads;
    const int64_t stride = (int64_t)H * DV; // out rows
    const float sl2 = p.scale * kLog2e;
    // conditional rescale threshold (fwd_softmax.cuh); tuning 8192: always rescale
    const float thr = (p.tuning & 8192) ? -1.f : 8.f;
    const float big = (p.tuning & 8192) ? 0.5f : 256.f; // 2^thr: step_spec's bound on a row sum
    // step_spec for the unmasked blocks (tuning 1048576: step() everywhere)
    const bool spec_on = C::SPEC && !(p.tuning & 1048576);
    const uint32_t qa = sQ + wg * 64 * C::RBQ; // this warpgroup's 64 rows of every Q panel
    // round robin of the GEMM turns: this warpgroup's barrier, its successor's
    const uint32_t my_bar = 1 + wg, next_bar = 1 + (wg + 1) % C::NWG;
    T *const out = reinterpret_cast<T *>(p.out);
    uint32_t tcount = 0, kv = 0, qc = 0;
    // packed: G query heads per tile token, pt tokens per tile (rows = the tile's tokens)
    const int G = PACK ? sc.pg : 1, rows = PACK ? sc.pt : BM;
    const int xr = wg * 64 + warp * 16 + (lane >> 2); // the thread's tile rows xr, xr + 8
    // packed: the token (from the tile's first, m0) and the query head (of KV head kvh) of tile row x
    auto ptok = [&](int x) { return x / G; };
    auto phead = [&](int kvh, int x) { return kvh * G + x % G; };
    // packed: row r's O row and lse offsets, and whether it is written (a real row below sq)
    auto prow = [&](int r, int m0, int kvh, int q_off, int sq, int64_t *orow, int64_t *lrow, bool *ok) {
        const int x = xr + 8 * r, t = m0 + ptok(x), hd = phead(kvh, x);
        ok[r] = x < rows * G && t < sq;
        orow[r] = ((int64_t)q_off + t) * stride + (int64_t)hd * DV;
        lrow[r] = (int64_t)hd * p.total_q + q_off + t;
    };

    if (wg == C::NWG - 1)
        sm90::named_arrive(1, 256); // as warpgroup 0's predecessor: warpgroup 0 takes the first turn

    float s[BN / 2];
    float o[DVP / 2];
    uint32_t pa[C::PV_SS ? 1 : BN / 4]; // RS: P as A fragments, 4 registers per k16 step
    const uint32_t pw = sQ + C::OFF_P + wg * C::TILE_P; // SS: this warpgroup's P tile
    // P(j) from the softmax's p, where O += P V reads it; its register fence; the product
    auto make_p = [&]() {
        if constexpr (C::PV_SS)
            fwd_store_p<C>(s, pw, warp, lane);
        else
            pack_p<T, BN>(s, pa);
    };
    auto fence_p = [&]() {
        if constexpr (!C::PV_SS)
            reg_fence<BN / 4>(pa);
    };
    // descriptor low words (fwd_desc_lo): Q rows of this warpgroup, K and V
    // stage 0 (stage st adds st * TILE / 16), this warpgroup's P tile
    const uint32_t qd = fwd_desc_lo(qa, 16), kd0 = fwd_desc_lo(sK, 16), vd0 = fwd_desc_lo(sV, C::BN * C::RBV);
    const uint32_t pd = fwd_desc_lo(pw, 16);
    auto gemm_qk = [&](int stage) { fwd_gemm_qk<C>(s, qd, kd0 + stage * (C::TILE_K >> 4)); };
    auto gemm_pv = [&](int stage) {
        const uint32_t vd = vd0 + stage * (C::TILE_V >> 4);
        if constexpr (C::PV_SS)
            fwd_gemm_pv_ss<C>(o, pd, vd);
        else
            fwd_gemm_pv<C>(o, pa, vd);
    };
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
        const int m0 = ft.mb * rows; // packed: the first token
        FwdBlocks fb = fwd_blocks_rows<BN>(mk, m0, rows, si.sq, si.sk);
        fb.n_lo = sm90::warp_uniform(fb.n_lo);
        fb.n_hi = sm90::warp_uniform(fb.n_hi);
        fb.empty = fb.n_hi < fb.n_lo;
        const int i0 = m0 + wg * 64 + warp * 16 + (lane >> 2); // rows i0, i0 + 8
        // what the epilogue needs, kept small across the mainloop (the
        // pointers are formed after it: fewer live registers under the GEMMs)
        const int q_off = (int)si.q_off, sq = si.sq, h = ft.h;
        if (fb.empty) {
            if constexpr (PACK) {
                int64_t orow[2], lrow[2];
                bool ok[2];
                const float none[2] = {-INFINITY, -INFINITY};
                for (int r = 0; r < 2; ++r)
                    prow(r, m0, h, q_off, sq, orow, lrow, ok);
                fwd_write_rows_at<T, DV>(nullptr, none, out, p.lse, orow, lrow, ok, q);
            } else {
                fwd_store_empty<T, DV>(out + si.q_off * stride + (int64_t)ft.h * DV, stride,
                                       p.lse + (int64_t)ft.h * p.total_q + si.q_off, i0, si.sq, q);
            }
            continue;
        }
        // the element mask, reduced to what the blocks need: the masked
        // blocks (fwd_mask_blocks) and the visible keys of the thread's rows
        const FwdMaskBlocks mb = fwd_mask_blocks_rows<BN>(mk, p.window_left, p.window_right, m0, rows);
        int row_lo[2], row_hi[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int t = PACK ? m0 + ptok(xr + 8 * r) : i0 + 8 * r; // the row's token
            row_lo[r] = (int)mk.lo(t);
            row_hi[r] = (int)mk.hi(t);
        }
        sm90::mbar_wait(sm90::smem_addr(&bars->full_q), qc & 1);
        ++qc;

        FwdSoftmax<BN, C::SPEC> sm;
        sm.init();
        float alpha[2];

        // first block: S, softmax, P; O starts at 0
        int n = fb.n_hi;
        int st = kv % NS;
        uint32_t ph = (kv / NS) & 1;
        ++kv;
        sm90::mbar_wait_hot(sm90::smem_addr(&bars->full_k[st]), ph);
        sm90::named_sync(my_bar, 256);
        wgmma_fence();
        gemm_qk(st);
        wgmma_commit();
        sm90::named_arrive(next_bar, 256);
        wgmma_wait<0>();
        reg_fence<BN / 2>(s);
        fwd_release(&bars->empty_k[st], lane);
        if (n == fb.n_lo)
            fwd_release(&bars->empty_q, lane);
        if (mb.masked(n))
            fwd_apply_mask<BN>(s, row_lo, row_hi, n * BN, q);
        sm.step(s, sl2, thr, alpha);
        // step_spec needs a base: every row of the warp has seen a key
        bool spec_ok = spec_on && !sm.any_unseen();
        if constexpr (OTMA && C::O_KIND == 2)
            fwd_o_free(); // the last tile's O store has read the warp's P rows
        make_p();
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
            sm90::mbar_wait_hot(sm90::smem_addr(&bars->full_k[st]), ph);
            // V(j-1) was loaded before K(j): waiting for it here keeps control
            // flow out of the window between the two GEMM batches
            sm90::mbar_wait_hot(sm90::smem_addr(&bars->full_v[pst]), pph);
            sm90::named_sync(my_bar, 256);
            fence_p();
            reg_fence<DVP / 2>(o);
            wgmma_fence();
            gemm_qk(st);
            wgmma_commit();
            gemm_pv(pst);
            wgmma_commit();
            sm90::named_arrive(next_bar, 256);
            wgmma_wait<1>();
            reg_fence<BN / 2>(s);
            bool resc = false;
            if (C::SPEC && spec_ok && !mb.masked(n)) {
                // K(j) and Q stay until the step is through: its rare path reads them
                if constexpr (C::SPEC) {
                    const int r = sm.step_spec(s, sl2, big, alpha);
                    if (r == 2) { // S again, through this warp's part of the scratch tile
                        const uint32_t sb = sQ + C::OFF_S + wg * C::TILE_S + warp * (C::TILE_S / 4);
                        if constexpr (OTMA) // the last tile's O store (O_KIND 1) has read it
                            fwd_o_free();
                        fwd_recompute_s<C>(sb, qa, sK + st * C::TILE_K, ct);
                        fwd_load_frag<BN>(s, sb, lane);
                        resc = sm.step(s, sl2, thr, alpha);
                    } else {
                        resc = r != 0;
                    }
                }
                fwd_release(&bars->empty_k[st], lane);
                if (n == fb.n_lo)
                    fwd_release(&bars->empty_q, lane);
            } else {
                fwd_release(&bars->empty_k[st], lane);
                if (n == fb.n_lo)
                    fwd_release(&bars->empty_q, lane);
                if (mb.masked(n))
                    fwd_apply_mask<BN>(s, row_lo, row_hi, n * BN, q);
                resc = sm.step(s, sl2, thr, alpha);
                if constexpr (C::SPEC)
                    spec_ok = spec_on && !sm.any_unseen();
            }
            reg_fence<BN / 2>(s);
            if (n == fb.n_lo)
                break;
            wgmma_wait<0>();
            reg_fence<DVP / 2>(o);
            fence_p();
            fwd_release(&bars->empty_v[pst], lane);
            if (resc)
                rescale_rows<DV>(o, alpha); // the padding columns of O stay 0
            make_p();
            pst = st;
            pph = ph;
        }
        if (fb.n_hi > fb.n_lo) { // the loop ran: finish its last step
            wgmma_wait<0>();
            reg_fence<DVP / 2>(o);
            fence_p();
            fwd_release(&bars->empty_v[pst], lane);
            rescale_rows<DV>(o, alpha); // the padding columns of O stay 0
            make_p();
            pst = st;
            pph = ph;
        }

        // last PV
        sm90::mbar_wait_hot(sm90::smem_addr(&bars->full_v[pst]), pph);
        sm90::named_sync(my_bar, 256);
        fence_p();
        reg_fence<DVP / 2>(o);
        wgmma_fence();
        gemm_pv(pst);
        wgmma_commit();
        sm90::named_arrive(next_bar, 256);
        wgmma_wait<0>();
        reg_fence<DVP / 2>(o);
        fwd_release(&bars->empty_v[pst], lane);

        float inv[2], lse[2];
        sm.finalize(sl2, inv, lse);
        const int i0e = m0 + wg * 64 + warp * 16 + (lane >> 2);
        if constexpr (OTMA) { // through shared memory and TMA (fwd_epilogue.cuh)
            static_assert(C::O_KIND != 0, "no O staging area");
            uint32_t packed[DVP / 4];
            fwd_pack_o<T, DVP>(o, inv, packed);
            auto panel = [&](int pn) { return fwd_o_panel<C>(sQ, wg, warp, pn); };
            fwd_o_free(); // the last tile's store has read the area
            fwd_stage_o<DVP, C::PWV>(packed, panel, lane);
            if constexpr (PACK) { // the warp's rows: one box of G' heads x 16 / G' tokens (G' = min(G, 16))
                const int x0 = wg * 64 + warp * 16; // the warp's first tile row
                fwd_store_o_tma<DVP, C::PWV>(tmO, panel, lane, phead(h, x0), m0 + ptok(x0), q_off, sq, R);
#pragma unroll
                for (int r = 0; r < 2; ++r) { // (G divides BM: no idle rows)
                    const int x = xr + 8 * r, t = m0 + ptok(x);
                    if (q == 0 && t < sq)
                        p.lse[(int64_t)phead(h, x) * p.total_q + q_off + t] = lse[r];
                }
            } else {
                fwd_store_o_tma<DVP, C::PWV>(tmO, panel, lane, h, m0 + wg * 64 + warp * 16, q_off, sq, R);
                fwd_store_lse(lse, p.lse + (int64_t)h * p.total_q + q_off, i0e, sq, q);
            }
        } else if constexpr (PACK) { // each row at its token and query head
            uint32_t packed[DV / 4];
            fwd_pack_o<T, DV>(o, inv, packed); // first, on every thread (C7520)
            int64_t orow[2], lrow[2];
            bool ok[2];
            for (int r = 0; r < 2; ++r)
                prow(r, m0, h, q_off, sq, orow, lrow, ok);
            fwd_write_rows_at<T, DV>(packed, lse, out, p.lse, orow, lrow, ok, q);
        } else {
            fwd_store_rows<T, DV>(o, inv, lse, out + (int64_t)q_off * stride + (int64_t)h * DV, stride,
                                  p.lse + (int64_t)h * p.total_q + q_off, i0e, sq, q);
        }
    }
    // the stores in flight complete before the CTA's shared memory goes
    if constexpr (OTMA)
        sm90::tma_store_wait<0>();
}

} // namespace fa4cp
