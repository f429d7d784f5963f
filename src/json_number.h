/*
 * JSON numbers: the grammar checked byte by byte, and the value converted
 * without a detour through a Lua string (json_number.c). Kept apart from
 * the decoder, which only calls psg_json_number_scan and pushes the result.
 */
#ifndef PSG_JSON_NUMBER_H
#define PSG_JSON_NUMBER_H

#include <stdint.h>

#include "buffer.h"
#include "compat.h"

typedef struct psg_json_number {
    const char *end; /* one past the number */
    int is_integer;  /* (5.3 and later) a whole number that fits: `integer` holds it */
#if PSG_HAS_INTEGERS
    lua_Integer integer;
#endif
    double value;       /* otherwise */
    const char *failed; /* on failure: where, and what */
    const char *why;
} psg_json_number;

/* Scans the number that starts at p (before end). Returns 1 with *out
 * filled; 0 for malformed input or a magnitude no double holds (out->failed
 * and out->why say where and what); -1 when the scratch buffer of the slow
 * path could not grow. */
int psg_json_number_scan(const char *p, const char *end, psg_buf *scratch, psg_json_number *out);

#endif
