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
#include "comm_local.h"

/* ------------------------------------------------------------------ point to point */

static fa4cp_status local_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                   fa4cp_comm_req **req)
{
#ifdef HAVE_CUDA
    if (c->device_memory)
        return cl_dev_sendrecv(c, ops, nops, stream, req);
#else
    FA4CP_UNUSED(stream);
#endif
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    int nrecv = 0;
    for (int i = 0; i < nops; i++)
        nrecv += !ops[i].is_send;
    fa4cp_comm_req *r = cl_new_req("local sendrecv request");
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
static fa4cp_status wait_p2p(fa4cp_comm *c, fa4cp_comm_req *r)
{
    fa4cp_status st = FA4CP_OK;
    struct timespec deadline;
    cl_deadline_of(c->timeout_s, &deadline);
    for (int i = 0; i < r->nrecv && st == FA4CP_OK; i++) {
        const pending *p = &r->recvs[i];
        msg *m = NULL;
        st = cl_take_wait(c, p, &deadline, &m);
        if (!m)
            break;
        if (st == FA4CP_OK && m->bytes)
            memcpy(p->buf, m->data, m->bytes);
        fa4cp_free(m);
    }
    return st;
}
/* ------------------------------------------------------------------ collectives */

static fa4cp_status post_coll(fa4cp_comm *c, int kind, const void *send, void *recv, size_t size,
                              fa4cp_dtype dtype, int op, void *stream, fa4cp_comm_req **req)
{
#ifdef HAVE_CUDA
    if (c->device_memory && kind != K_BARRIER)
        return cl_dev_post_coll(c, kind, send, recv, size, dtype, op, stream, req);
#else
    FA4CP_UNUSED(stream);
#endif
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    size_t bytes = cl_contrib_bytes(kind, size, dtype, w->n);
    fa4cp_comm_req *r = cl_new_req("local collective request");
    void *data = fa4cp_malloc(bytes, "local collective contribution");
    coll_rec *fresh = fa4cp_calloc(1, sizeof(coll_rec) + (size_t)w->n * sizeof(contrib),
                                   "local collective record");
    if (!r || !data || !fresh) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    if (bytes)
        memcpy(data, send, bytes);
    contrib mine = {.data = data};
    cl_join_coll(c, r, kind, recv, size, dtype, op, &fresh, &mine);
    data = NULL;
    *req = r;
    r = NULL;
out:
    fa4cp_free(r);
    fa4cp_free(data);
    fa4cp_free(fresh);
    return st;
}
/* recv[i] = op over ranks of block `block` element i of every contribution */
static fa4cp_status reduce(const coll_rec *rec, int n, size_t block, size_t count, fa4cp_dtype dt,
                           int op, void *recv)
{
    size_t off = block * count * fa4cp_dtype_size(dt);
    const void **parts = fa4cp_calloc((size_t)n, sizeof *parts, "local reduction parts");
    if (!parts)
        return FA4CP_ERR_NOMEM;
    for (int p = 0; p < n; p++)
        parts[p] = (const unsigned char *)rec->c[p].data + off;
    fa4cp_comm_reduce_parts(parts, n, count, dt, op, recv);
    fa4cp_free(parts);
    return FA4CP_OK;
}
static fa4cp_status wait_coll(fa4cp_comm *c, fa4cp_comm_req *r)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    const int n = w->n;
    coll_rec *rec = NULL;
    struct timespec deadline;
    cl_deadline_of(c->timeout_s, &deadline);
    fa4cp_status st = cl_arrive_all(c, r, &deadline, &rec);
    if (!rec)
        return st;
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
            st = reduce(rec, n, (size_t)c->rank, r->size, r->dtype, FA4CP_REDUCE_SUM, out);
            break;
        case K_ALL_REDUCE: st = reduce(rec, n, 0, r->size, r->dtype, r->op, out); break;
        default: break;
        }
    }

    pthread_mutex_lock(&w->mu);
    cl_finish_rec(w, rec);
    pthread_mutex_unlock(&w->mu);
    return st;
}

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
        st = r->is_coll ? cl_dev_wait_coll(c, r, stream) : cl_dev_wait_p2p(c, r, stream);
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
        cl_drop_event(m->ready);
        cl_drop_event(m->done);
#endif
        fa4cp_free(m);
    }
    while (w->colls) {
        coll_rec *r = w->colls;
        w->colls = r->next;
        cl_free_rec(r, w->n);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    fa4cp_free(w->taken);
    fa4cp_free(w);
}

