/* report.c - records -> series, plots and baseline comparisons (report.h). */
#define _GNU_SOURCE /* posix_spawn_file_actions_addchdir_np */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "report.h"
#include "core/json.h"
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

/* ------------------------------------------------------------------ reading */

static void mask_of(const json_t *v, char *buf, size_t len)
{
    int causal = (int)fa4cp_json_num(v, "config.attention.causal", 0);
    const json_t *win = fa4cp_json_get(v, "config.attention.window");
    int two = json_is_array(win) && json_array_size(win) == 2;
    int wl = two ? (int)json_number_value(json_array_get(win, 0)) : -1;
    int wr = two ? (int)json_number_value(json_array_get(win, 1)) : -1;
    if (wl >= 0 && !causal && wr != wl)
        snprintf(buf, len, "full w%d/%d", wl, wr);
    else if (wl >= 0)
        snprintf(buf, len, "%s w%d", causal ? "causal" : "full", wl);
    else
        snprintf(buf, len, "%s", causal ? "causal" : "full");
}

static void tell_skip(void *ctx, const char *path, long line, const char *why)
{
    (void)ctx;
    fprintf(stderr, "fa4cp-report: %s:%ld: %s\n", path, line, why);
}

/* Through the results reader (results.h): a line of at most 16 MiB, a
 * binary or endless file given up, torn and other lines that are not records
 * skipped and named with file:line, and counted. */
int rep_load(rep_set *s, const char *arg)
{
    fa4cp_results_reader *rd = NULL;
    if (fa4cp_results_open(arg, tell_skip, NULL, &rd)) {
        fprintf(stderr, "fa4cp-report: %s\n", fa4cp_last_error());
        return -1;
    }
    s->files++;
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
        if (s->n == s->cap) {
            int cap = s->cap ? 2 * s->cap : 64;
            rep_rec *nr = realloc(s->r, sizeof(rep_rec) * (size_t)cap);
            if (!nr) {
                fa4cp_json_free(v);
                break;
            }
            s->r = nr;
            s->cap = cap;
        }
        rep_rec *r = &s->r[s->n];
        memset(r, 0, sizeof *r);
        snprintf(r->comm, sizeof r->comm, "%s", fa4cp_json_str(v, "config.cp.comm", "?"));
        snprintf(r->dtype, sizeof r->dtype, "%s", fa4cp_json_str(v, "config.attention.dtype", "?"));
        snprintf(r->backend, sizeof r->backend, "%s", fa4cp_json_str(v, "config.run.backend", "?"));
        snprintf(r->name, sizeof r->name, "%s", fa4cp_json_str(v, "name", "?"));
        snprintf(r->job, sizeof r->job, "%s", fa4cp_json_str(v, "env.slurm_job_id", "-"));
        mask_of(v, r->mask, sizeof r->mask);
        r->tokens = (long long)fa4cp_json_num(v, "config.attention.tokens", 0);
        r->heads = (int)fa4cp_json_num(v, "config.attention.heads", 0);
        r->kv_heads = (int)fa4cp_json_num(v, "config.attention.kv_heads", 0);
        r->d = (int)fa4cp_json_num(v, "config.attention.head_dim", 0);
        r->dv = (int)fa4cp_json_num(v, "config.attention.head_dim_v", r->d);
        r->gpus = (int)fa4cp_json_num(v, "config.cp.size", 0);
        r->nodes = (int)fa4cp_json_num(v, "env.nodes", 0);
        r->replicas = (int)fa4cp_json_num(v, "env.replicas", 0);
        r->backward = (int)fa4cp_json_num(v, "config.run.backward", 0);
        r->fwd_ms = fa4cp_json_num(v, "result.fwd_ms", NAN);
        r->bwd_ms = fa4cp_json_num(v, "result.bwd_ms", NAN);
        r->fwd_tf = fa4cp_json_num(v, "result.fwd_tflops_per_gpu", NAN);
        r->bwd_tf = fa4cp_json_num(v, "result.bwd_tflops_per_gpu", NAN);
        r->err = fa4cp_json_num(v, "result.max_rel_err", NAN);
        if (r->err < 0) /* -1: not checked */
            r->err = NAN;
        r->order = s->n;
        fa4cp_json_free(v);
        if (r->gpus <= 0 || r->tokens <= 0 || !(r->fwd_ms > 0)) {
            fprintf(stderr, "fa4cp-report: %s:%ld: record without cp.size, tokens or fwd_ms; skipped\n", path,
                    lineno);
            s->bad++;
            continue;
        }
        s->n++;
    }
    const fa4cp_results_counts *c = fa4cp_results_counted(rd);
    s->bad += (int)(c->torn + c->not_json + c->unreadable);
    if (c->torn + c->not_json + c->unreadable)
        fprintf(stderr, "fa4cp-report: %s: %ld record(s) read; skipped: %ld torn line(s), %ld line(s) not JSON%s\n",
                path, c->records, c->torn, c->not_json, c->unreadable ? ", and the rest of the file" : "");
    fa4cp_results_close(rd);
    return 0;
}

void rep_free(rep_set *s)
{
    free(s->r);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ series */

const char *rep_tokens(long long t, char *buf, size_t len)
{
    if (t >= 1048576 && t % 1048576 == 0)
        snprintf(buf, len, "%lldM", t / 1048576);
    else if (t >= 1024 && t % 1024 == 0)
        snprintf(buf, len, "%lldk", t / 1024);
    else
        snprintf(buf, len, "%lld", t);
    return buf;
}

void rep_shape_label(const rep_rec *r, int weak, char *buf, size_t len)
{
    char tb[32], db[32];
    if (r->dv == r->d)
        snprintf(db, sizeof db, "%d", r->d);
    else
        snprintf(db, sizeof db, "%d/%d", r->d, r->dv);
    snprintf(buf, len, "%s, %s tokens%s, h %d/%d, d %s, %s, %s", r->comm,
             rep_tokens(weak ? r->tokens / r->gpus : r->tokens, tb, sizeof tb), weak ? " per GPU" : "",
             r->heads, r->kv_heads, db, r->dtype, r->mask);
}

static void shape_key(const rep_rec *r, char *buf, size_t len, int weak)
{
    snprintf(buf, len, "%s|%s|%lld|%d|%d|%d|%d|%s|%s|%s", weak ? "weak" : "strong", r->comm,
             weak ? r->tokens / r->gpus : r->tokens, r->heads, r->kv_heads, r->d, r->dv, r->dtype, r->mask,
             r->backend);
}

static int cmp_gpus(const void *a, const void *b)
{
    const rep_rec *x = *(rep_rec *const *)a, *y = *(rep_rec *const *)b;
    return x->gpus != y->gpus ? x->gpus - y->gpus : x->nodes - y->nodes;
}

int rep_series_build(rep_set *set, int weak, rep_series **out, int *replaced)
{
    rep_series *s = NULL;
    int ns = 0;
    for (int i = 0; i < set->n; i++) {
        rep_rec *r = &set->r[i];
        char key[256];
        shape_key(r, key, sizeof key, weak);
        int k;
        for (k = 0; k < ns; k++)
            if (!strcmp(s[k].key, key))
                break;
        if (k == ns) {
            rep_series *t = realloc(s, sizeof(rep_series) * (size_t)(ns + 1));
            if (!t)
                break;
            s = t;
            memset(&s[ns], 0, sizeof(rep_series));
            snprintf(s[ns].key, sizeof s[ns].key, "%s", key);
            rep_shape_label(r, weak, s[ns].label, sizeof s[ns].label);
            s[ns].weak = weak;
            ns++;
        }
        int j;
        for (j = 0; j < s[k].n; j++)
            if (s[k].r[j]->gpus == r->gpus && s[k].r[j]->nodes == r->nodes)
                break;
        if (j < s[k].n) {
            s[k].r[j] = r; /* the last one read; the job column tells which */
            if (replaced)
                ++*replaced;
        } else if (s[k].n < REP_MAX_POINTS) {
            s[k].r[s[k].n++] = r;
        }
    }
    int m = 0;
    for (int k = 0; k < ns; k++) {
        int distinct = 0;
        qsort(s[k].r, (size_t)s[k].n, sizeof(rep_rec *), cmp_gpus);
        for (int j = 1; j < s[k].n; j++)
            distinct |= s[k].r[j]->gpus != s[k].r[0]->gpus;
        if (distinct)
            s[m++] = s[k];
    }
    *out = s;
    return m;
}

double rep_eff(double v, double base) { return v > 0 && base > 0 ? v / base : NAN; }

/* ------------------------------------------------------------------ plots */

/* a gnuplot single-quoted string: ' doubled */
static void gp_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

int rep_plot_write(const char *dir, const char *kind, rep_series *s, int ns, const char *format)
{
    char dat[4096], gp[4096];
    int png = format && !strcmp(format, "png");
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, kind);
    snprintf(gp, sizeof gp, "%s/%s.gp", dir, kind);
    FILE *f = fopen(dat, "w");
    if (!f)
        return -1;
    for (int k = 0; k < ns; k++) {
        fprintf(f, "# %s\n# gpus nodes fwd_tflops_per_gpu bwd_tflops_per_gpu fwd_eff bwd_eff fwd_ideal bwd_ideal\n",
                s[k].label);
        const rep_rec *b = s[k].r[0];
        for (int i = 0; i < s[k].n; i++) {
            const rep_rec *r = s[k].r[i];
            fprintf(f, "%d %d %.6g %.6g %.6g %.6g %.6g %.6g\n", r->gpus, r->nodes, r->fwd_tf, r->bwd_tf,
                    rep_eff(r->fwd_tf, b->fwd_tf), rep_eff(r->bwd_tf, b->bwd_tf), b->fwd_tf, b->bwd_tf);
        }
        fprintf(f, "\n\n");
    }
    if (fclose(f))
        return -1;
    if (!(f = fopen(gp, "w")))
        return -1;
    const char *Kind = kind[0] == 'w' ? "Weak" : "Strong";
    fprintf(f, "# %s scaling plots of fa4cp-report: cd to this directory, then gnuplot %s.gp\n", Kind, kind);
    if (png)
        fprintf(f, "set terminal pngcairo size 1100,%d font 'sans,10'\n", 560 + 18 * ns);
    else
        fprintf(f, "set terminal svg size 1100,%d dynamic enhanced font 'sans,12'\n", 560 + 20 * ns);
    /* the legend below the plot, the whole width for the labels; room for
     * one row a series (and the ideal line) under the axis label */
    fprintf(f, "set datafile missing 'nan'\nset grid\nset logscale x 2\nset xlabel 'GPUs (cp.size)' offset 0,0.3\n"
               "set key outside below left Left reverse noenhanced samplen 3 spacing 1.1\nset bmargin %d\n"
               "set offsets graph 0.05, graph 0.05, 0, 0\nset yrange [0:*]\n",
            5 + (ns + 2) / 2);
    static const char *const what[3] = {"fwd", "bwd", "efficiency"};
    for (int p = 0; p < 3; p++) {
        fprintf(f, "\nset output '%s-%s.%s'\n", kind, what[p], png ? "png" : "svg");
        if (p < 2)
            fprintf(f, "set title '%s scaling: %s TFLOP/s per GPU (dashed: ideal, the smallest run''s rate)'\n"
                       "set ylabel 'TFLOP/s per GPU'\n",
                    Kind, p ? "backward" : "forward");
        else
            fprintf(f, "set title '%s scaling: efficiency against the smallest run (solid: forward, dashed: "
                       "backward)'\nset ylabel 'efficiency'\n",
                    Kind);
        fprintf(f, "plot ");
        for (int k = 0; k < ns; k++) {
            if (p < 2) {
                fprintf(f, "%s'%s.dat' index %d using 1:%d with linespoints lw 2 pt 7 lc %d title ", k ? ", \\\n     " : "",
                        kind, k, 3 + p, k + 1);
                gp_quoted(f, s[k].label);
                fprintf(f, ", \\\n     '%s.dat' index %d using 1:%d with lines dt 2 lc %d %s", kind, k, 7 + p, k + 1,
                        k ? "notitle" : "title 'ideal (the smallest run''s TFLOP/s per GPU)'");
            } else {
                fprintf(f, "%s'%s.dat' index %d using 1:5 with linespoints lw 2 pt 7 lc %d title ", k ? ", \\\n     " : "",
                        kind, k, k + 1);
                gp_quoted(f, s[k].label);
                fprintf(f, ", \\\n     '%s.dat' index %d using 1:6 with linespoints dt 2 pt 6 lc %d notitle", kind, k,
                        k + 1);
            }
        }
        if (p == 2)
            fprintf(f, ", \\\n     1 with lines dt 3 lc rgb 'black' title 'ideal'");
        fprintf(f, "\n");
    }
    return fclose(f) ? -1 : 0;
}

int rep_plot_render(const char *dir, const char *kind, const char *gnuplot, char *err, size_t errlen)
{
    char script[256];
    snprintf(script, sizeof script, "%s.gp", kind);
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
    char *argv[] = {(char *)gnuplot, script, NULL};
#else
    /* no chdir action: gnuplot's own cd, DIR in a gnuplot string */
    size_t dl = strlen(dir);
    char *cd = malloc(2 * dl + 8);
    if (!cd) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    char *o = cd + sprintf(cd, "cd '");
    for (const char *c = dir; *c; c++) {
        if (*c == '\'')
            *o++ = '\'';
        *o++ = *c;
    }
    strcpy(o, "'");
    char *argv[] = {(char *)gnuplot, "-e", cd, script, NULL};
#endif
    posix_spawn_file_actions_t fa;
    pid_t pid;
    err[0] = '\0';
    if (posix_spawn_file_actions_init(&fa)) {
        snprintf(err, errlen, "cannot start %s: %s", gnuplot, strerror(errno));
        return 1;
    }
    /* in DIR, so that the script names its files without any path in it */
#ifdef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
    int rc = posix_spawn_file_actions_addchdir_np(&fa, dir);
#else
    int rc = 0;
#endif
    if (!rc)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = posix_spawnp(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
#ifndef HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP
    free(cd);
#endif
    if (rc == ENOENT)
        return -1;
    if (rc) {
        snprintf(err, errlen, "cannot start %s: %s", gnuplot, strerror(rc));
        return 1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "waiting for %s: %s", gnuplot, strerror(errno));
            return 1;
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) /* exec failed in the child */
        return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        if (WIFEXITED(status))
            snprintf(err, errlen, "%s %s exited with status %d", gnuplot, script, WEXITSTATUS(status));
        else
            snprintf(err, errlen, "%s %s was killed by signal %d", gnuplot, script, WTERMSIG(status));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ baseline */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median of field `off` over the records of s with this key (NaN if none) */
static double median(const rep_set *s, const char *key, int gpus, int nodes, size_t off, int *count)
{
    double *v = malloc(sizeof(double) * (size_t)(s->n ? s->n : 1));
    int n = 0;
    for (int i = 0; v && i < s->n; i++) {
        char k[256];
        shape_key(&s->r[i], k, sizeof k, 0);
        double x = *(const double *)((const char *)&s->r[i] + off);
        if (!strcmp(k, key) && s->r[i].gpus == gpus && s->r[i].nodes == nodes && isfinite(x))
            v[n++] = x;
    }
    double m = NAN;
    if (n) {
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        m = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }
    free(v);
    if (count)
        *count = n;
    return m;
}

static void cell(FILE *out, const char *fmt, double v)
{
    if (isfinite(v))
        fprintf(out, fmt, v);
    else
        fprintf(out, "-");
}

int rep_baseline(FILE *out, const rep_set *cur, const rep_set *base, double slow_pct, double err_pct,
                 int *compared)
{
    int worse = 0, n = 0;
    fprintf(out, "## Against the baseline\n\n");
    fprintf(out, "Medians of each side's records of a case (shape, GPUs, nodes). A case fails when its forward "
                 "or backward time is more than %g%% above the baseline's, or its max error more than %g%% "
                 "above.\n\n",
            slow_pct, err_pct);
    fprintf(out, "| case | GPUs | nodes | runs | base runs | fwd ms | base | change | bwd ms | base | change | "
                 "max err | base | change | verdict |\n");
    fprintf(out, "|------|-----:|------:|-----:|----------:|-------:|-----:|-------:|-------:|-----:|-------:|"
                 "--------:|-----:|-------:|---------|\n");
    for (int i = 0; i < cur->n; i++) {
        const rep_rec *r = &cur->r[i];
        char key[256];
        shape_key(r, key, sizeof key, 0);
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) {
            char k2[256];
            shape_key(&cur->r[j], k2, sizeof k2, 0);
            dup = !strcmp(k2, key) && cur->r[j].gpus == r->gpus && cur->r[j].nodes == r->nodes;
        }
        if (dup)
            continue;
        int nc = 0, nb = 0;
        double f = median(cur, key, r->gpus, r->nodes, offsetof(rep_rec, fwd_ms), &nc);
        double b = median(cur, key, r->gpus, r->nodes, offsetof(rep_rec, bwd_ms), NULL);
        double e = median(cur, key, r->gpus, r->nodes, offsetof(rep_rec, err), NULL);
        double fb = median(base, key, r->gpus, r->nodes, offsetof(rep_rec, fwd_ms), &nb);
        double bb = median(base, key, r->gpus, r->nodes, offsetof(rep_rec, bwd_ms), NULL);
        double eb = median(base, key, r->gpus, r->nodes, offsetof(rep_rec, err), NULL);
        double df = 100 * (f / fb - 1), db = 100 * (b / bb - 1), de = 100 * (e / eb - 1);
        if (eb == 0 && e == 0)
            de = 0;
        const char *verdict = "ok";
        if (!nb) {
            verdict = "no baseline";
        } else {
            n++;
            int slow = (isfinite(df) && df > slow_pct) || (isfinite(db) && db > slow_pct);
            int inacc = isfinite(e) && isfinite(eb) && e > eb * (1 + err_pct / 100) && e > 0;
            if (slow || inacc) {
                worse++;
                verdict = slow && inacc ? "SLOWER, LESS ACCURATE" : slow ? "SLOWER" : "LESS ACCURATE";
            }
        }
        char label[160];
        rep_shape_label(r, 0, label, sizeof label);
        fprintf(out, "| %s | %d | %d | %d | %d", label, r->gpus, r->nodes, nc, nb);
        /* fwd, bwd and error: this run, the baseline, the change */
        const struct { const char *fmt; double v; } cells[] = {
            {"%.3f", f}, {"%.3f", fb}, {"%+.1f%%", df}, {"%.3f", b},  {"%.3f", bb},
            {"%+.1f%%", db}, {"%.2e", e}, {"%.2e", eb}, {"%+.0f%%", de},
        };
        for (size_t k = 0; k < sizeof cells / sizeof cells[0]; k++) {
            fprintf(out, " | ");
            cell(out, cells[k].fmt, cells[k].v);
        }
        fprintf(out, " | %s |\n", verdict);
    }
    fprintf(out, "\n");
    *compared = n;
    return worse;
}
