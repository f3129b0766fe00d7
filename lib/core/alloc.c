/* alloc.c - aligned host allocation with errors that say what failed. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *fa4cp_malloc(size_t bytes, const char *what)
{
    void *p = NULL;
    size_t n = bytes ? (bytes + 63) & ~(size_t)63 : 64;
    if (n < bytes || posix_memalign(&p, 64, n) != 0) {
        fa4cp_set_error(FA4CP_ERR_NOMEM, "out of host memory allocating %zu bytes for %s", bytes,
                        what ? what : "a buffer");
        return NULL;
    }
    return p;
}

void *fa4cp_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > SIZE_MAX / size) {
        fa4cp_set_error(FA4CP_ERR_NOMEM, "allocation of %zu x %zu bytes for %s overflows", count,
                        size, what ? what : "a buffer");
        return NULL;
    }
    void *p = fa4cp_malloc(count * size, what);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void fa4cp_free(void *p) { free(p); }
