/* cp_exec_common.c - what every shape of the executor shares: its buffers,
 * the row maps, the setup of a call, the attention call, stream forks and
 * joins, step events, and the cursor over the plan's program. */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ memory */

/* remember p in a growing list; 0 if the list could not grow */
static int keep(void ***list, int *n, int *cap, void *p)
{
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 32;
        void **l = fa4cp_malloc((size_t)nc * sizeof *l, "cp executor buffer list");
        if (!l)
            return 0;
        if (*n)
            memcpy(l, *list, (size_t)*n * sizeof *l);
        fa4cp_free(*list);
        *list = l;
        *cap = nc;
    }
    (*list)[(*n)++] = p;
    return 1;
}

void *cpx_xalloc(exec *x, size_t bytes, const char *what)
{
    void *p = x->ops->alloc(bytes ? bytes : 1, what, x->stream);
    x->allocated += bytes ? bytes : 1;
    if (p && !keep(&x->buf, &x->nbuf, &x->capbuf, p)) {
        x->ops->free(p, x->stream);
        return NULL;
    }
    return p;
}

void *cpx_hmalloc(exec *x, size_t bytes, const char *what)
{
    void *p = fa4cp_malloc(bytes ? bytes : 1, what);
    if (p && !keep(&x->host, &x->nhost, &x->caphost, p)) {
        fa4cp_free(p);
        return NULL;
    }
    return p;
}

void cpx_release(exec *x)
{
    for (int i = 0; i < x->nbuf; i++)
        x->ops->free(x->buf[i], x->stream);
    for (int i = 0; i < x->nhost; i++)
        fa4cp_free(x->host[i]);
    fa4cp_free(x->buf);
    fa4cp_free(x->host);
    x->buf = x->host = NULL;
    x->nbuf = x->nhost = x->capbuf = x->caphost = 0;
}

/* host array -> ops memory */
void *cpx_upload(exec *x, const void *host, size_t bytes, const char *what)
{
    void *d = cpx_xalloc(x, bytes, what);
    if (d && x->ops->upload(d, host, bytes, x->stream) != FA4CP_OK)
        return NULL;
    return d;
}

/* ------------------------------------------------------------------ row maps (built on the host) */

/* Rows of local sequences (seq < 0: all) of rank `rank`.
 * half < 0: whole local sequence, pairs (local, local).
 * half 0/1: that chunk; to_half: (half row, local row), else (local row, half row).
 * real: only real rows (a prefix), else every physical row. */
/* the host map h of n pairs into ops memory, as m */
static fa4cp_status put_map(exec *x, const cp_pair *h, int64_t n, const char *what, map *m)
{
    m->n = n;
    m->p = cpx_upload(x, h, (size_t)(n + 1) * sizeof *h, what);
    return m->p ? FA4CP_OK : FA4CP_ERR_NOMEM;
}

fa4cp_status cpx_map_rows(exec *x, int rank, int seq, int half, int real, int to_half, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = cpx_hmalloc(x, (size_t)(x->T + 1) * sizeof *h, "cp row map");
    NOMEM_IF(h);
    int64_t n = 0;
    for (int i = 0; i < x->B; i++) {
        if (seq >= 0 && i != seq)
            continue;
        int64_t C = (x->lcu[i + 1] - x->lcu[i]) / 2;
        if (half < 0) {
            int64_t cnt = real ? x->lused[(size_t)rank * x->B + i] : 2 * C;
            for (int64_t j = 0; j < cnt; j++, n++)
                h[n].dst = h[n].src = x->lcu[i] + j;
        } else {
            const int32_t *u = half == 0 ? x->h0 : x->h1;
            int64_t cnt = real ? u[(size_t)rank * x->B + i] : C;
            for (int64_t j = 0; j < cnt; j++, n++) {
                int64_t local = x->lcu[i] + half * C + j, hr = x->hcu[i] + j;
                h[n].dst = to_half ? hr : local;
                h[n].src = to_half ? local : hr;
            }
        }
    }
    return put_map(x, h, n, "cp row map", m);
out:
    return st;
}

/* identity over rows [0, rows) */
fa4cp_status cpx_map_all(exec *x, int64_t rows, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = cpx_hmalloc(x, (size_t)(rows + 1) * sizeof *h, "cp row map");
    NOMEM_IF(h);
    for (int64_t i = 0; i < rows; i++)
        h[i].dst = h[i].src = i;
    return put_map(x, h, rows, "cp row map", m);
out:
    return st;
}

/* Rank order <-> sequence order: unit (s*stride + l) of rank s's local row l
 * and global row g.  to_seq: (g, s*stride + l), else (s*stride + l, g).
 * with_second: add a second set shifted by (G, T) (dk then dv). */
fa4cp_status cpx_map_ranks(exec *x, int64_t stride, int to_seq, int with_second, map *m)
{
    fa4cp_status st = FA4CP_OK;
    int64_t n = x->G * (with_second ? 2 : 1);
    cp_pair *h = cpx_hmalloc(x, (size_t)(n + 1) * sizeof *h, "cp rank-order map");
    NOMEM_IF(h);
    int64_t k = 0;
    for (int s = 0; s < x->n; s++)
        for (int64_t l = 0; l < x->T; l++) {
            int64_t g = fa4cp_thd_local_to_global(x->B, x->cu, x->n, s, l);
            int64_t u = (int64_t)s * stride + l;
            h[k].dst = to_seq ? g : u;
            h[k].src = to_seq ? u : g;
            k++;
            if (with_second) {
                h[k].dst = to_seq ? g + x->G : u + x->T;
                h[k].src = to_seq ? u + x->T : g + x->G;
                k++;
            }
        }
    return put_map(x, h, k, "cp rank-order map", m);
out:
    return st;
}

/* Sequence order -> rank order in units of row_units each (a row of the
 * tensor is row_units consecutive units): the units of global row g, held by
 * rank s as local row l, go to (s*block + offset + l*row_units + j) from
 * (g*row_units + j).  all_gather's dK and dV sums share one buffer of
 * per-rank blocks [dK rows | dV rows] of different widths: counted in units
 * of gcd(dK row, dV row), both fit. */
fa4cp_status cpx_map_ranks_units(exec *x, int64_t block, int64_t offset, int64_t row_units, map *m)
{
    fa4cp_status st = FA4CP_OK;
    int64_t n = x->G * row_units;
    cp_pair *h = cpx_hmalloc(x, (size_t)(n + 1) * sizeof *h, "cp rank-order map");
    NOMEM_IF(h);
    int64_t k = 0;
    for (int s = 0; s < x->n; s++)
        for (int64_t l = 0; l < x->T; l++) {
            int64_t g = fa4cp_thd_local_to_global(x->B, x->cu, x->n, s, l);
            for (int64_t j = 0; j < row_units; j++, k++) {
                h[k].dst = (int64_t)s * block + offset + l * row_units + j;
                h[k].src = g * row_units + j;
            }
        }
    m->n = k;
    m->p = cpx_upload(x, h, (size_t)(k + 1) * sizeof *h, "cp rank-order map");
    NOMEM_IF(m->p);
out:
    return st;
}

/* a2a: local unit (l*n + p) of row l, head group p <-> send/recv unit (p*T + l).
 * to_blocks: (p*T + l, l*n + p), else the reverse.  real: only real rows of this rank. */
fa4cp_status cpx_map_heads(exec *x, int to_blocks, int real, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = cpx_hmalloc(x, (size_t)(x->T * x->n + 1) * sizeof *h, "cp head-group map");
    NOMEM_IF(h);
    int64_t k = 0;
    for (int i = 0; i < x->B; i++) {
        int64_t rows = real ? x->lused[(size_t)x->r * x->B + i] : x->lcu[i + 1] - x->lcu[i];
        for (int64_t j = 0; j < rows; j++) {
            int64_t l = x->lcu[i] + j;
            for (int p = 0; p < x->n; p++, k++) {
                int64_t a = (int64_t)p * x->T + l, b = l * x->n + p;
                h[k].dst = to_blocks ? a : b;
                h[k].src = to_blocks ? b : a;
            }
        }
    }
    return put_map(x, h, k, "cp head-group map", m);
out:
    return st;
}

/* ------------------------------------------------------------------ setup */

void cpx_dims(exec *x, const fa4cp_cp_config *c, int n)
{
    x->cfg = c;
    x->n = n;
    x->H = c->heads;
    x->Hk = c->kv_heads;
    x->D = c->head_dim;
    x->Dv = c->head_dim_v ? c->head_dim_v : c->head_dim;
    x->dt = c->dtype;
    x->ad = fa4cp_lse_dtype(c->dtype);
    x->es = fa4cp_dtype_size(x->dt);
    x->as = fa4cp_dtype_size(x->ad);
    x->rq = (size_t)x->H * (size_t)x->D;
    x->rk = (size_t)x->Hk * (size_t)x->D;
    x->ro = (size_t)x->H * (size_t)x->Dv;
    x->rv = (size_t)x->Hk * (size_t)x->Dv;
}

fa4cp_status cpx_setup(exec *x, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    const fa4cp_cp_config *c = &cp->cfg;
    memset(x, 0, sizeof *x);
    x->cp = cp;
    x->cfg = c;
    x->ops = cp->ops;
    x->comm = cp->comm;
    x->plan = cp->plan;
    x->r = fa4cp_comm_rank(cp->comm);
    cpx_dims(x, c, fa4cp_comm_size(cp->comm));
    if (!a)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp %s: the arguments are NULL", bwd ? "backward" : "forward");
    if (a->struct_size != sizeof(fa4cp_cp_args))
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "fa4cp_cp_args.struct_size is %zu, expected %zu: initialise it with "
                   "FA4CP_CP_ARGS_INIT and rebuild against this fa4cp.h",
                   a->struct_size, sizeof(fa4cp_cp_args));
    x->stream = x->cs = a->stream;
    x->prog = bwd ? x->plan->bwd_ops : x->plan->fwd_ops;
    x->nprog = bwd ? x->plan->nbwd_ops : x->plan->nfwd_ops;
    x->have_dlse = a->dlse != NULL;
    x->B = a->batch;
    if (x->B < 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "batch is %d: it must be >= 0", x->B);
    FA4CP_TRY(fa4cp_cp_validate(c, x->n, x->B, a->cu_seqlens, a->seqlen));
    x->cu = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp cu_seqlens");
    x->used = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp seqused");
    x->lcu = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp local cu_seqlens");
    x->hcu = cpx_hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp half cu_seqlens");
    x->lused = cpx_hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
    x->h0 = cpx_hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
    x->h1 = cpx_hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
    NOMEM_IF(x->cu && x->used && x->lcu && x->hcu && x->lused && x->h0 && x->h1);
    if (c->format == FA4CP_CP_BSHD) {
        if (a->seqused)
            FA4CP_FAIL(FA4CP_ERR_INVALID,
                       "layout bshd is fixed length: seqused must be NULL (use layout thd with "
                       "seqused for padded sequences)");
        fa4cp_cp_bshd_cu(x->B, a->seqlen, x->cu);
    } else {
        memcpy(x->cu, a->cu_seqlens, (size_t)(x->B + 1) * sizeof(int32_t));
        FA4CP_TRY(fa4cp_thd_check(x->B, x->cu, a->seqused, x->n));
    }
    for (int i = 0; i < x->B; i++)
        x->used[i] = a->seqused ? a->seqused[i] : x->cu[i + 1] - x->cu[i];
    fa4cp_thd_local_cu(x->B, x->cu, x->n, -1, x->lcu);
    fa4cp_thd_local_cu(x->B, x->cu, x->n, 0, x->hcu);
    for (int s = 0; s < x->n; s++) {
        fa4cp_thd_local_seqused(x->B, x->cu, x->used, x->n, s, -1, x->lused + (size_t)s * x->B);
        fa4cp_thd_local_seqused(x->B, x->cu, x->used, x->n, s, 0, x->h0 + (size_t)s * x->B);
        fa4cp_thd_local_seqused(x->B, x->cu, x->used, x->n, s, 1, x->h1 + (size_t)s * x->B);
    }
    for (int i = 0; i < x->B; i++) {
        int g = x->cu[i + 1] - x->cu[i], l = x->lcu[i + 1] - x->lcu[i], h = x->hcu[i + 1] - x->hcu[i];
        x->mx_g = g > x->mx_g ? g : x->mx_g;
        x->mx_l = l > x->mx_l ? l : x->mx_l;
        x->mx_h = h > x->mx_h ? h : x->mx_h;
    }
    x->cs = x->stream;
    if (x->ops->stream_create && x->n > 1) {
        if (!cp->side)
            FA4CP_TRY(x->ops->stream_create(&cp->side));
        x->cs = cp->side;
    }
    x->timed = cp->timing && x->ops->event_create;
    x->G = x->B > 0 ? x->cu[x->B] : 0;
    x->T = x->G / x->n;
    x->Th = x->T / 2;
    {
        size_t bn = (size_t)x->n * x->B + 1, b1 = (size_t)x->B + 1;
        x->d_cu = cpx_upload(x, x->cu, b1 * 4, "cp cu_seqlens");
        x->d_used = cpx_upload(x, x->used, b1 * 4, "cp seqused");
        x->d_lcu = cpx_upload(x, x->lcu, b1 * 4, "cp local cu_seqlens");
        x->d_hcu = cpx_upload(x, x->hcu, b1 * 4, "cp half cu_seqlens");
        x->d_lused = cpx_upload(x, x->lused, bn * 4, "cp local seqused");
        x->d_h0 = cpx_upload(x, x->h0, bn * 4, "cp local seqused");
        x->d_h1 = cpx_upload(x, x->h1, bn * 4, "cp local seqused");
        NOMEM_IF(x->d_cu && x->d_used && x->d_lcu && x->d_hcu && x->d_lused && x->d_h0 && x->d_h1);
    }
    if (x->T > 0 && !(a->q && a->k && a->v && a->out && a->lse))
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp %s: q, k, v, out and lse are required",
                   bwd ? "backward" : "forward");
    if (x->T > 0 && bwd && !(a->dout && a->dq && a->dk && a->dv))
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp backward: dout, dq, dk and dv are required");
out:
    return st;
}

fa4cp_attn_args cpx_base_args(const exec *x)
{
    fa4cp_attn_args b = FA4CP_ATTN_ARGS_INIT;
    b.dtype = x->dt;
    b.batch = x->B;
    b.heads = x->H;
    b.kv_heads = x->Hk;
    b.head_dim = x->D;
    b.head_dim_v = x->Dv;
    b.softmax_scale = x->cfg->softmax_scale;
    b.deterministic = x->cfg->deterministic;
    b.stream = x->stream;
    return b;
}

/* the longest padded sequence behind one of the executor's cu arrays */
static int max_of(const exec *x, const int32_t *cu)
{
    return cu == x->d_cu ? x->mx_g : cu == x->d_lcu ? x->mx_l : x->mx_h;
}

fa4cp_status cpx_attn(const exec *x, const fa4cp_attn_args *a0, int bwd)
{
    /* known bounds, so that the cuda backend need not read cu_seqlens back */
    fa4cp_attn_args a[1] = {*a0};
    a->max_seqlen_q = max_of(x, a->cu_seqlens_q);
    a->max_seqlen_k = max_of(x, a->cu_seqlens_k);
    fa4cp_status st = bwd ? fa4cp_attn_bwd(x->cfg->backend, a) : fa4cp_attn_fwd(x->cfg->backend, a);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %s rank %d: attention %s", fa4cp_cp_comm_name(x->cfg->comm),
                                   x->r, bwd ? "backward" : "forward");
    return st;
}

fa4cp_status cpx_wait_on(exec *x, fa4cp_comm_req **req, void *stream)
{
    fa4cp_comm_req *q = *req;
    *req = NULL;
    fa4cp_status st = fa4cp_comm_wait(x->comm, q, stream);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %s rank %d", fa4cp_cp_comm_name(x->cfg->comm), x->r);
    return st;
}

/* The side stream takes over after the work queued so far (fork), and the
 * call stream waits for the side stream (join); no-ops without one. */
fa4cp_status cpx_fork_comm(exec *x)
{
    return x->cs != x->stream && x->ops->stream_wait ? x->ops->stream_wait(x->cs, x->stream) : FA4CP_OK;
}

fa4cp_status cpx_join_comm(exec *x)
{
    return x->cs != x->stream && x->ops->stream_wait ? x->ops->stream_wait(x->stream, x->cs) : FA4CP_OK;
}

/* a step event (timed calls only) */
fa4cp_status cpx_stamp(exec *x, int kind, int step, void *stream)
{
    fa4cp_cp *cp = x->cp;
    if (!x->timed || step >= FA4CP_CP_MAX_TIMED_STEPS)
        return FA4CP_OK;
    fa4cp_status st = FA4CP_OK;
    if (!cp->ev[kind][step])
        FA4CP_TRY(x->ops->event_create(&cp->ev[kind][step]));
    FA4CP_TRY(x->ops->event_record(cp->ev[kind][step], stream));
out:
    return st;
}

/* remember how many steps the timed call had and which exchanged data */
void cpx_note_step(exec *x, int step, int comm)
{
    if (!x->timed || step >= FA4CP_CP_MAX_TIMED_STEPS)
        return;
    x->cp->comm_step[step] = (char)comm;
    x->cp->timed_steps = step + 1;
}

void cpx_note_bytes(exec *x, int step, size_t bytes)
{
    if (!x->timed || step < 0 || step >= FA4CP_CP_MAX_TIMED_STEPS)
        return;
    x->cp->comm_bytes[step] = bytes;
}

fa4cp_status cpx_wait_req(exec *x, fa4cp_comm_req **req)
{
    fa4cp_comm_req *q = *req;
    *req = NULL;
    fa4cp_status st = fa4cp_comm_wait(x->comm, q, x->stream);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %s rank %d", fa4cp_cp_comm_name(x->cfg->comm), x->r);
    return st;
}

/* ------------------------------------------------------------------ the program */

const fa4cp_cp_instr *cpx_peek(exec *x)
{
    while (x->pc < x->nprog && x->prog[x->pc].optional && !x->have_dlse)
        x->pc++;
    return x->pc < x->nprog ? &x->prog[x->pc] : NULL;
}

static const char *op_text(char *buf, size_t n, fa4cp_cp_op op, unsigned tensors, int step)
{
    snprintf(buf, n, "%s of tensors 0x%x (step %d)", fa4cp_cp_op_name(op), tensors, step);
    return buf;
}

const fa4cp_cp_instr *cpx_next(exec *x, fa4cp_cp_op op, unsigned tensors)
{
    char a[80], b[80];
    const fa4cp_cp_instr *in = cpx_peek(x);
    if (!in || in->op != op || in->tensors != tensors) {
        fa4cp_set_error(FA4CP_ERR_INTERNAL,
                        "cp %s rank %d: the executor runs %s where the plan says %s (operation %d "
                        "of %d)",
                        fa4cp_cp_comm_name(x->cfg->comm), x->r, op_text(a, sizeof a, op, tensors, -1),
                        in ? op_text(b, sizeof b, in->op, in->tensors, in->step) : "nothing more",
                        x->pc, x->nprog);
        return NULL;
    }
    x->pc++;
    fa4cp_cp *cp = x->cp;
    if (cp->ntrace < cp->trace_cap)
        cp->trace[cp->ntrace++] = *in;
    fa4cp_cp_progress *p = cp->progress;
    if (p) { /* a watchdog may read it from another thread */
        __atomic_store_n(&p->op, (int)in->op, __ATOMIC_RELAXED);
        __atomic_store_n(&p->step, in->step, __ATOMIC_RELAXED);
        __atomic_store_n(&p->peer, in->op == FA4CP_CP_OP_SENDRECV ? in->recv_from : -1, __ATOMIC_RELAXED);
        __atomic_store_n(&p->ops, x->pc, __ATOMIC_RELEASE);
    }
    return in;
}

