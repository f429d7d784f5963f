/*
 * core.segment(s) -> seg, nonblank: s as one URL path segment. Every byte
 * but A-Z a-z 0-9 - _ ~ is percent-encoded (%XX, upper case; s itself when
 * none is), so an id such as "../x", "a/b?c" or ".." can never change the
 * path (libcurl removes literal dot segments; %2E it leaves alone).
 * nonblank tells whether s holds a byte that is not a space (" \t\n\v\f\r");
 * nil, false when s is not a string. In C because every call of the client
 * encodes one to three ids.
 */
#include "private.h"

/* 1: kept as is in a path segment, 0: percent-encoded. */
static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '~';
}

int psg_segment(lua_State *L)
{
    size_t len, i, n_escaped = 0;
    const char *s;
    int nonblank = 0;
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushboolean(L, 0);
        return 2;
    }
    s = lua_tolstring(L, 1, &len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!unreserved(c))
            n_escaped++;
        if (!nonblank && !(c == ' ' || (c >= '\t' && c <= '\r')))
            nonblank = 1;
    }
    if (n_escaped == 0) {
        lua_settop(L, 1);
    } else {
        static const char hex[] = "0123456789ABCDEF";
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (unreserved(c)) {
                luaL_addchar(&b, (char)c);
            } else {
                luaL_addchar(&b, '%');
                luaL_addchar(&b, hex[c >> 4]);
                luaL_addchar(&b, hex[c & 15]);
            }
        }
        luaL_pushresult(&b);
    }
    lua_pushboolean(L, nonblank);
    return 2;
}
