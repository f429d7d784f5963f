-- passage-users' commands come from one list, and every operation of the
-- library is a command of its own: `get-user`, `list-paginated-users`, ...;
-- an operation added to passage.operations appears as a command with no
-- code of the command line (shown here by adding one before it starts).
local emulator = require "support.emulator"
local cli = require "support.cli"
local cjson = require("cjson").new()

local APP, KEY = "cli_cmds", "sk_cli_cmds_Q8r4Tn"

local function env(extra)
    local e = { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = APP, PASSAGE_BASE_URL = emulator.url() }
    for k, v in pairs(extra or {}) do
        e[k] = v
    end
    return e
end

describe("passage-users commands", function()
    setup(function()
        emulator.reset()
        emulator.add_app(APP, KEY)
        emulator.seed(APP, 12, 4)
    end)

    it("has a command per library operation, named with dashes", function()
        local users = require "passage.users"
        local help = cli.run({ "--help" })
        for _, operation in ipairs(users.OPERATIONS) do
            assert.matches("\n   " .. operation:gsub("_", "%%-") .. "[ \n]", help)
        end
        local out, err, code = cli.run({ "create-user", "--email", "op@example.com",
            "--metadata", "plan=pro" }, { env = env() })
        assert.equal(0, code, err)
        local created = cjson.decode(out)
        assert.equal("op@example.com", created.email)
        out, err, code = cli.run({ "get-user", created.id }, { env = env() })
        assert.equal(0, code, err)
        assert.equal("pro", cjson.decode(out).user_metadata.plan)
        out, err, code = cli.run({ "list-paginated-users", "--limit", "3", "--status", "active" },
            { env = env() })
        assert.equal(0, code, err)
        local page = cjson.decode(out)
        assert.equal(3, page.limit)
        for _, u in ipairs(page.users) do
            assert.equal("active", u.status)
        end
        out, err, code = cli.run({ "deactivate-user", created.id }, { env = env() })
        assert.equal(0, code, err)
        assert.equal("inactive", cjson.decode(out).status)
        -- The library's own checks are usage errors.
        local _, usage_err, usage_code = cli.run({ "create-user" }, { env = env() })
        assert.equal(2, usage_code)
        assert.matches("an email or a phone is required", usage_err)
    end)

    it("makes an operation added to passage.operations a command", function()
        -- Before the command starts, the library gains an operation.
        local init = [[
local real = package.searchpath("passage.operations", package.path)
package.preload["passage.operations"] = function()
    local ops = dofile(real)
    ops.count_active_users = { method = "GET", path = "/apps/{app_id}/users",
        args = { "app_id", "params" }, query = "params", result = "list", idempotent = true }
    return ops
end]]
        local extra = { LUA_INIT_5_4 = init, LUA_INIT = init } -- Lua 5.4's, LuaJIT's
        local help = cli.run({ "--help" }, { env = env(extra) })
        assert.matches("\n   count%-active%-users ", help)
        local out, err, code = cli.run({ "count-active-users", "--limit", "1" }, { env = env(extra) })
        assert.equal(0, code, err)
        assert.is_true(cjson.decode(out).total_users >= 12)
    end)

    it("ships every module of the command in the rock", function()
        local p = assert(io.open("rockspec/passage-lua-0.1.0-1.rockspec"))
        local rockspec = p:read("*a")
        p:close()
        local ls = assert(io.popen("find lua/passage/cli -name '*.lua'"))
        local n = 0
        for path in ls:lines() do
            local module = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
            assert.truthy(rockspec:find('["' .. module .. '"] = "' .. path .. '"', 1, true),
                module .. " is not in the rockspec")
            n = n + 1
        end
        ls:close()
        assert.is_true(n >= 20)
    end)
end)
