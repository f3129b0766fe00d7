// attn_fwd_hd80.cu - the forward family (head_dim, head_dim_v) = (80, 80), bf16 and fp16.
#define FA4CP_FWD_DQK 80
#define FA4CP_FWD_DV 80
#include "attn_fwd_hd.cuh"
