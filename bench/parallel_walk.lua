-- Benchmark: the parallel walk and bulk calls against the emulator with
-- added latency. Prints rates and ratios; it asserts nothing.
--
--   make bench-parallel
--   (or: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
--        PASSAGE_EMULATOR_PORT=8787 lua5.4 bench/parallel_walk.lua [users] [latency_ms])
--
-- Model: one request at a time runs at the sequential rate S (it pays the
-- added latency L plus the client's and the emulator's work per request).
-- With K in flight the walk can at best go K times faster, and never faster
-- than the CPU allows (client decoding and the emulator rendering pages
-- share this machine). The CPU bound C is measured: the rate with no added
-- latency and K = 16. Model for K: min(K * S, C); the printed ratio is
-- measured / model (1.0: everything latency could cost is hidden). K / L
-- alone is also printed as the latency-only ceiling. Bulk calls use the
-- same model with N calls in flight.
local core = require "passage.core"
local users = require "passage.users"
local paginator = require "passage.paginator"
local emulator = require "support.emulator"

local now_ms = core.now_ms

local APP = "test_app"
local USERS = tonumber(arg and arg[1]) or 100000
local LATENCY_MS = tonumber(arg and arg[2]) or 5
local PAGE = 500
local BULK_CALLS = 10000
local BULK_N = 32

local interpreter = jit and jit.version or _VERSION -- luacheck: globals jit

local function say(fmt, ...)
    io.stdout:write(string.format(fmt, ...), "\n")
    io.stdout:flush()
end

emulator.ensure()
local client = users.new { api_key = "test_key", base_url = emulator.url(), timeout_ms = 60000 }

local function seed()
    emulator.reset()
    local t = now_ms()
    emulator.seed(APP, USERS, 42)
    say("seeded %d users (%d pages of %d) in %.1f s", USERS, math.ceil(USERS / PAGE), PAGE,
        (now_ms() - t) / 1000)
end

-- Walks every user with K pages in flight; returns pages/s.
local function walk_once(k)
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

-- The better of two walks: a single one is at the mercy of a GC cycle or
-- the emulator's housekeeping.
local function walk(k)
    return math.max(walk_once(k), walk_once(k))
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

local function bulk(ids, count, n)
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

say("passage-lua parallel walk benchmark (%s, emulator on port %d)", interpreter, emulator.port())
say("reproduce: LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/%s/?.so;;' "
    .. "PASSAGE_EMULATOR_PORT=%d %s bench/parallel_walk.lua %d %d",
    jit and "jit" or _VERSION:match("%d+%.%d+"), emulator.port(),
    jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+"), USERS, LATENCY_MS)
seed()

-- Warm up (connections, emulator list cache), then the CPU bound.
emulator.faults { latency_ms = 0 }
walk_once(16)
local cpu_bound = walk(16)
say("cpu bound (no added latency, K=16): %.0f pages/s", cpu_bound)

emulator.faults { latency_ms = LATENCY_MS }
local seq = walk(1)
say("%-12s %7.0f pages/s   (latency-only ceiling %.0f)   live heap +%.0f KB", "sequential", seq,
    1000 / LATENCY_MS, live_heap(1))
for _, k in ipairs { 4, 8, 16 } do
    local rate = walk(k)
    local model = math.min(k * seq, cpu_bound)
    say("%-12s %7.0f pages/s   %.1fx sequential   model %.0f   ratio to model %.2f"
        .. "   (K/L %.0f)   live heap +%.0f KB", "K=" .. k, rate, rate / seq, model, rate / model,
        k * 1000 / LATENCY_MS, live_heap(k))
end

-- Bulk get_user.
emulator.faults { latency_ms = 0 }
local ids = {}
for _, u in ipairs(assert(client:list_paginated_users(APP, { limit = PAGE })).users) do
    ids[#ids + 1] = u.id
end
bulk(ids, 1000, BULK_N) -- warm up
local bulk_cpu = math.max(bulk(ids, BULK_CALLS, BULK_N), bulk(ids, BULK_CALLS, BULK_N))
say("bulk cpu bound (no added latency, N=%d): %.0f calls/s", BULK_N, bulk_cpu)
emulator.faults { latency_ms = LATENCY_MS }
local bulk_seq = sequential_gets(ids, 500)
local bulk_rate = math.max(bulk(ids, BULK_CALLS, BULK_N), bulk(ids, BULK_CALLS, BULK_N))
local bulk_model = math.min(BULK_N * bulk_seq, bulk_cpu)
say("bulk get_user x%d, N=%d: %.0f calls/s   sequential %.0f calls/s (%.1fx)   model %.0f   "
    .. "ratio to model %.2f", BULK_CALLS, BULK_N, bulk_rate, bulk_seq, bulk_rate / bulk_seq,
    bulk_model, bulk_rate / bulk_model)

emulator.faults { latency_ms = 0 }
client:close()
emulator.stop_if_started()
