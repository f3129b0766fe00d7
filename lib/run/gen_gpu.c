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
 * (the gathers, the launch and its wait; a 1k-token full check of 4 ranks
 * sharing the GPU took ~13 ms when every check allocated its buffers and
 * regenerated every row, ~6 ms with kept buffers and the batch generated
 * once, ~2.5 ms with the rows spread over the warps: docs/performance.md);
 * one host core, generator or
 * reference (not measured carefully). */
#define GPU_GEN_RATE 1.4e11
#define GPU_REF_RATE 3.2e8
#define GPU_REF_FIXED 0.002
#define GPU_READ_RATE 2.0e11 /* elements the reference reads from a pre-generated batch (not measured) */
#define GPU_SMS 132
#define HOST_GEN_RATE 1.0e7
#define HOST_REF_RATE 2.0e7
#define HOST_REF_FLOPS 1.0e9 /* the cpu backend's float64 attention, one core */

static double visible_keys(const fa4cp_case *c)
{
    double fwd = 0, bwd = 0;
    fa4cp_case_flops(c, &fwd, &bwd);
    /* fa4cp_case_flops: 2 * (d + dv) flops per visible pair and head */
    return c->tokens > 0 ? fwd / (2.0 * (c->head_dim + c->head_dim_v) * c->heads) / (double)c->tokens : 0;
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

/* elements of the whole batch's inputs (Q, K, V, dO) */
static double batch_elems(const fa4cp_case *c)
{
    return (double)c->tokens * (c->head_dim + c->head_dim_v) * (c->heads + c->kv_heads);
}

/* the GPU reference over every row and head of a rank; a row reads (d + dv)
 * elements per visible row of the other side, regenerated or (small
 * batches, run_ref_pregen_worth) read from the batch generated once */
static double gpu_full_seconds(const fa4cp_case *c)
{
    double rows = (double)c->tokens / c->cp, vis = visible_keys(c), w = c->head_dim + c->head_dim_v;
    double blocks = rows * (c->heads + (c->backward ? c->kv_heads : 0));
    double per_block = vis * w * (c->backward ? (double)c->heads / c->kv_heads : 1);
    if (run_ref_pregen_worth(c, (int64_t)(rows * c->heads), c->backward ? (int64_t)(rows * c->kv_heads) : 0))
        return GPU_REF_FIXED + batch_elems(c) / GPU_GEN_RATE + blocks * per_block / GPU_READ_RATE;
    return GPU_REF_FIXED + per_block / GPU_REF_RATE * ceil(blocks / GPU_SMS);
}

int run_ref_pregen_worth(const fa4cp_case *c, int64_t nq, int64_t nk)
{
    double bytes = batch_elems(c) * (double)fa4cp_dtype_size(c->dtype);
    double w = c->head_dim + c->head_dim_v, group = (double)c->heads / c->kv_heads;
    /* the rows the blocks would regenerate: ~the visible rows of the other side */
    double regen = ((double)nq + (double)nk * group) * visible_keys(c) * w;
    return bytes <= 256.0 * 1024 * 1024 && batch_elems(c) < regen;
}

int run_gpu_full_fits(const fa4cp_case *c)
{
    return (double)c->padded_tokens / c->cp * c->heads <= 4e6 && gpu_full_seconds(c) <= 60.0;
}

void run_estimate_case(const fa4cp_case *c, int host_threads, run_estimate *e)
{
    int cuda = c->backend == FA4CP_BACKEND_CUDA;
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dv = c->head_dim_v, group = h / hk;
    double rows = (double)c->padded_tokens / c->cp, w = d + dv;
    /* q, k: d wide; v, dout: dv wide */
    double elems = rows * ((double)h * d + (double)hk * w + (c->backward ? (double)h * dv : 0));
    double fwd = 0, bwd = 0;
    fa4cp_case_flops(c, &fwd, &bwd);
    /* visible (query, key) pairs per query row and head */
    double vis = visible_keys(c);
    memset(e, 0, sizeof *e);
    e->gen_s = elems / (cuda ? GPU_GEN_RATE : HOST_GEN_RATE);
    e->gen_where = cuda ? "GPU generator" : "host generator, one core";
    e->check_where = "no check";
    if (c->check == FA4CP_CHECK_SAMPLED) {
        /* query rows: every head of one kv head; key rows: each sees ~vis queries of each group head */
        /* the first key row and the last query row see a whole sequence */
        double blocks = (double)c->samples * group + (c->backward ? c->samples : 0);
        double per_block = max_visible(c) * w * (c->backward ? group : 1);
        if (cuda) {
            e->check_s = GPU_REF_FIXED + per_block / GPU_REF_RATE * ceil(blocks / GPU_SMS);
            e->check_where = "GPU reference, a row per block";
        } else {
            e->check_s = (double)c->samples * (vis * w) * (c->backward ? 2.0 : 1.0) / HOST_REF_RATE /
                         (host_threads > 0 ? host_threads : 1);
            e->check_where = "host reference on threads";
        }
    } else if (c->check == FA4CP_CHECK_FULL && cuda && run_gen_gpu_built() && run_gpu_full_fits(c)) {
        e->check_s = gpu_full_seconds(c);
        e->check_where = "GPU reference on every row and head";
    } else if (c->check == FA4CP_CHECK_FULL) {
        e->check_s = (fwd + (c->backward ? bwd : 0)) / HOST_REF_FLOPS +
                     (double)c->tokens * w * (h + hk) / HOST_GEN_RATE;
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
    int w = (tensor == FA4CP_GEN_V || tensor == FA4CP_GEN_DOUT) ? c->head_dim_v : c->head_dim;
    KCK(fa4cp_kgen_fill((int)c->dtype, ddst, c->seed, tensor, dmap, rows, h, w, stream), "the GPU generator");
out:
    return st;
}

fa4cp_status run_gen_rowdot_gpu(const fa4cp_case *c, const void *ddout, const void *dout_, const int64_t *dmap,
                                int64_t rows, double *dD, void *stream)
{
    fa4cp_status st = FA4CP_OK;
    KCK(fa4cp_kgen_rowdot((int)c->dtype, ddout, dout_, dmap, rows, c->heads, c->head_dim_v, dD, stream),
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
    k.head_dim_v = c->head_dim_v;
    k.causal = c->causal;
    k.window_left = c->window_left;
    k.window_right = c->window_right;
    k.scale = 1.0 / sqrt((double)c->head_dim);
    k.backward = c->backward;
    k.cp = c->cp;
    k.rows = local_rows;
    return k;
}

/* ------------------------------------------------------------------ the workspace */

/* free the device slots, and with pinned the pinned host ones too */
static void ws_free(run_ref_ws *ws, int pinned)
{
    int cur = -1;
    if (!ws->held)
        return;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != ws->device)
        (void)cudaSetDevice(ws->device);
    for (int i = 0; i < RUN_WS_NDEV; i++)
        if (ws->dev[i])
            (void)cudaFree(ws->dev[i]);
    memset(ws->dev, 0, sizeof ws->dev);
    memset(ws->dev_cap, 0, sizeof ws->dev_cap);
    for (int i = 0; pinned && i < RUN_WS_NPIN; i++)
        if (ws->pin[i])
            (void)cudaFreeHost(ws->pin[i]);
    if (cur >= 0 && cur != ws->device)
        (void)cudaSetDevice(cur);
    if (pinned)
        memset(ws, 0, sizeof *ws);
}

static void ws_free_all(run_ref_ws *ws) { ws_free(ws, 1); }

void run_ref_ws_release_dev(run_ref_ws *ws)
{
    if (ws)
        ws_free(ws, 0);
}

void run_ref_ws_release(run_ref_ws *ws)
{
    if (ws)
        ws_free_all(ws);
}

size_t run_ref_ws_bytes(const run_ref_ws *ws)
{
    size_t n = 0;
    for (int i = 0; i < RUN_WS_NDEV; i++)
        n += ws->dev_cap[i];
    for (int i = 0; i < RUN_WS_NPIN; i++)
        n += ws->pin_cap[i];
    return n;
}

/* the buffers stay on the GPU of their first use */
static int ws_here(run_ref_ws *ws)
{
    int cur = 0;
    if (cudaGetDevice(&cur) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    if (ws->held && ws->device != cur)
        ws_free_all(ws);
    ws->held = 1;
    ws->device = cur;
    return 0;
}

/* grow a slot: at least `bytes`, with room to spare so that a slightly
 * larger case does not reallocate, and at least 1 MiB (the rows and errors
 * of a few-thousand-row check: the few rows of a sampled check do not
 * leave slots that a small full check must grow again) */
static size_t grown(size_t bytes)
{
    size_t n = bytes + bytes / 4 + 256;
    return n < ((size_t)1 << 20) ? (size_t)1 << 20 : n;
}

/* a slot of device (pinned 0) or pinned host memory (1) of at least `bytes` */
static void *ws_slot(run_ref_ws *ws, void **mem, size_t *cap, size_t bytes, int pinned)
{
    if (ws_here(ws))
        return fa4cp_set_error(FA4CP_ERR_CUDA, "GPU reference: no current CUDA device"), NULL;
    if (*cap >= bytes && *mem)
        return *mem;
    if (*mem)
        (void)(pinned ? cudaFreeHost(*mem) : cudaFree(*mem));
    *mem = NULL;
    *cap = 0;
    size_t n = grown(bytes);
    cudaError_t e = pinned ? cudaMallocHost(mem, n) : cudaMalloc(mem, n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *mem = NULL;
        fa4cp_set_error(FA4CP_ERR_NOMEM, "GPU reference: %s of %zu bytes: %s", pinned ? "cudaMallocHost" : "cudaMalloc",
                        n, cudaGetErrorString(e));
        return NULL;
    }
    *cap = n;
    return *mem;
}

void *run_ref_ws_dev(run_ref_ws *ws, int slot, size_t bytes)
{
    return ws_slot(ws, &ws->dev[slot], &ws->dev_cap[slot], bytes, 0);
}

static void *ws_pin(run_ref_ws *ws, int slot, size_t bytes)
{
    return ws_slot(ws, &ws->pin[slot], &ws->pin_cap[slot], bytes, 1);
}

/* ------------------------------------------------------------------ one check */

static void to_krow(const fa4cp_case *c, const run_ref_row *r, fa4cp_kref_row *k)
{
    int s = r->seq;
    memset(k, 0, sizeof *k);
    k->base = c->cu_tokens[s];
    k->len = c->seqlen[s];
    k->pos = r->pos;
    k->local = r->local;
    k->pstart = c->cu_padded[s];
    k->plen = (int64_t)c->cu_padded[s + 1] - c->cu_padded[s];
    k->head = r->head;
}

/* the whole batch's Q, K, V, dO in logical order, into the SRC slot; 0 when
 * the GPU has no room for it (the blocks then regenerate their rows) */
static int pregenerate(const fa4cp_case *c, run_ref_ws *ws, fa4cp_kref_case *k, void *stream)
{
    size_t es = fa4cp_dtype_size(c->dtype), T = (size_t)c->tokens, at[4], total = 0;
    for (int t = 0; t < 4; t++) {
        int h = t == FA4CP_GEN_K || t == FA4CP_GEN_V ? c->kv_heads : c->heads;
        int w = t == FA4CP_GEN_V || t == FA4CP_GEN_DOUT ? c->head_dim_v : c->head_dim;
        at[t] = total;
        total += (T * h * w * es + 255) / 256 * 256;
    }
    unsigned char *src = run_ref_ws_dev(ws, RUN_WS_SRC, total);
    if (!src)
        return 0;
    for (int t = 0; t < 4; t++) {
        if (t == FA4CP_GEN_DOUT && !c->backward)
            continue; /* the query rows read no dO, the key rows do not run */
        if (run_gen_fill_gpu(c, t, NULL, (int64_t)T, src + at[t], stream))
            return -1;
        k->src[t] = src + at[t];
    }
    return 1;
}

fa4cp_status run_ref_gpu(const fa4cp_case *c, run_ref_ws *ws, const run_ref_job *j, void *stream)
{
    fa4cp_status st = FA4CP_OK;
    cudaStream_t s = (cudaStream_t)stream;
    const int nq = j->nq, nk = c->backward ? j->nk : 0, n = nq + nk;
    const size_t d = (size_t)c->head_dim, dv = (size_t)c->head_dim_v;
    if (n <= 0)
        return FA4CP_OK;
    if (c->head_dim > 1024 || c->head_dim_v > 1024)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "the GPU reference takes head_dim and head_dim_v <= 1024, not %d and %d", c->head_dim,
                               c->head_dim_v);
    if (ws_here(ws)) /* first: moving to another GPU frees what the ws holds */
        return fa4cp_set_error(FA4CP_ERR_CUDA, "GPU reference: no current CUDA device");
    if (nk > 0 && (!j->glse || !j->gD))
        return fa4cp_set_error(FA4CP_ERR_INTERNAL, "GPU reference: key rows without the gathered lse and D");
    int want_err = j->qerr || j->kerr;
    /* reference outputs asked for: out | lse | dq | dk | dv, doubles */
    size_t o_out = 0, o_lse = o_out + (size_t)nq * dv, o_dq = o_lse + (size_t)nq, o_dk = o_dq + (size_t)nq * d;
    size_t o_dv = o_dk + (size_t)nk * d, nref = o_dv + (size_t)nk * dv;
    int want_ref = j->ref_out || j->ref_lse || j->ref_dq || j->ref_dk || j->ref_dv;
    fa4cp_kref_row *hrows = ws_pin(ws, RUN_WS_PIN_ROWS, sizeof *hrows * (size_t)n);
    fa4cp_kref_row *drows = run_ref_ws_dev(ws, RUN_WS_ROWS, sizeof *drows * (size_t)n);
    double *derr = want_err ? run_ref_ws_dev(ws, RUN_WS_ERR, sizeof(double) * FA4CP_KREF_NERR * (size_t)n) : NULL;
    double *herr = want_err ? ws_pin(ws, RUN_WS_PIN_ERR, sizeof(double) * FA4CP_KREF_NERR * (size_t)n) : NULL;
    double *dref = want_ref ? run_ref_ws_dev(ws, RUN_WS_REF, sizeof(double) * nref) : NULL;
    if (!hrows || !drows || (want_err && (!derr || !herr)) || (want_ref && !dref))
        return FA4CP_ERR_NOMEM; /* the detail is set */
    for (int i = 0; i < nq; i++)
        to_krow(c, &j->qrows[i], &hrows[i]);
    for (int i = 0; i < nk; i++)
        to_krow(c, &j->krows[i], &hrows[nq + i]);
    fa4cp_kref_case k = kcase(c, j->local_rows);
    if (j->pregen && pregenerate(c, ws, &k, stream) < 0) {
        st = FA4CP_ERR_CUDA;
        goto out;
    }
    KCK(cudaMemcpyAsync(drows, hrows, sizeof *hrows * (size_t)n, cudaMemcpyHostToDevice, s), "reference rows to the GPU");
    fa4cp_kref_io io;
    memset(&io, 0, sizeof io);
    io.out = j->out;
    io.lse = j->lse;
    io.dq = c->backward ? j->dq : NULL;
    io.dk = j->dk;
    io.dv = j->dv;
    io.glse = j->glse;
    io.gD = j->gD;
    io.err = derr;
    if (dref) {
        io.ref_out = j->ref_out ? dref + o_out : NULL;
        io.ref_lse = j->ref_lse ? dref + o_lse : NULL;
        io.ref_dq = j->ref_dq && c->backward ? dref + o_dq : NULL;
        io.ref_dk = j->ref_dk ? dref + o_dk : NULL;
        io.ref_dv = j->ref_dv ? dref + o_dv : NULL;
    }
    KCK(fa4cp_kref_rows(&k, drows, nq, nk, &io, stream), "the GPU reference");
    if (herr)
        KCK(cudaMemcpyAsync(herr, derr, sizeof(double) * FA4CP_KREF_NERR * (size_t)n, cudaMemcpyDeviceToHost, s),
            "reference errors to the host");
    KCK(cudaStreamSynchronize(s), "the GPU reference");
    for (int i = 0; herr && i < n; i++) {
        run_ref_err *out = i < nq ? (j->qerr ? &j->qerr[i] : NULL) : (j->kerr ? &j->kerr[i - nq] : NULL);
        const double *e = herr + (size_t)i * FA4CP_KREF_NERR;
        if (!out)
            continue;
        out->d0 = e[FA4CP_KREF_D0];
        out->r0 = e[FA4CP_KREF_R0];
        out->d1 = e[FA4CP_KREF_D1];
        out->r1 = e[FA4CP_KREF_R1];
        out->lse = e[FA4CP_KREF_LSE];
    }
    struct {
        double *host;
        size_t off, count;
    } back[] = {{j->ref_out, o_out, (size_t)nq * dv},
                {j->ref_lse, o_lse, (size_t)nq},
                {c->backward ? j->ref_dq : NULL, o_dq, (size_t)nq * d},
                {j->ref_dk, o_dk, (size_t)nk * d},
                {j->ref_dv, o_dv, (size_t)nk * dv}};
    for (size_t i = 0; dref && i < sizeof back / sizeof back[0]; i++)
        if (back[i].host && back[i].count)
            KCK(cudaMemcpy(back[i].host, dref + back[i].off, sizeof(double) * back[i].count, cudaMemcpyDeviceToHost),
                "reference to the host");
out:
    if (st)
        (void)cudaStreamSynchronize(s); /* nothing of this check is left queued on the buffers */
    return st;
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

fa4cp_status run_ref_gpu(const fa4cp_case *c, run_ref_ws *ws, const run_ref_job *j, void *stream)
{
    (void)c, (void)ws, (void)j, (void)stream;
    return no_cuda();
}

void *run_ref_ws_dev(run_ref_ws *ws, int slot, size_t bytes)
{
    (void)ws, (void)slot, (void)bytes;
    no_cuda();
    return NULL;
}

size_t run_ref_ws_bytes(const run_ref_ws *ws)
{
    (void)ws;
    return 0;
}

void run_ref_ws_release(run_ref_ws *ws) { (void)ws; }

void run_ref_ws_release_dev(run_ref_ws *ws) { (void)ws; }

#endif
