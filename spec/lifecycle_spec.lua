-- The lifetime rule, on the paths scripts take without thinking: a client
-- used once and dropped, handles dropped mid-flight, a client closed while
-- its own call runs (even from a finalizer), walks abandoned in coroutines.
-- Each runs with the collector at its most aggressive (support.gc_torture):
-- a full cycle, finalizers included, at every allocation, so any C or Lua
-- code that frees what a running call still uses is caught here (and by
-- make asan, which runs this spec).
--
-- The rule (README, "Lifetimes"): a client's transport, decoder state and
-- header sets live while any call, handle or walk of it can still run;
-- close() is explicit and ends calls in flight as "cancelled"; a dropped
-- client is cleaned up once nothing of it runs.
local users = require "passage.users"
local paginator = require "passage.paginator"
local emulator = require "support.emulator"
local torture = require "support.gc_torture"

local APP = "test_app"
local N_USERS = 120

local function options(extra)
    local o = { api_key = "test_key", base_url = emulator.url(), timeout_ms = 20000 }
    for k, v in pairs(extra or {}) do
        o[k] = v
    end
    return o
end

-- Runs f under torture and returns what it returns (raising what it raises).
local during = torture.during

describe("lifetimes", function()
    local ids
    setup(function()
        emulator.reset()
        emulator.seed(APP, N_USERS, 7)
        local all = assert(paginator.collect(users.new(options()), APP))
        ids = {}
        for i, u in ipairs(all) do
            ids[i] = u.id
        end
    end)

    describe("a client used once and dropped", function()
        it("gets a user", function()
            for i = 1, 3 do
                local user = during(function()
                    return assert(users.new(options()):get_user(APP, ids[i]))
                end)
                assert.equal(ids[i], user.id)
            end
        end)

        -- The engine reads each answer into a table it keeps for the next
        -- one: it must keep nothing of the answer once the call returns.
        it("keeps nothing of an answer once the call returns", function()
            local client = users.new(options())
            local seen = setmetatable({}, { __mode = "k" })
            for i = 1, 3 do
                seen[assert(client:get_user(APP, ids[i]))] = true
                seen[assert(client:list_paginated_users(APP, { limit = 10 })).users] = true
            end
            collectgarbage()
            collectgarbage()
            assert.is_nil(next(seen), "a user or a page outlived its call")
            client:close()
        end)

        it("lists a page of users, again and again", function()
            for _ = 1, 3 do
                local page = during(function()
                    return assert(users.new(options()):list_paginated_users(APP, { limit = 100 }))
                end)
                assert.equal(100, #page.users)
                assert.equal(N_USERS, page.total_users)
            end
        end)

        it("starts a call and waits for it", function()
            local user = during(function()
                return assert(users.new(options()):start("get_user", APP, ids[2]):wait())
            end)
            assert.equal(ids[2], user.id)
        end)

        it("runs a bulk", function()
            local results = during(function()
                local calls = {}
                for i = 1, 6 do
                    calls[i] = { "get_user", APP, ids[i] }
                end
                return users.new(options()):bulk(calls, { max_in_flight = 3 })
            end)
            for i = 1, 6 do
                assert.equal(ids[i], results[i].value.id)
            end
        end)

        it("finds a user by identifier (a call of two requests)", function()
            local first = assert(users.new(options()):get_user(APP, ids[1]))
            local user = during(function()
                return assert(users.new(options()):get_user_by_identifier(APP, first.email or first.phone))
            end)
            assert.equal(ids[1], user.id)
        end)

        it("walks every user", function()
            local seen = during(function()
                local n = 0
                for _ in paginator.users(users.new(options()), APP, { limit = 50 }, { in_flight = 2 }) do
                    n = n + 1
                end
                return n
            end)
            assert.equal(N_USERS, seen)
        end)

        it("is cleaned up with its calls still in flight", function()
            emulator.faults { clear = true, latency_ms = 200 }
            during(function()
                local c = users.new(options())
                for i = 1, 4 do
                    c:start("get_user", APP, ids[i]) -- handles dropped at once
                end
            end)
            collectgarbage("collect")
            collectgarbage("collect")
            emulator.faults { clear = true }
            -- The process is still sound: a new client works.
            assert.equal(ids[1], assert(users.new(options()):get_user(APP, ids[1])).id)
        end)
    end)

    describe("handles", function()
        it("finish when the script keeps only the handle", function()
            local h = during(function()
                return users.new(options()):start("get_user", APP, ids[3])
            end)
            collectgarbage("collect")
            local user = during(function()
                return assert(h:wait())
            end)
            assert.equal(ids[3], user.id)
        end)

        it("dropped mid-flight leave the client's other calls alone", function()
            local c = users.new(options())
            emulator.faults { clear = true, latency_ms = 100 }
            local kept = during(function()
                for i = 1, 3 do
                    c:start("get_user", APP, ids[i])
                end
                local h = c:start("get_user", APP, ids[4])
                collectgarbage("collect")
                return assert(h:wait())
            end)
            emulator.faults { clear = true }
            assert.equal(ids[4], kept.id)
            local seen = 0
            while c:pending() > 0 do
                seen = seen + #c:poll(100)
            end
            assert.equal(3, seen)
            c:close()
        end)
    end)

    describe("close", function()
        it("ends the calls in flight as cancelled", function()
            local c = users.new(options())
            emulator.faults { clear = true, latency_ms = 300 }
            local h = c:start("get_user", APP, ids[1])
            c:close()
            emulator.faults { clear = true }
            local value, err = h:result()
            assert.is_nil(value)
            assert.equal("cancelled", err.kind)
            assert.has_error(function() c:get_user(APP, ids[1]) end,
                "passage.users: get_user on a closed client")
        end)

        it("from a finalizer in the middle of the client's own call ends it as cancelled", function()
            for _, op in ipairs { "get_user", "list_paginated_users" } do
                local c = users.new(options())
                local args = op == "get_user" and { APP, ids[1] } or { APP, { limit = 100 } }
                local closes = 0
                local value, err = during(function()
                    -- Garbage at once: the collector runs it at the next
                    -- allocation, somewhere inside the call.
                    torture.finalizer(function()
                        closes = closes + 1
                        c:close()
                    end)
                    return c[op](c, args[1], args[2])
                end)
                assert.equal(1, closes)
                -- Either the answer was in before the close, or the call
                -- ended as cancelled: never a crash, a raise or a hang.
                if value == nil then
                    assert.equal("cancelled", err.kind)
                end
                assert.equal("passage.users client (closed)", tostring(c))
            end
        end)
    end)

    describe("walks", function()
        it("abandoned in a coroutine never hand their pages to the client's poll", function()
            local c = users.new(options())
            emulator.faults { clear = true, latency_ms = 50 }
            local co = coroutine.create(function()
                for _ in paginator.users(c, APP, { limit = 20 }, { in_flight = 4 }) do
                    coroutine.yield()
                end
            end)
            for _ = 1, 25 do -- into the second page: three more in flight
                assert(coroutine.resume(co))
            end
            assert.is_true(c:pending() >= 3)
            co = nil -- luacheck: ignore (never resumed again)
            during(function() collectgarbage("collect") end)
            local mine = c:start("get_user", APP, ids[1])
            local handed = {}
            local deadline = os.time() + 5
            while c:pending() > 0 and os.time() < deadline do
                for _, h in ipairs(c:poll(50)) do
                    handed[#handed + 1] = h
                end
            end
            emulator.faults { clear = true }
            c:close()
            assert.equal(1, #handed)
            assert.equal(mine, handed[1])
        end)

        it("bulk and get_user_by_identifier keep their inner requests to themselves", function()
            local c = users.new(options())
            local first = assert(c:get_user(APP, ids[1]))
            local outer = c:start("get_user", APP, ids[2])
            local results = c:bulk({ { "get_user", APP, ids[3] },
                { "get_user_by_identifier", APP, first.email or first.phone } })
            assert.equal(ids[3], results[1].value.id)
            assert.equal(ids[1], results[2].value.id)
            local handed = {}
            while c:pending() > 0 or #handed == 0 do
                for _, h in ipairs(c:poll(50)) do
                    handed[#handed + 1] = h
                end
            end
            c:close()
            assert.same({ outer }, handed)
        end)
    end)

    describe("walks and jobs that never block", function()
        it("run to their end with only the client driven, the walk and job held by nothing else",
                function()
            local seen, results = during(function()
                local c = users.new(options())
                local walk = paginator.start(c, APP, { limit = 40 }, { in_flight = 2 })
                local calls = {}
                for i = 1, 6 do
                    calls[i] = { "get_user", APP, ids[i] }
                end
                local job = c:start_bulk(calls, { max_in_flight = 3 })
                local n = 0
                while not (walk:done() and job:done()) do
                    c:poll(20, { max_ms = 1 })
                    for _ in walk:ready() do
                        n = n + 1
                    end
                end
                return n, job:results()
            end)
            assert.equal(N_USERS, seen)
            for i, r in ipairs(results) do
                assert.equal(ids[i], r.value.id)
            end
        end)

        it("dropped mid-flight stop by themselves and leave the client sound", function()
            local c = users.new(options())
            emulator.faults { clear = true, latency_ms = 30 }
            during(function()
                paginator.start(c, APP, { limit = 10 }, { in_flight = 4 }) -- dropped at once
                local calls = {}
                for i = 1, 8 do
                    calls[i] = { "get_user", APP, ids[i] }
                end
                c:start_bulk(calls, { max_in_flight = 2 }) -- dropped too
            end)
            local deadline = os.time() + 10
            while c:pending() > 0 and os.time() < deadline do
                assert.same({}, c:poll(50)) -- neither hands anything to the host
            end
            emulator.faults { clear = true }
            assert.equal(0, c:pending()) -- the dropped walk stopped after its window
            assert.equal(ids[1], assert(c:get_user(APP, ids[1])).id)
            c:close()
        end)

        it("survive the client closed by a finalizer while a host's reactor drives them", function()
            local outcome = during(function()
                local c = users.new(options())
                local walk = paginator.start(c, APP, { limit = 20 }, { in_flight = 2 })
                torture.finalizer(function() c:close() end) -- closes at some allocation
                local reactor = require "support.select_reactor"
                reactor.run(c, function() return walk:done() end)
                for _ in walk:ready() do end
                return walk:err() and walk:err().kind or "ended"
            end)
            assert.is_true(outcome == "cancelled" or outcome == "ended", outcome)
        end)
    end)
end)
