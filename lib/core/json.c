/* json.c - the JSON writer and reader of fa4cp, over jansson (see json.h). */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ writer */

void fa4cp_jw_init(fa4cp_jw *w) { memset(w, 0, sizeof *w); }

void fa4cp_jw_free(fa4cp_jw *w)
{
    json_decref(w->stack[0]);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static void fail(fa4cp_jw *w, const char *what, const char *key)
{
    if (!w->failed)
        snprintf(w->error, sizeof w->error, "%s%s%s%s", what, key ? " (key '" : "", key ? key : "",
                 key ? "')" : "");
    w->failed = 1;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one. */
static int utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    int n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
        return 0; /* overlong, or above U+10FFFF */
    return n;
}

json_t *fa4cp_json_string_lossy(const char *s, int *replaced)
{
    if (replaced)
        *replaced = 0;
    if (!s)
        s = "";
    json_t *v = json_string(s); /* jansson validates the UTF-8 */
    if (v)
        return v;
    size_t n = strlen(s);
    char *b = malloc(3 * n + 1);
    if (!b)
        return NULL;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int k = utf8_len(p);
        if (k) {
            memcpy(b + o, p, (size_t)k);
            o += (size_t)k;
            p += k;
        } else {
            memcpy(b + o, "\xef\xbf\xbd", 3); /* U+FFFD */
            o += 3;
            p++;
        }
    }
    b[o] = '\0';
    v = json_string(b);
    free(b);
    if (v && replaced)
        *replaced = 1;
    return v;
}

void fa4cp_jw_value(fa4cp_jw *w, const char *key, json_t *v)
{
    if (w->failed) {
        json_decref(v);
        return;
    }
    if (!v) {
        fail(w, "out of memory", key);
        return;
    }
    if (w->depth == 0) {
        if (w->stack[0] || !(json_is_object(v) || json_is_array(v))) {
            json_decref(v);
            fail(w, "a value outside the document", key);
            return;
        }
        w->stack[0] = v;
        w->depth = 1;
        return;
    }
    json_t *top = w->stack[w->depth - 1];
    int rc;
    if (json_is_object(top)) {
        if (!key) {
            json_decref(v);
            fail(w, "a member without a key", NULL);
            return;
        }
        rc = json_object_set_new(top, key, v);
    } else {
        rc = json_array_append_new(top, v);
    }
    if (rc)
        fail(w, "cannot add a value (out of memory, or a key that is not UTF-8)", key);
}

void fa4cp_jw_begin(fa4cp_jw *w, const char *key, int array)
{
    if (w->failed)
        return;
    if (w->depth >= (int)(sizeof w->stack / sizeof w->stack[0])) {
        fail(w, "nested too deeply", key);
        return;
    }
    json_t *c = array ? json_array() : json_object();
    if (w->depth == 0) {
        fa4cp_jw_value(w, key, c);
        return;
    }
    fa4cp_jw_value(w, key, c);
    if (!w->failed)
        w->stack[w->depth++] = c; /* borrowed: the parent holds it */
}

void fa4cp_jw_end(fa4cp_jw *w, int array)
{
    if (w->failed)
        return;
    if (w->depth == 0 || !!json_is_array(w->stack[w->depth - 1]) != !!array) {
        fail(w, array ? "an array end without its begin" : "an object end without its begin", NULL);
        return;
    }
    if (--w->depth > 0)
        return;
    w->buf = json_dumps(w->stack[0], JSON_COMPACT | FA4CP_JSON_REAL);
    if (!w->buf)
        fail(w, "out of memory while writing the document", NULL);
}

void fa4cp_jw_str(fa4cp_jw *w, const char *key, const char *value)
{
    int rep = 0;
    json_t *v = fa4cp_json_string_lossy(value, &rep);
    w->replaced += rep;
    fa4cp_jw_value(w, key, v);
}

void fa4cp_jw_num(fa4cp_jw *w, const char *key, double value)
{
    fa4cp_jw_value(w, key, isfinite(value) ? json_real(value) : json_null());
}

void fa4cp_jw_int(fa4cp_jw *w, const char *key, long long value)
{
    fa4cp_jw_value(w, key, json_integer((json_int_t)value));
}

void fa4cp_jw_bool(fa4cp_jw *w, const char *key, int value)
{
    fa4cp_jw_value(w, key, json_boolean(value));
}

void fa4cp_jw_null(fa4cp_jw *w, const char *key) { fa4cp_jw_value(w, key, json_null()); }

/* ------------------------------------------------------------------ reader */

json_t *fa4cp_json_parse(const char *text, char *err, size_t errlen)
{
    json_error_t e;
    if (err && errlen)
        err[0] = '\0';
    /* one document; "\u0000" is refused (a C string cannot hold it) */
    json_t *v = json_loads(text ? text : "", JSON_DECODE_ANY, &e);
    if (!v && err && errlen)
        snprintf(err, errlen, "line %d, column %d: %s", e.line, e.column, e.text);
    return v;
}

void fa4cp_json_free(json_t *v) { json_decref(v); }

const json_t *fa4cp_json_get(const json_t *v, const char *path)
{
    char part[128];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        path += n + (path[n] == '.');
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
    }
    return v;
}

double fa4cp_json_num(const json_t *v, const char *path, double dflt)
{
    const json_t *x = fa4cp_json_get(v, path);
    if (json_is_number(x))
        return json_number_value(x);
    if (json_is_boolean(x))
        return json_is_true(x);
    return dflt;
}

const char *fa4cp_json_str(const json_t *v, const char *path, const char *dflt)
{
    const json_t *x = fa4cp_json_get(v, path);
    return json_is_string(x) ? json_string_value(x) : dflt;
}

/* ------------------------------------------------------------------ printing */

typedef struct sbuf {
    char *b;
    size_t len, cap;
    int failed;
} sbuf;

static void add(sbuf *s, const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (s->failed || !t) {
        s->failed = 1;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *b = realloc(s->b, cap);
        if (!b) {
            s->failed = 1;
            return;
        }
        s->b = b;
        s->cap = cap;
    }
    memcpy(s->b + s->len, t, n + 1);
    s->len += n;
}

static void add_dump(sbuf *s, const json_t *v)
{
    char *t = json_dumps(v, JSON_ENCODE_ANY | FA4CP_JSON_REAL);
    add(s, t);
    free(t);
}

static int rows_of_objects(const json_t *a)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_object(json_array_get(a, i)))
            return 0;
    return 1;
}

char *fa4cp_json_rows(const json_t *doc)
{
    sbuf s = {0};
    if (!json_is_object(doc)) {
        add_dump(&s, doc);
        add(&s, "\n");
        return s.failed ? (free(s.b), NULL) : s.b;
    }
    const char *key;
    json_t *val;
    size_t i = 0, n = json_object_size(doc);
    add(&s, "{\n");
    json_object_foreach((json_t *)doc, key, val) {
        json_t *k = json_string(key);
        add(&s, "  ");
        add_dump(&s, k);
        json_decref(k);
        add(&s, ": ");
        if (rows_of_objects(val)) {
            add(&s, "[\n");
            for (size_t j = 0; j < json_array_size(val); j++) {
                add(&s, "    ");
                add_dump(&s, json_array_get(val, j));
                add(&s, j + 1 < json_array_size(val) ? ",\n" : "\n");
            }
            add(&s, "  ]");
        } else {
            add_dump(&s, val);
        }
        add(&s, ++i < n ? ",\n" : "\n");
    }
    add(&s, "}\n");
    if (s.failed) {
        free(s.b);
        return NULL;
    }
    return s.b;
}
