/* comm_local_dev.c - the local transport in device memory: pointers and
 * events meet on the host, the copies run on the streams (comm_local.h). */
#include "comm_local.h"

#ifdef HAVE_CUDA
#define CU_TRY(call) FA4CP_CUDA_TRY("local transport", call)

fa4cp_status cl_dev_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    int nrecv = 0, nsend = 0;
    for (int i = 0; i < nops; i++)
        nrecv += !ops[i].is_send;
    nsend = nops - nrecv;
    fa4cp_comm_req *r = cl_new_req("local sendrecv request");
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
            FA4CP_TRY(cl_new_event(&m->ready, 1, stream));
            FA4CP_TRY(cl_new_event(&m->done, 0, NULL));
        } else {
            pending *p = &r->recvs[r->nrecv++];
            p->peer = ops[i].peer;
            p->buf = ops[i].buf;
            p->bytes = ops[i].bytes;
            FA4CP_TRY(cl_new_event(&p->post, 1, stream));
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
            cl_drop_event(r->sends[i]->ready);
            cl_drop_event(r->sends[i]->done);
            fa4cp_free(r->sends[i]);
        }
        for (int i = 0; i < r->nrecv; i++)
            cl_drop_event(r->recvs[i].post);
        fa4cp_free(r->sends);
        fa4cp_free(r->recvs);
        fa4cp_free(r);
    }
    return st;
}

fa4cp_status cl_dev_wait_p2p(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    struct timespec deadline;
    cl_deadline_of(c->timeout_s, &deadline);
    /* receives first: they never wait for another rank's wait */
    for (int i = 0; i < r->nrecv && st == FA4CP_OK; i++) {
        pending *p = &r->recvs[i];
        msg *m = NULL;
        st = cl_take_wait(c, p, &deadline, &m);
        if (!m)
            break;
        cudaError_t ce = cudaSuccess;
        if (st == FA4CP_OK) {
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
        cl_msg_unref(m);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    /* then the sends: this stream waits for the copies that read them */
    for (int i = 0; i < r->nsend; i++) {
        msg *m = r->sends[i];
        int copied;
        pthread_mutex_lock(&w->mu);
        while (!(copied = m->copied) && st == FA4CP_OK)
            if (cl_wait_until(w, &deadline) == ETIMEDOUT) {
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
            cl_msg_unref(m);
        } else {
            /* still in the mailbox: the receiver may take it later */
            m->refs--;
        }
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < r->nrecv; i++)
        cl_drop_event(r->recvs[i].post);
    return st;
}

fa4cp_status cl_dev_post_coll(fa4cp_comm *c, int kind, const void *send, void *recv,
                                  size_t size, fa4cp_dtype dtype, int op, void *stream,
                                  fa4cp_comm_req **req)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    fa4cp_status st = FA4CP_OK;
    void *ready = NULL, *done = NULL;
    fa4cp_comm_req *r = cl_new_req("local collective request");
    coll_rec *fresh = fa4cp_calloc(1, sizeof(coll_rec) + (size_t)w->n * sizeof(contrib),
                                   "local collective record");
    if (!r || !fresh) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    FA4CP_TRY(cl_new_event(&ready, 1, stream));
    FA4CP_TRY(cl_new_event(&done, 0, NULL));
    contrib mine = {.dsend = send, .ready = ready, .done = done};
    cl_join_coll(c, r, kind, recv, size, dtype, op, &fresh, &mine);
    ready = done = NULL;
    *req = r;
    r = NULL;
out:
    cl_drop_event(ready);
    cl_drop_event(done);
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

fa4cp_status cl_dev_wait_coll(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    endpoint *e = ep_of(c);
    fa4cp_local_world *w = e->w;
    const int n = w->n;
    cudaStream_t s = (cudaStream_t)stream;
    coll_rec *rec = NULL;
    struct timespec deadline;
    cl_deadline_of(c->timeout_s, &deadline);
    fa4cp_status st = cl_arrive_all(c, r, &deadline, &rec);
    if (!rec) /* the record stays: the others may still come and find it */
        return st;
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
            if (cl_wait_until(w, &deadline) == ETIMEDOUT)
                break;
        if (!rec->c[p].pulled) {
            if (st == FA4CP_OK)
                st = fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                     "local %s number %llu: rank %d waited %.3g s for rank %d to "
                                     "take its part",
                                     cl_kind_name[r->kind], (unsigned long long)r->gen, c->rank,
                                     c->timeout_s, p);
            break;
        }
        if (st == FA4CP_OK) {
            cudaError_t ce = cudaStreamWaitEvent(s, (cudaEvent_t)rec->c[p].done, 0);
            if (ce != cudaSuccess)
                st = fa4cp_set_error(FA4CP_ERR_CUDA, "local collective: %s", cudaGetErrorString(ce));
        }
    }
    cl_finish_rec(w, rec);
    pthread_mutex_unlock(&w->mu);
    return st;
}
#endif /* HAVE_CUDA */
