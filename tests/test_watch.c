/* test_watch.c - the watchdog's culprit naming (lib/run/run_watch.c) on
 * simulated ranks: it only sees what each rank reported (done or not, its
 * phase and iteration, a returned rank's message), so it is the same for
 * every transport.  Random worlds are checked against the plain rule: the
 * unfinished ranks at the earliest progress are named, with their host and
 * where they were, and no other rank is. */
#include "fa4cp.h"
#include "run/run.h"
#include "tap.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    plan(0);
    fa4cp_case c;
    memset(&c, 0, sizeof c);
    c.index = 7;
    c.iters = 10;
    c.warmup = 2;
    snprintf(c.label, sizeof c.label, "cp.comm=p2p");
    enum { N = 8 };
    fa4cp_world_row table[N];
    memset(table, 0, sizeof table);
    for (int r = 0; r < N; r++) {
        table[r].rank = r;
        snprintf(table[r].host, sizeof table[r].host, "node%d", r / 4 + 1);
    }
    world_info w;
    memset(&w, 0, sizeof w);
    w.table = table;
    w.size = N;
    rank_result res[N];
    int done[N];
    char msg[1200];

    /* rank 5 stuck in its forward iteration 3, the others waited and timed out */
    memset(res, 0, sizeof res);
    for (int r = 0; r < N; r++) {
        done[r] = r != 5;
        res[r].phase = RUN_PHASE_DONE;
        if (done[r]) {
            res[r].status = FA4CP_ERR_TIMEOUT;
            snprintf(res[r].msg, sizeof res[r].msg, "rank %d waited 2 s for rank 5", r);
        }
    }
    res[5].phase = RUN_PHASE_FWD;
    res[5].iter = 2;
    res[5].phase_t = 100.0;
    res[5].cpp = (fa4cp_cp_progress){1, 3, FA4CP_CP_OP_SENDRECV, 1, 4};
    int k = run_watch_behind(&c, &w, res, done, N, 106.5, "ran past run.timeout = 1 s", msg, sizeof msg);
    ok(k == 1, "one rank behind (%d)", k);
    like(msg, "case 7 (cp.comm=p2p) ran past run.timeout = 1 s: rank 5 still running (host node2: forward iteration 3 of "
              "10, CP operation 3: sendrecv beside step 1, receiving from CP rank 4, there for 6.5 s) - it is behind",
         "it is named with its host, its case and where it was: the iteration and the CP step");
    like(msg, "the others: rank 0: rank 0 waited 2 s for rank 5", "... and what the others said");

    /* random worlds: the named ranks are exactly the unfinished ones at the earliest progress */
    test_rng rng = test_rng_init("watch");
    int bad = 0;
    for (int it = 0; it < 500; it++) {
        int least = 1 << 30;
        memset(res, 0, sizeof res);
        for (int r = 0; r < N; r++) {
            done[r] = test_rng_int(&rng, 0, 2) == 0;
            res[r].phase = done[r] ? RUN_PHASE_DONE : test_rng_int(&rng, RUN_PHASE_GEN, RUN_PHASE_CHECK);
            res[r].iter = test_rng_int(&rng, 0, 3);
            if (!done[r] && res[r].phase * 1000000 + res[r].iter < least)
                least = res[r].phase * 1000000 + res[r].iter;
        }
        int want = 0;
        k = run_watch_behind(&c, &w, res, done, N, 1.0, "stuck", msg, sizeof msg);
        for (int r = 0; r < N; r++) {
            char who[32];
            snprintf(who, sizeof who, "rank %d still running", r);
            int behind = !done[r] && res[r].phase * 1000000 + res[r].iter == least;
            want += behind;
            if (behind != (strstr(msg, who) != NULL))
                bad++;
        }
        if (k != want)
            bad++;
    }
    is_int(bad, 0, "500 random worlds of 8 ranks: the ranks named are the unfinished ones furthest behind");

    for (int r = 0; r < N; r++)
        done[r] = 1;
    k = run_watch_behind(&c, &w, res, done, N, 1.0, "stuck", msg, sizeof msg);
    ok(k == 0 && strstr(msg, "every rank returned"), "every rank returned: nobody is named");
    return done_testing();
}
