// attn_fwd_hd.cuh - the body of every attn_fwd_hd*.cu: instantiates the
// forward family FA4CP_FWD_DQK x FA4CP_FWD_DV (bf16 and fp16, see FwdShape
// in fwd_kernel.cuh for its tile).  One family per .cu keeps each nvcc run
// short and lets make build them in parallel.
#if !defined(FA4CP_FWD_DQK) || !defined(FA4CP_FWD_DV)
#error "define FA4CP_FWD_DQK and FA4CP_FWD_DV before including attn_fwd_hd.cuh"
#endif
#include "fwd_kernel.cuh"

namespace fa4cp {
cudaError_t FA4CP_FWD_FN(FA4CP_FWD_DQK, FA4CP_FWD_DV)(const fa4cp_kparams &p) {
    return fwd_launch_family<FA4CP_FWD_DQK, FA4CP_FWD_DV>(p);
}
} // namespace fa4cp
