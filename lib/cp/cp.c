/* cp.c - the CP group handle: a config bound to a transport, its plan, the
 * timings, and the forward and backward calls.  The configuration and its
 * rules are in cp_config.c, the plans in cp_plan.c, the executor in
 * cp_exec.c, the global <-> rank-local helpers in cp_shard.c.
 */
#include "cp_internal.h"

#include <string.h>

#ifndef HAVE_CUDA
const cp_ops *fa4cp_cp_ops_cuda(void) { return NULL; }
#endif

/* Every rank of the group must run the same shape: compare the configs
 * (collective; a rank that differs is named, rather than a wrong result or a
 * hang later).  Host transports only: the fingerprint lives in host memory. */
static fa4cp_status agree(fa4cp_cp *cp)
{
    fa4cp_status st = FA4CP_OK;
    const fa4cp_cp_config *c = &cp->cfg;
    const int n = fa4cp_comm_size(cp->comm);
    const int dv = c->head_dim_v ? c->head_dim_v : c->head_dim;
    int32_t mine[11] = {(int32_t)c->comm,  (int32_t)c->format, (int32_t)c->dtype,   c->heads,
                        c->kv_heads,       c->head_dim,        c->causal,           c->window_left,
                        c->window_right,   (int32_t)c->backend, dv};
    int32_t *all = NULL;
    fa4cp_comm_req *req = NULL;
    if (n == 1 || fa4cp_comm_device_memory(cp->comm))
        return FA4CP_OK;
    all = fa4cp_malloc((size_t)n * sizeof mine, "cp config fingerprints");
    if (!all)
        return FA4CP_ERR_NOMEM;
    FA4CP_TRY(fa4cp_comm_all_gather(cp->comm, mine, all, sizeof mine, NULL, &req));
    st = fa4cp_comm_wait(cp->comm, req, NULL);
    req = NULL;
    if (st != FA4CP_OK)
        goto out;
    for (int p = 0; p < n; p++)
        if (memcmp(all + (size_t)p * 11, mine, sizeof mine) != 0) {
            const int32_t *o = all + (size_t)p * 11;
            FA4CP_FAIL(FA4CP_ERR_INVALID,
                       "cp group: rank %d has comm %s, layout %s, %s, heads %d/%d, head_dim %d, causal "
                       "%d, window (%d,%d), head_dim_v %d but rank %d has comm %s, layout %s, %s, heads "
                       "%d/%d, head_dim %d, causal %d, window (%d,%d), head_dim_v %d: every rank must run "
                       "the same shape",
                       fa4cp_comm_rank(cp->comm), fa4cp_cp_comm_name(c->comm),
                       fa4cp_cp_format_name(c->format), fa4cp_dtype_name(c->dtype), c->heads,
                       c->kv_heads, c->head_dim, c->causal, c->window_left, c->window_right, dv, p,
                       fa4cp_cp_comm_name((fa4cp_cp_comm_type)o[0]),
                       fa4cp_cp_format_name((fa4cp_cp_format)o[1]),
                       fa4cp_dtype_name((fa4cp_dtype)o[2]), o[3], o[4], o[5], o[6], o[7], o[8], o[10]);
        }
out:
    if (req)
        fa4cp_comm_wait(cp->comm, req, NULL);
    fa4cp_free(all);
    return st;
}

fa4cp_status fa4cp_cp_create(const fa4cp_cp_config *cfg, fa4cp_comm *comm, fa4cp_cp **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_cp *cp = NULL;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_create: out is NULL");
    *out = NULL;
    if (!comm)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "fa4cp_cp_create: the transport is NULL");
    FA4CP_TRY(fa4cp_cp_check_shape(cfg, fa4cp_comm_size(comm)));
    FA4CP_TRY(fa4cp_cp_check_backend(cfg));
    cp = fa4cp_calloc(1, sizeof *cp, "cp group");
    if (!cp) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    cp->cfg = *cfg;
    cp->comm = comm;
    if (cfg->backend == FA4CP_BACKEND_CPU && !fa4cp_comm_device_memory(comm))
        cp->ops = fa4cp_cp_ops_host();
    else if (cfg->backend == FA4CP_BACKEND_CUDA && fa4cp_comm_device_memory(comm))
        cp->ops = fa4cp_cp_ops_cuda();
    if (!cp->ops) {
        if (cfg->backend == FA4CP_BACKEND_CUDA && fa4cp_comm_device_memory(comm))
            FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                       "cp with backend cuda: this libfa4cp was built without CUDA (configure "
                       "--with-cuda); use backend cpu over a host transport");
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "cp with backend %s over a %s transport in %s memory: the tensors and the "
                   "transport must live in the same memory - backend cpu with a host transport "
                   "(local, device_memory = 0), backend cuda with a device transport (nccl, or "
                   "local with device_memory = 1)",
                   fa4cp_backend_name(cfg->backend), fa4cp_comm_name(comm),
                   fa4cp_comm_device_memory(comm) ? "device" : "host");
    }
    if (cfg->dtype == FA4CP_FP64 && cfg->backend == FA4CP_BACKEND_CUDA)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "cp with backend cuda and dtype fp64: the cuda attention takes bf16 or fp16; "
                   "use backend cpu for fp32/fp64");
    FA4CP_TRY(fa4cp_cp_plan_build(cfg, fa4cp_comm_size(comm), fa4cp_comm_rank(comm), &cp->plan));
    cp->trace_cap = cp->plan->nfwd_ops > cp->plan->nbwd_ops ? cp->plan->nfwd_ops : cp->plan->nbwd_ops;
    cp->trace = fa4cp_calloc((size_t)cp->trace_cap + 1, sizeof *cp->trace, "cp trace");
    if (!cp->trace) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    FA4CP_TRY(agree(cp));
    *out = cp;
    cp = NULL;
out:
    fa4cp_cp_destroy(cp);
    return st;
}

void fa4cp_cp_destroy(fa4cp_cp *cp)
{
    if (!cp)
        return;
    if (cp->ops && cp->ops->event_destroy) {
        for (int k = 0; k < CP_EV_KINDS; k++)
            for (int s = 0; s < FA4CP_CP_MAX_TIMED_STEPS; s++)
                cp->ops->event_destroy(cp->ev[k][s]);
        cp->ops->event_destroy(cp->ev_call[0]);
        cp->ops->event_destroy(cp->ev_call[1]);
    }
    if (cp->side && cp->ops && cp->ops->stream_destroy)
        cp->ops->stream_destroy(cp->side);
    fa4cp_cp_plan_free(cp->plan);
    fa4cp_free(cp->trace);
    fa4cp_free(cp);
}

void fa4cp_cp_set_progress(fa4cp_cp *cp, fa4cp_cp_progress *sink)
{
    if (cp)
        cp->progress = sink;
}

fa4cp_status fa4cp_cp_set_timing(fa4cp_cp *cp, int on)
{
    if (!cp)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_set_timing: the cp group is NULL");
    if (on && !cp->ops->event_create)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cp timings come from CUDA events: backend %s has none",
                               fa4cp_backend_name(cp->cfg.backend));
    cp->timing = on != 0;
    cp->timed_valid = 0;
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_last_timing(fa4cp_cp *cp, fa4cp_cp_timing *t)
{
    fa4cp_status st = FA4CP_OK;
    if (!cp || !t)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_last_timing: NULL argument");
    if (t->struct_size != sizeof *t)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_cp_timing.struct_size is %zu, expected %zu: initialise it "
                               "with FA4CP_CP_TIMING_INIT",
                               t->struct_size, sizeof *t);
    if (!cp->timed_valid)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_cp_last_timing: no timed call (turn timings on with "
                               "fa4cp_cp_set_timing, then run a call that succeeds)");
    size_t keep = t->struct_size;
    memset(t, 0, sizeof *t);
    t->struct_size = keep;
    t->backward = cp->timed_backward;
    t->nsteps = cp->cfg.comm == FA4CP_CP_P2P ? cp->timed_steps : 0;
    FA4CP_TRY(cp->ops->event_ms(cp->ev_call[0], cp->ev_call[1], &t->call_ms));
    for (int s = 0; s < t->nsteps; s++) {
        FA4CP_TRY(cp->ops->event_ms(cp->ev[CP_EV_COMP0][s], cp->ev[CP_EV_COMP1][s], &t->compute_ms[s]));
        if (cp->comm_step[s]) {
            FA4CP_TRY(cp->ops->event_ms(cp->ev[CP_EV_COMM0][s], cp->ev[CP_EV_COMM1][s], &t->comm_ms[s]));
            t->comm_bytes[s] = cp->comm_bytes[s];
        }
    }
out:
    return st;
}

fa4cp_status fa4cp_cp_last_trace(const fa4cp_cp *cp, const fa4cp_cp_instr **ops, int *n)
{
    if (!cp || !ops || !n)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_last_trace: NULL argument");
    if (!cp->trace_valid)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_last_trace: no call has succeeded yet");
    *ops = cp->trace;
    *n = cp->ntrace;
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_fwd(fa4cp_cp *cp, const fa4cp_cp_args *a)
{
    if (!cp)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_fwd: the cp group is NULL");
    return fa4cp_cp_exec(cp, a, 0);
}

fa4cp_status fa4cp_cp_bwd(fa4cp_cp *cp, const fa4cp_cp_args *a)
{
    if (!cp)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_cp_bwd: the cp group is NULL");
    return fa4cp_cp_exec(cp, a, 1);
}

