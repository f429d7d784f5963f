-- passage.cosocket, the transport on nginx cosockets, inside a private
-- nginx (one worker, its own prefix) whose locations run transport-level
-- scenarios (spec/support/cosocket_scenarios.lua) and answer with JSON.
-- Every fault is also run through the libcurl transport of passage.core in
-- this process: both must give the same kind and sent.
local core = require "passage.core"
local emulator = require "support.emulator"
local ports = require "support.ports"
local server = require "support.test_server"
local raw = require "support.raw_server"
local scenario_nginx = require "support.scenario_nginx"
local shell = require "support.shell"
local socket = require "socket"
local cjson = require("cjson").new()

local APP = "test_app"
-- The spec's nginx listens on BASE (http) and BASE + 1 (https, for the
-- ssl_certificate_by_lua phase); the raw server on BASE + 2.
local BASE = tonumber(os.getenv("PASSAGE_COSOCKET_PORT"))
    or (tonumber(os.getenv("PASSAGE_OPENRESTY_PORT")) or 18795) + 10
local PORT, TLS_PORT, RAW_PORT = BASE, BASE + 1, BASE + 2
-- Timing bounds widen under valgrind or sanitizers (PASSAGE_SLOW=1).
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1
local AUTH = { "Authorization: Bearer test_key", "Accept: application/json" }

-- The body of the http block; REPO, PORT, TLS_PORT, TS_PORT, CERT, OWN_CERT
-- and OWN_KEY are filled in at start.
local HTTP = [[
    lua_package_path "REPO/lua/?.lua;REPO/lua/?/init.lua;REPO/spec/?.lua;;";
    lua_package_cpath "REPO/build/jit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    lua_shared_dict results 1m;
    lua_socket_log_errors off;
    client_body_buffer_size 1m;
    client_max_body_size 1m;
    # The test server's certificate; the spec's own https server has another.
    lua_ssl_trusted_certificate CERT;

    init_worker_by_lua_block {
        require("support.cosocket_scenarios").probe_phase("init_worker", TS_PORT)
    }

    upstream probe_balancer {
        server 127.0.0.1:1;
        balancer_by_lua_block {
            require("support.cosocket_scenarios").probe_phase("balancer", TS_PORT)
            require("ngx.balancer").set_current_peer("127.0.0.1", TS_PORT)
        }
    }

    server {
        listen 127.0.0.1:PORT;

        location = /ping {
            content_by_lua_block { ngx.print("pong") }
        }

        location = /run {
            content_by_lua_block { require("support.cosocket_scenarios").run() }
        }

        location = /phases {
            set_by_lua_block $probed {
                require("support.cosocket_scenarios").probe_phase("set", TS_PORT)
                return "1"
            }
            rewrite_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("rewrite", TS_PORT)
            }
            access_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("access", TS_PORT)
            }
            content_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("content", TS_PORT)
                ngx.timer.at(0, function()
                    require("support.cosocket_scenarios").probe_phase("timer", TS_PORT)
                end)
                ngx.print("probed")
            }
            header_filter_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("header_filter", TS_PORT)
            }
            body_filter_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("body_filter", TS_PORT)
            }
            log_by_lua_block {
                require("support.cosocket_scenarios").probe_phase("log", TS_PORT)
            }
        }

        location = /phases_balancer {
            proxy_pass http://probe_balancer/json;
        }

        location = /phase {
            content_by_lua_block {
                ngx.print(ngx.shared.results:get("phase:" .. ngx.var.arg_name) or "null")
            }
        }
    }

    # A certificate nobody trusts.
    server {
        listen 127.0.0.1:TLS_PORT ssl;
        ssl_certificate OWN_CERT;
        ssl_certificate_key OWN_KEY;
        ssl_certificate_by_lua_block {
            require("support.cosocket_scenarios").probe_phase("ssl_cert", TS_PORT)
        }
        location / {
            default_type application/json;
            return 200 '{"own":true}';
        }
    }
]]

local function sh(cmd)
    return (shell(cmd))
end

local nginx -- the running private nginx

local function nginx_url(path)
    return nginx:url(path)
end

local function scenario(name, params)
    return nginx:scenario(name, params)
end

local function null_to_nil(v)
    if v == cjson.null then
        return nil
    end
    return v
end

-- The transport options a client passes (passage.options' defaults, which
-- neither transport repeats), with `opts` over them.
local function client_options(opts)
    local o = require("passage.options").resolve({ api_key = "k" }).transport
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    return o
end

-- The calls of an exchange on the libcurl transport, one after the other;
-- the same fields as the scenarios' summaries.
local function run_curl(opts, calls, headers)
    local tr = core.transport(client_options(opts))
    local hs = tr:headers(headers or AUTH)
    local out = {}
    for i, c in ipairs(calls) do
        local t0 = core.now_ms()
        local req = tr:start(c.method or "GET", c.url, hs, c.body, c.timeout_ms)
        assert(tr:wait(req, 60000), "not done after a minute")
        local res = req:response()
        res.ms = core.now_ms() - t0
        out[i] = res
    end
    tr:close()
    return out
end

local function run_ngx(opts, calls, headers)
    local out = scenario("exchange", { opts = client_options(opts), calls = calls,
        headers = headers or AUTH })
    for _, res in ipairs(out) do
        for k, v in pairs(res) do
            res[k] = null_to_nil(v)
        end
    end
    return out
end

local closed_port = ports.closed

-- The slowest of n pings to the spec's nginx, in milliseconds.
local function slowest_ping(n)
    local slowest = 0
    for _ = 1, n do
        slowest = math.max(slowest, nginx:ping_ms())
        socket.sleep(0.01)
    end
    return slowest
end

describe("passage.cosocket", function()
    local user, user_url

    setup(function()
        server.start()
        assert(server.cert_file, "the test server needs openssl for its certificate")
        raw.start(RAW_PORT)
        nginx = scenario_nginx.start { name = "cosocket", port = PORT, http = HTTP, fill = {
            TLS_PORT = tostring(TLS_PORT), TS_PORT = tostring(server.port()), PORT = tostring(PORT),
            CERT = server.cert_file,
        } }
    end)

    teardown(function()
        if nginx then
            nginx:stop()
        end
        raw.stop()
        server.stop()
        emulator.faults { clear = true }
    end)

    before_each(function()
        emulator.reset()
        local client = emulator.client()
        user = assert(client:create_user(APP, { email = "cosocket@example.com" }))
        client:close()
        user_url = emulator.url() .. "/apps/" .. APP .. "/users/" .. user.id
        emulator.faults { clear = true }
    end)

    describe("HTTP", function()
        it("keeps a connection alive: the second call opens none", function()
            for _, run in ipairs { run_ngx, run_curl } do
                local out = run(nil, { { url = user_url }, { url = user_url }, { url = user_url } })
                for i = 1, 3 do
                    assert.is_nil(out[i].kind)
                    assert.equal(200, out[i].status)
                    assert.equal(user.id, out[i].body.user.id)
                    assert.equal("application/json", out[i].content_type)
                end
                -- (the first may find one pooled by an earlier test)
                assert.same({ 0, 0 }, { out[2].connects, out[3].connects })
            end
        end)

        it("reads Content-Length and chunked bodies, small and large", function()
            local calls = {
                { url = server.url("/big?n=1000000") },
                { url = server.url("/chunked?n=1000000") },
                { url = server.url("/chunked?n=3") },
                { url = server.url("/json") },
                { url = server.url("/empty") },
            }
            local out = run_ngx(nil, calls)
            assert.equal(1000000, out[1].body_size)
            assert.equal(999998, #out[1].body)
            assert.equal(1000000, out[2].body_size)
            assert.equal(string.rep("y", 999998), out[2].body)
            assert.equal("y", out[3].body)
            assert.same({ name = "alice", n = 3, list = { 1, 2, 3 }, ok = true }, out[4].body)
            assert.equal(204, out[5].status)
            assert.equal(0, out[5].body_size)
            assert.is_nil(out[5].body)
            for i = 1, 5 do
                assert.is_nil(out[i].kind, out[i].message)
            end
            -- All on one connection.
            assert.same({ 0, 0, 0, 0 }, { out[2].connects, out[3].connects, out[4].connects,
                out[5].connects })
        end)

        it("sends what the request says, and a Content-Length for methods with a body", function()
            local h = { "Accept: application/json", "Content-Type: application/json", "X-Test: yes" }
            local calls = {
                { method = "POST", url = server.url("/echo"), body = '{"a":1}' },
                { method = "PATCH", url = server.url("/echo"), body = "{}" },
                { method = "PUT", url = server.url("/echo") },
                { method = "DELETE", url = server.url("/echo") },
                { method = "GET", url = server.url("/echo?x=1#fragment") },
                { method = "POST", url = server.url("/echo"), body = string.rep("b", 100000) },
            }
            local out = run_ngx({ user_agent = "agent/1" }, calls, h)
            local echo = {}
            for i = 1, #out do
                assert.is_nil(out[i].kind, out[i].message)
                echo[i] = out[i].body
            end
            assert.same({ "POST", '{"a":1}', "7", "application/json", "yes", "agent/1", "" },
                { echo[1].method, echo[1].body, echo[1].content_length, echo[1].content_type,
                    echo[1].x_test, echo[1].user_agent, echo[1].expect })
            assert.same({ "PATCH", "{}", "2" }, { echo[2].method, echo[2].body, echo[2].content_length })
            assert.same({ "PUT", "", "0" }, { echo[3].method, echo[3].body, echo[3].content_length })
            assert.same({ "DELETE", "" }, { echo[4].method, echo[4].content_length })
            assert.same({ "GET", "" }, { echo[5].method, echo[5].content_length })
            assert.equal("", echo[5].accept_encoding) -- no compression asked for
            -- (too big for the test server to echo: nginx keeps it in a file)
            assert.equal("100000", echo[6].content_length)
            local default = run_ngx(nil, { { url = server.url("/echo") } })[1].body
            assert.matches("^passage%-lua/", default.user_agent)
        end)

        it("puts nothing on the wire but the request line and these headers", function()
            local h = { "Authorization: Bearer k", "Accept: application/json",
                "Content-Type: application/json" }
            local out = run_ngx(nil, { { url = server.url("/raw/a%20b?q=1&r=%2F") },
                { method = "POST", url = server.url("/raw/c"), body = '{"x":1}' } }, h)
            local want = {
                { "GET /raw/a%20b?q=1&r=%2F HTTP/1.1", "accept,authorization,content-type,host,user-agent" },
                { "POST /raw/c HTTP/1.1",
                    "accept,authorization,content-length,content-type,host,user-agent" },
            }
            for i, w in ipairs(want) do
                local raw_head = out[i].body.user.id
                local lines = {}
                for line in raw_head:gmatch("([^\r\n]*)\r\n") do
                    lines[#lines + 1] = line
                end
                assert.equal(w[1], lines[1])
                local names = {}
                for j = 2, #lines do
                    if lines[j] ~= "" then
                        names[#names + 1] = assert(lines[j]:match("^([%w%-]+): ")):lower()
                    end
                end
                table.sort(names)
                assert.equal(w[2], table.concat(names, ","))
                assert.matches("\r\nHost: 127%.0%.0%.1:" .. server.port() .. "\r\n", raw_head)
            end
            assert.equal('{"x":1}', out[2].body.body)
        end)

        it("sends a POST on a new connection, and closes it after", function()
            local url = server.url("/echo")
            local post = { method = "POST", url = url, body = "{}" }
            local out = run_ngx(nil, { { url = url }, { url = url }, post, { url = url }, post })
            assert.same({ 0, 1, 0, 1 }, { out[2].connects, out[3].connects, out[4].connects,
                out[5].connects })
            local conn = {}
            for i = 1, 5 do
                conn[i] = out[i].body.connection
            end
            assert.equal(conn[1], conn[2])
            assert.not_equal(conn[1], conn[3])
            assert.equal(conn[1], conn[4]) -- the GETs' connection, still pooled
            assert.not_equal(conn[3], conn[5])
        end)

        it("never sends a POST on a kept-alive connection the server closed", function()
            for _, run in ipairs { run_ngx, run_curl } do
                local url = server.url("/hangup/x")
                local out = run(nil, { { url = url }, { method = "POST", url = url, body = "{}" } })
                assert.is_nil(out[1].kind)
                assert.equal("network", out[2].kind)
                assert.is_true(out[2].sent)
                local _, count = emulator.request(server.url("/counter?name=hangup"))
                assert.equal("1", count)
            end
        end)

        it("sends a GET once more on a new connection when its kept-alive one closes unanswered", function()
            for _, run in ipairs { run_ngx, run_curl } do
                emulator.request(raw.url("/count"))
                local url = raw.url("/second_hangs")
                local out = run(nil, { { url = url }, { url = url },
                    { method = "POST", url = url, body = "{}" } })
                assert.is_nil(out[1].kind)
                assert.is_nil(out[2].kind, out[2].message)
                assert.equal(200, out[2].status)
                assert.equal(1, out[2].connects)
                -- The POST after it still gets a connection of its own.
                assert.is_nil(out[3].kind, out[3].message)
                assert.equal(1, out[3].connects)
                local _, count = emulator.request(raw.url("/count"))
                assert.equal("4", count)
            end
        end)

        it("never follows a redirect", function()
            emulator.reset_stats()
            local out = run_ngx(nil, { { url = server.url("/redirect") },
                { url = server.url("/moved/307/" .. emulator.port() .. "/v1/apps") } })
            assert.equal(302, out[1].status)
            assert.equal(307, out[2].status)
            assert.is_nil(out[1].kind)
            assert.equal(0, emulator.stats().total)
        end)

        it("runs the decoder's check while decoding", function()
            local fields = { id = "string", email = "string", login_count = "number" }
            local out = run_ngx(nil, {
                { url = user_url, check = { fields = fields, path = { "user" } } },
                { url = user_url, check = { fields = { id = "number" }, path = { "user" } } },
                { url = user_url },
            })
            assert.is_true(out[1].checked)
            assert.is_false(out[2].checked)
            assert.is_nil(out[3].checked)
            assert.equal(user.id, out[2].body.user.id)
        end)

        it("keeps null members with keep_null", function()
            local with = run_ngx({ keep_null = true }, { { url = user_url } })[1].body.user
            local without = run_ngx({ keep_null = false }, { { url = user_url } })[1].body.user
            local nulls = 0
            for k, v in pairs(with) do
                if v == cjson.null then
                    nulls = nulls + 1
                    assert.is_nil(without[k])
                end
            end
            assert.is_true(nulls > 0)
        end)
    end)

    describe("TLS", function()
        local function untrusted_url()
            return "https://127.0.0.1:" .. TLS_PORT .. "/"
        end

        it("verifies the peer by default, with the CAs nginx trusts", function()
            local failed = run_ngx(nil, { { url = untrusted_url() } })[1]
            assert.equal("tls", failed.kind)
            assert.is_false(failed.sent)
            assert.matches("certificate", failed.message)
            local hinted = run_ngx({ ca_file = server.cert_file }, { { url = untrusted_url() } })[1]
            assert.equal("tls", hinted.kind)
            assert.matches("lua_ssl_trusted_certificate", hinted.message)
            local url = server.tls_url("/json")
            local out = run_ngx(nil, { { url = url }, { url = url } })
            assert.is_nil(out[1].kind, out[1].message)
            assert.equal("alice", out[1].body.name)
            assert.equal(0, out[2].connects)
        end)

        it("skips verification only when told to, on connections of its own", function()
            local calls = { { url = untrusted_url() }, { url = untrusted_url() } }
            local out = run_ngx({ unsafe_skip_tls_verify = true }, calls)
            assert.is_nil(out[1].kind, out[1].message)
            assert.is_true(out[1].body.own)
            assert.same({ 1, 0 }, { out[1].connects, out[2].connects })
            -- An unverified connection is never handed to a verifying client.
            local failed = run_ngx(nil, { { url = untrusted_url() } })[1]
            assert.equal("tls", failed.kind)
        end)
    end)

    describe("faults: the same kind and sent as the libcurl transport", function()
        local function fault(...)
            local list = { ... }
            return function()
                emulator.faults { clear = true, next = list }
            end
        end
        local function latency(ms)
            return function()
                emulator.faults { clear = true, latency_ms = ms }
            end
        end
        -- setup, calls (the last one is compared), options, what to expect
        local cases = {
            { "a 503 with Retry-After", fault { status = 503, retry_after = "7" }, {},
                { status = 503, sent = true, retry_after = "7" } },
            { "a dropped body", fault { drop = true }, {}, { kind = "network", sent = true, status = 200 } },
            { "headers without the body", fault { headers_only = true }, {},
                { kind = "network", sent = true, status = 200 } },
            { "a truncated body", fault { truncate = true }, {}, { status = 200, decode_error = true } },
            { "a body that is not JSON", fault { body = "not_json" }, {},
                { status = 200, decode_error = true } },
            { "an HTML 502", fault { body = "html", status = 502 }, {},
                { status = 502, decode_error = true } },
            { "an empty 200", fault { body = "empty" }, {}, { status = 200, body_size = 0 } },
            { "nesting too deep", fault { body = "deep" }, {}, { status = 200, decode_error = true } },
            { "invalid UTF-8", fault { body = "invalid_utf8" }, {}, { status = 200, decode_error = true } },
            { "members of the wrong types", fault { body = "wrong_types" }, {}, { status = 200 } },
            { "a body over the default cap", fault { body = "huge" }, {},
                { kind = "too_large", sent = true, status = 200 } },
            { "a trickling body", fault { trickle_ms = 200, chunk = 16 }, { timeout_ms = 600 },
                { kind = "timeout", sent = true, status = 200, min_ms = 550 } },
            { "a slow answer", latency(3000), { timeout_ms = 500 },
                { kind = "timeout", sent = true, status = 0, min_ms = 450 } },
            { "a missing user", nil, { url = "missing" }, { status = 404 } },
        }
        for _, case in ipairs(cases) do
            local name, setup_fault, call, expect = case[1], case[2], case[3], case[4]
            it(name, function()
                if call.url == "missing" then
                    call.url = emulator.url() .. "/apps/" .. APP .. "/users/missing"
                end
                call.url = call.url or user_url
                local answers = {}
                for i, run in ipairs { run_curl, run_ngx } do
                    if setup_fault then
                        setup_fault()
                    end
                    emulator.reset_stats()
                    answers[i] = run(nil, { call })[1]
                    assert.equal(1, emulator.stats().total)
                end
                emulator.faults { clear = true }
                for i, res in ipairs(answers) do
                    local who = i == 1 and "curl: " or "cosocket: "
                    assert.equal(expect.kind, res.kind, who .. tostring(res.message))
                    assert.equal(expect.sent ~= false, res.sent, who)
                    assert.equal(expect.status, res.status, who)
                    assert.equal(expect.retry_after, res.retry_after, who)
                    if expect.decode_error then
                        assert.is_string(res.decode_error, who)
                        assert.is_string(res.raw, who)
                    end
                    if expect.body_size then
                        assert.equal(expect.body_size, res.body_size, who)
                    end
                    if expect.kind then
                        assert.is_string(res.message, who)
                    end
                    if expect.min_ms then
                        assert.is_true(res.ms >= expect.min_ms and res.ms < expect.min_ms + 1000 * SLOW,
                            who .. "took " .. res.ms)
                    end
                end
            end)
        end

        it("caps bodies at max_response_bytes, with or without a length", function()
            local calls = {
                { url = server.url("/big?n=2000") },
                { url = server.url("/chunked?n=300000") },
                { url = server.url("/big?n=1000") },
            }
            for _, run in ipairs { run_curl, run_ngx } do
                local out = run({ max_response_bytes = 1000 }, calls)
                assert.equal("too_large", out[1].kind)
                assert.equal("too_large", out[2].kind)
                assert.is_true(out[2].body_size <= 1000)
                assert.is_nil(out[3].kind)
                assert.equal("response body larger than max_response_bytes (1000)", out[1].message)
            end
        end)

        it("server-side faults of the test server", function()
            local calls = {
                { url = server.url("/drop") },
                { url = server.url("/nothing") },
                { url = server.url("/slow?ms=2000"), timeout_ms = 300 },
                { url = server.url("/status?code=429&retry_after=3") },
                { url = "http://127.0.0.1:" .. closed_port() .. "/" },
                { url = "ftp://127.0.0.1/" },
                { method = "POST", url = "http://127.0.0.1:" .. closed_port() .. "/", body = "{}" },
            }
            local expect = {
                { "network", true, 200 }, { "network", true, 0 }, { "timeout", true, 0 },
                { nil, true, 429 }, { "connect", false, 0 }, { "connect", false, 0 },
                { "connect", false, 0 },
            }
            local c, n = run_curl(nil, calls), run_ngx(nil, calls)
            for i, e in ipairs(expect) do
                for who, res in pairs { curl = c[i], cosocket = n[i] } do
                    local where = who .. " " .. calls[i].url
                    assert.same(e, { res.kind, res.sent, res.status }, where .. " " .. tostring(res.message))
                end
            end
            assert.equal("3", n[4].retry_after)
            assert.is_true(n[3].ms >= 290 and n[3].ms < 1000 * SLOW)
        end)

        it("TLS verification failures, on both", function()
            local url = "https://127.0.0.1:" .. TLS_PORT .. "/"
            local c = run_curl(nil, { { url = url } })[1]
            local n = run_ngx(nil, { { url = url } })[1]
            assert.same({ "tls", false }, { c.kind, c.sent })
            assert.same({ "tls", false }, { n.kind, n.sent })
            url = server.tls_url("/json")
            c = run_curl({ ca_file = server.cert_file }, { { url = url } })[1]
            n = run_ngx(nil, { { url = url } })[1]
            assert.same({ 200, 200 }, { c.status, n.status })
        end)

        it("a connection that never completes ends at connect_timeout_ms, unsent", function()
            local port, close = ports.unanswering()
            local calls = { { method = "POST", url = "http://127.0.0.1:" .. port .. "/", body = "{}" } }
            local opts = { connect_timeout_ms = 300, timeout_ms = 3000 }
            local c, n = run_curl(opts, calls)[1], run_ngx(opts, calls)[1]
            close()
            for _, res in ipairs { c, n } do
                assert.same({ "timeout", false }, { res.kind, res.sent })
                assert.is_true(res.ms >= 250 and res.ms < 1500 * SLOW, "took " .. res.ms)
            end
        end)

        -- Every hostile reply, and the one verdict both transports give it
        -- (docs/reliability.md has the same table): kind ("decode": no kind,
        -- a decode_error), status (0: none). A reply with no kind carries
        -- the body {"ok":true}. Raw replies come from support.raw_server,
        -- the others from the test server.
        local HOSTILE = {
            { "/interim", nil, 200 }, { "/http10", nil, 200 }, { "/close", nil, 200 },
            { "/to_close", nil, 200 }, { "/chunk_ext", nil, 200 }, { "/lf_only", nil, 200 },
            { "/no_reason", nil, 200 }, { "/folded", nil, 200 }, { "/length_and_chunked", nil, 200 },
            { "/long_chunk_ext", nil, 200 }, { "/many_trailers", nil, 200 },
            { "/bad_chunk", "network", 200 }, { "/cut_chunk", "network", 200 },
            { "/huge_chunk", "network", 200 }, { "/two_lengths", "network", 200 },
            { "/length_junk", "network", 200 }, { "/length_negative", "network", 200 },
            { "/short_body", "network", 200 }, { "/head_cut", "network", 200 },
            { "/no_colon", "network", 200 }, { "/nul_header", "network", 200 },
            { "/te_gzip", "network", 200 }, { "/http2_line", "network", 0 },
            { "/not_http", "network", 0 }, { "/empty_reply", "network", 0 },
            { "/content_encoding", "decode", 200 },
            { "/big_headers", "too_large", 200 },
            { "/silent", "timeout", 0 }, { "/endless_continue", "timeout", 0 },
            { "server:/nothttp/zero/x", "network", 0 }, { "server:/nothttp/text/x", "network", 0 },
            { "server:/bighead/x", "too_large", 200 },
        }

        it("gives each hostile reply one verdict on both transports", function()
            local calls = {}
            for i, case in ipairs(HOSTILE) do
                local path = case[1]:match("^server:(.*)")
                calls[i] = { url = path and server.url(path) or raw.url(case[1]), timeout_ms = 1000 }
            end
            local c, n = run_curl(nil, calls), run_ngx(nil, calls)
            for i, case in ipairs(HOSTILE) do
                local kind, status = case[2], case[3]
                for who, res in pairs { curl = c[i], cosocket = n[i] } do
                    local where = who .. " " .. case[1] .. ": " .. tostring(res.message or res.decode_error)
                    assert.same({ kind ~= "decode" and kind or nil, true, status },
                        { res.kind, res.sent, res.status }, where)
                    if kind == "decode" then
                        assert.is_string(res.decode_error, where)
                    elseif not kind then
                        assert.is_true(res.body.ok, where)
                    end
                end
            end
            assert.matches("not HTTP", n[24].message)
        end)

        -- A kept-alive connection reset unanswered: the GET goes once more on
        -- a new connection (connects 1), and whatever reply comes there gets
        -- its own verdict, not the reset's.
        it("gives a resent request the verdict of the reply it got", function()
            local calls = {}
            for i, path in ipairs { "/big_headers", "/http10", "/content_encoding", "/silent" } do
                calls[2 * i - 1] = { url = raw.url("/then_reset") }
                calls[2 * i] = { url = raw.url(path), timeout_ms = 500 }
            end
            for who, run in pairs { cosocket = run_ngx, curl = run_curl } do
                local out = run(nil, calls)
                local verdicts = {}
                for i = 2, #out, 2 do
                    verdicts[i / 2] = { out[i].kind, out[i].status, out[i].connects }
                    assert.not_matches("reset", out[i].message or "", 1, true)
                end
                assert.same({ { "too_large", 200, 1 }, { nil, 200, 1 }, { nil, 200, 1 },
                    { "timeout", 0, 1 } },
                    verdicts, who)
            end
        end)

        it("headers of more than 300 KiB in all are too large, and Connection: close is honoured", function()
            local n = run_ngx(nil, { { url = raw.url("/big_headers") }, { url = raw.url("/close") },
                { url = raw.url("/close") } })
            local c = run_curl(nil, { { url = raw.url("/big_headers") } })
            assert.same({ "too_large", true, 200 }, { n[1].kind, n[1].sent, n[1].status })
            assert.same({ "too_large", true }, { c[1].kind, c[1].sent })
            assert.same({ 1, 1 }, { n[2].connects, n[3].connects })
        end)
    end)

    describe("perform, wait and cancel", function()
        local function slow(ms)
            return server.url("/slow?ms=" .. ms)
        end

        it("keeps several calls in flight and hands them out as they finish", function()
            local r = scenario("perform_order", { calls = { { url = slow(300) }, { url = slow(50) },
                { url = slow(150) } } })
            assert.equal(3, r.pending_after_start)
            assert.same({ 2, 3, 1 }, { r.order[1].index, r.order[2].index, r.order[3].index })
            assert.same({ 200, 200, 200 }, { r.order[1].status, r.order[2].status, r.order[3].status })
            assert.equal(0, r.pending_after)
            assert.equal(0, r.again)
            -- They overlapped: about the slowest, not the sum.
            assert.is_true(r.total >= 290 and r.total < 450 * SLOW, "took " .. r.total)
        end)

        it("wait() hands over the request waited for, unless keep", function()
            local r = scenario("wait_keep", { fast = slow(20), slow = slow(150) })
            assert.is_true(r.done_slow)
            assert.equal(2, r.finished) -- both finished, neither handed over
            table.sort(r.kept)
            assert.same({ "fast", "slow" }, r.kept)
            assert.is_true(r.done_slow2)
            assert.same({ "fast" }, r.left)
            assert.same({ 200, 200 }, r.statuses)
            assert.is_true(r.bad_into) -- response(check, 5) raises, and reads nothing
            assert.is_true(r.filled)
        end)

        it("response() returns a raise while building its table as nil, message", function()
            local r = scenario("response_raise", { url = server.url("/json") })
            assert.is_true(#r.messages > 0, "no nesting made building the table raise")
            for i, message in ipairs(r.messages) do
                assert.matches("overflow", message)
                -- Nothing was lost: with room again, the same response.
                assert.equal("alice", r.rereads[i])
            end
        end)

        it("wait() gives up at its timeout and the request carries on", function()
            local r = scenario("wait_timeout", { url = slow(400), wait_ms = 100 })
            assert.is_false(r.done)
            assert.is_true(r.waited >= 95 and r.waited < 300 * SLOW, "waited " .. r.waited)
            assert.is_false(r.done0)
            assert.equal(1, r.pending)
            assert.is_true(r.done_later)
            assert.equal(200, r.status)
        end)

        it("perform() with nothing in flight sleeps, and perform(0) returns at once", function()
            local r = scenario("idle", { sleep_ms = 150 })
            assert.equal(0, r.n)
            assert.is_true(r.slept >= 145 and r.slept < 400 * SLOW, "slept " .. r.slept)
            assert.equal(0, r.n0)
            assert.is_true(r.zero_ms < 5 * SLOW)
        end)

        it("cancels requests and closes the transport", function()
            local r = scenario("cancel", { url = slow(2000) })
            assert.is_true(r.done)
            assert.equal(1, r.pending)
            assert.matches("request is closed", r.response_error)
            -- Closed, it is inert, as the libcurl transport is: a finalizer
            -- may close it under a caller.
            assert.equal(0, r.closed_perform)
            assert.is_true(r.closed_start)
            assert.matches("transport is closed", r.headers_error)
            assert.equal("cancelled", r.a.kind)
            assert.matches("transport closed", r.a.message)
            assert.is_true(r.b_done)
            assert.is_true(r.ms < 500 * SLOW, "took " .. r.ms)
        end)

        it("cancels from another light thread at once", function()
            local r = scenario("cancel_elsewhere", { url = slow(1000), url_fast = slow(1) })
            assert.is_true(r.done)
            assert.equal(0, r.pending)
            assert.equal(0, r.handed)
            assert.is_true(r.ms < 200 * SLOW, "took " .. r.ms)
            assert.equal(200, r.other)
        end)

        it("holds max_host_connections exchanges at once per host; the rest wait their turn", function()
            local r = scenario("limit", { limit = 2, n = 6, url = slow(200), slow_url = slow(3000) })
            table.sort(r.at)
            -- Three waves of two: never a third at once, always two.
            assert.is_true(r.at[3] >= 390, "a third call ended at " .. r.at[3])
            assert.is_true(r.at[5] >= 590, "a fifth call ended at " .. r.at[5])
            assert.is_true(r.at[6] < 1000 * SLOW, "the last call ended at " .. r.at[6])
            assert.is_true(r.connects <= 2)
            -- A cancelled call gives its place back at once.
            assert.equal(200, r.quick_status)
            assert.is_true(r.quick_ms >= 190 and r.quick_ms < 1000 * SLOW, "took " .. r.quick_ms)
        end)

        it("frees a place held by a call nginx ended without a word, at that call's deadline", function()
            scenario("abandon", { url = slow(5000), timeout_ms = 300 })
            local r = scenario("after_abandon", { url = slow(1) })
            assert.equal(200, r.status)
            -- The abandoned call's 300 ms and a grace of a second, not its 5 s.
            assert.is_true(r.ms < 1500 * SLOW, "waited " .. r.ms)
        end)

        it("hands out a call whose request nginx ended, once its time is up", function()
            scenario("shared_abandon", { url = slow(5000), timeout_ms = 300 })
            local r = scenario("shared_perform")
            assert.equal(1, r.pending)
            assert.same({ 1, "cancelled", 0 }, { r.n, r.kind, r.after })
            assert.matches("nginx ended the exchange", r.message)
            assert.is_true(r.ms < 2500 * SLOW, "waited " .. r.ms)
        end)

        it("lets nothing it hands out reach the Authorization header", function()
            local r = scenario("secrets", { url = slow(100) })
            assert.is_false(r.in_flight)
            assert.is_false(r.after)
            assert.not_matches("sk_secret", r.text)
            assert.equal(200, r.status)
        end)

        it("refuses bad arguments without quoting a header", function()
            local r = scenario("arguments")
            for k, v in pairs(r) do
                if type(v) == "string" then
                    assert.not_matches("sk_secret_value", v, k)
                end
            end
            assert.matches("header 2 contains CR, LF or NUL", r.header_cr)
            assert.matches("header 1 contains CR, LF or NUL", r.header_nul)
            assert.matches("header 1 is not a string", r.header_type)
            assert.matches("header 1 contains CR", r.header_start)
            assert.matches("url contains", r.url_space)
            assert.matches("url contains", r.url_lf)
            assert.matches("bad method HEAD", r.method)
            assert.matches("body must be nil or a string", r.body)
            assert.matches("timeout_ms must be", r.timeout)
            assert.matches("unknown transport option 'retries'", r.option)
            assert.matches("'timeout_ms' must be a number %(got string%)", r.option_type)
            assert.matches("timeout must be", r.wait_ms)
            assert.equal("passage.headers", r.set_text)
            assert.equal(0, r.set_fields)
            assert.same({ "connect", false }, { r.ftp.kind, r.ftp.sent })
            assert.is_true(r.ftp_done)
            assert.equal("connect", r.bad_port.kind)
            assert.same({ "connect", false }, { r.no_resolver.kind, r.no_resolver.sent })
            assert.matches("resolver", r.no_resolver.message)
            assert.matches("not done", r.not_done)
            assert.matches("already read", r.twice)
            assert.equal("passage.transport: 0 in flight", r.tostring)
            assert.equal("passage.transport: closed", r.closed)
        end)
    end)

    describe("outside nginx", function()
        it("loads, says cosockets are unavailable, and refuses to make a transport", function()
            local cosocket = require "passage.cosocket"
            assert.is_false(cosocket.available())
            local ok, err = pcall(cosocket.new)
            assert.is_false(ok)
            assert.matches("nginx's Lua module is not loaded", err)
            ok, err = pcall(cosocket.new, { retries = 1 })
            assert.is_false(ok)
            assert.matches("unknown transport option 'retries'", err)
        end)
    end)

    describe("inside nginx", function()
        it("tells where cosockets can be used, and is right in every phase", function()
            assert.equal(200, (emulator.request(nginx_url("/phases"))))
            assert.equal(200, (emulator.request(nginx_url("/phases_balancer"))))
            local page = os.tmpname() -- the answer itself is not looked at
            local fetched = sh(string.format("curl -sk -o '%s' https://127.0.0.1:%d/", page, TLS_PORT))
            os.remove(page)
            assert(fetched)
            local expected = {
                init_worker = false, set = false, rewrite = true, access = true, content = true,
                timer = true, header_filter = false, body_filter = false, log = false,
                balancer = false, ssl_cert = true,
            }
            socket.sleep(0.1) -- the log phase and the timer run after the answer
            for name, want in pairs(expected) do
                local _, body = emulator.request(nginx_url("/phase?name=" .. name))
                local got = cjson.decode(body)
                assert.is_table(got, name .. " was not probed")
                assert.equal(want, got.available, name)
                assert.equal(want, got.works, name .. ": cosockets " .. (got.works and "work" or "fail"))
                if want then
                    assert.equal(200, got.status, name)
                end
            end
        end)

        it("answers /ping within a few ms while calls with latency are in flight", function()
            emulator.faults { clear = true, latency_ms = 300 }
            local t0 = socket.gettime()
            local finished = nginx:post_in_background("/run", { scenario = "concurrent", n = 8,
                url = user_url }, os.tmpname())
            socket.sleep(0.05)
            local slowest = slowest_ping(10)
            local status, _, body = finished(10 * SLOW)
            assert.equal(200, status)
            local r = cjson.decode(body)
            emulator.faults { clear = true }
            assert.is_true(slowest < 50 * SLOW, string.format("a ping took %.1f ms", slowest))
            assert.equal(8, r.ok)
            -- The eight overlapped: about one latency.
            assert.is_true(r.ms < 600 * SLOW, "took " .. r.ms)
            assert.is_true(socket.gettime() - t0 < 2 * SLOW)
        end)

        it("runs calls in an ngx.timer callback while the worker serves /ping", function()
            emulator.faults { clear = true, latency_ms = 200 }
            local started = scenario("timer_start", { n = 6, url = user_url })
            assert.truthy(started.ok)
            local slowest = slowest_ping(10)
            local r
            for _ = 1, 100 * SLOW do
                r = scenario("timer_result")
                if not r.pending then
                    break
                end
                socket.sleep(0.05)
            end
            emulator.faults { clear = true }
            assert.is_nil(r.pending)
            assert.equal(6, r.ok)
            assert.equal("timer", r.phase)
            assert.is_true(r.available)
            assert.is_true(r.ms < 500 * SLOW, "took " .. r.ms)
            assert.is_true(slowest < 50 * SLOW, string.format("a ping took %.1f ms", slowest))
        end)
    end)
end)
