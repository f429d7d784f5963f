-- A game loop that talks to the API without ever missing a frame.
--
-- Every 16 ms tick the loop does its own work, starts a few calls
-- (client:start), collects what finished with client:poll(0), which never
-- blocks, and sleeps out the rest of the tick inside client:poll(remaining),
-- so transfers keep moving while it sleeps. Nothing in the tick waits for
-- the network: a slow API shows up as calls finishing a few ticks later,
-- never as a late frame.
--
-- Against the emulator (make emulator) the example adds 50 ms of latency
-- to every API request for the duration of the run; against the real API
-- set PASSAGE_BASE_URL, PASSAGE_API_KEY and PASSAGE_APP_ID.
--   LUA_PATH='lua/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 examples/game_loop.lua [calls]
--
-- Loaded with the argument "--as-module" it returns { run = run } instead
-- (the spec uses that).
local core = require "passage.core"
local users = require "passage.users"

local now_ms = core.now_ms

local TICK_MS = 16

-- Runs the loop until `opts.calls` calls have finished. opts:
--   client, app_id, user_ids (a list to get_user from)
--   calls           how many API calls in all (default 300)
--   per_tick        calls started per tick at most (default 8)
--   max_in_flight   calls running at once at most (default 64)
--   work            function(tick) called every tick: the game's own work
-- Returns { ticks, lateness = { ms per tick }, ok, failed, max_in_flight,
--   library_ms = { ms spent in start + poll(0) per tick } }.
local function run(opts)
    local client, app_id, ids = opts.client, opts.app_id, opts.user_ids
    local total = opts.calls or 300
    local per_tick = opts.per_tick or 8
    local max_in_flight = opts.max_in_flight or 64
    local stats = { ticks = 0, lateness = {}, library_ms = {}, ok = 0, failed = 0,
        max_in_flight = 0 }
    local started, finished, in_flight = 0, 0, 0

    local function collect(handles)
        for _, h in ipairs(handles) do
            in_flight = in_flight - 1
            finished = finished + 1
            local value = h:result()
            if value then
                stats.ok = stats.ok + 1
            else
                stats.failed = stats.failed + 1
            end
        end
    end

    local due = now_ms()
    while finished < total do
        local t = now_ms()
        stats.ticks = stats.ticks + 1
        stats.lateness[stats.ticks] = t - due

        -- The game's own work for this frame.
        if opts.work then
            opts.work(stats.ticks)
        end

        -- Talk to the API: start a few calls, take what finished. No waiting.
        local lib0 = now_ms()
        local n = 0
        while n < per_tick and started < total and in_flight < max_in_flight do
            started = started + 1
            n = n + 1
            in_flight = in_flight + 1
            if started % 10 == 0 then
                client:start("list_paginated_users", app_id, { limit = 20, page = 1 })
            else
                client:start("get_user", app_id, ids[started % #ids + 1])
            end
        end
        if in_flight > stats.max_in_flight then
            stats.max_in_flight = in_flight
        end
        collect(client:poll(0))
        stats.library_ms[stats.ticks] = now_ms() - lib0

        -- Sleep out the frame inside poll, so transfers move meanwhile.
        due = due + TICK_MS
        local left = due - now_ms()
        while left > 0 do
            collect(client:poll(left))
            left = due - now_ms()
        end
    end
    return stats
end

local function percentile(list, p)
    local sorted = {}
    for i = 1, #list do
        sorted[i] = list[i]
    end
    table.sort(sorted)
    if #sorted == 0 then
        return 0
    end
    return sorted[math.max(1, math.ceil(#sorted * p))]
end

local M = { run = run, percentile = percentile, TICK_MS = TICK_MS }

if (...) == "--as-module" then
    return M
end

-- As a script ---------------------------------------------------------------
local calls = tonumber((...)) or 300
local base_url = os.getenv("PASSAGE_BASE_URL")
local port = os.getenv("PASSAGE_EMULATOR_PORT") or "8787"
local app_id = os.getenv("PASSAGE_APP_ID") or "test_app"
local client = users.new {
    api_key = os.getenv("PASSAGE_API_KEY") or "test_key",
    base_url = base_url or ("http://127.0.0.1:" .. port .. "/v1"),
    timeout_ms = 10000,
}

-- The emulator's admin API (not part of the Passage API) sets the latency.
local function emulator_latency(ms)
    if base_url then
        return
    end
    local http = require "socket.http"
    local ltn12 = require "ltn12"
    local body = string.format('{"latency_ms": %d}', ms)
    http.request {
        url = "http://127.0.0.1:" .. port .. "/__emulator/faults",
        method = "POST",
        headers = { ["content-type"] = "application/json", ["content-length"] = #body },
        source = ltn12.source.string(body),
    }
end

-- Some users to look up (a few are created when the app has none).
local page = assert(client:list_paginated_users(app_id, { limit = 50 }))
local ids = {}
for i, u in ipairs(page.users) do
    ids[i] = u.id
end
if #ids == 0 then
    for i = 1, 5 do
        ids[i] = assert(client:create_user(app_id, {
            email = string.format("game.loop.%d.%d@example.com", os.time(), i) })).id
    end
end

emulator_latency(50)
local t0 = now_ms()
local ok, stats = pcall(run, { client = client, app_id = app_id, user_ids = ids, calls = calls })
emulator_latency(0)
if not ok then
    error(stats, 0)
end
local max = 0
for _, l in ipairs(stats.lateness) do
    max = math.max(max, l)
end
print(string.format("game loop: %d calls (%d ok, %d failed, up to %d in flight) in %d ticks "
    .. "of %d ms, %.0f ms in all", stats.ok + stats.failed, stats.ok, stats.failed,
    stats.max_in_flight, stats.ticks, TICK_MS, now_ms() - t0))
print(string.format("tick lateness: median %.2f ms, p99 %.2f ms, max %.2f ms; "
    .. "library time per tick: median %.2f ms, max %.2f ms",
    percentile(stats.lateness, 0.5), percentile(stats.lateness, 0.99), max,
    percentile(stats.library_ms, 0.5), percentile(stats.library_ms, 1)))
client:close()
