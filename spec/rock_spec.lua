-- The rockspec installs: `luarocks make` into a private tree, then a script
-- outside the checkout requires the modules from that tree and calls the API.
local emulator = require "support.emulator"

local run = require "support.shell"

describe("the rock", function()
    it("installs with luarocks and works from its tree", function()
        local users = require "passage.users"
        local rockspec = "rockspec/passage-lua-" .. users._VERSION .. "-1.rockspec"
        local tree = os.tmpname()
        os.remove(tree)
        -- The registry is not needed: lua-cjson comes from the system.
        local ok, out = run(string.format(
            "luarocks --lua-version 5.4 --tree %s make --deps-mode=none %s", tree, rockspec))
        assert(ok, out)
        -- The emulator is a rock of its own (emulator/): none of it comes along.
        local _, emulator_files = run("find " .. tree .. " -path '*emulator*'")
        assert.are.equal("", emulator_files)
        local script = string.format([[
            local users = require "passage.users"
            assert(package.searchpath("passage.users", package.path):find(%q, 1, true))
            local client = users.new { api_key = "test_key", base_url = %q }
            local page = assert(client:list_paginated_users("test_app", { limit = 1 }))
            for _, m in ipairs { "paginator", "bulk", "openresty", "engine", "filters" } do
                assert(require("passage." .. m))
            end
            print("ok", type(page.total_users), true)
        ]], tree, emulator.url())
        ok, out = run(string.format("cd / && LUA_PATH='%s/share/lua/5.4/?.lua;;' "
            .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e %q", tree, tree, script))
        run("rm -rf " .. tree .. " src/*.o") -- luarocks builds its objects beside the sources
        assert(ok, out)
        assert.matches("ok\tnumber\ttrue", out)
    end)
end)
