/*
 * Ids as URL path segments: core.path(base, pieces, max_bytes, id, ...) ->
 * url | nil, i. The URL is base .. pieces[1] .. segment(id 1) .. pieces[2]
 * .. ... .. pieces[n], one id per gap between pieces. In a segment every
 * byte but A-Z a-z 0-9 - _ ~ is percent-encoded (%XX, upper case), so an id
 * such as "../x", "a/b?c" or ".." can never change the path (libcurl
 * removes literal dot segments; %2E it leaves alone). nil and the position
 * of the first id that is not a string of at most max_bytes bytes holding a
 * byte other than " \t\n\v\f\r" (its check in Lua then says what is
 * wrong with it). In C because every call of the client encodes one to
 * three ids: one C call builds its whole URL.
 */
#include <string.h>

#include "private.h"

/* 1 for the bytes kept as they are in a path segment (A-Z a-z 0-9 - _ ~),
 * 0 for those percent-encoded: a table, since every byte of every id is
 * looked up, twice. */
/* clang-format off */
#define ONES_10 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define LETTERS ONES_10, ONES_10, 1, 1, 1, 1, 1, 1 /* 26 */
#define ZEROS_16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
static const unsigned char KEPT[256] = {
    ZEROS_16, ZEROS_16,                             /* 0x00-0x1f */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, /* 0x20-0x2f: '-' */
    ONES_10, 0, 0, 0, 0, 0, 0,                      /* 0x30-0x3f: 0-9 */
    0, LETTERS, 0, 0, 0, 0, 1,                      /* 0x40-0x5f: A-Z '_' */
    0, LETTERS, 0, 0, 0, 1, 0,                      /* 0x60-0x7f: a-z '~' */
    ZEROS_16, ZEROS_16, ZEROS_16, ZEROS_16, ZEROS_16, ZEROS_16, ZEROS_16, ZEROS_16};
/* clang-format on */

/* How many bytes of s are encoded, and whether s is nonblank. */
static size_t scan(const char *s, size_t len, int *nonblank)
{
    size_t i, n_kept = 0;
    *nonblank = 0;
    for (i = 0; i < len; i++)
        n_kept += KEPT[(unsigned char)s[i]];
    if (n_kept > 0) {
        *nonblank = 1; /* a kept byte is never blank */
    } else {
        for (i = 0; i < len && !*nonblank; i++) {
            unsigned char c = (unsigned char)s[i];
            *nonblank = !(c == ' ' || (c >= '\t' && c <= '\r'));
        }
    }
    return len - n_kept;
}

/* Writes s into dst as a path segment (dst has room for len plus two bytes
 * per byte to encode); returns the bytes written. */
static size_t encode_into(char *dst, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, n = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (KEPT[c]) {
            dst[n++] = (char)c;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
        }
    }
    return n;
}

/* Whether the value at idx is a nonblank string of at most max_bytes; adds
 * the bytes it takes encoded to *size. */
static int usable_id(lua_State *L, int idx, size_t max_bytes, size_t *size)
{
    size_t len, n_escaped;
    int nonblank;
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    id = lua_tolstring(L, idx, &len);
    if (len > max_bytes)
        return 0;
    n_escaped = scan(id, len, &nonblank);
    *size += len + 2 * n_escaped;
    return nonblank;
}

/* The URL is written into a buffer on the C stack when it fits (a call's
 * URL is short), else into a userdata, and made a Lua string once. */
#define PATH_STACK_BYTES 2048

int psg_path(lua_State *L)
{
    size_t n_pieces, i, max_bytes, size, len, n;
    char stack[PATH_STACK_BYTES], *out = stack;
    const char *s;
    int first;
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    max_bytes = (size_t)luaL_checknumber(L, 3);
    n_pieces = (size_t)psg_rawlen(L, 2);
    luaL_checkstack(L, (int)n_pieces + 2, "core.path");
    size = (size_t)psg_rawlen(L, 1);
    /* The pieces go above the arguments, kept there while they are copied;
     * an id not given is one the pieces' places must not stand in for. */
    first = lua_gettop(L) + 1;
    for (i = 1; i <= n_pieces; i++) {
        lua_rawgeti(L, 2, (int)i);
        luaL_checktype(L, -1, LUA_TSTRING);
        size += (size_t)psg_rawlen(L, -1);
        if (i < n_pieces && (3 + (int)i >= first || !usable_id(L, 3 + (int)i, max_bytes, &size))) {
            lua_pushnil(L);
            psg_pushwhole(L, (long long)i);
            return 2;
        }
    }
    if (size > PATH_STACK_BYTES)
        out = (char *)lua_newuserdata(L, size);
    s = lua_tolstring(L, 1, &len);
    memcpy(out, s, len);
    n = len;
    for (i = 1; i <= n_pieces; i++) {
        s = lua_tolstring(L, first + (int)i - 1, &len);
        memcpy(out + n, s, len);
        n += len;
        if (i < n_pieces) {
            s = lua_tolstring(L, 3 + (int)i, &len);
            n += encode_into(out + n, s, len);
        }
    }
    lua_pushlstring(L, out, n);
    return 1;
}
