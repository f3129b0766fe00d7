/* test_attn.c - conformance of the raw attention call.
 *
 * usage: test_attn [cpu|cuda] [det|hd|bwd|fwd|one|pack|packsmall]
 *                                       (cuda det: only the deterministic-backward cases;
 *                                        cuda hd: only the head-dim families, a small run for
 *                                        compute-sanitizer and FA4CP_CUDA_TUNING tile variants;
 *                                        cuda bwd: the backward of every head dim, both modes,
 *                                        the deterministic cases and the causal d128 tiles;
 *                                        cuda fwd: every case of the full run, forward only,
 *                                        about a minute on an H200; cuda one: only the
 *                                        one-sequence calls, closed-form work order against
 *                                        the list kernel's; cuda pack: only the packed GQA
 *                                        forward cases, packsmall: two small ones of them,
 *                                        for compute-sanitizer)
 *
 * Every case draws fresh random shapes and inputs, poisons the outputs, runs
 * the backend and compares with a dense float64 implementation written here
 * from the definition (materialised scores), independent of lib/attn_cpu.c:
 * out, lse, dq, dk, dv; no NaN/Inf; rows past seqused_q untouched; padding
 * gradients exactly 0; fully masked rows give out 0 and lse -inf.  On the cpu
 * backend the gradients are also checked against central finite differences,
 * the random cases draw a head_dim_v apart from head_dim, and the head dims
 * of models in use run through the same checks: (192, 128) (MLA), (64, 32),
 * (80, 80), (96, 96), (256, 256) and the rest of the cuda table (32, 64, 128,
 * 192); on the cuda backend every (head_dim, head_dim_v) of its table runs
 * them, the backward part only where the table (fa4cp_attn_supports) has a
 * backward kernel (the TAP line says "forward only" otherwise), and long
 * single sequences of d 256 and (192, 128) too.  The cuda backend's refusal
 * of head dims it has no kernel for is checked on every machine (it comes
 * before any device call).  On cuda the backward of every head dim of the
 * kernels (32 .. 256, (192, 128)) is also checked on its own, with out and
 * lse from the float64 reference (cuda_bwd_head_dims).
 */
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXB 6

typedef struct tcase {
    fa4cp_dtype dtype;
    int batch, H, Hk, d;
    int dv;        /* head dim of v, out, dout, dv */
    int dv_as_zero; /* pass head_dim_v = 0 (it equals d) */
    int causal, wl, wr;
    int use_seqused;
    int32_t cu_q[MAXB + 1], cu_k[MAXB + 1], used_q[MAXB], used_k[MAXB];
    int64_t total_q, total_k; /* may exceed cu[batch]: rows in no sequence */
    double scale;
} tcase;

typedef struct tensors {
    void *q, *k, *v, *out, *lse, *dout, *dlse, *dq, *dk, *dv;
    /* dense float64 results */
    double *o_ref, *lse_ref, *dq_ref, *dk_ref, *dv_ref;
} tensors;

static fa4cp_backend backend = FA4CP_BACKEND_CPU;
static int deterministic = 0; /* cuda: ask for the deterministic backward */
static int fwd_only = 0;      /* "test_attn cuda fwd": check the forward of every case, no backward */

/* ------------------------------------------------------------------ shapes */

static void random_case(test_rng *r, tcase *c, fa4cp_dtype dtype, int maxlen)
{
    memset(c, 0, sizeof *c);
    c->dtype = dtype;
    c->batch = test_rng_int(r, 1, MAXB);
    static const int hk_opts[][2] = {{1, 1}, {2, 2}, {4, 2}, {6, 3}, {4, 1}, {3, 3}};
    int o = test_rng_int(r, 0, 5);
    c->H = hk_opts[o][0];
    c->Hk = hk_opts[o][1];
    c->d = backend == FA4CP_BACKEND_CUDA ? (test_rng_int(r, 0, 1) ? 64 : 128) : test_rng_int(r, 1, 3) * 8;
    /* cpu: v of another width half of the time (any width: 1 to 40) */
    c->dv = backend == FA4CP_BACKEND_CPU && test_rng_int(r, 0, 1) ? test_rng_int(r, 1, 40) : c->d;
    c->dv_as_zero = c->dv == c->d && test_rng_int(r, 0, 1);
    int mask = test_rng_int(r, 0, 4); /* none, causal, window L, window L+R, causal+window L */
    c->causal = mask == 1 || mask == 4;
    c->wl = (mask >= 2) ? test_rng_int(r, 0, 12) : -1;
    c->wr = mask == 3 ? test_rng_int(r, 0, 12) : -1;
    c->use_seqused = test_rng_int(r, 0, 1);
    int self = test_rng_int(r, 0, 2) != 0; /* mostly self-attention lengths */
    c->cu_q[0] = c->cu_k[0] = 0;
    for (int b = 0; b < c->batch; b++) {
        int lq = test_rng_int(r, 0, 5) == 0 ? 0 : test_rng_int(r, 1, maxlen);
        int lk = self ? lq : (test_rng_int(r, 0, 5) == 0 ? 0 : test_rng_int(r, 1, maxlen));
        int pq = lq, pk = lk;
        if (c->use_seqused) {
            pq += test_rng_int(r, 0, 5);
            pk = self ? pq : pk + test_rng_int(r, 0, 5);
            c->used_q[b] = lq;
            c->used_k[b] = lk;
        }
        c->cu_q[b + 1] = c->cu_q[b] + pq;
        c->cu_k[b + 1] = c->cu_k[b] + pk;
    }
    c->total_q = c->cu_q[c->batch] + test_rng_int(r, 0, 3);
    c->total_k = c->cu_k[c->batch] + test_rng_int(r, 0, 3);
    c->scale = test_rng_int(r, 0, 1) ? 0 : 0.05 + 0.3 * test_rng_unit(r);
}

static void describe(const tcase *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s b=%d h=%d/%d d=%d dv=%d%s causal=%d window=(%d,%d) seqused=%d rows q/k=%lld/%lld",
             fa4cp_dtype_name(c->dtype), c->batch, c->H, c->Hk, c->d, c->dv,
             c->dv_as_zero ? " (as 0)" : "", c->causal, c->wl, c->wr,
             c->use_seqused, (long long)c->total_q, (long long)c->total_k);
}

static int64_t len_q(const tcase *c, int b) { return c->use_seqused ? c->used_q[b] : c->cu_q[b + 1] - c->cu_q[b]; }
static int64_t len_k(const tcase *c, int b) { return c->use_seqused ? c->used_k[b] : c->cu_k[b + 1] - c->cu_k[b]; }

/* mask from the definition (bottom-right aligned) */
static int sees(const tcase *c, int64_t i, int64_t j, int64_t sq, int64_t sk)
{
    int64_t diag = i + sk - sq;
    if ((c->causal || c->wr >= 0) && j > diag + (c->causal ? 0 : c->wr))
        return 0;
    if (c->wl >= 0 && j < diag - c->wl)
        return 0;
    return 1;
}

static double scale_of(const tcase *c) { return c->scale > 0 ? c->scale : 1.0 / sqrt((double)c->d); }

static size_t nq(const tcase *c) { return (size_t)c->total_q * (size_t)c->H * (size_t)c->d; }
static size_t nk(const tcase *c) { return (size_t)c->total_k * (size_t)c->Hk * (size_t)c->d; }
/* out/dout and v/dv: head_dim_v wide */
static size_t no(const tcase *c) { return (size_t)c->total_q * (size_t)c->H * (size_t)c->dv; }
static size_t nv(const tcase *c) { return (size_t)c->total_k * (size_t)c->Hk * (size_t)c->dv; }
static size_t nl(const tcase *c) { return (size_t)c->total_q * (size_t)c->H; }

/* is physical q row a real token? */
static int real_q(const tcase *c, int64_t row)
{
    for (int b = 0; b < c->batch; b++)
        if (row >= c->cu_q[b] && row < c->cu_q[b] + len_q(c, b))
            return 1;
    return 0;
}
static int real_k(const tcase *c, int64_t row)
{
    for (int b = 0; b < c->batch; b++)
        if (row >= c->cu_k[b] && row < c->cu_k[b] + len_k(c, b))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ dense float64 reference */

static void dense(const tcase *c, tensors *t, int with_bwd)
{
    const int d = c->d, dv = c->dv, H = c->H, Hk = c->Hk, g = H / Hk;
    const fa4cp_dtype dt = c->dtype, ld = fa4cp_lse_dtype(dt);
    const double sc = scale_of(c);
    memset(t->o_ref, 0, no(c) * sizeof(double));
    memset(t->dq_ref, 0, nq(c) * sizeof(double));
    memset(t->dk_ref, 0, nk(c) * sizeof(double));
    memset(t->dv_ref, 0, nv(c) * sizeof(double));
    for (size_t i = 0; i < nl(c); i++)
        t->lse_ref[i] = -INFINITY;
    /* the inputs as float64, read once (the loops below are the test's
     * running time on the GPU machine) */
    double *qd = malloc(nq(c) * sizeof(double) + 8), *kd = malloc(nk(c) * sizeof(double) + 8);
    double *vd = malloc(nv(c) * sizeof(double) + 8), *dod = malloc(no(c) * sizeof(double) + 8);
    double *od = malloc(no(c) * sizeof(double) + 8);
    if (!qd || !kd || !vd || !dod || !od)
        bail("dense reference: out of host memory");
    for (size_t i = 0; i < nq(c); i++)
        qd[i] = fa4cp_load(dt, t->q, i);
    for (size_t i = 0; i < nk(c); i++)
        kd[i] = fa4cp_load(dt, t->k, i);
    for (size_t i = 0; i < nv(c); i++)
        vd[i] = fa4cp_load(dt, t->v, i);
    for (size_t i = 0; i < no(c); i++) {
        dod[i] = fa4cp_load(dt, t->dout, i);
        od[i] = with_bwd ? fa4cp_load(dt, t->out, i) : 0;
    }
    for (int b = 0; b < c->batch; b++) {
        int64_t sq = len_q(c, b), sk = len_k(c, b);
        if (sq == 0)
            continue;
        double *S = calloc((size_t)(sq * (sk ? sk : 1)), sizeof(double));
        double *dP = calloc((size_t)(sq * (sk ? sk : 1)), sizeof(double));
        for (int h = 0; h < H; h++) {
            int kh = h / g;
#define QI(i, x) qd[((size_t)(c->cu_q[b] + (i)) * H + h) * d + (x)]
#define KJ(j, x) kd[((size_t)(c->cu_k[b] + (j)) * Hk + kh) * d + (x)]
#define VJ(j, x) vd[((size_t)(c->cu_k[b] + (j)) * Hk + kh) * dv + (x)]
#define DOI(i, x) dod[((size_t)(c->cu_q[b] + (i)) * H + h) * dv + (x)]
            for (int64_t i = 0; i < sq; i++) {
                double m = -INFINITY;
                for (int64_t j = 0; j < sk; j++) {
                    double s = -INFINITY;
                    if (sees(c, i, j, sq, sk)) {
                        s = 0;
                        for (int x = 0; x < d; x++)
                            s += QI(i, x) * KJ(j, x);
                        s *= sc;
                    }
                    S[i * sk + j] = s;
                    if (s > m)
                        m = s;
                }
                size_t lrow = (size_t)h * (size_t)c->total_q + (size_t)(c->cu_q[b] + i);
                if (m == -INFINITY)
                    continue; /* fully masked: out 0, lse -inf */
                double l = 0;
                for (int64_t j = 0; j < sk; j++)
                    l += exp(S[i * sk + j] - m);
                t->lse_ref[lrow] = m + log(l);
                for (int64_t j = 0; j < sk; j++) {
                    double p = exp(S[i * sk + j] - t->lse_ref[lrow]);
                    S[i * sk + j] = p; /* S now holds P */
                    for (int x = 0; x < dv; x++)
                        t->o_ref[((size_t)(c->cu_q[b] + i) * H + h) * dv + x] += p * VJ(j, x);
                }
            }
            if (!with_bwd)
                continue;
            for (int64_t i = 0; i < sq; i++) {
                size_t lrow = (size_t)h * (size_t)c->total_q + (size_t)(c->cu_q[b] + i);
                if (t->lse_ref[lrow] == -INFINITY)
                    continue;
                double D = 0;
                for (int x = 0; x < dv; x++)
                    /* the backward's D uses the out it is given (the stored,
                     * rounded forward result), as FlashAttention's does */
                    D += DOI(i, x) * od[((size_t)(c->cu_q[b] + i) * H + h) * dv + x];
                if (t->dlse)
                    D -= fa4cp_load(ld, t->dlse, lrow);
                for (int64_t j = 0; j < sk; j++) {
                    double p = S[i * sk + j];
                    double dp = 0;
                    for (int x = 0; x < dv; x++)
                        dp += DOI(i, x) * VJ(j, x);
                    double ds = p * (dp - D) * sc;
                    for (int x = 0; x < d; x++) {
                        t->dq_ref[((size_t)(c->cu_q[b] + i) * H + h) * d + x] += ds * KJ(j, x);
                        t->dk_ref[((size_t)(c->cu_k[b] + j) * Hk + kh) * d + x] += ds * QI(i, x);
                    }
                    for (int x = 0; x < dv; x++)
                        t->dv_ref[((size_t)(c->cu_k[b] + j) * Hk + kh) * dv + x] += p * DOI(i, x);
                }
            }
#undef QI
#undef KJ
#undef VJ
#undef DOI
        }
        free(S);
        free(dP);
    }
    free(qd);
    free(kd);
    free(vd);
    free(dod);
    free(od);
}

/* ------------------------------------------------------------------ running the backend */

static void args_of(const tcase *c, tensors *t, fa4cp_attn_args *a)
{
    fa4cp_attn_args init = FA4CP_ATTN_ARGS_INIT;
    *a = init;
    a->dtype = c->dtype;
    a->batch = c->batch;
    a->heads = c->H;
    a->kv_heads = c->Hk;
    a->head_dim = c->d;
    a->head_dim_v = c->dv_as_zero ? 0 : c->dv;
    a->total_q = c->total_q;
    a->total_k = c->total_k;
    a->cu_seqlens_q = c->cu_q;
    a->cu_seqlens_k = c->cu_k;
    a->seqused_q = c->use_seqused ? c->used_q : NULL;
    a->seqused_k = c->use_seqused ? c->used_k : NULL;
    a->softmax_scale = c->scale;
    a->causal = c->causal;
    a->window_left = c->wl;
    a->window_right = c->wr;
    a->q = t->q;
    a->k = t->k;
    a->v = t->v;
    a->out = t->out;
    a->lse = t->lse;
    a->dout = t->dout;
    a->dlse = t->dlse;
    a->dq = t->dq;
    a->dk = t->dk;
    a->dv = t->dv;
}

#ifdef HAVE_CUDA
/* The cuda backend takes device pointers: stage every host buffer of the case
 * on the device (outputs too, so the device outputs start as the host's NaN
 * poison and untouched elements stay poison), run, copy the outputs back. */
static fa4cp_status run_cuda(const tcase *c, int bwd, const fa4cp_attn_args *a)
{
    size_t es = fa4cp_dtype_size(c->dtype), ls = sizeof(float);
    size_t bq = nq(c) * es, bk = nk(c) * es, bl = nl(c) * ls, bc = (size_t)(c->batch + 1) * 4;
    size_t bo = no(c) * es, bv = nv(c) * es;
    struct {
        const void *host;
        size_t bytes;
        void *dev;
        int out; /* copied back after the call */
    } b[] = {
        {a->q, bq, NULL, 0},           {a->k, bk, NULL, 0},           {a->v, bv, NULL, 0},
        {a->out, bo, NULL, !bwd},      {a->lse, bl, NULL, !bwd},      {a->dout, bo, NULL, 0},
        {a->dlse, a->dlse ? bl : 0, NULL, 0}, {a->dq, bq, NULL, bwd}, {a->dk, bk, NULL, bwd},
        {a->dv, bv, NULL, bwd},        {a->cu_seqlens_q, bc, NULL, 0}, {a->cu_seqlens_k, bc, NULL, 0},
        {a->seqused_q, a->seqused_q ? bc : 0, NULL, 0}, {a->seqused_k, a->seqused_k ? bc : 0, NULL, 0},
    };
    const size_t n = sizeof b / sizeof b[0];
    fa4cp_status st = FA4CP_OK;
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < n && e == cudaSuccess; i++) {
        if (!b[i].host || b[i].bytes == 0)
            continue;
        e = cudaMalloc(&b[i].dev, b[i].bytes);
        if (e == cudaSuccess)
            e = cudaMemcpy(b[i].dev, b[i].host, b[i].bytes, cudaMemcpyHostToDevice);
    }
    if (e != cudaSuccess) {
        diag("staging on the device failed: %s", cudaGetErrorString(e));
        st = FA4CP_ERR_CUDA;
        goto out;
    }
    fa4cp_attn_args d = *a;
    d.q = b[0].dev;
    d.k = b[1].dev;
    d.v = b[2].dev;
    d.out = b[3].dev;
    d.lse = b[4].dev;
    d.dout = b[5].dev;
    d.dlse = b[6].dev;
    d.dq = b[7].dev;
    d.dk = b[8].dev;
    d.dv = b[9].dev;
    d.cu_seqlens_q = b[10].dev;
    d.cu_seqlens_k = b[11].dev;
    d.seqused_q = b[12].dev;
    d.seqused_k = b[13].dev;
    d.deterministic = deterministic;
    st = bwd ? fa4cp_attn_bwd(backend, &d) : fa4cp_attn_fwd(backend, &d);
    if (st != FA4CP_OK)
        goto out;
    e = cudaDeviceSynchronize();
    for (size_t i = 0; i < n && e == cudaSuccess; i++)
        if (b[i].out && b[i].dev)
            e = cudaMemcpy((void *)b[i].host, b[i].dev, b[i].bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        diag("the cuda call or the copy back failed: %s", cudaGetErrorString(e));
        st = FA4CP_ERR_CUDA;
    }
out:
    for (size_t i = 0; i < n; i++)
        if (b[i].dev)
            cudaFree(b[i].dev);
    return st;
}
#endif

/* Run the raw call on the case's host tensors (staged on the device for cuda). */
static fa4cp_status run(const tcase *c, int bwd, const fa4cp_attn_args *a)
{
#ifdef HAVE_CUDA
    if (backend == FA4CP_BACKEND_CUDA)
        return run_cuda(c, bwd, a);
#endif
    (void)c;
    return bwd ? fa4cp_attn_bwd(backend, a) : fa4cp_attn_fwd(backend, a);
}

static void alloc_tensors(const tcase *c, tensors *t, test_rng *r, int with_dlse)
{
    size_t es = fa4cp_dtype_size(c->dtype), ls = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype));
    memset(t, 0, sizeof *t);
    t->q = malloc(nq(c) * es + 16);
    t->k = malloc(nk(c) * es + 16);
    t->v = malloc(nv(c) * es + 16);
    t->out = malloc(no(c) * es + 16);
    t->dout = malloc(no(c) * es + 16);
    t->dq = malloc(nq(c) * es + 16);
    t->dk = malloc(nk(c) * es + 16);
    t->dv = malloc(nv(c) * es + 16);
    t->lse = malloc(nl(c) * ls + 16);
    t->dlse = with_dlse ? malloc(nl(c) * ls + 16) : NULL;
    t->o_ref = malloc(no(c) * 8 + 16);
    t->dq_ref = malloc(nq(c) * 8 + 16);
    t->dk_ref = malloc(nk(c) * 8 + 16);
    t->dv_ref = malloc(nv(c) * 8 + 16);
    t->lse_ref = malloc(nl(c) * 8 + 16);
    test_fill(r, c->dtype, t->q, nq(c), 1.0);
    test_fill(r, c->dtype, t->k, nk(c), 1.0);
    test_fill(r, c->dtype, t->v, nv(c), 1.0);
    test_fill(r, c->dtype, t->dout, no(c), 1.0);
    if (t->dlse)
        test_fill(r, fa4cp_lse_dtype(c->dtype), t->dlse, nl(c), 0.5);
}

static void free_tensors(tensors *t)
{
    void *p[] = {t->q, t->k, t->v, t->out, t->lse, t->dout, t->dlse, t->dq, t->dk, t->dv,
                 t->o_ref, t->lse_ref, t->dq_ref, t->dk_ref, t->dv_ref};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

/* relative error over the rows selected by real_*; also counts problems */
typedef struct check {
    double err;
    size_t nonfinite, poison_touched, pad_nonzero, masked_bad;
} check;

static check compare_rows(const tcase *c, fa4cp_dtype dt, const void *x, const double *ref, int64_t rows,
                          int heads, int width, int is_q, int expect_zero_padding, int expect_poison_padding)
{
    check k = {0};
    double num = 0, den = 0;
    size_t w = (size_t)heads * (size_t)width;
    for (int64_t r = 0; r < rows; r++) {
        int real = is_q ? real_q(c, r) : real_k(c, r);
        for (size_t e = 0; e < w; e++) {
            size_t i = (size_t)r * w + e;
            if (!real) {
                if (expect_poison_padding && !test_is_poison(dt, x, i))
                    k.poison_touched++;
                if (expect_zero_padding && fa4cp_load(dt, x, i) != 0.0)
                    k.pad_nonzero++;
                continue;
            }
            double v = fa4cp_load(dt, x, i);
            if (!isfinite(v)) {
                k.nonfinite++;
                continue;
            }
            num += (v - ref[i]) * (v - ref[i]);
            den += ref[i] * ref[i];
        }
    }
    k.err = den > 0 ? sqrt(num / den) : sqrt(num);
    if (k.nonfinite)
        k.err = INFINITY;
    return k;
}

static check compare_lse(const tcase *c, const void *lse, const double *ref)
{
    check k = {0};
    fa4cp_dtype ld = fa4cp_lse_dtype(c->dtype);
    double num = 0, den = 0;
    for (int h = 0; h < c->H; h++)
        for (int64_t r = 0; r < c->total_q; r++) {
            size_t i = (size_t)h * (size_t)c->total_q + (size_t)r;
            if (!real_q(c, r)) {
                if (!test_is_poison(ld, lse, i))
                    k.poison_touched++;
                continue;
            }
            double v = fa4cp_load(ld, lse, i);
            if (ref[i] == -INFINITY) {
                if (v != -INFINITY)
                    k.masked_bad++;
                continue;
            }
            if (!isfinite(v)) {
                k.nonfinite++;
                continue;
            }
            num += (v - ref[i]) * (v - ref[i]);
            den += ref[i] * ref[i];
        }
    k.err = den > 0 ? sqrt(num / den) : sqrt(num);
    return k;
}

/* out of fully masked rows must be exactly 0 */
static size_t masked_out_nonzero(const tcase *c, const tensors *t)
{
    size_t bad = 0;
    for (int h = 0; h < c->H; h++)
        for (int64_t r = 0; r < c->total_q; r++)
            if (real_q(c, r) && t->lse_ref[(size_t)h * (size_t)c->total_q + (size_t)r] == -INFINITY)
                for (int x = 0; x < c->dv; x++)
                    if (fa4cp_load(c->dtype, t->out, ((size_t)r * c->H + h) * c->dv + x) != 0.0)
                        bad++;
    return bad;
}

static int has_masked_row(const tcase *c, const tensors *t)
{
    for (int h = 0; h < c->H; h++)
        for (int64_t r = 0; r < c->total_q; r++)
            if (real_q(c, r) && t->lse_ref[(size_t)h * (size_t)c->total_q + (size_t)r] == -INFINITY)
                return 1;
    return 0;
}

static int check_bwd(const tcase *c, tensors *tp, const fa4cp_attn_args *a, const char *desc);

/* Does the backend have a backward kernel for the case's head dims? */
static int has_bwd(const tcase *c)
{
    if (fwd_only)
        return 0;
    int ok_ = fa4cp_attn_supports(backend, c->dtype, c->d, c->dv_as_zero ? 0 : c->dv, 1) == FA4CP_OK;
    fa4cp_clear_error();
    return ok_;
}

/* One case: forward and (where the backend has a backward kernel for its
 * head dims) backward against the dense reference. Returns 1 if it passed. */
static int run_case(test_rng *r, tcase *c, int with_dlse, int *saw_masked)
{
    tensors t;
    fa4cp_attn_args a;
    char desc[256];
    double tol = test_tol(c->dtype);
    describe(c, desc, sizeof desc);
    alloc_tensors(c, &t, r, with_dlse);
    args_of(c, &t, &a);
    dense(c, &t, 0);
    *saw_masked |= has_masked_row(c, &t);

    int good = 1;
    test_poison(c->dtype, t.out, no(c));
    test_poison(fa4cp_lse_dtype(c->dtype), t.lse, nl(c));
    fa4cp_status st = run(c, 0, &a);
    if (st != FA4CP_OK) {
        diag("%s: forward failed: %s", desc, fa4cp_last_error());
        good = 0;
        goto out;
    }
    check o = compare_rows(c, c->dtype, t.out, t.o_ref, c->total_q, c->H, c->dv, 1, 0, 1);
    check l = compare_lse(c, t.lse, t.lse_ref);
    size_t mz = masked_out_nonzero(c, &t);
    if (!(o.err <= tol) || !(l.err <= tol) || o.poison_touched || l.poison_touched || l.masked_bad || mz ||
        o.nonfinite || l.nonfinite) {
        diag("%s: forward out err %.3g lse err %.3g (tol %g), padding rows written %zu/%zu, "
             "masked rows wrong lse %zu out %zu, non-finite %zu/%zu",
             desc, o.err, l.err, tol, o.poison_touched, l.poison_touched, l.masked_bad, mz, o.nonfinite,
             l.nonfinite);
        good = 0;
    }
    if (!has_bwd(c))
        goto out; /* forward only (the callers' TAP lines say so) */

    good &= check_bwd(c, &t, &a, desc);
out:
    free_tensors(&t);
    return good;
}

/* The backward of a case whose t->out, t->lse hold the forward's results:
 * gradients from the float64 definition (with that out), poisoned outputs,
 * padding rows exactly 0. */
/* The backward against gradients dense() already holds. */
static int check_bwd_ref(const tcase *c, const tensors *tp, const fa4cp_attn_args *a, const char *desc)
{
    tensors t = *tp;
    double tol = test_tol(c->dtype);
    test_poison(c->dtype, t.dq, nq(c));
    test_poison(c->dtype, t.dk, nk(c));
    test_poison(c->dtype, t.dv, nv(c));
    fa4cp_status st = run(c, 1, a);
    if (st != FA4CP_OK) {
        diag("%s: backward failed: %s", desc, fa4cp_last_error());
        return 0;
    }
    check gq = compare_rows(c, c->dtype, t.dq, t.dq_ref, c->total_q, c->H, c->d, 1, 1, 0);
    check gk = compare_rows(c, c->dtype, t.dk, t.dk_ref, c->total_k, c->Hk, c->d, 0, 1, 0);
    check gv = compare_rows(c, c->dtype, t.dv, t.dv_ref, c->total_k, c->Hk, c->dv, 0, 1, 0);
    /* gradients are sums of many terms: bf16/fp16 storage rounds each result once */
    if (!(gq.err <= tol) || !(gk.err <= tol) || !(gv.err <= tol) || gq.pad_nonzero || gk.pad_nonzero ||
        gv.pad_nonzero) {
        diag("%s: backward err dq %.3g dk %.3g dv %.3g (tol %g), padding non-zero %zu/%zu/%zu", desc,
             gq.err, gk.err, gv.err, tol, gq.pad_nonzero, gk.pad_nonzero, gv.pad_nonzero);
        return 0;
    }
    return 1;
}

static int check_bwd(const tcase *c, tensors *tp, const fa4cp_attn_args *a, const char *desc)
{
    dense(c, tp, 1); /* gradients from the out the backend produced */
    return check_bwd_ref(c, tp, a, desc);
}

/* out and lse of the float64 definition, rounded to the case's dtypes (the
 * forward the backward is given, independent of the forward kernels) */
static void ref_forward(const tcase *c, tensors *t)
{
    dense(c, t, 0);
    for (size_t i = 0; i < no(c); i++)
        fa4cp_store(c->dtype, t->out, i, t->o_ref[i]);
    for (size_t i = 0; i < nl(c); i++)
        fa4cp_store(fa4cp_lse_dtype(c->dtype), t->lse, i, t->lse_ref[i]);
}

/* One case, the backward alone: out and lse from the float64 reference. */
static int bwd_case(test_rng *r, tcase *c, int with_dlse)
{
    tensors t;
    fa4cp_attn_args a;
    char desc[256];
    describe(c, desc, sizeof desc);
    alloc_tensors(c, &t, r, with_dlse);
    args_of(c, &t, &a);
    ref_forward(c, &t);
    int good = check_bwd(c, &t, &a, desc);
    free_tensors(&t);
    return good;
}

/* ------------------------------------------------------------------ backward chains (dq_carry) */

/* The rows of every sequence's keys [off[b], off[b] + len of the call's
 * sequence b) of the whole case's tensor src into the call's dst (rows of w
 * elements of es bytes). */
static void key_rows(const tcase *cf, const tcase *cc, const int64_t *off, const void *src, void *dst, size_t w,
                     size_t es)
{
    for (int b = 0; b < cc->batch; b++)
        memcpy((char *)dst + (size_t)cc->cu_k[b] * w * es, (const char *)src + (size_t)(cf->cu_k[b] + off[b]) * w * es,
               (size_t)(cc->cu_k[b + 1] - cc->cu_k[b]) * w * es);
}

/* A CP rank's backward as one chain of calls (fa4cp.h, dq_carry): per
 * sequence, sq queries against the keys [B1 | B2 | A], causal bottom-right,
 * so that a query sees all of B1 and B2 and, causally, A's sq keys (they end
 * at its diagonal).  The chain: A (causal, carry FIRST), B1 (no mask, 0), B2
 * (no mask, LAST); ncalls 1: A alone (FIRST | LAST, no B keys).  Every call
 * gets the whole case's out and lse (the float64 reference, rounded), dout
 * and dlse.  The chain's dq against the whole case's float64 dq, each call's
 * dk, dv against the reference's rows of its keys (padding rows exact
 * zeros), the chain state poisoned before its first call; the middle call
 * gets a poisoned dq (odd seeds) or NULL and must leave it alone.  nlw:
 * every call with FA4CP_CARRY_NO_LEFT_WINDOW (cuda d128: the sum in the
 * 80-row kernel's planes). */
static int chain_case(test_rng *r, fa4cp_dtype dt, int d, int H, int Hk, int batch, int maxq, int maxk, int ncalls,
                      int with_dlse, int nlw)
{
    tcase cf;
    memset(&cf, 0, sizeof cf);
    cf.dtype = dt;
    cf.batch = batch;
    cf.H = H;
    cf.Hk = Hk;
    cf.d = cf.dv = d;
    cf.causal = 1;
    cf.wl = cf.wr = -1;
    int32_t kb[2][MAXB];
    for (int b = 0; b < batch; b++) {
        const int sq = test_rng_int(r, 0, maxq);
        kb[0][b] = ncalls > 1 ? test_rng_int(r, 0, maxk) : 0;
        kb[1][b] = ncalls > 1 ? test_rng_int(r, 0, maxk) : 0;
        cf.cu_q[b + 1] = cf.cu_q[b] + sq;
        cf.cu_k[b + 1] = cf.cu_k[b] + kb[0][b] + kb[1][b] + sq;
    }
    cf.total_q = cf.cu_q[batch] + test_rng_int(r, 0, 5); /* padding rows after the sequences */
    cf.total_k = cf.cu_k[batch] + test_rng_int(r, 0, 3);
    char desc[256];
    describe(&cf, desc, sizeof desc);
    tensors tf;
    alloc_tensors(&cf, &tf, r, with_dlse);
    ref_forward(&cf, &tf);
    dense(&cf, &tf, 1);
    const size_t es = fa4cp_dtype_size(dt);
    int good = 1;
    tcase cc[3];
    void *k[3] = {0}, *v[3] = {0}, *dk[3] = {0}, *dv[3] = {0};
    double *dkr[3] = {0}, *dvr[3] = {0};
    for (int i = 0; i < ncalls; i++) {
        int64_t off[MAXB];
        cc[i] = cf;
        cc[i].causal = i == 0;
        for (int b = 0; b < batch; b++) {
            const int sq = cf.cu_q[b + 1] - cf.cu_q[b];
            const int len = i == 0 ? sq : kb[i - 1][b];
            off[b] = i == 0 ? kb[0][b] + kb[1][b] : i == 1 ? 0 : kb[0][b];
            cc[i].cu_k[b + 1] = cc[i].cu_k[b] + len;
        }
        cc[i].total_k = cc[i].cu_k[batch] + 2;
        k[i] = malloc(nk(&cc[i]) * es + 16);
        v[i] = malloc(nv(&cc[i]) * es + 16);
        dk[i] = malloc(nk(&cc[i]) * es + 16);
        dv[i] = malloc(nv(&cc[i]) * es + 16);
        dkr[i] = calloc(nk(&cc[i]) + 2, sizeof(double));
        dvr[i] = calloc(nv(&cc[i]) + 2, sizeof(double));
        if (!k[i] || !v[i] || !dk[i] || !dv[i] || !dkr[i] || !dvr[i])
            bail("chain case: out of host memory");
        test_fill(r, dt, k[i], nk(&cc[i]), 1.0); /* padding rows: garbage the call must not read */
        test_fill(r, dt, v[i], nv(&cc[i]), 1.0);
        key_rows(&cf, &cc[i], off, tf.k, k[i], (size_t)Hk * d, es);
        key_rows(&cf, &cc[i], off, tf.v, v[i], (size_t)Hk * d, es);
        key_rows(&cf, &cc[i], off, tf.dk_ref, dkr[i], (size_t)Hk * d, sizeof(double));
        key_rows(&cf, &cc[i], off, tf.dv_ref, dvr[i], (size_t)Hk * d, sizeof(double));
        test_poison(dt, dk[i], nk(&cc[i]));
        test_poison(dt, dv[i], nv(&cc[i]));
    }
    test_poison(dt, tf.dq, nq(&cf));
    fa4cp_attn_args a0;
    args_of(&cf, &tf, &a0);
    const size_t cb = fa4cp_attn_bwd_carry_bytes(backend, &a0);
    void *carry = NULL;
#ifdef HAVE_CUDA
    if (backend == FA4CP_BACKEND_CUDA) {
        if (cudaMalloc(&carry, cb ? cb : 1) != cudaSuccess || cudaMemset(carry, 0xff, cb) != cudaSuccess)
            bail("chain case: cudaMalloc of %zu bytes failed", cb);
    }
#endif
    if (!carry) {
        carry = malloc(cb + 16);
        if (!carry)
            bail("chain case: out of host memory");
        memset(carry, 0xff, cb); /* NaN: the first call must clear it */
    }
    for (int i = 0; i < ncalls && good; i++) {
        fa4cp_attn_args a = a0;
        a.total_k = cc[i].total_k;
        a.cu_seqlens_k = cc[i].cu_k;
        a.causal = cc[i].causal;
        a.k = k[i];
        a.v = v[i];
        a.dk = dk[i];
        a.dv = dv[i];
        a.dq_carry = carry;
        a.dq_carry_bytes = cb;
        a.carry = (i == 0 ? FA4CP_CARRY_FIRST : 0) | (i == ncalls - 1 ? FA4CP_CARRY_LAST : 0);
        const int mid = a.carry == 0;
        a.carry |= nlw ? FA4CP_CARRY_NO_LEFT_WINDOW : 0;
        if (mid && !(test_rng_int(r, 0, 1)))
            a.dq = NULL;
        fa4cp_status st = run(&cc[i], 1, &a);
        if (st != FA4CP_OK) {
            diag("%s: chain call %d (carry %d) failed: %s", desc, i, a.carry, fa4cp_last_error());
            good = 0;
            break;
        }
        if (mid) {
            size_t touched = 0;
            for (size_t e = 0; e < nq(&cf); e++)
                touched += !test_is_poison(dt, tf.dq, e);
            if (touched) {
                diag("%s: the chain's middle call wrote %zu elements of dq", desc, touched);
                good = 0;
            }
        }
        check gk = compare_rows(&cc[i], dt, dk[i], dkr[i], cc[i].total_k, Hk, d, 0, 1, 0);
        check gv = compare_rows(&cc[i], dt, dv[i], dvr[i], cc[i].total_k, Hk, d, 0, 1, 0);
        if (!(gk.err <= test_tol(dt)) || !(gv.err <= test_tol(dt)) || gk.pad_nonzero || gv.pad_nonzero) {
            diag("%s: chain call %d: dk err %.3g dv err %.3g (tol %g), padding non-zero %zu/%zu", desc, i, gk.err,
                 gv.err, test_tol(dt), gk.pad_nonzero, gv.pad_nonzero);
            good = 0;
        }
    }
    if (good) {
        check gq = compare_rows(&cf, dt, tf.dq, tf.dq_ref, cf.total_q, H, d, 1, 1, 0);
        if (!(gq.err <= test_tol(dt)) || gq.pad_nonzero) {
            diag("%s: the chain's dq err %.3g (tol %g), padding non-zero %zu", desc, gq.err, test_tol(dt),
                 gq.pad_nonzero);
            good = 0;
        }
    }
#ifdef HAVE_CUDA
    if (backend == FA4CP_BACKEND_CUDA)
        cudaFree(carry);
    else
#endif
        free(carry);
    for (int i = 0; i < ncalls; i++) {
        free(k[i]);
        free(v[i]);
        free(dk[i]);
        free(dv[i]);
        free(dkr[i]);
        free(dvr[i]);
    }
    free_tensors(&tf);
    return good;
}

/* An fp32 call of one 8-row sequence at head_dim 8 with every tensor in buf
 * (refusals: checked, never run) */
static fa4cp_attn_args tiny_args(int heads, int kv_heads, const int32_t *cu, void *buf, float *lse)
{
    fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
    a.dtype = FA4CP_FP32;
    a.batch = 1;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.head_dim = 8;
    a.total_q = a.total_k = 8;
    a.cu_seqlens_q = a.cu_seqlens_k = cu;
    a.q = a.k = a.v = a.dout = buf;
    a.out = a.dk = a.dv = buf;
    a.lse = lse;
    return a;
}

/* Chains of three calls and of one, GQA, dlse; on cuda d64 (128-row
 * steps), d128 (the 80-row kernels: causal for A, dense for B) and d96, in
 * both modes; without and with FA4CP_CARRY_NO_LEFT_WINDOW (cuda d128: the
 * planes).  And what a chain refuses. */
static void chain_cases(test_rng *r)
{
    const int cuda = backend == FA4CP_BACKEND_CUDA;
    static const int dims[] = {64, 128, 96};
    for (int nlw = 0; nlw < 2; nlw++)
        for (int det = 0; det < (cuda ? 2 : 1); det++) {
            deterministic = det;
            int passed = 0, total = 0;
            for (int i = 0; i < (cuda ? 9 : 6); i++, total++) {
                const fa4cp_dtype dt = cuda ? (i % 2 ? FA4CP_FP16 : FA4CP_BF16) : i % 2 ? FA4CP_FP32 : FA4CP_FP64;
                const int d = cuda ? dims[i % 3] : 8 + 4 * (i % 2);
                const int hk = 1 + i % 2, g = 1 + (i / 2) % 3;
                passed += chain_case(r, dt, d, hk * g, hk, test_rng_int(r, 1, 4), cuda ? 300 : 12, cuda ? 260 : 10,
                                     i % 4 == 3 ? 1 : 3, i % 2, nlw);
            }
            is_int(passed, total,
                   "%s%s: %d backward chains (dq_carry: causal diagonal, then unmasked key blocks%s) sum to the "
                   "whole call's dq; each call's dk, dv and padding rows right",
                   fa4cp_backend_name(backend), det ? " deterministic" : "", total,
                   nlw ? "; FA4CP_CARRY_NO_LEFT_WINDOW" : "");
        }
    deterministic = 0;

    int32_t cu[2] = {0, 8};
    double buf[8 * 2 * 8];
    float lse[16];
    fa4cp_attn_args a = tiny_args(2, 2, cu, buf, lse);
    a.carry = FA4CP_CARRY_FIRST;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_ERR_INVALID, "chain: carry without dq_carry is refused");
    like(fa4cp_last_error(), "dq_carry is NULL", "the refusal names dq_carry");
    a.dq_carry = buf;
    a.dq_carry_bytes = fa4cp_attn_bwd_carry_bytes(FA4CP_BACKEND_CPU, &a) - 8;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_ERR_INVALID, "chain: a dq_carry too small is refused");
    like(fa4cp_last_error(), "fa4cp_attn_bwd_carry_bytes", "the refusal says how many bytes and where from");
    a.dq_carry_bytes += 8;
    a.carry = 8;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_ERR_INVALID, "chain: carry 8 is refused");
    a.carry = FA4CP_CARRY_NO_LEFT_WINDOW;
    a.window_left = 3;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_ERR_INVALID,
           "chain: FA4CP_CARRY_NO_LEFT_WINDOW with a left window is refused");
    like(fa4cp_last_error(), "window_left is 3", "the refusal names the window");
    like(fa4cp_last_error(), "FA4CP_CARRY_NO_LEFT_WINDOW", "the refusal names the promise");
    a.window_left = -1;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_OK,
           "chain: a middle call with FA4CP_CARRY_NO_LEFT_WINDOW and no left window is taken");
    a.carry = FA4CP_CARRY_LAST;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_ERR_INVALID, "chain: the last call without dq is refused");
    a.carry = 0;
    is_int(fa4cp_attn_check(FA4CP_BACKEND_CPU, &a, 1), FA4CP_OK, "chain: a middle call needs no dq");
    ok(fa4cp_attn_bwd_carry_bytes(FA4CP_BACKEND_CUDA, &a) == 256 + 8 * 2 * 8 * 4 &&
           fa4cp_attn_bwd_carry_bytes(FA4CP_BACKEND_CPU, &a) == 8 * 2 * 8 * 8,
       "chain: carry bytes (cuda: D 256-byte aligned + fp32 sum; cpu: float64 sum)");
}

/* ------------------------------------------------------------------ finite differences (cpu, fp64) */

/* L = sum(out * dout) + sum(lse * dlse) over real rows */
static double loss(const tcase *c, tensors *t, const fa4cp_attn_args *a)
{
    if (fa4cp_attn_fwd(FA4CP_BACKEND_CPU, a) != FA4CP_OK)
        return NAN;
    double L = 0;
    for (int64_t r = 0; r < c->total_q; r++) {
        if (!real_q(c, r))
            continue;
        for (int h = 0; h < c->H; h++) {
            for (int x = 0; x < c->dv; x++) {
                size_t i = ((size_t)r * c->H + h) * c->dv + x;
                L += ((double *)t->out)[i] * ((double *)t->dout)[i];
            }
            double lse = ((double *)t->lse)[(size_t)h * c->total_q + r];
            if (isfinite(lse))
                L += lse * ((double *)t->dlse)[(size_t)h * c->total_q + r];
        }
    }
    return L;
}

static int finite_differences(test_rng *r)
{
    int good = 1;
    for (int trial = 0; trial < 6; trial++) {
        tcase c;
        random_case(r, &c, FA4CP_FP64, 6);
        c.d = 4;
        c.dv = trial % 2 ? 3 : 4; /* v of another width too */
        c.dv_as_zero = 0;
        tensors t;
        fa4cp_attn_args a;
        alloc_tensors(&c, &t, r, 1);
        args_of(&c, &t, &a);
        if (fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK || fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK) {
            diag("finite differences: call failed: %s", fa4cp_last_error());
            free_tensors(&t);
            return 0;
        }
        double *grad_copy[3] = {malloc(nq(&c) * 8 + 8), malloc(nk(&c) * 8 + 8), malloc(nv(&c) * 8 + 8)};
        memcpy(grad_copy[0], t.dq, nq(&c) * 8);
        memcpy(grad_copy[1], t.dk, nk(&c) * 8);
        memcpy(grad_copy[2], t.dv, nv(&c) * 8);
        double *inputs[3] = {t.q, t.k, t.v};
        size_t sizes[3] = {nq(&c), nk(&c), nv(&c)};
        double num = 0, den = 0;
        const double eps = 1e-6;
        for (int which = 0; which < 3; which++)
            for (size_t i = 0; i < sizes[which]; i++) {
                double keep = inputs[which][i];
                inputs[which][i] = keep + eps;
                double lp = loss(&c, &t, &a);
                inputs[which][i] = keep - eps;
                double lm = loss(&c, &t, &a);
                inputs[which][i] = keep;
                double fd = (lp - lm) / (2 * eps);
                double an = grad_copy[which][i];
                num += (fd - an) * (fd - an);
                den += fd * fd;
            }
        double err = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!(err < 1e-6)) {
            char desc[256];
            describe(&c, desc, sizeof desc);
            diag("finite differences %s: relative error %.3g", desc, err);
            good = 0;
        }
        for (int i = 0; i < 3; i++)
            free(grad_copy[i]);
        free_tensors(&t);
    }
    return good;
}

/* ------------------------------------------------------------------ cuda: one long sequence */

/* Forward of one long sequence (cu + seqused, padding rows after it) against
 * the float64 definition on sampled rows (the dense reference of every row
 * would take minutes): the first and last rows, rows around the 64k mark and
 * random ones, every head; padding rows of out and lse must stay poison. */
static int long_case(test_rng *r, fa4cp_dtype dt, int d, int dv, int H, int Hk, int sq, int sk, int causal,
                     int wl)
{
    tcase c;
    memset(&c, 0, sizeof c);
    c.dtype = dt;
    c.batch = 1;
    c.H = H;
    c.Hk = Hk;
    c.d = d;
    c.dv = dv;
    c.causal = causal;
    c.wl = wl;
    c.wr = -1;
    c.use_seqused = 1;
    c.cu_q[1] = sq + 5;
    c.cu_k[1] = sk + 3;
    c.used_q[0] = sq;
    c.used_k[0] = sk;
    c.total_q = sq + 7;
    c.total_k = sk + 3;
    c.scale = 0;
    char desc[256];
    describe(&c, desc, sizeof desc);
    size_t es = fa4cp_dtype_size(dt);
    tensors t;
    memset(&t, 0, sizeof t);
    t.q = malloc(nq(&c) * es);
    t.k = malloc(nk(&c) * es);
    t.v = malloc(nv(&c) * es);
    t.out = malloc(no(&c) * es);
    t.lse = malloc(nl(&c) * sizeof(float));
    double *kd = malloc((size_t)sk * d * sizeof(double)), *vd = malloc((size_t)sk * dv * sizeof(double));
    double *qd = malloc((size_t)d * sizeof(double)), *sc = malloc((size_t)sk * sizeof(double));
    int good = t.q && t.k && t.v && t.out && t.lse && kd && vd && qd && sc;
    if (!good) {
        diag("%s: out of host memory", desc);
        goto out;
    }
    test_fill(r, dt, t.q, nq(&c), 1.0);
    test_fill(r, dt, t.k, nk(&c), 1.0);
    test_fill(r, dt, t.v, nv(&c), 1.0);
    test_poison(dt, t.out, no(&c));
    test_poison(FA4CP_FP32, t.lse, nl(&c));
    fa4cp_attn_args a;
    args_of(&c, &t, &a);
    if (run(&c, 0, &a) != FA4CP_OK) {
        diag("%s: forward failed: %s", desc, fa4cp_last_error());
        good = 0;
        goto out;
    }
    const double scale = scale_of(&c);
    double num = 0, den = 0, lnum = 0, lden = 0;
    size_t nonfinite = 0, masked_bad = 0, poison_touched = 0;
    int rows[40], nrows = 0;
    for (int i = 0; i < 4; i++) {
        rows[nrows++] = i;
        rows[nrows++] = sq - 1 - i;
    }
    for (int i = 65534; i < 65538 && i < sq; i++)
        rows[nrows++] = i;
    while (nrows < 40)
        rows[nrows++] = test_rng_int(r, 0, sq - 1);
    for (int kh = 0; kh < Hk; kh++) {
        for (int64_t j = 0; j < sk; j++)
        {
            for (int x = 0; x < d; x++)
                kd[j * d + x] = fa4cp_load(dt, t.k, ((size_t)j * Hk + kh) * d + x);
            for (int x = 0; x < dv; x++)
                vd[j * dv + x] = fa4cp_load(dt, t.v, ((size_t)j * Hk + kh) * dv + x);
        }
        for (int h = kh * (H / Hk); h < (kh + 1) * (H / Hk); h++)
            for (int ri = 0; ri < nrows; ri++) {
                int64_t i = rows[ri];
                for (int x = 0; x < d; x++)
                    qd[x] = fa4cp_load(dt, t.q, ((size_t)i * H + h) * d + x);
                double m = -INFINITY;
                for (int64_t j = 0; j < sk; j++) {
                    double s = -INFINITY;
                    if (sees(&c, i, j, sq, sk)) {
                        s = 0;
                        for (int x = 0; x < d; x++)
                            s += qd[x] * kd[j * d + x];
                        s *= scale;
                    }
                    sc[j] = s;
                    m = s > m ? s : m;
                }
                double lse_got = fa4cp_load(FA4CP_FP32, t.lse, (size_t)h * c.total_q + i);
                if (m == -INFINITY) {
                    masked_bad += lse_got != -INFINITY;
                    for (int x = 0; x < dv; x++)
                        masked_bad += fa4cp_load(dt, t.out, ((size_t)i * H + h) * dv + x) != 0.0;
                    continue;
                }
                double l = 0;
                for (int64_t j = 0; j < sk; j++)
                    l += exp(sc[j] - m);
                double lse_ref = m + log(l);
                if (!isfinite(lse_got))
                    nonfinite++;
                else {
                    lnum += (lse_got - lse_ref) * (lse_got - lse_ref);
                    lden += lse_ref * lse_ref;
                }
                for (int x = 0; x < dv; x++) {
                    double o = 0;
                    for (int64_t j = 0; j < sk; j++)
                        if (sc[j] != -INFINITY)
                            o += exp(sc[j] - lse_ref) * vd[j * dv + x];
                    double got = fa4cp_load(dt, t.out, ((size_t)i * H + h) * dv + x);
                    if (!isfinite(got))
                        nonfinite++;
                    num += (got - o) * (got - o);
                    den += o * o;
                }
            }
    }
    for (int64_t i = sq; i < c.total_q; i++)
        for (int h = 0; h < H; h++) {
            poison_touched += !test_is_poison(FA4CP_FP32, t.lse, (size_t)h * c.total_q + i);
            for (int x = 0; x < dv; x++)
                poison_touched += !test_is_poison(dt, t.out, ((size_t)i * H + h) * dv + x);
        }
    double err = den > 0 ? sqrt(num / den) : sqrt(num), lerr = lden > 0 ? sqrt(lnum / lden) : sqrt(lnum);
    double tol = test_tol(dt);
    if (!(err <= tol) || !(lerr <= tol) || nonfinite || masked_bad || poison_touched) {
        diag("%s: sampled rows: out err %.3g lse err %.3g (tol %g), non-finite %zu, masked rows wrong %zu, "
             "padding written %zu",
             desc, err, lerr, tol, nonfinite, masked_bad, poison_touched);
        good = 0;
    }
out:
    free(t.q);
    free(t.k);
    free(t.v);
    free(t.out);
    free(t.lse);
    free(kd);
    free(vd);
    free(qd);
    free(sc);
    return good;
}

/* The widest head dims over long sequences: d 256 (K/V blocks of 64 keys)
 * and MLA's (192, 128), forward, sampled rows against float64. */
static void cuda_long_head_dims(test_rng *r)
{
    ok(long_case(r, FA4CP_BF16, 256, 256, 2, 1, 16384 + 33, 16384 + 33, 0, -1),
       "bf16 d256 GQA 2/1: one sequence of 16417 rows, no mask (sampled rows vs float64)");
    ok(long_case(r, FA4CP_FP16, 256, 256, 2, 2, 16000, 16411, 1, -1),
       "fp16 d256: sq 16000 < sk 16411, causal bottom-right (sampled rows vs float64)");
    ok(long_case(r, FA4CP_BF16, 192, 128, 4, 1, 16384, 16384, 1, 5000),
       "bf16 (192, 128) GQA 4/1: one sequence of 16384 rows, causal with a 5000-key window (sampled rows vs float64)");
}

/* ------------------------------------------------------------------ cuda: long rows, determinism */

/* The deterministic backward on a varlen GQA batch whose query tiles get dQ
 * additions from several KV blocks (4 sequences of minlen-maxlen rows, one
 * empty, one with sq != sk, seqused padding): identical bits over 5 runs
 * (poisoned outputs before each), the float64 reference, and the atomic
 * backward within the dtype's tolerance.  ref_fwd: out and lse from the
 * float64 reference instead of the forward kernel. */
static void det_case(test_rng *r, fa4cp_dtype dt, int d, int dv, int causal, int wl, int wr, int ref_fwd,
                     int minlen, int maxlen)
{
    tcase c;
    memset(&c, 0, sizeof c);
    c.dtype = dt;
    c.batch = 4;
    c.H = 4;
    c.Hk = 2;
    c.d = d;
    c.dv = dv;
    c.causal = causal;
    c.wl = wl;
    c.wr = wr;
    c.use_seqused = 1;
    for (int b = 0; b < c.batch; b++) {
        int lq = b == 1 ? 0 : test_rng_int(r, minlen, maxlen);
        int lk = b == 3 ? test_rng_int(r, minlen, maxlen) : lq; /* b = 3: sq != sk */
        c.used_q[b] = lq;
        c.used_k[b] = lk;
        c.cu_q[b + 1] = c.cu_q[b] + lq + test_rng_int(r, 0, 5);
        c.cu_k[b + 1] = c.cu_k[b] + lk + test_rng_int(r, 0, 5);
    }
    c.total_q = c.cu_q[c.batch] + 2;
    c.total_k = c.cu_k[c.batch] + 2;
    char desc[256];
    describe(&c, desc, sizeof desc);
    tensors t;
    fa4cp_attn_args a;
    alloc_tensors(&c, &t, r, 1);
    args_of(&c, &t, &a);
    dense(&c, &t, 0);
    size_t es = fa4cp_dtype_size(c.dtype);
    size_t n[3] = {nq(&c), nk(&c), nv(&c)};
    void *outs[3] = {t.dq, t.dk, t.dv};
    void *first[3];
    double *detd[3];
    for (int j = 0; j < 3; j++) {
        first[j] = malloc(n[j] * es + 16);
        detd[j] = malloc(n[j] * sizeof(double) + 16);
    }
    int same = 1;
    fa4cp_status st = FA4CP_OK;
    if (ref_fwd) /* out, lse of the float64 definition */
        ref_forward(&c, &t);
    else
        st = run(&c, 0, &a);
    if (st == FA4CP_OK)
        dense(&c, &t, 1); /* gradients from the out the backend produced */
    deterministic = 1;
    for (int run_i = 0; run_i < 5 && st == FA4CP_OK; run_i++) {
        for (int j = 0; j < 3; j++)
            test_poison(c.dtype, outs[j], n[j]);
        st = run(&c, 1, &a);
        for (int j = 0; j < 3 && st == FA4CP_OK; j++) {
            if (run_i == 0)
                memcpy(first[j], outs[j], n[j] * es);
            else if (memcmp(first[j], outs[j], n[j] * es) != 0)
                same = 0;
        }
    }
    deterministic = 0;
    if (st != FA4CP_OK)
        diag("%s: %s", desc, fa4cp_last_error());
    ok(st == FA4CP_OK && same, "%s: deterministic backward, dq dk dv bit-identical over 5 runs", desc);
    check ref[3], vs[3];
    memset(ref, 0, sizeof ref);
    memset(vs, 0, sizeof vs);
    if (st == FA4CP_OK) {
        ref[0] = compare_rows(&c, c.dtype, t.dq, t.dq_ref, c.total_q, c.H, c.d, 1, 1, 0);
        ref[1] = compare_rows(&c, c.dtype, t.dk, t.dk_ref, c.total_k, c.Hk, c.d, 0, 1, 0);
        ref[2] = compare_rows(&c, c.dtype, t.dv, t.dv_ref, c.total_k, c.Hk, c.dv, 0, 1, 0);
        for (int j = 0; j < 3; j++) {
            for (size_t i = 0; i < n[j]; i++)
                detd[j][i] = fa4cp_load(c.dtype, first[j], i);
            test_poison(c.dtype, outs[j], n[j]);
        }
        st = run(&c, 1, &a); /* the atomic backward */
    }
    if (st == FA4CP_OK) {
        vs[0] = compare_rows(&c, c.dtype, t.dq, detd[0], c.total_q, c.H, c.d, 1, 1, 0);
        vs[1] = compare_rows(&c, c.dtype, t.dk, detd[1], c.total_k, c.Hk, c.d, 0, 1, 0);
        vs[2] = compare_rows(&c, c.dtype, t.dv, detd[2], c.total_k, c.Hk, c.dv, 0, 1, 0);
    } else {
        diag("%s: %s", desc, fa4cp_last_error());
    }
    double tol = test_tol(c.dtype);
    int ref_ok = st == FA4CP_OK, vs_ok = st == FA4CP_OK;
    for (int j = 0; j < 3; j++) {
        ref_ok &= ref[j].err <= tol && !ref[j].pad_nonzero;
        vs_ok &= vs[j].err <= tol && !vs[j].pad_nonzero;
    }
    ok(ref_ok, "%s: deterministic backward matches the float64 reference (dq %.3g dk %.3g dv %.3g)", desc,
       ref[0].err, ref[1].err, ref[2].err);
    ok(vs_ok, "%s: deterministic and atomic backward agree (dq %.3g dk %.3g dv %.3g, tol %g)", desc,
       vs[0].err, vs[1].err, vs[2].err, tol);
    for (int j = 0; j < 3; j++) {
        free(first[j]);
        free(detd[j]);
    }
    free_tensors(&t);
}

/* d 64 and 128 after the forward kernel, sequences of 150-600 rows */
static void cuda_deterministic(test_rng *r)
{
    det_case(r, FA4CP_BF16, 128, 128, 1, -1, -1, 0, 150, 600);  /* causal */
    det_case(r, FA4CP_BF16, 64, 64, 0, -1, -1, 0, 150, 600);    /* no mask */
    det_case(r, FA4CP_FP16, 128, 128, 0, 150, 40, 0, 150, 600); /* local window: KV blocks skip query tiles */
    det_case(r, FA4CP_BF16, 128, 128, 0, -1, -1, 0, 150, 600);  /* no mask: 80-row query tiles */
}

/* The backward of every head dim of the cuda table, bf16 and fp16, both
 * modes, with out and lse from the float64 reference (so the backward is
 * checked on its own, whether or not the forward has a kernel for the head
 * dim): random varlen batches (seqused padding, empty sequences, sq != sk,
 * GQA, dlse), each of the five masks; per head dim a deterministic case
 * (bit-identical over 5 runs, against the reference and the atomic mode); a
 * d256 sequence of many blocks, and d_qk 192 ones with a window. */
static void cuda_bwd_head_dims(test_rng *r)
{
    static const int dims[][2] = {{32, 32},   {64, 64},   {80, 80},   {96, 96},
                                  {128, 128}, {192, 192}, {192, 128}, {256, 256}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        const int d = dims[i][0], dv = dims[i][1];
        const int maxlen = d >= 192 ? 140 : 200;
        for (int det = 0; det < 2; det++) {
            int passed = 0, total = det ? 3 : 5;
            deterministic = det;
            for (int k = 0; k < total; k++) {
                tcase c;
                random_case(r, &c, k % 2 ? FA4CP_FP16 : FA4CP_BF16, maxlen);
                c.d = d;
                c.dv = dv;
                c.dv_as_zero = d == dv && k % 2;
                /* none, causal, window L, window L+R, causal + window L: every
                 * mask over the 8 cases of a head dim */
                int mask = (k + 5 * det) % 5;
                c.causal = mask == 1 || mask == 4;
                c.wl = mask >= 2 ? test_rng_int(r, 0, 150) : -1;
                c.wr = mask == 3 ? test_rng_int(r, 0, 150) : -1;
                passed += bwd_case(r, &c, k % 2 == 0);
            }
            is_int(passed, total, "cuda backward (%d, %d), %s: %d random cases, bf16 and fp16, match the float64 "
                   "reference", d, dv, det ? "deterministic" : "atomic", total);
        }
        deterministic = 0;
        det_case(r, i % 2 ? FA4CP_FP16 : FA4CP_BF16, d, dv, (int)(i % 3 == 0), i % 3 == 2 ? 90 : -1,
                 i % 3 == 2 ? 30 : -1, 1, 70, d >= 192 ? 200 : 260);
    }
    /* d 256: one sequence of many query and key blocks, GQA 2/1, causal, both modes */
    for (int det = 0; det < 2; det++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = FA4CP_BF16;
        c.batch = 1;
        c.H = 2;
        c.Hk = 1;
        c.d = c.dv = 256;
        c.causal = 1;
        c.wl = c.wr = -1;
        c.use_seqused = 1;
        c.used_q[0] = c.used_k[0] = 600 + test_rng_int(r, 0, 63);
        c.cu_q[1] = c.used_q[0] + 5;
        c.cu_k[1] = c.used_k[0] + 3;
        c.total_q = c.cu_q[1] + 2;
        c.total_k = c.cu_k[1];
        deterministic = det;
        ok(bwd_case(r, &c, 1), "cuda backward d256 %s: one sequence of %d rows (10 KV blocks), GQA 2/1, causal, dlse",
           det ? "deterministic" : "atomic", c.used_q[0]);
    }
    /* d_qk 192 (96-row KV blocks, three MMA warpgroups): one sequence of 7-8
     * KV blocks and 10-11 query blocks, GQA 2/1, with a left window (masked
     * blocks at both ends of each KV block's range), both modes; and (192,
     * 128) atomic, dense (bf16) and causal (fp16) without a window, so that
     * a KV block walks up to 11 steps (its loop's two dS^T buffers alternate
     * by step) */
    for (int k = 0; k < 6; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k % 2 ? FA4CP_FP16 : FA4CP_BF16;
        c.batch = 1;
        c.H = 2;
        c.Hk = 1;
        c.d = 192;
        c.dv = k < 2 || k >= 4 ? 128 : 192;
        c.causal = k != 4;
        c.wl = k >= 4 ? -1 : 150 + test_rng_int(r, 0, 200);
        c.wr = -1;
        c.use_seqused = 1;
        c.used_q[0] = 640 + test_rng_int(r, 0, 63);
        c.used_k[0] = 610 + test_rng_int(r, 0, 95);
        c.cu_q[1] = c.used_q[0] + 3;
        c.cu_k[1] = c.used_k[0] + 5;
        c.total_q = c.cu_q[1] + 1;
        c.total_k = c.cu_k[1];
        deterministic = k < 4 && k % 2;
        char mask[48];
        if (c.wl >= 0)
            snprintf(mask, sizeof mask, "causal with a %d-key window", c.wl);
        else
            snprintf(mask, sizeof mask, "%s", c.causal ? "causal" : "dense");
        ok(bwd_case(r, &c, 1), "cuda backward (192, %d) %s %s: one sequence of %d queries, %d keys, GQA 2/1, %s, dlse",
           c.dv, fa4cp_dtype_name(c.dtype), deterministic ? "deterministic" : "atomic", c.used_q[0], c.used_k[0],
           mask);
    }
    /* d 80 and 96 (warpgroup 0 computes dQ alone, warpgroup 1 runs up to a
     * step ahead, two dS^T buffers handed back by named barriers): one
     * sequence of 5-6 KV blocks and 9-11 query blocks, GQA 2/1, so that a KV
     * block walks 10-22 steps; dense, causal, and causal with a left window,
     * both modes */
    for (int k = 0; k < 6; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k % 2 ? FA4CP_FP16 : FA4CP_BF16;
        c.batch = 1;
        c.H = 2;
        c.Hk = 1;
        c.d = c.dv = k < 3 ? 96 : 80;
        c.causal = k % 3 != 0;
        c.wl = k % 3 == 2 ? 100 + test_rng_int(r, 0, 200) : -1;
        c.wr = -1;
        c.use_seqused = 1;
        c.used_q[0] = 580 + test_rng_int(r, 0, 120);
        c.used_k[0] = 600 + test_rng_int(r, 0, 100);
        c.cu_q[1] = c.used_q[0] + 2;
        c.cu_k[1] = c.used_k[0] + 3;
        c.total_q = c.cu_q[1] + 1;
        c.total_k = c.cu_k[1];
        deterministic = k == 1 || k == 3 || k == 5;
        ok(bwd_case(r, &c, 1),
           "cuda backward d%d %s: one sequence of %d queries, %d keys, GQA 2/1, %s, dlse", c.d,
           deterministic ? "deterministic" : "atomic", c.used_q[0], c.used_k[0],
           !c.causal ? "dense" : c.wl >= 0 ? "causal with a left window" : "causal");
    }
    deterministic = 0;
}

/* One sequence per call (every step of a CP plan over one sequence): the
 * kernels take their work order in closed form instead of from the list
 * kernel (kernels/attn_sched.cuh: the forward always, the backward without a
 * left window).  Each case runs with the closed form and, by
 * FA4CP_CUDA_TUNING 524288, with the list kernel: the forward's out and lse
 * and the deterministic backward's dq, dk, dv are bit-identical between the
 * two (same tiles, same order of the dQ additions), and both modes match the
 * float64 reference with exact zeros in the padding rows (seqused shorter
 * than the sequence's rows, and rows past it). */
static void set_tuning(const char *v)
{
    if (v)
        setenv("FA4CP_CUDA_TUNING", v, 1);
    else
        unsetenv("FA4CP_CUDA_TUNING");
}

/* A copy of FA4CP_CUDA_TUNING as the test found it (NULL if unset; the
 * caller restores it by set_tuning and frees it), its value in *base (0 if
 * unset): the cases below add their bits to it. */
static char *tuning_save(long long *base)
{
    const char *old = getenv("FA4CP_CUDA_TUNING");
    char *saved = old ? strdup(old) : NULL;
    *base = saved ? strtoll(saved, NULL, 10) : 0;
    return saved;
}

static void one_seq_cases(test_rng *r)
{
    static const struct {
        int d, H, Hk, sq, sk, causal, wl, wr, pad;
    } cs[] = {
        {128, 2, 2, 600, 900, 1, -1, -1, 0},   /* sq < sk, causal (the upper step) */
        {64, 3, 1, 900, 500, 1, -1, -1, 1},    /* sq > sk, causal: the first rows see nothing */
        {128, 2, 1, 700, 700, 0, -1, -1, 1},   /* dense: 80-row backward tiles */
        {128, 2, 2, 650, 650, 0, -1, 70, 0},   /* a right window only (closed form both ways) */
        {64, 2, 2, 520, 760, 0, 100, 20, 1},   /* a left window: the backward keeps the list */
        {128, 4, 2, 333, 333, 1, -1, -1, 1},   /* GQA, short */
    };
    long long base;
    char *saved = tuning_save(&base);
    char list_tuning[32];
    snprintf(list_tuning, sizeof list_tuning, "%lld", base | 524288LL);
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k % 2 ? FA4CP_FP16 : FA4CP_BF16;
        c.batch = 1;
        c.H = cs[k].H;
        c.Hk = cs[k].Hk;
        c.d = c.dv = cs[k].d;
        c.causal = cs[k].causal;
        c.wl = cs[k].wl;
        c.wr = cs[k].wr;
        c.use_seqused = cs[k].pad;
        c.used_q[0] = cs[k].sq;
        c.used_k[0] = cs[k].sk;
        c.cu_q[1] = cs[k].sq + (cs[k].pad ? test_rng_int(r, 1, 40) : 0);
        c.cu_k[1] = cs[k].sk + (cs[k].pad ? test_rng_int(r, 1, 40) : 0);
        c.total_q = c.cu_q[1] + (cs[k].pad ? 3 : 0);
        c.total_k = c.cu_k[1] + (cs[k].pad ? 2 : 0);
        char desc[256];
        describe(&c, desc, sizeof desc);
        tensors t;
        fa4cp_attn_args a;
        alloc_tensors(&c, &t, r, k % 2 == 0);
        args_of(&c, &t, &a);
        dense(&c, &t, 0);
        const double tol = test_tol(c.dtype);
        const fa4cp_dtype ld = fa4cp_lse_dtype(c.dtype);
        const size_t es = fa4cp_dtype_size(c.dtype), ls = fa4cp_dtype_size(ld);
        void *out2 = malloc(no(&c) * es + 16), *lse2 = malloc(nl(&c) * ls + 16);
        /* forward: the list kernel's order first, then the closed form (whose out stays in t) */
        int fwd_ok = 1, fwd_same = 0;
        for (int closed = 0; closed < 2 && fwd_ok; closed++) {
            set_tuning(closed ? saved : list_tuning);
            test_poison(c.dtype, t.out, no(&c));
            test_poison(ld, t.lse, nl(&c));
            if (run(&c, 0, &a) != FA4CP_OK) {
                diag("%s: forward failed: %s", desc, fa4cp_last_error());
                fwd_ok = 0;
                break;
            }
            check o = compare_rows(&c, c.dtype, t.out, t.o_ref, c.total_q, c.H, c.dv, 1, 0, 1);
            check l = compare_lse(&c, t.lse, t.lse_ref);
            if (!(o.err <= tol) || !(l.err <= tol) || o.poison_touched || l.poison_touched || l.masked_bad ||
                masked_out_nonzero(&c, &t)) {
                diag("%s (%s): forward out err %.3g lse err %.3g, padding rows written %zu/%zu, masked lse "
                     "wrong %zu", desc, closed ? "closed form" : "list", o.err, l.err, o.poison_touched,
                     l.poison_touched, l.masked_bad);
                fwd_ok = 0;
            }
            if (!closed) {
                memcpy(out2, t.out, no(&c) * es);
                memcpy(lse2, t.lse, nl(&c) * ls);
            } else {
                fwd_same = memcmp(out2, t.out, no(&c) * es) == 0 && memcmp(lse2, t.lse, nl(&c) * ls) == 0;
            }
        }
        ok(fwd_ok && fwd_same, "one sequence, %s: forward matches the reference, closed form and list bit-identical",
           desc);
        /* backward on the closed-form forward's out: atomic (closed form), then
         * deterministic with the list and with the closed form */
        int bwd_ok = fwd_ok, det_same = 0;
        void *first[3] = {NULL, NULL, NULL};
        void *outs[3] = {t.dq, t.dk, t.dv};
        size_t n[3] = {nq(&c), nk(&c), nv(&c)};
        if (bwd_ok) {
            set_tuning(saved);
            bwd_ok = check_bwd(&c, &t, &a, desc);
        }
        for (int v = 0; v < 2 && bwd_ok; v++) {
            set_tuning(v ? saved : list_tuning);
            deterministic = 1;
            bwd_ok = check_bwd(&c, &t, &a, desc);
            deterministic = 0;
            for (int j = 0; j < 3 && bwd_ok; j++) {
                if (!v) {
                    first[j] = malloc(n[j] * es + 16);
                    memcpy(first[j], outs[j], n[j] * es);
                }
            }
            if (v && bwd_ok) {
                det_same = 1;
                for (int j = 0; j < 3; j++)
                    det_same &= memcmp(first[j], outs[j], n[j] * es) == 0;
            }
        }
        set_tuning(saved);
        ok(bwd_ok && det_same, "one sequence, %s: both backward modes match the reference, deterministic closed "
           "form and list bit-identical", desc);
        for (int j = 0; j < 3; j++)
            free(first[j]);
        free(out2);
        free(lse2);
        free_tensors(&t);
    }
    set_tuning(saved);
    free(saved);
}

/* The backward's work order (kernels/bwd_ws_kernel.cuh, bwd_ws_work): the KV
 * blocks of 8 kv heads taken in sections of hs heads (entry longest first,
 * then kv head), hs from the costs (attn_sched.cuh, bwd_head_section): these
 * shapes give 132-SM devices 3 (one sequence, closed form: 44 KV blocks of
 * cost 2) and 6-8 (a varlen list) heads a section, so the last section is
 * narrower.  Each case: the atomic backward against the float64 reference,
 * then the deterministic backward in the default order, with the kv head
 * slowest (FA4CP_CUDA_TUNING 16777216) and fastest (65536), which must agree
 * bit for bit (the order of the CTAs moves no addition), and with the query
 * heads outer (33554432: another order of dK, dV's additions), against the
 * reference. */
static void order_cases(test_rng *r)
{
    long long base;
    char *saved = tuning_save(&base);
    for (int k = 0; k < 2; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k ? FA4CP_FP16 : FA4CP_BF16;
        c.H = 16;
        c.Hk = 8;
        c.d = c.dv = k ? 128 : 64;
        c.wl = c.wr = -1;
        c.use_seqused = 1;
        if (k == 0) { /* one sequence: 130 queries (two 128-row blocks), 44 KV blocks */
            c.batch = 1;
            c.used_q[0] = 130;
            c.used_k[0] = 44 * 128 - test_rng_int(r, 0, 100);
        } else { /* a varlen batch, short in queries (dense: 80-row query blocks) */
            c.batch = MAXB;
            for (int b = 0; b < c.batch; b++) {
                c.used_q[b] = test_rng_int(r, 40, 240);
                c.used_k[b] = test_rng_int(r, 500, 700);
            }
        }
        for (int b = 0; b < c.batch; b++) {
            c.cu_q[b + 1] = c.cu_q[b] + c.used_q[b] + test_rng_int(r, 0, 9);
            c.cu_k[b + 1] = c.cu_k[b] + c.used_k[b] + test_rng_int(r, 0, 9);
        }
        c.total_q = c.cu_q[c.batch] + 3;
        c.total_k = c.cu_k[c.batch] + 2;
        char desc[256];
        describe(&c, desc, sizeof desc);
        tensors t;
        fa4cp_attn_args a;
        alloc_tensors(&c, &t, r, 1);
        args_of(&c, &t, &a);
        ref_forward(&c, &t);
        dense(&c, &t, 1); /* the gradients, once for every run below */
        const size_t es = fa4cp_dtype_size(c.dtype);
        void *outs[3] = {t.dq, t.dk, t.dv};
        size_t n[3] = {nq(&c), nk(&c), nv(&c)};
        void *first[3] = {NULL, NULL, NULL};
        for (int j = 0; j < 3; j++)
            first[j] = malloc(n[j] * es + 16);
        set_tuning(saved);
        int good = check_bwd_ref(&c, &t, &a, desc), same = good;
        static const int orders[] = {0, 16777216, 65536, 33554432};
        for (int v = 0; v < 4 && good; v++) {
            char tv[32];
            snprintf(tv, sizeof tv, "%lld", base | orders[v]);
            set_tuning(tv);
            deterministic = 1;
            good = check_bwd_ref(&c, &t, &a, desc);
            deterministic = 0;
            for (int j = 0; j < 3 && good; j++) {
                if (v == 0)
                    memcpy(first[j], outs[j], n[j] * es);
                else if (v < 3 && memcmp(first[j], outs[j], n[j] * es) != 0)
                    same = 0;
            }
            if (!good)
                diag("%s: FA4CP_CUDA_TUNING %s", desc, tv);
        }
        set_tuning(saved);
        ok(good && same, "work order, %s: both backward modes match the reference, deterministic bit-identical "
           "over the kv-head orders", desc);
        for (int j = 0; j < 3; j++)
            free(first[j]);
        free_tensors(&t);
    }
    set_tuning(saved);
    free(saved);
}

/* c's sequence table: lengths drawn in [90, 400] when c->batch > 1, else sq
 * queries and sk keys; 0-9 padding rows after each sequence, 3 and 2 at the
 * ends. */
static void seq_table(tcase *c, test_rng *r, int sq, int sk)
{
    for (int b = 0; b < c->batch; b++) {
        c->used_q[b] = c->batch > 1 ? test_rng_int(r, 90, 400) : sq;
        c->used_k[b] = c->batch > 1 ? test_rng_int(r, 90, 400) : sk;
        c->cu_q[b + 1] = c->cu_q[b] + c->used_q[b] + test_rng_int(r, 0, 9);
        c->cu_k[b + 1] = c->cu_k[b] + c->used_k[b] + test_rng_int(r, 0, 9);
    }
    c->total_q = c->cu_q[c->batch] + 3;
    c->total_k = c->cu_k[c->batch] + 2;
}

/* Case c's tensors and float64 gradients, then the backward in both modes
 * under FA4CP_CUDA_TUNING base | vars[v] for each v, against them (saved:
 * the tuning to restore after); desc gets the case's description.  1 if
 * every run matched. */
static int bwd_modes_under(tcase *c, test_rng *r, long long base, const long long *vars, size_t nv,
                           const char *saved, char *desc, size_t dn)
{
    describe(c, desc, dn);
    tensors t;
    fa4cp_attn_args a;
    alloc_tensors(c, &t, r, 1);
    args_of(c, &t, &a);
    ref_forward(c, &t);
    dense(c, &t, 1);
    int good = 1;
    for (size_t v = 0; v < nv && good; v++)
        for (int det = 0; det < 2 && good; det++) {
            char tv[32];
            snprintf(tv, sizeof tv, "%lld", base | vars[v]);
            set_tuning(tv);
            deterministic = det;
            good = check_bwd_ref(c, &t, &a, desc);
            deterministic = 0;
            if (!good)
                diag("%s: FA4CP_CUDA_TUNING %s, %s", desc, tv, det ? "deterministic" : "atomic");
        }
    set_tuning(saved);
    free_tensors(&t);
    return good;
}

/* The causal d128 backward's tiles (kernels/attn_bwd_kernel.cuh, launch_bwd):
 * 80-row query blocks with the window in their element mask (the default
 * for a right window without a left one) and 64-row ones (FA4CP_CUDA_TUNING
 * 4194304), each with a KV block's walk from its first seeing row rounded
 * down to 8 (the default, non-deterministic) and from a multiple of the
 * step's rows (2^36; the deterministic mode always), in both modes, against
 * the float64 reference: one sequence (the diagonal inside 80-row blocks),
 * sq < sk and sq > sk (causal bottom-right: the diagonal off the blocks'
 * 8-row phase, e.g. 600 x 903: KV block 3 first seen by row 81, the walk
 * from 80; 901 x 500: block 0 by row 401; rows that see no key), a causal
 * varlen GQA batch (lengths drawn in [90, 400], sq != sk each way, padding
 * rows), and a right window only over a varlen batch, GQA. */
static void causal_tile_cases(test_rng *r)
{
    static const struct {
        int H, Hk, sq, sk, wr, batch;
    } cs[] = {
        {2, 1, 700, 700, -1, 1}, /* causal */
        {2, 2, 600, 903, -1, 1}, /* causal, sq < sk (the upper CP step) */
        {4, 2, 901, 500, -1, 1}, /* causal, sq > sk: the first 401 rows see nothing */
        {4, 2, 0, 0, -1, 5},     /* causal, varlen */
        {2, 1, 0, 0, 37, 3},     /* a right window only, varlen */
    };
    static const long long tiles[] = {0, 4194304, 68719476736LL, 4194304 | 68719476736LL};
    long long base;
    char *saved = tuning_save(&base);
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k % 2 ? FA4CP_FP16 : FA4CP_BF16;
        c.batch = cs[k].batch;
        c.H = cs[k].H;
        c.Hk = cs[k].Hk;
        c.d = c.dv = 128;
        c.causal = cs[k].wr < 0;
        c.wl = -1;
        c.wr = cs[k].wr;
        c.use_seqused = 1;
        seq_table(&c, r, cs[k].sq, cs[k].sk);
        char desc[256];
        const int good = bwd_modes_under(&c, r, base, tiles, sizeof tiles / sizeof tiles[0], saved, desc, sizeof desc);
        ok(good, "causal d128 backward tiles, %s: 80-row and 64-row query blocks (FA4CP_CUDA_TUNING 4194304), "
           "walks from row & ~7 and aligned (2^36), both modes match the reference", desc);
    }
    set_tuning(saved);
    free(saved);
}

/* The 80-row d128 backward's staging and exponential variants, each in both
 * modes against the float64 reference: the default (DP: dQ^T staged as
 * float2 pairs, dq_accum rows in dqa_pair_col order; PX: a quarter of the
 * dense kernel's exponentials by polynomial, and of the causal kernel's
 * unmasked steps', PXW), DP off (FA4CP_CUDA_TUNING 4294967296: one-float
 * stores, dqa_col order), PX off (17179869184: dense), PH (34359738368:
 * half of them by polynomial, dense), PXW off (137438953472: causal), SN
 * off (274877906944: the next step's S^T issued at the loop's top, not at
 * the end of a step), DT off (549755813888: the deterministic dQ writer
 * reads each plane out before the next one's reduction), DH off
 * (1099511627776: the deterministic work order's kv-head sections by the
 * normal rule alone; these short sequences otherwise interleave every kv
 * head) and PDL off (2199023255552: plain launches); a dense varlen batch
 * with GQA and padding rows, and a causal sequence. */
static void bwd80_variant_cases(test_rng *r)
{
    static const long long vars[] = {0,
                                     4294967296LL,
                                     17179869184LL,
                                     34359738368LL,
                                     137438953472LL,
                                     274877906944LL,
                                     549755813888LL,
                                     1099511627776LL,
                                     2199023255552LL};
    long long base;
    char *saved = tuning_save(&base);
    for (int k = 0; k < 2; k++) {
        tcase c;
        memset(&c, 0, sizeof c);
        c.dtype = k ? FA4CP_FP16 : FA4CP_BF16;
        c.H = 4;
        c.Hk = k ? 4 : 2;
        c.d = c.dv = 128;
        c.causal = k;
        c.wl = c.wr = -1;
        c.use_seqused = 1;
        c.batch = k ? 1 : 3;
        seq_table(&c, r, 613, 613);
        char desc[256];
        const int good = bwd_modes_under(&c, r, base, vars, sizeof vars / sizeof vars[0], saved, desc, sizeof desc);
        ok(good, "d128 80-row backward variants, %s: DP, PX, PXW, SN, DT, DH and PDL on and off, PH, both modes match the "
                 "reference",
           desc);
    }
    set_tuning(saved);
    free(saved);
}

/* Large logits, forward: softmax scales up to 30 (score jumps between key
 * blocks far beyond the running max: the d128 forward's exp2 taken against
 * the running base before the max, FwdSoftmax::step_spec, must move its base
 * (a rise of 8 to 128 in log2 units) or recompute the block's scores (128
 * and more: the exp2 overflowed)), several key blocks per sequence, random
 * masks and padding, bf16 and fp16, d 128 and 64. */
static void cuda_large_logits(test_rng *r)
{
    static const double scales[] = {0.5, 4.0, 30.0};
    int saved = fwd_only, passed = 0, total = 0, saw = 0;
    fwd_only = 1;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++) {
            tcase c;
            random_case(r, &c, i % 2 ? FA4CP_FP16 : FA4CP_BF16, 600);
            c.d = c.dv = i < 2 ? 128 : 64;
            c.batch = c.batch > 2 ? 2 : c.batch;
            c.total_q = c.total_q > c.cu_q[c.batch] ? c.total_q : c.cu_q[c.batch];
            c.total_k = c.total_k > c.cu_k[c.batch] ? c.total_k : c.cu_k[c.batch];
            if (c.wl >= 0)
                c.wl = test_rng_int(r, 0, 500);
            if (c.wr >= 0)
                c.wr = test_rng_int(r, 0, 500);
            c.scale = scales[k];
            passed += run_case(r, &c, 0, &saw);
            total++;
        }
    fwd_only = saved;
    is_int(passed, total, "forward with large logits (softmax scale 0.5, 4, 30): %d random cases with sequences up "
                          "to 600 rows", total);
}

/* The d64 and d128 forward's packed GQA tiles (kernels/fwd_sched.cuh: the G
 * query heads of a KV head at BM / G tokens a tile), forward only (the backward
 * does not pack): random varlen batches of G query heads per KV head with
 * short and empty sequences and padding between them (seqused, rows past
 * the last sequence), random masks (causal, windows, bottom-right with sq
 * != sk), sq <= 64 against sk up to maxk (the decode-like case) or longer
 * self-attention, some with a large softmax scale (the d128 rare path);
 * against the float64 reference, outputs poisoned, padding rows untouched. */
static int packed_case(test_rng *r, fa4cp_dtype dt, int d, int H, int Hk, int maxb, int maxq, int maxk, int *saw)
{
    tcase c;
    memset(&c, 0, sizeof c);
    c.dtype = dt;
    c.batch = test_rng_int(r, 1, maxb);
    c.H = H;
    c.Hk = Hk;
    c.d = c.dv = d;
    c.dv_as_zero = test_rng_int(r, 0, 1);
    int mask = test_rng_int(r, 0, 4); /* none, causal, window L, window L+R, causal+window L */
    c.causal = mask == 1 || mask == 4;
    c.wl = mask >= 2 ? test_rng_int(r, 0, maxk > maxq ? maxk : maxq) : -1;
    c.wr = mask == 3 ? test_rng_int(r, 0, 40) : -1;
    c.use_seqused = test_rng_int(r, 0, 2) != 0;
    c.cu_q[0] = c.cu_k[0] = 0;
    for (int b = 0; b < c.batch; b++) {
        int lq = test_rng_int(r, 0, 5) == 0 ? 0 : test_rng_int(r, 1, maxq);
        int lk = maxk == 0 ? lq : test_rng_int(r, 0, 7) == 0 ? 0 : test_rng_int(r, 1, maxk);
        int pq = lq, pk = lk;
        if (c.use_seqused) {
            pq += test_rng_int(r, 0, 9);
            pk += test_rng_int(r, 0, 9);
            c.used_q[b] = lq;
            c.used_k[b] = lk;
        }
        c.cu_q[b + 1] = c.cu_q[b] + pq;
        c.cu_k[b + 1] = c.cu_k[b] + pk;
    }
    c.total_q = c.cu_q[c.batch] + test_rng_int(r, 0, 5);
    c.total_k = c.cu_k[c.batch] + test_rng_int(r, 0, 5);
    c.scale = test_rng_int(r, 0, 3) == 0 ? 4.0 : 0;
    return run_case(r, &c, 0, saw);
}

static void cuda_packed(test_rng *r, int small)
{
    static const int gqa[][2] = {{8, 1}, {12, 2}, {6, 1}, {16, 1}};
    long long base;
    char *saved = tuning_save(&base);
    char forced[32];
    snprintf(forced, sizeof forced, "%lld", base | 8LL);
    int fo = fwd_only;
    fwd_only = 1;
    if (small) { /* for compute-sanitizer: two small batches, packing forced */
        int passed = 0, saw = 0;
        set_tuning(forced);
        passed += packed_case(r, FA4CP_BF16, 128, 8, 1, 3, 40, 0, &saw);
        passed += packed_case(r, FA4CP_FP16, 128, 6, 1, 3, 20, 300, &saw);
        passed += packed_case(r, FA4CP_BF16, 64, 16, 1, 3, 30, 200, &saw);
        set_tuning(saved);
        is_int(passed, 3, "packed GQA forward (d128 8/1 and 6/1, d64 16/1): 3 small random batches");
        fwd_only = fo;
        free(saved);
        return;
    }
    for (int k = 0; k < 4; k++) {
        const int H = gqa[k][0], Hk = gqa[k][1];
        int passed = 0, total = 0, saw = 0;
        set_tuning(forced);
        for (int i = 0; i < 6; i++, total++) {
            const fa4cp_dtype dt = (i + k) % 2 ? FA4CP_FP16 : FA4CP_BF16;
            const int d = (i / 2 + k) % 2 ? 64 : 128;
            if (i < 2) /* short self-attention (and sq != sk through seqused) */
                passed += packed_case(r, dt, d, H, Hk, MAXB, 64, 0, &saw);
            else if (i < 4) /* decode-like: sq 1-64 against sk up to 4k */
                passed += packed_case(r, dt, d, H, Hk, i == 2 ? 2 : MAXB, 64, i == 2 ? 4096 : 1500, &saw);
            else /* several packed blocks and key blocks per sequence */
                passed += packed_case(r, dt, d, H, Hk, 3, i == 4 ? 300 : 200, i == 4 ? 0 : 700, &saw);
        }
        /* one sequence (its order in closed form, no list kernel) */
        for (int i = 0; i < 2; i++, total++)
            passed += packed_case(r, i ? FA4CP_FP16 : FA4CP_BF16, i ? 64 : 128, H, Hk, 1, i ? 250 : 50, i ? 0 : 2500,
                                  &saw);
        set_tuning(saved);
        is_int(passed, total, "packed GQA %d/%d forward (tuning 8): %d random varlen batches (d 64 and 128; short, "
                              "empty, decode-like sq <= 64 vs sk <= 4k, windows, padding)", H, Hk, total);
        /* the default heuristic: short sequences pack, longer may not */
        passed = total = 0;
        for (int i = 0; i < 3; i++, total++)
            passed += packed_case(r, i % 2 ? FA4CP_FP16 : FA4CP_BF16, i == 1 ? 64 : 128, H, Hk, MAXB,
                                  i == 2 ? 16 : 64, i == 0 ? 0 : 2000, &saw);
        is_int(passed, total, "GQA %d/%d forward, short sequences, the default packing heuristic: %d random batches",
               H, Hk, total);
    }
    fwd_only = fo;
    free(saved);
}

/* Sequences longer than the kernels' tiles (several query and key blocks,
 * partial last blocks), both backward paths, and bit-identical repeats of the
 * deterministic backward. */
static void cuda_cases(test_rng *r)
{
    fa4cp_dtype dts[] = {FA4CP_BF16, FA4CP_FP16};
    for (int det = 0; det < (fwd_only ? 1 : 2); det++)
        for (int k = 0; k < 2; k++) {
            int passed = 0, total = 6, saw = 0;
            deterministic = det;
            for (int i = 0; i < total; i++) {
                tcase c;
                random_case(r, &c, dts[k], 300);
                if (c.wl >= 0)
                    c.wl = test_rng_int(r, 0, 200);
                if (c.wr >= 0)
                    c.wr = test_rng_int(r, 0, 200);
                passed += run_case(r, &c, i % 2, &saw);
            }
            is_int(passed, total, "%s, %s: %d random cases with sequences up to 300 rows",
                   fa4cp_dtype_name(dts[k]),
                   fwd_only ? "forward" : det ? "deterministic backward" : "atomic backward", total);
        }
    deterministic = 0;

    /* GQA groups of 6 and 12 query heads per KV head, several query and key
     * blocks, random masks, padding between the sequences (seqused) */
    {
        static const int gqa[][2] = {{12, 2}, {6, 1}};
        for (int k = 0; k < 2; k++) {
            int passed = 0, total = 4, saw = 0;
            for (int i = 0; i < total; i++) {
                tcase c;
                random_case(r, &c, dts[(k + i) % 2], 400);
                c.H = gqa[k][0];
                c.Hk = gqa[k][1];
                c.batch = c.batch > 3 ? 3 : c.batch;
                c.total_q = c.total_q > c.cu_q[c.batch] ? c.total_q : c.cu_q[c.batch];
                c.total_k = c.total_k > c.cu_k[c.batch] ? c.total_k : c.cu_k[c.batch];
                if (c.wl >= 0)
                    c.wl = test_rng_int(r, 0, 300);
                if (c.wr >= 0)
                    c.wr = test_rng_int(r, 0, 300);
                passed += run_case(r, &c, i % 2, &saw);
            }
            is_int(passed, total, "GQA %d/%d: %d random cases with sequences up to 400 rows", gqa[k][0], gqa[k][1],
                   total);
        }
    }

    cuda_large_logits(r);
    cuda_packed(r, 0);

    /* one long sequence (forward, sampled rows) */
    ok(long_case(r, FA4CP_BF16, 128, 128, 2, 1, 65536 + 77, 65536 + 77, 0, -1),
       "bf16 d128 GQA 2/1: one sequence of 65613 rows, no mask (sampled rows vs float64)");
    ok(long_case(r, FA4CP_FP16, 64, 64, 3, 1, 40000, 70001, 1, -1),
       "fp16 d64 GQA 3/1: sq 40000 < sk 70001, causal bottom-right (sampled rows vs float64)");
    ok(long_case(r, FA4CP_BF16, 128, 128, 2, 2, 66000, 66000, 1, 3000),
       "bf16 d128: one sequence of 66000 rows, causal with a 3000-key window (sampled rows vs float64)");
    /* K/V of 8 MB a head: L2 sections of 2 heads (fwd_section_groups), each
     * ending in the tiles of the 28 query blocks that see no key, so a CTA
     * meets tiles without keys between tiles with them */
    ok(long_case(r, FA4CP_BF16, 128, 128, 6, 6, 20000, 16384, 1, -1),
       "bf16 d128 6 heads: sq 20000 > sk 16384, causal bottom-right, empty tiles between L2 sections (sampled rows vs "
       "float64)");
    cuda_long_head_dims(r);

    if (!fwd_only) {
        cuda_deterministic(r);
        cuda_bwd_head_dims(r);
        one_seq_cases(r);
        order_cases(r);
        causal_tile_cases(r);
        bwd80_variant_cases(r);
    }

    /* a misaligned pointer is refused before any launch */
    fa4cp_attn_args b = FA4CP_ATTN_ARGS_INIT;
    static _Alignas(16) int32_t cu[8] = {0, 8};
    b.dtype = FA4CP_BF16;
    b.batch = 1;
    b.heads = b.kv_heads = 1;
    b.head_dim = 64;
    b.total_q = b.total_k = 8;
    b.cu_seqlens_q = b.cu_seqlens_k = cu;
    b.q = b.k = b.v = b.out = b.lse = (void *)cu;
    b.q = (const char *)cu + 4;
    is_int(fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &b), FA4CP_ERR_INVALID, "cuda: a misaligned q is refused");
    like(fa4cp_last_error(), "16-byte", "the refusal says why");
}

/* ------------------------------------------------------------------ the table of head dims */

/* The cuda backend refuses what it has no kernel for from the table alone:
 * on every machine (no GPU, or a build without CUDA), with host pointers
 * that a device call would fail on differently, and with the message that
 * names the supported set - so the check comes before any device call. */
static void cuda_refusals(void)
{
    static const int bad[][2] = {{64, 32}, {128, 64}, {48, 48}, {160, 160}, {192, 64}, {256, 128}, {512, 512}};
    /* the cuda families (kernels/fwd_launch.h): a forward kernel each */
    static const int fams[][2] = {{32, 32}, {64, 64}, {80, 80}, {96, 96}, {128, 128}, {192, 192}, {192, 128}, {256, 256}};
    int32_t cu[2] = {0, 8};
    static uint16_t buf[8 * 512];
    float lse[8];
    fa4cp_attn_args b = FA4CP_ATTN_ARGS_INIT;
    b.dtype = FA4CP_BF16;
    b.batch = 1;
    b.heads = b.kv_heads = 1;
    b.total_q = b.total_k = 8;
    b.cu_seqlens_q = b.cu_seqlens_k = cu;
    b.q = b.k = b.v = b.dout = buf;
    b.out = b.dq = b.dk = b.dv = buf;
    b.lse = lse;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[64];
        b.head_dim = bad[i][0];
        b.head_dim_v = bad[i][1];
        snprintf(want, sizeof want, "head_dim %d with head_dim_v %d has no", bad[i][0], bad[i][1]);
        for (int bwd = 0; bwd < 2; bwd++) {
            fa4cp_clear_error();
            is_int(bwd ? fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &b) : fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &b),
                   FA4CP_ERR_UNSUPPORTED, "cuda %s: (head_dim, head_dim_v) = (%d, %d) is refused",
                   bwd ? "backward" : "forward", bad[i][0], bad[i][1]);
            like(fa4cp_last_error(), want, "the refusal names the shape");
            like(fa4cp_last_error(), "(64, 64), (80, 80)", "and the supported set, before any device call");
        }
        is_int(fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, bad[i][0], bad[i][1], 0),
               FA4CP_ERR_UNSUPPORTED, "the table refuses (%d, %d) on cuda", bad[i][0], bad[i][1]);
        is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_BF16, bad[i][0], bad[i][1], 1), FA4CP_OK,
               "and takes it on cpu");
    }
    /* what the cuda kernels take, head_dim_v given or 0 */
    ok(fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, 64, 0, 1) == FA4CP_OK &&
           fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_FP16, 128, 128, 1) == FA4CP_OK &&
           fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, 128, 0, 0) == FA4CP_OK,
       "the table takes (64, 64) and (128, 128) on cuda, head_dim_v 0 meaning head_dim");
    {
        const char *text = fa4cp_attn_head_dims(FA4CP_BACKEND_CUDA);
        int named = 0, fwd = 0;
        for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
            char pair[32];
            snprintf(pair, sizeof pair, "(%d, %d)", fams[i][0], fams[i][1]);
            named += strstr(text, pair) != NULL;
            fwd += fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_FP16, fams[i][0], fams[i][1], 0) == FA4CP_OK;
        }
        is_int(named, (int)(sizeof fams / sizeof fams[0]), "cuda's set as text names every family: %s", text);
        is_int(fwd, (int)(sizeof fams / sizeof fams[0]), "the table has a forward kernel for every family");
        ok(strstr(text, ", or ") == NULL && strstr(text, " or (256, 256)") != NULL, "the text is a list ending in 'or'");
    }
    /* a family without a backward kernel: the raw backward refuses it from
     * the table, naming the shape and what it lacks, before any device call */
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        if (fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, fams[i][0], fams[i][1], 1) == FA4CP_OK)
            continue;
        char want[80];
        b.head_dim = fams[i][0];
        b.head_dim_v = fams[i][1];
        snprintf(want, sizeof want, "head_dim %d with head_dim_v %d has no backward kernel", fams[i][0], fams[i][1]);
        fa4cp_clear_error();
        is_int(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &b), FA4CP_ERR_UNSUPPORTED,
               "cuda backward: (%d, %d) has a forward kernel only and is refused", fams[i][0], fams[i][1]);
        like(fa4cp_last_error(), want, "the refusal says the backward is missing");
        like(fa4cp_last_error(), "forward only", "and which pairs are forward only");
    }
    b.head_dim = 64;
    b.head_dim_v = 0;
    b.dtype = FA4CP_FP32;
    is_int(fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &b), FA4CP_ERR_UNSUPPORTED, "cuda: fp32 is refused");
    like(fa4cp_last_error(), "bf16 or fp16", "the refusal says what it takes");
    /* cpu: any head dim up to the documented limit */
    is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_FP64, 1, 1, 1), FA4CP_OK, "cpu takes (1, 1)");
    is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_FP32, FA4CP_HEAD_DIM_MAX, 7, 1), FA4CP_OK,
           "cpu takes (FA4CP_HEAD_DIM_MAX, 7)");
    is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_FP32, 64, FA4CP_HEAD_DIM_MAX + 1, 0),
           FA4CP_ERR_UNSUPPORTED, "cpu refuses head_dim_v past FA4CP_HEAD_DIM_MAX");
    like(fa4cp_last_error(), "1..1024", "naming its range");
    is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_FP32, 64, -1, 0), FA4CP_ERR_INVALID,
           "head_dim_v -1 is invalid");
    is_int(fa4cp_attn_supports(FA4CP_BACKEND_CPU, FA4CP_FP32, 0, 0, 0), FA4CP_ERR_INVALID, "head_dim 0 is invalid");
}

/* The head dims of models in use and every (head_dim, head_dim_v) of the
 * cuda table, on this backend (cpu: all of them), each through the whole
 * conformance check: fresh random shapes and inputs (varlen, seqused
 * padding, GQA, masks, dlse; on cuda sequences over several query and key
 * blocks and wide windows), fp64 and bf16 on cpu, bf16 and fp16 on cuda.  A
 * pair with a forward kernel but no backward one runs forward only, and its
 * TAP line says so. */
static void head_dim_cases(test_rng *r)
{
    static const int dims[][2] = {{192, 128}, {64, 32}, {80, 80}, {96, 96}, {256, 256},
                                  {32, 32},   {64, 64}, {128, 128}, {192, 192}};
    const int cuda = backend == FA4CP_BACKEND_CUDA;
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        if (fa4cp_attn_supports(backend, FA4CP_BF16, dims[i][0], dims[i][1], 0) != FA4CP_OK) {
            skip(1, "%s has no kernel for (%d, %d): %s", fa4cp_backend_name(backend), dims[i][0], dims[i][1],
                 fa4cp_last_error());
            continue;
        }
        const int bwd = !fwd_only && fa4cp_attn_supports(backend, FA4CP_BF16, dims[i][0], dims[i][1], 1) == FA4CP_OK;
        fa4cp_clear_error();
        int passed = 0, total = cuda ? 8 : 6, saw = 0;
        for (int k = 0; k < total; k++) {
            tcase c;
            fa4cp_dtype dt = cuda ? (k % 2 ? FA4CP_FP16 : FA4CP_BF16) : (k % 2 ? FA4CP_BF16 : FA4CP_FP64);
            random_case(r, &c, dt, cuda ? 300 : 12);
            c.d = dims[i][0];
            c.dv = dims[i][1];
            c.dv_as_zero = c.dv == c.d && k % 4 == 0;
            if (cuda && c.wl >= 0)
                c.wl = test_rng_int(r, 0, 200);
            if (cuda && c.wr >= 0)
                c.wr = test_rng_int(r, 0, 200);
            if (cuda && k == total - 1) { /* GQA 12/2 over a few sequences */
                c.H = 12;
                c.Hk = 2;
                c.batch = c.batch > 2 ? 2 : c.batch;
                c.total_q = c.total_q > c.cu_q[c.batch] ? c.total_q : c.cu_q[c.batch];
                c.total_k = c.total_k > c.cu_k[c.batch] ? c.total_k : c.cu_k[c.batch];
            }
            passed += run_case(r, &c, k % 2, &saw);
        }
        is_int(passed, total, "%s (head_dim, head_dim_v) = (%d, %d): %d random cases match the dense reference%s",
               fa4cp_backend_name(backend), dims[i][0], dims[i][1], total,
               bwd        ? " (forward and backward)"
               : fwd_only ? " (forward only: test_attn cuda fwd)"
                          : " (forward only: the table has no backward kernel)");
    }
}

/* ------------------------------------------------------------------ refusals */

static void refusals(void)
{
    int32_t cu[2] = {0, 8};
    double buf[8 * 4 * 8];
    float lse[32];
    fa4cp_attn_args a = tiny_args(3, 2, cu, buf, lse);
    is_int(fa4cp_attn_fwd(backend, &a), FA4CP_ERR_INVALID, "heads not a multiple of kv_heads is refused");
    like(fa4cp_last_error(), "heads (3) is not a multiple of kv_heads (2)", "GQA refusal message");
    a.heads = 4;
    a.window_left = -2;
    is_int(fa4cp_attn_fwd(backend, &a), FA4CP_ERR_INVALID, "window -2 is refused");
    a.window_left = -1;
    a.struct_size = 8;
    is_int(fa4cp_attn_fwd(backend, &a), FA4CP_ERR_INVALID, "a wrong struct_size is refused");
    like(fa4cp_last_error(), "FA4CP_ATTN_ARGS_INIT", "struct_size refusal says how to initialise");
}

int main(int argc, char **argv)
{
    if (argc > 1 && fa4cp_backend_parse(argv[1], &backend) != FA4CP_OK)
        bail("%s", fa4cp_last_error());
    if (!fa4cp_backend_available(backend)) {
        if (backend == FA4CP_BACKEND_CUDA) {
#ifdef HAVE_CUDA
            int n = 0;
            cudaError_t e = cudaGetDeviceCount(&n);
            skip_all("no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e)
                                           : n == 0 ? "0 devices"
                                                    : "the kernels need a Hopper (sm_90) GPU");
#else
            skip_all("no CUDA device: this build has no CUDA (configure --with-cuda)");
#endif
        }
        skip_all("backend %s is not available here", fa4cp_backend_name(backend));
    }
    plan(0);
    test_rng rng = test_rng_init("test_attn");
    diag("backend %s", fa4cp_backend_name(backend));
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "det") == 0) {
        cuda_deterministic(&rng);
        return done_testing();
    }
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "bwd") == 0) {
        cuda_bwd_head_dims(&rng);
        cuda_deterministic(&rng);
        causal_tile_cases(&rng);
        bwd80_variant_cases(&rng);
        chain_cases(&rng);
        return done_testing();
    }
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "chain") == 0) {
        chain_cases(&rng);
        return done_testing();
    }
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "fwd") == 0)
        fwd_only = 1; /* the cases below, forward only (no deterministic or backward-only sections) */
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "one") == 0) {
        one_seq_cases(&rng);
        order_cases(&rng);
        return done_testing();
    }
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strncmp(argv[2], "pack", 4) == 0) {
        cuda_packed(&rng, strcmp(argv[2], "packsmall") == 0); /* "pack", or "packsmall" for compute-sanitizer */
        return done_testing();
    }
    if (backend == FA4CP_BACKEND_CUDA && argc > 2 && strcmp(argv[2], "hd") == 0) {
        head_dim_cases(&rng);
        cuda_long_head_dims(&rng);
        return done_testing();
    }

    fa4cp_dtype dts[] = {FA4CP_FP64, FA4CP_FP32, FA4CP_BF16, FA4CP_FP16};
    int ndt = backend == FA4CP_BACKEND_CUDA ? 2 : 4;
    int first = backend == FA4CP_BACKEND_CUDA ? 2 : 0;
    for (int k = first; k < first + ndt && k < 4; k++) {
        int passed = 0, total = 40, saw_masked = 0;
        for (int i = 0; i < total; i++) {
            tcase c;
            random_case(&rng, &c, dts[k], 24);
            passed += run_case(&rng, &c, i % 2, &saw_masked);
        }
        is_int(passed, total, "%s: %d random cases (varlen, seqused, windows, GQA, dlse) match the dense reference",
               fa4cp_dtype_name(dts[k]), total);
        ok(saw_masked, "%s: the random cases included fully masked rows", fa4cp_dtype_name(dts[k]));
    }

    /* targeted shapes */
    {
        int saw = 0;
        tcase c;
        random_case(&rng, &c, backend == FA4CP_BACKEND_CUDA ? FA4CP_BF16 : FA4CP_FP64, 8);
        c.batch = 3;
        c.use_seqused = 1;
        int32_t cuq[] = {0, 0, 10, 14}, cuk[] = {0, 0, 6, 14}, uq[] = {0, 10, 2}, uk[] = {0, 3, 8};
        memcpy(c.cu_q, cuq, sizeof cuq);
        memcpy(c.cu_k, cuk, sizeof cuk);
        memcpy(c.used_q, uq, sizeof uq);
        memcpy(c.used_k, uk, sizeof uk);
        c.total_q = 14;
        c.total_k = 14;
        c.causal = 1;
        c.wl = c.wr = -1;
        ok(run_case(&rng, &c, 1, &saw), "zero-length sequence, sq > sk causal (bottom-right: first rows see nothing)");
        ok(saw, "that case has fully masked rows");
        c.causal = 0;
        c.use_seqused = 1;
        uk[1] = 0;
        memcpy(c.used_k, uk, sizeof uk);
        ok(run_case(&rng, &c, 0, &saw), "a sequence with queries but no keys gives out 0 and lse -inf");
    }
    head_dim_cases(&rng);
    if (backend == FA4CP_BACKEND_CUDA)
        cuda_cases(&rng);
    if (!fwd_only)
        chain_cases(&rng);
    refusals();
    cuda_refusals();
    if (backend == FA4CP_BACKEND_CPU)
        ok(finite_differences(&rng), "backward matches central finite differences (fp64, 6 random small shapes, with dlse)");
    return done_testing();
}
