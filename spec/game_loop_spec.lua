-- The game loop of examples/game_loop.lua keeps its 16 ms ticks while
-- hundreds of slow calls run: the library never holds a frame up.
local users = require "passage.users"
local emulator = require "support.emulator"

local APP = "test_app"
local game = assert(loadfile("examples/game_loop.lua"))("--as-module")

local function max_of(list)
    local m = 0
    for _, v in ipairs(list) do
        m = math.max(m, v)
    end
    return m
end

describe("a 16 ms game loop", function()
    local client, ids
    before_each(function()
        emulator.reset()
        emulator.seed(APP, 200, 9)
        client = users.new { api_key = "test_key", base_url = emulator.url(), timeout_ms = 10000 }
        ids = {}
        for _, u in ipairs(assert(client:list_paginated_users(APP, { limit = 200 })).users) do
            ids[#ids + 1] = u.id
        end
        emulator.faults { latency_ms = 50 }
    end)
    after_each(function()
        client:close()
        emulator.faults { latency_ms = 0 }
    end)

    it("is never held up by calls with 50 ms latency", function()
        -- A blocked poll makes a tick 35-50 ms late. Scheduling noise of a
        -- busy machine (both cores saturated) reaches 5-7 ms now and then, so
        -- the bounds are 12 ms (max) and 6 ms (99th percentile), met by the
        -- best of three runs; an idle machine stays under 1 ms.
        local report = {}
        local passed = false
        for attempt = 1, 3 do
            local stats = game.run { client = client, app_id = APP, user_ids = ids, calls = 1000 }
            assert.equal(1000, stats.ok)
            assert.equal(0, stats.failed)
            assert.is_true(stats.max_in_flight >= 16, "calls overlapped")
            -- 1000 calls in a loop of 8 starts per tick: about 125 ticks.
            assert.is_true(stats.ticks >= 125 and stats.ticks < 200, stats.ticks .. " ticks")
            local max, p99 = max_of(stats.lateness), game.percentile(stats.lateness, 0.99)
            report[attempt] = string.format("max %.2f ms, p99 %.2f ms", max, p99)
            if max < 12 and p99 < 6 then
                passed = true
                break
            end
        end
        assert.is_true(passed, "ticks were late: " .. table.concat(report, "; "))
    end)

    it("would see a frame held up by a blocking call (the measure works)", function()
        local stats = game.run {
            client = client, app_id = APP, user_ids = ids, calls = 40,
            work = function(tick)
                if tick == 3 then
                    assert(client:get_user(APP, ids[1])) -- blocks for the latency
                end
            end,
        }
        assert.equal(40, stats.ok)
        -- 50 ms blocked in a 16 ms frame: the next tick is over 30 ms late.
        assert.is_true(max_of(stats.lateness) >= 25, "the blocked frame shows as late")
    end)
end)
