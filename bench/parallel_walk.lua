-- Benchmark: the parallel walk and bulk calls against the emulator with
-- added latency. Prints rates, ratios and whether the targets are met; it
-- asserts nothing.
--
--   make bench-parallel
--   (or: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
--        PASSAGE_EMULATOR_PORT=8787 lua5.4 bench/parallel_walk.lua [users] [latency_ms])
--
-- Every case runs once per round, the cases of a round back to back, and the
-- best round of each is reported (BENCH_ROUNDS, default 5): on a shared
-- machine a burst of someone else's load then spoils one round of each case,
-- not all the runs of one case.
--
-- Models. L is the added latency, C the CPU bound: the best rate with no
-- added latency (K = 16 or 32), where client decoding and the emulator
-- rendering pages share this machine. With K pages in flight a walk can at best reach
--   min(K / L, C)   the latency-only ceiling, or the CPU bound
--   min(K * S, C)   K times the measured sequential rate S, which also pays
--                   the client's and the emulator's work and the wake-ups of
--                   every request, or the CPU bound
-- Both ratios (measured / model) are printed. The targets: at K = 8, at least
-- 6 times the sequential walk and at least 0.8 of min(K / L, C). Bulk calls
-- use the same models with N calls in flight.
--
-- Peers, in the same rounds: the usual Lua way to walk pages (LuaSocket's
-- http.request and lua-cjson, one page at a time), and for bulk calls wrk
-- (a C load generator, when installed) with as many connections as calls in
-- flight: the most this emulator gives N concurrent clients.
local core = require "passage.core"
local users = require "passage.users"
local paginator = require "passage.paginator"
local emulator = require "support.emulator"

local now_ms = core.now_ms

local APP = "test_app"
local USERS = tonumber(arg and arg[1]) or 100000
local LATENCY_MS = tonumber(arg and arg[2]) or 5
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 5
local PAGE = 500
local BULK_CALLS = 10000
local BULK_N = 32
local TARGET_K, TARGET_SPEEDUP, TARGET_RATIO = 8, 6, 0.8

local interpreter = jit and jit.version or _VERSION -- luacheck: globals jit

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

emulator.ensure()
local client = users.new { api_key = "test_key", base_url = emulator.url(), timeout_ms = 60000 }

-- Sets the emulator's added latency, only when it changes.
local latency_now
local function latency(ms)
    if ms ~= latency_now then
        emulator.faults { latency_ms = ms }
        latency_now = ms
    end
end

-- Walks every user with K pages in flight; returns pages/s.
local function walk(k)
    collectgarbage()
    local n, pages = 0, 0
    local t = now_ms()
    for page in paginator.pages(client, APP, { limit = PAGE }, { in_flight = k }) do
        pages = pages + 1
        n = n + #page.users
    end
    local s = (now_ms() - t) / 1000
    assert(n == USERS, string.format("walk saw %d users, expected %d", n, USERS))
    return pages / s
end

-- The live Lua heap (after a full collection) at a few points of the first
-- 40 pages of a walk with K in flight, minus the heap before: the memory a
-- walk holds, which K bounds. Returns the largest sample in KB.
local function live_heap(k)
    collectgarbage()
    collectgarbage()
    local base = collectgarbage("count")
    local most, pages = 0, 0
    for _ in paginator.pages(client, APP, { limit = PAGE }, { in_flight = k }) do
        pages = pages + 1
        if pages % 8 == 0 then
            collectgarbage()
            most = math.max(most, collectgarbage("count") - base)
        end
        if pages == 40 then
            break
        end
    end
    -- A walk broken off early leaves its prefetched pages to be collected.
    client:poll(0)
    return most
end

-- The peer walk: LuaSocket and lua-cjson, a page at a time, the window
-- pinned as the paginator pins it; returns pages/s.
local peer_json = require("cjson").new()
local function peer_walk()
    local http = require "socket.http"
    local ltn12 = require "ltn12"
    local base = emulator.url() .. "/apps/" .. APP .. "/users?limit=" .. PAGE
    local function page_of(query)
        local chunks = {}
        local _, status = http.request { url = base .. query, sink = ltn12.sink.table(chunks),
            headers = { authorization = "Bearer test_key" } }
        assert(status == 200, "peer walk: HTTP " .. tostring(status))
        return peer_json.decode(table.concat(chunks))
    end
    collectgarbage()
    local t = now_ms()
    local first = page_of("&page=1")
    local pin = string.format("&created_before=%d", first.created_before)
    local last = math.ceil(first.total_users / PAGE)
    local n = #first.users
    for p = 2, last do
        n = n + #page_of("&page=" .. p .. pin).users
    end
    assert(n == USERS, string.format("peer walk saw %d users, expected %d", n, USERS))
    return last / ((now_ms() - t) / 1000)
end

-- wrk's requests/s for GET url with `connections` open, or nil without wrk
-- (its stderr joins the output read here, where the figure is looked for).
local function wrk_rate(url, connections)
    local p = io.popen(string.format("wrk -t1 -c%d -d2s -H 'Authorization: Bearer test_key' "
        .. "'%s' 2>&1", connections, url))
    local out = p:read("*a")
    p:close()
    return tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
end

local function bulk_gets(ids, count, n)
    local calls = {}
    for i = 1, count do
        calls[i] = { "get_user", APP, ids[(i - 1) % #ids + 1] }
    end
    local t = now_ms()
    local results = client:bulk(calls, { max_in_flight = n })
    local s = (now_ms() - t) / 1000
    for i = 1, count do
        assert(results[i].value, results[i].err and tostring(results[i].err))
    end
    return count / s
end

local function sequential_gets(ids, count)
    local t = now_ms()
    for i = 1, count do
        assert(client:get_user(APP, ids[(i - 1) % #ids + 1]))
    end
    return count / ((now_ms() - t) / 1000)
end

-- Runs every case once per round; returns name -> best rate.
local function rounds(cases)
    local best = {}
    for _ = 1, ROUNDS do
        for _, c in ipairs(cases) do
            latency(c.latency_ms)
            best[c.name] = math.max(best[c.name] or 0, c.run())
        end
    end
    return best
end

say("passage-lua parallel walk benchmark (%s, emulator on port %d, best of %d rounds)",
    interpreter, emulator.port(), ROUNDS)
say("reproduce: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/%s/?.so;;' "
    .. "PASSAGE_EMULATOR_PORT=%d %s bench/parallel_walk.lua %d %d",
    jit and "jit" or _VERSION:match("%d+%.%d+"), emulator.port(),
    jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"), USERS, LATENCY_MS)

emulator.reset()
local t0 = now_ms()
emulator.seed(APP, USERS, 42)
say("seeded %d users (%d pages of %d) in %.1f s", USERS, math.ceil(USERS / PAGE), PAGE,
    (now_ms() - t0) / 1000)

-- Warm up: connections, the emulator's list cache.
latency(0)
walk(16)

local KS = { 4, 8, 16 }
local cases = {
    { name = "cpu", latency_ms = 0, run = function() return math.max(walk(16), walk(32)) end },
    { name = "sequential", latency_ms = LATENCY_MS, run = function() return walk(1) end },
    { name = "peer", latency_ms = LATENCY_MS, run = peer_walk },
}
for _, k in ipairs(KS) do
    cases[#cases + 1] = { name = k, latency_ms = LATENCY_MS, run = function() return walk(k) end }
end
local best = rounds(cases)
local cpu, seq = best.cpu, best.sequential

say("cpu bound C (no added latency, K=16 or 32): %.0f pages/s", cpu)
say("%-10s %6.0f pages/s   latency-only ceiling 1/L %.0f   live heap +%.0f KB", "sequential",
    seq, 1000 / LATENCY_MS, live_heap(1))
say("%-10s %6.0f pages/s   (LuaSocket + lua-cjson, a page at a time)", "peer", best.peer)
local at_target
for _, k in ipairs(KS) do
    local rate = best[k]
    local latency_model = math.min(k * 1000 / LATENCY_MS, cpu)
    local seq_model = math.min(k * seq, cpu)
    say("%-10s %6.0f pages/s   %4.1fx sequential   %4.1fx peer   %.2f of min(K/L, C) = %.0f   "
        .. "%.2f of min(K*S, C) = %.0f   live heap +%.0f KB", "K=" .. k, rate, rate / seq,
        rate / best.peer, rate / latency_model, latency_model, rate / seq_model, seq_model,
        live_heap(k))
    if k == TARGET_K then
        at_target = { speedup = rate / seq, ratio = rate / latency_model }
    end
end
say("target at K=%d: >= %dx sequential: %.1fx (%s); >= %.1f of min(K/L, C): %.2f (%s)", TARGET_K,
    TARGET_SPEEDUP, at_target.speedup, at_target.speedup >= TARGET_SPEEDUP and "met" or "NOT met",
    TARGET_RATIO, at_target.ratio, at_target.ratio >= TARGET_RATIO and "met" or "NOT met")

-- Bulk get_user.
latency(0)
local ids = {}
for _, u in ipairs(assert(client:list_paginated_users(APP, { limit = PAGE })).users) do
    ids[#ids + 1] = u.id
end
bulk_gets(ids, 1000, BULK_N) -- warm up
local function bulk_run()
    return bulk_gets(ids, BULK_CALLS, BULK_N)
end
local user_url = emulator.url() .. "/apps/" .. APP .. "/users/" .. ids[1]
local bulk = rounds {
    { name = "cpu", latency_ms = 0, run = bulk_run },
    { name = "sequential", latency_ms = LATENCY_MS, run = function() return sequential_gets(ids, 500) end },
    { name = "bulk", latency_ms = LATENCY_MS, run = bulk_run },
    { name = "wrk", latency_ms = LATENCY_MS, run = function() return wrk_rate(user_url, BULK_N) or 0 end },
}
local bulk_latency_model = math.min(BULK_N * 1000 / LATENCY_MS, bulk.cpu)
local bulk_seq_model = math.min(BULK_N * bulk.sequential, bulk.cpu)
say("bulk cpu bound C (no added latency, N=%d): %.0f calls/s", BULK_N, bulk.cpu)
say("bulk get_user x%d, N=%d: %.0f calls/s   sequential %.0f calls/s (%.1fx)   "
    .. "%.2f of min(N/L, C) = %.0f   %.2f of min(N*S, C) = %.0f", BULK_CALLS, BULK_N, bulk.bulk,
    bulk.sequential, bulk.bulk / bulk.sequential, bulk.bulk / bulk_latency_model,
    bulk_latency_model, bulk.bulk / bulk_seq_model, bulk_seq_model)
if bulk.wrk > 0 then
    say("wrk -c%d, GET one user at the same latency: %.0f requests/s; bulk reaches %.2f of it",
        BULK_N, bulk.wrk, bulk.bulk / bulk.wrk)
end

latency(0)
client:close()
emulator.stop_if_started()
