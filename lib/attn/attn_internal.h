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

/* Where the cuda backward's dq_accum starts after Dsum ([heads][total_q]
 * fp32, 256-byte aligned; rows = heads * total_q), in its workspace and in a
 * chain's dq_carry (attn.c: fa4cp_attn_bwd_carry_bytes sizes it from here).
 * Inline: attn.c and attn_cuda.c both use it, and attn.c calls into
 * attn_cuda.c, never the reverse (tests/layers.sh). */
static inline size_t fa4cp_attn_cuda_acc_offset(size_t rows) { return (rows * sizeof(float) + 255) & ~(size_t)255; }

/* CUDA backend (attn_cuda.c, built with HAVE_CUDA). */
int fa4cp_attn_cuda_available(void);
fa4cp_status fa4cp_attn_cuda_fwd(const fa4cp_attn_args *a);
fa4cp_status fa4cp_attn_cuda_bwd(const fa4cp_attn_args *a);

#ifdef __cplusplus
}
#endif

#endif
