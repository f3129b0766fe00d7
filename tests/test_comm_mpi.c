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
 * cut into pieces of 64 bytes (the path of messages past 1 GiB).  Then the
 * check of MPI's ranks against a world's (made up from a Slurm environment):
 * another order, another size, and the comms of a layout when they agree.  Without MPI in the build, or outside a launch, it says so and skips.
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

/* A world from a made-up Slurm environment: rank `procid` of `ntasks`, all
 * on one node (FA4CP_BOOTSTRAP=slurm reads only these variables). */
static fa4cp_status fake_slurm_world(int procid, int ntasks, fa4cp_world **w)
{
    char b[32];
    snprintf(b, sizeof b, "%d", procid);
    setenv("SLURM_PROCID", b, 1);
    setenv("SLURM_LOCALID", b, 1);
    setenv("SLURM_NODEID", "0", 1);
    snprintf(b, sizeof b, "%d", ntasks);
    setenv("SLURM_STEP_NUM_TASKS", b, 1);
    setenv("SLURM_NTASKS", b, 1);
    setenv("SLURM_STEP_TASKS_PER_NODE", b, 1);
    setenv("SLURM_STEP_NODELIST", "localhost", 1);
    setenv("SLURM_DISTRIBUTION", "block", 1);
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    cfg.kind = FA4CP_WORLD_SLURM;
    cfg.visible_gpus = 0;
    return fa4cp_world_init(&cfg, w);
}

/* one process's findings about the world check, for the harness */
typedef struct check_rec {
    int st_order, st_size, st_same, fails;
    char e_order[240], e_size[240], e_same[240];
} check_rec;

/* MPI only as a data transport of a world: its ranks must be the world's. */
static void world_check(void)
{
    check_rec mine, *all = calloc((size_t)nprocs, sizeof *all);
    memset(&mine, 0, sizeof mine);
    fa4cp_world *w = NULL;
    /* the world numbers the processes backwards */
    fa4cp_status st = fake_slurm_world(nprocs - 1 - me, nprocs, &w);
    if (st == FA4CP_OK)
        st = fa4cp_mpi_world_init(w, 30.0);
    mine.st_order = st;
    snprintf(mine.e_order, sizeof mine.e_order, "%s", st ? fa4cp_last_error() : "");
    fa4cp_world_finalize(w);
    w = NULL;
    /* the world has one rank more than MPI has processes */
    st = fake_slurm_world(me, nprocs + 1, &w);
    if (st == FA4CP_OK)
        st = fa4cp_mpi_world_init(w, 30.0);
    mine.st_size = st;
    snprintf(mine.e_size, sizeof mine.e_size, "%s", st ? fa4cp_last_error() : "");
    fa4cp_world_finalize(w);
    w = NULL;
    /* the same processes in the same order: the comms of a layout (one CP
     * group of all, DP groups of one), and data over them */
    fa4cp_layout *l = NULL;
    fa4cp_mpi_comms mc = {0};
    st = fake_slurm_world(me, nprocs, &w);
    if (st == FA4CP_OK)
        st = fa4cp_layout_build(fa4cp_world_table(w), nprocs, nprocs, 0, 1, &l);
    if (st == FA4CP_OK)
        st = fa4cp_mpi_comm_create(w, l, 30.0, &mc);
    mine.st_same = st;
    snprintf(mine.e_same, sizeof mine.e_same, "%s", st ? fa4cp_last_error() : "");
    if (st == FA4CP_OK) {
        const int *ring = fa4cp_layout_cp_group(l, 0);
        int *got = calloc((size_t)nprocs, sizeof *got);
        fa4cp_comm_req *q = NULL;
        if (fa4cp_comm_size(mc.cp) != nprocs || fa4cp_comm_size(mc.dp) != 1 ||
            fa4cp_comm_size(mc.world) != nprocs || fa4cp_comm_rank(mc.world) != me ||
            strcmp(fa4cp_comm_name(mc.cp), "mpi") != 0)
            mine.fails++;
        if (fa4cp_comm_all_gather(mc.cp, &me, got, sizeof me, NULL, &q) != FA4CP_OK ||
            fa4cp_comm_wait(mc.cp, q, NULL) != FA4CP_OK)
            mine.fails++;
        for (int r = 0; r < nprocs; r++)
            mine.fails += got[r] != ring[r];
        free(got);
    }
    fa4cp_mpi_comms_destroy(&mc);
    fa4cp_layout_destroy(l);
    fa4cp_world_finalize(w);

    fa4cp_comm_req *q = NULL;
    if (!all || fa4cp_comm_all_gather(harness, &mine, all, sizeof mine, NULL, &q) != FA4CP_OK ||
        fa4cp_comm_wait(harness, q, NULL) != FA4CP_OK)
        bail("process %d: gathering the world checks: %s", me, fa4cp_last_error());
    int good = 1, bad = -1;
    for (int r = 0; r < nprocs; r++) {
        int same = r == nprocs - 1 - r;
        if (same ? all[r].st_order != FA4CP_OK : all[r].st_order != FA4CP_ERR_LAUNCH) {
            good = 0;
            diag("process %d: %s", r, all[r].e_order);
        }
        if (!same && bad < 0)
            bad = r;
    }
    ok(good, "a world that numbers the processes otherwise than MPI: refused on every process it "
             "misplaces (FA4CP_ERR_LAUNCH)");
    if (bad >= 0) {
        char want[128];
        snprintf(want, sizeof want, "is world rank %d (slurm) but MPI rank %d", nprocs - 1 - bad, bad);
        like(all[bad].e_order, want, "... saying both ranks (%s)", all[bad].e_order);
        like(all[bad].e_order, "launch with srun --mpi=pmix or mpirun", "... and how to launch");
    }
    good = 1;
    for (int r = 0; r < nprocs; r++)
        good &= all[r].st_size == FA4CP_ERR_LAUNCH;
    ok(good, "a world of %d ranks over an MPI_COMM_WORLD of %d: refused on every process", nprocs + 1,
       nprocs);
    char want[160];
    snprintf(want, sizeof want, "MPI_COMM_WORLD has %d process(es), the world (slurm) has %d ranks", nprocs,
             nprocs + 1);
    like(all[0].e_size, want, "... saying both sizes (%s)", all[0].e_size);
    good = 1;
    for (int r = 0; r < nprocs; r++) {
        good &= all[r].st_same == FA4CP_OK && all[r].fails == 0;
        if (all[r].st_same || all[r].fails)
            diag("process %d: %s (%d mismatch(es))", r, all[r].e_same, all[r].fails);
    }
    ok(good, "the same processes in the same order: world, CP and DP comms of a layout (cp %d), and an "
             "all_gather over the CP group gives its ring",
       nprocs);
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
    world_check();
    fa4cp_comm_barrier(harness);
    fa4cp_comm_destroy(harness);
    fa4cp_mpi_finalize();
    return done_testing();
}
