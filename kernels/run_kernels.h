/* run_kernels.h - extern "C" launchers of the runner's GPU kernels: the input
 * generator (kernels/gen.cu) and the check's reference (kernels/ref.cu).
 *
 * Plain C, no fa4cp types: dtype codes are fa4cp_dtype values (0 bf16,
 * 1 fp16, 2 fp32, 3 fp64); every pointer named d* is device memory; every
 * launcher queues its work on `stream` (a cudaStream_t) and returns the
 * cudaError_t of the launch as int (0 = success).  The callers (lib/run)
 * have checked the arguments.  Nothing here shares code with the attention
 * kernels (kernels/attn_*.cu): the reference must stay independent of what
 * it checks. */
#ifndef FA4CP_RUN_KERNELS_H
#define FA4CP_RUN_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- generator (gen_math.h on the GPU) */

/* dst [rows, heads, d] in dtype: row l gets the logical token dmap[l]
 * (-1: a padding row, all zeros). */
int fa4cp_kgen_fill(int dtype, void *dst, uint64_t seed, int tensor, const int64_t *dmap, int64_t rows,
                    int heads, int head_dim, void *stream);

/* One element per point (tests): out[i] = the value of (seed[i], tensor[i],
 * token[i], head[i], dim[i]) rounded to dtype[i], as a double. */
typedef struct fa4cp_kgen_point {
    uint64_t seed;
    int64_t token;
    int tensor, head, dim, dtype;
} fa4cp_kgen_point;
int fa4cp_kgen_points(const fa4cp_kgen_point *dpts, int64_t n, double *dout, void *stream);

/* dD [heads, rows] (double) = rowsum(dout * out) of each local row; 0 for
 * padding rows (dmap[l] < 0). */
int fa4cp_kgen_rowdot(int dtype, const void *ddout, const void *dout_, const int64_t *dmap, int64_t rows,
                      int heads, int head_dim, double *dD, void *stream);

/* ---- reference (one query row or one key row per block, fp64) */

typedef struct fa4cp_kref_case {
    int dtype;           /* storage dtype of inputs and outputs */
    int lse_fp64;        /* lse tensors are double (else float) */
    uint64_t seed;
    int heads, kv_heads, head_dim;
    int causal, window_left, window_right; /* -1 = unbounded */
    double scale;
    int backward;        /* dq (query rows) */
    int cp;              /* key rows: CP size of the gathered lse / D */
    int64_t rows;        /* local rows of one rank (padded_tokens / cp) */
} fa4cp_kref_case;

/* One sampled row: query row (head = query head) or key row (head = kv head). */
typedef struct fa4cp_kref_row {
    int64_t base;     /* logical token where its sequence starts */
    int64_t len;      /* real tokens of the sequence */
    int64_t pos;      /* the row's position in the sequence */
    int64_t local;    /* its local row in this rank's tensors (-1: no comparison) */
    int64_t pstart;   /* key rows: the sequence's first padded (global) row */
    int64_t plen;     /* key rows: its padded length */
    int head;
    int pad_;
} fa4cp_kref_row;

/* Per-row results: the reference (optional, NULL to skip) and the error sums
 * against the rank's tensors (optional): err [n][FA4CP_KREF_NERR]. */
enum {
    FA4CP_KREF_D0 = 0, /* query: out diff^2, key: dk diff^2 */
    FA4CP_KREF_R0,     /* ... ref^2 */
    FA4CP_KREF_D1,     /* query: dq diff^2, key: dv diff^2 */
    FA4CP_KREF_R1,
    FA4CP_KREF_LSE,    /* query: |lse diff| / max(1, |lse|) */
    FA4CP_KREF_NERR = 8
};

/* Query rows: out, lse (and dq) from regenerated q, k, v (and dout) rows;
 * compared with dout_ [rows, heads, d], dlse [heads, rows], ddq.
 * ref_out, ref_dq [n][d], ref_lse [n]. */
int fa4cp_kref_query(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int n, const void *dout_,
                     const void *dlse, const void *ddq, double *ref_out, double *ref_lse, double *ref_dq,
                     double *err, void *stream);

/* Key rows: dk, dv from regenerated rows and the gathered lse [cp, heads,
 * rows] (float or double) and D [cp, heads, rows] (double); compared with
 * ddk, ddv [rows, kv_heads, d].  ref_dk, ref_dv [n][d]. */
int fa4cp_kref_key(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int n, const void *glse,
                   const double *gD, const void *ddk, const void *ddv, double *ref_dk, double *ref_dv,
                   double *err, void *stream);

#ifdef __cplusplus
}
#endif

#endif
