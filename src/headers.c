/*
 * Header sets: the request headers as a libcurl list, checked and built
 * once and shared by every request started with them.
 *
 *   transport:headers(array) -> header set
 *     The array of "Name: value" strings as transport:start() takes it,
 *     checked the same way (a CR, LF or NUL raises; the message names the
 *     header's position, never its text: it may be the Authorization header)
 *     and kept as a libcurl list until the set and every request started
 *     with it are gone. Opaque; usable on any transport. Each list also
 *     carries "Expect:" (libcurl never sends 100-continue) and, unless the
 *     array has one, "Content-Type:" (no form type of libcurl's own).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "private.h"

void psg_headers_release(psg_headers *h)
{
    if (h != NULL && --h->refs == 0) {
        curl_slist_free_all(h->list);
        free(h);
    }
}

int psg_has_ctl(const char *s, size_t len)
{
    return memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL ||
           memchr(s, '\0', len) != NULL;
}

/* Validates the array of "Name: value" strings at idx (raising on a bad
 * one) and returns its length; *has_content_type tells whether one of them
 * is a Content-Type. Allocates nothing. */
int psg_headers_check(lua_State *L, int idx, int *has_content_type)
{
    int n, i;
    luaL_checktype(L, idx, LUA_TTABLE);
    n = (int)psg_rawlen(L, idx);
    *has_content_type = 0;
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *h;
        lua_rawgeti(L, idx, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "header %d is not a string", i);
        h = lua_tolstring(L, -1, &len);
        /* The message never quotes the header: it may carry a secret. */
        if (psg_has_ctl(h, len))
            return luaL_error(L, "header %d contains CR, LF or NUL", i);
        if (len >= 13 && strncasecmp(h, "content-type:", 13) == 0)
            *has_content_type = 1;
        lua_pop(L, 1);
    }
    return n;
}

/* Builds the libcurl list of the n checked headers at idx (none when idx is
 * 0), with one reference. NULL when out of memory. Never raises. */
psg_headers *psg_headers_build(lua_State *L, int idx, int n, int has_content_type)
{
    psg_headers *h = (psg_headers *)malloc(sizeof *h);
    struct curl_slist *l = NULL;
    int i, ok = 1;
    if (h == NULL)
        return NULL;
    h->refs = 1;
    h->list = NULL;
    for (i = 1; i <= n && ok; i++) {
        lua_rawgeti(L, idx, i);
        l = curl_slist_append(h->list, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (l == NULL)
            ok = 0;
        else
            h->list = l;
    }
    /* An empty value makes libcurl drop its own header of that name. */
    if (ok && (l = curl_slist_append(h->list, "Expect:")) != NULL)
        h->list = l;
    else
        ok = 0;
    if (ok && !has_content_type) {
        if ((l = curl_slist_append(h->list, "Content-Type:")) != NULL)
            h->list = l;
        else
            ok = 0;
    }
    if (!ok) {
        psg_headers_release(h);
        return NULL;
    }
    return h;
}

/* transport:headers(list) -> header set */
int psg_headers_new(lua_State *L)
{
    int has_content_type, n;
    psg_headers **box;
    n = psg_headers_check(L, 2, &has_content_type);
    box = (psg_headers **)lua_newuserdata(L, sizeof *box);
    *box = NULL;
    luaL_getmetatable(L, PSG_HEADERS_MT);
    lua_setmetatable(L, -2);
    if ((*box = psg_headers_build(L, 2, n, has_content_type)) == NULL)
        return luaL_error(L, "out of memory");
    return 1;
}

static int headers_gc(lua_State *L)
{
    psg_headers **box = (psg_headers **)luaL_checkudata(L, 1, PSG_HEADERS_MT);
    psg_headers_release(*box);
    *box = NULL;
    return 0;
}

static int headers_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, PSG_HEADERS_MT);
    lua_pushliteral(L, "passage.headers");
    return 1;
}

void psg_headers_register(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", headers_gc}, {"__tostring", headers_tostring}, {NULL, NULL}};
    psg_newclass(L, PSG_HEADERS_MT, meta, NULL);
}
