/* attn_cpu.c - the CPU reference attention: the oracle of every test.
 *
 * Straightforward and exact: float64 accumulation, one query row at a time,
 * streaming over its visible keys with an online softmax, so memory grows
 * with tokens, never tokens squared.  K and V are widened to float64 once per
 * call (for fp64 storage they are used in place).
 */
#include "attn_internal.h"
#include "core/internal.h"

#include <math.h>
#include <string.h>

typedef struct seq {
    int64_t q0, k0;  /* physical first rows */
    int64_t sq, sk;  /* real lengths (after seqused) */
} seq;

static seq seq_of(const fa4cp_attn_args *a, int b)
{
    seq s;
    s.q0 = a->cu_seqlens_q[b];
    s.k0 = a->cu_seqlens_k[b];
    s.sq = a->seqused_q ? a->seqused_q[b] : a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b];
    s.sk = a->seqused_k ? a->seqused_k[b] : a->cu_seqlens_k[b + 1] - a->cu_seqlens_k[b];
    return s;
}

/* visible key range [lo, hi] of query i (empty when lo > hi) */
static void key_range(const fa4cp_attn_args *a, const seq *s, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t diag = i + (s->sk - s->sq);
    int64_t right = a->causal ? 0 : a->window_right;
    *hi = right >= 0 ? diag + right : s->sk - 1;
    if (*hi > s->sk - 1)
        *hi = s->sk - 1;
    *lo = a->window_left >= 0 ? diag - a->window_left : 0;
    if (*lo < 0)
        *lo = 0;
}

static double scale_of(const fa4cp_attn_args *a)
{
    return a->softmax_scale > 0 ? a->softmax_scale : 1.0 / sqrt((double)a->head_dim);
}

static int dv_of(const fa4cp_attn_args *a) { return a->head_dim_v ? a->head_dim_v : a->head_dim; }

/* A float64 view of a [rows, heads, width] tensor: in place for fp64, else a copy. */
static const double *widen(const fa4cp_attn_args *a, const void *x, int64_t rows, int heads, int width,
                           double **owned, const char *what)
{
    size_t n = (size_t)rows * (size_t)heads * (size_t)width;
    *owned = NULL;
    if (a->dtype == FA4CP_FP64)
        return x;
    double *w = fa4cp_malloc(n * sizeof(double) + 8, what);
    if (!w)
        return NULL;
    for (size_t i = 0; i < n; i++)
        w[i] = fa4cp_load(a->dtype, x, i);
    *owned = w;
    return w;
}

fa4cp_status fa4cp_attn_cpu_fwd(const fa4cp_attn_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const int d = a->head_dim, dv = dv_of(a), H = a->heads, Hk = a->kv_heads, group = H / Hk;
    const double scale = scale_of(a);
    const fa4cp_dtype ld = fa4cp_lse_dtype(a->dtype);
    double *kown = NULL, *vown = NULL, *q = NULL, *acc = NULL;
    const double *K = widen(a, a->k, a->total_k, Hk, d, &kown, "reference K (float64)");
    const double *V = K ? widen(a, a->v, a->total_k, Hk, dv, &vown, "reference V (float64)") : NULL;
    q = fa4cp_malloc(((size_t)d + (size_t)dv) * sizeof(double), "reference row buffers");
    if (!K || !V || !q) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    acc = q + d;
    for (int b = 0; b < a->batch; b++) {
        seq s = seq_of(a, b);
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            for (int64_t i = 0; i < s.sq; i++) {
                size_t row = (size_t)(s.q0 + i);
                size_t qbase = (row * (size_t)H + (size_t)h) * (size_t)d;
                size_t obase = (row * (size_t)H + (size_t)h) * (size_t)dv;
                int64_t lo, hi;
                key_range(a, &s, i, &lo, &hi);
                for (int x = 0; x < d; x++)
                    q[x] = fa4cp_load(a->dtype, a->q, qbase + (size_t)x);
                for (int x = 0; x < dv; x++)
                    acc[x] = 0;
                double m = -INFINITY, l = 0;
                for (int64_t j = lo; j <= hi; j++) {
                    const double *kr = K + ((size_t)(s.k0 + j) * (size_t)Hk + (size_t)kh) * (size_t)d;
                    const double *vr = V + ((size_t)(s.k0 + j) * (size_t)Hk + (size_t)kh) * (size_t)dv;
                    double dot = 0;
                    for (int x = 0; x < d; x++)
                        dot += q[x] * kr[x];
                    double sc = dot * scale;
                    if (sc > m) { /* rescale what was summed so far */
                        double c = exp(m - sc);
                        l *= c;
                        for (int x = 0; x < dv; x++)
                            acc[x] *= c;
                        m = sc;
                    }
                    double p = exp(sc - m);
                    l += p;
                    for (int x = 0; x < dv; x++)
                        acc[x] += p * vr[x];
                }
                double lse = l > 0 ? m + log(l) : -INFINITY;
                for (int x = 0; x < dv; x++)
                    fa4cp_store(a->dtype, a->out, obase + (size_t)x, l > 0 ? acc[x] / l : 0.0);
                fa4cp_store(ld, a->lse, (size_t)h * (size_t)a->total_q + row, lse);
            }
        }
    }
out:
    fa4cp_free(kown);
    fa4cp_free(vown);
    fa4cp_free(q);
    return st;
}

fa4cp_status fa4cp_attn_cpu_bwd(const fa4cp_attn_args *a)
{
    fa4cp_status st = FA4CP_OK;
    const int d = a->head_dim, dvw = dv_of(a), H = a->heads, Hk = a->kv_heads, group = H / Hk;
    const double scale = scale_of(a);
    const fa4cp_dtype ld = fa4cp_lse_dtype(a->dtype);
    const size_t nk = (size_t)a->total_k * (size_t)Hk * (size_t)d;
    const size_t nv = (size_t)a->total_k * (size_t)Hk * (size_t)dvw;
    double *kown = NULL, *vown = NULL, *dk = NULL, *dv = NULL, *rows = NULL;
    const double *K = widen(a, a->k, a->total_k, Hk, d, &kown, "reference K (float64)");
    const double *V = K ? widen(a, a->v, a->total_k, Hk, dvw, &vown, "reference V (float64)") : NULL;
    dk = fa4cp_calloc(nk + 1, sizeof(double), "reference dK accumulator");
    dv = fa4cp_calloc(nv + 1, sizeof(double), "reference dV accumulator");
    rows = fa4cp_malloc((2 * (size_t)d + 2 * (size_t)dvw) * sizeof(double), "reference row buffers");
    if (!K || !V || !dk || !dv || !rows) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    double *q = rows, *dq = rows + d, *o = rows + 2 * d, *dO = rows + 2 * d + dvw;

    /* dq: padding rows (and rows in no sequence) are exactly zero.  In a
     * chain (dq_carry) the float64 sum takes every call's dQ instead: its
     * first call clears it, its last writes dq from it (fa4cp.h). */
    const size_t nq = (size_t)a->total_q * (size_t)H * (size_t)d;
    double *acc = a->dq_carry;
    if (!acc)
        for (size_t i = 0; i < nq; i++)
            fa4cp_store(a->dtype, a->dq, i, 0.0);
    else if (a->carry & FA4CP_CARRY_FIRST)
        memset(acc, 0, nq * sizeof(double));

    for (int b = 0; b < a->batch; b++) {
        seq s = seq_of(a, b);
        for (int h = 0; h < H; h++) {
            int kh = h / group;
            for (int64_t i = 0; i < s.sq; i++) {
                size_t row = (size_t)(s.q0 + i);
                size_t qbase = (row * (size_t)H + (size_t)h) * (size_t)d;
                size_t obase = (row * (size_t)H + (size_t)h) * (size_t)dvw;
                int64_t lo, hi;
                key_range(a, &s, i, &lo, &hi);
                if (lo > hi)
                    continue; /* sees no key: every gradient of this row is 0 */
                double lse = fa4cp_load(ld, a->lse, (size_t)h * (size_t)a->total_q + row);
                double D = 0;
                for (int x = 0; x < d; x++) {
                    q[x] = fa4cp_load(a->dtype, a->q, qbase + (size_t)x);
                    dq[x] = 0;
                }
                for (int x = 0; x < dvw; x++) {
                    o[x] = fa4cp_load(a->dtype, a->out, obase + (size_t)x);
                    dO[x] = fa4cp_load(a->dtype, a->dout, obase + (size_t)x);
                    D += dO[x] * o[x];
                }
                if (a->dlse)
                    D -= fa4cp_load(ld, a->dlse, (size_t)h * (size_t)a->total_q + row);
                for (int64_t j = lo; j <= hi; j++) {
                    size_t kbase = ((size_t)(s.k0 + j) * (size_t)Hk + (size_t)kh) * (size_t)d;
                    size_t vbase = ((size_t)(s.k0 + j) * (size_t)Hk + (size_t)kh) * (size_t)dvw;
                    const double *kr = K + kbase, *vr = V + vbase;
                    double dot = 0, dp = 0;
                    for (int x = 0; x < d; x++)
                        dot += q[x] * kr[x];
                    for (int x = 0; x < dvw; x++)
                        dp += dO[x] * vr[x];
                    double p = exp(dot * scale - lse);
                    double ds = p * (dp - D) * scale;
                    for (int x = 0; x < d; x++) {
                        dq[x] += ds * kr[x];
                        dk[kbase + (size_t)x] += ds * q[x];
                    }
                    for (int x = 0; x < dvw; x++)
                        dv[vbase + (size_t)x] += p * dO[x];
                }
                if (acc)
                    for (int x = 0; x < d; x++)
                        acc[qbase + (size_t)x] += dq[x];
                else
                    for (int x = 0; x < d; x++)
                        fa4cp_store(a->dtype, a->dq, qbase + (size_t)x, dq[x]);
            }
        }
    }
    if (acc && (a->carry & FA4CP_CARRY_LAST))
        for (size_t i = 0; i < nq; i++)
            fa4cp_store(a->dtype, a->dq, i, acc[i]);
    /* every row of dk/dv: padding rows were never touched, so they are 0 */
    for (size_t i = 0; i < nk; i++)
        fa4cp_store(a->dtype, a->dk, i, dk[i]);
    for (size_t i = 0; i < nv; i++)
        fa4cp_store(a->dtype, a->dv, i, dv[i]);
out:
    fa4cp_free(kown);
    fa4cp_free(vown);
    fa4cp_free(dk);
    fa4cp_free(dv);
    fa4cp_free(rows);
    return st;
}
