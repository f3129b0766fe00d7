/* testutil.c - random inputs, poisoning and error norms for the tests. */
#include "testutil.h"
#include "tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

test_rng test_rng_init(const char *name)
{
    test_rng r;
    const char *e = getenv("FA4CP_TEST_SEED");
    if (e && *e)
        r.s = strtoull(e, NULL, 0);
    else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r.s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
    }
    diag("%s: random seed %llu (replay with FA4CP_TEST_SEED=%llu)", name, (unsigned long long)r.s,
         (unsigned long long)r.s);
    return r;
}

uint64_t test_rng_u64(test_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double test_rng_unit(test_rng *r) { return (double)(test_rng_u64(r) >> 11) * 0x1.0p-53; }

int test_rng_int(test_rng *r, int lo, int hi)
{
    return lo + (int)(test_rng_u64(r) % (uint64_t)(hi - lo + 1));
}

double test_rng_normal(test_rng *r)
{
    double u = test_rng_unit(r), v = test_rng_unit(r);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

void test_fill(test_rng *r, fa4cp_dtype dtype, void *x, size_t n, double sd)
{
    for (size_t i = 0; i < n; i++)
        fa4cp_store(dtype, x, i, sd * test_rng_normal(r));
}

void test_poison(fa4cp_dtype dtype, void *x, size_t n) { memset(x, 0xff, n * fa4cp_dtype_size(dtype)); }

int test_is_poison(fa4cp_dtype dtype, const void *x, size_t i)
{
    size_t w = fa4cp_dtype_size(dtype);
    const unsigned char *p = (const unsigned char *)x + i * w;
    for (size_t b = 0; b < w; b++)
        if (p[b] != 0xff)
            return 0;
    return 1;
}

double test_rel_err(fa4cp_dtype dtype, const void *x, fa4cp_dtype ref_dtype, const void *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fa4cp_load(dtype, x, i), b = fa4cp_load(ref_dtype, ref, i);
        if (isinf(a) && isinf(b) && (a > 0) == (b > 0))
            continue; /* both -inf (an lse of a fully masked row) */
        if (!isfinite(a) || !isfinite(b))
            return INFINITY;
        num += (a - b) * (a - b);
        den += b * b;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

size_t test_count_nonfinite(fa4cp_dtype dtype, const void *x, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(fa4cp_load(dtype, x, i)))
            c++;
    return c;
}

double test_tol(fa4cp_dtype dtype)
{
    switch (dtype) {
    case FA4CP_FP64: return 1e-10;
    case FA4CP_FP32: return 1e-5;
    default: return 1e-2;
    }
}
