// attn_bwd.cu - the backward's entry point: picks the instantiation of the
// one backward template (attn_bwd_kernel.cuh) for (head_dim, head_dim_v);
// the attn_bwd_d*.cu files instantiate it, a few head dims each.
#include "attn_bwd_launch.h"

extern "C" int fa4cp_kernel_attn_bwd(const fa4cp_kparams *p) {
    using namespace fa4cp;
    const int d = p->head_dim, dv = p->head_dim_v;
    cudaError_t e = cudaErrorInvalidValue;
    if (d == dv) {
        switch (d) {
        case 32: e = launch_bwd_32_32(*p); break;
        case 64: e = launch_bwd_64_64(*p); break;
        case 80: e = launch_bwd_80_80(*p); break;
        case 96: e = launch_bwd_96_96(*p); break;
        case 128: e = launch_bwd_128_128(*p); break;
        case 192: e = launch_bwd_192_192(*p); break;
        case 256: e = launch_bwd_256_256(*p); break;
        default: break;
        }
    } else if (d == 192 && dv == 128) {
        e = launch_bwd_192_128(*p);
    }
    return (int)e;
}
