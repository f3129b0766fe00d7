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
 *
 * Beside the attention steps a plan holds the programs: every operation of
 * a forward and of a backward call (exchanges, collectives, attention calls,
 * merges, the final writes) in the order the executor runs them.
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

/* An all_gather or a2a step: the call's own mask and window, rows copied into place. */
static fa4cp_cp_step copy_step(const fa4cp_cp_config *cfg, fa4cp_cp_case mask_case, int q_half, int kv_chunks,
                               int head_group)
{
    fa4cp_cp_step s = {0};
    s.mask_case = mask_case;
    s.kv_rank = -1;
    s.q_half = q_half;
    s.kv_half = -1;
    s.kv_chunks = kv_chunks;
    s.head_group = head_group;
    s.causal = cfg->causal;
    s.window_left = cfg->window_left;
    s.window_right = cfg->window_right;
    s.merge = FA4CP_CP_MERGE_COPY;
    s.send_to = s.recv_from = -1;
    return s;
}

const char *fa4cp_cp_op_name(fa4cp_cp_op op)
{
    switch (op) {
    case FA4CP_CP_OP_SENDRECV: return "sendrecv";
    case FA4CP_CP_OP_ALL_GATHER: return "all_gather";
    case FA4CP_CP_OP_ALL_TO_ALL: return "all_to_all";
    case FA4CP_CP_OP_REDUCE_SCATTER: return "reduce_scatter";
    case FA4CP_CP_OP_ATTENTION: return "attention";
    case FA4CP_CP_OP_MERGE: return "merge";
    }
    return "?";
}

enum { T_Q = FA4CP_CP_T_Q, T_K = FA4CP_CP_T_K, T_V = FA4CP_CP_T_V, T_OUT = FA4CP_CP_T_OUT,
       T_DOUT = FA4CP_CP_T_DOUT, T_LSE = FA4CP_CP_T_LSE, T_DLSE = FA4CP_CP_T_DLSE,
       T_DQ = FA4CP_CP_T_DQ, T_DK = FA4CP_CP_T_DK, T_DV = FA4CP_CP_T_DV };

static void add(fa4cp_cp_instr *ops, int *n, fa4cp_cp_op op, int step, unsigned tensors, int to, int from)
{
    fa4cp_cp_instr *i = &ops[(*n)++];
    i->op = op;
    i->step = step;
    i->tensors = tensors;
    i->send_to = to;
    i->recv_from = from;
    i->optional = 0;
}

/* The programs of plan p (ops arrays of at least 3 * nsteps + 12 entries). */
static void programs(fa4cp_cp_plan *p)
{
    const int n = p->cp_size;
    fa4cp_cp_instr *f = p->fwd_ops, *b = p->bwd_ops;
    int nf = 0, nb = 0;
    switch (p->comm) {
    case FA4CP_CP_P2P:
        for (int s = 0; s < p->nfwd; s++) {
            if (p->fwd[s].send_to >= 0)
                add(f, &nf, FA4CP_CP_OP_SENDRECV, s, T_K | T_V, p->fwd[s].send_to, p->fwd[s].recv_from);
            add(f, &nf, FA4CP_CP_OP_ATTENTION, s, T_OUT | T_LSE, -1, -1);
            add(f, &nf, FA4CP_CP_OP_MERGE, s, T_OUT | T_LSE, -1, -1);
        }
        add(f, &nf, FA4CP_CP_OP_MERGE, -1, T_OUT | T_LSE, -1, -1);
        for (int s = 0; s < p->nbwd; s++) {
            unsigned t = (s > 0 ? T_DK | T_DV : 0u) | (s + 1 < p->nbwd ? T_K | T_V : 0u);
            if (t)
                add(b, &nb, FA4CP_CP_OP_SENDRECV, s, t, p->bwd[s].send_to, p->bwd[s].recv_from);
            add(b, &nb, FA4CP_CP_OP_ATTENTION, s, T_DQ | T_DK | T_DV, -1, -1);
            add(b, &nb, FA4CP_CP_OP_MERGE, s, T_DQ | T_DK | T_DV, -1, -1);
        }
        if (n > 1) /* the last dK/dV goes to its owner; this rank's own comes home */
            add(b, &nb, FA4CP_CP_OP_SENDRECV, -1, T_DK | T_DV, p->bwd[p->nbwd - 1].send_to,
                p->bwd[p->nbwd - 1].recv_from);
        add(b, &nb, FA4CP_CP_OP_MERGE, -1, T_DQ | T_DK | T_DV, -1, -1);
        break;
    case FA4CP_CP_ALL_GATHER:
        add(f, &nf, FA4CP_CP_OP_ALL_GATHER, -1, T_K, -1, -1);
        add(f, &nf, FA4CP_CP_OP_ALL_GATHER, -1, T_V, -1, -1);
        for (int s = 0; s < p->nfwd; s++) {
            add(f, &nf, FA4CP_CP_OP_ATTENTION, s, T_OUT | T_LSE, -1, -1);
            add(f, &nf, FA4CP_CP_OP_MERGE, s, T_OUT | T_LSE, -1, -1);
        }
        add(b, &nb, FA4CP_CP_OP_ALL_GATHER, -1, T_K, -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_GATHER, -1, T_V, -1, -1);
        for (int s = 0; s < p->nbwd; s++) /* each call's dQ rows copied, dK/dV summed */
            add(b, &nb, FA4CP_CP_OP_ATTENTION, s, T_DQ | T_DK | T_DV, -1, -1);
        add(b, &nb, FA4CP_CP_OP_REDUCE_SCATTER, -1, T_DK | T_DV, -1, -1);
        add(b, &nb, FA4CP_CP_OP_MERGE, -1, T_DK | T_DV, -1, -1);
        break;
    default: { /* a2a */
        static const unsigned in_f[] = {T_Q, T_K, T_V}, in_b[] = {T_Q, T_K, T_V, T_OUT, T_DOUT};
        for (int i = 0; i < 3; i++)
            add(f, &nf, FA4CP_CP_OP_ALL_TO_ALL, -1, in_f[i], -1, -1);
        add(f, &nf, FA4CP_CP_OP_ATTENTION, 0, T_OUT | T_LSE, -1, -1);
        add(f, &nf, FA4CP_CP_OP_ALL_TO_ALL, -1, T_OUT, -1, -1);
        add(f, &nf, FA4CP_CP_OP_ALL_TO_ALL, -1, T_LSE, -1, -1);
        for (int i = 0; i < 5; i++)
            add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, in_b[i], -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, T_LSE, -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, T_DLSE, -1, -1);
        b[nb - 1].optional = 1;
        add(b, &nb, FA4CP_CP_OP_ATTENTION, 0, T_DQ | T_DK | T_DV, -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, T_DQ, -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, T_DK, -1, -1);
        add(b, &nb, FA4CP_CP_OP_ALL_TO_ALL, -1, T_DV, -1, -1);
        break;
    }
    }
    p->nfwd_ops = nf;
    p->nbwd_ops = nb;
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
    p->fwd_ops = fa4cp_calloc((size_t)(3 * n + 12), sizeof *p->fwd_ops, "cp plan program");
    p->bwd_ops = fa4cp_calloc((size_t)(3 * n + 12), sizeof *p->bwd_ops, "cp plan program");
    if (!p->fwd || !p->bwd || !p->fwd_ops || !p->bwd_ops) {
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
            *f = *b = copy_step(cfg, FA4CP_CP_CASE_PREFIX, s, cfg->causal ? c + 1 : 2 * cp, -1);
            break;
        }
        default: /* a2a */
            *f = *b = copy_step(cfg, FA4CP_CP_CASE_HEADS, -1, 2 * cp, r);
            break;
        }
    }
    programs(p);
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
    fa4cp_free(p->fwd_ops);
    fa4cp_free(p->bwd_ops);
    fa4cp_free(p);
}

static void chunks_of(char *buf, size_t n, int cp, int r, int half)
{
    if (half < 0)
        snprintf(buf, n, "chunks %d+%d", r, 2 * cp - 1 - r);
    else
        snprintf(buf, n, "chunk %d", half == 0 ? r : 2 * cp - 1 - r);
}

static void tensor_names(char *buf, size_t n, unsigned t)
{
    static const char *names[] = {"q", "k", "v", "out", "dout", "lse", "dlse", "dq", "dk", "dv"};
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < 10 && at < n; i++)
        if (t & (1u << i))
            at += (size_t)snprintf(buf + at, n - at, "%s%s", at ? "+" : "", names[i]);
}

/* The attention call of a step (the same words for every shape). */
static void print_attention(const fa4cp_cp_plan *p, const fa4cp_cp_step *s, int i, int bwd, FILE *f)
{
    const int cp = p->cp_size, r = p->cp_rank;
    char q[32], kv[32], win[48] = "";
    if (s->window_left >= 0 || s->window_right >= 0)
        snprintf(win, sizeof win, ", window (%d,%d)", s->window_left, s->window_right);
    fprintf(f, "  %s step %d: ", bwd ? "bwd" : "fwd", i);
    switch (s->mask_case) {
    case FA4CP_CP_CASE_PREFIX:
        chunks_of(q, sizeof q, cp, r, s->q_half);
        fprintf(f, "%-8s Q %s x gathered KV chunks 0..%d%s%s%s\n", "prefix", q, s->kv_chunks - 1,
                s->causal ? ", causal" : "", win, bwd ? "; its dQ rows copied into place, dK/dV summed" : "");
        return;
    case FA4CP_CP_CASE_HEADS:
        fprintf(f, "%-8s all chunks (whole sequences) x heads of group %d%s%s\n", "heads",
                s->head_group, s->causal ? ", causal" : "", win);
        return;
    default: break;
    }
    chunks_of(q, sizeof q, cp, r, s->q_half);
    chunks_of(kv, sizeof kv, cp, s->kv_rank, s->kv_half);
    fprintf(f, "%-8s Q %s x KV of rank %d%s (%s), %s\n", fa4cp_cp_case_name(s->mask_case), q,
            s->kv_rank, s->kv_rank == r ? " (own)" : "", kv, s->causal ? "causal" : "no mask");
}

static void print_op(const fa4cp_cp_plan *p, const fa4cp_cp_instr *o, int bwd, int after, FILE *f)
{
    const char *dir = bwd ? "bwd" : "fwd";
    const fa4cp_cp_step *s = o->step >= 0 ? (bwd ? &p->bwd[o->step] : &p->fwd[o->step]) : NULL;
    char t[64];
    tensor_names(t, sizeof t, o->tensors);
    switch (o->op) {
    case FA4CP_CP_OP_ATTENTION: print_attention(p, s, o->step, bwd, f); return;
    case FA4CP_CP_OP_SENDRECV:
        if (o->step >= 0)
            fprintf(f, "  %s sendrecv: %s to rank %d, from rank %d (beside step %d)\n", dir, t,
                    o->send_to, o->recv_from, o->step);
        else
            fprintf(f, "  %s sendrecv: %s to rank %d (its owner), this rank's own from rank %d\n",
                    dir, t, o->send_to, o->recv_from);
        return;
    case FA4CP_CP_OP_ALL_GATHER:
        fprintf(f, "  %s all_gather: %s, reordered to sequence order\n", dir, t);
        return;
    case FA4CP_CP_OP_REDUCE_SCATTER:
        fprintf(f, "  %s reduce_scatter: %s (sum), after a reorder to rank order\n", dir, t);
        return;
    case FA4CP_CP_OP_ALL_TO_ALL:
        fprintf(f, "  %s all_to_all: %s, %s-sharded%s\n", dir, t,
                after ? "head- to sequence" : "sequence- to head", o->optional ? " (when given)" : "");
        return;
    case FA4CP_CP_OP_MERGE:
        if (!s)
            fprintf(f, "  %s merge: write %s (%s)\n", dir, t,
                    bwd ? "every row: padding rows exact zeros" : "real rows; fp32 merge, fp64 for fp64 storage");
        else if (s->merge == FA4CP_CP_MERGE_COPY)
            fprintf(f, "  %s merge: step %d, real rows of %s copied into place\n", dir, o->step, t);
        else if (!bwd)
            fprintf(f, "  %s merge: step %d into %s through the LSE%s\n", dir, o->step, t,
                    o->step == 0 ? " (first: copy)" : "");
        else
            fprintf(f, "  %s merge: step %d, %s dQ %s, dK/dV of rank %d's block%s\n", dir, o->step,
                    s->q_half < 0 ? "add" : "add to", s->q_half < 0 ? "(all rows)" : "(second chunk)",
                    s->kv_rank, s->kv_half == 0 ? " (first chunk)" : "");
        return;
    }
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
    for (int bwd = 0; bwd < 2; bwd++) {
        const fa4cp_cp_instr *ops = bwd ? p->bwd_ops : p->fwd_ops;
        int after = 0; /* past the first attention call */
        for (int i = 0; i < (bwd ? p->nbwd_ops : p->nfwd_ops); i++) {
            print_op(p, &ops[i], bwd, after, f);
            after |= ops[i].op == FA4CP_CP_OP_ATTENTION;
        }
    }
    return ferror(f) ? fa4cp_set_error(FA4CP_ERR_IO, "cannot write the cp plan") : FA4CP_OK;
}
