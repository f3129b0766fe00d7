/* test_results.c - JSON lines: writer -> reader round trip, appends that
 * keep every line, and the records of the fa4cp-report fixture parsed back. */
#include "fa4cp.h"
#include "run/results.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Code point c as UTF-8 into b; the length. */
static int put_utf8(unsigned c, char *b)
{
    if (c < 0x80) {
        b[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        b[0] = (char)(0xc0 | c >> 6);
        b[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        b[0] = (char)(0xe0 | c >> 12);
        b[1] = (char)(0x80 | (c >> 6 & 0x3f));
        b[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    b[0] = (char)(0xf0 | c >> 18);
    b[1] = (char)(0x80 | (c >> 12 & 0x3f));
    b[2] = (char)(0x80 | (c >> 6 & 0x3f));
    b[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* A document with one string member written and read back: the same bytes? */
static int round_trip(const char *value, char *line, size_t len)
{
    fa4cp_jw w;
    char err[160];
    fa4cp_jw_init(&w);
    fa4cp_jw_begin(&w, NULL, 0);
    fa4cp_jw_str(&w, "s", value);
    fa4cp_jw_end(&w, 0);
    int good = !w.failed && w.buf && !w.replaced;
    if (good)
        snprintf(line, len, "%s", w.buf);
    for (const unsigned char *p = (const unsigned char *)(w.buf ? w.buf : ""); *p; p++)
        good &= *p >= 0x20; /* no raw control character in a line (DEL may stay, as JSON allows) */
    json_t *v = good ? fa4cp_json_parse(w.buf, err, sizeof err) : NULL;
    good = v && !strcmp(fa4cp_json_str(v, "s", ""), value);
    fa4cp_json_free(v);
    fa4cp_jw_free(&w);
    return good;
}

int main(void)
{
    plan(0);
    fa4cp_jw w;
    fa4cp_jw_init(&w);
    fa4cp_jw_begin(&w, NULL, 0);
    fa4cp_jw_str(&w, "name", "a \"quoted\"\nline\\");
    fa4cp_jw_int(&w, "n", -42);
    fa4cp_jw_num(&w, "x", 0.125);
    fa4cp_jw_num(&w, "nan", NAN);
    fa4cp_jw_bool(&w, "yes", 1);
    fa4cp_jw_begin(&w, "arr", 1);
    fa4cp_jw_int(&w, NULL, 1);
    fa4cp_jw_begin(&w, NULL, 0);
    fa4cp_jw_str(&w, "k", "v");
    fa4cp_jw_end(&w, 0);
    fa4cp_jw_end(&w, 1);
    fa4cp_jw_begin(&w, "obj", 0);
    fa4cp_jw_null(&w, "z");
    fa4cp_jw_end(&w, 0);
    fa4cp_jw_end(&w, 0);
    ok(!w.failed && w.buf && !strchr(w.buf, '\n'), "one line: %s", w.buf);
    char err[160];
    json_t *v = fa4cp_json_parse(w.buf, err, sizeof err);
    ok(v != NULL, "parses back%s%s", v ? "" : ": ", v ? "" : err);
    if (v) {
        is_string(fa4cp_json_str(v, "name", ""), "a \"quoted\"\nline\\", "escaped string");
        ok(fa4cp_json_num(v, "n", 0) == -42 && fa4cp_json_num(v, "x", 0) == 0.125, "numbers");
        ok(json_is_null(fa4cp_json_get(v, "nan")), "NaN written as null");
        ok(fa4cp_json_num(v, "yes", 0) == 1, "bool");
        const json_t *arr = fa4cp_json_get(v, "arr");
        ok(json_is_array(arr) && json_array_size(arr) == 2 &&
               !strcmp(fa4cp_json_str(json_array_get(arr, 1), "k", ""), "v"),
           "array with an object");
        ok(json_is_null(fa4cp_json_get(v, "obj.z")), "dotted path");
        ok(fa4cp_json_get(v, "obj.missing") == NULL, "absent member");
        fa4cp_json_free(v);
    }
    ok(fa4cp_json_parse("{\"a\": [1, 2", err, sizeof err) == NULL && strstr(err, "line 1"),
       "truncated: %s", err);
    ok(fa4cp_json_parse("{\"a\": 1} x", err, sizeof err) == NULL, "trailing characters refused");

    /* strings: every control character, DEL, non-ASCII of 2, 3 and 4 bytes */
    char s[512], txt[2048];
    int k = 0;
    for (unsigned c = 1; c < 0x20; c++)
        s[k++] = (char)c;
    s[k++] = 0x7f;
    k += put_utf8(0xe9, s + k);    /* é */
    k += put_utf8(0x65e5, s + k);  /* 日 */
    k += put_utf8(0x1f600, s + k); /* an emoji: a surrogate pair in \u form */
    k += put_utf8(0x10ffff, s + k);
    s[k] = '\0';
    ok(round_trip(s, txt, sizeof txt), "control characters and non-ASCII round-trip: %s", txt);
    ok(strstr(txt, "\\u0001") && strstr(txt, "\\n") && strstr(txt, "\\u001F"),
       "control characters are escaped");
    /* \u escapes above 0x7F are decoded, not turned into '?' */
    v = fa4cp_json_parse("{\"s\": \"caf\\u00e9 \\u65e5 \\ud83d\\ude00\"}", err, sizeof err);
    is_string(v ? fa4cp_json_str(v, "s", "") : err, "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80",
              "\\u00e9, \\u65e5 and a surrogate pair read as UTF-8");
    fa4cp_json_free(v);
    ok(fa4cp_json_parse("{\"s\": \"a\\u0000b\"}", err, sizeof err) == NULL,
       "\\u0000 is refused, not truncated (%s)", err);
    ok(fa4cp_json_parse("{\"s\": \"\\ud83d\"}", err, sizeof err) == NULL,
       "a lone surrogate is refused (%s)", err);
    ok(fa4cp_json_parse("{\"s\": \"\xc3\x28\"}", err, sizeof err) == NULL,
       "invalid UTF-8 in the input is refused (%s)", err);
    ok(fa4cp_json_parse("{\"s\": \"a\tb\"}", err, sizeof err) == NULL,
       "a raw control character in a string is refused (%s)", err);
    /* writing bytes that are not UTF-8 keeps the record, with U+FFFD */
    fa4cp_jw bw;
    fa4cp_jw_init(&bw);
    fa4cp_jw_begin(&bw, NULL, 0);
    fa4cp_jw_str(&bw, "path", "/data/caf\xe9/run");
    fa4cp_jw_end(&bw, 0);
    v = bw.buf ? fa4cp_json_parse(bw.buf, err, sizeof err) : NULL;
    ok(!bw.failed && bw.replaced == 1 && v &&
           !strcmp(fa4cp_json_str(v, "path", ""), "/data/caf\xef\xbf\xbd/run"),
       "a latin-1 byte becomes U+FFFD and the record stays: %s", bw.buf ? bw.buf : bw.error);
    fa4cp_json_free(v);
    fa4cp_jw_free(&bw);
    /* misuse is reported, not written */
    fa4cp_jw_init(&bw);
    fa4cp_jw_begin(&bw, NULL, 0);
    fa4cp_jw_int(&bw, NULL, 1);
    ok(bw.failed && strstr(bw.error, "without a key"), "a member without a key: %s", bw.error);
    fa4cp_jw_free(&bw);
    /* random strings of random code points (fresh seed each run, printed) */
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid(), r = seed;
    int good = 0, trials = 300;
    for (int t = 0; t < trials; t++) {
        int n = 0, m = 1 + (int)((r = r * 1103515245u + 12345u) >> 16) % 40;
        for (int i = 0; i < m; i++) {
            unsigned c;
            do {
                r = r * 1103515245u + 12345u;
                unsigned pick = r >> 28;
                c = 1 + (r >> 8) % (pick < 4 ? 0x20 : pick < 8 ? 0x80 : pick < 12 ? 0x10000 : 0x10ffff);
            } while (c >= 0xd800 && c <= 0xdfff);
            n += put_utf8(c, s + n);
        }
        s[n] = '\0';
        good += round_trip(s, txt, sizeof txt);
    }
    ok(good == trials, "%d of %d random strings round-trip (seed %u)", good, trials, seed);

    /* appends: DIR is created; every line stays whole */
    char dir[] = "/tmp/fa4cp-results-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    char sub[256], path[300];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    good = 1;
    for (int i = 0; i < 50; i++)
        good &= fa4cp_results_append(sub, w.buf) == FA4CP_OK;
    ok(good, "50 appends into a new nested directory");
    snprintf(path, sizeof path, "%s/results.jsonl", sub);
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t len = 0;
    int lines = 0, parsed = 0;
    while (f && getline(&line, &len, f) > 0) {
        lines++;
        json_t *x = fa4cp_json_parse(line, err, sizeof err);
        parsed += x != NULL;
        fa4cp_json_free(x);
    }
    if (f)
        fclose(f);
    ok(lines == 50 && parsed == 50, "50 lines, each parses (%d, %d)", lines, parsed);

    /* issue 15, finding 7: a torn last line (a kill or a full disk during a
     * write) never swallows the next record: the writer starts a fresh line,
     * the reader skips and counts the torn one */
    {
        FILE *t = fopen(path, "a");
        size_t cut = strlen(w.buf) / 2;
        ok(t && fwrite(w.buf, 1, cut, t) == cut && fclose(t) == 0, "a record torn after %zu bytes", cut);
        good = fa4cp_results_append(sub, w.buf) == FA4CP_OK && fa4cp_results_append(sub, w.buf) == FA4CP_OK;
        fa4cp_results_reader *rd = NULL;
        json_t *rec = NULL;
        long ln = 0, last = 0, n = 0;
        good &= fa4cp_results_open(sub, NULL, NULL, &rd) == FA4CP_OK;
        while (rd && fa4cp_results_next(rd, &rec, &ln) == FA4CP_OK && rec) {
            n++;
            last = ln;
            fa4cp_json_free(rec);
        }
        const fa4cp_results_counts *c = rd ? fa4cp_results_counted(rd) : NULL;
        ok(good && n == 52 && last == 53 && c && c->torn == 1 && c->not_json == 0,
           "two appends after it: 52 records (the last on line 53), 1 torn line counted (%ld, %ld, %ld)", n, last,
           c ? c->torn : -1);
        fa4cp_results_close(rd);
        /* a record glued to a torn line (written before this fix): recovered */
        t = fopen(path, "a");
        ok(t && fwrite(w.buf, 1, cut, t) == cut && fprintf(t, "{\"schema\":1,\"tool\":\"fa4cp-run\",\"case\":7}\n") > 0 &&
               fclose(t) == 0,
           "a torn record with the next one glued to it");
        n = 0;
        good = fa4cp_results_open(path, NULL, NULL, &rd) == FA4CP_OK;
        int seven = 0;
        while (rd && fa4cp_results_next(rd, &rec, &ln) == FA4CP_OK && rec) {
            n++;
            seven += fa4cp_json_num(rec, "case", -1) == 7;
            fa4cp_json_free(rec);
        }
        c = rd ? fa4cp_results_counted(rd) : NULL;
        ok(good && n == 53 && seven == 1 && c && c->torn == 2,
           "... the glued record is read back, the torn part counted (%ld)", n);
        fa4cp_results_close(rd);
    }
    unlink(path);
    fa4cp_jw_free(&w);

    /* the fixture written by fa4cp-run */
    const char *src = getenv("top_srcdir");
    snprintf(path, sizeof path, "%s/tests/report/fixture.jsonl", src ? src : ".");
    f = fopen(path, "r");
    int ok_records = 0, bad = 0;
    lines = 0;
    while (f && getline(&line, &len, f) > 0) {
        lines++;
        json_t *x = fa4cp_json_parse(line, err, sizeof err);
        if (!x) {
            bad++;
            continue;
        }
        if (!strcmp(fa4cp_json_str(x, "result.status", ""), "OK") && fa4cp_json_num(x, "config.cp.size", 0) >= 1 &&
            fa4cp_json_num(x, "result.fwd_ms", -1) > 0 && fa4cp_json_get(x, "result.per_rank.fwd_ms") &&
            (int)json_array_size(fa4cp_json_get(x, "result.per_rank.fwd_ms")) == (int)fa4cp_json_num(x, "env.world_size", -1) &&
            fa4cp_json_str(x, "env.fa4cp", NULL))
            ok_records++;
        fa4cp_json_free(x);
    }
    if (f)
        fclose(f);
    free(line);
    ok(lines == 14 && ok_records == 12 && bad == 1,
       "fixture: 12 complete OK records, 1 truncated line, 1 FAILED record (%d/%d/%d)", lines, ok_records, bad);
    return done_testing();
}
