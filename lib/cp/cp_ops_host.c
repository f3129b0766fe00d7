/* cp_ops_host.c - the host implementation of the CP elementwise ops.
 *
 * Straight loops over host memory.  Accumulators are float (double for
 * fp64 storage); 16-bit values go through fa4cp_load/fa4cp_store.
 */
#include "cp_ops.h"

#include <math.h>
#include <string.h>

static void *h_alloc(size_t bytes, const char *what, void *stream) { return fa4cp_malloc(bytes, what); }

static void h_free(void *p, void *stream) { fa4cp_free(p); }

static fa4cp_status h_upload(void *dst, const void *host, size_t bytes, void *stream)
{
    if (bytes)
        memcpy(dst, host, bytes);
    return FA4CP_OK;
}

static fa4cp_status h_zero(void *dst, size_t bytes, void *stream)
{
    if (bytes)
        memset(dst, 0, bytes);
    return FA4CP_OK;
}

static fa4cp_status h_copy(void *dst, const void *src, size_t bytes, void *stream)
{
    if (bytes && dst != src)
        memmove(dst, src, bytes);
    return FA4CP_OK;
}

static fa4cp_status h_fill_neg_inf(fa4cp_dtype dtype, void *dst, size_t n, void *stream)
{
    for (size_t i = 0; i < n; i++)
        fa4cp_store(dtype, dst, i, -INFINITY);
    return FA4CP_OK;
}

static fa4cp_status h_gather(void *dst, const void *src, const cp_pair *map, int64_t n,
                             size_t unit_bytes, int nouter, int64_t dst_stride, int64_t src_stride,
                             void *stream)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (int o = 0; o < nouter; o++)
        for (int64_t k = 0; k < n; k++)
            memcpy(d + ((size_t)o * (size_t)dst_stride + (size_t)map[k].dst) * unit_bytes,
                   s + ((size_t)o * (size_t)src_stride + (size_t)map[k].src) * unit_bytes, unit_bytes);
    return FA4CP_OK;
}

static fa4cp_status h_add(fa4cp_dtype acc_dtype, void *acc, fa4cp_dtype src_dtype, const void *src,
                          const cp_pair *map, int64_t n, size_t row_elems, void *stream)
{
    for (int64_t k = 0; k < n; k++) {
        size_t di = (size_t)map[k].dst * row_elems, si = (size_t)map[k].src * row_elems;
        if (acc_dtype == FA4CP_FP32 && src_dtype == FA4CP_FP32) {
            float *a = (float *)acc + di;
            const float *x = (const float *)src + si;
            for (size_t e = 0; e < row_elems; e++)
                a[e] += x[e];
        } else if (acc_dtype == FA4CP_FP64 && src_dtype == FA4CP_FP64) {
            double *a = (double *)acc + di;
            const double *x = (const double *)src + si;
            for (size_t e = 0; e < row_elems; e++)
                a[e] += x[e];
        } else if (acc_dtype == FA4CP_FP32) {
            float *a = (float *)acc + di;
            for (size_t e = 0; e < row_elems; e++)
                a[e] += (float)fa4cp_load(src_dtype, src, si + e);
        } else {
            for (size_t e = 0; e < row_elems; e++)
                fa4cp_store(acc_dtype, acc, di + e,
                            fa4cp_load(acc_dtype, acc, di + e) + fa4cp_load(src_dtype, src, si + e));
        }
    }
    return FA4CP_OK;
}

static fa4cp_status h_convert(fa4cp_dtype dst_dtype, void *dst, fa4cp_dtype src_dtype,
                              const void *src, const cp_pair *map, int64_t n, size_t row_elems,
                              void *stream)
{
    for (int64_t k = 0; k < n; k++) {
        size_t di = (size_t)map[k].dst * row_elems, si = (size_t)map[k].src * row_elems;
        if (dst_dtype == src_dtype)
            memcpy((unsigned char *)dst + di * fa4cp_dtype_size(dst_dtype),
                   (const unsigned char *)src + si * fa4cp_dtype_size(src_dtype),
                   row_elems * fa4cp_dtype_size(dst_dtype));
        else
            for (size_t e = 0; e < row_elems; e++)
                fa4cp_store(dst_dtype, dst, di + e, fa4cp_load(src_dtype, src, si + e));
    }
    return FA4CP_OK;
}

/* merged lse of a and b (either may be -inf) and the weights of each side */
#define MERGE_BODY(T, EXP, LOG1P)                                                                  \
    for (int64_t k = 0; k < n; k++)                                                                \
        for (int h = 0; h < heads; h++) {                                                          \
            T *la = (T *)acc_lse + (size_t)h * (size_t)acc_rows + (size_t)map[k].dst;              \
            T lb = ((const T *)part_lse)[(size_t)h * (size_t)part_rows + (size_t)map[k].src];      \
            if (lb == -INFINITY || isnan(lb))                                                      \
                continue; /* the partial saw no key */                                             \
            T *a = (T *)acc + ((size_t)map[k].dst * (size_t)heads + (size_t)h) * (size_t)head_dim; \
            size_t pi = ((size_t)map[k].src * (size_t)heads + (size_t)h) * (size_t)head_dim;       \
            T wa, wb, m;                                                                           \
            if (*la == -INFINITY) {                                                                \
                wa = 0, wb = 1, m = lb;                                                            \
            } else {                                                                               \
                T hi = *la > lb ? *la : lb, lo = *la > lb ? lb : *la;                              \
                m = hi + LOG1P(EXP(lo - hi));                                                      \
                wa = EXP(*la - m), wb = EXP(lb - m);                                               \
            }                                                                                      \
            for (int x = 0; x < head_dim; x++) {                                                   \
                T p = (T)fa4cp_load(part_dtype, part, pi + (size_t)x);                             \
                a[x] = wa == 0 ? wb * p : a[x] * wa + p * wb;                                      \
            }                                                                                      \
            *la = m;                                                                               \
        }

static fa4cp_status h_merge(fa4cp_dtype acc_dtype, void *acc, void *acc_lse, int64_t acc_rows,
                            fa4cp_dtype part_dtype, const void *part, const void *part_lse,
                            int64_t part_rows, const cp_pair *map, int64_t n, int heads,
                            int head_dim, void *stream)
{
    if (acc_dtype == FA4CP_FP64) {
        MERGE_BODY(double, exp, log1p)
    } else {
        MERGE_BODY(float, expf, log1pf)
    }
    return FA4CP_OK;
}

static fa4cp_status h_sync(void *stream) { return FA4CP_OK; }

static const cp_ops host_ops = {
    .name = "host",
    .alloc = h_alloc,
    .free = h_free,
    .upload = h_upload,
    .zero = h_zero,
    .copy = h_copy,
    .fill_neg_inf = h_fill_neg_inf,
    .gather = h_gather,
    .add = h_add,
    .convert = h_convert,
    .merge = h_merge,
    .sync = h_sync,
};

const cp_ops *fa4cp_cp_ops_host(void) { return &host_ops; }
