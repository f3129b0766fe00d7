/* hostlist_expand.c - the differential test's side of fa4cp (tests/hostlist_slurm.sh).
 *
 *   hostlist_expand EXPR          the hosts of EXPR, one a line, as
 *                                 `scontrol show hostnames EXPR` prints them;
 *                                 "Invalid hostlist: EXPR" on stderr and exit 1
 *                                 where the expression is refused
 *   hostlist_expand --random N SEED
 *                                 N random hostlist expressions, one a line:
 *                                 mostly well formed (padding, several bracket
 *                                 groups, empty items, duplicates), some not
 */
#include "fa4cp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state;

static unsigned rnd(unsigned n)
{
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return n ? (unsigned)((state >> 33) % n) : 0;
}

static void text(char *b, size_t *o, size_t cap, int digits_ok)
{
    static const char *const words[] = {"n", "node", "gpu-", "a", "rack", "-", "_", "x", "y", "z",
                                        "c.", "b", "dgx", "q"};
    int k = 1 + (int)rnd(2);
    for (int i = 0; i < k && *o + 8 < cap; i++)
        *o += (size_t)snprintf(b + *o, cap - *o, "%s", words[rnd(sizeof words / sizeof *words)]);
    if (digits_ok && rnd(4) == 0 && *o + 4 < cap)
        *o += (size_t)snprintf(b + *o, cap - *o, "%u", rnd(30));
}

static void number(char *b, size_t *o, size_t cap, unsigned v, int pad)
{
    if (*o + 12 < cap)
        *o += (size_t)snprintf(b + *o, cap - *o, "%0*u", pad, v);
}

static void group(char *b, size_t *o, size_t cap)
{
    static const char *const odd[] = {"", "a", "1-", "-2", "1--2", "+3", "x", "1-2-3", "3x4",
                                      "5-3", "07-", " 4", "1 -2", "2-+3", "0-0"};
    int pieces = 1 + (int)rnd(3);
    b[(*o)++] = '[';
    for (int i = 0; i < pieces && *o + 16 < cap; i++) {
        if (i)
            b[(*o)++] = ',';
        if (rnd(14) == 0) {
            *o += (size_t)snprintf(b + *o, cap - *o, "%s", odd[rnd(sizeof odd / sizeof *odd)]);
            continue;
        }
        unsigned lo = rnd(4) ? rnd(12) : rnd(120);
        int pad = rnd(3) ? 0 : 1 + (int)rnd(4);
        number(b, o, cap, lo, pad);
        if (rnd(2)) {
            b[(*o)++] = '-';
            unsigned hi = lo + rnd(rnd(3) ? 4 : 12);
            number(b, o, cap, hi, rnd(4) ? 0 : 1 + (int)rnd(3));
        }
    }
    b[(*o)++] = ']';
    b[*o] = '\0';
}

static void item(char *b, size_t *o, size_t cap)
{
    int groups = (int)rnd(4);
    if (groups == 3 && rnd(2))
        groups = 1;
    text(b, o, cap, groups == 0);
    for (int g = 0; g < groups && *o + 80 < cap; g++) {
        group(b, o, cap);
        if (g + 1 < groups)
            text(b, o, cap, 0);
    }
    unsigned tail = rnd(20);
    if (groups && tail == 0)
        text(b, o, cap, 1); /* text after the last ']' */
    else if (tail == 1 && *o + 8 < cap)
        *o += (size_t)snprintf(b + *o, cap - *o, "[%u-%u", rnd(3), 3 + rnd(3)); /* unclosed */
    else if (tail == 2 && *o + 4 < cap)
        *o += (size_t)snprintf(b + *o, cap - *o, "]"); /* stray */
    b[*o] = '\0';
}

static int random_exprs(int n, unsigned long long seed)
{
    static const char *const seps[] = {",", ",", ",", ",,", " ", ", ", "\t"};
    state = seed;
    for (int i = 0; i < n; i++) {
        char b[512];
        size_t o = 0;
        b[0] = '\0';
        if (rnd(10) == 0)
            b[o++] = ',';
        int items = 1 + (int)rnd(4);
        for (int k = 0; k < items && o + 100 < sizeof b; k++) {
            if (k)
                o += (size_t)snprintf(b + o, sizeof b - o, "%s", seps[rnd(7)]);
            item(b, &o, sizeof b);
        }
        if (rnd(10) == 0 && o + 2 < sizeof b)
            b[o++] = ',';
        b[o] = '\0';
        if (rnd(8) == 0 && o * 2 + 2 < sizeof b) { /* a duplicate of the whole list */
            memmove(b + o + 1, b, o + 1);
            b[o] = ',';
        }
        puts(b);
    }
    return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--random"))
        return random_exprs(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    if (argc != 2) {
        fprintf(stderr, "usage: hostlist_expand EXPR | --random N SEED\n");
        return 2;
    }
    char **h;
    int n;
    if (fa4cp_hostlist_expand(argv[1], &h, &n) != FA4CP_OK) {
        fprintf(stderr, "Invalid hostlist: %s\n# %s\n", argv[1], fa4cp_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++)
        puts(h[i]);
    fa4cp_hostlist_free(h, n);
    return fflush(stdout) ? 3 : 0;
}
