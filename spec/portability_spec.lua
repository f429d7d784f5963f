-- The same sources build and run on Lua 5.1, 5.3 and LuaJIT: each build is
-- loaded by its own interpreter and makes real calls against the emulator.
local emulator = require "support.emulator"

local SCRIPT = [[
local users = require "passage.users"
local paginator = require "passage.paginator"
local client = users.new { api_key = "test_key", base_url = arg[1] }
local user = assert(client:create_user("test_app", { email = arg[2] }))
local got = assert(client:get_user("test_app", user.id))
assert(got.email == arg[2], "email")
assert(getmetatable(got.webauthn_devices) == users.array_mt, "array metatable")
if math.type then assert(math.type(got.login_count) == "integer", "integer") end
local n = 0
for _ in paginator.users(client, "test_app", { limit = 1 }) do n = n + 1 end
assert(n >= 1, "walk")
local _, err = client:get_user("test_app", "missing")
assert(err.status == 404 and err.code == "user_not_found", "404")
assert(client:delete_user("test_app", user.id) == true, "delete")
client:close()
print("ok " .. _VERSION)
]]

local run = require "support.shell"

describe("portability", function()
    local script = os.tmpname()
    setup(function()
        emulator.reset()
        local f = assert(io.open(script, "w"))
        f:write(SCRIPT)
        f:close()
    end)
    teardown(function()
        os.remove(script)
    end)

    for _, v in ipairs { { "5.1", "lua5.1" }, { "5.3", "lua5.3" }, { "jit", "luajit" } } do
        it("builds and runs on " .. v[2], function()
            local ok, out = run("make -s build LUA_VERSION=" .. v[1])
            assert(ok, out)
            ok, out = run(string.format(
                "LUA_PATH='lua/?.lua;;' LUA_CPATH='build/%s/?.so;;' %s %s %s %s",
                v[1], v[2], script, emulator.url(), "port-" .. v[1] .. "@example.com"))
            assert(ok, out)
            assert.matches("^ok Lua 5%.%d", out)
        end)
    end
end)
