// attn_fwd_hd192.cu - the forward family (head_dim, head_dim_v) = (192, 192), bf16 and fp16.
#define FA4CP_FWD_DQK 192
#define FA4CP_FWD_DV 192
#include "attn_fwd_hd.cuh"
