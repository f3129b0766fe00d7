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

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cp/cp_config.h"
#include "exit_codes.h"
#include "run/gen_gpu.h"
#include "run/run.h"
#include "run/results.h"
#include "core/json.h"

#define MAX_OV 128

typedef struct opts {
    int ranks;
    int nodes;              /* --nodes: plan a cluster this process is not on */
    const char *tpn, *dist; /* --tasks-per-node, --distribution */
    int tap, dry_run, explain, quiet, resume;
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
            "      --resume         skip the cases whose record (same config) is already in\n"
            "                       DIR/results.jsonl: a requeued job continues where it stopped\n"
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

/* a count from 1 to max, or a message */
static int count_arg(const char *opt, const char *what, const char *s, long max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 1 || v > max) {
        fprintf(stderr, "fa4cp-run: %s %s: expected a number of %s from 1 to %ld\n", opt, s, what, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o, int *first_file)
{
    static const struct option longs[] = {
        {"iters", required_argument, NULL, 'n'},   {"warmup", required_argument, NULL, 'w'},
        {"check", required_argument, NULL, 'c'},   {"backend", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 'T'}, {"set", required_argument, NULL, 's'},
        {"ranks", required_argument, NULL, 'R'},   {"output", required_argument, NULL, 'o'},
        {"no-output", no_argument, NULL, 'N'}, {"resume", no_argument, NULL, 'r'},     {"tap", no_argument, NULL, 't'},
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
        case 'R': if (count_arg("--ranks", "ranks", optarg, 4096, &o->ranks)) return -1; break;
        case 'M': if (count_arg("--nodes", "nodes", optarg, 100000, &o->nodes)) return -1; break;
        case 'P': o->tpn = optarg; break;
        case 'd': o->dist = optarg; break;
        case 'o': o->outdir = optarg; break;
        case 'N': o->outdir = NULL; break;
        case 'r': o->resume = 1; break;
        case 't': o->tap = 1; break;
        case 'D': o->dry_run = 1; break;
        case 'E': o->explain = o->dry_run = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("fa4cp-run %s (%s)\n", fa4cp_version(), FA4CP_GIT_REVISION); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "fa4cp-run: no workload given (e.g. fa4cp-run jobs/smoke.yaml --ranks 4)\n");
        usage(stderr);
        return -1;
    }
    if ((o->nodes || o->tpn || o->dist) && !(o->nodes && o->tpn && o->dry_run && o->ranks == 1)) {
        fprintf(stderr, "fa4cp-run: planning a cluster this process is not on needs --dry-run (or --explain), "
                        "--nodes N and --tasks-per-node M, and no --ranks; to run on N nodes, launch with "
                        "srun -N N --mpi=pmix\n");
        return -1;
    }
    *first_file = optind;
    return 0;
}

static void print_header(const world_info *w, int ncases, int nfiles, char **files, const opts *o, const char *layout,
                         const char *transport)
{
    printf("# fa4cp-run %s: %d case(s) from", fa4cp_version(), ncases);
    for (int i = 0; i < nfiles; i++)
        printf(" %s", files[i]);
    printf("\n");
    printf("# world: %d rank(s) on %d node(s), %d process(es), bootstrap %s, host %s\n", w->size, w->nodes,
           w->procs, w->kind, w->host);
    printf("# layout: CP groups from physical order (node, local rank); %s transport; %s\n", transport, layout);
    char v[256];
    run_versions(v, sizeof v, !o->dry_run);
    printf("# versions: %s\n", v);
    if (o->dry_run)
        printf("# dry run: nothing is allocated and no GPU is touched\n");
    printf("# times: median over run.iters on each rank, max over ranks; TFLOP/s per GPU, FlashAttention "
           "convention (fwd 2*(d+dv) per visible pair and head, bwd 2.5x; d: head_dim, or head_dim/head_dim_v)\n");
}

static void print_table_head(int dry)
{
    if (dry) {
        printf("#\n# %4s %-10s %4s %8s %8s %6s %4s %-5s %-12s %10s %10s %10s %-8s\n", "case", "comm", "cp", "tokens",
               "padded", "heads", "d", "dtype", "mask", "fwd GFLOP", "bwd GFLOP", "MiB/rank", "check");
        return;
    }
    printf("#\n# %4s %-10s %4s %8s %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %8s %5s %7s\n", "", "", "", "", "", "", "",
           "", "--- fwd", "", "--- bwd", "", "", "", "", "");
    printf("# %4s %-10s %4s %8s %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %8s %5s %7s\n", "case", "comm", "cp", "tokens",
           "heads", "d", "dtype", "mask", "time(ms)", "TFLOP/s", "time(ms)", "TFLOP/s", "max err", "wall(s)", "gpu %",
           "result");
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

/* ------------------------------------------------------------------ main */

/* Before the world is up: is this a task other than rank 0 of a launch? */
static int launcher_rank_nonzero(void)
{
    const char *r = getenv("PMIX_RANK");
    if (!r)
        r = getenv("SLURM_PROCID");
    return r && strcmp(r, "0") != 0;
}

/* The dry run: every case expanded, estimated and asked of its backend
 * (head dims, dtypes, memory), so that "valid" means it will run; EXIT_OK,
 * or EXIT_USAGE / EXIT_RUNTIME when a case would be refused. */
static int dry_run(const opts *o, const world_info *w, fa4cp_workload *const *wl, int nfiles, int ncases)
{
    int tapno = 0, nbad = 0, rc = EXIT_OK;
    if (!o->tap)
        print_table_head(1);
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            double f, b;
            char mask[32], hb[16], db[24];
            fa4cp_case_flops(c, &f, &b);
            size_t mem = fa4cp_case_memory(c, 1);
            char why[1024];
            int bad = run_case_runnable(c, w, 1, why, sizeof why);
            if (bad) {
                nbad++;
                rc = run_worse(rc, bad);
                fprintf(stderr, "fa4cp-run: %s case %d (%s): would be refused: %s\n", c->file, c->index,
                        c->label[0] ? c->label : c->name, why);
            }
            if (o->tap && bad)
                printf("not ok %d - %s case %d %s # would be refused: %s\n", ++tapno, c->name, c->index, c->label,
                       why);
            else if (o->tap)
                printf("ok %d - %s case %d %s # SKIP dry run\n", ++tapno, c->name, c->index, c->label);
            run_heads_text(c, hb, sizeof hb);
            run_dims_text(c, db, sizeof db);
            printf("%s %4d %-10s %4d %8lld %8lld %6s %4s %-5s %-12s %10.3f %10.3f %10.1f %-8s %s\n",
                   o->tap ? "#" : " ", c->index, fa4cp_cp_comm_name(c->comm), c->cp, (long long)c->tokens,
                   (long long)c->padded_tokens, hb, db, fa4cp_dtype_name(c->dtype),
                   run_mask_text(c, mask, sizeof mask), f / 1e9, c->backward ? b / 1e9 : 0.0, mem / 1048576.0,
                   bad ? "REFUSED" : fa4cp_check_mode_name(c->check), c->label);
            if (!o->explain)
                continue;
            printf("#   %s doc %d: %d sequence(s) (%s), max %d tokens, dtype %s, layout %s, backend %s, "
                   "warmup %d, iters %d, backward %s, seed %llu, timeout %g s\n",
                   c->file, c->doc, c->batch, fa4cp_seq_dist_name(c->dist), c->max_seqlen,
                   fa4cp_dtype_name(c->dtype), c->layout_bshd ? "bshd" : "thd", fa4cp_backend_name(c->backend),
                   c->warmup, c->iters, c->backward ? "yes" : "no", (unsigned long long)c->seed, c->timeout_s);
            printf("#   head_dim %d, head_dim_v %d: backend %s %s (%s takes (head_dim, head_dim_v): %s)\n",
                   c->head_dim, c->head_dim_v, fa4cp_backend_name(c->backend),
                   fa4cp_attn_supports(c->backend, c->dtype, c->head_dim, c->head_dim_v, c->backward) ? "cannot run it"
                                                                                                     : "runs it",
                   fa4cp_backend_name(c->backend), fa4cp_attn_head_dims(c->backend));
            fa4cp_layout *lay = NULL;
            char *text = NULL;
            if (!fa4cp_layout_build(w->table, w->size, c->cp, fa4cp_cp_comm_info_of(c->comm)->group_in_node, 0,
                                    &lay) &&
                !fa4cp_layout_format(lay, w->kind, 0, &text)) {
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
            run_estimate est;
            run_estimate_case(c, run_host_threads(w->size), &est);
            printf("#   estimate per rank: input generation %.3g s (%s), %s check %.3g s (%s); a model, "
                   "not a measurement\n", est.gen_s, est.gen_where, fa4cp_check_mode_name(c->check),
                   est.check_s, est.check_where);
        }
    if (nbad)
        printf("# dry run: %d of %d case(s) valid; %d would be refused (see stderr; exit %d)\n", ncases - nbad, ncases,
               nbad, rc);
    else
        printf("# dry run: %d case(s) valid\n", ncases);
    return rc;
}

/* The outcome of a case that measured nothing (no times, no errors). */
static void unmeasured(case_outcome *oc, int exit_code, const char *result)
{
    memset(oc, 0, sizeof *oc);
    oc->exit_code = exit_code;
    oc->result = result;
    oc->fwd_ms = oc->bwd_ms = oc->err = -1;
    oc->fwd_tf = oc->bwd_tf = NAN;
    for (int t = 0; t < NERR; t++)
        oc->err_t[t] = -1;
}

/* A case's row of the table (or TAP line), and its failure on stderr. */
static void print_case(const opts *o, const fa4cp_case *c, const case_outcome *oc, int number)
{
    char mask[32], hb[16], db[24], e[16], fm[16], ft[16], bm[16], bt[16], ws[16], gp[16];
    run_heads_text(c, hb, sizeof hb);
    run_dims_text(c, db, sizeof db);
    /* wall time of the case, and the share of it in timed work (warm-up and timed iterations) */
    snprintf(ws, sizeof ws, "%.2f", oc->wall_ms * 1e-3);
    snprintf(gp, sizeof gp, oc->timed_ms > 0 && oc->wall_ms > 0 ? "%.0f" : "-", 100.0 * oc->timed_ms / oc->wall_ms);
    snprintf(e, sizeof e, oc->err >= 0 || isinf(oc->err) ? "%.2e" : "N/A", oc->err);
    snprintf(fm, sizeof fm, oc->fwd_ms >= 0 ? "%.3f" : "-", oc->fwd_ms);
    snprintf(ft, sizeof ft, isfinite(oc->fwd_tf) ? "%.4f" : "-", oc->fwd_tf);
    snprintf(bm, sizeof bm, oc->bwd_ms >= 0 ? "%.3f" : "-", oc->bwd_ms);
    snprintf(bt, sizeof bt, isfinite(oc->bwd_tf) ? "%.4f" : "-", oc->bwd_tf);
    if (!o->quiet && isatty(2))
        fprintf(stderr, "\r%78s\r", ""); /* the progress bar gives way to the row */
    if (o->tap) {
        printf("%s %d - %s case %d %s (fwd %s ms, bwd %s ms, max err %s)\n", oc->exit_code ? "not ok" : "ok",
               number, c->name, c->index, c->label, fm, bm, e);
        if (oc->exit_code)
            printf("# %s: %s\n", oc->result, oc->msg);
    } else {
        printf("  %4d %-10s %4d %8lld %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %8s %5s %7s\n", c->index,
               fa4cp_cp_comm_name(c->comm), c->cp, (long long)c->tokens, hb, db,
               fa4cp_dtype_name(c->dtype), run_mask_text(c, mask, sizeof mask), fm, ft, bm, bt, e, ws, gp,
               oc->result);
        if (oc->exit_code)
            printf("#   case %d %s: %s\n", c->index, oc->result, oc->msg);
    }
    fflush(stdout);
    if (oc->exit_code)
        fprintf(stderr, "fa4cp-run: case %d (%s%s%s): %s\n", c->index, c->name, c->label[0] ? " " : "", c->label,
                oc->msg);
}

/* The row (or TAP line) of a case that did not run: the same columns as
 * print_case, the times and the error empty. */
static void print_not_run(const opts *o, const fa4cp_case *c, int number, const char *why)
{
    char mask[32], hb[16], db[24];
    if (o->tap) {
        printf("not ok %d - %s case %d %s # NOT RUN: %s\n", number, c->name, c->index, c->label, why);
        return;
    }
    run_heads_text(c, hb, sizeof hb);
    run_dims_text(c, db, sizeof db);
    printf("  %4d %-10s %4d %8lld %6s %4s %-5s %-12s %10s %9s %10s %9s %9s %8s %5s %7s\n", c->index,
           fa4cp_cp_comm_name(c->comm), c->cp, (long long)c->tokens, hb, db, fa4cp_dtype_name(c->dtype),
           run_mask_text(c, mask, sizeof mask), "-", "-", "-", "-", "N/A", "-", "-", "NOT RUN");
}

/* The multi-process watchdog's last word (its thread; the main one is stuck
 * in the case): rank 0 records the case TIMEOUT with the watchdog's message
 * and every later case NOT RUN, and prints the rows and the footer, before
 * the job is aborted. */
static struct {
    const opts *o;
    const world_info *w;
    fa4cp_workload *const *wl;
    int nfiles, number;
} fire;

static void on_watch_fire(void *ctx, const fa4cp_case *c, const char *msg)
{
    (void)ctx;
    if (fire.w->rank != 0)
        return;
    case_outcome oc;
    unmeasured(&oc, EXIT_TIMEOUT, "TIMEOUT");
    snprintf(oc.msg, sizeof oc.msg, "%s", msg);
    print_case(fire.o, c, &oc, fire.number);
    if (fire.o->outdir)
        run_write_json(fire.o->outdir, fire.w, c, &oc, NULL, 0);
    int after = 0, number = fire.number;
    for (int i = 0; i < fire.nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(fire.wl[i]); k++) {
            const fa4cp_case *n = fa4cp_workload_get(fire.wl[i], k);
            if (!after) {
                after = n == c;
                continue;
            }
            number++;
            oc.exit_code = 0;
            oc.result = "NOT RUN";
            char why[64];
            snprintf(why, sizeof why, "the run watchdog in case %d", c->index);
            snprintf(oc.msg, sizeof oc.msg, "not run: %s", why);
            print_not_run(fire.o, n, number, why);
            if (fire.o->outdir)
                run_write_json(fire.o->outdir, fire.w, n, &oc, NULL, 0);
        }
    printf("# stopped: the run watchdog (run.timeout) in case %d; the remaining case(s) are recorded NOT RUN%s\n",
           c->index, fire.o->outdir ? " (fa4cp-run --resume continues)" : "");
    printf("# fa4cp-run concluded: FAILED (the run watchdog: the job is aborted through the launcher)\n");
    if (fire.o->tap)
        printf("Bail out! the run watchdog in case %d\n", c->index);
    fflush(stdout);
}

static const char *sig_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : strsignal(sig);
}

int main(int argc, char **argv)
{
    opts o;
    int first;
    run_record_argv(argc, argv); /* before parse_args permutes it */
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
    run_session s;
    char msg[1024] = "", bail[1024] = "";
    memset(&s, 0, sizeof s);
    int wrc = o.nodes ? run_world_plan(&w, o.nodes, o.tpn, o.dist) : run_world_up(&w, o.ranks);
    if (wrc) {
        /* the singleton trap: every task exits 8, task 0 alone says how to launch */
        if (wrc != EXIT_LAUNCH || !launcher_rank_nonzero())
            fprintf(stderr, "fa4cp-run: %s\n", fa4cp_last_error());
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
    char layout_text[512];
    if ((exit_code = run_layout_summary(&w, wl, nfiles, layout_text, sizeof layout_text, msg, sizeof msg))) {
        if (root)
            fprintf(stderr, "fa4cp-run: %s\n", msg);
        goto done;
    }
    if (root && o.tap)
        printf("TAP version 13\n1..%d\n", ncases);
    if (root)
        print_header(&w, ncases, nfiles, argv + first, &o, layout_text, run_transport_text(&w, wl, nfiles));
    if (o.dry_run) {
        /* every process asks (the memory of its own node); rank 0 prints */
        if (root)
            exit_code = dry_run(&o, &w, wl, nfiles, ncases);
        if (strcmp(w.kind, "local") && strcmp(w.kind, "plan") && w.procs > 1) { /* every task exits alike */
            char m2[64];
            exit_code = run_mp_agree(&w, exit_code, "", "the dry run", m2, sizeof m2);
        }
        goto done;
    }
    if (o.resume && !o.outdir) {
        if (root)
            fprintf(stderr, "fa4cp-run: --resume reads the records of -o DIR; it does not go with --no-output\n");
        exit_code = EXIT_USAGE;
        goto done;
    }
    /* the output, before the first case: a run never computes what it cannot record */
    if (o.outdir) {
        int bad = root && fa4cp_results_prepare(o.outdir) ? EXIT_USAGE : 0;
        char why[sizeof msg] = "";
        if (bad)
            snprintf(why, sizeof why, "cannot write the results: %s", fa4cp_last_error());
        if (strcmp(w.kind, "local") && strcmp(w.kind, "plan") && w.procs > 1) /* every process stops alike */
            bad = run_mp_agree(&w, bad, why, "the output check", why, sizeof why);
        if (bad) {
            if (root) {
                fprintf(stderr, "fa4cp-run: %s (-o DIR, or --no-output)\n", why);
                if (o.tap)
                    printf("Bail out! %s (exit 2)\n", why);
            }
            exit_code = EXIT_USAGE;
            goto done;
        }
    }
    /* --resume: the complete records already there (any verdict but INTERRUPTED and NOT RUN) */
    char **have = NULL;
    int nhave = 0, *have_code = NULL;
    if (o.resume && root) {
        fa4cp_results_reader *rd = NULL;
        json_t *v;
        if (fa4cp_results_open(o.outdir, NULL, NULL, &rd) == FA4CP_OK) {
            while (fa4cp_results_next(rd, &v, NULL) == FA4CP_OK && v) {
                const char *st = fa4cp_json_str(v, "result.status", "");
                char *key = strcmp(st, "INTERRUPTED") && strcmp(st, "NOT RUN") && *st ? run_record_config_key(v) : NULL;
                char **nh = key ? realloc(have, sizeof *have * (size_t)(nhave + 1)) : NULL;
                int *nc = nh ? realloc(have_code, sizeof *nc * (size_t)(nhave + 1)) : NULL;
                if (nh)
                    have = nh;
                if (nc) {
                    have_code = nc;
                    have[nhave] = key;
                    have_code[nhave++] = (int)fa4cp_json_num(v, "result.exit_code", 0);
                } else {
                    free(key);
                }
                fa4cp_json_free(v);
            }
            const fa4cp_results_counts *cn = fa4cp_results_counted(rd);
            if (cn->torn + cn->not_json)
                fprintf(stderr, "fa4cp-run: --resume: %s: %ld torn line(s) and %ld other line(s) are not records "
                        "(skipped)\n", fa4cp_results_path(rd), cn->torn, cn->not_json);
            fa4cp_results_close(rd);
        }
    }
    if ((exit_code = run_session_open(&s, &w, wl, nfiles, msg, sizeof msg, bail, sizeof bail))) {
        if (root)
            fprintf(stderr, "fa4cp-run: %s\n", msg);
        if (root && o.tap)
            printf("Bail out! %s\n", bail);
        goto done;
    }
    run_signals_install();
    /* in a launch of several processes, every process decides alike (one small exchange) */
    int several = strcmp(w.kind, "local") && strcmp(w.kind, "plan") && w.procs > 1;
    fire.o = &o;
    fire.w = &w;
    fire.wl = wl;
    fire.nfiles = nfiles;
    run_mp_watch_on_fire(on_watch_fire, NULL);
    if (root && !o.tap)
        print_table_head(0);
    fflush(stdout);
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    double t0 = ts0.tv_sec + ts0.tv_nsec * 1e-9;
    int done_cases = 0, nok = 0, nfail = 0, ngate = 0, nerr = 0, nskip = 0, nnot = 0, nunrec = 0, stopped = 0;
    char unrec[256] = "", stop_why[128] = "";
    size_t unrec_at = 0;
    rank_result *res = calloc((size_t)w.size, sizeof *res);
    for (int i = 0; i < nfiles; i++)
        for (int k = 0; k < fa4cp_workload_count(wl[i]); k++) {
            const fa4cp_case *c = fa4cp_workload_get(wl[i], k);
            case_outcome oc;
            memset(&oc, 0, sizeof oc);
            if (o.resume) { /* --resume: recorded already */
                char *key = nhave ? run_config_key(c) : NULL;
                int hit = -1;
                for (int h = 0; key && h < nhave && hit < 0; h++)
                    if (have[h] && !strcmp(have[h], key))
                        hit = h;
                free(key);
                if (several) {
                    char m2[64];
                    int code = run_mp_agree(&w, hit >= 0 ? 1 + have_code[hit] : 0, "", "--resume", m2, sizeof m2);
                    if (code && hit < 0) /* the others follow rank 0 */
                        hit = nhave;
                    if (!code)
                        hit = -1;
                }
                if (hit >= 0) {
                    if (hit < nhave) {
                        free(have[hit]);
                        have[hit] = NULL; /* one record stands for one case */
                        exit_code = run_worse(exit_code, have_code[hit]);
                    }
                    nskip++;
                    done_cases++;
                    if (root && o.tap)
                        printf("ok %d - %s case %d %s # SKIP recorded before (--resume)\n", done_cases, c->name,
                               c->index, c->label);
                    else if (root)
                        printf("#   case %d %s: recorded before, skipped (--resume)\n", c->index, c->label);
                    continue;
                }
            }
            int sig = run_stop_signal();
            if (several && !stopped) {
                char m2[64];
                sig = run_mp_agree(&w, sig, "", "the stop check", m2, sizeof m2);
            }
            if (stopped || sig) { /* asked to stop: the rest are NOT RUN, each with its record */
                if (!stopped) {
                    stopped = 128 + sig;
                    snprintf(stop_why, sizeof stop_why, "%s before case %d", sig_name(sig), c->index);
                }
                unmeasured(&oc, 0, "NOT RUN");
                snprintf(oc.msg, sizeof oc.msg, "not run: %s", stop_why);
                nnot++;
            } else {
                if (root)
                    progress(&o, done_cases, ncases, t0);
                fire.number = done_cases + 1;
                run_case(&s, c, res, &oc);
                exit_code = run_worse(exit_code, oc.exit_code);
                nok += oc.exit_code == 0;
                nfail += oc.exit_code == EXIT_VERIFY;
                ngate += oc.exit_code == EXIT_GATE;
                nerr += oc.exit_code == EXIT_RUNTIME || oc.exit_code == EXIT_TIMEOUT || oc.exit_code == EXIT_USAGE;
                run_ring_bw_add(&w, c, res, w.size);
                if (oc.exit_code >= 128 || run_local_abandoned()) { /* the rest do not run */
                    stopped = oc.exit_code >= 128 ? oc.exit_code : oc.exit_code ? oc.exit_code : EXIT_RUNTIME;
                    snprintf(stop_why, sizeof stop_why, "%s in case %d",
                             oc.exit_code >= 128 ? sig_name(oc.exit_code - 128)
                             : oc.exit_code == EXIT_TIMEOUT ? "the run watchdog (run.timeout)" : "a failed rank",
                             c->index);
                }
            }
            if (root) {
                if (strcmp(oc.result, "NOT RUN"))
                    print_case(&o, c, &oc, done_cases + 1);
                else
                    print_not_run(&o, c, done_cases + 1, stop_why);
                if (o.outdir && run_write_json(o.outdir, &w, c, &oc, res, strcmp(oc.result, "NOT RUN") ? w.size : 0)) {
                    nunrec++;
                    if (unrec_at < sizeof unrec)
                        unrec_at += (size_t)snprintf(unrec + unrec_at, sizeof unrec - unrec_at, "%s%d",
                                                     nunrec > 1 ? ", " : "", c->index);
                }
            }
            done_cases++;
        }
    if (!run_local_abandoned())
        free(res);
    for (int h = 0; h < nhave; h++)
        free(have[h]);
    free(have);
    free(have_code);
    if (nunrec) /* a result that is not on disk fails the job */
        exit_code = run_worse(exit_code, EXIT_RUNTIME);
    if (stopped)
        exit_code = run_worse(exit_code, stopped);
    if (root) {
        progress(&o, done_cases, ncases, t0);
        printf("# cases: %d, OK %d, FAILED %d, below gate %d, errors %d", ncases, nok, nfail, ngate, nerr);
        if (nskip)
            printf(", recorded before %d (--resume)", nskip);
        if (nnot)
            printf(", NOT RUN %d", nnot);
        printf("\n");
        run_ring_bw_print(stdout);
        if (o.outdir && nunrec)
            printf("# NOT RECORDED: case(s) %s%s: writing %s/results.jsonl failed (see stderr); exit %d\n", unrec,
                   unrec_at >= sizeof unrec ? "..." : "", o.outdir, EXIT_RUNTIME);
        if (o.outdir)
            printf("# results: %s/results.jsonl (%d record(s) written)\n", o.outdir, done_cases - nskip - nunrec);
        if (stopped)
            printf("# stopped: %s; the remaining case(s) are recorded NOT RUN%s\n", stop_why,
                   o.outdir ? " (fa4cp-run --resume continues)" : "");
        printf("# fa4cp-run concluded: %s (exit %d)\n", exit_code ? (stopped >= 128 ? "INTERRUPTED" : "FAILED") : "OK",
               exit_code);
        if (o.tap && stopped >= 128)
            printf("Bail out! %s (exit %d)\n", stop_why, exit_code);
        fflush(stdout);
    }
    if (run_local_abandoned()) { /* ranks that never returned: end without cleaning up after them */
        fflush(stdout);
        fflush(stderr);
        _exit(exit_code);
    }
done:
    run_session_close(&s);
    for (int i = 0; i < nfiles; i++)
        fa4cp_workload_free(wl[i]);
    free(wl);
    fflush(stdout);
    fa4cp_world_finalize(w.world);
    fa4cp_free(w.planned);
    return exit_code;
}
