/* comm_mpi.c - the "mpi" transport: host memory, one rank per process, on any
 * nodes (Open MPI or any MPI-3 library).
 *
 * Same semantics as the local transport (comm_local.c), so the CP executor
 * and tests/test_comm's table see no difference:
 *
 * - Every message carries a small header (what was posted: the operation,
 *   its number, its size, dtype and reduction) in front of its bytes, and
 *   is staged: a post copies the send data into a buffer of the transport
 *   and MPI_Isend's it; the receiving side takes every message that arrives,
 *   from every peer, into buffers of its own (MPI_Improbe + MPI_Imrecv: the
 *   size is known before the bytes are received), whatever it is waiting
 *   for.  So no legal order of posts can deadlock, a size that disagrees is
 *   an error that names both ranks and both sizes (the bytes of a message
 *   are never written past a buffer's end), and a failed or timed-out wait
 *   leaves MPI no pointer into the caller's memory.
 * - Point-to-point: the n-th send from a rank to a peer matches the peer's
 *   n-th receive from that rank (MPI keeps the order of the messages of one
 *   sender, tag and communicator; the header's number checks it).
 * - Collectives: generation counted on a tag of their own: the k-th
 *   collective of every rank matches the k-th of every other rank; every
 *   rank sends each peer what that peer needs (a block, or its whole input),
 *   and the wait computes the output from the contributions in rank order -
 *   reductions with exactly the arithmetic of the local transport
 *   (fa4cp_comm_reduce_parts), so a run over MPI gives the same bits as the
 *   same run with threads.
 * - A wait polls MPI (MPI_Test, MPI_Improbe) until it is done or past the
 *   comm's timeout; past it, the error names the rank that never posted or
 *   never took its message.  An error of MPI itself (a peer whose connection
 *   broke) fails the comm: every later call says why.
 *
 * Large messages go in pieces of at most 1 GiB (MPI counts are int).  MPI is
 * called from one thread at a time (a process-wide lock; MPI_THREAD_SERIALIZED
 * is enough).  MPI's initialisation and the check of its ranks against the
 * world are the world layer's (world_mpi.c).
 */
#include "comm.h"
#include "comm_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_MPI

void fa4cp_mpi_waiting_for(char *buf, size_t len)
{
    if (buf && len)
        buf[0] = '\0';
}

#else /* HAVE_MPI */

#include <pthread.h>
#include <stdint.h>
#include <time.h>

enum { CH_P2P, CH_COLL, NCH };
static const int ch_tag[NCH] = {4601, 4602};

enum { K_P2P, K_ALL_GATHER, K_REDUCE_SCATTER, K_ALL_TO_ALL, K_ALL_REDUCE, K_BARRIER, NKIND };
static const char *kind_name[NKIND] = {"sendrecv",   "all_gather", "reduce_scatter",
                                       "all_to_all", "all_reduce", "barrier"};

#define MAGIC 0x50433446u /* "F4CP" */

/* Messages go in pieces of at most 1 GiB (MPI counts are int);
 * FA4CP_MPI_PIECE=BYTES (at least 64) makes them smaller, so that tests
 * exercise the pieces with small messages.  Read once per comm. */
static size_t piece_bytes(void)
{
    const char *e = getenv("FA4CP_MPI_PIECE");
    long long v = e ? atoll(e) : 0;
    return v >= 64 && v < (1ll << 30) ? (size_t)v : (size_t)1 << 30;
}

typedef struct hdr {
    uint32_t magic;
    uint32_t kind;
    uint64_t seq;   /* p2p: message number from the sender to this receiver; else generation */
    uint64_t size;  /* bytes (p2p, all_gather, all_to_all) or elements (reductions) */
    int32_t dtype, op;
    uint64_t bytes; /* payload that follows */
} hdr;

/* A message that arrived, whole, from one peer on one channel. */
typedef struct inmsg {
    struct inmsg *next;
    hdr h;
    unsigned char *data; /* h.bytes */
} inmsg;

/* The receive in progress from one peer on one channel. */
typedef struct inflow {
    MPI_Request req;
    int active;
    unsigned char *first; /* the first piece: header + bytes */
    int first_len;
    inmsg *m;     /* after the header: the message being completed */
    size_t got;   /* its payload bytes so far */
    uint64_t arrived; /* messages completed on this channel */
    inmsg *head, *tail; /* arrived, not yet taken */
} inflow;

/* A staged send: header + payload, in pieces; done when every piece is. */
typedef struct outmsg {
    struct outmsg *next; /* in the comm's list of sends not yet done */
    unsigned char *buf;
    int npieces, done;
    int peer;
    uint64_t seq;
    int kind;
    size_t bytes;
    MPI_Request *req;
    int owned_by_req; /* a request still refers to it */
} outmsg;

typedef struct mpi_impl {
    MPI_Comm comm;
    int *members; /* [size]: group rank -> rank of comm */
    char label[32];
    uint64_t *sent, *recvd; /* p2p messages per peer */
    uint64_t gen;           /* collectives posted */
    inflow *in;             /* [size * NCH] */
    outmsg *outs;           /* sends not yet done */
    size_t piece;           /* bytes per MPI message at most */
    int failed;
    char why[400];
} mpi_impl;

typedef struct rpending {
    int peer;
    void *buf;
    size_t bytes;
    uint64_t seq;
    int done;
} rpending;

struct fa4cp_comm_req {
    int is_coll;
    int nrecv;
    rpending *recvs;
    int nsend;
    outmsg **sends;
    /* collective */
    uint64_t gen;
    int kind;
    void *recv;
    size_t size;
    fa4cp_dtype dtype;
    int op;
    unsigned char *own; /* this rank's contribution (what it would send itself) */
};

/* MPI from one thread at a time */
static pthread_mutex_t mpi_lock = PTHREAD_MUTEX_INITIALIZER;

/* the watchdog's view of the current wait */
static pthread_mutex_t waiting_lock = PTHREAD_MUTEX_INITIALIZER;
static char waiting[320];

void fa4cp_mpi_waiting_for(char *buf, size_t len)
{
    if (!buf || !len)
        return;
    pthread_mutex_lock(&waiting_lock);
    snprintf(buf, len, "%s", waiting);
    pthread_mutex_unlock(&waiting_lock);
}

static void set_waiting(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_waiting(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&waiting_lock);
    va_start(ap, fmt);
    vsnprintf(waiting, sizeof waiting, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&waiting_lock);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static mpi_impl *impl_of(fa4cp_comm *c) { return (mpi_impl *)c->impl; }

static const char *mpi_errstr(int rc, char *buf)
{
    int len = 0;
    if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS)
        snprintf(buf, MPI_MAX_ERROR_STRING, "MPI error %d", rc);
    return buf;
}

/* An error of MPI itself: the comm is failed from now on. */
static fa4cp_status fail_mpi(fa4cp_comm *c, const char *what, int peer, int rc)
{
    mpi_impl *x = impl_of(c);
    char es[MPI_MAX_ERROR_STRING];
    if (!x->failed) {
        x->failed = 1;
        if (peer >= 0)
            snprintf(x->why, sizeof x->why, "%s with rank %d (MPI rank %d): %s", what, peer,
                     x->members[peer], mpi_errstr(rc, es));
        else
            snprintf(x->why, sizeof x->why, "%s: %s", what, mpi_errstr(rc, es));
        fa4cp_log(FA4CP_LOG_ERROR, "mpi comm %s rank %d: %s", x->label, c->rank, x->why);
    }
    return fa4cp_set_error(FA4CP_ERR_PEER, "mpi comm %s rank %d: %s", x->label, c->rank, x->why);
}

static fa4cp_status failed_error(fa4cp_comm *c, const char *op)
{
    mpi_impl *x = impl_of(c);
    return fa4cp_set_error(FA4CP_ERR_PEER, "%s on mpi comm %s rank %d: the comm failed earlier: %s",
                           op, x->label, c->rank, x->why);
}

/* ------------------------------------------------------------------ the progress engine */

static inflow *flow(mpi_impl *x, int peer, int ch) { return &x->in[(size_t)peer * NCH + (size_t)ch]; }

/* Receive what peer has sent on channel ch, as far as it has arrived.
 * *moved is set when anything completed. */
static fa4cp_status pull(fa4cp_comm *c, int peer, int ch, int *moved)
{
    mpi_impl *x = impl_of(c);
    inflow *f = flow(x, peer, ch);
    for (;;) {
        if (f->active) {
            int flag = 0;
            int rc = MPI_Test(&f->req, &flag, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                return fail_mpi(c, "receiving", peer, rc);
            if (!flag)
                return FA4CP_OK;
            f->active = 0;
            *moved = 1;
            if (f->first) { /* the first piece: header, then bytes */
                inmsg *m = fa4cp_calloc(1, sizeof *m, "mpi message");
                if (!m)
                    return FA4CP_ERR_NOMEM;
                memcpy(&m->h, f->first, sizeof m->h);
                if (m->h.magic != MAGIC || m->h.kind >= NKIND ||
                    m->h.bytes < (uint64_t)(f->first_len - (int)sizeof(hdr))) {
                    fa4cp_free(m);
                    fa4cp_free(f->first);
                    f->first = NULL;
                    x->failed = 1;
                    snprintf(x->why, sizeof x->why,
                             "a message from rank %d (MPI rank %d) on tag %d is not an fa4cp message",
                             peer, x->members[peer], ch_tag[ch]);
                    return fa4cp_set_error(FA4CP_ERR_PEER, "mpi comm %s rank %d: %s", x->label,
                                           c->rank, x->why);
                }
                m->data = fa4cp_malloc(m->h.bytes ? m->h.bytes : 1, "mpi message bytes");
                if (!m->data) {
                    fa4cp_free(m);
                    return FA4CP_ERR_NOMEM;
                }
                f->got = (size_t)f->first_len - sizeof(hdr);
                if (f->got)
                    memcpy(m->data, f->first + sizeof(hdr), f->got);
                fa4cp_free(f->first);
                f->first = NULL;
                f->m = m;
            }
            if (f->m && f->got == f->m->h.bytes) { /* whole */
                inmsg *m = f->m;
                f->m = NULL;
                f->arrived++;
                if (f->tail)
                    f->tail->next = m;
                else
                    f->head = m;
                f->tail = m;
            }
            continue;
        }
        /* nothing in progress: is the next piece there? */
        int flag = 0, count = 0;
        MPI_Message msg;
        MPI_Status status;
        int rc = MPI_Improbe(x->members[peer], ch_tag[ch], x->comm, &flag, &msg, &status);
        if (rc != MPI_SUCCESS)
            return fail_mpi(c, "probing", peer, rc);
        if (!flag)
            return FA4CP_OK;
        MPI_Get_count(&status, MPI_BYTE, &count);
        unsigned char *into;
        if (!f->m) { /* a new message: its first piece starts with the header */
            if (count < (int)sizeof(hdr)) {
                x->failed = 1;
                snprintf(x->why, sizeof x->why,
                         "a message of %d bytes from rank %d (MPI rank %d) on tag %d is not an "
                         "fa4cp message",
                         count, peer, x->members[peer], ch_tag[ch]);
                return fa4cp_set_error(FA4CP_ERR_PEER, "mpi comm %s rank %d: %s", x->label,
                                       c->rank, x->why);
            }
            f->first = fa4cp_malloc((size_t)count, "mpi message");
            if (!f->first)
                return FA4CP_ERR_NOMEM;
            f->first_len = count;
            into = f->first;
        } else { /* the next piece of the message in progress */
            if ((size_t)count > f->m->h.bytes - f->got) {
                x->failed = 1;
                snprintf(x->why, sizeof x->why,
                         "rank %d (MPI rank %d) sent %d more bytes than the %llu of its message",
                         peer, x->members[peer], count, (unsigned long long)f->m->h.bytes);
                return fa4cp_set_error(FA4CP_ERR_PEER, "mpi comm %s rank %d: %s", x->label,
                                       c->rank, x->why);
            }
            into = f->m->data + f->got;
            f->got += (size_t)count;
        }
        rc = MPI_Imrecv(into, count, MPI_BYTE, &msg, &f->req);
        if (rc != MPI_SUCCESS)
            return fail_mpi(c, "receiving", peer, rc);
        f->active = 1;
    }
}

/* Test the sends in flight; free those done that no request refers to. */
static fa4cp_status push(fa4cp_comm *c, int *moved)
{
    mpi_impl *x = impl_of(c);
    for (outmsg **pp = &x->outs; *pp;) {
        outmsg *o = *pp;
        if (!o->done) {
            int flag = 0;
            int rc = MPI_Testall(o->npieces, o->req, &flag, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS)
                return fail_mpi(c, "sending", o->peer, rc);
            if (flag) {
                o->done = 1;
                *moved = 1;
            }
        }
        if (o->done && !o->owned_by_req) {
            *pp = o->next;
            fa4cp_free(o->buf);
            fa4cp_free(o->req);
            fa4cp_free(o);
        } else {
            pp = &o->next;
        }
    }
    return FA4CP_OK;
}

/* One round over every peer and the sends; *moved when anything completed. */
static fa4cp_status progress(fa4cp_comm *c, int *moved)
{
    fa4cp_status st = push(c, moved);
    for (int p = 0; p < c->size && st == FA4CP_OK; p++)
        for (int ch = 0; ch < NCH && st == FA4CP_OK; ch++)
            st = pull(c, p, ch, moved);
    return st;
}

/* Pause between idle polls: spin first, then sleep up to 1 ms (the ranks of a
 * node share its cores with the computation of the others). */
static void idle(int *spins)
{
    if (++*spins < 64)
        return;
    long ns = *spins < 256 ? 20000L : 1000000L;
    struct timespec t = {0, ns};
    pthread_mutex_unlock(&mpi_lock);
    nanosleep(&t, NULL);
    pthread_mutex_lock(&mpi_lock);
}

/* Stage and send one message to peer on channel ch. */
static fa4cp_status send_msg(fa4cp_comm *c, int peer, int ch, const hdr *h, const void *data,
                             outmsg **made)
{
    mpi_impl *x = impl_of(c);
    fa4cp_status st = FA4CP_OK;
    size_t total = sizeof(hdr) + h->bytes, piece = x->piece;
    int npieces = (int)((total + piece - 1) / piece);
    outmsg *o = fa4cp_calloc(1, sizeof *o, "mpi send");
    if (!o)
        return FA4CP_ERR_NOMEM;
    o->buf = fa4cp_malloc(total, "mpi send buffer");
    o->req = fa4cp_calloc((size_t)npieces, sizeof *o->req, "mpi send requests");
    if (!o->buf || !o->req) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    memcpy(o->buf, h, sizeof *h);
    if (h->bytes)
        memcpy(o->buf + sizeof *h, data, h->bytes);
    o->peer = peer;
    o->seq = h->seq;
    o->kind = (int)h->kind;
    o->bytes = h->bytes;
    for (int i = 0; i < npieces; i++) {
        size_t off = (size_t)i * piece, len = total - off < piece ? total - off : piece;
        int rc = MPI_Isend(o->buf + off, (int)len, MPI_BYTE, x->members[peer], ch_tag[ch], x->comm,
                           &o->req[i]);
        if (rc != MPI_SUCCESS) {
            /* the pieces already posted keep the buffer: it goes on the list */
            o->npieces = i;
            o->next = x->outs;
            x->outs = o;
            return fail_mpi(c, "sending", peer, rc);
        }
    }
    o->npieces = npieces;
    o->owned_by_req = made != NULL;
    o->next = x->outs;
    x->outs = o;
    if (made)
        *made = o;
    o = NULL;
out:
    if (o) {
        fa4cp_free(o->buf);
        fa4cp_free(o->req);
        fa4cp_free(o);
    }
    return st;
}

static inmsg *take(inflow *f, uint64_t seq)
{
    inmsg *prev = NULL;
    for (inmsg *m = f->head; m; prev = m, m = m->next)
        if (m->h.seq == seq) {
            if (prev)
                prev->next = m->next;
            else
                f->head = m->next;
            if (f->tail == m)
                f->tail = prev;
            m->next = NULL;
            return m;
        }
    return NULL;
}

static int has(const inflow *f, uint64_t seq)
{
    for (const inmsg *m = f->head; m; m = m->next)
        if (m->h.seq == seq)
            return 1;
    return 0;
}

static void free_inmsg(inmsg *m)
{
    if (m) {
        fa4cp_free(m->data);
        fa4cp_free(m);
    }
}

/* The request lets go of its sends; those not done stay on the comm's list
 * (their buffers belong to the transport, never to the caller). */
static void release_sends(fa4cp_comm_req *r)
{
    for (int i = 0; i < r->nsend; i++)
        if (r->sends[i])
            r->sends[i]->owned_by_req = 0;
    r->nsend = 0;
}

static void free_req(fa4cp_comm_req *r)
{
    if (!r)
        return;
    release_sends(r);
    fa4cp_free(r->sends);
    fa4cp_free(r->recvs);
    fa4cp_free(r->own);
    fa4cp_free(r);
}

/* ------------------------------------------------------------------ point to point */

static fa4cp_status mpi_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req)
{
    FA4CP_UNUSED(stream);
    mpi_impl *x = impl_of(c);
    fa4cp_status st = FA4CP_OK;
    int nrecv = 0;
    for (int i = 0; i < nops; i++)
        nrecv += !ops[i].is_send;
    fa4cp_comm_req *r = fa4cp_calloc(1, sizeof *r, "mpi sendrecv request");
    if (!r)
        return FA4CP_ERR_NOMEM;
    r->recvs = fa4cp_calloc((size_t)nrecv + 1, sizeof *r->recvs, "mpi sendrecv receives");
    r->sends = fa4cp_calloc((size_t)(nops - nrecv) + 1, sizeof *r->sends, "mpi sendrecv sends");
    if (!r->recvs || !r->sends) {
        free_req(r);
        return FA4CP_ERR_NOMEM;
    }
    pthread_mutex_lock(&mpi_lock);
    if (x->failed) {
        st = failed_error(c, "sendrecv");
        goto out;
    }
    for (int i = 0; i < nops; i++) {
        const fa4cp_p2p *o = &ops[i];
        if (o->is_send) {
            hdr h = {.magic = MAGIC, .kind = K_P2P, .seq = x->sent[o->peer]++, .size = o->bytes,
                     .bytes = o->bytes};
            FA4CP_TRY(send_msg(c, o->peer, CH_P2P, &h, o->buf, &r->sends[r->nsend]));
            r->nsend++;
        } else {
            rpending *p = &r->recvs[r->nrecv++];
            p->peer = o->peer;
            p->buf = o->buf;
            p->bytes = o->bytes;
            p->seq = x->recvd[o->peer]++;
        }
    }
    *req = r;
    r = NULL;
out:
    if (r)
        free_req(r);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

/* Is the request complete?  Takes the receives that arrived (copying the
 * bytes, or recording the first size mismatch in *err). */
static fa4cp_status p2p_step(fa4cp_comm *c, fa4cp_comm_req *r, fa4cp_status *err, int *complete)
{
    mpi_impl *x = impl_of(c);
    int all = 1;
    for (int i = 0; i < r->nrecv; i++) {
        rpending *p = &r->recvs[i];
        if (p->done)
            continue;
        inmsg *m = take(flow(x, p->peer, CH_P2P), p->seq);
        if (!m) {
            all = 0;
            continue;
        }
        p->done = 1;
        if (m->h.kind != K_P2P || m->h.bytes != p->bytes) {
            if (*err == FA4CP_OK)
                *err = fa4cp_set_error(FA4CP_ERR_INVALID,
                                       "mpi sendrecv: rank %d sent %llu bytes to rank %d (message "
                                       "number %llu) but rank %d posted a receive of %zu bytes",
                                       p->peer, (unsigned long long)m->h.bytes, c->rank,
                                       (unsigned long long)p->seq, c->rank, p->bytes);
        } else if (p->bytes) {
            memcpy(p->buf, m->data, p->bytes);
        }
        free_inmsg(m);
    }
    for (int i = 0; i < r->nsend; i++)
        all &= r->sends[i]->done;
    *complete = all;
    return FA4CP_OK;
}

static fa4cp_status p2p_timeout(fa4cp_comm *c, fa4cp_comm_req *r)
{
    mpi_impl *x = impl_of(c);
    for (int i = 0; i < r->nrecv; i++) {
        const rpending *p = &r->recvs[i];
        if (!p->done)
            return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                   "mpi sendrecv on comm %s: rank %d waited %.3g s for message "
                                   "number %llu from rank %d (%zu bytes) and rank %d (MPI rank %d) "
                                   "never sent it",
                                   x->label, c->rank, c->timeout_s, (unsigned long long)p->seq,
                                   p->peer, p->bytes, p->peer, x->members[p->peer]);
    }
    for (int i = 0; i < r->nsend; i++) {
        const outmsg *o = r->sends[i];
        if (!o->done)
            return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                   "mpi sendrecv on comm %s: rank %d waited %.3g s for rank %d (MPI "
                                   "rank %d) to take message number %llu (%zu bytes) and it never did",
                                   x->label, c->rank, c->timeout_s, o->peer, x->members[o->peer],
                                   (unsigned long long)o->seq, o->bytes);
    }
    return fa4cp_set_error(FA4CP_ERR_INTERNAL, "mpi sendrecv: timed out with nothing pending");
}

/* ------------------------------------------------------------------ collectives */

/* bytes of what rank `to` gets from this rank, and where it starts in `send` */
static size_t part_bytes(int kind, size_t size, fa4cp_dtype dtype)
{
    switch (kind) {
    case K_ALL_GATHER:
    case K_ALL_TO_ALL: return size;
    case K_REDUCE_SCATTER:
    case K_ALL_REDUCE: return size * fa4cp_dtype_size(dtype);
    default: return 0;
    }
}

static int per_peer_block(int kind) { return kind == K_ALL_TO_ALL || kind == K_REDUCE_SCATTER; }

static fa4cp_status post_coll(fa4cp_comm *c, int kind, const void *send, void *recv, size_t size,
                              fa4cp_dtype dtype, int op, fa4cp_comm_req **req)
{
    mpi_impl *x = impl_of(c);
    fa4cp_status st = FA4CP_OK;
    const int n = c->size;
    size_t part = part_bytes(kind, size, dtype);
    fa4cp_comm_req *r = fa4cp_calloc(1, sizeof *r, "mpi collective request");
    if (!r)
        return FA4CP_ERR_NOMEM;
    r->is_coll = 1;
    r->kind = kind;
    r->recv = recv;
    r->size = size;
    r->dtype = dtype;
    r->op = op;
    r->sends = fa4cp_calloc((size_t)n, sizeof *r->sends, "mpi collective sends");
    /* own contribution: the block for this rank, or the whole input */
    r->own = fa4cp_malloc(part ? part : 1, "mpi collective contribution");
    if (!r->sends || !r->own) {
        free_req(r);
        return FA4CP_ERR_NOMEM;
    }
    if (part)
        memcpy(r->own, (const unsigned char *)send + (per_peer_block(kind) ? (size_t)c->rank * part : 0),
               part);
    pthread_mutex_lock(&mpi_lock);
    if (x->failed) {
        st = failed_error(c, kind_name[kind]);
        goto out;
    }
    r->gen = x->gen++;
    for (int p = 0; p < n; p++) {
        if (p == c->rank)
            continue;
        hdr h = {.magic = MAGIC, .kind = (uint32_t)kind, .seq = r->gen, .size = size,
                 .dtype = (int32_t)dtype, .op = op, .bytes = part};
        const void *data = part ? (const unsigned char *)send + (per_peer_block(kind) ? (size_t)p * part : 0)
                                : NULL;
        FA4CP_TRY(send_msg(c, p, CH_COLL, &h, data, &r->sends[r->nsend]));
        r->nsend++;
    }
    *req = r;
    r = NULL;
out:
    if (r)
        free_req(r);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static void describe(char *buf, size_t len, int kind, uint64_t size, int dtype, int op)
{
    int bytes = kind == K_ALL_GATHER || kind == K_ALL_TO_ALL;
    snprintf(buf, len, "%llu %s%s%s", (unsigned long long)size, bytes ? "bytes" : "elements of ",
             bytes ? "" : fa4cp_dtype_name((fa4cp_dtype)dtype), op ? " (max)" : "");
}

static fa4cp_status coll_finish(fa4cp_comm *c, fa4cp_comm_req *r)
{
    mpi_impl *x = impl_of(c);
    const int n = c->size;
    fa4cp_status st = FA4CP_OK;
    inmsg **got = fa4cp_calloc((size_t)n, sizeof *got, "mpi collective parts");
    const void **parts = fa4cp_calloc((size_t)n, sizeof *parts, "mpi collective parts");
    if (!got || !parts) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    for (int p = 0; p < n; p++)
        if (p != c->rank)
            got[p] = take(flow(x, p, CH_COLL), r->gen);
    /* checked in rank order, like the local transport */
    for (int p = 0; p < n && st == FA4CP_OK; p++) {
        if (p == c->rank)
            continue;
        const hdr *h = &got[p]->h;
        if ((int)h->kind != r->kind)
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "mpi collective number %llu on comm %s: rank %d posted %s but rank "
                                 "%d posted %s",
                                 (unsigned long long)r->gen, x->label, c->rank, kind_name[r->kind], p,
                                 kind_name[h->kind]);
        else if (h->size != r->size || h->dtype != (int32_t)r->dtype || h->op != r->op) {
            char mine[64], theirs[64];
            describe(mine, sizeof mine, r->kind, r->size, (int)r->dtype, r->op);
            describe(theirs, sizeof theirs, (int)h->kind, h->size, h->dtype, h->op);
            st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                 "mpi %s number %llu on comm %s: rank %d posted %s but rank %d "
                                 "posted %s",
                                 kind_name[r->kind], (unsigned long long)r->gen, x->label, c->rank,
                                 mine, p, theirs);
        }
    }
    if (st != FA4CP_OK)
        goto out;
    size_t part = part_bytes(r->kind, r->size, r->dtype);
    for (int p = 0; p < n; p++)
        parts[p] = p == c->rank ? (const void *)r->own : (const void *)got[p]->data;
    unsigned char *o = r->recv;
    switch (r->kind) {
    case K_ALL_GATHER:
    case K_ALL_TO_ALL:
        for (int p = 0; p < n && part; p++)
            memcpy(o + (size_t)p * part, parts[p], part);
        break;
    case K_REDUCE_SCATTER:
        fa4cp_comm_reduce_parts(parts, n, r->size, r->dtype, FA4CP_REDUCE_SUM, o);
        break;
    case K_ALL_REDUCE: fa4cp_comm_reduce_parts(parts, n, r->size, r->dtype, r->op, o); break;
    default: break;
    }
out:
    if (got)
        for (int p = 0; p < n; p++)
            free_inmsg(got[p]);
    fa4cp_free(got);
    fa4cp_free(parts);
    return st;
}

static int coll_complete(fa4cp_comm *c, fa4cp_comm_req *r)
{
    mpi_impl *x = impl_of(c);
    for (int p = 0; p < c->size; p++)
        if (p != c->rank && !has(flow(x, p, CH_COLL), r->gen))
            return 0;
    for (int i = 0; i < r->nsend; i++)
        if (!r->sends[i]->done)
            return 0;
    return 1;
}

static fa4cp_status coll_timeout(fa4cp_comm *c, fa4cp_comm_req *r)
{
    mpi_impl *x = impl_of(c);
    char missing[128] = "", slow[128] = "", mm[128] = "", ms[128] = "";
    size_t at = 0, bt = 0, am = 0, bm = 0;
    for (int p = 0; p < c->size; p++)
        if (p != c->rank && !has(flow(x, p, CH_COLL), r->gen) && at + 16 < sizeof missing &&
            am + 16 < sizeof mm) {
            at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%d", at ? "," : "", p);
            am += (size_t)snprintf(mm + am, sizeof mm - am, "%s%d", am ? "," : "", x->members[p]);
        }
    for (int i = 0; i < r->nsend; i++)
        if (!r->sends[i]->done && bt + 16 < sizeof slow && bm + 16 < sizeof ms) {
            int p = r->sends[i]->peer;
            bt += (size_t)snprintf(slow + bt, sizeof slow - bt, "%s%d", bt ? "," : "", p);
            bm += (size_t)snprintf(ms + bm, sizeof ms - bm, "%s%d", bm ? "," : "", x->members[p]);
        }
    if (at)
        return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                               "mpi %s number %llu on comm %s: rank %d waited %.3g s and rank(s) %s "
                               "never posted it (MPI rank(s) %s)",
                               kind_name[r->kind], (unsigned long long)r->gen, x->label, c->rank,
                               c->timeout_s, missing, mm);
    return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                           "mpi %s number %llu on comm %s: rank %d waited %.3g s and rank(s) %s never "
                           "took its part (MPI rank(s) %s)",
                           kind_name[r->kind], (unsigned long long)r->gen, x->label, c->rank,
                           c->timeout_s, slow, ms);
}

static void say_waiting(fa4cp_comm *c, fa4cp_comm_req *r)
{
    mpi_impl *x = impl_of(c);
    char who[128] = "";
    size_t at = 0;
    if (r->is_coll) {
        for (int p = 0; p < c->size; p++)
            if (p != c->rank && !has(flow(x, p, CH_COLL), r->gen) && at + 24 < sizeof who)
                at += (size_t)snprintf(who + at, sizeof who - at, "%s%d (MPI rank %d)",
                                       at ? ", " : "", p, x->members[p]);
        set_waiting("%s number %llu of mpi comm %s, from rank(s) %s", kind_name[r->kind],
                    (unsigned long long)r->gen, x->label, at ? who : "(sends in flight)");
    } else {
        for (int i = 0; i < r->nrecv; i++)
            if (!r->recvs[i].done && at + 24 < sizeof who)
                at += (size_t)snprintf(who + at, sizeof who - at, "%s%d (MPI rank %d)",
                                       at ? ", " : "", r->recvs[i].peer, x->members[r->recvs[i].peer]);
        set_waiting("sendrecv of mpi comm %s, from rank(s) %s", x->label,
                    at ? who : "(sends in flight)");
    }
}

/* ------------------------------------------------------------------ wait, barrier, destroy */

static fa4cp_status mpi_wait(fa4cp_comm *c, fa4cp_comm_req *r, void *stream)
{
    FA4CP_UNUSED(stream);
    mpi_impl *x = impl_of(c);
    fa4cp_status st = FA4CP_OK, err = FA4CP_OK;
    double deadline = now_s() + c->timeout_s;
    int spins = 0, said = 0;
    pthread_mutex_lock(&mpi_lock);
    for (;;) {
        if (x->failed) {
            st = failed_error(c, r->is_coll ? kind_name[r->kind] : "sendrecv");
            break;
        }
        int moved = 0, complete = 0;
        st = progress(c, &moved);
        if (st != FA4CP_OK)
            break;
        if (r->is_coll)
            complete = coll_complete(c, r);
        else
            p2p_step(c, r, &err, &complete);
        if (complete) {
            st = r->is_coll ? coll_finish(c, r) : err;
            break;
        }
        if (now_s() > deadline) {
            st = r->is_coll ? coll_timeout(c, r) : p2p_timeout(c, r);
            break;
        }
        if (moved)
            spins = 0;
        else {
            if (!said && spins > 64) {
                say_waiting(c, r);
                said = 1;
            }
            idle(&spins);
        }
    }
    if (said)
        set_waiting("%s", "");
    free_req(r);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static fa4cp_status mpi_all_gather(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req)
{
    FA4CP_UNUSED(stream);
    return post_coll(c, K_ALL_GATHER, send, recv, bytes, FA4CP_FP32, 0, req);
}

static fa4cp_status mpi_reduce_scatter(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                       fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req)
{
    FA4CP_UNUSED(stream);
    return post_coll(c, K_REDUCE_SCATTER, send, recv, count, dtype, FA4CP_REDUCE_SUM, req);
}

static fa4cp_status mpi_all_to_all(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req)
{
    FA4CP_UNUSED(stream);
    return post_coll(c, K_ALL_TO_ALL, send, recv, bytes, FA4CP_FP32, 0, req);
}

static fa4cp_status mpi_all_reduce(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                   fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                                   fa4cp_comm_req **req)
{
    FA4CP_UNUSED(stream);
    return post_coll(c, K_ALL_REDUCE, send, recv, count, dtype, (int)op, req);
}

static fa4cp_status mpi_barrier(fa4cp_comm *c)
{
    fa4cp_comm_req *r = NULL;
    fa4cp_status st = post_coll(c, K_BARRIER, NULL, NULL, 0, FA4CP_FP32, 0, &r);
    if (st == FA4CP_OK)
        st = mpi_wait(c, r, NULL);
    return st;
}

static void mpi_destroy(fa4cp_comm *c)
{
    if (!c)
        return;
    mpi_impl *x = impl_of(c);
    if (x) {
        pthread_mutex_lock(&mpi_lock);
        /* sends still in flight: give the peers a moment to take them, then
         * leave them to MPI (their buffers are leaked, never freed under MPI) */
        double deadline = now_s() + (x->failed ? 0.0 : (c->timeout_s < 1.0 ? c->timeout_s : 1.0));
        int spins = 0;
        while (x->outs && !x->failed) {
            int moved = 0;
            if (progress(c, &moved) != FA4CP_OK || now_s() > deadline)
                break;
            if (!moved)
                idle(&spins);
        }
        int left = 0;
        for (outmsg *o = x->outs, *nx; o; o = nx) {
            nx = o->next;
            if (o->done) {
                fa4cp_free(o->buf);
                fa4cp_free(o->req);
                fa4cp_free(o);
            } else {
                left++;
            }
        }
        if (left)
            fa4cp_log(FA4CP_LOG_WARN,
                      "mpi comm %s rank %d: %d message(s) never taken by their peer at destroy",
                      x->label, c->rank, left);
        for (int i = 0; x->in && i < c->size * NCH; i++) {
            inflow *f = &x->in[i];
            if (f->active) { /* a receive MPI still writes: cancel it */
                MPI_Cancel(&f->req);
                MPI_Request_free(&f->req);
                f->first = NULL; /* may still be written: leaked */
                f->m = NULL;
            }
            fa4cp_free(f->first);
            free_inmsg(f->m);
            while (f->head) {
                inmsg *m = f->head;
                f->head = m->next;
                free_inmsg(m);
            }
        }
        if (x->comm != MPI_COMM_NULL)
            MPI_Comm_free(&x->comm);
        pthread_mutex_unlock(&mpi_lock);
        fa4cp_free(x->in);
        fa4cp_free(x->members);
        fa4cp_free(x->sent);
        fa4cp_free(x->recvd);
        fa4cp_free(x);
    }
    fa4cp_free(c);
}

static const fa4cp_comm_ops mpi_ops = {
    .sendrecv = mpi_sendrecv,
    .all_gather = mpi_all_gather,
    .reduce_scatter = mpi_reduce_scatter,
    .all_to_all = mpi_all_to_all,
    .all_reduce = mpi_all_reduce,
    .wait = mpi_wait,
    .barrier = mpi_barrier,
    .destroy = mpi_destroy,
};

fa4cp_status fa4cp_mpi_comm_new(MPI_Comm parent, int n, const int *members, double timeout_s,
                                const char *label, fa4cp_comm **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_comm *c = NULL;
    mpi_impl *x = NULL;
    MPI_Comm dup = MPI_COMM_NULL;
    char es[MPI_MAX_ERROR_STRING];
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "fa4cp_mpi_comm_new: out is NULL");
    *out = NULL;
    if (parent == MPI_COMM_NULL || n < 1 || !members || !(timeout_s > 0))
        return fa4cp_set_error(FA4CP_ERR_INVALID,
                               "fa4cp_mpi_comm_new: %s parent, %d members at %p, timeout %g",
                               parent == MPI_COMM_NULL ? "a null" : "a", n, (const void *)members,
                               timeout_s);
    int inited = 0, fin = 0, prank = -1, psize = 0, me = -1;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (!inited || fin)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "mpi comm %s: MPI is %s", label ? label : "?",
                               fin ? "finalized" : "not initialized");
    MPI_Comm_rank(parent, &prank);
    MPI_Comm_size(parent, &psize);
    for (int g = 0; g < n; g++) {
        if (members[g] < 0 || members[g] >= psize)
            return fa4cp_set_error(FA4CP_ERR_INVALID,
                                   "mpi comm %s: member %d is rank %d of a communicator of %d",
                                   label ? label : "?", g, members[g], psize);
        for (int h = 0; h < g; h++)
            if (members[h] == members[g])
                return fa4cp_set_error(FA4CP_ERR_INVALID,
                                       "mpi comm %s: rank %d is member %d and member %d",
                                       label ? label : "?", members[g], h, g);
        if (members[g] == prank)
            me = g;
    }

    /* every rank of the parent takes part in the duplication, bounded (by
     * at least 30 s: the processes reach it at their own pace, whatever
     * bound the comm's waits have) */
    double dup_s = timeout_s < 30.0 ? 30.0 : timeout_s;
    pthread_mutex_lock(&mpi_lock);
    MPI_Request rq;
    int rc = MPI_Comm_idup(parent, &dup, &rq);
    if (rc == MPI_SUCCESS) {
        double deadline = now_s() + dup_s;
        int flag = 0, spins = 0;
        while ((rc = MPI_Test(&rq, &flag, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !flag) {
            if (now_s() > deadline) {
                pthread_mutex_unlock(&mpi_lock);
                return fa4cp_set_error(FA4CP_ERR_TIMEOUT,
                                       "mpi comm %s: MPI_Comm_idup not done after %.3g s on MPI "
                                       "rank %d: a rank of the %d did not create its comms (dead, "
                                       "stuck or in another case)",
                                       label ? label : "?", dup_s, prank, psize);
            }
            idle(&spins);
        }
    }
    if (rc != MPI_SUCCESS) {
        pthread_mutex_unlock(&mpi_lock);
        return fa4cp_set_error(FA4CP_ERR_PEER, "mpi comm %s: MPI_Comm_idup: %s",
                               label ? label : "?", mpi_errstr(rc, es));
    }
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    pthread_mutex_unlock(&mpi_lock);
    if (me < 0) { /* not a member of this group */
        MPI_Comm_free(&dup);
        return FA4CP_OK;
    }
    c = fa4cp_calloc(1, sizeof *c, "mpi comm");
    x = fa4cp_calloc(1, sizeof *x, "mpi comm state");
    if (!c || !x)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "mpi comm %s: out of memory", label ? label : "?");
    c->impl = x;
    c->ops = &mpi_ops;
    c->name = "mpi";
    c->rank = me;
    c->size = n;
    c->device_memory = 0;
    c->timeout_s = timeout_s;
    x->comm = dup;
    dup = MPI_COMM_NULL;
    x->piece = piece_bytes();
    snprintf(x->label, sizeof x->label, "%s", label ? label : "?");
    x->members = fa4cp_malloc((size_t)n * sizeof *x->members, "mpi comm members");
    x->sent = fa4cp_calloc((size_t)n, sizeof *x->sent, "mpi comm counters");
    x->recvd = fa4cp_calloc((size_t)n, sizeof *x->recvd, "mpi comm counters");
    x->in = fa4cp_calloc((size_t)n * NCH, sizeof *x->in, "mpi comm receive state");
    if (!x->members || !x->sent || !x->recvd || !x->in)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "mpi comm %s: out of memory", x->label);
    memcpy(x->members, members, (size_t)n * sizeof *members);
    *out = c;
    c = NULL;
out:
    if (dup != MPI_COMM_NULL)
        MPI_Comm_free(&dup);
    if (c && x)
        mpi_destroy(c); /* frees x, and the comm */
    else if (st != FA4CP_OK) {
        fa4cp_free(c);
        fa4cp_free(x);
    }
    return st;
}

#endif /* HAVE_MPI */
