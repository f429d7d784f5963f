/*
 * luaopen_passage_core: the C half of passage-lua.
 *
 * C does what Lua cannot do well: drive libcurl (transport.c, request.c) and
 * turn response bytes into Lua values (json_decode.c). Everything an API user
 * touches (argument checks, URLs, errors, retries) is Lua, in lua/passage/.
 *
 * Lua-visible contract of this module:
 *   core._VERSION                       the package version (checked by users.lua)
 *   core.now_ms()                       monotonic clock, milliseconds (a number)
 *   core.segment(s) -> seg, nonblank    s as one URL path segment: every byte
 *                                       but A-Z a-z 0-9 - _ ~ percent-encoded
 *                                       (%XX, upper case; s itself when none
 *                                       is), and whether s holds a byte that
 *                                       is not a space (" \t\n\v\f\r");
 *                                       nil, false when s is not a string
 *   core.checker(fields [, path])      response shape checks (json_check.c)
 *   core.null, core.array_mt            the null sentinel and the array metatable
 *   core.decoder(opts)                  a standalone decoder (json_decode.c)
 *   core.transport(opts)                a libcurl multi handle (transport.c)
 */
#include <string.h>
#include <time.h>

#include "compat.h"
#include "json_decode.h"
#include "request.h"
#include "transport.h"

#ifndef PSG_VERSION
#error "PSG_VERSION must be defined by the build (see Makefile and rockspec)"
#endif

static int core_now_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

/* 1: kept as is in a path segment, 0: percent-encoded. */
static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '~';
}

static int core_segment(lua_State *L)
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

int luaopen_passage_core(lua_State *L);

int luaopen_passage_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"now_ms", core_now_ms}, {"segment", core_segment}, {NULL, NULL}};
    psg_newlib(L, funcs);
    lua_pushliteral(L, PSG_VERSION);
    lua_setfield(L, -2, "_VERSION");
    psg_json_register(L);
    psg_transport_register(L);
    return 1;
}
