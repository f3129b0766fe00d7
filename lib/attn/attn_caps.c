/* attn_caps.c - what each backend's kernels can run, known without a device
 * (the kernels' instantiations): the dry run asks it, and so do the cuda
 * checks before a launch, so "valid" in a dry run means it will run. */
#include "attn_internal.h"
#include "core/internal.h"

fa4cp_status fa4cp_attn_supports(fa4cp_backend backend, fa4cp_dtype dtype, int head_dim)
{
    if (backend == FA4CP_BACKEND_CPU)
        return FA4CP_OK;
    if (backend != FA4CP_BACKEND_CUDA)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "unknown backend %d", (int)backend);
    /* the kernels' instantiations (kernels/): one place, asked by the dry run and the cuda checks */
    if (dtype != FA4CP_BF16 && dtype != FA4CP_FP16)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cuda attention: dtype %s is not supported: use bf16 or fp16 (fp32/fp64 run on "
                               "the cpu backend only)",
                               fa4cp_dtype_name(dtype));
    if (head_dim != 64 && head_dim != 128)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cuda attention: head_dim %d is not supported: the kernels take 64 or 128", head_dim);
    return FA4CP_OK;
}
