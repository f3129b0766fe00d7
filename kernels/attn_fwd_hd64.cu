// attn_fwd_hd64.cu - the forward family (head_dim, head_dim_v) = (64, 64), bf16 and fp16.
#define FA4CP_FWD_DQK 64
#define FA4CP_FWD_DV 64
#include "attn_fwd_hd.cuh"
