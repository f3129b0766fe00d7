/* workload_schema.c - the schema (one row per key) and the setter of a
 * field from a YAML scalar or node, with the loader's error messages. */
#include "workload_internal.h"

static const char *const layout_names[] = {"thd", "bshd", NULL};
static const char *const dist_names[] = {"explicit", "equal", "uniform", "lognormal", NULL};
static const char *const backend_names[] = {"cpu", "cuda", NULL};
static const char *const check_names[] = {"off", "sampled", "full", NULL};

const field wl_fields[] = {
    {"attention.heads", F_HEADS, K_INT, 1, MAX_HEADS, NULL},
    {"attention.kv_heads", F_KV_HEADS, K_INT, 1, MAX_HEADS, NULL},
    {"attention.head_dim", F_HEAD_DIM, K_INT, 1, MAX_HEAD_DIM, NULL},
    {"attention.head_dim_v", F_HEAD_DIM_V, K_INT, 1, MAX_HEAD_DIM, NULL},
    {"attention.dtype", F_DTYPE, K_DTYPE, 0, 0, NULL},
    {"attention.causal", F_CAUSAL, K_BOOL, 0, 0, NULL},
    {"attention.window", F_WINDOW, K_WINDOW, 0, 0, NULL},
    {"attention.layout", F_LAYOUT, K_ENUM, 0, 0, layout_names},
    {"attention.sequences", F_SEQUENCES, K_SEQUENCES, 0, 0, NULL},
    {"attention.sequences.count", F_SEQ_COUNT, K_INT, 1, MAX_SEQS, NULL},
    {"attention.sequences.total", F_SEQ_TOTAL, K_TOKENS, 1, INT32_MAX, NULL},
    {"attention.sequences.distribution", F_SEQ_DIST, K_ENUM, 0, 0, dist_names},
    {"attention.sequences.min", F_SEQ_MIN, K_TOKENS, 1, INT32_MAX, NULL},
    {"attention.sequences.multiple_of", F_SEQ_MULT, K_TOKENS, 1, 1 << 20, NULL},
    {"attention.pad_between_seqs", F_PAD, K_BOOL, 0, 0, NULL},
    {"cp.size", F_CP_SIZE, K_INT, 1, MAX_CP, NULL},
    {"cp.comm", F_CP_COMM, K_ENUM, 0, 0, NULL}, /* names: the cp config's table */
    {"run.backend", F_BACKEND, K_ENUM, 0, 0, backend_names},
    {"run.warmup", F_WARMUP, K_INT, 0, 1000000, NULL},
    {"run.iters", F_ITERS, K_INT, 1, 1000000, NULL},
    {"run.backward", F_BACKWARD, K_BOOL, 0, 0, NULL},
    {"run.check", F_CHECK, K_ENUM, 0, 0, check_names},
    {"run.samples", F_SAMPLES, K_INT, 1, 1 << 20, NULL},
    {"run.seed", F_SEED, K_U64, 0, 0, NULL},
    {"run.timeout", F_TIMEOUT, K_DOUBLE, 0, 0, NULL},
    {"gate.fwd_tflops", F_GATE_FWD, K_DOUBLE, 0, 0, NULL},
    {"gate.bwd_tflops", F_GATE_BWD, K_DOUBLE, 0, 0, NULL},
};
_Static_assert(sizeof wl_fields / sizeof wl_fields[0] == NFIELDS, "one row of the schema per field");

const char *const wl_top_keys[] = {"version", "name", "description", "attention", "cp",
                                       "run",     "gate", "sweep",       NULL};

const char *fa4cp_check_mode_name(fa4cp_check_mode mode)
{
    return mode >= 0 && mode <= FA4CP_CHECK_FULL ? check_names[mode] : "?";
}

const char *fa4cp_seq_dist_name(fa4cp_seq_dist dist)
{
    return dist >= 0 && dist <= FA4CP_SEQ_LOGNORMAL ? dist_names[dist] : "?";
}

/* ------------------------------------------------------------------ errors */

static fa4cp_status verr(const char *file, int line, int col, const char *path, const char *fmt,
                         va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (path && *path)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s: %s", file, line, col, path, msg);
    return fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s", file, line, col, msg);
}

fa4cp_status wl_nerr(const ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fa4cp_status st = verr(x->file, n ? (int)n->start_mark.line + 1 : 1,
                           n ? (int)n->start_mark.column + 1 : 1, path, fmt, ap);
    va_end(ap);
    return st;
}

fa4cp_status wl_merr(const char *file, const mark *m, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fa4cp_status st = verr(m && m->set && m->file ? m->file : file, m && m->set ? m->line : 1, m && m->set ? m->col : 1,
                           m && m->set && !path ? m->path : path, fmt, ap);
    va_end(ap);
    return st;
}

/* Levenshtein distance, small strings only. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int v = prev[j - 1] + cost;
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (cur[j - 1] + 1 < v)
                v = cur[j - 1] + 1;
            cur[j] = v;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

/* The nearest of the candidates, or NULL when none is close (distance <= 1/3 of the length, >= 2). */
const char *wl_nearest(const char *word, const char *const *cand, int ncand)
{
    const char *best = NULL;
    int bd = 1 << 30;
    for (int i = 0; i < ncand; i++) {
        if (!cand[i])
            continue;
        int d = edit_distance(word, cand[i]);
        if (d < bd) {
            bd = d;
            best = cand[i];
        }
    }
    int limit = (int)strlen(word) / 3;
    if (limit < 2)
        limit = 2;
    return best && bd <= limit ? best : NULL;
}

static void names_list(const char *const *names, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; names[i]; i++)
        at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s'%s'", i ? ", " : "", names[i]);
}

/* ------------------------------------------------------------------ scalars */

const char *wl_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}


const char *wl_node_kind(const yaml_node_t *n)
{
    if (!n)
        return "nothing";
    switch (n->type) {
    case YAML_SCALAR_NODE: return n->data.scalar.length ? "a scalar" : "nothing";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static int is_null(const yaml_node_t *n)
{
    const char *s = wl_scalar(n);
    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

int wl_parse_ll(const char *s, long long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s)
        return -1;
    *out = v;
    return 0;
}

fa4cp_status fa4cp_parse_tokens(const char *text, int64_t *out)
{
    if (!text || !*text)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "expected a token count such as 4096, 128k or 1M, got nothing");
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)text[0]) && text[0] != '-')
        goto bad;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text)
        goto bad;
    long long mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1024; break;
        case 'm': case 'M': mul = 1024 * 1024; break;
        case 'g': case 'G': mul = 1024LL * 1024 * 1024; break;
        default: goto bad;
        }
        end++;
        if (*end)
            goto bad;
    }
    if (v > LLONG_MAX / mul || v < LLONG_MIN / mul)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "'%s' is too large", text);
    *out = v * mul;
    return FA4CP_OK;
bad:
    return fa4cp_set_error(FA4CP_ERR_INVALID,
                           "expected a token count such as 4096, 128k or 1M (k = 1024), got '%s'", text);
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on", NULL}, *const f[] = {"false", "no", "off", NULL};
    if (!s)
        return -1;
    for (int i = 0; t[i]; i++)
        if (!strcasecmp(s, t[i])) {
            *out = 1;
            return 0;
        }
    for (int i = 0; f[i]; i++)
        if (!strcasecmp(s, f[i])) {
            *out = 0;
            return 0;
        }
    return -1;
}

static void set_mark(const ctx *x, draft *d, int fid, const yaml_node_t *n, const char *path)
{
    mark *m = &d->m[fid];
    m->set = 1;
    m->file = x->file;
    m->line = n ? (int)n->start_mark.line + 1 : 1;
    m->col = n ? (int)n->start_mark.column + 1 : 1;
    snprintf(m->path, sizeof m->path, "%s", path);
}

const field *wl_field_by_path(const char *path)
{
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(wl_fields[i].path, path))
            return &wl_fields[i];
    return NULL;
}


/* The generator form of attention.sequences: a mapping of count/total/... */
static fa4cp_status set_generator(const ctx *x, draft *d, yaml_node_t *n, const char *path)
{
    static const char *const sub[] = {"count", "total", "distribution", "min", "multiple_of", NULL};
    yaml_node_pair_t *p0 = n->data.mapping.pairs.start, *pe = n->data.mapping.pairs.top;
    int have_count = 0, have_total = 0;
    for (yaml_node_pair_t *p = p0; p < pe; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = wl_scalar(k);
        if (!ks)
            return wl_nerr(x, k, path, "expected a key name, got %s", wl_node_kind(k));
        for (yaml_node_pair_t *q = p0; q < p; q++) {
            const char *qs = wl_scalar(yaml_document_get_node(x->doc, q->key));
            if (qs && !strcmp(qs, ks)) {
                yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
                return wl_nerr(x, k, path, "duplicate key '%s' (first given at line %d)", ks,
                            (int)qk->start_mark.line + 1);
            }
        }
        char sp[PATHLEN];
        snprintf(sp, sizeof sp, "attention.sequences.%s", ks);
        const field *f = wl_field_by_path(sp);
        if (!f) {
            const char *near = wl_nearest(ks, sub, 5);
            char list[160];
            names_list(sub, list, sizeof list);
            if (near)
                return wl_nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
            return wl_nerr(x, k, path, "unknown key '%s'; a generator takes %s", ks, list);
        }
        char vp[PATHLEN];
        snprintf(vp, sizeof vp, "%s.%s", path, ks);
        fa4cp_status st = wl_set_field(x, d, f, v, vp);
        if (st)
            return st;
        have_count |= f->id == F_SEQ_COUNT;
        have_total |= f->id == F_SEQ_TOTAL;
    }
    if (!have_count || !have_total)
        return wl_nerr(x, n, path, "a sequence generator needs both 'count' and 'total' (e.g. {count: 8, total: 1M})");
    if (!d->m[F_SEQ_DIST].set)
        d->c.dist = FA4CP_SEQ_EQUAL;
    if (d->c.dist == FA4CP_SEQ_EXPLICIT)
        return wl_merr(x->file, &d->m[F_SEQ_DIST], NULL,
                    "'explicit' is not a generator distribution; give the lengths as a list instead");
    return FA4CP_OK;
}

fa4cp_status wl_set_field(const ctx *x, draft *d, const field *f, yaml_node_t *n, const char *path)
{
    const char *s = wl_scalar(n);
    fa4cp_case *c = &d->c;
    switch (f->kind) {
    case K_INT:
    case K_TOKENS: {
        long long v;
        if (!s || is_null(n))
            return wl_nerr(x, n, path, "expected %s, got %s",
                        f->kind == K_TOKENS ? "a token count (e.g. 4096, 128k, 1M)" : "an integer",
                        wl_node_kind(n));
        if (f->kind == K_TOKENS) {
            int64_t t;
            if (fa4cp_parse_tokens(s, &t))
                return wl_nerr(x, n, path, "%s", fa4cp_last_error());
            v = t;
        } else if (wl_parse_ll(s, &v)) {
            if (fa4cp_parse_tokens(s, &(int64_t){0}) == FA4CP_OK)
                return wl_nerr(x, n, path, "expected a plain integer, got '%s' (k/M suffixes are for token counts)", s);
            return wl_nerr(x, n, path, "expected an integer, got '%s'", s);
        }
        if (v < f->min) {
            if (f->min == 1)
                return wl_nerr(x, n, path, "must be positive, got %lld", v);
            return wl_nerr(x, n, path, "must be >= %lld, got %lld", f->min, v);
        }
        if (v > f->max)
            return wl_nerr(x, n, path, "must be <= %lld, got %lld", f->max, v);
        int iv = (int)v;
        switch (f->id) {
        case F_HEADS: c->heads = iv; break;
        case F_KV_HEADS: c->kv_heads = iv; break;
        case F_HEAD_DIM: c->head_dim = iv; break;
        case F_HEAD_DIM_V: c->head_dim_v = iv; break;
        case F_SEQ_COUNT: d->gen_count = iv; break;
        case F_SEQ_TOTAL: c->gen_total = v; break;
        case F_SEQ_MIN: c->gen_min = iv; break;
        case F_SEQ_MULT: c->gen_multiple_of = iv; break;
        case F_CP_SIZE: c->cp = iv; break;
        case F_WARMUP: c->warmup = iv; break;
        case F_ITERS: c->iters = iv; break;
        case F_SAMPLES: c->samples = iv; break;
        default: return fa4cp_set_error(FA4CP_ERR_INTERNAL, "field %s has no integer slot", f->path);
        }
        break;
    }
    case K_BOOL: {
        int b;
        if (parse_bool(s, &b)) {
            static const char *const bools[] = {"true", "false"};
            const char *near = s && *s ? wl_nearest(s, bools, 2) : NULL;
            if (near)
                return wl_nerr(x, n, path, "expected true or false, got '%s' (did you mean '%s'?)", s, near);
            return wl_nerr(x, n, path, "expected true or false, got %s%s%s", s ? "'" : "",
                        s ? s : wl_node_kind(n), s ? "'" : "");
        }
        if (f->id == F_CAUSAL)
            c->causal = b;
        else if (f->id == F_PAD)
            c->pad_between_seqs = b;
        else
            c->backward = b;
        break;
    }
    case K_DOUBLE: {
        char *end;
        double v = s && *s ? strtod(s, &end) : NAN;
        if (!s || !*s || *end || !isfinite(v))
            return wl_nerr(x, n, path, "expected a number, got %s%s%s", s ? "'" : "", s ? s : wl_node_kind(n),
                        s ? "'" : "");
        if (f->id == F_TIMEOUT) {
            if (v <= 0)
                return wl_nerr(x, n, path, "must be a positive number of seconds, got %s", s);
            if (v > FA4CP_TIMEOUT_MAX_S)
                return wl_nerr(x, n, path, "must be at most %.0f seconds (7 days), got %s", FA4CP_TIMEOUT_MAX_S, s);
            c->timeout_s = v;
        } else {
            if (v < 0)
                return wl_nerr(x, n, path, "must be >= 0 (0 = no gate), got %s", s);
            if (f->id == F_GATE_FWD)
                c->gate_fwd_tflops = v;
            else
                c->gate_bwd_tflops = v;
        }
        break;
    }
    case K_U64: {
        char *end;
        errno = 0;
        unsigned long long v = s && isdigit((unsigned char)s[0]) ? strtoull(s, &end, 0) : 0;
        if (!s || !isdigit((unsigned char)s[0]) || errno || *end)
            return wl_nerr(x, n, path, "expected a non-negative integer, got %s%s%s", s ? "'" : "",
                        s ? s : wl_node_kind(n), s ? "'" : "");
        c->seed = v;
        break;
    }
    case K_DTYPE: {
        fa4cp_dtype dt;
        static const char *const dn[] = {"bf16", "fp16", "fp32", "fp64", "bfloat16", "float16",
                                         "float32", "float64", NULL};
        if (!s || fa4cp_dtype_parse(s, &dt)) {
            const char *near = s ? wl_nearest(s, dn, 8) : NULL;
            if (near)
                return wl_nerr(x, n, path, "unknown dtype '%s' (did you mean '%s'?)", s, near);
            return wl_nerr(x, n, path, "expected one of 'bf16', 'fp16', 'fp32', 'fp64', got %s%s%s",
                        s ? "'" : "", s ? s : wl_node_kind(n), s ? "'" : "");
        }
        c->dtype = dt;
        break;
    }
    case K_ENUM: {
        int idx = -1;
        const char *const *names = f->id == F_CP_COMM ? fa4cp_cp_comm_names() : f->names;
        fa4cp_cp_comm_type comm = FA4CP_CP_P2P;
        if (f->id == F_CP_COMM && s) { /* the cp config knows the names and the refusals */
            fa4cp_status cst = fa4cp_cp_comm_lookup(s, 1, &comm);
            if (cst == FA4CP_ERR_UNSUPPORTED)
                return wl_nerr(x, n, path, "%s", fa4cp_last_error());
            fa4cp_clear_error();
            idx = cst == FA4CP_OK ? (int)comm : -1;
        } else if (s)
            for (int i = 0; names[i]; i++)
                if (!strcmp(s, names[i]))
                    idx = i;
        if (idx < 0) {
            char list[160];
            names_list(names, list, sizeof list);
            int cnt = 0;
            while (names[cnt])
                cnt++;
            const char *near = s ? wl_nearest(s, names, cnt) : NULL;
            if (f->id == F_CP_COMM && s && fa4cp_cp_comm_alias_of(s))
                near = fa4cp_cp_comm_alias_of(s);
            if (near)
                return wl_nerr(x, n, path, "unknown value '%s' (did you mean '%s'?); expected one of %s", s,
                            near, list);
            return wl_nerr(x, n, path, "expected one of %s, got %s%s%s", list, s ? "'" : "",
                        s ? s : wl_node_kind(n), s ? "'" : "");
        }
        switch (f->id) {
        case F_LAYOUT: c->layout_bshd = idx; break;
        case F_SEQ_DIST: c->dist = (fa4cp_seq_dist)idx; break;
        case F_CP_COMM: c->comm = comm; break;
        case F_BACKEND: c->backend = idx ? FA4CP_BACKEND_CUDA : FA4CP_BACKEND_CPU; break;
        case F_CHECK:
            c->check = idx == 0 ? FA4CP_CHECK_OFF : idx == 1 ? FA4CP_CHECK_SAMPLED : FA4CP_CHECK_FULL;
            break;
        default: return fa4cp_set_error(FA4CP_ERR_INTERNAL, "field %s has no enum slot", f->path);
        }
        break;
    }
    case K_WINDOW: {
        long long l, r;
        if (is_null(n) || (s && (!strcmp(s, "none") || !strcmp(s, "-1")))) {
            c->window_left = c->window_right = -1;
        } else if (s) {
            if (wl_parse_ll(s, &l) || l < 0)
                return wl_nerr(x, n, path,
                            "expected a window size >= 0, [left, right], or none, got '%s'", s);
            if (l > INT32_MAX)
                return wl_nerr(x, n, path, "must be <= %d, got %lld", INT32_MAX, l);
            c->window_left = c->window_right = (int)l;
        } else if (n && n->type == YAML_SEQUENCE_NODE &&
                   n->data.sequence.items.top - n->data.sequence.items.start == 2) {
            yaml_node_t *a = yaml_document_get_node(x->doc, n->data.sequence.items.start[0]);
            yaml_node_t *b = yaml_document_get_node(x->doc, n->data.sequence.items.start[1]);
            if (wl_parse_ll(wl_scalar(a), &l) || l < -1 || l > INT32_MAX)
                return wl_nerr(x, a, path, "window left must be an integer >= -1 (-1 = unbounded), got %s",
                            wl_node_kind(a));
            if (wl_parse_ll(wl_scalar(b), &r) || r < -1 || r > INT32_MAX)
                return wl_nerr(x, b, path, "window right must be an integer >= -1 (-1 = unbounded), got %s",
                            wl_node_kind(b));
            c->window_left = (int)l;
            c->window_right = (int)r;
        } else {
            return wl_nerr(x, n, path, "expected a window size, [left, right] or none, got %s", wl_node_kind(n));
        }
        break;
    }
    case K_SEQUENCES: {
        if (n && n->type == YAML_MAPPING_NODE) {
            d->nlist = 0;
            c->dist = FA4CP_SEQ_EQUAL;
            memset(&d->m[F_SEQ_DIST], 0, sizeof(mark));
            fa4cp_status st = set_generator(x, d, n, path);
            if (st)
                return st;
            break;
        }
        if (!n || n->type != YAML_SEQUENCE_NODE)
            return wl_nerr(x, n, path,
                        "expected a list of lengths ([4096, 128k]) or a generator ({count: 8, total: 1M}), got %s",
                        wl_node_kind(n));
        yaml_node_item_t *i0 = n->data.sequence.items.start, *ie = n->data.sequence.items.top;
        long cnt = ie - i0;
        if (cnt == 0)
            return wl_nerr(x, n, path, "the list of sequence lengths is empty");
        if (cnt > MAX_SEQS)
            return wl_nerr(x, n, path, "%ld sequences: at most %d", cnt, MAX_SEQS);
        int32_t *list = realloc(d->list, sizeof(int32_t) * (size_t)cnt);
        if (!list)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %ld sequence lengths", cnt);
        d->list = list;
        for (long i = 0; i < cnt; i++) {
            yaml_node_t *it = yaml_document_get_node(x->doc, i0[i]);
            char ip[PATHLEN];
            snprintf(ip, sizeof ip, "%s[%ld]", path, i);
            int64_t t;
            if (!wl_scalar(it))
                return wl_nerr(x, it, ip, "expected a sequence length, got %s", wl_node_kind(it));
            if (fa4cp_parse_tokens(wl_scalar(it), &t))
                return wl_nerr(x, it, ip, "%s", fa4cp_last_error());
            if (t <= 0)
                return wl_nerr(x, it, ip, "a sequence length must be positive, got %lld", (long long)t);
            if (t > INT32_MAX)
                return wl_nerr(x, it, ip, "a sequence length must be < 2G tokens, got %lld", (long long)t);
            list[i] = (int32_t)t;
        }
        d->nlist = (int)cnt;
        c->dist = FA4CP_SEQ_EXPLICIT;
        break;
    }
    }
    set_mark(x, d, f->id, n, path);
    return FA4CP_OK;
}

