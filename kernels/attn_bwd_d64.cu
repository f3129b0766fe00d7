// attn_bwd_d64.cu - instantiations of the backward template (attn_bwd_kernel.cuh):
// (32, 32), (64, 64), bf16 and fp16, both modes.
#include "attn_bwd_kernel.cuh"
#include "attn_bwd_launch.h"

namespace fa4cp {
FA4CP_BWD_INSTANTIATE(32, 32)
FA4CP_BWD_INSTANTIATE(64, 64)
} // namespace fa4cp
