/* hostlist.c - Slurm hostlist expressions and task-count lists.
 *
 * A hostlist is a comma-separated list of items; an item is literal text with
 * any number of bracket groups, each a comma-separated list of numbers or
 * ranges ("node[01-03,07]", "rack[1-2]-gpu[0-1]").  A range keeps the zero
 * padding of its lower bound.  With several bracket groups the last one varies
 * fastest, as Slurm expands them.  Only what SLURM_STEP_NODELIST and
 * SLURM_JOB_NODELIST contain is needed; anything else is a syntax error that
 * says where.
 */
#include "core/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANGE 100000 /* hosts in one range: far beyond any real cluster */

/* Where the item starting at s ends (a top-level ',' or NUL). */
static const char *item_end(const char *s)
{
    int depth = 0;
    for (; *s; s++) {
        if (*s == '[')
            depth++;
        else if (*s == ']')
            depth--;
        else if (*s == ',' && depth == 0)
            break;
    }
    return s;
}

/* Parse one number of a range list: digits only. */
static int parse_num(const char *expr, const char **p, const char *end, long *v, int *width)
{
    const char *q = *p;
    long x = 0;
    int w = 0;
    while (q < end && isdigit((unsigned char)*q)) {
        x = x * 10 + (*q - '0');
        if (x > 1000000000L) {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': number too large at offset %d",
                            expr, (int)(q - expr));
            return -1;
        }
        q++;
        w++;
    }
    if (w == 0) {
        fa4cp_set_error(FA4CP_ERR_INVALID,
                        "hostlist '%s': expected a number at offset %d, found '%c'", expr,
                        (int)(q - expr), q < end ? *q : ' ');
        return -1;
    }
    *p = q;
    *v = x;
    *width = w;
    return 0;
}

/* Visit the bracket group [b, e) (without the brackets): count its members,
 * or when want >= 0 write member `want` into out.  Returns the count or -1. */
static long group_walk(const char *expr, const char *b, const char *e, long want, char *out,
                       size_t outlen)
{
    long count = 0;
    const char *p = b;
    if (p == e) {
        fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': empty brackets at offset %d", expr,
                        (int)(b - expr - 1));
        return -1;
    }
    while (p < e) {
        long lo, hi;
        int wlo, whi;
        if (parse_num(expr, &p, e, &lo, &wlo) != 0)
            return -1;
        hi = lo;
        if (p < e && *p == '-') {
            p++;
            if (parse_num(expr, &p, e, &hi, &whi) != 0)
                return -1;
            if (hi < lo) {
                fa4cp_set_error(FA4CP_ERR_INVALID,
                                "hostlist '%s': range %ld-%ld goes backwards (offset %d)", expr,
                                lo, hi, (int)(p - expr));
                return -1;
            }
            if (hi - lo >= MAX_RANGE) {
                fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': range %ld-%ld is too large",
                                expr, lo, hi);
                return -1;
            }
        }
        if (p < e && *p != ',') {
            fa4cp_set_error(FA4CP_ERR_INVALID,
                            "hostlist '%s': unexpected '%c' at offset %d (want ',', '-' or ']')",
                            expr, *p, (int)(p - expr));
            return -1;
        }
        if (p < e)
            p++; /* ',' */
        if (want >= count && want <= count + (hi - lo))
            snprintf(out, outlen, "%0*ld", wlo, lo + (want - count));
        count += hi - lo + 1;
    }
    return count;
}

/* Count the hosts of the item [s, e), or write host `want` into out. */
static long item_walk(const char *expr, const char *s, const char *e, long want, char *out,
                      size_t outlen)
{
    /* first pass: the size of every bracket group and the total */
    long total = 1;
    int groups = 0;
    for (const char *p = s; p < e; p++) {
        if (*p == ']') {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': unmatched ']' at offset %d", expr,
                            (int)(p - expr));
            return -1;
        }
        if (*p != '[')
            continue;
        const char *c = memchr(p, ']', (size_t)(e - p));
        if (!c) {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': unmatched '[' at offset %d", expr,
                            (int)(p - expr));
            return -1;
        }
        if (memchr(p + 1, '[', (size_t)(c - p - 1))) {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': nested '[' at offset %d", expr,
                            (int)(p - expr));
            return -1;
        }
        char dummy[2];
        long n = group_walk(expr, p + 1, c, -1, dummy, sizeof dummy);
        if (n < 0)
            return -1;
        total *= n;
        if (total > 10 * MAX_RANGE) {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': too many hosts", expr);
            return -1;
        }
        groups++;
        p = c;
    }
    if (s == e) {
        fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': empty host name at offset %d", expr,
                        (int)(s - expr));
        return -1;
    }
    if (want < 0)
        return total;

    /* second pass: build host `want`; the last group varies fastest, so peel
     * indices from the right */
    long idx[64];
    long sizes[64];
    if (groups > 64) {
        fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': too many bracket groups", expr);
        return -1;
    }
    int g = 0;
    for (const char *p = s; p < e; p++) {
        if (*p != '[')
            continue;
        const char *c = memchr(p, ']', (size_t)(e - p));
        char dummy[2];
        sizes[g++] = group_walk(expr, p + 1, c, -1, dummy, sizeof dummy);
        p = c;
    }
    long rest = want;
    for (int i = groups - 1; i >= 0; i--) {
        idx[i] = rest % sizes[i];
        rest /= sizes[i];
    }
    size_t o = 0;
    g = 0;
    out[0] = '\0';
    for (const char *p = s; p < e; p++) {
        if (*p == '[') {
            const char *c = memchr(p, ']', (size_t)(e - p));
            char num[32];
            group_walk(expr, p + 1, c, idx[g++], num, sizeof num);
            size_t l = strlen(num);
            if (o + l + 1 > outlen)
                goto toolong;
            memcpy(out + o, num, l);
            o += l;
            p = c;
        } else {
            if (o + 2 > outlen)
                goto toolong;
            out[o++] = *p;
        }
        out[o] = '\0';
    }
    return total;
toolong:
    fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': host name longer than %zu characters",
                    expr, outlen - 1);
    return -1;
}

/* Walk the whole expression: count hosts, or find host `want`. */
static long walk(const char *expr, long want, char *out, size_t outlen)
{
    if (!expr) {
        fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist: NULL expression");
        return -1;
    }
    long total = 0;
    const char *s = expr;
    if (*s == '\0') {
        fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist is empty");
        return -1;
    }
    for (;;) {
        const char *e = item_end(s);
        long n = item_walk(expr, s, e, -1, out, outlen);
        if (n < 0)
            return -1;
        if (want >= total && want < total + n) {
            if (item_walk(expr, s, e, want - total, out, outlen) < 0)
                return -1;
            return total + n;
        }
        total += n;
        if (*e == '\0')
            break;
        s = e + 1;
        if (*s == '\0') {
            fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s': trailing ','", expr);
            return -1;
        }
    }
    return total;
}

fa4cp_status fa4cp_hostlist_count(const char *expr, int *count)
{
    char dummy[2];
    long n = walk(expr, -1, dummy, sizeof dummy);
    if (n < 0)
        return FA4CP_ERR_INVALID;
    *count = (int)n;
    return FA4CP_OK;
}

fa4cp_status fa4cp_hostlist_nth(const char *expr, int index, char *buf, size_t len)
{
    if (!buf || len == 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist: no output buffer");
    buf[0] = '\0';
    int n;
    fa4cp_status st = fa4cp_hostlist_count(expr, &n);
    if (st != FA4CP_OK)
        return st;
    if (index < 0 || index >= n)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "hostlist '%s' has %d hosts; no host %d", expr,
                               n, index);
    if (walk(expr, index, buf, len) < 0)
        return FA4CP_ERR_INVALID;
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
