// attn_fwd.cu - the forward dispatcher: the warp-specialised TMA kernel of
// fwd_kernel.cuh, instantiated once per element type (attn_fwd_bf16.cu,
// attn_fwd_fp16.cu).
#include "fwd_launch.h"

extern "C" int fa4cp_kernel_attn_fwd(const fa4cp_kparams *p) {
    using namespace fa4cp;
    return (int)(p->is_fp16 ? fwd_launch_fp16(*p) : fwd_launch_bf16(*p));
}
