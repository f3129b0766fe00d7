// fwd_kernel.cuh - the forward kernel (producer + 2 or 3 consumer
// warpgroups, persistent), its launcher, and the tile of each head-dim family
// (FwdShape); a family is instantiated by its own .cu (attn_fwd_hd.cuh).
#pragma once

#include "attn_sched.cuh"
#include "fwd_launch.h"
#include "fwd_mainloop.cuh"
#include "launch_cache.cuh"

namespace fa4cp {

// OTMA: O through shared memory and TMA stores (fwd_consumer).  PACK:
// packed GQA tiles (fwd_sched.cuh), tmQ's boxes G heads x pt tokens.
template <class C, bool OTMA, bool PACK>
__global__ void __launch_bounds__(C::NT, 1)
    fwd_ws_kernel(const fa4cp_kparams p, const __grid_constant__ CUtensorMap tmQ,
                  const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV,
                  const __grid_constant__ CUtensorMap tmO, const FwdSched sc, int R) {
    sm90::grid_dep_wait(); // (launch_pdl)
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
    if constexpr (PACK) {
        // rows pt * G .. BM - 1 of a packed Q tile (G not dividing BM) are
        // never loaded: zeros, so that their scores are finite (never stored)
        for (int i = tid; i < C::TILE_Q / 16; i += C::NT)
            asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(sQ + 16 * i), "r"(0) : "memory");
        sm90::fence_proxy_async_smem(); // before TMA (the async proxy) writes the tile
    }
    __syncthreads();
    const int wg = sm90::warp_uniform(tid >> 7); // uniform, so ptxas sees no divergence

    if (wg == 0) {
        sm90::setmaxnreg_dec<C::REG_P>();
        if (tid == 0)
            fwd_producer<C, PACK>(p, sc, &tmQ, &tmK, &tmV, sQ, sK, sV, bars, R);
        return;
    }
    sm90::setmaxnreg_inc<C::REG_C>();
    fwd_consumer<C, OTMA, PACK>(p, sc, &tmO, sQ, sK, sV, bars, wg - 1, tid - 128 * wg, R);
}

// GQA packing (fwd_sched.cuh) pays where it fills tiles the unpacked kernel
// leaves mostly empty: a sequence of s rows fills s / (ceil(s / BM) BM) of
// its unpacked tiles' rows and s G / (ceil(s / pt) BM) packed (pt = BM / G
// tokens a tile); pack when the first is below 0.9 of the second (FA3's
// rule of thumb), judged at the longest sequence and at the mean length
// (the varlen batch of short sequences whose longest is long).  At long
// sequences both fill their tiles and read K/V as often, so they stay
// unpacked (the TMA epilogue).
//
// Where a packed tile's O cannot take the TMA epilogue (G not a power of two
// dividing BM: 6, 12, ...) its direct stores cost most of the gain: on an
// H200 (R4, 13:09 UTC, d128 GQA 32/8 with the stores forced direct) packed
// was 1.04x unpacked at 16-128 tokens and 0.86x at 256-1024, but 2.0x at
// 1-16 queries against 1k-8k keys.  There it packs only when the unpacked
// tiles are less than half as full (factor 0.5).
static inline bool fwd_pack_pays(int64_t s, int G, int BM, double factor = 0.9) {
    if (s <= 0)
        return false;
    const int pt = BM / G;
    const double fill_u = (double)s / (double)(((s + BM - 1) / BM) * BM);
    const double fill_p = (double)s * G / (double)(((s + pt - 1) / pt) * BM);
    return fill_u < factor * fill_p;
}

// The forward's L2 sections (FwdSched::hsec) in whole GQA groups: at most
// nkv groups a section (their K and V fit in L2), and of the sizes from
// ceil(nkv / 2) to nkv the one whose last section is fullest (the largest on
// ties).  The tiles go section after section, each longest first, so a last
// section much smaller than the others starts its longest tiles when the
// others are nearly done and runs them alone: the CP diagonal step (causal
// 4096 x 4096, 16 heads, d128: nkv 12) took sections of 12 and 4 heads, a
// greedy list schedule of its tiles on 132 SMs ends 15 % after balance;
// sections of 8 and 8 end at balance (2 heads of 1 at 16384: 4.6 %).
// FA4CP_CUDA_TUNING 512: sections of nkv groups, the last one what is left.
static inline int fwd_section_groups(int groups, int nkv, long long tuning) {
    if (nkv >= groups || (tuning & 512))
        return nkv < groups ? nkv : groups;
    int best = nkv, best_last = -1;
    for (int hs = nkv; hs >= (nkv + 1) / 2 && hs >= 1; --hs) {
        const int last = groups - (groups - 1) / hs * hs;
        // last / hs > best_last / best, strictly (so the larger hs keeps a tie)
        if (best_last < 0 || (long long)last * best > (long long)best_last * hs) {
            best = hs;
            best_last = last;
        }
    }
    return best;
}

// PK: the family has a packed instantiation; the launch packs GQA tiles
// where fwd_pack_pays says so (tuning 8: always, 16: never), with G query
// heads per KV head, 2 <= G <= BM (G not dividing BM: idle rows).
template <class C, bool PK = false> static cudaError_t launch_fwd_ws(const fa4cp_kparams &p) {
    const cudaStream_t stream = (cudaStream_t)p.stream;
    const int grp = p.heads / p.kv_heads;
    bool pack = false;
    // whole 16-row boxes of O and no idle rows: the packed tile can take the TMA epilogue
    const bool boxed = C::BM % grp == 0 && (16 % grp == 0 || grp % 16 == 0);
    if (PK && grp >= 2 && grp <= C::BM && !(p.tuning & 16)) {
        const int64_t mean = p.batch > 0 ? (p.total_q + p.batch - 1) / p.batch : 0;
        const double f = boxed && C::O_KIND != 0 ? 0.9 : 0.5;
        pack = (p.tuning & 8) || fwd_pack_pays(p.max_sq, grp, C::BM, f) ||
               (p.batch > 1 && fwd_pack_pays(mean < p.max_sq ? mean : p.max_sq, grp, C::BM, f));
        // a work list too short for the packed entries (fa4cp_kparams::sched_cap): unpacked
        const int ppt = C::BM / grp;
        if ((long long)((p.max_sq + ppt - 1) / ppt) * p.batch + 2 > p.sched_cap)
            pack = false;
    }
    const int pt = pack ? C::BM / grp : C::BM; // query rows (tokens when packed) of a tile
    const int max_mb = (p.max_sq + pt - 1) / pt;
    const long long entries = (long long)max_mb * p.batch;
    if (entries == 0)
        return cudaSuccess;
    if (!p.sched || entries + 2 > p.sched_cap)
        return cudaErrorInvalidValue;
    const int theads = pack ? p.kv_heads : p.heads; // tile heads
    int *ctr = p.fwd_ctr ? p.fwd_ctr : p.sched + p.sched_cap - 1;
    int64_t longest = p.max_sq > p.max_sk ? p.max_sq : p.max_sk;
    int64_t R = 256;
    while (R < longest)
        R <<= 1;
    if (p.total_q + R >= ((int64_t)1 << 31) || p.total_k + R >= ((int64_t)1 << 31) ||
        entries * theads >= ((int64_t)1 << 31))
        return cudaErrorInvalidValue;
    const bool fp16 = MmaType<typename C::Elem>::fp16;
    CUtensorMap tq, tk, tv, to;
    // with no keys every tile is empty and K/V are never read: any valid base will do
    const void *kb = p.total_k > 0 ? p.k : p.q, *vb = p.total_k > 0 ? p.v : p.q;
    const int kh = p.total_k > 0 ? p.kv_heads : p.heads, vd = p.total_k > 0 ? C::DV : C::DQK;
    const int64_t kr = p.total_k > 0 ? p.total_k : p.total_q;
    cudaError_t e;
    // packed: boxes of G heads x pt tokens (tile row x = token x / G, head x % G)
    if ((e = sm90::tmap_ragged_thd(&tq, p.q, fp16, p.total_q, p.heads, C::DQK, R, pt, C::PWQ, pack ? grp : 1)) !=
            cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tk, kb, fp16, kr, kh, C::DQK, R, C::BN, C::PWQ)) != cudaSuccess ||
        (e = sm90::tmap_ragged_thd(&tv, vb, fp16, kr, kh, vd, R, C::BN, C::PWV)) != cudaSuccess)
        return e;
    // O through shared memory and TMA where the family has a staging area
    // (FwdCfg::O_KIND); tuning 1073741824: direct stores (the old epilogue,
    // for A/B timing).  The out map is ragged like Q's: rows at or past
    // seqused_q fall out of bounds and are not written; 16-row boxes, one
    // consumer warp's rows.
    // Packed tiles (G a power of two dividing BM): a warp's 16 rows are
    // min(G, 16) heads x max(16 / G, 1) tokens of out, one box of a map with
    // that many heads (else direct stores).
    const bool o_tma =
        (!pack || boxed) && C::O_KIND != 0 && !(p.tuning & 1073741824) && ((uintptr_t)p.out & 15) == 0;
    const int obh = pack ? (grp < 16 ? grp : 16) : 1, obr = 16 / obh; // box heads, tokens
    memset(&to, 0, sizeof to);
    if (o_tma && (e = sm90::tmap_ragged_thd(&to, p.out, fp16, p.total_q, p.heads, C::DV, R, obr, C::PWV, obh)) !=
                     cudaSuccess)
        return e;
    // L2 sections: whole GQA groups whose K and V fit in about 24 MB
    const double kv_head_bytes = (double)(p.total_k > 0 ? p.total_k : 1) * (C::DQK + C::DV) * 2;
    int nkv = (int)(24.0 * 1024 * 1024 / kv_head_bytes);
    if (nkv < 1)
        nkv = 1;
    nkv = fwd_section_groups(p.kv_heads, nkv, p.tuning);
    FwdSched sc;
    sc.list = p.sched;
    sc.ctr = ctr;
    sc.max_mb = max_mb;
    sc.heads = theads;
    sc.hsec = pack ? nkv : nkv * grp;
    const bool closed = fwd_list_closed(p); // one sequence: no list kernel (attn_sched.cuh)
    sc.bm = closed ? pt : 0;
    sc.pg = pack ? grp : 1;
    sc.pt = pt;
    int dev = 0, sms = 0;
    if ((e = current_device_sms(&dev, &sms)) != cudaSuccess)
        return e;
    const long long tiles = entries * theads;
    const int grid = (int)(tiles < sms ? tiles : sms);
    // tuning 2097152: all 227 KB (the largest shared-memory carveout, the
    // smallest L1), whatever the tile needs: for timing the carveout alone
    const int smem = (p.tuning & 2097152) ? 232448 : C::SMEM;
    void (*const kern)(const fa4cp_kparams, const CUtensorMap, const CUtensorMap, const CUtensorMap,
                       const CUtensorMap, const FwdSched, int) =
        pack ? (o_tma ? fwd_ws_kernel<C, C::O_KIND != 0, PK> : fwd_ws_kernel<C, false, PK>)
        : o_tma ? fwd_ws_kernel<C, C::O_KIND != 0, false>
                : fwd_ws_kernel<C, false, false>;
    // the attribute once per (kernel, device, size): launch_cache.cuh
    static FuncSmemCache smem_cache[4];
    FuncSmemCache &sm_c = smem_cache[(pack ? 2 : 0) + (o_tma ? 1 : 0)];
    bool cached = false;
    if ((e = func_smem_once(sm_c, (const void *)kern, smem, dev, &cached)) != cudaSuccess)
        return e;
    if (closed) {
        if (!p.fwd_ctr && (e = cudaMemsetAsync(ctr, 0, sizeof(int), stream)) != cudaSuccess)
            return e;
    } else {
        sched_kernel<false><<<1, SCHED_THREADS, 0, stream>>>(p, max_mb, pt, C::BN, p.sched, ctr);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    const bool pdl = pdl_on(p.tuning);
    e = launch_pdl(kern, grid, C::NT, smem, stream, pdl, p, tq, tk, tv, to, sc, (int)R);
    if (e != cudaSuccess && cached) {
        // the cached attribute may be stale (a cudaDeviceReset): set it and try once more
        (void)cudaGetLastError();
        func_smem_forget(sm_c, dev);
        if ((e = func_smem_once(sm_c, (const void *)kern, smem, dev, &cached)) != cudaSuccess)
            return e;
        e = launch_pdl(kern, grid, C::NT, smem, stream, pdl, p, tq, tk, tv, to, sc, (int)R);
    }
    return e;
}

// The tile of each head-dim family (NWG consumer warpgroups: BM = 64 NWG
// query rows; BN keys per block, NS K/V stages), after FA3/FA4's sm90 table
// and the shared-memory limit (227 KB):
//   (32, 32), (64, 64)         BM 192, BN 128, NS 4
//   (80, 80), (96, 96)         BM 192, BN 128, NS 2   (32-column panels: 96 wide in smem)
//   (128, 128)                 BM 128, BN 128, NS 2   (ALT: NS 3, Q 32 KB + 3 x (32 + 32) KB,
//                                                     225 KB, V loaded two blocks ahead: 7 %
//                                                     fewer cycles in ncu, but in timed loops
//                                                     under the 700 W cap no faster, 08:10 UTC)
//   (192, 192)                 BM 128, BN  96, NS 2   (Q 48 KB + 2 x (36 + 36) KB; FA3's BN 112
//                                                     makes ptxas serialise the wgmmas, C7512)
//   (192, 128)  MLA            BM 128, BN 128, NS 2   (Q 48 KB + 2 x (48 + 32) KB)
//   (256, 256)                 BM 128, BN  64, NS 2   (Q 64 KB + 2 x (32 + 32) KB; FA3's BN 80
//                                                     spills 20 bytes at 232 registers)
// ALT_BN/ALT_NS/ALT_NWG (ALT_BN 0: none) is a second bf16 tile of the
// family, run when FA4CP_CUDA_TUNING has bit 4096: for timing experiments only.
// PACK: the default tile has a packed GQA instantiation (fwd_sched.cuh).
template <int DQK, int DV> struct FwdShape {
    static constexpr int NWG = 2, BN = 128, NS = 2, ALT_NWG = 2, ALT_BN = 0, ALT_NS = 0;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<32, 32> {
    static constexpr int NWG = 3, BN = 128, NS = 4, ALT_NWG = 2, ALT_BN = 128, ALT_NS = 4;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<64, 64> {
    static constexpr int NWG = 3, BN = 128, NS = 4, ALT_NWG = 2, ALT_BN = 128, ALT_NS = 4;
    static constexpr bool PACK = true;
};
template <> struct FwdShape<80, 80> {
    static constexpr int NWG = 3, BN = 128, NS = 2, ALT_NWG = 2, ALT_BN = 128, ALT_NS = 2;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<96, 96> {
    static constexpr int NWG = 3, BN = 128, NS = 2, ALT_NWG = 2, ALT_BN = 128, ALT_NS = 2;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<128, 128> {
    static constexpr int NWG = 2, BN = 128, NS = 2, ALT_NWG = 2, ALT_BN = 128, ALT_NS = 3;
    static constexpr bool PACK = true;
};
template <> struct FwdShape<192, 192> {
    static constexpr int NWG = 2, BN = 96, NS = 2, ALT_NWG = 2, ALT_BN = 80, ALT_NS = 2;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<192, 128> {
    static constexpr int NWG = 2, BN = 128, NS = 2, ALT_NWG = 2, ALT_BN = 112, ALT_NS = 2;
    static constexpr bool PACK = false;
};
template <> struct FwdShape<256, 256> {
    static constexpr int NWG = 2, BN = 64, NS = 2, ALT_NWG = 2, ALT_BN = 0, ALT_NS = 0; // BN 48 x 3 stages spills too
    static constexpr bool PACK = false;
};

// The launcher of one family: both element types, and the bf16 ALT tile.
template <int DQK, int DV> static cudaError_t fwd_launch_family(const fa4cp_kparams &p) {
    using S = FwdShape<DQK, DV>;
    if (p.is_fp16)
        return launch_fwd_ws<FwdCfg<__half, DQK, DV, S::BN, S::NS, S::NWG>, S::PACK>(p);
    if constexpr (S::ALT_BN > 0) {
        if (p.tuning & 4096)
            return launch_fwd_ws<FwdCfg<__nv_bfloat16, DQK, DV, S::ALT_BN, S::ALT_NS, S::ALT_NWG>>(p);
    }
    return launch_fwd_ws<FwdCfg<__nv_bfloat16, DQK, DV, S::BN, S::NS, S::NWG>, S::PACK>(p);
}

} // namespace fa4cp
