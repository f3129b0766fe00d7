/* hostlist.c - Slurm hostlist expressions, expanded exactly as Slurm does,
 * and task-count lists.
 *
 * The rules, read off Slurm's src/common/hostlist.c (22.05, the version that
 * Debian ships) and proven against `scontrol show hostnames` by
 * tests/hostlist_slurm.sh over several hundred expressions:
 *
 *  - Items are separated by ',', ' ' or tab; runs of separators (",,", a
 *    leading or trailing ',') are skipped.  A separator between '[' and the
 *    next ']' belongs to the item.
 *  - The LAST bracket group of an item is its host range; nothing may follow
 *    its ']' ("n[1-2]x" is refused).  Every earlier bracket group is part of
 *    the prefix and expanded from the right: with groups g0 g1 ... gk the
 *    loops nest as g(k-1) outermost, then g(k-2) ... g0, and gk innermost, so
 *    "x[0-1]y[0-1]z[0-1]" gives x0y0z0 x0y0z1 x1y0z0 x1y0z1 x0y1z0 ...
 *  - A range "lo-hi" is printed with the width of the text of lo ("01-3" ->
 *    01 02 03, "1-03" -> 1 2 3, "9-11" -> 9 10 11); "lo-" means lo; empty
 *    pieces, 'x', "--", hi < lo and ranges of more than 65536 hosts are
 *    refused.  Numbers are read by strtoul (leading blanks and '+' count
 *    towards the width, as in Slurm).
 *  - An error inside a prefix group that is expanded inside another prefix
 *    group drops that part silently (Slurm keeps the maximum of the
 *    recursive results); more than 65536 prefix values likewise.
 *  - An item with a '[' but no ']' after it is one host: the prefix with a
 *    ']' appended ("n[1-2" -> "n]"), or the text after '[' when the prefix
 *    is empty.  A ']' without '[' is part of a name.
 *  - Duplicates are kept, in order.
 *
 * Where Slurm's own arithmetic breaks (numbers of ULONG_MAX or more, which
 * Slurm wraps or clamps) this code refuses with an error instead.
 *
 * fa4cp_hostlist_expand gives exactly that list.  fa4cp_hostlist_count and
 * fa4cp_hostlist_nth treat the expression as a list of nodes (Slurm's node
 * lists): besides, they refuse an empty list, a duplicate node and a name
 * that no node has (brackets, blanks, control characters), with the reason.
 */
#include "core/internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANGE (64 * 1024)       /* hosts in one range (Slurm: MAX_RANGE) */
#define MAX_PREFIX_CNT (64 * 1024)  /* values of one prefix group (Slurm) */
#define MAX_RANGES (256 * 1024)     /* ranges in one group (Slurm: fatal) */
#define MAX_HOSTS (4 * 1024 * 1024) /* hosts in one expansion (ours) */

typedef struct range {
    unsigned long lo, hi;
    int width;
} range;

typedef struct expansion {
    const char *expr; /* for messages */
    char **host;
    int n, cap;
    int failed;      /* error already set */
    fa4cp_status st; /* and its status */
} expansion;

static int refuse(expansion *x, const char *fmt, const char *what)
{
    if (!x->failed)
        x->st = fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': %s%s%s%s", x->expr, fmt,
                                what ? " '" : "", what ? what : "", what ? "'" : "");
    x->failed = 1;
    return -1;
}

static int push(expansion *x, char *host)
{
    if (!host) {
        x->st = fa4cp_set_error(FA4CP_ERR_NOMEM, "hostlist '%s': out of memory", x->expr);
        x->failed = 1;
        return -1;
    }
    if (x->n >= MAX_HOSTS) {
        free(host);
        x->st = fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': more than %d hosts",
                                x->expr, MAX_HOSTS);
        x->failed = 1;
        return -1;
    }
    if (x->n == x->cap) {
        int cap = x->cap ? 2 * x->cap : 16;
        char **h = realloc(x->host, sizeof(char *) * (size_t)cap);
        if (!h) {
            free(host);
            x->st = fa4cp_set_error(FA4CP_ERR_NOMEM, "hostlist '%s': out of memory", x->expr);
            x->failed = 1;
            return -1;
        }
        x->host = h;
        x->cap = cap;
    }
    x->host[x->n++] = host;
    return 0;
}

/* prefix + number (zero-padded to width) + suffix */
static char *compose(const char *prefix, unsigned long v, int width, const char *suffix)
{
    int k = snprintf(NULL, 0, "%s%0*lu%s", prefix, width, v, suffix);
    char *b = k >= 0 ? malloc((size_t)k + 1) : NULL;
    if (b)
        snprintf(b, (size_t)k + 1, "%s%0*lu%s", prefix, width, v, suffix);
    return b;
}

/* A plain host name: kept as it is, unless its trailing digits overflow an
 * unsigned long, which Slurm clamps (the name would change). */
static int push_host(expansion *x, const char *name)
{
    size_t len = strlen(name), i = len;
    while (i > 0 && isdigit((unsigned char)name[i - 1]))
        i--;
    if (i < len) {
        errno = 0;
        unsigned long v = strtoul(name + i, NULL, 10);
        if (errno == ERANGE || v == ULONG_MAX)
            return refuse(x, "the number at the end of this host name is too large:", name);
    }
    return push(x, strdup(name));
}

/* One piece of a bracket group: "7", "01-03", "5-". */
static int parse_one(expansion *x, char *str, range *r)
{
    char *p, *q;
    char text[64];
    snprintf(text, sizeof text, "%s", str);
    if (strchr(str, 'x'))
        return refuse(x, "not a number or a range (Slurm allows no boxes here):", text);
    if ((p = strchr(str, '-'))) {
        *p++ = '\0';
        if (*p == '-')
            return refuse(x, "a negative number in the range", text);
    }
    r->width = (int)strlen(str);
    errno = 0;
    r->lo = strtoul(str, &q, 10);
    if (q == str)
        return refuse(x, *text ? "expected a number or a range, got" :
                                 "expected a number or a range, got an empty piece",
                      *text ? text : NULL);
    if (p && *p)
        r->hi = strtoul(p, &q, 10);
    else
        r->hi = r->lo;
    if (q == p || *q != '\0')
        return refuse(x, "expected a number or a range, got", text);
    if (errno == ERANGE || r->hi == ULONG_MAX)
        return refuse(x, "number too large in", text);
    if (r->lo > r->hi)
        return refuse(x, "the range goes backwards:", text);
    if (r->hi - r->lo + 1 > MAX_RANGE)
        return refuse(x, "more than 65536 hosts in the range", text);
    return 0;
}

/* "1-3,7,09-10" -> ranges; the count, or -1. */
static int parse_list(expansion *x, char *str, range **out)
{
    int n = 0, cap = 0;
    range *rs = NULL;
    while (str) {
        char *p = strchr(str, ',');
        if (p)
            *p++ = '\0';
        if (n == MAX_RANGES) {
            free(rs);
            return refuse(x, "too many ranges in one bracket group", NULL);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            range *t = realloc(rs, sizeof(range) * (size_t)cap);
            if (!t) {
                free(rs);
                return refuse(x, "out of memory", NULL);
            }
            rs = t;
        }
        if (parse_one(x, str, &rs[n++])) {
            free(rs);
            return -1;
        }
        str = p;
    }
    *out = rs;
    return n;
}

/* Expand the prefix groups of `prefix` from the right, then every range of
 * the item's last group.  0, or -1 on an error of the outermost group. */
static int push_ranges(expansion *x, char *prefix, const range *rs, int nr)
{
    char *p = strrchr(prefix, '['), *q = p ? strrchr(p, ']') : NULL;
    if (!q) {
        for (int k = 0; k < nr; k++)
            for (unsigned long v = rs[k].lo; v <= rs[k].hi; v++)
                if (push(x, compose(prefix, v, rs[k].width, "")))
                    return -2; /* out of memory or too many: always fatal */
        return 0;
    }
    *p++ = '\0';
    *q++ = '\0';
    int recurse = strrchr(prefix, '[') != NULL, rc = 0;
    range *pre = NULL;
    int np = parse_list(x, p, &pre);
    if (np < 0)
        return -1;
    unsigned long cnt = 0;
    for (int i = 0; i < np; i++) {
        cnt += pre[i].hi - pre[i].lo + 1;
        if (cnt > MAX_PREFIX_CNT) {
            free(pre);
            return refuse(x, "more than 65536 values in a prefix bracket group", NULL);
        }
        for (unsigned long v = pre[i].lo; v <= pre[i].hi; v++) {
            char *np_ = compose(prefix, v, pre[i].width, q);
            if (!np_) {
                free(pre);
                return refuse(x, "out of memory", NULL);
            }
            if (recurse) {
                int r1 = push_ranges(x, np_, rs, nr);
                if (r1 == -2) {
                    free(np_);
                    free(pre);
                    return -2;
                }
                /* Slurm keeps max(rc, r1): an error in here drops this part
                 * and the expansion goes on */
                if (r1 == -1) {
                    x->failed = 0;
                    fa4cp_clear_error();
                }
                rc = rc > r1 ? rc : r1;
            } else {
                for (int k = 0; k < nr; k++)
                    for (unsigned long w = rs[k].lo; w <= rs[k].hi; w++)
                        if (push(x, compose(np_, w, rs[k].width, ""))) {
                            free(np_);
                            free(pre);
                            return -2;
                        }
            }
            free(np_);
        }
    }
    free(pre);
    return rc < 0 ? 0 : rc;
}

/* The next item of *str (Slurm's _next_tok): separators ",", " ", tab are
 * skipped; a separator inside [...] belongs to the item.  NULL at the end. */
static char *next_item(char **str)
{
    static const char sep[] = "\t, ";
    while (**str && strchr(sep, **str))
        (*str)++;
    if (!**str)
        return NULL;
    char *tok = *str, *parse = tok;
    for (;;) {
        while (**str && !strchr(sep, **str))
            (*str)++;
        for (;;) {
            char *open = strchr(parse, '['), *close;
            if (!open || open > *str)
                goto done;
            close = strchr(parse, ']');
            if (!close || close < open)
                goto done;
            if (close < *str) {
                parse = close + 1;
                continue;
            }
            *str = close;
            break;
        }
    }
done:
    while (**str && strchr(sep, **str))
        *(*str)++ = '\0';
    return tok;
}

static void expansion_free(expansion *x)
{
    for (int i = 0; i < x->n; i++)
        free(x->host[i]);
    free(x->host);
    x->host = NULL;
    x->n = x->cap = 0;
}

static fa4cp_status expand(const char *expr, expansion *x)
{
    memset(x, 0, sizeof *x);
    x->expr = expr ? expr : "(null)";
    if (!expr)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist: NULL expression");
    char *copy = strdup(expr), *str = copy, *tok;
    if (!copy)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "hostlist: out of memory");
    while (!x->failed && (tok = next_item(&str))) {
        char *p = strrchr(tok, '[');
        if (!p) {
            push_host(x, tok);
            continue;
        }
        *p++ = '\0';
        char *q = strchr(p, ']');
        if (!q) { /* "n[1-2" is the host "n]" to Slurm */
            if (*tok) {
                size_t k = strlen(tok);
                char *h = malloc(k + 2);
                if (!h) {
                    refuse(x, "out of memory", NULL);
                    continue;
                }
                memcpy(h, tok, k);
                memcpy(h + k, "]", 2);
                push_host(x, h);
                free(h);
            } else {
                push_host(x, p);
            }
            continue;
        }
        if (q[1] != ',' && q[1] != '\0') {
            char what[64];
            snprintf(what, sizeof what, "%s", q + 1);
            refuse(x, "text after the last ']' of an item (Slurm refuses it):", what);
            break;
        }
        *q = '\0';
        range *rs = NULL;
        int nr = parse_list(x, p, &rs);
        if (nr >= 0 && push_ranges(x, tok, rs, nr) < 0 && !x->failed)
            refuse(x, "bad prefix bracket group", NULL);
        free(rs);
    }
    free(copy);
    if (x->failed) {
        expansion_free(x);
        return x->st ? x->st : FA4CP_ERR_INVALID;
    }
    return FA4CP_OK;
}

fa4cp_status fa4cp_hostlist_expand(const char *expr, char ***hosts, int *n)
{
    expansion x;
    if (!hosts || !n)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_hostlist_expand: NULL output");
    *hosts = NULL;
    *n = 0;
    fa4cp_status st = expand(expr, &x);
    if (st != FA4CP_OK)
        return st;
    *hosts = x.host;
    *n = x.n;
    return FA4CP_OK;
}

void fa4cp_hostlist_free(char **hosts, int n)
{
    for (int i = 0; i < n; i++)
        free(hosts[i]);
    free(hosts);
}

/* ------------------------------------------------------------------ node lists */

/* The last node list checked, per thread: nth() is called once per node. */
static _Thread_local char *cached_expr;
static _Thread_local char **cached_host;
static _Thread_local int cached_n;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static fa4cp_status node_list(const char *expr, char ***hosts, int *n)
{
    if (expr && cached_expr && !strcmp(expr, cached_expr)) {
        *hosts = cached_host;
        *n = cached_n;
        return FA4CP_OK;
    }
    char **h;
    int k;
    fa4cp_status st = fa4cp_hostlist_expand(expr, &h, &k);
    if (st != FA4CP_OK)
        return st;
    if (k == 0) {
        fa4cp_hostlist_free(h, k);
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s' names no host", expr);
    }
    for (int i = 0; i < k; i++)
        for (const unsigned char *c = (const unsigned char *)h[i]; *c; c++)
            if (*c == '[' || *c == ']' || *c <= ' ' || *c == 0x7f) {
                fa4cp_set_error(FA4CP_ERR_INVALID,
                                "hostlist '%s': host %d is '%s', which is no node name (Slurm "
                                "makes such names of an unmatched '[' or ']')",
                                expr, i, h[i]);
                fa4cp_hostlist_free(h, k);
                return FA4CP_ERR_INVALID;
            }
    char **sorted = malloc(sizeof(char *) * (size_t)k);
    if (!sorted) {
        fa4cp_hostlist_free(h, k);
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "hostlist: out of memory");
    }
    memcpy(sorted, h, sizeof(char *) * (size_t)k);
    qsort(sorted, (size_t)k, sizeof(char *), cmp_str);
    for (int i = 1; i < k; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) {
            fa4cp_set_error(FA4CP_ERR_INVALID,
                            "hostlist '%s' names node '%s' twice: a node list has each node once",
                            expr, sorted[i]);
            free(sorted);
            fa4cp_hostlist_free(h, k);
            return FA4CP_ERR_INVALID;
        }
    free(sorted);
    char *e = strdup(expr);
    if (e) {
        free(cached_expr);
        fa4cp_hostlist_free(cached_host, cached_n);
        cached_expr = e;
        cached_host = h;
        cached_n = k;
    }
    *hosts = h;
    *n = k;
    if (!e) /* not cached: the caller cannot free it, so keep it until the next call */
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "hostlist: out of memory");
    return FA4CP_OK;
}

fa4cp_status fa4cp_hostlist_count(const char *expr, int *count)
{
    char **h;
    int n;
    fa4cp_status st = node_list(expr, &h, &n);
    if (st == FA4CP_OK)
        *count = n;
    return st;
}

fa4cp_status fa4cp_hostlist_nth(const char *expr, int index, char *buf, size_t len)
{
    if (!buf || len == 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist: no output buffer");
    buf[0] = '\0';
    char **h;
    int n;
    fa4cp_status st = node_list(expr, &h, &n);
    if (st != FA4CP_OK)
        return st;
    if (index < 0 || index >= n)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s' has %d hosts; no host %d", expr,
                               n, index);
    if (strlen(h[index]) >= len)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "hostlist '%s': host name '%s' is longer than %zu characters",
                               expr, h[index], len - 1);
    memcpy(buf, h[index], strlen(h[index]) + 1);
    return FA4CP_OK;
}

fa4cp_status fa4cp_tasks_per_node_parse(const char *expr, int *counts, int max, int *n)
{
    if (!expr || !*expr)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "tasks per node: empty list");
    int k = 0;
    const char *p = expr;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1000000)
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "tasks per node '%s': expected a count at offset %d", expr,
                                   (int)(p - expr));
        long rep = 1;
        p = end;
        if (*p == '(') {
            if (p[1] != 'x')
                return fa4cp_set_error(FA4CP_ERR_INVALID,
                                       "tasks per node '%s': expected '(xN)' at offset %d", expr,
                                       (int)(p - expr));
            rep = strtol(p + 2, &end, 10);
            if (end == p + 2 || *end != ')' || rep <= 0)
                return fa4cp_set_error(FA4CP_ERR_INVALID,
                                       "tasks per node '%s': bad repeat at offset %d", expr,
                                       (int)(p - expr));
            p = end + 1;
        }
        for (long i = 0; i < rep; i++) {
            if (k >= max)
                return fa4cp_set_error(FA4CP_ERR_INVALID,
                                       "tasks per node '%s': more than %d nodes", expr, max);
            counts[k++] = (int)v;
        }
        if (*p == ',') {
            p++;
            if (!*p)
                return fa4cp_set_error(FA4CP_ERR_INVALID, "tasks per node '%s': trailing ','",
                                       expr);
        } else if (*p) {
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "tasks per node '%s': unexpected '%c' at offset %d", expr, *p,
                                   (int)(p - expr));
        }
    }
    *n = k;
    return FA4CP_OK;
}
