// fwd_sched.cuh - the forward's persistent tile scheduler.
//
// A tile is (sequence b, query block mb of BM rows, query head h).  The work
// list of attn_sched.cuh holds the (b, mb) entries sorted longest-first
// (sched[0] = count, sched[1 ..]); the tiles of the call are the entries
// times the heads, ordered in L2 sections: the heads are cut into sections
// of `hsec` heads (whole GQA groups, sized by the launcher so that one
// section's K and V stay in L2), and inside a section the order is entry
// (longest first) then head, so the CTAs running at the same time share K/V
// and every section starts with its heaviest tiles.
//
// One CTA per SM runs until the tiles run out: its first tile is blockIdx.x,
// the next ones come from one atomic counter (zeroed by the list kernel),
// next = atomicAdd(ctr, 1) + gridDim.x, fetched by the producer thread and
// handed to the consumer warpgroups through a two-slot ring in shared memory
// (tile_full / tile_empty mbarriers); -1 ends the loop.
// One sequence: no list, its order in closed form (FwdSched::bm), the
// counter zeroed by a memset, or kept 0 across the calls on one stream
// (fa4cp_kparams::fwd_ctr): the CTA that takes the last ticket resets it.
//
// GQA packing (fwd_ws_kernel<C, false, true>, chosen per call by the
// launcher, fwd_kernel.cuh): a tile is (sequence b, packed block mb, KV head
// h) and its BM rows are the G = pg query heads of that KV head at pt =
// floor(BM / G) tokens: tile row x is token mb * pt + x / G of query head
// h * G + x % G (rows from pt * G on idle when G does not divide BM).  The
// list's entries are then blocks of pt tokens and `heads` counts KV heads.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

struct FwdSched {
    const int *list; // sched: [0] = entries, [1 ..] = b * max_mb + mb, longest first
    int *ctr;        // dynamic tile counter, 0 at launch
    int max_mb;      // query blocks per sequence (upper bound)
    int heads;       // query heads
    int hsec;        // heads per L2 section (a multiple of the GQA group, or all heads)
    int bm;          // > 0: one sequence (fwd_list_closed, attn_sched.cuh), the list in closed
                     // form over query blocks of bm rows; 0: the list
    int pg, pt;      // packed kernel: query heads per KV head (G) and tokens per tile
};

struct FwdTile {
    int b, mb, h;
};

// The entries of the list: sched[0], or ceil(sq / bm) of the one sequence.
__device__ __forceinline__ int fwd_num_entries(const fa4cp_kparams &p, const FwdSched &s) {
    if (s.bm > 0)
        return min((seq_info(p, 0).sq + s.bm - 1) / s.bm, s.max_mb);
    return s.list[0];
}

__device__ __forceinline__ FwdTile fwd_decode(const FwdSched &s, int n_entries, int t) {
    const int per_sec = n_entries * s.hsec;
    const int sec = t / per_sec;
    const int rem = t - sec * per_sec;
    const int h0 = sec * s.hsec;
    const int hn = min(s.hsec, s.heads - h0);
    const int e = rem / hn;
    FwdTile ft;
    ft.h = h0 + (rem - e * hn);
    const int ent = s.bm > 0 ? n_entries - 1 - e : s.list[1 + e];
    ft.b = ent / s.max_mb;
    ft.mb = ent - ft.b * s.max_mb;
    return ft;
}

} // namespace fa4cp
