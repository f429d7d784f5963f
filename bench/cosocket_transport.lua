-- Benchmark: passage.cosocket's raw exchange (start, wait, response with the
-- decoder's check) against lua-resty-http + lua-cjson, in one nginx worker,
-- driven by wrk, with the emulator as the upstream. Prints req/s and the
-- worker's CPU per request for each case, and the ratios; asserts nothing.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
--     PASSAGE_EMULATOR_PORT=8787 lua5.4 bench/cosocket_transport.lua
--
-- After `make build` and `make build LUA_VERSION=jit`. The peer comes from
-- ../shared/peers (PASSAGE_PEERS overrides it); without it only our figures
-- are printed. The worker listens on PASSAGE_COSOCKET_PORT (default 18805).
-- BENCH_ROUNDS (default 3) rounds of every case, cases back to back in each
-- round; for each, the best rate and the least CPU of its rounds are
-- reported (on a shared machine, the least disturbed). BENCH_SECONDS
-- (default 5) per run.
local control = require "passage.emulator.control"
local emulator = require "support.emulator"
local launcher = require "passage.emulator.launcher"

local function read_file(path)
    local f = assert(io.open(path, "r"))
    local text = f:read("*a")
    f:close()
    return text
end
local users = require "passage.users"

local APP = "test_app"
local PORT = tonumber(os.getenv("PASSAGE_COSOCKET_PORT")) or 18805
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 3
local SECONDS = tonumber(os.getenv("BENCH_SECONDS")) or 5
local PEERS = os.getenv("PASSAGE_PEERS") or "../shared/peers"
local TICKS = tonumber(io.popen("getconf CLK_TCK"):read("*l")) or 100

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

local function exists(path)
    local f = io.open(path, "r")
    if f then
        f:close()
    end
    return f ~= nil
end

local repo = io.popen("pwd"):read("*l")
local peers = PEERS:sub(1, 1) == "/" and PEERS or repo .. "/" .. PEERS
local have_peer = exists(peers .. "/lua-resty-http/lib/resty/http.lua")
if not have_peer then
    say("lua-resty-http not found in %s: the peer is skipped", peers)
end

-- Both sides do the same work: GET the user, decode the JSON, answer its id.
local HTTP = [[
    lua_package_path "REPO/lua/?.lua;REPO/lua/?/init.lua;PEER_PATH;;";
    lua_package_cpath "REPO/build/jit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    keepalive_requests 1000000;

    init_by_lua_block {
        UPSTREAM = "EMULATOR"
        KEY = "Bearer test_key"
    }

    server {
        listen 127.0.0.1:PORT backlog=4096;
        default_type text/plain;

        location = /ours {
            content_by_lua_block {
                if not OURS then
                    local core = require "passage.core"
                    OURS = require("passage.cosocket").new()
                    OURS_HEADERS = OURS:headers { "Authorization: " .. KEY, "Accept: application/json" }
                    OURS_CHECK = core.checker({ id = "string", email = "string?" }, { "user" })
                    OURS_PAGE_CHECK = core.checker({ id = "string" }, { "users", "[]" })
                end
                local page = ngx.var.arg_page
                local req = OURS:start("GET", UPSTREAM .. (page and ("/apps/APP/users?limit=" .. page)
                    or ("/apps/APP/users/" .. ngx.var.arg_id)), OURS_HEADERS)
                OURS:wait(req, 30000)
                local res = req:response(page and OURS_PAGE_CHECK or OURS_CHECK)
                if res.status ~= 200 or not res.checked then
                    return ngx.exit(502)
                end
                ngx.print(page and #res.body.users or res.body.user.id)
            }
        }

        location = /peer {
            content_by_lua_block {
                local http = require "resty.http"
                PEER_CJSON = PEER_CJSON or require("cjson").new()
                local page = ngx.var.arg_page
                local httpc = http.new()
                local res = httpc:request_uri(UPSTREAM .. (page and ("/apps/APP/users?limit=" .. page)
                    or ("/apps/APP/users/" .. ngx.var.arg_id)),
                    { headers = { ["Authorization"] = KEY, ["Accept"] = "application/json" } })
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

local function worker_pid(master)
    local p = io.popen("pgrep -P " .. master)
    local pid = tonumber(p:read("*l"))
    p:close()
    return pid
end

-- One wrk run; returns req/s and worker CPU µs per request.
local function wrk(url, connections, pid)
    local before = cpu_ticks(pid)
    local p = io.popen(string.format("wrk -t1 -c%d -d%ds '%s' 2>&1", connections, SECONDS, url))
    local out = p:read("*a")
    p:close()
    local after = cpu_ticks(pid)
    local requests = tonumber(out:match("(%d+) requests in"))
    local rate = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
    local errors = out:match("Non%-2xx or 3xx responses: (%d+)")
    if not requests or errors then
        error("wrk failed on " .. url .. ":\n" .. out)
    end
    return rate, (after - before) / TICKS * 1e6 / requests
end

local started_emulator = false
if not control.answering(control.port()) then
    assert(control.start(), "cannot start the emulator")
    started_emulator = true
end

local server
local ok, err = pcall(function()
    emulator.reset()
    emulator.seed(APP, 600, 7)
    local client = users.new { api_key = "test_key", base_url = emulator.url() }
    local user = assert(client:create_user(APP, { email = "bench@example.com" }))
    client:close()

    local peer_path = peers .. "/lua-resty-http/lib/?.lua;" .. peers .. "/lua-resty-string/lib/?.lua"
    local http = HTTP:gsub("REPO", repo):gsub("PEER_PATH", peer_path):gsub("EMULATOR", emulator.url())
        :gsub("PORT", tostring(PORT)):gsub("APP", APP)
    server = assert(launcher.start { prefix = assert(launcher.temp_prefix("bench-cosocket")), port = PORT,
        http = http, temporary = true })
    local pid = worker_pid(assert(tonumber(read_file(server.pid_file))))
    local base = "http://127.0.0.1:" .. PORT

    local cases = {
        { "get_user, 0 ms, 32 connections", "?id=" .. user.id, 0, 32 },
        { "get_user, 20 ms, 32 connections", "?id=" .. user.id, 20, 32 },
        { "500-user page, 0 ms, 8 connections", "?page=500", 0, 8 },
    }
    local sides = have_peer and { "ours", "peer" } or { "ours" }
    local best = {}
    for round = 1, ROUNDS do
        for ci, case in ipairs(cases) do
            emulator.faults { latency_ms = case[3] }
            for _, side in ipairs(sides) do
                local url = base .. "/" .. side .. case[2]
                -- A short warm-up: connections pooled, traces compiled.
                wrk(url, case[4], pid)
                local rate, cpu = wrk(url, case[4], pid)
                local key = ci .. side
                local b = best[key] or { rate = 0, cpu = math.huge }
                best[key] = { rate = math.max(b.rate, rate), cpu = math.min(b.cpu, cpu) }
                say("round %d  %-36s %-4s %9.0f req/s %7.1f us CPU/req", round, case[1], side, rate, cpu)
            end
        end
    end
    emulator.faults { latency_ms = 0 }
    say("")
    say("best of %d rounds (rate and CPU each), %d s each, one nginx worker (wrk -t1):", ROUNDS, SECONDS)
    for ci, case in ipairs(cases) do
        local o, p = best[ci .. "ours"], best[ci .. "peer"]
        if p then
            say("%-36s ours %8.0f req/s %6.1f us/req | lua-resty-http %8.0f req/s %6.1f us/req | "
                .. "rate %.2fx, CPU %.2fx", case[1], o.rate, o.cpu, p.rate, p.cpu, o.rate / p.rate,
                o.cpu / p.cpu)
        else
            say("%-36s ours %8.0f req/s %6.1f us/req", case[1], o.rate, o.cpu)
        end
    end
end)
if server then
    server:stop()
end
if started_emulator then
    control.stop()
end
if not ok then
    error(err, 0)
end
