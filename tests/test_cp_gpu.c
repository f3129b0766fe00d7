/* test_cp_gpu.c - context-parallel attention on the GPU, against the non-CP
 * cuda call and the CPU reference.
 *
 * usage: test_cp_gpu [small]   (small: one case per shape, for compute-sanitizer)
 * env:   FA4CP_TEST_ROUNDS=n   draws per matrix cell (default 1)
 *        FA4CP_TEST_CP=n       only the cells of cp = n (to run the sizes in parallel)
 *        FA4CP_TEST_GPUS=n     spread the simulated ranks over n GPUs (default 1:
 *                              every rank on the current GPU)
 *        FA4CP_TEST_TRANSPORT=nccl  the nccl transport, ranks as threads with one
 *                              GPU each (cp sizes up to FA4CP_TEST_GPUS)
 *
 * Ranks are threads over the local transport in device memory, each with its
 * own stream.  The matrix: cp in {2,3,4} x comm in {p2p, all_gather, a2a} x
 * mask in {none, causal, window (64,0) and (32,32) where the shape supports
 * it} x layout in {bshd, thd, thd with padding between sequences}; MHA and
 * GQA heads, head dim 64 and 128, bf16; then the other head dims of the
 * cuda table and MLA's (head_dim, head_dim_v) = (192, 128) over every shape
 * (skipped while the table lacks them).  Every case draws fresh lengths (0
 * included) and inputs, runs the non-CP cuda call and the CPU reference on
 * the global tensors, runs the CP forward and then the backward on the CP
 * forward's own out/lse, and compares out, lse, dq, dk, dv on real rows with
 * both; padding rows: out/lse untouched (poison), dq/dk/dv exactly 0; no
 * NaN/Inf.  Skips (TAP SKIP) without CUDA or without a device.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_CUDA
int main(void)
{
    skip_all("this build has no CUDA");
    return 0;
}
#else

#include <cuda_runtime_api.h>

#define MAXB 6

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            bail("%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));            \
    } while (0)

static int ngpus = 1;
static int use_nccl = 0;               /* FA4CP_TEST_TRANSPORT=nccl */
static fa4cp_comm *nccl_comms[9][8];   /* [cp][rank], made once per cp size */

/* the endpoints of a group of n ranks (nccl: one GPU each, reused) */
static void get_comms(int n, fa4cp_local_world **w, fa4cp_comm **out)
{
    if (use_nccl) {
        if (!nccl_comms[n][0]) {
            int devs[8];
            for (int r = 0; r < n; r++)
                devs[r] = r % ngpus;
            if (fa4cp_nccl_local_comms(n, devs, 120.0, nccl_comms[n]) != FA4CP_OK)
                bail("nccl comms of %d ranks: %s", n, fa4cp_last_error());
        }
        for (int r = 0; r < n; r++)
            out[r] = nccl_comms[n][r];
        *w = NULL;
        return;
    }
    if (fa4cp_local_world_create(n, 1, 60.0, w) != FA4CP_OK)
        bail("local world in device memory: %s", fa4cp_last_error());
    for (int r = 0; r < n; r++)
        if (fa4cp_local_comm(*w, r, &out[r]) != FA4CP_OK)
            bail("local comm: %s", fa4cp_last_error());
}

typedef struct tcase {
    fa4cp_cp_config cfg;
    int cp, B, seqlen;
    int pad;
    int with_dlse;
    int32_t cu[MAXB + 1], used[MAXB];
} tcase;

typedef struct gtensors {
    void *q, *k, *v, *dout, *dlse;
    void *out, *lse, *dq, *dk, *dv;      /* CPU reference */
    void *gout, *glse, *gdq, *gdk, *gdv; /* non-CP cuda call */
    void *cout, *clse, *cdq, *cdk, *cdv; /* CP results, unsharded */
} gtensors;

typedef struct rank_job {
    const tcase *c;
    fa4cp_comm *comm;
    int dev;
    /* host, rank-local */
    void *q, *k, *v, *dout, *dlse, *out, *lse, *dq, *dk, *dv;
    fa4cp_status st;
    char err[600];
} rank_job;

static int64_t G_of(const tcase *c) { return c->cu[c->B]; }
static int dv_of(const tcase *c) { return c->cfg.head_dim_v ? c->cfg.head_dim_v : c->cfg.head_dim; }
/* q, dq: [rows, heads, d]; k, dk: [rows, kv_heads, d] */
static size_t rowq(const tcase *c) { return (size_t)c->cfg.heads * (size_t)c->cfg.head_dim; }
static size_t rowk(const tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)c->cfg.head_dim; }
/* out, dout: [rows, heads, dv]; v, dv: [rows, kv_heads, dv] */
static size_t rowo(const tcase *c) { return (size_t)c->cfg.heads * (size_t)dv_of(c); }
static size_t rowv(const tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)dv_of(c); }

static void describe(const tcase *c, char *buf, size_t n)
{
    char mask[48];
    if (c->cfg.window_left >= 0 || c->cfg.window_right >= 0)
        snprintf(mask, sizeof mask, "%swindow (%d,%d)", c->cfg.causal ? "causal " : "",
                 c->cfg.window_left, c->cfg.window_right);
    else
        snprintf(mask, sizeof mask, "%s", c->cfg.causal ? "causal" : "no mask");
    int at = snprintf(buf, n, "cp=%d %s %s%s %s h=%d/%d d=%d dv=%d%s lens", c->cp,
                      fa4cp_cp_comm_name(c->cfg.comm), fa4cp_cp_format_name(c->cfg.format),
                      c->pad ? "+pad" : "", mask, c->cfg.heads, c->cfg.kv_heads, c->cfg.head_dim,
                      dv_of(c), c->with_dlse ? " dlse" : "");
    for (int i = 0; i < c->B && at > 0 && (size_t)at < n; i++)
        at += snprintf(buf + at, n - (size_t)at, " %d/%d",
                       c->pad ? c->used[i] : c->cu[i + 1] - c->cu[i], c->cu[i + 1] - c->cu[i]);
}

static int is_real(const tcase *c, int64_t row)
{
    int s = fa4cp_thd_seq_of_row(c->B, c->cu, row);
    return s >= 0 && row - c->cu[s] < (c->pad ? c->used[s] : c->cu[s + 1] - c->cu[s]);
}

/* device copy of a host array (16 bytes of slack) */
static void *dput(const void *h, size_t bytes)
{
    void *d = NULL;
    CK(cudaMalloc(&d, bytes + 16));
    if (h && bytes)
        CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

static void dget(void *h, const void *d, size_t bytes)
{
    if (bytes)
        CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* ------------------------------------------------------------------ the ranks */

static void *rank_main(void *p)
{
    rank_job *j = p;
    const tcase *c = j->c;
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(ld);
    const int64_t T = G_of(c) / c->cp;
    const size_t nq = (size_t)T * rowq(c) * es, nk = (size_t)T * rowk(c) * es;
    const size_t no = (size_t)T * rowo(c) * es, nv = (size_t)T * rowv(c) * es;
    const size_t nl = (size_t)c->cfg.heads * (size_t)T * ls;
    fa4cp_cp *cp = NULL;
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    cudaStream_t s = NULL;
    CK(cudaSetDevice(j->dev));
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *q = dput(j->q, nq), *k = dput(j->k, nk), *v = dput(j->v, nv), *dout = dput(j->dout, no);
    void *dlse = j->dlse ? dput(j->dlse, nl) : NULL;
    void *out = dput(j->out, no), *lse = dput(j->lse, nl); /* poison */
    void *dq = dput(j->dq, nq), *dk = dput(j->dk, nk), *dv = dput(j->dv, nv);
    j->st = fa4cp_cp_create(&c->cfg, j->comm, &cp);
    if (j->st != FA4CP_OK)
        goto out;
    a.batch = c->B;
    if (c->cfg.format == FA4CP_CP_BSHD) {
        a.seqlen = c->seqlen;
    } else {
        a.cu_seqlens = c->cu;
        a.seqused = c->pad ? c->used : NULL;
    }
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = out;
    a.lse = lse;
    a.dout = dout;
    a.dlse = dlse;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.stream = s;
    j->st = fa4cp_cp_fwd(cp, &a);
    if (j->st == FA4CP_OK)
        j->st = fa4cp_cp_bwd(cp, &a);
    if (j->st == FA4CP_OK) {
        CK(cudaStreamSynchronize(s));
        dget(j->out, out, no);
        dget(j->lse, lse, nl);
        dget(j->dq, dq, nq);
        dget(j->dk, dk, nk);
        dget(j->dv, dv, nv);
    }
out:
    if (j->st != FA4CP_OK)
        snprintf(j->err, sizeof j->err, "%s", fa4cp_last_error());
    fa4cp_cp_destroy(cp);
    CK(cudaStreamSynchronize(s));
    void *ds[] = {q, k, v, dout, dlse, out, lse, dq, dk, dv};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        if (ds[i])
            CK(cudaFree(ds[i]));
    CK(cudaStreamDestroy(s));
    return NULL;
}

static int run_cp(const tcase *c, gtensors *g, char *err, size_t errn)
{
    const int n = c->cp;
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(ld);
    const int64_t T = G_of(c) / n;
    const int H = c->cfg.heads;
    fa4cp_local_world *w = NULL;
    rank_job jobs[8];
    pthread_t th[8];
    int good = 1;
    fa4cp_comm *comms[8];
    memset(jobs, 0, sizeof jobs);
    get_comms(n, &w, comms);
    for (int r = 0; r < n; r++) {
        rank_job *j = &jobs[r];
        j->c = c;
        j->dev = r % ngpus;
        j->comm = comms[r];
        size_t nq = (size_t)T * rowq(c) * es + 16, nk = (size_t)T * rowk(c) * es + 16,
               no = (size_t)T * rowo(c) * es + 16, nv = (size_t)T * rowv(c) * es + 16,
               nl = (size_t)H * T * ls + 16;
        j->q = malloc(nq);
        j->k = malloc(nk);
        j->v = malloc(nv);
        j->dout = malloc(no);
        j->dlse = c->with_dlse ? malloc(nl) : NULL;
        j->out = malloc(no);
        j->lse = malloc(nl);
        j->dq = malloc(nq);
        j->dk = malloc(nk);
        j->dv = malloc(nv);
        fa4cp_cp_shard(c->B, c->cu, n, r, rowq(c) * es, g->q, j->q);
        fa4cp_cp_shard(c->B, c->cu, n, r, rowk(c) * es, g->k, j->k);
        fa4cp_cp_shard(c->B, c->cu, n, r, rowv(c) * es, g->v, j->v);
        fa4cp_cp_shard(c->B, c->cu, n, r, rowo(c) * es, g->dout, j->dout);
        if (j->dlse)
            fa4cp_cp_shard_lse(c->B, c->cu, n, r, H, ls, g->dlse, j->dlse);
        test_poison(dt, j->out, (size_t)T * rowo(c));
        test_poison(ld, j->lse, (size_t)T * H);
        test_poison(dt, j->dq, (size_t)T * rowq(c));
        test_poison(dt, j->dk, (size_t)T * rowk(c));
        test_poison(dt, j->dv, (size_t)T * rowv(c));
    }
    for (int r = 0; r < n; r++)
        pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    for (int r = 0; r < n; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < n; r++) {
        rank_job *j = &jobs[r];
        if (j->st != FA4CP_OK && good) {
            snprintf(err, errn, "rank %d: %s: %s", r, fa4cp_strerror(j->st), j->err);
            good = 0;
        }
        fa4cp_cp_unshard(c->B, c->cu, n, r, rowo(c) * es, j->out, g->cout);
        fa4cp_cp_unshard_lse(c->B, c->cu, n, r, H, ls, j->lse, g->clse);
        fa4cp_cp_unshard(c->B, c->cu, n, r, rowq(c) * es, j->dq, g->cdq);
        fa4cp_cp_unshard(c->B, c->cu, n, r, rowk(c) * es, j->dk, g->cdk);
        fa4cp_cp_unshard(c->B, c->cu, n, r, rowv(c) * es, j->dv, g->cdv);
        void *ps[] = {j->q, j->k, j->v, j->dout, j->dlse, j->out, j->lse, j->dq, j->dk, j->dv};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
            free(ps[i]);
        if (!use_nccl)
            fa4cp_comm_destroy(j->comm);
    }
    fa4cp_local_world_destroy(w);
    return good;
}

/* The non-CP cuda call on the global tensors (device 0). */
static int run_cuda(const tcase *c, const fa4cp_attn_args *host, gtensors *g, char *err, size_t errn)
{
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(ld);
    const int64_t G = G_of(c);
    const size_t nq = (size_t)G * rowq(c) * es, nk = (size_t)G * rowk(c) * es;
    const size_t no = (size_t)G * rowo(c) * es, nv = (size_t)G * rowv(c) * es;
    const size_t nl = (size_t)G * c->cfg.heads * ls;
    fa4cp_attn_args a = *host;
    int good = 1;
    CK(cudaSetDevice(0));
    void *cu = dput(c->cu, sizeof c->cu), *used = dput(c->used, sizeof c->used);
    void *q = dput(g->q, nq), *k = dput(g->k, nk), *v = dput(g->v, nv), *dout = dput(g->dout, no);
    void *dlse = dput(g->dlse, nl), *out = dput(g->gout, no), *lse = dput(g->glse, nl);
    void *dq = dput(NULL, nq), *dk = dput(NULL, nk), *dv = dput(NULL, nv);
    a.cu_seqlens_q = a.cu_seqlens_k = cu;
    a.seqused_q = a.seqused_k = c->pad ? used : NULL;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = out;
    a.lse = lse;
    a.dout = dout;
    a.dlse = host->dlse ? dlse : NULL;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.stream = NULL;
    if (fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &a) != FA4CP_OK ||
        fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &a) != FA4CP_OK) {
        snprintf(err, errn, "non-CP cuda call: %s", fa4cp_last_error());
        good = 0;
    }
    CK(cudaDeviceSynchronize());
    dget(g->gout, out, no);
    dget(g->glse, lse, nl);
    dget(g->gdq, dq, nq);
    dget(g->gdk, dk, nk);
    dget(g->gdv, dv, nv);
    void *ds[] = {cu, used, q, k, v, dout, dlse, out, lse, dq, dk, dv};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        CK(cudaFree(ds[i]));
    return good;
}

/* ------------------------------------------------------------------ comparison */

typedef struct cmp {
    double err;
    size_t nonfinite, pad_bad, masked_bad;
} cmp;

static cmp compare(const tcase *c, fa4cp_dtype dt, const void *x, const void *ref, int64_t rows,
                   size_t width, int want_zero, int check_pad)
{
    cmp k = {0};
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++) {
        int real = is_real(c, r);
        for (size_t e = 0; e < width; e++) {
            size_t i = (size_t)r * width + e;
            if (!real) {
                if (check_pad && (want_zero ? fa4cp_load(dt, x, i) != 0.0 : !test_is_poison(dt, x, i)))
                    k.pad_bad++;
                continue;
            }
            double v = fa4cp_load(dt, x, i), w = fa4cp_load(dt, ref, i);
            if (!isfinite(v)) {
                k.nonfinite++;
                continue;
            }
            num += (v - w) * (v - w);
            den += w * w;
        }
    }
    k.err = k.nonfinite ? INFINITY : den > 0 ? sqrt(num / den) : sqrt(num);
    return k;
}

static cmp compare_lse(const tcase *c, const void *x, const void *ref, int check_pad)
{
    cmp k = {0};
    fa4cp_dtype ld = fa4cp_lse_dtype(c->cfg.dtype);
    double num = 0, den = 0;
    int64_t G = G_of(c);
    for (int h = 0; h < c->cfg.heads; h++)
        for (int64_t r = 0; r < G; r++) {
            size_t i = (size_t)h * (size_t)G + (size_t)r;
            if (!is_real(c, r)) {
                if (check_pad && !test_is_poison(ld, x, i))
                    k.pad_bad++;
                continue;
            }
            double v = fa4cp_load(ld, x, i), w = fa4cp_load(ld, ref, i);
            if (w == -INFINITY) {
                if (v != -INFINITY)
                    k.masked_bad++;
                continue;
            }
            if (!isfinite(v)) {
                k.nonfinite++;
                continue;
            }
            num += (v - w) * (v - w);
            den += w * w;
        }
    k.err = k.nonfinite ? INFINITY : den > 0 ? sqrt(num / den) : sqrt(num);
    return k;
}

static double worst_cuda, worst_cpu;

static double tol_of(const tcase *c) { return c->cfg.heads != c->cfg.kv_heads ? 3.5e-2 : 2.5e-2; }

/* CP results against one reference set; 0 on a failure (with diag lines) */
static int check_against(const tcase *c, const char *desc, const char *refname, gtensors *g,
                         const void *out, const void *lse, const void *dq, const void *dk,
                         const void *dv, double *worst)
{
    const fa4cp_dtype dt = c->cfg.dtype;
    const int64_t G = G_of(c);
    const double tol = tol_of(c);
    int good = 1;
    cmp o = compare(c, dt, g->cout, out, G, rowo(c), 0, 1);
    cmp l = compare_lse(c, g->clse, lse, 1);
    cmp q = compare(c, dt, g->cdq, dq, G, rowq(c), 1, 1);
    cmp k = compare(c, dt, g->cdk, dk, G, rowk(c), 1, 1);
    cmp v = compare(c, dt, g->cdv, dv, G, rowv(c), 1, 1);
    cmp *cs[] = {&o, &l, &q, &k, &v};
    const char *names[] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; i++) {
        if (cs[i]->err / tol > *worst)
            *worst = cs[i]->err / tol;
        if (!(cs[i]->err <= tol) || cs[i]->nonfinite || cs[i]->pad_bad || cs[i]->masked_bad) {
            diag("%s: against %s: %s error %.3g (tol %g), non-finite %zu, padding rows wrong "
                 "%zu, fully masked rows wrong %zu",
                 desc, refname, names[i], cs[i]->err, tol, cs[i]->nonfinite, cs[i]->pad_bad,
                 cs[i]->masked_bad);
            good = 0;
        }
    }
    return good;
}

/* ------------------------------------------------------------------ one case */

static void fill_lengths(test_rng *rng, tcase *c, int maxlen)
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
            P = L / m * m;
        }
        c->cu[i + 1] = c->cu[i] + P;
    }
}

static int run_case(test_rng *rng, tcase *c)
{
    const fa4cp_dtype dt = c->cfg.dtype, ld = fa4cp_lse_dtype(dt);
    const size_t es = fa4cp_dtype_size(dt), ls = fa4cp_dtype_size(ld);
    const int64_t G = G_of(c);
    const int H = c->cfg.heads;
    const size_t nq = (size_t)G * rowq(c), nk = (size_t)G * rowk(c), nl = (size_t)G * H;
    const size_t no = (size_t)G * rowo(c), nv = (size_t)G * rowv(c);
    char desc[400], err[700] = "";
    gtensors g;
    int good = 1;
    describe(c, desc, sizeof desc);
    void **all[] = {&g.q,    &g.k,    &g.v,   &g.dout, &g.dlse, &g.out,  &g.lse,
                    &g.dq,   &g.dk,   &g.dv,  &g.gout, &g.glse, &g.gdq,  &g.gdk,
                    &g.gdv,  &g.cout, &g.clse, &g.cdq, &g.cdk,  &g.cdv};
    /* q k v dout dlse | out lse dq dk dv (cpu) | the same (non-CP cuda) | the same (CP) */
    size_t sizes[] = {nq * es, nk * es, nv * es, no * es, nl * ls, no * es, nl * ls,
                      nq * es, nk * es, nv * es, no * es, nl * ls, nq * es, nk * es,
                      nv * es, no * es, nl * ls, nq * es, nk * es, nv * es};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        *all[i] = malloc(sizes[i] + 16);
    test_fill(rng, dt, g.q, nq, 1.0);
    test_fill(rng, dt, g.k, nk, 1.0);
    test_fill(rng, dt, g.v, nv, 1.0);
    test_fill(rng, dt, g.dout, no, 1.0);
    test_fill(rng, ld, g.dlse, nl, 0.5);
    void *poisoned[] = {g.out, g.gout, g.cout};
    for (int i = 0; i < 3; i++)
        test_poison(dt, poisoned[i], no);
    test_poison(ld, g.lse, nl);
    test_poison(ld, g.glse, nl);
    test_poison(ld, g.clse, nl);

    fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
    a.dtype = dt;
    a.batch = c->B;
    a.heads = H;
    a.kv_heads = c->cfg.kv_heads;
    a.head_dim = c->cfg.head_dim;
    a.head_dim_v = c->cfg.head_dim_v;
    a.total_q = a.total_k = G;
    a.cu_seqlens_q = a.cu_seqlens_k = c->cu;
    a.seqused_q = a.seqused_k = c->pad ? c->used : NULL;
    a.softmax_scale = c->cfg.softmax_scale;
    a.causal = c->cfg.causal;
    a.window_left = c->cfg.window_left;
    a.window_right = c->cfg.window_right;
    a.q = g.q;
    a.k = g.k;
    a.v = g.v;
    a.out = g.out;
    a.lse = g.lse;
    a.dout = g.dout;
    a.dlse = c->with_dlse ? g.dlse : NULL;
    a.dq = g.dq;
    a.dk = g.dk;
    a.dv = g.dv;
    if (fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK ||
        fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK)
        bail("reference failed for %s: %s", desc, fa4cp_last_error());
    if (!run_cuda(c, &a, &g, err, sizeof err)) {
        diag("%s: %s", desc, err);
        good = 0;
        goto out;
    }
    if (!run_cp(c, &g, err, sizeof err)) {
        diag("%s: %s", desc, err);
        good = 0;
        goto out;
    }
    good &= check_against(c, desc, "the non-CP cuda call", &g, g.gout, g.glse, g.gdq, g.gdk, g.gdv,
                          &worst_cuda);
    good &= check_against(c, desc, "the cpu reference", &g, g.out, g.lse, g.dq, g.dk, g.dv,
                          &worst_cpu);
out:
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(*all[i]);
    return good;
}

static void pick_heads(int comm, int cp, int idx, int *h, int *hk)
{
    static const int opts[][2] = {{8, 8}, {12, 2}, {8, 4}};
    if (comm != FA4CP_CP_A2A) {
        *h = opts[idx % 3][0];
        *hk = opts[idx % 3][1];
        return;
    }
    static const int a2a[][2] = {{8, 8}, {12, 6}, {8, 4}, {12, 3}, {6, 6}, {12, 4}};
    for (int k = 0; k < 6; k++) {
        int j = (idx + k) % 6;
        if (a2a[j][0] % cp == 0 && a2a[j][1] % cp == 0) {
            *h = a2a[j][0];
            *hk = a2a[j][1];
            return;
        }
    }
    *h = *hk = 4 * cp;
}

int main(int argc, char **argv)
{
    int small = argc > 1 && strcmp(argv[1], "small") == 0;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
        skip_all("no CUDA device");
    if (!fa4cp_backend_available(FA4CP_BACKEND_CUDA))
        skip_all("the cuda backend cannot run here: %s", fa4cp_last_error());
    const char *eg = getenv("FA4CP_TEST_GPUS");
    if (eg && atoi(eg) > 0)
        ngpus = atoi(eg) < ndev ? atoi(eg) : ndev;
    const char *et = getenv("FA4CP_TEST_TRANSPORT");
    if (et && strcmp(et, "nccl") == 0) {
        if (!fa4cp_nccl_available())
            skip_all("FA4CP_TEST_TRANSPORT=nccl but this build has no NCCL");
        if (ngpus < 2)
            skip_all("FA4CP_TEST_TRANSPORT=nccl needs FA4CP_TEST_GPUS >= 2 (one GPU per rank)");
        use_nccl = 1;
    }
    test_rng rng = test_rng_init("test_cp_gpu");
    static const int masks[][3] = {{0, -1, -1}, {1, -1, -1}, {0, 64, 0}, {0, 32, 32}};
    static const char *mask_names[] = {"no mask", "causal", "window (64,0)", "window (32,32)"};
    int idx = 0, rounds = 1, only_cp = 0;
    const char *oc = getenv("FA4CP_TEST_CP");
    if (oc && atoi(oc) > 0)
        only_cp = atoi(oc);
    const char *re = getenv("FA4CP_TEST_ROUNDS");
    if (re && atoi(re) > 0)
        rounds = atoi(re);
    diag("ranks on %d GPU(s), transport %s", ngpus, use_nccl ? "nccl" : "local (device memory)");
    plan(0);
    for (int cp = 2; cp <= 4; cp++)
        for (int comm = 0; comm < 3; comm++)
            for (int mk = 0; mk < 4; mk++) {
                if (comm == FA4CP_CP_P2P && mk >= 2)
                    continue; /* refused */
                if ((small && (cp != 2 || mk >= 2)) || (only_cp && cp != only_cp) ||
                    (use_nccl && cp > ngpus))
                    continue;
                int pass = 0, total = 0;
                for (int f = 0; f < (small ? 2 : 6 * rounds); f++, idx++) {
                    tcase c;
                    memset(&c, 0, sizeof c);
                    fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
                    c.cfg = init;
                    c.cfg.backend = FA4CP_BACKEND_CUDA;
                    c.cp = cp;
                    c.cfg.comm = (fa4cp_cp_comm_type)comm;
                    c.cfg.format = f % 3 == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                    c.pad = f % 3 == 2;
                    c.cfg.causal = masks[mk][0];
                    c.cfg.window_left = masks[mk][1];
                    c.cfg.window_right = masks[mk][2];
                    c.cfg.dtype = FA4CP_BF16;
                    c.cfg.head_dim = (f / 3 + idx) % 2 ? 128 : 64;
                    pick_heads(comm, cp, idx + cp, &c.cfg.heads, &c.cfg.kv_heads);
                    c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                    c.with_dlse = idx % 2;
                    fill_lengths(&rng, &c, small ? 96 : 192);
                    total++;
                    pass += run_case(&rng, &c);
                }
                ok(pass == total,
                   "cp=%d %s %s: %d/%d cases (bshd, thd, thd+pad; MHA/GQA; d 64/128) match the "
                   "non-CP cuda call and the cpu reference",
                   cp, fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), mask_names[mk], pass, total);
            }
    /* padding-only chunks and empty sequences, every shape, causal and not */
    for (int comm = 0; comm < 3 && !small && (!only_cp || only_cp == 4) && (!use_nccl || ngpus >= 4); comm++)
        for (int causal = 0; causal < 2; causal++) {
            tcase c;
            memset(&c, 0, sizeof c);
            fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
            c.cfg = init;
            c.cfg.backend = FA4CP_BACKEND_CUDA;
            c.cp = 4;
            c.cfg.comm = (fa4cp_cp_comm_type)comm;
            c.cfg.format = FA4CP_CP_THD;
            c.pad = 1;
            c.cfg.causal = causal;
            c.cfg.dtype = FA4CP_BF16;
            c.cfg.head_dim = 64;
            c.cfg.heads = 8;
            c.cfg.kv_heads = 4;
            c.with_dlse = causal;
            static const int lens[][2] = {{0, 0}, {1, 32}, {13, 32}, {16, 32}, {0, 8}, {150, 160}};
            c.B = 6;
            for (int i = 0; i < c.B; i++) {
                c.used[i] = lens[i][0];
                c.cu[i + 1] = c.cu[i] + lens[i][1];
            }
            ok(run_case(&rng, &c), "%s %s: empty sequences and padding-only chunks, no NaN",
               fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), causal ? "causal" : "no mask");
        }
    /* The head dims of issue 20 beyond the matrix's (64, 64) and (128, 128),
     * MLA's (192, 128) with v narrower than q/k among them: every shape, cp
     * 2-4, no mask / causal / windows (the shapes that take them), bshd, thd,
     * thd+pad, MHA and GQA.  A pair the cuda table (fa4cp_attn_supports)
     * lacks is skipped, naming the table, and runs once its kernels land. */
    static const int pairs[][2] = {{32, 32}, {80, 80}, {96, 96}, {192, 192}, {256, 256}, {192, 128}};
    for (int pi = 0; pi < 6; pi++)
        for (int comm = 0; comm < 3; comm++) {
            const int d = pairs[pi][0], dv = pairs[pi][1];
            const char *cname = fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm);
            if (fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, d, dv, 1) != FA4CP_OK) {
                skip(1, "(head_dim, head_dim_v) = (%d, %d) over %s: %s", d, dv, cname, fa4cp_last_error());
                continue;
            }
            int pass = 0, total = 0;
            for (int f = 0; f < (small ? 2 : 6); f++, idx++) {
                tcase c;
                memset(&c, 0, sizeof c);
                fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
                c.cfg = init;
                c.cfg.backend = FA4CP_BACKEND_CUDA;
                c.cp = only_cp ? only_cp : small ? 2 : 2 + idx % 3;
                if (use_nccl && c.cp > ngpus)
                    c.cp = ngpus;
                c.cfg.comm = (fa4cp_cp_comm_type)comm;
                c.cfg.format = f % 3 == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                c.pad = f % 3 == 2;
                const int mk = f % (comm == FA4CP_CP_P2P || small ? 2 : 4);
                c.cfg.causal = masks[mk][0];
                c.cfg.window_left = masks[mk][1];
                c.cfg.window_right = masks[mk][2];
                c.cfg.dtype = FA4CP_BF16;
                c.cfg.head_dim = d;
                c.cfg.head_dim_v = dv;
                pick_heads(comm, c.cp, idx, &c.cfg.heads, &c.cfg.kv_heads);
                c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                c.with_dlse = idx % 2;
                fill_lengths(&rng, &c, small ? 96 : 160);
                total++;
                pass += run_case(&rng, &c);
            }
            ok(pass == total,
               "(head_dim, head_dim_v) = (%d, %d) over %s: %d/%d cases (cp 2-4, masks, bshd, thd, thd+pad, "
               "MHA/GQA) match the non-CP cuda call and the cpu reference",
               d, dv, cname, pass, total);
        }
    diag("largest error / tolerance: against the non-CP cuda call %.3g, against the cpu "
         "reference %.3g",
         worst_cuda, worst_cpu);
    for (int n = 0; n < 9; n++)
        for (int r = 0; r < 8; r++)
            fa4cp_comm_destroy(nccl_comms[n][r]);
    return done_testing();
}
#endif
