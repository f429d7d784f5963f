/*
 * Header sets: the request headers as a libcurl list, checked and built
 * once and shared by every request started with them.
 *
 *   transport:headers(array) -> header set
 *     The array of "Name: value" strings as transport:start() takes it,
 *     checked the same way (a CR, LF or NUL raises; the message names the
 *     header's position, never its text: it may be the Authorization header)
 *     and kept as a libcurl list until the set and every request started
 *     with it are gone. Opaque; usable on any transport, with the
 *     User-Agent of the one that made it. Each list also carries the
 *     transport's user_agent (a header of the list costs libcurl less on
 *     every request than CURLOPT_USERAGENT, which it formats anew each
 *     time) and, for requests with a body, "Expect:" (libcurl never sends
 *     100-continue) and, unless the array has one, "Content-Type:" (no
 *     form type of libcurl's own).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "private.h"

void psg_headers_release(psg_headers *h)
{
    if (h != NULL && --h->refs == 0) {
        curl_slist_free_all(h->list);
        curl_slist_free_all(h->bodyless);
        free(h);
    }
}

int psg_has_ctl(const char *s, size_t len)
{
    return memchr(s, '\r', len) != NULL || memchr(s, '\n', len) != NULL ||
           memchr(s, '\0', len) != NULL;
}

/* Validates the array of "Name: value" strings at idx (raising on a bad
 * one) and returns its length; *present gets the PSG_HEADER_* bits of the
 * headers it has. Allocates nothing. */
int psg_headers_check(lua_State *L, int idx, int *present)
{
    int n, i;
    luaL_checktype(L, idx, LUA_TTABLE);
    n = (int)psg_rawlen(L, idx);
    *present = 0;
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
            *present |= PSG_HEADER_CONTENT_TYPE;
        else if (len >= 11 && strncasecmp(h, "user-agent:", 11) == 0)
            *present |= PSG_HEADER_USER_AGENT;
        lua_pop(L, 1);
    }
    return n;
}

/* Appends line to *list; 0 when out of memory (the list is intact). */
static int append(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL)
        return 0;
    *list = l;
    return 1;
}

/* Appends a header line to both of h's lists; 0 when out of memory. */
static int append_both(psg_headers *h, const char *line)
{
    return append(&h->list, line) && append(&h->bodyless, line);
}

/* Appends "User-Agent: ua" to both lists; 0 when out of memory. */
static int append_user_agent(psg_headers *h, const char *ua)
{
    size_t len = strlen(ua);
    char *line = (char *)malloc(len + 13);
    int ok;
    if (line == NULL)
        return 0;
    memcpy(line, "User-Agent: ", 12);
    memcpy(line + 12, ua, len + 1);
    ok = append_both(h, line);
    free(line);
    return ok;
}

/* Builds the libcurl list of the n checked headers at idx (none when idx is
 * 0), with one reference, and the ones the array lacks (`present`). NULL
 * when out of memory. Never raises. */
psg_headers *psg_headers_build(lua_State *L, int idx, int n, int present, const char *user_agent)
{
    psg_headers *h = (psg_headers *)malloc(sizeof *h);
    int i, ok = 1;
    if (h == NULL)
        return NULL;
    h->refs = 1;
    h->list = h->bodyless = NULL;
    for (i = 1; i <= n && ok; i++) {
        lua_rawgeti(L, idx, i);
        ok = append_both(h, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    if (ok && !(present & PSG_HEADER_USER_AGENT) && user_agent != NULL)
        ok = append_user_agent(h, user_agent);
    /* An empty value makes libcurl drop its own header of that name: only
     * a request with a body gets these. */
    ok = ok && append(&h->list, "Expect:");
    if (ok && !(present & PSG_HEADER_CONTENT_TYPE))
        ok = append(&h->list, "Content-Type:");
    if (!ok) {
        psg_headers_release(h);
        return NULL;
    }
    return h;
}

/* transport:headers(list) -> header set, with the transport's user_agent */
int psg_headers_new(lua_State *L, const char *user_agent)
{
    int present, n;
    psg_headers **box;
    n = psg_headers_check(L, 2, &present);
    box = (psg_headers **)lua_newuserdata(L, sizeof *box);
    *box = NULL;
    lua_pushvalue(L, lua_upvalueindex(PSG_UP_HEADERS_MT));
    lua_setmetatable(L, -2);
    if ((*box = psg_headers_build(L, 2, n, present, user_agent)) == NULL)
        return luaL_error(L, "out of memory");
    return 1;
}

static int headers_gc(lua_State *L)
{
    psg_headers **box = (psg_headers **)psg_checkclass(L, 1, PSG_UP_HEADERS_MT, PSG_HEADERS_MT);
    psg_headers_release(*box);
    *box = NULL;
    return 0;
}

static int headers_tostring(lua_State *L)
{
    psg_checkclass(L, 1, PSG_UP_HEADERS_MT, PSG_HEADERS_MT);
    lua_pushliteral(L, "passage.headers");
    return 1;
}

void psg_headers_register(lua_State *L, int classes)
{
    static const luaL_Reg meta[] = {
        {"__gc", headers_gc}, {"__tostring", headers_tostring}, {NULL, NULL}};
    psg_class_fill(L, classes, PSG_UP_HEADERS_MT, PSG_HEADERS_MT, meta, NULL);
}
