/* comm_nccl.c - the "nccl" transport: an fa4cp_comm over an ncclComm_t that
 * the caller made (the world layer's bootstrap, lib/world/nccl_boot.c, or
 * ncclCommInitAll for the ranks of one process), with a watchdog that turns
 * a dead or stuck peer into an error.  Nothing here knows the world. */
#include "comm_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_NCCL
int fa4cp_nccl_available(void) { return 0; }

static fa4cp_status no_nccl(void)
{
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                           "this libfa4cp was built without NCCL (configure --with-nccl)");
}

fa4cp_status fa4cp_nccl_local_comms(int n, const int *devices, double timeout_s, fa4cp_comm **out)
{
    FA4CP_UNUSED(n);
    FA4CP_UNUSED(devices);
    FA4CP_UNUSED(timeout_s);
    FA4CP_UNUSED(out);
    return no_nccl();
}

#else /* HAVE_NCCL */

#include <cuda_runtime.h>
#include <errno.h>
#include <nccl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(ncclUniqueId) == 128, "ncclUniqueId is 128 bytes");

int fa4cp_nccl_available(void) { return 1; }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* An operation in flight: its completion event, shared by the request and the
 * watchdog (refs), destroyed when both let go. */
typedef struct pending {
    cudaEvent_t ev;
    double t0;
    const char *what;
    int refs;
    int done;
    struct pending *next;
} pending;

typedef struct nccl_impl {
    ncclComm_t comm;
    int device;
    double timeout_s;
    char label[32];
    pthread_mutex_t m;
    pthread_t watchdog;
    int watchdog_running, stop;
    int failed;      /* aborted: every later call fails with why */
    char why[512];
    pending *inflight;
    cudaStream_t own; /* for barrier */
} nccl_impl;

struct fa4cp_comm_req {
    pending *p;
};

/* Called with x->m held: abort the communicator once, remember why. */
static void abort_locked(nccl_impl *x, const char *why)
{
    if (x->failed)
        return;
    x->failed = 1;
    snprintf(x->why, sizeof x->why, "%s", why);
    fa4cp_log(FA4CP_LOG_ERROR, "NCCL comm %s: %s: aborting it (ncclCommAbort)", x->label, why);
    if (x->comm) {
        ncclCommAbort(x->comm);
        x->comm = NULL;
    }
}

static void pending_release_locked(nccl_impl *x, pending *p)
{
    if (--p->refs > 0)
        return;
    pending **pp = &x->inflight;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    cudaEventDestroy(p->ev);
    free(p);
}

/* The watchdog: polls the communicator's asynchronous error and the age of
 * every operation in flight; past the timeout it aborts the communicator, so
 * that a dead or stuck peer ends in an error instead of a hang. */
static void *watchdog_main(void *arg)
{
    nccl_impl *x = arg;
    cudaSetDevice(x->device);
    for (;;) {
        pthread_mutex_lock(&x->m);
        if (x->stop) {
            pthread_mutex_unlock(&x->m);
            break;
        }
        if (!x->failed && x->comm) {
            ncclResult_t async = ncclSuccess;
            ncclResult_t r = ncclCommGetAsyncError(x->comm, &async);
            if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
                char why[400];
                snprintf(why, sizeof why, "asynchronous error: %s",
                         ncclGetErrorString(r != ncclSuccess ? r : async));
                abort_locked(x, why);
            }
        }
        double t = now_s();
        for (pending *p = x->inflight, *nx; p; p = nx) {
            nx = p->next;
            if (p->done)
                continue;
            cudaError_t e = cudaEventQuery(p->ev);
            if (e == cudaSuccess) {
                p->done = 1;
                pending_release_locked(x, p);
            } else if (e != cudaErrorNotReady) {
                char why[400];
                snprintf(why, sizeof why, "%s failed on the GPU: %s", p->what, cudaGetErrorString(e));
                abort_locked(x, why);
                p->done = 1;
                pending_release_locked(x, p);
            } else if (t - p->t0 > x->timeout_s) {
                char why[400];
                snprintf(why, sizeof why,
                         "%s not done after %.0f s (a peer is dead or stuck; the timeout is "
                         "fa4cp_nccl_config.timeout_s)",
                         p->what, x->timeout_s);
                abort_locked(x, why);
                p->done = 1;
                pending_release_locked(x, p);
            }
        }
        pthread_mutex_unlock(&x->m);
        usleep(20000);
    }
    return NULL;
}

/* Wait for a non-blocking NCCL call (init, split, group end) to leave
 * ncclInProgress, bounded by the timeout.  Without x->m held. */
fa4cp_status fa4cp_nccl_settle(ncclComm_t comm, ncclResult_t r, const char *what, const char *label,
                               double timeout_s)
{
    double t0 = now_s();
    while (r == ncclInProgress) {
        if (now_s() - t0 > timeout_s) {
            ncclCommAbort(comm);
            return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                   "%s on NCCL comm %s: not done after %.0f s (a peer is dead, "
                                   "stuck, or unreachable: check NCCL_SOCKET_IFNAME); aborted",
                                   what, label, timeout_s);
        }
        usleep(1000);
        ncclResult_t async = ncclSuccess;
        ncclResult_t q = ncclCommGetAsyncError(comm, &async);
        r = q != ncclSuccess ? q : async;
    }
    if (r != ncclSuccess) {
        const char *last = comm ? ncclGetLastError(comm) : ncclGetLastError(NULL);
        return fa4cp_set_error(FA4CP_ERR_NCCL, "%s on NCCL comm %s: %s%s%s", what, label,
                               ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
    }
    return FA4CP_OK;
}

const char *fa4cp_nccl_error_text(int result)
{
    static _Thread_local char buf[400];
    const char *last = ncclGetLastError(NULL);
    snprintf(buf, sizeof buf, "%s%s%s", ncclGetErrorString((ncclResult_t)result),
             last && *last ? ": " : "", last ? last : "");
    return buf;
}

/* Enqueue the group that `body` posts, record its completion event on the stream. */
typedef ncclResult_t (*post_fn)(nccl_impl *x, void *ctx, cudaStream_t s);

static fa4cp_status run_op(fa4cp_comm *c, const char *what, post_fn post, void *ctx, void *stream,
                           fa4cp_comm_req **req)
{
    nccl_impl *x = c->impl;
    fa4cp_status st = FA4CP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    pending *p = NULL;
    fa4cp_comm_req *rq = NULL;
    pthread_mutex_lock(&x->m);
    if (x->failed) {
        st = fa4cp_set_error(FA4CP_ERR_PEER, "%s on NCCL comm %s: the comm was aborted: %s", what,
                             x->label, x->why);
        pthread_mutex_unlock(&x->m);
        return st;
    }
    ncclComm_t comm = x->comm;
    ncclResult_t r = ncclGroupStart();
    if (r == ncclSuccess) {
        ncclResult_t r2 = post(x, ctx, s);
        r = ncclGroupEnd();
        if (r2 != ncclSuccess && r2 != ncclInProgress)
            r = r2;
    }
    pthread_mutex_unlock(&x->m);
    FA4CP_TRY(fa4cp_nccl_settle(comm, r, what, x->label, x->timeout_s));
    p = calloc(1, sizeof *p);
    rq = calloc(1, sizeof *rq);
    if (!p || !rq)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "%s: out of memory", what);
    cudaError_t e = cudaEventCreateWithFlags(&p->ev, cudaEventDisableTiming);
    if (e == cudaSuccess)
        e = cudaEventRecord(p->ev, s);
    if (e != cudaSuccess)
        FA4CP_FAIL(FA4CP_ERR_CUDA, "%s on NCCL comm %s: recording its event: %s", what, x->label,
                   cudaGetErrorString(e));
    p->t0 = now_s();
    p->what = what;
    p->refs = 2; /* the request and the watchdog */
    pthread_mutex_lock(&x->m);
    p->next = x->inflight;
    x->inflight = p;
    pthread_mutex_unlock(&x->m);
    rq->p = p;
    *req = rq;
    p = NULL;
    rq = NULL;
out:
    if (p) {
        if (p->ev)
            cudaEventDestroy(p->ev);
        free(p);
    }
    free(rq);
    return st;
}

static ncclDataType_t nccl_type(fa4cp_dtype d)
{
    switch (d) {
    case FA4CP_BF16: return ncclBfloat16;
    case FA4CP_FP16: return ncclFloat16;
    case FA4CP_FP32: return ncclFloat32;
    default: return ncclFloat64;
    }
}

typedef struct coll_ctx {
    const fa4cp_p2p *ops;
    int nops;
    const void *send;
    void *recv;
    size_t n;
    fa4cp_dtype dtype;
    fa4cp_reduce_op op;
    int size;
} coll_ctx;

static ncclResult_t post_sendrecv(nccl_impl *x, void *ctx, cudaStream_t s)
{
    coll_ctx *k = ctx;
    for (int i = 0; i < k->nops; i++) {
        const fa4cp_p2p *o = &k->ops[i];
        ncclResult_t r = o->is_send ? ncclSend(o->buf, o->bytes, ncclUint8, o->peer, x->comm, s)
                                    : ncclRecv(o->buf, o->bytes, ncclUint8, o->peer, x->comm, s);
        if (r != ncclSuccess && r != ncclInProgress)
            return r;
    }
    return ncclSuccess;
}

static ncclResult_t post_all_gather(nccl_impl *x, void *ctx, cudaStream_t s)
{
    coll_ctx *k = ctx;
    return ncclAllGather(k->send, k->recv, k->n, ncclUint8, x->comm, s);
}

static ncclResult_t post_reduce_scatter(nccl_impl *x, void *ctx, cudaStream_t s)
{
    coll_ctx *k = ctx;
    return ncclReduceScatter(k->send, k->recv, k->n, nccl_type(k->dtype), ncclSum, x->comm, s);
}

static ncclResult_t post_all_to_all(nccl_impl *x, void *ctx, cudaStream_t s)
{
    coll_ctx *k = ctx;
    /* one send and one receive per peer in a group (works on every NCCL 2.x) */
    for (int p = 0; p < k->size; p++) {
        ncclResult_t r = ncclSend((const char *)k->send + (size_t)p * k->n, k->n, ncclUint8, p,
                                  x->comm, s);
        if (r != ncclSuccess && r != ncclInProgress)
            return r;
        r = ncclRecv((char *)k->recv + (size_t)p * k->n, k->n, ncclUint8, p, x->comm, s);
        if (r != ncclSuccess && r != ncclInProgress)
            return r;
    }
    return ncclSuccess;
}

static ncclResult_t post_all_reduce(nccl_impl *x, void *ctx, cudaStream_t s)
{
    coll_ctx *k = ctx;
    return ncclAllReduce(k->send, k->recv, k->n, nccl_type(k->dtype),
                         k->op == FA4CP_REDUCE_MAX ? ncclMax : ncclSum, x->comm, s);
}

static fa4cp_status op_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                fa4cp_comm_req **req)
{
    coll_ctx k = {.ops = ops, .nops = nops};
    return run_op(c, "sendrecv", post_sendrecv, &k, stream, req);
}

static fa4cp_status op_all_gather(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                  void *stream, fa4cp_comm_req **req)
{
    coll_ctx k = {.send = send, .recv = recv, .n = bytes};
    return run_op(c, "all_gather", post_all_gather, &k, stream, req);
}

static fa4cp_status op_reduce_scatter(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                      fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req)
{
    coll_ctx k = {.send = send, .recv = recv, .n = count, .dtype = dtype};
    return run_op(c, "reduce_scatter", post_reduce_scatter, &k, stream, req);
}

static fa4cp_status op_all_to_all(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                  void *stream, fa4cp_comm_req **req)
{
    coll_ctx k = {.send = send, .recv = recv, .n = bytes, .size = c->size};
    return run_op(c, "all_to_all", post_all_to_all, &k, stream, req);
}

static fa4cp_status op_all_reduce(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                  fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                                  fa4cp_comm_req **req)
{
    coll_ctx k = {.send = send, .recv = recv, .n = count, .dtype = dtype, .op = op};
    return run_op(c, "all_reduce", post_all_reduce, &k, stream, req);
}

/* The stream waits for the operation (no host synchronisation). */
static fa4cp_status op_wait(fa4cp_comm *c, fa4cp_comm_req *req, void *stream)
{
    nccl_impl *x = c->impl;
    fa4cp_status st = FA4CP_OK;
    if (!req)
        return FA4CP_OK;
    pthread_mutex_lock(&x->m);
    if (x->failed)
        st = fa4cp_set_error(FA4CP_ERR_PEER, "wait on NCCL comm %s: the comm was aborted: %s",
                             x->label, x->why);
    else if (!req->p->done) {
        cudaError_t e = cudaStreamWaitEvent((cudaStream_t)stream, req->p->ev, 0);
        if (e != cudaSuccess)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "wait on NCCL comm %s: %s", x->label,
                                 cudaGetErrorString(e));
    }
    pending_release_locked(x, req->p);
    pthread_mutex_unlock(&x->m);
    free(req);
    return st;
}

/* A host-side barrier: an all_reduce of one int, waited for on the host with
 * the watchdog's deadline. */
static fa4cp_status op_barrier(fa4cp_comm *c)
{
    nccl_impl *x = c->impl;
    fa4cp_status st = FA4CP_OK;
    int *buf = NULL;
    fa4cp_comm_req *rq = NULL;
    cudaError_t e = cudaMalloc((void **)&buf, sizeof(int));
    if (e != cudaSuccess)
        FA4CP_FAIL(FA4CP_ERR_CUDA, "barrier on NCCL comm %s: cudaMalloc: %s", x->label,
                   cudaGetErrorString(e));
    cudaMemsetAsync(buf, 0, sizeof(int), x->own);
    FA4CP_TRY(op_all_reduce(c, buf, buf, 1, FA4CP_FP32, FA4CP_REDUCE_SUM, x->own, &rq));
    for (;;) {
        pthread_mutex_lock(&x->m);
        int failed = x->failed, done = rq->p->done;
        cudaError_t q = done ? cudaSuccess : cudaEventQuery(rq->p->ev);
        pthread_mutex_unlock(&x->m);
        if (failed)
            FA4CP_FAIL(FA4CP_ERR_PEER, "barrier on NCCL comm %s: %s", x->label, x->why);
        if (q == cudaSuccess)
            break;
        if (q != cudaErrorNotReady)
            FA4CP_FAIL(FA4CP_ERR_CUDA, "barrier on NCCL comm %s: %s", x->label,
                       cudaGetErrorString(q));
        usleep(1000);
    }
out:
    if (rq)
        op_wait(c, rq, x->own);
    if (buf)
        cudaFree(buf);
    return st;
}

static void op_destroy(fa4cp_comm *c)
{
    if (!c)
        return;
    nccl_impl *x = c->impl;
    if (x) {
        pthread_mutex_lock(&x->m);
        x->stop = 1;
        pthread_mutex_unlock(&x->m);
        if (x->watchdog_running)
            pthread_join(x->watchdog, NULL);
        if (x->comm && !x->failed) {
            ncclResult_t r = ncclCommFinalize(x->comm);
            if (fa4cp_nccl_settle(x->comm, r, "finalize", x->label, x->timeout_s) == FA4CP_OK)
                ncclCommDestroy(x->comm);
            /* else settle aborted it */
        }
        while (x->inflight) {
            pending *p = x->inflight;
            x->inflight = p->next;
            cudaEventDestroy(p->ev);
            free(p);
        }
        if (x->own)
            cudaStreamDestroy(x->own);
        pthread_mutex_destroy(&x->m);
        free(x);
    }
    free(c);
}

static const fa4cp_comm_ops nccl_ops = {
    .sendrecv = op_sendrecv,
    .all_gather = op_all_gather,
    .reduce_scatter = op_reduce_scatter,
    .all_to_all = op_all_to_all,
    .all_reduce = op_all_reduce,
    .wait = op_wait,
    .barrier = op_barrier,
    .destroy = op_destroy,
};

/* Wrap a communicator that finished initialising. */
fa4cp_status fa4cp_nccl_comm_wrap(ncclComm_t comm, int device, double timeout_s, const char *label,
                                  fa4cp_comm **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm *c = calloc(1, sizeof *c);
    nccl_impl *x = calloc(1, sizeof *x);
    int rank = -1, size = 0;
    if (!c || !x) {
        free(c);
        free(x);
        c = NULL;
        ncclCommAbort(comm);
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "NCCL comm %s: out of memory", label);
    }
    x->comm = comm;
    x->device = device;
    x->timeout_s = timeout_s;
    snprintf(x->label, sizeof x->label, "%s", label);
    pthread_mutex_init(&x->m, NULL);
    c->impl = x;
    c->ops = &nccl_ops;
    c->name = "nccl";
    c->device_memory = 1;
    c->timeout_s = timeout_s;
    if (ncclCommUserRank(comm, &rank) != ncclSuccess || ncclCommCount(comm, &size) != ncclSuccess)
        FA4CP_FAIL(FA4CP_ERR_NCCL, "NCCL comm %s: cannot read its rank and size", label);
    c->rank = rank;
    c->size = size;
    if (cudaStreamCreateWithFlags(&x->own, cudaStreamNonBlocking) != cudaSuccess)
        FA4CP_FAIL(FA4CP_ERR_CUDA, "NCCL comm %s: cannot create a stream", label);
    if (pthread_create(&x->watchdog, NULL, watchdog_main, x) != 0)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "NCCL comm %s: cannot start its watchdog thread", label);
    x->watchdog_running = 1;
    *out = c;
    c = NULL;
out:
    if (c)
        op_destroy(c); /* destroys comm too */
    return st;
}

/* The ranks of one process, one GPU each (ncclCommInitAll): for tests and
 * benchmarks that run the nccl transport with threads instead of processes. */
fa4cp_status fa4cp_nccl_local_comms(int n, const int *devices, double timeout_s, fa4cp_comm **out)
{
    fa4cp_status st = FA4CP_OK;
    ncclComm_t *comms = NULL;
    int made = 0;
    if (n < 1 || !devices || !out || fa4cp_timeout_check("fa4cp_nccl_local_comms", timeout_s))
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_nccl_local_comms: %d ranks, devices %p, out %p, timeout %g",
                               n, (const void *)devices, (void *)out, timeout_s);
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (devices[i] == devices[j])
                return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                                       "nccl: ranks %d and %d both on GPU %d; NCCL needs one GPU per "
                                       "rank (use the local transport for several ranks on one GPU)",
                                       j, i, devices[i]);
    comms = calloc((size_t)n, sizeof *comms);
    if (!comms)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "fa4cp_nccl_local_comms: out of memory");
    ncclResult_t r = ncclCommInitAll(comms, n, devices);
    if (r != ncclSuccess)
        FA4CP_FAIL(FA4CP_ERR_NCCL, "ncclCommInitAll (%d ranks): %s (%s)", n, ncclGetErrorString(r),
                   ncclGetLastError(NULL));
    made = 1;
    for (int i = 0; i < n; i++) {
        char label[32];
        snprintf(label, sizeof label, "local%d", i);
        ncclComm_t c = comms[i];
        comms[i] = NULL; /* wrap owns it now, also when it fails */
        cudaError_t e = cudaSetDevice(devices[i]); /* wrap makes its stream there */
        if (e != cudaSuccess) {
            ncclCommDestroy(c);
            FA4CP_FAIL(FA4CP_ERR_CUDA, "nccl local rank %d: cudaSetDevice(%d): %s", i, devices[i],
                       cudaGetErrorString(e));
        }
        FA4CP_TRY(fa4cp_nccl_comm_wrap(c, devices[i], timeout_s, label, &out[i]));
    }
out:
    if (st != FA4CP_OK) {
        for (int i = 0; i < n; i++) {
            if (out[i])
                fa4cp_comm_destroy(out[i]);
            out[i] = NULL;
            if (made && comms[i])
                ncclCommDestroy(comms[i]);
        }
    }
    free(comms);
    return st;
}

#endif /* HAVE_NCCL */
