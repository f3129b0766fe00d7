/* run_stage.c - backend cuda: a rank's tensors on its GPU (the inputs
 * generated there), its stream and the events that time the calls. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run_case.h"
#include "gen_gpu.h"

#include <math.h>
#include <pthread.h>
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

/* The tensors of a rank, in the order of devbufs */
enum { B_Q, B_K, B_V, B_OUT, B_LSE, B_DOUT, B_DQ, B_DK, B_DV, B_MAP, NB };

/* Kept between cases while the rank's tensors and the reference's workspace
 * stay under this (a 1k-token check case holds a few MiB); a case whose
 * tensors are larger starts with nothing kept on the GPU and frees its
 * tensors at its end (its peak memory is what it needs, as without keeping) */
#define RUN_KEEP_BYTES ((size_t)256 << 20)
/* After such a case: what a small case takes, allocated at its end (outside
 * the small case's time; freed when a large case comes): the tensors of a
 * few-thousand-token case, and the room of the reference's whole-batch
 * inputs (RUN_WS_SRC) */
#define RUN_RESERVE_BYTES ((size_t)16 << 20)

/* A rank's tensors live in one allocation (the arena), sliced in the order
 * of devbufs, each slice 256-byte aligned: one cudaMalloc per growth
 * instead of one per tensor (each can take a fresh page mapping: ~0.1 ms,
 * and the simulated ranks' calls queue on the driver). */
#define RUN_SLICE_ALIGN ((size_t)256)

struct rank_keep {
    int held, device;
    void *stream, *e0, *e1;
    void *arena;
    size_t arena_cap;
    run_ref_ws ws;
};

static pthread_mutex_t keep_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rank_keep **keeps;
static int nkeeps;

static struct rank_keep *keep_of(int rank)
{
    struct rank_keep *k = NULL;
    pthread_mutex_lock(&keep_mu);
    if (rank >= nkeeps) {
        int n = rank + 16;
        struct rank_keep **g = realloc(keeps, sizeof *g * (size_t)n);
        if (g) {
            memset(g + nkeeps, 0, sizeof *g * (size_t)(n - nkeeps));
            keeps = g;
            nkeeps = n;
        }
    }
    if (rank >= 0 && rank < nkeeps) {
        if (!keeps[rank])
            keeps[rank] = calloc(1, sizeof **keeps);
        k = keeps[rank];
    }
    pthread_mutex_unlock(&keep_mu);
    return k;
}

static void keep_free_arena(struct rank_keep *k)
{
    if (k->arena)
        (void)cudaFree(k->arena);
    k->arena = NULL;
    k->arena_cap = 0;
}

static void keep_free_bufs(struct rank_keep *k)
{
    keep_free_arena(k);
    run_ref_ws_release(&k->ws);
}

static void keep_free(struct rank_keep *k)
{
    if (!k->held)
        return;
    (void)cudaSetDevice(k->device);
    if (k->stream)
        (void)cudaStreamSynchronize((cudaStream_t)k->stream);
    keep_free_bufs(k);
    if (k->e0)
        (void)cudaEventDestroy((cudaEvent_t)k->e0);
    if (k->e1)
        (void)cudaEventDestroy((cudaEvent_t)k->e1);
    if (k->stream)
        (void)cudaStreamDestroy((cudaStream_t)k->stream);
    memset(k, 0, sizeof *k);
}

void run_dev_release_all(void)
{
    pthread_mutex_lock(&keep_mu);
    for (int i = 0; i < nkeeps; i++)
        if (keeps[i]) {
            keep_free(keeps[i]);
            free(keeps[i]);
        }
    free(keeps);
    keeps = NULL;
    nkeeps = 0;
    pthread_mutex_unlock(&keep_mu);
}

/* GPU of a rank: `device` (multi-process: the world table's row, one GPU
 * per process), or with device < 0 the world rank modulo the visible
 * devices, which is the world table's local_rank % visible in the
 * one-process (local) mode (several simulated ranks share a GPU when there
 * are fewer GPUs) */
fa4cp_status run_dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                          rank_result *r)
{
    int n = 0;
    (void)r;
    DEV_CK(cudaGetDeviceCount(&n));
    int dev = device >= 0 ? device : world_rank % n;
    DEV_CK(cudaSetDevice(dev));
    struct rank_keep *k = keep_of(world_rank);
    if (!k)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "GPU staging: out of host memory for rank %d", world_rank);
    if (k->held && k->device != dev) {
        keep_free(k);
        DEV_CK(cudaSetDevice(dev));
    }
    k->held = 1;
    k->device = dev;
    d->on = 1;
    d->keep = k;
    d->ws = &k->ws;
    if (!k->stream)
        DEV_CK(cudaStreamCreateWithFlags((cudaStream_t *)&k->stream, cudaStreamNonBlocking));
    if (!k->e0)
        DEV_CK(cudaEventCreate((cudaEvent_t *)&k->e0));
    if (!k->e1)
        DEV_CK(cudaEventCreate((cudaEvent_t *)&k->e1));
    d->stream = k->stream;
    d->e0 = k->e0;
    d->e1 = k->e1;
    size_t es = fa4cp_dtype_size(c->dtype), les = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype));
    size_t rows = (size_t)b->rows, h = (size_t)c->heads, hk = (size_t)c->kv_heads;
    size_t dq = (size_t)c->head_dim, dw = (size_t)c->head_dim_v;
    /* inputs: generated by run_dev_generate; outputs zeroed */
    struct {
        void **dst;
        size_t bytes;
        int want, zero;
    } t[NB] = {[B_Q] = {&d->q, rows * h * dq * es, 1, 0},
               [B_K] = {&d->k, rows * hk * dq * es, 1, 0},
               [B_V] = {&d->v, rows * hk * dw * es, 1, 0},
               [B_OUT] = {&d->out, rows * h * dw * es, 1, 1},
               [B_LSE] = {&d->lse, rows * h * les, 1, 1},
               [B_DOUT] = {&d->dout, rows * h * dw * es, c->backward, 0},
               [B_DQ] = {&d->dq, rows * h * dq * es, c->backward, 1},
               [B_DK] = {&d->dk, rows * hk * dq * es, c->backward, 1},
               [B_DV] = {&d->dv, rows * hk * dw * es, c->backward, 1},
               [B_MAP] = {(void **)&d->map, sizeof(int64_t) * rows, 1, 0}};
    size_t off[NB], need = 0;
    for (int i = 0; i < NB; i++) {
        off[i] = need;
        if (t[i].want)
            need += (t[i].bytes + RUN_SLICE_ALIGN - 1) / RUN_SLICE_ALIGN * RUN_SLICE_ALIGN;
    }
    if (need == 0)
        need = RUN_SLICE_ALIGN;
    if (need > RUN_KEEP_BYTES)
        run_ref_ws_release_dev(&k->ws); /* a large case: nothing of earlier cases stays on the GPU */
    if (k->arena_cap < need) { /* grow (the first case, or a larger one): one allocation */
        keep_free_arena(k);
        DEV_CK(cudaMalloc(&k->arena, need));
        k->arena_cap = need;
    }
    for (int i = 0; i < NB; i++) {
        if (!t[i].want)
            continue;
        *t[i].dst = (unsigned char *)k->arena + off[i];
        if (t[i].zero && t[i].bytes)
            DEV_CK(cudaMemsetAsync(*t[i].dst, 0, t[i].bytes, (cudaStream_t)d->stream));
    }
    if (b->rows)
        DEV_CK(cudaMemcpyAsync(d->map, b->map, sizeof(int64_t) * (size_t)b->rows, cudaMemcpyHostToDevice,
                               (cudaStream_t)d->stream));
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    return FA4CP_OK;
}

fa4cp_status run_dev_generate(devbufs *d, const fa4cp_case *c, const bufs *b, rank_result *r)
{
    fa4cp_status st;
    void *dst[4] = {d->q, d->k, d->v, d->dout};
    (void)r;
    for (int t = 0; t < (c->backward ? 4 : 3); t++)
        if ((st = run_gen_fill_gpu(c, t, d->map, b->rows, dst[t], d->stream)))
            return st;
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    return FA4CP_OK;
}

fa4cp_status run_dev_poke(devbufs *d, fa4cp_dtype dt, void *base, size_t i, double delta, rank_result *r)
{
    unsigned char tmp[8];
    size_t es = fa4cp_dtype_size(dt);
    (void)r;
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    DEV_CK(cudaMemcpy(tmp, (char *)base + i * es, es, cudaMemcpyDeviceToHost));
    fa4cp_store(dt, tmp, 0, fa4cp_load(dt, tmp, 0) + delta);
    DEV_CK(cudaMemcpy((char *)base + i * es, tmp, es, cudaMemcpyHostToDevice));
    return FA4CP_OK;
}

/* the results back to the host buffers, for the verification */
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, rank_result *r)
{
    size_t es = fa4cp_dtype_size(c->dtype), les = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype));
    size_t rows = (size_t)b->rows, h = (size_t)c->heads, hk = (size_t)c->kv_heads;
    size_t qb = rows * h * (size_t)c->head_dim * es, kb = rows * hk * (size_t)c->head_dim * es;
    size_t ob = rows * h * (size_t)c->head_dim_v * es, vb = rows * hk * (size_t)c->head_dim_v * es;
    (void)r;
    DEV_CK(cudaStreamSynchronize((cudaStream_t)d->stream));
    if (ob > 0)
        DEV_CK(cudaMemcpy(b->out, d->out, ob, cudaMemcpyDeviceToHost));
    if (rows)
        DEV_CK(cudaMemcpy(b->lse, d->lse, rows * h * les, cudaMemcpyDeviceToHost));
    if (c->backward && rows) {
        DEV_CK(cudaMemcpy(b->dq, d->dq, qb, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dk, d->dk, kb, cudaMemcpyDeviceToHost));
        DEV_CK(cudaMemcpy(b->dv, d->dv, vb, cudaMemcpyDeviceToHost));
    }
    return FA4CP_OK;
}

/* The case's work is done; its buffers stay for the next case unless they
 * are large (the memory is then the next case's, as without keeping).
 * After a large case the rank allocates what a small one takes
 * (RUN_RESERVE_BYTES of tensors and of the reference's batch inputs), so
 * that a small case after large ones allocates nothing in its own time; a
 * failure to do so only costs that case the allocation. */
void run_dev_close(devbufs *d)
{
    if (!d->on || !d->keep)
        return;
    struct rank_keep *k = d->keep;
    if (k->stream)
        (void)cudaStreamSynchronize((cudaStream_t)k->stream);
    if (run_ref_ws_bytes(&k->ws) > RUN_KEEP_BYTES)
        run_ref_ws_release(&k->ws);
    if (k->arena_cap + run_ref_ws_bytes(&k->ws) > RUN_KEEP_BYTES) {
        keep_free_arena(k);
        if (cudaMalloc(&k->arena, RUN_RESERVE_BYTES) == cudaSuccess)
            k->arena_cap = RUN_RESERVE_BYTES;
        else
            k->arena = NULL;
        if (!run_ref_ws_dev(&k->ws, RUN_WS_SRC, RUN_RESERVE_BYTES))
            fa4cp_clear_error();
    }
    (void)cudaGetLastError();
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
                          rank_result *r)
{
    (void)d, (void)c, (void)world_rank, (void)device, (void)b;
    snprintf(r->msg, sizeof r->msg, "run.backend cuda: this build has no CUDA");
    return FA4CP_ERR_UNSUPPORTED;
}
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, rank_result *r)
{
    (void)d, (void)c, (void)b, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
void run_dev_close(devbufs *d) { (void)d; }
void run_dev_release_all(void) {}
fa4cp_status run_dev_generate(devbufs *d, const fa4cp_case *c, const bufs *b, rank_result *r)
{
    (void)d, (void)c, (void)b, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
fa4cp_status run_dev_poke(devbufs *d, fa4cp_dtype dt, void *base, size_t i, double delta, rank_result *r)
{
    (void)d, (void)dt, (void)base, (void)i, (void)delta, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
int run_visible_gpus(void) { return 0; }
fa4cp_status run_dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                              rank_result *r)
{
    (void)d, (void)cp, (void)a, (void)bwd, (void)ms, (void)r;
    return FA4CP_ERR_UNSUPPORTED;
}
#endif

