/* run_procs.c - a case on the multi-process world: one process per rank
 * (srun --mpi=pmix, mpirun); each process runs its own rank of the case -
 * on its GPU (the world table's row) with CP over NCCL communicators
 * (fa4cp_nccl_comm_create), or on the cpu backend with CP over the mpi
 * transport (fa4cp_mpi_comm_create; MPI initialised after the world and
 * checked against it) - made per cp.size, and the per-rank results come to
 * every process through the bootstrap (fa4cp_world_allgather), so every
 * process judges the case alike and exits with the same code; only rank 0
 * prints.  A rank that fails on its own ends the job through
 * fa4cp_world_abort (PMIx_Abort) with a message naming it; a rank that
 * stops answering is ended by the NCCL watchdog (its peers), by its peers'
 * mpi waits (run.timeout: the first to run out ends the job, naming it),
 * the bootstrap timeout of the results exchange, or the case watchdog
 * below. */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run.h"
#include "run_gpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* a fixed-size record of one rank's verdict, for fa4cp_world_allgather */
typedef struct mp_verdict {
    int code;
    char msg[600];
} mp_verdict;

static struct {
    fa4cp_world *world;
    int rank;
    double deadline; /* monotonic seconds; 0 = no case running */
    int case_index;
    double timeout_s;
    char what[256];
    const fa4cp_case *c;
    const rank_result *mine; /* this rank's progress in the case */
    char host[FA4CP_HOST_MAX];
} mp_watch;
static pthread_mutex_t mp_watch_m = PTHREAD_MUTEX_INITIALIZER;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The case watchdog: a rank still in a case 5 s past run.timeout ends the
 * job (a hang in host code, where no NCCL watchdog looks). */
static void (*on_fire)(void *ctx, const fa4cp_case *c, const char *msg);
static void *on_fire_ctx;

void run_mp_watch_on_fire(void (*fn)(void *ctx, const fa4cp_case *c, const char *msg), void *ctx)
{
    pthread_mutex_lock(&mp_watch_m);
    on_fire = fn;
    on_fire_ctx = ctx;
    pthread_mutex_unlock(&mp_watch_m);
}

static void *mp_watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec nap = {0, 100 * 1000 * 1000};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&mp_watch_m);
        double dl = mp_watch.deadline;
        const rank_result *mine = mp_watch.mine;
        const fa4cp_case *wc = mp_watch.c;
        pthread_mutex_unlock(&mp_watch_m);
        if (dl > 0 && mono_now() > dl) {
            /* say where this rank is: every rank that can still speak says it, so the
             * ranks that are behind (or silent: stopped, dead) stand out */
            char msg[1400], where[200] = "?", waiting[320];
            double since = 0;
            fa4cp_mpi_waiting_for(waiting, sizeof waiting);
            if (mine && wc) {
                __atomic_load(&mine->phase_t, &since, __ATOMIC_RELAXED);
                int ph = __atomic_load_n(&mine->phase, __ATOMIC_ACQUIRE);
                run_phase_text(wc, ph, __atomic_load_n(&mine->iter, __ATOMIC_RELAXED), where, sizeof where);
                run_cp_progress_text(&mine->cpp, ph, where, sizeof where);
            }
            snprintf(msg, sizeof msg, "case %d (%s) ran past run.timeout = %g s: rank %d (host %s) is at %s (for %.1f s)"
                     "%s%s%s; the ranks that say nothing are stopped or dead; ending the job (the launcher reports the "
                     "abort)", mp_watch.case_index, mp_watch.what, mp_watch.timeout_s, mp_watch.rank, mp_watch.host,
                     where, since > 0 ? mono_now() - since : 0.0, waiting[0] ? ", waiting for " : "", waiting, "");
            /* the runner records the case TIMEOUT and the rest NOT RUN (rank 0) before the abort */
            if (on_fire && wc)
                on_fire(on_fire_ctx, wc, msg);
            fflush(stdout);
            fa4cp_world_abort(mp_watch.world, msg);
        }
    }
    return NULL;
}

static void mp_watch_set(const fa4cp_case *c)
{
    pthread_mutex_lock(&mp_watch_m);
    if (c) {
        mp_watch.case_index = c->index;
        mp_watch.timeout_s = c->timeout_s;
        snprintf(mp_watch.what, sizeof mp_watch.what, "%.200s", c->label[0] ? c->label : c->name);
        mp_watch.deadline = mono_now() + c->timeout_s + 5.0;
    } else {
        mp_watch.deadline = 0;
    }
    pthread_mutex_unlock(&mp_watch_m);
}

/* Every process's verdict to every process; 0 when all are 0, else the code
 * of the first rank that failed, its message in msg ("rank R on HOST: ...").
 * A failed exchange ends the job (a rank that is gone cannot answer). */
int run_mp_agree(const world_info *w, int code, const char *why, const char *what, char *msg, size_t len)
{
    if (len)
        msg[0] = '\0'; /* all agree on 0: no message (callers copy it into the record) */
    mp_verdict mine, *all = calloc((size_t)w->size, sizeof *all);
    memset(&mine, 0, sizeof mine);
    mine.code = code;
    if (len)
        msg[0] = 0; /* all well: no message (not whatever the caller's buffer held) */
    snprintf(mine.msg, sizeof mine.msg, "%s", why ? why : "");
    if (!all || fa4cp_world_allgather(w->world, &mine, all, sizeof mine)) {
        char m[700];
        snprintf(m, sizeof m, "%s: exchanging the ranks' verdicts over the bootstrap failed: %s", what,
                 all ? fa4cp_last_error() : "out of memory");
        free(all);
        fflush(stdout);
        fa4cp_world_abort(w->world, m);
    }
    int rc = 0, nbad = 0;
    for (int r = 0; r < w->size; r++) {
        if (!all[r].code)
            continue;
        if (!nbad++) {
            rc = all[r].code;
            snprintf(msg, len, "rank %d on %s: %s", r, w->table[r].host, all[r].msg);
        }
    }
    if (nbad > 1) {
        size_t at = strlen(msg);
        if (at < len)
            snprintf(msg + at, len - at, " (and %d more rank(s))", nbad - 1);
    }
    free(all);
    return rc;
}

/* This process can run cuda cases over NCCL: the build has CUDA and NCCL,
 * the world table gives it a GPU, and that GPU can be selected (before
 * anything else touches CUDA).  0, or RUN_RUNTIME with why. */
int run_mp_gpu_ready(const world_info *w, char *why, size_t len)
{
    const fa4cp_world_row *me = &w->table[w->rank];
    if (!fa4cp_nccl_available()) {
        snprintf(why, len, "this build of fa4cp has no NCCL (configure --with-nccl): multi-process runs use the "
                 "NCCL transport");
        return RUN_RUNTIME;
    }
    if (me->gpu < 0) {
        snprintf(why, len, "no GPU visible to this task (CUDA_VISIBLE_DEVICES and /dev/nvidia*): launch one task "
                 "per GPU, e.g. srun --gpus-per-task=1 --mpi=pmix, or mpirun on a GPU node");
        return RUN_RUNTIME;
    }
    if (fa4cp_world_check_gpus(w->table, w->size)) { /* NCCL needs one GPU per rank */
        snprintf(why, len, "%s", fa4cp_last_error());
        return RUN_RUNTIME;
    }
#ifdef HAVE_CUDA
    cudaError_t e = cudaSetDevice(me->gpu);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, len, "cudaSetDevice(%d) (GPU %s): %s", me->gpu, me->gpu_id, cudaGetErrorString(e));
        return RUN_RUNTIME;
    }
#endif
    if (!fa4cp_backend_available(FA4CP_BACKEND_CUDA)) {
        snprintf(why, len, "run.backend cuda is not available here: no usable CUDA device, or this build has no "
                 "CUDA kernels (configure --with-cuda)");
        return RUN_RUNTIME;
    }
    return 0;
}

static void mp_comms_drop(mp_state *m)
{
    fa4cp_nccl_comms_destroy(&m->comms);
    fa4cp_mpi_comms_destroy(&m->mcomms);
    fa4cp_layout_destroy(m->layout);
    m->layout = NULL;
    m->cp = 0;
}

/* The communicators of cp.size c->cp for c's backend: NCCL (cuda) or mpi
 * (cpu), kept while consecutive cases share both.  A failure ends the job:
 * the other ranks are inside the same collective creation. */
static void mp_comms_for(mp_state *m, const world_info *w, const fa4cp_case *c)
{
    if (m->cp == c->cp && m->backend == (int)c->backend)
        return;
    if (m->cp)
        mp_comms_drop(m);
    char msg[800];
    if (fa4cp_layout_build(w->table, w->size, c->cp, 0, 1, &m->layout)) {
        snprintf(msg, sizeof msg, "case %d: layout for cp.size %d: %s", c->index, c->cp, fa4cp_last_error());
        fflush(stdout);
        fa4cp_world_abort(w->world, msg);
    }
    if (c->backend == FA4CP_BACKEND_CPU) {
        if (fa4cp_mpi_comm_create(w->world, m->layout, m->timeout_s, &m->mcomms)) {
            snprintf(msg, sizeof msg, "case %d: mpi comms for cp.size %d: %s", c->index, c->cp, fa4cp_last_error());
            fflush(stdout);
            fa4cp_world_abort(w->world, msg);
        }
    } else {
        fa4cp_nccl_config cfg = FA4CP_NCCL_CONFIG_INIT;
        cfg.timeout_s = m->timeout_s;
        if (fa4cp_nccl_comm_create(w->world, m->layout, &cfg, &m->comms)) {
            snprintf(msg, sizeof msg, "case %d: NCCL communicators for cp.size %d: %s", c->index, c->cp,
                     fa4cp_last_error());
            fflush(stdout);
            fa4cp_world_abort(w->world, msg);
        }
    }
    m->cp = c->cp;
    m->backend = (int)c->backend;
}

void run_mp_close(mp_state *m)
{
    mp_comms_drop(m);
    memset(m, 0, sizeof *m);
}

/* Run case c, this process's rank of it; res [size] gets every rank's
 * result.  0, or an exit code (message in msg) for what stopped the case. */
int run_procs(mp_state *m, const fa4cp_case *c, const world_info *w, int inject, rank_result *res,
                     char *msg, size_t msglen)
{
    rank_result mine;
    fa4cp_layout_place pl;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mp_comms_for(m, w, c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double comm_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    fa4cp_layout_place_of(m->layout, w->rank, &pl);
    mp_watch_set(c);
    pthread_mutex_lock(&mp_watch_m);
    mp_watch.c = c;
    mp_watch.mine = &mine;
    pthread_mutex_unlock(&mp_watch_m);
    int cpu = c->backend == FA4CP_BACKEND_CPU;
    run_case_rank(c, cpu ? m->mcomms.cp : m->comms.cp, w->rank, cpu ? -1 : w->table[w->rank].gpu,
                  ((inject & 1) && pl.cp_group == 0) | (inject & ~1), &mine);
    /* the communicators this case made (the first case of a cp.size and
     * backend; on two H200s the NCCL ones took about 0.6 s) are its set-up
     * too: without them a case's phases did not add up to its wall time */
    if (mine.setup_ms >= 0)
        mine.setup_ms += comm_ms;
    mp_watch_set(NULL);
    pthread_mutex_lock(&mp_watch_m);
    mp_watch.mine = NULL;
    pthread_mutex_unlock(&mp_watch_m);
    if (cpu && (mine.status == FA4CP_ERR_TIMEOUT || mine.status == FA4CP_ERR_PEER)) {
        /* an mpi wait ran out, or MPI lost a peer: the message names the rank
         * that never answered (ranks of the CP group; an MPI rank is the world
         * rank); that rank cannot join the results exchange either */
        char m2[1700], ring[160] = "";
        const int *g = fa4cp_layout_cp_group(m->layout, pl.cp_group);
        for (int i = 0, at = 0; g && i < c->cp && at < (int)sizeof ring - 16; i++)
            at += snprintf(ring + at, sizeof ring - (size_t)at, "%s%d", i ? ", " : "", g[i]);
        snprintf(m2, sizeof m2, "case %d (%.200s): %.1100s (CP group %d is world ranks [%s] by CP rank; MPI rank = "
                 "world rank); ending the job", c->index, c->label[0] ? c->label : c->name, mine.msg, pl.cp_group,
                 ring);
        fflush(stdout);
        fa4cp_world_abort(w->world, m2);
    }
    if (mine.status && mine.status != FA4CP_ERR_TIMEOUT && mine.status != FA4CP_ERR_PEER) {
        /* failed on its own: its peers wait for it in a collective */
        char m2[1000];
        snprintf(m2, sizeof m2, "case %d (%.200s): rank %d failed: %.480s; the other ranks cannot finish the case: "
                 "ending the job", c->index, c->label[0] ? c->label : c->name, w->rank, mine.msg);
        fflush(stdout);
        fa4cp_world_abort(w->world, m2);
    }
    if (fa4cp_world_allgather(w->world, &mine, res, sizeof mine)) {
        char m2[800];
        snprintf(m2, sizeof m2, "case %d: gathering the ranks' results over the bootstrap failed: %s", c->index,
                 fa4cp_last_error());
        fflush(stdout);
        fa4cp_world_abort(w->world, m2);
    }
    /* an NCCL comm aborted by its watchdog (an mpi comm that failed) cannot be used again */
    for (int r = 0; r < w->size; r++)
        if (res[r].status) {
            mp_comms_drop(m);
            break;
        }
    (void)msg;
    (void)msglen;
    return 0;
}


void run_mp_watch_start(const world_info *w)
{
    mp_watch.world = w->world;
    mp_watch.rank = w->rank;
    snprintf(mp_watch.host, sizeof mp_watch.host, "%s", w->table[w->rank].host);
    pthread_t wd;
    if (pthread_create(&wd, NULL, mp_watchdog, NULL) == 0)
        pthread_detach(wd);
}
