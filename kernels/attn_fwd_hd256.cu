// attn_fwd_hd256.cu - the forward family (head_dim, head_dim_v) = (256, 256), bf16 and fp16.
#define FA4CP_FWD_DQK 256
#define FA4CP_FWD_DV 256
#include "attn_fwd_hd.cuh"
