/* cp.c - the CP public surface: names, refusals, the group handle and the
 * global <-> rank-local helpers.  The work itself is in cp_exec.c (executor)
 * and cp_plan.c (plans).
 */
#include "cp_internal.h"

#include <string.h>
#include <strings.h>

#ifndef HAVE_CUDA
const cp_ops *fa4cp_cp_ops_cuda(void) { return NULL; }
#endif

#define A2A_P2P_REFUSAL                                                                            \
    "cp.comm 'a2a+p2p' is disabled: the hierarchical a2a+p2p path is not validated; use p2p "      \
    "across nodes or a2a within a node"

const char *fa4cp_cp_comm_name(fa4cp_cp_comm_type comm)
{
    switch (comm) {
    case FA4CP_CP_P2P: return "p2p";
    case FA4CP_CP_ALL_GATHER: return "all_gather";
    case FA4CP_CP_A2A: return "a2a";
    case FA4CP_CP_A2A_P2P: return "a2a+p2p";
    }
    return "?";
}

fa4cp_status fa4cp_cp_comm_parse(const char *name, fa4cp_cp_comm_type *out)
{
    static const struct {
        const char *name;
        fa4cp_cp_comm_type comm;
    } names[] = {{"p2p", FA4CP_CP_P2P},       {"ring", FA4CP_CP_P2P},
                 {"all_gather", FA4CP_CP_ALL_GATHER}, {"allgather", FA4CP_CP_ALL_GATHER},
                 {"a2a", FA4CP_CP_A2A},       {"ulysses", FA4CP_CP_A2A}};
    if (!name || !out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "cp.comm: the name is NULL");
    if (strcasecmp(name, "a2a+p2p") == 0)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, A2A_P2P_REFUSAL);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i].name) == 0) {
            *out = names[i].comm;
            return FA4CP_OK;
        }
    return fa4cp_set_error(FA4CP_ERR_INVALID,
                           "cp.comm '%s' is not known: expected p2p, all_gather or a2a", name);
}

const char *fa4cp_cp_format_name(fa4cp_cp_format f)
{
    return f == FA4CP_CP_THD ? "thd" : f == FA4CP_CP_BSHD ? "bshd" : "?";
}

fa4cp_status fa4cp_cp_format_parse(const char *name, fa4cp_cp_format *out)
{
    if (name && out && strcasecmp(name, "thd") == 0) {
        *out = FA4CP_CP_THD;
        return FA4CP_OK;
    }
    if (name && out && strcasecmp(name, "bshd") == 0) {
        *out = FA4CP_CP_BSHD;
        return FA4CP_OK;
    }
    return fa4cp_set_error(FA4CP_ERR_INVALID, "layout '%s' is not known: expected thd or bshd",
                           name ? name : "(null)");
}

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fa4cp_set_error(FA4CP_ERR_INVALID, __VA_ARGS__);                                \
    } while (0)

fa4cp_status fa4cp_cp_check_shape(const fa4cp_cp_config *cfg, int cp)
{
    NEED(cfg, "cp config is NULL");
    NEED(cfg->struct_size == sizeof(fa4cp_cp_config),
         "fa4cp_cp_config.struct_size is %zu, expected %zu: initialise it with FA4CP_CP_CONFIG_INIT "
         "and rebuild against this fa4cp.h",
         cfg->struct_size, sizeof(fa4cp_cp_config));
    NEED(cp >= 1, "cp size is %d: it must be >= 1", cp);
    if (cfg->comm == FA4CP_CP_A2A_P2P)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, A2A_P2P_REFUSAL);
    NEED(cfg->comm == FA4CP_CP_P2P || cfg->comm == FA4CP_CP_ALL_GATHER || cfg->comm == FA4CP_CP_A2A,
         "cp.comm %d is not a fa4cp_cp_comm_type", (int)cfg->comm);
    NEED(cfg->format == FA4CP_CP_THD || cfg->format == FA4CP_CP_BSHD,
         "cp layout %d is neither thd nor bshd", (int)cfg->format);
    NEED(cfg->dtype >= FA4CP_BF16 && cfg->dtype <= FA4CP_FP64, "dtype %d is not a fa4cp_dtype",
         (int)cfg->dtype);
    NEED(cfg->heads > 0 && cfg->kv_heads > 0 && cfg->heads % cfg->kv_heads == 0,
         "heads %d over kv_heads %d: both must be >= 1 and heads %% kv_heads == 0", cfg->heads,
         cfg->kv_heads);
    NEED(cfg->head_dim > 0, "head_dim is %d: it must be >= 1", cfg->head_dim);
    NEED(cfg->window_left >= -1 && cfg->window_right >= -1,
         "window (%d, %d): each side must be >= 0, or -1 for unbounded", cfg->window_left,
         cfg->window_right);
    if (cfg->comm == FA4CP_CP_P2P &&
        (cfg->window_left >= 0 || (!cfg->causal && cfg->window_right >= 0)))
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cp.comm 'p2p' does not support a sliding window (window_left %d, "
                               "window_right %d): the shapes that do are 'all_gather' and 'a2a'",
                               cfg->window_left, cfg->window_right);
    if (cfg->comm == FA4CP_CP_A2A && (cfg->heads % cp != 0 || cfg->kv_heads % cp != 0))
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cp.comm 'a2a' needs heads %% cp == 0 and kv_heads %% cp == 0, but "
                               "heads is %d, kv_heads %d and cp %d: use p2p or all_gather, or a cp "
                               "size that divides both",
                               cfg->heads, cfg->kv_heads, cp);
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_validate(const fa4cp_cp_config *cfg, int cp, int batch,
                               const int32_t *cu_seqlens, int seqlen)
{
    fa4cp_status st = fa4cp_cp_check_shape(cfg, cp);
    if (st != FA4CP_OK)
        return st;
    NEED(batch >= 0, "batch is %d: it must be >= 0", batch);
    if (cfg->format == FA4CP_CP_BSHD) {
        NEED(seqlen >= 0, "seqlen is %d: it must be >= 0", seqlen);
        NEED(seqlen % (2 * cp) == 0,
             "seqlen %d is not divisible by 2*cp = %d (each rank holds 2 of %d chunks): use %d or "
             "%d",
             seqlen, 2 * cp, 2 * cp, seqlen - seqlen % (2 * cp), seqlen + 2 * cp - seqlen % (2 * cp));
        NEED((int64_t)batch * seqlen <= INT32_MAX, "batch %d x seqlen %d rows overflow int32", batch,
             seqlen);
        return FA4CP_OK;
    }
    st = fa4cp_thd_check(batch, cu_seqlens, NULL, cp);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %d", cp);
    return FA4CP_OK;
}

/* Every rank of the group must run the same shape: compare the configs
 * (collective; a rank that differs is named, rather than a wrong result or a
 * hang later).  Host transports only: the fingerprint lives in host memory. */
static fa4cp_status agree(fa4cp_cp *cp)
{
    fa4cp_status st = FA4CP_OK;
    const fa4cp_cp_config *c = &cp->cfg;
    const int n = fa4cp_comm_size(cp->comm);
    int32_t mine[10] = {(int32_t)c->comm,  (int32_t)c->format, (int32_t)c->dtype,   c->heads,
                        c->kv_heads,       c->head_dim,        c->causal,           c->window_left,
                        c->window_right,   (int32_t)c->backend};
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
        if (memcmp(all + (size_t)p * 10, mine, sizeof mine) != 0) {
            const int32_t *o = all + (size_t)p * 10;
            FA4CP_FAIL(FA4CP_ERR_INVALID,
                       "cp group: rank %d has comm %s, layout %s, %s, heads %d/%d, head_dim %d, causal "
                       "%d, window (%d,%d) but rank %d has comm %s, layout %s, %s, heads %d/%d, "
                       "head_dim %d, causal %d, window (%d,%d): every rank must run the same shape",
                       fa4cp_comm_rank(cp->comm), fa4cp_cp_comm_name(c->comm),
                       fa4cp_cp_format_name(c->format), fa4cp_dtype_name(c->dtype), c->heads,
                       c->kv_heads, c->head_dim, c->causal, c->window_left, c->window_right, p,
                       fa4cp_cp_comm_name((fa4cp_cp_comm_type)o[0]),
                       fa4cp_cp_format_name((fa4cp_cp_format)o[1]),
                       fa4cp_dtype_name((fa4cp_dtype)o[2]), o[3], o[4], o[5], o[6], o[7], o[8]);
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
    fa4cp_free(cp);
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
        if (cp->comm_step[s])
            FA4CP_TRY(cp->ops->event_ms(cp->ev[CP_EV_COMM0][s], cp->ev[CP_EV_COMM1][s], &t->comm_ms[s]));
    }
out:
    return st;
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

/* ------------------------------------------------------------------ shard / unshard */

void fa4cp_cp_bshd_cu(int batch, int seqlen, int32_t *cu)
{
    for (int i = 0; i <= batch; i++)
        cu[i] = (int32_t)((int64_t)i * seqlen);
}

int64_t fa4cp_cp_local_rows(int batch, const int32_t *cu, int cp)
{
    return batch > 0 && cp > 0 ? cu[batch] / cp : 0;
}

/* for each local row of `rank`: global row; to_local: copy global -> local */
static fa4cp_status shard_rows(int batch, const int32_t *cu, int cp, int rank, size_t unit,
                               int nouter, const void *src, void *dst, int to_local)
{
    fa4cp_status st = fa4cp_thd_check(batch, cu, NULL, cp);
    if (st != FA4CP_OK)
        return st;
    NEED(rank >= 0 && rank < cp, "cp rank %d is outside the group of %d ranks", rank, cp);
    NEED(src && dst, "shard: NULL tensor");
    int64_t T = fa4cp_cp_local_rows(batch, cu, cp), G = batch > 0 ? cu[batch] : 0;
    for (int o = 0; o < nouter; o++)
        for (int64_t l = 0; l < T; l++) {
            int64_t g = fa4cp_thd_local_to_global(batch, cu, cp, rank, l);
            const unsigned char *s = (const unsigned char *)src;
            unsigned char *d = (unsigned char *)dst;
            if (to_local)
                memcpy(d + ((size_t)o * (size_t)T + (size_t)l) * unit,
                       s + ((size_t)o * (size_t)G + (size_t)g) * unit, unit);
            else
                memcpy(d + ((size_t)o * (size_t)G + (size_t)g) * unit,
                       s + ((size_t)o * (size_t)T + (size_t)l) * unit, unit);
        }
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_shard(int batch, const int32_t *cu, int cp, int rank, size_t row_bytes,
                            const void *global, void *local)
{
    return shard_rows(batch, cu, cp, rank, row_bytes, 1, global, local, 1);
}

fa4cp_status fa4cp_cp_unshard(int batch, const int32_t *cu, int cp, int rank, size_t row_bytes,
                              const void *local, void *global)
{
    return shard_rows(batch, cu, cp, rank, row_bytes, 1, local, global, 0);
}

fa4cp_status fa4cp_cp_shard_lse(int batch, const int32_t *cu, int cp, int rank, int heads,
                                size_t elem_bytes, const void *global, void *local)
{
    return shard_rows(batch, cu, cp, rank, elem_bytes, heads, global, local, 1);
}

fa4cp_status fa4cp_cp_unshard_lse(int batch, const int32_t *cu, int cp, int rank, int heads,
                                  size_t elem_bytes, const void *local, void *global)
{
    return shard_rows(batch, cu, cp, rank, elem_bytes, heads, local, global, 0);
}
