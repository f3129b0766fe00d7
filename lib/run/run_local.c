/* run_local.c - a case on the local world: its ranks are threads of this
 * process, CP over the local transport. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run.h"

#include "cp/cp_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static int abandoned;
int run_local_abandoned(void) { return abandoned; }

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The watcher sleeps on this until a rank returns (or 20 ms pass, for the
 * timeout and the failure grace): a case ends when its last rank does, not
 * at the watcher's next poll.  Static: a rank thread abandoned by a case
 * that ended without it may still signal it. */
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cv;
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

static void watch_init(void)
{
    pthread_condattr_t at;
    pthread_condattr_init(&at);
    pthread_condattr_setclock(&at, CLOCK_MONOTONIC); /* mono_s's clock */
    pthread_cond_init(&watch_cv, &at);
    pthread_condattr_destroy(&at);
}

typedef struct thread_arg {
    const fa4cp_case *c;
    fa4cp_comm *comm;
    int rank;
    int inject;
    rank_result *res;
    int done; /* set (atomically) when the rank's run returned */
} thread_arg;

#ifdef FA4CP_CP_CONFIG_INIT
static void *rank_thread(void *p)
{
    thread_arg *a = p;
    run_case_rank(a->c, a->comm, a->rank, -1, a->inject, a->res);
    pthread_mutex_lock(&watch_mu);
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&watch_cv);
    pthread_mutex_unlock(&watch_mu);
    return NULL;
}
#endif

/* Run case c on `ranks` threads; returns 0, or RUN_TIMEOUT/RUN_RUNTIME for
 * what stopped it before results came back (message in msg). */
int run_local(const fa4cp_case *c, const world_info *w, int inject, rank_result *res, char *msg,
                     size_t msglen)
{
#ifdef FA4CP_CP_CONFIG_INIT
    int ranks = w->size, groups = ranks / c->cp, rc = 0;
    pthread_once(&watch_once, watch_init);
    run_exec_host_ranks(ranks);
    fa4cp_layout *layout = NULL;
    fa4cp_layout_place *place = calloc((size_t)ranks, sizeof *place);
    fa4cp_local_world **lw = calloc((size_t)groups, sizeof *lw);
    fa4cp_comm **comms = calloc((size_t)ranks, sizeof *comms);
    pthread_t *th = calloc((size_t)ranks, sizeof *th);
    thread_arg *args = calloc((size_t)ranks, sizeof *args);
    int started = 0;
    if (!lw || !comms || !th || !args || !place) {
        snprintf(msg, msglen, "out of memory for %d ranks", ranks);
        rc = RUN_RUNTIME;
        goto out;
    }
    /* CP groups and ring positions from the layout */
    if (fa4cp_layout_build(w->table, ranks, c->cp, fa4cp_cp_comm_info_of(c->comm)->group_in_node, 1, &layout)) {
        snprintf(msg, msglen, "layout: %s", fa4cp_last_error());
        rc = RUN_USAGE;
        goto out;
    }
    for (int r = 0; r < ranks; r++)
        fa4cp_layout_place_of(layout, r, &place[r]);
    for (int g = 0; g < groups; g++)
        if (fa4cp_local_world_create(c->cp, c->backend == FA4CP_BACKEND_CUDA, c->timeout_s, &lw[g])) {
            snprintf(msg, msglen, "local transport: %s", fa4cp_last_error());
            rc = RUN_RUNTIME;
            goto out;
        }
    for (int r = 0; r < ranks; r++)
        if (fa4cp_local_comm(lw[place[r].cp_group], place[r].cp_rank, &comms[r])) {
            snprintf(msg, msglen, "local transport: %s", fa4cp_last_error());
            rc = RUN_RUNTIME;
            goto out;
        }
    for (int r = 0; r < ranks; r++) {
        args[r] = (thread_arg){c, comms[r], r, ((inject & 1) && place[r].cp_group == 0) | (inject & ~1), &res[r], 0};
        if (pthread_create(&th[r], NULL, rank_thread, &args[r])) {
            snprintf(msg, msglen, "cannot start rank thread %d: %s", r, strerror(errno));
            rc = RUN_RUNTIME;
            goto out;
        }
        started++;
    }
    /* Watch the ranks: a rank that failed on its own leaves the others
     * waiting in a collective, so after a short grace the job ends with a
     * message naming it (in one process this is the PMIx abort's job);
     * a case past run.timeout ends it with exit 4.  Never a hang. */
    double t_start = mono_s(), t_failed = -1;
    int failed = -1;
    int *done = calloc((size_t)ranks, sizeof *done);
    pthread_mutex_lock(&watch_mu);
    for (;;) {
        int ndone = 0;
        for (int r = 0; r < started; r++) {
            if (!__atomic_load_n(&args[r].done, __ATOMIC_ACQUIRE))
                continue;
            ndone++;
            if (res[r].status && failed < 0 && res[r].status != FA4CP_ERR_TIMEOUT && res[r].status != FA4CP_ERR_PEER) {
                failed = r;
                t_failed = mono_s();
            }
        }
        if (ndone == started)
            break;
        /* the case ends here (recorded by the caller, the rest NOT RUN); the
         * ranks that never returned are left running: the caller ends the
         * process without cleaning up after them */
        if (failed >= 0 && mono_s() - t_failed > 2.0) {
            pthread_mutex_unlock(&watch_mu);
            snprintf(msg, msglen, "rank %d failed: %.400s; the other ranks cannot finish the case: ending the job",
                     res[failed].rank, res[failed].msg);
            abandoned = 1; /* the caller says it, records it and ends the job */
            free(done);
            return RUN_RUNTIME;
        }
        if (mono_s() - t_start > c->timeout_s + 5.0) {
            pthread_mutex_unlock(&watch_mu);
            char why[64];
            for (int r = 0; r < ranks; r++)
                done[r] = r >= started || __atomic_load_n(&args[r].done, __ATOMIC_ACQUIRE);
            snprintf(why, sizeof why, "ran past run.timeout = %g s", c->timeout_s);
            run_watch_behind(c, w, res, done, ranks, mono_s(), why, msg, msglen);
            abandoned = 1;
            free(done);
            return RUN_TIMEOUT;
        }
        /* until a rank returns (it signals under watch_mu, after its done
         * flag: no wake-up is lost), or 20 ms for the checks above */
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 20 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&watch_cv, &watch_mu, &until);
    }
    pthread_mutex_unlock(&watch_mu);
    free(done);
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    started = 0;
out:
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    if (comms)
        for (int r = 0; r < ranks; r++)
            if (comms[r])
                fa4cp_comm_destroy(comms[r]);
    if (lw)
        for (int g = 0; g < groups; g++)
            if (lw[g])
                fa4cp_local_world_destroy(lw[g]);
    free(lw);
    free(comms);
    free(th);
    free(args);
    free(place);
    fa4cp_layout_destroy(layout);
    return rc;
#else
    (void)c;
    (void)w;
    (void)inject;
    (void)res;
    snprintf(msg, msglen,
             "this build of fa4cp has no CP executor (lib/cp*.c is not linked in): only --dry-run/--explain work");
    return RUN_RUNTIME;
#endif
}

