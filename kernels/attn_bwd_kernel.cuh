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
// One main kernel, bwd_ws_kernel (bwd_ws_kernel.cuh): a producer warpgroup
// (TMA, dQ writer) and MMA warpgroups, in two layouts (BwdShape):
//   rows (head dims <= 128): 128-row KV blocks, two MMA warpgroups,
//        warpgroup w owning KV rows 64w..64w+63;
//   wide (d_qk 192 with d_v 192 or 128, d 256): 96- or 64-row KV blocks,
//        three or two MMA warpgroups owning head-dim panels of dK^T, dV^T.
// Head dims that are not a multiple of the panel width (64; at d 32/80/96:
// 32) are padded to one in shared memory by the TMA's zero fill: the
// products over the head dim (S^T, dP^T) step over the real columns only,
// the products whose N is the head dim (dV, dK, dQ) run over the padded
// width.
#pragma once

#include "bwd_ws_kernel.cuh"
#include "launch_cache.cuh"

namespace fa4cp {

// Dsum[h, row] = sum_d dO * O - dLSE over real rows; 0 on padding rows.  L
// lanes read a (row, head) pair's DV columns, 8 each; LP (a power of 2) lanes
// per pair.  The same lanes zero the pair's DQK floats of dq_accum (every
// row, padding included, as a memset of the whole workspace would), and
// threads 0 .. nsem - 1 the semaphores of a deterministic call (nsem = 0
// otherwise), so that no memset runs before this kernel.
template <typename T, int DQK, int DV> __global__ void bwd_preprocess_kernel(const fa4cp_kparams p, int64_t nsem) {
    sm90::grid_dep_wait(); // (launch_pdl)
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
// pairs: dq_accum is in two planes of 64 columns, [heads][2][total_q][64],
// its rows in dqa_pair_col<64> order (the 80-row main kernel's
// DP); a thread then reads the same two chunks and writes the columns they
// hold, 16b + 4j + (0..3) and 8 further (8 bytes each).
template <typename T, int DQK, int DV>
__global__ void bwd_finish_kernel(const fa4cp_kparams p, int64_t dq_blocks, bool pairs) {
    sm90::grid_dep_wait(); // (launch_pdl)
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
        const float s = p.scale;
        if constexpr (DQK == 128) {
            if (pairs) { // planes of 64 columns, [heads][2][total_q][64]; positions col .. col + 7
                         // of a row: (g, h) for g = col / 2 % 8 .. + 3, h = 0, 1
                const float *src = p.dq_accum + (((int64_t)h * 2 + (col >> 6)) * p.total_q + row) * 64;
                const float4 a = *reinterpret_cast<const float4 *>(src + dqa_col<64>(r8, col & 63));
                const float4 b = *reinterpret_cast<const float4 *>(src + dqa_col<64>(r8, (col & 63) + 4));
                T *dq0 = dq - col + (col & ~15) + (col & 8) / 2;
                *reinterpret_cast<uint2 *>(dq0) = make_uint2(pack2<T>(a.x * s, a.z * s), pack2<T>(b.x * s, b.z * s));
                *reinterpret_cast<uint2 *>(dq0 + 8) = make_uint2(pack2<T>(a.y * s, a.w * s), pack2<T>(b.y * s, b.w * s));
                return;
            }
        }
        const float *src = p.dq_accum + ((int64_t)h * p.total_q + row) * DQK;
        const float4 a = *reinterpret_cast<const float4 *>(src + dqa_col<DQK>(r8, col));
        const float4 b = *reinterpret_cast<const float4 *>(src + dqa_col<DQK>(r8, col + 4));
        uint4 v;
        v.x = pack2<T>(a.x * s, a.y * s);
        v.y = pack2<T>(a.z * s, a.w * s);
        v.z = pack2<T>(b.x * s, b.y * s);
        v.w = pack2<T>(b.z * s, b.w * s);
        *reinterpret_cast<uint4 *>(dq) = v;
    }
}

// The backward's work list (attn_sched.cuh's order: entries by cost,
// largest first, stable), built in a few microseconds.  sched_kernel<true>
// took 23 us for the 256 entries of d128 S8k causal B 4 (ncu, H200: 45 k
// cycles): its 64-bit shared atomicAdd of the costs' sum (a CAS loop, every
// thread on one word), 8192 bins zeroed and scanned, two passes over the
// entries, and a __syncthreads for each warp's turn in the scatter.  Here:
//   - nbins bins, the costs' bound for the call: a KV block's cost is at
//     most ceil(max_sq / BI) (the host's nbins - 1; a larger cost would take
//     the top bin, as the old kernel's 8192nd does);
//   - warp w owns entries [w * per, (w + 1) * per) and counts them into its
//     own row of bins (no atomics between warps), the costs' sum and max by
//     shuffles;
//   - a thread per bin scans the warps' counts (each warp's start inside the
//     bin), warp 0 scans the bins, largest cost first;
//   - each warp scatters its entries with its own cursors: entries of equal
//     cost keep their order (sequence, then block), warp by warp, lane by
//     lane, as the old kernel's chunks of turns did.  So the list, the
//     count and hs are the old kernel's, bit for bit.
// Four __syncthreads in all.  Dynamic shared memory: (warps + 1) * nbins
// ints, at most SCHED_BWD_SMEM_INTS; calls with more than
// SCHED_BWD_MAX_BINS bins (max_sq / BI past 4095) run the old kernel, as
// FA4CP_CUDA_TUNING 8589934592 does.
constexpr int SCHED_BWD_MAX_BINS = 4096;
// 48 KB of shared memory in all (static and dynamic: no opt-in needed),
// less the static arrays' 384 bytes
constexpr int SCHED_BWD_SMEM_INTS = 12288 - 96;

// (a template: the attn_bwd_d*.cu files each instantiate it, MAXT = 1024)
template <int MAXT>
__global__ void __launch_bounds__(MAXT) sched_bwd_kernel(const fa4cp_kparams p, int max_ob, int BO, int BI,
                                                         int nbins, int *sched, int *hs_out, int nsm) {
    extern __shared__ int sb_cnt[]; // [warps][nbins] counts, then cursors; then tot[nbins]
    __shared__ unsigned long long wsum[32];
    __shared__ int wmax[32];
    const int nw = blockDim.x >> 5;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n = p.batch * max_ob;
    const int per = (n + nw - 1) / nw;
    const int e0 = warp * per, e1 = min(n, e0 + per);
    int *cnt = sb_cnt + warp * nbins;
    int *tot = sb_cnt + nw * nbins;
    for (int i = tid; i < nw * nbins; i += blockDim.x)
        sb_cnt[i] = 0;
    __syncthreads();
    unsigned long long s = 0;
    int mx = 0;
    for (int base = e0; base < e1; base += 32) { // (warp-uniform trips)
        const int e = base + lane;
        const int c = e < e1 ? entry_cost<true>(p, e / max_ob, e % max_ob, BO, BI) : -1;
        const int bin = c >= 0 ? min(c, nbins - 1) : -1;
        if (c > 0) {
            s += (unsigned long long)c;
            mx = max(mx, c);
        }
        const unsigned same = __match_any_sync(0xffffffffu, bin);
        if (bin >= 0 && lane == __ffs(same) - 1)
            cnt[bin] += __popc(same);
        __syncwarp();
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        s += __shfl_xor_sync(0xffffffffu, s, o);
        mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    }
    if (lane == 0) {
        wsum[warp] = s;
        wmax[warp] = mx;
    }
    __syncthreads();
    // bin c: each warp's start among the bin's entries, and the bin's total
    for (int c = tid; c < nbins; c += blockDim.x) {
        int run = 0;
        for (int w = 0; w < nw; ++w) {
            const int v = sb_cnt[w * nbins + c];
            sb_cnt[w * nbins + c] = run;
            run += v;
        }
        tot[c] = run;
    }
    __syncthreads();
    if (warp == 0) { // the bins' starts, largest cost first; the count; hs
        int carry = 0;
        for (int top = nbins - 1; top >= 0; top -= 32) {
            const int c = top - lane;
            const int v = c >= 0 ? tot[c] : 0;
            int incl = v;
#pragma unroll
            for (int off = 1; off < 32; off <<= 1) {
                const int u = __shfl_up_sync(0xffffffffu, incl, off);
                if (lane >= off)
                    incl += u;
            }
            if (c >= 0)
                tot[c] = carry + incl - v;
            carry += __shfl_sync(0xffffffffu, incl, 31);
        }
        if (lane == 0)
            sched[0] = carry;
        if (hs_out) {
            unsigned long long ts = lane < nw ? wsum[lane] : 0ull;
            int tm = lane < nw ? wmax[lane] : 0;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                ts += __shfl_xor_sync(0xffffffffu, ts, o);
                tm = max(tm, __shfl_xor_sync(0xffffffffu, tm, o));
            }
            if (lane == 0)
                *hs_out = bwd_head_section(tm, (long long)ts, nsm, bwd_det_g(p));
        }
    }
    __syncthreads();
    for (int base = e0; base < e1; base += 32) {
        const int e = base + lane;
        const int c = e < e1 ? entry_cost<true>(p, e / max_ob, e % max_ob, BO, BI) : -1;
        const int bin = c >= 0 ? min(c, nbins - 1) : -1;
        const unsigned same = __match_any_sync(0xffffffffu, bin);
        const int leader = __ffs(same) - 1;
        int first = 0;
        if (lane == leader && bin >= 0) {
            first = tot[bin] + cnt[bin];
            cnt[bin] += __popc(same);
        }
        first = __shfl_sync(0xffffffffu, first, leader);
        if (bin >= 0)
            sched[1 + first + __popc(same & ((1u << lane) - 1))] = e;
        __syncwarp();
    }
}

static inline unsigned blocks_for(int64_t threads, int per_block) {
    return (unsigned)((threads + per_block - 1) / per_block);
}

// DP (bwd_ws_kernel.cuh): whether dq_accum is in the planes of the 80-row
// d128 kernel, which the finish kernel then reads.  One call: when it runs
// that kernel (t80) with DP's prerequisites (SP, ET, no EP) and without
// FA4CP_CUDA_TUNING 4294967296.  A chain's calls must all agree, whatever
// their keys, window and causality: the planes only where the caller
// promised that no call of the chain has a left window (FA4CP_KCHAIN_NLW,
// fa4cp_attn_args.carry's FA4CP_CARRY_NO_LEFT_WINDOW), so that every call
// runs the 80-row kernel (t80 false there only under the tuning bits that
// keep 64-row blocks, 131072 and 4194304), also the last call that has no
// keys and launches no main kernel.
static bool bwd_dq_planes(const fa4cp_kparams &p, bool t80) {
    if (p.tuning & (4294967296LL | 128 | 256 | 2))
        return false;
    if (p.chain)
        return (p.chain & FA4CP_KCHAIN_NLW) && !(p.tuning & (131072 | 4194304)) && p.head_dim == 128 &&
               p.head_dim_v == 128;
    return t80;
}

template <typename T, int DQK, int DV> cudaError_t launch_bwd(const fa4cp_kparams &p) {
    using W = BwdShape<DQK, DV>;
    cudaStream_t s = (cudaStream_t)p.stream;
    cudaError_t e;
    // A chain's calls (p.chain) share dsum and dq_accum: its first call
    // runs the preprocess, its last writes dq (and launch_bwd_ws keeps
    // dq_accum in dqa_col order in each of them).
    const bool first = !p.chain || (p.chain & FA4CP_KCHAIN_FIRST);
    const bool last = !p.chain || (p.chain & FA4CP_KCHAIN_LAST);
    // the preprocess zeroes dq_accum and, deterministic, the semaphores
    // (also with no queries: the main kernel's CTAs take tickets from them);
    // a chain's later calls zero only the semaphores
    const int64_t nsem = p.deterministic ? fa4cp_kernel_bwd_sem_count(&p) : 0;
    if (first && (p.total_q > 0 || nsem > 0)) {
        constexpr int LP = DV / 8 <= 4 ? 4 : DV / 8 <= 8 ? 8 : DV / 8 <= 16 ? 16 : 32;
        const int64_t th = p.total_q * p.heads * LP;
        if ((e = launch_pdl(bwd_preprocess_kernel<T, DQK, DV>, (unsigned)blocks_for(th > nsem ? th : nsem, 256), 256,
                            0, s, pdl_on(p.tuning), p, nsem)) != cudaSuccess)
            return e;
    } else if (nsem > 0) {
        if ((e = cudaMemsetAsync(p.dq_sem, 0, (size_t)nsem * sizeof(int), s)) != cudaSuccess)
            return e;
    }
    const int nb = (p.max_sk + W::WBN - 1) / W::WBN;
    // Query rows per step of bwd_ws_kernel: 80 for dense d 128 calls (FA3's
    // non-causal tile; FA4CP_CUDA_TUNING 131072: 64) and for causal ones (a
    // right window, no left one: the 80-row kernel with the window in its
    // element mask, WIN; FA4CP_CUDA_TUNING 4194304: 64, as FA3's causal
    // tile; 80 rows: +6-10 % against it at S4k-S32k and on FA4's varlen
    // batch, H200 13:13 UTC, docs/performance.md), else 64.
    constexpr bool CAN80 = DQK == 128 && DV == 128;
    const bool t80w = CAN80 && p.window_left < 0 && p.window_right >= 0 && !(p.tuning & 4194304);
    const bool t80 = CAN80 && p.window_left < 0 && (p.window_right < 0 || t80w) && !(p.tuning & 131072);
    // 128 for d 32, 64 (FA3's 128 x 128 tile; FA4CP_CUDA_TUNING 262144: 64)
    constexpr bool CAN128 = W::PK <= 64 && W::PV <= 64;
    const bool t128 = CAN128 && !(p.tuning & 262144);
    const int wbm = t80 ? 80 : t128 ? 128 : W::WBM;
    const bool pairs = bwd_dq_planes(p, t80); // dq_accum in DP's planes
    const long long ycount = (long long)p.batch * p.kv_heads;
    if (nb > 0 && ycount > 0) { // also with no queries: real dk, dv rows get 0
        const long long ctas = (long long)nb * ycount;
        if (ctas > 0x7fffffffLL)
            return cudaErrorInvalidConfiguration;
        // deterministic: only without a left window (see the kernel); the
        // list's entries, then (sched[sched_cap - 1]) its kv-head section
        const bool use_list = (!p.deterministic || p.window_left < 0) && p.sched &&
                              (int64_t)nb * p.batch + 2 <= p.sched_cap && !(p.tuning & 64);
        int dev = 0, nsm = 0;
        if ((e = current_device_sms(&dev, &nsm)) != cudaSuccess) // (read once per device)
            return e;
        // one sequence, no left window: the list is known (bwd_list_closed)
        if (use_list && !bwd_list_closed(p)) { // also the deterministic order (see the kernel)
            // sched_bwd_kernel's bins: costs 0 .. ceil(max_sq / wbm); its
            // warps: a row of bins each, at most 32, entries a warp >= 32
            const int nbins = (p.max_sq > 0 ? (p.max_sq + wbm - 1) / wbm : 0) + 1;
            const int64_t n = (int64_t)nb * p.batch;
            if (nbins <= SCHED_BWD_MAX_BINS && !(p.tuning & (1LL << 33))) {
                int64_t nw = (n + 31) / 32;
                nw = nw < 32 ? nw : 32;
                nw = nw < SCHED_BWD_SMEM_INTS / nbins - 1 ? nw : SCHED_BWD_SMEM_INTS / nbins - 1;
                nw = nw > 1 ? nw : 1;
                sched_bwd_kernel<1024><<<1, (unsigned)nw * 32, (size_t)(nw + 1) * nbins * sizeof(int), s>>>(
                    p, nb, W::WBN, wbm, nbins, p.sched, p.sched + (p.sched_cap - 1), nsm);
            } else { // FA4CP_CUDA_TUNING 8589934592: the old list kernel
                sched_kernel<true><<<1, SCHED_THREADS, 0, s>>>(p, nb, W::WBN, wbm, p.sched, nullptr,
                                                               p.sched + (p.sched_cap - 1), nsm);
            }
            if ((e = cudaGetLastError()) != cudaSuccess)
                return e;
        }
        if constexpr (CAN80) {
            e = t80 ? (p.window_right >= 0 ? launch_bwd_ws<T, DQK, DV, 80, true>(p, ctas, nb, use_list, nsm, dev, pairs)
                                           : launch_bwd_ws<T, DQK, DV, 80>(p, ctas, nb, use_list, nsm, dev, pairs))
                    : launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list, nsm, dev, pairs);
        } else if constexpr (CAN128) {
            e = t128 ? launch_bwd_ws<T, DQK, DV, 128>(p, ctas, nb, use_list, nsm, dev, pairs)
                     : launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list, nsm, dev, pairs);
        } else {
            e = launch_bwd_ws<T, DQK, DV, W::WBM>(p, ctas, nb, use_list, nsm, dev, pairs);
        }
        if (e != cudaSuccess)
            return e;
    }
    // dq (the last call of a chain), and the padding rows of dk and dv, in
    // one kernel
    const int64_t dq_blocks = last ? blocks_for(p.total_q * p.heads * (DQK / 8), 256) : 0;
    const int64_t fin_blocks = dq_blocks + blocks_for(p.total_k, 256); // 8 warps of 32 key rows a block
    if (fin_blocks > 0x7fffffffLL)
        return cudaErrorInvalidConfiguration;
    if (fin_blocks > 0) {
        if ((e = launch_pdl(bwd_finish_kernel<T, DQK, DV>, (unsigned)fin_blocks, 256, 0, s, pdl_on(p.tuning), p,
                            dq_blocks, pairs)) != cudaSuccess)
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
