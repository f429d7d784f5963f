/*
 * core.checker: response shape checks, in Lua (check(v) on a table) and while
 * decoding (the decoder runs the same check on the objects at a path as it
 * parses them; see psg_json_check in json_decode.h).
 *
 *   core.checker(fields) -> check       fields maps names to "string",
 *                                       "number", "boolean", "table" or
 *                                       "array" (a decoded JSON array: a
 *                                       table with core.array_mt), with a
 *                                       "?" suffix when the field may be
 *                                       absent; check(v) tells whether v is a
 *                                       table whose fields all have those
 *                                       types (read as v[name]). A few C calls
 *                                       instead of one type() call per field.
 *   core.checker(fields, path)          the same, and also usable while
 *                                       decoding: decoders run it on the values
 *                                       at path (member names, "[]" for array
 *                                       elements) as they are parsed.
 */
#include <string.h>

#include "json_decode.h"

/* Upvalue 1 of a checker; upvalues 2.. are the field names, which also
 * anchor the names the decode-time check points to. */
#define CHECKER_MAX 200
typedef struct checker_spec {
    int n;
    signed char type[CHECKER_MAX];
    unsigned char optional[CHECKER_MAX];
    int has_path;
    psg_json_check inline_check;
} checker_spec;

uint32_t psg_json_path_pos(const char *const *path, const size_t *len, int n)
{
    uint32_t pos = PSG_JSON_POS_ROOT;
    int i;
    for (i = 0; i < n; i++)
        pos = len[i] == 2 && memcmp(path[i], "[]", 2) == 0
                  ? psg_json_pos_element(pos)
                  : psg_json_pos_member(pos, path[i], len[i]);
    return pos;
}

static int checker_call(lua_State *L);

/* A checker is told by its C function: only checker_new makes closures of
 * checker_call, always with the spec as their first upvalue. */
const psg_json_check *psg_json_check_at(lua_State *L, int idx)
{
    const checker_spec *spec;
    if (lua_tocfunction(L, idx) != checker_call)
        return NULL;
    lua_getupvalue(L, idx, 1);
    spec = (const checker_spec *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return spec->has_path ? &spec->inline_check : NULL;
}

/* Whether the table at idx is an array the decoder made. */
static int is_array(lua_State *L, int idx)
{
    int same;
    if (!lua_getmetatable(L, idx))
        return 0;
    psg_json_push_array_mt(L);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
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
        if (spec->type[i] == PSG_JSON_TARRAY && t == LUA_TTABLE && is_array(L, 2))
            t = PSG_JSON_TARRAY;
        lua_settop(L, 1);
        if (t != spec->type[i] && !(absent && spec->optional[i])) {
            lua_pushboolean(L, 0);
            return 1;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int checker_new(lua_State *L)
{
    static const char *const names[] = {"string", "number",  "boolean", "table",
                                        "array",  "string?", "number?", "boolean?",
                                        "table?", "array?",  NULL};
    static const int types[] = {LUA_TSTRING, LUA_TNUMBER, LUA_TBOOLEAN, LUA_TTABLE,
                                PSG_JSON_TARRAY};
    checker_spec *spec;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    spec = (checker_spec *)lua_newuserdata(L, sizeof *spec);
    memset(spec, 0, sizeof *spec);
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
        spec->type[spec->n] = (signed char)types[opt % 5];
        spec->optional[spec->n] = opt >= 5;
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

void psg_json_check_register(lua_State *L)
{
    lua_pushcfunction(L, checker_new);
    lua_setfield(L, -2, "checker");
}
