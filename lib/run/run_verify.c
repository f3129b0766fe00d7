/* run_verify.c - a rank's results against the float64 reference: a sample
 * of query and key rows (the row reference over regenerated inputs) or every
 * row (the non-CP reference on gathered tensors). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run_case.h"

#include <math.h>
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
 * row, then random ones. */
int run_pick_rows(const fa4cp_case *c, int cp_rank, int salt, int64_t *out, int want)
{
    int64_t rows = c->padded_tokens / c->cp, first = -1, last = -1;
    for (int64_t l = 0; l < rows; l++)
        if (fa4cp_case_local_token(c, cp_rank, l) >= 0) {
            if (first < 0)
                first = l;
            last = l;
        }
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
        if (fa4cp_case_local_token(c, cp_rank, l) < 0)
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

/* Sampled rows grouped by sequence, each group checked in one streaming pass
 * (fa4cp_ref_query_rows / fa4cp_ref_key_rows) over every query head of one
 * kv head. */
fa4cp_status run_verify_sampled(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                   const void *glse, const double *gD, rank_result *r)
{
    acc a;
    memset(&a, 0, sizeof a);
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dv = c->head_dim_v, group = h / hk, ns = c->samples;
    int w = d > dv ? d : dv; /* the reference rows: out (dv) and dq (d); dk (d) and dv (dv) */
    fa4cp_dtype ldt = fa4cp_lse_dtype(c->dtype);
    fa4cp_status st = FA4CP_OK;
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)ns * 2), *offs = rows + ns;
    int *seqs = malloc(sizeof(int) * (size_t)ns), *used = calloc((size_t)ns, sizeof(int));
    double *out = malloc(sizeof(double) * (size_t)ns * group * w * 2), *dq = out + (size_t)ns * group * w;
    double *lse = malloc(sizeof(double) * (size_t)ns * group);
    if (!rows || !seqs || !used || !out || !lse) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    gathered g = {c, b->rows, glse, gD};
    for (int pass = 1; pass <= (c->backward ? 2 : 1); pass++) {
        int n = run_pick_rows(c, cp_rank, pass, rows, ns);
        for (int i = 0; i < n; i++) {
            int64_t t = fa4cp_case_local_token(c, cp_rank, rows[i]);
            run_seq_of_token(c, t, &seqs[i], &offs[i]);
            used[i] = 0;
        }
        for (int i = 0; i < n; i++) {
            if (used[i])
                continue;
            int seq = seqs[i], m = 0;
            int64_t so[64], sl[64];
            for (int j = i; j < n && m < 64; j++)
                if (!used[j] && seqs[j] == seq) {
                    used[j] = 1;
                    so[m] = offs[j];
                    sl[m] = rows[j];
                    m++;
                }
            int kvh = run_sample_kv_head(c, cp_rank, seq, pass);
            if (pass == 1) {
                fa4cp_ref_query_rows(c, seq, m, so, kvh, out, lse, c->backward ? dq : NULL);
                for (int k = 0; k < m; k++)
                    for (int gg = 0; gg < group; gg++) {
                        int head = kvh * group + gg;
                        size_t row = (size_t)sl[k] * h + head, ri = (size_t)k * group + gg;
                        acc_vec(&a, ERR_OUT, out + ri * dv, c->dtype, b->out, row * dv, dv);
                        acc_lse(&a, lse[k * group + gg],
                                fa4cp_load(ldt, b->lse, (size_t)head * b->rows + (size_t)sl[k]));
                        if (c->backward)
                            acc_vec(&a, ERR_DQ, dq + ri * d, c->dtype, b->dq, row * d, d);
                    }
            } else {
                fa4cp_ref_key_rows(c, seq, m, so, kvh, lse_d, &g, out, dq);
                for (int k = 0; k < m; k++) {
                    size_t row = (size_t)sl[k] * hk + kvh;
                    acc_vec(&a, ERR_DK, out + (size_t)k * d, c->dtype, b->dk, row * d, d);
                    acc_vec(&a, ERR_DV, dq + (size_t)k * dv, c->dtype, b->dv, row * dv, dv);
                }
            }
            r->rows_checked += m;
        }
    }
    (void)comm;
    acc_finish(&a, r);
out:
    free(rows);
    free(seqs);
    free(used);
    free(out);
    free(lse);
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

fa4cp_status run_verify_full(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                const void *glse, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dw = c->head_dim_v, cp = c->cp;
    size_t es = fa4cp_dtype_size(c->dtype);
    size_t qb = (size_t)b->rows * h * d * es, kb = (size_t)b->rows * hk * d * es;
    size_t ob = (size_t)b->rows * h * dw * es, vb = (size_t)b->rows * hk * dw * es;
    void *gout = NULL, *gdq = NULL, *gdk = NULL, *gdv = NULL;
    double *q = NULL, *k = NULL, *v = NULL, *o = NULL, *lse = NULL, *dout = NULL, *dq = NULL, *dk = NULL,
           *dv = NULL;
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
    /* the non-CP reference: float64, unpadded batch */
    int64_t T = c->tokens;
    q = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference q");
    dout = fa4cp_malloc(sizeof(double) * (size_t)T * h * dw, "reference dout");
    o = fa4cp_malloc(sizeof(double) * (size_t)T * h * dw, "reference out");
    dq = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference dq");
    k = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference k");
    v = fa4cp_malloc(sizeof(double) * (size_t)T * hk * dw, "reference v");
    dk = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference dk");
    dv = fa4cp_malloc(sizeof(double) * (size_t)T * hk * dw, "reference dv");
    lse = fa4cp_malloc(sizeof(double) * (size_t)T * h, "reference lse");
    cu = fa4cp_malloc(sizeof(int32_t) * ((size_t)c->batch + 1), "reference cu_seqlens");
    if (!q || !dout || !o || !dq || !k || !v || !dk || !dv || !lse || !cu) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i <= c->batch; i++)
        cu[i] = (int32_t)c->cu_tokens[i];
    for (int64_t t = 0; t < T; t++) {
        for (int hh = 0; hh < h; hh++) {
            for (int x = 0; x < d; x++)
                q[((size_t)t * h + hh) * d + x] = fa4cp_gen_element(c, FA4CP_GEN_Q, t, hh, x);
            for (int x = 0; x < dw; x++)
                dout[((size_t)t * h + hh) * dw + x] = fa4cp_gen_element(c, FA4CP_GEN_DOUT, t, hh, x);
        }
        for (int hh = 0; hh < hk; hh++) {
            for (int x = 0; x < d; x++)
                k[((size_t)t * hk + hh) * d + x] = fa4cp_gen_element(c, FA4CP_GEN_K, t, hh, x);
            for (int x = 0; x < dw; x++)
                v[((size_t)t * hk + hh) * dw + x] = fa4cp_gen_element(c, FA4CP_GEN_V, t, hh, x);
        }
    }
    fa4cp_attn_args a2 = FA4CP_ATTN_ARGS_INIT;
    a2.dtype = FA4CP_FP64;
    a2.batch = c->batch;
    a2.heads = h;
    a2.kv_heads = hk;
    a2.head_dim = d;
    a2.head_dim_v = dw;
    a2.total_q = a2.total_k = T;
    a2.cu_seqlens_q = a2.cu_seqlens_k = cu;
    a2.max_seqlen_q = a2.max_seqlen_k = c->max_seqlen;
    a2.causal = c->causal;
    a2.window_left = c->window_left;
    a2.window_right = c->window_right;
    a2.q = q;
    a2.k = k;
    a2.v = v;
    a2.out = o;
    a2.lse = lse;
    if ((st = fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a2)))
        goto out;
    if (c->backward) {
        a2.dout = dout;
        a2.dq = dq;
        a2.dk = dk;
        a2.dv = dv;
        if ((st = fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a2)))
            goto out;
    }
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
    fa4cp_free(q);
    fa4cp_free(k);
    fa4cp_free(v);
    fa4cp_free(o);
    fa4cp_free(lse);
    fa4cp_free(dout);
    fa4cp_free(dq);
    fa4cp_free(dk);
    fa4cp_free(dv);
    fa4cp_free(cu);
    return st;
}

