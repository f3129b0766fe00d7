// fwd_launch.h - the forward launchers of the instantiated families, one per
// (head_dim, head_dim_v), each compiled by its own .cu (attn_fwd_hd*.cu,
// both element types), called by the dispatcher in attn_fwd.cu.
#pragma once

#include <cuda_runtime.h>

#include "fa4cp_kernels.h"

// The families: X(head_dim, head_dim_v).  lib/attn/attn_caps.c lists the
// same pairs (the table the API checks before any launch).
#define FA4CP_FWD_FAMILIES(X) X(32, 32) X(64, 64) X(80, 80) X(96, 96) X(128, 128) X(192, 192) X(192, 128) X(256, 256)

#define FA4CP_FWD_FN_(a, b) fwd_launch_##a##_##b
#define FA4CP_FWD_FN(a, b) FA4CP_FWD_FN_(a, b)

namespace fa4cp {
#define FA4CP_FWD_DECL(a, b) cudaError_t FA4CP_FWD_FN(a, b)(const fa4cp_kparams &p);
FA4CP_FWD_FAMILIES(FA4CP_FWD_DECL)
#undef FA4CP_FWD_DECL
} // namespace fa4cp
