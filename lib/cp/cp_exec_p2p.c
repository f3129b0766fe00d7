/* cp_exec_p2p.c - the executor of the p2p ring: KV blocks travel around the
 * ring beside the compute; partial results merge through the LSE. */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ p2p */

/* The attention call of p2p step sp (forward and backward alike): the whole
 * local Q or its second half (qh), the KV block `cur` [K | V] whole or its
 * first half (gathered into kvh [K half | V half]), with exact per-sequence
 * counts.  K rows are D wide, V rows Dv wide. */
static fa4cp_status p2p_step_args(exec *x, const fa4cp_cp_step *sp, const void *q, const void *qh,
                                  void *cur, void *kvh, const map *h0_to_half, fa4cp_attn_args *c)
{
    fa4cp_status st = FA4CP_OK;
    const size_t kvb = (size_t)x->T * x->rk * x->es; /* bytes of K; V follows */
    const int qhalf = sp->q_half == 1, kvhalf = sp->kv_half == 0;
    const size_t kvo = (size_t)x->B * (size_t)sp->kv_rank; /* offset of its counts */
    c->q = qhalf ? qh : q;
    c->cu_seqlens_q = qhalf ? x->d_hcu : x->d_lcu;
    c->seqused_q = qhalf ? x->d_h1 + (size_t)x->B * x->r : x->d_lused + (size_t)x->B * x->r;
    c->total_q = qhalf ? x->Th : x->T;
    if (kvhalf) {
        void *vh = U8(kvh) + (size_t)x->Th * x->rk * x->es;
        if (x->rv == x->rk) { /* K and V in one pass */
            FA4CP_TRY(x->ops->gather(kvh, cur, h0_to_half->p, h0_to_half->n, x->rk * x->es, 2, x->Th,
                                     x->T, x->stream));
        } else {
            FA4CP_TRY(x->ops->gather(kvh, cur, h0_to_half->p, h0_to_half->n, x->rk * x->es, 1, 0, 0,
                                     x->stream));
            FA4CP_TRY(x->ops->gather(vh, U8(cur) + kvb, h0_to_half->p, h0_to_half->n, x->rv * x->es, 1,
                                     0, 0, x->stream));
        }
        c->k = kvh;
        c->v = vh;
    } else {
        c->k = cur;
        c->v = U8(cur) + kvb;
    }
    c->cu_seqlens_k = kvhalf ? x->d_hcu : x->d_lcu;
    c->seqused_k = kvhalf ? x->d_h0 + kvo : x->d_lused + kvo;
    c->total_k = kvhalf ? x->Th : x->T;
    c->causal = sp->causal;
out:
    return st;
}

/* The two buffers of the ring, [K | V] each (K rows D wide, V rows Dv
 * wide); this rank's block in kv[0]. */
static fa4cp_status ring_start(exec *x, const fa4cp_cp_args *a, void *kv[2])
{
    const size_t kvb = (size_t)x->T * x->rk * x->es, vb = (size_t)x->T * x->rv * x->es;
    kv[0] = cpx_xalloc(x, kvb + vb, "p2p KV buffer");
    kv[1] = cpx_xalloc(x, kvb + vb, "p2p KV buffer");
    if (!kv[0] || !kv[1])
        return FA4CP_ERR_NOMEM;
    fa4cp_status st = x->ops->copy(kv[0], a->k, kvb, x->stream);
    return st != FA4CP_OK ? st : x->ops->copy(U8(kv[0]) + kvb, a->v, vb, x->stream);
}

/* After step s's compute: the exchange that ran beside it (if any) is
 * complete, and the call stream waits for the side stream. */
static fa4cp_status arrived(exec *x, fa4cp_comm_req **req, int s)
{
    fa4cp_status st = FA4CP_OK;
    if (!*req)
        return FA4CP_OK;
    FA4CP_TRY(cpx_wait_on(x, req, x->cs));
    FA4CP_TRY(cpx_stamp(x, CP_EV_COMM1, s, x->cs));
    FA4CP_TRY(cpx_join_comm(x));
out:
    return st;
}

/* The forward interprets the plan's program: per step a sendrecv of the KV
 * block beside the compute (on the side stream), the attention call, the
 * LSE merge; then the write of out and lse. */
fa4cp_status cpx_p2p_fwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es; /* bytes of K */
    const size_t vb = (size_t)x->T * x->rv * x->es;  /* bytes of V */
    void *kv[2];
    FA4CP_TRY(ring_start(x, a, kv));
    void *acc = cpx_xalloc(x, (size_t)x->T * x->ro * x->as, "p2p running out");
    void *alse = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "p2p running lse");
    void *pout = cpx_xalloc(x, (size_t)x->T * x->ro * x->es, "p2p partial out");
    void *plse = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "p2p partial lse");
    void *qh = cpx_xalloc(x, (size_t)x->Th * x->rq * x->es, "p2p Q second half");
    void *kvh = cpx_xalloc(x, (size_t)x->Th * (x->rk + x->rv) * x->es, "p2p KV first half");
    NOMEM_IF(acc && alse && pout && plse && qh && kvh);
    map real, h1_to_half, h1_back, h0_to_half;
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, -1, 1, 0, &real));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 1, 0, &h1_back));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half)); /* same layout on every rank */

    FA4CP_TRY(o->zero(acc, (size_t)x->T * x->ro * x->as, x->stream));
    FA4CP_TRY(o->fill_neg_inf(x->ad, alse, (size_t)x->H * x->T, x->stream));
    FA4CP_TRY(o->gather(qh, a->q, h1_to_half.p, h1_to_half.n, x->rq * x->es, 1, 0, 0, x->stream));

    fa4cp_attn_args c = cpx_base_args(x);
    for (const fa4cp_cp_instr *in; (in = cpx_peek(x));) {
        const int s = in->step;
        const fa4cp_cp_step *sp = s >= 0 ? &p->fwd[s] : NULL;
        switch (in->op) {
        case FA4CP_CP_OP_SENDRECV: {
            /* The next block travels on the side stream while this one is
             * used.  Its buffer kv[(s+1)%2] was last read by step s-1, whose
             * compute is queued before the fork, so it is free. */
            CPX_NEXT(in, FA4CP_CP_OP_SENDRECV, FA4CP_CP_T_K | FA4CP_CP_T_V);
            fa4cp_p2p ops[2] = {{in->send_to, 1, kv[s % 2], kvb + vb}, {in->recv_from, 0, kv[(s + 1) % 2], kvb + vb}};
            cpx_note_bytes(x, s, kvb + vb);
            FA4CP_TRY(cpx_fork_comm(x));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, 2, x->cs, &req));
            break;
        }
        case FA4CP_CP_OP_ATTENTION:
            CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_OUT | FA4CP_CP_T_LSE);
            cpx_note_step(x, s, req != NULL);
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMP0, s, x->stream));
            c = cpx_base_args(x);
            FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, kv[s % 2], kvh, &h0_to_half, &c));
            c.out = pout;
            c.lse = plse;
            FA4CP_TRY(cpx_attn(x, &c, 0));
            break;
        case FA4CP_CP_OP_MERGE:
            CPX_NEXT(in, FA4CP_CP_OP_MERGE, FA4CP_CP_T_OUT | FA4CP_CP_T_LSE);
            if (!sp) { /* real rows only: padding rows of out and lse stay untouched */
                FA4CP_TRY(o->convert(x->dt, a->out, x->ad, acc, real.p, real.n, x->ro, x->stream));
                FA4CP_TRY(o->gather(a->lse, alse, real.p, real.n, x->as, x->H, x->T, x->T, x->stream));
                break;
            }
            if (sp->merge != FA4CP_CP_MERGE_LSE)
                FA4CP_FAIL(FA4CP_ERR_INTERNAL, "cp p2p: step %d merges by %d, not through the LSE", s,
                           (int)sp->merge);
            const map *m = sp->q_half == 1 ? &h1_back : &real;
            FA4CP_TRY(o->merge(x->ad, acc, alse, x->T, x->dt, pout, plse, c.total_q, m->p, m->n, x->H,
                               x->Dv, x->stream));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMP1, s, x->stream));
            FA4CP_TRY(arrived(x, &req, s)); /* the next step reads the block that arrived */
            break;
        default: CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, 0); /* fails: names both */
        }
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

/* The backward's dQ chains (fa4cp.h, dq_carry): the steps over the whole
 * local Q (k = 0) and those over its second half (k = 1) each sum their dQ
 * in one backward chain, from the first ATTENTION of the program over those
 * queries (the preprocess runs once) to the last (dq is written once, then
 * added into the accumulator).  -1: no such step. */
static void p2p_chains(const exec *x, int first[2], int last[2])
{
    first[0] = first[1] = last[0] = last[1] = -1;
    for (int i = 0; i < x->nprog; i++) {
        const fa4cp_cp_instr *in = &x->prog[i];
        if (in->op != FA4CP_CP_OP_ATTENTION || in->step < 0)
            continue;
        const int k = x->plan->bwd[in->step].q_half == 1;
        if (first[k] < 0)
            first[k] = in->step;
        last[k] = in->step;
    }
}

/* Bytes of the chain over rows query rows. */
static size_t p2p_carry_bytes(const exec *x, int64_t rows)
{
    fa4cp_attn_args c = cpx_base_args(x);
    c.total_q = rows;
    return fa4cp_attn_bwd_carry_bytes(x->cfg->backend, &c);
}

/* The backward interprets the program the same way: per step one symmetric
 * sendrecv group (the dK/dV finished before, and/or this KV block), the
 * attention call, the accumulation of dQ and of the travelling dK/dV; then
 * the last dK/dV goes home and dq, dk, dv are written. */
fa4cp_status cpx_p2p_bwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es, vb = (size_t)x->T * x->rv * x->es;
    const size_t dkb = (size_t)x->T * x->rk * x->as; /* dK, then dV: accumulator type */
    const size_t dkvb = dkb + (size_t)x->T * x->rv * x->as;
    const size_t qhb = (size_t)x->Th * x->rq * x->es, ohb = (size_t)x->Th * x->ro * x->es;
    const size_t lhb = (size_t)x->H * x->Th * x->as;
    void *kv[2];
    FA4CP_TRY(ring_start(x, a, kv));
    void *dkv_in = cpx_xalloc(x, dkvb, "p2p incoming dK/dV");
    void *dkv_out = cpx_xalloc(x, dkvb, "p2p outgoing dK/dV");
    void *dq = cpx_xalloc(x, (size_t)x->T * x->rq * x->as, "p2p dQ accumulator");
    void *pdq = cpx_xalloc(x, (size_t)x->T * x->rq * x->es, "p2p partial dQ");
    void *pdkv = cpx_xalloc(x, kvb + vb, "p2p partial dK/dV");
    void *qh = cpx_xalloc(x, qhb, "p2p Q second half"), *oh = cpx_xalloc(x, ohb, "p2p out second half");
    void *doh = cpx_xalloc(x, ohb, "p2p dout second half");
    void *lh = cpx_xalloc(x, lhb, "p2p lse second half"), *dlh = cpx_xalloc(x, lhb, "p2p dlse second half");
    void *kvh = cpx_xalloc(x, (size_t)x->Th * (x->rk + x->rv) * x->es, "p2p KV first half");
    const size_t carry_bytes[2] = {p2p_carry_bytes(x, x->T), p2p_carry_bytes(x, x->Th)};
    void *carry[2] = {cpx_xalloc(x, carry_bytes[0], "p2p dQ chain (local Q)"),
                      cpx_xalloc(x, carry_bytes[1], "p2p dQ chain (Q second half)")};
    int first[2], last[2];
    p2p_chains(x, first, last);
    NOMEM_IF(dkv_in && dkv_out && dq && pdq && pdkv && qh && oh && doh && lh && dlh && kvh && carry[0] && carry[1]);
    map all, h1_to_half, h1_back_all, h0_to_half, h0_back_all;
    FA4CP_TRY(cpx_map_all(x, x->T, &all));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 0, &h1_back_all));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 0, &h0_back_all));

    FA4CP_TRY(o->zero(dq, (size_t)x->T * x->rq * x->as, x->stream));
    {
        const map *m = &h1_to_half;
        FA4CP_TRY(o->gather(qh, a->q, m->p, m->n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(oh, a->out, m->p, m->n, x->ro * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(doh, a->dout, m->p, m->n, x->ro * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(lh, a->lse, m->p, m->n, x->as, x->H, x->Th, x->T, x->stream));
        if (a->dlse)
            FA4CP_TRY(o->gather(dlh, a->dlse, m->p, m->n, x->as, x->H, x->Th, x->T, x->stream));
    }

    const unsigned DKV = FA4CP_CP_T_DK | FA4CP_CP_T_DV, KV = FA4CP_CP_T_K | FA4CP_CP_T_V;
    const void *final = dkv_out;
    fa4cp_attn_args c = cpx_base_args(x);
    for (const fa4cp_cp_instr *in; (in = cpx_peek(x));) {
        const int s = in->step;
        const fa4cp_cp_step *sp = s >= 0 ? &p->bwd[s] : NULL;
        switch (in->op) {
        case FA4CP_CP_OP_SENDRECV: {
            /* One symmetric group per step, so that it also matches on a
             * rendezvous transport (NCCL): to r-1 the dK/dV finished in the
             * previous step, then this KV block; from r+1 the dK/dV of the
             * block used now, then the next KV block - the order the peer
             * sends them.  Step -1: the last dK/dV to its owner, this rank's
             * own home. */
            CPX_NEXT(in, FA4CP_CP_OP_SENDRECV, in->tensors & (DKV | KV));
            fa4cp_p2p ops[4];
            int nops = 0;
            if (in->tensors & DKV) {
                ops[nops++] = (fa4cp_p2p){in->send_to, 1, dkv_out, dkvb};
                ops[nops++] = (fa4cp_p2p){in->recv_from, 0, dkv_in, dkvb};
            }
            if (in->tensors & KV) {
                ops[nops++] = (fa4cp_p2p){in->send_to, 1, kv[s % 2], kvb + vb};
                ops[nops++] = (fa4cp_p2p){in->recv_from, 0, kv[(s + 1) % 2], kvb + vb};
            }
            cpx_note_bytes(x, s, (in->tensors & DKV ? dkvb : 0) + (in->tensors & KV ? kvb + vb : 0));
            FA4CP_TRY(cpx_fork_comm(x)); /* on the side stream, beside this step's compute */
            if (s >= 0)
                FA4CP_TRY(cpx_stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, nops, x->cs, &req));
            if (s < 0) {
                FA4CP_TRY(cpx_wait_on(x, &req, x->cs));
                FA4CP_TRY(cpx_join_comm(x));
                final = dkv_in;
            }
            break;
        }
        case FA4CP_CP_OP_ATTENTION: {
            CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, FA4CP_CP_T_DQ | DKV);
            cpx_note_step(x, s, req != NULL);
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMP0, s, x->stream));
            c = cpx_base_args(x);
            int qhalf = sp->q_half == 1;
            FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, kv[s % 2], kvh, &h0_to_half, &c));
            c.out = qhalf ? oh : a->out;
            c.dout = qhalf ? doh : a->dout;
            c.lse = qhalf ? lh : a->lse;
            c.dlse = a->dlse ? (qhalf ? dlh : a->dlse) : NULL;
            c.dq_carry = carry[qhalf];
            c.dq_carry_bytes = carry_bytes[qhalf];
            /* (p2p has no sliding window: no step has a left window) */
            c.carry = (s == first[qhalf] ? FA4CP_CARRY_FIRST : 0) | (s == last[qhalf] ? FA4CP_CARRY_LAST : 0) |
                      FA4CP_CARRY_NO_LEFT_WINDOW;
            c.dq = c.carry & FA4CP_CARRY_LAST ? pdq : NULL;
            c.dk = pdkv;
            c.dv = U8(pdkv) + (size_t)c.total_k * x->rk * x->es;
            FA4CP_TRY(cpx_attn(x, &c, 1));
            break;
        }
        case FA4CP_CP_OP_MERGE:
            CPX_NEXT(in, FA4CP_CP_OP_MERGE, FA4CP_CP_T_DQ | DKV);
            if (!sp) { /* every row: padding rows are exact zeros */
                FA4CP_TRY(o->convert(x->dt, a->dq, x->ad, dq, all.p, all.n, x->rq, x->stream));
                FA4CP_TRY(o->convert(x->dt, a->dk, x->ad, final, all.p, all.n, x->rk, x->stream));
                FA4CP_TRY(o->convert(x->dt, a->dv, x->ad, U8(final) + dkb, all.p, all.n, x->rv, x->stream));
                break;
            }
            if (sp->merge != FA4CP_CP_MERGE_LSE)
                FA4CP_FAIL(FA4CP_ERR_INTERNAL, "cp p2p: step %d merges by %d, not through the LSE", s,
                           (int)sp->merge);
            const map *mq = sp->q_half == 1 ? &h1_back_all : &all;
            if (s == last[sp->q_half == 1]) /* the chain's dq */
                FA4CP_TRY(o->add(x->ad, dq, x->dt, pdq, mq->p, mq->n, x->rq, x->stream));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMP1, s, x->stream));
            FA4CP_TRY(arrived(x, &req, s)); /* dkv_in has arrived, dkv_out has left */
            if (s > 0)
                FA4CP_TRY(o->copy(dkv_out, dkv_in, dkvb, x->stream));
            else
                FA4CP_TRY(o->zero(dkv_out, dkvb, x->stream));
            const map *mk = sp->kv_half == 0 ? &h0_back_all : &all;
            FA4CP_TRY(o->add(x->ad, dkv_out, x->dt, c.dk, mk->p, mk->n, x->rk, x->stream));
            FA4CP_TRY(o->add(x->ad, U8(dkv_out) + dkb, x->dt, c.dv, mk->p, mk->n, x->rv, x->stream));
            break;
        default: CPX_NEXT(in, FA4CP_CP_OP_ATTENTION, 0); /* fails: names both */
        }
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

/* Bytes this shape's executor allocates in one call (an upper bound: maps
 * count every row, real or not), for fa4cp_cp_workspace_bytes. */
size_t cpx_p2p_workspace(const exec *x, int bwd)
{
    const size_t T = (size_t)x->T, Th = (size_t)x->Th;
    const size_t kvb = T * (x->rk + x->rv) * x->es; /* a K|V block */
    const size_t qhb = Th * x->rq * x->es, ohb = Th * x->ro * x->es;
    const size_t lhb = (size_t)x->H * Th * x->as, kvh = Th * (x->rk + x->rv) * x->es;
    const size_t pair = sizeof(cp_pair), T1 = T + 1, Th1 = Th + 1;
    if (!bwd) /* kv[2], acc, alse, pout, plse, qh, kvh; maps real, h1_to_half, h1_back, h0_to_half */
        return 2 * kvb + T * x->ro * (x->as + x->es) + 2 * (size_t)x->H * T * x->as + qhb + kvh +
               pair * (T1 + 3 * Th1);
    /* kv[2], dkv_in, dkv_out, dq, pdq, pdkv, qh, oh, doh, lh, dlh, kvh, the two dQ chains; 5 maps */
    return 2 * kvb + 2 * (T * (x->rk + x->rv) * x->as) + T * x->rq * (x->as + x->es) + kvb + qhb +
           2 * ohb + 2 * lhb + kvh + p2p_carry_bytes(x, x->T) + p2p_carry_bytes(x, x->Th) + pair * (T1 + 4 * Th1);
}
