/* bench_cp.c - the cost of the CP decomposition on one GPU, and the ring's
 * per-step compute and communication (not a test: prints a table).
 *
 * usage: bench_cp [--tokens 32768,65536,131072] [--cp 2,4,8] [--heads 16]
 *                 [--dim 128] [--dim-v DV] [--iters 3] [--warmup 1] [--gpus 1]
 *                 [--no-causal] [--nccl] [--no-ref] [--no-exec]
 *
 * --dim-v: the head dim of v, out, dout and dv (default --dim; MLA: --dim
 * 192 --dim-v 128).  TFLOP/s in the FlashAttention convention: forward
 * 2 * (d + dv) flops per visible (query, key) pair and head (4 d when dv =
 * d), backward 2.5 times that.
 * --gpus N spreads the ranks over N GPUs (rank r on GPU r % N); --nccl uses
 * the nccl transport (threads, one GPU per rank) instead of the local one;
 * --no-ref skips the non-CP and isolated timings (for the ring overlap runs);
 * --no-exec skips the executor (the raw calls alone: e.g. under ncu, whose
 * per-kernel durations split a backward step into preprocess, main kernel
 * and finish).
 *
 * For each length S (one sequence, bf16, BSHD) and CP size n:
 *   noncp     one cuda forward / backward on the whole sequence (CUDA events,
 *             median of iters);
 *   isolated  the attention calls of the p2p plan one at a time, with the
 *             executor's shapes: the diagonal step (T x T causal, T = S/n),
 *             a lower step (T x T/2) and an upper step (T/2 x T); summed over
 *             every rank's steps (n diagonals, n(n-1)/2 lower and upper):
 *             ratio_iso = that sum / noncp (the compute cost of the cut);
 *             each call timed alone on an idle stream, so a short call also
 *             pays the host's enqueue.  The backward calls are the
 *             executor's: a rank's steps over one set of queries are one dQ
 *             chain (fa4cp.h dq_carry: the preprocess in its first call, dq
 *             in its last), so each is timed by its place in its chain
 *             ("chain calls" line) and summed as the executor runs them;
 *             "single calls" sums every step as a whole backward call
 *             instead (ratio_iso_single: the cost before chains);
 *             the "queued" line times iters calls
 *             back to back instead (the host enqueuing ahead, as the
 *             executor's does): ratio_iso_queued, and its forward and
 *             backward parts; "host" is the CPU wall time of each of those
 *             queued calls (median, us): the GPU is still busy with the
 *             calls before, so it is the host's enqueue alone (checks,
 *             workspace, tensor maps, launches), what a single call on an
 *             idle stream waits for before its first kernel starts;
 *   executor  the CP forward then backward with n ranks as threads over the
 *             local device transport on `--gpus` GPUs (one GPU: every rank
 *             shares it); wall = host time from a barrier to every stream
 *             done; ratio_wall = wall / noncp on one GPU (everything the
 *             decomposition adds: merges, reorders, copies, smaller calls);
 *   steps     rank 0's per-step compute and communication from the CUDA
 *             events of fa4cp_cp_last_timing (on one GPU the ranks' kernels
 *             run side by side, so a rank's step takes longer than alone).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fa4cp.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_cp: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,               \
                    cudaGetErrorString(e_));                                                       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)
#define FK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != FA4CP_OK) {                                                                  \
            fprintf(stderr, "bench_cp: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,               \
                    fa4cp_last_error());                                                           \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static int H = 16, D = 128, DV = 0, iters = 3, warmup = 1, gpus = 1, causal = 1, use_nccl = 0, no_ref = 0,
           no_exec = 0;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *dalloc(size_t bytes)
{
    void *p = NULL;
    CK(cudaMalloc(&p, bytes));
    return p;
}

/* random bf16 in [-1, 1) (host generated once, uploaded) */
static void fill(void *d, size_t n, unsigned seed)
{
    uint16_t *h = malloc(n * 2);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = fa4cp_float_to_bf16(((float)(s >> 8) / (float)(1 << 24)) * 2.0f - 1.0f);
    }
    CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
}

/* iters calls (after warmup) of the forward a then the backward b, each
 * timed alone on an idle stream (the backward's host enqueue runs while the
 * forward does): the backward's median, the forward's into *fwd (if not
 * NULL).  tf, tb: [iters] scratch. */
static double time_alone(const fa4cp_attn_args *a, const fa4cp_attn_args *b, cudaEvent_t ev[3], double *tf,
                         double *tb, double *fwd)
{
    for (int it = -warmup; it < iters; it++) {
        float f, g;
        CK(cudaEventRecord(ev[0], NULL));
        FK(fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, a));
        CK(cudaEventRecord(ev[1], NULL));
        FK(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, b));
        CK(cudaEventRecord(ev[2], NULL));
        CK(cudaEventSynchronize(ev[2]));
        CK(cudaEventElapsedTime(&f, ev[0], ev[1]));
        CK(cudaEventElapsedTime(&g, ev[1], ev[2]));
        if (it >= 0) {
            tf[it] = f;
            tb[it] = g;
        }
    }
    if (fwd)
        *fwd = median(tf, iters);
    return median(tb, iters);
}

/* One attention shape: sq queries, sk keys, one sequence; median ms of fwd, bwd. */
typedef struct shape_t {
    double fwd, bwd;   /* median of single calls, each timed alone on an idle stream */
    double qfwd, qbwd; /* iters calls back to back (the host enqueuing ahead), per call */
    double hfwd, hbwd; /* host time (us) of each of those queued calls: its enqueue (median) */
    /* the backward as a call of a dQ chain (fa4cp.h dq_carry), by carry:
     * [0] a middle call, [1] FIRST, [2] LAST, [3] FIRST | LAST; alone (after
     * a forward, as bwd) and queued */
    double cbwd[4], cqbwd[4];
} shape_t;

/* A dQ chain of len backward calls (bench_cp's ratio_iso): the first of
 * shape first (FIRST; FIRST | LAST alone), the others of shape rest (0,
 * the last LAST); adds its times alone to *alone and queued to *queued. */
static void chain_add(const shape_t *first, const shape_t *rest, int len, double *alone,
                      double *queued)
{
    if (len == 1) {
        *alone += first->cbwd[3];
        *queued += first->cqbwd[3];
    } else if (len >= 2) {
        *alone += first->cbwd[1] + (len - 2) * rest->cbwd[0] + rest->cbwd[2];
        *queued += first->cqbwd[1] + (len - 2) * rest->cqbwd[0] + rest->cqbwd[2];
    }
}

static shape_t time_attn(int sq, int sk, int is_causal)
{
    shape_t r = {0};
    /* q, dq [sq, H, D]; k, dk [sk, H, D]; out, dout [sq, H, DV]; v, dv [sk, H, DV] */
    size_t nq = (size_t)sq * H * D, nk = (size_t)sk * H * D, no = (size_t)sq * H * DV, nv = (size_t)sk * H * DV;
    void *q = dalloc(nq * 2), *k = dalloc(nk * 2), *v = dalloc(nv * 2), *o = dalloc(no * 2);
    void *dout = dalloc(no * 2), *dq = dalloc(nq * 2), *dk = dalloc(nk * 2), *dv = dalloc(nv * 2);
    void *lse = dalloc((size_t)sq * H * 4);
    int32_t hcu[4] = {0, sq, 0, sk};
    int32_t *cu = dalloc(sizeof hcu);
    CK(cudaMemcpy(cu, hcu, sizeof hcu, cudaMemcpyHostToDevice));
    fill(q, nq, 1);
    fill(k, nk, 2);
    fill(v, nv, 3);
    fill(dout, no, 4);
    fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
    a.dtype = FA4CP_BF16;
    a.batch = 1;
    a.heads = a.kv_heads = H;
    a.head_dim = D;
    a.head_dim_v = DV;
    a.total_q = sq;
    a.total_k = sk;
    a.cu_seqlens_q = cu;
    a.cu_seqlens_k = cu + 2;
    a.max_seqlen_q = sq;
    a.max_seqlen_k = sk;
    a.causal = is_causal;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = o;
    a.lse = lse;
    a.dout = dout;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    cudaEvent_t ev[3];
    for (int i = 0; i < 3; i++)
        CK(cudaEventCreate(&ev[i]));
    double *tf = calloc((size_t)iters, sizeof *tf), *tb = calloc((size_t)iters, sizeof *tb);
    r.bwd = time_alone(&a, &a, ev, tf, tb, &r.fwd);
    /* Queued: iters forwards, then iters backwards, back to back between two
     * events.  A single call timed on an idle stream also charges the host's
     * enqueue (argument checks, tensor maps, launches: tens of us) to the GPU;
     * queued, the host runs ahead of the GPU as the CP executor's does, and
     * only the GPU's time per call is left. */
    {
        float f, b;
        CK(cudaEventRecord(ev[0], NULL));
        for (int it = 0; it < iters; it++) {
            double t0 = now_s();
            FK(fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &a));
            tf[it] = 1e6 * (now_s() - t0);
        }
        CK(cudaEventRecord(ev[1], NULL));
        for (int it = 0; it < iters; it++) {
            double t0 = now_s();
            FK(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &a));
            tb[it] = 1e6 * (now_s() - t0);
        }
        CK(cudaEventRecord(ev[2], NULL));
        CK(cudaEventSynchronize(ev[2]));
        CK(cudaEventElapsedTime(&f, ev[0], ev[1]));
        CK(cudaEventElapsedTime(&b, ev[1], ev[2]));
        r.qfwd = f / iters;
        r.qbwd = b / iters;
        r.hfwd = median(tf, iters);
        r.hbwd = median(tb, iters);
    }
    /* The backward as a call of a dQ chain (the CP executor's backward
     * calls: the preprocess in a chain's first call, dq in its last), each
     * carry value timed as bwd above: alone after a forward, then queued.
     * One FIRST | LAST call first, so that every variant's chain state
     * holds real D values.  With FA4CP_CARRY_NO_LEFT_WINDOW, as the p2p
     * executor's chains (no step has a left window). */
    {
        fa4cp_attn_args c = a;
        c.dq_carry_bytes = fa4cp_attn_bwd_carry_bytes(FA4CP_BACKEND_CUDA, &a);
        c.dq_carry = dalloc(c.dq_carry_bytes);
        c.carry = FA4CP_CARRY_FIRST | FA4CP_CARRY_LAST | FA4CP_CARRY_NO_LEFT_WINDOW;
        FK(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &c));
        for (int cv = 0; cv < 4; cv++) {
            float f;
            c.carry = cv | FA4CP_CARRY_NO_LEFT_WINDOW;
            r.cbwd[cv] = time_alone(&a, &c, ev, tf, tb, NULL);
            CK(cudaEventRecord(ev[1], NULL));
            for (int it = 0; it < iters; it++)
                FK(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &c));
            CK(cudaEventRecord(ev[2], NULL));
            CK(cudaEventSynchronize(ev[2]));
            CK(cudaEventElapsedTime(&f, ev[1], ev[2]));
            r.cqbwd[cv] = f / iters;
        }
        CK(cudaFree(c.dq_carry));
    }
    free(tf);
    free(tb);
    void *ps[] = {q, k, v, o, dout, dq, dk, dv, lse, cu};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        CK(cudaFree(ps[i]));
    for (int i = 0; i < 3; i++)
        CK(cudaEventDestroy(ev[i]));
    return r;
}

/* ------------------------------------------------------------------ the executor */

typedef struct rank_job {
    int r, n, S;
    fa4cp_comm *comm;
    double *wall; /* [iters], rank 0 writes */
    fa4cp_cp_timing tf, tb; /* last iteration */
    double compute_sum;     /* this rank's compute over steps, fwd + bwd, last iteration */
} rank_job;

static void *rank_main(void *p)
{
    rank_job *j = p;
    const int n = j->n, S = j->S;
    const int64_t T = S / n;
    CK(cudaSetDevice(j->r % gpus));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    size_t nq = (size_t)T * H * D, no = (size_t)T * H * DV; /* q, k (dq, dk); v, out, dout (dv) */
    void *q = dalloc(nq * 2), *k = dalloc(nq * 2), *v = dalloc(no * 2), *o = dalloc(no * 2);
    void *dout = dalloc(no * 2), *dq = dalloc(nq * 2), *dk = dalloc(nq * 2), *dv = dalloc(no * 2);
    void *lse = dalloc((size_t)T * H * 4);
    fill(q, nq, 11u + (unsigned)j->r);
    fill(k, nq, 21u + (unsigned)j->r);
    fill(v, no, 31u + (unsigned)j->r);
    fill(dout, no, 41u + (unsigned)j->r);
    fa4cp_cp_config cfg = FA4CP_CP_CONFIG_INIT;
    cfg.comm = FA4CP_CP_P2P;
    cfg.backend = FA4CP_BACKEND_CUDA;
    cfg.format = FA4CP_CP_BSHD;
    cfg.dtype = FA4CP_BF16;
    cfg.heads = cfg.kv_heads = H;
    cfg.head_dim = D;
    cfg.head_dim_v = DV;
    cfg.causal = causal;
    fa4cp_cp *cp = NULL;
    FK(fa4cp_cp_create(&cfg, j->comm, &cp));
    FK(fa4cp_cp_set_timing(cp, 1));
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    a.batch = 1;
    a.seqlen = S;
    a.q = q;
    a.k = k;
    a.v = v;
    a.out = o;
    a.lse = lse;
    a.dout = dout;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.stream = s;
    CK(cudaDeviceSynchronize());
    for (int it = -warmup; it < iters; it++) {
        FK(fa4cp_comm_barrier(j->comm));
        double t0 = now_s();
        FK(fa4cp_cp_fwd(cp, &a));
        fa4cp_cp_timing tf = FA4CP_CP_TIMING_INIT, tb = FA4CP_CP_TIMING_INIT;
        FK(fa4cp_cp_last_timing(cp, &tf)); /* waits for the forward's events */
        FK(fa4cp_cp_bwd(cp, &a));
        FK(fa4cp_cp_last_timing(cp, &tb));
        CK(cudaStreamSynchronize(s));
        FK(fa4cp_comm_barrier(j->comm));
        double t1 = now_s();
        if (it >= 0 && j->r == 0)
            j->wall[it] = 1e3 * (t1 - t0);
        j->tf = tf;
        j->tb = tb;
    }
    j->compute_sum = 0;
    for (int i = 0; i < j->tf.nsteps; i++)
        j->compute_sum += j->tf.compute_ms[i];
    for (int i = 0; i < j->tb.nsteps; i++)
        j->compute_sum += j->tb.compute_ms[i];
    fa4cp_cp_destroy(cp);
    void *ps[] = {q, k, v, o, dout, dq, dk, dv, lse};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        CK(cudaFree(ps[i]));
    CK(cudaStreamDestroy(s));
    return NULL;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (s && *s && n < max) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (s)
            s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    int tokens[8] = {32768, 65536, 131072}, ntok = 3, cps[8] = {2, 4, 8}, ncp = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--tokens") && v)
            ntok = parse_list(argv[++i], tokens, 8);
        else if (!strcmp(argv[i], "--cp") && v)
            ncp = parse_list(argv[++i], cps, 8);
        else if (!strcmp(argv[i], "--heads") && v)
            H = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && v)
            D = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim-v") && v)
            DV = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && v)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && v)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gpus") && v)
            gpus = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-causal"))
            causal = 0;
        else if (!strcmp(argv[i], "--nccl"))
            use_nccl = 1;
        else if (!strcmp(argv[i], "--no-ref"))
            no_ref = 1;
        else if (!strcmp(argv[i], "--no-exec"))
            no_exec = 1;
        else {
            fprintf(stderr, "usage: bench_cp [--tokens a,b] [--cp a,b] [--heads H] [--dim D] [--dim-v DV] "
                            "[--iters N] [--warmup N] [--gpus N] [--no-causal] [--nccl] [--no-ref] "
                            "[--no-exec]\n");
            return 1;
        }
    }
    if (DV == 0)
        DV = D;
    if (iters < 1 || H < 1 || gpus < 1 || D < 1 || DV < 1)
        return 1;
    if (fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, D, DV, 1) != FA4CP_OK) {
        fprintf(stderr, "bench_cp: %s\n", fa4cp_last_error());
        return 1;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < gpus) {
        fprintf(stderr, "bench_cp: %d GPU(s) asked, %d here\n", gpus, ndev);
        return 1;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("# bench_cp: %s, %d GPU(s) used, bf16, heads %d, d %d, dv %d, %s, p2p, iters %d (median), "
           "warmup %d\n",
           prop.name, gpus, H, D, DV, causal ? "causal" : "no mask", iters, warmup);
    printf("# %7s %3s | %9s %9s | %8s %8s %8s %8s %8s %8s | %9s | %9s %9s | %9s\n", "tokens", "cp",
           "noncp_f", "noncp_b", "diag_f", "diag_b", "low_f", "low_b", "up_f", "up_b", "ratio_iso",
           "cp_wall", "ratio_wall", "sum_comp");
    for (int ti = 0; ti < ntok; ti++) {
        const int S = tokens[ti];
        /* a shape not timed (--no-ref): every time NaN */
        const shape_t nan2 = {NAN, NAN, NAN, NAN, NAN, NAN, {NAN, NAN, NAN, NAN}, {NAN, NAN, NAN, NAN}};
        shape_t full = nan2;
        /* FlashAttention convention: 2 (d + dv) per visible pair and head (causal: half the pairs) */
        double fl = 2.0 * H * (double)S * S * (D + DV) * (causal ? 0.5 : 1.0);
        if (!no_ref) {
            full = time_attn(S, S, causal);
            printf("# non-CP %d tokens: fwd %.2f ms (%.0f TFLOP/s), bwd %.2f ms (%.0f TFLOP/s); queued fwd "
                   "%.3f ms (%.0f TFLOP/s), bwd %.3f ms (%.0f TFLOP/s)\n",
                   S, full.fwd, fl / full.fwd * 1e-9, full.bwd, 2.5 * fl / full.bwd * 1e-9, full.qfwd,
                   fl / full.qfwd * 1e-9, full.qbwd, 2.5 * fl / full.qbwd * 1e-9);
        }
        for (int ci = 0; ci < ncp; ci++) {
            const int n = cps[ci];
            if (S % (2 * n)) {
                printf("# %d tokens not divisible by 2*%d\n", S, n);
                continue;
            }
            const int T = S / n;
            if (use_nccl && n > gpus) {
                printf("# cp %d: nccl needs one GPU per rank (--gpus %d)\n", n, gpus);
                continue;
            }
            shape_t dg = no_ref ? nan2 : time_attn(T, T, causal);
            shape_t lo = no_ref ? nan2 : time_attn(T, T / 2, 0), up = no_ref ? nan2 : time_attn(T / 2, T, 0);
            double pairs = 0.5 * n * (n - 1);
            /* every step a whole backward call (a standalone fa4cp_attn_bwd) */
            double iso1 = causal ? n * (dg.fwd + dg.bwd) + pairs * (lo.fwd + lo.bwd + up.fwd + up.bwd)
                                 : n * n * (dg.fwd + dg.bwd);
            double qiso_f = causal ? n * dg.qfwd + pairs * (lo.qfwd + up.qfwd) : n * n * dg.qfwd;
            double qiso1_b = causal ? n * dg.qbwd + pairs * (lo.qbwd + up.qbwd) : n * n * dg.qbwd;
            /* The executor's backward calls (cp_exec_p2p.c): a rank's steps
             * over its whole Q (the diagonal first, its r lower steps with
             * the KV of ranks 0 .. r-1 last) are one dQ chain, those over
             * Q's second half (its n-1-r upper steps, in between) another;
             * without a mask every step is a T x T call of one chain. */
            double chb = 0, qchb = 0;
            for (int r = 0; r < n; r++) {
                if (!causal) {
                    chain_add(&dg, &dg, n, &chb, &qchb);
                    continue;
                }
                chain_add(&dg, &lo, r + 1, &chb, &qchb); /* the diagonal, then r lower steps */
                chain_add(&up, &up, n - 1 - r, &chb, &qchb);
            }
            double iso_f = causal ? n * dg.fwd + pairs * (lo.fwd + up.fwd) : n * n * dg.fwd;
            double ratio_iso = (iso_f + chb) / (full.fwd + full.bwd);
            double ratio_iso1 = iso1 / (full.fwd + full.bwd);
            double qiso_b = qchb;

            fa4cp_local_world *w = NULL;
            rank_job *jobs = calloc((size_t)n, sizeof *jobs);
            double cw = NAN, sc = NAN;
            if (!no_exec) {
                pthread_t *th = calloc((size_t)n, sizeof *th);
                double *wall = calloc((size_t)iters, sizeof *wall);
                fa4cp_comm *comms[64];
                if (use_nccl) {
                    int devs[64];
                    for (int r = 0; r < n; r++)
                        devs[r] = r % gpus;
                    FK(fa4cp_nccl_local_comms(n, devs, 600.0, comms));
                } else {
                    FK(fa4cp_local_world_create(n, 1, 600.0, &w));
                    for (int r = 0; r < n; r++)
                        FK(fa4cp_local_comm(w, r, &comms[r]));
                }
                for (int r = 0; r < n; r++) {
                    jobs[r].r = r;
                    jobs[r].n = n;
                    jobs[r].S = S;
                    jobs[r].wall = wall;
                    jobs[r].comm = comms[r];
                }
                for (int r = 0; r < n; r++)
                    pthread_create(&th[r], NULL, rank_main, &jobs[r]);
                for (int r = 0; r < n; r++)
                    pthread_join(th[r], NULL);
                cw = median(wall, iters);
                sc = 0;
                for (int r = 0; r < n; r++)
                    sc += jobs[r].compute_sum;
                for (int r = 0; r < n; r++)
                    fa4cp_comm_destroy(jobs[r].comm);
                fa4cp_local_world_destroy(w);
                free(th);
                free(wall);
            }
            printf("  %7d %3d | %9.2f %9.2f | %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f | %9.3f | %9.2f "
                   "%9.3f | %9.2f\n",
                   S, n, full.fwd, full.bwd, dg.fwd, dg.bwd, lo.fwd, lo.bwd, up.fwd, up.bwd,
                   ratio_iso, cw, gpus == 1 ? cw / (full.fwd + full.bwd) : NAN, sc);
            if (!no_ref)
                printf("    queued (%d calls back to back, ms per call): noncp %.3f/%.3f  diag %.3f/%.3f  "
                       "low %.3f/%.3f  up %.3f/%.3f  ratio_iso_queued %.3f (fwd %.3f, bwd %.3f)\n",
                       iters, full.qfwd, full.qbwd, dg.qfwd, dg.qbwd, lo.qfwd, lo.qbwd, up.qfwd, up.qbwd,
                       (qiso_f + qiso_b) / (full.qfwd + full.qbwd), qiso_f / full.qfwd, qiso_b / full.qbwd);
            if (!no_ref)
                printf("    host (us per queued call, median, fwd/bwd): noncp %.1f/%.1f  diag %.1f/%.1f  "
                       "low %.1f/%.1f  up %.1f/%.1f\n",
                       full.hfwd, full.hbwd, dg.hfwd, dg.hbwd, lo.hfwd, lo.hbwd, up.hfwd, up.hbwd);
            if (!no_ref) {
                printf("    chain calls (bwd ms alone/queued by carry: middle, FIRST, LAST, FIRST|LAST): diag");
                for (int v = 0; v < 4; v++)
                    printf(" %.3f/%.3f", dg.cbwd[v], dg.cqbwd[v]);
                printf("  low");
                for (int v = 0; v < 4; v++)
                    printf(" %.3f/%.3f", lo.cbwd[v], lo.cqbwd[v]);
                printf("  up");
                for (int v = 0; v < 4; v++)
                    printf(" %.3f/%.3f", up.cbwd[v], up.cqbwd[v]);
                printf("\n");
                printf("    single calls (every step a whole backward, no chains): ratio_iso_single %.3f, "
                       "queued %.3f (bwd %.3f)\n",
                       ratio_iso1, (qiso_f + qiso1_b) / (full.qfwd + full.qbwd), qiso1_b / full.qbwd);
            }
            for (int dir = 0; dir < 2 && !no_exec; dir++) {
                const fa4cp_cp_timing *t = dir ? &jobs[0].tb : &jobs[0].tf;
                double comp = 0, com = 0;
                printf("    rank 0 %s steps (compute/comm ms):", dir ? "bwd" : "fwd");
                for (int s2 = 0; s2 < t->nsteps; s2++) {
                    printf(" %.2f/%.2f", t->compute_ms[s2], t->comm_ms[s2]);
                    comp += t->compute_ms[s2];
                    com += t->comm_ms[s2];
                }
                /* overlap efficiency: compute over the call's wall time */
                printf("  call %.2f  compute/call %.3f  comm/compute %.3f\n", t->call_ms,
                       comp / t->call_ms, comp > 0 ? com / comp : 0.0);
            }
            free(jobs);
            fflush(stdout);
        }
    }
    return 0;
}
