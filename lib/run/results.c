/* results.c - JSON lines: writer, atomic append, and a small reader. */
#include "results.h"
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ writer */

void fa4cp_jw_init(fa4cp_jw *w)
{
    memset(w, 0, sizeof *w);
    w->first[0] = 1;
}

void fa4cp_jw_free(fa4cp_jw *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static void put(fa4cp_jw *w, const char *s, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        while (cap < w->len + n + 1)
            cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void puts_(fa4cp_jw *w, const char *s) { put(w, s, strlen(s)); }

static void put_string(fa4cp_jw *w, const char *s)
{
    puts_(w, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': puts_(w, "\\\""); break;
        case '\\': puts_(w, "\\\\"); break;
        case '\n': puts_(w, "\\n"); break;
        case '\t': puts_(w, "\\t"); break;
        case '\r': puts_(w, "\\r"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                puts_(w, esc);
            } else {
                put(w, (const char *)p, 1);
            }
        }
    }
    puts_(w, "\"");
}

static void key(fa4cp_jw *w, const char *k)
{
    if (!w->first[w->depth])
        puts_(w, ",");
    w->first[w->depth] = 0;
    if (k) {
        put_string(w, k);
        puts_(w, ":");
    }
}

void fa4cp_jw_begin(fa4cp_jw *w, const char *k, int array)
{
    if (w->depth > 0 || w->len)
        key(w, k);
    puts_(w, array ? "[" : "{");
    if (w->depth < 31)
        w->depth++;
    w->first[w->depth] = 1;
}

void fa4cp_jw_end(fa4cp_jw *w, int array)
{
    puts_(w, array ? "]" : "}");
    if (w->depth > 0)
        w->depth--;
}

void fa4cp_jw_str(fa4cp_jw *w, const char *k, const char *v)
{
    key(w, k);
    put_string(w, v);
}

void fa4cp_jw_num(fa4cp_jw *w, const char *k, double v)
{
    char b[40];
    key(w, k);
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    snprintf(b, sizeof b, "%.9g", v);
    puts_(w, b);
}

void fa4cp_jw_int(fa4cp_jw *w, const char *k, long long v)
{
    char b[32];
    key(w, k);
    snprintf(b, sizeof b, "%lld", v);
    puts_(w, b);
}

void fa4cp_jw_bool(fa4cp_jw *w, const char *k, int v)
{
    key(w, k);
    puts_(w, v ? "true" : "false");
}

void fa4cp_jw_null(fa4cp_jw *w, const char *k)
{
    key(w, k);
    puts_(w, "null");
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST)
        return -1;
    return 0;
}

fa4cp_status fa4cp_results_append(const char *dir, const char *line)
{
    char path[4096];
    if (mkdir_p(dir))
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot create the output directory %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    size_t n = strlen(line);
    char *buf = malloc(n + 2);
    if (!buf)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for a result line");
    memcpy(buf, line, n);
    buf[n] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) {
        free(buf);
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    ssize_t wr = write(fd, buf, n + 1);
    int werr = errno;
    free(buf);
    if (wr != (ssize_t)(n + 1)) {
        close(fd);
        return fa4cp_set_error(FA4CP_ERR_IO, "short write to %s: %s", path, wr < 0 ? strerror(werr) : "disk full?");
    }
    fsync(fd);
    if (close(fd))
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ reader */

typedef struct rd {
    const char *s;
    size_t at;
    char *err;
    size_t errlen;
    int depth;
} rd;

static void ws(rd *r)
{
    while (r->s[r->at] == ' ' || r->s[r->at] == '\t' || r->s[r->at] == '\n' || r->s[r->at] == '\r')
        r->at++;
}

static int fail(rd *r, const char *what)
{
    if (r->err && !r->err[0])
        snprintf(r->err, r->errlen, "offset %zu: %s", r->at, what);
    return -1;
}

static int value(rd *r, fa4cp_jv *v);

static int string(rd *r, char **out)
{
    if (r->s[r->at] != '"')
        return fail(r, "expected a string");
    r->at++;
    size_t cap = 16, n = 0;
    char *b = malloc(cap);
    if (!b)
        return fail(r, "out of memory");
    for (;;) {
        char c = r->s[r->at++];
        if (!c) {
            free(b);
            return fail(r, "unterminated string");
        }
        if (c == '"')
            break;
        if (c == '\\') {
            char e = r->s[r->at++];
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case '/': case '\\': case '"': c = e; break;
            case 'u': {
                unsigned code = 0;
                for (int i = 0; i < 4; i++) {
                    char h = r->s[r->at++];
                    code <<= 4;
                    if (h >= '0' && h <= '9') code |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f') code |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F') code |= (unsigned)(h - 'A' + 10);
                    else {
                        free(b);
                        return fail(r, "bad \\u escape");
                    }
                }
                c = code < 0x80 ? (char)code : '?';
                break;
            }
            default: free(b); return fail(r, "bad escape");
            }
        }
        if (n + 2 > cap) {
            cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                return fail(r, "out of memory");
            }
            b = nb;
        }
        b[n++] = c;
    }
    b[n] = 0;
    *out = b;
    return 0;
}

static int push(rd *r, fa4cp_jv *v, int *cap)
{
    if (v->n == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        fa4cp_jv *it = realloc(v->items, sizeof(fa4cp_jv) * (size_t)nc);
        if (!it)
            return fail(r, "out of memory");
        v->items = it;
        if (v->type == FA4CP_JV_OBJ) {
            char **k = realloc(v->keys, sizeof(char *) * (size_t)nc);
            if (!k)
                return fail(r, "out of memory");
            v->keys = k;
        }
        *cap = nc;
    }
    memset(&v->items[v->n], 0, sizeof(fa4cp_jv));
    return 0;
}

static int value(rd *r, fa4cp_jv *v)
{
    memset(v, 0, sizeof *v);
    ws(r);
    char c = r->s[r->at];
    if (r->depth > 64)
        return fail(r, "nested too deeply");
    if (c == '{' || c == '[') {
        int obj = c == '{', cap = 0;
        v->type = obj ? FA4CP_JV_OBJ : FA4CP_JV_ARR;
        r->at++;
        r->depth++;
        ws(r);
        if (r->s[r->at] == (obj ? '}' : ']')) {
            r->at++;
            r->depth--;
            return 0;
        }
        for (;;) {
            if (push(r, v, &cap))
                return -1;
            if (obj) {
                ws(r);
                if (string(r, &v->keys[v->n]))
                    return -1;
                v->n++; /* owns the key from here on */
                ws(r);
                if (r->s[r->at++] != ':')
                    return fail(r, "expected ':'");
                if (value(r, &v->items[v->n - 1]))
                    return -1;
            } else {
                v->n++;
                if (value(r, &v->items[v->n - 1]))
                    return -1;
            }
            ws(r);
            char d = r->s[r->at++];
            if (d == ',')
                continue;
            if (d == (obj ? '}' : ']'))
                break;
            return fail(r, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        r->depth--;
        return 0;
    }
    if (c == '"') {
        v->type = FA4CP_JV_STR;
        return string(r, &v->str);
    }
    if (!strncmp(r->s + r->at, "true", 4) || !strncmp(r->s + r->at, "false", 5)) {
        v->type = FA4CP_JV_BOOL;
        v->num = c == 't';
        r->at += c == 't' ? 4 : 5;
        return 0;
    }
    if (!strncmp(r->s + r->at, "null", 4)) {
        v->type = FA4CP_JV_NULL;
        r->at += 4;
        return 0;
    }
    char *end;
    v->num = strtod(r->s + r->at, &end);
    if (end == r->s + r->at)
        return fail(r, "expected a value");
    v->type = FA4CP_JV_NUM;
    r->at = (size_t)(end - r->s);
    return 0;
}

static void clear(fa4cp_jv *v)
{
    if (!v)
        return;
    free(v->str);
    for (int i = 0; i < v->n; i++) {
        clear(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

void fa4cp_json_free(fa4cp_jv *v)
{
    clear(v);
    free(v);
}

fa4cp_jv *fa4cp_json_parse(const char *text, char *err, size_t errlen)
{
    rd r = {text, 0, err, errlen, 0};
    if (err && errlen)
        err[0] = 0;
    fa4cp_jv *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    if (value(&r, v)) {
        fa4cp_json_free(v);
        return NULL;
    }
    ws(&r);
    if (text[r.at]) {
        fail(&r, "trailing characters");
        fa4cp_json_free(v);
        return NULL;
    }
    return v;
}

const fa4cp_jv *fa4cp_json_get(const fa4cp_jv *v, const char *path)
{
    char part[128];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = 0;
        path += n + (path[n] == '.');
        if (v->type != FA4CP_JV_OBJ)
            return NULL;
        const fa4cp_jv *next = NULL;
        for (int i = 0; i < v->n; i++)
            if (!strcmp(v->keys[i], part))
                next = &v->items[i];
        v = next;
    }
    return v;
}

double fa4cp_json_num(const fa4cp_jv *v, const char *path, double dflt)
{
    const fa4cp_jv *x = fa4cp_json_get(v, path);
    return x && (x->type == FA4CP_JV_NUM || x->type == FA4CP_JV_BOOL) ? x->num : dflt;
}

const char *fa4cp_json_str(const fa4cp_jv *v, const char *path, const char *dflt)
{
    const fa4cp_jv *x = fa4cp_json_get(v, path);
    return x && x->type == FA4CP_JV_STR ? x->str : dflt;
}
