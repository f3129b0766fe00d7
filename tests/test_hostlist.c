/* test_hostlist.c - Slurm hostlist expressions and tasks-per-node lists. */
#include "fa4cp.h"
#include "tap.h"

#include <string.h>

static void expand(const char *expr, const char *want)
{
    char got[1024] = "", host[128];
    int n;
    if (fa4cp_hostlist_count(expr, &n) != FA4CP_OK) {
        ok(0, "'%s' parses (%s)", expr, fa4cp_last_error());
        return;
    }
    for (int i = 0; i < n; i++) {
        if (fa4cp_hostlist_nth(expr, i, host, sizeof host) != FA4CP_OK) {
            ok(0, "'%s' host %d (%s)", expr, i, fa4cp_last_error());
            return;
        }
        if (i)
            strcat(got, " ");
        strcat(got, host);
    }
    is_string(got, want, "'%s' expands", expr);
}

static void bad(const char *expr, const char *why)
{
    int n = -1;
    fa4cp_status st = fa4cp_hostlist_count(expr, &n);
    ok(st == FA4CP_ERR_INVALID, "'%s' is refused", expr);
    like(fa4cp_last_error(), why, "'%s': message says '%s'", expr, why);
}

int main(void)
{
    plan(0);
    expand("node[01-03,07],gpu-a[1-2]", "node01 node02 node03 node07 gpu-a1 gpu-a2");
    expand("localhost", "localhost");
    expand("node1,node2", "node1 node2");
    expand("n[8-11]", "n8 n9 n10 n11");
    expand("n[098-101]", "n098 n099 n100 n101");
    expand("rack[1-2]-gpu[0-1]", "rack1-gpu0 rack1-gpu1 rack2-gpu0 rack2-gpu1");
    expand("a[5],b", "a5 b");
    bad("x[1-2]y", "text after the last ']'"); /* Slurm refuses a suffix */

    int n = 0;
    ok(fa4cp_hostlist_count("node[01-03,07],gpu-a[1-2]", &n) == FA4CP_OK && n == 6, "count 6");
    char h[16];
    ok(fa4cp_hostlist_nth("node[01-03,07]", 4, h, sizeof h) == FA4CP_ERR_INVALID,
       "index past the end is refused");
    like(fa4cp_last_error(), "has 4 hosts", "message gives the count");
    ok(fa4cp_hostlist_nth("averyveryverylonghostname", 0, h, sizeof h) == FA4CP_ERR_INVALID,
       "a host longer than the buffer is refused");

    /* Slurm's order with several bracket groups: the last group innermost,
     * the others from the right (tests/hostlist_slurm.sh checks it against
     * scontrol, these are the cases of the issue) */
    expand("x[0-1]y[0-1]z[0-1]", "x0y0z0 x0y0z1 x1y0z0 x1y0z1 x0y1z0 x0y1z1 x1y1z0 x1y1z1");
    expand("n[1-2],,n3", "n1 n2 n3");
    expand(",n[1-2], n3,", "n1 n2 n3");
    expand("node[1-2],", "node1 node2");
    expand("n[01-3]", "n01 n02 n03");
    expand("n[1-03]", "n1 n2 n3");
    expand("n[1,2-]", "n1 n2");

    bad("n[1-2]x", "text after the last ']'");
    bad("node[1[2]]", "text after the last ']'");
    bad("node[3-1]", "goes backwards");
    bad("node[a-b]", "expected a number or a range, got 'a-b'");
    bad("node[]", "an empty piece");
    bad("node[1;2]", "expected a number or a range, got '1;2'");
    bad("n[0x1]", "no boxes");
    bad("n[0-70000]", "more than 65536 hosts");
    bad("n[18446744073709551615]", "too large");
    /* as node lists: no duplicates, no empty list, no names Slurm makes of
     * an unclosed bracket */
    bad("", "names no host");
    bad(",,", "names no host");
    bad("n1,n[0-1]", "names node 'n1' twice");
    bad("node[1-3", "'node]', which is no node name");
    bad("node1-3]", "'node1-3]', which is no node name");

    /* the plain expansion keeps duplicates and allows zero hosts, as Slurm */
    char **hs;
    int hn;
    ok(fa4cp_hostlist_expand("n1,n[0-1]", &hs, &hn) == FA4CP_OK && hn == 3 && !strcmp(hs[0], "n1") &&
           !strcmp(hs[2], "n1"),
       "expand keeps the duplicate n1");
    fa4cp_hostlist_free(hs, hn);
    ok(fa4cp_hostlist_expand(",,", &hs, &hn) == FA4CP_OK && hn == 0, "',,' expands to no host");
    ok(fa4cp_hostlist_expand("n[1-2", &hs, &hn) == FA4CP_OK && hn == 1 && !strcmp(hs[0], "n]"),
       "'n[1-2' is the host 'n]' to Slurm");
    fa4cp_hostlist_free(hs, hn);
    /* a long node list: nth for every node stays cheap (one expansion) */
    int big = 0;
    char hb[32];
    ok(fa4cp_hostlist_count("gpu[00001-60000]", &big) == FA4CP_OK && big == 60000 &&
           fa4cp_hostlist_nth("gpu[00001-60000]", 59999, hb, sizeof hb) == FA4CP_OK &&
           !strcmp(hb, "gpu60000"),
       "60000 nodes: host 59999 is gpu60000 (%s)", hb);

    /* tasks per node */
    int c[16], k = 0;
    ok(fa4cp_tasks_per_node_parse("2(x3),1", c, 16, &k) == FA4CP_OK && k == 4 && c[0] == 2 &&
           c[2] == 2 && c[3] == 1,
       "'2(x3),1' = 2 2 2 1");
    ok(fa4cp_tasks_per_node_parse("4", c, 16, &k) == FA4CP_OK && k == 1 && c[0] == 4, "'4'");
    ok(fa4cp_tasks_per_node_parse("8,8,4", c, 16, &k) == FA4CP_OK && k == 3 && c[2] == 4,
       "'8,8,4'");
    ok(fa4cp_tasks_per_node_parse("2(x3", c, 16, &k) == FA4CP_ERR_INVALID, "'2(x3' refused");
    ok(fa4cp_tasks_per_node_parse("2(x20)", c, 16, &k) == FA4CP_ERR_INVALID,
       "more nodes than room refused");
    ok(fa4cp_tasks_per_node_parse("2,,1", c, 16, &k) == FA4CP_ERR_INVALID, "'2,,1' refused");
    return done_testing();
}
