/* run_case.h - what one rank's run of a case shares between run_exec.c
 * (the run), run_verify.c (the checks) and run_stage.c (the GPU staging). */
#ifndef FA4CP_RUN_CASE_H
#define FA4CP_RUN_CASE_H

#include "run_exec.h"

/* the rank's host tensors (the source of the inputs, the target of the checks) */
typedef struct bufs {
    int64_t rows;
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    double *D; /* [h, rows] */
} bufs;

/* backend cuda: the rank's device copies of its tensors, its stream and the
 * events that time the calls (the host buffers stay the source of the
 * inputs and the target of the verification). */
typedef struct devbufs {
    int on;
    void *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    void *stream, *e0, *e1;
} devbufs;


/* ---- run_verify.c: r->err from a sample of rows / every row; gather: the
 * group's buffers (send [bytes] each) on every rank */
fa4cp_status run_verify_sampled(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                                const void *glse, const double *gD, rank_result *r);
fa4cp_status run_verify_full(const fa4cp_case *c, fa4cp_comm *comm, int cp_rank, const bufs *b,
                             const void *glse, rank_result *r);
/* the sampled rows of a rank (salt picks the sample), their sequence and kv head */
int run_pick_rows(const fa4cp_case *c, int cp_rank, int salt, int64_t *out, int want);
void run_seq_of_token(const fa4cp_case *c, int64_t t, int *seq, int64_t *off);
int run_sample_kv_head(const fa4cp_case *c, int cp_rank, int seq, int salt);
fa4cp_status run_gather(fa4cp_comm *comm, const void *send, size_t bytes, void **recv, rank_result *r);

/* ---- run_stage.c: the device copies (FA4CP_ERR_UNSUPPORTED without CUDA) */
fa4cp_status run_dev_open(devbufs *d, const fa4cp_case *c, int world_rank, int device, const bufs *b,
                          size_t qn, size_t kn, size_t es, size_t les, rank_result *r);
fa4cp_status run_dev_fetch(devbufs *d, const fa4cp_case *c, bufs *b, size_t qn, size_t kn, size_t es,
                           size_t les, rank_result *r);
void run_dev_close(devbufs *d);
fa4cp_status run_dev_timed(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                           rank_result *r);

#endif
