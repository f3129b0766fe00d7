/* cp_exec_ag.c - the executor of all_gather: gather K and V, each local Q
 * chunk attends to its visible prefix; backward reduce-scatters dK/dV. */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ all_gather */

static size_t gcd_of(size_t a, size_t b)
{
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* K and V of every rank, in global sequence order: kg [G, Hk, D], vg [G, Hk, Dv] */
static fa4cp_status gather_kv(exec *x, const fa4cp_cp_args *a, void **kg, void **vg)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *rk = NULL, *rv = NULL;
    const size_t kb = (size_t)x->T * x->rk * x->es, vb = (size_t)x->T * x->rv * x->es;
    void *rawk = cpx_xalloc(x, kb * (size_t)x->n, "all_gather K (rank order)");
    void *rawv = cpx_xalloc(x, vb * (size_t)x->n, "all_gather V (rank order)");
    *kg = cpx_xalloc(x, (size_t)x->G * x->rk * x->es, "all_gather K");
    *vg = cpx_xalloc(x, (size_t)x->G * x->rv * x->es, "all_gather V");
    NOMEM_IF(rawk && rawv && *kg && *vg);
    map m;
    FA4CP_TRY(cpx_map_ranks(x, x->T, 1, 0, &m));
    /* on the side stream; the reorder of K (call stream) overlaps the gather of V */
    const fa4cp_cp_instr *in;
    FA4CP_TRY(cpx_fork_comm(x));
    CPX_NEXT(in, FA4CP_CP_OP_ALL_GATHER, FA4CP_CP_T_K);
    FA4CP_TRY(fa4cp_comm_all_gather(x->comm, a->k, rawk, kb, x->cs, &rk));
    CPX_NEXT(in, FA4CP_CP_OP_ALL_GATHER, FA4CP_CP_T_V);
    FA4CP_TRY(fa4cp_comm_all_gather(x->comm, a->v, rawv, vb, x->cs, &rv));
    FA4CP_TRY(cpx_wait_on(x, &rk, x->cs));
    FA4CP_TRY(cpx_join_comm(x));
    FA4CP_TRY(x->ops->gather(*kg, rawk, m.p, m.n, x->rk * x->es, 1, 0, 0, x->stream));
    FA4CP_TRY(cpx_wait_on(x, &rv, x->cs));
    FA4CP_TRY(cpx_join_comm(x));
    FA4CP_TRY(x->ops->gather(*vg, rawv, m.p, m.n, x->rv * x->es, 1, 0, 0, x->stream));
out:
    if (rk)
        fa4cp_comm_wait(x->comm, rk, x->cs);
    if (rv)
        fa4cp_comm_wait(x->comm, rv, x->cs);
    return st;
}

/* One attention call of an all_gather step: the sequences it covers (seq < 0:
 * all) with their Q counts, KV prefix ends and window. */
typedef struct ag_call {
    int seq;
    int wl, wr;
    int32_t *used_q, *used_k; /* ops memory [B] */
} ag_call;

/* The calls of the step for chunk c (half h): a causal mask or no window
 * aligns the same way in every sequence (one call); a window without a
 * causal mask is re-aligned per sequence, so one call per sequence. */
static fa4cp_status ag_calls(exec *x, const fa4cp_cp_step *sp, ag_call *calls, int *ncalls)
{
    fa4cp_status st = FA4CP_OK;
    const int n = x->n, B = x->B, h = sp->q_half, c = h == 0 ? x->r : 2 * n - 1 - x->r;
    const int wl = sp->window_left, wr = sp->window_right;
    const int32_t *sq = (h == 0 ? x->h0 : x->h1) + (size_t)x->r * B;
    int per_seq = !sp->causal && (wl >= 0 || wr >= 0);
    int32_t *uq = cpx_hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused"), *uk = cpx_hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused");
    NOMEM_IF(uq && uk);
    *ncalls = 0;
    for (int i = 0; i < B; i++) {
        int64_t C = (x->cu[i + 1] - x->cu[i]) / (2 * n), L = x->used[i];
        int64_t end; /* keys [0, end) of the sequence are seen by some query of the chunk */
        if (sq[i] == 0)
            end = 0;
        else if (sp->causal)
            end = c * C + sq[i];
        else if (wr < 0)
            end = L;
        else
            end = c * C + sq[i] + wr < L ? c * C + sq[i] + wr : L;
        uq[i] = sq[i];
        uk[i] = (int32_t)end;
    }
    if (!per_seq) {
        calls[0].seq = -1;
        calls[0].wl = wl;
        calls[0].wr = sp->causal ? -1 : wr;
        calls[0].used_q = cpx_upload(x, uq, (size_t)(B + 1) * 4, "all_gather seqused");
        calls[0].used_k = cpx_upload(x, uk, (size_t)(B + 1) * 4, "all_gather seqused");
        NOMEM_IF(calls[0].used_q && calls[0].used_k);
        *ncalls = 1;
        goto out;
    }
    for (int i = 0; i < B; i++) {
        if (sq[i] == 0)
            continue;
        int64_t C = (x->cu[i + 1] - x->cu[i]) / (2 * n);
        /* the call aligns query a at key a + end - sq; its position is c*C + a */
        int e = (int)(uk[i] - c * C - sq[i]);
        ag_call *k = &calls[(*ncalls)++];
        k->seq = i;
        k->wl = wl >= 0 ? wl + e : -1;
        k->wr = wr >= 0 ? wr - e : -1;
        int32_t *q1 = cpx_hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused");
        NOMEM_IF(q1);
        memset(q1, 0, (size_t)(B + 1) * 4);
        q1[i] = sq[i];
        k->used_q = cpx_upload(x, q1, (size_t)(B + 1) * 4, "all_gather seqused");
        k->used_k = cpx_upload(x, uk, (size_t)(B + 1) * 4, "all_gather seqused");
        NOMEM_IF(k->used_q && k->used_k);
    }
out:
    return st;
}

/* The attention call k of an all_gather step: its Q chunk (qh) over the
 * gathered K and V, the call's counts and window. */
static fa4cp_attn_args ag_args(const exec *x, const fa4cp_cp_step *sp, const ag_call *k, const void *qh,
                               const void *kg, const void *vg)
{
    fa4cp_attn_args c = cpx_base_args(x);
    c.q = qh;
    c.k = kg;
    c.v = vg;
    c.cu_seqlens_q = x->d_hcu;
    c.seqused_q = k->used_q;
    c.total_q = x->Th;
    c.cu_seqlens_k = x->d_cu;
    c.seqused_k = k->used_k;
    c.total_k = x->G;
    c.causal = sp->causal;
    c.window_left = k->wl;
    c.window_right = k->wr;
    return c;
}

fa4cp_status cpx_ag_fwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    void *kg = NULL, *vg = NULL;
    ag_call *calls = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof *calls, "all_gather calls");
    void *qh = cpx_xalloc(x, (size_t)x->Th * x->rq * x->es, "all_gather Q chunk");
    void *oh = cpx_xalloc(x, (size_t)x->Th * x->ro * x->es, "all_gather out chunk");
    void *lh = cpx_xalloc(x, (size_t)x->H * x->Th * x->as, "all_gather lse chunk");
    NOMEM_IF(calls && qh && oh && lh);
    FA4CP_TRY(gather_kv(x, a, &kg, &vg));
    for (const fa4cp_cp_instr *in; cpx_peek(x);) {
        CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_OUT | FA4CP_CP_T_LSE);
        const fa4cp_cp_step *sp = &x->plan->fwd[in->step];
        map to_half, back;
        int ncalls = 0;
        FA4CP_TRY(cpx_map_rows(x, x->r, -1, sp->q_half, 0, 1, &to_half));
        FA4CP_TRY(cpx_map_rows(x, x->r, -1, sp->q_half, 1, 0, &back));
        FA4CP_TRY(o->gather(qh, a->q, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(ag_calls(x, sp, calls, &ncalls));
        for (int k = 0; k < ncalls; k++) {
            fa4cp_attn_args c = ag_args(x, sp, &calls[k], qh, kg, vg);
            c.out = oh;
            c.lse = lh;
            FA4CP_TRY(cpx_attn(x, &c, 0));
        }
        /* real rows into place; padding rows of out and lse stay untouched */
        CPX_NEXT(in, FA4CP_CP_OP_MERGE, FA4CP_CP_T_OUT | FA4CP_CP_T_LSE);
        if (sp->merge != FA4CP_CP_MERGE_COPY)
            FA4CP_FAIL(FA4CP_ERR_INTERNAL, "cp all_gather: step %d merges by %d, not by copy",
                       in->step, (int)sp->merge);
        FA4CP_TRY(o->gather(a->out, oh, back.p, back.n, x->ro * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(a->lse, lh, back.p, back.n, x->as, x->H, x->T, x->Th, x->stream));
    }
out:
    return st;
}

fa4cp_status cpx_ag_bwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    fa4cp_comm_req *req = NULL;
    void *kg = NULL, *vg = NULL;
    const size_t qhb = (size_t)x->Th * x->rq * x->es, ohb = (size_t)x->Th * x->ro * x->es;
    const size_t lhb = (size_t)x->H * x->Th * x->as;
    const size_t gk = (size_t)x->G * x->rk, gv = (size_t)x->G * x->rv; /* elements of K, V */
    ag_call *calls = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof *calls, "all_gather calls");
    void *qh = cpx_xalloc(x, qhb, "all_gather Q chunk"), *oh = cpx_xalloc(x, ohb, "all_gather out chunk");
    void *doh = cpx_xalloc(x, ohb, "all_gather dout chunk"), *dqh = cpx_xalloc(x, qhb, "all_gather dQ chunk");
    void *lh = cpx_xalloc(x, lhb, "all_gather lse chunk"), *dlh = cpx_xalloc(x, lhb, "all_gather dlse chunk");
    void *pdk = cpx_xalloc(x, gk * x->es, "all_gather partial dK"), *pdv = cpx_xalloc(x, gv * x->es, "all_gather partial dV");
    /* the dK/dV sums, kept in rank order [rank][dK rows | dV rows] so that
     * they go to the reduce-scatter as they are; counted in units of
     * gcd(dK row, dV row) elements, so that both widths address them */
    const int64_t unit = (int64_t)gcd_of(x->rk, x->rv), ku = (int64_t)x->rk / unit, vu = (int64_t)x->rv / unit;
    void *send = cpx_xalloc(x, (gk + gv) * x->as, "all_gather dK/dV sums (rank order)");
    void *recv = cpx_xalloc(x, (size_t)x->T * (x->rk + x->rv) * x->as, "all_gather dK/dV (this rank)");
    NOMEM_IF(calls && qh && oh && doh && dqh && lh && dlh && pdk && pdv && send && recv);
    map tall, k_to_ranks, v_to_ranks; /* (rank-order unit, global unit) */
    FA4CP_TRY(cpx_map_ranks_units(x, x->T * (ku + vu), 0, ku, &k_to_ranks));
    FA4CP_TRY(cpx_map_ranks_units(x, x->T * (ku + vu), x->T * ku, vu, &v_to_ranks));
    FA4CP_TRY(cpx_map_all(x, x->T, &tall));
    FA4CP_TRY(gather_kv(x, a, &kg, &vg));
    FA4CP_TRY(o->zero(send, (gk + gv) * x->as, x->stream));
    FA4CP_TRY(o->zero(a->dq, (size_t)x->T * x->rq * x->es, x->stream));
    const fa4cp_cp_instr *in;
    while ((in = cpx_peek(x)) && in->op == FA4CP_CP_OP_ATTENTION) {
        CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_DQ | FA4CP_CP_T_DK | FA4CP_CP_T_DV);
        const fa4cp_cp_step *sp = &x->plan->bwd[in->step];
        map to_half;
        int ncalls = 0;
        FA4CP_TRY(cpx_map_rows(x, x->r, -1, sp->q_half, 0, 1, &to_half));
        FA4CP_TRY(o->gather(qh, a->q, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(oh, a->out, to_half.p, to_half.n, x->ro * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(doh, a->dout, to_half.p, to_half.n, x->ro * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(lh, a->lse, to_half.p, to_half.n, x->as, x->H, x->Th, x->T, x->stream));
        if (a->dlse)
            FA4CP_TRY(o->gather(dlh, a->dlse, to_half.p, to_half.n, x->as, x->H, x->Th, x->T, x->stream));
        FA4CP_TRY(ag_calls(x, sp, calls, &ncalls));
        for (int k = 0; k < ncalls; k++) {
            fa4cp_attn_args c = ag_args(x, sp, &calls[k], qh, kg, vg);
            c.out = oh;
            c.dout = doh;
            c.lse = lh;
            c.dlse = a->dlse ? dlh : NULL;
            c.dq = dqh;
            c.dk = pdk;
            c.dv = pdv;
            FA4CP_TRY(cpx_attn(x, &c, 1));
            FA4CP_TRY(o->add(x->ad, send, x->dt, pdk, k_to_ranks.p, k_to_ranks.n, (size_t)unit, x->stream));
            FA4CP_TRY(o->add(x->ad, send, x->dt, pdv, v_to_ranks.p, v_to_ranks.n, (size_t)unit, x->stream));
            /* dQ rows of the call's sequences (padding rows are zeros) */
            map back;
            FA4CP_TRY(cpx_map_rows(x, x->r, calls[k].seq, sp->q_half, 0, 0, &back));
            FA4CP_TRY(o->gather(a->dq, dqh, back.p, back.n, x->rq * x->es, 1, 0, 0, x->stream));
        }
    }
    /* sum the blocks over the ranks: this rank's dK and dV */
    CPX_NEXT(in, FA4CP_CP_OP_REDUCE_SCATTER, FA4CP_CP_T_DK | FA4CP_CP_T_DV);
    FA4CP_TRY(fa4cp_comm_reduce_scatter(x->comm, send, recv, (size_t)x->T * (x->rk + x->rv), x->ad, x->stream, &req));
    FA4CP_TRY(cpx_wait_req(x, &req));
    CPX_NEXT(in, FA4CP_CP_OP_MERGE, FA4CP_CP_T_DK | FA4CP_CP_T_DV);
    FA4CP_TRY(o->convert(x->dt, a->dk, x->ad, recv, tall.p, tall.n, x->rk, x->stream));
    FA4CP_TRY(o->convert(x->dt, a->dv, x->ad, U8(recv) + (size_t)x->T * x->rk * x->as, tall.p, tall.n,
                         x->rv, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}


/* Bytes this shape's executor allocates in one call (an upper bound: maps
 * count every row, real or not), for fa4cp_cp_workspace_bytes. */
size_t cpx_ag_workspace(const exec *x, int bwd)
{
    const size_t G = (size_t)x->G, B1 = (size_t)x->B + 1, kv = x->rk + x->rv; /* a K row and a V row */
    const size_t qhb = (size_t)x->Th * x->rq * x->es, ohb = (size_t)x->Th * x->ro * x->es;
    const size_t lhb = (size_t)x->H * x->Th * x->as;
    const size_t pair = sizeof(cp_pair), Th1 = (size_t)x->Th + 1;
    const size_t unit = gcd_of(x->rk, x->rv), units = kv / (unit ? unit : 1);
    const int per_seq = !x->cfg->causal && (x->cfg->window_left >= 0 || x->cfg->window_right >= 0);
    const size_t calls = (per_seq ? (size_t)x->B : 1) * 2 * B1 * 4; /* seqused of the calls, per step */
    /* gather_kv: rank-order K, V; K, V in sequence order; its map */
    size_t b = (size_t)x->T * kv * x->es * (size_t)x->n + G * kv * x->es + pair * (G + 1);
    if (!bwd) /* qh, oh, lh; per step: to_half, back, the calls */
        return b + qhb + ohb + lhb + 2 * (2 * pair * Th1 + calls);
    /* qh, oh, doh, dqh, lh, dlh, pdk, pdv, send, recv; k_to_ranks, v_to_ranks, tall; per step
     * to_half, calls, back maps */
    return b + 2 * qhb + 2 * ohb + 2 * lhb + G * kv * x->es + G * kv * x->as + (size_t)x->T * kv * x->as +
           pair * (G * units + 2 + (size_t)x->T + 1) + 2 * (pair * Th1 + calls + pair * ((size_t)x->Th + B1));
}
