/*
 * A request: one libcurl easy handle carrying one HTTP exchange on a
 * transport (transport.c), and the response it produced.
 *
 * Lua-visible contract:
 *
 *   transport:start(method, url, headers, body [, timeout_ms]) -> request
 *     method     "GET", "POST", "PATCH", "DELETE" or "PUT"
 *     url        string; raises if it contains CR, LF or NUL
 *     headers    nil, an array of "Name: value" strings, or a header set
 *                made by transport:headers(array) (headers.c: checked and built once,
 *                for headers sent on many requests); raises if a string
 *                contains CR, LF or NUL (the message names its position,
 *                never its text: it may be the Authorization header)
 *     body       nil or a string (copied). Content-Length is set; libcurl's
 *                own Content-Type for a body and "Expect: 100-continue" are
 *                never sent (a Content-Type given in headers is kept).
 *                A POST always opens a new connection, so libcurl never
 *                sends it twice (see setup_easy).
 *     timeout_ms total time allowed for this transfer, > 0; overrides the
 *                transport's timeout_ms (so a deadline can span retries)
 *     Adds the transfer to the transport and lets libcurl start it at once
 *     (reuse a kept-alive connection or begin connecting, send what the
 *     socket takes), all without blocking: the request travels while the
 *     caller does other work. Nothing is waited for. Returns nil when the
 *     transport is (or was meanwhile) closed.
 *
 *   request:done() -> boolean
 *   request:cancel()      stops the transfer if it is in flight; response()
 *                         then reports kind "cancelled". perform() does not
 *                         return a cancelled request.
 *   request:close(), __close (5.4): cancel if in flight and release
 *                         the memory now; response() then raises. Reading
 *                         the response releases it too; a request neither
 *                         read nor closed is released when its transport
 *                         closes (there is no finalizer per request).
 *   request:size():       body bytes received so far (what response()
 *                         would decode; 0 once it was read)
 *   tostring(request):    "passage.request: GET in flight" / "... done" /
 *                         "passage.request: closed"
 *
 *   request:response([check [, into]]) -> table | nil, message (raises if
 *   the request is not done, or closed). It can be read once; a second call
 *   raises. nil, message: building the table raised (out of memory while
 *   decoding, say); the request is unread, and close() releases it. into: a
 *   table without any of the fields, filled and returned instead of a new
 *   one (the engine's, reused: its keys stay, so filling it adds none).
 *   Fields:
 *     kind          nil when the HTTP exchange completed (any status); else
 *                   "timeout", "connect" (could not resolve or connect, or
 *                   the URL was unusable: the request never left), "tls",
 *                   "network" (send/receive error, dropped connection,
 *                   partial body, a reply that is not HTTP), "too_large"
 *                   (the body over max_response_bytes, a header or the
 *                   request over libcurl's limits), "cancelled"
 *     message       text of the failure, nil on success. Taken from
 *                   libcurl's error buffer, which never holds request
 *                   headers.
 *     sent          false when the request provably never reached the
 *                   server: not one byte of it was written
 *                   (CURLINFO_REQUEST_SIZE 0); true otherwise
 *     status        HTTP status, 0 when none was received
 *     retry_after   Retry-After header value or nil
 *     content_type  Content-Type header value or nil
 *     body_size     body bytes received, after decompression
 *     body          the decoded JSON value, when the exchange completed and
 *                   the body is non-empty JSON (decoded straight from the
 *                   receive buffer: no Lua string of the body is made)
 *     checked       with body: true when `check` (a core.checker(fields,
 *                   path), run while decoding) was given and every value at
 *                   its path passed
 *     decode_error  decoder message when the body is non-empty but not JSON
 *     raw           the body as a string in that case, else nil
 *     connects      new connections this transfer opened (0: one was reused)
 *   After response() the receive buffer is freed; the easy handle went back
 *   to the transport's pool as soon as the transfer ended.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "private.h"

/* ---- libcurl callbacks: C memory only ----------------------------------- */

/* Ends the transfer: no memory for what the response holds. */
static size_t out_of_memory(psg_request *r)
{
    r->out_of_memory = 1;
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    psg_request *r = ((psg_easy *)userdata)->r;
    size_t n = size * nmemb;
    /* CURLOPT_MAXFILESIZE only sees a declared Content-Length; chunked and
     * compressed bodies are capped here. Returning short aborts the
     * transfer. */
    if (r->max_body > 0 && (curl_off_t)n > r->max_body - (curl_off_t)r->body.len) {
        r->too_large = 1;
        return 0;
    }
    if (!psg_buf_append(&r->body, ptr, n))
        return out_of_memory(r);
    return n;
}

/* The Content-Type of every answer of the API: kept as this one static
 * string, not a copy per response (build_response has it as a Lua string
 * too). */
static const char JSON_TYPE[] = "application/json";

/* Frees a kept header value. */
static void free_value(char *v)
{
    if (v != JSON_TYPE)
        free(v);
}

/* Keeps a header value in *dst (replacing any), trimmed of surrounding
 * blanks and the line end, truncated to cap - 1 bytes; 0 when out of
 * memory. */
static int keep_value(char **dst, size_t cap, const char *v, size_t len)
{
    char *copy;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len >= cap)
        len = cap - 1;
    if (len == sizeof JSON_TYPE - 1 && memcmp(v, JSON_TYPE, len) == 0) {
        copy = (char *)JSON_TYPE;
    } else {
        if ((copy = (char *)malloc(len + 1)) == NULL)
            return 0;
        memcpy(copy, v, len);
        copy[len] = '\0';
    }
    free_value(*dst);
    *dst = copy;
    return 1;
}

/* Forgets the header values kept (a new response begins, or the request is
 * released). */
static void forget_values(psg_request *r)
{
    free_value(r->retry_after);
    free_value(r->content_type);
    r->retry_after = r->content_type = NULL;
}

/* Makes room for a declared Content-Length at once, so the body is not
 * copied through a chain of doubling buffers. Only up to a spare buffer's
 * size: a length the server merely claims costs no more than that, and a
 * compressed body may still grow past it. Failure is harmless here:
 * write_cb reports a real shortage. */
static void presize_body(psg_request *r, const char *v, size_t len)
{
    size_t n = 0, i = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
        n = n * 10 + (size_t)(v[i] - '0');
        if (n > PSG_SPARE_MAX_BYTES)
            return;
    }
    if (n > 0 && (r->max_body <= 0 || (curl_off_t)n <= r->max_body))
        (void)psg_buf_reserve(&r->body, n);
}

static int header_is(const char *line, size_t len, const char *name, size_t name_len)
{
    return len > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0;
}

/* Whether the transfer runs over TLS, where ALPN may have chosen HTTP/2 and
 * libcurl then writes an "HTTP/2" status line of its own. */
static int over_tls(const psg_request *r)
{
    char *scheme = NULL;
    return r->easy != NULL &&
           curl_easy_getinfo(r->easy->curl, CURLINFO_SCHEME, &scheme) == CURLE_OK &&
           scheme != NULL && strcasecmp(scheme, "https") == 0;
}

/* A Content-Length value: digits, blanks around them, nothing else (libcurl
 * would read "12abc" as 12). */
static int is_length(const char *v, size_t len)
{
    size_t i = 0, digits = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++)
        digits++;
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
        i++;
    return digits > 0 && i == len;
}

/* Ends the transfer on a reply whose framing the cosocket transport refuses
 * too (lua/passage/cosocket/http1.lua), so that both give one verdict:
 * returning short makes libcurl stop. */
static size_t refuse(psg_request *r, const char *why)
{
    r->malformed = why;
    return 0;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Called as each attempt's request is about to go, on a connection made or
 * reused. A message libcurl wrote before is from a step that did not end the
 * transfer: the reset of a kept-alive connection it then left for a new one,
 * an address that refused. libcurl writes only the first message of a
 * transfer, so it is dropped and a later failure is told by its code. */
static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
    ((psg_easy *)clientp)->errbuf[0] = '\0';
    return CURL_PREREQFUNC_OK;
}
#endif

static size_t header_cb(char *line, size_t size, size_t nitems, void *userdata)
{
    psg_request *r = ((psg_easy *)userdata)->r;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        if (!(len >= 7 && memcmp(line, "HTTP/1.", 7) == 0) && !over_tls(r)) {
            r->bad_status_line = 1;
            return refuse(r, "the reply is not HTTP/1.x");
        }
        /* A new response begins (after a 1xx, or a retry on a fresh
         * connection): only the final one's headers count. */
        forget_values(r);
    } else if (header_is(line, len, "retry-after", 11)) {
        if (!keep_value(&r->retry_after, PSG_RETRY_AFTER_MAX, line + 12, len - 12))
            return out_of_memory(r);
    } else if (header_is(line, len, "content-type", 12)) {
        if (!keep_value(&r->content_type, PSG_CONTENT_TYPE_MAX, line + 13, len - 13))
            return out_of_memory(r);
    } else if (header_is(line, len, "content-length", 14)) {
        if (!is_length(line + 15, len - 15))
            return refuse(r, "bad Content-Length in the response");
        presize_body(r, line + 15, len - 15);
    }
    return len;
}

/* ---- ending a transfer (C only; called from transport.c as well) -------- */

/* What the request keeps of its transfer, ended with `code`, before the
 * handle goes back to the pool. The message is copied only when libcurl
 * wrote one (a failure); without memory for it, the code's own text stands
 * in. The size of the headers tells only a receive error apart. */
static void gather_info(psg_request *r, CURLcode code)
{
    CURL *curl = r->easy->curl;
    const char *message = r->easy->errbuf;
    long v = 0;
    /* No final status: interim (1xx) answers only, or a refused status
     * line, count as none, as on the cosocket transport. */
    if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &v) == CURLE_OK && v >= 200 &&
        !r->bad_status_line)
        r->status = v;
    v = 0;
    if (curl_easy_getinfo(curl, CURLINFO_REQUEST_SIZE, &v) == CURLE_OK)
        r->request_size = v;
    v = 0;
    if (curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &v) == CURLE_OK)
        r->connects = v;
    v = 0;
    if (code == CURLE_RECV_ERROR && curl_easy_getinfo(curl, CURLINFO_HEADER_SIZE, &v) == CURLE_OK)
        r->header_bytes = v;
    if (message[0] != '\0') {
        size_t len = strlen(message);
        if ((r->error = (char *)malloc(len + 1)) != NULL)
            memcpy(r->error, message, len + 1);
    }
}

/* Takes r out of libcurl and gives its easy handle back to the pool. */
static void release_transfer(psg_request *r, CURLcode code)
{
    psg_transport *tr = r->tr;
    if (r->easy != NULL) {
        gather_info(r, code);
        if (tr != NULL && tr->multi != NULL)
            curl_multi_remove_handle(tr->multi, r->easy->curl);
        psg_transport_put_easy(tr, r->easy);
        r->easy = NULL;
    }
    psg_headers_release(r->headers);
    r->headers = NULL;
    if (tr != NULL)
        psg_transport_unlink(tr, r);
    r->done = 1;
}

void psg_request_finish(psg_request *r, CURLcode code)
{
    psg_transport *tr = r->tr;
    release_transfer(r, code);
    r->code = code;
    psg_transport_link_finished(tr, r);
}

void psg_request_abort(psg_request *r, int why)
{
    if (r->list != PSG_LIST_INFLIGHT)
        return;
    release_transfer(r, CURLE_ABORTED_BY_CALLBACK);
    r->code = CURLE_ABORTED_BY_CALLBACK;
    r->ended = why;
}

/* Frees what the request holds outside its userdata; never while libcurl
 * may still write to it (the transfer has ended). */
static void free_memory(psg_request *r)
{
    psg_transport_give_buffer(r->tr, &r->body);
    psg_buf_free(&r->scratch);
    forget_values(r);
    free(r->error);
    r->error = NULL;
}

/* ---- Lua side ----------------------------------------------------------- */

static psg_request *check_request(lua_State *L, int idx)
{
    return (psg_request *)psg_checkclass(L, idx, PSG_UP_REQUEST_MT, PSG_REQUEST_MT);
}

/* Ends r for good: cancels it if it is in flight, takes it off its
 * transport's lists and out of its anchors (the request's user value: the
 * transport's anchor table), and frees its memory, unless a decode is using
 * it (that decode's end frees it). */
static void release(lua_State *L, int idx, psg_request *r)
{
    if (r->tr != NULL) {
        if (r->list == PSG_LIST_INFLIGHT)
            psg_request_abort(r, PSG_END_CANCELLED);
        else
            psg_transport_unlink(r->tr, r);
        psg_getuservalue(L, idx);
        if (lua_istable(L, -1))
            psg_transport_unanchor(L, r);
        lua_pop(L, 1);
    }
    psg_request_detach(r);
}

static int l_done(lua_State *L)
{
    lua_pushboolean(L, check_request(L, 1)->done);
    return 1;
}

static int l_size(lua_State *L)
{
    psg_pushwhole(L, (long long)check_request(L, 1)->body.len);
    return 1;
}

/* A cancelled request answers "cancelled" from what its struct holds, so
 * its memory goes now: nothing else would free it if it is then dropped. */
static int l_cancel(lua_State *L)
{
    psg_request *r = check_request(L, 1);
    if (r->list == PSG_LIST_INFLIGHT)
        release(L, 1, r);
    return 0;
}

static int l_close(lua_State *L)
{
    psg_request *r = check_request(L, 1);
    if (r->closed)
        return 0;
    release(L, 1, r);
    r->done = 1;
    r->closed = 1;
    return 0;
}

/* Decodes the body into a value pushed on the stack (1), or fills *err (0);
 * key_table: the stack index of the transport's key table. The transport's
 * shape cache outlives a close() of the transport and is freed by its __gc,
 * which cannot run while this request is reachable (its user value holds
 * the transport): the pointer stays good for the decode. */
static int decode_body(lua_State *L, psg_request *r, const psg_json_opts *opts, int key_table,
                       psg_json_error *err)
{
    psg_json_shapes *shapes = r->tr != NULL ? r->tr->shapes : NULL;
    int ok;
    memset(err, 0, sizeof *err);
    r->decoding = 1;
    ok = psg_json_decode(L, r->body.data, r->body.len, opts, shapes, key_table, &r->scratch, err);
    r->decoding = 0;
    return ok;
}

void psg_request_detach(psg_request *r)
{
    if (!r->decoding)
        free_memory(r);
    r->tr = NULL;
}

static int l_tostring(lua_State *L)
{
    psg_request *r = check_request(L, 1);
    if (r->closed)
        lua_pushliteral(L, "passage.request: closed");
    else
        lua_pushfstring(L, "passage.request: %s %s", r->method, r->done ? "done" : "in flight");
    return 1;
}

/* Whether any byte of the request was written: the one fact every retry
 * decision about a call that is not safe to repeat rests on. libcurl counts
 * the bytes it sent (CURLINFO_REQUEST_SIZE), including those of a request
 * it sent again on a new connection. */
static int was_sent(const psg_request *r)
{
    return r->request_size > 0;
}

/* libcurl's own caps: on a response header line (and on the request it
 * builds) it reports CURLE_OUT_OF_MEMORY (ours on the body sets
 * out_of_memory); on all the headers of a response, CURLE_TOO_LARGE since
 * 8.6, and before that a receive error after counting the line that went
 * over (its message is no sign: libcurl keeps the first one of a transfer,
 * which may be of a stale connection it left before this response). */
static int over_libcurl_limit(const psg_request *r)
{
    if (r->code == CURLE_OUT_OF_MEMORY && !r->out_of_memory)
        return 1;
#if LIBCURL_VERSION_NUM >= 0x080600
    if (r->code == CURLE_TOO_LARGE)
        return 1;
#endif
    return r->code == CURLE_RECV_ERROR && r->header_bytes > PSG_LIBCURL_HEADERS_MAX;
}

static const char *kind_of(const psg_request *r)
{
    if (r->ended)
        return "cancelled";
    if (r->malformed != NULL)
        return "network";
    if (r->too_large || r->code == CURLE_FILESIZE_EXCEEDED || over_libcurl_limit(r))
        return "too_large";
    switch (r->code) {
    case CURLE_OK:
        return NULL;
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Before sending: a URL libcurl cannot use. After: a reply that is
         * not HTTP ("HTTP/1.1 000", HTTP/0.9), a broken exchange. */
        return was_sent(r) ? "network" : "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
#if LIBCURL_VERSION_NUM >= 0x074d00
    case CURLE_SSL_CLIENTCERT:
#endif
        return "tls";
    default:
        return "network";
    }
}

/* The response table's field names, made once as upvalues of response():
 * setting a field then costs no lookup of its name among the strings. The
 * upvalue after them is JSON_TYPE as a Lua string, for the same reason. */
enum {
    F_KIND = 1,
    F_MESSAGE,
    F_SENT,
    F_STATUS,
    F_RETRY_AFTER,
    F_CONTENT_TYPE,
    F_BODY_SIZE,
    F_CONNECTS,
    F_BODY,
    F_CHECKED,
    F_DECODE_ERROR,
    F_RAW,
    F_COUNT = F_RAW,
    JSON_TYPE_STRING
};
static const char *const FIELD_NAMES[F_COUNT] = {
    "kind",      "message",  "sent", "status",  "retry_after",  "content_type",
    "body_size", "connects", "body", "checked", "decode_error", "raw"};

/* A field of the table at the top: its name is pushed, then its value,
 * then set_field sets it (popping both). */
static void push_name(lua_State *L, int f)
{
    lua_pushvalue(L, lua_upvalueindex(f));
}

static void set_field(lua_State *L)
{
    lua_rawset(L, -3);
}

static void set_string(lua_State *L, int f, const char *v)
{
    push_name(L, f);
    lua_pushstring(L, v);
    set_field(L);
}

static void set_whole(lua_State *L, int f, long long v)
{
    push_name(L, f);
    psg_pushwhole(L, v);
    set_field(L);
}

static void set_boolean(lua_State *L, int f, int v)
{
    push_name(L, f);
    lua_pushboolean(L, v);
    set_field(L);
}

static void push_message(lua_State *L, const psg_request *r)
{
    if (r->ended == PSG_END_CANCELLED)
        lua_pushliteral(L, "request cancelled");
    else if (r->ended == PSG_END_TRANSPORT_CLOSED)
        lua_pushliteral(L, "transport closed while the request was in flight");
    else if (r->malformed != NULL)
        lua_pushstring(L, r->malformed);
    else if (r->too_large || r->code == CURLE_FILESIZE_EXCEEDED) {
        /* Whole, as the option is: Lua 5.4's "%f" would write 16777216.0. */
        char max[32];
        snprintf(max, sizeof max, "%lld", (long long)r->max_body);
        lua_pushfstring(L, "response body larger than max_response_bytes (%s)", max);
    } else if (over_libcurl_limit(r))
        lua_pushstring(L, was_sent(r) ? "response headers larger than libcurl accepts"
                                      : "request larger than libcurl accepts");
    else if (r->out_of_memory)
        lua_pushliteral(L, "out of memory storing the response");
    else if (r->error != NULL)
        lua_pushstring(L, r->error);
    else
        lua_pushstring(L, curl_easy_strerror(r->code));
}

/* Builds the response table of the request at 1 (checked: done, not read,
 * not closed) with the check at 2, into the table at 3 if there is one, with
 * the transport's key table at 4, and releases the request. Everything that
 * can raise (out of memory) happens before any C memory is released, so
 * l_response can report the raise and leave the request to be closed. */
static int build_response(lua_State *L)
{
    psg_request *r = (psg_request *)lua_touserdata(L, 1);
    const psg_json_check *check = psg_json_check_at(L, 2);
    int key_table = lua_istable(L, 4) ? 4 : 0;
    const char *kind = kind_of(r);
    luaL_checkstack(L, 8, "passage.request");
    lua_settop(L, 4); /* the check stays referenced while it is used */
    if (lua_istable(L, 3))
        lua_pushvalue(L, 3);
    else
        lua_createtable(L, 0, 8); /* room for a JSON answer's fields */
    if (kind != NULL) {
        set_string(L, F_KIND, kind);
        push_name(L, F_MESSAGE);
        push_message(L, r);
        set_field(L);
    }
    set_boolean(L, F_SENT, was_sent(r));
    set_whole(L, F_STATUS, r->status);
    if (r->retry_after != NULL)
        set_string(L, F_RETRY_AFTER, r->retry_after);
    if (r->content_type == JSON_TYPE) {
        push_name(L, F_CONTENT_TYPE);
        lua_pushvalue(L, lua_upvalueindex(JSON_TYPE_STRING));
        set_field(L);
    } else if (r->content_type != NULL) {
        set_string(L, F_CONTENT_TYPE, r->content_type);
    }
    set_whole(L, F_BODY_SIZE, (long long)r->body.len);
    set_whole(L, F_CONNECTS, r->connects);
    if (kind == NULL && r->body.len > 0) {
        psg_json_error err;
        psg_json_opts opts = r->json;
        opts.check = check;
        push_name(L, F_BODY);
        if (decode_body(L, r, &opts, key_table, &err)) {
            set_field(L);
            set_boolean(L, F_CHECKED, check != NULL && !err.check_failed);
        } else {
            lua_pop(L, 1);
            set_string(L, F_DECODE_ERROR, err.message);
            push_name(L, F_RAW);
            lua_pushlstring(L, r->body.data, r->body.len);
            set_field(L);
        }
    }
    /* Read once and not kept: the request is done with its transport, and
     * a request held by the caller holds no decoded page alive. */
    r->response_read = 1;
    release(L, 1, r);
    return 1;
}

/* request:response([check]): raises on a misuse (not done, read, closed);
 * a raise while building the table (out of memory while decoding, say) is
 * returned as nil, message instead, and the request is left for close().
 * So a caller needs no pcall of its own around the call, and on LuaJIT the
 * code after it stays in one compiled trace. The table is built by the
 * upvalue after the class metatables, whose upvalues are the field names. */
#define RESPONSE_BUILDER (PSG_UP_CLASSES + 1)

static int l_response(lua_State *L)
{
    psg_request *r = check_request(L, 1);
    if (!r->done)
        return luaL_error(L, "request is not done");
    if (r->response_read)
        return luaL_error(L, "the response was already read");
    if (r->closed)
        return luaL_error(L, "request is closed");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    psg_transport_push_key_table(L, 1);
    lua_pushvalue(L, lua_upvalueindex(RESPONSE_BUILDER));
    lua_insert(L, 1);
    if (lua_pcall(L, 4, 1, 0) == 0)
        return 1;
    /* The decode, if it was running, is over: what it kept from being
     * freed goes now if the transport let go of the request meanwhile. */
    if (r->decoding) {
        r->decoding = 0;
        if (r->tr == NULL)
            free_memory(r);
    }
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* ---- transport:start ---------------------------------------------------- */

/* The arguments of transport:start(), checked before anything is made. */
typedef struct start_args {
    int method; /* index in METHODS */
    const char *url;
    size_t url_len;
    const char *body; /* NULL: none */
    size_t body_len;
    psg_headers *shared;    /* a header set given; else the array's n_headers */
    int n_headers, present; /* PSG_HEADER_* bits of the array's headers */
    long timeout_ms;
} start_args;

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)

/* The DNS cache timeout of a transfer starting now. libcurl's default (60
 * s) makes every transfer prune the multi handle's DNS cache as it ends: a
 * walk over its 71 buckets, for the one or two names a client uses. So
 * transfers keep answers for good (-1: neither expired nor pruned), but for
 * one a minute, which takes no answer older than PSG_DNS_RENEW_S and prunes
 * those at its end: an answer serves for less than twice that. */
static long dns_cache_timeout(psg_transport *tr)
{
    if (tr->turn_ms < tr->dns_renew_ms)
        return -1;
    tr->dns_renew_ms = tr->turn_ms + PSG_DNS_RENEW_S * 1000.0;
    return PSG_DNS_RENEW_S;
}

/* What differs between two bodyless GETs on the same transport: the URL,
 * and the timeout, headers and DNS cache timeout when they are not the ones
 * the plain handle holds (see psg_easy). */
static CURLcode setup_plain_get(psg_easy *e, psg_request *r, const start_args *a, long dns)
{
    CURL *easy = e->curl;
    CURLcode rc = psg_easy_set_url(e, a->url, a->url_len);
    long timeout_ms = a->timeout_ms;
    if (e->timeout_ms != timeout_ms)
        SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
    if (e->headers != r->headers->bodyless)
        SETOPT(CURLOPT_HTTPHEADER, r->headers->bodyless);
    if (e->dns_cache_timeout != dns)
        SETOPT(CURLOPT_DNS_CACHE_TIMEOUT, dns);
    e->timeout_ms = timeout_ms;
    e->headers = r->headers->bodyless;
    e->dns_cache_timeout = dns;
    return rc;
}

/* Applies every option of the transfer to a fresh (or reset) easy handle. */
static CURLcode setup_easy(psg_easy *e, psg_transport *tr, psg_request *r, const start_args *a,
                           long dns)
{
    CURL *easy = e->curl;
    CURLcode rc = psg_easy_set_url(e, a->url, a->url_len);
    const char *body = a->body;
    size_t body_len = a->body_len;
    long timeout_ms = a->timeout_ms;
    /* A body (possibly empty) goes with every method but GET and DELETE. */
    int sends_body =
        body != NULL || (strcmp(r->method, "GET") != 0 && strcmp(r->method, "DELETE") != 0);
    SETOPT(CURLOPT_PRIVATE, (char *)e);
    SETOPT(CURLOPT_NOSIGNAL, 1L); /* may run in threads that own signals */
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, (void *)e);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, (void *)e);
    SETOPT(CURLOPT_ERRORBUFFER, e->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075000
    SETOPT(CURLOPT_PREREQFUNCTION, prereq_cb);
    SETOPT(CURLOPT_PREREQDATA, (void *)e);
#endif
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, tr->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
    SETOPT(CURLOPT_DNS_CACHE_TIMEOUT, dns);
    e->dns_cache_timeout = dns;
    if (tr->max_response_bytes > 0)
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, tr->max_response_bytes);
    SETOPT(CURLOPT_SSL_VERIFYPEER, tr->tls_verify ? 1L : 0L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, tr->tls_verify ? 2L : 0L);
    if (tr->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, tr->ca_file);
    if (tr->ca_path != NULL)
        SETOPT(CURLOPT_CAPATH, tr->ca_path);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    /* Our sockets: a host reactor's view of them follows their numbers. */
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, psg_transport_open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, (void *)tr);
    SETOPT(CURLOPT_HTTPHEADER, sends_body ? r->headers->list : r->headers->bodyless);
    e->timeout_ms = timeout_ms;
    e->headers = sends_body ? r->headers->list : r->headers->bodyless;
    if (body != NULL || strcmp(r->method, "GET") != 0) {
        if (sends_body) {
            /* Always a Content-Length, even 0, for methods that carry a
             * body: some servers answer 411 otherwise. */
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            SETOPT(CURLOPT_COPYPOSTFIELDS, body != NULL ? body : "");
        }
        if (strcmp(r->method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, r->method);
        else
            /* libcurl sends a request again, once, when a reused connection
             * closes before any byte of the answer: the server may have acted
             * on the first copy. A POST (create) must never go twice, so it
             * always opens its own connection, where libcurl never resends. */
            SETOPT(CURLOPT_FRESH_CONNECT, 1L);
    } else {
        SETOPT(CURLOPT_HTTPGET, 1L);
    }
    /* No CURLOPT_ACCEPT_ENCODING: neither transport asks for a content
     * coding or undoes one, so a compressed body the server sends unasked is
     * a decode error on both (docs/reliability.md). */
    return rc;
}

static const char *const METHODS[] = {"GET", "POST", "PATCH", "DELETE", "PUT", NULL};

/* Checks the arguments (raising on a bad one); allocates nothing. */
static void check_start_args(lua_State *L, const psg_transport *tr, start_args *a)
{
    memset(a, 0, sizeof *a);
    a->method = luaL_checkoption(L, 2, NULL, METHODS);
    a->url = luaL_checklstring(L, 3, &a->url_len);
    a->timeout_ms = tr->timeout_ms;
    if (psg_has_ctl(a->url, a->url_len))
        luaL_argerror(L, 3, "url contains CR, LF or NUL");
    if (!lua_isnil(L, 4)) {
        psg_headers **box = (psg_headers **)psg_testclass(L, 4, PSG_UP_HEADERS_MT);
        if (box != NULL && *box != NULL)
            a->shared = *box;
        else
            a->n_headers = psg_headers_check(L, 4, &a->present);
    }
    if (!lua_isnoneornil(L, 5))
        a->body = luaL_checklstring(L, 5, &a->body_len);
    if (!lua_isnoneornil(L, 6)) {
        lua_Number t = luaL_checknumber(L, 6);
        if (!(t > 0))
            luaL_argerror(L, 6, "timeout_ms must be > 0");
        a->timeout_ms = t > 2147483647.0 ? 2147483647L : (long)ceil(t);
    }
}

/* Pushes the request userdata and anchors it in the transport (whose
 * anchor table becomes its user value too). The Lua allocations come first:
 * a finalizer they run may close the transport, checked once they are done,
 * before any C resource is taken. NULL when the transport was closed
 * meanwhile (nothing started). */
static psg_request *new_request(lua_State *L, psg_transport *tr, const start_args *a)
{
    psg_request *r = (psg_request *)psg_newuserdata(L, sizeof *r);
    int top = lua_gettop(L);
    memset(r, 0, sizeof *r);
    lua_pushvalue(L, lua_upvalueindex(PSG_UP_REQUEST_MT));
    lua_setmetatable(L, top);
    strcpy(r->method, METHODS[a->method]);
    psg_getuservalue(L, 1); /* the transport's anchors: the request's too */
    lua_pushvalue(L, -1);
    psg_setuservalue(L, top);
    lua_pushlightuserdata(L, r);
    lua_pushvalue(L, top);
    lua_rawset(L, -3); /* the anchor: may raise, before any C resource */
    if (tr->closed) {
        psg_transport_unanchor(L, r);
        return NULL;
    }
    lua_pop(L, 1);
    r->tr = tr;
    r->max_body = tr->max_response_bytes;
    r->json = tr->json;
    psg_transport_take_buffer(tr, &r->body); /* never raises */
    return r;
}

/* The headers, an easy handle set up for the transfer, room for its
 * sockets, and its place in the multi handle. Returns NULL, or why it
 * failed; *easy is the handle taken, if any. Never raises. */
static const char *take_transfer(lua_State *L, psg_transport *tr, psg_request *r,
                                 const start_args *a, psg_easy **easy)
{
    int get = a->body == NULL && a->method == 0;
    psg_easy *e;
    CURLcode rc;
    CURLMcode mc;
    if (a->shared != NULL) {
        a->shared->refs++;
        r->headers = a->shared;
    } else if ((r->headers = psg_headers_build(L, a->n_headers > 0 ? 4 : 0, a->n_headers,
                                               a->present, tr->user_agent)) == NULL) {
        return "out of memory";
    }
    if ((*easy = e = psg_transport_take_easy(tr)) == NULL)
        return "out of memory";
    e->r = r;
    e->errbuf[0] = '\0';
    if (e->plain && get) {
        rc = setup_plain_get(e, r, a, dns_cache_timeout(tr));
    } else {
        if (e->plain)
            curl_easy_reset(e->curl);
        rc = setup_easy(e, tr, r, a, dns_cache_timeout(tr));
    }
    /* A handle that failed to take an option is reset when it goes back. */
    e->plain = get && rc == CURLE_OK;
    if (rc != CURLE_OK)
        return curl_easy_strerror(rc);
    /* A transfer has one socket, two while connecting (happy eyeballs). */
    if (!psg_transport_reserve_sockets(tr, 2 * (tr->n_inflight + 1)))
        return "out of memory";
    if ((mc = curl_multi_add_handle(tr->multi, e->curl)) != CURLM_OK)
        return curl_multi_strerror(mc);
    return NULL;
}

/* Gives back what take_transfer took, drops the anchor and raises. */
static int fail_start(lua_State *L, psg_transport *tr, psg_request *r, psg_easy *easy,
                      const char *why)
{
    if (easy != NULL)
        psg_transport_put_easy(tr, easy);
    psg_headers_release(r->headers);
    r->headers = NULL;
    free_memory(r);
    r->tr = NULL;
    r->done = 1;
    r->closed = 1;
    psg_getuservalue(L, 1);
    psg_transport_unanchor(L, r);
    lua_pop(L, 1);
    return luaL_error(L, "cannot start request: %s", why);
}

int psg_request_start(lua_State *L)
{
    psg_transport *tr =
        (psg_transport *)psg_checkclass(L, 1, PSG_UP_TRANSPORT_MT, PSG_TRANSPORT_MT);
    start_args a;
    psg_request *r;
    psg_easy *easy = NULL;
    const char *fail;
    int top;

    check_start_args(L, tr, &a);
    r = new_request(L, tr, &a);
    top = lua_gettop(L);
    if (r == NULL) {
        lua_pushnil(L);
        return 1;
    }
    /* One reading of the clock for the timer adding it sets and the kick. */
    psg_transport_begin_turn(tr);
    if ((fail = take_transfer(L, tr, r, &a, &easy)) != NULL)
        return fail_start(L, tr, r, easy, fail);
    r->easy = easy;
    psg_transport_link_inflight(tr, r);
    /* On the wire now, not at the next perform(): a caller that starts a
     * call and then works (decodes the last page, runs a game frame) has it
     * travelling meanwhile. */
    psg_transport_kick(tr);
    lua_settop(L, top);
    return 1;
}

void psg_request_register(lua_State *L, int classes)
{
    static const luaL_Reg methods[] = {
        {"done", l_done}, {"size", l_size}, {"cancel", l_cancel}, {"close", l_close}, {NULL, NULL}};
    int f;
    /* No __gc: a request's memory is freed by whoever ends it (see
     * private.h), so the collector has no finalizer to run per call. */
    static const luaL_Reg meta[] = {
#if LUA_VERSION_NUM >= 504
        {"__close", l_close},
#endif
        {"__tostring", l_tostring},
        {NULL, NULL}
    };
    psg_class_fill(L, classes, PSG_UP_REQUEST_MT, PSG_REQUEST_MT, meta, methods);
    lua_getfield(L, classes + PSG_UP_REQUEST_MT - 1, "__index");
    psg_push_classes(L, classes);
    for (f = 0; f < F_COUNT; f++)
        lua_pushstring(L, FIELD_NAMES[f]);
    lua_pushstring(L, JSON_TYPE);
    lua_pushcclosure(L, build_response, JSON_TYPE_STRING);
    lua_pushcclosure(L, l_response, RESPONSE_BUILDER);
    lua_setfield(L, -2, "response");
    lua_pop(L, 1);
}
