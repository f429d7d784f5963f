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

describe("a host's own reactor", function()
    local ids
    setup(function()
        ids = emulator.seeded_ids(APP, 600, 7)
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
            ids = emulator.seeded_ids(APP, 3000, 7)
        end)

        for _, latency in ipairs { 0, 20 } do
            it("drives calls, a walk and a bulk job to their end (" .. latency .. " ms latency)",
                    function()
                emulator.faults { latency_ms = latency }
                finally(function() emulator.faults { clear = true } end)
                local client = emulator.client()
                finally(function() client:close() end)
                local result = run_loop(client, ids, { calls = 200, bulk = 300, close_early = false })
                assert.is_true(result.all_done)
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
                -- Every call ended, cancelled or not, and the loop ended
                -- without an error from its event library.
                assert.is_true(result.all_done)
                assert.is_true(result.bulk_ended)
                assert.is_true(result.finished <= 50)
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

-- What both loops run: plan.calls started get_user, a walk of every user
-- and a bulk job of plan.bulk calls, all on one attached client.
local function start_work(client, ids, plan)
    local work = { handles = {}, seen = {}, walked = 0, distinct = 0, finished = 0 }
    for i = 1, plan.calls do
        work.handles[i] = client:start("get_user", APP, ids[i % #ids + 1])
    end
    work.walk = paginator.start(client, APP, nil, { in_flight = 4 })
    local calls = {}
    for i = 1, plan.bulk do
        calls[i] = { "get_user", APP, ids[i] }
    end
    work.job = client:start_bulk(calls, { max_in_flight = 16 })
    return work
end

-- Takes the users the walk has ready.
local function read_walk(work)
    for user in work.walk:ready() do
        work.walked = work.walked + 1
        if not work.seen[user.id] then
            work.seen[user.id] = true
            work.distinct = work.distinct + 1
        end
    end
end

-- Whether everything started has ended, well or not.
local function all_done(work)
    for _, h in ipairs(work.handles) do
        if not h:done() then
            return false
        end
    end
    return work.walk:done() and work.job:done()
end

-- What the loop did, once it returned.
local function outcome(work, plan)
    local bulk_ok, bulk_ended = 0, 0
    for _, r in ipairs(work.job:results()) do
        bulk_ok = bulk_ok + (r.value and 1 or 0)
        bulk_ended = bulk_ended + ((r.value or r.err) and 1 or 0)
    end
    return { finished = work.finished, walked = work.walked, distinct = work.distinct,
        walk_err = work.walk:err(), bulk_ok = bulk_ok, all_done = all_done(work),
        bulk_ended = bulk_ended == plan.bulk }
end

local function luv_loop(client, ids, plan)
    local uv = require "luv"
    local work
    local attached = require("passage.loop.luv").attach(client, {
        on_finished = function() work.finished = work.finished + 1 end,
    })
    work = start_work(client, ids, plan)
    if plan.close_early then
        local closer = uv.new_timer()
        closer:start(2, 0, function()
            closer:close()
            client:close()
        end)
    end
    local tick = uv.new_timer()
    tick:start(1, 5, function()
        read_walk(work)
        if all_done(work) then
            tick:stop()
            tick:close()
            attached:detach()
        end
    end)
    local ok, err = pcall(uv.run) -- a loop that dies raises here
    assert(ok, err)
    return outcome(work, plan)
end

local function cqueues_loop(client, ids, plan)
    local cqueues = require "cqueues"
    local cq = cqueues.new()
    local work
    local attached = require("passage.loop.cqueues").attach(client, cq, {
        on_finished = function() work.finished = work.finished + 1 end,
    })
    cq:wrap(function()
        work = start_work(client, ids, plan)
        if plan.close_early then
            cqueues.sleep(0.002)
            client:close()
        end
        repeat
            read_walk(work)
            cqueues.sleep(0.005)
        until all_done(work)
        attached:detach()
    end)
    local ok, err = cq:loop() -- a loop that dies returns its error here
    assert(ok, err)
    return outcome(work, plan)
end

describe("passage.loop.luv", exercise("luv", luv_loop))
describe("passage.loop.cqueues", exercise("cqueues", cqueues_loop))
