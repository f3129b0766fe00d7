// attn_fwd.cu - the forward dispatcher: the warp-specialised TMA kernel of
// fwd_kernel.cuh, one family per (head_dim, head_dim_v) (attn_fwd_hd*.cu).
#include "fwd_launch.h"

extern "C" int fa4cp_kernel_attn_fwd(const fa4cp_kparams *p) {
    using namespace fa4cp;
#define FA4CP_FWD_CASE(a, b)                                                                                 \
    if (p->head_dim == (a) && p->head_dim_v == (b))                                                          \
        return (int)FA4CP_FWD_FN(a, b)(*p);
    FA4CP_FWD_FAMILIES(FA4CP_FWD_CASE)
#undef FA4CP_FWD_CASE
    return (int)cudaErrorInvalidValue;
}
