/* alloc.c -- every allocation goes through the handle's allocator hook. */
#include "mtl_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void *mtli_default_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    void *p = NULL;
    /* posix_memalign needs a multiple of sizeof(void *); MTLI_ALIGN is. */
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    return p;
}

static void mtli_default_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

void mtli_allocator_defaults(mtl_allocator *a)
{
    a->struct_size = sizeof *a;
    a->alloc = mtli_default_alloc;
    a->free = mtli_default_free;
    a->user = NULL;
}

bool mtli_mul_size(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b) return false;
    *out = a * b;
    return true;
}

bool mtli_add_size(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b) return false;
    *out = a + b;
    return true;
}

void *mtli_alloc(const mtli_settings *s, size_t size)
{
    if (size == 0) return NULL;
    /* Round up so vector loops may touch a whole last cache line. */
    size_t rounded;
    if (!mtli_add_size(size, MTLI_ALIGN - 1, &rounded)) return NULL;
    rounded &= ~(size_t)(MTLI_ALIGN - 1);
    return s->allocator.alloc(s->allocator.user, rounded, MTLI_ALIGN);
}

void *mtli_calloc(const mtli_settings *s, size_t count, size_t size)
{
    size_t total;
    if (!mtli_mul_size(count, size, &total)) return NULL;
    void *p = mtli_alloc(s, total);
    if (p) memset(p, 0, total);
    return p;
}

void mtli_free(const mtli_settings *s, void *p)
{
    if (p) s->allocator.free(s->allocator.user, p);
}

char *mtli_strdup(const mtli_settings *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *p = mtli_alloc(s, n);
    if (p) memcpy(p, str, n);
    return p;
}

void *mtli_reserve(const mtli_settings *s, void *array, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return array;
    int64_t grown = *cap > 0 ? *cap : 4;
    while (grown < need) grown *= 2;
    size_t bytes;
    if (!mtli_mul_size((size_t)grown, elem, &bytes)) return NULL;
    char *p = mtli_alloc(s, bytes);
    if (!p) return NULL;
    if (array) memcpy(p, array, (size_t)*cap * elem);
    memset(p + (size_t)*cap * elem, 0, (size_t)(grown - *cap) * elem);
    mtli_free(s, array);
    *cap = grown;
    return p;
}

uint64_t mtli_next_serial(void)
{
    static atomic_uint_fast64_t next = 1;
    return (uint64_t)atomic_fetch_add(&next, 1);
}

void *mtli_carve(mtli_carver *c, size_t count, size_t size)
{
    size_t bytes;
    if (!mtli_mul_size(count, size, &bytes) || !mtli_add_size(bytes, MTLI_ALIGN - 1, &bytes)) {
        c->overflow = true;
        return NULL;
    }
    bytes &= ~(size_t)(MTLI_ALIGN - 1);
    void *p = c->base ? c->base + c->off : NULL;
    if (!mtli_add_size(c->off, bytes, &c->off)) c->overflow = true;
    return p;
}
