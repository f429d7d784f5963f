/*
 * The transport: one libcurl multi handle per client. It owns the connection
 * cache (keep-alive across calls), a small pool of easy handles, and
 * the requests in flight (request.c).
 *
 * Lua-visible contract:
 *
 *   core.transport(opts) -> transport
 *     opts is an optional table; an unknown name or a wrong type raises an
 *     error naming the option. The defaults are passage.options' (which
 *     always passes every value); absent here means libcurl's own:
 *       connect_timeout_ms    integer >= 0 (0: libcurl's own)
 *       timeout_ms            integer >= 0: total per transfer when start()
 *                             gives none (0: no limit)
 *       max_response_bytes    integer >= 0; a bigger body ends the transfer
 *                             with kind "too_large" (0: no cap)
 *       ca_file, ca_path      strings (CA bundle file / directory)
 *       unsafe_skip_tls_verify  boolean; true turns off both peer and host
 *                             name verification
 *       user_agent            string (none: no User-Agent header)
 *       keep_null             boolean, passed to the JSON decoder
 *       max_depth             integer >= 0, passed to the JSON decoder
 *       max_host_connections  integer >= 0 (0: libcurl's own)
 *
 *   transport:start(method, url, headers, body [, timeout_ms]) -> request
 *     See request.c. Adds the transfer to the multi handle and starts it
 *     without blocking.
 *   transport:headers(array) -> header set, for start(): see headers.c.
 *
 *   transport:perform(timeout_ms) -> { request, ... }
 *     Drives every transfer, returns those that finished (possibly none).
 *     Like wait(), it runs libcurl through its socket interface with a
 *     poll() of its own, so a turn costs one syscall however many
 *     transfers are in flight.
 *     When none finished and timeout_ms > 0, waits for activity for up to
 *     timeout_ms and drives them once more. With nothing in flight it simply
 *     sleeps timeout_ms (the Lua layer's backoff sleep). perform(0) never
 *     blocks. Cancelled requests are not returned (the canceller knows).
 *
 *   transport:wait(request, timeout_ms [, keep]) -> done, finished
 *     Drives every transfer, like perform(), until `request` (started on
 *     this transport) is done or timeout_ms has passed; wait(req, 0) drives
 *     once and never blocks. done tells whether it is: the request is then
 *     handed over as perform() would have returned it, unless keep is true,
 *     which leaves it for the next perform() or wait() like the others.
 *     Other requests that finish meanwhile are kept for the next
 *     perform()/socket_action(); finished is how many are waiting there.
 *
 *   transport:pending() -> number of transfers in flight
 *
 *   For hosts with their own event loop (luv, cqueues, epoll, ...):
 *   transport:socket_changes() -> { { fd = n, events = e }, ... }
 *     The socket states libcurl asked for since the last call, the last one
 *     per fd; events is "in", "out", "inout" or "remove". The fds are the
 *     host's own duplicates of libcurl's sockets (sockets.c): one is closed
 *     only at the host's call after its "remove" was read.
 *   transport:timer_ms() -> ms until libcurl wants socket_action() called
 *     with no fd, 0 while a finished request waits to be collected, or -1
 *     when it wants no timer.
 *   transport:socket_action([fd, events]) -> { request, ... }
 *     fd (one socket_changes() gave) ready for events ("in", "out", "inout",
 *     "err"; omitted: let libcurl check); with no fd this is the timer
 *     action. Returns the requests that finished. perform() and wait() may
 *     be mixed with this interface.
 *
 *   transport:close(), __close (5.4): abort every transfer in flight (their
 *     requests report kind "cancelled") and free what libcurl holds; may be
 *     repeated. A closed transport is inert rather than an error, since a
 *     finalizer may close it in the middle of a caller's turn: start()
 *     returns nil, perform() and socket_action() return no request (without
 *     waiting), wait() does not wait, pending() is 0, timer_ms() -1;
 *     headers() raises "transport is closed". __gc also frees the shape
 *     cache, which a decode may be using until then.
 *   tostring(transport): "passage.transport: 2 in flight" or
 *     "passage.transport: closed".
 */
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "private.h"

/* ---- process-wide libcurl initialisation --------------------------------
 * curl_global_init is not guaranteed thread-safe on every libcurl this may
 * be built against, and the module can be loaded by several nginx worker
 * threads at once, so it runs exactly once per process. It is never undone:
 * another Lua state in the process may still be using libcurl. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- list and pool helpers (C only, used by request.c too) -------------- */

/* Both lists of requests are doubly linked; the finished one also keeps its
 * tail (it is kept in finishing order). */
void psg_transport_unlink(psg_transport *tr, psg_request *r)
{
    if (r->list == PSG_LIST_NONE)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else if (r->list == PSG_LIST_INFLIGHT)
        tr->inflight = r->next;
    else
        tr->finished_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else if (r->list == PSG_LIST_FINISHED)
        tr->finished_tail = r->prev;
    if (r->list == PSG_LIST_INFLIGHT)
        tr->n_inflight--;
    else
        tr->n_finished--;
    r->prev = r->next = NULL;
    r->list = PSG_LIST_NONE;
}

void psg_transport_link_inflight(psg_transport *tr, psg_request *r)
{
    r->prev = NULL;
    r->next = tr->inflight;
    if (tr->inflight)
        tr->inflight->prev = r;
    tr->inflight = r;
    tr->n_inflight++;
    r->list = PSG_LIST_INFLIGHT;
}

void psg_transport_link_finished(psg_transport *tr, psg_request *r)
{
    r->next = NULL;
    r->prev = tr->finished_tail;
    if (tr->finished_tail)
        tr->finished_tail->next = r;
    else
        tr->finished_head = r;
    tr->finished_tail = r;
    tr->n_finished++;
    r->list = PSG_LIST_FINISHED;
}

psg_easy *psg_transport_take_easy(psg_transport *tr)
{
    psg_easy *e;
    if (tr->n_pool > 0)
        return tr->pool[--tr->n_pool];
    if ((e = (psg_easy *)calloc(1, sizeof *e)) == NULL)
        return NULL;
    if ((e->curl = curl_easy_init()) == NULL) {
        free(e);
        return NULL;
    }
    return e;
}

static void free_easy(psg_easy *e)
{
    curl_easy_cleanup(e->curl);
    psg_easy_free_url(e);
    free(e);
}

void psg_transport_put_easy(psg_transport *tr, psg_easy *e)
{
    e->r = NULL;
    if (tr != NULL && !tr->closed && tr->n_pool < PSG_EASY_POOL_MAX) {
        if (!e->plain)
            curl_easy_reset(e->curl);
        tr->pool[tr->n_pool++] = e;
    } else {
        free_easy(e);
    }
}

void psg_transport_take_buffer(psg_transport *tr, psg_buf *b)
{
    if (tr->n_spare > 0 && b->data == NULL)
        *b = tr->spare[--tr->n_spare];
}

void psg_transport_give_buffer(psg_transport *tr, psg_buf *b)
{
    if (tr != NULL && !tr->closed && b->data != NULL && b->cap <= PSG_SPARE_MAX_BYTES &&
        tr->n_spare < PSG_SPARE_BUFS) {
        b->len = 0;
        tr->spare[tr->n_spare++] = *b;
        b->data = NULL;
        b->len = b->cap = 0;
    } else {
        psg_buf_free(b);
    }
}

void psg_transport_push_key_table(lua_State *L, int request_idx)
{
    psg_getuservalue(L, request_idx);
    lua_rawgeti(L, -1, PSG_ANCHOR_KEY_TABLE);
    lua_replace(L, -2);
}

void psg_transport_unanchor(lua_State *L, psg_request *r)
{
    lua_pushlightuserdata(L, r);
    lua_pushnil(L);
    lua_rawset(L, -3); /* assigning nil to a key never allocates */
}

/* ---- libcurl callbacks: C memory only ----------------------------------- */

int psg_transport_reserve_sockets(psg_transport *tr, size_t n)
{
    return psg_sockets_reserve(&tr->sockets, n);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    psg_sockets_want(&((psg_transport *)userp)->sockets, fd, what);
    return 0;
}

curl_socket_t psg_transport_open_socket(void *transport, curlsocktype purpose,
                                        struct curl_sockaddr *address)
{
    (void)purpose;
    return psg_sockets_open(&((psg_transport *)transport)->sockets, address->family,
                            address->socktype, address->protocol);
}

/* libcurl gives a relative delay; keep a deadline so timer_ms() can answer
 * correctly however long after the callback it is asked. Counted from the
 * turn's reading of the clock (see turn_ms in private.h). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    psg_transport *tr = (psg_transport *)userp;
    (void)multi;
    if (timeout_ms < 0) {
        tr->timer_set = 0;
    } else {
        tr->timer_set = 1;
        tr->timer_deadline_ms = tr->turn_ms + (double)timeout_ms;
    }
    return 0;
}

/* ---- transport userdata ------------------------------------------------- */

static psg_transport *check_transport(lua_State *L, int idx)
{
    return (psg_transport *)psg_checkclass(L, idx, PSG_UP_TRANSPORT_MT, PSG_TRANSPORT_MT);
}

static psg_transport *check_open(lua_State *L, int idx)
{
    psg_transport *tr = check_transport(L, idx);
    if (tr->closed)
        luaL_error(L, "transport is closed");
    return tr;
}

/* Moves every transfer libcurl reports as done to the finished list. C
 * only: a CURLMsg is invalid once its handle leaves the multi handle, so the
 * result is copied out first. */
static void collect_finished(psg_transport *tr)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(tr->multi, &left)) != NULL) {
        CURL *easy;
        CURLcode code;
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        easy = msg->easy_handle;
        code = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        if (priv != NULL && ((psg_easy *)priv)->r != NULL)
            psg_request_finish(((psg_easy *)priv)->r, code);
    }
}

/* Pushes the finished requests as an array and takes them off the finished
 * list (they stay anchored until their response is read). The array is
 * presized, so filling it cannot raise; if creating it raises, the finished
 * list is intact and the next call returns them. */
static int push_finished(lua_State *L, psg_transport *tr, int tr_idx)
{
    psg_request *r;
    int i = 1;
    luaL_checkstack(L, 4, "passage.transport");
    lua_createtable(L, (int)tr->n_finished, 0);
    psg_getuservalue(L, tr_idx);
    while ((r = tr->finished_head) != NULL) {
        lua_pushlightuserdata(L, r);
        lua_rawget(L, -2);
        if (lua_isnil(L, -1)) /* cannot happen: every started request is anchored */
            lua_pop(L, 1);
        else
            lua_rawseti(L, -3, i++);
        psg_transport_unlink(tr, r);
    }
    lua_pop(L, 1);
    return 1;
}

static void multi_check(lua_State *L, CURLMcode mc, const char *what)
{
    if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
        luaL_error(L, "%s: %s", what, curl_multi_strerror(mc));
}

/* ---- the transport's own event loop ------------------------------------
 * perform() and wait() drive libcurl through its socket interface, as a
 * host reactor would: poll() on the sockets libcurl asked for, and
 * curl_multi_socket_action for each ready one and for the timer. libcurl
 * then touches only the transfers that have something to do, where
 * curl_multi_perform would check the socket of every transfer in flight
 * with a syscall of its own on every turn. */

/* Runs libcurl's timer while it is due at the turn's time. An action can
 * set a timer of 0 again (a queued transfer may start now): a few rounds,
 * never a spin. */
static CURLMcode run_due_timer(psg_transport *tr)
{
    int rounds, running;
    CURLMcode mc = CURLM_OK;
    for (rounds = 0; rounds < 4 && tr->timer_set && tr->timer_deadline_ms <= tr->turn_ms;
         rounds++) {
        tr->timer_set = 0; /* one-shot; libcurl sets it again if it wants */
        mc = curl_multi_socket_action(tr->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM)
            break;
    }
    return mc;
}

void psg_transport_begin_turn(psg_transport *tr)
{
    tr->turn_ms = psg_now_ms();
}

void psg_transport_kick(psg_transport *tr)
{
    /* A failure here shows again, and is reported, at the next perform(). */
    (void)run_due_timer(tr);
    collect_finished(tr);
}

static int ms_until_timer(const psg_transport *tr, int limit)
{
    double left;
    if (!tr->timer_set)
        return limit;
    left = tr->timer_deadline_ms - tr->turn_ms;
    if (left <= 0)
        return 0;
    return left < (double)limit ? (int)ceil(left) : limit;
}

static int select_bits(short revents)
{
    int mask = 0;
    /* A hang-up may leave data to read: libcurl reads it, then sees EOF. */
    if (revents & (POLLIN | POLLPRI | POLLHUP))
        mask |= CURL_CSELECT_IN;
    if (revents & POLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (revents & (POLLERR | POLLNVAL))
        mask |= CURL_CSELECT_ERR;
    return mask;
}

/* One turn, begun by the caller (psg_transport_begin_turn): the due timer,
 * then poll() libcurl's sockets for up to wait_ms (less when its timer comes
 * sooner), an action per ready socket, the timer again; finished transfers
 * go to the finished list. Returns whether poll() could sleep, in which case
 * the turn's clock was read again after it. Raises only before libcurl is
 * entered (out of memory) or after it returned. */
static int drive(lua_State *L, psg_transport *tr, int wait_ms)
{
    size_t i, n, n_finished;
    int ready, running;
    CURLMcode mc;
    psg_sockets_close_reported(&tr->sockets);
    if (tr->sockets.lost && !tr->sockets.reactor) {
        tr->sockets.lost = 0;
        luaL_error(L, "out of memory recording the sockets of transfers");
    }
    n_finished = tr->n_finished;
    mc = run_due_timer(tr);
    /* The timer can finish a transfer on its own (libcurl reads a big body
     * in rounds of zero delay): collected now, it is news, and the poll()
     * below must not sleep with nothing left to wait for. */
    collect_finished(tr);
    multi_check(L, mc, "curl_multi_socket_action");
    if (tr->n_finished > n_finished)
        wait_ms = 0;
    n = tr->sockets.watch.n;
    if (n > tr->cap_pollfds) {
        size_t room = tr->sockets.watch.cap;
        struct pollfd *p = (struct pollfd *)realloc(tr->pollfds, room * sizeof *p);
        if (p == NULL)
            luaL_error(L, "out of memory polling the sockets of transfers");
        tr->pollfds = p;
        tr->cap_pollfds = room;
    }
    /* A copy: the actions below change the watch list. */
    for (i = 0; i < n; i++) {
        int what = tr->sockets.watch.at[i].what;
        tr->pollfds[i].fd = tr->sockets.watch.at[i].fd;
        tr->pollfds[i].events =
            (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
        tr->pollfds[i].revents = 0;
    }
    wait_ms = ms_until_timer(tr, wait_ms);
    ready = n > 0 || wait_ms > 0 ? poll(tr->pollfds, (nfds_t)n, wait_ms) : 0;
    if (wait_ms > 0)
        psg_transport_begin_turn(tr); /* poll() may have slept */
    /* ready < 0 is EINTR (or ENOMEM): nothing is ready; callers loop. */
    for (i = 0; i < n && ready > 0; i++) {
        short revents = tr->pollfds[i].revents;
        if (revents == 0)
            continue;
        ready--;
        if (revents & POLLNVAL) {
            /* Closed without a word from libcurl: stop watching it, or
             * every poll() would return at once. */
            psg_sockets_unwatch(&tr->sockets, tr->pollfds[i].fd);
        }
        mc = curl_multi_socket_action(tr->multi, tr->pollfds[i].fd, select_bits(revents), &running);
        if (mc != CURLM_OK && mc != CURLM_CALL_MULTI_PERFORM) {
            collect_finished(tr);
            multi_check(L, mc, "curl_multi_socket_action");
        }
    }
    mc = run_due_timer(tr);
    collect_finished(tr);
    psg_sockets_forget_changes(&tr->sockets);
    multi_check(L, mc, "curl_multi_socket_action");
    return wait_ms > 0;
}

/* Ends every transfer in flight (aborted, unanchored and detached: those
 * requests report "cancelled") and frees what libcurl holds. Finished
 * requests keep their responses, readable until their transport is
 * collected. Nothing here allocates, so close is safe from __gc. */
static void transport_close(lua_State *L, int idx, psg_transport *tr)
{
    psg_request *r;
    if (tr->closed)
        return;
    psg_getuservalue(L, idx);
    while ((r = tr->inflight) != NULL) {
        psg_request_abort(r, PSG_END_TRANSPORT_CLOSED);
        psg_transport_unanchor(L, r);
        psg_request_detach(r);
    }
    lua_pop(L, 1);
    tr->closed = 1;
    while (tr->n_pool > 0)
        free_easy(tr->pool[--tr->n_pool]);
    while (tr->n_spare > 0)
        psg_buf_free(&tr->spare[--tr->n_spare]);
    if (tr->multi != NULL)
        curl_multi_cleanup(tr->multi);
    tr->multi = NULL;
    psg_sockets_all_closed(&tr->sockets);
    /* The socket lists stay: a host reactor still reads its "remove"s from
     * socket_changes(), and the sockets it watched close after that (or at
     * __gc). */
    free(tr->pollfds);
    tr->pollfds = NULL;
    tr->cap_pollfds = 0;
    free(tr->ca_file);
    free(tr->ca_path);
    free(tr->user_agent);
    tr->ca_file = tr->ca_path = tr->user_agent = NULL;
}

static int l_close(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    transport_close(L, 1, tr);
    return 0;
}

/* The shape cache outlives close(): a request may be decoding with it when a
 * finalizer closes the transport, and such a request keeps the transport
 * reachable (its user value), so this finalizer cannot run before the
 * decode ends. */
static int l_gc(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    psg_request *r;
    transport_close(L, 1, tr);
    /* No request of this transport is reachable any more (each holds it
     * through its user value): those still anchored, whose responses nobody
     * read, go now. Nothing here changes the table being walked. */
    psg_getuservalue(L, 1);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) {
                r = (psg_request *)lua_touserdata(L, -1);
                psg_transport_unlink(tr, r);
                psg_request_detach(r);
            }
        }
    }
    lua_pop(L, 1);
    psg_sockets_free(&tr->sockets);
    psg_json_shapes_free(tr->shapes);
    tr->shapes = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    if (tr->closed)
        lua_pushliteral(L, "passage.transport: closed");
    else
        lua_pushfstring(L, "passage.transport: %d in flight", (int)tr->n_inflight);
    return 1;
}

static int l_pending(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    psg_pushwhole(L, (long long)tr->n_inflight); /* 0 once closed */
    return 1;
}

/* A whole number of milliseconds from argument idx, clamped to what
 * curl_multi_poll takes. */
static int check_ms_arg(lua_State *L, int idx)
{
    lua_Number n = luaL_checknumber(L, idx);
    if (!(n >= 0))
        luaL_argerror(L, idx, "timeout must be >= 0");
    if (n > 2147483647.0)
        n = 2147483647.0;
    return (int)ceil(n);
}

static int l_perform(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    int timeout = lua_isnoneornil(L, 2) ? 0 : check_ms_arg(L, 2);
    luaL_checkstack(L, 4, "passage.transport");
    if (tr->closed) {
        lua_newtable(L);
        return 1;
    }
    /* Finished requests already waiting are news enough: no blocking. With
     * nothing in flight this sleeps: that is the backoff sleep. */
    psg_transport_begin_turn(tr);
    drive(L, tr, tr->n_finished > 0 ? 0 : timeout);
    return push_finished(L, tr, 1);
}

/* Blocks in C until one request is done: no Lua table per turn. Requests
 * that finish meanwhile stay on the finished list for perform(). */
static int l_wait(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    psg_request *r = (psg_request *)psg_checkclass(L, 2, PSG_UP_REQUEST_MT, PSG_REQUEST_MT);
    int limit = check_ms_arg(L, 3), keep = lua_toboolean(L, 4);
    if (tr->closed) {
        lua_pushboolean(L, r->done);
        psg_pushwhole(L, 0);
        return 2;
    }
    if (r->tr != tr && r->list != PSG_LIST_NONE)
        return luaL_argerror(L, 2, "request of another transport");
    if (r->list == PSG_LIST_INFLIGHT) {
        double deadline;
        int clock_read = 1;
        psg_transport_begin_turn(tr);
        deadline = tr->turn_ms + limit;
        do {
            double left;
            int wait_ms;
            /* A drive whose poll() could sleep read the clock after it;
             * after one that could not, it is read here. */
            if (!clock_read)
                psg_transport_begin_turn(tr);
            left = deadline - tr->turn_ms;
            wait_ms = left <= 0 ? 0 : (int)ceil(left);
            clock_read = drive(L, tr, wait_ms);
            if (wait_ms == 0)
                break;
        } while (r->list == PSG_LIST_INFLIGHT);
    }
    if (r->list == PSG_LIST_FINISHED && !keep)
        psg_transport_unlink(tr, r); /* handed over: anchored until read */
    lua_pushboolean(L, r->done);
    psg_pushwhole(L, (long long)tr->n_finished);
    return 2;
}

static int l_headers(lua_State *L)
{
    return psg_headers_new(L, check_open(L, 1)->user_agent);
}

static int l_socket_changes(lua_State *L)
{
    return psg_sockets_push_changes(L, &check_transport(L, 1)->sockets);
}

static int l_timer_ms(lua_State *L)
{
    psg_transport *tr = check_transport(L, 1);
    double left;
    if (!tr->closed && tr->n_finished > 0) {
        /* Finished already (within start(), or during a wait for another
         * request): the host must come back at once to collect it, though
         * no socket and no libcurl timer will wake it. */
        psg_pushwhole(L, 0);
        return 1;
    }
    if (tr->closed || !tr->timer_set) {
        psg_pushwhole(L, -1);
        return 1;
    }
    left = tr->timer_deadline_ms - psg_now_ms();
    psg_pushwhole(L, left <= 0 ? 0 : (long long)ceil(left));
    return 1;
}

static int l_socket_action(lua_State *L)
{
    static const char *const names[] = {"in", "out", "inout", "err", NULL};
    static const int masks[] = {CURL_CSELECT_IN, CURL_CSELECT_OUT,
                                CURL_CSELECT_IN | CURL_CSELECT_OUT, CURL_CSELECT_ERR};
    psg_transport *tr = check_transport(L, 1);
    curl_socket_t fd = CURL_SOCKET_TIMEOUT;
    int mask = 0, running = 0;
    if (!lua_isnoneornil(L, 2)) {
        lua_Number n = luaL_checknumber(L, 2);
        if (!(n >= 0 && n <= 2147483647.0) || n != floor(n))
            luaL_argerror(L, 2, "fd must be a non-negative integer");
        fd = (curl_socket_t)n;
        if (!lua_isnoneornil(L, 3))
            mask = masks[luaL_checkoption(L, 3, NULL, names)];
    } else {
        /* The timer fired, and libcurl's timer is one-shot: forget it so
         * timer_ms() does not keep answering 0. libcurl calls the timer
         * callback again during this action if it still wants one. */
        tr->timer_set = 0;
    }
    luaL_checkstack(L, 4, "passage.transport");
    psg_sockets_close_reported(&tr->sockets);
    if (tr->closed) {
        lua_newtable(L);
        return 1;
    }
    psg_transport_begin_turn(tr);
    if (fd != CURL_SOCKET_TIMEOUT && tr->sockets.reactor) {
        /* The host's descriptor is a duplicate: act on libcurl's. A stale
         * one (its socket ended since) has nothing left to do. */
        fd = psg_sockets_from_host(&tr->sockets, (int)fd);
        if (fd == CURL_SOCKET_BAD) {
            collect_finished(tr);
            return push_finished(L, tr, 1);
        }
    }
    multi_check(L, curl_multi_socket_action(tr->multi, fd, mask, &running),
                "curl_multi_socket_action");
    collect_finished(tr);
    return push_finished(L, tr, 1);
}

/* ---- construction and option parsing ----------------------------------- */

typedef struct parsed_opts {
    long connect_timeout_ms, timeout_ms, max_host_connections;
    curl_off_t max_response_bytes;
    const char *ca_file, *ca_path, *user_agent;
    int skip_tls_verify, keep_null, max_depth;
} parsed_opts;

/* A number option, as the C type it goes into takes it. Its limits are
 * passage.options' (users.new checks them once); this only keeps the C
 * conversion defined. */
static lua_Number opt_whole(lua_State *L, const char *name, lua_Number max)
{
    lua_Number n;
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "transport option '%s' must be a number (got %s)", name,
                   luaL_typename(L, -1));
    n = lua_tonumber(L, -1);
    if (!(n >= 0 && n <= max) || n != floor(n)) {
        char top[32];
        snprintf(top, sizeof top, "%.0f", (double)max);
        luaL_error(L, "transport option '%s' must be a whole number from 0 to %s", name, top);
    }
    return n;
}

static const char *opt_string(lua_State *L, const char *name)
{
    size_t len;
    const char *s;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "transport option '%s' must be a string (got %s)", name,
                   luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    /* As a C string it would end at a NUL, and the user_agent goes into a
     * header line (headers.c): the same refusal as a request header's.
     * passage.options refuses every control byte before it gets here. */
    if (psg_has_ctl(s, len))
        luaL_error(L, "transport option '%s' must not contain CR, LF or NUL", name);
    return s;
}

static int opt_bool(lua_State *L, const char *name)
{
    if (lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "transport option '%s' must be a boolean (got %s)", name,
                   luaL_typename(L, -1));
    return lua_toboolean(L, -1);
}

/* The names core.transport takes, in the order of the enum below: the one
 * list parse_opts reads and names in its error for an unknown option
 * (spec/transport_spec.lua compares it with passage.options.TRANSPORT). */
static const char *const OPTION_NAMES[] = {"connect_timeout_ms",
                                           "timeout_ms",
                                           "max_response_bytes",
                                           "max_host_connections",
                                           "max_depth",
                                           "ca_file",
                                           "ca_path",
                                           "user_agent",
                                           "unsafe_skip_tls_verify",
                                           "keep_null",
                                           NULL};
enum {
    OPT_CONNECT_TIMEOUT_MS,
    OPT_TIMEOUT_MS,
    OPT_MAX_RESPONSE_BYTES,
    OPT_MAX_HOST_CONNECTIONS,
    OPT_MAX_DEPTH,
    OPT_CA_FILE,
    OPT_CA_PATH,
    OPT_USER_AGENT,
    OPT_UNSAFE_SKIP_TLS_VERIFY,
    OPT_KEEP_NULL
};

/* The index of option name k in OPTION_NAMES; raises for an unknown one,
 * listing the known ones. */
static int option_index(lua_State *L, const char *k)
{
    luaL_Buffer b;
    int i;
    for (i = 0; OPTION_NAMES[i] != NULL; i++)
        if (strcmp(k, OPTION_NAMES[i]) == 0)
            return i;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "unknown transport option '%s' (known: ", k);
    luaL_addvalue(&b);
    for (i = 0; OPTION_NAMES[i] != NULL; i++) {
        luaL_addstring(&b, OPTION_NAMES[i]);
        luaL_addstring(&b, OPTION_NAMES[i + 1] != NULL ? ", " : ")");
    }
    luaL_pushresult(&b);
    return lua_error(L);
}

/* Reads the options table at idx (names and C types: the limits of each
 * are passage.options', checked once by users.new). Strings point into the
 * table, which the caller keeps on the stack until they are copied. */
static void parse_opts(lua_State *L, int idx, parsed_opts *o)
{
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "transport option names must be strings (got %s)", luaL_typename(L, -2));
        k = lua_tostring(L, -2);
        switch (option_index(L, k)) {
        case OPT_CONNECT_TIMEOUT_MS:
            o->connect_timeout_ms = (long)opt_whole(L, k, 2147483647.0);
            break;
        case OPT_TIMEOUT_MS:
            o->timeout_ms = (long)opt_whole(L, k, 2147483647.0);
            break;
        case OPT_MAX_RESPONSE_BYTES:
            o->max_response_bytes = (curl_off_t)opt_whole(L, k, 9007199254740992.0);
            break;
        case OPT_MAX_HOST_CONNECTIONS:
            o->max_host_connections = (long)opt_whole(L, k, 2147483647.0);
            break;
        case OPT_MAX_DEPTH:
            o->max_depth = psg_json_max_depth_option(L, "transport");
            break;
        case OPT_CA_FILE:
            o->ca_file = opt_string(L, k);
            break;
        case OPT_CA_PATH:
            o->ca_path = opt_string(L, k);
            break;
        case OPT_USER_AGENT:
            o->user_agent = opt_string(L, k);
            break;
        case OPT_UNSAFE_SKIP_TLS_VERIFY:
            o->skip_tls_verify = opt_bool(L, k);
            break;
        default: /* OPT_KEEP_NULL */
            o->keep_null = opt_bool(L, k);
            break;
        }
        lua_pop(L, 1);
    }
}

static char *dup_or_null(const char *s, int *failed)
{
    char *p;
    if (s == NULL)
        return NULL;
    p = (char *)malloc(strlen(s) + 1);
    if (p == NULL)
        *failed = 1;
    else
        strcpy(p, s);
    return p;
}

static int l_new(lua_State *L)
{
    parsed_opts o;
    psg_transport *tr;
    int failed = 0;

    parse_opts(L, 1, &o);
    pthread_once(&global_once, global_init);
    if (global_result != CURLE_OK)
        return luaL_error(L, "curl_global_init: %s", curl_easy_strerror(global_result));

    /* The userdata gets its metatable (and so its __gc) before any C memory
     * is attached to it: whatever raises after this point leaks nothing. */
    tr = (psg_transport *)psg_newuserdata(L, sizeof *tr);
    memset(tr, 0, sizeof *tr);
    tr->closed = 1; /* until fully built; __gc then frees what exists */
    luaL_getmetatable(L, PSG_TRANSPORT_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, 2, 0); /* the anchor table */
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, PSG_ANCHOR_TRANSPORT);
    psg_json_push_key_table(L);
    lua_rawseti(L, -2, PSG_ANCHOR_KEY_TABLE);
    psg_setuservalue(L, -2);

    tr->connect_timeout_ms = o.connect_timeout_ms;
    tr->timeout_ms = o.timeout_ms;
    tr->max_response_bytes = o.max_response_bytes;
    tr->max_host_connections = o.max_host_connections;
    tr->tls_verify = !o.skip_tls_verify;
    tr->json.keep_null = o.keep_null;
    tr->json.max_depth = o.max_depth;
    tr->ca_file = dup_or_null(o.ca_file, &failed);
    tr->ca_path = dup_or_null(o.ca_path, &failed);
    tr->user_agent = dup_or_null(o.user_agent, &failed);
    tr->shapes = psg_json_shapes_new();
    tr->multi = curl_multi_init();
    tr->closed = 0;
    if (failed || tr->shapes == NULL || tr->multi == NULL)
        return luaL_error(L, "out of memory creating a transport"); /* __gc frees */
    curl_multi_setopt(tr->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(tr->multi, CURLMOPT_SOCKETDATA, tr);
    curl_multi_setopt(tr->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(tr->multi, CURLMOPT_TIMERDATA, tr);
    if (tr->max_host_connections > 0)
        curl_multi_setopt(tr->multi, CURLMOPT_MAX_HOST_CONNECTIONS, tr->max_host_connections);
    return 1;
}

void psg_transport_register(lua_State *L)
{
    static const luaL_Reg methods[] = {{"start", psg_request_start},
                                       {"perform", l_perform},
                                       {"wait", l_wait},
                                       {"pending", l_pending},
                                       {"socket_changes", l_socket_changes},
                                       {"headers", l_headers},
                                       {"timer_ms", l_timer_ms},
                                       {"socket_action", l_socket_action},
                                       {"close", l_close},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_gc},
#if LUA_VERSION_NUM >= 504
        {"__close", l_close},
#endif
        {"__tostring", l_tostring},
        {NULL, NULL}
    };
    int classes;
    luaL_newmetatable(L, PSG_TRANSPORT_MT);
    classes = lua_gettop(L);
    luaL_newmetatable(L, PSG_REQUEST_MT);
    luaL_newmetatable(L, PSG_HEADERS_MT);
    psg_class_fill(L, classes, PSG_UP_TRANSPORT_MT, PSG_TRANSPORT_MT, meta, methods);
    psg_request_register(L, classes);
    psg_headers_register(L, classes);
    lua_pop(L, PSG_UP_CLASSES);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "transport");
}
