-- The libcurl transport (src/transport.c, src/request.c) against a private
-- nginx (spec/support/test_server.lua).
local core = require "passage.core"
local server = require "support.test_server"
local socket = require "socket"
local http = require "socket.http"

-- Timing bounds widen under valgrind or sanitizers (PASSAGE_SLOW=1).
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1

local function now() return core.now_ms() end

-- Drives tr with perform() until req is done (or the deadline passes);
-- returns every request perform() handed back.
local function wait(tr, req, limit_ms)
    local returned = {}
    local deadline = now() + (limit_ms or 10000) * SLOW
    while not req:done() and now() < deadline do
        for _, r in ipairs(tr:perform(50)) do returned[#returned + 1] = r end
    end
    assert.is_true(req:done(), "request did not finish in time")
    return returned
end

local function fetch_url(tr, url)
    local req = tr:start("GET", url, {})
    wait(tr, req)
    return req:response()
end

local function fetch(tr, method, path, headers, body, timeout)
    local req = tr:start(method, server.url(path), headers or {}, body, timeout)
    wait(tr, req)
    return req:response(), req
end

describe("passage.core transport", function()
    setup(function() server.start() end)
    teardown(function() server.stop() end)

    describe("options", function()
        it("accepts no table, an empty table and every known option", function()
            core.transport():close()
            core.transport({}):close()
            core.transport({
                connect_timeout_ms = 1000, timeout_ms = 2000, max_response_bytes = 1024,
                ca_file = "/etc/ssl/certs/ca-certificates.crt", ca_path = "/etc/ssl/certs",
                unsafe_skip_tls_verify = true, user_agent = "x/1", keep_null = true, max_depth = 10,
                max_host_connections = 4,
            }):close()
        end)

        it("rejects unknown names and wrong types, naming the option", function()
            assert.error_matches(function() core.transport({ timeout = 1 }) end,
                "unknown transport option 'timeout' %(known: ")
            assert.error_matches(function() core.transport({ timeout_ms = "1" }) end,
                "'timeout_ms' must be a number")
            assert.error_matches(function() core.transport({ timeout_ms = -1 }) end,
                "'timeout_ms' must be a whole number")
            assert.error_matches(function() core.transport({ connect_timeout_ms = 1.5 }) end,
                "'connect_timeout_ms' must be a whole number")
            assert.error_matches(function() core.transport({ unsafe_skip_tls_verify = 1 }) end,
                "'unsafe_skip_tls_verify' must be a boolean")
            assert.error_matches(function() core.transport({ keep_null = "yes" }) end,
                "'keep_null' must be a boolean")
            assert.error_matches(function() core.transport({ ca_file = false }) end,
                "'ca_file' must be a string")
            assert.error_matches(function() core.transport({ user_agent = "a\0b" }) end,
                "'user_agent' must not contain CR, LF or NUL")
            -- a header line of every request: no header may be smuggled in
            assert.error_matches(function() core.transport({ user_agent = "a\r\nX-Evil: 1" }) end,
                "'user_agent' must not contain CR, LF or NUL")
            assert.error_matches(function() core.transport({ max_depth = {} }) end,
                "'max_depth' must be a whole number from 1 to 4096")
            assert.error_matches(function() core.transport({ [1] = true }) end,
                "option names must be strings")
            assert.error_matches(function() core.transport("x") end, "table expected")
        end)

        it("takes the names of passage.options.TRANSPORT, no more and no fewer", function()
            local _, err = pcall(core.transport, { nope = 1 })
            local known = {}
            for name in assert(err:match("%(known: (.-)%)$"), err):gmatch("[%w_]+") do
                known[#known + 1] = name
            end
            local listed = {}
            for name in pairs(require("passage.options").TRANSPORT) do
                listed[#listed + 1] = name
            end
            table.sort(known)
            table.sort(listed)
            assert.same(listed, known)
        end)

        it("holds max_depth to the decoder's rule, as core.decoder does", function()
            for _, depth in ipairs { 0, 5000, 1.5 } do
                local _, t = pcall(core.transport, { max_depth = depth })
                local _, d = pcall(core.decoder, { max_depth = depth })
                assert.matches("transport option 'max_depth' must be a whole number from 1 to 4096", t)
                assert.matches("decoder option 'max_depth' must be a whole number from 1 to 4096", d)
            end
            core.transport({ max_depth = 4096 }):close()
            core.decoder({ max_depth = 4096 }):close()
        end)

        it("writes max_response_bytes whole in its message, even given as a float", function()
            local t = core.transport({ max_response_bytes = 1000.0 })
            local resp = fetch(t, "GET", "/big?n=2000")
            t:close()
            assert.are.equal("too_large", resp.kind)
            assert.are.equal("response body larger than max_response_bytes (1000)", resp.message)
        end)
    end)

    describe("start", function()
        local tr
        before_each(function() tr = core.transport() end)
        after_each(function() tr:close() end)

        it("validates the method, the URL, headers, body and timeout", function()
            assert.error_matches(function() tr:start("HEAD", server.url("/json"), {}) end,
                "invalid option 'HEAD'")
            assert.error_matches(function() tr:start("GET", server.url("/json\r\nX: y"), {}) end,
                "url contains CR, LF or NUL")
            assert.error_matches(function() tr:start("GET", server.url("/json\0"), {}) end,
                "url contains CR, LF or NUL")
            assert.error_matches(function() tr:start("GET", server.url("/json"), { 1 }) end,
                "header 1 is not a string")
            assert.error_matches(function() tr:start("GET", server.url("/json"), "x") end,
                "table expected")
            assert.error_matches(function() tr:start("GET", server.url("/json"), {}, {}) end,
                "string expected")
            assert.error_matches(function() tr:start("GET", server.url("/json"), {}, nil, 0) end,
                "timeout_ms must be > 0")
            assert.are.equal(0, tr:pending())
        end)

        it("refuses header injection without echoing the header", function()
            local secret = "Authorization: Bearer sk_secret\r\nX-Evil: 1"
            local ok, err = pcall(tr.start, tr, "GET", server.url("/json"), { "A: b", secret })
            assert.is_false(ok)
            assert.matches("header 2 contains CR, LF or NUL", err)
            assert.is_nil(err:find("sk_secret", 1, true))
            assert.has_error(function() tr:start("GET", server.url("/json"), { "A: b\nC: d" }) end)
            assert.has_error(function() tr:start("GET", server.url("/json"), { "A: b\0" }) end)
            assert.are.equal(0, tr:pending())
        end)

        it("puts a request on a kept-alive connection on the wire at start", function()
            fetch(tr, "GET", "/json") -- a connection to reuse
            local function arrived() -- over luasocket, not the transport
                local body, status = http.request(server.url("/counter?name=arrived"))
                assert.are.equal(200, status)
                return tonumber(body)
            end
            arrived() -- from zero
            local req = tr:start("GET", server.url("/count?ms=300"), {})
            -- No perform(): only start() can have sent it.
            local deadline = now() + 2000 * SLOW
            local n = arrived()
            while n == 0 and now() < deadline do
                socket.sleep(0.01)
                n = arrived()
            end
            assert.are.equal(1, n)
            assert.is_false(req:done())
            wait(tr, req)
            assert.are.equal(0, req:response().connects)
        end)

        -- An easy handle keeps the URL libcurl parsed for an origin and
        -- sets only the path and query of the next URLs of that origin
        -- (src/easy_url.c); one URL after another on one transport reuses
        -- one handle, and each must go out as libcurl parses it as a string.
        it("sends each URL as libcurl parses it, whatever URL the handle carried before", function()
            local port = server.port()
            local here, there = "http://127.0.0.1:" .. port, "http://localhost:" .. port
            local secret = "http://user:s3cret@127.0.0.1:" .. port
            local basic = "Basic " .. (require "mime").b64("user:s3cret")
            local long = "/target/" .. string.rep("k", 1100)
            local cases = {
                { here, "/target/a", "/target/a" },
                { here, "/target/b?limit=5&page=2", "/target/b?limit=5&page=2" },
                { here, "/target/b", "/target/b" }, -- the query gone
                { here, "/target/%4A%6b", "/target/%4A%6b" }, -- case kept
                { here, "/target/x/./y", "/target/x/y" }, -- dot segments removed
                { here, "/target/x/../y?a=1", "/target/y?a=1" },
                { here, "/target/c?", "/target/c?" },
                { here, "/target/d?a=%2F&b=c", "/target/d?a=%2F&b=c" },
                { here, "/target/e#fragment", "/target/e" },
                { there, "/target/f", "/target/f" }, -- another origin
                { there, "/target/g?x=1", "/target/g?x=1" },
                { secret, "/target/h", "/target/h" }, -- user and password
                { secret, "/target/i", "/target/i" },
                { here, "/target/j", "/target/j" }, -- and none again
                { here, long .. "?q=1", long .. "?q=1" }, -- a path too long to copy
                { here, "/target/l", "/target/l" },
            }
            for i, case in ipairs(cases) do
                local origin, path, target = case[1], case[2], case[3]
                local resp = fetch_url(tr, origin .. path)
                assert.are.equal(200, resp.status, path)
                local seen = resp.body
                assert.are.equal(target, seen.target, "case " .. i)
                assert.are.equal(origin:match("[^@/]+$"), seen.host, "case " .. i)
                assert.are.equal(origin == secret and basic or "", seen.authorization, "case " .. i)
            end
        end)

        it("starts without waiting", function()
            local req = tr:start("GET", server.url("/slow?ms=300"), {})
            assert.is_false(req:done())
            assert.are.equal(1, tr:pending())
            assert.has_error(function() req:response() end, "request is not done")
            assert.matches("passage.request: GET in flight", tostring(req))
            assert.are.equal("passage.transport: 1 in flight", tostring(tr))
        end)
    end)

    describe("responses", function()
        local tr
        before_each(function() tr = core.transport() end)
        after_each(function() tr:close() end)

        it("reports every field of a JSON answer", function()
            local resp, req = fetch(tr, "GET", "/json")
            assert.is_nil(resp.kind)
            assert.is_nil(resp.message)
            assert.is_true(resp.sent)
            assert.are.equal(200, resp.status)
            assert.is_nil(resp.retry_after)
            assert.are.equal("application/json", resp.content_type)
            assert.are.equal(#'{"name":"alice","n":3,"list":[1,2,3],"ok":true}', resp.body_size)
            assert.are.same({ name = "alice", n = 3, list = { 1, 2, 3 }, ok = true }, resp.body)
            assert.are.equal(core.array_mt, getmetatable(resp.body.list))
            assert.is_nil(resp.decode_error)
            assert.is_nil(resp.raw)
            assert.are.equal(1, resp.connects)
            -- Read once: a second read raises (nothing keeps the body alive).
            assert.has_error(function() req:response() end, "the response was already read")
            assert.matches("passage.request: GET done", tostring(req))
        end)

        -- A raise while the table is built (out of memory, say) comes back
        -- as nil, message: the caller needs no pcall, and the request is
        -- left unread (for close(), or another read). Made here by calling
        -- response() with the stack nearly spent (spec/support/stack_edge):
        -- on Lua 5.x the limit of nested C calls stops the build. LuaJIT
        -- gives every C function 20 free slots, more than the build uses
        -- (the decoder grows the stack itself and reports failing to as a
        -- decode error), so there only memory could make it raise: each
        -- depth either cannot call response() at all or gets a whole table.
        it("returns a raise while building the table as nil, message", function()
            local stack_edge = require("support.stack_edge")
            -- Every depth from the deepest where response() can be called at
            -- all to the first that leaves room for its table: the raise
            -- comes from a different step at each.
            local found = 0
            for depth in stack_edge.depths() do
                local req = tr:start("GET", server.url("/json"), {})
                wait(tr, req)
                local ran, resp, message = stack_edge.nested(depth, req.response, req)
                if ran == true and type(resp) == "table" then
                    assert.are.equal("alice", resp.body.name)
                    break
                end
                if ran == true and resp == nil then
                    found = found + 1
                    assert.matches("overflow", message)
                    -- Nothing was lost: with room again, the same response.
                    local again = req:response()
                    assert.are.equal(200, again.status)
                    assert.are.equal("alice", again.body.name)
                else
                    req:close() -- the call of response() itself did not fit
                end
            end
            if not jit then
                assert.is_true(found > 0, "no nesting made building the table raise")
            end
        end)

        -- The engine reads every response into one table of its own.
        it("fills a table given to it instead of making one", function()
            local into = {}
            local req = tr:start("GET", server.url("/json"), {})
            wait(tr, req)
            assert.has_error(function() req:response(nil, 5) end) -- and reads nothing
            local resp = req:response(nil, into)
            assert.are.equal(into, resp)
            assert.are.equal(200, resp.status)
            assert.are.equal("application/json", resp.content_type)
            assert.are.equal("alice", resp.body.name)
            assert.is_nil(resp.kind)
            req = tr:start("GET", server.url("/status?code=429&retry_after=7"), {})
            wait(tr, req)
            local fresh = {}
            assert.are.equal(fresh, req:response(nil, fresh))
            assert.are.same({ "7", "slow down", 429 }, { fresh.retry_after, fresh.raw, fresh.status })
            assert.is_nil(fresh.body)
        end)

        it("keeps a non-JSON body raw, with Retry-After and the status", function()
            local resp = fetch(tr, "GET", "/status?code=429&retry_after=7")
            assert.is_nil(resp.kind)
            assert.are.equal(429, resp.status)
            assert.are.equal("7", resp.retry_after)
            assert.are.equal("text/plain", resp.content_type)
            assert.are.equal("slow down", resp.raw)
            assert.is_string(resp.decode_error)
            assert.is_nil(resp.body)
            assert.are.equal(9, resp.body_size)
        end)

        it("reports an empty body as neither body nor raw", function()
            local resp = fetch(tr, "DELETE", "/empty")
            assert.is_nil(resp.kind)
            assert.are.equal(204, resp.status)
            assert.are.equal(0, resp.body_size)
            assert.is_nil(resp.body)
            assert.is_nil(resp.raw)
            assert.is_nil(resp.decode_error)
        end)

        it("sends the method, headers and body, with no Expect or form Content-Type", function()
            local resp = fetch(tr, "POST", "/echo", { "X-Test: one" }, '{"a":1}')
            local e = resp.body
            assert.are.equal("POST", e.method)
            assert.are.equal('{"a":1}', e.body)
            assert.are.equal("7", e.content_length)
            assert.are.equal("", e.content_type)
            assert.are.equal("", e.expect)
            assert.are.equal("one", e.x_test)
            assert.are.equal("", e.user_agent) -- none unless given (passage.options has ours)
            assert.are.equal("", e.accept_encoding) -- no coding asked for, as over cosockets

            e = fetch(tr, "PATCH", "/echo", { "Content-Type: application/json" }, "{}").body
            assert.are.equal("PATCH", e.method)
            assert.are.equal("application/json", e.content_type)
            assert.are.equal("{}", e.body)

            e = fetch(tr, "PUT", "/echo", {}, nil).body
            assert.are.equal("PUT", e.method)
            assert.are.equal("0", e.content_length)
            assert.are.equal("", e.content_type)

            e = fetch(tr, "POST", "/echo", {}, nil).body
            assert.are.equal("POST", e.method)
            assert.are.equal("0", e.content_length)
            assert.are.equal("", e.content_type)

            -- A header set serves requests with and without a body alike.
            local set = tr:headers { "X-Test: set" }
            for _, method in ipairs { "POST", "PATCH", "GET", "DELETE" } do
                e = fetch(tr, method, "/echo", set, nil).body
                assert.are.equal(method, e.method)
                assert.are.equal("set", e.x_test)
                assert.are.equal("", e.content_type, method)
                assert.are.equal("", e.expect, method)
            end

            e = fetch(tr, "DELETE", "/echo", {}, nil).body
            assert.are.equal("DELETE", e.method)
            e = fetch(tr, "GET", "/echo", {}, nil).body
            assert.are.equal("GET", e.method)
        end)

        it("never sends Expect: 100-continue, even for a large body", function()
            local big = string.rep("z", 2 * 1024 * 1024)
            local e = fetch(tr, "POST", "/echo", {}, big).body
            assert.are.equal("", e.expect)
            assert.are.equal(tostring(#big), e.content_length)
        end)

        it("uses the user_agent option", function()
            local t2 = core.transport({ user_agent = "custom/2" })
            local e = fetch(t2, "GET", "/echo").body
            assert.are.equal("custom/2", e.user_agent)
            -- a header set carries the User-Agent of the transport that made it
            local set = t2:headers({ "X-Test: 1" })
            e = fetch(tr, "POST", "/echo", set, "{}").body
            assert.are.same({ "custom/2", "1" }, { e.user_agent, e.x_test })
            t2:close()
        end)

        -- The echo would show two User-Agent headers as a list.
        it("sends a User-Agent of the caller's headers instead of its own, once", function()
            local t2 = core.transport({ user_agent = "custom/2" })
            local mine = { "user-agent: mine/3" }
            for _, headers in ipairs { mine, t2:headers(mine) } do
                for _, method in ipairs { "GET", "POST" } do
                    local e = fetch(t2, method, "/echo", headers, method == "POST" and "{}" or nil).body
                    assert.are.equal("mine/3", e.user_agent, method)
                end
            end
            t2:close()
        end)

        it("does not follow redirects", function()
            local resp = fetch(tr, "GET", "/redirect")
            assert.is_nil(resp.kind)
            assert.are.equal(302, resp.status)
        end)

        it("asks for no compression: a server that gzips on request sends plain JSON", function()
            local resp = fetch(tr, "GET", "/gzip")
            assert.is_nil(resp.kind)
            assert.are.equal(500, #resp.body)
            assert.are.equal(500, resp.body[500].id)
            local expected = 2 + 499
            for i = 1, 500 do expected = expected + #('{"id":' .. i .. ',"name":"user"}') end
            assert.are.equal(expected, resp.body_size)
        end)

        it("reuses the connection across calls", function()
            local a = fetch(tr, "GET", "/echo")
            local b = fetch(tr, "GET", "/echo")
            local c = fetch(tr, "PATCH", "/echo", {}, "x")
            assert.are.equal(1, a.connects)
            assert.are.equal(0, b.connects)
            assert.are.equal(0, c.connects)
            assert.are.equal(a.body.connection, b.body.connection)
            assert.are.equal(a.body.connection, c.body.connection)
        end)

        it("opens a new connection for every POST (libcurl never sends it twice)", function()
            local a = fetch(tr, "GET", "/echo")
            local p = fetch(tr, "POST", "/echo", {}, "x")
            local b = fetch(tr, "GET", "/echo")
            assert.are.equal(1, p.connects)
            assert.are_not.equal(a.body.connection, p.body.connection)
            assert.are.equal(0, b.connects)
        end)

        it("runs many transfers at once", function()
            local reqs, seen = {}, {}
            for i = 1, 20 do reqs[i] = tr:start("GET", server.url("/slow?ms=100"), {}) end
            assert.are.equal(20, tr:pending())
            local deadline = now() + 5000 * SLOW
            local n = 0
            while n < 20 and now() < deadline do
                for _, r in ipairs(tr:perform(100)) do
                    assert.is_nil(seen[r])
                    seen[r] = true
                    n = n + 1
                end
            end
            assert.are.equal(20, n)
            assert.are.equal(0, tr:pending())
            for i = 1, 20 do
                assert.is_true(seen[reqs[i]])
                assert.are.same({ slow = true }, reqs[i]:response().body)
            end
        end)
    end)

    describe("failures", function()
        it("reports a refused connection as 'connect', not sent", function()
            local tr = core.transport()
            local req = tr:start("POST", "http://127.0.0.1:1/users", { "Authorization: Bearer k" }, "{}")
            wait(tr, req)
            local resp = req:response()
            assert.are.equal("connect", resp.kind)
            assert.is_false(resp.sent)
            assert.are.equal(0, resp.status)
            assert.is_string(resp.message)
            assert.is_nil(resp.message:find("Bearer", 1, true))
            tr:close()
        end)

        it("refuses protocols other than http and https", function()
            local tr = core.transport()
            local req = tr:start("GET", "file:///etc/passwd", {})
            wait(tr, req)
            local resp = req:response()
            assert.are.equal("connect", resp.kind)
            assert.is_false(resp.sent)
            tr:close()
        end)

        it("times out within bounds, from the transport option", function()
            local tr = core.transport({ timeout_ms = 300 })
            local t0 = now()
            local resp = fetch(tr, "GET", "/slow?ms=3000")
            local took = now() - t0
            assert.are.equal("timeout", resp.kind)
            assert.is_true(resp.sent)
            assert.is_true(took >= 250 and took < 1000 * SLOW, "took " .. took)
            tr:close()
        end)

        it("times out within bounds, from the per-request override", function()
            local tr = core.transport({ timeout_ms = 30000 })
            local t0 = now()
            local resp = fetch(tr, "GET", "/trickle?ms=3000", {}, nil, 200)
            local took = now() - t0
            assert.are.equal("timeout", resp.kind)
            assert.is_true(took >= 150 and took < 1000 * SLOW, "took " .. took)
            tr:close()
        end)

        it("reports a dropped connection and a missing answer as 'network'", function()
            local tr = core.transport()
            local resp = fetch(tr, "GET", "/drop")
            assert.are.equal("network", resp.kind)
            assert.is_true(resp.sent)
            assert.is_nil(resp.body)
            assert.is_nil(resp.raw)
            resp = fetch(tr, "GET", "/nothing")
            assert.are.equal("network", resp.kind)
            assert.is_true(resp.sent)
            tr:close()
        end)

        it("caps a body announced by Content-Length", function()
            local tr = core.transport({ max_response_bytes = 1000 })
            assert.is_nil(fetch(tr, "GET", "/big?n=1000").kind)
            local resp = fetch(tr, "GET", "/big?n=1001")
            assert.are.equal("too_large", resp.kind)
            assert.matches("max_response_bytes", resp.message)
            assert.is_nil(resp.body)
            tr:close()
        end)

        it("caps a chunked body in the write callback", function()
            local tr = core.transport({ max_response_bytes = 100000 })
            assert.is_nil(fetch(tr, "GET", "/chunked?n=100000").kind)
            local resp = fetch(tr, "GET", "/chunked?n=300000")
            assert.are.equal("too_large", resp.kind)
            assert.is_true(resp.body_size <= 100000)
            tr:close()
        end)

        it("verifies TLS peers unless told not to", function()
            if not server.tls_url() then return pending("no openssl for a test certificate") end
            local tr = core.transport()
            local req = tr:start("GET", server.tls_url("/json"), {})
            wait(tr, req)
            local resp = req:response()
            assert.are.equal("tls", resp.kind)
            assert.is_false(resp.sent)
            assert.is_string(resp.message)
            tr:close()

            tr = core.transport({ unsafe_skip_tls_verify = true })
            assert.are.equal("alice", fetch_url(tr, server.tls_url("/json")).body.name)
            tr:close()

            tr = core.transport({ ca_file = server.cert_file })
            assert.are.equal("alice", fetch_url(tr, server.tls_url("/json")).body.name)
            tr:close()
        end)

        -- The transport polls sockets itself: bytes already decrypted inside
        -- the TLS layer show on no socket, and must still be read.
        it("reads several big TLS bodies at once to the last byte", function()
            if not server.tls_url() then return pending("no openssl for a test certificate") end
            local tr = core.transport({ ca_file = server.cert_file })
            local reqs, sizes = {}, {}
            for i = 1, 6 do
                sizes[i] = 3000000 + i
                reqs[i] = tr:start("GET", server.tls_url("/big?n=" .. sizes[i]), {})
            end
            sizes[7] = 2000000
            reqs[7] = tr:start("GET", server.tls_url("/chunked?n=" .. sizes[7]), {})
            local deadline = now() + 20000 * SLOW
            while tr:pending() > 0 and now() < deadline do tr:perform(100) end
            for i = 1, 7 do
                local resp = reqs[i]:response()
                assert.is_nil(resp.kind, resp.message)
                assert.are.equal(sizes[i], resp.body_size)
            end
            tr:close()
        end)

    end)

    describe("cancel and close", function()
        it("cancels a request in flight", function()
            local tr = core.transport()
            local req = tr:start("GET", server.url("/slow?ms=2000"), {})
            local other = tr:start("GET", server.url("/json"), {})
            tr:perform(0)
            req:cancel()
            assert.is_true(req:done())
            local resp = req:response()
            assert.are.equal("cancelled", resp.kind)
            assert.is_string(resp.message)
            local got = wait(tr, other)
            for _, r in ipairs(got) do assert.are_not.equal(req, r) end
            assert.are.equal(0, tr:pending())
            req:cancel() -- again: nothing happens
            assert.has_error(function() req:response() end, "the response was already read")
            tr:close()
        end)

        it("reports a request cancelled before any I/O as not sent", function()
            local tr = core.transport()
            local req = tr:start("POST", server.url("/echo"), {}, "x")
            req:cancel()
            assert.is_false(req:response().sent)
            assert.are.equal(0, tr:pending())
            tr:close()
        end)

        it("aborts transfers in flight on close", function()
            local tr = core.transport()
            local reqs = {}
            for i = 1, 3 do reqs[i] = tr:start("GET", server.url("/slow?ms=2000"), {}) end
            tr:perform(10)
            tr:close()
            for i = 1, 3 do
                assert.is_true(reqs[i]:done())
                assert.are.equal("cancelled", reqs[i]:response().kind)
            end
            assert.are.equal("passage.transport: closed", tostring(tr))
            -- Inert, not an error: a finalizer may close it under a caller.
            local t0 = core.now_ms()
            assert.are.same({}, tr:perform(500))
            assert.is_true(core.now_ms() - t0 < 400)
            assert.are.equal(0, tr:pending())
            assert.is_nil(tr:start("GET", server.url("/json"), {}))
            assert.are.same({}, tr:socket_changes())
            assert.are.equal(-1, tr:timer_ms())
            assert.are.same({}, tr:socket_action())
            assert.is_true(tr:wait(reqs[1], 500))
            assert.has_error(function() tr:headers { "X: 1" } end, "transport is closed")
            tr:close() -- again: nothing happens
        end)

        it("keeps finished-but-unreturned requests usable after close", function()
            local tr = core.transport()
            local req = tr:start("GET", server.url("/json"), {})
            local deadline = now() + 5000 * SLOW
            -- socket_action drives without returning via perform here: wait via perform
            while not req:done() and now() < deadline do tr:perform(20) end
            tr:close()
            assert.are.equal("alice", req:response().body.name)
        end)

        it("releases a request with close()", function()
            local tr = core.transport()
            local a = tr:start("GET", server.url("/slow?ms=2000"), {})
            a:close()
            assert.are.equal(0, tr:pending())
            assert.are.equal("passage.request: closed", tostring(a))
            assert.has_error(function() a:response() end, "request is closed")
            local resp, b = fetch(tr, "GET", "/json")
            b:close()
            assert.are.equal("alice", resp.body.name)
            assert.has_error(function() b:response() end, "the response was already read")
            tr:close()
        end)

        if _VERSION == "Lua 5.4" then
            it("supports to-be-closed variables", function()
                local f = load([[
                    local core, url = ...
                    local tr <close> = core.transport()
                    local req <close> = tr:start("GET", url, {})
                    return tr, req
                ]])
                local tr, req = f(core, server.url("/slow?ms=2000"))
                assert.are.equal("passage.transport: closed", tostring(tr))
                assert.are.equal("passage.request: closed", tostring(req))
            end)
        else
            it("is closed by close() where there are no to-be-closed variables", function()
                assert.is_nil(load("local x <close> = nil")) -- so none of the above applies
                local tr = core.transport()
                local req = tr:start("GET", server.url("/slow?ms=2000"), {})
                req:close()
                tr:close()
                assert.are.equal("passage.transport: closed", tostring(tr))
                assert.are.equal("passage.request: closed", tostring(req))
            end)
        end
    end)

    describe("garbage collection", function()
        it("collects transports and requests dropped in flight, in any order", function()
            for _ = 1, 20 do
                local tr = core.transport()
                for _ = 1, 5 do tr:start("GET", server.url("/slow?ms=2000"), {}) end
                tr:perform(0)
                tr = nil -- luacheck: ignore
                collectgarbage()
                collectgarbage()
            end
        end)

        it("keeps dropped requests alive while the transport needs them", function()
            local tr = core.transport()
            for _ = 1, 10 do tr:start("GET", server.url("/json"), {}) end
            collectgarbage()
            collectgarbage()
            local n, deadline = 0, now() + 5000 * SLOW
            while tr:pending() > 0 and now() < deadline do
                for _, r in ipairs(tr:perform(50)) do
                    n = n + 1
                    assert.are.equal("alice", r:response().body.name)
                end
                collectgarbage()
            end
            assert.are.equal(10, n)
            tr:close()
        end)

        it("frees responses handed out and never read once their transport goes", function()
            -- No request has a finalizer: its transport frees what nobody read
            -- (ASan and valgrind run this spec for leaks).
            for _ = 1, 5 do
                local tr = core.transport()
                for _ = 1, 4 do tr:start("GET", server.url("/json"), {}) end
                local cancelled = tr:start("GET", server.url("/slow?ms=2000"), {})
                cancelled:cancel() -- and dropped
                assert.are.equal("cancelled", cancelled:response().kind)
                tr:start("GET", server.url("/slow?ms=2000"), {}):cancel()
                local got, deadline = 0, now() + 5000 * SLOW
                while got < 4 and now() < deadline do
                    got = got + #tr:perform(20)
                end
                assert.are.equal(4, got)
                tr = nil -- luacheck: ignore
                collectgarbage()
                collectgarbage()
            end
        end)

        -- A transport's decodes remember the keys they made, for the next
        -- answer of the same shape. A finalizer that reads a response while
        -- another is being read (its decode nested in the other's) may
        -- replace keys the other remembered, at whichever allocation it
        -- runs: each still gets its own keys, and the other's check still
        -- sees every key for what it is. Here the 9th element of the outer
        -- answer lacks the field its check requires and has the inner
        -- answer's key in its place: a key the outer read would find
        -- remembered, if the inner one ran just before it. The outer answer
        -- is small, then large (over 16 KB, a decode copies the remembered
        -- keys onto the stack).
        it("reads a response in a finalizer that runs in the middle of another read", function()
            local torture = require("support.gc_torture")
            local check = core.checker({ outer_id = "string" }, { "[]" })
            local function doc(n, key_of)
                local items = {}
                for i = 1, n do
                    items[i] = string.format('{"%s":"%d"}', key_of(i), i)
                end
                return "[" .. table.concat(items, ",") .. "]"
            end
            local function outer_key(i) return i == 9 and "inner_id" or "outer_id" end
            local function inner_key() return "inner_id" end
            local function whole(value, key_of, n)
                assert.are.equal(n, #value)
                for i = 1, n do
                    assert.are.equal(tostring(i), value[i][key_of(i)])
                end
            end
            local tr = core.transport()
            -- (the finalizer at each of the first 40 allocations of the
            -- small one's read, and of every fourth of the large one's)
            for round = 1, 50 do
                local at, size = round, 16
                if round > 40 then
                    at, size = (round - 40) * 4, 1200
                end
                local outer = tr:start("POST", server.url("/reply"), {}, doc(size, outer_key))
                local inner = tr:start("POST", server.url("/reply"), {}, doc(4, inner_key))
                wait(tr, outer)
                wait(tr, inner)
                local nested, reading = nil, true
                -- The finalizer makes itself again at each allocation, and
                -- reads at the at-th: inside outer's read, before or amid
                -- its decode (one left over when that read ends does nothing).
                local function arm(left)
                    torture.finalizer(function()
                        if not reading then
                            return
                        elseif left > 1 then
                            arm(left - 1)
                        else
                            nested = inner:response()
                        end
                    end)
                end
                local resp = torture.during(function()
                    arm(at)
                    return outer:response(check)
                end)
                reading = false
                whole(resp.body, outer_key, size)
                assert.is_false(resp.checked, "finalizer at allocation " .. at)
                nested = nested or inner:response()
                whole(nested.body, inner_key, 4)
            end
            tr:close()
        end)

        it("survives a held request outliving its transport", function()
            local req
            do
                local tr = core.transport()
                req = tr:start("GET", server.url("/slow?ms=100"), {})
            end
            collectgarbage()
            collectgarbage()
            -- the request keeps its transport alive; nothing was cancelled
            assert.is_false(req:done())
            req = nil -- luacheck: ignore
            collectgarbage()
            collectgarbage()
        end)
    end)

    describe("perform", function()
        it("never blocks with timeout 0", function()
            local tr = core.transport()
            tr:start("GET", server.url("/slow?ms=2000"), {})
            local t0 = now()
            for _ = 1, 20 do tr:perform(0) end
            assert.is_true(now() - t0 < 100 * SLOW)
            tr:close()
        end)

        it("sleeps the timeout when nothing is in flight", function()
            local tr = core.transport()
            local t0 = now()
            local done = tr:perform(200)
            local took = now() - t0
            assert.are.same({}, done)
            assert.is_true(took >= 190 and took < 400 * SLOW, "took " .. took)
            tr:close()
        end)

        -- libcurl queues the transfers over the limit and starts each when a
        -- connection frees, through its timer: nothing may be left waiting.
        it("runs transfers queued by max_host_connections as connections free", function()
            local tr = core.transport({ max_host_connections = 2 })
            local reqs = {}
            for i = 1, 6 do reqs[i] = tr:start("GET", server.url("/slow?ms=150"), {}) end
            local t0 = now()
            local deadline = t0 + 5000 * SLOW
            while tr:pending() > 0 and now() < deadline do tr:perform(50) end
            local took = now() - t0
            local connects = 0
            for i = 1, 6 do
                local resp = reqs[i]:response()
                assert.are.equal(200, resp.status)
                connects = connects + resp.connects
            end
            assert.are.equal(2, connects)
            -- Three rounds of two, not one round of six.
            assert.is_true(took >= 440, "took " .. took)
            tr:close()
        end)

        it("wait(req, ms, true) leaves the finished request for perform()", function()
            local tr = core.transport()
            local req = tr:start("GET", server.url("/json"), {})
            local done, waiting = tr:wait(req, 5000 * SLOW, true)
            assert.is_true(done)
            assert.are.equal(1, waiting)
            assert.are.same({ req }, tr:perform(0))
            assert.are.equal("alice", req:response().body.name)
            tr:close()
        end)

        it("never blocks much longer than the timeout", function()
            local tr = core.transport()
            tr:start("GET", server.url("/slow?ms=3000"), {})
            tr:perform(0)
            for _ = 1, 5 do
                local t0 = now()
                tr:perform(100)
                assert.is_true(now() - t0 < 200 * SLOW)
            end
            tr:close()
        end)
    end)

    describe("wait, header sets and result", function()
        local tr
        before_each(function() tr = core.transport() end)
        after_each(function() tr:close() end)

        it("waits in C for one request; others that finish stay for perform", function()
            local slow = tr:start("GET", server.url("/slow?ms=300"), {})
            local other = tr:start("GET", server.url("/json"), {})
            local done, finished = tr:wait(slow, 5000 * SLOW)
            assert.is_true(done)
            assert.is_true(slow:done())
            assert.are.equal(1, finished)
            assert.are.same({ other }, tr:perform(0))
            assert.are.same({ slow = true }, slow:response().body)
            -- Done already: answers at once.
            assert.same({ true, 0 }, { tr:wait(slow, 1000) })
        end)

        it("gives up after timeout_ms, and never blocks with 0", function()
            local req = tr:start("GET", server.url("/slow?ms=2000"), {})
            local t0 = now()
            assert.is_false((tr:wait(req, 0)))
            assert.is_false((tr:wait(req, 100)))
            local took = now() - t0
            assert.is_true(took >= 90 and took < 400 * SLOW, "took " .. took)
            assert.are.equal(1, tr:pending())
            local other = core.transport()
            assert.has_error(function() other:wait(req, 0) end)
            other:close()
        end)

        it("sends a header set as it sends the array", function()
            local set = tr:headers { "X-Test: shared", "Content-Type: application/json" }
            assert.are.equal("passage.headers", tostring(set))
            for _ = 1, 3 do
                local e = fetch(tr, "POST", "/echo", set, "{}").body
                assert.are.equal("shared", e.x_test)
                assert.are.equal("application/json", e.content_type)
                assert.are.equal("", e.expect)
            end
            local e = fetch(tr, "GET", "/echo", tr:headers { "X-Test: two" }).body
            assert.are.equal("two", e.x_test)
            assert.are.equal("", e.content_type)
            assert.has_error(function() tr:headers { "X-Test: a\r\nX-Evil: b" } end,
                "header 1 contains CR, LF or NUL")
            assert.has_error(function() tr:headers { 1 } end, "header 1 is not a string")
        end)

        it("keeps a header set alive as long as a request in flight uses it", function()
            local req = tr:start("GET", server.url("/echo"), tr:headers { "X-Test: kept" })
            collectgarbage()
            collectgarbage()
            assert.is_true((tr:wait(req, 5000 * SLOW)))
            assert.are.equal("kept", req:response().body.x_test)
        end)
    end)

    describe("socket interface", function()
        -- A host event loop in miniature: luasocket's select over raw fds.
        local function drive(tr, limit_ms)
            local fds, finished = {}, {}
            local deadline = now() + limit_ms * SLOW
            local function take(list)
                for _, r in ipairs(list) do finished[#finished + 1] = r end
            end
            take(tr:socket_action())
            while tr:pending() > 0 and now() < deadline do
                for _, c in ipairs(tr:socket_changes()) do
                    assert.is_number(c.fd)
                    fds[c.fd] = c.events ~= "remove" and c.events or nil
                end
                local rd, wr = {}, {}
                for fd, ev in pairs(fds) do
                    local o = { fd = fd, getfd = function() return fd end }
                    if ev ~= "out" then rd[#rd + 1] = o end
                    if ev ~= "in" then wr[#wr + 1] = o end
                end
                local t = tr:timer_ms()
                assert.is_true(t >= -1)
                local wait_s = (t < 0 or t > 100) and 0.1 or t / 1000
                local r, w = socket.select(rd, wr, wait_s)
                local ready = {}
                for _, o in ipairs(r or {}) do ready[o.fd] = "in" end
                for _, o in ipairs(w or {}) do ready[o.fd] = ready[o.fd] and "inout" or "out" end
                for fd, ev in pairs(ready) do take(tr:socket_action(fd, ev)) end
                if tr:timer_ms() == 0 then take(tr:socket_action()) end
            end
            return finished
        end

        it("runs transfers driven by socket_changes, timer_ms and socket_action", function()
            local tr = core.transport()
            assert.are.equal(-1, tr:timer_ms())
            local a = tr:start("GET", server.url("/json"), {})
            local b = tr:start("POST", server.url("/echo"), {}, "hello")
            assert.is_true(tr:timer_ms() >= 0)
            local finished = drive(tr, 5000)
            assert.are.equal(2, #finished)
            assert.are.equal("alice", a:response().body.name)
            assert.are.equal("hello", b:response().body.body)
            -- and again, on the kept-alive connection
            local c = tr:start("GET", server.url("/json"), {})
            assert.are.equal(1, #drive(tr, 5000))
            assert.are.equal(0, c:response().connects)
            tr:close()
        end)

        it("reports timeouts through the timer", function()
            local tr = core.transport({ timeout_ms = 200 })
            local a = tr:start("GET", server.url("/slow?ms=3000"), {})
            local t0 = now()
            assert.are.equal(1, #drive(tr, 5000))
            assert.are.equal("timeout", a:response().kind)
            assert.is_true(now() - t0 < 1000 * SLOW)
            tr:close()
        end)

        it("validates its arguments", function()
            local tr = core.transport()
            assert.has_error(function() tr:socket_action(-1) end)
            assert.has_error(function() tr:socket_action(3, "sideways") end)
            tr:close()
        end)
    end)

    -- request:response(check) runs a core.checker(fields, path) while decoding.
    -- Whenever it says "checked", the plain checker passes every value at the
    -- path; on documents without duplicate keys the two always agree.
    describe("checks while decoding", function()
        local FIELDS = { id = "string", email = "string?", n = "number?", ok = "boolean?",
            meta = "table?" }
        local plain = core.checker(FIELDS)
        local in_list = core.checker(FIELDS, { "users", "[]" })
        local in_user = core.checker(FIELDS, { "user" })

        local function checked_by_decoder(tr, body, check)
            local req = tr:start("POST", server.url("/reply"), {}, body)
            wait(tr, req)
            local response = req:response(check)
            assert.equal(200, response.status)
            return response.checked, response.body
        end

        local list_cases = {
            { '{"users":[]}', true },
            { '{"users":[{"id":"a"},{"id":"b","email":"x","n":1,"ok":true,"meta":{}}]}', true },
            { '{"users":[{"id":"a","n":1.5e3,"meta":[1]}]}', true },
            { '{"users":[{"id":"a","email":null}]}', true },
            { '{"users":[{"id":"a","extra":{"id":5}}]}', true },
            { '{"users":[{"id":"a"},{"email":"no id"}]}', false },
            { '{"users":[{"id":null}]}', false },
            { '{"users":[{"id":7}]}', false },
            { '{"users":[{"id":"a","email":5}]}', false },
            { '{"users":[{"id":"a","n":"5"}]}', false },
            { '{"users":[{"id":"a","ok":"true"}]}', false },
            { '{"users":[{"id":"a","meta":"x"}]}', false },
            { '{"users":[{"id":"a"},3]}', false },
            { '{"users":[{"id":"a"},null]}', false },
            { '{"users":[{"id":"a"},[{"id":"b"}]]}', false },
            { '{"other":[{"nothing":1}],"users":[{"id":"a"}]}', true },
            -- duplicate keys: the decoder may only err on the safe side
            { '{"users":[{"id":"a","id":null}]}', false },
            { '{"users":[{"id":5,"id":"a"}]}', nil },
        }

        it("agrees with the plain checker on the elements of users", function()
            local tr = core.transport()
            for _, case in ipairs(list_cases) do
                local checked, value = checked_by_decoder(tr, case[1], in_list)
                local all_pass = true
                for _, u in ipairs(value.users) do
                    all_pass = all_pass and plain(u)
                end
                if checked then
                    assert.is_true(all_pass, case[1])
                end
                if case[2] ~= nil then
                    assert.equal(case[2], checked, case[1])
                    assert.equal(case[2], all_pass, case[1])
                end
            end
            tr:close()
        end)

        it("checks the object at user, and only an object passes", function()
            local tr = core.transport()
            assert.is_true((checked_by_decoder(tr, '{"user":{"id":"a","n":2}}', in_user)))
            assert.is_false((checked_by_decoder(tr, '{"user":{"n":2}}', in_user)))
            assert.is_false((checked_by_decoder(tr, '{"user":[]}', in_user)))
            assert.is_false((checked_by_decoder(tr, '{"user":{"id":"a","email":false}}', in_user)))
            -- Without a check (or with a checker that has no path), nothing is claimed.
            assert.is_false((checked_by_decoder(tr, '{"user":{"id":"a"}}', nil)))
            assert.is_false((checked_by_decoder(tr, '{"user":{"id":"a"}}', plain)))
            tr:close()
        end)

        it("refuses bad paths", function()
            assert.has_error(function() core.checker(FIELDS, {}) end)
            assert.has_error(function() core.checker(FIELDS, { 1 }) end)
            assert.has_error(function() core.checker(FIELDS, "users") end)
        end)
    end)
end)
