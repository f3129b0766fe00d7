/* test_world.c - bootstrap decisions from a faked environment: the singleton
 * trap, the Slurm-environment world table, local mode, GPU choice, and the
 * NCCL id plumbing that needs no GPU. */
#include "fa4cp.h"
#include "tap.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void clear_env(void)
{
    static const char *vars[] = {"SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS",
                                 "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_STEP_NODELIST",
                                 "SLURM_JOB_NODELIST", "SLURM_STEP_TASKS_PER_NODE",
                                 "SLURM_TASKS_PER_NODE", "SLURM_DISTRIBUTION", "SLURM_JOB_ID",
                                 "SLURM_GPUS_PER_TASK", "PMIX_NAMESPACE", "PMIX_RANK",
                                 "FA4CP_BOOTSTRAP", "FA4CP_BOOTSTRAP_TIMEOUT",
                                 "CUDA_VISIBLE_DEVICES", "NCCL_COMM_ID", NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

/* task `procid` of a step over node[1-2] with 2 tasks each */
static void fake_step(int procid, int nodeid, int localid, const char *dist)
{
    char b[16];
    clear_env();
    snprintf(b, sizeof b, "%d", procid);
    setenv("SLURM_PROCID", b, 1);
    snprintf(b, sizeof b, "%d", nodeid);
    setenv("SLURM_NODEID", b, 1);
    snprintf(b, sizeof b, "%d", localid);
    setenv("SLURM_LOCALID", b, 1);
    setenv("SLURM_NTASKS", "4", 1);
    setenv("SLURM_STEP_NUM_TASKS", "4", 1);
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_JOB_ID", "1234", 1);
    setenv("SLURM_STEP_NODELIST", "node[1-2]", 1);
    setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2)", 1);
    if (dist)
        setenv("SLURM_DISTRIBUTION", dist, 1);
}

int main(void)
{
    plan(0);
    fa4cp_world *w = NULL;
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    const char *trap = "launched by srun without PMIx: use srun --mpi=pmix (srun --mpi=list shows "
                       "what this cluster offers)";

    /* ---- the singleton trap */
    clear_env();
    ok(fa4cp_world_check_launch(NULL, 0) == FA4CP_OK, "outside Slurm: no trap");
    fake_step(1, 0, 1, NULL);
    ok(fa4cp_world_check_launch(NULL, 0) == FA4CP_ERR_LAUNCH, "4-task step, no PMIx namespace: trap");
    like(fa4cp_last_error(), trap, "trap message says how to launch");
    like(fa4cp_last_error(), "task 1 of a 4-task Slurm step", "trap message names the task");
    ok(fa4cp_world_check_launch("singleton.host.123", 1) == FA4CP_ERR_LAUNCH,
       "4-task step, PMIx singleton namespace: trap");
    ok(fa4cp_world_check_launch("slurm.pmix.12.0", 4) == FA4CP_OK, "real PMIx job of 4: fine");
    ok(fa4cp_world_check_launch("slurm.pmix.12.0", 2) == FA4CP_ERR_LAUNCH, "job size 2 in a 4-task step: refused");
    like(fa4cp_last_error(), "PMIx says the job has 2 processes but the Slurm step has 4 tasks",
         "size mismatch explained");
    setenv("SLURM_STEP_NUM_TASKS", "1", 1);
    setenv("SLURM_NTASKS", "1", 1);
    ok(fa4cp_world_check_launch(NULL, 0) == FA4CP_OK, "1-task step: a singleton is fine");
    /* the batch script itself (no srun step) is not a step of several tasks */
    clear_env();
    setenv("SLURM_PROCID", "0", 1);
    setenv("SLURM_NTASKS", "8", 1);
    ok(fa4cp_world_check_launch(NULL, 0) == FA4CP_OK, "batch step (no SLURM_STEP_*): no trap");

    /* world_init in a faked multi-task step without PMIx */
    fake_step(2, 1, 0, NULL);
    fa4cp_status st = fa4cp_world_init(&cfg, &w);
#ifdef HAVE_PMIX
    ok(st == FA4CP_ERR_LAUNCH && !w, "world_init in the trap fails with FA4CP_ERR_LAUNCH");
    like(fa4cp_last_error(), trap, "world_init's message says how to launch");
#else
    ok(st == FA4CP_OK && w && fa4cp_world_kind_of(w) == FA4CP_WORLD_SLURM,
       "no PMIx built in: the Slurm environment is used");
    fa4cp_world_finalize(w);
#endif
    w = NULL;

    /* ---- the Slurm-environment world table (FA4CP_BOOTSTRAP=slurm) */
    fake_step(2, 1, 0, "block");
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    st = fa4cp_world_init(&cfg, &w);
    ok(st == FA4CP_OK, "slurm bootstrap, block (%s)", st ? fa4cp_last_error() : "");
    if (w) {
        const fa4cp_world_row *t = fa4cp_world_table(w);
        ok(fa4cp_world_rank(w) == 2 && fa4cp_world_size(w) == 4 && fa4cp_world_nodes(w) == 2,
           "rank 2 of 4 on 2 nodes");
        ok(t[1].node == 0 && t[1].local_rank == 1 && t[2].node == 1 && t[3].local_rank == 1,
           "block placement rebuilt");
        is_string(t[3].host, "node2", "rank 3's host from the node list");
        ok(fa4cp_world_allgather(w, "x", (char[8]){0}, 1) == FA4CP_ERR_UNSUPPORTED,
           "no data exchange in Slurm mode");
        like(fa4cp_last_error(), "srun --mpi=pmix", "and it says how to get one");
        fa4cp_world_finalize(w);
        w = NULL;
    }
    fake_step(1, 1, 0, "cyclic");
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    st = fa4cp_world_init(&cfg, &w);
    ok(st == FA4CP_OK, "slurm bootstrap, cyclic (%s)", st ? fa4cp_last_error() : "");
    if (w) {
        const fa4cp_world_row *t = fa4cp_world_table(w);
        ok(t[0].node == 0 && t[1].node == 1 && t[2].node == 0 && t[2].local_rank == 1 &&
               t[3].node == 1,
           "cyclic placement rebuilt: 0,2 on node1; 1,3 on node2");
        fa4cp_world_finalize(w);
        w = NULL;
    }
    fake_step(1, 0, 1, "block"); /* says block, but rank 1 is on node 0 as local 1: fine */
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_OK, "consistent block env accepted");
    fa4cp_world_finalize(w);
    w = NULL;
    fake_step(1, 1, 0, "block"); /* inconsistent with block */
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_ERR_LAUNCH && !w, "env inconsistent with its distribution: refused");
    like(fa4cp_last_error(), "SLURM_NODEID=1 SLURM_LOCALID=0", "message quotes the environment");
    fake_step(1, 0, 1, "plane=2");
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_ERR_UNSUPPORTED, "plane distribution cannot be rebuilt");
    fake_step(1, 0, 1, NULL);
    setenv("SLURM_STEP_NODELIST", "node[1-", 1);
    setenv("FA4CP_BOOTSTRAP", "slurm", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_ERR_INVALID, "broken node list refused");
    like(fa4cp_last_error(), "unmatched '['", "with the parser's message");

    /* ---- NCCL_COMM_ID for the Slurm fallback */
    fake_step(0, 0, 0, NULL);
    setenv("SLURM_STEP_NODELIST", "gpu[07-09]", 1);
    setenv("SLURM_STEP_ID", "3", 1);
    char id[128];
    ok(fa4cp_nccl_comm_id_from_slurm(id, sizeof id) == FA4CP_OK, "NCCL_COMM_ID derived");
    is_string(id, "gpu07:29747", "first host, port 20000 + (1234*16+3) %% 10000");
    unsetenv("SLURM_JOB_ID");
    ok(fa4cp_nccl_comm_id_from_slurm(id, sizeof id) == FA4CP_ERR_LAUNCH, "needs SLURM_JOB_ID");

    /* ---- local mode and GPU choice */
    clear_env();
    cfg.local_ranks = 4;
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_OK && fa4cp_world_kind_of(w) == FA4CP_WORLD_LOCAL,
       "no launcher: local mode");
    if (w) {
        ok(fa4cp_world_size(w) == 4 && fa4cp_world_procs(w) == 1 && fa4cp_world_rank(w) == 0,
           "4 ranks in one process");
        int x = 7, y = 0;
        ok(fa4cp_world_allgather(w, &x, &y, sizeof x) == FA4CP_OK && y == 7, "allgather in process");
        ok(fa4cp_world_barrier(w) == FA4CP_OK, "barrier in process");
        ok(fa4cp_world_row_of(w, 4) == NULL && fa4cp_world_row_of(w, 3) != NULL, "row accessor bounds");
        fa4cp_world_finalize(w);
        w = NULL;
    }
    setenv("CUDA_VISIBLE_DEVICES", "2,5", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_OK, "local mode with 2 visible GPUs");
    if (w) {
        const fa4cp_world_row *t = fa4cp_world_table(w);
        ok(t[0].gpu == 0 && t[1].gpu == 1 && t[2].gpu == 0 && t[3].gpu == 1,
           "device = local rank modulo visible devices");
        is_string(t[3].gpu_id, "5", "physical id from CUDA_VISIBLE_DEVICES");
        ok(fa4cp_world_check_gpus(t, 4) == FA4CP_ERR_INVALID, "4 ranks on 2 GPUs: a conflict for NCCL");
        like(fa4cp_last_error(), "ranks 0 and 2", "names both ranks");
        like(fa4cp_last_error(), "GPU 2 (device 0)", "names the device");
        fa4cp_world_finalize(w);
        w = NULL;
    }
    setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa", 1);
    setenv("SLURM_GPUS_PER_TASK", "1", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_OK && fa4cp_world_table(w)[3].gpu == 0 &&
           fa4cp_world_table(w)[3].gpu_exclusive,
       "one visible device (--gpus-per-task): device 0");
    fa4cp_world_finalize(w);
    w = NULL;
    clear_env();
    cfg.visible_gpus = 0;
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_OK && fa4cp_world_table(w)[0].gpu == -1, "no GPU: gpu -1");
    fa4cp_world_finalize(w);
    w = NULL;

    /* ---- configuration errors */
    setenv("FA4CP_BOOTSTRAP", "mpi", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_ERR_INVALID, "FA4CP_BOOTSTRAP=mpi refused");
    like(fa4cp_last_error(), "not one of auto, local, slurm, pmix", "with the choices");
    clear_env();
    setenv("FA4CP_BOOTSTRAP_TIMEOUT", "-1", 1);
    ok(fa4cp_world_init(&cfg, &w) == FA4CP_ERR_INVALID, "negative timeout refused");
    clear_env();
    fa4cp_world_config bad = cfg;
    bad.struct_size = 0;
    ok(fa4cp_world_init(&bad, &w) == FA4CP_ERR_INVALID, "uninitialised config refused");
    fa4cp_world_row *t = NULL;
    int n = 0;
    ok(fa4cp_world_plan(0, 4, NULL, "block", 0, &t, &n) == FA4CP_ERR_INVALID, "plan of 0 nodes refused");
    ok(fa4cp_world_plan(2, 4, NULL, "plane", 0, &t, &n) == FA4CP_ERR_UNSUPPORTED, "plan 'plane' refused");

    /* ---- NCCL without a GPU: what can be checked */
    if (!fa4cp_nccl_available()) {
        skip(11, "built without NCCL");
    } else {
        fa4cp_nccl_comms cs;
        fa4cp_world_config one = FA4CP_WORLD_CONFIG_INIT;
        one.visible_gpus = 0;
        ok(fa4cp_world_init(&one, &w) == FA4CP_OK, "local world of 1");
        fa4cp_layout *l = NULL;
        fa4cp_layout_build(fa4cp_world_table(w), 1, 1, 0, 0, &l);
        ok(fa4cp_nccl_comm_create(w, l, NULL, &cs) != FA4CP_OK && !cs.world,
           "no GPU: NCCL communicators refused");
        like(fa4cp_last_error(), "GPU", "and the message says why");
        fa4cp_nccl_config nc = FA4CP_NCCL_CONFIG_INIT;
        ok(nc.timeout_s == 300.0 && nc.blocking == 0, "NCCL config defaults: 300 s watchdog, non-blocking");
        nc.timeout_s = 0;
        ok(fa4cp_nccl_comm_create(w, l, &nc, &cs) == FA4CP_ERR_INVALID, "watchdog timeout 0 refused");
        nc.timeout_s = 10;
        nc.struct_size = 0;
        ok(fa4cp_nccl_comm_create(w, l, &nc, &cs) == FA4CP_ERR_INVALID, "uninitialised NCCL config refused");
        /* the id needs no GPU: rank 0 makes it, the bootstrap carries it (here: in process) */
        unsigned char uid[128], zero[128] = {0};
        ok(fa4cp_nccl_unique_id(w, uid, sizeof uid) == FA4CP_OK && memcmp(uid, zero, sizeof uid) != 0,
           "rank 0's ncclUniqueId without a GPU (%s)", fa4cp_last_error());
        ok(fa4cp_nccl_unique_id(w, uid, 64) == FA4CP_ERR_INVALID, "an id buffer of the wrong size is refused");
        fa4cp_layout_destroy(l);
        l = NULL;
        fa4cp_world_finalize(w);
        w = NULL;
        one.local_ranks = 4;
        ok(fa4cp_world_init(&one, &w) == FA4CP_OK, "local world of 4 threads");
        fa4cp_layout_build(fa4cp_world_table(w), 4, 2, 0, 0, &l);
        ok(fa4cp_nccl_comm_create(w, l, NULL, &cs) == FA4CP_ERR_UNSUPPORTED,
           "nccl transport with 4 ranks in one process refused");
        like(fa4cp_last_error(), "use the local transport", "pointing to the local transport");
        fa4cp_layout_destroy(l);
        fa4cp_world_finalize(w);
        w = NULL;
    }
    return done_testing();
}
