// attn_bwd_d96.cu - instantiations of the backward template (attn_bwd_kernel.cuh):
// (80, 80), (96, 96), bf16 and fp16, both modes.
#include "attn_bwd_kernel.cuh"
#include "attn_bwd_launch.h"

namespace fa4cp {
FA4CP_BWD_INSTANTIATE(80, 80)
FA4CP_BWD_INSTANTIATE(96, 96)
} // namespace fa4cp
