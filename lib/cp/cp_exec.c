/* cp_exec.c - the CP executor: runs a rank's plan over a transport and an
 * attention backend, forward and backward.
 *
 * Transport- and backend-neutral: tensors are touched only through the
 * cp_ops table (allocation, reorders, LSE merge, accumulation, conversion)
 * and the raw attention call; row maps and per-call cu_seqlens/seqused are
 * computed on the host with the fa4cp_thd_* math and uploaded through the
 * ops.  The host ops run everything on the cpu; a device ops table runs the
 * same code on a GPU.
 *
 * Rank-local layout: per sequence i, local rows [lcu_i, lcu_i + 2 C_i) hold
 * chunk r (C_i rows) then chunk 2cp-1-r, where lcu = cu/cp and C_i =
 * padded_i/(2cp).  A "half" h is the tensor of chunk h of every sequence,
 * with cu = cu/(2cp) ("hcu").  Real rows of a local sequence and of each
 * half are a prefix, counted exactly by fa4cp_thd_local_seqused.
 *
 * Accumulators (running out of the LSE merge, dq and dk/dv sums, the dk/dv
 * that travel the ring) are fp32, or fp64 for fp64 storage.
 */
#include "cp_exec.h"

#include <string.h>

/* ------------------------------------------------------------------ entry */

fa4cp_status fa4cp_cp_exec(fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd)
{
    fa4cp_status st = FA4CP_OK;
    exec x;
    cp->timed_valid = 0;
    cp->timed_steps = 0;
    cp->ntrace = 0;
    cp->trace_valid = 0;
    if (cp->progress) {
        __atomic_store_n(&cp->progress->ops, 0, __ATOMIC_RELEASE);
        __atomic_fetch_add(&cp->progress->calls, 1, __ATOMIC_RELAXED);
    }
    FA4CP_TRY(cpx_setup(&x, cp, a, bwd));
    if (x.timed) {
        for (int i = 0; i < 2; i++)
            if (!cp->ev_call[i])
                FA4CP_TRY(x.ops->event_create(&cp->ev_call[i]));
        FA4CP_TRY(x.ops->event_record(cp->ev_call[0], x.stream));
    }
    switch (cp->cfg.comm) {
    case FA4CP_CP_P2P: st = bwd ? cpx_p2p_bwd(&x, a) : cpx_p2p_fwd(&x, a); break;
    case FA4CP_CP_ALL_GATHER: st = bwd ? cpx_ag_bwd(&x, a) : cpx_ag_fwd(&x, a); break;
    case FA4CP_CP_A2A: st = cpx_a2a_run(&x, a, bwd); break;
    default: st = fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp: no executor for comm %d", (int)cp->cfg.comm);
    }
    if (st == FA4CP_OK && cpx_peek(&x))
        st = fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp %s rank %d: the executor stopped after %d of the "
                             "plan's %d operations", fa4cp_cp_comm_name(cp->cfg.comm), x.r, x.pc, x.nprog);
    if (x.cs != x.stream) { /* nothing on the side stream outlives the call */
        fa4cp_status sj = cpx_join_comm(&x);
        if (st == FA4CP_OK)
            st = sj;
    }
    if (st == FA4CP_OK && x.timed) {
        st = x.ops->event_record(cp->ev_call[1], x.stream);
        cp->timed_valid = st == FA4CP_OK;
        cp->timed_backward = bwd;
    }
    if (st == FA4CP_OK)
        st = x.ops->sync(x.stream);
    cp->trace_valid = st == FA4CP_OK;
    cp->last_workspace = x.allocated;
out:
    cpx_release(&x);
    return st;
}


/* ------------------------------------------------------------------ workspace */

size_t fa4cp_cp_workspace_bytes(const fa4cp_cp_config *cfg, int cp, int batch, int64_t rows, int backward)
{
    exec x;
    memset(&x, 0, sizeof x);
    if (fa4cp_cp_check_shape(cfg, cp) != FA4CP_OK || batch < 0 || rows < 0) {
        fa4cp_error_context(FA4CP_ERR_INVALID, "fa4cp_cp_workspace_bytes");
        return 0;
    }
    cpx_dims(&x, cfg, cp);
    x.B = batch;
    x.G = rows;
    x.T = rows / cp;
    x.Th = x.T / 2;
    /* setup: cu_seqlens, seqused, local and half offsets, every rank's counts */
    size_t common = 4 * ((size_t)batch + 1) * 4 + 3 * ((size_t)cp * batch + 1) * 4, most = 0;
    for (int bwd = 0; bwd <= (backward ? 1 : 0); bwd++) {
        size_t b = cfg->comm == FA4CP_CP_P2P ? cpx_p2p_workspace(&x, bwd)
                   : cfg->comm == FA4CP_CP_ALL_GATHER ? cpx_ag_workspace(&x, bwd)
                                                      : cpx_a2a_workspace(&x, bwd);
        most = b > most ? b : most;
    }
    return common + most;
}

size_t fa4cp_cp_last_workspace(const fa4cp_cp *cp) { return cp ? cp->last_workspace : 0; }
