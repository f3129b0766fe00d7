/* comm.h - the transport vtable behind the fa4cp_comm_* calls.
 *
 * A transport fills a struct fa4cp_comm with its ops and private state;
 * lib/comm.c checks arguments common to every transport (peer range, NULL
 * buffers, request pointers) and dispatches.  Implementations: comm_local.c
 * (threads of one process), comm_nccl.c (NCCL communicators), comm_mpi.c
 * (processes on any nodes, host memory).
 */
#ifndef FA4CP_COMM_H
#define FA4CP_COMM_H

#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fa4cp_comm_ops {
    fa4cp_status (*sendrecv)(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                             fa4cp_comm_req **req);
    fa4cp_status (*all_gather)(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                               void *stream, fa4cp_comm_req **req);
    fa4cp_status (*reduce_scatter)(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                   fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req);
    fa4cp_status (*all_to_all)(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                               void *stream, fa4cp_comm_req **req);
    fa4cp_status (*all_reduce)(fa4cp_comm *c, const void *send, void *recv, size_t count,
                               fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                               fa4cp_comm_req **req);
    fa4cp_status (*wait)(fa4cp_comm *c, fa4cp_comm_req *req, void *stream);
    fa4cp_status (*barrier)(fa4cp_comm *c);
    void (*destroy)(fa4cp_comm *c);
} fa4cp_comm_ops;

/* out[i] = op over p = 0..n-1, in rank order, of parts[p][i] (count elements
 * of dtype): the arithmetic of the host transports' reductions (local and
 * mpi give the same bits); 16-bit types accumulate in float, like a device
 * reduction.  out may be one of the parts only if that part is parts[0]. */
void fa4cp_comm_reduce_parts(const void *const *parts, int n, size_t count, fa4cp_dtype dtype,
                             int op, void *out);

struct fa4cp_comm {
    const fa4cp_comm_ops *ops;
    const char *name;  /* "local", "nccl", "mpi" */
    int rank, size;
    int device_memory; /* buffers are device pointers */
    double timeout_s;  /* bound of every blocking wait */
    void *impl;        /* the transport's own state */
};

#ifdef __cplusplus
}
#endif

#endif
