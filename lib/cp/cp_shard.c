/* cp_shard.c - global <-> rank-local tensors (host memory): rank r holds
 * chunks r and 2cp-1-r of every sequence, in that order.
 */
#include "core/internal.h"

#include <string.h>

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fa4cp_set_error(FA4CP_ERR_INVALID, __VA_ARGS__);                                \
    } while (0)

void fa4cp_cp_bshd_cu(int batch, int seqlen, int32_t *cu)
{
    for (int i = 0; i <= batch; i++)
        cu[i] = (int32_t)((int64_t)i * seqlen);
}

int64_t fa4cp_cp_local_rows(int batch, const int32_t *cu, int cp)
{
    return batch > 0 && cp > 0 ? cu[batch] / cp : 0;
}

/* for each local row of `rank`: global row; to_local: copy global -> local */
static fa4cp_status shard_rows(int batch, const int32_t *cu, int cp, int rank, size_t unit,
                               int nouter, const void *src, void *dst, int to_local)
{
    fa4cp_status st = fa4cp_thd_check(batch, cu, NULL, cp);
    if (st != FA4CP_OK)
        return st;
    NEED(rank >= 0 && rank < cp, "cp rank %d is outside the group of %d ranks", rank, cp);
    NEED(src && dst, "shard: NULL tensor");
    int64_t T = fa4cp_cp_local_rows(batch, cu, cp), G = batch > 0 ? cu[batch] : 0;
    for (int o = 0; o < nouter; o++)
        for (int64_t l = 0; l < T; l++) {
            int64_t g = fa4cp_thd_local_to_global(batch, cu, cp, rank, l);
            const unsigned char *s = (const unsigned char *)src;
            unsigned char *d = (unsigned char *)dst;
            if (to_local)
                memcpy(d + ((size_t)o * (size_t)T + (size_t)l) * unit,
                       s + ((size_t)o * (size_t)G + (size_t)g) * unit, unit);
            else
                memcpy(d + ((size_t)o * (size_t)G + (size_t)g) * unit,
                       s + ((size_t)o * (size_t)T + (size_t)l) * unit, unit);
        }
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_shard(int batch, const int32_t *cu, int cp, int rank, size_t row_bytes,
                            const void *global, void *local)
{
    return shard_rows(batch, cu, cp, rank, row_bytes, 1, global, local, 1);
}

fa4cp_status fa4cp_cp_unshard(int batch, const int32_t *cu, int cp, int rank, size_t row_bytes,
                              const void *local, void *global)
{
    return shard_rows(batch, cu, cp, rank, row_bytes, 1, local, global, 0);
}

fa4cp_status fa4cp_cp_shard_lse(int batch, const int32_t *cu, int cp, int rank, int heads,
                                size_t elem_bytes, const void *global, void *local)
{
    return shard_rows(batch, cu, cp, rank, elem_bytes, heads, global, local, 1);
}

fa4cp_status fa4cp_cp_unshard_lse(int batch, const int32_t *cu, int cp, int rank, int heads,
                                  size_t elem_bytes, const void *local, void *global)
{
    return shard_rows(batch, cu, cp, rank, elem_bytes, heads, local, global, 0);
}
