/* cp_ops.h - the elementwise work of the CP executor, behind a table.
 *
 * The executor (cp_exec.c) never touches tensor memory itself: every
 * allocation, copy, reorder, LSE merge, accumulation and conversion goes
 * through a cp_ops table, so the GPU path can drop in a CUDA implementation
 * (device buffers, kernels on `stream`) and reuse the plans and the executor
 * unchanged.  cp_ops_host.c is the host implementation (cpu backend, local
 * transport in host memory).
 *
 * Row maps: an array of cp_pair {dst, src} in ops memory (built on the host
 * by the executor and copied in with upload).  "Units" are rows or parts of
 * rows of unit_bytes; with nouter > 1 the same map is applied to nouter
 * slices of dst_stride / src_stride units (the [heads, rows] LSE layout).
 */
#ifndef FA4CP_CP_OPS_H
#define FA4CP_CP_OPS_H

#include "core/internal.h"

typedef struct cp_pair {
    int64_t dst, src;
} cp_pair;

typedef struct cp_ops {
    const char *name;
    /* buffers the other ops and the backend can use (host: fa4cp_malloc) */
    void *(*alloc)(size_t bytes, const char *what, void *stream);
    void (*free)(void *p, void *stream);
    /* host memory -> ops memory (row maps) */
    fa4cp_status (*upload)(void *dst, const void *host, size_t bytes, void *stream);
    fa4cp_status (*zero)(void *dst, size_t bytes, void *stream);
    fa4cp_status (*copy)(void *dst, const void *src, size_t bytes, void *stream);
    /* n elements of dtype (fp32/fp64) set to -inf */
    fa4cp_status (*fill_neg_inf)(fa4cp_dtype dtype, void *dst, size_t n, void *stream);
    /* for o < nouter, k < n: dst[o*dst_stride + map[k].dst] = src[o*src_stride + map[k].src] */
    fa4cp_status (*gather)(void *dst, const void *src, const cp_pair *map, int64_t n,
                           size_t unit_bytes, int nouter, int64_t dst_stride, int64_t src_stride,
                           void *stream);
    /* acc[map.dst] += src[map.src] (rows of row_elems; acc in acc_dtype, src in src_dtype) */
    fa4cp_status (*add)(fa4cp_dtype acc_dtype, void *acc, fa4cp_dtype src_dtype, const void *src,
                        const cp_pair *map, int64_t n, size_t row_elems, void *stream);
    /* dst[map.dst] = (dst_dtype) src[map.src] */
    fa4cp_status (*convert)(fa4cp_dtype dst_dtype, void *dst, fa4cp_dtype src_dtype,
                            const void *src, const cp_pair *map, int64_t n, size_t row_elems,
                            void *stream);
    /* Online LSE merge of a partial result into the running one, for every
     * pair and head: acc [acc_rows, heads, d] (acc_dtype), acc_lse [heads,
     * acc_rows] (acc_dtype); part [part_rows, heads, d] (part_dtype),
     * part_lse [heads, part_rows] (acc_dtype).  -inf partials are no-ops. */
    fa4cp_status (*merge)(fa4cp_dtype acc_dtype, void *acc, void *acc_lse, int64_t acc_rows,
                          fa4cp_dtype part_dtype, const void *part, const void *part_lse,
                          int64_t part_rows, const cp_pair *map, int64_t n, int heads,
                          int head_dim, void *stream);
    /* wait for everything queued on stream (host: nothing to do) */
    fa4cp_status (*sync)(void *stream);
    /* Streams and events, for the overlap of communication with compute and
     * for the per-step timings.  NULL in the host table (everything there is
     * synchronous); the executor then runs on `stream` alone. */
    fa4cp_status (*stream_create)(void **out);
    void (*stream_destroy)(void *s);
    /* `waiter` waits for the work queued on `on` so far (no host wait) */
    fa4cp_status (*stream_wait)(void *waiter, void *on);
    fa4cp_status (*event_create)(void **out);
    void (*event_destroy)(void *ev);
    fa4cp_status (*event_record)(void *ev, void *stream);
    /* milliseconds between two recorded events (waits for the later one) */
    fa4cp_status (*event_ms)(void *from, void *to, float *ms);
} cp_ops;

const cp_ops *fa4cp_cp_ops_host(void);
/* The CUDA table (lib/cp_ops_cuda.c), NULL in a build without CUDA. */
const cp_ops *fa4cp_cp_ops_cuda(void);

#endif
