/* attn_caps.c - what each backend's kernels can run, known without a
 * device: the one table of dtypes and (head_dim, head_dim_v) pairs.
 *
 * The raw call (fa4cp_attn_check), the CP layer (fa4cp_cp_validate and
 * fa4cp_cp_create, through fa4cp_cp_check_backend) and
 * fa4cp-run --dry-run / --explain all ask fa4cp_attn_supports, so a shape
 * the backend has no kernel for is refused the same way everywhere, before
 * anything is allocated and before any device is touched (the table is
 * plain data, present in builds without CUDA too).  When kernels/ gains a
 * head dim, its row goes here and nowhere else.
 */
#include "attn_internal.h"
#include "core/internal.h"

#include <pthread.h>
#include <stdio.h>

#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct dims_row {
    int d, dv;    /* head_dim, head_dim_v */
    int fwd, bwd; /* a forward and a backward kernel exist */
} dims_row;

/* The cuda backend: the forward families of kernels/ (FA4CP_FWD_FAMILIES in
 * kernels/fwd_launch.h, one attn_fwd_hd*.cu each) and the backward
 * instantiations (kernels/attn_bwd_d*.cu): head_dim 32, 64, 80, 96, 128,
 * 192 and 256 with v of the same width, and MLA's (192, 128), both ways.
 * A row with bwd = 0 would be listed as "forward only". */
static const dims_row cuda_dims[] = {
    {32, 32, 1, 1},    {64, 64, 1, 1},    {80, 80, 1, 1},    {96, 96, 1, 1},
    {128, 128, 1, 1},  {192, 192, 1, 1},  {192, 128, 1, 1},  {256, 256, 1, 1},
};
#define NCUDA ((int)(sizeof cuda_dims / sizeof cuda_dims[0]))

static char cuda_text[512];
static pthread_once_t cuda_text_once = PTHREAD_ONCE_INIT;

static void make_cuda_text(void)
{
    size_t at = 0;
    for (int i = 0; i < NCUDA && at < sizeof cuda_text; i++)
        at += (size_t)snprintf(cuda_text + at, sizeof cuda_text - at, "%s(%d, %d)%s",
                               i == 0 ? "" : i == NCUDA - 1 ? " or " : ", ", cuda_dims[i].d, cuda_dims[i].dv,
                               cuda_dims[i].bwd ? "" : " forward only");
}

const char *fa4cp_attn_head_dims(fa4cp_backend backend)
{
    if (backend == FA4CP_BACKEND_CPU)
        return "any head_dim and head_dim_v in 1.." STR(FA4CP_HEAD_DIM_MAX);
    if (backend != FA4CP_BACKEND_CUDA)
        return "none (unknown backend)";
    pthread_once(&cuda_text_once, make_cuda_text);
    return cuda_text;
}

fa4cp_status fa4cp_attn_supports(fa4cp_backend backend, fa4cp_dtype dtype, int head_dim,
                                  int head_dim_v, int backward)
{
    const int dv = head_dim_v ? head_dim_v : head_dim;
    if (backend != FA4CP_BACKEND_CPU && backend != FA4CP_BACKEND_CUDA)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "backend %d is not a fa4cp_backend", (int)backend);
    if (dtype < FA4CP_BF16 || dtype > FA4CP_FP64)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "dtype %d is not a fa4cp_dtype", (int)dtype);
    if (head_dim < 1)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "head_dim is %d: it must be >= 1", head_dim);
    if (head_dim_v < 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "head_dim_v is %d: it must be >= 1 (or 0 for head_dim)", head_dim_v);
    if (backend == FA4CP_BACKEND_CPU) {
        if (head_dim > FA4CP_HEAD_DIM_MAX || dv > FA4CP_HEAD_DIM_MAX)
            return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                                   "cpu attention: head_dim %d, head_dim_v %d: the cpu backend takes %s",
                                   head_dim, dv, fa4cp_attn_head_dims(backend));
        return FA4CP_OK;
    }
    if (dtype != FA4CP_BF16 && dtype != FA4CP_FP16)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cuda attention: dtype %s is not supported: use bf16 or fp16 (fp32/fp64 "
                               "run on the cpu backend only)",
                               fa4cp_dtype_name(dtype));
    for (int i = 0; i < NCUDA; i++)
        if (cuda_dims[i].d == head_dim && cuda_dims[i].dv == dv) {
            if (backward && !cuda_dims[i].bwd)
                break;
            return FA4CP_OK;
        }
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "cuda attention: head_dim %d with head_dim_v %d has no %s kernel: the cuda "
                           "backend takes (head_dim, head_dim_v) = %s; the cpu backend takes any",
                           head_dim, dv, backward ? "backward" : "forward",
                           fa4cp_attn_head_dims(backend));
}
