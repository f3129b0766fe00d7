// fwd_launch.h - the forward launchers of each instantiated family (one .cu
// per element type), called by the dispatcher in attn_fwd.cu.
#pragma once

#include <cuda_runtime.h>

#include "fa4cp_kernels.h"

namespace fa4cp {
cudaError_t fwd_launch_bf16(const fa4cp_kparams &p); // attn_fwd_bf16.cu, head_dim 64 or 128
cudaError_t fwd_launch_fp16(const fa4cp_kparams &p); // attn_fwd_fp16.cu
} // namespace fa4cp
