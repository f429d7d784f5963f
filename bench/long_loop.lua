-- Memory over a long run: N get_user calls on one client (default 100,000),
-- one in 50 failing (404, 503 retried, a body that is not JSON), sampling
-- Lua memory (collectgarbage "count") and the process's resident set
-- (/proc/self/statm) every N/10 calls. Flat figures after warm-up mean
-- nothing accumulates per call.
--
--   make build && make emulator
--   LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
--     lua5.4 bench/long_loop.lua [calls]
local users = require "passage.users"
local emulator = require "support.emulator"
local core = require "passage.core"

local N = tonumber(arg[1]) or 100000
local STEP = N // 10
local APP = "test_app"

local function rss_kb()
    local f = io.open("/proc/self/statm")
    if not f then return 0 end
    f:read("*n") -- size
    local resident = f:read("*n")
    f:close()
    return resident * 4 -- KiB, with 4 KiB pages
end

emulator.ensure()
emulator.reset()
local client = users.new { api_key = "test_key", base_url = emulator.url(),
    retry_base_delay_ms = 1, retry_max_delay_ms = 2 }
local user = assert(client:create_user(APP, { email = "loop@example.com" }))

local errors_seen = { http = 0, decode = 0 }
local t0 = core.now_ms()
local last = t0
print(string.format("%8s %10s %10s %10s", "calls", "lua KiB", "rss KiB", "calls/s"))
for i = 1, N do
    local kind = i % 50
    if kind == 10 then
        emulator.faults { next = { { status = 503 } } } -- retried once, then succeeds
    elseif kind == 20 then
        emulator.faults { next = { { body = "not_json" } } }
    end
    local id = kind == 30 and "nobody" or user.id
    local got, err = client:get_user(APP, id)
    if err then
        errors_seen[err.kind] = (errors_seen[err.kind] or 0) + 1
    else
        assert(got.id == user.id)
    end
    if i % STEP == 0 then
        collectgarbage()
        local now = core.now_ms()
        print(string.format("%8d %10.0f %10d %10.0f", i, collectgarbage("count"), rss_kb(),
            STEP * 1000 / (now - last)))
        last = now
    end
end
client:close()
print(string.format("errors: %d http (404), %d decode (not JSON); %d calls retried after a 503",
    errors_seen.http, errors_seen.decode, N // 50))
emulator.stop_if_started()
