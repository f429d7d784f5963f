-- Retries, timeouts, hostile responses and the security rules of the client,
-- against the emulator's fault injection (and the private test server for
-- TLS, redirects and the raw request).
local users = require "passage.users"
local core = require "passage.core"
local retry = require "passage.retry"
local emulator = require "support.emulator"
local ports = require "support.ports"
local server = require "support.test_server"

local APP = "test_app"
local USER_ROUTE = "GET /apps/{app_id}/users/{user_id}"
local CREATE_ROUTE = "POST /apps/{app_id}/users"

-- Timing bounds widen under valgrind or sanitizers (PASSAGE_SLOW=1).
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1

local function new_client(opts)
    return emulator.client(opts, { timeout_ms = 5000 * SLOW, retry_base_delay_ms = 10 })
end

-- Runs f, returns its results and the elapsed milliseconds.
local function timed(f)
    local t0 = core.now_ms()
    local v, err = f()
    return v, err, core.now_ms() - t0
end

local function faults(...)
    emulator.faults { clear = true, next = { ... } }
    emulator.reset_stats()
end

local closed_port = ports.closed

local function users_with(client, email)
    local page = assert(client:list_paginated_users(APP, { identifier = email }))
    return page.total_users
end

describe("reliability", function()
    local client, user
    before_each(function()
        emulator.reset()
        client = new_client()
        user = assert(client:create_user(APP, { email = "base@example.com" }))
        emulator.reset_stats()
    end)
    after_each(function()
        client:close()
        emulator.faults { clear = true }
    end)

    describe("retries", function()
        it("retries 503 until it succeeds, counting attempts on the server", function()
            faults { status = 503, count = 2 }
            local got = assert(client:get_user(APP, user.id))
            assert.equal(user.id, got.id)
            local stats = emulator.stats()
            assert.equal(3, stats.total)
            assert.equal(2, emulator.count(stats, USER_ROUTE, 503))
            assert.equal(1, emulator.count(stats, USER_ROUTE, 200))
        end)

        for _, status in ipairs { 429, 502, 503, 504 } do
            it("retries HTTP " .. status, function()
                faults { status = status }
                assert(client:get_user(APP, user.id))
                assert.equal(1, emulator.count(emulator.stats(), USER_ROUTE, status))
                assert.equal(2, emulator.stats().total)
            end)
        end

        for _, status in ipairs { 400, 401, 403, 404, 500 } do
            it("does not retry HTTP " .. status, function()
                faults { status = status }
                local got, err = client:get_user(APP, user.id)
                assert.is_nil(got)
                assert.equal("http", err.kind)
                assert.equal(status, err.status)
                assert.equal(1, err.attempts)
                assert.equal(1, emulator.stats().total)
            end)
        end

        it("stops after max_attempts and says how many were made", function()
            local c = new_client { max_attempts = 3 }
            faults { status = 503, count = 10 }
            local _, err = c:get_user(APP, user.id)
            c:close()
            assert.equal("http", err.kind)
            assert.equal(503, err.status)
            assert.equal(3, err.attempts)
            assert.equal("get_user", err.operation)
            assert.matches("after 3 attempts", tostring(err))
            assert.equal(3, emulator.stats().total)
        end)

        it("backs off exponentially with jitter (half of each step fixed)", function()
            local c = new_client { retry_base_delay_ms = 100, retry_max_delay_ms = 10000 }
            faults { status = 503, count = 3 }
            local got, _, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.is_table(got)
            -- steps 100, 200, 400: at least half of each, at most all of it
            assert.is_true(ms >= 345, "too quick: " .. ms)
            assert.is_true(ms < 700 + 1000 * SLOW, "too slow: " .. ms)
            for _ = 1, 200 do
                local d = retry.delay_ms({ retry_base_delay_ms = 100, retry_max_delay_ms = 10000,
                    retry_after_max_ms = 1000 }, 3)
                assert.is_true(d >= 200 and d <= 400)
            end
        end)

        it("caps a backoff step at retry_max_delay_ms", function()
            local c = new_client { retry_base_delay_ms = 5000, retry_max_delay_ms = 50 }
            faults { status = 503, count = 3 }
            local got, _, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.is_table(got)
            assert.is_true(ms >= 70 and ms < 150 + 1000 * SLOW, "took " .. ms)
        end)

        it("honours Retry-After in seconds", function()
            faults { status = 503, retry_after = "1" }
            local got, _, ms = timed(function() return client:get_user(APP, user.id) end)
            assert.is_table(got)
            assert.is_true(ms >= 1000, "did not wait: " .. ms)
            assert.is_true(ms < 2000 * SLOW, "waited too long: " .. ms)
            assert.equal(2, emulator.stats().total)
        end)

        it("honours Retry-After as an HTTP date", function()
            local at = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 2)
            faults { status = 429, retry_after = at }
            local got, _, ms = timed(function() return client:get_user(APP, user.id) end)
            assert.is_table(got)
            -- whole seconds: between one and two seconds from now
            assert.is_true(ms >= 900, "did not wait: " .. ms)
            assert.is_true(ms < 3000 * SLOW, "waited too long: " .. ms)
        end)

        it("ends the call on a Retry-After over retry_after_max_ms, keeping the value", function()
            local c = new_client { retry_after_max_ms = 2000 }
            faults { status = 429, retry_after = "120" }
            local got, err, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.is_nil(got)
            assert.equal(429, err.status)
            assert.equal("rate_limited", err.code)
            assert.equal(120, err.retry_after)
            assert.equal(1, err.attempts)
            assert.is_true(ms < 500 * SLOW)
            assert.equal(1, emulator.stats().total)
        end)

        it("ends the call when the Retry-After outlasts timeout_ms", function()
            local c = new_client { timeout_ms = 1500 }
            faults { status = 503, retry_after = "5" }
            local _, err, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.equal(503, err.status)
            assert.equal(5, err.retry_after)
            assert.equal(1, err.attempts)
            assert.is_true(ms < 500 * SLOW)
        end)

        it("retries every call that is safe to repeat", function()
            emulator.seed(APP, 5, 3)
            local target = assert(client:create_user(APP, { email = "t@example.com" }))
            local calls = {
                { "get_user", APP, target.id },
                { "list_paginated_users", APP, { limit = 2 } },
                { "update_user", APP, target.id, { user_metadata = { plan = "pro" } } },
                { "deactivate_user", APP, target.id },
                { "activate_user", APP, target.id },
                { "list_user_devices", APP, target.id },
                { "revoke_user_refresh_tokens", APP, target.id },
                { "get_user_by_identifier", APP, "t@example.com" },
                { "delete_user", APP, target.id },
            }
            for _, c in ipairs(calls) do
                faults { status = 503 }
                local v, err = client[c[1]](client, table.unpack(c, 2))
                assert.is_nil(err, c[1])
                assert.truthy(v, c[1])
                assert.equal(c[1] == "get_user_by_identifier" and 3 or 2, emulator.stats().total, c[1])
            end
        end)

        it("retries a dropped connection and a response with headers only", function()
            faults({ drop = true }, { headers_only = true })
            local got = assert(client:get_user(APP, user.id))
            assert.equal(user.id, got.id)
            assert.equal(3, emulator.stats().total)
        end)

        it("retries a refused connection, also for create_user (nothing was sent)", function()
            local c = new_client { base_url = "http://127.0.0.1:" .. closed_port() .. "/v1",
                max_attempts = 3 }
            local _, err, ms = timed(function()
                return c:create_user(APP, { email = "refused@example.com" })
            end)
            c:close()
            assert.equal("connect", err.kind)
            assert.equal(3, err.attempts)
            assert.equal("create_user", err.operation)
            assert.is_true(ms < 1000 * SLOW)
            -- the transport's verdict the retry rule relies on
            local tr = core.transport()
            local req = tr:start("POST", "http://127.0.0.1:" .. closed_port() .. "/", {}, "{}")
            while not req:done() do tr:perform(50) end
            local resp = req:response()
            tr:close()
            assert.equal("connect", resp.kind)
            assert.is_false(resp.sent)
            assert.is_true(retry.is_transient(resp, false))
        end)
    end)

    describe("create_user is never repeated once sent", function()
        it("does not retry a 503", function()
            faults { status = 503 }
            local got, err = client:create_user(APP, { email = "once@example.com" })
            assert.is_nil(got)
            assert.equal(503, err.status)
            assert.equal(1, err.attempts)
            assert.equal(1, emulator.count(emulator.stats(), CREATE_ROUTE, 503))
            assert.equal(1, emulator.stats().total)
            assert.equal(0, users_with(client, "once@example.com"))
            assert(client:create_user(APP, { email = "once@example.com" }))
            assert.equal(1, users_with(client, "once@example.com"))
        end)

        for _, fault in ipairs { { drop = true }, { headers_only = true } } do
            local name = next(fault)
            it("does not retry a " .. name .. " after the server created the user", function()
                faults(fault)
                local got, err = client:create_user(APP, { email = name .. "@example.com" })
                assert.is_nil(got)
                assert.equal("network", err.kind)
                assert.equal(1, err.attempts)
                assert.equal(1, emulator.stats().total)
                assert.equal(1, users_with(client, name .. "@example.com"))
            end)
        end

        it("does not retry a timeout once the request was sent", function()
            local c = new_client { timeout_ms = 2000, attempt_timeout_ms = 300 }
            emulator.faults { clear = true, latency_ms = 600 }
            emulator.reset_stats()
            local _, err = c:create_user(APP, { email = "slow@example.com" })
            emulator.faults { clear = true }
            c:close()
            assert.equal("timeout", err.kind)
            assert.equal(1, err.attempts)
            assert.equal(1, emulator.stats().total)
        end)

        for _, what in ipairs { "zero", "text" } do
            it("is sent once when the reply is not HTTP (" .. what .. ")", function()
                server.start()
                local c = new_client { base_url = server.url("/nothttp/" .. what) }
                local got, err = c:create_user(APP, { email = "nothttp@example.com" })
                local _, count = emulator.request(server.url("/counter?name=nothttp"))
                -- A call that is safe to repeat is retried, as for a reset.
                local _, gerr = c:get_user(APP, "u1")
                local _, gets = emulator.request(server.url("/counter?name=nothttp"))
                c:close()
                server.stop()
                assert.is_nil(got)
                assert.equal("network", err.kind)
                assert.equal(1, err.attempts)
                assert.equal("1", count)
                assert.equal("network", gerr.kind)
                assert.equal(4, gerr.attempts)
                assert.equal("4", gets)
            end)
        end

        it("is sent once when a reused connection closes without an answer", function()
            server.start()
            local c = new_client { base_url = server.url("/hangup") }
            assert(c:get_user(APP, "u1")) -- leaves a connection to reuse
            local got, err = c:create_user(APP, { email = "hangup@example.com" })
            c:close()
            local _, count = emulator.request(server.url("/counter?name=hangup"))
            server.stop()
            assert.is_nil(got)
            assert.equal("network", err.kind)
            assert.equal(1, err.attempts)
            assert.equal("1", count)
        end)
    end)

    describe("timeouts", function()
        it("ends a stalled call at timeout_ms", function()
            local c = new_client { timeout_ms = 500 }
            emulator.faults { clear = true, latency_ms = 3000 }
            local got, err, ms = timed(function() return c:get_user(APP, user.id) end)
            emulator.faults { clear = true }
            c:close()
            assert.is_nil(got)
            assert.equal("timeout", err.kind)
            assert.is_true(ms >= 450 and ms < 1500 * SLOW, "took " .. ms)
        end)

        it("ends a trickling body at timeout_ms", function()
            local c = new_client { timeout_ms = 600 }
            faults { trickle_ms = 200, chunk = 16 }
            local _, err, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.equal("timeout", err.kind)
            assert.equal(1, err.attempts)
            assert.is_true(ms >= 550 and ms < 1600 * SLOW, "took " .. ms)
        end)

        it("retries an attempt that ran over attempt_timeout_ms", function()
            local c = new_client { timeout_ms = 5000, attempt_timeout_ms = 400 }
            faults { trickle_ms = 200, chunk = 16 }
            local got, _, ms = timed(function() return c:get_user(APP, user.id) end)
            c:close()
            assert.equal(user.id, got.id)
            assert.equal(2, emulator.stats().total)
            assert.is_true(ms >= 390 and ms < 1500 * SLOW, "took " .. ms)
        end)

        it("ends a connection that never completes at connect_timeout_ms", function()
            local port, close = ports.unanswering()
            local c = new_client { base_url = "http://127.0.0.1:" .. port .. "/v1",
                connect_timeout_ms = 300, timeout_ms = 3000, max_attempts = 2 }
            local _, err, ms = timed(function()
                return c:create_user(APP, { email = "never@example.com" })
            end)
            c:close()
            close()
            assert.equal("timeout", err.kind)
            assert.equal(2, err.attempts) -- nothing was sent: even a create is retried
            assert.is_true(ms >= 550 and ms < 2000 * SLOW, "took " .. ms)
        end)
    end)

    describe("big bodies", function()
        -- libcurl can read a whole big body in its timer rounds, with no
        -- socket event after: the call must end then, not at timeout_ms.
        local SIZE, TIMES = 13 * 1000 * 1000, os.getenv("PASSAGE_SLOW") and 2 or 20
        local function twenty_calls(opts)
            local c = new_client(opts)
            local slowest = 0
            for _ = 1, TIMES do
                local got, err, ms = timed(function() return c:get_user(APP, "u1") end)
                assert(got, tostring(err))
                assert.equal(SIZE, #got.user_metadata.pad + 47) -- the rest: 43 + 4 bytes
                slowest = math.max(slowest, ms)
            end
            c:close()
            return slowest
        end

        setup(function() server.start() end)
        teardown(function() server.stop() end)

        for _, framing in ipairs { "length", "chunked" } do
            local path = "/bigapi/" .. SIZE .. "/" .. framing
            it("of 13 MB (" .. framing .. ") end when their last byte is in, over HTTP", function()
                local slowest = twenty_calls { base_url = server.url(path),
                    timeout_ms = 10000 * SLOW, max_attempts = 1 }
                assert.is_true(slowest < 5000 * SLOW, "slowest call took " .. slowest .. " ms")
            end)

            it("of 13 MB (" .. framing .. ") end when their last byte is in, over TLS", function()
                if not server.tls_url() then return pending("no openssl for a test certificate") end
                local slowest = twenty_calls { base_url = server.tls_url(path),
                    ca_file = server.cert_file, timeout_ms = 10000 * SLOW, max_attempts = 1 }
                assert.is_true(slowest < 5000 * SLOW, "slowest call took " .. slowest .. " ms")
            end)
        end

        it("are capped at 16 MiB unless max_response_bytes says otherwise", function()
            local size = 16 * 1024 * 1024 + 1
            for _, framing in ipairs { "length", "chunked" } do
                local c = new_client { base_url = server.url("/bigapi/" .. size .. "/" .. framing) }
                local got, err = c:get_user(APP, "u1")
                c:close()
                assert.is_nil(got)
                assert.equal("too_large", err.kind)
                assert.equal(1, err.attempts)
            end
        end)

        it("calls a response header over libcurl's limit too_large, and does not retry it", function()
            local c = new_client { base_url = server.url("/bighead") }
            local got, err = c:get_user(APP, "u1")
            c:close()
            assert.is_nil(got)
            assert.equal("too_large", err.kind)
            assert.equal(1, err.attempts)
            assert.matches("header", err.message)
        end)
    end)

    describe("hostile responses", function()
        local cases = {
            { { truncate = true }, "decode", "not JSON" },
            { { body = "not_json" }, "decode", "not JSON" },
            { { body = "html" }, "decode", "not JSON" },
            { { body = "empty" }, "decode", "expected a user" },
            { { body = "deep" }, "decode", "nesting deeper" },
            { { body = "invalid_utf8" }, "decode", "UTF%-8" },
            { { body = "wrong_types" }, "decode", "user field [%w_]+: expected" },
            { { body = "huge" }, "too_large", "max_response_bytes" },
            { { drop = true }, "network", "" },
            { { headers_only = true }, "network", "" },
        }
        for _, case in ipairs(cases) do
            local fault, kind, pattern = case[1], case[2], case[3]
            local name = require("cjson").encode(fault)
            for _, keep_null in ipairs { false, true } do
                it(name .. " gives nil, err of kind " .. kind .. (keep_null and " (keep_null)" or ""),
                    function()
                        local c = new_client { max_attempts = 1, keep_null = keep_null }
                        faults(fault)
                        local got, err = c:get_user(APP, user.id)
                        c:close()
                        assert.is_nil(got)
                        assert.equal(kind, err.kind)
                        assert.matches(pattern, err.message or "")
                        assert.equal(1, err.attempts)
                        assert.is_string(tostring(err))
                        assert.equal(1, emulator.stats().total)
                    end)
            end
        end

        it("keeps a non-JSON body of a 2xx in err.body", function()
            faults { body = "html" }
            local _, err = client:get_user(APP, user.id)
            assert.matches("<html", err.body)
            assert.equal(200, err.status)
        end)

        it("retries an HTML 502 page and keeps the last one in err.body", function()
            faults { body = "html", status = 502, count = 4 }
            local _, err = client:get_user(APP, user.id)
            assert.equal("http", err.kind)
            assert.equal(502, err.status)
            assert.equal(4, err.attempts)
            assert.matches("<html", err.body)
            assert.equal(4, emulator.stats().total)
        end)

        it("caps any body at max_response_bytes", function()
            local c = new_client { max_response_bytes = 100 }
            local got, err = c:get_user(APP, user.id)
            c:close()
            assert.is_nil(got)
            assert.equal("too_large", err.kind)
            assert.equal(1, err.attempts)
        end)

        it("gives the same verdict on a body whichever keep_null is", function()
            local engine = require "passage.engine"
            local h = client:start("get_user", APP, "u1")
            local call = h.call
            h:cancel()
            for _, doc in ipairs {
                '{"user":{"id":"u1","phone":null,"last_login_at":null,"user_metadata":null}}',
                '{"user":{"id":null}}', '{"user":null}', '{"user":{"id":"u1","phone":7}}',
            } do
                local verdicts = {}
                for _, keep_null in ipairs { false, true } do
                    local body = core.decoder({ keep_null = keep_null }):decode(doc)
                    local v, err = engine.outcome(call, { status = 200, body = body, body_size = #doc })
                    verdicts[#verdicts + 1] = v and "ok" or err.kind
                end
                assert.equal(verdicts[1], verdicts[2], doc)
            end
        end)

        it("calls a listed user with an unusable id a bad response, not a bad argument", function()
            local engine = require "passage.engine"
            local h = client:start("get_user_by_identifier", APP, "a@example.com")
            local call = h.call
            h:cancel()
            local doc = '{"users":[{"id":""}],"total_users":1,"page":1,"limit":1,"created_before":1}'
            local v, err = engine.outcome(call, { status = 200, body = core.decoder():decode(doc),
                body_size = #doc })
            assert.is_nil(v)
            assert.equal("decode", err.kind)
            assert.matches("unusable id", err.message)
        end)

        it("does not let a big response make a later small one allocate much", function()
            local d = core.decoder()
            local members = {}
            for i = 1, 20 do
                members[i] = string.format('"k%d":[%s0]', i, string.rep("0,", 60000))
            end
            assert(d:decode("{" .. table.concat(members, ",") .. "}"))
            for i = 1, 20 do members[i] = string.format('"k%d":[]', i) end
            local small = "{" .. table.concat(members, ",") .. "}"
            collectgarbage()
            collectgarbage()
            local before = collectgarbage("count")
            local v = assert(d:decode(small))
            local grew = collectgarbage("count") - before
            assert.is_table(v)
            assert.is_true(grew < 64, string.format("%d-byte body took %.0f KiB", #small, grew))
        end)

        it("checks every list and device response", function()
            faults { body = "wrong_types", count = 2 }
            local _, err = client:list_paginated_users(APP, {})
            assert.equal("decode", err.kind)
            _, err = client:list_user_devices(APP, user.id)
            assert.equal("decode", err.kind)
            faults { body = "empty", count = 2 }
            _, err = client:list_paginated_users(APP, {})
            assert.equal("decode", err.kind)
            _, err = client:list_user_devices(APP, user.id)
            assert.equal("decode", err.kind)
        end)
    end)

    describe("security", function()
        setup(function() server.start() end)
        teardown(function() server.stop() end)

        it("verifies the TLS peer by default", function()
            if not server.tls_url() then return pending("no openssl for a test certificate") end
            local c = new_client { base_url = server.tls_url("/raw") }
            local got, err = c:get_user(APP, "x")
            c:close()
            assert.is_nil(got)
            assert.equal("tls", err.kind)
            assert.equal(1, err.attempts)

            c = new_client { base_url = server.tls_url("/raw"), ca_file = server.cert_file }
            assert(c:get_user(APP, "x"))
            c:close()
            c = new_client { base_url = server.tls_url("/raw"), unsafe_skip_tls_verify = true }
            assert(c:get_user(APP, "x"))
            c:close()
        end)

        for _, status in ipairs { 301, 302, 303, 307, 308 } do
            it("never follows a " .. status .. " redirect", function()
                local c = new_client { api_key = "sk_redirect_secret",
                    base_url = server.url("/moved/" .. status .. "/" .. emulator.port() .. "/v1") }
                local got, err = c:get_user(APP, user.id)
                local created, cerr = c:create_user(APP, { email = "moved@example.com" })
                c:close()
                assert.is_nil(got)
                assert.equal("http", err.kind)
                assert.equal(status, err.status)
                assert.equal(1, err.attempts)
                assert.is_nil(created)
                assert.equal(status, cerr.status)
                -- the target never saw a request, so never the Authorization header
                assert.equal(0, emulator.stats().total)
            end)
        end

        it("keeps every input inside the request line and body", function()
            local c = new_client { base_url = server.url("/raw") }
            local evil = "x\r\nX-Evil: 1\r\n\r\nGET /admin HTTP/1.1\nHost: evil %0d%0a ?a=b#c"
            local seen = {
                assert(c:get_user(evil, evil)).id,
                assert(c:update_user(APP, evil, { user_metadata = { [evil] = evil } })).id,
                assert(c:create_user(APP, { email = evil, user_metadata = { [evil] = 1 } })).id,
                assert(c:list_paginated_users(APP, { identifier = evil, id = { like = evil },
                    order_by = "id:ASC" })).user.id,
            }
            -- nginx refuses a NUL in a path (%00): a plain HTTP error
            local _, err = c:get_user(APP, evil .. "\0")
            assert.equal("http", err.kind)
            assert.equal(400, err.status)
            c:close()
            for _, raw in ipairs(seen) do
                local lines = {}
                for line in raw:gmatch("([^\r\n]*)\r\n") do lines[#lines + 1] = line end
                assert.matches("^[A-Z]+ /raw/apps/[%w%%_%-~/?=&:.,@]+ HTTP/1%.1$", lines[1])
                local names = {}
                for i = 2, #lines do
                    if lines[i] ~= "" then
                        local name = assert(lines[i]:match("^([%w%-]+): "), lines[i])
                        names[#names + 1] = name:lower()
                    end
                end
                local agent = "\r\nUser-Agent: passage-lua/" .. users._VERSION .. "\r\n"
                assert.truthy(raw:find(agent, 1, true), "the default User-Agent")
                for _, name in ipairs(names) do
                    assert.truthy(({ host = true, authorization = true, accept = true,
                        ["passage-version"] = true, ["user-agent"] = true,
                        ["accept-encoding"] = true, ["content-length"] = true,
                        ["content-type"] = true })[name], name)
                end
                assert.not_matches("\nX%-Evil", raw)
                assert.not_matches("\nGET /admin", raw)
            end
        end)

        it("never shows the API key in the client, a handle, an error or a message", function()
            local key = "sk_live_hidden_4242"
            local failing = {
                new_client { api_key = key }, -- 401 from the emulator
                new_client { api_key = key, base_url = "http://127.0.0.1:" .. closed_port() },
                new_client { api_key = key, base_url = server.tls_url("/raw") or server.url("/x") },
                new_client { api_key = key, base_url = server.url("/moved/302/1") },
            }
            -- every string reachable through tables (what a dumper prints)
            local function walk(v, seen)
                if type(v) == "string" then
                    assert.is_nil(v:find(key, 1, true), "the key is reachable")
                elseif type(v) == "table" and not seen[v] then
                    seen[v] = true
                    for k, x in pairs(v) do
                        walk(k, seen)
                        walk(x, seen)
                    end
                end
            end
            for _, c in ipairs(failing) do
                assert.not_matches(key, tostring(c))
                local h = c:start("get_user", APP, "x")
                assert.not_matches(key, tostring(h))
                walk(h, {})
                walk(c, {})
                local _, err = h:wait()
                assert.not_matches(key, tostring(err))
                for k, v in pairs(err) do
                    assert.not_matches(key, tostring(k) .. "=" .. tostring(v))
                end
                c:close()
            end
            local ok, msg = pcall(users.new, { api_key = key .. "\r\nX: y" })
            assert.is_false(ok)
            assert.not_matches("hidden_4242", msg)
        end)

        for _, form in ipairs { "json", "text" } do
            it("keeps the API key out of an error whose server echoes it (" .. form .. ")", function()
                local key = "sk_live_echoed_4242"
                local c = new_client { api_key = key, base_url = server.url("/echokey/" .. form) }
                local _, err = c:get_user(APP, "u1")
                c:close()
                assert.equal(401, err.status)
                local text = tostring(err.message) .. tostring(err.body) .. tostring(err)
                assert.matches("Authorization: Bearer [REDACTED]", text, 1, true)
                for k, v in pairs(err) do
                    assert.is_nil(tostring(v):find(key, 1, true), k)
                end
            end)
        end

        it("never prints the user and password of base_url", function()
            local c = new_client { base_url = "http://admin:hunter2@127.0.0.1:1/v1" }
            assert.not_matches("hunter2", tostring(c))
            assert.not_matches("admin", tostring(c))
            assert.matches("127.0.0.1:1/v1", tostring(c), 1, true)
            c:close()
            for _, bad in ipairs { "http://admin:hunter2@host/v1?x=1", "ftp://admin:hunter2@host",
                    "http://admin:hunter2@ho st/v1", "http://admin:hunter2@host\0/v1",
                    "http://admin:hunter2@host\r\n/v1", "http://admin:hunter2@host/v1#f" } do
                local ok, msg = pcall(users.new, { api_key = "k", base_url = bad })
                assert.is_false(ok, bad)
                assert.matches("base_url", msg)
                assert.not_matches("hunter2", msg)
            end
        end)

        it("refuses an id too long to send, before any request", function()
            local long = string.rep("i", 3 * 1024 * 1024)
            for _, call in ipairs {
                function() return client:get_user(APP, long) end,
                function() return client:get_user(long, "u1") end,
                function() return client:get_user_by_identifier(APP, long .. "@example.com") end,
                function() return client:list_paginated_users(APP, { id = long }) end,
            } do
                local ok, msg = pcall(call)
                assert.is_false(ok)
                assert.matches("longer than", msg)
            end
            assert.equal(0, emulator.stats().total)
        end)
    end)

    describe("on_attempt", function()
        it("is told of every attempt, retries included, with no host, user or key", function()
            local seen = {}
            local c = new_client { on_attempt = function(a) seen[#seen + 1] = a end,
                base_url = emulator.url():gsub("//", "//admin:secret@") }
            finally(function() c:close() end)
            local id = assert(c:create_user(APP, { email = "attempts@example.com" })).id
            emulator.faults { next = { { status = 503, count = 2 } } }
            assert(c:get_user(APP, id))
            assert.equal(4, #seen) -- the create, then two 503s and the 200
            local a1, a2, a3 = seen[2], seen[3], seen[4]
            assert.same({ "get_user", "GET", 503, "http", 1, true },
                { a1.operation, a1.method, a1.status, a1.kind, a1.attempt, a1.retry })
            assert.same({ 503, 2, true }, { a2.status, a2.attempt, a2.retry })
            assert.same({ 200, 3, false }, { a3.status, a3.attempt, a3.retry })
            assert.is_nil(a3.kind)
            assert.equal("/v1/apps/" .. APP .. "/users/" .. id, a3.path)
            assert.is_number(a3.ms)
            for _, a in ipairs(seen) do
                for _, v in pairs(a) do
                    assert.is_nil(tostring(v):find("secret", 1, true))
                    assert.is_nil(tostring(v):find("test_key", 1, true))
                end
            end
        end)

        it("lets the interpreter's Ctrl-C through, where any other raise stays in", function()
            -- lua.c and LuaJIT raise "interrupted!" from a hook, wherever
            -- the program is: here, inside the hook that settling calls.
            local c = new_client { on_attempt = function() error("stdin:1: interrupted!", 0) end }
            finally(function() c:close() end)
            local ok, problem = pcall(c.list_paginated_users, c, APP, { limit = 1 })
            assert.is_false(ok)
            assert.equal("stdin:1: interrupted!", problem)
            assert.equal(0, c:pending())
        end)

        it("cannot break a call by raising", function()
            local c = new_client { on_attempt = function() error("hook bug") end }
            finally(function() c:close() end)
            local page = assert(c:list_paginated_users(APP, { limit = 1 }))
            assert.is_table(page.users)
        end)
    end)
end)
