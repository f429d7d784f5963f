/*
 * A growable byte buffer in plain C memory. Response bodies and decoder
 * scratch space live here rather than in Lua strings: libcurl can append to
 * it from its callbacks (where no Lua API may be called), and the owner
 * (always a userdata with a __gc) frees it on every path, errors included.
 */
#ifndef PSG_BUFFER_H
#define PSG_BUFFER_H

#include <stdlib.h>
#include <string.h>

typedef struct psg_buf {
    char *data;
    size_t len;
    size_t cap;
} psg_buf;

/* Makes room for `extra` more bytes; returns 0 when out of memory (the
 * buffer is then left as it was). */
static inline int psg_buf_reserve(psg_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (extra <= b->cap - b->len)
        return 1;
    if (extra > (size_t)-1 - b->len)
        return 0;
    need = b->len + extra;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    p = (char *)realloc(b->data, cap);
    if (p == NULL)
        return 0;
    b->data = p;
    b->cap = cap;
    return 1;
}

static inline int psg_buf_append(psg_buf *b, const void *src, size_t n)
{
    if (!psg_buf_reserve(b, n))
        return 0;
    if (n)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 1;
}

static inline void psg_buf_free(psg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
