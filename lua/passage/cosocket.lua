-- passage.cosocket: the transport of a client inside nginx's Lua module
-- (OpenResty, or Debian's libnginx-mod-http-lua with lua-resty-core). Each
-- exchange runs on nginx cosockets in a light thread of its own, so a call
-- yields to nginx instead of blocking the worker. It offers the engine the
-- same seam as the libcurl transport of passage.core (see that for the
-- meaning of every response field):
--
--   cosocket.available() -> boolean, phase
--     Whether cosockets (and light threads) can be used right now: inside
--     nginx, in one of these phases of ngx.get_phase():
--       rewrite, access, content   a request handler          yes
--       timer                      ngx.timer.* callbacks      yes
--       ssl_cert                   ssl_certificate_by_lua*    yes
--     and not in: init, init_worker (start a timer there instead), set
--     (set_by_lua*), header_filter, body_filter, log, balancer,
--     ssl_session_store, exit_worker; nor in ssl_session_fetch and
--     ssl_client_hello, where nginx has cosockets but cannot wait for or
--     end a light thread. Outside nginx: false.
--
--   cosocket.new(opts) -> transport; the names are those of core.transport
--   (passage.options.TRANSPORT), and as there the defaults and limits are
--   passage.options' (which passes every value; only names and types are
--   checked here); an absent option means none:
--     connect_timeout_ms    whole >= 0 (absent or 0: the exchange's own)
--     timeout_ms            whole >= 0: the whole exchange when start()
--                           gives no limit (absent or 0: none)
--     max_response_bytes    whole >= 0 (absent or 0: no cap); a bigger body
--                           ends the exchange with kind "too_large",
--                           checked as the bytes arrive, chunked or not
--     unsafe_skip_tls_verify  boolean; unless true, the peer's certificate
--                           chain and host name are checked against the CAs
--                           of nginx's lua_ssl_trusted_certificate (with
--                           lua_ssl_verify_depth, default 1)
--     ca_file, ca_path      strings, accepted so that one set of client
--                           options fits both transports; nginx trusts only
--                           the CAs of lua_ssl_trusted_certificate, so they
--                           are not used here (a failed verification says so)
--     user_agent            string (absent: no User-Agent header)
--     keep_null, max_depth  passed to the JSON decoder (core.decoder)
--     max_host_connections  whole >= 0 (absent or 0: no limit): exchanges at
--                           once per host, for all the transports of the
--                           worker with the same settings (and as many
--                           idle connections kept); more wait their turn,
--                           within their own time limit
--
--   transport:headers(array) -> header set, for start(): "Name: value"
--     strings, checked once (a CR, LF or NUL raises; the message names the
--     position, never the text: it may be the Authorization header).
--     Opaque: neither printing nor walking it shows a header.
--   transport:start(method, url, headers, body [, timeout_ms]) -> request
--     Spawns the exchange (ngx.thread.spawn), which connects and sends until
--     its first wait for the network, then returns. A URL that cannot be
--     used (not http or https, a bad port) gives a request that is done at
--     once with kind "connect"; CR, LF, NUL or a space in it raises.
--   transport:wait(request, timeout_ms [, keep]) -> done, finished
--   transport:perform(timeout_ms) -> { request, ... }
--     Both yield to nginx while they wait. With 0 and calls in flight they
--     still let nginx's event loop turn once (ngx.sleep(0)), as the libcurl
--     transport drives its sockets once: a loop polling with 0 lets the
--     exchanges progress instead of holding the worker.
--   transport:pending() -> number in flight
--   transport:close()
--   request:response([check]) -> response table, once (nil, message when
--     building it raised); request:close();
--   request:done()
--
-- HTTP: HTTP/1.1 with keep-alive into nginx's connection pool (directives
-- lua_socket_pool_size and lua_socket_keepalive_timeout), keyed by host,
-- port, TLS, verification and max_host_connections; Connection: close and
-- HTTP/1.0 replies close; Content-Length, chunked and read-to-close bodies;
-- 1xx interim responses skipped; redirects are a status like any other.
-- A POST (a create) always goes on a new connection, so it is never sent on
-- a kept-alive connection that the server has closed meanwhile; that
-- connection is closed after the exchange. Any other method that finds its
-- kept-alive connection closed before a byte of the answer is sent once
-- more on a new one, as libcurl does. Host names are resolved by nginx
-- (its `resolver` directive).
--
-- A light thread belongs to the coroutine that spawned it (what a script
-- sees of this, the `resolver` and TLS trust: docs/guide.md, OpenResty):
-- nginx keeps its context (a few hundred bytes) until that request or timer
-- ends, and only that coroutine can end it early. A request cancelled from
-- elsewhere (another request sharing the client, another light thread) is
-- reported cancelled at once; its exchange runs on to its own end or
-- timeout in the background, and what it reads is dropped. Finished
-- exchanges are released when the starting coroutine waits for them, reads
-- them through perform(), or ends.
--
-- This file is the seam (checks, the objects, start/wait/perform/close and
-- responses); the rest lives by idea under passage.cosocket.*: http1 (the
-- bytes of requests and responses), pool (origins, connections, places of
-- max_host_connections, one exchange over a connection), threads (light
-- threads and the lists of a transport), deadline (time left and failures).
local core = require "passage.core"

-- luacheck: read globals ngx

local cosocket = {}

local http1 = require "passage.cosocket.http1"
local pool = require "passage.cosocket.pool"
local threads = require "passage.cosocket.threads"

local byte, find, sub = string.byte, string.find, string.sub
local now_ms = require("passage.clock").now_ms
local running = coroutine.running
local huge = math.huge
local has_ctl = http1.has_ctl
local wait_until, reap, hand_over = threads.wait_until, threads.reap, threads.hand_over
local take_finished, cancel = threads.take_finished, threads.cancel

local COSOCKET_PHASES = {
    rewrite = true,
    access = true,
    content = true,
    timer = true,
    ssl_cert = true,
}

function cosocket.available()
    local n = rawget(_G, "ngx")
    if type(n) ~= "table" or type(n.get_phase) ~= "function" then
        return false
    end
    local phase = n.get_phase()
    return COSOCKET_PHASES[phase] == true, phase
end

local METHODS = { GET = true, POST = true, PATCH = true, DELETE = true, PUT = true }

-- ---- options --------------------------------------------------------------

-- Names and types only, from the one list both transports take; the
-- limits of each are passage.options' (users.new checks them once). A
-- string goes into the request's head, so a CR, LF or NUL in it raises.
local OPTION_TYPES = require("passage.options").TRANSPORT

local function check_options(opts)
    if opts == nil then
        return {}
    end
    if type(opts) ~= "table" then
        error("passage.cosocket: options must be a table (got " .. type(opts) .. ")", 3)
    end
    for k, v in pairs(opts) do
        local want = type(k) == "string" and OPTION_TYPES[k]
        if not want then
            error("passage.cosocket: unknown transport option '" .. tostring(k) .. "'", 3)
        end
        if type(v) ~= want then
            error("passage.cosocket: transport option '" .. k .. "' must be a " .. want
                .. " (got " .. type(v) .. ")", 3)
        elseif want == "string" and has_ctl(v) then
            error("passage.cosocket: transport option '" .. k .. "' must not contain CR, LF or NUL", 3)
        end
    end
    return opts
end

-- ---- objects ----------------------------------------------------------------

local Transport = {}
Transport.__index = Transport
Transport.__metatable = "passage.transport"

local Request = {}
Request.__index = Request
Request.__metatable = "passage.request"

local function is_transport(t)
    return type(t) == "table" and getmetatable(t) == "passage.transport" and t.requests ~= nil
end

function cosocket.new(opts)
    local o = check_options(opts)
    local n = rawget(_G, "ngx")
    if type(n) ~= "table" or not n.socket then
        error("passage.cosocket: nginx's Lua module is not loaded (no ngx.socket)", 2)
    end
    local decoder_opts = { keep_null = o.keep_null == true }
    -- The decoder's own rule for its depth, as core.transport applies it.
    decoder_opts.max_depth = o.max_depth
    local max_host = o.max_host_connections or 0
    return setmetatable({
        ngx = n,
        connect_timeout_ms = o.connect_timeout_ms or 0,
        timeout_ms = o.timeout_ms or 0,
        max_response_bytes = o.max_response_bytes or 0,
        tls_verify = not o.unsafe_skip_tls_verify,
        uses_ca_options = o.ca_file ~= nil or o.ca_path ~= nil,
        user_agent_line = o.user_agent and "User-Agent: " .. o.user_agent .. "\r\n" or "",
        max_host_connections = max_host,
        decoder = core.decoder(decoder_opts),
        origins = {},      -- "scheme://authority" -> where and how to connect
        requests = {},     -- request -> true, while in flight
        n_inflight = 0,
        finished = {},     -- done, not handed over yet, in finishing order
        n_finished = 0,
        any_sema = nil,    -- created on the first perform() that must wait
        next_expiry = huge, -- the earliest a request in flight could need sweep()
        closed = false,
    }, Transport)
end

local function check_open(self, level)
    if not is_transport(self) then
        error("passage.cosocket: expected a transport (use transport:method(...))", level + 1)
    end
    if self.closed then
        error("passage.cosocket: transport is closed", level + 1)
    end
end

function Transport:headers(list)
    check_open(self, 2)
    return http1.header_set(list, 2)
end

-- A closed transport is inert rather than an error, as the libcurl one is
-- (a finalizer may close it under a caller): start() returns nil,
-- perform() no request and wait() does not wait; headers() raises.
local function check_transport(self, level)
    if not is_transport(self) then
        error("passage.cosocket: expected a transport (use transport:method(...))", level + 1)
    end
end

function Transport:pending()
    check_transport(self, 2)
    return self.n_inflight
end

function Transport:__tostring()
    if self.closed then
        return "passage.transport: closed"
    end
    return "passage.transport: " .. self.n_inflight .. " in flight"
end

function Request:__tostring()
    if self.closed then
        return "passage.request: closed"
    end
    return "passage.request: " .. self.method .. (self.is_done and " done" or " in flight")
end

function Request:done()
    return self.is_done
end

-- ---- start ----------------------------------------------------------------------

-- The arguments of start() that need no transport state, checked; raises
-- at `level`. Returns the header block and set, and the time limit (0:
-- none).
local function check_start(self, method, url, headers, body, timeout_ms, level)
    if not METHODS[method] then
        error("passage.cosocket: bad method " .. tostring(method)
            .. " (GET, POST, PATCH, DELETE or PUT)", level + 1)
    end
    if type(url) ~= "string" then
        error("passage.cosocket: url must be a string (got " .. type(url) .. ")", level + 1)
    end
    if find(url, "[\r\n%z ]") then
        error("passage.cosocket: url contains CR, LF, NUL or a space", level + 1)
    end
    local block = ""
    if headers ~= nil then
        block = http1.header_block(headers)
        if not block then
            headers = http1.header_set(headers, level + 1)
            block = http1.header_block(headers)
        end
    end
    if body ~= nil and type(body) ~= "string" then
        error("passage.cosocket: body must be nil or a string (got " .. type(body) .. ")", level + 1)
    end
    local limit = self.timeout_ms
    if timeout_ms ~= nil then
        if type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms or timeout_ms <= 0 then
            error("passage.cosocket: timeout_ms must be a number > 0", level + 1)
        end
        limit = math.ceil(timeout_ms)
    end
    local phase = self.ngx.get_phase()
    if not COSOCKET_PHASES[phase] then
        error("passage.cosocket: cosockets are not available in nginx's " .. phase .. " phase",
            level + 1)
    end
    return block, headers, limit
end

local function new_request(self, method, limit)
    local now = now_ms()
    return setmetatable({
        transport = self,
        method = method,
        started_ms = now,
        deadline = limit > 0 and now + limit or huge,
        origin = nil,
        thread = nil,
        parent = nil,
        sema = nil,
        is_done = false,
        cancelled = false,
        handed = false,
        closed = false,
        read = false,
        -- The response, as the exchange learns it.
        kind = nil,
        message = nil,
        sent = false,
        status = 0,
        retry_after = nil,
        content_type = nil,
        body_size = 0,
        body = nil,
        connects = 0,
        place = nil, -- of max_host_connections, while held
    }, Request)
end

-- The origin of url and the request target (path and query, without a
-- fragment); or nil, why when the URL cannot be used.
local function parse_url(self, url)
    local _, e, scheme, authority = find(url, "^(%a[%w+.-]*)://([^/?#]*)")
    if not e or (scheme ~= "http" and scheme ~= "https") then
        return nil, "unsupported URL (http:// or https:// expected)"
    end
    local o, why = pool.origin_of(self, sub(url, 1, e), scheme, authority)
    if not o then
        return nil, why
    end
    local target = sub(url, e + 1)
    local hash = find(target, "#", 1, true)
    if hash then
        target = sub(target, 1, hash - 1)
    end
    if target == "" then
        target = "/"
    elseif byte(target) == 63 then -- "?"
        target = "/" .. target
    end
    return o, target
end

function Transport:start(method, url, headers, body, timeout_ms)
    check_transport(self, 2)
    if self.closed then
        return nil
    end
    local block, set, limit = check_start(self, method, url, headers, body, timeout_ms, 2)
    local req = new_request(self, method, limit)
    local o, target = parse_url(self, url)
    if not o then
        return threads.done_with(self, req, "connect", target)
    end
    req.origin = o
    local _, has_user_agent = http1.header_block(set)
    local wire = http1.request_bytes(method, target, o.host_line,
        has_user_agent and "" or self.user_agent_line, block, body)
    return threads.spawn(self, req, wire, 2)
end

-- ---- waiting ------------------------------------------------------------------------

local function check_ms(ms, level)
    if type(ms) ~= "number" or ms ~= ms or ms < 0 then
        error("passage.cosocket: timeout must be a number >= 0", level + 1)
    end
    return ms
end

function Transport:wait(req, timeout_ms, keep)
    check_transport(self, 2)
    if getmetatable(req) ~= "passage.request" or req.transport ~= self then
        error("passage.cosocket: expected a request of this transport", 2)
    end
    check_ms(timeout_ms, 2)
    if self.closed then
        return req.is_done, 0
    end
    if not req.is_done then
        local thread = req.thread
        local me = running()
        if thread and req.parent == me and now_ms() + timeout_ms >= req.deadline then
            -- The exchange ends by its own deadline, and nginx resumes this
            -- coroutine the moment it does.
            req.thread = nil
            self.ngx.thread.wait(thread)
        elseif timeout_ms == 0 then
            self.ngx.sleep(0) -- one turn of nginx's event loop
        else
            req.sema = req.sema or require("ngx.semaphore").new()
            wait_until(self, req.sema, timeout_ms, req)
        end
    end
    if req.is_done then
        reap(self, req)
        if not keep then
            hand_over(self, req)
        end
    end
    return req.is_done, self.n_finished
end

function Transport:perform(timeout_ms)
    check_transport(self, 2)
    timeout_ms = timeout_ms == nil and 0 or check_ms(timeout_ms, 2)
    if self.closed then
        return {}
    end
    if self.finished[1] == nil then
        local ngx = self.ngx
        if self.n_inflight == 0 then
            -- Nothing to wait for: the engine's backoff sleep.
            if timeout_ms > 0 then
                ngx.sleep(timeout_ms / 1000)
            end
        elseif timeout_ms == 0 then
            ngx.sleep(0) -- one turn of nginx's event loop
        else
            self.any_sema = self.any_sema or require("ngx.semaphore").new()
            wait_until(self, self.any_sema, timeout_ms, nil)
        end
    end
    return take_finished(self)
end

function Transport:close()
    if not is_transport(self) then
        error("passage.cosocket: expected a transport (use transport:close())", 2)
    end
    if self.closed then
        return
    end
    local list = {}
    for req in pairs(self.requests) do
        list[#list + 1] = req
    end
    for i = 1, #list do
        cancel(self, list[i], "transport closed while the request was in flight")
    end
    local f = self.finished
    for i = 1, #f do
        f[i].handed = true
    end
    self.finished = {}
    self.n_finished = 0
    self.closed = true
end

-- ---- responses -------------------------------------------------------------------------

function Request:close()
    if self.closed then
        return
    end
    local tr = self.transport
    if not self.is_done then
        cancel(tr, self, "request cancelled")
    else
        hand_over(tr, self)
        reap(tr, self)
    end
    self.closed = true
    self.body = nil
end

-- The response table of a request done and unread (see Request:response),
-- written into `into` when given (a table without any of its fields). The
-- request is marked read only once the table is built: a raise before
-- leaves it as it was, to be read again.
local function response_of(self, check, into)
    local kind = self.kind
    local res = into or {}
    res.kind, res.message, res.sent, res.status = kind, self.message, self.sent, self.status
    res.retry_after, res.content_type = self.retry_after, self.content_type
    res.body_size, res.connects = self.body_size, self.connects
    local body = self.body
    if not kind and body and body ~= "" then
        local value, checked_or_err = self.transport.decoder:decode(body, check)
        if value ~= nil then
            res.body = value
            if check ~= nil then
                res.checked = checked_or_err == true
            end
        else
            res.decode_error = checked_or_err
            res.raw = body
        end
    end
    self.read, self.body = true, nil
    return res
end

-- As passage.core's: raises on a misuse; a raise while building the table
-- (out of memory while decoding) is returned as nil, message.
function Request:response(check, into)
    if getmetatable(self) ~= "passage.request" then
        error("passage.cosocket: expected a request (use request:response())", 2)
    end
    if not self.is_done then
        error("passage.cosocket: request is not done", 2)
    end
    if self.closed then
        error("passage.cosocket: request is closed", 2)
    end
    if self.read then
        error("passage.cosocket: the response was already read", 2)
    end
    if into ~= nil and type(into) ~= "table" then
        error("passage.cosocket: bad argument #2 to 'response' (table expected, got "
            .. type(into) .. ")", 2)
    end
    local ok, res = pcall(response_of, self, check, into)
    if not ok then
        return nil, res
    end
    return res
end

return cosocket
