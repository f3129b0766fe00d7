/* run_world.c - the runner's facts of the world and of a case: bringing the
 * world up, host and GPU memory, the library versions, short texts of a
 * case for the tables. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run.h"
#include "core/internal.h"

#include "run_gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#ifdef HAVE_NCCL
#include <nccl.h>
#endif



/* Bring up the world (PMIx under srun --mpi=pmix, the Slurm environment, or
 * local mode with `ranks` threads); returns an exit code. */
int run_world_up(world_info *w, int ranks)
{
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    memset(w, 0, sizeof *w);
    cfg.local_ranks = ranks;
    fa4cp_status st = fa4cp_world_init(&cfg, &w->world);
    if (st) /* the caller prints fa4cp_last_error() */
        return st == FA4CP_ERR_LAUNCH ? RUN_LAUNCH : st == FA4CP_ERR_TIMEOUT ? RUN_TIMEOUT : RUN_RUNTIME;
    w->kind = fa4cp_world_kind_name(fa4cp_world_kind_of(w->world));
    w->rank = fa4cp_world_rank(w->world);
    w->size = fa4cp_world_size(w->world);
    w->procs = fa4cp_world_procs(w->world);
    w->nodes = fa4cp_world_nodes(w->world);
    w->table = fa4cp_world_table(w->world);
    const fa4cp_world_row *me = fa4cp_world_row_of(w->world, w->rank);
    snprintf(w->host, sizeof w->host, "%s", me ? me->host : "?");
    return 0;
}

int run_world_plan(world_info *w, int nodes, const char *tpn, const char *dist)
{
    memset(w, 0, sizeof *w);
    if (dist && strcmp(dist, "block") && strcmp(dist, "cyclic")) {
        fa4cp_set_error(FA4CP_ERR_INVALID, "--distribution %s: expected block or cyclic", dist);
        return RUN_USAGE;
    }
    int *counts = calloc((size_t)nodes, sizeof(int)), k = 0, rc = RUN_OK;
    if (!counts) {
        fa4cp_set_error(FA4CP_ERR_NOMEM, "planning %d nodes: out of memory", nodes);
        return RUN_RUNTIME;
    }
    if (fa4cp_tasks_per_node_parse(tpn, counts, nodes, &k) != FA4CP_OK || (k != 1 && k != nodes)) {
        char why[512];
        snprintf(why, sizeof why, "%s", fa4cp_last_error());
        fa4cp_set_error(FA4CP_ERR_INVALID, "--tasks-per-node %s: want one count or %d (one per node)%s%s", tpn,
                        nodes, why[0] ? ": " : "", why);
        rc = RUN_USAGE;
    } else {
        for (int i = k; i < nodes; i++)
            counts[i] = counts[0];
        if (fa4cp_world_plan(nodes, 0, counts, dist ? dist : "block", -1, &w->planned, &w->size) != FA4CP_OK)
            rc = RUN_USAGE;
    }
    free(counts);
    if (rc)
        return rc;
    w->table = w->planned;
    w->procs = w->size;
    w->nodes = nodes;
    w->kind = "plan";
    snprintf(w->host, sizeof w->host, "(planned: %d node(s) x %s task(s), %s)", nodes, tpn, dist ? dist : "block");
    return RUN_OK;
}

double run_host_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

const char *run_mask_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->window_left >= 0 && !c->causal && c->window_right != c->window_left)
        snprintf(buf, len, "full w%d/%d", c->window_left, c->window_right);
    else if (c->window_left >= 0)
        snprintf(buf, len, "%s w%d", c->causal ? "causal" : "full", c->window_left);
    else
        snprintf(buf, len, "%s", c->causal ? "causal" : "full");
    return buf;
}

/* "fa4cp 0.1.0, NCCL 2.27.7, CUDA runtime 13.0 (kernels sm_90a), driver 13.0".
 * The driver is asked only when query_driver (not in a dry run). */
void run_versions(char *buf, size_t len, int query_driver)
{
    size_t at = (size_t)snprintf(buf, len, "fa4cp %s", fa4cp_version());
#ifdef HAVE_NCCL
    int nv = 0;
    if (ncclGetVersion(&nv) == ncclSuccess && nv > 0 && at < len)
        at += (size_t)snprintf(buf + at, len - at, ", NCCL %d.%d.%d", nv / 10000, nv % 10000 / 100, nv % 100);
#else
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", NCCL none");
#endif
#ifdef HAVE_CUDA
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", CUDA %d.%d (kernels sm_%s)", CUDART_VERSION / 1000,
                               CUDART_VERSION % 1000 / 10, FA4CP_CUDA_ARCH);
#else
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", CUDA none (cpu build)");
#endif
    /* the driver through libcuda itself: no link dependency, no GPU touched */
    int dv = 0;
    if (query_driver) {
        void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (h) {
            int (*get)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
            if (!get || get(&dv) != 0)
                dv = 0;
            dlclose(h);
        }
    }
    if (at < len) {
        if (dv > 0)
            at += (size_t)snprintf(buf + at, len - at, ", driver CUDA %d.%d", dv / 1000, dv % 1000 / 10);
        else
            at += (size_t)snprintf(buf + at, len - at, ", driver %s", query_driver ? "none" : "not queried (dry run)");
    }
}

void run_heads_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->kv_heads == c->heads)
        snprintf(buf, len, "%d", c->heads);
    else
        snprintf(buf, len, "%d/%d", c->heads, c->kv_heads);
}

void run_dims_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->head_dim_v == c->head_dim)
        snprintf(buf, len, "%d", c->head_dim);
    else
        snprintf(buf, len, "%d/%d", c->head_dim, c->head_dim_v);
}

/* GPUs that `ranks` ranks really use: one each, except on the cuda backend
 * in one process, where rank r runs on GPU r % (visible GPUs) */
int run_gpus_used(const fa4cp_case *c, const world_info *w, int ranks)
{
    if (c->backend == FA4CP_BACKEND_CUDA && w->procs == 1) {
        int n = run_visible_gpus();
        if (n > 0 && n < ranks)
            return n;
    }
    return ranks;
}

/* A cuda case must fit the free memory of every GPU of this process's
 * ranks (ranks that share a GPU add up).  0 when it fits or NVML cannot
 * tell (nothing to check against); else RUN_RUNTIME with the numbers. */
int run_check_gpu_memory(const fa4cp_case *c, const world_info *w, char *msg, size_t len)
{
    size_t need = fa4cp_case_memory(c, 1);
    for (int r = 0; r < w->size; r++) {
        const fa4cp_world_row *row = &w->table[r];
        if (row->gpu < 0 || (w->procs > 1 && r != w->rank))
            continue;
        int first = 1, n = 0;
        for (int q = 0; q < w->size; q++) {
            const fa4cp_world_row *o = &w->table[q];
            if (o->gpu < 0 || strcmp(o->host, row->host) || o->gpu != row->gpu || strcmp(o->gpu_id, row->gpu_id))
                continue;
            if (q < r)
                first = 0;
            n++;
        }
        if (!first)
            continue; /* this GPU was checked with its first rank */
        size_t free_b = 0, total_b = 0;
        char name[96], why[160];
        if (run_gpu_memory(row, &free_b, &total_b, name, sizeof name, why, sizeof why)) {
            fa4cp_log(FA4CP_LOG_INFO, "no GPU memory check: %s", why);
            return 0;
        }
        if ((double)need * n > (double)free_b) {
            snprintf(msg, len,
                     "needs an estimated %.2f GiB per rank, %.2f GiB for the %d rank(s) on GPU %d (%s%s%s) of %s, "
                     "which has %.2f GiB free of %.2f GiB; use a larger cp.size, fewer tokens%s",
                     need / 1073741824.0, need * (double)n / 1073741824.0, n, row->gpu, name,
                     row->gpu_id[0] ? ", " : "", row->gpu_id, row->host, free_b / 1073741824.0,
                     total_b / 1073741824.0, c->check == FA4CP_CHECK_FULL ? ", or check: sampled" : "");
            return RUN_RUNTIME;
        }
    }
    return 0;
}

