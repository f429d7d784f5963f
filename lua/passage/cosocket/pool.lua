-- passage.cosocket.pool: where the exchanges of passage.cosocket connect.
-- Origins (host, port, TLS and the names of nginx's connection pools for
-- them: one of kept-alive connections, one of new connections only), the
-- places of max_host_connections, connecting (with the TLS handshake), and
-- one exchange over a connection: send, read (passage.cosocket.http1), keep
-- the connection alive or close it, and send once more on a new connection
-- when a kept-alive one turns out closed.
local deadline = require "passage.cosocket.deadline"
local http1 = require "passage.cosocket.http1"

local M = {}

local find, match = string.find, string.match
local now_ms = require("passage.clock").now_ms
local huge = math.huge
local fail, timeout_message, time_left = deadline.fail, deadline.timeout_message, deadline.time_left
local io_failure, read_some = deadline.io_failure, deadline.read_some

-- ---- origins ----------------------------------------------------------------------

-- Where and how to connect for "scheme://authority", or nil, why.
function M.origin_of(self, prefix, scheme, authority)
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
M.OVERRUN_GRACE_MS = OVERRUN_GRACE_MS

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

function M.give_place(req)
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

-- ---- connections -------------------------------------------------------------------

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
    buf, err = read_some(sock, req, http1.READ_MAX)
    if not buf then
        sock:close()
        if may_resend and (err == "closed" or err == "connection reset by peer") then
            return "stale"
        end
        return io_failure(req, err, "receiving the response headers")
    end
    local keep
    ok, keep = http1.read_response(self, sock, req, buf)
    -- A connection of the pool of new ones is never kept: the next POST
    -- would find it there.
    if ok and keep and pool ~= o.fresh then
        sock:setkeepalive()
    else
        sock:close()
    end
    return ok
end

-- The exchange of req: a place (under max_host_connections), then a try,
-- and one more on a new connection when the first found its kept-alive one
-- closed. The outcome is on req.
function M.run(self, req, wire)
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

return M
