// attn_sched.cuh - longest-first work lists for the varlen attention kernels.
//
// A work entry is one (sequence b, outer block ob), encoded b * max_ob + ob;
// its cost is the number of inner blocks it visits (forward: query block ->
// visible KV blocks; backward: KV block -> visible query blocks).  One CTA
// counting-sorts the entries by cost, largest first, into
// sched[0] = number of entries, sched[1 ..] = entries; the attention kernels
// then take entry (CTA index / heads), so long sequences and heavy causal
// blocks start first and short ones fill the tail, whatever the batch mix.
// The optional `zero` (the forward's tile counter) is set to 0.
#pragma once

#include "attn_common.cuh"

namespace fa4cp {

constexpr int SCHED_THREADS = 1024;
constexpr int SCHED_BINS = 8192; // costs above share the top bin

// Calls whose order is known without the list kernel (9 us a call on an
// H200, a CP step's every call), the kernels then take entry idx in closed
// form, count from seq_info(p, 0):
//   backward, one sequence, no left window: the costs (query blocks seeing a
//     KV block) do not grow with the block and the sort is stable, so the list
//     is the KV blocks ascending: entry idx = KV block idx, ceil(sk / BO) of
//     them (the same order, so also the deterministic one);
//   forward, one sequence: the costs (KV blocks a query block sees) do not
//     fall with the block, but for windows by a block at most, so the query
//     blocks descending are longest-first: entry idx = block nmb - 1 - idx,
//     nmb = ceil(sq / BO) (ties in the other order than the list's, which
//     the results do not depend on).
// FA4CP_CUDA_TUNING 524288: run the list kernel anyway.
__host__ __device__ __forceinline__ bool bwd_list_closed(const fa4cp_kparams &p) {
    return p.batch == 1 && p.window_left < 0 && !(p.tuning & 524288);
}
__host__ __device__ __forceinline__ bool fwd_list_closed(const fa4cp_kparams &p) {
    return p.batch == 1 && !(p.tuning & 524288);
}

// The backward's walk over the query rows that see a KV block (i_min ..
// i_max of its sequence; bwd_ws_info, bwd_ws_kernel.cuh): steps of BI rows
// from row bwd_walk_start.  Non-deterministic calls start at i_min rounded
// down to a multiple of 8 in the sequence (dq_accum's column swizzle, dqa_col,
// takes a row's index in its sequence modulo 8 from the step's row 0, so
// a step must start at one), the fewest steps that cover i_min .. i_max:
// at 80 rows a causal KV block's rows n0 .. sq - 1 from n0 instead of from
// floor(n0 / 80) * 80 (S8k causal: 1.1 % fewer steps, S4k 2.8 %).
// Deterministic calls, and every call under FA4CP_CUDA_TUNING 2^36, walk
// aligned query blocks (multiples of BI: the semaphores are per query
// block, bwd_ws_kernel's dQ writer).
__host__ __device__ __forceinline__ bool bwd_walk_aligned(const fa4cp_kparams &p, bool det) {
    return det || (p.tuning & (1LL << 36));
}
__host__ __device__ __forceinline__ int64_t bwd_walk_start(int64_t i_min, int BI, bool aligned) {
    return aligned ? i_min / BI * BI : i_min & ~(int64_t)7;
}
// Its number of steps (i_min <= i_max).
__host__ __device__ __forceinline__ int bwd_walk_steps(int64_t i_min, int64_t i_max, int BI, bool aligned) {
    return (int)((i_max + 1 - bwd_walk_start(i_min, BI, aligned) + BI - 1) / BI);
}

template <bool BWD>
__device__ __forceinline__ int entry_cost(const fa4cp_kparams &p, int b, int ob, int BO, int BI) {
    const SeqInfo si = seq_info(p, b);
    const Mask mk{(int64_t)si.sk - si.sq, p.window_left, p.window_right, si.sk};
    if (!BWD) {
        const int nmb = (si.sq + BO - 1) / BO;
        if (ob >= nmb)
            return -1;
        const int m0 = ob * BO, m_last = min(m0 + BO, si.sq) - 1;
        const int64_t jh = mk.hi(m_last), jl = mk.lo(m0);
        if (si.sk == 0 || jh < jl)
            return 0;
        return (int)(jh / BI - jl / BI + 1);
    }
    const int nnb = (si.sk + BO - 1) / BO;
    if (ob >= nnb)
        return -1;
    const int n0 = ob * BO, n_last = min(n0 + BO, si.sk) - 1;
    int64_t i_min, i_max;
    rows_seeing(mk.off, p.window_left, p.window_right, si.sq, n0, n_last, i_min, i_max);
    if (i_min > i_max)
        return 0;
    return bwd_walk_steps(i_min, i_max, BI, bwd_walk_aligned(p, p.deterministic));
}

// bwd_head_section's det_g of a call: G = heads / kv_heads when
// deterministic (FA4CP_CUDA_TUNING 2^40: 0), else 0.
__host__ __device__ __forceinline__ int bwd_det_g(const fa4cp_kparams &p) {
    return p.deterministic && p.kv_heads > 0 && !(p.tuning & 1099511627776LL) ? p.heads / p.kv_heads : 0;
}

// The backward's kv-head sections (bwd_ws_work, bwd_ws_kernel.cuh): the CTAs
// take the entries of hs kv heads at a time, entry (longest first) then kv
// head, and the next hs heads after them.  hs = 1 keeps the CTAs running at
// a time on few heads (L2), but then the last head's longest entries start
// near the end and run alone; with hs heads' work per SM at least the
// longest entry, the longest-first order holds over the whole call.  So
// x = longest * SMs / (sum of the entries' costs), and hs = ceil(x) where x
// > 2, else 1 (the kernel clamps hs to [1, kv heads]).  Measured on an H200
// (2026-11-29 10:23-10:28 UTC, the same binary with hs = ceil(x) and hs =
// 1): at x = 8 (a CP step's 4096-row causal diagonal, 16 heads) the backward
// took 0.41 ms instead of 0.50; at x = 1.02-1.54 hs = 2 was 3-5 % slower on
// the FA4 varlen batch and d128 S8k causal (B = 4), 1-4 % faster at S16k-32k
// causal (B <= 2): there the tail is small and L2 decides.
//
// det_g > 0 (the deterministic backward, G query heads a kv head; costs in
// steps of one query head, so a CTA's entry takes G times its cost): hs is
// also at least ceil(nsm / (longest * G)).  A query tile's dQ additions go
// from KV block to KV block in order, each passing the turn on after its
// reduction has completed (about a step); with the entries of one (sequence,
// kv head) in a row, the CTAs start about (longest * G) / nsm steps apart
// (one every time an SM frees), so where a CTA takes fewer steps than there
// are SMs, a chain's KV blocks start faster than their turns come and wait;
// hs heads interleaved start each chain's blocks hs times slower.  Measured
// on an H200 (2026-11-30 05:59, ncu, main kernel cycles, deterministic, hs
// forced to k): d128 S4k dense (52 steps, 132 SMs) 9.00 M at k = 1 (the
// old rule), 8.56 M at 2, 8.61 at 3, 8.55 at 4, 8.64 at 6, 8.77 at 8, 8.99
// at 16 (the normal kernel: 7.46 M); S8k dense (103 steps) 16.75 / 16.67 /
// 16.90 / 17.25 M at k = 1 / 2 / 4 / 8, S8k causal 8.95 / 8.94 / 9.10 / 9.64
// M, FA4's varlen batch (up to 150 steps) 17.58 / 18.36 / 18.83 / 19.20 M,
// S16k dense 32.79 / 33.02 / 33.50 / 34.04 M: wider sections cost L2 where
// the chains keep up.  FA4CP_CUDA_TUNING 1099511627776 (2^40): without it.
__host__ __device__ __forceinline__ int bwd_head_section(long long longest, long long sum, int nsm,
                                                         int det_g = 0) {
    long long hs = 1;
    if (sum > 0 && longest > 0 && nsm > 0 && longest * nsm > 2 * sum)
        hs = (longest * nsm + sum - 1) / sum;
    if (det_g > 0 && longest > 0 && nsm > 0) {
        const long long steps = longest * det_g, d = (nsm + steps - 1) / steps;
        hs = d > hs ? d : hs;
    }
    return hs > (1 << 20) ? (1 << 20) : (int)hs;
}

// hs_out (the backward, optional): bwd_head_section over the list's costs on
// nsm SMs, written to *hs_out.
template <bool BWD>
__global__ void __launch_bounds__(SCHED_THREADS) sched_kernel(const fa4cp_kparams p, int max_ob, int BO,
                                                             int BI, int *sched, int *zero = nullptr,
                                                             int *hs_out = nullptr, int nsm = 0) {
    __shared__ int hist[SCHED_BINS];
    __shared__ int part[SCHED_THREADS];
    __shared__ unsigned long long csum;
    __shared__ int cmax;
    const int tid = threadIdx.x;
    const int n = p.batch * max_ob;
    for (int c = tid; c < SCHED_BINS; c += SCHED_THREADS)
        hist[c] = 0;
    if (tid == 0) {
        csum = 0;
        cmax = 0;
    }
    __syncthreads();
    unsigned long long my_sum = 0;
    int my_max = 0;
    for (int e = tid; e < n; e += SCHED_THREADS) {
        const int c = entry_cost<BWD>(p, e / max_ob, e % max_ob, BO, BI);
        if (c >= 0) {
            atomicAdd(&hist[min(c, SCHED_BINS - 1)], 1);
            my_sum += (unsigned long long)c;
            my_max = max(my_max, c);
        }
    }
    if (hs_out) {
        if (my_sum)
            atomicAdd(&csum, my_sum);
        if (my_max)
            atomicMax(&cmax, my_max);
    }
    __syncthreads();
    if (hs_out && tid == 0)
        *hs_out = bwd_head_section(cmax, (long long)csum, nsm);
    // exclusive prefix sums over the bins in descending cost order: each
    // thread sums its PER bins, then a block-wide scan of those sums (warp
    // shuffles, then the 32 warp totals by warp 0); a serial loop over the
    // 1024 sums by one thread took ~17 us, a tenth of a CP step's forward
    constexpr int PER = SCHED_BINS / SCHED_THREADS;
    constexpr int NW = SCHED_THREADS / 32;
    static_assert(NW <= 32, "the warp totals are scanned by one warp");
    const int lane = tid & 31, warp = tid >> 5;
    int s = 0;
#pragma unroll
    for (int r = tid * PER; r < (tid + 1) * PER; ++r)
        s += hist[SCHED_BINS - 1 - r];
    int incl = s; // inclusive scan inside the warp
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off)
            incl += v;
    }
    if (lane == 31)
        part[warp] = incl; // the warp's total
    __syncthreads();
    if (warp == 0) {
        const int tot = lane < NW ? part[lane] : 0;
        int wincl = tot;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, wincl, off);
            if (lane >= off)
                wincl += v;
        }
        if (lane < NW)
            part[SCHED_THREADS / 2 + lane] = wincl - tot; // exclusive prefix of the warps
        if (lane == NW - 1) {
            sched[0] = wincl;
            if (zero) // the forward's tile counter (fwd_sched.cuh)
                *zero = 0;
        }
    }
    __syncthreads();
    int acc = part[SCHED_THREADS / 2 + warp] + incl - s;
#pragma unroll
    for (int r = tid * PER; r < (tid + 1) * PER; ++r) {
        const int c = SCHED_BINS - 1 - r;
        const int v = hist[c];
        hist[c] = acc;
        acc += v;
    }
    __syncthreads();
    // Stable scatter: entries of equal cost keep their order (sequence, then
    // block), so CTAs that run at the same time share K/V in L2.  Chunks of
    // SCHED_THREADS entries; inside a chunk the warps take turns, and the
    // lanes of a warp that share a bin are ranked by lane.
    for (int base = 0; base < n; base += SCHED_THREADS) {
        const int e = base + tid;
        const int c = e < n ? entry_cost<BWD>(p, e / max_ob, e % max_ob, BO, BI) : -1;
        const int bin = c >= 0 ? min(c, SCHED_BINS - 1) : -1;
        const int wmax = min(NW, (n - base + 31) / 32); // warps holding entries of this chunk
        for (int w = 0; w < wmax; ++w) {
            if (warp == w) {
                const unsigned same = __match_any_sync(0xffffffffu, bin);
                const int leader = __ffs(same) - 1;
                const int rank = __popc(same & ((1u << lane) - 1));
                int first = 0;
                if (lane == leader && bin >= 0) {
                    first = hist[bin];
                    hist[bin] = first + __popc(same);
                }
                first = __shfl_sync(0xffffffffu, first, leader);
                if (bin >= 0)
                    sched[1 + first + rank] = e;
            }
            __syncthreads();
        }
    }
}

} // namespace fa4cp
