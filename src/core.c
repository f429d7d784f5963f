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
 *   core.checker(fields) -> check       fields maps names to "string",
 *                                       "number", "boolean" or "table", with a
 *                                       "?" suffix when the field may be
 *                                       absent; check(v) tells whether v is a
 *                                       table whose fields all have those
 *                                       types (read as v[name]). For response
 *                                       checks: a few C calls instead of one
 *                                       type() call per field.
 *   core.checker(fields, path)          the same, and also usable while
 *                                       decoding: request:result(check) runs
 *                                       it on the values at path (member
 *                                       names, "[]" for array elements) as
 *                                       they are parsed (psg_json_check).
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

/* Upvalue 1 of a checker; upvalues 2.. are the field names, which also
 * anchor the names the decode-time check points to. */
#define CHECKER_MAX 200
#define CHECKER_MT "passage.checker"
typedef struct checker_spec {
    int n;
    signed char type[CHECKER_MAX];
    unsigned char optional[CHECKER_MAX];
    int has_path;
    psg_json_check inline_check;
} checker_spec;

const psg_json_check *psg_checker_inline(lua_State *L, int idx)
{
    const checker_spec *spec = NULL;
    if (lua_type(L, idx) != LUA_TFUNCTION || !lua_iscfunction(L, idx))
        return NULL;
    if (lua_getupvalue(L, idx, 1) != NULL) {
        spec = (const checker_spec *)psg_testudata(L, -1, CHECKER_MT);
        lua_pop(L, 1);
    }
    return spec != NULL && spec->has_path ? &spec->inline_check : NULL;
}

static int checker_call(lua_State *L)
{
    const checker_spec *spec = (const checker_spec *)lua_touserdata(L, lua_upvalueindex(1));
    int i;
    if (lua_type(L, 1) != LUA_TTABLE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_settop(L, 1);
    for (i = 0; i < spec->n; i++) {
        int t;
        int absent;
        lua_pushvalue(L, lua_upvalueindex(i + 2));
        lua_rawget(L, 1);
        t = lua_type(L, 2);
        /* A kept JSON null (keep_null) is as absent as a dropped one. */
        absent = t == LUA_TNIL || (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, 2) == NULL);
        lua_settop(L, 1);
        if (t != spec->type[i] && !(absent && spec->optional[i])) {
            lua_pushboolean(L, 0);
            return 1;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int core_checker(lua_State *L)
{
    static const char *const names[] = {"string",  "number",   "boolean", "table", "string?",
                                        "number?", "boolean?", "table?",  NULL};
    static const int types[] = {LUA_TSTRING, LUA_TNUMBER, LUA_TBOOLEAN, LUA_TTABLE};
    checker_spec *spec;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    spec = (checker_spec *)lua_newuserdata(L, sizeof *spec);
    memset(spec, 0, sizeof *spec);
    luaL_newmetatable(L, CHECKER_MT); /* marks the spec as ours */
    lua_setmetatable(L, -2);
    if (lua_istable(L, 2)) {
        const char *path[16];
        size_t len[16];
        int n = (int)psg_rawlen(L, 2);
        if (n < 1 || n > 16)
            return luaL_error(L, "checker: a path has 1 to 16 steps");
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, 2, i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "checker: path steps must be strings");
            path[i] = lua_tolstring(L, -1, &len[i]);
            lua_pop(L, 1); /* still anchored by the path table */
        }
        spec->inline_check.pos = psg_json_path_pos(path, len, n);
        spec->has_path = 1;
    }
    lua_replace(L, 2); /* the spec takes the path's slot */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int opt;
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "checker: field names must be strings");
        if (spec->n == CHECKER_MAX)
            return luaL_error(L, "checker: more than %d fields", CHECKER_MAX);
        opt = luaL_checkoption(L, -1, NULL, names);
        spec->type[spec->n] = (signed char)types[opt % 4];
        spec->optional[spec->n] = opt >= 4;
        if (spec->n < PSG_JSON_CHECK_MAX) {
            psg_json_check *ck = &spec->inline_check;
            ck->name[spec->n] = lua_tolstring(L, -2, &ck->len[spec->n]);
            ck->type[spec->n] = spec->type[spec->n];
            ck->optional[spec->n] = spec->optional[spec->n];
            ck->n = spec->n + 1;
        } else {
            spec->has_path = 0; /* too many fields to check while decoding */
        }
        spec->n++;
        lua_pop(L, 1);
        luaL_checkstack(L, 2, "checker");
        lua_pushvalue(L, -1); /* the name, an upvalue; the copy goes on with next */
        lua_insert(L, -2);
    }
    lua_pushcclosure(L, checker_call, spec->n + 1);
    return 1;
}

int luaopen_passage_core(lua_State *L);

int luaopen_passage_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"now_ms", core_now_ms},
                                     {"segment", core_segment},
                                     {"checker", core_checker},
                                     {NULL, NULL}};
    psg_newlib(L, funcs);
    lua_pushliteral(L, PSG_VERSION);
    lua_setfield(L, -2, "_VERSION");
    psg_json_register(L);
    psg_transport_register(L);
    return 1;
}
