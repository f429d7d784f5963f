-- examples/luanti's mod in a real Luanti server (Debian's minetest-server,
-- LuaJIT, mod security on): it walks 20,000 users and makes 1,000 get_user
-- calls from a globalstep against the emulator, and no server step is held
-- up by it. An idle run of the same server is the baseline for lateness.
local emulator = require "support.emulator"
local hosts = require "support.hosts"
local shell = require "support.shell"
local socket = require "socket"

local APP, KEY = "host_luanti", "sk_host_luanti"
local STEP_MS, BUDGET_MS, IN_FLIGHT, LIMIT = 50, 5, 8, 500
local IDLE_STEPS = 40

-- A UDP port nobody uses now, for the server's own listener.
local function free_udp_port()
    local u = assert(socket.udp())
    assert(u:setsockname("127.0.0.1", 0))
    local _, port = u:getsockname()
    u:close()
    return tonumber(port)
end

-- Runs minetestserver once with the mod and `settings` (passage_walk.*);
-- returns the mod's summary and what the server printed.
local function run_server(server, dir, settings)
    local world = dir .. "/world"
    local ok, out = shell(string.format("rm -rf '%s' '%s/summary.json' && mkdir -p '%s/worldmods' && "
        .. "cp -r examples/luanti/passage_walk '%s/worldmods/'", world, dir, world, world))
    assert(ok, out)
    local f = assert(io.open(world .. "/world.mt", "w"))
    f:write("gameid = minetest_game\nbackend = sqlite3\nplayer_backend = sqlite3\n"
        .. "auth_backend = sqlite3\nmod_storage_backend = sqlite3\n")
    f:close()
    local root = hosts.root()
    local conf = {
        "secure.enable_security = true",
        "secure.trusted_mods = passage_walk",
        string.format("dedicated_server_step = %.3f", STEP_MS / 1000),
        "server_announce = false",
        "bind_address = 127.0.0.1",
        "passage_walk.lua_path = " .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua",
        "passage_walk.lua_cpath = " .. root .. "/build/jit/?.so",
        "passage_walk.summary_dir = " .. dir,
        "passage_walk.max_seconds = 60",
    }
    for k, v in pairs(settings) do
        conf[#conf + 1] = "passage_walk." .. k .. " = " .. tostring(v)
    end
    f = assert(io.open(dir .. "/minetest.conf", "w"))
    f:write(table.concat(conf, "\n"), "\n")
    f:close()
    local output, code = shell.capture(string.format("cd '%s' && HOME='%s/home' timeout 120 %s "
        .. "--config '%s/minetest.conf' --world '%s' --gameid minetest_game --port %d "
        .. "--logfile '%s/debug.txt' 2>&1", dir, dir, server, dir, world, free_udp_port(), dir))
    assert.equal(0, code, output)
    return hosts.read_summary(dir, output), output
end

describe("a Luanti server running examples/luanti's mod", function()
    local server, dir, remove_dir, expected_ids, decode_ms, bulk_start_ms

    setup(function()
        server = hosts.find_program({ "/usr/lib/minetest/minetestserver", "minetestserver" },
            "minetest-server")
        hosts.build_jit()
        expected_ids = hosts.seed_app(APP, KEY, hosts.USERS)
        decode_ms, bulk_start_ms = hosts.step_costs_ms(APP, KEY, LIMIT, hosts.CALLS)
        dir, remove_dir = hosts.temp_dir("luanti")
    end)

    teardown(function()
        if remove_dir then
            remove_dir()
        end
    end)

    it("walks 20,000 users and makes 1,000 get_user calls without holding a step up", function()
        local idle = run_server(server, dir, { idle_steps = IDLE_STEPS })
        assert.equal("idle", idle.mode)
        assert.is_true(#hosts.list(idle.wall_late_ms) >= IDLE_STEPS)

        local bounds = hosts.bounds(BUDGET_MS, decode_ms, bulk_start_ms)
        local setup = { budget_ms = BUDGET_MS, limit = LIMIT, decode_ms = decode_ms,
            bulk_start_ms = bulk_start_ms, bounds = bounds }
        local keys = { "wall_late_ms", "dtime_late_ms" }
        local function measure()
            local walk, output = run_server(server, dir, {
                base_url = emulator.url(), api_key = KEY, app_id = APP,
                budget_ms = BUDGET_MS, in_flight = IN_FLIGHT, limit = LIMIT, calls = hosts.CALLS,
            })
            assert.equal("walk", walk.mode, output)
            assert.equal(STEP_MS, walk.step_ms)
            hosts.check_work(walk, expected_ids)
            hosts.report("luanti", "step", walk, idle, setup, keys)
            return walk
        end
        local walk = hosts.walk_not_holding_up(measure, idle, bounds, keys)
        hosts.check_steps_see_a_blocked_step(walk, idle, bounds, keys, 150)
    end)
end)
