/* attn.c - the raw attention call: argument checks and backend dispatch. */
#include "attn_internal.h"
#include "core/internal.h"

#include <math.h>
#include <strings.h>

const char *fa4cp_backend_name(fa4cp_backend backend)
{
    return backend == FA4CP_BACKEND_CUDA ? "cuda" : backend == FA4CP_BACKEND_CPU ? "cpu" : "?";
}

fa4cp_status fa4cp_backend_parse(const char *name, fa4cp_backend *out)
{
    if (name && strcasecmp(name, "cpu") == 0) {
        *out = FA4CP_BACKEND_CPU;
        return FA4CP_OK;
    }
    if (name && strcasecmp(name, "cuda") == 0) {
        *out = FA4CP_BACKEND_CUDA;
        return FA4CP_OK;
    }
    return fa4cp_set_error(FA4CP_ERR_INVALID, "unknown backend '%s': expected cpu or cuda",
                           name ? name : "(null)");
}

int fa4cp_backend_available(fa4cp_backend backend)
{
    if (backend == FA4CP_BACKEND_CPU)
        return 1;
#ifdef HAVE_CUDA
    if (backend == FA4CP_BACKEND_CUDA)
        return fa4cp_attn_cuda_available();
#endif
    return 0;
}

int fa4cp_attn_visible(int64_t i, int64_t j, int64_t sq, int64_t sk, int causal, int window_left,
                       int window_right)
{
    int64_t diag = i + (sk - sq);
    int64_t right = causal ? 0 : window_right;
    if (j < 0 || j >= sk)
        return 0;
    if (right >= 0 && j > diag + right)
        return 0;
    if (window_left >= 0 && j < diag - window_left)
        return 0;
    return 1;
}

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fa4cp_set_error(FA4CP_ERR_INVALID, __VA_ARGS__);                                \
    } while (0)

fa4cp_status fa4cp_attn_check(fa4cp_backend backend, const fa4cp_attn_args *a, int backward)
{
    NEED(a, "attention arguments are NULL");
    NEED(a->struct_size == sizeof(fa4cp_attn_args),
         "fa4cp_attn_args.struct_size is %zu, expected %zu: initialise it with FA4CP_ATTN_ARGS_INIT "
         "and rebuild against this fa4cp.h",
         a->struct_size, sizeof(fa4cp_attn_args));
    NEED(a->dtype >= FA4CP_BF16 && a->dtype <= FA4CP_FP64, "dtype %d is not a fa4cp_dtype", (int)a->dtype);
    NEED(a->batch >= 0, "batch is %d: it must be >= 0", a->batch);
    NEED(a->heads > 0 && a->kv_heads > 0, "heads (%d) and kv_heads (%d) must be >= 1", a->heads,
         a->kv_heads);
    NEED(a->heads % a->kv_heads == 0,
         "heads (%d) is not a multiple of kv_heads (%d): GQA needs heads %% kv_heads == 0", a->heads,
         a->kv_heads);
    NEED(a->head_dim > 0, "head_dim is %d: it must be >= 1", a->head_dim);
    NEED(a->head_dim_v >= 0, "head_dim_v is %d: it must be >= 1 (or 0 for head_dim)", a->head_dim_v);
    NEED(a->total_q >= 0 && a->total_k >= 0, "total_q (%lld) and total_k (%lld) must be >= 0",
         (long long)a->total_q, (long long)a->total_k);
    NEED(a->window_left >= -1 && a->window_right >= -1,
         "window (%d, %d): each side must be >= 0, or -1 for unbounded", a->window_left,
         a->window_right);
    NEED(isfinite(a->softmax_scale) && a->softmax_scale >= 0,
         "softmax_scale is %g: it must be finite and >= 0 (0 = 1/sqrt(head_dim))", a->softmax_scale);
    NEED(a->cu_seqlens_q && a->cu_seqlens_k, "cu_seqlens_q and cu_seqlens_k are required");
    NEED(a->total_q == 0 || (a->q && a->out && a->lse), "q, out and lse are required");
    NEED(a->total_k == 0 || (a->k && a->v), "k and v are required");
    if (backward) {
        const int chain = a->dq_carry != NULL;
        NEED(a->carry >= 0 && a->carry <= (FA4CP_CARRY_FIRST | FA4CP_CARRY_LAST | FA4CP_CARRY_NO_LEFT_WINDOW),
             "carry is %d: it must be 0, FA4CP_CARRY_FIRST (1), FA4CP_CARRY_LAST (2) or both (3), each with "
             "FA4CP_CARRY_NO_LEFT_WINDOW (4) or without",
             a->carry);
        NEED(!(a->carry & FA4CP_CARRY_NO_LEFT_WINDOW) || a->window_left < 0,
             "carry has FA4CP_CARRY_NO_LEFT_WINDOW (4), a promise that no call of the chain has a left window, "
             "but window_left is %d: start the chain without it",
             a->window_left);
        NEED(chain || a->carry == 0,
             "carry is %d but dq_carry is NULL: a chain of backward calls sums dq in dq_carry "
             "(fa4cp_attn_bwd_carry_bytes bytes)",
             a->carry);
        NEED(a->total_q == 0 || a->dout, "backward needs dout");
        NEED(a->total_q == 0 || a->dq || (chain && !(a->carry & FA4CP_CARRY_LAST)),
             "backward needs dq%s", chain ? " (the chain's last call, carry FA4CP_CARRY_LAST, writes it)" : "");
        NEED(a->total_k == 0 || (a->dk && a->dv), "backward needs dk and dv");
        if (chain) {
            const size_t need = fa4cp_attn_bwd_carry_bytes(backend, a);
            NEED(a->dq_carry_bytes >= need,
                 "dq_carry_bytes is %zu: this chain (%s, %lld query rows, %d heads, head_dim %d) needs %zu "
                 "(fa4cp_attn_bwd_carry_bytes)",
                 a->dq_carry_bytes, fa4cp_backend_name(backend), (long long)a->total_q, a->heads, a->head_dim,
                 need);
        }
    }
    /* what the backend has kernels for: before any device is touched */
    fa4cp_status sup = fa4cp_attn_supports(backend, a->dtype, a->head_dim, a->head_dim_v, backward);
    if (sup != FA4CP_OK)
        return sup;
    if (backend == FA4CP_BACKEND_CPU) {
        fa4cp_status st = fa4cp_thd_check(a->batch, a->cu_seqlens_q, a->seqused_q, 0);
        if (st != FA4CP_OK)
            return fa4cp_error_context(st, "queries");
        st = fa4cp_thd_check(a->batch, a->cu_seqlens_k, a->seqused_k, 0);
        if (st != FA4CP_OK)
            return fa4cp_error_context(st, "keys");
        NEED(a->cu_seqlens_q[a->batch] <= a->total_q,
             "cu_seqlens_q[%d] = %d is past total_q = %lld", a->batch, (int)a->cu_seqlens_q[a->batch],
             (long long)a->total_q);
        NEED(a->cu_seqlens_k[a->batch] <= a->total_k,
             "cu_seqlens_k[%d] = %d is past total_k = %lld", a->batch, (int)a->cu_seqlens_k[a->batch],
             (long long)a->total_k);
    }
    return FA4CP_OK;
}

size_t fa4cp_attn_bwd_carry_bytes(fa4cp_backend backend, const fa4cp_attn_args *a)
{
    if (!a || a->total_q <= 0 || a->heads <= 0 || a->head_dim <= 0)
        return 0;
    const size_t rows = (size_t)a->total_q * (size_t)a->heads, n = rows * (size_t)a->head_dim;
    if (backend == FA4CP_BACKEND_CUDA) /* D, then dq_accum (fp32) */
        return fa4cp_attn_cuda_acc_offset(rows) + n * sizeof(float);
    return n * sizeof(double);
}

static fa4cp_status dispatch(fa4cp_backend backend, const fa4cp_attn_args *a, int backward)
{
    fa4cp_status st = fa4cp_attn_check(backend, a, backward);
    if (st != FA4CP_OK)
        return st;
    switch (backend) {
    case FA4CP_BACKEND_CPU: return backward ? fa4cp_attn_cpu_bwd(a) : fa4cp_attn_cpu_fwd(a);
    case FA4CP_BACKEND_CUDA:
#ifdef HAVE_CUDA
        return backward ? fa4cp_attn_cuda_bwd(a) : fa4cp_attn_cuda_fwd(a);
#else
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "the cuda backend is not in this build (configure found no CUDA; "
                               "rebuild with --with-cuda=DIR) - use backend cpu");
#endif
    }
    return fa4cp_set_error(FA4CP_ERR_INVALID, "unknown backend %d", (int)backend);
}

fa4cp_status fa4cp_attn_fwd(fa4cp_backend backend, const fa4cp_attn_args *a) { return dispatch(backend, a, 0); }

fa4cp_status fa4cp_attn_bwd(fa4cp_backend backend, const fa4cp_attn_args *a) { return dispatch(backend, a, 1); }
