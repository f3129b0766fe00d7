// attn_fwd_bf16.cu - the bf16 forward kernels (head_dim 64 and 128); see fwd_kernel.cuh.
#include "fwd_kernel.cuh"

namespace fa4cp {
cudaError_t fwd_launch_bf16(const fa4cp_kparams &p) {
    if (p.head_dim == 64)
        return launch_fwd_ws<__nv_bfloat16, 64>(p);
    if (p.head_dim == 128)
        return launch_fwd_ws<__nv_bfloat16, 128>(p);
    return cudaErrorInvalidValue;
}
} // namespace fa4cp
