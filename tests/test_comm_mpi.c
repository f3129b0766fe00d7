/* test_comm_mpi.c - the mpi transport against the table of tests/comm_table.c
 * (every collective against a serial computation, groups of 1..P ranks, odd
 * sizes, the mistakes each an error within a bounded time), run by every
 * process of an MPI launch: `mpirun -np 5` (tests/comm_mpi.sh) or
 * `srun --mpi=pmix` on the local Slurm clusters (tests/run_mpi_slurm.sh).
 *
 * Each test runs on a fresh group of MPI_COMM_WORLD ranks 0..n-1 (processes
 * past n wait); every process's findings come to every process over a
 * harness comm of all P, so all of them judge alike, and rank 0 prints the
 * TAP.  The table runs twice: with whole messages, then with every message
 * cut into pieces of 64 bytes (the path of messages past 1 GiB).  Without MPI in the build, or outside a launch, it says so and skips.
 */
#include "comm_table.h"
#include "fa4cp.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static fa4cp_comm *harness;
static int me = -1, nprocs;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* comm_runner for the table: ranks 0..n-1 of MPI_COMM_WORLD */
static void run_procs(int n, double timeout_s, rank_fn fn, int which, rank_ctx *out)
{
    rank_ctx mine;
    memset(&mine, 0, sizeof mine);
    fa4cp_comm *c = NULL;
    if (fa4cp_mpi_comm_world(n, timeout_s, &c, NULL, NULL) != FA4CP_OK)
        bail("process %d: a group of %d: %s", me, n, fa4cp_last_error());
    if (c) {
        mine.comm = c;
        mine.rank = me;
        mine.n = n;
        mine.which = which;
        double t0 = now_s();
        fn(&mine);
        mine.seconds = now_s() - t0;
        if (fa4cp_comm_rank(c) != me || fa4cp_comm_size(c) != n) {
            mine.fails++;
            snprintf(mine.err, sizeof mine.err, "the comm says rank %d of %d, want %d of %d",
                     fa4cp_comm_rank(c), fa4cp_comm_size(c), me, n);
        }
        fa4cp_comm_destroy(c);
    }
    mine.comm = NULL;
    rank_ctx *all = calloc((size_t)nprocs, sizeof *all);
    fa4cp_comm_req *q = NULL;
    if (!all || fa4cp_comm_all_gather(harness, &mine, all, sizeof mine, NULL, &q) != FA4CP_OK ||
        fa4cp_comm_wait(harness, q, NULL) != FA4CP_OK)
        bail("process %d: gathering the findings: %s", me, fa4cp_last_error());
    for (int r = 0; r < n; r++) {
        out[r] = all[r];
        out[r].comm = NULL;
    }
    free(all);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { /* for the launch scripts: no MPI */
        printf("test_comm_mpi: mpi transport %s\n", fa4cp_mpi_available() ? "yes" : "no");
        return 0;
    }
    if (!fa4cp_mpi_available())
        skip_all("this build has no mpi transport (configure --with-mpi; Debian: libopenmpi-dev)");
    if (fa4cp_mpi_comm_world(0, 120.0, &harness, &me, &nprocs) != FA4CP_OK)
        bail("the harness comm over MPI_COMM_WORLD: %s", fa4cp_last_error());
    if (me != 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 speaks for all */
        bail("process %d: cannot silence stdout", me);
    plan(0);
    diag("mpi transport: %d process(es) in MPI_COMM_WORLD", nprocs);
    ok(harness && fa4cp_comm_size(harness) == nprocs && fa4cp_comm_rank(harness) == me &&
           strcmp(fa4cp_comm_name(harness), "mpi") == 0 && !fa4cp_comm_device_memory(harness),
       "rank, size, name, host memory of the harness comm");
    comm_table(run_procs, nprocs > 5 ? 5 : nprocs);
    /* again with every message cut into pieces of 64 bytes (header
     * included), as messages past 1 GiB are */
    setenv("FA4CP_MPI_PIECE", "64", 1);
    diag("the table again, messages in pieces of 64 bytes (FA4CP_MPI_PIECE=64)");
    comm_table(run_procs, nprocs > 5 ? 5 : nprocs);
    fa4cp_comm_barrier(harness);
    fa4cp_comm_destroy(harness);
    fa4cp_mpi_finalize();
    return done_testing();
}
