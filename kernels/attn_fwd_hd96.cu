// attn_fwd_hd96.cu - the forward family (head_dim, head_dim_v) = (96, 96), bf16 and fp16.
#define FA4CP_FWD_DQK 96
#define FA4CP_FWD_DV 96
#include "attn_fwd_hd.cuh"
