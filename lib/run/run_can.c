/* run_can.c - can this build run a case?  The question --dry-run and
 * --explain ask of every case, and run_case before anything is allocated:
 * the case's backend is asked what it runs (the attention layer's one table
 * of dtypes and head dims, fa4cp_attn_supported), without touching a GPU.
 * What needs the machine (a device, its memory) is asked when the case runs. */
#include "run.h"

#include <stdio.h>

int run_case_runnable(const fa4cp_case *c, char *msg, size_t len)
{
    if (fa4cp_attn_supported(c->backend, c->dtype, c->head_dim, c->head_dim_v, c->backward) == FA4CP_OK)
        return RUN_OK;
    snprintf(msg, len, "run.backend %s cannot run this case: %s", fa4cp_backend_name(c->backend),
             fa4cp_last_error());
    return RUN_RUNTIME;
}

void run_dims_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->head_dim_v == c->head_dim)
        snprintf(buf, len, "%d", c->head_dim);
    else
        snprintf(buf, len, "%d/%d", c->head_dim, c->head_dim_v);
}
