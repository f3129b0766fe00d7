// attn_fwd_bf16.cu - the bf16 forward kernels (head_dim 64 and 128); see fwd_kernel.cuh.
#include "fwd_kernel.cuh"

namespace fa4cp {
cudaError_t fwd_launch_bf16(const fa4cp_kparams &p) {
    return fwd_launch<__nv_bfloat16>(p);
}
} // namespace fa4cp
