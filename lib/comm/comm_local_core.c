/* comm_local_core.c - what the host and the device operations of the local
 * transport share: deadlines, requests, the mailbox and the collective
 * records, and (with CUDA) the events of device memory. */
#include "comm_local.h"

const char *const cl_kind_name[] = {"all_gather", "reduce_scatter", "all_to_all", "all_reduce", "barrier"};

/* ------------------------------------------------------------------ helpers */

void cl_deadline_of(double timeout_s, struct timespec *t)
{
    fa4cp_deadline(CLOCK_MONOTONIC, timeout_s, t); /* saturated: never wraps into the past */
}

/* wait on the world's condition; returns 0, or ETIMEDOUT past the deadline */
int cl_wait_until(fa4cp_local_world *w, const struct timespec *deadline)
{
    int rc = pthread_cond_timedwait(&w->cv, &w->mu, deadline);
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

fa4cp_comm_req *cl_new_req(const char *what)
{
    fa4cp_comm_req *r = fa4cp_calloc(1, sizeof *r, what);
    return r;
}
/* take the message (src -> me, seq) from the mailbox; caller holds the lock */
msg *cl_take_msg(fa4cp_local_world *w, int src, int dst, uint64_t seq)
{
    for (msg **pp = &w->msgs; *pp; pp = &(*pp)->next)
        if ((*pp)->src == src && (*pp)->dst == dst && (*pp)->seq == seq) {
            msg *m = *pp;
            *pp = m->next;
            return m;
        }
    return NULL;
}

/* The message of receive p, waited for until the deadline: FA4CP_OK, or
 * FA4CP_ERR_TIMEOUT (*out NULL: it never came), or FA4CP_ERR_INVALID when its
 * size is not the receive's (*out is the message all the same, for the
 * caller to release).  Host and device receives alike. */
fa4cp_status cl_take_wait(fa4cp_comm *c, const pending *p, const struct timespec *deadline, msg **out)
{
    fa4cp_local_world *w = ep_of(c)->w;
    msg *m = NULL;
    pthread_mutex_lock(&w->mu);
    while (!(m = cl_take_msg(w, p->peer, c->rank, p->seq)))
        if (cl_wait_until(w, deadline) == ETIMEDOUT) {
            m = cl_take_msg(w, p->peer, c->rank, p->seq);
            break;
        }
    pthread_mutex_unlock(&w->mu);
    *out = m;
    if (!m)
        return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                               "local sendrecv: rank %d waited %.3g s for message number %llu from rank %d "
                               "(%zu bytes) and rank %d never sent it",
                               c->rank, c->timeout_s, (unsigned long long)p->seq, p->peer, p->bytes, p->peer);
    if (m->bytes != p->bytes)
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "local sendrecv: rank %d sent %zu bytes to rank %d (message number %llu) "
                               "but rank %d posted a receive of %zu bytes",
                               p->peer, m->bytes, c->rank, (unsigned long long)p->seq, c->rank, p->bytes);
    return FA4CP_OK;
}

size_t cl_contrib_bytes(int kind, size_t size, fa4cp_dtype dtype, int n)
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
void cl_join_coll(fa4cp_comm *c, fa4cp_comm_req *r, int kind, void *recv, size_t size, fa4cp_dtype dtype,
                  int op, coll_rec **fresh, const contrib *mine)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    r->is_coll = 1;
    r->kind = kind;
    r->recv = recv;
    r->size = size;
    r->dtype = dtype;
    r->op = op;
    pthread_mutex_lock(&w->mu);
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
    *k = *mine; /* the data, or the device buffer and its events */
    k->posted = 1;
    k->kind = kind;
    k->size = size;
    k->dtype = dtype;
    k->op = op;
    rec->arrived++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void cl_free_rec(coll_rec *rec, int n)
{
    for (int i = 0; i < n; i++) {
        fa4cp_free(rec->c[i].data);
#ifdef HAVE_CUDA
        cl_drop_event(rec->c[i].ready);
        cl_drop_event(rec->c[i].done);
#endif
    }
    fa4cp_free(rec);
}

/* This rank is done with rec (the world's mutex held): the last one to
 * finish unlinks and frees it. */
void cl_finish_rec(fa4cp_local_world *w, coll_rec *rec)
{
    if (++rec->finished < w->n)
        return;
    for (coll_rec **pp = &w->colls; *pp; pp = &(*pp)->next)
        if (*pp == rec) {
            *pp = rec->next;
            break;
        }
    cl_free_rec(rec, w->n);
}

/* The record of collective r once every rank has posted it (until the
 * deadline), every contribution checked against r: FA4CP_OK;
 * FA4CP_ERR_TIMEOUT naming the ranks that never posted (*out NULL: the
 * record stays for them); FA4CP_ERR_INVALID naming a mismatch (*out set,
 * the caller finishes with the record).  Host and device collectives alike. */
fa4cp_status cl_arrive_all(fa4cp_comm *c, const fa4cp_comm_req *r, const struct timespec *deadline,
                               coll_rec **out)
{
    fa4cp_local_world *w = ep_of(c)->w;
    const int n = w->n;
    *out = NULL;
    pthread_mutex_lock(&w->mu);
    coll_rec *rec = w->colls;
    while (rec && rec->gen != r->gen)
        rec = rec->next;
    while (rec->arrived < n)
        if (cl_wait_until(w, deadline) == ETIMEDOUT)
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
                               cl_kind_name[r->kind], (unsigned long long)r->gen, c->rank, c->timeout_s,
                               missing);
    }
    pthread_mutex_unlock(&w->mu);
    *out = rec;
    /* every rank posted: the record is read-only until all have finished */
    for (int p = 0; p < n; p++) {
        const contrib *k = &rec->c[p];
        if (k->kind != r->kind)
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "local collective number %llu: rank %d posted %s but rank %d posted %s",
                                   (unsigned long long)r->gen, c->rank, cl_kind_name[r->kind], p,
                                   cl_kind_name[k->kind]);
        if (k->size != r->size || k->dtype != r->dtype || k->op != r->op) {
            int bytes = r->kind == K_ALL_GATHER || r->kind == K_ALL_TO_ALL;
            char mine[64], theirs[64];
            snprintf(mine, sizeof mine, "%zu %s%s%s", r->size, bytes ? "bytes" : "elements of ",
                     bytes ? "" : fa4cp_dtype_name(r->dtype), r->op ? " (max)" : "");
            snprintf(theirs, sizeof theirs, "%zu %s%s%s", k->size, bytes ? "bytes" : "elements of ",
                     bytes ? "" : fa4cp_dtype_name(k->dtype), k->op ? " (max)" : "");
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "local %s number %llu: rank %d posted %s but rank %d posted %s",
                                   cl_kind_name[r->kind], (unsigned long long)r->gen, c->rank, mine, p, theirs);
        }
    }
    return FA4CP_OK;
}

#ifdef HAVE_CUDA
#define CU_TRY(call) FA4CP_CUDA_TRY("local transport", call)

/* a new event, recorded on `stream` when `record` */
fa4cp_status cl_new_event(void **ev, int record, void *stream)
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

void cl_drop_event(void *ev)
{
    if (ev)
        (void)cudaEventDestroy((cudaEvent_t)ev); /* released once complete */
}

/* one reference less; the caller holds the lock */
void cl_msg_unref(msg *m)
{
    if (--m->refs == 0) {
        cl_drop_event(m->ready);
        cl_drop_event(m->done);
        fa4cp_free(m);
    }
}
#endif
