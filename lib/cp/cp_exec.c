/* cp_exec.c - the CP executor: runs a rank's plan over a transport and an
 * attention backend, forward and backward.
 *
 * Transport- and backend-neutral: tensors are touched only through the
 * cp_ops table (allocation, reorders, LSE merge, accumulation, conversion)
 * and the raw attention call; row maps and per-call cu_seqlens/seqused are
 * computed on the host with the fa4cp_thd_* math and uploaded through the
 * ops.  The host ops run everything on the cpu; a device ops table runs the
 * same code on a GPU.
 *
 * Rank-local layout: per sequence i, local rows [lcu_i, lcu_i + 2 C_i) hold
 * chunk r (C_i rows) then chunk 2cp-1-r, where lcu = cu/cp and C_i =
 * padded_i/(2cp).  A "half" h is the tensor of chunk h of every sequence,
 * with cu = cu/(2cp) ("hcu").  Real rows of a local sequence and of each
 * half are a prefix, counted exactly by fa4cp_thd_local_seqused.
 *
 * Accumulators (running out of the LSE merge, dq and dk/dv sums, the dk/dv
 * that travel the ring) are fp32, or fp64 for fp64 storage.
 */
#include "cp_internal.h"

#include <string.h>

typedef struct exec {
    fa4cp_cp *cp;
    const fa4cp_cp_config *cfg;
    const cp_ops *ops;
    fa4cp_comm *comm;
    const fa4cp_cp_plan *plan;
    void *stream;
    void *cs; /* communication stream: the cp handle's side stream, or `stream` */
    int timed; /* record the step events */
    int n, r, B;
    int mx_g, mx_l, mx_h; /* longest padded global, local and half sequence */
    int H, Hk, D;
    fa4cp_dtype dt, ad; /* storage, accumulator (= lse) */
    size_t es, as;      /* their sizes */
    size_t rq, rk;      /* elements of a q row, a k row */
    int64_t T, Th, G;   /* local rows, half rows, global rows */
    /* host */
    int32_t *cu, *used;        /* global padded offsets [B+1], real lengths [B] */
    int32_t *lcu, *hcu;        /* local and half offsets [B+1] */
    int32_t *lused, *h0, *h1;  /* [n][B]: local real rows of each rank, whole / chunk / chunk */
    /* ops memory copies for the attention calls */
    int32_t *d_cu, *d_used, *d_lcu, *d_hcu, *d_lused, *d_h0, *d_h1;
    void **buf; /* ops memory to free at the end */
    int nbuf, capbuf;
    void **host; /* host arrays to free at the end */
    int nhost, caphost;
} exec;

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

static void *xalloc(exec *x, size_t bytes, const char *what)
{
    void *p = x->ops->alloc(bytes ? bytes : 1, what, x->stream);
    if (p && !keep(&x->buf, &x->nbuf, &x->capbuf, p)) {
        x->ops->free(p, x->stream);
        return NULL;
    }
    return p;
}

static void *hmalloc(exec *x, size_t bytes, const char *what)
{
    void *p = fa4cp_malloc(bytes ? bytes : 1, what);
    if (p && !keep(&x->host, &x->nhost, &x->caphost, p)) {
        fa4cp_free(p);
        return NULL;
    }
    return p;
}

static void release(exec *x)
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
static void *upload(exec *x, const void *host, size_t bytes, const char *what)
{
    void *d = xalloc(x, bytes, what);
    if (d && x->ops->upload(d, host, bytes, x->stream) != FA4CP_OK)
        return NULL;
    return d;
}

#define NOMEM_IF(p)                                                                                \
    do {                                                                                           \
        if (!(p)) {                                                                                \
            st = FA4CP_ERR_NOMEM;                                                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------ row maps (built on the host) */

typedef struct map {
    cp_pair *p; /* ops memory */
    int64_t n;
} map;

/* Rows of local sequences (seq < 0: all) of rank `rank`.
 * half < 0: whole local sequence, pairs (local, local).
 * half 0/1: that chunk; to_half: (half row, local row), else (local row, half row).
 * real: only real rows (a prefix), else every physical row. */
static fa4cp_status map_rows(exec *x, int rank, int seq, int half, int real, int to_half, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = hmalloc(x, (size_t)(x->T + 1) * sizeof *h, "cp row map");
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
    m->n = n;
    m->p = upload(x, h, (size_t)(n + 1) * sizeof *h, "cp row map");
    NOMEM_IF(m->p);
out:
    return st;
}

/* identity over rows [0, rows) */
static fa4cp_status map_all(exec *x, int64_t rows, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = hmalloc(x, (size_t)(rows + 1) * sizeof *h, "cp row map");
    NOMEM_IF(h);
    for (int64_t i = 0; i < rows; i++)
        h[i].dst = h[i].src = i;
    m->n = rows;
    m->p = upload(x, h, (size_t)(rows + 1) * sizeof *h, "cp row map");
    NOMEM_IF(m->p);
out:
    return st;
}

/* Rank order <-> sequence order: unit (s*stride + l) of rank s's local row l
 * and global row g.  to_seq: (g, s*stride + l), else (s*stride + l, g).
 * with_second: add a second set shifted by (G, T) (dk then dv). */
static fa4cp_status map_ranks(exec *x, int64_t stride, int to_seq, int with_second, map *m)
{
    fa4cp_status st = FA4CP_OK;
    int64_t n = x->G * (with_second ? 2 : 1);
    cp_pair *h = hmalloc(x, (size_t)(n + 1) * sizeof *h, "cp rank-order map");
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
    m->n = k;
    m->p = upload(x, h, (size_t)(k + 1) * sizeof *h, "cp rank-order map");
    NOMEM_IF(m->p);
out:
    return st;
}

/* a2a: local unit (l*n + p) of row l, head group p <-> send/recv unit (p*T + l).
 * to_blocks: (p*T + l, l*n + p), else the reverse.  real: only real rows of this rank. */
static fa4cp_status map_heads(exec *x, int to_blocks, int real, map *m)
{
    fa4cp_status st = FA4CP_OK;
    cp_pair *h = hmalloc(x, (size_t)(x->T * x->n + 1) * sizeof *h, "cp head-group map");
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
    m->n = k;
    m->p = upload(x, h, (size_t)(k + 1) * sizeof *h, "cp head-group map");
    NOMEM_IF(m->p);
out:
    return st;
}

/* ------------------------------------------------------------------ setup */

static fa4cp_status setup(exec *x, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    const fa4cp_cp_config *c = &cp->cfg;
    memset(x, 0, sizeof *x);
    x->cp = cp;
    x->cfg = c;
    x->ops = cp->ops;
    x->comm = cp->comm;
    x->plan = cp->plan;
    x->n = fa4cp_comm_size(cp->comm);
    x->r = fa4cp_comm_rank(cp->comm);
    x->H = c->heads;
    x->Hk = c->kv_heads;
    x->D = c->head_dim;
    x->dt = c->dtype;
    x->ad = fa4cp_lse_dtype(c->dtype);
    x->es = fa4cp_dtype_size(x->dt);
    x->as = fa4cp_dtype_size(x->ad);
    x->rq = (size_t)x->H * (size_t)x->D;
    x->rk = (size_t)x->Hk * (size_t)x->D;
    if (!a)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp %s: the arguments are NULL", bwd ? "backward" : "forward");
    if (a->struct_size != sizeof(fa4cp_cp_args))
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "fa4cp_cp_args.struct_size is %zu, expected %zu: initialise it with "
                   "FA4CP_CP_ARGS_INIT and rebuild against this fa4cp.h",
                   a->struct_size, sizeof(fa4cp_cp_args));
    x->stream = x->cs = a->stream;
    x->B = a->batch;
    if (x->B < 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "batch is %d: it must be >= 0", x->B);
    FA4CP_TRY(fa4cp_cp_validate(c, x->n, x->B, a->cu_seqlens, a->seqlen));
    x->cu = hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp cu_seqlens");
    x->used = hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp seqused");
    x->lcu = hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp local cu_seqlens");
    x->hcu = hmalloc(x, (size_t)(x->B + 1) * sizeof(int32_t), "cp half cu_seqlens");
    x->lused = hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
    x->h0 = hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
    x->h1 = hmalloc(x, ((size_t)x->n * x->B + 1) * sizeof(int32_t), "cp local seqused");
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
        x->d_cu = upload(x, x->cu, b1 * 4, "cp cu_seqlens");
        x->d_used = upload(x, x->used, b1 * 4, "cp seqused");
        x->d_lcu = upload(x, x->lcu, b1 * 4, "cp local cu_seqlens");
        x->d_hcu = upload(x, x->hcu, b1 * 4, "cp half cu_seqlens");
        x->d_lused = upload(x, x->lused, bn * 4, "cp local seqused");
        x->d_h0 = upload(x, x->h0, bn * 4, "cp local seqused");
        x->d_h1 = upload(x, x->h1, bn * 4, "cp local seqused");
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

static fa4cp_attn_args base_args(const exec *x)
{
    fa4cp_attn_args b = FA4CP_ATTN_ARGS_INIT;
    b.dtype = x->dt;
    b.batch = x->B;
    b.heads = x->H;
    b.kv_heads = x->Hk;
    b.head_dim = x->D;
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

static fa4cp_status attn(const exec *x, const fa4cp_attn_args *a0, int bwd)
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

static fa4cp_status wait_on(exec *x, fa4cp_comm_req **req, void *stream)
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
static fa4cp_status fork_comm(exec *x)
{
    return x->cs != x->stream && x->ops->stream_wait ? x->ops->stream_wait(x->cs, x->stream) : FA4CP_OK;
}

static fa4cp_status join_comm(exec *x)
{
    return x->cs != x->stream && x->ops->stream_wait ? x->ops->stream_wait(x->stream, x->cs) : FA4CP_OK;
}

/* a step event (timed calls only) */
static fa4cp_status stamp(exec *x, int kind, int step, void *stream)
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
static void note_step(exec *x, int step, int comm)
{
    if (!x->timed || step >= FA4CP_CP_MAX_TIMED_STEPS)
        return;
    x->cp->comm_step[step] = (char)comm;
    x->cp->timed_steps = step + 1;
}

static fa4cp_status wait_req(exec *x, fa4cp_comm_req **req)
{
    fa4cp_comm_req *q = *req;
    *req = NULL;
    fa4cp_status st = fa4cp_comm_wait(x->comm, q, x->stream);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %s rank %d", fa4cp_cp_comm_name(x->cfg->comm), x->r);
    return st;
}

#define U8(p) ((unsigned char *)(p))

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

static fa4cp_status p2p_fwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es; /* bytes of K (and of V) */
    void *kv[2] = {xalloc(x, 2 * kvb, "p2p KV buffer"), xalloc(x, 2 * kvb, "p2p KV buffer")};
    void *acc = xalloc(x, (size_t)x->T * x->rq * x->as, "p2p running out");
    void *alse = xalloc(x, (size_t)x->H * x->T * x->as, "p2p running lse");
    void *pout = xalloc(x, (size_t)x->T * x->rq * x->es, "p2p partial out");
    void *plse = xalloc(x, (size_t)x->H * x->T * x->as, "p2p partial lse");
    void *qh = xalloc(x, (size_t)x->Th * x->rq * x->es, "p2p Q second half");
    void *kvh = xalloc(x, 2 * (size_t)x->Th * x->rk * x->es, "p2p KV first half");
    NOMEM_IF(kv[0] && kv[1] && acc && alse && pout && plse && qh && kvh);
    map real, h1_to_half, h1_back, h0_to_half;
    FA4CP_TRY(map_rows(x, x->r, -1, -1, 1, 0, &real));
    FA4CP_TRY(map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(map_rows(x, x->r, -1, 1, 1, 0, &h1_back));
    FA4CP_TRY(map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half)); /* same layout on every rank */

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
            FA4CP_TRY(fork_comm(x));
            FA4CP_TRY(stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, 2, x->cs, &req));
        }
        note_step(x, s, sp->send_to >= 0);
        FA4CP_TRY(stamp(x, CP_EV_COMP0, s, x->stream));
        fa4cp_attn_args c = base_args(x);
        int qhalf = sp->q_half == 1;
        FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, cur, kvh, &h0_to_half, &c));
        c.out = pout;
        c.lse = plse;
        FA4CP_TRY(attn(x, &c, 0));
        const map *m = qhalf ? &h1_back : &real;
        FA4CP_TRY(o->merge(x->ad, acc, alse, x->T, x->dt, pout, plse, c.total_q, m->p, m->n, x->H,
                           x->D, x->stream));
        FA4CP_TRY(stamp(x, CP_EV_COMP1, s, x->stream));
        if (req) { /* the next step reads the block that arrived */
            FA4CP_TRY(wait_on(x, &req, x->cs));
            FA4CP_TRY(stamp(x, CP_EV_COMM1, s, x->cs));
            FA4CP_TRY(join_comm(x));
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

static fa4cp_status p2p_bwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    const fa4cp_cp_plan *p = x->plan;
    fa4cp_comm_req *req = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es;
    const size_t dkvb = 2 * (size_t)x->T * x->rk * x->as; /* dK then dV, accumulator type */
    const size_t qhb = (size_t)x->Th * x->rq * x->es, lhb = (size_t)x->H * x->Th * x->as;
    void *kv[2] = {xalloc(x, 2 * kvb, "p2p KV buffer"), xalloc(x, 2 * kvb, "p2p KV buffer")};
    void *dkv_in = xalloc(x, dkvb, "p2p incoming dK/dV");
    void *dkv_out = xalloc(x, dkvb, "p2p outgoing dK/dV");
    void *dq = xalloc(x, (size_t)x->T * x->rq * x->as, "p2p dQ accumulator");
    void *pdq = xalloc(x, (size_t)x->T * x->rq * x->es, "p2p partial dQ");
    void *pdkv = xalloc(x, 2 * kvb, "p2p partial dK/dV");
    void *qh = xalloc(x, qhb, "p2p Q second half"), *oh = xalloc(x, qhb, "p2p out second half");
    void *doh = xalloc(x, qhb, "p2p dout second half");
    void *lh = xalloc(x, lhb, "p2p lse second half"), *dlh = xalloc(x, lhb, "p2p dlse second half");
    void *kvh = xalloc(x, 2 * (size_t)x->Th * x->rk * x->es, "p2p KV first half");
    NOMEM_IF(kv[0] && kv[1] && dkv_in && dkv_out && dq && pdq && pdkv && qh && oh && doh && lh && dlh && kvh);
    map all, h1_to_half, h1_back_all, h0_to_half, h0_back_all;
    FA4CP_TRY(map_all(x, x->T, &all));
    FA4CP_TRY(map_rows(x, x->r, -1, 1, 0, 1, &h1_to_half));
    FA4CP_TRY(map_rows(x, x->r, -1, 1, 0, 0, &h1_back_all));
    FA4CP_TRY(map_rows(x, x->r, -1, 0, 0, 1, &h0_to_half));
    FA4CP_TRY(map_rows(x, x->r, -1, 0, 0, 0, &h0_back_all));

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
            FA4CP_TRY(fork_comm(x));
            FA4CP_TRY(stamp(x, CP_EV_COMM0, s, x->cs));
            FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, nops, x->cs, &req));
        }
        note_step(x, s, nops > 0);
        FA4CP_TRY(stamp(x, CP_EV_COMP0, s, x->stream));

        fa4cp_attn_args c = base_args(x);
        int qhalf = sp->q_half == 1;
        FA4CP_TRY(p2p_step_args(x, sp, a->q, qh, cur, kvh, &h0_to_half, &c));
        c.out = qhalf ? oh : a->out;
        c.dout = qhalf ? doh : a->dout;
        c.lse = qhalf ? lh : a->lse;
        c.dlse = a->dlse ? (qhalf ? dlh : a->dlse) : NULL;
        c.dq = pdq;
        c.dk = pdkv;
        c.dv = U8(pdkv) + (size_t)c.total_k * x->rk * x->es;
        FA4CP_TRY(attn(x, &c, 1));
        const map *mq = qhalf ? &h1_back_all : &all;
        FA4CP_TRY(o->add(x->ad, dq, x->dt, pdq, mq->p, mq->n, x->rq, x->stream));
        FA4CP_TRY(stamp(x, CP_EV_COMP1, s, x->stream));
        if (req) { /* dkv_in has arrived, dkv_out has left */
            FA4CP_TRY(wait_on(x, &req, x->cs));
            FA4CP_TRY(stamp(x, CP_EV_COMM1, s, x->cs));
            FA4CP_TRY(join_comm(x));
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
        FA4CP_TRY(fork_comm(x));
        FA4CP_TRY(fa4cp_comm_sendrecv(x->comm, ops, 2, x->cs, &req));
        FA4CP_TRY(wait_on(x, &req, x->cs));
        FA4CP_TRY(join_comm(x));
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

/* ------------------------------------------------------------------ all_gather */

/* K and V of every rank, in global sequence order: kg, vg [G, Hk, D] */
static fa4cp_status gather_kv(exec *x, const fa4cp_cp_args *a, void **kg, void **vg)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *rk = NULL, *rv = NULL;
    const size_t kvb = (size_t)x->T * x->rk * x->es;
    void *rawk = xalloc(x, kvb * (size_t)x->n, "all_gather K (rank order)");
    void *rawv = xalloc(x, kvb * (size_t)x->n, "all_gather V (rank order)");
    *kg = xalloc(x, (size_t)x->G * x->rk * x->es, "all_gather K");
    *vg = xalloc(x, (size_t)x->G * x->rk * x->es, "all_gather V");
    NOMEM_IF(rawk && rawv && *kg && *vg);
    map m;
    FA4CP_TRY(map_ranks(x, x->T, 1, 0, &m));
    /* on the side stream; the reorder of K (call stream) overlaps the gather of V */
    FA4CP_TRY(fork_comm(x));
    FA4CP_TRY(fa4cp_comm_all_gather(x->comm, a->k, rawk, kvb, x->cs, &rk));
    FA4CP_TRY(fa4cp_comm_all_gather(x->comm, a->v, rawv, kvb, x->cs, &rv));
    FA4CP_TRY(wait_on(x, &rk, x->cs));
    FA4CP_TRY(join_comm(x));
    FA4CP_TRY(x->ops->gather(*kg, rawk, m.p, m.n, x->rk * x->es, 1, 0, 0, x->stream));
    FA4CP_TRY(wait_on(x, &rv, x->cs));
    FA4CP_TRY(join_comm(x));
    FA4CP_TRY(x->ops->gather(*vg, rawv, m.p, m.n, x->rk * x->es, 1, 0, 0, x->stream));
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
    int32_t *uq = hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused"), *uk = hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused");
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
        calls[0].used_q = upload(x, uq, (size_t)(B + 1) * 4, "all_gather seqused");
        calls[0].used_k = upload(x, uk, (size_t)(B + 1) * 4, "all_gather seqused");
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
        int32_t *q1 = hmalloc(x, (size_t)(B + 1) * 4, "all_gather seqused");
        NOMEM_IF(q1);
        memset(q1, 0, (size_t)(B + 1) * 4);
        q1[i] = sq[i];
        k->used_q = upload(x, q1, (size_t)(B + 1) * 4, "all_gather seqused");
        k->used_k = upload(x, uk, (size_t)(B + 1) * 4, "all_gather seqused");
        NOMEM_IF(k->used_q && k->used_k);
    }
out:
    return st;
}

static fa4cp_status ag_fwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    void *kg = NULL, *vg = NULL;
    ag_call *calls = hmalloc(x, (size_t)(x->B + 1) * sizeof *calls, "all_gather calls");
    void *qh = xalloc(x, (size_t)x->Th * x->rq * x->es, "all_gather Q chunk");
    void *oh = xalloc(x, (size_t)x->Th * x->rq * x->es, "all_gather out chunk");
    void *lh = xalloc(x, (size_t)x->H * x->Th * x->as, "all_gather lse chunk");
    NOMEM_IF(calls && qh && oh && lh);
    FA4CP_TRY(gather_kv(x, a, &kg, &vg));
    for (int s = 0; s < x->plan->nfwd; s++) {
        const fa4cp_cp_step *sp = &x->plan->fwd[s];
        map to_half, back;
        int ncalls = 0;
        FA4CP_TRY(map_rows(x, x->r, -1, sp->q_half, 0, 1, &to_half));
        FA4CP_TRY(map_rows(x, x->r, -1, sp->q_half, 1, 0, &back));
        FA4CP_TRY(o->gather(qh, a->q, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(ag_calls(x, sp, calls, &ncalls));
        for (int k = 0; k < ncalls; k++) {
            fa4cp_attn_args c = base_args(x);
            c.q = qh;
            c.k = kg;
            c.v = vg;
            c.cu_seqlens_q = x->d_hcu;
            c.seqused_q = calls[k].used_q;
            c.total_q = x->Th;
            c.cu_seqlens_k = x->d_cu;
            c.seqused_k = calls[k].used_k;
            c.total_k = x->G;
            c.causal = sp->causal;
            c.window_left = calls[k].wl;
            c.window_right = calls[k].wr;
            c.out = oh;
            c.lse = lh;
            FA4CP_TRY(attn(x, &c, 0));
        }
        /* real rows into place; padding rows of out and lse stay untouched */
        FA4CP_TRY(o->gather(a->out, oh, back.p, back.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(a->lse, lh, back.p, back.n, x->as, x->H, x->T, x->Th, x->stream));
    }
out:
    return st;
}

static fa4cp_status ag_bwd(exec *x, const fa4cp_cp_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    fa4cp_comm_req *req = NULL;
    void *kg = NULL, *vg = NULL;
    const size_t qhb = (size_t)x->Th * x->rq * x->es, lhb = (size_t)x->H * x->Th * x->as;
    const size_t gk = (size_t)x->G * x->rk; /* elements of K in sequence order */
    ag_call *calls = hmalloc(x, (size_t)(x->B + 1) * sizeof *calls, "all_gather calls");
    void *qh = xalloc(x, qhb, "all_gather Q chunk"), *oh = xalloc(x, qhb, "all_gather out chunk");
    void *doh = xalloc(x, qhb, "all_gather dout chunk"), *dqh = xalloc(x, qhb, "all_gather dQ chunk");
    void *lh = xalloc(x, lhb, "all_gather lse chunk"), *dlh = xalloc(x, lhb, "all_gather dlse chunk");
    void *pdk = xalloc(x, gk * x->es, "all_gather partial dK"), *pdv = xalloc(x, gk * x->es, "all_gather partial dV");
    /* the dK/dV sums, kept in rank order [rank][dK rows | dV rows] so that
     * they go to the reduce-scatter as they are */
    void *send = xalloc(x, 2 * gk * x->as, "all_gather dK/dV sums (rank order)");
    void *recv = xalloc(x, 2 * (size_t)x->T * x->rk * x->as, "all_gather dK/dV (this rank)");
    NOMEM_IF(calls && qh && oh && doh && dqh && lh && dlh && pdk && pdv && send && recv);
    map tall, to_ranks;
    FA4CP_TRY(map_ranks(x, 2 * x->T, 0, 0, &to_ranks)); /* (rank-order row, global row) */
    FA4CP_TRY(map_all(x, x->T, &tall));
    FA4CP_TRY(gather_kv(x, a, &kg, &vg));
    FA4CP_TRY(o->zero(send, 2 * gk * x->as, x->stream));
    FA4CP_TRY(o->zero(a->dq, (size_t)x->T * x->rq * x->es, x->stream));
    for (int s = 0; s < x->plan->nbwd; s++) {
        const fa4cp_cp_step *sp = &x->plan->bwd[s];
        map to_half;
        int ncalls = 0;
        FA4CP_TRY(map_rows(x, x->r, -1, sp->q_half, 0, 1, &to_half));
        FA4CP_TRY(o->gather(qh, a->q, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(oh, a->out, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(doh, a->dout, to_half.p, to_half.n, x->rq * x->es, 1, 0, 0, x->stream));
        FA4CP_TRY(o->gather(lh, a->lse, to_half.p, to_half.n, x->as, x->H, x->Th, x->T, x->stream));
        if (a->dlse)
            FA4CP_TRY(o->gather(dlh, a->dlse, to_half.p, to_half.n, x->as, x->H, x->Th, x->T, x->stream));
        FA4CP_TRY(ag_calls(x, sp, calls, &ncalls));
        for (int k = 0; k < ncalls; k++) {
            fa4cp_attn_args c = base_args(x);
            c.q = qh;
            c.k = kg;
            c.v = vg;
            c.out = oh;
            c.dout = doh;
            c.lse = lh;
            c.dlse = a->dlse ? dlh : NULL;
            c.cu_seqlens_q = x->d_hcu;
            c.seqused_q = calls[k].used_q;
            c.total_q = x->Th;
            c.cu_seqlens_k = x->d_cu;
            c.seqused_k = calls[k].used_k;
            c.total_k = x->G;
            c.causal = sp->causal;
            c.window_left = calls[k].wl;
            c.window_right = calls[k].wr;
            c.dq = dqh;
            c.dk = pdk;
            c.dv = pdv;
            FA4CP_TRY(attn(x, &c, 1));
            FA4CP_TRY(o->add(x->ad, send, x->dt, pdk, to_ranks.p, to_ranks.n, x->rk, x->stream));
            FA4CP_TRY(o->add(x->ad, U8(send) + (size_t)x->T * x->rk * x->as, x->dt, pdv, to_ranks.p,
                             to_ranks.n, x->rk, x->stream));
            /* dQ rows of the call's sequences (padding rows are zeros) */
            map back;
            FA4CP_TRY(map_rows(x, x->r, calls[k].seq, sp->q_half, 0, 0, &back));
            FA4CP_TRY(o->gather(a->dq, dqh, back.p, back.n, x->rq * x->es, 1, 0, 0, x->stream));
        }
    }
    /* sum the blocks over the ranks: this rank's dK and dV */
    FA4CP_TRY(fa4cp_comm_reduce_scatter(x->comm, send, recv, 2 * (size_t)x->T * x->rk, x->ad, x->stream, &req));
    FA4CP_TRY(wait_req(x, &req));
    FA4CP_TRY(o->convert(x->dt, a->dk, x->ad, recv, tall.p, tall.n, x->rk, x->stream));
    FA4CP_TRY(o->convert(x->dt, a->dv, x->ad, U8(recv) + (size_t)x->T * x->rk * x->as, tall.p, tall.n,
                         x->rk, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

/* ------------------------------------------------------------------ a2a */

/* Several all-to-alls in a pipeline: every send block is reordered first
 * (call stream), then the exchanges run one after another on the side
 * stream, and the reorder of exchange i's result (call stream) waits only
 * for exchange i, so it runs while exchange i+1 travels.  For each i:
 * src[i] [.. units] -(out_map)-> send -all_to_all-> recv -(in_map)-> dst[i]
 * (*dst[i] allocated here, [alloc_rows[i] units], when alloc_rows[i] >= 0). */
typedef struct a2a_item {
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
        send[i] = xalloc(x, (size_t)x->T * x->n * it[i].unit, "a2a send blocks");
        recv[i] = xalloc(x, (size_t)x->T * x->n * it[i].unit, "a2a receive blocks");
        NOMEM_IF(send[i] && recv[i]);
        if (it[i].alloc_rows >= 0) {
            *it[i].dst = xalloc(x, (size_t)it[i].alloc_rows * it[i].unit, "a2a head-sharded tensor");
            NOMEM_IF(*it[i].dst);
        }
        FA4CP_TRY(x->ops->gather(send[i], it[i].src, it[i].out_map->p, it[i].out_map->n, it[i].unit,
                                 1, 0, 0, x->stream));
    }
    FA4CP_TRY(fork_comm(x));
    for (int i = 0; i < m; i++) {
        FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, send[i], recv[i], (size_t)x->T * it[i].unit, x->cs, &req));
        FA4CP_TRY(wait_on(x, &req, x->cs));
        FA4CP_TRY(join_comm(x)); /* the call stream waits for exchanges 0..i only */
        FA4CP_TRY(x->ops->gather(*it[i].dst, recv[i], it[i].in_map->p, it[i].in_map->n, it[i].unit,
                                 1, 0, 0, x->stream));
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->cs);
    return st;
}

/* [G, heads/n, D] of head group r -> local [T, heads, D], the rows of `back` */
static fa4cp_status from_heads(exec *x, const void *src, int heads, void *dst, const map *to_ranks,
                               const map *back)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *req = NULL;
    size_t unit = (size_t)(heads / x->n) * (size_t)x->D * x->es;
    void *send = xalloc(x, (size_t)x->T * x->n * unit, "a2a send blocks");
    void *recv = xalloc(x, (size_t)x->T * x->n * unit, "a2a receive blocks");
    NOMEM_IF(send && recv);
    FA4CP_TRY(x->ops->gather(send, src, to_ranks->p, to_ranks->n, unit, 1, 0, 0, x->stream));
    FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, send, recv, (size_t)x->T * unit, x->stream, &req));
    FA4CP_TRY(wait_req(x, &req));
    FA4CP_TRY(x->ops->gather(dst, recv, back->p, back->n, unit, 1, 0, 0, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

/* lse [H, T] (local) <-> [H/n, G] of head group r */
static fa4cp_status lse_to_heads(exec *x, const void *lse, void **dst, const map *seq_of_rank)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm_req *req = NULL;
    const int hq = x->H / x->n;
    void *recv = xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
    *dst = xalloc(x, (size_t)hq * x->G * x->as, "a2a head-sharded lse");
    NOMEM_IF(recv && *dst);
    /* [H, T] is already [n][H/n][T]: block p holds the heads of group p */
    FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, lse, recv, (size_t)hq * x->T * x->as, x->stream, &req));
    FA4CP_TRY(wait_req(x, &req));
    FA4CP_TRY(x->ops->gather(*dst, recv, seq_of_rank->p, seq_of_rank->n, x->as, hq, x->G, x->T, x->stream));
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

static fa4cp_status a2a_run(exec *x, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    const cp_ops *o = x->ops;
    fa4cp_comm_req *req = NULL;
    const int hq = x->H / x->n, hkq = x->Hk / x->n;
    void *q = NULL, *k = NULL, *v = NULL, *out = NULL, *dout = NULL, *lse = NULL, *dlse = NULL;
    map blocks, blocks_back_real, blocks_back_all, to_seq, to_ranks, lse_to_ranks, lse_to_seq, real;
    FA4CP_TRY(map_heads(x, 1, 0, &blocks));
    FA4CP_TRY(map_heads(x, 0, 1, &blocks_back_real));
    FA4CP_TRY(map_heads(x, 0, 0, &blocks_back_all));
    FA4CP_TRY(map_ranks(x, x->T, 1, 0, &to_seq));
    FA4CP_TRY(map_ranks(x, x->T, 0, 0, &to_ranks));
    FA4CP_TRY(map_ranks(x, (int64_t)hq * x->T, 0, 0, &lse_to_ranks));
    FA4CP_TRY(map_ranks(x, (int64_t)hq * x->T, 1, 0, &lse_to_seq));
    FA4CP_TRY(map_rows(x, x->r, -1, -1, 1, 0, &real));

    {
        const size_t uq = (size_t)hq * x->D * x->es, uk = (size_t)hkq * x->D * x->es;
        a2a_item its[5] = {{a->q, uq, &blocks, &to_seq, &q, x->G},
                           {a->k, uk, &blocks, &to_seq, &k, x->G},
                           {a->v, uk, &blocks, &to_seq, &v, x->G},
                           {a->out, uq, &blocks, &to_seq, &out, x->G},
                           {a->dout, uq, &blocks, &to_seq, &dout, x->G}};
        FA4CP_TRY(a2a_pipeline(x, its, bwd ? 5 : 3));
    }
    fa4cp_attn_args c = base_args(x);
    c.heads = hq;
    c.kv_heads = hkq;
    c.q = q;
    c.k = k;
    c.v = v;
    c.cu_seqlens_q = c.cu_seqlens_k = x->d_cu;
    c.seqused_q = c.seqused_k = x->d_used;
    c.total_q = c.total_k = x->G;
    c.causal = x->cfg->causal;
    c.window_left = x->cfg->window_left;
    c.window_right = x->cfg->window_right;
    if (!bwd) {
        void *lsend = xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
        void *lrecv = xalloc(x, (size_t)x->H * x->T * x->as, "a2a lse blocks");
        out = xalloc(x, (size_t)x->G * hq * x->D * x->es, "a2a head-sharded out");
        lse = xalloc(x, (size_t)hq * x->G * x->as, "a2a head-sharded lse");
        NOMEM_IF(lsend && lrecv && out && lse);
        c.out = out;
        c.lse = lse;
        FA4CP_TRY(attn(x, &c, 0));
        /* out back to sequence sharding; real rows only */
        FA4CP_TRY(from_heads(x, out, x->H, a->out, &to_ranks, &blocks_back_real));
        FA4CP_TRY(o->gather(lsend, lse, lse_to_ranks.p, lse_to_ranks.n, x->as, hq, x->T, x->G, x->stream));
        FA4CP_TRY(fa4cp_comm_all_to_all(x->comm, lsend, lrecv, (size_t)hq * x->T * x->as, x->stream, &req));
        FA4CP_TRY(wait_req(x, &req));
        FA4CP_TRY(o->gather(a->lse, lrecv, real.p, real.n, x->as, x->H, x->T, x->T, x->stream));
        goto out;
    }
    void *dq = xalloc(x, (size_t)x->G * hq * x->D * x->es, "a2a head-sharded dq");
    void *dk = xalloc(x, (size_t)x->G * hkq * x->D * x->es, "a2a head-sharded dk");
    void *dv = xalloc(x, (size_t)x->G * hkq * x->D * x->es, "a2a head-sharded dv");
    NOMEM_IF(dq && dk && dv);
    FA4CP_TRY(lse_to_heads(x, a->lse, &lse, &lse_to_seq));
    if (a->dlse)
        FA4CP_TRY(lse_to_heads(x, a->dlse, &dlse, &lse_to_seq));
    c.out = out;
    c.dout = dout;
    c.lse = lse;
    c.dlse = dlse;
    c.dq = dq;
    c.dk = dk;
    c.dv = dv;
    FA4CP_TRY(attn(x, &c, 1));
    /* every row: padding rows come back as the exact zeros of the call */
    {
        const size_t uq = (size_t)hq * x->D * x->es, uk = (size_t)hkq * x->D * x->es;
        void *dqo = a->dq, *dko = a->dk, *dvo = a->dv;
        a2a_item its[3] = {{dq, uq, &to_ranks, &blocks_back_all, &dqo, -1},
                           {dk, uk, &to_ranks, &blocks_back_all, &dko, -1},
                           {dv, uk, &to_ranks, &blocks_back_all, &dvo, -1}};
        FA4CP_TRY(a2a_pipeline(x, its, 3));
    }
out:
    if (req)
        fa4cp_comm_wait(x->comm, req, x->stream);
    return st;
}

/* ------------------------------------------------------------------ entry */

fa4cp_status fa4cp_cp_exec(fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    exec x;
    cp->timed_valid = 0;
    cp->timed_steps = 0;
    FA4CP_TRY(setup(&x, cp, a, bwd));
    if (x.timed) {
        for (int i = 0; i < 2; i++)
            if (!cp->ev_call[i])
                FA4CP_TRY(x.ops->event_create(&cp->ev_call[i]));
        FA4CP_TRY(x.ops->event_record(cp->ev_call[0], x.stream));
    }
    switch (cp->cfg.comm) {
    case FA4CP_CP_P2P: st = bwd ? p2p_bwd(&x, a) : p2p_fwd(&x, a); break;
    case FA4CP_CP_ALL_GATHER: st = bwd ? ag_bwd(&x, a) : ag_fwd(&x, a); break;
    case FA4CP_CP_A2A: st = a2a_run(&x, a, bwd); break;
    default: st = fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp: no executor for comm %d", (int)cp->cfg.comm);
    }
    if (x.cs != x.stream) { /* nothing on the side stream outlives the call */
        fa4cp_status sj = join_comm(&x);
        if (st == FA4CP_OK)
            st = sj;
    }
    if (st == FA4CP_OK && x.timed) {
        st = x.ops->event_record(cp->ev_call[1], x.stream);
        cp->timed_valid = st == FA4CP_OK;
        cp->timed_backward = bwd;
    }
    if (st == FA4CP_OK)
        st = x.ops->sync(x.stream);
out:
    release(&x);
    return st;
}
