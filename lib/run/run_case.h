/* run_case.h - what one rank's run of a case shares between run_exec.c
 * (the run), run_verify.c (the checks) and run_stage.c (the GPU staging). */
#ifndef FA4CP_RUN_CASE_H
#define FA4CP_RUN_CASE_H

#include "run_exec.h"

/* the rank's host tensors (the source of the inputs, the target of the
 * checks; on the cuda backend only the outputs of a full check too big for
 * the GPU reference) */
typedef struct bufs {
    int64_t rows;
    int64_t *map; /* [rows] logical token of each local row (-1: padding) */
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    double *D; /* [h, rows] */
} bufs;

/* backend cuda: the rank's tensors on its GPU (generated there: no host
 * copy of the inputs), its row map, its stream and the events that time the
 * calls; the GPU check reads them in place. */
typedef struct devbufs {
    int on;
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    int64_t *map;
    void *stream, *e0, *e1;
    /* what the rank keeps on its GPU from case to case (run_stage.c): the
     * buffers above, the stream, the events and the GPU reference's
     * workspace (ws, a run_ref_ws) */
    struct rank_keep *keep;
    struct run_ref_ws *ws;
} devbufs;


/* ---- run_verify.c: r->err from a sample of rows / every row; gather: the
 * group's buffers (send [bytes] each) on every rank */
fa4cp_status run_verify_sampled(const fa4cp_case *c, int cp_rank, int threads, const bufs *b, const void *glse,
                                const double *gD, rank_result *r);
fa4cp_status run_verify_full(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, int threads, const bufs *b,
                             const void *glse, rank_result *r);
/* backend cuda: the sampled rows (or, full, every real row and head) against
 * the GPU reference, in place on the rank's device tensors */
fa4cp_status run_verify_gpu(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b, devbufs *dv,
                            int full, rank_result *r);
/* the sampled rows of a rank (salt picks the sample; map: its row map),
 * their sequence and kv head */
int run_pick_rows(const fa4cp_case *c, const int64_t *map, int cp_rank, int salt, int64_t *out, int want);
void run_seq_of_token(const fa4cp_case *c, int64_t t, int *seq, int64_t *off);
int run_sample_kv_head(const fa4cp_case *c, int cp_rank, int seq, int salt);
fa4cp_status run_gather(fa4cp_comm *comm, const void *send, size_t bytes, void **recv, rank_result *r);

/* ---- run_stage.c: the device copies (FA4CP_ERR_UNSUPPORTED without CUDA) */
/* q, dq: rows x heads x head_dim; k, dk: rows x kv_heads x head_dim; out,
 * dout: rows x heads x head_dim_v; v, dv: rows x kv_heads x head_dim_v.
 * The buffers, stream and events are the rank's, kept from one case to the
 * next while they stay small (RUN_KEEP_BYTES): a case of small tensors
 * allocates nothing on the GPU once its predecessors had the same sizes. */
fa4cp_status run_dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                          rank_result *r);
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, rank_result *r);
void run_dev_close(devbufs *d);
/* the end of the session: free what the ranks kept (run_session_close) */
void run_dev_release_all(void);
/* the rank's inputs generated on its GPU (the values of gen.c) */
fa4cp_status run_dev_generate(devbufs *d, const fa4cp_case *c, const bufs *b, rank_result *r);
/* test only: one element of a device tensor moved by delta */
fa4cp_status run_dev_poke(devbufs *d, fa4cp_dtype dt, void *base, size_t i, double delta, rank_result *r);
fa4cp_status run_dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                           rank_result *r);

#endif
