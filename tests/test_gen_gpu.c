/* test_gen_gpu.c - the GPU generator against gen.c bit for bit, and the GPU
 * reference of the check against the float64 host reference (the oracle),
 * on random tuples, rows and shapes (varlen, GQA, windows, causal, cp > 1).
 * Host parts (the one-pass row map, the generator's polynomials against
 * libm) run everywhere; the GPU parts skip without a GPU. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fa4cp.h"
#include "run/gen_gpu.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>

#include "../kernels/run_kernels.h"
#endif

static uint64_t rng = 0x243f6a8885a308d3ULL;
static uint64_t next(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static fa4cp_workload *load(const char *text)
{
    fa4cp_workload *w = NULL;
    if (fa4cp_workload_load_buffer("gen_gpu.yaml", text, strlen(text), NULL, 0, &w))
        diag("load failed: %s", fa4cp_last_error());
    return w;
}

#ifdef HAVE_CUDA
static double round_to(int dt, double v)
{
    switch (dt) {
    case FA4CP_BF16: return fa4cp_bf16_to_float(fa4cp_float_to_bf16((float)v));
    case FA4CP_FP16: return fa4cp_fp16_to_float(fa4cp_float_to_fp16((float)v));
    case FA4CP_FP32: return (float)v;
    default: return v;
    }
}
#endif

/* the Box-Muller value with libm's log/cos/sin: the polynomials of
 * gen_math.h must agree to a few ulp */
static void host_math(void)
{
    double worst = 0;
    int n = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t seed = next();
        int64_t tok = (int64_t)(next() >> 24);
        int head = (int)(next() % 64), dim = (int)(next() % 256);
        double v = fa4cp_gen_value(seed, (int)(next() % 4), tok, head, dim);
        worst = fmax(worst, fabs(v)); /* finite and bounded */
        n += isfinite(v);
    }
    /* the same hash with libm's log, cos and sin (the generator before
     * gen_math.h): the polynomials agree to a few ulp */
    double dmax = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t seed = next(), z;
        int64_t tok = (int64_t)(next() >> 30);
        int tensor = (int)(next() % 4), head = (int)(next() % 64), pair = (int)(next() % 128);
#define MIX(x) (z = (x), z ^= z >> 30, z *= 0xbf58476d1ce4e5b9ULL, z ^= z >> 27, z *= 0x94d049bb133111ebULL, z ^ (z >> 31))
        uint64_t hh = MIX(seed + 0x9e3779b97f4a7c15ULL);
        hh = MIX(hh ^ ((uint64_t)(uint32_t)tensor * 0xd1b54a32d192ed03ULL));
        hh = MIX(hh ^ (uint64_t)tok);
        hh = MIX(hh ^ ((uint64_t)(uint32_t)head * 0xaf251af3b0f025b5ULL));
        hh = MIX(hh ^ ((uint64_t)(uint32_t)pair * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL));
#undef MIX
        double u1 = ((double)(hh >> 32) + 0.5) * (1.0 / 4294967296.0);
        double u2 = (double)(hh & 0xffffffffu) * (1.0 / 4294967296.0);
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        dmax = fmax(dmax, fabs(r * cos(a) - fa4cp_gen_value(seed, tensor, tok, head, 2 * pair)));
        dmax = fmax(dmax, fabs(r * sin(a) - fa4cp_gen_value(seed, tensor, tok, head, 2 * pair + 1)));
    }
    ok(dmax < 1e-13, "generator: the polynomial log/sin/cos = libm's Box-Muller within %.2g on 100000 pairs", dmax);
    ok(n == 200000 && worst < 8.0, "generator: 200000 random values finite, |v| <= %.3f", worst);
    /* mean/variance over one long row range */
    double s = 0, s2 = 0;
    for (int i = 0; i < 400000; i++) {
        double v = fa4cp_gen_value(99, FA4CP_GEN_K, i / 128, 3, i % 128);
        s += v;
        s2 += v * v;
    }
    ok(fabs(s / 400000) < 0.01 && fabs(s2 / 400000 - 1) < 0.01, "generator: mean %.4f, variance %.4f",
       s / 400000, s2 / 400000);
}

static void row_map(void)
{
    const char *yaml = "version: 1\nattention: {heads: 2, kv_heads: 1, head_dim: 8, dtype: bf16, sequences: [203, 61, 1, 120],"
                       " pad_between_seqs: true}\nrun: {seed: 5, backend: cpu}\nsweep:\n  cp.size: [1, 2, 3, 4, 8]\n";
    fa4cp_workload *w = load(yaml);
    ok(w != NULL, "row map workload");
    if (!w)
        return;
    for (int i = 0; i < fa4cp_workload_count(w); i++) {
        const fa4cp_case *c = fa4cp_workload_get(w, i);
        int64_t rows = c->padded_tokens / c->cp;
        int64_t *m = malloc(sizeof(int64_t) * (size_t)rows);
        int same = 1;
        for (int r = 0; r < c->cp; r++) {
            for (int64_t l = 0; l < rows; l++)
                m[l] = -7;
            run_gen_map(c, r, m);
            for (int64_t l = 0; l < rows; l++)
                same &= m[l] == fa4cp_case_local_token(c, r, l);
        }
        ok(same, "cp %d: the one-pass row map = fa4cp_case_local_token on every row of every rank", c->cp);
        free(m);
    }
    fa4cp_workload_free(w);
}

#ifdef HAVE_CUDA

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess)                                                                     \
            bail("%s:%d: %s: %s", __FILE__, __LINE__, #x, cudaGetErrorString(e_));                 \
    } while (0)

/* random (seed, tensor, token, head, dim, dtype) tuples: GPU == host, bit for bit */
static void gpu_points(void)
{
    int64_t n = 200000;
    fa4cp_kgen_point *p = malloc(sizeof *p * (size_t)n);
    double *got = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        p[i].seed = next();
        p[i].tensor = (int)(next() % 4);
        p[i].token = i < 1000 ? i : (int64_t)(next() >> (next() % 40 + 1));
        p[i].head = (int)(next() % 128);
        p[i].dim = (int)(next() % 1024);
        p[i].dtype = (int)(next() % 4);
    }
    fa4cp_kgen_point *dp;
    double *dv;
    CK(cudaMalloc((void **)&dp, sizeof *p * (size_t)n));
    CK(cudaMalloc((void **)&dv, sizeof(double) * (size_t)n));
    /* poison: a kernel that writes nothing fails */
    CK(cudaMemset(dv, 0xff, sizeof(double) * (size_t)n));
    CK(cudaMemcpy(dp, p, sizeof *p * (size_t)n, cudaMemcpyHostToDevice));
    ok(fa4cp_kgen_points(dp, n, dv, NULL) == 0, "points kernel launches");
    CK(cudaMemcpy(got, dv, sizeof(double) * (size_t)n, cudaMemcpyDeviceToHost));
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        double want = round_to(p[i].dtype, fa4cp_gen_value(p[i].seed, p[i].tensor, p[i].token, p[i].head, p[i].dim));
        if (memcmp(&want, &got[i], sizeof want)) {
            if (first < 0)
                first = i;
            bad++;
        }
    }
    if (first >= 0)
        diag("first mismatch: seed %llu tensor %d token %lld head %d dim %d dtype %d: gpu %.17g host %.17g",
             (unsigned long long)p[first].seed, p[first].tensor, (long long)p[first].token, p[first].head,
             p[first].dim, p[first].dtype, got[first],
             round_to(p[first].dtype, fa4cp_gen_value(p[first].seed, p[first].tensor, p[first].token, p[first].head,
                                                      p[first].dim)));
    ok(bad == 0, "GPU generator == gen.c bit for bit on %lld random (seed, tensor, token, head, dim, dtype) tuples "
                 "(%lld differ)", (long long)n, (long long)bad);
    cudaFree(dp);
    cudaFree(dv);
    free(p);
    free(got);
}

/* whole shards: fa4cp_kgen_fill with the row map == fa4cp_gen_fill_local;
 * the last four with head_dim_v != head_dim (V and dO rows head_dim_v wide);
 * and the whole batch in logical order (no map) == fa4cp_gen_row */
static void gpu_fill(void)
{
    const char *dts[] = {"bf16", "fp16", "fp32", "fp64"};
    static const int dvs[][2] = {{24, 16}, {16, 40}, {7, 5}, {192, 128}};
    for (int k = 0; k < 12; k++) {
        char text[512];
        int cp = 1 + (int)(next() % 4), d = k == 7 ? 7 : 8 << (next() % 4), dv = d;
        if (k >= 8)
            d = dvs[k - 8][0], dv = dvs[k - 8][1];
        snprintf(text, sizeof text,
                 "version: 1\nattention: {heads: 4, kv_heads: 2, head_dim: %d, head_dim_v: %d, dtype: %s, "
                 "sequences: [%d, %d, 1], pad_between_seqs: true}\ncp: {size: %d}\nrun: {seed: %llu, backend: cpu}\n",
                 d, dv, dts[k % 4], 50 + (int)(next() % 300), 1 + (int)(next() % 100), cp,
                 (unsigned long long)(next() >> 1));
        fa4cp_workload *w = load(text);
        if (!w) {
            ok(0, "fill workload %d", k);
            continue;
        }
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        int64_t rows = c->padded_tokens / c->cp, T = c->tokens;
        int wmax = c->head_dim > c->head_dim_v ? c->head_dim : c->head_dim_v;
        int64_t most = rows > T ? rows : T;
        size_t es = fa4cp_dtype_size(c->dtype), max = (size_t)most * c->heads * wmax * es;
        void *host = malloc(max), *got = malloc(max), *dst;
        int64_t *map = malloc(sizeof(int64_t) * (size_t)rows), *dmap;
        double *row = malloc(sizeof(double) * (size_t)wmax);
        CK(cudaMalloc(&dst, max));
        CK(cudaMalloc((void **)&dmap, sizeof(int64_t) * (size_t)rows));
        int same = 1, batch_same = 1;
        for (int r = 0; r < c->cp; r++) {
            run_gen_map(c, r, map);
            CK(cudaMemcpy(dmap, map, sizeof(int64_t) * (size_t)rows, cudaMemcpyHostToDevice));
            for (int t = 0; t < 4; t++) {
                CK(cudaMemset(dst, 0x7f, max)); /* poison, padding rows and the tail included */
                same &= run_gen_fill_gpu(c, t, dmap, rows, dst, NULL) == FA4CP_OK;
                CK(cudaMemcpy(got, dst, max, cudaMemcpyDeviceToHost));
                memset(host, 0x7f, max);
                fa4cp_gen_fill_local(c, t, r, host);
                same &= !memcmp(host, got, max); /* nothing written past the shard either */
            }
        }
        /* no map: row l is logical token l, every head */
        for (int t = 0; t < 4; t++) {
            int h = t == FA4CP_GEN_K || t == FA4CP_GEN_V ? c->kv_heads : c->heads;
            int wt = t == FA4CP_GEN_V || t == FA4CP_GEN_DOUT ? c->head_dim_v : c->head_dim;
            CK(cudaMemset(dst, 0x7f, max));
            batch_same &= run_gen_fill_gpu(c, t, NULL, T, dst, NULL) == FA4CP_OK;
            CK(cudaMemcpy(got, dst, max, cudaMemcpyDeviceToHost));
            for (int64_t tok = 0; tok < T; tok++)
                for (int hh = 0; hh < h; hh++) {
                    fa4cp_gen_row(c, t, tok, hh, row);
                    for (int x = 0; x < wt; x++) {
                        double g = fa4cp_load(c->dtype, got, ((size_t)tok * h + hh) * wt + x);
                        batch_same &= !memcmp(&g, &row[x], sizeof g);
                    }
                }
            /* nothing past the batch */
            size_t end = (size_t)T * h * wt * es;
            for (size_t i = end; i < max && i < end + 64; i++)
                batch_same &= ((unsigned char *)got)[i] == 0x7f;
        }
        ok(same, "%s d %d dv %d cp %d seed %llu: every rank's Q, K, V, dO shard on the GPU == "
                 "fa4cp_gen_fill_local, bytes and zero padding rows", dts[k % 4], c->head_dim, c->head_dim_v, c->cp,
           (unsigned long long)c->seed);
        ok(batch_same, "  the whole batch without a map (row = logical token, %lld tokens) == fa4cp_gen_row",
           (long long)T);
        cudaFree(dst);
        cudaFree(dmap);
        free(host);
        free(got);
        free(map);
        free(row);
        fa4cp_workload_free(w);
    }
}

typedef struct lsed {
    const fa4cp_case *c;
    const double *lse, *D; /* [h][T] */
} lsed;

static void lse_d(void *ctx, int seq, int64_t i, int head, double *lse, double *D)
{
    const lsed *g = ctx;
    int64_t t = g->c->cu_tokens[seq] + i;
    *lse = g->lse[(size_t)head * g->c->tokens + t];
    *D = g->D[(size_t)head * g->c->tokens + t];
}

static double relmax(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i]))
            return INFINITY; /* fmax would drop it: an unwritten (NaN-poisoned) output must fail */
        if (isinf(a[i]) && isinf(b[i]) && (a[i] < 0) == (b[i] < 0))
            continue;
        num = fmax(num, fabs(a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    /* relative to the largest reference value, floored at 1e-3: with window 0
     * a query sees only itself and dq is 0 up to rounding (1e-18 vs 0) */
    return num / fmax(den, 1e-3);
}

/* one check on the GPU (query rows, then key rows), regenerating rows or
 * reading the batch generated once */
static fa4cp_status ref_gpu(const fa4cp_case *c, run_ref_ws *ws, int pregen, const run_ref_row *qr, int nq,
                            const run_ref_row *kr, int nk, const void *glse, const double *gD, int64_t rows,
                            double *o, double *l, double *dq, double *dk, double *dv)
{
    run_ref_job j;
    memset(&j, 0, sizeof j);
    j.qrows = qr, j.nq = nq, j.krows = kr, j.nk = nk, j.local_rows = rows;
    j.glse = glse, j.gD = gD, j.pregen = pregen;
    j.ref_out = o, j.ref_lse = l, j.ref_dq = dq, j.ref_dk = dk, j.ref_dv = dv;
    return run_ref_gpu(c, ws, &j, NULL);
}

/* the query rows' errors against a rank's tensors (device) */
static fa4cp_status ref_cmp(const fa4cp_case *c, run_ref_ws *ws, int pregen, const run_ref_row *qr, int nq,
                            int64_t rows, const void *out, const void *lse, const void *dq, run_ref_err *er)
{
    run_ref_job j;
    memset(&j, 0, sizeof j);
    j.qrows = qr, j.nq = nq, j.local_rows = rows, j.pregen = pregen;
    j.out = out, j.lse = lse, j.dq = dq, j.qerr = er;
    return run_ref_gpu(c, ws, &j, NULL);
}

/* the GPU reference against the host float64 reference on random rows; the
 * last shapes with head_dim_v != head_dim.  Each shape twice: every block
 * regenerating its rows, and reading the whole batch generated once. */
static void gpu_reference(void)
{
    const char *shapes[] = {"causal: true", "causal: false", "causal: true, window: 9",
                            "causal: false, window: [5, 11]", "causal: true, window: 0"};
    const char *dts[] = {"bf16", "fp16", "fp32", "fp64"};
    static const int dvs[][2] = {{24, 16}, {16, 40}, {48, 32}, {192, 128}};
    /* the cuda backend's head dims, 2 to 8 dims per lane of the reference
     * (partly idle lanes at 96), with sequences long enough for many rows
     * per warp (the acceptance job's full check: 8/8 heads, d 128, 501 and
     * 249 tokens, cp 4) */
    static const struct {
        int d, dv, kvh, cp, s0, s1, dt, shape;
    } wide[] = {{128, 128, 8, 4, 501, 249, 0, 0}, {128, 128, 2, 2, 300, 77, 1, 1}, {256, 256, 4, 1, 170, 41, 2, 0},
                {96, 96, 4, 3, 230, 1, 3, 3},      {64, 64, 4, 3, 400, 130, 0, 2},  {256, 256, 2, 2, 200, 50, 1, 1}};
    run_ref_ws ws;
    memset(&ws, 0, sizeof ws);
    for (int sh = 0; sh < 20; sh++) {
        char text[700];
        int cp = 1 + sh % 3, kvh = sh % 2 ? 2 : 4, d = sh == 9 ? 40 : 16 << (sh % 3), dv = d;
        int s0 = 60 + (sh % 10) * 17, s1 = 1 + (sh % 10) * 5, dt = sh % 4, shape = sh % 5;
        if (sh >= 10 && sh < 14)
            d = dvs[sh - 10][0], dv = dvs[sh - 10][1];
        if (sh >= 14) {
            d = wide[sh - 14].d, dv = wide[sh - 14].dv, kvh = wide[sh - 14].kvh, cp = wide[sh - 14].cp;
            s0 = wide[sh - 14].s0, s1 = wide[sh - 14].s1, dt = wide[sh - 14].dt, shape = wide[sh - 14].shape;
        }
        snprintf(text, sizeof text,
                 "version: 1\nattention: {heads: 8, kv_heads: %d, head_dim: %d, head_dim_v: %d, dtype: %s, %s, "
                 "sequences: [%d, %d, 3], pad_between_seqs: true}\ncp: {size: %d, comm: %s}\n"
                 "run: {seed: %d, backend: cpu, backward: true}\n",
                 kvh, d, dv, dts[dt], shapes[shape], s0, s1, cp, shape >= 2 ? "all_gather" : "p2p", 1000 + sh);
        fa4cp_workload *w = load(text);
        if (!w) {
            ok(0, "reference workload %d", sh);
            continue;
        }
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        int h = c->heads, hk = c->kv_heads, dd = c->head_dim, dw = c->head_dim_v, group = h / hk;
        int64_t T = c->tokens, rows = c->padded_tokens / c->cp;
        /* host oracle: every query row (lse, D for the key rows), a whole
         * sequence and kv head per call (each key row generated once: the
         * longer shapes would take half a minute row by row) */
        double *lse = malloc(sizeof(double) * (size_t)T * h), *D = malloc(sizeof(double) * (size_t)T * h);
        double *o = malloc(sizeof(double) * (size_t)T * group * dw);
        double *dout = malloc(sizeof(double) * dw), *ls = malloc(sizeof(double) * (size_t)T * group);
        int64_t *all = malloc(sizeof(int64_t) * (size_t)T);
        for (int s = 0; s < c->batch; s++) {
            int64_t n = c->seqlen[s];
            for (int64_t i = 0; i < n; i++)
                all[i] = i;
            for (int kv = 0; n > 0 && kv < hk; kv++) {
                fa4cp_ref_query_rows(c, s, (int)n, all, kv, o, ls, NULL);
                for (int64_t i = 0; i < n; i++)
                    for (int g = 0; g < group; g++) {
                        int64_t t = c->cu_tokens[s] + i;
                        int hh = kv * group + g;
                        const double *oi = o + ((size_t)i * group + g) * dw;
                        lse[(size_t)hh * T + t] = ls[(size_t)i * group + g];
                        fa4cp_gen_row(c, FA4CP_GEN_DOUT, t, hh, dout);
                        double acc = 0;
                        for (int x = 0; x < dw; x++)
                            acc += dout[x] * oi[x];
                        D[(size_t)hh * T + t] = acc;
                    }
            }
        }
        free(all);
        free(ls);
        /* the gathered [cp][h][rows] lse (lse dtype) and D of the CP layout */
        int lfp64 = fa4cp_lse_dtype(c->dtype) == FA4CP_FP64;
        size_t gn = (size_t)c->cp * h * rows;
        void *glse = calloc(gn, lfp64 ? 8 : 4);
        double *gD = calloc(gn, sizeof(double));
        int64_t *map = malloc(sizeof(int64_t) * (size_t)rows);
        for (int r = 0; r < c->cp; r++) {
            run_gen_map(c, r, map);
            for (int64_t l = 0; l < rows; l++)
                for (int hh = 0; hh < h; hh++) {
                    size_t at = ((size_t)r * h + hh) * rows + l;
                    double lv = map[l] < 0 ? -INFINITY : lse[(size_t)hh * T + map[l]];
                    if (lfp64)
                        ((double *)glse)[at] = lv;
                    else
                        ((float *)glse)[at] = (float)lv;
                    gD[at] = map[l] < 0 ? 0 : D[(size_t)hh * T + map[l]];
                }
        }
        /* the host reference reads the same (float-rounded) lse as the GPU */
        double *lse_r = malloc(sizeof(double) * (size_t)T * h);
        for (size_t i = 0; i < (size_t)T * h; i++)
            lse_r[i] = lfp64 ? lse[i] : (double)(float)lse[i];
        lsed ctx = {c, lse_r, D};
        /* random rows of sequence 0 and 1, every head of a random kv head */
        int nr = 6;
        run_ref_row qr[6 * 8], kr[6];
        int64_t pos[6];
        int seqs[6];
        for (int i = 0; i < nr; i++) {
            seqs[i] = i % 2 && c->seqlen[1] > 0 ? 1 : 0;
            pos[i] = i == 0 ? 0 : i == 2 ? c->seqlen[seqs[i]] - 1 : (int64_t)(next() % (uint64_t)c->seqlen[seqs[i]]);
        }
        int kv = (int)(next() % (uint64_t)hk);
        int nq = 0;
        for (int i = 0; i < nr; i++) {
            for (int g = 0; g < group; g++)
                qr[nq++] = (run_ref_row){seqs[i], kv * group + g, pos[i], -1};
            kr[i] = (run_ref_row){seqs[i], kv, pos[i], -1};
        }
        double *go = malloc(sizeof(double) * nq * dw), *gq = malloc(sizeof(double) * nq * dd);
        double *gl = malloc(sizeof(double) * nq), *gk = malloc(sizeof(double) * nr * dd);
        double *gv = malloc(sizeof(double) * nr * dw);
        double *ho = malloc(sizeof(double) * nq * dw), *hq = malloc(sizeof(double) * nq * dd);
        double *hl = malloc(sizeof(double) * nq), *hkk = malloc(sizeof(double) * nr * dd);
        double *hv = malloc(sizeof(double) * nr * dw);
        for (int i = 0; i < nr; i++) {
            int64_t one = pos[i];
            fa4cp_ref_query_rows(c, seqs[i], 1, &one, kv, ho + (size_t)i * group * dw, hl + (size_t)i * group,
                                 hq + (size_t)i * group * dd);
            fa4cp_ref_key_rows(c, seqs[i], 1, &one, kv, lse_d, &ctx, hkk + (size_t)i * dd, hv + (size_t)i * dw);
        }
        void *dglse;
        double *dgD;
        CK(cudaMalloc(&dglse, gn * (lfp64 ? 8 : 4)));
        CK(cudaMalloc((void **)&dgD, gn * sizeof(double)));
        CK(cudaMemcpy(dglse, glse, gn * (lfp64 ? 8 : 4), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dgD, gD, gn * sizeof(double), cudaMemcpyHostToDevice));
        for (int pregen = 0; pregen < 2; pregen++) {
            /* poison: a kernel that writes nothing fails */
            for (int i = 0; i < nq * dw; i++)
                go[i] = NAN;
            for (int i = 0; i < nq * dd; i++)
                gq[i] = NAN;
            for (int i = 0; i < nr * dd; i++)
                gk[i] = NAN;
            for (int i = 0; i < nr * dw; i++)
                gv[i] = NAN;
            for (int i = 0; i < nq; i++)
                gl[i] = NAN;
            fa4cp_status st = ref_gpu(c, &ws, pregen, qr, nq, kr, nr, dglse, dgD, rows, go, gl, gq, gk, gv);
            ok(st == FA4CP_OK, "GPU reference runs (%s)", st ? fa4cp_last_error() : text);
            double eo = relmax(go, ho, (size_t)nq * dw), el = relmax(gl, hl, (size_t)nq);
            double eq = relmax(gq, hq, (size_t)nq * dd), ek = relmax(gk, hkk, (size_t)nr * dd);
            double ev = relmax(gv, hv, (size_t)nr * dw);
            ok(eo < 1e-12 && el < 1e-12 && eq < 1e-11 && ek < 1e-11 && ev < 1e-12,
               "%s %s h 8/%d d %d dv %d cp %d, %s: GPU reference = host float64 reference on %d random query "
               "rows (x%d heads) and key rows: rel err out %.2g lse %.2g dq %.2g dk %.2g dv %.2g",
               dts[dt], shapes[shape], hk, dd, dw, c->cp,
               pregen ? "inputs generated once for the batch" : "rows regenerated by each block", nr, group, eo,
               el, eq, ek, ev);
        }

        /* the comparison against a rank's tensors: rank 0's out/lse/dq set
         * to the rounded host reference at the sampled rows, then one
         * element off by 8 */
        {
            size_t es = fa4cp_dtype_size(c->dtype), qn = (size_t)rows * h * dd, on = (size_t)rows * h * dw;
            void *hout = calloc(on, es), *hdq = calloc(qn, es), *hlse = calloc((size_t)h * rows, lfp64 ? 8 : 4);
            void *dout_, *ddq, *dlse;
            run_gen_map(c, 0, map);
            int nloc = 0;
            run_ref_row lr[8 * 8];
            for (int64_t l = 0; l < rows && nloc < 8 * group; l += 1 + rows / 8) {
                if (map[l] < 0)
                    continue;
                int s = 0;
                while (s + 1 < c->batch && c->cu_tokens[s + 1] <= map[l])
                    s++;
                int64_t p = map[l] - c->cu_tokens[s];
                double lv[8];
                fa4cp_ref_query_rows(c, s, 1, &p, kv, ho, lv, hq);
                for (int g = 0; g < group; g++) {
                    int head = kv * group + g;
                    lr[nloc++] = (run_ref_row){s, head, p, l};
                    for (int x = 0; x < dw; x++)
                        fa4cp_store(c->dtype, hout, ((size_t)l * h + head) * dw + x, ho[(size_t)g * dw + x]);
                    for (int x = 0; x < dd; x++)
                        fa4cp_store(c->dtype, hdq, ((size_t)l * h + head) * dd + x, hq[(size_t)g * dd + x]);
                    fa4cp_store(fa4cp_lse_dtype(c->dtype), hlse, (size_t)head * rows + l, lv[g]);
                }
            }
            CK(cudaMalloc(&dout_, on * es));
            CK(cudaMalloc(&ddq, qn * es));
            CK(cudaMalloc(&dlse, (size_t)h * rows * (lfp64 ? 8 : 4)));
            CK(cudaMemcpy(dout_, hout, on * es, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(ddq, hdq, qn * es, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dlse, hlse, (size_t)h * rows * (lfp64 ? 8 : 4), cudaMemcpyHostToDevice));
            run_ref_err er[64];
            double tol = fa4cp_check_tolerance(c->dtype);
            int pregen = sh % 2;
            fa4cp_status st = ref_cmp(c, &ws, pregen, lr, nloc, rows, dout_, dlse, ddq, er);
            double d0 = 0, r0 = 0, d1 = 0, r1 = 0, le = 0;
            for (int i = 0; i < nloc; i++)
                d0 += er[i].d0, r0 += er[i].r0, d1 += er[i].d1, r1 += er[i].r1, le = fmax(le, er[i].lse);
            /* norms floored at 1e-3 (dq is 0 up to rounding with window 0) */
            double eo2 = sqrt(d0) / fmax(sqrt(r0), 1e-3), eq2 = sqrt(d1) / fmax(sqrt(r1), 1e-3);
            ok(!st && nloc > 0 && eo2 <= tol && eq2 <= tol && le <= tol && r0 > 0,
               "  compared with a rank's tensors holding the rounded reference: out %.2g dq %.2g lse %.2g <= %.2g "
               "(%d rows)", eo2, eq2, le, tol, nloc);
            /* one element of one sampled row off by 8: caught (dq: head_dim wide; out: head_dim_v wide) */
            size_t at = ((size_t)lr[nloc - 1].local * h + lr[nloc - 1].head) * dd + 1;
            fa4cp_store(c->dtype, hdq, at, fa4cp_load(c->dtype, hdq, at) + 8.0);
            CK(cudaMemcpy(ddq, hdq, qn * es, cudaMemcpyHostToDevice));
            size_t ao = ((size_t)lr[0].local * h + lr[0].head) * dw + (size_t)dw - 1;
            fa4cp_store(c->dtype, hout, ao, fa4cp_load(c->dtype, hout, ao) + 8.0);
            CK(cudaMemcpy(dout_, hout, on * es, cudaMemcpyHostToDevice));
            st = ref_cmp(c, &ws, pregen, lr, nloc, rows, dout_, dlse, ddq, er);
            d0 = r0 = d1 = r1 = 0;
            for (int i = 0; i < nloc; i++)
                d0 += er[i].d0, r0 += er[i].r0, d1 += er[i].d1, r1 += er[i].r1;
            eo2 = sqrt(d0) / fmax(sqrt(r0), 1e-3);
            eq2 = sqrt(d1) / fmax(sqrt(r1), 1e-3);
            ok(!st && eq2 > tol && eo2 > tol, "  injected dq and out errors are caught: %.2g, %.2g > %.2g", eq2, eo2,
               tol);
            cudaFree(dout_);
            cudaFree(ddq);
            cudaFree(dlse);
            free(hout);
            free(hdq);
            free(hlse);
        }
        cudaFree(dglse);
        cudaFree(dgD);
        free(lse), free(D), free(o), free(dout), free(glse), free(gD), free(map), free(lse_r);
        free(go), free(gq), free(gl), free(gk), free(gv), free(ho), free(hq), free(hl), free(hkk), free(hv);
        fa4cp_workload_free(w);
    }
    ok(run_ref_ws_bytes(&ws) > 0, "the reference's workspace is kept between checks (%zu bytes)", run_ref_ws_bytes(&ws));
    run_ref_ws_release(&ws);
    ok(run_ref_ws_bytes(&ws) == 0, "  and released");
}
#endif

int main(void)
{
    plan(0);
    host_math();
    row_map();
#ifdef HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        skip(1, "no CUDA device: the GPU generator and reference are not tested here");
        return done_testing();
    }
    gpu_points();
    gpu_fill();
    gpu_reference();
#else
    skip(1, "built without CUDA: the GPU generator and reference are not tested here");
#endif
    return done_testing();
}
