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
