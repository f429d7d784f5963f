-- passage-users stopped by SIGINT and SIGTERM in the middle of a run, over
-- real HTTP against the emulator: every call made gets its result line, the
-- ok lines are exactly the users created, and the exit status tells which
-- signal stopped it. Never a traceback.
local emulator = require "support.emulator"
local cli = require "support.cli"
local cjson = require("cjson").new()

local KEY = "sk_cli_int_4Jd8Qw"

local function env(app)
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = app, PASSAGE_BASE_URL = emulator.url() }
end

local function total_users(app)
    local client = emulator.client({ api_key = KEY })
    local page = assert(client:list_paginated_users(app, { limit = 1 }))
    client:close()
    return page.total_users
end

-- The result lines of a run: all JSON, numbered 1, 2, 3 ... with no gap.
local function results(out)
    local list = {}
    for i, line in ipairs(cli.lines(out)) do
        local r = cjson.decode(line)
        assert.equal(i, r.line, "result lines out of order or missing")
        list[i] = r
    end
    return list
end

local function assert_clean(err)
    assert.is_nil(err:find("traceback", 1, true), err)
    assert.is_nil(err:find("%.lua:%d"), err)
    for line in err:gmatch("[^\n]+") do
        assert.matches("^passage%-users: ", line)
    end
end

describe("passage-users interrupted", function()
    local dir, input

    setup(function()
        emulator.reset()
        dir = cli.temp_dir()
        input = dir .. "/users.jsonl"
        local f = assert(io.open(input, "wb"))
        for n = 1, 100000 do
            f:write('{"email":"int', n, '@example.com","user_metadata":{"n":', n, '}}\n')
        end
        f:close()
    end)

    teardown(function()
        emulator.faults { clear = true }
        cli.remove_dir(dir)
    end)

    local function import_then(app, extra_args, after)
        emulator.add_app(app, KEY)
        local args = { "import", input, "--no-progress" }
        for _, a in ipairs(extra_args) do
            args[#args + 1] = a
        end
        local job_dir = dir .. "/" .. app
        os.execute("mkdir " .. job_dir)
        local job = cli.start(cli.command(args, env(app)), job_dir)
        after(job)
        return cli.wait(job, 120)
    end

    for _, case in ipairs { { "INT", 130, "SIGINT" }, { "TERM", 143, "SIGTERM" } } do
        it("on SIG" .. case[1] .. ", finishes the calls in flight, writes every line, exits "
            .. case[2], function()
            local app = "cli_int_" .. case[1]:lower()
            local out, err, code = import_then(app, { "--in-flight", "16" }, function(job)
                os.execute("sleep 1.5")
                cli.signal(job, case[1])
            end)
            assert.equal(case[2], code, err)
            assert_clean(err)
            assert.matches("stopped by " .. case[3], err)
            local list = results(out)
            assert.is_true(#list > 0 and #list < 100000, "lines: " .. #list)
            for _, r in ipairs(list) do
                assert.is_true(r.ok, cjson.encode(r))
            end
            -- Every user created has its ok line, and no more.
            assert.equal(#list, total_users(app))
            assert.matches(#list .. " records done %(" .. #list .. " ok, 0 failed%)", err)
        end)
    end

    it("a change by filter counts exactly what it changed", function()
        local app = "cli_int_change"
        emulator.add_app(app, KEY)
        emulator.seed(app, 1500, 6)
        local client = emulator.client({ api_key = KEY })
        local function active()
            return assert(client:list_paginated_users(app, { limit = 1, status = "active" }))
                .total_users
        end
        local before = active()
        emulator.faults { latency_ms = 50 }
        local job_dir = dir .. "/change_job"
        os.execute("mkdir " .. job_dir)
        local job = cli.start(cli.command({ "deactivate", "--where", "status=active", "--yes",
            "--in-flight", "4", "--no-progress" }, env(app)), job_dir)
        os.execute("sleep 1.5")
        cli.signal(job, "INT")
        local out, err, code = cli.wait(job, 30)
        emulator.faults { latency_ms = 0 }
        assert.equal(130, code, err)
        assert_clean(err)
        local changed = 0
        for _, line in ipairs(cli.lines(out)) do
            local r = cjson.decode(line)
            assert.is_true(r.ok, line)
            changed = changed + 1
        end
        assert.is_true(changed > 0 and changed < before, "changed " .. changed)
        assert.equal(before - changed, active())
        assert.matches("deactivate stopped by SIGINT: " .. changed .. " users changed, 0 failed", err)
        client:close()
    end)

    it("stops a single call at once, and an export's wait at a second signal", function()
        local app = "cli_int_slow"
        emulator.add_app(app, KEY)
        emulator.seed(app, 5, 1)
        emulator.faults { latency_ms = 5000 }
        finally(function()
            emulator.faults { latency_ms = 0 }
        end)
        for _, case in ipairs {
            { { "get", "some_user_id" }, { "INT" }, "^passage%-users: stopped by SIGINT\n$" },
            { { "export", "-o", dir .. "/slow.jsonl" }, { "INT", "INT" }, "^$" },
        } do
            local job_dir = dir .. "/" .. case[1][1] .. "_job"
            os.execute("mkdir " .. job_dir)
            local started = os.time()
            local job = cli.start(cli.command(case[1], env(app)), job_dir)
            for _, name in ipairs(case[2]) do
                os.execute("sleep 0.4")
                cli.signal(job, name)
            end
            local _, err, code = cli.wait(job, 10)
            assert.equal(130, code, err)
            assert.matches(case[3], err)
            assert.is_true(os.time() - started <= 3, "the signal did not end the wait")
        end
    end)

    it("on a second signal, cancels the calls in flight and still writes their lines", function()
        local app = "cli_int_twice"
        emulator.faults { latency_ms = 3000 }
        local out, err, code = import_then(app, { "--in-flight", "8" }, function(job)
            os.execute("sleep 1")
            cli.signal(job, "INT")
            os.execute("sleep 0.3")
            cli.signal(job, "TERM")
        end)
        emulator.faults { latency_ms = 0 }
        assert.equal(130, code, err) -- the first signal's status
        assert_clean(err)
        assert.matches("calls in flight were cancelled", err)
        local list = results(out)
        assert.equal(8, #list) -- the eight calls made, each with its line
        for _, r in ipairs(list) do
            assert.is_false(r.ok)
            assert.equal("cancelled", r.kind)
        end
    end)
end)
