-- Peak Lua memory of a paginator walk against the emulator, for growing
-- numbers of users: it must stay flat (one page, plus prefetched pages).
--
--   make build
--   PASSAGE_EMULATOR_PORT=8791 LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' \
--     LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/paginator_memory.lua [sizes...]
--
-- Sizes default to 10000 50000 100000. The emulator is started on the port
-- when nothing answers there, and stopped at the end if it was started here.
-- For each size the app is reset and seeded, then walked with
-- paginator.users (limit 500) twice per in_flight setting:
--   raw   collectgarbage("count") sampled after every page and at the end,
--         with the collector left alone (what a script sees);
--   live  the same after a full collection at each sample (what is really
--         held: the walk's page(s) and remembered ids).
-- The raw figure rises and falls with the collector's cycles (garbage of
-- the pages already walked); the live figure is the bound that matters.
-- Figures are KiB above the heap measured just before the walk.
local emulator = require "support.emulator"
local users = require "passage.users"
local paginator = require "passage.paginator"
local socket = require "socket"

local APP = "test_app"
local LIMIT = 500

local sizes = {}
for i = 1, select("#", ...) do
    sizes[i] = assert(tonumber((select(i, ...))), "sizes are numbers")
end
if #sizes == 0 then
    sizes = { 10000, 50000, 100000 }
end

local function walk(client, in_flight, live)
    collectgarbage("collect")
    collectgarbage("collect")
    local base = collectgarbage("count")
    local peak = 0
    local function sample()
        if live then
            collectgarbage("collect")
        end
        local used = collectgarbage("count") - base
        if used > peak then
            peak = used
        end
    end
    local n, chars = 0, 0
    local t = socket.gettime()
    for user in paginator.users(client, APP, { limit = LIMIT }, { in_flight = in_flight }) do
        n = n + 1
        chars = chars + #user.email -- touch every user, as a loop body would
        if n % LIMIT == 0 then
            sample()
        end
    end
    sample()
    return n, peak, socket.gettime() - t, chars
end

emulator.ensure()
local client = users.new { api_key = "test_key", base_url = emulator.url(), timeout_ms = 60000 }
print(string.format("%s, limit %d; KiB of Lua heap above the start of each walk",
    _VERSION, LIMIT))
print(string.format("%9s %9s %12s %12s %9s %12s", "users", "in_flight", "peak raw",
    "peak live", "walk s", "users/s"))
local ok, err = pcall(function()
    for _, size in ipairs(sizes) do
        emulator.reset()
        local seeded = emulator.seed(APP, size, 1)
        assert(seeded.total_users == size, "seeding failed")
        -- The emulator builds its sorted list on the first request; do that
        -- outside the timed walks.
        assert(client:list_paginated_users(APP, { limit = 1 }))
        for _, k in ipairs { 1, 4 } do
            local n, raw, seconds = walk(client, k, false)
            assert(n == size, string.format("walked %d users of %d", n, size))
            local n2, live = walk(client, k, true)
            assert(n2 == size)
            print(string.format("%9d %9d %12.0f %12.0f %9.2f %12.0f", size, k, raw, live,
                seconds, size / seconds))
        end
    end
end)
client:close()
emulator.stop_if_started()
if not ok then
    error(err, 0)
end
