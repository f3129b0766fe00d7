/* comm_local.c - the "local" transport: ranks are threads of one process.
 *
 * Point-to-point: sends are eager.  Posting a send copies the bytes into a
 * mailbox entry keyed by (src, dst, n) where n counts the sends from src to
 * dst; a receive takes the entry with its own count of receives from that
 * peer.  Nothing on the sending side ever blocks, so no legal order of posts
 * can deadlock; a receive whose message has another size is an error naming
 * both ranks and both sizes, and a receive whose message never comes times
 * out after timeout_s naming the peer.
 *
 * Collectives: generation counted.  The k-th collective of every rank
 * matches the k-th of every other rank.  Posting copies this rank's input
 * into the record of generation k (so posting never blocks either); waiting
 * blocks until every rank contributed, checks that they all posted the same
 * operation with the same sizes, and computes this rank's output from the
 * contributions.  The last rank to finish frees the record.
 *
 * One mutex and one condition variable (CLOCK_MONOTONIC) per world: the
 * ranks of a test are few and the copies are short.
 *
 * Device memory (device_memory = 1, builds with CUDA): nothing is copied at
 * post time.  A post records a "ready" event on the caller's stream and
 * publishes the buffer pointer; the receiving side, in its wait, makes its
 * stream wait for the sender's ready event (and its own post), queues the
 * device-to-device copy (cudaMemcpyAsync, any two devices of the process)
 * and records a "done" event; the sender's wait makes its stream wait for
 * that done event, so a send buffer is reused only after the copy that read
 * it.  The host threads meet only to exchange pointers and events: no wait
 * for the GPU anywhere.  Collectives likewise: each rank pulls its output
 * from the others' send buffers on its own stream, then waits (on the
 * stream) for every rank's pulls before its send buffer may change.
 */
#include "comm.h"
#include "core/checks.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_CUDA
#include "../../kernels/cp_ops.cuh"
#include <cuda_runtime_api.h>
#endif

enum { K_ALL_GATHER, K_REDUCE_SCATTER, K_ALL_TO_ALL, K_ALL_REDUCE, K_BARRIER };
static const char *kind_name[] = {"all_gather", "reduce_scatter", "all_to_all", "all_reduce",
                                  "barrier"};

typedef struct msg {
    struct msg *next;
    int src, dst;
    uint64_t seq;
    size_t bytes;
    /* device memory: the sender's buffer, its ready event, the receiver's done event */
    const void *dptr;
    void *ready, *done;
    int copied, refs;
    unsigned char data[];
} msg;

typedef struct contrib {
    int posted;
    int kind;
    size_t size; /* bytes (all_gather, all_to_all) or elements (reductions) */
    fa4cp_dtype dtype;
    int op;
    void *data;
    /* device memory: the send and receive buffers, ready and done events */
    const void *dsend;
    void *ready, *done;
    int pulled;
} contrib;

typedef struct coll_rec {
    struct coll_rec *next;
    uint64_t gen;
    int arrived, finished;
    contrib c[];
} coll_rec;

struct fa4cp_local_world {
    int n;
    int device_memory;
    double timeout_s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg *msgs;
    coll_rec *colls;
    int *taken;
};

typedef struct endpoint {
    fa4cp_local_world *w;
    uint64_t *sent, *received; /* per peer */
    uint64_t gen;              /* collectives posted so far */
} endpoint;

typedef struct pending {
    int peer;
    void *buf;
    size_t bytes;
    uint64_t seq;
    void *post; /* device memory: event recorded at the post */
} pending;

struct fa4cp_comm_req {
    int is_coll;
    /* point-to-point */
    int nrecv;
    pending *recvs;
    int nsend;
    msg **sends; /* device memory: the messages this request sent */
    /* collective */
    uint64_t gen;
    int kind;
    void *recv;
    size_t size;
    fa4cp_dtype dtype;
    int op;
};

/* ------------------------------------------------------------------ helpers */

static void deadline_of(double timeout_s, struct timespec *t)
{
    fa4cp_deadline(CLOCK_MONOTONIC, timeout_s, t); /* saturated: never wraps into the past */
}

/* wait on the world's condition; returns 0, or ETIMEDOUT past the deadline */
static int wait_until(fa4cp_local_world *w, const struct timespec *deadline)
{
    int rc = pthread_cond_timedwait(&w->cv, &w->mu, deadline);
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

static endpoint *ep_of(fa4cp_comm *c) { return (endpoint *)c->impl; }

static fa4cp_comm_req *new_req(const char *what)
{
    fa4cp_comm_req *r = fa4cp_calloc(1, sizeof *r, what);
    return r;
}

/* ------------------------------------------------------------------ point to point */

#ifdef HAVE_CUDA
static fa4cp_status dev_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req);
#endif

static fa4cp_status local_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                   fa4cp_comm_req **req)
{
#ifdef HAVE_CUDA
    if (c->device_memory)
        return dev_sendrecv(c, ops, nops, stream, req);
#else
    FA4CP_UNUSED(stream);
#endif
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    int nrecv = 0;
    for (int i = 0; i < nops; i++)
        nrecv += !ops[i].is_send;
    fa4cp_comm_req *r = new_req("local sendrecv request");
    msg **out = fa4cp_calloc((size_t)nops + 1, sizeof *out, "local sendrecv messages");
    if (!r || !out) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    r->recvs = fa4cp_calloc((size_t)nrecv + 1, sizeof *r->recvs, "local sendrecv receives");
    if (!r->recvs) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    /* copy the sends outside the lock */
    for (int i = 0; i < nops; i++) {
        if (!ops[i].is_send)
            continue;
        out[i] = fa4cp_malloc(sizeof(msg) + ops[i].bytes, "local message");
        if (!out[i]) {
            st = FA4CP_ERR_NOMEM;
            goto out;
        }
        out[i]->src = c->rank;
        out[i]->dst = ops[i].peer;
        out[i]->bytes = ops[i].bytes;
        if (ops[i].bytes)
            memcpy(out[i]->data, ops[i].buf, ops[i].bytes);
    }
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < nops; i++) {
        if (ops[i].is_send) {
            out[i]->seq = e->sent[ops[i].peer]++;
            out[i]->next = w->msgs;
            w->msgs = out[i];
            out[i] = NULL;
        } else {
            pending *p = &r->recvs[r->nrecv++];
            p->peer = ops[i].peer;
            p->buf = ops[i].buf;
            p->bytes = ops[i].bytes;
            p->seq = e->received[ops[i].peer]++;
        }
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    *req = r;
    r = NULL;
out:
    if (out)
        for (int i = 0; i < nops; i++)
            fa4cp_free(out[i]);
    fa4cp_free(out);
    if (r) {
        fa4cp_free(r->recvs);
        fa4cp_free(r);
    }
    return st;
}

/* take the message (src -> me, seq) from the mailbox; caller holds the lock */
static msg *take_msg(fa4cp_local_world *w, int src, int dst, uint64_t seq)
{
    for (msg **pp = &w->msgs; *pp; pp = &(*pp)->next)
        if ((*pp)->src == src && (*pp)->dst == dst && (*pp)->seq == seq) {
            msg *m = *pp;
            *pp = m->next;
            return m;
        }
    return NULL;
}

static fa4cp_status wait_p2p(fa4cp_comm *c, fa4cp_comm_req *r)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    struct timespec deadline;
    deadline_of(c->timeout_s, &deadline);
    for (int i = 0; i < r->nrecv && st == FA4CP_OK; i++) {
        pending *p = &r->recvs[i];
        msg *m = NULL;
        pthread_mutex_lock(&w->mu);
        while (!(m = take_msg(w, p->peer, c->rank, p->seq)))
            if (wait_until(w, &deadline) == ETIMEDOUT) {
                m = take_msg(w, p->peer, c->rank, p->seq);
                break;
            }
        pthread_mutex_unlock(&w->mu);
        if (!m) {
            st = fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                 "local sendrecv: rank %d waited %.3g s for message number %llu from rank %d "
                                 "(%zu bytes) and rank %d never sent it",
                                 c->rank, c->timeout_s, (unsigned long long)p->seq, p->peer,
                                 p->bytes, p->peer);
            break;
        }
        if (m->bytes != p->bytes)
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "local sendrecv: rank %d sent %zu bytes to rank %d (message number %llu) "
                                 "but rank %d posted a receive of %zu bytes",
                                 p->peer, m->bytes, c->rank, (unsigned long long)p->seq, c->rank,
                                 p->bytes);
        else if (m->bytes)
            memcpy(p->buf, m->data, m->bytes);
        fa4cp_free(m);
    }
    return st;
}

/* ------------------------------------------------------------------ collectives */

static size_t contrib_bytes(int kind, size_t size, fa4cp_dtype dtype, int n)
{
    switch (kind) {
    case K_ALL_GATHER: return size;
    case K_ALL_TO_ALL: return size * (size_t)n;
    case K_REDUCE_SCATTER: return size * (size_t)n * fa4cp_dtype_size(dtype);
    case K_ALL_REDUCE: return size * fa4cp_dtype_size(dtype);
    default: return 0;
    }
}

/* Under the world's lock: request r becomes this rank's next collective;
 * its record is found, or `*fresh` is inserted (and taken), and this rank's
 * contribution is marked posted with the operation's description.  The
 * caller adds its data, counts the arrival and wakes the others. */
static coll_rec *join_coll(fa4cp_comm *c, fa4cp_comm_req *r, int kind, void *recv, size_t size,
                           fa4cp_dtype dtype, int op, coll_rec **fresh)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    r->is_coll = 1;
    r->kind = kind;
    r->recv = recv;
    r->size = size;
    r->dtype = dtype;
    r->op = op;
    r->gen = e->gen++;
    coll_rec *rec = w->colls;
    while (rec && rec->gen != r->gen)
        rec = rec->next;
    if (!rec) {
        rec = *fresh;
        *fresh = NULL;
        rec->gen = r->gen;
        rec->next = w->colls;
        w->colls = rec;
    }
    contrib *k = &rec->c[c->rank];
    k->posted = 1;
    k->kind = kind;
    k->size = size;
    k->dtype = dtype;
    k->op = op;
    return rec;
}

#ifdef HAVE_CUDA
static fa4cp_status dev_post_coll(fa4cp_comm *c, int kind, const void *send, void *recv,
                                  size_t size, fa4cp_dtype dtype, int op, void *stream,
                                  fa4cp_comm_req **req);
#endif

static fa4cp_status post_coll(fa4cp_comm *c, int kind, const void *send, void *recv, size_t size,
                              fa4cp_dtype dtype, int op, void *stream, fa4cp_comm_req **req)
{
#ifdef HAVE_CUDA
    if (c->device_memory && kind != K_BARRIER)
        return dev_post_coll(c, kind, send, recv, size, dtype, op, stream, req);
#else
    FA4CP_UNUSED(stream);
#endif
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    size_t bytes = contrib_bytes(kind, size, dtype, w->n);
    fa4cp_comm_req *r = new_req("local collective request");
    void *data = fa4cp_malloc(bytes, "local collective contribution");
    coll_rec *fresh = fa4cp_calloc(1, sizeof(coll_rec) + (size_t)w->n * sizeof(contrib),
                                   "local collective record");
    if (!r || !data || !fresh) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if (bytes)
        memcpy(data, send, bytes);
    pthread_mutex_lock(&w->mu);
    coll_rec *rec = join_coll(c, r, kind, recv, size, dtype, op, &fresh);
    contrib *k = &rec->c[c->rank];
    k->data = data;
    data = NULL;
    rec->arrived++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    *req = r;
    r = NULL;
out:
    fa4cp_free(r);
    fa4cp_free(data);
    fa4cp_free(fresh);
    return st;
}

#ifdef HAVE_CUDA
static void drop_event(void *ev);
#endif

static void free_rec(coll_rec *rec, int n)
{
    for (int i = 0; i < n; i++) {
        fa4cp_free(rec->c[i].data);
#ifdef HAVE_CUDA
        drop_event(rec->c[i].ready);
        drop_event(rec->c[i].done);
#endif
    }
    fa4cp_free(rec);
}

/* recv[i] = op over ranks of block `block` element i of every contribution */
static void reduce(const coll_rec *rec, int n, size_t block, size_t count, fa4cp_dtype dt, int op,
                   void *recv)
{
    size_t off = block * count;
    if (dt == FA4CP_FP32) {
        float *o = recv;
        for (size_t i = 0; i < count; i++) {
            float acc = ((const float *)rec->c[0].data)[off + i];
            for (int p = 1; p < n; p++) {
                float v = ((const float *)rec->c[p].data)[off + i];
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            o[i] = acc;
        }
    } else if (dt == FA4CP_FP64) {
        double *o = recv;
        for (size_t i = 0; i < count; i++) {
            double acc = ((const double *)rec->c[0].data)[off + i];
            for (int p = 1; p < n; p++) {
                double v = ((const double *)rec->c[p].data)[off + i];
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            o[i] = acc;
        }
    } else { /* 16-bit: accumulate in float, like a device reduction would */
        for (size_t i = 0; i < count; i++) {
            float acc = (float)fa4cp_load(dt, rec->c[0].data, off + i);
            for (int p = 1; p < n; p++) {
                float v = (float)fa4cp_load(dt, rec->c[p].data, off + i);
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            fa4cp_store(dt, recv, i, acc);
        }
    }
}

static fa4cp_status wait_coll(fa4cp_comm *c, fa4cp_comm_req *r)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    const int n = w->n;
    fa4cp_status st = FA4CP_OK;
    struct timespec deadline;
    deadline_of(c->timeout_s, &deadline);
    pthread_mutex_lock(&w->mu);
    coll_rec *rec = w->colls;
    while (rec && rec->gen != r->gen)
        rec = rec->next;
    while (rec->arrived < n)
        if (wait_until(w, &deadline) == ETIMEDOUT)
            break;
    if (rec->arrived < n) {
        char missing[256] = "";
        size_t at = 0;
        for (int p = 0; p < n && at + 16 < sizeof missing; p++)
            if (!rec->c[p].posted)
                at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", at ? "," : "", p);
        pthread_mutex_unlock(&w->mu);
        return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                               "local %s number %llu: rank %d waited %.3g s and rank(s) %s never posted it",
                               kind_name[r->kind], (unsigned long long)r->gen, c->rank, c->timeout_s,
                               missing);
    }
    pthread_mutex_unlock(&w->mu);

    /* every rank posted: the record is read-only until all have finished */
    for (int p = 0; p < n && st == FA4CP_OK; p++) {
        const contrib *k = &rec->c[p];
        if (k->kind != r->kind)
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "local collective number %llu: rank %d posted %s but rank %d posted %s",
                                 (unsigned long long)r->gen, c->rank, kind_name[r->kind], p,
                                 kind_name[k->kind]);
        else if (k->size != r->size || k->dtype != r->dtype || k->op != r->op) {
            int bytes = r->kind == K_ALL_GATHER || r->kind == K_ALL_TO_ALL;
            char mine[64], theirs[64];
            snprintf(mine, sizeof mine, "%zu %s%s%s", r->size, bytes ? "bytes" : "elements of ",
                     bytes ? "" : fa4cp_dtype_name(r->dtype), r->op ? " (max)" : "");
            snprintf(theirs, sizeof theirs, "%zu %s%s%s", k->size, bytes ? "bytes" : "elements of ",
                     bytes ? "" : fa4cp_dtype_name(k->dtype), k->op ? " (max)" : "");
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "local %s number %llu: rank %d posted %s but rank %d posted %s",
                                 kind_name[r->kind], (unsigned long long)r->gen, c->rank, mine, p,
                                 theirs);
        }
    }
    if (st == FA4CP_OK) {
        unsigned char *out = r->recv;
        switch (r->kind) {
        case K_ALL_GATHER:
            for (int p = 0; p < n && r->size; p++)
                memcpy(out + (size_t)p * r->size, rec->c[p].data, r->size);
            break;
        case K_ALL_TO_ALL:
            for (int p = 0; p < n && r->size; p++)
                memcpy(out + (size_t)p * r->size,
                       (const unsigned char *)rec->c[p].data + (size_t)c->rank * r->size, r->size);
            break;
        case K_REDUCE_SCATTER:
            reduce(rec, n, (size_t)c->rank, r->size, r->dtype, FA4CP_REDUCE_SUM, out);
            break;
        case K_ALL_REDUCE: reduce(rec, n, 0, r->size, r->dtype, r->op, out); break;
        default: break;
        }
    }

    pthread_mutex_lock(&w->mu);
    if (++rec->finished == n) {
        for (coll_rec **pp = &w->colls; *pp; pp = &(*pp)->next)
            if (*pp == rec) {
                *pp = rec->next;
                break;
            }
        free_rec(rec, n);
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

/* ------------------------------------------------------------------ device memory */

#ifdef HAVE_CUDA
#define CU_TRY(call) FA4CP_CUDA_TRY("local transport", call)

/* a new event, recorded on `stream` when `record` */
static fa4cp_status new_event(void **ev, int record, void *stream)
{
    fa4cp_status st = FA4CP_OK;
    cudaEvent_t e = NULL;
    CU_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    if (record) {
        cudaError_t r = cudaEventRecord(e, (cudaStream_t)stream);
        if (r != cudaSuccess) {
            cudaEventDestroy(e);
            CU_TRY(r);
        }
    }
    *ev = e;
out:
    return st;
}

static void drop_event(void *ev)
{
    if (ev)
        (void)cudaEventDestroy((cudaEvent_t)ev); /* released once complete */
}

/* one reference less; the caller holds the lock */
static void msg_unref(msg *m)
{
    if (--m->refs == 0) {
        drop_event(m->ready);
        drop_event(m->done);
        fa4cp_free(m);
    }
}

static fa4cp_status dev_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    int nrecv = 0, nsend = 0;
    for (int i = 0; i < nops; i++)
        nrecv += !ops[i].is_send;
    nsend = nops - nrecv;
    fa4cp_comm_req *r = new_req("local sendrecv request");
    if (!r)
        return FA4CP_ERR_NOMEM;
    r->recvs = fa4cp_calloc((size_t)nrecv + 1, sizeof *r->recvs, "local sendrecv receives");
    r->sends = fa4cp_calloc((size_t)nsend + 1, sizeof *r->sends, "local sendrecv sends");
    if (!r->recvs || !r->sends) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < nops; i++) {
        if (ops[i].is_send) {
            msg *m = fa4cp_calloc(1, sizeof(msg), "local message");
            if (!m) {
                st = FA4CP_ERR_NOMEM;
                goto out;
            }
            r->sends[r->nsend++] = m;
            m->src = c->rank;
            m->dst = ops[i].peer;
            m->bytes = ops[i].bytes;
            m->dptr = ops[i].buf;
            m->refs = 2; /* the receiver, and this request */
            FA4CP_TRY(new_event(&m->ready, 1, stream));
            FA4CP_TRY(new_event(&m->done, 0, NULL));
        } else {
            pending *p = &r->recvs[r->nrecv++];
            p->peer = ops[i].peer;
            p->buf = ops[i].buf;
            p->bytes = ops[i].bytes;
            FA4CP_TRY(new_event(&p->post, 1, stream));
        }
    }
    pthread_mutex_lock(&w->mu);
    for (int i = 0, k = 0, j = 0; i < nops; i++) {
        if (ops[i].is_send) {
            msg *m = r->sends[k++];
            m->seq = e->sent[ops[i].peer]++;
            m->next = w->msgs;
            w->msgs = m;
        } else {
            r->recvs[j++].seq = e->received[ops[i].peer]++;
        }
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    *req = r;
    r = NULL;
out:
    if (r) {
        for (int i = 0; i < r->nsend; i++) {
            drop_event(r->sends[i]->ready);
            drop_event(r->sends[i]->done);
            fa4cp_free(r->sends[i]);
        }
        for (int i = 0; i < r->nrecv; i++)
            drop_event(r->recvs[i].post);
        fa4cp_free(r->sends);
        fa4cp_free(r->recvs);
        fa4cp_free(r);
    }
    return st;
}

static fa4cp_status dev_wait_p2p(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    struct timespec deadline;
    deadline_of(c->timeout_s, &deadline);
    /* receives first: they never wait for another rank's wait */
    for (int i = 0; i < r->nrecv && st == FA4CP_OK; i++) {
        pending *p = &r->recvs[i];
        msg *m = NULL;
        pthread_mutex_lock(&w->mu);
        while (!(m = take_msg(w, p->peer, c->rank, p->seq)))
            if (wait_until(w, &deadline) == ETIMEDOUT) {
                m = take_msg(w, p->peer, c->rank, p->seq);
                break;
            }
        pthread_mutex_unlock(&w->mu);
        if (!m) {
            st = fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                 "local sendrecv: rank %d waited %.3g s for message number %llu from rank %d "
                                 "(%zu bytes) and rank %d never sent it",
                                 c->rank, c->timeout_s, (unsigned long long)p->seq, p->peer,
                                 p->bytes, p->peer);
            break;
        }
        cudaError_t ce = cudaSuccess;
        if (m->bytes != p->bytes) {
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "local sendrecv: rank %d sent %zu bytes to rank %d (message number %llu) "
                                 "but rank %d posted a receive of %zu bytes",
                                 p->peer, m->bytes, c->rank, (unsigned long long)p->seq, c->rank,
                                 p->bytes);
        } else {
            ce = cudaStreamWaitEvent(s, (cudaEvent_t)m->ready, 0);
            if (ce == cudaSuccess)
                ce = cudaStreamWaitEvent(s, (cudaEvent_t)p->post, 0);
            if (ce == cudaSuccess && m->bytes)
                ce = cudaMemcpyAsync(p->buf, m->dptr, m->bytes, cudaMemcpyDefault, s);
        }
        /* the sender is released even on failure (its stream then waits on
         * an event that was never recorded, which is a no-op) */
        if (ce == cudaSuccess && st == FA4CP_OK)
            ce = cudaEventRecord((cudaEvent_t)m->done, s);
        if (ce != cudaSuccess && st == FA4CP_OK)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "local sendrecv: rank %d receiving %zu bytes from rank %d: %s",
                                 c->rank, p->bytes, p->peer, cudaGetErrorString(ce));
        pthread_mutex_lock(&w->mu);
        m->copied = 1;
        msg_unref(m);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    /* then the sends: this stream waits for the copies that read them */
    for (int i = 0; i < r->nsend; i++) {
        msg *m = r->sends[i];
        int copied;
        pthread_mutex_lock(&w->mu);
        while (!(copied = m->copied) && st == FA4CP_OK)
            if (wait_until(w, &deadline) == ETIMEDOUT) {
                copied = m->copied;
                break;
            }
        if (copied && st == FA4CP_OK) {
            cudaError_t ce = cudaStreamWaitEvent(s, (cudaEvent_t)m->done, 0);
            if (ce != cudaSuccess)
                st = fa4cp_set_error(FA4CP_ERR_CUDA, "local sendrecv: rank %d: %s", c->rank,
                                     cudaGetErrorString(ce));
        } else if (st == FA4CP_OK) {
            st = fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                 "local sendrecv: rank %d waited %.3g s for rank %d to receive its "
                                 "message number %llu (%zu bytes)",
                                 c->rank, c->timeout_s, m->dst, (unsigned long long)m->seq, m->bytes);
        }
        if (copied) {
            msg_unref(m);
        } else {
            /* still in the mailbox: the receiver may take it later */
            m->refs--;
        }
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < r->nrecv; i++)
        drop_event(r->recvs[i].post);
    return st;
}

static fa4cp_status dev_post_coll(fa4cp_comm *c, int kind, const void *send, void *recv,
                                  size_t size, fa4cp_dtype dtype, int op, void *stream,
                                  fa4cp_comm_req **req)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    void *ready = NULL, *done = NULL;
    fa4cp_comm_req *r = new_req("local collective request");
    coll_rec *fresh = fa4cp_calloc(1, sizeof(coll_rec) + (size_t)w->n * sizeof(contrib),
                                   "local collective record");
    if (!r || !fresh) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    FA4CP_TRY(new_event(&ready, 1, stream));
    FA4CP_TRY(new_event(&done, 0, NULL));
    pthread_mutex_lock(&w->mu);
    coll_rec *rec = join_coll(c, r, kind, recv, size, dtype, op, &fresh);
    contrib *k = &rec->c[c->rank];
    k->dsend = send;
    k->ready = ready;
    k->done = done;
    ready = done = NULL;
    rec->arrived++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    *req = r;
    r = NULL;
out:
    drop_event(ready);
    drop_event(done);
    fa4cp_free(r);
    fa4cp_free(fresh);
    return st;
}

/* this rank's output of a device collective, queued on s */
static fa4cp_status dev_pull(fa4cp_comm *c, const coll_rec *rec, const fa4cp_comm_req *r,
                             cudaStream_t s)
{
    fa4cp_status st = FA4CP_OK;
    const int n = c->size;
    unsigned char *out = r->recv;
    void *stage = NULL;
    for (int p = 0; p < n; p++)
        CU_TRY(cudaStreamWaitEvent(s, (cudaEvent_t)rec->c[p].ready, 0));
    switch (r->kind) {
    case K_ALL_GATHER:
        for (int p = 0; p < n && r->size; p++)
            CU_TRY(cudaMemcpyAsync(out + (size_t)p * r->size, rec->c[p].dsend, r->size,
                                   cudaMemcpyDefault, s));
        break;
    case K_ALL_TO_ALL:
        for (int p = 0; p < n && r->size; p++)
            CU_TRY(cudaMemcpyAsync(out + (size_t)p * r->size,
                                   (const unsigned char *)rec->c[p].dsend + (size_t)c->rank * r->size,
                                   r->size, cudaMemcpyDefault, s));
        break;
    case K_REDUCE_SCATTER:
    case K_ALL_REDUCE: {
        /* the kernel reads the contributions where they are when they all
         * live on this rank's device (simulated ranks on one GPU); from
         * other devices they are staged here first */
        const size_t es = fa4cp_dtype_size(r->dtype), bytes = r->size * es;
        const size_t off = r->kind == K_REDUCE_SCATTER ? (size_t)c->rank * bytes : 0;
        const void *srcs[16];
        int dev = -1, here = 1;
        if (!r->size)
            break;
        if (n > 16)
            FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED, "local transport: device reductions over %d ranks (at most 16)", n);
        CU_TRY(cudaGetDevice(&dev));
        for (int p = 0; p < n && here; p++) {
            struct cudaPointerAttributes at;
            CU_TRY(cudaPointerGetAttributes(&at, rec->c[p].dsend));
            here = at.type == cudaMemoryTypeDevice && at.device == dev;
        }
        if (here) {
            for (int p = 0; p < n; p++)
                srcs[p] = (const unsigned char *)rec->c[p].dsend + off;
        } else {
            CU_TRY(cudaMallocAsync(&stage, (size_t)n * bytes, s));
            for (int p = 0; p < n; p++) {
                CU_TRY(cudaMemcpyAsync((unsigned char *)stage + (size_t)p * bytes,
                                       (const unsigned char *)rec->c[p].dsend + off, bytes,
                                       cudaMemcpyDefault, s));
                srcs[p] = (const unsigned char *)stage + (size_t)p * bytes;
            }
        }
        int ke = fa4cp_kcp_reduce((int)r->dtype, r->kind == K_ALL_REDUCE ? r->op : 0, out, srcs, n,
                                  r->size, s);
        if (ke)
            FA4CP_FAIL(FA4CP_ERR_CUDA, "local transport: %s:%d: the reduction kernel: %s", __FILE__,
                       __LINE__, cudaGetErrorString((cudaError_t)ke));
        break;
    }
    default: break;
    }
out:
    if (stage)
        (void)cudaFreeAsync(stage, s);
    return st;
}

static fa4cp_status dev_wait_coll(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    const int n = w->n;
    fa4cp_status st = FA4CP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    struct timespec deadline;
    deadline_of(c->timeout_s, &deadline);
    pthread_mutex_lock(&w->mu);
    coll_rec *rec = w->colls;
    while (rec && rec->gen != r->gen)
        rec = rec->next;
    while (rec->arrived < n)
        if (wait_until(w, &deadline) == ETIMEDOUT)
            break;
    int arrived = rec->arrived;
    pthread_mutex_unlock(&w->mu);
    if (arrived < n) {
        char missing[256] = "";
        size_t at = 0;
        pthread_mutex_lock(&w->mu);
        for (int p = 0; p < n && at + 16 < sizeof missing; p++)
            if (!rec->c[p].posted)
                at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", at ? "," : "", p);
        pthread_mutex_unlock(&w->mu);
        /* the record stays: the others may still come and find it */
        return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                               "local %s number %llu: rank %d waited %.3g s and rank(s) %s never posted it",
                               kind_name[r->kind], (unsigned long long)r->gen, c->rank, c->timeout_s,
                               missing);
    }
    for (int p = 0; p < n && st == FA4CP_OK; p++) {
        const contrib *k = &rec->c[p];
        if (k->kind != r->kind || k->size != r->size || k->dtype != r->dtype || k->op != r->op)
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "local collective number %llu: rank %d posted %s of %zu, rank %d "
                                 "posted %s of %zu",
                                 (unsigned long long)r->gen, c->rank, kind_name[r->kind], r->size, p,
                                 kind_name[k->kind], k->size);
    }
    if (st == FA4CP_OK)
        st = dev_pull(c, rec, r, s);
    if (st == FA4CP_OK) {
        cudaError_t ce = cudaEventRecord((cudaEvent_t)rec->c[c->rank].done, s);
        if (ce != cudaSuccess)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "local collective: %s", cudaGetErrorString(ce));
    }
    /* every rank's pulls are queued before any send buffer may change */
    pthread_mutex_lock(&w->mu);
    rec->c[c->rank].pulled = 1;
    pthread_cond_broadcast(&w->cv);
    for (int p = 0; p < n; p++) {
        while (!rec->c[p].pulled)
            if (wait_until(w, &deadline) == ETIMEDOUT)
                break;
        if (!rec->c[p].pulled) {
            if (st == FA4CP_OK)
                st = fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                     "local %s number %llu: rank %d waited %.3g s for rank %d to "
                                     "take its part",
                                     kind_name[r->kind], (unsigned long long)r->gen, c->rank,
                                     c->timeout_s, p);
            break;
        }
        if (st == FA4CP_OK) {
            cudaError_t ce = cudaStreamWaitEvent(s, (cudaEvent_t)rec->c[p].done, 0);
            if (ce != cudaSuccess)
                st = fa4cp_set_error(FA4CP_ERR_CUDA, "local collective: %s", cudaGetErrorString(ce));
        }
    }
    if (++rec->finished == n) {
        for (coll_rec **pp = &w->colls; *pp; pp = &(*pp)->next)
            if (*pp == rec) {
                *pp = rec->next;
                break;
            }
        free_rec(rec, n);
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}
#endif /* HAVE_CUDA */

static fa4cp_status local_all_gather(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                     void *stream, fa4cp_comm_req **req)
{
    return post_coll(c, K_ALL_GATHER, send, recv, bytes, FA4CP_FP32, 0, stream, req);
}

static fa4cp_status local_reduce_scatter(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                         fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req)
{
    return post_coll(c, K_REDUCE_SCATTER, send, recv, count, dtype, FA4CP_REDUCE_SUM, stream, req);
}

static fa4cp_status local_all_to_all(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                     void *stream, fa4cp_comm_req **req)
{
    return post_coll(c, K_ALL_TO_ALL, send, recv, bytes, FA4CP_FP32, 0, stream, req);
}

static fa4cp_status local_all_reduce(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                     fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                                     fa4cp_comm_req **req)
{
    return post_coll(c, K_ALL_REDUCE, send, recv, count, dtype, (int)op, stream, req);
}

static fa4cp_status local_wait(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    fa4cp_status st;
#ifdef HAVE_CUDA
    if (c->device_memory && !(r->is_coll && r->kind == K_BARRIER))
        st = r->is_coll ? dev_wait_coll(c, r, stream) : dev_wait_p2p(c, r, stream);
    else
#endif
        st = r->is_coll ? wait_coll(c, r) : wait_p2p(c, r);
    fa4cp_free(r->sends);
    fa4cp_free(r->recvs);
    fa4cp_free(r);
    return st;
}

static fa4cp_status local_barrier(fa4cp_comm *c)
{
    fa4cp_comm_req *r = NULL;
    fa4cp_status st = post_coll(c, K_BARRIER, NULL, NULL, 0, FA4CP_FP32, 0, NULL, &r);
    if (st != FA4CP_OK)
        return st;
    return local_wait(c, r, NULL);
}

static void local_destroy(fa4cp_comm *c)
{
    endpoint *e = ep_of(c);
    if (e) {
        fa4cp_free(e->sent);
        fa4cp_free(e->received);
        fa4cp_free(e);
    }
    fa4cp_free(c);
}

static const fa4cp_comm_ops local_ops = {
    .sendrecv = local_sendrecv,
    .all_gather = local_all_gather,
    .reduce_scatter = local_reduce_scatter,
    .all_to_all = local_all_to_all,
    .all_reduce = local_all_reduce,
    .wait = local_wait,
    .barrier = local_barrier,
    .destroy = local_destroy,
};

/* ------------------------------------------------------------------ world */

fa4cp_status fa4cp_local_world_create(int nranks, int device_memory, double timeout_s,
                                      fa4cp_local_world **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_local_world *w = NULL;
    pthread_condattr_t ca;
    int have_attr = 0, have_mu = 0;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_local_world_create: out is NULL");
    *out = NULL;
    if (nranks < 1)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "local transport: %d ranks, need at least 1", nranks);
#ifndef HAVE_CUDA
    if (device_memory)
        FA4CP_FAIL(FA4CP_ERR_UNSUPPORTED,
                   "local transport: device memory needs a build with CUDA (configure "
                   "--with-cuda); use host buffers (device_memory = 0)");
#endif
    FA4CP_TRY(fa4cp_timeout_check("local transport: timeout", timeout_s));
    w = fa4cp_calloc(1, sizeof *w, "local world");
    if (!w) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    w->n = nranks;
    w->device_memory = device_memory != 0;
    w->timeout_s = timeout_s;
    w->taken = fa4cp_calloc((size_t)nranks, sizeof *w->taken, "local world endpoints");
    if (!w->taken) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "local transport: pthread_mutex_init failed");
    have_mu = 1;
    if (pthread_condattr_init(&ca) != 0)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "local transport: pthread_condattr_init failed");
    have_attr = 1;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&w->cv, &ca) != 0)
        FA4CP_FAIL(FA4CP_ERR_INTERNAL, "local transport: cannot make a CLOCK_MONOTONIC condition");
    *out = w;
    w = NULL;
out:
    if (have_attr)
        pthread_condattr_destroy(&ca);
    if (w) {
        if (have_mu)
            pthread_mutex_destroy(&w->mu);
        fa4cp_free(w->taken);
        fa4cp_free(w);
    }
    return st;
}

fa4cp_status fa4cp_local_comm(fa4cp_local_world *w, int rank, fa4cp_comm **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm *c = NULL;
    endpoint *e = NULL;
    if (!w || !out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_local_comm: world or out is NULL");
    *out = NULL;
    if (rank < 0 || rank >= w->n)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "local transport: rank %d is outside the world of %d ranks",
                   rank, w->n);
    c = fa4cp_calloc(1, sizeof *c, "local comm");
    e = fa4cp_calloc(1, sizeof *e, "local endpoint");
    if (!c || !e) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    e->w = w;
    e->sent = fa4cp_calloc((size_t)w->n, sizeof *e->sent, "local send counters");
    e->received = fa4cp_calloc((size_t)w->n, sizeof *e->received, "local receive counters");
    if (!e->sent || !e->received) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    pthread_mutex_lock(&w->mu);
    int was = w->taken[rank];
    w->taken[rank] = 1;
    pthread_mutex_unlock(&w->mu);
    if (was)
        FA4CP_FAIL(FA4CP_ERR_INVALID, "local transport: the endpoint of rank %d was already taken",
                   rank);
    c->ops = &local_ops;
    c->name = "local";
    c->rank = rank;
    c->size = w->n;
    c->device_memory = w->device_memory;
    c->timeout_s = w->timeout_s;
    c->impl = e;
    *out = c;
    c = NULL;
    e = NULL;
out:
    if (e) {
        fa4cp_free(e->sent);
        fa4cp_free(e->received);
        fa4cp_free(e);
    }
    fa4cp_free(c);
    return st;
}

void fa4cp_local_world_destroy(fa4cp_local_world *w)
{
    if (!w)
        return;
    while (w->msgs) {
        msg *m = w->msgs;
        w->msgs = m->next;
#ifdef HAVE_CUDA
        drop_event(m->ready);
        drop_event(m->done);
#endif
        fa4cp_free(m);
    }
    while (w->colls) {
        coll_rec *r = w->colls;
        w->colls = r->next;
        free_rec(r, w->n);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    fa4cp_free(w->taken);
    fa4cp_free(w);
}
