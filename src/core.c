/*
 * luaopen_passage_core: the C half of passage-lua.
 *
 * C does what Lua cannot do well: drive libcurl (transport.c, request.c,
 * headers.c) and turn response bytes into Lua values (json_decode.c,
 * json_check.c). Everything an API user touches (argument checks, URLs,
 * errors, retries) is Lua, in lua/passage/. src/private.h tells which file
 * holds what.
 *
 * Lua-visible contract of this module:
 *   core._VERSION                       the package version (checked by users.lua)
 *   core.now_ms()                       monotonic clock, milliseconds (a number)
 *   core.CLOCK_MONOTONIC                the clock_gettime id of that clock
 *   core.path(base, pieces, max, ...)   a call's URL from its ids (segment.c)
 *   core.checker(fields [, path])      response shape checks (json_check.c)
 *   core.null, core.array_mt            the null sentinel and the array metatable
 *   core.decoder(opts)                  a standalone decoder (json_decode.c)
 *   core.transport(opts)                a libcurl multi handle (transport.c)
 */
#include "private.h"

#ifndef PSG_VERSION
#error "PSG_VERSION must be defined by the build (see Makefile and rockspec)"
#endif

static int core_now_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)psg_now_ms());
    return 1;
}

int luaopen_passage_core(lua_State *L);

int luaopen_passage_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"now_ms", core_now_ms}, {"path", psg_path}, {NULL, NULL}};
    psg_newlib(L, funcs);
    lua_pushliteral(L, PSG_VERSION);
    lua_setfield(L, -2, "_VERSION");
    /* libcurl's caps on a response's headers, which the cosocket transport
     * keeps too (passage.cosocket.http1). */
    psg_pushwhole(L, PSG_LIBCURL_HEADERS_MAX);
    lua_setfield(L, -2, "MAX_RESPONSE_HEADER_BYTES");
    psg_pushwhole(L, CURL_MAX_HTTP_HEADER);
    lua_setfield(L, -2, "MAX_RESPONSE_HEADER_LINE_BYTES");
    /* The clock core.now_ms reads, for passage.clock's reading of it
     * through LuaJIT's FFI. */
    psg_pushwhole(L, CLOCK_MONOTONIC);
    lua_setfield(L, -2, "CLOCK_MONOTONIC");
    psg_json_register(L);
    psg_transport_register(L);
    return 1;
}
