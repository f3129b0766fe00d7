/* testutil.h - random inputs, poisoning and error norms for the tests. */
#ifndef FA4CP_TESTUTIL_H
#define FA4CP_TESTUTIL_H

#include "fa4cp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct test_rng {
    uint64_t s;
} test_rng;

/* Seeded from FA4CP_TEST_SEED or the clock; the seed is printed as a TAP
 * comment so a failure can be replayed. */
test_rng test_rng_init(const char *test_name);
uint64_t test_rng_u64(test_rng *r);
/* uniform in [0, 1) */
double test_rng_unit(test_rng *r);
/* uniform integer in [lo, hi] */
int test_rng_int(test_rng *r, int lo, int hi);
/* standard normal */
double test_rng_normal(test_rng *r);

/* Fill n elements with normal(0, sd) values stored as dtype. */
void test_fill(test_rng *r, fa4cp_dtype dtype, void *x, size_t n, double sd);
/* Poison n elements with NaN (0xFFFF.. pattern for every dtype). */
void test_poison(fa4cp_dtype dtype, void *x, size_t n);
int test_is_poison(fa4cp_dtype dtype, const void *x, size_t i);

/* ||x - ref|| / max(||ref||, tiny) over the elements where mask(i) (NULL = all);
 * returns +inf if any compared x is NaN/Inf while ref is finite. */
double test_rel_err(fa4cp_dtype dtype, const void *x, fa4cp_dtype ref_dtype, const void *ref, size_t n);
/* Number of NaN or Inf values among n elements. */
size_t test_count_nonfinite(fa4cp_dtype dtype, const void *x, size_t n);

/* Tolerance for a relative norm error of results stored in dtype. */
double test_tol(fa4cp_dtype dtype);

#endif
