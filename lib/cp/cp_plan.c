/* cp_plan.c - CP plans: what one rank does, step by step, as plain data.
 *
 * p2p (ring).  Forward step s uses the KV block of rank (r - s) mod cp
 * (received from r-1, sent on to r+1); backward step s the block of rank
 * (r + s) mod cp (the ring the other way: from r+1, to r-1), with the dK/dV
 * of that block arriving one step behind it.  With a causal mask the block
 * of rank k, seen from rank r, is:
 *   k == r  diagonal: both local chunks x both, causal (the concatenated
 *           chunk positions are increasing, so a top-left causal mask on
 *           the local rows is exact);
 *   k <  r  lower: both Q chunks x the first KV chunk (chunk k precedes
 *           chunk r; chunk 2cp-1-k follows every Q chunk), no mask;
 *   k >  r  upper: the second Q chunk (2cp-1-r) x both KV chunks (chunk k
 *           follows chunk r but precedes 2cp-1-r; so does 2cp-1-k), no mask.
 * Without a mask every step is full x full.
 *
 * all_gather: two steps, one per local Q chunk c in {r, 2cp-1-r}, each over
 * the gathered KV prefix it can see (c+1 chunks when causal).
 * a2a: one step, whole sequences on the heads of group r.
 */
#include "cp_config.h"

#include <stdio.h>

const char *fa4cp_cp_case_name(fa4cp_cp_case c)
{
    switch (c) {
    case FA4CP_CP_CASE_FULL: return "full";
    case FA4CP_CP_CASE_DIAGONAL: return "diagonal";
    case FA4CP_CP_CASE_LOWER: return "lower";
    case FA4CP_CP_CASE_UPPER: return "upper";
    case FA4CP_CP_CASE_PREFIX: return "prefix";
    case FA4CP_CP_CASE_HEADS: return "heads";
    }
    return "?";
}

static fa4cp_cp_step p2p_step(const fa4cp_cp_config *cfg, int cp, int r, int kv)
{
    fa4cp_cp_step s = {0};
    s.kv_rank = kv;
    s.q_half = -1;
    s.kv_half = -1;
    s.kv_chunks = -1;
    s.head_group = -1;
    s.window_left = s.window_right = -1;
    s.merge = FA4CP_CP_MERGE_LSE;
    if (!cfg->causal) {
        s.mask_case = FA4CP_CP_CASE_FULL;
    } else if (kv == r) {
        s.mask_case = FA4CP_CP_CASE_DIAGONAL;
        s.causal = 1;
    } else if (kv < r) {
        s.mask_case = FA4CP_CP_CASE_LOWER;
        s.kv_half = 0;
    } else {
        s.mask_case = FA4CP_CP_CASE_UPPER;
        s.q_half = 1;
    }
    return s;
}

fa4cp_status fa4cp_cp_plan_build(const fa4cp_cp_config *cfg, int cp, int r, fa4cp_cp_plan **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_cp_plan *p = NULL;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_plan_build: out is NULL");
    *out = NULL;
    FA4CP_TRY(fa4cp_cp_check_shape(cfg, cp));
    if (r < 0 || r >= cp)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp rank %d is outside the group of %d ranks", r, cp);
    p = fa4cp_calloc(1, sizeof *p, "cp plan");
    if (!p) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    p->comm = cfg->comm;
    p->format = cfg->format;
    p->cp_size = cp;
    p->cp_rank = r;
    p->causal = cfg->causal;
    p->window_left = cfg->window_left;
    p->window_right = cfg->window_right;
    int n = cfg->comm == FA4CP_CP_P2P ? cp : cfg->comm == FA4CP_CP_ALL_GATHER ? 2 : 1;
    p->nfwd = p->nbwd = n;
    p->fwd = fa4cp_calloc((size_t)n, sizeof *p->fwd, "cp plan steps");
    p->bwd = fa4cp_calloc((size_t)n, sizeof *p->bwd, "cp plan steps");
    if (!p->fwd || !p->bwd) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int s = 0; s < n; s++) {
        fa4cp_cp_step *f = &p->fwd[s], *b = &p->bwd[s];
        switch (cfg->comm) {
        case FA4CP_CP_P2P:
            *f = p2p_step(cfg, cp, r, (r - s + cp) % cp);
            f->send_to = s + 1 < n ? (r + 1) % cp : -1;
            f->recv_from = s + 1 < n ? (r - 1 + cp) % cp : -1;
            *b = p2p_step(cfg, cp, r, (r + s) % cp);
            /* dK/dV leave after every step (the last one goes home) */
            b->send_to = cp > 1 ? (r - 1 + cp) % cp : -1;
            b->recv_from = cp > 1 ? (r + 1) % cp : -1;
            break;
        case FA4CP_CP_ALL_GATHER: {
            int c = s == 0 ? r : 2 * cp - 1 - r;
            f->mask_case = FA4CP_CP_CASE_PREFIX;
            f->kv_rank = -1;
            f->q_half = s;
            f->kv_half = -1;
            f->kv_chunks = cfg->causal ? c + 1 : 2 * cp;
            f->head_group = -1;
            f->causal = cfg->causal;
            f->window_left = cfg->window_left;
            f->window_right = cfg->window_right;
            f->merge = FA4CP_CP_MERGE_COPY;
            f->send_to = f->recv_from = -1;
            *b = *f;
            break;
        }
        default: /* a2a */
            f->mask_case = FA4CP_CP_CASE_HEADS;
            f->kv_rank = -1;
            f->q_half = -1;
            f->kv_half = -1;
            f->kv_chunks = 2 * cp;
            f->head_group = r;
            f->causal = cfg->causal;
            f->window_left = cfg->window_left;
            f->window_right = cfg->window_right;
            f->merge = FA4CP_CP_MERGE_COPY;
            f->send_to = f->recv_from = -1;
            *b = *f;
            break;
        }
    }
    *out = p;
    p = NULL;
out:
    fa4cp_cp_plan_free(p);
    return st;
}

void fa4cp_cp_plan_free(fa4cp_cp_plan *p)
{
    if (!p)
        return;
    fa4cp_free(p->fwd);
    fa4cp_free(p->bwd);
    fa4cp_free(p);
}

static void chunks_of(char *buf, size_t n, int cp, int r, int half)
{
    if (half < 0)
        snprintf(buf, n, "chunks %d+%d", r, 2 * cp - 1 - r);
    else
        snprintf(buf, n, "chunk %d", half == 0 ? r : 2 * cp - 1 - r);
}

static void print_step(const fa4cp_cp_plan *p, const fa4cp_cp_step *s, int i, int bwd, FILE *f)
{
    const int cp = p->cp_size, r = p->cp_rank;
    char q[32], kv[32], win[48] = "";
    if (s->window_left >= 0 || s->window_right >= 0)
        snprintf(win, sizeof win, ", window (%d,%d)", s->window_left, s->window_right);
    fprintf(f, "  %s step %d: ", bwd ? "bwd" : "fwd", i);
    switch (s->mask_case) {
    case FA4CP_CP_CASE_PREFIX:
        chunks_of(q, sizeof q, cp, r, s->q_half);
        fprintf(f, "%-8s Q %s x gathered KV chunks 0..%d%s%s, rows copied into place\n", "prefix",
                q, s->kv_chunks - 1, s->causal ? ", causal" : "", win);
        return;
    case FA4CP_CP_CASE_HEADS:
        fprintf(f, "%-8s all chunks (whole sequences) x heads of group %d%s%s, rows copied back\n",
                "heads", s->head_group, s->causal ? ", causal" : "", win);
        return;
    default: break;
    }
    chunks_of(q, sizeof q, cp, r, s->q_half);
    chunks_of(kv, sizeof kv, cp, s->kv_rank, s->kv_half);
    fprintf(f, "%-8s Q %s x KV of rank %d%s (%s), %s; ", fa4cp_cp_case_name(s->mask_case), q,
            s->kv_rank, s->kv_rank == r ? " (own)" : "", kv, s->causal ? "causal" : "no mask");
    if (!bwd)
        fprintf(f, "merge through the LSE%s", i == 0 ? " (first: copy)" : "");
    else
        fprintf(f, "%s dQ %s, dK/dV of rank %d's block%s", s->q_half < 0 ? "add" : "add to",
                s->q_half < 0 ? "(all rows)" : "(second chunk)", s->kv_rank,
                s->kv_half == 0 ? " (first chunk)" : "");
    if (s->send_to >= 0 && !bwd)
        fprintf(f, "; meanwhile send this KV to rank %d, receive the next from rank %d", s->send_to,
                s->recv_from);
    if (s->send_to >= 0 && bwd)
        fprintf(f, "; then send dK/dV to rank %d%s", s->send_to,
                i + 1 == p->nbwd ? " (its owner)" : "");
    fprintf(f, "\n");
}

fa4cp_status fa4cp_cp_plan_print(const fa4cp_cp_plan *p, FILE *f)
{
    if (!p || !f)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_plan_print: plan or file is NULL");
    fprintf(f, "cp plan: comm %s, layout %s, cp %d, rank %d (chunks %d and %d), %s", fa4cp_cp_comm_name(p->comm),
            fa4cp_cp_format_name(p->format), p->cp_size, p->cp_rank, p->cp_rank,
            2 * p->cp_size - 1 - p->cp_rank, p->causal ? "causal" : "no causal mask");
    if (p->window_left >= 0 || p->window_right >= 0)
        fprintf(f, ", window (%d,%d)", p->window_left, p->window_right);
    fprintf(f, "\n");
    if (p->comm == FA4CP_CP_ALL_GATHER)
        fprintf(f, "  fwd: all_gather K and V, reorder to sequence order\n");
    if (p->comm == FA4CP_CP_A2A)
        fprintf(f, "  fwd: all_to_all q, k, v from sequence- to head-sharded, chunk order restored\n");
    for (int i = 0; i < p->nfwd; i++)
        print_step(p, &p->fwd[i], i, 0, f);
    if (p->comm == FA4CP_CP_A2A)
        fprintf(f, "  fwd: all_to_all out and lse back to sequence-sharded\n");
    if (p->comm == FA4CP_CP_P2P)
        fprintf(f, "  fwd: write the merged out and lse (fp32 merge; fp64 for fp64 storage)\n");
    if (p->comm == FA4CP_CP_ALL_GATHER)
        fprintf(f, "  bwd: all_gather K and V again\n");
    if (p->comm == FA4CP_CP_A2A)
        fprintf(f, "  bwd: all_to_all q, k, v, out, dout, lse (dlse) to head-sharded\n");
    for (int i = 0; i < p->nbwd; i++)
        print_step(p, &p->bwd[i], i, 1, f);
    if (p->comm == FA4CP_CP_P2P && p->cp_size > 1)
        fprintf(f, "  bwd: receive this rank's own dK/dV from rank %d\n", (p->cp_rank + 1) % p->cp_size);
    if (p->comm == FA4CP_CP_ALL_GATHER)
        fprintf(f, "  bwd: reorder dK/dV to rank order, reduce_scatter (sum)\n");
    if (p->comm == FA4CP_CP_A2A)
        fprintf(f, "  bwd: all_to_all dq, dk, dv back to sequence-sharded\n");
    return ferror(f) ? fa4cp_set_error(FA4CP_ERR_IO, "cannot write the cp plan") : FA4CP_OK;
}
