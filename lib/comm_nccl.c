/* comm_nccl.c - the "nccl" transport and the NCCL communicators of a world. */
#include "comm.h"
#include "world_internal.h"

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
int fa4cp_nccl_available(void) { return 0; }

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

void fa4cp_nccl_comms_destroy(fa4cp_nccl_comms *c)
{
    FA4CP_UNUSED(c);
}
#else
/* (the NCCL transport follows) */
int fa4cp_nccl_available(void) { return 1; }
fa4cp_status fa4cp_nccl_unique_id(fa4cp_world *w, void *id, size_t bytes)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(id);
    FA4CP_UNUSED(bytes);
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "not yet");
}
fa4cp_status fa4cp_nccl_comm_create(fa4cp_world *w, const fa4cp_layout *l,
                                    const fa4cp_nccl_config *cfg, fa4cp_nccl_comms *out)
{
    FA4CP_UNUSED(w);
    FA4CP_UNUSED(l);
    FA4CP_UNUSED(cfg);
    if (out)
        memset(out, 0, sizeof *out);
    if (w && w->table[w->rank].gpu < 0)
        return fa4cp_set_error(FA4CP_ERR_CUDA, "rank %d on %s sees no GPU: the nccl transport "
                               "needs one GPU per rank", w->rank, w->table[w->rank].host);
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "not yet");
}
void fa4cp_nccl_comms_destroy(fa4cp_nccl_comms *c) { FA4CP_UNUSED(c); }
#endif
