// attn_fwd_hd192_128.cu - the forward family (head_dim, head_dim_v) = (192, 128), bf16 and fp16.
#define FA4CP_FWD_DQK 192
#define FA4CP_FWD_DV 128
#include "attn_fwd_hd.cuh"
