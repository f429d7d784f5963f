/*
 * The private header of the C core: what its files share. One libcurl
 * object a file, as the Lua face shows them:
 *   core.c       luaopen_passage_core, core.now_ms
 *   segment.c    core.path: a call's URL, its ids as path segments
 *   sockets.c    a transport's sockets as libcurl and a host reactor see them
 *   transport.c  a libcurl multi handle: core.transport(opts)
 *   request.c    a libcurl easy handle: transport:start(...) -> request
 *   easy_url.c   the URL an easy handle gives libcurl
 *   headers.c    a libcurl header list: transport:headers(array)
 *   json_decode.c, json_check.c   the decoder and its checks (json_decode.h)
 * Calls go one way: core -> transport -> request, headers, sockets,
 * easy_url; request -> transport (easy and multi need each other), headers,
 * easy_url; json_decode -> json_check. What two files both need (the clock,
 * a document position, the array metatable) is an inline function of a
 * header.
 * Nothing here is seen by Lua directly; the Lua-visible contract is
 * documented at the top of each .c file.
 *
 * Memory model, in one place because both files depend on it:
 *   - Both structs live inside full userdata, so their addresses are stable
 *     and libcurl may keep pointers to them (CURLOPT_PRIVATE, callback data).
 *   - The transport anchors each started request in its user value table
 *     (key: lightuserdata of the struct, value: the userdata) from start()
 *     until its response is read, it is closed, or the transport closes. So
 *     libcurl never calls back into freed memory, and a request needs no
 *     finalizer: whoever ends it frees its memory (a request per call makes
 *     no work for the collector beyond its own bytes).
 *   - The anchor table holds its transport (slot 1) and is also the user
 *     value of each of the transport's requests, so a held request keeps
 *     its transport alive, and a transport is finalized only once none of
 *     its requests is reachable: no decode is running then.
 *   - r->tr is set while r is anchored. Closing the transport ends the
 *     transfers in flight, detaching and freeing their requests (a decode in
 *     progress keeps its memory until it ends); finished requests stay
 *     readable, and those still anchored when the transport is collected
 *     (never read nor closed) are freed by its __gc.
 *   - libcurl callbacks touch C memory only; Lua objects are built after
 *     libcurl returns.
 */
#ifndef PSG_PRIVATE_H
#define PSG_PRIVATE_H

#include <curl/curl.h>
#include <time.h>

#include "buffer.h"
#include "compat.h"
#include "json_decode.h"

#define PSG_TRANSPORT_MT "passage.transport"
#define PSG_REQUEST_MT "passage.request"
#define PSG_HEADERS_MT "passage.headers"

/* The monotonic clock, in milliseconds: deadlines in C and core.now_ms. */
static inline double psg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

struct pollfd;
typedef struct psg_transport psg_transport;
typedef struct psg_request psg_request;

/* An easy handle and what libcurl reaches through its options: made and
 * freed together, so the options of a pooled handle (callback data, error
 * buffer) never point at a request that may be gone, and a request sets
 * only what differs from the last one the handle carried. */
typedef struct psg_easy {
    CURL *curl;
    psg_request *r; /* the request it carries; NULL in the pool */
    /* The handle holds the transport's options and last carried a bodyless
     * GET, whose timeout and header list it still holds. A header list
     * freed since cannot be used through it: only a GET with a list at that
     * very address is set up without setting it again. */
    int plain;
    long timeout_ms;
    struct curl_slist *headers;
    long dns_cache_timeout;       /* as last set, plain or not */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's message of the transfer */
    /* The parsed URL libcurl is given, and the origin it was parsed for
     * (see easy_url.c). */
    struct Curl_URL *url;
    char *origin;
    size_t origin_len;
} psg_easy;

/* A parsed URL can be given to an easy handle (CURLOPT_CURLU). */
#define PSG_HAS_CURLU (LIBCURL_VERSION_NUM >= 0x073F00)

/* A header list as libcurl takes it, shared by every request started with
 * it: each holder (the header set userdata, each request using it) counts
 * one reference, and the last one frees it, so the collection order of a
 * header set and of the requests using it does not matter. */
typedef struct psg_headers {
    int refs;
    struct curl_slist *list;
    /* The same headers without the lines that only drop libcurl's own
     * headers of a body ("Expect:", "Content-Type:"): a request without a
     * body has none to drop, and libcurl scans every line of the list for
     * each header it might add, on every request. */
    struct curl_slist *bodyless;
} psg_headers;

/* Which of the transport's lists a request is on. */
enum { PSG_LIST_NONE = 0, PSG_LIST_INFLIGHT, PSG_LIST_FINISHED };

/* Why a request ended without libcurl finishing it. */
enum { PSG_END_NONE = 0, PSG_END_CANCELLED, PSG_END_TRANSPORT_CLOSED };

#define PSG_RETRY_AFTER_MAX 64
#define PSG_CONTENT_TYPE_MAX 256
/* The most response header bytes libcurl takes (its
 * MAX_HTTP_RESP_HEADER_SIZE, since 7.88 as patched and 8.3), exported as
 * core.MAX_RESPONSE_HEADER_BYTES for the cosocket transport. */
#define PSG_LIBCURL_HEADERS_MAX (300 * 1024)
#define PSG_EASY_POOL_MAX 16
/* How old a DNS answer may be when a transfer that renews them looks one
 * up: one transfer a minute does (see dns_cache_timeout in request.c). */
#define PSG_DNS_RENEW_S 60
/* Receive buffers kept for the next responses, and the largest kept: a
 * walk's pages then land in memory that is already mapped, instead of
 * fresh pages the kernel must fault in and zero for every response. */
#define PSG_SPARE_BUFS 4
#define PSG_SPARE_MAX_BYTES ((size_t)1 << 20)

/* One recorded socket state, the last one libcurl asked for on that fd. */
typedef struct psg_sockchange {
    curl_socket_t fd;
    int what;  /* CURL_POLL_IN / OUT / INOUT / REMOVE; in `retired`: reported */
    int host;  /* hosted, retired: the host's descriptor for fd */
    int owned; /* hosted, retired: host is a duplicate of the transport's */
} psg_sockchange;

/* A list of sockets with a state each. */
typedef struct psg_socklist {
    psg_sockchange *at;
    size_t n, cap;
} psg_socklist;

/* A transport's sockets (sockets.c):
 *   watch    every socket libcurl wants watched now (the transport's own
 *            poll() loop uses it)
 *   changes  the last state asked for per fd since a host last read them
 *   hosted   libcurl's sockets a host reactor holds, each with the
 *            descriptor the host was given (a duplicate)
 *   retired  host descriptors whose socket ended: reported "remove" at the
 *            next socket_changes(), closed at the host's call after that */
typedef struct psg_sockets {
    psg_socklist watch, changes, hosted, retired;
    int reactor; /* a host reads socket_changes() */
    int lost;    /* a change could not be recorded (out of memory) */
} psg_sockets;

struct psg_transport {
    CURLM *multi;
    int closed;

    /* Options applied to every easy handle. */
    long connect_timeout_ms;
    long timeout_ms;
    curl_off_t max_response_bytes;
    char *ca_file;
    char *ca_path;
    char *user_agent;
    int tls_verify;
    long max_host_connections;
    psg_json_opts json;
    psg_json_shapes *shapes;

    /* Requests in flight, and finished ones not yet handed to Lua. Both are
     * doubly linked so a request can unlink itself in O(1) when it is
     * cancelled or collected. The finished list is kept in finishing order. */
    psg_request *inflight;
    size_t n_inflight;
    psg_request *finished_head, *finished_tail;
    size_t n_finished;

    /* Easy handles ready for the next request: plain ones (see psg_easy),
     * and others reset to libcurl's defaults. */
    psg_easy *pool[PSG_EASY_POOL_MAX];
    int n_pool;

    /* Empty receive buffers for the next requests (see PSG_SPARE_BUFS). */
    psg_buf spare[PSG_SPARE_BUFS];
    int n_spare;

    /* What libcurl's socket callbacks reported (sockets.c). */
    psg_sockets sockets;
    struct pollfd *pollfds; /* scratch for poll(), cap_pollfds entries */
    size_t cap_pollfds;
    int timer_set;
    double timer_deadline_ms; /* monotonic clock */
    /* The clock as the current turn read it (a start, a drive, a host's
     * socket action), for libcurl's timer callbacks and the due checks of
     * that turn: one reading instead of one per callback. Stale between
     * turns, which can only make a timer due early (libcurl then sets it
     * again), never late. */
    double turn_ms;
    /* When the next transfer renews DNS answers (monotonic clock). */
    double dns_renew_ms;
};

struct psg_request {
    psg_transport *tr; /* NULL once detached */
    psg_request *prev, *next;
    int list;
    int closed;
    int done;
    int ended; /* PSG_END_*: ended by us rather than by libcurl */

    psg_easy *easy;       /* non-NULL only while in flight */
    psg_headers *headers; /* one reference, released with the transfer */
    char method[8];

    /* Written by the libcurl callbacks. */
    psg_buf body;
    curl_off_t max_body;
    int too_large;
    int out_of_memory;
    /* Outside the userdata, so that a request per call is a small object
     * for the collector: the values of the final response's headers (NULL
     * when absent), and libcurl's message, copied from the handle's error
     * buffer when the transfer ended (NULL when it wrote none). */
    char *retry_after;
    char *content_type;
    char *error;
    /* Why header_cb refused the reply's framing (a static message), so that
     * it ends as a "network" error whatever libcurl would make of it;
     * bad_status_line when it was the status line: no status then. */
    const char *malformed;
    int bad_status_line;

    /* Gathered from the easy handle when the transfer ended. */
    CURLcode code;
    long status;
    long request_size;
    long connects;
    long header_bytes; /* of every response, the line libcurl refused included */

    /* Decoding happens in response(); the scratch buffer is owned here so a
     * Lua error inside the decoder leaks nothing. While `decoding`, the body
     * and scratch are in use across Lua allocations, where a finalizer may
     * close the request: close() then leaves the memory to the decode's end
     * (or to __gc, which cannot run during the decode). */
    psg_json_opts json;
    psg_buf scratch;
    int response_read;
    int decoding;
};

/* ---- the classes: transport, request, header set ------------------------
 * Their three metatables are made first, and every function of theirs is a
 * closure over all three (upvalues PSG_UP_*, in this order), so that a
 * method checks its self, or a request or header set it is given, by
 * comparing metatables: no lookup by name (LuaJIT's luaL_checkudata interns
 * the name on every call, and a get_user checks six). */
enum { PSG_UP_TRANSPORT_MT = 1, PSG_UP_REQUEST_MT, PSG_UP_HEADERS_MT };
#define PSG_UP_CLASSES 3

/* Pushes the class metatables at classes, classes + 1 and classes + 2, as
 * the first upvalues of a closure go. */
static inline void psg_push_classes(lua_State *L, int classes)
{
    int i;
    for (i = 0; i < PSG_UP_CLASSES; i++)
        lua_pushvalue(L, classes + i);
}

/* Sets the functions of l on the table at the top, each a closure over the
 * class metatables (see psg_push_classes). */
static inline void psg_class_funcs(lua_State *L, int classes, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        psg_push_classes(L, classes);
        lua_pushcclosure(L, l->func, PSG_UP_CLASSES);
        lua_setfield(L, -2, l->name);
    }
}

/* Fills the metatable of class `up` (its metamethods, its methods as
 * __index, and __metatable = name, so a script can neither read nor
 * replace it); the metatables are at classes.. as psg_class_funcs takes
 * them. Leaves the stack as it was. */
static inline void psg_class_fill(lua_State *L, int classes, int up, const char *name,
                                  const luaL_Reg *meta, const luaL_Reg *methods)
{
    lua_pushvalue(L, classes + up - 1);
    psg_class_funcs(L, classes, meta);
    if (methods != NULL) {
        lua_newtable(L);
        psg_class_funcs(L, classes, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* The userdata at idx when it is of class `up`, else NULL; only in a
 * function of the classes. */
static inline void *psg_testclass(lua_State *L, int idx, int up)
{
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    same = lua_rawequal(L, -1, lua_upvalueindex(up));
    lua_pop(L, 1);
    return same ? p : NULL;
}

/* The same, raising as luaL_checkudata does when it is not. */
static inline void *psg_checkclass(lua_State *L, int idx, int up, const char *name)
{
    void *p = psg_testclass(L, idx, up);
    return p != NULL ? p : luaL_checkudata(L, idx, name);
}

/* easy_url.c */
/* Sets url (len bytes) as the URL of e's next transfer. Frees what it
 * keeps (with the handle). */
CURLcode psg_easy_set_url(psg_easy *e, const char *url, size_t len);
void psg_easy_free_url(psg_easy *e);

/* transport.c */
/* Registers core.transport and the three classes on the table at the top
 * of the stack. */
void psg_transport_register(lua_State *L);

/* A handle from the pool, or a new one (not plain); NULL when out of
 * memory. Back into the pool (or freed): a handle that is not plain is
 * reset first. */
psg_easy *psg_transport_take_easy(psg_transport *tr);
void psg_transport_put_easy(psg_transport *tr, psg_easy *e);
/* A spare receive buffer into *b (empty, for a new request), if one is kept;
 * and back: *b is kept as a spare or freed, and left empty either way. */
void psg_transport_take_buffer(psg_transport *tr, psg_buf *b);
void psg_transport_give_buffer(psg_transport *tr, psg_buf *b);
void psg_transport_unlink(psg_transport *tr, psg_request *r);
void psg_transport_link_inflight(psg_transport *tr, psg_request *r);
void psg_transport_link_finished(psg_transport *tr, psg_request *r);
/* Room to record n sockets, so that libcurl's socket
 * callback need not allocate; 0 when out of memory. */
int psg_transport_reserve_sockets(psg_transport *tr, size_t n);
/* CURLOPT_OPENSOCKETFUNCTION of every transfer (data: the transport). */
curl_socket_t psg_transport_open_socket(void *transport, curlsocktype purpose,
                                        struct curl_sockaddr *address);
/* Reads the clock for the turn that begins (turn_ms). */
void psg_transport_begin_turn(psg_transport *tr);
/* Lets libcurl act on its due timer (at the turn's time): a transfer just
 * added is connected or sent now, without waiting for the next perform().
 * C only; never blocks. */
void psg_transport_kick(psg_transport *tr);
/* A transport's anchor table (its user value, and each request's) holds
 * the transport, the key table of its shape cache, and each request not yet
 * read or closed under its light userdata. */
#define PSG_ANCHOR_TRANSPORT 1
#define PSG_ANCHOR_KEY_TABLE 2
/* Drops the anchor of r from the anchor table at the top of the stack (a
 * transport's user value; never allocates, so it cannot raise). */
void psg_transport_unanchor(lua_State *L, psg_request *r);
/* Pushes the key table of the shape cache of the transport whose anchor
 * table is the user value of the request at request_idx (never raises). */
void psg_transport_push_key_table(lua_State *L, int request_idx);

/* sockets.c */
/* Room for n sockets in the lists libcurl's callbacks write, so that they
 * need not allocate; 0 when out of memory. */
int psg_sockets_reserve(psg_sockets *s, size_t n);
/* libcurl's socket callback: fd should be watched for what (CURL_POLL_*). */
void psg_sockets_want(psg_sockets *s, curl_socket_t fd, int what);
/* Stops the transport's own loop watching fd (poll() said it is invalid). */
void psg_sockets_unwatch(psg_sockets *s, curl_socket_t fd);
/* libcurl's open-socket callback: a new socket (close-on-exec). */
curl_socket_t psg_sockets_open(psg_sockets *s, int family, int type, int protocol);
/* Closes the retired host descriptors whose "remove" a host has read: at
 * every call of the host into the transport. */
void psg_sockets_close_reported(psg_sockets *s);
/* After a turn of the transport's own loop: drops changes nobody reads. */
void psg_sockets_forget_changes(psg_sockets *s);
/* The transport closed every socket: the host hears "remove" for each. */
void psg_sockets_all_closed(psg_sockets *s);
/* socket_changes(): pushes { { fd =, events = }, ... } in the host's
 * descriptors and records what the host now knows. Raises when out of
 * memory, losing nothing. */
int psg_sockets_push_changes(lua_State *L, psg_sockets *s);
/* libcurl's socket for a host descriptor, or CURL_SOCKET_BAD. */
curl_socket_t psg_sockets_from_host(const psg_sockets *s, int fd);
/* Closes every host descriptor and frees the lists. */
void psg_sockets_free(psg_sockets *s);

/* request.c */
/* Fills the request class (see psg_class_fill). */
void psg_request_register(lua_State *L, int classes);
int psg_request_start(lua_State *L); /* transport:start(...) */
/* libcurl finished r with `code`: gather results, release the easy handle,
 * move r to the finished list. C only. */
void psg_request_finish(psg_request *r, CURLcode code);
/* End an in-flight r without libcurl's verdict (cancel, transport close):
 * gather what there is, release the easy handle, unlink. C only. */
void psg_request_abort(psg_request *r, int why);
/* r is done with its transport (it closes, or r was read, closed or
 * cancelled): r frees its memory, unless a decode is using it (that decode's
 * end frees it), and forgets the transport. C only. */
void psg_request_detach(psg_request *r);

/* segment.c: core.path */
int psg_path(lua_State *L);

/* headers.c */
/* Fills the header set class (see psg_class_fill). */
void psg_headers_register(lua_State *L, int classes);
/* The header set of the array at index 2 (transport:headers(list), whose
 * transport.c checks the transport at index 1 first). */
int psg_headers_new(lua_State *L, const char *user_agent);
/* Whether s[0..len) holds a CR, LF or NUL. */
int psg_has_ctl(const char *s, size_t len);
/* Which headers an array has, of those a list gets when it lacks them. */
#define PSG_HEADER_CONTENT_TYPE 1
#define PSG_HEADER_USER_AGENT 2
/* Validates the array of "Name: value" strings at idx (raising on a bad
 * one, naming its position only) and returns its length; *present gets the
 * PSG_HEADER_* bits of the headers it has. Allocates nothing. */
int psg_headers_check(lua_State *L, int idx, int *present);
/* The libcurl list of the n checked headers at idx (none when idx is 0),
 * with one reference, plus "Expect:" and, when the array lacks them,
 * "Content-Type:" and the User-Agent (user_agent NULL: none). NULL when out
 * of memory. Never raises. */
psg_headers *psg_headers_build(lua_State *L, int idx, int n, int present, const char *user_agent);
/* Drops one reference; the last one frees the list. */
void psg_headers_release(psg_headers *h);

#endif
