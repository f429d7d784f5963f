-- passage.users inside nginx's Lua module: the same client as everywhere,
-- in a private nginx (one worker, its own prefix, the LuaJIT core of
-- build/jit), calling the emulator over cosockets in request handlers and
-- timers and over libcurl in init_worker_by_lua. The scenarios it runs
-- there are in spec/support/openresty_scenarios.lua; the same calls made
-- here, over libcurl, give the same values and the same err fields.
local users = require "passage.users"
local emulator = require "support.emulator"
local ports = require "support.ports"
local server = require "support.test_server"
local scenario_nginx = require "support.scenario_nginx"
local socket = require "socket"
local cjson = require("cjson").new()

local APP = "test_app"
-- The spec's nginx listens on PORT (http) and PORT + 1 (https, with a
-- certificate nobody trusts).
local PORT = tonumber(os.getenv("PASSAGE_OPENRESTY_PORT")) or 18795
local TLS_PORT = PORT + 1
local USER_ROUTE = "GET /apps/{app_id}/users/{user_id}"
-- Timing bounds widen under valgrind or sanitizers (PASSAGE_SLOW=1).
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1
-- Made before nginx starts: init_worker_by_lua looks it up.
local INIT_EMAIL = "init@example.com"

-- The body of the http block; REPO, CPATH, CERT, EMULATOR, PORT, TLS_PORT,
-- OWN_CERT and OWN_KEY are filled in at start.
local HTTP = [[
    lua_package_path "REPO/lua/?.lua;REPO/lua/?/init.lua;REPO/spec/?.lua;;";
    lua_package_cpath "REPO/build/jit/?.so;CPATH";
    lua_shared_dict results 4m;
    lua_socket_log_errors off;
    client_body_buffer_size 1m;
    client_max_body_size 1m;
    # The test server's certificate: the CAs cosockets trust.
    lua_ssl_trusted_certificate CERT;

    init_worker_by_lua_block {
        require("support.openresty_scenarios").init_worker(
            { api_key = "test_key", base_url = "EMULATOR", timeout_ms = 5000 },
            "test_app", "init@example.com")
    }

    server {
        listen 127.0.0.1:PORT;

        location = /ping {
            content_by_lua_block { ngx.print("pong") }
        }

        location = /run {
            content_by_lua_block { require("support.openresty_scenarios").run() }
        }
    }

    # A certificate nobody trusts.
    server {
        listen 127.0.0.1:TLS_PORT ssl;
        ssl_certificate OWN_CERT;
        ssl_certificate_key OWN_KEY;
        location / {
            default_type application/json;
            return 200 '{"user":{"id":"own"}}';
        }
    }
]]

local nginx -- the running private nginx

local function scenario(name, params)
    return nginx:scenario(name, params)
end

-- A scenario stored by a timer or init_worker: waits for it.
local function stored(key, seconds)
    local deadline = socket.gettime() + seconds
    repeat
        local r = scenario("stored", { key = key })
        if not r.pending then
            assert(not r.error, r.error)
            return r
        end
        socket.sleep(0.02)
    until socket.gettime() > deadline
    error(key .. ": no result after " .. seconds .. " s\n" .. nginx:log_tail())
end

-- A client's options: the emulator, short backoffs, with `opts` over them.
local function options(opts)
    local o = { api_key = "test_key", base_url = emulator.url(), timeout_ms = 5000 * SLOW,
        retry_base_delay_ms = 10 }
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    return o
end

-- A value as it comes out of nginx: through JSON.
local function as_json(v)
    return cjson.decode(cjson.encode(v))
end

-- One call over libcurl here, in the shape of the scenarios' results.
local function curl_call(opts, call)
    local client = users.new(options(opts))
    local value, err = client[call[1]](client, table.unpack(call, 2))
    client:close()
    if value ~= nil then
        return { value = as_json(value) }
    end
    local t = { text = tostring(err) }
    for _, k in ipairs { "kind", "status", "code", "message", "body", "attempts", "operation",
            "retry_after" } do
        t[k] = err[k]
    end
    return { err = t }
end

local function ngx_call(opts, call)
    return scenario("calls", { opts = options(opts), calls = { call } }).results[1]
end

local closed_port = ports.closed

local function faults(...)
    emulator.faults { clear = true, next = { ... } }
    emulator.reset_stats()
end

local function latency(ms)
    emulator.faults { clear = true, latency_ms = ms }
    emulator.reset_stats()
end

local function sorted(list)
    local copy = { table.unpack(list) }
    table.sort(copy)
    return copy
end

local function count_distinct(list)
    local seen, n = {}, 0
    for _, v in ipairs(list) do
        if not seen[v] then
            seen[v] = true
            n = n + 1
        end
    end
    return n
end

describe("passage.users inside nginx", function()
    local user

    setup(function()
        server.start()
        assert(server.cert_file, "the test server needs openssl for its certificate")
        emulator.reset()
        emulator.faults { clear = true }
        local client = emulator.client()
        assert(client:create_user(APP, { email = INIT_EMAIL }))
        client:close()
        nginx = scenario_nginx.start { name = "openresty", port = PORT, http = HTTP, fill = {
            CERT = server.cert_file, EMULATOR = emulator.url(), TLS_PORT = tostring(TLS_PORT),
            PORT = tostring(PORT),
        } }
        -- nginx accepts connections before init_worker_by_lua is done, but
        -- serves none: once this answers, the init_worker call is over.
        stored("init_worker", 10 * SLOW)
    end)

    teardown(function()
        if nginx then
            nginx:stop()
        end
        server.stop()
        emulator.faults { clear = true }
    end)

    before_each(function()
        emulator.reset()
        emulator.faults { clear = true }
        local client = emulator.client()
        user = assert(client:create_user(APP, { email = "nginx@example.com" }))
        client:close()
        emulator.reset_stats()
    end)

    after_each(function()
        emulator.faults { clear = true }
    end)

    describe("where nginx has no cosockets", function()
        it("calls over libcurl in init_worker_by_lua, and refuses transport = \"ngx\" there", function()
            local r = stored("init_worker", 10 * SLOW)
            assert.equal("init_worker", r.phase)
            assert.is_nil(r.auto.err, r.auto.err and r.auto.err.text)
            assert.equal(INIT_EMAIL, r.auto.value.email)
            -- An argument error, at the caller's line.
            assert.matches('openresty_scenarios%.lua:%d+: passage%.users: transport "ngx": nginx allows '
                .. "no cosockets in its init_worker phase", r.forced.raised)
            -- The same client, made there once for the worker, in a request.
            local got = scenario("worker_client", { app = APP, id = user.id })
            assert.equal(user.id, got.value.id)
        end)

        it("refuses transport = \"ngx\" outside nginx", function()
            local ok, err = pcall(function()
                local client = users.new { api_key = "k", transport = "ngx" }
                return client
            end)
            assert.is_false(ok)
            assert.matches("openresty_spec%.lua:%d+: passage%.users: new: transport \"ngx\" needs "
                .. "nginx's Lua module", err)
        end)
    end)

    describe("in a content handler", function()
        it("runs every operation over cosockets, yielding to nginx during each call", function()
            emulator.seed(APP, 30, 7)
            local here = emulator.client()
            local owner, device
            for _, u in ipairs(assert(here:list_paginated_users(APP, { limit = 50 })).users) do
                local devices = assert(here:list_user_devices(APP, u.id))
                if devices[1] then
                    owner, device = u.id, devices[1].id
                    break
                end
            end
            assert(owner, "no seeded user has a device")
            latency(20)
            local calls = {
                { "create_user", APP, { email = "ops@example.com", user_metadata = { plan = "free" } } },
                { "get_user", APP, "ID" },
                { "update_user", APP, "ID", { user_metadata = { plan = "pro" } } },
                { "deactivate_user", APP, "ID" },
                { "activate_user", APP, "ID" },
                { "get_user_by_identifier", APP, "OPS@example.com" },
                { "list_paginated_users", APP, { identifier = "ops@example.com" } },
                { "list_user_devices", APP, owner },
                { "delete_user_device", APP, owner, device },
                { "revoke_user_refresh_tokens", APP, "ID" },
                { "delete_user", APP, "ID" },
            }
            -- The id of the user created first, for the calls after it.
            local created = scenario("calls", { opts = options(), calls = { calls[1] } }).results[1]
            assert.is_nil(created.err)
            local id = created.value.id
            for _, c in ipairs(calls) do
                for i = 2, #c do
                    if c[i] == "ID" then
                        c[i] = id
                    end
                end
            end
            table.remove(calls, 1)
            local r = scenario("calls", { opts = options(), calls = calls, ticker = true })
            local v = {}
            for i, res in ipairs(r.results) do
                assert.is_nil(res.err, calls[i][1] .. ": " .. tostring(res.err and res.err.text))
                v[calls[i][1]] = res.value
            end
            assert.same({ id, "ops@example.com", "free" },
                { v.get_user.id, v.get_user.email, v.get_user.user_metadata.plan })
            assert.equal("pro", v.update_user.user_metadata.plan)
            assert.equal("inactive", v.deactivate_user.status)
            assert.equal("active", v.activate_user.status)
            assert.equal(id, v.get_user_by_identifier.id)
            assert.same({ 1, id }, { v.list_paginated_users.total_users, v.list_paginated_users.users[1].id })
            local listed = false
            for _, d in ipairs(v.list_user_devices) do
                listed = listed or d.id == device
            end
            assert.is_true(listed)
            for _, name in ipairs { "delete_user_device", "revoke_user_refresh_tokens", "delete_user" } do
                assert.is_true(v[name], name)
            end
            -- Each of the ten calls waited at least 20 ms on the emulator,
            -- while the request's other light thread kept ticking.
            assert.is_true(r.ms >= 200, "took " .. r.ms)
            assert.is_true(r.ticks >= 20, r.ticks .. " ticks")
            assert.equal("content", r.phase)
            emulator.faults { clear = true }
            -- What the calls did, read over libcurl.
            local _, gone = here:get_user(APP, id)
            assert.equal(404, gone.status)
            for _, d in ipairs(assert(here:list_user_devices(APP, owner))) do
                assert.not_equal(device, d.id)
            end
            here:close()
        end)

        it("returns the same values as the libcurl client", function()
            emulator.seed(APP, 40, 3)
            local calls = {
                { "get_user", APP, user.id },
                { "list_paginated_users", APP, { limit = 50, order_by = "email:ASC" } },
                { "get_user_by_identifier", APP, "NGINX@example.com" },
            }
            for _, keep_null in ipairs { false, true } do
                local r = scenario("calls", { opts = options { keep_null = keep_null }, calls = calls })
                for i, call in ipairs(calls) do
                    local want = curl_call({ keep_null = keep_null }, call)
                    assert.is_table(want.value)
                    assert.same(want, { value = r.results[i].value }, call[1])
                end
            end
        end)

        it("verifies TLS against lua_ssl_trusted_certificate; ca_file is libcurl's", function()
            local trusted = server.tls_url("/raw")
            local untrusted = "https://127.0.0.1:" .. TLS_PORT .. "/v1"
            local r = scenario("calls", { opts = options { base_url = trusted },
                calls = { { "get_user", APP, "x" } } }).results[1]
            assert.is_nil(r.err, r.err and r.err.text)
            assert.matches("^GET /raw/apps/test_app/users/x HTTP/1%.1\r\n", r.value.id)
            -- The untrusted server's own certificate as ca_file: libcurl
            -- trusts it, cosockets do not, and say why.
            local own_cert = nginx.own_cert
            local call = { "get_user", APP, "x" }
            local over_curl = curl_call({ base_url = untrusted, ca_file = own_cert }, call)
            local over_ngx = ngx_call({ base_url = untrusted, ca_file = own_cert }, call)
            assert.equal("own", over_curl.value.id)
            assert.same({ "tls", 1 }, { over_ngx.err.kind, over_ngx.err.attempts })
            assert.matches("lua_ssl_trusted_certificate", over_ngx.err.message)
        end)

        it("blocks the worker with transport = \"curl\", as documented, and works", function()
            latency(150)
            local calls = { { "get_user", APP, user.id }, { "get_user", APP, user.id } }
            local blocking = scenario("calls", { opts = options { transport = "curl" }, calls = calls,
                ticker = true })
            local yielding = scenario("calls", { opts = options(), calls = calls, ticker = true })
            for _, r in ipairs { blocking, yielding } do
                assert.equal(user.id, r.results[1].value.id)
                assert.equal(user.id, r.results[2].value.id)
                assert.is_true(r.ms >= 300, "took " .. r.ms)
            end
            -- The request's other light thread never ran during the
            -- libcurl calls: the whole worker was held.
            assert.equal(0, blocking.ticks)
            assert.is_true(yielding.ticks >= 30, yielding.ticks .. " ticks")
        end)
    end)

    describe("errors: the same err fields as over libcurl", function()
        local own_tls = "https://127.0.0.1:" .. TLS_PORT .. "/v1"
        -- name, fault (or a function setting it up), client options, call
        local cases = {
            { "http: a missing user", nil, {}, { "get_user", APP, "missing" } },
            { "http: 503 until max_attempts", { status = 503, count = 10 }, { max_attempts = 3 },
                { "get_user", APP, "USER" } },
            { "http: a 429 whose Retry-After is over retry_after_max_ms",
                { status = 429, retry_after = "120" },
                { retry_after_max_ms = 2000 }, { "get_user", APP, "USER" } },
            { "http: a 503 on a create, never sent twice", { status = 503 }, {},
                { "create_user", APP, { email = "once@example.com" } } },
            { "http: a non-JSON 502", { status = 502, body = "html", count = 10 }, { max_attempts = 2 },
                { "get_user", APP, "USER" } },
            { "timeout", function() latency(2000) end, { timeout_ms = 400 }, { "get_user", APP, "USER" } },
            { "timeout: a trickling body", { trickle_ms = 200, chunk = 16 }, { timeout_ms = 500 },
                { "get_user", APP, "USER" } },
            { "connect: refused, retried even for a create", nil, { max_attempts = 3, base_url = "CLOSED" },
                { "create_user", APP, { email = "refused@example.com" } } },
            { "tls: a certificate nobody trusts", nil, { base_url = own_tls }, { "get_user", APP, "USER" } },
            { "network: dropped, retried", { drop = true, count = 10 }, { max_attempts = 2 },
                { "get_user", APP, "USER" } },
            { "network: headers only on a create", { headers_only = true }, {},
                { "create_user", APP, { email = "headers@example.com" } } },
            { "decode: a body that is not JSON", { body = "not_json" }, {}, { "get_user", APP, "USER" } },
            { "decode: members of the wrong types", { body = "wrong_types" }, {},
                { "get_user", APP, "USER" } },
            { "decode: a list that is not a page", { body = "empty" }, {},
                { "list_paginated_users", APP, { limit = 5 } } },
            { "too_large: over the default cap", { body = "huge" }, {}, { "get_user", APP, "USER" } },
            { "too_large: over max_response_bytes", nil, { max_response_bytes = 100 },
                { "get_user", APP, "USER" } },
            { "not_found: nobody with that identifier", nil, {},
                { "get_user_by_identifier", APP, "nobody@example.com" } },
        }
        -- Messages of these kinds come from the server or from code above
        -- the transport: the same text on both.
        local SAME_MESSAGE = { http = true, decode = true, not_found = true }
        for _, case in ipairs(cases) do
            local name, fault, opts, call = case[1], case[2], case[3], case[4]
            it(name, function()
                if opts.base_url == "CLOSED" then
                    opts.base_url = "http://127.0.0.1:" .. closed_port() .. "/v1"
                end
                for i = 2, #call do
                    if call[i] == "USER" then
                        call[i] = user.id
                    end
                end
                local errs, requests = {}, {}
                for side, run in ipairs { curl_call, ngx_call } do
                    -- A create that reached the emulator made its user:
                    -- each side creates its own.
                    local this_call = call
                    if call[1] == "create_user" then
                        this_call = { call[1], call[2], { email = side .. call[3].email } }
                    end
                    if type(fault) == "function" then
                        fault()
                    elseif fault then
                        faults(fault)
                    else
                        emulator.reset_stats()
                    end
                    local res = run(opts, this_call)
                    assert.is_table(res.err, "no error")
                    errs[side] = res.err
                    requests[side] = emulator.stats().total
                    emulator.faults { clear = true }
                end
                local c, n = errs[1], errs[2]
                for _, field in ipairs { "kind", "status", "code", "body", "attempts", "operation",
                        "retry_after" } do
                    assert.equal(c[field], n[field], field .. ": " .. c.text .. " | " .. n.text)
                end
                assert.equal(type(c.message), type(n.message))
                if SAME_MESSAGE[c.kind] then
                    assert.equal(c.message, n.message)
                    assert.equal(c.text, n.text)
                end
                -- The same requests reached the emulator.
                assert.equal(requests[1], requests[2])
            end)
        end

        it("decode: an object where the API has an array (a page's users, devices)", function()
            local opts = { base_url = server.url("/objects") }
            for _, call in ipairs { { "list_paginated_users", APP, { limit = 20 } },
                    { "list_user_devices", APP, "u" } } do
                local c, n = curl_call(opts, call).err, ngx_call(opts, call).err
                assert.is_table(c, call[1] .. ": no error over libcurl")
                assert.is_table(n, call[1] .. ": no error over cosockets")
                assert.same({ "decode", "decode" }, { c.kind, n.kind })
                assert.matches("expected array, got object", c.message)
                assert.equal(c.message, n.message)
            end
        end)

        it("cancelled: a started call cancelled, or its client closed", function()
            local r = scenario("handles", { opts = options(), app = APP, ids = { user.id }, idle_ms = 1 })
            assert.same({ "cancelled", "get_user" }, { r.cancelled.err.kind, r.cancelled.err.operation })
        end)
    end)

    describe("retries", function()
        it("retries a 503 until it succeeds, each attempt counted by the emulator", function()
            faults { status = 503, count = 2 }
            local r = ngx_call({}, { "get_user", APP, user.id })
            assert.equal(user.id, r.value.id)
            local stats = emulator.stats()
            assert.equal(3, stats.total)
            assert.equal(2, emulator.count(stats, USER_ROUTE, 503))
            assert.equal(1, emulator.count(stats, USER_ROUTE, 200))
        end)

        it("retries a dropped connection and a response with headers only", function()
            faults({ drop = true }, { headers_only = true })
            local r = ngx_call({}, { "get_user", APP, user.id })
            assert.equal(user.id, r.value.id)
            assert.equal(3, emulator.stats().total)
        end)

        it("backs off exponentially with jitter, sleeping with ngx.sleep", function()
            faults { status = 503, count = 3 }
            local opts = options { retry_base_delay_ms = 100, retry_max_delay_ms = 10000 }
            local r = scenario("calls", { opts = opts,
                calls = { { "get_user", APP, user.id } }, ticker = true })
            assert.equal(user.id, r.results[1].value.id)
            assert.equal(4, emulator.stats().total)
            -- steps 100, 200, 400: at least half of each, at most all of it
            assert.is_true(r.ms >= 345 and r.ms < 700 + 1000 * SLOW, "took " .. r.ms)
            -- and the worker went on meanwhile
            assert.is_true(r.ticks >= 30, r.ticks .. " ticks")
        end)

        it("honours Retry-After", function()
            faults { status = 503, retry_after = "1" }
            local r = scenario("calls", { opts = options(), calls = { { "get_user", APP, user.id } },
                ticker = true })
            assert.equal(user.id, r.results[1].value.id)
            assert.is_true(r.ms >= 1000 and r.ms < 2000 * SLOW, "took " .. r.ms)
            assert.equal(2, emulator.stats().total)
            assert.is_true(r.ticks >= 100, r.ticks .. " ticks")
        end)
    end)

    describe("many calls", function()
        it("walks with pages in flight, in a request and in a timer", function()
            emulator.seed(APP, 999, 11)
            local here = emulator.client()
            local want = {}
            for i, u in ipairs(assert(require("passage.paginator").collect(here, APP, { limit = 500 }))) do
                want[i] = u.id
            end
            here:close()
            table.sort(want)
            latency(20)
            local walk = { scenario = "walk", opts = options(), app = APP, params = { limit = 50 },
                in_flight = 4 }
            local in_request = scenario("walk", walk)
            scenario("in_timer", { key = "walk", inner = walk })
            local in_timer = stored("walk", 20 * SLOW)
            for where, r in pairs { request = in_request, timer = in_timer } do
                assert.is_nil(r.err, where)
                assert.equal(1000, #r.ids, where)
                assert.equal(1000, count_distinct(r.ids), where)
                assert.same(want, sorted(r.ids), where)
                assert.same({ 20, 20 }, { r.pages, r.reports }, where)
                assert.same({ pages = 20, users = 1000, total_users = 1000 }, r.last, where)
                -- Twenty pages one after the other take 20 x 20 ms at least.
                assert.is_true(r.ms < 400, where .. " took " .. r.ms)
            end
            assert.equal("timer", in_timer.phase)
        end)

        it("runs bulk calls, several in flight, results in order", function()
            local calls = {}
            for i = 1, 20 do
                calls[i] = { "get_user", APP, i % 5 == 0 and "missing" .. i or user.id }
            end
            latency(20)
            local r = scenario("bulk", { opts = options(), calls = calls, max_in_flight = 8 })
            for i, res in ipairs(r.results) do
                if i % 5 == 0 then
                    assert.same({ "http", 404, "user_not_found" },
                        { res.err.kind, res.err.status, res.err.code })
                else
                    assert.equal(user.id, res.value.id)
                end
            end
            assert.equal(20, #r.results)
            assert.same({ 20, 4, 20 }, r.reports[#r.reports])
            assert.equal(20, emulator.stats().total)
            -- Twenty calls one after the other take 20 x 20 ms at least.
            assert.is_true(r.ms < 400, "took " .. r.ms)
        end)

        it("starts calls as handles, driven by poll and wait", function()
            latency(20)
            local r = scenario("handles", { opts = options(), app = APP,
                ids = { user.id, "missing", user.id }, idle_ms = 100, ticker = true })
            assert.equal(3, r.pending)
            assert.matches("request not finished yet", r.unfinished)
            assert.is_false(r.first_done)
            assert.same({ 1, 1, 1 }, r.handed)
            assert.equal(user.id, r.results[1].value.id)
            assert.equal(404, r.results[2].err.status)
            assert.equal(user.id, r.results[3].value.id)
            assert.equal(user.id, r.waited.value.id)
            assert.same({ 1, true, true }, { r.after, r.after_is_cancelled, r.closed_done })
            assert.equal("cancelled", r.cancelled.err.kind)
            assert.equal(0, r.idle)
            assert.is_true(r.idle_ms >= 95 and r.idle_ms < 400 * SLOW, "idle poll took " .. r.idle_ms)
            assert.equal(0, r.pending_after)
            -- poll and wait yield: the request's other light thread ticked.
            assert.is_true(r.ticks >= 20, r.ticks .. " ticks")
        end)

        it("calls from an ngx.timer.at callback", function()
            latency(20)
            scenario("in_timer", { key = "calls", inner = { scenario = "calls", opts = options(),
                ticker = true, calls = {
                    { "get_user", APP, user.id },
                    { "get_user_by_identifier", APP, "nginx@example.com" },
                    { "create_user", APP, { email = "timer@example.com" } },
                    { "get_user", APP, "missing" },
                } } })
            local r = stored("calls", 10 * SLOW)
            assert.equal("timer", r.phase)
            assert.equal(user.id, r.results[1].value.id)
            assert.equal(user.id, r.results[2].value.id)
            assert.equal("timer@example.com", r.results[3].value.email)
            assert.equal(404, r.results[4].err.status)
            assert.is_true(r.ticks >= 8, r.ticks .. " ticks")
            -- (get_user_by_identifier is a listing and a get_user)
            assert.equal(5, emulator.stats().total)
        end)

        it("shares the worker's client between requests in flight at once", function()
            latency(300)
            local finished = {}
            local t0 = socket.gettime()
            for i = 1, 8 do
                finished[i] = nginx:post_in_background("/run",
                    { scenario = "worker_client", app = APP, id = user.id }, os.tmpname())
            end
            for i = 1, 8 do
                local status, _, body = finished[i](10 * SLOW)
                assert.equal(200, status)
                assert.equal(user.id, cjson.decode(body).value.id)
            end
            -- The eight overlapped: about one latency, not eight.
            assert.is_true(socket.gettime() - t0 < 1.5 * SLOW)
            assert.equal(8, emulator.stats().total)
        end)
    end)

    it("answers /ping within a few ms while a 100-page walk with 20 ms latency runs in a timer", function()
        emulator.seed(APP, 999, 5)
        latency(20)
        scenario("in_timer", { key = "long_walk", inner = { scenario = "walk", opts = options(), app = APP,
            params = { limit = 10 } } })
        local pings = {}
        local deadline = socket.gettime() + 30 * SLOW
        repeat
            pings[#pings + 1] = nginx:ping_ms()
            socket.sleep(0.01)
            local r = scenario("stored", { key = "long_walk" })
        until not r.pending or socket.gettime() > deadline
        local r = stored("long_walk", 1)
        assert.is_nil(r.err)
        assert.same({ 100, 1000 }, { r.pages, #r.ids })
        assert.is_true(r.ms >= 2000, "took " .. r.ms)
        table.sort(pings)
        -- (A walk over libcurl here holds the worker for all of its 2 s.)
        assert.is_true(#pings >= 50, #pings .. " pings")
        local p90, slowest = pings[math.ceil(#pings * 0.9)], pings[#pings]
        assert.is_true(p90 < 5 * SLOW, string.format("90 %% of pings within %.1f ms", p90))
        assert.is_true(slowest < 50 * SLOW, string.format("slowest ping %.1f ms", slowest))
    end)
end)
