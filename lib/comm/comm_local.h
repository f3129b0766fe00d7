/* comm_local.h - the "local" transport: ranks are threads of one process.
 * comm_local.c has the host operations and the world, comm_local_dev.c the
 * device ones, comm_local_core.c what both use.
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
#ifndef FA4CP_COMM_LOCAL_H
#define FA4CP_COMM_LOCAL_H

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
extern const char *const cl_kind_name[]; /* by K_* */

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


static inline endpoint *ep_of(fa4cp_comm *c) { return (endpoint *)c->impl; }

/* comm_local_core.c */
void cl_deadline_of(double timeout_s, struct timespec *t);
/* wait on the world's condition (its mutex held); 0, or ETIMEDOUT past the deadline */
int cl_wait_until(fa4cp_local_world *w, const struct timespec *deadline);
fa4cp_comm_req *cl_new_req(const char *what);
fa4cp_status cl_take_wait(fa4cp_comm *c, const pending *p, const struct timespec *deadline, msg **out);
size_t cl_contrib_bytes(int kind, size_t size, fa4cp_dtype dtype, int n);
/* Post this rank's part of collective r (its data, or device buffer and
 * events, in mine): the record of its generation, made from *fresh when it
 * is the first; the others are woken. */
void cl_join_coll(fa4cp_comm *c, fa4cp_comm_req *r, int kind, void *recv, size_t size, fa4cp_dtype dtype,
                  int op, coll_rec **fresh, const contrib *mine);
void cl_free_rec(coll_rec *rec, int n);
void cl_finish_rec(fa4cp_local_world *w, coll_rec *rec);
fa4cp_status cl_arrive_all(fa4cp_comm *c, const fa4cp_comm_req *r, const struct timespec *deadline,
                           coll_rec **out);

#ifdef HAVE_CUDA
/* comm_local_core.c: events and messages of device memory */
fa4cp_status cl_new_event(void **ev, int record, void *stream);
void cl_drop_event(void *ev);
void cl_msg_unref(msg *m);
/* comm_local_dev.c: the device operations */
fa4cp_status cl_dev_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                             fa4cp_comm_req **req);
fa4cp_status cl_dev_wait_p2p(fa4cp_comm *c, fa4cp_comm_req *r, void *stream);
fa4cp_status cl_dev_post_coll(fa4cp_comm *c, int kind, const void *send, void *recv, size_t size,
                              fa4cp_dtype dtype, int op, void *stream, fa4cp_comm_req **req);
fa4cp_status cl_dev_wait_coll(fa4cp_comm *c, fa4cp_comm_req *r, void *stream);
#endif

#endif
