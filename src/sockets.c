/*
 * The sockets of a transport: what libcurl asks to have watched, what a
 * host reactor has been told of, and sockets libcurl has closed that the
 * host may still be watching. C only; transport.c owns the struct and calls
 * in from libcurl's callbacks and from its Lua methods.
 *
 * Why a host is told before a socket is closed: an event loop that keeps
 * its own registration (epoll in cqueues and libuv) must unregister an fd
 * while it is still open, or the kernel answers EBADF and the loop dies;
 * and an fd number closed too early can come back for a new connection
 * before the host heard of the old one's end. So once a host reads
 * socket_changes() (reactor mode), a socket it was told to watch is not
 * closed when libcurl closes it: it is held, reported as "remove", and
 * closed at the host's next call into the transport, after the host had
 * its turn to unregister. A socket the host never heard of is closed at
 * once and never reported. Hosts that drive with perform() and wait()
 * never read changes: every socket closes at once, as libcurl would.
 */
#include <stdlib.h>
#include <unistd.h>

#include "private.h"

/* Index of fd in a socket list, or n when it is not there. */
static size_t find(const psg_sockchange *list, size_t n, curl_socket_t fd)
{
    size_t i;
    for (i = 0; i < n && list[i].fd != fd; i++)
        ;
    return i;
}

/* Room for n entries in a list; 0 when out of memory (list unchanged). */
static int reserve(psg_socklist *l, size_t n)
{
    psg_sockchange *p;
    size_t room;
    if (n <= l->cap)
        return 1;
    room = l->cap ? l->cap * 2 : 8;
    if (room < n)
        room = n;
    p = (psg_sockchange *)realloc(l->at, room * sizeof *p);
    if (p == NULL)
        return 0;
    l->at = p;
    l->cap = room;
    return 1;
}

/* Sets fd's entry to what, adding it when missing; 0 when out of memory. */
static int put(psg_socklist *l, curl_socket_t fd, int what)
{
    size_t i = find(l->at, l->n, fd);
    if (i == l->n) {
        if (!reserve(l, l->n + 1))
            return 0;
        l->n++;
        l->at[i].fd = fd;
    }
    l->at[i].what = what;
    return 1;
}

static void drop(psg_socklist *l, curl_socket_t fd)
{
    size_t i = find(l->at, l->n, fd);
    if (i < l->n)
        l->at[i] = l->at[--l->n];
}

static int has(const psg_socklist *l, curl_socket_t fd)
{
    return find(l->at, l->n, fd) < l->n;
}

static void list_free(psg_socklist *l)
{
    free(l->at);
    l->at = NULL;
    l->n = l->cap = 0;
}

int psg_sockets_reserve(psg_sockets *s, size_t n)
{
    /* Every list can hold every socket: libcurl's callbacks then never
     * allocate, and a held socket can always be recorded. */
    return reserve(&s->watch, n) && reserve(&s->changes, n) && reserve(&s->held, n);
}

void psg_sockets_want(psg_sockets *s, curl_socket_t fd, int what)
{
    /* The host's view: the last state asked for per fd since it last read. */
    if (!put(&s->changes, fd, what))
        s->lost = 1; /* reported by socket_changes() */
    /* The transport's own view: every socket to watch now. */
    if (what == CURL_POLL_REMOVE)
        drop(&s->watch, fd);
    else if (!put(&s->watch, fd, what))
        s->lost = 1; /* reported by the next drive */
}

void psg_sockets_unwatch(psg_sockets *s, curl_socket_t fd)
{
    drop(&s->watch, fd);
}

int psg_sockets_closing(psg_sockets *s, curl_socket_t fd)
{
    if (!s->reactor || !has(&s->told, fd) || !put(&s->held, fd, 0)) {
        /* Never heard of by the host (or no memory to hold it, which the
         * reserve above makes all but impossible): nothing to tell. */
        if (!has(&s->told, fd))
            drop(&s->changes, fd);
        return close(fd);
    }
    /* The host watches it: it hears "remove" first. libcurl's socket
     * callback has normally said so already; an idle connection's socket
     * was removed earlier, and the host may have been told then. */
    if (!put(&s->changes, fd, CURL_POLL_REMOVE))
        s->lost = 1;
    return 0;
}

void psg_sockets_close_reported(psg_sockets *s)
{
    size_t i = 0;
    while (i < s->held.n) {
        if (s->held.at[i].what) {
            (void)close(s->held.at[i].fd);
            s->held.at[i] = s->held.at[--s->held.n];
        } else {
            i++;
        }
    }
}

void psg_sockets_forget_changes(psg_sockets *s)
{
    /* Nobody reads them: keep the list short. A reactor host reads them
     * later, with what happened in between. */
    if (!s->reactor)
        s->changes.n = 0;
}

static const char *events_name(int what)
{
    switch (what) {
    case CURL_POLL_IN:
        return "in";
    case CURL_POLL_OUT:
        return "out";
    case CURL_POLL_INOUT:
        return "inout";
    default:
        return "remove";
    }
}

/* Whether the change is news to the host: a "remove" of a socket it was
 * never told of is not. */
static int reportable(const psg_sockets *s, const psg_sockchange *c)
{
    return c->what != CURL_POLL_REMOVE || has(&s->told, c->fd);
}

int psg_sockets_push_changes(lua_State *L, psg_sockets *s)
{
    size_t i;
    int n = 0;
    s->reactor = 1;
    psg_sockets_close_reported(s);
    if (s->lost) {
        s->lost = 0;
        return luaL_error(L, "out of memory recording socket changes");
    }
    if (!reserve(&s->told, s->told.n + s->changes.n))
        return luaL_error(L, "out of memory recording socket changes");
    lua_createtable(L, (int)s->changes.n, 0);
    /* Each change is copied before the allocations that follow: a finalizer
     * they run may close the transport, which changes the lists. */
    for (i = 0; i < s->changes.n; i++) {
        psg_sockchange c = s->changes.at[i];
        if (!reportable(s, &c))
            continue;
        lua_createtable(L, 0, 2);
        psg_pushwhole(L, (long long)c.fd);
        lua_setfield(L, -2, "fd");
        lua_pushstring(L, events_name(c.what));
        lua_setfield(L, -2, "events");
        lua_rawseti(L, -2, ++n);
    }
    /* The answer exists: only now is the host's view updated (none of this
     * allocates), so a memory error above loses nothing. */
    for (i = 0; i < s->changes.n; i++) {
        psg_sockchange c = s->changes.at[i];
        if (c.what == CURL_POLL_REMOVE)
            drop(&s->told, c.fd);
        else
            (void)put(&s->told, c.fd, c.what); /* room reserved above */
    }
    s->changes.n = 0;
    /* Every held socket has been reported "remove" by now: closed at the
     * host's next call, once it has unregistered it. */
    for (i = 0; i < s->held.n; i++)
        s->held.at[i].what = 1;
    return 1;
}

void psg_sockets_free(psg_sockets *s)
{
    /* The transport is gone: nobody can tell the host any more. */
    for (; s->held.n > 0; s->held.n--)
        (void)close(s->held.at[s->held.n - 1].fd);
    list_free(&s->watch);
    list_free(&s->changes);
    list_free(&s->told);
    list_free(&s->held);
}
