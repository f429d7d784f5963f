-- The rockspec installs: `luarocks make` into a private tree, then a script
-- outside the checkout requires the modules from that tree and calls the API,
-- and the tree's passage-users runs.
local emulator = require "support.emulator"

local run = require "support.shell"

local users = require "passage.users"
local ROCKSPEC = "rockspec/passage-lua-" .. users._VERSION .. "-1.rockspec"

describe("the rock", function()
    it("installs with luarocks and works from its tree", function()
        local tree = os.tmpname()
        os.remove(tree)
        finally(function()
            run("rm -rf " .. tree .. " src/*.o rockspec/*.o") -- luarocks builds objects beside the sources
        end)
        -- The registry is not needed: lua-cjson comes from the system.
        local ok, out = run(string.format(
            "luarocks --lua-version 5.4 --tree %s make --deps-mode=none %s", tree, ROCKSPEC))
        assert(ok, out)
        -- The emulator is a rock of its own (emulator/): none of it comes along.
        local _, emulator_files = run("find " .. tree .. " -path '*emulator*'")
        assert.are.equal("", emulator_files)
        local script = string.format([[
            local users = require "passage.users"
            assert(package.searchpath("passage.users", package.path):find(%q, 1, true))
            local client = users.new { api_key = "test_key", base_url = %q }
            local page = assert(client:list_paginated_users("test_app", { limit = 1 }))
            for _, m in ipairs { "paginator", "bulk", "cosocket", "engine", "filters" } do
                assert(require("passage." .. m))
            end
            print("ok", type(page.total_users), true)
        ]], tree, emulator.url())
        ok, out = run(string.format("cd / && LUA_PATH='%s/share/lua/5.4/?.lua;;' "
            .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e %q", tree, tree, script))
        assert(ok, out)
        assert.matches("ok\tnumber\ttrue", out)

        -- The command, with the tree's paths as `luarocks path` gives them.
        local env = string.format("cd / && eval \"$(luarocks --lua-version 5.4 --tree %s path)\" && ",
            tree)
        ok, out = run(env .. tree .. "/bin/passage-users --help")
        assert(ok, out)
        assert.matches("^Usage: passage%-users ", out)
        assert.matches("import, bulk", out, 1, true)
        ok, out = run(env .. string.format("PASSAGE_API_KEY=test_key PASSAGE_APP_ID=test_app "
            .. "PASSAGE_BASE_URL=%s %s/bin/passage-users list --limit 1 --format json", emulator.url(),
            tree))
        assert(ok, out)
        assert.matches("^%[", out)
    end)

    it("passes luarocks lint", function()
        local ok, out = run("luarocks lint " .. ROCKSPEC)
        assert(ok, out)
        assert.equal("", out)
    end)

    it("says what to install when libcurl's headers are missing", function()
        local object, empty = os.tmpname(), os.tmpname()
        os.remove(empty)
        assert(run("mkdir " .. empty))
        finally(function()
            os.remove(object)
            os.remove(empty)
        end)
        local ok, out = run("cc -c -o " .. object .. " rockspec/check_curl_headers.c")
        assert(ok, out)
        -- Only an empty include directory: as on a machine without the headers.
        ok, out = run("cc -nostdinc -I" .. empty .. " -c -o " .. object
            .. " rockspec/check_curl_headers.c")
        assert.is_false(ok)
        assert.matches("libcurl headers not found: install libcurl4-openssl-dev", out, 1, true)
    end)
end)
