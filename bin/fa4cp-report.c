/* fa4cp-report - scaling tables and plots from fa4cp-run results.
 *
 *   fa4cp-report [options] RESULTS...
 *
 * RESULTS are results.jsonl files or directories holding one.  Records of
 * cases that ran (status OK or BELOW GATE) are grouped into series:
 *   strong scaling: same problem (comm, global tokens, heads, d, dtype, mask,
 *                   backend), different numbers of GPUs (cp.size);
 *   weak scaling:   same tokens per GPU (tokens / cp.size), different GPUs.
 * Efficiency is TFLOP/s per GPU divided by that of the series' smallest run
 * (for strong scaling that is t1*g1 / (t*g)).  Markdown goes to stdout (CSV
 * with --csv); with -o DIR the tables go to DIR/scaling.md, DIR/weak.csv and
 * DIR/strong.csv, and plots (SVG) when gnuplot is installed, else the .gp
 * and .dat files and a note on how to render them.
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
#include <unistd.h>

#include "run/results.h"

typedef struct rec {
    char comm[24], dtype[12], mask[32], backend[12], name[64];
    long long tokens;
    int heads, kv_heads, d, gpus;
    double fwd_ms, bwd_ms, fwd_tf, bwd_tf;
    int order; /* input order: later records replace earlier ones */
} rec;

typedef struct series {
    char key[256];
    char label[160];
    int weak;
    int n;
    rec *r[64];
} series;

static void usage(FILE *f)
{
    fprintf(f, "Usage: fa4cp-report [options] RESULTS...\n"
               "Weak- and strong-scaling tables (and plots) from fa4cp-run results.jsonl files.\n"
               "\n"
               "  RESULTS            results.jsonl files, or directories that hold one\n"
               "  -o, --output DIR   write scaling.md, weak.csv, strong.csv and plots into DIR\n"
               "      --csv          print CSV instead of Markdown on stdout\n"
               "      --no-plots     write no plot files\n"
               "      --gnuplot PATH the gnuplot program (default: gnuplot from PATH)\n"
               "  -h, --help         this text;  -V, --version  the version\n"
               "\n"
               "Exit status: 0 ok, 2 usage error or no usable record, 3 a file could not be written.\n");
}

static void tell_skip(void *ctx, const char *path, long line, const char *why)
{
    (void)ctx;
    fprintf(stderr, "fa4cp-report: %s:%ld: %s\n", path, line, why);
}

/* The records of one file (or DIR/results.jsonl), bounded by the results
 * reader: a line of at most 16 MiB, a binary file given up, what is not a
 * record skipped with a message naming the line. */
static int load_file(const char *arg, rec **recs, int *n, int *cap, int *bad)
{
    fa4cp_results_reader *rd = NULL;
    if (fa4cp_results_open(arg, tell_skip, NULL, &rd)) {
        fprintf(stderr, "fa4cp-report: %s\n", fa4cp_last_error());
        return -1;
    }
    const char *path = fa4cp_results_path(rd);
    json_t *v = NULL;
    long lineno = 0;
    for (;;) {
        fa4cp_results_next(rd, &v, &lineno);
        if (!v)
            break;
        const char *status = fa4cp_json_str(v, "result.status", "");
        if (strcmp(status, "OK") && strcmp(status, "BELOW GATE")) {
            fa4cp_json_free(v);
            continue;
        }
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            rec *nr = realloc(*recs, sizeof(rec) * (size_t)*cap);
            if (!nr) {
                fa4cp_json_free(v);
                break;
            }
            *recs = nr;
        }
        rec *r = &(*recs)[*n];
        memset(r, 0, sizeof *r);
        snprintf(r->comm, sizeof r->comm, "%s", fa4cp_json_str(v, "config.cp.comm", "?"));
        snprintf(r->dtype, sizeof r->dtype, "%s", fa4cp_json_str(v, "config.attention.dtype", "?"));
        snprintf(r->backend, sizeof r->backend, "%s", fa4cp_json_str(v, "config.run.backend", "?"));
        snprintf(r->name, sizeof r->name, "%s", fa4cp_json_str(v, "name", "?"));
        int causal = (int)fa4cp_json_num(v, "config.attention.causal", 0);
        const json_t *win = fa4cp_json_get(v, "config.attention.window");
        int two = json_is_array(win) && json_array_size(win) == 2;
        int wl = two ? (int)json_number_value(json_array_get(win, 0)) : -1;
        int wr = two ? (int)json_number_value(json_array_get(win, 1)) : -1;
        if (wl >= 0 && !causal && wr != wl)
            snprintf(r->mask, sizeof r->mask, "full w%d/%d", wl, wr);
        else if (wl >= 0)
            snprintf(r->mask, sizeof r->mask, "%s w%d", causal ? "causal" : "full", wl);
        else
            snprintf(r->mask, sizeof r->mask, "%s", causal ? "causal" : "full");
        r->tokens = (long long)fa4cp_json_num(v, "config.attention.tokens", 0);
        r->heads = (int)fa4cp_json_num(v, "config.attention.heads", 0);
        r->kv_heads = (int)fa4cp_json_num(v, "config.attention.kv_heads", 0);
        r->d = (int)fa4cp_json_num(v, "config.attention.head_dim", 0);
        r->gpus = (int)fa4cp_json_num(v, "config.cp.size", 0);
        r->fwd_ms = fa4cp_json_num(v, "result.fwd_ms", NAN);
        r->bwd_ms = fa4cp_json_num(v, "result.bwd_ms", NAN);
        r->fwd_tf = fa4cp_json_num(v, "result.fwd_tflops_per_gpu", NAN);
        r->bwd_tf = fa4cp_json_num(v, "result.bwd_tflops_per_gpu", NAN);
        r->order = *n;
        fa4cp_json_free(v);
        if (r->gpus <= 0 || r->tokens <= 0 || !(r->fwd_ms > 0)) {
            fprintf(stderr, "fa4cp-report: %s:%ld: record without cp.size, tokens or fwd_ms; skipped\n", path, lineno);
            (*bad)++;
            continue;
        }
        (*n)++;
    }
    const fa4cp_results_counts *c = fa4cp_results_counted(rd);
    *bad += (int)(c->torn + c->not_json + c->unreadable);
    if (c->torn + c->not_json + c->unreadable)
        fprintf(stderr, "fa4cp-report: %s: %ld record(s) read; skipped: %ld torn line(s), %ld line(s) not JSON%s\n",
                path, c->records, c->torn, c->not_json, c->unreadable ? ", and the rest of the file" : "");
    fa4cp_results_close(rd);
    return 0;
}

static void shape_key(const rec *r, char *buf, size_t len, int weak)
{
    snprintf(buf, len, "%s|%s|%lld|%d|%d|%d|%s|%s|%s", weak ? "weak" : "strong", r->comm,
             weak ? r->tokens / r->gpus : r->tokens, r->heads, r->kv_heads, r->d, r->dtype, r->mask, r->backend);
}

static const char *tok_text(long long t, char *buf, size_t len)
{
    if (t >= 1048576 && t % 1048576 == 0)
        snprintf(buf, len, "%lldM", t / 1048576);
    else if (t >= 1024 && t % 1024 == 0)
        snprintf(buf, len, "%lldk", t / 1024);
    else
        snprintf(buf, len, "%lld", t);
    return buf;
}

static int cmp_gpus(const void *a, const void *b)
{
    const rec *x = *(rec *const *)a, *y = *(rec *const *)b;
    return x->gpus - y->gpus;
}

static int build_series(rec *recs, int n, int weak, series **out)
{
    series *s = NULL;
    int ns = 0;
    for (int i = 0; i < n; i++) {
        char key[256];
        shape_key(&recs[i], key, sizeof key, weak);
        int k;
        for (k = 0; k < ns; k++)
            if (!strcmp(s[k].key, key))
                break;
        if (k == ns) {
            series *t = realloc(s, sizeof(series) * (size_t)(ns + 1));
            if (!t)
                break;
            s = t;
            memset(&s[ns], 0, sizeof(series));
            snprintf(s[ns].key, sizeof s[ns].key, "%s", key);
            char tb[32];
            rec *r = &recs[i];
            snprintf(s[ns].label, sizeof s[ns].label, "%s, %s tokens%s, h %d/%d, d %d, %s, %s", r->comm,
                     tok_text(weak ? r->tokens / r->gpus : r->tokens, tb, sizeof tb), weak ? " per GPU" : "", r->heads,
                     r->kv_heads, r->d, r->dtype, r->mask);
            s[ns].weak = weak;
            ns++;
        }
        /* one record per GPU count: the latest */
        int j;
        for (j = 0; j < s[k].n; j++)
            if (s[k].r[j]->gpus == recs[i].gpus)
                break;
        if (j < s[k].n)
            s[k].r[j] = &recs[i];
        else if (s[k].n < 64)
            s[k].r[s[k].n++] = &recs[i];
    }
    /* keep the series that scale (>= 2 GPU counts) */
    int m = 0;
    for (int k = 0; k < ns; k++)
        if (s[k].n >= 2) {
            qsort(s[k].r, (size_t)s[k].n, sizeof(rec *), cmp_gpus);
            s[m++] = s[k];
        }
    *out = s;
    return m;
}

static double eff(double v, double base) { return v > 0 && base > 0 ? v / base : NAN; }

static void num(FILE *f, const char *fmt, double v)
{
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fprintf(f, "-");
}

static void print_md(FILE *f, series *s, int ns, int weak)
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
        fprintf(f, "| GPUs | tokens | fwd ms | fwd TFLOP/s/GPU | fwd eff | bwd ms | bwd TFLOP/s/GPU | bwd eff |\n");
        fprintf(f, "|-----:|-------:|-------:|----------------:|--------:|-------:|----------------:|--------:|\n");
        rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            rec *r = s[k].r[i];
            char tb[32];
            fprintf(f, "| %d | %s | ", r->gpus, tok_text(r->tokens, tb, sizeof tb));
            num(f, "%.3f", r->fwd_ms);
            fprintf(f, " | ");
            num(f, "%.4g", r->fwd_tf);
            fprintf(f, " | ");
            num(f, "%.1f%%", 100 * eff(r->fwd_tf, b->fwd_tf));
            fprintf(f, " | ");
            num(f, "%.3f", r->bwd_ms);
            fprintf(f, " | ");
            num(f, "%.4g", r->bwd_tf);
            fprintf(f, " | ");
            num(f, "%.1f%%", 100 * eff(r->bwd_tf, b->bwd_tf));
            fprintf(f, " |\n");
        }
        fprintf(f, "\n");
    }
}

static void print_csv(FILE *f, series *s, int ns, int header)
{
    if (header)
        fprintf(f, "kind,comm,tokens,tokens_per_gpu,heads,kv_heads,head_dim,dtype,mask,backend,gpus,fwd_ms,"
                   "fwd_tflops_per_gpu,fwd_eff,bwd_ms,bwd_tflops_per_gpu,bwd_eff\n");
    for (int k = 0; k < ns; k++) {
        rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            rec *r = s[k].r[i];
            fprintf(f, "%s,%s,%lld,%lld,%d,%d,%d,%s,%s,%s,%d,", s[k].weak ? "weak" : "strong", r->comm, r->tokens,
                    r->tokens / r->gpus, r->heads, r->kv_heads, r->d, r->dtype, r->mask, r->backend, r->gpus);
            num(f, "%.6g", r->fwd_ms);
            fputc(',', f);
            num(f, "%.6g", r->fwd_tf);
            fputc(',', f);
            num(f, "%.4f", eff(r->fwd_tf, b->fwd_tf));
            fputc(',', f);
            num(f, "%.6g", r->bwd_ms);
            fputc(',', f);
            num(f, "%.6g", r->bwd_tf);
            fputc(',', f);
            num(f, "%.4f", eff(r->bwd_tf, b->bwd_tf));
            fputc('\n', f);
        }
    }
}

/* .dat: one gnuplot data block per series; .gp: two SVGs (TFLOP/s per GPU
 * and efficiency against GPUs, one line per series). */
static int write_plot(const char *dir, const char *kind, series *s, int ns)
{
    char dat[4096], gp[4096];
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, kind);
    snprintf(gp, sizeof gp, "%s/%s.gp", dir, kind);
    FILE *f = fopen(dat, "w");
    if (!f)
        return -1;
    for (int k = 0; k < ns; k++) {
        fprintf(f, "# %s\n# gpus fwd_tflops_per_gpu bwd_tflops_per_gpu fwd_eff bwd_eff\n", s[k].label);
        rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            rec *r = s[k].r[i];
            fprintf(f, "%d %.6g %.6g %.6g %.6g\n", r->gpus, isfinite(r->fwd_tf) ? r->fwd_tf : NAN,
                    isfinite(r->bwd_tf) ? r->bwd_tf : NAN, eff(r->fwd_tf, b->fwd_tf), eff(r->bwd_tf, b->bwd_tf));
        }
        fprintf(f, "\n\n");
    }
    if (fclose(f))
        return -1;
    f = fopen(gp, "w");
    if (!f)
        return -1;
    fprintf(f, "# %s scaling plots of fa4cp-report: gnuplot %s.gp (in this directory)\n", kind, kind);
    fprintf(f, "set terminal svg size 900,560 dynamic enhanced font 'sans,12'\n");
    fprintf(f, "set datafile missing 'nan'\nset key outside right top noenhanced\nset grid\n");
    fprintf(f, "set logscale x 2\nset xlabel 'GPUs (cp.size)'\n");
    const char *what[2] = {"tflops", "efficiency"};
    for (int p = 0; p < 2; p++) {
        fprintf(f, "set output '%s-%s.svg'\n", kind, what[p]);
        fprintf(f, "set title '%s scaling: %s'\n", kind[0] == 'w' ? "Weak" : "Strong",
                p ? "efficiency vs the smallest run" : "forward TFLOP/s per GPU");
        fprintf(f, "set ylabel '%s'\n", p ? "efficiency" : "TFLOP/s per GPU");
        fprintf(f, "plot ");
        for (int k = 0; k < ns; k++) {
            char lab[160];
            snprintf(lab, sizeof lab, "%s", s[k].label);
            for (char *c = lab; *c; c++)
                if (*c == '\'')
                    *c = ' ';
            fprintf(f, "%s'%s.dat' index %d using 1:%d with linespoints title '%s'", k ? ", \\\n     " : "", kind, k,
                    p ? 4 : 2, lab);
        }
        fprintf(f, "\n");
    }
    return fclose(f) ? -1 : 0;
}

static int have_program(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        return 0;
    char buf[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (n && access(buf, X_OK) == 0)
            return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

static int render(const char *dir, const char *kind, const char *gnuplot)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' '%s.gp'", dir, gnuplot, kind);
    return system(cmd);
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"output", required_argument, NULL, 'o'},
                                          {"csv", no_argument, NULL, 'C'},
                                          {"no-plots", no_argument, NULL, 'P'},
                                          {"gnuplot", required_argument, NULL, 'G'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, 'V'},
                                          {NULL, 0, NULL, 0}};
    const char *outdir = NULL, *gnuplot = "gnuplot";
    int csv = 0, plots = 1, ch;
    while ((ch = getopt_long(argc, argv, "o:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'o': outdir = optarg; break;
        case 'C': csv = 1; break;
        case 'P': plots = 0; break;
        case 'G': gnuplot = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("fa4cp-report %s\n", fa4cp_version()); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "fa4cp-report: no results given (e.g. fa4cp-report run1/ run2/results.jsonl)\n");
        usage(stderr);
        return 2;
    }
    rec *recs = NULL;
    int n = 0, cap = 0, bad = 0;
    for (int i = optind; i < argc; i++)
        if (load_file(argv[i], &recs, &n, &cap, &bad)) {
            free(recs);
            return 2;
        }
    if (n == 0) {
        fprintf(stderr, "fa4cp-report: no usable record (cases with status OK or BELOW GATE) in the input\n");
        free(recs);
        return 2;
    }
    series *weak = NULL, *strong = NULL;
    int nw = build_series(recs, n, 1, &weak), nst = build_series(recs, n, 0, &strong);
    int rc = 0;
    if (csv) {
        print_csv(stdout, weak, nw, 1);
        print_csv(stdout, strong, nst, 0);
    } else {
        printf("# fa4cp scaling report\n\n%d record(s) from %d file(s)%s.\n\n", n, argc - optind,
               bad ? " (some lines skipped: see stderr)" : "");
        print_md(stdout, weak, nw, 1);
        print_md(stdout, strong, nst, 0);
    }
    if (outdir) {
        char p[4096];
        mkdir(outdir, 0777);
        FILE *f;
        snprintf(p, sizeof p, "%s/scaling.md", outdir);
        if ((f = fopen(p, "w"))) {
            print_md(f, weak, nw, 1);
            print_md(f, strong, nst, 0);
            rc |= fclose(f) ? 3 : 0;
        } else
            rc = 3;
        snprintf(p, sizeof p, "%s/weak.csv", outdir);
        if ((f = fopen(p, "w"))) {
            print_csv(f, weak, nw, 1);
            rc |= fclose(f) ? 3 : 0;
        } else
            rc = 3;
        snprintf(p, sizeof p, "%s/strong.csv", outdir);
        if ((f = fopen(p, "w"))) {
            print_csv(f, strong, nst, 1);
            rc |= fclose(f) ? 3 : 0;
        } else
            rc = 3;
        if (plots) {
            int gp = have_program(gnuplot), wrote = 0;
            const char *kinds[2] = {"weak", "strong"};
            series *ss[2] = {weak, strong};
            int nn[2] = {nw, nst};
            for (int k = 0; k < 2; k++) {
                if (!nn[k])
                    continue;
                if (write_plot(outdir, kinds[k], ss[k], nn[k])) {
                    rc = 3;
                    continue;
                }
                wrote++;
                if (gp && render(outdir, kinds[k], gnuplot) != 0) {
                    fprintf(stderr, "fa4cp-report: %s %s.gp failed; the .gp and .dat files are in %s\n", gnuplot,
                            kinds[k], outdir);
                    gp = 0;
                }
            }
            if (wrote && gp)
                fprintf(stderr, "fa4cp-report: plots written to %s/{weak,strong}-{tflops,efficiency}.svg\n", outdir);
            else if (wrote)
                fprintf(stderr,
                        "fa4cp-report: note: gnuplot not found; wrote %s/*.gp and *.dat: run 'cd %s && gnuplot "
                        "weak.gp strong.gp' to make the SVG plots\n",
                        outdir, outdir);
        }
        if (rc)
            fprintf(stderr, "fa4cp-report: could not write every file in %s: %s\n", outdir, strerror(errno));
    }
    free(weak);
    free(strong);
    free(recs);
    return rc;
}
