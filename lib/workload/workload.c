/* workload.c - YAML workload files -> validated cases.
 *
 * The loader is table-driven: every key of the schema (docs/workloads.md) is
 * a row of `fields` with its path ("attention.heads"), its kind and its
 * limits.  The same setter serves the document, the `sweep:` lists and the
 * command-line overrides, so a wrong value is reported the same way
 * wherever it comes from: "FILE:LINE:COL: key.path: expected ..., got ...".
 * A field remembers where it was last set; the case checks that relate
 * several fields (a window with p2p, heads for a2a, lengths for 2*cp) point
 * at the line that made the case impossible.  Nothing here allocates more
 * than the cases themselves; the limits (MAX_*) keep a hostile file from
 * asking for more.
 */
#include "core/internal.h"
#include "cp/cp_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_CASES 4096        /* per YAML document, after the sweep */
#define MAX_SEQS 65536        /* sequences per case */
#define MAX_CASE_SEQS 4000000 /* sequences over all the cases of a file */
#define MAX_HEADS 4096
#define MAX_HEAD_DIM 1024
#define MAX_CP 65536
/* A hostile file is refused before libyaml builds it (libyaml's scanner is
 * quadratic in the nesting: 100k nested '[' took 60 s to fail).  A workload
 * is 4 levels deep and a few KiB; the caps leave room for long lists. */
#define MAX_FILE_BYTES (4u << 20) /* 4 MiB */
#define MAX_DEPTH 32              /* nested mappings and sequences */
#define PATHLEN 128

/* ------------------------------------------------------------------ the schema */

enum field_id {
    F_HEADS, F_KV_HEADS, F_HEAD_DIM, F_DTYPE, F_CAUSAL, F_WINDOW, F_LAYOUT, F_SEQUENCES,
    F_SEQ_COUNT, F_SEQ_TOTAL, F_SEQ_DIST, F_SEQ_MIN, F_SEQ_MULT, F_PAD,
    F_CP_SIZE, F_CP_COMM,
    F_BACKEND, F_WARMUP, F_ITERS, F_BACKWARD, F_CHECK, F_SAMPLES, F_SEED, F_TIMEOUT,
    F_GATE_FWD, F_GATE_BWD,
    NFIELD
};

enum kind { K_INT, K_TOKENS, K_BOOL, K_DOUBLE, K_U64, K_ENUM, K_WINDOW, K_SEQUENCES, K_DTYPE };

typedef struct field {
    const char *path;
    enum field_id id;
    enum kind kind;
    long long min, max;     /* K_INT / K_TOKENS */
    const char *const *names; /* K_ENUM: NULL-terminated */
} field;

static const char *const layout_names[] = {"thd", "bshd", NULL};
static const char *const dist_names[] = {"explicit", "equal", "uniform", "lognormal", NULL};
static const char *const backend_names[] = {"cpu", "cuda", NULL};
static const char *const check_names[] = {"off", "sampled", "full", NULL};

static const field fields[] = {
    {"attention.heads", F_HEADS, K_INT, 1, MAX_HEADS, NULL},
    {"attention.kv_heads", F_KV_HEADS, K_INT, 1, MAX_HEADS, NULL},
    {"attention.head_dim", F_HEAD_DIM, K_INT, 1, MAX_HEAD_DIM, NULL},
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
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))

static const char *const top_keys[] = {"version", "name", "description", "attention", "cp",
                                       "run",     "gate", "sweep",       NULL};

const char *fa4cp_check_mode_name(fa4cp_check_mode mode)
{
    return mode >= 0 && mode <= FA4CP_CHECK_FULL ? check_names[mode] : "?";
}

const char *fa4cp_seq_dist_name(fa4cp_seq_dist dist)
{
    return dist >= 0 && dist <= FA4CP_SEQ_LOGNORMAL ? dist_names[dist] : "?";
}

/* ------------------------------------------------------------------ state */

typedef struct mark {
    int set;
    const char *file; /* the workload file, or "command line" */
    int line, col; /* 1-based */
    char path[PATHLEN];
} mark;

typedef struct draft {
    fa4cp_case c;
    int32_t *list; /* explicit lengths */
    int nlist;
    int gen_count;
    mark m[NFIELD];
} draft;

typedef struct ctx {
    const char *file;
    yaml_document_t *doc;
} ctx;

struct fa4cp_workload {
    char *file;
    int n, cap;
    fa4cp_case *cases;
};

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

static fa4cp_status nerr(const ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static fa4cp_status nerr(const ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fa4cp_status st = verr(x->file, n ? (int)n->start_mark.line + 1 : 1,
                           n ? (int)n->start_mark.column + 1 : 1, path, fmt, ap);
    va_end(ap);
    return st;
}

static fa4cp_status merr(const char *file, const mark *m, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static fa4cp_status merr(const char *file, const mark *m, const char *path, const char *fmt, ...)
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
static const char *nearest(const char *word, const char *const *cand, int ncand)
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

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Why a scalar cannot be a name or a description (it goes into records, tables
 * and file names), or NULL: a NUL ("\0" would cut it short) or a control
 * character (C0, DEL or C1).  The YAML reader already refused bad UTF-8. */
static const char *text_problem(const yaml_node_t *n)
{
    static _Thread_local char why[128];
    const unsigned char *s = (const unsigned char *)scalar(n);
    size_t len = n->data.scalar.length, chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = s[i];
        if (c == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            c = s[i + 1]; /* U+0080..U+009F */
        else if (c >= 0x80 && (c & 0xc0) == 0x80)
            continue; /* a continuation byte of the character counted before */
        chars++;
        if (c == 0) {
            snprintf(why, sizeof why, "contains a NUL character (\\0) at character %zu: "
                     "a name is text without control characters", chars);
            return why;
        }
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f)) {
            snprintf(why, sizeof why, "contains the control character U+%04X at character %zu: "
                     "a name is text without control characters", c, chars);
            return why;
        }
    }
    return NULL;
}

static const char *node_kind(const yaml_node_t *n)
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
    const char *s = scalar(n);
    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

static int parse_ll(const char *s, long long *out)
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

static const field *field_by_path(const char *path)
{
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].path, path))
            return &fields[i];
    return NULL;
}

static fa4cp_status set_field(const ctx *x, draft *d, const field *f, yaml_node_t *n, const char *path);

/* The generator form of attention.sequences: a mapping of count/total/... */
static fa4cp_status set_generator(const ctx *x, draft *d, yaml_node_t *n, const char *path)
{
    static const char *const sub[] = {"count", "total", "distribution", "min", "multiple_of", NULL};
    yaml_node_pair_t *p0 = n->data.mapping.pairs.start, *pe = n->data.mapping.pairs.top;
    int have_count = 0, have_total = 0;
    for (yaml_node_pair_t *p = p0; p < pe; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = scalar(k);
        if (!ks)
            return nerr(x, k, path, "expected a key name, got %s", node_kind(k));
        for (yaml_node_pair_t *q = p0; q < p; q++) {
            const char *qs = scalar(yaml_document_get_node(x->doc, q->key));
            if (qs && !strcmp(qs, ks)) {
                yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
                return nerr(x, k, path, "duplicate key '%s' (first given at line %d)", ks,
                            (int)qk->start_mark.line + 1);
            }
        }
        char sp[PATHLEN];
        snprintf(sp, sizeof sp, "attention.sequences.%s", ks);
        const field *f = field_by_path(sp);
        if (!f) {
            const char *near = nearest(ks, sub, 5);
            char list[160];
            names_list(sub, list, sizeof list);
            if (near)
                return nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
            return nerr(x, k, path, "unknown key '%s'; a generator takes %s", ks, list);
        }
        char vp[PATHLEN];
        snprintf(vp, sizeof vp, "%s.%s", path, ks);
        fa4cp_status st = set_field(x, d, f, v, vp);
        if (st)
            return st;
        have_count |= f->id == F_SEQ_COUNT;
        have_total |= f->id == F_SEQ_TOTAL;
    }
    if (!have_count || !have_total)
        return nerr(x, n, path, "a sequence generator needs both 'count' and 'total' (e.g. {count: 8, total: 1M})");
    if (!d->m[F_SEQ_DIST].set)
        d->c.dist = FA4CP_SEQ_EQUAL;
    if (d->c.dist == FA4CP_SEQ_EXPLICIT)
        return merr(x->file, &d->m[F_SEQ_DIST], NULL,
                    "'explicit' is not a generator distribution; give the lengths as a list instead");
    return FA4CP_OK;
}

static fa4cp_status set_field(const ctx *x, draft *d, const field *f, yaml_node_t *n, const char *path)
{
    const char *s = scalar(n);
    fa4cp_case *c = &d->c;
    switch (f->kind) {
    case K_INT:
    case K_TOKENS: {
        long long v;
        if (!s || is_null(n))
            return nerr(x, n, path, "expected %s, got %s",
                        f->kind == K_TOKENS ? "a token count (e.g. 4096, 128k, 1M)" : "an integer",
                        node_kind(n));
        if (f->kind == K_TOKENS) {
            int64_t t;
            if (fa4cp_parse_tokens(s, &t))
                return nerr(x, n, path, "%s", fa4cp_last_error());
            v = t;
        } else if (parse_ll(s, &v)) {
            if (fa4cp_parse_tokens(s, &(int64_t){0}) == FA4CP_OK)
                return nerr(x, n, path, "expected a plain integer, got '%s' (k/M suffixes are for token counts)", s);
            return nerr(x, n, path, "expected an integer, got '%s'", s);
        }
        if (v < f->min) {
            if (f->min == 1)
                return nerr(x, n, path, "must be positive, got %lld", v);
            return nerr(x, n, path, "must be >= %lld, got %lld", f->min, v);
        }
        if (v > f->max)
            return nerr(x, n, path, "must be <= %lld, got %lld", f->max, v);
        int iv = (int)v;
        switch (f->id) {
        case F_HEADS: c->heads = iv; break;
        case F_KV_HEADS: c->kv_heads = iv; break;
        case F_HEAD_DIM: c->head_dim = iv; break;
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
            const char *near = s && *s ? nearest(s, bools, 2) : NULL;
            if (near)
                return nerr(x, n, path, "expected true or false, got '%s' (did you mean '%s'?)", s, near);
            return nerr(x, n, path, "expected true or false, got %s%s%s", s ? "'" : "",
                        s ? s : node_kind(n), s ? "'" : "");
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
            return nerr(x, n, path, "expected a number, got %s%s%s", s ? "'" : "", s ? s : node_kind(n),
                        s ? "'" : "");
        if (f->id == F_TIMEOUT) {
            if (v <= 0)
                return nerr(x, n, path, "must be a positive number of seconds, got %s", s);
            if (v > FA4CP_TIMEOUT_MAX_S)
                return nerr(x, n, path, "must be at most %.0f seconds (7 days), got %s", FA4CP_TIMEOUT_MAX_S, s);
            c->timeout_s = v;
        } else {
            if (v < 0)
                return nerr(x, n, path, "must be >= 0 (0 = no gate), got %s", s);
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
            return nerr(x, n, path, "expected a non-negative integer, got %s%s%s", s ? "'" : "",
                        s ? s : node_kind(n), s ? "'" : "");
        c->seed = v;
        break;
    }
    case K_DTYPE: {
        fa4cp_dtype dt;
        static const char *const dn[] = {"bf16", "fp16", "fp32", "fp64", "bfloat16", "float16",
                                         "float32", "float64", NULL};
        if (!s || fa4cp_dtype_parse(s, &dt)) {
            const char *near = s ? nearest(s, dn, 8) : NULL;
            if (near)
                return nerr(x, n, path, "unknown dtype '%s' (did you mean '%s'?)", s, near);
            return nerr(x, n, path, "expected one of 'bf16', 'fp16', 'fp32', 'fp64', got %s%s%s",
                        s ? "'" : "", s ? s : node_kind(n), s ? "'" : "");
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
                return nerr(x, n, path, "%s", fa4cp_last_error());
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
            const char *near = s ? nearest(s, names, cnt) : NULL;
            if (f->id == F_CP_COMM && s && fa4cp_cp_comm_alias_of(s))
                near = fa4cp_cp_comm_alias_of(s);
            if (near)
                return nerr(x, n, path, "unknown value '%s' (did you mean '%s'?); expected one of %s", s,
                            near, list);
            return nerr(x, n, path, "expected one of %s, got %s%s%s", list, s ? "'" : "",
                        s ? s : node_kind(n), s ? "'" : "");
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
            if (parse_ll(s, &l) || l < 0)
                return nerr(x, n, path,
                            "expected a window size >= 0, [left, right], or none, got '%s'", s);
            if (l > INT32_MAX)
                return nerr(x, n, path, "must be <= %d, got %lld", INT32_MAX, l);
            c->window_left = c->window_right = (int)l;
        } else if (n && n->type == YAML_SEQUENCE_NODE &&
                   n->data.sequence.items.top - n->data.sequence.items.start == 2) {
            yaml_node_t *a = yaml_document_get_node(x->doc, n->data.sequence.items.start[0]);
            yaml_node_t *b = yaml_document_get_node(x->doc, n->data.sequence.items.start[1]);
            if (parse_ll(scalar(a), &l) || l < -1 || l > INT32_MAX)
                return nerr(x, a, path, "window left must be an integer >= -1 (-1 = unbounded), got %s",
                            node_kind(a));
            if (parse_ll(scalar(b), &r) || r < -1 || r > INT32_MAX)
                return nerr(x, b, path, "window right must be an integer >= -1 (-1 = unbounded), got %s",
                            node_kind(b));
            c->window_left = (int)l;
            c->window_right = (int)r;
        } else {
            return nerr(x, n, path, "expected a window size, [left, right] or none, got %s", node_kind(n));
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
            return nerr(x, n, path,
                        "expected a list of lengths ([4096, 128k]) or a generator ({count: 8, total: 1M}), got %s",
                        node_kind(n));
        yaml_node_item_t *i0 = n->data.sequence.items.start, *ie = n->data.sequence.items.top;
        long cnt = ie - i0;
        if (cnt == 0)
            return nerr(x, n, path, "the list of sequence lengths is empty");
        if (cnt > MAX_SEQS)
            return nerr(x, n, path, "%ld sequences: at most %d", cnt, MAX_SEQS);
        int32_t *list = realloc(d->list, sizeof(int32_t) * (size_t)cnt);
        if (!list)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %ld sequence lengths", cnt);
        d->list = list;
        for (long i = 0; i < cnt; i++) {
            yaml_node_t *it = yaml_document_get_node(x->doc, i0[i]);
            char ip[PATHLEN];
            snprintf(ip, sizeof ip, "%s[%ld]", path, i);
            int64_t t;
            if (!scalar(it))
                return nerr(x, it, ip, "expected a sequence length, got %s", node_kind(it));
            if (fa4cp_parse_tokens(scalar(it), &t))
                return nerr(x, it, ip, "%s", fa4cp_last_error());
            if (t <= 0)
                return nerr(x, it, ip, "a sequence length must be positive, got %lld", (long long)t);
            if (t > INT32_MAX)
                return nerr(x, it, ip, "a sequence length must be < 2G tokens, got %lld", (long long)t);
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

/* ------------------------------------------------------------------ mappings */

static int section_keys(const char *section, const char **out, int max)
{
    int n = 0;
    size_t sl = strlen(section);
    for (int i = 0; i < NFIELDS && n < max; i++) {
        const char *p = fields[i].path;
        if (!strncmp(p, section, sl) && p[sl] == '.' && !strchr(p + sl + 1, '.'))
            out[n++] = p + sl + 1;
    }
    return n;
}

/* Where does a bare leaf name live?  ("heads" -> "attention.heads") */
static const char *leaf_home(const char *leaf)
{
    const char *found = NULL;
    for (int i = 0; i < NFIELDS; i++) {
        const char *dot = strrchr(fields[i].path, '.');
        if (dot && !strcmp(dot + 1, leaf)) {
            if (found)
                return NULL; /* ambiguous */
            found = fields[i].path;
        }
    }
    return found;
}

static fa4cp_status check_dups(const ctx *x, yaml_node_t *map, const char *path)
{
    yaml_node_pair_t *p0 = map->data.mapping.pairs.start, *pe = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = p0; p < pe; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        const char *ks = scalar(k);
        if (!ks)
            return nerr(x, k, path, "expected a key name, got %s", node_kind(k));
        for (yaml_node_pair_t *q = p0; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
            const char *qs = scalar(qk);
            if (qs && !strcmp(qs, ks)) {
                char kp[PATHLEN];
                snprintf(kp, sizeof kp, "%s%s%s", path, *path ? "." : "", ks);
                return nerr(x, k, kp, "duplicate key '%s' (first given at line %d)", ks,
                            (int)qk->start_mark.line + 1);
            }
        }
    }
    return FA4CP_OK;
}

static fa4cp_status load_section(const ctx *x, draft *d, const char *section, yaml_node_t *map)
{
    if (map->type != YAML_MAPPING_NODE)
        return nerr(x, map, section, "expected a mapping of keys (check the indentation), got %s",
                    node_kind(map));
    fa4cp_status st = check_dups(x, map, section);
    if (st)
        return st;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = scalar(k);
        char path[PATHLEN];
        snprintf(path, sizeof path, "%s.%s", section, ks);
        const field *f = field_by_path(path);
        if (!f || strchr(ks, '.')) {
            const char *keys[32];
            int nk = section_keys(section, keys, 32);
            const char *near = nearest(ks, keys, nk);
            const char *home = leaf_home(ks);
            if (near)
                return nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
            if (home && strncmp(home, section, strlen(section)))
                return nerr(x, k, path, "unknown key '%s' in '%s:' (it belongs in '%s')", ks, section, home);
            char list[400];
            size_t at = 0;
            list[0] = 0;
            for (int i = 0; i < nk; i++)
                at += (size_t)snprintf(list + at, at < sizeof list ? sizeof list - at : 0, "%s%s",
                                       i ? ", " : "", keys[i]);
            return nerr(x, k, path, "unknown key '%s'; '%s:' takes %s", ks, section, list);
        }
        st = set_field(x, d, f, v, path);
        if (st)
            return st;
    }
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ sweep */

#define MAX_DIM_KEYS 8
typedef struct dim {
    int nkeys;
    const field *f[MAX_DIM_KEYS];
    char path[MAX_DIM_KEYS][PATHLEN];
    yaml_node_t *list[MAX_DIM_KEYS];
    int nvalues;
} dim;

#define MAX_DIMS 16

static fa4cp_status sweep_key(const ctx *x, yaml_node_t *k, yaml_node_t *v, const char *prefix,
                              dim *dm)
{
    const char *ks = scalar(k);
    char path[PATHLEN];
    snprintf(path, sizeof path, "%s.%s", prefix, ks);
    const field *f = field_by_path(ks);
    if (!f) {
        const char *home = leaf_home(ks);
        if (home && !strchr(ks, '.'))
            f = field_by_path(home);
    }
    if (!f) {
        const char *paths[NFIELDS + 1];
        for (int i = 0; i < NFIELDS; i++)
            paths[i] = fields[i].path;
        paths[NFIELDS] = "together";
        const char *near = nearest(ks, paths, NFIELDS + 1);
        if (!near) {
            const char *dot = strrchr(ks, '.');
            const char *home = leaf_home(dot ? dot + 1 : ks);
            near = home;
        }
        if (near)
            return nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
        return nerr(x, k, path,
                    "unknown key '%s': sweep keys are key paths such as cp.comm or attention.heads, or 'together'",
                    ks);
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return nerr(x, v, path, "expected a list of values to sweep over, got %s", node_kind(v));
    int nv = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (nv == 0)
        return nerr(x, v, path, "the list of values is empty");
    if (dm->nkeys >= MAX_DIM_KEYS)
        return nerr(x, k, path, "at most %d keys vary together", MAX_DIM_KEYS);
    for (int i = 0; i < dm->nkeys; i++)
        if (dm->f[i] == f)
            return nerr(x, k, path, "'%s' is swept twice", f->path);
    if (dm->nkeys && nv != dm->nvalues)
        return nerr(x, v, path,
                    "keys that vary together need lists of the same length: %d values here, %d for '%s'",
                    nv, dm->nvalues, dm->f[0]->path);
    dm->f[dm->nkeys] = f;
    snprintf(dm->path[dm->nkeys], PATHLEN, "%s", path);
    dm->list[dm->nkeys] = v;
    dm->nkeys++;
    dm->nvalues = nv;
    return FA4CP_OK;
}

static fa4cp_status load_together(const ctx *x, yaml_node_t *map, const char *path, dim *dims, int *ndims)
{
    if (map->type != YAML_MAPPING_NODE)
        return nerr(x, map, path, "expected a mapping of key: [values] that vary together, got %s",
                    node_kind(map));
    fa4cp_status st = check_dups(x, map, path);
    if (st)
        return st;
    if (*ndims >= MAX_DIMS)
        return nerr(x, map, path, "at most %d sweep dimensions", MAX_DIMS);
    dim *dm = &dims[*ndims];
    memset(dm, 0, sizeof *dm);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        st = sweep_key(x, yaml_document_get_node(x->doc, p->key), yaml_document_get_node(x->doc, p->value),
                       path, dm);
        if (st)
            return st;
    }
    if (dm->nkeys == 0)
        return nerr(x, map, path, "'together' needs at least one key");
    (*ndims)++;
    return FA4CP_OK;
}

static fa4cp_status load_sweep(const ctx *x, yaml_node_t *map, dim *dims, int *ndims)
{
    if (map->type != YAML_MAPPING_NODE)
        return nerr(x, map, "sweep", "expected a mapping of key: [values], got %s", node_kind(map));
    fa4cp_status st = check_dups(x, map, "sweep");
    if (st)
        return st;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = scalar(k);
        if (!strcmp(ks, "together")) {
            if (v->type == YAML_SEQUENCE_NODE) {
                int idx = 0;
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
                     it++, idx++) {
                    char tp[PATHLEN];
                    snprintf(tp, sizeof tp, "sweep.together[%d]", idx);
                    st = load_together(x, yaml_document_get_node(x->doc, *it), tp, dims, ndims);
                    if (st)
                        return st;
                }
            } else {
                st = load_together(x, v, "sweep.together", dims, ndims);
                if (st)
                    return st;
            }
            continue;
        }
        if (*ndims >= MAX_DIMS)
            return nerr(x, k, "sweep", "at most %d sweep dimensions", MAX_DIMS);
        dim *dm = &dims[*ndims];
        memset(dm, 0, sizeof *dm);
        st = sweep_key(x, k, v, "sweep", dm);
        if (st)
            return st;
        (*ndims)++;
    }
    /* one key swept in two places */
    for (int a = 0; a < *ndims; a++)
        for (int i = 0; i < dims[a].nkeys; i++)
            for (int b = 0; b <= a; b++)
                for (int j = 0; j < dims[b].nkeys; j++)
                    if ((b < a || j < i) && dims[a].f[i] == dims[b].f[j])
                        return nerr(x, dims[a].list[i], dims[a].path[i], "'%s' is already swept at %s",
                                    dims[a].f[i]->path, dims[b].path[j]);
    return FA4CP_OK;
}

/* A short text of a value for case labels. */
static void node_text(yaml_document_t *doc, yaml_node_t *n, char *buf, size_t len)
{
    if (!n || len == 0) {
        if (len)
            buf[0] = 0;
        return;
    }
    if (n->type == YAML_SCALAR_NODE) {
        snprintf(buf, len, "%s", (const char *)n->data.scalar.value);
        return;
    }
    size_t at = 0;
    int first = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        at += (size_t)snprintf(buf + at, len - at, "[");
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top && at < len;
             it++) {
            char sub[64];
            node_text(doc, yaml_document_get_node(doc, *it), sub, sizeof sub);
            at += (size_t)snprintf(buf + at, len - at, "%s%s", first ? "" : ",", sub);
            first = 0;
        }
        if (at < len)
            snprintf(buf + at, len - at, "]");
    } else if (n->type == YAML_MAPPING_NODE) {
        at += (size_t)snprintf(buf + at, len - at, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && at < len; p++) {
            char k[64], v[64];
            node_text(doc, yaml_document_get_node(doc, p->key), k, sizeof k);
            node_text(doc, yaml_document_get_node(doc, p->value), v, sizeof v);
            at += (size_t)snprintf(buf + at, len - at, "%s%s:%s", first ? "" : ",", k, v);
            first = 0;
        }
        if (at < len)
            snprintf(buf + at, len - at, "}");
    }
}

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
        return merr(file, mt, NULL, "total %lld is not a multiple of multiple_of = %lld",
                    (long long)c->gen_total, (long long)m);
    int64_t units = c->gen_total / m;
    int64_t minu = (minlen + m - 1) / m;
    if (units < (int64_t)count * minu)
        return merr(file, mt, NULL,
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
            return merr(file, mt, NULL, "sequence %d would be longer than 2G tokens", i);
    return FA4CP_OK;
}

/* Resolve lengths and check the rules that involve several keys. */
static fa4cp_status finalize(const char *file, draft *d, int ncases_seqs_left)
{
    fa4cp_case *c = &d->c;
    mark *m = d->m;
    if (!m[F_HEADS].set)
        return merr(file, NULL, "attention.heads", "missing: the number of query heads is required");
    if (!m[F_HEAD_DIM].set)
        return merr(file, NULL, "attention.head_dim", "missing: the head dimension is required");
    if (!m[F_SEQUENCES].set && !m[F_SEQ_COUNT].set)
        return merr(file, NULL, "attention.sequences",
                    "missing: give a list of lengths or a generator {count, total}");
    if (!m[F_KV_HEADS].set)
        c->kv_heads = c->heads;
    if (c->heads % c->kv_heads)
        return merr(file, m[F_KV_HEADS].set ? &m[F_KV_HEADS] : &m[F_HEADS], NULL,
                    "heads = %d is not a multiple of kv_heads = %d (grouped-query attention needs it)",
                    c->heads, c->kv_heads);
    if (c->causal && c->window_left >= 0)
        c->window_right = 0;
    if (c->cp > 1 && !fa4cp_cp_comm_window_ok(c->comm, c->causal, c->window_left, c->window_right)) {
        const mark *at = m[F_CP_COMM].set ? &m[F_CP_COMM] : &m[F_WINDOW];
        return merr(file, at, NULL,
                    "a sliding window (attention.window = [%d, %d], line %d) is not supported with "
                    "cp.comm p2p; use all_gather or a2a",
                    c->window_left, c->window_right, m[F_WINDOW].line);
    }
    if (c->cp > 1) {
        if (!fa4cp_cp_comm_heads_ok(c->comm, c->heads, c->cp))
            return merr(file, m[F_CP_SIZE].set ? &m[F_CP_SIZE] : &m[F_HEADS], NULL,
                        "cp.comm a2a scatters heads over the CP ranks: heads = %d is not divisible by "
                        "cp.size = %d",
                        c->heads, c->cp);
        if (!fa4cp_cp_comm_heads_ok(c->comm, c->kv_heads, c->cp))
            return merr(file, m[F_CP_SIZE].set ? &m[F_CP_SIZE] : &m[F_KV_HEADS], NULL,
                        "cp.comm a2a scatters heads over the CP ranks: kv_heads = %d is not divisible "
                        "by cp.size = %d",
                        c->kv_heads, c->cp);
    }
    if (c->backend == FA4CP_BACKEND_CUDA && (c->dtype == FA4CP_FP32 || c->dtype == FA4CP_FP64))
        return merr(file, m[F_DTYPE].set ? &m[F_DTYPE] : &m[F_BACKEND], NULL,
                    "the cuda backend computes in bf16 or fp16, not %s (fp32/fp64 are for the cpu backend)",
                    fa4cp_dtype_name(c->dtype));
    /* lengths */
    int batch = c->dist == FA4CP_SEQ_EXPLICIT ? d->nlist : d->gen_count;
    if (batch > ncases_seqs_left)
        return merr(file, &m[F_SEQUENCES], NULL, "the cases of this file hold more than %d sequences in all",
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
            return merr(file, m[F_LAYOUT].set ? &m[F_LAYOUT] : lm, NULL,
                        "layout bshd needs sequences of equal length: sequence %d has %lld tokens, "
                        "sequence 0 has %d; use layout thd for varlen batches",
                        i, (long long)len, (int)c->seqlen[0]);
        tok += len;
        padded += p;
        if (padded > INT32_MAX)
            return merr(file, lm, NULL, "the batch has more than 2^31-1 tokens (%lld so far)", (long long)padded);
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
        return merr(file, m[F_CP_SIZE].set && !m[F_SEQUENCES].set ? &m[F_CP_SIZE] : lm, NULL,
                    "%s; or set attention.pad_between_seqs: true", msg);
    }
    /* and whatever else the CP library refuses about this shape */
    fa4cp_cp_config cfg;
    const mark *cm = m[F_CP_COMM].set ? &m[F_CP_COMM] : &m[F_CP_SIZE];
    if (fa4cp_case_cp_config(c, &cfg) == FA4CP_OK) {
        if (fa4cp_cp_validate(&cfg, c->cp, batch, c->cu_padded, 0) != FA4CP_OK) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s", fa4cp_last_error());
            return merr(file, cm, cm->set ? NULL : "cp", "%s", msg);
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
    cfg->causal = c->causal;
    cfg->window_left = c->window_left;
    cfg->window_right = c->window_right;
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ documents */

static void draft_defaults(draft *d)
{
    memset(d, 0, sizeof *d);
    fa4cp_case *c = &d->c;
    c->dtype = FA4CP_BF16;
    c->causal = 1;
    c->window_left = c->window_right = -1;
    c->dist = FA4CP_SEQ_EXPLICIT;
    c->gen_multiple_of = 1;
    c->cp = 1;
    c->comm = FA4CP_CP_P2P;
    c->backend = FA4CP_BACKEND_CUDA;
    c->warmup = 2;
    c->iters = 10;
    c->backward = 1;
    c->check = FA4CP_CHECK_SAMPLED;
    c->samples = 8;
    c->seed = 42;
    c->timeout_s = 300;
}

static fa4cp_status draft_copy(draft *dst, const draft *src)
{
    *dst = *src;
    dst->list = NULL;
    if (src->nlist) {
        dst->list = malloc(sizeof(int32_t) * (size_t)src->nlist);
        if (!dst->list)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
        memcpy(dst->list, src->list, sizeof(int32_t) * (size_t)src->nlist);
    }
    return FA4CP_OK;
}

static fa4cp_status push_case(fa4cp_workload *w, fa4cp_case *c)
{
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        fa4cp_case *nc = realloc(w->cases, sizeof(fa4cp_case) * (size_t)cap);
        if (!nc)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %d cases", cap);
        w->cases = nc;
        w->cap = cap;
    }
    w->cases[w->n++] = *c;
    return FA4CP_OK;
}

/* Apply one override: its value is parsed as YAML, so lists work too. */
/* The shape of a YAML text before it is loaded: at most MAX_DEPTH nested
 * collections, counted on the parser's events, which stops at the first
 * level too deep (O(size) work; a syntax error is left to the loader, which
 * reports it with its mark). */
static fa4cp_status check_depth(const char *name, const unsigned char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    fa4cp_status st = FA4CP_OK;
    int depth = 0;
    if (!yaml_parser_initialize(&p))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&p, buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            break;
        yaml_event_type_t type = ev.type;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                     "%s:%d:%d: nested deeper than %d levels: a workload is a few levels of "
                                     "mappings and lists (docs/workloads.md); refused before loading",
                                     name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, MAX_DEPTH);
                yaml_event_delete(&ev);
                break;
            }
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return st;
}

/* The field an override sets (a bare leaf name finds its section); NULL if none. */
static const field *override_field(const fa4cp_override *o)
{
    const field *f = field_by_path(o->key);
    if (!f) {
        const char *home = leaf_home(o->key);
        if (home && !strchr(o->key, '.'))
            f = field_by_path(home);
    }
    return f;
}

static fa4cp_status apply_override(draft *d, const fa4cp_override *o)
{
    const field *f = override_field(o);
    if (!f) {
        const char *paths[NFIELDS];
        for (int i = 0; i < NFIELDS; i++)
            paths[i] = fields[i].path;
        const char *near = nearest(o->key, paths, NFIELDS);
        return fa4cp_set_error(FA4CP_ERR_INVALID, "command line: unknown key '%s'%s%s%s", o->key,
                               near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    fa4cp_status st = check_depth("command line", (const unsigned char *)o->value, strlen(o->value));
    if (st)
        return st;
    if (!yaml_parser_initialize(&parser))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "yaml parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)o->value, strlen(o->value));
    if (!yaml_parser_load(&parser, &doc)) {
        st = fa4cp_set_error(FA4CP_ERR_INVALID, "command line: %s=%s: %s", o->key, o->value,
                             parser.problem ? parser.problem : "not a YAML value");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    ctx x = {"command line", &doc};
    if (!root) {
        static yaml_node_t empty;
        empty.type = YAML_SCALAR_NODE;
        empty.data.scalar.value = (yaml_char_t *)"";
        root = &empty;
    }
    st = set_field(&x, d, f, root, f->path);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

static fa4cp_status load_document(const char *file, int docno, yaml_document_t *doc, const fa4cp_override *ov,
                                  int nov, fa4cp_workload *w, int *seqs_left)
{
    ctx x = {file, doc};
    yaml_node_t *root = yaml_document_get_root_node(doc);
    draft base, cur;
    dim dims[MAX_DIMS];
    int ndims = 0;
    fa4cp_status st = FA4CP_OK;
    draft_defaults(&base);
    memset(&cur, 0, sizeof cur);
    if (root->type != YAML_MAPPING_NODE)
        return nerr(&x, root, "", "a workload document is a mapping (version:, attention:, cp:, run:, ...), got %s",
                    node_kind(root));
    FA4CP_TRY(check_dups(&x, root, ""));
    /* name default: the file's base name without .yaml */
    const char *slash = strrchr(file, '/');
    snprintf(base.c.name, sizeof base.c.name, "%s", slash ? slash + 1 : file);
    char *dot = strrchr(base.c.name, '.');
    if (dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")))
        *dot = 0;
    yaml_node_t *version = NULL, *sweep = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        const char *ks = scalar(k);
        if (!strcmp(ks, "version")) {
            version = v;
            long long ver;
            if (parse_ll(scalar(v), &ver))
                FA4CP_TRY(nerr(&x, v, "version", "expected the schema version 1, got %s%s%s",
                               scalar(v) ? "'" : "", scalar(v) ? scalar(v) : node_kind(v), scalar(v) ? "'" : ""));
            if (ver != 1)
                FA4CP_TRY(nerr(&x, v, "version",
                               "schema version %lld is not known to fa4cp %s (it reads version 1)", ver,
                               fa4cp_version()));
        } else if (!strcmp(ks, "name") || !strcmp(ks, "description")) {
            if (!scalar(v))
                FA4CP_TRY(nerr(&x, v, ks, "expected a string, got %s", node_kind(v)));
            const char *bad = text_problem(v);
            if (bad)
                FA4CP_TRY(nerr(&x, v, ks, "%s", bad));
            if (!strcmp(ks, "name")) {
                if (!*scalar(v) || strlen(scalar(v)) >= sizeof base.c.name)
                    FA4CP_TRY(nerr(&x, v, ks, "expected a name of 1 to %d characters",
                                   (int)sizeof base.c.name - 1));
                snprintf(base.c.name, sizeof base.c.name, "%s", scalar(v));
            }
        } else if (!strcmp(ks, "attention") || !strcmp(ks, "cp") || !strcmp(ks, "run") || !strcmp(ks, "gate")) {
            FA4CP_TRY(load_section(&x, &base, ks, v));
        } else if (!strcmp(ks, "sweep")) {
            sweep = v;
        } else {
            const char *near = nearest(ks, top_keys, 8);
            const char *home = leaf_home(ks);
            if (near)
                FA4CP_TRY(nerr(&x, k, ks, "unknown key '%s' (did you mean '%s'?)", ks, near));
            if (home)
                FA4CP_TRY(nerr(&x, k, ks, "unknown top-level key '%s' (did you mean '%s'? it belongs in the '%.*s:' section)",
                               ks, home, (int)(strchr(home, '.') - home), home));
            FA4CP_TRY(nerr(&x, k, ks,
                           "unknown top-level key '%s'; expected version, name, description, attention, cp, run, gate or sweep",
                           ks));
        }
    }
    if (!version)
        FA4CP_TRY(nerr(&x, root, "version", "missing: every workload starts with 'version: 1'"));
    if (sweep)
        FA4CP_TRY(load_sweep(&x, sweep, dims, &ndims));
    long long ncase = 1;
    for (int i = 0; i < ndims; i++) {
        ncase *= dims[i].nvalues;
        if (ncase > MAX_CASES)
            FA4CP_TRY(nerr(&x, sweep, "sweep", "expands to more than %d cases", MAX_CASES));
    }
    for (long long ci = 0; ci < ncase; ci++) {
        FA4CP_TRY(draft_copy(&cur, &base));
        long long rest = ci;
        size_t at = 0;
        /* the last dimension varies fastest */
        int idx[MAX_DIMS];
        for (int di = ndims - 1; di >= 0; di--) {
            idx[di] = (int)(rest % dims[di].nvalues);
            rest /= dims[di].nvalues;
        }
        for (int di = 0; di < ndims; di++) {
            for (int k = 0; k < dims[di].nkeys; k++) {
                yaml_node_t *item = yaml_document_get_node(doc, dims[di].list[k]->data.sequence.items.start[idx[di]]);
                char ipath[PATHLEN];
                int pl = (int)strnlen(dims[di].path[k], PATHLEN - 16);
                snprintf(ipath, sizeof ipath, "%.*s[%d]", pl, dims[di].path[k], idx[di]);
                FA4CP_TRY(set_field(&x, &cur, dims[di].f[k], item, ipath));
                /* the label says what the case runs with: a --set of a swept key wins */
                char vt[96];
                const char *set = NULL;
                for (int i = 0; i < nov; i++)
                    if (override_field(&ov[i]) == dims[di].f[k])
                        set = ov[i].value;
                if (set)
                    snprintf(vt, sizeof vt, "%s", set);
                else
                    node_text(doc, item, vt, sizeof vt);
                if (at < sizeof cur.c.label)
                    at += (size_t)snprintf(cur.c.label + at, sizeof cur.c.label - at, "%s%s=%s", at ? " " : "",
                                           dims[di].f[k]->path, vt);
            }
        }
        for (int i = 0; i < nov; i++)
            FA4CP_TRY(apply_override(&cur, &ov[i]));
        st = finalize(file, &cur, *seqs_left);
        if (st) {
            if (ndims) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", fa4cp_last_error());
                fa4cp_set_error(st, "%s (sweep case %lld: %s)", msg, ci, cur.c.label);
            }
            free(cur.c.seqlen);
            free(cur.c.cu_padded);
            free(cur.c.cu_tokens);
            goto out;
        }
        *seqs_left -= cur.c.batch;
        cur.c.file = w->file;
        cur.c.doc = docno;
        cur.c.index = w->n;
        st = push_case(w, &cur.c);
        if (st) {
            free(cur.c.seqlen);
            free(cur.c.cu_padded);
            free(cur.c.cu_tokens);
            goto out;
        }
        free(cur.list);
        cur.list = NULL;
    }
out:
    free(cur.list);
    free(base.list);
    return st;
}

static fa4cp_status load_parser(const char *name, yaml_parser_t *parser, const fa4cp_override *ov, int nov,
                                fa4cp_workload **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_workload *w = calloc(1, sizeof *w);
    if (!w)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    w->file = strdup(name);
    if (!w->file) {
        free(w);
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    }
    int docno = 0, seqs_left = MAX_CASE_SEQS;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(parser, &doc)) {
            const char *what = parser->error == YAML_MEMORY_ERROR ? "out of memory" : "YAML syntax error";
            yaml_mark_t mk = parser->problem_mark;
            if (parser->context)
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s: %s %s (line %d)", name, (int)mk.line + 1,
                                     (int)mk.column + 1, what, parser->problem ? parser->problem : "?",
                                     parser->context, (int)parser->context_mark.line + 1);
            else
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s: %s", name, (int)mk.line + 1, (int)mk.column + 1,
                                     what, parser->problem ? parser->problem : "?");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            if (docno == 0)
                st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                     "%s:1:1: the file holds no workload (expected 'version: 1' and an 'attention:' section)",
                                     name);
            break;
        }
        docno++;
        st = load_document(w->file, docno, &doc, ov, nov, w, &seqs_left);
        yaml_document_delete(&doc);
        if (st)
            break;
    }
    if (st) {
        fa4cp_workload_free(w);
        return st;
    }
    *out = w;
    return FA4CP_OK;
}

fa4cp_status fa4cp_workload_load_buffer(const char *name, const void *buf, size_t len, const fa4cp_override *ov,
                                        int nov, fa4cp_workload **out)
{
    yaml_parser_t parser;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "out is NULL");
    *out = NULL;
    if (!name)
        name = "<buffer>";
    if (len > MAX_FILE_BYTES)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "%s: %zu bytes: a workload file is at most %u MiB", name, len,
                               MAX_FILE_BYTES >> 20);
    fa4cp_status cs = check_depth(name, buf, len);
    if (cs)
        return cs;
    if (!yaml_parser_initialize(&parser))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    fa4cp_status st = load_parser(name, &parser, ov, nov, out);
    yaml_parser_delete(&parser);
    return st;
}

const char *fa4cp_workload_dir(void)
{
    static _Thread_local char dir[4096];
    const char *d = getenv("FA4CP_DATADIR");
    snprintf(dir, sizeof dir, "%s/jobs", d && *d ? d : FA4CP_PKGDATADIR);
    return dir;
}

fa4cp_status fa4cp_workload_load(const char *path, const fa4cp_override *ov, int nov, fa4cp_workload **out)
{
    if (!out || !path)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "path or out is NULL");
    *out = NULL;
    /* a path as given; else a shipped workload by name: DIR/NAME, DIR/NAME.yaml */
    char found[4096 + 256];
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT && !strchr(path, '/') && *path) {
        int err = errno;
        const char *dir = fa4cp_workload_dir();
        snprintf(found, sizeof found, "%s/%s", dir, path);
        if (stat(found, &sb) != 0)
            snprintf(found, sizeof found, "%s/%s.yaml", dir, path);
        if (stat(found, &sb) != 0)
            return fa4cp_set_error(FA4CP_ERR_IO,
                                   "%s: cannot open: %s; and no workload of that name in %s (the "
                                   "shipped ones; FA4CP_DATADIR moves it)",
                                   path, strerror(err), dir);
        path = found;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return fa4cp_set_error(FA4CP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* read at most the cap (and one byte more, to know it is over): a pipe,
     * /dev/zero or a huge file is refused after MAX_FILE_BYTES, not read on */
    size_t cap = 0, len = 0;
    unsigned char *buf = NULL;
    fa4cp_status st = FA4CP_OK;
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES) {
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s: more than %u MiB: a workload file is at most %u MiB",
                                     path, MAX_FILE_BYTES >> 20, MAX_FILE_BYTES >> 20);
                break;
            }
            size_t ncap = cap ? cap * 2 : 64 * 1024;
            if (ncap > MAX_FILE_BYTES + 1)
                ncap = MAX_FILE_BYTES + 1;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                st = fa4cp_set_error(FA4CP_ERR_NOMEM, "%s: out of memory while reading", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f))
                st = fa4cp_set_error(FA4CP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!st)
        st = fa4cp_workload_load_buffer(path, buf, len, ov, nov, out);
    free(buf);
    return st;
}

int fa4cp_workload_count(const fa4cp_workload *w) { return w ? w->n : 0; }

const fa4cp_case *fa4cp_workload_get(const fa4cp_workload *w, int i)
{
    return w && i >= 0 && i < w->n ? &w->cases[i] : NULL;
}

void fa4cp_workload_free(fa4cp_workload *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->cases[i].seqlen);
        free(w->cases[i].cu_padded);
        free(w->cases[i].cu_tokens);
    }
    free(w->cases);
    free(w->file);
    free(w);
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
    double f = 4.0 * pairs * c->head_dim * c->heads;
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
    double qrow = (double)c->heads * c->head_dim * es, kvrow = (double)c->kv_heads * c->head_dim * es;
    double bytes = T * qrow * 2 + T * kvrow * 2 + T * c->heads * lse_es; /* q, out, k, v, lse */
    if (c->backward)
        bytes += T * qrow * 2 + T * kvrow * 2 + T * c->heads * lse_es; /* dout, dq, dk, dv, D */
    fa4cp_cp_config cfg;
    if (fa4cp_case_cp_config(c, &cfg) == FA4CP_OK) /* the executor's own buffers: ask it */
        bytes += (double)fa4cp_cp_workspace_bytes(&cfg, c->cp, c->batch, c->padded_tokens, c->backward);
    if (c->check == FA4CP_CHECK_SAMPLED && c->backward)
        bytes += G * c->heads * 16; /* the gathered LSE and D */
    if (with_full_check && c->check == FA4CP_CHECK_FULL)
        bytes += G * (qrow * 2 + kvrow * 2) * (c->backward ? 2 : 1) + G * c->heads * 8 * 2;
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
