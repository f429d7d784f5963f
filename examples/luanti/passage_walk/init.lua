-- passage_walk: a Luanti (Minetest) mod that walks every user of a Passage
-- app and makes get_user calls for the first of them, from a globalstep,
-- without ever holding a server step up.
--
-- Each step it drives the client once with a decoding budget
-- (client:poll(0, { max_ms = M })), takes the users decoded so far
-- (walk:ready(), which never blocks), and checks whether the get_user job
-- is done. Nothing in a step waits for the network.
--
-- It runs under mod security: the library is loaded through the insecure
-- environment, which only mods listed in secure.trusted_mods get (README.md
-- says where the modules go and which minetest.conf lines it needs). When
-- the work is done it writes summary.json into passage_walk.summary_dir and
-- asks the server to shut down: the spec (spec/host_luanti_spec.lua) runs
-- it so; a real mod would keep running.
local MODNAME = minetest.get_current_modname()

local function setting(name)
    local v = minetest.settings:get(MODNAME .. "." .. name)
    if v == nil or v == "" then
        return nil
    end
    return v
end

local function number_setting(name, default)
    return tonumber(setting(name)) or default
end

-- 1. The insecure environment: granted at load time only, and only to a
-- mod named in secure.trusted_mods.
local ie = minetest.request_insecure_environment()
if not ie then
    error(MODNAME .. ": add " .. MODNAME .. " to secure.trusted_mods in minetest.conf (see README.md)")
end

-- 2. The library, through the insecure environment's require. A module
-- loaded by require runs with the running thread's globals: here the mod's
-- secured ones, where require itself is disabled, so the library's own
-- require calls would fail. The thread's globals are the insecure
-- environment while the modules load, and the mod's again right after.
local function load_library()
    local path, cpath = setting("lua_path"), setting("lua_cpath")
    if path then
        ie.package.path = path .. ";" .. ie.package.path
    end
    if cpath then
        ie.package.cpath = cpath .. ";" .. ie.package.cpath
    end
    local secured = ie.getfenv(0)
    ie.setfenv(0, ie)
    local ok, users, paginator = pcall(function()
        return ie.require("passage.users"), ie.require("passage.paginator")
    end)
    ie.setfenv(0, secured)
    if not ok then
        error(MODNAME .. ": cannot load passage-lua: " .. tostring(users)
            .. " (set " .. MODNAME .. ".lua_path and .lua_cpath, see README.md)")
    end
    return users, paginator
end

-- Measuring, for the spec (not needed to use the library): the CPU time of
-- this thread, since on a busy machine wall time also counts the moments
-- another process had the core. nil where LuaJIT's ffi is not available.
local function thread_cpu_clock()
    local ok, ffi = pcall(ie.require, "ffi")
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

local STEP_MS = (tonumber(minetest.settings:get("dedicated_server_step")) or 0.09) * 1000
local SUMMARY_DIR = setting("summary_dir")
local IDLE_STEPS = number_setting("idle_steps", 0)
local MAX_US = number_setting("max_seconds", 120) * 1e6
local BUDGET_MS = number_setting("budget_ms", 5)
local IN_FLIGHT = number_setting("in_flight", 8)
local LIMIT = number_setting("limit", 500)
local CALLS = number_setting("calls", 1000)
local APP_ID = setting("app_id")

local cpu_ms = thread_cpu_clock()
local now_us = minetest.get_us_time

-- Per step: lateness as the server sees it (dtime beyond the step length),
-- lateness by the wall clock (time since the last step beyond the step
-- length), the library's wall and CPU time, and the CPU time of its poll.
local summary = {
    host = "luanti", mode = IDLE_STEPS > 0 and "idle" or "walk", step_ms = STEP_MS,
    budget_ms = BUDGET_MS, in_flight = IN_FLIGHT, limit = LIMIT,
    dtime_late_ms = {}, wall_late_ms = {}, library_ms = {}, library_cpu_ms = {}, poll_cpu_ms = {},
    user_ids = {}, calls = { asked = 0, ok = 0, failed = 0, wrong_user = 0 },
}

local function write_summary()
    if not SUMMARY_DIR then
        return
    end
    local f = assert(ie.io.open(SUMMARY_DIR .. "/summary.json", "w"))
    f:write(assert(minetest.write_json(summary)))
    f:close()
end

local finished = false
local function finish(err)
    finished = true
    summary.error = err and tostring(err) or nil
    write_summary()
    minetest.log("action", string.format("[%s] %s: %d steps, %d users, %d/%d calls ok%s", MODNAME,
        summary.mode, #summary.wall_late_ms, #summary.user_ids, summary.calls.ok,
        summary.calls.asked, err and (", error: " .. tostring(err)) or ""))
    if SUMMARY_DIR then
        minetest.request_shutdown(MODNAME .. " done", false, 0)
    end
end

local users, paginator, client, walk, job
local calls = {} -- { "get_user", app_id, id } for the first users handed out
local started_us, walk_end_us, last_step_us

if IDLE_STEPS == 0 then
    users, paginator = load_library()
    client = users.new {
        api_key = setting("api_key") or ie.os.getenv("PASSAGE_API_KEY"),
        base_url = setting("base_url"),
        timeout_ms = 10000,
    }
end

-- The get_user job's results, checked against the ids asked for.
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

-- The library's part of a step: never blocks.
local function library_step()
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

minetest.register_globalstep(function(dtime)
    if finished then
        return
    end
    local t = now_us()
    started_us = started_us or t
    summary.dtime_late_ms[#summary.dtime_late_ms + 1] = dtime * 1000 - STEP_MS
    if last_step_us then
        summary.wall_late_ms[#summary.wall_late_ms + 1] = (t - last_step_us) / 1000 - STEP_MS
    end
    last_step_us = t

    if IDLE_STEPS > 0 then
        if #summary.wall_late_ms >= IDLE_STEPS then
            finish()
        end
        return
    end

    local cpu0 = cpu_ms and cpu_ms()
    library_step()
    summary.library_ms[#summary.library_ms + 1] = (now_us() - t) / 1000
    if cpu0 then
        summary.library_cpu_ms[#summary.library_cpu_ms + 1] = cpu_ms() - cpu0
    end

    if walk:done() and not walk_end_us then
        walk_end_us = now_us()
        summary.walk_ms = (walk_end_us - started_us) / 1000
        summary.users_per_s = #summary.user_ids / (summary.walk_ms / 1000)
        summary.walk_error = walk:err() and tostring(walk:err()) or nil
    end
    if walk:done() and job:done() then
        count_calls()
        client:close()
        finish(summary.walk_error)
    elseif now_us() - started_us > MAX_US then
        client:close()
        finish("not done after " .. MAX_US / 1e6 .. " s")
    end
end)
