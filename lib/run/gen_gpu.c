/* gen_gpu.c - host side of the runner's GPU generator and GPU reference. */
#define _GNU_SOURCE
#include "core/internal.h"

#include <sched.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_gpu.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>

#include "../../kernels/run_kernels.h"
#endif

void run_gen_map(const fa4cp_case *c, int rank, int64_t *map)
{
    int cp = c->cp;
    for (int s = 0; s < c->batch; s++) {
        int64_t plen = (int64_t)c->cu_padded[s + 1] - c->cu_padded[s], chunk = plen / (2 * cp);
        int64_t lbase = c->cu_padded[s] / cp;
        for (int half = 0; half < 2; half++) {
            int64_t ci = half ? 2 * cp - 1 - rank : rank;
            int64_t *m = map + lbase + half * chunk;
            for (int64_t o = 0; o < chunk; o++) {
                int64_t off = ci * chunk + o;
                m[o] = off < c->seqlen[s] ? c->cu_tokens[s] + off : -1;
            }
        }
    }
}

int run_host_threads(int ranks)
{
    /* the cores this process may run on (a Slurm step's cpuset), else the online ones */
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (ranks > 1)
        n /= ranks;
    if (n > 64)
        n = 64;
    return n < 1 ? 1 : (int)n;
}

/* Rates of the model (elements generated per second), measured on an H200
 * (docs/performance.md, 2026-11-29): the GPU generator over the whole device
 * (1.07e10 elements of a 1M-token rank in 78 ms); one block of the GPU
 * reference (a key row of a 1M-token causal sequence regenerates 1.07e9
 * elements in 3.3 s), GPU_SMS blocks at a time, plus a fixed cost
 * (allocations, gathers, launches: ~12 ms); one host core, generator or
 * reference (not measured carefully). */
#define GPU_GEN_RATE 1.4e11
#define GPU_REF_RATE 3.2e8
#define GPU_REF_FIXED 0.012
#define GPU_SMS 132
#define HOST_GEN_RATE 1.0e7
#define HOST_REF_RATE 2.0e7
#define HOST_REF_FLOPS 1.0e9 /* the cpu backend's float64 attention, one core */

static double visible_keys(const fa4cp_case *c)
{
    double fwd = 0, bwd = 0;
    fa4cp_case_flops(c, &fwd, &bwd);
    return c->tokens > 0 ? fwd / (4.0 * c->head_dim * c->heads) / (double)c->tokens : 0;
}

/* the most rows one row of the reference streams over: the longest
 * sequence, or the window */
static double max_visible(const fa4cp_case *c)
{
    double n = c->max_seqlen;
    if (c->window_left >= 0) {
        double w = (double)c->window_left + (c->causal ? 0 : c->window_right < 0 ? n : c->window_right) + 1;
        if (w < n)
            n = w;
    }
    return n;
}

/* the GPU reference over every row and head of a rank */
static double gpu_full_seconds(const fa4cp_case *c)
{
    double rows = (double)c->tokens / c->cp, vis = visible_keys(c), d = c->head_dim;
    double blocks = rows * (c->heads + (c->backward ? c->kv_heads : 0));
    double per_block = vis * d * 2.0 * (c->backward ? (double)c->heads / c->kv_heads : 1);
    return GPU_REF_FIXED + per_block / GPU_REF_RATE * ceil(blocks / GPU_SMS);
}

int run_gpu_full_fits(const fa4cp_case *c)
{
    return (double)c->padded_tokens / c->cp * c->heads <= 4e6 && gpu_full_seconds(c) <= 60.0;
}

void run_estimate_case(const fa4cp_case *c, int host_threads, run_estimate *e)
{
    int cuda = c->backend == FA4CP_BACKEND_CUDA;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, group = h / hk;
    double rows = (double)c->padded_tokens / c->cp;
    double elems = rows * d * (h * (c->backward ? 2.0 : 1.0) + 2.0 * hk);
    double fwd = 0, bwd = 0;
    fa4cp_case_flops(c, &fwd, &bwd);
    /* visible (query, key) pairs per query row and head */
    double vis = c->tokens > 0 ? fwd / (4.0 * d * h) / (double)c->tokens : 0;
    memset(e, 0, sizeof *e);
    e->gen_s = elems / (cuda ? GPU_GEN_RATE : HOST_GEN_RATE);
    e->gen_where = cuda ? "GPU generator" : "host generator, one core";
    e->check_where = "no check";
    if (c->check == FA4CP_CHECK_SAMPLED) {
        /* query rows: every head of one kv head; key rows: each sees ~vis queries of each group head */
        /* the first key row and the last query row see a whole sequence */
        double blocks = (double)c->samples * group + (c->backward ? c->samples : 0);
        double per_block = max_visible(c) * d * 2.0 * (c->backward ? group : 1);
        if (cuda) {
            e->check_s = GPU_REF_FIXED + per_block / GPU_REF_RATE * ceil(blocks / GPU_SMS);
            e->check_where = "GPU reference, a row per block";
        } else {
            e->check_s = (double)c->samples * (vis * d * 2.0) * (c->backward ? 2.0 : 1.0) / HOST_REF_RATE /
                         (host_threads > 0 ? host_threads : 1);
            e->check_where = "host reference on threads";
        }
    } else if (c->check == FA4CP_CHECK_FULL && cuda && run_gen_gpu_built() && run_gpu_full_fits(c)) {
        e->check_s = gpu_full_seconds(c);
        e->check_where = "GPU reference on every row and head";
    } else if (c->check == FA4CP_CHECK_FULL) {
        e->check_s = (fwd + (c->backward ? bwd : 0)) / HOST_REF_FLOPS +
                     (double)c->tokens * d * (2.0 * h + 2.0 * hk) / HOST_GEN_RATE;
        e->check_where = "host float64 reference of the whole batch, one core";
    }
}

#ifdef HAVE_CUDA

int run_gen_gpu_built(void) { return 1; }

#define KCK(call, what)                                                                            \
    do {                                                                                           \
        int e_ = (call);                                                                           \
        if (e_) {                                                                                  \
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, what,        \
                                 cudaGetErrorString((cudaError_t)e_));                             \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

fa4cp_status run_gen_fill_gpu(const fa4cp_case *c, int tensor, const int64_t *dmap, int64_t rows, void *ddst,
                              void *stream)
{
    fa4cp_status st = FA4CP_OK;
    int h = (tensor == FA4CP_GEN_K || tensor == FA4CP_GEN_V) ? c->kv_heads : c->heads;
    KCK(fa4cp_kgen_fill((int)c->dtype, ddst, c->seed, tensor, dmap, rows, h, c->head_dim, stream),
        "the GPU generator");
out:
    return st;
}

fa4cp_status run_gen_rowdot_gpu(const fa4cp_case *c, const void *ddout, const void *dout_, const int64_t *dmap,
                                int64_t rows, double *dD, void *stream)
{
    fa4cp_status st = FA4CP_OK;
    KCK(fa4cp_kgen_rowdot((int)c->dtype, ddout, dout_, dmap, rows, c->heads, c->head_dim, dD, stream),
        "rowsum(dout * out) on the GPU");
out:
    return st;
}

static fa4cp_kref_case kcase(const fa4cp_case *c, int64_t local_rows)
{
    fa4cp_kref_case k;
    memset(&k, 0, sizeof k);
    k.dtype = (int)c->dtype;
    k.lse_fp64 = fa4cp_lse_dtype(c->dtype) == FA4CP_FP64;
    k.seed = c->seed;
    k.heads = c->heads;
    k.kv_heads = c->kv_heads;
    k.head_dim = c->head_dim;
    k.causal = c->causal;
    k.window_left = c->window_left;
    k.window_right = c->window_right;
    k.scale = 1.0 / sqrt((double)c->head_dim);
    k.backward = c->backward;
    k.cp = c->cp;
    k.rows = local_rows;
    return k;
}

/* rows, scratch and results of one launch */
typedef struct launch {
    fa4cp_kref_row *drows;
    double *da, *db, *dl, *derr;
    double *herr;
} launch;

static fa4cp_status launch_open(launch *L, const fa4cp_case *c, const run_ref_row *rows, int n, void *stream)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_kref_row *h = calloc((size_t)n, sizeof *h);
    memset(L, 0, sizeof *L);
    L->herr = calloc((size_t)n * FA4CP_KREF_NERR, sizeof(double));
    if (!h || !L->herr)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "out of memory for %d reference rows", n);
    for (int i = 0; i < n; i++) {
        int s = rows[i].seq;
        h[i].base = c->cu_tokens[s];
        h[i].len = c->seqlen[s];
        h[i].pos = rows[i].pos;
        h[i].local = rows[i].local;
        h[i].pstart = c->cu_padded[s];
        h[i].plen = (int64_t)c->cu_padded[s + 1] - c->cu_padded[s];
        h[i].head = rows[i].head;
    }
    size_t d = (size_t)c->head_dim;
    KCK(cudaMalloc((void **)&L->drows, sizeof *h * (size_t)n), "cudaMalloc (reference rows)");
    KCK(cudaMalloc((void **)&L->da, sizeof(double) * d * (size_t)n), "cudaMalloc (reference)");
    KCK(cudaMalloc((void **)&L->db, sizeof(double) * d * (size_t)n), "cudaMalloc (reference)");
    KCK(cudaMalloc((void **)&L->dl, sizeof(double) * (size_t)n), "cudaMalloc (reference)");
    KCK(cudaMalloc((void **)&L->derr, sizeof(double) * FA4CP_KREF_NERR * (size_t)n), "cudaMalloc (reference)");
    KCK(cudaMemcpyAsync(L->drows, h, sizeof *h * (size_t)n, cudaMemcpyHostToDevice, (cudaStream_t)stream),
        "reference rows to the GPU");
    KCK(cudaStreamSynchronize((cudaStream_t)stream), "reference rows to the GPU");
out:
    free(h);
    return st;
}

static fa4cp_status launch_close(launch *L, const fa4cp_case *c, int n, double *ra, double *rl, double *rb,
                                 run_ref_err *err, fa4cp_status st, void *stream)
{
    size_t d = (size_t)c->head_dim;
    cudaStream_t s = (cudaStream_t)stream;
    if (st)
        goto out;
    KCK(cudaStreamSynchronize(s), "the GPU reference");
    if (ra)
        KCK(cudaMemcpy(ra, L->da, sizeof(double) * d * (size_t)n, cudaMemcpyDeviceToHost), "reference to the host");
    if (rb)
        KCK(cudaMemcpy(rb, L->db, sizeof(double) * d * (size_t)n, cudaMemcpyDeviceToHost), "reference to the host");
    if (rl)
        KCK(cudaMemcpy(rl, L->dl, sizeof(double) * (size_t)n, cudaMemcpyDeviceToHost), "reference to the host");
    if (err) {
        KCK(cudaMemcpy(L->herr, L->derr, sizeof(double) * FA4CP_KREF_NERR * (size_t)n, cudaMemcpyDeviceToHost),
            "reference errors to the host");
        for (int i = 0; i < n; i++) {
            const double *e = L->herr + (size_t)i * FA4CP_KREF_NERR;
            err[i].d0 = e[FA4CP_KREF_D0];
            err[i].r0 = e[FA4CP_KREF_R0];
            err[i].d1 = e[FA4CP_KREF_D1];
            err[i].r1 = e[FA4CP_KREF_R1];
            err[i].lse = e[FA4CP_KREF_LSE];
        }
    }
out:
    cudaFree(L->drows);
    cudaFree(L->da);
    cudaFree(L->db);
    cudaFree(L->dl);
    cudaFree(L->derr);
    free(L->herr);
    return st;
}

static fa4cp_status check_dim(const fa4cp_case *c)
{
    if (c->head_dim > 1024)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "the GPU reference takes head_dim <= 1024, not %d",
                               c->head_dim);
    return FA4CP_OK;
}

fa4cp_status run_ref_query_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dout_,
                               const void *dlse, const void *ddq, int64_t local_rows, double *ref_out,
                               double *ref_lse, double *ref_dq, run_ref_err *err, void *stream)
{
    launch L;
    fa4cp_status st;
    if (n <= 0)
        return FA4CP_OK;
    if ((st = check_dim(c)))
        return st;
    if (!(st = launch_open(&L, c, rows, n, stream))) {
        fa4cp_kref_case k = kcase(c, local_rows);
        int e = fa4cp_kref_query(&k, L.drows, n, dout_, dlse, ddq, L.da, L.dl, L.db, dout_ ? L.derr : NULL,
                                 stream);
        if (e)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "the GPU reference (query rows): %s",
                                 cudaGetErrorString((cudaError_t)e));
    }
    return launch_close(&L, c, n, ref_out, ref_lse, c->backward ? ref_dq : NULL, dout_ ? err : NULL, st, stream);
}

fa4cp_status run_ref_key_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dglse,
                             const double *dgD, const void *ddk, const void *ddv, int64_t local_rows,
                             double *ref_dk, double *ref_dv, run_ref_err *err, void *stream)
{
    launch L;
    fa4cp_status st;
    if (n <= 0)
        return FA4CP_OK;
    if ((st = check_dim(c)))
        return st;
    if (!(st = launch_open(&L, c, rows, n, stream))) {
        fa4cp_kref_case k = kcase(c, local_rows);
        int e = fa4cp_kref_key(&k, L.drows, n, dglse, dgD, ddk, ddv, L.da, L.db, ddk ? L.derr : NULL, stream);
        if (e)
            st = fa4cp_set_error(FA4CP_ERR_CUDA, "the GPU reference (key rows): %s",
                                 cudaGetErrorString((cudaError_t)e));
    }
    return launch_close(&L, c, n, ref_dk, NULL, ref_dv, ddk ? err : NULL, st, stream);
}

#else /* no CUDA */

int run_gen_gpu_built(void) { return 0; }

static fa4cp_status no_cuda(void)
{
    return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "this build has no CUDA: no GPU generator or reference");
}

fa4cp_status run_gen_fill_gpu(const fa4cp_case *c, int tensor, const int64_t *dmap, int64_t rows, void *ddst,
                              void *stream)
{
    (void)c, (void)tensor, (void)dmap, (void)rows, (void)ddst, (void)stream;
    return no_cuda();
}

fa4cp_status run_gen_rowdot_gpu(const fa4cp_case *c, const void *ddout, const void *dout_, const int64_t *dmap,
                                int64_t rows, double *dD, void *stream)
{
    (void)c, (void)ddout, (void)dout_, (void)dmap, (void)rows, (void)dD, (void)stream;
    return no_cuda();
}

fa4cp_status run_ref_query_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dout_,
                               const void *dlse, const void *ddq, int64_t local_rows, double *ref_out,
                               double *ref_lse, double *ref_dq, run_ref_err *err, void *stream)
{
    (void)c, (void)rows, (void)n, (void)dout_, (void)dlse, (void)ddq, (void)local_rows, (void)ref_out;
    (void)ref_lse, (void)ref_dq, (void)err, (void)stream;
    return no_cuda();
}

fa4cp_status run_ref_key_gpu(const fa4cp_case *c, const run_ref_row *rows, int n, const void *dglse,
                             const double *dgD, const void *ddk, const void *ddv, int64_t local_rows,
                             double *ref_dk, double *ref_dv, run_ref_err *err, void *stream)
{
    (void)c, (void)rows, (void)n, (void)dglse, (void)dgD, (void)ddk, (void)ddv, (void)local_rows;
    (void)ref_dk, (void)ref_dv, (void)err, (void)stream;
    return no_cuda();
}

#endif
