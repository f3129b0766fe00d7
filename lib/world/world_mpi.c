/* world_mpi.c - MPI as a data transport of a world: initialised after the
 * world (PMIx or the Slurm environment), its ranks checked against the
 * world's, and the mpi comms of the world, CP and DP groups of a layout.
 *
 * The world stays the source of truth: MPI must see the same processes in
 * the same order (srun --mpi=pmix and mpirun give Open MPI the launcher's
 * PMIx ranks, which are the world's); anything else is a launch error that
 * says so, before any data moves.
 */
#include "comm/comm_mpi.h"
#include "world_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_MPI

int fa4cp_mpi_available(void) { return 0; }

static fa4cp_status no_mpi(void)
{
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "this libfa4cp was built without MPI (configure --with-mpi; Debian: "
                           "libopenmpi-dev)");
}

fa4cp_status fa4cp_mpi_world_init(fa4cp_world *w, double timeout_s)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(timeout_s);
    return no_mpi();
}

fa4cp_status fa4cp_mpi_comm_create(fa4cp_world *w, const fa4cp_layout *l, double timeout_s,
                                   fa4cp_mpi_comms *out)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(l);
    FA4CP_UNUSED(timeout_s);
    if (out)
        memset(out, 0, sizeof *out);
    return no_mpi();
}

void fa4cp_mpi_comms_destroy(fa4cp_mpi_comms *c) { FA4CP_UNUSED(c); }

fa4cp_status fa4cp_mpi_comm_world(int nranks, double timeout_s, fa4cp_comm **out, int *mpi_rank,
                                  int *mpi_size)
{
    FA4CP_UNUSED(nranks);
    FA4CP_UNUSED(timeout_s);
    if (out)
        *out = NULL;
    if (mpi_rank)
        *mpi_rank = -1;
    if (mpi_size)
        *mpi_size = 0;
    return no_mpi();
}

void fa4cp_mpi_finalize(void) {}

#else /* HAVE_MPI */

#include <pthread.h>
#include <time.h>

int fa4cp_mpi_available(void) { return 1; }

static int we_initialised; /* MPI_Init came from here: MPI_Finalize too */

/* The MPI_Init watchdog: MPI_Init has no timeout of its own (its exchange
 * waits for every process), so a rank that never gets there would hang the
 * others; past the deadline the job is ended through the world. */
static struct {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done;
    double timeout_s;
    fa4cp_world *w;
} init_watch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};

static void *init_watchdog(void *arg)
{
    FA4CP_UNUSED(arg);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)init_watch.timeout_s + 1;
    pthread_mutex_lock(&init_watch.m);
    while (!init_watch.done)
        if (pthread_cond_timedwait(&init_watch.cv, &init_watch.m, &dl) != 0)
            break;
    int done = init_watch.done;
    pthread_mutex_unlock(&init_watch.m);
    if (!done) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "MPI_Init_thread did not return within %.0f s: another rank of the job never "
                 "initialised MPI (dead, stuck, or not running the mpi transport)",
                 init_watch.timeout_s);
        fa4cp_world_abort(init_watch.w, msg);
    }
    return NULL;
}

/* MPI_Init_thread unless MPI is up; *started = 1 when this call started it. */
static fa4cp_status init_mpi(fa4cp_world *w, double timeout_s, int *started)
{
    *started = 0;
    int inited = 0, fin = 0, provided = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "MPI was finalized already in this process");
    if (inited) {
        MPI_Query_thread(&provided);
        if (provided < MPI_THREAD_SERIALIZED)
            return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                                   "MPI was initialised with thread level %d; the mpi transport "
                                   "needs MPI_THREAD_SERIALIZED (MPI_Init_thread)",
                                   provided);
        return FA4CP_OK;
    }
    pthread_t wd;
    int watching = 0;
    if (w && timeout_s > 0) {
        init_watch.done = 0;
        init_watch.timeout_s = timeout_s;
        init_watch.w = w;
        watching = pthread_create(&wd, NULL, init_watchdog, NULL) == 0;
    }
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (watching) {
        pthread_mutex_lock(&init_watch.m);
        init_watch.done = 1;
        pthread_cond_signal(&init_watch.cv);
        pthread_mutex_unlock(&init_watch.m);
        pthread_join(wd, NULL);
    }
    if (rc != MPI_SUCCESS) {
        char es[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, es, &len);
        return fa4cp_set_error(FA4CP_ERR_LAUNCH, "MPI_Init_thread: %s", es);
    }
    we_initialised = 1;
    *started = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (provided < MPI_THREAD_SERIALIZED)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "this MPI gives thread level %d; the mpi transport needs "
                               "MPI_THREAD_SERIALIZED",
                               provided);
    return FA4CP_OK;
}

fa4cp_status fa4cp_mpi_world_init(fa4cp_world *w, double timeout_s)
{
    fa4cp_status st = FA4CP_OK;
    if (!w)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_mpi_world_init: NULL world");
    if (w->procs != w->size)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "the mpi transport needs one process per rank; local mode has %d "
                               "ranks in one process: use the local transport",
                               w->size);
    int started = 0;
    FA4CP_TRY(init_mpi(w, timeout_s, &started));
    if (started)
        w->mpi_end = fa4cp_mpi_finalize; /* a hook: world.c does not call into this file */
    int size = 0, rank = -1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (size != w->size)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH,
                   "MPI and the fa4cp world disagree: MPI_COMM_WORLD has %d process(es), the world "
                   "(%s) has %d ranks; MPI must get its processes from the same launch: srun "
                   "--mpi=pmix or mpirun (not srun --mpi=none, not a second mpirun)",
                   size, fa4cp_world_kind_name(w->kind), w->size);
    if (rank != w->rank)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH,
                   "MPI and the fa4cp world disagree on the order: this process (%s) is world rank "
                   "%d (%s) but MPI rank %d; launch with srun --mpi=pmix or mpirun, whose PMIx "
                   "ranks both follow",
                   w->table[w->rank].host, w->rank, fa4cp_world_kind_name(w->kind), rank);
out:
    return st;
}

fa4cp_status fa4cp_mpi_comm_create(fa4cp_world *w, const fa4cp_layout *l, double timeout_s,
                                   fa4cp_mpi_comms *out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_mpi_comms made = {0};
    int *members = NULL;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_mpi_comm_create: out is NULL");
    memset(out, 0, sizeof *out);
    if (!w || !l)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_mpi_comm_create: NULL world or layout");
    if (!(timeout_s > 0))
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_mpi_comm_create: timeout_s %g must be positive", timeout_s);
    if (fa4cp_layout_size(l) != w->size)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_mpi_comm_create: layout of %d ranks for a world of %d",
                               fa4cp_layout_size(l), w->size);
    FA4CP_TRY(fa4cp_mpi_world_init(w, timeout_s));
    members = fa4cp_calloc((size_t)w->size, sizeof *members, "mpi comm members");
    if (!members)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "mpi comms: out of memory");
    for (int r = 0; r < w->size; r++)
        members[r] = r;
    FA4CP_TRY(fa4cp_mpi_comm_new(MPI_COMM_WORLD, w->size, members, timeout_s, "world", &made.world));

    /* one duplicate for every CP group (and one for every DP group): each
     * rank names the members of its own group; groups never meet */
    fa4cp_layout_place pl;
    char label[32];
    FA4CP_TRY(fa4cp_layout_place_of(l, w->rank, &pl));
    int cp = fa4cp_layout_cp(l), ndp = w->size / cp;
    const int *g = fa4cp_layout_cp_group(l, pl.cp_group);
    snprintf(label, sizeof label, "cp%d", pl.cp_group);
    FA4CP_TRY(fa4cp_mpi_comm_new(MPI_COMM_WORLD, cp, g, timeout_s, label, &made.cp));
    const int *d = fa4cp_layout_dp_group(l, pl.dp_group);
    snprintf(label, sizeof label, "dp%d", pl.dp_group);
    FA4CP_TRY(fa4cp_mpi_comm_new(MPI_COMM_WORLD, ndp, d, timeout_s, label, &made.dp));
    if (!made.world || !made.cp || !made.dp || fa4cp_comm_rank(made.cp) != pl.cp_rank ||
        fa4cp_comm_rank(made.dp) != pl.dp_rank)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL,
                   "mpi comms of rank %d: the layout's groups do not hold it where the layout says "
                   "(cp group %d rank %d, dp group %d rank %d)",
                   w->rank, pl.cp_group, pl.cp_rank, pl.dp_group, pl.dp_rank);
    *out = made;
    memset(&made, 0, sizeof made);
out:
    fa4cp_free(members);
    fa4cp_mpi_comms_destroy(&made);
    return st;
}

void fa4cp_mpi_comms_destroy(fa4cp_mpi_comms *c)
{
    if (!c)
        return;
    fa4cp_comm_destroy(c->dp);
    fa4cp_comm_destroy(c->cp);
    fa4cp_comm_destroy(c->world);
    memset(c, 0, sizeof *c);
}

fa4cp_status fa4cp_mpi_comm_world(int nranks, double timeout_s, fa4cp_comm **out, int *mpi_rank,
                                  int *mpi_size)
{
    fa4cp_status st = FA4CP_OK;
    int *members = NULL, size = 0, rank = -1;
    if (out)
        *out = NULL;
    if (!out || !(timeout_s > 0))
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_mpi_comm_world: out %p, timeout %g",
                               (void *)out, timeout_s);
    int started = 0;
    FA4CP_TRY(init_mpi(NULL, 0, &started));
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (mpi_rank)
        *mpi_rank = rank;
    if (mpi_size)
        *mpi_size = size;
    if (nranks <= 0)
        nranks = size;
    if (nranks > size)
        FA4CP_FAIL(FA4CP_ERR_INVALID,
                   "fa4cp_mpi_comm_world: %d ranks asked of an MPI_COMM_WORLD of %d process(es)",
                   nranks, size);
    members = fa4cp_calloc((size_t)nranks, sizeof *members, "mpi comm members");
    if (!members)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "mpi comm: out of memory");
    for (int r = 0; r < nranks; r++)
        members[r] = r;
    char label[32];
    snprintf(label, sizeof label, "world%d", nranks);
    FA4CP_TRY(fa4cp_mpi_comm_new(MPI_COMM_WORLD, nranks, members, timeout_s, label, out));
out:
    fa4cp_free(members);
    return st;
}

void fa4cp_mpi_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (we_initialised && !fin)
        MPI_Finalize();
    we_initialised = 0;
}

#endif /* HAVE_MPI */
