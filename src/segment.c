/*
 * Ids as URL path segments. In C because every call of the client encodes
 * one to three ids, and one C call builds its whole URL.
 *
 * core.segment(s) -> seg, nonblank: s as one URL path segment. Every byte
 * but A-Z a-z 0-9 - _ ~ is percent-encoded (%XX, upper case; s itself when
 * none is), so an id such as "../x", "a/b?c" or ".." can never change the
 * path (libcurl removes literal dot segments; %2E it leaves alone).
 * nonblank tells whether s holds a byte that is not a space (" \t\n\v\f\r");
 * nil, false when s is not a string.
 *
 * core.path(base, pieces, max_bytes, id, ...) -> url | nil, i: base ..
 * pieces[1] .. segment(id 1) .. pieces[2] .. ... .. pieces[n], with one id
 * per gap between pieces; nil and the position of the first id that is not
 * a nonblank string of at most max_bytes bytes (whose check in Lua then
 * says what is wrong with it).
 */
#include "private.h"

/* 1: kept as is in a path segment, 0: percent-encoded. */
static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '~';
}

/* How many bytes of s are encoded, and whether s is nonblank. */
static size_t scan(const char *s, size_t len, int *nonblank)
{
    size_t i, n_escaped = 0;
    *nonblank = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!unreserved(c))
            n_escaped++;
        if (!*nonblank && !(c == ' ' || (c >= '\t' && c <= '\r')))
            *nonblank = 1;
    }
    return n_escaped;
}

static void add_encoded(luaL_Buffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            luaL_addchar(b, (char)c);
        } else {
            luaL_addchar(b, '%');
            luaL_addchar(b, hex[c >> 4]);
            luaL_addchar(b, hex[c & 15]);
        }
    }
}

int psg_segment(lua_State *L)
{
    size_t len;
    const char *s;
    int nonblank;
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushboolean(L, 0);
        return 2;
    }
    s = lua_tolstring(L, 1, &len);
    if (scan(s, len, &nonblank) == 0) {
        lua_settop(L, 1);
    } else {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        add_encoded(&b, s, len);
        luaL_pushresult(&b);
    }
    lua_pushboolean(L, nonblank);
    return 2;
}

/* Whether the value at idx is a nonblank string of at most max_bytes. */
static int usable_id(lua_State *L, int idx, size_t max_bytes)
{
    size_t len;
    int nonblank;
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    id = lua_tolstring(L, idx, &len);
    if (len > max_bytes)
        return 0;
    scan(id, len, &nonblank);
    return nonblank;
}

int psg_path(lua_State *L)
{
    size_t n_pieces, i, max_bytes;
    luaL_Buffer b;
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    max_bytes = (size_t)luaL_checknumber(L, 3);
    n_pieces = (size_t)psg_rawlen(L, 2);
    for (i = 1; i < n_pieces; i++) {
        if (!usable_id(L, 3 + (int)i, max_bytes)) {
            lua_pushnil(L);
            psg_pushwhole(L, (long long)i);
            return 2;
        }
    }
    luaL_buffinit(L, &b);
    lua_pushvalue(L, 1);
    luaL_addvalue(&b);
    for (i = 1; i <= n_pieces; i++) {
        lua_rawgeti(L, 2, (int)i);
        luaL_addvalue(&b);
        if (i < n_pieces) {
            size_t len;
            const char *id = lua_tolstring(L, 3 + (int)i, &len);
            add_encoded(&b, id, len);
        }
    }
    luaL_pushresult(&b);
    return 1;
}
