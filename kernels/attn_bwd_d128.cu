// attn_bwd_d128.cu - instantiations of the backward template (attn_bwd_kernel.cuh):
// (128, 128), bf16 and fp16, both modes.
#include "attn_bwd_kernel.cuh"
#include "attn_bwd_launch.h"

namespace fa4cp {
FA4CP_BWD_INSTANTIATE(128, 128)
} // namespace fa4cp
