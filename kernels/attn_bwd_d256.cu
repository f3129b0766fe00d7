// attn_bwd_d256.cu - instantiations of the backward template (attn_bwd_kernel.cuh):
// (256, 256), bf16 and fp16, both modes.
#include "attn_bwd_kernel.cuh"
#include "attn_bwd_launch.h"

namespace fa4cp {
FA4CP_BWD_INSTANTIATE(256, 256)
} // namespace fa4cp
