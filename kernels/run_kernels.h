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
 * (-1: a padding row, all zeros); dmap NULL: row l is token l (the whole
 * batch in logical order, for the reference's pre-generated inputs).  d is
 * the width of the tensor's rows: head_dim for Q and K, head_dim_v for V
 * and dO. */
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
 * padding rows (dmap[l] < 0).  head_dim: the width of dout and out rows
 * (head_dim_v). */
int fa4cp_kgen_rowdot(int dtype, const void *ddout, const void *dout_, const int64_t *dmap, int64_t rows,
                      int heads, int head_dim, double *dD, void *stream);

/* ---- reference (one query row or one key row per block, fp64) */

/* the widest head_dim and head_dim_v the reference takes (the cuda
 * attention backend's widest) */
#define FA4CP_KREF_MAX_DIM 256

typedef struct fa4cp_kref_case {
    int dtype;           /* storage dtype of inputs and outputs */
    int lse_fp64;        /* lse tensors are double (else float) */
    uint64_t seed;
    int heads, kv_heads, head_dim;
    int head_dim_v;      /* of v, dout, out and dv (q, k, dq, dk: head_dim) */
    int causal, window_left, window_right; /* -1 = unbounded */
    double scale;
    int backward;        /* dq (query rows) */
    int cp;              /* key rows: CP size of the gathered lse / D */
    int64_t rows;        /* local rows of one rank (padded_tokens / cp) */
    /* Optional inputs generated beforehand (fa4cp_kgen_fill with no map):
     * Q, K, V, dO of the whole batch in logical-token order, [tokens, heads
     * (K, V: kv_heads), width] in dtype.  Read when every tensor the rows
     * read is there (dO only with backward); else each block regenerates
     * the rows it reads (the values are the same, bit for bit; regenerating
     * costs ~2 * visible keys * (d + dv) hashes per row). */
    const void *src[4];
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

/* The tensors a check compares with, and where the reference goes (device;
 * every pointer optional: NULL skips that comparison or output). */
typedef struct fa4cp_kref_io {
    /* query rows: compared with out [rows, heads, dv], lse [heads, rows],
     * dq [rows, heads, d]; ref_out [n][dv], ref_lse [n], ref_dq [n][d] */
    const void *out, *lse, *dq;
    double *ref_out, *ref_lse, *ref_dq;
    /* key rows: from the gathered lse [cp, heads, rows] (float or double)
     * and D [cp, heads, rows] (double); compared with dk [rows, kv_heads,
     * d], dv [rows, kv_heads, dv]; ref_dk [n][d], ref_dv [n][dv] */
    const void *glse;
    const double *gD;
    const void *dk, *dv;
    double *ref_dk, *ref_dv;
    /* err [nq + nk][FA4CP_KREF_NERR]: the query rows', then the key rows' */
    double *err;
} fa4cp_kref_io;

/* nq query rows (out, lse and, with c->backward, dq) and nk key rows (dk,
 * dv), drows [nq + nk] (query rows first), in one launch. */
int fa4cp_kref_rows(const fa4cp_kref_case *c, const fa4cp_kref_row *drows, int nq, int nk,
                    const fa4cp_kref_io *io, void *stream);

#ifdef __cplusplus
}
#endif

#endif
