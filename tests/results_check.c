/* results_check.c - a results.jsonl through the results reader, for the
 * shell tests (not a test itself): one line per record,
 *     record LINE STATUS FILE DOC CASE KEY
 * (KEY: the record's config, so that duplicates show), the skipped lines on
 * stderr, and a last line "counts RECORDS TORN NOT_JSON UNREADABLE".  Exit
 * 0 when every line was a record, 1 otherwise, 2 when unreadable. */
#include "fa4cp.h"
#include "run/results.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tell(void *ctx, const char *path, long line, const char *why)
{
    (void)ctx;
    fprintf(stderr, "results_check: %s:%ld: %s\n", path, line, why);
}

int main(int argc, char **argv)
{
    fa4cp_results_reader *r = NULL;
    if (argc != 2 || fa4cp_results_open(argv[1], tell, NULL, &r)) {
        fprintf(stderr, "usage: results_check FILE|DIR (%s)\n", fa4cp_last_error());
        return 2;
    }
    json_t *v;
    long line;
    while (fa4cp_results_next(r, &v, &line) == FA4CP_OK && v) {
        char *key = json_dumps(fa4cp_json_get(v, "config"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("record %ld %s %s %d %d %s\n", line, fa4cp_json_str(v, "result.status", "?"),
               fa4cp_json_str(v, "file", "?"), (int)fa4cp_json_num(v, "doc", -1), (int)fa4cp_json_num(v, "case", -1),
               key ? key : "?");
        free(key);
        fa4cp_json_free(v);
    }
    const fa4cp_results_counts *c = fa4cp_results_counted(r);
    printf("counts %ld %ld %ld %ld\n", c->records, c->torn, c->not_json, c->unreadable);
    int rc = c->unreadable ? 2 : (c->torn || c->not_json) ? 1 : 0;
    fa4cp_results_close(r);
    return rc;
}
