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
    expand("x[1-2]y", "x1y x2y");

    int n = 0;
    ok(fa4cp_hostlist_count("node[01-03,07],gpu-a[1-2]", &n) == FA4CP_OK && n == 6, "count 6");
    char h[16];
    ok(fa4cp_hostlist_nth("node[01-03,07]", 4, h, sizeof h) == FA4CP_ERR_INVALID,
       "index past the end is refused");
    like(fa4cp_last_error(), "has 4 hosts", "message gives the count");
    ok(fa4cp_hostlist_nth("averyveryverylonghostname", 0, h, sizeof h) == FA4CP_ERR_INVALID,
       "a host longer than the buffer is refused");

    bad("node[1-3", "unmatched '['");
    bad("node1-3]", "unmatched ']'");
    bad("node[3-1]", "goes backwards");
    bad("node[a-b]", "expected a number");
    bad("node[]", "empty brackets");
    bad("node[1-2],", "trailing ','");
    bad("", "empty");
    bad("node[1[2]]", "nested");
    bad("node[1;2]", "unexpected ';'");

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
