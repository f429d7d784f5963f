-- passage-users import --dry-run against the real run of the same mixed
-- file, on an empty app (no conflict with users already there): the dry
-- run flags exactly the records the real run fails, and sends nothing.
local emulator = require "support.emulator"
local cli = require "support.cli"
local cjson = require("cjson").new()

local KEY = "sk_cli_dry_Hq3Zt9"

local function env(app)
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = app, PASSAGE_BASE_URL = emulator.url() }
end

-- Lines that are good, and lines bad in every way a record can be.
local function mixed_lines()
    local lines = {}
    local function add(line)
        lines[#lines + 1] = line
    end
    for n = 1, 300 do
        local kind = n % 15
        if kind == 1 then
            add(cjson.encode { email = "no-at-sign-" .. n })
        elseif kind == 2 then
            add(cjson.encode { email = "two@@x" .. n .. ".example.com" })
        elseif kind == 3 then
            add(cjson.encode { phone = "555-" .. n })
        elseif kind == 4 then
            add(cjson.encode { phone = "+0" .. (1000000 + n) })
        elseif kind == 5 then
            add(cjson.encode { email = "dup" .. (n - 5) .. "@example.com" }) -- line n-5's
        elseif kind == 6 then
            add(cjson.encode { email = "Dup" .. (n - 6) .. "@Example.com" }) -- case differs
        elseif kind == 7 then
            add("{not json")
        elseif kind == 8 then
            add(cjson.encode { email = "md" .. n .. "@example.com",
                user_metadata = { [("k"):rep(200)] = 1 } })
        elseif kind == 9 then
            add(cjson.encode { email = "x" .. n .. "@example.com", extra_field = true,
                status = "active" }) -- read-only and unknown: ignored
        elseif kind == 10 then
            add(cjson.encode { email = ("a"):rep(70) .. "@example.com" })
        elseif kind == 11 then
            add('{"email":"big' .. n .. '@example.com","user_metadata":{"b":"'
                .. ("z"):rep(1100 * 1024) .. '"}}')
        elseif kind == 0 then
            add(cjson.encode { email = "dup" .. n .. "@example.com" })
        else
            add(cjson.encode { email = "good" .. n .. "@example.com",
                phone = "+1415555" .. string.format("%04d", n) })
        end
    end
    return lines
end

describe("passage-users import --dry-run", function()
    local dir

    setup(function()
        emulator.reset()
        dir = cli.temp_dir()
    end)

    teardown(function()
        cli.remove_dir(dir)
    end)

    it("flags exactly the records the real run fails", function()
        local app = "cli_dry"
        emulator.add_app(app, KEY)
        local path = dir .. "/mixed.jsonl"
        local f = assert(io.open(path, "wb"))
        f:write(table.concat(mixed_lines(), "\n"), "\n")
        f:close()

        emulator.reset_stats()
        local dry_out, dry_err = cli.run({ "import", "--dry-run", path }, { env = env(app) })
        assert.equal(0, emulator.stats().total, "the dry run sent something")
        local real_out, real_err = cli.run({ "import", path }, { env = env(app) })

        local dry, real = cli.lines(dry_out), cli.lines(real_out)
        assert.equal(300, #dry, dry_err)
        assert.equal(300, #real, real_err)
        local flagged = 0
        for i = 1, 300 do
            local d, r = cjson.decode(dry[i]), cjson.decode(real[i])
            assert.equal(i, d.line)
            assert.equal(i, r.line)
            assert.equal(r.ok, d.ok, "line " .. i .. ": dry " .. dry[i] .. "\nreal " .. real[i])
            if not d.ok then
                flagged = flagged + 1
            end
        end
        assert.is_true(flagged >= 100, "flagged " .. flagged)
    end)
end)
