-- passage-users import --restore: an export read back into another, empty
-- app (JSON Lines and CSV) equals the original in identifiers, statuses
-- and metadata; a second run with --on-exists skip changes nothing and
-- exits 0; without it, users that exist fail; --on-exists update rewrites.
local emulator = require "support.emulator"
local cli = require "support.cli"
local files = require "support.files"
local cjson = require("cjson").new()

local KEY = "sk_cli_restore_Wm20Xa"
local SOURCE, USERS = "cli_restore_from", 400

local function env(app)
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = app, PASSAGE_BASE_URL = emulator.url() }
end

-- An app's users by identifier: email (else phone) -> what must survive.
local function snapshot(app)
    local out, err, code = cli.run({ "export" }, { env = env(app) })
    assert.equal(0, code, err)
    local by, n = {}, 0
    for _, line in ipairs(cli.lines(out)) do
        local u = cjson.decode(line)
        local key = (u.email ~= "" and u.email) or u.phone
        assert.is_nil(by[key], "two users with " .. key)
        by[key] = { email = u.email, phone = u.phone, status = u.status,
            user_metadata = u.user_metadata or {} }
        n = n + 1
    end
    return by, n
end

local function changes()
    local n = 0
    for route, counts in pairs(emulator.stats().routes) do
        if not route:find("^GET ") then
            for _, c in pairs(counts) do
                n = n + c
            end
        end
    end
    return n
end

describe("passage-users import --restore", function()
    local dir, original

    setup(function()
        emulator.reset()
        emulator.add_app(SOURCE, KEY)
        emulator.seed(SOURCE, USERS, 11)
        dir = cli.temp_dir()
        original = snapshot(SOURCE)
        local statuses = {}
        for _, u in pairs(original) do
            statuses[u.status] = true
        end
        assert.is_true(statuses.inactive, "the seed has no inactive user")
    end)

    teardown(function()
        cli.remove_dir(dir)
    end)

    for _, format in ipairs { "jsonl", "csv" } do
        it("recreates an export (" .. format .. ") in an empty app, then skips on a re-run",
            function()
            local target = "cli_restore_to_" .. format
            emulator.add_app(target, KEY)
            local file = dir .. "/export." .. format
            local _, err, code = cli.run({ "export", "--format", format, "-o", file },
                { env = env(SOURCE) })
            assert.equal(0, code, err)

            local out
            out, err, code = cli.run({ "import", "--restore", file }, { env = env(target) })
            assert.equal(0, code, err)
            assert.equal(USERS, #cli.lines(out))
            assert.matches(USERS .. " records, " .. USERS .. " ok, 0 failed", err)
            -- An export's own fields (external_id, ...) are read-only, not unknown.
            assert.is_nil(err:find("is not one import sets", 1, true), err)
            -- No operation makes a user pending: those come back active, and
            -- their result lines say so.
            local expected, pending = {}, 0
            for key, u in pairs(original) do
                local copy = {}
                for k, v in pairs(u) do
                    copy[k] = v
                end
                if u.status == "pending" then
                    copy.status, pending = "active", pending + 1
                end
                expected[key] = copy
            end
            local notes = 0
            for _, line in ipairs(cli.lines(out)) do
                local r = cjson.decode(line)
                assert.equal("created", r.action)
                if r.note then
                    assert.equal("status pending cannot be set through the API", r.note)
                    notes = notes + 1
                end
            end
            assert.equal(pending, notes)
            local restored, n = snapshot(target)
            assert.equal(USERS, n)
            assert.same(expected, restored)

            -- Again, skipping users that exist: nothing changes.
            emulator.reset_stats()
            out, err, code = cli.run({ "import", "--restore", "--on-exists", "skip", file },
                { env = env(target) })
            assert.equal(0, code, err)
            assert.equal(0, changes())
            for _, line in ipairs(cli.lines(out)) do
                assert.equal("skipped", cjson.decode(line).action)
            end
            assert.same(expected, (snapshot(target)))

            -- Without --on-exists, an existing user is a failure, and nothing changes.
            emulator.reset_stats()
            out, err, code = cli.run({ "import", "--restore", file }, { env = env(target) })
            assert.equal(1, code, err)
            assert.equal(0, changes())
            assert.equal("exists", cjson.decode(cli.lines(out)[1]).kind)
        end)
    end

    it("--on-exists update rewrites metadata and status; unknown fields are said once", function()
        local target = "cli_restore_update"
        emulator.add_app(target, KEY)
        local lines = {
            cjson.encode { id = "ignored_id", email = "Upd@Example.com", status = "active",
                user_metadata = { plan = "free" }, shoe_size = 42 },
        }
        local path = dir .. "/one.jsonl"
        local f = assert(io.open(path, "wb"))
        f:write(lines[1], "\n")
        f:close()
        local _, err, code = cli.run({ "import", "--restore", path }, { env = env(target) })
        assert.equal(0, code, err)
        assert.equal(1, select(2, err:gsub('field "shoe_size"', "")))
        -- The same user, now deactivated with other metadata, twice in the file.
        local changed = cjson.encode { email = "upd@example.com", status = "inactive",
            user_metadata = { plan = "team" }, shoe_size = 43 }
        f = assert(io.open(path, "wb"))
        f:write(changed, "\n", changed, "\n")
        f:close()
        local out
        out, err, code = cli.run({ "import", "--restore", "--on-exists", "update", path },
            { env = env(target) })
        assert.equal(0, code, err)
        assert.equal(1, select(2, err:gsub('field "shoe_size"', "")))
        local r = cjson.decode(cli.lines(out)[1])
        assert.equal("updated", r.action)
        assert.equal("inactive", r.user_status)
        local users = snapshot(target)
        assert.same({ email = "upd@example.com", phone = "", status = "inactive",
            user_metadata = { plan = "team" } }, users["upd@example.com"])
        assert.is_string(files.read(path))
    end)
end)
