/*
 * The sockets of a transport: what libcurl asks to have watched, and what a
 * host reactor has been told. C only; transport.c owns the struct and calls
 * in from libcurl's callbacks and from its Lua methods.
 *
 * A host reactor never sees libcurl's own descriptors. The first time a
 * socket is reported to it (socket_changes()), the transport gives the
 * host a duplicate of it (dup(): the same socket, the same readiness), and
 * socket_action() translates back. Why: an event loop that keeps its own
 * registration (epoll in cqueues and libuv) must unregister a descriptor
 * while it is still open, or the kernel answers EBADF and the loop dies;
 * yet libcurl closes sockets before it says "remove" (libcurl 7.88 to 8.2
 * even close a socket cancelled while connecting without calling any
 * close-socket callback), and a closed number can come back for a new
 * connection before the host heard of the old one's end. The duplicate
 * lives on its own clock instead: it is reported "remove" once libcurl is
 * done with the socket, and closed at the host's next call into the
 * transport, after the host had its turn to unregister it. A number libcurl
 * opens again while the host still holds the old duplicate (seen in the
 * open-socket callback) gets a fresh duplicate, the old one a "remove".
 *
 * Hosts that drive with perform() and wait() never read changes: they get
 * no duplicates, and the changes are dropped after every turn.
 */
#define _GNU_SOURCE /* F_DUPFD_CLOEXEC, SOCK_CLOEXEC */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "private.h"

/* Index of the entry with `fd` (host: the host's descriptor) in a list, or
 * l->n when there is none. */
static size_t find(const psg_socklist *l, curl_socket_t fd)
{
    size_t i;
    for (i = 0; i < l->n && l->at[i].fd != fd; i++)
        ;
    return i;
}

static size_t find_host(const psg_socklist *l, int host)
{
    size_t i;
    for (i = 0; i < l->n && l->at[i].host != host; i++)
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

/* Sets fd's state, adding an entry when missing; 0 when out of memory. */
static int put(psg_socklist *l, curl_socket_t fd, int what)
{
    size_t i = find(l, fd);
    if (i == l->n) {
        if (!reserve(l, l->n + 1))
            return 0;
        l->n++;
        l->at[i].fd = fd;
        l->at[i].host = -1;
        l->at[i].owned = 0;
    }
    l->at[i].what = what;
    return 1;
}

static void drop_at(psg_socklist *l, size_t i)
{
    l->at[i] = l->at[--l->n];
}

static void list_free(psg_socklist *l)
{
    free(l->at);
    l->at = NULL;
    l->n = l->cap = 0;
}

int psg_sockets_reserve(psg_sockets *s, size_t n)
{
    /* libcurl's callbacks then never allocate. */
    return reserve(&s->watch, n) && reserve(&s->changes, n);
}

void psg_sockets_want(psg_sockets *s, curl_socket_t fd, int what)
{
    size_t i;
    /* The host's view: the last state asked for per fd since it last read. */
    if (!put(&s->changes, fd, what))
        s->lost = 1; /* reported by socket_changes() */
    /* The transport's own view: every socket to watch now. */
    i = find(&s->watch, fd);
    if (what == CURL_POLL_REMOVE) {
        if (i < s->watch.n)
            drop_at(&s->watch, i);
    } else if (!put(&s->watch, fd, what)) {
        s->lost = 1; /* reported by the next drive */
    }
}

void psg_sockets_unwatch(psg_sockets *s, curl_socket_t fd)
{
    size_t i = find(&s->watch, fd);
    if (i < s->watch.n)
        drop_at(&s->watch, i);
}

/* The host is done with the duplicate of map entry i: it is reported
 * "remove" at the next socket_changes() and closed at the call after. */
static void retire(psg_sockets *s, size_t i)
{
    psg_sockchange dup = s->hosted.at[i];
    drop_at(&s->hosted, i);
    dup.what = 0; /* not reported yet */
    if (!reserve(&s->retired, s->retired.n + 1)) {
        if (dup.owned)
            (void)close(dup.host); /* no memory to wait: the host may see EBADF */
        return;
    }
    s->retired.at[s->retired.n++] = dup;
}

curl_socket_t psg_sockets_open(psg_sockets *s, int family, int type, int protocol)
{
    curl_socket_t fd = socket(family, type | SOCK_CLOEXEC, protocol);
    size_t i;
    if (fd == CURL_SOCKET_BAD)
        return fd;
    /* A number the host still knows as an older socket: that one ended. */
    i = find(&s->hosted, fd);
    if (i < s->hosted.n)
        retire(s, i);
    return fd;
}

void psg_sockets_close_reported(psg_sockets *s)
{
    size_t i = 0;
    while (i < s->retired.n) {
        if (s->retired.at[i].what) {
            if (s->retired.at[i].owned)
                (void)close(s->retired.at[i].host);
            drop_at(&s->retired, i);
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

void psg_sockets_all_closed(psg_sockets *s)
{
    /* The transport closed: every socket the host holds has ended. */
    while (s->hosted.n > 0)
        retire(s, s->hosted.n - 1);
    s->changes.n = 0;
    s->watch.n = 0;
}

/* Gives the host a duplicate of libcurl's fd, recorded in `hosted`; 0 when
 * out of memory. When no descriptor is left to duplicate into, the host
 * gets libcurl's own (and the guarantees above are lost for it). */
static int host(psg_sockets *s, curl_socket_t fd)
{
    int dup;
    if (!reserve(&s->hosted, s->hosted.n + 1))
        return 0;
    dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    s->hosted.at[s->hosted.n].fd = fd;
    s->hosted.at[s->hosted.n].host = dup >= 0 ? dup : fd;
    s->hosted.at[s->hosted.n].what = 0;
    s->hosted.at[s->hosted.n].owned = dup >= 0;
    s->hosted.n++;
    return 1;
}

/* Settles the changes into the host's descriptors before anything is
 * pushed: what ended is retired, what is new gets its duplicate. Changes
 * left are all of sockets the host holds now. 0 when out of memory (what
 * was settled stays settled). */
static int settle_changes(psg_sockets *s)
{
    size_t i = 0;
    while (i < s->changes.n) {
        psg_sockchange c = s->changes.at[i];
        size_t at = find(&s->hosted, c.fd);
        if (c.what == CURL_POLL_REMOVE) {
            if (at < s->hosted.n)
                retire(s, at);
            drop_at(&s->changes, i); /* reported through `retired` */
            continue;
        }
        if (at == s->hosted.n && !host(s, c.fd))
            return 0;
        i++;
    }
    return 1;
}

static const char *events_name(int what)
{
    switch (what) {
    case CURL_POLL_IN:
        return "in";
    case CURL_POLL_OUT:
        return "out";
    default:
        return "inout";
    }
}

static void push_change(lua_State *L, int fd, const char *events, int at)
{
    lua_createtable(L, 0, 2);
    psg_pushwhole(L, (long long)fd);
    lua_setfield(L, -2, "fd");
    lua_pushstring(L, events);
    lua_setfield(L, -2, "events");
    lua_rawseti(L, -2, at);
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
    if (!settle_changes(s))
        return luaL_error(L, "out of memory recording socket changes");
    lua_createtable(L, (int)(s->changes.n + s->retired.n), 0);
    /* Entries are copied before the allocations that follow: a finalizer
     * they run may close the transport, which changes the lists. */
    for (i = 0; i < s->retired.n; i++) {
        psg_sockchange r = s->retired.at[i];
        if (!r.what)
            push_change(L, r.host, "remove", ++n);
    }
    for (i = 0; i < s->changes.n; i++) {
        psg_sockchange c = s->changes.at[i];
        size_t at = find(&s->hosted, c.fd);
        if (at < s->hosted.n)
            push_change(L, s->hosted.at[at].host, events_name(c.what), ++n);
    }
    /* The answer exists: only now is it recorded as told (nothing here
     * allocates), so a memory error above loses nothing. */
    for (i = 0; i < s->retired.n; i++)
        s->retired.at[i].what = 1; /* closed at the host's next call */
    s->changes.n = 0;
    return 1;
}

curl_socket_t psg_sockets_from_host(const psg_sockets *s, int fd)
{
    size_t i = find_host(&s->hosted, fd);
    return i < s->hosted.n ? s->hosted.at[i].fd : CURL_SOCKET_BAD;
}

void psg_sockets_free(psg_sockets *s)
{
    size_t i;
    /* The transport is gone: nobody will tell the host any more. */
    for (i = 0; i < s->hosted.n; i++)
        if (s->hosted.at[i].owned)
            (void)close(s->hosted.at[i].host);
    for (i = 0; i < s->retired.n; i++)
        if (s->retired.at[i].owned)
            (void)close(s->retired.at[i].host);
    list_free(&s->watch);
    list_free(&s->changes);
    list_free(&s->hosted);
    list_free(&s->retired);
}
