/* run_watch.c - who is behind when a case runs past run.timeout.
 *
 * Transport-independent: the watchdog hands over what it knows of every
 * rank - done or not, its progress (phase, iteration, since when) and, for a
 * rank that returned, its status and message (a transport timeout names the
 * peer it waited for) - and gets back one message naming the rank(s) that
 * are behind: the unfinished ranks at the earliest phase, with host, case
 * and where they were.  Local mode fills it from its threads; a
 * multi-process world from what its ranks report over the bootstrap (a rank
 * that cannot report is named by the bootstrap itself). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "run.h"

#include <stdio.h>
#include <string.h>

static int progress_of(const rank_result *r)
{
    int phase = __atomic_load_n(&r->phase, __ATOMIC_ACQUIRE);
    return phase * 1000000 + __atomic_load_n(&r->iter, __ATOMIC_RELAXED);
}

int run_watch_behind(const fa4cp_case *c, const world_info *w, const rank_result *res, const int *done, int n,
                     double now_s, const char *why, char *msg, size_t len)
{
    int least = -1, nbehind = 0, nrunning = 0;
    for (int r = 0; r < n; r++)
        if (!done[r]) {
            nrunning++;
            if (least < 0 || progress_of(&res[r]) < least)
                least = progress_of(&res[r]);
        }
    size_t o = 0;
    msg[0] = 0;
#define ADD(...)                                                                                                   \
    do {                                                                                                           \
        if (o < len)                                                                                               \
            o += (size_t)snprintf(msg + o, len - o, __VA_ARGS__);                                                  \
    } while (0)
    ADD("case %d (%s) %s: ", c->index, c->label[0] ? c->label : c->name, why);
    if (!nrunning) {
        ADD("every rank returned");
        return 0;
    }
    /* the ranks behind: unfinished, at the earliest progress */
    for (int r = 0; r < n; r++) {
        if (done[r] || progress_of(&res[r]) != least)
            continue;
        char where[200];
        double t;
        __atomic_load(&res[r].phase_t, &t, __ATOMIC_RELAXED);
        int ph = __atomic_load_n(&res[r].phase, __ATOMIC_ACQUIRE);
        run_phase_text(c, ph, __atomic_load_n(&res[r].iter, __ATOMIC_RELAXED), where, sizeof where);
        run_cp_progress_text(&res[r].cpp, ph, where, sizeof where);
        ADD("%srank %d still running (host %s: %s, there for %.1f s)", nbehind ? "; " : "", r,
            w->table ? w->table[r].host : "?", where, t > 0 ? now_s - t : 0.0);
        nbehind++;
    }
    ADD(" - %s", nbehind > 1 ? "they are behind" : "it is behind");
    /* what the others say (a transport timeout names the peer it waited for) */
    int said = 0;
    for (int r = 0; r < n && said < 2; r++)
        if (done[r] && res[r].status && res[r].msg[0]) {
            ADD("%s rank %d: %.300s", said ? ";" : "; the others:", r, res[r].msg);
            said++;
        }
    if (nrunning > nbehind)
        ADD(" (%d more rank(s) still running, further on)", nrunning - nbehind);
#undef ADD
    return nbehind;
}
