/* nccl_boot.c - the NCCL bootstrap of a world: rank 0's unique id to every
 * rank (over PMIx, or NCCL_COMM_ID derived from the Slurm environment), the
 * world communicator and its CP and DP splits by the layout.  The
 * communicators it makes become fa4cp_comm endpoints of the nccl transport
 * (lib/comm/comm_nccl.c), which knows nothing of the world. */
#include "comm/comm_nccl.h"
#include "world_internal.h"
#include "core/checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fa4cp_status fa4cp_nccl_comm_id_from_slurm(char *buf, size_t len)
{
    fa4cp_status st = FA4CP_OK;
    char host[FA4CP_HOST_MAX];
    const char *nl = getenv("SLURM_STEP_NODELIST");
    const char *job = getenv("SLURM_JOB_ID");
    const char *step = getenv("SLURM_STEP_ID");
    if (!nl)
        nl = getenv("SLURM_JOB_NODELIST");
    if (!nl || !job)
        FA4CP_FAIL(FA4CP_ERR_LAUNCH, "NCCL_COMM_ID from Slurm: SLURM_STEP_NODELIST or "
                                     "SLURM_JOB_ID is missing (not inside srun?)");
    FA4CP_TRY(fa4cp_hostlist_nth(nl, 0, host, sizeof host));
    unsigned long j = strtoul(job, NULL, 10), s = step ? strtoul(step, NULL, 10) : 0;
    unsigned port = 20000u + (unsigned)((j * 16ul + s) % 10000ul);
    if ((size_t)snprintf(buf, len, "%s:%u", host, port) >= len)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "NCCL_COMM_ID '%s:%u' does not fit in %zu bytes", host,
                   port, len);
out:
    return st;
}

#ifndef HAVE_NCCL
static fa4cp_status no_nccl(void)
{
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "this libfa4cp was built without NCCL (configure --with-nccl)");
}

fa4cp_status fa4cp_nccl_unique_id(fa4cp_world *w, void *id, size_t bytes)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(id);
    FA4CP_UNUSED(bytes);
    return no_nccl();
}

fa4cp_status fa4cp_nccl_comm_create(fa4cp_world *w, const fa4cp_layout *l,
                                    const fa4cp_nccl_config *cfg, fa4cp_nccl_comms *out)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(l);
    FA4CP_UNUSED(cfg);
    if (out)
        memset(out, 0, sizeof *out);
    return no_nccl();
}

void fa4cp_nccl_comms_destroy(fa4cp_nccl_comms *c) { FA4CP_UNUSED(c); }

#else /* HAVE_NCCL */

#include <cuda_runtime.h>

fa4cp_status fa4cp_nccl_unique_id(fa4cp_world *w, void *id, size_t bytes)
{
    fa4cp_status st = FA4CP_OK;
    ncclUniqueId uid;
    ncclResult_t r;
    memset(&uid, 0, sizeof uid);
    if (!w || !id || bytes != sizeof uid)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_nccl_unique_id: want a world and %zu bytes",
                   sizeof uid);
    if (w->kind == FA4CP_WORLD_SLURM && w->procs > 1) {
        /* no exchange: every rank derives the same NCCL_COMM_ID, and rank 0's
         * ncclCommInitRank starts the bootstrap root there */
        char cid[128];
        if (!getenv("NCCL_COMM_ID")) {
            FA4CP_TRY(fa4cp_nccl_comm_id_from_slurm(cid, sizeof cid));
            setenv("NCCL_COMM_ID", cid, 1);
            fa4cp_log(FA4CP_LOG_INFO, "NCCL_COMM_ID=%s (Slurm fallback)", cid);
        }
        r = ncclGetUniqueId(&uid);
        if (r != ncclSuccess)
            FA4CP_FAIL(FA4CP_ERR_NCCL, "ncclGetUniqueId with NCCL_COMM_ID=%s: %s",
                       getenv("NCCL_COMM_ID"), ncclGetErrorString(r));
    } else {
        if (w->rank == 0) {
            FA4CP_NCCL_TRY("the NCCL unique id", ncclGetUniqueId(&uid));
        }
        FA4CP_TRY(fa4cp_world_bcast(w, &uid, sizeof uid));
    }
    memcpy(id, &uid, sizeof uid);
out:
    return st;
}

/* Split *parent for (color, key) into *child, group kind "cp" or "dp", and
 * wait until both are settled: a non-blocking parent is busy until its part
 * of the split is done too.  A comm that settle aborted is set to NULL. */
static fa4cp_status split(ncclComm_t *parent, int color, int key, int blocking, const char *kind,
                          double timeout_s, ncclComm_t *child)
{
    fa4cp_status st = FA4CP_OK;
    ncclConfig_t sc = NCCL_CONFIG_INITIALIZER;
    sc.blocking = blocking;
    sc.commName = strcmp(kind, "cp") == 0 ? "fa4cp-cp" : "fa4cp-dp";
    char label[32];
    ncclResult_t r = ncclCommSplit(*parent, color, key, child, &sc);
    snprintf(label, sizeof label, "%s%d", kind, color);
    if (r != ncclSuccess && r != ncclInProgress)
        FA4CP_FAIL(FA4CP_ERR_NCCL, "ncclCommSplit (%s group %d): %s",
                   strcmp(kind, "cp") == 0 ? "CP" : "DP", color, ncclGetErrorString(r));
    st = fa4cp_nccl_settle(*child, r, "ncclCommSplit", label, timeout_s);
    if (st != FA4CP_OK) {
        *child = NULL;
        goto out;
    }
    st = fa4cp_nccl_settle(*parent, ncclInProgress, "ncclCommSplit (parent)", "world", timeout_s);
    if (st != FA4CP_OK)
        *parent = NULL;
out:
    return st;
}

fa4cp_status fa4cp_nccl_comm_create(fa4cp_world *w, const fa4cp_layout *l,
                                    const fa4cp_nccl_config *cfg_in, fa4cp_nccl_comms *out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_nccl_config cfg = FA4CP_NCCL_CONFIG_INIT;
    ncclComm_t world = NULL, cp = NULL, dp = NULL;
    fa4cp_nccl_comms made = {0};
    if (!out)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_nccl_comm_create: out is NULL");
    memset(out, 0, sizeof *out);
    if (!w || !l)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_nccl_comm_create: NULL world or layout");
    if (cfg_in) {
        if (cfg_in->struct_size == 0 || cfg_in->struct_size > sizeof cfg)
            FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_nccl_comm_create: config struct_size %zu (use "
                                          "FA4CP_NCCL_CONFIG_INIT)", cfg_in->struct_size);
        memcpy(&cfg, cfg_in, cfg_in->struct_size);
    }
    FA4CP_TRY(fa4cp_timeout_check("fa4cp_nccl_comm_create: timeout_s", cfg.timeout_s));
    if (fa4cp_layout_size(l) != w->size)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_nccl_comm_create: layout of %d ranks for a world of %d",
                   fa4cp_layout_size(l), w->size);
    if (w->procs != w->size)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "the nccl transport needs one process per rank; local mode has %d ranks in one "
                   "process: use the local transport",
                   w->size);
    const fa4cp_world_row *me = &w->table[w->rank];
    if (me->gpu < 0)
        FA4CP_FAIL(FA4CP_ERR_CUDA,
                   "rank %d on %s sees no GPU: the nccl transport needs one GPU per rank", w->rank,
                   me->host);
    FA4CP_TRY(fa4cp_world_check_gpus(w->table, w->size));
    cudaError_t e = cudaSetDevice(me->gpu);
    if (e != cudaSuccess)
        FA4CP_FAIL(FA4CP_ERR_CUDA, "rank %d on %s: cudaSetDevice(%d) (GPU %s): %s", w->rank,
                   me->host, me->gpu, me->gpu_id, cudaGetErrorString(e));

    ncclUniqueId uid;
    FA4CP_TRY(fa4cp_nccl_unique_id(w, &uid, sizeof uid));
    ncclConfig_t nc = NCCL_CONFIG_INITIALIZER;
    nc.blocking = cfg.blocking ? 1 : 0;
    nc.commName = "fa4cp-world";
    ncclResult_t r = ncclCommInitRankConfig(&world, w->size, uid, w->rank, &nc);
    if (r != ncclSuccess && r != ncclInProgress)
        FA4CP_FAIL(FA4CP_ERR_NCCL, "ncclCommInitRankConfig (rank %d of %d): %s (%s)", w->rank,
                   w->size, ncclGetErrorString(r), ncclGetLastError(NULL));
    st = fa4cp_nccl_settle(world, r, "ncclCommInitRankConfig", "world", cfg.timeout_s);
    if (st != FA4CP_OK) {
        world = NULL; /* settle aborted it */
        goto out;
    }

    fa4cp_layout_place pl;
    FA4CP_TRY(fa4cp_layout_place_of(l, w->rank, &pl));
    char label[32];
    FA4CP_TRY(split(&world, pl.cp_group, pl.cp_rank, nc.blocking, "cp", cfg.timeout_s, &cp));
    FA4CP_TRY(split(&world, pl.dp_group, pl.dp_rank, nc.blocking, "dp", cfg.timeout_s, &dp));

    st = fa4cp_nccl_comm_wrap(world, me->gpu, cfg.timeout_s, "world", &made.world);
    world = NULL; /* owned by made.world, or destroyed by wrap */
    if (st != FA4CP_OK)
        goto out;
    snprintf(label, sizeof label, "cp%d", pl.cp_group);
    st = fa4cp_nccl_comm_wrap(cp, me->gpu, cfg.timeout_s, label, &made.cp);
    cp = NULL;
    if (st != FA4CP_OK)
        goto out;
    snprintf(label, sizeof label, "dp%d", pl.dp_group);
    st = fa4cp_nccl_comm_wrap(dp, me->gpu, cfg.timeout_s, label, &made.dp);
    dp = NULL;
    if (st != FA4CP_OK)
        goto out;
    *out = made;
    memset(&made, 0, sizeof made);
out:
    if (dp)
        ncclCommAbort(dp);
    if (cp)
        ncclCommAbort(cp);
    if (world)
        ncclCommAbort(world);
    fa4cp_nccl_comms_destroy(&made);
    return st;
}

void fa4cp_nccl_comms_destroy(fa4cp_nccl_comms *c)
{
    if (!c)
        return;
    /* children first, then the parent they were split from */
    fa4cp_comm_destroy(c->dp);
    fa4cp_comm_destroy(c->cp);
    fa4cp_comm_destroy(c->world);
    memset(c, 0, sizeof *c);
}

#endif /* HAVE_NCCL */
