/*
 * The strict JSON decoder: builds Lua values straight from a byte range (the
 * libcurl receive buffer), with no Lua string of the whole document.
 *
 * Rules (RFC 8259, strict):
 *   - objects -> tables; arrays -> tables 1..n carrying the shared array
 *     metatable (so an empty array can be told from an empty object);
 *   - integers -> Lua integers on 5.3+ when they fit, else doubles; other
 *     numbers -> correctly rounded doubles, independent of the C locale
 *     ("-0" is the float -0.0, so its sign survives; a number beyond the
 *     double range is an error, underflow gives 0); on 5.1/LuaJIT every
 *     number is a double;
 *   - strings: every escape, \u surrogate pairs to UTF-8; invalid UTF-8 and
 *     unpaired surrogates are errors;
 *   - null inside an object leaves the key absent, unless keep_null is set,
 *     in which case it is the null sentinel (lightuserdata NULL, the same
 *     value as cjson.null); null in an array or at top level is always the
 *     sentinel (an array keeps its length);
 *   - nesting deeper than max_depth is an error;
 *   - duplicate keys: the last one wins (a later null removes the key);
 *   - a leading byte order mark, trailing garbage and an empty document are
 *     errors; surrounding whitespace is not.
 * Tables are presized from what earlier tables at the same position held
 * (the shape cache), so a page of alike users costs about one allocation
 * per table, and object keys seen earlier in the same document are reused
 * rather than interned again.
 */
#ifndef PSG_JSON_DECODE_H
#define PSG_JSON_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "compat.h"

#define PSG_JSON_DEFAULT_MAX_DEPTH 128
/* The decoder recurses once per nesting level, so max_depth is capped to keep
 * the C stack small whatever a caller asks for. */
#define PSG_JSON_MAX_DEPTH_LIMIT 4096

typedef struct psg_json_shapes psg_json_shapes;

/* Member types checked while decoding, for the objects at one position
 * (see psg_json_path_pos): each named member, when present and not null,
 * must have the JSON type that becomes the Lua type `type[i]`; a required
 * one must be present and not null; anything at that position must be an
 * object. It only ever answers "all passed" or "look closer": duplicate
 * keys, or a hash collision with another position, can make it fail objects
 * a check of the final tables would pass, never the other way round. */
#define PSG_JSON_CHECK_MAX 32
/* A checked field's type "array": a table the decoder made from a JSON
 * array (metatable array_mt), where "table" takes an object too. */
#define PSG_JSON_TARRAY 64

typedef struct psg_json_check {
    uint32_t pos;
    int n;
    const char *name[PSG_JSON_CHECK_MAX]; /* anchored by the check's owner */
    size_t len[PSG_JSON_CHECK_MAX];
    signed char type[PSG_JSON_CHECK_MAX]; /* LUA_TSTRING, LUA_TNUMBER, ..., PSG_JSON_TARRAY */
    unsigned char optional[PSG_JSON_CHECK_MAX];
} psg_json_check;

/* Positions in a document, shared by the decoder (as it parses) and the
 * checks (for the paths they are given): a hash of the path from the root,
 * never 0 (0 marks an empty slot of the shape cache). */
#define PSG_JSON_POS_ROOT 0x2545F491u

static inline uint32_t psg_json_pos_mix(uint32_t h)
{
    /* murmur3 finaliser: spreads nearby inputs over every slot */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h | 1u;
}

static inline uint32_t psg_json_pos_element(uint32_t parent)
{
    return psg_json_pos_mix(parent * 31u + 0x9E3779B9u);
}

static inline uint32_t psg_json_pos_member(uint32_t parent, const char *key, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a over the key */
    size_t i;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return psg_json_pos_mix(h ^ (parent * 0x01000193u));
}

/* The position of the values at `path` from the root: member names, and
 * "[]" for the elements of an array (json_check.c). */
uint32_t psg_json_path_pos(const char *const *path, const size_t *len, int n);

typedef struct psg_json_opts {
    int keep_null;               /* non-zero: null object members become the sentinel */
    int max_depth;               /* 0 means PSG_JSON_DEFAULT_MAX_DEPTH; capped at
                                    PSG_JSON_MAX_DEPTH_LIMIT */
    const psg_json_check *check; /* NULL: none */
} psg_json_opts;

typedef struct psg_json_error {
    size_t offset;     /* 0-based byte offset of the offending byte (of the
                          opening quote for an unterminated string; the
                          length for "empty document") */
    char message[160]; /* "unexpected character 'x' at byte 12" style text */
    int check_failed;  /* after a successful decode with opts->check: some
                          value at the checked position did not pass */
} psg_json_error;

/* The shape cache: plain C memory, owned by whoever decodes repeatedly (a
 * transport or a decoder userdata). NULL is allowed everywhere: no learning. */
psg_json_shapes *psg_json_shapes_new(void);
void psg_json_shapes_free(psg_json_shapes *shapes);

/* The key memory of a shape cache (json_decode.c) keeps its strings in a
 * Lua table of the owner's, made by psg_json_push_key_table and kept as long
 * as the cache: one table per cache, never another. Decodes may nest (a
 * finalizer decoding in the middle of a decode). */
void psg_json_push_key_table(lua_State *L);

/*
 * Decodes s[0..len). On success pushes exactly one value and returns 1. On
 * malformed input pushes nothing, fills *err and returns 0. It may raise a
 * Lua memory error; all scratch memory lives in *scratch (owned by a
 * userdata), so nothing leaks when it does. The array metatable is taken
 * from the key table, or without one from the registry
 * (psg_json_push_array_mt). It grows the Lua stack itself (8 slots, 128
 * more for the keys of a document of 16 KB or more, plus 4 per nesting
 * level); when that fails it is a decode error like any other. key_table: the absolute stack index
 * of the shape cache's key table, or 0 to decode without the key memory.
 */
int psg_json_decode(lua_State *L, const char *s, size_t len, const psg_json_opts *opts,
                    psg_json_shapes *shapes, int key_table, psg_buf *scratch, psg_json_error *err);

/* Pushes the shared array metatable (created on first use, kept in the
 * registry). */
static inline void psg_json_push_array_mt(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "passage.json.array_mt");
    if (lua_istable(L, -1))
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "passage.json.array_mt");
}

/* The decode-time check of a core.checker(fields, path) closure at idx, or
 * NULL for anything else (json_check.c). */
const psg_json_check *psg_json_check_at(lua_State *L, int idx);

/* The max_depth option at the top of the stack, checked (a whole number
 * from 1 to PSG_JSON_MAX_DEPTH_LIMIT; else raises, naming `owner`'s option):
 * the one rule for core.decoder and core.transport. */
int psg_json_max_depth_option(lua_State *L, const char *owner);
/* Sets core.checker on the table at the top of the stack. */
void psg_json_check_register(lua_State *L);

/* Registers the Lua-visible decoder on the table at the top of the stack:
 *   core.decoder{ keep_null = bool, max_depth = n } -> decoder userdata
 *       (n from 1 to PSG_JSON_MAX_DEPTH_LIMIT; other names or types raise)
 *   decoder:decode(str [, check]) -> value [, checked] | nil, message, offset
 *       (0-based, as in the message); check is a core.checker(fields, path)
 *       run while decoding: checked (returned only with a check) is true when
 *       every value at its path passed; calls on a closed decoder raise;
 *       a raise inside the decode (out of memory) goes on up and leaves the
 *       decoder usable
 *   core.checker (json_check.c)
 *   decoder:close() / __gc / __close
 *   core.array_mt  (the shared array metatable)
 *   core.null      (the null sentinel) */
void psg_json_register(lua_State *L);

#endif
