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

/* Fill the rank's device tensor (Q/DOUT: heads, K/V: kv_heads; Q/K rows
 * head_dim wide, V/DOUT head_dim_v) from the device copy of its map (NULL:
 * the whole batch, row = logical token); queued on stream.  Errors (CUDA) with the detail
 * in fa4cp_last_error(). */
fa4cp_status run_gen_fill_gpu(const fa4cp_case *c, int tensor, const int64_t *dmap, int64_t rows, void *ddst,
                              void *stream);

/* dD [heads, rows] double = rowsum(dout * out) per local row (0: padding);
 * dout and out rows are head_dim_v wide. */
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

/* The GPU reference's buffers (device, and pinned host for the rows going in
 * and the errors coming back), kept by their owner across cases so that a
 * check allocates nothing once they are big enough: grow-only, on the GPU
 * of their first use (moved when the current GPU differs), freed by
 * run_ref_ws_release.  Zero-initialise.  Slots: */
enum {
    RUN_WS_ROWS, /* the rows of a check */
    RUN_WS_ERR,  /* their errors */
    RUN_WS_REF,  /* the reference values asked for (tests) */
    RUN_WS_SRC,  /* the whole batch's inputs, generated once (small cases) */
    RUN_WS_LSE,  /* the CP group's gathered lse */
    RUN_WS_D,    /* this rank's D = rowsum(dout * out) */
    RUN_WS_GD,   /* the group's gathered D */
    RUN_WS_NDEV
};
enum { RUN_WS_PIN_ROWS, RUN_WS_PIN_ERR, RUN_WS_NPIN };
typedef struct run_ref_ws {
    int held, device;
    void *dev[RUN_WS_NDEV], *pin[RUN_WS_NPIN];
    size_t dev_cap[RUN_WS_NDEV], pin_cap[RUN_WS_NPIN];
} run_ref_ws;

/* Slot `slot` of at least `bytes` on the current GPU (NULL with the detail
 * in fa4cp_last_error when it cannot grow). */
void *run_ref_ws_dev(run_ref_ws *ws, int slot, size_t bytes);
/* Bytes held (device and pinned host). */
size_t run_ref_ws_bytes(const run_ref_ws *ws);
/* Free everything (on the GPU the buffers live on); the ws can be used again. */
void run_ref_ws_release(run_ref_ws *ws);
/* Free the device slots only (the pinned host ones stay). */
void run_ref_ws_release_dev(run_ref_ws *ws);

/* One check on the GPU: nq query rows (out, lse and, with a backward, dq)
 * and nk key rows (dk, dv) in one launch, compared with the rank's device
 * tensors when given, then one wait for the stream. */
typedef struct run_ref_job {
    const run_ref_row *qrows, *krows;
    int nq, nk;
    int64_t local_rows; /* rows of each rank's tensors */
    /* the rank's device tensors (NULL: that comparison is skipped): out
     * [rows, heads, dv], lse [heads, rows], dq [rows, heads, d], dk [rows,
     * kv_heads, d], dv [rows, kv_heads, dv] */
    const void *out, *lse, *dq, *dk, *dv;
    /* key rows: the CP group's gathered lse [cp, heads, rows] and D (device) */
    const void *glse;
    const double *gD;
    /* 1: generate the whole batch's inputs once and read them (faster when
     * run_ref_pregen_worth says so; falls back to regenerating rows when
     * the GPU has no room); 0: every block regenerates its rows */
    int pregen;
    /* host results, each optional: errors [nq] / [nk]; the reference:
     * out [nq][dv], lse [nq], dq [nq][d], dk [nk][d], dv [nk][dv] */
    run_ref_err *qerr, *kerr;
    double *ref_out, *ref_lse, *ref_dq, *ref_dk, *ref_dv;
} run_ref_job;
fa4cp_status run_ref_gpu(const fa4cp_case *c, run_ref_ws *ws, const run_ref_job *j, void *stream);

/* Is generating the whole batch once (at most 256 MiB) cheaper than
 * regenerating the rows that nq query rows and nk key rows read? */
int run_ref_pregen_worth(const fa4cp_case *c, int64_t nq, int64_t nk);

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
