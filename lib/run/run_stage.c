/* run_stage.c - backend cuda: a rank's tensors staged on its GPU, its
 * stream and the events that time the calls. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run_case.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/checks.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif


#ifdef HAVE_CUDA
/* a CUDA call of the staging (its message reaches rank_result.msg through
 * fa4cp_last_error, where run_case_rank ends) */
#define DEV_CK(call) FA4CP_CUDA_RETURN("GPU staging", call)

/* GPU of a rank: `device` (multi-process: the world table's row, one GPU
 * per process), or with device < 0 the world rank modulo the visible
 * devices, which is the world table's local_rank % visible in the
 * one-process (local) mode (several simulated ranks share a GPU when there
 * are fewer GPUs) */
fa4cp_status run_dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                             size_t qn, size_t kn, size_t es, size_t les, rank_result *r)
{
    int n = 0;
    DEV_CK(cudaGetDeviceCount(&n));
    DEV_CK(cudaSetDevice(device >= 0 ? device : world_rank % n));
    d->on = 1;
    DEV_CK(cudaStreamCreateWithFlags((cudaStream_t *)&d->stream, cudaStreamNonBlocking));
    DEV_CK(cudaEventCreate((cudaEvent_t *)&d->e0));
    DEV_CK(cudaEventCreate((cudaEvent_t *)&d->e1));
    struct {
        void **dst;
        const void *src;
        size_t bytes;
        int want;
    } t[] = {{&d->q, b->q, qn * es, 1},
             {&d->k, b->k, kn * es, 1},
             {&d->v, b->v, kn * es, 1},
             {&d->out, b->out, qn * es, 1},
             {&d->lse, b->lse, (size_t)b->rows * c->heads * les, 1},
             {&d->dout, b->dout, qn * es, c->backward},
             {&d->dq, NULL, qn * es, c->backward},
             {&d->dk, NULL, kn * es, c->backward},
             {&d->dv, NULL, kn * es, c->backward}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].want)
            continue;
        DEV_CK(cudaMalloc(t[i].dst, t[i].bytes ? t[i].bytes : 16));
        if (t[i].src && t[i].bytes)
            DEV_CK(cudaMemcpy(*t[i].dst, t[i].src, t[i].bytes, cudaMemcpyHostToDevice));
        else if (t[i].bytes)
            DEV_CK(cudaMemset(*t[i].dst, 0, t[i].bytes));
    }
    return FA4CP_OK;
}

/* the results back to the host buffers, for the verification */
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, size_t qn, size_t kn, size_t es,
                              size_t les, rank_result *r)
{
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    if (qn > 0)
        DEV_CK(cudaMemcpy(b->out, d->out, qn * es, cudaMemcpyDeviceToHost));
    if (b->rows)
        DEV_CK(cudaMemcpy(b->lse, d->lse, (size_t)b->rows * c->heads * les, cudaMemcpyDeviceToHost));
    if (c->backward && qn > 0) {
        DEV_CK(cudaMemcpy(b->dq, d->dq, qn * es, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dk, d->dk, kn * es, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dv, d->dv, kn * es, cudaMemcpyDeviceToHost));
    }
    return FA4CP_OK;
}

void run_dev_close(devbufs *d)
{
    if (!d->on)
        return;
    if (d->stream)
        cudaStreamSynchronize((cudaStream_t)d->stream);
    void *ps[] = {d->q, d->k, d->v, d->out, d->lse, d->dout, d->dq, d->dk, d->dv};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        if (ps[i])
            cudaFree(ps[i]);
    if (d->e0)
        cudaEventDestroy((cudaEvent_t)d->e0);
    if (d->e1)
        cudaEventDestroy((cudaEvent_t)d->e1);
    if (d->stream)
        cudaStreamDestroy((cudaStream_t)d->stream);
}

/* one timed CP call: CUDA events on the rank's stream */
fa4cp_status run_dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                              rank_result *r)
{
    float f = 0;
    DEV_CK(cudaEventRecord((cudaEvent_t)d->e0, (cudaStream_t)d->stream));
    fa4cp_status st = bwd ? fa4cp_cp_bwd(cp, a) : fa4cp_cp_fwd(cp, a);
    if (st)
        return st;
    DEV_CK(cudaEventRecord((cudaEvent_t)d->e1, (cudaStream_t)d->stream));
    DEV_CK(cudaEventSynchronize((cudaEvent_t)d->e1));
    DEV_CK(cudaEventElapsedTime(&f, (cudaEvent_t)d->e0, (cudaEvent_t)d->e1));
    *ms = f;
    return FA4CP_OK;
}
int run_visible_gpus(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

#else
fa4cp_status run_dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                             size_t qn, size_t kn, size_t es, size_t les, rank_result *r)
{
    (void)d, (void)c, (void)world_rank, (void)device, (void)b, (void)qn, (void)kn, (void)es, (void)les;
    snprintf(r->msg, sizeof r->msg, "run.backend cuda: this build has no CUDA");
    return FA4CP_ERR_UNSUPPORTED;
}
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, size_t qn, size_t kn, size_t es,
                              size_t les, rank_result *r)
{
    (void)d, (void)c, (void)b, (void)qn, (void)kn, (void)es, (void)les, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
void run_dev_close(devbufs *d) { (void)d; }
int run_visible_gpus(void) { return 0; }
fa4cp_status run_dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                              rank_result *r)
{
    (void)d, (void)cp, (void)a, (void)bwd, (void)ms, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
#endif

