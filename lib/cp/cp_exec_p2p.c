/* cp_exec_p2p.c - the executor of the p2p ring: KV blocks travel around the
 * ring beside the compute; partial results merge through the LSE. */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ p2p */

/* The attention call of p2p step sp (forward and backward alike): the whole
 * local Q or its second half (qh), the KV block `cur` [K | V] whole or its
 * first half (gathered into kvh), with exact per-sequence counts. */
static fa4cp_status p2p_step_args(exec *x, const fa4cp_cp_step *sp, const void *q, const void *qh,
                                  void *cur, void *kvh, const map *h0_to_half, fa4cp_attn_args *c)
{
    fa4cp_status st = FA4CP_OK;
    const size_t kvb = (size_t)x->T * x->rk * x->es;
    const int qhalf = sp->q_half == 1, kvhalf = sp->kv_half == 0;
    const size_t kvo = (size_t)x->B * (size_t)sp->kv_rank; /* offset of its counts */
    c->q = qhalf ? qh : q;
    c->cu_seqlens_q = qhalf ? x->d_hcu : x->d_lcu;
    c->seqused_q = qhalf ? x->d_h1 + (size_t)x->B * x->r : x->d_lused + (size_t)x->B * x->r;
    c->total_q = qhalf ? x->Th : x->T;
    if (kvhalf) {
        FA4CP_TRY(x->ops->gather(kvh, cur, h0_to_half->p, h0_to_half->n, x->rk * x->es, 2, x->Th,
                                 x->T, x->stream));
        c->k = kvh;
        c->v = U8(kvh) + (size_t)x->Th * x->rk * x->es;
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

fa4cp_status cpx_p2p_fwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es; /* bytes of K (and of V) */
    void *kv[2] = {cpx_xalloc(x, 2 * kvb, "p2p KV buffer"), cpx_xalloc(x, 2 * kvb, "p2p KV buffer")};
    void *acc = cpx_xalloc(x, (size_t)x->T * x->rq * x->as, "p2p running out");
    void *alse = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "p2p running lse");
    void *pout = cpx_xalloc(x, (size_t)x->T * x->rq * x->es, "p2p partial out");
    void *plse = cpx_xalloc(x, (size_t)x->H * x->T * x->as, "p2p partial lse");
    void *qh = cpx_xalloc(x, (size_t)x->Th * x->rq * x->es, "p2p Q second half");
    void *kvh = cpx_xalloc(x, 2 * (size_t)x->Th * x->rk * x->es, "p2p KV first half");
    NOMEM_IF(kv[0] && kv[1] && acc && alse && pout && plse && qh && kvh);
    map real, h1_to_half, h1_back, h0_to_half;
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, -1, 1, 0, &real));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 1, 0, &h1_back));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half)); /* same layout on every rank */

    FA4CP_TRY(o->copy(kv[0], a->k, kvb, x->stream));
    FA4CP_TRY(o->copy(U8(kv[0]) + kvb, a->v, kvb, x->stream));
    FA4CP_TRY(o->zero(acc, (size_t)x->T * x->rq * x->as, x->stream));
    FA4CP_TRY(o->fill_neg_inf(x->ad, alse, (size_t)x->H * x->T, x->stream));
    FA4CP_TRY(o->gather(qh, a->q, h1_to_half.p, h1_to_half.n, x->rq * x->es, 1, 0, 0, x->stream));

    for (int s = 0; s < p->nfwd; s++) {
        const fa4cp_cp_step *sp = &p->fwd[s];
        void *cur = kv[s % 2];
        if (sp->send_to >= 0) {
            /* The next block travels on the side stream while this one is
             * used.  Its buffer kv[(s+1)%2] was last read by step s-1, whose
             * compute is queued before the fork, so it is free. */
            fa4cp_p2p ops[2] = {{sp->send_to, 1, cur, 2 * kvb}, {sp->recv_from, 0, kv[(s + 1) % 2], 2 * kvb}};
            FA4CP_TRY(cpx_fork_comm(x));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, 2, x->cs, &req));
        }
        cpx_note_step(x, s, sp->send_to >= 0);
        FA4CP_TRY(cpx_stamp(x, CP_EV_COMP0, s, x->stream));
        fa4cp_attn_args c = cpx_base_args(x);
        int qhalf = sp->q_half == 1;
        FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, cur, kvh, &h0_to_half, &c));
        c.out = pout;
        c.lse = plse;
        FA4CP_TRY(cpx_attn(x, &c, 0));
        const map *m = qhalf ? &h1_back : &real;
        FA4CP_TRY(o->merge(x->ad, acc, alse, x->T, x->dt, pout, plse, c.total_q, m->p, m->n, x->H,
                           x->D, x->stream));
        FA4CP_TRY(cpx_stamp(x, CP_EV_COMP1, s, x->stream));
        if (req) { /* the next step reads the block that arrived */
            FA4CP_TRY(cpx_wait_on(x, &req, x->cs));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMM1, s, x->cs));
            FA4CP_TRY(cpx_join_comm(x));
        }
    }
    /* real rows only: padding rows of out and lse stay untouched */
    FA4CP_TRY(o->convert(x->dt, a->out, x->ad, acc, real.p, real.n, x->rq, x->stream));
    FA4CP_TRY(o->gather(a->lse, alse, real.p, real.n, x->as, x->H, x->T, x->T, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

fa4cp_status cpx_p2p_bwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es;
    const size_t dkvb = 2 * (size_t)x->T * x->rk * x->as; /* dK then dV, accumulator type */
    const size_t qhb = (size_t)x->Th * x->rq * x->es, lhb = (size_t)x->H * x->Th * x->as;
    void *kv[2] = {cpx_xalloc(x, 2 * kvb, "p2p KV buffer"), cpx_xalloc(x, 2 * kvb, "p2p KV buffer")};
    void *dkv_in = cpx_xalloc(x, dkvb, "p2p incoming dK/dV");
    void *dkv_out = cpx_xalloc(x, dkvb, "p2p outgoing dK/dV");
    void *dq = cpx_xalloc(x, (size_t)x->T * x->rq * x->as, "p2p dQ accumulator");
    void *pdq = cpx_xalloc(x, (size_t)x->T * x->rq * x->es, "p2p partial dQ");
    void *pdkv = cpx_xalloc(x, 2 * kvb, "p2p partial dK/dV");
    void *qh = cpx_xalloc(x, qhb, "p2p Q second half"), *oh = cpx_xalloc(x, qhb, "p2p out second half");
    void *doh = cpx_xalloc(x, qhb, "p2p dout second half");
    void *lh = cpx_xalloc(x, lhb, "p2p lse second half"), *dlh = cpx_xalloc(x, lhb, "p2p dlse second half");
    void *kvh = cpx_xalloc(x, 2 * (size_t)x->Th * x->rk * x->es, "p2p KV first half");
    NOMEM_IF(kv[0] && kv[1] && dkv_in && dkv_out && dq && pdq && pdkv && qh && oh && doh && lh && dlh && kvh);
    map all, h1_to_half, h1_back_all, h0_to_half, h0_back_all;
    FA4CP_TRY(cpx_map_all(x, x->T, &all));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 1, 0, 0, &h1_back_all));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half));
    FA4CP_TRY(cpx_map_rows(x, x->r, -1, 0, 0, 0, &h0_back_all));

    FA4CP_TRY(o->copy(kv[0], a->k, kvb, x->stream));
    FA4CP_TRY(o->copy(U8(kv[0]) + kvb, a->v, kvb, x->stream));
    FA4CP_TRY(o->zero(dq, (size_t)x->T * x->rq * x->as, x->stream));
    {
        const map *m = &h1_to_half;
        FA4CP_TRY(o->gather(qh, a->q, m->p, m->n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(oh, a->out, m->p, m->n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(doh, a->dout, m->p, m->n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(lh, a->lse, m->p, m->n, x->as, x->H, x->Th, x->T, x->stream));
        if (a->dlse)
            FA4CP_TRY(o->gather(dlh, a->dlse, m->p, m->n, x->as, x->H, x->Th, x->T, x->stream));
    }

    for (int s = 0; s < p->nbwd; s++) {
        const fa4cp_cp_step *sp = &p->bwd[s];
        void *cur = kv[s % 2];
        /* One symmetric group per step, so that it also matches on a
         * rendezvous transport (NCCL): to r-1 the dK/dV finished in the
         * previous step, then this KV block; from r+1 the dK/dV of the block
         * used now, then the next KV block - the order the peer sends them. */
        fa4cp_p2p ops[4];
        int nops = 0;
        if (s > 0) {
            ops[nops++] = (fa4cp_p2p){sp->send_to, 1, dkv_out, dkvb};
            ops[nops++] = (fa4cp_p2p){sp->recv_from, 0, dkv_in, dkvb};
        }
        if (s + 1 < p->nbwd) {
            ops[nops++] = (fa4cp_p2p){sp->send_to, 1, cur, 2 * kvb};
            ops[nops++] = (fa4cp_p2p){sp->recv_from, 0, kv[(s + 1) % 2], 2 * kvb};
        }
        if (nops) { /* on the side stream, beside this step's compute */
            FA4CP_TRY(cpx_fork_comm(x));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, nops, x->cs, &req));
        }
        cpx_note_step(x, s, nops > 0);
        FA4CP_TRY(cpx_stamp(x, CP_EV_COMP0, s, x->stream));

        fa4cp_attn_args c = cpx_base_args(x);
        int qhalf = sp->q_half == 1;
        FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, cur, kvh, &h0_to_half, &c));
        c.out = qhalf ? oh : a->out;
        c.dout = qhalf ? doh : a->dout;
        c.lse = qhalf ? lh : a->lse;
        c.dlse = a->dlse ? (qhalf ? dlh : a->dlse) : NULL;
        c.dq = pdq;
        c.dk = pdkv;
        c.dv = U8(pdkv) + (size_t)c.total_k * x->rk * x->es;
        FA4CP_TRY(cpx_attn(x, &c, 1));
        const map *mq = qhalf ? &h1_back_all : &all;
        FA4CP_TRY(o->add(x->ad, dq, x->dt, pdq, mq->p, mq->n, x->rq, x->stream));
        FA4CP_TRY(cpx_stamp(x, CP_EV_COMP1, s, x->stream));
        if (req) { /* dkv_in has arrived, dkv_out has left */
            FA4CP_TRY(cpx_wait_on(x, &req, x->cs));
            FA4CP_TRY(cpx_stamp(x, CP_EV_COMM1, s, x->cs));
            FA4CP_TRY(cpx_join_comm(x));
        }
        if (s > 0)
            FA4CP_TRY(o->copy(dkv_out, dkv_in, dkvb, x->stream));
        else
            FA4CP_TRY(o->zero(dkv_out, dkvb, x->stream));
        const map *mk = sp->kv_half == 0 ? &h0_back_all : &all;
        FA4CP_TRY(o->add(x->ad, dkv_out, x->dt, c.dk, mk->p, mk->n, x->rk, x->stream));
        FA4CP_TRY(o->add(x->ad, U8(dkv_out) + dkvb / 2, x->dt, c.dv, mk->p, mk->n, x->rk, x->stream));
    }
    const void *final = dkv_out;
    if (x->n > 1) { /* the last dK/dV goes to its owner; this rank's own comes home */
        const fa4cp_cp_step *last = &p->bwd[p->nbwd - 1];
        fa4cp_p2p ops[2] = {{last->send_to, 1, dkv_out, dkvb}, {last->recv_from, 0, dkv_in, dkvb}};
        FA4CP_TRY(cpx_fork_comm(x));
        FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, 2, x->cs, &req));
        FA4CP_TRY(cpx_wait_on(x, &req, x->cs));
        FA4CP_TRY(cpx_join_comm(x));
        final = dkv_in;
    }
    /* every row: padding rows are exact zeros */
    FA4CP_TRY(o->convert(x->dt, a->dq, x->ad, dq, all.p, all.n, x->rq, x->stream));
    FA4CP_TRY(o->convert(x->dt, a->dk, x->ad, final, all.p, all.n, x->rk, x->stream));
    FA4CP_TRY(o->convert(x->dt, a->dv, x->ad, U8(final) + dkvb / 2, all.p, all.n, x->rk, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

