-- passage-users driven as a process against the emulator: what it writes,
-- what it sends (the emulator's statistics) and its exit status.
local files = require("support.files")
local emulator = require "support.emulator"
local cli = require "support.cli"
local csv = require "passage.cli.csv"
local paginator = require "passage.paginator"
local cjson = require("cjson").new()

local KEY = "sk_cli_Zq81vXr2Lw0pTn"

local function env(app, extra)
    local e = {
        PASSAGE_API_KEY = KEY,
        PASSAGE_APP_ID = app,
        PASSAGE_BASE_URL = emulator.url(),
    }
    for k, v in pairs(extra or {}) do
        e[k] = v
    end
    return e
end

local function new_app(app, seeded)
    emulator.add_app(app, KEY)
    if seeded then
        emulator.seed(app, seeded, 5)
    end
    return emulator.client({ api_key = KEY }, { timeout_ms = 20000 })
end

local function decode_lines(text)
    local out = {}
    for i, line in ipairs(cli.lines(text)) do
        out[i] = cjson.decode(line)
    end
    return out
end

local function write_file(path, lines)
    local f = assert(io.open(path, "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
end

local function read_file(path)
    return assert(files.read(path))
end

local function stats_count(route)
    local routes = emulator.stats().routes[route] or {}
    local n = 0
    for _, c in pairs(routes) do
        n = n + c
    end
    return n
end

local CREATE = "POST /apps/{app_id}/users"

describe("passage-users", function()
    local tmp = os.tmpname()

    setup(function()
        emulator.reset()
    end)

    teardown(function()
        os.execute("rm -f " .. tmp .. "*")
    end)

    it("exports 10,000 users, each exactly once", function()
        local client = new_app("cli_export", 10000)
        local file = tmp .. ".export.jsonl"
        local out, err, code = cli.run({ "export", "--in-flight", "4", "-o", file },
            { env = env("cli_export") })
        assert.equal(0, code, err)
        assert.equal("", out)
        local ids, n = {}, 0
        for line in io.lines(file) do
            local user = cjson.decode(line)
            assert.is_nil(ids[user.id], "user exported twice: " .. tostring(user.id))
            ids[user.id] = true
            n = n + 1
        end
        assert.equal(10000, n)
        -- The same users the library's walk lists.
        for user in paginator.users(client, "cli_export") do
            assert.is_true(ids[user.id], user.id)
        end
        -- To stdout, with a filter, as CSV: one header and a line per user.
        out, err, code = cli.run({ "export", "--status", "active", "--format", "csv" },
            { env = env("cli_export") })
        assert.equal(0, code, err)
        local active = assert(client:list_paginated_users("cli_export",
            { status = "active", limit = 1 })).total_users
        assert.equal(active + 1, #cli.lines(out))
        client:close()
    end)

    it("lists a page as CSV that parses back to the users", function()
        local client = new_app("cli_list", 40)
        -- Values that need quoting in CSV.
        assert(client:create_user("cli_list", { email = "quote@example.com",
            user_metadata = { note = 'a, "quoted"\nline', n = 3 } }))
        local out, err, code = cli.run({ "list", "--limit", "50", "--format", "csv",
            "--order-by", "created_at:DESC" }, { env = env("cli_list") })
        assert.equal(0, code, err)
        local rows, header = {}, nil
        local text_lines = {}
        for line in out:gmatch("([^\n]*)\n") do
            text_lines[#text_lines + 1] = line
        end
        local i = 0
        for _, fields, problem in csv.records(function()
            i = i + 1
            return text_lines[i]
        end) do
            assert.is_nil(problem)
            if header then
                local row = {}
                for c, name in ipairs(header) do
                    row[name] = fields[c]
                end
                rows[#rows + 1] = row
            else
                header = fields
            end
        end
        local page = assert(client:list_paginated_users("cli_list",
            { limit = 50, order_by = "created_at:DESC" }))
        assert.equal(41, #page.users)
        assert.equal(#page.users, #rows)
        for r, user in ipairs(page.users) do
            local row = rows[r]
            assert.equal(user.id, row.id)
            assert.equal(user.email, row.email)
            assert.equal(user.phone, row.phone)
            assert.equal(user.status, row.status)
            assert.equal(tostring(user.login_count), row.login_count)
            assert.equal(user.created_at, row.created_at)
            if user.user_metadata then
                assert.same(user.user_metadata, cjson.decode(row.user_metadata))
            else
                assert.equal("", row.user_metadata)
            end
        end
        assert.equal('a, "quoted"\nline', cjson.decode(rows[1].user_metadata).note)
        -- Piped without --format: JSON Lines.
        out, err, code = cli.run({ "list", "--limit", "5", "--status", "active",
            "--login-count", "gt:5" }, { env = env("cli_list") })
        assert.equal(0, code, err)
        local users = decode_lines(out)
        assert.is_true(#users > 0 and #users <= 5)
        for _, u in ipairs(users) do
            assert.equal("active", u.status)
            assert.is_true(u.login_count > 5)
        end
        client:close()
    end)

    describe("import", function()
        local file = tmp .. ".import.jsonl"
        local bad = {}       -- line number -> why it is bad
        local client

        setup(function()
            client = new_app("cli_import", 5)
            local taken = assert(client:list_paginated_users("cli_import", { limit = 5 })).users
            local lines = {}
            for n = 1, 1000 do
                local line = cjson.encode { email = "import" .. n .. "@example.com",
                    user_metadata = { row = n } }
                -- Every 50th line is bad, in four ways: five that cannot be
                -- read or sent, five the server refuses.
                if n % 50 == 7 then
                    if n <= 250 then
                        line, bad[n] = "{not json", "input"
                    elseif n <= 500 then
                        line, bad[n] = cjson.encode { user_metadata = { row = n } }, "input"
                    elseif n <= 750 then
                        line, bad[n] = cjson.encode { email = "not-an-email-" .. n }, "http"
                    else
                        line, bad[n] = cjson.encode { email = taken[n % 5 + 1].email }, "http"
                    end
                end
                lines[n] = line
            end
            write_file(file, lines)
        end)

        teardown(function()
            client:close()
        end)

        it("--dry-run checks every line and sends nothing", function()
            emulator.reset_stats()
            local out, err, code = cli.run({ "import", "--dry-run", file }, { env = env("cli_import") })
            assert.equal(1, code, err) -- some lines cannot be sent
            assert.equal(0, emulator.stats().total)
            local results = decode_lines(out)
            assert.equal(1000, #results)
            for n, r in ipairs(results) do
                assert.equal(n, r.line)
                if bad[n] == "input" or (bad[n] == "http" and n <= 750) then
                    -- Bad emails too: the dry run knows the API's rules.
                    assert.is_false(r.ok)
                    assert.equal("input", r.kind)
                elseif bad[n] == "http" and n > 757 then
                    -- The same taken email again: a duplicate within the file.
                    assert.is_false(r.ok)
                    assert.matches("already used by line 757 of this file", r.message)
                else
                    -- A conflict with users already there cannot be seen from here.
                    assert.is_true(r.ok)
                    assert.is_true(r.dry_run)
                    assert.equal("create_user", r.operation)
                end
            end
            assert.equal("import" .. 1 .. "@example.com", results[1].request.email)
        end)

        it("creates 980 users and reports exactly the 20 bad lines", function()
            emulator.reset_stats()
            local results_file = tmp .. ".results.jsonl"
            local out, err, code = cli.run({ "import", file, "--in-flight", "16",
                "--results", results_file }, { env = env("cli_import") })
            assert.equal(1, code, err)
            assert.equal("", out)
            assert.matches("1000 records, 980 ok, 20 failed", err)
            local results = decode_lines(read_file(results_file))
            assert.equal(1000, #results)
            local failed = {}
            for n, r in ipairs(results) do
                assert.equal(n, r.line)
                if not r.ok then
                    failed[r.line] = r
                elseif r.ok then
                    assert.equal("create_user", r.operation)
                    assert.matches("^%w+$", r.id)
                end
            end
            local nbad = 0
            for n, why in pairs(bad) do
                nbad = nbad + 1
                assert.is_table(failed[n], "line " .. n .. " not reported")
                assert.equal(why, failed[n].kind)
                if why == "http" then
                    assert.equal(400, failed[n].status)
                    assert.equal("invalid_request", failed[n].code)
                end
                failed[n] = nil
            end
            assert.equal(20, nbad)
            assert.is_nil(next(failed))
            assert.equal(985, assert(client:list_paginated_users("cli_import", { limit = 1 })).total_users)
            -- Lines that could not be read were never sent.
            assert.equal(990, stats_count(CREATE))
        end)
    end)

    it("re-runs only the lines that failed", function()
        local client = new_app("cli_rerun")
        local file, results_file = tmp .. ".rerun.jsonl", tmp .. ".rerun-results.jsonl"
        local lines = {}
        for n = 1, 100 do
            lines[n] = cjson.encode { email = "rerun" .. n .. "@example.com" }
        end
        write_file(file, lines)
        -- Seven creates fail (a create is not retried after a 503).
        emulator.faults { next = { { status = 503, count = 7 } } }
        finally(function()
            emulator.faults { clear = true }
        end)
        local _, err, code = cli.run({ "import", file, "--results", results_file },
            { env = env("cli_rerun") })
        assert.equal(1, code, err)
        local failed = {}
        for _, r in ipairs(decode_lines(read_file(results_file))) do
            if not r.ok then
                assert.equal(503, r.status)
                failed[#failed + 1] = r.line
            end
        end
        assert.equal(7, #failed)
        emulator.reset_stats()
        local out
        out, err, code = cli.run({ "import", file, "--rerun", results_file },
            { env = env("cli_rerun") })
        assert.equal(0, code, err)
        local rerun = decode_lines(out)
        assert.equal(7, #rerun)
        for i, r in ipairs(rerun) do
            assert.equal(failed[i], r.line)
            assert.is_true(r.ok)
        end
        assert.equal(7, stats_count(CREATE))
        assert.equal(100, assert(client:list_paginated_users("cli_rerun", { limit = 1 })).total_users)
        -- Results of another input: said, not run quietly.
        local other = tmp .. ".other.jsonl"
        write_file(other, { lines[1], lines[2] })
        _, err, code = cli.run({ "import", other, "--rerun", results_file },
            { env = env("cli_rerun") })
        assert.equal(1, code)
        assert.matches("are not records of", err)
        -- Another input of the same length: the records that differ from
        -- those that failed are not run.
        local same_length = tmp .. ".same-length.jsonl"
        local changed = {}
        for n = 1, 100 do
            changed[n] = cjson.encode { email = "other" .. n .. "@example.com" }
        end
        write_file(same_length, changed)
        emulator.reset_stats()
        out, err, code = cli.run({ "import", same_length, "--rerun", results_file },
            { env = env("cli_rerun") })
        assert.equal(1, code)
        assert.matches("differ from those that failed", err)
        for _, r in ipairs(decode_lines(out)) do
            assert.is_false(r.ok)
            assert.equal("input", r.kind)
        end
        assert.equal(0, stats_count(CREATE))
        -- A results file that is the input is refused before anything is written.
        _, err, code = cli.run({ "import", other, "--results", other }, { env = env("cli_rerun") })
        assert.equal(2, code)
        assert.matches("is also an input", err)
        assert.equal(table.concat({ lines[1], lines[2] }, "\n") .. "\n", read_file(other))
        client:close()
    end)

    describe("changes users by filter", function()
        local client
        local args = { "deactivate", "--where", "status=active",
            "--where", "identifier=like:%@old.example" }

        setup(function()
            client = new_app("cli_change", 300)
            local calls = {}
            for n = 1, 1200 do
                calls[n] = { "create_user", "cli_change", { email = "u" .. n .. "@old.example" } }
            end
            for _, r in ipairs(client:bulk(calls, { max_in_flight = 16 })) do
                assert(r.value, tostring(r.err))
            end
        end)

        teardown(function()
            client:close()
        end)

        local function matching()
            return assert(client:list_paginated_users("cli_change", { limit = 1,
                status = "active", identifier = { like = "%@old.example" } })).total_users
        end

        it("asks first, and changes nothing without a yes", function()
            emulator.reset_stats()
            local _, err, code = cli.run(args, { env = env("cli_change") })
            assert.equal(2, code)
            assert.matches("1200 users match", err)
            assert.matches("pass %-%-yes", err)
            _, err, code = cli.run(args, { env = env("cli_change"), stdin = "n\n" })
            assert.equal(2, code, err)
            assert.matches("nothing changed", err)
            assert.equal(0, stats_count("PATCH /apps/{app_id}/users/{user_id}/deactivate"))
            assert.equal(1200, matching())
        end)

        it("deactivates every matching user once, and no other", function()
            local others = assert(client:list_paginated_users("cli_change",
                { limit = 1, status = "active" })).total_users - 1200
            emulator.reset_stats()
            local out, err, code = cli.run(args, { env = env("cli_change"), stdin = "yes\n" })
            assert.equal(0, code, err)
            assert.matches("deactivate: 1200 users changed, 0 failed", err)
            local seen, n = {}, 0
            for _, r in ipairs(decode_lines(out)) do
                assert.is_true(r.ok)
                assert.equal("inactive", r.user_status)
                assert.is_nil(seen[r.id])
                seen[r.id], n = true, n + 1
            end
            assert.equal(1200, n)
            assert.equal(1200, stats_count("PATCH /apps/{app_id}/users/{user_id}/deactivate"))
            assert.equal(0, matching())
            assert.equal(others, assert(client:list_paginated_users("cli_change",
                { limit = 1, status = "active" })).total_users)
            -- And back, by ids, without asking.
            local ids = {}
            for id in pairs(seen) do
                ids[#ids + 1] = id
                if #ids == 3 then break end
            end
            out, err, code = cli.run({ "activate", ids[1], ids[2], ids[3], "missing_user_id" },
                { env = env("cli_change") })
            assert.equal(1, code, err)
            local results = decode_lines(out)
            assert.equal(4, #results)
            for i = 1, 3 do
                assert.is_true(results[i].ok)
                assert.equal(ids[i], results[i].id)
            end
            assert.is_false(results[4].ok)
            assert.equal("user_not_found", results[4].code)
        end)
    end)

    it("exits 0, 1 or 2", function()
        local client = new_app("cli_exit", 3)
        local id = assert(client:list_paginated_users("cli_exit", { limit = 1 })).users[1].id
        local out, err, code = cli.run({ "get", id }, { env = env("cli_exit") })
        assert.equal(0, code, err)
        assert.equal(id, cjson.decode(out).id)
        out, err, code = cli.run({ "get", "no_such_user" }, { env = env("cli_exit") })
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("user_not_found", err)
        for _, case in ipairs {
            { { "frobnicate" }, env("cli_exit"), "unknown command" },
            { { "get" }, env("cli_exit"), "missing argument" },
            { { "list", "--login-count", "like:3" }, env("cli_exit"), "operator like not allowed" },
            { { "list" }, env("cli_exit", { PASSAGE_API_KEY = false }), "no API key" },
            { { "list" }, env("cli_exit", { PASSAGE_APP_ID = false }), "no app id" },
            { { "create" }, env("cli_exit"), "an email or a phone is required" },
        } do
            out, err, code = cli.run(case[1], { env = case[2] })
            assert.equal(2, code, err)
            assert.equal("", out)
            assert.matches(case[3], err, 1, true)
        end
        client:close()
    end)

    it("never prints the key, even when the server echoes it", function()
        local client = new_app("cli_secret", 20)
        local id = assert(client:list_paginated_users("cli_secret", { limit = 1 })).users[1].id
        local outputs = {}
        local function run(args, extra, stdin)
            local out, err = cli.run(args, { env = env("cli_secret", extra), stdin = stdin })
            outputs[#outputs + 1] = out .. err
            return out .. err
        end
        run { "--help" }
        run { "-v", "list" }
        run { "-v", "export", "--format", "csv" }
        run { "-v", "get", id }
        run({ "-v", "--api-key", KEY, "get", id }, { PASSAGE_API_KEY = false })
        run({ "-v", "--api-key=" .. KEY, "frobnicate" }, { PASSAGE_API_KEY = false })
        run({ "-v", "list" }, { PASSAGE_BASE_URL = emulator.url():gsub("//", "//admin:" .. KEY .. "@") })
        run({ "-v", "import", "-" }, nil, cjson.encode { email = "echo@example.com" } .. "\n")
        -- A server that puts the key into its answers: into a user it
        -- sends back (a metadata value holding it), and into its errors.
        local out = run { "create", "--email", "echo-key@example.com", "--metadata", "note=" .. KEY }
        assert.matches('"note": "[REDACTED]"', out, 1, true)
        run { "find", "echo-key@example.com" }
        run { "export" }
        run { "list", "--format", "csv", "--identifier", "echo-key@example.com" }
        run({ "import", "-", "--dry-run" }, nil,
            cjson.encode { email = "x@example.com", user_metadata = { note = KEY } } .. "\n")
        local echo = "key " .. KEY .. " refused; " .. cjson.encode(KEY)
        emulator.faults { next = { { status = 401, error = echo, count = 4 } } }
        finally(function()
            emulator.faults { clear = true }
        end)
        assert.matches("[REDACTED]", run { "-v", "get", id }, 1, true)
        assert.matches("[REDACTED]", run({ "import", "-" }, nil,
            cjson.encode { email = "echo2@example.com" } .. "\n"), 1, true)
        run { "-v", "list" }
        run { "activate", id }
        for i, text in ipairs(outputs) do
            assert.is_nil(text:find(KEY, 1, true), "run " .. i .. " printed the key:\n" .. text)
        end
        client:close()
    end)
end)
