/* cp_exec_a2a.c - the executor of a2a (Ulysses): all-to-all from sequence-
 * to head-sharded, one attention call on heads/cp heads, all-to-all back. */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ a2a */

/* Several all-to-alls in a pipeline: every send block is reordered first
 * (call stream), then the exchanges run one after another on the side
 * stream, and the reorder of exchange i's result (call stream) waits only
 * for exchange i, so it runs while exchange i+1 travels.  For each i:
 * src[i] [.. units] -(out_map)-> send -all_to_all-> recv -(in_map)-> dst[i]
 * (*dst[i] allocated here, [alloc_rows[i] units], when alloc_rows[i] >= 0). */
typedef struct a2a_item {
    unsigned tensor; /* FA4CP_CP_T_*: the plan's name of it */
    const void *src;
    size_t unit;      /* bytes of one unit */
    const map *out_map, *in_map;
    void **dst;
    int64_t alloc_rows;
} a2a_item;

static fa4cp_status a2a_pipeline(exec *x, a2a_item *it, int m)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *req = NULL;
    void *send[8], *recv[8];
    for (int i = 0; i < m; i++) {
        send[i] = cpx_xalloc(x, (size_t)x->T * x->n * it[i].unit, "a2a send blocks");
        recv[i] = cpx_xalloc(x, (size_t)x->T * x->n * it[i].unit, "a2a receive blocks");
        NOMEM_IF(send[i] && recv[i]);
        if (it[i].alloc_rows >= 0) {
            *it[i].dst = cpx_xalloc(x, (size_t)it[i].alloc_rows * it[i].unit, "a2a head-sharded tensor");
            NOMEM_IF(*it[i].dst);
        }
        FA4CP_TRY(x->ops->gather(send[i], it[i].src, it[i].out_map->p, it[i].out_map->n, it[i].unit,
                                 1, 0, 0, x->stream));
    }
    FA4CP_TRY(cpx_fork_comm(x));
    for (int i = 0; i < m; i++) {
        const fa4cp_cp_instr *in;
        CPX_NEXT(in, FA4CP_CP_OP_ALL_TO_ALL, it[i].tensor);
        FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, send[i], recv[i], (size_t)x->T * it[i].unit, x->cs, &req));
        FA4CP_TRY(cpx_wait_on(x, &req, x->cs));
        FA4CP_TRY(cpx_join_comm(x)); /* the call stream waits for exchanges 0..i only */
        FA4CP_TRY(x->ops->gather(*it[i].dst, recv[i], it[i].in_map->p, it[i].in_map->n, it[i].unit,
                                 1, 0, 0, x->stream));
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

/* [G, heads/n, width] of head group r -> local [T, heads, width], the rows of `back` */
static fa4cp_status from_heads(exec *x, const void *src, int heads, int width, void *dst, const map *to_ranks,
                               const map *back)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *req = NULL;
    size_t unit = (size_t)(heads / x->n) * (size_t)width * x->es;
    void *send = cpx_xalloc(x, (size_t)x->T * x->n * unit, "a2a send blocks");
    void *recv = cpx_xalloc(x, (size_t)x->T * x->n * unit, "a2a receive blocks");
    NOMEM_IF(send && recv);
    FA4CP_TRY(x->ops->gather(send, src, to_ranks->p, to_ranks->n, unit, 1, 0, 0, x->stream));
    const fa4cp_cp_instr *in;
    CPX_NEXT(in, FA4CP_CP_OP_ALL_TO_ALL, FA4CP_CP_T_OUT);
    FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, send, recv, (size_t)x->T * unit, x->stream, &req));
    FA4CP_TRY(cpx_wait_req(x, &req));
    FA4CP_TRY(x->ops->gather(dst, recv, back->p, back->n, unit, 1, 0, 0, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

/* lse [H, T] (local) <-> [H/n, G] of head group r */
static fa4cp_status lse_to_heads(exec *x, unsigned tensor, const void *lse, void **dst, const map *seq_of_rank)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *req = NULL;
    const int hq = x->H / x->n;
    void *recv = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
    *dst = cpx_xalloc(x, (size_t)hq * x->G * x->as, "a2a head-sharded lse");
    NOMEM_IF(recv && *dst);
    /* [H, T] is already [n][H/n][T]: block p holds the heads of group p */
    const fa4cp_cp_instr *in;
    CPX_NEXT(in, FA4CP_CP_OP_ALL_TO_ALL, tensor);
    FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, lse, recv, (size_t)hq * x->T * x->as, x->stream, &req));
    FA4CP_TRY(cpx_wait_req(x, &req));
    FA4CP_TRY(x->ops->gather(*dst, recv, seq_of_rank->p, seq_of_rank->n, x->as, hq, x->G, x->T, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

fa4cp_status cpx_a2a_run(exec *x, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    fa4cp_comm_req *req = NULL;
    const int hq = x->H / x->n, hkq = x->Hk / x->n;
    void *q = NULL, *k = NULL, *v = NULL, *out = NULL, *dout = NULL, *lse = NULL, *dlse = NULL;
    map blocks, blocks_back_real, blocks_back_all, to_seq, to_ranks, lse_to_ranks, lse_to_seq, real;
    FA4CP_TRY(cpx_map_heads(x, 1, 0, &blocks));
    FA4CP_TRY(cpx_map_heads(x, 0, 1, &blocks_back_real));
    FA4CP_TRY(cpx_map_heads(x, 0, 0, &blocks_back_all));
    FA4CP_TRY(cpx_map_ranks(x, x->T, 1, 0, &to_seq));
    FA4CP_TRY(cpx_map_ranks(x, x->T, 0, 0, &to_ranks));
    FA4CP_TRY(cpx_map_ranks(x, (int64_t)hq * x->T, 0, 0, &lse_to_ranks));
    FA4CP_TRY(cpx_map_ranks(x, (int64_t)hq * x->T, 1, 0, &lse_to_seq));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, -1, 1, 0, &real));

    /* units: a row of one head group; q, k (dq, dk) D wide, v, out, dout (dv) Dv wide */
    const size_t uq = (size_t)hq * x->D * x->es, uk = (size_t)hkq * x->D * x->es;
    const size_t uo = (size_t)hq * x->Dv * x->es, uv = (size_t)hkq * x->Dv * x->es;
    {
        a2a_item its[5] = {{FA4CP_CP_T_Q, a->q, uq, &blocks, &to_seq, &q, x->G},
                           {FA4CP_CP_T_K, a->k, uk, &blocks, &to_seq, &k, x->G},
                           {FA4CP_CP_T_V, a->v, uv, &blocks, &to_seq, &v, x->G},
                           {FA4CP_CP_T_OUT, a->out, uo, &blocks, &to_seq, &out, x->G},
                           {FA4CP_CP_T_DOUT, a->dout, uo, &blocks, &to_seq, &dout, x->G}};
        FA4CP_TRY(a2a_pipeline(x, its, bwd ? 5 : 3));
    }
    fa4cp_attn_args c = cpx_base_args(x);
    c.heads = hq;
    c.kv_heads = hkq;
    c.q = q;
    c.k = k;
    c.v = v;
    c.cu_seqlens_q = c.cu_seqlens_k = x->d_cu;
    c.seqused_q = c.seqused_k = x->d_used;
    c.total_q = c.total_k = x->G;
    const fa4cp_cp_step *sp = &(bwd ? x->plan->bwd : x->plan->fwd)[0];
    if (sp->mask_case != FA4CP_CP_CASE_HEADS || sp->head_group != x->r)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "cp a2a rank %d: the plan's step is %s on head group %d",
                   x->r, fa4cp_cp_case_name(sp->mask_case), sp->head_group);
    c.causal = sp->causal;
    c.window_left = sp->window_left;
    c.window_right = sp->window_right;
    if (!bwd) {
        void *lsend = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
        void *lrecv = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
        out = cpx_xalloc(x, (size_t)x->G * uo, "a2a head-sharded out");
        lse = cpx_xalloc(x, (size_t)hq * x->G * x->as, "a2a head-sharded lse");
        NOMEM_IF(lsend && lrecv && out && lse);
        c.out = out;
        c.lse = lse;
        const fa4cp_cp_instr *in;
        CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_OUT | FA4CP_CP_T_LSE);
        FA4CP_TRY(cpx_attn(x, &c, 0));
        /* out back to sequence sharding; real rows only */
        FA4CP_TRY(from_heads(x, out, x->H, x->Dv, a->out, &to_ranks, &blocks_back_real));
        FA4CP_TRY(o->gather(lsend, lse, lse_to_ranks.p, lse_to_ranks.n, x->as, hq, x->T, x->G, x->stream));
        CPX_NEXT(in, FA4CP_CP_OP_ALL_TO_ALL, FA4CP_CP_T_LSE);
        FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, lsend, lrecv, (size_t)hq * x->T * x->as, x->stream, &req));
        FA4CP_TRY(cpx_wait_req(x, &req));
        FA4CP_TRY(o->gather(a->lse, lrecv, real.p, real.n, x->as, x->H, x->T, x->T, x->stream));
        goto out;
    }
    void *dq = cpx_xalloc(x, (size_t)x->G * uq, "a2a head-sharded dq");
    void *dk = cpx_xalloc(x, (size_t)x->G * uk, "a2a head-sharded dk");
    void *dv = cpx_xalloc(x, (size_t)x->G * uv, "a2a head-sharded dv");
    NOMEM_IF(dq && dk && dv);
    FA4CP_TRY(lse_to_heads(x, FA4CP_CP_T_LSE, a->lse, &lse, &lse_to_seq));
    if (a->dlse)
        FA4CP_TRY(lse_to_heads(x, FA4CP_CP_T_DLSE, a->dlse, &dlse, &lse_to_seq));
    c.out = out;
    c.dout = dout;
    c.lse = lse;
    c.dlse = dlse;
    c.dq = dq;
    c.dk = dk;
    c.dv = dv;
    {
        const fa4cp_cp_instr *in;
        CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_DQ | FA4CP_CP_T_DK | FA4CP_CP_T_DV);
    }
    FA4CP_TRY(cpx_attn(x, &c, 1));
    /* every row: padding rows come back as the exact zeros of the call */
    {
        void *dqo = a->dq, *dko = a->dk, *dvo = a->dv;
        a2a_item its[3] = {{FA4CP_CP_T_DQ, dq, uq, &to_ranks, &blocks_back_all, &dqo, -1},
                           {FA4CP_CP_T_DK, dk, uk, &to_ranks, &blocks_back_all, &dko, -1},
                           {FA4CP_CP_T_DV, dv, uv, &to_ranks, &blocks_back_all, &dvo, -1}};
        FA4CP_TRY(a2a_pipeline(x, its, 3));
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}


/* Bytes this shape's executor allocates in one call (an upper bound: maps
 * count every row, real or not), for fa4cp_cp_workspace_bytes. */
size_t cpx_a2a_workspace(const exec *x, int bwd)
{
    const size_t G = (size_t)x->G, hq = (size_t)(x->H / x->n), hkq = (size_t)(x->Hk / x->n);
    const size_t uq = hq * (size_t)x->D * x->es, uk = hkq * (size_t)x->D * x->es;
    const size_t uo = hq * (size_t)x->Dv * x->es, uv = hkq * (size_t)x->Dv * x->es;
    const size_t pair = sizeof(cp_pair), lse_local = (size_t)x->H * x->T * x->as;
    /* maps: blocks, blocks_back_real, blocks_back_all, to_seq, to_ranks, lse_to_ranks, lse_to_seq; real */
    size_t b = pair * (7 * (G + 1) + (size_t)x->T + 1);
    if (!bwd) /* q, k, v in (send, recv, dst each); lsend, lrecv, out, lse; out back (send, recv) */
        return b + 3 * G * (uq + uk + uv) + 2 * lse_local + G * uo + hq * G * x->as + 2 * G * uo;
    /* q, k, v, out, dout in; dq, dk, dv; lse and dlse to heads; dq, dk, dv back (send, recv) */
    return b + 3 * G * (uq + uk + uv + 2 * uo) + G * (uq + uk + uv) + 2 * (lse_local + hq * G * x->as) +
           2 * G * (uq + uk + uv);
}
