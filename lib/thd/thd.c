/* thd.c - varlen (THD) index math and the load-balanced CP partition.
 *
 * Every function here is pure: no allocation, no global state.  A sequence's
 * padded length P is cut into 2*cp chunks of C = P/(2*cp) rows; rank r holds
 * chunk r then chunk 2*cp-1-r, so its local copy of the sequence has 2C rows
 * and starts at local offset cu_padded[i]/cp (every padded length is a
 * multiple of 2*cp, hence so is every cu_padded[i]).
 */
#include "core/internal.h"

fa4cp_status fa4cp_thd_check(int batch, const int32_t *cu_padded, const int32_t *seqused, int cp)
{
    if (batch < 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "batch is %d: it must be >= 0", batch);
    if (!cu_padded)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "cu_seqlens is NULL");
    if (cp < 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "cp size is %d: it must be >= 1", cp);
    if (cu_padded[0] != 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "cu_seqlens[0] is %d: it must be 0", (int)cu_padded[0]);
    for (int i = 0; i < batch; i++) {
        int32_t padded = cu_padded[i + 1] - cu_padded[i];
        if (padded < 0)
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "cu_seqlens decreases at sequence %d (%d -> %d)", i,
                                   (int)cu_padded[i], (int)cu_padded[i + 1]);
        if (seqused && (seqused[i] < 0 || seqused[i] > padded))
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "sequence %d uses %d tokens but its padded length is %d", i,
                                   (int)seqused[i], (int)padded);
        if (cp > 0 && padded % (2 * cp) != 0) {
            int32_t need = (2 * cp) - padded % (2 * cp);
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "sequence %d has padded length %d, not divisible by 2*cp = %d: "
                                   "pad it to %d (%d more rows)",
                                   i, (int)padded, 2 * cp, (int)(padded + need), (int)need);
        }
    }
    return FA4CP_OK;
}

int32_t fa4cp_thd_chunk_valid(int32_t len, int32_t padded, int cp, int chunk)
{
    int32_t c = padded / (2 * cp);
    int64_t v = (int64_t)len - (int64_t)chunk * c;
    if (v < 0)
        v = 0;
    if (v > c)
        v = c;
    return (int32_t)v;
}

void fa4cp_thd_local_cu(int batch, const int32_t *cu_padded, int cp, int half, int32_t *local_cu)
{
    int div = half < 0 ? cp : 2 * cp;
    for (int i = 0; i <= batch; i++)
        local_cu[i] = cu_padded[i] / div;
}

void fa4cp_thd_local_seqused(int batch, const int32_t *cu_padded, const int32_t *seqused, int cp,
                             int rank, int half, int32_t *local_used)
{
    for (int i = 0; i < batch; i++) {
        int32_t padded = cu_padded[i + 1] - cu_padded[i];
        int32_t len = seqused ? seqused[i] : padded;
        int32_t first = fa4cp_thd_chunk_valid(len, padded, cp, rank);
        int32_t second = fa4cp_thd_chunk_valid(len, padded, cp, 2 * cp - 1 - rank);
        local_used[i] = half == 0 ? first : half == 1 ? second : first + second;
    }
}

int fa4cp_thd_seq_of_row(int batch, const int32_t *cu, int64_t row)
{
    if (batch <= 0 || row < cu[0] || row >= cu[batch])
        return -1;
    int lo = 0, hi = batch - 1; /* find the last i with cu[i] <= row < cu[i+1] */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (cu[mid] <= row)
            lo = mid;
        else
            hi = mid - 1;
    }
    /* skip zero-length sequences that start at the same row */
    while (lo < batch - 1 && cu[lo + 1] <= row)
        lo++;
    return lo;
}

int64_t fa4cp_thd_local_to_global(int batch, const int32_t *cu_padded, int cp, int rank,
                                  int64_t local_row)
{
    if (batch <= 0 || cp <= 0 || rank < 0 || rank >= cp || local_row < 0 ||
        local_row >= cu_padded[batch] / cp)
        return -1;
    /* local sequence i spans [cu[i]/cp, cu[i+1]/cp): binary search on that */
    int lo = 0, hi = batch - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (cu_padded[mid] / cp <= local_row)
            lo = mid;
        else
            hi = mid - 1;
    }
    while (lo < batch - 1 && cu_padded[lo + 1] / cp <= local_row)
        lo++;
    int64_t chunk = (cu_padded[lo + 1] - cu_padded[lo]) / (2 * cp);
    int64_t off = local_row - cu_padded[lo] / cp;
    int64_t c = off < chunk ? rank : 2 * cp - 1 - rank;
    return cu_padded[lo] + c * chunk + (off % chunk);
}

fa4cp_status fa4cp_thd_global_to_local(int batch, const int32_t *cu_padded, int cp, int64_t g,
                                       int *rank, int64_t *local_row)
{
    int s = fa4cp_thd_seq_of_row(batch, cu_padded, g);
    if (s < 0 || cp <= 0)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "row %lld is outside the %lld rows of the batch",
                               (long long)g, (long long)(batch > 0 ? cu_padded[batch] : 0));
    int64_t chunk = (cu_padded[s + 1] - cu_padded[s]) / (2 * cp);
    int64_t off = g - cu_padded[s];
    int64_t c = off / chunk;
    int r = c < cp ? (int)c : (int)(2 * cp - 1 - c);
    int64_t local = cu_padded[s] / cp + (c < cp ? 0 : chunk) + off % chunk;
    *rank = r;
    *local_row = local;
    return FA4CP_OK;
}
