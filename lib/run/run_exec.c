/* run_exec.c - one case on one rank: inputs, timed CP calls, verification.
 *
 * Inputs come from the counter-based generator (fa4cp_gen_fill_local; on the
 * cuda backend its GPU twin, run_dev_generate, with no host copy), so every
 * rank builds its own shard and the global tensors are the same for every cp
 * size and comm shape.  Verification (run_verify.c; on cuda the GPU
 * reference, run_verify_gpu, for the sampled check and small full checks):
 *   full:    the CP group's outputs are all-gathered; CP rank 0 runs the
 *            non-CP reference (the cpu backend in float64 on the unpadded
 *            batch) and compares every real row;
 *   sampled: each rank recomputes `samples` of its query rows (out, lse, dq,
 *            every query head of one kv head per sequence)
 *            and of its key rows (dk, dv) with the float64 row reference,
 *            which streams over regenerated inputs; dk/dv use the global LSE
 *            and D = rowsum(dout*out) all-gathered from the CP forward.
 * Errors are relative norms per tensor (lse: max |diff| / max(1, |lse|)).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "fa4cp.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen_gpu.h"
#include "run_case.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

const char *const run_err_names[NERR] = {"out", "lse", "dq", "dk", "dv"};

/* ------------------------------------------------------------------ signals */

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
    if (stop_sig == sig) { /* the second time: at once */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_sig = sig;
}

void run_signals_install(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
    for (int i = 0; i < 3; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

int run_stop_signal(void) { return stop_sig; }

void run_phase_text(const fa4cp_case *c, int phase, int iter, char *buf, size_t len)
{
    switch (phase) {
    case RUN_PHASE_START: snprintf(buf, len, "starting the case"); break;
    case RUN_PHASE_GEN: snprintf(buf, len, "generating its inputs"); break;
    case RUN_PHASE_WARM_FWD: snprintf(buf, len, "forward warm-up %d of %d", iter + 1, c->warmup); break;
    case RUN_PHASE_FWD: snprintf(buf, len, "forward iteration %d of %d", iter + 1, c->iters); break;
    case RUN_PHASE_WARM_BWD: snprintf(buf, len, "backward warm-up %d of %d", iter + 1, c->warmup); break;
    case RUN_PHASE_BWD: snprintf(buf, len, "backward iteration %d of %d", iter + 1, c->iters); break;
    case RUN_PHASE_CHECK: snprintf(buf, len, "verifying"); break;
    default: snprintf(buf, len, "done"); break;
    }
}

void run_cp_progress_text(const fa4cp_cp_progress *p, int phase, char *buf, size_t len)
{
    if (phase < RUN_PHASE_WARM_FWD || phase > RUN_PHASE_BWD)
        return;
    int ops = __atomic_load_n(&p->ops, __ATOMIC_ACQUIRE);
    if (ops <= 0)
        return;
    int op = __atomic_load_n(&p->op, __ATOMIC_RELAXED), step = __atomic_load_n(&p->step, __ATOMIC_RELAXED);
    int peer = __atomic_load_n(&p->peer, __ATOMIC_RELAXED);
    size_t at = strlen(buf);
    if (at >= len)
        return;
    at += (size_t)snprintf(buf + at, len - at, ", CP operation %d: %s", ops, fa4cp_cp_op_name((fa4cp_cp_op)op));
    if (at < len && step >= 0)
        at += (size_t)snprintf(buf + at, len - at, " %s step %d", op == FA4CP_CP_OP_SENDRECV ? "beside" : "of", step);
    if (at < len && peer >= 0)
        snprintf(buf + at, len - at, ", receiving from CP rank %d", peer);
}

#ifdef FA4CP_CP_CONFIG_INIT

int run_exec_available(void) { return 1; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
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

static fa4cp_status make_cp(const fa4cp_case *c, fa4cp_comm *comm, fa4cp_cp **out)
{
    fa4cp_cp_config cfg;
    fa4cp_status st = fa4cp_case_cp_config(c, &cfg);
    if (st)
        return st;
    return fa4cp_cp_create(&cfg, comm, out);
}

int run_plan_print(const fa4cp_case *c, int cp_rank, FILE *f)
{
    fa4cp_cp_config cfg;
    fa4cp_cp_plan *plan = NULL;
    if (fa4cp_case_cp_config(c, &cfg))
        return -1;
    if (fa4cp_cp_plan_build(&cfg, c->cp, cp_rank, &plan))
        return -1;
    /* each line as a comment, so the table and TAP stay parseable */
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m) {
        fa4cp_cp_plan_print(plan, m);
        fclose(m);
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            fprintf(f, "#     %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
        }
        free(text);
    }
    fa4cp_cp_plan_free(plan);
    return 0;
}

/* one timed call: CUDA events on the cuda backend, host clock on the cpu */
/* ------------------------------------------------------------------ progress and stopping */

static void set_phase(rank_result *r, int phase, int iter)
{
    __atomic_store_n(&r->iter, iter, __ATOMIC_RELAXED);
    double t = now_ms() * 1e-3;
    __atomic_store(&r->phase_t, &t, __ATOMIC_RELAXED);
    __atomic_store_n(&r->phase, phase, __ATOMIC_RELEASE);
}

/* Before a timed iteration, every rank of the group learns whether one of
 * them was asked to stop (an all-reduce of the signal: all stop at the same
 * iteration, so none is left waiting in a collective).  Host transports; a
 * device transport keeps its barrier and stops between cases. */
static fa4cp_status sync_or_stop(fa4cp_comm *comm, int *stop)
{
    *stop = 0;
    if (fa4cp_comm_device_memory(comm))
        return fa4cp_comm_barrier(comm);
    float mine = (float)run_stop_signal(), all = 0;
    fa4cp_comm_req *req = NULL;
    fa4cp_status st = fa4cp_comm_all_reduce(comm, &mine, &all, 1, FA4CP_FP32, FA4CP_REDUCE_MAX, NULL, &req);
    if (!st)
        st = fa4cp_comm_wait(comm, req, NULL);
    *stop = st ? 0 : (int)all;
    return st;
}

static fa4cp_status timed_call(devbufs *d, fa4cp_cp *cp, const fa4cp_cp_args *a, int bwd, double *ms,
                               rank_result *r)
{
    if (d->on)
        return run_dev_timed(d, cp, a, bwd, ms, r);
    double t0 = now_ms();
    fa4cp_status st = bwd ? fa4cp_cp_bwd(cp, a) : fa4cp_cp_fwd(cp, a);
    *ms = now_ms() - t0;
    return st;
}

/* Test only: FA4CP_RUN_INJECT_SIGNAL=RANK:SIG:CASE (SIG one of KILL, STOP,
 * TERM, SEGV) makes world rank RANK send itself SIG in case CASE after its
 * forward passes, while its peers are inside the case: a task killed, or
 * stopped like a hung node, in the middle of a case. */
static void inject_signal(const fa4cp_case *c, int world_rank)
{
    const char *e = getenv("FA4CP_RUN_INJECT_SIGNAL");
    int rank = -1, kase = -1;
    char name[16] = "";
    if (!e || sscanf(e, "%d:%15[A-Z]:%d", &rank, name, &kase) != 3 || rank != world_rank || kase != c->index)
        return;
    int sig = !strcmp(name, "KILL") ? SIGKILL : !strcmp(name, "STOP") ? SIGSTOP
            : !strcmp(name, "TERM") ? SIGTERM : !strcmp(name, "SEGV") ? SIGSEGV : 0;
    if (!sig)
        return;
    fprintf(stderr, "fa4cp-run: rank %d: FA4CP_RUN_INJECT_SIGNAL: SIG%s to itself in case %d\n", world_rank,
            name, c->index);
    fflush(stderr);
    raise(sig);
}

/* Warmup, then run.iters timed calls, a barrier before each (per-step CUDA
 * events on the last one on the cuda backend): the median in *ms; with the
 * device, the last call's step timings in *t and whether they came in *timed. */
/* The warm-up and the timed iterations of one direction.  Before each timed
 * iteration the ranks agree whether to stop (sync_or_stop); *stop then says
 * the signal, and *ms is the median over the iterations that completed. */
static fa4cp_status timed_phase(const fa4cp_case *c, fa4cp_comm *comm, fa4cp_cp *cp, const fa4cp_cp_args *a,
                                devbufs *dev, int bwd, double *times, double *ms, fa4cp_cp_timing *t, int *timed,
                                int *stop, rank_result *r)
{
    fa4cp_status st;
    int *done = bwd ? &r->bwd_done : &r->fwd_done;
    for (int i = 0; i < c->warmup; i++) {
        set_phase(r, bwd ? RUN_PHASE_WARM_BWD : RUN_PHASE_WARM_FWD, i);
        if ((st = bwd ? fa4cp_cp_bwd(cp, a) : fa4cp_cp_fwd(cp, a)))
            return st;
    }
    for (int i = 0; i < c->iters; i++) {
        set_phase(r, bwd ? RUN_PHASE_BWD : RUN_PHASE_FWD, i);
        if (dev->on && i == c->iters - 1)
            fa4cp_cp_set_timing(cp, 1);
        if ((st = sync_or_stop(comm, stop)))
            return st;
        if (*stop)
            break;
        if ((st = timed_call(dev, cp, a, bwd, &times[i], r)))
            return st;
        *done = i + 1;
    }
    *ms = *done ? median(times, *done) : -1;
    if (dev->on && !*stop) {
        t->struct_size = sizeof *t;
        *timed = fa4cp_cp_last_timing(cp, t) == FA4CP_OK;
        fa4cp_cp_set_timing(cp, 0);
    }
    return FA4CP_OK;
}

static int host_ranks = 1;
void run_exec_host_ranks(int ranks) { host_ranks = ranks > 0 ? ranks : 1; }

void run_case_rank(const fa4cp_case *c, fa4cp_comm *comm, int world_rank, int device, int inject, rank_result *r)
{
    fa4cp_status st = FA4CP_OK;
    int cp_rank = fa4cp_comm_rank(comm);
    int h = c->heads, hk = c->kv_heads, d = c->head_dim, dv = c->head_dim_v;
    size_t es = fa4cp_dtype_size(c->dtype), les = fa4cp_dtype_size(fa4cp_lse_dtype(c->dtype));
    int cuda = c->backend == FA4CP_BACKEND_CUDA;
    /* host copies: every tensor on the cpu backend; on cuda only the outputs
     * of a full check too big for the GPU reference (fetched for the host
     * reference); the inputs of a cuda case never exist on the host */
    int gpu_full = cuda && c->check == FA4CP_CHECK_FULL && run_gen_gpu_built() && run_gpu_full_fits(c);
    int host_in = !cuda, host_out = !cuda || (c->check == FA4CP_CHECK_FULL && !gpu_full);
    bufs b;
    devbufs dev;
    fa4cp_cp *cp = NULL;
    double *times = NULL;
    void *glse = NULL, *gD = NULL;
    memset(&b, 0, sizeof b);
    memset(&dev, 0, sizeof dev);
    memset(r, 0, sizeof *r);
    set_phase(r, RUN_PHASE_GEN, 0);
    r->rank = world_rank;
    r->fwd_ms = r->bwd_ms = -1;
    r->setup_ms = r->gen_ms = r->timed_ms = r->check_ms = -1;
    for (int t = 0; t < NERR; t++)
        r->err[t] = -1;
    fa4cp_log_set_rank(world_rank);
    double t_setup = now_ms();
    b.rows = c->padded_tokens / c->cp;
    /* q, dq, k, dk: head_dim wide; out, dout, v, dv: head_dim_v */
    size_t qn = (size_t)b.rows * h * d, kn = (size_t)b.rows * hk * d;
    size_t on = (size_t)b.rows * h * dv, vn = (size_t)b.rows * hk * dv;
    times = malloc(sizeof(double) * (size_t)c->iters);
    b.map = fa4cp_malloc(sizeof(int64_t) * (size_t)(b.rows ? b.rows : 1), "row map");
    if (!times || !b.map) {
        st = FA4CP_ERR_NOMEM;
        goto out;
    }
    run_gen_map(c, cp_rank, b.map);
    if (host_in) {
        b.q = fa4cp_malloc(qn * es, "q");
        b.k = fa4cp_malloc(kn * es, "k");
        b.v = fa4cp_malloc(vn * es, "v");
        if (!b.q || !b.k || !b.v || (c->backward && !(b.dout = fa4cp_malloc(on * es, "dout")))) {
            st = FA4CP_ERR_NOMEM;
            goto out;
        }
    }
    if (host_out) {
        b.out = fa4cp_calloc(on, es, "out");
        b.lse = fa4cp_calloc((size_t)b.rows * h, les, "lse");
        if (!b.out || !b.lse) {
            st = FA4CP_ERR_NOMEM;
            goto out;
        }
        if (c->backward) {
            b.dq = fa4cp_calloc(qn, es, "dq");
            b.dk = fa4cp_calloc(kn, es, "dk");
            b.dv = fa4cp_calloc(vn, es, "dv");
            if (!b.dq || !b.dk || !b.dv) {
                st = FA4CP_ERR_NOMEM;
                goto out;
            }
        }
    }
    if (cuda && (st = run_dev_open(&dev, c, world_rank, device, &b, r)))
        goto out;
    if ((st = make_cp(c, comm, &cp)))
        goto out;
    r->setup_ms = now_ms() - t_setup;
    double t_gen = now_ms();
    if (cuda) {
        if ((st = run_dev_generate(&dev, c, &b, r)))
            goto out;
    } else {
        if (c->backward)
            fa4cp_gen_fill_local(c, FA4CP_GEN_DOUT, cp_rank, b.dout);
        fa4cp_gen_fill_local(c, FA4CP_GEN_Q, cp_rank, b.q);
        fa4cp_gen_fill_local(c, FA4CP_GEN_K, cp_rank, b.k);
        fa4cp_gen_fill_local(c, FA4CP_GEN_V, cp_rank, b.v);
    }
    r->gen_ms = now_ms() - t_gen;
    fa4cp_cp_set_progress(cp, &r->cpp);
    if (getenv("FA4CP_RUN_INJECT_HANG") && atoi(getenv("FA4CP_RUN_INJECT_HANG")) == world_rank) {
        /* test only: this rank stops answering; the job must still end (exit 4) */
        for (int i = 0; i < 36000; i++) {
            struct timespec nap = {0, 100 * 1000 * 1000};
            nanosleep(&nap, NULL);
        }
    }
    if ((inject >> 1) - 1 == world_rank) {
        st = FA4CP_ERR_INTERNAL;
        snprintf(r->msg, sizeof r->msg, "injected fault (FA4CP_RUN_INJECT_FAULT=%d) before the first CP call", world_rank);
        goto out;
    }
    double t_timed = now_ms();
    fa4cp_cp_args a = FA4CP_CP_ARGS_INIT;
    a.batch = c->batch;
    a.cu_seqlens = c->cu_padded;
    a.seqused = c->seqlen;
    a.q = dev.on ? dev.q : b.q;
    a.k = dev.on ? dev.k : b.k;
    a.v = dev.on ? dev.v : b.v;
    a.out = dev.on ? dev.out : b.out;
    a.lse = dev.on ? dev.lse : b.lse;
    a.stream = dev.stream;
    int stop = 0;
    if ((st = timed_phase(c, comm, cp, &a, &dev, 0, times, &r->fwd_ms, &r->tf, &r->timed, &stop, r)))
        goto out;
    if (stop) { /* what it measured stays; no backward, no check */
        r->interrupted = stop;
        goto out;
    }
    inject_signal(c, world_rank); /* test only: mid-case, between forward and backward */
    if (c->backward) {
        a.dout = dev.on ? dev.dout : b.dout;
        a.dq = dev.on ? dev.dq : b.dq;
        a.dk = dev.on ? dev.dk : b.dk;
        a.dv = dev.on ? dev.dv : b.dv;
        int timed_b = 0;
        if ((st = timed_phase(c, comm, cp, &a, &dev, 1, times, &r->bwd_ms, &r->tb, &timed_b, &stop, r)))
            goto out;
        r->timed = r->timed && timed_b;
        if (stop) {
            r->interrupted = stop;
            goto out;
        }
    }
    r->timed_ms = now_ms() - t_timed;
    double t_check = now_ms();
    if (dev.on && host_out && (st = run_dev_fetch(&dev, c, &b, r)))
        goto out;
    const char *ie = getenv("FA4CP_RUN_INJECT_ERROR");
    if ((inject & 1) && cp_rank == c->cp - 1) {
        /* test-only: corrupt one element of the first sampled query row (out),
         * or with FA4CP_RUN_INJECT_ERROR=dk of the first sampled key row (dk) */
        int dk = ie && !strcmp(ie, "dk") && c->backward;
        int64_t row, off;
        int seq;
        if (run_pick_rows(c, b.map, cp_rank, dk ? 2 : 1, &row, 1) == 1) {
            run_seq_of_token(c, b.map[row], &seq, &off);
            size_t i;
            if (dk)
                i = ((size_t)row * hk + run_sample_kv_head(c, cp_rank, seq, 2)) * (size_t)d + (size_t)(d - 1);
            else
                i = ((size_t)row * h + run_sample_kv_head(c, cp_rank, seq, 1) * (h / hk)) * (size_t)dv;
            void *host = dk ? b.dk : b.out, *devp = dk ? dev.dk : dev.out;
            if (host_out)
                fa4cp_store(c->dtype, host, i, fa4cp_load(c->dtype, host, i) + 8.0);
            else if ((st = run_dev_poke(&dev, c->dtype, devp, i, 8.0, r)))
                goto out;
        }
    }
    set_phase(r, RUN_PHASE_CHECK, 0);
    if ((c->check == FA4CP_CHECK_SAMPLED || gpu_full) && dev.on) {
        st = run_verify_gpu(c, comm, cp_rank, &b, &dev, gpu_full, r);
    } else if (c->check != FA4CP_CHECK_OFF) {
        if ((st = run_gather(comm, b.lse, (size_t)b.rows * h * les, &glse, r)))
            goto out;
        if (c->check == FA4CP_CHECK_FULL) {
            st = run_verify_full(c, comm, cp_rank, run_host_threads(host_ranks / c->cp > 0 ? host_ranks / c->cp : 1), &b, glse, r);
        } else {
            if (c->backward) {
                b.D = fa4cp_malloc(sizeof(double) * (size_t)b.rows * h, "D");
                if (!b.D) {
                    st = FA4CP_ERR_NOMEM;
                    goto out;
                }
                for (int hh = 0; hh < h; hh++)
                    for (int64_t l = 0; l < b.rows; l++) {
                        double s = 0;
                        size_t base = ((size_t)l * h + hh) * dv;
                        if (b.map[l] >= 0)
                            for (int x = 0; x < dv; x++)
                                s += fa4cp_load(c->dtype, b.dout, base + x) * fa4cp_load(c->dtype, b.out, base + x);
                        b.D[(size_t)hh * b.rows + l] = s;
                    }
                if ((st = run_gather(comm, b.D, sizeof(double) * (size_t)b.rows * h, &gD, r)))
                    goto out;
            }
            st = run_verify_sampled(c, cp_rank, run_host_threads(host_ranks), &b, glse, gD, r);
        }
    }
    r->check_ms = now_ms() - t_check;
out:
    set_phase(r, RUN_PHASE_DONE, 0);
    r->status = st;
    if (st && !r->msg[0])
        snprintf(r->msg, sizeof r->msg, "%s", fa4cp_last_error()[0] ? fa4cp_last_error() : fa4cp_strerror(st));
    if (cp)
        fa4cp_cp_destroy(cp);
    run_dev_close(&dev);
    fa4cp_free(glse);
    fa4cp_free(gD);
    fa4cp_free(b.map);
    fa4cp_free(b.q);
    fa4cp_free(b.k);
    fa4cp_free(b.v);
    fa4cp_free(b.out);
    fa4cp_free(b.lse);
    fa4cp_free(b.dout);
    fa4cp_free(b.dq);
    fa4cp_free(b.dk);
    fa4cp_free(b.dv);
    fa4cp_free(b.D);
    free(times);
}

#else /* no CP executor in this build */

int run_exec_available(void) { return 0; }
void run_exec_host_ranks(int ranks) { (void)ranks; }

int run_plan_print(const fa4cp_case *c, int cp_rank, FILE *f)
{
    (void)c;
    (void)cp_rank;
    (void)f;
    return -1;
}

int run_visible_gpus(void) { return 0; }

void run_case_rank(const fa4cp_case *c, fa4cp_comm *comm, int world_rank, int device, int inject, rank_result *r)
{
    (void)c;
    (void)comm;
    (void)device;
    (void)inject;
    memset(r, 0, sizeof *r);
    r->rank = world_rank;
    r->status = FA4CP_ERR_UNSUPPORTED;
    snprintf(r->msg, sizeof r->msg, "this build has no CP executor (lib/cp*.c)");
}

#endif

