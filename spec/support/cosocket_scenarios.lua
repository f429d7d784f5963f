-- Transport-level scenarios for spec/cosocket_spec.lua, run inside the
-- spec's private nginx (LuaJIT, nginx's Lua module) with passage.cosocket.
-- The spec POSTs { scenario = name, ... } as JSON to a location calling
-- run(); the answer is the scenario's result as JSON.
-- luacheck: globals ngx SHARED
local cjson = require("cjson").new()
local cosocket = require "passage.cosocket"
local core = require "passage.core"

local M = {}

local now_ms = core.now_ms

-- What a response says, as JSON can carry it (the decoded body as is).
local function summary(res, elapsed)
    return {
        kind = res.kind or cjson.null,
        message = res.message or cjson.null,
        sent = res.sent,
        status = res.status,
        retry_after = res.retry_after or cjson.null,
        content_type = res.content_type or cjson.null,
        body_size = res.body_size,
        body = res.body == nil and cjson.null or res.body,
        checked = res.checked == nil and cjson.null or res.checked,
        decode_error = res.decode_error or cjson.null,
        raw = res.raw or cjson.null,
        connects = res.connects,
        ms = elapsed,
    }
end
M.summary = summary

-- Runs one call to its end on `tr`; returns its summary.
local function call(tr, c, headers)
    local t0 = now_ms()
    local req = tr:start(c.method or "GET", c.url, headers, c.body, c.timeout_ms)
    local done = tr:wait(req, 60000)
    assert(done, "not done after a minute")
    local check = c.check and core.checker(c.check.fields, c.check.path) or nil
    return summary(req:response(check), now_ms() - t0)
end

local scenarios = {}

-- calls: { { method, url, body, timeout_ms, check }, ... } one after the
-- other on one transport with options `opts`.
function scenarios.exchange(p)
    local tr = cosocket.new(p.opts)
    local headers = tr:headers(p.headers or { "Accept: application/json" })
    local out = {}
    for i, c in ipairs(p.calls) do
        out[i] = call(tr, c, headers)
    end
    tr:close()
    return out
end

-- Starts every call at once; perform() hands them out as they finish.
function scenarios.perform_order(p)
    local tr = cosocket.new()
    local names = {}
    local t0 = now_ms()
    for i, c in ipairs(p.calls) do
        names[tr:start("GET", c.url)] = i
    end
    local pending_after_start = tr:pending()
    local order, rounds = {}, 0
    while #order < #p.calls and rounds < 100 do
        rounds = rounds + 1
        for _, req in ipairs(tr:perform(5000)) do
            local res = req:response()
            order[#order + 1] = { index = names[req], status = res.status, at = now_ms() - t0 }
        end
    end
    local again = tr:perform(0)
    return { order = order, pending_after_start = pending_after_start, pending_after = tr:pending(),
        again = #again, total = now_ms() - t0 }
end

-- wait() with and without keep, while others finish meanwhile.
function scenarios.wait_keep(p)
    local tr = cosocket.new()
    local fast = tr:start("GET", p.fast)
    local slow = tr:start("GET", p.slow)
    local t0 = now_ms()
    local done_slow, finished = tr:wait(slow, 5000, true)
    local kept = {}
    for _, req in ipairs(tr:perform(0)) do
        kept[#kept + 1] = req == fast and "fast" or req == slow and "slow" or "other"
    end
    -- Without keep: the request waited for is handed over, the other stays.
    fast = tr:start("GET", p.fast)
    slow = tr:start("GET", p.slow)
    local done_slow2 = tr:wait(slow, 5000)
    local left = {}
    for _, req in ipairs(tr:perform(0)) do
        left[#left + 1] = req == fast and "fast" or req == slow and "slow" or "other"
    end
    -- A table to fill, as the engine gives one: a table or nothing.
    local bad_into = not pcall(slow.response, slow, nil, 5)
    local into = {}
    local r1, r2 = slow:response(nil, into), fast:response()
    return { done_slow = done_slow, finished = finished, kept = kept, done_slow2 = done_slow2, left = left,
        statuses = { r1.status, r2.status }, ms = now_ms() - t0, bad_into = bad_into,
        filled = r1 == into }
end

-- response() called with the stack nearly spent, deeper and deeper, until
-- building its table raises: what it returns then, and a second read with
-- room again (transport_spec.lua does the same on libcurl's transport).
function scenarios.response_raise(p)
    local stack_edge = require("support.stack_edge")
    -- Every depth where it returned nil, from the deepest where response()
    -- could be called at all to the first that leaves room for its table:
    -- the raise comes from a different step at each.
    local tr = cosocket.new()
    local out = { messages = {}, rereads = {} }
    for depth in stack_edge.depths() do
        local req = tr:start("GET", p.url)
        assert(tr:wait(req, 5000), "not done")
        local ran, res, message = stack_edge.nested(depth, req.response, req)
        if ran == true and type(res) == "table" then
            break
        end
        if ran == true and res == nil then
            -- The name read again, or why it could not be.
            local ok, again, why = pcall(req.response, req)
            out.messages[#out.messages + 1] = message
            out.rereads[#out.rereads + 1] = tostring(ok and again and again.body.name
                or ok and why or again)
        end
        req:close()
    end
    tr:close()
    return out
end

-- A wait shorter than the exchange comes back undone, in about its time.
function scenarios.wait_timeout(p)
    local tr = cosocket.new()
    local req = tr:start("GET", p.url)
    local t0 = now_ms()
    local done = tr:wait(req, p.wait_ms)
    local waited = now_ms() - t0
    local done0 = tr:wait(req, 0)
    local pending = tr:pending()
    local done_later = tr:wait(req, 5000)
    return { done = done, waited = waited, done0 = done0, pending = pending, done_later = done_later,
        status = req:response().status, is_done = req:done() }
end

-- perform() with nothing in flight sleeps (the engine's backoff sleep).
function scenarios.idle(p)
    local tr = cosocket.new()
    local t0 = now_ms()
    local got = tr:perform(p.sleep_ms)
    local slept = now_ms() - t0
    t0 = now_ms()
    local got0 = tr:perform(0)
    return { n = #got, slept = slept, n0 = #got0, zero_ms = now_ms() - t0, pending = tr:pending() }
end

-- Cancelling: a closed request is done, never handed out, and repeatable to
-- close; closing the transport ends every exchange with kind "cancelled".
function scenarios.cancel(p)
    local tr = cosocket.new()
    local t0 = now_ms()
    local req = tr:start("GET", p.url)
    local other = tr:start("GET", p.url)
    req:close()
    req:close()
    local out = { done = req:done(), pending = tr:pending() }
    out.response_error = select(2, pcall(req.response, req))
    local a = tr:start("GET", p.url)
    local b = tr:start("GET", p.url)
    other:close()
    tr:close()
    tr:close()
    out.closed_perform = #tr:perform(0)
    out.closed_start = tr:start("GET", p.url) == nil
    out.headers_error = select(2, pcall(tr.headers, tr, { "X: 1" }))
    out.a = summary(a:response())
    out.b_done = b:done()
    out.ms = now_ms() - t0
    return out
end

-- A request cancelled by another light thread than the one that started it:
-- done and cancelled at once; its exchange is left to end on its own.
function scenarios.cancel_elsewhere(p)
    local tr = cosocket.new()
    local req = tr:start("GET", p.url)
    local t0 = now_ms()
    local th = ngx.thread.spawn(function()
        req:close()
        return req:done(), tr:pending()
    end)
    local _, done, pending = ngx.thread.wait(th)
    local got = tr:perform(0)
    local quick = now_ms() - t0
    local other = tr:start("GET", p.url_fast)
    tr:wait(other, 5000)
    return { done = done, pending = pending, handed = #got, ms = quick, other = other:response().status }
end

-- max_host_connections: calls beyond it wait for a place, which a
-- cancelled call gives back at once.
function scenarios.limit(p)
    local tr = cosocket.new { max_host_connections = p.limit }
    local t0 = now_ms()
    local reqs, at, connects = {}, {}, 0
    for i = 1, p.n do
        reqs[i] = tr:start("GET", p.url)
    end
    for i = 1, p.n do
        tr:wait(reqs[i], 10000)
        at[i] = now_ms() - t0
        connects = connects + reqs[i]:response().connects
    end
    -- Both places held by slow calls; closing one lets a quick one through.
    local slow1, slow2 = tr:start("GET", p.slow_url), tr:start("GET", p.slow_url)
    local quick = tr:start("GET", p.url)
    slow1:close()
    t0 = now_ms()
    tr:wait(quick, 10000)
    local quick_ms = now_ms() - t0
    local quick_status = quick:response().status
    slow2:close()
    return { at = at, connects = connects, quick_ms = quick_ms, quick_status = quick_status }
end

-- Starts a call holding the only place of max_host_connections = 1 and ends
-- the request at once: nginx ends the call's light thread without a word.
function scenarios.abandon(p)
    local tr = cosocket.new { max_host_connections = 1, timeout_ms = p.timeout_ms }
    tr:start("GET", p.url)
    ngx.print("{}")
    return ngx.exit(200)
end

-- A call after abandon(): it gets the place once the abandoned call's time
-- is up (plus a grace), not never.
function scenarios.after_abandon(p)
    local tr = cosocket.new { max_host_connections = 1, timeout_ms = 10000 }
    local t0 = now_ms()
    local req = tr:start("GET", p.url)
    tr:wait(req, 10000)
    local res = req:response()
    return { ms = now_ms() - t0, status = res.status, kind = res.kind or cjson.null }
end

-- A transport shared by the requests of the worker, as a client created
-- once per worker is: a call started by a request that nginx ends early
-- (ngx.exit) is handed to the next perform() once its time is up.
function scenarios.shared_abandon(p)
    SHARED = SHARED or cosocket.new()
    SHARED:start("GET", p.url, nil, nil, p.timeout_ms)
    ngx.print("{}")
    return ngx.exit(200)
end

function scenarios.shared_perform()
    local t0 = now_ms()
    local pending = SHARED:pending()
    local got = SHARED:perform(5000)
    local res = got[1] and got[1]:response()
    return { pending = pending, n = #got, kind = res and res.kind or cjson.null,
        message = res and res.message or cjson.null, ms = now_ms() - t0, after = SHARED:pending() }
end

-- Whether `secret` is reachable from v through tables (keys, values and
-- metatables), as a dump would find it.
local function reachable(v, secret, seen)
    if type(v) == "string" then
        return v:find(secret, 1, true) ~= nil
    end
    if type(v) ~= "table" or seen[v] then
        return false
    end
    seen[v] = true
    for k, x in pairs(v) do
        if reachable(k, secret, seen) or reachable(x, secret, seen) then
            return true
        end
    end
    return reachable(debug.getmetatable(v), secret, seen)
end

-- The Authorization header is reachable from nothing the transport hands
-- out, in flight or after.
function scenarios.secrets(p)
    local secret = "sk_secret_value_42"
    local tr = cosocket.new()
    local headers = tr:headers { "Authorization: Bearer " .. secret }
    local req = tr:start("GET", p.url, headers)
    local out = { in_flight = reachable({ tr, req, headers }, secret, {}),
        text = tostring(tr) .. tostring(req) .. tostring(headers) }
    tr:wait(req, 5000)
    local res = req:response()
    out.after = reachable({ tr, req, headers, res }, secret, {})
    out.status = res.status
    return out
end

-- Bad arguments raise, and never quote a header.
function scenarios.arguments()
    local tr = cosocket.new()
    local function err_of(f, ...)
        local ok, e = pcall(f, ...)
        return ok and "no error" or tostring(e)
    end
    local secret = "Authorization: Bearer sk_secret_value\r\nX-Evil: 1"
    local out = {
        header_cr = err_of(tr.headers, tr, { "Accept: a", secret }),
        header_nul = err_of(tr.headers, tr, { "A: b\0c" }),
        header_type = err_of(tr.headers, tr, { 1 }),
        header_start = err_of(tr.start, tr, "GET", "http://127.0.0.1/", { secret }),
        url_space = err_of(tr.start, tr, "GET", "http://127.0.0.1/a b"),
        url_lf = err_of(tr.start, tr, "GET", "http://127.0.0.1/a\nb"),
        method = err_of(tr.start, tr, "HEAD", "http://127.0.0.1/"),
        body = err_of(tr.start, tr, "POST", "http://127.0.0.1/", nil, 42),
        timeout = err_of(tr.start, tr, "GET", "http://127.0.0.1/", nil, nil, 0),
        option = err_of(cosocket.new, { retries = 1 }),
        option_type = err_of(cosocket.new, { timeout_ms = "1" }),
        wait_ms = err_of(tr.perform, tr, -1),
    }
    local hs = tr:headers { "Authorization: Bearer sk_secret_value" }
    out.set_text = tostring(hs)
    local n = 0
    for _ in pairs(hs) do
        n = n + 1
    end
    out.set_fields = n
    local req = tr:start("GET", "ftp://127.0.0.1/")
    out.ftp = summary(req:response())
    out.ftp_done = req:done()
    req = tr:start("GET", "http://127.0.0.1:99999/")
    out.bad_port = summary(req:response())
    -- A host name needs nginx's resolver directive, which this nginx lacks.
    req = tr:start("GET", "http://localhost:1/")
    tr:wait(req, 5000)
    out.no_resolver = summary(req:response())
    req = tr:start("GET", "http://127.0.0.1:1/")
    out.not_done = err_of(req.response, req)
    tr:wait(req, 5000)
    req:response()
    out.twice = err_of(req.response, req)
    out.tostring = tostring(tr)
    tr:close()
    out.closed = tostring(tr)
    return out
end

-- Many calls at once: they overlap (about one latency, not n).
function scenarios.concurrent(p)
    local tr = cosocket.new()
    local headers = tr:headers { "Authorization: Bearer test_key" }
    local t0 = now_ms()
    local reqs = {}
    for i = 1, p.n do
        reqs[i] = tr:start("GET", p.url, headers)
    end
    local ok = 0
    for i = 1, p.n do
        tr:wait(reqs[i], 10000)
        if reqs[i]:response().status == 200 then
            ok = ok + 1
        end
    end
    return { ok = ok, ms = now_ms() - t0 }
end

-- Calls run in an ngx.timer callback; the answer comes from the shared dict.
function scenarios.timer_start(p)
    local dict = ngx.shared.results
    dict:delete("timer")
    local ok, err = ngx.timer.at(0, function(premature)
        if premature then
            return
        end
        local result = scenarios.concurrent(p)
        result.phase = ngx.get_phase()
        result.available = cosocket.available()
        dict:set("timer", cjson.encode(result))
    end)
    return { ok = ok, err = err or cjson.null }
end

function scenarios.timer_result()
    local s = ngx.shared.results:get("timer")
    return s and cjson.decode(s) or { pending = true }
end

-- content_by_lua entry point.
function M.run()
    require("support.scenario_runner")(scenarios)
end

-- Where cosockets work: what available() says in this phase, and whether a
-- cosocket really connects here (stored in the shared dict under `name`).
function M.probe_phase(name, port)
    local said, phase = cosocket.available()
    local works = false
    local ok, sock = pcall(ngx.socket.tcp)
    if ok and sock then
        local ok2, connected = pcall(sock.connect, sock, "127.0.0.1", port)
        works = ok2 and connected == 1
        if works then
            pcall(sock.close, sock)
        end
    end
    -- Where it says yes, a whole exchange of the transport too.
    local status = cjson.null
    if said then
        local tr = cosocket.new()
        local req = tr:start("GET", "http://127.0.0.1:" .. port .. "/json")
        tr:wait(req, 5000)
        status = req:response().status
    end
    ngx.shared.results:set("phase:" .. name, cjson.encode({
        available = said, phase = phase or cjson.null, works = works, status = status }))
end

return M
