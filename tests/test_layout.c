/* test_layout.c - CP/DP groups from made-up world tables. */
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first pair of ranks on one node and GPU, the way a pairwise scan finds
 * it (the reference for the O(n log n) check); 0 when none. */
static int gpu_pair_ref(const fa4cp_world_row *t, int n, int *a, int *b)
{
    for (int x = 0; x < n; x++) {
        if (t[x].gpu < 0 || t[x].gpu_exclusive)
            continue;
        for (int y = x + 1; y < n; y++)
            if (t[y].gpu >= 0 && !t[y].gpu_exclusive && t[y].node == t[x].node && !strcmp(t[x].gpu_id, t[y].gpu_id)) {
                *a = x;
                *b = y;
                return 1;
            }
    }
    return 0;
}

/* Slurm's placement, the plain way (the reference for fa4cp_world_plan):
 * block fills node after node; cyclic deals ranks round the nodes that still
 * have room. */
static void place_ref(int nodes, const int *counts, int cyclic, int *node_of, int *local_of)
{
    int *filled = calloc((size_t)nodes, sizeof(int)), total = 0, node = 0;
    for (int i = 0; i < nodes; i++)
        total += counts[i];
    for (int r = 0; r < total; r++) {
        if (!cyclic) {
            while (filled[node] == counts[node])
                node++;
        } else {
            while (filled[node] == counts[node])
                node = (node + 1) % nodes;
        }
        node_of[r] = node;
        local_of[r] = filled[node]++;
        if (cyclic)
            node = (node + 1) % nodes;
    }
    free(filled);
}

/* Every invariant of a layout; returns 1 when all hold (diagnostics otherwise). */
static int invariants(const fa4cp_layout *l, const fa4cp_world_row *t, int n, int cp)
{
    int good = 1, ng = n / cp;
    int *seen = calloc((size_t)n, sizeof(int));
    if (fa4cp_layout_size(l) != n || fa4cp_layout_cp(l) != cp || fa4cp_layout_cp_groups(l) != ng) {
        diag("sizes: %d %d %d", fa4cp_layout_size(l), fa4cp_layout_cp(l), fa4cp_layout_cp_groups(l));
        good = 0;
    }
    for (int g = 0; g < ng; g++) {
        const int *m = fa4cp_layout_cp_group(l, g);
        int runs = 1, hops = 0;
        for (int i = 0; i < cp; i++) {
            fa4cp_layout_place p;
            seen[m[i]]++;
            fa4cp_layout_place_of(l, m[i], &p);
            if (p.cp_group != g || p.cp_rank != i || p.ring_next != m[(i + 1) % cp] ||
                p.ring_prev != m[(i + cp - 1) % cp] || p.dp_group != i || p.dp_rank != g) {
                diag("rank %d: place (%d,%d) prev %d next %d dp (%d,%d)", m[i], p.cp_group,
                     p.cp_rank, p.ring_prev, p.ring_next, p.dp_group, p.dp_rank);
                good = 0;
            }
            if (i > 0) {
                /* physical order inside the ring: node, then local rank */
                const fa4cp_world_row *a = &t[m[i - 1]], *b = &t[m[i]];
                if (a->node > b->node || (a->node == b->node && a->local_rank >= b->local_rank)) {
                    diag("group %d: ring not in physical order at %d -> %d", g, m[i - 1], m[i]);
                    good = 0;
                }
                if (a->node != b->node)
                    runs++;
            }
            if (cp > 1 && t[m[i]].node != t[m[(i + 1) % cp]].node)
                hops++;
        }
        if (runs != fa4cp_layout_group_nodes(l, g) || hops != fa4cp_layout_hops(l, g)) {
            diag("group %d: nodes %d/%d hops %d/%d", g, runs, fa4cp_layout_group_nodes(l, g), hops,
                 fa4cp_layout_hops(l, g));
            good = 0;
        }
    }
    for (int r = 0; r < n; r++)
        if (seen[r] != 1) {
            diag("rank %d is in %d CP groups", r, seen[r]);
            good = 0;
        }
    memset(seen, 0, sizeof(int) * (size_t)n);
    for (int d = 0; d < cp; d++) {
        const int *m = fa4cp_layout_dp_group(l, d);
        for (int i = 0; i < ng; i++) {
            fa4cp_layout_place p;
            fa4cp_layout_place_of(l, m[i], &p);
            seen[m[i]]++;
            if (p.cp_rank != d || p.cp_group != i) {
                diag("dp group %d member %d: cp rank %d group %d", d, m[i], p.cp_rank, p.cp_group);
                good = 0;
            }
        }
    }
    for (int r = 0; r < n; r++)
        if (seen[r] != 1) {
            diag("rank %d is in %d DP groups", r, seen[r]);
            good = 0;
        }
    free(seen);
    return good;
}

/* The groups as "0 1|2 3" for exact checks. */
static void groups_str(const fa4cp_layout *l, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int g = 0; g < fa4cp_layout_cp_groups(l); g++) {
        const int *m = fa4cp_layout_cp_group(l, g);
        for (int i = 0; i < fa4cp_layout_cp(l); i++)
            o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? " " : (g ? "|" : ""), m[i]);
    }
}

static fa4cp_layout *plan_layout(int nodes, const int *counts, const char *dist, int cp, int a2a,
                                 fa4cp_world_row **tout, int *nout)
{
    fa4cp_world_row *t = NULL;
    int n = 0;
    fa4cp_layout *l = NULL;
    if (fa4cp_world_plan(nodes, 0, counts, dist, -1, &t, &n) != FA4CP_OK) {
        diag("plan: %s", fa4cp_last_error());
        return NULL;
    }
    if (fa4cp_layout_build(t, n, cp, a2a, 0, &l) != FA4CP_OK)
        diag("layout: %s", fa4cp_last_error());
    *tout = t;
    *nout = n;
    return l;
}

static void check_case(const char *name, int nodes, const int *counts, const char *dist, int cp,
                       const char *want)
{
    fa4cp_world_row *t = NULL;
    int n = 0;
    fa4cp_layout *l = plan_layout(nodes, counts, dist, cp, 0, &t, &n);
    ok(l != NULL, "%s: builds", name);
    if (l) {
        ok(invariants(l, t, n, cp), "%s: invariants", name);
        if (want) {
            char got[4096];
            groups_str(l, got, sizeof got);
            is_string(got, want, "%s: groups", name);
        }
    }
    fa4cp_layout_destroy(l);
    fa4cp_free(t);
}

int main(void)
{
    plan(0);
    int c4x8[] = {8, 8, 8, 8}, c2x2[] = {2, 2}, c31[] = {3, 1}, c1[] = {8}, c242[] = {2, 4, 2};
    int c32x4[32];
    for (int i = 0; i < 32; i++)
        c32x4[i] = 4;

    /* block placement: groups are consecutive ranks inside nodes */
    check_case("block 4x8 cp8", 4, c4x8, "block", 8,
               "0 1 2 3 4 5 6 7|8 9 10 11 12 13 14 15|16 17 18 19 20 21 22 23|24 25 26 27 28 29 30 31");
    check_case("block 4x8 cp4", 4, c4x8, "block", 4, NULL);
    check_case("block 4x8 cp16", 4, c4x8, "block", 16, NULL);
    /* cyclic: ranks 0,2 live on node 0 and 1,3 on node 1: groups follow the nodes */
    check_case("cyclic 2x2 cp2", 2, c2x2, "cyclic", 2, "0 2|1 3");
    check_case("cyclic 2x2 cp4", 2, c2x2, "cyclic", 4, "0 2 1 3");
    check_case("cyclic 4x8 cp8", 4, c4x8, "cyclic", 8,
               "0 4 8 12 16 20 24 28|1 5 9 13 17 21 25 29|2 6 10 14 18 22 26 30|3 7 11 15 19 23 27 31");
    check_case("cyclic 4x8 cp16", 4, c4x8, "cyclic", 16, NULL);
    /* uneven 3+1 */
    check_case("uneven 3+1 cp2", 2, c31, "block", 2, "0 1|2 3");
    check_case("uneven 3+1 cyclic cp2", 2, c31, "cyclic", 2, NULL);
    check_case("uneven 3+1 cp4", 2, c31, "block", 4, "0 1 2 3");
    /* one node */
    check_case("one node cp8", 1, c1, "block", 8, "0 1 2 3 4 5 6 7");
    check_case("one node cp2", 1, c1, "block", 2, "0 1|2 3|4 5|6 7");
    check_case("one node cp1", 1, c1, "block", 1, NULL);
    /* many nodes */
    check_case("32x4 cp4", 32, c32x4, "block", 4, NULL);
    check_case("32x4 cp8", 32, c32x4, "cyclic", 8, NULL);
    check_case("32x4 cp128", 32, c32x4, "block", 128, NULL);
    /* a whole node is taken before leftovers are mixed: 2+4+2 with cp 4 */
    check_case("2+4+2 cp4", 3, c242, "block", 4, "0 1 6 7|2 3 4 5");

    /* node-local whenever cp divides the tasks per node */
    {
        fa4cp_world_row *t;
        int n, one = 1;
        fa4cp_layout *l = plan_layout(4, c4x8, "cyclic", 4, 0, &t, &n);
        for (int g = 0; l && g < fa4cp_layout_cp_groups(l); g++)
            one &= fa4cp_layout_group_nodes(l, g) == 1 && fa4cp_layout_hops(l, g) == 0;
        ok(l && one, "cp 4 divides 8 tasks per node: every group inside one node, 0 hops");
        fa4cp_layout_destroy(l);
        fa4cp_free(t);
        l = plan_layout(4, c4x8, "block", 16, 0, &t, &n);
        int two = 1;
        for (int g = 0; l && g < fa4cp_layout_cp_groups(l); g++)
            two &= fa4cp_layout_group_nodes(l, g) == 2 && fa4cp_layout_hops(l, g) == 2;
        ok(l && two, "cp 16 over 8 tasks per node: every group spans 2 nodes, 2 ring hops");
        fa4cp_layout_destroy(l);
        fa4cp_free(t);
    }

    /* world % cp */
    {
        fa4cp_world_row *t;
        int n;
        fa4cp_layout *l = NULL;
        fa4cp_world_plan(1, 6, NULL, "block", 0, &t, &n);
        ok(fa4cp_layout_build(t, n, 4, 0, 0, &l) == FA4CP_ERR_INVALID && !l, "6 ranks, cp 4: refused");
        like(fa4cp_last_error(), "world size 6 is not divisible by cp = 4", "message: sizes");
        like(fa4cp_last_error(), "{1, 2, 3, 6}", "message: the cp that work");
        ok(fa4cp_layout_build(t, n, 0, 0, 0, &l) == FA4CP_ERR_INVALID, "cp 0 refused");
        fa4cp_free(t);
    }

    /* a2a across nodes: a warning with its cost, silenced when allowed */
    {
        fa4cp_world_row *t;
        int n;
        fa4cp_layout *l = plan_layout(2, c2x2, "block", 4, 1, &t, &n);
        ok(l && strstr(fa4cp_layout_warning(l), "a2a group 0") != NULL, "a2a over 2 nodes warns");
        like(l ? fa4cp_layout_warning(l) : "", "50% of every all-to-all's bytes cross nodes",
             "warning gives the cost");
        fa4cp_layout_destroy(l);
        l = NULL;
        ok(fa4cp_layout_build(t, n, 4, 1, 1, &l) == FA4CP_OK && !*fa4cp_layout_warning(l),
           "allowed: no warning");
        fa4cp_layout_destroy(l);
        l = NULL;
        ok(fa4cp_layout_build(t, n, 2, 1, 0, &l) == FA4CP_OK && !*fa4cp_layout_warning(l),
           "a2a inside nodes: no warning");
        fa4cp_layout_destroy(l);
        l = NULL;
        ok(fa4cp_layout_build(t, n, 4, 0, 0, &l) == FA4CP_OK && !*fa4cp_layout_warning(l),
           "p2p across nodes: no warning");
        fa4cp_layout_destroy(l);
        fa4cp_free(t);
    }

    /* a table with ids that are not by rank or that collide */
    {
        fa4cp_world_row t[2];
        memset(t, 0, sizeof t);
        t[0].rank = 0;
        t[1].rank = 1;
        fa4cp_layout *l = NULL;
        ok(fa4cp_layout_build(t, 2, 1, 0, 0, &l) == FA4CP_ERR_INVALID, "duplicate local rank refused");
        like(fa4cp_last_error(), "ranks 0 and 1 both claim local rank 0 of node 0", "message names both");
        t[1].local_rank = 1;
        t[1].rank = 5;
        ok(fa4cp_layout_build(t, 2, 1, 0, 0, &l) == FA4CP_ERR_INVALID, "row out of rank order refused");
    }

    /* GPUs: two ranks of one node on one GPU */
    {
        fa4cp_world_row *t;
        int n, c[] = {4};
        fa4cp_world_plan(1, 0, c, "block", 2, &t, &n);
        ok(fa4cp_world_check_gpus(t, n) == FA4CP_ERR_INVALID, "4 tasks on 2 GPUs refused");
        like(fa4cp_last_error(), "ranks 0 and 2 on node1 would both use GPU 0", "message names both ranks and the GPU");
        fa4cp_free(t);
        fa4cp_world_plan(2, 0, c2x2, "cyclic", 2, &t, &n);
        ok(fa4cp_world_check_gpus(t, n) == FA4CP_OK, "one task per GPU is fine");
        t[2].gpu = 0;
        snprintf(t[2].gpu_id, sizeof t[2].gpu_id, "0");
        t[0].gpu_exclusive = t[2].gpu_exclusive = 1;
        ok(fa4cp_world_check_gpus(t, n) == FA4CP_OK, "--gpus-per-task (exclusive) devices are not shared");
        fa4cp_free(t);
        fa4cp_world_plan(1, 0, c, "block", 0, &t, &n);
        ok(fa4cp_world_check_gpus(t, n) == FA4CP_OK && t[0].gpu == -1, "no GPUs: nothing to check");
        fa4cp_free(t);
    }

    /* issue 15, finding 11: the world checks and the placement are O(n log n)
     * now; on random small worlds they give what the pairwise scans gave */
    {
        test_rng rng = test_rng_init("layout-nlogn");
        int bad_place = 0, bad_gpu = 0, bad_dup = 0, found = 0, dups = 0;
        for (int it = 0; it < 400; it++) {
            int nodes = test_rng_int(&rng, 1, 7), counts[8], cyclic = test_rng_int(&rng, 0, 1);
            int gpn = test_rng_int(&rng, 1, 5), n = 0;
            for (int i = 0; i < nodes; i++)
                counts[i] = test_rng_int(&rng, 1, 6);
            fa4cp_world_row *t = NULL;
            if (fa4cp_world_plan(nodes, 0, counts, cyclic ? "cyclic" : "block", gpn, &t, &n) != FA4CP_OK) {
                bad_place++;
                continue;
            }
            int node_of[64], local_of[64];
            place_ref(nodes, counts, cyclic, node_of, local_of);
            for (int r = 0; r < n; r++)
                if (t[r].node != node_of[r] || t[r].local_rank != local_of[r] || t[r].local_size != counts[t[r].node])
                    bad_place++;
            /* some ranks exclusive, some on a GPU id of another rank of their node */
            for (int r = 0; r < n; r++) {
                t[r].gpu_exclusive = test_rng_int(&rng, 0, 5) == 0;
                if (test_rng_int(&rng, 0, 3) == 0)
                    t[r].gpu = -1;
            }
            int a = -1, b = -1, want = gpu_pair_ref(t, n, &a, &b);
            fa4cp_status st = fa4cp_world_check_gpus(t, n);
            found += want;
            if (want) {
                char msg[256];
                snprintf(msg, sizeof msg, "ranks %d and %d on %s would both use GPU %s", a, b, t[a].host, t[a].gpu_id);
                if (st != FA4CP_ERR_INVALID || !strstr(fa4cp_last_error(), msg)) {
                    diag("want '%s', got '%s'", msg, fa4cp_last_error());
                    bad_gpu++;
                }
            } else if (st != FA4CP_OK) {
                bad_gpu++;
            }
            /* a place claimed twice: the layout names the pair a pairwise scan finds */
            if (n >= 2 && test_rng_int(&rng, 0, 1)) {
                int x = test_rng_int(&rng, 0, n - 1), y = test_rng_int(&rng, 0, n - 1);
                t[y].node = t[x].node;
                t[y].local_rank = t[x].local_rank;
            }
            int q = -1, r2 = -1;
            for (int r = 0; r < n && r2 < 0; r++)
                for (int p = 0; p < r; p++)
                    if (t[p].node == t[r].node && t[p].local_rank == t[r].local_rank) {
                        q = p;
                        r2 = r;
                        break;
                    }
            fa4cp_layout *l = NULL;
            st = fa4cp_layout_build(t, n, 1, 0, 1, &l);
            dups += r2 >= 0;
            if (r2 >= 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "ranks %d and %d both claim local rank %d of node %d", q, r2,
                         t[r2].local_rank, t[r2].node);
                if (st != FA4CP_ERR_INVALID || !strstr(fa4cp_last_error(), msg)) {
                    diag("want '%s', got '%s'", msg, fa4cp_last_error());
                    bad_dup++;
                }
            } else if (st != FA4CP_OK) {
                bad_dup++;
            }
            fa4cp_layout_destroy(l);
            fa4cp_free(t);
        }
        is_int(bad_place, 0, "400 random plans (block, cyclic, uneven): every rank where Slurm's dealing puts it");
        ok(bad_gpu == 0 && found > 50, "... the GPU check names the pair the pairwise scan names (%d worlds had one)",
           found);
        ok(bad_dup == 0 && dups > 50, "... a place claimed twice: the same pair as the pairwise scan (%d worlds)", dups);
    }

    /* printing: text and JSON carry the same facts */
    {
        fa4cp_world_row *t;
        int n;
        char *txt = NULL, *js = NULL;
        fa4cp_layout *l = plan_layout(2, c2x2, "cyclic", 2, 0, &t, &n);
        ok(l && fa4cp_layout_format(l, "plan", 0, &txt) == FA4CP_OK, "text table");
        like(txt ? txt : "", "4 ranks on 2 nodes, cp 2", "text header");
        ok(l && fa4cp_layout_format(l, "plan", 1, &js) == FA4CP_OK, "json");
        like(js ? js : "", "{\"group\": 0, \"ring\": [0, 2], \"nodes\": 1, \"inter_node_hops\": 0}",
             "json group 0 = ranks 0 and 2");
        like(js ? js : "", "\"rank\": 1, \"host\": \"node2\", \"node\": 1, \"local_rank\": 0",
             "json rank 1 on node2");
        fa4cp_free(txt);
        fa4cp_free(js);
        fa4cp_layout_destroy(l);
        fa4cp_free(t);
    }
    return done_testing();
}
