/*
 * The strict JSON decoder (see json_decode.h for the rules it implements).
 *
 * One recursive-descent pass over the bytes pushes Lua values as it goes:
 * strings without escapes are pushed straight from the source, numbers are
 * converted without a detour through a Lua string, and every table is created
 * with the size that the table at the same position had last time.
 *
 * Malformed input is reported by returning 0 up the recursion (never by
 * longjmp), so the only non-local exit is a Lua memory error, which owns no C
 * memory: scratch space belongs to the caller's psg_buf.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_decode.h"
#include "json_number.h"

#define DECODER_MT "passage.decoder"

/* ---- shape cache -------------------------------------------------------
 * A position is a hash of the path from the root, where every array element
 * shares one step: all 500 users of a page are the same position, and so are
 * their "user_metadata" members. Collisions only cost a badly sized table. */

#define SHAPE_SLOTS 512 /* power of two */
/* A hint larger than this is not trusted: one huge table should not make
 * every later table at the position allocate as much. */
#define SHAPE_MAX_HINT 65536u

/* ---- key memory ----------------------------------------------------------
 * Interning a key (hashing it, walking the string table) is a large share of
 * decoding: a user has twenty keys, a page 500 users of the same twenty. So
 * the shape cache also remembers key strings, one per (position of the
 * object, ordinal of the member) slot, across documents: the next user, on
 * the same page or in the next answer, finds its keys with one byte
 * comparison and one lua_rawgeti. The strings live in the owner's key table
 * (psg_json_push_key_table), which keeps them alive; the cache holds a C copy
 * of each one's pointer and length, replaced together with the table's
 * entry. Only short keys are kept, so a hostile answer pins little. A large
 * document (a page) first copies the table's strings onto the Lua stack,
 * where a lua_pushvalue is cheaper than a lua_rawgeti for its thousands of
 * keys. */
#define KEY_SLOT_BITS 7 /* see parse_key */
#define KEY_SLOTS (1 << KEY_SLOT_BITS)
#define KEY_KEPT_MAX_LEN 64
#define KEYS_ON_STACK_MIN_BYTES 16384

typedef struct key_slot {
    const char *s; /* bytes of the string at [index + 1] of the key table */
    size_t len;
} key_slot;

struct psg_json_shapes {
    uint32_t tag[SHAPE_SLOTS];
    uint32_t size[SHAPE_SLOTS];
    key_slot keys[KEY_SLOTS];
    /* Counts the keys replaced, by any decode: one that a finalizer runs in
     * the middle of another may replace the other's (see sync_keys). */
    uint32_t keys_replaced;
};

psg_json_shapes *psg_json_shapes_new(void)
{
    return (psg_json_shapes *)calloc(1, sizeof(psg_json_shapes));
}

void psg_json_shapes_free(psg_json_shapes *shapes)
{
    free(shapes);
}

/* Slot KEY_SLOTS + 1 of the key table holds the array metatable, found
 * there without a lookup by name. */
#define KEY_TABLE_ARRAY_MT (KEY_SLOTS + 1)

void psg_json_push_key_table(lua_State *L)
{
    /* Every slot is in the array part from the start, so replacing a key
     * never allocates. */
    lua_createtable(L, KEY_TABLE_ARRAY_MT, 0);
    psg_json_push_array_mt(L);
    lua_rawseti(L, -2, KEY_TABLE_ARRAY_MT);
}

static int shape_hint(const psg_json_shapes *shapes, uint32_t pos)
{
    uint32_t slot = pos & (SHAPE_SLOTS - 1);
    if (shapes == NULL || shapes->tag[slot] != pos)
        return 0;
    return (int)shapes->size[slot];
}

static void shape_learn(psg_json_shapes *shapes, uint32_t pos, size_t n)
{
    uint32_t slot = pos & (SHAPE_SLOTS - 1);
    if (shapes == NULL)
        return;
    shapes->tag[slot] = pos;
    shapes->size[slot] = n > SHAPE_MAX_HINT ? SHAPE_MAX_HINT : (uint32_t)n;
}

/* ---- decoder state ----------------------------------------------------- */

typedef struct dec {
    lua_State *L;
    const char *s;   /* start of the document (offsets are relative to it) */
    const char *p;   /* cursor */
    const char *end; /* one past the last byte */
    psg_json_shapes *shapes;
    psg_buf *scratch;
    psg_json_error *err;
    int keep_null;
    int max_depth;
    int depth;
    /* Table slots presizing may still reserve in this document. A document
     * of n bytes holds fewer than n / 2 values, so hints learned from an
     * earlier, bigger document never make a small one allocate more than a
     * document of its size could need. */
    size_t hint_budget;
    int mt_index;   /* absolute stack index of the array metatable */
    int key_table;  /* stack index of the key table; 0: no key memory */
    int kc_base;    /* stack index of the copies of its strings; 0: none */
    key_slot *keys; /* the shape cache's C copies of the table's strings */
    /* The member check (opts->check), if any. */
    const psg_json_check *check;
    uint32_t check_required; /* bit i: field i must be present */
    int check_failed;
    int key_slot_used;                 /* key memory slot of the last key, or -1 */
    signed char slot_field[KEY_SLOTS]; /* check field of a slot's key; -1 none,
                                          -2 not looked up yet */
    uint32_t keys_replaced;            /* the cache's count when the copies and
                                          slot_field were last right */
} dec;

/* The size to create the next table at `pos` with, charged to the budget. */
static int presize(dec *d, uint32_t pos)
{
    size_t n = (size_t)shape_hint(d->shapes, pos);
    if (n > d->hint_budget)
        n = d->hint_budget;
    d->hint_budget -= n;
    return (int)n;
}

static int fail_at(dec *d, const char *where, const char *what)
{
    size_t off = (size_t)(where - d->s);
    d->err->offset = off;
    snprintf(d->err->message, sizeof d->err->message, "%s at byte %lu", what, (unsigned long)off);
    return 0;
}

/* Names the byte that cannot start or continue what is being parsed. */
static int fail_unexpected(dec *d, const char *where)
{
    char what[48];
    unsigned char c;
    if (where >= d->end)
        return fail_at(d, d->end, "unexpected end of input");
    c = (unsigned char)*where;
    if (c > 0x20 && c < 0x7f)
        snprintf(what, sizeof what, "unexpected character '%c'", c);
    else
        snprintf(what, sizeof what, "unexpected byte 0x%02X", c);
    return fail_at(d, where, what);
}

static int fail_memory(dec *d)
{
    /* A real memory failure, not bad input: raise like Lua itself would. */
    return luaL_error(d->L, "not enough memory");
}

/* JSON whitespace is exactly these four bytes. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* ---- strings ------------------------------------------------------------ */

/* Non-zero for bytes that end the fast scan of a string: the closing quote,
 * a backslash, control characters and every byte of a multi-byte sequence. */
static const unsigned char str_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xA0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xB0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xC0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xD0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xE0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xF0 */
};

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SCAN_WORDS 1
#else
#define SCAN_WORDS 0
#endif

/* Returns the first byte in [q, end) that str_stop marks, or end. Eight
 * bytes are tested at a time: a byte is flagged when it is >= 0x80, < 0x20,
 * '"' or '\\'. The subtractions can also flag bytes above a flagged one
 * (borrows), never below, so the lowest flag is always a real stop byte. */
static const unsigned char *scan_plain(const unsigned char *q, const unsigned char *end)
{
#if SCAN_WORDS
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (end - q >= 8) {
        uint64_t x, xq, xb, hit;
        memcpy(&x, q, 8);
        xq = x ^ (ones * '"');
        xb = x ^ (ones * '\\');
        hit = (x | ((x - ones * 0x20) & ~x) | ((xq - ones) & ~xq) | ((xb - ones) & ~xb)) & high;
        if (hit)
            return q + (__builtin_ctzll(hit) >> 3);
        q += 8;
    }
#endif
    while (q < end && !str_stop[*q])
        q++;
    return q;
}

/* Length of the well-formed UTF-8 sequence at q (Unicode table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0 when it is not. */
static size_t utf8_len(const unsigned char *q, const unsigned char *end)
{
    unsigned c = q[0], lo = 0x80, hi = 0xBF;
    size_t avail = (size_t)(end - q);
    if (c < 0xC2)
        return 0; /* stray continuation byte, or C0/C1 (always overlong) */
    if (c < 0xE0)
        return avail >= 2 && (q[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (c == 0xE0)
            lo = 0xA0; /* below is overlong */
        else if (c == 0xED)
            hi = 0x9F; /* above is a surrogate */
        if (avail < 3 || q[1] < lo || q[1] > hi || (q[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            lo = 0x90; /* below is overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above is beyond U+10FFFF */
        if (avail < 4 || q[1] < lo || q[1] > hi || (q[2] & 0xC0) != 0x80 || (q[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static int hex4(const unsigned char *q, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned c = q[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return 0;
    }
    *out = v;
    return 1;
}

static size_t utf8_encode(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The escape at q (a backslash and at least one more byte), as UTF-8 in
 * out[0, *n). Returns the byte after it, or NULL after fail_at(). */
static const unsigned char *unescape(dec *d, const unsigned char *q, const unsigned char *end,
                                     char *out, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *simple = q[1] != '\0' ? strchr(from, q[1]) : NULL;
    unsigned cp, lo;
    const unsigned char *next = q + 6;
    if (simple != NULL) {
        out[0] = to[simple - from];
        *n = 1;
        return q + 2;
    }
    if (q[1] != 'u') {
        fail_at(d, (const char *)q, "invalid escape");
        return NULL;
    }
    if (end - q < 6 || !hex4(q + 2, &cp)) {
        fail_at(d, (const char *)q, "invalid \\u escape");
        return NULL;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail_at(d, (const char *)q, "unpaired surrogate escape");
        return NULL;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - q < 12 || q[6] != '\\' || q[7] != 'u' || !hex4(q + 8, &lo) || lo < 0xDC00 ||
            lo > 0xDFFF) {
            fail_at(d, (const char *)q, "unpaired surrogate escape");
            return NULL;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        next += 6;
    }
    *n = utf8_encode(out, cp);
    return next;
}

/* The string has an escape at q: build its value in the scratch buffer.
 * Unescaped text never grows, and an escape of n source bytes never yields
 * more than n bytes, so reserving the rest of the input is not needed; the
 * buffer grows run by run instead. */
static int string_slow(dec *d, const unsigned char *start, const unsigned char *q,
                       const char *quote)
{
    const unsigned char *end = (const unsigned char *)d->end;
    psg_buf *b = d->scratch;
    b->len = 0;
    if (!psg_buf_append(b, start, (size_t)(q - start)))
        return fail_memory(d);
    for (;;) {
        const unsigned char *run = q;
        unsigned c;
        q = scan_plain(q, end);
        if (q > run && !psg_buf_append(b, run, (size_t)(q - run)))
            return fail_memory(d);
        if (q >= end)
            return fail_at(d, quote, "unterminated string");
        c = *q;
        if (c == '"') {
            lua_pushlstring(d->L, b->data, b->len);
            d->p = (const char *)q + 1;
            return 1;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(q, end);
            if (n == 0)
                return fail_at(d, (const char *)q, "invalid UTF-8");
            if (!psg_buf_append(b, q, n))
                return fail_memory(d);
            q += n;
            continue;
        }
        if (c < 0x20)
            return fail_at(d, (const char *)q, "unescaped control character in string");
        /* a backslash */
        if (end - q < 2)
            return fail_at(d, quote, "unterminated string");
        {
            char out[4];
            size_t n;
            if ((q = unescape(d, q, end, out, &n)) == NULL)
                return 0;
            if (!psg_buf_append(b, out, n))
                return fail_memory(d);
        }
    }
}

/* Pushes the string whose opening quote is at d->p. */
static int parse_string(dec *d)
{
    const char *quote = d->p;
    const unsigned char *start = (const unsigned char *)quote + 1;
    const unsigned char *q = start;
    const unsigned char *end = (const unsigned char *)d->end;
    for (;;) {
        unsigned c;
        q = scan_plain(q, end);
        if (q >= end)
            return fail_at(d, quote, "unterminated string");
        c = *q;
        if (c == '"') {
            lua_pushlstring(d->L, (const char *)start, (size_t)(q - start));
            d->p = (const char *)q + 1;
            return 1;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(q, end);
            if (n == 0)
                return fail_at(d, (const char *)q, "invalid UTF-8");
            q += n;
            continue;
        }
        if (c == '\\')
            return string_slow(d, start, q, quote);
        return fail_at(d, (const char *)q, "unescaped control character in string");
    }
}

/* ---- object keys (see the key memory above) ------------------------- */

/* memcmp(a, b, n) == 0 for the short lengths of keys, without a call. */
static int same_bytes(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t i;
    if (n >= 8) {
        uint64_t x, y;
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return 0;
        }
        if (i == n)
            return 1;
        memcpy(&x, a + n - 8, 8); /* the tail, overlapping what was compared */
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t x, y, u, v;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return x == y && u == v;
    }
    for (i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* Makes the decode's own views of the key memory (its stack copies, the
 * fields of slot_field) right again, after a decode nested in this one
 * replaced keys. */
static void sync_keys(dec *d)
{
    int i;
    memset(d->slot_field, -2, sizeof d->slot_field);
    for (i = 0; d->kc_base != 0 && i < KEY_SLOTS; i++) {
        lua_rawgeti(d->L, d->key_table, i + 1);
        lua_replace(d->L, d->kc_base + i);
    }
    d->keys_replaced = d->shapes->keys_replaced;
}

static int parse_key(dec *d, uint32_t pos, uint32_t ordinal)
{
    const unsigned char *start = (const unsigned char *)d->p + 1;
    const unsigned char *end = (const unsigned char *)d->end;
    const unsigned char *q;
    unsigned slot;
    key_slot *k;
    d->key_slot_used = -1;
    if (d->key_table == 0)
        return parse_string(d);
    if (d->keys_replaced != d->shapes->keys_replaced)
        sync_keys(d);
    /* Fibonacci hashing: the ordinals of one object land far apart */
    slot = ((pos + ordinal) * 0x9E3779B1u) >> (32 - KEY_SLOT_BITS);
    k = &d->keys[slot];
    /* A cached key was pushed from plain source bytes (no escape, control
     * or non-ASCII byte), so the same bytes followed by the closing quote are
     * the whole key, and valid: no scan is needed. */
    if (k->s != NULL && (size_t)(end - start) > k->len && start[k->len] == '"' &&
        same_bytes(start, (const unsigned char *)k->s, k->len)) {
        d->p = (const char *)start + k->len + 1;
        if (d->kc_base != 0)
            lua_pushvalue(d->L, d->kc_base + (int)slot);
        else
            lua_rawgeti(d->L, d->key_table, (int)slot + 1);
        d->key_slot_used = (int)slot;
        return 1;
    }
    q = scan_plain(start, end);
    if (q >= end || *q != '"' || q - start > KEY_KEPT_MAX_LEN)
        return parse_string(d); /* escapes, UTF-8, long or an error: the general path */
    lua_pushlstring(d->L, (const char *)start, (size_t)(q - start));
    lua_pushvalue(d->L, -1);
    lua_rawseti(d->L, d->key_table, (int)slot + 1); /* in the array part: no allocation */
    if (d->kc_base != 0) {
        lua_pushvalue(d->L, -1);
        lua_replace(d->L, d->kc_base + (int)slot);
    }
    k->s = lua_tostring(d->L, -1); /* 5.1's lua_pushlstring returns nothing */
    k->len = (size_t)(q - start);
    d->shapes->keys_replaced++;
    d->keys_replaced++;
    d->slot_field[slot] = -2;
    d->key_slot_used = (int)slot;
    d->p = (const char *)q + 1;
    return 1;
}

/* The bytes of the key parse_key just pushed: its slot's C copy when it
 * came from the key memory (nothing was allocated since, so no nested
 * decode can have replaced it), else from Lua. */
static const char *key_bytes(dec *d, size_t *len)
{
    int slot = d->key_slot_used;
    if (slot >= 0) {
        *len = d->keys[slot].len;
        return d->keys[slot].s;
    }
    return lua_tolstring(d->L, -1, len);
}

/* ---- the member check ----------------------------------------------------
 * Which checked field the key at the top of the stack is (-1: none). A key
 * from the key memory is looked up once per document (parse_key forgets
 * what was looked up when a nested decode replaced keys). */
static int check_field(dec *d, const psg_json_check *ck)
{
    int slot = d->key_slot_used, f;
    size_t klen;
    const char *key;
    if (slot >= 0 && d->slot_field[slot] != -2)
        return d->slot_field[slot];
    key = key_bytes(d, &klen);
    for (f = 0; f < ck->n; f++)
        if (ck->len[f] == klen && memcmp(ck->name[f], key, klen) == 0)
            break;
    if (f == ck->n)
        f = -1;
    if (slot >= 0)
        d->slot_field[slot] = (signed char)f;
    return f;
}

/* The Lua type the JSON value starting with c becomes (LUA_TNIL: null). A
 * byte no value starts with fails the parse anyway. */
static int value_type(char c)
{
    switch (c) {
    case '"':
        return LUA_TSTRING;
    case '{':
    case '[':
        return LUA_TTABLE;
    case 't':
    case 'f':
        return LUA_TBOOLEAN;
    case 'n':
        return LUA_TNIL;
    default:
        return LUA_TNUMBER;
    }
}

/* ---- numbers: json_number.c -------------------------------------------- */

static int parse_number(dec *d)
{
    psg_json_number n;
    int rc = psg_json_number_scan(d->p, d->end, d->scratch, &n);
    if (rc < 0)
        return fail_memory(d);
    if (rc == 0)
        return fail_at(d, n.failed, n.why);
    d->p = n.end;
#if PSG_HAS_INTEGERS
    if (n.is_integer) {
        lua_pushinteger(d->L, n.integer);
        return 1;
    }
#endif
    lua_pushnumber(d->L, (lua_Number)n.value);
    return 1;
}

/* ---- values ------------------------------------------------------------- */

static int parse_value(dec *d, uint32_t pos);

static int literal(dec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) {
        /* point at the first byte that differs */
        const char *q = d->p;
        size_t i = 0;
        while (q < d->end && i < n && *q == word[i]) {
            q++;
            i++;
        }
        return fail_unexpected(d, q);
    }
    d->p += n;
    return 1;
}

static int enter(dec *d, const char *open)
{
    if (d->depth >= d->max_depth) {
        char what[48];
        snprintf(what, sizeof what, "nesting deeper than %d", d->max_depth);
        return fail_at(d, open, what);
    }
    /* table, key and value of this level, plus one for lua_rawget checks */
    if (!lua_checkstack(d->L, 4))
        return fail_at(d, open, "nesting too deep for the Lua stack");
    d->depth++;
    return 1;
}

static int parse_object(dec *d, uint32_t pos)
{
    lua_State *L = d->L;
    size_t count = 0;
    uint32_t ordinal = 0;
    const psg_json_check *ck = d->check != NULL && d->check->pos == pos ? d->check : NULL;
    uint32_t present = 0;
    if (!enter(d, d->p))
        return 0;
    lua_createtable(L, 0, presize(d, pos));
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        goto done;
    }
    for (;;) {
        if (d->p >= d->end || *d->p != '"')
            return fail_unexpected(d, d->p);
        if (!parse_key(d, pos, ordinal++))
            return 0;
        d->p = skip_ws(d->p, d->end);
        if (d->p >= d->end || *d->p != ':')
            return fail_unexpected(d, d->p);
        d->p = skip_ws(d->p + 1, d->end);
        if (ck != NULL && d->p < d->end) {
            int f = check_field(d, ck);
            if (f >= 0) {
                int t = value_type(*d->p);
                if (t == LUA_TNIL)
                    present &= ~(1u << f); /* null: as absent (last one wins) */
                else if (ck->type[f] == PSG_JSON_TARRAY ? *d->p == '[' : t == ck->type[f])
                    present |= 1u << f;
                else
                    d->check_failed = 1;
            }
        }
        if (d->p < d->end && *d->p == 'n' && !d->keep_null) {
            if (!literal(d, "null", 4))
                return 0;
            /* Absent, but a duplicate key must still lose its earlier value
             * (last one wins). Writing nil only when the key is present keeps
             * 5.1/5.3 from adding a dead key to the table. */
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 2);
            } else {
                lua_pop(L, 1);
                lua_pushnil(L);
                lua_rawset(L, -3);
            }
        } else {
            uint32_t child = 0;
            if (d->p < d->end && (*d->p == '{' || *d->p == '[')) {
                size_t klen;
                const char *key = key_bytes(d, &klen);
                child = psg_json_pos_member(pos, key, klen);
            }
            if (!parse_value(d, child))
                return 0;
            lua_rawset(L, -3);
            count++;
        }
        d->p = skip_ws(d->p, d->end);
        if (d->p < d->end && *d->p == ',') {
            d->p = skip_ws(d->p + 1, d->end);
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            break;
        }
        return fail_unexpected(d, d->p);
    }
done:
    if (ck != NULL && (present & d->check_required) != d->check_required)
        d->check_failed = 1;
    shape_learn(d->shapes, pos, count);
    d->depth--;
    return 1;
}

static int parse_array(dec *d, uint32_t pos)
{
    lua_State *L = d->L;
    int n = 0;
    uint32_t child;
    if (!enter(d, d->p))
        return 0;
    lua_createtable(L, presize(d, pos), 0);
    lua_pushvalue(L, d->mt_index);
    lua_setmetatable(L, -2);
    d->p = skip_ws(d->p + 1, d->end);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        goto done;
    }
    child = psg_json_pos_element(pos);
    for (;;) {
        if (!parse_value(d, child))
            return 0;
        if (n == INT32_MAX)
            return fail_at(d, d->p, "array too long");
        lua_rawseti(L, -2, ++n);
        d->p = skip_ws(d->p, d->end);
        if (d->p < d->end && *d->p == ',') {
            d->p = skip_ws(d->p + 1, d->end);
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            break;
        }
        return fail_unexpected(d, d->p);
    }
done:
    shape_learn(d->shapes, pos, (size_t)n);
    d->depth--;
    return 1;
}

/* Pushes the value starting at d->p (whitespace already skipped). */
static int parse_value(dec *d, uint32_t pos)
{
    if (d->p >= d->end)
        return fail_unexpected(d, d->p);
    /* Checked values must be objects: a user list holding a number, or an
     * array where the user should be, does not pass. (Scalar members get
     * position 0 and are left to the caller's type check.) */
    if (d->check != NULL && d->check->pos == pos && *d->p != '{')
        d->check_failed = 1;
    switch (*d->p) {
    case '"':
        return parse_string(d);
    case '{':
        return parse_object(d, pos);
    case '[':
        return parse_array(d, pos);
    case 't':
        if (!literal(d, "true", 4))
            return 0;
        lua_pushboolean(d->L, 1);
        return 1;
    case 'f':
        if (!literal(d, "false", 5))
            return 0;
        lua_pushboolean(d->L, 0);
        return 1;
    case 'n':
        if (!literal(d, "null", 4))
            return 0;
        lua_pushlightuserdata(d->L, NULL);
        return 1;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return parse_number(d);
    default:
        return fail_unexpected(d, d->p);
    }
}

int psg_json_decode(lua_State *L, const char *s, size_t len, const psg_json_opts *opts,
                    psg_json_shapes *shapes, int key_table, psg_buf *scratch, psg_json_error *err)
{
    dec d;
    int base = lua_gettop(L), keys_on_stack;
    int max_depth = opts && opts->max_depth > 0 ? opts->max_depth : PSG_JSON_DEFAULT_MAX_DEPTH;
    if (max_depth > PSG_JSON_MAX_DEPTH_LIMIT)
        max_depth = PSG_JSON_MAX_DEPTH_LIMIT;
    d.L = L;
    d.s = s;
    d.p = s;
    d.end = s + len;
    d.shapes = shapes;
    d.hint_budget = len / 2;
    d.scratch = scratch;
    d.err = err;
    d.keep_null = opts ? opts->keep_null : 0;
    d.max_depth = max_depth;
    d.depth = 0;
    d.key_table = shapes != NULL ? key_table : 0;
    d.keys = shapes != NULL ? shapes->keys : NULL;
    d.keys_replaced = shapes != NULL ? shapes->keys_replaced : 0;
    d.check = opts != NULL && opts->check != NULL && opts->check->n >= 0 &&
                      opts->check->n <= PSG_JSON_CHECK_MAX
                  ? opts->check
                  : NULL;
    d.check_required = 0;
    d.check_failed = 0;
    d.key_slot_used = -1;
    if (d.check != NULL) {
        int i;
        for (i = 0; i < d.check->n; i++)
            if (!d.check->optional[i])
                d.check_required |= 1u << i;
        memset(d.slot_field, -2, sizeof d.slot_field);
    }
    err->offset = 0;
    err->message[0] = '\0';
    err->check_failed = 0;

    keys_on_stack = d.key_table != 0 && len >= KEYS_ON_STACK_MIN_BYTES;
    d.kc_base = 0;
    if (!lua_checkstack(L, keys_on_stack ? KEY_SLOTS + 8 : 8))
        return fail_at(&d, s, "Lua stack exhausted");
    if (d.key_table != 0)
        lua_rawgeti(L, d.key_table, KEY_TABLE_ARRAY_MT);
    else
        psg_json_push_array_mt(L);
    d.mt_index = lua_gettop(L);
    if (keys_on_stack) {
        int i;
        d.kc_base = d.mt_index + 1;
        for (i = 0; i < KEY_SLOTS; i++)
            lua_rawgeti(L, d.key_table, i + 1);
    }

    d.p = skip_ws(d.p, d.end);
    if (d.p == d.end) {
        fail_at(&d, d.p, "empty document");
        snprintf(err->message, sizeof err->message, "empty document");
        goto error;
    }
    if (d.end - d.p >= 3 && memcmp(d.p, "\xEF\xBB\xBF", 3) == 0) {
        fail_at(&d, d.p, "byte order mark not allowed");
        goto error;
    }
    if (!parse_value(&d, PSG_JSON_POS_ROOT))
        goto error;
    d.p = skip_ws(d.p, d.end);
    if (d.p != d.end) {
        fail_at(&d, d.p, "trailing garbage");
        goto error;
    }
    lua_replace(L, d.mt_index); /* the value takes the metatable's slot */
    lua_settop(L, base + 1);
    err->check_failed = d.check_failed;
    return 1;
error:
    lua_settop(L, base);
    return 0;
}

/* ---- Lua binding ---------------------------------------------------------- */

typedef struct decoder_ud {
    psg_json_shapes *shapes; /* NULL once released */
    psg_buf scratch;
    psg_json_opts opts;
    int closed;
    /* A decode is running: it holds shapes and scratch across Lua
     * allocations, where a finalizer may call close(). close() then only
     * marks the decoder; the decode releases it when it ends. __gc cannot
     * run during a decode (the decoder is its argument), so it always
     * releases. */
    int decoding;
} decoder_ud;

/* Scratch space above this is given back after a decode, so one odd
 * document does not pin its size for the decoder's lifetime. */
#define SCRATCH_KEEP (64 * 1024)

static decoder_ud *check_decoder(lua_State *L)
{
    decoder_ud *u = (decoder_ud *)psg_testudata(L, 1, DECODER_MT);
    if (u == NULL)
        luaL_argerror(L, 1, "passage.decoder expected");
    return u;
}

static void decoder_release(decoder_ud *u)
{
    psg_json_shapes_free(u->shapes);
    u->shapes = NULL;
    psg_buf_free(&u->scratch);
    u->closed = 1;
}

/* The decode of decoder:decode, run protected (arguments: the decoder, the
 * string, the check): its results, as decoder:decode returns them. */
static int decode_protected(lua_State *L)
{
    decoder_ud *u = (decoder_ud *)lua_touserdata(L, 1);
    psg_json_error err;
    psg_json_opts opts = u->opts;
    size_t len;
    const char *s = lua_tolstring(L, 2, &len);
    opts.check = psg_json_check_at(L, 3);
    memset(&err, 0, sizeof err);
    psg_getuservalue(L, 1); /* the key table, at 4: a decoder decodes once at a time */
    if (psg_json_decode(L, s, len, &opts, u->shapes, 4, &u->scratch, &err)) {
        if (opts.check == NULL)
            return 1;
        lua_pushboolean(L, !err.check_failed);
        return 2;
    }
    lua_pushnil(L);
    lua_pushstring(L, err.message);
    psg_pushwhole(L, (long long)err.offset);
    return 3;
}

/* decoder:decode(s [, check]). A raise inside the decode (out of memory)
 * goes on up once the decoder is whole again: not decoding, and released if
 * a finalizer closed it meanwhile; else every later decode would refuse.
 * The decode runs as the first upvalue. */
static int decoder_decode(lua_State *L)
{
    decoder_ud *u = check_decoder(L);
    int status;
    if (u->closed)
        return luaL_error(L, "attempt to use a closed passage.decoder");
    if (u->decoding)
        return luaL_error(L, "passage.decoder is already decoding");
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_argerror(L, 2, "string expected");
    lua_settop(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    u->decoding = 1;
    status = lua_pcall(L, 3, LUA_MULTRET, 0);
    u->decoding = 0;
    if (u->closed)
        decoder_release(u);
    else if (u->scratch.cap > SCRATCH_KEEP)
        psg_buf_free(&u->scratch);
    if (status != 0)
        return lua_error(L);
    return lua_gettop(L);
}

static int decoder_close(lua_State *L)
{
    decoder_ud *u = check_decoder(L);
    if (u->decoding)
        u->closed = 1;
    else
        decoder_release(u);
    return 0;
}

static int decoder_gc(lua_State *L)
{
    decoder_release(check_decoder(L));
    return 0;
}

static int decoder_tostring(lua_State *L)
{
    decoder_ud *u = check_decoder(L);
    if (u->closed)
        lua_pushliteral(L, "passage.decoder (closed)");
    else
        lua_pushfstring(L, "passage.decoder (%p)", (void *)u);
    return 1;
}

int psg_json_max_depth_option(lua_State *L, const char *owner)
{
    lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (!(n >= 1 && n <= PSG_JSON_MAX_DEPTH_LIMIT) || n != floor(n))
        return luaL_error(L, "%s option 'max_depth' must be a whole number from 1 to %d", owner,
                          PSG_JSON_MAX_DEPTH_LIMIT);
    return (int)n;
}

/* core.decoder{ keep_null = bool, max_depth = n } */
static int decoder_new(lua_State *L)
{
    psg_json_opts opts;
    decoder_ud *u;
    opts.keep_null = 0;
    opts.max_depth = PSG_JSON_DEFAULT_MAX_DEPTH;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            const char *name;
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "decoder options must have string keys");
            name = lua_tostring(L, -2);
            if (strcmp(name, "keep_null") == 0) {
                if (lua_type(L, -1) != LUA_TBOOLEAN)
                    return luaL_error(L, "decoder option 'keep_null' must be a boolean");
                opts.keep_null = lua_toboolean(L, -1);
            } else if (strcmp(name, "max_depth") == 0) {
                opts.max_depth = psg_json_max_depth_option(L, "decoder");
            } else {
                return luaL_error(L, "unknown decoder option '%s'", name);
            }
            lua_pop(L, 1);
        }
    }
    u = (decoder_ud *)lua_newuserdata(L, sizeof *u);
    memset(u, 0, sizeof *u);
    u->closed = 1; /* until the shape cache exists, __gc has nothing to free */
    u->opts = opts;
    luaL_getmetatable(L, DECODER_MT);
    lua_setmetatable(L, -2);
    psg_json_push_key_table(L);
    psg_setuservalue(L, -2);
    u->shapes = psg_json_shapes_new();
    if (u->shapes == NULL)
        return luaL_error(L, "not enough memory");
    u->closed = 0;
    return 1;
}

void psg_json_register(lua_State *L)
{
    static const luaL_Reg methods[] = {{"close", decoder_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", decoder_gc},
#if LUA_VERSION_NUM >= 504
        {"__close", decoder_close},
#endif
        {"__tostring", decoder_tostring},
        {NULL, NULL}
    };
    if (luaL_newmetatable(L, DECODER_MT)) {
        psg_setfuncs(L, meta);
        psg_newlib(L, methods);
        lua_pushcfunction(L, decode_protected);
        lua_pushcclosure(L, decoder_decode, 1);
        lua_setfield(L, -2, "decode");
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, DECODER_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);

    lua_pushcfunction(L, decoder_new);
    lua_setfield(L, -2, "decoder");
    psg_json_check_register(L);
    psg_json_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
