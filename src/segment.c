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

/* Writes s into dst as a path segment (dst has room for three bytes per
 * byte of s); returns the bytes written, and sets *nonblank when s holds a
 * byte other than " \t\n\v\f\r" (a kept byte never is one). */
static size_t encode_into(char *dst, const char *s, size_t len, int *nonblank)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, n = 0;
    int seen = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (KEPT[c]) {
            dst[n++] = (char)c;
            seen = 1;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
            seen |= !(c == ' ' || (c >= '\t' && c <= '\r'));
        }
    }
    *nonblank = seen;
    return n;
}

/* The URL being written: into a buffer on the C stack while it fits (a
 * call's URL is short), then into a userdata that grows; made a Lua string
 * once, at the end. */
#define PATH_STACK_BYTES 2048

typedef struct url_buf {
    char *at;
    size_t len, cap;
} url_buf;

/* Room for n more bytes; a userdata buffer is left on the stack (at most
 * two: the old one is popped). */
static char *room(lua_State *L, url_buf *u, size_t n)
{
    if (u->len + n > u->cap) {
        size_t cap = 2 * (u->len + n);
        char *at = (char *)lua_newuserdata(L, cap);
        int grown_before = u->cap > PATH_STACK_BYTES;
        memcpy(at, u->at, u->len);
        if (grown_before)
            lua_remove(L, -2); /* the old buffer: its bytes were copied */
        u->at = at;
        u->cap = cap;
    }
    return u->at + u->len;
}

static void append(lua_State *L, url_buf *u, const char *s, size_t len)
{
    memcpy(room(L, u, len), s, len);
    u->len += len;
}

int psg_path(lua_State *L)
{
    size_t n_pieces, i, max_bytes, len;
    char stack[PATH_STACK_BYTES];
    url_buf u;
    const char *s;
    int n_args = lua_gettop(L);
    s = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    max_bytes = (size_t)luaL_checknumber(L, 3);
    n_pieces = (size_t)psg_rawlen(L, 2);
    u.at = stack;
    u.len = 0;
    u.cap = sizeof stack;
    append(L, &u, s, len);
    /* Each piece, then the id after it (an id not given is one the pieces'
     * places must not stand in for). A piece stays anchored by the table. */
    for (i = 1; i <= n_pieces; i++) {
        int id = 3 + (int)i, nonblank;
        lua_rawgeti(L, 2, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_checktype(L, -1, LUA_TSTRING); /* raises */
        s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        append(L, &u, s, len);
        if (i == n_pieces)
            break;
        if (id > n_args || lua_type(L, id) != LUA_TSTRING ||
            (s = lua_tolstring(L, id, &len), len > max_bytes)) {
            lua_pushnil(L);
            psg_pushwhole(L, (long long)i);
            return 2;
        }
        u.len += encode_into(room(L, &u, 3 * len), s, len, &nonblank);
        if (!nonblank) {
            lua_pushnil(L);
            psg_pushwhole(L, (long long)i);
            return 2;
        }
    }
    lua_pushlstring(L, u.at, u.len);
    return 1;
}
