/* gen.c - the counter-based input generator and the float64 row reference.
 *
 * Every input element is a pure function of (seed, tensor, logical token,
 * head, dim): a splitmix64-style hash of (seed, tensor, token, head) keys the
 * row; one more mixing round per pair of dims gives two 32-bit uniforms, and
 * Box-Muller turns them into two standard normals (the cosine branch for the
 * even dim, the sine branch for the odd one), rounded to the storage dtype.
 * The arithmetic lives in kernels/gen_math.h, shared with the GPU generator
 * (kernels/gen.cu) bit for bit.  The logical token counts real tokens across
 * the batch, so the global tensors do not depend on the CP size, the comm
 * shape, the padding or which rank asks: any rank can regenerate any element.
 *
 * The row reference recomputes one query row (out, lse, dq) or one key row
 * (dk, dv) straight from regenerated inputs, in float64, streaming over the
 * other side's rows: it needs O(d) memory and no reference run of the whole
 * batch, so a sample of rows of a 1M-token case can be checked.
 */
#include "core/internal.h"
#include "../../kernels/gen_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define row_key gm_row_key

/* Box-Muller pair p of a row (gen_math.h: the same bits as the GPU's). */
static inline void pair_values(uint64_t key, int pair, double *even, double *odd)
{
    double o;
    gm_pair(key, pair, even, &o);
    if (odd)
        *odd = o;
}

double fa4cp_gen_value(uint64_t seed, int tensor, int64_t token, int head, int dim)
{
    double e, o;
    pair_values(row_key(seed, tensor, token, head), dim / 2, &e, &o);
    return dim % 2 ? o : e;
}

static double round_to(fa4cp_dtype dt, double v)
{
    switch (dt) {
    case FA4CP_BF16: return fa4cp_bf16_to_float(fa4cp_float_to_bf16((float)v));
    case FA4CP_FP16: return fa4cp_fp16_to_float(fa4cp_float_to_fp16((float)v));
    case FA4CP_FP32: return (float)v;
    default: return v;
    }
}

double fa4cp_gen_element(const fa4cp_case *c, int tensor, int64_t token, int head, int dim)
{
    return round_to(c->dtype, fa4cp_gen_value(c->seed, tensor, token, head, dim));
}

/* q and k rows are head_dim wide, v and dout rows head_dim_v */
static int width_of(const fa4cp_case *c, int tensor)
{
    return tensor == FA4CP_GEN_V || tensor == FA4CP_GEN_DOUT ? c->head_dim_v : c->head_dim;
}

void fa4cp_gen_row(const fa4cp_case *c, int tensor, int64_t token, int head, double *out)
{
    uint64_t key = row_key(c->seed, tensor, token, head);
    int d = width_of(c, tensor);
    for (int x = 0; x + 1 < d; x += 2) {
        pair_values(key, x / 2, &out[x], &out[x + 1]);
        out[x] = round_to(c->dtype, out[x]);
        out[x + 1] = round_to(c->dtype, out[x + 1]);
    }
    if (d % 2) {
        pair_values(key, d / 2, &out[d - 1], NULL);
        out[d - 1] = round_to(c->dtype, out[d - 1]);
    }
}

int64_t fa4cp_case_local_token(const fa4cp_case *c, int rank, int64_t local_row)
{
    int64_t g = fa4cp_thd_local_to_global(c->batch, c->cu_padded, c->cp, rank, local_row);
    if (g < 0)
        return -1;
    int s = fa4cp_thd_seq_of_row(c->batch, c->cu_padded, g);
    if (s < 0)
        return -1;
    int64_t off = g - c->cu_padded[s];
    if (off >= c->seqlen[s])
        return -1;
    return c->cu_tokens[s] + off;
}

void fa4cp_gen_fill_local(const fa4cp_case *c, int tensor, int rank, void *dst)
{
    int h = (tensor == FA4CP_GEN_K || tensor == FA4CP_GEN_V) ? c->kv_heads : c->heads;
    int d = width_of(c, tensor);
    int64_t rows = c->padded_tokens / c->cp;
    double *row = malloc(sizeof(double) * (size_t)d);
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = fa4cp_case_local_token(c, rank, r);
        size_t base = (size_t)r * (size_t)h * (size_t)d;
        for (int hh = 0; hh < h; hh++) {
            if (t >= 0 && row)
                fa4cp_gen_row(c, tensor, t, hh, row);
            for (int k = 0; k < d; k++)
                fa4cp_store(c->dtype, dst, base + (size_t)hh * d + k,
                            t < 0 ? 0.0 : row ? row[k] : fa4cp_gen_element(c, tensor, t, hh, k));
        }
    }
    free(row);
}

/* Visible key range [lo, hi] of query i in a sequence of n tokens. */
static void key_range(const fa4cp_case *c, int64_t n, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t right = c->causal ? 0 : c->window_right;
    *hi = right < 0 ? n - 1 : i + right;
    *lo = c->window_left < 0 ? 0 : i - c->window_left;
    if (*hi > n - 1)
        *hi = n - 1;
    if (*lo < 0)
        *lo = 0;
}

/* Query range [lo, hi] that sees key j. */
static void query_range(const fa4cp_case *c, int64_t n, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t right = c->causal ? 0 : c->window_right;
    /* j <= i + right  ->  i >= j - right;  j >= i - wl  ->  i <= j + wl */
    *lo = right < 0 ? 0 : j - right;
    *hi = c->window_left < 0 ? n - 1 : j + c->window_left;
    if (*lo < 0)
        *lo = 0;
    if (*hi > n - 1)
        *hi = n - 1;
}

void fa4cp_ref_query_row(const fa4cp_case *c, int seq, int64_t i, int head, double *out, double *lse,
                         double *dq)
{
    int d = c->head_dim, dv = c->head_dim_v, hk = head / (c->heads / c->kv_heads);
    int64_t n = c->seqlen[seq], base = c->cu_tokens[seq];
    double scale = 1.0 / sqrt((double)d);
    double *q = malloc(sizeof(double) * ((size_t)d * 3 + (size_t)dv * 2));
    double *k = q + d, *b = k + d, *v = b + d, *dout = v + dv;
    double m = -INFINITY, l = 0;
    fa4cp_gen_row(c, FA4CP_GEN_Q, base + i, head, q);
    if (dq)
        fa4cp_gen_row(c, FA4CP_GEN_DOUT, base + i, head, dout);
    for (int x = 0; x < d; x++) {
        b[x] = 0;
        if (dq)
            dq[x] = 0;
    }
    for (int x = 0; x < dv; x++) {
        if (!dq)
            dout[x] = 0;
        out[x] = 0;
    }
    int64_t lo, hi;
    key_range(c, n, i, &lo, &hi);
    /* out = sum p v, A = sum p dP k (in dq), B = sum p k (in b), all rescaled online */
    for (int64_t j = lo; j <= hi; j++) {
        double s = 0, dp = 0;
        fa4cp_gen_row(c, FA4CP_GEN_K, base + j, hk, k);
        fa4cp_gen_row(c, FA4CP_GEN_V, base + j, hk, v);
        for (int x = 0; x < d; x++)
            s += q[x] * k[x];
        for (int x = 0; x < dv; x++)
            dp += dout[x] * v[x];
        s *= scale;
        double mn = s > m ? s : m;
        double corr = exp(m - mn), p = exp(s - mn);
        l = l * corr + p;
        for (int x = 0; x < dv; x++)
            out[x] = out[x] * corr + p * v[x];
        for (int x = 0; dq && x < d; x++) {
            dq[x] = dq[x] * corr + p * dp * k[x];
            b[x] = b[x] * corr + p * k[x];
        }
        m = mn;
    }
    if (l == 0) {
        *lse = -INFINITY;
        free(q);
        return;
    }
    *lse = m + log(l);
    double D = 0;
    for (int x = 0; x < dv; x++) {
        out[x] /= l;
        D += dout[x] * out[x];
    }
    if (dq)
        for (int x = 0; x < d; x++)
            dq[x] = scale * (dq[x] / l - D * b[x] / l);
    free(q);
}

void fa4cp_ref_key_row(const fa4cp_case *c, int seq, int64_t j, int kv_head, fa4cp_lse_d_fn lse_d, void *ctx,
                       double *dk, double *dv)
{
    int d = c->head_dim, dw = c->head_dim_v, group = c->heads / c->kv_heads;
    int64_t n = c->seqlen[seq], base = c->cu_tokens[seq];
    double scale = 1.0 / sqrt((double)d);
    double *k = malloc(sizeof(double) * ((size_t)d * 2 + (size_t)dw * 2));
    double *q = k + d, *v = q + d, *dout = v + dw;
    fa4cp_gen_row(c, FA4CP_GEN_K, base + j, kv_head, k);
    fa4cp_gen_row(c, FA4CP_GEN_V, base + j, kv_head, v);
    for (int x = 0; x < d; x++)
        dk[x] = 0;
    for (int x = 0; x < dw; x++)
        dv[x] = 0;
    int64_t lo, hi;
    query_range(c, n, j, &lo, &hi);
    for (int g = 0; g < group; g++) {
        int h = kv_head * group + g;
        for (int64_t i = lo; i <= hi; i++) {
            double lse, D, s = 0, dp = 0;
            lse_d(ctx, seq, i, h, &lse, &D);
            if (!isfinite(lse))
                continue;
            fa4cp_gen_row(c, FA4CP_GEN_Q, base + i, h, q);
            fa4cp_gen_row(c, FA4CP_GEN_DOUT, base + i, h, dout);
            for (int x = 0; x < d; x++)
                s += q[x] * k[x];
            for (int x = 0; x < dw; x++)
                dp += dout[x] * v[x];
            double p = exp(s * scale - lse);
            double ds = p * (dp - D) * scale;
            for (int x = 0; x < dw; x++)
                dv[x] += p * dout[x];
            for (int x = 0; x < d; x++)
                dk[x] += ds * q[x];
        }
    }
    free(k);
}

/* ------------------------------------------------------------------ batched rows
 * Several rows of one sequence and every query head of one kv head, in one
 * pass over the other side: each regenerated row is shared by all samples
 * whose range contains it. */

void fa4cp_ref_query_rows(const fa4cp_case *c, int seq, int n, const int64_t *rows, int kv_head, double *out,
                          double *lse, double *dq)
{
    int d = c->head_dim, dv = c->head_dim_v, group = c->heads / c->kv_heads, ng = n * group;
    int64_t len = c->seqlen[seq], base = c->cu_tokens[seq];
    double scale = 1.0 / sqrt((double)d);
    /* q, b (sum p k) [ng][d]; dout [ng][dv] */
    double *q = malloc(sizeof(double) * (size_t)ng * ((size_t)d * 2 + (size_t)dv));
    double *b = q + (size_t)ng * d, *dout = b + (size_t)ng * d;
    double *m = malloc(sizeof(double) * (size_t)ng * 2), *l = m + ng;
    double *k = malloc(sizeof(double) * ((size_t)d + (size_t)dv)), *v = k + d;
    int64_t *lo = malloc(sizeof(int64_t) * (size_t)n * 2), *hi = lo + n;
    if (!q || !m || !k || !lo)
        goto out;
    int64_t lo_all = len, hi_all = -1;
    for (int s = 0; s < n; s++) {
        key_range(c, len, rows[s], &lo[s], &hi[s]);
        if (lo[s] < lo_all)
            lo_all = lo[s];
        if (hi[s] > hi_all)
            hi_all = hi[s];
        for (int g = 0; g < group; g++) {
            int sg = s * group + g, h = kv_head * group + g;
            fa4cp_gen_row(c, FA4CP_GEN_Q, base + rows[s], h, q + (size_t)sg * d);
            if (dq)
                fa4cp_gen_row(c, FA4CP_GEN_DOUT, base + rows[s], h, dout + (size_t)sg * dv);
            else
                memset(dout + (size_t)sg * dv, 0, sizeof(double) * (size_t)dv);
            m[sg] = -INFINITY;
            l[sg] = 0;
            memset(out + (size_t)sg * dv, 0, sizeof(double) * (size_t)dv);
            memset(b + (size_t)sg * d, 0, sizeof(double) * (size_t)d);
            if (dq)
                memset(dq + (size_t)sg * d, 0, sizeof(double) * (size_t)d);
        }
    }
    for (int64_t j = lo_all; j <= hi_all; j++) {
        int any = 0;
        for (int s = 0; s < n && !any; s++)
            any = j >= lo[s] && j <= hi[s];
        if (!any)
            continue;
        fa4cp_gen_row(c, FA4CP_GEN_K, base + j, kv_head, k);
        fa4cp_gen_row(c, FA4CP_GEN_V, base + j, kv_head, v);
        for (int s = 0; s < n; s++) {
            if (j < lo[s] || j > hi[s])
                continue;
            for (int g = 0; g < group; g++) {
                int sg = s * group + g;
                double *qq = q + (size_t)sg * d, *oo = dout + (size_t)sg * dv;
                double *o = out + (size_t)sg * dv, *bb = b + (size_t)sg * d, *a = dq ? dq + (size_t)sg * d : NULL;
                double sc = 0, dp = 0;
                for (int x = 0; x < d; x++)
                    sc += qq[x] * k[x];
                for (int x = 0; x < dv; x++)
                    dp += oo[x] * v[x];
                sc *= scale;
                double mn = sc > m[sg] ? sc : m[sg];
                double corr = exp(m[sg] - mn), p = exp(sc - mn);
                l[sg] = l[sg] * corr + p;
                for (int x = 0; x < dv; x++)
                    o[x] = o[x] * corr + p * v[x];
                for (int x = 0; a && x < d; x++) {
                    a[x] = a[x] * corr + p * dp * k[x];
                    bb[x] = bb[x] * corr + p * k[x];
                }
                m[sg] = mn;
            }
        }
    }
    for (int sg = 0; sg < ng; sg++) {
        double *o = out + (size_t)sg * dv, *oo = dout + (size_t)sg * dv, *bb = b + (size_t)sg * d;
        if (l[sg] == 0) {
            lse[sg] = -INFINITY;
            continue;
        }
        lse[sg] = m[sg] + log(l[sg]);
        double D = 0;
        for (int x = 0; x < dv; x++) {
            o[x] /= l[sg];
            D += oo[x] * o[x];
        }
        if (dq)
            for (int x = 0; x < d; x++)
                dq[(size_t)sg * d + x] = scale * (dq[(size_t)sg * d + x] / l[sg] - D * bb[x] / l[sg]);
    }
out:
    free(q);
    free(m);
    free(k);
    free(lo);
}

void fa4cp_ref_key_rows(const fa4cp_case *c, int seq, int n, const int64_t *rows, int kv_head, fa4cp_lse_d_fn lse_d,
                        void *ctx, double *dk, double *dv)
{
    int d = c->head_dim, dw = c->head_dim_v, group = c->heads / c->kv_heads;
    int64_t len = c->seqlen[seq], base = c->cu_tokens[seq];
    double scale = 1.0 / sqrt((double)d);
    double *k = malloc(sizeof(double) * (size_t)n * ((size_t)d + (size_t)dw)), *v = k + (size_t)n * d;
    double *q = malloc(sizeof(double) * ((size_t)d + (size_t)dw)), *dout = q + d;
    int64_t *lo = malloc(sizeof(int64_t) * (size_t)n * 2), *hi = lo + n;
    if (!k || !q || !lo)
        goto out;
    int64_t lo_all = len, hi_all = -1;
    for (int s = 0; s < n; s++) {
        query_range(c, len, rows[s], &lo[s], &hi[s]);
        if (lo[s] < lo_all)
            lo_all = lo[s];
        if (hi[s] > hi_all)
            hi_all = hi[s];
        fa4cp_gen_row(c, FA4CP_GEN_K, base + rows[s], kv_head, k + (size_t)s * d);
        fa4cp_gen_row(c, FA4CP_GEN_V, base + rows[s], kv_head, v + (size_t)s * dw);
        memset(dk + (size_t)s * d, 0, sizeof(double) * (size_t)d);
        memset(dv + (size_t)s * dw, 0, sizeof(double) * (size_t)dw);
    }
    for (int64_t i = lo_all; i <= hi_all; i++) {
        int any = 0;
        for (int s = 0; s < n && !any; s++)
            any = i >= lo[s] && i <= hi[s];
        if (!any)
            continue;
        for (int g = 0; g < group; g++) {
            int h = kv_head * group + g;
            double lse, D;
            lse_d(ctx, seq, i, h, &lse, &D);
            if (!isfinite(lse))
                continue;
            fa4cp_gen_row(c, FA4CP_GEN_Q, base + i, h, q);
            fa4cp_gen_row(c, FA4CP_GEN_DOUT, base + i, h, dout);
            for (int s = 0; s < n; s++) {
                if (i < lo[s] || i > hi[s])
                    continue;
                double *kk = k + (size_t)s * d, *vv = v + (size_t)s * dw;
                double sc = 0, dp = 0;
                for (int x = 0; x < d; x++)
                    sc += q[x] * kk[x];
                for (int x = 0; x < dw; x++)
                    dp += dout[x] * vv[x];
                double p = exp(sc * scale - lse), ds = p * (dp - D) * scale;
                for (int x = 0; x < dw; x++)
                    dv[(size_t)s * dw + x] += p * dout[x];
                for (int x = 0; x < d; x++)
                    dk[(size_t)s * d + x] += ds * q[x];
            }
        }
    }
out:
    free(k);
    free(q);
    free(lo);
}
