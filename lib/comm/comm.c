/* comm.c - the fa4cp_comm_* calls: checks common to every transport, then
 * dispatch through the vtable of comm.h.
 *
 * What is checked here (so no transport can hang on it): a NULL comm or
 * request pointer, a peer out of [0, size), a NULL buffer with a non-zero
 * size, a negative op count, a reduction dtype that is not a fa4cp_dtype.
 * What only the transport can see (sizes that disagree between ranks, a
 * partner that never posts) it reports itself, bounded by timeout_s.
 */
#include "comm.h"

#include <math.h>
#include <stdio.h>

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fa4cp_set_error(FA4CP_ERR_INVALID, __VA_ARGS__);                                \
    } while (0)

static fa4cp_status check_comm(const fa4cp_comm *c, fa4cp_comm_req **req, const char *op)
{
    NEED(c && c->ops, "%s: the comm is NULL", op);
    NEED(req, "%s on %s rank %d: the request pointer is NULL", op, c->name, c->rank);
    *req = NULL;
    return FA4CP_OK;
}

int fa4cp_comm_rank(const fa4cp_comm *c) { return c ? c->rank : -1; }
int fa4cp_comm_size(const fa4cp_comm *c) { return c ? c->size : 0; }
const char *fa4cp_comm_name(const fa4cp_comm *c) { return c && c->name ? c->name : "?"; }
int fa4cp_comm_device_memory(const fa4cp_comm *c) { return c ? c->device_memory : 0; }

fa4cp_status fa4cp_comm_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req)
{
    fa4cp_status st = check_comm(c, req, "sendrecv");
    if (st != FA4CP_OK)
        return st;
    NEED(nops >= 0 && (nops == 0 || ops), "sendrecv on %s rank %d: %d operations at %p", c->name,
         c->rank, nops, (const void *)ops);
    for (int i = 0; i < nops; i++) {
        NEED(ops[i].peer >= 0 && ops[i].peer < c->size,
             "sendrecv on %s rank %d: operation %d %s peer %d, outside the group of %d ranks",
             c->name, c->rank, i, ops[i].is_send ? "sends to" : "receives from", ops[i].peer,
             c->size);
        NEED(ops[i].bytes == 0 || ops[i].buf,
             "sendrecv on %s rank %d: operation %d has a NULL buffer of %zu bytes", c->name,
             c->rank, i, ops[i].bytes);
    }
    return c->ops->sendrecv(c, ops, nops, stream, req);
}

fa4cp_status fa4cp_comm_all_gather(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req)
{
    fa4cp_status st = check_comm(c, req, "all_gather");
    if (st != FA4CP_OK)
        return st;
    NEED(bytes == 0 || (send && recv), "all_gather on %s rank %d: NULL buffer for %zu bytes",
         c->name, c->rank, bytes);
    return c->ops->all_gather(c, send, recv, bytes, stream, req);
}

static fa4cp_status check_dtype(const fa4cp_comm *c, fa4cp_dtype dtype, const char *op)
{
    NEED(dtype >= FA4CP_BF16 && dtype <= FA4CP_FP64, "%s on %s rank %d: dtype %d is not a fa4cp_dtype",
         op, c->name, c->rank, (int)dtype);
    return FA4CP_OK;
}

fa4cp_status fa4cp_comm_reduce_scatter(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                       fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req)
{
    fa4cp_status st = check_comm(c, req, "reduce_scatter");
    if (st == FA4CP_OK)
        st = check_dtype(c, dtype, "reduce_scatter");
    if (st != FA4CP_OK)
        return st;
    NEED(count == 0 || (send && recv), "reduce_scatter on %s rank %d: NULL buffer for %zu elements",
         c->name, c->rank, count);
    return c->ops->reduce_scatter(c, send, recv, count, dtype, stream, req);
}

fa4cp_status fa4cp_comm_all_to_all(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req)
{
    fa4cp_status st = check_comm(c, req, "all_to_all");
    if (st != FA4CP_OK)
        return st;
    NEED(bytes == 0 || (send && recv), "all_to_all on %s rank %d: NULL buffer for %zu bytes",
         c->name, c->rank, bytes);
    return c->ops->all_to_all(c, send, recv, bytes, stream, req);
}

fa4cp_status fa4cp_comm_all_reduce(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                   fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                                   fa4cp_comm_req **req)
{
    fa4cp_status st = check_comm(c, req, "all_reduce");
    if (st == FA4CP_OK)
        st = check_dtype(c, dtype, "all_reduce");
    if (st != FA4CP_OK)
        return st;
    NEED(op == FA4CP_REDUCE_SUM || op == FA4CP_REDUCE_MAX,
         "all_reduce on %s rank %d: reduction %d is neither sum nor max", c->name, c->rank, (int)op);
    NEED(count == 0 || (send && recv), "all_reduce on %s rank %d: NULL buffer for %zu elements",
         c->name, c->rank, count);
    return c->ops->all_reduce(c, send, recv, count, dtype, op, stream, req);
}

fa4cp_status fa4cp_comm_wait(fa4cp_comm *c, fa4cp_comm_req *req, void *stream)
{
    if (!req)
        return FA4CP_OK;
    NEED(c && c->ops, "wait: the comm is NULL");
    return c->ops->wait(c, req, stream);
}

fa4cp_status fa4cp_comm_barrier(fa4cp_comm *c)
{
    NEED(c && c->ops, "barrier: the comm is NULL");
    return c->ops->barrier(c);
}

void fa4cp_comm_destroy(fa4cp_comm *c)
{
    if (c && c->ops && c->ops->destroy)
        c->ops->destroy(c);
}

void fa4cp_comm_reduce_parts(const void *const *parts, int n, size_t count, fa4cp_dtype dt, int op,
                             void *out)
{
    if (dt == FA4CP_FP32) {
        float *o = out;
        for (size_t i = 0; i < count; i++) {
            float acc = ((const float *)parts[0])[i];
            for (int p = 1; p < n; p++) {
                float v = ((const float *)parts[p])[i];
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            o[i] = acc;
        }
    } else if (dt == FA4CP_FP64) {
        double *o = out;
        for (size_t i = 0; i < count; i++) {
            double acc = ((const double *)parts[0])[i];
            for (int p = 1; p < n; p++) {
                double v = ((const double *)parts[p])[i];
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            o[i] = acc;
        }
    } else { /* 16-bit: accumulate in float, like a device reduction would */
        for (size_t i = 0; i < count; i++) {
            float acc = (float)fa4cp_load(dt, parts[0], i);
            for (int p = 1; p < n; p++) {
                float v = (float)fa4cp_load(dt, parts[p], i);
                acc = op == FA4CP_REDUCE_SUM ? acc + v : (v > acc || isnan(v) ? v : acc);
            }
            fa4cp_store(dt, out, i, acc);
        }
    }
}
