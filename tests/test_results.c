/* test_results.c - JSON lines: writer -> reader round trip, appends that
 * keep every line, and the records of the fa4cp-report fixture parsed back. */
#include "fa4cp.h"
#include "run/results.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    char err[128];
    fa4cp_jv *v = fa4cp_json_parse(w.buf, err, sizeof err);
    ok(v != NULL, "parses back%s%s", v ? "" : ": ", v ? "" : err);
    if (v) {
        is_string(fa4cp_json_str(v, "name", ""), "a \"quoted\"\nline\\", "escaped string");
        ok(fa4cp_json_num(v, "n", 0) == -42 && fa4cp_json_num(v, "x", 0) == 0.125, "numbers");
        ok(fa4cp_json_get(v, "nan")->type == FA4CP_JV_NULL, "NaN written as null");
        ok(fa4cp_json_num(v, "yes", 0) == 1, "bool");
        const fa4cp_jv *arr = fa4cp_json_get(v, "arr");
        ok(arr && arr->type == FA4CP_JV_ARR && arr->n == 2 && !strcmp(fa4cp_json_str(&arr->items[1], "k", ""), "v"),
           "array with an object");
        ok(fa4cp_json_get(v, "obj.z") && fa4cp_json_get(v, "obj.z")->type == FA4CP_JV_NULL, "dotted path");
        ok(fa4cp_json_get(v, "obj.missing") == NULL, "absent member");
        fa4cp_json_free(v);
    }
    ok(fa4cp_json_parse("{\"a\": [1, 2", err, sizeof err) == NULL && strstr(err, "offset"), "truncated: %s", err);
    ok(fa4cp_json_parse("{\"a\": 1} x", err, sizeof err) == NULL, "trailing characters refused");

    /* appends: DIR is created; every line stays whole */
    char dir[] = "/tmp/fa4cp-results-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    char sub[256], path[300];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    int good = 1;
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
        fa4cp_jv *x = fa4cp_json_parse(line, err, sizeof err);
        parsed += x != NULL;
        fa4cp_json_free(x);
    }
    if (f)
        fclose(f);
    ok(lines == 50 && parsed == 50, "50 lines, each parses (%d, %d)", lines, parsed);
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
        fa4cp_jv *x = fa4cp_json_parse(line, err, sizeof err);
        if (!x) {
            bad++;
            continue;
        }
        if (!strcmp(fa4cp_json_str(x, "result.status", ""), "OK") && fa4cp_json_num(x, "config.cp.size", 0) >= 1 &&
            fa4cp_json_num(x, "result.fwd_ms", -1) > 0 && fa4cp_json_get(x, "result.per_rank.fwd_ms") &&
            fa4cp_json_get(x, "result.per_rank.fwd_ms")->n == (int)fa4cp_json_num(x, "env.world_size", -1) &&
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
