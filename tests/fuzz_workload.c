/* fuzz_workload.c - libFuzzer target for the workload loader (make fuzz).
 * The input is a workload file; when it contains a NUL byte, what follows the
 * first NUL is read as "key=value" command-line overrides, one per line. */
#include "fa4cp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t ylen = nul ? (size_t)(nul - data) : size;
    fa4cp_override ov[8];
    int nov = 0;
    char *tail = NULL;
    if (nul) {
        size_t tlen = size - ylen - 1;
        tail = malloc(tlen + 1);
        if (!tail)
            return 0;
        memcpy(tail, nul + 1, tlen);
        tail[tlen] = 0;
        for (char *line = tail; line && *line && nov < 8;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            char *eq = strchr(line, '=');
            if (eq) {
                *eq = 0;
                ov[nov].key = line;
                ov[nov].value = eq + 1;
                nov++;
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    fa4cp_workload *w = NULL;
    if (fa4cp_workload_load_buffer("fuzz.yaml", data, ylen, ov, nov, &w) == FA4CP_OK) {
        for (int i = 0; i < fa4cp_workload_count(w); i++) {
            const fa4cp_case *c = fa4cp_workload_get(w, i);
            double f, b;
            fa4cp_case_flops(c, &f, &b);
            (void)fa4cp_case_memory(c, 1);
            (void)fa4cp_case_fit_world(c, 8);
        }
    }
    fa4cp_workload_free(w);
    free(tail);
    return 0;
}
