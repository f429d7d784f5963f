-- examples/love in a real LÖVE 11 (Debian's love, LuaJIT), headless: it
-- walks 20,000 users and makes 1,000 get_user calls from love.update
-- against the emulator, and no 60 Hz frame is held up by it. An idle run
-- of the same game is the baseline for lateness.
local emulator = require "support.emulator"
local hosts = require "support.hosts"
local shell = require "support.shell"

local APP, KEY = "host_love", "sk_host_love"
local BUDGET_MS, IN_FLIGHT, LIMIT = 2, 4, 100
local IDLE_FRAMES = 120

-- Runs the game once with `env` (PASSAGE_* variables); returns its summary
-- and what it printed.
local function run_game(love, dir, env)
    shell("rm -f '" .. dir .. "/summary.json'")
    local vars = { "HOME='" .. dir .. "/home'", "XDG_DATA_HOME='" .. dir .. "/home/.local/share'",
        "PASSAGE_SUMMARY_DIR='" .. dir .. "'", "PASSAGE_MAX_SECONDS=60" }
    for k, v in pairs(env) do
        vars[#vars + 1] = k .. "='" .. tostring(v) .. "'"
    end
    local output, code = shell.capture(string.format(
        "env -u DISPLAY %s timeout 120 %s '%s/examples/love' 2>&1",
        table.concat(vars, " "), love, hosts.root()))
    assert.equal(0, code, output)
    return hosts.read_summary(dir, output), output
end

describe("a LÖVE game running examples/love", function()
    local love, dir, remove_dir, expected_ids, decode_ms, bulk_start_ms

    setup(function()
        love = hosts.find_program({ "love" }, "love")
        hosts.build_jit()
        expected_ids = hosts.seed_app(APP, KEY, hosts.USERS)
        decode_ms, bulk_start_ms = hosts.step_costs_ms(APP, KEY, LIMIT, hosts.CALLS)
        dir, remove_dir = hosts.temp_dir("love")
    end)

    teardown(function()
        if remove_dir then
            remove_dir()
        end
    end)

    it("walks 20,000 users and makes 1,000 get_user calls without holding a frame up", function()
        local idle = run_game(love, dir, { PASSAGE_IDLE_FRAMES = IDLE_FRAMES })
        assert.equal("idle", idle.mode)
        assert.is_true(#hosts.list(idle.wall_late_ms) >= IDLE_FRAMES)

        local bounds = hosts.bounds(BUDGET_MS, decode_ms, bulk_start_ms)
        local setup = { budget_ms = BUDGET_MS, limit = LIMIT, decode_ms = decode_ms,
            bulk_start_ms = bulk_start_ms, bounds = bounds }
        local keys = { "wall_late_ms" }
        local function measure()
            local walk, output = run_game(love, dir, {
                PASSAGE_BASE_URL = emulator.url(), PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = APP,
                PASSAGE_BUDGET_MS = BUDGET_MS, PASSAGE_IN_FLIGHT = IN_FLIGHT, PASSAGE_LIMIT = LIMIT,
                PASSAGE_CALLS = hosts.CALLS,
            })
            assert.equal("walk", walk.mode, output)
            hosts.check_work(walk, expected_ids)
            hosts.report("love", "frame", walk, idle, setup, keys)
            return walk
        end
        local walk = hosts.walk_not_holding_up(measure, idle, bounds, keys)
        hosts.check_steps_see_a_blocked_step(walk, idle, bounds, keys, 150)
    end)
end)
