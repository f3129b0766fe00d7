/* layout.c - hierarchy-aware CP/DP groups: a pure function of the world table.
 *
 * Physical order is (node, local rank, rank).  Groups are cut from it in two
 * passes: first every node gives as many whole CP groups as it holds (so a
 * group stays inside one node whenever cp divides the node's tasks), then the
 * ranks left over are cut in physical order, so a group that must span nodes
 * spans consecutive ones and as few as possible.  Groups are numbered by their
 * first rank in physical order.  The ring of a group is its members in
 * physical order, so it visits each node's ranks consecutively and crosses
 * between nodes only where it must.
 */
#include "core/internal.h"
#include "core/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fa4cp_layout {
    int n, cp, ngroups;
    fa4cp_world_row *table; /* copy, by rank */
    int *cp_groups;         /* [ngroups * cp]: world ranks in ring order */
    int *dp_groups;         /* [cp * ngroups]: dp group d = cp rank d of every group */
    fa4cp_layout_place *place; /* [n] by rank */
    int *hops, *nodes;      /* [ngroups] */
    char *warning;
};

static _Thread_local const fa4cp_world_row *sort_table;

static int cmp_phys(const void *a, const void *b)
{
    const fa4cp_world_row *x = &sort_table[*(const int *)a], *y = &sort_table[*(const int *)b];
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    if (x->local_rank != y->local_rank)
        return x->local_rank < y->local_rank ? -1 : 1;
    return x->rank < y->rank ? -1 : (x->rank > y->rank);
}

typedef struct group_tmp {
    int first; /* physical position of the first member, for numbering */
    int *members;
} group_tmp;

static int cmp_group(const void *a, const void *b)
{
    const group_tmp *x = a, *y = b;
    return x->first < y->first ? -1 : (x->first > y->first);
}

/* Divisors of n as "1, 2, 4" into buf. */
static void divisors(int n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 1; d <= n && o + 16 < len; d++)
        if (n % d == 0)
            o += (size_t)snprintf(buf + o, len - o, "%s%d", o ? ", " : "", d);
}

static fa4cp_status check_table(const fa4cp_world_row *t, int n)
{
    fa4cp_status st = FA4CP_OK;
    for (int r = 0; r < n; r++) {
        if (t[r].rank != r)
            FA4CP_FAIL(FA4CP_ERR_INVALID, "world table: row %d holds rank %d (rows must be by rank)",
                       r, t[r].rank);
        if (t[r].node < 0 || t[r].local_rank < 0)
            FA4CP_FAIL(FA4CP_ERR_INVALID,
                       "world table: rank %d has node %d, local rank %d (must be >= 0)", r,
                       t[r].node, t[r].local_rank);
    }
out:
    return st;
}

/* Two ranks with one (node, local rank): neighbours in physical order
 * (phys sorted by node, local rank, rank), so O(n) after the sort.  Names
 * the pair a pairwise scan finds first: the lowest rank that repeats an
 * earlier one's place, and the first rank of that place. */
static fa4cp_status check_places(const fa4cp_world_row *t, const int *phys, int n)
{
    int q = -1, r = -1;
    for (int i = 0; i + 1 < n; i++) {
        const fa4cp_world_row *x = &t[phys[i]], *y = &t[phys[i + 1]];
        if (x->node == y->node && x->local_rank == y->local_rank && (r < 0 || y->rank < r)) {
            r = y->rank;
            int k = i;
            while (k > 0 && t[phys[k - 1]].node == x->node && t[phys[k - 1]].local_rank == x->local_rank)
                k--;
            q = t[phys[k]].rank;
        }
    }
    if (r >= 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "world table: ranks %d and %d both claim local rank %d of node %d", q, r,
                               t[r].local_rank, t[r].node);
    return FA4CP_OK;
}

static void append(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[512];
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    if ((size_t)k >= sizeof line)
        k = (int)sizeof line - 1;
    /* the buffer grows by doubling (capacity: the next power of two above
     * the length), so a text of n lines costs O(n), not O(n^2) copies */
    size_t need = *len + (size_t)k + 1, cap = 64;
    while (cap < *len + 1)
        cap *= 2;
    if (!*buf || need > cap) {
        while (cap < need)
            cap *= 2;
        char *nb = realloc(*buf, cap);
        if (!nb)
            return;
        *buf = nb;
    }
    memcpy(*buf + *len, line, (size_t)k + 1);
    *len += (size_t)k;
}

fa4cp_status fa4cp_layout_build(const fa4cp_world_row *table, int n, int cp, int is_a2a,
                                int allow_cross_node_a2a, fa4cp_layout **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_layout *l = NULL;
    int *phys = NULL, *used = NULL;
    group_tmp *gt = NULL;
    char *warn = NULL;
    size_t warnlen = 0;

    if (!out)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_layout_build: out is NULL");
    *out = NULL;
    if (!table || n <= 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_layout_build: empty world table (%d ranks)", n);
    if (cp <= 0)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "cp = %d: the CP size must be at least 1", cp);
    if (n % cp != 0) {
        char d[256];
        divisors(n, d, sizeof d);
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "world size %d is not divisible by cp = %d: use cp in {%s}, or %d ranks", n,
                   cp, d, (n / cp + 1) * cp);
    }
    FA4CP_TRY(check_table(table, n));

    int ng = n / cp;
    l = calloc(1, sizeof *l);
    phys = malloc(sizeof(int) * (size_t)n);
    used = calloc((size_t)n, sizeof(int));
    gt = calloc((size_t)ng, sizeof *gt);
    if (!l || !phys || !used || !gt)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout of %d ranks: out of memory", n);
    l->n = n;
    l->cp = cp;
    l->ngroups = ng;
    l->table = malloc(sizeof(fa4cp_world_row) * (size_t)n);
    l->cp_groups = malloc(sizeof(int) * (size_t)n);
    l->dp_groups = malloc(sizeof(int) * (size_t)n);
    l->place = calloc((size_t)n, sizeof(fa4cp_layout_place));
    l->hops = calloc((size_t)ng, sizeof(int));
    l->nodes = calloc((size_t)ng, sizeof(int));
    if (!l->table || !l->cp_groups || !l->dp_groups || !l->place || !l->hops || !l->nodes)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout of %d ranks: out of memory", n);
    memcpy(l->table, table, sizeof(fa4cp_world_row) * (size_t)n);

    for (int i = 0; i < n; i++)
        phys[i] = i;
    sort_table = table; /* qsort has no context argument (thread-local, so threads may build) */
    qsort(phys, (size_t)n, sizeof(int), cmp_phys);
    FA4CP_TRY(check_places(table, phys, n));

    /* pass 1: whole groups inside each node */
    int g = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && table[phys[j]].node == table[phys[i]].node)
            j++;
        for (int k = i; k + cp <= j; k += cp) {
            gt[g].first = k;
            gt[g].members = l->cp_groups + (size_t)g * cp;
            for (int m = 0; m < cp; m++) {
                gt[g].members[m] = phys[k + m];
                used[k + m] = 1;
            }
            g++;
        }
        i = j;
    }
    /* pass 2: the rest in physical order */
    int fill = 0;
    for (int i = 0; i < n; i++) {
        if (used[i])
            continue;
        if (fill == 0) {
            gt[g].first = i;
            gt[g].members = l->cp_groups + (size_t)g * cp;
        }
        gt[g].members[fill++] = phys[i];
        if (fill == cp) {
            fill = 0;
            g++;
        }
    }
    if (g != ng || fill != 0)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "layout: built %d groups (+%d), expected %d", g, fill, ng);

    /* number groups by their first member in physical order */
    {
        int *copy = malloc(sizeof(int) * (size_t)n);
        if (!copy)
            FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout of %d ranks: out of memory", n);
        memcpy(copy, l->cp_groups, sizeof(int) * (size_t)n);
        for (int k = 0; k < ng; k++)
            gt[k].members = copy + (gt[k].members - l->cp_groups);
        qsort(gt, (size_t)ng, sizeof *gt, cmp_group);
        for (int k = 0; k < ng; k++)
            memcpy(l->cp_groups + (size_t)k * cp, gt[k].members, sizeof(int) * (size_t)cp);
        free(copy);
    }

    for (int k = 0; k < ng; k++) {
        const int *m = l->cp_groups + (size_t)k * cp;
        int hops = 0, nodes = 1;
        for (int i = 0; i < cp; i++) {
            fa4cp_layout_place *p = &l->place[m[i]];
            p->cp_group = k;
            p->cp_rank = i;
            p->ring_prev = m[(i + cp - 1) % cp];
            p->ring_next = m[(i + 1) % cp];
            p->dp_group = i;
            p->dp_rank = k;
            l->dp_groups[(size_t)i * ng + k] = m[i];
            if (cp > 1 && table[m[i]].node != table[m[(i + 1) % cp]].node)
                hops++;
            if (i > 0 && table[m[i]].node != table[m[i - 1]].node)
                nodes++;
        }
        l->hops[k] = hops;
        l->nodes[k] = nodes;
        if (is_a2a && nodes > 1 && !allow_cross_node_a2a) {
            /* a member on a node holding k of the group's ranks sends (cp-k)/cp of its
             * all-to-all bytes to other nodes */
            double off = 0;
            for (int i = 0; i < cp;) { /* members in physical order: each node's are one run */
                int j = i;
                while (j < cp && table[m[j]].node == table[m[i]].node)
                    j++;
                off += (double)(j - i) * (cp - (j - i)) / cp;
                i = j;
            }
            off /= cp;
            append(&warn, &warnlen,
                   "a2a group %d (ranks %d..) spans %d nodes: %.0f%% of every all-to-all's bytes "
                   "cross nodes (inter-node bandwidth instead of NVLink); use cp <= %d, "
                   "p2p, or allow it in the workload\n",
                   k, m[0], nodes, 100.0 * off, table[m[0]].local_size);
        }
    }
    l->warning = warn ? warn : strdup("");
    warn = NULL;
    if (!l->warning)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout: out of memory");
    *out = l;
    l = NULL;
out:
    free(phys);
    free(used);
    free(gt);
    free(warn);
    fa4cp_layout_destroy(l);
    return st;
}

void fa4cp_layout_destroy(fa4cp_layout *l)
{
    if (!l)
        return;
    free(l->table);
    free(l->cp_groups);
    free(l->dp_groups);
    free(l->place);
    free(l->hops);
    free(l->nodes);
    free(l->warning);
    free(l);
}

int fa4cp_layout_size(const fa4cp_layout *l) { return l ? l->n : 0; }
int fa4cp_layout_cp(const fa4cp_layout *l) { return l ? l->cp : 0; }
int fa4cp_layout_cp_groups(const fa4cp_layout *l) { return l ? l->ngroups : 0; }
const fa4cp_world_row *fa4cp_layout_table(const fa4cp_layout *l) { return l ? l->table : NULL; }
const char *fa4cp_layout_warning(const fa4cp_layout *l) { return l ? l->warning : ""; }

fa4cp_status fa4cp_layout_place_of(const fa4cp_layout *l, int rank, fa4cp_layout_place *out)
{
    if (!l || !out || rank < 0 || rank >= l->n)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "layout: no rank %d (world size %d)", rank,
                               l ? l->n : 0);
    *out = l->place[rank];
    return FA4CP_OK;
}

const int *fa4cp_layout_cp_group(const fa4cp_layout *l, int g)
{
    if (!l || g < 0 || g >= l->ngroups)
        return NULL;
    return l->cp_groups + (size_t)g * l->cp;
}

const int *fa4cp_layout_dp_group(const fa4cp_layout *l, int d)
{
    if (!l || d < 0 || d >= l->cp)
        return NULL;
    return l->dp_groups + (size_t)d * l->ngroups;
}

int fa4cp_layout_hops(const fa4cp_layout *l, int g)
{
    return (l && g >= 0 && g < l->ngroups) ? l->hops[g] : -1;
}

int fa4cp_layout_group_nodes(const fa4cp_layout *l, int g)
{
    return (l && g >= 0 && g < l->ngroups) ? l->nodes[g] : -1;
}

/* ------------------------------------------------------------------ printing */

/* A string as JSON text (jansson encodes it; invalid UTF-8 becomes U+FFFD),
 * appended whatever its length. */
static void append_json_str(char **b, size_t *len, const char *s)
{
    json_t *v = fa4cp_json_string_lossy(s, NULL);
    char *t = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!t)
        return;
    size_t k = strlen(t);
    for (size_t at = 0; at < k; at += 256) /* append() takes up to 511 bytes at a time */
        append(b, len, "%.256s", t + at);
    free(t);
}

/* The layout as JSON, the shape fa4cp_json_rows gives (one line per rank,
 * group and warning), written row by row: a jansson tree of 131072 ranks
 * cost 2.5 s and 330 MB, this costs 0.3 s (strings still go through
 * jansson, each distinct host once). */
static void layout_json_text(const fa4cp_layout *l, const char *source, int nodes, char **b, size_t *len)
{
    append(b, len, "{\n");
    if (source) {
        append(b, len, "  \"source\": ");
        append_json_str(b, len, source);
        append(b, len, ",\n");
    }
    append(b, len, "  \"world_size\": %d,\n  \"nodes\": %d,\n  \"cp\": %d,\n  \"ranks\": [\n", l->n, nodes, l->cp);
    char *host = NULL, *gpu = NULL; /* the last host and GPU id as JSON */
    size_t hlen = 0, glen = 0;
    const char *last_host = NULL, *last_gpu = NULL;
    for (int r = 0; r < l->n; r++) {
        const fa4cp_world_row *w = &l->table[r];
        const fa4cp_layout_place *p = &l->place[r];
        if (!last_host || strcmp(last_host, w->host)) {
            free(host);
            host = NULL;
            hlen = 0;
            append_json_str(&host, &hlen, w->host);
            last_host = w->host;
        }
        if (!last_gpu || strcmp(last_gpu, w->gpu_id)) {
            free(gpu);
            gpu = NULL;
            glen = 0;
            append_json_str(&gpu, &glen, w->gpu_id);
            last_gpu = w->gpu_id;
        }
        append(b, len, "    {\"rank\": %d, \"host\": ", r);
        for (size_t at = 0; host && at < hlen; at += 256)
            append(b, len, "%.256s", host + at);
        append(b, len, ", \"node\": %d, \"local_rank\": %d, \"local_size\": %d, \"gpu\": %d, \"gpu_id\": ", w->node,
               w->local_rank, w->local_size, w->gpu);
        for (size_t at = 0; gpu && at < glen; at += 256)
            append(b, len, "%.256s", gpu + at);
        append(b, len,
               ", \"cp_group\": %d, \"cp_rank\": %d, \"ring_prev\": %d, \"ring_next\": %d, \"dp_group\": %d, "
               "\"dp_rank\": %d}%s\n",
               p->cp_group, p->cp_rank, p->ring_prev, p->ring_next, p->dp_group, p->dp_rank, r + 1 < l->n ? "," : "");
    }
    free(host);
    free(gpu);
    append(b, len, "  ],\n  \"cp_groups\": [\n");
    for (int g = 0; g < l->ngroups; g++) {
        append(b, len, "    {\"group\": %d, \"ring\": [", g);
        for (int i = 0; i < l->cp; i++)
            append(b, len, "%s%d", i ? ", " : "", l->cp_groups[(size_t)g * l->cp + i]);
        append(b, len, "], \"nodes\": %d, \"inter_node_hops\": %d}%s\n", l->nodes[g], l->hops[g],
               g + 1 < l->ngroups ? "," : "");
    }
    append(b, len, "  ],\n  \"dp_groups\": [\n");
    for (int d = 0; d < l->cp; d++) {
        append(b, len, "    {\"group\": %d, \"ranks\": [", d);
        for (int i = 0; i < l->ngroups; i++)
            append(b, len, "%s%d", i ? ", " : "", l->dp_groups[(size_t)d * l->ngroups + i]);
        append(b, len, "]}%s\n", d + 1 < l->cp ? "," : "");
    }
    append(b, len, "  ],\n  \"warnings\": [");
    for (const char *w = l->warning, *first = w; *w;) {
        const char *nl = strchr(w, '\n');
        size_t k = nl ? (size_t)(nl - w) : strlen(w);
        char *line = strndup(w, k);
        append(b, len, "%s", w == first ? "" : ", ");
        append_json_str(b, len, line ? line : "");
        free(line);
        w += k + (nl ? 1 : 0);
    }
    append(b, len, "]\n}\n");
}

fa4cp_status fa4cp_layout_format(const fa4cp_layout *l, const char *source, int json, char **text)
{
    fa4cp_status st = FA4CP_OK;
    char *b = NULL;
    size_t len = 0;
    if (!l || !text)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_layout_format: NULL argument");
    *text = NULL;
    int nodes = 0;
    for (int r = 0; r < l->n; r++)
        if (l->table[r].node + 1 > nodes)
            nodes = l->table[r].node + 1;
    if (json) {
        layout_json_text(l, source, nodes, &b, &len);
    } else {
        int hw = 4;
        for (int r = 0; r < l->n; r++) {
            int k = (int)strlen(l->table[r].host);
            if (k > hw)
                hw = k;
        }
        append(&b, &len, "# fa4cp-layout: %d ranks on %d node%s, cp %d: %d CP group%s%s%s\n",
               l->n, nodes, nodes == 1 ? "" : "s", l->cp, l->ngroups, l->ngroups == 1 ? "" : "s",
               source ? ", from " : "", source ? source : "");
        append(&b, &len, "# %4s  %-*s  %4s  %5s  %4s  %8s  %7s  %4s  %4s  %8s\n", "rank", hw, "host",
               "node", "local", "gpu", "cp_group", "cp_rank", "prev", "next", "dp_group");
        for (int r = 0; r < l->n; r++) {
            const fa4cp_world_row *w = &l->table[r];
            const fa4cp_layout_place *p = &l->place[r];
            char gpu[16];
            if (w->gpu >= 0)
                snprintf(gpu, sizeof gpu, "%d", w->gpu);
            else
                snprintf(gpu, sizeof gpu, "-");
            append(&b, &len, "  %4d  %-*s  %4d  %5d  %4s  %8d  %7d  %4d  %4d  %8d\n", r, hw,
                   w->host, w->node, w->local_rank, gpu, p->cp_group, p->cp_rank, p->ring_prev,
                   p->ring_next, p->dp_group);
        }
        append(&b, &len, "# %8s  %5s  %15s  %s\n", "cp_group", "nodes", "inter_node_hops",
               "ring (world ranks)");
        for (int g = 0; g < l->ngroups; g++) {
            append(&b, &len, "  %8d  %5d  %15d  ", g, l->nodes[g], l->hops[g]);
            for (int i = 0; i < l->cp; i++)
                append(&b, &len, "%s%d", i ? " -> " : "", l->cp_groups[(size_t)g * l->cp + i]);
            append(&b, &len, "\n");
        }
        append(&b, &len, "# %8s  %s\n", "dp_group", "ranks (equal CP rank)");
        for (int d = 0; d < l->cp; d++) {
            append(&b, &len, "  %8d  ", d);
            for (int i = 0; i < l->ngroups; i++)
                append(&b, &len, "%s%d", i ? " " : "", l->dp_groups[(size_t)d * l->ngroups + i]);
            append(&b, &len, "\n");
        }
    }
    if (!b)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout: out of memory while printing");
    {
        size_t k = strlen(b);
        *text = fa4cp_malloc(k + 1, "layout text");
        if (!*text)
            FA4CP_FAIL(FA4CP_ERR_NOMEM, "layout: out of memory while printing");
        memcpy(*text, b, k + 1);
    }
out:
    free(b);
    return st;
}
