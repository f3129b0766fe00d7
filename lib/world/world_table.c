/* world_table.c - the rows of the world table: this process's row and its
 * GPU, the dense node ids, the GPU and launch checks (the singleton trap),
 * and the tables of the Slurm environment, of a made-up cluster and of local
 * mode.  Used by world.c and pmix.c, which call nothing of each other's
 * but the bootstrap (world.c -> pmix.c). */
#include "world_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAP_MSG                                                                                   \
    "launched by srun without PMIx: use srun --mpi=pmix (srun --mpi=list shows what this "        \
    "cluster offers)"

static int env_int(const char *name, long *v)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end)
        return 0;
    *v = x;
    return 1;
}

/* ------------------------------------------------------------------ GPUs */

/* Entry i of a comma-separated list into buf; returns the number of entries. */
static int list_entry(const char *list, int i, char *buf, size_t len)
{
    int k = 0;
    const char *p = list;
    if (buf && len)
        buf[0] = '\0';
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0) {
            if (k == i && buf)
                snprintf(buf, len, "%.*s", (int)l, p);
            k++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return k;
}

/* Devices this process sees, without touching a GPU: CUDA_VISIBLE_DEVICES, or
 * the /dev/nvidiaN files. */
static int count_visible(void)
{
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (cvd) {
        if (strcmp(cvd, "NoDevFiles") == 0)
            return 0;
        return list_entry(cvd, -1, NULL, 0);
    }
    int n = 0;
    DIR *d = opendir("/dev");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, "nvidia", 6) != 0 || !s[6])
            continue;
        int digits = 1;
        for (const char *q = s + 6; *q; q++)
            if (*q < '0' || *q > '9')
                digits = 0;
        n += digits;
    }
    closedir(d);
    return n;
}

void fa4cp_world_fill_row(fa4cp_world_row *row, int rank, int node, int local_rank,
                          int local_size, const char *host, int visible_override)
{
    memset(row, 0, sizeof *row);
    row->rank = rank;
    row->node = node;
    row->local_rank = local_rank;
    row->local_size = local_size;
    if (host) {
        snprintf(row->host, sizeof row->host, "%s", host);
    } else if (gethostname(row->host, sizeof row->host) != 0) {
        snprintf(row->host, sizeof row->host, "?");
    }
    row->host[sizeof row->host - 1] = '\0';

    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    int visible = visible_override >= 0 ? visible_override : count_visible();
    if (visible <= 0) {
        row->gpu = -1;
        return;
    }
    /* one visible device (srun --gpus-per-task): device 0; else local rank modulo */
    row->gpu = visible == 1 ? 0 : local_rank % visible;
    if (visible_override < 0 && cvd)
        list_entry(cvd, row->gpu, row->gpu_id, sizeof row->gpu_id);
    else
        snprintf(row->gpu_id, sizeof row->gpu_id, "%d", row->gpu);
    const char *gpt = getenv("SLURM_GPUS_PER_TASK");
    row->gpu_exclusive = visible == 1 && gpt && *gpt;
}

/* (node, GPU id, rank) of a rank that shares its GPU unless told otherwise */
typedef struct gpu_key {
    int node, rank;
    const char *gpu_id;
} gpu_key;

static int cmp_gpu_key(const void *a, const void *b)
{
    const gpu_key *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    int c = strcmp(x->gpu_id, y->gpu_id);
    if (c)
        return c;
    return x->rank < y->rank ? -1 : (x->rank > y->rank);
}

/* Sorted by (node, GPU id, rank), ranks on one GPU are neighbours: O(n log n)
 * (every pair was compared before: 85 s for 16384 nodes of 8).  The pair
 * named is the one a pairwise scan finds first: the lowest rank that shares
 * its GPU, and the next rank on that GPU. */
fa4cp_status fa4cp_world_check_gpus(const fa4cp_world_row *t, int n)
{
    gpu_key *k = malloc(sizeof *k * (size_t)(n > 0 ? n : 1));
    if (!k)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "checking the GPUs of %d ranks: out of memory", n);
    int m = 0;
    for (int r = 0; r < n; r++)
        if (t[r].gpu >= 0 && !t[r].gpu_exclusive)
            k[m++] = (gpu_key){t[r].node, r, t[r].gpu_id};
    qsort(k, (size_t)m, sizeof *k, cmp_gpu_key);
    int a = -1, b = -1;
    for (int i = 0; i + 1 < m; i++)
        if (k[i].node == k[i + 1].node && !strcmp(k[i].gpu_id, k[i + 1].gpu_id) && (a < 0 || k[i].rank < a)) {
            a = k[i].rank;
            b = k[i + 1].rank;
            while (i + 1 < m && k[i].node == k[i + 1].node && !strcmp(k[i].gpu_id, k[i + 1].gpu_id))
                i++; /* the rest of this GPU's ranks */
        }
    free(k);
    if (a >= 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "ranks %d and %d on %s would both use GPU %s (device %d): NCCL cannot run two "
                               "ranks on one GPU; run at most one task per GPU (--ntasks-per-node <= GPUs, or "
                               "--gpus-per-task=1)",
                               a, b, t[a].host, t[a].gpu_id, t[a].gpu);
    return FA4CP_OK;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : (x > y);
}

int fa4cp_world_normalize_nodes(fa4cp_world_row *t, int n)
{
    /* dense ids in increasing order of the given ids: sort, unique, search */
    int nodes = 0;
    int *ids = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!ids)
        return -1;
    for (int r = 0; r < n; r++)
        ids[r] = t[r].node;
    qsort(ids, (size_t)n, sizeof(int), cmp_int);
    for (int r = 0; r < n; r++)
        if (!nodes || ids[nodes - 1] != ids[r])
            ids[nodes++] = ids[r];
    for (int r = 0; r < n; r++) {
        const int *at = bsearch(&t[r].node, ids, (size_t)nodes, sizeof(int), cmp_int);
        t[r].node = (int)(at - ids);
    }
    free(ids);
    return nodes;
}

/* ------------------------------------------------------------------ the singleton trap */

/* Tasks of the Slurm step this process belongs to; 0 outside a step. */
int fa4cp_world_slurm_step_tasks(void)
{
    long procid, tasks, step;
    if (!env_int("SLURM_PROCID", &procid))
        return 0;
    if (env_int("SLURM_STEP_NUM_TASKS", &tasks))
        return (int)tasks;
    /* srun sets SLURM_STEP_ID; the batch script's own step does not count */
    if (env_int("SLURM_STEP_ID", &step) && step < 0x7ffffff0 && env_int("SLURM_NTASKS", &tasks))
        return (int)tasks;
    return 0;
}

fa4cp_status fa4cp_world_check_launch(const char *pmix_nspace, int pmix_job_size)
{
    int tasks = fa4cp_world_slurm_step_tasks();
    long procid = 0;
    env_int("SLURM_PROCID", &procid);
    if (tasks <= 1)
        return FA4CP_OK;
    if (!pmix_nspace || strncmp(pmix_nspace, "singleton", 9) == 0)
        return fa4cp_set_error(FA4CP_ERR_LAUNCH, "task %ld of a %d-task Slurm step: " TRAP_MSG,
                               procid, tasks);
    if (pmix_job_size > 0 && pmix_job_size != tasks)
        return fa4cp_set_error(FA4CP_ERR_LAUNCH,
                               "PMIx says the job has %d processes but the Slurm step has %d "
                               "tasks (SLURM_STEP_NUM_TASKS): was it started with one srun "
                               "--mpi=pmix, not nested inside another launcher?",
                               pmix_job_size, tasks);
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ planned and Slurm tables */

/* Place ranks over nodes block or cyclic; hosts from a hostlist or node1... */
static fa4cp_status place_rows(int nodes, const int *counts, const char *distribution,
                               const char *hostlist, int gpus_per_node, fa4cp_world_row *rows,
                               int n)
{
    fa4cp_status st = FA4CP_OK;
    int *filled = calloc((size_t)nodes, sizeof(int));
    int *next = malloc(sizeof(int) * (size_t)nodes);  /* cyclic: the next node not yet full */
    int *first = malloc(sizeof(int) * (size_t)nodes); /* the first rank placed on a node */
    int cyclic;
    if (!filled || !next || !first)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "world table of %d nodes: out of memory", nodes);
    for (int i = 0; i < nodes; i++) {
        next[i] = (i + 1) % nodes;
        first[i] = -1;
    }
    if (!distribution || strncmp(distribution, "block", 5) == 0)
        cyclic = 0;
    else if (strncmp(distribution, "cyclic", 6) == 0)
        cyclic = 1;
    else
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "distribution '%s': only block and cyclic can be rebuilt; under srun use "
                   "--mpi=pmix, which reports the real placement",
                   distribution);
    /* O(n): cyclic placement walks a circular list of the nodes not yet full
     * (a full node is unlinked), and each node's host name is looked up once */
    int node = 0, prev = nodes - 1;
    for (int r = 0; r < n; r++) {
        if (!cyclic) {
            while (node < nodes && filled[node] == counts[node])
                node++;
        } else {
            while (node < nodes && filled[node] >= counts[node]) { /* unlink a full node */
                if (next[node] == node) {
                    node = nodes; /* none left */
                } else {
                    next[prev] = next[node];
                    node = next[node];
                }
            }
        }
        if (node >= nodes || filled[node] >= counts[node])
            FA4CP_FAIL(FA4CP_ERR_INTERNAL, "world table: rank %d has no node", r);
        fa4cp_world_row *w = &rows[r];
        memset(w, 0, sizeof *w);
        w->rank = r;
        w->node = node;
        w->local_rank = filled[node]++;
        w->local_size = counts[node];
        if (first[node] >= 0)
            memcpy(w->host, rows[first[node]].host, sizeof w->host);
        else if (hostlist)
            FA4CP_TRY(fa4cp_hostlist_nth(hostlist, node, w->host, sizeof w->host));
        else
            snprintf(w->host, sizeof w->host, "node%d", node + 1);
        if (first[node] < 0)
            first[node] = r;
        if (gpus_per_node == 0) {
            w->gpu = -1;
        } else {
            w->gpu = gpus_per_node < 0 ? w->local_rank : w->local_rank % gpus_per_node;
            snprintf(w->gpu_id, sizeof w->gpu_id, "%d", w->gpu);
        }
        if (cyclic) {
            prev = node;
            node = next[node];
        }
    }
out:
    free(filled);
    free(next);
    free(first);
    return st;
}

fa4cp_status fa4cp_world_plan(int nodes, int tasks, const int *tasks_per_node,
                              const char *distribution, int gpus_per_node,
                              fa4cp_world_row **table, int *n)
{
    fa4cp_status st = FA4CP_OK;
    int *counts = NULL;
    fa4cp_world_row *rows = NULL;
    if (!table || !n)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_world_plan: NULL output");
    *table = NULL;
    *n = 0;
    if (nodes <= 0 || nodes > 100000)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "planning: %d nodes (want 1 or more)", nodes);
    counts = malloc(sizeof(int) * (size_t)nodes);
    if (!counts)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "planning: out of memory");
    long total = 0;
    for (int i = 0; i < nodes; i++) {
        counts[i] = tasks_per_node ? tasks_per_node[i] : tasks;
        if (counts[i] <= 0 || counts[i] > 4096)
            FA4CP_FAIL(FA4CP_ERR_INVALID, "planning: node %d has %d tasks (want 1..4096)", i,
                       counts[i]);
        total += counts[i];
    }
    if (total > 1000000)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "planning: %ld ranks is too many", total);
    rows = fa4cp_calloc((size_t)total, sizeof *rows, "planned world table");
    if (!rows)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "planning: out of memory");
    FA4CP_TRY(place_rows(nodes, counts, distribution, NULL, gpus_per_node, rows, (int)total));
    *table = rows;
    *n = (int)total;
    rows = NULL;
out:
    free(counts);
    fa4cp_free(rows);
    return st;
}

/* The world table from the Slurm environment: every rank's place follows from
 * the step's node list, tasks per node and distribution; this process checks
 * its own row against SLURM_NODEID/SLURM_LOCALID. */
fa4cp_status fa4cp_world_slurm_init(fa4cp_world *w)
{
    fa4cp_status st = FA4CP_OK;
    int *counts = NULL;
    long procid, localid, nodeid, ntasks;
    if (!env_int("SLURM_PROCID", &procid) || !env_int("SLURM_LOCALID", &localid) ||
        !env_int("SLURM_NODEID", &nodeid))
        FA4CP_FAIL(FA4CP_ERR_LAUNCH,
                   "Slurm bootstrap: SLURM_PROCID, SLURM_LOCALID or SLURM_NODEID is missing: "
                   "start the program with srun");
    if (!env_int("SLURM_STEP_NUM_TASKS", &ntasks) && !env_int("SLURM_NTASKS", &ntasks))
        FA4CP_FAIL(FA4CP_ERR_LAUNCH, "Slurm bootstrap: SLURM_STEP_NUM_TASKS and SLURM_NTASKS are "
                                     "missing: start the program with srun");
    const char *nodelist = getenv("SLURM_STEP_NODELIST");
    if (!nodelist)
        nodelist = getenv("SLURM_JOB_NODELIST");
    const char *tpn = getenv("SLURM_STEP_TASKS_PER_NODE");
    if (!tpn)
        tpn = getenv("SLURM_TASKS_PER_NODE");
    const char *dist = getenv("SLURM_DISTRIBUTION");
    if (!nodelist || !tpn)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH, "Slurm bootstrap: SLURM_STEP_NODELIST or "
                                     "SLURM_STEP_TASKS_PER_NODE is missing: start with srun");
    int nodes;
    FA4CP_TRY(fa4cp_hostlist_count(nodelist, &nodes));
    counts = malloc(sizeof(int) * (size_t)nodes);
    if (!counts)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "Slurm bootstrap: out of memory");
    int ncounts = 0;
    FA4CP_TRY(fa4cp_tasks_per_node_parse(tpn, counts, nodes, &ncounts));
    long total = 0;
    for (int i = 0; i < ncounts; i++)
        total += counts[i];
    if (ncounts != nodes || total != ntasks)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH,
                   "Slurm bootstrap: nodes '%s' (%d) and tasks per node '%s' (%ld tasks) do not "
                   "match a step of %ld tasks",
                   nodelist, nodes, tpn, total, ntasks);
    if (procid < 0 || procid >= ntasks)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH, "Slurm bootstrap: SLURM_PROCID %ld is not below %ld", procid,
                   ntasks);
    w->table = fa4cp_calloc((size_t)ntasks, sizeof *w->table, "world table");
    if (!w->table)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "Slurm bootstrap: out of memory");
    FA4CP_TRY(place_rows(nodes, counts, dist, nodelist, 0, w->table, (int)ntasks));
    fa4cp_world_row *me = &w->table[procid];
    if (me->node != nodeid || me->local_rank != localid)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH,
                   "Slurm bootstrap: rebuilt placement puts rank %ld on node %d as local rank %d, "
                   "but SLURM_NODEID=%ld SLURM_LOCALID=%ld (distribution '%s'): use srun "
                   "--mpi=pmix",
                   procid, me->node, me->local_rank, nodeid, localid, dist ? dist : "block");
    /* GPUs: this process knows its own; the others are assumed to see as many */
    fa4cp_world_row mine;
    fa4cp_world_fill_row(&mine, (int)procid, me->node, me->local_rank, me->local_size, me->host,
                         w->visible_gpus);
    int vis = w->visible_gpus >= 0 ? w->visible_gpus : count_visible();
    if (vis < 1)
        vis = 1;
    for (long r = 0; r < ntasks; r++) {
        fa4cp_world_row *x = &w->table[r];
        if (mine.gpu < 0) {
            x->gpu = -1;
            continue;
        }
        if (r == procid) {
            x->gpu = mine.gpu;
            memcpy(x->gpu_id, mine.gpu_id, sizeof x->gpu_id);
            x->gpu_exclusive = mine.gpu_exclusive;
        } else {
            x->gpu = mine.gpu_exclusive ? 0 : x->local_rank % vis;
            snprintf(x->gpu_id, sizeof x->gpu_id, "%d", x->gpu);
            x->gpu_exclusive = mine.gpu_exclusive;
        }
    }
    w->rank = (int)procid;
    w->size = (int)ntasks;
    w->procs = (int)ntasks;
out:
    free(counts);
    return st;
}

fa4cp_status fa4cp_world_local_init(fa4cp_world *w, int ranks)
{
    fa4cp_status st = FA4CP_OK;
    if (ranks <= 0 || ranks > 4096)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "local mode: %d ranks (want 1..4096)", ranks);
    w->table = fa4cp_calloc((size_t)ranks, sizeof *w->table, "world table");
    if (!w->table)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "local mode: out of memory");
    for (int r = 0; r < ranks; r++)
        fa4cp_world_fill_row(&w->table[r], r, 0, r, ranks, NULL, w->visible_gpus);
    w->rank = 0;
    w->size = ranks;
    w->procs = 1;
out:
    return st;
}

void fa4cp_world_test_exit_hook(int rank)
{
    long r;
    if (env_int("FA4CP_TEST_STALL_RANK", &r) && r == rank) {
        fprintf(stderr, "fa4cp: FA4CP_TEST_STALL_RANK=%ld: rank %d hangs before the exchange\n", r,
                rank);
        fflush(stderr);
        for (;;)
            pause();
    }
    if (env_int("FA4CP_TEST_EXIT_RANK", &r) && r == rank) {
        fprintf(stderr, "fa4cp: FA4CP_TEST_EXIT_RANK=%ld: rank %d exits before the exchange\n", r,
                rank);
        fflush(stderr);
        _exit(1);
    }
}

