/* test_cp.c - context-parallel attention against the non-CP reference.
 *
 * usage: test_cp [quick]   (FA4CP_TEST_ROUNDS=n: n draws per cell, default 2)
 *
 * The matrix: cp in {1,2,3,4} x comm in {p2p, all_gather, a2a} x mask in
 * {none, causal, window (64,0), window (32,32)} (windows not with p2p, which
 * refuses them) x layout in {bshd, thd, thd with padding between sequences};
 * heads (8/8, 12/2, 12/4; a2a picks what divides cp), head dims (64, 128, and
 * (96, 64): v narrower than q/k) and storage dtype (fp64, fp32, bf16) rotate
 * through the cases.  Then the matrix again with head_dim_v != head_dim in
 * every case (wider and narrower v, MLA's (192, 128)), every shape.  Every case
 * draws fresh lengths (0 included) and inputs, runs the non-CP reference
 * (fa4cp_attn_fwd/bwd, cpu backend) on the global tensors, shards them, runs
 * cp ranks as threads over the local transport (forward, then backward on
 * the CP forward's own out/lse), unshards and compares out, lse, dq, dk, dv
 * on real rows; padding rows separately: out/lse untouched (poison), dq/dk/dv
 * exactly 0; no NaN/Inf anywhere else.
 */
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXB 6

typedef struct tcase {
    fa4cp_cp_config cfg;
    int cp, B, seqlen;
    int pad; /* THD: seqused given, padding between sequences */
    int with_dlse;
    int32_t cu[MAXB + 1], used[MAXB];
} tcase;

typedef struct gtensors {
    void *q, *k, *v, *dout, *dlse;
    void *out, *lse, *dq, *dk, *dv;          /* reference */
    void *cout, *clse, *cdq, *cdk, *cdv;     /* CP results, unsharded */
} gtensors;

typedef struct rank_job {
    const tcase *c;
    fa4cp_comm *comm;
    void *q, *k, *v, *dout, *dlse, *out, *lse, *dq, *dk, *dv;
    fa4cp_status st;
    char err[600];
} rank_job;

static int64_t G_of(const tcase *c) { return c->cu[c->B]; }
static size_t rowq(const tcase *c) { return (size_t)c->cfg.heads * (size_t)c->cfg.head_dim; }
static size_t rowk(const tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)c->cfg.head_dim; }
static int dv_of(const tcase *c) { return c->cfg.head_dim_v ? c->cfg.head_dim_v : c->cfg.head_dim; }
/* out, dout: [rows, heads, dv]; v, dv: [rows, kv_heads, dv] */
static size_t rowo(const tcase *c) { return (size_t)c->cfg.heads * (size_t)dv_of(c); }
static size_t rowv(const tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)dv_of(c); }

static void describe(const tcase *c, char *buf, size_t n)
{
    char mask[48];
    if (c->cfg.window_left >= 0 || c->cfg.window_right >= 0)
        snprintf(mask, sizeof mask, "%swindow (%d,%d)", c->cfg.causal ? "causal " : "", c->cfg.window_left,
                 c->cfg.window_right);
    else
        snprintf(mask, sizeof mask, "%s", c->cfg.causal ? "causal" : "no mask");
    int at = snprintf(buf, n, "cp=%d %s %s%s %s h=%d/%d d=%d dv=%d %s%s lens", c->cp,
                      fa4cp_cp_comm_name(c->cfg.comm), fa4cp_cp_format_name(c->cfg.format), c->pad ? "+pad" : "",
                      mask, c->cfg.heads, c->cfg.kv_heads, c->cfg.head_dim, c->cfg.head_dim_v,
                      fa4cp_dtype_name(c->cfg.dtype),
                      c->with_dlse ? " dlse" : "");
    for (int i = 0; i < c->B && at > 0 && (size_t)at < n; i++)
        at += snprintf(buf + at, n - (size_t)at, " %d/%d", c->pad ? c->used[i] : c->cu[i + 1] - c->cu[i],
                       c->cu[i + 1] - c->cu[i]);
}

static int is_real(const tcase *c, int64_t row)
{
    int s = fa4cp_thd_seq_of_row(c->B, c->cu, row);
    return s >= 0 && row - c->cu[s] < (c->pad ? c->used[s] : c->cu[s + 1] - c->cu[s]);
}

/* ------------------------------------------------------------------ the ranks */

static void *rank_main(void *p)
{
    rank_job *j = p;
    const tcase *c = j->c;
    fa4cp_cp *cp = NULL;
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
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
    a.q = j->q;
    a.k = j->k;
    a.v = j->v;
    a.out = j->out;
    a.lse = j->lse;
    a.dout = j->dout;
    a.dlse = j->dlse;
    a.dq = j->dq;
    a.dk = j->dk;
    a.dv = j->dv;
    j->st = fa4cp_cp_fwd(cp, &a);
    if (j->st == FA4CP_OK)
        j->st = fa4cp_cp_bwd(cp, &a);
out:
    if (j->st != FA4CP_OK)
        snprintf(j->err, sizeof j->err, "%s", fa4cp_last_error());
    fa4cp_cp_destroy(cp);
    return NULL;
}

/* Run the CP ranks as threads; results unsharded into g->c*.  0 on failure. */
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
    memset(jobs, 0, sizeof jobs);
    if (fa4cp_local_world_create(n, 0, 30.0, &w) != FA4CP_OK)
        bail("local world: %s", fa4cp_last_error());
    for (int r = 0; r < n; r++) {
        rank_job *j = &jobs[r];
        j->c = c;
        if (fa4cp_local_comm(w, r, &j->comm) != FA4CP_OK)
            bail("local comm: %s", fa4cp_last_error());
        size_t nq = (size_t)T * rowq(c) * es + 16, nk = (size_t)T * rowk(c) * es + 16, nl = (size_t)H * T * ls + 16;
        size_t no = (size_t)T * rowo(c) * es + 16, nv = (size_t)T * rowv(c) * es + 16;
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
        fa4cp_comm_destroy(j->comm);
    }
    fa4cp_local_world_destroy(w);
    return good;
}

/* ------------------------------------------------------------------ comparison */

typedef struct cmp {
    double err;
    size_t nonfinite, pad_bad, masked_bad;
} cmp;

/* rows x width elements; padding rows must be poison (want_zero 0) or exactly 0 */
static cmp compare(const tcase *c, fa4cp_dtype dt, const void *x, const void *ref, int64_t rows, size_t width,
                   int want_zero)
{
    cmp k = {0};
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++) {
        int real = is_real(c, r);
        for (size_t e = 0; e < width; e++) {
            size_t i = (size_t)r * width + e;
            if (!real) {
                if (want_zero ? fa4cp_load(dt, x, i) != 0.0 : !test_is_poison(dt, x, i))
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

static cmp compare_lse(const tcase *c, const void *x, const void *ref)
{
    cmp k = {0};
    fa4cp_dtype ld = fa4cp_lse_dtype(c->cfg.dtype);
    double num = 0, den = 0;
    int64_t G = G_of(c);
    for (int h = 0; h < c->cfg.heads; h++)
        for (int64_t r = 0; r < G; r++) {
            size_t i = (size_t)h * (size_t)G + (size_t)r;
            if (!is_real(c, r)) {
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

/* the largest error seen per storage dtype, as a fraction of its tolerance */
static double worst[4];

static double tol_of(const tcase *c)
{
    switch (c->cfg.dtype) {
    case FA4CP_FP64: return 1e-10;
    case FA4CP_FP32: return 1e-5;
    default: return c->cfg.heads != c->cfg.kv_heads ? 3.5e-2 : 2.5e-2;
    }
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
            P = L / m * m; /* no padding: lengths are multiples of 2*cp */
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
    void **all[] = {&g.q, &g.k, &g.v, &g.dout, &g.dlse, &g.out, &g.lse, &g.dq, &g.dk, &g.dv,
                    &g.cout, &g.clse, &g.cdq, &g.cdk, &g.cdv};
    size_t sizes[] = {nq * es, nk * es, nv * es, no * es, nl * ls, no * es, nl * ls, nq * es, nk * es, nv * es,
                      no * es, nl * ls, nq * es, nk * es, nv * es};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        *all[i] = malloc(sizes[i] + 16);
    test_fill(rng, dt, g.q, nq, 1.0);
    test_fill(rng, dt, g.k, nk, 1.0);
    test_fill(rng, dt, g.v, nv, 1.0);
    test_fill(rng, dt, g.dout, no, 1.0);
    test_fill(rng, ld, g.dlse, nl, 0.5);
    test_poison(dt, g.out, no);
    test_poison(ld, g.lse, nl);
    test_poison(dt, g.cout, no);
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
    if (fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK || fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a) != FA4CP_OK)
        bail("reference failed for %s: %s", desc, fa4cp_last_error());

    if (!run_cp(c, &g, err, sizeof err)) {
        diag("%s: %s", desc, err);
        good = 0;
        goto out;
    }
    double tol = tol_of(c);
    cmp o = compare(c, dt, g.cout, g.out, G, rowo(c), 0);
    cmp l = compare_lse(c, g.clse, g.lse);
    cmp q = compare(c, dt, g.cdq, g.dq, G, rowq(c), 1);
    cmp k = compare(c, dt, g.cdk, g.dk, G, rowk(c), 1);
    cmp v = compare(c, dt, g.cdv, g.dv, G, rowv(c), 1);
    cmp *cs[] = {&o, &l, &q, &k, &v};
    const char *names[] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; i++) {
        if (cs[i]->err / tol > worst[dt])
            worst[dt] = cs[i]->err / tol;
        if (!(cs[i]->err <= tol) || cs[i]->nonfinite || cs[i]->pad_bad || cs[i]->masked_bad) {
            diag("%s: %s error %.3g (tol %g), non-finite %zu, padding rows wrong %zu, fully masked rows wrong %zu",
                 desc, names[i], cs[i]->err, tol, cs[i]->nonfinite, cs[i]->pad_bad, cs[i]->masked_bad);
            good = 0;
        }
    }
out:
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(*all[i]);
    return good;
}

/* heads/kv_heads that a2a can split over cp (GQA where possible) */
static void pick_heads(int comm, int cp, int idx, int *h, int *hk)
{
    static const int opts[][2] = {{8, 8}, {12, 2}, {12, 4}};
    if (comm != FA4CP_CP_A2A) {
        *h = opts[idx % 3][0];
        *hk = opts[idx % 3][1];
        return;
    }
    static const int a2a[][2] = {{8, 8}, {12, 2}, {12, 4}, {12, 3}, {6, 6}, {12, 6}};
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
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    test_rng rng = test_rng_init("test_cp");
    static const int masks[][3] = {{0, -1, -1}, {1, -1, -1}, {0, 64, 0}, {0, 32, 32}};
    static const char *mask_names[] = {"no mask", "causal", "window (64,0)", "window (32,32)"};
    static const fa4cp_dtype dts[] = {FA4CP_FP64, FA4CP_FP32, FA4CP_BF16};
    int idx = 0, rounds = 2;
    const char *re = getenv("FA4CP_TEST_ROUNDS");
    if (re && atoi(re) > 0)
        rounds = atoi(re);
    plan(0);
    for (int cp = 1; cp <= 4; cp++)
        for (int comm = 0; comm < 3; comm++)
            for (int mk = 0; mk < 4; mk++) {
                if (comm == FA4CP_CP_P2P && mk >= 2)
                    continue; /* refused: see test_cp_plan */
                int pass = 0, total = 0;
                for (int f = 0; f < 3 * rounds; f++, idx++) {
                    tcase c;
                    memset(&c, 0, sizeof c);
                    fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
                    c.cfg = init;
                    c.cp = cp;
                    c.cfg.comm = (fa4cp_cp_comm_type)comm;
                    c.cfg.format = f % 3 == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                    c.pad = f % 3 == 2;
                    c.cfg.causal = masks[mk][0];
                    c.cfg.window_left = masks[mk][1];
                    c.cfg.window_right = masks[mk][2];
                    c.cfg.dtype = dts[(idx + cp) % 3];
                    static const int dims[][2] = {{64, 0}, {128, 128}, {96, 64}};
                    c.cfg.head_dim = dims[(idx / 3) % 3][0];
                    c.cfg.head_dim_v = dims[(idx / 3) % 3][1];
                    pick_heads(comm, cp, idx / 2 + cp, &c.cfg.heads, &c.cfg.kv_heads);
                    c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                    c.with_dlse = idx % 2;
                    int maxlen = mk >= 2 ? 96 : 64;
                    if (quick)
                        maxlen /= 2;
                    if (c.cfg.head_dim >= 96)
                        maxlen = maxlen * 3 / 4;
                    fill_lengths(&rng, &c, maxlen);
                    total++;
                    pass += run_case(&rng, &c);
                }
                ok(pass == total, "cp=%d %s %s: %d/%d cases (bshd, thd, thd+pad) match the reference",
                   cp, fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), mask_names[mk], pass, total);
            }
    /* head_dim_v != head_dim in every case: every shape, cp 1..4, every mask
     * it takes, bshd, thd and thd with padding, v narrower and wider than
     * q/k (and MLA's 192/128 in a few), fp64, fp32 and bf16 */
    for (int comm = 0; comm < 3; comm++) {
        int pass = 0, total = 0;
        for (int cp = 1; cp <= 4; cp++)
            for (int mk = 0; mk < 4; mk++) {
                if (comm == FA4CP_CP_P2P && mk >= 2)
                    continue;
                for (int f = 0; f < 3; f++, idx++) {
                    static const int dims[][2] = {{48, 32}, {16, 40}, {32, 8}, {24, 64}, {192, 128}};
                    tcase c;
                    memset(&c, 0, sizeof c);
                    fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
                    c.cfg = init;
                    c.cp = cp;
                    c.cfg.comm = (fa4cp_cp_comm_type)comm;
                    c.cfg.format = f == 0 ? FA4CP_CP_BSHD : FA4CP_CP_THD;
                    c.pad = f == 2;
                    c.cfg.causal = masks[mk][0];
                    c.cfg.window_left = masks[mk][1];
                    c.cfg.window_right = masks[mk][2];
                    c.cfg.dtype = dts[(idx + cp) % 3];
                    int which = idx % 5;
                    c.cfg.head_dim = dims[which][0];
                    c.cfg.head_dim_v = dims[which][1];
                    pick_heads(comm, cp, idx / 2 + cp, &c.cfg.heads, &c.cfg.kv_heads);
                    c.cfg.softmax_scale = idx % 4 == 3 ? 0.09 : 0;
                    c.with_dlse = idx % 2;
                    int maxlen = which == 4 ? 24 : mk >= 2 ? 64 : 48;
                    if (quick)
                        maxlen /= 2;
                    fill_lengths(&rng, &c, maxlen);
                    total++;
                    pass += run_case(&rng, &c);
                }
            }
        ok(pass == total, "%s, head_dim_v != head_dim: %d/%d cases (cp 1-4, every mask, bshd, thd, thd+pad) match the reference",
           fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), pass, total);
    }
    /* long single sequences with windows shorter than a chunk and longer */
    for (int comm = 1; comm < 3; comm++) {
        int pass = 0, total = 0;
        for (int cp = 2; cp <= 4; cp++, idx++) {
            tcase c;
            memset(&c, 0, sizeof c);
            fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
            c.cfg = init;
            c.cp = cp;
            c.cfg.comm = (fa4cp_cp_comm_type)comm;
            c.cfg.format = FA4CP_CP_THD;
            c.pad = 1;
            c.cfg.causal = cp % 2;
            c.cfg.window_left = 5 + cp;
            c.cfg.window_right = cp == 3 ? -1 : 3;
            c.cfg.dtype = FA4CP_FP64;
            c.cfg.head_dim = 16;
            c.cfg.heads = c.cfg.kv_heads = 4 * cp;
            c.B = 2;
            c.cu[0] = 0;
            c.cu[1] = 24 * cp;
            c.used[0] = 24 * cp - 3;
            c.cu[2] = c.cu[1] + 8 * cp;
            c.used[1] = 8 * cp;
            total++;
            pass += run_case(&rng, &c);
        }
        ok(pass == total, "%s: small windows across chunk borders, causal and not (%d/%d)",
           fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), pass, total);
    }
    /* padding-only chunks and empty sequences (TE #2186, Megatron-LM #1764):
     * cp 4, chunk of 4 rows; lengths 0, 1 (one real row on rank 0 only),
     * 13 (rank 3's second chunk is all padding), 16 (full) and a sequence
     * that is padding only; every shape, causal and not, bf16 and fp64 */
    for (int comm = 0; comm < 3; comm++)
        for (int causal = 0; causal < 2; causal++) {
            int pass = 0, total = 0;
            for (int k = 0; k < 2; k++, idx++) {
                tcase c;
                memset(&c, 0, sizeof c);
                fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
                c.cfg = init;
                c.cp = 4;
                c.cfg.comm = (fa4cp_cp_comm_type)comm;
                c.cfg.format = FA4CP_CP_THD;
                c.pad = 1;
                c.cfg.causal = causal;
                c.cfg.dtype = k ? FA4CP_BF16 : FA4CP_FP64;
                c.cfg.head_dim = 32;
                c.cfg.heads = 8;
                c.cfg.kv_heads = 4;
                c.with_dlse = k;
                static const int lens[][2] = {{0, 0}, {1, 32}, {13, 32}, {16, 32}, {0, 8}};
                c.B = 5;
                c.cu[0] = 0;
                for (int i = 0; i < c.B; i++) {
                    c.used[i] = lens[i][0];
                    c.cu[i + 1] = c.cu[i] + lens[i][1];
                }
                total++;
                pass += run_case(&rng, &c);
            }
            ok(pass == total, "%s %s: empty sequences and padding-only chunks give no NaN (%d/%d)",
               fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm), causal ? "causal" : "no mask", pass, total);
        }
    /* an empty batch, and a batch of empty sequences */
    for (int comm = 0; comm < 3; comm++) {
        int pass = 0;
        for (int k = 0; k < 2; k++) {
            tcase c;
            memset(&c, 0, sizeof c);
            fa4cp_cp_config init = FA4CP_CP_CONFIG_INIT;
            c.cfg = init;
            c.cp = 2;
            c.cfg.comm = (fa4cp_cp_comm_type)comm;
            c.cfg.causal = 1;
            c.cfg.dtype = FA4CP_FP32;
            c.cfg.head_dim = 8;
            c.cfg.heads = c.cfg.kv_heads = 2;
            c.pad = k;
            c.B = k ? 2 : 0;
            c.cu[1] = k ? 4 : 0;
            c.cu[2] = k ? 8 : 0;
            pass += run_case(&rng, &c);
        }
        ok(pass == 2, "%s: an empty batch and a batch of empty sequences", fa4cp_cp_comm_name((fa4cp_cp_comm_type)comm));
    }
    diag("largest error / tolerance: fp64 %.3g, fp32 %.3g, bf16 %.3g", worst[FA4CP_FP64], worst[FA4CP_FP32],
         worst[FA4CP_BF16]);
    return done_testing();
}
