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
        it("leaves a host its own clock_gettime declaration, declared before or after", function()
            local ffi = require("ffi")
            local core = require("passage.core")
            -- A host declares clock_gettime with a struct of its own, as the
            -- LÖVE game and the Luanti mod of examples/ do.
            ffi.cdef [[
                typedef struct { long s; long ns; } clock_spec_host_timespec;
                int clock_gettime(int, clock_spec_host_timespec *);
            ]]
            local ts = ffi.new("clock_spec_host_timespec")
            assert.equal(0, ffi.C.clock_gettime(core.CLOCK_MONOTONIC, ts))
            local host_ms = tonumber(ts.s) * 1000 + tonumber(ts.ns) / 1e6
            local clock = require("passage.clock")
            local t = clock.now_ms()
            assert.is_true(t >= host_ms and t - host_ms < 1000)
            assert.equal(0, ffi.C.clock_gettime(core.CLOCK_MONOTONIC, ts))
        end)
    end)
end
