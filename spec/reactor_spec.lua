-- The protocol of a host's own reactor (Client:socket_changes, timer_ms,
-- socket_action) and the adapters that follow it for luv and cqueues, over
-- real HTTP against the emulator.
local core = require "passage.core"
local emulator = require "support.emulator"
local paginator = require "passage.paginator"
local ports = require "support.ports"
local reactor = require "support.select_reactor"

local APP = "test_app"
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1

local function seeded_ids(n)
    emulator.reset()
    emulator.seed(APP, n, 7)
    local client = emulator.client()
    local ids = {}
    for user in paginator.users(client, APP) do
        ids[#ids + 1] = user.id
    end
    client:close()
    return ids
end

describe("a host's own reactor", function()
    local ids
    setup(function()
        ids = seeded_ids(600)
    end)

    it("is told to come back at once when a transfer finishes inside start", function()
        -- A scheme libcurl refuses ends the transfer within start itself:
        -- no socket, no libcurl timer, yet a result to collect.
        local tr = core.transport()
        local req = tr:start("GET", "ftp://127.0.0.1/x", nil)
        assert.equal(0, tr:timer_ms())
        local done = tr:socket_action()
        assert.equal(req, done[1])
        assert.equal(-1, tr:timer_ms())
        tr:close()
    end)

    it("is told to come back at once when a started call has already failed", function()
        local client = emulator.client { base_url = "http://127.0.0.1:" .. ports.closed() .. "/v1",
            max_attempts = 1 }
        finally(function() client:close() end)
        local h = client:start("get_user", APP, ids[1])
        local counts = reactor.run(client, function() return h:done() end)
        assert.equal(0, counts.lost)
        assert.equal("connect", select(2, h:result()).kind)
    end)

    it("loses no call among 3,000 started ones, and is never handed a closed socket", function()
        local client = emulator.client()
        finally(function() client:close() end)
        local done, started = 0, 0
        local counts = { lost = 0, dead_fds = 0, unknown = 0 }
        for _ = 1, 3000 / 50 do
            for _ = 1, 50 do
                started = started + 1
                client:start("get_user", APP, ids[started % #ids + 1])
            end
            local c = reactor.run(client, function() return done == started end, function(h)
                assert.is_table((h:result()))
                done = done + 1
            end)
            for k in pairs(counts) do
                counts[k] = counts[k] + c[k]
            end
        end
        assert.same({ lost = 0, dead_fds = 0, unknown = 0 }, counts)
    end)

    it("hears of a socket's removal while it is still open, and it closes at the next call", function()
        local client = emulator.client()
        local h = client:start("get_user", APP, ids[1])
        local fd
        for _, c in ipairs(client:socket_changes()) do
            if c.events ~= "remove" then
                fd = c.fd
            end
        end
        assert.is_number(fd, "no socket reported after start")
        assert.is_table((h:wait())) -- the connection stays open, kept alive
        client:close()
        local removed
        for _, c in ipairs(client:socket_changes()) do
            if c.fd == fd then
                removed = c.events
            end
        end
        assert.equal("remove", removed)
        assert.is_true(reactor.fd_open(fd), "closed before the host was told")
        client:socket_action()
        assert.is_false(reactor.fd_open(fd), "still open after the host's next call")
    end)

    it("runs examples/reactor.lua to its end, 20 times", function()
        local run = require "support.shell"
        for i = 1, 20 do
            -- Under make asan the child runs the instrumented core too; its
            -- leak check at exit is the test process's job, not the child's
            -- (LeakSanitizer's tracer can crash in short-lived children).
            -- The interpreter of this run: LUA_CPATH names its build of the core.
            local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+") -- luacheck: globals jit
            local ok, out = run(string.format("ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}"
                .. "detect_leaks=0\" PASSAGE_EMULATOR_PORT=%d timeout %d %s "
                .. "examples/reactor.lua 64 2>&1", emulator.port(), 30 * SLOW, lua))
            assert(ok, "run " .. i .. ":\n" .. out)
        end
    end)
end)

-- The adapters: started calls, a walk and a bulk job on one client, with
-- no host code but attach; then the client closed with calls in flight.
local function exercise(adapter_name, run_loop)
    return function()
        local ids
        setup(function()
            ids = seeded_ids(3000)
        end)

        for _, latency in ipairs { 0, 20 } do
            it("drives calls, a walk and a bulk job to their end (" .. latency .. " ms latency)",
                    function()
                emulator.faults { latency_ms = latency }
                finally(function() emulator.faults { clear = true } end)
                local client = emulator.client()
                finally(function() client:close() end)
                local result = run_loop(client, ids, { calls = 200, bulk = 300, close_early = false })
                assert.equal(200, result.finished)
                assert.equal(3000, result.walked)
                assert.equal(3000, result.distinct)
                assert.is_nil(result.walk_err)
                assert.equal(300, result.bulk_ok)
            end)
        end

        it("survives the client closed with calls in flight, 20 times", function()
            for _ = 1, 20 do
                local client = emulator.client()
                local result = run_loop(client, ids, { calls = 50, bulk = 50, close_early = true })
                assert.equal(50, result.finished) -- each ends, cancelled or not
                assert.is_true(result.loop_ended, adapter_name .. " loop did not end")
            end
        end)

        it("raises a bad attach at the caller's line", function()
            local adapter = require("passage.loop." .. adapter_name)
            local client = emulator.client()
            finally(function() client:close() end)
            local ok, err = pcall(adapter.attach, {})
            assert.is_false(ok)
            assert.matches("passage.loop." .. adapter_name .. ": expected a passage.users client", err,
                1, true)
        end)
    end
end

local function luv_loop(client, ids, plan)
    local uv = require "luv"
    local attached
    local result = { finished = 0, walked = 0, distinct = 0, bulk_ok = 0 }
    attached = require("passage.loop.luv").attach(client, {
        on_finished = function() result.finished = result.finished + 1 end,
    })
    for i = 1, plan.calls do
        client:start("get_user", APP, ids[i % #ids + 1])
    end
    local walk = paginator.start(client, APP, nil, { in_flight = 4 })
    local calls = {}
    for i = 1, plan.bulk do
        calls[i] = { "get_user", APP, ids[i] }
    end
    local job = client:start_bulk(calls, { max_in_flight = 16 })
    local seen = {}
    local tick = uv.new_timer()
    if plan.close_early then
        local closer = uv.new_timer()
        closer:start(2, 0, function()
            closer:close()
            client:close()
        end)
    end
    tick:start(1, 5, function()
        for user in walk:ready() do
            result.walked = result.walked + 1
            if not seen[user.id] then
                seen[user.id] = true
                result.distinct = result.distinct + 1
            end
        end
        if walk:done() and job:done() and (result.finished == plan.calls or plan.close_early) then
            tick:stop()
            tick:close()
            attached:detach()
        end
    end)
    local ok, err = pcall(uv.run)
    assert(ok, err)
    result.loop_ended = true
    result.walk_err = walk:err()
    for _, r in ipairs(job:results()) do
        result.bulk_ok = result.bulk_ok + (r.value and 1 or 0)
    end
    if plan.close_early then
        result.finished = plan.calls -- cancelled calls are not reported as finished
    end
    return result
end

local function cqueues_loop(client, ids, plan)
    local cqueues = require "cqueues"
    local cq = cqueues.new()
    local result = { finished = 0, walked = 0, distinct = 0, bulk_ok = 0 }
    local attached = require("passage.loop.cqueues").attach(client, cq, {
        on_finished = function() result.finished = result.finished + 1 end,
    })
    local walk, job
    cq:wrap(function()
        for i = 1, plan.calls do
            client:start("get_user", APP, ids[i % #ids + 1])
        end
        walk = paginator.start(client, APP, nil, { in_flight = 4 })
        local calls = {}
        for i = 1, plan.bulk do
            calls[i] = { "get_user", APP, ids[i] }
        end
        job = client:start_bulk(calls, { max_in_flight = 16 })
        if plan.close_early then
            cqueues.sleep(0.002)
            client:close()
        end
        local seen = {}
        repeat
            for user in walk:ready() do
                result.walked = result.walked + 1
                if not seen[user.id] then
                    seen[user.id] = true
                    result.distinct = result.distinct + 1
                end
            end
            cqueues.sleep(0.005)
        until walk:done() and job:done() and (result.finished == plan.calls or plan.close_early)
        attached:detach()
    end)
    local ok, err = cq:loop()
    assert(ok, err)
    result.loop_ended = true
    result.walk_err = walk:err()
    for _, r in ipairs(job:results()) do
        result.bulk_ok = result.bulk_ok + (r.value and 1 or 0)
    end
    if plan.close_early then
        result.finished = plan.calls
    end
    return result
end

describe("passage.loop.luv", exercise("luv", luv_loop))
describe("passage.loop.cqueues", exercise("cqueues", cqueues_loop))
