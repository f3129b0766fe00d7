// attn_fwd_hd32.cu - the forward family (head_dim, head_dim_v) = (32, 32), bf16 and fp16.
#define FA4CP_FWD_DQK 32
#define FA4CP_FWD_DV 32
#include "attn_fwd_hd.cuh"
