// attn_fwd_fp16.cu - the fp16 forward kernels (head_dim 64 and 128); see fwd_kernel.cuh.
#include "fwd_kernel.cuh"

namespace fa4cp {
cudaError_t fwd_launch_fp16(const fa4cp_kparams &p) {
    return fwd_launch<__half>(p);
}
} // namespace fa4cp
