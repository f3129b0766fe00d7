/* test_gen.c - the counter-based generator (same global tensors for every cp
 * size, comm shape and rank; padding rows zero) and the float64 row
 * reference against the cpu backend's non-CP attention. */
#include "fa4cp.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fa4cp_workload *load(const char *text)
{
    fa4cp_workload *w = NULL;
    if (fa4cp_workload_load_buffer("gen.yaml", text, strlen(text), NULL, 0, &w))
        diag("load failed: %s", fa4cp_last_error());
    return w;
}

/* Global [tokens, h, d] view of a tensor assembled from every rank's shard. */
static double *assemble(const fa4cp_case *c, int tensor, int *pad_ok)
{
    int h = (tensor == FA4CP_GEN_K || tensor == FA4CP_GEN_V) ? c->kv_heads : c->heads;
    int d = tensor == FA4CP_GEN_V || tensor == FA4CP_GEN_DOUT ? c->head_dim_v : c->head_dim;
    int64_t rows = c->padded_tokens / c->cp;
    double *g = calloc((size_t)c->tokens * h * d, sizeof(double));
    void *loc = malloc(fa4cp_dtype_size(c->dtype) * (size_t)rows * h * d);
    *pad_ok = 1;
    for (int r = 0; r < c->cp; r++) {
        fa4cp_gen_fill_local(c, tensor, r, loc);
        for (int64_t l = 0; l < rows; l++) {
            int64_t t = fa4cp_case_local_token(c, r, l);
            for (int k = 0; k < h * d; k++) {
                double v = fa4cp_load(c->dtype, loc, (size_t)l * h * d + k);
                if (t < 0)
                    *pad_ok &= v == 0.0;
                else
                    g[(size_t)t * h * d + k] = v;
            }
        }
    }
    free(loc);
    return g;
}

static void ref_lse_d(void *ctx, int seq, int64_t i, int head, double *lse, double *D)
{
    double **p = ctx; /* [0] lse [h, T], [1] D [h, T], [2] cu_tokens as double, [3] T */
    int64_t T = (int64_t)p[3][0];
    int64_t t = (int64_t)p[2][seq] + i;
    *lse = p[0][(size_t)head * T + t];
    *D = p[1][(size_t)head * T + t];
}

int main(void)
{
    plan(0);
    /* ---- generator */
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = fa4cp_gen_value(5, FA4CP_GEN_Q, i / 64, 1, i % 64);
        s += v;
        s2 += v * v;
    }
    ok(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal(0, 1): mean %.4f, var %.4f", s / n, s2 / n);
    ok(fa4cp_gen_value(1, 0, 10, 2, 3) == fa4cp_gen_value(1, 0, 10, 2, 3), "a pure function");
    ok(fa4cp_gen_value(1, 0, 10, 2, 3) != fa4cp_gen_value(2, 0, 10, 2, 3), "the seed matters");
    ok(fa4cp_gen_value(1, 0, 10, 2, 3) != fa4cp_gen_value(1, 1, 10, 2, 3), "the tensor matters");
    ok(fa4cp_gen_value(1, 0, 10, 2, 3) != fa4cp_gen_value(1, 0, 10, 3, 2), "head and dim are not interchangeable");

    const char *yaml = "version: 1\nattention: {heads: 4, kv_heads: 2, head_dim: 8, dtype: fp32, sequences: [203, 61, 120],"
                       " pad_between_seqs: true}\nrun: {seed: 77, backend: cpu}\nsweep:\n  cp.comm: [p2p, all_gather, a2a]\n"
                       "  cp.size: [1, 2]\n---\nversion: 1\nattention: {heads: 4, kv_heads: 2, head_dim: 8, dtype: fp32, "
                       "sequences: [203, 61, 120], pad_between_seqs: true}\nrun: {seed: 77, backend: cpu}\nsweep:\n  cp.size: [3, 4, 8]\n"
                       "---\nversion: 1\nattention: {heads: 4, kv_heads: 2, head_dim: 8, head_dim_v: 5, dtype: fp32, "
                       "sequences: [203, 61, 120], pad_between_seqs: true}\nrun: {seed: 77, backend: cpu}\n"
                       "sweep:\n  cp.size: [1, 2, 4]\n  cp.comm: [all_gather]\n";
    fa4cp_workload *w = load(yaml);
    ok(w && fa4cp_workload_count(w) == 12, "12 cases: 3 comm x cp 1, 2 and p2p at cp 3, 4, 8; head_dim_v 5 at cp 1, 2, 4");
    for (int part = 0; w && part < 2; part++) {
        int first = part ? 9 : 0, last = part ? 12 : 9; /* the cases of one head_dim_v */
        for (int tensor = 0; tensor < 4; tensor++) {
            int pad0;
            const fa4cp_case *c0 = fa4cp_workload_get(w, first);
            double *ref = assemble(c0, tensor, &pad0);
            int h = (tensor == FA4CP_GEN_K || tensor == FA4CP_GEN_V) ? c0->kv_heads : c0->heads;
            int dw = tensor == FA4CP_GEN_V || tensor == FA4CP_GEN_DOUT ? c0->head_dim_v : c0->head_dim;
            size_t cnt = (size_t)c0->tokens * h * dw;
            int direct = 1;
            double row[8];
            for (int64_t t = 0; t < c0->tokens; t++)
                for (int hh = 0; hh < h; hh++) {
                    fa4cp_gen_row(c0, tensor, t, hh, row);
                    for (int x = 0; x < dw; x++) {
                        direct &= ref[((size_t)t * h + hh) * dw + x] == fa4cp_gen_element(c0, tensor, t, hh, x) &&
                                  row[x] == ref[((size_t)t * h + hh) * dw + x];
                    }
                }
            ok(direct, "tensor %d (%d wide): every shard element = the element regenerated from its global token",
               tensor, dw);
            for (int i = first + 1; i < last; i++) {
                const fa4cp_case *c = fa4cp_workload_get(w, i);
                int pad;
                double *g = assemble(c, tensor, &pad);
                ok(!memcmp(g, ref, cnt * sizeof(double)) && pad,
                   "tensor %d: the same global tensor at cp %d %s (padded %lld rows), padding rows 0", tensor, c->cp,
                   fa4cp_cp_comm_name(c->comm), (long long)c->padded_tokens);
                free(g);
            }
            free(ref);
        }
    }
    fa4cp_workload_free(w);

    /* ---- the row reference against the cpu backend (fp64: no rounding) */
    /* head_dim 16; head_dim_v as given (v narrower and wider), or absent */
    const char *shapes[] = {
        "causal: true", "causal: false", "causal: true, window: 5", "causal: false, window: [3, 7]",
        "causal: true, head_dim_v: 8", "causal: false, window: [3, 7], head_dim_v: 24",
    };
    for (int sh = 0; sh < 6; sh++) {
        char text[512];
        snprintf(text, sizeof text,
                 "version: 1\nattention: {heads: 4, kv_heads: 2, head_dim: 16, dtype: fp64, %s, sequences: [37, 50, 1], pad_between_seqs: true}\n"
                 "cp: {comm: all_gather}\nrun: {seed: %d, backend: cpu}\n",
                 shapes[sh], 11 + sh);
        w = load(text);
        if (!w) {
            ok(0, "reference workload %d", sh);
            continue;
        }
        const fa4cp_case *c = fa4cp_workload_get(w, 0);
        int h = c->heads, hk = c->kv_heads, d = c->head_dim, e = c->head_dim_v; /* e: v, out, dout, dv */
        int64_t T = c->tokens;
        double *q = malloc(sizeof(double) * T * h * d), *dout = malloc(sizeof(double) * T * h * e);
        double *k = malloc(sizeof(double) * T * hk * d), *v = malloc(sizeof(double) * T * hk * e);
        double *o = calloc((size_t)T * h * e, sizeof(double)), *dq = calloc((size_t)T * h * d, sizeof(double));
        double *dk = calloc((size_t)T * hk * d, sizeof(double)), *dv = calloc((size_t)T * hk * e, sizeof(double));
        double *lse = calloc((size_t)T * h, sizeof(double)), *D = calloc((size_t)T * h, sizeof(double));
        int32_t cu[4];
        double cud[4];
        for (int i = 0; i <= c->batch; i++)
            cu[i] = (int32_t)c->cu_tokens[i], cud[i] = (double)c->cu_tokens[i];
        for (int64_t t = 0; t < T; t++) {
            for (int hh = 0; hh < h; hh++) {
                for (int x = 0; x < d; x++)
                    q[(t * h + hh) * d + x] = fa4cp_gen_element(c, FA4CP_GEN_Q, t, hh, x);
                for (int x = 0; x < e; x++)
                    dout[(t * h + hh) * e + x] = fa4cp_gen_element(c, FA4CP_GEN_DOUT, t, hh, x);
            }
            for (int hh = 0; hh < hk; hh++) {
                for (int x = 0; x < d; x++)
                    k[(t * hk + hh) * d + x] = fa4cp_gen_element(c, FA4CP_GEN_K, t, hh, x);
                for (int x = 0; x < e; x++)
                    v[(t * hk + hh) * e + x] = fa4cp_gen_element(c, FA4CP_GEN_V, t, hh, x);
            }
        }
        fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
        a.dtype = FA4CP_FP64;
        a.batch = c->batch;
        a.heads = h;
        a.kv_heads = hk;
        a.head_dim = d;
        a.head_dim_v = e;
        a.total_q = a.total_k = T;
        a.cu_seqlens_q = a.cu_seqlens_k = cu;
        a.max_seqlen_q = a.max_seqlen_k = c->max_seqlen;
        a.causal = c->causal;
        a.window_left = c->window_left;
        a.window_right = c->window_right;
        a.q = q, a.k = k, a.v = v, a.out = o, a.lse = lse, a.dout = dout, a.dq = dq, a.dk = dk, a.dv = dv;
        fa4cp_status st = fa4cp_attn_fwd(FA4CP_BACKEND_CPU, &a);
        if (!st)
            st = fa4cp_attn_bwd(FA4CP_BACKEND_CPU, &a);
        ok(st == FA4CP_OK, "cpu reference runs (%s)", shapes[sh]);
        for (int hh = 0; hh < h; hh++)
            for (int64_t t = 0; t < T; t++) {
                double s_ = 0;
                for (int x = 0; x < e; x++)
                    s_ += dout[(t * h + hh) * e + x] * o[(t * h + hh) * e + x];
                D[hh * T + t] = s_;
            }
        double eq = 0, ek = 0;
        double ro[32], rdq[32], rdk[32], rdv[32], rl;
        for (int seq = 0; seq < c->batch; seq++)
            for (int64_t i = 0; i < c->seqlen[seq]; i++) {
                int64_t t = c->cu_tokens[seq] + i;
                for (int hh = 0; hh < h; hh++) {
                    fa4cp_ref_query_row(c, seq, i, hh, ro, &rl, rdq);
                    for (int x = 0; x < e; x++)
                        eq = fmax(eq, fabs(ro[x] - o[(t * h + hh) * e + x]));
                    for (int x = 0; x < d; x++)
                        eq = fmax(eq, fabs(rdq[x] - dq[(t * h + hh) * d + x]));
                    eq = fmax(eq, fabs(rl - lse[hh * T + t]));
                }
                double *ctx[4] = {lse, D, cud, (double[]){(double)T}};
                for (int hh = 0; hh < hk; hh++) {
                    fa4cp_ref_key_row(c, seq, i, hh, ref_lse_d, ctx, rdk, rdv);
                    for (int x = 0; x < d; x++)
                        ek = fmax(ek, fabs(rdk[x] - dk[(t * hk + hh) * d + x]));
                    for (int x = 0; x < e; x++)
                        ek = fmax(ek, fabs(rdv[x] - dv[(t * hk + hh) * e + x]));
                }
            }
        /* the batched forms give the same rows */
        {
            int64_t rows[4] = {0, 5, 36, 17};
            int group = h / hk;
            double bo[4 * 2 * 32], bl[4 * 2], bq[4 * 2 * 32], bk[4 * 32], bv[4 * 32];
            double *ctx[4] = {lse, D, cud, (double[]){(double)T}};
            double eb = 0;
            for (int kvh = 0; kvh < hk; kvh++) {
                fa4cp_ref_query_rows(c, 0, 4, rows, kvh, bo, bl, bq);
                fa4cp_ref_key_rows(c, 0, 4, rows, kvh, ref_lse_d, ctx, bk, bv);
                for (int r = 0; r < 4; r++) {
                    for (int g = 0; g < group; g++) {
                        fa4cp_ref_query_row(c, 0, rows[r], kvh * group + g, ro, &rl, rdq);
                        eb = fmax(eb, fabs(rl - bl[r * group + g]));
                        for (int x = 0; x < e; x++)
                            eb = fmax(eb, fabs(ro[x] - bo[(r * group + g) * e + x]));
                        for (int x = 0; x < d; x++)
                            eb = fmax(eb, fabs(rdq[x] - bq[(r * group + g) * d + x]));
                    }
                    fa4cp_ref_key_row(c, 0, rows[r], kvh, ref_lse_d, ctx, rdk, rdv);
                    for (int x = 0; x < d; x++)
                        eb = fmax(eb, fabs(rdk[x] - bk[r * d + x]));
                    for (int x = 0; x < e; x++)
                        eb = fmax(eb, fabs(rdv[x] - bv[r * e + x]));
                }
            }
            ok(eb < 1e-12, "batched query and key rows = the single-row reference (%s): max diff %.2e", shapes[sh], eb);
        }
        ok(eq < 1e-9, "query rows (out, lse, dq) match the cpu reference (%s): max diff %.2e", shapes[sh], eq);
        ok(ek < 1e-9, "key rows (dk, dv) match the cpu reference (%s): max diff %.2e", shapes[sh], ek);
        free(q), free(dout), free(k), free(v), free(o), free(dq), free(dk), free(dv), free(lse), free(D);
        fa4cp_workload_free(w);
    }
    return done_testing();
}
