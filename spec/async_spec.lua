-- The concurrent API: start now, collect later, against the emulator.
local core = require "passage.core"
local emulator = require "support.emulator"

local APP = "test_app"
local now_ms = core.now_ms
-- Timing bounds widen under valgrind, sanitizers or the collector torture
-- (PASSAGE_SLOW=1).
local SLOW = os.getenv("PASSAGE_SLOW") and 10 or 1
local unpack_args = table.unpack or unpack -- luacheck: globals unpack

local function new_client(opts)
    return emulator.client(opts)
end

-- Starts `op` and polls until its handle comes back; returns its result.
local function run_async(client, op, ...)
    local h = client:start(op, ...)
    local seen = 0
    while seen == 0 do
        for _, x in ipairs(client:poll(100)) do
            if x == h then
                seen = seen + 1
            end
        end
    end
    assert.is_true(h:done())
    return h:result()
end

-- Comparable form of a result pair: the value, or the error's fields.
local function outcome(value, err)
    if value ~= nil then
        return { value = value }
    end
    return { err = { kind = err.kind, status = err.status, code = err.code,
        message = err.message, operation = err.operation, attempts = err.attempts } }
end

-- A user without the fields a write changes on every call.
local function stable(value)
    if type(value) == "table" and value.id then
        local copy = {}
        for k, v in pairs(value) do
            copy[k] = v
        end
        copy.updated_at = nil
        return copy
    end
    return value
end

local function count(t)
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    return n
end

describe("passage.users concurrent calls", function()
    local client
    before_each(function()
        emulator.reset()
        client = new_client()
    end)
    after_each(function()
        client:close()
    end)

    it("gives every operation the result its blocking call gives", function()
        emulator.seed(APP, 30, 11)
        local page = assert(client:list_paginated_users(APP, { limit = 30 }))
        local with_device
        for _, u in ipairs(page.users) do
            local devices = assert(client:list_user_devices(APP, u.id))
            if #devices > 0 then
                with_device = u
                break
            end
        end
        assert.is_not_nil(with_device)
        local a = assert(client:create_user(APP, { email = "a@example.com" }))
        local b = assert(client:create_user(APP, { email = "b@example.com" }))
        local window = page.created_before + 3600
        -- { operation, args... }; each is run blocking, then started and polled,
        -- and both must agree (writes run twice are idempotent here).
        local cases = {
            { "get_user", APP, a.id },
            { "get_user", APP, "no-such-user" },
            { "get_user", "no-such-app", a.id },
            -- (a window of their own: by default it ends at the next second,
            -- which two calls a slow run makes may not share)
            { "list_paginated_users", APP, { limit = 5, order_by = "id:ASC", created_before = window } },
            { "list_paginated_users", APP, { limit = 5, status = "inactive", created_before = window } },
            { "get_user_by_identifier", APP, "A@EXAMPLE.COM" },
            { "get_user_by_identifier", APP, "nobody@example.com" },
            { "update_user", APP, a.id, { user_metadata = { plan = "pro" } } },
            { "update_user", APP, a.id, { email = "not an email" } },
            { "deactivate_user", APP, a.id },
            { "activate_user", APP, a.id },
            { "list_user_devices", APP, with_device.id },
            { "delete_user_device", APP, with_device.id, "no-such-device" },
            { "revoke_user_refresh_tokens", APP, a.id },
            { "delete_user", APP, "no-such-user" },
        }
        for _, c in ipairs(cases) do
            local op = c[1]
            local blocking = outcome(client[op](client, unpack_args(c, 2)))
            local async = outcome(run_async(client, unpack_args(c)))
            blocking.value, async.value = stable(blocking.value), stable(async.value)
            assert.same(blocking, async, op)
        end
        -- Calls that change what the next one sees: one user each.
        local created = outcome(run_async(client, "create_user", APP, { email = "c@example.com" }))
        assert.equal("c@example.com", created.value.email)
        local dup_blocking = outcome(client:create_user(APP, { email = "c@example.com" }))
        local dup_async = outcome(run_async(client, "create_user", APP, { email = "c@example.com" }))
        assert.same(dup_blocking, dup_async)
        assert.equal(400, dup_async.err.status)
        assert.same(outcome(client:delete_user(APP, a.id)),
            outcome(run_async(client, "delete_user", APP, b.id)))
        assert.same(outcome(client:delete_user(APP, a.id)),
            outcome(run_async(client, "delete_user", APP, b.id)))
        local devices = assert(client:list_user_devices(APP, with_device.id))
        assert.is_true(run_async(client, "delete_user_device", APP, with_device.id, devices[1].id))
    end)

    it("never blocks in poll(0), and collects every handle exactly once", function()
        emulator.faults { latency_ms = 200 }
        local handles = {}
        for i = 1, 20 do
            handles[client:start("list_paginated_users", APP, { limit = 1, page = i })] = true
        end
        local t0 = now_ms()
        local slowest, polls, got = 0, 0, {}
        while count(got) < 20 do
            local t = now_ms()
            local done = client:poll(0)
            slowest = math.max(slowest, now_ms() - t)
            polls = polls + 1
            for _, h in ipairs(done) do
                assert.is_nil(got[h], "a handle came back twice")
                assert.is_true(handles[h])
                got[h] = true
                assert.is_table((h:result()))
            end
            assert.is_true(now_ms() - t0 < 4000, "calls did not finish")
        end
        -- Each poll(0) is a few libcurl steps: far below the 200 ms latency
        -- (the bound is loose for loaded machines).
        assert.is_true(slowest < 50 * SLOW, "poll(0) took " .. slowest .. " ms")
        assert.is_true(polls > 20)
        -- All 20 overlapped: about one latency, not twenty.
        assert.is_true(now_ms() - t0 < 1500 * SLOW)
        assert.equal(0, client:pending())
        assert.same({}, client:poll(0))
    end)

    it("waits at most about timeout_ms in poll(timeout_ms)", function()
        emulator.faults { latency_ms = 300 }
        local h = client:start("get_user", APP, "x")
        local t = now_ms()
        assert.same({}, client:poll(50))
        local took = now_ms() - t
        assert.is_true(took >= 45 and took < 250, "poll(50) took " .. took .. " ms")
        assert.is_false(h:done())
        h:cancel()
    end)

    it("mixes blocking and started calls on one client", function()
        local u = assert(client:create_user(APP, { email = "mix@example.com" }))
        emulator.faults { latency_ms = 100 }
        local started = {}
        for _ = 1, 5 do
            started[client:start("get_user", APP, u.id)] = true
        end
        local got = assert(client:get_user(APP, u.id)) -- blocking, while 5 run
        assert.equal(u.id, got.id)
        local n = 0
        local deadline = now_ms() + 3000
        while n < 5 and now_ms() < deadline do
            for _, h in ipairs(client:poll(100)) do
                assert.is_true(started[h])
                started[h] = nil
                assert.equal(u.id, (h:result()).id)
                n = n + 1
            end
        end
        assert.equal(5, n)
        -- A handle collected by wait() is not handed out again by poll.
        local h = client:start("get_user", APP, u.id)
        assert.equal(u.id, (h:wait()).id)
        assert.same({}, client:poll(0))
        assert.equal(u.id, (h:wait()).id) -- waiting again returns the same
    end)

    -- A blocking call's handle and call tables serve the client's next
    -- blocking call; a started call's must never be among them.
    it("keeps each call's own result when blocking calls reuse their tables", function()
        local a = assert(client:create_user(APP, { email = "a@example.com" }))
        local b = assert(client:create_user(APP, { email = "b@example.com" }))
        local h = client:start("get_user", APP, a.id)
        for i = 1, 20 do
            local id = i % 2 == 0 and a.id or b.id
            assert.equal(id, assert(client:get_user(APP, id)).id)
            local _, err = client:get_user(APP, "missing" .. i)
            assert.equal(404, err.status)
        end
        assert.equal(a.id, (h:wait()).id)
        assert.equal("get_user", h.operation)
        -- A blocking call made on the same client while another waits to be
        -- tried again (in the hook told of its failed attempt) gets tables
        -- of its own: the waiting call's next attempt still asks for a.
        local inner, inside = {}, false
        local hooked
        hooked = new_client { on_attempt = function(attempt)
            if attempt.retry and not inside then
                inside = true
                inner[#inner + 1] = assert(hooked:get_user(APP, b.id)).id
                inside = false
            end
        end }
        for _ = 1, 3 do
            emulator.faults { clear = true, next = { { status = 503, count = 1 } } }
            assert.equal(a.id, assert(hooked:get_user(APP, a.id)).id)
        end
        assert.same({ b.id, b.id, b.id }, inner)
        emulator.faults { clear = true }
        hooked:close()
    end)

    -- wait() hands back its own call first; a walk then asks for its next
    -- page before it pays for decoding the pages that arrived meanwhile.
    it("leaves calls that finish during wait(h) to the next poll or wait", function()
        local u = assert(client:create_user(APP, { email = "lazy@example.com" }))
        -- The first request of the queue is slow (its answer trickles).
        emulator.faults { next = { { trickle_ms = 20, chunk = 64 } } }
        local slow = client:start("get_user", APP, u.id)
        local quick = client:start("get_user", APP, u.id)
        local t = now_ms()
        assert.equal(u.id, (slow:wait()).id)
        assert.is_true(now_ms() - t >= 100, "the trickled answer came too fast")
        -- quick's answer arrived long ago, but nobody has asked for it yet.
        assert.is_false(quick:done())
        local got = client:poll(0)
        assert.equal(1, #got)
        assert.equal(quick, got[1])
        assert.equal(u.id, (quick:result()).id)
    end)

    -- A walk puts its next page on the wire between the two.
    it("await_response waits for a call's answer and leaves the decode to wait()", function()
        local u = assert(client:create_user(APP, { email = "await@example.com" }))
        emulator.faults { latency_ms = 100 }
        local ok, err = pcall(function()
            local h = client:start("get_user", APP, u.id)
            local t = now_ms()
            h:await_response()
            assert.is_true(now_ms() - t >= 90, "returned before the answer came")
            assert.is_false(h:done()) -- the answer is in, still undecoded
            t = now_ms()
            assert.equal(u.id, (h:wait()).id)
            assert.is_true(now_ms() - t < 50, "wait() waited again")
            h:await_response() -- done: returns at once
            assert.equal(0, #client:poll(0)) -- taken by wait(), not handed out again
        end)
        emulator.faults { latency_ms = 0 }
        assert(ok, err)
    end)

    it("runs bulk calls in input order, failures in the middle included", function()
        emulator.seed(APP, 40, 3)
        local page = assert(client:list_paginated_users(APP, { limit = 40, order_by = "id:ASC" }))
        local calls, want = {}, {}
        for i, u in ipairs(page.users) do
            if i % 7 == 0 then
                calls[#calls + 1] = { "get_user", APP, "missing-" .. i }
                want[#want + 1] = false
            end
            calls[#calls + 1] = { "get_user", APP, u.id }
            want[#want + 1] = u.id
        end
        emulator.faults { latency_ms = 10 }
        local results = client:bulk(calls, { max_in_flight = 4 })
        assert.equal(#calls, #results)
        for i, r in ipairs(results) do
            if want[i] then
                assert.is_nil(r.err)
                assert.equal(want[i], r.value.id)
            else
                assert.is_nil(r.value)
                assert.equal(404, r.err.status)
                assert.equal("user_not_found", r.err.code)
                assert.equal("get_user", r.err.operation)
            end
        end
    end)

    it("never has more than max_in_flight bulk calls on the wire", function()
        emulator.seed(APP, 5, 3)
        local ids = {}
        for _, u in ipairs(assert(client:list_paginated_users(APP, {})).users) do
            ids[#ids + 1] = u.id
        end
        local calls = {}
        for i = 1, 24 do
            calls[i] = { "get_user", APP, ids[i % #ids + 1] }
        end
        emulator.faults { latency_ms = 100 }
        local t = now_ms()
        local results = client:bulk(calls, { max_in_flight = 6 })
        local took = now_ms() - t
        for i, r in ipairs(results) do
            assert.equal(ids[i % #ids + 1], r.value.id)
        end
        -- 24 calls, 6 at a time, 100 ms each: 4 rounds.
        assert.is_true(took >= 390 and took < 2000, "bulk took " .. took .. " ms")
    end)

    it("retries bulk calls per call (503s) and still keeps the order", function()
        client:close()
        client = new_client { retry_base_delay_ms = 5, retry_max_delay_ms = 20 }
        emulator.seed(APP, 10, 5)
        local page = assert(client:list_paginated_users(APP, { limit = 10 }))
        local calls = {}
        for i, u in ipairs(page.users) do
            calls[i] = { "get_user", APP, u.id }
        end
        emulator.reset_stats()
        emulator.faults { next = { { status = 503, count = 6 } } }
        local results = client:bulk(calls, { max_in_flight = 3 })
        for i, r in ipairs(results) do
            assert.is_nil(r.err, r.err and tostring(r.err))
            assert.equal(page.users[i].id, r.value.id)
        end
        local stats = emulator.stats()
        assert.equal(6, emulator.count(stats, "GET /apps/{app_id}/users/{user_id}", 503))
        assert.equal(10, emulator.count(stats, "GET /apps/{app_id}/users/{user_id}", 200))

        -- A call that runs out of attempts fails alone.
        emulator.faults { next = { { status = 503, count = 4 } } }
        results = client:bulk({ calls[1], calls[2] }, { max_in_flight = 1 })
        assert.equal("http", results[1].err.kind)
        assert.equal(503, results[1].err.status)
        assert.equal(4, results[1].err.attempts)
        assert.equal(page.users[2].id, results[2].value.id)
    end)

    it("gives each bulk call its own deadline", function()
        client:close()
        client = new_client { timeout_ms = 150, max_attempts = 1 }
        local u = assert(client:create_user(APP, { email = "slow@example.com" }))
        emulator.faults { latency_ms = 100 }
        local calls = {}
        for i = 1, 6 do
            calls[i] = { "get_user", APP, u.id }
        end
        -- One at a time: 6 x 100 ms is beyond 150 ms, yet each call has its own.
        local results = client:bulk(calls, { max_in_flight = 1 })
        for _, r in ipairs(results) do
            assert.is_nil(r.err, r.err and tostring(r.err))
        end
        emulator.faults { latency_ms = 400 }
        results = client:bulk({ calls[1] })
        assert.equal("timeout", results[1].err.kind)
    end)

    it("walks with K pages in flight, users in the order of a sequential walk", function()
        local paginator = require "passage.paginator"
        emulator.seed(APP, 230, 13)
        local sequential = {}
        for u in paginator.users(client, APP, { limit = 20 }) do
            sequential[#sequential + 1] = u.id
        end
        assert.equal(230, #sequential)
        emulator.faults { latency_ms = 40 }
        local parallel, most = {}, 0
        local t = now_ms()
        for u in paginator.users(client, APP, { limit = 20 }, { in_flight = 4 }) do
            parallel[#parallel + 1] = u.id
            most = math.max(most, client:pending())
        end
        local took = now_ms() - t
        assert.same(sequential, parallel)
        assert.is_true(most >= 3, "at most " .. most .. " pages were in flight")
        -- 12 pages at 40 ms: sequential would be about 480 ms.
        assert.is_true(took < 400 * SLOW, "the walk took " .. took .. " ms")
    end)

    it("reuses connections", function()
        local u = assert(client:create_user(APP, { email = "reuse@example.com" }))
        local connects = 0
        for _ = 1, 10 do
            local h = client:start("get_user", APP, u.id)
            assert(h:wait())
            connects = connects + h.connects
        end
        assert.equal(0, connects, "sequential calls after the first reuse its connection")
        emulator.faults { latency_ms = 20 }
        local handles = {}
        for i = 1, 40 do
            handles[i] = client:start("get_user", APP, u.id)
        end
        connects = 0
        for _, h in ipairs(handles) do
            assert(h:wait())
            connects = connects + h.connects
        end
        -- 40 at once need at most 40 connections; a second wave needs none.
        assert.is_true(connects <= 40)
        for i = 1, 40 do
            handles[i] = client:start("get_user", APP, u.id)
        end
        local again = 0
        for _, h in ipairs(handles) do
            assert(h:wait())
            again = again + h.connects
        end
        -- Most of the second wave rides kept-alive connections (libcurl may
        -- close a few as its cache shrinks with the handles that left).
        assert.is_true(again <= 10, again .. " new connections for the second wave")
    end)

    it("cancels one call; the others go on", function()
        emulator.faults { latency_ms = 150 }
        local keep = client:start("list_paginated_users", APP, { limit = 1 })
        local drop = client:start("list_paginated_users", APP, { limit = 2 })
        drop:cancel()
        assert.is_true(drop:done())
        local v, err = drop:result()
        assert.is_nil(v)
        assert.equal("cancelled", err.kind)
        assert.is_table((keep:wait()))
        local seen = client:poll(0)
        assert.equal(1, #seen) -- the cancelled one; keep was taken by wait
        assert.equal(drop, seen[1])
    end)

    it("ends calls in flight as cancelled when the client closes", function()
        emulator.faults { latency_ms = 300 }
        local handles = {}
        for i = 1, 10 do
            handles[i] = client:start("list_paginated_users", APP, { limit = 1, page = i })
        end
        client:poll(20) -- connected and sent
        assert.equal(10, client:pending())
        client:close()
        assert.equal(0, client:pending())
        for _, h in ipairs(handles) do
            assert.is_true(h:done())
            local v, err = h:result()
            assert.is_nil(v)
            assert.equal("cancelled", err.kind)
            local v2, err2 = h:wait()
            assert.is_nil(v2)
            assert.equal(err, err2)
        end
        assert.has_error(function() client:poll(0) end, "passage.users: poll on a closed client")
        assert.has_error(function() client:start("get_user", APP, "x") end)
        client:close() -- twice is fine
    end)

    it("cleans up handles and clients dropped with calls in flight", function()
        emulator.faults { latency_ms = 30 }
        collectgarbage()
        local base
        for round = 1, 6 do
            -- Handles dropped at once: the client still finishes them.
            for i = 1, 50 do
                client:start("list_paginated_users", APP, { limit = 1, page = i })
            end
            local deadline = now_ms() + 5000
            while client:pending() > 0 and now_ms() < deadline do
                client:poll(50)
            end
            assert.equal(0, client:pending())
            -- A client dropped (not closed) with calls in flight.
            local other = new_client()
            for i = 1, 20 do
                other:start("get_user", APP, "u" .. i)
            end
            other:poll(5)
            other = nil -- luacheck: ignore 311
            collectgarbage()
            collectgarbage()
            local kb = collectgarbage("count")
            if round == 2 then
                base = kb
            elseif round > 2 then
                assert.is_true(kb < base + 512, string.format("memory grew from %.0f KB to %.0f KB",
                    base, kb))
            end
        end
        -- And everything still works afterwards.
        assert.is_table((client:list_paginated_users(APP, { limit = 1 })))
    end)

    -- A real call whose result cannot be read, as a bug or an out-of-memory
    -- would make it.
    local function broken_call()
        local h = client:start("list_paginated_users", APP, { limit = 1 })
        h:close()
        local call = {}
        for k, v in pairs(h.call) do
            call[k] = v
        end
        call.operation = "broken"
        call.check = nil
        call.result = {
            read = function()
                error("broken finish")
            end,
        }
        return call
    end

    it("keeps other calls going when turning one response into a result raises", function()
        local good = client:start("list_paginated_users", APP, { limit = 1 })
        local bad = client.engine:start(broken_call())
        local v, err = bad:wait()
        assert.is_nil(v)
        assert.equal("decode", err.kind)
        assert.matches("broken finish", err.message)
        assert.is_table((good:wait()))
    end)

    it("ends a blocking call whose result cannot be made with an error, others still reported",
        function()
        local other = client:start("list_paginated_users", APP, { limit = 1 })
        local v, err = client.engine:run(broken_call())
        assert.is_nil(v)
        assert.equal("decode", err.kind)
        assert.equal("broken", err.operation)
        assert.matches("broken finish", err.message)
        assert.is_table((other:wait()))
        assert.equal(0, client:pending())
    end)

    it("drives a host reactor through the socket interface (examples/reactor.lua)", function()
        emulator.faults { latency_ms = 50 }
        local lua = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+") -- luacheck: globals jit
        local p = assert(io.popen(string.format(
            "PASSAGE_EMULATOR_PORT=%d %s examples/reactor.lua 30 2>&1; echo rc=$?",
            emulator.port(), lua)))
        local out = p:read("*a")
        p:close()
        assert.matches("created 30, fetched 30, deleted 30 users", out)
        assert.matches("rc=0", out)
        -- 3 batches of 50 ms each overlap within a batch.
        local ms = tonumber(out:match("users in (%d+) ms"))
        assert.is_true(ms < 1500, out)
    end)

    it("closes a handle: a running call ends and is forgotten, a finished one keeps its result", function()
        emulator.faults { latency_ms = 300 }
        local slow = client:start("list_paginated_users", APP, { limit = 1 })
        slow:close()
        assert.equal(0, client:pending())
        assert.same({}, client:poll(0))
        emulator.faults { clear = true }
        local quick = client:start("list_paginated_users", APP, { limit = 1 })
        local page = assert(quick:wait())
        quick:close()
        assert.equal(page, (quick:result()))
    end)
end)
