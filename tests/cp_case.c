/* cp_case.c - one context-parallel test case (see cp_case.h). */
#include "cp_case.h"
#include "tap.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cp_tcase cp_case(int cp, fa4cp_cp_comm_type comm, fa4cp_backend backend)
{
    cp_tcase c;
    memset(&c, 0, sizeof c);
    fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
    c.cfg = init;
    c.cfg.backend = backend;
    c.cfg.comm = comm;
    c.cp = cp;
    return c;
}

void cp_describe(const cp_tcase *c, char *buf, size_t n)
{
    char mask[48];
    if (c->cfg.window_left >= 0 || c->cfg.window_right >= 0)
        snprintf(mask, sizeof mask, "%swindow (%d,%d)", c->cfg.causal ? "causal " : "", c->cfg.window_left,
                 c->cfg.window_right);
    else
        snprintf(mask, sizeof mask, "%s", c->cfg.causal ? "causal" : "no mask");
    int at = snprintf(buf, n, "cp=%d %s %s%s %s h=%d/%d d=%d dv=%d %s%s lens", c->cp,
                      fa4cp_cp_comm_name(c->cfg.comm), fa4cp_cp_format_name(c->cfg.format), c->pad ? "+pad" : "",
                      mask, c->cfg.heads, c->cfg.kv_heads, c->cfg.head_dim, cp_dv(c), fa4cp_dtype_name(c->cfg.dtype),
                      c->with_dlse ? " dlse" : "");
    for (int i = 0; i < c->B && at > 0 && (size_t)at < n; i++)
        at += snprintf(buf + at, n - (size_t)at, " %d/%d", c->pad ? c->used[i] : c->cu[i + 1] - c->cu[i],
                       c->cu[i + 1] - c->cu[i]);
}

int cp_is_real(const cp_tcase *c, int64_t row)
{
    int s = fa4cp_thd_seq_of_row(c->B, c->cu, row);
    return s >= 0 && row - c->cu[s] < (c->pad ? c->used[s] : c->cu[s + 1] - c->cu[s]);
}

void cp_fill_lengths(test_rng *rng, cp_tcase *c, int maxlen)
{
    const int m = 2 * c->cp;
    c->cu[0] = 0;
    if (c->cfg.format == FA4CP_CP_BSHD) {
        c->B = test_rng_int(rng, 1, 2);
        c->seqlen = m * test_rng_int(rng, (maxlen / 2) / m, maxlen / m);
        fa4cp_cp_bshd_cu(c->B, c->seqlen, c->cu);
        return;
    }
    c->B = test_rng_int(rng, 1, 3);
    for (int i = 0; i < c->B; i++) {
        int L = test_rng_int(rng, 0, 4) == 0 ? 0 : test_rng_int(rng, 1, maxlen);
        int P;
        if (c->pad) {
            P = L + test_rng_int(rng, 0, 7);
            P = (P + m - 1) / m * m;
            c->used[i] = L;
        } else {
            P = L / m * m; /* no padding: lengths are multiples of 2*cp */
        }
        c->cu[i + 1] = c->cu[i] + P;
    }
}

/* ------------------------------------------------------------------ tensors */

void cp_sizes(const cp_tcase *c, int64_t rows, size_t sz[CP_NBUF])
{
    const fa4cp_dtype dt = c->cfg.dtype;
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(fa4cp_lse_dtype(dt));
    const size_t R = (size_t)rows, nl = R * (size_t)c->cfg.heads * ls;
    const size_t nq = R * cp_rowq(c) * es, nk = R * cp_rowk(c) * es, no = R * cp_rowo(c) * es,
                 nv = R * cp_rowv(c) * es;
    const size_t s[CP_NBUF] = {nq, nk, nv, no, nl, no, nl, nq, nk, nv}; /* the order of cp_bufs */
    memcpy(sz, s, sizeof s);
}

static void **slot(cp_bufs *b, int i)
{
    void **p[CP_NBUF] = {&b->q, &b->k, &b->v, &b->dout, &b->dlse, &b->out, &b->lse, &b->dq, &b->dk, &b->dv};
    return p[i];
}

/* malloc the tensors first..last-1 of b (in the order of cp_bufs); the
 * results out and lse poisoned */
static void bufs_alloc(const cp_tcase *c, int64_t rows, cp_bufs *b, int first, int last)
{
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    size_t sz[CP_NBUF];
    cp_sizes(c, rows, sz);
    for (int i = first; i < last; i++) /* 16 bytes of slack: no 0-byte malloc */
        if (!(*slot(b, i) = malloc(sz[i] + 16)))
            bail("out of host memory (%zu bytes)", sz[i]);
    if (last > CP_NIN) {
        test_poison(dt, b->out, (size_t)rows * cp_rowo(c));
        test_poison(ld, b->lse, (size_t)rows * (size_t)c->cfg.heads);
    }
}

static void bufs_free(cp_bufs *b)
{
    for (int i = 0; i < CP_NBUF; i++) {
        free(*slot(b, i));
        *slot(b, i) = NULL;
    }
}

void cp_global_alloc(test_rng *rng, const cp_tcase *c, cp_global *g, int nsets)
{
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t G = (size_t)cp_G(c);
    memset(g, 0, sizeof *g);
    g->nsets = nsets;
    bufs_alloc(c, cp_G(c), &g->in, 0, CP_NIN);
    test_fill(rng, dt, g->in.q, G * cp_rowq(c), 1.0);
    test_fill(rng, dt, g->in.k, G * cp_rowk(c), 1.0);
    test_fill(rng, dt, g->in.v, G * cp_rowv(c), 1.0);
    test_fill(rng, dt, g->in.dout, G * cp_rowo(c), 1.0);
    test_fill(rng, ld, g->in.dlse, G * (size_t)c->cfg.heads, 0.5);
    for (int s = 0; s < nsets; s++)
        bufs_alloc(c, cp_G(c), &g->set[s], CP_NIN, CP_NBUF);
}

void cp_global_free(cp_global *g)
{
    bufs_free(&g->in);
    for (int s = 0; s < g->nsets; s++)
        bufs_free(&g->set[s]);
}

void cp_attn_args(const cp_tcase *c, const cp_global *g, int s, fa4cp_attn_args *a)
{
    fa4cp_attn_args init = FA4CP_ATTN_ARGS_INIT;
    *a = init;
    a->dtype = c->cfg.dtype;
    a->batch = c->B;
    a->heads = c->cfg.heads;
    a->kv_heads = c->cfg.kv_heads;
    a->head_dim = c->cfg.head_dim;
    a->head_dim_v = c->cfg.head_dim_v;
    a->total_q = a->total_k = cp_G(c);
    a->cu_seqlens_q = a->cu_seqlens_k = c->cu;
    a->seqused_q = a->seqused_k = c->pad ? c->used : NULL;
    a->softmax_scale = c->cfg.softmax_scale;
    a->causal = c->cfg.causal;
    a->window_left = c->cfg.window_left;
    a->window_right = c->cfg.window_right;
    a->q = g->in.q;
    a->k = g->in.k;
    a->v = g->in.v;
    a->dout = g->in.dout;
    a->dlse = c->with_dlse ? g->in.dlse : NULL;
    a->out = g->set[s].out;
    a->lse = g->set[s].lse;
    a->dq = g->set[s].dq;
    a->dk = g->set[s].dk;
    a->dv = g->set[s].dv;
}

void cp_cp_args(const cp_tcase *c, const cp_bufs *b, fa4cp_cp_args *a)
{
    fa4cp_cp_args init = FA4CP_CP_ARGS_INIT;
    *a = init;
    a->batch = c->B;
    if (c->cfg.format == FA4CP_CP_BSHD) {
        a->seqlen = c->seqlen;
    } else {
        a->cu_seqlens = c->cu;
        a->seqused = c->pad ? c->used : NULL;
    }
    a->q = b->q;
    a->k = b->k;
    a->v = b->v;
    a->out = b->out;
    a->lse = b->lse;
    a->dout = b->dout;
    a->dlse = b->dlse;
    a->dq = b->dq;
    a->dk = b->dk;
    a->dv = b->dv;
}

/* ------------------------------------------------------------------ the ranks */

int cp_run_ranks(const cp_tcase *c, cp_global *g, fa4cp_comm *const *comms, int ngpus, void *(*body)(void *),
                 char *err, size_t errn)
{
    const int n = c->cp, H = c->cfg.heads;
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(ld);
    const int64_t T = cp_G(c) / n;
    const cp_bufs *res = &g->set[g->nsets - 1];
    cp_rank jobs[CP_MAXRANKS];
    pthread_t th[CP_MAXRANKS];
    int good = 1;
    if (n < 1 || n > CP_MAXRANKS)
        bail("cp_run_ranks: %d ranks (1-%d)", n, CP_MAXRANKS);
    memset(jobs, 0, sizeof jobs);
    for (int r = 0; r < n; r++) {
        cp_rank *j = &jobs[r];
        j->c = c;
        j->comm = comms[r];
        j->rank = r;
        j->dev = r % (ngpus > 0 ? ngpus : 1);
        bufs_alloc(c, T, &j->h, 0, CP_NBUF);
        if (!c->with_dlse) {
            free(j->h.dlse);
            j->h.dlse = NULL;
        }
        fa4cp_cp_shard(c->B, c->cu, n, r, cp_rowq(c) * es, g->in.q, j->h.q);
        fa4cp_cp_shard(c->B, c->cu, n, r, cp_rowk(c) * es, g->in.k, j->h.k);
        fa4cp_cp_shard(c->B, c->cu, n, r, cp_rowv(c) * es, g->in.v, j->h.v);
        fa4cp_cp_shard(c->B, c->cu, n, r, cp_rowo(c) * es, g->in.dout, j->h.dout);
        if (j->h.dlse)
            fa4cp_cp_shard_lse(c->B, c->cu, n, r, H, ls, g->in.dlse, j->h.dlse);
        test_poison(dt, j->h.dq, (size_t)T * cp_rowq(c));
        test_poison(dt, j->h.dk, (size_t)T * cp_rowk(c));
        test_poison(dt, j->h.dv, (size_t)T * cp_rowv(c));
    }
    for (int r = 0; r < n; r++)
        if (pthread_create(&th[r], NULL, body, &jobs[r]) != 0)
            bail("pthread_create for rank %d", r);
    for (int r = 0; r < n; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < n; r++) {
        cp_rank *j = &jobs[r];
        if (j->st != FA4CP_OK && good) {
            snprintf(err, errn, "rank %d: %s: %s", r, fa4cp_strerror(j->st), j->err);
            good = 0;
        }
        fa4cp_cp_unshard(c->B, c->cu, n, r, cp_rowo(c) * es, j->h.out, res->out);
        fa4cp_cp_unshard_lse(c->B, c->cu, n, r, H, ls, j->h.lse, res->lse);
        fa4cp_cp_unshard(c->B, c->cu, n, r, cp_rowq(c) * es, j->h.dq, res->dq);
        fa4cp_cp_unshard(c->B, c->cu, n, r, cp_rowk(c) * es, j->h.dk, res->dk);
        fa4cp_cp_unshard(c->B, c->cu, n, r, cp_rowv(c) * es, j->h.dv, res->dv);
        bufs_free(&j->h);
    }
    return good;
}

/* ------------------------------------------------------------------ comparison */

typedef struct cmp {
    double err;
    size_t nonfinite, pad_bad, masked_bad;
    double num, den; /* sums of (x - ref)^2 and ref^2 over the finite real elements */
} cmp;

/* one real element: a non-finite x is counted, else it adds to the sums */
static void cmp_add(cmp *k, double v, double w)
{
    if (!isfinite(v)) {
        k->nonfinite++;
        return;
    }
    k->num += (v - w) * (v - w);
    k->den += w * w;
}

/* relative RMS error (absolute where the reference is all zero), infinite with a non-finite element */
static void cmp_finish(cmp *k)
{
    k->err = k->nonfinite ? INFINITY : k->den > 0 ? sqrt(k->num / k->den) : sqrt(k->num);
}

/* rows x width elements; padding rows must be poison (want_zero 0) or exactly 0 */
static cmp compare(const cp_tcase *c, const void *x, const void *ref, size_t width, int want_zero)
{
    const fa4cp_dtype dt = c->cfg.dtype;
    cmp k = {0};
    for (int64_t r = 0; r < cp_G(c); r++) {
        int real = cp_is_real(c, r);
        for (size_t e = 0; e < width; e++) {
            size_t i = (size_t)r * width + e;
            if (!real) {
                if (want_zero ? fa4cp_load(dt, x, i) != 0.0 : !test_is_poison(dt, x, i))
                    k.pad_bad++;
                continue;
            }
            cmp_add(&k, fa4cp_load(dt, x, i), fa4cp_load(dt, ref, i));
        }
    }
    cmp_finish(&k);
    return k;
}

/* lse [heads, rows]: a row the reference calls fully masked (-inf) must be -inf */
static cmp compare_lse(const cp_tcase *c, const void *x, const void *ref)
{
    cmp k = {0};
    fa4cp_dtype ld = fa4cp_lse_dtype(c->cfg.dtype);
    int64_t G = cp_G(c);
    for (int h = 0; h < c->cfg.heads; h++)
        for (int64_t r = 0; r < G; r++) {
            size_t i = (size_t)h * (size_t)G + (size_t)r;
            if (!cp_is_real(c, r)) {
                if (!test_is_poison(ld, x, i))
                    k.pad_bad++;
                continue;
            }
            double v = fa4cp_load(ld, x, i), w = fa4cp_load(ld, ref, i);
            if (w == -INFINITY) {
                if (v != -INFINITY)
                    k.masked_bad++;
                continue;
            }
            cmp_add(&k, v, w);
        }
    cmp_finish(&k);
    return k;
}

int cp_check(const cp_tcase *c, const char *desc, const char *refname, const cp_global *g, int ref, double tol,
             double *worst)
{
    const cp_bufs *x = &g->set[g->nsets - 1], *w = &g->set[ref];
    int good = 1;
    cmp cs[5] = {compare(c, x->out, w->out, cp_rowo(c), 0), compare_lse(c, x->lse, w->lse),
                 compare(c, x->dq, w->dq, cp_rowq(c), 1), compare(c, x->dk, w->dk, cp_rowk(c), 1),
                 compare(c, x->dv, w->dv, cp_rowv(c), 1)};
    static const char *names[] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; i++) {
        if (cs[i].err / tol > *worst)
            *worst = cs[i].err / tol;
        if (!(cs[i].err <= tol) || cs[i].nonfinite || cs[i].pad_bad || cs[i].masked_bad) {
            diag("%s: against %s: %s error %.3g (tol %g), non-finite %zu, padding rows wrong %zu, fully masked "
                 "rows wrong %zu",
                 desc, refname, names[i], cs[i].err, tol, cs[i].nonfinite, cs[i].pad_bad, cs[i].masked_bad);
            good = 0;
        }
    }
    return good;
}
