-- make bench-openresty: the client inside nginx against what an OpenResty
-- user picks today, lua-resty-http + lua-cjson, in one nginx worker with
-- the Lua module, driven by wrk, with the emulator as the upstream.
--
-- Both sides answer a request with one API call: "ours" with the worker's
-- passage.users client (made once in init_worker_by_lua, calling over
-- cosockets), the peer with resty.http's request_uri and cjson.decode.
-- Cases: get_user with no added latency and with 20 ms of upstream latency
-- at 32 connections, list_paginated_users limit 500 at 8. Each round runs
-- every case on both sides, alternating; each side's best rate and least
-- worker CPU per request (utime + stime of the worker, /proc/<pid>/stat)
-- over the rounds are reported, then the ratios and the verdict on the
-- targets. Asserts nothing: the targets are printed as met or missed.
--
--   make bench-openresty
--
-- which builds the LuaJIT core and runs, with the paths of make spec:
--   PASSAGE_EMULATOR_PORT=8790 lua5.4 bench/openresty.lua
-- The emulator is started on PASSAGE_EMULATOR_PORT unless one answers
-- there (and stopped if started here); its data is replaced. nginx listens
-- on PASSAGE_OPENRESTY_PORT (default 18795). The peer comes from
-- ../shared/peers (PASSAGE_PEERS overrides it); without it only our
-- figures are printed. BENCH_ROUNDS (default 3) rounds; BENCH_SECONDS
-- (default 3) per measured run, each after a warm-up of a second
-- (connections pooled, traces compiled).
local control = require "passage.emulator.control"
local emulator = require "support.emulator"
local launcher = require "passage.emulator.launcher"
local users = require "passage.users"

local APP = "test_app"
local PORT = tonumber(os.getenv("PASSAGE_OPENRESTY_PORT")) or 18795
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 3
local SECONDS = tonumber(os.getenv("BENCH_SECONDS")) or 3
local PEERS = os.getenv("PASSAGE_PEERS") or "../shared/peers"

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

local function capture(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return out
end

local function exists(path)
    local f = io.open(path, "r")
    if f then
        f:close()
    end
    return f ~= nil
end

local TICKS = tonumber(capture("getconf CLK_TCK")) or 100
local repo = capture("pwd"):gsub("%s+$", "")
local peers = PEERS:sub(1, 1) == "/" and PEERS or repo .. "/" .. PEERS
local have_peer = exists(peers .. "/lua-resty-http/lib/resty/http.lua")
if not have_peer then
    say("lua-resty-http not found in %s (see its README for what goes there): the peer is skipped,"
        .. " only our figures are printed", peers)
end

-- ?id=<user> answers the user's id; ?page=<limit> the number of users of
-- the first page.
local HTTP = [[
    lua_package_path "REPO/lua/?.lua;REPO/lua/?/init.lua;PEER_PATH;;";
    lua_package_cpath "REPO/build/jit/?.so;CPATH";
    keepalive_requests 1000000;

    init_worker_by_lua_block {
        UPSTREAM = "EMULATOR"
        -- ours: one client for the worker
        CLIENT = require("passage.users").new { api_key = "test_key", base_url = UPSTREAM }
        -- the peer: a cjson instance of its own
        PEER_CJSON = require("cjson").new()
    }

    server {
        listen 127.0.0.1:PORT backlog=4096;
        default_type text/plain;

        location = /ours {
            content_by_lua_block {
                local page = ngx.var.arg_page
                if page then
                    local list = CLIENT:list_paginated_users("APP", { limit = tonumber(page) })
                    if not list then
                        return ngx.exit(502)
                    end
                    return ngx.print(#list.users)
                end
                local user = CLIENT:get_user("APP", ngx.var.arg_id)
                if not user then
                    return ngx.exit(502)
                end
                ngx.print(user.id)
            }
        }

        location = /peer {
            content_by_lua_block {
                local page = ngx.var.arg_page
                local url = UPSTREAM .. "/apps/APP/users" .. (page and ("?limit=" .. page)
                    or ("/" .. ngx.var.arg_id))
                local res = require("resty.http").new():request_uri(url, {
                    headers = { ["Authorization"] = "Bearer test_key", ["Accept"] = "application/json" },
                })
                if not res or res.status ~= 200 then
                    return ngx.exit(502)
                end
                local body = PEER_CJSON.decode(res.body)
                ngx.print(page and #body.users or body.user.id)
            }
        }
    }
]]

-- utime + stime of a process, in clock ticks.
local function cpu_ticks(pid)
    local f = assert(io.open("/proc/" .. pid .. "/stat", "r"))
    local s = f:read("*a")
    f:close()
    local fields = {}
    for x in s:match("%) (.*)$"):gmatch("%S+") do
        fields[#fields + 1] = x
    end
    return tonumber(fields[12]) + tonumber(fields[13])
end

-- One wrk run of `seconds`; returns req/s, and the CPU µs per request of
-- the worker and of the emulator's worker (upstream).
local function wrk(url, connections, pids, seconds)
    local before, up_before = cpu_ticks(pids.worker), cpu_ticks(pids.upstream)
    local out = capture(string.format("wrk -t1 -c%d -d%ds '%s' 2>&1", connections, seconds, url))
    local after, up_after = cpu_ticks(pids.worker), cpu_ticks(pids.upstream)
    local requests = tonumber(out:match("(%d+) requests in"))
    local rate = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
    if not requests or requests == 0 or out:match("Non%-2xx or 3xx responses") then
        error("wrk failed on " .. url .. ":\n" .. out)
    end
    local per_request = 1e6 / TICKS / requests
    return rate, (after - before) * per_request, (up_after - up_before) * per_request
end

-- The worker of the nginx whose master is `master`.
local function worker_of(master)
    return assert(tonumber(capture("pgrep -P " .. master):match("%d+")), "no nginx worker")
end

local CASES = {
    { name = "get_user, 0 ms, 32 connections", query = "?id=USER", latency_ms = 0, connections = 32 },
    { name = "get_user, 20 ms, 32 connections", query = "?id=USER", latency_ms = 20, connections = 32 },
    { name = "500-user page, 8 connections", query = "?page=500", latency_ms = 0, connections = 8 },
}

-- The targets: ours against the peer, case by case.
local TARGETS = {
    { case = 1, what = "rate", at_least = 1.0 },
    { case = 2, what = "rate", at_least = 0.9 },
    { case = 3, what = "rate", at_least = 1.3 },
    { case = 1, what = "cpu", at_most = 1.0 },
    { case = 2, what = "cpu", at_most = 1.0 },
}

local function run(user_id)
    local peer_path = peers .. "/lua-resty-http/lib/?.lua;" .. peers .. "/lua-resty-string/lib/?.lua"
    local fill = { REPO = repo, PEER_PATH = peer_path, CPATH = launcher.luajit_cpath(),
        EMULATOR = emulator.url(), PORT = tostring(PORT), APP = APP }
    local http = HTTP
    for _, name in ipairs { "REPO", "PEER_PATH", "CPATH", "EMULATOR", "PORT", "APP" } do
        http = http:gsub(name, function() return fill[name] end)
    end
    local server = assert(launcher.start { prefix = assert(launcher.temp_prefix("bench-openresty")),
        port = PORT, http = http, temporary = true, worker_connections = 4096 })
    local ok, err = pcall(function()
        local upstream = launcher.attach(control.paths(control.port()).prefix):pid()
        local pids = { worker = worker_of(assert(server:pid(), "no nginx master")),
            upstream = worker_of(assert(upstream, "no emulator master")) }
        local base = "http://127.0.0.1:" .. PORT
        local sides = have_peer and { "ours", "peer" } or { "ours" }
        local best = {}
        for round = 1, ROUNDS do
            for ci, case in ipairs(CASES) do
                emulator.faults { clear = true, latency_ms = case.latency_ms }
                -- Alternating which side goes first evens out a drift of
                -- the machine's load within a round.
                for k = 1, #sides do
                    local side = sides[(k + round + ci) % #sides + 1]
                    local url = base .. "/" .. side .. case.query:gsub("USER", user_id)
                    wrk(url, case.connections, pids, 1)
                    local rate, cpu, up = wrk(url, case.connections, pids, SECONDS)
                    local key = ci .. side
                    local b = best[key] or { rate = 0, cpu = math.huge }
                    best[key] = { rate = math.max(b.rate, rate), cpu = math.min(b.cpu, cpu) }
                    say("round %d  %-32s %-4s %8.0f req/s %7.1f µs CPU/req (upstream %5.1f)", round,
                        case.name, side, rate, cpu, up)
                end
            end
        end
        emulator.faults { clear = true }
        say("")
        say("best of %d rounds (rate and CPU each), %d s runs, one nginx worker, wrk -t1:", ROUNDS,
            SECONDS)
        say("%-32s %19s %19s %7s %7s", "case", "ours req/s µs/req", "peer req/s µs/req", "rate", "CPU")
        for ci, case in ipairs(CASES) do
            local o, p = best[ci .. "ours"], best[ci .. "peer"]
            if p then
                say("%-32s %9.0f %9.1f %9.0f %9.1f %6.2fx %6.2fx", case.name, o.rate, o.cpu, p.rate,
                    p.cpu, o.rate / p.rate, o.cpu / p.cpu)
            else
                say("%-32s %9.0f %9.1f", case.name, o.rate, o.cpu)
            end
        end
        if not have_peer then
            return
        end
        say("")
        say("targets (ours / lua-resty-http + cjson):")
        local missed = 0
        for _, t in ipairs(TARGETS) do
            local o, p = best[t.case .. "ours"], best[t.case .. "peer"]
            local ratio = o[t.what] / p[t.what]
            local met = t.at_least and ratio >= t.at_least or t.at_most and ratio <= t.at_most
            missed = missed + (met and 0 or 1)
            say("  %-6s %-32s %.2fx, target %s %.1fx: %s", t.what == "rate" and "req/s" or "CPU/req",
                CASES[t.case].name, ratio, t.at_least and ">=" or "<=", t.at_least or t.at_most,
                met and "met" or "MISSED")
        end
        say(missed == 0 and "all targets met" or missed .. " target(s) missed")
    end)
    server:stop()
    if not ok then
        error(err, 0)
    end
end

local started = false
if not control.answering(control.port()) then
    assert(control.start(), "cannot start the emulator")
    started = true
end
local ok, err = pcall(function()
    emulator.reset()
    emulator.seed(APP, 600, 7)
    local client = users.new { api_key = "test_key", base_url = emulator.url() }
    local user = assert(client:create_user(APP, { email = "bench@example.com" }))
    client:close()
    run(user.id)
end)
if started then
    control.stop()
end
if not ok then
    error(err, 0)
end
