/* attn_internal.h - the attention backends behind fa4cp_attn_fwd/bwd. */
#ifndef FA4CP_ATTN_INTERNAL_H
#define FA4CP_ATTN_INTERNAL_H

#include "fa4cp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU reference (attn_cpu.c). */
fa4cp_status fa4cp_attn_cpu_fwd(const fa4cp_attn_args *a);
fa4cp_status fa4cp_attn_cpu_bwd(const fa4cp_attn_args *a);

/* CUDA backend (attn_cuda.c, built with HAVE_CUDA). */
int fa4cp_attn_cuda_available(void);
fa4cp_status fa4cp_attn_cuda_fwd(const fa4cp_attn_args *a);
fa4cp_status fa4cp_attn_cuda_bwd(const fa4cp_attn_args *a);

#ifdef __cplusplus
}
#endif

#endif
