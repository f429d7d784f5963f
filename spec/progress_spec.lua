-- The progress hook of walks (paginator opts.progress) and bulk runs
-- (client:bulk opts.progress), against the emulator.
local paginator = require "passage.paginator"
local emulator = require "support.emulator"

local APP = "progress_app"
local SEEDED = 1234

local function new_client()
    return emulator.client({ api_key = "progress_key" }, { timeout_ms = 10000 })
end

describe("progress hooks", function()
    local client

    setup(function()
        emulator.reset()
        emulator.add_app(APP, "progress_key")
        emulator.seed(APP, SEEDED, 7)
    end)

    before_each(function()
        client = new_client()
    end)

    after_each(function()
        client:close()
    end)

    describe("of a walk", function()
        it("is told each page handed out, with users so far and the total", function()
            for _, in_flight in ipairs { 1, 4 } do
                local seen, pages, users = {}, 0, 0
                local opts = { in_flight = in_flight, progress = function(p)
                    seen[#seen + 1] = p
                end }
                for page in paginator.pages(client, APP, { limit = 100 }, opts) do
                    pages, users = pages + 1, users + #page.users
                    -- Told before the page reaches the loop body.
                    assert.same({ pages = pages, users = users, total_users = SEEDED }, seen[pages])
                end
                assert.equal(13, pages)
                assert.equal(13, #seen)
                assert.same({ pages = 13, users = SEEDED, total_users = SEEDED }, seen[13])
            end
        end)

        it("counts users handed out by users() and collect()", function()
            local last
            local n = 0
            for _ in paginator.users(client, APP, { limit = 500 }, { progress = function(p)
                last = p
            end }) do
                n = n + 1
            end
            assert.equal(SEEDED, n)
            assert.same({ pages = 3, users = SEEDED, total_users = SEEDED }, last)
            local calls = 0
            local all = assert(paginator.collect(client, APP, { limit = 500, status = "active" },
                { progress = function(p)
                    calls = calls + 1
                    last = p
                end }))
            assert.equal(#all, last.users)
            assert.equal(#all, last.total_users)
            assert.equal(math.ceil(#all / 500), calls)
        end)

        it("ends the walk when the hook raises, with the hook's error as it was", function()
            local boom = setmetatable({}, { __tostring = function() return "boom" end })
            local function raising(p)
                if p.pages == 2 then
                    error(boom)
                end
            end
            -- collect gives back nil, err only for the library's errors.
            local ok, e = pcall(paginator.collect, client, APP, { limit = 100 },
                { in_flight = 8, progress = raising })
            assert.is_false(ok)
            assert.equal(boom, e)
            assert.equal(0, client:pending()) -- no page left on the wire
            ok, e = pcall(function()
                for _ in paginator.users(client, APP, { limit = 100 }, { progress = function()
                    error("hook failed")
                end }) do
                    error("not reached: the hook runs before the first user")
                end
            end)
            assert.is_false(ok)
            assert.matches("progress_spec.lua:%d+: hook failed$", e)
            assert.equal(0, client:pending())
            -- The client goes on working.
            assert.equal(SEEDED, (assert(client:list_paginated_users(APP, { limit = 1 }))).total_users)
        end)

        it("refuses a hook that is not a function", function()
            assert.has_error(function()
                paginator.users(client, APP, nil, { progress = true })
            end, "passage.paginator: progress must be a function")
        end)
    end)

    describe("of a bulk run", function()
        local ids

        setup(function()
            local c = new_client()
            local page = assert(c:list_paginated_users(APP, { limit = 60 }))
            ids = {}
            for i, u in ipairs(page.users) do
                ids[i] = u.id
            end
            c:close()
        end)

        it("is told calls done, failed and the total as they finish", function()
            local list = {}
            for i, id in ipairs(ids) do
                -- every fifth call asks for a user that does not exist
                list[i] = { "get_user", APP, i % 5 == 0 and ("missing_" .. i) or id }
            end
            local seen = {}
            local results = client:bulk(list, { max_in_flight = 8, progress = function(p)
                seen[#seen + 1] = p
            end })
            assert.equal(60, #results)
            assert.is_true(#seen >= 2)
            for i = 2, #seen do
                assert.is_true(seen[i].done > seen[i - 1].done)
                assert.is_true(seen[i].failed >= seen[i - 1].failed)
            end
            assert.same({ done = 60, failed = 12, total = 60 }, seen[#seen])
        end)

        it("cancels the rest when the hook raises; the error reaches the caller as it was", function()
            emulator.faults { latency_ms = 30 }
            local other = client:start("get_user", APP, ids[1]) -- not part of the run
            local list = {}
            for i, id in ipairs(ids) do
                list[i] = { "get_user", APP, id }
            end
            local stop = {}
            local ok, e = pcall(client.bulk, client, list, { max_in_flight = 4, progress = function(p)
                if p.done >= 8 then
                    error(stop)
                end
            end })
            emulator.faults { latency_ms = 0 }
            assert.is_false(ok)
            assert.equal(stop, e)
            -- Only the call started outside the run may still be running.
            assert.is_true(client:pending() <= 1)
            local user = assert(other:wait())
            assert.equal(ids[1], user.id)
            assert.equal(0, client:pending())
            assert.equal(ids[2], (assert(client:get_user(APP, ids[2]))).id)
        end)

        it("refuses a hook that is not a function", function()
            assert.has_error(function()
                client:bulk({}, { progress = "yes" })
            end, "passage.users: bulk: progress must be a function")
        end)
    end)
end)
