-- What the specs of the real hosts (spec/host_luanti_spec.lua,
-- spec/host_love_spec.lua) share: the LuaJIT build, an app of seeded users
-- and their ids (read over plain HTTP, not through the library), one
-- page's decode time on LuaJIT, a temporary folder, the hosts' summaries
-- and the checks made on them.
local assert = require "luassert"
local cjson = require "cjson"
local emulator = require "support.emulator"
local files = require "support.files"
local shell = require "support.shell"

local M = {}

M.USERS = 20000
M.CALLS = 1000

-- The checkout's root (the specs run from it).
function M.root()
    return (assert(shell.capture("pwd")):gsub("%s+$", ""))
end

-- Builds the core for LuaJIT (build/jit), what both hosts load.
function M.build_jit()
    local ok, out = shell("make -s build LUA_VERSION=jit")
    assert(ok, out)
end

-- The first of `names` found on PATH or as a path, or an error that says
-- which package provides it.
function M.find_program(names, package)
    for _, name in ipairs(names) do
        local err = os.tmpname() -- what the probe says on stderr, not wanted
        local out, code = shell.capture("command -v " .. name .. " 2>'" .. err .. "'")
        os.remove(err)
        if code == 0 and out ~= "" then
            return (out:gsub("%s+$", ""))
        end
    end
    error(names[1] .. " not found: install Debian's " .. package .. " (make deps)", 2)
end

-- A fresh temporary folder, removed by the returned function.
function M.temp_dir(name)
    local base = os.tmpname()
    os.remove(base)
    local dir = base .. "-" .. name
    local ok, out = shell("mkdir -p '" .. dir .. "/home'")
    assert(ok, out)
    return dir, function()
        shell("rm -rf '" .. dir .. "'")
    end
end

-- The emulator reset and a new app with `n` seeded users; returns the set
-- of its user ids, listed page by page over plain HTTP.
function M.seed_app(app_id, key, n)
    emulator.reset()
    emulator.add_app(app_id, key)
    emulator.seed(app_id, n, 18)
    local ids, count, page = {}, 0, 1
    while true do
        local status, body = emulator.request_json(emulator.url() .. "/apps/" .. app_id
            .. "/users?limit=500&page=" .. page, { headers = { authorization = "Bearer " .. key } })
        assert(status == 200, "listing the seeded users: " .. tostring(status))
        for _, u in ipairs(body.users) do
            assert(not ids[u.id], "the emulator listed " .. u.id .. " twice")
            ids[u.id] = true
            count = count + 1
        end
        if #body.users < 500 then
            break
        end
        page = page + 1
    end
    assert(count == n, "seeded " .. n .. " users, listed " .. count)
    return ids
end

local COSTS_SCRIPT = [[
local users = require "passage.users"
local base_url, key, app, limit, calls = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
local client = users.new { api_key = key, base_url = base_url }
local decode, ids = 0, {}
for i = 1, 20 do
    local h = client:start("list_paginated_users", app, { limit = limit, page = i })
    h:await_response()
    local cpu = os.clock()
    local page = assert(h:wait())
    decode = math.max(decode, (os.clock() - cpu) * 1000)
    for _, u in ipairs(page.users) do
        ids[#ids + 1] = u.id
    end
end
local start = 0
for _ = 1, 3 do
    local list = {}
    for i = 1, calls do
        list[i] = { "get_user", app, ids[(i - 1) % #ids + 1] }
    end
    local cpu = os.clock()
    local job = client:start_bulk(list, { max_in_flight = 32 })
    start = math.max(start, (os.clock() - cpu) * 1000)
    job:close()
end
client:close()
print(string.format("%.3f %.3f", decode, start))
]]

-- What the library's work in one step may cost on LuaJIT, as CPU time in
-- ms (the worst of a few, the collector's share and the JIT's warm-up
-- included): decoding one page of `limit` users as a walk does, and
-- starting a bulk job of `calls` get_user calls (each call is checked and
-- the first are put on the wire before start_bulk returns).
function M.step_costs_ms(app_id, key, limit, calls)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(COSTS_SCRIPT)
    f:close()
    local ok, out = shell(string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/jit/?.so;;' "
        .. "luajit %s %s %s %s %d %d", script, emulator.url(), key, app_id, limit, calls))
    os.remove(script)
    assert(ok, out)
    local decode, start = out:match("^(%S+) (%S+)")
    return tonumber(decode), tonumber(start)
end

-- The summary.json a host wrote into `dir`.
function M.read_summary(dir, host_output)
    local text = files.read(dir .. "/summary.json")
    assert(text, "the host wrote no summary; it said:\n" .. tostring(host_output))
    return cjson.decode(text)
end

-- A list from a summary (an empty JSON array may be written as null or {}).
local function list(v)
    return type(v) == "table" and v or {}
end
M.list = list

function M.percentile(values, p)
    local sorted = {}
    for i, v in ipairs(list(values)) do
        sorted[i] = v
    end
    table.sort(sorted)
    if #sorted == 0 then
        return 0
    end
    return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- The work was done: every seeded user seen exactly once, every get_user
-- call answered with the user asked for, no error.
function M.check_work(summary, expected_ids)
    assert.is_nil(summary.error, summary.error)
    assert.is_nil(summary.walk_error, summary.walk_error)
    local seen, n = {}, 0
    for _, id in ipairs(list(summary.user_ids)) do
        assert.is_nil(seen[id], "user seen twice: " .. id)
        assert.is_true(expected_ids[id] == true, "user not seeded: " .. id)
        seen[id] = true
        n = n + 1
    end
    assert.equal(M.USERS, n)
    local calls = summary.calls
    assert.equal(M.CALLS, calls.asked)
    assert.equal(0, calls.failed, calls.first_error)
    assert.equal(0, calls.wrong_user)
    assert.equal(M.CALLS, calls.ok)
end

-- The bounds of the library's CPU time in a step, from M and what one
-- page's decode and the start of the get_user job cost (step_costs_ms).
--   poll   its poll: M plus one page's decode (the budget is checked before
--          each decode) plus 1 ms for the step's I/O
--   step   the whole step: poll, plus the job's start in the step it
--          starts, plus 1 ms for handing out the users decoded (about
--          0.5 ms per 1,000)
--   worst  the worst step: twice M plus one page's decode, plus the job's
--          start. The collector's steps over the host's own heap land in
--          whatever code allocates, the library's poll too: in Luanti 1 of
--          about 40 polls takes up to 3 ms more than M plus a page.
function M.bounds(budget_ms, decode_ms, bulk_start_ms)
    local poll = budget_ms + decode_ms + 1
    return { poll = poll, step = poll + bulk_start_ms + 1,
        worst = 2 * (budget_ms + decode_ms) + bulk_start_ms }
end

-- The host was not held up:
--   - the library's CPU time: its poll within bounds.poll and the whole
--     step within bounds.step in 9 steps of 10, every step within
--     bounds.worst;
--   - the steps' lateness (lists named by `keys` in both summaries): no
--     worse than the idle run's by more than bounds.step at the median and
--     the 90th percentile (a step is late by at most the library's time in
--     the step before), nor at worst by more than bounds.worst + 10 ms
--     (scheduling noise of a shared machine).
-- A walk that blocks a step (150-220 ms for blocking pages) fails them all.
function M.check_steps(walk, idle, bounds, keys)
    local cpu, poll = list(walk.library_cpu_ms), list(walk.poll_cpu_ms)
    assert.is_true(#cpu > 0 and #cpu == #list(walk.library_ms) and #cpu == #poll,
        "a library time per step")
    local steps = {}
    for i, ms in ipairs(cpu) do
        steps[i] = string.format("%.2f (poll %.2f)", ms, poll[i])
    end
    steps = "\nper step: " .. table.concat(steps, ", ")
    for _, c in ipairs {
        { "poll's CPU time", poll, 0.9, bounds.poll },
        { "library CPU time", cpu, 0.9, bounds.step },
        { "library CPU time", cpu, 1, bounds.worst },
    } do
        local what, values, p, bound = c[1], c[2], c[3], c[4]
        assert.is_true(M.percentile(values, p) <= bound, string.format(
            "%s per step at p%d above %.2f ms: %s%s", what, p * 100, bound, M.describe(values), steps))
    end
    for _, key in ipairs(keys) do
        for _, p in ipairs { 0.5, 0.9, 1 } do
            local busy, calm = M.percentile(walk[key], p), M.percentile(idle[key], p)
            local allowed = calm + (p == 1 and bounds.worst + 10 or bounds.step)
            assert.is_true(busy <= allowed, string.format("%s at p%d: %.2f ms against %.2f idle",
                key, p * 100, busy, calm))
        end
    end
end

-- Measures a walk with `measure` (which runs the host and checks its work)
-- and checks its steps (check_steps). A shared machine now and then stalls
-- a process for tens of milliseconds: a CI run saw one Luanti step 94 ms
-- late while the library's time in it was 8 ms. A library that holds steps
-- up does so in every run, so a run failing only these timing checks is
-- measured once more, and that run must pass them. Returns the walk that
-- passed. `report` (print by default) is told why a first run failed.
function M.walk_not_holding_up(measure, idle, bounds, keys, report)
    local walk = measure()
    local ok, err = pcall(M.check_steps, walk, idle, bounds, keys)
    if not ok then
        (report or print)("\n  a step check failed, measuring once more: " .. tostring(err))
        walk = measure()
        M.check_steps(walk, idle, bounds, keys)
    end
    return walk
end

-- The checks would see a blocked step (the measure works): the same run
-- with one step `blocked_ms` longer, as a blocking walk's page makes it,
-- fails check_steps, whether only the library's time or only the host's
-- lateness shows it, and fails walk_not_holding_up when every run has it.
function M.check_steps_see_a_blocked_step(walk, idle, bounds, keys, blocked_ms)
    local function with_one_step_longer(names)
        local copy = {}
        for k, v in pairs(walk) do
            copy[k] = v
        end
        for _, name in ipairs(names) do
            local values = {}
            for i, ms in ipairs(list(walk[name])) do
                values[i] = ms
            end
            local middle = math.max(1, math.floor(#values / 2))
            values[middle] = (values[middle] or 0) + blocked_ms
            copy[name] = values
        end
        return copy
    end
    local blocked = with_one_step_longer { "library_cpu_ms" }
    assert.has_error(function()
        M.check_steps(blocked, idle, bounds, keys)
    end)
    -- and measuring once more does not hide a block that recurs
    assert.has_error(function()
        M.walk_not_holding_up(function()
            return blocked
        end, idle, bounds, keys, function() end)
    end)
    for _, key in ipairs(keys) do
        assert.has_error(function()
            M.check_steps(with_one_step_longer { key }, idle, bounds, keys)
        end)
    end
end

-- What each lateness key of a summary measures.
local LATENESS = { wall_late_ms = "wall clock", dtime_late_ms = "dtime" }

-- Prints what a measured walk did: its rate, the costs and bounds its
-- checks use (`setup`: budget_ms, limit, decode_ms, bulk_start_ms, bounds),
-- the library's time per step (`unit`: "step", "frame"), and the lateness
-- named by `keys`, against the idle run's.
function M.report(host, unit, walk, idle, setup, keys)
    local b = setup.bounds
    local lines = {
        string.format("\n  %s: %d users in %.0f ms (%.0f users/s), %d %ss of %.1f ms, M = %d ms;"
            .. " a %d-user page decodes in %.2f ms at worst, starting %d calls takes %.2f ms:"
            .. " bounds %.2f (poll), %.2f (step), %.2f ms (worst)", host, #list(walk.user_ids),
            walk.walk_ms, walk.users_per_s, #list(walk.library_ms), unit, walk.step_ms, setup.budget_ms,
            setup.limit, setup.decode_ms, M.CALLS, setup.bulk_start_ms, b.poll, b.step, b.worst),
        string.format("  library CPU per %s: %s", unit, M.describe(walk.library_cpu_ms)),
        string.format("  library wall per %s: %s", unit, M.describe(walk.library_ms)),
    }
    for _, key in ipairs(keys) do
        lines[#lines + 1] = string.format("  %s lateness (%s): walk %s; idle %s", unit, LATENESS[key],
            M.describe(walk[key]), M.describe(idle[key]))
    end
    print(table.concat(lines, "\n"))
end

-- "median 1.2, p90 3.4, max 5.6 ms"
function M.describe(values)
    return string.format("median %.2f, p90 %.2f, max %.2f ms over %d", M.percentile(values, 0.5),
        M.percentile(values, 0.9), M.percentile(values, 1), #list(values))
end

return M
