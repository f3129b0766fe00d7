// attn_bwd_launch.h - the backward's launchers, one per (head_dim,
// head_dim_v), bf16 or fp16 by p.is_fp16 (defined in attn_bwd_d*.cu by
// FA4CP_BWD_INSTANTIATE, attn_bwd_kernel.cuh).
#pragma once

#include <cuda_runtime.h>

#include "fa4cp_kernels.h"

namespace fa4cp {
cudaError_t launch_bwd_32_32(const fa4cp_kparams &p);
cudaError_t launch_bwd_64_64(const fa4cp_kparams &p);
cudaError_t launch_bwd_80_80(const fa4cp_kparams &p);
cudaError_t launch_bwd_96_96(const fa4cp_kparams &p);
cudaError_t launch_bwd_128_128(const fa4cp_kparams &p);
cudaError_t launch_bwd_192_192(const fa4cp_kparams &p);
cudaError_t launch_bwd_192_128(const fa4cp_kparams &p);
cudaError_t launch_bwd_256_256(const fa4cp_kparams &p);
} // namespace fa4cp
