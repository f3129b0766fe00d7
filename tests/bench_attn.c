/* bench_attn.c - speed of the cuda attention backend (a benchmark, not a test).
 *
 * usage: bench_attn [--json FILE] [--peak TFLOPS] [--iters N] [--quick] [--smoke] [--profile]
 *                   [--shape d,S,causal[,dv]]...   (S = 0: the varlen batch, S = -1: the FA4 anchor's,
 *                                                   -2: short GQA sequences, -3: decode-like GQA,
 *                                                   -4: mid-length GQA sequences)
 *                   [--bar] [--variants T1,T2,...] [--fwd] [--det]
 *
 * --shape may be given several times (up to 32); d is any head dim of the
 * cuda table (fa4cp_attn_supports) and dv the value head dim (default d;
 * 192,S,causal,128 is MLA's).  A shape whose head dims have no backward
 * kernel is timed forward only (bwd columns 0).
 *
 * bf16, B*S = 32768 tokens, hidden 2048 (H = 2048/d, integer division, as
 * shared/anchors/fa4_anchor.py: 10 heads at d 192, 21 at d 96), THD layout through the
 * public raw call fa4cp_attn_fwd/bwd(FA4CP_BACKEND_CUDA, ...), timed with CUDA
 * events around each call: warm-up, then the median of --iters calls, with
 * the inputs rotated over several buffer sets (together far beyond the 50 MB
 * L2).  FLOPs follow the FlashAttention convention: fwd 2*b*h*sq*sk*(d + dv),
 * halved when causal, bwd 2.5 x fwd; varlen sums the per-sequence FLOPs.  The FA4
 * anchor's varlen batch (shared/anchors/fa4_anchor.py: 8 sequences of 513 to
 * 12000 tokens, each padded to a multiple of 8, cu_seqlens + seqused, GQA
 * 32/8, d 128, causal) is the last shape of --bar and the full list.  The GQA
 * packing shapes (--shape only): S = -2, 256 sequences of 16 to 128 tokens
 * (sk = sq); S = -3, 32 sequences of 1 to 16 queries against 1k to 8k keys
 * (log-uniform, the decode-like case); S = -4, sequences of 256 to 1024
 * tokens (uniform, sk = sq) up to 32768 in all, where the packing heuristic
 * still packs; all H 32/8, their FLOPs the exact count of visible (query,
 * key) pairs (bottom-right causal when causal), each the same batch at every
 * call (the random varlen batch of S = 0 is drawn anew at each).  % peak is of
 * the measured bf16 matmul rate (--peak, default 761 TFLOP/s, the H100 anchor
 * of shared/reference/device.md).
 *
 * --det also times the deterministic backward (column "det", JSON
 * bwd_det_ms / bwd_det_tflops).
 *
 * --smoke runs one small varlen GQA case (fwd, bwd, deterministic bwd) per
 * head-dim family, dense and causal with a left window (d 128 also causal
 * without one: its 80-row causal kernel), and exits: the workload for
 * compute-sanitizer (--fwd --smoke: the forward only).  --fwd times the forward only (the backward columns print 0). */
#include "fa4cp.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_attn: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
                    cudaGetErrorString(e_));                                                       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)
#define FA(call)                                                                                   \
    do {                                                                                           \
        fa4cp_status s_ = (call);                                                                  \
        if (s_ != FA4CP_OK) {                                                                      \
            fprintf(stderr, "bench_attn: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
                    fa4cp_last_error());                                                           \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

#define TOKENS 32768
#define HIDDEN 2048
#define NSETS 3

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct bufs {
    void *q[NSETS], *k[NSETS], *v[NSETS], *out[NSETS], *dout[NSETS];
    float *lse[NSETS];
    void *dq, *dk, *dv;
    int32_t *cu, *used, *cuk;
    size_t bytes; /* of one [TOKENS, HIDDEN] bf16 tensor */
} bufs;

static void fill_random(void *dev, size_t bytes, const uint16_t *host) {
    CK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
}

static void bufs_init(bufs *b, size_t tokens) {
    memset(b, 0, sizeof *b);
    b->bytes = tokens * HIDDEN * 2;
    uint16_t *h = malloc(b->bytes);
    if (!h) {
        fprintf(stderr, "bench_attn: no host memory\n");
        exit(2);
    }
    for (size_t i = 0; i < b->bytes / 2; ++i) {
        float f = ((double)(rng() >> 11) / 9007199254740992.0) * 2.0 - 1.0;
        h[i] = fa4cp_float_to_bf16(f);
    }
    for (int s = 0; s < NSETS; ++s) {
        void **all[] = {&b->q[s], &b->k[s], &b->v[s], &b->out[s], &b->dout[s]};
        for (int j = 0; j < 5; ++j) {
            CK(cudaMalloc(all[j], b->bytes));
            fill_random(*all[j], b->bytes, h);
        }
        CK(cudaMalloc((void **)&b->lse[s], tokens * 64 * sizeof(float)));
    }
    CK(cudaMalloc(&b->dq, b->bytes));
    CK(cudaMalloc(&b->dk, b->bytes));
    CK(cudaMalloc(&b->dv, b->bytes));
    CK(cudaMalloc((void **)&b->cu, 1024 * sizeof(int32_t)));
    CK(cudaMalloc((void **)&b->used, 1024 * sizeof(int32_t)));
    CK(cudaMalloc((void **)&b->cuk, 1024 * sizeof(int32_t)));
    free(h);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* median ms of `iters` calls (fwd or bwd), after warm-up */
static float time_call(bufs *b, fa4cp_attn_args *a, int bwd, int iters) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float *ms = malloc(sizeof(float) * (size_t)iters);
    for (int it = -2; it < iters; ++it) {
        int s = (it + 2) % NSETS;
        a->q = b->q[s];
        a->k = b->k[s];
        a->v = b->v[s];
        a->out = b->out[s];
        a->lse = b->lse[s];
        a->dout = b->dout[s];
        CK(cudaEventRecord(e0, NULL));
        FA(bwd ? fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, a) : fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, a));
        CK(cudaEventRecord(e1, NULL));
        CK(cudaEventSynchronize(e1));
        if (it >= 0)
            CK(cudaEventElapsedTime(&ms[it], e0, e1));
    }
    qsort(ms, (size_t)iters, sizeof(float), cmp_float);
    float med = ms[iters / 2];
    free(ms);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return med;
}

typedef struct shape {
    int d, s, causal;
    /* 1: lengths drawn log-uniformly in [1k, 32k], 32768 tokens in all;
     * 2: the FA4 anchor's batch (GQA 32/8, padding between sequences);
     * 3: 256 short sequences, 4: decode-like, 5: mid-length (all GQA 32/8) */
    int varlen;
    int dv; /* value head dim, 0: d */
} shape;

static int fwd_only = 0; /* --fwd */
static int with_det = 0; /* --det */

static void run_shape(bufs *b, const shape *sh, int iters, double peak, FILE *json) {
    const int d = sh->d, dv = sh->dv ? sh->dv : sh->d;
    const int H = sh->varlen >= 2 ? 32 : HIDDEN / d, HK = sh->varlen >= 2 ? 8 : H;
    /* no backward kernel for these head dims: time the forward only */
    const int no_bwd = fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, d, dv, 1) != FA4CP_OK;
    const int fwd_only_here = fwd_only || no_bwd;
    int32_t cu[1024], used[1024], cuk[1024];
    int batch = 0, maxk = 0;
    cuk[0] = 0;
    double flops = 0;
    int maxlen = 0;
    cu[0] = 0;
    if (sh->varlen == 2) {
        static const int lens[] = {9000, 1023, 4097, 513, 12000, 3000, 777, 2357};
        for (batch = 0; batch < (int)(sizeof lens / sizeof lens[0]); ++batch) {
            const int pad = (lens[batch] + 7) / 8 * 8;
            used[batch] = lens[batch];
            cu[batch + 1] = cu[batch] + pad;
            flops += 2.0 * H * (double)lens[batch] * lens[batch] * (d + dv) / (sh->causal ? 2 : 1);
            if (pad > maxlen)
                maxlen = pad;
        }
    } else if (sh->varlen >= 3) {
        /* sq, sk of each sequence; the visible pairs counted exactly.  The
         * same batch at every call of the shape (each --variants value):
         * its own generator state, seeded by the shape, the global one kept */
        const uint64_t saved = rng_state;
        rng_state = 0x2545F4914F6CDD1Dull * (uint64_t)(sh->varlen + 1);
        batch = sh->varlen == 3 ? 256 : sh->varlen == 4 ? 32 : 1000;
        for (int i = 0; i < batch; ++i) {
            int lq, lk;
            if (sh->varlen == 5) {
                lq = 256 + (int)(rng() % 769);
                if (cu[i] + lq > TOKENS)
                    lq = TOKENS - cu[i];
                if (lq <= 0) {
                    batch = i;
                    break;
                }
                lk = lq;
            } else if (sh->varlen == 3) {
                lq = 16 + (int)(rng() % 113);
                lk = lq;
            } else {
                lq = 1 + (int)(rng() % 16);
                double u = (double)(rng() >> 11) / 9007199254740992.0;
                lk = (int)(1024.0 * pow(8.0, u));
            }
            cu[i + 1] = cu[i] + lq;
            cuk[i + 1] = cuk[i] + lk;
            double pairs = 0;
            for (int r = 0; r < lq; ++r) {
                int64_t vis = sh->causal ? (int64_t)r + lk - lq + 1 : lk;
                pairs += vis < 0 ? 0 : vis > lk ? lk : (double)vis;
            }
            flops += 2.0 * H * pairs * (d + dv);
            if (lq > maxlen)
                maxlen = lq;
            if (lk > maxk)
                maxk = lk;
        }
        rng_state = saved;
    } else if (sh->varlen) {
        int64_t total = 0;
        while (batch < 1000) {
            /* log-uniform in [1k, 32k]: short sequences are common, long ones rare */
            double u = (double)(rng() >> 11) / 9007199254740992.0;
            int len = (int)(1024.0 * pow(32.0, u));
            if (total + len > TOKENS)
                len = (int)(TOKENS - total);
            if (len <= 0)
                break;
            total += len;
            cu[batch + 1] = (int32_t)total;
            ++batch;
        }
    } else {
        batch = TOKENS / sh->s;
        for (int i = 0; i < batch; ++i)
            cu[i + 1] = cu[i] + sh->s;
    }
    for (int i = 0; i < batch && sh->varlen < 2; ++i) {
        double L = cu[i + 1] - cu[i];
        flops += 2.0 * H * L * L * (d + dv) / (sh->causal ? 2 : 1);
        if (L > maxlen)
            maxlen = (int)L;
    }
    if (sh->varlen < 3) {
        memcpy(cuk, cu, sizeof(int32_t) * (size_t)(batch + 1));
        maxk = maxlen;
    }
    if ((size_t)cuk[batch] * HK * d * 2 > b->bytes) {
        fprintf(stderr, "bench_attn: shape needs %zu bytes per K tensor, buffers have %zu\n",
                (size_t)cuk[batch] * HK * d * 2, b->bytes);
        exit(2);
    }
    if ((size_t)cu[batch] * H * d * 2 > b->bytes) {
        fprintf(stderr, "bench_attn: shape needs %zu bytes per tensor, buffers have %zu\n",
                (size_t)cu[batch] * H * d * 2, b->bytes);
        exit(2);
    }
    CK(cudaMemcpy(b->cu, cu, sizeof(int32_t) * (size_t)(batch + 1), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b->cuk, cuk, sizeof(int32_t) * (size_t)(batch + 1), cudaMemcpyHostToDevice));
    if (sh->varlen == 2)
        CK(cudaMemcpy(b->used, used, sizeof(int32_t) * (size_t)batch, cudaMemcpyHostToDevice));
    fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
    a.dtype = FA4CP_BF16;
    a.batch = batch;
    a.heads = H;
    a.kv_heads = HK;
    a.head_dim = d;
    a.head_dim_v = dv;
    a.total_q = cu[batch];
    a.total_k = cuk[batch];
    a.cu_seqlens_q = b->cu;
    a.cu_seqlens_k = b->cuk;
    if (sh->varlen == 2)
        a.seqused_q = a.seqused_k = b->used;
    a.max_seqlen_q = maxlen;
    a.max_seqlen_k = maxk;
    a.causal = sh->causal;
    a.dq = b->dq;
    a.dk = b->dk;
    a.dv = b->dv;
    float fms = time_call(b, &a, 0, iters);
    float bms = fwd_only_here ? 0.f : time_call(b, &a, 1, iters);
    float dms = 0;
    if (with_det && !fwd_only_here) {
        a.deterministic = 1;
        dms = time_call(b, &a, 1, iters);
        a.deterministic = 0;
    }
    double ftf = flops / fms / 1e9, btf = fwd_only_here ? 0.0 : 2.5 * flops / bms / 1e9,
           dtf = dms > 0 ? 2.5 * flops / dms / 1e9 : 0;
    char sname[32];
    if (sh->varlen == 2)
        snprintf(sname, sizeof sname, "fa4-varlen");
    else if (sh->varlen == 3)
        snprintf(sname, sizeof sname, "gqa-short");
    else if (sh->varlen == 4)
        snprintf(sname, sizeof sname, "gqa-decode");
    else if (sh->varlen == 5)
        snprintf(sname, sizeof sname, "gqa-mid");
    else if (sh->varlen)
        snprintf(sname, sizeof sname, "varlen(%d)", batch);
    else
        snprintf(sname, sizeof sname, "%d", sh->s);
    char dname[16];
    if (dv != d)
        snprintf(dname, sizeof dname, "%d/%d", d, dv);
    else
        snprintf(dname, sizeof dname, "%d", d);
    printf("| %7s | %-11s | %2d | %2d | %-3s | %8.3f | %6.1f | %5.1f%% | %8.3f | %6.1f | %5.1f%% |", dname, sname,
           batch, H, sh->causal ? "yes" : "no", fms, ftf, 100 * ftf / peak, bms, btf, 100 * btf / peak);
    if (with_det)
        printf(" %8.3f | %6.1f | %4.2f |", dms, dtf, dtf / btf);
    printf("\n");
    fflush(stdout);
    if (json) {
        fprintf(json,
                "{\"backend\": \"fa4cp\", \"d\": %d, \"dv\": %d, \"s\": %d, \"varlen\": %d, \"B\": %d, "
                "\"H\": %d, \"Hk\": %d, \"causal\": %s, \"tuning\": \"%s\", \"fwd_ms\": %.4f, "
                "\"fwd_tflops\": %.1f, \"bwd_ms\": %.4f, \"bwd_tflops\": %.1f",
                d, dv, sh->varlen ? maxlen : sh->s, sh->varlen, batch, H, HK, sh->causal ? "true" : "false",
                getenv("FA4CP_CUDA_TUNING") ? getenv("FA4CP_CUDA_TUNING") : "0", fms, ftf, bms, btf);
        if (with_det)
            fprintf(json, ", \"bwd_det_ms\": %.4f, \"bwd_det_tflops\": %.1f", dms, dtf);
        fprintf(json, "}\n");
        fflush(json);
    }
}

/* small varlen GQA case for compute-sanitizer, every head-dim family of the
 * cuda table: fwd, and bwd + deterministic bwd where the table has them */
static int smoke(void) {
    const int H = 4, HK = 2;
    int32_t cu[4] = {0, 200, 205, 480}, used[3] = {190, 0, 270};
    const int total = 480;
    static const int fams[][2] = {{32, 32}, {64, 64}, {80, 80}, {96, 96}, {128, 128}, {192, 192}, {192, 128}, {256, 256}};
    int ran = 0;
    for (size_t fi = 0; fi < sizeof fams / sizeof fams[0]; ++fi)
        for (int cm = 0; cm < 3; ++cm) {
            /* cm 2: causal without a window, d 128 only (the 80-row causal
             * kernel; with the left window it runs 64-row steps) */
            const int d = fams[fi][0], dvw = fams[fi][1], causal = cm > 0;
            if (cm == 2 && !(d == 128 && dvw == 128))
                continue;
            if (fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, d, dvw, 0) != FA4CP_OK)
                continue;
            const int bwd = !fwd_only && fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, d, dvw, 1) == FA4CP_OK;
            size_t nq = (size_t)total * H * d, nk = (size_t)total * HK * d; /* dvw <= d */
            void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
            float *lse;
            int32_t *dcu, *dused;
            uint16_t *h = malloc(nq * 2);
            for (size_t i = 0; i < nq; ++i)
                h[i] = fa4cp_float_to_bf16((float)((double)(rng() % 2001) / 1000.0 - 1.0));
            CK(cudaMalloc(&q, nq * 2));
            CK(cudaMalloc(&o, nq * 2));
            CK(cudaMalloc(&dout, nq * 2));
            CK(cudaMalloc(&dq, nq * 2));
            CK(cudaMalloc(&k, nk * 2));
            CK(cudaMalloc(&v, nk * 2));
            CK(cudaMalloc(&dk, nk * 2));
            CK(cudaMalloc(&dv, nk * 2));
            CK(cudaMalloc((void **)&lse, (size_t)total * H * 4));
            CK(cudaMalloc((void **)&dcu, sizeof cu));
            CK(cudaMalloc((void **)&dused, sizeof used));
            CK(cudaMemcpy(q, h, nq * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dout, h, nq * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(k, h, nk * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(v, h + 7, nk * 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dcu, cu, sizeof cu, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(dused, used, sizeof used, cudaMemcpyHostToDevice));
            /* outputs start initialised, so initcheck-style reads of padding stay defined */
            CK(cudaMemset(o, 0, nq * 2));
            CK(cudaMemset(lse, 0, (size_t)total * H * 4));
            fa4cp_attn_args a = FA4CP_ATTN_ARGS_INIT;
            a.dtype = FA4CP_BF16;
            a.batch = 3;
            a.heads = H;
            a.kv_heads = HK;
            a.head_dim = d;
            a.head_dim_v = dvw;
            a.total_q = a.total_k = total;
            a.cu_seqlens_q = a.cu_seqlens_k = dcu;
            a.seqused_q = a.seqused_k = dused;
            a.causal = causal;
            a.window_left = cm == 1 ? 100 : -1;
            a.q = q;
            a.k = k;
            a.v = v;
            a.out = o;
            a.lse = lse;
            a.dout = dout;
            a.dq = dq;
            a.dk = dk;
            a.dv = dv;
            FA(fa4cp_attn_fwd(FA4CP_BACKEND_CUDA, &a));
            if (bwd) {
                FA(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &a));
                a.deterministic = 1;
                FA(fa4cp_attn_bwd(FA4CP_BACKEND_CUDA, &a));
            }
            CK(cudaDeviceSynchronize());
            ++ran;
            void *all[] = {q, k, v, o, dout, dq, dk, dv, lse, dcu, dused};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
                CK(cudaFree(all[i]));
            free(h);
        }
    printf("smoke: %d runs of every head-dim family (fwd; bwd and deterministic bwd where the table has them), "
           "causal+window and not, d 128 causal without a window too\n", ran);
    return 0;
}

int main(int argc, char **argv) {
    const char *json_path = NULL;
    double peak = 761.0;
    int iters = 10, quick = 0, bar = 0, profile = 0;
    const char *variants = NULL;
    static shape many[32];
    int nmany = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else if (!strcmp(argv[i], "--peak") && i + 1 < argc)
            peak = atof(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--bar")) /* the shapes of the speed bar (d 128 S >= 4k, d 64, FA4 varlen) */
            bar = 1;
        else if (!strcmp(argv[i], "--variants") && i + 1 < argc)
            /* A/B timing: each shape once per FA4CP_CUDA_TUNING value in the list */
            variants = argv[++i];
        else if (!strcmp(argv[i], "--fwd"))
            fwd_only = 1;
        else if (!strcmp(argv[i], "--det"))
            with_det = 1;
        else if (!strcmp(argv[i], "--smoke"))
            return smoke(); /* after --fwd: the forward only */
        else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            /* d,S,causal[,dv] (S = 0: varlen, -1: the FA4 anchor's batch) */
            shape one = {0, 0, 0, 0, 0};
            int n = sscanf(argv[++i], "%d,%d,%d,%d", &one.d, &one.s, &one.causal, &one.dv);
            if (nmany == (int)(sizeof many / sizeof many[0])) {
                fprintf(stderr, "bench_attn: at most %d --shape\n", nmany);
                return 2;
            }
            if (n < 3 || one.s < -4 || (one.s > 0 && TOKENS % one.s != 0) || one.d < 1 || one.d > HIDDEN ||
                one.dv < 0 || one.dv > one.d) {
                fprintf(stderr, "bench_attn: --shape %s: want d,S,causal[,dv] with S dividing %d (0: varlen, "
                                "-1: the FA4 anchor's batch, -2: short GQA, -3: decode-like GQA, -4: mid-length "
                                "GQA) and dv <= d\n",
                        argv[i], TOKENS);
                return 2;
            }
            if (fa4cp_attn_supports(FA4CP_BACKEND_CUDA, FA4CP_BF16, one.d, one.dv, 0) != FA4CP_OK) {
                fprintf(stderr, "bench_attn: --shape %s: %s\n", argv[i], fa4cp_last_error());
                return 2;
            }
            one.varlen = one.s == 0 ? 1 : one.s < 0 ? 1 - one.s : 0;
            many[nmany++] = one;
            quick = 3;
        }
        else {
            fprintf(stderr, "usage: bench_attn [--json FILE] [--peak TFLOPS] [--iters N] [--quick] [--smoke] [--profile] [--shape d,S,causal] [--bar] [--variants T1,...] [--fwd] [--det]\n");
            return 2;
        }
    }
    if (iters < 1)
        iters = 1;
    if (!fa4cp_backend_available(FA4CP_BACKEND_CUDA)) {
        printf("bench_attn: the cuda backend is not available here (no Hopper GPU, or a build without CUDA)\n");
        return 0;
    }
    FILE *json = json_path ? fopen(json_path, "w") : NULL;
    struct cudaDeviceProp prop;
    int dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("bench_attn: %s, %d SMs, bf16, B*S = %d tokens, hidden %d, median of %d, peak %.0f TFLOP/s\n",
           prop.name, prop.multiProcessorCount, TOKENS, HIDDEN, iters, peak);
    bufs b;
    bufs_init(&b, 2 * TOKENS + 64); /* the FA4 varlen batch: 32792 rows of 32 x 128 */
    static const shape full[] = {
        {64, 4096, 0, 0, 0},   {64, 16384, 0, 0, 0},  {64, 16384, 1, 0, 0},  {128, 1024, 0, 0, 0},
        {128, 4096, 0, 0, 0},  {128, 8192, 0, 0, 0},  {128, 8192, 1, 0, 0},  {128, 16384, 0, 0, 0},
        {128, 16384, 1, 0, 0}, {128, 32768, 1, 0, 0}, {128, 0, 0, 1, 0},     {128, 0, 1, 1, 0},
        {128, 0, 1, 2, 0},
    };
    static const shape fast[] = {{128, 4096, 0, 0, 0}, {128, 16384, 1, 0, 0}, {128, 0, 1, 1, 0}};
    static const shape barl[] = {{128, 4096, 0, 0, 0},  {128, 8192, 0, 0, 0},  {128, 8192, 1, 0, 0},
                                 {128, 16384, 0, 0, 0}, {128, 16384, 1, 0, 0}, {128, 32768, 1, 0, 0},
                                 {64, 16384, 1, 0, 0},  {128, 0, 1, 2, 0}};
    const shape *list = quick ? fast : full;
    size_t n = quick ? sizeof fast / sizeof fast[0] : sizeof full / sizeof full[0];
    if (quick == 3) { /* --shape */
        list = many;
        n = (size_t)nmany;
    } else if (bar) {
        list = barl;
        n = sizeof barl / sizeof barl[0];
    }
    if (profile) { /* --profile: the first shape (of --shape, or d128 S4096), one timed call each, for ncu */
        n = 1;
        iters = 1;
    }
    printf("|  d (/dv) | S           |  B |  H | causal | fwd ms | fwd TFLOP/s | %%peak | bwd ms | bwd TFLOP/s | %%peak |%s\n",
           with_det ? " det bwd ms | det TFLOP/s | det/bwd |" : "");
    for (size_t i = 0; i < n; ++i) {
        if (!variants) {
            run_shape(&b, &list[i], iters, peak, json);
            continue;
        }
        char vl[256];
        snprintf(vl, sizeof vl, "%s", variants);
        for (char *v = strtok(vl, ","); v; v = strtok(NULL, ",")) {
            setenv("FA4CP_CUDA_TUNING", v, 1); /* read by the library at every call */
            printf("tuning %-4s ", v);
            run_shape(&b, &list[i], iters, peak, json);
        }
    }
    if (json)
        fclose(json);
    return 0;
}
