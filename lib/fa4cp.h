/*
 * fa4cp.h - the public interface of libfa4cp.
 *
 * FlashAttention-4-style attention (THD varlen, causal, sliding window, GQA,
 * LSE) and context-parallel attention over a transport.  Every fallible call
 * returns fa4cp_status (FA4CP_OK == 0); the detail of the last failure on the
 * calling thread is in fa4cp_last_error().
 *
 * Conventions (docs/api.md has the long form):
 *   - THD layout: q [total_q, h, d], k/v [total_k, h_kv, d], row-major.
 *   - cu_seqlens_q/k [b+1]: physical (padded) start of each sequence.
 *   - seqused_q/k [b] (optional): real tokens of each sequence; they form a
 *     prefix of the sequence's physical rows.
 *   - causal and windows are aligned bottom-right: key j is visible to
 *     query i iff j <= i + (sk - sq) (+ window_right), and
 *     j >= i + (sk - sq) - window_left when window_left >= 0.
 *   - lse [h, total_q], natural log, fp32 (fp64 when the storage dtype is
 *     FA4CP_FP64, so the float64 reference stays exact end to end).  A row
 *     that sees no key gets out = 0 and lse = -inf.
 *   - The forward writes no out/lse element of rows past seqused_q; the
 *     backward writes exactly 0 to dq/dk/dv rows that are padding.
 */
#ifndef FA4CP_H
#define FA4CP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The functions of this header are libfa4cp's exports; everything else in
 * the library is hidden (-fvisibility=hidden). */
#if defined(__GNUC__)
#define FA4CP_API __attribute__((visibility("default")))
#else
#define FA4CP_API
#endif

#define FA4CP_VERSION_MAJOR 0
#define FA4CP_VERSION_MINOR 1
#define FA4CP_VERSION_PATCH 0

/* ------------------------------------------------------------------ status */

typedef enum fa4cp_status {
    FA4CP_OK = 0,
    FA4CP_ERR_INVALID = 1,     /* a bad argument: shapes, sizes, pointers */
    FA4CP_ERR_UNSUPPORTED = 2, /* well formed, but not supported here */
    FA4CP_ERR_NOMEM = 3,       /* host or device allocation failed */
    FA4CP_ERR_CUDA = 4,        /* a CUDA runtime call or launch failed */
    FA4CP_ERR_NCCL = 5,        /* an NCCL call failed */
    FA4CP_ERR_PMIX = 6,        /* a PMIx call failed */
    FA4CP_ERR_TIMEOUT = 7,     /* a blocking call ran past its deadline */
    FA4CP_ERR_IO = 8,          /* a file or stream could not be read/written */
    FA4CP_ERR_LAUNCH = 9,      /* the process was started the wrong way */
    FA4CP_ERR_PEER = 10,       /* another rank failed or vanished */
    FA4CP_ERR_INTERNAL = 11    /* a bug in fa4cp */
} fa4cp_status;

/* Short name of a status ("invalid argument", ...); never NULL. */
FA4CP_API const char *fa4cp_strerror(fa4cp_status status);

/* The longest timeout fa4cp accepts anywhere (run.timeout, -T, the bootstrap
 * and transport timeouts): 7 days.  Larger values are refused where they are
 * read, so deadline arithmetic can never overflow. */
#define FA4CP_TIMEOUT_MAX_S 604800.0

/* The message of the last failure on this thread ("" if none). */
FA4CP_API const char *fa4cp_last_error(void);

/* Forget the last error of this thread. */
FA4CP_API void fa4cp_clear_error(void);

/* "0.1.0" */
FA4CP_API const char *fa4cp_version(void);

/* ------------------------------------------------------------------ logging */

typedef enum fa4cp_log_level {
    FA4CP_LOG_ERROR = 0,
    FA4CP_LOG_WARN = 1,
    FA4CP_LOG_INFO = 2,
    FA4CP_LOG_DEBUG = 3
} fa4cp_log_level;

/* Lines go to stderr as "host:rank LEVEL message"; the level comes from
 * FA4CP_LOG=error|warn|info|debug (default warn). */
FA4CP_API void fa4cp_log(fa4cp_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
FA4CP_API int fa4cp_log_enabled(fa4cp_log_level level);
/* The rank shown in this thread's log prefix (-1 shows "-"). */
FA4CP_API void fa4cp_log_set_rank(int rank);
FA4CP_API int fa4cp_log_rank(void);

/* ------------------------------------------------------------------ memory */

/* 64-byte aligned host allocation; on failure NULL and the last error says
 * how much was asked for and what for. */
FA4CP_API void *fa4cp_malloc(size_t bytes, const char *what);
FA4CP_API void *fa4cp_calloc(size_t count, size_t size, const char *what);
FA4CP_API void fa4cp_free(void *p);

/* ------------------------------------------------------------------ dtypes */

typedef enum fa4cp_dtype {
    FA4CP_BF16 = 0,
    FA4CP_FP16 = 1,
    FA4CP_FP32 = 2,
    FA4CP_FP64 = 3
} fa4cp_dtype;

FA4CP_API size_t fa4cp_dtype_size(fa4cp_dtype dtype);
FA4CP_API const char *fa4cp_dtype_name(fa4cp_dtype dtype);
/* "bf16"|"bfloat16", "fp16"|"float16", "fp32"|"float32", "fp64"|"float64". */
FA4CP_API fa4cp_status fa4cp_dtype_parse(const char *name, fa4cp_dtype *out);

/* Element conversions (round to nearest even; NaN stays NaN). */
FA4CP_API double fa4cp_load(fa4cp_dtype dtype, const void *base, size_t index);
FA4CP_API void fa4cp_store(fa4cp_dtype dtype, void *base, size_t index, double value);
FA4CP_API uint16_t fa4cp_float_to_bf16(float f);
FA4CP_API float fa4cp_bf16_to_float(uint16_t h);
FA4CP_API uint16_t fa4cp_float_to_fp16(float f);
FA4CP_API float fa4cp_fp16_to_float(uint16_t h);

/* ------------------------------------------------------------------ THD math
 * Pure functions; the caller owns every array.  "padded" lengths are the
 * physical lengths cu_padded[i+1]-cu_padded[i]; "len" the real ones.
 * Context parallelism cuts each padded sequence into 2*cp chunks of
 * padded/(2*cp) rows; CP rank r holds chunks r and 2*cp-1-r, stored in that
 * order, so its local sequence i has padded/cp rows. */

/* Checks cu_padded (non-decreasing, starts at 0), seqused (0 <= used <=
 * padded; may be NULL) and, when cp > 0, that every padded length is
 * divisible by 2*cp ("sequence 3 has padded length 1001, not divisible by
 * 2*cp = 8: pad it to 1008 (7 more rows)"). */
FA4CP_API fa4cp_status fa4cp_thd_check(int batch, const int32_t *cu_padded, const int32_t *seqused, int cp);

/* Real tokens in chunk c (0 <= c < 2cp) of a sequence: clamp(len - c*chunk, 0, chunk). */
FA4CP_API int32_t fa4cp_thd_chunk_valid(int32_t len, int32_t padded, int cp, int chunk);

/* Local physical cu_seqlens [batch+1] of any rank: cu_padded[i] / cp.
 * half = -1: the whole local sequence; half = 0 or 1: one of the two chunks,
 * as a tensor of its own (cu_padded[i] / (2*cp)). */
FA4CP_API void fa4cp_thd_local_cu(int batch, const int32_t *cu_padded, int cp, int half, int32_t *local_cu);

/* Real tokens of each local sequence [batch] of rank r (half = -1 whole,
 * 0 first chunk, 1 second chunk).  seqused NULL means no padding.  The real
 * tokens of every local sequence and of each half form a prefix. */
FA4CP_API void fa4cp_thd_local_seqused(int batch, const int32_t *cu_padded, const int32_t *seqused, int cp,
                             int rank, int half, int32_t *local_used);

/* Global physical row of local row `local_row` of rank r (-1 if out of range). */
FA4CP_API int64_t fa4cp_thd_local_to_global(int batch, const int32_t *cu_padded, int cp, int rank,
                                  int64_t local_row);
/* Inverse: which rank holds global row g and at which local row.
 * Returns FA4CP_ERR_INVALID if g is out of range. */
FA4CP_API fa4cp_status fa4cp_thd_global_to_local(int batch, const int32_t *cu_padded, int cp, int64_t g,
                                       int *rank, int64_t *local_row);
/* Sequence that holds physical row `row` (binary search; -1 if none). */
FA4CP_API int fa4cp_thd_seq_of_row(int batch, const int32_t *cu, int64_t row);

/* ------------------------------------------------------------------ attention */

typedef enum fa4cp_backend {
    FA4CP_BACKEND_CPU = 0, /* reference: float64 accumulation, the oracle */
    FA4CP_BACKEND_CUDA = 1 /* kernels/: device pointers and a CUDA stream */
} fa4cp_backend;

FA4CP_API const char *fa4cp_backend_name(fa4cp_backend backend);
FA4CP_API fa4cp_status fa4cp_backend_parse(const char *name, fa4cp_backend *out);
/* 1 if this build has the backend and (for cuda) a usable device. */
FA4CP_API int fa4cp_backend_available(fa4cp_backend backend);

/* The FA4-style raw call.  Host pointers for the cpu backend, device pointers
 * for cuda (cu_seqlens/seqused too). */
typedef struct fa4cp_attn_args {
    size_t struct_size; /* sizeof(fa4cp_attn_args), set by the INIT macro */
    fa4cp_dtype dtype;
    int batch;
    int heads, kv_heads, head_dim; /* heads % kv_heads == 0 */
    int64_t total_q, total_k;      /* rows of q and of k/v */
    const int32_t *cu_seqlens_q, *cu_seqlens_k; /* [batch+1] */
    const int32_t *seqused_q, *seqused_k;       /* [batch] or NULL */
    int max_seqlen_q, max_seqlen_k; /* upper bounds (cuda: 0 = read them) */
    double softmax_scale;           /* 0 = 1/sqrt(head_dim) */
    int causal;
    int window_left, window_right; /* -1 = unbounded */
    /* forward: q, k, v -> out, lse.  backward: also reads out and lse */
    const void *q, *k, *v;
    void *out;
    void *lse; /* [h, total_q]: float, or double when dtype == FA4CP_FP64 */
    /* backward: dout (+ optional dlse [h, total_q], same type as lse) -> dq, dk, dv */
    const void *dout;
    const void *dlse;
    void *dq, *dk, *dv;
    int deterministic; /* cuda: same bits on every run */
    void *stream;      /* cuda: cudaStream_t (NULL = default stream) */
    /* head dim of v, out, dout and dv: [rows, heads or kv_heads, head_dim_v]
     * (MLA: head_dim 192, head_dim_v 128); 0 = head_dim */
    int head_dim_v;
    /* backward: dq summed over a chain of calls that share their queries
     * (a CP rank's ring steps over the same query rows), instead of one
     * call's dq.  NULL (default): one call, dq written.  Else a buffer of
     * dq_carry_bytes >= fa4cp_attn_bwd_carry_bytes() (device memory for
     * cuda, host for cpu) that holds the chain's state between its calls,
     * and carry says where this call is in the chain: FA4CP_CARRY_FIRST
     * starts it (the rows' D = rowsum(dO * O) - dLSE, the sum cleared),
     * FA4CP_CARRY_LAST ends it (dq = the sum of every call's dQ, padding
     * rows exact zeros), 0 adds this call's dQ only (dq is not touched and
     * may be NULL), FIRST | LAST is one call.  From FIRST to LAST the calls
     * keep dtype, heads, head_dim(_v), total_q, cu_seqlens_q, seqused_q, q,
     * out, dout, lse, dlse, softmax_scale, deterministic and carry's
     * FA4CP_CARRY_NO_LEFT_WINDOW bit, and run in order (one cuda stream);
     * the keys (k, v, cu_seqlens_k, seqused_k, total_k), causal and the
     * window may change; dk and dv are each call's own.
     * FA4CP_CARRY_NO_LEFT_WINDOW, set on every call of a chain, promises
     * that none of them has a left window (window_left -1; a call with one
     * is refused): the cuda backend then keeps the sum in the faster layout
     * of its one-call backward (head_dim 128). */
    void *dq_carry;
    size_t dq_carry_bytes;
    int carry;
} fa4cp_attn_args;

#define FA4CP_CARRY_FIRST 1
#define FA4CP_CARRY_LAST 2
#define FA4CP_CARRY_NO_LEFT_WINDOW 4

#define FA4CP_ATTN_ARGS_INIT                                                                       \
    {                                                                                              \
        .struct_size = sizeof(fa4cp_attn_args), .dtype = FA4CP_BF16, .window_left = -1,           \
        .window_right = -1                                                                         \
    }

/* The largest head_dim and head_dim_v of the cpu backend (and of a workload). */
#define FA4CP_HEAD_DIM_MAX 1024

/* Can the backend run attention of this dtype and head dims (head_dim_v 0 =
 * head_dim), forward and (backward != 0) backward?  One table
 * (lib/attn/attn_caps.c) that the raw call, the CP layer, fa4cp-run
 * --dry-run and --explain ask before anything is allocated or any device is
 * touched: cpu takes every dtype and any head_dim, head_dim_v in
 * 1..FA4CP_HEAD_DIM_MAX; cuda takes bf16/fp16 and only the (head_dim,
 * head_dim_v) pairs it has kernels for.  FA4CP_OK, or FA4CP_ERR_UNSUPPORTED
 * naming the supported set ("cuda attention: head_dim 160 with head_dim_v 160
 * has no forward kernel: the cuda backend takes (head_dim, head_dim_v) =
 * (32, 32), (64, 64), ..."); FA4CP_ERR_INVALID for values that
 * are no head dim at all. */
FA4CP_API fa4cp_status fa4cp_attn_supports(fa4cp_backend backend, fa4cp_dtype dtype, int head_dim,
                                            int head_dim_v, int backward);
/* The backend's head dims as text, e.g. "(32, 32), (64, 64), ... or
 * (256, 256)" (a pair with no backward kernel is marked "forward only");
 * never NULL. */
FA4CP_API const char *fa4cp_attn_head_dims(fa4cp_backend backend);

/* Argument checks shared by every backend (no pointer is dereferenced
 * except cu_seqlens/seqused on the cpu backend); they include
 * fa4cp_attn_supports. */
FA4CP_API fa4cp_status fa4cp_attn_check(fa4cp_backend backend, const fa4cp_attn_args *a, int backward);

FA4CP_API fa4cp_status fa4cp_attn_fwd(fa4cp_backend backend, const fa4cp_attn_args *a);
FA4CP_API fa4cp_status fa4cp_attn_bwd(fa4cp_backend backend, const fa4cp_attn_args *a);

/* Bytes of fa4cp_attn_args.dq_carry for a backward chain over these queries
 * (backend, dtype, heads, head_dim and total_q of a): cpu 8 per element of
 * dq (a float64 sum), cuda 4 per element of dq plus 4 per (row, head) (an
 * fp32 sum in the kernels' layout and D).  0 for a = NULL. */
FA4CP_API size_t fa4cp_attn_bwd_carry_bytes(fa4cp_backend backend, const fa4cp_attn_args *a);

/* Element type of lse/dlse for a storage dtype: FA4CP_FP64 for fp64, else FA4CP_FP32. */
FA4CP_API fa4cp_dtype fa4cp_lse_dtype(fa4cp_dtype dtype);

/* Is key j visible to query i of a sequence with sq queries and sk keys? */
FA4CP_API int fa4cp_attn_visible(int64_t i, int64_t j, int64_t sq, int64_t sk, int causal, int window_left,
                       int window_right);

/* ------------------------------------------------------------------ comm (transports)
 * Section owned by the CP work (lib/comm*.c). */

/* A transport endpoint: this rank's view of a group of `size` ranks.  Three
 * implementations: "local" (ranks are threads of one process, host or device
 * memory), "nccl" (one communicator per group) and "mpi" (processes on any
 * nodes, host memory).  Every operation is non-blocking and returns a
 * request; fa4cp_comm_wait completes it (and frees it).  On device
 * transports an operation is ordered after the work already queued on
 * `stream` (a cudaStream_t, NULL = default) and wait makes `stream` wait for
 * it (no host synchronisation); host transports ignore `stream` and wait
 * blocks.  A mismatched post (sizes that disagree, a peer out of range) is
 * an error, never a hang: every blocking wait has the comm's timeout. */
typedef struct fa4cp_comm fa4cp_comm;
typedef struct fa4cp_comm_req fa4cp_comm_req;

typedef enum fa4cp_reduce_op { FA4CP_REDUCE_SUM = 0, FA4CP_REDUCE_MAX = 1 } fa4cp_reduce_op;

/* One point-to-point transfer of a group (send to or receive from peer). */
typedef struct fa4cp_p2p {
    int peer;
    int is_send;
    void *buf; /* const for a send */
    size_t bytes;
} fa4cp_p2p;

FA4CP_API int fa4cp_comm_rank(const fa4cp_comm *c);
FA4CP_API int fa4cp_comm_size(const fa4cp_comm *c);
FA4CP_API const char *fa4cp_comm_name(const fa4cp_comm *c);
/* 1 when buffers are device pointers */
FA4CP_API int fa4cp_comm_device_memory(const fa4cp_comm *c);

/* All sends and receives of ops[] posted as one group (NCCL group semantics). */
FA4CP_API fa4cp_status fa4cp_comm_sendrecv(fa4cp_comm *c, const fa4cp_p2p *ops, int nops, void *stream,
                                 fa4cp_comm_req **req);
/* recv [size * bytes] = concatenation of every rank's send [bytes], in rank order. */
FA4CP_API fa4cp_status fa4cp_comm_all_gather(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req);
/* send [size * count] elements; recv [count] = sum over ranks of block `rank`. */
FA4CP_API fa4cp_status fa4cp_comm_reduce_scatter(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                       fa4cp_dtype dtype, void *stream, fa4cp_comm_req **req);
/* send [size * bytes]: block p goes to rank p; recv [size * bytes]: block p came from rank p. */
FA4CP_API fa4cp_status fa4cp_comm_all_to_all(fa4cp_comm *c, const void *send, void *recv, size_t bytes,
                                   void *stream, fa4cp_comm_req **req);
FA4CP_API fa4cp_status fa4cp_comm_all_reduce(fa4cp_comm *c, const void *send, void *recv, size_t count,
                                   fa4cp_dtype dtype, fa4cp_reduce_op op, void *stream,
                                   fa4cp_comm_req **req);
/* Complete and free a request (NULL is a no-op). */
FA4CP_API fa4cp_status fa4cp_comm_wait(fa4cp_comm *c, fa4cp_comm_req *req, void *stream);
FA4CP_API fa4cp_status fa4cp_comm_barrier(fa4cp_comm *c);
FA4CP_API void fa4cp_comm_destroy(fa4cp_comm *c);

/* The local transport: `nranks` ranks that are threads of this process.
 * device_memory = 1: buffers are CUDA device pointers (copies go through
 * cudaMemcpyAsync on the given streams).  timeout_s bounds every wait. */
typedef struct fa4cp_local_world fa4cp_local_world;
FA4CP_API fa4cp_status fa4cp_local_world_create(int nranks, int device_memory, double timeout_s,
                                      fa4cp_local_world **out);
/* The endpoint of `rank` (call once per rank; each thread uses its own). */
FA4CP_API fa4cp_status fa4cp_local_comm(fa4cp_local_world *w, int rank, fa4cp_comm **out);
/* After every endpoint was destroyed. */
FA4CP_API void fa4cp_local_world_destroy(fa4cp_local_world *w);



/* ------------------------------------------------------------------ context parallelism
 * Section owned by the CP work (lib/cp*.c). */

#include <stdio.h> /* FILE, for fa4cp_cp_plan_print */

/* A CP call cuts every sequence into 2*cp chunks and gives rank r chunks r
 * and 2*cp-1-r (in that order, per sequence: the "rank-local layout"), so
 * causal work is balanced.  The caller holds rank-local q/k/v and gets
 * rank-local out/lse (and dq/dk/dv); fa4cp_cp_shard/unshard convert between
 * global and rank-local tensors.  CP is self-attention: queries and keys
 * share cu_seqlens and seqused.  docs/cp.md describes the shapes.
 *
 * Layouts: THD (varlen: cu_seqlens [batch+1] are the global *padded*
 * offsets, each padded length divisible by 2*cp; seqused [batch] the real
 * lengths, or NULL) and BSHD (batch sequences of seqlen rows each, seqlen
 * divisible by 2*cp; stored exactly like THD with cu_seqlens[i] = i*seqlen).
 * Rank-local tensors: q/dq [rows, heads, d], out/dout [rows, heads, dv],
 * k/dk [rows, kv_heads, d], v/dv [rows, kv_heads, dv] (d = head_dim, dv =
 * head_dim_v, or d when 0) with rows = cu_seqlens[batch]/cp; lse/dlse
 * [heads, rows] of fa4cp_lse_dtype(dtype), for both layouts.
 *
 * Padding rows (past seqused, per local sequence): the forward leaves out and
 * lse untouched there (like the raw call); the backward writes exactly 0 to
 * dq/dk/dv there.  A real row that sees no key gets out 0 and lse -inf. */

typedef enum fa4cp_cp_comm_type {
    FA4CP_CP_P2P = 0,        /* ring of KV blocks, LSE merge; causal or not, no window */
    FA4CP_CP_ALL_GATHER = 1, /* gather KV, each Q chunk sees its visible prefix; windows OK */
    FA4CP_CP_A2A = 2,        /* Ulysses: sequence <-> head sharding; heads, kv_heads % cp == 0 */
    FA4CP_CP_A2A_P2P = 3     /* hierarchical: known, always refused */
} fa4cp_cp_comm_type;

/* "p2p" | "all_gather" | "a2a" (also "allgather", "ulysses", "ring").
 * "a2a+p2p" is refused with FA4CP_ERR_UNSUPPORTED: "cp.comm 'a2a+p2p' is
 * disabled: the hierarchical a2a+p2p path is not validated; use p2p across
 * nodes or a2a within a node". */
FA4CP_API fa4cp_status fa4cp_cp_comm_parse(const char *name, fa4cp_cp_comm_type *out);
FA4CP_API const char *fa4cp_cp_comm_name(fa4cp_cp_comm_type comm);

typedef enum fa4cp_cp_format { FA4CP_CP_THD = 0, FA4CP_CP_BSHD = 1 } fa4cp_cp_format;
/* "thd" | "bshd" */
FA4CP_API fa4cp_status fa4cp_cp_format_parse(const char *name, fa4cp_cp_format *out);
FA4CP_API const char *fa4cp_cp_format_name(fa4cp_cp_format format);

typedef struct fa4cp_cp_config {
    size_t struct_size; /* sizeof(fa4cp_cp_config), set by the INIT macro */
    fa4cp_cp_comm_type comm;
    fa4cp_backend backend;
    fa4cp_cp_format format;
    fa4cp_dtype dtype;
    int heads, kv_heads, head_dim;
    int causal;
    int window_left, window_right; /* -1 = unbounded; aligned like the raw call */
    double softmax_scale;          /* 0 = 1/sqrt(head_dim) */
    int deterministic;
    int head_dim_v;                /* of v, out, dout, dv; 0 = head_dim */
} fa4cp_cp_config;

#define FA4CP_CP_CONFIG_INIT                                                                       \
    {                                                                                              \
        .struct_size = sizeof(fa4cp_cp_config), .comm = FA4CP_CP_P2P,                             \
        .backend = FA4CP_BACKEND_CPU, .format = FA4CP_CP_THD, .dtype = FA4CP_BF16,                 \
        .window_left = -1, .window_right = -1                                                      \
    }

/* Every refusal, before anything is allocated (the workload loader checks
 * the same rules, less the last, when it reads a case): a2a+p2p; p2p with a
 * sliding window; a2a with heads or kv_heads not divisible by cp; lengths not
 * divisible by 2*cp; bad shapes; a dtype or (head_dim, head_dim_v) the
 * backend has no kernel for (fa4cp_attn_supports).
 * THD: cu_seqlens [batch+1] (host), seqlen ignored.  BSHD: seqlen, cu_seqlens
 * ignored (may be NULL). */
FA4CP_API fa4cp_status fa4cp_cp_validate(const fa4cp_cp_config *cfg, int cp_size, int batch,
                               const int32_t *cu_seqlens, int seqlen);

/* A CP group handle: a config bound to a transport endpoint (not owned).
 * Collective: every rank of the group calls it, and it fails on every rank
 * (naming the ranks) when their configs differ. */
typedef struct fa4cp_cp fa4cp_cp;
FA4CP_API fa4cp_status fa4cp_cp_create(const fa4cp_cp_config *cfg, fa4cp_comm *comm, fa4cp_cp **out);
FA4CP_API void fa4cp_cp_destroy(fa4cp_cp *cp);

/* Rank-local arguments of one call.  cu_seqlens/seqused are the *global*
 * ones, in host memory (plans are made on the host); tensors are rank-local,
 * host or device memory as the transport and backend say. */
typedef struct fa4cp_cp_args {
    size_t struct_size; /* sizeof(fa4cp_cp_args), set by the INIT macro */
    int batch;
    const int32_t *cu_seqlens; /* THD: [batch+1] global padded offsets */
    const int32_t *seqused;    /* THD: [batch] global real lengths, or NULL */
    int seqlen;                /* BSHD: rows of every sequence */
    const void *q, *k, *v;
    void *out, *lse;                     /* forward outputs; backward inputs */
    const void *dout, *dlse;             /* backward inputs (dlse may be NULL) */
    void *dq, *dk, *dv;                  /* backward outputs */
    void *stream;                        /* cuda: cudaStream_t; NULL on the cpu */
} fa4cp_cp_args;

#define FA4CP_CP_ARGS_INIT { .struct_size = sizeof(fa4cp_cp_args) }

/* Collective over the group: every rank calls with its own tensors.  On the
 * cuda backend the call only queues work on args.stream (communication runs
 * on a side stream of the handle, joined back before return): no host
 * synchronisation; the outputs are ready when the stream has run. */
FA4CP_API fa4cp_status fa4cp_cp_fwd(fa4cp_cp *cp, const fa4cp_cp_args *a);
FA4CP_API fa4cp_status fa4cp_cp_bwd(fa4cp_cp *cp, const fa4cp_cp_args *a);

/* Per-step timings of the p2p ring from CUDA events (cuda backend only):
 * turn them on once, run a call, then read them (this waits for the call's
 * events).  compute: the attention call and merge/accumulation of the step
 * on the call stream; comm: from posting the step's exchange to its
 * completion on the side stream.  A step's exchange is hidden when it ends
 * before the step's compute does.  call_ms: the whole CP call. */
#define FA4CP_CP_MAX_TIMED_STEPS 64
typedef struct fa4cp_cp_timing {
    size_t struct_size; /* sizeof(fa4cp_cp_timing), set by the INIT macro */
    int backward;       /* the timed call was a backward */
    int nsteps;         /* ring steps (p2p); 0 for the other shapes */
    float compute_ms[FA4CP_CP_MAX_TIMED_STEPS];
    float comm_ms[FA4CP_CP_MAX_TIMED_STEPS]; /* 0 where the step exchanges nothing */
    float call_ms;
    /* bytes this rank sent in the step's exchange (K+V, and dK+dV in a
     * backward); comm_bytes / comm_ms is the bandwidth the step achieved */
    size_t comm_bytes[FA4CP_CP_MAX_TIMED_STEPS];
} fa4cp_cp_timing;
#define FA4CP_CP_TIMING_INIT { .struct_size = sizeof(fa4cp_cp_timing) }
FA4CP_API fa4cp_status fa4cp_cp_set_timing(fa4cp_cp *cp, int on);

/* Where a call is, for a watchdog on another thread: the executor writes the
 * operation it starts into a sink the caller owns (atomically: `ops` last,
 * with release order; read `ops` with acquire order first).  ops: the
 * operations started in this call; op, step, peer: the last one (peer: the
 * CP rank a sendrecv receives from, else -1); calls: the calls so far. */
typedef struct fa4cp_cp_progress {
    int calls, ops;
    int op, step, peer;
} fa4cp_cp_progress;
/* NULL: no sink (the default). */
FA4CP_API void fa4cp_cp_set_progress(fa4cp_cp *cp, fa4cp_cp_progress *sink);
FA4CP_API fa4cp_status fa4cp_cp_last_timing(fa4cp_cp *cp, fa4cp_cp_timing *out);

/* Bytes of the executor's own buffers in one call of a group of cp_size
 * ranks over `batch` sequences of `rows` padded rows in all (the larger of
 * the forward and, with backward, the backward), beside the caller's
 * tensors: what a memory estimate adds for the CP call.  0 (and the last
 * error) for a config fa4cp_cp_validate refuses. */
FA4CP_API size_t fa4cp_cp_workspace_bytes(const fa4cp_cp_config *cfg, int cp_size, int batch, int64_t rows,
                                int backward);
/* Bytes the last call of this handle allocated for its own buffers. */
FA4CP_API size_t fa4cp_cp_last_workspace(const fa4cp_cp *cp);

/* ---- plans: what a rank does, as plain data */

typedef enum fa4cp_cp_case {
    FA4CP_CP_CASE_FULL = 0,     /* p2p, not causal: all Q x all KV of the block */
    FA4CP_CP_CASE_DIAGONAL = 1, /* p2p causal, own block: all Q x all KV, causal */
    FA4CP_CP_CASE_LOWER = 2,    /* p2p causal, earlier block: all Q x first KV half, no mask */
    FA4CP_CP_CASE_UPPER = 3,    /* p2p causal, later block: second Q half x all KV, no mask */
    FA4CP_CP_CASE_PREFIX = 4,   /* all_gather: one Q chunk x its visible KV prefix */
    FA4CP_CP_CASE_HEADS = 5     /* a2a: whole sequences x a group of heads */
} fa4cp_cp_case;

typedef enum fa4cp_cp_merge {
    FA4CP_CP_MERGE_LSE = 0,  /* online merge of (out, lse) through the LSE */
    FA4CP_CP_MERGE_COPY = 1  /* rows written once: copied into place */
} fa4cp_cp_merge;

typedef struct fa4cp_cp_step {
    fa4cp_cp_case mask_case;
    int kv_rank;        /* p2p: whose KV block (-1: every rank's, gathered) */
    int q_half;         /* -1: both local chunks; 0: chunk r; 1: chunk 2cp-1-r */
    int kv_half;        /* p2p: -1 both chunks of the block, 0 its first chunk */
    int kv_chunks;      /* all_gather: KV prefix of this many global chunks (2cp: all) */
    int head_group;     /* a2a: heads [g*h/cp, (g+1)*h/cp) (and kv heads alike) */
    int causal;         /* the attention call's own mask */
    int window_left, window_right; /* of the call, before per-sequence alignment */
    fa4cp_cp_merge merge;
    int send_to, recv_from; /* p2p: ring neighbours of this step (-1: none) */
} fa4cp_cp_step;

/* The operations of a rank's program, in the order the executor runs them. */
typedef enum fa4cp_cp_op {
    FA4CP_CP_OP_SENDRECV = 0,       /* exchange with the ring neighbours send_to / recv_from */
    FA4CP_CP_OP_ALL_GATHER = 1,     /* every rank's block of the tensor */
    FA4CP_CP_OP_ALL_TO_ALL = 2,     /* sequence- <-> head-sharded */
    FA4CP_CP_OP_REDUCE_SCATTER = 3, /* sum over the ranks, this rank's block */
    FA4CP_CP_OP_ATTENTION = 4,      /* the attention call(s) of fwd[step] / bwd[step] */
    FA4CP_CP_OP_MERGE = 5           /* fold the step's result in (its merge); step -1: write the outputs */
} fa4cp_cp_op;

/* The tensors an operation moves or writes (a bit set). */
enum {
    FA4CP_CP_T_Q = 1 << 0, FA4CP_CP_T_K = 1 << 1, FA4CP_CP_T_V = 1 << 2, FA4CP_CP_T_OUT = 1 << 3,
    FA4CP_CP_T_DOUT = 1 << 4, FA4CP_CP_T_LSE = 1 << 5, FA4CP_CP_T_DLSE = 1 << 6,
    FA4CP_CP_T_DQ = 1 << 7, FA4CP_CP_T_DK = 1 << 8, FA4CP_CP_T_DV = 1 << 9
};

typedef struct fa4cp_cp_instr {
    fa4cp_cp_op op;
    int step;                /* ATTENTION, MERGE: the step; SENDRECV: the step it runs beside (-1: none) */
    unsigned tensors;        /* FA4CP_CP_T_* */
    int send_to, recv_from;  /* SENDRECV: the peers (cp ranks) */
    int optional;            /* run only when the call has the tensor (dlse) */
} fa4cp_cp_instr;

typedef struct fa4cp_cp_plan {
    fa4cp_cp_comm_type comm;
    fa4cp_cp_format format;
    int cp_size, cp_rank;
    int causal, window_left, window_right;
    int nfwd, nbwd;
    fa4cp_cp_step *fwd; /* [nfwd] the attention steps */
    fa4cp_cp_step *bwd; /* [nbwd] */
    /* the programs: every operation of a forward and a backward call, in
     * order; the executor runs exactly these (fa4cp_cp_last_trace) */
    int nfwd_ops, nbwd_ops;
    fa4cp_cp_instr *fwd_ops, *bwd_ops;
} fa4cp_cp_plan;

/* The plan of one rank (no sequence lengths needed: per-sequence counts are
 * derived at run time from cu_seqlens/seqused with the fa4cp_thd_* math).
 * Refuses what fa4cp_cp_validate refuses about the shape. */
FA4CP_API fa4cp_status fa4cp_cp_plan_build(const fa4cp_cp_config *cfg, int cp_size, int cp_rank,
                                 fa4cp_cp_plan **out);
FA4CP_API void fa4cp_cp_plan_free(fa4cp_cp_plan *plan);
/* Human-readable, one line per operation of the programs (fa4cp-run --explain). */
FA4CP_API fa4cp_status fa4cp_cp_plan_print(const fa4cp_cp_plan *plan, FILE *f);
FA4CP_API const char *fa4cp_cp_case_name(fa4cp_cp_case c);
FA4CP_API const char *fa4cp_cp_op_name(fa4cp_cp_op op);
/* The operations the last successful call of this handle ran, in order
 * (*ops stays valid until the next call): a plan's fwd_ops / bwd_ops less
 * the optional ones the call did not need. */
FA4CP_API fa4cp_status fa4cp_cp_last_trace(const fa4cp_cp *cp, const fa4cp_cp_instr **ops, int *n);

/* ---- global <-> rank-local tensors (host memory)
 * Rows: `row_bytes` each; global [cu_seqlens[batch]] rows, local
 * [cu_seqlens[batch]/cp] rows of rank `rank`.  For BSHD pass the cu of
 * fa4cp_cp_bshd_cu.  lse variants: [heads, rows] of elem_bytes. */
FA4CP_API void fa4cp_cp_bshd_cu(int batch, int seqlen, int32_t *cu_seqlens);
FA4CP_API int64_t fa4cp_cp_local_rows(int batch, const int32_t *cu_seqlens, int cp);
FA4CP_API fa4cp_status fa4cp_cp_shard(int batch, const int32_t *cu_seqlens, int cp, int rank,
                            size_t row_bytes, const void *global, void *local);
FA4CP_API fa4cp_status fa4cp_cp_unshard(int batch, const int32_t *cu_seqlens, int cp, int rank,
                              size_t row_bytes, const void *local, void *global);
FA4CP_API fa4cp_status fa4cp_cp_shard_lse(int batch, const int32_t *cu_seqlens, int cp, int rank, int heads,
                                size_t elem_bytes, const void *global, void *local);
FA4CP_API fa4cp_status fa4cp_cp_unshard_lse(int batch, const int32_t *cu_seqlens, int cp, int rank,
                                  int heads, size_t elem_bytes, const void *local, void *global);



/* ------------------------------------------------------------------ world and layout
 * Section owned by the World work (lib/world*.c, lib/layout.c). */

/* The world: how this process was started, and the world table (one row per
 * rank).  fa4cp_world_init decides, in this order:
 *   1. PMIx: the process was launched by a PMIx server (srun --mpi=pmix);
 *   2. the Slurm environment (SLURM_PROCID, SLURM_STEP_NODELIST, ...), only
 *      where no PMIx is built in or FA4CP_BOOTSTRAP=slurm asks for it;
 *   3. local mode: one process whose `local_ranks` ranks are threads.
 * A PMIx singleton inside a Slurm step of several tasks (srun without
 * --mpi=pmix) fails with FA4CP_ERR_LAUNCH on every task (the "singleton trap").
 * docs/world.md has the long form. */

typedef enum fa4cp_world_kind {
    FA4CP_WORLD_AUTO = 0,  /* config only: detect */
    FA4CP_WORLD_LOCAL = 1, /* one process, ranks are threads */
    FA4CP_WORLD_SLURM = 2, /* Slurm environment: table, no data exchange */
    FA4CP_WORLD_PMIX = 3,  /* PMIx: table and data exchange */
    FA4CP_WORLD_PLAN = 4   /* a made-up cluster (fa4cp_world_plan) */
} fa4cp_world_kind;

/* "auto", "local", "slurm", "pmix", "plan" */
FA4CP_API const char *fa4cp_world_kind_name(fa4cp_world_kind kind);
FA4CP_API fa4cp_status fa4cp_world_kind_parse(const char *name, fa4cp_world_kind *out);

#define FA4CP_HOST_MAX 64
#define FA4CP_GPU_ID_MAX 48

/* One rank of the world table. */
typedef struct fa4cp_world_row {
    int rank;
    int node;       /* node id, 0 .. nodes-1 (PMIX_NODEID / SLURM_NODEID order) */
    int local_rank; /* rank among the ranks of its node */
    int local_size; /* ranks on its node */
    int gpu;        /* device ordinal for cudaSetDevice; -1 = no GPU */
    char gpu_id[FA4CP_GPU_ID_MAX]; /* the physical device: its CUDA_VISIBLE_DEVICES
                                      entry (index or UUID); "" = no GPU */
    int gpu_exclusive; /* 1: the launcher bound the device to this task alone
                          (srun --gpus-per-task), so no other task shares it */
    char host[FA4CP_HOST_MAX];
} fa4cp_world_row;

typedef struct fa4cp_world_config {
    size_t struct_size;    /* sizeof(fa4cp_world_config), set by the INIT macro */
    fa4cp_world_kind kind; /* AUTO (default; FA4CP_BOOTSTRAP=pmix|slurm|local overrides) */
    int local_ranks;       /* local mode: ranks as threads (default 1) */
    double timeout_s;      /* bound of every blocking bootstrap call (default 60;
                              FA4CP_BOOTSTRAP_TIMEOUT overrides) */
    int visible_gpus;      /* -1 (default): count CUDA_VISIBLE_DEVICES or /dev/nvidiaN,
                              without touching a GPU; >= 0: use this count */
} fa4cp_world_config;

#define FA4CP_WORLD_CONFIG_INIT                                                                    \
    {                                                                                              \
        .struct_size = sizeof(fa4cp_world_config), .kind = FA4CP_WORLD_AUTO, .local_ranks = 1,     \
        .timeout_s = 60.0, .visible_gpus = -1                                                      \
    }

typedef struct fa4cp_world fa4cp_world;

/* Bootstrap and build the world table.  Failures: FA4CP_ERR_LAUNCH (the
 * singleton trap, an inconsistent Slurm environment), FA4CP_ERR_PMIX,
 * FA4CP_ERR_TIMEOUT / FA4CP_ERR_PEER (a rank did not arrive in time; the
 * message names it; under PMIx the process that saw it has then also called
 * PMIx_Abort, so that a hung rank cannot keep the job alive).  Sets the log
 * rank (fa4cp_log_set_rank) of the calling thread.  cfg NULL = defaults. */
FA4CP_API fa4cp_status fa4cp_world_init(const fa4cp_world_config *cfg, fa4cp_world **out);
/* MPI_Finalize where fa4cp_mpi_world_init started MPI for this world, then
 * PMIx_Finalize where PMIx was initialised; NULL is a no-op. */
FA4CP_API void fa4cp_world_finalize(fa4cp_world *w);

FA4CP_API fa4cp_world_kind fa4cp_world_kind_of(const fa4cp_world *w);
FA4CP_API int fa4cp_world_rank(const fa4cp_world *w);  /* this process's rank (0 in local mode) */
FA4CP_API int fa4cp_world_size(const fa4cp_world *w);  /* ranks in the table */
FA4CP_API int fa4cp_world_procs(const fa4cp_world *w); /* processes: size, or 1 in local mode */
FA4CP_API int fa4cp_world_nodes(const fa4cp_world *w);
FA4CP_API double fa4cp_world_timeout(const fa4cp_world *w);
/* The bound of every later bootstrap collective (allgather, bcast,
 * barrier), e.g. longer than the slowest rank's work between two of them;
 * at most FA4CP_TIMEOUT_MAX_S (a longer one is that). */
FA4CP_API fa4cp_status fa4cp_world_set_timeout(fa4cp_world *w, double timeout_s);
FA4CP_API const fa4cp_world_row *fa4cp_world_table(const fa4cp_world *w); /* [size] rows, by rank */
FA4CP_API const fa4cp_world_row *fa4cp_world_row_of(const fa4cp_world *w, int rank); /* NULL if out of range */

/* Collectives over the bootstrap (PMIx Put/Commit/Fence/Get with a fresh key
 * each call and the world timeout; in local mode a copy).  allgather: recv
 * [procs * bytes], block p from process p.  bcast: rank 0's buf to every
 * process.  In Slurm mode (no exchange) they fail with FA4CP_ERR_UNSUPPORTED
 * unless procs == 1. */
FA4CP_API fa4cp_status fa4cp_world_allgather(fa4cp_world *w, const void *send, void *recv, size_t bytes);
FA4CP_API fa4cp_status fa4cp_world_bcast(fa4cp_world *w, void *buf, size_t bytes);
FA4CP_API fa4cp_status fa4cp_world_barrier(fa4cp_world *w);

/* End every process of the job with msg ("rank R on HOST: msg"): PMIx_Abort
 * under PMIx, else print and exit(status 3).  Never returns. */
FA4CP_API void fa4cp_world_abort(fa4cp_world *w, const char *msg)
#if defined(__GNUC__)
    __attribute__((noreturn))
#endif
    ;

/* The singleton-trap check, from the environment alone (tests fake it with
 * setenv): FA4CP_ERR_LAUNCH when this process is inside a Slurm step of
 * several tasks but was not given a PMIx namespace (pmix_nspace NULL or
 * "singleton..."), or when the PMIx job size disagrees with the step's task
 * count; FA4CP_OK otherwise.  pmix_job_size <= 0 = unknown. */
FA4CP_API fa4cp_status fa4cp_world_check_launch(const char *pmix_nspace, int pmix_job_size);

/* A made-up cluster for planning (no GPU, no launcher): `nodes` nodes named
 * node1.., tasks_per_node[i] ranks on node i (NULL: `tasks` on each), ranks
 * placed "block" or "cyclic" over the nodes; gpus_per_node GPUs per node
 * (0 = none, -1 = one per task).  Writes `*n` rows into a new table
 * (fa4cp_free it). */
FA4CP_API fa4cp_status fa4cp_world_plan(int nodes, int tasks, const int *tasks_per_node,
                              const char *distribution, int gpus_per_node,
                              fa4cp_world_row **table, int *n);

/* Two ranks of one node on one GPU: FA4CP_ERR_INVALID naming both ranks and
 * the device (NCCL cannot use it).  Rows with gpu < 0 or gpu_exclusive are
 * not checked. */
FA4CP_API fa4cp_status fa4cp_world_check_gpus(const fa4cp_world_row *table, int n);

/* Slurm hostlist expressions ("node[01-03,07],gpu-a[1-2]").
 * fa4cp_hostlist_expand: every host, in order, exactly as Slurm expands the
 * expression (`scontrol show hostnames`): duplicates kept, empty items
 * skipped, zero hosts for ",,"; FA4CP_ERR_INVALID where Slurm refuses, with
 * the reason.  Free with fa4cp_hostlist_free.
 * fa4cp_hostlist_count/_nth: the same expression as a list of nodes
 * (SLURM_JOB_NODELIST): also refuse an empty list, a node named twice and a
 * name with brackets or blanks. */
FA4CP_API fa4cp_status fa4cp_hostlist_expand(const char *expr, char ***hosts, int *n);
FA4CP_API void fa4cp_hostlist_free(char **hosts, int n);
FA4CP_API fa4cp_status fa4cp_hostlist_count(const char *expr, int *count);
FA4CP_API fa4cp_status fa4cp_hostlist_nth(const char *expr, int index, char *buf, size_t len);
/* "2(x3),1" (SLURM_STEP_TASKS_PER_NODE) -> counts[0..*n-1] (at most max). */
FA4CP_API fa4cp_status fa4cp_tasks_per_node_parse(const char *expr, int *counts, int max, int *n);

/* ---- layout: a pure function of the world table and the CP request.
 * CP groups come from physical order (node, then local rank): first whole
 * groups inside single nodes, then the remaining ranks in physical order, so a
 * group spans as few nodes as possible and stays in one node when cp divides
 * the node's tasks.  The ring of a group visits each node's ranks
 * consecutively.  Data-parallel group d = the ranks whose CP rank is d. */

typedef struct fa4cp_layout fa4cp_layout;

typedef struct fa4cp_layout_place {
    int cp_group, cp_rank;     /* CP group index, position in its ring */
    int ring_prev, ring_next;  /* world ranks */
    int dp_group, dp_rank;     /* dp_group == cp_rank; dp_rank == cp_group */
} fa4cp_layout_place;

/* world % cp != 0: FA4CP_ERR_INVALID with the sizes that would work.
 * is_a2a: an a2a group that crosses nodes gets a warning with its cost
 * (fa4cp_layout_warning), unless allow_cross_node_a2a. */
FA4CP_API fa4cp_status fa4cp_layout_build(const fa4cp_world_row *table, int n, int cp, int is_a2a,
                                int allow_cross_node_a2a, fa4cp_layout **out);
FA4CP_API void fa4cp_layout_destroy(fa4cp_layout *l);

FA4CP_API int fa4cp_layout_size(const fa4cp_layout *l);
FA4CP_API int fa4cp_layout_cp(const fa4cp_layout *l);
FA4CP_API int fa4cp_layout_cp_groups(const fa4cp_layout *l); /* size / cp */
FA4CP_API const fa4cp_world_row *fa4cp_layout_table(const fa4cp_layout *l);
/* FA4CP_ERR_INVALID when rank is out of range */
FA4CP_API fa4cp_status fa4cp_layout_place_of(const fa4cp_layout *l, int rank, fa4cp_layout_place *out);
/* World ranks of CP group g in ring order [cp]; DP group d by CP group [size/cp]. */
FA4CP_API const int *fa4cp_layout_cp_group(const fa4cp_layout *l, int g);
FA4CP_API const int *fa4cp_layout_dp_group(const fa4cp_layout *l, int d);
/* Ring edges (wrap-around included) between different nodes; nodes spanned. */
FA4CP_API int fa4cp_layout_hops(const fa4cp_layout *l, int g);
FA4CP_API int fa4cp_layout_group_nodes(const fa4cp_layout *l, int g);
/* "" when none; else one line per problem (cross-node a2a groups and their cost). */
FA4CP_API const char *fa4cp_layout_warning(const fa4cp_layout *l);

/* The table of fa4cp-layout as text: json = 0 a text table, 1 a JSON object.
 * `source` (e.g. "pmix") is printed as is; NULL omits it.  *text is a new
 * NUL-terminated string (fa4cp_free it). */
FA4CP_API fa4cp_status fa4cp_layout_format(const fa4cp_layout *l, const char *source, int json,
                                 char **text);

/* ---- NCCL communicators (the "nccl" transport of fa4cp_comm).
 * Without NCCL in the build every call fails with FA4CP_ERR_UNSUPPORTED. */

typedef struct fa4cp_nccl_config {
    size_t struct_size; /* set by the INIT macro */
    double timeout_s;   /* watchdog: an operation not done after this long aborts
                           the communicator (ncclCommAbort) and fails (default 300) */
    int blocking;       /* 0 (default): non-blocking init, polled with the timeout */
} fa4cp_nccl_config;

#define FA4CP_NCCL_CONFIG_INIT {.struct_size = sizeof(fa4cp_nccl_config), .timeout_s = 300.0}

/* The world communicator and the CP and DP communicators of this process's
 * rank (ncclCommInitRankConfig, then ncclCommSplit by layout).  Selects the
 * rank's GPU first.  The unique id travels over the bootstrap (PMIx), or, in
 * Slurm mode, through NCCL_COMM_ID (fa4cp_nccl_comm_id_from_slurm). */
typedef struct fa4cp_nccl_comms {
    fa4cp_comm *world, *cp, *dp;
} fa4cp_nccl_comms;
FA4CP_API fa4cp_status fa4cp_nccl_comm_create(fa4cp_world *w, const fa4cp_layout *l,
                                    const fa4cp_nccl_config *cfg, fa4cp_nccl_comms *out);
FA4CP_API void fa4cp_nccl_comms_destroy(fa4cp_nccl_comms *c);
/* n ranks of this process on n distinct GPUs (devices[i]), one NCCL
 * communicator each (ncclCommInitAll): the nccl transport with threads
 * instead of processes; each thread uses its own out[i]. */
FA4CP_API fa4cp_status fa4cp_nccl_local_comms(int n, const int *devices, double timeout_s,
                                    fa4cp_comm **out);
/* 1 when this build has NCCL. */
FA4CP_API int fa4cp_nccl_available(void);
/* 1 when this build has the PMIx bootstrap. */
FA4CP_API int fa4cp_pmix_available(void);
/* rank 0's ncclUniqueId (128 bytes) on every process of the world. */
FA4CP_API fa4cp_status fa4cp_nccl_unique_id(fa4cp_world *w, void *id, size_t bytes);
/* NCCL_COMM_ID for the Slurm fallback: "<first host of SLURM_STEP_NODELIST>:<port>",
 * port = 20000 + (SLURM_JOB_ID * 16 + SLURM_STEP_ID) % 10000. */
FA4CP_API fa4cp_status fa4cp_nccl_comm_id_from_slurm(char *buf, size_t len);

/* ---- MPI communicators (the "mpi" transport of fa4cp_comm: host memory,
 * one rank per process, on any nodes; for the cpu backend in multi-process
 * launches without GPUs).  MPI is only a data transport: the world (PMIx or
 * the Slurm environment) comes first, MPI is initialised after it and its
 * ranks are checked against the world's.  Without MPI in the build every
 * call fails with FA4CP_ERR_UNSUPPORTED. */

/* 1 when this build has the mpi transport (configure --with-mpi). */
FA4CP_API int fa4cp_mpi_available(void);

/* MPI_Init_thread (unless the program initialised MPI already), bounded by
 * timeout_s (a rank that never arrives ends the job through
 * fa4cp_world_abort, naming the wait), then the check: MPI_COMM_WORLD must
 * have the world's size and give this process its world rank, else
 * FA4CP_ERR_LAUNCH saying how the two disagree and how to launch.  Needs a
 * world of one process per rank (FA4CP_ERR_UNSUPPORTED in local mode).
 * Called again: checks only. */
FA4CP_API fa4cp_status fa4cp_mpi_world_init(fa4cp_world *w, double timeout_s);

typedef struct fa4cp_mpi_comms {
    fa4cp_comm *world, *cp, *dp;
} fa4cp_mpi_comms;
/* The world, CP and DP groups of this process's rank by the layout (one
 * MPI_Comm_idup of MPI_COMM_WORLD each, collective over every process,
 * bounded by max(timeout_s, 30 s)); timeout_s bounds every wait of the
 * comms.  Calls fa4cp_mpi_world_init first. */
FA4CP_API fa4cp_status fa4cp_mpi_comm_create(fa4cp_world *w, const fa4cp_layout *l,
                                             double timeout_s, fa4cp_mpi_comms *out);
FA4CP_API void fa4cp_mpi_comms_destroy(fa4cp_mpi_comms *c);

/* The mpi transport over MPI_COMM_WORLD ranks 0..nranks-1 (nranks <= 0:
 * all) without a world (tests and tools run by mpirun/srun): initialises MPI
 * if needed (MPI_THREAD_SERIALIZED); every process of MPI_COMM_WORLD calls
 * it, in the same order as its other comm creations; a process past nranks
 * gets *out = NULL.  mpi_rank/mpi_size (optional) get this process's place
 * in MPI_COMM_WORLD. */
FA4CP_API fa4cp_status fa4cp_mpi_comm_world(int nranks, double timeout_s, fa4cp_comm **out,
                                            int *mpi_rank, int *mpi_size);

/* What this process's mpi transport waits for right now ("" when nothing),
 * for a watchdog's message, e.g. "all_gather number 3 of mpi comm cp0, from
 * rank(s) 2 (MPI rank 6)".  Any thread may ask. */
FA4CP_API void fa4cp_mpi_waiting_for(char *buf, size_t len);

/* MPI_Finalize when libfa4cp initialised MPI; a no-op otherwise, or when
 * called again.  fa4cp_world_finalize calls it for a world whose
 * fa4cp_mpi_world_init started MPI. */
FA4CP_API void fa4cp_mpi_finalize(void);



/* ------------------------------------------------------------------ workloads
 * Section owned by the runner work (lib/workload*.c). */

/* A workload file (docs/workloads.md) expands into cases: one fully resolved
 * configuration each.  The loader reports every problem as
 * "FILE:LINE:COL: key.path: what was expected (did you mean 'x'?)" through
 * fa4cp_last_error(), before anything is allocated for a run. */

typedef enum fa4cp_check_mode {
    FA4CP_CHECK_OFF = 0,     /* no verification */
    FA4CP_CHECK_SAMPLED = 1, /* a sample of rows per rank against a float64 row reference */
    FA4CP_CHECK_FULL = 2     /* every row against the non-CP reference (small cases) */
} fa4cp_check_mode;

typedef enum fa4cp_seq_dist {
    FA4CP_SEQ_EXPLICIT = 0, /* attention.sequences is a list of lengths */
    FA4CP_SEQ_EQUAL = 1,
    FA4CP_SEQ_UNIFORM = 2,
    FA4CP_SEQ_LOGNORMAL = 3
} fa4cp_seq_dist;

FA4CP_API const char *fa4cp_check_mode_name(fa4cp_check_mode mode);
FA4CP_API const char *fa4cp_seq_dist_name(fa4cp_seq_dist dist);

typedef struct fa4cp_case {
    const char *file;   /* the workload file (owned by the workload) */
    int doc;            /* 1-based YAML document of the file */
    int index;          /* 0-based case number within the file */
    char name[64];      /* `name:` of the document (default: the file's base name) */
    char label[256];    /* the sweep values of this case: "cp.comm=p2p attention.causal=true" */
    /* attention */
    int heads, kv_heads, head_dim;
    int head_dim_v;     /* of v, out, dout, dv: attention.head_dim_v (default head_dim) */
    fa4cp_dtype dtype;
    int causal;
    int window_left, window_right; /* -1 = unbounded */
    int layout_bshd;               /* 0 = thd, 1 = bshd (equal lengths) */
    int pad_between_seqs;
    fa4cp_seq_dist dist;
    int64_t gen_total;    /* generator: total tokens */
    int gen_min, gen_multiple_of;
    int batch;            /* number of sequences */
    int32_t *seqlen;      /* [batch] real tokens of each sequence */
    int32_t *cu_padded;   /* [batch+1] physical rows for this cp size */
    int64_t *cu_tokens;   /* [batch+1] logical (real) token where each sequence starts */
    int64_t tokens;       /* sum of seqlen */
    int64_t padded_tokens; /* cu_padded[batch] */
    int max_seqlen;
    /* context parallelism */
    int cp;
    fa4cp_cp_comm_type comm; /* cp.comm (fa4cp_cp_comm_name gives its name) */
    /* run */
    fa4cp_backend backend;
    int warmup, iters, backward;
    fa4cp_check_mode check;
    int samples;    /* sampled check: query rows and key rows per rank */
    uint64_t seed;
    double timeout_s;
    /* gates: minimum TFLOP/s per GPU (0 = none) */
    double gate_fwd_tflops, gate_bwd_tflops;
} fa4cp_case;

/* A command-line override "key.path=value" applied to every case after the
 * sweep (e.g. {"run.iters", "5"}). */
typedef struct fa4cp_override {
    const char *key;
    const char *value;
} fa4cp_override;

typedef struct fa4cp_workload fa4cp_workload;

/* Load, expand and validate a workload file (every YAML document of it).
 * A path that does not exist and has no '/' names a shipped workload:
 * fa4cp_workload_dir()/PATH, then fa4cp_workload_dir()/PATH.yaml
 * ("acceptance" -> /usr/local/share/fa4cp/jobs/acceptance.yaml). */
FA4CP_API fa4cp_status fa4cp_workload_load(const char *path, const fa4cp_override *ov, int nov,
                                 fa4cp_workload **out);
/* The same from memory; `name` stands for the file in messages. */
FA4CP_API fa4cp_status fa4cp_workload_load_buffer(const char *name, const void *buf, size_t len,
                                        const fa4cp_override *ov, int nov, fa4cp_workload **out);
/* Where shipped workloads are: $FA4CP_DATADIR/jobs, else the installed
 * $(pkgdatadir)/jobs (per-thread buffer). */
FA4CP_API const char *fa4cp_workload_dir(void);
FA4CP_API int fa4cp_workload_count(const fa4cp_workload *w);
FA4CP_API const fa4cp_case *fa4cp_workload_get(const fa4cp_workload *w, int i);
FA4CP_API void fa4cp_workload_free(fa4cp_workload *w);

/* "128k" -> 131072, "1M" -> 1048576, "2G" (k = 1024); plain integers too. */
FA4CP_API fa4cp_status fa4cp_parse_tokens(const char *text, int64_t *out);

/* The CP library's configuration of a case (comm shape, backend, THD format,
 * dtype, heads, mask): *cfg is set from FA4CP_CP_CONFIG_INIT and the case.
 * FA4CP_ERR_INVALID when cp.comm is not a CP comm shape. */
FA4CP_API fa4cp_status fa4cp_case_cp_config(const fa4cp_case *c, fa4cp_cp_config *cfg);
/* The case fits a world of `world_size` ranks (world_size % cp == 0). */
FA4CP_API fa4cp_status fa4cp_case_fit_world(const fa4cp_case *c, int world_size);
/* FLOPs of one forward and one backward (FlashAttention convention:
 * 2*(head_dim + head_dim_v) per visible (query, key) pair and head forward
 * - 2*B*H*S*Sk*(d+dv) for full masks, 4*d when dv == d - and 2.5x that
 * backward). */
FA4CP_API void fa4cp_case_flops(const fa4cp_case *c, double *fwd, double *bwd);
/* Estimated peak bytes per rank of the run (inputs, outputs, gradients,
 * communication buffers; with_full_check adds the full reference). */
FA4CP_API size_t fa4cp_case_memory(const fa4cp_case *c, int with_full_check);
/* FA4CP_ERR_NOMEM with both numbers when need > free_bytes ("what" names the memory). */
FA4CP_API fa4cp_status fa4cp_case_check_memory(const fa4cp_case *c, size_t need, size_t free_bytes,
                                     const char *what);
/* Relative-error tolerance of a check for results stored in dtype. */
FA4CP_API double fa4cp_check_tolerance(fa4cp_dtype dtype);

/* ---- the counter-based input generator
 * Element (tensor, global token, head, dim) of the workload with `seed`:
 * a hash of the five numbers turned into a standard normal, rounded to the
 * storage dtype.  The token is the logical token (real tokens counted across
 * the batch), so padding and sharding never change a value. */
enum { FA4CP_GEN_Q = 0, FA4CP_GEN_K = 1, FA4CP_GEN_V = 2, FA4CP_GEN_DOUT = 3 };
FA4CP_API double fa4cp_gen_value(uint64_t seed, int tensor, int64_t token, int head, int dim);
FA4CP_API double fa4cp_gen_element(const fa4cp_case *c, int tensor, int64_t token, int head, int dim);
/* The elements of one row at once (the fast way; same values): head_dim of
 * them for Q and K, head_dim_v for V and DOUT. */
FA4CP_API void fa4cp_gen_row(const fa4cp_case *c, int tensor, int64_t token, int head, double *out);
/* Logical token of physical row `row` (cp size cp, rank r holds local row);
 * -1 for a padding row. */
FA4CP_API int64_t fa4cp_case_local_token(const fa4cp_case *c, int rank, int64_t local_row);
/* Fill the local shard of rank `rank` of tensor (Q/DOUT: heads, K/V: kv_heads),
 * [padded_tokens/cp, h, d] in the case's dtype (d: head_dim for Q and K,
 * head_dim_v for V and DOUT); padding rows are 0. */
FA4CP_API void fa4cp_gen_fill_local(const fa4cp_case *c, int tensor, int rank, void *dst);

/* ---- the float64 row reference (streams over regenerated inputs)
 * Query row: token `i` of sequence `seq`, head h -> out[head_dim_v], lse, and
 * (when dq != NULL) dq[head_dim]; D = dout . out of the reference. */
FA4CP_API void fa4cp_ref_query_row(const fa4cp_case *c, int seq, int64_t i, int head, double *out,
                         double *lse, double *dq);
/* Key row: token j of sequence seq, kv head hk -> dk[head_dim], dv[head_dim_v], from the
 * global LSE and D (= rowsum(dout*out)) of each query row, read through
 * lse_d(ctx, seq, i, head, &lse, &D). */
typedef void (*fa4cp_lse_d_fn)(void *ctx, int seq, int64_t i, int head, double *lse, double *D);
FA4CP_API void fa4cp_ref_key_row(const fa4cp_case *c, int seq, int64_t j, int kv_head, fa4cp_lse_d_fn lse_d,
                       void *ctx, double *dk, double *dv);
/* Batched forms: n rows[] of one sequence in one pass over the other side.
 * Query rows cover every query head of kv head kv_head (group = heads /
 * kv_heads): out [n][group][head_dim_v], dq [n][group][head_dim], lse
 * [n][group] (dq NULL: no backward).  Key rows: dk [n][head_dim], dv
 * [n][head_dim_v]. */
FA4CP_API void fa4cp_ref_query_rows(const fa4cp_case *c, int seq, int n, const int64_t *rows, int kv_head,
                          double *out, double *lse, double *dq);
FA4CP_API void fa4cp_ref_key_rows(const fa4cp_case *c, int seq, int n, const int64_t *rows, int kv_head,
                        fa4cp_lse_d_fn lse_d, void *ctx, double *dk, double *dv);



#ifdef __cplusplus
}
#endif

#endif /* FA4CP_H */
