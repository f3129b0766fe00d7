/* cp_exec.h - the CP executor's state and helpers, shared by the executor
 * (cp_exec.c) and its shapes (cp_exec_p2p.c, cp_exec_ag.c, cp_exec_a2a.c).
 */
#ifndef FA4CP_CP_EXEC_H
#define FA4CP_CP_EXEC_H

#include "cp_internal.h"

typedef struct exec {
    fa4cp_cp *cp;
    const fa4cp_cp_config *cfg;
    const cp_ops *ops;
    fa4cp_comm *comm;
    const fa4cp_cp_plan *plan;
    void *stream;
    void *cs; /* communication stream: the cp handle's side stream, or `stream` */
    int timed; /* record the step events */
    int n, r, B;
    int mx_g, mx_l, mx_h; /* longest padded global, local and half sequence */
    int H, Hk, D, Dv;   /* Dv: head dim of v, out, dout, dv */
    fa4cp_dtype dt, ad; /* storage, accumulator (= lse) */
    size_t es, as;      /* their sizes */
    size_t rq, rk;      /* elements of a q (dq) row, a k (dk) row: D wide */
    size_t ro, rv;      /* elements of an out (dout) row, a v (dv) row: Dv wide */
    int64_t T, Th, G;   /* local rows, half rows, global rows */
    /* host */
    int32_t *cu, *used;        /* global padded offsets [B+1], real lengths [B] */
    int32_t *lcu, *hcu;        /* local and half offsets [B+1] */
    int32_t *lused, *h0, *h1;  /* [n][B]: local real rows of each rank, whole / chunk / chunk */
    /* ops memory copies for the attention calls */
    int32_t *d_cu, *d_used, *d_lcu, *d_hcu, *d_lused, *d_h0, *d_h1;
    void **buf; /* ops memory to free at the end */
    int nbuf, capbuf;
    void **host; /* host arrays to free at the end */
    int nhost, caphost;
    /* the program of this call (the plan's fwd_ops or bwd_ops) and where it is */
    const fa4cp_cp_instr *prog;
    int nprog, pc;
    int have_dlse; /* the optional operations on dlse run */
    size_t allocated; /* bytes of ops buffers so far (the workspace) */
} exec;


#define NOMEM_IF(p)                                                                                \
    do {                                                                                           \
        if (!(p)) {                                                                                \
            st = FA4CP_ERR_NOMEM;                                                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define U8(p) ((unsigned char *)(p))

/* A row map in ops memory (see cp_ops.h). */
typedef struct map {
    cp_pair *p; /* ops memory */
    int64_t n;
} map;

/* memory: ops buffers and host arrays freed together at the end of a call */
void *cpx_xalloc(exec *x, size_t bytes, const char *what);
void *cpx_hmalloc(exec *x, size_t bytes, const char *what);
void *cpx_upload(exec *x, const void *host, size_t bytes, const char *what);
void cpx_release(exec *x);

/* row maps (built on the host, uploaded): see cp_exec.c */
fa4cp_status cpx_map_rows(exec *x, int rank, int seq, int half, int real, int to_half, map *m);
fa4cp_status cpx_map_all(exec *x, int64_t rows, map *m);
fa4cp_status cpx_map_ranks(exec *x, int64_t stride, int to_seq, int with_second, map *m);
fa4cp_status cpx_map_ranks_units(exec *x, int64_t block, int64_t offset, int64_t row_units, map *m);
fa4cp_status cpx_map_heads(exec *x, int to_blocks, int real, map *m);

/* the sizes of a config on a group of n ranks (heads, dims, dtypes, row sizes) */
void cpx_dims(exec *x, const fa4cp_cp_config *c, int n);
fa4cp_status cpx_setup(exec *x, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd);
fa4cp_attn_args cpx_base_args(const exec *x);
fa4cp_status cpx_attn(const exec *x, const fa4cp_attn_args *a0, int bwd);
/* complete a request: the given stream (wait_on) or the call stream (wait_req) waits for it */
fa4cp_status cpx_wait_on(exec *x, fa4cp_comm_req **req, void *stream);
fa4cp_status cpx_wait_req(exec *x, fa4cp_comm_req **req);
/* the side stream forks from / joins the call stream (no-ops without one) */
fa4cp_status cpx_fork_comm(exec *x);
fa4cp_status cpx_join_comm(exec *x);
/* step events and notes of timed calls */
fa4cp_status cpx_stamp(exec *x, int kind, int step, void *stream);
void cpx_note_step(exec *x, int step, int comm);
/* the bytes this rank sends in step's exchange (timed calls only) */
void cpx_note_bytes(exec *x, int step, size_t bytes);

/* The program: the executor runs the plan's operations in order.  peek:
 * the next one to run (NULL at the end; optional operations the call does
 * not need are skipped); next: take it, which must be `op` on `tensors`
 * (FA4CP_ERR_INTERNAL naming both otherwise), and record it in the trace. */
const fa4cp_cp_instr *cpx_peek(exec *x);
const fa4cp_cp_instr *cpx_next(exec *x, fa4cp_cp_op op, unsigned tensors);
#define CPX_NEXT(in, op, tensors)                                                                  \
    do {                                                                                           \
        if (!((in) = cpx_next(x, (op), (tensors)))) {                                              \
            st = FA4CP_ERR_INTERNAL;                                                               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* the shapes */
fa4cp_status cpx_p2p_fwd(exec *x, const fa4cp_cp_args *a);
fa4cp_status cpx_p2p_bwd(exec *x, const fa4cp_cp_args *a);
fa4cp_status cpx_ag_fwd(exec *x, const fa4cp_cp_args *a);
fa4cp_status cpx_ag_bwd(exec *x, const fa4cp_cp_args *a);
fa4cp_status cpx_a2a_run(exec *x, const fa4cp_cp_args *a, int bwd);
/* the bytes each allocates in one call (x: the sizes only) */
size_t cpx_p2p_workspace(const exec *x, int bwd);
size_t cpx_ag_workspace(const exec *x, int bwd);
size_t cpx_a2a_workspace(const exec *x, int bwd);

#endif
