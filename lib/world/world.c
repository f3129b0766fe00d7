/* world.c - how this process was started, and the world table.
 *
 * Order of detection (fa4cp_world_init, kind AUTO): PMIx when a PMIx server
 * launched us (PMIX_NAMESPACE in the environment); inside a Slurm step of
 * several tasks without PMIx: the singleton trap (an error) when PMIx is built
 * in, else the Slurm environment; otherwise local mode.  FA4CP_BOOTSTRAP
 * (pmix|slurm|local) overrides the detection.
 */
#include "world_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *kind_names[] = {"auto", "local", "slurm", "pmix", "plan"};

const char *fa4cp_world_kind_name(fa4cp_world_kind kind)
{
    if ((int)kind < 0 || (int)kind > FA4CP_WORLD_PLAN)
        return "?";
    return kind_names[kind];
}

fa4cp_status fa4cp_world_kind_parse(const char *name, fa4cp_world_kind *out)
{
    for (int i = 0; i <= FA4CP_WORLD_PLAN; i++)
        if (name && strcmp(name, kind_names[i]) == 0) {
            *out = (fa4cp_world_kind)i;
            return FA4CP_OK;
        }
    return fa4cp_set_error(FA4CP_ERR_INVALID,
                           "bootstrap '%s' is not one of auto, local, slurm, pmix",
                           name ? name : "(null)");
}

/* An integer environment variable: 1 if set and valid. */
int fa4cp_pmix_available(void) { return fa4cp_pmix_built(); }

/* ------------------------------------------------------------------ init and the rest */

fa4cp_status fa4cp_world_init(const fa4cp_world_config *cfg_in, fa4cp_world **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    fa4cp_world *w = NULL;
    if (!out)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_world_init: out is NULL");
    *out = NULL;
    if (cfg_in) {
        if (cfg_in->struct_size == 0 || cfg_in->struct_size > sizeof cfg)
            FA4CP_FAIL(FA4CP_ERR_INVALID,
                       "fa4cp_world_init: config struct_size %zu (initialise it with "
                       "FA4CP_WORLD_CONFIG_INIT)",
                       cfg_in->struct_size);
        memcpy(&cfg, cfg_in, cfg_in->struct_size);
    }
    const char *ek = getenv("FA4CP_BOOTSTRAP");
    if (cfg.kind == FA4CP_WORLD_AUTO && ek && *ek)
        FA4CP_TRY(fa4cp_world_kind_parse(ek, &cfg.kind));
    if (cfg.kind == FA4CP_WORLD_PLAN)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_world_init: a planned world comes from "
                                      "fa4cp_world_plan, not from a bootstrap");
    const char *et = getenv("FA4CP_BOOTSTRAP_TIMEOUT");
    if (et && *et) {
        char *end;
        double t = strtod(et, &end);
        if (*end || end == et || fa4cp_timeout_check("FA4CP_BOOTSTRAP_TIMEOUT", t))
            FA4CP_FAIL(FA4CP_ERR_INVALID, "FA4CP_BOOTSTRAP_TIMEOUT='%s' is not a number of seconds "
                                          "in (0, %.0f]", et, FA4CP_TIMEOUT_MAX_S);
        cfg.timeout_s = t;
    }
    FA4CP_TRY(fa4cp_timeout_check("fa4cp_world_init: timeout_s", cfg.timeout_s));

    if (cfg.kind == FA4CP_WORLD_AUTO) {
        const char *ns = getenv("PMIX_NAMESPACE");
        int tasks = fa4cp_world_slurm_step_tasks();
        if (ns && *ns && fa4cp_pmix_built())
            cfg.kind = FA4CP_WORLD_PMIX;
        else if (tasks > 1 && fa4cp_pmix_built())
            FA4CP_TRY(fa4cp_world_check_launch(NULL, 0)); /* the singleton trap: fails */
        else if (tasks > 1)
            cfg.kind = FA4CP_WORLD_SLURM;
        else
            cfg.kind = FA4CP_WORLD_LOCAL;
    }

    w = calloc(1, sizeof *w);
    if (!w)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "fa4cp_world_init: out of memory");
    w->kind = cfg.kind;
    w->timeout_s = cfg.timeout_s;
    w->visible_gpus = cfg.visible_gpus;
    switch (cfg.kind) {
    case FA4CP_WORLD_PMIX:
        FA4CP_TRY(fa4cp_pmix_init(w));
        break;
    case FA4CP_WORLD_SLURM:
        FA4CP_TRY(fa4cp_world_slurm_init(w));
        break;
    default:
        FA4CP_TRY(fa4cp_world_local_init(w, cfg.local_ranks));
        break;
    }
    if (!w->table || w->size <= 0 || w->rank < 0 || w->rank >= w->size)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "world: bootstrap gave rank %d of %d", w->rank, w->size);
    w->nodes = fa4cp_world_normalize_nodes(w->table, w->size);
    if (w->nodes < 0)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "fa4cp_world_init: out of memory");
    fa4cp_log_set_rank(w->rank);
    fa4cp_log(FA4CP_LOG_INFO, "world: %s, rank %d of %d on %d node%s, local rank %d, gpu %d",
              fa4cp_world_kind_name(w->kind), w->rank, w->size, w->nodes, w->nodes == 1 ? "" : "s",
              w->table[w->rank].local_rank, w->table[w->rank].gpu);
    *out = w;
    w = NULL;
out:
    fa4cp_world_finalize(w);
    return st;
}

void fa4cp_world_finalize(fa4cp_world *w)
{
    if (!w)
        return;
    if (w->mpi_end)
        w->mpi_end(); /* MPI, started by fa4cp_mpi_world_init for this world, ends first */
    if (w->kind == FA4CP_WORLD_PMIX)
        fa4cp_pmix_finalize(w);
    fa4cp_free(w->table);
    free(w);
}

fa4cp_world_kind fa4cp_world_kind_of(const fa4cp_world *w) { return w ? w->kind : FA4CP_WORLD_AUTO; }
int fa4cp_world_rank(const fa4cp_world *w) { return w ? w->rank : -1; }
int fa4cp_world_size(const fa4cp_world *w) { return w ? w->size : 0; }
int fa4cp_world_procs(const fa4cp_world *w) { return w ? w->procs : 0; }
int fa4cp_world_nodes(const fa4cp_world *w) { return w ? w->nodes : 0; }
double fa4cp_world_timeout(const fa4cp_world *w) { return w ? w->timeout_s : 0; }

fa4cp_status fa4cp_world_set_timeout(fa4cp_world *w, double timeout_s)
{
    if (!w || !(timeout_s > 0))
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_world_set_timeout: %s", w ? "timeout must be positive"
                                                                                     : "NULL world");
    /* a bound longer than the maximum is the maximum (no overflow below) */
    w->timeout_s = timeout_s < FA4CP_TIMEOUT_MAX_S ? timeout_s : FA4CP_TIMEOUT_MAX_S;
    return FA4CP_OK;
}
const fa4cp_world_row *fa4cp_world_table(const fa4cp_world *w) { return w ? w->table : NULL; }

const fa4cp_world_row *fa4cp_world_row_of(const fa4cp_world *w, int rank)
{
    if (!w || rank < 0 || rank >= w->size)
        return NULL;
    return &w->table[rank];
}

fa4cp_status fa4cp_world_allgather(fa4cp_world *w, const void *send, void *recv, size_t bytes)
{
    if (!w || (bytes && (!send || !recv)))
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_world_allgather: NULL argument");
    if (w->kind == FA4CP_WORLD_PMIX)
        return fa4cp_pmix_allgather(w, send, recv, bytes);
    if (w->procs == 1) {
        if (bytes)
            memmove(recv, send, bytes);
        return FA4CP_OK;
    }
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "the Slurm-environment bootstrap cannot exchange data between ranks: "
                           "launch with srun --mpi=pmix");
}

fa4cp_status fa4cp_world_bcast(fa4cp_world *w, void *buf, size_t bytes)
{
    if (!w || (bytes && !buf))
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_world_bcast: NULL argument");
    if (w->kind == FA4CP_WORLD_PMIX)
        return fa4cp_pmix_bcast(w, buf, bytes);
    if (w->procs == 1)
        return FA4CP_OK;
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "the Slurm-environment bootstrap cannot exchange data between ranks: "
                           "launch with srun --mpi=pmix");
}

fa4cp_status fa4cp_world_barrier(fa4cp_world *w)
{
    if (!w)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_world_barrier: NULL world");
    if (w->kind == FA4CP_WORLD_PMIX)
        return fa4cp_pmix_barrier(w);
    if (w->procs == 1)
        return FA4CP_OK;
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "the Slurm-environment bootstrap has no barrier: launch with srun "
                           "--mpi=pmix");
}

void fa4cp_world_abort(fa4cp_world *w, const char *msg)
{
    char host[FA4CP_HOST_MAX] = "?";
    int rank = w ? w->rank : -1;
    if (w && w->table)
        snprintf(host, sizeof host, "%s", w->table[w->rank].host);
    else
        gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    char line[1024];
    snprintf(line, sizeof line, "rank %d on %s: %s", rank, host, msg ? msg : "aborted");
    fprintf(stderr, "fa4cp: abort: %s\n", line);
    fflush(stderr);
    if (w && w->kind == FA4CP_WORLD_PMIX)
        fa4cp_pmix_abort(w, line); /* does not return when PMIx_Abort works */
    exit(3);
}

