/* run_exec.c - one case on one rank: inputs, timed CP calls, verification.
 *
 * Inputs come from the counter-based generator (fa4cp_gen_fill_local), so
 * every rank builds its own shard and the global tensors are the same for
 * every cp size and comm shape.  Verification:
 *   full:    the CP group's outputs are all-gathered; CP rank 0 runs the
 *            non-CP reference (the cpu backend in float64 on the unpadded
 *            batch) and compares every real row;
 *   sampled: each rank recomputes `samples` of its query rows (out, lse, dq,
 *            every query head of one kv head per sequence)
 *            and of its key rows (dk, dv) with the float64 row reference,
 *            which streams over regenerated inputs; dk/dv use the global LSE
 *            and D = rowsum(dout*out) all-gathered from the CP forward.
 * Errors are relative norms per tensor (lse: max |diff| / max(1, |lse|)).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "fa4cp.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "run_exec.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

const char *const run_err_names[NERR] = {"out", "lse", "dq", "dk", "dv"};

#ifdef FA4CP_CP_CONFIG_INIT

int run_exec_available(void) { return 1; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static fa4cp_status make_cp(const fa4cp_case *c, fa4cp_comm *comm, fa4cp_cp **out)
{
    fa4cp_cp_config cfg;
    fa4cp_status st = fa4cp_case_cp_config(c, &cfg);
    if (st)
        return st;
    return fa4cp_cp_create(&cfg, comm, out);
}

int run_plan_print(const fa4cp_case *c, int cp_rank, FILE *f)
{
    fa4cp_cp_config cfg;
    fa4cp_cp_plan *plan = NULL;
    if (fa4cp_case_cp_config(c, &cfg))
        return -1;
    if (fa4cp_cp_plan_build(&cfg, c->cp, cp_rank, &plan))
        return -1;
    /* each line as a comment, so the table and TAP stay parseable */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m) {
        fa4cp_cp_plan_print(plan, m);
        fclose(m);
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            fprintf(f, "#     %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
        }
        free(text);
    }
    fa4cp_cp_plan_free(plan);
    return 0;
}

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

typedef struct bufs {
    int64_t rows;
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    double *D; /* [h, rows] */
} bufs;

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
static int pick_rows(const fa4cp_case *c, int cp_rank, int salt, int64_t *out, int want)
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

static void seq_of_token(const fa4cp_case *c, int64_t t, int *seq, int64_t *off)
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
static int sample_kv_head(const fa4cp_case *c, int cp_rank, int seq, int salt)
{
    return (int)(rmix(c->seed ^ ((uint64_t)seq << 24) ^ ((uint64_t)cp_rank << 8) ^ (uint64_t)salt) %
                 (uint64_t)c->kv_heads);
}

/* Sampled rows grouped by sequence, each group checked in one streaming pass
 * (fa4cp_ref_query_rows / fa4cp_ref_key_rows) over every query head of one
 * kv head. */
static fa4cp_status verify_sampled(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                   const void *glse, const double *gD, rank_result *r)
{
    acc a;
    memset(&a, 0, sizeof a);
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, group = h / hk, ns = c->samples;
    fa4cp_dtype ldt = fa4cp_lse_dtype(c->dtype);
    fa4cp_status st = FA4CP_OK;
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)ns * 2), *offs = rows + ns;
    int *seqs = malloc(sizeof(int) * (size_t)ns), *used = calloc((size_t)ns, sizeof(int));
    double *out = malloc(sizeof(double) * (size_t)ns * group * d * 2), *dq = out + (size_t)ns * group * d;
    double *lse = malloc(sizeof(double) * (size_t)ns * group);
    if (!rows || !seqs || !used || !out || !lse) {
        snprintf(r->msg, sizeof r->msg, "out of memory for the sampled check");
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    gathered g = {c, b->rows, glse, gD};
    for (int pass = 1; pass <= (c->backward ? 2 : 1); pass++) {
        int n = pick_rows(c, cp_rank, pass, rows, ns);
        for (int i = 0; i < n; i++) {
            int64_t t = fa4cp_case_local_token(c, cp_rank, rows[i]);
            seq_of_token(c, t, &seqs[i], &offs[i]);
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
            int kvh = sample_kv_head(c, cp_rank, seq, pass);
            if (pass == 1) {
                fa4cp_ref_query_rows(c, seq, m, so, kvh, out, lse, c->backward ? dq : NULL);
                for (int k = 0; k < m; k++)
                    for (int gg = 0; gg < group; gg++) {
                        int head = kvh * group + gg;
                        size_t base = ((size_t)sl[k] * h + head) * (size_t)d, ri = ((size_t)k * group + gg) * d;
                        acc_vec(&a, ERR_OUT, out + ri, c->dtype, b->out, base, d);
                        acc_lse(&a, lse[k * group + gg],
                                fa4cp_load(ldt, b->lse, (size_t)head * b->rows + (size_t)sl[k]));
                        if (c->backward)
                            acc_vec(&a, ERR_DQ, dq + ri, c->dtype, b->dq, base, d);
                    }
            } else {
                fa4cp_ref_key_rows(c, seq, m, so, kvh, lse_d, &g, out, dq);
                for (int k = 0; k < m; k++) {
                    size_t base = ((size_t)sl[k] * hk + kvh) * (size_t)d;
                    acc_vec(&a, ERR_DK, out + (size_t)k * d, c->dtype, b->dk, base, d);
                    acc_vec(&a, ERR_DV, dq + (size_t)k * d, c->dtype, b->dv, base, d);
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
static fa4cp_status gather(fa4cp_comm *comm, const void *send, size_t bytes, void **recv, rank_result *r)
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

static fa4cp_status verify_full(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                const void *glse, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, cp = c->cp;
    size_t es = fa4cp_dtype_size(c->dtype);
    size_t qb = (size_t)b->rows * h * d * es, kb = (size_t)b->rows * hk * d * es;
    void *gout = NULL, *gdq = NULL, *gdk = NULL, *gdv = NULL;
    double *q = NULL, *k = NULL, *v = NULL, *o = NULL, *lse = NULL, *dout = NULL, *dq = NULL, *dk = NULL,
           *dv = NULL;
    int32_t *cu = NULL;
    acc a;
    memset(&a, 0, sizeof a);
    if ((st = gather(comm, b->out, qb, &gout, r)))
        goto out;
    if (c->backward && ((st = gather(comm, b->dq, qb, &gdq, r)) || (st = gather(comm, b->dk, kb, &gdk, r)) ||
                        (st = gather(comm, b->dv, kb, &gdv, r))))
        goto out;
    if (cp_rank != 0)
        goto out;
    /* the non-CP reference: float64, unpadded batch */
    int64_t T = c->tokens;
    q = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference q");
    dout = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference dout");
    o = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference out");
    dq = fa4cp_malloc(sizeof(double) * (size_t)T * h * d, "reference dq");
    k = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference k");
    v = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference v");
    dk = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference dk");
    dv = fa4cp_malloc(sizeof(double) * (size_t)T * hk * d, "reference dv");
    lse = fa4cp_malloc(sizeof(double) * (size_t)T * h, "reference lse");
    cu = fa4cp_malloc(sizeof(int32_t) * ((size_t)c->batch + 1), "reference cu_seqlens");
    if (!q || !dout || !o || !dq || !k || !v || !dk || !dv || !lse || !cu) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i <= c->batch; i++)
        cu[i] = (int32_t)c->cu_tokens[i];
    for (int64_t t = 0; t < T; t++) {
        for (int hh = 0; hh < h; hh++)
            for (int x = 0; x < d; x++) {
                size_t i = ((size_t)t * h + hh) * d + x;
                q[i] = fa4cp_gen_element(c, FA4CP_GEN_Q, t, hh, x);
                dout[i] = fa4cp_gen_element(c, FA4CP_GEN_DOUT, t, hh, x);
            }
        for (int hh = 0; hh < hk; hh++)
            for (int x = 0; x < d; x++) {
                size_t i = ((size_t)t * hk + hh) * d + x;
                k[i] = fa4cp_gen_element(c, FA4CP_GEN_K, t, hh, x);
                v[i] = fa4cp_gen_element(c, FA4CP_GEN_V, t, hh, x);
            }
    }
    fa4cp_attn_args a2 = FA4CP_ATTN_ARGS_INIT;
    a2.dtype = FA4CP_FP64;
    a2.batch = c->batch;
    a2.heads = h;
    a2.kv_heads = hk;
    a2.head_dim = d;
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
                size_t gi = (((size_t)rr * b->rows + l) * h + hh) * d, ri = ((size_t)t * h + hh) * d;
                acc_vec(&a, ERR_OUT, o + ri, c->dtype, gout, gi, d);
                acc_lse(&a, lse[(size_t)hh * T + t],
                        fa4cp_load(ldt, glse, ((size_t)rr * h + hh) * b->rows + (size_t)l));
                if (c->backward)
                    acc_vec(&a, ERR_DQ, dq + ri, c->dtype, gdq, gi, d);
            }
            if (c->backward)
                for (int hh = 0; hh < hk; hh++) {
                    size_t gi = (((size_t)rr * b->rows + l) * hk + hh) * d, ri = ((size_t)t * hk + hh) * d;
                    acc_vec(&a, ERR_DK, dk + ri, c->dtype, gdk, gi, d);
                    acc_vec(&a, ERR_DV, dv + ri, c->dtype, gdv, gi, d);
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

/* backend cuda: the rank's device copies of its tensors, its stream and the
 * events that time the calls (the host buffers stay the source of the
 * inputs and the target of the verification). */
typedef struct devbufs {
    int on;
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    void *stream, *e0, *e1;
} devbufs;

#ifdef HAVE_CUDA
#define DEV_CK(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            snprintf(r->msg, sizeof r->msg, "%s:%d: %s: %s", __FILE__, __LINE__, #call,            \
                     cudaGetErrorString(e_));                                                      \
            return FA4CP_ERR_CUDA;                                                                 \
        }                                                                                          \
    } while (0)

/* GPU of a rank: `device` (multi-process: the world table's row, one GPU
 * per process), or with device < 0 the world rank modulo the visible
 * devices, which is the world table's local_rank % visible in the
 * one-process (local) mode (several simulated ranks share a GPU when there
 * are fewer GPUs) */
static fa4cp_status dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                             size_t qn, size_t kn, size_t es, size_t les, rank_result *r)
{
    int n = 0;
    DEV_CK(cudaGetDeviceCount(&n));
    DEV_CK(cudaSetDevice(device >= 0 ? device : world_rank % n));
    d->on = 1;
    DEV_CK(cudaStreamCreateWithFlags((cudaStream_t *)&d->stream, cudaStreamNonBlocking));
    DEV_CK(cudaEventCreate((cudaEvent_t *)&d->e0));
    DEV_CK(cudaEventCreate((cudaEvent_t *)&d->e1));
    struct {
        void **dst;
        const void *src;
        size_t bytes;
        int want;
    } t[] = {{&d->q, b->q, qn * es, 1},
             {&d->k, b->k, kn * es, 1},
             {&d->v, b->v, kn * es, 1},
             {&d->out, b->out, qn * es, 1},
             {&d->lse, b->lse, (size_t)b->rows * c->heads * les, 1},
             {&d->dout, b->dout, qn * es, c->backward},
             {&d->dq, NULL, qn * es, c->backward},
             {&d->dk, NULL, kn * es, c->backward},
             {&d->dv, NULL, kn * es, c->backward}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].want)
            continue;
        DEV_CK(cudaMalloc(t[i].dst, t[i].bytes ? t[i].bytes : 16));
        if (t[i].src && t[i].bytes)
            DEV_CK(cudaMemcpy(*t[i].dst, t[i].src, t[i].bytes, cudaMemcpyHostToDevice));
        else if (t[i].bytes)
            DEV_CK(cudaMemset(*t[i].dst, 0, t[i].bytes));
    }
    return FA4CP_OK;
}

/* the results back to the host buffers, for the verification */
static fa4cp_status dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, size_t qn, size_t kn, size_t es,
                              size_t les, rank_result *r)
{
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    if (qn > 0)
        DEV_CK(cudaMemcpy(b->out, d->out, qn * es, cudaMemcpyDeviceToHost));
    if (b->rows)
        DEV_CK(cudaMemcpy(b->lse, d->lse, (size_t)b->rows * c->heads * les, cudaMemcpyDeviceToHost));
    if (c->backward && qn > 0) {
        DEV_CK(cudaMemcpy(b->dq, d->dq, qn * es, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dk, d->dk, kn * es, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dv, d->dv, kn * es, cudaMemcpyDeviceToHost));
    }
    return FA4CP_OK;
}

static void dev_close(devbufs *d)
{
    if (!d->on)
        return;
    if (d->stream)
        cudaStreamSynchronize((cudaStream_t)d->stream);
    void *ps[] = {d->q, d->k, d->v, d->out, d->lse, d->dout, d->dq, d->dk, d->dv};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        if (ps[i])
            cudaFree(ps[i]);
    if (d->e0)
        cudaEventDestroy((cudaEvent_t)d->e0);
    if (d->e1)
        cudaEventDestroy((cudaEvent_t)d->e1);
    if (d->stream)
        cudaStreamDestroy((cudaStream_t)d->stream);
}

/* one timed CP call: CUDA events on the rank's stream */
static fa4cp_status dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                              rank_result *r)
{
    float f = 0;
    DEV_CK(cudaEventRecord((cudaEvent_t)d->e0, (cudaStream_t)d->stream));
    fa4cp_status st = bwd ? fa4cp_cp_bwd(cp, a) : fa4cp_cp_fwd(cp, a);
    if (st)
        return st;
    DEV_CK(cudaEventRecord((cudaEvent_t)d->e1, (cudaStream_t)d->stream));
    DEV_CK(cudaEventSynchronize((cudaEvent_t)d->e1));
    DEV_CK(cudaEventElapsedTime(&f, (cudaEvent_t)d->e0, (cudaEvent_t)d->e1));
    *ms = f;
    return FA4CP_OK;
}
int run_visible_gpus(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

#else
static fa4cp_status dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                             size_t qn, size_t kn, size_t es, size_t les, rank_result *r)
{
    (void)d, (void)c, (void)world_rank, (void)device, (void)b, (void)qn, (void)kn, (void)es, (void)les;
    snprintf(r->msg, sizeof r->msg, "run.backend cuda: this build has no CUDA");
    return FA4CP_ERR_UNSUPPORTED;
}
static fa4cp_status dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, size_t qn, size_t kn, size_t es,
                              size_t les, rank_result *r)
{
    (void)d, (void)c, (void)b, (void)qn, (void)kn, (void)es, (void)les, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
static void dev_close(devbufs *d) { (void)d; }
int run_visible_gpus(void) { return 0; }
static fa4cp_status dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                              rank_result *r)
{
    (void)d, (void)cp, (void)a, (void)bwd, (void)ms, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
#endif

/* one timed call: CUDA events on the cuda backend, host clock on the cpu */
static fa4cp_status timed_call(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                               rank_result *r)
{
    if (d->on)
        return dev_timed(d, cp, a, bwd, ms, r);
    double t0 = now_ms();
    fa4cp_status st = bwd ? fa4cp_cp_bwd(cp, a) : fa4cp_cp_fwd(cp, a);
    *ms = now_ms() - t0;
    return st;
}

/* Test only: FA4CP_RUN_INJECT_SIGNAL=RANK:SIG:CASE (SIG one of KILL, STOP,
 * TERM, SEGV) makes world rank RANK send itself SIG in case CASE after its
 * forward passes, while its peers are inside the case: a task killed, or
 * stopped like a hung node, in the middle of a case. */
static void inject_signal(const fa4cp_case *c, int world_rank)
{
    const char *e = getenv("FA4CP_RUN_INJECT_SIGNAL");
    int rank = -1, kase = -1;
    char name[16] = "";
    if (!e || sscanf(e, "%d:%15[A-Z]:%d", &rank, name, &kase) != 3 || rank != world_rank || kase != c->index)
        return;
    int sig = !strcmp(name, "KILL") ? SIGKILL : !strcmp(name, "STOP") ? SIGSTOP
            : !strcmp(name, "TERM") ? SIGTERM : !strcmp(name, "SEGV") ? SIGSEGV : 0;
    if (!sig)
        return;
    fprintf(stderr, "fa4cp-run: rank %d: FA4CP_RUN_INJECT_SIGNAL: SIG%s to itself in case %d\n", world_rank,
            name, c->index);
    fflush(stderr);
    raise(sig);
}

void run_case_rank(const fa4cp_case *c, fa4cp_comm *comm, int world_rank, int device, int inject, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int cp_rank = fa4cp_comm_rank(comm);
    int h = c->heads, hk = c->kv_heads, d = c->head_dim;
    size_t es = fa4cp_dtype_size(c->dtype), les = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype));
    bufs b;
    devbufs dev;
    fa4cp_cp *cp = NULL;
    double *times = NULL;
    void *glse = NULL, *gD = NULL;
    memset(&b, 0, sizeof b);
    memset(&dev, 0, sizeof dev);
    memset(r, 0, sizeof *r);
    r->rank = world_rank;
    r->fwd_ms = r->bwd_ms = -1;
    for (int t = 0; t < NERR; t++)
        r->err[t] = -1;
    fa4cp_log_set_rank(world_rank);
    b.rows = c->padded_tokens / c->cp;
    size_t qn = (size_t)b.rows * h * d, kn = (size_t)b.rows * hk * d;
    b.q = fa4cp_malloc(qn * es, "q");
    b.k = fa4cp_malloc(kn * es, "k");
    b.v = fa4cp_malloc(kn * es, "v");
    b.out = fa4cp_calloc(qn, es, "out");
    b.lse = fa4cp_calloc((size_t)b.rows * h, les, "lse");
    times = malloc(sizeof(double) * (size_t)c->iters);
    if (!b.q || !b.k || !b.v || !b.out || !b.lse || !times) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if (c->backward) {
        b.dout = fa4cp_malloc(qn * es, "dout");
        b.dq = fa4cp_calloc(qn, es, "dq");
        b.dk = fa4cp_calloc(kn, es, "dk");
        b.dv = fa4cp_calloc(kn, es, "dv");
        if (!b.dout || !b.dq || !b.dk || !b.dv) {
            st = FA4CP_ERR_NOMEM;
            goto out;
        }
        fa4cp_gen_fill_local(c, FA4CP_GEN_DOUT, cp_rank, b.dout);
    }
    fa4cp_gen_fill_local(c, FA4CP_GEN_Q, cp_rank, b.q);
    fa4cp_gen_fill_local(c, FA4CP_GEN_K, cp_rank, b.k);
    fa4cp_gen_fill_local(c, FA4CP_GEN_V, cp_rank, b.v);
    if (c->backend == FA4CP_BACKEND_CUDA && (st = dev_open(&dev, c, world_rank, device, &b, qn, kn, es, les, r)))
        goto out;
    if ((st = make_cp(c, comm, &cp)))
        goto out;
    if (getenv("FA4CP_RUN_INJECT_HANG") && atoi(getenv("FA4CP_RUN_INJECT_HANG")) == world_rank) {
        /* test only: this rank stops answering; the job must still end (exit 4) */
        for (int i = 0; i < 36000; i++) {
            struct timespec nap = {0, 100 * 1000 * 1000};
            nanosleep(&nap, NULL);
        }
    }
    if ((inject >> 1) - 1 == world_rank) {
        st = FA4CP_ERR_INTERNAL;
        snprintf(r->msg, sizeof r->msg, "injected fault (FA4CP_RUN_INJECT_FAULT=%d) before the first CP call", world_rank);
        goto out;
    }
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    a.batch = c->batch;
    a.cu_seqlens = c->cu_padded;
    a.seqused = c->seqlen;
    a.q = dev.on ? dev.q : b.q;
    a.k = dev.on ? dev.k : b.k;
    a.v = dev.on ? dev.v : b.v;
    a.out = dev.on ? dev.out : b.out;
    a.lse = dev.on ? dev.lse : b.lse;
    a.stream = dev.stream;
    for (int i = 0; i < c->warmup; i++)
        if ((st = fa4cp_cp_fwd(cp, &a)))
            goto out;
    for (int i = 0; i < c->iters; i++) {
        if (dev.on && i == c->iters - 1) /* per-step events on the last one */
            fa4cp_cp_set_timing(cp, 1);
        if ((st = fa4cp_comm_barrier(comm)))
            goto out;
        if ((st = timed_call(&dev, cp, &a, 0, &times[i], r)))
            goto out;
    }
    r->fwd_ms = median(times, c->iters);
    if (dev.on) {
        r->tf.struct_size = sizeof r->tf;
        r->timed = fa4cp_cp_last_timing(cp, &r->tf) == FA4CP_OK;
        fa4cp_cp_set_timing(cp, 0);
    }
    inject_signal(c, world_rank); /* test only: mid-case, between forward and backward */
    if (c->backward) {
        a.dout = dev.on ? dev.dout : b.dout;
        a.dq = dev.on ? dev.dq : b.dq;
        a.dk = dev.on ? dev.dk : b.dk;
        a.dv = dev.on ? dev.dv : b.dv;
        for (int i = 0; i < c->warmup; i++)
            if ((st = fa4cp_cp_bwd(cp, &a)))
                goto out;
        for (int i = 0; i < c->iters; i++) {
            if (dev.on && i == c->iters - 1)
                fa4cp_cp_set_timing(cp, 1);
            if ((st = fa4cp_comm_barrier(comm)))
                goto out;
            if ((st = timed_call(&dev, cp, &a, 1, &times[i], r)))
                goto out;
        }
        r->bwd_ms = median(times, c->iters);
        if (dev.on) {
            r->tb.struct_size = sizeof r->tb;
            r->timed = r->timed && fa4cp_cp_last_timing(cp, &r->tb) == FA4CP_OK;
            fa4cp_cp_set_timing(cp, 0);
        }
    }
    if (dev.on && (st = dev_fetch(&dev, c, &b, qn, kn, es, les, r)))
        goto out;
    const char *ie = getenv("FA4CP_RUN_INJECT_ERROR");
    if ((inject & 1) && cp_rank == c->cp - 1 && ie && !strcmp(ie, "dk") && c->backward) {
        /* test-only: corrupt one element of dk in the first sampled key row */
        int64_t row, off;
        int seq;
        if (pick_rows(c, cp_rank, 2, &row, 1) == 1) {
            seq_of_token(c, fa4cp_case_local_token(c, cp_rank, row), &seq, &off);
            int kh = sample_kv_head(c, cp_rank, seq, 2);
            size_t i = ((size_t)row * hk + kh) * (size_t)d + (size_t)(d - 1);
            fa4cp_store(c->dtype, b.dk, i, fa4cp_load(c->dtype, b.dk, i) + 8.0);
        }
    } else if ((inject & 1) && cp_rank == c->cp - 1) {
        /* test-only: corrupt one element of the first sampled query row */
        int64_t row, off;
        int seq;
        if (pick_rows(c, cp_rank, 1, &row, 1) == 1) {
            seq_of_token(c, fa4cp_case_local_token(c, cp_rank, row), &seq, &off);
            int head = sample_kv_head(c, cp_rank, seq, 1) * (h / hk);
            size_t i = ((size_t)row * h + head) * (size_t)d;
            fa4cp_store(c->dtype, b.out, i, fa4cp_load(c->dtype, b.out, i) + 8.0);
        }
    }
    if (c->check != FA4CP_CHECK_OFF) {
        if ((st = gather(comm, b.lse, (size_t)b.rows * h * les, &glse, r)))
            goto out;
        if (c->check == FA4CP_CHECK_FULL) {
            st = verify_full(c, comm, cp_rank, &b, glse, r);
        } else {
            if (c->backward) {
                b.D = fa4cp_malloc(sizeof(double) * (size_t)b.rows * h, "D");
                if (!b.D) {
                    st = FA4CP_ERR_NOMEM;
                    goto out;
                }
                for (int hh = 0; hh < h; hh++)
                    for (int64_t l = 0; l < b.rows; l++) {
                        double s = 0;
                        size_t base = ((size_t)l * h + hh) * d;
                        if (fa4cp_case_local_token(c, cp_rank, l) >= 0)
                            for (int x = 0; x < d; x++)
                                s += fa4cp_load(c->dtype, b.dout, base + x) * fa4cp_load(c->dtype, b.out, base + x);
                        b.D[(size_t)hh * b.rows + l] = s;
                    }
                if ((st = gather(comm, b.D, sizeof(double) * (size_t)b.rows * h, &gD, r)))
                    goto out;
            }
            st = verify_sampled(c, comm, cp_rank, &b, glse, gD, r);
        }
    }
out:
    r->status = st;
    if (st && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "%s", fa4cp_last_error()[0] ? fa4cp_last_error() : fa4cp_strerror(st));
    if (cp)
        fa4cp_cp_destroy(cp);
    dev_close(&dev);
    fa4cp_free(glse);
    fa4cp_free(gD);
    fa4cp_free(b.q);
    fa4cp_free(b.k);
    fa4cp_free(b.v);
    fa4cp_free(b.out);
    fa4cp_free(b.lse);
    fa4cp_free(b.dout);
    fa4cp_free(b.dq);
    fa4cp_free(b.dk);
    fa4cp_free(b.dv);
    fa4cp_free(b.D);
    free(times);
}

#else /* no CP executor in this build */

int run_exec_available(void) { return 0; }

int run_plan_print(const fa4cp_case *c, int cp_rank, FILE *f)
{
    (void)c;
    (void)cp_rank;
    (void)f;
    return -1;
}

int run_visible_gpus(void) { return 0; }

void run_case_rank(const fa4cp_case *c, fa4cp_comm *comm, int world_rank, int device, int inject, rank_result *r)
{
    (void)c;
    (void)comm;
    (void)device;
    (void)inject;
    memset(r, 0, sizeof *r);
    r->rank = world_rank;
    r->status = FA4CP_ERR_UNSUPPORTED;
    snprintf(r->msg, sizeof r->msg, "this build has no CP executor (lib/cp*.c)");
}

#endif
