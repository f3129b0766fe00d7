/* world_internal.h - the world object, shared by the files of lib/world/. */
#ifndef FA4CP_WORLD_INTERNAL_H
#define FA4CP_WORLD_INTERNAL_H

#include "core/internal.h"

struct fa4cp_world {
    fa4cp_world_kind kind;
    int rank, size, procs, nodes;
    double timeout_s;
    fa4cp_world_row *table; /* [size], by rank */
    unsigned seq;           /* exchange counter: every PMIx exchange gets a fresh key */
    void *pmix;             /* pmix.c's state */
    int visible_gpus;       /* from the config (-1 = detect) */
};

/* Fill `row` for this process: rank, node, local rank/size, host (NULL =
 * gethostname) and its GPU (world.c). */
void fa4cp_world_fill_row(fa4cp_world_row *row, int rank, int node, int local_rank,
                          int local_size, const char *host, int visible_override);
/* Make node ids dense 0..nodes-1 in the order of the ids given; returns nodes. */
int fa4cp_world_normalize_nodes(fa4cp_world_row *table, int n);

/* The tables of the Slurm environment and of local mode (world_table.c);
 * the task count of the Slurm step (0 outside one). */
fa4cp_status fa4cp_world_slurm_init(fa4cp_world *w);
fa4cp_status fa4cp_world_local_init(fa4cp_world *w, int ranks);
int fa4cp_world_slurm_step_tasks(void);

/* pmix.c; without PMIx in the build they fail with FA4CP_ERR_UNSUPPORTED. */
int fa4cp_pmix_built(void);
fa4cp_status fa4cp_pmix_init(fa4cp_world *w);
void fa4cp_pmix_finalize(fa4cp_world *w);
fa4cp_status fa4cp_pmix_allgather(fa4cp_world *w, const void *send, void *recv, size_t bytes);
fa4cp_status fa4cp_pmix_bcast(fa4cp_world *w, void *buf, size_t bytes);
fa4cp_status fa4cp_pmix_barrier(fa4cp_world *w);
void fa4cp_pmix_abort(fa4cp_world *w, const char *msg);

/* Test hooks for the integration test of a vanished or hung peer:
 * FA4CP_TEST_EXIT_RANK=r makes rank r exit(1) just before the first bootstrap
 * exchange; FA4CP_TEST_STALL_RANK=r makes it hang there. */
void fa4cp_world_test_exit_hook(int rank);

#endif
