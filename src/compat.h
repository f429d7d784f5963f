/*
 * Portability shims between the Lua C APIs of 5.1 (and LuaJIT), 5.3 and 5.4.
 * Every shim carries the psg_ prefix so it never collides with the 5.2-style
 * names that LuaJIT already exports or with another library's compat layer.
 */
#ifndef PSG_COMPAT_H
#define PSG_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM >= 503
#define PSG_HAS_INTEGERS 1
#else
#define PSG_HAS_INTEGERS 0
#endif

#if LUA_VERSION_NUM >= 502
#define psg_rawlen(L, i) lua_rawlen((L), (i))
#define psg_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#else
#define psg_rawlen(L, i) lua_objlen((L), (i))
static inline void psg_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
#endif

/* Creates a fresh table holding the functions of l (luaL_newlib without its
 * version check, which differs between 5.2+ and 5.1). */
static inline void psg_newlib(lua_State *L, const luaL_Reg *l)
{
    int n = 0;
    while (l[n].name != NULL)
        n++;
    lua_createtable(L, 0, n);
    psg_setfuncs(L, l);
}

/* Pushes a whole number: a Lua integer where the VM has them, else a double
 * (exact up to 2^53, which covers every value the API sends). */
static inline void psg_pushwhole(lua_State *L, long long v)
{
#if PSG_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
}

/* luaL_testudata appeared in 5.2; LuaJIT exports it too, but under its own
 * rules, so the project always uses this one. */
static inline void *psg_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}

/* Pushes the field `k` of the table at idx and returns its type, as 5.3's
 * lua_getfield does (5.1 returns nothing). */
static inline int psg_getfield(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    return lua_type(L, -1);
}

/* A userdata with one user value slot. The transport and its requests keep
 * their Lua-side companions (anchor table, cached response) there rather than
 * in the registry, so a cycle between them can still be collected. 5.1 and
 * LuaJIT spell the slot "environment" and require it to be a table. */
#if LUA_VERSION_NUM >= 504
#define psg_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#define psg_setuservalue(L, i) ((void)lua_setiuservalue((L), (i), 1))
#define psg_getuservalue(L, i) ((void)lua_getiuservalue((L), (i), 1))
#elif LUA_VERSION_NUM >= 502
#define psg_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define psg_setuservalue(L, i) lua_setuservalue((L), (i))
#define psg_getuservalue(L, i) ((void)lua_getuservalue((L), (i)))
#else
#define psg_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define psg_setuservalue(L, i) ((void)lua_setfenv((L), (i)))
#define psg_getuservalue(L, i) lua_getfenv((L), (i))
#endif

#endif
