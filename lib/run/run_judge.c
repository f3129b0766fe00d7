/* run_judge.c - a case's verdict from its ranks' results, and its record
 * in OUTDIR/results.jsonl. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "run.h"

#include "results.h"
#include "run_gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#ifdef HAVE_NCCL
#include <nccl.h>
#endif

static int status_exit(int st)
{
    switch (st) {
    case FA4CP_ERR_TIMEOUT: return RUN_TIMEOUT;
    case FA4CP_ERR_INVALID: return RUN_USAGE;
    default: return RUN_RUNTIME;
    }
}

/* Turn per-rank results into the case outcome. */
void run_judge(const fa4cp_case *c, const world_info *w, const rank_result *rr, int nr, case_outcome *oc)
{
    double fwd, bwd;
    fa4cp_case_flops(c, &fwd, &bwd);
    oc->fwd_ms = oc->bwd_ms = -1;
    oc->setup_ms = oc->gen_ms = oc->timed_ms = oc->check_ms = -1;
    oc->err = -1;
    for (int t = 0; t < NERR; t++)
        oc->err_t[t] = -1;
    oc->tol = fa4cp_check_tolerance(c->dtype);
    /* name the rank that failed first-hand: a timeout or a peer failure on
     * the other ranks is a consequence */
    int culprit = -1;
    for (int i = 0; i < nr; i++)
        if (rr[i].status && (culprit < 0 || ((rr[culprit].status == FA4CP_ERR_TIMEOUT ||
                                               rr[culprit].status == FA4CP_ERR_PEER) &&
                                              rr[i].status != FA4CP_ERR_TIMEOUT && rr[i].status != FA4CP_ERR_PEER)))
            culprit = i;
    if (culprit >= 0) {
        oc->exit_code = status_exit(rr[culprit].status);
        snprintf(oc->msg, sizeof oc->msg, "rank %d: %s", rr[culprit].rank, rr[culprit].msg);
    }
    for (int i = 0; i < nr; i++) {
        if (rr[i].fwd_ms > oc->fwd_ms)
            oc->fwd_ms = rr[i].fwd_ms;
        oc->setup_ms = fmax(oc->setup_ms, rr[i].setup_ms);
        oc->gen_ms = fmax(oc->gen_ms, rr[i].gen_ms);
        oc->timed_ms = fmax(oc->timed_ms, rr[i].timed_ms);
        oc->check_ms = fmax(oc->check_ms, rr[i].check_ms);
        if (rr[i].bwd_ms > oc->bwd_ms)
            oc->bwd_ms = rr[i].bwd_ms;
        for (int t = 0; t < NERR; t++)
            if (rr[i].err[t] > oc->err_t[t] || isinf(rr[i].err[t]))
                oc->err_t[t] = rr[i].err[t];
    }
    for (int t = 0; t < NERR; t++)
        if (oc->err_t[t] > oc->err || isinf(oc->err_t[t]))
            oc->err = oc->err_t[t];
    /* per GPU: each CP group runs the whole case on cp GPUs; in one process
     * on the cuda backend its ranks share the visible GPUs (rank r on GPU
     * r % n), so a group of cp ranks uses min(cp, n) of them */
    int gpus = run_gpus_used(c, w, c->cp);
    oc->fwd_tf = oc->fwd_ms > 0 ? fwd / gpus / (oc->fwd_ms * 1e-3) / 1e12 : NAN;
    oc->bwd_tf = oc->bwd_ms > 0 ? bwd / gpus / (oc->bwd_ms * 1e-3) / 1e12 : NAN;
    (void)w;
    if (oc->exit_code) {
        oc->result = oc->exit_code == RUN_TIMEOUT ? "TIMEOUT" : "ERROR";
        return;
    }
    if (c->check != FA4CP_CHECK_OFF && !(oc->err <= oc->tol)) {
        oc->exit_code = RUN_VERIFY;
        oc->result = "FAILED";
        int worst = 0;
        for (int t = 0; t < NERR; t++)
            if (oc->err_t[t] > oc->err_t[worst] || isinf(oc->err_t[t]))
                worst = t;
        snprintf(oc->msg, sizeof oc->msg, "%s check: max relative error %.3g in %s exceeds the %s tolerance %.3g",
                 fa4cp_check_mode_name(c->check), oc->err, run_err_names[worst], fa4cp_dtype_name(c->dtype), oc->tol);
        return;
    }
    if ((c->gate_fwd_tflops > 0 && !(oc->fwd_tf >= c->gate_fwd_tflops)) ||
        (c->backward && c->gate_bwd_tflops > 0 && !(oc->bwd_tf >= c->gate_bwd_tflops))) {
        oc->exit_code = RUN_GATE;
        oc->result = "BELOW GATE";
        snprintf(oc->msg, sizeof oc->msg, "below the gate: fwd %.3g TFLOP/s per GPU (gate %g), bwd %.3g (gate %g)",
                 oc->fwd_tf, c->gate_fwd_tflops, oc->bwd_tf, c->gate_bwd_tflops);
        return;
    }
    oc->result = "OK";
}

int run_worse(int a, int b)
{
    /* severity: interrupted (128 + signal) > runtime 3 > timeout 4 > verify 5 > gate 6 > usage 2 > ok */
    if (a >= 128 || b >= 128)
        return a >= 128 ? a : b;
    static const int rank_of[7] = {0, 0, 1, 5, 4, 3, 2};
    if (a < 0 || a > 6 || b < 0 || b > 6) /* 8 and others: the larger */
        return a > b ? a : b;
    return rank_of[b] > rank_of[a] ? b : a;
}


/* the command line of this run, for the records */
static int rec_argc;
static char **rec_argv;

void run_record_argv(int argc, char **argv)
{
    /* a copy: option parsing permutes argv and cuts KEY=VALUE at the '=' */
    rec_argv = calloc((size_t)argc + 1, sizeof(char *));
    rec_argc = 0;
    for (int i = 0; rec_argv && i < argc; i++)
        if ((rec_argv[rec_argc] = strdup(argv[i])))
            rec_argc++;
}

/* The CP ring's bandwidth over the run: bytes a rank sent in a timed p2p
 * step over that step's exchange time, summed over every rank and step; and
 * the same for the sends that leave the node (the network between nodes). */
static struct {
    double bytes, ms, net_bytes, net_ms;
} ring_bw;

/* off[i]: rank rr[i].rank sends its ring steps to another node */
static void ring_sends_off_node(const world_info *w, const fa4cp_case *c, const rank_result *rr, int nr, int *off)
{
    fa4cp_layout *l = NULL;
    for (int i = 0; i < nr; i++)
        off[i] = 0;
    if (!w->table || fa4cp_layout_build(w->table, w->size, c->cp, 0, 1, &l) != FA4CP_OK)
        return;
    for (int i = 0; i < nr; i++) {
        fa4cp_layout_place p;
        if (fa4cp_layout_place_of(l, rr[i].rank, &p) == FA4CP_OK && p.ring_next >= 0 && p.ring_next < w->size)
            off[i] = w->table[p.ring_next].node != w->table[rr[i].rank].node;
    }
    fa4cp_layout_destroy(l);
}

void run_ring_bw_add(const world_info *w, const fa4cp_case *c, const rank_result *rr, int nr)
{
    if (nr <= 0 || !rr[0].timed)
        return;
    int *off = calloc((size_t)nr, sizeof(int));
    if (!off)
        return;
    ring_sends_off_node(w, c, rr, nr, off);
    for (int i = 0; i < nr; i++)
        for (int dir = 0; dir < 2; dir++) {
            const fa4cp_cp_timing *t = dir ? &rr[i].tb : &rr[i].tf;
            if (dir && !c->backward)
                break;
            for (int s = 0; s < t->nsteps; s++)
                if (t->comm_bytes[s] && t->comm_ms[s] > 0) {
                    ring_bw.bytes += (double)t->comm_bytes[s];
                    ring_bw.ms += t->comm_ms[s];
                    if (off[i]) {
                        ring_bw.net_bytes += (double)t->comm_bytes[s];
                        ring_bw.net_ms += t->comm_ms[s];
                    }
                }
        }
    free(off);
}

void run_ring_bw_print(FILE *f)
{
    /* lines for scripts, as nccl-tests' "# Avg bus bandwidth" */
    if (ring_bw.ms > 0)
        fprintf(f, "# Avg CP ring bandwidth : %.3f GB/s (bytes a rank sent / exchange time, every timed p2p step)\n",
                ring_bw.bytes / (ring_bw.ms * 1e6));
    if (ring_bw.net_ms > 0)
        fprintf(f, "# Avg CP inter-node bandwidth : %.3f GB/s (the ring steps that leave a node)\n",
                ring_bw.net_bytes / (ring_bw.net_ms * 1e6));
}

/* The "config" member of a record: what the case ran with. */
static void write_config(fa4cp_jw *jw, const fa4cp_case *c)
{
    fa4cp_jw_begin(jw, "config", 0);
    fa4cp_jw_begin(jw, "attention", 0);
    fa4cp_jw_int(jw, "heads", c->heads);
    fa4cp_jw_int(jw, "kv_heads", c->kv_heads);
    fa4cp_jw_int(jw, "head_dim", c->head_dim);
    fa4cp_jw_int(jw, "head_dim_v", c->head_dim_v);
    fa4cp_jw_str(jw, "dtype", fa4cp_dtype_name(c->dtype));
    fa4cp_jw_bool(jw, "causal", c->causal);
    fa4cp_jw_begin(jw, "window", 1);
    fa4cp_jw_int(jw, NULL, c->window_left);
    fa4cp_jw_int(jw, NULL, c->window_right);
    fa4cp_jw_end(jw, 1);
    fa4cp_jw_str(jw, "layout", c->layout_bshd ? "bshd" : "thd");
    fa4cp_jw_bool(jw, "pad_between_seqs", c->pad_between_seqs);
    fa4cp_jw_str(jw, "distribution", fa4cp_seq_dist_name(c->dist));
    fa4cp_jw_int(jw, "batch", c->batch);
    fa4cp_jw_int(jw, "tokens", c->tokens);
    fa4cp_jw_int(jw, "padded_tokens", c->padded_tokens);
    fa4cp_jw_int(jw, "max_seqlen", c->max_seqlen);
    fa4cp_jw_begin(jw, "sequences", 1);
    for (int i = 0; i < c->batch && i < 4096; i++)
        fa4cp_jw_int(jw, NULL, c->seqlen[i]);
    fa4cp_jw_end(jw, 1);
    fa4cp_jw_end(jw, 0);
    fa4cp_jw_begin(jw, "cp", 0);
    fa4cp_jw_int(jw, "size", c->cp);
    fa4cp_jw_str(jw, "comm", fa4cp_cp_comm_name(c->comm));
    fa4cp_jw_end(jw, 0);
    fa4cp_jw_begin(jw, "run", 0);
    fa4cp_jw_str(jw, "backend", fa4cp_backend_name(c->backend));
    fa4cp_jw_int(jw, "warmup", c->warmup);
    fa4cp_jw_int(jw, "iters", c->iters);
    fa4cp_jw_bool(jw, "backward", c->backward);
    fa4cp_jw_str(jw, "check", fa4cp_check_mode_name(c->check));
    fa4cp_jw_int(jw, "samples", c->samples);
    fa4cp_jw_int(jw, "seed", (long long)c->seed);
    fa4cp_jw_num(jw, "timeout", c->timeout_s);
    fa4cp_jw_end(jw, 0);
    fa4cp_jw_begin(jw, "gate", 0);
    fa4cp_jw_num(jw, "fwd_tflops", c->gate_fwd_tflops);
    fa4cp_jw_num(jw, "bwd_tflops", c->gate_bwd_tflops);
    fa4cp_jw_end(jw, 0);
    fa4cp_jw_end(jw, 0);
}

/* A canonical text of a configuration (keys sorted, compact), the identity
 * of a case for --resume. */
static char *config_text(const json_t *config)
{
    return config ? json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS | FA4CP_JSON_REAL) : NULL;
}

char *run_config_key(const fa4cp_case *c)
{
    fa4cp_jw j;
    char *key = NULL;
    fa4cp_jw_init(&j);
    fa4cp_jw_begin(&j, NULL, 0);
    write_config(&j, c);
    fa4cp_jw_end(&j, 0);
    json_t *v = j.failed ? NULL : fa4cp_json_parse(j.buf, NULL, 0); /* as a reader sees it */
    key = config_text(fa4cp_json_get(v, "config"));
    fa4cp_json_free(v);
    fa4cp_jw_free(&j);
    return key;
}

char *run_record_config_key(const json_t *rec) { return config_text(fa4cp_json_get(rec, "config")); }

int run_write_json(const char *outdir, const world_info *w, const fa4cp_case *c, const case_outcome *oc,
                   const rank_result *rr, int nr)
{
    fa4cp_jw j;
    double fwd, bwd;
    char ts[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fa4cp_case_flops(c, &fwd, &bwd);
    fa4cp_jw_init(&j);
    fa4cp_jw_begin(&j, NULL, 0);
    fa4cp_jw_int(&j, "schema", 1);
    fa4cp_jw_str(&j, "tool", "fa4cp-run");
    fa4cp_jw_str(&j, "time", ts);
    fa4cp_jw_str(&j, "file", c->file);
    fa4cp_jw_int(&j, "doc", c->doc);
    fa4cp_jw_int(&j, "case", c->index);
    fa4cp_jw_str(&j, "name", c->name);
    fa4cp_jw_str(&j, "label", c->label);
    write_config(&j, c);
    fa4cp_jw_begin(&j, "env", 0);
    fa4cp_jw_str(&j, "fa4cp", fa4cp_version());
    fa4cp_jw_str(&j, "fa4cp_git", FA4CP_GIT_REVISION);
    fa4cp_jw_begin(&j, "argv", 1);
    for (int i = 0; i < rec_argc; i++)
        fa4cp_jw_str(&j, NULL, rec_argv[i]);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_str(&j, "host", w->host);
    fa4cp_jw_str(&j, "bootstrap", w->kind);
    fa4cp_jw_int(&j, "world_size", w->size);
    fa4cp_jw_int(&j, "gpus", w->size);
    fa4cp_jw_int(&j, "procs", w->procs);
    fa4cp_jw_int(&j, "nodes", w->nodes);
    fa4cp_jw_int(&j, "replicas", w->size / c->cp);
    const char *job = getenv("SLURM_JOB_ID"), *nodelist = getenv("SLURM_JOB_NODELIST");
    if (job)
        fa4cp_jw_str(&j, "slurm_job_id", job);
    if (nodelist)
        fa4cp_jw_str(&j, "slurm_job_nodelist", nodelist);
    /* the host of every node of the world, by node index */
    fa4cp_jw_begin(&j, "node_hosts", 1);
    for (int n = 0; w->table && n < w->nodes; n++) {
        const char *h = "?";
        for (int r = 0; r < w->size; r++)
            if (w->table[r].node == n) {
                h = w->table[r].host;
                break;
            }
        fa4cp_jw_str(&j, NULL, h);
    }
    fa4cp_jw_end(&j, 1);
    /* the versions each on its own (the "versions" line below has them all) */
    {
        char v[32] = "";
        (void)v; /* unused in a build without CUDA and NCCL */
#ifdef HAVE_CUDA
        snprintf(v, sizeof v, "%d.%d", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        fa4cp_jw_str(&j, "cuda_runtime", v);
#else
        fa4cp_jw_null(&j, "cuda_runtime");
#endif
#ifdef HAVE_NCCL
        int nv = 0;
        if (ncclGetVersion(&nv) == ncclSuccess && nv > 0) {
            snprintf(v, sizeof v, "%d.%d.%d", nv / 10000, nv % 10000 / 100, nv % 100);
            fa4cp_jw_str(&j, "nccl", v);
        } else {
            fa4cp_jw_null(&j, "nccl");
        }
#else
        fa4cp_jw_null(&j, "nccl");
#endif
    }
    /* the GPU of rank 0 when the case uses GPUs: model and driver (NVML) */
    char model[96], driver[64];
    if (c->backend == FA4CP_BACKEND_CUDA && w->table &&
        run_gpu_info(&w->table[0], model, sizeof model, driver, sizeof driver) == 0) {
        fa4cp_jw_begin(&j, "gpu", 0);
        fa4cp_jw_str(&j, "model", model);
        if (driver[0])
            fa4cp_jw_str(&j, "driver", driver);
        else
            fa4cp_jw_null(&j, "driver");
        fa4cp_jw_end(&j, 0);
    }
    /* the settings that change a run: NCCL_*, FA4CP_*, CUDA_VISIBLE_DEVICES, SLURM_* placement */
    extern char **environ;
    fa4cp_jw_begin(&j, "vars", 0);
    for (char **e = environ; e && *e; e++) {
        static const char *const keep[] = {"NCCL_", "FA4CP_", "CUDA_VISIBLE_DEVICES=", "SLURM_JOB_NUM_NODES=",
                                           "SLURM_NTASKS=", "SLURM_NTASKS_PER_NODE=", "SLURM_CPUS_PER_TASK=",
                                           "SLURM_GPUS_PER_TASK=", "SLURM_DISTRIBUTION=", NULL};
        const char *eq = strchr(*e, '=');
        int want = 0;
        for (int k = 0; keep[k] && eq; k++)
            want |= !strncmp(*e, keep[k], strlen(keep[k]));
        if (want && eq - *e < 128) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
            fa4cp_jw_str(&j, name, eq + 1);
        }
    }
    fa4cp_jw_end(&j, 0);
    char vers[256];
    run_versions(vers, sizeof vers, 1);
    fa4cp_jw_str(&j, "versions", vers);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "result", 0);
    fa4cp_jw_str(&j, "status", oc->result);
    fa4cp_jw_int(&j, "exit_code", oc->exit_code);
    fa4cp_jw_num(&j, "fwd_ms", oc->fwd_ms);
    fa4cp_jw_num(&j, "bwd_ms", oc->bwd_ms);
    fa4cp_jw_num(&j, "setup_ms", oc->setup_ms >= 0 ? oc->setup_ms : NAN);
    fa4cp_jw_num(&j, "generate_ms", oc->gen_ms >= 0 ? oc->gen_ms : NAN);
    fa4cp_jw_num(&j, "timed_total_ms", oc->timed_ms >= 0 ? oc->timed_ms : NAN);
    fa4cp_jw_num(&j, "check_ms", oc->check_ms >= 0 ? oc->check_ms : NAN);
    fa4cp_jw_num(&j, "wall_ms", oc->wall_ms);
    fa4cp_jw_num(&j, "gpu_share", oc->timed_ms > 0 && oc->wall_ms > 0 ? oc->timed_ms / oc->wall_ms : NAN);
    fa4cp_jw_num(&j, "fwd_flops", fwd);
    fa4cp_jw_num(&j, "bwd_flops", c->backward ? bwd : NAN);
    fa4cp_jw_num(&j, "fwd_tflops_per_gpu", oc->fwd_tf);
    fa4cp_jw_num(&j, "bwd_tflops_per_gpu", oc->bwd_tf);
    fa4cp_jw_num(&j, "fwd_tflops_total", oc->fwd_tf * run_gpus_used(c, w, w->size));
    fa4cp_jw_num(&j, "bwd_tflops_total", oc->bwd_tf * run_gpus_used(c, w, w->size));
    fa4cp_jw_num(&j, "max_rel_err", oc->err);
    fa4cp_jw_num(&j, "tolerance", oc->tol);
    fa4cp_jw_begin(&j, "errors", 0);
    for (int t = 0; t < NERR; t++)
        if (oc->err_t[t] >= 0 || isinf(oc->err_t[t]))
            fa4cp_jw_num(&j, run_err_names[t], oc->err_t[t]);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_str(&j, "message", oc->msg);
    fa4cp_jw_begin(&j, "per_rank", 0);
    fa4cp_jw_begin(&j, "fwd_ms", 1);
    for (int i = 0; i < nr; i++)
        fa4cp_jw_num(&j, NULL, rr[i].fwd_ms);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_begin(&j, "bwd_ms", 1);
    for (int i = 0; i < nr; i++)
        fa4cp_jw_num(&j, NULL, rr[i].bwd_ms);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_begin(&j, "rows_checked", 1);
    for (int i = 0; i < nr; i++)
        fa4cp_jw_int(&j, NULL, rr[i].rows_checked);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_end(&j, 0);
    /* backend cuda: each rank's CUDA-event timings of its last timed call,
     * per ring step for p2p (compute on the call stream, communication on
     * the side stream), so the hidden communication can be read off */
    if (nr > 0 && rr[0].timed) {
        int *off = calloc((size_t)nr, sizeof(int));
        if (off)
            ring_sends_off_node(w, c, rr, nr, off);
        fa4cp_jw_begin(&j, "steps", 1);
        for (int i = 0; i < nr; i++) {
            fa4cp_jw_begin(&j, NULL, 0);
            fa4cp_jw_int(&j, "rank", rr[i].rank);
            fa4cp_jw_bool(&j, "sends_off_node", off && off[i]);
            for (int dir = 0; dir < 2; dir++) {
                const fa4cp_cp_timing *t = dir ? &rr[i].tb : &rr[i].tf;
                if (dir && !c->backward)
                    break;
                double comp = 0, comm = 0, hidden = 0;
                fa4cp_jw_begin(&j, dir ? "bwd" : "fwd", 0);
                fa4cp_jw_num(&j, "call_ms", t->call_ms);
                fa4cp_jw_begin(&j, "compute_ms", 1);
                for (int s = 0; s < t->nsteps; s++) {
                    fa4cp_jw_num(&j, NULL, t->compute_ms[s]);
                    comp += t->compute_ms[s];
                }
                fa4cp_jw_end(&j, 1);
                fa4cp_jw_begin(&j, "comm_ms", 1);
                for (int s = 0; s < t->nsteps; s++) {
                    fa4cp_jw_num(&j, NULL, t->comm_ms[s]);
                    comm += t->comm_ms[s];
                    hidden += t->comm_ms[s] < t->compute_ms[s] ? t->comm_ms[s] : t->compute_ms[s];
                }
                fa4cp_jw_end(&j, 1);
                /* what each step's exchange moved, and the bandwidth it reached */
                fa4cp_jw_begin(&j, "step_bytes", 1);
                for (int s = 0; s < t->nsteps; s++)
                    fa4cp_jw_int(&j, NULL, (long long)t->comm_bytes[s]);
                fa4cp_jw_end(&j, 1);
                fa4cp_jw_begin(&j, "step_gbps", 1);
                for (int s = 0; s < t->nsteps; s++)
                    fa4cp_jw_num(&j, NULL, t->comm_bytes[s] && t->comm_ms[s] > 0
                                               ? (double)t->comm_bytes[s] / (t->comm_ms[s] * 1e6) : NAN);
                fa4cp_jw_end(&j, 1);
                /* communication that ran while the step computed (an
                 * exchange starts with its step's compute) */
                fa4cp_jw_num(&j, "comm_hidden_fraction", comm > 0 ? hidden / comm : NAN);
                fa4cp_jw_num(&j, "compute_over_call", t->call_ms > 0 ? comp / t->call_ms : NAN);
                fa4cp_jw_end(&j, 0);
            }
            fa4cp_jw_end(&j, 0);
        }
        fa4cp_jw_end(&j, 1);
        free(off);
    }
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_end(&j, 0);
    int rc = 0;
    if (j.failed || fa4cp_results_append(outdir, j.buf)) {
        fprintf(stderr, "fa4cp-run: cannot record case %d: %s\n", c->index,
                j.failed ? j.error : fa4cp_last_error());
        rc = -1;
    }
    fa4cp_jw_free(&j);
    return rc;
}

