/* fa4cp_kernels.h - extern "C" launchers of the CUDA attention kernels.
 *
 * Plain C: included by lib/attn_cuda.c and by the .cu files.  The caller
 * (attn_cuda.c) has checked every argument; the launchers only launch and
 * return the cudaError_t of the launch (as int, so C callers need not
 * include the CUDA headers here). */
#ifndef FA4CP_KERNELS_H
#define FA4CP_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fa4cp_kparams {
    int is_fp16; /* 0: bf16, 1: fp16 */
    int batch, heads, kv_heads, head_dim;
    int head_dim_v; /* width of v, out, dout, dv (never 0: the caller resolves 0 to head_dim) */
    int64_t total_q, total_k;
    const int32_t *cu_q, *cu_k;     /* device [batch+1] */
    const int32_t *used_q, *used_k; /* device [batch] or NULL */
    int max_sq, max_sk;             /* upper bounds of the per-sequence lengths */
    float scale;                    /* softmax scale */
    int window_left, window_right;  /* -1 = unbounded; causal == window_right 0 */
    const void *q, *k, *v;
    void *out;
    float *lse;
    const void *dout;
    const float *dlse;
    void *dq, *dk, *dv;
    /* [h, total_q, d] fp32 workspace (bwd); within a row the
     * 16-byte chunks are XOR-swizzled by the row's index in its sequence
     * (see dqa_col in attn_bwd_kernel.cuh), so that tiles staged in shared memory for
     * the bulk reduction are free of bank conflicts */
    float *dq_accum;
    float *dsum;     /* [h, total_q] fp32 workspace: rowsum(dO*O) - dLSE */
    int deterministic;
    /* bwd: 0 one call (the preprocess fills dsum and zeroes dq_accum, the
     * finish writes dq); else a call of a chain whose dsum and dq_accum are
     * the caller's (fa4cp_attn_args.dq_carry): FA4CP_KCHAIN, plus
     * FA4CP_KCHAIN_FIRST for the call that runs the preprocess and
     * FA4CP_KCHAIN_LAST for the one that writes dq.  A chain's dq_accum
     * is in dqa_col order in every call, or, with FA4CP_KCHAIN_NLW (the
     * caller's promise that no call has a left window), at d 128 in the
     * 80-row kernel's planes (DP, bwd_dq_planes in attn_bwd_kernel.cuh) */
    int chain;
    /* deterministic bwd: int32 workspace of fa4cp_kernel_bwd_sem_count()
     * entries (zeroed by the backward's preprocess kernel): a ticket counter, then one semaphore
     * per (head, sequence, 64-row query block), see attn_bwd.cu */
    int *dq_sem;
    /* work list, int32 [sched_cap]: at least batch * ceil(max(max_sq, max_sk) / 64) + 2
     * (the forward packs GQA tiles only where it also holds batch * ceil(max_sq /
     * floor(BM / G)) + 2 entries, G = heads / kv_heads, BM its tile's rows);
     * the forward keeps its tile counter in sched[sched_cap - 1] (the forward
     * needs the list; NULL: the backward falls back to a fixed tile order) */
    int *sched;
    int64_t sched_cap;
    /* the forward's tile counter, if not NULL (else sched[sched_cap - 1],
     * zeroed before each launch): 0 at launch, and the forward's kernel
     * leaves it 0 (the CTA that takes the last ticket resets it), so that a
     * counter kept across the calls on one stream needs no memset */
    int *fwd_ctr;
    /* FA4CP_CUDA_TUNING, for timing experiments only (0 = the defaults; every
     * setting gives correct results): 1 no m-block stagger in the backward,
     * 64 fixed tile order instead of the work list (the deterministic
     * backward ignores 1), 16384 the backward loads with no L2 eviction
     * hints (else K, V evict-first, Q, dO and their statistics evict-last),
     * 32768 the backward loads its row statistics by two warps' plain loads
     * instead of TMA, 65536 it takes its work with the kv head fastest,
     * 16777216 with the kv head slowest (else in sections of kv heads sized
     * so that the longest-first order holds over the call, attn_sched.cuh),
     * 33554432 the deterministic backward walks a CTA's query heads outer
     * (else inner), 131072 it keeps 64-row query blocks for
     * dense and causal d128 (else 80), 4194304 for causal d128 (a right
     * window without a left one; else 80, the window in the 80-row
     * kernel's element mask), 262144 it keeps 64-row query blocks at d32 and
     * d64 (else 128), 67108864 its (192, 128) kernel issues dQ before dV
     * and stages dQ while dV runs (else dV first, dQ staged after both),
     * 134217728 its d80/d96 kernel reads V from shared memory (dP^T an SS
     * product; else V in registers, RS), 128 its 80-row steps read each step's
     * LSE and Dsum by 4-byte loads from the TMA's box and compute the step's
     * first row and mask test themselves (else the producer's warps 2 and 3
     * rewrite the statistics in the MMA threads' order, LSE times -log2 e,
     * read by 16-byte loads, with the step's row and mask flag: SP + SI,
     * bwd_ws_kernel.cuh), 256 the rows loop at d64 and d128 stores dK and dV
     * through shared memory in 16-byte row chunks (EP; else from the
     * fragments by 4-byte stores), 1024 its 128-row steps (d32, d64) store
     * dS^T by 4-byte stores inside the dS loop (else by stmatrix after it:
     * ST, bwd_ws_kernel.cuh) and keep both MMA warpgroups in step (no PP),
     * 8388608 its d64 128-row steps keep the warpgroups in step, each
     * step's dQ in that step (else PP: a step's dQ in the next step, the
     * warpgroups out of step, bwd_ws_mma_rows128pp), 536870912 PP starts
     * both warpgroups at once (else warpgroup 1 after warpgroup 0's first
     * products), 4 the rows layout's TMA lane loads K and V together after
     * the __syncthreads and its dQ writer waits for the last reduction to
     * complete (else KS: thread 0 prefetches the maps, initialises the
     * barriers before its decode and issues the first step's K, Q, V and dO
     * as soon as the decode has them, before the __syncthreads, and the
     * writer leaves once the last reduction has read its tile), 2 the 80-row
     * steps (d128) and PP's 128-row ones (d64) store dK and dV from the
     * fragments by 4-byte stores (else ET: stmatrix into the K and V tiles
     * and one thread's TMA stores; 256's EP instead where it is set),
     * 268435456 its (192, 128) kernel keeps one
     * dS^T buffer and a BAR_PDS_FREE barrier each step (else two buffers and
     * no such barrier: bwd_ws_mma_wide's variant 2),
     * 8 the d64 and d128 forward packs GQA tiles (the G = heads / kv_heads
     * query heads of a KV head at floor(BM / G) tokens a tile, BM = 192 at
     * d64, 128 at d128, fwd_sched.cuh) whenever 2 <= G <= BM, 16 it never
     * packs (else it packs where the tiles fill better packed, fwd_pack_pays
     * in fwd_kernel.cuh; 16 wins; packed tiles store O by TMA where G is a
     * power of two dividing BM, else directly),
     * 2048 the forward's producer loads K and V of a block together (not V
     * one block behind K), 4096 the bf16 forward runs its family's ALT tile
     * where it has one (FwdShape in fwd_kernel.cuh: d32-d96 two consumer
     * warpgroups instead of three, d128 three K/V stages instead of two,
     * d192, (192, 128)),
     * 8192 the forward rescales O at every block (no conditional rescale,
     * fwd_softmax.cuh; the d128 forward's step_spec, below: whenever a row
     * sum of the warp exceeds 1/2, so that its rescaling path runs at nearly
     * every block), 524288 one-sequence calls build the work list too (else
     * their order is taken in closed form, attn_sched.cuh), 1048576 the d128
     * forward at two K/V stages takes every block's row max before its exp2
     * (FwdSoftmax::step; else its unmasked blocks run FwdSoftmax::step_spec:
     * the exp2 against the running base first, the max only when a row sum
     * passes 2^8), 2097152 the forward launches with all 227 KB of shared
     * memory whatever its tile needs (the largest carveout, the smallest L1),
     * 1073741824 the forward stores O directly from registers (else, where
     * its tile leaves room, through shared memory and TMA stores: FwdCfg's
     * O_KIND, fwd_kernel.cuh), 512 the forward's L2 sections are nkv GQA
     * groups each, the last what is left (else sized between nkv / 2 and nkv
     * so that the last is fullest: fwd_section_groups, fwd_kernel.cuh),
     * 8589934592 (2^33) the backward builds its work list by the old
     * sched_kernel<true> (8192 bins, attn_sched.cuh; else sched_bwd_kernel,
     * attn_bwd_kernel.cuh: the same list in a few microseconds), 4294967296
     * (2^32) the 80-row d128 backward stages dQ^T by one-float stores in
     * dqa_col order, the whole tile at one barrier pair (else DP: float2
     * pairs (d, d + 8), a [80][64] plane per warpgroup at its own barrier
     * pair, dqa_pair_col<64> order, bwd_ws_kernel.cuh), 17179869184 (2^34) its dense (no window) kernel
     * takes every exponential by MUFU.EX2 (else PX: a quarter by ex2_poly),
     * 34359738368 (2^35) half of them by ex2_poly (PH), 68719476736 (2^36)
     * the non-deterministic backward walks a KV block's query rows in
     * steps from a multiple of the step's rows, as the deterministic one
     * always does (else from the first row that sees the block rounded down
     * to a multiple of 8: bwd_walk_start, attn_sched.cuh; the work list
     * counts the same steps), 137438953472 (2^37) its windowed (causal)
     * 80-row d128 kernel takes every exponential by MUFU.EX2 (else PXW: PX's
     * quarter by ex2_poly in its steps without the element mask),
     * 274877906944 (2^38) the 80-row d128 backward's old loop (else SN: the
     * next step's S^T issued at the end of a step), 549755813888 (2^39) the
     * deterministic 80-row writer's old order (else DT: both planes'
     * reductions once the turn has come), 1099511627776 (2^40) the
     * deterministic backward's kv-head sections by the normal rule alone
     * (else at least nsm / (the longest entry's steps) heads:
     * bwd_head_section, attn_sched.cuh), 2199023255552 (2^41) the attention
     * kernels launched without programmatic dependent launch (else PDL:
     * launch_pdl, launch_cache.cuh) */
    long long tuning; /* 64 bits: FA4CP_CUDA_TUNING read by strtoll */
    void *stream; /* cudaStream_t */
} fa4cp_kparams;

#define FA4CP_KCHAIN_FIRST 1 /* = FA4CP_CARRY_FIRST */
#define FA4CP_KCHAIN_LAST 2  /* = FA4CP_CARRY_LAST */
#define FA4CP_KCHAIN 4
#define FA4CP_KCHAIN_NLW 8 /* fa4cp_attn_args.carry's FA4CP_CARRY_NO_LEFT_WINDOW */

/* Forward: out, lse for every real row.  Returns a cudaError_t. */
int fa4cp_kernel_attn_fwd(const fa4cp_kparams *p);

/* Backward: preprocess, main kernel, postprocess; dq, dk, dv written in
 * full (padding rows 0).  Workspace pointers in p must be set (dq_sem only
 * when deterministic).  Returns a cudaError_t. */
int fa4cp_kernel_attn_bwd(const fa4cp_kparams *p);

/* Entries of the dq_sem workspace of a deterministic backward. */
static inline int64_t fa4cp_kernel_bwd_sem_count(const fa4cp_kparams *p) {
    return 1 + (int64_t)p->heads * (p->total_q / 64 + p->batch + 1);
}

#ifdef __cplusplus
}
#endif

#endif
