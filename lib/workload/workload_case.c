/* workload_case.c - a draft becomes a case: lengths (explicit or generated),
 * the checks that involve several keys, and the estimates (FLOPs, memory). */
#include "workload_internal.h"

/* ------------------------------------------------------------------ case resolution */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Lengths of the generator: `count` sequences of `total` tokens, each a
 * multiple of multiple_of and >= min; deterministic in the seed. */
static fa4cp_status generate_lengths(const char *file, draft *d, int32_t *out)
{
    fa4cp_case *c = &d->c;
    int count = d->gen_count;
    int64_t m = c->gen_multiple_of > 0 ? c->gen_multiple_of : 1;
    int64_t minlen = c->gen_min > 0 ? c->gen_min : m;
    mark *mt = &d->m[F_SEQ_TOTAL];
    if (c->gen_total % m)
        return wl_merr(file, mt, NULL, "total %lld is not a multiple of multiple_of = %lld",
                    (long long)c->gen_total, (long long)m);
    int64_t units = c->gen_total / m;
    int64_t minu = (minlen + m - 1) / m;
    if (units < (int64_t)count * minu)
        return wl_merr(file, mt, NULL,
                    "%lld tokens cannot make %d sequences of at least %lld tokens (multiples of %lld)",
                    (long long)c->gen_total, count, (long long)(minu * m), (long long)m);
    int64_t spare = units - (int64_t)count * minu;
    double *w = malloc(sizeof(double) * (size_t)count);
    if (!w)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %d sequence weights", count);
    double sum = 0;
    for (int i = 0; i < count; i++) {
        uint64_t h1 = mix64(c->seed ^ mix64(0x5e9u + (uint64_t)i));
        uint64_t h2 = mix64(h1);
        double u1 = ((double)(h1 >> 11) + 0.5) / 9007199254740992.0;
        double u2 = ((double)(h2 >> 11) + 0.5) / 9007199254740992.0;
        switch (c->dist) {
        case FA4CP_SEQ_UNIFORM: w[i] = u1; break;
        case FA4CP_SEQ_LOGNORMAL: w[i] = exp(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)); break;
        default: w[i] = 1.0; break;
        }
        sum += w[i];
    }
    int64_t given = 0;
    for (int i = 0; i < count; i++) {
        int64_t extra = (int64_t)floor((double)spare * w[i] / sum);
        out[i] = (int32_t)((minu + extra) * m);
        given += extra;
    }
    /* the rounding remainder, one unit at a time from the first sequence */
    for (int i = 0; given < spare; i = (i + 1) % count, given++)
        out[i] += (int32_t)m;
    free(w);
    for (int i = 0; i < count; i++)
        if (out[i] <= 0)
            return wl_merr(file, mt, NULL, "sequence %d would be longer than 2G tokens", i);
    return FA4CP_OK;
}

/* Resolve lengths and check the rules that involve several keys. */
fa4cp_status wl_finalize(const char *file, draft *d, int ncases_seqs_left)
{
    fa4cp_case *c = &d->c;
    mark *m = d->m;
    if (!m[F_HEADS].set)
        return wl_merr(file, NULL, "attention.heads", "missing: the number of query heads is required");
    if (!m[F_HEAD_DIM].set)
        return wl_merr(file, NULL, "attention.head_dim", "missing: the head dimension is required");
    if (!m[F_SEQUENCES].set && !m[F_SEQ_COUNT].set)
        return wl_merr(file, NULL, "attention.sequences",
                    "missing: give a list of lengths or a generator {count, total}");
    if (!m[F_KV_HEADS].set)
        c->kv_heads = c->heads;
    if (!m[F_HEAD_DIM_V].set) /* v as wide as q and k */
        c->head_dim_v = c->head_dim;
    if (c->heads % c->kv_heads)
        return wl_merr(file, m[F_KV_HEADS].set ? &m[F_KV_HEADS] : &m[F_HEADS], NULL,
                    "heads = %d is not a multiple of kv_heads = %d (grouped-query attention needs it)",
                    c->heads, c->kv_heads);
    if (c->causal && c->window_left >= 0)
        c->window_right = 0;
    if (c->cp > 1 && !fa4cp_cp_comm_window_ok(c->comm, c->causal, c->window_left, c->window_right)) {
        const mark *at = m[F_CP_COMM].set ? &m[F_CP_COMM] : &m[F_WINDOW];
        return wl_merr(file, at, NULL,
                    "a sliding window (attention.window = [%d, %d], line %d) is not supported with "
                    "cp.comm p2p; use all_gather or a2a",
                    c->window_left, c->window_right, m[F_WINDOW].line);
    }
    if (c->cp > 1) {
        if (!fa4cp_cp_comm_heads_ok(c->comm, c->heads, c->cp))
            return wl_merr(file, m[F_CP_SIZE].set ? &m[F_CP_SIZE] : &m[F_HEADS], NULL,
                        "cp.comm a2a scatters heads over the CP ranks: heads = %d is not divisible by "
                        "cp.size = %d",
                        c->heads, c->cp);
        if (!fa4cp_cp_comm_heads_ok(c->comm, c->kv_heads, c->cp))
            return wl_merr(file, m[F_CP_SIZE].set ? &m[F_CP_SIZE] : &m[F_KV_HEADS], NULL,
                        "cp.comm a2a scatters heads over the CP ranks: kv_heads = %d is not divisible "
                        "by cp.size = %d",
                        c->kv_heads, c->cp);
    }
    if (c->backend == FA4CP_BACKEND_CUDA && (c->dtype == FA4CP_FP32 || c->dtype == FA4CP_FP64))
        return wl_merr(file, m[F_DTYPE].set ? &m[F_DTYPE] : &m[F_BACKEND], NULL,
                    "the cuda backend computes in bf16 or fp16, not %s (fp32/fp64 are for the cpu backend)",
                    fa4cp_dtype_name(c->dtype));
    /* lengths */
    int batch = c->dist == FA4CP_SEQ_EXPLICIT ? d->nlist : d->gen_count;
    if (batch > ncases_seqs_left)
        return wl_merr(file, &m[F_SEQUENCES], NULL, "the cases of this file hold more than %d sequences in all",
                    MAX_CASE_SEQS);
    c->batch = batch;
    c->seqlen = malloc(sizeof(int32_t) * (size_t)batch);
    c->cu_padded = malloc(sizeof(int32_t) * ((size_t)batch + 1));
    c->cu_tokens = malloc(sizeof(int64_t) * ((size_t)batch + 1));
    if (!c->seqlen || !c->cu_padded || !c->cu_tokens)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %d sequence lengths", batch);
    if (c->dist == FA4CP_SEQ_EXPLICIT) {
        memcpy(c->seqlen, d->list, sizeof(int32_t) * (size_t)batch);
    } else {
        fa4cp_status st = generate_lengths(file, d, c->seqlen);
        if (st)
            return st;
    }
    const mark *lm = m[F_SEQUENCES].set ? &m[F_SEQUENCES] : &m[F_SEQ_TOTAL];
    int64_t two_cp = 2 * (int64_t)c->cp, tok = 0, padded = 0;
    int maxlen = 0;
    c->cu_padded[0] = 0;
    c->cu_tokens[0] = 0;
    for (int i = 0; i < batch; i++) {
        int64_t len = c->seqlen[i];
        int64_t p = c->pad_between_seqs ? (len + two_cp - 1) / two_cp * two_cp : len;
        if (c->layout_bshd && len != c->seqlen[0])
            return wl_merr(file, m[F_LAYOUT].set ? &m[F_LAYOUT] : lm, NULL,
                        "layout bshd needs sequences of equal length: sequence %d has %lld tokens, "
                        "sequence 0 has %d; use layout thd for varlen batches",
                        i, (long long)len, (int)c->seqlen[0]);
        tok += len;
        padded += p;
        if (padded > INT32_MAX)
            return wl_merr(file, lm, NULL, "the batch has more than 2^31-1 tokens (%lld so far)", (long long)padded);
        c->cu_padded[i + 1] = (int32_t)padded;
        c->cu_tokens[i + 1] = tok;
        if (len > maxlen)
            maxlen = (int)len;
    }
    c->tokens = tok;
    c->padded_tokens = padded;
    c->max_seqlen = maxlen;
    if (fa4cp_thd_check(batch, c->cu_padded, c->seqlen, c->cp) != FA4CP_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", fa4cp_last_error());
        return wl_merr(file, m[F_CP_SIZE].set && !m[F_SEQUENCES].set ? &m[F_CP_SIZE] : lm, NULL,
                    "%s; or set attention.pad_between_seqs: true", msg);
    }
    /* and whatever else the CP library refuses about this shape */
    fa4cp_cp_config cfg;
    const mark *cm = m[F_CP_COMM].set ? &m[F_CP_COMM] : &m[F_CP_SIZE];
    if (fa4cp_case_cp_config(c, &cfg) == FA4CP_OK) {
        if (fa4cp_cp_validate_shape(&cfg, c->cp, batch, c->cu_padded, 0) != FA4CP_OK) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s", fa4cp_last_error());
            return wl_merr(file, cm, cm->set ? NULL : "cp", "%s", msg);
        }
    }
    if (c->samples <= 0)
        c->samples = 8;
    return FA4CP_OK;
}

fa4cp_status fa4cp_case_cp_config(const fa4cp_case *c, fa4cp_cp_config *cfg)
{
    fa4cp_cp_config d = FA4CP_CP_CONFIG_INIT;
    if (!c || !cfg)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_case_cp_config: NULL case or config");
    *cfg = d;
    const fa4cp_cp_comm_info *info = fa4cp_cp_comm_info_of(c->comm);
    if (!info || !info->enabled)
        return fa4cp_set_error(info ? FA4CP_ERR_UNSUPPORTED : FA4CP_ERR_INVALID, "%s",
                               info ? info->refusal : "cp.comm is not a fa4cp_cp_comm_type");
    cfg->comm = c->comm;
    cfg->backend = c->backend;
    cfg->format = FA4CP_CP_THD; /* bshd cases have equal lengths: the THD description is exact */
    cfg->dtype = c->dtype;
    cfg->heads = c->heads;
    cfg->kv_heads = c->kv_heads;
    cfg->head_dim = c->head_dim;
    cfg->head_dim_v = c->head_dim_v;
    cfg->causal = c->causal;
    cfg->window_left = c->window_left;
    cfg->window_right = c->window_right;
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ estimates */

fa4cp_status fa4cp_case_fit_world(const fa4cp_case *c, int world_size)
{
    if (world_size < c->cp)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "%s: case %d needs cp.size = %d ranks but the world has %d; launch more ranks "
                               "(srun -n, --ranks) or lower cp.size",
                               c->file, c->index, c->cp, world_size);
    if (world_size % c->cp)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "%s: case %d: the world of %d ranks is not a multiple of cp.size = %d "
                               "(every rank must belong to one CP group)",
                               c->file, c->index, world_size, c->cp);
    return FA4CP_OK;
}

static double visible_pairs(int64_t n, int causal, int wl, int wr)
{
    /* sq == sk == n; count j visible from each i in closed form */
    double total = 0;
    if (!causal && wl < 0 && wr < 0)
        return (double)n * (double)n;
    int64_t right = causal ? 0 : wr;
    for (int64_t i = 0; i < n; i++) {
        int64_t hi = right < 0 ? n - 1 : i + right;
        int64_t lo = wl < 0 ? 0 : i - wl;
        if (hi > n - 1)
            hi = n - 1;
        if (lo < 0)
            lo = 0;
        if (hi >= lo)
            total += (double)(hi - lo + 1);
        if (causal && wl < 0 && i > 4096) { /* closed form for the rest */
            int64_t a = i + 1, b = n;
            total += ((double)b * (b + 1) - (double)a * (a + 1)) / 2.0;
            break;
        }
    }
    return total;
}

void fa4cp_case_flops(const fa4cp_case *c, double *fwd, double *bwd)
{
    double pairs = 0;
    for (int i = 0; i < c->batch; i++)
        pairs += visible_pairs(c->seqlen[i], c->causal, c->window_left, c->window_right);
    /* FlashAttention's count: 2*d per pair for QK^T, 2*dv for PV */
    double f = 2.0 * pairs * (c->head_dim + c->head_dim_v) * c->heads;
    if (fwd)
        *fwd = f;
    if (bwd)
        *bwd = 2.5 * f;
}

size_t fa4cp_case_memory(const fa4cp_case *c, int with_full_check)
{
    double es = (double)fa4cp_dtype_size(c->dtype);
    double lse_es = c->dtype == FA4CP_FP64 ? 8 : 4;
    double T = (double)c->padded_tokens / c->cp; /* local rows */
    double G = (double)c->padded_tokens;
    /* a row of q (dq), of out (dout), and of k (dk) and v (dv) together */
    double qrow = (double)c->heads * c->head_dim * es, orow = (double)c->heads * c->head_dim_v * es;
    double kvrow = (double)c->kv_heads * (c->head_dim + c->head_dim_v) * es;
    double bytes = T * (qrow + orow + kvrow) + T * c->heads * lse_es; /* q, out, k, v, lse */
    if (c->backward)
        bytes += T * (qrow + orow + kvrow) + T * c->heads * lse_es; /* dout, dq, dk, dv, D */
    fa4cp_cp_config cfg;
    if (fa4cp_case_cp_config(c, &cfg) == FA4CP_OK) /* the executor's own buffers: ask it */
        bytes += (double)fa4cp_cp_workspace_bytes(&cfg, c->cp, c->batch, c->padded_tokens, c->backward);
    if (c->check == FA4CP_CHECK_SAMPLED && c->backward)
        bytes += G * c->heads * 16; /* the gathered LSE and D */
    if (with_full_check && c->check == FA4CP_CHECK_FULL)
        bytes += G * (qrow + orow + kvrow) * (c->backward ? 2 : 1) + G * c->heads * 8 * 2;
    return bytes > (double)SIZE_MAX ? SIZE_MAX : (size_t)bytes;
}

fa4cp_status fa4cp_case_check_memory(const fa4cp_case *c, size_t need, size_t free_bytes, const char *what)
{
    if (need <= free_bytes)
        return FA4CP_OK;
    return fa4cp_set_error(FA4CP_ERR_NOMEM,
                           "needs an estimated %.2f GiB per rank but %s has %.2f GiB free; "
                           "use a larger cp.size, fewer tokens%s",
                           need / 1073741824.0, what ? what : "the device", free_bytes / 1073741824.0,
                           c->check == FA4CP_CHECK_FULL ? ", or check: sampled" : "");
}

double fa4cp_check_tolerance(fa4cp_dtype dtype)
{
    switch (dtype) {
    case FA4CP_FP64: return 1e-9;
    case FA4CP_FP32: return 1e-4;
    case FA4CP_FP16: return 1e-2;
    default: return 2.5e-2;
    }
}

