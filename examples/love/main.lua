-- A LÖVE 11 game that walks every user of a Passage app and makes get_user
-- calls for the first of them from love.update, without ever holding a
-- frame up.
--
-- Each frame it drives the client once with a decoding budget
-- (client:poll(0, { max_ms = M })), takes the users decoded so far
-- (walk:ready(), which never blocks), and checks whether the get_user job
-- is done. Nothing in a frame waits for the network.
--
-- It runs headless (conf.lua: no window); love.run below paces frames at
-- 60 a second, as vsync would with a window. When the work is done it
-- writes summary.json into PASSAGE_SUMMARY_DIR and quits: the spec
-- (spec/host_love_spec.lua) runs it so. README.md says how LÖVE finds the
-- library and lists the settings (environment variables).
local FRAME_S = 1 / 60

local function env(name)
    local v = os.getenv(name)
    if v == nil or v == "" then
        return nil
    end
    return v
end

local function number_env(name, default)
    return tonumber(env(name)) or default
end

-- The library: LÖVE's require looks in the game first, then in
-- package.path and package.cpath. PASSAGE_LUA_PATH and PASSAGE_LUA_CPATH
-- name the folders; without them, a passage-lua checkout around this game
-- (examples/love) is used: its lua/ and build/jit/ (make build
-- LUA_VERSION=jit). A rock installed for LuaJIT needs neither.
local function add_library_paths()
    local source = love.filesystem.getSource()
    local root = source:match("^(.*)/examples/love/?$")
    local path = env("PASSAGE_LUA_PATH") or (root and root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua")
    local cpath = env("PASSAGE_LUA_CPATH") or (root and root .. "/build/jit/?.so")
    if path then
        package.path = path .. ";" .. package.path
    end
    if cpath then
        package.cpath = cpath .. ";" .. package.cpath
    end
end

add_library_paths()
local users = require "passage.users"
local paginator = require "passage.paginator"

local SUMMARY_DIR = env("PASSAGE_SUMMARY_DIR")
local IDLE_FRAMES = number_env("PASSAGE_IDLE_FRAMES", 0)
local MAX_S = number_env("PASSAGE_MAX_SECONDS", 120)
local BUDGET_MS = number_env("PASSAGE_BUDGET_MS", 2)
local IN_FLIGHT = number_env("PASSAGE_IN_FLIGHT", 4)
local LIMIT = number_env("PASSAGE_LIMIT", 100)
local CALLS = number_env("PASSAGE_CALLS", 1000)
local APP_ID = env("PASSAGE_APP_ID")

-- Measuring, for the spec (not needed to use the library): the CPU time of
-- this thread, since on a busy machine wall time also counts the moments
-- another process had the core.
local function thread_cpu_clock()
    local ok, ffi = pcall(require, "ffi")
    if not ok then
        return nil
    end
    pcall(ffi.cdef, [[
        struct passage_walk_timespec { long tv_sec; long tv_nsec; };
        int clock_gettime(int clock_id, struct passage_walk_timespec *tp);
    ]])
    local ts = ffi.new("struct passage_walk_timespec")
    local CLOCK_THREAD_CPUTIME_ID = 3 -- Linux
    return function()
        ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
        return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
end
local cpu_ms = thread_cpu_clock()

-- Per frame: how late it started against the 60 Hz schedule, the
-- library's wall and CPU time, and the CPU time of its poll.
local summary = {
    host = "love", mode = IDLE_FRAMES > 0 and "idle" or "walk", step_ms = FRAME_S * 1000,
    budget_ms = BUDGET_MS, in_flight = IN_FLIGHT, limit = LIMIT,
    wall_late_ms = {}, library_ms = {}, library_cpu_ms = {}, poll_cpu_ms = {},
    user_ids = {}, calls = { asked = 0, ok = 0, failed = 0, wrong_user = 0 },
}

-- JSON for the summary: numbers, strings, booleans, arrays and objects.
local function to_json(v, out)
    local t = type(v)
    if t == "table" then
        if next(v) == nil or #v > 0 then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then out[#out + 1] = "," end
                to_json(v[i], out)
            end
            out[#out + 1] = "]"
        else
            out[#out + 1] = "{"
            local first = true
            for k, x in pairs(v) do
                if not first then out[#out + 1] = "," end
                first = false
                to_json(tostring(k), out)
                out[#out + 1] = ":"
                to_json(x, out)
            end
            out[#out + 1] = "}"
        end
    elseif t == "string" then
        out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
            return string.format("\\u%04x", c:byte())
        end) .. '"'
    elseif t == "number" then
        out[#out + 1] = string.format("%.17g", v)
    else
        out[#out + 1] = tostring(v)
    end
    return out
end

local finished = false
local function finish(err)
    finished = true
    summary.error = err and tostring(err) or nil
    if SUMMARY_DIR then
        local f = assert(io.open(SUMMARY_DIR .. "/summary.json", "w"))
        f:write(table.concat(to_json(summary, {})))
        f:close()
    end
    print(string.format("passage_walk %s: %d frames, %d users, %d/%d calls ok%s", summary.mode,
        #summary.wall_late_ms, #summary.user_ids, summary.calls.ok, summary.calls.asked,
        err and (", error: " .. tostring(err)) or ""))
    love.event.quit(err and 1 or 0)
end

local client, walk, job
local calls = {} -- { "get_user", app_id, id } for the first users handed out
local started, walk_end

function love.load()
    if IDLE_FRAMES == 0 then
        client = users.new {
            api_key = env("PASSAGE_API_KEY"),
            base_url = env("PASSAGE_BASE_URL"),
            timeout_ms = 10000,
        }
    end
end

local function count_calls()
    for i, r in ipairs(job:results()) do
        if r.err then
            summary.calls.failed = summary.calls.failed + 1
            summary.calls.first_error = summary.calls.first_error or tostring(r.err)
        elseif r.value.id ~= calls[i][3] then
            summary.calls.wrong_user = summary.calls.wrong_user + 1
        else
            summary.calls.ok = summary.calls.ok + 1
        end
    end
end

-- The library's part of a frame: never blocks.
local function library_frame()
    if not walk then
        walk = paginator.start(client, APP_ID, { limit = LIMIT }, { in_flight = IN_FLIGHT })
    end
    local cpu0 = cpu_ms and cpu_ms()
    client:poll(0, { max_ms = BUDGET_MS })
    if cpu0 then
        summary.poll_cpu_ms[#summary.poll_cpu_ms + 1] = cpu_ms() - cpu0
    end
    local ids = summary.user_ids
    for user in walk:ready() do
        ids[#ids + 1] = user.id
        if #calls < CALLS then
            calls[#calls + 1] = { "get_user", APP_ID, user.id }
        end
    end
    if not job and (#calls == CALLS or walk:done()) then
        summary.calls.asked = #calls
        job = client:start_bulk(calls, { max_in_flight = 32 })
    end
end

function love.update()
    if finished then
        return
    end
    local t = love.timer.getTime()
    started = started or t
    if IDLE_FRAMES > 0 then
        if #summary.wall_late_ms >= IDLE_FRAMES then
            finish()
        end
        return
    end

    local cpu0 = cpu_ms and cpu_ms()
    library_frame()
    summary.library_ms[#summary.library_ms + 1] = (love.timer.getTime() - t) * 1000
    if cpu0 then
        summary.library_cpu_ms[#summary.library_cpu_ms + 1] = cpu_ms() - cpu0
    end

    if walk:done() and not walk_end then
        walk_end = love.timer.getTime()
        summary.walk_ms = (walk_end - started) * 1000
        summary.users_per_s = #summary.user_ids / (walk_end - started)
        summary.walk_error = walk:err() and tostring(walk:err()) or nil
    end
    if walk:done() and job:done() then
        count_calls()
        client:close()
        finish(summary.walk_error)
    elseif love.timer.getTime() - started > MAX_S then
        client:close()
        finish("not done after " .. MAX_S .. " s")
    end
end

-- 60 frames a second: each frame handles events, runs love.update, and
-- sleeps out the rest of its 1/60 s. A frame that starts late is recorded;
-- a loop more than a frame behind starts afresh rather than rush to catch
-- up.
function love.run()
    love.load()
    love.timer.step()
    local due = love.timer.getTime()
    return function()
        local now = love.timer.getTime()
        summary.wall_late_ms[#summary.wall_late_ms + 1] = (now - due) * 1000
        love.event.pump()
        for name, a in love.event.poll() do
            if name == "quit" then
                return a or 0
            end
        end
        love.update(love.timer.step())
        due = due + FRAME_S
        now = love.timer.getTime()
        if now - due > FRAME_S then
            due = now
        elseif due > now then
            love.timer.sleep(due - now)
        end
    end
end
