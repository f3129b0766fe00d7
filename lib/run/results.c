/* results.c - results.jsonl: one record a line, appended atomically (the
 * records are written and read by json.c).
 *
 * The output is checked before the first case (fa4cp_results_prepare), so a
 * run never computes cases it cannot record.  A record goes out in one
 * O_APPEND write that starts on a fresh line: when the file ends in a torn
 * line (a full disk, a kill during a write), a newline goes first, so the
 * torn line can never swallow the next record; a short write is cut back
 * off.  The reader bounds a line (FA4CP_RESULTS_MAX_LINE), gives up on a
 * file that is not text, skips and counts what is not a record (a torn
 * line, a line that is not JSON) and recovers a record glued to a torn line
 * by writers before this one. */
#include "results.h"
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MIN_ROOM (1u << 20) /* bytes free on the output's file system before a run */

static int mkdir_p(const char *dir)
{
    char *tmp = strdup(dir);
    int rc = 0;
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    for (char *p = tmp + 1; *p && !rc; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST)
                rc = -1;
            *p = '/';
        }
    if (!rc && mkdir(tmp, 0777) && errno != EEXIST)
        rc = -1;
    int e = errno;
    free(tmp);
    errno = e;
    return rc;
}

static char *file_of(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + sizeof "/results.jsonl");
    if (p) {
        memcpy(p, dir, n);
        memcpy(p + n, "/results.jsonl", sizeof "/results.jsonl");
    }
    return p;
}

static const char *kind_of(mode_t m)
{
    return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a pipe" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

fa4cp_status fa4cp_results_prepare(const char *dir)
{
    fa4cp_status st = FA4CP_OK;
    char *path = NULL;
    int fd = -1;
    struct stat sb;
    struct statvfs vb;
    if (!dir || !*dir)
        FA4CP_FAIL(FA4CP_ERR_IO, "the output directory is empty (-o \"\"): give a directory, or --no-output");
    if (mkdir_p(dir)) {
        if (errno == EEXIST || errno == ENOTDIR)
            FA4CP_FAIL(FA4CP_ERR_IO, "the output directory %s: a part of the path is not a directory", dir);
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot create the output directory (%s): %s", strerror(errno), dir);
    }
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        FA4CP_FAIL(FA4CP_ERR_IO, "the output directory %s exists and is %s, not a directory", dir,
                   kind_of(sb.st_mode));
    path = file_of(dir);
    if (!path)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "out of memory");
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0666);
    if (fd < 0)
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot open results.jsonl for appending (%s): %s", strerror(errno), path);
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode))
        FA4CP_FAIL(FA4CP_ERR_IO, "%s is %s: records go to a regular file", path, kind_of(sb.st_mode));
    if (fstatvfs(fd, &vb) == 0 && (double)vb.f_bavail * vb.f_frsize < MIN_ROOM)
        FA4CP_FAIL(FA4CP_ERR_IO, "no room for results: the file system of %s has %.0f KiB free (want at least %u KiB)",
                   path, (double)vb.f_bavail * vb.f_frsize / 1024.0, MIN_ROOM >> 10);
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return st;
}

fa4cp_status fa4cp_results_append(const char *dir, const char *line)
{
    fa4cp_status st = FA4CP_OK;
    char *path = NULL, *buf = NULL;
    int fd = -1;
    if (mkdir_p(dir))
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot create the output directory %s: %s", dir, strerror(errno));
    path = file_of(dir);
    size_t n = strlen(line);
    buf = malloc(n + 3);
    if (!path || !buf)
        FA4CP_FAIL(FA4CP_ERR_NOMEM, "out of memory for a result line");
    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0)
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode))
        FA4CP_FAIL(FA4CP_ERR_IO, "%s is %s: records go to a regular file", path, kind_of(sb.st_mode));
    /* a fresh line: a torn last line gets its newline first */
    size_t k = 0;
    char last = '\n';
    if (sb.st_size > 0 && pread(fd, &last, 1, sb.st_size - 1) == 1 && last != '\n')
        buf[k++] = '\n';
    memcpy(buf + k, line, n);
    k += n;
    buf[k++] = '\n';
    ssize_t wr = write(fd, buf, k);
    int werr = errno;
    if (wr != (ssize_t)k) {
        /* cut the partial record off again: the file stays whole records */
        if (wr > 0 && ftruncate(fd, sb.st_size) != 0)
            fa4cp_log(FA4CP_LOG_WARN, "%s: cannot cut back a partial record: %s", path, strerror(errno));
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot write a record to %s: %s", path,
                   wr < 0 ? strerror(werr) : "short write (disk full?)");
    }
    if (fsync(fd) && errno != EINVAL)
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot write a record to %s: fsync: %s", path, strerror(errno));
    int fdc = fd;
    fd = -1;
    if (close(fdc))
        FA4CP_FAIL(FA4CP_ERR_IO, "cannot write a record to %s: close: %s", path, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(path);
    free(buf);
    return st;
}

/* ------------------------------------------------------------------ reading */

struct fa4cp_results_reader {
    FILE *f;
    char *path;
    char blk[65536];
    size_t bpos, blen;
    char *line;
    size_t llen, lcap;
    long lineno;
    int done; /* end of file, or the rest given up */
    fa4cp_results_skip_fn skip;
    void *ctx;
    fa4cp_results_counts counts;
};

fa4cp_status fa4cp_results_open(const char *path_or_dir, fa4cp_results_skip_fn skip, void *ctx,
                                fa4cp_results_reader **out)
{
    struct stat sb;
    fa4cp_results_reader *r = calloc(1, sizeof *r);
    if (!r)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    r->path = !stat(path_or_dir, &sb) && S_ISDIR(sb.st_mode) ? file_of(path_or_dir) : strdup(path_or_dir);
    if (!r->path) {
        free(r);
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    }
    r->f = fopen(r->path, "r");
    if (!r->f) {
        fa4cp_status st = fa4cp_set_error(FA4CP_ERR_IO, "cannot read %s: %s", r->path, strerror(errno));
        free(r->path);
        free(r);
        return st;
    }
    r->skip = skip;
    r->ctx = ctx;
    *out = r;
    return FA4CP_OK;
}

const char *fa4cp_results_path(const fa4cp_results_reader *r) { return r ? r->path : ""; }

const fa4cp_results_counts *fa4cp_results_counted(const fa4cp_results_reader *r) { return &r->counts; }

void fa4cp_results_close(fa4cp_results_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r->line);
    free(r->path);
    free(r);
}

static void skipped(fa4cp_results_reader *r, long *count, const char *why)
{
    (*count)++;
    if (r->skip)
        r->skip(r->ctx, r->path, r->lineno, why);
}

/* The next line into r->line (without its newline).  1: a line ended by a
 * newline, 2: a last line without one, 0: the end; a line too long or with
 * NUL bytes gives up on the rest of the file (reported, 0). */
static int next_line(fa4cp_results_reader *r)
{
    r->llen = 0;
    if (r->done)
        return 0;
    r->lineno++;
    for (;;) {
        if (r->bpos == r->blen) {
            r->blen = fread(r->blk, 1, sizeof r->blk, r->f);
            r->bpos = 0;
            if (r->blen == 0) {
                r->done = 1;
                if (ferror(r->f))
                    skipped(r, &r->counts.unreadable, "a read error: the rest of the file is skipped");
                return r->llen ? 2 : 0;
            }
        }
        const char *at = r->blk + r->bpos;
        size_t avail = r->blen - r->bpos;
        const char *nl = memchr(at, '\n', avail);
        size_t take = nl ? (size_t)(nl - at) : avail;
        if (memchr(at, '\0', take)) {
            r->done = 1;
            skipped(r, &r->counts.unreadable, "NUL bytes: not a results.jsonl (binary data); the rest of the file is "
                                              "skipped");
            return 0;
        }
        if (r->llen + take > FA4CP_RESULTS_MAX_LINE) {
            r->done = 1;
            char why[160];
            snprintf(why, sizeof why, "a line longer than %u MiB: not a results.jsonl; the rest of the file is skipped",
                     FA4CP_RESULTS_MAX_LINE >> 20);
            skipped(r, &r->counts.unreadable, why);
            return 0;
        }
        if (r->llen + take + 1 > r->lcap) {
            size_t cap = r->lcap ? r->lcap : 4096;
            while (cap < r->llen + take + 1)
                cap *= 2;
            char *nb = realloc(r->line, cap);
            if (!nb) {
                r->done = 1;
                skipped(r, &r->counts.unreadable, "out of memory: the rest of the file is skipped");
                return 0;
            }
            r->line = nb;
            r->lcap = cap;
        }
        memcpy(r->line + r->llen, at, take);
        r->llen += take;
        r->line[r->llen] = 0;
        r->bpos += take + (nl ? 1 : 0);
        if (nl)
            return 1;
    }
}

fa4cp_status fa4cp_results_next(fa4cp_results_reader *r, json_t **rec, long *lineno)
{
    *rec = NULL;
    for (;;) {
        int k = next_line(r);
        if (!k)
            return FA4CP_OK;
        if (r->line[strspn(r->line, " \t\r")] == 0)
            continue;
        char err[200];
        json_error_t e;
        json_t *v = json_loads(r->line, JSON_DECODE_ANY, &e);
        /* a record cut off: an object whose text ends before it does */
        int cut = !v && r->line[0] == '{' && e.position >= (int)r->llen;
        if (!v)
            snprintf(err, sizeof err, "column %d: %s", e.column, e.text);
        if (v && !json_is_object(v)) {
            fa4cp_json_free(v);
            v = NULL;
            snprintf(err, sizeof err, "JSON, but not a record (an object)");
        }
        if (!v && k == 1) {
            /* a record glued to a torn line (an older writer): the last one recovered */
            const char *tail = NULL;
            for (const char *p = strstr(r->line + 1, "{\"schema\""); p; p = strstr(p + 1, "{\"schema\""))
                tail = p;
            json_t *t = tail ? fa4cp_json_parse(tail, NULL, 0) : NULL;
            if (t && json_is_object(t)) {
                skipped(r, &r->counts.torn, "a torn record glued to the next one: the torn part is skipped, the next "
                                            "record kept");
                *rec = t;
                if (lineno)
                    *lineno = r->lineno;
                return FA4CP_OK;
            }
            fa4cp_json_free(t);
        }
        if (!v) {
            char why[400];
            if (cut) {
                snprintf(why, sizeof why, "not JSON: a torn %sline (a write cut off: a full disk or a kill), skipped: %s",
                         k == 2 ? "last " : "", err);
                skipped(r, &r->counts.torn, why);
            } else {
                snprintf(why, sizeof why, "not JSON, skipped (%s)", err);
                skipped(r, &r->counts.not_json, why);
            }
            continue;
        }
        r->counts.records++;
        *rec = v;
        if (lineno)
            *lineno = r->lineno;
        return FA4CP_OK;
    }
}
