describe("passage.clock", function()
    local core = require("passage.core")
    local clock = require("passage.clock")

    it("reads the C core's clock", function()
        for _ = 1, 1000 do
            local before = core.now_ms()
            local t = clock.now_ms()
            assert.is_true(before <= t and t <= core.now_ms())
        end
    end)

    it("is read through the FFI on LuaJIT, where compiled code calls it in its trace", function()
        assert.equal(rawget(_G, "jit") ~= nil, clock.now_ms ~= core.now_ms)
    end)
end)

if rawget(_G, "jit") then
    describe("passage.clock beside a host's own FFI clock", function()
        local shell = require("support.shell")

        -- A host declares clock_gettime with a struct of its own, as the LÖVE
        -- game and the Luanti mod of examples/ do; the FFI's declarations are
        -- the process's, so each order runs in a fresh LuaJIT.
        local HOST = [[
            local ffi = require("ffi")
            ffi.cdef("typedef struct { long s; long ns; } host_ts; int clock_gettime(int, host_ts *);")
            local ts = ffi.new("host_ts")
            assert(ffi.C.clock_gettime(1, ts) == 0 and ts.s > 0)
        ]]
        local LIBRARY = [[
            local core, clock = require("passage.core"), require("passage.clock")
            assert(clock.now_ms ~= core.now_ms, "not the FFI clock")
            local before = core.now_ms()
            local t = clock.now_ms()
            assert(before <= t and t <= core.now_ms())
        ]]

        for _, order in ipairs { { "host first", HOST .. LIBRARY .. HOST },
            { "library first", LIBRARY .. HOST .. LIBRARY } } do
            it("leaves a host its own clock_gettime declaration, " .. order[1], function()
                assert.is_nil(order[2]:find("'", 1, true)) -- quoted whole for sh below
                local ok, out = shell("luajit -e '" .. order[2] .. "' && echo done")
                assert.is_true(ok, out)
                assert.matches("done", out)
            end)
        end
    end)
end
