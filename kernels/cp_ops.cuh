/* cp_ops.cuh - launchers of the CP elementwise kernels (kernels/cp_ops.cu).
 *
 * C-callable; every launcher returns a cudaError_t as int (0 = success) and
 * queues its work on `stream` (a cudaStream_t).  dtype codes are
 * fa4cp_dtype values (0 bf16, 1 fp16, 2 fp32, 3 fp64).  Row maps are device
 * arrays of {int64 dst, int64 src} pairs (cp_pair in lib/cp_ops.h).
 */
#ifndef FA4CP_CP_OPS_CUH
#define FA4CP_CP_OPS_CUH

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fa4cp_kpair {
    int64_t dst, src;
} fa4cp_kpair;

int fa4cp_kcp_fill_neg_inf(int dtype, void *dst, size_t n, void *stream);

/* dst[o*dst_stride + map[k].dst] = src[o*src_stride + map[k].src], units of unit_bytes */
int fa4cp_kcp_gather(void *dst, const void *src, const fa4cp_kpair *map, int64_t n,
                     size_t unit_bytes, int nouter, int64_t dst_stride, int64_t src_stride,
                     void *stream);

/* acc[map.dst row] += src[map.src row] (acc fp32/fp64, src any) */
int fa4cp_kcp_add(int acc_dtype, void *acc, int src_dtype, const void *src,
                  const fa4cp_kpair *map, int64_t n, size_t row_elems, void *stream);

/* dst[map.dst row] = (dst_dtype) src[map.src row] */
int fa4cp_kcp_convert(int dst_dtype, void *dst, int src_dtype, const void *src,
                      const fa4cp_kpair *map, int64_t n, size_t row_elems, void *stream);

/* online LSE merge of a partial (out, lse) into the running one (see cp_ops.h) */
int fa4cp_kcp_merge(int acc_dtype, void *acc, void *acc_lse, int64_t acc_rows, int part_dtype,
                    const void *part, const void *part_lse, int64_t part_rows,
                    const fa4cp_kpair *map, int64_t n, int heads, int head_dim, void *stream);

/* dst[i] = op over the nsrc sources of src[s][i], i < count (op 0 sum, 1 max;
 * 16-bit values accumulate in float).  nsrc <= 16. */
int fa4cp_kcp_reduce(int dtype, int op, void *dst, const void *const *srcs, int nsrc,
                     size_t count, void *stream);

#ifdef __cplusplus
}
#endif

#endif
