/* test_comm.c - the local transport against serial computations: the
 * table of tests/comm_table.c (every collective against a serial
 * computation, 1..5 ranks as threads, odd sizes, the mistakes each an error
 * within a bounded time), then what only the local transport has (device
 * memory, endpoints taken once).
 */
#include "comm_table.h"
#include "fa4cp.h"
#include "tap.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    rank_ctx ctx;
    rank_fn fn;
} job;

static void *job_main(void *p)
{
    job *j = p;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j->fn(&j->ctx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    j->ctx.seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return NULL;
}

/* run fn on n ranks; returns the jobs (caller frees) */
static job *run_ranks(int n, double timeout_s, rank_fn fn, int which)
{
    fa4cp_local_world *w = NULL;
    job *jobs = calloc((size_t)n, sizeof *jobs);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (fa4cp_local_world_create(n, 0, timeout_s, &w) != FA4CP_OK)
        bail("local world: %s", fa4cp_last_error());
    for (int r = 0; r < n; r++) {
        if (fa4cp_local_comm(w, r, &jobs[r].ctx.comm) != FA4CP_OK)
            bail("local comm: %s", fa4cp_last_error());
        jobs[r].ctx.rank = r;
        jobs[r].ctx.n = n;
        jobs[r].ctx.which = which;
        jobs[r].fn = fn;
    }
    for (int r = 0; r < n; r++)
        pthread_create(&th[r], NULL, job_main, &jobs[r]);
    for (int r = 0; r < n; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < n; r++)
        fa4cp_comm_destroy(jobs[r].ctx.comm);
    fa4cp_local_world_destroy(w);
    free(th);
    return jobs;
}

/* comm_runner for the table: n threads on a fresh local world */
static void run_threads(int n, double timeout_s, rank_fn fn, int which, rank_ctx *out)
{
    job *j = run_ranks(n, timeout_s, fn, which);
    for (int r = 0; r < n; r++) {
        out[r] = j[r].ctx;
        out[r].comm = NULL;
    }
    free(j);
}

int main(void)
{
    plan(0);
    comm_table(run_threads, 5);

    /* finding 2 (issue 15): the longest timeout works as a timeout, a longer
     * one is refused where it is given (it used to wrap the deadline into the
     * past: an instant false timeout) */
    ok(comm_table_collectives(run_threads, 3, FA4CP_TIMEOUT_MAX_S) == 0,
       "3 ranks with the maximum timeout (%.0f s): the collectives complete, no false timeout", FA4CP_TIMEOUT_MAX_S);
    {
        fa4cp_local_world *big = NULL;
        ok(fa4cp_local_world_create(2, 0, 1e19, &big) == FA4CP_ERR_INVALID && !big,
           "a local world with a 1e19 s timeout is refused");
        like(fa4cp_last_error(), "more than the maximum of 604800 s", "... saying the maximum");
        ok(fa4cp_local_world_create(2, 0, INFINITY, &big) == FA4CP_ERR_INVALID && !big, "... and an infinite one");
    }

    fa4cp_local_world *w = NULL;
    {
        fa4cp_status ds = fa4cp_local_world_create(2, 1, 1.0, &w);
        if (fa4cp_backend_available(FA4CP_BACKEND_CUDA) || ds == FA4CP_OK) {
            /* a CUDA build: device memory is the GPU path (tests/test_cp_gpu) */
            fa4cp_comm *d = NULL, *d0 = NULL;
            ok(ds == FA4CP_OK && fa4cp_local_comm(w, 1, &d) == FA4CP_OK && fa4cp_comm_device_memory(d),
               "device memory on the local transport (a CUDA build)");
            ok(ds == FA4CP_OK && fa4cp_local_comm(w, 0, &d0) == FA4CP_OK && fa4cp_comm_device_memory(d0) &&
                   fa4cp_comm_size(d0) == 2 && fa4cp_comm_rank(d0) == 0,
               "... every endpoint of that world is a device-memory endpoint of the group");
            fa4cp_comm_destroy(d);
            fa4cp_comm_destroy(d0);
            fa4cp_local_world_destroy(w);
            w = NULL;
        } else {
            ok(ds == FA4CP_ERR_UNSUPPORTED, "device memory on the local transport is refused without CUDA");
            like(fa4cp_last_error(), "device memory needs a build with CUDA", "... saying so");
        }
    }
    ok(fa4cp_local_world_create(2, 0, 1.0, &w) == FA4CP_OK, "a world of 2");
    fa4cp_comm *a = NULL, *b = NULL;
    ok(fa4cp_local_comm(w, 0, &a) == FA4CP_OK && fa4cp_local_comm(w, 0, &b) == FA4CP_ERR_INVALID,
       "an endpoint can be taken once");
    ok(fa4cp_comm_size(a) == 2 && fa4cp_comm_rank(a) == 0 && strcmp(fa4cp_comm_name(a), "local") == 0 &&
           !fa4cp_comm_device_memory(a),
       "rank, size, name, device_memory");
    fa4cp_comm_destroy(a);
    fa4cp_local_world_destroy(w);
    return done_testing();
}
