/* attn_cuda.c - placeholder until the kernels land: the cuda backend reports
 * that it has no kernels. */
#include "attn_internal.h"
#include "internal.h"

int fa4cp_attn_cuda_available(void) { return 0; }

fa4cp_status fa4cp_attn_cuda_fwd(const fa4cp_attn_args *a)
{
    FA4CP_UNUSED(a);
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "the cuda backend has no kernels in this build");
}

fa4cp_status fa4cp_attn_cuda_bwd(const fa4cp_attn_args *a)
{
    FA4CP_UNUSED(a);
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "the cuda backend has no kernels in this build");
}
