-- Walks, bulk jobs and decoding budgets that never block the host, over
-- real HTTP against the emulator.
local emulator = require "support.emulator"
local paginator = require "passage.paginator"

local APP = "test_app"
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1

-- Drives the client until done() (polling with the budget), collecting
-- what the step gives; returns the number of polls.
-- Drives the client until done() (polling with the budget), calling
-- step() after each poll; returns the handles the polls handed out.
local function drive(client, done, step, max_ms)
    local handed = {}
    local limit = os.time() + 30 * SLOW
    while not done() do
        for _, h in ipairs(client:poll(5, max_ms and { max_ms = max_ms } or nil)) do
            handed[#handed + 1] = h
        end
        if step then
            step()
        end
        assert(os.time() < limit, "the walk or job did not end")
    end
    return handed
end

describe("a walk that never blocks", function()
    local client, ids
    setup(function()
        ids = emulator.seeded_ids(APP, 2345, 11)
    end)
    before_each(function()
        client = emulator.client()
    end)
    after_each(function()
        client:close()
    end)

    for _, k in ipairs { 1, 4 } do
        it("hands out every user once, in the blocking walk's order (in_flight " .. k .. ")",
                function()
            local walk = paginator.start(client, APP, { limit = 100 }, { in_flight = k })
            local got = {}
            for user in walk:ready() do -- nothing is decoded before the client is driven
                got[#got + 1] = user.id
            end
            assert.equal(0, #got)
            assert.is_false(walk:done())
            drive(client, function() return walk:done() end, function()
                for user in walk:ready() do
                    got[#got + 1] = user.id
                end
            end)
            assert.is_nil(walk:err())
            assert.same(ids, got)
        end)
    end

    it("keeps its window pinned while users are created during the walk", function()
        local walk = paginator.start(client, APP, { limit = 200 }, { in_flight = 2 })
        local n, created = 0, nil
        drive(client, function() return walk:done() end, function()
            for user in walk:ready() do
                n = n + 1
                assert.is_true(created == nil or created[user.id] == nil, "a new user was walked")
                if not created then
                    -- Past the pinned window's second: outside the window.
                    require("socket").sleep(1.1)
                    created = {}
                    for i = 1, 5 do
                        local u = assert(client:create_user(APP, { email = "late" .. i .. "@example.com" }))
                        created[u.id] = true
                    end
                end
            end
        end)
        assert.equal(#ids, n)
        for id in pairs(created) do
            assert(client:delete_user(APP, id))
        end
    end)

    it("checks its filters at the caller's line", function()
        local ok, err = pcall(function() paginator.start(client, APP, { status = "banned" }) end)
        assert.is_false(ok)
        assert.matches("nonblocking_spec.lua:%d+: passage.paginator: filter status", err)
        ok, err = pcall(function() paginator.start(client, "", nil) end)
        assert.is_false(ok)
        assert.matches("nonblocking_spec.lua:%d+: passage.paginator: app_id", err)
    end)

    it("tells progress as pages are handed out", function()
        local seen = {}
        local walk = paginator.start(client, APP, { limit = 500 }, { in_flight = 2,
            progress = function(p) seen[#seen + 1] = p.users end })
        drive(client, function() return walk:done() end, function()
            for _ in walk:ready() do end
        end)
        assert.equal(math.ceil(#ids / 500), #seen)
        assert.equal(#ids, seen[#seen])
    end)

    it("ends with a cancelled err when the client closes, wherever the close comes from", function()
        -- From the host's step, while pages are in flight.
        local walk = paginator.start(client, APP, { limit = 100 }, { in_flight = 4 })
        client:poll(50)
        client:close()
        for _ in walk:ready() do end
        assert.is_true(walk:done())
        assert.equal("cancelled", walk:err().kind)
        -- From the loop body of a blocking walk: the err table, not a string.
        local c2 = emulator.client()
        local ok, err = pcall(function()
            for _ in paginator.users(c2, APP, { limit = 100 }, { in_flight = 2 }) do
                c2:close()
            end
        end)
        assert.is_false(ok)
        assert.equal("cancelled", err.kind)
        -- From the progress hook: collect returns nil, err.
        local c3 = emulator.client()
        local all, err3 = paginator.collect(c3, APP, { limit = 100 }, {
            progress = function() c3:close() end })
        assert.is_nil(all)
        assert.equal("cancelled", err3.kind)
        -- From another coroutine, between two pages.
        local c4 = emulator.client()
        local co = coroutine.wrap(function()
            for _ in paginator.users(c4, APP, { limit = 100 }) do
                coroutine.yield()
            end
        end)
        co()
        c4:close()
        local ok4, err4 = pcall(function()
            for _ = 1, 200 do co() end
        end)
        assert.is_false(ok4)
        assert.equal("cancelled", err4.kind)
    end)

    it("refuses to start on a closed client, as the client's methods do", function()
        client:close()
        local ok, err = pcall(function() paginator.start(client, APP) end)
        assert.is_false(ok)
        assert.matches("nonblocking_spec.lua:%d+: passage.paginator: walk on a closed client", err)
    end)
end)

describe("a bulk job that never blocks", function()
    local client, ids
    setup(function()
        ids = emulator.seeded_ids(APP, 60, 5)
    end)
    before_each(function()
        client = emulator.client()
    end)
    after_each(function()
        emulator.faults { clear = true }
        client:close()
    end)

    it("returns at once and gives every result in input order", function()
        local calls = {}
        for i, id in ipairs(ids) do
            calls[i] = (i % 10 == 0) and { "get_user", APP, "missing-" .. i } or { "get_user", APP, id }
        end
        emulator.faults { latency_ms = 20 }
        local job = client:start_bulk(calls, { max_in_flight = 8 })
        assert.is_false(job:done())
        assert.is_nil(job:results())
        assert.same({ done = 0, failed = 0, total = #calls }, job:progress())
        drive(client, function() return job:done() end)
        local results = job:results()
        for i, r in ipairs(results) do
            if i % 10 == 0 then
                assert.equal(404, r.err.status)
            else
                assert.equal(ids[i], r.value.id)
            end
        end
        assert.same({ done = #calls, failed = math.floor(#calls / 10), total = #calls }, job:progress())
    end)

    it("keeps its calls out of the host's poll", function()
        local calls = {}
        for i = 1, 10 do
            calls[i] = { "get_user", APP, ids[i] }
        end
        local h = client:start("get_user", APP, ids[1])
        local job = client:start_bulk(calls)
        local handed = drive(client, function() return job:done() and h:done() end)
        assert.equal(1, #handed)
        assert.equal(h, handed[1])
    end)

    it("cancels what runs and never sends the rest when closed", function()
        local calls = {}
        for i = 1, 40 do
            calls[i] = { "get_user", APP, ids[i] }
        end
        emulator.faults { latency_ms = 200 }
        emulator.reset_stats()
        local job = client:start_bulk(calls, { max_in_flight = 4 })
        job:close()
        assert.is_true(job:done())
        local results = job:results()
        assert.equal(40, #results)
        for _, r in ipairs(results) do
            assert.equal("cancelled", r.err.kind)
        end
        assert.is_true(emulator.stats().total <= 4 + 1) -- the stats call itself
    end)

    it("raises the progress hook's error from results, as it was", function()
        local calls = {}
        for i = 1, 20 do
            calls[i] = { "get_user", APP, ids[i] }
        end
        local job = client:start_bulk(calls, { max_in_flight = 2,
            progress = function(p) if p.done == 3 then error({ mine = true }) end end })
        drive(client, function() return job:done() end)
        local ok, err = pcall(job.results, job)
        assert.is_false(ok)
        assert.is_true(err.mine)
        assert.equal(0, client:pending())
    end)
end)

describe("a decoding budget", function()
    local client
    setup(function()
        emulator.reset()
        emulator.seed(APP, 4000, 3)
    end)
    before_each(function()
        client = emulator.client()
    end)
    after_each(function()
        client:close()
    end)

    -- Starts n list calls of 500 users and waits until every answer is in
    -- (as bytes: await_response decodes nothing).
    local function answered(n)
        local hs = {}
        for i = 1, n do
            hs[i] = client:start("list_paginated_users", APP, { limit = 500, page = i })
        end
        for i = 1, n do
            hs[i]:await_response()
        end
        return hs
    end

    it("settles one response per poll when it is spent, and every one without it", function()
        local hs = answered(8)
        local per_poll = {}
        local got = 0
        while got < #hs do
            local n = #client:poll(0, { max_ms = 0 })
            per_poll[#per_poll + 1] = n
            got = got + n
            assert.is_true(#per_poll <= 50, "the budget settled nothing")
        end
        for _, n in ipairs(per_poll) do
            assert.is_true(n <= 1, "a spent budget settled " .. n .. " responses in one poll")
        end
        answered(8)
        assert.equal(8, #client:poll(0))
    end)

    it("tells a reactor host to come back while responses wait to be decoded", function()
        local hs = answered(4)
        local first = client:socket_action(nil, nil, { max_ms = 0 })
        local settled = #first
        while settled < #hs do
            assert.equal(0, client:timer_ms())
            settled = settled + #client:socket_action(nil, nil, { max_ms = 0 })
        end
    end)

    it("refuses a bad budget or socket at the caller's line", function()
        for _, bad in ipairs { { max_ms = -1 }, { max_ms = "5" }, { other = 1 }, 5 } do
            local ok, err = pcall(function() client:poll(0, bad) end)
            assert.is_false(ok)
            assert.matches("nonblocking_spec.lua:%d+: passage.users: poll", err)
        end
        for _, fd in ipairs { -1, 1.5, "bogus", {} } do
            local ok, err = pcall(function() client:socket_action(fd, "in") end)
            assert.is_false(ok)
            assert.matches("nonblocking_spec.lua:%d+: passage.users: socket_action: fd", err)
        end
        local ok, err = pcall(function() client:socket_action(3, "sideways") end)
        assert.is_false(ok)
        assert.matches("nonblocking_spec.lua:%d+: passage.users: socket_action: events", err)
    end)
end)
