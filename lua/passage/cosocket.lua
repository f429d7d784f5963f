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
--   cosocket.new(opts) -> transport; the names are those of core.transport,
--   and as there the defaults are passage.options' (which passes every
--   value); an absent option means none:
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
--   request:response([check]) -> response table, once; request:close();
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
local core = require "passage.core"

-- luacheck: read globals ngx

local cosocket = {}

local byte, find, sub, lower, match = string.byte, string.find, string.sub, string.lower, string.match
local concat = table.concat
local now_ms = core.now_ms
local running = coroutine.running
local huge = math.huge

-- Bounds on what a reply may hold before its body, as much as libcurl
-- takes: the status line and headers of one response (interim ones each
-- count on their own), and any one line of them.
local MAX_HEADER_BYTES = 300 * 1024
local MAX_HEADER_LINE_BYTES = 100 * 1024
-- What is kept of a chunk-size or trailer line (the size and its start).
local MAX_CHUNK_LINE = 4096
-- The most a single read asks for; nginx returns what it has buffered.
local READ_MAX = 65536
-- The longest socket timeout given to nginx (an exchange without a time
-- limit waits this long per operation).
local MAX_TIMER_MS = 2147483647
-- A body up to this size goes out with the headers in one write.
local INLINE_BODY_MAX = 16384

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
-- Methods that always carry a Content-Length, even 0: some servers answer
-- 411 without one.
local BODY_METHODS = { POST = true, PATCH = true, PUT = true }

-- ---- header sets ---------------------------------------------------------

-- The header lines of each set live here, out of the set itself, so that a
-- dumped set (or anything holding one) never shows them.
local header_blocks = setmetatable({}, { __mode = "k" })
-- Which of the headers the transport adds a set already has.
local header_flags = setmetatable({}, { __mode = "k" })

local HeaderSet = {
    __tostring = function()
        return "passage.headers"
    end,
    __metatable = "passage.headers",
}

local function has_ctl(s)
    return find(s, "[\r\n%z]") ~= nil
end

local function new_header_set(list, level)
    if type(list) ~= "table" then
        error("passage.cosocket: headers must be an array of strings (got " .. type(list) .. ")",
            level + 1)
    end
    local lines = {}
    local user_agent = false
    for i = 1, #list do
        local h = list[i]
        if type(h) ~= "string" then
            error("passage.cosocket: header " .. i .. " is not a string", level + 1)
        end
        -- The message never quotes the header: it may carry a secret.
        if has_ctl(h) then
            error("passage.cosocket: header " .. i .. " contains CR, LF or NUL", level + 1)
        end
        if lower(sub(h, 1, 11)) == "user-agent:" then
            user_agent = true
        end
        lines[i] = h
    end
    lines[#lines + 1] = ""
    local set = setmetatable({}, HeaderSet)
    header_blocks[set] = concat(lines, "\r\n")
    header_flags[set] = user_agent
    return set
end

-- ---- options --------------------------------------------------------------

local OPTION_TYPES = {
    connect_timeout_ms = "whole",
    timeout_ms = "whole",
    max_response_bytes = "whole",
    max_host_connections = "whole",
    max_depth = "whole",
    ca_file = "string",
    ca_path = "string",
    user_agent = "string",
    unsafe_skip_tls_verify = "boolean",
    keep_null = "boolean",
}

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
        if want == "whole" then
            if type(v) ~= "number" or v < 0 or v ~= math.floor(v) or v == huge then
                error("passage.cosocket: transport option '" .. k .. "' must be a whole number >= 0",
                    3)
            end
        elseif type(v) ~= want then
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
    if o.max_depth and o.max_depth > 0 then
        decoder_opts.max_depth = o.max_depth
    end
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
    return new_header_set(list, 2)
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

-- Where and how to connect for "scheme://authority", or nil, why.
local function origin_of(self, prefix, scheme, authority)
    local o = self.origins[prefix]
    if o then
        return o
    end
    if find(authority, "@", 1, true) then
        return nil, "user names and passwords in the URL are not supported"
    end
    local host, port = match(authority, "^(%[[%x:.]+%])(.*)$")
    if not host then
        host, port = match(authority, "^([^:]+)(.*)$")
    end
    if not host then
        return nil, "no host in the URL"
    end
    local tls = scheme == "https"
    if port == "" then
        port = tls and 443 or 80
    else
        port = tonumber(match(port, "^:(%d+)$"))
        if not port or port < 1 or port > 65535 then
            return nil, "bad port in the URL"
        end
    end
    -- One pool per destination and connection settings: a connection that
    -- was set up without verification is never handed to a client that
    -- wants it, and each max_host_connections has its own limit.
    local key = "passage:" .. host .. ":" .. port
    if tls then
        key = key .. (self.tls_verify and ":tls" or ":tls-unverified")
    end
    if self.max_host_connections > 0 then
        key = key .. ":" .. self.max_host_connections
    end
    local pool = { pool = key }
    -- New connections only: nothing is ever put back into this pool.
    local fresh = { pool = key .. ":new" }
    if self.max_host_connections > 0 then
        pool.pool_size = self.max_host_connections
    end
    o = {
        key = key,
        host = host,
        port = port,
        tls = tls,
        -- Host names go out for SNI and are checked against the
        -- certificate; so are IP addresses (nginx compares them with the
        -- certificate's names).
        server_name = host,
        host_line = "Host: " .. authority .. "\r\n",
        pool = pool,
        fresh = fresh,
    }
    self.origins[prefix] = o
    return o
end

-- ---- the exchange (runs in the request's light thread) -----------------------

-- Ends req with a failure of `kind`.
local function fail(req, kind, message)
    req.kind = kind
    req.message = message
    return false
end

local function timeout_message(what, req)
    return "timed out " .. what .. " after " .. math.floor(now_ms() - req.started_ms + 0.5) .. " ms"
end

-- The time left for the exchange, in whole milliseconds, at least 1 (and
-- at most what nginx's timers take); or nil when it is over.
local function time_left(req)
    local left = req.deadline - now_ms()
    if left < 1 then
        return nil
    end
    return left < MAX_TIMER_MS and math.ceil(left) or MAX_TIMER_MS
end

-- What a cosocket error means: kind and message.
local function io_failure(req, err, what)
    if err == "timeout" then
        return fail(req, "timeout", timeout_message(what, req))
    end
    return fail(req, "network", what .. ": " .. tostring(err))
end

-- One read of whatever has arrived (up to `max` bytes), bounded by the time
-- left for the exchange. Returns data, or nil, err.
local function read_some(sock, req, max)
    local left = time_left(req)
    if not left then
        return nil, "timeout"
    end
    sock:settimeout(left)
    return sock:receiveany(max)
end

-- Connects (taking a kept-alive connection when `pool` has one) and, over
-- TLS, shakes hands on a new connection. Returns sock, reused, or nil after
-- fail().
local function connect(self, req, o, pool)
    local ngx = self.ngx
    local left = time_left(req)
    if not left then
        return nil, fail(req, "timeout", timeout_message("connecting", req))
    end
    local sock = ngx.socket.tcp()
    local ct = self.connect_timeout_ms
    if ct == 0 or ct > left then
        ct = left
    end
    sock:settimeouts(ct, left, left)
    local ok, err = sock:connect(o.host, o.port, pool)
    if not ok then
        local where = o.host .. ":" .. o.port
        if err == "timeout" then
            return nil, fail(req, "timeout", timeout_message("connecting to " .. where, req))
        end
        return nil, fail(req, "connect", "could not connect to " .. where .. ": " .. err)
    end
    local reused = sock:getreusedtimes()
    if reused == 0 then
        req.connects = req.connects + 1
    end
    if o.tls and reused == 0 then
        left = time_left(req)
        if not left then
            sock:close()
            return nil, fail(req, "timeout", timeout_message("in the TLS handshake", req))
        end
        sock:settimeouts(ct < left and ct or left, left, left)
        ok, err = sock:sslhandshake(false, o.server_name, self.tls_verify)
        if not ok then
            sock:close()
            if err == "timeout" then
                return nil, fail(req, "timeout", timeout_message("in the TLS handshake", req))
            end
            local hint = self.uses_ca_options and
                " (nginx trusts the CAs of lua_ssl_trusted_certificate; ca_file and ca_path are not used)"
                or ""
            return nil, fail(req, "tls", "TLS handshake with " .. o.host .. ":" .. o.port .. " failed: "
                .. tostring(err) .. hint)
        end
    end
    return sock, reused > 0
end

-- The first byte after the blank line ending the header block that starts
-- at `from`, or nil when it has not arrived yet. (Lines may end in LF
-- alone; the search stops at the first blank line, not the body's end.)
local function header_end(buf, from)
    local _, e = find(buf, "\n\r?\n", from)
    return e and e + 1
end

-- Reads one response head from buf (more arriving on sock as needed).
-- Returns status, version minor, rest of buf after the head, the head's
-- own bounds; or nil after fail(). Interim (1xx) responses are skipped.
local function read_head(sock, req, buf)
    local from = 1
    while true do
        local stop = header_end(buf, from)
        if stop and stop - from > MAX_HEADER_BYTES then
            return nil, fail(req, "too_large", "response headers larger than "
                .. MAX_HEADER_BYTES .. " bytes")
        elseif stop then
            local minor, status = match(buf, "^HTTP/1%.(%d) (%d%d%d)[^\n]*\n", from)
            status = tonumber(status)
            if not status or status < 100 then
                return nil, fail(req, "network", "the reply is not HTTP/1.x")
            end
            if status >= 200 then
                return status, minor, buf, from, stop
            end
            from = stop -- interim: the final response follows
        else
            -- A head cut short still has the status libcurl would report.
            local function status_so_far()
                local status = tonumber(match(buf, "^HTTP/1%.%d (%d%d%d)[^\n]*\n", from))
                if status and status >= 200 then
                    req.status = status
                end
            end
            if #buf - from + 1 > MAX_HEADER_BYTES then
                status_so_far()
                return nil, fail(req, "too_large", "response headers larger than "
                    .. MAX_HEADER_BYTES .. " bytes")
            end
            if #buf >= from + 4 and sub(buf, from, from + 4) ~= "HTTP/" then
                return nil, fail(req, "network", "the reply is not HTTP/1.x")
            end
            local data, err = read_some(sock, req, READ_MAX)
            if not data then
                status_so_far()
                return nil, io_failure(req, err, "receiving the response headers")
            end
            buf = (from == 1 and buf or sub(buf, from)) .. data
            from = 1
        end
    end
end

-- The headers the exchange needs, from the head buf[from, stop). Sets
-- req.retry_after and req.content_type; returns true, content_length
-- (string or nil), chunked, close (the connection cannot be reused); or
-- false after fail().
local function parse_headers(req, buf, from, stop)
    local length, chunked, close = nil, false, false
    local nul = find(buf, "\0", from, true)
    if nul and nul < stop then
        return fail(req, "network", "a NUL byte in the response headers")
    end
    local pos = find(buf, "\n", from, true) + 1
    while pos < stop do
        local eol = find(buf, "\n", pos, true)
        if eol - pos > MAX_HEADER_LINE_BYTES then
            return fail(req, "too_large", "a response header line larger than "
                .. MAX_HEADER_LINE_BYTES .. " bytes")
        end
        local colon = find(buf, ":", pos, true)
        local first = byte(buf, pos)
        if not (colon and colon < eol) and first ~= 32 and first ~= 9 and eol - pos > 1 then
            -- (A line that starts with a blank continues the one before:
            -- obsolete folding, which libcurl accepts too.)
            return fail(req, "network", "a response header line without a colon")
        end
        if colon and colon < eol then
            local n = colon - pos
            -- Only names of the lengths of interest are looked at.
            if n == 10 or n == 11 or n == 12 or n == 14 or n == 17 then
                local name = lower(sub(buf, pos, colon - 1))
                local value = match(sub(buf, colon + 1, eol - 1), "^[ \t]*(.-)[ \t\r]*$")
                if name == "content-length" then
                    if length and length ~= value then
                        return fail(req, "network", "conflicting Content-Length headers")
                    end
                    length = value
                elseif name == "transfer-encoding" then
                    -- No other coding was asked for (TE is never sent).
                    if lower(value) ~= "chunked" then
                        return fail(req, "network", "unsupported Transfer-Encoding in the response")
                    end
                    chunked = true
                elseif name == "connection" then
                    if find(lower(value), "close", 1, true) then
                        close = true
                    end
                elseif name == "retry-after" then
                    req.retry_after = value
                elseif name == "content-type" then
                    req.content_type = value
                end
            end
        end
        pos = eol + 1
    end
    return true, length, chunked, close
end

-- Appends bytes to the body pieces, minding the cap. Returns false after
-- fail() when the body outgrows it.
local function take(self, req, pieces, data)
    local size = req.body_size + #data
    local max = self.max_response_bytes
    if max > 0 and size > max then
        return fail(req, "too_large", "response body larger than max_response_bytes (" .. max .. ")")
    end
    pieces[#pieces + 1] = data
    req.body_size = size
    return true
end

local function too_large(self, req)
    return fail(req, "too_large", "response body larger than max_response_bytes ("
        .. self.max_response_bytes .. ")")
end

-- A body of `length` bytes; `rest` is what arrived with the head.
-- Returns body, extra (bytes beyond it arrived) or nil after fail().
local function read_length(self, sock, req, rest, length)
    local max = self.max_response_bytes
    if max > 0 and length > max then
        return nil, too_large(self, req)
    end
    if #rest >= length then
        req.body_size = length
        if #rest == length then
            return rest, false
        end
        return sub(rest, 1, length), true
    end
    local pieces = {}
    if rest ~= "" then
        pieces[1] = rest
    end
    local got = #rest
    while got < length do
        -- Never past the body: whatever follows is not read.
        local want = length - got
        local data, err = read_some(sock, req, want < READ_MAX and want or READ_MAX)
        if not data then
            req.body_size = got
            return nil, io_failure(req, err, "receiving the response body")
        end
        pieces[#pieces + 1] = data
        got = got + #data
    end
    req.body_size = got
    return concat(pieces), false
end

-- A body that ends when the server closes the connection.
local function read_to_close(self, sock, req, rest)
    local pieces = {}
    if rest ~= "" and not take(self, req, pieces, rest) then
        return nil
    end
    while true do
        local data, err = read_some(sock, req, READ_MAX)
        if not data then
            if err == "closed" then
                return concat(pieces)
            end
            return nil, io_failure(req, err, "receiving the response body")
        end
        if not take(self, req, pieces, data) then
            return nil
        end
    end
end

-- A chunked body. The size lines and trailers are parsed from `buf`, which
-- grows from the socket when a line is incomplete; chunk data is gathered
-- into pieces. Returns body, extra, or nil after fail().
local function read_chunked(self, sock, req, buf)
    local pieces = {}
    local pos = 1
    local max = self.max_response_bytes
    local total = 0
    -- Returns the next line (without its end) or nil after fail(). Only
    -- its first MAX_CHUNK_LINE bytes are kept: the rest of a long line is a
    -- chunk extension or trailer, which nobody reads (libcurl skips them
    -- whatever their length too), so it is dropped as it arrives.
    local function line()
        local head
        while true do
            local eol = find(buf, "\n", pos, true)
            if eol then
                local l = sub(buf, pos, byte(buf, eol - 1) == 13 and eol - 2 or eol - 1)
                pos = eol + 1
                return head or l
            end
            if not head and #buf - pos >= MAX_CHUNK_LINE then
                head = sub(buf, pos, pos + MAX_CHUNK_LINE - 1)
            end
            local data, err = read_some(sock, req, READ_MAX)
            if not data then
                return nil, io_failure(req, err, "receiving the response body")
            end
            buf = head and data or sub(buf, pos) .. data
            pos = 1
        end
    end
    while true do
        local size_line = line()
        if not size_line then
            return nil
        end
        local hex = match(size_line, "^%s*(%x+)%s*[;]?")
        local size = hex and #hex <= 12 and tonumber(hex, 16)
        if not size then
            return nil, fail(req, "network", "malformed chunked body")
        end
        if size == 0 then
            -- Trailers, up to the blank line; read and dropped, as many as
            -- come before the deadline.
            repeat
                local l = line()
                if not l then
                    return nil
                end
            until l == ""
            req.body_size = total
            return concat(pieces), pos <= #buf
        end
        if max > 0 and total + size > max then
            return nil, too_large(self, req)
        end
        -- The chunk's data: what buf holds, then reads.
        local have = #buf - pos + 1
        if have >= size then
            pieces[#pieces + 1] = sub(buf, pos, pos + size - 1)
            pos = pos + size
        else
            if have > 0 then
                pieces[#pieces + 1] = sub(buf, pos)
            end
            local need = size - have
            while need > 0 do
                local data, err = read_some(sock, req, need < READ_MAX and need or READ_MAX)
                if not data then
                    req.body_size = total + size - need
                    return nil, io_failure(req, err, "receiving the response body")
                end
                pieces[#pieces + 1] = data
                need = need - #data
            end
            buf, pos = "", 1
        end
        total = total + size
        req.body_size = total
        -- The line end after the data.
        local l = line()
        if l ~= "" then
            return l and nil, l and fail(req, "network", "malformed chunked body")
        end
    end
end

-- ---- max_host_connections ------------------------------------------------------

-- Per worker, per pool key: the requests whose exchange holds one of the
-- max_host_connections places now, and a semaphore that wakes those
-- waiting for one. (nginx's own pool backlog hands freed connections to
-- its queue one at a time, which serialises a queue; this does not.)
local places = {}
-- An exchange runs no longer than its deadline and this much; past that
-- its light thread was ended by nginx without a word (the request or timer
-- that started it was over first), and its place (and its request, see
-- sweep()) come free.
local OVERRUN_GRACE_MS = 1000

-- Drops the holders that can no longer be running; returns when the next
-- one would expire.
local function expire_places(slot, now)
    local next_expiry = huge
    for req in pairs(slot.holders) do
        local expiry = req.deadline + OVERRUN_GRACE_MS
        if expiry <= now then
            slot.holders[req] = nil
            slot.n = slot.n - 1
        elseif expiry < next_expiry then
            next_expiry = expiry
        end
    end
    return next_expiry
end

-- Takes a place for req's exchange, waiting (yielding) while all are held.
-- Returns false after fail() when its time ran out first.
local function take_place(self, req, key)
    local limit = self.max_host_connections
    local slot = places[key]
    if not slot then
        slot = { holders = {}, n = 0, sema = nil }
        places[key] = slot
    end
    while true do
        local now = now_ms()
        local next_expiry = slot.n >= limit and expire_places(slot, now) or huge
        if slot.n < limit then
            slot.holders[req] = true
            slot.n = slot.n + 1
            req.place = slot
            return true
        end
        local left = time_left(req)
        if not left then
            return fail(req, "timeout", timeout_message("waiting for a connection to "
                .. req.origin.host .. ":" .. req.origin.port, req))
        end
        if not slot.sema then
            slot.sema = require("ngx.semaphore").new()
        end
        local wait_ms = next_expiry - now
        slot.sema:wait((wait_ms < left and wait_ms or left) / 1000)
    end
end

local function give_place(req)
    local slot = req.place
    if not slot then
        return
    end
    req.place = nil
    if slot.holders[req] then
        slot.holders[req] = nil
        slot.n = slot.n - 1
    end
    local sema = slot.sema
    if sema and sema:count() < 0 then
        sema:post(1)
    end
end

-- One try on one connection, sending `wire` (the request's bytes). Returns
-- true when the exchange completed, false after fail(), or "stale" when a
-- kept-alive connection turned out closed before any byte of the answer
-- (sending again on a new one is safe).
local function try_once(self, req, o, pool, wire)
    local sock, reused = connect(self, req, o, pool)
    if not sock then
        return false
    end
    -- A kept-alive connection may have been closed by the server meanwhile:
    -- then the request goes once more, on a new one; never a POST, whatever
    -- the pool gave, as it may not go twice.
    local may_resend = reused and req.method ~= "POST"
    local ok, err = sock:send(wire)
    req.sent = true
    if not ok then
        sock:close()
        if may_resend and err ~= "timeout" then
            return "stale"
        end
        return io_failure(req, err, "sending the request")
    end
    local buf
    buf, err = read_some(sock, req, READ_MAX)
    if not buf then
        sock:close()
        if may_resend and (err == "closed" or err == "connection reset by peer") then
            return "stale"
        end
        return io_failure(req, err, "receiving the response headers")
    end
    local status, minor, from, stop
    status, minor, buf, from, stop = read_head(sock, req, buf)
    if not status then
        sock:close()
        return false
    end
    req.status = status
    local parsed, length, chunked, close = parse_headers(req, buf, from, stop)
    if not parsed then
        sock:close()
        return false
    end
    if minor == "0" then
        close = true
    end
    local rest = stop <= #buf and sub(buf, stop) or ""
    local body, extra
    if status == 204 or status == 304 then
        body, extra = "", rest ~= ""
    elseif chunked then
        body, extra = read_chunked(self, sock, req, rest)
    elseif length then
        local n = match(length, "^%d+$") and tonumber(length)
        if not n then
            sock:close()
            return fail(req, "network", "bad Content-Length in the response")
        end
        body, extra = read_length(self, sock, req, rest, n)
    else
        close = true
        body = read_to_close(self, sock, req, rest)
    end
    if not body then
        sock:close()
        return false
    end
    req.body = body
    -- A connection of the pool of new ones is never kept: the next POST
    -- would find it there.
    if close or extra or pool == o.fresh then
        sock:close()
    else
        sock:setkeepalive()
    end
    return true
end

local function run_exchange(self, req, wire)
    local o = req.origin
    if self.max_host_connections > 0 and not take_place(self, req, o.key) then
        return
    end
    local result = try_once(self, req, o, req.method == "POST" and o.fresh or o.pool, wire)
    if result == "stale" then
        result = try_once(self, req, o, o.fresh, wire)
        if result == "stale" then
            fail(req, "network", "the connection closed before the response")
        end
    end
end

-- Moves req from in flight to done; the finished list gets it unless it
-- was cancelled. Wakes whoever waits for it.
local function settle(self, req)
    if req.is_done then
        return
    end
    req.is_done = true
    self.requests[req] = nil
    self.n_inflight = self.n_inflight - 1
    if not req.cancelled then
        local f = self.finished
        f[#f + 1] = req
        self.n_finished = self.n_finished + 1
    end
    local sema = req.sema
    if sema then
        local waiting = sema:count()
        if waiting < 0 then
            sema:post(-waiting)
        end
    end
    sema = self.any_sema
    if sema then
        local waiting = sema:count()
        if waiting < 0 then
            sema:post(-waiting)
        end
    end
end

-- The light thread of a request. `wire` holds the request's bytes, the
-- Authorization header among them: an argument, so that it is reachable
-- from no table.
local function exchange(self, req, wire)
    local ok, err = pcall(run_exchange, self, req, wire)
    give_place(req)
    if not ok then
        self.ngx.log(self.ngx.ERR, "passage.cosocket: exchange failed: ", tostring(err))
        fail(req, "network", "exchange failed: " .. tostring(err))
    end
    if req.cancelled then
        req.body = nil
    else
        settle(self, req)
    end
end

-- ---- start ----------------------------------------------------------------------

-- A request that failed before any I/O (an unusable URL), done at once.
local function done_with(self, req, kind, message)
    fail(req, kind, message)
    req.is_done = true
    local f = self.finished
    f[#f + 1] = req
    self.n_finished = self.n_finished + 1
    return req
end

function Transport:start(method, url, headers, body, timeout_ms)
    check_transport(self, 2)
    if self.closed then
        return nil
    end
    if not METHODS[method] then
        error("passage.cosocket: bad method " .. tostring(method)
            .. " (GET, POST, PATCH, DELETE or PUT)", 2)
    end
    if type(url) ~= "string" then
        error("passage.cosocket: url must be a string (got " .. type(url) .. ")", 2)
    end
    if find(url, "[\r\n%z ]") then
        error("passage.cosocket: url contains CR, LF, NUL or a space", 2)
    end
    local block = headers ~= nil and header_blocks[headers]
    if headers == nil then
        block = ""
    elseif not block then
        headers = new_header_set(headers, 2)
        block = header_blocks[headers]
    end
    if body ~= nil and type(body) ~= "string" then
        error("passage.cosocket: body must be nil or a string (got " .. type(body) .. ")", 2)
    end
    local limit = self.timeout_ms
    if timeout_ms ~= nil then
        if type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms or timeout_ms <= 0 then
            error("passage.cosocket: timeout_ms must be a number > 0", 2)
        end
        limit = math.ceil(timeout_ms)
    end
    local ngx = self.ngx
    local phase = ngx.get_phase()
    if not COSOCKET_PHASES[phase] then
        error("passage.cosocket: cosockets are not available in nginx's " .. phase .. " phase", 2)
    end
    local now = now_ms()
    local req = setmetatable({
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
    local _, e, scheme, authority = find(url, "^(%a[%w+.-]*)://([^/?#]*)")
    if not e or (scheme ~= "http" and scheme ~= "https") then
        return done_with(self, req, "connect", "unsupported URL (http:// or https:// expected)")
    end
    local o, why = origin_of(self, sub(url, 1, e), scheme, authority)
    if not o then
        return done_with(self, req, "connect", why)
    end
    req.origin = o
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
    local ua = header_flags[headers] and "" or self.user_agent_line
    local length = ""
    if body or BODY_METHODS[method] then
        length = "Content-Length: " .. (body and #body or 0) .. "\r\n"
    end
    local head = method .. " " .. target .. " HTTP/1.1\r\n" .. o.host_line .. ua .. block .. length .. "\r\n"
    local wire
    if body == nil or body == "" then
        wire = head
    elseif #body <= INLINE_BODY_MAX then
        wire = head .. body
    else
        wire = { head, body }
    end
    self.requests[req] = true
    self.n_inflight = self.n_inflight + 1
    if req.deadline + OVERRUN_GRACE_MS < self.next_expiry then
        self.next_expiry = req.deadline + OVERRUN_GRACE_MS
    end
    req.parent = running()
    local thread, err = ngx.thread.spawn(exchange, self, req, wire)
    if not thread then
        self.requests[req] = nil
        self.n_inflight = self.n_inflight - 1
        error("passage.cosocket: cannot start the exchange: " .. tostring(err), 2)
    end
    req.thread = thread
    return req
end

-- ---- waiting ------------------------------------------------------------------------

-- In flight past its deadline and a grace: a light thread nginx ended
-- without a word (the request or timer that started it was over first,
-- with ngx.exit, say). Done, so that no one waits for it forever. Returns
-- how long a wait may last before the next one could be found.
local function sweep(self)
    local now = now_ms()
    if now >= self.next_expiry then
        local next_expiry = huge
        for req in pairs(self.requests) do
            local expiry = req.deadline + OVERRUN_GRACE_MS
            if expiry <= now then
                req.kind = "cancelled"
                req.message = "nginx ended the exchange: the request or timer that started it was over"
                give_place(req)
                settle(self, req)
            elseif expiry < next_expiry then
                next_expiry = expiry
            end
        end
        self.next_expiry = next_expiry
    end
    return self.next_expiry - now
end

-- Waits on `sema` (posted as exchanges finish) until `req` is done (with
-- no req: until any request finished, or none is in flight) or timeout_ms
-- has passed, waking in time for sweep() to find an exchange nginx ended.
local function wait_until(self, sema, timeout_ms, req)
    local deadline = now_ms() + timeout_ms
    while true do
        local until_sweep = sweep(self)
        local left = deadline - now_ms()
        local done
        if req then
            done = req.is_done
        else
            done = self.finished[1] ~= nil or self.n_inflight == 0
        end
        if done or left <= 0 then
            return
        end
        local ms = left < until_sweep and left or until_sweep
        sema:wait((ms > 1 and ms or 1) / 1000)
    end
end

-- Lets the light thread of req go, when this coroutine is the one that
-- spawned it: nginx keeps a finished thread until its parent waits for it,
-- kills it or ends. Killing one that still runs (an exchange cancelled from
-- another coroutine) ends it, and nginx closes its connection.
local function reap(self, req)
    local thread = req.thread
    if thread and req.parent == running() then
        req.thread = nil
        return self.ngx.thread.kill(thread) == 1
    end
    return false
end

-- Takes req off the finished list (handed over).
local function hand_over(self, req)
    if req.handed or req.cancelled or not req.is_done then
        return
    end
    req.handed = true
    self.n_finished = self.n_finished - 1
    local f = self.finished
    for i = #f, 1, -1 do
        if f[i] == req then
            table.remove(f, i)
            break
        end
    end
end

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

-- The finished requests not handed over yet, handed over now.
local function take_finished(self)
    local f = self.finished
    if f[1] == nil then
        return {}
    end
    self.finished = {}
    self.n_finished = 0
    local me = running()
    for i = 1, #f do
        local req = f[i]
        req.handed = true
        if req.thread and req.parent == me then
            reap(self, req)
        end
    end
    return f
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

-- Ends req early: done, kind "cancelled", off every list.
local function cancel(self, req, message)
    if req.is_done then
        return
    end
    req.cancelled = true
    req.kind = "cancelled"
    req.message = message
    req.body = nil
    if reap(self, req) then -- ended the exchange now (this coroutine may)
        give_place(req)
    end
    settle(self, req)
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

function Request:response(check)
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
    self.read = true
    local kind = self.kind
    local res = {
        kind = kind,
        message = self.message,
        sent = self.sent,
        status = self.status,
        retry_after = self.retry_after,
        content_type = self.content_type,
        body_size = self.body_size,
        connects = self.connects,
        body = nil,
        checked = nil,
        decode_error = nil,
        raw = nil,
    }
    local body = self.body
    self.body = nil
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
    return res
end

return cosocket
