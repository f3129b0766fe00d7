/* fa4cp-report - scaling tables and plots from fa4cp-run results, and a
 * comparison with a baseline.
 *
 *   fa4cp-report [options] RESULTS...
 *
 * RESULTS are results.jsonl files or directories holding one.  Records of
 * cases that ran (status OK or BELOW GATE) are grouped into series
 * (lib/run/report.c):
 *   strong scaling: same problem (comm, global tokens, heads, d, dtype, mask,
 *                   backend), different numbers of GPUs (cp.size);
 *   weak scaling:   same tokens per GPU (tokens / cp.size), different GPUs.
 * Efficiency is TFLOP/s per GPU divided by that of the series' smallest run
 * (for strong scaling that is t1*g1 / (t*g)).  Markdown goes to stdout (CSV
 * with --csv); with -o DIR the tables go to DIR/scaling.md, DIR/weak.csv and
 * DIR/strong.csv, and forward, backward and efficiency plots (SVG or PNG) when
 * gnuplot runs, else the .gp and .dat files and how to render them.  With
 * --baseline OLD every case is compared with the same case in OLD.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "fa4cp.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "exit_codes.h"
#include "run/report.h"

#define EXIT_WRITE EXIT_RUNTIME  /* 3: a file could not be written, gnuplot failed */
#define EXIT_BASELINE EXIT_GATE  /* 6: a case is worse than the baseline */
#define MAX_BASE 64

static void usage(FILE *f)
{
    fprintf(f, "Usage: fa4cp-report [options] RESULTS...\n"
               "Weak- and strong-scaling tables (and plots) from fa4cp-run results.jsonl files.\n"
               "\n"
               "  RESULTS              results.jsonl files, or directories that hold one\n"
               "  -o, --output DIR     write scaling.md, weak.csv, strong.csv and plots into DIR\n"
               "      --csv            print CSV instead of Markdown on stdout\n"
               "      --no-plots       write no plot files\n"
               "      --format F       plots as svg (default) or png\n"
               "      --gnuplot PATH   the gnuplot program (default: gnuplot from PATH)\n"
               "  -b, --baseline OLD   compare every case with the same case (shape, GPUs, nodes)\n"
               "                       in OLD (a results file or directory; may be repeated)\n"
               "      --threshold PCT  a case more than PCT%% slower than the baseline fails (10)\n"
               "      --error-threshold PCT  ... or with a max error PCT%% above it (100)\n"
               "  -h, --help           this text;  -V, --version  the version\n"
               "\n"
               "Exit status: 0 ok, 2 usage error or no usable record, 3 a file could not be\n"
               "written or gnuplot failed, 6 a case is slower or less accurate than the baseline.\n");
}

static void num(FILE *f, const char *fmt, double v)
{
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fprintf(f, "-");
}

static void print_md(FILE *f, rep_series *s, int ns, int weak)
{
    fprintf(f, "## %s scaling\n\n", weak ? "Weak" : "Strong");
    fprintf(f, "%s Efficiency: TFLOP/s per GPU relative to the run with the fewest GPUs.\n\n",
            weak ? "Tokens per GPU fixed; the global sequence grows with the GPUs." : "Global tokens fixed.");
    if (!ns) {
        fprintf(f, "(no series with two or more GPU counts)\n\n");
        return;
    }
    for (int k = 0; k < ns; k++) {
        fprintf(f, "### %s\n\n", s[k].label);
        fprintf(f, "| GPUs | nodes | replicas | job | tokens | fwd ms | fwd TFLOP/s/GPU | fwd eff | bwd ms | "
                   "bwd TFLOP/s/GPU | bwd eff |\n");
        fprintf(f, "|-----:|------:|---------:|----:|-------:|-------:|----------------:|--------:|-------:|"
                   "----------------:|--------:|\n");
        const rep_rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            const rep_rec *r = s[k].r[i];
            char tb[32];
            fprintf(f, "| %d | %d | %d | %s | %s | ", r->gpus, r->nodes, r->replicas, r->job,
                    rep_tokens(r->tokens, tb, sizeof tb));
            num(f, "%.3f", r->fwd_ms);
            fprintf(f, " | ");
            num(f, "%.4g", r->fwd_tf);
            fprintf(f, " | ");
            num(f, "%.1f%%", 100 * rep_eff(r->fwd_tf, b->fwd_tf));
            fprintf(f, " | ");
            num(f, "%.3f", r->bwd_ms);
            fprintf(f, " | ");
            num(f, "%.4g", r->bwd_tf);
            fprintf(f, " | ");
            num(f, "%.1f%%", 100 * rep_eff(r->bwd_tf, b->bwd_tf));
            fprintf(f, " |\n");
        }
        fprintf(f, "\n");
    }
}

static void print_csv(FILE *f, rep_series *s, int ns, int header)
{
    if (header)
        fprintf(f, "kind,comm,tokens,tokens_per_gpu,heads,kv_heads,head_dim,dtype,mask,backend,gpus,fwd_ms,"
                   "fwd_tflops_per_gpu,fwd_eff,bwd_ms,bwd_tflops_per_gpu,bwd_eff,nodes,replicas,job\n");
    for (int k = 0; k < ns; k++) {
        const rep_rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            const rep_rec *r = s[k].r[i];
            fprintf(f, "%s,%s,%lld,%lld,%d,%d,%d,%s,%s,%s,%d,", s[k].weak ? "weak" : "strong", r->comm, r->tokens,
                    r->tokens / r->gpus, r->heads, r->kv_heads, r->d, r->dtype, r->mask, r->backend, r->gpus);
            num(f, "%.6g", r->fwd_ms);
            fputc(',', f);
            num(f, "%.6g", r->fwd_tf);
            fputc(',', f);
            num(f, "%.4f", rep_eff(r->fwd_tf, b->fwd_tf));
            fputc(',', f);
            num(f, "%.6g", r->bwd_ms);
            fputc(',', f);
            num(f, "%.6g", r->bwd_tf);
            fputc(',', f);
            num(f, "%.4f", rep_eff(r->bwd_tf, b->bwd_tf));
            fprintf(f, ",%d,%d,%s\n", r->nodes, r->replicas, r->job);
        }
    }
}

/* DIR for a shell command line, in single quotes */
static void shell_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    fputc('\'', f);
}

/* tables, then plots; returns an exit code */
static int write_outputs(const char *outdir, rep_series **ss, int *nn, int plots, const char *gnuplot,
                         const char *format)
{
    static const char *const kinds[2] = {"weak", "strong"};
    int rc = 0;
    char p[4096];
    if (mkdir(outdir, 0777) && errno != EEXIST) {
        fprintf(stderr, "fa4cp-report: cannot create %s: %s\n", outdir, strerror(errno));
        return EXIT_WRITE;
    }
    for (int t = 0; t < 3; t++) {
        snprintf(p, sizeof p, "%s/%s", outdir, t == 0 ? "scaling.md" : t == 1 ? "weak.csv" : "strong.csv");
        FILE *f = fopen(p, "w");
        if (f) {
            if (t == 0) {
                print_md(f, ss[0], nn[0], 1);
                print_md(f, ss[1], nn[1], 0);
            } else {
                print_csv(f, ss[t - 1], nn[t - 1], 1);
            }
        }
        if (!f || fclose(f)) {
            fprintf(stderr, "fa4cp-report: cannot write %s: %s\n", p, strerror(errno));
            rc = EXIT_WRITE;
        }
    }
    if (!plots)
        return rc;
    int wrote[2] = {0, 0}, found = 1, rendered = 0;
    for (int k = 0; k < 2; k++) {
        if (!nn[k])
            continue;
        if (rep_plot_write(outdir, kinds[k], ss[k], nn[k], format)) {
            fprintf(stderr, "fa4cp-report: cannot write %s/%s.gp or .dat: %s\n", outdir, kinds[k], strerror(errno));
            rc = EXIT_WRITE;
            continue;
        }
        wrote[k] = 1;
        if (!found)
            continue;
        char err[512];
        int r = rep_plot_render(outdir, kinds[k], gnuplot, err, sizeof err);
        if (r < 0) {
            found = 0;
        } else if (r > 0) {
            fprintf(stderr, "fa4cp-report: %s; %s/%s.gp and %s.dat are kept\n", err, outdir, kinds[k], kinds[k]);
            rc = EXIT_WRITE;
        } else {
            rendered++;
            fprintf(stderr, "fa4cp-report: plots written: %s/%s-{fwd,bwd,efficiency}.%s\n", outdir, kinds[k],
                    format);
        }
    }
    if ((wrote[0] || wrote[1]) && !found) {
        fprintf(stderr, "fa4cp-report: note: %s not found; wrote the plot scripts and data: to make the plots, run\n"
                        "  cd ", gnuplot);
        shell_quoted(stderr, outdir);
        fprintf(stderr, " && gnuplot%s%s\n", wrote[0] ? " weak.gp" : "", wrote[1] ? " strong.gp" : "");
    }
    (void)rendered;
    return rc;
}

static int parse_pct(const char *opt, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v >= 0)) {
        fprintf(stderr, "fa4cp-report: %s %s: expected a percentage >= 0\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"output", required_argument, NULL, 'o'},   {"csv", no_argument, NULL, 'C'},
        {"no-plots", no_argument, NULL, 'P'},       {"gnuplot", required_argument, NULL, 'G'},
        {"format", required_argument, NULL, 'F'},   {"baseline", required_argument, NULL, 'b'},
        {"threshold", required_argument, NULL, 'T'}, {"error-threshold", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},           {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    const char *outdir = NULL, *gnuplot = "gnuplot", *format = "svg", *base[MAX_BASE];
    int csv = 0, plots = 1, nbase = 0, ch;
    double slow_pct = 10, err_pct = 100;
    while ((ch = getopt_long(argc, argv, "o:b:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'o': outdir = optarg; break;
        case 'C': csv = 1; break;
        case 'P': plots = 0; break;
        case 'G': gnuplot = optarg; break;
        case 'F':
            if (strcmp(optarg, "svg") && strcmp(optarg, "png")) {
                fprintf(stderr, "fa4cp-report: --format %s: expected svg or png\n", optarg);
                return EXIT_USAGE;
            }
            format = optarg;
            break;
        case 'b':
            if (nbase == MAX_BASE) {
                fprintf(stderr, "fa4cp-report: at most %d --baseline\n", MAX_BASE);
                return EXIT_USAGE;
            }
            base[nbase++] = optarg;
            break;
        case 'T': if (parse_pct("--threshold", optarg, &slow_pct)) return EXIT_USAGE; break;
        case 'E': if (parse_pct("--error-threshold", optarg, &err_pct)) return EXIT_USAGE; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("fa4cp-report %s\n", fa4cp_version()); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "fa4cp-report: no results given (e.g. fa4cp-report run1/ run2/results.jsonl)\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    rep_set set = {0}, old = {0};
    int rc = 0;
    for (int i = optind; i < argc && !rc; i++)
        rc = rep_load(&set, argv[i]) ? EXIT_USAGE : 0;
    for (int i = 0; i < nbase && !rc; i++)
        rc = rep_load(&old, base[i]) ? EXIT_USAGE : 0;
    if (!rc && set.n == 0) {
        fprintf(stderr, "fa4cp-report: no usable record (cases with status OK or BELOW GATE) in the input\n");
        rc = EXIT_USAGE;
    }
    if (!rc && nbase && old.n == 0) {
        fprintf(stderr, "fa4cp-report: no usable record in the baseline\n");
        rc = EXIT_USAGE;
    }
    if (rc) {
        rep_free(&set);
        rep_free(&old);
        return rc;
    }
    rep_series *ss[2] = {NULL, NULL};
    int nn[2], replaced = 0;
    nn[0] = rep_series_build(&set, 1, &ss[0], &replaced);
    nn[1] = rep_series_build(&set, 0, &ss[1], NULL);
    if (replaced)
        fprintf(stderr, "fa4cp-report: note: %d record(s) were replaced by a later record of the same case, GPUs "
                        "and nodes; the tables show the last one read (see the job column)\n", replaced);
    if (csv) {
        print_csv(stdout, ss[0], nn[0], 1);
        print_csv(stdout, ss[1], nn[1], 0);
    } else {
        printf("# fa4cp scaling report\n\n%d record(s) from %d file(s)%s.\n\n", set.n, set.files,
               set.bad ? " (some lines skipped: see stderr)" : "");
        print_md(stdout, ss[0], nn[0], 1);
        print_md(stdout, ss[1], nn[1], 0);
    }
    if (outdir)
        rc = write_outputs(outdir, ss, nn, plots, gnuplot, format);
    if (nbase) {
        int compared = 0, worse = rep_baseline(csv ? stderr : stdout, &set, &old, slow_pct, err_pct, &compared);
        fprintf(stderr, "fa4cp-report: baseline: %d case(s) compared, %d worse than the baseline%s\n", compared,
                worse, compared ? "" : " (no case of the input is in the baseline)");
        if (worse && !rc)
            rc = EXIT_BASELINE;
    }
    free(ss[0]);
    free(ss[1]);
    rep_free(&set);
    rep_free(&old);
    return rc;
}
