/* test_workload_bad.c - every file under tests/workloads/bad/ must be refused
 * with the message on its first line ("# expect: LINE:COL: key.path: text"),
 * located in that file. */
#include "fa4cp.h"
#include "tap.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    const char *src = getenv("top_srcdir");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/workloads/bad", src ? src : ".");
    DIR *d = opendir(dir);
    if (!d)
        bail("cannot open %s", dir);
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512)
        if (strstr(e->d_name, ".yaml"))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp);
    plan(n + 1);
    ok(n >= 30, "at least 30 bad workloads (%d)", n);
    for (int i = 0; i < n; i++) {
        char path[8192], expect[1024] = "";
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r");
        if (!f || !fgets(expect, sizeof expect, f) || strncmp(expect, "# expect: ", 10)) {
            ok(0, "%s: first line is '# expect: ...'", names[i]);
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        expect[strcspn(expect, "\n")] = 0;
        fa4cp_workload *w = NULL;
        fa4cp_clear_error();
        fa4cp_status st = fa4cp_workload_load(path, NULL, 0, &w);
        char want[16384];
        /* the message starts with the file; a located expectation follows it */
        if (expect[10] >= '0' && expect[10] <= '9')
            snprintf(want, sizeof want, "%s:%s", path, expect + 10);
        else
            snprintf(want, sizeof want, "%s", expect + 10);
        if (st == FA4CP_OK) {
            ok(0, "%s: refused", names[i]);
            fa4cp_workload_free(w);
        } else {
            int good = st == FA4CP_ERR_INVALID && strstr(fa4cp_last_error(), want) &&
                       !strncmp(fa4cp_last_error(), path, strlen(path));
            ok(good, "%s", names[i]);
            if (!good)
                diag("got:  %s\nwant: %s", fa4cp_last_error(), want);
        }
        free(names[i]);
    }
    return done_testing();
}
