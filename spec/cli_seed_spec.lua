-- passage-emulator seed: realistic users for an app of the running
-- emulator, through its own seeding code, from the command line.
local shell = require "support.shell"
local emulator = require "support.emulator"
local cli = require "support.cli"

local function seed(args)
    local cmd = "LUA_PATH='emulator/lua/?.lua;;' lua5.4 emulator/bin/passage-emulator seed --port "
        .. emulator.port()
    for _, a in ipairs(args) do
        cmd = cmd .. " " .. cli.quote(a)
    end
    return shell.capture(cmd .. " 2>&1")
end

local function total(app, key)
    local client = emulator.client({ api_key = key })
    local page = assert(client:list_paginated_users(app, { limit = 1 }))
    client:close()
    return page.total_users
end

describe("passage-emulator seed", function()
    setup(function()
        emulator.reset()
    end)

    it("makes the app with --api-key and adds the users", function()
        local out, code = seed { "--app-id", "seed_cli", "--count", "120", "--api-key", "sk_seed_x" }
        assert.equal(0, code, out)
        assert.matches("seeded 120 users into seed_cli %(120 in all%)", out)
        assert.equal(120, total("seed_cli", "sk_seed_x"))
        out, code = seed { "--app-id", "seed_cli", "--count", "5", "--seed", "9" }
        assert.equal(0, code, out)
        assert.equal(125, total("seed_cli", "sk_seed_x"))
    end)

    it("says what is wrong", function()
        local out, code = seed { "--app-id", "no_such_app", "--count", "5" }
        assert.equal(1, code)
        assert.matches("no app no_such_app %(give %-%-api%-key to make it%)", out)
        out, code = seed { "--count", "5" }
        assert.equal(2, code)
        assert.matches("seed needs %-%-app%-id and %-%-count", out)
        out, code = seed { "--app-id", "a", "--count", "-3" }
        assert.equal(2, code)
        assert.matches("%-%-count must be a whole number", out)
    end)
end)
