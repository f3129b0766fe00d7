/* cp_case.h - one context-parallel test case, shared by tests/test_cp.c (cpu
 * backend) and tests/test_cp_gpu.c (cuda backend): the case, its global
 * tensors, the ranks as threads (shard, run, unshard) and the comparison of
 * the CP results with a reference set on real rows and padding rows.
 */
#ifndef FA4CP_TEST_CP_CASE_H
#define FA4CP_TEST_CP_CASE_H

#include "fa4cp.h"
#include "testutil.h"

#include <stddef.h>
#include <stdint.h>

#define CP_MAXB 6
#define CP_MAXRANKS 8

typedef struct cp_tcase {
    fa4cp_cp_config cfg;
    int cp, B, seqlen;
    int pad; /* THD: seqused given, padding between sequences */
    int with_dlse;
    int32_t cu[CP_MAXB + 1], used[CP_MAXB];
} cp_tcase;

/* A case of cp ranks over comm with the config's defaults, no sequences yet. */
cp_tcase cp_case(int cp, fa4cp_cp_comm_type comm, fa4cp_backend backend);

static inline int64_t cp_G(const cp_tcase *c) { return c->cu[c->B]; }
static inline int cp_dv(const cp_tcase *c) { return c->cfg.head_dim_v ? c->cfg.head_dim_v : c->cfg.head_dim; }
/* elements per row: q, dq [rows, heads, d]; k, dk [rows, kv_heads, d];
 * out, dout [rows, heads, dv]; v, dv [rows, kv_heads, dv] */
static inline size_t cp_rowq(const cp_tcase *c) { return (size_t)c->cfg.heads * (size_t)c->cfg.head_dim; }
static inline size_t cp_rowk(const cp_tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)c->cfg.head_dim; }
static inline size_t cp_rowo(const cp_tcase *c) { return (size_t)c->cfg.heads * (size_t)cp_dv(c); }
static inline size_t cp_rowv(const cp_tcase *c) { return (size_t)c->cfg.kv_heads * (size_t)cp_dv(c); }

void cp_describe(const cp_tcase *c, char *buf, size_t n);
/* Is global row `row` a real token (not padding between sequences)? */
int cp_is_real(const cp_tcase *c, int64_t row);
/* Fresh lengths (0 included) up to maxlen: BSHD 1-2 sequences, THD 1-3,
 * each a multiple of 2*cp (with c->pad: padded up to one, seqused the real
 * length). */
void cp_fill_lengths(test_rng *rng, cp_tcase *c, int maxlen);

/* The ten tensors of a forward + backward call: CP_NIN inputs (q..dlse),
 * then the results (out..dv). */
enum { CP_NIN = 5, CP_NBUF = 10 };
typedef struct cp_bufs {
    void *q, *k, *v, *dout, *dlse, *out, *lse, *dq, *dk, *dv;
} cp_bufs;

/* Global (unsharded) tensors: random inputs in in.q..in.dlse and up to three
 * result sets (out..dv; out and lse poisoned): set[0] the cpu reference, then
 * what the test adds (the non-CP cuda call), and the last one the CP result. */
typedef struct cp_global {
    cp_bufs in;
    cp_bufs set[3];
    int nsets;
} cp_global;

/* Bytes of the ten tensors (in the order of cp_bufs) of rows tokens. */
void cp_sizes(const cp_tcase *c, int64_t rows, size_t sz[CP_NBUF]);

void cp_global_alloc(test_rng *rng, const cp_tcase *c, cp_global *g, int nsets);
void cp_global_free(cp_global *g);
/* The raw call of the whole batch on g's inputs, results into set[s] (the
 * pointers are host pointers: the caller swaps them for device copies). */
void cp_attn_args(const cp_tcase *c, const cp_global *g, int s, fa4cp_attn_args *a);
/* The CP call of a rank on its buffers b (host or device). */
void cp_cp_args(const cp_tcase *c, const cp_bufs *b, fa4cp_cp_args *a);

/* One rank of a run: rank-local host tensors (the shard of g; outputs
 * poisoned), filled in by body(), which also sets st (and err on failure). */
typedef struct cp_rank {
    const cp_tcase *c;
    fa4cp_comm *comm;
    int rank, dev;
    cp_bufs h;
    fa4cp_status st;
    char err[600];
} cp_rank;

/* Shard g over the ranks, run body(&rank) in a thread per rank with
 * comms[r], unshard each rank's results into g's last set.  Returns 1, or 0
 * with the first failing rank's error in err. */
int cp_run_ranks(const cp_tcase *c, cp_global *g, fa4cp_comm *const *comms, int ngpus, void *(*body)(void *),
                 char *err, size_t errn);

/* Compare g's CP results (its last set) with set[ref] on the real rows
 * (relative norm error <= tol, no NaN/Inf, fully masked rows lse -inf) and
 * the padding rows (out/lse still poison, dq/dk/dv exactly 0); diag lines
 * for every failure; *worst takes the largest error / tol.  1 = all good. */
int cp_check(const cp_tcase *c, const char *desc, const char *refname, const cp_global *g, int ref, double tol,
             double *worst);

#endif
