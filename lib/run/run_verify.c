/* run_verify.c - a rank's results against the float64 reference: a sample
 * of query and key rows (the row reference over regenerated inputs, on the
 * machine's cores) or every row (the non-CP reference on gathered tensors,
 * one kv head per thread); on the cuda backend the same rows (or every row
 * of a small case) against the GPU reference, in place. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run_case.h"
#include "gen_gpu.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* error accumulators */
typedef struct acc {
    double diff[NERR], ref[NERR];
    double lse_max;
    int used[NERR];
} acc;

static void acc_vec(acc *a, int t, const double *ref, fa4cp_dtype dt, const void *base, size_t off, int d)
{
    for (int x = 0; x < d; x++) {
        double g = fa4cp_load(dt, base, off + (size_t)x);
        double e = g - ref[x];
        a->diff[t] += isfinite(e) ? e * e : INFINITY;
        a->ref[t] += ref[x] * ref[x];
    }
    a->used[t] = 1;
}

static void acc_lse(acc *a, double ref, double got)
{
    double e;
    if (isinf(ref) && isinf(got) && ref < 0 && got < 0)
        e = 0;
    else
        e = fabs(got - ref) / fmax(1.0, fabs(ref));
    if (!(e <= a->lse_max))
        a->lse_max = isnan(e) ? INFINITY : e;
    a->used[ERR_LSE] = 1;
}

static void acc_finish(const acc *a, rank_result *r)
{
    for (int t = 0; t < NERR; t++) {
        if (!a->used[t])
            continue;
        double e = t == ERR_LSE ? a->lse_max : sqrt(a->diff[t]) / fmax(sqrt(a->ref[t]), 1e-30);
        if (isnan(e))
            e = INFINITY;
        r->err[t] = e;
    }
}

typedef struct gathered {
    const fa4cp_case *c;
    int64_t rows;
    const void *lse; /* [cp][h][rows] of the lse dtype */
    const double *D; /* [cp][h][rows] */
} gathered;

static void lse_d(void *ctx, int seq, int64_t i, int head, double *lse, double *D)
{
    const gathered *g = ctx;
    const fa4cp_case *c = g->c;
    int r;
    int64_t l;
    if (fa4cp_thd_global_to_local(c->batch, c->cu_padded, c->cp, (int64_t)c->cu_padded[seq] + i, &r, &l)) {
        *lse = -INFINITY;
        *D = 0;
        return;
    }
    size_t idx = ((size_t)r * c->heads + (size_t)head) * (size_t)g->rows + (size_t)l;
    *lse = fa4cp_load(fa4cp_lse_dtype(c->dtype), g->lse, idx);
    *D = g->D[idx];
}

static uint64_t rmix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Sampled local rows of this rank (real rows only): the first and last real
 * row, then random ones.  map: the rank's row map (run_gen_map). */
int run_pick_rows(const fa4cp_case *c, const int64_t *map, int cp_rank, int salt, int64_t *out, int want)
{
    int64_t rows = c->padded_tokens / c->cp, first = -1, last = -1;
    for (int64_t l = 0; l < rows && first < 0; l++)
        if (map[l] >= 0)
            first = l;
    for (int64_t l = rows - 1; l >= 0 && last < 0; l--)
        if (map[l] >= 0)
            last = l;
    if (first < 0)
        return 0;
    int n = 0;
    out[n++] = first;
    if (want > 1 && last != first)
        out[n++] = last;
    uint64_t s = rmix(c->seed ^ ((uint64_t)cp_rank << 20) ^ (uint64_t)salt);
    for (int tries = 0; n < want && tries < want * 20; tries++) {
        s = rmix(s);
        int64_t l = (int64_t)(s % (uint64_t)rows);
        if (map[l] < 0)
            continue;
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= out[i] == l;
        if (!dup)
            out[n++] = l;
    }
    return n;
}

void run_seq_of_token(const fa4cp_case *c, int64_t t, int *seq, int64_t *off)
{
    int lo = 0, hi = c->batch - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (c->cu_tokens[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    *seq = lo;
    *off = t - c->cu_tokens[lo];
}

/* The kv head whose query heads are checked for a sequence's sampled rows. */
int run_sample_kv_head(const fa4cp_case *c, int cp_rank, int seq, int salt)
{
    return (int)(rmix(c->seed ^ ((uint64_t)seq << 24) ^ ((uint64_t)cp_rank << 8) ^ (uint64_t)salt) %
                 (uint64_t)c->kv_heads);
}

/* Sampled rows grouped by sequence: each group (one pass, one sequence, at
 * most 64 rows, every query head of one kv head) is checked in one
 * streaming pass (fa4cp_ref_query_rows / fa4cp_ref_key_rows); the cpu
 * reference runs the groups on the machine's cores, the GPU reference
 * (backend cuda) one block per row. */
typedef struct sgroup {
    int pass, seq, kvh, m;
    int64_t so[64], sl[64]; /* offsets in the sequence, local rows */
} sgroup;

static int sample_groups(const fa4cp_case *c, const bufs *b, int cp_rank, sgroup **out)
{
    int ns = c->samples, ng = 0;
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)ns * 2), *offs = rows ? rows + ns : NULL;
    int *seqs = malloc(sizeof(int) * (size_t)ns), *used = calloc((size_t)ns, sizeof(int));
    sgroup *g = calloc((size_t)ns * 2 + 1, sizeof *g);
    if (!rows || !seqs || !used || !g) {
        free(g);
        g = NULL;
        ng = -1;
        goto out;
    }
    for (int pass = 1; pass <= (c->backward ? 2 : 1); pass++) {
        int n = run_pick_rows(c, b->map, cp_rank, pass, rows, ns);
        for (int i = 0; i < n; i++) {
            run_seq_of_token(c, b->map[rows[i]], &seqs[i], &offs[i]);
            used[i] = 0;
        }
        for (int i = 0; i < n; i++) {
            if (used[i])
                continue;
            sgroup *x = &g[ng++];
            x->pass = pass;
            x->seq = seqs[i];
            x->m = 0;
            for (int j = i; j < n && x->m < 64; j++)
                if (!used[j] && seqs[j] == x->seq) {
                    used[j] = 1;
                    x->so[x->m] = offs[j];
                    x->sl[x->m] = rows[j];
                    x->m++;
                }
            x->kvh = run_sample_kv_head(c, cp_rank, x->seq, pass);
        }
    }
out:
    free(rows);
    free(seqs);
    free(used);
    *out = g;
    return ng;
}

typedef struct sjob {
    const fa4cp_case *c;
    const bufs *b;
    const gathered *g;
    const sgroup *gr;
    int ngr, next, failed;
    acc *accs;           /* one per thread */
    long long *rows;     /* one per thread */
} sjob;

typedef struct sworker {
    sjob *job;
    int id;
} sworker;

static void *sample_worker(void *p)
{
    sworker *w = p;
    sjob *j = w->job;
    const fa4cp_case *c = j->c;
    const bufs *b = j->b;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dv = c->head_dim_v, group = h / hk;
    int wd = d > dv ? d : dv; /* the reference rows: out (dv) and dq (d); dk (d) and dv (dv) */
    fa4cp_dtype ldt = fa4cp_lse_dtype(c->dtype);
    acc *a = &j->accs[w->id];
    double *out = malloc(sizeof(double) * 64 * (size_t)group * wd * 2), *dq = out ? out + (size_t)64 * group * wd : NULL;
    double *lse = malloc(sizeof(double) * 64 * (size_t)group);
    if (!out || !lse) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        goto out;
    }
    for (;;) {
        int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->ngr)
            break;
        const sgroup *x = &j->gr[i];
        int m = x->m, kvh = x->kvh;
        if (x->pass == 1) {
            fa4cp_ref_query_rows(c, x->seq, m, x->so, kvh, out, lse, c->backward ? dq : NULL);
            for (int k = 0; k < m; k++)
                for (int gg = 0; gg < group; gg++) {
                    int head = kvh * group + gg;
                    size_t row = (size_t)x->sl[k] * h + head, ri = (size_t)k * group + gg;
                    acc_vec(a, ERR_OUT, out + ri * dv, c->dtype, b->out, row * dv, dv);
                    acc_lse(a, lse[k * group + gg], fa4cp_load(ldt, b->lse, (size_t)head * b->rows + (size_t)x->sl[k]));
                    if (c->backward)
                        acc_vec(a, ERR_DQ, dq + ri * d, c->dtype, b->dq, row * d, d);
                }
        } else {
            fa4cp_ref_key_rows(c, x->seq, m, x->so, kvh, lse_d, (void *)j->g, out, dq);
            for (int k = 0; k < m; k++) {
                size_t row = (size_t)x->sl[k] * hk + kvh;
                acc_vec(a, ERR_DK, out + (size_t)k * d, c->dtype, b->dk, row * d, d);
                acc_vec(a, ERR_DV, dq + (size_t)k * dv, c->dtype, b->dv, row * dv, dv);
            }
        }
        j->rows[w->id] += m;
    }
out:
    free(out);
    free(lse);
    return NULL;
}

static void acc_merge(acc *into, const acc *a)
{
    for (int t = 0; t < NERR; t++) {
        into->diff[t] += a->diff[t];
        into->ref[t] += a->ref[t];
        into->used[t] |= a->used[t];
    }
    if (!(a->lse_max <= into->lse_max))
        into->lse_max = a->lse_max;
}

fa4cp_status run_verify_sampled(const fa4cp_case *c, int cp_rank, int threads, const bufs *b, const void *glse,
                                   const double *gD, rank_result *r)
{
    acc a;
    memset(&a, 0, sizeof a);
    sgroup *gr = NULL;
    int ngr = sample_groups(c, b, cp_rank, &gr);
    gathered g = {c, b->rows, glse, gD};
    if (ngr < 0) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        return FA4CP_ERR_NOMEM;
    }
    if (threads > ngr)
        threads = ngr > 0 ? ngr : 1;
    sjob job = {c, b, &g, gr, ngr, 0, 0, calloc((size_t)threads, sizeof(acc)),
                calloc((size_t)threads, sizeof(long long))};
    sworker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    fa4cp_status st = FA4CP_OK;
    if (!job.accs || !job.rows || !ws || !th) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    int started = 0;
    for (int t = 0; t < threads; t++) {
        ws[t] = (sworker){&job, t};
        if (t > 0 && pthread_create(&th[t], NULL, sample_worker, &ws[t]) == 0)
            started = t;
        else if (t > 0)
            break;
    }
    sample_worker(&ws[0]); /* this thread works too; a thread that did not start leaves its share to the rest */
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    if (job.failed) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int t = 0; t < threads; t++) {
        acc_merge(&a, &job.accs[t]);
        r->rows_checked += job.rows[t];
    }
    acc_finish(&a, r);
out:
    free(gr);
    free(job.accs);
    free(job.rows);
    free(ws);
    free(th);
    return st;
}

/* all_gather helper: host buffers in and out.  The nccl transport takes
 * device memory only, so there the data goes through the rank's GPU
 * (stream: the rank's stream; the call waits for the result). */
fa4cp_status run_gather(fa4cp_comm *comm, const void *send, size_t bytes, void **recv, rank_result *r)
{
    int n = fa4cp_comm_size(comm);
    *recv = fa4cp_malloc(bytes * (size_t)n, "gathered verification data");
    if (!*recv)
        return FA4CP_ERR_NOMEM;
    fa4cp_comm_req *req = NULL;
    fa4cp_status st;
#ifdef HAVE_CUDA
    if (!strcmp(fa4cp_comm_name(comm), "nccl")) {
        void *ds = NULL, *dr = NULL;
        cudaStream_t s = NULL;
        cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        if (e == cudaSuccess)
            e = cudaMalloc(&ds, bytes ? bytes : 16);
        if (e == cudaSuccess)
            e = cudaMalloc(&dr, bytes ? bytes * (size_t)n : 16);
        if (e == cudaSuccess && bytes)
            e = cudaMemcpy(ds, send, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            st = FA4CP_ERR_CUDA;
            snprintf(r->msg, sizeof r->msg, "verification gather on the GPU (%zu bytes): %s", bytes,
                     cudaGetErrorString(e));
        } else {
            st = fa4cp_comm_all_gather(comm, ds, dr, bytes, s, &req);
            if (!st)
                st = fa4cp_comm_wait(comm, req, s);
            if (!st && (e = cudaStreamSynchronize(s)) == cudaSuccess && bytes)
                e = cudaMemcpy(*recv, dr, bytes * (size_t)n, cudaMemcpyDeviceToHost);
            if (!st && e != cudaSuccess) {
                st = FA4CP_ERR_CUDA;
                snprintf(r->msg, sizeof r->msg, "verification gather on the GPU: %s", cudaGetErrorString(e));
            }
        }
        if (ds)
            cudaFree(ds);
        if (dr)
            cudaFree(dr);
        if (s)
            cudaStreamDestroy(s);
        return st;
    }
#endif
    (void)r;
    st = fa4cp_comm_all_gather(comm, send, *recv, bytes, NULL, &req);
    if (!st)
        st = fa4cp_comm_wait(comm, req, NULL);
    return st;
}

/* The non-CP float64 reference of check: full, one kv head (and its query
 * heads) per job, the jobs on the machine's cores: each generates its
 * slice of the inputs, runs the cpu backend on it and scatters the results
 * into the whole-batch arrays (o, dq [T, h, d]; lse [h, T]; dk, dv [T, hk, d]). */
typedef struct fjob {
    const fa4cp_case *c;
    const int32_t *cu;
    double *o, *lse, *dq, *dk, *dv;
    int next, failed;
    fa4cp_status st;
    char msg[256];
} fjob;

static void *full_worker(void *p)
{
    fjob *j = p;
    const fa4cp_case *c = j->c;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dw = c->head_dim_v, group = h / hk;
    int64_t T = c->tokens;
    /* q, dq, k, dk: head_dim wide; dout, out, v, dv: head_dim_v */
    size_t qn = (size_t)T * group * d, kn = (size_t)T * d, on = (size_t)T * group * dw, vn = (size_t)T * dw;
    double *q = malloc(sizeof(double) * (qn * 2 + on * 2 + kn * 2 + vn * 2 + (size_t)T * group));
    double *dout = q ? q + qn : NULL, *o = dout ? dout + on : NULL, *dq = o ? o + on : NULL;
    double *k = dq ? dq + qn : NULL, *v = k ? k + kn : NULL, *dk = v ? v + vn : NULL, *dv = dk ? dk + kn : NULL;
    double *lse = dv ? dv + vn : NULL;
    for (;;) {
        int g = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (g >= hk || __atomic_load_n(&j->failed, __ATOMIC_RELAXED))
            break;
        if (!q) {
            if (!__atomic_exchange_n(&j->failed, 1, __ATOMIC_RELAXED)) {
                j->st = FA4CP_ERR_NOMEM;
                snprintf(j->msg, sizeof j->msg, "full check: out of memory for the reference of one kv head");
            }
            break;
        }
        for (int64_t t = 0; t < T; t++) {
            for (int gg = 0; gg < group; gg++) {
                fa4cp_gen_row(c, FA4CP_GEN_Q, t, g * group + gg, q + ((size_t)t * group + gg) * d);
                fa4cp_gen_row(c, FA4CP_GEN_DOUT, t, g * group + gg, dout + ((size_t)t * group + gg) * dw);
            }
            fa4cp_gen_row(c, FA4CP_GEN_K, t, g, k + (size_t)t * d);
            fa4cp_gen_row(c, FA4CP_GEN_V, t, g, v + (size_t)t * dw);
        }
        fa4cp_attn_args a2 = FA4CP_ATTN_ARGS_INIT;
        a2.dtype = FA4CP_FP64;
        a2.batch = c->batch;
        a2.heads = group;
        a2.kv_heads = 1;
        a2.head_dim = d;
        a2.head_dim_v = dw;
        a2.total_q = a2.total_k = T;
        a2.cu_seqlens_q = a2.cu_seqlens_k = j->cu;
        a2.max_seqlen_q = a2.max_seqlen_k = c->max_seqlen;
        a2.causal = c->causal;
        a2.window_left = c->window_left;
        a2.window_right = c->window_right;
        a2.q = q;
        a2.k = k;
        a2.v = v;
        a2.out = o;
        a2.lse = lse;
        fa4cp_status st = fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a2);
        if (!st && c->backward) {
            a2.dout = dout;
            a2.dq = dq;
            a2.dk = dk;
            a2.dv = dv;
            st = fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a2);
        }
        if (st) {
            if (!__atomic_exchange_n(&j->failed, 1, __ATOMIC_RELAXED)) {
                j->st = st;
                snprintf(j->msg, sizeof j->msg, "full check: %s", fa4cp_last_error());
            }
            break;
        }
        for (int64_t t = 0; t < T; t++) {
            for (int gg = 0; gg < group; gg++) {
                int hh = g * group + gg;
                memcpy(j->o + ((size_t)t * h + hh) * dw, o + ((size_t)t * group + gg) * dw, sizeof(double) * dw);
                if (c->backward)
                    memcpy(j->dq + ((size_t)t * h + hh) * d, dq + ((size_t)t * group + gg) * d, sizeof(double) * d);
                j->lse[(size_t)hh * T + t] = lse[(size_t)gg * T + t];
            }
            if (c->backward) {
                memcpy(j->dk + ((size_t)t * hk + g) * d, dk + (size_t)t * d, sizeof(double) * d);
                memcpy(j->dv + ((size_t)t * hk + g) * dw, dv + (size_t)t * dw, sizeof(double) * dw);
            }
        }
    }
    free(q);
    return NULL;
}

static fa4cp_status full_reference(const fa4cp_case *c, const int32_t *cu, int threads, double *o, double *lse,
                                   double *dq, double *dk, double *dv, rank_result *r)
{
    fjob j;
    memset(&j, 0, sizeof j);
    j.c = c, j.cu = cu, j.o = o, j.lse = lse, j.dq = dq, j.dk = dk, j.dv = dv;
    if (threads > c->kv_heads)
        threads = c->kv_heads;
    pthread_t *th = calloc((size_t)(threads > 1 ? threads : 1), sizeof *th);
    int started = 0;
    for (int t = 1; th && t < threads; t++) {
        if (pthread_create(&th[t], NULL, full_worker, &j))
            break;
        started = t;
    }
    full_worker(&j);
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    free(th);
    if (j.failed) {
        snprintf(r->msg, sizeof r->msg, "%s", j.msg);
        return j.st ? j.st : FA4CP_ERR_INTERNAL;
    }
    return FA4CP_OK;
}

fa4cp_status run_verify_full(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, int threads, const bufs *b,
                                const void *glse, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dw = c->head_dim_v, cp = c->cp;
    size_t es = fa4cp_dtype_size(c->dtype);
    size_t qb = (size_t)b->rows * h * d * es, kb = (size_t)b->rows * hk * d * es;
    size_t ob = (size_t)b->rows * h * dw * es, vb = (size_t)b->rows * hk * dw * es;
    void *gout = NULL, *gdq = NULL, *gdk = NULL, *gdv = NULL;
    double *o = NULL, *lse = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    int32_t *cu = NULL;
    acc a;
    memset(&a, 0, sizeof a);
    if ((st = run_gather(comm, b->out, ob, &gout, r)))
        goto out;
    if (c->backward && ((st = run_gather(comm, b->dq, qb, &gdq, r)) || (st = run_gather(comm, b->dk, kb, &gdk, r)) ||
                        (st = run_gather(comm, b->dv, vb, &gdv, r))))
        goto out;
    if (cp_rank != 0)
        goto out;
    /* the non-CP reference: float64, unpadded batch, one kv head per job */
    int64_t T = c->tokens;
    o = fa4cp_malloc(sizeof(double) * (size_t)T * h * dw, "reference out");
    dq = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference dq");
    dk = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference dk");
    dv = fa4cp_malloc(sizeof(double) * (size_t)T * hk * dw, "reference dv");
    lse = fa4cp_malloc(sizeof(double) * (size_t)T * h, "reference lse");
    cu = fa4cp_malloc(sizeof(int32_t) * ((size_t)c->batch + 1), "reference cu_seqlens");
    if (!o || !dq || !dk || !dv || !lse || !cu) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i <= c->batch; i++)
        cu[i] = (int32_t)c->cu_tokens[i];
    if ((st = full_reference(c, cu, threads, o, lse, dq, dk, dv, r)))
        goto out;
    fa4cp_dtype ldt = fa4cp_lse_dtype(c->dtype);
    for (int rr = 0; rr < cp; rr++)
        for (int64_t l = 0; l < b->rows; l++) {
            int64_t t = fa4cp_case_local_token(c, rr, l);
            if (t < 0)
                continue;
            for (int hh = 0; hh < h; hh++) {
                size_t gi = ((size_t)rr * b->rows + l) * h + hh, ri = (size_t)t * h + hh; /* rows */
                acc_vec(&a, ERR_OUT, o + ri * dw, c->dtype, gout, gi * dw, dw);
                acc_lse(&a, lse[(size_t)hh * T + t],
                        fa4cp_load(ldt, glse, ((size_t)rr * h + hh) * b->rows + (size_t)l));
                if (c->backward)
                    acc_vec(&a, ERR_DQ, dq + ri * d, c->dtype, gdq, gi * d, d);
            }
            if (c->backward)
                for (int hh = 0; hh < hk; hh++) {
                    size_t gi = ((size_t)rr * b->rows + l) * hk + hh, ri = (size_t)t * hk + hh;
                    acc_vec(&a, ERR_DK, dk + ri * d, c->dtype, gdk, gi * d, d);
                    acc_vec(&a, ERR_DV, dv + ri * dw, c->dtype, gdv, gi * dw, dw);
                }
            r->rows_checked++;
        }
    acc_finish(&a, r);
out:
    if (st && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "full check: %s", fa4cp_last_error());
    fa4cp_free(gout);
    fa4cp_free(gdq);
    fa4cp_free(gdk);
    fa4cp_free(gdv);
    fa4cp_free(o);
    fa4cp_free(lse);
    fa4cp_free(dq);
    fa4cp_free(dk);
    fa4cp_free(dv);
    fa4cp_free(cu);
    return st;
}

#ifdef HAVE_CUDA
/* The check on the GPU: the CP group's lse and D = rowsum(dout*out)
 * all-gathered in device memory, then each row compared in place by the GPU
 * reference, query and key rows in one launch and one wait.  Sampled: the
 * rows and kv heads picked exactly as for the cpu reference.  Full (when it
 * fits, gpu_full_fits): every real local row, every query head and every kv
 * head; the whole batch's inputs are then generated once for the reference
 * to read (run_ref_pregen_worth) instead of regenerated by every row.  The
 * device buffers are the rank's workspace, kept from case to case. */
fa4cp_status run_verify_gpu(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                       devbufs *dv, int full, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int h = c->heads, group = c->heads / c->kv_heads;
    size_t les = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype)), lb = (size_t)b->rows * h * les;
    size_t db = (size_t)b->rows * h * sizeof(double);
    cudaStream_t s = (cudaStream_t)dv->stream;
    run_ref_ws *ws = dv->ws;
    void *glse = NULL;
    double *D = NULL, *gD = NULL;
    sgroup *gr = NULL;
    run_ref_row *qr = NULL, *kr = NULL;
    run_ref_err *qe = NULL, *ke = NULL;
    fa4cp_comm_req *req = NULL;
    acc a;
    memset(&a, 0, sizeof a);
    int ngr = 0, nq = 0, nk = 0;
    size_t maxq = (size_t)c->samples * group + 1, maxk = (size_t)c->samples + 1;
    if (full) {
        maxq = (size_t)b->rows * h + 1;
        maxk = (size_t)b->rows * c->kv_heads + 1;
    } else {
        ngr = sample_groups(c, b, cp_rank, &gr);
    }
    if (ngr < 0 || !(qr = calloc(maxq, sizeof *qr)) || !(kr = calloc(maxk, sizeof *kr)) ||
        !(qe = calloc(maxq, sizeof *qe)) || !(ke = calloc(maxk, sizeof *ke))) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if (!(glse = run_ref_ws_dev(ws, RUN_WS_LSE, lb * (size_t)c->cp + 16)) ||
        (c->backward && (!(D = run_ref_ws_dev(ws, RUN_WS_D, db + 16)) ||
                         !(gD = run_ref_ws_dev(ws, RUN_WS_GD, db * (size_t)c->cp + 16))))) {
        snprintf(r->msg, sizeof r->msg, "%s check: no GPU memory for the gathered lse and D (%zu bytes): %s",
                 full ? "full" : "sampled", (lb + 2 * db) * (size_t)c->cp, fa4cp_last_error());
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if ((st = fa4cp_comm_all_gather(comm, dv->lse, glse, lb, s, &req)) || (st = fa4cp_comm_wait(comm, req, s)))
        goto out;
    if (c->backward) {
        if ((st = run_gen_rowdot_gpu(c, dv->dout, dv->out, dv->map, b->rows, D, s)))
            goto out;
        req = NULL;
        if ((st = fa4cp_comm_all_gather(comm, D, gD, db, s, &req)) || (st = fa4cp_comm_wait(comm, req, s)))
            goto out;
    }
    for (int64_t l = 0; full && l < b->rows; l++) {
        if (b->map[l] < 0)
            continue;
        int seq;
        int64_t off;
        run_seq_of_token(c, b->map[l], &seq, &off);
        for (int hh = 0; hh < h; hh++)
            qr[nq++] = (run_ref_row){seq, hh, off, l};
        for (int hh = 0; c->backward && hh < c->kv_heads; hh++)
            kr[nk++] = (run_ref_row){seq, hh, off, l};
    }
    for (int i = 0; i < ngr; i++) {
        const sgroup *x = &gr[i];
        for (int k = 0; k < x->m; k++) {
            if (x->pass == 1)
                for (int g = 0; g < group; g++)
                    qr[nq++] = (run_ref_row){x->seq, x->kvh * group + g, x->so[k], x->sl[k]};
            else
                kr[nk++] = (run_ref_row){x->seq, x->kvh, x->so[k], x->sl[k]};
        }
    }
    run_ref_job j;
    memset(&j, 0, sizeof j);
    j.qrows = qr;
    j.nq = nq;
    j.krows = kr;
    j.nk = c->backward ? nk : 0;
    j.local_rows = b->rows;
    j.out = dv->out;
    j.lse = dv->lse;
    j.dq = c->backward ? dv->dq : NULL;
    j.dk = dv->dk;
    j.dv = dv->dv;
    j.glse = glse;
    j.gD = gD;
    j.pregen = run_ref_pregen_worth(c, nq, j.nk);
    j.qerr = qe;
    j.kerr = ke;
    if ((st = run_ref_gpu(c, ws, &j, s)))
        goto out;
    for (int i = 0; i < nq; i++) {
        a.diff[ERR_OUT] += qe[i].d0, a.ref[ERR_OUT] += qe[i].r0, a.used[ERR_OUT] = 1;
        if (c->backward)
            a.diff[ERR_DQ] += qe[i].d1, a.ref[ERR_DQ] += qe[i].r1, a.used[ERR_DQ] = 1;
        if (!(qe[i].lse <= a.lse_max))
            a.lse_max = isnan(qe[i].lse) ? INFINITY : qe[i].lse;
        a.used[ERR_LSE] = 1;
    }
    for (int i = 0; i < j.nk; i++) {
        a.diff[ERR_DK] += ke[i].d0, a.ref[ERR_DK] += ke[i].r0, a.used[ERR_DK] = 1;
        a.diff[ERR_DV] += ke[i].d1, a.ref[ERR_DV] += ke[i].r1, a.used[ERR_DV] = 1;
    }
    r->rows_checked += full ? nq / h + nk / c->kv_heads : nq / group + nk;
    acc_finish(&a, r);
out:
    if (st && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "%s check on the GPU: %s", full ? "full" : "sampled", fa4cp_last_error());
    if (st)
        (void)cudaStreamSynchronize(s); /* the kept buffers are idle before the next case */
    free(gr);
    free(qr);
    free(kr);
    free(qe);
    free(ke);
    return st;
}

#else
fa4cp_status run_verify_gpu(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                       devbufs *dv, int full, rank_result *r)
{
    (void)c, (void)comm, (void)cp_rank, (void)b, (void)dv, (void)full, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
#endif
