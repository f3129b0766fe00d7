/* cp_ops_cuda.c - the CUDA implementation of the CP elementwise ops.
 *
 * Device memory from the stream-ordered allocator (cudaMallocAsync on the
 * call's stream, freed with cudaFreeAsync), copies and kernels queued on the
 * stream (kernels/cp_ops.cu): nothing here waits on the host except
 * event_ms, which the executor calls only after its last step when timings
 * are asked for.  Every CUDA call is checked and reported with file:line.
 */
#include "cp_ops.h"
#include "core/checks.h"

#include "../../kernels/cp_ops.cuh"

#include <cuda_runtime_api.h>

#define CUDA_OK(call) FA4CP_CUDA_RETURN("cp cuda ops", call)

#define KERNEL_OK(call, what)                                                                      \
    do {                                                                                           \
        int e_ = (call);                                                                           \
        if (e_ != 0)                                                                               \
            return fa4cp_set_error(FA4CP_ERR_CUDA, "cp cuda ops: %s:%d: the %s kernel: %s",        \
                                   __FILE__, __LINE__, what, cudaGetErrorString((cudaError_t)e_)); \
    } while (0)

_Static_assert(sizeof(cp_pair) == sizeof(fa4cp_kpair), "cp_pair and fa4cp_kpair agree");

static void *d_alloc(size_t bytes, const char *what, void *stream)
{
    void *p = NULL;
    cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 1, (cudaStream_t)stream);
    if (e != cudaSuccess) {
        fa4cp_set_error(FA4CP_ERR_NOMEM, "cp cuda ops: %s:%d: cudaMallocAsync of %zu bytes for %s: %s",
                        __FILE__, __LINE__, bytes, what, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void d_free(void *p, void *stream)
{
    if (p)
        (void)cudaFreeAsync(p, (cudaStream_t)stream);
}

static fa4cp_status d_upload(void *dst, const void *host, size_t bytes, void *stream)
{
    /* pageable source: staged by the driver before the call returns, so the
     * executor may free its host array afterwards */
    if (bytes)
        CUDA_OK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
    return FA4CP_OK;
}

static fa4cp_status d_zero(void *dst, size_t bytes, void *stream)
{
    if (bytes)
        CUDA_OK(cudaMemsetAsync(dst, 0, bytes, (cudaStream_t)stream));
    return FA4CP_OK;
}

static fa4cp_status d_copy(void *dst, const void *src, size_t bytes, void *stream)
{
    if (bytes && dst != src)
        CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
    return FA4CP_OK;
}

static fa4cp_status d_fill_neg_inf(fa4cp_dtype dtype, void *dst, size_t n, void *stream)
{
    if (dtype != FA4CP_FP32 && dtype != FA4CP_FP64)
        return fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp cuda ops: -inf fill of %s",
                               fa4cp_dtype_name(dtype));
    KERNEL_OK(fa4cp_kcp_fill_neg_inf((int)dtype, dst, n, stream), "-inf fill");
    return FA4CP_OK;
}

static fa4cp_status d_gather(void *dst, const void *src, const cp_pair *map, int64_t n,
                             size_t unit_bytes, int nouter, int64_t dst_stride, int64_t src_stride,
                             void *stream)
{
    KERNEL_OK(fa4cp_kcp_gather(dst, src, (const fa4cp_kpair *)map, n, unit_bytes, nouter,
                               dst_stride, src_stride, stream),
              "row gather");
    return FA4CP_OK;
}

static fa4cp_status d_add(fa4cp_dtype acc_dtype, void *acc, fa4cp_dtype src_dtype, const void *src,
                          const cp_pair *map, int64_t n, size_t row_elems, void *stream)
{
    if (acc_dtype != FA4CP_FP32 && acc_dtype != FA4CP_FP64)
        return fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp cuda ops: accumulation into %s",
                               fa4cp_dtype_name(acc_dtype));
    KERNEL_OK(fa4cp_kcp_add((int)acc_dtype, acc, (int)src_dtype, src, (const fa4cp_kpair *)map, n,
                            row_elems, stream),
              "accumulate");
    return FA4CP_OK;
}

static fa4cp_status d_convert(fa4cp_dtype dst_dtype, void *dst, fa4cp_dtype src_dtype,
                              const void *src, const cp_pair *map, int64_t n, size_t row_elems,
                              void *stream)
{
    KERNEL_OK(fa4cp_kcp_convert((int)dst_dtype, dst, (int)src_dtype, src,
                                (const fa4cp_kpair *)map, n, row_elems, stream),
              "convert");
    return FA4CP_OK;
}

static fa4cp_status d_merge(fa4cp_dtype acc_dtype, void *acc, void *acc_lse, int64_t acc_rows,
                            fa4cp_dtype part_dtype, const void *part, const void *part_lse,
                            int64_t part_rows, const cp_pair *map, int64_t n, int heads,
                            int head_dim, void *stream)
{
    if (acc_dtype != FA4CP_FP32 && acc_dtype != FA4CP_FP64)
        return fa4cp_set_error(FA4CP_ERR_INTERNAL, "cp cuda ops: LSE merge into %s",
                               fa4cp_dtype_name(acc_dtype));
    KERNEL_OK(fa4cp_kcp_merge((int)acc_dtype, acc, acc_lse, acc_rows, (int)part_dtype, part,
                              part_lse, part_rows, (const fa4cp_kpair *)map, n, heads, head_dim,
                              stream),
              "LSE merge");
    return FA4CP_OK;
}

/* The end of a CP call: report a launch error, but do not wait. */
static fa4cp_status d_sync(void *stream)
{
    FA4CP_UNUSED(stream);
    CUDA_OK(cudaPeekAtLastError());
    return FA4CP_OK;
}

static fa4cp_status d_stream_create(void **out)
{
    cudaStream_t s = NULL;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *out = s;
    return FA4CP_OK;
}

static void d_stream_destroy(void *s)
{
    if (s)
        (void)cudaStreamDestroy((cudaStream_t)s);
}

static fa4cp_status d_stream_wait(void *waiter, void *on)
{
    cudaEvent_t ev;
    if (waiter == on)
        return FA4CP_OK;
    CUDA_OK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, (cudaStream_t)on);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent((cudaStream_t)waiter, ev, 0);
    (void)cudaEventDestroy(ev); /* released once it has completed */
    CUDA_OK(e);
    return FA4CP_OK;
}

static fa4cp_status d_event_create(void **out)
{
    cudaEvent_t ev = NULL;
    CUDA_OK(cudaEventCreate(&ev));
    *out = ev;
    return FA4CP_OK;
}

static void d_event_destroy(void *ev)
{
    if (ev)
        (void)cudaEventDestroy((cudaEvent_t)ev);
}

static fa4cp_status d_event_record(void *ev, void *stream)
{
    CUDA_OK(cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream));
    return FA4CP_OK;
}

static fa4cp_status d_event_ms(void *from, void *to, float *ms)
{
    CUDA_OK(cudaEventSynchronize((cudaEvent_t)to));
    CUDA_OK(cudaEventElapsedTime(ms, (cudaEvent_t)from, (cudaEvent_t)to));
    return FA4CP_OK;
}

static const cp_ops cuda_ops = {
    .name = "cuda",
    .alloc = d_alloc,
    .free = d_free,
    .upload = d_upload,
    .zero = d_zero,
    .copy = d_copy,
    .fill_neg_inf = d_fill_neg_inf,
    .gather = d_gather,
    .add = d_add,
    .convert = d_convert,
    .merge = d_merge,
    .sync = d_sync,
    .stream_create = d_stream_create,
    .stream_destroy = d_stream_destroy,
    .stream_wait = d_stream_wait,
    .event_create = d_event_create,
    .event_destroy = d_event_destroy,
    .event_record = d_event_record,
    .event_ms = d_event_ms,
};

const cp_ops *fa4cp_cp_ops_cuda(void) { return &cuda_ops; }
