-- A host with its own reactor: instead of letting the client poll, the host
-- waits on the client's sockets and timer together with its own events.
-- Here the reactor is luasocket's socket.select; an engine's epoll loop is
-- driven the same way (luv and cqueues have adapters: passage.loop.luv,
-- passage.loop.cqueues). The protocol, as the reference's
-- Client:socket_changes states it:
--
--   1. after every call into the client, read client:socket_changes() and
--      watch / unwatch those fds (events "in", "out", "inout"; "remove"
--      means stop watching);
--   2. wait until a watched fd is ready or client:timer_ms() has passed
--      (-1: no timer wanted; 0: come back at once);
--   3. call client:socket_action(fd, "in" | "out" | "inout") for each ready
--      fd, and client:socket_action() when the timer is due; each returns
--      the request handles that finished.
--
-- The fds are the client's own duplicates, closed only after their
-- "remove" was read, so no step can meet a closed descriptor. Blocking
-- calls and client:poll() may be mixed in.
--
-- Run against the emulator (make emulator), or the real API with
-- PASSAGE_BASE_URL, PASSAGE_API_KEY and PASSAGE_APP_ID:
--   LUA_PATH='lua/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 examples/reactor.lua [count]
local socket = require "socket"
local users = require "passage.users"

local port = os.getenv("PASSAGE_EMULATOR_PORT") or "8787"
local app_id = os.getenv("PASSAGE_APP_ID") or "test_app"
local count = tonumber(arg and arg[1]) or 40
local client = users.new {
    api_key = os.getenv("PASSAGE_API_KEY") or "test_key",
    base_url = os.getenv("PASSAGE_BASE_URL") or ("http://127.0.0.1:" .. port .. "/v1"),
    timeout_ms = 10000,
}

-- The watched sockets: fd -> { events = ..., object = ... }. socket.select
-- takes any table with a getfd() method, so a raw fd is wrapped once.
local watched = {}

local function update_watches()
    for _, change in ipairs(client:socket_changes()) do
        if change.events == "remove" then
            watched[change.fd] = nil
        else
            local w = watched[change.fd]
            if not w then
                local fd = change.fd
                w = { object = { fd = fd, getfd = function() return fd end } }
                watched[fd] = w
            end
            w.events = change.events
        end
    end
end

local stats = { wakeups = 0, host_ticks = 0 }

-- Runs the reactor until every started call has finished; on_done(handle)
-- is called for each. The host's own periodic work (a tick every 100 ms)
-- shares the same loop.
local function run(on_done)
    local next_tick = socket.gettime() + 0.1
    while client:pending() > 0 do
        update_watches()
        local readers, writers = {}, {}
        for _, w in pairs(watched) do
            if w.events == "in" or w.events == "inout" then
                readers[#readers + 1] = w.object
            end
            if w.events == "out" or w.events == "inout" then
                writers[#writers + 1] = w.object
            end
        end
        local wait = next_tick - socket.gettime()
        local timer = client:timer_ms()
        if timer >= 0 and timer / 1000 < wait then
            wait = timer / 1000
        end
        local readable, writable = socket.select(readers, writers, math.max(0, wait))
        stats.wakeups = stats.wakeups + 1
        local ready = {}
        for _, o in ipairs(readable) do
            ready[o.fd] = "in"
        end
        for _, o in ipairs(writable) do
            ready[o.fd] = ready[o.fd] and "inout" or "out"
        end
        local finished = {}
        for fd, events in pairs(ready) do
            for _, h in ipairs(client:socket_action(fd, events)) do
                finished[#finished + 1] = h
            end
        end
        if client:timer_ms() == 0 then
            for _, h in ipairs(client:socket_action()) do
                finished[#finished + 1] = h
            end
        end
        for _, h in ipairs(finished) do
            on_done(h)
        end
        if socket.gettime() >= next_tick then
            stats.host_ticks = stats.host_ticks + 1 -- the host's own work goes here
            next_tick = next_tick + 0.1
        end
    end
end

local function check(value, err)
    if value == nil then
        io.stderr:write("failed: ", tostring(err), "\n")
        os.exit(1)
    end
    return value
end

local t0 = socket.gettime()

-- 1. Create `count` users at once.
local created = {}
local run_id = string.format("%x%x", os.time(), math.random(0, 0xffff))
for i = 1, count do
    local h = client:start("create_user", app_id,
        { email = string.format("reactor.%s.%d@example.com", run_id, i) })
    created[h] = i
end
local ids = {}
run(function(h)
    ids[created[h]] = check(h:result()).id
end)

-- 2. Fetch them all back, then delete them, each batch concurrently.
local fetched = 0
for i = 1, count do
    client:start("get_user", app_id, ids[i])
end
run(function(h)
    local user = check(h:result())
    assert(user.email:find("reactor." .. run_id, 1, true))
    fetched = fetched + 1
end)
for i = 1, count do
    client:start("delete_user", app_id, ids[i])
end
local deleted = 0
run(function(h)
    check(h:result())
    deleted = deleted + 1
end)

print(string.format("reactor: created %d, fetched %d, deleted %d users in %.0f ms "
    .. "(%d wakeups, %d host ticks, %d sockets still watched)",
    count, fetched, deleted, (socket.gettime() - t0) * 1000, stats.wakeups, stats.host_ticks,
    (function()
        local n = 0
        for _ in pairs(watched) do
            n = n + 1
        end
        return n
    end)()))
client:close()
