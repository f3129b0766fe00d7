/* fa4cp-run - run, verify and time attention workloads described in YAML.
 *
 *   fa4cp-run [options] JOB.yaml...
 *
 * Expands the cases of every file (sweeps, overrides), brings up the world
 * (local mode: --ranks N threads in this process; under srun --mpi=pmix or
 * mpirun: one process per rank and GPU, CP over NCCL), and for each case
 * generates the inputs, runs the CP forward (and backward), verifies, times,
 * prints one row (rank 0 only) and appends one JSON line to
 * OUTDIR/results.jsonl.  docs/fa4cp-run.1 is the manual; docs/exit-codes.md
 * lists the exit codes.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#define _GNU_SOURCE
#include "fa4cp.h"

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cp/cp_config.h"
#include "run/results.h"
#include "run/run_exec.h"
#include "run/run_gpu.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#ifdef HAVE_NCCL
#include <nccl.h>
#endif

enum {
    EXIT_OK = 0,
    EXIT_USAGE = 2,    /* usage or workload error */
    EXIT_RUNTIME = 3,  /* CUDA, NCCL, PMIx, memory, transport */
    EXIT_TIMEOUT = 4,  /* a case ran past run.timeout */
    EXIT_VERIFY = 5,   /* verification failed */
    EXIT_GATE = 6,     /* below a performance gate */
    EXIT_LAUNCH = 8    /* started the wrong way: srun without --mpi=pmix (every task) */
};

#define MAX_OV 128

typedef struct opts {
    int ranks;
    int nodes;              /* --nodes: plan a cluster this process is not on */
    const char *tpn, *dist; /* --tasks-per-node, --distribution */
    int tap, dry_run, explain, quiet;
    const char *outdir;
    fa4cp_override ov[MAX_OV];
    int nov;
    char *ovbuf[MAX_OV];
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: fa4cp-run [options] JOB.yaml|NAME...\n"
            "Run, verify and time the attention cases of YAML workloads (workloads.md).\n"
            "A NAME without '/' that is no file is a shipped workload: %s/NAME[.yaml]\n"
            "\n"
            "  -n, --iters N        timed iterations per case (run.iters)\n"
            "  -w, --warmup N       warm-up iterations per case (run.warmup)\n"
            "  -c, --check MODE     full | sampled | off (run.check)\n"
            "  -b, --backend NAME   cpu | cuda (run.backend)\n"
            "  -T, --timeout S      seconds per case before the job ends with exit 4 (run.timeout)\n"
            "  -s, --set KEY=VALUE  override any key of every case (e.g. --set cp.size=2)\n"
            "      --ranks N        local mode: N ranks as threads of this process (default 1);\n"
            "                       under srun --mpi=pmix or mpirun: one rank per process and GPU\n"
            "  -o, --output DIR     append results to DIR/results.jsonl (default: fa4cp-results)\n"
            "      --no-output      write no results file\n"
            "      --tap            print TAP (ok / not ok per case) instead of the table\n"
            "      --dry-run        expand and validate; print cases, memory and FLOP estimates;\n"
            "                       allocate nothing, touch no GPU\n"
            "      --explain        --dry-run plus the layout and the CP plan of every rank\n"
            "      --nodes N        with --dry-run: plan for N nodes this process is not on\n"
            "      --tasks-per-node M   ranks on each node (or a list per node, 8,8,4)\n"
            "      --distribution D     block | cyclic (srun -m; default block)\n"
            "  -q, --quiet          no progress on stderr\n"
            "  -h, --help           this text;  -V, --version  the version\n"
            "\n"
            "Exit status: 0 ok, 2 usage or workload error, 3 runtime error, 4 timeout,\n"
            "5 verification failed, 6 below a gate, 8 launched by srun without PMIx\n"
            "(exit-codes.md).\n",
            fa4cp_workload_dir());
}

static int add_override(opts *o, const char *key, const char *value)
{
    if (o->nov >= MAX_OV) {
        fprintf(stderr, "fa4cp-run: too many overrides (at most %d)\n", MAX_OV);
        return -1;
    }
    o->ov[o->nov].key = key;
    o->ov[o->nov].value = value;
    o->nov++;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o, int *first_file)
{
    static const struct option longs[] = {
        {"iters", required_argument, NULL, 'n'},   {"warmup", required_argument, NULL, 'w'},
        {"check", required_argument, NULL, 'c'},   {"backend", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 'T'}, {"set", required_argument, NULL, 's'},
        {"ranks", required_argument, NULL, 'R'},   {"output", required_argument, NULL, 'o'},
        {"no-output", no_argument, NULL, 'N'},     {"tap", no_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'D'},       {"explain", no_argument, NULL, 'E'},
        {"quiet", no_argument, NULL, 'q'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {"nodes", required_argument, NULL, 'M'},
        {"tasks-per-node", required_argument, NULL, 'P'},
        {"distribution", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
    int ch;
    memset(o, 0, sizeof *o);
    o->ranks = 1;
    o->outdir = "fa4cp-results";
    while ((ch = getopt_long(argc, argv, "n:w:c:b:T:s:o:qhV", longs, NULL)) != -1) {
        switch (ch) {
        case 'n': if (add_override(o, "run.iters", optarg)) return -1; break;
        case 'w': if (add_override(o, "run.warmup", optarg)) return -1; break;
        case 'c': if (add_override(o, "run.check", optarg)) return -1; break;
        case 'b': if (add_override(o, "run.backend", optarg)) return -1; break;
        case 'T': if (add_override(o, "run.timeout", optarg)) return -1; break;
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "fa4cp-run: --set %s: expected KEY=VALUE (e.g. --set cp.size=2)\n", optarg);
                return -1;
            }
            *eq = 0;
            if (add_override(o, optarg, eq + 1))
                return -1;
            break;
        }
        case 'R': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "fa4cp-run: --ranks %s: expected a number of ranks from 1 to 4096\n", optarg);
                return -1;
            }
            o->ranks = (int)v;
            break;
        }
        case 'M': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "fa4cp-run: --nodes %s: expected a number of nodes from 1 to 100000\n", optarg);
                return -1;
            }
            o->nodes = (int)v;
            break;
        }
        case 'P': o->tpn = optarg; break;
        case 'd':
            if (strcmp(optarg, "block") && strcmp(optarg, "cyclic")) {
                fprintf(stderr, "fa4cp-run: --distribution %s: expected block or cyclic\n", optarg);
                return -1;
            }
            o->dist = optarg;
            break;
        case 'o': o->outdir = optarg; break;
        case 'N': o->outdir = NULL; break;
        case 't': o->tap = 1; break;
        case 'D': o->dry_run = 1; break;
        case 'E': o->explain = o->dry_run = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("fa4cp-run %s\n", fa4cp_version()); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "fa4cp-run: no workload given (e.g. fa4cp-run jobs/smoke.yaml --ranks 4)\n");
        usage(stderr);
        return -1;
    }
    if ((o->nodes || o->tpn || o->dist) && !(o->nodes && o->tpn)) {
        fprintf(stderr, "fa4cp-run: planning a cluster needs --nodes N and --tasks-per-node M "
                        "(and --dry-run)\n");
        return -1;
    }
    if (o->nodes && !o->dry_run) {
        fprintf(stderr, "fa4cp-run: --nodes plans a cluster this process is not on: add --dry-run "
                        "(or --explain); to run on N nodes, launch with srun -N N --mpi=pmix\n");
        return -1;
    }
    if (o->nodes && o->ranks != 1) {
        fprintf(stderr, "fa4cp-run: --nodes and --tasks-per-node give the ranks; leave out --ranks\n");
        return -1;
    }
    *first_file = optind;
    return 0;
}

/* The world table of --nodes N --tasks-per-node M|LIST [--distribution D]:
 * the same planner as fa4cp-layout (fa4cp_world_plan, one GPU per task). */
static int plan_world(const opts *o, fa4cp_world_row **table, int *n)
{
    int *counts = calloc((size_t)o->nodes, sizeof(int)), k = 0, rc = 0;
    if (!counts)
        return EXIT_RUNTIME;
    if (fa4cp_tasks_per_node_parse(o->tpn, counts, o->nodes, &k) != FA4CP_OK ||
        (k != 1 && k != o->nodes)) {
        fprintf(stderr, "fa4cp-run: --tasks-per-node %s: want one count or %d (one per node)%s%s\n", o->tpn,
                o->nodes, fa4cp_last_error()[0] ? ": " : "", fa4cp_last_error());
        rc = EXIT_USAGE;
    } else {
        for (int i = k; i < o->nodes; i++)
            counts[i] = counts[0];
        if (fa4cp_world_plan(o->nodes, 0, counts, o->dist ? o->dist : "block", -1, table, n) != FA4CP_OK) {
            fprintf(stderr, "fa4cp-run: %s\n", fa4cp_last_error());
            rc = EXIT_USAGE;
        }
    }
    free(counts);
    return rc;
}

/* ------------------------------------------------------------------ world */

typedef struct world_info {
    fa4cp_world *world;
    const fa4cp_world_row *table;
    int size;   /* ranks */
    int rank;   /* this process's rank (0 in local mode) */
    int procs;  /* processes */
    int nodes;
    const char *kind; /* "local", "pmix", "slurm" */
    char host[64];
} world_info;

static int launcher_rank_nonzero(void);

/* Bring up the world (PMIx under srun --mpi=pmix, the Slurm environment, or
 * local mode with `ranks` threads); returns an exit code: the singleton trap
 * (srun without --mpi=pmix) is EXIT_LAUNCH on every task, as for
 * fa4cp-layout, and task 0 alone says how to launch. */
static int world_up(world_info *w, int ranks)
{
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    memset(w, 0, sizeof *w);
    cfg.local_ranks = ranks;
    fa4cp_status st = fa4cp_world_init(&cfg, &w->world);
    if (st) {
        if (st != FA4CP_ERR_LAUNCH || !launcher_rank_nonzero())
            fprintf(stderr, "fa4cp-run: %s\n", fa4cp_last_error());
        return st == FA4CP_ERR_LAUNCH ? EXIT_LAUNCH : st == FA4CP_ERR_TIMEOUT ? EXIT_TIMEOUT : EXIT_RUNTIME;
    }
    w->kind = fa4cp_world_kind_name(fa4cp_world_kind_of(w->world));
    w->rank = fa4cp_world_rank(w->world);
    w->size = fa4cp_world_size(w->world);
    w->procs = fa4cp_world_procs(w->world);
    w->nodes = fa4cp_world_nodes(w->world);
    w->table = fa4cp_world_table(w->world);
    const fa4cp_world_row *me = fa4cp_world_row_of(w->world, w->rank);
    snprintf(w->host, sizeof w->host, "%s", me ? me->host : "?");
    return 0;
}

/* ------------------------------------------------------------------ printing */

static double host_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

static const char *mask_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->window_left >= 0 && !c->causal && c->window_right != c->window_left)
        snprintf(buf, len, "full w%d/%d", c->window_left, c->window_right);
    else if (c->window_left >= 0)
        snprintf(buf, len, "%s w%d", c->causal ? "causal" : "full", c->window_left);
    else
        snprintf(buf, len, "%s", c->causal ? "causal" : "full");
    return buf;
}

/* "fa4cp 0.1.0, NCCL 2.27.7, CUDA runtime 13.0 (kernels sm_90a), driver 13.0".
 * The driver is asked only when query_driver (not in a dry run). */
static void versions(char *buf, size_t len, int query_driver)
{
    size_t at = (size_t)snprintf(buf, len, "fa4cp %s", fa4cp_version());
#ifdef HAVE_NCCL
    int nv = 0;
    if (ncclGetVersion(&nv) == ncclSuccess && nv > 0 && at < len)
        at += (size_t)snprintf(buf + at, len - at, ", NCCL %d.%d.%d", nv / 10000, nv % 10000 / 100, nv % 100);
#else
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", NCCL none");
#endif
#ifdef HAVE_CUDA
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", CUDA %d.%d (kernels sm_%s)", CUDART_VERSION / 1000,
                               CUDART_VERSION % 1000 / 10, FA4CP_CUDA_ARCH);
#else
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, ", CUDA none (cpu build)");
#endif
    /* the driver through libcuda itself: no link dependency, no GPU touched */
    int dv = 0;
    if (query_driver) {
        void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (h) {
            int (*get)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
            if (!get || get(&dv) != 0)
                dv = 0;
            dlclose(h);
        }
    }
    if (at < len) {
        if (dv > 0)
            at += (size_t)snprintf(buf + at, len - at, ", driver CUDA %d.%d", dv / 1000, dv % 1000 / 10);
        else
            at += (size_t)snprintf(buf + at, len - at, ", driver %s", query_driver ? "none" : "not queried (dry run)");
    }
}

static void print_header(const world_info *w, int ncases, int nfiles, char **files, const opts *o, const char *layout)
{
    printf("# fa4cp-run %s: %d case(s) from", fa4cp_version(), ncases);
    for (int i = 0; i < nfiles; i++)
        printf(" %s", files[i]);
    printf("\n");
    printf("# world: %d rank(s) on %d node(s), %d process(es), bootstrap %s, host %s\n", w->size, w->nodes,
           w->procs, w->kind, w->host);
    printf("# layout: CP groups from physical order (node, local rank); %s transport; %s\n",
           !strcmp(w->kind, "local") ? "local (threads)" : "NCCL (one process per rank)", layout);
    char v[256];
    versions(v, sizeof v, !o->dry_run);
    printf("# versions: %s\n", v);
    if (o->dry_run)
        printf("# dry run: nothing is allocated and no GPU is touched\n");
    printf("# times: median over run.iters on each rank, max over ranks; TFLOP/s per GPU, FlashAttention "
           "convention (fwd 4*d per visible pair and head, bwd 2.5x)\n");
}

static void print_table_head(int dry)
{
    if (dry) {
        printf("#\n# %4s %-10s %4s %8s %8s %6s %4s %-5s %-12s %10s %10s %10s %-8s\n", "case", "comm", "cp", "tokens",
               "padded", "heads", "d", "dtype", "mask", "fwd GFLOP", "bwd GFLOP", "MiB/rank", "check");
        return;
    }
    printf("#\n# %4s %-10s %4s %8s %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %7s\n", "", "", "", "", "", "", "", "",
           "--- fwd", "", "--- bwd", "", "", "");
    printf("# %4s %-10s %4s %8s %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %7s\n", "case", "comm", "cp", "tokens",
           "heads", "d", "dtype", "mask", "time(ms)", "TFLOP/s", "time(ms)", "TFLOP/s", "max err", "result");
}

static void heads_text(const fa4cp_case *c, char *buf, size_t len)
{
    if (c->kv_heads == c->heads)
        snprintf(buf, len, "%d", c->heads);
    else
        snprintf(buf, len, "%d/%d", c->heads, c->kv_heads);
}

/* ------------------------------------------------------------------ results */

typedef struct case_outcome {
    int exit_code;
    const char *result; /* "OK", "FAILED", "BELOW GATE", "ERROR", "TIMEOUT" */
    double fwd_ms, bwd_ms, fwd_tf, bwd_tf, err, tol;
    double err_t[NERR];
    char msg[600];
} case_outcome;

/* GPUs that `ranks` ranks really use: one each, except on the cuda backend
 * in one process, where rank r runs on GPU r % (visible GPUs) */
static int gpus_used(const fa4cp_case *c, const world_info *w, int ranks)
{
    if (c->backend == FA4CP_BACKEND_CUDA && w->procs == 1) {
        int n = run_visible_gpus();
        if (n > 0 && n < ranks)
            return n;
    }
    return ranks;
}

static void write_json(const opts *o, const world_info *w, const fa4cp_case *c, const case_outcome *oc,
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
    fa4cp_jw_begin(&j, "config", 0);
    fa4cp_jw_begin(&j, "attention", 0);
    fa4cp_jw_int(&j, "heads", c->heads);
    fa4cp_jw_int(&j, "kv_heads", c->kv_heads);
    fa4cp_jw_int(&j, "head_dim", c->head_dim);
    fa4cp_jw_str(&j, "dtype", fa4cp_dtype_name(c->dtype));
    fa4cp_jw_bool(&j, "causal", c->causal);
    fa4cp_jw_begin(&j, "window", 1);
    fa4cp_jw_int(&j, NULL, c->window_left);
    fa4cp_jw_int(&j, NULL, c->window_right);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_str(&j, "layout", c->layout_bshd ? "bshd" : "thd");
    fa4cp_jw_bool(&j, "pad_between_seqs", c->pad_between_seqs);
    fa4cp_jw_str(&j, "distribution", fa4cp_seq_dist_name(c->dist));
    fa4cp_jw_int(&j, "batch", c->batch);
    fa4cp_jw_int(&j, "tokens", c->tokens);
    fa4cp_jw_int(&j, "padded_tokens", c->padded_tokens);
    fa4cp_jw_int(&j, "max_seqlen", c->max_seqlen);
    fa4cp_jw_begin(&j, "sequences", 1);
    for (int i = 0; i < c->batch && i < 4096; i++)
        fa4cp_jw_int(&j, NULL, c->seqlen[i]);
    fa4cp_jw_end(&j, 1);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "cp", 0);
    fa4cp_jw_int(&j, "size", c->cp);
    fa4cp_jw_str(&j, "comm", fa4cp_cp_comm_name(c->comm));
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "run", 0);
    fa4cp_jw_str(&j, "backend", fa4cp_backend_name(c->backend));
    fa4cp_jw_int(&j, "warmup", c->warmup);
    fa4cp_jw_int(&j, "iters", c->iters);
    fa4cp_jw_bool(&j, "backward", c->backward);
    fa4cp_jw_str(&j, "check", fa4cp_check_mode_name(c->check));
    fa4cp_jw_int(&j, "samples", c->samples);
    fa4cp_jw_int(&j, "seed", (long long)c->seed);
    fa4cp_jw_num(&j, "timeout", c->timeout_s);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "gate", 0);
    fa4cp_jw_num(&j, "fwd_tflops", c->gate_fwd_tflops);
    fa4cp_jw_num(&j, "bwd_tflops", c->gate_bwd_tflops);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "env", 0);
    fa4cp_jw_str(&j, "fa4cp", fa4cp_version());
    fa4cp_jw_str(&j, "host", w->host);
    fa4cp_jw_str(&j, "bootstrap", w->kind);
    fa4cp_jw_int(&j, "world_size", w->size);
    fa4cp_jw_int(&j, "gpus", w->size);
    fa4cp_jw_int(&j, "procs", w->procs);
    fa4cp_jw_int(&j, "nodes", w->nodes);
    fa4cp_jw_int(&j, "replicas", w->size / c->cp);
    const char *job = getenv("SLURM_JOB_ID");
    if (job)
        fa4cp_jw_str(&j, "slurm_job_id", job);
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
    versions(vers, sizeof vers, 1);
    fa4cp_jw_str(&j, "versions", vers);
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_begin(&j, "result", 0);
    fa4cp_jw_str(&j, "status", oc->result);
    fa4cp_jw_int(&j, "exit_code", oc->exit_code);
    fa4cp_jw_num(&j, "fwd_ms", oc->fwd_ms);
    fa4cp_jw_num(&j, "bwd_ms", oc->bwd_ms);
    fa4cp_jw_num(&j, "fwd_flops", fwd);
    fa4cp_jw_num(&j, "bwd_flops", c->backward ? bwd : NAN);
    fa4cp_jw_num(&j, "fwd_tflops_per_gpu", oc->fwd_tf);
    fa4cp_jw_num(&j, "bwd_tflops_per_gpu", oc->bwd_tf);
    fa4cp_jw_num(&j, "fwd_tflops_total", oc->fwd_tf * gpus_used(c, w, w->size));
    fa4cp_jw_num(&j, "bwd_tflops_total", oc->bwd_tf * gpus_used(c, w, w->size));
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
        fa4cp_jw_begin(&j, "steps", 1);
        for (int i = 0; i < nr; i++) {
            fa4cp_jw_begin(&j, NULL, 0);
            fa4cp_jw_int(&j, "rank", rr[i].rank);
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
                /* communication that ran while the step computed (an
                 * exchange starts with its step's compute) */
                fa4cp_jw_num(&j, "comm_hidden_fraction", comm > 0 ? hidden / comm : NAN);
                fa4cp_jw_num(&j, "compute_over_call", t->call_ms > 0 ? comp / t->call_ms : NAN);
                fa4cp_jw_end(&j, 0);
            }
            fa4cp_jw_end(&j, 0);
        }
        fa4cp_jw_end(&j, 1);
    }
    fa4cp_jw_end(&j, 0);
    fa4cp_jw_end(&j, 0);
    if (j.failed || fa4cp_results_append(o->outdir, j.buf))
        fprintf(stderr, "fa4cp-run: cannot record case %d: %s\n", c->index,
                j.failed ? "out of memory" : fa4cp_last_error());
    fa4cp_jw_free(&j);
}

/* ------------------------------------------------------------------ local execution */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct thread_arg {
    const fa4cp_case *c;
    fa4cp_comm *comm;
    int rank;
    int inject;
    rank_result *res;
    int done; /* set (atomically) when the rank's run returned */
} thread_arg;

#ifdef FA4CP_CP_CONFIG_INIT
static void *rank_thread(void *p)
{
    thread_arg *a = p;
    run_case_rank(a->c, a->comm, a->rank, -1, a->inject, a->res);
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
#endif

/* Run case c on `ranks` threads; returns 0, or EXIT_TIMEOUT/EXIT_RUNTIME for
 * what stopped it before results came back (message in msg). */
static int run_local(const fa4cp_case *c, const world_info *w, int inject, rank_result *res, char *msg,
                     size_t msglen)
{
#ifdef FA4CP_CP_CONFIG_INIT
    int ranks = w->size, groups = ranks / c->cp, rc = 0;
    fa4cp_layout *layout = NULL;
    fa4cp_layout_place *place = calloc((size_t)ranks, sizeof *place);
    fa4cp_local_world **lw = calloc((size_t)groups, sizeof *lw);
    fa4cp_comm **comms = calloc((size_t)ranks, sizeof *comms);
    pthread_t *th = calloc((size_t)ranks, sizeof *th);
    thread_arg *args = calloc((size_t)ranks, sizeof *args);
    int started = 0;
    if (!lw || !comms || !th || !args || !place) {
        snprintf(msg, msglen, "out of memory for %d ranks", ranks);
        rc = EXIT_RUNTIME;
        goto out;
    }
    /* CP groups and ring positions from the layout */
    if (fa4cp_layout_build(w->table, ranks, c->cp, fa4cp_cp_comm_info_of(c->comm)->group_in_node, 1, &layout)) {
        snprintf(msg, msglen, "layout: %s", fa4cp_last_error());
        rc = EXIT_USAGE;
        goto out;
    }
    for (int r = 0; r < ranks; r++)
        fa4cp_layout_place_of(layout, r, &place[r]);
    for (int g = 0; g < groups; g++)
        if (fa4cp_local_world_create(c->cp, c->backend == FA4CP_BACKEND_CUDA, c->timeout_s, &lw[g])) {
            snprintf(msg, msglen, "local transport: %s", fa4cp_last_error());
            rc = EXIT_RUNTIME;
            goto out;
        }
    for (int r = 0; r < ranks; r++)
        if (fa4cp_local_comm(lw[place[r].cp_group], place[r].cp_rank, &comms[r])) {
            snprintf(msg, msglen, "local transport: %s", fa4cp_last_error());
            rc = EXIT_RUNTIME;
            goto out;
        }
    for (int r = 0; r < ranks; r++) {
        args[r] = (thread_arg){c, comms[r], r, ((inject & 1) && place[r].cp_group == 0) | (inject & ~1), &res[r], 0};
        if (pthread_create(&th[r], NULL, rank_thread, &args[r])) {
            snprintf(msg, msglen, "cannot start rank thread %d: %s", r, strerror(errno));
            rc = EXIT_RUNTIME;
            goto out;
        }
        started++;
    }
    /* Watch the ranks: a rank that failed on its own leaves the others
     * waiting in a collective, so after a short grace the job ends with a
     * message naming it (in one process this is the PMIx abort's job);
     * a case past run.timeout ends it with exit 4.  Never a hang. */
    double t_start = mono_s(), t_failed = -1;
    int failed = -1;
    for (;;) {
        int ndone = 0;
        for (int r = 0; r < started; r++) {
            if (!__atomic_load_n(&args[r].done, __ATOMIC_ACQUIRE))
                continue;
            ndone++;
            if (res[r].status && failed < 0 && res[r].status != FA4CP_ERR_TIMEOUT && res[r].status != FA4CP_ERR_PEER) {
                failed = r;
                t_failed = mono_s();
            }
        }
        if (ndone == started)
            break;
        if (failed >= 0 && mono_s() - t_failed > 2.0) {
            fflush(stdout);
            fprintf(stderr, "fa4cp-run: case %d (%s): rank %d failed: %s; the other ranks cannot finish the case: "
                    "ending the job\n", c->index, c->label[0] ? c->label : c->name, res[failed].rank, res[failed].msg);
            _exit(EXIT_RUNTIME);
        }
        if (mono_s() - t_start > c->timeout_s + 5.0) {
            fflush(stdout);
            int r = 0;
            while (r < started && __atomic_load_n(&args[r].done, __ATOMIC_ACQUIRE))
                r++;
            fprintf(stderr, "fa4cp-run: case %d (%s) ran past run.timeout = %g s: rank %d still running; ending the job\n",
                    c->index, c->label[0] ? c->label : c->name, c->timeout_s, r);
            _exit(EXIT_TIMEOUT);
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    started = 0;
out:
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    if (comms)
        for (int r = 0; r < ranks; r++)
            if (comms[r])
                fa4cp_comm_destroy(comms[r]);
    if (lw)
        for (int g = 0; g < groups; g++)
            if (lw[g])
                fa4cp_local_world_destroy(lw[g]);
    free(lw);
    free(comms);
    free(th);
    free(args);
    free(place);
    fa4cp_layout_destroy(layout);
    return rc;
#else
    (void)c;
    (void)w;
    (void)inject;
    (void)res;
    snprintf(msg, msglen,
             "this build of fa4cp has no CP executor (lib/cp*.c is not linked in): only --dry-run/--explain work");
    return EXIT_RUNTIME;
#endif
}

/* ------------------------------------------------------------------ multi-process execution
 *
 * One process per rank (srun --mpi=pmix, mpirun): each process runs its own
 * rank of the case on its GPU (the world table's row), CP over NCCL
 * communicators made per cp.size (fa4cp_nccl_comm_create), and the per-rank
 * results come to every process through the bootstrap (fa4cp_world_allgather),
 * so every process judges the case alike and exits with the same code;
 * only rank 0 prints.  A rank that fails on its own ends the job through
 * fa4cp_world_abort (PMIx_Abort) with a message naming it; a rank that
 * stops answering is ended by the NCCL watchdog (its peers), the bootstrap
 * timeout of the results exchange, or the case watchdog below. */

typedef struct mp_state {
    fa4cp_nccl_comms comms;
    fa4cp_layout *layout;
    int cp;            /* cp.size of the communicators in comms (0: none) */
    double timeout_s;  /* NCCL watchdog: the longest run.timeout of the job */
} mp_state;

/* a fixed-size record of one rank's verdict, for fa4cp_world_allgather */
typedef struct mp_verdict {
    int code;
    char msg[600];
} mp_verdict;

static struct {
    fa4cp_world *world;
    int rank;
    double deadline; /* monotonic seconds; 0 = no case running */
    int case_index;
    double timeout_s;
    char what[256];
} mp_watch;
static pthread_mutex_t mp_watch_m = PTHREAD_MUTEX_INITIALIZER;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The case watchdog: a rank still in a case 5 s past run.timeout ends the
 * job (a hang in host code, where no NCCL watchdog looks). */
static void *mp_watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec nap = {0, 100 * 1000 * 1000};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&mp_watch_m);
        double dl = mp_watch.deadline;
        pthread_mutex_unlock(&mp_watch_m);
        if (dl > 0 && mono_now() > dl) {
            char msg[600];
            snprintf(msg, sizeof msg, "case %d (%s) ran past run.timeout = %g s on this rank; ending the job (exit 4 "
                     "in local mode; the launcher reports the abort)", mp_watch.case_index, mp_watch.what,
                     mp_watch.timeout_s);
            fflush(stdout);
            fa4cp_world_abort(mp_watch.world, msg);
        }
    }
    return NULL;
}

static void mp_watch_set(const fa4cp_case *c)
{
    pthread_mutex_lock(&mp_watch_m);
    if (c) {
        mp_watch.case_index = c->index;
        mp_watch.timeout_s = c->timeout_s;
        snprintf(mp_watch.what, sizeof mp_watch.what, "%.200s", c->label[0] ? c->label : c->name);
        mp_watch.deadline = mono_now() + c->timeout_s + 5.0;
    } else {
        mp_watch.deadline = 0;
    }
    pthread_mutex_unlock(&mp_watch_m);
}

/* Every process's verdict to every process; 0 when all are 0, else the code
 * of the first rank that failed, its message in msg ("rank R on HOST: ...").
 * A failed exchange ends the job (a rank that is gone cannot answer). */
static int mp_agree(const world_info *w, int code, const char *why, const char *what, char *msg, size_t len)
{
    mp_verdict mine, *all = calloc((size_t)w->size, sizeof *all);
    memset(&mine, 0, sizeof mine);
    mine.code = code;
    snprintf(mine.msg, sizeof mine.msg, "%s", why ? why : "");
    if (!all || fa4cp_world_allgather(w->world, &mine, all, sizeof mine)) {
        char m[700];
        snprintf(m, sizeof m, "%s: exchanging the ranks' verdicts over the bootstrap failed: %s", what,
                 all ? fa4cp_last_error() : "out of memory");
        free(all);
        fflush(stdout);
        fa4cp_world_abort(w->world, m);
    }
    int rc = 0, nbad = 0;
    for (int r = 0; r < w->size; r++) {
        if (!all[r].code)
            continue;
        if (!nbad++) {
            rc = all[r].code;
            snprintf(msg, len, "rank %d on %s: %s", r, w->table[r].host, all[r].msg);
        }
    }
    if (nbad > 1) {
        size_t at = strlen(msg);
        if (at < len)
            snprintf(msg + at, len - at, " (and %d more rank(s))", nbad - 1);
    }
    free(all);
    return rc;
}

/* This process can run cuda cases over NCCL: the build has CUDA and NCCL,
 * the world table gives it a GPU, and that GPU can be selected (before
 * anything else touches CUDA).  0, or EXIT_RUNTIME with why. */
static int mp_gpu_ready(const world_info *w, char *why, size_t len)
{
    const fa4cp_world_row *me = &w->table[w->rank];
    if (!fa4cp_nccl_available()) {
        snprintf(why, len, "this build of fa4cp has no NCCL (configure --with-nccl): multi-process runs use the "
                 "NCCL transport");
        return EXIT_RUNTIME;
    }
    if (me->gpu < 0) {
        snprintf(why, len, "no GPU visible to this task (CUDA_VISIBLE_DEVICES and /dev/nvidia*): launch one task "
                 "per GPU, e.g. srun --gpus-per-task=1 --mpi=pmix, or mpirun on a GPU node");
        return EXIT_RUNTIME;
    }
    if (fa4cp_world_check_gpus(w->table, w->size)) { /* NCCL needs one GPU per rank */
        snprintf(why, len, "%s", fa4cp_last_error());
        return EXIT_RUNTIME;
    }
#ifdef HAVE_CUDA
    cudaError_t e = cudaSetDevice(me->gpu);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(why, len, "cudaSetDevice(%d) (GPU %s): %s", me->gpu, me->gpu_id, cudaGetErrorString(e));
        return EXIT_RUNTIME;
    }
#endif
    if (!fa4cp_backend_available(FA4CP_BACKEND_CUDA)) {
        snprintf(why, len, "run.backend cuda is not available here: no usable CUDA device, or this build has no "
                 "CUDA kernels (configure --with-cuda)");
        return EXIT_RUNTIME;
    }
    return 0;
}

/* NCCL communicators for cp.size c->cp (kept while consecutive cases share
 * it).  A failure ends the job: the other ranks are inside the same
 * collective creation. */
static void mp_comms_for(mp_state *m, const world_info *w, const fa4cp_case *c)
{
    if (m->cp == c->cp)
        return;
    if (m->cp) {
        fa4cp_nccl_comms_destroy(&m->comms);
        fa4cp_layout_destroy(m->layout);
        m->layout = NULL;
        m->cp = 0;
    }
    char msg[800];
    if (fa4cp_layout_build(w->table, w->size, c->cp, 0, 1, &m->layout)) {
        snprintf(msg, sizeof msg, "case %d: layout for cp.size %d: %s", c->index, c->cp, fa4cp_last_error());
        fflush(stdout);
        fa4cp_world_abort(w->world, msg);
    }
    fa4cp_nccl_config cfg = FA4CP_NCCL_CONFIG_INIT;
    cfg.timeout_s = m->timeout_s;
    if (fa4cp_nccl_comm_create(w->world, m->layout, &cfg, &m->comms)) {
        snprintf(msg, sizeof msg, "case %d: NCCL communicators for cp.size %d: %s", c->index, c->cp,
                 fa4cp_last_error());
        fflush(stdout);
        fa4cp_world_abort(w->world, msg);
    }
    m->cp = c->cp;
}

static void mp_close(mp_state *m)
{
    if (m->cp)
        fa4cp_nccl_comms_destroy(&m->comms);
    fa4cp_layout_destroy(m->layout);
    memset(m, 0, sizeof *m);
}

/* Run case c, this process's rank of it; res [size] gets every rank's
 * result.  0, or an exit code (message in msg) for what stopped the case. */
static int run_procs(mp_state *m, const fa4cp_case *c, const world_info *w, int inject, rank_result *res,
                     char *msg, size_t msglen)
{
    rank_result mine;
    fa4cp_layout_place pl;
    mp_comms_for(m, w, c);
    fa4cp_layout_place_of(m->layout, w->rank, &pl);
    mp_watch_set(c);
    run_case_rank(c, m->comms.cp, w->rank, w->table[w->rank].gpu,
                  ((inject & 1) && pl.cp_group == 0) | (inject & ~1), &mine);
    mp_watch_set(NULL);
    if (mine.status && mine.status != FA4CP_ERR_TIMEOUT && mine.status != FA4CP_ERR_PEER) {
        /* failed on its own: its peers wait for it in a collective */
        char m2[1000];
        snprintf(m2, sizeof m2, "case %d (%.200s): rank %d failed: %.480s; the other ranks cannot finish the case: "
                 "ending the job", c->index, c->label[0] ? c->label : c->name, w->rank, mine.msg);
        fflush(stdout);
        fa4cp_world_abort(w->world, m2);
    }
    if (fa4cp_world_allgather(w->world, &mine, res, sizeof mine)) {
        char m2[800];
        snprintf(m2, sizeof m2, "case %d: gathering the ranks' results over the bootstrap failed: %s", c->index,
                 fa4cp_last_error());
        fflush(stdout);
        fa4cp_world_abort(w->world, m2);
    }
    /* an NCCL comm aborted by its watchdog cannot be used again */
    for (int r = 0; r < w->size; r++)
        if (res[r].status) {
            fa4cp_nccl_comms_destroy(&m->comms);
            fa4cp_layout_destroy(m->layout);
            m->layout = NULL;
            m->cp = 0;
            break;
        }
    (void)msg;
    (void)msglen;
    return 0;
}

static int status_exit(int st)
{
    switch (st) {
    case FA4CP_ERR_TIMEOUT: return EXIT_TIMEOUT;
    case FA4CP_ERR_INVALID: return EXIT_USAGE;
    default: return EXIT_RUNTIME;
    }
}

/* Turn per-rank results into the case outcome. */
static void judge(const fa4cp_case *c, const world_info *w, const rank_result *rr, int nr, case_outcome *oc)
{
    double fwd, bwd;
    fa4cp_case_flops(c, &fwd, &bwd);
    oc->fwd_ms = oc->bwd_ms = -1;
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
    int gpus = gpus_used(c, w, c->cp);
    oc->fwd_tf = oc->fwd_ms > 0 ? fwd / gpus / (oc->fwd_ms * 1e-3) / 1e12 : NAN;
    oc->bwd_tf = oc->bwd_ms > 0 ? bwd / gpus / (oc->bwd_ms * 1e-3) / 1e12 : NAN;
    (void)w;
    if (oc->exit_code) {
        oc->result = oc->exit_code == EXIT_TIMEOUT ? "TIMEOUT" : "ERROR";
        return;
    }
    if (c->check != FA4CP_CHECK_OFF && !(oc->err <= oc->tol)) {
        oc->exit_code = EXIT_VERIFY;
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
        oc->exit_code = EXIT_GATE;
        oc->result = "BELOW GATE";
        snprintf(oc->msg, sizeof oc->msg, "below the gate: fwd %.3g TFLOP/s per GPU (gate %g), bwd %.3g (gate %g)",
                 oc->fwd_tf, c->gate_fwd_tflops, oc->bwd_tf, c->gate_bwd_tflops);
        return;
    }
    oc->result = "OK";
}

static int worse(int a, int b)
{
    /* severity: runtime 3 > timeout 4 > verify 5 > gate 6 > usage 2 > ok */
    static const int rank_of[7] = {0, 0, 1, 5, 4, 3, 2};
    return rank_of[b] > rank_of[a] ? b : a;
}

static void progress(const opts *o, int done, int total, double t0)
{
    if (o->quiet || !isatty(2))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double el = ts.tv_sec + ts.tv_nsec * 1e-9 - t0;
    double eta = done ? el / done * (total - done) : 0;
    int width = 30, fill = total ? done * width / total : width;
    fprintf(stderr, "\r[%.*s%*s] %d/%d cases, %.0fs elapsed, ETA %.0fs ", fill,
            "##############################", width - fill, "", done, total, el, eta);
    if (done == total)
        fprintf(stderr, "\n");
}

/* A cuda case must fit the free memory of every GPU of this process's
 * ranks (ranks that share a GPU add up).  0 when it fits or NVML cannot
 * tell (nothing to check against); else EXIT_RUNTIME with the numbers. */
static int check_gpu_memory(const fa4cp_case *c, const world_info *w, char *msg, size_t len)
{
    size_t need = fa4cp_case_memory(c, 1);
    for (int r = 0; r < w->size; r++) {
        const fa4cp_world_row *row = &w->table[r];
        if (row->gpu < 0 || (w->procs > 1 && r != w->rank))
            continue;
        int first = 1, n = 0;
        for (int q = 0; q < w->size; q++) {
            const fa4cp_world_row *o = &w->table[q];
            if (o->gpu < 0 || strcmp(o->host, row->host) || o->gpu != row->gpu || strcmp(o->gpu_id, row->gpu_id))
                continue;
            if (q < r)
                first = 0;
            n++;
        }
        if (!first)
            continue; /* this GPU was checked with its first rank */
        size_t free_b = 0, total_b = 0;
        char name[96], why[160];
        if (run_gpu_memory(row, &free_b, &total_b, name, sizeof name, why, sizeof why)) {
            fa4cp_log(FA4CP_LOG_INFO, "no GPU memory check: %s", why);
            return 0;
        }
        if ((double)need * n > (double)free_b) {
            snprintf(msg, len,
                     "needs an estimated %.2f GiB per rank, %.2f GiB for the %d rank(s) on GPU %d (%s%s%s) of %s, "
                     "which has %.2f GiB free of %.2f GiB; use a larger cp.size, fewer tokens%s",
                     need / 1073741824.0, need * (double)n / 1073741824.0, n, row->gpu, name,
                     row->gpu_id[0] ? ", " : "", row->gpu_id, row->host, free_b / 1073741824.0,
                     total_b / 1073741824.0, c->check == FA4CP_CHECK_FULL ? ", or check: sampled" : "");
            return EXIT_RUNTIME;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

/* Before the world is up: is this a task other than rank 0 of a launch? */
static int launcher_rank_nonzero(void)
{
    const char *r = getenv("PMIX_RANK");
    if (!r)
        r = getenv("SLURM_PROCID");
    return r && strcmp(r, "0") != 0;
}

int main(int argc, char **argv)
{
    opts o;
    int first;
    if (parse_args(argc, argv, &o, &first))
        return EXIT_USAGE;
    int nfiles = argc - first;
    fa4cp_workload **wl = calloc((size_t)nfiles, sizeof *wl);
    int ncases = 0, exit_code = EXIT_OK;
    for (int i = 0; i < nfiles; i++) {
        if (fa4cp_workload_load(argv[first + i], o.ov, o.nov, &wl[i])) {
            if (!launcher_rank_nonzero()) /* under srun: one copy of the message, not one per task */
                fprintf(stderr, "fa4cp-run: %s\n", fa4cp_last_error());
            for (int j = 0; j < i; j++)
                fa4cp_workload_free(wl[j]);
            free(wl);
            return EXIT_USAGE;
        }
        ncases += fa4cp_workload_count(wl[i]);
    }
    world_info w;
    mp_state mps;
    memset(&mps, 0, sizeof mps);
    fa4cp_world_row *plan = NULL;
    int wrc;
    if (o.nodes) { /* a planned world: nothing is launched, no GPU touched */
        memset(&w, 0, sizeof w);
        wrc = plan_world(&o, &plan, &w.size);
        w.table = plan;
        w.procs = w.size;
        w.nodes = o.nodes;
        w.kind = "plan";
        snprintf(w.host, sizeof w.host, "(planned: %d node(s) x %s task(s), %s)", o.nodes, o.tpn,
                 o.dist ? o.dist : "block");
    } else {
        wrc = world_up(&w, o.ranks);
    }
    if (wrc) {
        for (int i = 0; i < nfiles; i++)
            fa4cp_workload_free(wl[i]);
        free(wl);
        return wrc;
    }
    int root = w.rank == 0;
    if (strcmp(w.kind, "local") && o.ranks != 1 && root)
        fprintf(stderr, "fa4cp-run: --ranks is for local mode; under %s the launcher gives %d ranks\n", w.kind,
                w.size);
    /* every case must fit the world before anything runs */
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++)
            if (fa4cp_case_fit_world(fa4cp_workload_get(wl[i], k), w.size)) {
                if (root)
                    fprintf(stderr, "fa4cp-run: %s\n", fa4cp_last_error());
                exit_code = EXIT_USAGE;
                goto done;
            }
    /* the layout of every CP size in the job */
    char layout_text[512] = "";
    {
        int seen[64], nseen = 0;
        size_t at = 0;
        for (int i = 0; i < nfiles; i++)
            for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
                const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
                int dup = 0;
                for (int j = 0; j < nseen; j++)
                    dup |= seen[j] == c->cp;
                if (dup || nseen == 64)
                    continue;
                seen[nseen++] = c->cp;
                fa4cp_layout *l = NULL;
                if (fa4cp_layout_build(w.table, w.size, c->cp, 0, 1, &l)) {
                    if (root)
                        fprintf(stderr, "fa4cp-run: layout for cp.size %d: %s\n", c->cp, fa4cp_last_error());
                    exit_code = EXIT_USAGE;
                    goto done;
                }
                int hops = 0, nodes = 0;
                for (int g = 0; g < fa4cp_layout_cp_groups(l); g++) {
                    hops += fa4cp_layout_hops(l, g);
                    if (fa4cp_layout_group_nodes(l, g) > nodes)
                        nodes = fa4cp_layout_group_nodes(l, g);
                }
                if (at < sizeof layout_text)
                    at += (size_t)snprintf(layout_text + at, sizeof layout_text - at,
                                           "%scp %d: %d group(s), up to %d node(s) each, %d inter-node ring hop(s)",
                                           at ? "; " : "", c->cp, fa4cp_layout_cp_groups(l), nodes, hops);
                fa4cp_layout_destroy(l);
            }
    }
    if (root && !o.tap)
        print_header(&w, ncases, nfiles, argv + first, &o, layout_text);
    if (root && o.tap) {
        printf("TAP version 13\n1..%d\n", ncases);
        print_header(&w, ncases, nfiles, argv + first, &o, layout_text);
    }
    if (o.dry_run) {
        int tapno = 0;
        if (root && !o.tap)
            print_table_head(1);
        for (int i = 0; i < nfiles; i++)
            for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
                const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
                double f, b;
                char mask[32];
                fa4cp_case_flops(c, &f, &b);
                size_t mem = fa4cp_case_memory(c, 1);
                if (!root)
                    continue;
                if (o.tap)
                    printf("ok %d - %s case %d %s # SKIP dry run\n", ++tapno, c->name, c->index, c->label);
                char hb[16];
                heads_text(c, hb, sizeof hb);
                printf("%s %4d %-10s %4d %8lld %8lld %6s %4d %-5s %-12s %10.3f %10.3f %10.1f %-8s %s\n",
                       o.tap ? "#" : " ", c->index, fa4cp_cp_comm_name(c->comm), c->cp, (long long)c->tokens, (long long)c->padded_tokens,
                       hb, c->head_dim, fa4cp_dtype_name(c->dtype), mask_text(c, mask, sizeof mask), f / 1e9,
                       c->backward ? b / 1e9 : 0.0, mem / 1048576.0, fa4cp_check_mode_name(c->check), c->label);
                if (o.explain) {
                    printf("#   %s doc %d: %d sequence(s) (%s), max %d tokens, dtype %s, layout %s, backend %s, "
                           "warmup %d, iters %d, backward %s, seed %llu, timeout %g s\n",
                           c->file, c->doc, c->batch, fa4cp_seq_dist_name(c->dist), c->max_seqlen,
                           fa4cp_dtype_name(c->dtype), c->layout_bshd ? "bshd" : "thd", fa4cp_backend_name(c->backend),
                           c->warmup, c->iters, c->backward ? "yes" : "no", (unsigned long long)c->seed, c->timeout_s);
                    fa4cp_layout *lay = NULL;
                    char *text = NULL;
                    if (!fa4cp_layout_build(w.table, w.size, c->cp, fa4cp_cp_comm_info_of(c->comm)->group_in_node, 0, &lay) &&
                        !fa4cp_layout_format(lay, w.kind, 0, &text)) {
                        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                            nl = strchr(line, '\n');
                            printf("#     %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
                        }
                        if (fa4cp_layout_warning(lay)[0])
                            printf("#   layout warning: %s\n", fa4cp_layout_warning(lay));
                    }
                    fa4cp_free(text);
                    fa4cp_layout_destroy(lay);
                    for (int r = 0; r < c->cp && r < 16; r++) {
                        int64_t rows = c->padded_tokens / c->cp, real = 0;
                        for (int64_t l = 0; l < rows && rows <= (1 << 22); l++)
                            real += fa4cp_case_local_token(c, r, l) >= 0;
                        printf("#   cp rank %d: %lld local rows (%lld real)\n", r, (long long)rows, (long long)real);
                        fflush(stdout);
                        if (run_plan_print(c, r, stdout) != 0 && r == 0)
                            printf("#     (CP plan: not available in this build)\n");
                    }
                    if (c->cp > 16)
                        printf("#   ... %d more CP ranks\n", c->cp - 16);
                }
            }
        if (root)
            printf("# dry run: %d case(s) valid\n", ncases);
        goto done;
    }
    /* ---- execution */
    /* multi-process (srun --mpi=pmix, mpirun): one rank per process, CP over NCCL */
    int mp = strcmp(w.kind, "local") != 0, any_cuda = 0;
    double max_timeout = 0;
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            any_cuda |= c->backend == FA4CP_BACKEND_CUDA;
            if (c->timeout_s > max_timeout)
                max_timeout = c->timeout_s;
            if (mp && w.procs > 1 && c->backend == FA4CP_BACKEND_CPU) {
                if (root) {
                    fprintf(stderr,
                            "fa4cp-run: %s case %d (%s): the cpu backend runs ranks as threads of one process: "
                            "use --ranks N without srun, or backend: cuda (this %s launch has %d processes)\n",
                            c->file, c->index, c->label[0] ? c->label : c->name, w.kind, w.procs);
                    if (o.tap)
                        printf("Bail out! the cpu backend does not run in a multi-process launch (exit 2)\n");
                }
                exit_code = EXIT_USAGE;
                goto done;
            }
        }
    if (mp && w.procs > 1 && fa4cp_world_kind_of(w.world) != FA4CP_WORLD_PMIX) {
        if (root) {
            fprintf(stderr,
                    "fa4cp-run: running cases in a launch of %d processes exchanges results and the NCCL id over "
                    "PMIx, but this world came from the %s environment: launch with srun --mpi=pmix (or mpirun)\n",
                    w.procs, w.kind);
            if (o.tap)
                printf("Bail out! multi-process runs need the PMIx bootstrap (exit 3)\n");
        }
        exit_code = EXIT_RUNTIME;
        goto done;
    }
    if (mp && any_cuda) {
        char why[600] = "", agreed[800] = "";
        int rc = mp_gpu_ready(&w, why, sizeof why);
        if ((rc = mp_agree(&w, rc, why, "GPU check", agreed, sizeof agreed))) {
            if (root) {
                fprintf(stderr, "fa4cp-run: cannot run the cuda cases of this %s launch of %d process(es): %s\n",
                        w.kind, w.procs, agreed);
                if (o.tap)
                    printf("Bail out! %s (exit 3)\n", agreed);
            }
            exit_code = EXIT_RUNTIME;
            goto done;
        }
        mp_watch.world = w.world;
        mp_watch.rank = w.rank;
        pthread_t wd;
        if (pthread_create(&wd, NULL, mp_watchdog, NULL) == 0)
            pthread_detach(wd);
    }
    mps.timeout_s = max_timeout > 0 ? max_timeout : 300.0;
    /* between two exchanges a rank may work up to run.timeout (a full check
     * on CP rank 0 while its peers wait): the exchanges wait that long too */
    if (mp && fa4cp_world_timeout(w.world) < max_timeout + 30.0)
        fa4cp_world_set_timeout(w.world, max_timeout + 30.0);
    if (!run_exec_available()) {
        fprintf(stderr,
                "fa4cp-run: this build of fa4cp has no CP executor (lib/cp*.c not linked in); "
                "--dry-run and --explain work\n");
        if (o.tap)
            printf("Bail out! no CP executor in this build (exit 3)\n");
        exit_code = EXIT_RUNTIME;
        goto done;
    }
    if (root && !o.tap)
        print_table_head(0);
    fflush(stdout);
    const char *ie = getenv("FA4CP_RUN_INJECT_ERROR");
    int inject = ie && (atoi(ie) || !strcmp(ie, "out") || !strcmp(ie, "dk"));
    /* test only: FA4CP_RUN_INJECT_FAULT=R makes world rank R fail before its first CP call */
    const char *fault = getenv("FA4CP_RUN_INJECT_FAULT");
    if (fault && *fault)
        inject |= (atoi(fault) + 1) << 1;
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    double t0 = ts0.tv_sec + ts0.tv_nsec * 1e-9;
    int done_cases = 0, nok = 0, nfail = 0, ngate = 0, nerr = 0;
    rank_result *res = calloc((size_t)w.size, sizeof *res);
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            case_outcome oc;
            memset(&oc, 0, sizeof oc);
            memset(res, 0, sizeof *res * (size_t)w.size);
            if (root)
                progress(&o, done_cases, ncases, t0);
            if (c->backend == FA4CP_BACKEND_CUDA && check_gpu_memory(c, &w, oc.msg, sizeof oc.msg)) {
                oc.exit_code = EXIT_RUNTIME;
            } else if (c->backend == FA4CP_BACKEND_CUDA && !fa4cp_backend_available(FA4CP_BACKEND_CUDA)) {
                oc.exit_code = EXIT_RUNTIME;
                snprintf(oc.msg, sizeof oc.msg,
                         "run.backend cuda is not available here: no usable CUDA device, or this build has no "
                         "CUDA kernels (configure --with-cuda, run on a GPU node, or --backend cpu)");
            } else {
                /* host memory: shared by the ranks of this process, or of this node */
                double avail = host_mem_available();
                size_t need = fa4cp_case_memory(c, 1);
                int sharing = mp ? w.table[w.rank].local_size : w.size;
                if (avail > 0 && fa4cp_case_check_memory(c, need, (size_t)(avail / (sharing > 0 ? sharing : 1)),
                                                         "host memory (MemAvailable per rank)")) {
                    oc.exit_code = EXIT_RUNTIME;
                    snprintf(oc.msg, sizeof oc.msg, "%s", fa4cp_last_error());
                }
            }
            if (mp) { /* every process skips a case that one of them cannot run */
                char agreed[sizeof oc.msg], what[64];
                snprintf(what, sizeof what, "case %d", c->index);
                oc.exit_code = mp_agree(&w, oc.exit_code, oc.msg, what, agreed, sizeof agreed);
                snprintf(oc.msg, sizeof oc.msg, "%s", agreed);
            }
            if (!oc.exit_code) {
                int rc = mp && c->backend == FA4CP_BACKEND_CUDA
                             ? run_procs(&mps, c, &w, inject, res, oc.msg, sizeof oc.msg)
                             : run_local(c, &w, inject, res, oc.msg, sizeof oc.msg);
                if (rc)
                    oc.exit_code = rc;
            }
            if (!oc.exit_code)
                judge(c, &w, res, w.size, &oc);
            else {
                oc.result = oc.exit_code == EXIT_TIMEOUT ? "TIMEOUT" : "ERROR";
                oc.fwd_ms = oc.bwd_ms = oc.err = -1;
                oc.fwd_tf = oc.bwd_tf = NAN;
                for (int t = 0; t < NERR; t++)
                    oc.err_t[t] = -1;
            }
            exit_code = worse(exit_code, oc.exit_code);
            nok += oc.exit_code == 0;
            nfail += oc.exit_code == EXIT_VERIFY;
            ngate += oc.exit_code == EXIT_GATE;
            nerr += oc.exit_code == EXIT_RUNTIME || oc.exit_code == EXIT_TIMEOUT || oc.exit_code == EXIT_USAGE;
            char mask[32], hb[16], e[16], fm[16], ft[16], bm[16], bt[16];
            heads_text(c, hb, sizeof hb);
            snprintf(e, sizeof e, oc.err >= 0 || isinf(oc.err) ? "%.2e" : "N/A", oc.err);
            snprintf(fm, sizeof fm, oc.fwd_ms >= 0 ? "%.3f" : "-", oc.fwd_ms);
            snprintf(ft, sizeof ft, isfinite(oc.fwd_tf) ? "%.4f" : "-", oc.fwd_tf);
            snprintf(bm, sizeof bm, oc.bwd_ms >= 0 ? "%.3f" : "-", oc.bwd_ms);
            snprintf(bt, sizeof bt, isfinite(oc.bwd_tf) ? "%.4f" : "-", oc.bwd_tf);
            if (root) {
                if (!o.quiet && isatty(2))
                    fprintf(stderr, "\r%78s\r", ""); /* the progress bar gives way to the row */
                if (o.tap) {
                    printf("%s %d - %s case %d %s (fwd %s ms, bwd %s ms, max err %s)\n", oc.exit_code ? "not ok" : "ok",
                           done_cases + 1, c->name, c->index, c->label, fm, bm, e);
                    if (oc.exit_code)
                        printf("# %s: %s\n", oc.result, oc.msg);
                } else {
                    printf("  %4d %-10s %4d %8lld %6s %4d %-5s %-12s %10s %9s %10s %9s %9s %7s\n", c->index, fa4cp_cp_comm_name(c->comm),
                           c->cp, (long long)c->tokens, hb, c->head_dim, fa4cp_dtype_name(c->dtype),
                           mask_text(c, mask, sizeof mask), fm, ft, bm, bt, e, oc.result);
                    if (oc.exit_code)
                        printf("#   case %d %s: %s\n", c->index, oc.result, oc.msg);
                }
                fflush(stdout);
                if (oc.exit_code)
                    fprintf(stderr, "fa4cp-run: case %d (%s%s%s): %s\n", c->index, c->name, c->label[0] ? " " : "",
                            c->label, oc.msg);
                if (o.outdir)
                    write_json(&o, &w, c, &oc, res, w.size);
            }
            done_cases++;
        }
    free(res);
    if (root) {
        progress(&o, done_cases, ncases, t0);
        printf("# cases: %d, OK %d, FAILED %d, below gate %d, errors %d\n", ncases, nok, nfail, ngate, nerr);
        if (o.outdir)
            printf("# results: %s/results.jsonl\n", o.outdir);
        printf("# fa4cp-run concluded: %s (exit %d)\n", exit_code ? "FAILED" : "OK", exit_code);
    }
done:
    mp_close(&mps);
    for (int i = 0; i < nfiles; i++)
        fa4cp_workload_free(wl[i]);
    free(wl);
    fflush(stdout);
    fa4cp_world_finalize(w.world);
    fa4cp_free(plan);
    return exit_code;
}
