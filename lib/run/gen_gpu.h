/* gen_gpu.h - the runner's GPU generator and the GPU reference of the check
 * (host side of kernels/gen.cu and kernels/ref.cu; private to lib/run).
 *
 * The GPU generator computes exactly the values of gen.c (both use
 * kernels/gen_math.h), so a rank's inputs never exist on the host, and the
 * host can still regenerate any row.  The GPU reference is the float64 row
 * reference of gen.c (fa4cp_ref_query_rows / fa4cp_ref_key_rows) as a
 * simple CUDA kernel, one row per block; the CPU reference stays the oracle
 * (tests compare the two). */
#ifndef FA4CP_RUN_GEN_GPU_H
#define FA4CP_RUN_GEN_GPU_H

#include "fa4cp.h"

/* Logical token of every local row of CP rank `rank` (-1: padding), the
 * padded_tokens / cp entries of map; the same as fa4cp_case_local_token row
 * by row, in one pass.  Host only, no CUDA. */
void run_gen_map(const fa4cp_case *c, int rank, int64_t *map);

/* Threads for host work of one rank: the online CPUs shared by `ranks`
 * ranks of this process (at least 1). */
int run_host_threads(int ranks);

/* 1 when this build has the GPU generator and reference. */
int run_gen_gpu_built(void);

/* Fill the rank's device tensor (Q/DOUT: heads, K/V: kv_heads) from the
 * device copy of its map; queued on stream.  Errors (CUDA) with the detail
 * in fa4cp_last_error(). */
fa4cp_status run_gen_fill_gpu(const fa4cp_case *c, int tensor, const int64_t *dmap, int64_t rows, void *ddst,
                              void *stream);

/* dD [heads, rows] double = rowsum(dout * out) per local row (0: padding). */
fa4cp_status run_gen_rowdot_gpu(const fa4cp_case *c, const void *ddout, const void *dout_, const int64_t *dmap,
                                int64_t rows, double *dD, void *stream);

/* One row for the GPU reference: position pos of sequence seq, head (query
 * head for query rows, kv head for key rows), and its local row in this
 * rank's tensors (-1: compute the reference only). */
typedef struct run_ref_row {
    int seq;
    int head;
    int64_t pos;
    int64_t local;
} run_ref_row;

/* Per-row errors of the GPU reference against the rank's device tensors:
 * d0/r0 out (dk) squared difference and reference, d1/r1 dq (dv), lse: the
 * relative lse error (query rows). */
typedef struct run_ref_err {
    double d0, r0, d1, r1, lse;
} run_ref_err;

/* Query rows: out, lse (and dq when the case has a backward) for each row;
 * compared with the device tensors dout_ [rows, heads, d], dlse [heads,
 * rows] and ddq when they are not NULL (err[n] gets the sums).  ref_out,
 * ref_dq [n][d] and ref_lse [n] (host, optional) get the reference.
 * Synchronous (waits for stream). */
fa4cp_status run_ref_query_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dout_,
                               const void *dlse, const void *ddq, int64_t local_rows, double *ref_out,
                               double *ref_lse, double *ref_dq, run_ref_err *err, void *stream);

/* Key rows: dk, dv from the CP group's gathered lse [cp, heads, rows] and D
 * [cp, heads, rows] (device; rows = local_rows); compared with ddk, ddv
 * [rows, kv_heads, d] when not NULL. */
fa4cp_status run_ref_key_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dglse,
                             const double *dgD, const void *ddk, const void *ddv, int64_t local_rows,
                             double *ref_dk, double *ref_dv, run_ref_err *err, void *stream);

/* check: full on the cuda backend: 1 when the GPU reference of every row
 * and head of a rank (modelled as run_estimate_case does) takes at most a
 * minute and its row lists stay small; else the host reference runs. */
int run_gpu_full_fits(const fa4cp_case *c);

/* --explain: a model of the time a rank spends generating its inputs and
 * checking its results (the rates are measured on an H200 and on one host
 * core; docs/performance.md).  check_s is 0 without a check. */
typedef struct run_estimate {
    double gen_s, check_s;
    const char *gen_where, *check_where;
} run_estimate;
void run_estimate_case(const fa4cp_case *c, int host_threads, run_estimate *e);

#endif
